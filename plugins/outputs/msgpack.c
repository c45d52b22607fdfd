#include "msgpack.h"

#include <string.h>

#include "json.h"
#include "jsonp.h"

/* ---- the writer ------------------------------------------------------------------- */

/* Big-endian, as msgpack stores every length. */
static void put_be16(char *o, uint32_t v)
{
    o[0] = (char)(v >> 8);
    o[1] = (char)v;
}

static void put_be32(char *o, uint32_t v)
{
    o[0] = (char)(v >> 24);
    o[1] = (char)(v >> 16);
    o[2] = (char)(v >> 8);
    o[3] = (char)v;
}

/* A container header: the fix form holds up to fix_max items in its low
 * bits; beyond that a 16- or 32-bit count follows its own type byte. */
static int put_container(dr_buf *b, uint32_t n, unsigned fix, uint32_t fix_max, unsigned t16,
                         unsigned t32)
{
    char h[5];
    size_t len;
    if (n <= fix_max) {
        h[0] = (char)(fix | n);
        len = 1;
    } else if (n <= 0xFFFF) {
        h[0] = (char)t16;
        put_be16(h + 1, n);
        len = 3;
    } else {
        h[0] = (char)t32;
        put_be32(h + 1, n);
        len = 5;
    }
    return dr_buf_append(b, h, len);
}

int dr_mp_map(dr_buf *b, uint32_t n)
{
    return put_container(b, n, 0x80, 15, 0xDE, 0xDF);
}

int dr_mp_array(dr_buf *b, uint32_t n)
{
    return put_container(b, n, 0x90, 15, 0xDC, 0xDD);
}

/* Bytes of the smallest str header for a string of n bytes. */
static size_t str_header_len(size_t n)
{
    return n < 32 ? 1 : n <= 0xFF ? 2 : n <= 0xFFFF ? 3 : 5;
}

/* Writes the header str_header_len(n) says, at o. */
static void put_str_header(char *o, size_t n)
{
    if (n < 32) {
        o[0] = (char)(0xA0 | n);
    } else if (n <= 0xFF) {
        o[0] = (char)0xD9;
        o[1] = (char)n;
    } else if (n <= 0xFFFF) {
        o[0] = (char)0xDA;
        put_be16(o + 1, (uint32_t)n);
    } else {
        o[0] = (char)0xDB;
        put_be32(o + 1, (uint32_t)n);
    }
}

int dr_mp_str(dr_buf *b, const char *s, size_t n)
{
    if (n > UINT32_MAX)
        return DR_EINVAL;
    size_t h = str_header_len(n);
    if (dr_buf_reserve(b, h + n) < 0)
        return DR_ENOMEM;
    put_str_header(b->p + b->len, n);
    b->len += h;
    return dr_buf_append(b, s, n);
}

long dr_mp_str_utf8(dr_buf *b, const char *s, size_t n)
{
    /* The header is written for the length the string has when it is valid
     * (nearly always), and moved only when replacements changed its size. */
    size_t at = b->len, h = str_header_len(n);
    if (dr_buf_reserve(b, h + n) < 0)
        return DR_ENOMEM;
    b->len += h;
    long bad = dr_utf8_sanitize(b, s, n);
    if (bad < 0) {
        b->len = at;
        return bad;
    }
    size_t len = b->len - at - h;
    if (len > UINT32_MAX) {
        b->len = at;
        return DR_EINVAL;
    }
    size_t h2 = str_header_len(len);
    if (h2 != h) {
        /* Replacements only make a string longer, so the header grows. */
        if (dr_buf_reserve(b, h2 - h) < 0) {
            b->len = at;
            return DR_ENOMEM;
        }
        memmove(b->p + at + h2, b->p + at + h, len);
        b->len += h2 - h;
    }
    put_str_header(b->p + at, len);
    return bad;
}

int dr_mp_nil(dr_buf *b)
{
    return dr_buf_putc(b, (char)0xC0);
}

int dr_mp_bool(dr_buf *b, bool v)
{
    return dr_buf_putc(b, (char)(v ? 0xC3 : 0xC2));
}

int dr_mp_int(dr_buf *b, int64_t v)
{
    char o[9];
    if (v >= 0 && v <= 0x7F)
        return dr_buf_putc(b, (char)v);
    if (v < 0 && v >= -32)
        return dr_buf_putc(b, (char)(0xE0 | (v + 32)));
    /* int64 always: simple, and every reader takes it */
    o[0] = (char)0xD3;
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        o[1 + i] = (char)(u >> (56 - 8 * i));
    return dr_buf_append(b, o, 9);
}

int dr_mp_float(dr_buf *b, double v)
{
    char o[9];
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    o[0] = (char)0xCB;
    for (int i = 0; i < 8; i++)
        o[1 + i] = (char)(u >> (56 - 8 * i));
    return dr_buf_append(b, o, 9);
}

/* One parsed JSON value as msgpack. Returns the replacement count of
 * invalid UTF-8 in its strings, or a negative DR_E* code. */
static long put_json_value(dr_buf *b, const dr_jv *v)
{
    int64_t i;
    double d;
    long bad = 0;
    switch (v->type) {
    case DR_JV_NULL:
        return dr_mp_nil(b);
    case DR_JV_FALSE:
    case DR_JV_TRUE:
        return dr_mp_bool(b, v->type == DR_JV_TRUE);
    case DR_JV_NUMBER:
        if (dr_jv_int(v, &i))
            return dr_mp_int(b, i);
        return dr_jv_double(v, &d) ? dr_mp_float(b, d) : dr_mp_str(b, v->str, v->len);
    case DR_JV_STRING:
        return dr_mp_str_utf8(b, v->str, v->len);
    case DR_JV_ARRAY:
    case DR_JV_OBJECT:
        if ((v->type == DR_JV_ARRAY ? dr_mp_array(b, v->len) : dr_mp_map(b, v->len)) < 0)
            return DR_ENOMEM;
        for (const dr_jv *m = v->child; m; m = m->next) {
            long mb = 0;
            if (v->type == DR_JV_OBJECT && (mb = dr_mp_str_utf8(b, m->key, m->key_len)) < 0)
                return mb;
            long vb = put_json_value(b, m);
            if (vb < 0)
                return vb;
            bad += mb + vb;
        }
        return bad;
    }
    return DR_EINVAL;
}

/* A field holding JSON text, as the msgpack value it stands for (the text
 * as a str, should it not parse). */
static long put_json_field(dr_buf *b, const dr_field *f, dr_json_doc **doc)
{
    const dr_jv *root;
    if (!*doc)
        *doc = dr_json_doc_new();
    if (*doc && dr_json_parse(*doc, f->val, f->val_len, NULL, &root, NULL) == 0)
        return put_json_value(b, root);
    return dr_mp_str_utf8(b, f->val, f->val_len);
}

/* ---- records ------------------------------------------------------------------------ */

static const char *stream_name(uint8_t s)
{
    return s == DR_STREAM_STDERR ? "stderr" : "stdout";
}

static int put_key(dr_buf *b, const char *key)
{
    return dr_mp_str(b, key, strlen(key));
}

static long put_meta_pair(dr_buf *b, const char *key, const char *val)
{
    if (put_key(b, key) < 0)
        return DR_ENOMEM;
    return dr_mp_str_utf8(b, val, strlen(val));
}

static int put_kv_map(dr_buf *b, const char *key, const dr_kv *kv, uint32_t n)
{
    if (put_key(b, key) < 0 || dr_mp_map(b, n) < 0)
        return DR_ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        if (put_meta_pair(b, kv[i].key, kv[i].val) < 0)
            return DR_ENOMEM;
    return 0;
}

/* The kubernetes filter's metadata: the same keys as the JSON form, empty
 * values and lists left out. */
static int encode_kube(const dr_kube_meta *k, dr_buf *b)
{
    const struct {
        const char *key, *val;
    } scalars[] = {
        {"namespace", k->namespace_},
        {"pod", k->pod},
        {"pod_uid", k->pod_uid},
        {"container", k->container},
        {"container_id", k->container_id},
        {"image", k->image},
        {"node", k->node},
        {"pod_ip", k->pod_ip},
        {"owner_kind", k->owner_kind},
        {"owner_name", k->owner_name},
    };
    uint32_t pairs = (k->nlabels > 0) + (k->nannotations > 0) + (k->nnamespace_labels > 0);
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++)
        pairs += scalars[i].val[0] != '\0';
    if (put_key(b, "kubernetes") < 0 || dr_mp_map(b, pairs) < 0)
        return DR_ENOMEM;
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++)
        if (scalars[i].val[0] && put_meta_pair(b, scalars[i].key, scalars[i].val) < 0)
            return DR_ENOMEM;
    if ((k->nlabels && put_kv_map(b, "labels", k->labels, k->nlabels) < 0) ||
        (k->nannotations && put_kv_map(b, "annotations", k->annotations, k->nannotations) < 0) ||
        (k->nnamespace_labels &&
         put_kv_map(b, "namespace_labels", k->namespace_labels, k->nnamespace_labels) < 0))
        return DR_ENOMEM;
    return 0;
}

int dr_msgpack_encode_meta(const dr_chunk *c, dr_buf *b)
{
    if (!c->meta && !c->kube)
        return 0;
    if (c->kube)
        return encode_kube(c->kube, b);
    const dr_meta *m = c->meta;
    if (put_key(b, "kubernetes") < 0 || dr_mp_map(b, 5) < 0 ||
        put_meta_pair(b, "namespace", m->namespace_) < 0 || put_meta_pair(b, "pod", m->pod) < 0 ||
        put_meta_pair(b, "pod_uid", m->pod_uid) < 0 ||
        put_meta_pair(b, "container", m->container) < 0 ||
        put_meta_pair(b, "container_id", m->container_id) < 0)
        return DR_ENOMEM;
    return 0;
}

long dr_msgpack_encode_record(const dr_record *r, const dr_buf *meta, dr_buf *b, dr_json_doc **doc)
{
    char ts[40];
    size_t tn = dr_format_rfc3339nano(r->time_ns, ts);
    uint32_t pairs = 3 + (uint32_t)r->nfields + (meta->len ? 1 : 0);
    if (dr_buf_reserve(b, r->msg_len + meta->len + 64) < 0 || dr_mp_map(b, pairs) < 0 ||
        put_key(b, "time") < 0 || dr_mp_str(b, ts, tn) < 0 || put_key(b, "stream") < 0 ||
        put_key(b, stream_name(r->stream)) < 0 || put_key(b, "message") < 0)
        return DR_ENOMEM;
    long bad = dr_mp_str_utf8(b, r->msg, r->msg_len);
    for (uint16_t i = 0; i < r->nfields && bad >= 0; i++) {
        const dr_field *f = &r->fields[i];
        if (dr_mp_str_utf8(b, f->key, f->key_len) < 0)
            return DR_ENOMEM;
        long fb = f->type == DR_FIELD_JSON ? put_json_field(b, f, doc)
                                           : dr_mp_str_utf8(b, f->val, f->val_len);
        bad = fb < 0 ? fb : bad + fb;
    }
    if (bad >= 0 && dr_buf_append(b, meta->p, meta->len) < 0)
        return DR_ENOMEM;
    return bad;
}

long dr_msgpack_encode_chunk(const dr_chunk *c, dr_buf *out)
{
    dr_buf meta = {0};
    if (dr_msgpack_encode_meta(c, &meta) < 0) {
        dr_buf_free(&meta);
        return DR_ENOMEM;
    }
    size_t start = out->len;
    long bad_records = 0;
    dr_json_doc *doc = NULL; /* made on the first JSON field */
    for (uint32_t i = 0; i < c->nrecs; i++) {
        const dr_record *r = &c->recs[i];
        if (r->flags & DR_REC_DROPPED)
            continue;
        long bad = dr_msgpack_encode_record(r, &meta, out, &doc);
        if (bad < 0) {
            out->len = start;
            bad_records = bad;
            break;
        }
        bad_records += bad > 0;
    }
    dr_json_doc_free(doc);
    dr_buf_free(&meta);
    return bad_records;
}
