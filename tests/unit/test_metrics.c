/*
 * The metrics registry and its exposition, and the HTTP server that serves
 * it. The HTTP tests run the server on a uv loop in the test thread and a
 * plain blocking-socket client in a helper thread; every check is made in
 * the test thread once the client has been joined.
 */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "http_server.h"
#include "metrics.h"
#include "process_metrics.h"
#include "test.h"

/* ---- registry and exposition --------------------------------------------- */

/* Renders into a NUL-terminated string the caller frees. */
static char *render(dr_metrics *m)
{
    dr_buf b = {0};
    if (dr_metrics_render(m, &b) < 0 || dr_buf_putc(&b, '\0') < 0) {
        dr_buf_free(&b);
        return NULL;
    }
    return b.p;
}

void test_metrics_exposition(void)
{
    dr_metrics *m = dr_metrics_new();
    dr_counter *pods =
        dr_metrics_counter(m, "drover_input_records_total", "Records read by the input.",
                           (const char *[]){"plugin", "tail", "name", "pods", NULL});
    dr_gauge *q = dr_metrics_gauge(m, "drover_queue_bytes", "Bytes \\ queued\nfor \"the\" output.",
                                   (const char *[]){"path", "C:\\x \"q\"\nz", NULL});
    dr_counter *other =
        dr_metrics_counter(m, "drover_input_records_total", "Records read by the input.",
                           (const char *[]){"plugin", "tail", "name", "other", NULL});
    dr_gauge *up = dr_metrics_gauge(m, "drover_up", "Up.", NULL);
    CHECK(pods && q && other && up);
    dr_counter_add(pods, 40);
    dr_counter_add(pods, 2);
    dr_counter_add(other, UINT64_MAX);
    dr_gauge_set(q, 1);
    dr_gauge_add(q, 0.5);
    dr_gauge_set(up, 1);
    CHECK_INT(dr_counter_get(pods), 42);
    CHECK(dr_gauge_get(q) == 1.5);

    char *text = render(m);
    CHECK_STR(text, "# HELP drover_input_records_total Records read by the input.\n"
                    "# TYPE drover_input_records_total counter\n"
                    "drover_input_records_total{plugin=\"tail\",name=\"pods\"} 42\n"
                    "drover_input_records_total{plugin=\"tail\",name=\"other\"} "
                    "18446744073709551615\n"
                    "# HELP drover_queue_bytes Bytes \\\\ queued\\nfor \"the\" output.\n"
                    "# TYPE drover_queue_bytes gauge\n"
                    "drover_queue_bytes{path=\"C:\\\\x \\\"q\\\"\\nz\"} 1.5\n"
                    "# HELP drover_up Up.\n"
                    "# TYPE drover_up gauge\n"
                    "drover_up 1\n");
    free(text);
    dr_metrics_free(m);
}

void test_metrics_render_appends(void)
{
    dr_metrics *m = dr_metrics_new();
    dr_counter_add(dr_metrics_counter(m, "a_total", "", NULL), 7);
    dr_buf b = {0};
    dr_buf_puts(&b, "before\n");
    CHECK_INT(dr_metrics_render(m, &b), 0);
    CHECK_MEM(b.p, b.len, "before\n# HELP a_total \n# TYPE a_total counter\na_total 7\n",
              strlen("before\n# HELP a_total \n# TYPE a_total counter\na_total 7\n"));
    dr_buf_free(&b);
    dr_metrics_free(m);
}

void test_metrics_float_format(void)
{
    static const struct {
        double v;
        const char *want;
    } cases[] = {
        {0, "0"},
        {-0.0, "0"},
        {3, "3"},
        {-7, "-7"},
        {123456789012, "123456789012"},
        {0.1, "0.1"},
        {-2.25, "-2.25"},
        {1.0 / 3, "0.3333333333333333"},
        {2.5e-7, "2.5e-07"},
        {1e300, "1e+300"},
        {NAN, "NaN"},
        {INFINITY, "+Inf"},
        {-INFINITY, "-Inf"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dr_metrics *m = dr_metrics_new();
        dr_gauge_set(dr_metrics_gauge(m, "g", "G.", NULL), cases[i].v);
        char want[128];
        snprintf(want, sizeof want, "# HELP g G.\n# TYPE g gauge\ng %s\n", cases[i].want);
        char *text = render(m);
        CHECK_STR(text, want);
        free(text);
        dr_metrics_free(m);
    }
}

void test_metrics_get_or_create(void)
{
    dr_metrics *m = dr_metrics_new();
    const char *ab[] = {"a", "1", "b", "2", NULL};
    const char *ba[] = {"b", "2", "a", "1", NULL};
    const char *ab3[] = {"a", "1", "b", "3", NULL};
    const char *a[] = {"a", "1", NULL};
    dr_counter *c = dr_metrics_counter(m, "x_total", "X.", ab);
    CHECK(c != NULL);
    CHECK(dr_metrics_counter(m, "x_total", "X.", ab) == c);
    CHECK(dr_metrics_counter(m, "x_total", "X.", ba) == c); /* the order of pairs is no matter */
    dr_counter *c3 = dr_metrics_counter(m, "x_total", "X.", ab3);
    dr_counter *c1 = dr_metrics_counter(m, "x_total", "X.", a);
    dr_counter *none = dr_metrics_counter(m, "x_total", "X.", NULL);
    dr_counter *empty = dr_metrics_counter(m, "x_total", "X.", (const char *[]){NULL});
    CHECK(c3 && c1 && none && c3 != c && c1 != c && c1 != c3 && none != c1);
    CHECK(empty == none);
    /* a NULL value reads as "" */
    dr_counter *nv = dr_metrics_counter(m, "x_total", "X.", (const char *[]){"a", NULL, NULL});
    CHECK(nv == dr_metrics_counter(m, "x_total", "X.", (const char *[]){"a", "", NULL}));
    /* NULL help is "" */
    CHECK(dr_metrics_gauge(m, "y", NULL, NULL) == dr_metrics_gauge(m, "y", "", NULL));

    /* a few thousand series: each found again, rendered once, in order */
    enum { N = 3000 };
    static dr_gauge *g[N];
    char v[32];
    for (int i = 0; i < N; i++) {
        snprintf(v, sizeof v, "%d", i);
        g[i] =
            dr_metrics_gauge(m, i % 2 ? "odd" : "even", "Parity.", (const char *[]){"i", v, NULL});
        dr_gauge_set(g[i], i);
    }
    int found = 0;
    for (int i = 0; i < N; i++) {
        snprintf(v, sizeof v, "%d", i);
        found += g[i] && dr_metrics_gauge(m, i % 2 ? "odd" : "even", "Parity.",
                                          (const char *[]){"i", v, NULL}) == g[i];
    }
    CHECK_INT(found, N);
    char *text = render(m);
    CHECK(text && strstr(text, "\neven{i=\"0\"} 0\neven{i=\"2\"} 2\n"));
    CHECK(text && strstr(text, "\nodd{i=\"2997\"} 2997\nodd{i=\"2999\"} 2999\n"));
    CHECK(text && strstr(text, "# TYPE even gauge") < strstr(text, "# TYPE odd gauge"));
    int lines = 0;
    for (const char *p = text; p && *p; p++)
        lines += *p == '\n';
    /* x_total: 5 series, y: 1, even and odd: N; 2 comment lines each */
    CHECK_INT(lines, 5 + 1 + N + 4 * 2);
    free(text);
    dr_metrics_free(m);
}

void test_metrics_type_clash(void)
{
    dr_metrics *m = dr_metrics_new();
    CHECK(dr_metrics_counter(m, "x", "X.", NULL) != NULL);
    CHECK(dr_metrics_gauge(m, "x", "X.", NULL) == NULL);
    CHECK(dr_metrics_gauge(m, "x", "X.", (const char *[]){"a", "b", NULL}) == NULL);
    CHECK(dr_metrics_counter(m, "x", "Other help.", NULL) == NULL);
    CHECK(dr_metrics_gauge(m, "g", "G.", NULL) != NULL);
    CHECK(dr_metrics_counter(m, "g", "G.", NULL) == NULL);

    /* names Prometheus could not read */
    CHECK(dr_metrics_counter(m, NULL, "", NULL) == NULL);
    CHECK(dr_metrics_counter(m, "", "", NULL) == NULL);
    CHECK(dr_metrics_counter(m, "1x", "", NULL) == NULL);
    CHECK(dr_metrics_counter(m, "a-b", "", NULL) == NULL);
    CHECK(dr_metrics_counter(m, "ns:sub_x", "", NULL) != NULL);
    CHECK(dr_metrics_counter(m, "l", "", (const char *[]){"__name__", "v", NULL}) == NULL);
    CHECK(dr_metrics_counter(m, "l", "", (const char *[]){"a b", "v", NULL}) == NULL);
    CHECK(dr_metrics_counter(m, "l", "", (const char *[]){"a:b", "v", NULL}) == NULL);
    CHECK(dr_metrics_counter(m, "l", "", (const char *[]){"a", "1", "a", "2", NULL}) == NULL);

    /* a failed creation leaves nothing behind, and NULL series are ignored */
    dr_counter_add(NULL, 1);
    dr_gauge_set(NULL, 1);
    dr_gauge_add(NULL, 1);
    CHECK_INT(dr_counter_get(NULL), 0);
    char *text = render(m);
    CHECK_STR(text, "# HELP x X.\n# TYPE x counter\nx 0\n"
                    "# HELP g G.\n# TYPE g gauge\ng 0\n"
                    "# HELP ns:sub_x \n# TYPE ns:sub_x counter\nns:sub_x 0\n");
    free(text);
    dr_metrics_free(m);
}

typedef struct hook_state {
    dr_metrics *m;
    dr_gauge *g;
    int calls;
    bool remove_self;
} hook_state;

static void refresh_gauge(void *ctx)
{
    hook_state *h = ctx;
    h->calls++;
    dr_gauge_set(h->g, h->calls * 10);
    if (h->remove_self)
        dr_metrics_remove_hook(h->m, refresh_gauge, h);
}

void test_metrics_hooks(void)
{
    dr_metrics *m = dr_metrics_new();
    hook_state h = {m, dr_metrics_gauge(m, "g", "G.", NULL), 0, false};
    hook_state once = {m, dr_metrics_gauge(m, "once", "O.", NULL), 0, true};
    CHECK_INT(dr_metrics_add_hook(m, refresh_gauge, &once), 0);
    CHECK_INT(dr_metrics_add_hook(m, refresh_gauge, &h), 0);
    CHECK_INT(dr_metrics_add_hook(m, refresh_gauge, &h), 0); /* already there */

    char *text = render(m);
    CHECK_STR(text, "# HELP g G.\n# TYPE g gauge\ng 10\n# HELP once O.\n# TYPE once gauge\n"
                    "once 10\n");
    free(text);
    text = render(m);
    CHECK_STR(text, "# HELP g G.\n# TYPE g gauge\ng 20\n# HELP once O.\n# TYPE once gauge\n"
                    "once 10\n");
    free(text);
    CHECK_INT(h.calls, 2); /* the removal during the run did not skip it */
    CHECK_INT(once.calls, 1);

    dr_metrics_remove_hook(m, refresh_gauge, &h);
    dr_metrics_remove_hook(m, refresh_gauge, &h); /* not there: nothing */
    text = render(m);
    free(text);
    CHECK_INT(h.calls, 2);
    CHECK(dr_gauge_get(h.g) == 20);
    dr_metrics_free(m);
}

/* ---- HTTP server: the fixture ----------------------------------------------- */

typedef struct fixture fixture;
typedef void (*client_fn)(fixture *f);

enum { MAX_RESULTS = 16 };

/* More than the socket buffers hold: its write is still pending when the
 * client stops reading. */
#define BIG_BODY (32u << 20)

struct fixture {
    uv_loop_t loop;
    dr_http_server *srv;
    uv_async_t done; /* the client thread is finished with the server */
    bool done_sent;  /* client thread only */
    int port;
    client_fn client;
    /* written by the client thread, read after the join */
    char *got[MAX_RESULTS];
    int ints[MAX_RESULTS];
    /* written by the handler on the loop thread */
    int calls;
    char last_method[16];
    char last_path[64];
};

static int handle(void *ctx, const char *method, const char *path, dr_buf *body,
                  const char **content_type)
{
    fixture *f = ctx;
    f->calls++;
    snprintf(f->last_method, sizeof f->last_method, "%s", method);
    snprintf(f->last_path, sizeof f->last_path, "%s", path);
    if (strcmp(path, "/metrics") == 0) {
        *content_type = "text/plain; version=0.0.4";
        dr_buf_puts(body, "metric 1\n");
        return 200;
    }
    if (strcmp(path, "/quit") == 0) {
        dr_http_server_close(f->srv);
        f->srv = NULL; /* so that the fixture does not close it again */
        return 200;
    }
    if (strcmp(path, "/big") == 0 && dr_buf_reserve(body, BIG_BODY) == 0) {
        memset(body->p, 'x', BIG_BODY);
        body->len = BIG_BODY;
        return 200;
    }
    if (strcmp(path, "/weird") == 0) {
        *content_type = NULL;
        dr_buf_puts(body, "dropped");
        return 99;
    }
    if (strcmp(path, "/teapot") == 0) {
        dr_buf_puts(body, "short and stout\n");
        return 418;
    }
    dr_buf_puts(body, "not found\n");
    return 404;
}

/* Tells the loop that the client is done; the server is closed then. */
static void client_done(fixture *f)
{
    if (!f->done_sent) {
        f->done_sent = true;
        uv_async_send(&f->done);
    }
}

static void on_client_done(uv_async_t *a)
{
    fixture *f = a->data;
    dr_http_server_close(f->srv);
    uv_close((uv_handle_t *)&f->done, NULL);
}

static void *client_main(void *arg)
{
    fixture *f = arg;
    f->client(f);
    client_done(f);
    return NULL;
}

/* Starts a server on 127.0.0.1:0, runs `client` in a thread against it,
 * closes the server when the client is done and runs the loop dry. */
static void run_with_client(fixture *f, client_fn client)
{
    memset(f, 0, sizeof *f);
    f->client = client;
    CHECK_INT(uv_loop_init(&f->loop), 0);
    dr_error err = {{0}};
    f->srv = dr_http_server_start(&f->loop, "127.0.0.1:0", handle, f, &err);
    CHECK(f->srv != NULL);
    if (!f->srv) {
        fprintf(stderr, "  %s\n", err.msg);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        uv_loop_close(&f->loop);
        return;
    }
    f->port = dr_http_server_port(f->srv);
    CHECK(f->port > 0);
    uv_async_init(&f->loop, &f->done, on_client_done);
    f->done.data = f;
    pthread_t t;
    CHECK_INT(pthread_create(&t, NULL, client_main, f), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    pthread_join(t, NULL);
    CHECK_INT(uv_loop_close(&f->loop), 0);
}

static void fixture_free(fixture *f)
{
    for (int i = 0; i < MAX_RESULTS; i++)
        free(f->got[i]);
}

/* ---- HTTP server: a blocking client --------------------------------------------- */

static int client_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    /* a server bug must fail the test, not hang it */
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void send_str(int fd, const char *s)
{
    send_all(fd, s, strlen(s));
}

/* Reads until the server closes (or 5 s pass); returns what came. */
static char *recv_until_close(int fd)
{
    dr_buf b = {0};
    char tmp[4096];
    ssize_t n;
    while ((n = recv(fd, tmp, sizeof tmp, 0)) > 0 && b.len < (1u << 20))
        dr_buf_append(&b, tmp, (size_t)n);
    dr_buf_putc(&b, '\0');
    return b.p;
}

/* Reads exactly one response, using its Content-Length (no body for HEAD). */
static char *recv_response(int fd, bool head_only)
{
    dr_buf b = {0};
    for (;;) {
        dr_buf_putc(&b, '\0');
        b.len--;
        const char *end = strstr(b.p, "\r\n\r\n");
        if (end) {
            const char *cl = strstr(b.p, "Content-Length: ");
            size_t want = (size_t)(end + 4 - b.p) + (cl && !head_only ? atoi(cl + 16) : 0);
            if (b.len >= want)
                break;
        }
        char c;
        if (recv(fd, &c, 1, 0) != 1) /* one byte at a time: never read past it */
            break;
        dr_buf_putc(&b, c);
    }
    return b.p;
}

/* One connection: send the bytes, half-close, read everything. */
static char *exchange(int port, const char *req, size_t len)
{
    int fd = client_connect(port);
    if (fd < 0)
        return strdup("(connect failed)");
    send_all(fd, req, len);
    shutdown(fd, SHUT_WR);
    char *resp = recv_until_close(fd);
    close(fd);
    return resp;
}

static char *exchange_str(int port, const char *req)
{
    return exchange(port, req, strlen(req));
}

/* ---- HTTP server: the tests ------------------------------------------------------ */

static void get_and_head_client(fixture *f)
{
    f->got[0] = exchange_str(f->port, "GET /metrics?name=x&y HTTP/1.1\r\nHost: a\r\n"
                                      "Connection: close\r\n\r\n");
    f->got[1] = exchange_str(f->port, "HEAD /metrics HTTP/1.1\r\nConnection: close\r\n\r\n");
    f->got[2] = exchange_str(f->port, "GET /nope HTTP/1.0\r\n\r\n");
    f->got[3] = exchange_str(f->port, "GET /teapot HTTP/1.1\nConnection: close\n\n");
    f->got[4] = exchange_str(f->port, "GET http://example.com/metrics?a HTTP/1.1\r\n"
                                      "connection: Close\r\n\r\n");
}

void test_http_get_and_head(void)
{
    fixture f;
    run_with_client(&f, get_and_head_client);
    CHECK_STR(f.got[0], "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                        "Content-Length: 9\r\nConnection: close\r\n\r\nmetric 1\n");
    CHECK_STR(f.got[1], "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                        "Content-Length: 9\r\nConnection: close\r\n\r\n");
    CHECK_STR(f.got[2], "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        "Content-Length: 10\r\nConnection: close\r\n\r\nnot found\n");
    CHECK_STR(f.got[3], "HTTP/1.1 418 Client Error\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        "Content-Length: 16\r\nConnection: close\r\n\r\nshort and stout\n");
    CHECK_STR(f.got[4], "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                        "Content-Length: 9\r\nConnection: close\r\n\r\nmetric 1\n");
    CHECK_INT(f.calls, 5);
    CHECK_STR(f.last_method, "GET");
    CHECK_STR(f.last_path, "/metrics");
    fixture_free(&f);
}

static void errors_client(fixture *f)
{
    f->got[0] = exchange_str(f->port, "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    f->got[1] = exchange_str(f->port, "garbage\r\n\r\n");
    f->got[2] = exchange_str(f->port, "GET / HTTP/2.0\r\n\r\n");
    f->got[3] = exchange_str(f->port, "GET /metrics HTTP/1.1\r\nNo colon here\r\n\r\n");
    f->got[4] = exchange_str(f->port, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
    f->got[5] = exchange_str(f->port, "GET /metrics\r\n\r\n");
    f->got[6] = exchange_str(f->port, "GET * HTTP/1.1\r\n\r\n");
    f->got[7] = exchange_str(f->port, "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n");

    /* heads of exactly the limit and one byte over it */
    enum { LIMIT = 8192 };
    static char big[LIMIT + 2];
    const char *start = "GET /metrics HTTP/1.1\r\nConnection: close\r\nX-Pad: ";
    for (int extra = 0; extra < 2; extra++) {
        size_t n = strlen(start);
        memcpy(big, start, n);
        size_t pad = LIMIT + (size_t)extra - n - 4;
        memset(big + n, 'a', pad);
        memcpy(big + n + pad, "\r\n\r\n", 4);
        f->got[8 + extra] = exchange(f->port, big, LIMIT + (size_t)extra);
    }
    /* far over, the rest still being sent while the answer goes out */
    static char huge[64 * 1024];
    memset(huge, 'a', sizeof huge);
    memcpy(huge, "GET / HTTP/1.1\r\nX: ", 19);
    f->got[10] = exchange(f->port, huge, sizeof huge);

    /* random bytes: any answer but a crash */
    unsigned seed = 12345;
    int odd = 0;
    for (int i = 0; i < 30; i++) {
        char junk[600];
        size_t n = 1 + (seed = seed * 1103515245 + 12345) % sizeof junk;
        for (size_t j = 0; j < n; j++)
            junk[j] = (char)((seed = seed * 1103515245 + 12345) >> 16);
        char *resp = exchange(f->port, junk, n);
        if (resp[0] && strncmp(resp, "HTTP/1.1 400 ", 13) != 0 &&
            strncmp(resp, "HTTP/1.1 431 ", 13) != 0)
            odd++;
        free(resp);
    }
    f->ints[0] = odd;
}

void test_http_errors(void)
{
    fixture f;
    run_with_client(&f, errors_client);
    CHECK_STR(f.got[0], "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; "
                        "charset=utf-8\r\nAllow: GET, HEAD\r\nContent-Length: 19\r\n"
                        "Connection: close\r\n\r\nMethod Not Allowed\n");
    const char *bad = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                      "Content-Length: 12\r\nConnection: close\r\n\r\nBad Request\n";
    CHECK_STR(f.got[1], bad);
    CHECK_STR(f.got[2], "HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Type: text/plain; "
                        "charset=utf-8\r\nContent-Length: 27\r\nConnection: close\r\n\r\n"
                        "HTTP Version Not Supported\n");
    CHECK_STR(f.got[3], bad);
    CHECK_STR(f.got[4], bad);
    CHECK_STR(f.got[5], bad);
    CHECK_STR(f.got[6], bad);
    CHECK_STR(f.got[7], bad);
    CHECK(f.got[8] && strncmp(f.got[8], "HTTP/1.1 200 OK\r\n", 17) == 0);
    const char *too_big = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: "
                          "text/plain; charset=utf-8\r\nContent-Length: 32\r\n"
                          "Connection: close\r\n\r\nRequest Header Fields Too Large\n";
    CHECK_STR(f.got[9], too_big);
    CHECK_STR(f.got[10], too_big);
    CHECK_INT(f.ints[0], 0);
    CHECK_INT(f.calls, 1); /* only the request at the limit reached the handler */
    fixture_free(&f);
}

static void keep_alive_client(fixture *f)
{
    /* two requests in one write; the second ends the connection */
    f->got[0] = exchange_str(f->port, "GET /metrics HTTP/1.1\r\n\r\n"
                                      "HEAD /x?q HTTP/1.1\r\nConnection: close\r\n\r\n");
    /* one request at a time on a connection that stays open */
    int fd = client_connect(f->port);
    send_str(fd, "GET /metrics HTTP/1.1\r\n\r\n");
    f->got[1] = recv_response(fd, false);
    send_str(fd, "HEAD /metrics HTTP/1.1\r\n\r\n");
    f->got[2] = recv_response(fd, true);
    /* in pieces */
    send_str(fd, "GET /met");
    usleep(20000);
    send_str(fd, "rics HTTP/1.1\r\nConnec");
    usleep(20000);
    send_str(fd, "tion: close\r\n\r\n");
    f->got[3] = recv_until_close(fd);
    close(fd);
    /* 1.0 asks for keep-alive explicitly */
    fd = client_connect(f->port);
    send_str(fd, "GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    f->got[4] = recv_response(fd, false);
    send_str(fd, "GET /metrics HTTP/1.0\r\n\r\n");
    f->got[5] = recv_until_close(fd);
    close(fd);
}

void test_http_keep_alive_pipelined(void)
{
    fixture f;
    run_with_client(&f, keep_alive_client);
    const char *ok_ka = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                        "Content-Length: 9\r\nConnection: keep-alive\r\n\r\nmetric 1\n";
    const char *ok_close = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                           "Content-Length: 9\r\nConnection: close\r\n\r\nmetric 1\n";
    CHECK_STR(f.got[0], "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                        "Content-Length: 9\r\nConnection: keep-alive\r\n\r\nmetric 1\n"
                        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        "Content-Length: 10\r\nConnection: close\r\n\r\n");
    CHECK_STR(f.got[1], ok_ka);
    CHECK_STR(f.got[2], "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                        "Content-Length: 9\r\nConnection: keep-alive\r\n\r\n");
    CHECK_STR(f.got[3], ok_close);
    CHECK_STR(f.got[4], ok_ka);
    CHECK_STR(f.got[5], ok_close);
    CHECK_INT(f.calls, 7);
    fixture_free(&f);
}

/* Whether the server closed fd: EOF or reset, not a timeout. */
static bool closed_by_server(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, 0);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static void connection_limit_client(fixture *f)
{
    enum { LIMIT = 64 };
    int fds[LIMIT];
    for (int i = 0; i < LIMIT; i++)
        fds[i] = client_connect(f->port);
    int extra = client_connect(f->port);
    f->ints[0] = closed_by_server(extra);
    close(extra);
    /* the ones within the limit are served */
    send_str(fds[LIMIT - 1], "GET /metrics HTTP/1.1\r\n\r\n");
    f->got[0] = recv_response(fds[LIMIT - 1], false);
    for (int i = 0; i < LIMIT; i++)
        close(fds[i]);
    /* once the server saw them go, there is room again */
    for (int tries = 0; tries < 100; tries++) {
        free(f->got[1]);
        f->got[1] = exchange_str(f->port, "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n");
        if (f->got[1][0])
            break;
        usleep(20000);
    }
}

void test_http_connection_limit(void)
{
    fixture f;
    run_with_client(&f, connection_limit_client);
    CHECK_INT(f.ints[0], 1);
    CHECK(f.got[0] && strstr(f.got[0], "Connection: keep-alive\r\n\r\nmetric 1\n"));
    CHECK(f.got[1] && strstr(f.got[1], "Connection: close\r\n\r\nmetric 1\n"));
    fixture_free(&f);
}

static void close_with_open_connections_client(fixture *f)
{
    int idle = client_connect(f->port);
    int partial = client_connect(f->port);
    int kept = client_connect(f->port);
    int unread = client_connect(f->port);
    send_str(partial, "GET /metr");
    send_str(kept, "GET /metrics HTTP/1.1\r\n\r\n");
    char *resp = recv_response(kept, false);
    f->ints[0] = strstr(resp, "metric 1\n") != NULL;
    free(resp);
    /* many requests whose answers are never read: writes pile up */
    static char many[25 * 400];
    for (int i = 0; i < 400; i++)
        memcpy(many + 25 * i, "GET /metrics HTTP/1.1\r\n\r\n", 25);
    send_all(unread, many, sizeof many);
    usleep(50000);
    client_done(f); /* the server closes now, with all four open */
    f->ints[1] = closed_by_server(idle) && closed_by_server(partial) && closed_by_server(kept);
    close(idle);
    close(partial);
    close(kept);
    close(unread);
}

void test_http_close_with_open_connections(void)
{
    fixture f;
    run_with_client(&f, close_with_open_connections_client);
    CHECK_INT(f.ints[0], 1);
    CHECK_INT(f.ints[1], 1);
    fixture_free(&f);
}

static dr_http_server *start(uv_loop_t *loop, const char *listen, dr_error *err)
{
    memset(err, 0, sizeof *err);
    return dr_http_server_start(loop, listen, handle, NULL, err);
}

void test_http_listen_addresses(void)
{
    uv_loop_t loop;
    CHECK_INT(uv_loop_init(&loop), 0);
    dr_error err;
    static const char *const bad[] = {
        "",        "nope", "127.0.0.1",      "127.0.0.1:", "127.0.0.1:99999", "::1:80",
        "[::1]80", "[::1", "example.com:80", "1.2.3.4:8a", "1.2.3.4:-1",      "1.2.3.4:1234567",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dr_http_server *s = start(&loop, bad[i], &err);
        if (!CHECK(s == NULL))
            fprintf(stderr, "  accepted \"%s\"\n", bad[i]);
        CHECK(err.msg[0] != '\0');
        dr_http_server_close(s);
    }

    dr_http_server *a = start(&loop, "127.0.0.1:0", &err);
    CHECK(a != NULL);
    int port = a ? dr_http_server_port(a) : 0;
    CHECK(port > 0);
    char taken[32];
    snprintf(taken, sizeof taken, "127.0.0.1:%d", port);
    CHECK(start(&loop, taken, &err) == NULL); /* the port is in use */
    CHECK(strstr(err.msg, taken) != NULL);

    dr_http_server *any = start(&loop, ":0", &err);
    CHECK(any != NULL);
    dr_http_server *local = start(&loop, "localhost:0", &err);
    CHECK(local != NULL);
    /* IPv6 may be missing where the tests run: only a clean failure is asked */
    dr_http_server *v6 = start(&loop, "[::1]:0", &err);
    CHECK(v6 == NULL || dr_http_server_port(v6) > 0);

    dr_http_server_close(a);
    dr_http_server_close(any);
    dr_http_server_close(local);
    dr_http_server_close(v6);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(&loop), 0);
}

static void odd_requests_client(fixture *f)
{
    f->got[0] = exchange_str(f->port, "\r\n\nGET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n");
    f->got[1] = exchange_str(f->port, "GET /weird HTTP/1.1\r\nConnection: close\r\n\r\n");
    /* a body we do not read ends the connection after the answer */
    f->got[2] = exchange_str(f->port, "GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                                      "\r\n0\r\n\r\n");
    f->got[3] = exchange_str(f->port, "GET /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nab");
    f->got[4] = exchange_str(f->port, "GET /metrics HTTP/1.1\r\nContent-Length: 000\r\n"
                                      "Connection: close\r\n\r\n");
    f->got[5] = exchange_str(f->port, "GET http://example.com HTTP/1.1\r\n"
                                      "Connection: keep-alive, close\r\n\r\n");
}

void test_http_odd_requests(void)
{
    fixture f;
    run_with_client(&f, odd_requests_client);
    const char *ok_close = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                           "Content-Length: 9\r\nConnection: close\r\n\r\nmetric 1\n";
    CHECK_STR(f.got[0], ok_close);
    CHECK_STR(f.got[1], "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; "
                        "charset=utf-8\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    CHECK_STR(f.got[2], ok_close);
    CHECK_STR(f.got[3], ok_close);
    CHECK_STR(f.got[4], ok_close);
    CHECK(f.got[5] && strncmp(f.got[5], "HTTP/1.1 404 Not Found\r\n", 24) == 0 &&
          strstr(f.got[5], "Connection: close\r\n"));
    CHECK_STR(f.last_path, "/");
    CHECK_INT(f.calls, 6);
    fixture_free(&f);
}

static void close_during_write_client(fixture *f)
{
    int fd = client_connect(f->port);
    send_str(fd, "GET /big HTTP/1.1\r\n\r\n");
    char first[17] = {0};
    f->ints[0] = (int)recv(fd, first, 16, MSG_WAITALL);
    f->got[0] = strdup(first);
    usleep(50000);  /* let the server fill the socket buffers */
    client_done(f); /* closes the server while the body is being written */
    size_t total = 16;
    char tmp[65536];
    ssize_t n;
    while ((n = recv(fd, tmp, sizeof tmp, 0)) > 0)
        total += (size_t)n;
    f->ints[1] = total < BIG_BODY; /* cut short */
    close(fd);
}

void test_http_close_during_write(void)
{
    fixture f;
    run_with_client(&f, close_during_write_client);
    CHECK_INT(f.ints[0], 16);
    CHECK_STR(f.got[0], "HTTP/1.1 200 OK\r");
    CHECK_INT(f.ints[1], 1);
    fixture_free(&f);
}

static void handler_closes_server_client(fixture *f)
{
    int fd = client_connect(f->port);
    send_str(fd, "GET /metrics HTTP/1.1\r\n\r\n");
    f->got[0] = recv_response(fd, false);
    f->got[1] = exchange_str(f->port, "GET /quit HTTP/1.1\r\n\r\n");
    f->ints[0] = closed_by_server(fd);
    close(fd);
}

void test_http_handler_closes_server(void)
{
    fixture f;
    run_with_client(&f, handler_closes_server_client);
    CHECK(f.got[0] && strstr(f.got[0], "metric 1\n"));
    CHECK_STR(f.got[1], ""); /* closed without an answer */
    CHECK_INT(f.ints[0], 1);
    CHECK_INT(f.calls, 2);
    fixture_free(&f);
}

/* process_* metrics: the /proc/<pid>/stat parser on real lines (a command
 * name with spaces and parentheses, as a process may name itself), and the
 * series read from this very process. */
void test_process_metrics(void)
{
    dr_proc_stat_fields st;
    const char *line =
        "4242 (dro ver) (x)) S 1 4242 4242 0 -1 4194560 1520 0 3 0 157 43 0 0 20 0 5 0 "
        "987654 123456789 2345 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
    CHECK_INT(dr_proc_stat_parse(line, &st), 0);
    CHECK_INT((int64_t)st.utime_ticks, 157);
    CHECK_INT((int64_t)st.stime_ticks, 43);
    CHECK_INT((int64_t)st.vsize_bytes, 123456789);
    CHECK_INT(st.rss_pages, 2345);
    CHECK_INT(dr_proc_stat_parse("4242 (cut short) S 1 2 3", &st), -1);
    CHECK_INT(dr_proc_stat_parse("no parenthesis at all", &st), -1);
    CHECK_INT(dr_proc_stat_parse("1 (x) S 1 2 3 4 5 6 7 8 9 10 11 x 13", &st), -1);

    dr_metrics *m = dr_metrics_new();
    CHECK_INT(dr_process_metrics_register(m), 0);
    char *text = render(m);
    CHECK(text && strstr(text, "# TYPE process_cpu_seconds_total counter\n"));
    CHECK(text && strstr(text, "# TYPE process_resident_memory_bytes gauge\n"));
    double rss = -1, start = -1, fds = -1;
    const char *p = text ? strstr(text, "\nprocess_resident_memory_bytes ") : NULL;
    if (p)
        rss = strtod(p + strlen("\nprocess_resident_memory_bytes "), NULL);
    p = text ? strstr(text, "\nprocess_start_time_seconds ") : NULL;
    if (p)
        start = strtod(p + strlen("\nprocess_start_time_seconds "), NULL);
    p = text ? strstr(text, "\nprocess_open_fds ") : NULL;
    if (p)
        fds = strtod(p + strlen("\nprocess_open_fds "), NULL);
    CHECK(rss > 1024 * 1024); /* a running test binary holds more than 1 MiB */
    CHECK(start > 1.5e9 && start <= (double)time(NULL) + 1);
    CHECK(fds >= 3);
    free(text);
    dr_metrics_free(m);
}
