/*
 * The grep filter through a oneshot agent: keep and drop rules, and/or,
 * keys of every kind, regexes that give up, configurations refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter_harness.h"
#include "test.h"

static const char *const lines = "2026-11-25T04:00:01.000000001Z stdout F GET /healthz 200\n"
                                 "2026-11-25T04:00:02.000000001Z stdout F ERROR db down\n"
                                 "2026-11-25T04:00:03.000000001Z stderr F WARN slow\n"
                                 "2026-11-25T04:00:04.000000001Z stdout F INFO started\n"
                                 "2026-11-25T04:00:05.000000001Z stderr F ERROR disk full\n";

/* Runs one grep configuration over `lines` and checks the messages kept. */
static void expect_kept(const char *grep_options, const char *want)
{
    char filters[1024];
    snprintf(filters, sizeof filters, "  - {name: g, type: grep, %s}\n", grep_options);
    dr_metrics *m = dr_metrics_new();
    char *out = dt_filter_run_lines(filters, lines, m);
    if (CHECK(out != NULL)) {
        char *bodies = dt_filter_bodies(out);
        if (!CHECK_STR(bodies, want))
            fprintf(stderr, "    with %s\n", grep_options);
        free(bodies);
    }
    free(out);
    dr_metrics_free(m);
}

void test_grep_keep_and_exclude(void)
{
    expect_kept("regex: ['message ^(ERROR|WARN)']", "\"message\":\"ERROR db down\"\n"
                                                    "\"message\":\"WARN slow\"\n"
                                                    "\"message\":\"ERROR disk full\"\n");
    /* and (the default): every rule must match */
    expect_kept("regex: ['message ^ERROR', 'stream ^stderr$']",
                "\"message\":\"ERROR disk full\"\n");
    expect_kept("regex: ['message ^ERROR', 'stream ^stderr$'], logical_op: or",
                "\"message\":\"ERROR db down\"\n"
                "\"message\":\"WARN slow\"\n"
                "\"message\":\"ERROR disk full\"\n");
    expect_kept("exclude: ['message healthz', 'message ^INFO']",
                "\"message\":\"ERROR db down\"\n"
                "\"message\":\"WARN slow\"\n"
                "\"message\":\"ERROR disk full\"\n");
    /* both: kept by regex, then not excluded */
    expect_kept("regex: ['kubernetes.namespace ^shop$'], exclude: ['stream stderr']",
                "\"message\":\"GET /healthz 200\"\n"
                "\"message\":\"ERROR db down\"\n"
                "\"message\":\"INFO started\"\n");
    expect_kept("regex: ['kubernetes.pod ^web-\\d+$', 'kubernetes.container ^app$', "
                "'time T04:00:0[12]\\.']",
                "\"message\":\"GET /healthz 200\"\n"
                "\"message\":\"ERROR db down\"\n");
    expect_kept("regex: ['kubernetes.namespace ^other$']", "");
    /* a regex with spaces in it */
    expect_kept("regex: ['message db down|disk full']", "\"message\":\"ERROR db down\"\n"
                                                        "\"message\":\"ERROR disk full\"\n");
}

void test_grep_missing_key(void)
{
    /* a record without the key does not match: not kept by regex ... */
    expect_kept("regex: ['trace_id .']", "");
    expect_kept("regex: ['trace_id .', 'message ^WARN'], logical_op: or",
                "\"message\":\"WARN slow\"\n");
    /* ... and not dropped by exclude */
    expect_kept("exclude: ['trace_id .', 'kubernetes.labels.app .']",
                "\"message\":\"GET /healthz 200\"\n"
                "\"message\":\"ERROR db down\"\n"
                "\"message\":\"WARN slow\"\n"
                "\"message\":\"INFO started\"\n"
                "\"message\":\"ERROR disk full\"\n");
}

void test_grep_counts_drops(void)
{
    dr_metrics *m = dr_metrics_new();
    char *out =
        dt_filter_run_lines("  - {name: g, type: grep, exclude: 'stream stdout'}\n", lines, m);
    free(out);
    CHECK_INT(dt_metric(m, "drover_dropped_records_total{plugin=\"grep\",name=\"g\","
                           "reason=\"grep\"}"),
              3);
    CHECK_INT(dt_metric(m, "drover_output_records_total{plugin=\"file\",name=\"out\"}"), 2);
    CHECK_INT(dt_metric(m, "drover_filter_regex_errors_total{plugin=\"grep\",name=\"g\"}"), 0);
    dr_metrics_free(m);
}

/* A regex that hits its limit never causes a drop, and is counted. */
void test_grep_regex_limit_fails_open(void)
{
    const char *bad = "2026-11-25T04:00:01.000000001Z stdout F "
                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\n"
                      "2026-11-25T04:00:02.000000001Z stdout F aaa\n";
    static const struct {
        const char *filter;
        const char *want;
        int errors;
    } cases[] = {
        /* keep rule: counts as a match, so the long line stays; "aaa" matches */
        {"regex: ['message (a+)+$']",
         "\"message\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\"\n\"message\":\"aaa\"\n", 1},
        /* exclude rule: counts as no match, so the long line stays; "aaa" goes */
        {"exclude: ['message (a+)+$']",
         "\"message\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\"\n", 1},
        /* another rule that clearly fails still drops */
        {"regex: ['message (a+)+$', 'message ^zzz']", "", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char filters[512];
        snprintf(filters, sizeof filters, "  - {name: g, type: grep, %s}\n", cases[i].filter);
        dr_metrics *m = dr_metrics_new();
        char *out = dt_filter_run_lines(filters, bad, m);
        char *bodies = out ? dt_filter_bodies(out) : NULL;
        CHECK_STR(bodies, cases[i].want);
        CHECK_INT(dt_metric(m, "drover_filter_regex_errors_total{plugin=\"grep\",name=\"g\"}"),
                  cases[i].errors);
        free(bodies);
        free(out);
        dr_metrics_free(m);
    }
}

static void expect_refused(const char *filters, const char *want)
{
    char *errors = dt_filter_config_errors(filters);
    if (CHECK(errors != NULL) && !CHECK(strstr(errors, want) != NULL))
        fprintf(stderr, "    errors: %s    want: %s\n", errors, want);
    free(errors);
}

void test_grep_config_errors(void)
{
    expect_refused("  - {name: g, type: grep, regex: ['message (a+']}\n",
                   "filter g: regex[0]: invalid regex \"(a+\" at offset 3: missing closing "
                   "parenthesis\n");
    expect_refused("  - {name: g, type: grep, regex: ['message ^a', 'message']}\n",
                   "filter g: regex[1]: \"message\" is not \"KEY REGEX\" (such as \"message "
                   "^ERROR\")\n");
    expect_refused("  - {name: g, type: grep, exclude: ['kubernetes.namspace ^a']}\n",
                   "filter g: exclude[0]: unknown key \"kubernetes.namspace\"");
    expect_refused("  - {name: g, type: grep}\n",
                   "filter g: give at least one rule in `regex` or `exclude`\n");
    expect_refused("  - {name: g, type: grep, regex: 'message a', logical_op: xor}\n",
                   "logical_op");
    /* and a good one is accepted, kubernetes.labels.<key> included */
    char *errors = dt_filter_config_errors(
        "  - {name: g, type: grep, regex: ['kubernetes.labels.app.kubernetes.io/name ^web$']}\n");
    CHECK(errors == NULL);
    free(errors);
}
