/*
 * The self-metrics registry.
 *
 * A family is one metric name with its type and help; a series is one label
 * set within a family. Families are kept in an array in registration order
 * and each family keeps its series in creation order, which is the order of
 * the exposition. Both are also indexed by a hash table so that
 * get-or-create stays cheap with thousands of series: families by name,
 * series by name and label set.
 *
 * A label set is matched regardless of the order of its pairs
 * ({a="1",b="2"} is {b="2",a="1"}): the exposition must never show the same
 * series twice. Its hash is therefore a sum of per-pair hashes.
 *
 * Series are never removed, so the pointers handed out (dr_counter,
 * dr_gauge) stay valid until dr_metrics_free.
 */
#include "metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Safety nets; the configuration keeps real numbers far below. */
#define DR_METRICS_MAX_SERIES 65536
#define DR_METRICS_MAX_LABELS 16  /* pairs per series */
#define DR_METRICS_MAX_VALUE 4096 /* bytes of one label value */
#define DR_METRICS_MAX_NAME 256   /* bytes of a metric or label name */

struct dr_counter {
    uint64_t value;
};

struct dr_gauge {
    double value;
};

/* ---- an intrusive chained hash table ------------------------------------ */

typedef struct hnode {
    struct hnode *next;
    uint64_t hash;
} hnode;

typedef struct htab {
    hnode **buckets;
    size_t mask; /* bucket count - 1; the count is a power of two */
    size_t n;
} htab;

static hnode *htab_chain(const htab *t, uint64_t hash)
{
    return t->buckets ? t->buckets[hash & t->mask] : NULL;
}

static void htab_link(hnode **buckets, size_t mask, hnode *node)
{
    hnode **head = &buckets[node->hash & mask];
    node->next = *head;
    *head = node;
}

/* Doubles the bucket array when the load would pass 3/4. */
static int htab_grow_for_one_more(htab *t)
{
    size_t nbuckets = t->buckets ? t->mask + 1 : 0;
    if ((t->n + 1) * 4 <= nbuckets * 3)
        return 0;
    size_t newn = nbuckets ? nbuckets * 2 : 64;
    hnode **nb = calloc(newn, sizeof *nb);
    if (!nb)
        return DR_ENOMEM;
    for (size_t i = 0; i < nbuckets; i++) {
        hnode *node = t->buckets[i];
        while (node) {
            hnode *next = node->next;
            htab_link(nb, newn - 1, node);
            node = next;
        }
    }
    free(t->buckets);
    t->buckets = nb;
    t->mask = newn - 1;
    return 0;
}

static int htab_insert(htab *t, hnode *node)
{
    if (htab_grow_for_one_more(t) < 0)
        return DR_ENOMEM;
    htab_link(t->buckets, t->mask, node);
    t->n++;
    return 0;
}

/* FNV-1a, continued from `h`. */
static uint64_t hash_bytes(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

#define HASH_SEED 0xcbf29ce484222325ull

/* The splitmix64 finalizer: spreads a sum of hashes over all bits. */
static uint64_t hash_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* ---- the registry --------------------------------------------------------- */

typedef struct family family;

typedef struct series {
    hnode node; /* keyed by family name and label set */
    family *fam;
    size_t nlabels;
    const char **labels; /* name, value, name, value...; same allocation */
    union {
        struct dr_counter counter;
        struct dr_gauge gauge;
    } v;
} series;

struct family {
    hnode node; /* keyed by name */
    dr_self_metric_kind type;
    char *name;
    char *help;
    series **list; /* in creation order */
    size_t nseries, cap;
};

typedef struct hook {
    dr_metrics_hook fn; /* NULL: removed while the hooks were running */
    void *ctx;
} hook;

struct dr_metrics {
    family **families; /* in registration order */
    size_t nfamilies, famcap;
    htab family_index;
    htab series_index;
    size_t nseries;
    hook *hooks;
    size_t nhooks, hookcap;
    bool running_hooks;
};

dr_metrics *dr_metrics_new(void)
{
    return calloc(1, sizeof(dr_metrics));
}

static void family_free(family *f)
{
    for (size_t i = 0; i < f->nseries; i++)
        free(f->list[i]);
    free(f->list);
    free(f->name);
    free(f->help);
    free(f);
}

void dr_metrics_free(dr_metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nfamilies; i++)
        family_free(m->families[i]);
    free(m->families);
    free(m->family_index.buckets);
    free(m->series_index.buckets);
    free(m->hooks);
    free(m);
}

/* Grows a pointer or struct array by doubling so that one more fits. */
static int grow_array(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    size_t newcap = *cap ? *cap * 2 : 8;
    void *p = realloc(*arr, newcap * elem);
    if (!p)
        return DR_ENOMEM;
    *arr = p;
    *cap = newcap;
    return 0;
}

/* ---- names and label sets ----------------------------------------------- */

static bool is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* */
static bool valid_metric_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > DR_METRICS_MAX_NAME || !(is_alpha_(s[0]) || s[0] == ':'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(is_alpha_(s[i]) || is_digit(s[i]) || s[i] == ':'))
            return false;
    return true;
}

/* [a-zA-Z_][a-zA-Z0-9_]*, and names starting with "__" are Prometheus's own. */
static bool valid_label_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > DR_METRICS_MAX_NAME || !is_alpha_(s[0]) || strncmp(s, "__", 2) == 0)
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(is_alpha_(s[i]) || is_digit(s[i])))
            return false;
    return true;
}

/* A caller's label list, checked and counted. A NULL value reads as "". */
typedef struct labelset {
    const char *const *pairs;
    size_t n; /* pairs */
} labelset;

static const char *label_value(const labelset *ls, size_t i)
{
    const char *v = ls->pairs[2 * i + 1];
    return v ? v : "";
}

static int labelset_check(const char *const *pairs, labelset *ls)
{
    ls->pairs = pairs;
    ls->n = 0;
    if (!pairs)
        return 0;
    while (pairs[2 * ls->n]) {
        if (ls->n == DR_METRICS_MAX_LABELS)
            return DR_EINVAL;
        const char *name = pairs[2 * ls->n];
        if (!valid_label_name(name) || strlen(label_value(ls, ls->n)) > DR_METRICS_MAX_VALUE)
            return DR_EINVAL;
        for (size_t j = 0; j < ls->n; j++)
            if (strcmp(pairs[2 * j], name) == 0)
                return DR_EINVAL; /* a label name twice */
        ls->n++;
    }
    return 0;
}

static uint64_t series_hash(const char *name, const labelset *ls)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < ls->n; i++) {
        const char *k = ls->pairs[2 * i], *v = label_value(ls, i);
        uint64_t h = hash_bytes(HASH_SEED, k, strlen(k) + 1); /* the NUL separates */
        sum += hash_mix(hash_bytes(h, v, strlen(v)));
    }
    return hash_mix(hash_bytes(HASH_SEED, name, strlen(name)) ^ hash_mix(sum + ls->n));
}

/* Whether the series has exactly these pairs, in any order. Label names
 * are unique on both sides, so same count and every pair found is enough. */
static bool series_has_labels(const series *s, const labelset *ls)
{
    if (s->nlabels != ls->n)
        return false;
    for (size_t i = 0; i < ls->n; i++) {
        const char *k = ls->pairs[2 * i];
        size_t j = 0;
        while (j < s->nlabels && strcmp(s->labels[2 * j], k) != 0)
            j++;
        if (j == s->nlabels || strcmp(s->labels[2 * j + 1], label_value(ls, i)) != 0)
            return false;
    }
    return true;
}

/* ---- get-or-create ------------------------------------------------------- */

static family *find_family(const dr_metrics *m, const char *name, uint64_t hash)
{
    for (hnode *n = htab_chain(&m->family_index, hash); n; n = n->next) {
        family *f = (family *)n;
        if (n->hash == hash && strcmp(f->name, name) == 0)
            return f;
    }
    return NULL;
}

static family *add_family(dr_metrics *m, const char *name, const char *help,
                          dr_self_metric_kind type, uint64_t hash)
{
    if (grow_array((void **)&m->families, &m->famcap, m->nfamilies, sizeof(family *)) < 0)
        return NULL;
    family *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->node.hash = hash;
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help);
    if (!f->name || !f->help || htab_insert(&m->family_index, &f->node) < 0) {
        family_free(f);
        return NULL;
    }
    m->families[m->nfamilies++] = f;
    return f;
}

static series *find_series(const dr_metrics *m, const family *f, const labelset *ls, uint64_t hash)
{
    for (hnode *n = htab_chain(&m->series_index, hash); n; n = n->next) {
        series *s = (series *)n;
        if (n->hash == hash && s->fam == f && series_has_labels(s, ls))
            return s;
    }
    return NULL;
}

/* One allocation: the struct, then the label pointers, then the strings. */
static series *series_alloc(const labelset *ls)
{
    size_t bytes = 0;
    for (size_t i = 0; i < ls->n; i++)
        bytes += strlen(ls->pairs[2 * i]) + 1 + strlen(label_value(ls, i)) + 1;
    series *s = calloc(1, sizeof *s + 2 * ls->n * sizeof(char *) + bytes);
    if (!s)
        return NULL;
    s->nlabels = ls->n;
    s->labels = (const char **)(s + 1);
    char *p = (char *)(s->labels + 2 * ls->n);
    for (size_t i = 0; i < 2 * ls->n; i++) {
        const char *src = i % 2 ? label_value(ls, i / 2) : ls->pairs[i];
        size_t len = strlen(src) + 1;
        memcpy(p, src, len);
        s->labels[i] = p;
        p += len;
    }
    return s;
}

static series *add_series(dr_metrics *m, family *f, const labelset *ls, uint64_t hash)
{
    if (m->nseries >= DR_METRICS_MAX_SERIES)
        return NULL;
    if (grow_array((void **)&f->list, &f->cap, f->nseries, sizeof(series *)) < 0)
        return NULL;
    series *s = series_alloc(ls);
    if (!s)
        return NULL;
    s->fam = f;
    s->node.hash = hash;
    if (htab_insert(&m->series_index, &s->node) < 0) {
        free(s);
        return NULL;
    }
    f->list[f->nseries++] = s;
    m->nseries++;
    return s;
}

static series *get_or_create(dr_metrics *m, const char *name, const char *help,
                             const char *const *labels, dr_self_metric_kind type)
{
    labelset ls;
    if (!m || !name || !valid_metric_name(name) || labelset_check(labels, &ls) < 0)
        return NULL;
    if (!help)
        help = "";
    uint64_t fhash = hash_mix(hash_bytes(HASH_SEED, name, strlen(name)));
    family *f = find_family(m, name, fhash);
    if (f && (f->type != type || strcmp(f->help, help) != 0))
        return NULL; /* one name, one meaning */
    if (!f && !(f = add_family(m, name, help, type, fhash)))
        return NULL;
    uint64_t shash = series_hash(name, &ls);
    series *s = find_series(m, f, &ls, shash);
    return s ? s : add_series(m, f, &ls, shash);
}

dr_counter *dr_metrics_counter(dr_metrics *m, const char *name, const char *help,
                               const char *const *labels)
{
    series *s = get_or_create(m, name, help, labels, DR_METRIC_COUNTER);
    return s ? &s->v.counter : NULL;
}

dr_gauge *dr_metrics_gauge(dr_metrics *m, const char *name, const char *help,
                           const char *const *labels)
{
    series *s = get_or_create(m, name, help, labels, DR_METRIC_GAUGE);
    return s ? &s->v.gauge : NULL;
}

dr_gauge *dr_metrics_read_counter(dr_metrics *m, const char *name, const char *help,
                                  const char *const *labels)
{
    series *s = get_or_create(m, name, help, labels, DR_METRIC_READ_COUNTER);
    return s ? &s->v.gauge : NULL;
}

/* ---- values ----------------------------------------------------------------
 * NULL is accepted and ignored: a series that could not be created (out of
 * memory, invalid name) must not take the caller down with it. */

void dr_counter_add(dr_counter *c, uint64_t n)
{
    if (c)
        c->value += n;
}

uint64_t dr_counter_get(const dr_counter *c)
{
    return c ? c->value : 0;
}

void dr_gauge_set(dr_gauge *g, double v)
{
    if (g)
        g->value = v;
}

void dr_gauge_add(dr_gauge *g, double v)
{
    if (g)
        g->value += v;
}

double dr_gauge_get(const dr_gauge *g)
{
    return g ? g->value : 0;
}

/* ---- hooks ------------------------------------------------------------------ */

int dr_metrics_add_hook(dr_metrics *m, dr_metrics_hook fn, void *ctx)
{
    if (!m || !fn)
        return DR_EINVAL;
    for (size_t i = 0; i < m->nhooks; i++)
        if (m->hooks[i].fn == fn && m->hooks[i].ctx == ctx)
            return 0; /* already there: run it once, not twice */
    if (grow_array((void **)&m->hooks, &m->hookcap, m->nhooks, sizeof(hook)) < 0)
        return DR_ENOMEM;
    m->hooks[m->nhooks++] = (hook){fn, ctx};
    return 0;
}

static void compact_hooks(dr_metrics *m)
{
    size_t j = 0;
    for (size_t i = 0; i < m->nhooks; i++)
        if (m->hooks[i].fn)
            m->hooks[j++] = m->hooks[i];
    m->nhooks = j;
}

void dr_metrics_remove_hook(dr_metrics *m, dr_metrics_hook fn, void *ctx)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nhooks; i++) {
        if (m->hooks[i].fn == fn && m->hooks[i].ctx == ctx) {
            /* A hook may remove itself (or another) while the hooks run:
             * leave a hole then, so that the loop's indexes stay right. */
            m->hooks[i].fn = NULL;
            if (!m->running_hooks)
                compact_hooks(m);
            return;
        }
    }
}

static void run_hooks(dr_metrics *m)
{
    m->running_hooks = true;
    for (size_t i = 0; i < m->nhooks; i++)
        if (m->hooks[i].fn)
            m->hooks[i].fn(m->hooks[i].ctx);
    m->running_hooks = false;
    compact_hooks(m);
}

/* ---- exposition ---------------------------------------------------------------- */

/* Appends `s` with backslash and newline escaped, and double quotes too
 * when `quote` (label values). */
static int put_escaped(dr_buf *out, const char *s, bool quote)
{
    const char *run = s;
    for (const char *p = s;; p++) {
        const char *esc = NULL;
        if (*p == '\\')
            esc = "\\\\";
        else if (*p == '\n')
            esc = "\\n";
        else if (*p == '"' && quote)
            esc = "\\\"";
        else if (*p != '\0')
            continue;
        if (dr_buf_append(out, run, (size_t)(p - run)) < 0)
            return DR_ENOMEM;
        if (!esc)
            return 0;
        if (dr_buf_puts(out, esc) < 0)
            return DR_ENOMEM;
        run = p + 1;
    }
}

/* Formats a gauge value as Prometheus reads it: NaN, +Inf, -Inf, integral
 * values as plain integers, others in the shortest %g form that reads back
 * as the same double. */
void dr_format_double(char *out, size_t size, double v)
{
    if (isnan(v)) {
        snprintf(out, size, "NaN");
    } else if (isinf(v)) {
        snprintf(out, size, v > 0 ? "+Inf" : "-Inf");
    } else if (v == 0) {
        snprintf(out, size, "0"); /* not "-0" */
    } else if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(out, size, "%.0f", v);
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(out, size, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
}

static int render_series(dr_buf *out, const family *f, const series *s)
{
    int rc = dr_buf_puts(out, f->name);
    for (size_t i = 0; i < s->nlabels && rc == 0; i++) {
        rc = dr_buf_printf(out, "%c%s=\"", i == 0 ? '{' : ',', s->labels[2 * i]);
        if (rc == 0)
            rc = put_escaped(out, s->labels[2 * i + 1], true);
        if (rc == 0)
            rc = dr_buf_putc(out, '"');
    }
    if (rc == 0 && s->nlabels)
        rc = dr_buf_putc(out, '}');
    if (rc < 0)
        return DR_ENOMEM;
    if (f->type == DR_METRIC_COUNTER)
        return dr_buf_printf(out, " %" PRIu64 "\n", s->v.counter.value) < 0 ? DR_ENOMEM : 0;
    char num[64];
    dr_format_double(num, sizeof num, s->v.gauge.value);
    return dr_buf_printf(out, " %s\n", num) < 0 ? DR_ENOMEM : 0;
}

static int render_family(dr_buf *out, const family *f)
{
    if (f->nseries == 0)
        return 0; /* its first series could not be created */
    if (dr_buf_printf(out, "# HELP %s ", f->name) < 0 || put_escaped(out, f->help, false) < 0 ||
        dr_buf_printf(out, "\n# TYPE %s %s\n", f->name,
                      f->type == DR_METRIC_GAUGE ? "gauge" : "counter") < 0)
        return DR_ENOMEM;
    for (size_t i = 0; i < f->nseries; i++)
        if (render_series(out, f, f->list[i]) < 0)
            return DR_ENOMEM;
    return 0;
}

int dr_metrics_render(dr_metrics *m, dr_buf *out)
{
    run_hooks(m);
    size_t start = out->len;
    for (size_t i = 0; i < m->nfamilies; i++) {
        if (render_family(out, m->families[i]) < 0) {
            out->len = start; /* no half exposition */
            return DR_ENOMEM;
        }
    }
    return 0;
}
