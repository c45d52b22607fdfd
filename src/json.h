/*
 * JSON text output helpers for NDJSON encoders (file, stdout, later http).
 */
#ifndef DROVER_JSON_H
#define DROVER_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Appends `s` as a quoted JSON string. Control characters, quotes and
 * backslashes are escaped; valid UTF-8 passes through unchanged; every
 * invalid byte sequence becomes U+FFFD (as the WHATWG decoder counts them:
 * one replacement per maximal invalid subpart). Returns the number of
 * replacements made, or a negative DR_ENOMEM. */
long dr_json_string(dr_buf *b, const char *s, size_t n);

/* Appends s[0..n) unquoted and unescaped, except that every invalid UTF-8
 * sequence becomes U+FFFD exactly as dr_json_string replaces it: for binary
 * encodings (msgpack) whose strings must be UTF-8 but need no escaping.
 * Returns the number of replacements, or DR_ENOMEM leaving b as it was. */
long dr_utf8_sanitize(dr_buf *b, const char *s, size_t n);

/* The length of the longest prefix of s[0..n) that is valid UTF-8: n when
 * all of it is (the fast check before deciding to repair a copy). */
size_t dr_utf8_valid_prefix(const char *s, size_t n);

/* Writes a timestamp as RFC 3339 with nanoseconds in UTC,
 * "2026-11-25T04:10:38.123456789Z" (30 characters), into out (at least 31
 * bytes, NUL-terminated). Returns the length. */
size_t dr_format_rfc3339nano(int64_t ns, char *out);

/* Parses RFC 3339 with optional fraction (up to 9 digits; more are cut) and
 * a "Z" or "+hh:mm"/"-hh:mm" offset. Returns 0 or DR_EINVAL. */
int dr_parse_rfc3339(const char *s, size_t n, int64_t *ns);

#endif
