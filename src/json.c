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
        uint64_t stops = word_stops_run(w);
        if (stops) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            /* The tricks above can flag a byte wrongly, but only one after
             * a byte flagged rightly (the borrow travels upward), so the
             * lowest flag is exact. */
            return p + (__builtin_ctzll(stops) >> 3);
#else
            break;
#endif
        }
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

/* The one-letter escapes; the other control characters become \u00XX. */
static const char short_escape[0x60] = {
    ['"'] = '"',  ['\\'] = '\\', ['\n'] = 'n', ['\t'] = 't',
    ['\r'] = 'r', ['\b'] = 'b',  ['\f'] = 'f',
};

static int put_escape(dr_buf *b, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    if (b->cap - b->len < 6 && dr_buf_reserve(b, 6) < 0)
        return DR_ENOMEM;
    char *o = b->p + b->len;
    o[0] = '\\';
    if (short_escape[c]) {
        o[1] = short_escape[c];
        b->len += 2;
    } else {
        memcpy(o + 1, "u00", 3);
        o[4] = hex[c >> 4];
        o[5] = hex[c & 15];
        b->len += 6;
    }
    return 0;
}

/* Skips well-formed multi-byte sequences: text in most scripts other than
 * Latin is long runs of them. */
static const unsigned char *skip_utf8(const unsigned char *p, const unsigned char *end)
{
    size_t bad, ok;
    while (p < end && *p >= 0x80 && (ok = utf8_sequence(p, end, &bad)) > 0)
        p += ok;
    return p;
}

long dr_json_string(dr_buf *b, const char *s, size_t n)
{
    static const char replacement[3] = {'\xEF', '\xBF', '\xBD'}; /* U+FFFD */
    size_t start_len = b->len;
    long replaced = 0;

    /* Most strings need no escaping: reserve for that case once. */
    if (dr_buf_reserve(b, n + 2) < 0)
        return DR_ENOMEM;
    b->p[b->len++] = '"';
    if (n == 0) {
        b->p[b->len++] = '"';
        return 0;
    }

    /* [run, p) is a stretch of bytes that are copied as they are: plain
     * ASCII and well-formed multi-byte sequences. */
    const unsigned char *p = (const unsigned char *)s, *end = p + n, *run = p;
    while (p < end) {
        p = skip_plain(p, end);
        if (p < end && *p >= 0x80)
            p = skip_utf8(p, end);
        if (p == end)
            break;
        if (*p < 0x80 && !stops_run(*p))
            continue; /* back to plain ASCII after multi-byte text */

        if (put(b, run, (size_t)(p - run)) < 0)
            goto nomem;
        size_t bad;
        if (*p >= 0x80) {
            utf8_sequence(p, end, &bad); /* invalid, or skip_utf8 had taken it */
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

/* ---- sanitising ------------------------------------------------------------------ */

/* Returns the first byte at or after p that is not ASCII, or end. */
static const unsigned char *skip_ascii(const unsigned char *p, const unsigned char *end)
{
    while (end - p >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        if (w & HIGHS)
            break;
        p += 8;
    }
    while (p < end && *p < 0x80)
        p++;
    return p;
}

long dr_utf8_sanitize(dr_buf *b, const char *s, size_t n)
{
    static const char replacement[3] = {'\xEF', '\xBF', '\xBD'}; /* U+FFFD */
    size_t start_len = b->len;
    long replaced = 0;
    if (dr_buf_reserve(b, n) < 0)
        return DR_ENOMEM;
    /* [run, p) is copied as it is: ASCII and well-formed sequences. */
    const unsigned char *p = (const unsigned char *)s, *end = p + n, *run = p;
    while (p < end) {
        p = skip_utf8(skip_ascii(p, end), end);
        if (p == end || *p < 0x80)
            continue;
        size_t bad;
        utf8_sequence(p, end, &bad);
        if (put(b, run, (size_t)(p - run)) < 0 || put(b, replacement, sizeof replacement) < 0)
            goto nomem;
        replaced++;
        p += bad;
        run = p;
    }
    if (put(b, run, (size_t)(p - run)) < 0)
        goto nomem;
    return replaced;

nomem:
    b->len = start_len;
    return DR_ENOMEM;
}

size_t dr_utf8_valid_prefix(const char *s, size_t n)
{
    const unsigned char *start = (const unsigned char *)s, *p = start, *end = p + n;
    const unsigned char *q;
    while (p < end && (q = skip_utf8(skip_ascii(p, end), end)) != p)
        p = q;
    return (size_t)(p - start);
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

static const char digit_pairs[] = /* "00" to "99" */
    "00010203040506070809"
    "10111213141516171819"
    "20212223242526272829"
    "30313233343536373839"
    "40414243444546474849"
    "50515253545556575859"
    "60616263646566676869"
    "70717273747576777879"
    "80818283848586878889"
    "90919293949596979899";

static inline char *put2(char *p, unsigned v)
{
    memcpy(p, digit_pairs + 2 * v, 2);
    return p + 2;
}

size_t dr_format_rfc3339nano(int64_t ns, char *out)
{
    /* Floor division, so 1969 instants count forward from the second
     * before. (Computed from the remainder: secs * 10^9 could overflow.) */
    int64_t secs = ns / 1000000000;
    int64_t rem = ns % 1000000000;
    if (rem < 0) {
        rem += 1000000000;
        secs--;
    }
    int64_t days = floor_div(secs, 86400);
    unsigned sod = (unsigned)(secs - days * 86400);
    unsigned frac = (unsigned)rem;
    int year; /* int64 nanoseconds span the years 1677 to 2262 */
    unsigned month, day;
    civil_from_days(days, &year, &month, &day);

    char *p = out;
    p = put2(p, (unsigned)year / 100);
    p = put2(p, (unsigned)year % 100);
    *p++ = '-';
    p = put2(p, month);
    *p++ = '-';
    p = put2(p, day);
    *p++ = 'T';
    p = put2(p, sod / 3600);
    *p++ = ':';
    p = put2(p, sod / 60 % 60);
    *p++ = ':';
    p = put2(p, sod % 60);
    *p++ = '.';
    *p++ = (char)('0' + frac / 100000000);
    frac %= 100000000;
    p = put2(p, frac / 1000000);
    p = put2(p, frac / 10000 % 100);
    p = put2(p, frac / 100 % 100);
    p = put2(p, frac % 100);
    *p++ = 'Z';
    *p = '\0';
    return (size_t)(p - out);
}

/* ---- parsing -------------------------------------------------------------------- */

/* The two decimal digits at p, or -1. */
static inline int two_digits(const char *p)
{
    unsigned hi = (unsigned)((unsigned char)p[0] - '0');
    unsigned lo = (unsigned)((unsigned char)p[1] - '0');
    return hi > 9 || lo > 9 ? -1 : (int)(hi * 10 + lo);
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

/* "Z", "z", "+hh:mm" or "-hh:mm" ending the string, as seconds east of UTC. */
static bool get_offset(const char *s, size_t n, size_t i, int *offset)
{
    if (n - i == 1 && (s[i] == 'Z' || s[i] == 'z')) {
        *offset = 0;
        return true;
    }
    if (n - i != 6 || (s[i] != '+' && s[i] != '-') || s[i + 3] != ':')
        return false;
    int hh = two_digits(s + i + 1), mm = two_digits(s + i + 4);
    if (hh < 0 || hh > 23 || mm < 0 || mm > 59)
        return false;
    int off = hh * 3600 + mm * 60;
    *offset = s[i] == '-' ? -off : off;
    return true;
}

int dr_parse_rfc3339(const char *s, size_t n, int64_t *ns)
{
    /* "YYYY-MM-DDTHH:MM:SS" has fixed places; then the optional fraction
     * and the offset, which must end the string. */
    if (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' ||
        s[16] != ':')
        return DR_EINVAL;
    int century = two_digits(s), yy = two_digits(s + 2), month = two_digits(s + 5),
        day = two_digits(s + 8), hour = two_digits(s + 11), min = two_digits(s + 14),
        sec = two_digits(s + 17);
    if ((century | yy | month | day | hour | min | sec) < 0)
        return DR_EINVAL;
    int year = century * 100 + yy;

    size_t i = 19;
    unsigned nanos;
    int offset;
    if (!get_fraction(s, n, &i, &nanos) || !get_offset(s, n, i, &offset))
        return DR_EINVAL;

    /* Second 60 is a leap second (RFC 3339 allows it); it is counted as the
     * first second of the next minute, as POSIX time has no room for it. */
    if (month < 1 || month > 12 || day < 1 || day > (int)days_in_month(year, (unsigned)month) ||
        hour > 23 || min > 59 || sec > 60)
        return DR_EINVAL;

    int64_t secs = days_from_civil(year, (unsigned)month, (unsigned)day) * 86400 + hour * 3600 +
                   min * 60 + sec - offset;
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
