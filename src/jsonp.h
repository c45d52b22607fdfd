/*
 * dr_json_parse: a strict RFC 8259 JSON parser into a tree of dr_jv nodes.
 *
 * Used for Kubernetes API objects (pod lists of tens of MiB, watch events one
 * object per line), the kubelet /pods answer and JSON log lines in filters.
 * The last is a hot path, so the parser makes one pass over the input and
 * takes every node and decoded string from the document's arena: a chain of
 * large blocks that is reused, not freed, by the next parse. A document object
 * is not thread-safe; use one per thread.
 *
 * The tree lives in the doc's arena: every dr_jv and string from one parse
 * stays valid until the next dr_json_parse, dr_json_doc_trim or
 * dr_json_doc_free on the same doc. The raw pointers point into the caller's
 * input, which must outlive their use.
 */
#ifndef DROVER_JSONP_H
#define DROVER_JSONP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drover/plugin.h"

typedef enum {
    DR_JV_NULL,
    DR_JV_FALSE,
    DR_JV_TRUE,
    DR_JV_NUMBER,
    DR_JV_STRING,
    DR_JV_ARRAY,
    DR_JV_OBJECT
} dr_jv_type;

typedef struct dr_jv dr_jv;
struct dr_jv {
    dr_jv_type type;
    /* STRING: bytes of str; NUMBER: bytes of str; ARRAY/OBJECT: number of members */
    uint32_t len;
    /* STRING: the decoded value (escapes resolved, \u surrogate pairs combined to UTF-8, a lone
     * surrogate becomes U+FFFD), NUL-terminated; NUMBER: its text as written, NUL-terminated;
     * else NULL */
    const char *str;
    /* a member of an object: its decoded key, NUL-terminated; else NULL */
    const char *key;
    uint32_t key_len;
    /* where this value's text starts in the input (points into the caller's buffer) */
    const char *raw;
    /* its length there: for a string, including the quotes */
    size_t raw_len;
    dr_jv *child; /* ARRAY/OBJECT: first member */
    dr_jv *next;  /* next member of the parent, in document order */
};

typedef struct dr_json_doc dr_json_doc; /* opaque: the arena and the root */

/* A document with its first arena block; NULL when out of memory. */
dr_json_doc *dr_json_doc_new(void);
void dr_json_doc_free(dr_json_doc *doc); /* doc may be NULL */

typedef struct dr_json_limits {
    uint32_t max_depth; /* nesting of arrays/objects; 0 means 64 */
    size_t max_nodes;   /* values in one document; 0 means no limit */
} dr_json_limits;

/* Parses s[0..n) (not NUL-terminated; may contain any bytes) as exactly one JSON value with
 * optional surrounding whitespace. Replaces the doc's previous content (the arena is reused:
 * memory kept is bounded by the largest document parsed, and dr_json_doc_trim gives it back).
 * Returns 0 and sets *root, or DR_EINVAL with err saying what and at which byte offset
 * ("expected ':' after object key at byte 17"), or DR_ENOMEM. lim may be NULL (defaults).
 * Strict RFC 8259: no trailing commas, no comments, no leading zeros, no NaN/Infinity, control
 * characters below 0x20 inside strings are errors, invalid escapes are errors. Invalid UTF-8
 * bytes inside strings are passed through unchanged (the encoders repair them later), not errors.
 *
 * Offsets count from s (0-based) and name the offending byte, or n when the input ended too soon;
 * an unterminated string is reported at its opening quote. A string or number whose text in the
 * input is 4 GiB or longer is an error (len is 32 bits). On error *root is NULL. */
int dr_json_parse(dr_json_doc *doc, const char *s, size_t n, const dr_json_limits *lim,
                  const dr_jv **root, dr_error *err);
/* Frees arena blocks beyond the first (call after a very large document). The values of the
 * last parse are gone afterwards. */
void dr_json_doc_trim(dr_json_doc *doc);
/* Bytes the doc's arena holds from the system right now (for metrics and tests). */
size_t dr_json_doc_memory(const dr_json_doc *doc);

/* Object member by key (first match), or NULL if v is not an object or has no such key. */
const dr_jv *dr_jv_get(const dr_jv *v, const char *key);
/* Follows a chain of keys: dr_jv_path(pod, "metadata", "name", NULL). NULL if any step is missing.
 */
const dr_jv *dr_jv_path(const dr_jv *v, ...); /* NULL-terminated list of const char * keys */
/* The string value, or NULL when v is NULL or not a string. */
const char *dr_jv_str(const dr_jv *v);
/* The string value, or def when v is NULL or not a string. */
const char *dr_jv_str_or(const dr_jv *v, const char *def);
/* A number as int64 (only integral values that fit; else false). "Integral" means written as an
 * integer: "1.0" and "1e3" give false, as does anything beyond the int64 range. */
bool dr_jv_int(const dr_jv *v, int64_t *out);
/* A number as double (strtod of its text; false when not a number). Out of range gives +-HUGE_VAL
 * or 0 as strtod does. */
bool dr_jv_double(const dr_jv *v, double *out);
/* True only for the literal true (not for "true" or 1). */
bool dr_jv_is_true(const dr_jv *v);

#endif
