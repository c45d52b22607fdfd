/*
 * A small HTTP/1.1 server on libuv for the agent's own endpoints.
 *
 * Each connection owns a fixed 8 KiB input buffer: a request head must fit in
 * it (431 otherwise) and requests have no body, so a connection never
 * allocates more than its response. Requests are answered one at a time:
 * while a response is being written the connection stops reading, and when
 * the write completes the next request is looked for in what the client
 * already sent (pipelining) before reading again.
 *
 * A connection moves through these states:
 *
 *   READING    waiting for a complete request head (idle timer running)
 *   WRITING    a response is in flight (the timer bounds a client that
 *              does not read)
 *   LINGERING  the last response was written and our side shut down; input
 *              is read and discarded until the client closes or a short
 *              timer fires. Closing a socket with unread input makes the
 *              kernel send a reset, which can destroy the response before
 *              the client has read it (an error answer to an oversized head,
 *              say).
 *   CLOSING    uv_close was called; the memory goes when both handles
 *              (socket and timer) reported their close.
 *
 * The server itself is freed when it was closed and the listener, every
 * connection and every rejected socket finished closing.
 */
#include "http_server.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTTP_MAX_HEAD 8192
#define HTTP_MAX_CONNS 64
#define HTTP_IDLE_MS 10000
#define HTTP_LINGER_MS 2000
#define HTTP_BACKLOG 128

/* parse_request: the head has not fully arrived yet. */
#define HTTP_INCOMPLETE DR_EAGAIN

typedef enum { CONN_READING, CONN_WRITING, CONN_LINGERING, CONN_CLOSING } conn_state;

typedef struct conn {
    struct conn *prev, *next; /* the server's open connections */
    dr_http_server *srv;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    conn_state state;
    bool reading;      /* uv_read_start is in effect */
    bool keep_alive;   /* for the response in flight */
    int open_handles;  /* tcp and timer, until their close callbacks ran */
    size_t inlen;      /* bytes in `in` */
    size_t consumed;   /* bytes of `in` taken by the request being answered */
    dr_buf head, body; /* the response in flight */
    char in[HTTP_MAX_HEAD];
} conn;

/* A connection over the limit: accepted only to be closed. */
typedef struct rejected {
    dr_http_server *srv;
    uv_tcp_t tcp;
} rejected;

struct dr_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    dr_http_handler fn;
    void *ctx;
    int port;
    conn *conns;
    size_t nconns;
    size_t live; /* listener, connections and rejected sockets not yet closed */
    bool closing;
};

typedef struct request {
    const char *method; /* NUL-terminated inside the connection's buffer */
    const char *path;   /* likewise, without the query string */
    bool keep_alive;
    size_t head_len; /* bytes of the buffer this request takes */
} request;

/* ---- parsing a request head ----------------------------------------------- */

/* RFC 9110 token characters. */
static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_ctl(char c)
{
    return (unsigned char)c < 0x20 || c == 0x7f;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* The line at p: its length without CR LF, and *next just past it; -1 when
 * its LF has not arrived yet. A bare LF ends a line too (RFC 9112 2.2). */
static long next_line(const char *p, const char *end, const char **next)
{
    const char *lf = memchr(p, '\n', (size_t)(end - p));
    if (!lf)
        return -1;
    *next = lf + 1;
    return lf > p && lf[-1] == '\r' ? lf - 1 - p : lf - p;
}

/* Whether a request line still arriving can already be seen to be garbage,
 * so that binary junk (a TLS handshake, say) gets its 400 at once. */
static bool partial_request_line_is_bad(const char *p, const char *end)
{
    const char *q = p;
    while (q < end && is_tchar(*q))
        q++;
    if (q < end && *q != ' ')
        return true;
    for (; q < end; q++)
        if (is_ctl(*q) && !(*q == '\r' && q + 1 == end))
            return true;
    return false;
}

typedef struct request_line {
    size_t method_len;
    size_t target_off, target_len; /* from the start of the line */
    int minor;                     /* HTTP/1.<minor> */
} request_line;

/* "METHOD SP target SP HTTP/1.x": 0, or the status to answer with. */
static int parse_request_line(const char *p, size_t n, request_line *rl)
{
    size_t i = 0;
    while (i < n && is_tchar(p[i]))
        i++;
    if (i == 0 || i == n || p[i] != ' ')
        return 400;
    rl->method_len = i++;
    rl->target_off = i;
    while (i < n && p[i] != ' ' && !is_ctl(p[i]))
        i++;
    if (i == rl->target_off || i == n || p[i] != ' ')
        return 400;
    rl->target_len = i - rl->target_off;
    const char *v = p + i + 1;
    size_t vlen = n - i - 1;
    if (vlen != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
        v[7] < '0' || v[7] > '9')
        return 400;
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return 505;
    rl->minor = v[7] - '0';
    return 0;
}

typedef struct head_flags {
    bool conn_close, conn_keep_alive;
    bool has_body; /* Content-Length > 0 or Transfer-Encoding */
} head_flags;

static bool header_is(const char *name, size_t len, const char *want)
{
    return len == strlen(want) && strncasecmp(name, want, len) == 0;
}

/* The tokens of a Connection header ("close", "keep-alive", "Upgrade"...). */
static void parse_connection_tokens(const char *v, size_t n, head_flags *hf)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (is_ows(v[i]) || v[i] == ','))
            i++;
        size_t start = i;
        while (i < n && !is_ows(v[i]) && v[i] != ',')
            i++;
        if (header_is(v + start, i - start, "close"))
            hf->conn_close = true;
        else if (header_is(v + start, i - start, "keep-alive"))
            hf->conn_keep_alive = true;
    }
}

/* "name: value": 0, or 400. Only the headers that decide the connection's
 * fate are looked at. */
static int parse_header(const char *p, size_t n, head_flags *hf)
{
    size_t i = 0;
    while (i < n && is_tchar(p[i]))
        i++;
    if (i == 0 || i == n || p[i] != ':')
        return 400; /* also rejects obsolete line folding */
    size_t name_len = i++;
    while (i < n && is_ows(p[i]))
        i++;
    size_t vend = n;
    while (vend > i && is_ows(p[vend - 1]))
        vend--;
    for (size_t j = i; j < vend; j++)
        if (is_ctl(p[j]) && p[j] != '\t')
            return 400;
    const char *v = p + i;
    size_t vlen = vend - i;
    if (header_is(p, name_len, "connection")) {
        parse_connection_tokens(v, vlen, hf);
    } else if (header_is(p, name_len, "content-length")) {
        if (vlen == 0)
            return 400;
        for (size_t j = 0; j < vlen; j++) {
            if (v[j] < '0' || v[j] > '9')
                return 400;
            if (v[j] != '0')
                hf->has_body = true;
        }
    } else if (header_is(p, name_len, "transfer-encoding")) {
        hf->has_body = true;
    }
    return 0;
}

/* The path of a request target: origin form as is, absolute form
 * ("http://host/path") from its path; the query string cut off. Writes NULs
 * into the target. NULL when it is neither form. */
static const char *target_path(char *target)
{
    char *path = target;
    if (*path != '/') {
        char *scheme_end = strstr(target, "://");
        if (!scheme_end)
            return NULL;
        path = strchr(scheme_end + 3, '/');
        if (!path)
            return "/";
    }
    char *query = strchr(path, '?');
    if (query)
        *query = '\0';
    return path;
}

/* Looks for one complete request head at the start of buf. Returns 0 with
 * *r filled, HTTP_INCOMPLETE, or the status to answer a bad request with.
 * Nothing is written to buf until the head is known complete. */
static int parse_request(char *buf, size_t len, request *r)
{
    const char *p = buf, *end = buf + len, *next;
    long n;
    while ((n = next_line(p, end, &next)) == 0)
        p = next; /* blank lines before a request are ignored (RFC 9112 2.2) */
    if (n < 0)
        return partial_request_line_is_bad(p, end) ? 400 : HTTP_INCOMPLETE;
    char *line = buf + (p - buf);
    request_line rl;
    int status = parse_request_line(line, (size_t)n, &rl);
    if (status)
        return status;
    head_flags hf = {0};
    for (p = next; (n = next_line(p, end, &next)) != 0; p = next) {
        if (n < 0)
            return HTTP_INCOMPLETE;
        if ((status = parse_header(p, (size_t)n, &hf)) != 0)
            return status;
    }
    line[rl.method_len] = '\0';
    line[rl.target_off + rl.target_len] = '\0';
    r->method = line;
    r->path = target_path(line + rl.target_off);
    if (!r->path)
        return 400;
    /* HTTP/1.1 keeps the connection unless told otherwise, 1.0 only when
     * asked. A body we do not read would be taken for the next request. */
    r->keep_alive = rl.minor == 1 ? !hf.conn_close : hf.conn_keep_alive && !hf.conn_close;
    if (hf.has_body)
        r->keep_alive = false;
    r->head_len = (size_t)(next - buf);
    return 0;
}

/* ---- server life cycle -------------------------------------------------------- */

/* One of the server's handles or connections is gone. */
static void server_release(dr_http_server *s)
{
    if (--s->live == 0 && s->closing)
        free(s);
}

static void on_listener_closed(uv_handle_t *h)
{
    server_release(h->data);
}

/* ---- connections ----------------------------------------------------------------- */

static void on_conn_handle_closed(uv_handle_t *h)
{
    conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    dr_buf_free(&c->head);
    dr_buf_free(&c->body);
    dr_http_server *s = c->srv;
    free(c);
    server_release(s);
}

static void conn_close(conn *c)
{
    if (c->state == CONN_CLOSING)
        return;
    c->state = CONN_CLOSING;
    dr_http_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    /* Pending write and shutdown requests are cancelled first; their
     * callbacks see CONN_CLOSING and do nothing. */
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_conn_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static void restart_timer(conn *c, uint64_t ms)
{
    uv_timer_start(&c->timer, on_conn_timeout, ms, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn *c = h->data;
    /* While lingering the input is thrown away: the whole buffer will do. */
    size_t used = c->state == CONN_LINGERING ? 0 : c->inlen;
    *buf = uv_buf_init(c->in + used, (unsigned)(sizeof c->in - used));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void start_reading(conn *c)
{
    if (c->reading)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        conn_close(c);
        return;
    }
    c->reading = true;
}

static void stop_reading(conn *c)
{
    if (c->reading)
        uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn *c = req->data;
    if (c->state != CONN_CLOSING && status < 0)
        conn_close(c);
}

/* The last response is out: send our FIN and wait for the client's. */
static void start_lingering(conn *c)
{
    c->state = CONN_LINGERING;
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        conn_close(c);
        return;
    }
    restart_timer(c, HTTP_LINGER_MS);
    start_reading(c);
}

static void serve_buffered(conn *c);

static void on_written(uv_write_t *req, int status)
{
    conn *c = req->data;
    if (c->state == CONN_CLOSING)
        return;
    /* Idle connections should not hold a large body (/metrics). */
    dr_buf_free(&c->head);
    dr_buf_free(&c->body);
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (!c->keep_alive) {
        start_lingering(c);
        return;
    }
    memmove(c->in, c->in + c->consumed, c->inlen - c->consumed);
    c->inlen -= c->consumed;
    c->consumed = 0;
    c->state = CONN_READING;
    restart_timer(c, HTTP_IDLE_MS);
    serve_buffered(c);
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    }
    return status < 300   ? "OK"
           : status < 400 ? "Redirection"
           : status < 500 ? "Client Error"
                          : "Server Error";
}

/* Writes the status line, headers and (unless `with_body` is false, for
 * HEAD) c->body. */
static void send_response(conn *c, int status, const char *content_type, bool with_body,
                          bool keep_alive)
{
    int rc = dr_buf_printf(&c->head,
                           "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%sContent-Length: %zu\r\n"
                           "Connection: %s\r\n\r\n",
                           status, reason_phrase(status), content_type,
                           status == 405 ? "Allow: GET, HEAD\r\n" : "", c->body.len,
                           keep_alive ? "keep-alive" : "close");
    if (rc < 0) {
        conn_close(c);
        return;
    }
    uv_buf_t bufs[2] = {uv_buf_init(c->head.p, (unsigned)c->head.len),
                        uv_buf_init(c->body.p, (unsigned)c->body.len)};
    unsigned nbufs = with_body && c->body.len ? 2 : 1;
    c->state = CONN_WRITING;
    c->keep_alive = keep_alive;
    c->write_req.data = c;
    if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, bufs, nbufs, on_written) < 0) {
        conn_close(c);
        return;
    }
    /* A client that does not read its response gets the idle time too. */
    restart_timer(c, HTTP_IDLE_MS);
}

/* An answer to a request we could not take; the connection ends after it. */
static void send_error(conn *c, int status)
{
    dr_buf_reset(&c->body);
    if (dr_buf_printf(&c->body, "%s\n", reason_phrase(status)) < 0) {
        conn_close(c);
        return;
    }
    send_response(c, status, "text/plain; charset=utf-8", true, false);
}

static void answer(conn *c, const request *r)
{
    bool is_head = strcmp(r->method, "HEAD") == 0;
    if (!is_head && strcmp(r->method, "GET") != 0) {
        send_error(c, 405);
        return;
    }
    dr_http_server *s = c->srv;
    const char *content_type = "text/plain; charset=utf-8";
    dr_buf_reset(&c->body);
    int status = s->fn(s->ctx, r->method, r->path, &c->body, &content_type);
    if (c->state == CONN_CLOSING)
        return; /* the handler closed the server */
    if (status < 200 || status > 599) {
        /* 1xx would promise another response; an unknown code is a bug */
        dr_buf_reset(&c->body);
        status = 500;
    }
    if (!content_type)
        content_type = "text/plain; charset=utf-8";
    send_response(c, status, content_type, !is_head, r->keep_alive);
}

/* Answers the first request in the buffer, or reads on when it is not
 * complete yet. */
static void serve_buffered(conn *c)
{
    request r;
    int status = parse_request(c->in, c->inlen, &r);
    if (status == HTTP_INCOMPLETE && c->inlen < sizeof c->in) {
        start_reading(c);
        return;
    }
    stop_reading(c);
    if (status == HTTP_INCOMPLETE)
        send_error(c, 431);
    else if (status != 0)
        send_error(c, status);
    else {
        c->consumed = r.head_len;
        answer(c, &r);
    }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = stream->data;
    if (nread == 0)
        return; /* EAGAIN */
    if (nread < 0) {
        conn_close(c); /* EOF, reset: nothing left to answer */
        return;
    }
    if (c->state != CONN_READING)
        return; /* lingering: discard */
    c->inlen += (size_t)nread;
    serve_buffered(c);
}

static void on_rejected_closed(uv_handle_t *h)
{
    rejected *r = h->data;
    dr_http_server *s = r->srv;
    free(r);
    server_release(s);
}

/* Takes the pending connection off the listen queue and closes it. If even
 * that cannot be allocated, the connection stays queued and libuv pauses
 * the listener until the next accept: better than spinning. */
static void reject_connection(dr_http_server *s)
{
    rejected *r = malloc(sizeof *r);
    if (!r || uv_tcp_init(s->loop, &r->tcp) < 0) {
        free(r);
        return;
    }
    r->srv = s;
    r->tcp.data = r;
    s->live++;
    uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&r->tcp);
    uv_close((uv_handle_t *)&r->tcp, on_rejected_closed);
}

static conn *conn_new(dr_http_server *s)
{
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (uv_tcp_init(s->loop, &c->tcp) < 0) {
        free(c);
        return NULL;
    }
    uv_timer_init(s->loop, &c->timer);
    c->srv = s;
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    c->state = CONN_READING;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    s->live++;
    return c;
}

static void on_connection(uv_stream_t *listener, int status)
{
    dr_http_server *s = listener->data;
    if (status < 0 || s->closing)
        return;
    conn *c = s->nconns < HTTP_MAX_CONNS ? conn_new(s) : NULL;
    if (!c) {
        reject_connection(s);
        return;
    }
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    restart_timer(c, HTTP_IDLE_MS);
    start_reading(c);
}

/* ---- starting and stopping ----------------------------------------------------- */

/* "host:port", "[v6]:port" or ":port" (every IPv4 interface). */
static int parse_listen(const char *listen, struct sockaddr_storage *addr, dr_error *err)
{
    char host[INET6_ADDRSTRLEN + 32]; /* room for a zone ("%eth0") */
    const char *hstart = listen, *hend, *port;
    bool v6 = listen[0] == '[';
    if (v6) {
        hstart = listen + 1;
        hend = strchr(hstart, ']');
        if (!hend || hend[1] != ':') {
            dr_error_set(err, "listen \"%s\": expected [address]:port", listen);
            return DR_EINVAL;
        }
        port = hend + 2;
    } else {
        hend = strrchr(listen, ':');
        if (!hend || memchr(listen, ':', (size_t)(hend - listen))) {
            dr_error_set(err, "listen \"%s\": expected host:port (IPv6 addresses in brackets)",
                         listen);
            return DR_EINVAL;
        }
        port = hend + 1;
    }
    size_t hlen = (size_t)(hend - hstart);
    size_t plen = strlen(port);
    if (plen == 0 || plen > 5 || strspn(port, "0123456789") != plen || atoi(port) > 65535) {
        dr_error_set(err, "listen \"%s\": the port must be a number from 0 to 65535", listen);
        return DR_EINVAL;
    }
    if (hlen >= sizeof host) {
        dr_error_set(err, "listen \"%s\": the host is too long", listen);
        return DR_EINVAL;
    }
    memcpy(host, hstart, hlen);
    host[hlen] = '\0';
    int rc;
    if (v6)
        rc = uv_ip6_addr(host, atoi(port), (struct sockaddr_in6 *)addr);
    else if (hlen == 0 || strcmp(host, "localhost") == 0)
        rc = uv_ip4_addr(hlen ? "127.0.0.1" : "0.0.0.0", atoi(port), (struct sockaddr_in *)addr);
    else
        rc = uv_ip4_addr(host, atoi(port), (struct sockaddr_in *)addr);
    if (rc < 0) {
        dr_error_set(err, "listen \"%s\": \"%s\" is not an IP address", listen, host);
        return DR_EINVAL;
    }
    return 0;
}

static int bound_port(const uv_tcp_t *tcp)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

dr_http_server *dr_http_server_start(uv_loop_t *loop, const char *listen, dr_http_handler fn,
                                     void *ctx, dr_error *err)
{
    struct sockaddr_storage addr;
    if (!listen || !fn) {
        dr_error_set(err, "no listen address or handler");
        return NULL;
    }
    if (parse_listen(listen, &addr, err) < 0)
        return NULL;
    dr_http_server *s = calloc(1, sizeof *s);
    if (!s) {
        dr_error_set(err, "out of memory");
        return NULL;
    }
    s->loop = loop;
    s->fn = fn;
    s->ctx = ctx;
    int rc = uv_tcp_init(loop, &s->listener);
    if (rc < 0) {
        dr_error_set(err, "listen \"%s\": %s", listen, uv_strerror(rc));
        free(s);
        return NULL;
    }
    s->listener.data = s;
    s->live = 1;
    rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, HTTP_BACKLOG, on_connection);
    if (rc == 0 && (s->port = bound_port(&s->listener)) < 0)
        rc = UV_EINVAL;
    if (rc < 0) {
        dr_error_set(err, "listen \"%s\": %s", listen, uv_strerror(rc));
        dr_http_server_close(s); /* freed once the loop ran the close */
        return NULL;
    }
    return s;
}

int dr_http_server_port(const dr_http_server *s)
{
    return s->port;
}

void dr_http_server_close(dr_http_server *s)
{
    if (!s || s->closing)
        return;
    s->closing = true;
    while (s->conns)
        conn_close(s->conns);
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
}
