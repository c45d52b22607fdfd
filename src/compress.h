/*
 * Body compression for the HTTP outputs: one place for gzip (zlib with the
 * gzip wrapper), zstd (one frame) and snappy (the raw block format, as
 * Prometheus remote write and Loki's protobuf push expect).
 *
 * Every function appends the compressed form of `in` to `out` (what `out`
 * already holds stays) and returns 0, DR_ENOMEM, or DR_ERR when the library
 * reports a failure (DR_EINVAL from dr_compress for an unknown value). On
 * failure `out` keeps its previous length.
 */
#ifndef DROVER_COMPRESS_H
#define DROVER_COMPRESS_H

#include <stddef.h>

#include "buf.h"
#include "drover/plugin.h"

typedef enum {
    DR_COMPRESS_NONE = 0,
    DR_COMPRESS_GZIP,
    DR_COMPRESS_ZSTD,
    DR_COMPRESS_SNAPPY,
} dr_compression;

int dr_compress_gzip(const void *in, size_t n, dr_buf *out);
int dr_compress_zstd(const void *in, size_t n, dr_buf *out);
int dr_compress_snappy(const void *in, size_t n, dr_buf *out);

/* Dispatches on `c`; DR_COMPRESS_NONE appends `in` unchanged. */
int dr_compress(dr_compression c, const void *in, size_t n, dr_buf *out);

/* Decompresses a gzip body (one member or several, as RFC 1952 allows)
 * and appends the result to `out`, writing at most `max_out` bytes. A whole
 * buffer at once, with libdeflate: several times faster than zlib's
 * streaming inflate, which matters because every scrape body arrives
 * gzip'ed. Returns 0; DR_EINVAL when `in` is not gzip or is corrupt, or
 * when it inflates to more than max_out (err says which); DR_ENOMEM. On
 * failure `out` keeps its previous length. */
int dr_gunzip(const void *in, size_t n, size_t max_out, dr_buf *out, dr_error *err);

/* The Content-Encoding header value: "gzip", "zstd", "snappy", or NULL for
 * DR_COMPRESS_NONE (send no header). */
const char *dr_compress_encoding(dr_compression c);

#endif
