/* The series table: interning, sharing of strings, references, bounds. */
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "drover/plugin.h"
#include "labels.h"
#include "series.h"
#include "test.h"

/* Interns the canonical form of "name", then label pairs. */
static int intern3(dr_series_table *t, const char *name, const char *k, const char *v,
                   dr_series **out)
{
    dr_labels ls;
    dr_labels_init(&ls);
    dr_labels_sets(&ls, "__name__", name);
    dr_labels_sets(&ls, k, v);
    dr_labels_sets(&ls, "job", "node");
    int rc = dr_labels_canon(&ls);
    if (rc == 0)
        rc = dr_series_intern(t, &ls, dr_labels_hash(&ls), out);
    dr_labels_free(&ls);
    return rc;
}

void test_series_intern_shares(void)
{
    dr_series_table *t = dr_series_table_new(0);
    CHECK(t != NULL);
    dr_series *a, *b, *c;
    CHECK_INT(intern3(t, "up", "instance", "a:9100", &a), 0);
    CHECK_INT(intern3(t, "up", "instance", "a:9100", &b), 0);
    CHECK(a == b);
    CHECK_INT(a->refs, 2);
    CHECK_INT(intern3(t, "up", "instance", "b:9100", &c), 0);
    CHECK(c != a);
    dr_series_stats st;
    dr_series_table_stats(t, &st);
    CHECK_INT(st.series, 2);
    /* __name__, up, instance, a:9100, b:9100, job, node */
    CHECK_INT(st.symbols, 7);

    /* labels come back in canonical order, with their bytes */
    dr_labels ls;
    dr_labels_init(&ls);
    CHECK_INT(dr_series_labels(t, c, &ls), 0);
    char buf[128];
    dr_labels_format(&ls, buf, sizeof buf);
    CHECK_STR(buf, "up{instance=\"b:9100\",job=\"node\"}");
    dr_symbol_view v = dr_series_value(t, c, "job", 3);
    CHECK_MEM(v.s, v.len, "node", 4);
    v = dr_series_value(t, c, "absent", 6);
    CHECK_INT(v.len, 0);
    CHECK(dr_series_lookup(t, &ls, dr_labels_hash(&ls)) == c);

    dr_series_unref(t, a);
    dr_series_table_stats(t, &st);
    CHECK_INT(st.series, 2); /* b still holds it */
    dr_series_unref(t, b);
    dr_series_table_stats(t, &st);
    CHECK_INT(st.series, 1);
    CHECK_INT(st.symbols, 6); /* a:9100 went with its only series */
    CHECK(dr_series_lookup(t, &ls, dr_labels_hash(&ls)) == c);
    dr_labels copy; /* ls points into c, which goes now */
    dr_labels_init(&copy);
    CHECK_INT(dr_labels_copy(&copy, &ls), 0);
    dr_series_unref(t, c);
    dr_series_table_stats(t, &st);
    CHECK_INT(st.series, 0);
    CHECK_INT(st.symbols, 0);
    CHECK(dr_series_lookup(t, &copy, dr_labels_hash(&copy)) == NULL);
    dr_labels_free(&copy);
    dr_labels_free(&ls);
    dr_series_table_free(t);
}

void test_series_symbol_ids_reused(void)
{
    dr_series_table *t = dr_series_table_new(0);
    dr_series *a;
    CHECK_INT(intern3(t, "m", "k", "v1", &a), 0);
    uint32_t bound = dr_series_symbol_bound(t);
    CHECK_INT(bound, 6);
    dr_series_unref(t, a);
    /* the freed ids come back: the bound does not grow with churn */
    for (int i = 0; i < 100; i++) {
        char v[16];
        snprintf(v, sizeof v, "v%d", i);
        CHECK_INT(intern3(t, "m", "k", v, &a), 0);
        dr_series_unref(t, a);
    }
    CHECK_INT(dr_series_symbol_bound(t), bound);
    CHECK(dr_series_symbol(t, bound + 5).s == NULL);
    dr_series_table_free(t);
}

void test_series_bound_and_growth(void)
{
    enum { N = 20000 };
    dr_series_table *t = dr_series_table_new(N);
    static dr_series *held[N];
    char v[32];
    for (int i = 0; i < N; i++) {
        snprintf(v, sizeof v, "10.0.%d.%d:9100", i / 256, i % 256);
        CHECK_INT(intern3(t, "node_load1", "instance", v, &held[i]), 0);
    }
    dr_series *extra = NULL;
    CHECK_INT(intern3(t, "node_load1", "instance", "full", &extra), DR_EAGAIN);
    CHECK(extra == NULL);
    /* an existing series is still found when the table is full */
    dr_series *again;
    CHECK_INT(intern3(t, "node_load1", "instance", "10.0.0.7:9100", &again), 0);
    CHECK(again == held[7]);
    dr_series_unref(t, again);

    dr_series_stats st;
    dr_series_table_stats(t, &st);
    CHECK_INT(st.series, N);
    CHECK_INT(st.full_drops, 1);
    /* 3 labels a series, the names and job shared: well under 150 bytes
     * per series including the hash tables and the distinct values */
    CHECK(st.bytes / N < 150);

    for (int i = 0; i < N; i++) {
        dr_symbol_view n, val;
        dr_series_label(t, held[i], 1, &n, &val);
        snprintf(v, sizeof v, "10.0.%d.%d:9100", i / 256, i % 256);
        if (!CHECK_MEM(val.s, val.len, v, strlen(v)))
            break;
    }
    for (int i = 0; i < N; i++)
        dr_series_unref(t, held[i]);
    dr_series_table_stats(t, &st);
    CHECK_INT(st.series, 0);
    CHECK_INT(st.symbols, 0);
    dr_series_table_free(t);
}

void test_series_empty_set(void)
{
    dr_series_table *t = dr_series_table_new(0);
    dr_labels ls;
    dr_labels_init(&ls);
    dr_series *s;
    CHECK_INT(dr_series_intern(t, &ls, dr_labels_hash(&ls), &s), 0);
    CHECK_INT(s->nlabels, 0);
    dr_series_unref(t, s);
    dr_labels_free(&ls);
    dr_series_table_free(t);
}

void test_series_metric_chunk_holds_refs(void)
{
    dr_series_table *t = dr_series_table_new(0);
    dr_series *a, *b;
    CHECK_INT(intern3(t, "up", "instance", "a", &a), 0);
    CHECK_INT(intern3(t, "up", "instance", "b", &b), 0);
    dr_chunk *c = dr_chunk_new_metrics(NULL, t);
    CHECK(c != NULL);
    CHECK_INT(c->kind, DR_CHUNK_METRICS);
    for (int i = 0; i < 1000; i++)
        CHECK(dr_chunk_add_sample(c, i % 2 ? a : b, 1000 + i, i) != NULL);
    CHECK(dr_chunk_add_sample(c, a, 5000, dr_stale_nan()) != NULL);
    CHECK_INT(dr_chunk_add_meta(c, "up", 2, 2, "1 if the target answered", 24, NULL, 0), 0);
    CHECK_INT(c->nsamples, 1001);
    CHECK_INT(c->nmetas, 1);
    CHECK_STR(c->metas[0].help, "1 if the target answered");
    CHECK_STR(c->metas[0].unit, "");
    CHECK(dr_is_stale_nan(c->samples[1000].value));
    CHECK(!dr_is_stale_nan(0.0 / 0.0));
    CHECK_INT(a->refs, 1 + 501);
    CHECK_INT(dr_chunk_payload_bytes(c), 1001 * 16 + 2 + 24);
    CHECK(c->mem > 1001 * sizeof(dr_sample));
    dr_series_unref(t, a);
    dr_series_unref(t, b);
    dr_series_stats st;
    dr_series_table_stats(t, &st);
    CHECK_INT(st.series, 2); /* the chunk still holds them */
    dr_chunk_release(c);
    dr_series_table_stats(t, &st);
    CHECK_INT(st.series, 0);
    dr_series_table_free(t);
}

/* dr_series_symbol_find and dr_series_label_views, which the remote-write
 * encoders use: a string is found while a series uses it, and not after. */
void test_series_symbol_find_and_views(void)
{
    dr_series_table *t = dr_series_table_new(0);
    dr_series *a;
    CHECK_INT(intern3(t, "up", "instance", "a:9100", &a), 0);
    uint32_t id = dr_series_symbol_find(t, "a:9100", 6);
    CHECK(id != DR_SERIES_NO_SYMBOL);
    dr_symbol_view v = dr_series_symbol(t, id);
    CHECK(v.s && v.len == 6 && memcmp(v.s, "a:9100", 6) == 0);
    CHECK(dr_series_symbol_find(t, "a:910", 5) == DR_SERIES_NO_SYMBOL);
    CHECK(dr_series_symbol_find(t, "a:91000", 7) == DR_SERIES_NO_SYMBOL);

    /* canonical order: __name__, instance, job */
    static const char *want[] = {"__name__", "up", "instance", "a:9100", "job", "node"};
    dr_symbol_view views[6];
    CHECK_INT(a->nlabels, 3);
    CHECK(dr_series_label_views(t, a, views));
    for (int i = 0; i < 6; i++)
        CHECK_MEM(views[i].s, views[i].len, want[i], strlen(want[i]));

    dr_series_unref(t, a);
    CHECK(dr_series_symbol_find(t, "a:9100", 6) == DR_SERIES_NO_SYMBOL);
    dr_series_table_free(t);
}

/* Series come and go in any order (the slots' backward shifts must keep
 * every remaining one findable), and past 65536 distinct strings the ids
 * of new series take 4 bytes: labels read back the same either way. */
void test_series_churn_and_wide_ids(void)
{
    enum { N = 70000 };
    dr_series_table *t = dr_series_table_new(0);
    static dr_series *held[N];
    char v[32];
    for (int i = 0; i < N; i++) {
        snprintf(v, sizeof v, "pod-%d", i);
        CHECK_INT(intern3(t, "up", "pod", v, &held[i]), 0);
    }
    CHECK(!held[0]->wide);
    CHECK(held[N - 1]->wide); /* its value is string number N + 3 or so */
    /* drop a pseudo-random two thirds, then check the rest are found */
    uint32_t r = 12345;
    static bool gone[N];
    for (int i = 0; i < N; i++) {
        r = r * 1103515245u + 12345u;
        if ((r >> 16) % 3 != 0) {
            dr_series_unref(t, held[i]);
            gone[i] = true;
        }
    }
    int bad = 0;
    for (int i = 0; i < N; i++) {
        snprintf(v, sizeof v, "pod-%d", i);
        dr_labels ls;
        dr_labels_init(&ls);
        dr_labels_sets(&ls, "__name__", "up");
        dr_labels_sets(&ls, "pod", v);
        dr_labels_sets(&ls, "job", "node");
        dr_labels_canon(&ls);
        dr_series *s = dr_series_lookup(t, &ls, dr_labels_hash(&ls));
        dr_labels_free(&ls);
        bad += gone[i] ? s != NULL : s != held[i];
        if (!gone[i]) {
            dr_symbol_view val = dr_series_value(t, held[i], "pod", 3);
            bad += val.len != strlen(v) || memcmp(val.s, v, val.len) != 0;
        }
    }
    CHECK_INT(bad, 0);
    for (int i = 0; i < N; i++)
        if (!gone[i])
            dr_series_unref(t, held[i]);
    dr_series_stats st;
    dr_series_table_stats(t, &st);
    CHECK_INT(st.series, 0);
    CHECK_INT(st.symbols, 0);
    dr_series_table_free(t);
}
