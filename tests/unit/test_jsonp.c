#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drover/plugin.h"
#include "jsonp.h"
#include "test.h"

/* One doc and the input of its last parse. The parser is handed an exact-size
 * copy of every input (no NUL after it), so a read past the end shows up
 * under ASan; the copy lives until the next parse, as the raw pointers need. */
typedef struct jp {
    dr_json_doc *doc;
    char *input;
    dr_error err;
} jp;

static void jp_init(jp *t)
{
    t->doc = dr_json_doc_new();
    t->input = NULL;
    t->err.msg[0] = '\0';
    CHECK(t->doc != NULL);
}

static void jp_done(jp *t)
{
    dr_json_doc_free(t->doc);
    free(t->input);
    t->doc = NULL;
    t->input = NULL;
}

static int jp_parse_lim(jp *t, const char *s, size_t n, const dr_json_limits *lim,
                        const dr_jv **root)
{
    free(t->input);
    t->input = malloc(n ? n : 1);
    if (n)
        memcpy(t->input, s, n);
    t->err.msg[0] = '\0';
    return dr_json_parse(t->doc, t->input, n, lim, root, &t->err);
}

static int jp_parse_n(jp *t, const char *s, size_t n, const dr_jv **root)
{
    return jp_parse_lim(t, s, n, NULL, root);
}

/* For inputs without NUL bytes. */
static const dr_jv *jp_parse(jp *t, const char *s)
{
    const dr_jv *root = NULL;
    int rc = jp_parse_n(t, s, strlen(s), &root);
    if (rc != 0)
        fprintf(stderr, "  parse of %s failed: %s\n", s, t->err.msg);
    return root;
}

/* Parses s[0..n) expecting DR_EINVAL with exactly the message want. */
static void check_error_n(const char *s, size_t n, const dr_json_limits *lim, const char *want,
                          int line)
{
    jp t;
    jp_init(&t);
    const dr_jv *root = (const dr_jv *)&t; /* must be reset to NULL */
    int rc = jp_parse_lim(&t, s, n, lim, &root);
    dt_check_int(rc, DR_EINVAL, __FILE__, line, "rc");
    dt_check(root == NULL, __FILE__, line, "root == NULL");
    dt_check_str(t.err.msg, want, __FILE__, line, "error");
    jp_done(&t);
}

static void check_error(const char *s, const char *want, int line)
{
    check_error_n(s, strlen(s), NULL, want, line);
}

/* Parses a single JSON string and checks its decoded bytes. */
static void check_string_n(const char *json, const char *want, size_t want_len, int line)
{
    jp t;
    jp_init(&t);
    const dr_jv *v = jp_parse(&t, json);
    if (dt_check(v && v->type == DR_JV_STRING, __FILE__, line, "string parsed")) {
        dt_check_mem(v->str, v->len, want, want_len, __FILE__, line, "decoded");
        dt_check(v->str[v->len] == '\0', __FILE__, line, "NUL-terminated");
        dt_check_mem(v->raw, v->raw_len, json, strlen(json), __FILE__, line, "raw");
    }
    jp_done(&t);
}

static void check_string(const char *json, const char *want, int line)
{
    check_string_n(json, want, strlen(want), line);
}

/* Reads a fixture; the test fails when it is missing. */
static char *read_fixture(const char *rel, size_t *len)
{
    char *text = dt_read_file(dt_fixture(rel), len);
    if (!text)
        fprintf(stderr, "  cannot read fixture %s\n", dt_fixture(rel));
    CHECK(text != NULL);
    return text;
}

/* The i-th member of an array or object, or NULL. */
static const dr_jv *member(const dr_jv *v, uint32_t i)
{
    if (!v || (v->type != DR_JV_ARRAY && v->type != DR_JV_OBJECT))
        return NULL;
    const dr_jv *m = v->child;
    while (m && i--)
        m = m->next;
    return m;
}

#define FFFD "\xEF\xBF\xBD"

/* ---- types and structure ------------------------------------------------------ */

void test_jsonp_scalars(void)
{
    jp t;
    jp_init(&t);

    const dr_jv *v = jp_parse(&t, "null");
    CHECK(v && v->type == DR_JV_NULL && v->str == NULL && v->len == 0);
    CHECK(v && v->key == NULL && v->child == NULL && v->next == NULL);
    v = jp_parse(&t, " \t\r\n true \n");
    CHECK(v && v->type == DR_JV_TRUE);
    CHECK(v && v->raw == t.input + 5 && v->raw_len == 4);
    v = jp_parse(&t, "false");
    CHECK(v && v->type == DR_JV_FALSE && v->raw_len == 5);

    v = jp_parse(&t, "-12.5e3");
    CHECK(v && v->type == DR_JV_NUMBER);
    CHECK_STR(dr_jv_str(v), NULL); /* a number is not a string */
    CHECK(v && v->str && strcmp(v->str, "-12.5e3") == 0 && v->len == 7);
    CHECK(v && v->raw == t.input && v->raw_len == 7);

    v = jp_parse(&t, "\"hello\"");
    CHECK(v && v->type == DR_JV_STRING && v->len == 5);
    CHECK_STR(dr_jv_str(v), "hello");
    CHECK(v && v->raw == t.input && v->raw_len == 7);

    v = jp_parse(&t, "\"\"");
    CHECK(v && v->type == DR_JV_STRING && v->len == 0);
    CHECK_STR(dr_jv_str(v), "");

    v = jp_parse(&t, " [ ] ");
    CHECK(v && v->type == DR_JV_ARRAY && v->len == 0 && v->child == NULL);
    CHECK(v && v->raw == t.input + 1 && v->raw_len == 3);
    v = jp_parse(&t, "{}");
    CHECK(v && v->type == DR_JV_OBJECT && v->len == 0 && v->child == NULL && v->raw_len == 2);
    jp_done(&t);
}

void test_jsonp_nested(void)
{
    jp t;
    jp_init(&t);
    const char *text =
        "{\"a\": [1, {\"b\" : null}, [], \"s\"], \"c\":{},\n \"d\" :\"x\", \"e\":true}";
    const dr_jv *root = jp_parse(&t, text);
    if (!CHECK(root && root->type == DR_JV_OBJECT)) {
        jp_done(&t);
        return;
    }
    CHECK_INT(root->len, 4);
    CHECK(root->raw == t.input && root->raw_len == strlen(text));
    CHECK(root->key == NULL && root->next == NULL);

    const dr_jv *a = member(root, 0);
    CHECK(a && a->type == DR_JV_ARRAY && a->len == 4);
    CHECK_STR(a ? a->key : NULL, "a");
    CHECK_INT(a ? a->key_len : 0, 1);
    CHECK_MEM(a->raw, a->raw_len, "[1, {\"b\" : null}, [], \"s\"]", 26);

    const dr_jv *one = member(a, 0);
    CHECK(one && one->type == DR_JV_NUMBER && one->key == NULL);
    CHECK_STR(one->str, "1");
    CHECK_MEM(one->raw, one->raw_len, "1", 1);

    const dr_jv *inner = member(a, 1);
    CHECK(inner && inner->type == DR_JV_OBJECT && inner->len == 1 && inner->key == NULL);
    CHECK_MEM(inner->raw, inner->raw_len, "{\"b\" : null}", 12);
    const dr_jv *b = member(inner, 0);
    CHECK(b && b->type == DR_JV_NULL && b->next == NULL);
    CHECK_STR(b->key, "b");
    CHECK_MEM(b->raw, b->raw_len, "null", 4);

    const dr_jv *empty = member(a, 2);
    CHECK(empty && empty->type == DR_JV_ARRAY && empty->len == 0 && empty->child == NULL);
    CHECK_MEM(empty->raw, empty->raw_len, "[]", 2);
    const dr_jv *s = member(a, 3);
    CHECK(s && s->type == DR_JV_STRING && s->next == NULL);
    CHECK_MEM(s->raw, s->raw_len, "\"s\"", 3);

    const dr_jv *c = member(root, 1);
    CHECK(c && c->type == DR_JV_OBJECT && c->len == 0);
    CHECK_STR(c->key, "c");
    CHECK_MEM(c->raw, c->raw_len, "{}", 2);

    const dr_jv *d = member(root, 2);
    CHECK_STR(d->key, "d");
    CHECK_STR(dr_jv_str(d), "x");
    CHECK_MEM(d->raw, d->raw_len, "\"x\"", 3);
    CHECK(d->raw == strstr(t.input, "\"x\""));

    const dr_jv *e = member(root, 3);
    CHECK(e && e->type == DR_JV_TRUE && e->next == NULL);
    CHECK_STR(e->key, "e");
    CHECK(member(root, 4) == NULL);

    /* Arrays of arrays close several levels at once. */
    root = jp_parse(&t, "[[[1]],[[2,3]]]");
    CHECK(root && root->len == 2);
    const dr_jv *three = member(member(member(root, 1), 0), 1);
    CHECK_STR(three ? three->str : NULL, "3");
    CHECK_MEM(member(root, 1)->raw, member(root, 1)->raw_len, "[[2,3]]", 7);
    jp_done(&t);
}

void test_jsonp_get_path(void)
{
    jp t;
    jp_init(&t);
    const dr_jv *root =
        jp_parse(&t, "{\"metadata\":{\"name\":\"web-1\",\"labels\":{\"app\":\"web\"}},"
                     "\"n\":7,\"a\":1,\"a\":2,\"on\":true,\"off\":false,"
                     "\"ts\":\"true\",\"list\":[{\"x\":1}],"
                     "\"k\\u0000z\":\"nul key\",\"k\":\"plain k\"}");
    CHECK(root != NULL);
    CHECK_STR(dr_jv_str(dr_jv_path(root, "metadata", "name", NULL)), "web-1");
    CHECK_STR(dr_jv_str(dr_jv_path(root, "metadata", "labels", "app", NULL)), "web");
    CHECK(dr_jv_path(root, "metadata", "labels", "missing", NULL) == NULL);
    CHECK(dr_jv_path(root, "metadata", "name", "deeper", NULL) == NULL);
    CHECK(dr_jv_path(root, "nope", "name", NULL) == NULL);
    CHECK(dr_jv_path(root, NULL) == root);
    CHECK(dr_jv_path(NULL, "metadata", NULL) == NULL);
    /* Keys do not index arrays. */
    CHECK(dr_jv_path(root, "list", "x", NULL) == NULL);
    CHECK(dr_jv_get(dr_jv_get(root, "list"), "x") == NULL);

    /* First match wins. */
    const dr_jv *a = dr_jv_get(root, "a");
    CHECK_STR(a ? a->str : NULL, "1");
    /* A key with an embedded NUL matches only its full length. */
    CHECK_STR(dr_jv_str(dr_jv_get(root, "k")), "plain k");
    const dr_jv *nulkey = member(root, 8);
    CHECK(nulkey && nulkey->key_len == 3 && memcmp(nulkey->key, "k\0z", 4) == 0);

    CHECK_STR(dr_jv_str_or(dr_jv_get(root, "n"), "def"), "def");
    CHECK_STR(dr_jv_str_or(dr_jv_get(root, "missing"), "def"), "def");
    CHECK_STR(dr_jv_str_or(dr_jv_get(root, "ts"), "def"), "true");
    CHECK_STR(dr_jv_str(NULL), NULL);
    CHECK_STR(dr_jv_str(dr_jv_get(root, "n")), NULL);

    CHECK(dr_jv_is_true(dr_jv_get(root, "on")));
    CHECK(!dr_jv_is_true(dr_jv_get(root, "off")));
    CHECK(!dr_jv_is_true(dr_jv_get(root, "ts")));
    CHECK(!dr_jv_is_true(dr_jv_get(root, "n")));
    CHECK(!dr_jv_is_true(NULL));

    CHECK(dr_jv_get(NULL, "a") == NULL);
    CHECK(dr_jv_get(dr_jv_get(root, "n"), "a") == NULL);
    jp_done(&t);
}

/* ---- strings -------------------------------------------------------------------------- */

void test_jsonp_escapes(void)
{
    check_string("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", __LINE__);
    check_string("\"a\\nb\\tc\"", "a\nb\tc", __LINE__);
    check_string("\"\\u0041\\u00e9\\u20AC\"", "A\xc3\xa9\xe2\x82\xac", __LINE__);
    check_string_n("\"a\\u0000b\"", "a\0b", 3, __LINE__);
    check_string("\"\\u007f\\u0080\\u07ff\\u0800\\uffff\"",
                 "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf", __LINE__);
    /* Surrogate pairs, either case. */
    check_string("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", __LINE__);
    check_string("\"x\\uD83D\\uDE00y\"", "x\xf0\x9f\x98\x80y", __LINE__);
    check_string("\"\\ud800\\udc00\\udbff\\udfff\"", "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", __LINE__);
    /* Lone surrogates become U+FFFD; what follows is decoded on its own. */
    check_string("\"\\ud83d\"", FFFD, __LINE__);
    check_string("\"\\ud83dx\"", FFFD "x", __LINE__);
    check_string("\"\\ude00\"", FFFD, __LINE__);
    check_string("\"\\ude00\\ud83d\"", FFFD FFFD, __LINE__);
    check_string("\"\\ud83d\\u0041\"", FFFD "A", __LINE__);
    check_string("\"\\ud83d\\n\"", FFFD "\n", __LINE__);
    check_string("\"\\ud83d\\ud83d\\ude00\"", FFFD "\xf0\x9f\x98\x80", __LINE__);
    /* An escaped quote does not end the string; DEL is not a control. */
    check_string("\"say \\\"hi\\\" \x7f\"", "say \"hi\" \x7f", __LINE__);

    /* Escapes in keys are decoded too. */
    jp t;
    jp_init(&t);
    const dr_jv *root = jp_parse(&t, "{\"a\\nb\\u00e9\": 1}");
    const dr_jv *m = member(root, 0);
    CHECK(m && m->key_len == 5);
    CHECK_STR(m ? m->key : NULL, "a\nb\xc3\xa9");
    CHECK(dr_jv_get(root, "a\nb\xc3\xa9") == m);
    CHECK_MEM(m->raw, m->raw_len, "1", 1);
    jp_done(&t);
}

void test_jsonp_bad_strings(void)
{
    check_error("\"\\x\"", "invalid escape '\\x' in string at byte 1", __LINE__);
    check_error("[\"ab\\U0041\"]", "invalid escape '\\U' in string at byte 4", __LINE__);
    check_error("\"\\'\"", "invalid escape '\\'' in string at byte 1", __LINE__);
    check_error("\"\\\x01\"", "invalid escape (backslash before 0x01) in string at byte 1",
                __LINE__);
    check_error("\"\\u12\"", "invalid \\u escape in string at byte 1", __LINE__);
    check_error("\"\\u12G4\"", "invalid \\u escape in string at byte 1", __LINE__);
    check_error("\"\\ud83d\\u12\"", "invalid \\u escape in string at byte 7", __LINE__);
    check_error("{\"k\\q\":1}", "invalid escape '\\q' in string at byte 3", __LINE__);

    check_error("\"abc", "unterminated string starting at byte 0", __LINE__);
    check_error("[1, \"abc\\\"]", "unterminated string starting at byte 4", __LINE__);
    check_error("[\"ab\\", "unterminated string starting at byte 1", __LINE__);
    check_error("\"", "unterminated string starting at byte 0", __LINE__);

    check_error("\"a\nb\"", "control character 0x0a in string at byte 2", __LINE__);
    check_error("\"a\tb\"", "control character 0x09 in string at byte 2", __LINE__);
    check_error("\"0123456789abcdef\x1f\"", "control character 0x1f in string at byte 17",
                __LINE__);
    check_error_n("\"a\0b\"", 5, NULL, "control character 0x00 in string at byte 2", __LINE__);
    check_error("{\"k\x01\":1}", "control character 0x01 in string at byte 3", __LINE__);
}

/* The end of a string is found a word at a time: put the special byte at
 * every position of the first few words and make sure none is missed. */
void test_jsonp_string_scan(void)
{
    jp t;
    jp_init(&t);
    char text[64], want[64], msg[128];
    for (int i = 0; i < 40; i++) {
        /* An escape at position i. */
        memset(want, 'a', (size_t)i);
        want[i] = '"';
        memcpy(want + i + 1, "bcdefghij", 10);
        snprintf(text, sizeof text, "\"%.*s\\\"bcdefghij\"", i, want);
        const dr_jv *v = jp_parse(&t, text);
        CHECK(v && v->type == DR_JV_STRING);
        if (v)
            CHECK_MEM(v->str, v->len, want, strlen(want));

        /* The closing quote at position i, something after it. */
        snprintf(text, sizeof text, "[\"%.*s\",1]", i, want);
        v = jp_parse(&t, text);
        CHECK(v && v->len == 2 && member(v, 0)->len == (uint32_t)i);

        /* A control byte at position i. */
        snprintf(text, sizeof text, "\"%.*s\x02zzzzzzzzzzzz\"", i, want);
        snprintf(msg, sizeof msg, "control character 0x02 in string at byte %d", i + 1);
        check_error(text, msg, __LINE__);
    }
    /* Bytes with the high bit set are ordinary string bytes for the scan. */
    const dr_jv *v = jp_parse(&t, "\"\x80\x9f\xa0\xdf\xe0\xff\x80\x81\x82\x83\xc2\xa0\"");
    CHECK(v && v->len == 12);
    jp_done(&t);
}

void test_jsonp_invalid_utf8(void)
{
    jp t;
    jp_init(&t);
    const char *bad = "\xff\xfe \xc3\x28 \xed\xa0\x80 \xf4\x90\x80\x80 \xc0\xaf caf\xc3\xa9";
    char text[128];
    snprintf(text, sizeof text, "{\"%s\":\"%s\"}", bad, bad);
    const dr_jv *root = jp_parse(&t, text);
    const dr_jv *m = member(root, 0);
    CHECK(m && m->type == DR_JV_STRING);
    if (m) {
        CHECK_MEM(m->str, m->len, bad, strlen(bad));
        CHECK_MEM(m->key, m->key_len, bad, strlen(bad));
    }
    /* Next to an escape, on the slow path. */
    check_string("\"\\n\xff\\t\xc3\"", "\n\xff\t\xc3", __LINE__);
    jp_done(&t);
}

/* ---- numbers ------------------------------------------------------------------------------ */

void test_jsonp_numbers(void)
{
    jp t;
    jp_init(&t);
    static const char *const valid[] = {
        "0",   "-0",      "1.5e-3", "1E+10", "123456789012345678901234567890", "-12.75", "0.0",
        "1e5", "-0.0e-0", "9",      "10",
    };
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        const dr_jv *v = jp_parse(&t, valid[i]);
        CHECK(v && v->type == DR_JV_NUMBER);
        CHECK_STR(v ? v->str : NULL, valid[i]);
        CHECK_INT(v ? v->len : 0, strlen(valid[i]));
        CHECK_MEM(v->raw, v->raw_len, valid[i], strlen(valid[i]));
    }
    const dr_jv *root = jp_parse(&t, "[0,-0,1.5e-3 , 1E+10]");
    CHECK(root && root->len == 4);
    CHECK_STR(member(root, 2)->str, "1.5e-3");
    CHECK_MEM(member(root, 2)->raw, member(root, 2)->raw_len, "1.5e-3", 6);
    CHECK_STR(member(root, 3)->str, "1E+10");
    jp_done(&t);

    check_error("01", "leading zero in number at byte 1", __LINE__);
    check_error("-01", "leading zero in number at byte 2", __LINE__);
    check_error("[00]", "leading zero in number at byte 2", __LINE__);
    check_error("1.", "expected a digit after '.' in number at byte 2", __LINE__);
    check_error("1.e5", "expected a digit after '.' in number at byte 2", __LINE__);
    check_error(".5", "expected a value, found '.' at byte 0", __LINE__);
    check_error("+1", "expected a value, found '+' at byte 0", __LINE__);
    check_error("-", "expected a digit in number at byte 1", __LINE__);
    check_error("[-]", "expected a digit in number at byte 2", __LINE__);
    check_error("1e", "expected a digit in exponent at byte 2", __LINE__);
    check_error("1e+", "expected a digit in exponent at byte 3", __LINE__);
    check_error("NaN", "expected a value, found 'N' at byte 0", __LINE__);
    check_error("Infinity", "expected a value, found 'I' at byte 0", __LINE__);
    check_error("-Infinity", "expected a digit in number at byte 1", __LINE__);
    check_error("0x10", "unexpected 'x' after the JSON value at byte 1", __LINE__);
    check_error("1.5.3", "unexpected '.' after the JSON value at byte 3", __LINE__);
}

void test_jsonp_int_double(void)
{
    jp t;
    jp_init(&t);
    const dr_jv *root = jp_parse(&t, "[0, -0, 42, -17, 9223372036854775807, -9223372036854775808,"
                                     " 9223372036854775808, -9223372036854775809, 1.5, 1e3, 1.0,"
                                     " \"12\", 99999999999999999999]");
    CHECK(root && root->len == 13);
    int64_t i = 12345;
    CHECK(dr_jv_int(member(root, 0), &i) && i == 0);
    CHECK(dr_jv_int(member(root, 1), &i) && i == 0);
    CHECK(dr_jv_int(member(root, 2), &i) && i == 42);
    CHECK(dr_jv_int(member(root, 3), &i) && i == -17);
    CHECK(dr_jv_int(member(root, 4), &i) && i == INT64_MAX);
    CHECK(dr_jv_int(member(root, 5), &i) && i == INT64_MIN);
    i = 777;
    CHECK(!dr_jv_int(member(root, 6), &i));
    CHECK(!dr_jv_int(member(root, 7), &i));
    CHECK(!dr_jv_int(member(root, 8), &i));
    CHECK(!dr_jv_int(member(root, 9), &i));
    CHECK(!dr_jv_int(member(root, 10), &i));
    CHECK(!dr_jv_int(member(root, 11), &i)); /* a string */
    CHECK(!dr_jv_int(member(root, 12), &i));
    CHECK(!dr_jv_int(NULL, &i));
    CHECK_INT(i, 777); /* untouched on failure */

    double d = 0;
    CHECK(dr_jv_double(member(root, 8), &d) && d == 1.5);
    CHECK(dr_jv_double(member(root, 9), &d) && d == 1000.0);
    CHECK(dr_jv_double(member(root, 3), &d) && d == -17.0);
    CHECK(dr_jv_double(member(root, 12), &d) && d == 1e20);
    CHECK(!dr_jv_double(member(root, 11), &d));
    CHECK(!dr_jv_double(root, &d));
    CHECK(!dr_jv_double(NULL, &d));
    jp_done(&t);
}

/* ---- strictness ------------------------------------------------------------------------------ */

void test_jsonp_strict_errors(void)
{
    check_error("", "expected a value, found end of input at byte 0", __LINE__);
    check_error(" \n\t ", "expected a value, found end of input at byte 4", __LINE__);
    check_error("[1,]", "trailing comma at byte 2", __LINE__);
    check_error("{\"a\":1,}", "trailing comma at byte 6", __LINE__);
    check_error("{\"a\":1, }", "trailing comma at byte 6", __LINE__);
    check_error("[,1]", "expected a value, found ',' at byte 1", __LINE__);
    check_error("[1,,2]", "expected a value, found ',' at byte 3", __LINE__);
    check_error("{\"a\":1,,}", "expected a string key, found ',' at byte 7", __LINE__);
    check_error("{\"a\" 1}", "expected ':' after object key at byte 5", __LINE__);
    check_error("{\"a\"}", "expected ':' after object key at byte 4", __LINE__);
    check_error("{1:2}", "expected a string key, found '1' at byte 1", __LINE__);
    check_error("{'a':2}", "expected a string key, found ''' at byte 1", __LINE__);
    check_error("{} x", "unexpected 'x' after the JSON value at byte 3", __LINE__);
    check_error("{}{}", "unexpected '{' after the JSON value at byte 2", __LINE__);
    check_error("1 2", "unexpected '2' after the JSON value at byte 2", __LINE__);
    check_error("nulls", "unexpected 's' after the JSON value at byte 4", __LINE__);
    check_error("[1 2]", "expected ',' or ']' after array element, found '2' at byte 3", __LINE__);
    check_error("[1}", "expected ',' or ']' after array element, found '}' at byte 2", __LINE__);
    check_error("{\"a\":1 \"b\":2}",
                "expected ',' or '}' after object member, found '\"' at byte 7", __LINE__);
    check_error("[", "expected a value, found end of input at byte 1", __LINE__);
    check_error("[1", "expected ',' or ']' after array element, found end of input at byte 2",
                __LINE__);
    check_error("{", "expected a string key, found end of input at byte 1", __LINE__);
    check_error("{\"a\":", "expected a value, found end of input at byte 5", __LINE__);
    check_error("]", "expected a value, found ']' at byte 0", __LINE__);
    check_error("tru", "invalid literal (expected true) at byte 0", __LINE__);
    check_error("[nul]", "invalid literal (expected null) at byte 1", __LINE__);
    check_error("False", "expected a value, found 'F' at byte 0", __LINE__);
    check_error("// c\n1", "expected a value, found '/' at byte 0", __LINE__);
    check_error("[1]/* c */", "unexpected '/' after the JSON value at byte 3", __LINE__);
    check_error("\xef\xbb\xbf{}", "expected a value, found 0xef at byte 0", __LINE__);
    check_error("[1,\v2]", "expected a value, found 0x0b at byte 3", __LINE__);
    check_error_n("{}\0", 3, NULL, "unexpected 0x00 after the JSON value at byte 2", __LINE__);
    check_error_n("[\0]", 3, NULL, "expected a value, found 0x00 at byte 1", __LINE__);

    /* An error leaves no root, and the doc parses the next input as usual. */
    jp t;
    jp_init(&t);
    const dr_jv *root = NULL;
    CHECK_INT(jp_parse_n(&t, "[1,", 3, &root), DR_EINVAL);
    CHECK(root == NULL);
    root = jp_parse(&t, "[1]");
    CHECK(root && root->len == 1);
    /* A NULL input of length 0 is empty, not a crash. */
    CHECK_INT(dr_json_parse(t.doc, NULL, 0, NULL, &root, &t.err), DR_EINVAL);
    CHECK_STR(t.err.msg, "expected a value, found end of input at byte 0");
    jp_done(&t);
}

/* ---- limits -----------------------------------------------------------------------------------
 */

/* n '[' then n ']' (when closed). Caller frees. */
static char *nested_arrays(size_t n, bool closed, size_t *len)
{
    *len = closed ? 2 * n : n;
    char *s = malloc(*len);
    memset(s, '[', n);
    if (closed)
        memset(s + n, ']', n);
    return s;
}

void test_jsonp_depth_limit(void)
{
    size_t len;
    char *deep = nested_arrays(100000, false, &len);
    check_error_n(deep, len, NULL, "nesting deeper than 64 at byte 64", __LINE__);
    free(deep);
    deep = nested_arrays(100000, true, &len);
    check_error_n(deep, len, NULL, "nesting deeper than 64 at byte 64", __LINE__);

    /* The limit is not bounded by the C stack: 100000 levels when allowed. */
    jp t;
    jp_init(&t);
    dr_json_limits lim = {.max_depth = 100000};
    const dr_jv *root = NULL;
    CHECK_INT(jp_parse_lim(&t, deep, len, &lim, &root), 0);
    size_t levels = 0;
    for (const dr_jv *v = root; v; v = v->child) {
        levels++;
        if (v->child == NULL)
            CHECK(v->len == 0 && v->raw_len == 2);
        else
            CHECK(v->len == 1 && v->next == NULL);
    }
    CHECK_INT(levels, 100000);
    CHECK(root && root->raw_len == len);
    lim.max_depth = 99999;
    CHECK_INT(jp_parse_lim(&t, deep, len, &lim, &root), DR_EINVAL);
    CHECK_STR(t.err.msg, "nesting deeper than 99999 at byte 99999");
    free(deep);

    /* Exactly 64 levels pass by default; 65 do not. */
    deep = nested_arrays(64, true, &len);
    CHECK_INT(jp_parse_lim(&t, deep, len, NULL, &root), 0);
    free(deep);
    deep = nested_arrays(65, true, &len);
    check_error_n(deep, len, NULL, "nesting deeper than 64 at byte 64", __LINE__);
    free(deep);

    /* Objects count the same; an empty container counts as a level. */
    char obj[1024] = "";
    for (int i = 0; i < 65; i++)
        strcat(obj, "{\"a\":");
    strcat(obj, "1");
    for (int i = 0; i < 65; i++)
        strcat(obj, "}");
    check_error(obj, "nesting deeper than 64 at byte 320", __LINE__);
    lim.max_depth = 65;
    CHECK_INT(jp_parse_lim(&t, obj, strlen(obj), &lim, &root), 0);
    CHECK(dr_jv_path(root, "a", "a", "a", NULL) != NULL);
    lim.max_depth = 1;
    check_error_n("[[]]", 4, &lim, "nesting deeper than 1 at byte 1", __LINE__);
    check_error_n("[{}]", 4, &lim, "nesting deeper than 1 at byte 1", __LINE__);
    CHECK_INT(jp_parse_lim(&t, "[1,2]", 5, &lim, &root), 0);
    jp_done(&t);
}

void test_jsonp_max_nodes(void)
{
    dr_json_limits lim = {.max_nodes = 4};
    jp t;
    jp_init(&t);
    const dr_jv *root = NULL;
    CHECK_INT(jp_parse_lim(&t, "[1,2,3]", 7, &lim, &root), 0);
    CHECK(root && root->len == 3);
    lim.max_nodes = 3;
    check_error_n("[1,2,3]", 7, &lim, "more than 3 values at byte 5", __LINE__);
    check_error_n("{\"a\":{\"b\":[1]}}", 15, &lim, "more than 3 values at byte 11", __LINE__);
    lim.max_nodes = 1;
    CHECK_INT(jp_parse_lim(&t, "\"only\"", 6, &lim, &root), 0);
    /* The count starts over with every document. */
    for (int i = 0; i < 3; i++)
        CHECK_INT(jp_parse_lim(&t, "7", 1, &lim, &root), 0);

    /* pod-basic.json holds 92 values (counted with Python's json module). */
    size_t len;
    char *text = read_fixture("k8s-api/pod-basic.json", &len);
    if (text) {
        lim.max_nodes = 92;
        CHECK_INT(jp_parse_lim(&t, text, len, &lim, &root), 0);
        lim.max_nodes = 91;
        CHECK_INT(jp_parse_lim(&t, text, len, &lim, &root), DR_EINVAL);
        CHECK(strstr(t.err.msg, "more than 91 values at byte ") == t.err.msg);
    }
    free(text);
    jp_done(&t);
}

/* ---- the arena ------------------------------------------------------------------------------- */

/* "[0,1,...,n-1]" in a fresh buffer. */
static char *number_array(int n, size_t *len)
{
    size_t cap = 16 + (size_t)n * 12;
    char *s = malloc(cap);
    size_t at = 0;
    s[at++] = '[';
    for (int i = 0; i < n; i++)
        at += (size_t)snprintf(s + at, cap - at, i ? ",%d" : "%d", i);
    s[at++] = ']';
    *len = at;
    return s;
}

void test_jsonp_arena_reuse(void)
{
    jp t;
    jp_init(&t);
    size_t fresh = dr_json_doc_memory(t.doc);
    CHECK(fresh >= 64 * 1024);

    /* Many small documents, one doc: the first block serves them all. */
    char line[256];
    int bad = 0;
    for (int i = 0; i < 10000; i++) {
        snprintf(line, sizeof line,
                 "{\"level\":\"info\",\"i\":%d,\"msg\":\"line \\\"%d\\\"\",\"tags\":[\"a\",%d]}", i,
                 i, i % 7);
        const dr_jv *root = jp_parse(&t, line);
        int64_t got = -1, tag = -1;
        char want[64];
        snprintf(want, sizeof want, "line \"%d\"", i);
        if (!root || !dr_jv_int(dr_jv_get(root, "i"), &got) || got != i ||
            strcmp(dr_jv_str_or(dr_jv_get(root, "msg"), ""), want) != 0 ||
            !dr_jv_int(member(dr_jv_get(root, "tags"), 1), &tag) || tag != i % 7)
            bad++;
    }
    CHECK_INT(bad, 0);
    CHECK_INT(dr_json_doc_memory(t.doc), fresh);

    /* A big document grows the chain... */
    size_t len;
    char *big = number_array(200000, &len);
    const dr_jv *root = NULL;
    CHECK_INT(jp_parse_n(&t, big, len, &root), 0);
    CHECK(root && root->len == 200000);
    int64_t last = -1;
    CHECK(dr_jv_int(member(root, 199999), &last) && last == 199999);
    size_t grown = dr_json_doc_memory(t.doc);
    CHECK(grown > fresh + 200000 * sizeof(dr_jv));

    /* ...which later documents reuse rather than add to, */
    CHECK(jp_parse(&t, "[1]") != NULL);
    CHECK_INT(dr_json_doc_memory(t.doc), grown);
    CHECK_INT(jp_parse_n(&t, big, len, &root), 0);
    CHECK_INT(dr_json_doc_memory(t.doc), grown);
    CHECK(dr_jv_int(member(root, 123456), &last) && last == 123456);

    /* and trim gives back. */
    dr_json_doc_trim(t.doc);
    CHECK_INT(dr_json_doc_memory(t.doc), fresh);
    root = jp_parse(&t, "{\"after\":\"trim\"}");
    CHECK_STR(dr_jv_str(dr_jv_get(root, "after")), "trim");
    dr_json_doc_trim(t.doc); /* twice in a row, and on a small doc, is harmless */
    dr_json_doc_trim(t.doc);
    CHECK_INT(dr_json_doc_memory(t.doc), fresh);
    free(big);
    jp_done(&t);
    dr_json_doc_free(NULL);
}

void test_jsonp_big_strings(void)
{
    jp t;
    jp_init(&t);
    size_t fresh = dr_json_doc_memory(t.doc);

    /* A 1.2 MiB string with escapes, larger than a block. */
    size_t reps = 400000;
    char *text = malloc(reps * 4 + 16);
    char *want = malloc(reps * 3 + 1);
    size_t at = 0;
    text[at++] = '[';
    text[at++] = '"';
    for (size_t i = 0; i < reps; i++) {
        memcpy(text + at, "ab\\n", 4);
        at += 4;
        memcpy(want + i * 3, "ab\n", 3);
    }
    memcpy(text + at, "\",\"tail\"]", 9);
    at += 9;
    const dr_jv *root = NULL;
    CHECK_INT(jp_parse_n(&t, text, at, &root), 0);
    const dr_jv *s = member(root, 0);
    CHECK(s && s->type == DR_JV_STRING);
    if (s) {
        CHECK_MEM(s->str, s->len, want, reps * 3);
        CHECK(s->str[s->len] == '\0');
        CHECK_INT(s->raw_len, reps * 4 + 2);
    }
    CHECK_STR(dr_jv_str(member(root, 1)), "tail");
    CHECK(dr_json_doc_memory(t.doc) > fresh + reps * 3);

    /* The separate block of a big string goes with the next document. */
    CHECK(jp_parse(&t, "\"small\"") != NULL);
    CHECK_INT(dr_json_doc_memory(t.doc), fresh);

    /* Strings right around the size that gets a separate block. */
    for (size_t n = 16 * 1024 - 64; n < 16 * 1024 + 64; n += 7) {
        memset(text, 'x', n + 2);
        text[0] = '"';
        text[n + 1] = '"';
        const dr_jv *v = NULL;
        CHECK_INT(jp_parse_n(&t, text, n + 2, &v), 0);
        CHECK(v && v->len == n && v->str[n] == '\0' && v->str[n - 1] == 'x');
    }
    free(text);
    free(want);
    jp_done(&t);
}

/* ---- Kubernetes objects -------------------------------------------------------------------------
 */

/* The kind of the first ownerReference of a pod, or NULL. */
static const char *owner_kind(const dr_jv *pod)
{
    return dr_jv_str(
        dr_jv_get(member(dr_jv_path(pod, "metadata", "ownerReferences", NULL), 0), "kind"));
}

void test_jsonp_k8s_podlist(void)
{
    size_t len;
    char *text = read_fixture("k8s-api/podlist-apiserver-k8s1.35.json", &len);
    if (!text)
        return;
    jp t;
    jp_init(&t);
    const dr_jv *root = NULL;
    CHECK_INT(jp_parse_n(&t, text, len, &root), 0);
    CHECK_STR(dr_jv_str(dr_jv_get(root, "kind")), "List");
    CHECK_STR(dr_jv_str(dr_jv_get(root, "apiVersion")), "v1");
    CHECK_STR(dr_jv_str(dr_jv_path(root, "metadata", "resourceVersion", NULL)), "");
    const dr_jv *items = dr_jv_get(root, "items");
    CHECK(items && items->type == DR_JV_ARRAY);
    CHECK_INT(items ? items->len : 0, 25);

    const dr_jv *coredns = member(items, 0);
    CHECK_STR(dr_jv_str(dr_jv_path(coredns, "metadata", "name", NULL)), "coredns-7d764666f9-qdcxt");
    CHECK_STR(dr_jv_str(dr_jv_path(coredns, "metadata", "namespace", NULL)), "kube-system");
    CHECK_STR(dr_jv_str(dr_jv_path(coredns, "metadata", "labels", "k8s-app", NULL)), "kube-dns");
    CHECK_STR(dr_jv_str(dr_jv_path(coredns, "metadata", "uid", NULL)),
              "36447428-81f8-45eb-b825-414de2e8012b");
    CHECK_STR(dr_jv_str(dr_jv_path(coredns, "spec", "nodeName", NULL)), "datagen-1-35");
    CHECK_STR(owner_kind(coredns), "ReplicaSet");
    CHECK_STR(dr_jv_str(dr_jv_path(coredns, "status", "podIP", NULL)), "10.244.0.2");
    const dr_jv *ports =
        dr_jv_get(member(dr_jv_path(coredns, "spec", "containers", NULL), 0), "ports");
    CHECK_INT(ports ? ports->len : 0, 5);
    int64_t port = 0;
    CHECK(dr_jv_int(dr_jv_get(member(ports, 2), "containerPort"), &port) && port == 9153);
    CHECK_STR(dr_jv_str(dr_jv_get(member(ports, 2), "name")), "metrics");

    CHECK_STR(owner_kind(member(items, 1)), "Node");
    CHECK_STR(owner_kind(member(items, 2)), "DaemonSet");
    CHECK_STR(owner_kind(member(items, 23)), "StatefulSet");
    CHECK(owner_kind(member(items, 8)) == NULL);
    /* The pending pod has no node yet. */
    const dr_jv *pending = member(items, 10);
    CHECK_STR(dr_jv_str(dr_jv_path(pending, "metadata", "name", NULL)), "e2e-container-pending");
    CHECK(dr_jv_path(pending, "spec", "nodeName", NULL) == NULL);
    CHECK_STR(dr_jv_str(dr_jv_path(member(items, 24), "metadata", "name", NULL)),
              "e2e-statefulset-1");
    CHECK(member(items, 25) == NULL);

    /* An annotation holding JSON (with \" escapes) decodes to JSON that parses. */
    const dr_jv *applied = dr_jv_path(member(items, 8), "metadata", "annotations",
                                      "kubectl.kubernetes.io/last-applied-configuration", NULL);
    CHECK(applied && applied->len == 578 && applied->str[577] == '\n');
    if (applied) {
        jp inner;
        jp_init(&inner);
        const dr_jv *cfg = NULL;
        CHECK_INT(jp_parse_n(&inner, applied->str, applied->len, &cfg), 0);
        CHECK_STR(dr_jv_str(dr_jv_path(cfg, "metadata", "labels", "integration-test", NULL)),
                  "storage-provisioner");
        CHECK(dr_jv_is_true(dr_jv_path(cfg, "spec", "hostNetwork", NULL)));
        jp_done(&inner);
    }

    /* Every item's raw text is the exact object, braces included. */
    for (const dr_jv *pod = items ? items->child : NULL; pod; pod = pod->next)
        CHECK(pod->raw[0] == '{' && pod->raw[pod->raw_len - 1] == '}');
    CHECK(root && root->raw == t.input && root->raw_len == len);
    free(text);
    jp_done(&t);
}

void test_jsonp_k8s_kubelet_pods(void)
{
    size_t len;
    char *text = read_fixture("k8s-api/kubelet-pods-k8s1.35.json", &len);
    if (!text)
        return;
    jp t;
    jp_init(&t);
    const dr_jv *root = NULL;
    CHECK_INT(jp_parse_n(&t, text, len, &root), 0);
    CHECK_STR(dr_jv_str(dr_jv_get(root, "kind")), "PodList");
    const dr_jv *items = dr_jv_get(root, "items");
    CHECK_INT(items ? items->len : 0, 24);

    const dr_jv *hpa = member(items, 0);
    CHECK_STR(dr_jv_str(dr_jv_path(hpa, "metadata", "name", NULL)), "e2e-hpa-6cd8d99884-tggnr");
    CHECK_STR(dr_jv_str(dr_jv_path(hpa, "metadata", "namespace", NULL)), "scraper");
    CHECK_STR(dr_jv_str(dr_jv_path(hpa, "metadata", "labels", "run", NULL)), "php-apache");
    CHECK_STR(dr_jv_str(dr_jv_path(hpa, "spec", "nodeName", NULL)), "datagen-1-35");
    CHECK_STR(dr_jv_str(dr_jv_path(hpa, "status", "phase", NULL)), "Running");
    CHECK_STR(owner_kind(hpa), "ReplicaSet");
    const dr_jv *limits =
        dr_jv_path(member(dr_jv_path(hpa, "spec", "containers", NULL), 0), "resources", NULL);
    CHECK_STR(dr_jv_str(dr_jv_path(limits, "limits", "cpu", NULL)), "500m");
    CHECK_STR(dr_jv_str(dr_jv_path(limits, "requests", "cpu", NULL)), "200m");
    /* managedFields keys carry escaped quotes. */
    const dr_jv *refs = dr_jv_path(member(dr_jv_path(hpa, "metadata", "managedFields", NULL), 0),
                                   "fieldsV1", "f:metadata", "f:ownerReferences", NULL);
    CHECK(dr_jv_get(refs, "k:{\"uid\":\"4a0089d7-98ab-420a-8873-391691d3974f\"}") != NULL);

    const dr_jv *job = member(items, 1);
    CHECK_STR(dr_jv_str(dr_jv_path(job, "metadata", "name", NULL)), "e2e-failjob-64h4g");
    CHECK_STR(
        dr_jv_str(dr_jv_path(job, "metadata", "labels", "batch.kubernetes.io/job-name", NULL)),
        "e2e-failjob");
    CHECK_STR(owner_kind(job), "Job");
    const dr_jv *ds = member(items, 23);
    CHECK_STR(dr_jv_str(dr_jv_path(ds, "metadata", "name", NULL)), "e2e-daemonset-kb65b");
    CHECK_STR(dr_jv_str(dr_jv_path(ds, "status", "podIP", NULL)), "10.244.0.4");
    free(text);
    jp_done(&t);
}

void test_jsonp_k8s_pod_basic(void)
{
    size_t len;
    char *text = read_fixture("k8s-api/pod-basic.json", &len);
    if (!text)
        return;
    jp t;
    jp_init(&t);
    const dr_jv *pod = NULL;
    CHECK_INT(jp_parse_n(&t, text, len, &pod), 0);
    CHECK_STR(dr_jv_str(dr_jv_get(pod, "kind")), "Pod");
    CHECK_STR(dr_jv_str(dr_jv_path(pod, "metadata", "name", NULL)), "base");
    CHECK_STR(dr_jv_str(dr_jv_path(pod, "metadata", "namespace", NULL)), "core");
    CHECK_STR(dr_jv_str(dr_jv_path(pod, "metadata", "labels", "app.kubernetes.io/name", NULL)),
              "fluent-bit");
    CHECK_STR(dr_jv_str(dr_jv_path(pod, "metadata", "annotations", "prometheus.io/port", NULL)),
              "2020");
    CHECK_STR(dr_jv_str(dr_jv_path(pod, "spec", "nodeName", NULL)),
              "ip-10-49-18-80.eu-west-1.compute.internal");
    int64_t grace = 0;
    CHECK(dr_jv_int(dr_jv_path(pod, "spec", "terminationGracePeriodSeconds", NULL), &grace));
    CHECK_INT(grace, 30);
    const dr_jv *container = member(dr_jv_path(pod, "spec", "containers", NULL), 0);
    CHECK(dr_jv_is_true(dr_jv_get(container, "tty")));
    const dr_jv *resources = dr_jv_get(container, "resources");
    CHECK(resources && resources->type == DR_JV_OBJECT && resources->len == 0);
    CHECK_MEM(resources->raw, resources->raw_len, "{}", 2);
    const dr_jv *tolerations = dr_jv_path(pod, "spec", "tolerations", NULL);
    CHECK_INT(tolerations ? tolerations->len : 0, 2);
    CHECK_STR(dr_jv_str(dr_jv_get(member(tolerations, 1), "key")),
              "node.kubernetes.io/unreachable");
    const dr_jv *cond = member(dr_jv_path(pod, "status", "conditions", NULL), 1);
    CHECK_STR(dr_jv_str(dr_jv_get(cond, "type")), "Ready");
    CHECK(dr_jv_get(cond, "lastProbeTime") && dr_jv_get(cond, "lastProbeTime")->type == DR_JV_NULL);
    CHECK_STR(dr_jv_str(dr_jv_path(pod, "status", "podIP", NULL)), "100.116.192.42");
    const dr_jv *mode = dr_jv_path(member(dr_jv_path(pod, "spec", "volumes", NULL), 0), "secret",
                                   "defaultMode", NULL);
    CHECK_MEM(mode->raw, mode->raw_len, "420", 3);
    free(text);
    jp_done(&t);
}

void test_jsonp_k8s_watch_event(void)
{
    size_t len;
    char *text = read_fixture("k8s-api/watch-event-modified-event.json", &len);
    if (!text)
        return;
    /* A watch stream: the event three times, one per line; each line parsed
     * on its own with the same doc, as the watcher does. */
    size_t line_len = strcspn(text, "\n");
    size_t stream_len = 3 * (line_len + 1);
    char *stream = malloc(stream_len);
    for (int i = 0; i < 3; i++) {
        memcpy(stream + i * (line_len + 1), text, line_len);
        stream[i * (line_len + 1) + line_len] = '\n';
    }
    jp t;
    jp_init(&t);
    int parsed = 0;
    for (const char *p = stream; p < stream + stream_len;) {
        const char *nl = memchr(p, '\n', (size_t)(stream + stream_len - p));
        const dr_jv *ev = NULL;
        CHECK_INT(jp_parse_n(&t, p, (size_t)(nl - p), &ev), 0);
        CHECK_STR(dr_jv_str(dr_jv_get(ev, "type")), "MODIFIED");
        const dr_jv *obj = dr_jv_get(ev, "object");
        CHECK_STR(dr_jv_str(dr_jv_get(obj, "kind")), "Event");
        CHECK_STR(dr_jv_str(dr_jv_path(obj, "metadata", "name", NULL)),
                  "fluent-bit-78945dccd8-hvr55.17e75f85e7d9e678");
        CHECK_STR(dr_jv_str(dr_jv_path(obj, "involvedObject", "name", NULL)),
                  "fluent-bit-78945dccd8-hvr55");
        CHECK_STR(dr_jv_str(dr_jv_get(obj, "reason")), "FailedMount");
        CHECK_STR(dr_jv_str(dr_jv_get(obj, "message")),
                  "MountVolume.SetUp failed for volume \"config-volume\" : configmap "
                  "\"fluent-bit-config\" not found");
        CHECK_STR(dr_jv_str(dr_jv_path(obj, "source", "host", NULL)), "minikube");
        int64_t count = 0;
        CHECK(dr_jv_int(dr_jv_get(obj, "count"), &count) && count == 16);
        const dr_jv *event_time = dr_jv_get(obj, "eventTime");
        CHECK(event_time && event_time->type == DR_JV_NULL);
        const dr_jv *fields =
            dr_jv_path(member(dr_jv_path(obj, "metadata", "managedFields", NULL), 0), "fieldsV1",
                       "f:source", NULL);
        CHECK(fields && fields->len == 2 && dr_jv_get(fields, "f:host") != NULL);
        /* The object's raw text is the JSON to forward as is. */
        CHECK(obj && obj->raw_len == (size_t)(nl - p) - 29 && obj->raw[obj->raw_len] == '}');
        parsed++;
        p = nl + 1;
    }
    CHECK_INT(parsed, 3);
    free(stream);
    free(text);
    jp_done(&t);
}
