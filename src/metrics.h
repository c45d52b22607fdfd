/*
 * The self-metrics registry and its Prometheus text exposition (format
 * 0.0.4). Series are created once (get-or-create by name and labels, so a
 * config reload keeps counting where it was) and never removed; their number
 * is bounded by the configuration.
 */
#ifndef DROVER_METRICS_H
#define DROVER_METRICS_H

#include <stdint.h>

#include "buf.h"
#include "drover/plugin.h"

typedef struct dr_metrics dr_metrics;

/* DR_METRIC_READ_COUNTER: a counter whose value is a reading of a real
 * quantity that only grows (CPU seconds), set as a gauge is and exposed as
 * a counter. */
typedef enum { DR_METRIC_COUNTER, DR_METRIC_GAUGE, DR_METRIC_READ_COUNTER } dr_self_metric_kind;

dr_metrics *dr_metrics_new(void);
void dr_metrics_free(dr_metrics *m);

/* `labels` is a list of name/value pairs ending with NULL, such as
 * (const char *[]){"plugin", "tail", "name", "pods", NULL}. Values are
 * escaped on output. Returns the existing series when name and labels match.
 * A name registered with another type or help returns NULL. */
dr_counter *dr_metrics_counter(dr_metrics *m, const char *name, const char *help,
                               const char *const *labels);
dr_gauge *dr_metrics_gauge(dr_metrics *m, const char *name, const char *help,
                           const char *const *labels);
/* A DR_METRIC_READ_COUNTER series: set it with dr_gauge_set. */
dr_gauge *dr_metrics_read_counter(dr_metrics *m, const char *name, const char *help,
                                  const char *const *labels);

/* A hook run before every exposition (to refresh gauges that are cheaper to
 * compute on demand). Removed with the same fn and ctx. */
typedef void (*dr_metrics_hook)(void *ctx);
int dr_metrics_add_hook(dr_metrics *m, dr_metrics_hook fn, void *ctx);
void dr_metrics_remove_hook(dr_metrics *m, dr_metrics_hook fn, void *ctx);

/* Appends the text exposition: families in registration order, each with
 * # HELP and # TYPE, then its series. Returns 0 or DR_ENOMEM. */
int dr_metrics_render(dr_metrics *m, dr_buf *out);

/* Formats a sample value as Prometheus writes it: NaN, +Inf, -Inf,
 * integral values as plain integers, others in the shortest %g form that
 * reads back as the same double. `out` holds at least 32 bytes. */
void dr_format_double(char *out, size_t size, double v);

double dr_gauge_get(const dr_gauge *g);

#endif
