/*
 * The loki output's request builder. The protobuf body is decoded here with
 * a wire reader of the test's own (not protobuf-c), so that the field
 * numbers and wire types are checked against Loki's push schema as
 * ../shared/fixtures/remote-write/PROTOCOLS.md (section 3) lays it out:
 *
 *   PushRequest  1 streams (message, repeated)
 *   Stream       1 labels (string)  2 entries (message, repeated)
 *   Entry        1 timestamp (message: 1 seconds int64, 2 nanos int32)
 *                2 line (string)    3 structured metadata (repeated pair)
 *   LabelPair    1 name  2 value
 */
#include <snappy-c.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../../plugins/outputs/loki/loki.h"
#include "test.h"

/* ---- a protobuf wire reader ------------------------------------------------------- */

typedef struct wire {
    const uint8_t *p, *end;
    bool bad;
} wire;

typedef struct field {
    uint32_t num, type;
    uint64_t varint;
    const uint8_t *data;
    size_t len;
} field;

static uint64_t read_varint(wire *w)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (w->p >= w->end) {
            w->bad = true;
            return 0;
        }
        uint8_t b = *w->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    w->bad = true;
    return 0;
}

/* The next field, or false at the end (or on a malformed message). */
static bool next_field(wire *w, field *f)
{
    if (w->p >= w->end || w->bad)
        return false;
    uint64_t key = read_varint(w);
    f->num = (uint32_t)(key >> 3);
    f->type = (uint32_t)(key & 7);
    f->data = NULL;
    f->len = 0;
    if (f->type == 0) {
        f->varint = read_varint(w);
    } else if (f->type == 2) {
        uint64_t n = read_varint(w);
        if (n > (uint64_t)(w->end - w->p)) {
            w->bad = true;
            return false;
        }
        f->data = w->p;
        f->len = (size_t)n;
        w->p += n;
    } else {
        w->bad = true; /* the push schema uses no other wire type */
        return false;
    }
    return !w->bad;
}

static wire sub(const field *f)
{
    return (wire){f->data, f->data + f->len, false};
}

/* A decoded entry, flattened for checking. */
typedef struct got_entry {
    char labels[256];
    int64_t seconds, nanos;
    char line[64];
    size_t line_len;
    char meta[256]; /* "name=value;" ... */
} got_entry;

static void append(char *dst, size_t cap, const uint8_t *s, size_t n)
{
    size_t len = strlen(dst);
    if (len + n >= cap)
        n = cap - len - 1;
    memcpy(dst + len, s, n);
    dst[len + n] = '\0';
}

static void decode_entry(wire e, const char *labels, got_entry *g)
{
    memset(g, 0, sizeof *g);
    snprintf(g->labels, sizeof g->labels, "%s", labels);
    field f;
    while (next_field(&e, &f)) {
        if (f.num == 1 && f.type == 2) {
            wire ts = sub(&f);
            field t;
            while (next_field(&ts, &t)) {
                CHECK_INT(t.type, 0);
                if (t.num == 1)
                    g->seconds = (int64_t)t.varint;
                else if (t.num == 2)
                    g->nanos = (int64_t)t.varint;
                else
                    CHECK(!"unknown timestamp field");
            }
        } else if (f.num == 2 && f.type == 2) {
            g->line_len = f.len;
            append(g->line, sizeof g->line, f.data, f.len);
        } else if (f.num == 3 && f.type == 2) {
            wire pair = sub(&f);
            field p;
            while (next_field(&pair, &p)) {
                CHECK_INT(p.type, 2);
                append(g->meta, sizeof g->meta, p.data, p.len);
                append(g->meta, sizeof g->meta, (const uint8_t *)(p.num == 1 ? "=" : ";"), 1);
            }
        } else {
            CHECK(!"unexpected entry field");
        }
    }
}

/* Uncompresses and decodes a protobuf push body; returns the entry count. */
static size_t decode_push(const dr_buf *body, got_entry *out, size_t max)
{
    size_t raw_len = 0;
    CHECK_INT(snappy_uncompressed_length(body->p, body->len, &raw_len), SNAPPY_OK);
    char *raw = malloc(raw_len + 1);
    CHECK_INT(snappy_uncompress(body->p, body->len, raw, &raw_len), SNAPPY_OK);
    wire w = {(const uint8_t *)raw, (const uint8_t *)raw + raw_len, false};
    size_t n = 0;
    field f;
    while (next_field(&w, &f)) {
        CHECK_INT(f.num, 1);
        CHECK_INT(f.type, 2);
        wire st = sub(&f);
        char labels[256] = "";
        field sf;
        while (next_field(&st, &sf)) {
            if (sf.num == 1) {
                CHECK_INT(sf.type, 2);
                labels[0] = '\0';
                append(labels, sizeof labels, sf.data, sf.len);
            } else if (sf.num == 2 && n < max) {
                decode_entry(sub(&sf), labels, &out[n++]);
            } else if (sf.num != 2) {
                CHECK(!"unexpected stream field");
            }
        }
        CHECK(!st.bad);
    }
    CHECK(!w.bad);
    free(raw);
    return n;
}

/* ---- test input --------------------------------------------------------------------- */

static const int64_t T0 = 1764045038123456789LL; /* 2025-11-25T04:30:38.123456789Z */

static void add_rec(dr_chunk *c, int64_t t, dr_stream s, const char *msg)
{
    dr_record *r = dr_chunk_add(c);
    r->time_ns = t;
    r->stream = (uint8_t)s;
    size_t n = strlen(msg);
    char *m = dr_chunk_alloc(c, n);
    memcpy(m, msg, n);
    r->msg = m;
    r->msg_len = (uint32_t)n;
}

static dr_chunk *pod_chunk(const char *ns, const char *pod, const char *uid, const char *cont)
{
    dr_chunk *c = dr_chunk_new(NULL, 256);
    dr_meta *m = dr_meta_new("/var/log/pods/x/0.log", ns, pod, uid, cont, "c0ffee", 0);
    dr_chunk_set_meta(c, m);
    dr_meta_unref(m);
    return c;
}

/* A layout as the defaults make it: labels container, namespace, node,
 * stream (sorted) plus job=drover; metadata pod, pod_uid, container_id. */
typedef struct test_layout {
    loki_layout lay;
    loki_attr labels[8], meta[4];
    loki_builder *builder; /* one per test, reused by its builds as the output does */
} test_layout;

static void default_layout(test_layout *t, loki_format fmt)
{
    memset(t, 0, sizeof *t);
    dr_error err;
    const char *labels[] = {"container", "job=drover", "namespace", "node", "stream"};
    for (size_t i = 0; i < 5; i++) {
        if (i == 1)
            CHECK_INT(loki_static_label_parse(labels[i], &t->labels[i], &err), 0);
        else
            CHECK_INT(loki_attr_parse(labels[i], &t->labels[i], &err), 0);
    }
    const char *meta[] = {"pod", "pod_uid", "container_id"};
    for (size_t i = 0; i < 3; i++)
        CHECK_INT(loki_attr_parse(meta[i], &t->meta[i], &err), 0);
    t->lay.labels = t->labels;
    t->lay.nlabels = 5;
    t->lay.metadata = t->meta;
    t->lay.nmetadata = 3;
    t->lay.node = "node-1";
    t->lay.format = fmt;
    t->lay.max_line_bytes = 1024;
    t->lay.max_request_bytes = 1 << 20;
    t->builder = loki_builder_new();
}

static void free_layout(test_layout *t)
{
    loki_builder_free(t->builder);
    t->builder = NULL;
    for (size_t i = 0; i < t->lay.nlabels; i++)
        loki_attr_free(&t->labels[i]);
    for (size_t i = 0; i < t->lay.nmetadata; i++)
        loki_attr_free(&t->meta[i]);
}

/* ---- tests ----------------------------------------------------------------------------- */

void test_loki_protobuf_layout(void)
{
    test_layout t;
    default_layout(&t, LOKI_FORMAT_PROTOBUF);
    /* two pods of one deployment share a stream; their lines interleave */
    dr_chunk *a = pod_chunk("shop", "web-1", "uid-1", "app");
    dr_chunk *b = pod_chunk("shop", "web-2", "uid-2", "app");
    add_rec(a, T0 + 10, DR_STREAM_STDOUT, "a1");
    add_rec(a, T0 + 30, DR_STREAM_STDOUT, "a2");
    add_rec(a, T0 + 20, DR_STREAM_STDERR, "a-err");
    add_rec(b, T0 + 20, DR_STREAM_STDOUT, "b1");
    add_rec(b, T0 + 40, DR_STREAM_STDOUT, "b2");
    const dr_chunk *chunks[] = {a, b};
    loki_request *reqs;
    size_t n;
    loki_build_stats stats;
    CHECK_INT(loki_build(t.builder, &t.lay, chunks, 2, &reqs, &n, &stats), 0);
    CHECK_INT(n, 1);
    CHECK(reqs[0].tenant == NULL);
    CHECK_INT(reqs[0].entries, 5);
    got_entry g[8];
    CHECK_INT(decode_push(&reqs[0].body, g, 8), 5);
    const char *out = "{container=\"app\", job=\"drover\", namespace=\"shop\", node=\"node-1\", "
                      "stream=\"stdout\"}";
    const char *err = "{container=\"app\", job=\"drover\", namespace=\"shop\", node=\"node-1\", "
                      "stream=\"stderr\"}";
    /* stdout first (its stream was met first), time-ordered across pods */
    const char *lines[] = {"a1", "b1", "a2", "b2", "a-err"};
    const int64_t offs[] = {10, 20, 30, 40, 20};
    for (int i = 0; i < 5; i++) {
        CHECK_STR(g[i].labels, i < 4 ? out : err);
        CHECK_STR(g[i].line, lines[i]);
        CHECK_INT(g[i].seconds, (T0 + offs[i]) / 1000000000);
        CHECK_INT(g[i].nanos, (T0 + offs[i]) % 1000000000);
    }
    CHECK_STR(g[0].meta, "pod=web-1;pod_uid=uid-1;container_id=c0ffee;");
    CHECK_STR(g[1].meta, "pod=web-2;pod_uid=uid-2;container_id=c0ffee;");
    loki_requests_free(reqs, n);
    dr_chunk_discard(a);
    dr_chunk_discard(b);
    free_layout(&t);
}

void test_loki_json_body(void)
{
    test_layout t;
    default_layout(&t, LOKI_FORMAT_JSON);
    t.lay.nmetadata = 1; /* pod only */
    dr_chunk *a = pod_chunk("shop", "web-1", "uid-1", "app");
    add_rec(a, T0, DR_STREAM_STDOUT, "say \"hi\"\n");
    add_rec(a, T0 + 1, DR_STREAM_STDOUT, "bye");
    const dr_chunk *chunks[] = {a};
    loki_request *reqs;
    size_t n;
    loki_build_stats stats;
    CHECK_INT(loki_build(t.builder, &t.lay, chunks, 1, &reqs, &n, &stats), 0);
    CHECK_INT(n, 1);
    dr_buf_putc(&reqs[0].body, '\0');
    CHECK_STR(reqs[0].body.p,
              "{\"streams\":[{\"stream\":{\"container\":\"app\",\"job\":\"drover\",\"namespace\":"
              "\"shop\",\"node\":\"node-1\",\"stream\":\"stdout\"},\"values\":["
              "[\"1764045038123456789\",\"say \\\"hi\\\"\\n\",{\"pod\":\"web-1\"}],"
              "[\"1764045038123456790\",\"bye\",{\"pod\":\"web-1\"}]]}]}");
    loki_requests_free(reqs, n);

    /* gzip: the same document once inflated */
    t.lay.gzip = true;
    CHECK_INT(loki_build(t.builder, &t.lay, chunks, 1, &reqs, &n, &stats), 0);
    char raw[1024];
    z_stream z = {0};
    CHECK_INT(inflateInit2(&z, 16 + MAX_WBITS), Z_OK);
    z.next_in = (Bytef *)reqs[0].body.p;
    z.avail_in = (uInt)reqs[0].body.len;
    z.next_out = (Bytef *)raw;
    z.avail_out = sizeof raw;
    CHECK_INT(inflate(&z, Z_FINISH), Z_STREAM_END);
    CHECK_INT(z.total_out, reqs[0].raw_bytes);
    CHECK(memcmp(raw, "{\"streams\":[{\"stream\":{", 23) == 0);
    inflateEnd(&z);
    loki_requests_free(reqs, n);
    dr_chunk_discard(a);
    t.lay.nmetadata = 3;
    free_layout(&t);
}

/* Lines longer than max_line_bytes: split between characters (timestamps
 * a nanosecond apart), truncated, or dropped. */
void test_loki_long_lines(void)
{
    test_layout t;
    default_layout(&t, LOKI_FORMAT_PROTOBUF);
    t.lay.max_line_bytes = 7;
    dr_chunk *a = pod_chunk("shop", "web-1", "uid-1", "app");
    /* "é" is two bytes: a cut at 7 would split the fourth one */
    add_rec(a, T0, DR_STREAM_STDOUT, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9x");
    add_rec(a, T0 + 100, DR_STREAM_STDOUT, "short");
    const dr_chunk *chunks[] = {a};
    loki_request *reqs;
    size_t n;
    loki_build_stats stats;
    got_entry g[8];

    CHECK_INT(loki_build(t.builder, &t.lay, chunks, 1, &reqs, &n, &stats), 0);
    CHECK_INT(decode_push(&reqs[0].body, g, 8), 3);
    CHECK_STR(g[0].line, "\xc3\xa9\xc3\xa9\xc3\xa9");
    CHECK_STR(g[1].line, "\xc3\xa9\xc3\xa9x");
    CHECK_INT(g[1].nanos - g[0].nanos, 1);
    CHECK_STR(g[2].line, "short");
    CHECK_INT(stats.split, 1);
    loki_requests_free(reqs, n);

    /* pieces spread over requests of bounded size, in order */
    t.lay.max_request_bytes = 140;
    CHECK_INT(loki_build(t.builder, &t.lay, chunks, 1, &reqs, &n, &stats), 0);
    CHECK_INT(n, 2);
    CHECK_INT(decode_push(&reqs[0].body, g, 8), 2);
    CHECK_STR(g[0].line, "\xc3\xa9\xc3\xa9\xc3\xa9");
    CHECK_STR(g[1].line, "\xc3\xa9\xc3\xa9x");
    CHECK_INT(decode_push(&reqs[1].body, g, 8), 1);
    CHECK_STR(g[0].line, "short");
    CHECK_INT(reqs[0].records, 1);
    CHECK_INT(reqs[0].entries, 2);
    loki_requests_free(reqs, n);
    t.lay.max_request_bytes = 1 << 20;

    t.lay.too_long = LOKI_TOO_LONG_TRUNCATE;
    CHECK_INT(loki_build(t.builder, &t.lay, chunks, 1, &reqs, &n, &stats), 0);
    CHECK_INT(decode_push(&reqs[0].body, g, 8), 2);
    CHECK_STR(g[0].line, "\xc3\xa9\xc3\xa9\xc3\xa9");
    CHECK_INT(stats.truncated, 1);
    loki_requests_free(reqs, n);

    t.lay.too_long = LOKI_TOO_LONG_DROP;
    CHECK_INT(loki_build(t.builder, &t.lay, chunks, 1, &reqs, &n, &stats), 0);
    CHECK_INT(decode_push(&reqs[0].body, g, 8), 1);
    CHECK_STR(g[0].line, "short");
    CHECK_INT(stats.too_long, 1);
    loki_requests_free(reqs, n);
    dr_chunk_discard(a);
    free_layout(&t);
}

/* Invalid UTF-8 in lines and label values is repaired; label values are
 * quoted as Go strings. */
void test_loki_escaping_and_utf8(void)
{
    test_layout t;
    default_layout(&t, LOKI_FORMAT_PROTOBUF);
    dr_chunk *a = pod_chunk("we\"ird\\ns\n", "web-1", "uid-1", "ap\xffp");
    add_rec(a, T0, DR_STREAM_STDOUT, "bad \xfe\xff end");
    const dr_chunk *chunks[] = {a};
    loki_request *reqs;
    size_t n;
    loki_build_stats stats;
    got_entry g[2];
    CHECK_INT(loki_build(t.builder, &t.lay, chunks, 1, &reqs, &n, &stats), 0);
    CHECK_INT(decode_push(&reqs[0].body, g, 2), 1);
    CHECK_STR(g[0].line, "bad \xef\xbf\xbd\xef\xbf\xbd end");
    CHECK_INT(stats.invalid_utf8, 1);
    CHECK_STR(g[0].labels, "{container=\"ap\xef\xbf\xbdp\", job=\"drover\", "
                           "namespace=\"we\\\"ird\\\\ns\\n\", node=\"node-1\", stream=\"stdout\"}");
    loki_requests_free(reqs, n);
    dr_chunk_discard(a);
    free_layout(&t);
}

/* tenant_field: one request per tenant; records without one use the
 * static tenant. */
void test_loki_tenants(void)
{
    test_layout t;
    default_layout(&t, LOKI_FORMAT_PROTOBUF);
    dr_error err;
    CHECK_INT(loki_attr_parse("namespace", &t.lay.tenant_attr, &err), 0);
    t.lay.tenant = "fallback";
    dr_chunk *a = pod_chunk("team-a", "p", "u", "c");
    dr_chunk *b = pod_chunk("team-b", "p", "u", "c");
    dr_chunk *c = pod_chunk("", "p", "u", "c");
    add_rec(a, T0, DR_STREAM_STDOUT, "a");
    add_rec(b, T0, DR_STREAM_STDOUT, "b");
    add_rec(c, T0, DR_STREAM_STDOUT, "c");
    add_rec(a, T0 + 1, DR_STREAM_STDOUT, "a2");
    const dr_chunk *chunks[] = {a, b, c};
    loki_request *reqs;
    size_t n;
    loki_build_stats stats;
    CHECK_INT(loki_build(t.builder, &t.lay, chunks, 3, &reqs, &n, &stats), 0);
    CHECK_INT(n, 3);
    CHECK_STR(reqs[0].tenant, "team-a");
    CHECK_INT(reqs[0].entries, 2);
    CHECK_STR(reqs[1].tenant, "team-b");
    CHECK_STR(reqs[2].tenant, "fallback");
    loki_requests_free(reqs, n);
    loki_attr_free(&t.lay.tenant_attr);
    dr_chunk_discard(a);
    dr_chunk_discard(b);
    dr_chunk_discard(c);
    free_layout(&t);
}

void test_loki_attr_specs(void)
{
    loki_attr a;
    dr_error err;
    CHECK_INT(loki_attr_parse("namespace", &a, &err), 0);
    CHECK_STR(a.name, "namespace");
    CHECK_INT(a.src, LOKI_SRC_NAMESPACE);
    loki_attr_free(&a);
    CHECK_INT(loki_attr_parse("app=level", &a, &err), 0);
    CHECK_STR(a.name, "app");
    CHECK_INT(a.src, LOKI_SRC_FIELD);
    CHECK_STR(a.arg, "level");
    loki_attr_free(&a);
    CHECK(loki_attr_parse("bad-name=pod", &a, &err) < 0);
    CHECK(loki_attr_parse("x=", &a, &err) < 0);
    CHECK(loki_static_label_parse("cluster", &a, &err) < 0);
    CHECK_INT(loki_static_label_parse("cluster=eu-1", &a, &err), 0);
    CHECK_STR(a.arg, "eu-1");
    loki_attr_free(&a);
    CHECK(!loki_label_name_ok("1abc"));
    CHECK(loki_label_name_ok("_a1"));
}

/* 400 answers as Loki 3.7.8 gives them (recorded from a real Loki). */
void test_loki_refusals(void)
{
    loki_refusal r[8];
    size_t n = loki_refusals(
        "entry for stream '{job=\"t\"}' has timestamp too old: 2026-11-23T06:33:30Z, oldest "
        "acceptable timestamp is: 2026-11-25T05:33:30Z\n",
        3, r, 8);
    CHECK_INT(n, 1);
    CHECK_STR(r[0].reason, "too_old");
    CHECK_INT(r[0].count, 1);

    n = loki_refusals(
        "max entry size '262144' bytes exceeded for stream '{job=\"t\"}' while adding "
        "an entry with length '300000' bytes\n",
        1, r, 8);
    CHECK_STR(r[0].reason, "too_long");
    CHECK_INT(r[0].count, 1);

    n = loki_refusals(
        "entry for stream '{job=\"t\"}' has timestamp too new: 2026-11-25T07:33:30Z\n", 1, r, 8);
    CHECK_STR(r[0].reason, "too_new");

    n = loki_refusals(
        "1 errors like: entry for stream '{job=\"u\"}' has timestamp too old: "
        "2026-11-23T06:33:37Z, oldest acceptable timestamp is: 2026-11-25T05:33:37Z; 15 errors "
        "like: entry for stream '{job=\"t\"}' has timestamp too old: 2026-11-23T06:33:37Z, oldest "
        "acceptable timestamp is: 2026-11-25T05:33:37Z; 1 errors like: max entry size '262144' "
        "bytes exceeded for stream '{job=\"t\"}' while adding an entry with length '300000' "
        "bytes\n",
        18, r, 8);
    CHECK_INT(n, 2);
    CHECK_STR(r[0].reason, "too_old");
    CHECK_INT(r[0].count, 16);
    CHECK_STR(r[1].reason, "too_long");
    CHECK_INT(r[1].count, 1);

    /* a malformed request: everything it held */
    n = loki_refusals("error at least one label pair is required per stream\n", 7, r, 8);
    CHECK_INT(n, 1);
    CHECK_STR(r[0].reason, "rejected");
    CHECK_INT(r[0].count, 7);

    /* never more than the request held */
    n = loki_refusals("15 errors like: entry for stream '{a=\"b\"}' has timestamp too old", 4, r,
                      8);
    CHECK_INT(r[0].count, 4);
}
