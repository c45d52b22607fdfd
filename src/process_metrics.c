/*
 * The process's own resource metrics, named and computed as the Prometheus
 * client libraries' process collector does (so that dashboards and alerts
 * written for any exporter work on drover): CPU seconds, resident and
 * virtual memory, open and allowed file descriptors, start time.
 *
 * Read from /proc/self at each exposition (a metrics hook): a scrape every
 * few seconds costs a few small reads. A value that cannot be read keeps
 * its last reading rather than dropping to 0, which would look like a
 * counter reset.
 */
#include "process_metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct process_metrics {
    dr_gauge *cpu_seconds;
    dr_gauge *resident_bytes;
    dr_gauge *virtual_bytes;
    dr_gauge *open_fds;
    dr_gauge *max_fds;
    dr_gauge *start_time;
    long page_size;
    long ticks_per_second;
} process_metrics;

int dr_proc_stat_parse(const char *text, dr_proc_stat_fields *out)
{
    const char *p = strrchr(text, ')');
    if (!p)
        return -1;
    p++;
    /* after ')': state(3) ppid pgrp session tty_nr tpgid flags minflt
     * cminflt majflt cmajflt utime(14) stime(15) cutime cstime priority
     * nice num_threads itrealvalue starttime(22) vsize(23) rss(24) */
    unsigned long long v[21];
    char *end;
    while (*p == ' ')
        p++;
    if (*p == '\0')
        return -1;
    p++; /* the state, one character */
    for (int field = 4; field <= 24; field++) {
        while (*p == ' ')
            p++;
        if (*p == '\0')
            return -1;
        long long n = strtoll(p, &end, 10);
        if (end == p)
            return -1;
        v[field - 4] = (unsigned long long)n;
        if (field == 24)
            out->rss_pages = n;
        p = end;
    }
    out->utime_ticks = v[14 - 4];
    out->stime_ticks = v[15 - 4];
    out->vsize_bytes = v[23 - 4];
    return 0;
}

static int read_self_stat(dr_proc_stat_fields *st)
{
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return -1;
    char text[1024];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    return dr_proc_stat_parse(text, st);
}

static long count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

static void refresh(void *ctx)
{
    process_metrics *pm = ctx;
    dr_proc_stat_fields st;
    if (read_self_stat(&st) == 0) {
        dr_gauge_set(pm->cpu_seconds,
                     (double)(st.utime_ticks + st.stime_ticks) / (double)pm->ticks_per_second);
        dr_gauge_set(pm->resident_bytes, (double)st.rss_pages * (double)pm->page_size);
        dr_gauge_set(pm->virtual_bytes, (double)st.vsize_bytes);
    }
    long fds = count_open_fds();
    if (fds >= 0)
        dr_gauge_set(pm->open_fds, (double)fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        dr_gauge_set(pm->max_fds, rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur);
}

int dr_process_metrics_register(dr_metrics *m)
{
    static process_metrics pm; /* one per process, as what it measures */
    const char *none[] = {NULL};
    pm.page_size = sysconf(_SC_PAGESIZE);
    pm.ticks_per_second = sysconf(_SC_CLK_TCK);
    if (pm.page_size <= 0 || pm.ticks_per_second <= 0)
        return DR_ERR;
    pm.cpu_seconds = dr_metrics_read_counter(
        m, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", none);
    pm.resident_bytes = dr_metrics_gauge(m, "process_resident_memory_bytes",
                                         "Resident memory size in bytes.", none);
    pm.virtual_bytes =
        dr_metrics_gauge(m, "process_virtual_memory_bytes", "Virtual memory size in bytes.", none);
    pm.open_fds = dr_metrics_gauge(m, "process_open_fds", "Number of open file descriptors.", none);
    pm.max_fds =
        dr_metrics_gauge(m, "process_max_fds", "Maximum number of open file descriptors.", none);
    pm.start_time =
        dr_metrics_gauge(m, "process_start_time_seconds",
                         "Start time of the process since unix epoch in seconds.", none);
    /* Registered as drover starts, so its clock now is the start time to a
     * few milliseconds, without /proc/stat's boot time (hidden by systemd's
     * ProcSubset=pid, which the unit sets). */
    dr_gauge_set(pm.start_time, (double)dr_now_ns() / 1e9);
    refresh(&pm);
    return dr_metrics_add_hook(m, refresh, &pm);
}
