/*
 * The route filter through a oneshot agent with two file outputs: `out`
 * (which the input's match feeds) and `errors` (which only routes reach).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter_harness.h"
#include "test.h"

static const char *const lines = "2026-11-25T04:00:01.000000001Z stdout F INFO a\n"
                                 "2026-11-25T04:00:02.000000001Z stderr F ERROR b\n"
                                 "2026-11-25T04:00:03.000000001Z stdout F INFO c\n"
                                 "2026-11-25T04:00:04.000000001Z stderr F ERROR d\n";

/* Runs one route configuration; returns the bodies of both outputs. */
static void run_route(const char *route_options, const char *data, char **out, char **errors_out,
                      dr_metrics *m)
{
    const char *root = dt_filter_root();
    dt_filter_add_log(root, "shop", "web-1", data);
    char filters[1024], outputs[1024], path[700];
    snprintf(filters, sizeof filters, "  - {name: r, type: route, %s}\n", route_options);
    snprintf(path, sizeof path, "%s/errors.ndjson", root);
    snprintf(outputs, sizeof outputs,
             "  - {name: errors, type: file, match: none-of-the-inputs, path: \"%s\"}\n", path);
    char *content = dt_filter_run_outputs(root, filters, outputs, m, NULL);
    *out = content ? dt_filter_bodies(content) : NULL;
    free(content);
    char *err_content = dt_read_file(path, NULL);
    *errors_out = dt_filter_bodies(err_content ? err_content : "");
    free(err_content);
}

static void expect_route(const char *options, const char *want_out, const char *want_errors)
{
    dr_metrics *m = dr_metrics_new();
    char *out = NULL, *errors = NULL;
    run_route(options, lines, &out, &errors, m);
    bool ok = CHECK_STR(out, want_out);
    ok = CHECK_STR(errors, want_errors) && ok;
    if (!ok)
        fprintf(stderr, "    with %s\n", options);
    free(out);
    free(errors);
    dr_metrics_free(m);
}

void test_route_moves_matching_records(void)
{
    /* some match: they go on in a chunk of their own, to `errors` only */
    expect_route("outputs: [errors], when: ['message ^ERROR']",
                 "\"message\":\"INFO a\"\n\"message\":\"INFO c\"\n",
                 "\"message\":\"ERROR b\"\n\"message\":\"ERROR d\"\n");
    /* all match: the chunk itself is routed */
    expect_route("outputs: [errors]", "",
                 "\"message\":\"INFO a\"\n\"message\":\"ERROR b\"\n"
                 "\"message\":\"INFO c\"\n\"message\":\"ERROR d\"\n");
    /* none match: nothing changes */
    expect_route("outputs: [errors], when: ['message ^FATAL']",
                 "\"message\":\"INFO a\"\n\"message\":\"ERROR b\"\n"
                 "\"message\":\"INFO c\"\n\"message\":\"ERROR d\"\n",
                 "");
}

void test_route_copies(void)
{
    expect_route("outputs: [errors], when: ['stream ^stderr$'], copy: true",
                 "\"message\":\"INFO a\"\n\"message\":\"ERROR b\"\n"
                 "\"message\":\"INFO c\"\n\"message\":\"ERROR d\"\n",
                 "\"message\":\"ERROR b\"\n\"message\":\"ERROR d\"\n");
    /* routed to an output the input feeds anyway: delivered once */
    expect_route("outputs: [out, errors], copy: true",
                 "\"message\":\"INFO a\"\n\"message\":\"ERROR b\"\n"
                 "\"message\":\"INFO c\"\n\"message\":\"ERROR d\"\n",
                 "\"message\":\"INFO a\"\n\"message\":\"ERROR b\"\n"
                 "\"message\":\"INFO c\"\n\"message\":\"ERROR d\"\n");
}

void test_route_split_keeps_fields_apart(void)
{
    /* a field set after the split exists only on the routed copy */
    const char *root = dt_filter_root();
    dt_filter_add_log(root, "shop", "web-1", lines);
    char path[700], outputs[1024];
    snprintf(path, sizeof path, "%s/errors.ndjson", root);
    snprintf(outputs, sizeof outputs,
             "  - {name: errors, type: file, match: none-of-the-inputs, path: \"%s\"}\n", path);
    dr_metrics *m = dr_metrics_new();
    char *content = dt_filter_run_outputs(
        root,
        "  - {name: m1, type: modify, operations: ['set level x']}\n"
        "  - {name: r, type: route, outputs: [errors], when: ['message ERROR'], copy: true}\n"
        "  - {name: m2, type: modify, operations: ['set seen yes']}\n",
        outputs, m, NULL);
    char *routed = dt_read_file(path, NULL);
    if (CHECK(content != NULL) && CHECK(routed != NULL)) {
        /* every record went through m2, the originals and the copies alike */
        CHECK(strstr(content, "\"message\":\"ERROR b\",\"level\":\"x\",\"seen\":\"yes\"") != NULL);
        CHECK(strstr(routed, "\"message\":\"ERROR b\",\"level\":\"x\",\"seen\":\"yes\"") != NULL);
        CHECK(strstr(routed, "INFO") == NULL);
    }
    CHECK_INT(dt_metric(m, "drover_filter_routed_records_total{plugin=\"route\",name=\"r\"}"), 2);
    free(content);
    free(routed);
    dr_metrics_free(m);
}

void test_route_config_errors(void)
{
    char *e = dt_filter_config_errors("  - {name: r, type: route, outputs: [nowhere]}\n");
    CHECK(e && strstr(e, "no output named \"nowhere\""));
    free(e);
    e = dt_filter_config_errors("  - {name: r, type: route}\n");
    CHECK(e && strstr(e, "outputs"));
    free(e);
    e = dt_filter_config_errors(
        "  - {name: r, type: route, outputs: [out], when: ['message (']}\n");
    CHECK(e && strstr(e, "when[0]"));
    free(e);
    e = dt_filter_config_errors(
        "  - {name: r, type: route, outputs: [out, out, out, out, out, out, out, out, out]}\n");
    CHECK(e && strstr(e, "1 to 8"));
    free(e);
}
