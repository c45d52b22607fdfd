/*
 * The DNS servers a dns_probe input asks: addresses written host[:port]
 * (IP literals only: a probe of the DNS must not depend on the DNS) or the
 * nameserver lines of a resolv.conf, as the node's own resolver reads them.
 */
#ifndef DROVER_DNS_SERVERS_H
#define DROVER_DNS_SERVERS_H

#include <stddef.h>
#include <sys/socket.h>

#define DNS_DEFAULT_PORT 53
/* Servers one input asks at most (glibc reads 3 from resolv.conf). */
#define DNS_MAX_SERVERS 16
/* Longest resolv.conf read; a bigger file is refused. */
#define DNS_RESOLV_CONF_MAX (64 * 1024)

typedef struct dns_server {
    char label[64]; /* "10.96.0.10:53", "[fd00::a]:53": the server label of the samples */
    struct sockaddr_storage addr;
} dns_server;

/* Parses "10.0.0.1", "10.0.0.1:5353", "fd00::1", "[fd00::1]" or
 * "[fd00::1]:5353". 0, or DR_EINVAL with a reason in *why. */
int dns_server_parse(const char *s, dns_server *out, const char **why);

/* Reads the nameserver lines of a resolv.conf (text, "nameserver ADDR",
 * comments after # or ;) into out (at most cap; the rest are ignored, as
 * the resolver ignores them). *n receives the count. DR_EIO when the file
 * cannot be read, DR_EINVAL when it is too big or an address does not
 * parse; the reason goes into why (cap whylen). */
int dns_resolv_conf_servers(const char *path, dns_server *out, size_t cap, size_t *n, char *why,
                            size_t whylen);

/* The same from text already in memory. */
int dns_resolv_conf_parse(const char *text, size_t len, dns_server *out, size_t cap, size_t *n,
                          char *why, size_t whylen);

#endif
