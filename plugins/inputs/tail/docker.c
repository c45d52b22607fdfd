/*
 * docker json-file log lines:
 *
 *     {"log":"some message\n","stream":"stdout","time":"2019-04-01T17:58:33.598656444Z"}
 *
 * One JSON object per line. Keys may come in any order and other keys may be
 * present ("attrs" with labels, for instance): their values are skipped, but
 * still checked to be JSON so that a damaged line is reported as such rather
 * than half-read. Docker splits lines longer than 16 KiB into several
 * objects; every piece but the last lacks the trailing "\n" in "log".
 *
 * Parsing is two passes over the line. The first checks the whole object and
 * notes where the "log", "stream" and "time" strings are; nothing is written.
 * Only when the line is good does the second pass unescape "log" in place
 * (an escape is never shorter than what it stands for), and only if it held
 * a backslash at all. A line that fails therefore stays intact, so the caller
 * can still pass it on as a malformed record.
 *
 * Raw control characters inside strings are accepted although JSON forbids
 * them: docker never writes them, and refusing them would only turn a
 * readable line into a malformed one.
 */
#include <string.h>

#include "format.h"
#include "json.h"

/* Nesting allowed in skipped values: more than docker ever writes, little
 * enough that the recursion cannot exhaust the stack. */
#define MAX_DEPTH 64

typedef struct scanner {
    const char *p, *end;
} scanner;

/* The raw text of a JSON string, between its quotes. */
typedef struct raw_string {
    char *s;
    size_t len;
    bool escaped; /* holds at least one backslash escape */
} raw_string;

static void skip_ws(scanner *sc)
{
    while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\t' || *sc->p == '\n' || *sc->p == '\r'))
        sc->p++;
}

static bool take(scanner *sc, char c)
{
    if (sc->p >= sc->end || *sc->p != c)
        return false;
    sc->p++;
    return true;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20; /* lower case */
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Four hex digits at p (the caller checked they are there and valid). */
static unsigned hex4(const char *p)
{
    return (unsigned)(hex_value(p[0]) << 12 | hex_value(p[1]) << 8 | hex_value(p[2]) << 4 |
                      hex_value(p[3]));
}

/* Checks the escape at p ('\\' already seen at p[0]); returns its length or 0. */
static size_t check_escape(const char *p, const char *end)
{
    if (end - p < 2)
        return 0;
    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
        return 2;
    case 'u':
        if (end - p < 6)
            return 0;
        for (int i = 2; i < 6; i++)
            if (hex_value(p[i]) < 0)
                return 0;
        return 6;
    default:
        return 0;
    }
}

/* Scans a string starting at its opening quote. The common case, no
 * backslash before the closing quote, is two memchr calls. */
static bool scan_string(scanner *sc, raw_string *out)
{
    if (!take(sc, '"'))
        return false;
    char *start = (char *)sc->p;
    const char *end = sc->end;
    const char *quote = memchr(start, '"', (size_t)(end - start));
    if (!quote)
        return false;
    const char *p = memchr(start, '\\', (size_t)(quote - start));
    out->escaped = p != NULL;
    if (p) {
        while (p < end && *p != '"') {
            if (*p == '\\') {
                size_t n = check_escape(p, end);
                if (n == 0)
                    return false;
                p += n;
            } else {
                p++;
            }
        }
        if (p == end)
            return false;
        quote = p;
    }
    out->s = start;
    out->len = (size_t)(quote - start);
    sc->p = quote + 1;
    return true;
}

static bool skip_value(scanner *sc, int depth);

static bool skip_literal(scanner *sc, const char *word, size_t n)
{
    if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, word, n) != 0)
        return false;
    sc->p += n;
    return true;
}

static bool take_digits(scanner *sc)
{
    const char *start = sc->p;
    while (sc->p < sc->end && *sc->p >= '0' && *sc->p <= '9')
        sc->p++;
    return sc->p > start;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool skip_number(scanner *sc)
{
    take(sc, '-');
    if (take(sc, '0')) {
        /* no further integer digits after a leading zero */
    } else if (!take_digits(sc)) {
        return false;
    }
    if (take(sc, '.') && !take_digits(sc))
        return false;
    if (take(sc, 'e') || take(sc, 'E')) {
        if (!take(sc, '+'))
            take(sc, '-');
        if (!take_digits(sc))
            return false;
    }
    return true;
}

static bool skip_object(scanner *sc, int depth)
{
    raw_string key;
    sc->p++; /* '{' */
    skip_ws(sc);
    if (take(sc, '}'))
        return true;
    for (;;) {
        skip_ws(sc);
        if (!scan_string(sc, &key))
            return false;
        skip_ws(sc);
        if (!take(sc, ':'))
            return false;
        skip_ws(sc);
        if (!skip_value(sc, depth + 1))
            return false;
        skip_ws(sc);
        if (take(sc, '}'))
            return true;
        if (!take(sc, ','))
            return false;
    }
}

static bool skip_array(scanner *sc, int depth)
{
    sc->p++; /* '[' */
    skip_ws(sc);
    if (take(sc, ']'))
        return true;
    for (;;) {
        skip_ws(sc);
        if (!skip_value(sc, depth + 1))
            return false;
        skip_ws(sc);
        if (take(sc, ']'))
            return true;
        if (!take(sc, ','))
            return false;
    }
}

static bool skip_value(scanner *sc, int depth)
{
    raw_string s;
    if (sc->p >= sc->end || depth > MAX_DEPTH)
        return false;
    switch (*sc->p) {
    case '"':
        return scan_string(sc, &s);
    case '{':
        return skip_object(sc, depth);
    case '[':
        return skip_array(sc, depth);
    case 't':
        return skip_literal(sc, "true", 4);
    case 'f':
        return skip_literal(sc, "false", 5);
    case 'n':
        return skip_literal(sc, "null", 4);
    default:
        return skip_number(sc);
    }
}

/* ---- unescaping ------------------------------------------------------------ */

static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decodes "\uXXXX" at *r, with the low half that must follow a high
 * surrogate. A surrogate without its other half becomes U+FFFD (what Go's
 * encoding/json does too). */
static unsigned decode_u_escape(const char **r, const char *end)
{
    unsigned cp = hex4(*r + 2);
    *r += 6;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        const char *n = *r;
        if (end - n >= 6 && n[0] == '\\' && n[1] == 'u') {
            unsigned lo = hex4(n + 2);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                *r += 6;
                return 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
        }
        return 0xFFFD;
    }
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return 0xFFFD;
    return cp;
}

/* Rewrites a checked string in place; returns its new length. */
static size_t unescape_in_place(char *s, size_t len)
{
    const char *r = s, *end = s + len;
    char *w = s;
    while (r < end) {
        const char *bs = memchr(r, '\\', (size_t)(end - r));
        size_t plain = (size_t)((bs ? bs : end) - r);
        memmove(w, r, plain);
        w += plain;
        r += plain;
        if (!bs)
            break;
        char c = r[1];
        switch (c) {
        case 'b':
            *w++ = '\b';
            break;
        case 'f':
            *w++ = '\f';
            break;
        case 'n':
            *w++ = '\n';
            break;
        case 'r':
            *w++ = '\r';
            break;
        case 't':
            *w++ = '\t';
            break;
        case 'u':
            w += put_utf8(w, decode_u_escape(&r, end));
            continue;
        default:
            *w++ = c;
            break; /* '"', '\\', '/' */
        }
        r += 2;
    }
    return (size_t)(w - s);
}

/* ---- the line -------------------------------------------------------------- */

static bool key_is(const raw_string *k, const char *name, size_t n)
{
    return !k->escaped && k->len == n && memcmp(k->s, name, n) == 0;
}

static bool parse_stream_name(const raw_string *v, uint8_t *stream)
{
    if (key_is(v, "stdout", 6))
        *stream = DR_STREAM_STDOUT;
    else if (key_is(v, "stderr", 6))
        *stream = DR_STREAM_STDERR;
    else
        return false;
    return true;
}

/* One member of the top-level object. Returns false on bad JSON or a known
 * key with a value of the wrong kind. */
static bool parse_member(scanner *sc, raw_string *log, bool *have_log, dr_line *out)
{
    raw_string key, val;
    if (!scan_string(sc, &key))
        return false;
    skip_ws(sc);
    if (!take(sc, ':'))
        return false;
    skip_ws(sc);

    if (key_is(&key, "log", 3)) {
        *have_log = true;
        return scan_string(sc, log);
    }
    if (key_is(&key, "stream", 6))
        return scan_string(sc, &val) && parse_stream_name(&val, &out->stream);
    if (key_is(&key, "time", 4))
        return scan_string(sc, &val) && dr_parse_rfc3339(val.s, val.len, &out->time_ns) == 0;
    return skip_value(sc, 1);
}

int dr_docker_parse(char *line, size_t len, dr_line *out)
{
    scanner sc = {line, line + len};
    raw_string log = {0};
    bool have_log = false;
    dr_line ln = {.time_ns = 0, .stream = DR_STREAM_STDOUT};

    skip_ws(&sc);
    if (!take(&sc, '{'))
        return DR_EINVAL;
    skip_ws(&sc);
    if (!take(&sc, '}')) {
        for (;;) {
            skip_ws(&sc);
            if (!parse_member(&sc, &log, &have_log, &ln))
                return DR_EINVAL;
            skip_ws(&sc);
            if (take(&sc, '}'))
                break;
            if (!take(&sc, ','))
                return DR_EINVAL;
        }
    }
    skip_ws(&sc);
    if (sc.p != sc.end || !have_log || log.len > UINT32_MAX)
        return DR_EINVAL;

    /* Everything checked: now it is safe to write. */
    size_t n = log.escaped ? unescape_in_place(log.s, log.len) : log.len;
    ln.partial = !(n > 0 && log.s[n - 1] == '\n');
    if (!ln.partial)
        n--;
    ln.msg = log.s;
    ln.msg_len = (uint32_t)n;
    *out = ln;
    return 0;
}
