/*
 * The request bodies of the http output, in three framings of the same
 * records (the NDJSON record of ndjson.h):
 *
 * - ndjson: one JSON object per line, byte for byte what the file output
 *   writes.
 * - json_array: the same objects in one JSON array, "[{...},{...}]".
 * - msgpack: one msgpack map per record, concatenated (msgpack.h). A stream
 *   of maps rather than one array around them: it is how msgpack is
 *   streamed, a reader takes records one by one without knowing the count
 *   first, and it is framed like NDJSON (Fluentd's in_http takes a stream
 *   of maps as well as an array).
 *
 * A body is built from the chunks of a batch: begin, add each chunk, end.
 */
#ifndef DROVER_HTTP_BODY_H
#define DROVER_HTTP_BODY_H

#include <stddef.h>

#include "buf.h"
#include "drover/plugin.h"

typedef enum {
    DR_HTTP_NDJSON = 0, /* the order of the output's `format` choices */
    DR_HTTP_JSON_ARRAY = 1,
    DR_HTTP_MSGPACK = 2,
} dr_http_format;

typedef struct dr_http_body {
    dr_http_format format;
    dr_buf *out;
    size_t start;         /* where the body begins in out */
    uint64_t bad_records; /* records whose invalid UTF-8 was replaced */
} dr_http_body;

/* The Content-Type of a format. */
const char *dr_http_body_content_type(dr_http_format format);

/* Starts a body at the end of out. */
int dr_http_body_begin(dr_http_body *b, dr_http_format format, dr_buf *out);
/* Appends the live records of c. 0 or a negative DR_E* code (the body is
 * then unusable: begin again). */
int dr_http_body_add(dr_http_body *b, const dr_chunk *c);
/* Closes the body. A body without records ends up empty (nothing to send),
 * in every format. */
void dr_http_body_end(dr_http_body *b);

#endif
