/*
 * Parsing one key of a record (JSON, logfmt or a regex with named groups)
 * into fields: the parse filter's work, as an entry point that any other
 * filter can call with its own configuration (the per-pod parser chosen by
 * an annotation, say), so that a log line parses the same wherever it is
 * parsed.
 *
 * What a parse does to a record, in order (the filter's page says the same
 * for users):
 *
 * 1. The key's value is parsed whole; a value that does not parse changes
 *    nothing. The checks that could fail half-way (field count, name
 *    length) are made before anything is set.
 * 2. With keep_original false, a key that is a field is removed (before the
 *    new fields are set, so that a parsed field of the same name stays).
 * 3. Every parsed field is set, in the order of the text (a name seen twice:
 *    the last wins), as prefix + name. A name that a field cannot have
 *    (message, time, stream, kubernetes, kubernetes.<x>, or empty) gets an
 *    underscore after the reserved word: time_, message_, kubernetes_.pod,
 *    _. JSON strings become string fields (decoded); other JSON values keep
 *    their text as JSON fields.
 * 4. The time_key field (by its parsed name, before the prefix) sets the
 *    record's time and is not stored unless keep_time. One that does not
 *    parse is stored (its value is not lost) and the time stays; when the
 *    name occurs twice, the last decides.
 * 5. The message_key field becomes the message and is not stored. Else,
 *    with keep_original false and key "message", the message becomes "".
 *
 * Not thread-safe: a context is used from one thread. Parsing allocates
 * nothing per record beyond what the chunk's arena takes: the JSON document,
 * the field list and the scratch buffers are the context's, reused.
 */
#ifndef DROVER_PARSE_H
#define DROVER_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drover/plugin.h"
#include "regex.h"

typedef enum { DR_PARSE_JSON = 0, DR_PARSE_LOGFMT = 1, DR_PARSE_REGEX = 2 } dr_parse_format;

/* Defaults of the limits. */
#define DR_PARSE_MAX_DEPTH 64
#define DR_PARSE_MAX_FIELDS 1000
#define DR_PARSE_MAX_VALUES 100000

typedef struct dr_parse_spec {
    dr_parse_format format;
    const char *key;         /* the key parsed: message (the default) or a field */
    const char *pattern;     /* regex (required for it, refused for the others) */
    const char *time_key;    /* NULL: the record's time is left alone */
    const char *time_format; /* see timefmt.h; NULL: rfc3339 */
    bool keep_time;          /* store the time_key field too */
    bool keep_original;      /* leave the key as it was (the default) */
    const char *message_key; /* NULL: none */
    const char *prefix;      /* NULL or "": none */
    uint32_t max_depth;      /* JSON nesting */
    uint32_t max_fields;     /* fields one record may yield */
    uint32_t max_values;     /* JSON values in one document, nested ones included */
} dr_parse_spec;

/* The defaults: key message, keep_original, rfc3339, the limits above. */
void dr_parse_spec_init(dr_parse_spec *spec, dr_parse_format format);

typedef struct dr_parse_ctx dr_parse_ctx;

/* Checks the spec and makes a context; err names the option at fault
 * ("pattern: ...", "time_format: ..."). The context copies what it needs
 * of the spec. 0, DR_EINVAL or DR_ENOMEM. */
int dr_parse_ctx_new(const dr_parse_spec *spec, dr_parse_ctx **out, dr_error *err);
void dr_parse_ctx_free(dr_parse_ctx *ctx); /* ctx may be NULL */

/* What dr_parse_record returns on success. */
enum {
    DR_PARSE_OK = 0,       /* parsed: fields set */
    DR_PARSE_BAD_TIME = 1, /* parsed, but the time field did not parse: the time is unchanged */
    DR_PARSE_NO_KEY = 2,   /* the record has no such key: unchanged */
};

/* Parses the record's key (see the top of this file). Returns one of the
 * above, or DR_EINVAL when the value did not parse or would break a limit,
 * DR_ERR when the regex gave up at its match limit (in both cases the
 * record is unchanged), DR_ENOMEM (the record may then hold some of the
 * fields). dr_parse_why says what went wrong. */
int dr_parse_record(dr_parse_ctx *ctx, dr_chunk *c, dr_record *r);

/* Why the last dr_parse_record failed, such as "expected ':' after object
 * key at byte 17" or "not a JSON object". */
const char *dr_parse_why(const dr_parse_ctx *ctx);

/* The compiled pattern (format regex), or NULL: for dr_filter_regex_gave_up. */
const dr_regex *dr_parse_regex(const dr_parse_ctx *ctx);

/* Bytes the context holds for parsing (the JSON document's arena and the
 * scratch buffers): what a stream of records keeps between them. After a
 * record that needed more than 1 MiB, that memory is given back. */
size_t dr_parse_ctx_memory(const dr_parse_ctx *ctx);

#endif
