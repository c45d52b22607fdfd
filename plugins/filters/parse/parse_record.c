/*
 * Parsing a record's key into fields (see parse.h).
 *
 * Every format first collects what it found into one list of parsed fields
 * (names and values pointing into the input, the JSON document or the
 * decoding scratch space), and one piece of code then stores the list in
 * the record. So prefix, reserved names, time and message work the same
 * for every format, and a value that fails to parse half-way has changed
 * nothing yet.
 */
#include <stdlib.h>
#include <string.h>

#include "../keys.h"
#include "buf.h"
#include "json.h"
#include "jsonp.h"
#include "logfmt.h"
#include "parse.h"
#include "timefmt.h"

/* A name must stay below the longest key dr_record_set takes (4096), with
 * room for the underscore a reserved name gets. */
#define MAX_NAME 4095
/* The most fields a record may have (record.c). */
#define MAX_RECORD_FIELDS 65535u
/* Scratch memory beyond this is given back after the record that needed
 * it, so that one huge line does not hold on to it. */
#define KEEP_SCRATCH_BYTES (1u << 20)

typedef struct parsed_field {
    const char *name;
    size_t name_len;
    const char *val;
    size_t val_len;
    dr_field_type type;
} parsed_field;

/* A named group of the pattern. The name is PCRE2's (it lives as long as
 * the compiled pattern). */
typedef struct regex_name {
    const char *name;
    size_t len;
    uint32_t group;
} regex_name;

struct dr_parse_ctx {
    dr_parse_format format;
    char *key;
    size_t key_len;
    bool key_is_message;
    bool key_is_field;
    char *prefix; /* "" when none */
    size_t prefix_len;
    char *time_key; /* NULL when none */
    size_t time_key_len;
    char *message_key; /* NULL when none */
    size_t message_key_len;
    bool keep_time;
    bool keep_original;
    dr_time_format time_format;
    dr_json_limits json_limits;
    uint32_t max_fields;

    dr_json_doc *doc;        /* json */
    dr_regex *re;            /* regex */
    dr_regex_match_data *md; /* regex */
    regex_name *names;       /* regex: its named groups, in the order of the pattern */
    uint32_t nnames;

    parsed_field *fields; /* max_fields of them */
    uint32_t nfields;
    dr_buf decoded; /* logfmt: the record's quoted values, decoded */
    dr_buf json;    /* a JSON value made fit for one NDJSON line */
    dr_buf name;    /* prefix + name, or a reserved name with its underscore */
    dr_error why;
};

static bool same(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

static bool same_lit(const char *a, size_t alen, const char *lit)
{
    return same(a, alen, lit, strlen(lit));
}

/* ---- the context ------------------------------------------------------------------ */

void dr_parse_spec_init(dr_parse_spec *spec, dr_parse_format format)
{
    memset(spec, 0, sizeof *spec);
    spec->format = format;
    spec->key = "message";
    spec->time_format = "rfc3339";
    spec->keep_original = true;
    spec->max_depth = DR_PARSE_MAX_DEPTH;
    spec->max_fields = DR_PARSE_MAX_FIELDS;
    spec->max_values = DR_PARSE_MAX_VALUES;
}

void dr_parse_ctx_free(dr_parse_ctx *ctx)
{
    if (!ctx)
        return;
    free(ctx->key);
    free(ctx->prefix);
    free(ctx->time_key);
    free(ctx->message_key);
    dr_time_format_free(&ctx->time_format);
    dr_json_doc_free(ctx->doc);
    dr_regex_match_data_free(ctx->md);
    dr_regex_free(ctx->re);
    free(ctx->names);
    free(ctx->fields);
    dr_buf_free(&ctx->decoded);
    dr_buf_free(&ctx->json);
    dr_buf_free(&ctx->name);
    free(ctx);
}

/* A copy of an optional string: NULL stays NULL, and so does "" when
 * empty_is_none (an empty time_key means none). */
static int copy_opt(const char *s, bool empty_is_none, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (!s || (empty_is_none && !s[0]))
        return 0;
    *out = strdup(s);
    if (!*out)
        return DR_ENOMEM;
    *len = strlen(s);
    return 0;
}

static int check_key(dr_parse_ctx *ctx, dr_error *err)
{
    if (!dr_key_readable(ctx->key, ctx->key_len, "key", err))
        return DR_EINVAL;
    ctx->key_is_message = same_lit(ctx->key, ctx->key_len, "message");
    ctx->key_is_field = dr_key_is_field(ctx->key, ctx->key_len, "key", NULL);
    if (!ctx->keep_original && !ctx->key_is_message && !ctx->key_is_field) {
        dr_error_set(err,
                     "keep_original: false would remove the key \"%s\", and only message or a "
                     "field can be removed",
                     ctx->key);
        return DR_EINVAL;
    }
    return 0;
}

static int check_names(const dr_parse_ctx *ctx, dr_error *err)
{
    if (ctx->time_key && ctx->message_key &&
        same(ctx->time_key, ctx->time_key_len, ctx->message_key, ctx->message_key_len)) {
        dr_error_set(err, "time_key and message_key both name \"%s\"", ctx->time_key);
        return DR_EINVAL;
    }
    if (strncmp(ctx->prefix, "kubernetes.", 11) == 0) {
        dr_error_set(err, "prefix: \"%s\": kubernetes.* keys cannot be set", ctx->prefix);
        return DR_EINVAL;
    }
    return 0;
}

/* Does the pattern have a named group called name? */
static bool has_group(const dr_regex *re, const char *name)
{
    return dr_regex_group_index(re, name) >= 0;
}

static int by_group(const void *a, const void *b)
{
    const regex_name *x = a, *y = b;
    return x->group < y->group ? -1 : x->group > y->group;
}

/* PCRE2 lists the named groups by name; fields come out in the order of
 * the pattern, as they do in the order of the text for the other formats. */
static int list_names(dr_parse_ctx *ctx, uint32_t n)
{
    ctx->names = calloc(n, sizeof *ctx->names);
    if (!ctx->names)
        return DR_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        regex_name *rn = &ctx->names[ctx->nnames];
        if (dr_regex_name_at(ctx->re, i, &rn->name, &rn->group)) {
            rn->len = strlen(rn->name);
            ctx->nnames++;
        }
    }
    qsort(ctx->names, ctx->nnames, sizeof *ctx->names, by_group);
    return 0;
}

static int init_regex(dr_parse_ctx *ctx, const char *pattern, dr_error *err)
{
    dr_error why = {{0}};
    ctx->re = dr_regex_compile(pattern, 0, &why);
    if (!ctx->re) {
        dr_error_set(err, "pattern: %s", why.msg);
        return DR_EINVAL;
    }
    uint32_t names = dr_regex_name_count(ctx->re);
    if (names == 0) {
        dr_error_set(err,
                     "pattern: \"%s\" has no named group: name the parts that become fields, "
                     "such as (?<status>\\d+)",
                     pattern);
        return DR_EINVAL;
    }
    if (names > ctx->max_fields) {
        dr_error_set(err, "pattern: %u named groups, more than max_fields (%u)", names,
                     ctx->max_fields);
        return DR_EINVAL;
    }
    int rc = list_names(ctx, names);
    if (rc < 0) {
        dr_error_set(err, "out of memory");
        return rc;
    }
    const char *key_options[] = {"time_key", "message_key"};
    const char *keys[] = {ctx->time_key, ctx->message_key};
    for (int i = 0; i < 2; i++) {
        if (keys[i] && !has_group(ctx->re, keys[i])) {
            dr_error_set(err, "%s: the pattern has no group named \"%s\"", key_options[i], keys[i]);
            return DR_EINVAL;
        }
    }
    ctx->md = dr_regex_match_data_new(ctx->re);
    if (!ctx->md) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    return 0;
}

static int check_pattern(const dr_parse_spec *spec, dr_error *err)
{
    bool has = spec->pattern && spec->pattern[0];
    if (spec->format == DR_PARSE_REGEX && !has) {
        dr_error_set(err, "pattern: required with format: regex");
        return DR_EINVAL;
    }
    if (spec->format != DR_PARSE_REGEX && spec->pattern) {
        dr_error_set(err, "pattern: only used with format: regex");
        return DR_EINVAL;
    }
    return 0;
}

/* Everything of the spec that needs no more than copying. */
static int copy_spec(dr_parse_ctx *ctx, const dr_parse_spec *spec)
{
    ctx->format = spec->format;
    ctx->keep_time = spec->keep_time;
    ctx->keep_original = spec->keep_original;
    ctx->max_fields = spec->max_fields ? spec->max_fields : DR_PARSE_MAX_FIELDS;
    ctx->json_limits.max_depth = spec->max_depth ? spec->max_depth : DR_PARSE_MAX_DEPTH;
    ctx->json_limits.max_nodes = spec->max_values ? spec->max_values : DR_PARSE_MAX_VALUES;
    if (copy_opt(spec->key ? spec->key : "message", false, &ctx->key, &ctx->key_len) < 0 ||
        copy_opt(spec->prefix ? spec->prefix : "", false, &ctx->prefix, &ctx->prefix_len) < 0 ||
        copy_opt(spec->time_key, true, &ctx->time_key, &ctx->time_key_len) < 0 ||
        copy_opt(spec->message_key, true, &ctx->message_key, &ctx->message_key_len) < 0)
        return DR_ENOMEM;
    ctx->fields = calloc(ctx->max_fields, sizeof *ctx->fields);
    return ctx->fields ? 0 : DR_ENOMEM;
}

static int init_ctx(dr_parse_ctx *ctx, const dr_parse_spec *spec, dr_error *err)
{
    if (spec->format != DR_PARSE_JSON && spec->format != DR_PARSE_LOGFMT &&
        spec->format != DR_PARSE_REGEX) {
        dr_error_set(err, "format: unknown format %d", (int)spec->format);
        return DR_EINVAL;
    }
    int rc = copy_spec(ctx, spec);
    if (rc < 0) {
        dr_error_set(err, "out of memory");
        return rc;
    }
    if ((rc = check_key(ctx, err)) < 0 || (rc = check_names(ctx, err)) < 0 ||
        (rc = check_pattern(spec, err)) < 0)
        return rc;
    rc = dr_time_format_init(&ctx->time_format, spec->time_format ? spec->time_format : "rfc3339",
                             err);
    if (rc < 0)
        return rc;
    if (ctx->format == DR_PARSE_REGEX)
        return init_regex(ctx, spec->pattern, err);
    if (ctx->format == DR_PARSE_JSON && !(ctx->doc = dr_json_doc_new())) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    return 0;
}

int dr_parse_ctx_new(const dr_parse_spec *spec, dr_parse_ctx **out, dr_error *err)
{
    *out = NULL;
    dr_parse_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    int rc = init_ctx(ctx, spec, err);
    if (rc < 0) {
        dr_parse_ctx_free(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

const char *dr_parse_why(const dr_parse_ctx *ctx)
{
    return ctx->why.msg;
}

const dr_regex *dr_parse_regex(const dr_parse_ctx *ctx)
{
    return ctx->re;
}

size_t dr_parse_ctx_memory(const dr_parse_ctx *ctx)
{
    size_t n = ctx->decoded.cap + ctx->json.cap + ctx->name.cap;
    return ctx->doc ? n + dr_json_doc_memory(ctx->doc) : n;
}

/* ---- collecting the fields of each format ---------------------------------------- */

static void add_field(dr_parse_ctx *ctx, const char *name, size_t name_len, const char *val,
                      size_t val_len, dr_field_type type)
{
    parsed_field *f = &ctx->fields[ctx->nfields++];
    f->name = name;
    f->name_len = name_len;
    f->val = val;
    f->val_len = val_len;
    f->type = type;
}

static int too_many_fields(dr_parse_ctx *ctx)
{
    dr_error_set(&ctx->why, "more than max_fields (%u) fields", ctx->max_fields);
    return DR_EINVAL;
}

/* Each member of a top-level object: strings decoded, anything else as its
 * JSON text. */
static int collect_json(dr_parse_ctx *ctx, const char *s, size_t n)
{
    const dr_jv *root;
    int rc = dr_json_parse(ctx->doc, s, n, &ctx->json_limits, &root, &ctx->why);
    if (rc < 0)
        return rc;
    if (root->type != DR_JV_OBJECT) {
        dr_error_set(&ctx->why, "not a JSON object");
        return DR_EINVAL;
    }
    if (root->len > ctx->max_fields)
        return too_many_fields(ctx);
    for (const dr_jv *m = root->child; m; m = m->next) {
        if (m->type == DR_JV_STRING)
            add_field(ctx, m->key, m->key_len, m->str, m->len, DR_FIELD_STRING);
        else
            add_field(ctx, m->key, m->key_len, m->raw, m->raw_len, DR_FIELD_JSON);
    }
    return 0;
}

static int collect_logfmt(dr_parse_ctx *ctx, const char *s, size_t n)
{
    dr_buf_reset(&ctx->decoded);
    if (dr_buf_reserve(&ctx->decoded, n + 1) < 0) {
        dr_error_set(&ctx->why, "out of memory");
        return DR_ENOMEM;
    }
    dr_logfmt_iter it;
    dr_logfmt_pair pair;
    dr_logfmt_begin(&it, s, n, ctx->decoded.p);
    int rc;
    while ((rc = dr_logfmt_next(&it, &pair)) == 1) {
        if (ctx->nfields == ctx->max_fields)
            return too_many_fields(ctx);
        add_field(ctx, pair.key, pair.key_len, pair.val, pair.val_len, DR_FIELD_STRING);
    }
    if (rc < 0) {
        dr_error_set(&ctx->why, "not logfmt: the pair at byte %zu", (size_t)(it.p - s));
        return DR_EINVAL;
    }
    if (ctx->nfields == 0) {
        dr_error_set(&ctx->why, "nothing to parse");
        return DR_EINVAL;
    }
    return 0;
}

/* Every named group that took part in the match. */
static int collect_regex(dr_parse_ctx *ctx, const char *s, size_t n)
{
    int m = dr_regex_match(ctx->re, s, n, ctx->md);
    if (m < 0) {
        dr_error_set(&ctx->why, "the regex gave up at its match limit");
        return DR_ERR;
    }
    if (m == 0) {
        dr_error_set(&ctx->why, "the pattern does not match");
        return DR_EINVAL;
    }
    for (uint32_t i = 0; i < ctx->nnames; i++) {
        const regex_name *rn = &ctx->names[i];
        size_t start, end;
        if (dr_regex_group(ctx->md, rn->group, &start, &end))
            add_field(ctx, rn->name, rn->len, s + start, end - start, DR_FIELD_STRING);
    }
    return 0;
}

static int collect_fields(dr_parse_ctx *ctx, const char *s, size_t n)
{
    ctx->nfields = 0;
    switch (ctx->format) {
    case DR_PARSE_JSON:
        return collect_json(ctx, s, n);
    case DR_PARSE_LOGFMT:
        return collect_logfmt(ctx, s, n);
    case DR_PARSE_REGEX:
        return collect_regex(ctx, s, n);
    }
    return DR_EINVAL;
}

/* What could make storing fail half-way, checked before anything is
 * stored. */
static int check_fields(dr_parse_ctx *ctx, const dr_record *r)
{
    if (r->nfields + ctx->nfields > MAX_RECORD_FIELDS) {
        dr_error_set(&ctx->why, "the record would have more than %u fields", MAX_RECORD_FIELDS);
        return DR_EINVAL;
    }
    for (uint32_t i = 0; i < ctx->nfields; i++) {
        if (ctx->prefix_len + ctx->fields[i].name_len > MAX_NAME) {
            dr_error_set(&ctx->why, "a name longer than %u bytes", MAX_NAME);
            return DR_EINVAL;
        }
    }
    return 0;
}

/* ---- storing them ----------------------------------------------------------------- */

/* Is s[0..n) a name a field cannot have? Then *word is where the
 * underscore goes: after the reserved word. */
static bool reserved_name(const char *s, size_t n, size_t *word)
{
    static const char *const words[] = {"message", "time", "stream", "kubernetes"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (same_lit(s, n, words[i])) {
            *word = n;
            return true;
        }
    }
    if (n == 0 || (n >= 11 && memcmp(s, "kubernetes.", 11) == 0)) {
        *word = n == 0 ? 0 : 10;
        return true;
    }
    return false;
}

/* The name a parsed field is stored under: prefix + name, with an
 * underscore after a reserved word. Points at the parsed name itself when
 * that is all it is. */
static int field_name(dr_parse_ctx *ctx, const parsed_field *f, const char **out, size_t *len)
{
    size_t word;
    if (ctx->prefix_len == 0 && !reserved_name(f->name, f->name_len, &word)) {
        *out = f->name;
        *len = f->name_len;
        return 0;
    }
    dr_buf *b = &ctx->name;
    dr_buf_reset(b);
    if (dr_buf_reserve(b, ctx->prefix_len + f->name_len + 1) < 0)
        return DR_ENOMEM;
    memcpy(b->p, ctx->prefix, ctx->prefix_len);
    memcpy(b->p + ctx->prefix_len, f->name, f->name_len);
    b->len = ctx->prefix_len + f->name_len;
    if (reserved_name(b->p, b->len, &word)) {
        memmove(b->p + word + 1, b->p + word, b->len - word);
        b->p[word] = '_';
        b->len++;
    }
    *out = b->p;
    *len = b->len;
    return 0;
}

/* A JSON object or array is stored as its text, which outputs write as it
 * is. Two things in that text would break an NDJSON line: a line break
 * (only possible between tokens, as whitespace that can go) and invalid
 * UTF-8 in a nested string (which becomes U+FFFD, as the encoders repair
 * string fields). Anything else is kept byte for byte. */
static int json_for_output(dr_parse_ctx *ctx, const char **val, size_t *len)
{
    const char *s = *val;
    size_t n = *len;
    if (n == 0 || (s[0] != '{' && s[0] != '['))
        return 0; /* numbers, true, false, null: ASCII on one line */
    bool breaks = memchr(s, '\n', n) || memchr(s, '\r', n);
    if (!breaks && dr_utf8_valid_prefix(s, n) == n)
        return 0;
    dr_buf *b = &ctx->json;
    dr_buf_reset(b);
    if (dr_utf8_sanitize(b, s, n) < 0)
        return DR_ENOMEM;
    size_t o = 0;
    for (size_t i = 0; i < b->len; i++)
        if (b->p[i] != '\n' && b->p[i] != '\r')
            b->p[o++] = b->p[i];
    b->len = o;
    *val = b->p;
    *len = b->len;
    return 0;
}

static int store_field(dr_parse_ctx *ctx, dr_chunk *c, dr_record *r, const parsed_field *f)
{
    const char *name, *val = f->val;
    size_t name_len, val_len = f->val_len;
    int rc = field_name(ctx, f, &name, &name_len);
    if (rc == 0 && f->type == DR_FIELD_JSON)
        rc = json_for_output(ctx, &val, &val_len);
    if (rc < 0)
        return rc;
    return dr_record_set(c, r, name, name_len, val, val_len, f->type);
}

static bool is_time_key(const dr_parse_ctx *ctx, const parsed_field *f)
{
    return ctx->time_key && same(f->name, f->name_len, ctx->time_key, ctx->time_key_len);
}

static bool is_message_key(const dr_parse_ctx *ctx, const parsed_field *f)
{
    return ctx->message_key && same(f->name, f->name_len, ctx->message_key, ctx->message_key_len);
}

/* The time in the field's text (a JSON number's digits, a string's
 * decoded value). */
static bool read_time(const dr_parse_ctx *ctx, const parsed_field *f, int64_t *ns)
{
    return dr_time_parse(&ctx->time_format, f->val, f->val_len, ns) == 0;
}

static int store_fields(dr_parse_ctx *ctx, dr_chunk *c, dr_record *r)
{
    const parsed_field *message_f = NULL;
    bool has_time = false, time_ok = false;
    int64_t time_ns = 0;
    if (!ctx->keep_original && ctx->key_is_field)
        dr_record_remove(r, ctx->key, ctx->key_len);
    for (uint32_t i = 0; i < ctx->nfields; i++) {
        const parsed_field *f = &ctx->fields[i];
        if (is_message_key(ctx, f)) {
            message_f = f; /* the last one, as for any name */
            continue;
        }
        if (is_time_key(ctx, f)) {
            /* the last one decides; one that does not parse stays a field,
             * so that the value is not lost */
            has_time = true;
            time_ok = read_time(ctx, f, &time_ns);
            if (time_ok && !ctx->keep_time)
                continue;
        }
        int rc = store_field(ctx, c, r, f);
        if (rc < 0) {
            dr_error_set(&ctx->why, "out of memory");
            return rc;
        }
    }
    int result = DR_PARSE_OK;
    if (has_time && time_ok)
        r->time_ns = time_ns;
    else if (has_time)
        result = DR_PARSE_BAD_TIME;
    int rc = 0;
    if (message_f)
        rc = dr_record_set(c, r, "message", 7, message_f->val, message_f->val_len, DR_FIELD_STRING);
    else if (!ctx->keep_original && ctx->key_is_message)
        rc = dr_record_set(c, r, "message", 7, "", 0, DR_FIELD_STRING);
    if (rc < 0) {
        dr_error_set(&ctx->why, "out of memory");
        return rc;
    }
    return result;
}

/* After a record that needed a lot of memory, gives it back. */
static void trim_scratch(dr_parse_ctx *ctx)
{
    if (ctx->doc && dr_json_doc_memory(ctx->doc) > KEEP_SCRATCH_BYTES)
        dr_json_doc_trim(ctx->doc);
    dr_buf *bufs[] = {&ctx->decoded, &ctx->json, &ctx->name};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]->cap > KEEP_SCRATCH_BYTES)
            dr_buf_free(bufs[i]);
}

int dr_parse_record(dr_parse_ctx *ctx, dr_chunk *c, dr_record *r)
{
    dr_value v;
    char tbuf[40];
    ctx->why.msg[0] = '\0';
    if (!dr_record_get(c, r, ctx->key, ctx->key_len, &v, tbuf))
        return DR_PARSE_NO_KEY;
    int rc = collect_fields(ctx, v.p, v.len);
    if (rc == 0)
        rc = check_fields(ctx, r);
    if (rc == 0)
        rc = store_fields(ctx, c, r);
    trim_scratch(ctx);
    return rc;
}
