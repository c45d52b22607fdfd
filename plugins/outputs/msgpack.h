/*
 * A small MessagePack writer, and the record encoding of the outputs that
 * send msgpack: the same record as the NDJSON encoding (ndjson.h), one map
 * per record,
 *
 *   {"time": "2026-11-25T04:10:38.123456789Z", "stream": "stdout",
 *    "message": "...", <parser fields>...,
 *    "kubernetes": {"namespace": ..., "pod": ..., "pod_uid": ...,
 *                   "container": ..., "container_id": ...}}
 *
 * with every value a msgpack str ("kubernetes" a map, present when the
 * chunk has metadata), except fields holding JSON (a parser's numbers,
 * booleans, objects), which become the msgpack values they stand for:
 * int64 for integers, float64 for other numbers, nil, bool, map, array. The time stays the RFC 3339
 * string rather than the msgpack timestamp extension so that a record reads the same in every
 * format. msgpack strings must be UTF-8: invalid sequences become U+FFFD,
 * as in JSON, and the records that needed it are counted.
 *
 * Only what drover writes is here: str (fixstr, str8/16/32), map and array
 * headers (fix, 16, 32), nil, bool, fixint/int64 and float64. Sizes are chosen smallest-first, as
 * the spec asks.
 */
#ifndef DROVER_MSGPACK_H
#define DROVER_MSGPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "drover/plugin.h"

/* Headers of a map of n pairs and an array of n items. 0 or DR_ENOMEM. */
int dr_mp_map(dr_buf *b, uint32_t n);
int dr_mp_array(dr_buf *b, uint32_t n);
/* Scalars: nil, bool, int (the fixints, else int64), float64. */
int dr_mp_nil(dr_buf *b);
int dr_mp_bool(dr_buf *b, bool v);
int dr_mp_int(dr_buf *b, int64_t v);
int dr_mp_float(dr_buf *b, double v);
/* A str of the bytes as they are (the caller knows they are UTF-8).
 * 0, DR_ENOMEM, or DR_EINVAL when n does not fit in 32 bits. */
int dr_mp_str(dr_buf *b, const char *s, size_t n);
/* A str of s with invalid UTF-8 replaced by U+FFFD. Returns the number of
 * replacements, or DR_ENOMEM / DR_EINVAL leaving b as it was. */
long dr_mp_str_utf8(dr_buf *b, const char *s, size_t n);

/* Appends one map per record of the chunk that is not dropped. Returns the
 * number of records with invalid UTF-8, or a negative DR_E* code. */
long dr_msgpack_encode_chunk(const dr_chunk *c, dr_buf *out);

/* The pieces, for outputs that place records one by one (as ndjson.h's):
 * the "kubernetes" pair of a chunk's records, encoded once per chunk
 * (nothing when the chunk has no metadata; 0 or DR_ENOMEM), and one record
 * with it. `doc` is a JSON document for fields holding JSON, made on first
 * use and reused; the caller frees it (dr_json_doc_free). The record
 * returns its replacement count or a negative DR_E* code. */
struct dr_json_doc;
int dr_msgpack_encode_meta(const dr_chunk *c, dr_buf *b);
long dr_msgpack_encode_record(const dr_record *r, const dr_buf *meta, dr_buf *b,
                              struct dr_json_doc **doc);

#endif
