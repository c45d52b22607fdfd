/*
 * The throttle filter's groups: a token bucket per value of the grouping
 * key, in a hash table bounded by a number of groups. When it is full, the
 * group used least recently makes room (it starts again with a full bucket
 * if it comes back).
 */
#ifndef DROVER_THROTTLE_GROUPS_H
#define DROVER_THROTTLE_GROUPS_H

#include <stddef.h>
#include <stdint.h>

#include "bucket.h"

/* Group values longer than this are grouped by their first bytes: the
 * table's memory stays bounded whatever the key holds. */
#define DR_THROTTLE_MAX_KEY 256

typedef struct dr_throttle_group dr_throttle_group;
struct dr_throttle_group {
    dr_throttle_group *hnext;         /* next in its hash chain */
    dr_throttle_group *newer, *older; /* the recency list */
    uint64_t hash;
    dr_token_bucket bucket;
    size_t key_len;
    char key[];
};

typedef struct dr_throttle_groups {
    dr_throttle_group **slots;
    size_t nslots; /* a power of two */
    size_t n, max;
    dr_throttle_group *newest, *oldest;
    uint64_t evicted;
} dr_throttle_groups;

/* 0 or DR_ENOMEM. */
int dr_throttle_groups_init(dr_throttle_groups *g, size_t max);
void dr_throttle_groups_free(dr_throttle_groups *g);

/* The group of key[0..len) (cut to DR_THROTTLE_MAX_KEY), made with a full
 * bucket when new, and now the most recently used. NULL when out of memory. */
dr_throttle_group *dr_throttle_groups_get(dr_throttle_groups *g, const char *key, size_t len,
                                          const dr_bucket_limits *l, int64_t now_ns);

#endif
