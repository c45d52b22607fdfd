#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "drover/plugin.h"
#include "json.h"
#include "test.h"

/* Escapes s[0..n) and checks the quoted output and the replacement count. */
static void check_escape(const char *s, size_t n, const char *want, long want_bad, int line)
{
    dr_buf b = {0};
    long bad = dr_json_string(&b, s, n);
    dt_check_int(bad, want_bad, __FILE__, line, "replacements");
    dt_check_mem(b.p, b.len, want, strlen(want), __FILE__, line, "escaped");
    dr_buf_free(&b);
}

#define ESC(lit, want, bad) check_escape(lit, sizeof(lit) - 1, want, bad, __LINE__)
#define FFFD "\xEF\xBF\xBD"

void test_json_escape_table(void)
{
    ESC("", "\"\"", 0);
    ESC("plain text", "\"plain text\"", 0);
    ESC("\"", "\"\\\"\"", 0);
    ESC("\\", "\"\\\\\"", 0);
    ESC("/", "\"/\"", 0);
    ESC("\n\t\r\b\f", "\"\\n\\t\\r\\b\\f\"", 0);
    ESC("\x01\x1f", "\"\\u0001\\u001f\"", 0);
    ESC("a\0b", "\"a\\u0000b\"", 0);
    ESC("\x7f", "\"\x7f\"", 0);
    ESC("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", 0);
    /* Longer than one 8-byte word, specials on and across word edges. */
    ESC("0123456789abcdef\"0123456\n", "\"0123456789abcdef\\\"0123456\\n\"", 0);
    ESC("01234567\xc3\xa9"
        "0123456",
        "\"01234567\xc3\xa9"
        "0123456\"",
        0);
    ESC("0123456\xe2\x82\xac"
        "89abcdef",
        "\"0123456\xe2\x82\xac"
        "89abcdef\"",
        0);
}

void test_json_escape_appends(void)
{
    dr_buf b = {0};
    dr_buf_puts(&b, "{\"msg\":");
    CHECK_INT(dr_json_string(&b, "x\"y", 3), 0);
    dr_buf_putc(&b, '}');
    CHECK_MEM(b.p, b.len, "{\"msg\":\"x\\\"y\"}", 14);
    dr_buf_free(&b);

    /* NULL with length 0 is an empty string, not a crash. */
    CHECK_INT(dr_json_string(&b, NULL, 0), 0);
    CHECK_MEM(b.p, b.len, "\"\"", 2);
    dr_buf_free(&b);
}

void test_json_invalid_utf8(void)
{
    ESC("\xff", "\"" FFFD "\"", 1);
    ESC("\xc3", "\"" FFFD "\"", 1);                            /* truncated 2-byte */
    ESC("\xe2\x82", "\"" FFFD "\"", 1);                        /* truncated 3-byte: one subpart */
    ESC("\xed\xa0\x80", "\"" FFFD FFFD FFFD "\"", 3);          /* surrogate U+D800 */
    ESC("\xf4\x90\x80\x80", "\"" FFFD FFFD FFFD FFFD "\"", 4); /* > U+10FFFF */
    ESC("\xc0\xaf", "\"" FFFD FFFD "\"", 2);                   /* overlong '/' */
    ESC("\xe0\x80\xaf", "\"" FFFD FFFD FFFD "\"", 3);          /* overlong, 3-byte */
    ESC("\xf0\x80\x80\xaf", "\"" FFFD FFFD FFFD FFFD "\"", 4); /* overlong, 4-byte */
    ESC("\xf5\x80", "\"" FFFD FFFD "\"", 2);
    ESC("\x80", "\"" FFFD "\"", 1); /* lone continuation */
    ESC("a\xe2\x82"
        "b",
        "\"a" FFFD "b\"", 1);
    ESC("\xf0\x9f\x98\"", "\"" FFFD "\\\"\"", 1); /* the quote is not swallowed */
    /* The example of Unicode chapter 3 ("U+FFFD substitution of maximal
     * subparts"): 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64. */
    ESC("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64",
        "\"a" FFFD FFFD FFFD "b" FFFD "c" FFFD FFFD "d\"", 6);
    /* The edges of the valid ranges stay as they are. */
    ESC("\xc2\x80\xdf\xbf", "\"\xc2\x80\xdf\xbf\"", 0);
    ESC("\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf",
        "\"\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf\"", 0);
    ESC("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", "\"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"", 0);
}

/* ---- a slow reference escaper to compare the fast one with ---------------- */

/* Length of the valid sequence at s[i], or 0. Written from the table of
 * well-formed byte sequences (Unicode 3.9, table 3-7). */
static size_t ref_valid(const unsigned char *s, size_t i, size_t n)
{
    static const struct {
        unsigned char lead_lo, lead_hi, lo2, hi2;
        int len;
    } rows[] = {
        {0xC2, 0xDF, 0x80, 0xBF, 2}, {0xE0, 0xE0, 0xA0, 0xBF, 3}, {0xE1, 0xEC, 0x80, 0xBF, 3},
        {0xED, 0xED, 0x80, 0x9F, 3}, {0xEE, 0xEF, 0x80, 0xBF, 3}, {0xF0, 0xF0, 0x90, 0xBF, 4},
        {0xF1, 0xF3, 0x80, 0xBF, 4}, {0xF4, 0xF4, 0x80, 0x8F, 4},
    };
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        if (s[i] < rows[r].lead_lo || s[i] > rows[r].lead_hi)
            continue;
        size_t len = (size_t)rows[r].len;
        if (i + len > n || s[i + 1] < rows[r].lo2 || s[i + 1] > rows[r].hi2)
            return 0;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return 0;
        return len;
    }
    return 0;
}

/* The maximal subpart: the longest prefix at s[i] (at least its first byte)
 * that some well-formed sequence starts with. A prefix of two or three bytes
 * qualifies when padding it with continuation bytes makes it valid. */
static size_t ref_subpart(const unsigned char *s, size_t i, size_t n)
{
    size_t best = 1;
    for (size_t len = 2; len <= 3 && i + len <= n; len++) {
        bool found = false;
        for (size_t total = len + 1; total <= 4 && !found; total++) {
            unsigned char probe[4] = {0x80, 0x80, 0x80, 0x80};
            memcpy(probe, s + i, len);
            found = ref_valid(probe, 0, total) == total;
        }
        if (!found)
            break;
        best = len;
    }
    return best;
}

static long ref_escape(dr_buf *b, const unsigned char *s, size_t n)
{
    long bad = 0;
    dr_buf_putc(b, '"');
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            dr_buf_putc(b, '\\');
            dr_buf_putc(b, (char)c);
            i++;
        } else if (c < 0x20) {
            const char *short_form = c == '\n'   ? "\\n"
                                     : c == '\t' ? "\\t"
                                     : c == '\r' ? "\\r"
                                     : c == '\b' ? "\\b"
                                     : c == '\f' ? "\\f"
                                                 : NULL;
            if (short_form)
                dr_buf_puts(b, short_form);
            else
                dr_buf_printf(b, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            dr_buf_putc(b, (char)c);
            i++;
        } else {
            size_t len = ref_valid(s, i, n);
            if (len) {
                dr_buf_append(b, s + i, len);
                i += len;
            } else {
                dr_buf_puts(b, FFFD);
                bad++;
                i += ref_subpart(s, i, n);
            }
        }
    }
    dr_buf_putc(b, '"');
    return bad;
}

static uint32_t rng_state = 12345;

static uint32_t rng(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return rng_state >> 8;
}

void test_json_escape_matches_reference(void)
{
    /* Bytes weighted toward the interesting ones. */
    static const unsigned char pool[] = {'a',  'b',  ' ',  '"',  '\\', '\n', 0x01, 0x1f, 0x7f,
                                         0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xdf,
                                         0xe0, 0xe1, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff};
    unsigned char s[64];
    dr_buf got = {0}, want = {0};
    int mismatches = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = rng() % sizeof s;
        for (size_t i = 0; i < n; i++)
            s[i] = rng() % 3 ? 'x' : pool[rng() % sizeof pool];
        dr_buf_reset(&got);
        dr_buf_reset(&want);
        long g = dr_json_string(&got, (const char *)s, n);
        long w = ref_escape(&want, s, n);
        if (g != w || got.len != want.len || memcmp(got.p, want.p, got.len) != 0) {
            if (mismatches++ < 3)
                CHECK_MEM(got.p, got.len, want.p, want.len);
        }
    }
    CHECK_INT(mismatches, 0);
    dr_buf_free(&got);
    dr_buf_free(&want);
}

/* ---- sanitising without escaping ------------------------------------------ */

/* The reference: valid sequences and every ASCII byte (controls, quotes)
 * as they are, each maximal invalid subpart as one U+FFFD. */
static long ref_sanitize(dr_buf *b, const unsigned char *s, size_t n)
{
    long bad = 0;
    for (size_t i = 0; i < n;) {
        size_t len = s[i] < 0x80 ? 1 : ref_valid(s, i, n);
        if (len) {
            dr_buf_append(b, s + i, len);
            i += len;
        } else {
            dr_buf_puts(b, FFFD);
            bad++;
            i += ref_subpart(s, i, n);
        }
    }
    return bad;
}

static void check_sanitize(const char *s, size_t n, const char *want, long want_bad, int line)
{
    dr_buf b = {0};
    dr_buf_puts(&b, "<");
    long bad = dr_utf8_sanitize(&b, s, n);
    dt_check_int(bad, want_bad, __FILE__, line, "replacements");
    dt_check_mem(b.p, b.len, want, strlen(want), __FILE__, line, "sanitised");
    dr_buf_free(&b);
}

#define SAN(lit, want, bad) check_sanitize(lit, sizeof(lit) - 1, "<" want, bad, __LINE__)

void test_json_utf8_sanitize(void)
{
    SAN("", "", 0);
    SAN("plain \"quoted\" \\ \n\t\x01", "plain \"quoted\" \\ \n\t\x01", 0);
    SAN("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
        0);
    SAN("\xff", FFFD, 1);
    SAN("0123456789abcdef\xe2\x82", "0123456789abcdef" FFFD, 1);
    SAN("\xed\xa0\x80", FFFD FFFD FFFD, 3);
    SAN("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64",
        "a" FFFD FFFD FFFD "b" FFFD "c" FFFD FFFD "d", 6);
    check_sanitize(NULL, 0, "<", 0, __LINE__);

    /* Random strings against the reference, and the same count as
     * dr_json_string gives. */
    static const unsigned char pool[] = {'a',  '"',  '\\', '\n', 0x00, 0x7f, 0x80, 0x8f,
                                         0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0,
                                         0xe1, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff};
    unsigned char s[80];
    dr_buf got = {0}, want = {0}, json = {0};
    int mismatches = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = rng() % sizeof s;
        for (size_t i = 0; i < n; i++)
            s[i] = rng() % 3 ? 'x' : pool[rng() % sizeof pool];
        dr_buf_reset(&got);
        dr_buf_reset(&want);
        dr_buf_reset(&json);
        long g = dr_utf8_sanitize(&got, (const char *)s, n);
        long w = ref_sanitize(&want, s, n);
        long j = dr_json_string(&json, (const char *)s, n);
        if (g != w || g != j || got.len != want.len || memcmp(got.p, want.p, got.len) != 0) {
            if (mismatches++ < 3)
                CHECK_MEM(got.p, got.len, want.p, want.len);
        }
    }
    CHECK_INT(mismatches, 0);
    dr_buf_free(&got);
    dr_buf_free(&want);
    dr_buf_free(&json);
}

/* ---- timestamps ------------------------------------------------------------ */

static void check_format(int64_t ns, const char *want, int line)
{
    char out[31];
    size_t n = dr_format_rfc3339nano(ns, out);
    dt_check_int((long long)n, 30, __FILE__, line, "length");
    dt_check_str(out, want, __FILE__, line, "formatted");
}

void test_json_rfc3339_format(void)
{
    check_format(0, "1970-01-01T00:00:00.000000000Z", __LINE__);
    check_format(1, "1970-01-01T00:00:00.000000001Z", __LINE__);
    check_format(-1, "1969-12-31T23:59:59.999999999Z", __LINE__);
    check_format(-1000000000, "1969-12-31T23:59:59.000000000Z", __LINE__);
    check_format(-14182940LL * 1000000000 + 5, "1969-07-20T20:17:40.000000005Z", __LINE__);
    check_format(1557255470904275087LL, "2019-05-07T18:57:50.904275087Z", __LINE__);
    check_format(1709208000LL * 1000000000, "2024-02-29T12:00:00.000000000Z", __LINE__);
    check_format(951782400LL * 1000000000, "2000-02-29T00:00:00.000000000Z", __LINE__);
    check_format(INT64_MAX, "2262-04-11T23:47:16.854775807Z", __LINE__);
    check_format(INT64_MIN, "1677-09-21T00:12:43.145224192Z", __LINE__);
}

static void check_parse(const char *s, int64_t want, int line)
{
    int64_t ns = 12345;
    int rc = dr_parse_rfc3339(s, strlen(s), &ns);
    dt_check_int(rc, 0, __FILE__, line, s);
    dt_check_int(ns, want, __FILE__, line, s);
}

void test_json_rfc3339_parse(void)
{
    const int64_t t = 1557255470LL * 1000000000;
    check_parse("2019-05-07T18:57:50.904275087+00:00", t + 904275087, __LINE__);
    check_parse("2019-05-07T18:57:50.904275087Z", t + 904275087, __LINE__);
    check_parse("2019-05-07t18:57:50.904275087z", t + 904275087, __LINE__);
    check_parse("2019-05-07T18:57:50Z", t, __LINE__);
    check_parse("2019-05-07T18:57:50.9Z", t + 900000000, __LINE__);
    check_parse("2019-05-07T18:57:50.000000001Z", t + 1, __LINE__);
    check_parse("2019-05-07T18:57:50.904275087999Z", t + 904275087, __LINE__); /* cut */
    check_parse("2019-05-07T20:57:50.5+02:00", t + 500000000, __LINE__);
    check_parse("2019-05-07T13:27:50-05:30", t, __LINE__);
    check_parse("2019-05-08T00:00:50+05:02", t + 60000000000LL, __LINE__);
    check_parse("2016-10-20T18:39:20.57606443Z", 1476988760LL * 1000000000 + 576064430, __LINE__);
    check_parse("1969-12-31T23:59:59.999999999Z", -1, __LINE__);
    check_parse("1970-01-01T00:00:00Z", 0, __LINE__);
    check_parse("2024-02-29T12:00:00Z", 1709208000LL * 1000000000, __LINE__);
    /* A leap second is the first second of the next minute. */
    check_parse("2016-12-31T23:59:60Z", (1483228799LL + 1) * 1000000000, __LINE__);
    /* The ends of int64 nanoseconds. */
    check_parse("2262-04-11T23:47:16.854775807Z", INT64_MAX, __LINE__);
    check_parse("1677-09-21T00:12:43.145224192Z", INT64_MIN, __LINE__);
}

void test_json_rfc3339_round_trip(void)
{
    char out[31];
    int bad = 0;
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 100000; i++) {
        /* xorshift64: covers the whole int64 range, both signs */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t ns = (int64_t)x;
        if (i % 2)
            ns /= 1000; /* and plenty of values near 1970 */
        int64_t back = 0;
        size_t n = dr_format_rfc3339nano(ns, out);
        if (dr_parse_rfc3339(out, n, &back) != 0 || back != ns) {
            if (bad++ < 3)
                CHECK_STR(out, "something that parses back");
        }
    }
    CHECK_INT(bad, 0);
}

void test_json_rfc3339_errors(void)
{
    static const char *const bad[] = {
        "",
        "2019",
        "2019-05-07",
        "2019-05-07T18:57:50",            /* no offset */
        "2019-05-07T18:57:50.Z",          /* empty fraction */
        "2019-05-07T18:57:50.904275087",  /* no offset */
        "2019-05-07 18:57:50Z",           /* space instead of T */
        "2019-05-07T18:57:50+0000",       /* offset without colon */
        "2019-05-07T18:57:50+00",         /* short offset */
        "2019-05-07T18:57:50+24:00",      /* offset hour */
        "2019-05-07T18:57:50+00:60",      /* offset minute */
        "2019-05-07T18:57:50ZZ",          /* trailing garbage */
        "2019-05-07T18:57:50Z ",          /* trailing space */
        " 2019-05-07T18:57:50Z",          /* leading space */
        "2019-5-07T18:57:50Z",            /* one-digit month */
        "2O19-05-07T18:57:50Z",           /* letter O */
        "2019-00-07T18:57:50Z",           /* month 0 */
        "2019-13-07T18:57:50Z",           /* month 13 */
        "2019-05-00T18:57:50Z",           /* day 0 */
        "2019-04-31T18:57:50Z",           /* April 31 */
        "2019-02-29T18:57:50Z",           /* not a leap year */
        "1900-02-29T18:57:50Z",           /* not a leap year either */
        "2019-05-07T24:00:00Z",           /* hour 24 */
        "2019-05-07T18:60:50Z",           /* minute 60 */
        "2019-05-07T18:57:61Z",           /* second 61 */
        "2019-05-07T18:57:5Z",            /* one-digit second */
        "2019-05-07T18:57:50.-1Z",        /* sign in fraction */
        "2019-05-07T18:57:50,5Z",         /* comma fraction */
        "9999-12-31T23:59:59Z",           /* beyond int64 nanoseconds */
        "0000-01-01T00:00:00Z",           /* before them */
        "2262-04-11T23:47:16.854775808Z", /* one past INT64_MAX */
        "1677-09-21T00:12:43.145224191Z", /* one before INT64_MIN */
        "2019-05-07T18:57:50.904275087+00:00x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ns = 777;
        int rc = dr_parse_rfc3339(bad[i], strlen(bad[i]), &ns);
        dt_check_int(rc, DR_EINVAL, __FILE__, __LINE__, bad[i]);
        dt_check_int(ns, 777, __FILE__, __LINE__, bad[i]);
    }
    /* The length counts, not a NUL: a prefix of a good timestamp is bad. */
    const char *good = "2019-05-07T18:57:50Z";
    int64_t ns;
    for (size_t n = 0; n < strlen(good); n++) {
        char *copy = malloc(n ? n : 1); /* exact size: ASan sees any overread */
        memcpy(copy, good, n);
        CHECK_INT(dr_parse_rfc3339(copy, n, &ns), DR_EINVAL);
        free(copy);
    }
}
