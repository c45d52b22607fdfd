/*
 * HTTP client: libcurl's multi interface on the libuv loop.
 *
 * curl says which sockets to watch (on_curl_socket) and when it wants to be
 * called back (on_curl_timer); we turn that into one uv_poll_t per socket
 * and one uv_timer_t, and report readiness with curl_multi_socket_action.
 * Finished transfers are collected with curl_multi_info_read and handed to
 * their done callbacks.
 *
 * Ownership:
 * - a request (http_req) owns its easy handle, its header lists and its
 *   response body; it is freed right after its done callback returns.
 * - a socket context (sock_ctx) is freed in its uv_close callback, never
 *   earlier: libuv references the handle until then.
 * - the client is freed when it was closed and the last of its handles (two
 *   timers, the socket polls) reported its close.
 *
 * OAuth2: a request is set up whole at send, then waits on `waiting` until
 * dr_oauth2 has a token; it is then added to curl with its headers plus the
 * Authorization line (sent_headers). A 401 to it takes it out of curl, puts
 * it back on `waiting` with the token rejected, and adds it again once a
 * new token comes: the same easy handle, the caller's body untouched.
 *
 * Re-entrancy: a done callback may call dr_http_client_send or
 * dr_http_client_close. So the multi handle is never destroyed while a done
 * callback is on the stack (`depth`): close cancels and marks the client,
 * and the teardown runs when the outermost callback has returned.
 *
 * server_name is implemented with CURLOPT_CONNECT_TO, not CURLOPT_RESOLVE:
 * the request URL is rewritten to name server_name (so curl sends it as SNI
 * and verifies the certificate against it) and CONNECT_TO sends the
 * connection to the URL's real host and port. RESOLVE would need a numeric
 * address, i.e. a blocking DNS lookup on the loop thread, and would pin it;
 * CONNECT_TO lets curl resolve the real host itself, asynchronously and
 * afresh. A consequence: the Host header (:authority in HTTP/2) names
 * server_name as well, which keeps it consistent with SNI for virtual
 * hosting. A "Host: ..." entry in headers overrides it if needed.
 */
#include "http_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

#define HTTP_DEFAULT_TIMEOUT_MS 30000
#define HTTP_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define HTTP_DEFAULT_MAX_RESPONSE (64 * 1024)

/* The options every HTTP output shares (a DR_OPT_GROUP with name ""). */
const dr_option dr_http_client_options[] = {
    {"tls.ca_file", DR_OPT_STRING, offsetof(dr_http_client_conf, ca_file), NULL, 0, NULL, 0, 0,
     "PEM file of the certificate authorities that verify the server; unset, the system's store."},
    {"tls.cert_file", DR_OPT_STRING, offsetof(dr_http_client_conf, cert_file), NULL, 0, NULL, 0, 0,
     "Client certificate (PEM) for mutual TLS; needs tls.key_file."},
    {"tls.key_file", DR_OPT_STRING, offsetof(dr_http_client_conf, key_file), NULL, 0, NULL, 0, 0,
     "Private key (PEM) of tls.cert_file."},
    {"tls.server_name", DR_OPT_STRING, offsetof(dr_http_client_conf, server_name), NULL, 0, NULL, 0,
     0,
     "Name to verify the server's certificate against (and to send as SNI) instead of the "
     "URL's host."},
    {"tls.insecure_skip_verify", DR_OPT_BOOL, offsetof(dr_http_client_conf, insecure_skip_verify),
     "false", 0, NULL, 0, 0,
     "Do not verify the server's certificate or name at all. For tests only."},
    {"proxy_url", DR_OPT_STRING, offsetof(dr_http_client_conf, proxy_url), NULL, 0, NULL, 0, 0,
     "HTTP proxy for every request, such as http://proxy:3128. The *_proxy environment "
     "variables are ignored."},
    {"basic_auth.username", DR_OPT_STRING, offsetof(dr_http_client_conf, username), NULL,
     DR_OPT_ONE_OF, NULL, 0, 0, "User name for HTTP basic authentication."},
    {"basic_auth.password", DR_OPT_STRING, offsetof(dr_http_client_conf, password), NULL,
     DR_OPT_ONE_OF, NULL, 0, 0, "Password for HTTP basic authentication."},
    {"bearer_token", DR_OPT_STRING, offsetof(dr_http_client_conf, bearer_token), NULL,
     DR_OPT_ONE_OF, NULL, 0, 0, "Sent as `Authorization: Bearer <token>`."},
    {"bearer_token_file", DR_OPT_STRING, offsetof(dr_http_client_conf, bearer_token_file), NULL,
     DR_OPT_ONE_OF, NULL, 0, 0,
     "File holding the bearer token (such as a projected service-account token); read again "
     "whenever it changes."},
    {.name = "oauth2",
     .type = DR_OPT_GROUP,
     .offset = offsetof(dr_http_client_conf, oauth2),
     .group = dr_oauth2_options},
    {"headers", DR_OPT_STRLIST, offsetof(dr_http_client_conf, headers), NULL, 0, NULL, 0, 0,
     "Extra request headers, each written \"Name: value\". They cannot replace the headers "
     "the output sets itself."},
    {"timeout", DR_OPT_DURATION, offsetof(dr_http_client_conf, timeout_ms), "30s", 0, NULL, 1,
     3600000, "Longest a request may take, connection included; then it is retried."},
    {"connect_timeout", DR_OPT_DURATION, offsetof(dr_http_client_conf, connect_timeout_ms), "10s",
     0, NULL, 1, 600000, "Longest wait for a connection."},
    {"max_response_bytes", DR_OPT_SIZE, offsetof(dr_http_client_conf, max_response_bytes), "64KiB",
     0, NULL, 1024, 1 << 30,
     "Most of a response body kept (for error messages); the rest is read and discarded."},
    {0},
};
#define HTTP_MAX_HOST_CONNECTIONS 8
#define HTTP_MAX_TOKEN_BYTES (16 * 1024)
/* Retry-After beyond this (a year) is treated as this. */
#define HTTP_MAX_RETRY_AFTER_S (365LL * 24 * 3600)

typedef struct http_req {
    struct http_req *prev, *next;
    struct http_req **list; /* the list it is on, NULL when none */
    dr_http_client *client;
    CURL *easy; /* NULL when the request failed before it started */
    struct curl_slist *headers;
    struct curl_slist *connect_to;
    dr_http_done_fn done;
    void *ctx;
    dr_buf body;
    size_t max_body;
    bool truncated;
    bool (*on_data)(void *ctx, const char *data, size_t len);
    bool aborted; /* on_data asked to stop */
    int64_t retry_after_ms;
    dr_buf hdrs;                 /* the header lines of the last response */
    char error[CURL_ERROR_SIZE]; /* curl's message, or ours */
    /* OAuth2: the headers as sent (q->headers and the Authorization line),
     * the token they carry, and whether a 401 already made us resend. */
    struct curl_slist *sent_headers;
    char *token;
    bool resent;
} http_req;

typedef struct sock_ctx {
    struct sock_ctx *prev, *next;
    dr_http_client *client;
    uv_poll_t poll;
    curl_socket_t fd;
} sock_ctx;

struct dr_http_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer; /* curl's timeouts */
    uv_timer_t defer; /* completes requests that failed before they started */
    dr_http_client_conf conf;
    dr_file_secret token; /* bearer_token_file's */
    dr_oauth2 *oauth2;    /* NULL: no OAuth2 */
    http_req *reqs;       /* started, owned by curl until they finish */
    http_req *waiting;    /* set up, waiting for an OAuth2 token */
    http_req *failed;     /* failed before starting, completed from `defer` */
    sock_ctx *socks;
    size_t inflight;
    int open_handles; /* uv handles not yet reported closed */
    int depth;        /* done callbacks on the stack */
    bool closing;
    bool torn_down;
};

static void check_multi_info(dr_http_client *c);
static void maybe_teardown(dr_http_client *c);
static void on_oauth2_ready(void *ctx);
static void start_waiting(dr_http_client *c);

/* ---- lists ------------------------------------------------------------------ */

static void req_attach(http_req **list, http_req *q)
{
    q->prev = NULL;
    q->next = *list;
    if (*list)
        (*list)->prev = q;
    *list = q;
    q->list = list;
}

static void req_detach(http_req *q)
{
    if (!q->list)
        return;
    if (q->prev)
        q->prev->next = q->next;
    else
        *q->list = q->next;
    if (q->next)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
    q->list = NULL;
}

/* ---- configuration ---------------------------------------------------------- */

static bool curl_global_ready(dr_error *err)
{
    /* The agent runs one loop thread; a plain flag is enough. */
    static bool ready;
    if (ready)
        return true;
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        dr_error_set(err, "http client: curl_global_init: %s", curl_easy_strerror(rc));
        return false;
    }
    ready = true;
    return true;
}

static int check_readable(const char *what, const char *path, dr_error *err)
{
    if (!path)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        dr_error_set(err, "%s %s: %s", what, path, strerror(errno));
        return DR_EINVAL;
    }
    struct stat st;
    int rc = fstat(fd, &st);
    close(fd);
    if (rc < 0 || S_ISDIR(st.st_mode)) {
        dr_error_set(err, "%s %s: %s", what, path, rc < 0 ? strerror(errno) : "is a directory");
        return DR_EINVAL;
    }
    return 0;
}

static bool has_line_break(const char *s)
{
    return s && strpbrk(s, "\r\n") != NULL;
}

static int check_proxy(const char *proxy, dr_error *err)
{
    if (!proxy || !*proxy)
        return 0;
    CURLU *u = curl_url();
    if (!u)
        return DR_ENOMEM;
    /* "host:3128" is a valid curl proxy (http is implied); socks5:// is not a
     * URL scheme curl itself serves, hence NON_SUPPORT_SCHEME. */
    CURLUcode rc =
        curl_url_set(u, CURLUPART_URL, proxy, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME);
    curl_url_cleanup(u);
    if (rc != CURLUE_OK) {
        dr_error_set(err, "proxy_url %s: %s", proxy, curl_url_strerror(rc));
        return DR_EINVAL;
    }
    return 0;
}

static int validate_conf(const dr_http_client_conf *conf, dr_error *err)
{
    if (check_readable("ca_file", conf->ca_file, err) < 0 ||
        check_readable("cert_file", conf->cert_file, err) < 0 ||
        check_readable("key_file", conf->key_file, err) < 0 ||
        check_readable("bearer_token_file", conf->bearer_token_file, err) < 0)
        return DR_EINVAL;
    if (!conf->cert_file != !conf->key_file) {
        dr_error_set(err, "cert_file and key_file go together: %s is missing",
                     conf->cert_file ? "key_file" : "cert_file");
        return DR_EINVAL;
    }
    if (conf->bearer_token && conf->bearer_token_file) {
        dr_error_set(err, "bearer_token and bearer_token_file: set one, not both");
        return DR_EINVAL;
    }
    /* Both would send an Authorization header. */
    if (conf->username && (conf->bearer_token || conf->bearer_token_file)) {
        dr_error_set(err, "username (basic auth) and a bearer token: set one, not both");
        return DR_EINVAL;
    }
    if (dr_oauth2_configured(&conf->oauth2) &&
        (conf->username || conf->bearer_token || conf->bearer_token_file)) {
        dr_error_set(err, "oauth2 and %s: set one, not both",
                     conf->username ? "basic_auth" : "a bearer token");
        return DR_EINVAL;
    }
    if (has_line_break(conf->bearer_token)) {
        dr_error_set(err, "bearer_token: contains a line break");
        return DR_EINVAL;
    }
    for (size_t i = 0; i < conf->headers.n; i++) {
        const char *h = conf->headers.v[i];
        if (!h || !strchr(h, ':') || h[0] == ':' || has_line_break(h)) {
            dr_error_set(err, "header \"%s\": want \"Name: value\" on one line", h ? h : "");
            return DR_EINVAL;
        }
    }
    return check_proxy(conf->proxy_url, err);
}

static int dup_str(char **dst, const char *src)
{
    *dst = NULL;
    if (!src)
        return 0;
    *dst = strdup(src);
    return *dst ? 0 : DR_ENOMEM;
}

static void free_conf(dr_http_client_conf *conf)
{
    free(conf->ca_file);
    free(conf->cert_file);
    free(conf->key_file);
    free(conf->server_name);
    free(conf->proxy_url);
    free(conf->username);
    free(conf->password);
    free(conf->bearer_token);
    free(conf->bearer_token_file);
    for (size_t i = 0; i < conf->headers.n; i++)
        free(conf->headers.v[i]);
    free(conf->headers.v);
    memset(conf, 0, sizeof *conf);
}

/* A deep copy with the defaults filled in; the oauth2 map is left out
 * (the client's dr_oauth2 keeps what it needs). */
static int copy_conf(dr_http_client_conf *dst, const dr_http_client_conf *src)
{
    memset(dst, 0, sizeof *dst);
    if (dup_str(&dst->ca_file, src->ca_file) < 0 || dup_str(&dst->cert_file, src->cert_file) < 0 ||
        dup_str(&dst->key_file, src->key_file) < 0 ||
        dup_str(&dst->server_name, src->server_name) < 0 ||
        dup_str(&dst->proxy_url, src->proxy_url) < 0 ||
        dup_str(&dst->username, src->username) < 0 || dup_str(&dst->password, src->password) < 0 ||
        dup_str(&dst->bearer_token, src->bearer_token) < 0 ||
        dup_str(&dst->bearer_token_file, src->bearer_token_file) < 0)
        goto nomem;
    if (src->headers.n) {
        dst->headers.v = calloc(src->headers.n, sizeof *dst->headers.v);
        if (!dst->headers.v)
            goto nomem;
        for (; dst->headers.n < src->headers.n; dst->headers.n++)
            if (dup_str(&dst->headers.v[dst->headers.n], src->headers.v[dst->headers.n]) < 0)
                goto nomem;
    }
    dst->insecure_skip_verify = src->insecure_skip_verify;
    dst->timeout_ms = src->timeout_ms > 0 ? src->timeout_ms : HTTP_DEFAULT_TIMEOUT_MS;
    dst->connect_timeout_ms =
        src->connect_timeout_ms > 0 ? src->connect_timeout_ms : HTTP_DEFAULT_CONNECT_TIMEOUT_MS;
    dst->max_response_bytes =
        src->max_response_bytes ? src->max_response_bytes : HTTP_DEFAULT_MAX_RESPONSE;
    if (dst->max_response_bytes > SIZE_MAX / 2)
        dst->max_response_bytes = SIZE_MAX / 2;
    return 0;
nomem:
    free_conf(dst);
    return DR_ENOMEM;
}

/* ---- the client ------------------------------------------------------------- */

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp);
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp);

static CURLM *new_multi(dr_http_client *c)
{
    CURLM *m = curl_multi_init();
    if (!m)
        return NULL;
    curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(m, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(m, CURLMOPT_TIMERDATA, c);
    /* Enough parallelism for an output's concurrent flushes without opening
     * a connection per request under load; the rest wait for a free one. */
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)HTTP_MAX_HOST_CONNECTIONS);
    return m;
}

dr_http_client *dr_http_client_new(uv_loop_t *loop, const dr_http_client_conf *conf, dr_error *err)
{
    if (!curl_global_ready(err))
        return NULL;
    if (validate_conf(conf, err) < 0)
        return NULL;
    dr_http_client *c = calloc(1, sizeof *c);
    if (!c || copy_conf(&c->conf, conf) < 0) {
        free(c);
        dr_error_set(err, "http client: out of memory");
        return NULL;
    }
    c->loop = loop;
    if (dr_oauth2_configured(&conf->oauth2)) {
        c->oauth2 = dr_oauth2_new(loop, &conf->oauth2, &c->conf, on_oauth2_ready, c, err);
        if (!c->oauth2) {
            free_conf(&c->conf);
            free(c);
            return NULL;
        }
    }
    c->multi = new_multi(c);
    if (!c->multi) {
        dr_oauth2_close(c->oauth2);
        free_conf(&c->conf);
        free(c);
        dr_error_set(err, "http client: curl_multi_init failed");
        return NULL;
    }
    uv_timer_init(loop, &c->timer);
    uv_timer_init(loop, &c->defer);
    c->timer.data = c;
    c->defer.data = c;
    c->open_handles = 2;
    return c;
}

void dr_http_client_instrument(dr_http_client *c, dr_instance *inst)
{
    if (c && c->oauth2)
        dr_oauth2_instrument(c->oauth2, inst);
}

size_t dr_http_client_inflight(const dr_http_client *c)
{
    return c->inflight;
}

static void client_free(dr_http_client *c)
{
    dr_file_secret_free(&c->token);
    free_conf(&c->conf);
    free(c);
}

static void on_handle_closed(dr_http_client *c)
{
    if (--c->open_handles == 0 && c->torn_down)
        client_free(c);
}

/* ---- sockets and the timer: curl's side ---------------------------------------- */

static void on_sock_closed(uv_handle_t *h)
{
    sock_ctx *s = h->data;
    dr_http_client *c = s->client;
    free(s);
    on_handle_closed(c);
}

static void sock_close(sock_ctx *s)
{
    dr_http_client *c = s->client;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static sock_ctx *sock_open(dr_http_client *c, curl_socket_t fd)
{
    sock_ctx *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (uv_poll_init_socket(c->loop, &s->poll, fd) < 0) {
        free(s);
        return NULL;
    }
    s->client = c;
    s->fd = fd;
    s->poll.data = s;
    s->next = c->socks;
    if (c->socks)
        c->socks->prev = s;
    c->socks = s;
    c->open_handles++;
    return s;
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock_ctx *s = h->data;
    dr_http_client *c = s->client;
    if (!c->multi)
        return;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    /* May close s (CURL_POLL_REMOVE); s is not touched afterwards. */
    curl_multi_socket_action(c->multi, s->fd, flags, &running);
    check_multi_info(c);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    dr_http_client *c = userp;
    sock_ctx *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        /* curl may already have closed fd; uv_close copes with that. */
        if (s)
            sock_close(s);
        return 0;
    }
    if (!s) {
        s = sock_open(c, fd);
        if (!s)
            return -1;
        curl_multi_assign(c->multi, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    /* Stopping first makes libuv register the fd with epoll afresh: should
     * curl ever have closed the socket and got the same number back without
     * telling us, a plain update (EPOLL_CTL_MOD) would fail. */
    uv_poll_stop(&s->poll);
    return uv_poll_start(&s->poll, events, on_poll) < 0 ? -1 : 0;
}

static void on_timer(uv_timer_t *t)
{
    dr_http_client *c = t->data;
    if (!c->multi)
        return;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi_info(c);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    dr_http_client *c = userp;
    /* A timeout of 0 runs from the loop's next turn, never from in here:
     * curl calls this from inside its own functions. */
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- the response: body and headers -------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t n, void *userp)
{
    http_req *q = userp;
    size_t len = size * n;
    if (q->on_data) {
        long status = 0;
        curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300) {
            if (q->on_data(q->ctx, data, len))
                return len;
            q->aborted = true;
            return 0; /* curl fails the transfer (CURLE_WRITE_ERROR) */
        }
    }
    size_t room = q->max_body - q->body.len;
    size_t take = len < room ? len : room;
    if (take < len)
        q->truncated = true; /* keep reading: the connection stays usable */
    if (take > 0) {
        /* +1: room for the NUL the response gets */
        if (dr_buf_reserve(&q->body, take + 1) < 0)
            return 0; /* curl fails the transfer (CURLE_WRITE_ERROR) */
        dr_buf_append(&q->body, data, take);
    }
    return len;
}

/* Seconds since the epoch of an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"),
 * or -1. */
static int64_t parse_imf_fixdate(const char *s)
{
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    char wday[4], mon[4];
    int day, year, hh, mm, ss, end = 0;
    if (sscanf(s, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d GMT%n", wday, &day, mon, &year, &hh,
               &mm, &ss, &end) != 7 ||
        end == 0 || s[end] != '\0')
        return -1;
    int m = 0;
    while (m < 12 && strcmp(months[m], mon) != 0)
        m++;
    if (m == 12 || day < 1 || day > 31 || year < 1970 || hh > 23 || mm > 59 || ss > 60 || hh < 0 ||
        mm < 0 || ss < 0)
        return -1;
    struct tm tm = {.tm_year = year - 1900,
                    .tm_mon = m,
                    .tm_mday = day,
                    .tm_hour = hh,
                    .tm_min = mm,
                    .tm_sec = ss};
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? -1 : (int64_t)t;
}

/* Retry-After in milliseconds from now (never negative), or -1 if the value
 * is neither delta-seconds nor an HTTP date. */
static int64_t parse_retry_after(const char *v)
{
    if (*v >= '0' && *v <= '9') {
        int64_t secs = 0;
        for (; *v >= '0' && *v <= '9'; v++)
            if (secs < HTTP_MAX_RETRY_AFTER_S)
                secs = secs * 10 + (*v - '0');
        if (*v != '\0')
            return -1;
        if (secs > HTTP_MAX_RETRY_AFTER_S)
            secs = HTTP_MAX_RETRY_AFTER_S;
        return secs * 1000;
    }
    int64_t when = parse_imf_fixdate(v);
    if (when < 0)
        return -1;
    int64_t ms = when * 1000 - dr_now_ns() / 1000000;
    if (ms < 0)
        return 0;
    return ms > HTTP_MAX_RETRY_AFTER_S * 1000 ? HTTP_MAX_RETRY_AFTER_S * 1000 : ms;
}

/* If the header line (not NUL-terminated) is "name: value", copies the
 * trimmed value into out (cut to outsz - 1) and returns true. */
static bool header_value(const char *line, size_t len, const char *name, char *out, size_t outsz)
{
    size_t nlen = strlen(name);
    if (len <= nlen || line[nlen] != ':' || strncasecmp(line, name, nlen) != 0)
        return false;
    const char *v = line + nlen + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        end--;
    size_t n = (size_t)(end - v);
    if (n >= outsz)
        n = outsz - 1;
    memcpy(out, v, n);
    out[n] = '\0';
    return true;
}

static size_t on_header(char *line, size_t size, size_t n, void *userp)
{
    http_req *q = userp;
    size_t len = size * n;
    char value[128];
    /* A status line starts a new response (after a 1xx): forget the last. */
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        q->retry_after_ms = -1;
        dr_buf_reset(&q->hdrs);
        return len;
    }
    if (header_value(line, len, "Retry-After", value, sizeof value))
        q->retry_after_ms = parse_retry_after(value);
    /* Keep the lines for dr_http_response_header; past the bound the rest
     * are not kept (an answer that needs more is not one we read). */
    if (q->hdrs.len + len <= DR_HTTP_MAX_HEADER_BYTES && dr_buf_reserve(&q->hdrs, len + 1) == 0)
        dr_buf_append(&q->hdrs, line, len);
    return len;
}

bool dr_http_response_header(const dr_http_response *r, const char *name, const char **value,
                             size_t *len)
{
    size_t nlen = strlen(name);
    const char *p = r->headers, *end = r->headers ? r->headers + r->headers_len : NULL;
    while (p && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        size_t llen = (size_t)(next - p);
        if (llen > nlen && p[nlen] == ':' && strncasecmp(p, name, nlen) == 0) {
            const char *v = p + nlen + 1, *ve = next;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t' || ve[-1] == '\r' || ve[-1] == '\n'))
                ve--;
            *value = v;
            *len = (size_t)(ve - v);
            return true;
        }
        p = next;
    }
    return false;
}

/* ---- completing requests --------------------------------------------------------- */

static void req_free(http_req *q)
{
    if (q->easy)
        curl_easy_cleanup(q->easy);
    curl_slist_free_all(q->headers);
    curl_slist_free_all(q->sent_headers);
    curl_slist_free_all(q->connect_to);
    free(q->token);
    dr_buf_free(&q->body);
    dr_buf_free(&q->hdrs);
    free(q);
}

/* Takes q off its list and out of curl, calls done, frees q. */
static void finish_req(http_req *q, int status, const char *error, double total_s)
{
    dr_http_client *c = q->client;
    req_detach(q);
    if (q->easy)
        curl_multi_remove_handle(c->multi, q->easy);
    c->inflight--;

    dr_http_response r = {
        .status = status,
        .error = error,
        .retry_after_ms = q->retry_after_ms,
        .body = "",
        .body_len = q->body.len,
        .body_truncated = q->truncated,
        .total_s = total_s,
        .headers = q->hdrs.p ? q->hdrs.p : "",
        .headers_len = q->hdrs.len,
    };
    if (q->body.p) {
        q->body.p[q->body.len] = '\0'; /* on_body kept room for it */
        r.body = q->body.p;
    }
    c->depth++;
    q->done(q->ctx, &r);
    c->depth--;
    req_free(q);
}

/* A 401 to a request that carried an OAuth2 token: that token is done
 * for, and the request goes back to wait for the next one, once. */
static bool resend_after_401(http_req *q, CURLcode result, long status)
{
    dr_http_client *c = q->client;
    if (!c->oauth2 || result != CURLE_OK || status != 401 || q->resent || c->closing)
        return false;
    q->resent = true;
    dr_oauth2_reject(c->oauth2, q->token);
    curl_multi_remove_handle(c->multi, q->easy);
    req_detach(q);
    dr_buf_reset(&q->body);
    dr_buf_reset(&q->hdrs);
    q->truncated = false;
    q->retry_after_ms = -1;
    q->error[0] = '\0';
    req_attach(&c->waiting, q);
    start_waiting(c);
    return true;
}

static void complete_transfer(http_req *q, CURLcode result)
{
    long status = 0;
    double total_s = 0;
    curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(q->easy, CURLINFO_TOTAL_TIME, &total_s);
    if (resend_after_401(q, result, status))
        return;
    const char *error = NULL;
    if (result != CURLE_OK) {
        status = 0;
        if (q->aborted)
            snprintf(q->error, sizeof q->error, "aborted");
        else if (!q->error[0])
            snprintf(q->error, sizeof q->error, "%s", curl_easy_strerror(result));
        error = q->error;
    } else if (status == 0) {
        error = "no HTTP status in the answer";
    }
    finish_req(q, (int)status, error, total_s);
}

static void check_multi_info(dr_http_client *c)
{
    CURLMsg *msg;
    int left;
    c->depth++;
    while ((msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        complete_transfer((http_req *)priv, msg->data.result);
    }
    c->depth--;
    maybe_teardown(c);
}

static void on_defer(uv_timer_t *t)
{
    dr_http_client *c = t->data;
    /* Take the current batch: requests a done callback adds now wait for
     * the next turn of the loop instead of spinning here. */
    http_req *batch = c->failed;
    c->failed = NULL;
    for (http_req *q = batch; q; q = q->next)
        q->list = &batch;
    c->depth++;
    while (batch)
        finish_req(batch, 0, batch->error, 0);
    c->depth--;
    maybe_teardown(c);
}

/* The request could not start: done is called from the loop, not from
 * inside dr_http_client_send. */
static void fail_later(dr_http_client *c, http_req *q)
{
    req_attach(&c->failed, q);
    c->inflight++;
    uv_timer_start(&c->defer, on_defer, 0, 0);
}

/* ---- secrets in files ----------------------------------------------------------- */

static bool same_file_version(const dr_file_secret *t, const struct stat *st)
{
    return t->loaded && t->dev == st->st_dev && t->ino == st->st_ino && t->size == st->st_size &&
           t->mtime.tv_sec == st->st_mtim.tv_sec && t->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

/* The secret in path, trimmed; NULL with err filled. */
static char *read_secret_file(const char *what, const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(HTTP_MAX_TOKEN_BYTES + 1);
    size_t len = 0;
    ssize_t n = 0;
    while (buf && len <= HTTP_MAX_TOKEN_BYTES &&
           (n = read(fd, buf + len, HTTP_MAX_TOKEN_BYTES + 1 - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        len += (size_t)n;
    }
    int read_errno = errno;
    close(fd);
    const char *why = NULL;
    if (!buf)
        why = "out of memory";
    else if (n < 0)
        why = strerror(read_errno);
    else if (len > HTTP_MAX_TOKEN_BYTES)
        why = "larger than 16 KiB";
    if (why) {
        snprintf(err, errlen, "%s %s: %s", what, path, why);
        free(buf);
        return NULL;
    }
    char *start = buf, *end = buf + len;
    while (start < end && strchr(" \t\r\n", *start))
        start++;
    while (end > start && strchr(" \t\r\n", end[-1]))
        end--;
    *end = '\0';
    if (start == end || memchr(start, '\n', (size_t)(end - start)) ||
        memchr(start, '\r', (size_t)(end - start))) {
        snprintf(err, errlen, "%s %s: %s", what, path,
                 start == end ? "empty" : "has more than one line");
        free(buf);
        return NULL;
    }
    memmove(buf, start, (size_t)(end - start) + 1);
    return buf;
}

int dr_file_secret_read(dr_file_secret *s, const char *what, const char *path, const char **value,
                        char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
        return DR_EIO;
    }
    if (!same_file_version(s, &st)) {
        char *v = read_secret_file(what, path, err, errlen);
        if (!v)
            return DR_EIO;
        free(s->value);
        *s = (dr_file_secret){.value = v,
                              .loaded = true,
                              .dev = st.st_dev,
                              .ino = st.st_ino,
                              .size = st.st_size,
                              .mtime = st.st_mtim};
    }
    *value = s->value;
    return 0;
}

void dr_file_secret_free(dr_file_secret *s)
{
    free(s->value);
    memset(s, 0, sizeof *s);
}

/* ---- starting requests ---------------------------------------------------------- */

/* Sets *token to the bearer token to send (NULL: none). */
static int current_token(dr_http_client *c, const char **token, char *err, size_t errlen)
{
    *token = c->conf.bearer_token;
    if (!c->conf.bearer_token_file)
        return 0;
    return dr_file_secret_read(&c->token, "bearer_token_file", c->conf.bearer_token_file, token,
                               err, errlen);
}

static int slist_add(struct curl_slist **list, const char *s)
{
    struct curl_slist *l = curl_slist_append(*list, s);
    if (!l)
        return DR_ENOMEM;
    *list = l;
    return 0;
}

/* True when the request sets header `h` (by name, any case) itself. */
static bool set_by_request(const char *h, const char *const *extra)
{
    size_t n = strcspn(h, ":");
    for (; extra && *extra; extra++)
        if (strncasecmp(*extra, h, n) == 0 && (*extra)[n] == ':')
            return true;
    return false;
}

static int build_headers(http_req *q, const dr_http_client_conf *conf, const char *const *extra,
                         const char *token)
{
    /* The user's headers, except those the request sets itself (its
     * Content-Type, Content-Encoding, protocol headers): they win. */
    for (size_t i = 0; i < conf->headers.n; i++)
        if (!set_by_request(conf->headers.v[i], extra) &&
            slist_add(&q->headers, conf->headers.v[i]) < 0)
            return DR_ENOMEM;
    for (; extra && *extra; extra++)
        if (slist_add(&q->headers, *extra) < 0)
            return DR_ENOMEM;
    /* No "Expect: 100-continue": curl would wait up to a second for the
     * interim answer before sending a large body. */
    if (slist_add(&q->headers, "Expect:") < 0)
        return DR_ENOMEM;
    if (token) {
        dr_buf auth = {0};
        /* dr_buf does not NUL-terminate: the putc does. */
        int rc = dr_buf_printf(&auth, "Authorization: Bearer %s", token);
        if (rc == 0)
            rc = dr_buf_putc(&auth, '\0');
        if (rc == 0)
            rc = slist_add(&q->headers, auth.p);
        dr_buf_free(&auth);
        if (rc < 0)
            return DR_ENOMEM;
    }
    return 0;
}

/* Sets the URL; with server_name (https only), rewrites its host to
 * server_name and connects to the real host instead (see the top). */
static int set_target(http_req *q, const char *url, const char *server_name)
{
    CURLU *u = curl_url();
    if (!u)
        return DR_ENOMEM;
    char *scheme = NULL, *host = NULL, *port = NULL, *rewritten = NULL;
    dr_buf map = {0};
    int rc = DR_EINVAL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
        goto out;
    if (!server_name || !*server_name || strcmp(scheme, "https") != 0) {
        rc = curl_easy_setopt(q->easy, CURLOPT_URL, url) == CURLE_OK ? 0 : DR_ENOMEM;
        goto out;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
        curl_url_set(u, CURLUPART_HOST, server_name, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &rewritten, 0) != CURLUE_OK)
        goto out;
    rc = dr_buf_printf(&map, "%s:%s:%s:%s", server_name, port, host, port);
    if (rc == 0)
        rc = dr_buf_putc(&map, '\0');
    if (rc == 0)
        rc = slist_add(&q->connect_to, map.p);
    if (rc == 0 && (curl_easy_setopt(q->easy, CURLOPT_URL, rewritten) != CURLE_OK ||
                    curl_easy_setopt(q->easy, CURLOPT_CONNECT_TO, q->connect_to) != CURLE_OK))
        rc = DR_ENOMEM;
out:
    dr_buf_free(&map);
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(rewritten);
    curl_url_cleanup(u);
    return rc;
}

static int set_method(CURL *e, const dr_http_request *r)
{
    const char *m = r->method;
    if (strcmp(m, "GET") == 0 && r->body_len == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        return 0;
    }
    if (strcmp(m, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        return 0;
    }
    if (r->body_len > 0 || strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 ||
        strcmp(m, "PATCH") == 0) {
        /* The body is the caller's, valid until done: no copy. */
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body_len ? r->body : "");
        if (strcmp(m, "POST") == 0)
            return 0;
    }
    return curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m) == CURLE_OK ? 0 : DR_ENOMEM;
}

static int set_str(CURL *e, CURLoption opt, const char *v)
{
    return curl_easy_setopt(e, opt, v) == CURLE_OK ? 0 : DR_ENOMEM;
}

static int set_tls(CURL *e, const dr_http_client_conf *conf)
{
    if (conf->insecure_skip_verify) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    } else {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    }
    if (conf->ca_file && set_str(e, CURLOPT_CAINFO, conf->ca_file) < 0)
        return DR_ENOMEM;
    if (conf->cert_file && (set_str(e, CURLOPT_SSLCERT, conf->cert_file) < 0 ||
                            set_str(e, CURLOPT_SSLKEY, conf->key_file) < 0))
        return DR_ENOMEM;
    return 0;
}

static int set_auth(CURL *e, const dr_http_client_conf *conf)
{
    if (!conf->username)
        return 0;
    curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    if (set_str(e, CURLOPT_USERNAME, conf->username) < 0 ||
        set_str(e, CURLOPT_PASSWORD, conf->password ? conf->password : "") < 0)
        return DR_ENOMEM;
    return 0;
}

static int setup_easy(dr_http_client *c, http_req *q, const dr_http_request *r, const char *token)
{
    const dr_http_client_conf *conf = &c->conf;
    CURL *e = q->easy;
    int rc;
    if ((rc = set_target(q, r->url, conf->server_name)) < 0 || (rc = set_method(e, r)) < 0 ||
        (rc = build_headers(q, conf, r->headers, token)) < 0 || (rc = set_tls(e, conf)) < 0 ||
        (rc = set_auth(e, conf)) < 0)
        return rc;
    /* "" rather than NULL: no proxy, and the *_proxy variables ignored. */
    if (set_str(e, CURLOPT_PROXY, conf->proxy_url ? conf->proxy_url : "") < 0 ||
        set_str(e, CURLOPT_PROTOCOLS_STR, "http,https") < 0)
        return DR_ENOMEM;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, q->headers);
    curl_easy_setopt(e, CURLOPT_PRIVATE, q);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, q->error);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, q);
    int64_t timeout_ms = r->timeout_ms > 0   ? r->timeout_ms
                         : r->timeout_ms < 0 ? 0
                                             : conf->timeout_ms;
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)conf->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    /* Fails only when curl lacks HTTP/2; HTTP/1.1 is fine then. */
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    return 0;
}

int dr_http_client_send(dr_http_client *c, const dr_http_request *req, dr_http_done_fn done,
                        void *ctx)
{
    if (!c || !req || !req->url || !req->method || !done || (req->body_len && !req->body))
        return DR_EINVAL;
    if (c->closing)
        return DR_EINVAL;
    http_req *q = calloc(1, sizeof *q);
    if (!q)
        return DR_ENOMEM;
    q->client = c;
    q->done = done;
    q->ctx = ctx;
    q->retry_after_ms = -1;
    q->max_body =
        (size_t)(req->max_response_bytes ? req->max_response_bytes : c->conf.max_response_bytes);
    q->on_data = req->on_data;

    const char *token;
    if (current_token(c, &token, q->error, sizeof q->error) < 0) {
        /* The caller retries through done, as for any failed delivery. */
        fail_later(c, q);
        return 0;
    }
    int rc = DR_ENOMEM;
    q->easy = curl_easy_init();
    if (!q->easy || (rc = setup_easy(c, q, req, token)) < 0) {
        req_free(q);
        return rc < 0 ? rc : DR_ENOMEM;
    }
    if (c->oauth2) {
        /* Held until there is a token; started now if there is one. */
        req_attach(&c->waiting, q);
        c->inflight++;
        start_waiting(c);
        return 0;
    }
    if (curl_multi_add_handle(c->multi, q->easy) != CURLM_OK) {
        req_free(q);
        return DR_ENOMEM;
    }
    req_attach(&c->reqs, q);
    c->inflight++;
    return 0;
}

/* ---- requests waiting for an OAuth2 token -------------------------------------- */

/* Sends q with `token`: its headers plus the Authorization line. */
static int start_with_token(dr_http_client *c, http_req *q, const char *token)
{
    curl_slist_free_all(q->sent_headers);
    q->sent_headers = NULL;
    free(q->token);
    q->token = strdup(token);
    if (!q->token)
        return DR_ENOMEM;
    for (struct curl_slist *h = q->headers; h; h = h->next)
        if (slist_add(&q->sent_headers, h->data) < 0)
            return DR_ENOMEM;
    dr_buf auth = {0};
    int rc = dr_buf_printf(&auth, "Authorization: Bearer %s", token);
    if (rc == 0)
        rc = dr_buf_putc(&auth, '\0');
    if (rc == 0)
        rc = slist_add(&q->sent_headers, auth.p);
    dr_buf_free(&auth);
    if (rc < 0)
        return rc;
    curl_easy_setopt(q->easy, CURLOPT_HTTPHEADER, q->sent_headers);
    if (curl_multi_add_handle(c->multi, q->easy) != CURLM_OK)
        return DR_ENOMEM;
    req_attach(&c->reqs, q);
    return 0;
}

/* Starts the waiting requests while there is a token; when there is none,
 * dr_oauth2 fetches one and calls on_oauth2_ready. */
static void start_waiting(dr_http_client *c)
{
    while (c->waiting && !c->closing) {
        const char *token = dr_oauth2_token(c->oauth2);
        if (!token)
            return;
        http_req *q = c->waiting;
        req_detach(q);
        if (start_with_token(c, q, token) < 0) {
            snprintf(q->error, sizeof q->error, "out of memory");
            c->inflight--; /* fail_later counts it again */
            fail_later(c, q);
        }
    }
}

static void on_oauth2_ready(void *ctx)
{
    start_waiting(ctx);
}

/* ---- closing -------------------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h)
{
    on_handle_closed(h->data);
}

/* Destroys the multi handle and closes every uv handle, once no done
 * callback is running. The client is freed by the last close callback. */
static void maybe_teardown(dr_http_client *c)
{
    if (!c->closing || c->depth > 0 || c->torn_down)
        return;
    c->torn_down = true;
    /* Closes the cached connections; may report sockets removed. */
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    while (c->socks)
        sock_close(c->socks);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    uv_close((uv_handle_t *)&c->defer, on_timer_closed);
}

void dr_http_client_close(dr_http_client *c)
{
    if (!c || c->closing)
        return;
    c->closing = true;
    /* done may not start new requests now (send refuses), so these end. */
    while (c->reqs)
        finish_req(c->reqs, 0, "cancelled", 0);
    while (c->failed)
        finish_req(c->failed, 0, "cancelled", 0);
    while (c->waiting)
        finish_req(c->waiting, 0, "cancelled", 0);
    dr_oauth2_close(c->oauth2);
    c->oauth2 = NULL;
    maybe_teardown(c);
}

dr_http_verdict dr_http_classify(const dr_http_response *r)
{
    int s = r->status;
    if (s >= 200 && s < 300)
        return DR_HTTP_OK;
    if (s == 0 || s >= 500 || s == 429 || s == 408)
        return DR_HTTP_RETRY;
    return DR_HTTP_FAIL;
}

/* ---- helpers every HTTP output shares ---------------------------------------- */

int dr_http_check_url(const char *url, dr_error *err)
{
    CURLU *u = curl_url();
    if (!u) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    char *scheme = NULL, *host = NULL;
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, url, 0);
    int ret = DR_EINVAL;
    if (rc != CURLUE_OK)
        dr_error_set(err, "url: not a valid URL (%s)", curl_url_strerror(rc));
    else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
             (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
        dr_error_set(err, "url: the scheme must be http:// or https://, not %s://",
                     scheme ? scheme : "?");
    else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host)
        dr_error_set(err, "url: no host");
    else
        ret = 0;
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ret;
}

#define DR_HTTP_REQUESTS_HELP "HTTP requests by status code (\"error\": no answer)."

void dr_http_stats_init(dr_http_stats *s, dr_instance *inst)
{
    memset(s, 0, sizeof *s);
    s->inst = inst;
    s->request_bytes = dr_counter_new(
        inst, "drover_output_request_bytes_total",
        "Request body bytes sent (after compression), retries included.", NULL, NULL);
    s->errors = dr_counter_new(inst, "drover_output_requests_total", DR_HTTP_REQUESTS_HELP, "code",
                               "error");
}

void dr_http_stats_sent(dr_http_stats *s, size_t body_bytes)
{
    dr_counter_add(s->request_bytes, body_bytes);
}

void dr_http_stats_answer(dr_http_stats *s, int status)
{
    if (status == 0) {
        dr_counter_add(s->errors, 1);
        return;
    }
    for (size_t i = 0; i < s->ncodes; i++) {
        if (s->codes[i].code == status) {
            dr_counter_add(s->codes[i].counter, 1);
            return;
        }
    }
    if (s->ncodes == DR_HTTP_CODE_SLOTS) {
        /* a server answering with ever new codes must not grow the series */
        if (!s->other)
            s->other = dr_counter_new(s->inst, "drover_output_requests_total",
                                      DR_HTTP_REQUESTS_HELP, "code", "other");
        dr_counter_add(s->other, 1);
        return;
    }
    char label[16];
    snprintf(label, sizeof label, "%d", status);
    dr_counter *c = dr_counter_new(s->inst, "drover_output_requests_total", DR_HTTP_REQUESTS_HELP,
                                   "code", label);
    s->codes[s->ncodes].code = status;
    s->codes[s->ncodes].counter = c;
    s->ncodes++;
    dr_counter_add(c, 1);
}

void dr_http_response_snippet(const dr_http_response *r, char *out, size_t outsz)
{
    const char *s = r->status ? r->body : r->error;
    size_t n = r->status ? r->body_len : (r->error ? strlen(r->error) : 0);
    size_t k = 0;
    for (size_t i = 0; s && i < n && k + 1 < outsz; i++) {
        unsigned char c = (unsigned char)s[i];
        out[k++] = c == '"' ? '\'' : c == '\\' ? '/' : (c < 0x20 || c >= 0x7f) ? ' ' : (char)c;
    }
    if (outsz)
        out[k] = '\0';
}

void dr_http_retry(dr_flush *f, const dr_http_response *r)
{
    if (r->retry_after_ms >= 0)
        dr_output_retry_after(f, r->retry_after_ms);
    else
        dr_output_done(f, DR_RETRY, NULL);
}
