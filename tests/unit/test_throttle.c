/*
 * The throttle filter: token buckets driven by a clock the test holds, the
 * bounded table of groups, and the filter through a oneshot agent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/filters/throttle/bucket.h"
#include "../../plugins/filters/throttle/groups.h"
#include "filter_harness.h"
#include "test.h"

#define MS 1000000LL
#define SEC 1000000000LL

/* How many of n takes of `bytes` each pass at time t. */
static int takes(dr_token_bucket *b, const dr_bucket_limits *l, int64_t t, int n, uint64_t bytes)
{
    int ok = 0;
    for (int i = 0; i < n; i++)
        ok += dr_bucket_take(b, l, t, bytes);
    return ok;
}

void test_throttle_bucket_records(void)
{
    dr_bucket_limits l = dr_bucket_limits_make(10, 0, 1000);
    dr_token_bucket b;
    int64_t t0 = 5 * SEC;
    dr_bucket_init(&b, &l, t0);
    CHECK_INT(takes(&b, &l, t0, 15, 100), 10); /* a full bucket: the burst */
    CHECK_INT(takes(&b, &l, t0 + 100 * MS, 5, 100), 1);
    CHECK_INT(takes(&b, &l, t0 + 150 * MS, 5, 100), 0); /* half a token */
    CHECK_INT(takes(&b, &l, t0 + 200 * MS, 5, 100), 1);
    /* time going backwards refills nothing */
    CHECK_INT(takes(&b, &l, t0, 5, 100), 0);
    /* a long quiet spell fills the bucket, no more */
    CHECK_INT(takes(&b, &l, t0 + 3600 * SEC, 50, 100), 10);
    /* a longer burst holds more */
    l = dr_bucket_limits_make(10, 0, 5000);
    dr_bucket_init(&b, &l, t0);
    CHECK_INT(takes(&b, &l, t0, 100, 1), 50);
    /* a bucket always holds one record, however short the burst */
    l = dr_bucket_limits_make(1, 0, 1);
    dr_bucket_init(&b, &l, t0);
    CHECK_INT(takes(&b, &l, t0, 3, 1), 1);
    CHECK_INT(takes(&b, &l, t0 + 999 * MS, 3, 1), 0);
    CHECK_INT(takes(&b, &l, t0 + 1000 * MS, 3, 1), 1);
}

void test_throttle_bucket_bytes(void)
{
    dr_bucket_limits l = dr_bucket_limits_make(0, 100, 1000);
    dr_token_bucket b;
    dr_bucket_init(&b, &l, 0);
    /* a message bigger than the bucket passes, and leaves a debt */
    CHECK_INT(takes(&b, &l, 0, 1, 250), 1);
    CHECK_INT(takes(&b, &l, 0, 1, 1), 0);
    CHECK_INT(takes(&b, &l, 1000 * MS, 1, 1), 0);  /* -50 */
    CHECK_INT(takes(&b, &l, 1500 * MS, 1, 1), 0);  /* 0: nothing left */
    CHECK_INT(takes(&b, &l, 1510 * MS, 1, 10), 1); /* 1 byte left: a record passes */
    CHECK_INT(takes(&b, &l, 1510 * MS, 1, 10), 0);
    /* both limits: the tighter one decides, and only a pass takes tokens */
    l = dr_bucket_limits_make(3, 1000, 1000);
    dr_bucket_init(&b, &l, 0);
    CHECK_INT(takes(&b, &l, 0, 10, 100), 3);
    CHECK_INT(b.bytes, 700);
    dr_bucket_init(&b, &l, 0);
    CHECK_INT(takes(&b, &l, 0, 10, 600), 2);
    CHECK_INT(b.records, 1);
}

void test_throttle_groups_lru(void)
{
    dr_bucket_limits l = dr_bucket_limits_make(1, 0, 1000);
    dr_throttle_groups g;
    CHECK_INT(dr_throttle_groups_init(&g, 3), 0);
    dr_throttle_group *a = dr_throttle_groups_get(&g, "a", 1, &l, 0);
    CHECK(dr_bucket_take(&a->bucket, &l, 0, 1));
    CHECK(dr_throttle_groups_get(&g, "b", 1, &l, 0) != NULL);
    CHECK(dr_throttle_groups_get(&g, "c", 1, &l, 0) != NULL);
    CHECK(dr_throttle_groups_get(&g, "a", 1, &l, 0) == a); /* a is now the newest */
    CHECK_INT(g.n, 3);
    /* d makes room by forgetting b, the least recently used */
    CHECK(dr_throttle_groups_get(&g, "d", 1, &l, 0) != NULL);
    CHECK_INT(g.n, 3);
    CHECK_INT(g.evicted, 1);
    CHECK(dr_throttle_groups_get(&g, "a", 1, &l, 0) == a);
    /* a kept its empty bucket; b comes back full (forgetting c) */
    CHECK(!dr_bucket_take(&a->bucket, &l, 0, 1));
    dr_throttle_group *b = dr_throttle_groups_get(&g, "b", 1, &l, 0);
    CHECK(dr_bucket_take(&b->bucket, &l, 0, 1));
    CHECK_INT(g.evicted, 2);
    /* the empty key is a group like any other */
    CHECK(dr_throttle_groups_get(&g, "", 0, &l, 0) != NULL);
    CHECK(dr_throttle_groups_get(&g, "", 0, &l, 0) == dr_throttle_groups_get(&g, "", 0, &l, 0));
    dr_throttle_groups_free(&g);

    /* many groups: the table grows; long values group by their start */
    CHECK_INT(dr_throttle_groups_init(&g, 100000), 0);
    char key[DR_THROTTLE_MAX_KEY + 20];
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(key, sizeof key, "ns-%d", i);
        CHECK(dr_throttle_groups_get(&g, key, (size_t)n, &l, 0) != NULL);
    }
    CHECK_INT(g.n, 5000);
    CHECK(g.nslots >= 4096);
    memset(key, 'x', sizeof key);
    dr_throttle_group *long1 = dr_throttle_groups_get(&g, key, DR_THROTTLE_MAX_KEY + 5, &l, 0);
    key[DR_THROTTLE_MAX_KEY + 2] = 'y';
    CHECK(dr_throttle_groups_get(&g, key, DR_THROTTLE_MAX_KEY + 5, &l, 0) == long1);
    CHECK_INT(g.n, 5001);
    dr_throttle_groups_free(&g);
}

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p++)
        n++;
    return n;
}

#define T "2026-11-25T04:00:01.000000001Z stdout F "

void test_throttle_per_namespace(void)
{
    const char *root = dt_filter_root();
    dt_filter_add_log(root, "shop", "web-1", T "s1\n" T "s2\n" T "s3\n" T "s4\n" T "s5\n");
    dt_filter_add_log(root, "blog", "cms-1", T "b1\n" T "b2\n" T "b3\n" T "b4\n" T "b5\n");
    dr_metrics *m = dr_metrics_new();
    char *out = dt_filter_run(
        root, "  - {name: t, type: throttle, records_per_second: 2, burst: 1s}\n", m, NULL);
    if (CHECK(out != NULL)) {
        CHECK_INT(count(out, "\"namespace\":\"shop\""), 2);
        CHECK_INT(count(out, "\"namespace\":\"blog\""), 2);
        CHECK(strstr(out, "\"message\":\"s1\"") && strstr(out, "\"message\":\"s2\""));
        CHECK(strstr(out, "\"message\":\"b1\"") && strstr(out, "\"message\":\"b2\""));
    }
    CHECK_INT(dt_metric(m, "drover_filter_throttled_records_total{plugin=\"throttle\",name=\"t\"}"),
              6);
    CHECK_INT(dt_metric(m, "drover_dropped_records_total{plugin=\"throttle\",name=\"t\","
                           "reason=\"throttled\"}"),
              6);
    CHECK_INT(dt_metric(m, "drover_filter_throttle_groups{plugin=\"throttle\",name=\"t\"}"), 2);
    free(out);
    dr_metrics_free(m);

    /* records without the key share one group */
    root = dt_filter_root();
    dt_filter_add_log(root, "shop", "web-1", T "s1\n" T "s2\n" T "s3\n");
    dt_filter_add_log(root, "blog", "cms-1", T "b1\n" T "b2\n" T "b3\n");
    out = dt_filter_run(
        root, "  - {name: t, type: throttle, key: trace_id, records_per_second: 2}\n", NULL, NULL);
    CHECK(out && count(out, "\n") == 2);
    free(out);
}

void test_throttle_bytes(void)
{
    char *out = dt_filter_run_lines("  - {name: t, type: throttle, bytes_per_second: 10}\n",
                                    T "12345678\n" T "abc\n" T "x\n", NULL);
    char *bodies = out ? dt_filter_bodies(out) : NULL;
    CHECK_STR(bodies, "\"message\":\"12345678\"\n\"message\":\"abc\"\n");
    free(bodies);
    free(out);
}

static void expect_refused(const char *options, const char *want)
{
    char filters[512];
    snprintf(filters, sizeof filters, "  - {name: t, type: throttle, %s}\n", options);
    char *errors = dt_filter_config_errors(filters);
    if (CHECK(errors != NULL) && !CHECK(strstr(errors, want) != NULL))
        fprintf(stderr, "    errors: %s    want: %s\n", errors, want);
    free(errors);
}

void test_throttle_config_errors(void)
{
    expect_refused("burst: 2s", "filter t: set records_per_second or bytes_per_second (or both): "
                                "without a rate there is nothing to throttle\n");
    expect_refused("records_per_second: 5, key: kubernetes.labels.",
                   "filter t: key: unknown key \"kubernetes.labels.\"");
    expect_refused("records_per_second: 5, max_groups: 0", "max_groups");
    expect_refused("records_per_second: 5, burst: 0", "burst");
    expect_refused("records_per_second: -1", "records_per_second");
    char *errors = dt_filter_config_errors(
        "  - {name: t, type: throttle, key: kubernetes.labels.team, bytes_per_second: 1MiB}\n");
    CHECK(errors == NULL);
    free(errors);
}
