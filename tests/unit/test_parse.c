/*
 * The parse filter: dr_parse_record on records built directly (exact
 * fields, types, times), the time formats and logfmt on their own, the
 * configurations refused, the NDJSON a parsed record becomes, and the
 * filter through a oneshot agent (on_error, counters).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../plugins/filters/parse/logfmt.h"
#include "../../plugins/filters/parse/parse.h"
#include "../../plugins/filters/parse/timefmt.h"
#include "../../plugins/outputs/ndjson.h"
#include "buf.h"
#include "filter_harness.h"
#include "jsonp.h"
#include "test.h"

/* The time every test record starts with: a line "time=" in a rendering
 * means the parse changed it. */
#define T0 1000000000000000007LL

/* The record as text: "time=NS" when the time changed, "message=..." when
 * the message changed, then one line per field, "name:s=value" for a
 * string, "name:j=value" for JSON. Caller frees. */
static char *render(const dr_record *r, const char *original)
{
    dr_buf b = {0};
    dr_buf_reserve(&b, 1);
    if (r->time_ns != T0)
        dr_buf_printf(&b, "time=%lld\n", (long long)r->time_ns);
    if (r->msg_len != strlen(original) || memcmp(r->msg, original, r->msg_len) != 0) {
        dr_buf_puts(&b, "message=");
        dr_buf_append(&b, r->msg, r->msg_len);
        dr_buf_putc(&b, '\n');
    }
    for (uint16_t i = 0; i < r->nfields; i++) {
        const dr_field *f = &r->fields[i];
        dr_buf_append(&b, f->key, f->key_len);
        dr_buf_puts(&b, f->type == DR_FIELD_JSON ? ":j=" : ":s=");
        dr_buf_append(&b, f->val, f->val_len);
        dr_buf_putc(&b, '\n');
    }
    dr_buf_putc(&b, '\0');
    return b.p;
}

static dr_record *add_record(dr_chunk *c, const char *msg)
{
    dr_record *r = dr_chunk_add(c);
    r->msg = dr_chunk_strdup(c, msg, strlen(msg));
    r->msg_len = (uint32_t)strlen(msg);
    r->time_ns = T0;
    return r;
}

/* Parses one message with spec, checks the return code and the rendering. */
static void expect_parse(const dr_parse_spec *spec, const char *msg, int want_rc, const char *want)
{
    dr_parse_ctx *ctx = NULL;
    dr_error err = {{0}};
    if (!CHECK_INT(dr_parse_ctx_new(spec, &ctx, &err), 0)) {
        fprintf(stderr, "    %s\n", err.msg);
        return;
    }
    dr_chunk *c = dr_chunk_new(NULL, 0);
    dr_record *r = add_record(c, msg);
    int rc = dr_parse_record(ctx, c, r);
    char *got = render(r, msg);
    bool ok = CHECK_INT(rc, want_rc);
    ok &= CHECK_STR(got, want);
    if (!ok)
        fprintf(stderr, "    parsing %s (%s)\n", msg, dr_parse_why(ctx));
    free(got);
    dr_chunk_discard(c);
    dr_parse_ctx_free(ctx);
}

static dr_parse_spec spec_of(dr_parse_format format)
{
    dr_parse_spec s;
    dr_parse_spec_init(&s, format);
    return s;
}

/* ---- JSON ------------------------------------------------------------------------- */

void test_parse_json_fields(void)
{
    dr_parse_spec s = spec_of(DR_PARSE_JSON);
    expect_parse(&s,
                 "{\"level\":\"info\",\"n\":42,\"f\":-1.5e3,\"ok\":true,\"no\":false,"
                 "\"nil\":null,\"obj\":{\"a\":[1,{\"b\":\"c\"}]},\"arr\":[1, 2],"
                 "\"s\":\"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\\\ \\/ \\t\",\"\\u0041\":1}",
                 DR_PARSE_OK,
                 "level:s=info\n"
                 "n:j=42\n"
                 "f:j=-1.5e3\n"
                 "ok:j=true\n"
                 "no:j=false\n"
                 "nil:j=null\n"
                 "obj:j={\"a\":[1,{\"b\":\"c\"}]}\n"
                 "arr:j=[1, 2]\n"
                 "s:s=caf\xc3\xa9 \xf0\x9f\x98\x80 \"q\" \\ / \t\n"
                 "A:j=1\n");
    /* nested values are kept byte for byte, spaces included; whitespace
     * around the object is fine */
    expect_parse(&s, "  {\"o\": {\"x\": 1, \"y\": [1, 2]} , \"e\":{}}\t", DR_PARSE_OK,
                 "o:j={\"x\": 1, \"y\": [1, 2]}\ne:j={}\n");
    /* a name seen twice: the last value, in the first one's place */
    expect_parse(&s, "{\"a\":1,\"b\":2,\"a\":\"two\"}", DR_PARSE_OK, "a:s=two\nb:j=2\n");
    expect_parse(&s, "{}", DR_PARSE_OK, "");

    /* a JSON field (from an earlier parse) can be parsed again */
    dr_parse_ctx *outer = NULL, *inner = NULL;
    CHECK_INT(dr_parse_ctx_new(&s, &outer, NULL), 0);
    s.key = "req";
    s.prefix = "req.";
    s.keep_original = false;
    CHECK_INT(dr_parse_ctx_new(&s, &inner, NULL), 0);
    dr_chunk *c = dr_chunk_new(NULL, 0);
    dr_record *r = add_record(c, "{\"req\":{\"id\":7,\"path\":\"/\"},\"n\":1}");
    CHECK_INT(dr_parse_record(outer, c, r), DR_PARSE_OK);
    CHECK_INT(dr_parse_record(inner, c, r), DR_PARSE_OK);
    char *got = render(r, "{\"req\":{\"id\":7,\"path\":\"/\"},\"n\":1}");
    CHECK_STR(got, "n:j=1\nreq.id:j=7\nreq.path:s=/\n");
    free(got);
    dr_chunk_discard(c);
    dr_parse_ctx_free(outer);
    dr_parse_ctx_free(inner);
}

void test_parse_json_not_an_object(void)
{
    dr_parse_spec s = spec_of(DR_PARSE_JSON);
    static const char *const bad[] = {
        "[1,2]",   "\"text\"",         "42",       "null",       "true",       "",
        "   ",     "hello {\"a\":1}",  "{\"a\":1", "{\"a\":1,}", "{\"a\":01}", "{\"a\":1} x",
        "{'a':1}", "{\"a\":\"\x01\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_parse(&s, bad[i], DR_EINVAL, "");

    dr_parse_ctx *ctx = NULL;
    CHECK_INT(dr_parse_ctx_new(&s, &ctx, NULL), 0);
    dr_chunk *c = dr_chunk_new(NULL, 0);
    CHECK_INT(dr_parse_record(ctx, c, add_record(c, "[1]")), DR_EINVAL);
    CHECK_STR(dr_parse_why(ctx), "not a JSON object");
    CHECK_INT(dr_parse_record(ctx, c, add_record(c, "{\"a\" 1}")), DR_EINVAL);
    CHECK(strstr(dr_parse_why(ctx), "at byte 5") != NULL);
    dr_chunk_discard(c);
    dr_parse_ctx_free(ctx);
}

/* Strings keep their bytes (the encoders repair them); JSON values are
 * made fit for one output line. */
void test_parse_json_bytes(void)
{
    dr_parse_spec s = spec_of(DR_PARSE_JSON);
    dr_parse_ctx *ctx = NULL;
    CHECK_INT(dr_parse_ctx_new(&s, &ctx, NULL), 0);
    dr_chunk *c = dr_chunk_new(NULL, 0);
    dr_record *r = add_record(c, "{\"bad\":\"a\xff\xfe"
                                 "b\",\"nul\":\"x\\u0000y\","
                                 "\"o\":{\"t\":\"\xff\"},\"lines\":{\n\"a\":1,\r\n\"b\":[1,\n2]}}");
    CHECK_INT(dr_parse_record(ctx, c, r), DR_PARSE_OK);
    if (CHECK_INT(r->nfields, 4)) {
        CHECK_MEM(r->fields[0].val, r->fields[0].val_len,
                  "a\xff\xfe"
                  "b",
                  4);
        CHECK_INT(r->fields[0].type, DR_FIELD_STRING);
        CHECK_MEM(r->fields[1].val, r->fields[1].val_len, "x\0y", 3);
        /* invalid UTF-8 inside a JSON value: U+FFFD, so the output stays JSON */
        CHECK_MEM(r->fields[2].val, r->fields[2].val_len, "{\"t\":\"\xef\xbf\xbd\"}", 11);
        CHECK_INT(r->fields[2].type, DR_FIELD_JSON);
        /* line breaks between tokens go, so an NDJSON line stays one line */
        CHECK_MEM(r->fields[3].val, r->fields[3].val_len, "{\"a\":1,\"b\":[1,2]}", 17);
    }
    dr_chunk_discard(c);
    dr_parse_ctx_free(ctx);
}

/* Names a field cannot have get an underscore after the reserved word. */
void test_parse_json_reserved_names(void)
{
    static const char *const line =
        "{\"time\":\"x\",\"stream\":\"y\",\"kubernetes\":{\"a\":1},\"kubernetes.pod\":\"p\","
        "\"kubernetes.\":0,\"message\":\"m\",\"\":\"e\",\"timex\":1,\"kubernetesx\":2}";
    dr_parse_spec s = spec_of(DR_PARSE_JSON);
    expect_parse(&s, line, DR_PARSE_OK,
                 "time_:s=x\nstream_:s=y\nkubernetes_:j={\"a\":1}\nkubernetes_.pod:s=p\n"
                 "kubernetes_.:j=0\nmessage_:s=m\n_:s=e\ntimex:j=1\nkubernetesx:j=2\n");
    /* with a prefix they are ordinary names */
    s.prefix = "app.";
    expect_parse(&s, line, DR_PARSE_OK,
                 "app.time:s=x\napp.stream:s=y\napp.kubernetes:j={\"a\":1}\n"
                 "app.kubernetes.pod:s=p\napp.kubernetes.:j=0\napp.message:s=m\napp.:s=e\n"
                 "app.timex:j=1\napp.kubernetesx:j=2\n");
    /* the rule holds for the whole name, prefix included */
    s.prefix = "mess";
    expect_parse(&s, "{\"age\":1,\"ages\":2}", DR_PARSE_OK, "message_:j=1\nmessages:j=2\n");
    s.prefix = "kube";
    expect_parse(&s, "{\"rnetes.pod\":1}", DR_PARSE_OK, "kubernetes_.pod:j=1\n");
    s.prefix = "app_";
    expect_parse(&s, "{\"level\":\"info\",\"n\":1}", DR_PARSE_OK, "app_level:s=info\napp_n:j=1\n");
}

void test_parse_json_limits(void)
{
    dr_parse_spec s = spec_of(DR_PARSE_JSON);
    s.max_depth = 3;
    expect_parse(&s, "{\"a\":{\"b\":[1]}}", DR_PARSE_OK, "a:j={\"b\":[1]}\n");
    expect_parse(&s, "{\"a\":{\"b\":[[1]]}}", DR_EINVAL, "");
    s = spec_of(DR_PARSE_JSON);
    s.max_fields = 2;
    expect_parse(&s, "{\"a\":1,\"b\":2}", DR_PARSE_OK, "a:j=1\nb:j=2\n");
    expect_parse(&s, "{\"a\":1,\"b\":2,\"c\":3}", DR_EINVAL, "");
    s = spec_of(DR_PARSE_JSON);
    s.max_values = 4; /* the object and three values */
    expect_parse(&s, "{\"a\":[1,2]}", DR_PARSE_OK, "a:j=[1,2]\n");
    expect_parse(&s, "{\"a\":[1,2,3]}", DR_EINVAL, "");
    /* a name of 4096 bytes or more (prefix included) cannot be a field */
    s = spec_of(DR_PARSE_JSON);
    char line[4200], want[4200];
    memset(line, 'k', sizeof line);
    memcpy(line, "{\"", 2);
    memcpy(line + 2 + 4095, "\":1}", 5);
    memset(want, 'k', 4095);
    memcpy(want + 4095, ":j=1\n", 6);
    expect_parse(&s, line, DR_PARSE_OK, want);
    s.prefix = "p";
    expect_parse(&s, line, DR_EINVAL, "");
    s.prefix = NULL;
    memcpy(line + 2 + 4096, "\":1}", 5);
    expect_parse(&s, line, DR_EINVAL, "");
}

/* ---- message, keep_original, key ------------------------------------------------------ */

void test_parse_message_and_keep(void)
{
    static const char *const line = "{\"msg\":\"started\",\"level\":\"info\"}";
    dr_parse_spec s = spec_of(DR_PARSE_JSON);
    s.message_key = "msg";
    expect_parse(&s, line, DR_PARSE_OK, "message=started\nlevel:s=info\n");
    /* no such field: the message stays */
    expect_parse(&s, "{\"level\":\"info\"}", DR_PARSE_OK, "level:s=info\n");
    /* a non-string becomes its JSON text */
    expect_parse(&s, "{\"msg\":{\"a\":[1]}}", DR_PARSE_OK, "message={\"a\":[1]}\n");
    /* message_key names a parsed field, even one called message */
    s.message_key = "message";
    expect_parse(&s, "{\"message\":\"inner\",\"a\":1}", DR_PARSE_OK, "message=inner\na:j=1\n");

    /* keep_original false: the message cannot go, it becomes empty ... */
    s = spec_of(DR_PARSE_JSON);
    s.keep_original = false;
    expect_parse(&s, line, DR_PARSE_OK, "message=\nmsg:s=started\nlevel:s=info\n");
    /* ... unless message_key gives it a value */
    s.message_key = "msg";
    expect_parse(&s, line, DR_PARSE_OK, "message=started\nlevel:s=info\n");
    /* a value that does not parse leaves the message alone */
    expect_parse(&s, "not json", DR_EINVAL, "");

    /* parsing a field: keep_original false removes it, but a parsed field
     * of the same name stays */
    s = spec_of(DR_PARSE_LOGFMT);
    s.key = "log";
    dr_parse_ctx *ctx = NULL;
    CHECK_INT(dr_parse_ctx_new(&s, &ctx, NULL), 0);
    dr_chunk *c = dr_chunk_new(NULL, 0);
    dr_record *r = add_record(c, "line");
    CHECK_INT(dr_parse_record(ctx, c, r), DR_PARSE_NO_KEY);
    dr_record_set(c, r, "log", 3, "a=1 b=2", 7, DR_FIELD_STRING);
    CHECK_INT(dr_parse_record(ctx, c, r), DR_PARSE_OK);
    char *got = render(r, "line");
    CHECK_STR(got, "log:s=a=1 b=2\na:s=1\nb:s=2\n");
    free(got);
    dr_parse_ctx_free(ctx);

    s.keep_original = false;
    CHECK_INT(dr_parse_ctx_new(&s, &ctx, NULL), 0);
    r = add_record(c, "line");
    dr_record_set(c, r, "x", 1, "old", 3, DR_FIELD_STRING);
    dr_record_set(c, r, "log", 3, "x=new log=inner", 15, DR_FIELD_STRING);
    CHECK_INT(dr_parse_record(ctx, c, r), DR_PARSE_OK);
    got = render(r, "line");
    CHECK_STR(got, "x:s=new\nlog:s=inner\n");
    free(got);
    dr_chunk_discard(c);
    dr_parse_ctx_free(ctx);
}

/* ---- logfmt ----------------------------------------------------------------------- */

void test_parse_logfmt(void)
{
    dr_parse_spec s = spec_of(DR_PARSE_LOGFMT);
    expect_parse(&s,
                 "level=info msg=\"user \\\"ann\\\" logged in\" path=\"C:\\dir\\x\" "
                 "url=/a?b=c&d=\"e\" empty= quoted=\"\" ok esc=\"a\\\\b\\nc\\td\\re\" "
                 "eq=\"a=b c\" dup=1 dup=2",
                 DR_PARSE_OK,
                 "level:s=info\n"
                 "msg:s=user \"ann\" logged in\n"
                 "path:s=C:\\dir\\x\n"
                 "url:s=/a?b=c&d=\"e\"\n"
                 "empty:s=\n"
                 "quoted:s=\n"
                 "ok:s=true\n"
                 "esc:s=a\\b\nc\td\re\n"
                 "eq:s=a=b c\n"
                 "dup:s=2\n");
    expect_parse(&s, "\t a=1  b \r\n", DR_PARSE_OK, "a:s=1\nb:s=true\n");
    /* plain text is bare keys, as in Go's logfmt */
    expect_parse(&s, "hello world", DR_PARSE_OK, "hello:s=true\nworld:s=true\n");
    static const char *const bad[] = {
        "a=\"unterminated", "a=\"b\"c",  "=v", "a=1 =v", "\"k\"=v", "k\"=v",
        "a \"b\"",          "a=\"x\\\"", "",   "  ",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_parse(&s, bad[i], DR_EINVAL, "");
    s.max_fields = 2;
    expect_parse(&s, "a b", DR_PARSE_OK, "a:s=true\nb:s=true\n");
    expect_parse(&s, "a b c", DR_EINVAL, "");
}

/* The iterator on its own: where each pair's bytes come from. */
void test_parse_logfmt_pairs(void)
{
    const char *line = "k=v q=\"x\\\"y\" t";
    char scratch[32];
    dr_logfmt_iter it;
    dr_logfmt_pair p;
    dr_logfmt_begin(&it, line, strlen(line), scratch);
    CHECK_INT(dr_logfmt_next(&it, &p), 1);
    CHECK(p.key == line && p.key_len == 1 && p.val == line + 2 && p.val_len == 1);
    CHECK_INT(dr_logfmt_next(&it, &p), 1);
    CHECK(p.val == scratch);
    CHECK_MEM(p.val, p.val_len, "x\"y", 3);
    CHECK_INT(dr_logfmt_next(&it, &p), 1);
    CHECK_MEM(p.val, p.val_len, "true", 4);
    CHECK_INT(dr_logfmt_next(&it, &p), 0);
    CHECK_INT(dr_logfmt_next(&it, &p), 0);
}

/* ---- regex ------------------------------------------------------------------------- */

#define COMMON_LOG                                                                                 \
    "^(?<host>\\S+) \\S+ (?<user>\\S+) \\[(?<time>[^\\]]+)\\] \"(?<method>\\S+) "                  \
    "(?<path>\\S+)(?: (?<protocol>[^\"]*))?\" (?<status>\\d{3}) (?<size>\\d+|-)"                   \
    "(?: \"(?<referer>[^\"]*)\" \"(?<agent>[^\"]*)\")?$"

void test_parse_regex(void)
{
    dr_parse_spec s = spec_of(DR_PARSE_REGEX);
    s.pattern = COMMON_LOG;
    s.time_key = "time";
    s.time_format = "%d/%b/%Y:%H:%M:%S %z";
    /* Apache's example: fields in the order of the pattern, the time taken */
    expect_parse(&s,
                 "127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] \"GET /apache_pb.gif "
                 "HTTP/1.0\" 200 2326",
                 DR_PARSE_OK,
                 "time=971211336000000000\n"
                 "host:s=127.0.0.1\nuser:s=frank\nmethod:s=GET\npath:s=/apache_pb.gif\n"
                 "protocol:s=HTTP/1.0\nstatus:s=200\nsize:s=2326\n");
    /* nginx combined; a group that took no part (protocol) is no field */
    expect_parse(&s,
                 "10.0.0.1 - - [25/Nov/2026:05:10:38 +0100] \"GET /\" 404 - \"-\" "
                 "\"curl/8.5.0\"",
                 DR_PARSE_OK,
                 "time=1795579838000000000\n"
                 "host:s=10.0.0.1\nuser:s=-\nmethod:s=GET\npath:s=/\nstatus:s=404\nsize:s=-\n"
                 "referer:s=-\nagent:s=curl/8.5.0\n");
    expect_parse(&s, "not an access log", DR_EINVAL, "");
    /* a time that does not parse: the time stays, and so does the field
     * (as time_: time is reserved), so that nothing is lost */
    expect_parse(&s, "h - u [yesterday] \"GET /\" 200 1", DR_PARSE_BAD_TIME,
                 "host:s=h\nuser:s=u\ntime_:s=yesterday\nmethod:s=GET\npath:s=/\n"
                 "status:s=200\nsize:s=1\n");

    /* unanchored: searched anywhere; unnamed groups are no fields */
    s = spec_of(DR_PARSE_REGEX);
    s.pattern = "(\\w+)=(?<status>\\d+)";
    s.prefix = "http_";
    expect_parse(&s, "GET / status=200 in 5ms", DR_PARSE_OK, "http_status:s=200\n");
    /* a named group called message is stored as message_, unless message_key */
    s = spec_of(DR_PARSE_REGEX);
    s.pattern = "^(?<level>[A-Z]+) (?<message>.*)$";
    expect_parse(&s, "WARN disk full", DR_PARSE_OK, "level:s=WARN\nmessage_:s=disk full\n");
    s.message_key = "message";
    expect_parse(&s, "WARN disk full", DR_PARSE_OK, "message=disk full\nlevel:s=WARN\n");
    /* a regex that gives up is an error of its own kind */
    s = spec_of(DR_PARSE_REGEX);
    s.pattern = "^(?<a>(a+)+)$";
    expect_parse(&s, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", DR_ERR, "");
}

/* The examples on the filter's page do what the page says. */
void test_parse_doc_examples(void)
{
    dr_parse_spec s = spec_of(DR_PARSE_JSON);
    s.message_key = "msg";
    s.time_key = "ts";
    s.time_format = "unix";
    expect_parse(
        &s, "{\"level\":\"info\",\"msg\":\"started\",\"ts\":1795579838.5,\"req\":{\"id\":7}}",
        DR_PARSE_OK, "time=1795579838500000000\nmessage=started\nlevel:s=info\nreq:j={\"id\":7}\n");
    s = spec_of(DR_PARSE_REGEX);
    s.pattern = "^(?<ip>\\S+) \\S+ (?<user>\\S+) \\[(?<ts>[^\\]]+)\\] \"(?<request>[^\"]*)\" "
                "(?<status>\\d{3}) (?<bytes>\\S+)";
    s.time_key = "ts";
    s.time_format = "%d/%b/%Y:%H:%M:%S %z";
    expect_parse(&s, "10.0.0.1 - ann [25/Nov/2026:04:10:38 +0000] \"GET / HTTP/1.1\" 200 612",
                 DR_PARSE_OK,
                 "time=1795579838000000000\nip:s=10.0.0.1\nuser:s=ann\n"
                 "request:s=GET / HTTP/1.1\nstatus:s=200\nbytes:s=612\n");
    s = spec_of(DR_PARSE_LOGFMT);
    s.prefix = "app_";
    expect_parse(&s, "level=warn msg=\"disk almost full\" used=91%", DR_PARSE_OK,
                 "app_level:s=warn\napp_msg:s=disk almost full\napp_used:s=91%\n");
}

/* ---- time ---------------------------------------------------------------------------- */

static void expect_time(const char *format, const char *value, int want_rc, long long want_ns)
{
    dr_time_format tf;
    dr_error err = {{0}};
    if (!CHECK_INT(dr_time_format_init(&tf, format, &err), 0)) {
        fprintf(stderr, "    %s: %s\n", format, err.msg);
        return;
    }
    int64_t ns = 12345;
    int rc = dr_time_parse(&tf, value, strlen(value), &ns);
    bool ok = CHECK_INT(rc, want_rc);
    ok &= CHECK_INT(ns, want_rc == 0 ? want_ns : 12345);
    if (!ok)
        fprintf(stderr, "    format %s, value \"%s\"\n", format, value);
    dr_time_format_free(&tf);
}

void test_parse_time_formats(void)
{
    expect_time("rfc3339", "2026-11-25T04:10:38.123456789Z", 0, 1795579838123456789LL);
    expect_time("rfc3339", "2026-11-25T05:10:38.5+01:00", 0, 1795579838500000000LL);
    expect_time("rfc3339", "2026-11-25 04:10:38Z", DR_EINVAL, 0);
    expect_time("rfc3339", "1795579838", DR_EINVAL, 0);

    expect_time("unix", "1795579838", 0, 1795579838000000000LL);
    expect_time("unix", "1795579838.5", 0, 1795579838500000000LL);
    expect_time("unix", "1795579838.123456789", 0, 1795579838123456789LL);
    expect_time("unix", "1795579838.1234567899", 0, 1795579838123456789LL); /* cut */
    expect_time("unix", "-1.5", 0, -1500000000LL);
    expect_time("unix", "0", 0, 0);
    expect_time("unix", "9223372036.854775807", 0, 9223372036854775807LL);
    expect_time("unix", "-9223372036.854775808", 0, -9223372036854775807LL - 1);
    expect_time("unix", "9223372036.854775808", DR_EINVAL, 0);
    expect_time("unix", "9223372037", DR_EINVAL, 0);
    expect_time("unix", "99999999999999999999999", DR_EINVAL, 0);
    static const char *const bad_numbers[] = {"",   "-",   "1.", ".5",  "1e9",   "1.5e3", " 1",
                                              "1 ", "12a", "+1", "--1", "1.2.3", "0x10"};
    for (size_t i = 0; i < sizeof bad_numbers / sizeof bad_numbers[0]; i++)
        expect_time("unix", bad_numbers[i], DR_EINVAL, 0);

    expect_time("unix_ms", "1795579838123", 0, 1795579838123000000LL);
    expect_time("unix_ms", "1795579838123.456789", 0, 1795579838123456789LL);
    expect_time("unix_ms", "1795579838123.4567891", 0, 1795579838123456789LL);
    expect_time("unix_ns", "1795579838123456789", 0, 1795579838123456789LL);
    expect_time("unix_ns", "1795579838123456789.9", 0, 1795579838123456789LL);
    expect_time("unix_ns", "9223372036854775808", DR_EINVAL, 0);

    expect_time("%d/%b/%Y:%H:%M:%S %z", "25/Nov/2026:05:10:38 +0100", 0, 1795579838000000000LL);
    expect_time("%d/%b/%Y:%H:%M:%S %z", "25/Nov/2026:04:10:38 Z", 0, 1795579838000000000LL);
    expect_time("%d/%b/%Y:%H:%M:%S %z", "25/Nov/2026:04:10:38", DR_EINVAL, 0);
    expect_time("%Y-%m-%d %H:%M:%S", "2026-11-25 04:10:38  ", 0, 1795579838000000000LL);
    expect_time("%Y-%m-%d %H:%M:%S", "2026-11-25 04:10:38 extra", DR_EINVAL, 0);
    expect_time("%Y-%m-%d %H:%M:%S", "2026-11-25", DR_EINVAL, 0);
    expect_time("%Y-%m-%d %H:%M:%S,%L", "2026-11-25 04:10:38,123", 0, 1795579838123000000LL);
    expect_time("%Y-%m-%d %H:%M:%S,%L", "2026-11-25 04:10:38,", DR_EINVAL, 0);
    expect_time("%Y-%m-%dT%H:%M:%S.%fZ", "2026-11-25T04:10:38.000123456Z", 0,
                1795579838000123456LL);
    expect_time("%Y-%m-%dT%H:%M:%S.%f%z", "2026-11-25T05:10:38.5+01:00", 0, 1795579838500000000LL);
    expect_time("%Y-%m-%d %H:%M:%S.%L", "1969-12-31 23:59:59.5", 0, -500000000LL);
    expect_time("%H:%M:%S %Y/%m/%d", "04:10:38 2026/11/25", 0, 1795579838000000000LL);

    /* no year: this year, in UTC */
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    struct tm want = {.tm_year = tm.tm_year,
                      .tm_mon = 10,
                      .tm_mday = 25,
                      .tm_hour = 4,
                      .tm_min = 10,
                      .tm_sec = 38};
    expect_time("%b %d %H:%M:%S", "Nov 25 04:10:38", 0, (long long)timegm(&want) * 1000000000LL);
}

static void expect_time_format_refused(const char *format, const char *want)
{
    dr_time_format tf;
    dr_error err = {{0}};
    CHECK_INT(dr_time_format_init(&tf, format, &err), DR_EINVAL);
    if (!CHECK_STR(err.msg, want))
        fprintf(stderr, "    format %s\n", format);
}

/* time_key and time_format on parsed records */
void test_parse_time_fields(void)
{
    dr_parse_spec s = spec_of(DR_PARSE_JSON);
    s.time_key = "ts";
    s.time_format = "unix";
    /* a JSON number or a string */
    expect_parse(&s, "{\"ts\":1795579838.5,\"a\":1}", DR_PARSE_OK,
                 "time=1795579838500000000\na:j=1\n");
    expect_parse(&s, "{\"ts\":\"1795579838\"}", DR_PARSE_OK, "time=1795579838000000000\n");
    /* a bad time: the time stays, the field too */
    expect_parse(&s, "{\"ts\":\"soon\",\"a\":1}", DR_PARSE_BAD_TIME, "ts:s=soon\na:j=1\n");
    expect_parse(&s, "{\"ts\":1e9}", DR_PARSE_BAD_TIME, "ts:j=1e9\n");
    /* several: the last decides */
    expect_parse(&s, "{\"ts\":\"x\",\"ts\":1}", DR_PARSE_OK, "time=1000000000\nts:s=x\n");
    s.keep_time = true;
    expect_parse(&s, "{\"ts\":1795579838.5,\"a\":1}", DR_PARSE_OK,
                 "time=1795579838500000000\nts:j=1795579838.5\na:j=1\n");
    /* no time field: not an error; a bad one: the time stays */
    expect_parse(&s, "{\"a\":1}", DR_PARSE_OK, "a:j=1\n");
    expect_parse(&s, "{\"ts\":\"soon\",\"a\":1}", DR_PARSE_BAD_TIME, "ts:s=soon\na:j=1\n");
    expect_parse(&s, "{\"ts\":null}", DR_PARSE_BAD_TIME, "ts:j=null\n");

    /* the usual JSON log: "time" in RFC 3339, kept as time_ when asked */
    s = spec_of(DR_PARSE_JSON);
    s.time_key = "time";
    expect_parse(&s, "{\"time\":\"2026-11-25T04:10:38.123456789Z\",\"msg\":\"x\"}", DR_PARSE_OK,
                 "time=1795579838123456789\nmsg:s=x\n");
    s.keep_time = true;
    expect_parse(&s, "{\"time\":\"2026-11-25T04:10:38Z\"}", DR_PARSE_OK,
                 "time=1795579838000000000\ntime_:s=2026-11-25T04:10:38Z\n");
    /* the time key is the parsed name, before the prefix */
    s.keep_time = false;
    s.prefix = "app.";
    expect_parse(&s, "{\"time\":\"2026-11-25T04:10:38Z\",\"a\":1}", DR_PARSE_OK,
                 "time=1795579838000000000\napp.a:j=1\n");

    /* logfmt with milliseconds, strptime with a fraction */
    s = spec_of(DR_PARSE_LOGFMT);
    s.time_key = "t";
    s.time_format = "unix_ms";
    expect_parse(&s, "t=1795579838123 level=info", DR_PARSE_OK,
                 "time=1795579838123000000\nlevel:s=info\n");
    s.time_format = "unix_ns";
    expect_parse(&s, "t=1795579838123456789", DR_PARSE_OK, "time=1795579838123456789\n");
    s.time_format = "%Y-%m-%d %H:%M:%S.%L";
    expect_parse(&s, "t=\"2026-11-25 04:10:38.25\"", DR_PARSE_OK, "time=1795579838250000000\n");

    expect_time_format_refused("%Q", "time_format: \"%Q\": unknown conversion \"%Q\" at offset "
                                     "0 (strptime conversions such as %Y %m %d %H %M %S %b %z, "
                                     "and %L or %f for a fraction of a second)");
    expect_time_format_refused("%Y-%m-%d %", "time_format: \"%Y-%m-%d %\": unknown conversion "
                                             "\"%\" at offset 9 (strptime conversions such as %Y "
                                             "%m %d %H %M %S %b %z, and %L or %f for a fraction "
                                             "of a second)");
    expect_time_format_refused("seconds", "time_format: \"seconds\" is not rfc3339, unix, "
                                          "unix_ms, unix_ns or a strptime format (such as "
                                          "\"%d/%b/%Y:%H:%M:%S %z\")");
    expect_time_format_refused("100%%", "time_format: \"100%%\" is not rfc3339, unix, unix_ms, "
                                        "unix_ns or a strptime format (such as "
                                        "\"%d/%b/%Y:%H:%M:%S %z\")");
    expect_time_format_refused("%s", "time_format: %s is not supported: use time_format: unix");
    expect_time_format_refused("%S.%L.%f", "time_format: \"%S.%L.%f\": more than one %L or %f");
}

/* ---- configurations refused -------------------------------------------------------------- */

static void expect_refused(const dr_parse_spec *spec, const char *want)
{
    dr_parse_ctx *ctx = NULL;
    dr_error err = {{0}};
    CHECK_INT(dr_parse_ctx_new(spec, &ctx, &err), DR_EINVAL);
    CHECK(ctx == NULL);
    CHECK_STR(err.msg, want);
}

void test_parse_spec_errors(void)
{
    dr_parse_spec s = spec_of(DR_PARSE_REGEX);
    expect_refused(&s, "pattern: required with format: regex");
    s.pattern = "^(\\d+) (\\w+)$";
    expect_refused(&s, "pattern: \"^(\\d+) (\\w+)$\" has no named group: name the parts that "
                       "become fields, such as (?<status>\\d+)");
    s.pattern = "(?<a>x";
    expect_refused(&s, "pattern: invalid regex \"(?<a>x\" at offset 6: missing closing "
                       "parenthesis");
    s.pattern = "(?<a>x) (?<b>y)";
    s.time_key = "ts";
    expect_refused(&s, "time_key: the pattern has no group named \"ts\"");
    s.time_key = NULL;
    s.message_key = "msg";
    expect_refused(&s, "message_key: the pattern has no group named \"msg\"");
    s.message_key = NULL;
    s.max_fields = 1;
    expect_refused(&s, "pattern: 2 named groups, more than max_fields (1)");

    s = spec_of(DR_PARSE_JSON);
    s.pattern = "(?<a>x)";
    expect_refused(&s, "pattern: only used with format: regex");
    s = spec_of(DR_PARSE_JSON);
    s.time_format = "%Y-%Q";
    expect_refused(&s, "time_format: \"%Y-%Q\": unknown conversion \"%Q\" at offset 3 (strptime "
                       "conversions such as %Y %m %d %H %M %S %b %z, and %L or %f for a "
                       "fraction of a second)");
    s = spec_of(DR_PARSE_JSON);
    s.key = "time";
    s.keep_original = false;
    expect_refused(&s, "keep_original: false would remove the key \"time\", and only message or "
                       "a field can be removed");
    s = spec_of(DR_PARSE_JSON);
    s.key = "kubernetes.nope";
    expect_refused(&s, "key: unknown key \"kubernetes.nope\" (known: kubernetes.namespace, pod, "
                       "pod_uid, container, container_id, image, node, pod_ip, owner_kind, "
                       "owner_name, labels.<key>, annotations.<key>, namespace_labels.<key>)");
    s = spec_of(DR_PARSE_JSON);
    s.prefix = "kubernetes.app.";
    expect_refused(&s, "prefix: \"kubernetes.app.\": kubernetes.* keys cannot be set");
    s = spec_of(DR_PARSE_JSON);
    s.time_key = "t";
    s.message_key = "t";
    expect_refused(&s, "time_key and message_key both name \"t\"");

    /* what is accepted: any readable key, kept */
    s = spec_of(DR_PARSE_LOGFMT);
    s.key = "kubernetes.labels.app";
    dr_parse_ctx *ctx = NULL;
    CHECK_INT(dr_parse_ctx_new(&s, &ctx, NULL), 0);
    dr_parse_ctx_free(ctx);
}

/* ---- output -------------------------------------------------------------------------------- */

/* What the file and stdout outputs write for a parsed record: one line of
 * valid JSON, nested values intact. */
void test_parse_ndjson_output(void)
{
    dr_parse_spec s = spec_of(DR_PARSE_JSON);
    s.message_key = "msg";
    s.time_key = "ts";
    s.time_format = "unix_ms";
    dr_parse_ctx *ctx = NULL;
    CHECK_INT(dr_parse_ctx_new(&s, &ctx, NULL), 0);
    dr_chunk *c = dr_chunk_new(NULL, 0);
    dr_meta *meta = dr_meta_new("/x.log", "shop", "web-1", "uid-1", "app", "cid", 0);
    dr_chunk_set_meta(c, meta);
    dr_meta_unref(meta);
    dr_record *r = add_record(c, "{\"ts\":1795579838123,\"msg\":\"caf\\u00e9\",\"req\":{\"id\":7,"
                                 "\"tags\":[\"a\",{\"b\":null}]},\"bad\":\"\xff\",\"time\":1,"
                                 "\"multi\":{\n\"x\":\"\xfe\"}}");
    CHECK_INT(dr_parse_record(ctx, c, r), DR_PARSE_OK);
    dr_buf out = {0};
    CHECK_INT(dr_ndjson_encode_chunk(c, DR_LINE_JSON, &out), 1); /* "bad" was repaired */
    dr_buf_putc(&out, '\0');
    CHECK_STR(out.p, "{\"time\":\"2026-11-25T04:10:38.123000000Z\",\"stream\":\"stdout\","
                     "\"message\":\"caf\xc3\xa9\",\"req\":{\"id\":7,\"tags\":[\"a\",{\"b\":null}]},"
                     "\"bad\":\"\xef\xbf\xbd\",\"time_\":1,\"multi\":{\"x\":\"\xef\xbf\xbd\"},"
                     "\"kubernetes\":{\"namespace\":\"shop\",\"pod\":\"web-1\",\"pod_uid\":"
                     "\"uid-1\",\"container\":\"app\",\"container_id\":\"cid\"}}\n");
    /* and the core's strict parser reads it back */
    dr_json_doc *doc = dr_json_doc_new();
    const dr_jv *root = NULL;
    dr_error err = {{0}};
    CHECK_INT(dr_json_parse(doc, out.p, out.len - 1, NULL, &root, &err), 0);
    int64_t id = 0;
    CHECK(dr_jv_int(dr_jv_path(root, "req", "id", NULL), &id) && id == 7);
    const dr_jv *tags = dr_jv_path(root, "req", "tags", NULL);
    CHECK(tags && tags->type == DR_JV_ARRAY && tags->len == 2);
    CHECK_STR(dr_jv_str(dr_jv_path(root, "kubernetes", "pod", NULL)), "web-1");
    dr_json_doc_free(doc);
    dr_buf_free(&out);
    dr_chunk_discard(c);
    dr_parse_ctx_free(ctx);
}

/* ---- memory ------------------------------------------------------------------------------ */

/* A stream of records keeps the context's memory flat; a huge one gives
 * back what it needed. */
void test_parse_memory_bounded(void)
{
    dr_parse_spec s = spec_of(DR_PARSE_JSON);
    dr_parse_ctx *ctx = NULL;
    CHECK_INT(dr_parse_ctx_new(&s, &ctx, NULL), 0);
    dr_chunk *c = dr_chunk_new(NULL, 0);
    CHECK_INT(dr_parse_record(ctx, c, add_record(c, "{\"a\":1,\"b\":{\"c\":[1,2]}}")), 0);
    size_t steady = dr_parse_ctx_memory(ctx);
    for (int i = 0; i < 2000; i++) {
        char line[96];
        snprintf(line, sizeof line, "{\"i\":%d,\"s\":\"v%d\",\"o\":{\"k\":[%d]}}", i, i, i);
        CHECK_INT(dr_parse_record(ctx, c, add_record(c, line)), DR_PARSE_OK);
    }
    CHECK_INT(dr_parse_ctx_memory(ctx), steady);

    size_t big = 3u << 20;
    char *line = malloc(big + 16);
    memcpy(line, "{\"s\":\"", 6);
    memset(line + 6, 'x', big);
    memcpy(line + 6 + big, "\"}", 3);
    CHECK_INT(dr_parse_record(ctx, c, add_record(c, line)), DR_PARSE_OK);
    CHECK_INT(dr_parse_ctx_memory(ctx), steady);
    free(line);
    dr_chunk_discard(c);
    dr_parse_ctx_free(ctx);

    /* logfmt: the decoding space for one huge quoted value goes too */
    s = spec_of(DR_PARSE_LOGFMT);
    CHECK_INT(dr_parse_ctx_new(&s, &ctx, NULL), 0);
    c = dr_chunk_new(NULL, 0);
    CHECK_INT(dr_parse_record(ctx, c, add_record(c, "a=\"1\" b=2")), DR_PARSE_OK);
    steady = dr_parse_ctx_memory(ctx);
    line = malloc(big + 16);
    memcpy(line, "a=\"", 3);
    memset(line + 3, 'x', big);
    memcpy(line + 3 + big, "\"", 2);
    CHECK_INT(dr_parse_record(ctx, c, add_record(c, line)), DR_PARSE_OK);
    CHECK(dr_parse_ctx_memory(ctx) <= steady);
    free(line);
    dr_chunk_discard(c);
    dr_parse_ctx_free(ctx);
}

/* ---- the filter in an agent -------------------------------------------------------------- */

static const char *const mixed =
    "2026-11-25T04:00:01.000000001Z stdout F {\"level\":\"info\",\"msg\":\"up\",\"n\":1}\n"
    "2026-11-25T04:00:02.000000001Z stdout F plain text\n"
    "2026-11-25T04:00:03.000000001Z stderr F {\"level\":\"warn\",\"msg\":\"slow\","
    "\"ts\":\"2026-11-25T04:10:38.5Z\"}\n"
    "2026-11-25T04:00:04.000000001Z stderr F {\"msg\":\"late\",\"ts\":\"yesterday\"}\n";

#define SERIES(metric) metric "{plugin=\"parse\",name=\"p\"}"

void test_parse_filter_keep(void)
{
    dr_metrics *m = dr_metrics_new();
    char *out = dt_filter_run_lines("  - {name: p, type: parse, format: json, message_key: msg, "
                                    "time_key: ts}\n",
                                    mixed, m);
    char *bodies = out ? dt_filter_bodies(out) : NULL;
    CHECK_STR(bodies, "\"message\":\"up\",\"level\":\"info\",\"n\":1\n"
                      "\"message\":\"plain text\"\n"
                      "\"message\":\"slow\",\"level\":\"warn\"\n"
                      "\"message\":\"late\",\"ts\":\"yesterday\"\n");
    /* the time came from the line, or stayed when it could not */
    CHECK(out && strstr(out, "{\"time\":\"2026-11-25T04:10:38.500000000Z\",\"stream\":\"stderr\","
                             "\"message\":\"slow\""));
    CHECK(out && strstr(out, "{\"time\":\"2026-11-25T04:00:04.000000001Z\",\"stream\":\"stderr\","
                             "\"message\":\"late\""));
    CHECK_INT(dt_metric(m, SERIES("drover_filter_parse_errors_total")), 1);
    CHECK_INT(dt_metric(m, SERIES("drover_filter_parse_time_errors_total")), 1);
    CHECK_INT(dt_metric(m, "drover_output_records_total{plugin=\"file\",name=\"out\"}"), 4);
    free(bodies);
    free(out);
    dr_metrics_free(m);
}

void test_parse_filter_drop(void)
{
    dr_metrics *m = dr_metrics_new();
    char *out = dt_filter_run_lines("  - {name: p, type: parse, format: json, on_error: drop, "
                                    "keep_original: false, prefix: app.}\n",
                                    mixed, m);
    char *bodies = out ? dt_filter_bodies(out) : NULL;
    CHECK_STR(bodies, "\"message\":\"\",\"app.level\":\"info\",\"app.msg\":\"up\",\"app.n\":1\n"
                      "\"message\":\"\",\"app.level\":\"warn\",\"app.msg\":\"slow\","
                      "\"app.ts\":\"2026-11-25T04:10:38.5Z\"\n"
                      "\"message\":\"\",\"app.msg\":\"late\",\"app.ts\":\"yesterday\"\n");
    CHECK_INT(dt_metric(m, SERIES("drover_filter_parse_errors_total")), 1);
    CHECK_INT(dt_metric(m, "drover_dropped_records_total{plugin=\"parse\",name=\"p\","
                           "reason=\"parse_error\"}"),
              1);
    CHECK_INT(dt_metric(m, "drover_output_records_total{plugin=\"file\",name=\"out\"}"), 3);
    free(bodies);
    free(out);
    dr_metrics_free(m);
}

/* A regex that gives up: a parse error, also counted as a regex error. */
void test_parse_filter_regex_limit(void)
{
    dr_metrics *m = dr_metrics_new();
    char *out = dt_filter_run_lines(
        "  - {name: p, type: parse, format: regex, pattern: '^(?<a>(a+)+)$'}\n",
        "2026-11-25T04:00:01.000000001Z stdout F aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\n"
        "2026-11-25T04:00:02.000000001Z stdout F aaa\n",
        m);
    char *bodies = out ? dt_filter_bodies(out) : NULL;
    CHECK_STR(bodies, "\"message\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\"\n"
                      "\"message\":\"aaa\",\"a\":\"aaa\"\n");
    CHECK_INT(dt_metric(m, SERIES("drover_filter_regex_errors_total")), 1);
    CHECK_INT(dt_metric(m, SERIES("drover_filter_parse_errors_total")), 1);
    free(bodies);
    free(out);
    dr_metrics_free(m);
}

static void expect_config_refused(const char *filter, const char *want)
{
    char *errors = dt_filter_config_errors(filter);
    if (CHECK(errors != NULL) && !CHECK(strstr(errors, want) != NULL))
        fprintf(stderr, "    errors: %s    want: %s\n", errors, want);
    free(errors);
}

void test_parse_config_errors(void)
{
    expect_config_refused("  - {name: p, type: parse}\n", "format: missing required key");
    expect_config_refused("  - {name: p, type: parse, format: yaml}\n", "format");
    expect_config_refused("  - {name: p, type: parse, format: regex}\n",
                          "filter p: pattern: required with format: regex\n");
    expect_config_refused("  - {name: p, type: parse, format: regex, pattern: '(\\d+)'}\n",
                          "filter p: pattern: \"(\\d+)\" has no named group");
    expect_config_refused("  - {name: p, type: parse, format: regex, pattern: '(?<a>[a-'}\n",
                          "filter p: pattern: invalid regex \"(?<a>[a-\" at offset 8: missing "
                          "terminating ] for character class\n");
    expect_config_refused("  - {name: p, type: parse, format: json, time_key: t, "
                          "time_format: '%Y %J'}\n",
                          "filter p: time_format: \"%Y %J\": unknown conversion \"%J\"");
    expect_config_refused("  - {name: p, type: parse, format: json, on_error: ignore}\n",
                          "on_error");
    expect_config_refused("  - {name: p, type: parse, format: json, max_fields: 0}\n",
                          "max_fields");
    char *errors = dt_filter_config_errors(
        "  - {name: p, type: parse, format: regex, pattern: '^(?<t>\\S+) (?<m>.*)$', "
        "time_key: t, time_format: '%d/%b/%Y:%H:%M:%S %z', message_key: m, keep_time: true, "
        "keep_original: false, prefix: app_, key: message, max_depth: 8, max_values: 100}\n");
    CHECK(errors == NULL);
    free(errors);
}
