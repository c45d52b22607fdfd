/*
 * The series table: every metric series the agent holds, interned once.
 *
 * A node agent keeps hundreds of thousands of series alive between scrapes
 * (a kubelet's cAdvisor endpoint alone has tens of thousands), and most of
 * their label bytes repeat: the same names everywhere, the same namespace,
 * pod and container values on hundreds of series. So the table stores each
 * distinct string once (a symbol, reference-counted) and a series as its
 * hash and an array of symbol ids, name then value for each label, in
 * canonical order (sorted by name). A series of six labels then costs
 * 40 bytes plus its share of the strings (and its slot in the table),
 * which is what keeps the agent under its memory target per active
 * series.
 *
 * Users hold references: a scrape target's cache holds one for each series
 * it produced last time, every queued sample one for its series. The last
 * dr_series_unref frees the series and releases its symbols.
 *
 * Symbol ids are small dense integers, reused after their symbol is freed,
 * so that remote write 2.0 can map them to a request's own symbol table
 * with an array instead of a hash lookup.
 *
 * The table is used from the loop thread only. Worker threads may read the
 * labels of series they were handed while the loop holds references to
 * them (the table never moves a live series or symbol).
 */
#ifndef DROVER_SERIES_H
#define DROVER_SERIES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "labels.h"

typedef struct dr_series_table dr_series_table;

/* Prometheus' staleness marker: a NaN with this exact bit pattern says a
 * series ended (it disappeared from its target, or the target is gone).
 * Every other NaN is an ordinary value. */
#define DR_STALE_NAN_BITS 0x7ff0000000000002ull

static inline double dr_stale_nan(void)
{
    uint64_t bits = DR_STALE_NAN_BITS;
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static inline bool dr_is_stale_nan(double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    return bits == DR_STALE_NAN_BITS;
}

/* 16 bytes and the ids: 2 bytes each while every id of the series is below
 * 65536 (all of them, until an agent holds that many distinct strings),
 * else 4. Read them with dr_series_sym. */
typedef struct dr_series {
    uint64_t hash; /* dr_labels_hash of the canonical label set */
    uint32_t refs;
    uint16_t nlabels;
    uint8_t wide; /* ids are uint32_t, not uint16_t */
    uint8_t unused;
    /* 2 * nlabels symbol ids, name, value, name, value ..., each 2 or 4
     * bytes in host order */
    unsigned char ids[];
} dr_series;

/* Symbol id k of a series (label k / 2, its name when k is even). */
static inline uint32_t dr_series_sym(const dr_series *s, uint32_t k)
{
    if (s->wide) {
        uint32_t id;
        memcpy(&id, s->ids + 4 * (size_t)k, 4);
        return id;
    }
    uint16_t id;
    memcpy(&id, s->ids + 2 * (size_t)k, 2);
    return id;
}

/* A string of the table: its bytes (NUL-terminated, for convenience) and
 * length. Valid while some series uses the symbol. */
typedef struct dr_symbol_view {
    const char *s;
    uint32_t len;
} dr_symbol_view;

/* Default bound of the number of series (dr_series_table_new(0)). */
#define DR_SERIES_DEFAULT_MAX (4u * 1000u * 1000u)

/* A table that holds at most max_series series at once (0: the default).
 * NULL when out of memory. */
dr_series_table *dr_series_table_new(uint32_t max_series);
/* Frees the table. Every series must have been released; a table freed
 * with live series frees them too (their holders must be gone). */
void dr_series_table_free(dr_series_table *t);

/* Finds or adds the series of `canon`, which must be canonical (see
 * dr_labels_canon: sorted, no duplicates, no empty values), with `hash` its
 * dr_labels_hash. Stores a new reference in *out. Returns 0, DR_ENOMEM, or
 * DR_EAGAIN when the table is full or the series has more than
 * DR_SERIES_MAX_LABELS labels (the caller counts the sample as dropped). */
#define DR_SERIES_MAX_LABELS 65535u
int dr_series_intern(dr_series_table *t, const dr_labels *canon, uint64_t hash, dr_series **out);

/* The series of `canon` if the table has it, without taking a reference. */
dr_series *dr_series_lookup(const dr_series_table *t, const dr_labels *canon, uint64_t hash);

dr_series *dr_series_ref(dr_series *s);
void dr_series_unref(dr_series_table *t, dr_series *s);

/* The string of a symbol id; s is NULL for an id the table does not use. */
dr_symbol_view dr_series_symbol(const dr_series_table *t, uint32_t id);
/* One more than the highest symbol id in use (a bound for arrays indexed
 * by symbol id). */
uint32_t dr_series_symbol_bound(const dr_series_table *t);
/* The id of the symbol whose string is these bytes, or DR_SERIES_NO_SYMBOL
 * when no series uses that string. Takes no reference. */
#define DR_SERIES_NO_SYMBOL UINT32_MAX
uint32_t dr_series_symbol_find(const dr_series_table *t, const char *p, size_t n);

/* Label i of a series. */
void dr_series_label(const dr_series_table *t, const dr_series *s, uint32_t i, dr_symbol_view *name,
                     dr_symbol_view *value);
/* All labels of a series at once, name then value for each (2 * nlabels
 * views into out), as encoders walk them. False when an id of the series
 * has no symbol (a series not of this table). */
bool dr_series_label_views(const dr_series_table *t, const dr_series *s, dr_symbol_view *out);
/* The series' labels as a dr_labels of references into the table (valid
 * while the series is held). `out` is reset first. 0 or DR_ENOMEM. */
int dr_series_labels(const dr_series_table *t, const dr_series *s, dr_labels *out);
/* The value of label `name`, or a view with len 0 ("" s) when absent. */
dr_symbol_view dr_series_value(const dr_series_table *t, const dr_series *s, const char *name,
                               size_t name_len);

typedef struct dr_series_stats {
    uint32_t series;     /* live series */
    uint32_t symbols;    /* live symbols */
    uint64_t bytes;      /* memory the table holds: series, symbols, hash tables */
    uint64_t full_drops; /* dr_series_intern answers DR_EAGAIN */
} dr_series_stats;

void dr_series_table_stats(const dr_series_table *t, dr_series_stats *st);

#endif
