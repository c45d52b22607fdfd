#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/inputs/tail/format.h"
#include "drover/plugin.h"
#include "json.h"
#include "test.h"

/* A copy of exactly n bytes, without a terminating NUL, so that ASan
 * reports any read past the length. */
static char *exact_copy(const char *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    if (n)
        memcpy(p, s, n);
    return p;
}

static int64_t ts(const char *s)
{
    int64_t ns = -1;
    CHECK_INT(dr_parse_rfc3339(s, strlen(s), &ns), 0);
    return ns;
}

static int cri(const char *s, dr_line *ln)
{
    return dr_cri_parse(s, strlen(s), ln);
}

/* ---- the kubelet's own cases ---------------------------------------------------- */

/* Just enough JSON for the fixture: finds `"key": "` in [p, limit) and
 * decodes that string (escapes \" \\ \/ \n \t only; the fixture has no
 * others) into out. */
static bool fixture_string(const char *p, const char *limit, const char *key, char *out, size_t cap)
{
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\": \"", key);
    const char *at = strstr(p, pattern);
    if (!at || at >= limit)
        return false;
    const char *r = at + strlen(pattern);
    size_t n = 0;
    while (*r && *r != '"' && n + 1 < cap) {
        char c = *r++;
        if (c == '\\') {
            c = *r++;
            c = c == 'n' ? '\n' : c == 't' ? '\t' : c;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    return *r == '"';
}

static void check_kubelet_case(const char *line, const char *format, const char *p,
                               const char *limit)
{
    size_t len = strlen(line);
    CHECK(len > 0 && line[len - 1] == '\n');
    len--; /* our parsers take the line without its newline */
    char *buf = exact_copy(line, len);
    dr_line ln;

    if (strcmp(format, "neither") == 0) {
        CHECK_INT(dr_cri_parse(buf, len, &ln), DR_EINVAL);
        CHECK_INT(dr_docker_parse(buf, len, &ln), DR_EINVAL);
        CHECK_INT(dr_format_detect(buf, len), DR_FMT_UNKNOWN);
        free(buf);
        return;
    }

    char want_ts[64], want_stream[16], want_log[256];
    CHECK(fixture_string(p, limit, "timestamp", want_ts, sizeof want_ts));
    CHECK(fixture_string(p, limit, "stream", want_stream, sizeof want_stream));
    CHECK(fixture_string(p, limit, "log", want_log, sizeof want_log));

    bool docker = strcmp(format, "docker json-file") == 0;
    CHECK(docker || strcmp(format, "cri") == 0);
    CHECK_INT(dr_format_detect(buf, len), docker ? DR_FMT_DOCKER : DR_FMT_CRI);
    int rc = docker ? dr_docker_parse(buf, len, &ln) : dr_cri_parse(buf, len, &ln);
    CHECK_INT(rc, 0);
    if (rc == 0) {
        CHECK_INT(ln.time_ns, ts(want_ts));
        CHECK_INT(ln.stream,
                  strcmp(want_stream, "stderr") == 0 ? DR_STREAM_STDERR : DR_STREAM_STDOUT);
        /* The kubelet keeps the newline of a full line in the message; ours
         * is the record separator and not part of msg. The same newline
         * tells whether the line is complete: the docker cases of the table
         * have no "\n" in "log" at all, so for us they are partial. */
        size_t want_len = strlen(want_log);
        bool full = want_len > 0 && want_log[want_len - 1] == '\n';
        CHECK_MEM(ln.msg, ln.msg_len, want_log, want_len - full);
        CHECK(ln.partial == !full);
    }
    /* Not the other format. */
    memcpy(buf, line, len);
    CHECK_INT(docker ? dr_cri_parse(buf, len, &ln) : dr_docker_parse(buf, len, &ln), DR_EINVAL);
    free(buf);
}

void test_formats_kubelet_cases(void)
{
    char *json = dt_read_file(dt_fixture("container-logs/cri/kubelet-parselog-cases.json"), NULL);
    CHECK(json != NULL);
    if (!json)
        return;
    int cases = 0;
    const char *p = strstr(json, "\"line\": \"");
    while (p) {
        const char *next = strstr(p + 1, "\"line\": \"");
        const char *limit = next ? next : p + strlen(p);
        char line[512], format[64];
        CHECK(fixture_string(p, limit, "line", line, sizeof line));
        CHECK(fixture_string(p, limit, "format", format, sizeof format));
        check_kubelet_case(line, format, p, limit);
        cases++;
        p = next;
    }
    CHECK_INT(cases, 7);
    free(json);
}

/* ---- CRI -------------------------------------------------------------------------- */

#define FFFD_BYTES "\xEF\xBF\xBD"
#define T0 "2016-10-20T18:39:20.57606443Z"

void test_formats_cri_fields(void)
{
    dr_line ln;
    const char *s = T0 " stderr F hello world";
    CHECK_INT(cri(s, &ln), 0);
    CHECK_INT(ln.time_ns, ts(T0));
    CHECK_INT(ln.stream, DR_STREAM_STDERR);
    CHECK(!ln.partial);
    CHECK(ln.msg == s + strlen(T0 " stderr F "));
    CHECK_MEM(ln.msg, ln.msg_len, "hello world", 11);

    CHECK_INT(cri(T0 " stdout P:TAG1:TAG2 piece", &ln), 0);
    CHECK(ln.partial);
    CHECK_MEM(ln.msg, ln.msg_len, "piece", 5);

    /* Everything after the one separator is message, spaces included. */
    CHECK_INT(cri(T0 " stdout F   indented  ", &ln), 0);
    CHECK_MEM(ln.msg, ln.msg_len, "  indented  ", 12);
    CHECK_INT(cri(T0 " stdout F:x  two", &ln), 0);
    CHECK_MEM(ln.msg, ln.msg_len, " two", 4);

    /* Empty messages, with and without the separator. */
    CHECK_INT(cri(T0 " stdout F", &ln), 0);
    CHECK_INT(ln.msg_len, 0);
    CHECK(!ln.partial);
    CHECK_INT(cri(T0 " stdout F ", &ln), 0);
    CHECK_INT(ln.msg_len, 0);
    CHECK_INT(cri(T0 " stdout P", &ln), 0);
    CHECK_INT(ln.msg_len, 0);
    CHECK(ln.partial);

    /* Offsets other than Z, as CRI-O writes them. */
    CHECK_INT(cri("2019-05-07T18:57:50.904275087+00:00 stdout F x", &ln), 0);
    CHECK_INT(ln.time_ns, 1557255470904275087LL);
}

void test_formats_cri_binary(void)
{
    /* NULs, invalid UTF-8 and a carriage return are message bytes like any. */
    static const char line[] = T0 " stdout F a\0b\xff\xfe\xc3(\r";
    size_t len = sizeof line - 1;
    char *buf = exact_copy(line, len);
    dr_line ln;
    CHECK_INT(dr_cri_parse(buf, len, &ln), 0);
    CHECK_MEM(ln.msg, ln.msg_len, "a\0b\xff\xfe\xc3(\r", 8);
    free(buf);
}

void test_formats_cri_garbage(void)
{
    static const char *const bad[] = {
        "",
        "x",
        T0,
        T0 " ",
        T0 " stdout",
        T0 " stdout ",
        T0 " stdin F x",
        T0 " stdoutF x",
        T0 "  stdout F x",
        T0 " stdout  F x",
        T0 " stdout X x",
        T0 " stdout PF x",
        T0 " stdout p x",
        T0 " stdout :F x",
        "2016-10-20 18:39:20Z stdout F x",
        "2016-10-20T18:39:20 stdout F x",
        "not-a-time stdout F x",
        " " T0 " stdout F x",
        "{\"log\":\"x\\n\",\"stream\":\"stdout\",\"time\":\"" T0 "\"}",
    };
    dr_line ln;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        dt_check_int(cri(bad[i], &ln), DR_EINVAL, __FILE__, __LINE__, bad[i]);

    /* No prefix of a good line reads past its end (ASan watches). */
    const char *good = T0 " stdout P:a msg";
    for (size_t n = 0; n <= strlen(good); n++) {
        char *buf = exact_copy(good, n);
        int rc = dr_cri_parse(buf, n, &ln);
        /* Only the full tag onwards makes a line. */
        CHECK_INT(rc, n >= strlen(T0 " stdout P") ? 0 : DR_EINVAL);
        free(buf);
    }
}

void test_formats_cri_huge_line(void)
{
    size_t n = 8u << 20;
    char *line = malloc(n);
    size_t head = (size_t)snprintf(line, n, T0 " stdout F ");
    memset(line + head, 'x', n - head);
    dr_line ln;
    CHECK_INT(dr_cri_parse(line, n, &ln), 0);
    CHECK_INT(ln.msg_len, n - head);
    free(line);
}

void test_formats_detect(void)
{
    CHECK_INT(dr_format_detect(T0 " stdout F x", strlen(T0 " stdout F x")), DR_FMT_CRI);
    CHECK_INT(dr_format_detect(T0 " stderr", strlen(T0 " stderr")), DR_FMT_CRI);
    CHECK_INT(dr_format_detect("{\"log\":\"x\"}", 11), DR_FMT_DOCKER);
    CHECK_INT(dr_format_detect(" {", 2), DR_FMT_DOCKER);
    CHECK_INT(dr_format_detect("", 0), DR_FMT_UNKNOWN);
    CHECK_INT(dr_format_detect("hello world", 11), DR_FMT_UNKNOWN);
    CHECK_INT(dr_format_detect(T0 " stdin F x", strlen(T0 " stdin F x")), DR_FMT_UNKNOWN);
    CHECK_INT(dr_format_detect(T0 " stdoutx", strlen(T0 " stdoutx")), DR_FMT_UNKNOWN);
}

/* ---- docker json-file ---------------------------------------------------------- */

/* Parses a copy of s; the copy stays alive in *keep for the message. */
static int docker(const char *s, dr_line *ln, char **keep)
{
    size_t n = strlen(s);
    *keep = exact_copy(s, n);
    return dr_docker_parse(*keep, n, ln);
}

static void check_docker_log(const char *s, const char *want, size_t want_len, bool partial,
                             int line)
{
    char *buf;
    dr_line ln;
    int rc = docker(s, &ln, &buf);
    dt_check_int(rc, 0, __FILE__, line, s);
    if (rc == 0) {
        dt_check_mem(ln.msg, ln.msg_len, want, want_len, __FILE__, line, s);
        dt_check(ln.partial == partial, __FILE__, line, "partial");
    }
    free(buf);
}

#define LOG(s, want, partial) check_docker_log(s, want, sizeof(want) - 1, partial, __LINE__)

void test_formats_docker_fields(void)
{
    dr_line ln;
    char *buf;

    CHECK_INT(docker("{\"log\":\"hi\\n\",\"stream\":\"stderr\",\"time\":\"" T0 "\"}", &ln, &buf),
              0);
    CHECK_MEM(ln.msg, ln.msg_len, "hi", 2);
    CHECK(!ln.partial);
    CHECK_INT(ln.stream, DR_STREAM_STDERR);
    CHECK_INT(ln.time_ns, ts(T0));
    free(buf);

    /* Any key order, whitespace, and other keys of every kind skipped. */
    CHECK_INT(docker(" { \"time\" : \"" T0 "\" ,\n\t\"attrs\": {\"a\": [1, -2.5e+3, 0.0, "
                     "true, false, null, {\"x\": [[], {}]}], \"b\": \"}\\\"]\"},"
                     " \"n\": -0, \"stream\": \"stderr\", \"log\": \"x\\n\" } \r",
                     &ln, &buf),
              0);
    CHECK_MEM(ln.msg, ln.msg_len, "x", 1);
    CHECK_INT(ln.stream, DR_STREAM_STDERR);
    CHECK_INT(ln.time_ns, ts(T0));
    free(buf);

    /* Without stream: stdout. Without time: 0, for the caller to replace. */
    CHECK_INT(docker("{\"log\":\"x\\n\"}", &ln, &buf), 0);
    CHECK_INT(ln.stream, DR_STREAM_STDOUT);
    CHECK_INT(ln.time_ns, 0);
    free(buf);

    /* A piece of a longer line, and an empty one. */
    LOG("{\"log\":\"no newline\"}", "no newline", true);
    LOG("{\"log\":\"\"}", "", true);
    LOG("{\"log\":\"\\n\"}", "", false);
    LOG("{\"log\":\"two\\n\\n\"}", "two\n", false);
    LOG("{\"log\":\"crlf\\r\\n\"}", "crlf\r", false);
}

void test_formats_docker_escapes(void)
{
    LOG("{\"log\":\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"}", "\" \\ / \b \f \n \r \t", true);
    LOG("{\"log\":\"\\u0041\\u00e9\\u20AC\\n\"}", "A\xc3\xa9\xe2\x82\xac", false);
    LOG("{\"log\":\"nul \\u0000 byte\"}", "nul \0 byte", true);
    /* Surrogate pairs become one 4-byte sequence; halves alone become U+FFFD. */
    LOG("{\"log\":\"\\ud83d\\ude00\"}", "\xf0\x9f\x98\x80", true);
    LOG("{\"log\":\"\\uDBFF\\uDFFF\"}", "\xf4\x8f\xbf\xbf", true);
    LOG("{\"log\":\"\\ud83d\"}", FFFD_BYTES, true);
    LOG("{\"log\":\"\\ude00x\"}", FFFD_BYTES "x", true);
    LOG("{\"log\":\"\\ud83d\\u0041\"}", FFFD_BYTES "A", true);
    LOG("{\"log\":\"\\ud83d\\ud83d\\ude00\"}", FFFD_BYTES "\xf0\x9f\x98\x80", true);
    LOG("{\"log\":\"\\ud83dx\"}", FFFD_BYTES "x", true);
    /* Raw bytes that are not UTF-8 are passed on as they are. */
    LOG("{\"log\":\"\xff\xc3(\"}", "\xff\xc3(", true);
}

void test_formats_docker_invalid(void)
{
    static const char *const bad[] = {
        "",
        "x",
        "[]",
        "{}",
        "{\"stream\":\"stdout\"}", /* no log */
        "{\"log\":1}",             /* log not a string */
        "{\"log\":null}",
        "{\"log\":\"x\",\"stream\":\"stdin\"}", /* unknown stream */
        "{\"log\":\"x\",\"stream\":1}",
        "{\"log\":\"x\",\"time\":\"yesterday\"}",
        "{\"log\":\"x\",\"time\":0}",
        "{\"log\":\"x\"} x", /* trailing garbage */
        "{\"log\":\"x\"}}",
        "{\"log\":\"x\",}",                      /* trailing comma */
        "{\"log\":\"x\" \"stream\":\"stdout\"}", /* missing comma */
        "{\"log\" \"x\"}",                       /* missing colon */
        "{log:\"x\"}",
        "{\"log\":\"bad \\x escape\"}",
        "{\"log\":\"bad \\u12 escape\"}",
        "{\"log\":\"bad \\u12G4 escape\"}",
        "{\"log\":\"unterminated}",
        "{\"log\":\"x\",\"a\":01}", /* leading zero */
        "{\"log\":\"x\",\"a\":1.}",
        "{\"log\":\"x\",\"a\":.5}",
        "{\"log\":\"x\",\"a\":1e}",
        "{\"log\":\"x\",\"a\":-}",
        "{\"log\":\"x\",\"a\":tru}",
        "{\"log\":\"x\",\"a\":[1,]}",
        "{\"log\":\"x\",\"a\":[1 2]}",
        "{\"log\":\"x\",\"a\":{\"b\"}}",
        "{\"log\":\"x\",\"a\":{1:2}}",
        "{\"log\":\"x\",\"a\":[}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *buf;
        dr_line ln;
        dt_check_int(docker(bad[i], &ln, &buf), DR_EINVAL, __FILE__, __LINE__, bad[i]);
        free(buf);
    }

    /* Nesting beyond any reason is refused, not recursed into. */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 32);
    size_t n = (size_t)sprintf(deep, "{\"log\":\"x\",\"a\":");
    memset(deep + n, '[', depth);
    memset(deep + n + depth, ']', depth);
    n += 2 * depth;
    deep[n++] = '}';
    dr_line ln;
    CHECK_INT(dr_docker_parse(deep, n, &ln), DR_EINVAL);
    free(deep);
}

void test_formats_docker_truncated(void)
{
    /* Every prefix of a good line fails, reads nothing past its length
     * (ASan watches the exact-size copies) and leaves the line as it was,
     * so that the caller can still report the raw line. */
    const char *good = "{\"log\":\"esc \\\"aped\\\" \\u00e9\\ud83d\\ude00\\n\",\"attrs\":"
                       "{\"k\":[1,2.5e3,true,null]},\"stream\":\"stderr\",\"time\":\"" T0 "\"}";
    size_t len = strlen(good);
    for (size_t n = 0; n < len; n++) {
        char *buf = exact_copy(good, n);
        dr_line ln;
        CHECK_INT(dr_docker_parse(buf, n, &ln), DR_EINVAL);
        CHECK(n == 0 || memcmp(buf, good, n) == 0);
        free(buf);
    }
    char *buf = exact_copy(good, len);
    dr_line ln;
    CHECK_INT(dr_docker_parse(buf, len, &ln), 0);
    CHECK_MEM(ln.msg, ln.msg_len, "esc \"aped\" \xc3\xa9\xf0\x9f\x98\x80", 17);
    free(buf);
}

void test_formats_docker_huge_line(void)
{
    static const char head[] = "{\"log\":\"";
    static const char tail[] = "\\n\",\"stream\":\"stdout\",\"time\":\"" T0 "\"}";
    size_t body = 80000 * 100; /* 8 MB of "xxx...x\t" in blocks of 100 */
    size_t n = sizeof head - 1 + body + sizeof tail - 1;
    char *line = malloc(n);
    memcpy(line, head, sizeof head - 1);
    char *p = line + sizeof head - 1;
    for (size_t i = 0; i < body; i++)
        p[i] = i % 100 == 98 ? '\\' : i % 100 == 99 ? 't' : 'x';
    memcpy(p + body, tail, sizeof tail - 1);
    dr_line ln;
    CHECK_INT(dr_docker_parse(line, n, &ln), 0);
    CHECK_INT(ln.msg_len, body / 100 * 99);
    CHECK(!ln.partial);
    CHECK(ln.msg_len > 198 && ln.msg[97] == 'x' && ln.msg[98] == '\t' && ln.msg[197] == '\t');
    free(line);
}

/* ---- docker fixtures ---------------------------------------------------------- */

/* Reads a fixture and parses its first line. */
static char *docker_fixture_line(const char *name, dr_line *ln, char **next)
{
    char path[256];
    snprintf(path, sizeof path, "container-logs/docker-json/%s", name);
    size_t len;
    char *text = dt_read_file(dt_fixture(path), &len);
    CHECK(text != NULL);
    if (!text)
        return NULL;
    char *nl = memchr(text, '\n', len);
    size_t n = nl ? (size_t)(nl - text) : len;
    CHECK_INT(dr_docker_parse(text, n, ln), 0);
    if (next)
        *next = nl ? nl + 1 : text + len;
    return text;
}

void test_formats_docker_fixture_escapes(void)
{
    dr_line ln;
    /* The expected messages are the fixtures' JSON strings, read as C
     * string literals: for these escapes the two languages agree. */
    char *text = docker_fixture_line("fluent-bit-k8s-escaped-text.log", &ln, NULL);
    static const char want1[] = "Text with embedded quoted \"text with embedded quoted \\\"text "
                                "with embedded quoted \\\\\\\"text\\\\\\\"\\\"\"";
    if (text)
        CHECK_MEM(ln.msg, ln.msg_len, want1, sizeof want1 - 1);
    CHECK(!ln.partial);
    CHECK_INT(ln.time_ns, ts("2019-04-01T17:58:33.598656444Z"));
    free(text);

    text = docker_fixture_line("fluent-bit-k8s-nested-escaped-json.log", &ln, NULL);
    static const char want2[] =
        "{\"stringified-json\":\"{\\\"stringified-json\\\":\\\"{\\\\\\\"stringified-json\\\\\\\""
        ":\\\\\\\"\\\\\\\"}\\\"}\",\"text\":\"quoted \\\"text with embedded quoted "
        "\\\\\\\"text\\\\\\\"\\\"\"}";
    if (text)
        CHECK_MEM(ln.msg, ln.msg_len, want2, sizeof want2 - 1);
    free(text);
}

void test_formats_docker_fixture_streams(void)
{
    dr_line ln;
    char *next;
    char *text = docker_fixture_line("fluent-bit-k8s-stdout-stderr.log", &ln, &next);
    if (!text)
        return;
    CHECK_INT(ln.stream, DR_STREAM_STDOUT);
    CHECK_INT(ln.time_ns, ts("2019-04-01T17:58:33.598656444Z"));
    static const char out[] = "[2019-04-05T14:54:23.584269761] Container 1 is logging on stdout";
    CHECK_MEM(ln.msg, ln.msg_len, out, sizeof out - 1);

    char *nl = strchr(next, '\n');
    CHECK_INT(dr_docker_parse(next, nl ? (size_t)(nl - next) : strlen(next), &ln), 0);
    CHECK_INT(ln.stream, DR_STREAM_STDERR);
    CHECK_INT(ln.time_ns, ts("2019-04-01T17:58:33.698656444Z"));
    static const char err[] = "[2019-04-05T14:54:23.584269761] Container 1 is logging on stderr";
    CHECK_MEM(ln.msg, ln.msg_len, err, sizeof err - 1);
    free(text);
}
