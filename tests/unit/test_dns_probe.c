/*
 * Tests of the dns_probe input's pieces: the DNS message encoder and the
 * bounds-checked reader (compression pointers, loops, truncated and random
 * packets), server addresses and resolv.conf, and the input's
 * configuration errors as the agent reports them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../../plugins/inputs/dns_probe/dns_msg.h"
#include "../../plugins/inputs/dns_probe/servers.h"
#include "agent.h"
#include "config.h"
#include "metrics.h"
#include "test.h"

/* ---- messages ------------------------------------------------------------------------ */

void test_dns_encode_query(void)
{
    uint8_t q[DNS_QUERY_MAX];
    size_t len = 0;
    const char *why = NULL;
    CHECK_INT(dns_encode_query(0xABCD, "www.example.com", 28, q, sizeof q, &len, &why), 0);
    static const uint8_t want[] = {0xAB, 0xCD, 0x01, 0x00, 0,   1,   0,   0,   0,   0,   0,
                                   0,    3,    'w',  'w',  'w', 7,   'e', 'x', 'a', 'm', 'p',
                                   'l',  'e',  3,    'c',  'o', 'm', 0,   0,   28,  0,   1};
    CHECK_MEM(q, len, want, sizeof want);

    /* the root: one zero byte */
    CHECK_INT(dns_encode_query(1, ".", 2, q, sizeof q, &len, &why), 0);
    CHECK_INT(len, DNS_HEADER_LEN + 1 + 4);
    CHECK_INT(q[DNS_HEADER_LEN], 0);
    /* too small a buffer is an error, not an overflow */
    CHECK_INT(dns_encode_query(1, "www.example.com", 1, q, 20, &len, &why), DR_EINVAL);
}

void test_dns_name_normalize(void)
{
    char out[DNS_NAME_TEXT_MAX];
    const char *why = NULL;
    CHECK_INT(dns_name_normalize("Kubernetes.Default.SVC.cluster.local.", out, sizeof out, &why),
              0);
    CHECK_STR(out, "kubernetes.default.svc.cluster.local");
    CHECK_INT(dns_name_normalize(".", out, sizeof out, &why), 0);
    CHECK_STR(out, ".");
    CHECK_INT(dns_name_normalize("", out, sizeof out, &why), DR_EINVAL);
    CHECK_INT(dns_name_normalize("a..b", out, sizeof out, &why), DR_EINVAL);
    CHECK_STR(why, "empty label");
    CHECK_INT(dns_name_normalize(".a", out, sizeof out, &why), DR_EINVAL);
    CHECK_INT(dns_name_normalize("a b", out, sizeof out, &why), DR_EINVAL);
    CHECK_INT(dns_name_normalize("a\\046b", out, sizeof out, &why), DR_EINVAL);

    char label[80];
    memset(label, 'x', 63);
    label[63] = '\0';
    CHECK_INT(dns_name_normalize(label, out, sizeof out, &why), 0);
    memset(label, 'x', 64);
    label[64] = '\0';
    CHECK_INT(dns_name_normalize(label, out, sizeof out, &why), DR_EINVAL);
    CHECK_STR(why, "label longer than 63 bytes");

    /* 253 text bytes are 255 on the wire: the longest name; one more is too long */
    char name[300];
    for (size_t i = 0; i < 253; i++)
        name[i] = (i % 50 == 49) ? '.' : 'a';
    name[253] = '\0';
    CHECK_INT(dns_name_normalize(name, out, sizeof out, &why), 0);
    uint8_t q[DNS_QUERY_MAX];
    size_t len;
    CHECK_INT(dns_encode_query(7, out, 1, q, sizeof q, &len, &why), 0);
    CHECK_INT(len, DNS_HEADER_LEN + 255 + 4);
    name[253] = 'a';
    name[254] = '\0';
    CHECK_INT(dns_name_normalize(name, out, sizeof out, &why), DR_EINVAL);
}

void test_dns_types_and_rcodes(void)
{
    uint16_t t = 0;
    char buf[16];
    CHECK_INT(dns_type_parse("aaaa", &t), 0);
    CHECK_INT(t, 28);
    CHECK_INT(dns_type_parse("SRV", &t), 0);
    CHECK_INT(t, 33);
    CHECK_INT(dns_type_parse("TYPE65534", &t), 0);
    CHECK_INT(t, 65534);
    CHECK_INT(dns_type_parse("TYPE65536", &t), DR_EINVAL);
    CHECK_INT(dns_type_parse("TYPE", &t), DR_EINVAL);
    CHECK_INT(dns_type_parse("AXFRX", &t), DR_EINVAL);
    CHECK_STR(dns_type_name(1, buf, sizeof buf), "A");
    CHECK_STR(dns_type_name(999, buf, sizeof buf), "TYPE999");
    CHECK_STR(dns_rcode_name(0), "NOERROR");
    CHECK_STR(dns_rcode_name(2), "SERVFAIL");
    CHECK_STR(dns_rcode_name(3), "NXDOMAIN");
    CHECK_STR(dns_rcode_name(5), "REFUSED");
    CHECK_STR(dns_rcode_name(15), "RCODE15");
}

/* A reply to "web.apps.svc.cluster.local A" (id 0x4242, NOERROR) with two
 * A records, the first named by a pointer to the question, the second by
 * "web2" and a pointer into the middle of the question's name. */
static size_t build_reply(uint8_t *m)
{
    static const uint8_t head[] = {0x42, 0x42, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0};
    size_t o = 0;
    memcpy(m, head, sizeof head);
    o += sizeof head;
    static const uint8_t qname[] = {3,   'W', 'e', 'b', 4,   'a', 'p', 'p', 's', 3,   's',
                                    'v', 'c', 7,   'c', 'l', 'u', 's', 't', 'e', 'r', 5,
                                    'l', 'o', 'c', 'a', 'l', 0,   0,   1,   0,   1};
    memcpy(m + o, qname, sizeof qname);
    o += sizeof qname;
    static const uint8_t rr1[] = {0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 96, 5, 1};
    memcpy(m + o, rr1, sizeof rr1);
    o += sizeof rr1;
    /* "web2" then a pointer to "apps..." at offset 16 */
    static const uint8_t rr2[] = {4, 'w', 'e', 'b', '2', 0xC0, 16, 0,  1, 0, 1,
                                  0, 0,   0,   30,  0,   4,    10, 96, 5, 2};
    memcpy(m + o, rr2, sizeof rr2);
    o += sizeof rr2;
    return o;
}

void test_dns_decode_reply(void)
{
    uint8_t m[512];
    size_t len = build_reply(m);
    dns_reply r;
    const char *why = NULL;
    CHECK_INT(dns_decode_reply(m, len, &r, &why), 0);
    CHECK_INT(r.h.id, 0x4242);
    CHECK(r.h.qr);
    CHECK(!r.h.tc);
    CHECK_INT(r.h.rcode, 0);
    CHECK_INT(r.h.ancount, 2);
    CHECK_STR(r.qname, "web.apps.svc.cluster.local"); /* folded to lower case */
    CHECK_INT(dns_check_records(m, len, &r, &why), 0);
    CHECK(dns_reply_matches(&r, 0x4242, "web.apps.svc.cluster.local", 1));
    CHECK(!dns_reply_matches(&r, 0x4243, "web.apps.svc.cluster.local", 1));
    CHECK(!dns_reply_matches(&r, 0x4242, "web.apps.svc.cluster.loca", 1));
    CHECK(!dns_reply_matches(&r, 0x4242, "web.apps.svc.cluster.local", 28));

    /* the second record's name, read through its pointer */
    size_t off = r.records_at + 16;
    char name[DNS_NAME_TEXT_MAX];
    CHECK_INT(dns_read_name(m, len, &off, name, sizeof name, false, &why), 0);
    CHECK_STR(name, "web2.apps.svc.cluster.local");
    CHECK_INT(off, r.records_at + 16 + 7); /* past the label and the pointer only */

    /* a query (QR clear) with our id is no answer */
    m[2] &= 0x7F;
    CHECK_INT(dns_decode_reply(m, len, &r, &why), 0);
    CHECK(!dns_reply_matches(&r, 0x4242, "web.apps.svc.cluster.local", 1));
    m[2] |= 0x80;

    /* TC and the rcode bits */
    m[2] |= 0x02;
    m[3] = (m[3] & 0xF0) | 3;
    CHECK_INT(dns_decode_reply(m, len, &r, &why), 0);
    CHECK(r.h.tc);
    CHECK_INT(r.h.rcode, 3);
}

void test_dns_truncated_replies(void)
{
    uint8_t m[512];
    size_t len = build_reply(m);
    /* every prefix of a valid reply fails cleanly, at the header, the
     * question or a record */
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exactly cut bytes, so ASan sees overreads */
        memcpy(copy, m, cut);
        dns_reply r;
        const char *why = NULL;
        int rc = dns_decode_reply(copy, cut, &r, &why);
        if (rc == 0)
            rc = dns_check_records(copy, cut, &r, &why);
        CHECK_INT(rc, DR_EINVAL);
        CHECK(why != NULL);
        free(copy);
    }
    dns_header h;
    const char *why = NULL;
    CHECK_INT(dns_decode_header(m, 11, &h, &why), DR_EINVAL);
    CHECK_STR(why, "shorter than a DNS header");
}

void test_dns_compression_loops(void)
{
    char name[DNS_NAME_TEXT_MAX];
    const char *why = NULL;
    size_t off;
    /* a pointer to itself */
    uint8_t self[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xC0, 12};
    off = 12;
    CHECK_INT(dns_read_name(self, sizeof self, &off, name, sizeof name, false, &why), DR_EINVAL);
    CHECK_STR(why, "compression pointer does not point backwards");
    /* a forward pointer */
    uint8_t fwd[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xC0, 14, 1, 'a', 0};
    off = 12;
    CHECK_INT(dns_read_name(fwd, sizeof fwd, &off, name, sizeof name, false, &why), DR_EINVAL);
    /* a loop through a label: "a" then a pointer back to the "a" */
    uint8_t loop[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'a', 0xC0, 12};
    off = 12;
    CHECK_INT(dns_read_name(loop, sizeof loop, &off, name, sizeof name, false, &why), DR_EINVAL);
    CHECK_STR(why, "too many compression pointers");
    /* the same loop through long labels ends at the length bound first */
    uint8_t longloop[12 + 1 + 60 + 2];
    memset(longloop, 0, sizeof longloop);
    longloop[12] = 60;
    memset(longloop + 13, 'b', 60);
    longloop[73] = 0xC0;
    longloop[74] = 12;
    off = 12;
    CHECK_INT(dns_read_name(longloop, sizeof longloop, &off, name, sizeof name, false, &why),
              DR_EINVAL);
    CHECK_STR(why, "name longer than 255 bytes");
    /* a long chain of pointers, each to the one before */
    uint8_t chain[12 + 1 + 2 * 100];
    memset(chain, 0, sizeof chain);
    chain[12] = 0; /* the root at 12 */
    for (int i = 0; i < 100; i++) {
        size_t at = 13 + 2 * (size_t)i;
        size_t target = i == 0 ? 12 : at - 2;
        chain[at] = (uint8_t)(0xC0 | (target >> 8));
        chain[at + 1] = (uint8_t)target;
    }
    off = 13 + 2 * 10;
    CHECK_INT(dns_read_name(chain, sizeof chain, &off, name, sizeof name, false, &why), 0);
    CHECK_STR(name, ".");
    off = 13 + 2 * 99;
    CHECK_INT(dns_read_name(chain, sizeof chain, &off, name, sizeof name, false, &why), DR_EINVAL);
    CHECK_STR(why, "too many compression pointers");
    /* a pointer cut after its first byte, a label past the end, a reserved type */
    uint8_t cut[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xC0};
    off = 12;
    CHECK_INT(dns_read_name(cut, sizeof cut, &off, name, sizeof name, false, &why), DR_EINVAL);
    uint8_t past[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 'a', 'b'};
    off = 12;
    CHECK_INT(dns_read_name(past, sizeof past, &off, name, sizeof name, false, &why), DR_EINVAL);
    uint8_t reserved[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x41, 'a', 0};
    off = 12;
    CHECK_INT(dns_read_name(reserved, sizeof reserved, &off, name, sizeof name, false, &why),
              DR_EINVAL);
    CHECK_STR(why, "reserved label type");
    /* bytes that are not plain come out escaped, and never match a configured name */
    uint8_t odd[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 'a', '.', 0x01, 0};
    off = 12;
    CHECK_INT(dns_read_name(odd, sizeof odd, &off, name, sizeof name, false, &why), 0);
    CHECK_STR(name, "a\\046\\001");
}

void test_dns_garbage(void)
{
    /* random packets, and valid replies with random bytes changed: every
     * outcome is 0 or DR_EINVAL, within the buffer (ASan watches) */
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    uint8_t base[512];
    size_t blen = build_reply(base);
    int ok = 0, bad = 0;
    for (int i = 0; i < 20000; i++) {
        size_t len;
        uint8_t *m;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        if (i % 2 == 0) {
            len = (size_t)(seed % 300);
            m = malloc(len ? len : 1);
            uint64_t s = seed;
            for (size_t k = 0; k < len; k++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                m[k] = (uint8_t)(s >> 56);
            }
        } else {
            len = blen;
            m = malloc(len);
            memcpy(m, base, len);
            for (int k = 0; k < 3; k++)
                m[(seed >> (k * 16)) % len] = (uint8_t)(seed >> (k * 8 + 3));
        }
        dns_reply r;
        const char *why = NULL;
        int rc = dns_decode_reply(m, len, &r, &why);
        if (rc == 0)
            rc = dns_check_records(m, len, &r, &why);
        CHECK(rc == 0 || rc == DR_EINVAL);
        if (rc == 0)
            ok++;
        else
            bad++;
        free(m);
    }
    CHECK(ok > 0);
    CHECK(bad > 0);
}

/* ---- servers and resolv.conf --------------------------------------------------------------- */

void test_dns_server_parse(void)
{
    dns_server s;
    const char *why = NULL;
    CHECK_INT(dns_server_parse("10.96.0.10", &s, &why), 0);
    CHECK_STR(s.label, "10.96.0.10:53");
    CHECK_INT(dns_server_parse("127.0.0.1:5353", &s, &why), 0);
    CHECK_STR(s.label, "127.0.0.1:5353");
    CHECK_INT(dns_server_parse("fd00::a", &s, &why), 0);
    CHECK_STR(s.label, "[fd00::a]:53");
    CHECK_INT(s.addr.ss_family, AF_INET6);
    CHECK_INT(dns_server_parse("[::1]:1053", &s, &why), 0);
    CHECK_STR(s.label, "[::1]:1053");
    CHECK_INT(dns_server_parse("[::1]", &s, &why), 0);
    CHECK_STR(s.label, "[::1]:53");
    const char *bad[] = {"",           "kube-dns.kube-system",
                         "10.0.0.1:0", "10.0.0.1:65536",
                         "10.0.0.1:x", "[::1",
                         "[::1]x",     "[::1]:",
                         "1.2.3",      "10.0.0.1:53:53x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        if (!CHECK_INT(dns_server_parse(bad[i], &s, &why), DR_EINVAL))
            fprintf(stderr, "  accepted: %s\n", bad[i]);
        CHECK(why != NULL);
    }
}

void test_dns_resolv_conf(void)
{
    dns_server s[DNS_MAX_SERVERS];
    size_t n = 0;
    char why[256] = "";
    const char *text = "# generated by the kubelet\n"
                       "search default.svc.cluster.local svc.cluster.local cluster.local\n"
                       "nameserver 10.96.0.10 ; the cluster DNS\n"
                       "nameserver\tfd00::10\r\n"
                       "nameserver\n"
                       "options ndots:5\n"
                       "  nameserver 10.96.0.11";
    CHECK_INT(dns_resolv_conf_parse(text, strlen(text), s, DNS_MAX_SERVERS, &n, why, sizeof why),
              0);
    CHECK_INT(n, 3);
    CHECK_STR(s[0].label, "10.96.0.10:53");
    CHECK_STR(s[1].label, "[fd00::10]:53");
    CHECK_STR(s[2].label, "10.96.0.11:53");

    /* more than fit are ignored, as the resolver ignores them */
    CHECK_INT(dns_resolv_conf_parse(text, strlen(text), s, 2, &n, why, sizeof why), 0);
    CHECK_INT(n, 2);

    const char *bad = "nameserver 10.0.0.1\nnameserver dns.example\n";
    CHECK_INT(dns_resolv_conf_parse(bad, strlen(bad), s, DNS_MAX_SERVERS, &n, why, sizeof why),
              DR_EINVAL);
    CHECK(strstr(why, "line 2: nameserver dns.example") != NULL);

    /* a file: missing, and present */
    CHECK_INT(dns_resolv_conf_servers("/nonexistent/resolv.conf", s, DNS_MAX_SERVERS, &n, why,
                                      sizeof why),
              DR_EIO);
    CHECK(strstr(why, "/nonexistent/resolv.conf") != NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/resolv.conf", dt_tmpdir());
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs("nameserver 127.0.0.53\n", f);
    fclose(f);
    CHECK_INT(dns_resolv_conf_servers(path, s, DNS_MAX_SERVERS, &n, why, sizeof why), 0);
    CHECK_INT(n, 1);
    CHECK_STR(s[0].label, "127.0.0.53:53");
}

/* ---- configuration ------------------------------------------------------------------------ */

/* The errors of a configuration with one dns_probe input (the options
 * given in `opts`), joined; "" when it was accepted. */
static const char *probe_config_errors(const char *opts)
{
    char pipeline[2048];
    snprintf(pipeline, sizeof pipeline,
             "inputs:\n  - {name: dns, type: dns_probe, %s}\n"
             "outputs:\n  - {name: out, type: null, match: dns}\n",
             opts);
    return dt_config_errors(NULL, pipeline);
}

static void check_refused(const char *opts, const char *want)
{
    const char *got = probe_config_errors(opts);
    if (!CHECK(strstr(got, want) != NULL))
        fprintf(stderr, "  options: %s\n  want: %s\n  got: %s\n", opts, want, got);
}

void test_dns_probe_config_errors(void)
{
    CHECK_STR(probe_config_errors("names: [kubernetes.default.svc.cluster.local, \"example.com "
                                  "AAAA\", \"x.example TYPE99\"], servers: [\"10.0.0.1\", "
                                  "\"[fd00::1]:53\"]"),
              "");
    CHECK_STR(probe_config_errors("names: [a.example], interval: 5s, timeout: 1s"), "");
    check_refused("servers: [10.0.0.1]", "names");
    check_refused("names: []", "names: at least one name is needed");
    check_refused("names: [a.example], interval: 1s, timeout: 1s",
                  "timeout: 1000ms must be shorter than interval (1000ms)");
    check_refused("names: [\"a..example\"]", "names[0]: \"a..example\": empty label");
    check_refused("names: [a.example, \"b.example MX\", \"c.example XX\"]",
                  "names[2]: unknown query type \"XX\"");
    check_refused("names: [\"a.example A extra\"]", "names[0]: expected \"NAME\" or \"NAME TYPE\"");
    check_refused("names: [a.example, \"A.example. A\"]",
                  "names[1]: \"A.example. A\" is listed twice");
    check_refused("names: [a.example], servers: [dns.example]",
                  "servers[0]: \"dns.example\": not an IPv4 address");
    check_refused("names: [a.example], servers: [\"10.0.0.1\", \"10.0.0.1:53\"]",
                  "servers[1]: 10.0.0.1:53 is listed twice");
    check_refused("names: [a.example], servers: [1.0.0.1, 1.0.0.2, 1.0.0.3, 1.0.0.4, 1.0.0.5, "
                  "1.0.0.6, 1.0.0.7, 1.0.0.8, 1.0.0.9, 1.0.0.10, 1.0.0.11, 1.0.0.12, 1.0.0.13, "
                  "1.0.0.14, 1.0.0.15, 1.0.0.16, 1.0.0.17]",
                  "servers: at most 16 servers, got 17");
    check_refused("names: [a.example], timeout: 5ms", "timeout");
    check_refused("names: [a.example], tcp_fallback: maybe", "tcp_fallback");
}
