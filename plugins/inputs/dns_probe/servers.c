/* Server addresses and resolv.conf (see servers.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "drover/plugin.h"
#include "servers.h"

static int bad(const char **why, const char *reason)
{
    *why = reason;
    return DR_EINVAL;
}

/* A port after the colon: 1..65535, digits only. */
static int parse_port(const char *s, int *port)
{
    if (*s == '\0' || strlen(s) > 5)
        return DR_EINVAL;
    int v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return DR_EINVAL;
        v = v * 10 + (*s - '0');
    }
    if (v < 1 || v > 65535)
        return DR_EINVAL;
    *port = v;
    return 0;
}

int dns_server_parse(const char *s, dns_server *out, const char **why)
{
    char host[64];
    int port = DNS_DEFAULT_PORT;
    bool v6;
    memset(out, 0, sizeof *out);
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || (size_t)(close - s - 1) >= sizeof host)
            return bad(why, "an IPv6 address in brackets needs its closing ]");
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        if (close[1] == ':') {
            if (parse_port(close + 2, &port) != 0)
                return bad(why, "the port must be a number from 1 to 65535");
        } else if (close[1] != '\0') {
            return bad(why, "expected :PORT after the ]");
        }
        v6 = true;
    } else {
        const char *colon = strchr(s, ':');
        v6 = colon && strchr(colon + 1, ':'); /* two colons: a bare IPv6 address */
        size_t hl = (colon && !v6) ? (size_t)(colon - s) : strlen(s);
        if (hl == 0 || hl >= sizeof host)
            return bad(why, "expected an IP address, host[:port]");
        memcpy(host, s, hl);
        host[hl] = '\0';
        if (colon && !v6 && parse_port(colon + 1, &port) != 0)
            return bad(why, "the port must be a number from 1 to 65535");
    }
    if (v6) {
        if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)&out->addr) != 0)
            return bad(why, "not an IPv6 address (host names are not taken: give an address)");
        snprintf(out->label, sizeof out->label, "[%s]:%d", host, port);
    } else {
        if (uv_ip4_addr(host, port, (struct sockaddr_in *)&out->addr) != 0)
            return bad(why, "not an IPv4 address (host names are not taken: give an address)");
        snprintf(out->label, sizeof out->label, "%s:%d", host, port);
    }
    return 0;
}

/* The next whitespace-separated word of a line, NUL-terminated in place. */
static char *next_word(char **p)
{
    char *s = *p;
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == '\0')
        return NULL;
    char *w = s;
    while (*s && *s != ' ' && *s != '\t')
        s++;
    if (*s)
        *s++ = '\0';
    *p = s;
    return w;
}

int dns_resolv_conf_parse(const char *text, size_t len, dns_server *out, size_t cap, size_t *n,
                          char *why, size_t whylen)
{
    *n = 0;
    size_t lineno = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t ll = eol ? (size_t)(eol - p) : (size_t)(end - p);
        lineno++;
        char line[512];
        size_t keep = ll < sizeof line ? ll : sizeof line - 1; /* no resolver reads more */
        memcpy(line, p, keep);
        line[keep] = '\0';
        p = eol ? eol + 1 : end;
        line[strcspn(line, "#;\r")] = '\0';
        char *cur = line;
        char *key = next_word(&cur);
        if (!key || strcmp(key, "nameserver") != 0)
            continue;
        char *addr = next_word(&cur);
        if (!addr)
            continue; /* the resolver skips it too */
        if (*n >= cap)
            continue;
        const char *reason;
        if (dns_server_parse(addr, &out[*n], &reason) != 0) {
            snprintf(why, whylen, "line %zu: nameserver %s: %s", lineno, addr, reason);
            return DR_EINVAL;
        }
        (*n)++;
    }
    return 0;
}

int dns_resolv_conf_servers(const char *path, dns_server *out, size_t cap, size_t *n, char *why,
                            size_t whylen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
        return DR_EIO;
    }
    char *buf = malloc(DNS_RESOLV_CONF_MAX + 1);
    if (!buf) {
        fclose(f);
        return DR_ENOMEM;
    }
    size_t len = fread(buf, 1, DNS_RESOLV_CONF_MAX + 1, f);
    bool failed = ferror(f) != 0;
    fclose(f);
    int rc;
    if (failed) {
        snprintf(why, whylen, "cannot read %s", path);
        rc = DR_EIO;
    } else if (len > DNS_RESOLV_CONF_MAX) {
        snprintf(why, whylen, "%s is bigger than %d bytes", path, DNS_RESOLV_CONF_MAX);
        rc = DR_EINVAL;
    } else {
        char reason[256];
        rc = dns_resolv_conf_parse(buf, len, out, cap, n, reason, sizeof reason);
        if (rc != 0)
            snprintf(why, whylen, "%s: %s", path, reason);
    }
    free(buf);
    return rc;
}
