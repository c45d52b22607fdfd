/*
 * MD5 (RFC 1321), for Prometheus' hashmod relabeling, which shards series
 * by the digest of a label value. Not for anything that needs a secure
 * hash. Small and allocation-free, so that hashing on every sample costs
 * no more than the arithmetic.
 */
#ifndef DROVER_MD5_H
#define DROVER_MD5_H

#include <stddef.h>
#include <stdint.h>

typedef struct dr_md5_ctx {
    uint32_t h[4];
    uint64_t len; /* bytes fed so far */
    unsigned char block[64];
} dr_md5_ctx;

void dr_md5_init(dr_md5_ctx *c);
void dr_md5_update(dr_md5_ctx *c, const void *data, size_t n);
void dr_md5_final(dr_md5_ctx *c, unsigned char out[16]);
/* The digest of one buffer. */
void dr_md5(const void *data, size_t n, unsigned char out[16]);

#endif
