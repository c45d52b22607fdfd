/*
 * process_* self-metrics (CPU, memory, file descriptors, start time), as the
 * Prometheus client libraries expose them; see process_metrics.c.
 */
#ifndef DROVER_PROCESS_METRICS_H
#define DROVER_PROCESS_METRICS_H

#include "metrics.h"

/* Registers the process_* series in m and the hook that refreshes them at
 * each exposition. 0 or a negative DR_ code. */
int dr_process_metrics_register(dr_metrics *m);

/* The fields of /proc/<pid>/stat the metrics read. The second field (the
 * command name, in parentheses) may hold spaces and parentheses itself:
 * the fields after it are counted from its last ')'. */
typedef struct dr_proc_stat_fields {
    unsigned long long utime_ticks, stime_ticks; /* fields 14 and 15 */
    unsigned long long vsize_bytes;              /* 23 */
    long long rss_pages;                         /* 24 */
} dr_proc_stat_fields;

/* Parses the text of /proc/<pid>/stat. 0, or -1 when it is cut short or
 * malformed. */
int dr_proc_stat_parse(const char *text, dr_proc_stat_fields *out);

#endif
