/*
 * The record encoding shared by the file and stdout outputs (and any other
 * output that writes one JSON object per line):
 *
 *   {"time":"2026-11-25T04:10:38.123456789Z","stream":"stdout","message":"...",
 *    "kubernetes":{"namespace":"...","pod":"...","pod_uid":"...","container":"...",
 *    "container_id":"..."}}
 *
 * With the kubernetes filter, "kubernetes" also holds image, node, pod_ip,
 * owner_kind, owner_name and the objects labels, annotations and
 * namespace_labels (empty values left out). Fields added by filters stand
 * beside these at the top level; a field holding JSON is written as it is. Invalid UTF-8
 * becomes U+FFFD; the number of records that needed it is returned so that
 * the caller can count them.
 *
 * A metric chunk's samples are written one per line too:
 *
 *   {"time":"2026-12-06T10:00:00Z","name":"up","labels":{"job":"node"},"value":1}
 *
 * with "NaN", "+Inf" and "-Inf" as strings, "stale":true on a staleness
 * marker, and a native histogram as "histogram":{count, sum, schema,
 * zero_threshold, zero_count, negative_spans ([offset,length] pairs),
 * negative_deltas (or _counts for a float histogram), positive_...}. The
 * text style writes the exposition form `up{job="node"} 1 1796551200000`.
 * Family metadata is not written.
 */
#ifndef DROVER_NDJSON_H
#define DROVER_NDJSON_H

/* The paragraph of the plugin descriptions (file, stdout) on samples. */
#define DR_NDJSON_METRICS_DOC                                                                      \
    "Metric samples are written one per line too, "                                                \
    "`{\"time\":\"2026-12-06T10:00:00Z\",\"name\":\"up\",\"labels\":{\"job\":\"node\"},"           \
    "\"value\":1}` (`NaN`, `+Inf` and `-Inf` as strings, `\"stale\":true` on a staleness "         \
    "marker, a native histogram as an object `histogram` with count, sum, schema, "                \
    "zero_threshold, zero_count, spans and buckets); the `text` format writes them in the "        \
    "exposition form `up{job=\"node\"} 1 1796551200000` (milliseconds)."

#include <stdint.h>

#include "buf.h"
#include "drover/plugin.h"

typedef enum { DR_LINE_JSON = 0, DR_LINE_TEXT = 1 } dr_line_style;

/* Appends every record of the chunk that is not dropped, one per line.
 * Returns the number of records with invalid UTF-8, or DR_ENOMEM. */
long dr_ndjson_encode_chunk(const dr_chunk *c, dr_line_style style, dr_buf *out);

/* The pieces of the JSON form, for outputs that place records one by one:
 * the ",\"kubernetes\":{...}" part of a chunk's metadata (the kubernetes
 * filter's when it ran, else what the input knew from the file name;
 * nothing when there is neither), encoded once per chunk, and one record with it, ending in a
 * newline. The record returns its replacement count or DR_ENOMEM. */
void dr_ndjson_encode_meta(const dr_chunk *c, dr_buf *b);
long dr_ndjson_encode_record(const dr_record *r, const dr_buf *meta, dr_buf *b);

/* What an output that writes lines keeps: its encode buffer, reused from
 * chunk to chunk, and its drover_output_invalid_utf8_records_total. */
typedef struct dr_ndjson_writer {
    dr_buf buf;
    dr_line_style style;
    dr_counter *invalid_utf8;
} dr_ndjson_writer;

/* Call from the output's start (it creates the counter). */
void dr_ndjson_writer_init(dr_ndjson_writer *w, dr_instance *inst, dr_line_style style);
/* Encodes the chunks of a batch into w->buf, replacing what was there, and
 * counts the records whose invalid UTF-8 was replaced. Returns 0 or
 * DR_ENOMEM. */
int dr_ndjson_writer_encode(dr_ndjson_writer *w, const dr_flush *f);
/* After a write: gives back the memory a huge chunk made the buffer grow to. */
void dr_ndjson_writer_trim(dr_ndjson_writer *w);
void dr_ndjson_writer_free(dr_ndjson_writer *w);

#endif
