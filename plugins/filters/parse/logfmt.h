/*
 * logfmt: `level=info msg="user logged in" user=ann ok`, pair by pair.
 *
 * What is read, as Go's logfmt and Vector's parse_logfmt read it:
 *
 * - pairs are separated by ASCII whitespace (spaces, tabs, CR, LF, ...);
 * - a key is a run of bytes other than whitespace, '=' and '"';
 * - `key=value`: a bare value runs to the next whitespace (it may hold '='
 *   and '"': `url=/a?b=c` is one value); `key=` is the empty string;
 * - `key="..."`: a quoted value, in which \" \\ \n \t \r are decoded and any
 *   other backslash is kept as it is (Windows paths are common in logs);
 * - a key alone, without '=', has the value "true".
 *
 * Invalid: an unterminated quote, anything right after a closing quote
 * (`a="b"c`), a quote in a key, '=' with no key before it.
 */
#ifndef DROVER_PARSE_LOGFMT_H
#define DROVER_PARSE_LOGFMT_H

#include <stddef.h>

typedef struct dr_logfmt_pair {
    const char *key; /* in the input */
    size_t key_len;
    const char *val; /* in the input, in the scratch space, or the literal "true" */
    size_t val_len;
} dr_logfmt_pair;

typedef struct dr_logfmt_iter {
    const char *p, *end;
    char *out; /* where the next decoded quoted value goes */
} dr_logfmt_iter;

/* Starts at s[0..n). Quoted values are decoded into `scratch`, which must
 * have room for n bytes (decoding never grows a value) and stays in use as
 * long as the pairs are. */
void dr_logfmt_begin(dr_logfmt_iter *it, const char *s, size_t n, char *scratch);

/* The next pair: 1, 0 at the end, DR_EINVAL when the text is not logfmt
 * there. */
int dr_logfmt_next(dr_logfmt_iter *it, dr_logfmt_pair *pair);

#endif
