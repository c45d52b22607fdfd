/*
 * Times in parsed logs: the parse filter's `time_format`, read once from the
 * configuration and then applied to the time field of every record.
 *
 * The named formats are parsed exactly with integer arithmetic (a float
 * would lose the nanoseconds of a Unix time in seconds). Anything else is a
 * strptime(3) format (glibc's conversions, in the C locale), extended with
 * %L and %f for a fraction of a second, which strptime cannot read.
 */
#ifndef DROVER_PARSE_TIMEFMT_H
#define DROVER_PARSE_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>

#include "drover/plugin.h"

typedef enum {
    DR_TIME_RFC3339 = 0, /* 2026-11-25T04:10:38.123456789Z, or with an offset */
    DR_TIME_UNIX,        /* seconds since the epoch, with an optional fraction */
    DR_TIME_UNIX_MS,     /* milliseconds, likewise */
    DR_TIME_UNIX_NS,     /* nanoseconds, likewise (a fraction is cut) */
    DR_TIME_STRPTIME,
} dr_time_kind;

typedef struct dr_time_format {
    dr_time_kind kind;
    /* strptime: the format up to the fraction (%L or %f), or all of it
     * when it has none; then what follows the fraction (NULL without one).
     * Both owned. */
    char *before;
    char *after;
} dr_time_format;

/* Reads a time_format: "rfc3339", "unix", "unix_ms", "unix_ns" or a
 * strptime format (one with at least one % conversion). An unknown
 * conversion, %s (whose glibc version reads local time) or more than one
 * fraction is an error that err describes. 0, DR_EINVAL or DR_ENOMEM. */
int dr_time_format_init(dr_time_format *tf, const char *spec, dr_error *err);
void dr_time_format_free(dr_time_format *tf);

/* Parses s[0..n) (not NUL-terminated) into nanoseconds since the epoch.
 * The whole value must match the format (trailing whitespace aside for
 * strptime formats). Without %z a strptime time is UTC; without a year it
 * is in the current year (UTC), as syslog times are. 0, or DR_EINVAL when
 * the value does not match or lies outside what int64 nanoseconds hold
 * (1677..2262). */
int dr_time_parse(const dr_time_format *tf, const char *s, size_t n, int64_t *ns);

#endif
