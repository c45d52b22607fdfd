/*
 * Tests of src/oauth2.c: the form encoding and the Basic credentials of a
 * token request, the token endpoint's answers (good, refused, garbage,
 * without expires_in), the checks of the oauth2 map, and the rule that
 * only one way to authenticate may be configured (DR_OPT_ONE_OF).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "http_client.h"
#include "oauth2.h"
#include "test.h"

static char out[1024];

static const char *escaped(const char *s)
{
    dr_buf b = {0};
    CHECK_INT(dr_form_escape(&b, s), 0);
    snprintf(out, sizeof out, "%.*s", (int)b.len, b.p ? b.p : "");
    dr_buf_free(&b);
    return out;
}

void test_oauth2_form_encoding(void)
{
    CHECK_STR(escaped(""), "");
    CHECK_STR(escaped("AZaz09-_.~"), "AZaz09-_.~");
    CHECK_STR(escaped("a b&c=d/e+f"), "a+b%26c%3Dd%2Fe%2Bf");
    CHECK_STR(escaped("caf\xc3\xa9%\n"), "caf%C3%A9%25%0A");
    CHECK_STR(escaped("https://monitor.azure.com/.default"),
              "https%3A%2F%2Fmonitor.azure.com%2F.default");

    dr_buf b = {0};
    CHECK_INT(dr_form_add(&b, "grant_type", "client_credentials"), 0);
    CHECK_INT(dr_form_add(&b, "scope", "read write"), 0);
    CHECK_INT(dr_form_add(&b, "a&b", ""), 0);
    CHECK_MEM(b.p, b.len, "grant_type=client_credentials&scope=read+write&a%26b=", 53);
    dr_buf_free(&b);
}

void test_oauth2_basic_credentials(void)
{
    dr_buf b = {0};
    /* base64("client+id:s3cr%3At"): both halves form-escaped first */
    CHECK_INT(dr_oauth2_basic_credentials(&b, "client id", "s3cr:t"), 0);
    CHECK_STR(b.p, "Basic Y2xpZW50K2lkOnMzY3IlM0F0");
    dr_buf_reset(&b);
    /* every padding length */
    CHECK_INT(dr_oauth2_basic_credentials(&b, "a", ""), 0);
    CHECK_STR(b.p, "Basic YTo=");
    dr_buf_reset(&b);
    CHECK_INT(dr_oauth2_basic_credentials(&b, "ab", ""), 0);
    CHECK_STR(b.p, "Basic YWI6");
    dr_buf_reset(&b);
    CHECK_INT(dr_oauth2_basic_credentials(&b, "abc", ""), 0);
    CHECK_STR(b.p, "Basic YWJjOg==");
    dr_buf_free(&b);
}

/* Parses an answer; returns its rc, leaves the error in `out`. */
static int answer(int status, const char *body, size_t len, dr_oauth2_answer *tok)
{
    out[0] = '\0';
    return dr_oauth2_parse_answer(status, body, len, tok, out, sizeof out);
}

static int answer_s(int status, const char *body, dr_oauth2_answer *tok)
{
    return answer(status, body, strlen(body), tok);
}

void test_oauth2_token_answers(void)
{
    dr_oauth2_answer t;
    CHECK_INT(answer_s(200,
                       "{\"access_token\":\"abc.def\",\"token_type\":\"Bearer\","
                       "\"expires_in\":3599}",
                       &t),
              0);
    CHECK_STR(t.access_token, "abc.def");
    CHECK_INT(t.expires_in_s, 3599);
    free(t.access_token);

    /* lower-case type, expires_in as a string (Azure AD v1), other members */
    CHECK_INT(answer_s(200,
                       " {\"token_type\":\"bearer\",\"expires_in\":\"60\",\"ext\":[1,{}],"
                       "\"access_token\":\"x\"} ",
                       &t),
              0);
    CHECK_STR(t.access_token, "x");
    CHECK_INT(t.expires_in_s, 60);
    free(t.access_token);

    /* no expires_in, no token_type: kept until a 401 */
    CHECK_INT(answer_s(200, "{\"access_token\":\"tok\"}", &t), 0);
    CHECK_INT(t.expires_in_s, -1);
    free(t.access_token);
    CHECK_INT(answer_s(200, "{\"access_token\":\"tok\",\"expires_in\":null}", &t), 0);
    CHECK_INT(t.expires_in_s, -1);
    free(t.access_token);

    /* a fraction is cut, a huge value capped at a year */
    CHECK_INT(answer_s(200, "{\"access_token\":\"t\",\"expires_in\":10.9}", &t), 0);
    CHECK_INT(t.expires_in_s, 10);
    free(t.access_token);
    CHECK_INT(answer_s(200, "{\"access_token\":\"t\",\"expires_in\":1e300}", &t), 0);
    CHECK_INT(t.expires_in_s, 365LL * 24 * 3600);
    free(t.access_token);
}

void test_oauth2_token_answer_errors(void)
{
    dr_oauth2_answer t;
    CHECK_INT(answer_s(200, "{\"token_type\":\"Bearer\"}", &t), DR_EINVAL);
    CHECK_STR(out, "token endpoint answer: no access_token");
    CHECK(t.access_token == NULL);
    CHECK_INT(answer_s(200, "{\"access_token\":42}", &t), DR_EINVAL);
    CHECK_STR(out, "token endpoint answer: access_token is not a string");
    CHECK_INT(answer_s(200, "{\"access_token\":\"\"}", &t), DR_EINVAL);
    CHECK_INT(answer_s(200, "{\"access_token\":\"a b\"}", &t), DR_EINVAL);
    CHECK_STR(out, "token endpoint answer: access_token holds spaces or control characters");
    CHECK_INT(answer_s(200, "{\"access_token\":\"a\\r\\nX-Evil: 1\"}", &t), DR_EINVAL);
    CHECK_INT(answer_s(200, "{\"access_token\":\"t\",\"token_type\":\"mac\"}", &t), DR_EINVAL);
    CHECK_STR(out, "token endpoint answer: token_type \"mac\" is not Bearer");
    CHECK_INT(answer_s(200, "{\"access_token\":\"t\",\"expires_in\":-5}", &t), DR_EINVAL);
    CHECK_STR(out, "token endpoint answer: expires_in is not a number of seconds");
    CHECK_INT(answer_s(200, "{\"access_token\":\"t\",\"expires_in\":\"soon\"}", &t), DR_EINVAL);
    CHECK_INT(answer_s(200, "{\"access_token\":\"t\",\"expires_in\":true}", &t), DR_EINVAL);

    /* not JSON, not an object, empty, binary garbage */
    CHECK_INT(answer_s(200, "access_token=t&token_type=bearer", &t), DR_EINVAL);
    CHECK(strncmp(out, "token endpoint answer is not JSON: ", 35) == 0);
    CHECK_INT(answer_s(200, "[\"access_token\"]", &t), DR_EINVAL);
    CHECK_STR(out, "token endpoint answer is not a JSON object");
    CHECK_INT(answer(200, "", 0, &t), DR_EINVAL);
    CHECK_STR(out, "token endpoint answer is not JSON: empty body");
    CHECK_INT(answer(200, "\x00\xff{\x01", 4, &t), DR_EINVAL);
    CHECK_INT(answer_s(200, "{\"access_token\":\"t\"", &t), DR_EINVAL);

    /* a token longer than 16 KiB */
    size_t n = DR_OAUTH2_MAX_TOKEN_BYTES + 1;
    char *big = malloc(n + 32);
    CHECK(big != NULL);
    if (big) {
        int k = snprintf(big, 32, "{\"access_token\":\"");
        memset(big + k, 'a', n);
        memcpy(big + k + n, "\"}", 3);
        CHECK_INT(answer_s(200, big, &t), DR_EINVAL);
        CHECK_STR(out, "token endpoint answer: access_token longer than 16 KiB");
        free(big);
    }

    /* refusals: RFC 6749 5.2 errors, made printable; other bodies */
    CHECK_INT(answer_s(401,
                       "{\"error\":\"invalid_client\",\"error_description\":\"bad \\\"id\\\"\"}",
                       &t),
              DR_EINVAL);
    CHECK_STR(out, "token endpoint answered 401: invalid_client: bad ?id?");
    CHECK_INT(answer_s(400, "{\"error\":\"invalid_scope\"}", &t), DR_EINVAL);
    CHECK_STR(out, "token endpoint answered 400: invalid_scope");
    CHECK_INT(answer_s(503, "<html>down</html>", &t), DR_EINVAL);
    CHECK_STR(out, "token endpoint answered 503");
    /* a token in a non-200 answer is not taken */
    CHECK_INT(answer_s(201, "{\"access_token\":\"t\"}", &t), DR_EINVAL);
    CHECK(t.access_token == NULL);
}

/* dr_oauth2_new's checks; a good conf makes a source that closes cleanly. */
static const char *new_error(const dr_oauth2_conf *conf)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    dr_http_client_conf outer = {.timeout_ms = 1000, .connect_timeout_ms = 1000};
    dr_error err = {{0}};
    dr_oauth2 *o = dr_oauth2_new(&loop, conf, &outer, NULL, NULL, &err);
    snprintf(out, sizeof out, "%s", o ? "" : err.msg);
    dr_oauth2_close(o);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(&loop), 0);
    return out;
}

void test_oauth2_conf_checks(void)
{
    dr_oauth2_conf c = {.client_id = "id", .client_secret = "s", .token_url = "http://h/token"};
    CHECK_STR(new_error(&c), "");
    c.token_url = NULL;
    CHECK_STR(new_error(&c), "oauth2: client_id and token_url are required");
    c.token_url = "ftp://h/token";
    CHECK_STR(new_error(&c),
              "oauth2.token_url: the scheme must be http:// or https://, not ftp://");
    c.token_url = "http://h/token";
    c.client_secret_file = "/nonexistent/secret";
    CHECK_STR(new_error(&c), "oauth2: set one of client_secret and client_secret_file");
    c.client_secret = NULL;
    CHECK_STR(new_error(&c),
              "oauth2.client_secret_file /nonexistent/secret: No such file or directory");
    c.client_secret_file = NULL;
    CHECK_STR(new_error(&c), "oauth2: set one of client_secret and client_secret_file");

    dr_cfg_errors e = {0};
    dr_cfg_doc *d = dr_cfg_load_string("p.yaml",
                                       "a: {audience: x, n: 1}\n"
                                       "b: {grant_type: password}\n"
                                       "c: {audience: [x]}\n"
                                       "d: [x]\n",
                                       &e);
    CHECK(d != NULL);
    if (!d)
        return;
    const dr_cfg_node *root = dr_cfg_root(d);
    c.client_secret = "s";
    c.endpoint_params = dr_cfg_get(root, "a");
    CHECK_STR(new_error(&c), "");
    c.endpoint_params = dr_cfg_get(root, "b");
    CHECK_STR(new_error(&c), "p.yaml:2:5: oauth2.endpoint_params.grant_type: set by drover itself");
    c.endpoint_params = dr_cfg_get(root, "c");
    CHECK_STR(new_error(&c), "p.yaml:3:15: oauth2.endpoint_params.audience: expected a string");
    c.endpoint_params = dr_cfg_get(root, "d");
    CHECK_STR(new_error(&c), "p.yaml:4:4: oauth2.endpoint_params: expected a map of strings");
    dr_cfg_doc_free(d);
    dr_cfg_errors_free(&e);
}

/* Applies yaml (an output's map) to the HTTP options; the first error or "". */
static const char *apply_http(const char *yaml)
{
    dr_cfg_errors e = {0};
    dr_cfg_doc *d = dr_cfg_load_string("o.yaml", yaml, &e);
    CHECK(d != NULL);
    dr_http_client_conf conf = {0};
    if (d)
        dr_cfg_apply(dr_http_client_options, dr_cfg_root(d), &conf, "outputs[0]", NULL, &e);
    snprintf(out, sizeof out, "%s", e.n ? e.msg[0] : "");
    dr_cfg_free_conf(dr_http_client_options, &conf);
    dr_cfg_doc_free(d);
    dr_cfg_errors_free(&e);
    return out;
}

void test_oauth2_one_way_to_authenticate(void)
{
    CHECK_STR(apply_http("oauth2:\n  client_id: a\n  client_secret: b\n  token_url: http://t/\n"
                         "  scopes: [x, y]\n  endpoint_params: {audience: z}\n"),
              "");
    CHECK_STR(apply_http("basic_auth: {username: u, password: p}\n"), "");
    CHECK_STR(apply_http("bearer_token: t\noauth2:\n  client_id: a\n"),
              "o.yaml:3:3: outputs[0].oauth2: cannot be set with bearer_token: choose one way to "
              "authenticate");
    CHECK_STR(apply_http("oauth2: {token_url: http://t/}\nbasic_auth: {username: u}\n"),
              "o.yaml:2:13: outputs[0].basic_auth: cannot be set with oauth2: choose one way to "
              "authenticate");
    CHECK_STR(apply_http("bearer_token: t\noauth2: {tls: {insecure_skip_verify: false}}\n"),
              "o.yaml:2:9: outputs[0].oauth2: cannot be set with bearer_token: choose one way to "
              "authenticate");
    dr_oauth2_conf only_tls = {.ca_file = "/ca.pem"};
    CHECK(dr_oauth2_configured(&only_tls));
    dr_oauth2_conf none = {0};
    CHECK(!dr_oauth2_configured(&none));
    CHECK_STR(apply_http("bearer_token: t\nbearer_token_file: /f\n"),
              "o.yaml:2:20: outputs[0].bearer_token_file: cannot be set with bearer_token: choose "
              "one way to authenticate");
}
