/*
 * src/compress.c: every compression round-trips through the library's own
 * decompressor, on empty input, a small input and 5 MiB of mixed data, and
 * appends to what the buffer held.
 */
#include <snappy-c.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "buf.h"
#include "compress.h"
#include "drover/plugin.h"
#include "test.h"

/* ---- decompressors ---------------------------------------------------------- */

/* Inflates one gzip member into out; 0 or -1. Checks that nothing follows. */
static int gunzip(const void *in, size_t n, dr_buf *out)
{
    z_stream z = {0};
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return -1;
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)n;
    int rc;
    do {
        if (dr_buf_reserve(out, 256 * 1024) < 0)
            break;
        z.next_out = (unsigned char *)out->p + out->len;
        z.avail_out = (uInt)(out->cap - out->len);
        uInt room = z.avail_out;
        rc = inflate(&z, Z_NO_FLUSH);
        out->len += room - z.avail_out;
    } while (rc == Z_OK);
    bool ok = rc == Z_STREAM_END && z.avail_in == 0;
    inflateEnd(&z);
    return ok ? 0 : -1;
}

static int unzstd(const void *in, size_t n, dr_buf *out)
{
    unsigned long long size = ZSTD_getFrameContentSize(in, n);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN)
        return -1;
    if (dr_buf_reserve(out, (size_t)size + 1) < 0)
        return -1;
    size_t got = ZSTD_decompress(out->p + out->len, (size_t)size + 1, in, n);
    if (ZSTD_isError(got) || got != size)
        return -1;
    out->len += got;
    return 0;
}

static int unsnappy(const void *in, size_t n, dr_buf *out)
{
    size_t size;
    if (snappy_uncompressed_length(in, n, &size) != SNAPPY_OK)
        return -1;
    if (dr_buf_reserve(out, size + 1) < 0)
        return -1;
    size_t got = size + 1;
    if (snappy_uncompress(in, n, out->p + out->len, &got) != SNAPPY_OK || got != size)
        return -1;
    out->len += got;
    return 0;
}

typedef struct codec {
    dr_compression kind;
    int (*compress)(const void *, size_t, dr_buf *);
    int (*decompress)(const void *, size_t, dr_buf *);
    const char *encoding;
} codec;

static const codec codecs[] = {
    {DR_COMPRESS_GZIP, dr_compress_gzip, gunzip, "gzip"},
    {DR_COMPRESS_ZSTD, dr_compress_zstd, unzstd, "zstd"},
    {DR_COMPRESS_SNAPPY, dr_compress_snappy, unsnappy, "snappy"},
};
#define NCODECS (sizeof codecs / sizeof codecs[0])

/* Compresses data with each codec (directly and through dr_compress) after
 * a prefix already in the buffer, and decompresses what was appended. */
static void round_trip(const void *data, size_t n, int line)
{
    static const char prefix[] = "kept";
    for (size_t i = 0; i < NCODECS; i++) {
        for (int via_dispatch = 0; via_dispatch < 2; via_dispatch++) {
            dr_buf z = {0}, back = {0};
            dr_buf_append(&z, prefix, 4);
            int rc = via_dispatch ? dr_compress(codecs[i].kind, data, n, &z)
                                  : codecs[i].compress(data, n, &z);
            dt_check_int(rc, 0, __FILE__, line, codecs[i].encoding);
            dt_check_mem(z.p, 4, prefix, 4, __FILE__, line, "prefix kept");
            dt_check(z.len > 4, __FILE__, line, "output appended");
            dt_check_int(codecs[i].decompress(z.p + 4, z.len - 4, &back), 0, __FILE__, line,
                         codecs[i].encoding);
            dt_check_mem(back.p, back.len, data, n, __FILE__, line, codecs[i].encoding);
            dr_buf_free(&z);
            dr_buf_free(&back);
        }
    }
}

void test_compress_empty(void)
{
    round_trip(NULL, 0, __LINE__);
    round_trip("", 0, __LINE__);
}

void test_compress_small(void)
{
    static const char msg[] = "{\"time\":\"2026-11-25T04:10:38.123456789Z\",\"stream\":\"stdout\","
                              "\"message\":\"hello\"}\n";
    round_trip(msg, sizeof msg - 1, __LINE__);
    round_trip("x", 1, __LINE__);
}

static uint32_t rng_state = 777;

static uint32_t rng(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return rng_state >> 8;
}

/* 5 MiB of log-like text, runs of one byte and stretches of random bytes:
 * both what compresses well and what does not. */
void test_compress_large_mixed(void)
{
    size_t n = 5u << 20;
    unsigned char *data = malloc(n);
    CHECK(data != NULL);
    if (!data)
        return;
    size_t i = 0;
    while (i < n) {
        size_t len = 1 + rng() % 4096;
        if (len > n - i)
            len = n - i;
        switch (rng() % 3) {
        case 0:
            for (size_t k = 0; k < len; k++)
                data[i + k] =
                    (unsigned char)"level=info msg=\"request served\" status=200 "[k % 44];
            break;
        case 1:
            memset(data + i, (int)(rng() & 0xff), len);
            break;
        default:
            for (size_t k = 0; k < len; k++)
                data[i + k] = (unsigned char)rng();
        }
        i += len;
    }
    round_trip(data, n, __LINE__);
    free(data);
}

void test_compress_encoding_names(void)
{
    CHECK(dr_compress_encoding(DR_COMPRESS_NONE) == NULL);
    CHECK_STR(dr_compress_encoding(DR_COMPRESS_GZIP), "gzip");
    CHECK_STR(dr_compress_encoding(DR_COMPRESS_ZSTD), "zstd");
    CHECK_STR(dr_compress_encoding(DR_COMPRESS_SNAPPY), "snappy");

    /* NONE copies the input. */
    dr_buf b = {0};
    CHECK_INT(dr_compress(DR_COMPRESS_NONE, "abc", 3, &b), 0);
    CHECK_MEM(b.p, b.len, "abc", 3);
    CHECK_INT(dr_compress((dr_compression)99, "abc", 3, &b), DR_EINVAL);
    CHECK_INT(b.len, 3);
    dr_buf_free(&b);
}

/* ---- dr_gunzip ---------------------------------------------------------------- */

void test_gunzip_round_trip_and_members(void)
{
    /* 3 MiB of log-like text: more than 4x a small trailer guess */
    dr_buf plain = {0}, gz = {0}, out = {0};
    for (int i = 0; plain.len < 3u << 20; i++)
        dr_buf_printf(&plain, "node_cpu_seconds_total{cpu=\"%d\",mode=\"idle\"} %d.5\n", i % 64, i);
    CHECK_INT(dr_compress_gzip(plain.p, plain.len, &gz), 0);
    dr_error err = {0};
    dr_buf_puts(&out, "kept:");
    CHECK_INT(dr_gunzip(gz.p, gz.len, 64u << 20, &out, &err), 0);
    CHECK_INT(out.len, 5 + plain.len);
    CHECK(memcmp(out.p + 5, plain.p, plain.len) == 0);

    /* two members, as `cat a.gz b.gz` makes */
    size_t one = gz.len;
    CHECK_INT(dr_compress_gzip("second\n", 7, &gz), 0);
    dr_buf_reset(&out);
    CHECK_INT(dr_gunzip(gz.p, gz.len, 64u << 20, &out, &err), 0);
    CHECK_INT(out.len, plain.len + 7);
    CHECK(memcmp(out.p + plain.len, "second\n", 7) == 0);

    /* over the bound: refused, out untouched */
    dr_buf_reset(&out);
    dr_buf_puts(&out, "x");
    CHECK_INT(dr_gunzip(gz.p, one, 1u << 20, &out, &err), DR_EINVAL);
    CHECK(strstr(err.msg, "more than") != NULL);
    CHECK_INT(out.len, 1);
    dr_buf_free(&plain);
    dr_buf_free(&gz);
    dr_buf_free(&out);
}

void test_gunzip_bad_input(void)
{
    dr_buf gz = {0}, out = {0};
    dr_error err = {0};
    CHECK_INT(dr_gunzip("plain text, not gzip at all", 27, 1024, &out, &err), DR_EINVAL);
    CHECK(strstr(err.msg, "not a gzip") != NULL);
    const char *text = "up 1\nup 2\nup 3\nup 4\nup 5\nup 6\nup 7\n";
    CHECK_INT(dr_compress_gzip(text, strlen(text), &gz), 0);
    /* every truncation fails cleanly */
    for (size_t n = 0; n < gz.len; n++)
        if (!CHECK_INT(dr_gunzip(gz.p, n, 1024, &out, &err), DR_EINVAL))
            break;
    /* a flipped byte in the deflate data or the CRC */
    for (size_t i = 10; i < gz.len; i++) {
        gz.p[i] ^= 0x55;
        int rc = dr_gunzip(gz.p, gz.len, 1024, &out, &err);
        gz.p[i] ^= 0x55;
        if (!CHECK_INT(rc, DR_EINVAL))
            break;
    }
    /* garbage after a member */
    dr_buf_append(&gz, "junk", 4);
    CHECK_INT(dr_gunzip(gz.p, gz.len, 1024, &out, &err), DR_EINVAL);
    CHECK(strstr(err.msg, "trailing") != NULL);
    CHECK_INT(out.len, 0);
    dr_buf_free(&gz);
    dr_buf_free(&out);
}

/* A real scrape body as node_exporter sent it gzip'ed. */
void test_gunzip_scrape_fixture(void)
{
    size_t n;
    char *gz = dt_read_file(dt_fixture("exposition/live-node-exporter-1.5.0.prom.gz"), &n);
    CHECK(gz != NULL);
    if (!gz)
        return;
    dr_buf out = {0};
    dr_error err = {0};
    CHECK_INT(dr_gunzip(gz, n, 16u << 20, &out, &err), 0);
    CHECK(out.len > 50000);
    CHECK(out.len > 6 && memcmp(out.p, "# HELP", 6) == 0);
    CHECK(memmem(out.p, out.len, "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"}", 43) != NULL);
    CHECK(out.p[out.len - 1] == '\n');
    free(gz);
    dr_buf_free(&out);
}
