/*
 * One DNS exchange on the loop: a query over UDP to one server, answered,
 * timed out or failed, and asked again over TCP when the answer comes back
 * truncated (TC bit, RFC 1035 4.2.1 and RFC 7766).
 *
 * Every query has a fresh random id. A datagram whose id or question is not
 * the query's is ignored (counted) and the exchange keeps waiting, so a
 * late answer to an earlier query, or a spoofed one, is never taken for the
 * current one. The whole exchange, UDP and TCP, is bounded by one timeout.
 *
 * Handles are made for each query and closed at its end; the outcome is
 * reported once every handle is closed, so the exchange may start the next
 * query from its callback. Memory: the exchange itself (its owner's), plus
 * a buffer for a TCP answer (at most 65537 bytes) while one is read.
 */
#ifndef DROVER_DNS_EXCHANGE_H
#define DROVER_DNS_EXCHANGE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "dns_msg.h"
#include "drover/plugin.h"

typedef enum {
    DNS_ANSWERED = 0,  /* a matching, well-formed reply: rcode and answers are set */
    DNS_TIMEOUT = 1,   /* nothing matching came back in time */
    DNS_MALFORMED = 2, /* the reply (with our id, or too short to have one) did not parse */
    DNS_NETWORK = 3,   /* the query could not be sent, or the server refused it */
    DNS_CANCELLED = 4, /* dns_exchange_cancel */
} dns_result;

typedef struct dns_outcome {
    dns_result result;
    uint8_t rcode;
    uint16_t answers;
    bool over_tcp;      /* the answer came over TCP after a truncated one */
    double seconds;     /* from the send to the outcome */
    const char *reason; /* for malformed and network outcomes: a short static text */
} dns_outcome;

typedef struct dns_exchange dns_exchange;
typedef void (*dns_done_fn)(dns_exchange *x, const dns_outcome *o);

/* What is ignored while waiting, counted by the owner's self-metrics. */
typedef struct dns_exchange_counters {
    dr_counter *wrong_id, *wrong_question;
} dns_exchange_counters;

struct dns_exchange {
    /* set by the owner before dns_exchange_start */
    uv_loop_t *loop;
    const struct sockaddr *server;
    const char *name; /* normalized (dns_name_normalize) */
    uint16_t qtype;
    int64_t timeout_ms;
    bool tcp_fallback;
    dns_done_fn done;
    void *ctx;
    dns_exchange_counters counters;

    /* the exchange's own */
    bool busy, finishing;
    int open_handles;
    dns_outcome outcome;
    uint16_t id;
    uint64_t start_ns;
    uint8_t query[2 + DNS_QUERY_MAX]; /* the TCP length prefix, then the query */
    size_t query_len;
    uv_udp_t udp;
    uv_udp_send_t send;
    uv_timer_t timer;
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    bool udp_open, timer_open, tcp_open;
    uint8_t udp_buf[4096]; /* without EDNS an answer is at most 512 bytes */
    uint8_t *tcp_buf;      /* malloc'd while reading over TCP */
    size_t tcp_len;
};

/* Sends the query. The done callback runs exactly once afterwards, never
 * from inside this call. DR_EAGAIN while an exchange is under way. */
int dns_exchange_start(dns_exchange *x);
/* Ends an exchange under way: done is called with DNS_CANCELLED once its
 * handles are closed. Nothing happens when none is. */
void dns_exchange_cancel(dns_exchange *x);

#endif
