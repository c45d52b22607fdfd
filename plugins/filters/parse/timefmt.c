/*
 * Time formats of the parse filter (see timefmt.h).
 *
 * A strptime format is checked when the configuration is loaded, so that a
 * typo in it is an error at start rather than a time error on every record.
 * glibc's strptime has no conversion for a fraction of a second, so a
 * format with %L (Fluent Bit's name) or %f (Vector's) is split there: the
 * part before it is read by strptime, then the digits by us, then the rest
 * by strptime again, into the same struct tm.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "timefmt.h"

/* The conversions glibc's strptime knows, except %s (see below). */
static const char strptime_conversions[] = "%ABCDFGHIMRSTUVWXYZabcdeghjklmnprtuwxyz";

/* The longest time value read with strptime: it needs a NUL-terminated
 * copy, and no sensible time is longer. */
#define MAX_STRPTIME_VALUE 128

/* tm_year when the value had no year. No conversion gives it (%Y reads at
 * most 4 digits), and glibc's arithmetic on the year cannot overflow with it. */
#define YEAR_UNSET (-1000000)

static const struct {
    const char *name;
    dr_time_kind kind;
} named_formats[] = {
    {"rfc3339", DR_TIME_RFC3339},
    {"unix", DR_TIME_UNIX},
    {"unix_ms", DR_TIME_UNIX_MS},
    {"unix_ns", DR_TIME_UNIX_NS},
};

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Checks one conversion at spec[i] (just after a '%'): optional flags and
 * width as glibc reads them, an optional E or O modifier, then the
 * conversion. Sets *end after it and *is_fraction for %L and %f. */
static bool check_conversion(const char *spec, size_t i, size_t *end, bool *is_fraction,
                             dr_error *err)
{
    size_t at = i - 1; /* the '%', for messages */
    while (spec[i] && strchr("-_0^#", spec[i]))
        i++;
    while (is_digit(spec[i]))
        i++;
    if (spec[i] == 'E' || spec[i] == 'O')
        i++;
    char c = spec[i];
    *is_fraction = c == 'L' || c == 'f';
    *end = i + 1;
    if (c == 's') {
        /* glibc turns %s into local time, which then reads as UTC here */
        dr_error_set(err, "time_format: %%s is not supported: use time_format: unix");
        return false;
    }
    if (c == '\0' || (!*is_fraction && !strchr(strptime_conversions, c))) {
        dr_error_set(err,
                     "time_format: \"%s\": unknown conversion \"%.*s\" at offset %zu (strptime "
                     "conversions such as %%Y %%m %%d %%H %%M %%S %%b %%z, and %%L or %%f for a "
                     "fraction of a second)",
                     spec, (int)(*end - at), spec + at, at);
        return false;
    }
    return true;
}

/* Splits a strptime format at its fraction, after checking every
 * conversion. */
static int init_strptime(dr_time_format *tf, const char *spec, dr_error *err)
{
    size_t conversions = 0, fraction_at = 0, fraction_end = 0;
    bool has_fraction = false;
    for (size_t i = 0; spec[i];) {
        if (spec[i] != '%') {
            i++;
            continue;
        }
        size_t end;
        bool is_fraction;
        if (!check_conversion(spec, i + 1, &end, &is_fraction, err))
            return DR_EINVAL;
        if (is_fraction && has_fraction) {
            dr_error_set(err, "time_format: \"%s\": more than one %%L or %%f", spec);
            return DR_EINVAL;
        }
        if (is_fraction) {
            has_fraction = true;
            fraction_at = i;
            fraction_end = end;
        }
        if (spec[i + 1] != '%')
            conversions++;
        i = end;
    }
    if (conversions == 0) {
        dr_error_set(err,
                     "time_format: \"%s\" is not rfc3339, unix, unix_ms, unix_ns or a strptime "
                     "format (such as \"%%d/%%b/%%Y:%%H:%%M:%%S %%z\")",
                     spec);
        return DR_EINVAL;
    }
    tf->kind = DR_TIME_STRPTIME;
    tf->before = strndup(spec, has_fraction ? fraction_at : strlen(spec));
    tf->after = has_fraction ? strdup(spec + fraction_end) : NULL;
    if (!tf->before || (has_fraction && !tf->after)) {
        dr_time_format_free(tf);
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    return 0;
}

int dr_time_format_init(dr_time_format *tf, const char *spec, dr_error *err)
{
    memset(tf, 0, sizeof *tf);
    for (size_t i = 0; i < sizeof named_formats / sizeof named_formats[0]; i++) {
        if (strcmp(spec, named_formats[i].name) == 0) {
            tf->kind = named_formats[i].kind;
            return 0;
        }
    }
    return init_strptime(tf, spec, err);
}

void dr_time_format_free(dr_time_format *tf)
{
    free(tf->before);
    free(tf->after);
    memset(tf, 0, sizeof *tf);
}

/* ---- Unix times ----------------------------------------------------------------- */

/* A decimal number [-]DIGITS[.DIGITS] of units of 10^exp nanoseconds (exp
 * 9 for seconds, 6 for milliseconds, 0 for nanoseconds): the fraction adds
 * the nanoseconds below the unit, and digits past the nanosecond are cut.
 * Integers only, so that no nanosecond is lost to a double's rounding. */
static int parse_unix(const char *s, size_t n, unsigned exp, int64_t *ns)
{
    size_t i = 0;
    bool negative = n > 0 && s[0] == '-';
    if (negative)
        i++;
    if (i == n || !is_digit(s[i]))
        return DR_EINVAL;
    uint64_t unit = 1;
    for (unsigned k = 0; k < exp; k++)
        unit *= 10;
    uint64_t whole = 0;
    for (; i < n && is_digit(s[i]); i++)
        if (__builtin_mul_overflow(whole, 10, &whole) ||
            __builtin_add_overflow(whole, (uint64_t)(s[i] - '0'), &whole))
            return DR_EINVAL;
    uint64_t frac = 0;
    if (i < n && s[i] == '.') {
        i++;
        if (i == n || !is_digit(s[i]))
            return DR_EINVAL;
        uint64_t place = unit;
        for (; i < n && is_digit(s[i]); i++) {
            place /= 10; /* 0 once past the nanosecond: the digit is cut */
            frac += (uint64_t)(s[i] - '0') * place;
        }
    }
    if (i != n)
        return DR_EINVAL; /* an exponent, a sign inside, spaces, ... */
    uint64_t mag;
    if (__builtin_mul_overflow(whole, unit, &mag) || __builtin_add_overflow(mag, frac, &mag))
        return DR_EINVAL;
    if (!negative) {
        if (mag > (uint64_t)INT64_MAX)
            return DR_EINVAL;
        *ns = (int64_t)mag;
        return 0;
    }
    if (mag > (uint64_t)INT64_MAX + 1)
        return DR_EINVAL;
    *ns = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    return 0;
}

/* ---- strptime -------------------------------------------------------------------- */

/* The digits of a fraction of a second at *p, as nanoseconds (digits past
 * the ninth are read and cut). False when there is no digit. */
static bool read_fraction(const char **p, int64_t *nanos)
{
    const char *s = *p;
    if (!is_digit(*s))
        return false;
    int64_t place = 100000000, v = 0;
    for (; is_digit(*s); s++) {
        v += (*s - '0') * place;
        place /= 10;
    }
    *p = s;
    *nanos = v;
    return true;
}

static int current_utc_year(void)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    return tm.tm_year;
}

static int parse_strptime(const dr_time_format *tf, const char *s, size_t n, int64_t *ns)
{
    char value[MAX_STRPTIME_VALUE];
    if (n >= sizeof value || memchr(s, '\0', n))
        return DR_EINVAL;
    memcpy(value, s, n);
    value[n] = '\0';

    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = YEAR_UNSET;
    tm.tm_mday = 1; /* a format without a day means the first, not the 0th */
    int64_t nanos = 0;
    const char *p = strptime(value, tf->before, &tm);
    if (p && tf->after) {
        if (!read_fraction(&p, &nanos))
            return DR_EINVAL;
        p = strptime(p, tf->after, &tm);
    }
    if (!p)
        return DR_EINVAL;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p)
        return DR_EINVAL;
    if (tm.tm_year == YEAR_UNSET)
        tm.tm_year = current_utc_year();
    /* timegm reads the fields as UTC (and resets tm_gmtoff): take the
     * offset %z found first */
    long offset = tm.tm_gmtoff;
    int64_t secs = (int64_t)timegm(&tm) - offset;
    if (secs < 0 && nanos > 0) {
        secs++; /* as dr_parse_rfc3339 does: no overflow at the low end */
        nanos -= 1000000000;
    }
    int64_t out;
    if (__builtin_mul_overflow(secs, (int64_t)1000000000, &out) ||
        __builtin_add_overflow(out, nanos, &out))
        return DR_EINVAL;
    *ns = out;
    return 0;
}

int dr_time_parse(const dr_time_format *tf, const char *s, size_t n, int64_t *ns)
{
    switch (tf->kind) {
    case DR_TIME_RFC3339:
        return dr_parse_rfc3339(s, n, ns);
    case DR_TIME_UNIX:
        return parse_unix(s, n, 9, ns);
    case DR_TIME_UNIX_MS:
        return parse_unix(s, n, 6, ns);
    case DR_TIME_UNIX_NS:
        return parse_unix(s, n, 0, ns);
    case DR_TIME_STRPTIME:
        return parse_strptime(tf, s, n, ns);
    }
    return DR_EINVAL;
}
