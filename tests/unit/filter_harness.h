/*
 * Running filters end to end in unit tests: a oneshot agent with the tail
 * input over container logs the test writes, the filters under test, and
 * the file output, whose lines the test reads back.
 */
#ifndef DROVER_FILTER_HARNESS_H
#define DROVER_FILTER_HARNESS_H

#include "metrics.h"

/* A fresh directory for one run's logs, data and output. */
const char *dt_filter_root(void);

/* Writes the CRI log of one container (pod `pod` in namespace `ns`, container
 * "app") under root: `lines` is its text, such as
 * "2026-11-25T04:00:01.000000001Z stdout F hello\n". */
void dt_filter_add_log(const char *root, const char *ns, const char *pod, const char *lines);

/* Runs the agent over root with `filters` (YAML list items, such as
 * "  - {name: g, type: grep, regex: ['message ^a']}\n"). Returns the output
 * file's content, or NULL when the configuration was refused; then *errors
 * (when errors is not NULL) holds the errors, one per line. Caller frees. */
char *dt_filter_run(const char *root, const char *filters, dr_metrics *m, char **errors);

/* The same with more outputs (YAML list items) beside `out`. */
char *dt_filter_run_outputs(const char *root, const char *filters, const char *outputs,
                            dr_metrics *m, char **errors);

/* One call for one container of pod shop/web-1: the output (or NULL). */
char *dt_filter_run_lines(const char *filters, const char *lines, dr_metrics *m);

/* The configuration errors of `filters` (caller frees), or NULL when it is
 * accepted. */
char *dt_filter_config_errors(const char *filters);

/* The records of an output, one per line, each cut to what lies between
 * "message": and the kubernetes object: "\"message\":\"a\",\"f\":\"x\"".
 * Caller frees. */
char *dt_filter_bodies(const char *out);

/* The value of a series in the exposition, such as
 * "drover_dropped_records_total{plugin=\"grep\",name=\"g\",reason=\"grep\"}",
 * or -1 when it is not there. */
long long dt_metric(dr_metrics *m, const char *series);

#endif
