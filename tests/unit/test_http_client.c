/*
 * HTTP client tests against a small blocking-socket HTTP/1.1 server running
 * in threads of this process (one thread accepts, one thread per
 * connection), with the client on a uv loop in the test's thread.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../src/http_client.h"
#include "test.h"

/* ---- the test server ---------------------------------------------------------- */

#define SRV_MAX_CONNS 32
#define SRV_BUF (64 * 1024)

typedef enum {
    SRV_RESPOND, /* read a request, send `resp` */
    SRV_SILENT,  /* read requests, never answer */
    SRV_GARBAGE, /* read a request, answer "hello\r\n\r\n" and close */
    SRV_RAW,     /* record the first bytes of the connection, close */
} srv_mode;

typedef struct srv srv;

typedef struct conn_slot {
    srv *s;
    int fd;
    pthread_t thread;
} conn_slot;

struct srv {
    int lfd;
    int port;
    int stop_pipe[2];
    pthread_t thread;
    pthread_mutex_t mu;
    srv_mode mode;
    char *resp; /* the whole answer, head and body */
    size_t resp_len;
    /* what it saw, under mu */
    int accepts;
    int requests;
    char last_head[8192];
    char *last_body;
    size_t last_body_len;
    conn_slot conns[SRV_MAX_CONNS];
    int nconns;
};

static void srv_set_response(srv *s, const char *resp, size_t len)
{
    pthread_mutex_lock(&s->mu);
    free(s->resp);
    s->resp = malloc(len);
    memcpy(s->resp, resp, len);
    s->resp_len = len;
    pthread_mutex_unlock(&s->mu);
}

static void srv_record(srv *s, const char *head, size_t head_len, char *body, size_t body_len)
{
    pthread_mutex_lock(&s->mu);
    s->requests++;
    size_t n = head_len < sizeof s->last_head - 1 ? head_len : sizeof s->last_head - 1;
    memcpy(s->last_head, head, n);
    s->last_head[n] = '\0';
    free(s->last_body);
    s->last_body = body;
    s->last_body_len = body_len;
    pthread_mutex_unlock(&s->mu);
}

static size_t content_length(const char *head, size_t len)
{
    const char *p = head;
    while (p && p < head + len) {
        if (strncasecmp(p, "Content-Length:", 15) == 0)
            return (size_t)strtoull(p + 15, NULL, 10);
        p = memchr(p, '\n', (size_t)(head + len - p));
        if (p)
            p++;
    }
    return 0;
}

/* send, not write: a client that went away must not raise SIGPIPE. */
static void srv_send(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

static void srv_answer(srv *s, int fd)
{
    pthread_mutex_lock(&s->mu);
    size_t len = s->resp_len;
    char *copy = malloc(len);
    memcpy(copy, s->resp, len);
    pthread_mutex_unlock(&s->mu);
    srv_send(fd, copy, len);
    free(copy);
}

/* Reads one request into buf (head, then a Content-Length body), records
 * it. *len is what buf holds, kept across keep-alive requests. */
static bool srv_read_request(srv *s, int fd, char *buf, size_t *len)
{
    char *eoh;
    while (!(eoh = memmem(buf, *len, "\r\n\r\n", 4))) {
        if (*len == SRV_BUF)
            return false;
        ssize_t n = read(fd, buf + *len, SRV_BUF - *len);
        if (n <= 0)
            return false;
        *len += (size_t)n;
    }
    size_t head_len = (size_t)(eoh + 4 - buf);
    size_t clen = content_length(buf, head_len);
    char *body = malloc(clen + 1);
    size_t have = *len - head_len < clen ? *len - head_len : clen;
    memcpy(body, buf + head_len, have);
    while (have < clen) {
        ssize_t n = read(fd, body + have, clen - have);
        if (n <= 0) {
            free(body);
            return false;
        }
        have += (size_t)n;
    }
    srv_record(s, buf, head_len, body, clen);
    size_t used = head_len + (*len - head_len < clen ? *len - head_len : clen);
    memmove(buf, buf + used, *len - used);
    *len -= used;
    return true;
}

static void *srv_conn_main(void *arg)
{
    conn_slot *cs = arg;
    srv *s = cs->s;
    char *buf = malloc(SRV_BUF);
    size_t len = 0;
    if (s->mode == SRV_RAW) {
        ssize_t n = read(cs->fd, buf, SRV_BUF);
        char *copy = malloc(n > 0 ? (size_t)n : 1);
        memcpy(copy, buf, n > 0 ? (size_t)n : 0);
        srv_record(s, "", 0, copy, n > 0 ? (size_t)n : 0);
        shutdown(cs->fd, SHUT_RDWR);
    }
    while (s->mode != SRV_RAW && srv_read_request(s, cs->fd, buf, &len)) {
        if (s->mode == SRV_RESPOND) {
            srv_answer(s, cs->fd);
        } else if (s->mode == SRV_GARBAGE) {
            srv_send(cs->fd, "hello\r\n\r\n", 9);
            shutdown(cs->fd, SHUT_RDWR);
            break;
        }
    }
    free(buf);
    return NULL;
}

static void *srv_main(void *arg)
{
    srv *s = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = s->lfd, .events = POLLIN},
                              {.fd = s->stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 || p[1].revents)
            break;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&s->mu);
        s->accepts++;
        conn_slot *cs = s->nconns < SRV_MAX_CONNS ? &s->conns[s->nconns++] : NULL;
        pthread_mutex_unlock(&s->mu);
        if (!cs) {
            close(fd);
            continue;
        }
        cs->s = s;
        cs->fd = fd;
        pthread_create(&cs->thread, NULL, srv_conn_main, cs);
    }
    return NULL;
}

static void srv_start(srv *s, srv_mode mode, const char *resp)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->mode = mode;
    if (resp)
        srv_set_response(s, resp, strlen(resp));
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (bind(s->lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(s->lfd, 64) < 0 ||
        getsockname(s->lfd, (struct sockaddr *)&a, &alen) < 0 || pipe(s->stop_pipe) < 0) {
        perror("test server");
        exit(2);
    }
    s->port = ntohs(a.sin_port);
    pthread_create(&s->thread, NULL, srv_main, s);
}

static void srv_stop(srv *s)
{
    if (write(s->stop_pipe[1], "x", 1) != 1)
        perror("srv_stop");
    pthread_join(s->thread, NULL);
    for (int i = 0; i < s->nconns; i++) {
        shutdown(s->conns[i].fd, SHUT_RDWR);
        pthread_join(s->conns[i].thread, NULL);
        close(s->conns[i].fd);
    }
    close(s->lfd);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
    free(s->resp);
    free(s->last_body);
    pthread_mutex_destroy(&s->mu);
}

static int srv_get(srv *s, int *field)
{
    pthread_mutex_lock(&s->mu);
    int v = *field;
    pthread_mutex_unlock(&s->mu);
    return v;
}

/* ---- the client side ------------------------------------------------------------ */

typedef struct result {
    int calls;
    int status;
    char error[256];
    bool has_error;
    int64_t retry_after_ms;
    char *body;
    size_t body_len;
    bool truncated;
    bool nul_terminated;
    dr_http_verdict verdict;
    char content_type[64];
    char written[32];
} result;

static void on_done(void *ctx, const dr_http_response *r)
{
    result *res = ctx;
    res->calls++;
    res->status = r->status;
    res->has_error = r->error != NULL;
    snprintf(res->error, sizeof res->error, "%s", r->error ? r->error : "");
    res->retry_after_ms = r->retry_after_ms;
    free(res->body);
    res->body = malloc(r->body_len + 1);
    memcpy(res->body, r->body, r->body_len + 1);
    res->body_len = r->body_len;
    res->nul_terminated = r->body[r->body_len] == '\0';
    res->truncated = r->body_truncated;
    res->verdict = dr_http_classify(r);
    const char *v;
    size_t n;
    res->content_type[0] = res->written[0] = '\0';
    if (dr_http_response_header(r, "content-type", &v, &n))
        snprintf(res->content_type, sizeof res->content_type, "%.*s", (int)n, v);
    if (dr_http_response_header(r, "X-Prometheus-Remote-Write-Samples-Written", &v, &n))
        snprintf(res->written, sizeof res->written, "%.*s", (int)n, v);
}

typedef struct env {
    uv_loop_t loop;
    uv_timer_t guard;
    bool expired;
    srv srv;
    dr_http_client *c;
    char url[128];
    int done_count; /* for tests that count completions across results */
    uv_prepare_t prepare;
    const int *counter; /* what run_until waits for */
    int want;
} env;

static void on_guard(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

static void on_prepare(uv_prepare_t *p);

static void env_start(env *e, srv_mode mode, const char *resp, const dr_http_client_conf *conf)
{
    memset(e, 0, sizeof *e);
    uv_loop_init(&e->loop);
    uv_timer_init(&e->loop, &e->guard);
    e->guard.data = &e->expired;
    uv_prepare_init(&e->loop, &e->prepare);
    e->prepare.data = e;
    uv_prepare_start(&e->prepare, on_prepare);
    uv_unref((uv_handle_t *)&e->prepare);
    srv_start(&e->srv, mode, resp);
    snprintf(e->url, sizeof e->url, "http://127.0.0.1:%d/path", e->srv.port);
    dr_http_client_conf defaults = {.timeout_ms = 1500};
    dr_error err = {{0}};
    e->c = dr_http_client_new(&e->loop, conf ? conf : &defaults, &err);
    if (!CHECK(e->c != NULL))
        fprintf(stderr, "  %s\n", err.msg);
}

/* Stops the loop before it would block in poll once the awaited count is
 * reached: UV_RUN_ONCE runs due timers first and then still polls. */
static void on_prepare(uv_prepare_t *p)
{
    env *e = p->data;
    if (e->counter && *e->counter >= e->want)
        uv_stop(&e->loop);
}

/* Runs the loop until *counter reaches want or timeout_ms pass. */
static bool run_until(env *e, const int *counter, int want, int timeout_ms)
{
    e->expired = false;
    e->counter = counter;
    e->want = want;
    uv_timer_start(&e->guard, on_guard, (uint64_t)timeout_ms, 0);
    while (*counter < want && !e->expired)
        uv_run(&e->loop, UV_RUN_ONCE);
    uv_timer_stop(&e->guard);
    e->counter = NULL;
    return *counter >= want;
}

static void env_finish(env *e)
{
    if (e->c)
        dr_http_client_close(e->c);
    uv_close((uv_handle_t *)&e->guard, NULL);
    uv_close((uv_handle_t *)&e->prepare, NULL);
    for (int i = 0; i < 1000 && uv_run(&e->loop, UV_RUN_NOWAIT); i++)
        usleep(1000);
    CHECK_INT(uv_loop_close(&e->loop), 0);
    srv_stop(&e->srv);
}

static int send_simple(env *e, const char *method, const void *body, size_t len, result *res)
{
    dr_http_request req = {.method = method, .url = e->url, .body = body, .body_len = len};
    return dr_http_client_send(e->c, &req, on_done, res);
}

/* One request against a server answering `resp`; result in *res. */
static void one_exchange(const char *resp, result *res)
{
    env e;
    env_start(&e, SRV_RESPOND, resp, NULL);
    CHECK_INT(send_simple(&e, "POST", "x", 1, res), 0);
    CHECK(run_until(&e, &res->calls, 1, 1900));
    env_finish(&e);
    CHECK_INT(res->calls, 1);
}

/* ---- tests ---------------------------------------------------------------------- */

void test_http_client_ok_body(void)
{
    result res = {0};
    one_exchange("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", &res);
    CHECK_INT(res.status, 200);
    CHECK(!res.has_error);
    CHECK_MEM(res.body, res.body_len, "hello world", 11);
    CHECK(res.nul_terminated);
    CHECK(!res.truncated);
    CHECK_INT(res.retry_after_ms, -1);
    CHECK_INT(res.verdict, DR_HTTP_OK);
    free(res.body);
}

void test_http_client_no_content(void)
{
    result res = {0};
    one_exchange("HTTP/1.1 204 No Content\r\n\r\n", &res);
    CHECK_INT(res.status, 204);
    CHECK_INT(res.body_len, 0);
    CHECK(res.nul_terminated);
    CHECK_INT(res.verdict, DR_HTTP_OK);
    free(res.body);
}

void test_http_client_response_headers(void)
{
    result res = {0};
    /* an interim 100 answer's headers are not the final answer's */
    one_exchange("HTTP/1.1 100 Continue\r\nContent-Type: wrong\r\n\r\n"
                 "HTTP/1.1 204 No Content\r\nContent-Type:  text/plain; version=0.0.4 \r\n"
                 "X-Prometheus-Remote-Write-Samples-Written: 42\r\n\r\n",
                 &res);
    CHECK_INT(res.status, 204);
    CHECK_STR(res.content_type, "text/plain; version=0.0.4");
    CHECK_STR(res.written, "42");
    free(res.body);
    result none = {0};
    one_exchange("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &none);
    CHECK_STR(none.content_type, "");
    free(none.body);
}

void test_http_client_retry_after_seconds(void)
{
    result res = {0};
    one_exchange("HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n", &res);
    CHECK_INT(res.status, 503);
    CHECK_INT(res.retry_after_ms, 7000);
    CHECK_INT(res.verdict, DR_HTTP_RETRY);
    free(res.body);
}

static void http_date(char *out, size_t n, time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    static const char *days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *mons[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    snprintf(out, n, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
             mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int64_t retry_after_of(const char *value)
{
    char resp[256];
    snprintf(resp, sizeof resp,
             "HTTP/1.1 429 Too Many\r\nretry-after:  %s \r\nContent-Length: 0\r\n\r\n", value);
    result res = {0};
    one_exchange(resp, &res);
    CHECK_INT(res.status, 429);
    CHECK_INT(res.verdict, DR_HTTP_RETRY);
    free(res.body);
    return res.retry_after_ms;
}

void test_http_client_retry_after_date(void)
{
    char date[64];
    http_date(date, sizeof date, time(NULL) + 60);
    int64_t ms = retry_after_of(date);
    CHECK(ms > 55000 && ms <= 60000);
    http_date(date, sizeof date, time(NULL) - 3600);
    CHECK_INT(retry_after_of(date), 0); /* in the past: now, not negative */
    CHECK_INT(retry_after_of("soon"), -1);
    CHECK_INT(retry_after_of("Sun, 06 Nov 1994 08:49:37 PST"), -1);
    CHECK_INT(retry_after_of("99999999999999999999"), 365LL * 24 * 3600 * 1000);
}

void test_http_client_bad_request(void)
{
    result res = {0};
    one_exchange("HTTP/1.1 400 Bad Request\r\nContent-Length: 7\r\n\r\nno way!", &res);
    CHECK_INT(res.status, 400);
    CHECK_MEM(res.body, res.body_len, "no way!", 7);
    CHECK_INT(res.verdict, DR_HTTP_FAIL);
    free(res.body);
}

void test_http_client_truncated_body(void)
{
    size_t body_len = 1024 * 1024;
    char head[128];
    int hlen =
        snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", body_len);
    char *resp = malloc((size_t)hlen + body_len);
    memcpy(resp, head, (size_t)hlen);
    for (size_t i = 0; i < body_len; i++)
        resp[hlen + i] = (char)('a' + i % 26);

    env e;
    dr_http_client_conf conf = {.timeout_ms = 1500, .max_response_bytes = 1024};
    env_start(&e, SRV_RESPOND, NULL, &conf);
    srv_set_response(&e.srv, resp, (size_t)hlen + body_len);
    result res = {0};
    CHECK_INT(send_simple(&e, "GET", NULL, 0, &res), 0);
    CHECK(run_until(&e, &res.calls, 1, 1900));
    CHECK_INT(res.status, 200);
    CHECK_INT(res.body_len, 1024);
    CHECK(res.truncated);
    CHECK(res.nul_terminated);
    CHECK_MEM(res.body, res.body_len, resp + hlen, 1024);
    env_finish(&e);
    free(res.body);
    free(resp);
}

void test_http_client_timeout(void)
{
    env e;
    dr_http_client_conf conf = {.timeout_ms = 300};
    env_start(&e, SRV_SILENT, NULL, &conf);
    result res = {0};
    uint64_t t0 = uv_hrtime();
    CHECK_INT(send_simple(&e, "POST", "x", 1, &res), 0);
    CHECK(run_until(&e, &res.calls, 1, 1500));
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    CHECK(ms >= 250 && ms < 1200);
    CHECK_INT(res.status, 0);
    CHECK(res.has_error && res.error[0]);
    CHECK_INT(res.verdict, DR_HTTP_RETRY);
    env_finish(&e);
    free(res.body);
}

void test_http_client_connection_refused(void)
{
    /* A port that was just free: bound, never listened on, closed. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    CHECK_INT(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    CHECK_INT(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    close(fd);

    env e;
    env_start(&e, SRV_RESPOND, "", NULL);
    snprintf(e.url, sizeof e.url, "http://127.0.0.1:%d/", ntohs(a.sin_port));
    result res = {0};
    CHECK_INT(send_simple(&e, "POST", "x", 1, &res), 0);
    CHECK(run_until(&e, &res.calls, 1, 1900));
    CHECK_INT(res.status, 0);
    CHECK(res.has_error);
    CHECK_INT(res.verdict, DR_HTTP_RETRY);
    env_finish(&e);
    free(res.body);
}

void test_http_client_garbage_answer(void)
{
    env e;
    env_start(&e, SRV_GARBAGE, NULL, NULL);
    result res = {0};
    CHECK_INT(send_simple(&e, "POST", "x", 1, &res), 0);
    CHECK(run_until(&e, &res.calls, 1, 1900));
    CHECK_INT(res.calls, 1);
    CHECK(res.status == 0 || res.has_error);
    CHECK(res.has_error == (res.status == 0));
    env_finish(&e);
    free(res.body);
}

void test_http_client_body_and_headers(void)
{
    char *extra_conf[] = {"X-Conf: from-conf"};
    dr_http_client_conf conf = {
        .timeout_ms = 1500,
        .username = "user",
        .password = "pass",
        .headers = {.v = extra_conf, .n = 1},
    };
    env e;
    env_start(&e, SRV_RESPOND, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &conf);
    size_t len = 200 * 1024;
    char *body = malloc(len);
    for (size_t i = 0; i < len; i++)
        body[i] = (char)(i * 7 + i / 251);
    const char *hdrs[] = {"X-Req: from-request", "Content-Type: application/x-ndjson", NULL};
    dr_http_request req = {
        .method = "POST", .url = e.url, .headers = hdrs, .body = body, .body_len = len};
    result res = {0};
    CHECK_INT(dr_http_client_send(e.c, &req, on_done, &res), 0);
    CHECK(run_until(&e, &res.calls, 1, 1900));
    CHECK_INT(res.status, 200);

    pthread_mutex_lock(&e.srv.mu);
    const char *h = e.srv.last_head;
    CHECK(strncmp(h, "POST /path HTTP/1.1\r\n", 21) == 0);
    CHECK(strstr(h, "\r\nX-Conf: from-conf\r\n") != NULL);
    CHECK(strstr(h, "\r\nX-Req: from-request\r\n") != NULL);
    CHECK(strstr(h, "\r\nContent-Type: application/x-ndjson\r\n") != NULL);
    CHECK(strstr(h, "\r\nAuthorization: Basic dXNlcjpwYXNz\r\n") != NULL);
    CHECK(strstr(h, "\r\nContent-Length: 204800\r\n") != NULL);
    CHECK(strcasestr(h, "Expect:") == NULL);
    CHECK_MEM(e.srv.last_body, e.srv.last_body_len, body, len);
    pthread_mutex_unlock(&e.srv.mu);
    env_finish(&e);
    free(body);
    free(res.body);
}

static void write_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");
    fputs(content, f);
    fclose(f);
}

void test_http_client_bearer_token_file(void)
{
    char path[400];
    snprintf(path, sizeof path, "%s/token", dt_tmpdir());
    write_file(path, "first-token\n");
    dr_http_client_conf conf = {.timeout_ms = 1500, .bearer_token_file = path};
    env e;
    env_start(&e, SRV_RESPOND, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &conf);
    result res = {0};

    CHECK_INT(send_simple(&e, "POST", "x", 1, &res), 0);
    CHECK(run_until(&e, &res.calls, 1, 1900));
    CHECK_INT(res.status, 200);
    pthread_mutex_lock(&e.srv.mu);
    if (!CHECK(strstr(e.srv.last_head, "\r\nAuthorization: Bearer first-token\r\n") != NULL))
        fprintf(stderr, "%s", e.srv.last_head);
    pthread_mutex_unlock(&e.srv.mu);

    /* Rotated, as the kubelet does: a new file moved into place. */
    char tmp[420];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    write_file(tmp, "second-token-rotated");
    CHECK_INT(rename(tmp, path), 0);
    CHECK_INT(send_simple(&e, "POST", "x", 1, &res), 0);
    CHECK(run_until(&e, &res.calls, 2, 1900));
    CHECK_INT(res.status, 200);
    pthread_mutex_lock(&e.srv.mu);
    CHECK(strstr(e.srv.last_head, "\r\nAuthorization: Bearer second-token-rotated\r\n") != NULL);
    pthread_mutex_unlock(&e.srv.mu);

    /* Gone: the request fails through done (never inside send). */
    unlink(path);
    CHECK_INT(send_simple(&e, "POST", "x", 1, &res), 0);
    CHECK_INT(res.calls, 2);
    CHECK_INT(dr_http_client_inflight(e.c), 1);
    CHECK(run_until(&e, &res.calls, 3, 1900));
    CHECK_INT(res.status, 0);
    CHECK(strstr(res.error, path) != NULL);
    CHECK_INT(res.verdict, DR_HTTP_RETRY);
    CHECK_INT(srv_get(&e.srv, &e.srv.requests), 2);
    CHECK_INT(dr_http_client_inflight(e.c), 0);
    env_finish(&e);
    free(res.body);
}

void test_http_client_keep_alive(void)
{
    dr_http_client_conf conf = {.timeout_ms = 1500, .bearer_token = "static-token"};
    env e;
    env_start(&e, SRV_RESPOND, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", &conf);
    result res = {0};
    CHECK_INT(send_simple(&e, "POST", "one", 3, &res), 0);
    CHECK(run_until(&e, &res.calls, 1, 1900));
    CHECK_INT(send_simple(&e, "PUT", "two", 3, &res), 0);
    CHECK(run_until(&e, &res.calls, 2, 1900));
    CHECK_INT(res.status, 200);
    CHECK_INT(srv_get(&e.srv, &e.srv.accepts), 1);
    CHECK_INT(srv_get(&e.srv, &e.srv.requests), 2);
    pthread_mutex_lock(&e.srv.mu);
    CHECK(strncmp(e.srv.last_head, "PUT /path HTTP/1.1\r\n", 20) == 0);
    CHECK(strstr(e.srv.last_head, "\r\nAuthorization: Bearer static-token\r\n") != NULL);
    CHECK_MEM(e.srv.last_body, e.srv.last_body_len, "two", 3);
    pthread_mutex_unlock(&e.srv.mu);
    env_finish(&e);
    free(res.body);
}

static void count_done(void *ctx, const dr_http_response *r)
{
    env *e = ctx;
    if (r->status == 200)
        e->done_count++;
    else
        e->done_count += 1000; /* shows as a failure */
}

void test_http_client_concurrent(void)
{
    env e;
    env_start(&e, SRV_RESPOND, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", NULL);
    for (int i = 0; i < 10; i++) {
        dr_http_request req = {.method = "POST", .url = e.url, .body = "x", .body_len = 1};
        CHECK_INT(dr_http_client_send(e.c, &req, count_done, &e), 0);
    }
    CHECK_INT(dr_http_client_inflight(e.c), 10);
    CHECK(run_until(&e, &e.done_count, 10, 1900));
    CHECK_INT(e.done_count, 10);
    CHECK_INT(dr_http_client_inflight(e.c), 0);
    CHECK(srv_get(&e.srv, &e.srv.accepts) <= 8);
    env_finish(&e);
}

void test_http_client_close_in_flight(void)
{
    env e;
    env_start(&e, SRV_SILENT, NULL, NULL);
    result res[3] = {{0}};
    for (int i = 0; i < 3; i++)
        CHECK_INT(send_simple(&e, "POST", "x", 1, &res[i]), 0);
    /* Until the server has all three, so they are truly in flight. */
    for (int i = 0; i < 200 && srv_get(&e.srv, &e.srv.requests) < 3; i++) {
        uv_run(&e.loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
    CHECK_INT(srv_get(&e.srv, &e.srv.requests), 3);
    dr_http_client_close(e.c);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(res[i].calls, 1);
        CHECK_INT(res[i].status, 0);
        CHECK_STR(res[i].error, "cancelled");
    }
    dr_http_request req = {.method = "GET", .url = e.url};
    CHECK_INT(dr_http_client_send(e.c, &req, on_done, &res[0]), DR_EINVAL);
    e.c = NULL;
    env_finish(&e);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(res[i].calls, 1);
        free(res[i].body);
    }
}

static void close_from_done(void *ctx, const dr_http_response *r)
{
    env *e = ctx;
    e->done_count++;
    dr_http_client_close(e->c);
}

void test_http_client_close_from_done(void)
{
    env e;
    env_start(&e, SRV_RESPOND, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", NULL);
    dr_http_request req = {.method = "POST", .url = e.url, .body = "x", .body_len = 1};
    for (int i = 0; i < 3; i++)
        CHECK_INT(dr_http_client_send(e.c, &req, close_from_done, &e), 0);
    CHECK(run_until(&e, &e.done_count, 3, 1900));
    CHECK_INT(e.done_count, 3);
    e.c = NULL; /* closed by the first done */
    env_finish(&e);
    CHECK_INT(e.done_count, 3);
}

typedef struct chain {
    env *e;
    int left;
    int ok;
} chain;

static void send_next(void *ctx, const dr_http_response *r)
{
    chain *ch = ctx;
    if (r->status == 200)
        ch->ok++;
    if (--ch->left > 0) {
        dr_http_request req = {.method = "GET", .url = ch->e->url};
        CHECK_INT(dr_http_client_send(ch->e->c, &req, send_next, ch), 0);
    }
}

void test_http_client_send_from_done(void)
{
    env e;
    env_start(&e, SRV_RESPOND, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", NULL);
    chain ch = {.e = &e, .left = 5};
    dr_http_request req = {.method = "GET", .url = e.url};
    CHECK_INT(dr_http_client_send(e.c, &req, send_next, &ch), 0);
    CHECK(run_until(&e, &ch.ok, 5, 1900));
    CHECK_INT(ch.ok, 5);
    CHECK_INT(srv_get(&e.srv, &e.srv.accepts), 1);
    env_finish(&e);
}

void test_http_client_server_name(void)
{
    /* https with server_name: curl must connect to the URL's address and
     * send server_name as SNI (the ClientHello is plain text); the TLS
     * handshake then fails against this plain server. */
    dr_http_client_conf conf = {.timeout_ms = 1500, .server_name = "logs.example.test"};
    env e;
    env_start(&e, SRV_RAW, NULL, &conf);
    snprintf(e.url, sizeof e.url, "https://127.0.0.1:%d/", e.srv.port);
    result res = {0};
    CHECK_INT(send_simple(&e, "POST", "x", 1, &res), 0);
    CHECK(run_until(&e, &res.calls, 1, 1900));
    CHECK_INT(res.status, 0);
    CHECK(res.has_error);
    CHECK_INT(srv_get(&e.srv, &e.srv.accepts), 1);
    pthread_mutex_lock(&e.srv.mu);
    CHECK(e.srv.last_body &&
          memmem(e.srv.last_body, e.srv.last_body_len, "logs.example.test", 17) != NULL);
    pthread_mutex_unlock(&e.srv.mu);
    env_finish(&e);
    free(res.body);
}

void test_http_client_bad_requests(void)
{
    env e;
    env_start(&e, SRV_RESPOND, "", NULL);
    result res = {0};
    const char *urls[] = {"ftp://127.0.0.1/x", "file:///etc/passwd", "not a url", ""};
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        dr_http_request req = {.method = "GET", .url = urls[i]};
        CHECK_INT(dr_http_client_send(e.c, &req, on_done, &res), DR_EINVAL);
    }
    dr_http_request no_body = {.method = "POST", .url = e.url, .body_len = 3};
    CHECK_INT(dr_http_client_send(e.c, &no_body, on_done, &res), DR_EINVAL);
    CHECK_INT(dr_http_client_inflight(e.c), 0);
    env_finish(&e);
    CHECK_INT(res.calls, 0);
}

static bool new_fails(const dr_http_client_conf *conf, const char *want_in_msg)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    dr_error err = {{0}};
    dr_http_client *c = dr_http_client_new(&loop, conf, &err);
    bool ok = c == NULL && strstr(err.msg, want_in_msg) != NULL;
    if (!ok)
        fprintf(stderr, "  error \"%s\", want \"%s\" in it\n", err.msg, want_in_msg);
    if (c) {
        dr_http_client_close(c);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    CHECK_INT(uv_loop_close(&loop), 0);
    return ok;
}

void test_http_client_conf_errors(void)
{
    char path[400];
    snprintf(path, sizeof path, "%s/ca.pem", dt_tmpdir());
    write_file(path, "not really a certificate\n");

    CHECK(
        new_fails(&(dr_http_client_conf){.ca_file = "/nonexistent/ca.pem"}, "/nonexistent/ca.pem"));
    CHECK(new_fails(&(dr_http_client_conf){.bearer_token_file = "/nonexistent/token"},
                    "/nonexistent/token"));
    CHECK(new_fails(&(dr_http_client_conf){.cert_file = path}, "key_file"));
    CHECK(new_fails(&(dr_http_client_conf){.key_file = path}, "cert_file"));
    CHECK(new_fails(&(dr_http_client_conf){.ca_file = "/tmp"}, "directory"));
    CHECK(new_fails(&(dr_http_client_conf){.proxy_url = "http://[::1"}, "proxy_url"));
    char *bad_header[] = {"NoColonHere"};
    CHECK(new_fails(&(dr_http_client_conf){.headers = {.v = bad_header, .n = 1}}, "NoColonHere"));
    CHECK(new_fails(&(dr_http_client_conf){.bearer_token = "a\r\nX-Evil: 1"}, "line break"));

    /* Readable files, username without password, a proxy: fine. */
    uv_loop_t loop;
    uv_loop_init(&loop);
    dr_error err = {{0}};
    dr_http_client_conf ok = {.ca_file = path,
                              .cert_file = path,
                              .key_file = path,
                              .username = "u",
                              .proxy_url = "proxy.local:3128"};
    dr_http_client *c = dr_http_client_new(&loop, &ok, &err);
    CHECK(c != NULL);
    dr_http_client_close(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(&loop), 0);
}

void test_http_client_classify(void)
{
    static const struct {
        int status;
        dr_http_verdict want;
    } cases[] = {
        {200, DR_HTTP_OK},    {204, DR_HTTP_OK},    {299, DR_HTTP_OK},    {0, DR_HTTP_RETRY},
        {500, DR_HTTP_RETRY}, {503, DR_HTTP_RETRY}, {429, DR_HTTP_RETRY}, {408, DR_HTTP_RETRY},
        {400, DR_HTTP_FAIL},  {401, DR_HTTP_FAIL},  {404, DR_HTTP_FAIL},  {413, DR_HTTP_FAIL},
        {301, DR_HTTP_FAIL},  {100, DR_HTTP_FAIL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dr_http_response r = {.status = cases[i].status, .retry_after_ms = -1, .body = ""};
        if (!CHECK_INT(dr_http_classify(&r), cases[i].want))
            fprintf(stderr, "  status %d\n", cases[i].status);
    }
}

/* ---- OAuth2 client credentials ------------------------------------------------------ */

static const char token_answer[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                   "Content-Length: 39\r\n\r\n"
                                   "{\"access_token\":\"t1\",\"expires_in\":3600}";

static void oauth2_env(env *e, srv *tok, const char *backend_resp, char *token_url, size_t n)
{
    snprintf(token_url, n, "http://127.0.0.1:%d/token", tok->port);
    dr_http_client_conf conf = {
        .timeout_ms = 1500,
        .oauth2 = {.client_id = "id", .client_secret = "sec", .token_url = token_url}};
    env_start(e, SRV_RESPOND, backend_resp, &conf);
}

/* A request waits for the token; a 401 drops the token, a new one is
 * fetched and the request sent once more; a second 401 is the answer. */
void test_http_client_oauth2_token_and_401(void)
{
    srv tok;
    srv_start(&tok, SRV_RESPOND, token_answer);
    char token_url[128];
    env e;
    oauth2_env(&e, &tok, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", token_url,
               sizeof token_url);
    result res = {0};
    CHECK_INT(send_simple(&e, "POST", "x", 1, &res), 0);
    CHECK_INT(dr_http_client_inflight(e.c), 1);
    CHECK(run_until(&e, &res.calls, 1, 3000));
    CHECK_INT(res.status, 401);
    CHECK_INT(srv_get(&tok, &tok.requests), 2);
    CHECK_INT(srv_get(&e.srv, &e.srv.requests), 2);
    pthread_mutex_lock(&e.srv.mu);
    CHECK(strstr(e.srv.last_head, "\r\nAuthorization: Bearer t1\r\n") != NULL);
    pthread_mutex_unlock(&e.srv.mu);
    pthread_mutex_lock(&tok.mu);
    CHECK(strncmp(tok.last_head, "POST /token HTTP/1.1\r\n", 22) == 0);
    CHECK(strstr(tok.last_head, "\r\nAuthorization: Basic aWQ6c2Vj\r\n") != NULL);
    CHECK(strstr(tok.last_head, "\r\nContent-Type: application/x-www-form-urlencoded\r\n") != NULL);
    CHECK_MEM(tok.last_body, tok.last_body_len, "grant_type=client_credentials", 29);
    pthread_mutex_unlock(&tok.mu);
    CHECK_INT(dr_http_client_inflight(e.c), 0);
    env_finish(&e);
    srv_stop(&tok);
    free(res.body);
}

/* A token endpoint answering garbage: the request is held (not failed),
 * and goes out once the endpoint answers well. */
void test_http_client_oauth2_held_while_failing(void)
{
    srv tok;
    srv_start(&tok, SRV_RESPOND, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{{{{{");
    char token_url[128];
    env e;
    oauth2_env(&e, &tok, "HTTP/1.1 204 No Content\r\n\r\n", token_url, sizeof token_url);
    result res = {0};
    CHECK_INT(send_simple(&e, "POST", "x", 1, &res), 0);
    int never = 0;
    run_until(&e, &never, 1, 300);
    CHECK_INT(res.calls, 0);
    CHECK_INT(dr_http_client_inflight(e.c), 1);
    CHECK_INT(srv_get(&tok, &tok.requests), 1);
    CHECK_INT(srv_get(&e.srv, &e.srv.requests), 0);
    srv_set_response(&tok, token_answer, strlen(token_answer));
    CHECK(run_until(&e, &res.calls, 1, 3000));
    CHECK_INT(res.status, 204);
    CHECK_INT(srv_get(&tok, &tok.requests), 2);
    CHECK_INT(srv_get(&e.srv, &e.srv.requests), 1);
    /* the token is kept: the next request needs no fetch */
    CHECK_INT(send_simple(&e, "POST", "x", 1, &res), 0);
    CHECK(run_until(&e, &res.calls, 2, 1900));
    CHECK_INT(srv_get(&tok, &tok.requests), 2);
    CHECK_INT(srv_get(&e.srv, &e.srv.requests), 2);
    env_finish(&e);
    srv_stop(&tok);
    free(res.body);
}

/* Closing the client with a request held for a token cancels it. */
void test_http_client_oauth2_close_while_held(void)
{
    srv tok;
    srv_start(&tok, SRV_SILENT, NULL);
    char token_url[128];
    env e;
    oauth2_env(&e, &tok, "HTTP/1.1 204 No Content\r\n\r\n", token_url, sizeof token_url);
    result res = {0};
    CHECK_INT(send_simple(&e, "POST", "x", 1, &res), 0);
    int never = 0;
    run_until(&e, &never, 1, 200);
    CHECK_INT(res.calls, 0);
    dr_http_client_close(e.c);
    e.c = NULL;
    CHECK_INT(res.calls, 1);
    CHECK_STR(res.error, "cancelled");
    env_finish(&e);
    srv_stop(&tok);
    free(res.body);
}
