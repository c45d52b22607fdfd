/*
 * A strict JSON parser into a tree of dr_jv nodes, allocated from an arena.
 *
 * The parser walks the input once. It keeps no stack of its own and does not
 * recurse: the parent of an open array or object is remembered in that
 * container's own `next` field, which is otherwise unused until the container
 * closes (its next sibling can only come after that). So the nesting depth is
 * limited by max_depth alone, never by the C stack, and needs no memory
 * besides the nodes.
 *
 * Strings take two quick passes over their bytes: the first finds the closing
 * quote eight bytes at a time (which gives the size to allocate), the second
 * copies runs without backslashes with memcpy and decodes the escapes between
 * them. The decoded text is never longer than the quoted text, so the first
 * pass's length is a safe allocation size.
 *
 * The arena is a chain of 64 KiB blocks plus, for any allocation larger than a
 * quarter block, a separate block of its own. The next parse reuses the chain
 * from its start and frees the separate blocks, so what a doc keeps between
 * documents is what its largest document needed.
 */
#include "jsonp.h"

#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the arena --------------------------------------------------------------- */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} arena_block;

#define BLOCK_BYTES (64 * 1024)
#define BLOCK_CAP (BLOCK_BYTES - sizeof(arena_block))
/* Larger allocations get a block of their own: packing them into the shared
 * blocks would waste up to their size at the end of a block. */
#define SEPARATE_ABOVE (BLOCK_CAP / 4)

struct dr_json_doc {
    arena_block *first;    /* the reused chain; never NULL */
    arena_block *cur;      /* the block being filled */
    arena_block *separate; /* big allocations of the current document */
    size_t memory;         /* bytes of this struct and all blocks, headers included */
    const dr_jv *root;
};

static arena_block *block_new(size_t cap)
{
    arena_block *b = malloc(sizeof *b + cap);
    if (!b)
        return NULL;
    b->next = NULL;
    b->used = 0;
    b->cap = cap;
    return b;
}

static void free_chain(dr_json_doc *doc, arena_block *b)
{
    while (b) {
        arena_block *next = b->next;
        doc->memory -= sizeof *b + b->cap;
        free(b);
        b = next;
    }
}

/* Forgets the previous document: the chain is reused from its first block. */
static void arena_reset(dr_json_doc *doc)
{
    free_chain(doc, doc->separate);
    doc->separate = NULL;
    doc->cur = doc->first;
    doc->cur->used = 0;
    doc->root = NULL;
}

static void *alloc_separate(dr_json_doc *doc, size_t size)
{
    if (size > SIZE_MAX - sizeof(arena_block))
        return NULL;
    arena_block *b = block_new(size);
    if (!b)
        return NULL;
    b->used = size;
    b->next = doc->separate;
    doc->separate = b;
    doc->memory += sizeof *b + size;
    return b->data;
}

/* Moves on to the next block of the chain, adding one at its end if needed. */
static arena_block *next_block(dr_json_doc *doc)
{
    arena_block *b = doc->cur->next;
    if (!b) {
        b = block_new(BLOCK_CAP);
        if (!b)
            return NULL;
        doc->cur->next = b;
        doc->memory += BLOCK_BYTES;
    }
    b->used = 0;
    doc->cur = b;
    return b;
}

/* size bytes aligned to align (a power of two no larger than 16); NULL when
 * out of memory. */
static void *arena_alloc(dr_json_doc *doc, size_t size, size_t align)
{
    if (size > SEPARATE_ABOVE)
        return alloc_separate(doc, size);
    arena_block *b = doc->cur;
    size_t at = (b->used + align - 1) & ~(align - 1);
    if (at > b->cap - size) {
        b = next_block(doc);
        if (!b)
            return NULL;
        at = 0;
    }
    b->used = at + size;
    return b->data + at;
}

dr_json_doc *dr_json_doc_new(void)
{
    dr_json_doc *doc = calloc(1, sizeof *doc);
    if (!doc)
        return NULL;
    doc->first = block_new(BLOCK_CAP);
    if (!doc->first) {
        free(doc);
        return NULL;
    }
    doc->cur = doc->first;
    doc->memory = sizeof *doc + BLOCK_BYTES;
    return doc;
}

void dr_json_doc_free(dr_json_doc *doc)
{
    if (!doc)
        return;
    free_chain(doc, doc->separate);
    free_chain(doc, doc->first);
    free(doc);
}

void dr_json_doc_trim(dr_json_doc *doc)
{
    free_chain(doc, doc->first->next);
    doc->first->next = NULL;
    arena_reset(doc);
}

size_t dr_json_doc_memory(const dr_json_doc *doc)
{
    return doc->memory;
}

/* ---- parser state and errors ------------------------------------------------------ */

typedef struct parser {
    dr_json_doc *doc;
    const char *start; /* s, for byte offsets */
    const char *p;     /* the next byte to look at */
    const char *end;
    uint32_t max_depth;
    size_t max_nodes; /* 0: no limit */
    size_t nodes;
    dr_error *err;
} parser;

/* Records "<what> at byte <offset of at>" and returns DR_EINVAL. */
static int fail_at(parser *ps, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_at(parser *ps, const char *at, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    dr_error_set(ps->err, "%s at byte %zu", what, (size_t)(at - ps->start));
    return DR_EINVAL;
}

/* Names the byte at p for an error message: 'x', 0x01 or "end of input". */
static const char *describe(const parser *ps, const char *p, char out[16])
{
    if (p >= ps->end)
        return "end of input";
    unsigned char c = (unsigned char)*p;
    if (c > 0x20 && c < 0x7f)
        snprintf(out, 16, "'%c'", c);
    else
        snprintf(out, 16, "0x%02x", c);
    return out;
}

static int nomem(parser *ps)
{
    dr_error_set(ps->err, "out of memory parsing JSON");
    return DR_ENOMEM;
}

/* ---- small scanners --------------------------------------------------------------- */

static inline bool is_ws(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline void skip_ws(parser *ps)
{
    while (ps->p < ps->end && is_ws(*ps->p))
        ps->p++;
}

static inline bool at_char(const parser *ps, char c)
{
    return ps->p < ps->end && *ps->p == c;
}

static const char *skip_digits(const char *p, const char *end)
{
    while (p < end && is_digit(*p))
        p++;
    return p;
}

/* ---- nodes -------------------------------------------------------------------------- */

/* A zeroed node of the given type whose text starts at the current byte. */
static int new_node(parser *ps, dr_jv_type type, dr_jv **out)
{
    if (ps->max_nodes && ps->nodes >= ps->max_nodes)
        return fail_at(ps, ps->p, "more than %zu values", ps->max_nodes);
    dr_jv *v = arena_alloc(ps->doc, sizeof *v, alignof(dr_jv));
    if (!v)
        return nomem(ps);
    ps->nodes++;
    *v = (dr_jv){.type = type, .raw = ps->p};
    *out = v;
    return 0;
}

/* Copies text[0..len) into the arena with a NUL after it. */
static char *copy_text(parser *ps, const char *text, size_t len)
{
    char *s = arena_alloc(ps->doc, len + 1, 1);
    if (!s)
        return NULL;
    memcpy(s, text, len);
    s[len] = '\0';
    return s;
}

/* ---- strings: finding the end ------------------------------------------------------ */

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Whether any of the eight bytes of w is '"', '\\' or below 0x20. The tests
 * (x - ONES) & ~x & HIGHS, "some byte of x is zero", and (w - n*ONES) & ~w &
 * HIGHS, "some byte of w is below n" (n <= 128), are exact about whether such a
 * byte exists, which is all that is asked here. */
static inline bool word_has_special(uint64_t w)
{
    uint64_t quote = w ^ (ONES * '"');
    uint64_t backslash = w ^ (ONES * '\\');
    uint64_t found =
        ((quote - ONES) & ~quote) | ((backslash - ONES) & ~backslash) | ((w - ONES * 0x20) & ~w);
    return (found & HIGHS) != 0;
}

static inline bool is_special(unsigned char c)
{
    return c == '"' || c == '\\' || c < 0x20;
}

/* The first '"', '\\' or control byte in [p, end), or end. */
static const char *find_special(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        if (word_has_special(w))
            break;
        p += 8;
    }
    while (p < end && !is_special((unsigned char)*p))
        p++;
    return p;
}

/* Finds the closing quote of the string whose opening quote is at open.
 * Control bytes are errors; escapes are only stepped over here (decode_string
 * checks them). Sets *escaped when the string has any backslash. */
static int find_string_end(parser *ps, const char *open, const char **close, bool *escaped)
{
    const char *p = open + 1;
    *escaped = false;
    for (;;) {
        p = find_special(p, ps->end);
        if (p >= ps->end)
            return fail_at(ps, open, "unterminated string starting");
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            break;
        if (c < 0x20)
            return fail_at(ps, p, "control character 0x%02x in string", c);
        /* A backslash: the byte after it cannot end the string. */
        *escaped = true;
        if (ps->end - p < 2)
            return fail_at(ps, open, "unterminated string starting");
        p += 2;
    }
    *close = p;
    return 0;
}

/* ---- strings: decoding -------------------------------------------------------------- */

/* The four hex digits at p (p < end), or -1 when there are not four. */
static long read_hex4(const char *p, const char *end)
{
    if (end - p < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = dr_hex_value(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Writes code point cp (at most U+10FFFF, not a surrogate) as UTF-8. */
static char *put_utf8(char *d, uint32_t cp)
{
    if (cp < 0x80) {
        *d++ = (char)cp;
    } else if (cp < 0x800) {
        *d++ = (char)(0xC0 | (cp >> 6));
        *d++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *d++ = (char)(0xE0 | (cp >> 12));
        *d++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *d++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *d++ = (char)(0xF0 | (cp >> 18));
        *d++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *d++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *d++ = (char)(0x80 | (cp & 0x3F));
    }
    return d;
}

#define REPLACEMENT 0xFFFD

/* Decodes the \u escape whose 'u' is at *pp (the string body ends at end),
 * joining a high surrogate with a \u low surrogate right after it. A surrogate
 * without its partner becomes U+FFFD; whatever follows it is decoded on its
 * own. Advances *pp past what was used. */
static int decode_u_escape(parser *ps, const char **pp, const char *end, char **dp)
{
    const char *p = *pp + 1;
    long cp = read_hex4(p, end);
    if (cp < 0)
        return fail_at(ps, *pp - 1, "invalid \\u escape in string");
    p += 4;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        long low = -1;
        if (end - p >= 6 && p[0] == '\\' && p[1] == 'u')
            low = read_hex4(p + 2, end);
        if (low >= 0xDC00 && low <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            p += 6;
        } else {
            cp = REPLACEMENT;
        }
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        cp = REPLACEMENT;
    }
    *dp = put_utf8(*dp, (uint32_t)cp);
    *pp = p;
    return 0;
}

/* The byte a one-letter escape stands for, or -1 when the letter is not one. */
static int simple_escape(char c)
{
    switch (c) {
    case '"':
        return '"';
    case '\\':
        return '\\';
    case '/':
        return '/';
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    default:
        return -1;
    }
}

static int invalid_escape(parser *ps, const char *backslash)
{
    unsigned char c = (unsigned char)backslash[1];
    if (c > 0x20 && c < 0x7f)
        return fail_at(ps, backslash, "invalid escape '\\%c' in string", c);
    return fail_at(ps, backslash, "invalid escape (backslash before 0x%02x) in string", c);
}

/* Decodes the body [p, end) (no quotes; find_string_end has checked it holds
 * no control bytes and no unescaped quote) into dst, which has room for
 * end - p bytes. Sets *len to the decoded length. */
static int decode_string(parser *ps, const char *p, const char *end, char *dst, size_t *len)
{
    char *d = dst;
    while (p < end) {
        const char *bs = memchr(p, '\\', (size_t)(end - p));
        size_t run = (size_t)((bs ? bs : end) - p);
        memcpy(d, p, run);
        d += run;
        if (!bs)
            break;
        p = bs + 1; /* find_string_end made sure a byte follows */
        if (*p == 'u') {
            int rc = decode_u_escape(ps, &p, end, &d);
            if (rc)
                return rc;
            continue;
        }
        int c = simple_escape(*p);
        if (c < 0)
            return invalid_escape(ps, bs);
        *d++ = (char)c;
        p++;
    }
    *len = (size_t)(d - dst);
    return 0;
}

/* Parses the string whose opening quote is at ps->p into the arena and steps
 * past its closing quote. */
static int parse_string(parser *ps, const char **str, uint32_t *len)
{
    const char *open = ps->p;
    const char *close;
    bool escaped;
    int rc = find_string_end(ps, open, &close, &escaped);
    if (rc)
        return rc;
    const char *body = open + 1;
    size_t body_len = (size_t)(close - body);
    if (body_len > UINT32_MAX)
        return fail_at(ps, open, "string of 4 GiB or more");
    char *s;
    size_t n = body_len;
    if (!escaped) {
        s = copy_text(ps, body, body_len);
        if (!s)
            return nomem(ps);
    } else {
        s = arena_alloc(ps->doc, body_len + 1, 1);
        if (!s)
            return nomem(ps);
        rc = decode_string(ps, body, close, s, &n);
        if (rc)
            return rc;
        s[n] = '\0';
    }
    *str = s;
    *len = (uint32_t)n;
    ps->p = close + 1;
    return 0;
}

/* ---- numbers and literals ------------------------------------------------------------ */

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? ; the text is kept as written. */
static int parse_number(parser *ps, dr_jv *v)
{
    const char *p = ps->p;
    const char *end = ps->end;
    if (p < end && *p == '-')
        p++;
    if (p >= end || !is_digit(*p))
        return fail_at(ps, p, "expected a digit in number");
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p))
            return fail_at(ps, p, "leading zero in number");
    } else {
        p = skip_digits(p, end);
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p))
            return fail_at(ps, p, "expected a digit after '.' in number");
        p = skip_digits(p, end);
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !is_digit(*p))
            return fail_at(ps, p, "expected a digit in exponent");
        p = skip_digits(p, end);
    }
    size_t len = (size_t)(p - ps->p);
    if (len > UINT32_MAX)
        return fail_at(ps, ps->p, "number of 4 GiB or more");
    v->str = copy_text(ps, ps->p, len);
    if (!v->str)
        return nomem(ps);
    v->len = (uint32_t)len;
    v->raw_len = len;
    ps->p = p;
    return 0;
}

static int parse_literal(parser *ps, dr_jv *v, const char *word, dr_jv_type type)
{
    size_t len = strlen(word);
    if ((size_t)(ps->end - ps->p) < len || memcmp(ps->p, word, len) != 0)
        return fail_at(ps, ps->p, "invalid literal (expected %s)", word);
    v->type = type;
    v->raw_len = len;
    ps->p += len;
    return 0;
}

/* Parses a scalar at ps->p into v (whose type and raw are set by the caller
 * for containers only). */
static int parse_scalar(parser *ps, dr_jv *v)
{
    char c = *ps->p;
    if (c == '"') {
        v->type = DR_JV_STRING;
        int rc = parse_string(ps, &v->str, &v->len);
        if (rc == 0)
            v->raw_len = (size_t)(ps->p - v->raw);
        return rc;
    }
    if (c == '-' || is_digit(c)) {
        v->type = DR_JV_NUMBER;
        return parse_number(ps, v);
    }
    if (c == 't')
        return parse_literal(ps, v, "true", DR_JV_TRUE);
    if (c == 'f')
        return parse_literal(ps, v, "false", DR_JV_FALSE);
    if (c == 'n')
        return parse_literal(ps, v, "null", DR_JV_NULL);
    char buf[16];
    return fail_at(ps, ps->p, "expected a value, found %s", describe(ps, ps->p, buf));
}

/* ---- the tree ------------------------------------------------------------------------ */

static char closer_of(const dr_jv *container)
{
    return container->type == DR_JV_OBJECT ? '}' : ']';
}

/* Reads "key" : (with whitespace) before an object member's value. */
static int parse_member_key(parser *ps, const char **key, uint32_t *key_len)
{
    char buf[16];
    if (!at_char(ps, '"'))
        return fail_at(ps, ps->p, "expected a string key, found %s", describe(ps, ps->p, buf));
    int rc = parse_string(ps, key, key_len);
    if (rc)
        return rc;
    skip_ws(ps);
    if (!at_char(ps, ':'))
        return fail_at(ps, ps->p, "expected ':' after object key");
    ps->p++;
    skip_ws(ps);
    return 0;
}

static int append_member(parser *ps, dr_jv *container, dr_jv **last, dr_jv *v)
{
    if (container->len == UINT32_MAX)
        return fail_at(ps, v->raw, "more than %u members in one array or object", UINT32_MAX);
    if (*last)
        (*last)->next = v;
    else
        container->child = v;
    *last = v;
    container->len++;
    return 0;
}

/* After a member of cur: a ',' (with no closer after it) or cur's closer. Sets
 * *closed when it was the closer. */
static int after_member(parser *ps, const dr_jv *cur, bool *closed)
{
    char closer = closer_of(cur);
    char buf[16];
    skip_ws(ps);
    if (at_char(ps, closer)) {
        ps->p++;
        *closed = true;
        return 0;
    }
    if (!at_char(ps, ','))
        return fail_at(ps, ps->p, "expected ',' or '%c' after %s, found %s", closer,
                       cur->type == DR_JV_OBJECT ? "object member" : "array element",
                       describe(ps, ps->p, buf));
    const char *comma = ps->p;
    ps->p++;
    skip_ws(ps);
    if (at_char(ps, ']') || at_char(ps, '}'))
        return fail_at(ps, comma, "trailing comma");
    *closed = false;
    return 0;
}

/* Parses one value and everything nested in it. cur is the innermost open
 * container (NULL before the root), last its last member so far; the parent of
 * an open container waits in its next field. */
static int parse_tree(parser *ps, dr_jv **root)
{
    dr_jv *cur = NULL;
    dr_jv *last = NULL;
    uint32_t depth = 0;
    char buf[16];
    int rc;

    for (;;) {
        /* A value is due here: the root, or a member of cur. */
        const char *key = NULL;
        uint32_t key_len = 0;
        if (cur && cur->type == DR_JV_OBJECT) {
            rc = parse_member_key(ps, &key, &key_len);
            if (rc)
                return rc;
        }
        if (ps->p >= ps->end)
            return fail_at(ps, ps->p, "expected a value, found %s", describe(ps, ps->p, buf));
        dr_jv *v;
        rc = new_node(ps, DR_JV_NULL, &v);
        if (rc)
            return rc;
        v->key = key;
        v->key_len = key_len;
        if (cur) {
            rc = append_member(ps, cur, &last, v);
            if (rc)
                return rc;
        } else {
            *root = v;
        }

        char c = *ps->p;
        if (c == '[' || c == '{') {
            if (depth >= ps->max_depth)
                return fail_at(ps, ps->p, "nesting deeper than %u", ps->max_depth);
            v->type = c == '[' ? DR_JV_ARRAY : DR_JV_OBJECT;
            ps->p++;
            skip_ws(ps);
            if (at_char(ps, closer_of(v))) {
                ps->p++;
                v->raw_len = (size_t)(ps->p - v->raw);
            } else {
                /* Open it: its members come next. */
                v->next = cur;
                cur = v;
                last = NULL;
                depth++;
                continue;
            }
        } else {
            rc = parse_scalar(ps, v);
            if (rc)
                return rc;
        }

        /* A value is complete: close every container that ends here. */
        for (;;) {
            if (!cur)
                return 0;
            bool closed;
            rc = after_member(ps, cur, &closed);
            if (rc)
                return rc;
            if (!closed)
                break;
            cur->raw_len = (size_t)(ps->p - cur->raw);
            dr_jv *parent = cur->next;
            cur->next = NULL;
            last = cur;
            cur = parent;
            depth--;
        }
    }
}

int dr_json_parse(dr_json_doc *doc, const char *s, size_t n, const dr_json_limits *lim,
                  const dr_jv **root, dr_error *err)
{
    *root = NULL;
    arena_reset(doc);
    if (!s && n) {
        dr_error_set(err, "JSON input is NULL");
        return DR_EINVAL;
    }
    if (!s)
        s = "";
    parser ps = {
        .doc = doc,
        .start = s,
        .p = s,
        .end = s + n,
        .max_depth = lim && lim->max_depth ? lim->max_depth : 64,
        .max_nodes = lim ? lim->max_nodes : 0,
        .err = err,
    };
    skip_ws(&ps);
    dr_jv *top = NULL;
    int rc = parse_tree(&ps, &top);
    if (rc)
        return rc;
    skip_ws(&ps);
    if (ps.p < ps.end) {
        char buf[16];
        return fail_at(&ps, ps.p, "unexpected %s after the JSON value", describe(&ps, ps.p, buf));
    }
    doc->root = top;
    *root = top;
    return 0;
}

/* ---- reading values -------------------------------------------------------------------- */

const dr_jv *dr_jv_get(const dr_jv *v, const char *key)
{
    if (!v || v->type != DR_JV_OBJECT || !key)
        return NULL;
    size_t len = strlen(key);
    for (const dr_jv *m = v->child; m; m = m->next) {
        if (m->key_len == len && memcmp(m->key, key, len) == 0)
            return m;
    }
    return NULL;
}

const dr_jv *dr_jv_path(const dr_jv *v, ...)
{
    va_list ap;
    va_start(ap, v);
    const char *key;
    while (v && (key = va_arg(ap, const char *)) != NULL)
        v = dr_jv_get(v, key);
    va_end(ap);
    return v;
}

const char *dr_jv_str(const dr_jv *v)
{
    return v && v->type == DR_JV_STRING ? v->str : NULL;
}

const char *dr_jv_str_or(const dr_jv *v, const char *def)
{
    return v && v->type == DR_JV_STRING ? v->str : def;
}

bool dr_jv_int(const dr_jv *v, int64_t *out)
{
    if (!v || v->type != DR_JV_NUMBER)
        return false;
    const char *p = v->str;
    bool negative = *p == '-';
    if (negative)
        p++;
    /* Accumulate as a negative number: its range includes INT64_MIN. */
    int64_t acc = 0;
    for (; *p; p++) {
        if (!is_digit(*p))
            return false; /* a fraction or an exponent */
        int digit = *p - '0';
        if (acc < (INT64_MIN + digit) / 10)
            return false;
        acc = acc * 10 - digit;
    }
    if (!negative && acc == INT64_MIN)
        return false;
    *out = negative ? acc : -acc;
    return true;
}

bool dr_jv_double(const dr_jv *v, double *out)
{
    if (!v || v->type != DR_JV_NUMBER)
        return false;
    *out = strtod(v->str, NULL);
    return true;
}

bool dr_jv_is_true(const dr_jv *v)
{
    return v && v->type == DR_JV_TRUE;
}
