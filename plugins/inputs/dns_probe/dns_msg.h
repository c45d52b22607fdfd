/*
 * DNS messages (RFC 1035, section 4): the query the dns_probe input sends
 * and the checks it makes on what comes back.
 *
 * A reply comes from the network and is read as hostile: every length and
 * offset is checked against the end of the message, compression pointers
 * must point backwards and are followed a bounded number of times (so a
 * loop of pointers ends with an error, not a hang), and a name longer than
 * 255 bytes on the wire is refused. Nothing here allocates: names are
 * written into caller buffers of DNS_NAME_TEXT_MAX bytes.
 *
 * Errors follow the plugin API: 0 on success, DR_EINVAL for a malformed
 * message or an unusable name, with a short static reason in *why.
 */
#ifndef DROVER_DNS_MSG_H
#define DROVER_DNS_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_HEADER_LEN 12
#define DNS_NAME_WIRE_MAX 255 /* RFC 1035 2.3.4 */
#define DNS_LABEL_MAX 63
/* A name as text, escaped (\DDD for bytes that are not plain), plus NUL:
 * at most 4 text bytes per wire byte. */
#define DNS_NAME_TEXT_MAX (4 * DNS_NAME_WIRE_MAX + 1)
/* A query: header, name, type and class. */
#define DNS_QUERY_MAX (DNS_HEADER_LEN + DNS_NAME_WIRE_MAX + 4)
/* Compression pointers followed while reading one name. */
#define DNS_MAX_POINTERS 64

#define DNS_CLASS_IN 1

/* The header fields a probe looks at. */
typedef struct dns_header {
    uint16_t id;
    bool qr; /* a response */
    uint8_t opcode;
    bool tc; /* truncated: ask again over TCP */
    uint8_t rcode;
    uint16_t qdcount, ancount, nscount, arcount;
} dns_header;

/* A reply's header and first question, and where its records start. */
typedef struct dns_reply {
    dns_header h;
    bool has_question;
    char qname[DNS_NAME_TEXT_MAX]; /* lower case, no trailing dot; "." for the root */
    uint16_t qtype, qclass;
    size_t records_at; /* offset of the first record after the questions */
} dns_reply;

/* The numeric query type of a name such as "A" or "aaaa", or "TYPE65"
 * (RFC 3597). DR_EINVAL when unknown. */
int dns_type_parse(const char *s, uint16_t *type);
/* The mnemonic of a type ("A", "AAAA", ...), or "TYPEnnn" written into buf
 * (at least 12 bytes) for others. */
const char *dns_type_name(uint16_t type, char *buf, size_t cap);
/* The mnemonic of a response code (0..15: NOERROR, FORMERR, SERVFAIL,
 * NXDOMAIN, ...); "RCODEnn" for those without one. Static strings. */
const char *dns_rcode_name(unsigned rcode);

/* Checks a name given in the configuration (dotted text, an optional
 * trailing dot, no escapes) and writes it lower case without the trailing
 * dot into out (DNS_NAME_TEXT_MAX bytes). */
int dns_name_normalize(const char *name, char *out, size_t cap, const char **why);

/* Writes a query with recursion desired for (name, qtype, IN) into out
 * (at least DNS_QUERY_MAX bytes). *len receives its length. */
int dns_encode_query(uint16_t id, const char *name, uint16_t qtype, uint8_t *out, size_t cap,
                     size_t *len, const char **why);

/* Reads the header (DR_EINVAL when shorter than DNS_HEADER_LEN). */
int dns_decode_header(const uint8_t *msg, size_t len, dns_header *h, const char **why);

/* Reads a name at *off, following compression pointers, as escaped text
 * (lower case when fold is set); *off moves past the name as it is written
 * at that place (2 bytes for a pointer). */
int dns_read_name(const uint8_t *msg, size_t len, size_t *off, char *out, size_t cap, bool fold,
                  const char **why);

/* Reads the header and the questions. A reply without a question is not
 * an error here (has_question is false): it cannot match a probe. */
int dns_decode_reply(const uint8_t *msg, size_t len, dns_reply *r, const char **why);

/* Walks every resource record of the answer, authority and additional
 * sections, checking that each lies wholly inside the message. */
int dns_check_records(const uint8_t *msg, size_t len, const dns_reply *r, const char **why);

/* True when the reply answers this query: a response with our id, a
 * standard query, and the question we asked (name compared without case). */
bool dns_reply_matches(const dns_reply *r, uint16_t id, const char *name, uint16_t qtype);

#endif
