/* The series cache of a scrape target: keys, lookups, growth, sweeps. */
#include <stdio.h>
#include <string.h>

#include "../../plugins/inputs/prometheus_scrape/cache.h"
#include "drover/plugin.h"
#include "expo.h"
#include "labels.h"
#include "series.h"
#include "test.h"

static void key_of(const char *name, const char *k, const char *v, uint64_t *k1, uint64_t *k2)
{
    dr_labels ls;
    dr_labels_init(&ls);
    dr_labels_add(&ls, "__name__", 8, name, strlen(name));
    if (k)
        dr_labels_add(&ls, k, strlen(k), v, strlen(v));
    dr_expo_key key;
    dr_expo_labels_key(&ls, &key);
    *k1 = key.a;
    *k2 = key.b;
    dr_labels_free(&ls);
}

void test_scrape_cache_keys(void)
{
    uint64_t a1, a2, b1, b2, c1, c2;
    key_of("up", "ab", "c", &a1, &a2);
    key_of("up", "a", "bc", &b1, &b2); /* same bytes, other split */
    key_of("up", "ab", "c", &c1, &c2);
    CHECK(a1 != b1 || a2 != b2);
    CHECK(a1 == c1 && a2 == c2);
    key_of("up", NULL, NULL, &b1, &b2);
    CHECK(a1 != b1 || a2 != b2);
}

static dr_series *series_of(dr_series_table *t, int i)
{
    char v[32];
    snprintf(v, sizeof v, "%d", i);
    dr_labels ls;
    dr_labels_init(&ls);
    dr_labels_sets(&ls, "__name__", "m");
    dr_labels_sets(&ls, "i", v);
    dr_labels_canon(&ls);
    dr_series *s = NULL;
    dr_series_intern(t, &ls, dr_labels_hash(&ls), &s);
    dr_labels_free(&ls);
    return s;
}

static void count_entry(void *ctx, const cache_entry *e)
{
    (void)e;
    (*(int *)ctx)++;
}

void test_scrape_cache_sweep(void)
{
    enum { N = 5000 };
    dr_series_table *st = dr_series_table_new(0);
    scrape_cache c;
    cache_init(&c, st);
    uint64_t k1[N], k2[N];
    for (int i = 0; i < N; i++) {
        char v[32];
        snprintf(v, sizeof v, "%d", i);
        key_of("m", "i", v, &k1[i], &k2[i]);
        /* every 7th a dropped line (no series) */
        CHECK(cache_add(&c, k1[i], k2[i], i % 7 ? series_of(st, i) : NULL, 1, 0) != NULL);
    }
    CHECK_INT(c.n, N);
    for (int i = 0; i < N; i++)
        if (!CHECK(cache_find(&c, k1[i], k2[i]) != NULL))
            break;
    /* the second scrape sees the even lines only */
    for (int i = 0; i < N; i += 2)
        cache_find(&c, k1[i], k2[i])->seen = 2;
    int gone = 0;
    cache_sweep(&c, 2, count_entry, &gone);
    CHECK_INT(gone, N / 2);
    CHECK_INT(c.n, N / 2);
    for (int i = 0; i < N; i++) {
        cache_entry *e = cache_find(&c, k1[i], k2[i]);
        if (!CHECK(i % 2 ? e == NULL : e != NULL))
            break;
    }
    dr_series_stats ss;
    dr_series_table_stats(st, &ss);
    /* the odd lines' series were released; the even ones held */
    int held = 0;
    for (int i = 0; i < N; i += 2)
        held += i % 7 != 0;
    CHECK_INT(ss.series, held);
    cache_free(&c);
    dr_series_table_stats(st, &ss);
    CHECK_INT(ss.series, 0);
    CHECK(cache_bytes(&c) == 0);
    dr_series_table_free(st);
}
