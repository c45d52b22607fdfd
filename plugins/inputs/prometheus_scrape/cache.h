/*
 * A scrape target's series cache: what each series line of the target's
 * body became last time, so that a scrape does the expensive part (merging
 * the target's labels, metric relabeling, canonical ordering, interning)
 * only for lines it has not seen before. In steady state a scrape is a
 * parse, a hash and a lookup per sample.
 *
 * The key is the parser's key of the series (dr_expo_key): for text bodies
 * a 128-bit hash of the series' bytes as the body spells them, so that a
 * known series is found before its labels are even taken apart. Keeping
 * the bytes themselves would cost as much memory as the series.
 *
 * Entries also drive staleness: each remembers the scrape (iteration) that
 * last saw it, so after a scrape the entries seen the time before but not
 * this time are the series that disappeared.
 *
 * Open addressing with linear probing and backward-shift deletion: one
 * array of 24-byte entries, no allocation per entry.
 */
#ifndef DROVER_SCRAPE_CACHE_H
#define DROVER_SCRAPE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drover/plugin.h"
#include "labels.h"

enum {
    CACHE_DROPPED = 1u << 0,     /* metric relabeling dropped the line */
    CACHE_EXPLICIT_TS = 1u << 1, /* the body gave a timestamp: no staleness */
    CACHE_NEW = 1u << 2,         /* added by the scrape in progress */
    CACHE_RESPELLED = 1u << 3,   /* its series came again under another key */
};

/* 24 bytes: the key keeps 112 of its 128 bits (still far beyond chance
 * collisions), and of the iteration that last saw the entry only the low 8
 * bits, enough to tell "this scrape" from "the last one": an entry not seen
 * in a scrape is gone at its end. */
typedef struct cache_entry {
    uint64_t k1;        /* the key; k1 == 0 && k2 == 0 marks an empty slot */
    uint64_t k2 : 48;   /* bits of the key's second half */
    uint64_t seen : 8;  /* low bits of the iteration that last saw it */
    uint64_t flags : 8; /* CACHE_* */
    dr_series *series;  /* one reference; NULL when dropped */
} cache_entry;

#define CACHE_K2_BITS 48

/* Whether iteration `iter` saw the entry; marks it seen by `iter`. */
static inline bool cache_seen(const cache_entry *e, uint32_t iter)
{
    return e->seen == (iter & 0xffu);
}

static inline void cache_mark_seen(cache_entry *e, uint32_t iter)
{
    e->seen = iter & 0xffu;
}

static inline bool cache_used(const cache_entry *e)
{
    return e->k1 != 0 || e->k2 != 0;
}

typedef struct scrape_cache {
    cache_entry *slots;
    uint32_t mask; /* slots - 1; 0 with no slots yet */
    uint32_t n;
    dr_series_table *series; /* where the entries' series live */
} scrape_cache;

void cache_init(scrape_cache *c, dr_series_table *series);
/* Releases every entry's series and the table. */
void cache_free(scrape_cache *c);
/* The entry of a key, or NULL. */
cache_entry *cache_find(scrape_cache *c, uint64_t k1, uint64_t k2);
/* Adds an entry for a key that is not in the cache; the entry takes over
 * the caller's reference to `series` (may be NULL). NULL when out of
 * memory (the reference is then still the caller's). */
cache_entry *cache_add(scrape_cache *c, uint64_t k1, uint64_t k2, dr_series *series, uint32_t seen,
                       uint32_t flags);
/* Calls fn for every entry not seen in iteration `iter`, then removes
 * those entries (releasing their series). fn may be NULL. */
void cache_sweep(scrape_cache *c, uint32_t iter, void (*fn)(void *ctx, const cache_entry *e),
                 void *ctx);
/* Memory the cache holds. */
size_t cache_bytes(const scrape_cache *c);

#endif
