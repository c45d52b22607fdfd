/*
 * JSON string escaping and RFC 3339 timestamps.
 *
 * Both run once or more for every record an output writes, so they avoid
 * libc's locale-aware and time-zone-aware routines and do their own digit
 * work. The string escaper copies runs of bytes that need no escaping with a
 * single memcpy and finds the end of such runs eight bytes at a time.
 */
#include "json.h"

#include <stdbool.h>
#include <string.h>

#include "drover/plugin.h"

/* ---- output helpers --------------------------------------------------------- */

/* Appends n bytes; the capacity check is inline because it is nearly always
 * satisfied and this is called once per run and per escape. */
static inline int put(dr_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (b->cap - b->len < n && dr_buf_reserve(b, n) < 0)
        return DR_ENOMEM;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

/* ---- finding plain bytes ------------------------------------------------------ */

/* Bytes that end a plain run: controls, '"', '\\' and everything >= 0x80
 * (the start of a multi-byte sequence, which must be validated). */
static inline bool stops_run(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\' || c >= 0x80;
}

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Nonzero when any of the eight bytes in w stops a plain run. The classic
 * "has a zero byte" trick: (v - ONES) & ~v & HIGHS is nonzero exactly when v
 * has a zero byte, and (w - n*ONES) & ~w & HIGHS when some byte is below n. */
static inline uint64_t word_stops_run(uint64_t w)
{
    uint64_t quote = w ^ (ONES * '"');
    uint64_t bslash = w ^ (ONES * '\\');
    uint64_t ctrl = (w - ONES * 0x20) & ~w;
    uint64_t q = (quote - ONES) & ~quote;
    uint64_t bs = (bslash - ONES) & ~bslash;
    return (ctrl | q | bs | w) & HIGHS;
}

/* Returns the first byte at or after p that stops a plain run, or end. */
static const unsigned char *skip_plain(const unsigned char *p, const unsigned char *end)
{
    while (end - p >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        if (word_stops_run(w))
            break;
        p += 8;
    }
    while (p < end && !stops_run(*p))
        p++;
    return p;
}

/* ---- UTF-8 ---------------------------------------------------------------------- */

/* Looks at the sequence starting at p (whose first byte is >= 0x80). Returns
 * its length when it is well-formed UTF-8, or 0 after setting *bad to the
 * length of its maximal invalid subpart (the bytes that one U+FFFD
 * replaces, as the Unicode standard and the WHATWG decoder count them: the
 * lead byte plus every following byte that could still have continued a
 * valid sequence). The second-byte ranges exclude overlong forms (C0, C1,
 * E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code points above
 * U+10FFFF (F4 90.., F5..FF). */
static size_t utf8_sequence(const unsigned char *p, const unsigned char *end, size_t *bad)
{
    unsigned lead = p[0];
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the next byte */
    size_t need;                   /* continuation bytes after the lead */

    if (lead >= 0xC2 && lead <= 0xDF) {
        need = 1;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        need = 2;
        if (lead == 0xE0)
            lo = 0xA0;
        else if (lead == 0xED)
            hi = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        need = 3;
        if (lead == 0xF0)
            lo = 0x90;
        else if (lead == 0xF4)
            hi = 0x8F;
    } else {
        *bad = 1;
        return 0;
    }

    size_t avail = (size_t)(end - p);
    size_t i = 1;
    for (; i <= need; i++) {
        if (i >= avail || p[i] < lo || p[i] > hi) {
            *bad = i;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return i;
}

/* ---- escaping ------------------------------------------------------------------- */

static int put_escape(dr_buf *b, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    char e[6] = {'\\', 0, 0, 0, 0, 0};
    size_t n = 2;

    switch (c) {
    case '"':
        e[1] = '"';
        break;
    case '\\':
        e[1] = '\\';
        break;
    case '\n':
        e[1] = 'n';
        break;
    case '\t':
        e[1] = 't';
        break;
    case '\r':
        e[1] = 'r';
        break;
    case '\b':
        e[1] = 'b';
        break;
    case '\f':
        e[1] = 'f';
        break;
    default:
        e[1] = 'u';
        e[2] = '0';
        e[3] = '0';
        e[4] = hex[c >> 4];
        e[5] = hex[c & 15];
        n = 6;
    }
    return put(b, e, n);
}

long dr_json_string(dr_buf *b, const char *s, size_t n)
{
    static const char replacement[3] = {'\xEF', '\xBF', '\xBD'}; /* U+FFFD */
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *end = p + n;
    size_t start_len = b->len;
    long replaced = 0;

    /* Most strings need no escaping: reserve for that case once. */
    if (dr_buf_reserve(b, n + 2) < 0)
        return DR_ENOMEM;
    b->p[b->len++] = '"';

    /* [run, p) is a stretch of bytes that are copied as they are: plain
     * ASCII and well-formed multi-byte sequences. */
    const unsigned char *run = p;
    while (p < end) {
        p = skip_plain(p, end);
        if (p == end)
            break;
        size_t bad = 0;
        if (*p >= 0x80) {
            size_t ok = utf8_sequence(p, end, &bad);
            if (ok) {
                p += ok;
                continue;
            }
        }
        if (put(b, run, (size_t)(p - run)) < 0)
            goto nomem;
        if (bad) {
            if (put(b, replacement, sizeof replacement) < 0)
                goto nomem;
            replaced++;
            p += bad;
        } else {
            if (put_escape(b, *p) < 0)
                goto nomem;
            p++;
        }
        run = p;
    }
    if (put(b, run, (size_t)(p - run)) < 0 || put(b, "\"", 1) < 0)
        goto nomem;
    return replaced;

nomem:
    b->len = start_len;
    return DR_ENOMEM;
}

/* ---- calendar ------------------------------------------------------------------- */

/* Proleptic Gregorian calendar, counted in eras of 400 years (146097 days)
 * with years starting on March 1 so that the leap day is the last day of the
 * year. Exact for every int64 nanosecond timestamp and for years 0..9999. */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b < 0) ? q - 1 : q;
}

static void civil_from_days(int64_t days, int *year, unsigned *month, unsigned *day)
{
    days += 719468; /* 0000-03-01 to 1970-01-01 */
    int64_t era = floor_div(days, 146097);
    unsigned doe = (unsigned)(days - era * 146097);                       /* [0, 146096] */
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    unsigned mp = (5 * doy + 2) / 153;                                    /* March = 0 */
    *day = doy - (153 * mp + 2) / 5 + 1;
    *month = mp < 10 ? mp + 3 : mp - 9;
    *year = (int)(yoe + era * 400 + (*month <= 2));
}

static int64_t days_from_civil(int year, unsigned month, unsigned day)
{
    year -= month <= 2;
    int64_t era = floor_div(year, 400);
    unsigned yoe = (unsigned)(year - era * 400);
    unsigned mp = month > 2 ? month - 3 : month + 9;
    unsigned doy = (153 * mp + 2) / 5 + day - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool is_leap(int year)
{
    return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
}

static unsigned days_in_month(int year, unsigned month)
{
    static const unsigned char len[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return month == 2 && is_leap(year) ? 29 : len[month];
}

/* ---- formatting ----------------------------------------------------------------- */

static char *put_digits(char *out, unsigned v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return out + width;
}

size_t dr_format_rfc3339nano(int64_t ns, char *out)
{
    /* Floor division, so 1969 instants count forward from the second
     * before. (Computed from the remainder: secs * 10^9 could overflow.) */
    int64_t secs = ns / 1000000000;
    int64_t frac = ns % 1000000000;
    if (frac < 0) {
        frac += 1000000000;
        secs--;
    }
    int64_t days = floor_div(secs, 86400);
    unsigned sod = (unsigned)(secs - days * 86400);
    int year;
    unsigned month, day;
    civil_from_days(days, &year, &month, &day);

    char *p = out;
    p = put_digits(p, (unsigned)year, 4); /* int64 ns spans years 1677..2262 */
    *p++ = '-';
    p = put_digits(p, month, 2);
    *p++ = '-';
    p = put_digits(p, day, 2);
    *p++ = 'T';
    p = put_digits(p, sod / 3600, 2);
    *p++ = ':';
    p = put_digits(p, sod / 60 % 60, 2);
    *p++ = ':';
    p = put_digits(p, sod % 60, 2);
    *p++ = '.';
    p = put_digits(p, (unsigned)frac, 9);
    *p++ = 'Z';
    *p = '\0';
    return (size_t)(p - out);
}

/* ---- parsing -------------------------------------------------------------------- */

/* Reads exactly `width` decimal digits at s[*i]. */
static bool get_digits(const char *s, size_t n, size_t *i, int width, unsigned *v)
{
    if (n - *i < (size_t)width)
        return false;
    unsigned x = 0;
    for (int k = 0; k < width; k++) {
        unsigned d = (unsigned char)s[*i + (size_t)k] - '0';
        if (d > 9)
            return false;
        x = x * 10 + d;
    }
    *i += (size_t)width;
    *v = x;
    return true;
}

static bool get_char(const char *s, size_t n, size_t *i, char c)
{
    if (*i >= n || s[*i] != c)
        return false;
    (*i)++;
    return true;
}

/* ".ddd...": at least one digit; digits past the ninth are read and ignored. */
static bool get_fraction(const char *s, size_t n, size_t *i, unsigned *nanos)
{
    *nanos = 0;
    if (*i >= n || s[*i] != '.')
        return true;
    (*i)++;
    size_t start = *i;
    unsigned v = 0;
    int digits = 0;
    while (*i < n && (unsigned)((unsigned char)s[*i] - '0') <= 9) {
        if (digits < 9) {
            v = v * 10 + (unsigned)(s[*i] - '0');
            digits++;
        }
        (*i)++;
    }
    if (*i == start)
        return false;
    for (; digits < 9; digits++)
        v *= 10;
    *nanos = v;
    return true;
}

/* "Z", "z", "+hh:mm" or "-hh:mm", as seconds east of UTC. */
static bool get_offset(const char *s, size_t n, size_t *i, int *offset)
{
    if (*i >= n)
        return false;
    char c = s[(*i)++];
    if (c == 'Z' || c == 'z') {
        *offset = 0;
        return true;
    }
    if (c != '+' && c != '-')
        return false;
    unsigned hh, mm;
    if (!get_digits(s, n, i, 2, &hh) || !get_char(s, n, i, ':') || !get_digits(s, n, i, 2, &mm))
        return false;
    if (hh > 23 || mm > 59)
        return false;
    int off = (int)(hh * 3600 + mm * 60);
    *offset = c == '-' ? -off : off;
    return true;
}

int dr_parse_rfc3339(const char *s, size_t n, int64_t *ns)
{
    size_t i = 0;
    unsigned year, month, day, hour, min, sec, nanos;
    int offset;

    if (!get_digits(s, n, &i, 4, &year) || !get_char(s, n, &i, '-') ||
        !get_digits(s, n, &i, 2, &month) || !get_char(s, n, &i, '-') ||
        !get_digits(s, n, &i, 2, &day))
        return DR_EINVAL;
    if (i >= n || (s[i] != 'T' && s[i] != 't'))
        return DR_EINVAL;
    i++;
    if (!get_digits(s, n, &i, 2, &hour) || !get_char(s, n, &i, ':') ||
        !get_digits(s, n, &i, 2, &min) || !get_char(s, n, &i, ':') ||
        !get_digits(s, n, &i, 2, &sec) || !get_fraction(s, n, &i, &nanos) ||
        !get_offset(s, n, &i, &offset) || i != n)
        return DR_EINVAL;

    /* Second 60 is a leap second (RFC 3339 allows it); it is counted as the
     * first second of the next minute, as POSIX time has no room for it. */
    if (month < 1 || month > 12 || day < 1 || day > days_in_month((int)year, month) || hour > 23 ||
        min > 59 || sec > 60)
        return DR_EINVAL;

    int64_t secs =
        days_from_civil((int)year, month, day) * 86400 + hour * 3600 + min * 60 + sec - offset;
    /* Before 1970 the fraction is taken from the next second up, so that
     * the earliest representable instant does not overflow on the way. */
    int64_t frac = nanos;
    if (secs < 0 && frac > 0) {
        secs++;
        frac -= 1000000000;
    }
    int64_t out;
    if (__builtin_mul_overflow(secs, (int64_t)1000000000, &out) ||
        __builtin_add_overflow(out, frac, &out))
        return DR_EINVAL; /* outside 1677..2262 */
    *ns = out;
    return 0;
}
