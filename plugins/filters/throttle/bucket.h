/*
 * Token buckets for the throttle filter: pure functions of the bucket, its
 * limits and the time the caller passes in, so that tests can drive time.
 */
#ifndef DROVER_THROTTLE_BUCKET_H
#define DROVER_THROTTLE_BUCKET_H

#include <stdbool.h>
#include <stdint.h>

/* The limits of every bucket of one filter. A rate of 0 means no limit on
 * that dimension. */
typedef struct dr_bucket_limits {
    double records_per_sec;
    double bytes_per_sec;
    double records_capacity; /* what a full bucket holds */
    double bytes_capacity;
} dr_bucket_limits;

typedef struct dr_token_bucket {
    double records; /* tokens left: records may be taken while at least 1 */
    double bytes;   /* bytes may be taken while above 0 (it may go below: debt) */
    int64_t last_ns;
} dr_token_bucket;

/* Limits from rates and the burst: a full bucket holds `burst_ms` worth of
 * its rate, and always at least one record. */
dr_bucket_limits dr_bucket_limits_make(uint64_t records_per_sec, uint64_t bytes_per_sec,
                                       int64_t burst_ms);

/* A full bucket. */
void dr_bucket_init(dr_token_bucket *b, const dr_bucket_limits *l, int64_t now_ns);

/* Refills the bucket for the time since it was last seen, then takes one
 * record of `bytes` bytes if both dimensions allow it. True when the record
 * may pass. Time going backwards refills nothing. */
bool dr_bucket_take(dr_token_bucket *b, const dr_bucket_limits *l, int64_t now_ns, uint64_t bytes);

#endif
