/*
 * The text exposition parsers (see expo.h): Prometheus text 0.0.4 and
 * OpenMetrics 1.0, and the dispatch to the protobuf parser.
 *
 * Both parsers mirror Prometheus' scrape parsers token for token: a lexer
 * with the same states and character classes (including their quirks:
 * the text lexer reads a body as if it ended with a newline, a NUL at the
 * start of a text line ends the body, NUL bytes inside label values and
 * HELP texts are skipped over by the lexer and kept in the value), and a
 * parser with the same sequence of expectations. Matching them exactly is
 * the point: a body Prometheus takes is taken, one it fails is failed.
 *
 * On top of what the lexers check, the scrape loop of Prometheus 3 fails a
 * scrape whose quoted (UTF-8) metric or label names are empty or not valid
 * UTF-8; that is checked here too.
 *
 * Per sample nothing is allocated once the buffers have grown to the
 * largest line: label positions are recorded while lexing, then the label
 * set references the body directly, and only values that hold escapes (or
 * le/quantile values Prometheus rewrites) are written to a scratch buffer.
 */
#include "expo.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "expo_internal.h"

/* ---- tokens and lexer states (as model/textparse numbers them) ---------- */

enum {
    T_INVALID = -1,
    T_EOF = 0,
    T_LINEBREAK,
    T_WS,
    T_HELP,
    T_TYPE,
    T_UNIT,
    T_EOFWORD,
    T_TEXT,
    T_COMMENT,
    T_MNAME,
    T_QSTRING,
    T_BOPEN,
    T_BCLOSE,
    T_LNAME,
    T_LVALUE,
    T_COMMA,
    T_EQUAL,
    T_TS,
    T_VALUE,
};

enum {
    S_INIT,
    S_COMMENT,
    S_META1,
    S_META2,
    S_LABELS,
    S_LVALUE,
    S_VALUE,
    S_TS,
    S_EXEMPLAR,
    S_EVALUE,
    S_ETS,
};

static const char *tok_name(int t)
{
    switch (t) {
    case T_EOF:
        return "EOF";
    case T_LINEBREAK:
        return "LINEBREAK";
    case T_WS:
        return "WHITESPACE";
    case T_HELP:
        return "HELP";
    case T_TYPE:
        return "TYPE";
    case T_UNIT:
        return "UNIT";
    case T_EOFWORD:
        return "EOFWORD";
    case T_TEXT:
        return "TEXT";
    case T_COMMENT:
        return "COMMENT";
    case T_MNAME:
        return "MNAME";
    case T_QSTRING:
        return "QSTRING";
    case T_BOPEN:
        return "BOPEN";
    case T_BCLOSE:
        return "BCLOSE";
    case T_LNAME:
        return "LNAME";
    case T_LVALUE:
        return "LVALUE";
    case T_COMMA:
        return "COMMA";
    case T_EQUAL:
        return "EQUAL";
    case T_TS:
        return "TIMESTAMP";
    case T_VALUE:
        return "VALUE";
    default:
        return "INVALID";
    }
}

/* Character classes: metric name start/rest, label name start/rest. */
#define C_M 1u  /* [a-zA-Z_:] */
#define C_MD 2u /* [a-zA-Z0-9_:] */
#define C_L 4u  /* [a-zA-Z_] */
#define C_LD 8u /* [a-zA-Z0-9_] */

static inline unsigned cclass_of(int c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
        return C_M | C_MD | C_L | C_LD;
    if (c >= '0' && c <= '9')
        return C_MD | C_LD;
    if (c == ':')
        return C_M | C_MD;
    return 0;
}

typedef struct lexer {
    const unsigned char *b;
    size_t len;   /* bytes of the body */
    size_t n;     /* len, plus 1 for the text format's implied final '\n' */
    size_t i;     /* current position */
    size_t start; /* start of the current token */
    int state;
    bool om;
    bool esc; /* the last quoted string held a backslash */
} lexer;

/* The byte at i (< n): past the body, the text format's implied newline. */
static inline int at(const lexer *l, size_t i)
{
    return i < l->len ? l->b[i] : '\n';
}

/* Advances one byte, 0 at the end. As Prometheus' lexers do, NUL bytes are
 * stepped over inside label values, HELP texts and comments. */
static inline int nextc(lexer *l)
{
    if (++l->i >= l->n)
        return 0;
    int c = at(l, l->i);
    if (c == 0 && (l->state == S_LVALUE || l->state == S_META2 || l->state == S_COMMENT)) {
        while (c == 0) {
            if (++l->i >= l->n)
                return 0;
            c = at(l, l->i);
        }
    }
    return c;
}

static inline bool is_ws(int c)
{
    return c == ' ' || c == '\t';
}

/* [ \t]+ (the first byte already seen). */
static int lex_ws(lexer *l)
{
    int c;
    do
        c = nextc(l);
    while (is_ws(c));
    return T_WS;
}

/* Bytes that end a run of ordinary bytes inside quotes. */
static const bool special_in_quotes[256] = {[0] = true, ['\n'] = true, ['"'] = true, ['\\'] = true};

/* A quoted string from its opening quote: false when it does not close.
 * allow_nl: raw newlines may appear inside (the lexers allow them in
 * names and text-format values, not in OpenMetrics values). */
static bool lex_quoted(lexer *l, bool allow_nl)
{
    l->esc = false;
    for (;;) {
        /* Ordinary bytes in bulk: nextc would return each of them as is. */
        size_t i = l->i + 1;
        while (i < l->len && !special_in_quotes[l->b[i]])
            i++;
        l->i = i - 1;
        int c = nextc(l);
        if (c == '"') {
            nextc(l);
            return true;
        }
        if (c == '\\') {
            l->esc = true;
            c = nextc(l);
            if (c == 0 || c == '\n')
                return false;
            continue;
        }
        if (c == 0 || (c == '\n' && !allow_nl))
            return false;
    }
}

/* Matches the rest of a keyword ("ELP" after 'H'); false on a mismatch. */
static bool lex_word(lexer *l, const char *rest)
{
    for (; *rest; rest++)
        if (nextc(l) != *rest)
            return false;
    return true;
}

/* The text format's fallback for lines starting with '#' that are not
 * HELP or TYPE: everything up to the newline. A NUL here ends the body,
 * as in Prometheus. */
static int lex_comment(lexer *l)
{
    if (l->i >= l->n)
        return T_EOF;
    for (int c = at(l, l->i);; c = nextc(l)) {
        if (c == 0)
            return T_EOF;
        if (c == '\n') {
            l->state = S_INIT;
            return T_COMMENT;
        }
    }
}

/* A run of metric name (md) or label name characters. */
static void lex_name(lexer *l, unsigned cls)
{
    int c;
    do
        c = nextc(l);
    while (cclass_of(c) & cls);
}

/* Bytes of a text-format value: not NUL, whitespace, newline or '{'. */
static inline bool prom_value_byte(int c)
{
    return c != 0 && c != ' ' && c != '\t' && c != '\n' && c != '{';
}

/* Bytes of an OpenMetrics value or timestamp: not NUL, space or newline. */
static inline bool om_value_byte(int c)
{
    return c != 0 && c != ' ' && c != '\n';
}

static int lex_prom(lexer *l)
{
    if (l->i >= l->n)
        return T_EOF;
    int c = at(l, l->i);
    l->start = l->i;
again:
    switch (l->state) {
    case S_INIT:
        if (c == '#') {
            c = nextc(l);
            if (is_ws(c)) {
                do
                    c = nextc(l);
                while (is_ws(c));
                l->state = S_COMMENT;
                goto again;
            }
            return lex_comment(l);
        }
        if (cclass_of(c) & C_M) {
            lex_name(l, C_MD);
            l->state = S_VALUE;
            return T_MNAME;
        }
        if (c == '\n') {
            nextc(l);
            return T_LINEBREAK;
        }
        if (is_ws(c))
            return lex_ws(l);
        if (c == 0) {
            nextc(l);
            return T_EOF;
        }
        if (c == '{') {
            nextc(l);
            l->state = S_LABELS;
            return T_BOPEN;
        }
        return T_INVALID;
    case S_COMMENT: {
        int t = 0;
        if (c == 'H' && lex_word(l, "ELP"))
            t = T_HELP;
        else if (c == 'T' && lex_word(l, "YPE"))
            t = T_TYPE;
        else if (is_ws(c))
            return lex_ws(l);
        if (t && is_ws(nextc(l))) {
            lex_ws(l);
            l->state = S_META1;
            return t;
        }
        return lex_comment(l);
    }
    case S_META1:
        if (c == '"') {
            if (!lex_quoted(l, true))
                return T_INVALID;
            l->state = S_META2;
            return T_MNAME;
        }
        if (cclass_of(c) & C_M) {
            lex_name(l, C_MD);
            l->state = S_META2;
            return T_MNAME;
        }
        if (is_ws(c))
            return lex_ws(l);
        return T_INVALID;
    case S_META2:
        if (is_ws(c)) {
            do
                c = nextc(l);
            while (is_ws(c));
            if (c == 0 || c == '\n')
                return T_WS;
        }
        if (c != 0 && c != '\n') {
            /* Up to the newline (NULs are stepped over in this state). */
            const unsigned char *nl = memchr(l->b + l->i, '\n', l->len - l->i);
            l->i = nl ? (size_t)(nl - l->b) : l->len;
        }
        l->state = S_INIT;
        return T_TEXT;
    case S_LABELS:
        if (c == '"') {
            if (!lex_quoted(l, true))
                return T_INVALID;
            return T_QSTRING;
        }
        if (c == ',') {
            nextc(l);
            return T_COMMA;
        }
        if (c == '=') {
            nextc(l);
            l->state = S_LVALUE;
            return T_EQUAL;
        }
        if (is_ws(c))
            return lex_ws(l);
        if (c == '}') {
            nextc(l);
            l->state = S_VALUE;
            return T_BCLOSE;
        }
        if (cclass_of(c) & C_L) {
            lex_name(l, C_LD);
            return T_LNAME;
        }
        return T_INVALID;
    case S_LVALUE:
        if (c == '"') {
            if (!lex_quoted(l, true))
                return T_INVALID;
            l->state = S_LABELS;
            return T_LVALUE;
        }
        if (is_ws(c))
            return lex_ws(l);
        return T_INVALID;
    case S_VALUE:
        if (is_ws(c))
            return lex_ws(l);
        if (c == '{') {
            nextc(l);
            l->state = S_LABELS;
            return T_BOPEN;
        }
        if (prom_value_byte(c)) {
            do
                c = nextc(l);
            while (prom_value_byte(c));
            l->state = S_TS;
            return T_VALUE;
        }
        return T_INVALID;
    case S_TS:
        if (c == '\n') {
            nextc(l);
            l->state = S_INIT;
            return T_LINEBREAK;
        }
        if (is_ws(c))
            return lex_ws(l);
        if (c >= '0' && c <= '9') {
            do
                c = nextc(l);
            while (c >= '0' && c <= '9');
            return T_TS;
        }
        return T_INVALID;
    default:
        return T_INVALID;
    }
}

/* " value" of OpenMetrics (the space already seen): a value byte must
 * follow. */
static bool lex_om_spaced(lexer *l)
{
    int c = nextc(l);
    if (!om_value_byte(c))
        return false;
    do
        c = nextc(l);
    while (om_value_byte(c));
    return true;
}

static int lex_om(lexer *l)
{
    if (l->i >= l->n)
        return T_EOF;
    int c = at(l, l->i);
    l->start = l->i;
again:
    switch (l->state) {
    case S_INIT:
        if (c == '#') {
            if (nextc(l) != ' ')
                return T_INVALID;
            c = nextc(l);
            l->state = S_COMMENT;
            goto again;
        }
        if (cclass_of(c) & C_M) {
            lex_name(l, C_MD);
            l->state = S_VALUE;
            return T_MNAME;
        }
        if (c == '{') {
            nextc(l);
            l->state = S_LABELS;
            return T_BOPEN;
        }
        return T_INVALID;
    case S_COMMENT: {
        int t;
        if (c == 'E') {
            if (!lex_word(l, "OF"))
                return T_INVALID;
            if (nextc(l) == '\n')
                nextc(l);
            l->state = S_INIT;
            return T_EOFWORD;
        }
        if (c == 'H' && lex_word(l, "ELP"))
            t = T_HELP;
        else if (c == 'T' && lex_word(l, "YPE"))
            t = T_TYPE;
        else if (c == 'U' && lex_word(l, "NIT"))
            t = T_UNIT;
        else
            return T_INVALID;
        if (nextc(l) != ' ')
            return T_INVALID;
        nextc(l);
        l->state = S_META1;
        return t;
    }
    case S_META1:
        if (c == '"') {
            if (!lex_quoted(l, true))
                return T_INVALID;
            l->state = S_META2;
            return T_MNAME;
        }
        if (cclass_of(c) & C_M) {
            lex_name(l, C_MD);
            l->state = S_META2;
            return T_MNAME;
        }
        return T_INVALID;
    case S_META2:
        if (c != ' ')
            return T_INVALID;
        {
            /* Up to and including the newline (NULs are stepped over). */
            const unsigned char *nl = memchr(l->b + l->i, '\n', l->len - l->i);
            if (!nl) {
                l->i = l->len;
                return T_INVALID;
            }
            l->i = (size_t)(nl - l->b) + 1;
            l->state = S_INIT;
            return T_TEXT;
        }
    case S_LABELS:
    case S_EXEMPLAR: {
        bool ex = l->state == S_EXEMPLAR;
        if (c == '"') {
            if (!lex_quoted(l, !ex))
                return T_INVALID;
            return T_QSTRING;
        }
        if (c == ',') {
            nextc(l);
            return T_COMMA;
        }
        if (c == '=') {
            nextc(l);
            l->state = ex ? S_EVALUE : S_LVALUE;
            return T_EQUAL;
        }
        if (c == '}') {
            nextc(l);
            l->state = ex ? S_EVALUE : S_VALUE;
            return T_BCLOSE;
        }
        if (cclass_of(c) & C_L) {
            lex_name(l, C_LD);
            return T_LNAME;
        }
        return T_INVALID;
    }
    case S_LVALUE:
        if (c == '"') {
            if (!lex_quoted(l, false))
                return T_INVALID;
            l->state = S_LABELS;
            return T_LVALUE;
        }
        return T_INVALID;
    case S_VALUE:
        if (c == ' ') {
            if (!lex_om_spaced(l))
                return T_INVALID;
            l->state = S_TS;
            return T_VALUE;
        }
        if (c == '{') {
            nextc(l);
            l->state = S_LABELS;
            return T_BOPEN;
        }
        return T_INVALID;
    case S_TS:
        if (c == '\n') {
            nextc(l);
            l->state = S_INIT;
            return T_LINEBREAK;
        }
        if (c != ' ')
            return T_INVALID;
        c = nextc(l);
        if (c == '#') {
            c = nextc(l);
            if (c == ' ') {
                if (nextc(l) != '{')
                    return T_INVALID;
                nextc(l);
                l->state = S_EXEMPLAR;
                return T_COMMENT;
            }
            while (om_value_byte(c))
                c = nextc(l);
            return T_TS;
        }
        if (!om_value_byte(c))
            return T_INVALID;
        do
            c = nextc(l);
        while (om_value_byte(c));
        return T_TS;
    case S_EVALUE:
        if (c == ' ') {
            if (!lex_om_spaced(l))
                return T_INVALID;
            l->state = S_ETS;
            return T_VALUE;
        }
        if (c == '"') {
            if (!lex_quoted(l, false))
                return T_INVALID;
            l->state = S_EXEMPLAR;
            return T_LVALUE;
        }
        return T_INVALID;
    case S_ETS:
        if (c == ' ') {
            if (!lex_om_spaced(l))
                return T_INVALID;
            return T_TS;
        }
        if (c == '\n') {
            nextc(l);
            l->state = S_INIT;
            return T_LINEBREAK;
        }
        return T_INVALID;
    default:
        return T_INVALID;
    }
}

/* ---- numbers ------------------------------------------------------------- */

/* Go's rule for '_' in number literals: only between digits, or between
 * a base prefix and a digit. */
static bool underscores_ok(const char *s, size_t n)
{
    size_t i = 0;
    if (n >= 1 && (s[0] == '+' || s[0] == '-'))
        i = 1;
    char saw = '^';
    bool hex = false;
    if (n - i >= 2 && s[i] == '0' && strchr("bBoOxX", s[i + 1])) {
        hex = s[i + 1] == 'x' || s[i + 1] == 'X';
        i += 2;
        saw = '0';
    }
    for (; i < n; i++) {
        char c = s[i];
        bool digit =
            (c >= '0' && c <= '9') || (hex && ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')));
        if (digit) {
            saw = '0';
        } else if (c == '_') {
            if (saw != '0')
                return false;
            saw = '_';
        } else {
            if (saw == '_')
                return false;
            saw = '!';
        }
    }
    return saw != '_';
}

/* Go's ParseFloat, through strtod: Go takes no leading space, no
 * "nan(...)", no sign on NaN, no hexadecimal mantissa without a 'p'
 * exponent, and fails on overflow; it takes '_' between digits (only le
 * and quantile values get that far). Returns 0 or -1. */
static int go_parse_float(const char *s, size_t n, double *out)
{
    if (n == 0)
        return -1;
    unsigned char c0 = (unsigned char)s[0];
    if (c0 == ' ' || (c0 >= '\t' && c0 <= '\r'))
        return -1;
    size_t k = (s[0] == '+' || s[0] == '-') ? 1 : 0;
    if (k < n && (s[k] == 'n' || s[k] == 'N')) {
        if (k || n != 3 || (s[1] != 'a' && s[1] != 'A') || (s[2] != 'n' && s[2] != 'N'))
            return -1;
        *out = NAN;
        return 0;
    }
    if (k + 1 < n && s[k] == '0' && (s[k + 1] == 'x' || s[k + 1] == 'X') && !memchr(s, 'p', n) &&
        !memchr(s, 'P', n))
        return -1;
    char stack[128];
    char *buf = stack;
    if (n >= sizeof stack) {
        buf = malloc(n + 1);
        if (!buf)
            return -1;
    }
    size_t bn = n;
    if (memchr(s, '_', n)) {
        if (!underscores_ok(s, n)) {
            if (buf != stack)
                free(buf);
            return -1;
        }
        bn = 0;
        for (size_t i = 0; i < n; i++)
            if (s[i] != '_')
                buf[bn++] = s[i];
    } else {
        memcpy(buf, s, n);
    }
    buf[bn] = '\0';
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    bool ok = end == buf + bn && !(errno == ERANGE && isinf(v));
    if (buf != stack)
        free(buf);
    if (!ok)
        return -1;
    *out = v;
    return 0;
}

/* NaN as Prometheus stores a scraped one (value.NormalNaN), distinct from
 * its staleness marker. */
static double normal_nan(void)
{
    uint64_t bits = 0x7ff8000000000001ull;
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* Go's float64 to int64 conversion as amd64 does it: out of range (and
 * NaN) gives the most negative value. */
static int64_t f2i64(double x)
{
    if (!(x >= -9223372036854775808.0 && x < 9223372036854775808.0))
        return INT64_MIN;
    return (int64_t)x;
}

/* Prometheus' FormatOpenMetricsFloat: Go's shortest 'g' format (exponent
 * below -4 or from 6 up), with ".0" added to integers. out holds 32. */
static size_t format_om_float(double f, char *out)
{
    const char *fixed = NULL;
    if (f == 1)
        fixed = "1.0";
    else if (f == 0)
        fixed = "0.0";
    else if (f == -1)
        fixed = "-1.0";
    else if (isnan(f))
        fixed = "NaN";
    else if (isinf(f))
        fixed = f > 0 ? "+Inf" : "-Inf";
    if (fixed) {
        strcpy(out, fixed);
        return strlen(fixed);
    }
    char e[40];
    int prec;
    for (prec = 1; prec < 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, f);
        if (strtod(e, NULL) == f)
            break;
    }
    snprintf(e, sizeof e, "%.*e", prec - 1, f);
    int exp10 = atoi(strchr(e, 'e') + 1);
    int len;
    if (exp10 < -4 || exp10 >= 6) {
        len = snprintf(out, 32, "%s", e);
    } else {
        int decimals = prec - (exp10 + 1);
        len = snprintf(out, 32, "%.*f", decimals > 0 ? decimals : 0, f);
    }
    if (!strchr(out, '.') && !strchr(out, 'e') && len + 2 < 32) {
        memcpy(out + len, ".0", 3);
        len += 2;
    }
    return (size_t)len;
}

/* ---- UTF-8 ---------------------------------------------------------------- */

/* Go's utf8.Valid: no overlong forms, surrogates or code points past
 * U+10FFFF. ASCII is checked 8 bytes at a time. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ull)) {
                i += 8;
                continue;
            }
        }
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned char lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else {
            return false;
        }
        if (i + need >= n)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= need; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf)
                return false;
        i += need + 1;
    }
    return true;
}

/* ---- the parser ----------------------------------------------------------- */

#define NONE ((size_t)-1)

/* A label as positions in the body: name [ns, ne), value [vs, ve). */
/* ---- series keys ---------------------------------------------------------- */

/* A 128-bit hash: two 64-bit lanes, each 16 bytes folded in by one
 * 64x64->128 multiply whose halves become the next lanes (the "mum" step
 * of wyhash-like hashes), then each lane finished on its own. Not for
 * inputs an adversary picks against the cache (a target can only confuse
 * its own series), but at 128 bits chance collisions do not happen. */
typedef struct key_state {
    uint64_t h1, h2;
} key_state;

#define KEY_K1 0xa0761d6478bd642full
#define KEY_K2 0xe7037ed1a0b428dbull
#define KEY_K3 0x8ebc6af09c88c6e3ull

static void key_init(key_state *k, uint64_t domain)
{
    k->h1 = 0x243f6a8885a308d3ull ^ domain;
    k->h2 = 0x13198a2e03707344ull ^ (domain * KEY_K3);
}

static inline void key_block(key_state *k, uint64_t w0, uint64_t w1)
{
    unsigned __int128 p = (unsigned __int128)(w0 ^ k->h1 ^ KEY_K1) * (w1 ^ k->h2 ^ KEY_K2);
    /* the old lanes, crossed, come back in: a zero factor cannot erase them */
    uint64_t h1 = k->h1;
    k->h1 = (uint64_t)p ^ k->h2;
    k->h2 = (uint64_t)(p >> 64) ^ h1;
}

static uint64_t load_tail(const char *p, size_t n)
{
    uint64_t w = 0;
    memcpy(&w, p, n);
    return w;
}

static inline uint64_t load64(const char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* The length goes in too, so ("ab","c") and ("a","bc") differ. Runs of 32
 * bytes go through two chains at once (a multiply waits for the one
 * before it in its chain only), folded together at the end of the run. */
static void key_bytes(key_state *k, const char *p, size_t n)
{
    key_block(k, n, KEY_K3);
    if (n >= 32) {
        key_state o = {k->h1 ^ KEY_K3, k->h2 + KEY_K1};
        for (; n >= 32; p += 32, n -= 32) {
            key_block(k, load64(p), load64(p + 8));
            key_block(&o, load64(p + 16), load64(p + 24));
        }
        key_block(k, o.h1, o.h2);
    }
    for (; n >= 16; p += 16, n -= 16)
        key_block(k, load64(p), load64(p + 8));
    if (n > 8)
        key_block(k, load_tail(p, 8), load_tail(p + 8, n - 8));
    else if (n > 0)
        key_block(k, load_tail(p, n), 0);
}

static uint64_t key_finish64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static void key_finish(key_state *k, dr_expo_key *out)
{
    out->a = key_finish64(k->h1);
    out->b = key_finish64(k->h2 ^ out->a);
    if (out->a == 0 && out->b == 0)
        out->b = 1;
}

/* What a key is of, so that keys of different kinds never meet. */
enum { KEY_LABELS = 1, KEY_TEXT = 2 };

void dr_expo_labels_key(const dr_labels *ls, dr_expo_key *key)
{
    key_state k;
    key_init(&k, KEY_LABELS);
    for (uint32_t i = 0; i < ls->n; i++) {
        key_bytes(&k, ls->v[i].name, ls->v[i].name_len);
        key_bytes(&k, ls->v[i].value, ls->v[i].value_len);
    }
    key_finish(&k, key);
}

/* Bytes a run of a metric name may hold ([a-zA-Z0-9_:]), without branches:
 * the scan below runs over every name of every body. */
static inline bool name_byte(unsigned c)
{
    return ((c | 0x20u) - 'a' < 26u) | (c - '0' < 10u) | (c == '_') | (c == ':');
}

/* Inclusive prefix XOR of 16 bits: bit k is the parity of bits 0..k. On a
 * mask of quotes it marks the bytes inside quoted strings (and the opening
 * quotes). */
static inline uint32_t prefix_xor16(uint32_t x)
{
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    return x & 0xffffu;
}

/* The bytes of [i, i + *width) that matter to the scan of a label block,
 * as bits from bit 0 up: quotes, backslashes, '}' and the newlines and NULs
 * (other). Sixteen at a time where there is SSE2 (every x86-64), as label
 * values are long runs of bytes that do not matter; up to 16 one by one
 * elsewhere, and at the end. */
typedef struct block_bits {
    uint32_t quote, bslash, close, other;
} block_bits;

static size_t label_block_bits(const unsigned char *b, size_t i, size_t n, block_bits *m)
{
#if defined(__SSE2__)
    if (i + 16 <= n) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(b + i));
        m->quote = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')));
        m->bslash = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
        m->close = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('}')));
        m->other = (uint32_t)_mm_movemask_epi8(_mm_or_si128(
            _mm_cmpeq_epi8(v, _mm_set1_epi8('\n')), _mm_cmpeq_epi8(v, _mm_setzero_si128())));
        return 16;
    }
#endif
    memset(m, 0, sizeof *m);
    size_t k = 0;
    for (; k < 16 && i + k < n; k++) {
        unsigned char c = b[i + k];
        m->quote |= (uint32_t)(c == '"') << k;
        m->bslash |= (uint32_t)(c == '\\') << k;
        m->close |= (uint32_t)(c == '}') << k;
        m->other |= (uint32_t)(c == '\n' || c == 0) << k;
    }
    return k;
}

/* From just inside a label block's '{': the end of the block (past its
 * '}'), or 0 when it holds a newline, a NUL or a backslash outside quotes,
 * or does not end. A window without backslashes, newlines and NULs (nearly
 * all) is settled without a branch per quote: the prefix parity of its
 * quotes says which '}' stand outside strings. */
static size_t scan_label_block(const unsigned char *b, size_t i, size_t n)
{
    bool quoted = false;
    while (i < n) {
        block_bits m;
        size_t width = label_block_bits(b, i, n, &m);
        if (!m.bslash && !m.other) {
            uint32_t inside = prefix_xor16(m.quote) ^ (quoted ? 0xffffu : 0);
            uint32_t ends = m.close & ~inside;
            if (ends)
                return i + (size_t)__builtin_ctz(ends) + 1;
            quoted ^= __builtin_popcount(m.quote) & 1;
            i += width;
            continue;
        }
        uint32_t bits = m.quote | m.bslash | m.close | m.other;
        size_t next = i + width;
        while (bits) {
            size_t at = i + (size_t)__builtin_ctz(bits);
            bits &= bits - 1;
            unsigned char c = b[at];
            if (c == '"') {
                quoted = !quoted;
                continue;
            }
            if (c == '}') {
                if (!quoted)
                    return at + 1;
                continue;
            }
            if (c != '\\' || !quoted || at + 1 >= n || b[at + 1] == '\n' || b[at + 1] == 0)
                return 0;
            /* the lexer takes the byte after a backslash as it is */
            if (at + 1 < next)
                bits &= ~(1u << (at + 1 - i));
            else
                next = at + 2;
        }
        i = next;
    }
    return 0;
}

/* The series of a sample line, from its first byte: where the name ends,
 * and where the series (name and label block) ends. 0 when the line is not
 * of the plain kind this scan vouches for: a name first (not a quoted one
 * inside the braces), no newline, NUL or stray backslash inside the
 * braces, and in the text format no blank between the name and the
 * braces. Those lines take the lexer's path every time. Otherwise the scan
 * ends where the lexer would end the series; it checks nothing else, as it
 * runs only to find bytes the sink may know, and known bytes parsed
 * before. */
static size_t scan_series(const lexer *l, size_t i, const char *prev_name, size_t prev_len,
                          size_t *name_end)
{
    const unsigned char *b = l->b;
    size_t n = l->len;
    if (i >= n)
        return 0;
    /* lines of a family follow each other: most names are the last one */
    if (prev_len && prev_len < n - i && memcmp(b + i, prev_name, prev_len) == 0 &&
        !name_byte(b[i + prev_len])) {
        i += prev_len;
    } else {
        if (!(cclass_of(b[i]) & C_M))
            return 0;
        while (i < n && name_byte(b[i]))
            i++;
    }
    *name_end = i;
    if (i >= n)
        return 0;
    if (b[i] != '{') {
        if (!l->om) {
            size_t j = i;
            while (j < n && is_ws(b[j]))
                j++;
            if (j < n && b[j] == '{')
                return 0;
        }
        return i;
    }
    return scan_label_block(b, i + 1, n);
}

typedef struct span_label {
    size_t ns, ne, vs, ve;
    bool name_esc, value_esc, name_quoted;
} span_label;

typedef struct span_set {
    span_label *v;
    uint32_t n, cap;
} span_set;

/* What the le/quantile rewrite gave for a recent raw value. */
typedef struct le_cache_entry {
    unsigned char raw_len, out_len; /* raw_len 0: empty slot */
    char raw[31], out[32];
} le_cache_entry;

#define LE_CACHE 64

typedef struct parser {
    lexer l;
    const dr_expo_sink *sink;
    dr_error *err;
    size_t start; /* where the current entry began */

    size_t name_s, name_e; /* metric name, NONE when not seen yet */
    bool name_esc, name_quoted;
    span_set labels, exemplar;
    bool has_exemplar;
    double value, ex_value;
    bool has_ts, ex_has_ts;
    int64_t ts, ex_ts;

    dr_labels ls, els;
    char *scratch;
    size_t scratch_cap, scratch_used;

    /* The type of the last TYPE line, whatever its family: Prometheus
     * rewrites le and quantile values by it. */
    dr_metric_type last_type;

    /* The family the last metadata line named, and its metadata so far;
     * dirty when the sink has not seen it yet. */
    const char *fam;
    size_t fam_len;
    dr_metric_type fam_type;
    const char *help, *unit;
    size_t help_len, unit_len;
    bool dirty;
    char *helpbuf;
    size_t helpbuf_cap;

    le_cache_entry le_cache[LE_CACHE];

    /* The current sample's key (set once known), and whether the sink
     * recognised it, so its labels need not be built. */
    dr_expo_key key;
    bool have_key, known;
    /* The name of the last series scanned (into the body). */
    const char *prev_name;
    size_t prev_name_len;
    /* The last in_family answer, for the name it was about, while the
     * family stays the same. */
    const char *memo_name;
    size_t memo_len; /* 0: no answer kept */
    bool memo_in;
} parser;

static int tok(parser *p)
{
    if (p->l.om)
        return lex_om(&p->l);
    int t;
    do
        t = lex_prom(&p->l);
    while (t == T_WS);
    return t;
}

/* The line number (from 1) of a position. */
static size_t line_of(const parser *p, size_t pos)
{
    const unsigned char *b = p->l.b;
    if (pos > p->l.len)
        pos = p->l.len;
    size_t line = 1;
    const unsigned char *q = b, *end = b + pos;
    while ((q = memchr(q, '\n', (size_t)(end - q))) != NULL) {
        line++;
        q++;
    }
    return line;
}

/* Bytes quoted for a message, as Go's %q would show them, clipped. */
static void quote_bytes(const unsigned char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        unsigned char c = s[i];
        if (c == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (c == '\t') {
            out[o++] = '\\';
            out[o++] = 't';
        } else if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
        if (i + 1 < n && o + 8 >= cap) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
}

static int fail(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sets err to "line N: <message>" for the line of the current token. */
static int fail(parser *p, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* At the end of the body the lexer does not move its token start. */
    size_t pos = p->l.start > p->start ? p->l.start : p->start;
    dr_error_set(p->err, "line %zu: %s", line_of(p, pos), msg);
    return DR_EINVAL;
}

/* "expected X, got "<token>" (KIND)", as Prometheus words it. */
static int fail_tok(parser *p, const char *expected, int t)
{
    size_t e = p->l.i + 1 < p->l.len ? p->l.i + 1 : p->l.len;
    size_t s = p->l.start < e ? p->l.start : e;
    char got[64];
    quote_bytes(p->l.b + s, e - s, got, sizeof got);
    return fail(p, "%s, got %s (%s)", expected, got, tok_name(t));
}

static int span_push(parser *p, span_set *set)
{
    if (set->n < set->cap)
        return 0;
    if (set->n >= DR_LABELS_MAX - 1)
        return fail(p, "more than %u labels", DR_LABELS_MAX - 1);
    uint32_t cap = set->cap ? set->cap * 2 : 32;
    span_label *v = realloc(set->v, cap * sizeof *v);
    if (!v)
        return DR_ENOMEM;
    set->v = v;
    set->cap = cap;
    return 0;
}

/* The contents of the braces, up to and including '}'. For an exemplar
 * the labels go to p->exemplar and a quoted metric name is not allowed. */
static int parse_lvals(parser *p, bool exemplar)
{
    span_set *set = exemplar ? &p->exemplar : &p->labels;
    const unsigned char *b = p->l.b;
    int t = tok(p);
    for (;;) {
        size_t ts = p->l.start, ti = p->l.i;
        bool quoted = false, esc = p->l.esc;
        switch (t) {
        case T_BCLOSE:
            return 0;
        case T_LNAME:
            break;
        case T_QSTRING:
            quoted = true;
            break;
        default:
            return fail_tok(p, "expected label name", t);
        }
        t = tok(p);
        if (quoted && (t == T_COMMA || t == T_BCLOSE)) {
            if (exemplar)
                return fail_tok(p, "expected label name", t);
            if (p->name_s != NONE)
                return fail(p, "metric name already set");
            p->name_s = ts + 1;
            p->name_e = ti - 1;
            p->name_esc = esc;
            p->name_quoted = true;
            if (t == T_BCLOSE)
                return 0;
            t = tok(p);
            continue;
        }
        int rc = span_push(p, set);
        if (rc)
            return rc;
        span_label *sl = &set->v[set->n];
        if (b[ts] == '"') {
            ts++;
            ti--;
        }
        sl->ns = ts;
        sl->ne = ti;
        sl->name_esc = quoted && esc;
        sl->name_quoted = quoted;
        if (t != T_EQUAL)
            return fail_tok(p, "expected equal", t);
        t = tok(p);
        if (t != T_LVALUE)
            return fail_tok(p, "expected label value", t);
        if (!utf8_valid(b + p->l.start, p->l.i - p->l.start))
            return fail(p, "invalid UTF-8 label value");
        sl->vs = p->l.start + 1;
        sl->ve = p->l.i - 1;
        sl->value_esc = p->l.esc;
        set->n++;
        t = tok(p);
        if (t == T_COMMA)
            t = tok(p);
        else if (p->l.om && t != T_BCLOSE)
            return fail_tok(p, "expected comma or brace close", t);
    }
}

/* Exact powers of ten as doubles: up to 1e22 every one is. */
static const double exact_pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The common case of a value, without strtod: [+-]digits[.digits][e[+-]digits]
 * whose digits, point removed, make an integer of at most 2^53 and whose
 * power of ten is at most 22 either way. Both are exact doubles then, and
 * one multiplication or division of exact operands rounds correctly (as
 * Go's ParseFloat takes the same shortcut). False for anything else, which
 * goes the general way. */
static bool parse_plain_decimal(const unsigned char *s, size_t n, double *out)
{
    size_t i = 0;
    bool neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    uint64_t m = 0;
    int digits = 0, exp10 = 0;
    size_t start = i;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        if (m || s[i] != '0')
            digits++;
        m = m * 10 + (uint64_t)(s[i] - '0');
        if (digits > 15)
            return false;
    }
    bool any = i > start;
    if (i < n && s[i] == '.') {
        size_t f = ++i;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            if (m || s[i] != '0')
                digits++;
            m = m * 10 + (uint64_t)(s[i] - '0');
            exp10--;
            if (digits > 15)
                return false;
        }
        any = any || i > f;
    }
    if (!any)
        return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        bool eneg = false;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            eneg = s[i++] == '-';
        size_t es = i;
        int e = 0;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            e = e * 10 + (s[i] - '0');
            if (e > 400)
                return false;
        }
        if (i == es)
            return false;
        exp10 += eneg ? -e : e;
    }
    if (i != n || exp10 > 22 || exp10 < -22)
        return false;
    /* 15 digits keep m below 2^53 */
    double v = (double)m;
    v = exp10 >= 0 ? v * exact_pow10[exp10] : v / exact_pow10[-exp10];
    *out = neg ? -v : v;
    return true;
}

/* A sample value (or an OpenMetrics timestamp): Go's ParseFloat, after
 * Prometheus' refusal of the forms Go only took from 1.13 on. */
static int parse_value(parser *p, const unsigned char *s, size_t n, double *out)
{
    if (parse_plain_decimal(s, n, out))
        return 0;
    if (memchr(s, 'p', n) || memchr(s, 'P', n) || memchr(s, '_', n))
        return fail(p, "unsupported character in float");
    if (go_parse_float((const char *)s, n, out) != 0) {
        char q[64];
        quote_bytes(s, n, q, sizeof q);
        return fail(p, "invalid float %s", q);
    }
    return 0;
}

/* ---- metadata ------------------------------------------------------------- */

static int flush_meta(parser *p)
{
    if (!p->dirty)
        return 0;
    p->dirty = false;
    if (!p->sink->meta)
        return 0;
    dr_expo_meta m = {
        .family = p->fam,
        .family_len = p->fam_len,
        .type = p->fam_type,
        .help = p->help ? p->help : "",
        .help_len = p->help_len,
        .unit = p->unit ? p->unit : "",
        .unit_len = p->unit_len,
    };
    return p->sink->meta(p->sink->ctx, &m);
}

/* Moves the current family to name, flushing the previous one's metadata
 * first when the name changes. */
static int set_family(parser *p, const char *name, size_t len)
{
    if (p->fam && p->fam_len == len && memcmp(p->fam, name, len) == 0)
        return 0;
    int rc = flush_meta(p);
    if (rc)
        return rc;
    p->fam = name;
    p->fam_len = len;
    p->fam_type = DR_MT_UNKNOWN;
    p->memo_len = 0;
    p->help = p->unit = NULL;
    p->help_len = p->unit_len = 0;
    return 0;
}

/* HELP text unescaped: \\ and \n, plus \" in OpenMetrics (which uses the
 * label value escaping); other backslashes stay. */
static int set_help(parser *p, const unsigned char *s, size_t n)
{
    if (!memchr(s, '\\', n)) {
        p->help = (const char *)s;
        p->help_len = n;
        return 0;
    }
    if (p->helpbuf_cap < n) {
        char *nb = realloc(p->helpbuf, n);
        if (!nb)
            return DR_ENOMEM;
        p->helpbuf = nb;
        p->helpbuf_cap = n;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n &&
            (s[i + 1] == '\\' || s[i + 1] == 'n' || (p->l.om && s[i + 1] == '"'))) {
            p->helpbuf[o++] = s[i + 1] == 'n' ? '\n' : (char)s[i + 1];
            i++;
        } else {
            p->helpbuf[o++] = (char)s[i];
        }
    }
    p->help = p->helpbuf;
    p->help_len = o;
    return 0;
}

static bool bytes_eq(const unsigned char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

static int type_of(const unsigned char *s, size_t n, bool om, dr_metric_type *t)
{
    static const struct {
        const char *name;
        dr_metric_type t;
        bool om;
    } types[] = {
        {"counter", DR_MT_COUNTER, true},     {"gauge", DR_MT_GAUGE, true},
        {"histogram", DR_MT_HISTOGRAM, true}, {"summary", DR_MT_SUMMARY, true},
        {"untyped", DR_MT_UNKNOWN, false},    {"gaugehistogram", DR_MT_GAUGEHISTOGRAM, true},
        {"info", DR_MT_INFO, true},           {"stateset", DR_MT_STATESET, true},
        {"unknown", DR_MT_UNKNOWN, true},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (om ? !types[i].om : i >= 5)
            continue;
        if (bytes_eq(s, n, types[i].name)) {
            *t = types[i].t;
            return 0;
        }
    }
    return -1;
}

/* A HELP, TYPE or UNIT line, from the token after the keyword. */
static int parse_meta(parser *p, int kw)
{
    const unsigned char *b = p->l.b;
    const char *what = kw == T_HELP ? "HELP" : kw == T_TYPE ? "TYPE" : "UNIT";
    int t = tok(p);
    if (t != T_MNAME) {
        char exp[48];
        snprintf(exp, sizeof exp, "expected metric name after %s", what);
        return fail_tok(p, exp, t);
    }
    size_t ms = p->l.start, me = p->l.i;
    if (b[ms] == '"' && b[me - 1] == '"') {
        ms++;
        me--;
    }
    t = tok(p);
    if (t != T_TEXT)
        return fail(p, "expected text in %s, got %s", what, tok_name(t));
    size_t ts = p->l.start, te = p->l.i;
    if (te - ts > 1) {
        ts++;
        if (p->l.om)
            te--; /* the newline the token ends with */
    } else {
        ts = te;
    }
    const unsigned char *text = b + ts;
    size_t tlen = te - ts;
    dr_metric_type mt = DR_MT_UNKNOWN;
    if (kw == T_TYPE && type_of(text, tlen, p->l.om, &mt) != 0) {
        char q[64];
        quote_bytes(text, tlen, q, sizeof q);
        return fail(p, "invalid metric type %s", q);
    }
    if (kw == T_HELP && !utf8_valid(text, tlen))
        return fail(p, "help text is not valid UTF-8");
    if (!p->l.om) {
        t = tok(p);
        if (t != T_LINEBREAK)
            return fail_tok(p, "linebreak expected after metadata", t);
    }
    if (kw == T_UNIT && tlen > 0) {
        size_t nl = me - ms;
        if (nl < tlen + 1 || memcmp(b + me - tlen, text, tlen) != 0 || b[me - tlen - 1] != '_') {
            char qu[64], qm[64];
            quote_bytes(text, tlen, qu, sizeof qu);
            quote_bytes(b + ms, nl, qm, sizeof qm);
            return fail(p, "unit %s not a suffix of metric %s", qu, qm);
        }
    }
    int rc = set_family(p, (const char *)b + ms, me - ms);
    if (rc)
        return rc;
    if (kw == T_TYPE) {
        p->fam_type = mt;
        p->memo_len = 0;
        p->last_type = mt;
    } else if (kw == T_HELP) {
        rc = set_help(p, text, tlen);
        if (rc)
            return rc;
    } else {
        p->unit = (const char *)text;
        p->unit_len = tlen;
    }
    p->dirty = true;
    return 0;
}

/* ---- samples -------------------------------------------------------------- */

static bool cut_suffix(const char *s, size_t *n, const char *suffix)
{
    size_t k = strlen(suffix);
    if (*n < k || memcmp(s + *n - k, suffix, k) != 0)
        return false;
    *n -= k;
    return true;
}

/* Whether a sample named name belongs to the family of the last metadata
 * line: the scrape loop's rule (isSeriesPartOfFamily in Prometheus), with
 * OpenMetrics' _created series of counters, histograms and summaries
 * counted in too. */
static bool in_family(const parser *p, const char *name, size_t n)
{
    const char *mf = p->fam;
    size_t mfn = p->fam_len;
    if (!mf || n < mfn || memcmp(name, mf, mfn) != 0)
        return false;
    size_t got = n;
    switch (p->fam_type) {
    case DR_MT_COUNTER:
        cut_suffix(mf, &mfn, "_total");
        if (!cut_suffix(name, &got, "_total"))
            cut_suffix(name, &got, "_created");
        break;
    case DR_MT_HISTOGRAM:
        if (!cut_suffix(name, &got, "_bucket") && !cut_suffix(name, &got, "_sum") &&
            !cut_suffix(name, &got, "_count"))
            cut_suffix(name, &got, "_created");
        break;
    case DR_MT_GAUGEHISTOGRAM:
        if (!cut_suffix(name, &got, "_bucket") && !cut_suffix(name, &got, "_gsum"))
            cut_suffix(name, &got, "_gcount");
        break;
    case DR_MT_SUMMARY:
        if (!cut_suffix(name, &got, "_sum") && !cut_suffix(name, &got, "_count"))
            cut_suffix(name, &got, "_created");
        break;
    case DR_MT_INFO:
        cut_suffix(mf, &mfn, "_info");
        cut_suffix(name, &got, "_info");
        break;
    default:
        break;
    }
    return got == mfn && memcmp(name, mf, mfn) == 0;
}

/* Unescapes \\, \" and \n of [s, e) into the scratch buffer (which has
 * room: it was sized for the whole line). */
static const char *unescape(parser *p, size_t s, size_t e, size_t *len)
{
    const unsigned char *b = p->l.b;
    char *out = p->scratch + p->scratch_used;
    size_t o = 0;
    for (size_t i = s; i < e; i++) {
        if (b[i] == '\\' && i + 1 < e && (b[i + 1] == '\\' || b[i + 1] == '"' || b[i + 1] == 'n')) {
            out[o++] = b[i + 1] == 'n' ? '\n' : (char)b[i + 1];
            i++;
        } else {
            out[o++] = (char)b[i];
        }
    }
    p->scratch_used += o;
    *len = o;
    return out;
}

/* Copies a short rewritten value into the scratch buffer (room for it was
 * reserved per label). */
static const char *to_scratch(parser *p, const char *s, size_t n, size_t *len)
{
    char *dst = p->scratch + p->scratch_used;
    memcpy(dst, s, n);
    p->scratch_used += n;
    *len = n;
    return dst;
}

/* Whether a value is already as format_om_float writes it, for the common
 * plain decimals ("0.005", "2.5", "10.0"): no leading zero in the integer
 * part, no trailing zero in the fraction (except a lone ".0" after a
 * non-zero integer), at most 15 significant digits (then these are the
 * shortest digits of the double) and a decimal exponent in [-4, 6). */
static bool already_canonical(const char *v, size_t n)
{
    if ((n == 4 && (memcmp(v, "+Inf", 4) == 0 || memcmp(v, "-Inf", 4) == 0)) ||
        (n == 3 && memcmp(v, "NaN", 3) == 0))
        return true;
    size_t i = v[0] == '-' ? 1 : 0, is = i;
    while (i < n && v[i] >= '0' && v[i] <= '9')
        i++;
    size_t int_len = i - is;
    if (int_len == 0 || (int_len > 1 && v[is] == '0') || i >= n || v[i] != '.')
        return false;
    size_t fs = ++i;
    while (i < n && v[i] >= '0' && v[i] <= '9')
        i++;
    size_t frac_len = i - fs;
    if (i != n || frac_len == 0)
        return false;
    bool int_zero = int_len == 1 && v[is] == '0';
    if (frac_len == 1 && v[fs] == '0') /* "X.0" */
        return int_zero ? is == 0 : int_len <= 6;
    if (v[n - 1] == '0')
        return false;
    if (!int_zero)
        return int_len <= 6 && int_len + frac_len <= 15;
    size_t z = 0;
    while (z < frac_len && v[fs + z] == '0')
        z++;
    return z <= 3 && frac_len - z <= 15;
}

/* Prometheus rewrites le of histograms and quantile of summaries (by the
 * last TYPE line) to its float format, "1" to "1.0"; a value that is not a
 * number stays. Recent results are cached: bucket bounds repeat. */
static const char *normalize_float(parser *p, const char *v, size_t n, size_t *len)
{
    if (already_canonical(v, n)) {
        *len = n;
        return v;
    }
    le_cache_entry *ce = NULL;
    if (n > 0 && n <= sizeof ce->raw) {
        unsigned h = (unsigned)n;
        for (size_t i = 0; i < n; i++)
            h = h * 31u + (unsigned char)v[i];
        ce = &p->le_cache[h % LE_CACHE];
        if (ce->raw_len == n && memcmp(ce->raw, v, n) == 0)
            return to_scratch(p, ce->out, ce->out_len, len);
    }
    double f;
    if (go_parse_float(v, n, &f) != 0) {
        *len = n;
        return v;
    }
    char out[32];
    size_t on = format_om_float(f, out);
    if (ce) {
        ce->raw_len = (unsigned char)n;
        memcpy(ce->raw, v, n);
        ce->out_len = (unsigned char)on;
        memcpy(ce->out, out, on);
    }
    return to_scratch(p, out, on, len);
}

static bool name_valid(const char *s, size_t n)
{
    return n > 0 && utf8_valid((const unsigned char *)s, n);
}

static int add_label(parser *p, dr_labels *ls, const char *n, size_t nl, const char *v, size_t vl)
{
    int rc = dr_labels_add(ls, n, nl, v, vl);
    if (rc == DR_EINVAL)
        return fail(p, "label longer than %u bytes", DR_LABELS_MAX_BYTES);
    return rc;
}

/* The label set of the current sample (and of its exemplar). */
static int build_labels(parser *p, const char **name, size_t *name_len)
{
    const char *b = (const char *)p->l.b;
    size_t need = p->l.i - p->start + 32 * (size_t)p->labels.n + 64;
    if (p->scratch_cap < need) {
        size_t cap = p->scratch_cap ? p->scratch_cap : 4096;
        while (cap < need)
            cap *= 2;
        char *nb = realloc(p->scratch, cap);
        if (!nb)
            return DR_ENOMEM;
        p->scratch = nb;
        p->scratch_cap = cap;
    }
    p->scratch_used = 0;
    dr_labels_reset(&p->ls);

    size_t nl = p->name_e - p->name_s;
    const char *nm = b + p->name_s;
    if (p->name_esc)
        nm = unescape(p, p->name_s, p->name_e, &nl);
    if (p->name_quoted && !name_valid(nm, nl))
        return fail(p, "invalid metric name");
    int rc = add_label(p, &p->ls, "__name__", 8, nm, nl);
    if (rc)
        return rc;
    for (uint32_t i = 0; i < p->labels.n; i++) {
        const span_label *sl = &p->labels.v[i];
        size_t kl = sl->ne - sl->ns, vl = sl->ve - sl->vs;
        const char *k = b + sl->ns, *v = b + sl->vs;
        if (sl->name_esc)
            k = unescape(p, sl->ns, sl->ne, &kl);
        if (sl->name_quoted && !name_valid(k, kl))
            return fail(p, "invalid label name");
        if (sl->value_esc)
            v = unescape(p, sl->vs, sl->ve, &vl);
        if ((p->last_type == DR_MT_HISTOGRAM && kl == 2 && memcmp(k, "le", 2) == 0) ||
            (p->last_type == DR_MT_SUMMARY && kl == 8 && memcmp(k, "quantile", 8) == 0))
            v = normalize_float(p, v, vl, &vl);
        rc = add_label(p, &p->ls, k, kl, v, vl);
        if (rc)
            return rc;
    }
    *name = nm;
    *name_len = nl;
    return 0;
}

/* Exemplar labels are taken as written, without unescaping, as Prometheus'
 * parser takes them. */
static int build_exemplar_labels(parser *p)
{
    const char *b = (const char *)p->l.b;
    dr_labels_reset(&p->els);
    for (uint32_t i = 0; i < p->exemplar.n; i++) {
        const span_label *sl = &p->exemplar.v[i];
        int rc = add_label(p, &p->els, b + sl->ns, sl->ne - sl->ns, b + sl->vs, sl->ve - sl->vs);
        if (rc)
            return rc;
    }
    return 0;
}

static int emit_sample(parser *p)
{
    int rc = flush_meta(p);
    if (rc)
        return rc;
    const char *name = (const char *)p->l.b + p->name_s;
    size_t nl = p->name_e - p->name_s;
    if (!p->known) {
        rc = build_labels(p, &name, &nl);
        if (rc)
            return rc;
        if (!p->have_key)
            dr_expo_labels_key(&p->ls, &p->key);
    }
    if (p->has_exemplar && (rc = build_exemplar_labels(p)) != 0)
        return rc;
    dr_expo_sample s = {
        .labels = p->known ? NULL : &p->ls,
        .key = p->key,
        .family = name,
        .family_len = nl,
        .type = DR_MT_UNKNOWN,
        .value = p->value,
        .has_ts = p->has_ts,
        .ts_ms = p->ts,
    };
    /* only names in the body are kept: the scratch space is rewritten */
    bool in_body = name >= (const char *)p->l.b && name < (const char *)p->l.b + p->l.len;
    if (!in_body || nl != p->memo_len || memcmp(name, p->memo_name, nl) != 0) {
        p->memo_in = in_family(p, name, nl);
        p->memo_name = name;
        p->memo_len = in_body ? nl : 0;
    }
    if (p->memo_in) {
        s.family = p->fam;
        s.family_len = p->fam_len;
        s.type = p->fam_type;
    }
    if (p->has_exemplar) {
        s.exemplar = &p->els;
        s.exemplar_value = p->ex_value;
        s.exemplar_has_ts = p->ex_has_ts;
        s.exemplar_ts_ms = p->ex_ts;
    }
    return p->sink->sample(p->sink->ctx, &s);
}

/* The value token of a sample or exemplar: the text format's token as is,
 * OpenMetrics' after its leading space. */
static int token_value(parser *p, double *out)
{
    size_t s = p->l.start + (p->l.om ? 1 : 0);
    int rc = parse_value(p, p->l.b + s, p->l.i - s, out);
    if (rc == 0 && isnan(*out))
        *out = normal_nan();
    return rc;
}

/* An OpenMetrics timestamp: float seconds, not NaN or infinite. */
static int om_timestamp(parser *p, const char *what, int64_t *ms)
{
    size_t s = p->l.start + 1;
    double ts;
    int rc = parse_value(p, p->l.b + s, p->l.i - s, &ts);
    if (rc)
        return rc;
    if (isnan(ts) || isinf(ts))
        return fail(p, "invalid %stimestamp %s", what,
                    isnan(ts) ? "NaN"
                    : ts > 0  ? "+Inf"
                              : "-Inf");
    *ms = f2i64(ts * 1000);
    return 0;
}

/* After the metric name and labels of a text-format line. */
static int prom_suffix(parser *p, int t)
{
    if (p->name_s == NONE)
        return fail(p, "metric name not set");
    if (t != T_VALUE)
        return fail_tok(p, "expected value after metric", t);
    int rc = token_value(p, &p->value);
    if (rc)
        return rc;
    p->has_ts = false;
    t = tok(p);
    if (t == T_TS) {
        int64_t v = 0;
        for (size_t i = p->l.start; i < p->l.i; i++) {
            int d = p->l.b[i] - '0';
            if (v > (INT64_MAX - d) / 10)
                return fail(p, "timestamp out of range");
            v = v * 10 + d;
        }
        p->ts = v;
        p->has_ts = true;
        t = tok(p);
        if (t != T_LINEBREAK)
            return fail_tok(p, "expected next entry after timestamp", t);
    } else if (t != T_LINEBREAK) {
        return fail_tok(p, "expected timestamp or new record", t);
    }
    return emit_sample(p);
}

/* "# {labels} value [timestamp]" after an OpenMetrics sample. */
static int om_exemplar(parser *p)
{
    int rc = parse_lvals(p, true);
    if (rc)
        return rc;
    p->has_exemplar = true;
    int t = tok(p);
    if (t != T_VALUE)
        return fail_tok(p, "expected value after exemplar labels", t);
    rc = token_value(p, &p->ex_value);
    if (rc)
        return rc;
    t = tok(p);
    if (t == T_EOF)
        return fail(p, "data does not end with # EOF");
    if (t == T_TS) {
        rc = om_timestamp(p, "exemplar ", &p->ex_ts);
        if (rc)
            return rc;
        p->ex_has_ts = true;
        t = tok(p);
        if (t != T_LINEBREAK)
            return fail_tok(p, "expected next entry after exemplar timestamp", t);
    } else if (t != T_LINEBREAK) {
        return fail_tok(p, "expected timestamp or comment", t);
    }
    return 0;
}

/* After the metric name and labels of an OpenMetrics line. */
static int om_suffix(parser *p, int t)
{
    if (p->name_s == NONE)
        return fail(p, "metric name not set");
    if (t != T_VALUE)
        return fail_tok(p, "expected value after metric", t);
    int rc = token_value(p, &p->value);
    if (rc)
        return rc;
    p->has_ts = false;
    t = tok(p);
    if (t == T_TS) {
        rc = om_timestamp(p, "", &p->ts);
        if (rc)
            return rc;
        p->has_ts = true;
        t = tok(p);
        if (t == T_COMMENT)
            rc = om_exemplar(p);
        else if (t != T_LINEBREAK)
            return fail_tok(p, "expected next entry after timestamp", t);
    } else if (t == T_COMMENT) {
        rc = om_exemplar(p);
    } else if (t == T_EOF) {
        return fail(p, "data does not end with # EOF");
    } else if (t != T_LINEBREAK) {
        /* Prometheus takes the sample and fails on the next entry, which
         * cannot start in this lexer state: the body fails either way. */
        return fail_tok(p, "expected timestamp or exemplar", t);
    }
    if (rc)
        return rc;
    return emit_sample(p);
}

/* At the start of a line: when the line is a sample whose series the sink
 * knows, steps over the series (the lexer resumes where the value is
 * due) and says so. Keys the series either way when it can. */
static bool skip_known_series(parser *p)
{
    size_t name_end, end;
    if (p->l.state != S_INIT ||
        !(end = scan_series(&p->l, p->l.i, p->prev_name, p->prev_name_len, &name_end)))
        return false;
    p->prev_name = (const char *)p->l.b + p->l.i;
    p->prev_name_len = name_end - p->l.i;
    key_state k;
    key_init(&k, KEY_TEXT | (uint64_t)p->l.om << 8 | (uint64_t)p->last_type << 16);
    key_bytes(&k, (const char *)p->l.b + p->l.i, end - p->l.i);
    key_finish(&k, &p->key);
    p->have_key = true;
    if (!p->sink->known(p->sink->ctx, &p->key))
        return false;
    p->known = true;
    p->name_s = p->l.i;
    p->name_e = name_end;
    p->l.i = end;
    p->l.state = S_VALUE;
    return true;
}

static int parse_body(parser *p)
{
    bool om = p->l.om;
    for (;;) {
        p->start = p->l.i;
        p->have_key = p->known = false;
        p->name_s = NONE;
        p->name_esc = p->name_quoted = false;
        p->labels.n = 0;
        p->exemplar.n = 0;
        p->has_exemplar = false;
        p->ex_has_ts = false;
        int rc;
        if (p->sink->known && skip_known_series(p)) {
            rc = om ? om_suffix(p, tok(p)) : prom_suffix(p, tok(p));
            if (rc)
                return rc;
            continue;
        }
        int t = tok(p);
        switch (t) {
        case T_EOF:
            if (om)
                return fail(p, "data does not end with # EOF");
            return flush_meta(p);
        case T_EOFWORD:
            if (tok(p) != T_EOF)
                return fail(p, "unexpected data after # EOF");
            return flush_meta(p);
        case T_LINEBREAK:
            continue;
        case T_COMMENT:
            t = tok(p);
            if (t != T_LINEBREAK)
                return fail_tok(p, "linebreak expected after comment", t);
            continue;
        case T_HELP:
        case T_TYPE:
        case T_UNIT:
            rc = parse_meta(p, t);
            break;
        case T_BOPEN:
            rc = parse_lvals(p, false);
            if (!rc)
                rc = om ? om_suffix(p, tok(p)) : prom_suffix(p, tok(p));
            break;
        case T_MNAME:
            p->name_s = p->start;
            p->name_e = p->l.i;
            t = tok(p);
            rc = 0;
            if (t == T_BOPEN) {
                rc = parse_lvals(p, false);
                if (!rc)
                    t = tok(p);
            }
            if (!rc)
                rc = om ? om_suffix(p, t) : prom_suffix(p, t);
            break;
        default:
            return fail_tok(p, "expected a valid start token", t);
        }
        if (rc)
            return rc;
    }
}

static int parse_text(const char *body, size_t len, bool om, const dr_expo_sink *sink,
                      dr_error *err)
{
    parser *p = calloc(1, sizeof *p);
    if (!p)
        return DR_ENOMEM;
    p->l.b = (const unsigned char *)body;
    p->l.len = len;
    /* The text parser reads the body as if a newline followed it. */
    p->l.n = om ? len : len + 1;
    p->l.om = om;
    p->sink = sink;
    p->err = err;
    dr_labels_init(&p->ls);
    dr_labels_init(&p->els);
    int rc = parse_body(p);
    if (rc == DR_ENOMEM)
        dr_error_set(err, "out of memory");
    dr_labels_free(&p->ls);
    dr_labels_free(&p->els);
    free(p->labels.v);
    free(p->exemplar.v);
    free(p->scratch);
    free(p->helpbuf);
    free(p);
    return rc;
}

int dr_expo_parse(dr_expo_format fmt, const char *body, size_t len, const dr_expo_sink *sink,
                  dr_error *err)
{
    if (!sink || !sink->sample || (!body && len)) {
        dr_error_set(err, "no sink or no body");
        return DR_EINVAL;
    }
    if (!body)
        body = "";
    switch (fmt) {
    case DR_EXPO_TEXT:
        return parse_text(body, len, false, sink, err);
    case DR_EXPO_OPENMETRICS:
        return parse_text(body, len, true, sink, err);
    case DR_EXPO_PROTOBUF:
        return dr_expo_parse_protobuf(body, len, sink, err);
    }
    dr_error_set(err, "unknown exposition format %d", (int)fmt);
    return DR_EINVAL;
}

/* ---- Content-Type --------------------------------------------------------- */

/* RFC 2045 token characters. */
static bool is_token_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("()<>@,;:\\\"/[]?=", c);
}

static const char *skip_space(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

static const char *skip_token(const char *s)
{
    while (*s && is_token_char((unsigned char)*s))
        s++;
    return s;
}

/* Whether the parameters after the media type parse (as Go's
 * mime.ParseMediaType wants them: token=token or token="quoted", a
 * trailing ';' allowed). */
static bool params_ok(const char *s)
{
    for (;;) {
        s = skip_space(s);
        if (!*s)
            return true;
        if (*s != ';')
            return false;
        s = skip_space(s + 1);
        if (!*s)
            return true;
        const char *k = skip_token(s);
        if (k == s || *k != '=')
            return false;
        s = k + 1;
        if (*s == '"') {
            for (s++; *s && *s != '"'; s++)
                if (*s == '\\' && s[1])
                    s++;
            if (*s != '"')
                return false;
            s++;
        } else {
            const char *v = skip_token(s);
            if (v == s)
                return false;
            s = v;
        }
    }
}

/*
 * As Prometheus picks a parser: by the media type alone (parameters are
 * not looked at, so any OpenMetrics version and any protobuf encoding
 * parameter select those parsers). A missing, empty, unparsable or
 * unsupported Content-Type is where Prometheus uses the target's
 * fallback_scrape_protocol (and fails the scrape without one): *known is
 * false then, and the format returned is text 0.0.4.
 */
dr_expo_format dr_expo_format_of(const char *content_type, bool *known)
{
    bool ok = false;
    dr_expo_format f = DR_EXPO_TEXT;
    if (content_type) {
        const char *s = skip_space(content_type);
        const char *type_end = skip_token(s);
        if (type_end > s && *type_end == '/') {
            const char *sub = type_end + 1;
            const char *sub_end = skip_token(sub);
            if (sub_end > sub && params_ok(sub_end)) {
                size_t n = (size_t)(sub_end - s);
                static const struct {
                    const char *mt;
                    dr_expo_format f;
                } types[] = {
                    {"text/plain", DR_EXPO_TEXT},
                    {"application/openmetrics-text", DR_EXPO_OPENMETRICS},
                    {"application/vnd.google.protobuf", DR_EXPO_PROTOBUF},
                };
                for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
                    if (strlen(types[i].mt) == n && strncasecmp(s, types[i].mt, n) == 0) {
                        f = types[i].f;
                        ok = true;
                    }
                }
            }
        }
    }
    if (known)
        *known = ok;
    return f;
}

const char *dr_metric_type_name(dr_metric_type t)
{
    switch (t) {
    case DR_MT_COUNTER:
        return "counter";
    case DR_MT_GAUGE:
        return "gauge";
    case DR_MT_HISTOGRAM:
        return "histogram";
    case DR_MT_GAUGEHISTOGRAM:
        return "gaugehistogram";
    case DR_MT_SUMMARY:
        return "summary";
    case DR_MT_INFO:
        return "info";
    case DR_MT_STATESET:
        return "stateset";
    case DR_MT_UNKNOWN:
    default:
        return "untyped";
    }
}
