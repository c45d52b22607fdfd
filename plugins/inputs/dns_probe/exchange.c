/* One DNS exchange over UDP, with TCP after a truncated answer (see exchange.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "exchange.h"

#define TCP_ANSWER_MAX (2 + 65535)

static void count(dr_counter *c)
{
    if (c)
        dr_counter_add(c, 1);
}

/* A query id nobody off the path can guess. getrandom does not fail on a
 * Linux that boots; should it, the clock keeps ids changing at least. */
static uint16_t random_id(void)
{
    uint16_t id;
    if (getrandom(&id, sizeof id, GRND_NONBLOCK) == (ssize_t)sizeof id)
        return id;
    uint64_t t = uv_hrtime();
    return (uint16_t)(t ^ (t >> 16) ^ (t >> 32));
}

/* ---- the end of an exchange ------------------------------------------------------ */

static void on_closed(uv_handle_t *h)
{
    dns_exchange *x = h->data;
    if (--x->open_handles > 0)
        return;
    free(x->tcp_buf);
    x->tcp_buf = NULL;
    x->tcp_len = 0;
    x->busy = false;
    x->finishing = false;
    dns_outcome o = x->outcome;
    x->done(x, &o);
}

static void close_handle(uv_handle_t *h, bool *open)
{
    if (!*open)
        return;
    *open = false;
    uv_close(h, on_closed);
}

/* Records the outcome (the first one only) and closes every handle; the
 * done callback runs when the last one is closed. */
static void finish(dns_exchange *x, dns_result res, const char *reason)
{
    if (x->finishing)
        return;
    x->finishing = true;
    x->outcome.result = res;
    x->outcome.reason = reason;
    x->outcome.seconds = (double)(uv_hrtime() - x->start_ns) / 1e9;
    close_handle((uv_handle_t *)&x->udp, &x->udp_open);
    close_handle((uv_handle_t *)&x->tcp, &x->tcp_open);
    close_handle((uv_handle_t *)&x->timer, &x->timer_open);
}

void dns_exchange_cancel(dns_exchange *x)
{
    if (x->busy)
        finish(x, DNS_CANCELLED, "cancelled");
}

/* ---- reading a reply --------------------------------------------------------------- */

static void start_tcp(dns_exchange *x);

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

/* A reply from the server, over UDP or TCP. Over UDP anything that is not
 * the answer to this query is ignored; over TCP the connection is ours
 * alone, so the same is an error. */
static void handle_reply(dns_exchange *x, const uint8_t *msg, size_t len, bool over_tcp)
{
    const char *why = NULL;
    dns_header h;
    if (dns_decode_header(msg, len, &h, &why) != 0) {
        finish(x, DNS_MALFORMED, why);
        return;
    }
    if (h.id != x->id) {
        if (over_tcp) {
            finish(x, DNS_MALFORMED, "TCP answer with another query's id");
            return;
        }
        count(x->counters.wrong_id);
        return;
    }
    dns_reply r;
    if (dns_decode_reply(msg, len, &r, &why) != 0) {
        finish(x, DNS_MALFORMED, why);
        return;
    }
    if (!dns_reply_matches(&r, x->id, x->name, x->qtype)) {
        if (over_tcp) {
            finish(x, DNS_MALFORMED, "TCP answer to another question");
            return;
        }
        count(x->counters.wrong_question);
        return;
    }
    if (r.h.tc && !over_tcp && x->tcp_fallback) {
        start_tcp(x);
        return;
    }
    /* a truncated answer taken as it is may have lost its last records */
    if (!r.h.tc && dns_check_records(msg, len, &r, &why) != 0) {
        finish(x, DNS_MALFORMED, why);
        return;
    }
    x->outcome.rcode = r.h.rcode;
    x->outcome.answers = r.h.ancount;
    x->outcome.over_tcp = over_tcp;
    finish(x, DNS_ANSWERED, NULL);
}

/* ---- UDP ----------------------------------------------------------------------------- */

static void udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    dns_exchange *x = h->data;
    *buf = uv_buf_init((char *)x->udp_buf, sizeof x->udp_buf);
}

static void on_udp_read(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *addr, unsigned flags)
{
    dns_exchange *x = h->data;
    if (x->finishing || !x->udp_open)
        return;
    if (nread < 0) {
        finish(x, DNS_NETWORK,
               nread == UV_ECONNREFUSED ? "the server refused the query (port unreachable)"
                                        : "UDP receive failed");
        return;
    }
    if (nread == 0)
        return;
    if (flags & UV_UDP_PARTIAL) {
        finish(x, DNS_MALFORMED, "datagram larger than 4096 bytes");
        return;
    }
    handle_reply(x, (const uint8_t *)buf->base, (size_t)nread, false);
}

static void on_udp_sent(uv_udp_send_t *req, int status)
{
    dns_exchange *x = req->data;
    if (status < 0 && status != UV_ECANCELED && !x->finishing)
        finish(x, DNS_NETWORK, "UDP send failed");
}

/* ---- TCP ----------------------------------------------------------------------------- */

static void tcp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    dns_exchange *x = h->data;
    if (!x->tcp_buf)
        x->tcp_buf = malloc(TCP_ANSWER_MAX);
    if (!x->tcp_buf || x->tcp_len >= TCP_ANSWER_MAX) {
        *buf = uv_buf_init(NULL, 0); /* the read callback gets UV_ENOBUFS */
        return;
    }
    *buf = uv_buf_init((char *)x->tcp_buf + x->tcp_len, (unsigned)(TCP_ANSWER_MAX - x->tcp_len));
}

static void on_tcp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    dns_exchange *x = s->data;
    if (x->finishing)
        return;
    if (nread < 0) {
        finish(x, DNS_NETWORK,
               nread == UV_EOF ? "TCP connection closed before the answer" : "TCP receive failed");
        return;
    }
    x->tcp_len += (size_t)nread;
    if (x->tcp_len < 2)
        return;
    size_t need = get16(x->tcp_buf);
    if (x->tcp_len >= 2 + need)
        handle_reply(x, x->tcp_buf + 2, need, true);
}

static void on_tcp_written(uv_write_t *req, int status)
{
    dns_exchange *x = req->data;
    if (status < 0 && status != UV_ECANCELED && !x->finishing)
        finish(x, DNS_NETWORK, "TCP send failed");
}

static void on_tcp_connected(uv_connect_t *req, int status)
{
    dns_exchange *x = req->data;
    if (x->finishing)
        return;
    if (status < 0) {
        finish(x, DNS_NETWORK, "TCP connect failed");
        return;
    }
    /* RFC 1035 4.2.2: the message behind a two-byte length */
    x->query[0] = (uint8_t)(x->query_len >> 8);
    x->query[1] = (uint8_t)x->query_len;
    uv_buf_t b = uv_buf_init((char *)x->query, (unsigned)(x->query_len + 2));
    x->write.data = x;
    if (uv_write(&x->write, (uv_stream_t *)&x->tcp, &b, 1, on_tcp_written) != 0 ||
        uv_read_start((uv_stream_t *)&x->tcp, tcp_alloc, on_tcp_read) != 0)
        finish(x, DNS_NETWORK, "TCP send failed");
}

/* The answer was truncated: the same query over TCP, within what is left
 * of the timeout. */
static void start_tcp(dns_exchange *x)
{
    close_handle((uv_handle_t *)&x->udp, &x->udp_open);
    if (uv_tcp_init(x->loop, &x->tcp) != 0) {
        finish(x, DNS_NETWORK, "cannot open a TCP socket");
        return;
    }
    x->tcp.data = x;
    x->tcp_open = true;
    x->open_handles++;
    x->connect.data = x;
    if (uv_tcp_connect(&x->connect, &x->tcp, x->server, on_tcp_connected) != 0)
        finish(x, DNS_NETWORK, "TCP connect failed");
}

/* ---- the start ----------------------------------------------------------------------- */

static void on_timeout(uv_timer_t *t)
{
    finish(t->data, DNS_TIMEOUT, "no answer in time");
}

int dns_exchange_start(dns_exchange *x)
{
    if (x->busy)
        return DR_EAGAIN;
    const char *why;
    x->id = random_id();
    if (dns_encode_query(x->id, x->name, x->qtype, x->query + 2, sizeof x->query - 2, &x->query_len,
                         &why) != 0)
        return DR_EINVAL;
    memset(&x->outcome, 0, sizeof x->outcome);
    x->busy = true;
    x->finishing = false;
    x->open_handles = 0;
    x->start_ns = uv_hrtime();

    uv_timer_init(x->loop, &x->timer);
    x->timer.data = x;
    x->timer_open = true;
    x->open_handles++;
    uv_timer_start(&x->timer, on_timeout, (uint64_t)x->timeout_ms, 0);

    if (uv_udp_init(x->loop, &x->udp) != 0) {
        finish(x, DNS_NETWORK, "cannot open a UDP socket");
        return 0;
    }
    x->udp.data = x;
    x->udp_open = true;
    x->open_handles++;
    if (uv_udp_connect(&x->udp, x->server) != 0) {
        finish(x, DNS_NETWORK, "cannot reach the server");
        return 0;
    }
    if (uv_udp_recv_start(&x->udp, udp_alloc, on_udp_read) != 0) {
        finish(x, DNS_NETWORK, "UDP receive failed");
        return 0;
    }
    uv_buf_t b = uv_buf_init((char *)x->query + 2, (unsigned)x->query_len);
    x->send.data = x;
    if (uv_udp_send(&x->send, &x->udp, &b, 1, NULL, on_udp_sent) != 0)
        finish(x, DNS_NETWORK, "UDP send failed");
    return 0;
}
