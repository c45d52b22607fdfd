/*
 * Remote-write request encoders (see prw.h).
 *
 * Every message is written in two steps: its size is computed from the
 * data (varint lengths are cheap to compute), then the output is reserved
 * once and the bytes are stored through a plain pointer. A length prefix is
 * therefore always known before its message, and nothing is copied twice,
 * except the 2.0 TimeSeries, which go through a scratch buffer because the
 * symbols table they fill must come first in the request.
 *
 * Field numbers (PROTOCOLS.md; Prometheus prompb/types.proto, remote.proto
 * and io/prometheus/write/v2/types.proto):
 *   1.0 WriteRequest 1 timeseries, 3 metadata
 *       TimeSeries 1 labels, 2 samples, 4 histograms
 *       Label 1 name, 2 value      Sample 1 value (double), 2 timestamp
 *       MetricMetadata 1 type, 2 metric_family_name, 4 help, 5 unit
 *   2.0 Request 4 symbols, 5 timeseries
 *       TimeSeries 1 labels_refs (packed uint32), 2 samples, 3 histograms,
 *                  5 metadata
 *       Metadata 1 type, 3 help_ref, 4 unit_ref
 *   both Histogram 1 count_int, 2 count_float, 3 sum, 4 schema (sint32),
 *       5 zero_threshold, 6 zero_count_int, 7 zero_count_float,
 *       8/11 negative/positive spans, 9/12 deltas (packed sint64),
 *       10/13 counts (packed double), 14 reset_hint, 15 timestamp
 *       BucketSpan 1 offset (sint32), 2 length
 */
#include "prw.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---- wire primitives ---------------------------------------------------------- */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2 };

#define TAG(field, wt) ((uint8_t)(((field) << 3) | (wt)))

/* Bytes of v as a varint. */
static inline size_t vsize(uint64_t v)
{
    return (size_t)(64 - __builtin_clzll(v | 1) + 6) / 7;
}

static inline uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static inline uint64_t dbits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

/* A double as fixed64: its IEEE bits, little-endian. */
static inline uint8_t *put_double(uint8_t *p, double d)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(p, &d, 8);
#else
    uint64_t b = dbits(d);
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(b >> (8 * i));
#endif
    return p + 8;
}

/* Copies n bytes. Label names and values are mostly short: those are
 * copied with two overlapping fixed-size moves, which the compiler makes a
 * few instructions, instead of a call to memcpy per string. */
static inline uint8_t *put_bytes(uint8_t *p, const void *src, size_t n)
{
    const uint8_t *q = src;
    if (n > 32) {
        memcpy(p, q, n);
    } else if (n >= 16) {
        uint8_t a[16], b[16];
        memcpy(a, q, 16);
        memcpy(b, q + n - 16, 16);
        memcpy(p, a, 16);
        memcpy(p + n - 16, b, 16);
    } else if (n >= 8) {
        uint64_t a, b;
        memcpy(&a, q, 8);
        memcpy(&b, q + n - 8, 8);
        memcpy(p, &a, 8);
        memcpy(p + n - 8, &b, 8);
    } else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, q, 4);
        memcpy(&b, q + n - 4, 4);
        memcpy(p, &a, 4);
        memcpy(p + n - 4, &b, 4);
    } else if (n > 0) {
        p[0] = q[0];
        p[n / 2] = q[n / 2];
        p[n - 1] = q[n - 1];
    }
    return p + n;
}

static inline uint32_t zigzag32(int32_t v)
{
    return ((uint32_t)v << 1) ^ (uint32_t)(v >> 31);
}

static inline uint64_t zigzag64(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

/* A length-delimited field: tag, length, then `len` bytes of payload. */
static inline size_t field_len_size(size_t len)
{
    return 1 + vsize(len) + len;
}

/* Optional scalar fields, left out when zero as proto3 does. */
static inline size_t opt_varint_size(uint64_t v)
{
    return v ? 1 + vsize(v) : 0;
}

static inline size_t opt_double_size(double d)
{
    return dbits(d) ? 9 : 0;
}

static inline uint8_t *put_opt_varint(uint8_t *p, uint8_t tag, uint64_t v)
{
    if (!v)
        return p;
    *p++ = tag;
    return put_varint(p, v);
}

static inline uint8_t *put_opt_double(uint8_t *p, uint8_t tag, double d)
{
    if (!dbits(d))
        return p;
    *p++ = tag;
    return put_double(p, d);
}

static inline uint8_t *put_opt_string(uint8_t *p, uint8_t tag, const char *s, size_t n)
{
    if (!n)
        return p;
    *p++ = tag;
    p = put_varint(p, n);
    return put_bytes(p, s, n);
}

/* Room for `need` more bytes at the end of b, as a byte pointer. */
static uint8_t *reserve(dr_buf *b, size_t need)
{
    if (dr_buf_reserve(b, need) != 0)
        return NULL;
    return (uint8_t *)b->p + b->len;
}

/* ---- the writer ----------------------------------------------------------------- */

typedef struct label_view {
    dr_symbol_view name, value;
    size_t size; /* of its Label message */
} label_view;

/* An external label of the current request. The refs are its strings' 2.0
 * symbol refs, 0 until a series first uses the label. */
typedef struct ext_label {
    dr_symbol_view name, value;
    uint32_t name_ref, value_ref;
} ext_label;

/* A string of the current 2.0 request, by ref. table_id is its series
 * table symbol id, or DR_SERIES_NO_SYMBOL for a string the table does not
 * hold (an external label, a help text). */
typedef struct req_symbol {
    const char *s;
    uint32_t len;
    uint32_t table_id;
} req_symbol;

/* A slot of the hash map of strings outside the series table: it holds
 * ref when gen is the current request's generation. */
typedef struct str_slot {
    uint32_t gen;
    uint32_t ref;
    uint64_t hash;
} str_slot;

/* Refs of a metadata entry's help and unit, remembered by the entry's
 * address for this request (gen). */
typedef struct meta_slot {
    const dr_metric_meta *meta;
    uint32_t gen;
    uint32_t help_ref, unit_ref;
} meta_slot;

#define META_CACHE 256u /* a power of two */

struct dr_prw_writer {
    /* The request's external labels, sorted by name, no duplicates or
     * empty values. */
    ext_label *ext;
    uint32_t next, ext_cap;
    /* Where the external labels go around a label name, by the name's
     * table symbol id: 1 + (how many external names sort before it) * 2
     * + (1 if one is the same name); 0 when not yet known. Computed once
     * per name and request, so that merging compares no strings; all zero
     * between requests (the ids set are in `ranked`). */
    uint32_t *rank_of;
    uint32_t rank_cap;
    uint32_t *ranked;
    uint32_t nranked, ranked_cap;
    /* The labels of the current series, as the table has them. */
    dr_symbol_view *views;
    uint32_t views_cap;
    /* 1.0: the merged labels of the current series. */
    label_view *lab;
    uint32_t lab_cap;
    /* 2.0: the labels_refs of the current series. */
    uint32_t *lrefs;
    uint32_t lrefs_cap;
    /* 2.0: series table symbol id -> ref in the request (0: none yet; no
     * table symbol is "", which alone has ref 0). All zero between
     * requests: the entries set are cleared through `syms`. */
    uint32_t *ref_of;
    uint32_t ref_of_cap;
    /* 2.0: the request's symbols table. */
    req_symbol *syms;
    uint32_t nsyms, syms_cap;
    /* 2.0: strings outside the table -> ref (open addressing). */
    str_slot *map;
    uint32_t map_mask, map_used;
    uint32_t gen; /* of the current request, never 0 */
    meta_slot meta_cache[META_CACHE];
    /* 2.0: the TimeSeries, before the symbols are written. */
    dr_buf body;
};

dr_prw_writer *dr_prw_writer_new(void)
{
    dr_prw_writer *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->gen = 1;
    return w;
}

void dr_prw_writer_free(dr_prw_writer *w)
{
    if (!w)
        return;
    free(w->ext);
    free(w->rank_of);
    free(w->ranked);
    free(w->views);
    free(w->lab);
    free(w->lrefs);
    free(w->ref_of);
    free(w->syms);
    free(w->map);
    dr_buf_free(&w->body);
    free(w);
}

/* Makes room for `need` elements of `size` bytes in *arr (capacity *cap),
 * growing by doubling. 0 or DR_ENOMEM. */
static int grow(void **arr, uint32_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    if (need > UINT32_MAX / 2)
        return DR_ENOMEM;
    uint32_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    void *n = realloc(*arr, (size_t)ncap * size);
    if (!n)
        return DR_ENOMEM;
    *arr = n;
    *cap = ncap;
    return 0;
}

/* Byte order of label names, as Go compares strings. */
static inline int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    /* most names differ in their first byte */
    if (alen && blen && a[0] != b[0])
        return (unsigned char)a[0] < (unsigned char)b[0] ? -1 : 1;
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* Takes the request's external labels: sorted (stably, so that of two
 * labels of one name the first given wins), without empty names or values. */
static int set_external(dr_prw_writer *w, const dr_labels *external)
{
    w->next = 0;
    if (!external || external->n == 0)
        return 0;
    if (grow((void **)&w->ext, &w->ext_cap, external->n, sizeof *w->ext) != 0)
        return DR_ENOMEM;
    for (uint32_t i = 0; i < external->n; i++) {
        const dr_label *l = &external->v[i];
        if (l->name_len == 0 || l->value_len == 0)
            continue;
        ext_label e = {{l->name, l->name_len}, {l->value, l->value_len}, 0, 0};
        uint32_t j = w->next;
        while (j > 0 &&
               name_cmp(w->ext[j - 1].name.s, w->ext[j - 1].name.len, e.name.s, e.name.len) > 0) {
            w->ext[j] = w->ext[j - 1];
            j--;
        }
        if (j > 0 &&
            name_cmp(w->ext[j - 1].name.s, w->ext[j - 1].name.len, e.name.s, e.name.len) == 0) {
            /* a second label of that name: the first stays */
            memmove(&w->ext[j], &w->ext[j + 1], (w->next - j) * sizeof *w->ext);
            continue;
        }
        w->ext[j] = e;
        w->next++;
    }
    return 0;
}

/* Starts a request with these external labels. */
static int begin_external(dr_prw_writer *w, const dr_series_table *t, const dr_labels *external)
{
    int rc = set_external(w, external);
    if (rc != 0 || w->next == 0)
        return rc;
    uint32_t bound = dr_series_symbol_bound(t);
    if (bound > w->rank_cap) {
        uint32_t old = w->rank_cap;
        if (grow((void **)&w->rank_of, &w->rank_cap, bound, sizeof *w->rank_of) != 0)
            return DR_ENOMEM;
        memset(w->rank_of + old, 0, (size_t)(w->rank_cap - old) * sizeof *w->rank_of);
    }
    return 0;
}

/* Ends it, successful or not. */
static void end_external(dr_prw_writer *w)
{
    for (uint32_t i = 0; i < w->nranked; i++)
        w->rank_of[w->ranked[i]] = 0;
    w->nranked = 0;
    w->next = 0;
}

static __attribute__((noinline)) int ext_rank_slow(dr_prw_writer *w, const dr_series_table *t,
                                                   uint32_t id, uint32_t *rank)
{
    dr_symbol_view name = dr_series_symbol(t, id);
    if (id >= w->rank_cap || !name.s)
        return DR_EINVAL;
    if (w->nranked == w->ranked_cap &&
        grow((void **)&w->ranked, &w->ranked_cap, (size_t)w->nranked + 1, sizeof *w->ranked) != 0)
        return DR_ENOMEM;
    uint32_t before = 0;
    while (before < w->next &&
           name_cmp(w->ext[before].name.s, w->ext[before].name.len, name.s, name.len) < 0)
        before++;
    bool same = before < w->next &&
                name_cmp(w->ext[before].name.s, w->ext[before].name.len, name.s, name.len) == 0;
    *rank = before * 2 + same;
    w->rank_of[id] = *rank + 1;
    w->ranked[w->nranked++] = id;
    return 0;
}

/* The rank of a label name (see rank_of): how many external labels come
 * before it (rank / 2), and whether it hides one of the same name (rank & 1:
 * the series' own label wins, as Prometheus merges them). */
static inline int ext_rank(dr_prw_writer *w, const dr_series_table *t, uint32_t id, uint32_t *rank)
{
    if (id < w->rank_cap && w->rank_of[id]) {
        *rank = w->rank_of[id] - 1;
        return 0;
    }
    return ext_rank_slow(w, t, id, rank);
}

/* ---- native histograms (the same message in 1.0 and 2.0) ------------------------ */

static size_t spans_size(const dr_hist_span *sp, uint32_t n)
{
    size_t sz = 0;
    for (uint32_t i = 0; i < n; i++) {
        size_t m = opt_varint_size(zigzag32(sp[i].offset)) + opt_varint_size(sp[i].length);
        sz += field_len_size(m);
    }
    return sz;
}

static size_t deltas_payload(const int64_t *d, uint32_t n)
{
    size_t sz = 0;
    for (uint32_t i = 0; i < n; i++)
        sz += vsize(zigzag64(d[i]));
    return sz;
}

/* A packed repeated field of `payload` bytes; absent when empty. */
static inline size_t packed_size(size_t payload)
{
    return payload ? field_len_size(payload) : 0;
}

static bool hist_valid(const dr_native_hist *h)
{
    if ((h->n_neg_spans && !h->neg_spans) || (h->n_pos_spans && !h->pos_spans))
        return false;
    if (h->is_float)
        return !(h->n_neg && !h->neg_counts) && !(h->n_pos && !h->pos_counts);
    return !(h->n_neg && !h->neg_deltas) && !(h->n_pos && !h->pos_deltas);
}

/* Size of the Histogram message of h sampled at ts. */
static size_t hist_size(const dr_native_hist *h, int64_t ts)
{
    size_t sz = 0;
    /* The count oneofs are sent even when zero: their field says the kind. */
    if (h->is_float)
        sz += 9 + 9;
    else
        sz += 1 + vsize(h->count_int) + 1 + vsize(h->zero_count_int);
    sz += opt_double_size(h->sum);
    sz += opt_varint_size(zigzag32(h->schema));
    sz += opt_double_size(h->zero_threshold);
    sz += spans_size(h->neg_spans, h->n_neg_spans);
    sz += spans_size(h->pos_spans, h->n_pos_spans);
    if (h->is_float) {
        sz += packed_size((size_t)h->n_neg * 8);
        sz += packed_size((size_t)h->n_pos * 8);
    } else {
        sz += packed_size(deltas_payload(h->neg_deltas, h->n_neg));
        sz += packed_size(deltas_payload(h->pos_deltas, h->n_pos));
    }
    sz += opt_varint_size(h->reset_hint);
    sz += opt_varint_size((uint64_t)ts);
    return sz;
}

static uint8_t *put_spans(uint8_t *p, uint8_t tag, const dr_hist_span *sp, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        uint32_t off = zigzag32(sp[i].offset);
        *p++ = tag;
        p = put_varint(p, opt_varint_size(off) + opt_varint_size(sp[i].length));
        p = put_opt_varint(p, TAG(1, WT_VARINT), off);
        p = put_opt_varint(p, TAG(2, WT_VARINT), sp[i].length);
    }
    return p;
}

static uint8_t *put_deltas(uint8_t *p, uint8_t tag, const int64_t *d, uint32_t n)
{
    if (!n)
        return p;
    *p++ = tag;
    p = put_varint(p, deltas_payload(d, n));
    for (uint32_t i = 0; i < n; i++)
        p = put_varint(p, zigzag64(d[i]));
    return p;
}

static uint8_t *put_counts(uint8_t *p, uint8_t tag, const double *c, uint32_t n)
{
    if (!n)
        return p;
    *p++ = tag;
    p = put_varint(p, (size_t)n * 8);
    for (uint32_t i = 0; i < n; i++)
        p = put_double(p, c[i]);
    return p;
}

/* Writes a histogram field: tag, length (size from hist_size), message. */
static uint8_t *put_hist(uint8_t *p, uint8_t tag, const dr_native_hist *h, int64_t ts, size_t size)
{
    *p++ = tag;
    p = put_varint(p, size);
    if (h->is_float) {
        *p++ = TAG(2, WT_I64);
        p = put_double(p, h->count_float);
    } else {
        *p++ = TAG(1, WT_VARINT);
        p = put_varint(p, h->count_int);
    }
    p = put_opt_double(p, TAG(3, WT_I64), h->sum);
    p = put_opt_varint(p, TAG(4, WT_VARINT), zigzag32(h->schema));
    p = put_opt_double(p, TAG(5, WT_I64), h->zero_threshold);
    if (h->is_float) {
        *p++ = TAG(7, WT_I64);
        p = put_double(p, h->zero_count_float);
    } else {
        *p++ = TAG(6, WT_VARINT);
        p = put_varint(p, h->zero_count_int);
    }
    p = put_spans(p, TAG(8, WT_LEN), h->neg_spans, h->n_neg_spans);
    if (h->is_float)
        p = put_counts(p, TAG(10, WT_LEN), h->neg_counts, h->n_neg);
    else
        p = put_deltas(p, TAG(9, WT_LEN), h->neg_deltas, h->n_neg);
    p = put_spans(p, TAG(11, WT_LEN), h->pos_spans, h->n_pos_spans);
    if (h->is_float)
        p = put_counts(p, TAG(13, WT_LEN), h->pos_counts, h->n_pos);
    else
        p = put_deltas(p, TAG(12, WT_LEN), h->pos_deltas, h->n_pos);
    p = put_opt_varint(p, TAG(14, WT_VARINT), h->reset_hint);
    p = put_opt_varint(p, TAG(15, WT_VARINT), (uint64_t)ts);
    return p;
}

/* ---- samples (the same message in 1.0 and 2.0) ---------------------------------- */

static inline size_t sample_size(const dr_sample *s)
{
    return opt_double_size(s->value) + opt_varint_size((uint64_t)s->ts_ms);
}

static inline uint8_t *put_sample(uint8_t *p, uint8_t tag, const dr_sample *s, size_t size)
{
    *p++ = tag;
    *p++ = (uint8_t)size; /* at most 9 + 11 bytes: one varint byte */
    p = put_opt_double(p, TAG(1, WT_I64), s->value);
    return put_opt_varint(p, TAG(2, WT_VARINT), (uint64_t)s->ts_ms);
}

/* Sizes of the samples and histograms of a run, as fields of tag `sample_tag`
 * and histograms; DR_EINVAL for a broken histogram. */
static int run_points_size(const dr_sample *run, size_t n, size_t *out)
{
    size_t sz = 0;
    for (size_t i = 0; i < n; i++) {
        const dr_sample *s = &run[i];
        if (s->hist) {
            if (!hist_valid(s->hist))
                return DR_EINVAL;
            sz += field_len_size(hist_size(s->hist, s->ts_ms));
        } else {
            sz += 2 + sample_size(s);
        }
    }
    *out = sz;
    return 0;
}

/* Writes a run's float samples, then its histograms. */
static uint8_t *put_run_points(uint8_t *p, const dr_sample *run, size_t n, uint8_t sample_tag,
                               uint8_t hist_tag)
{
    bool hists = false;
    for (size_t i = 0; i < n; i++) {
        if (run[i].hist)
            hists = true;
        else
            p = put_sample(p, sample_tag, &run[i], sample_size(&run[i]));
    }
    if (hists)
        for (size_t i = 0; i < n; i++)
            if (run[i].hist)
                p = put_hist(p, hist_tag, run[i].hist, run[i].ts_ms,
                             hist_size(run[i].hist, run[i].ts_ms));
    return p;
}

/* Length of the run of samples starting at run[0] that 1.0 puts in one
 * TimeSeries: the same series. */
static size_t run_len1(const dr_sample *run, size_t n)
{
    size_t k = 1;
    while (k < n && run[k].series == run[0].series)
        k++;
    return k;
}

/* The series of the samples a few runs ahead are most likely not in the
 * cache (a request holds one sample of each of thousands of series):
 * asking for them early hides part of that wait. */
#define PREFETCH_AHEAD 4

static inline void prefetch_series(const dr_sample *samples, size_t n, size_t next)
{
    if (next + PREFETCH_AHEAD < n)
        __builtin_prefetch(samples[next + PREFETCH_AHEAD].series);
}

/* ---- remote write 1.0 ----------------------------------------------------------- */

static inline size_t label1_size(dr_symbol_view name, dr_symbol_view value)
{
    return field_len_size(name.len) + field_len_size(value.len);
}

static inline void add_label1(label_view *l, dr_symbol_view name, dr_symbol_view value)
{
    *l = (label_view){name, value, label1_size(name, value)};
}

/* The merged labels of s into w->lab; their count in *nlab. */
static int merge_labels1(dr_prw_writer *w, const dr_series_table *t, const dr_series *s,
                         uint32_t *nlab)
{
    if (grow((void **)&w->views, &w->views_cap, 2 * (size_t)s->nlabels, sizeof *w->views) != 0 ||
        grow((void **)&w->lab, &w->lab_cap, (size_t)s->nlabels + w->next, sizeof *w->lab) != 0)
        return DR_ENOMEM;
    if (!dr_series_label_views(t, s, w->views))
        return DR_EINVAL;
    const dr_symbol_view *v = w->views;
    uint32_t k = 0, e = 0;
    for (uint32_t i = 0; i < s->nlabels; i++) {
        if (e < w->next) {
            uint32_t rank;
            int rc = ext_rank(w, t, dr_series_sym(s, 2 * i), &rank);
            if (rc != 0)
                return rc;
            for (; e < rank / 2; e++)
                add_label1(&w->lab[k++], w->ext[e].name, w->ext[e].value);
            e += rank & 1;
        }
        add_label1(&w->lab[k++], v[2 * i], v[2 * i + 1]);
    }
    for (; e < w->next; e++)
        add_label1(&w->lab[k++], w->ext[e].name, w->ext[e].value);
    *nlab = k;
    return 0;
}

static int encode_series1(dr_prw_writer *w, const dr_series_table *t, const dr_sample *run,
                          size_t n, dr_buf *out)
{
    uint32_t nlab;
    int rc = merge_labels1(w, t, run[0].series, &nlab);
    if (rc != 0)
        return rc;
    size_t size;
    if ((rc = run_points_size(run, n, &size)) != 0)
        return rc;
    for (uint32_t i = 0; i < nlab; i++)
        size += field_len_size(w->lab[i].size);
    uint8_t *p = reserve(out, field_len_size(size));
    if (!p)
        return DR_ENOMEM;
    uint8_t *start = p;
    *p++ = TAG(1, WT_LEN);
    p = put_varint(p, size);
    for (uint32_t i = 0; i < nlab; i++) {
        const label_view *l = &w->lab[i];
        *p++ = TAG(1, WT_LEN);
        p = put_varint(p, l->size);
        p = put_opt_string(p, TAG(1, WT_LEN), l->name.s, l->name.len);
        p = put_opt_string(p, TAG(2, WT_LEN), l->value.s, l->value.len);
    }
    p = put_run_points(p, run, n, TAG(2, WT_LEN), TAG(4, WT_LEN));
    out->len += (size_t)(p - start);
    return 0;
}

int dr_prw1_encode(dr_prw_writer *w, const dr_series_table *t, const dr_sample *samples, size_t n,
                   const dr_labels *external, dr_buf *out)
{
    size_t len0 = out->len;
    int rc = begin_external(w, t, external);
    for (size_t i = 0; rc == 0 && i < n;) {
        if (!samples[i].series) {
            rc = DR_EINVAL;
            break;
        }
        size_t k = run_len1(&samples[i], n - i);
        prefetch_series(samples, n, i + k);
        rc = encode_series1(w, t, &samples[i], k, out);
        i += k;
    }
    end_external(w);
    if (rc != 0)
        out->len = len0;
    return rc;
}

static size_t meta1_size(const dr_metric_meta *m)
{
    size_t sz = opt_varint_size(m->type);
    if (m->family && *m->family)
        sz += field_len_size(strlen(m->family));
    if (m->help && *m->help)
        sz += field_len_size(strlen(m->help));
    if (m->unit && *m->unit)
        sz += field_len_size(strlen(m->unit));
    return sz;
}

int dr_prw1_encode_metadata(dr_prw_writer *w, const dr_metric_meta *metas, size_t n, dr_buf *out)
{
    (void)w;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += field_len_size(meta1_size(&metas[i]));
    uint8_t *p = reserve(out, total);
    if (!p)
        return DR_ENOMEM;
    uint8_t *start = p;
    for (size_t i = 0; i < n; i++) {
        const dr_metric_meta *m = &metas[i];
        *p++ = TAG(3, WT_LEN);
        p = put_varint(p, meta1_size(m));
        p = put_opt_varint(p, TAG(1, WT_VARINT), m->type);
        if (m->family)
            p = put_opt_string(p, TAG(2, WT_LEN), m->family, strlen(m->family));
        if (m->help)
            p = put_opt_string(p, TAG(4, WT_LEN), m->help, strlen(m->help));
        if (m->unit)
            p = put_opt_string(p, TAG(5, WT_LEN), m->unit, strlen(m->unit));
    }
    out->len += (size_t)(p - start);
    return 0;
}

/* ---- remote write 2.0: the symbols table ---------------------------------------- */

static int push_symbol(dr_prw_writer *w, const char *s, uint32_t len, uint32_t table_id,
                       uint32_t *ref)
{
    if (w->nsyms == w->syms_cap &&
        grow((void **)&w->syms, &w->syms_cap, (size_t)w->nsyms + 1, sizeof *w->syms) != 0)
        return DR_ENOMEM;
    w->syms[w->nsyms] = (req_symbol){s, len, table_id};
    *ref = w->nsyms++;
    return 0;
}

/* The first use of a table symbol in the request: adds it. */
static __attribute__((noinline)) int ref_of_id_slow(dr_prw_writer *w, const dr_series_table *t,
                                                    uint32_t id, uint32_t *ref)
{
    if (id >= w->ref_of_cap)
        return DR_EINVAL; /* not an id of the table */
    dr_symbol_view v = dr_series_symbol(t, id);
    if (!v.s)
        return DR_EINVAL;
    int rc = push_symbol(w, v.s, v.len, id, ref);
    if (rc == 0)
        w->ref_of[id] = *ref;
    return rc;
}

/* The ref of a series table symbol, added to the request on first use. */
static inline int ref_of_id(dr_prw_writer *w, const dr_series_table *t, uint32_t id, uint32_t *ref)
{
    if (id < w->ref_of_cap && w->ref_of[id]) {
        *ref = w->ref_of[id];
        return 0;
    }
    return ref_of_id_slow(w, t, id, ref);
}

/* FNV-1a: strings outside the table are few per request (external labels,
 * help texts), so a simple hash does. */
static uint64_t str_hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}

static void map_put(str_slot *map, uint32_t mask, uint32_t gen, uint64_t hash, uint32_t ref)
{
    uint32_t i = (uint32_t)hash & mask;
    while (map[i].gen == gen)
        i = (i + 1) & mask;
    map[i] = (str_slot){gen, ref, hash};
}

/* Doubles the map (keeping the current request's entries) once it is half
 * full. */
static int map_make_room(dr_prw_writer *w)
{
    uint32_t cap = w->map ? w->map_mask + 1 : 0;
    if (w->map && (w->map_used + 1) * 2 <= cap)
        return 0;
    uint32_t ncap = cap ? cap * 2 : 64;
    if (ncap == 0 || ncap > (1u << 30))
        return DR_ENOMEM;
    str_slot *n = calloc(ncap, sizeof *n);
    if (!n)
        return DR_ENOMEM;
    for (uint32_t i = 0; i < cap; i++)
        if (w->map[i].gen == w->gen)
            map_put(n, ncap - 1, w->gen, w->map[i].hash, w->map[i].ref);
    free(w->map);
    w->map = n;
    w->map_mask = ncap - 1;
    return 0;
}

/* The ref of any string: a table symbol through ref_of, any other string
 * through the map, so that each string is in the request once. */
static int ref_of_string(dr_prw_writer *w, const dr_series_table *t, const char *s, size_t len,
                         uint32_t *ref)
{
    if (len == 0) {
        *ref = 0;
        return 0;
    }
    if (len > UINT32_MAX)
        return DR_EINVAL;
    uint32_t id = dr_series_symbol_find(t, s, len);
    if (id != DR_SERIES_NO_SYMBOL)
        return ref_of_id(w, t, id, ref);
    if (map_make_room(w) != 0)
        return DR_ENOMEM;
    uint64_t h = str_hash(s, len);
    uint32_t i = (uint32_t)h & w->map_mask;
    for (; w->map[i].gen == w->gen; i = (i + 1) & w->map_mask) {
        const req_symbol *y = &w->syms[w->map[i].ref];
        if (w->map[i].hash == h && y->len == len && memcmp(y->s, s, len) == 0) {
            *ref = w->map[i].ref;
            return 0;
        }
    }
    int rc = push_symbol(w, s, (uint32_t)len, DR_SERIES_NO_SYMBOL, ref);
    if (rc != 0)
        return rc;
    w->map[i] = (str_slot){w->gen, *ref, h};
    w->map_used++;
    return 0;
}

/* Starts a request: symbols[0] = "", room in ref_of for every table id. */
static int begin2(dr_prw_writer *w, const dr_series_table *t)
{
    uint32_t bound = dr_series_symbol_bound(t);
    if (bound > w->ref_of_cap) {
        uint32_t old = w->ref_of_cap;
        if (grow((void **)&w->ref_of, &w->ref_of_cap, bound, sizeof *w->ref_of) != 0)
            return DR_ENOMEM;
        memset(w->ref_of + old, 0, (size_t)(w->ref_of_cap - old) * sizeof *w->ref_of);
    }
    w->nsyms = 0;
    w->map_used = 0;
    dr_buf_reset(&w->body);
    uint32_t ref;
    return push_symbol(w, "", 0, DR_SERIES_NO_SYMBOL, &ref);
}

/* Ends a request, successful or not: forgets its refs. */
static void end2(dr_prw_writer *w)
{
    for (uint32_t i = 0; i < w->nsyms; i++)
        if (w->syms[i].table_id != DR_SERIES_NO_SYMBOL)
            w->ref_of[w->syms[i].table_id] = 0;
    w->nsyms = 0;
    w->map_used = 0;
    if (++w->gen == 0) {
        /* after 2^32 requests: stale slots could look current again */
        if (w->map)
            memset(w->map, 0, (size_t)(w->map_mask + 1) * sizeof *w->map);
        memset(w->meta_cache, 0, sizeof w->meta_cache);
        w->gen = 1;
    }
}

/* ---- remote write 2.0: time series ---------------------------------------------- */

static int ext_refs(dr_prw_writer *w, const dr_series_table *t, ext_label *e)
{
    if (e->name_ref)
        return 0;
    int rc = ref_of_string(w, t, e->name.s, e->name.len, &e->name_ref);
    if (rc == 0)
        rc = ref_of_string(w, t, e->value.s, e->value.len, &e->value_ref);
    if (rc != 0)
        e->name_ref = 0;
    return rc;
}

/* The labels_refs of s (merged with the external labels) into w->lrefs;
 * their count in *nrefs. */
static int merge_refs2(dr_prw_writer *w, const dr_series_table *t, const dr_series *s,
                       uint32_t *nrefs)
{
    size_t need = 2 * ((size_t)s->nlabels + w->next);
    if (grow((void **)&w->lrefs, &w->lrefs_cap, need, sizeof *w->lrefs) != 0)
        return DR_ENOMEM;
    uint32_t *r = w->lrefs;
    uint32_t k = 0, e = 0;
    int rc;
    for (uint32_t i = 0; i < s->nlabels; i++) {
        if (e < w->next) {
            uint32_t rank;
            if ((rc = ext_rank(w, t, dr_series_sym(s, 2 * i), &rank)) != 0)
                return rc;
            for (; e < rank / 2; e++) {
                if ((rc = ext_refs(w, t, &w->ext[e])) != 0)
                    return rc;
                r[k++] = w->ext[e].name_ref;
                r[k++] = w->ext[e].value_ref;
            }
            e += rank & 1;
        }
        if ((rc = ref_of_id(w, t, dr_series_sym(s, 2 * i), &r[k])) != 0 ||
            (rc = ref_of_id(w, t, dr_series_sym(s, 2 * i + 1), &r[k + 1])) != 0)
            return rc;
        k += 2;
    }
    for (; e < w->next; e++) {
        if ((rc = ext_refs(w, t, &w->ext[e])) != 0)
            return rc;
        r[k++] = w->ext[e].name_ref;
        r[k++] = w->ext[e].value_ref;
    }
    *nrefs = k;
    return 0;
}

/* The help and unit refs of a metadata entry, remembered by its address
 * for the rest of the request (runs of one family share one entry). */
static int meta_refs(dr_prw_writer *w, const dr_series_table *t, const dr_metric_meta *m,
                     uint32_t *help_ref, uint32_t *unit_ref)
{
    meta_slot *c = &w->meta_cache[((uintptr_t)m >> 4) & (META_CACHE - 1)];
    if (c->meta == m && c->gen == w->gen) {
        *help_ref = c->help_ref;
        *unit_ref = c->unit_ref;
        return 0;
    }
    int rc = ref_of_string(w, t, m->help ? m->help : "", m->help ? strlen(m->help) : 0, help_ref);
    if (rc == 0)
        rc = ref_of_string(w, t, m->unit ? m->unit : "", m->unit ? strlen(m->unit) : 0, unit_ref);
    if (rc != 0)
        return rc;
    *c = (meta_slot){m, w->gen, *help_ref, *unit_ref};
    return 0;
}

/* The run of samples from run[0] that 2.0 puts in one TimeSeries: the same
 * series, the same metadata, and all floats or all histograms. */
static size_t run_len2(const dr_sample *run, const dr_metric_meta *const *meta, size_t n)
{
    size_t k = 1;
    bool hist = run[0].hist != NULL;
    while (k < n && run[k].series == run[0].series && (run[k].hist != NULL) == hist &&
           (!meta || meta[k] == meta[0]))
        k++;
    return k;
}

static int encode_series2(dr_prw_writer *w, const dr_series_table *t, const dr_sample *run,
                          size_t n, const dr_metric_meta *m)
{
    uint32_t nrefs, help_ref = 0, unit_ref = 0;
    int rc = merge_refs2(w, t, run[0].series, &nrefs);
    if (rc == 0 && m)
        rc = meta_refs(w, t, m, &help_ref, &unit_ref);
    size_t size;
    if (rc != 0 || (rc = run_points_size(run, n, &size)) != 0)
        return rc;
    size_t refs_payload = 0;
    for (uint32_t i = 0; i < nrefs; i++)
        refs_payload += vsize(w->lrefs[i]);
    size += packed_size(refs_payload);
    uint8_t type = m ? m->type : 0;
    size_t meta_size =
        opt_varint_size(type) + opt_varint_size(help_ref) + opt_varint_size(unit_ref);
    if (meta_size)
        size += field_len_size(meta_size);

    uint8_t *p = reserve(&w->body, field_len_size(size));
    if (!p)
        return DR_ENOMEM;
    uint8_t *start = p;
    *p++ = TAG(5, WT_LEN);
    p = put_varint(p, size);
    if (refs_payload) {
        *p++ = TAG(1, WT_LEN);
        p = put_varint(p, refs_payload);
        for (uint32_t i = 0; i < nrefs; i++)
            p = put_varint(p, w->lrefs[i]);
    }
    p = put_run_points(p, run, n, TAG(2, WT_LEN), TAG(3, WT_LEN));
    if (meta_size) {
        *p++ = TAG(5, WT_LEN);
        p = put_varint(p, meta_size);
        p = put_opt_varint(p, TAG(1, WT_VARINT), type);
        p = put_opt_varint(p, TAG(3, WT_VARINT), help_ref);
        p = put_opt_varint(p, TAG(4, WT_VARINT), unit_ref);
    }
    w->body.len += (size_t)(p - start);
    return 0;
}

/* Writes the symbols table, then the TimeSeries gathered in w->body. */
static int finish2(dr_prw_writer *w, dr_buf *out)
{
    size_t total = w->body.len;
    for (uint32_t i = 0; i < w->nsyms; i++)
        total += field_len_size(w->syms[i].len);
    uint8_t *p = reserve(out, total);
    if (!p)
        return DR_ENOMEM;
    uint8_t *start = p;
    for (uint32_t i = 0; i < w->nsyms; i++) {
        /* every element, "" included: a repeated string keeps its empties */
        *p++ = TAG(4, WT_LEN);
        p = put_varint(p, w->syms[i].len);
        p = put_bytes(p, w->syms[i].s, w->syms[i].len);
    }
    if (w->body.len)
        p = put_bytes(p, w->body.p, w->body.len);
    out->len += (size_t)(p - start);
    return 0;
}

int dr_prw2_encode(dr_prw_writer *w, const dr_series_table *t, const dr_sample *samples,
                   const dr_metric_meta *const *meta, size_t n, const dr_labels *external,
                   dr_buf *out)
{
    int rc = begin_external(w, t, external);
    if (rc == 0)
        rc = begin2(w, t);
    for (size_t i = 0; rc == 0 && i < n;) {
        if (!samples[i].series) {
            rc = DR_EINVAL;
            break;
        }
        size_t k = run_len2(&samples[i], meta ? &meta[i] : NULL, n - i);
        prefetch_series(samples, n, i + k);
        rc = encode_series2(w, t, &samples[i], k, meta ? meta[i] : NULL);
        i += k;
    }
    if (rc == 0)
        rc = finish2(w, out);
    end2(w);
    end_external(w);
    /* a large request's scratch is not kept for the small ones after it */
    if (w->body.cap > (64u << 20)) {
        dr_buf_free(&w->body);
        memset(&w->body, 0, sizeof w->body);
    }
    return rc;
}
