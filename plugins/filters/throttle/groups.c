/*
 * Throttle groups (see groups.h): chained hashing for lookups and a doubly
 * linked recency list for eviction, both O(1) per record. The slot array
 * starts small and doubles as groups come, so a filter keyed by namespace
 * on a node with a dozen namespaces holds a dozen groups' worth of memory,
 * not max_groups'.
 */
#include <stdlib.h>
#include <string.h>

#include "drover/plugin.h"
#include "groups.h"

#define INITIAL_SLOTS 16

static uint64_t hash_key(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

int dr_throttle_groups_init(dr_throttle_groups *g, size_t max)
{
    memset(g, 0, sizeof *g);
    g->nslots = INITIAL_SLOTS;
    g->slots = calloc(g->nslots, sizeof *g->slots);
    g->max = max ? max : 1;
    return g->slots ? 0 : DR_ENOMEM;
}

void dr_throttle_groups_free(dr_throttle_groups *g)
{
    dr_throttle_group *e = g->newest;
    while (e) {
        dr_throttle_group *next = e->older;
        free(e);
        e = next;
    }
    free(g->slots);
    memset(g, 0, sizeof *g);
}

static void unlink_recency(dr_throttle_groups *g, dr_throttle_group *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        g->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        g->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void push_newest(dr_throttle_groups *g, dr_throttle_group *e)
{
    e->newer = NULL;
    e->older = g->newest;
    if (g->newest)
        g->newest->newer = e;
    g->newest = e;
    if (!g->oldest)
        g->oldest = e;
}

static void unlink_slot(dr_throttle_groups *g, dr_throttle_group *e)
{
    dr_throttle_group **pp = &g->slots[e->hash & (g->nslots - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
}

static void evict_oldest(dr_throttle_groups *g)
{
    dr_throttle_group *e = g->oldest;
    unlink_slot(g, e);
    unlink_recency(g, e);
    free(e);
    g->n--;
    g->evicted++;
}

/* Doubles the slots while there are more groups than slots. A failure only
 * leaves chains longer. */
static void maybe_grow(dr_throttle_groups *g)
{
    if (g->n < g->nslots)
        return;
    size_t nslots = g->nslots * 2;
    dr_throttle_group **slots = calloc(nslots, sizeof *slots);
    if (!slots)
        return;
    for (size_t i = 0; i < g->nslots; i++) {
        dr_throttle_group *e = g->slots[i];
        while (e) {
            dr_throttle_group *next = e->hnext;
            dr_throttle_group **head = &slots[e->hash & (nslots - 1)];
            e->hnext = *head;
            *head = e;
            e = next;
        }
    }
    free(g->slots);
    g->slots = slots;
    g->nslots = nslots;
}

dr_throttle_group *dr_throttle_groups_get(dr_throttle_groups *g, const char *key, size_t len,
                                          const dr_bucket_limits *l, int64_t now_ns)
{
    if (len > DR_THROTTLE_MAX_KEY)
        len = DR_THROTTLE_MAX_KEY;
    uint64_t h = hash_key(key, len);
    for (dr_throttle_group *e = g->slots[h & (g->nslots - 1)]; e; e = e->hnext) {
        if (e->hash == h && e->key_len == len && memcmp(e->key, key, len) == 0) {
            unlink_recency(g, e);
            push_newest(g, e);
            return e;
        }
    }
    if (g->n >= g->max)
        evict_oldest(g);
    dr_throttle_group *e = malloc(sizeof *e + len);
    if (!e)
        return NULL;
    e->hash = h;
    e->key_len = len;
    if (len)
        memcpy(e->key, key, len);
    dr_bucket_init(&e->bucket, l, now_ns);
    g->n++;
    maybe_grow(g);
    dr_throttle_group **head = &g->slots[h & (g->nslots - 1)];
    e->hnext = *head;
    *head = e;
    push_newest(g, e);
    return e;
}
