/*
 * The modify filter: operations in order through a oneshot agent, the
 * configurations it refuses, and lift (with its JSON object walker) on
 * records built directly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/filters/modify/lift.h"
#include "buf.h"
#include "filter_harness.h"
#include "test.h"

static void expect_bodies(const char *operations, const char *line, const char *want)
{
    char filters[2048];
    snprintf(filters, sizeof filters, "  - {name: m, type: modify, operations: [%s]}\n",
             operations);
    dr_metrics *m = dr_metrics_new();
    char *out = dt_filter_run_lines(filters, line, m);
    if (CHECK(out != NULL)) {
        char *bodies = dt_filter_bodies(out);
        if (!CHECK_STR(bodies, want))
            fprintf(stderr, "    with %s\n", operations);
        free(bodies);
    }
    free(out);
    dr_metrics_free(m);
}

static const char *const hello = "2026-11-25T04:00:01.000000001Z stderr F hello world\n";

void test_modify_operations(void)
{
    expect_bodies("'set env prod', 'set note two  words here', 'copy kubernetes.pod pod', "
                  "'copy stream src', 'copy time at', 'copy message original', 'set tmp_a 1', "
                  "'set tmp_b 2', 'set keep 3', 'remove tmp_* nothing_here', 'rename keep kept', "
                  "'rename absent whatever', 'copy absent whatever', 'set message replaced', "
                  "'rename original message'",
                  hello,
                  "\"message\":\"hello world\",\"env\":\"prod\",\"note\":\"two  words here\","
                  "\"pod\":\"web-1\",\"src\":\"stderr\",\"at\":\"2026-11-25T04:00:01.000000001Z\","
                  "\"kept\":\"3\"\n");
    expect_bodies("'set message new line', 'copy message copy'", hello,
                  "\"message\":\"new line\",\"copy\":\"new line\"\n");
    expect_bodies("'set a 1', 'set b 2', 'set c 3', 'remove *'", hello,
                  "\"message\":\"hello world\"\n");
}

/* Each operation sees what the ones before it did. */
void test_modify_order(void)
{
    expect_bodies("'set a 1', 'rename a b', 'set a 2'", hello,
                  "\"message\":\"hello world\",\"b\":\"1\",\"a\":\"2\"\n");
    expect_bodies("'rename a b', 'set a 1'", hello, "\"message\":\"hello world\",\"a\":\"1\"\n");
    /* rename replaces the target and keeps the renamed field's place */
    expect_bodies("'set a 1', 'set b 2', 'set c 3', 'rename a c'", hello,
                  "\"message\":\"hello world\",\"c\":\"1\",\"b\":\"2\"\n");
    expect_bodies("'copy kubernetes.namespace ns', 'set ns changed', 'copy ns message'", hello,
                  "\"message\":\"changed\",\"ns\":\"changed\"\n");
}

void test_modify_lift_string_is_an_error(void)
{
    dr_metrics *m = dr_metrics_new();
    char *out = dt_filter_run_lines(
        "  - {name: m, type: modify, operations: ['copy message payload', 'lift payload']}\n",
        "2026-11-25T04:00:01.000000001Z stdout F {\"a\":1}\n", m);
    char *bodies = out ? dt_filter_bodies(out) : NULL;
    /* a string that looks like an object is still a string: not lifted */
    CHECK_STR(bodies, "\"message\":\"{\\\"a\\\":1}\",\"payload\":\"{\\\"a\\\":1}\"\n");
    CHECK_INT(dt_metric(m, "drover_filter_modify_errors_total{plugin=\"modify\",name=\"m\"}"), 1);
    free(bodies);
    free(out);
    dr_metrics_free(m);
}

static void expect_refused(const char *operations, const char *want)
{
    char filters[1024];
    snprintf(filters, sizeof filters, "  - {name: m, type: modify, operations: [%s]}\n",
             operations);
    char *errors = dt_filter_config_errors(filters);
    if (CHECK(errors != NULL) && !CHECK(strstr(errors, want) != NULL))
        fprintf(stderr, "    errors: %s    want: %s\n", errors, want);
    free(errors);
}

void test_modify_config_errors(void)
{
    expect_refused("'frob a'", "filter m: operations[0]: unknown operation \"frob\" (known: set, "
                               "rename, copy, remove, lift)\n");
    expect_refused("'set a 1', 'set stream x'",
                   "filter m: operations[1]: \"stream\" cannot be changed (stream, time and "
                   "kubernetes.* come from the source; copy them to a field to change the copy)\n");
    expect_refused("'set env'", "filter m: operations[0]: expected \"set KEY VALUE\"\n");
    expect_refused("'rename message x'", "filter m: operations[0]: \"message\" cannot be removed "
                                         "or renamed (set it to change it)\n");
    expect_refused("'rename a time'", "operations[0]: \"time\" cannot be changed");
    expect_refused("'copy a kubernetes.pod'",
                   "operations[0]: \"kubernetes.pod\" cannot be changed");
    expect_refused("'copy kubernetes.nope a'", "operations[0]: unknown key \"kubernetes.nope\"");
    expect_refused("'remove a b*c'",
                   "operations[0]: \"b*c\": `*` may only end a name (a prefix such as tmp_*)\n");
    expect_refused("'remove time'", "operations[0]: \"time\" cannot be changed");
    expect_refused("'remove message'", "operations[0]: \"message\" cannot be removed");
    expect_refused("'remove'", "operations[0]: expected \"remove KEY...\"\n");
    expect_refused("'rename a'", "operations[0]: expected \"rename OLD NEW\"\n");
    expect_refused("'copy a b c'", "operations[0]: expected \"copy FROM TO\"\n");
    expect_refused("'lift'", "operations[0]: expected \"lift KEY\" or \"lift KEY PREFIX\"\n");
    expect_refused("'lift a b c'", "operations[0]: expected \"lift KEY\" or \"lift KEY PREFIX\"\n");
    expect_refused("'lift a kubernetes.x'",
                   "operations[0]: prefix \"kubernetes.x\": kubernetes.* keys cannot be changed\n");
    expect_refused("'lift stream'", "operations[0]: \"stream\" cannot be changed");
    expect_refused("", "filter m: operations: give at least one operation\n");
    char *errors = dt_filter_config_errors("  - {name: m, type: modify}\n");
    CHECK(errors && strstr(errors, "operations: missing required key"));
    free(errors);
}

/* ---- lift on records built directly ---------------------------------------------- */

/* The record's fields as "key=value(s|j)" joined by "; ", and the message. */
static char *describe(const dr_record *r)
{
    dr_buf b = {0};
    dr_buf_printf(&b, "message=%.*s", (int)r->msg_len, r->msg ? r->msg : "");
    for (uint16_t i = 0; i < r->nfields; i++) {
        const dr_field *f = &r->fields[i];
        dr_buf_printf(&b, "; %.*s=%.*s(%c)", (int)f->key_len, f->key, (int)f->val_len, f->val,
                      f->type == DR_FIELD_JSON ? 'j' : 's');
    }
    dr_buf_putc(&b, '\0');
    return b.p;
}

/* Lifts `json` (a JSON field "payload") with prefix and checks the result
 * code and the record after it. */
static void expect_lift(const char *json, const char *prefix, int want_rc, const char *want)
{
    dr_chunk *c = dr_chunk_new(NULL, 0);
    dr_record *r = dr_chunk_add(c);
    r->msg = "line";
    r->msg_len = 4;
    CHECK_INT(dr_record_set(c, r, "before", 6, "b", 1, DR_FIELD_STRING), 0);
    CHECK_INT(dr_record_set(c, r, "payload", 7, json, strlen(json), DR_FIELD_JSON), 0);
    dr_lift_scratch s = {0};
    int rc = dr_lift(c, r, "payload", 7, prefix, strlen(prefix), &s);
    CHECK_INT(rc, want_rc);
    char *got = describe(r);
    if (!CHECK_STR(got, want))
        fprintf(stderr, "    lifting %s\n", json);
    free(got);
    dr_lift_scratch_free(&s);
    dr_chunk_discard(c);
}

void test_modify_lift(void)
{
    expect_lift("{\"user\":\"ann\",\"ms\":12,\"ok\":true,\"tags\":[\"a\",\"b]\"],"
                "\"nested\":{\"x\":{\"y\":[1,{\"z\":\"}\"}]}},\"n\":null,\"f\":-1.5e3}",
                "p_", 0,
                "message=line; before=b(s); p_user=ann(s); p_ms=12(j); p_ok=true(j); "
                "p_tags=[\"a\",\"b]\"](j); p_nested={\"x\":{\"y\":[1,{\"z\":\"}\"}]}}(j); "
                "p_n=null(j); p_f=-1.5e3(j)");
    /* escapes in values and names are decoded */
    expect_lift("{\"esc\":\"q\\\"b\\\\s\\/\\u00e9\\ud83d\\ude00\\n\\t\",\"a\\u0062\":\"\","
                "\"lone\":\"\\ud800x\"}",
                "", 0,
                "message=line; before=b(s); esc=q\"b\\s/\xc3\xa9\xf0\x9f\x98\x80\n\t(s); ab=(s); "
                "lone=\xef\xbf\xbdx(s)");
    /* whitespace anywhere JSON allows it */
    expect_lift(" \n{ \"a\" :\t1 ,\r\n \"b\":[ 1 , 2 ] } \n", "", 0,
                "message=line; before=b(s); a=1(j); b=[ 1 , 2 ](j)");
    expect_lift("{}", "", 0, "message=line; before=b(s)");
    /* a member may replace the message, an existing field, or the lifted key */
    expect_lift("{\"message\":\"new\",\"before\":\"B\",\"payload\":{\"in\":1}}", "", 0,
                "message=new; before=B(s); payload={\"in\":1}(j)");
}

void test_modify_lift_refused(void)
{
    static const char *const bad[] = {
        "[1,2]",
        "\"text\"",
        "17",
        "",
        "{",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{\"a\":tru}",
        "{\"a\":[1,2}",
        "{\"a\":\"x}",
        "{\"a\":1} x",
        "{\"a\":01}",
        "{\"a\":\"\\q\"}",
        "{\"a\":\"t\tb\"}",
        "{\"a\":\"\\u12\"}",
        "{a:1}",
        "{\"a\":1 \"b\":2}",
        "{\"a\":{\"b\":1]}",
        "{\"a\":-}",
        "{\"a\":1.}",
        "{\"a\":1e}",
        "{\"a\":[,1]}",
        "{\"a\":{\"b\"}}",
        "{\"a\":[1 2]}",
        "{,\"a\":1}",
        "{\"a\":1}}",
        "{\"a\":\"x\"",
        "{\"time\":\"t\"}",
        "{\"kubernetes.pod\":1}",
        "{\"\":1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char want[256];
        snprintf(want, sizeof want, "message=line; before=b(s); payload=%s(j)", bad[i]);
        expect_lift(bad[i], "", DR_EINVAL, want);
    }
    /* a prefix makes "time" a name like any other */
    expect_lift("{\"time\":\"t\"}", "x_", 0, "message=line; before=b(s); x_time=t(s)");
}

void test_modify_lift_depth_and_kinds(void)
{
    /* nesting up to the bound is fine, one more is refused */
    for (int extra = 0; extra < 2; extra++) {
        dr_buf text = {0};
        dr_buf_puts(&text, "{\"a\":");
        for (int i = 1; i < DR_LIFT_MAX_DEPTH + extra; i++)
            dr_buf_putc(&text, '[');
        for (int i = 1; i < DR_LIFT_MAX_DEPTH + extra; i++)
            dr_buf_putc(&text, ']');
        dr_buf_putc(&text, '}');
        dr_chunk *c = dr_chunk_new(NULL, 0);
        dr_record *r = dr_chunk_add(c);
        CHECK_INT(dr_record_set(c, r, "p", 1, text.p, text.len, DR_FIELD_JSON), 0);
        dr_lift_scratch s = {0};
        CHECK_INT(dr_lift(c, r, "p", 1, "", 0, &s), extra ? DR_EINVAL : 0);
        dr_value v;
        char tbuf[40];
        CHECK(dr_record_get(c, r, extra ? "p" : "a", 1, &v, tbuf));
        dr_lift_scratch_free(&s);
        dr_chunk_discard(c);
        dr_buf_free(&text);
    }

    /* no such field: nothing to do; a string field: refused, untouched */
    dr_chunk *c = dr_chunk_new(NULL, 0);
    dr_record *r = dr_chunk_add(c);
    dr_lift_scratch s = {0};
    CHECK_INT(dr_lift(c, r, "payload", 7, "", 0, &s), 0);
    CHECK_INT(dr_record_set(c, r, "payload", 7, "{\"a\":1}", 7, DR_FIELD_STRING), 0);
    CHECK_INT(dr_lift(c, r, "payload", 7, "", 0, &s), DR_EINVAL);
    CHECK_INT(r->nfields, 1);
    dr_lift_scratch_free(&s);
    dr_chunk_discard(c);
}
