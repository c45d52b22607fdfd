/*
 * The sample filter: by count, by a key's hash (records of one value kept
 * or dropped together), records always kept, configurations refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/filters/sample/sample.h"
#include "buf.h"
#include "filter_harness.h"
#include "test.h"

#define T "2026-11-25T04:00:01.000000001Z "

static char *run(const char *filters, const char *lines, dr_metrics *m)
{
    char *out = dt_filter_run_lines(filters, lines, m);
    char *bodies = out ? dt_filter_bodies(out) : NULL;
    free(out);
    return bodies;
}

void test_sample_by_count(void)
{
    dr_metrics *m = dr_metrics_new();
    char *bodies = run("  - {name: s, type: sample, rate: 3}\n",
                       T "stdout F m1\n" T "stdout F m2\n" T "stdout F m3\n" T "stdout F m4\n" T
                         "stdout F m5\n" T "stdout F m6\n" T "stdout F m7\n",
                       m);
    CHECK_STR(bodies, "\"message\":\"m1\"\n\"message\":\"m4\"\n\"message\":\"m7\"\n");
    CHECK_INT(dt_metric(m, "drover_dropped_records_total{plugin=\"sample\",name=\"s\","
                           "reason=\"sampled\"}"),
              4);
    free(bodies);
    dr_metrics_free(m);
    /* rate 1 keeps everything */
    bodies = run("  - {name: s, type: sample, rate: 1}\n", T "stdout F a\n" T "stdout F b\n", NULL);
    CHECK_STR(bodies, "\"message\":\"a\"\n\"message\":\"b\"\n");
    free(bodies);
    /* records without the key are sampled by count */
    bodies = run("  - {name: s, type: sample, rate: 2, key: trace}\n",
                 T "stdout F a\n" T "stdout F b\n" T "stdout F c\n" T "stdout F d\n", NULL);
    CHECK_STR(bodies, "\"message\":\"a\"\n\"message\":\"c\"\n");
    free(bodies);
}

/* All records of one trace are kept or dropped together, and which ones is
 * the hash's choice, the same everywhere. */
void test_sample_by_key(void)
{
    dr_buf lines = {0}, want = {0};
    int kept_values = 0;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 40; i++) {
            char v[16];
            snprintf(v, sizeof v, "t%d", i);
            dr_buf_printf(&lines, T "stdout F %s\n", v);
            if (dr_sample_hash(v, strlen(v)) % 4 == 0) {
                dr_buf_printf(&want, "\"message\":\"%s\",\"trace\":\"%s\"\n", v, v);
                kept_values += round == 0;
            }
        }
    }
    dr_buf_putc(&lines, '\0');
    dr_buf_putc(&want, '\0');
    CHECK(kept_values > 3 && kept_values < 20); /* some of each */
    char *bodies = run("  - {type: modify, operations: ['copy message trace']}\n"
                       "  - {name: s, type: sample, rate: 4, key: trace}\n",
                       lines.p, NULL);
    CHECK_STR(bodies, want.p);
    free(bodies);
    dr_buf_free(&lines);
    dr_buf_free(&want);
}

void test_sample_hash_is_fixed(void)
{
    /* pinned: a change would change which traces every node keeps */
    CHECK(dr_sample_hash("", 0) == 0xf52a15e9a9b5e89bull);
    CHECK(dr_sample_hash("trace-1", 7) == 0x6cfd8f769041b72bull);
    /* and spread: about one in ten of many values */
    int kept = 0;
    for (int i = 0; i < 10000; i++) {
        char v[48];
        int n = snprintf(v, sizeof v, "4bf92f3577b34da6a3ce929d0e0e%04d", i);
        kept += dr_sample_hash(v, (size_t)n) % 10 == 0;
    }
    CHECK(kept > 900 && kept < 1100);
}

void test_sample_exclude(void)
{
    char *bodies = run("  - {name: s, type: sample, rate: 2, exclude: ['stream ^stderr$']}\n",
                       T "stdout F o1\n" T "stderr F e1\n" T "stdout F o2\n" T "stderr F e2\n" T
                         "stdout F o3\n",
                       NULL);
    /* stderr always kept and not counted: o1 and o3 are the 1st and 3rd counted */
    CHECK_STR(bodies,
              "\"message\":\"o1\"\n\"message\":\"e1\"\n\"message\":\"e2\"\n\"message\":\"o3\"\n");
    free(bodies);
    /* a rule that gives up keeps the record */
    dr_metrics *m = dr_metrics_new();
    bodies = run("  - {name: s, type: sample, rate: 1000, exclude: 'message (a+)+$'}\n",
                 T "stdout F aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\n" T "stdout F x\n" T
                   "stdout F y\n",
                 m);
    CHECK_STR(bodies,
              "\"message\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\"\n\"message\":\"x\"\n");
    CHECK_INT(dt_metric(m, "drover_filter_regex_errors_total{plugin=\"sample\",name=\"s\"}"), 1);
    free(bodies);
    dr_metrics_free(m);
}

static void expect_refused(const char *options, const char *want)
{
    char filters[512];
    snprintf(filters, sizeof filters, "  - {name: s, type: sample, %s}\n", options);
    char *errors = dt_filter_config_errors(filters);
    if (CHECK(errors != NULL) && !CHECK(strstr(errors, want) != NULL))
        fprintf(stderr, "    errors: %s    want: %s\n", errors, want);
    free(errors);
}

void test_sample_config_errors(void)
{
    expect_refused("rate: 0", "rate");
    expect_refused("key: kubernetes.bogus", "filter s: key: unknown key \"kubernetes.bogus\"");
    expect_refused("exclude: [message]", "filter s: exclude[0]: \"message\" is not \"KEY REGEX\"");
    expect_refused("exclude: ['message (']", "filter s: exclude[0]: invalid regex \"(\" at offset "
                                             "1: missing closing parenthesis\n");
}
