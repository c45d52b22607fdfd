/*
 * The series table (see series.h): two chained hash tables, one of symbols
 * (distinct strings) and one of series (arrays of symbol ids), both grown
 * by doubling as they fill and never shrunk below their first size.
 *
 * Chained tables, rather than open addressing, because entries are freed
 * one by one all the time (series come and go with pods) and a chain
 * unlinks without tombstones.
 */
#include "series.h"

#include <stdlib.h>
#include <string.h>

#include "drover/plugin.h"

/* First sizes of the hash tables: small, so an agent with few series
 * stays small; doubling takes them to any size. */
#define SERIES_BUCKETS_MIN 1024u
#define SYMBOL_BUCKETS_MIN 1024u

typedef struct symbol {
    uint64_t hash;
    struct symbol *next;
    uint32_t refs;
    uint32_t len;
    uint32_t id;
    char s[]; /* len bytes and a NUL */
} symbol;

struct dr_series_table {
    uint32_t max_series;
    uint32_t nseries;
    dr_series **series_buckets;
    uint32_t series_mask; /* buckets - 1 (a power of two) */

    uint32_t nsymbols;
    symbol **symbol_buckets;
    uint32_t symbol_mask;

    /* Symbols by id, and the ids freed for reuse (a stack). */
    symbol **by_id;
    uint32_t id_bound; /* ids handed out so far: by_id[0..id_bound) */
    uint32_t id_cap;
    uint32_t *free_ids;
    uint32_t nfree_ids;
    uint32_t free_ids_cap;

    uint64_t bytes;
    uint64_t full_drops;
};

/* A string hash for symbols: 8 bytes at a time through a multiply and a
 * fold, then the tail. Good enough spread for a chained table, and several
 * times faster than a byte-at-a-time hash on the long label values of
 * Kubernetes series (container ids, image digests). */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    return x;
}

static uint64_t symbol_hash(const char *p, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mix64(h ^ w) * 0x9e3779b97f4a7c15ull;
        p += 8;
        n -= 8;
    }
    uint64_t tail = 0;
    memcpy(&tail, p, n);
    return mix64(h ^ tail);
}

dr_series_table *dr_series_table_new(uint32_t max_series)
{
    dr_series_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->max_series = max_series ? max_series : DR_SERIES_DEFAULT_MAX;
    t->series_buckets = calloc(SERIES_BUCKETS_MIN, sizeof *t->series_buckets);
    t->symbol_buckets = calloc(SYMBOL_BUCKETS_MIN, sizeof *t->symbol_buckets);
    if (!t->series_buckets || !t->symbol_buckets) {
        free(t->series_buckets);
        free(t->symbol_buckets);
        free(t);
        return NULL;
    }
    t->series_mask = SERIES_BUCKETS_MIN - 1;
    t->symbol_mask = SYMBOL_BUCKETS_MIN - 1;
    t->bytes = sizeof *t + (SERIES_BUCKETS_MIN + SYMBOL_BUCKETS_MIN) * sizeof(void *);
    return t;
}

void dr_series_table_free(dr_series_table *t)
{
    if (!t)
        return;
    for (uint32_t b = 0; b <= t->series_mask; b++) {
        dr_series *s = t->series_buckets[b];
        while (s) {
            dr_series *next = s->next;
            free(s);
            s = next;
        }
    }
    for (uint32_t b = 0; b <= t->symbol_mask; b++) {
        symbol *y = t->symbol_buckets[b];
        while (y) {
            symbol *next = y->next;
            free(y);
            y = next;
        }
    }
    free(t->series_buckets);
    free(t->symbol_buckets);
    free(t->by_id);
    free(t->free_ids);
    free(t);
}

/* ---- symbols ---------------------------------------------------------------- */

/* Doubles the symbol table once it holds more symbols than buckets. */
static void symbols_grow(dr_series_table *t)
{
    uint32_t nb = (t->symbol_mask + 1) * 2;
    symbol **nt = calloc(nb, sizeof *nt);
    if (!nt)
        return; /* longer chains, still correct */
    for (uint32_t b = 0; b <= t->symbol_mask; b++) {
        symbol *y = t->symbol_buckets[b];
        while (y) {
            symbol *next = y->next;
            uint32_t i = (uint32_t)y->hash & (nb - 1);
            y->next = nt[i];
            nt[i] = y;
            y = next;
        }
    }
    t->bytes += (uint64_t)(nb - (t->symbol_mask + 1)) * sizeof *nt;
    free(t->symbol_buckets);
    t->symbol_buckets = nt;
    t->symbol_mask = nb - 1;
}

static int symbol_take_id(dr_series_table *t, uint32_t *id)
{
    if (t->nfree_ids > 0) {
        *id = t->free_ids[--t->nfree_ids];
        return 0;
    }
    if (t->id_bound == t->id_cap) {
        uint32_t ncap = t->id_cap ? t->id_cap * 2 : 1024;
        symbol **n = realloc(t->by_id, (size_t)ncap * sizeof *n);
        if (!n)
            return DR_ENOMEM;
        t->bytes += (uint64_t)(ncap - t->id_cap) * sizeof *n;
        t->by_id = n;
        t->id_cap = ncap;
    }
    *id = t->id_bound++;
    return 0;
}

static void symbol_give_id(dr_series_table *t, uint32_t id)
{
    t->by_id[id] = NULL;
    if (t->nfree_ids == t->free_ids_cap) {
        uint32_t ncap = t->free_ids_cap ? t->free_ids_cap * 2 : 256;
        uint32_t *n = realloc(t->free_ids, (size_t)ncap * sizeof *n);
        if (!n)
            return; /* the id is lost, not reused: harmless */
        t->bytes += (uint64_t)(ncap - t->free_ids_cap) * sizeof *n;
        t->free_ids = n;
        t->free_ids_cap = ncap;
    }
    t->free_ids[t->nfree_ids++] = id;
}

/* Finds or adds a symbol and takes a reference to it. */
static symbol *symbol_acquire(dr_series_table *t, const char *p, uint32_t n)
{
    uint64_t h = symbol_hash(p, n);
    for (symbol *y = t->symbol_buckets[h & t->symbol_mask]; y; y = y->next) {
        if (y->hash == h && y->len == n && memcmp(y->s, p, n) == 0) {
            y->refs++;
            return y;
        }
    }
    symbol *y = malloc(sizeof *y + n + 1);
    if (!y)
        return NULL;
    if (symbol_take_id(t, &y->id) != 0) {
        free(y);
        return NULL;
    }
    y->hash = h;
    y->refs = 1;
    y->len = n;
    memcpy(y->s, p, n);
    y->s[n] = '\0';
    t->by_id[y->id] = y;
    uint32_t b = (uint32_t)h & t->symbol_mask;
    y->next = t->symbol_buckets[b];
    t->symbol_buckets[b] = y;
    t->nsymbols++;
    t->bytes += sizeof *y + n + 1;
    if (t->nsymbols > t->symbol_mask + 1)
        symbols_grow(t);
    return y;
}

static void symbol_release(dr_series_table *t, uint32_t id)
{
    symbol *y = t->by_id[id];
    if (--y->refs > 0)
        return;
    symbol **pp = &t->symbol_buckets[y->hash & t->symbol_mask];
    while (*pp != y)
        pp = &(*pp)->next;
    *pp = y->next;
    t->nsymbols--;
    t->bytes -= sizeof *y + y->len + 1;
    symbol_give_id(t, id);
    free(y);
}

dr_symbol_view dr_series_symbol(const dr_series_table *t, uint32_t id)
{
    dr_symbol_view v = {NULL, 0};
    if (id < t->id_bound && t->by_id[id]) {
        v.s = t->by_id[id]->s;
        v.len = t->by_id[id]->len;
    }
    return v;
}

uint32_t dr_series_symbol_bound(const dr_series_table *t)
{
    return t->id_bound;
}

uint32_t dr_series_symbol_find(const dr_series_table *t, const char *p, size_t n)
{
    if (n > UINT32_MAX)
        return DR_SERIES_NO_SYMBOL;
    uint64_t h = symbol_hash(p, n);
    for (const symbol *y = t->symbol_buckets[h & t->symbol_mask]; y; y = y->next)
        if (y->hash == h && y->len == n && memcmp(y->s, p, n) == 0)
            return y->id;
    return DR_SERIES_NO_SYMBOL;
}

/* ---- series ----------------------------------------------------------------- */

static void series_grow(dr_series_table *t)
{
    uint32_t nb = (t->series_mask + 1) * 2;
    dr_series **nt = calloc(nb, sizeof *nt);
    if (!nt)
        return;
    for (uint32_t b = 0; b <= t->series_mask; b++) {
        dr_series *s = t->series_buckets[b];
        while (s) {
            dr_series *next = s->next;
            uint32_t i = (uint32_t)mix64(s->hash) & (nb - 1);
            s->next = nt[i];
            nt[i] = s;
            s = next;
        }
    }
    t->bytes += (uint64_t)(nb - (t->series_mask + 1)) * sizeof *nt;
    free(t->series_buckets);
    t->series_buckets = nt;
    t->series_mask = nb - 1;
}

/* The label hash is FNV, whose low bits are weak for similar inputs:
 * buckets are chosen from a remix of it. */
static uint32_t series_bucket(const dr_series_table *t, uint64_t hash)
{
    return (uint32_t)mix64(hash) & t->series_mask;
}

static bool series_equals(const dr_series_table *t, const dr_series *s, const dr_labels *ls)
{
    if (s->nlabels != ls->n)
        return false;
    for (uint32_t i = 0; i < ls->n; i++) {
        const symbol *n = t->by_id[s->syms[2 * i]];
        const symbol *v = t->by_id[s->syms[2 * i + 1]];
        const dr_label *l = &ls->v[i];
        if (n->len != l->name_len || v->len != l->value_len || memcmp(n->s, l->name, n->len) != 0 ||
            memcmp(v->s, l->value, v->len) != 0)
            return false;
    }
    return true;
}

dr_series *dr_series_lookup(const dr_series_table *t, const dr_labels *canon, uint64_t hash)
{
    for (dr_series *s = t->series_buckets[series_bucket(t, hash)]; s; s = s->next)
        if (s->hash == hash && series_equals(t, s, canon))
            return s;
    return NULL;
}

static size_t series_size(uint32_t nlabels)
{
    return sizeof(dr_series) + (size_t)nlabels * 2 * sizeof(uint32_t);
}

static void series_release_symbols(dr_series_table *t, const dr_series *s, uint32_t nsyms)
{
    for (uint32_t i = 0; i < nsyms; i++)
        symbol_release(t, s->syms[i]);
}

int dr_series_intern(dr_series_table *t, const dr_labels *canon, uint64_t hash, dr_series **out)
{
    dr_series *s = dr_series_lookup(t, canon, hash);
    if (s) {
        s->refs++;
        *out = s;
        return 0;
    }
    if (t->nseries >= t->max_series) {
        t->full_drops++;
        return DR_EAGAIN;
    }
    s = malloc(series_size(canon->n));
    if (!s)
        return DR_ENOMEM;
    s->hash = hash;
    s->refs = 1;
    s->nlabels = canon->n;
    for (uint32_t i = 0; i < canon->n; i++) {
        const dr_label *l = &canon->v[i];
        symbol *n = symbol_acquire(t, l->name, l->name_len);
        symbol *v = n ? symbol_acquire(t, l->value, l->value_len) : NULL;
        if (!v) {
            if (n)
                symbol_release(t, n->id);
            series_release_symbols(t, s, 2 * i);
            free(s);
            return DR_ENOMEM;
        }
        s->syms[2 * i] = n->id;
        s->syms[2 * i + 1] = v->id;
    }
    uint32_t b = series_bucket(t, hash);
    s->next = t->series_buckets[b];
    t->series_buckets[b] = s;
    t->nseries++;
    t->bytes += series_size(s->nlabels);
    if (t->nseries > t->series_mask + 1)
        series_grow(t);
    *out = s;
    return 0;
}

dr_series *dr_series_ref(dr_series *s)
{
    s->refs++;
    return s;
}

void dr_series_unref(dr_series_table *t, dr_series *s)
{
    if (!s || --s->refs > 0)
        return;
    dr_series **pp = &t->series_buckets[series_bucket(t, s->hash)];
    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    t->nseries--;
    t->bytes -= series_size(s->nlabels);
    series_release_symbols(t, s, 2 * s->nlabels);
    free(s);
}

void dr_series_label(const dr_series_table *t, const dr_series *s, uint32_t i, dr_symbol_view *name,
                     dr_symbol_view *value)
{
    *name = dr_series_symbol(t, s->syms[2 * i]);
    *value = dr_series_symbol(t, s->syms[2 * i + 1]);
}

bool dr_series_label_views(const dr_series_table *t, const dr_series *s, dr_symbol_view *out)
{
    for (uint32_t i = 0; i < 2 * s->nlabels; i++) {
        uint32_t id = s->syms[i];
        if (id >= t->id_bound || !t->by_id[id])
            return false;
        out[i].s = t->by_id[id]->s;
        out[i].len = t->by_id[id]->len;
    }
    return true;
}

int dr_series_labels(const dr_series_table *t, const dr_series *s, dr_labels *out)
{
    dr_labels_reset(out);
    for (uint32_t i = 0; i < s->nlabels; i++) {
        dr_symbol_view n, v;
        dr_series_label(t, s, i, &n, &v);
        int rc = dr_labels_add(out, n.s, n.len, v.s, v.len);
        if (rc != 0)
            return rc;
    }
    return 0;
}

dr_symbol_view dr_series_value(const dr_series_table *t, const dr_series *s, const char *name,
                               size_t name_len)
{
    for (uint32_t i = 0; i < s->nlabels; i++) {
        dr_symbol_view n = dr_series_symbol(t, s->syms[2 * i]);
        if (n.len == name_len && memcmp(n.s, name, name_len) == 0)
            return dr_series_symbol(t, s->syms[2 * i + 1]);
    }
    dr_symbol_view none = {"", 0};
    return none;
}

void dr_series_table_stats(const dr_series_table *t, dr_series_stats *st)
{
    st->series = t->nseries;
    st->symbols = t->nsymbols;
    st->bytes = t->bytes;
    st->full_drops = t->full_drops;
}
