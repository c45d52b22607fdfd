/* The series cache of a scrape target (see cache.h). */
#include "cache.h"

#include <stdlib.h>
#include <string.h>

#include "series.h"

#define CACHE_MIN_SLOTS 64u

_Static_assert(sizeof(cache_entry) == 24, "a cache entry is 24 bytes");

void cache_init(scrape_cache *c, dr_series_table *series)
{
    memset(c, 0, sizeof *c);
    c->series = series;
}

static bool slot_empty(const cache_entry *e)
{
    return !cache_used(e);
}

/* The second half of a key as an entry keeps it; never (0, 0) with k1. */
static uint64_t stored_k2(uint64_t k1, uint64_t k2)
{
    k2 &= (1ull << CACHE_K2_BITS) - 1;
    return k1 == 0 && k2 == 0 ? 1 : k2;
}

void cache_free(scrape_cache *c)
{
    for (uint32_t i = 0; c->slots && i <= c->mask; i++)
        if (!slot_empty(&c->slots[i]) && c->slots[i].series)
            dr_series_unref(c->series, c->slots[i].series);
    free(c->slots);
    c->slots = NULL;
    c->mask = 0;
    c->n = 0;
}

cache_entry *cache_find(scrape_cache *c, uint64_t k1, uint64_t k2)
{
    if (!c->slots)
        return NULL;
    k2 = stored_k2(k1, k2);
    for (uint32_t i = (uint32_t)k1 & c->mask;; i = (i + 1) & c->mask) {
        cache_entry *e = &c->slots[i];
        if (slot_empty(e))
            return NULL;
        if (e->k1 == k1 && e->k2 == k2)
            return e;
    }
}

/* Places an entry known to be absent into a table with room. */
static cache_entry *place(cache_entry *slots, uint32_t mask, const cache_entry *src)
{
    uint32_t i = (uint32_t)src->k1 & mask;
    while (!slot_empty(&slots[i]))
        i = (i + 1) & mask;
    slots[i] = *src;
    return &slots[i];
}

/* Keeps the load under 7/8: lookups of series that are there (nearly all
 * of them, in steady state) stay within a few adjacent slots even so, and
 * a cAdvisor target's 7k series fit 8k slots rather than 16k. */
static int grow(scrape_cache *c)
{
    uint32_t nslots = c->slots ? (c->mask + 1) * 2 : CACHE_MIN_SLOTS;
    cache_entry *ns = calloc(nslots, sizeof *ns);
    if (!ns)
        return DR_ENOMEM;
    for (uint32_t i = 0; c->slots && i <= c->mask; i++)
        if (!slot_empty(&c->slots[i]))
            place(ns, nslots - 1, &c->slots[i]);
    free(c->slots);
    c->slots = ns;
    c->mask = nslots - 1;
    return 0;
}

cache_entry *cache_add(scrape_cache *c, uint64_t k1, uint64_t k2, dr_series *series, uint32_t seen,
                       uint32_t flags)
{
    if ((!c->slots || (uint64_t)(c->n + 1) * 8 > (uint64_t)(c->mask + 1) * 7) && grow(c) != 0)
        return NULL;
    cache_entry e = {.k1 = k1, .k2 = stored_k2(k1, k2), .series = series, .flags = flags};
    cache_mark_seen(&e, seen);
    c->n++;
    return place(c->slots, c->mask, &e);
}

/* Empties slot i and moves later entries of its probe run back into the
 * gap, so lookups never stop early at a hole. */
static void remove_at(scrape_cache *c, uint32_t i)
{
    uint32_t hole = i;
    for (uint32_t j = (i + 1) & c->mask;; j = (j + 1) & c->mask) {
        cache_entry *e = &c->slots[j];
        if (slot_empty(e))
            break;
        uint32_t home = (uint32_t)e->k1 & c->mask;
        /* e may fill the hole when its home is not cyclically in (hole, j] */
        bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            c->slots[hole] = *e;
            hole = j;
        }
    }
    memset(&c->slots[hole], 0, sizeof c->slots[hole]);
    c->n--;
}

void cache_sweep(scrape_cache *c, uint32_t iter, void (*fn)(void *ctx, const cache_entry *e),
                 void *ctx)
{
    if (!c->slots)
        return;
    /* Report first, then remove: removal moves entries around. */
    if (fn)
        for (uint32_t i = 0; i <= c->mask; i++)
            if (!slot_empty(&c->slots[i]) && !cache_seen(&c->slots[i], iter))
                fn(ctx, &c->slots[i]);
    uint32_t i = 0, steps = 0, total = c->mask + 1;
    /* Start at an empty slot (the load bound leaves some) so that no probe
     * run wraps around the start of the scan: removal only moves entries
     * back toward the slot being looked at, never behind the scan. */
    while (!slot_empty(&c->slots[i]))
        i++;
    while (steps < total) {
        cache_entry *e = &c->slots[i];
        if (!slot_empty(e) && !cache_seen(e, iter)) {
            if (e->series)
                dr_series_unref(c->series, e->series);
            remove_at(c, i);
            continue; /* slot i may hold a moved entry now: look again */
        }
        i = (i + 1) & c->mask;
        steps++;
    }
}

size_t cache_bytes(const scrape_cache *c)
{
    return c->slots ? (size_t)(c->mask + 1) * sizeof(cache_entry) : 0;
}
