/*
 * The redact filter through a oneshot agent: the built-in patterns (and
 * what they must leave alone), patterns of one's own, keys, the counter,
 * what happens when a pattern gives up, configurations refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter_harness.h"
#include "test.h"

#define T "2026-11-25T04:00:01.000000001Z stdout F "

static char *run(const char *filters, const char *lines, dr_metrics *m)
{
    char *out = dt_filter_run_lines(filters, lines, m);
    char *bodies = out ? dt_filter_bodies(out) : NULL;
    free(out);
    return bodies;
}

void test_redact_builtins(void)
{
    const char *lines =
        T "user ann.lee+x@mail.example.com logged in from 10.1.2.3\n" T
          "card 4111 1111 1111 1111 ok\n" T "card 4111-1111-1111-1112 bad check digit\n" T
          "ts 1764043238123456789 id 5555555555554444\n" T
          "Authorization: Bearer abc.DEF-123_~+/= next\n" T
          "key AKIAIOSFODNN7EXAMPLE and XAKIAIOSFODNN7EXAMPLE\n" T
          "tok eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-_x end\n" T
          "ips 1.2.3.4.5 999.1.1.1 256.0.0.1 8.8.8.8.\n" T "nothing to see\n";
    dr_metrics *m = dr_metrics_new();
    char *bodies = run("  - {name: r, type: redact, builtins: [email, ipv4, credit_card, "
                       "bearer_token, aws_access_key, jwt]}\n",
                       lines, m);
    CHECK_STR(bodies, "\"message\":\"user [REDACTED] logged in from [REDACTED]\"\n"
                      "\"message\":\"card [REDACTED] ok\"\n"
                      "\"message\":\"card 4111-1111-1111-1112 bad check digit\"\n"
                      "\"message\":\"ts 1764043238123456789 id [REDACTED]\"\n"
                      "\"message\":\"Authorization: Bearer [REDACTED] next\"\n"
                      "\"message\":\"key [REDACTED] and XAKIAIOSFODNN7EXAMPLE\"\n"
                      "\"message\":\"tok [REDACTED] end\"\n"
                      "\"message\":\"ips 1.2.3.4.5 999.1.1.1 256.0.0.1 [REDACTED].\"\n"
                      "\"message\":\"nothing to see\"\n");
    CHECK_INT(dt_metric(m, "drover_filter_redacted_records_total{plugin=\"redact\",name=\"r\"}"),
              7);
    free(bodies);
    dr_metrics_free(m);
}

void test_redact_card_numbers(void)
{
    /* the networks' prefixes, with and without separators; ids of the
     * right length and a valid check digit but no card prefix stay */
    const char *lines =
        T "amex 378282246310005\n" T "mc2 2223003122003222\n" T "discover 6011111111111117\n" T
          "diners 30569309025904\n" T "id 1234567812345670\n" T "short 4111111111111\n" T
          "long 41111111111111111111\n";
    char *bodies = run("  - {name: r, type: redact, builtins: credit_card}\n", lines, NULL);
    CHECK_STR(bodies, "\"message\":\"amex [REDACTED]\"\n"
                      "\"message\":\"mc2 [REDACTED]\"\n"
                      "\"message\":\"discover [REDACTED]\"\n"
                      "\"message\":\"diners [REDACTED]\"\n"
                      "\"message\":\"id 1234567812345670\"\n"
                      "\"message\":\"short 4111111111111\"\n"
                      "\"message\":\"long 41111111111111111111\"\n");
    free(bodies);
}

void test_redact_patterns_and_keys(void)
{
    char *bodies = run("  - {name: r, type: redact, patterns: ['(?i)password=\\K\\S+', 'secret'], "
                       "replacement: '***'}\n",
                       T "login PASSWORD=hunter2 secret secrets\n", NULL);
    CHECK_STR(bodies, "\"message\":\"login PASSWORD=*** *** ***s\"\n");
    free(bodies);
    /* each pattern works on what the ones before left */
    bodies = run("  - {name: r, type: redact, patterns: [cat, at], replacement: X}\n",
                 T "cat hat\n", NULL);
    CHECK_STR(bodies, "\"message\":\"X hX\"\n");
    free(bodies);
    /* an empty replacement removes; empty matches are ignored */
    dr_metrics *m = dr_metrics_new();
    bodies = run("  - {name: r, type: redact, patterns: ['x+', 'z*'], replacement: ''}\n",
                 T "axxbx\n" T "abc\n", m);
    CHECK_STR(bodies, "\"message\":\"ab\"\n\"message\":\"abc\"\n");
    CHECK_INT(dt_metric(m, "drover_filter_redacted_records_total{plugin=\"redact\",name=\"r\"}"),
              1);
    free(bodies);
    dr_metrics_free(m);
    /* other keys: a field an earlier filter set; missing keys are fine */
    bodies = run("  - {type: modify, operations: ['copy message user']}\n"
                 "  - {name: r, type: redact, keys: [user, absent], builtins: email}\n",
                 T "from a@b.io\n", NULL);
    CHECK_STR(bodies, "\"message\":\"from a@b.io\",\"user\":\"from [REDACTED]\"\n");
    free(bodies);
}

void test_redact_on_error(void)
{
    const char *line = T "x@y.io aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\n";
    static const struct {
        const char *mode;
        const char *want;
        int dropped;
    } cases[] = {
        {"mask", "\"message\":\"[REDACTED]\"\n", -1},
        {"keep", "\"message\":\"[REDACTED] aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\"\n", -1},
        {"drop", "", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char filters[256];
        snprintf(filters, sizeof filters,
                 "  - {name: r, type: redact, builtins: email, patterns: ['(a+)+$'], "
                 "on_error: %s}\n",
                 cases[i].mode);
        dr_metrics *m = dr_metrics_new();
        char *bodies = run(filters, line, m);
        CHECK_STR(bodies, cases[i].want);
        CHECK_INT(dt_metric(m, "drover_filter_regex_errors_total{plugin=\"redact\",name=\"r\"}"),
                  1);
        CHECK_INT(dt_metric(m, "drover_dropped_records_total{plugin=\"redact\",name=\"r\","
                               "reason=\"redact_error\"}"),
                  cases[i].dropped);
        free(bodies);
        dr_metrics_free(m);
    }
}

static void expect_refused(const char *options, const char *want)
{
    char filters[512];
    snprintf(filters, sizeof filters, "  - {name: r, type: redact, %s}\n", options);
    char *errors = dt_filter_config_errors(filters);
    if (CHECK(errors != NULL) && !CHECK(strstr(errors, want) != NULL))
        fprintf(stderr, "    errors: %s    want: %s\n", errors, want);
    free(errors);
}

void test_redact_config_errors(void)
{
    expect_refused("keys: [message]",
                   "filter r: give at least one pattern in `patterns` or `builtins`\n");
    expect_refused("builtins: [email, phone]",
                   "filter r: builtins[1]: unknown pattern \"phone\" (known: email, ipv4, "
                   "credit_card, bearer_token, aws_access_key, jwt)\n");
    expect_refused("builtins: email, keys: [message, stream]",
                   "filter r: keys[1]: \"stream\" cannot be changed");
    expect_refused("builtins: email, keys: [kubernetes.pod]",
                   "filter r: keys[0]: \"kubernetes.pod\" cannot be changed");
    expect_refused("builtins: email, keys: []", "filter r: keys: give at least one key\n");
    expect_refused("patterns: [ok, '[z-a]']",
                   "filter r: patterns[1]: invalid regex \"[z-a]\" at offset 3: range out of "
                   "order in character class\n");
    expect_refused("builtins: email, on_error: ignore", "on_error");
}
