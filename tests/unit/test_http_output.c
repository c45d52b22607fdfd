/*
 * The http output's bodies: the msgpack writer (decoded back with a small
 * reader written here from the spec), the msgpack record encoding, and the
 * NDJSON, JSON array and msgpack framings of a batch.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/outputs/http/body.h"
#include "../../plugins/outputs/msgpack.h"
#include "../../plugins/outputs/ndjson.h"
#include "buf.h"
#include "drover/plugin.h"
#include "test.h"

#define FFFD "\xEF\xBF\xBD"

/* ---- a msgpack reader: just the types drover writes ----------------------------- */

typedef struct mp_reader {
    const unsigned char *p, *end;
    bool error;
} mp_reader;

static uint32_t be(const unsigned char *p, size_t n)
{
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Reads a length of n big-endian bytes, or fails. */
static uint32_t read_len(mp_reader *r, size_t n)
{
    if ((size_t)(r->end - r->p) < n) {
        r->error = true;
        return 0;
    }
    uint32_t v = be(r->p, n);
    r->p += n;
    return v;
}

static int read_type(mp_reader *r)
{
    if (r->p >= r->end) {
        r->error = true;
        return -1;
    }
    return *r->p++;
}

/* A str: sets *s and returns its length; on anything else, error. */
static size_t read_str(mp_reader *r, const char **s)
{
    int t = read_type(r);
    size_t n;
    if (t >= 0xA0 && t <= 0xBF)
        n = (size_t)(t & 0x1F);
    else if (t == 0xD9)
        n = read_len(r, 1);
    else if (t == 0xDA)
        n = read_len(r, 2);
    else if (t == 0xDB)
        n = read_len(r, 4);
    else
        r->error = true;
    if (r->error || (size_t)(r->end - r->p) < n) {
        r->error = true;
        *s = "";
        return 0;
    }
    *s = (const char *)r->p;
    r->p += n;
    return n;
}

/* A map (want_map) or array header: returns the count. */
static uint32_t read_container(mp_reader *r, bool want_map)
{
    int t = read_type(r);
    unsigned fix = want_map ? 0x80 : 0x90;
    if (t >= 0 && (unsigned)(t & 0xF0) == fix)
        return (uint32_t)(t & 0x0F);
    if (t == (want_map ? 0xDE : 0xDC))
        return read_len(r, 2);
    if (t == (want_map ? 0xDF : 0xDD))
        return read_len(r, 4);
    r->error = true;
    return 0;
}

static bool str_is(mp_reader *r, const char *want)
{
    const char *s;
    size_t n = read_str(r, &s);
    return !r->error && n == strlen(want) && memcmp(s, want, n) == 0;
}

/* ---- the writer ------------------------------------------------------------------ */

static void check_str_round_trip(size_t n, unsigned char type, size_t header, int line)
{
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)('a' + i % 26);
    dr_buf b = {0};
    dt_check_int(dr_mp_str(&b, s, n), 0, __FILE__, line, "dr_mp_str");
    dt_check_int((long long)b.len, (long long)(header + n), __FILE__, line, "length");
    dt_check_int(b.len ? (unsigned char)b.p[0] : 0, type, __FILE__, line, "type byte");
    mp_reader r = {(const unsigned char *)b.p, (const unsigned char *)b.p + b.len, false};
    const char *got;
    size_t got_n = read_str(&r, &got);
    dt_check(!r.error && r.p == r.end, __FILE__, line, "decodes whole");
    dt_check_mem(got, got_n, s, n, __FILE__, line, "content");
    /* the same through the sanitising writer: no replacements */
    dr_buf_reset(&b);
    dt_check_int(dr_mp_str_utf8(&b, s, n), 0, __FILE__, line, "dr_mp_str_utf8");
    dt_check_int((long long)b.len, (long long)(header + n), __FILE__, line, "utf8 length");
    dr_buf_free(&b);
    free(s);
}

void test_http_msgpack_str_sizes(void)
{
    check_str_round_trip(0, 0xA0, 1, __LINE__);
    check_str_round_trip(31, 0xBF, 1, __LINE__);
    check_str_round_trip(32, 0xD9, 2, __LINE__);
    check_str_round_trip(255, 0xD9, 2, __LINE__);
    check_str_round_trip(256, 0xDA, 3, __LINE__);
    check_str_round_trip(65535, 0xDA, 3, __LINE__);
    check_str_round_trip(65536, 0xDB, 5, __LINE__);
    check_str_round_trip(200000, 0xDB, 5, __LINE__);
}

static void check_container(uint32_t n, bool map, const char *want, size_t want_len, int line)
{
    dr_buf b = {0};
    dt_check_int(map ? dr_mp_map(&b, n) : dr_mp_array(&b, n), 0, __FILE__, line, "header");
    dt_check_mem(b.p, b.len, want, want_len, __FILE__, line, "bytes");
    mp_reader r = {(const unsigned char *)b.p, (const unsigned char *)b.p + b.len, false};
    dt_check_int(read_container(&r, map), n, __FILE__, line, "count");
    dr_buf_free(&b);
}

#define CONTAINER(n, map, lit) check_container(n, map, lit, sizeof(lit) - 1, __LINE__)

void test_http_msgpack_containers(void)
{
    CONTAINER(0, true, "\x80");
    CONTAINER(15, true, "\x8f");
    CONTAINER(16, true, "\xde\x00\x10");
    CONTAINER(65535, true, "\xde\xff\xff");
    CONTAINER(65536, true, "\xdf\x00\x01\x00\x00");
    CONTAINER(0, false, "\x90");
    CONTAINER(15, false, "\x9f");
    CONTAINER(16, false, "\xdc\x00\x10");
    CONTAINER(70000, false, "\xdd\x00\x01\x11\x70");
}

/* Invalid bytes become U+FFFD (three bytes each), which can push a string
 * into a larger header: the header must follow. */
static void check_utf8(const char *s, size_t n, const char *want, size_t want_n, long want_bad,
                       int line)
{
    dr_buf b = {0};
    dr_buf_puts(&b, "x");
    dt_check_int(dr_mp_str_utf8(&b, s, n), want_bad, __FILE__, line, "replacements");
    mp_reader r = {(const unsigned char *)b.p + 1, (const unsigned char *)b.p + b.len, false};
    const char *got;
    size_t got_n = read_str(&r, &got);
    dt_check(!r.error && r.p == r.end, __FILE__, line, "decodes whole");
    dt_check_mem(got, got_n, want, want_n, __FILE__, line, "content");
    dt_check(b.p[0] == 'x', __FILE__, line, "prefix kept");
    dr_buf_free(&b);
}

void test_http_msgpack_invalid_utf8(void)
{
    check_utf8("a\xff"
               "b",
               3, "a" FFFD "b", 5, 1, __LINE__);
    check_utf8("\xe2\x82", 2, FFFD, 3, 1, __LINE__);
    check_utf8("caf\xc3\xa9", 5, "caf\xc3\xa9", 5, 0, __LINE__);

    /* Header growth at each boundary: 31 -> 93 bytes (fixstr to str8),
     * 100 -> 300 (str8 to str16), 30000 -> 90000 (str16 to str32). */
    size_t sizes[] = {11, 31, 100, 30000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        char *bad = malloc(n);
        char *want = malloc(3 * n);
        memset(bad, 0xff, n);
        for (size_t i = 0; i < n; i++)
            memcpy(want + 3 * i, FFFD, 3);
        check_utf8(bad, n, want, 3 * n, (long)n, __LINE__);
        free(bad);
        free(want);
    }
}

/* ---- records ------------------------------------------------------------------------ */

static dr_record *add_record(dr_chunk *c, int64_t t, const char *msg, size_t n, uint8_t stream)
{
    dr_record *r = dr_chunk_add(c);
    char *copy = dr_chunk_alloc(c, n + 1);
    memcpy(copy, msg, n);
    r->time_ns = t;
    r->msg = copy;
    r->msg_len = (uint32_t)n;
    r->stream = stream;
    return r;
}

static void add_fields(dr_chunk *c, dr_record *r, const char *const *kv, uint16_t n)
{
    r->fields = dr_chunk_alloc(c, n * sizeof *r->fields);
    r->nfields = n;
    for (uint16_t i = 0; i < n; i++) {
        r->fields[i] = (dr_field){.key = kv[2 * i],
                                  .key_len = (uint32_t)strlen(kv[2 * i]),
                                  .val = kv[2 * i + 1],
                                  .val_len = (uint32_t)strlen(kv[2 * i + 1])};
    }
}

#define T0 1795580238123456789LL /* 2026-11-25T04:17:18.123456789Z */

/* A chunk with metadata: a plain record, one with parser fields, a dropped
 * one, one with invalid UTF-8, one longer than 65535 bytes. */
static dr_chunk *sample_chunk(char **long_msg, size_t long_len)
{
    dr_chunk *c = dr_chunk_new(NULL, 0);
    dr_meta *m =
        dr_meta_new("/var/log/pods/x/app/0.log", "ns", "pod-1", "uid-1", "app", "cid-1", 0);
    dr_chunk_set_meta(c, m);
    dr_meta_unref(m);
    add_record(c, T0, "hello", 5, DR_STREAM_STDOUT);
    dr_record *r = add_record(c, T0 + 1, "with fields", 11, DR_STREAM_STDERR);
    static const char *const kv[] = {"level", "info", "logtag", "F"};
    add_fields(c, r, kv, 2);
    r = add_record(c, T0 + 2, "dropped", 7, DR_STREAM_STDOUT);
    r->flags |= DR_REC_DROPPED;
    add_record(c, T0 + 3, "bad\xff", 4, DR_STREAM_STDOUT);
    *long_msg = malloc(long_len);
    memset(*long_msg, 'L', long_len);
    add_record(c, T0 + 4, *long_msg, long_len, DR_STREAM_STDOUT);
    return c;
}

/* Reads one record map and checks it. fields: key/value pairs after
 * message, NULL-terminated. */
static void check_record(mp_reader *r, const char *time, const char *stream, const char *msg,
                         size_t msg_len, const char *const *fields, bool meta, int line)
{
    uint32_t nf = 0;
    while (fields && fields[2 * nf])
        nf++;
    dt_check_int(read_container(r, true), 3 + nf + (meta ? 1 : 0), __FILE__, line, "pairs");
    dt_check(str_is(r, "time") && str_is(r, time), __FILE__, line, "time");
    dt_check(str_is(r, "stream") && str_is(r, stream), __FILE__, line, "stream");
    dt_check(str_is(r, "message"), __FILE__, line, "message key");
    const char *s;
    size_t n = read_str(r, &s);
    dt_check_mem(s, n, msg, msg_len, __FILE__, line, "message");
    for (uint32_t i = 0; i < nf; i++)
        dt_check(str_is(r, fields[2 * i]) && str_is(r, fields[2 * i + 1]), __FILE__, line, "field");
    if (meta) {
        dt_check(str_is(r, "kubernetes"), __FILE__, line, "kubernetes key");
        dt_check_int(read_container(r, true), 5, __FILE__, line, "kubernetes pairs");
        dt_check(str_is(r, "namespace") && str_is(r, "ns"), __FILE__, line, "namespace");
        dt_check(str_is(r, "pod") && str_is(r, "pod-1"), __FILE__, line, "pod");
        dt_check(str_is(r, "pod_uid") && str_is(r, "uid-1"), __FILE__, line, "pod_uid");
        dt_check(str_is(r, "container") && str_is(r, "app"), __FILE__, line, "container");
        dt_check(str_is(r, "container_id") && str_is(r, "cid-1"), __FILE__, line, "container_id");
    }
    dt_check(!r->error, __FILE__, line, "decodes");
}

void test_http_msgpack_records(void)
{
    char *long_msg;
    size_t long_len = 70000;
    dr_chunk *c = sample_chunk(&long_msg, long_len);
    dr_buf b = {0};
    CHECK_INT(dr_msgpack_encode_chunk(c, &b), 1); /* one record had invalid UTF-8 */
    mp_reader r = {(const unsigned char *)b.p, (const unsigned char *)b.p + b.len, false};
    static const char *const fields[] = {"level", "info", "logtag", "F", NULL};
    check_record(&r, "2026-11-25T04:17:18.123456789Z", "stdout", "hello", 5, NULL, true, __LINE__);
    check_record(&r, "2026-11-25T04:17:18.123456790Z", "stderr", "with fields", 11, fields, true,
                 __LINE__);
    check_record(&r, "2026-11-25T04:17:18.123456792Z", "stdout", "bad" FFFD, 6, NULL, true,
                 __LINE__);
    check_record(&r, "2026-11-25T04:17:18.123456793Z", "stdout", long_msg, long_len, NULL, true,
                 __LINE__);
    CHECK(r.p == r.end); /* four maps, concatenated, nothing else */
    dr_buf_free(&b);
    dr_chunk_discard(c);
    free(long_msg);

    /* No metadata, no fields: three pairs; an empty message. */
    c = dr_chunk_new(NULL, 0);
    add_record(c, 0, "", 0, DR_STREAM_STDOUT);
    CHECK_INT(dr_msgpack_encode_chunk(c, &b), 0);
    r = (mp_reader){(const unsigned char *)b.p, (const unsigned char *)b.p + b.len, false};
    check_record(&r, "1970-01-01T00:00:00.000000000Z", "stdout", "", 0, NULL, false, __LINE__);
    CHECK(r.p == r.end);
    dr_buf_free(&b);
    dr_chunk_discard(c);

    /* Only dropped records: nothing at all. */
    c = dr_chunk_new(NULL, 0);
    add_record(c, 0, "x", 1, DR_STREAM_STDOUT)->flags |= DR_REC_DROPPED;
    CHECK_INT(dr_msgpack_encode_chunk(c, &b), 0);
    CHECK_INT(b.len, 0);
    dr_buf_free(&b);
    dr_chunk_discard(c);
}

/* ---- batch bodies ----------------------------------------------------------------------- */

static void encode_body(dr_http_format fmt, dr_chunk *const *chunks, size_t n, dr_buf *out,
                        uint64_t *bad)
{
    dr_http_body body;
    CHECK_INT(dr_http_body_begin(&body, fmt, out), 0);
    for (size_t i = 0; i < n; i++)
        CHECK_INT(dr_http_body_add(&body, chunks[i]), 0);
    dr_http_body_end(&body);
    *bad = body.bad_records;
}

void test_http_body_formats(void)
{
    char *long_msg;
    dr_chunk *chunks[3];
    chunks[0] = sample_chunk(&long_msg, 300);
    chunks[1] = dr_chunk_new(NULL, 0); /* only a dropped record: adds nothing */
    add_record(chunks[1], T0, "gone", 4, DR_STREAM_STDOUT)->flags |= DR_REC_DROPPED;
    chunks[2] = dr_chunk_new(NULL, 0);
    add_record(chunks[2], T0, "quote \" newline \n end", 21, DR_STREAM_STDOUT);

    /* The NDJSON lines of the batch, as the file output writes them. */
    dr_buf lines = {0};
    for (size_t i = 0; i < 3; i++)
        dr_ndjson_encode_chunk(chunks[i], DR_LINE_JSON, &lines);

    dr_buf got = {0}, want = {0};
    uint64_t bad;
    encode_body(DR_HTTP_NDJSON, chunks, 3, &got, &bad);
    CHECK_MEM(got.p, got.len, lines.p, lines.len);
    CHECK_INT(bad, 1);

    /* JSON array: the same objects, comma-separated, in brackets. */
    dr_buf_reset(&got);
    dr_buf_putc(&want, '[');
    for (size_t i = 0; i < lines.len; i++)
        dr_buf_putc(&want, lines.p[i] == '\n' ? (i + 1 == lines.len ? ']' : ',') : lines.p[i]);
    encode_body(DR_HTTP_JSON_ARRAY, chunks, 3, &got, &bad);
    CHECK_MEM(got.p, got.len, want.p, want.len);
    CHECK_INT(bad, 1);
    CHECK(memchr(got.p, '\n', got.len) == NULL);

    /* msgpack: the maps of each chunk, concatenated. */
    dr_buf_reset(&got);
    dr_buf_reset(&want);
    for (size_t i = 0; i < 3; i++)
        dr_msgpack_encode_chunk(chunks[i], &want);
    encode_body(DR_HTTP_MSGPACK, chunks, 3, &got, &bad);
    CHECK_MEM(got.p, got.len, want.p, want.len);
    CHECK_INT(bad, 1);

    /* One record: "[{...}]". */
    dr_buf_reset(&got);
    encode_body(DR_HTTP_JSON_ARRAY, &chunks[2], 1, &got, &bad);
    CHECK(got.len > 2 && got.p[0] == '[' && got.p[1] == '{' && got.p[got.len - 2] == '}' &&
          got.p[got.len - 1] == ']');

    /* No live records: an empty body in every format, after what the
     * buffer held. */
    for (int fmt = DR_HTTP_NDJSON; fmt <= DR_HTTP_MSGPACK; fmt++) {
        dr_buf_reset(&got);
        dr_buf_puts(&got, "keep");
        encode_body((dr_http_format)fmt, &chunks[1], 1, &got, &bad);
        CHECK_MEM(got.p, got.len, "keep", 4);
        encode_body((dr_http_format)fmt, NULL, 0, &got, &bad);
        CHECK_MEM(got.p, got.len, "keep", 4);
    }

    CHECK_STR(dr_http_body_content_type(DR_HTTP_NDJSON), "application/x-ndjson");
    CHECK_STR(dr_http_body_content_type(DR_HTTP_JSON_ARRAY), "application/json");
    CHECK_STR(dr_http_body_content_type(DR_HTTP_MSGPACK), "application/msgpack");

    dr_buf_free(&got);
    dr_buf_free(&want);
    dr_buf_free(&lines);
    for (size_t i = 0; i < 3; i++)
        dr_chunk_discard(chunks[i]);
    free(long_msg);
}

/* Fields holding JSON become the msgpack values they stand for. */
void test_http_msgpack_json_fields(void)
{
    dr_chunk *c = dr_chunk_new(NULL, 0);
    dr_record *rec = add_record(c, 0, "m", 1, DR_STREAM_STDOUT);
    static const struct {
        const char *key, *json, *want;
        size_t want_len;
    } cases[] = {
        {"small", "42", "\x2a", 1},
        {"neg", "-5", "\xfb", 1},
        {"big", "-100000", "\xd3\xff\xff\xff\xff\xff\xfe\x79\x60", 9},
        {"half", "1.5", "\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", 9},
        {"yes", "true", "\xc3", 1},
        {"no", "false", "\xc2", 1},
        {"none", "null", "\xc0", 1},
        {"obj", "{\"a\":[1,\"x\"]}",
         "\x81\xa1"
         "a"
         "\x92\x01\xa1"
         "x",
         7},
    };
    size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++)
        CHECK_INT(dr_record_set(c, rec, cases[i].key, strlen(cases[i].key), cases[i].json,
                                strlen(cases[i].json), DR_FIELD_JSON),
                  0);
    dr_buf b = {0};
    CHECK_INT(dr_msgpack_encode_chunk(c, &b), 0);
    mp_reader r = {(const unsigned char *)b.p, (const unsigned char *)b.p + b.len, false};
    CHECK_INT(read_container(&r, true), 3 + n);
    CHECK(str_is(&r, "time"));
    const char *s;
    read_str(&r, &s);
    CHECK(str_is(&r, "stream") && str_is(&r, "stdout"));
    CHECK(str_is(&r, "message") && str_is(&r, "m"));
    for (size_t i = 0; i < n && !r.error; i++) {
        CHECK(str_is(&r, cases[i].key));
        size_t left = (size_t)(r.end - r.p);
        size_t take = left < cases[i].want_len ? left : cases[i].want_len;
        CHECK_MEM(r.p, take, cases[i].want, cases[i].want_len);
        r.p += take;
    }
    CHECK(!r.error && r.p == r.end);
    dr_buf_free(&b);
    dr_chunk_discard(c);
}
