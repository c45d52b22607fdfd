/*
 * The series table (see series.h): two hash tables, one of symbols
 * (distinct strings) and one of series (arrays of symbol ids), both grown
 * by doubling as they fill and never shrunk below their first size.
 *
 * Symbols are chained: they are few, and a chain unlinks without
 * tombstones. Series are many, so their table is open addressing (linear
 * probing, backward-shift deletion, no tombstones either): an array of
 * pointers and nothing in the series itself, 8 bytes per series less than
 * a chain link. Lookups there happen only for series a scrape has not seen
 * before (the targets' caches find the rest), and a removal finds its slot
 * by pointer, so the probes that read a series' hash are few.
 */
#include "series.h"

#include <stdlib.h>
#include <string.h>

#include "drover/plugin.h"

/* First sizes of the hash tables: small, so an agent with few series
 * stays small; doubling takes them to any size. */
#define SERIES_SLOTS_MIN 1024u
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
    dr_series **series_slots; /* NULL: empty */
    uint32_t series_mask;     /* slots - 1 (a power of two) */

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
    t->series_slots = calloc(SERIES_SLOTS_MIN, sizeof *t->series_slots);
    t->symbol_buckets = calloc(SYMBOL_BUCKETS_MIN, sizeof *t->symbol_buckets);
    if (!t->series_slots || !t->symbol_buckets) {
        free(t->series_slots);
        free(t->symbol_buckets);
        free(t);
        return NULL;
    }
    t->series_mask = SERIES_SLOTS_MIN - 1;
    t->symbol_mask = SYMBOL_BUCKETS_MIN - 1;
    t->bytes = sizeof *t + (SERIES_SLOTS_MIN + SYMBOL_BUCKETS_MIN) * sizeof(void *);
    return t;
}

void dr_series_table_free(dr_series_table *t)
{
    if (!t)
        return;
    for (uint32_t i = 0; i <= t->series_mask; i++)
        free(t->series_slots[i]);
    for (uint32_t b = 0; b <= t->symbol_mask; b++) {
        symbol *y = t->symbol_buckets[b];
        while (y) {
            symbol *next = y->next;
            free(y);
            y = next;
        }
    }
    free(t->series_slots);
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

/* The label hash is FNV, whose low bits are weak for similar inputs:
 * slots are chosen from a remix of it. */
static uint32_t series_home(uint64_t hash, uint32_t mask)
{
    return (uint32_t)mix64(hash) & mask;
}

/* Places a series known to be absent into slots with room. */
static void series_place(dr_series **slots, uint32_t mask, dr_series *s)
{
    uint32_t i = series_home(s->hash, mask);
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = s;
}

/* Doubles the slots; false when out of memory (the table is then full
 * sooner, and still correct). */
static bool series_grow(dr_series_table *t)
{
    uint32_t nslots = (t->series_mask + 1) * 2;
    dr_series **ns = calloc(nslots, sizeof *ns);
    if (!ns)
        return false;
    for (uint32_t i = 0; i <= t->series_mask; i++)
        if (t->series_slots[i])
            series_place(ns, nslots - 1, t->series_slots[i]);
    t->bytes += (uint64_t)(nslots - (t->series_mask + 1)) * sizeof *ns;
    free(t->series_slots);
    t->series_slots = ns;
    t->series_mask = nslots - 1;
    return true;
}

static bool series_equals(const dr_series_table *t, const dr_series *s, const dr_labels *ls)
{
    if (s->nlabels != ls->n)
        return false;
    for (uint32_t i = 0; i < ls->n; i++) {
        const symbol *n = t->by_id[dr_series_sym(s, 2 * i)];
        const symbol *v = t->by_id[dr_series_sym(s, 2 * i + 1)];
        const dr_label *l = &ls->v[i];
        if (n->len != l->name_len || v->len != l->value_len || memcmp(n->s, l->name, n->len) != 0 ||
            memcmp(v->s, l->value, v->len) != 0)
            return false;
    }
    return true;
}

dr_series *dr_series_lookup(const dr_series_table *t, const dr_labels *canon, uint64_t hash)
{
    for (uint32_t i = series_home(hash, t->series_mask);; i = (i + 1) & t->series_mask) {
        dr_series *s = t->series_slots[i];
        if (!s)
            return NULL;
        if (s->hash == hash && series_equals(t, s, canon))
            return s;
    }
}

static size_t series_size(uint32_t nlabels, bool wide)
{
    return sizeof(dr_series) + (size_t)nlabels * 2 * (wide ? 4 : 2);
}

static void series_set_sym(dr_series *s, uint32_t k, uint32_t id)
{
    if (s->wide) {
        memcpy(s->ids + 4 * (size_t)k, &id, 4);
    } else {
        uint16_t v = (uint16_t)id;
        memcpy(s->ids + 2 * (size_t)k, &v, 2);
    }
}

static void series_release_symbols(dr_series_table *t, const dr_series *s, uint32_t nsyms)
{
    for (uint32_t i = 0; i < nsyms; i++)
        symbol_release(t, dr_series_sym(s, i));
}

/* Takes the symbols of a label set: ids[2 * i] and ids[2 * i + 1] for label
 * i. DR_ENOMEM with none taken. */
static int acquire_symbols(dr_series_table *t, const dr_labels *canon, uint32_t *ids)
{
    for (uint32_t i = 0; i < canon->n; i++) {
        const dr_label *l = &canon->v[i];
        symbol *n = symbol_acquire(t, l->name, l->name_len);
        symbol *v = n ? symbol_acquire(t, l->value, l->value_len) : NULL;
        if (!v) {
            if (n)
                symbol_release(t, n->id);
            for (uint32_t k = 0; k < 2 * i; k++)
                symbol_release(t, ids[k]);
            return DR_ENOMEM;
        }
        ids[2 * i] = n->id;
        ids[2 * i + 1] = v->id;
    }
    return 0;
}

int dr_series_intern(dr_series_table *t, const dr_labels *canon, uint64_t hash, dr_series **out)
{
    dr_series *s = dr_series_lookup(t, canon, hash);
    if (s) {
        s->refs++;
        *out = s;
        return 0;
    }
    if (t->nseries >= t->max_series || canon->n > DR_SERIES_MAX_LABELS ||
        ((uint64_t)(t->nseries + 1) * 8 > (uint64_t)(t->series_mask + 1) * 7 && !series_grow(t))) {
        t->full_drops++;
        return DR_EAGAIN;
    }
    uint32_t stack[64], *ids = stack;
    if (2 * (size_t)canon->n > sizeof stack / sizeof stack[0] &&
        !(ids = malloc(2 * (size_t)canon->n * sizeof *ids)))
        return DR_ENOMEM;
    int rc = acquire_symbols(t, canon, ids);
    bool wide = false;
    for (uint32_t k = 0; rc == 0 && k < 2 * canon->n; k++)
        wide = wide || ids[k] > UINT16_MAX;
    if (rc == 0 && !(s = malloc(series_size(canon->n, wide)))) {
        for (uint32_t k = 0; k < 2 * canon->n; k++)
            symbol_release(t, ids[k]);
        rc = DR_ENOMEM;
    }
    if (rc == 0) {
        s->hash = hash;
        s->refs = 1;
        s->nlabels = (uint16_t)canon->n;
        s->wide = wide;
        s->unused = 0;
        for (uint32_t k = 0; k < 2 * canon->n; k++)
            series_set_sym(s, k, ids[k]);
        series_place(t->series_slots, t->series_mask, s);
        t->nseries++;
        t->bytes += series_size(s->nlabels, wide);
        *out = s;
    }
    if (ids != stack)
        free(ids);
    return rc;
}

/* Empties slot i and moves later series of its probe run back into the
 * gap, so that lookups never stop early at a hole. */
static void series_remove_at(dr_series_table *t, uint32_t i)
{
    uint32_t mask = t->series_mask, hole = i;
    for (uint32_t j = (i + 1) & mask; t->series_slots[j]; j = (j + 1) & mask) {
        uint32_t home = series_home(t->series_slots[j]->hash, mask);
        /* it may fill the hole when its home is not cyclically in (hole, j] */
        bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            t->series_slots[hole] = t->series_slots[j];
            hole = j;
        }
    }
    t->series_slots[hole] = NULL;
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
    uint32_t i = series_home(s->hash, t->series_mask);
    while (t->series_slots[i] != s)
        i = (i + 1) & t->series_mask;
    series_remove_at(t, i);
    t->nseries--;
    t->bytes -= series_size(s->nlabels, s->wide);
    series_release_symbols(t, s, 2 * (uint32_t)s->nlabels);
    free(s);
}

void dr_series_label(const dr_series_table *t, const dr_series *s, uint32_t i, dr_symbol_view *name,
                     dr_symbol_view *value)
{
    *name = dr_series_symbol(t, dr_series_sym(s, 2 * i));
    *value = dr_series_symbol(t, dr_series_sym(s, 2 * i + 1));
}

bool dr_series_label_views(const dr_series_table *t, const dr_series *s, dr_symbol_view *out)
{
    for (uint32_t i = 0; i < 2 * (uint32_t)s->nlabels; i++) {
        uint32_t id = dr_series_sym(s, i);
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
        dr_symbol_view n = dr_series_symbol(t, dr_series_sym(s, 2 * i));
        if (n.len == name_len && memcmp(n.s, name, name_len) == 0)
            return dr_series_symbol(t, dr_series_sym(s, 2 * i + 1));
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
