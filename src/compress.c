/*
 * Body compression for the HTTP outputs (see compress.h).
 *
 * Levels are low on purpose: drover runs on every node beside the workloads,
 * so CPU is the scarce resource, and on log text the fastest levels already
 * get most of the ratio the slow ones would.
 *
 * Each function reserves the library's worst-case bound up front, so one
 * call compresses everything without growing the buffer in a loop; the
 * bound is at most a little more than the input.
 */
#include "compress.h"

#include <libdeflate.h>
#include <limits.h>
#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "drover/plugin.h"

#define DR_GZIP_LEVEL 1
#define DR_ZSTD_LEVEL 1
/* zlib counts in uInt: larger inputs are fed in pieces of this size. */
#define DR_ZLIB_PIECE ((size_t)1 << 30)

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* Runs deflate over all of `in` with room for its bound in `out`; grows
 * `out` only should zlib's bound ever be short. */
static int deflate_all(z_stream *z, const void *in, size_t n, dr_buf *out)
{
    const unsigned char *p = in;
    size_t left = n;
    for (;;) {
        if (out->cap == out->len && dr_buf_reserve(out, 64 * 1024) < 0)
            return DR_ENOMEM;
        size_t take = min_size(left, DR_ZLIB_PIECE);
        z->next_in = (unsigned char *)p;
        z->avail_in = (uInt)take;
        z->next_out = (unsigned char *)out->p + out->len;
        z->avail_out = (uInt)min_size(out->cap - out->len, DR_ZLIB_PIECE);
        int flush = take == left ? Z_FINISH : Z_NO_FLUSH;
        uInt room = z->avail_out;
        int rc = deflate(z, flush);
        out->len += room - z->avail_out;
        size_t used = take - z->avail_in;
        p += used;
        left -= used;
        if (rc == Z_STREAM_END)
            return 0;
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            return DR_ERR;
    }
}

int dr_compress_gzip(const void *in, size_t n, dr_buf *out)
{
    z_stream z = {0};
    /* 15 + 16: a 32 KiB window with the gzip header and trailer. */
    if (deflateInit2(&z, DR_GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return DR_ENOMEM;
    size_t start = out->len;
    int rc = dr_buf_reserve(out, (size_t)deflateBound(&z, (uLong)n));
    if (rc == 0)
        rc = deflate_all(&z, n ? in : "", n, out);
    deflateEnd(&z);
    if (rc < 0)
        out->len = start;
    return rc;
}

int dr_compress_zstd(const void *in, size_t n, dr_buf *out)
{
    size_t bound = ZSTD_compressBound(n);
    if (ZSTD_isError(bound))
        return DR_ERR;
    if (dr_buf_reserve(out, bound) < 0)
        return DR_ENOMEM;
    size_t got =
        ZSTD_compress(out->p + out->len, out->cap - out->len, n ? in : "", n, DR_ZSTD_LEVEL);
    if (ZSTD_isError(got))
        return ZSTD_getErrorCode(got) == ZSTD_error_memory_allocation ? DR_ENOMEM : DR_ERR;
    out->len += got;
    return 0;
}

int dr_compress_snappy(const void *in, size_t n, dr_buf *out)
{
    /* snappy's format stores the length in 32 bits. */
    if (n > UINT32_MAX)
        return DR_ERR;
    size_t bound = snappy_max_compressed_length(n);
    if (dr_buf_reserve(out, bound) < 0)
        return DR_ENOMEM;
    size_t got = out->cap - out->len;
    if (snappy_compress(n ? in : "", n, out->p + out->len, &got) != SNAPPY_OK)
        return DR_ERR;
    out->len += got;
    return 0;
}

int dr_compress(dr_compression c, const void *in, size_t n, dr_buf *out)
{
    switch (c) {
    case DR_COMPRESS_NONE:
        return dr_buf_append(out, in, n);
    case DR_COMPRESS_GZIP:
        return dr_compress_gzip(in, n, out);
    case DR_COMPRESS_ZSTD:
        return dr_compress_zstd(in, n, out);
    case DR_COMPRESS_SNAPPY:
        return dr_compress_snappy(in, n, out);
    }
    return DR_EINVAL;
}

const char *dr_compress_encoding(dr_compression c)
{
    switch (c) {
    case DR_COMPRESS_NONE:
        return NULL;
    case DR_COMPRESS_GZIP:
        return "gzip";
    case DR_COMPRESS_ZSTD:
        return "zstd";
    case DR_COMPRESS_SNAPPY:
        return "snappy";
    }
    return NULL;
}

/* ---- gunzip ------------------------------------------------------------------ */

/* Where to start sizing the output of a member: the size its trailer
 * states (ISIZE, the size modulo 2^32), or four times the input when that
 * is smaller (a trailer that wrapped, or lies), never above max_out. */
static size_t first_guess(const unsigned char *p, size_t n, size_t max_out)
{
    size_t guess = n * 4;
    if (n >= 18) {
        uint32_t isize = (uint32_t)p[n - 4] | (uint32_t)p[n - 3] << 8 | (uint32_t)p[n - 2] << 16 |
                         (uint32_t)p[n - 1] << 24;
        if (isize > guess)
            guess = isize;
    }
    if (guess < 4096)
        guess = 4096;
    return guess < max_out ? guess : max_out;
}

/* Inflates the member at the start of in[0..n) into out; *used says how
 * many input bytes it took. */
static int gunzip_member(struct libdeflate_decompressor *d, const unsigned char *in, size_t n,
                         size_t room_left, dr_buf *out, size_t *used, dr_error *err)
{
    size_t avail = first_guess(in, n, room_left);
    for (;;) {
        if (dr_buf_reserve(out, avail + 1) < 0)
            return DR_ENOMEM;
        size_t got = 0;
        enum libdeflate_result r = libdeflate_gzip_decompress_ex(
            d, in, n, (unsigned char *)out->p + out->len, avail, used, &got);
        if (r == LIBDEFLATE_SUCCESS) {
            out->len += got;
            return 0;
        }
        if (r != LIBDEFLATE_INSUFFICIENT_SPACE) {
            dr_error_set(err, "gzip body is corrupt or truncated");
            return DR_EINVAL;
        }
        if (avail >= room_left) {
            dr_error_set(err, "gzip body inflates to more than %zu bytes", room_left);
            return DR_EINVAL;
        }
        avail = avail * 2 < room_left ? avail * 2 : room_left;
    }
}

int dr_gunzip(const void *in, size_t n, size_t max_out, dr_buf *out, dr_error *err)
{
    const unsigned char *p = in;
    if (n < 18 || p[0] != 0x1f || p[1] != 0x8b) {
        dr_error_set(err, "not a gzip body");
        return DR_EINVAL;
    }
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    if (!d)
        return DR_ENOMEM;
    size_t start_len = out->len;
    int rc = 0;
    while (n > 0 && rc == 0) {
        size_t used = 0;
        rc = gunzip_member(d, p, n, max_out - (out->len - start_len), out, &used, err);
        p += used;
        n -= used;
        /* what follows a member is another member or nothing */
        if (rc == 0 && n > 0 && (n < 18 || p[0] != 0x1f || p[1] != 0x8b)) {
            dr_error_set(err, "gzip body has %zu trailing bytes", n);
            rc = DR_EINVAL;
        }
    }
    libdeflate_free_decompressor(d);
    if (rc != 0)
        out->len = start_len;
    return rc;
}
