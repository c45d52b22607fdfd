/*
 * Building Loki push requests from a batch of chunks (see loki.h).
 *
 * Two passes. The first walks the records once: it finds each record's
 * stream (and tenant), makes the line (the message, or the record as JSON),
 * repairs invalid UTF-8, applies max_line_bytes, and collects one entry per
 * line or piece. Lines are not copied unless they had to change: an entry
 * points into the chunk or into the builder's text buffer. Then the entries
 * are sorted by (stream, time, arrival) and each tenant's streams are
 * encoded, as protobuf (snappy) or JSON (optionally gzip).
 */
#include "loki.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress.h"
#include "json.h"
#include "loki_push.pb-c.h"
#include "../ndjson.h"

/* ---- configuration entries -------------------------------------------------------- */

static const struct {
    const char *name;
    loki_source src;
} known_fields[] = {
    {"namespace", LOKI_SRC_NAMESPACE},
    {"pod", LOKI_SRC_POD},
    {"pod_uid", LOKI_SRC_POD_UID},
    {"container", LOKI_SRC_CONTAINER},
    {"container_id", LOKI_SRC_CONTAINER_ID},
    {"stream", LOKI_SRC_STREAM},
    {"node", LOKI_SRC_NODE},
    {"path", LOKI_SRC_PATH},
    {"app", LOKI_SRC_APP},
};

bool loki_label_name_ok(const char *name)
{
    if (!name || !name[0])
        return false;
    for (const char *p = name; *p; p++) {
        bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_';
        if (!alpha && !(p > name && *p >= '0' && *p <= '9'))
            return false;
    }
    return true;
}

/* Splits "name=rest" (or just "rest", when the name is the rest) into two
 * new strings. */
static int split_pair(const char *spec, bool need_eq, char **name, char **rest, dr_error *err)
{
    const char *eq = strchr(spec, '=');
    if (!eq && need_eq) {
        dr_error_set(err, "\"%s\": expected name=value", spec);
        return DR_EINVAL;
    }
    *name = eq ? strndup(spec, (size_t)(eq - spec)) : strdup(spec);
    *rest = strdup(eq ? eq + 1 : spec);
    if (!*name || !*rest) {
        free(*name);
        free(*rest);
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    return 0;
}

int loki_attr_parse(const char *spec, loki_attr *out, dr_error *err)
{
    memset(out, 0, sizeof *out);
    char *field;
    int rc = split_pair(spec, false, &out->name, &field, err);
    if (rc < 0)
        return rc;
    if (!loki_label_name_ok(out->name) || !field[0]) {
        dr_error_set(err, "\"%s\": a name must match [a-zA-Z_][a-zA-Z0-9_]* and name a field",
                     spec);
        free(field);
        loki_attr_free(out);
        return DR_EINVAL;
    }
    out->src = LOKI_SRC_FIELD;
    for (size_t i = 0; i < sizeof known_fields / sizeof known_fields[0]; i++) {
        if (strcmp(field, known_fields[i].name) == 0) {
            out->src = known_fields[i].src;
            break;
        }
    }
    if (out->src == LOKI_SRC_FIELD)
        out->arg = field;
    else
        free(field);
    return 0;
}

int loki_static_label_parse(const char *spec, loki_attr *out, dr_error *err)
{
    memset(out, 0, sizeof *out);
    int rc = split_pair(spec, true, &out->name, &out->arg, err);
    if (rc < 0)
        return rc;
    if (!loki_label_name_ok(out->name) || !out->arg[0]) {
        dr_error_set(err,
                     "\"%s\": the name must match [a-zA-Z_][a-zA-Z0-9_]* and the value "
                     "must not be empty",
                     spec);
        loki_attr_free(out);
        return DR_EINVAL;
    }
    out->src = LOKI_SRC_CONSTANT;
    return 0;
}

void loki_attr_free(loki_attr *a)
{
    free(a->name);
    free(a->arg);
    a->name = a->arg = NULL;
}

/* ---- attribute values ---------------------------------------------------------------- */

typedef struct str {
    const char *p;
    size_t n;
} str;

static str cstr(const char *s)
{
    return (str){s ? s : "", s ? strlen(s) : 0};
}

/* A record key (a parser's field, or kubernetes.labels.app and the like).
 * The value is copied by the caller before the next call, so "time" may
 * live in a static buffer (everything runs on the loop thread). */
static str record_key(const dr_chunk *c, const dr_record *r, const char *key)
{
    static char tbuf[40];
    dr_value v;
    if (!dr_record_get(c, r, key, strlen(key), &v, tbuf))
        return (str){"", 0};
    return (str){v.p, v.len};
}

/* The app a pod belongs to: the recommended label app.kubernetes.io/name,
 * else the older app label. */
static str app_of(const dr_kube_meta *k)
{
    if (!k)
        return cstr(NULL);
    const char *v = dr_kv_find(k->labels, k->nlabels, "app.kubernetes.io/name");
    if (!v)
        v = dr_kv_find(k->labels, k->nlabels, "app");
    return cstr(v);
}

static str attr_value(const loki_layout *lay, const loki_attr *a, const dr_chunk *c,
                      const dr_record *r)
{
    const dr_meta *m = c->meta;
    const dr_kube_meta *k = c->kube;
    switch (a->src) {
    case LOKI_SRC_NAMESPACE:
        return cstr(k ? k->namespace_ : m ? m->namespace_ : NULL);
    case LOKI_SRC_POD:
        return cstr(k ? k->pod : m ? m->pod : NULL);
    case LOKI_SRC_POD_UID:
        return cstr(k ? k->pod_uid : m ? m->pod_uid : NULL);
    case LOKI_SRC_CONTAINER:
        return cstr(k ? k->container : m ? m->container : NULL);
    case LOKI_SRC_CONTAINER_ID:
        return cstr(k ? k->container_id : m ? m->container_id : NULL);
    case LOKI_SRC_STREAM:
        return cstr(r->stream == DR_STREAM_STDERR ? "stderr" : "stdout");
    case LOKI_SRC_NODE:
        return cstr(k && k->node[0] ? k->node : lay->node);
    case LOKI_SRC_PATH:
        return cstr(m ? m->path : NULL);
    case LOKI_SRC_APP:
        return app_of(k);
    case LOKI_SRC_FIELD:
        return record_key(c, r, a->arg);
    case LOKI_SRC_CONSTANT:
        return cstr(a->arg);
    }
    return cstr(NULL);
}

/* ---- the builder --------------------------------------------------------------------- */

/* A place for bytes the builder made: an offset into its text buffer, since
 * the buffer moves as it grows. */
typedef struct span {
    size_t off, len;
} span;

typedef struct entry {
    uint32_t tenant;
    uint32_t stream;
    uint32_t seq; /* arrival order, to keep the sort stable */
    int64_t ts;
    uint32_t chunk;
    const dr_record *rec;
    bool in_text; /* the line is in the text buffer (at line.off) */
    const char *line;
    span text;
    size_t len;
    uint32_t meta; /* per-record metadata: index of its first pair, else UINT32_MAX */
} entry;

typedef struct stream {
    uint32_t tenant;
    span labels; /* the selector, {a="x", b="y"} */
    span key;    /* tenant and selector: what identifies the stream */
} stream;

/* The builder's memory lives from one batch to the next (loki_builder):
 * a catch-up builds batch after batch of the same size, and fresh buffers
 * each time would cost a page fault for every page they touch. */
typedef struct builder {
    const loki_layout *lay;
    const dr_chunk *const *chunks;
    dr_buf text; /* labels, keys, tenants, repaired and generated lines */
    entry *entries;
    size_t nentries, entries_cap;
    stream *streams;
    size_t nstreams, streams_cap;
    uint32_t *table; /* stream index + 1 by key hash; 0 = empty */
    size_t table_cap;
    span *tenants; /* spans of tenant names; an empty span is "no tenant" */
    size_t ntenants, tenants_cap;
    span *meta_values; /* per-record metadata: nmetadata values per record */
    size_t nmeta_values, meta_values_cap;
    dr_buf meta_json;            /* line_format json: the "kubernetes" object of... */
    long meta_json_chunk;        /* ...this chunk, -1: none yet */
    int32_t (*chunk_streams)[2]; /* per chunk, stdout and stderr stream, -1 unknown */
    size_t chunk_streams_cap;
    dr_buf scratch; /* the packed protobuf or the JSON text, before compression */
    loki_build_stats stats;
} builder;

struct loki_builder {
    builder b;
};

/* Beyond this a buffer is given back after the batch rather than kept. */
#define LOKI_KEEP_BYTES (8u << 20)

static bool grow(void **arr, size_t *cap, size_t want, size_t elem)
{
    if (want <= *cap)
        return true;
    size_t ncap = *cap ? *cap * 2 : 64;
    while (ncap < want)
        ncap *= 2;
    void *p = realloc(*arr, ncap * elem);
    if (!p)
        return false;
    *arr = p;
    *cap = ncap;
    return true;
}

static const char *text_at(const builder *b, span s)
{
    return b->text.p + s.off;
}

/* Appends bytes to the text buffer with invalid UTF-8 repaired. Returns the
 * number of replacements or DR_ENOMEM. */
static long text_add_utf8(builder *b, const char *s, size_t n, span *out)
{
    out->off = b->text.len;
    long bad = dr_utf8_sanitize(&b->text, s, n);
    out->len = b->text.len - out->off;
    return bad;
}

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static int table_rehash(builder *b)
{
    size_t cap = b->table_cap ? b->table_cap * 2 : 64;
    uint32_t *t = calloc(cap, sizeof *t);
    if (!t)
        return DR_ENOMEM;
    for (size_t i = 0; i < b->nstreams; i++) {
        span k = b->streams[i].key;
        size_t j = hash_bytes(text_at(b, k), k.len) & (cap - 1);
        while (t[j])
            j = (j + 1) & (cap - 1);
        t[j] = (uint32_t)i + 1;
    }
    free(b->table);
    b->table = t;
    b->table_cap = cap;
    return 0;
}

/* The tenant of a record: its tenant field, else the static tenant. */
static long tenant_index(builder *b, const dr_chunk *c, const dr_record *r)
{
    const loki_layout *lay = b->lay;
    str v = {"", 0};
    if (lay->tenant_attr.name)
        v = attr_value(lay, &lay->tenant_attr, c, r);
    if (v.n == 0)
        v = cstr(lay->tenant);
    for (size_t i = 0; i < b->ntenants; i++) {
        span t = b->tenants[i];
        if (t.len == v.n && memcmp(text_at(b, t), v.p, v.n) == 0)
            return (long)i;
    }
    if (!grow((void **)&b->tenants, &b->tenants_cap, b->ntenants + 1, sizeof *b->tenants))
        return DR_ENOMEM;
    span t;
    if (text_add_utf8(b, v.p, v.n, &t) < 0)
        return DR_ENOMEM;
    b->tenants[b->ntenants] = t;
    return (long)b->ntenants++;
}

/* Writes the selector of a record's labels to b->scratch. Label values are
 * quoted as Go strings: backslash, quote and newline escaped. */
static int make_selector(builder *b, const dr_chunk *c, const dr_record *r)
{
    const loki_layout *lay = b->lay;
    dr_buf *s = &b->scratch;
    dr_buf_reset(s);
    dr_buf_putc(s, '{');
    bool first = true;
    for (size_t i = 0; i < lay->nlabels; i++) {
        str v = attr_value(lay, &lay->labels[i], c, r);
        if (v.n == 0)
            continue; /* an empty value is no label at all */
        dr_buf_printf(s, "%s%s=\"", first ? "" : ", ", lay->labels[i].name);
        first = false;
        for (size_t k = 0; k < v.n; k++) {
            unsigned char ch = (unsigned char)v.p[k];
            if (ch == '\\' || ch == '"')
                dr_buf_putc(s, '\\');
            if (ch == '\n')
                dr_buf_puts(s, "\\n");
            else if (ch < 0x20)
                dr_buf_printf(s, "\\x%02x", ch);
            else
                dr_buf_putc(s, (char)ch);
        }
        dr_buf_putc(s, '"');
    }
    return dr_buf_putc(s, '}');
}

/* The stream of a record, created when new. */
static long stream_index(builder *b, const dr_chunk *c, const dr_record *r)
{
    long tenant = tenant_index(b, c, r);
    if (tenant < 0 || make_selector(b, c, r) < 0)
        return DR_ENOMEM;
    /* key: tenant number, then the selector */
    char tag[16];
    int tl = snprintf(tag, sizeof tag, "%ld|", tenant);
    if (dr_buf_reserve(&b->scratch, (size_t)tl) < 0)
        return DR_ENOMEM;
    memmove(b->scratch.p + tl, b->scratch.p, b->scratch.len);
    memcpy(b->scratch.p, tag, (size_t)tl);
    b->scratch.len += (size_t)tl;
    const char *key = b->scratch.p;
    size_t klen = b->scratch.len;

    if (b->nstreams * 2 >= b->table_cap && table_rehash(b) < 0)
        return DR_ENOMEM;
    size_t j = hash_bytes(key, klen) & (b->table_cap - 1);
    for (; b->table[j]; j = (j + 1) & (b->table_cap - 1)) {
        stream *st = &b->streams[b->table[j] - 1];
        if (st->key.len == klen && memcmp(text_at(b, st->key), key, klen) == 0)
            return (long)(b->table[j] - 1);
    }
    if (!grow((void **)&b->streams, &b->streams_cap, b->nstreams + 1, sizeof *b->streams))
        return DR_ENOMEM;
    stream *st = &b->streams[b->nstreams];
    memset(st, 0, sizeof *st);
    st->tenant = (uint32_t)tenant;
    /* the key holds the selector after the tag: store it once, repaired */
    span k;
    if (text_add_utf8(b, key, klen, &k) < 0)
        return DR_ENOMEM;
    st->key = k;
    const char *bar = memchr(text_at(b, k), '|', k.len);
    size_t skip = (size_t)(bar - text_at(b, k)) + 1;
    st->labels = (span){k.off + skip, k.len - skip};
    b->table[j] = (uint32_t)b->nstreams + 1;
    return (long)b->nstreams++;
}

static long stream_of(builder *b, uint32_t ci, const dr_record *r)
{
    if (b->lay->labels_per_record || b->lay->tenant_attr.name)
        return stream_index(b, b->chunks[ci], r);
    int32_t *cached = &b->chunk_streams[ci][r->stream == DR_STREAM_STDERR];
    if (*cached < 0) {
        long s = stream_index(b, b->chunks[ci], r);
        if (s < 0)
            return s;
        *cached = (int32_t)s;
    }
    return *cached;
}

/* Per-record structured metadata: the values go to meta_values; returns
 * the index of the first, or UINT32_MAX when the chunk's shared pairs
 * serve (no value comes from the record itself). */
static long add_record_metadata(builder *b, const dr_chunk *c, const dr_record *r)
{
    const loki_layout *lay = b->lay;
    if (!lay->metadata_per_record)
        return UINT32_MAX;
    size_t first = b->nmeta_values;
    if (!grow((void **)&b->meta_values, &b->meta_values_cap, first + lay->nmetadata,
              sizeof *b->meta_values))
        return DR_ENOMEM;
    for (size_t i = 0; i < lay->nmetadata; i++) {
        str v = attr_value(lay, &lay->metadata[i], c, r);
        if (text_add_utf8(b, v.p, v.n, &b->meta_values[b->nmeta_values++]) < 0)
            return DR_ENOMEM;
    }
    return (long)first;
}

static int add_entry(builder *b, const entry *e)
{
    if (!grow((void **)&b->entries, &b->entries_cap, b->nentries + 1, sizeof *b->entries))
        return DR_ENOMEM;
    b->entries[b->nentries] = *e;
    b->entries[b->nentries].seq = (uint32_t)b->nentries;
    b->nentries++;
    return 0;
}

/* How much of [p, p+n) fits in max bytes without cutting a UTF-8
 * sequence (the text is valid UTF-8 by now). */
static size_t utf8_cut(const char *p, size_t n, size_t max)
{
    if (n <= max)
        return n;
    size_t cut = max;
    for (int back = 0; back < 3 && cut > 0 && ((unsigned char)p[cut] & 0xC0) == 0x80; back++)
        cut--;
    return cut > 0 ? cut : max;
}

/* The line of a record, repaired: either the message itself (no copy) or
 * bytes in the text buffer. */
static int make_line(builder *b, uint32_t ci, const dr_record *r, entry *e)
{
    const loki_layout *lay = b->lay;
    const char *p = r->msg;
    size_t n = r->msg_len;
    if (lay->line_format == LOKI_LINE_JSON) {
        dr_buf *s = &b->scratch;
        dr_buf_reset(s);
        if (b->meta_json_chunk != (long)ci) {
            dr_buf_reset(&b->meta_json);
            dr_ndjson_encode_meta(b->chunks[ci], &b->meta_json);
            b->meta_json_chunk = (long)ci;
        }
        long bad = dr_ndjson_encode_record(r, &b->meta_json, s);
        if (bad < 0)
            return DR_ENOMEM;
        b->stats.invalid_utf8 += bad > 0;
        e->in_text = true;
        e->text.off = b->text.len;
        e->text.len = s->len - 1; /* without its newline */
        return dr_buf_append(&b->text, s->p, e->text.len);
    }
    if (dr_utf8_valid_prefix(p, n) == n) {
        e->in_text = false;
        e->line = p;
        e->text.len = n;
        return 0;
    }
    long bad = text_add_utf8(b, p, n, &e->text);
    if (bad < 0)
        return DR_ENOMEM;
    b->stats.invalid_utf8++;
    e->in_text = true;
    return 0;
}

static const char *entry_line(const builder *b, const entry *e)
{
    return e->in_text ? text_at(b, e->text) : e->line;
}

/* One record: its entry, or its pieces when it is too long. */
static int add_record(builder *b, uint32_t ci, const dr_record *r)
{
    const loki_layout *lay = b->lay;
    entry e = {.chunk = ci, .rec = r, .ts = r->time_ns};
    long s = stream_of(b, ci, r);
    if (s < 0)
        return DR_ENOMEM;
    e.stream = (uint32_t)s;
    e.tenant = b->streams[s].tenant;
    if (make_line(b, ci, r, &e) < 0)
        return DR_ENOMEM;
    long meta = add_record_metadata(b, b->chunks[ci], r);
    if (meta < 0)
        return DR_ENOMEM;
    e.meta = (uint32_t)meta;
    size_t total = e.text.len;
    if (total <= lay->max_line_bytes) {
        e.len = total;
        return add_entry(b, &e);
    }
    if (lay->too_long == LOKI_TOO_LONG_DROP) {
        b->stats.too_long++;
        return 0;
    }
    /* Pieces keep their order in Loki through timestamps a nanosecond
     * apart: entries with the same timestamp come back sorted by line. */
    size_t off = 0;
    int64_t ts = r->time_ns;
    while (off < total) {
        const char *line = entry_line(b, &e);
        size_t len = utf8_cut(line + off, total - off, lay->max_line_bytes);
        entry piece = e;
        piece.ts = ts++;
        piece.len = len;
        if (piece.in_text)
            piece.text.off = e.text.off + off;
        else
            piece.line = e.line + off;
        if (add_entry(b, &piece) < 0)
            return DR_ENOMEM;
        off += len;
        if (lay->too_long == LOKI_TOO_LONG_TRUNCATE) {
            b->stats.truncated++;
            return 0;
        }
    }
    b->stats.split++;
    return 0;
}

/* Tenant, then stream, then time, then arrival: each tenant's entries in
 * one run, each stream's in one run inside it, in order. */
static int cmp_entries(const void *pa, const void *pb)
{
    const entry *a = pa, *b = pb;
    if (a->tenant != b->tenant)
        return a->tenant < b->tenant ? -1 : 1;
    if (a->stream != b->stream)
        return a->stream < b->stream ? -1 : 1;
    if (a->ts != b->ts)
        return a->ts < b->ts ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* ---- protobuf ------------------------------------------------------------------------ */

static ProtobufCBinaryData bin(const char *p, size_t n)
{
    return (ProtobufCBinaryData){.len = n, .data = (uint8_t *)p};
}

/* The structured metadata pairs of a chunk (values from its metadata),
 * shared by its entries; pairs with an empty value are left out. */
static size_t chunk_pairs(const builder *b, const dr_chunk *c, Drover__Loki__LabelPair *pairs,
                          Drover__Loki__LabelPair **ptrs)
{
    const loki_layout *lay = b->lay;
    size_t n = 0;
    dr_record none = {0};
    for (size_t i = 0; i < lay->nmetadata; i++) {
        str v = attr_value(lay, &lay->metadata[i], c, &none);
        if (v.n == 0)
            continue;
        drover__loki__label_pair__init(&pairs[n]);
        pairs[n].name = bin(lay->metadata[i].name, strlen(lay->metadata[i].name));
        pairs[n].value = bin(v.p, v.n);
        ptrs[n] = &pairs[n];
        n++;
    }
    return n;
}

typedef struct pb_parts {
    Drover__Loki__Stream *streams;
    Drover__Loki__Stream **stream_ptrs;
    Drover__Loki__Entry *entries;
    Drover__Loki__Entry **entry_ptrs;
    Drover__Loki__Timestamp *stamps;
    Drover__Loki__LabelPair *pairs; /* per chunk (shared) or per entry */
    Drover__Loki__LabelPair **pair_ptrs;
} pb_parts;

static void pb_parts_free(pb_parts *p)
{
    free(p->streams);
    free(p->stream_ptrs);
    free(p->entries);
    free(p->entry_ptrs);
    free(p->stamps);
    free(p->pairs);
    free(p->pair_ptrs);
}

static int pb_parts_alloc(pb_parts *p, size_t nstreams, size_t nentries, size_t npairs)
{
    p->streams = calloc(nstreams + 1, sizeof *p->streams);
    p->stream_ptrs = calloc(nstreams + 1, sizeof *p->stream_ptrs);
    p->entries = calloc(nentries + 1, sizeof *p->entries);
    p->entry_ptrs = calloc(nentries + 1, sizeof *p->entry_ptrs);
    p->stamps = calloc(nentries + 1, sizeof *p->stamps);
    p->pairs = calloc(npairs + 1, sizeof *p->pairs);
    p->pair_ptrs = calloc(npairs + 1, sizeof *p->pair_ptrs);
    if (!p->streams || !p->stream_ptrs || !p->entries || !p->entry_ptrs || !p->stamps ||
        !p->pairs || !p->pair_ptrs)
        return DR_ENOMEM;
    return 0;
}

/* Fills the metadata of entry e (protobuf), using the chunk's shared pairs
 * (already made, at chunk_first[e->chunk]) or the record's own. */
static void pb_entry_metadata(const builder *b, const entry *e, Drover__Loki__Entry *pe,
                              pb_parts *p, const size_t *chunk_first, const size_t *chunk_n,
                              size_t *next_pair)
{
    const loki_layout *lay = b->lay;
    if (e->meta == UINT32_MAX) {
        pe->structured_metadata = &p->pair_ptrs[chunk_first[e->chunk]];
        pe->n_structured_metadata = chunk_n[e->chunk];
        return;
    }
    size_t first = *next_pair;
    for (size_t i = 0; i < lay->nmetadata; i++) {
        span val = b->meta_values[e->meta + i];
        if (val.len == 0)
            continue;
        Drover__Loki__LabelPair *lp = &p->pairs[*next_pair];
        drover__loki__label_pair__init(lp);
        lp->name = bin(lay->metadata[i].name, strlen(lay->metadata[i].name));
        lp->value = bin(text_at(b, val), val.len);
        p->pair_ptrs[*next_pair] = lp;
        (*next_pair)++;
    }
    pe->structured_metadata = &p->pair_ptrs[first];
    pe->n_structured_metadata = *next_pair - first;
}

/* Entry i (of the sorted entries) as protobuf, in the parts' slot i. */
static void pb_entry(const builder *b, const entry *e, size_t i, pb_parts *p,
                     const size_t *chunk_first, const size_t *chunk_n, size_t *next_pair)
{
    Drover__Loki__Entry *pe = &p->entries[i];
    drover__loki__entry__init(pe);
    Drover__Loki__Timestamp *ts = &p->stamps[i];
    drover__loki__timestamp__init(ts);
    ts->seconds = e->ts / 1000000000;
    ts->nanos = (int32_t)(e->ts % 1000000000);
    if (ts->nanos < 0) { /* before 1970: the nanos are never negative */
        ts->nanos += 1000000000;
        ts->seconds -= 1;
    }
    pe->timestamp = ts;
    pe->line = bin(e->in_text ? text_at(b, e->text) : e->line, e->len);
    pb_entry_metadata(b, e, pe, p, chunk_first, chunk_n, next_pair);
    p->entry_ptrs[i] = pe;
}

/* The entries [from, to) (one tenant's, sorted) as a snappy-compressed
 * PushRequest: one Stream message per run of a stream. */
static int encode_protobuf(builder *b, size_t from, size_t to, size_t nchunks, dr_buf *out,
                           size_t *raw)
{
    const loki_layout *lay = b->lay;
    size_t n = to - from;
    size_t npairs = lay->metadata_per_record ? n * lay->nmetadata : nchunks * lay->nmetadata;
    pb_parts p = {0};
    size_t *chunk_first = calloc(nchunks + 1, sizeof *chunk_first);
    size_t *chunk_n = calloc(nchunks + 1, sizeof *chunk_n);
    /* protobuf-c wants the selectors NUL-terminated: copies, freed below */
    char **labels = calloc(b->nstreams + 1, sizeof *labels);
    int rc = DR_ENOMEM;
    if (!chunk_first || !chunk_n || !labels || pb_parts_alloc(&p, b->nstreams, n, npairs) < 0)
        goto out;
    size_t next_pair = 0;
    if (!lay->metadata_per_record) {
        for (size_t c = 0; c < nchunks; c++) {
            chunk_first[c] = next_pair;
            chunk_n[c] = chunk_pairs(b, b->chunks[c], &p.pairs[next_pair], &p.pair_ptrs[next_pair]);
            next_pair += chunk_n[c];
        }
    }
    Drover__Loki__PushRequest req = DROVER__LOKI__PUSH_REQUEST__INIT;
    req.streams = p.stream_ptrs;
    Drover__Loki__Stream *ps = NULL;
    for (size_t i = from; i < to; i++) {
        const entry *e = &b->entries[i];
        if (i == from || e->stream != b->entries[i - 1].stream) {
            const stream *st = &b->streams[e->stream];
            char *sel = strndup(text_at(b, st->labels), st->labels.len);
            if (!sel)
                goto out;
            labels[req.n_streams] = sel;
            ps = &p.streams[req.n_streams];
            drover__loki__stream__init(ps);
            ps->labels = sel;
            ps->entries = &p.entry_ptrs[i - from];
            p.stream_ptrs[req.n_streams++] = ps;
        }
        pb_entry(b, e, i - from, &p, chunk_first, chunk_n, &next_pair);
        ps->n_entries++;
    }
    size_t size = drover__loki__push_request__get_packed_size(&req);
    dr_buf_reset(&b->scratch);
    if (dr_buf_reserve(&b->scratch, size ? size : 1) == 0) {
        uint8_t *packed = (uint8_t *)b->scratch.p;
        drover__loki__push_request__pack(&req, packed);
        *raw = size;
        rc = dr_compress_snappy(packed, size, out);
    }
out:
    for (size_t s = 0; labels && s < b->nstreams; s++)
        free(labels[s]);
    free(labels);
    free(chunk_first);
    free(chunk_n);
    pb_parts_free(&p);
    return rc;
}

/* ---- JSON ------------------------------------------------------------------------------ */

/* {"a":"x","b":"y"} from the label set of a stream's entry: the values are
 * taken again from the record rather than parsed back out of the
 * selector. */
static void json_stream_labels(builder *b, const entry *e, dr_buf *o)
{
    const loki_layout *lay = b->lay;
    dr_buf_putc(o, '{');
    bool first = true;
    for (size_t i = 0; i < lay->nlabels; i++) {
        str v = attr_value(lay, &lay->labels[i], b->chunks[e->chunk], e->rec);
        if (v.n == 0)
            continue;
        if (!first)
            dr_buf_putc(o, ',');
        first = false;
        dr_json_string(o, lay->labels[i].name, strlen(lay->labels[i].name));
        dr_buf_putc(o, ':');
        dr_json_string(o, v.p, v.n);
    }
    dr_buf_putc(o, '}');
}

static void json_entry_metadata(builder *b, const entry *e, dr_buf *o)
{
    const loki_layout *lay = b->lay;
    bool any = false;
    dr_record none = {0};
    for (size_t i = 0; i < lay->nmetadata; i++) {
        str v;
        if (e->meta == UINT32_MAX) {
            v = attr_value(lay, &lay->metadata[i], b->chunks[e->chunk], &none);
        } else {
            span val = b->meta_values[e->meta + i];
            v = (str){text_at(b, val), val.len};
        }
        if (v.n == 0)
            continue;
        dr_buf_puts(o, any ? "," : ",{");
        any = true;
        dr_json_string(o, lay->metadata[i].name, strlen(lay->metadata[i].name));
        dr_buf_putc(o, ':');
        dr_json_string(o, v.p, v.n);
    }
    if (any)
        dr_buf_putc(o, '}');
}

/* The entries [from, to) (one tenant's, sorted) as a push request in
 * JSON, gzipped if asked: one stream object per run of a stream. */
static int encode_json(builder *b, size_t from, size_t to, dr_buf *out, size_t *raw)
{
    dr_buf o = b->scratch; /* taken back below, grown or not */
    o.len = 0;
    dr_buf_puts(&o, "{\"streams\":[");
    for (size_t i = from; i < to; i++) {
        const entry *e = &b->entries[i];
        bool starts = i == from || e->stream != b->entries[i - 1].stream;
        if (starts) {
            dr_buf_puts(&o, i == from ? "{\"stream\":" : "]},{\"stream\":");
            json_stream_labels(b, e, &o);
            dr_buf_puts(&o, ",\"values\":[");
        }
        dr_buf_printf(&o, "%s[\"%lld\",", starts ? "" : ",", (long long)e->ts);
        /* the line is valid UTF-8 by now: only escaping happens here */
        dr_json_string(&o, e->in_text ? text_at(b, e->text) : e->line, e->len);
        json_entry_metadata(b, e, &o);
        dr_buf_putc(&o, ']');
    }
    int rc = dr_buf_puts(&o, to > from ? "]}]}" : "]}");
    if (rc == 0) {
        *raw = o.len;
        rc = dr_compress(b->lay->gzip ? DR_COMPRESS_GZIP : DR_COMPRESS_NONE, o.p, o.len, out);
    }
    b->scratch = o;
    return rc;
}

/* ---- the whole batch --------------------------------------------------------------------- */

/* Ready for the next batch: counts back to zero, memory kept (up to
 * LOKI_KEEP_BYTES per buffer). */
static void builder_reset(builder *b)
{
    b->text.len = 0;
    b->scratch.len = 0;
    b->meta_json.len = 0;
    if (b->text.cap > LOKI_KEEP_BYTES)
        dr_buf_free(&b->text);
    if (b->scratch.cap > LOKI_KEEP_BYTES)
        dr_buf_free(&b->scratch);
    if (b->entries_cap * sizeof *b->entries > LOKI_KEEP_BYTES) {
        free(b->entries);
        b->entries = NULL;
        b->entries_cap = 0;
    }
    b->nentries = b->nstreams = b->ntenants = b->nmeta_values = 0;
    if (b->table)
        memset(b->table, 0, b->table_cap * sizeof *b->table);
    b->meta_json_chunk = -1;
    memset(&b->stats, 0, sizeof b->stats);
}

static void builder_free(builder *b)
{
    dr_buf_free(&b->text);
    dr_buf_free(&b->scratch);
    free(b->entries);
    free(b->streams);
    free(b->table);
    free(b->tenants);
    free(b->meta_values);
    dr_buf_free(&b->meta_json);
    free(b->chunk_streams);
}

void loki_requests_free(loki_request *reqs, size_t n)
{
    for (size_t i = 0; reqs && i < n; i++) {
        free(reqs[i].tenant);
        dr_buf_free(&reqs[i].body);
    }
    free(reqs);
}

static int collect_entries(builder *b, size_t nchunks)
{
    for (uint32_t ci = 0; ci < nchunks; ci++) {
        const dr_chunk *c = b->chunks[ci];
        b->chunk_streams[ci][0] = b->chunk_streams[ci][1] = -1;
        for (uint32_t i = 0; i < c->nrecs; i++) {
            if (c->recs[i].flags & DR_REC_DROPPED)
                continue;
            if (add_record(b, ci, &c->recs[i]) < 0)
                return DR_ENOMEM;
        }
    }
    return 0;
}

/* Where the request that starts at entry `from` ends: at the tenant's end,
 * or before the entry that would take its lines past max_request_bytes
 * (Loki hands a push to its ingesters in one message of bounded size, 4
 * MiB by default, so a record split in many pieces must not go in one). */
static size_t request_end(const builder *b, size_t from)
{
    size_t bytes = 0, i = from;
    for (; i < b->nentries && b->entries[i].tenant == b->entries[from].tenant; i++) {
        size_t cost = b->entries[i].len + 64; /* timestamp, metadata, framing */
        if (i > from && bytes + cost > b->lay->max_request_bytes)
            break;
        bytes += cost;
    }
    return i;
}

/* Entries and records (pieces of one record count once) of a request. */
static void count_request(const builder *b, size_t from, size_t to, loki_request *r)
{
    r->entries = to - from;
    for (size_t i = from; i < to; i++)
        if (i == from || b->entries[i].rec != b->entries[i - 1].rec)
            r->records++;
}

loki_builder *loki_builder_new(void)
{
    loki_builder *lb = calloc(1, sizeof *lb);
    if (lb)
        lb->b.meta_json_chunk = -1;
    return lb;
}

void loki_builder_free(loki_builder *lb)
{
    if (!lb)
        return;
    builder_free(&lb->b);
    free(lb);
}

int loki_build(loki_builder *lb, const loki_layout *lay, const dr_chunk *const *chunks,
               size_t nchunks, loki_request **reqs, size_t *nreqs, loki_build_stats *stats)
{
    builder *bp = &lb->b;
    builder_reset(bp);
    bp->lay = lay;
    bp->chunks = chunks;
    *reqs = NULL;
    *nreqs = 0;
    memset(stats, 0, sizeof *stats);
    int rc = DR_ENOMEM;
    if (grow((void **)&bp->chunk_streams, &bp->chunk_streams_cap, nchunks + 1,
             sizeof *bp->chunk_streams))
        memset(bp->chunk_streams, 0, (nchunks + 1) * sizeof *bp->chunk_streams);
    else
        goto out;
    if (collect_entries(bp, nchunks) < 0)
        goto out;
    qsort(bp->entries, bp->nentries, sizeof *bp->entries, cmp_entries);
    /* at most one request per entry; usually one per tenant */
    loki_request *out = calloc(bp->nentries + 1, sizeof *out);
    if (!out)
        goto out;
    size_t n = 0;
    rc = 0;
    for (size_t from = 0; from < bp->nentries && rc == 0;) {
        size_t to = request_end(bp, from);
        loki_request *r = &out[n++];
        count_request(bp, from, to, r);
        span t = bp->tenants[bp->entries[from].tenant];
        if (t.len && !(r->tenant = strndup(text_at(bp, t), t.len)))
            rc = DR_ENOMEM;
        if (rc == 0)
            rc = lay->format == LOKI_FORMAT_PROTOBUF
                     ? encode_protobuf(bp, from, to, nchunks, &r->body, &r->raw_bytes)
                     : encode_json(bp, from, to, &r->body, &r->raw_bytes);
        from = to;
    }
    if (rc < 0) {
        loki_requests_free(out, n);
        goto out;
    }
    *reqs = out;
    *nreqs = n;
    *stats = bp->stats;
    rc = 0;
out:
    return rc;
}

/* ---- answers ------------------------------------------------------------------------------ */

/* The reason of one error message (up to end). */
static const char *reason_of(const char *msg, size_t len)
{
    static const struct {
        const char *text, *reason;
    } known[] = {
        {"too far behind", "out_of_order"}, {"out of order", "out_of_order"},
        {"timestamp too old", "too_old"},   {"timestamp too new", "too_new"},
        {"max entry size", "too_long"},     {"line too long", "too_long"},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (memmem(msg, len, known[i].text, strlen(known[i].text)))
            return known[i].reason;
    return "rejected";
}

/* True when the message is about one entry (the rest of the request went
 * in), not about the request as a whole. */
static bool about_one_entry(const char *msg, size_t len)
{
    return memmem(msg, len, "entry for stream", 16) || memmem(msg, len, "max entry size", 14) ||
           memmem(msg, len, "entry with timestamp", 20);
}

static size_t add_refusal(loki_refusal *out, size_t n, size_t max, const char *reason,
                          uint64_t count)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(out[i].reason, reason) == 0) {
            out[i].count += count;
            return n;
        }
    }
    if (n == max)
        return n;
    out[n].reason = reason;
    out[n].count = count;
    return n + 1;
}

size_t loki_refusals(const char *body, uint64_t entries, loki_refusal *out, size_t max)
{
    static const char like[] = " errors like: ";
    size_t n = 0;
    uint64_t total = 0;
    const char *p = body ? strstr(body, like) : NULL;
    while (p && max) {
        /* the count is the number just before " errors like: " */
        const char *d = p;
        while (d > body && d[-1] >= '0' && d[-1] <= '9')
            d--;
        uint64_t count = strtoull(d, NULL, 10);
        const char *msg = p + sizeof like - 1;
        const char *next = strstr(msg, like);
        size_t len = next ? (size_t)(next - msg) : strlen(msg);
        n = add_refusal(out, n, max, reason_of(msg, len), count);
        total += count;
        p = next;
    }
    if (n == 0 && max) {
        size_t len = body ? strlen(body) : 0;
        bool one = body && about_one_entry(body, len);
        n = add_refusal(out, 0, max, body ? reason_of(body, len) : "rejected", one ? 1 : entries);
        total = out[0].count;
    }
    /* never more than the request held */
    for (size_t i = 0; i < n && total > entries; i++) {
        uint64_t cut = total - entries < out[i].count ? total - entries : out[i].count;
        out[i].count -= cut;
        total -= cut;
    }
    return n;
}
