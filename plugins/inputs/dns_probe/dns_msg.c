/* DNS messages: the query and the bounds-checked reading of replies (see dns_msg.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dns_msg.h"
#include "drover/plugin.h"

static int fail(const char **why, const char *reason)
{
    if (why)
        *why = reason;
    return DR_EINVAL;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* ---- types and response codes ------------------------------------------------- */

typedef struct type_entry {
    const char *name;
    uint16_t value;
} type_entry;

static const type_entry types[] = {
    {"A", 1},     {"NS", 2},     {"CNAME", 5}, {"SOA", 6},    {"PTR", 12}, {"MX", 15},
    {"TXT", 16},  {"AAAA", 28},  {"SRV", 33},  {"NAPTR", 35}, {"DS", 43},  {"DNSKEY", 48},
    {"SVCB", 64}, {"HTTPS", 65}, {"ANY", 255}, {"CAA", 257},
};

int dns_type_parse(const char *s, uint16_t *type)
{
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcasecmp(s, types[i].name) == 0) {
            *type = types[i].value;
            return 0;
        }
    if (strncasecmp(s, "TYPE", 4) == 0 && s[4] >= '0' && s[4] <= '9') {
        char *end;
        unsigned long v = strtoul(s + 4, &end, 10);
        if (*end == '\0' && v <= 65535) {
            *type = (uint16_t)v;
            return 0;
        }
    }
    return DR_EINVAL;
}

const char *dns_type_name(uint16_t type, char *buf, size_t cap)
{
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (types[i].value == type)
            return types[i].name;
    snprintf(buf, cap, "TYPE%u", (unsigned)type);
    return buf;
}

const char *dns_rcode_name(unsigned rcode)
{
    static const char *const names[16] = {
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",  "NOTIMP",  "REFUSED", "YXDOMAIN", "YXRRSET",
        "NXRRSET", "NOTAUTH", "NOTZONE",  "DSOTYPENI", "RCODE12", "RCODE13", "RCODE14",  "RCODE15",
    };
    return names[rcode & 15];
}

/* ---- names --------------------------------------------------------------------- */

/* Bytes a configured name may hold: printable ASCII but the backslash
 * (escapes are not read) and the dot (the label separator). */
static bool plain_name_byte(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '\\' && c != '.';
}

int dns_name_normalize(const char *name, char *out, size_t cap, const char **why)
{
    size_t n = strlen(name);
    if (n == 0)
        return fail(why, "empty name");
    if (strcmp(name, ".") == 0) {
        if (cap < 2)
            return fail(why, "name too long");
        memcpy(out, ".", 2);
        return 0;
    }
    if (name[n - 1] == '.')
        n--;
    /* on the wire each dot becomes the next label's length byte, plus the
     * first length byte and the final zero */
    if (n + 2 > DNS_NAME_WIRE_MAX || n + 1 > cap)
        return fail(why, "name longer than 255 bytes");
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '.') {
            if (label == 0)
                return fail(why, "empty label");
            label = 0;
        } else if (!plain_name_byte(c)) {
            return fail(why, "a name may hold printable ASCII only, without backslashes");
        } else if (++label > DNS_LABEL_MAX) {
            return fail(why, "label longer than 63 bytes");
        }
        out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : (char)c;
    }
    if (label == 0)
        return fail(why, "empty label");
    out[n] = '\0';
    return 0;
}

/* Writes a normalized name as labels; returns the bytes written or 0 when
 * it does not fit. */
static size_t write_name(const char *name, uint8_t *out, size_t cap)
{
    size_t o = 0;
    if (strcmp(name, ".") != 0) {
        const char *p = name;
        while (*p) {
            const char *dot = strchr(p, '.');
            size_t l = dot ? (size_t)(dot - p) : strlen(p);
            if (l == 0 || l > DNS_LABEL_MAX || o + 1 + l >= cap)
                return 0;
            out[o++] = (uint8_t)l;
            memcpy(out + o, p, l);
            o += l;
            p += l + (dot ? 1 : 0);
        }
    }
    if (o + 1 > cap || o + 1 > DNS_NAME_WIRE_MAX)
        return 0;
    out[o++] = 0;
    return o;
}

int dns_encode_query(uint16_t id, const char *name, uint16_t qtype, uint8_t *out, size_t cap,
                     size_t *len, const char **why)
{
    if (cap < DNS_HEADER_LEN + 5)
        return fail(why, "buffer too small");
    memset(out, 0, DNS_HEADER_LEN);
    put16(out, id);
    out[2] = 0x01; /* QR=0, opcode QUERY, RD=1 */
    put16(out + 4, 1);
    size_t n = write_name(name, out + DNS_HEADER_LEN, cap - DNS_HEADER_LEN - 4);
    if (n == 0)
        return fail(why, "name does not fit a query");
    size_t o = DNS_HEADER_LEN + n;
    put16(out + o, qtype);
    put16(out + o + 2, DNS_CLASS_IN);
    *len = o + 4;
    return 0;
}

/* Appends one byte of a label as text: plain bytes as they are, others as
 * \DDD (RFC 1035 5.1). False when out is full. */
static bool put_text_byte(char *out, size_t cap, size_t *o, unsigned char c, bool fold)
{
    if (plain_name_byte(c)) {
        if (*o + 1 >= cap)
            return false;
        out[(*o)++] = (fold && c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : (char)c;
        return true;
    }
    if (*o + 4 >= cap)
        return false;
    snprintf(out + *o, 5, "\\%03u", (unsigned)c);
    *o += 4;
    return true;
}

int dns_read_name(const uint8_t *msg, size_t len, size_t *off, char *out, size_t cap, bool fold,
                  const char **why)
{
    size_t pos = *off, next = 0, o = 0, wire = 0;
    bool jumped = false;
    unsigned pointers = 0;
    if (cap < 2)
        return fail(why, "name buffer too small");
    for (;;) {
        if (pos >= len)
            return fail(why, "name runs past the end of the message");
        uint8_t b = msg[pos];
        if ((b & 0xC0) == 0xC0) {
            if (pos + 1 >= len)
                return fail(why, "compression pointer cut short");
            size_t target = ((size_t)(b & 0x3F) << 8) | msg[pos + 1];
            if (!jumped)
                next = pos + 2;
            jumped = true;
            if (target >= pos)
                return fail(why, "compression pointer does not point backwards");
            if (++pointers > DNS_MAX_POINTERS)
                return fail(why, "too many compression pointers");
            pos = target;
            continue;
        }
        if (b & 0xC0)
            return fail(why, "reserved label type");
        if (b == 0) {
            if (!jumped)
                next = pos + 1;
            break;
        }
        if (pos + 1 + b > len)
            return fail(why, "label runs past the end of the message");
        wire += 1u + b;
        if (wire + 1 > DNS_NAME_WIRE_MAX)
            return fail(why, "name longer than 255 bytes");
        if (o > 0) {
            if (o + 1 >= cap)
                return fail(why, "name buffer too small");
            out[o++] = '.';
        }
        for (size_t i = 0; i < b; i++)
            if (!put_text_byte(out, cap, &o, msg[pos + 1 + i], fold))
                return fail(why, "name buffer too small");
        pos += 1u + b;
    }
    if (o == 0)
        out[o++] = '.';
    out[o] = '\0';
    *off = next;
    return 0;
}

/* ---- replies ----------------------------------------------------------------- */

int dns_decode_header(const uint8_t *msg, size_t len, dns_header *h, const char **why)
{
    if (len < DNS_HEADER_LEN)
        return fail(why, "shorter than a DNS header");
    h->id = get16(msg);
    h->qr = (msg[2] & 0x80) != 0;
    h->opcode = (uint8_t)((msg[2] >> 3) & 0x0F);
    h->tc = (msg[2] & 0x02) != 0;
    h->rcode = (uint8_t)(msg[3] & 0x0F);
    h->qdcount = get16(msg + 4);
    h->ancount = get16(msg + 6);
    h->nscount = get16(msg + 8);
    h->arcount = get16(msg + 10);
    return 0;
}

int dns_decode_reply(const uint8_t *msg, size_t len, dns_reply *r, const char **why)
{
    memset(r, 0, sizeof *r);
    int rc = dns_decode_header(msg, len, &r->h, why);
    if (rc != 0)
        return rc;
    size_t off = DNS_HEADER_LEN;
    char scratch[DNS_NAME_TEXT_MAX];
    for (uint32_t i = 0; i < r->h.qdcount; i++) {
        char *name = i == 0 ? r->qname : scratch;
        rc = dns_read_name(msg, len, &off, name, DNS_NAME_TEXT_MAX, true, why);
        if (rc != 0)
            return rc;
        if (off + 4 > len)
            return fail(why, "question cut short");
        if (i == 0) {
            r->qtype = get16(msg + off);
            r->qclass = get16(msg + off + 2);
            r->has_question = true;
        }
        off += 4;
    }
    r->records_at = off;
    return 0;
}

int dns_check_records(const uint8_t *msg, size_t len, const dns_reply *r, const char **why)
{
    uint32_t total = (uint32_t)r->h.ancount + r->h.nscount + r->h.arcount;
    size_t off = r->records_at;
    char scratch[DNS_NAME_TEXT_MAX];
    for (uint32_t i = 0; i < total; i++) {
        int rc = dns_read_name(msg, len, &off, scratch, sizeof scratch, false, why);
        if (rc != 0)
            return rc;
        if (off + 10 > len)
            return fail(why, "record cut short");
        size_t rdlength = get16(msg + off + 8);
        off += 10;
        if (off + rdlength > len)
            return fail(why, "record data runs past the end of the message");
        off += rdlength;
    }
    return 0;
}

bool dns_reply_matches(const dns_reply *r, uint16_t id, const char *name, uint16_t qtype)
{
    return r->h.qr && r->h.opcode == 0 && r->h.id == id && r->has_question && r->qtype == qtype &&
           r->qclass == DNS_CLASS_IN && strcmp(r->qname, name) == 0;
}
