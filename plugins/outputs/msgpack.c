#include "msgpack.h"

#include <string.h>

#include "json.h"

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

/* The "kubernetes" pair of a chunk's records, encoded once per chunk. */
static int encode_meta(const dr_meta *m, dr_buf *b)
{
    if (put_key(b, "kubernetes") < 0 || dr_mp_map(b, 5) < 0 ||
        put_meta_pair(b, "namespace", m->namespace_) < 0 || put_meta_pair(b, "pod", m->pod) < 0 ||
        put_meta_pair(b, "pod_uid", m->pod_uid) < 0 ||
        put_meta_pair(b, "container", m->container) < 0 ||
        put_meta_pair(b, "container_id", m->container_id) < 0)
        return DR_ENOMEM;
    return 0;
}

static long encode_record(const dr_record *r, const dr_buf *meta, dr_buf *b)
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
        long fb = dr_mp_str_utf8(b, f->val, f->val_len);
        bad = fb < 0 ? fb : bad + fb;
    }
    if (bad >= 0 && dr_buf_append(b, meta->p, meta->len) < 0)
        return DR_ENOMEM;
    return bad;
}

long dr_msgpack_encode_chunk(const dr_chunk *c, dr_buf *out)
{
    dr_buf meta = {0};
    if (c->meta && encode_meta(c->meta, &meta) < 0) {
        dr_buf_free(&meta);
        return DR_ENOMEM;
    }
    size_t start = out->len;
    long bad_records = 0;
    for (uint32_t i = 0; i < c->nrecs; i++) {
        const dr_record *r = &c->recs[i];
        if (r->flags & DR_REC_DROPPED)
            continue;
        long bad = encode_record(r, &meta, out);
        if (bad < 0) {
            out->len = start;
            dr_buf_free(&meta);
            return bad;
        }
        bad_records += bad > 0;
    }
    dr_buf_free(&meta);
    return bad_records;
}
