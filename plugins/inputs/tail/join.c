/*
 * Joining partial lines back into records.
 *
 * Container runtimes cut long lines into pieces (CRI "P" lines, docker
 * objects whose "log" lacks its "\n"). Each stream of a file has its own
 * pending buffer, because a stderr line may arrive between two pieces of a
 * stdout line. A record ends with the stream's next non-partial piece, or
 * with a timeout when that piece never comes.
 *
 * max_record_bytes bounds every record and every buffer. A record that grows
 * past it is cut:
 *
 *   DR_LONG_SPLIT     it goes out as pieces of exactly max_record_bytes, and
 *                     the remainder after the last full piece, all flagged
 *                     DR_REC_SPLIT;
 *   DR_LONG_TRUNCATE  its first max_record_bytes go out once, flagged
 *                     DR_REC_TRUNCATED, and the rest is dropped up to and
 *                     including the final piece.
 *
 * Either way the stream's `discarding` bit is set once the record has been
 * cut, and stays set until the record ends. In truncate mode it means what
 * its name says; in split mode it means that pieces of this record have
 * already gone out, so that what remains must be flagged DR_REC_SPLIT as
 * well. (dr_join_stream has no other field to remember that in.)
 *
 * Checkpoints: dr_join_pending_offset must never let the checkpoint pass a
 * byte that has not been emitted. While pieces are pending it is the offset
 * of the line holding the oldest pending byte. After a split that is the
 * line whose tail stayed behind, so a restart re-emits the head of that one
 * line, which is a duplicate but not a loss. After a truncation nothing is
 * pending, but the offset stays at the record's first piece: a restart then
 * repeats the truncated record instead of emitting the dropped rest as a
 * record of its own.
 */
#include <stdlib.h>
#include <string.h>

#include "format.h"

/* An idle stream keeps its buffer only up to this size, so a file that once
 * had one long line does not hold on to max_record_bytes for good. */
#define KEEP_BUF_BYTES (64 * 1024)

void dr_join_init(dr_joiner *j, size_t max_record_bytes, dr_long_mode mode)
{
    memset(j, 0, sizeof *j);
    /* A record's length must fit dr_record.msg_len; 0 means no limit but that. */
    if (max_record_bytes == 0 || max_record_bytes > UINT32_MAX)
        max_record_bytes = UINT32_MAX;
    j->max_record_bytes = max_record_bytes;
    j->mode = mode;
}

/* Ends the stream's record; keeps a small buffer for the next one. */
static void stream_clear(dr_join_stream *s)
{
    if (s->cap > KEEP_BUF_BYTES) {
        free(s->buf);
        s->buf = NULL;
        s->cap = 0;
    }
    s->len = 0;
    s->active = false;
    s->discarding = false;
}

void dr_join_free(dr_joiner *j)
{
    for (int i = 0; i < 2; i++) {
        free(j->s[i].buf);
        j->s[i].buf = NULL;
        j->s[i].cap = 0;
        stream_clear(&j->s[i]);
    }
}

void dr_join_reset(dr_joiner *j)
{
    for (int i = 0; i < 2; i++)
        stream_clear(&j->s[i]);
}

/* ---- emitting --------------------------------------------------------------- */

static int add_record(dr_chunk *c, int64_t time_ns, uint8_t stream, uint8_t flags, const char *msg,
                      size_t len)
{
    dr_record *r = dr_chunk_add(c);
    if (!r)
        return DR_ENOMEM;
    r->time_ns = time_ns;
    r->stream = stream;
    r->flags = flags;
    r->msg = msg;
    r->msg_len = (uint32_t)len;
    return 0;
}

/* Adds a record made of the stream's pending bytes followed by `n` bytes of
 * `more`, copied into the chunk. */
static int add_joined(dr_chunk *c, const dr_join_stream *s, uint8_t stream, uint8_t flags,
                      const char *more, size_t n)
{
    size_t len = s->len + n;
    char *msg = dr_chunk_alloc(c, len ? len : 1);
    if (!msg)
        return DR_ENOMEM;
    if (s->len)
        memcpy(msg, s->buf, s->len);
    if (n)
        memcpy(msg + s->len, more, n);
    return add_record(c, s->time_ns, stream, flags, msg, len);
}

/* A whole line with nothing pending: its bytes are used where they are,
 * cut if it is too long. */
static int push_whole_line(dr_joiner *j, const dr_line *ln, dr_chunk *c, dr_join_stats *st)
{
    size_t max = j->max_record_bytes;
    size_t len = ln->msg_len;
    if (len <= max)
        return add_record(c, ln->time_ns, ln->stream, 0, ln->msg, len);

    if (j->mode == DR_LONG_TRUNCATE) {
        st->truncated++;
        return add_record(c, ln->time_ns, ln->stream, DR_REC_TRUNCATED, ln->msg, max);
    }
    st->split++;
    for (size_t off = 0; off < len; off += max) {
        size_t n = len - off < max ? len - off : max;
        int rc = add_record(c, ln->time_ns, ln->stream, DR_REC_SPLIT, ln->msg + off, n);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- pending pieces ----------------------------------------------------------- */

/* Makes room for `need` pending bytes in total (never more than max). */
static int stream_reserve(dr_join_stream *s, size_t need, size_t max)
{
    if (need <= s->cap)
        return 0;
    size_t cap = s->cap ? s->cap : 256;
    while (cap < need)
        cap = cap > max / 2 ? max : cap * 2;
    if (cap > max)
        cap = max;
    char *buf = realloc(s->buf, cap);
    if (!buf)
        return DR_ENOMEM;
    s->buf = buf;
    s->cap = cap;
    return 0;
}

/* The record went out truncated; what still comes of it is dropped. */
static bool was_truncated(const dr_joiner *j, const dr_join_stream *s)
{
    return s->discarding && j->mode == DR_LONG_TRUNCATE;
}

static void stream_start(dr_join_stream *s, const dr_line *ln, uint64_t offset, int64_t now)
{
    s->active = true;
    s->discarding = false;
    s->len = 0;
    s->time_ns = ln->time_ns;
    s->first_mono_ns = now;
    s->start_offset = offset;
}

/* Cuts the record when the pending bytes and the `*n` bytes at `*data` would
 * exceed max_record_bytes: emits the first max bytes and advances *data and
 * *n past the part of the line that went out (all of it when truncating). */
static int cut_if_too_long(dr_joiner *j, dr_join_stream *s, const dr_line *ln, uint64_t offset,
                           int64_t now, const char **data, size_t *n, dr_chunk *c,
                           dr_join_stats *st)
{
    size_t max = j->max_record_bytes;
    while (s->len + *n > max) {
        size_t room = max - s->len;
        bool truncate = j->mode == DR_LONG_TRUNCATE;
        int rc =
            add_joined(c, s, ln->stream, truncate ? DR_REC_TRUNCATED : DR_REC_SPLIT, *data, room);
        if (rc < 0)
            return rc;
        if (!s->discarding) {
            if (truncate)
                st->truncated++;
            else
                st->split++;
        }
        s->discarding = true;
        s->len = 0;
        if (truncate) {
            *n = 0; /* start_offset stays at the first piece: see the top */
            return 0;
        }
        /* What stays behind belongs to this line and arrived now. */
        *data += room;
        *n -= room;
        s->start_offset = offset;
        s->first_mono_ns = now;
    }
    return 0;
}

/* A partial line, or the end of a record with pieces pending. */
static int push_piece(dr_joiner *j, dr_join_stream *s, const dr_line *ln, uint64_t offset,
                      int64_t now, dr_chunk *c, dr_join_stats *st)
{
    if (!s->active)
        stream_start(s, ln, offset, now);

    const char *data = ln->msg;
    size_t n = ln->msg_len;
    if (was_truncated(j, s)) {
        n = 0;
    } else {
        int rc = cut_if_too_long(j, s, ln, offset, now, &data, &n, c, st);
        if (rc < 0)
            return rc;
    }

    if (!ln->partial) {
        /* The record ends here, unless it was truncated: then it already
         * went out. After a split, what remains is the last piece (never
         * empty: a cut always leaves at least one byte behind). */
        if (!was_truncated(j, s)) {
            uint8_t flags = s->discarding ? DR_REC_SPLIT : 0;
            int rc = add_joined(c, s, ln->stream, flags, data, n);
            if (rc < 0)
                return rc;
        }
        stream_clear(s);
        return 0;
    }

    if (n == 0)
        return 0;
    int rc = stream_reserve(s, s->len + n, j->max_record_bytes);
    if (rc < 0)
        return rc;
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    return 0;
}

int dr_join_push(dr_joiner *j, const dr_line *ln, uint64_t offset, int64_t now_mono_ns, dr_chunk *c,
                 dr_join_stats *st)
{
    dr_join_stream *s = &j->s[ln->stream == DR_STREAM_STDERR];
    if (!ln->partial && !s->active)
        return push_whole_line(j, ln, c, st);
    return push_piece(j, s, ln, offset, now_mono_ns, c, st);
}

/* ---- timeouts and state ------------------------------------------------------- */

int dr_join_flush(dr_joiner *j, int64_t now_mono_ns, int64_t timeout_ns, dr_chunk *c,
                  dr_join_stats *st)
{
    int emitted = 0;
    for (int i = 0; i < 2; i++) {
        dr_join_stream *s = &j->s[i];
        if (!s->active)
            continue;
        if (timeout_ns >= 0 && now_mono_ns - s->first_mono_ns < timeout_ns)
            continue;
        /* A truncated record already went out: only its state ends. */
        if (!was_truncated(j, s)) {
            uint8_t flags = DR_REC_TIMEOUT | (s->discarding ? DR_REC_SPLIT : 0);
            int rc = add_joined(c, s, (uint8_t)i, flags, NULL, 0);
            if (rc < 0)
                return rc;
            st->timeouts++;
            emitted++;
        }
        stream_clear(s);
    }
    return emitted;
}

uint64_t dr_join_pending_offset(const dr_joiner *j)
{
    uint64_t off = UINT64_MAX;
    for (int i = 0; i < 2; i++)
        if (j->s[i].active && j->s[i].start_offset < off)
            off = j->s[i].start_offset;
    return off;
}

int dr_join_pending_count(const dr_joiner *j)
{
    return (int)j->s[0].active + (int)j->s[1].active;
}

int64_t dr_join_oldest_mono(const dr_joiner *j)
{
    int64_t oldest = INT64_MAX;
    for (int i = 0; i < 2; i++)
        if (j->s[i].active && j->s[i].first_mono_ns < oldest)
            oldest = j->s[i].first_mono_ns;
    return oldest;
}
