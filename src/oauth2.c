/*
 * OAuth 2.0 client credentials: fetching, keeping and renewing the access
 * token of an HTTP output (see oauth2.h for the contract).
 *
 * One fetch at a time. The request is RFC 6749 section 4.4.2: a POST of
 * application/x-www-form-urlencoded grant_type=client_credentials, the
 * scopes joined by spaces and the endpoint_params, with the client
 * authenticated by HTTP Basic over the form-escaped id and secret (section
 * 2.3.1; what Go's oauth2 package, and so Prometheus, sends by default).
 *
 * Lifetime of a token, from the moment its fetch started (the server's
 * clock started no earlier): usable until expires_in minus a margin
 * (a tenth of its life, at most 10 s, so that a request in flight does not
 * arrive with an expired token); from twice the margin before that, a new
 * one is fetched in the background while the old one is still given. A
 * token without expires_in is kept until the backend answers 401.
 *
 * A failed fetch keeps whatever token is still usable, logs the reason,
 * counts it and tries again after a backoff that doubles from 1 s to 60 s
 * (drawn in [bound/2, bound]); only dr_oauth2_token asking again, or the
 * backoff timer while requests wait, starts the next fetch.
 */
#include "oauth2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "http_client.h"
#include "jsonp.h"

#define OAUTH2_BACKOFF_MIN_MS 1000
#define OAUTH2_BACKOFF_MAX_MS 60000
#define OAUTH2_MARGIN_MAX_NS (10LL * 1000000000)
#define OAUTH2_MAX_EXPIRES_S (365LL * 24 * 3600)
#define OAUTH2_MAX_ANSWER_BYTES (64 * 1024)
#define OAUTH2_MAX_PARAMS 64

const dr_option dr_oauth2_options[] = {
    {"client_id",
     DR_OPT_STRING,
     offsetof(dr_oauth2_conf, client_id),
     NULL,
     DR_OPT_ONE_OF,
     {NULL},
     0,
     0,
     "OAuth2 client credentials: the client's id. Any oauth2 key turns OAuth2 on; client_id "
     "and token_url are then required."},
    {"client_secret",
     DR_OPT_STRING,
     offsetof(dr_oauth2_conf, client_secret),
     NULL,
     DR_OPT_ONE_OF,
     {NULL},
     0,
     0,
     "The client's secret (or client_secret_file)."},
    {"client_secret_file",
     DR_OPT_STRING,
     offsetof(dr_oauth2_conf, client_secret_file),
     NULL,
     DR_OPT_ONE_OF,
     {NULL},
     0,
     0,
     "File holding the client's secret; read again whenever it changes."},
    {"token_url",
     DR_OPT_STRING,
     offsetof(dr_oauth2_conf, token_url),
     NULL,
     DR_OPT_ONE_OF,
     {NULL},
     0,
     0,
     "The token endpoint (http:// or https://). Tokens are fetched with "
     "grant_type=client_credentials and HTTP Basic client authentication, kept until shortly "
     "before expires_in runs out and fetched again after a 401; requests wait for a token, a "
     "failing endpoint is retried with backoff (1 s to 60 s) and counted in "
     "drover_oauth2_token_requests_total{result}. Not with basic_auth, bearer_token or sigv4."},
    {"scopes",
     DR_OPT_STRLIST,
     offsetof(dr_oauth2_conf, scopes),
     NULL,
     DR_OPT_ONE_OF,
     {NULL},
     0,
     0,
     "Scopes asked for (sent as one space-separated scope); none: no scope parameter."},
    {"endpoint_params",
     DR_OPT_NODE,
     offsetof(dr_oauth2_conf, endpoint_params),
     NULL,
     DR_OPT_ONE_OF,
     {NULL},
     0,
     0,
     "More form parameters for the token request, a map of strings (such as `audience`)."},
    {"tls.ca_file",
     DR_OPT_STRING,
     offsetof(dr_oauth2_conf, ca_file),
     NULL,
     DR_OPT_ONE_OF,
     {NULL},
     0,
     0,
     "PEM certificate authorities that verify the token endpoint; unset, the system's."},
    {"tls.cert_file",
     DR_OPT_STRING,
     offsetof(dr_oauth2_conf, cert_file),
     NULL,
     DR_OPT_ONE_OF,
     {NULL},
     0,
     0,
     "Client certificate (PEM) for the token endpoint; needs tls.key_file."},
    {"tls.key_file",
     DR_OPT_STRING,
     offsetof(dr_oauth2_conf, key_file),
     NULL,
     DR_OPT_ONE_OF,
     {NULL},
     0,
     0,
     "Private key (PEM) of oauth2.tls.cert_file."},
    {"tls.server_name",
     DR_OPT_STRING,
     offsetof(dr_oauth2_conf, server_name),
     NULL,
     DR_OPT_ONE_OF,
     {NULL},
     0,
     0,
     "Name to verify the token endpoint's certificate against instead of its host."},
    {"tls.insecure_skip_verify",
     DR_OPT_BOOL,
     offsetof(dr_oauth2_conf, insecure_skip_verify),
     "false",
     DR_OPT_ONE_OF,
     {NULL},
     0,
     0,
     "Do not verify the token endpoint's certificate at all. For tests only."},
    {"proxy_url",
     DR_OPT_STRING,
     offsetof(dr_oauth2_conf, proxy_url),
     NULL,
     DR_OPT_ONE_OF,
     {NULL},
     0,
     0,
     "HTTP proxy for the token requests; unset, none."},
    {0},
};

bool dr_oauth2_configured(const dr_oauth2_conf *conf)
{
    return conf->client_id || conf->client_secret || conf->client_secret_file || conf->token_url ||
           conf->scopes.n || conf->endpoint_params || conf->ca_file || conf->cert_file ||
           conf->key_file || conf->server_name || conf->insecure_skip_verify || conf->proxy_url;
}

/* ---- the pure parts ---------------------------------------------------------- */

static bool form_unreserved(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_' || ch == '.' || ch == '~';
}

int dr_form_escape(dr_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int rc;
        if (form_unreserved(*p))
            rc = dr_buf_putc(b, (char)*p);
        else if (*p == ' ')
            rc = dr_buf_putc(b, '+');
        else {
            char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            rc = dr_buf_append(b, esc, 3);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

int dr_form_add(dr_buf *b, const char *key, const char *value)
{
    int rc = 0;
    if (b->len)
        rc = dr_buf_putc(b, '&');
    if (rc == 0)
        rc = dr_form_escape(b, key);
    if (rc == 0)
        rc = dr_buf_putc(b, '=');
    if (rc == 0)
        rc = dr_form_escape(b, value);
    return rc;
}

static int base64_append(dr_buf *b, const unsigned char *s, size_t n)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        char out[4] = {alphabet[(v >> 18) & 63], alphabet[(v >> 12) & 63],
                       i + 1 < n ? alphabet[(v >> 6) & 63] : '=',
                       i + 2 < n ? alphabet[v & 63] : '='};
        if (dr_buf_append(b, out, 4) < 0)
            return DR_ENOMEM;
    }
    return 0;
}

int dr_oauth2_basic_credentials(dr_buf *b, const char *id, const char *secret)
{
    dr_buf pair = {0};
    int rc = dr_form_escape(&pair, id);
    if (rc == 0)
        rc = dr_buf_putc(&pair, ':');
    if (rc == 0)
        rc = dr_form_escape(&pair, secret);
    if (rc == 0)
        rc = dr_buf_puts(b, "Basic ");
    if (rc == 0)
        rc = base64_append(b, (const unsigned char *)pair.p, pair.len);
    if (rc == 0)
        rc = dr_buf_putc(b, '\0');
    dr_buf_free(&pair);
    return rc;
}

/* Copies s into out as printable ASCII (for a log line), cut to outsz. */
static void printable(const char *s, char *out, size_t outsz)
{
    size_t k = 0;
    for (; s && *s && k + 1 < outsz; s++) {
        unsigned char ch = (unsigned char)*s;
        out[k++] = ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\' ? '?' : (char)ch;
    }
    out[k] = '\0';
}

/* The RFC 6749 section 5.2 error of a refusal, when its body has one. */
static void describe_refusal(int status, const dr_jv *root, char *err, size_t errlen)
{
    char code[64] = "", desc[200] = "";
    printable(dr_jv_str(dr_jv_get(root, "error")), code, sizeof code);
    printable(dr_jv_str(dr_jv_get(root, "error_description")), desc, sizeof desc);
    if (code[0])
        snprintf(err, errlen, "token endpoint answered %d: %s%s%s", status, code,
                 desc[0] ? ": " : "", desc);
    else
        snprintf(err, errlen, "token endpoint answered %d", status);
}

/* expires_in as seconds: a non-negative number (a fraction is cut) or a
 * string of digits, as some servers send it; capped at a year. -1 when
 * absent or null; -2 when it is something else. */
static int64_t read_expires_in(const dr_jv *v)
{
    if (!v || v->type == DR_JV_NULL)
        return -1;
    double d;
    if (v->type == DR_JV_NUMBER && dr_jv_double(v, &d) && d >= 0)
        return d > (double)OAUTH2_MAX_EXPIRES_S ? OAUTH2_MAX_EXPIRES_S : (int64_t)d;
    if (v->type != DR_JV_STRING || v->len == 0 || v->len > 18)
        return -2;
    int64_t s = 0;
    for (const char *p = v->str; *p; p++) {
        if (*p < '0' || *p > '9')
            return -2;
        s = s * 10 + (*p - '0');
    }
    return s > OAUTH2_MAX_EXPIRES_S ? OAUTH2_MAX_EXPIRES_S : s;
}

/* An access token goes into a header line: visible ASCII only. */
static bool token_chars_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

static int read_token_object(const dr_jv *root, dr_oauth2_answer *tok, char *err, size_t errlen)
{
    const dr_jv *at = dr_jv_get(root, "access_token");
    if (!at || at->type != DR_JV_STRING || at->len == 0) {
        snprintf(err, errlen, "token endpoint answer: %s",
                 at ? "access_token is not a string" : "no access_token");
        return DR_EINVAL;
    }
    if (at->len > DR_OAUTH2_MAX_TOKEN_BYTES || !token_chars_ok(at->str, at->len)) {
        snprintf(err, errlen, "token endpoint answer: access_token %s",
                 at->len > DR_OAUTH2_MAX_TOKEN_BYTES ? "longer than 16 KiB"
                                                     : "holds spaces or control characters");
        return DR_EINVAL;
    }
    const dr_jv *type = dr_jv_get(root, "token_type");
    if (type && type->type != DR_JV_NULL &&
        (type->type != DR_JV_STRING || strcasecmp(type->str, "bearer") != 0)) {
        char t[32];
        printable(dr_jv_str(type), t, sizeof t);
        snprintf(err, errlen, "token endpoint answer: token_type \"%s\" is not Bearer", t);
        return DR_EINVAL;
    }
    int64_t expires = read_expires_in(dr_jv_get(root, "expires_in"));
    if (expires == -2) {
        snprintf(err, errlen, "token endpoint answer: expires_in is not a number of seconds");
        return DR_EINVAL;
    }
    tok->access_token = strdup(at->str);
    if (!tok->access_token) {
        snprintf(err, errlen, "out of memory");
        return DR_ENOMEM;
    }
    tok->expires_in_s = expires;
    return 0;
}

int dr_oauth2_parse_answer(int status, const char *body, size_t len, dr_oauth2_answer *tok,
                           char *err, size_t errlen)
{
    memset(tok, 0, sizeof *tok);
    tok->expires_in_s = -1;
    dr_json_doc *doc = dr_json_doc_new();
    if (!doc) {
        snprintf(err, errlen, "out of memory");
        return DR_ENOMEM;
    }
    dr_json_limits lim = {.max_depth = 16, .max_nodes = 4096};
    const dr_jv *root = NULL;
    dr_error jerr = {{0}};
    int prc = body && len ? dr_json_parse(doc, body, len, &lim, &root, &jerr) : DR_EINVAL;
    int rc = DR_EINVAL;
    if (status != 200)
        describe_refusal(status, prc == 0 ? root : NULL, err, errlen);
    else if (prc == DR_ENOMEM) {
        rc = DR_ENOMEM;
        snprintf(err, errlen, "out of memory");
    } else if (prc < 0)
        snprintf(err, errlen, "token endpoint answer is not JSON: %s",
                 len ? jerr.msg : "empty body");
    else if (root->type != DR_JV_OBJECT)
        snprintf(err, errlen, "token endpoint answer is not a JSON object");
    else
        rc = read_token_object(root, tok, err, errlen);
    dr_json_doc_free(doc);
    return rc;
}

/* ---- the token source ---------------------------------------------------------- */

typedef struct form_param {
    char *key, *value;
} form_param;

struct dr_oauth2 {
    uv_loop_t *loop;
    dr_http_client *http; /* the token endpoint's */
    char *client_id, *client_secret, *secret_file, *token_url, *scope;
    form_param params[OAUTH2_MAX_PARAMS];
    size_t nparams;
    dr_file_secret secret; /* client_secret_file's content */
    dr_oauth2_ready_fn ready;
    void *ctx;

    char *token;             /* the current token, NULL: none */
    int64_t usable_until_ns; /* monotonic; 0 with a token: until a 401 */
    int64_t renew_from_ns;   /* monotonic: fetch the next one from here */
    bool waiting;            /* someone was told "no token": call ready */

    bool fetching;
    int64_t fetch_started_ns;
    dr_buf form, auth; /* the request in flight: body and Authorization line */
    uv_timer_t backoff;
    bool backing_off;
    int64_t backoff_ms;

    dr_instance *inst;
    dr_counter *ok, *errors;
    bool closing;
};

static void oauth2_free(dr_oauth2 *o)
{
    free(o->client_id);
    free(o->client_secret);
    free(o->secret_file);
    free(o->token_url);
    free(o->scope);
    for (size_t i = 0; i < o->nparams; i++) {
        free(o->params[i].key);
        free(o->params[i].value);
    }
    dr_file_secret_free(&o->secret);
    free(o->token);
    dr_buf_free(&o->form);
    dr_buf_free(&o->auth);
    free(o);
}

static int copy_params(dr_oauth2 *o, const dr_cfg_node *map, dr_error *err)
{
    if (!map || map->type == DR_CFG_NULL)
        return 0;
    if (map->type != DR_CFG_MAP) {
        dr_error_set(err, "%s:%d:%d: oauth2.endpoint_params: expected a map of strings", map->file,
                     map->line, map->col);
        return DR_EINVAL;
    }
    if (map->n > OAUTH2_MAX_PARAMS) {
        dr_error_set(err, "%s:%d:%d: oauth2.endpoint_params: more than %d", map->file, map->line,
                     map->col, OAUTH2_MAX_PARAMS);
        return DR_EINVAL;
    }
    for (size_t i = 0; i < map->n; i++) {
        const dr_cfg_node *k = map->pairs[i].key, *v = map->pairs[i].val;
        if (v->type != DR_CFG_SCALAR) {
            dr_error_set(err, "%s:%d:%d: oauth2.endpoint_params.%s: expected a string", v->file,
                         v->line, v->col, k->str);
            return DR_EINVAL;
        }
        if (strcmp(k->str, "grant_type") == 0 || (o->scope && strcmp(k->str, "scope") == 0)) {
            dr_error_set(err, "%s:%d:%d: oauth2.endpoint_params.%s: set by drover itself", k->file,
                         k->line, k->col, k->str);
            return DR_EINVAL;
        }
        o->params[o->nparams].key = strdup(k->str);
        o->params[o->nparams].value = strdup(v->str);
        if (!o->params[o->nparams].key || !o->params[o->nparams].value) {
            free(o->params[o->nparams].key);
            free(o->params[o->nparams].value);
            dr_error_set(err, "out of memory");
            return DR_ENOMEM;
        }
        o->nparams++;
    }
    return 0;
}

static int join_scopes(dr_oauth2 *o, const dr_strlist *scopes)
{
    if (!scopes->n)
        return 0;
    dr_buf b = {0};
    for (size_t i = 0; i < scopes->n; i++)
        if ((i && dr_buf_putc(&b, ' ') < 0) || dr_buf_puts(&b, scopes->v[i]) < 0 ||
            (i + 1 == scopes->n && dr_buf_putc(&b, '\0') < 0)) {
            dr_buf_free(&b);
            return DR_ENOMEM;
        }
    o->scope = b.p;
    return 0;
}

static int check_conf(const dr_oauth2_conf *conf, dr_error *err)
{
    if (!conf->client_id || !conf->token_url) {
        dr_error_set(err, "oauth2: client_id and token_url are required");
        return DR_EINVAL;
    }
    if (!conf->client_secret == !conf->client_secret_file) {
        dr_error_set(err, "oauth2: set one of client_secret and client_secret_file");
        return DR_EINVAL;
    }
    dr_error uerr = {{0}};
    if (dr_http_check_url(conf->token_url, &uerr) < 0) {
        dr_error_set(err, "oauth2.token_%s", uerr.msg);
        return DR_EINVAL;
    }
    return 0;
}

/* The token endpoint's client: its own TLS and proxy, the output's timeouts. */
static dr_http_client *token_client(uv_loop_t *loop, const dr_oauth2_conf *conf,
                                    const struct dr_http_client_conf *outer, dr_error *err)
{
    dr_http_client_conf hc = {
        .ca_file = conf->ca_file,
        .cert_file = conf->cert_file,
        .key_file = conf->key_file,
        .server_name = conf->server_name,
        .insecure_skip_verify = conf->insecure_skip_verify,
        .proxy_url = conf->proxy_url,
        .timeout_ms = outer->timeout_ms,
        .connect_timeout_ms = outer->connect_timeout_ms,
        .max_response_bytes = OAUTH2_MAX_ANSWER_BYTES,
    };
    dr_error herr = {{0}};
    dr_http_client *c = dr_http_client_new(loop, &hc, &herr);
    if (!c)
        dr_error_set(err, "oauth2: %s", herr.msg);
    return c;
}

dr_oauth2 *dr_oauth2_new(uv_loop_t *loop, const dr_oauth2_conf *conf,
                         const struct dr_http_client_conf *outer, dr_oauth2_ready_fn ready,
                         void *ctx, dr_error *err)
{
    if (check_conf(conf, err) < 0)
        return NULL;
    char ferr[256];
    const char *secret = NULL;
    dr_file_secret probe = {0};
    if (conf->client_secret_file &&
        dr_file_secret_read(&probe, "oauth2.client_secret_file", conf->client_secret_file, &secret,
                            ferr, sizeof ferr) < 0) {
        dr_error_set(err, "%s", ferr);
        return NULL;
    }
    dr_oauth2 *o = calloc(1, sizeof *o);
    if (!o) {
        dr_file_secret_free(&probe);
        dr_error_set(err, "oauth2: out of memory");
        return NULL;
    }
    o->secret = probe;
    o->loop = loop;
    o->ready = ready;
    o->ctx = ctx;
    o->client_id = strdup(conf->client_id);
    o->token_url = strdup(conf->token_url);
    o->client_secret = conf->client_secret ? strdup(conf->client_secret) : NULL;
    o->secret_file = conf->client_secret_file ? strdup(conf->client_secret_file) : NULL;
    if (!o->client_id || !o->token_url || (conf->client_secret && !o->client_secret) ||
        (conf->client_secret_file && !o->secret_file) || join_scopes(o, &conf->scopes) < 0) {
        oauth2_free(o);
        dr_error_set(err, "oauth2: out of memory");
        return NULL;
    }
    if (copy_params(o, conf->endpoint_params, err) < 0) {
        oauth2_free(o);
        return NULL;
    }
    o->http = token_client(loop, conf, outer, err);
    if (!o->http) {
        oauth2_free(o);
        return NULL;
    }
    uv_timer_init(loop, &o->backoff);
    o->backoff.data = o;
    return o;
}

void dr_oauth2_instrument(dr_oauth2 *o, dr_instance *inst)
{
    static const char help[] = "Requests to the OAuth2 token endpoint, by result.";
    o->inst = inst;
    o->ok = dr_counter_new(inst, "drover_oauth2_token_requests_total", help, "result", "ok");
    o->errors = dr_counter_new(inst, "drover_oauth2_token_requests_total", help, "result", "error");
}

static void start_fetch(dr_oauth2 *o);

static void on_backoff(uv_timer_t *t)
{
    dr_oauth2 *o = t->data;
    o->backing_off = false;
    if (o->waiting)
        start_fetch(o);
}

static void fetch_failed(dr_oauth2 *o, const char *why)
{
    o->fetching = false;
    dr_counter_add(o->errors, 1);
    o->backoff_ms = o->backoff_ms ? o->backoff_ms * 2 : OAUTH2_BACKOFF_MIN_MS;
    if (o->backoff_ms > OAUTH2_BACKOFF_MAX_MS)
        o->backoff_ms = OAUTH2_BACKOFF_MAX_MS;
    int64_t half = o->backoff_ms / 2;
    int64_t wait = half + (int64_t)(random() % (half + 1));
    char quoted[300];
    printable(why, quoted, sizeof quoted); /* a logfmt value: no quotes inside */
    dr_log(o->inst, DR_LOG_ERROR, "oauth2: cannot get a token", "error=\"%s\" retry_in_ms=%lld",
           quoted, (long long)wait);
    o->backing_off = true;
    uv_timer_start(&o->backoff, on_backoff, (uint64_t)wait, 0);
}

/* A margin of a tenth of the token's life, at most 10 s. */
static void keep_token(dr_oauth2 *o, dr_oauth2_answer *tok)
{
    free(o->token);
    o->token = tok->access_token;
    tok->access_token = NULL;
    o->usable_until_ns = o->renew_from_ns = 0;
    if (tok->expires_in_s > 0) {
        int64_t life = tok->expires_in_s * 1000000000LL;
        int64_t margin = life / 10 < OAUTH2_MARGIN_MAX_NS ? life / 10 : OAUTH2_MARGIN_MAX_NS;
        o->usable_until_ns = o->fetch_started_ns + life - margin;
        o->renew_from_ns = o->usable_until_ns - margin;
    }
}

static void on_token_answer(void *ctx, const dr_http_response *r)
{
    dr_oauth2 *o = ctx;
    if (o->closing)
        return;
    char why[300];
    dr_oauth2_answer tok;
    if (r->status == 0) {
        char snip[200];
        dr_http_response_snippet(r, snip, sizeof snip);
        snprintf(why, sizeof why, "token endpoint: %s", snip);
        fetch_failed(o, why);
        return;
    }
    if (r->body_truncated) {
        fetch_failed(o, "token endpoint answer larger than 64 KiB");
        return;
    }
    if (dr_oauth2_parse_answer(r->status, r->body, r->body_len, &tok, why, sizeof why) < 0) {
        fetch_failed(o, why);
        return;
    }
    bool had = o->token != NULL;
    keep_token(o, &tok);
    o->fetching = false;
    o->backoff_ms = 0;
    dr_counter_add(o->ok, 1);
    dr_log(o->inst, DR_LOG_DEBUG, "oauth2: new token", "expires_in_s=%lld renewed=%s",
           (long long)tok.expires_in_s, had ? "true" : "false");
    if (o->waiting) {
        o->waiting = false;
        o->ready(o->ctx);
    }
}

/* Builds the form and the Basic line of a fetch. 0, or DR_EIO with why. */
static int build_request(dr_oauth2 *o, char *why, size_t whylen)
{
    const char *secret = o->client_secret;
    if (o->secret_file && dr_file_secret_read(&o->secret, "oauth2.client_secret_file",
                                              o->secret_file, &secret, why, whylen) < 0)
        return DR_EIO;
    dr_buf_reset(&o->form);
    dr_buf_reset(&o->auth);
    int rc = dr_form_add(&o->form, "grant_type", "client_credentials");
    if (rc == 0 && o->scope)
        rc = dr_form_add(&o->form, "scope", o->scope);
    for (size_t i = 0; rc == 0 && i < o->nparams; i++)
        rc = dr_form_add(&o->form, o->params[i].key, o->params[i].value);
    if (rc == 0)
        rc = dr_buf_puts(&o->auth, "Authorization: ");
    if (rc == 0)
        rc = dr_oauth2_basic_credentials(&o->auth, o->client_id, secret);
    if (rc < 0) {
        snprintf(why, whylen, "out of memory");
        return DR_EIO;
    }
    return 0;
}

static void start_fetch(dr_oauth2 *o)
{
    if (o->fetching || o->backing_off || o->closing)
        return;
    char why[300];
    if (build_request(o, why, sizeof why) < 0) {
        fetch_failed(o, why);
        return;
    }
    const char *headers[] = {o->auth.p, "Content-Type: application/x-www-form-urlencoded",
                             "Accept: application/json", NULL};
    dr_http_request req = {
        .method = "POST",
        .url = o->token_url,
        .headers = headers,
        .body = o->form.p ? o->form.p : "",
        .body_len = o->form.len,
    };
    o->fetch_started_ns = dr_mono_ns();
    o->fetching = true;
    int rc = dr_http_client_send(o->http, &req, on_token_answer, o);
    if (rc < 0) {
        snprintf(why, sizeof why, "cannot send the token request: %s", dr_strerror(rc));
        fetch_failed(o, why);
    }
}

const char *dr_oauth2_token(dr_oauth2 *o)
{
    int64_t now = dr_mono_ns();
    if (o->token && o->usable_until_ns && now >= o->usable_until_ns) {
        free(o->token);
        o->token = NULL;
    }
    if (o->token) {
        if (o->renew_from_ns && now >= o->renew_from_ns)
            start_fetch(o);
        return o->token;
    }
    o->waiting = true;
    start_fetch(o);
    return NULL;
}

void dr_oauth2_renew(dr_oauth2 *o)
{
    o->waiting = true;
    start_fetch(o);
}

int64_t dr_oauth2_token_life_ms(const dr_oauth2 *o)
{
    if (!o->usable_until_ns)
        return -1;
    int64_t left = o->usable_until_ns - dr_mono_ns();
    return left > 0 ? left / 1000000 : 0;
}

void dr_oauth2_reject(dr_oauth2 *o, const char *token)
{
    if (o->token && token && strcmp(o->token, token) == 0) {
        free(o->token);
        o->token = NULL;
    }
}

static void on_backoff_closed(uv_handle_t *h)
{
    oauth2_free(h->data);
}

void dr_oauth2_close(dr_oauth2 *o)
{
    if (!o || o->closing)
        return;
    o->closing = true;
    dr_http_client_close(o->http); /* cancels a fetch: on_token_answer sees closing */
    o->http = NULL;
    uv_close((uv_handle_t *)&o->backoff, on_backoff_closed);
}
