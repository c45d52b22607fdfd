/*
 * AWS Signature Version 4: the Authorization header of a request to an AWS
 * service (Amazon Managed Service for Prometheus is service "aps").
 *
 * The signature covers a canonical form of the request: the method, the
 * path (dot segments removed and each byte outside the unreserved set
 * percent-encoded; S3 alone keeps its path as it is), the query sorted by
 * name and value, every header given (names lowercased, values trimmed and
 * their runs of spaces made one, repeated names joined with commas, sorted
 * by name) and the SHA-256 of the payload. The key is derived from the
 * secret key, the date, the region and the service.
 *
 * Everything here is a pure function of its inputs (the time comes in as
 * amz_date), so that AWS's published test vectors can be reproduced byte
 * for byte (tests/unit/test_sigv4.c).
 */
#ifndef DROVER_SIGV4_H
#define DROVER_SIGV4_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

typedef struct dr_sigv4_header {
    const char *name, *value;
} dr_sigv4_header;

/* The request as it will be sent. */
typedef struct dr_sigv4_request {
    const char *method;
    const char *path;  /* as in the request line, before any query */
    const char *query; /* what follows '?', or NULL */
    /* every header to sign, host and x-amz-date (and x-amz-security-token
     * with temporary credentials) among them */
    const dr_sigv4_header *headers;
    size_t nheaders;
    const void *payload;
    size_t payload_len;
    bool keep_path; /* S3: the path is not normalized */
} dr_sigv4_request;

/* Who signs, for what, when. */
typedef struct dr_sigv4_scope {
    const char *access_key, *secret_key;
    const char *region, *service;
    const char *amz_date; /* YYYYMMDDTHHMMSSZ, the x-amz-date header's value */
} dr_sigv4_scope;

/* Builds the canonical request, the string to sign and the Authorization
 * header value into the buffers given (each may be NULL but authz; they
 * are appended to). 0, DR_EINVAL (a malformed amz_date or percent escape)
 * or DR_ENOMEM. */
int dr_sigv4_sign(const dr_sigv4_request *req, const dr_sigv4_scope *scope, dr_buf *creq,
                  dr_buf *sts, dr_buf *authz);

/* "YYYYMMDDTHHMMSSZ" for a Unix time in seconds (UTC). */
void dr_sigv4_amz_date(long long unix_s, char out[17]);

#endif
