/*
 * Container log line formats and partial-line joining for the tail input.
 *
 * CRI (containerd, CRI-O):  <RFC3339Nano> <stdout|stderr> <P|F>[:tags] <message>
 * docker json-file:         {"log":"<message>\n","stream":"stdout","time":"<RFC3339Nano>"}
 *
 * A CRI "P" line and a docker line whose log does not end in "\n" are pieces
 * of a longer line; the joiner puts them back together per stream (a stderr
 * line may arrive between the pieces of a stdout line).
 */
#ifndef DROVER_TAIL_FORMAT_H
#define DROVER_TAIL_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drover/plugin.h"

typedef enum { DR_FMT_UNKNOWN = 0, DR_FMT_CRI, DR_FMT_DOCKER } dr_log_format;

/* One physical line, parsed. `msg` points into the line (CRI) or into the
 * line's own bytes rewritten in place (docker: the JSON string unescaped;
 * never longer than the escaped text). The trailing newline of the message
 * (docker "\n", the kubelet's record separator) is not part of msg. */
typedef struct dr_line {
    int64_t time_ns;
    uint8_t stream; /* dr_stream */
    bool partial;   /* more pieces of this line follow */
    const char *msg;
    uint32_t msg_len;
} dr_line;

/* Guesses the format from a file's first line: '{' means docker, a
 * timestamp followed by a stream name means CRI. */
dr_log_format dr_format_detect(const char *line, size_t len);

/* Parse one line (without its "\n"). Return 0, or DR_EINVAL when the line is
 * not of that format. */
int dr_cri_parse(const char *line, size_t len, dr_line *out);
int dr_docker_parse(char *line, size_t len, dr_line *out);

/* ---- joining ------------------------------------------------------------- */

typedef enum { DR_LONG_SPLIT = 0, DR_LONG_TRUNCATE = 1 } dr_long_mode;

typedef struct dr_join_stats {
    uint64_t split;     /* records cut into pieces at max_record_bytes */
    uint64_t truncated; /* records cut, rest discarded */
    uint64_t timeouts;  /* partials emitted without their final piece */
} dr_join_stats;

typedef struct dr_join_stream {
    char *buf; /* pending pieces, at most max_record_bytes */
    size_t len, cap;
    int64_t time_ns;       /* time of the first piece */
    int64_t first_mono_ns; /* when the first pending piece arrived */
    uint64_t start_offset; /* file offset of the first pending piece */
    bool active;           /* pieces are pending */
    bool discarding;       /* pieces of this record already went out: split mode emits
                            * the rest as more pieces, truncate mode drops it */
} dr_join_stream;

typedef struct dr_joiner {
    dr_join_stream s[2];
    size_t max_record_bytes;
    dr_long_mode mode;
} dr_joiner;

void dr_join_init(dr_joiner *j, size_t max_record_bytes, dr_long_mode mode);
void dr_join_free(dr_joiner *j);

/* Feeds one parsed line that started at file offset `offset`. Complete
 * records are appended to chunk `c`: a line that is not partial and has
 * nothing pending is added without copying (the record points at ln->msg,
 * which must live as long as the chunk); joined records are copied into the
 * chunk. Returns 0 or DR_ENOMEM. */
int dr_join_push(dr_joiner *j, const dr_line *ln, uint64_t offset, int64_t now_mono_ns, dr_chunk *c,
                 dr_join_stats *st);

/* The smallest start offset of any pending partial, or UINT64_MAX when
 * nothing is pending: the checkpoint may not pass it. */
uint64_t dr_join_pending_offset(const dr_joiner *j);
/* Pieces pending across both streams (for the self-metric). */
int dr_join_pending_count(const dr_joiner *j);
/* Oldest arrival time of a pending piece, or INT64_MAX. */
int64_t dr_join_oldest_mono(const dr_joiner *j);

/* Emits every pending partial whose first piece arrived at least
 * `timeout_ns` before `now_mono_ns` (all of them when timeout_ns < 0), flagged
 * DR_REC_TIMEOUT. Returns the number emitted, or DR_ENOMEM. */
int dr_join_flush(dr_joiner *j, int64_t now_mono_ns, int64_t timeout_ns, dr_chunk *c,
                  dr_join_stats *st);

/* Forgets everything pending (the file was truncated or replaced). */
void dr_join_reset(dr_joiner *j);

#endif
