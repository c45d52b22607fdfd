/*
 * Fetching temporary AWS credentials on the loop (aws_provider.h).
 *
 * A fetch is a short chain of HTTP requests, one at a time, each answered
 * in on_answer by the step it was sent for:
 *
 *   web identity   STS AssumeRoleWithWebIdentity
 *   container      GET of the credentials URI
 *   IMDS           PUT token, GET role name, GET the role's credentials
 *   then, with role_arn, STS AssumeRole signed with what came before.
 *
 * One fetch is in flight at most: the next is armed on the timer when one
 * ends (the refresh before expiry, or the retry after a failure).
 */
#include "aws_provider.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "aws_credential_answers.h"
#include "buf.h"
#include "http_client.h"
#include "sigv4.h"

#define CONTAINER_RELATIVE_HOST "http://169.254.170.2"
#define IMDS_DEFAULT_ENDPOINT "http://169.254.169.254"
#define IMDS_TOKEN_TTL_S 21600
#define FETCH_TIMEOUT_MS 5000
#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 60000
#define REFRESH_BEFORE_MS (5 * 60 * 1000)
/* a web identity or container token file larger than this is not one */
#define TOKEN_FILE_MAX_BYTES (16u * 1024)

typedef enum {
    STEP_WEB_IDENTITY,
    STEP_CONTAINER,
    STEP_IMDS_TOKEN,
    STEP_IMDS_ROLE,
    STEP_IMDS_CREDS,
    STEP_ASSUME_ROLE,
} fetch_step;

struct dr_aws_provider {
    dr_instance *inst;
    dr_aws_source source;
    char *region, *role_arn, *external_id, *session_name;
    char *sts_url, *imds_url;
    /* web identity */
    char *web_role_arn, *web_token_file, *web_session_name;
    /* container */
    char *container_url, *container_token_file, *container_token;

    dr_aws_creds base;    /* the static source's keys, or what a fetch got before AssumeRole */
    dr_aws_creds current; /* what signs; zero while there is none */

    dr_http_client *client;
    uv_timer_t timer;
    bool started, closing;
    fetch_step step;
    int64_t retry_ms;
    char *imds_token;
    char imds_role[128];
    /* the request in flight: its URL, body and headers live here until done */
    dr_buf url, body, hdr[6];
    const char *headers[8];

    dr_counter *errors_source, *errors_assume, *refreshes;
    dr_gauge *expiry;
    void (*on_ready)(void *ctx);
    void *ctx;
};

/* ---- the environment ---------------------------------------------------------------------- */

bool dr_aws_web_identity_configured(void)
{
    const char *a = getenv("AWS_ROLE_ARN"), *f = getenv("AWS_WEB_IDENTITY_TOKEN_FILE");
    return a && *a && f && *f;
}

bool dr_aws_container_configured(void)
{
    const char *r = getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
               *f = getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    return (r && *r) || (f && *f);
}

bool dr_aws_imds_enabled(void)
{
    const char *d = getenv("AWS_EC2_METADATA_DISABLED");
    return !d || strcasecmp(d, "true") != 0;
}

const char *dr_aws_source_name(dr_aws_source s)
{
    switch (s) {
    case DR_AWS_SOURCE_WEB_IDENTITY:
        return "web_identity";
    case DR_AWS_SOURCE_CONTAINER:
        return "container";
    case DR_AWS_SOURCE_IMDS:
        return "imds";
    case DR_AWS_SOURCE_STATIC:
        break;
    }
    return "static";
}

bool dr_aws_container_url_allowed(const char *url)
{
    if (strncasecmp(url, "https://", 8) == 0)
        return true;
    if (strncasecmp(url, "http://", 7) != 0)
        return false;
    const char *h = url + 7;
    size_t n;
    if (*h == '[') {
        const char *e = strchr(h, ']');
        if (!e)
            return false;
        n = (size_t)(e + 1 - h);
    } else {
        n = strcspn(h, ":/?#");
    }
    static const char *const allowed[] = {"localhost", "[::1]", "169.254.170.2", "169.254.170.23",
                                          "[fd00:ec2::23]"};
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        if (strlen(allowed[i]) == n && strncasecmp(h, allowed[i], n) == 0)
            return true;
    /* 127.0.0.0/8, written as a dotted quad */
    unsigned a, b, c, d;
    char tail;
    char host[64];
    if (n >= sizeof host)
        return false;
    memcpy(host, h, n);
    host[n] = '\0';
    return sscanf(host, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4 && a == 127 && b < 256 &&
           c < 256 && d < 256;
}

static int read_container_env(dr_aws_provider *p, dr_error *err)
{
    char *rel = dr_aws_env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    if (rel) {
        size_t n = sizeof CONTAINER_RELATIVE_HOST + strlen(rel) + 1;
        p->container_url = malloc(n);
        if (p->container_url)
            snprintf(p->container_url, n, "%s%s%s", CONTAINER_RELATIVE_HOST,
                     rel[0] == '/' ? "" : "/", rel);
        free(rel);
    } else {
        p->container_url = dr_aws_env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
        if (p->container_url && !dr_aws_container_url_allowed(p->container_url)) {
            dr_error_set(err, "AWS_CONTAINER_CREDENTIALS_FULL_URI: over http only a loopback "
                              "host, 169.254.170.2, 169.254.170.23 or fd00:ec2::23 is allowed");
            return DR_EINVAL;
        }
    }
    if (!p->container_url) {
        dr_error_set(err, "no AWS_CONTAINER_CREDENTIALS_RELATIVE_URI nor _FULL_URI");
        return DR_EINVAL;
    }
    p->container_token_file = dr_aws_env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    if (!p->container_token_file)
        p->container_token = dr_aws_env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    return 0;
}

static int read_web_identity_env(dr_aws_provider *p, dr_error *err)
{
    p->web_role_arn = dr_aws_env("AWS_ROLE_ARN");
    p->web_token_file = dr_aws_env("AWS_WEB_IDENTITY_TOKEN_FILE");
    p->web_session_name = dr_aws_env("AWS_ROLE_SESSION_NAME");
    if (!p->web_role_arn || !p->web_token_file) {
        dr_error_set(err, "web identity needs AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE");
        return DR_EINVAL;
    }
    if (!p->web_session_name)
        p->web_session_name = strdup("drover");
    return p->web_session_name ? 0 : DR_ENOMEM;
}

/* An endpoint given, else the variable's, else the default; without a
 * trailing slash. */
static char *endpoint(const char *given, const char *var, const char *fmt, const char *arg)
{
    char *e = given ? strdup(given) : dr_aws_env(var);
    if (!e) {
        size_t n = strlen(fmt) + strlen(arg) + 1;
        if ((e = malloc(n)))
            snprintf(e, n, fmt, arg);
    }
    size_t n = e ? strlen(e) : 0;
    while (n > 0 && e[n - 1] == '/')
        e[--n] = '\0';
    return e;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

dr_aws_provider *dr_aws_provider_new(dr_instance *inst, const dr_aws_provider_conf *conf,
                                     dr_error *err)
{
    dr_aws_provider *p = calloc(1, sizeof *p);
    if (!p) {
        dr_error_set(err, "out of memory");
        return NULL;
    }
    p->inst = inst;
    p->source = conf->source;
    p->region = dup_or_null(conf->region);
    p->role_arn = dup_or_null(conf->role_arn);
    p->external_id = dup_or_null(conf->external_id);
    p->session_name = strdup(conf->session_name ? conf->session_name : "drover");
    p->sts_url =
        endpoint(conf->sts_endpoint, "AWS_ENDPOINT_URL_STS", "https://sts.%s.amazonaws.com",
                 conf->region ? conf->region : "us-east-1");
    p->imds_url = endpoint(conf->imds_endpoint, "AWS_EC2_METADATA_SERVICE_ENDPOINT", "%s",
                           IMDS_DEFAULT_ENDPOINT);
    int rc = 0;
    if (conf->source == DR_AWS_SOURCE_STATIC) {
        p->base = *conf->base;
        memset(conf->base, 0, sizeof *conf->base);
        if (!p->role_arn) {
            dr_error_set(err, "static credentials need no provider without a role to assume");
            rc = DR_EINVAL;
        }
    } else if (conf->source == DR_AWS_SOURCE_WEB_IDENTITY) {
        rc = read_web_identity_env(p, err);
    } else if (conf->source == DR_AWS_SOURCE_CONTAINER) {
        rc = read_container_env(p, err);
    }
    if (rc == 0 && (!p->session_name || !p->sts_url || !p->imds_url)) {
        dr_error_set(err, "out of memory");
        rc = DR_ENOMEM;
    }
    if (rc != 0) {
        dr_aws_provider_close(p);
        return NULL;
    }
    return p;
}

/* ---- requests ------------------------------------------------------------------------------ */

/* key=value& with the value percent-encoded as a form wants. */
static void form_add(dr_buf *b, const char *key, const char *value)
{
    if (b->len)
        dr_buf_putc(b, '&');
    dr_buf_printf(b, "%s=", key);
    for (const unsigned char *s = (const unsigned char *)value; *s; s++) {
        if ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
            *s == '-' || *s == '_' || *s == '.' || *s == '~')
            dr_buf_putc(b, (char)*s);
        else
            dr_buf_printf(b, "%%%02X", *s);
    }
}

/* A token file's content without its trailing newline; NULL with err. */
static char *read_token_file(const char *path, dr_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        dr_error_set(err, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(TOKEN_FILE_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, TOKEN_FILE_MAX_BYTES + 1, f) : 0;
    fclose(f);
    if (!buf || n > TOKEN_FILE_MAX_BYTES) {
        dr_error_set(err, "%s: %s", path, buf ? "larger than 16 KiB" : "out of memory");
        free(buf);
        return NULL;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = '\0';
    if (n == 0) {
        dr_error_set(err, "%s: the token file is empty", path);
        free(buf);
        return NULL;
    }
    return buf;
}

/* Sets header slot i to "Name: value" (NULL-terminates the list after it). */
static void set_header(dr_aws_provider *p, size_t i, const char *name, const char *value)
{
    dr_buf_reset(&p->hdr[i]);
    dr_buf_printf(&p->hdr[i], "%s: %s", name, value);
    dr_buf_putc(&p->hdr[i], '\0');
    p->headers[i] = p->hdr[i].p;
    p->headers[i + 1] = NULL;
}

static void on_answer(void *ctx, const dr_http_response *r);

/* Sends the request set up in p->url, p->body and p->headers. */
static int send_step(dr_aws_provider *p, fetch_step step, const char *method, dr_error *err)
{
    dr_buf_putc(&p->url, '\0');
    p->step = step;
    dr_http_request req = {.method = method,
                           .url = p->url.p,
                           .headers = p->headers,
                           .body = p->body.len ? p->body.p : NULL,
                           .body_len = p->body.len,
                           .timeout_ms = FETCH_TIMEOUT_MS,
                           .max_response_bytes = DR_AWS_ANSWER_MAX_BYTES};
    int rc = dr_http_client_send(p->client, &req, on_answer, p);
    if (rc != 0)
        dr_error_set(err, "cannot send to %s: %s", p->url.p, dr_strerror(rc));
    return rc;
}

static void reset_request(dr_aws_provider *p)
{
    dr_buf_reset(&p->url);
    dr_buf_reset(&p->body);
    p->headers[0] = NULL;
}

static int send_web_identity(dr_aws_provider *p, dr_error *err)
{
    char *token = read_token_file(p->web_token_file, err);
    if (!token)
        return DR_EIO;
    reset_request(p);
    dr_buf_printf(&p->url, "%s/", p->sts_url);
    form_add(&p->body, "Action", "AssumeRoleWithWebIdentity");
    form_add(&p->body, "Version", "2011-06-15");
    form_add(&p->body, "RoleArn", p->web_role_arn);
    form_add(&p->body, "RoleSessionName", p->web_session_name);
    form_add(&p->body, "WebIdentityToken", token);
    memset(token, 0, strlen(token));
    free(token);
    set_header(p, 0, "Content-Type", "application/x-www-form-urlencoded; charset=utf-8");
    set_header(p, 1, "Accept", "application/xml");
    return send_step(p, STEP_WEB_IDENTITY, "POST", err);
}

static int send_container(dr_aws_provider *p, dr_error *err)
{
    reset_request(p);
    dr_buf_puts(&p->url, p->container_url);
    char *token = p->container_token_file ? read_token_file(p->container_token_file, err)
                                          : dup_or_null(p->container_token);
    if (p->container_token_file && !token)
        return DR_EIO;
    if (token) {
        if (strpbrk(token, "\r\n")) {
            dr_error_set(err, "the container authorization token holds a line break");
            free(token);
            return DR_EINVAL;
        }
        set_header(p, 0, "Authorization", token);
        memset(token, 0, strlen(token));
        free(token);
    }
    return send_step(p, STEP_CONTAINER, "GET", err);
}

static int send_imds_token(dr_aws_provider *p, dr_error *err)
{
    reset_request(p);
    dr_buf_printf(&p->url, "%s/latest/api/token", p->imds_url);
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%d", IMDS_TOKEN_TTL_S);
    set_header(p, 0, "X-aws-ec2-metadata-token-ttl-seconds", ttl);
    return send_step(p, STEP_IMDS_TOKEN, "PUT", err);
}

/* GET .../security-credentials/ (role "") or .../security-credentials/ROLE */
static int send_imds_get(dr_aws_provider *p, fetch_step step, const char *role, dr_error *err)
{
    reset_request(p);
    dr_buf_printf(&p->url, "%s/latest/meta-data/iam/security-credentials/%s", p->imds_url, role);
    set_header(p, 0, "X-aws-ec2-metadata-token", p->imds_token);
    return send_step(p, step, "GET", err);
}

/* The authority of a URL ("host[:port]") and its path. */
static int split_endpoint(const char *url, char *host, size_t hostsz, const char **path)
{
    const char *h = strstr(url, "://");
    if (!h)
        return DR_EINVAL;
    h += 3;
    size_t n = strcspn(h, "/?#");
    if (n == 0 || n >= hostsz)
        return DR_EINVAL;
    memcpy(host, h, n);
    host[n] = '\0';
    *path = h[n] == '/' ? h + n : "/";
    return 0;
}

/* STS AssumeRole, signed with `with`. */
static int send_assume_role(dr_aws_provider *p, const dr_aws_creds *with, dr_error *err)
{
    reset_request(p);
    dr_buf_printf(&p->url, "%s/", p->sts_url);
    form_add(&p->body, "Action", "AssumeRole");
    form_add(&p->body, "Version", "2011-06-15");
    form_add(&p->body, "RoleArn", p->role_arn);
    form_add(&p->body, "RoleSessionName", p->session_name);
    if (p->external_id)
        form_add(&p->body, "ExternalId", p->external_id);
    char host[256], date[17];
    const char *path;
    dr_buf_putc(&p->url, '\0');
    int rc = split_endpoint(p->url.p, host, sizeof host, &path);
    p->url.len--; /* send_step puts the NUL again */
    if (rc != 0) {
        dr_error_set(err, "STS endpoint %s is not a URL", p->sts_url);
        return rc;
    }
    dr_sigv4_amz_date((long long)time(NULL), date);
    static const char ctype[] = "application/x-www-form-urlencoded; charset=utf-8";
    dr_sigv4_header h[4] = {{"Content-Type", ctype}, {"Host", host}, {"X-Amz-Date", date}};
    size_t nh = 3;
    if (with->session_token)
        h[nh++] = (dr_sigv4_header){"X-Amz-Security-Token", with->session_token};
    dr_sigv4_request req = {"POST", path, NULL, h, nh, p->body.p, p->body.len, false};
    dr_sigv4_scope scope = {with->access_key, with->secret_key, p->region ? p->region : "us-east-1",
                            "sts", date};
    dr_buf authz = {0};
    if (dr_sigv4_sign(&req, &scope, NULL, NULL, &authz) != 0 || dr_buf_putc(&authz, '\0') != 0) {
        dr_buf_free(&authz);
        dr_error_set(err, "cannot sign the AssumeRole request");
        return DR_ENOMEM;
    }
    for (size_t i = 0; i < nh; i++)
        set_header(p, i, h[i].name, h[i].value);
    set_header(p, nh, "Authorization", authz.p);
    dr_buf_free(&authz);
    return send_step(p, STEP_ASSUME_ROLE, "POST", err);
}

/* ---- one fetch ---------------------------------------------------------------------------- */

static void fetch_begin(dr_aws_provider *p);

static void on_timer(uv_timer_t *t)
{
    fetch_begin(t->data);
}

int64_t dr_aws_refresh_delay_ms(int64_t expires_ms, int64_t now_ms)
{
    int64_t left = expires_ms - now_ms;
    int64_t d = left > 3 * REFRESH_BEFORE_MS ? left - REFRESH_BEFORE_MS : left * 4 / 5;
    return d < RETRY_MIN_MS ? RETRY_MIN_MS : d;
}

static void got_credentials(dr_aws_provider *p, dr_aws_creds *c)
{
    dr_aws_creds_free(&p->current);
    p->current = *c;
    memset(c, 0, sizeof *c);
    p->retry_ms = 0;
    int64_t now = dr_now_ns() / 1000000;
    int64_t delay = dr_aws_refresh_delay_ms(p->current.expires_ms, now);
    dr_counter_add(p->refreshes, 1);
    dr_gauge_set(p->expiry, (double)p->current.expires_ms / 1000.0);
    dr_log(p->inst, DR_LOG_INFO, "aws credentials fetched",
           "source=%s role_arn=%s access_key=%s expires_in_s=%lld refresh_in_s=%lld",
           dr_aws_source_name(p->source), p->role_arn ? p->role_arn : "-", p->current.access_key,
           (long long)((p->current.expires_ms - now) / 1000), (long long)(delay / 1000));
    uv_timer_start(&p->timer, on_timer, (uint64_t)delay, 0);
    if (p->on_ready)
        p->on_ready(p->ctx);
}

/* A fetch failed: logged, counted, tried again after the backoff. The
 * credentials held keep serving until they expire. */
static void fetch_failed(dr_aws_provider *p, const char *msg)
{
    bool assume = p->step == STEP_ASSUME_ROLE;
    dr_counter_add(assume ? p->errors_assume : p->errors_source, 1);
    p->retry_ms = p->retry_ms ? p->retry_ms * 2 : RETRY_MIN_MS;
    if (p->retry_ms > RETRY_MAX_MS)
        p->retry_ms = RETRY_MAX_MS;
    int64_t now = dr_now_ns() / 1000000;
    long long valid_s = p->current.expires_ms > now ? (p->current.expires_ms - now) / 1000 : 0;
    dr_log(p->inst, DR_LOG_ERROR, "aws credentials: fetch failed",
           "source=%s error=\"%s\" retry_in_ms=%lld current_valid_s=%lld",
           assume ? "assume_role" : dr_aws_source_name(p->source), msg, (long long)p->retry_ms,
           valid_s);
    uv_timer_start(&p->timer, on_timer, (uint64_t)p->retry_ms, 0);
}

/* The source's credentials are here: they are the result, or sign the
 * AssumeRole that gives it. */
static void source_done(dr_aws_provider *p, dr_aws_creds *c)
{
    if (!p->role_arn) {
        got_credentials(p, c);
        return;
    }
    if (c != &p->base) {
        dr_aws_creds_free(&p->base);
        p->base = *c;
        memset(c, 0, sizeof *c);
    }
    dr_error err = {{0}};
    if (send_assume_role(p, &p->base, &err) != 0)
        fetch_failed(p, err.msg);
}

static void fetch_begin(dr_aws_provider *p)
{
    if (p->closing)
        return;
    dr_error err = {{0}};
    int rc = 0;
    switch (p->source) {
    case DR_AWS_SOURCE_STATIC:
        p->step = STEP_ASSUME_ROLE;
        source_done(p, &p->base);
        return;
    case DR_AWS_SOURCE_WEB_IDENTITY:
        p->step = STEP_WEB_IDENTITY;
        rc = send_web_identity(p, &err);
        break;
    case DR_AWS_SOURCE_CONTAINER:
        p->step = STEP_CONTAINER;
        rc = send_container(p, &err);
        break;
    case DR_AWS_SOURCE_IMDS:
        p->step = STEP_IMDS_TOKEN;
        rc = send_imds_token(p, &err);
        break;
    }
    if (rc != 0)
        fetch_failed(p, err.msg);
}

/* The next step after a 200 answer; 0, else err says why the fetch ends. */
static int next_step(dr_aws_provider *p, const dr_http_response *r, dr_error *err)
{
    int64_t now = dr_now_ns() / 1000000;
    dr_aws_creds c;
    int rc;
    switch (p->step) {
    case STEP_WEB_IDENTITY:
        if ((rc = dr_aws_parse_sts(r->body, r->body_len, "AssumeRoleWithWebIdentity", now, &c,
                                   err)) != 0)
            return rc;
        source_done(p, &c);
        return 0;
    case STEP_ASSUME_ROLE:
        if ((rc = dr_aws_parse_sts(r->body, r->body_len, "AssumeRole", now, &c, err)) != 0)
            return rc;
        got_credentials(p, &c);
        return 0;
    case STEP_CONTAINER:
        if ((rc = dr_aws_parse_container(r->body, r->body_len, now, &c, err)) != 0)
            return rc;
        source_done(p, &c);
        return 0;
    case STEP_IMDS_TOKEN:
        free(p->imds_token);
        p->imds_token = strndup(r->body, r->body_len);
        if (!p->imds_token || !*p->imds_token || strpbrk(p->imds_token, "\r\n")) {
            dr_error_set(err, "IMDS: the session token answer is empty or not one line");
            return DR_EINVAL;
        }
        return send_imds_get(p, STEP_IMDS_ROLE, "", err);
    case STEP_IMDS_ROLE:
        if ((rc = dr_aws_parse_imds_role(r->body, r->body_len, p->imds_role, sizeof p->imds_role,
                                         err)) != 0)
            return rc;
        return send_imds_get(p, STEP_IMDS_CREDS, p->imds_role, err);
    case STEP_IMDS_CREDS:
        if ((rc = dr_aws_parse_imds(r->body, r->body_len, now, &c, err)) != 0)
            return rc;
        source_done(p, &c);
        return 0;
    }
    return DR_EINVAL;
}

static void on_answer(void *ctx, const dr_http_response *r)
{
    dr_aws_provider *p = ctx;
    if (p->closing)
        return;
    dr_error err = {{0}};
    if (r->status != 200) {
        char snippet[200];
        dr_http_response_snippet(r, snippet, sizeof snippet);
        /* an STS error document says more than its status */
        dr_aws_creds none;
        bool sts = p->step == STEP_WEB_IDENTITY || p->step == STEP_ASSUME_ROLE;
        if (sts && r->status &&
            dr_aws_parse_sts(r->body, r->body_len,
                             p->step == STEP_ASSUME_ROLE ? "AssumeRole"
                                                         : "AssumeRoleWithWebIdentity",
                             0, &none, &err) == 0)
            dr_aws_creds_free(&none);
        if (!sts || !err.msg[0] || !strstr(err.msg, "refused"))
            dr_error_set(&err, "%s answered %d: %s", p->url.p, r->status, snippet);
        fetch_failed(p, err.msg);
        return;
    }
    if (r->body_truncated) {
        dr_error_set(&err, "%s: the answer is larger than %u bytes", p->url.p,
                     DR_AWS_ANSWER_MAX_BYTES);
        fetch_failed(p, err.msg);
        return;
    }
    if (next_step(p, r, &err) != 0)
        fetch_failed(p, err.msg);
}

/* ---- life cycle ---------------------------------------------------------------------------- */

int dr_aws_provider_start(dr_aws_provider *p, void (*on_ready)(void *ctx), void *ctx)
{
    dr_http_client_conf hc = {0};
    dr_error err = {{0}};
    p->client = dr_http_client_new(p->inst->loop, &hc, &err);
    if (!p->client)
        return DR_ENOMEM;
    uv_timer_init(p->inst->loop, &p->timer);
    p->timer.data = p;
    p->started = true;
    p->on_ready = on_ready;
    p->ctx = ctx;
    static const char help[] = "Failed fetches of temporary AWS credentials, by source.";
    p->errors_source = dr_counter_new(p->inst, "drover_aws_credentials_refresh_errors_total", help,
                                      "source", dr_aws_source_name(p->source));
    p->errors_assume = p->role_arn
                           ? dr_counter_new(p->inst, "drover_aws_credentials_refresh_errors_total",
                                            help, "source", "assume_role")
                           : p->errors_source;
    p->refreshes = dr_counter_new(p->inst, "drover_aws_credentials_refreshes_total",
                                  "Temporary AWS credentials fetched.", NULL, NULL);
    p->expiry = dr_gauge_new(p->inst, "drover_aws_credentials_expiry_timestamp_seconds",
                             "When the AWS credentials in use expire (Unix seconds).", NULL, NULL);
    fetch_begin(p);
    return 0;
}

const dr_aws_creds *dr_aws_provider_creds(const dr_aws_provider *p)
{
    if (!p->current.access_key || p->current.expires_ms <= dr_now_ns() / 1000000)
        return NULL;
    return &p->current;
}

static void provider_free(dr_aws_provider *p)
{
    free(p->region);
    free(p->role_arn);
    free(p->external_id);
    free(p->session_name);
    free(p->sts_url);
    free(p->imds_url);
    free(p->web_role_arn);
    free(p->web_token_file);
    free(p->web_session_name);
    free(p->container_url);
    free(p->container_token_file);
    if (p->container_token)
        memset(p->container_token, 0, strlen(p->container_token));
    free(p->container_token);
    free(p->imds_token);
    dr_aws_creds_free(&p->base);
    dr_aws_creds_free(&p->current);
    dr_buf_free(&p->url);
    dr_buf_free(&p->body);
    for (size_t i = 0; i < sizeof p->hdr / sizeof p->hdr[0]; i++)
        dr_buf_free(&p->hdr[i]);
    free(p);
}

static void on_timer_closed(uv_handle_t *h)
{
    provider_free(h->data);
}

void dr_aws_provider_close(dr_aws_provider *p)
{
    if (!p || p->closing)
        return;
    p->closing = true;
    p->on_ready = NULL;
    if (!p->started) {
        provider_free(p);
        return;
    }
    dr_http_client_close(p->client);
    p->client = NULL;
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, on_timer_closed);
}
