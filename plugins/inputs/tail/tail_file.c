/*
 * One open log file: identity, reading, parsing into chunks, and the
 * acknowledgements that move its checkpoint.
 *
 * Reading. A plain file is read with pread() at read_off, so an incomplete
 * last line (the writer is still writing it) is simply read again next time:
 * no carry-over buffer. A compressed rotated file is read sequentially
 * through zlib and keeps its incomplete last line in `carry`.
 *
 * Zero copy. A read that fills more than half of the read buffer gives the
 * buffer itself to the chunk (records point into it) and takes a new one; a
 * smaller read is copied into a chunk of its own size, so that many small
 * chunks queued during a slow output do not pin many large buffers.
 *
 * Checkpoints. Each emitted chunk remembers the offset up to which the file
 * is covered once it is delivered: the end of what was read, or the start of
 * a partial line still waiting for its continuation, whichever is smaller.
 * Acknowledgements may arrive in any order; the checkpoint moves through the
 * longest delivered prefix only. A chunk given back undelivered (shutdown)
 * stops the file's checkpoint for good in this run: what follows is read
 * again next time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "tail.h"

/* ---- identity ------------------------------------------------------------ */

static ssize_t read_prefix_gz(int fd, unsigned char *prefix)
{
    int dupfd = dup(fd);
    if (dupfd < 0)
        return -1;
    if (lseek(dupfd, 0, SEEK_SET) < 0) {
        close(dupfd);
        return -1;
    }
    gzFile gz = gzdopen(dupfd, "rb");
    if (!gz) {
        close(dupfd);
        return -1;
    }
    int n = gzread(gz, prefix, DR_FP_MAX);
    gzclose(gz); /* closes dupfd; the shared offset moved: callers reset it */
    lseek(fd, 0, SEEK_SET);
    return n < 0 ? 0 : n; /* a broken gzip file has no readable content */
}

int tail_identity(int fd, bool compressed, dr_ckpt_key *key, unsigned char *prefix)
{
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return DR_EIO;
    ssize_t n = compressed ? read_prefix_gz(fd, prefix) : pread(fd, prefix, DR_FP_MAX, 0);
    if (n < 0)
        return DR_EIO;
    key->dev = (uint64_t)sb.st_dev;
    key->ino = (uint64_t)sb.st_ino;
    key->fp_len = (uint32_t)n;
    key->fp_hash = dr_hash64(prefix, (size_t)n);
    return 0;
}

/* True when an entry's fingerprint is a prefix of this content. An entry
 * taken when the file was still short has a short fingerprint; it matches
 * the longer content that file grew into. */
static bool fingerprint_matches(const dr_ckpt_entry *e, const unsigned char *prefix,
                                uint32_t prefix_len)
{
    if (e->key.fp_len > prefix_len)
        return false;
    return dr_hash64(prefix, e->key.fp_len) == e->key.fp_hash;
}

/* True when `path` is a file directly in directory `dir`. */
static bool in_directory(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return path && strncmp(path, dir, n) == 0 && path[n] == '/' && !strchr(path + n + 1, '/');
}

dr_ckpt_entry *tail_find_checkpoint(tail_state *st, const dr_ckpt_key *key,
                                    const unsigned char *prefix, bool by_content, const char *dir)
{
    dr_ckpt_entry *by_data = NULL;
    size_t n = dr_ckpt_count(st->ckpt);
    for (size_t i = 0; i < n; i++) {
        dr_ckpt_entry *e = dr_ckpt_at(st->ckpt, i);
        if (!fingerprint_matches(e, prefix, key->fp_len))
            continue;
        /* A fingerprint shorter than what was read cannot tell this file
         * from another one that reused the inode. */
        if (e->key.fp_len < (e->offset < DR_FP_MAX ? e->offset : DR_FP_MAX))
            continue;
        if (e->key.dev == key->dev && e->key.ino == key->ino)
            return e;
        /* By content only within the same directory (a rotation stays beside
         * its file) and with some content: two empty files are not the same
         * file. Prefer the entry that read furthest. */
        if (by_content && e->key.fp_len > 0 && in_directory(e->path, dir) &&
            (!by_data || e->offset > by_data->offset))
            by_data = e;
    }
    return by_data;
}

/* ---- open / close -------------------------------------------------------------- */

tail_file *tail_file_open(tail_state *st, tail_group *g, const char *path, int fd, bool compressed,
                          uint32_t order)
{
    tail_file *f = calloc(1, sizeof *f);
    if (!f) {
        close(fd);
        return NULL;
    }
    f->st = st;
    f->group = g;
    f->fd = fd;
    f->order = order;
    f->compressed = compressed;
    f->path = strdup(path);
    if (!f->path || tail_identity(fd, compressed, &f->key, f->prefix) < 0) {
        free(f->path);
        close(fd);
        free(f);
        return NULL;
    }
    if (compressed) {
        f->gz = gzdopen(fd, "rb");
        if (!f->gz) {
            free(f->path);
            close(fd);
            free(f);
            return NULL;
        }
        gzbuffer(f->gz, 128 * 1024);
    }
    f->fmt = st->conf->format == 1   ? DR_FMT_CRI
             : st->conf->format == 2 ? DR_FMT_DOCKER
                                     : DR_FMT_UNKNOWN;
    dr_join_init(&f->join, st->conf->max_record_bytes, (dr_long_mode)st->conf->long_records);
    f->hot = true;
    f->next = st->files;
    st->files = f;
    return f;
}

/* Skips `n` bytes of a compressed file. */
static void gz_skip(tail_file *f, uint64_t n)
{
    char scratch[16384];
    while (n > 0) {
        int want = n > sizeof scratch ? (int)sizeof scratch : (int)n;
        int got = gzread(f->gz, scratch, (unsigned)want);
        if (got <= 0)
            break;
        n -= (uint64_t)got;
    }
}

bool tail_file_position(tail_file *f, uint64_t start, bool by_content)
{
    tail_state *st = f->st;
    struct stat sb;
    uint64_t size = fstat(f->fd, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    dr_ckpt_entry *e = tail_find_checkpoint(st, &f->key, f->prefix, by_content, f->group->dir);
    uint64_t off;
    bool matched = e != NULL;
    if (e) {
        off = e->offset;
        if (memcmp(&e->key, &f->key, sizeof f->key) != 0) {
            /* the file's own key replaces the entry it resumed from */
            dr_ckpt_key old = e->key;
            dr_ckpt_remove(st->ckpt, &old);
        }
        if (!f->compressed && off > size) {
            /* shorter than what we had read: truncated while we were away */
            dr_counter_add(st->truncations, 1);
            dr_log(st->inst, DR_LOG_WARN, "file is shorter than its checkpoint, reading it again",
                   "path=%s checkpoint=%llu size=%llu", f->path, (unsigned long long)off,
                   (unsigned long long)size);
            off = 0;
        }
    } else if (start == UINT64_MAX) {
        off = f->compressed ? UINT64_MAX : size;
    } else {
        off = start;
    }
    if (f->compressed && off == UINT64_MAX) {
        f->at_eof = true;
        f->hot = false;
        off = 0;
        f->closing = true; /* read_from: tail, nothing to read here */
    } else if (f->compressed && off > 0) {
        gz_skip(f, off);
    }
    f->read_off = f->ckpt_off = off;
    f->size_seen = size;
    tail_file_update_checkpoint(f);
    return matched;
}

void tail_file_update_checkpoint(tail_file *f)
{
    dr_ckpt_set(f->st->ckpt, &f->key, f->ckpt_off, f->path, dr_now_ns() / 1000000000);
}

void tail_file_close(tail_file *f)
{
    if (f->gz) {
        gzclose(f->gz); /* closes fd too */
        f->gz = NULL;
        f->fd = -1;
    } else if (f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
    }
    f->closing = true;
    f->hot = false;
    dr_buf_free(&f->carry);
}

bool tail_file_can_free(const tail_file *f)
{
    return f->closing && f->ring_len == 0;
}

void tail_file_free(tail_file *f)
{
    if (!f->closing)
        tail_file_close(f);
    dr_join_free(&f->join);
    free(f->ring);
    free(f->path);
    free(f);
}

uint64_t tail_file_lag(const tail_file *f)
{
    if (f->closing)
        return 0;
    return f->size_seen > f->ckpt_off ? f->size_seen - f->ckpt_off : 0;
}

/* ---- acknowledgements ------------------------------------------------------------ */

static tail_inflight *ring_at(tail_file *f, size_t i)
{
    return &f->ring[(f->ring_head + i) % f->ring_cap];
}

static int ring_push(tail_file *f, uint64_t seq, uint64_t end_off)
{
    if (f->ring_len == f->ring_cap) {
        size_t cap = f->ring_cap ? f->ring_cap * 2 : 16;
        tail_inflight *r = malloc(cap * sizeof *r);
        if (!r)
            return DR_ENOMEM;
        for (size_t i = 0; i < f->ring_len; i++)
            r[i] = *ring_at(f, i);
        free(f->ring);
        f->ring = r;
        f->ring_cap = cap;
        f->ring_head = 0;
    }
    tail_inflight *e = ring_at(f, f->ring_len++);
    e->seq = seq;
    e->end_off = end_off;
    e->acked = false;
    e->abandoned = false;
    e->stale = false;
    return 0;
}

static void on_chunk_ack(void *ctx, uint64_t seq, bool delivered);

/* Moves the checkpoint through the delivered prefix of the ring. */
static void advance_checkpoint(tail_file *f)
{
    bool moved = false;
    while (f->ring_len > 0 && ring_at(f, 0)->acked) {
        tail_inflight *e = ring_at(f, 0);
        if (e->abandoned)
            f->stalled = true;
        if (!f->stalled && !e->stale && e->end_off > f->ckpt_off) {
            f->ckpt_off = e->end_off;
            moved = true;
        }
        f->ring_head = (f->ring_head + 1) % f->ring_cap;
        f->ring_len--;
    }
    if (moved)
        tail_file_update_checkpoint(f);
    if (f->ring_len == 0 && f->handoff_to) {
        tail_file *copy = f->handoff_to;
        f->handoff_to = NULL;
        on_chunk_ack(copy, f->handoff_seq, !f->stalled);
    }
}

static void on_chunk_ack(void *ctx, uint64_t seq, bool delivered)
{
    tail_file *f = ctx;
    for (size_t i = 0; i < f->ring_len; i++) {
        tail_inflight *e = ring_at(f, i);
        if (e->seq == seq) {
            e->acked = true;
            e->abandoned = !delivered;
            break;
        }
    }
    advance_checkpoint(f);
}

/* Records what a read covered: with a chunk, through its acknowledgement;
 * without one, at once if nothing is in flight. */
static void account_read(tail_file *f, dr_chunk *c)
{
    uint64_t end = f->read_off;
    uint64_t pending = dr_join_pending_offset(&f->join);
    if (pending < end)
        end = pending;
    if (c && c->nrecs > 0) {
        uint64_t seq = f->next_seq++;
        if (ring_push(f, seq, end) < 0) {
            /* cannot track it: emit without moving the checkpoint */
            dr_chunk_set_meta(c, f->group->meta);
            dr_input_emit(f->st->inst, c);
            return;
        }
        dr_chunk_set_meta(c, f->group->meta);
        dr_chunk_set_ack(c, on_chunk_ack, f, seq);
        dr_input_emit(f->st->inst, c);
        return;
    }
    if (c)
        dr_chunk_discard(c);
    if (f->ring_len == 0) {
        if (!f->stalled && end > f->ckpt_off) {
            f->ckpt_off = end;
            tail_file_update_checkpoint(f);
        }
    } else if (ring_push(f, f->next_seq++, end) == 0) {
        ring_at(f, f->ring_len - 1)->acked = true;
        advance_checkpoint(f);
    }
}

/* ---- parsing ------------------------------------------------------------------------- */

static void sync_join_stats(tail_file *f)
{
    tail_state *st = f->st;
    dr_counter_add(st->split, st->jstats.split - st->jstats_reported.split);
    dr_counter_add(st->truncated, st->jstats.truncated - st->jstats_reported.truncated);
    dr_counter_add(st->timeouts, st->jstats.timeouts - st->jstats_reported.timeouts);
    st->jstats_reported = st->jstats;
}

static void add_raw_record(tail_file *f, dr_chunk *c, const char *p, size_t n, uint8_t flags)
{
    dr_record *r = dr_chunk_add(c);
    if (!r)
        return;
    r->time_ns = dr_now_ns();
    r->stream = DR_STREAM_STDOUT;
    r->flags = flags;
    r->msg = p;
    r->msg_len = (uint32_t)n;
}

/* A line that is not of the file's format. */
static void handle_malformed(tail_file *f, dr_chunk *c, const char *p, size_t n, uint64_t off)
{
    tail_state *st = f->st;
    dr_counter_add(st->malformed, 1);
    dr_log(st->inst, DR_LOG_WARN, "malformed log line", "path=%s offset=%llu length=%zu", f->path,
           (unsigned long long)f->read_off, n);
    if (st->conf->malformed == 1) {
        dr_count_drop(st->inst, "malformed", 1);
        return;
    }
    if (n > st->conf->max_record_bytes)
        n = st->conf->max_record_bytes; /* a raw line is bounded like any record */
    add_raw_record(f, c, p, n, DR_REC_MALFORMED);
}

static int parse_line(tail_file *f, char *p, size_t n, dr_line *ln)
{
    if (f->fmt == DR_FMT_UNKNOWN)
        f->fmt = dr_format_detect(p, n);
    if (f->fmt == DR_FMT_CRI)
        return dr_cri_parse(p, n, ln);
    if (f->fmt == DR_FMT_DOCKER)
        return dr_docker_parse(p, n, ln);
    return DR_EINVAL;
}

/* One complete physical line (without its newline) at file offset `off`. */
static void process_line(tail_file *f, dr_chunk *c, char *p, size_t n, uint64_t off)
{
    dr_line ln;
    if (parse_line(f, p, n, &ln) < 0) {
        handle_malformed(f, c, p, n, off);
        return;
    }
    if (ln.time_ns == 0)
        ln.time_ns = dr_now_ns();
    dr_join_push(&f->join, &ln, off, dr_mono_ns(), c, &f->st->jstats);
}

/* A piece of a physical line longer than the read buffer. The first piece
 * carries the line's header; later ones are raw continuation bytes. */
static void process_long_piece(tail_file *f, dr_chunk *c, char *p, size_t n, bool last,
                               uint64_t line_off)
{
    if (!f->in_long_line) {
        dr_line ln;
        f->in_long_line = true;
        f->long_raw = parse_line(f, p, n, &ln) < 0;
        if (f->long_raw) {
            dr_counter_add(f->st->malformed, 1);
            add_raw_record(f, c, p, n, DR_REC_MALFORMED | DR_REC_SPLIT);
            return;
        }
        f->long_time_ns = ln.time_ns ? ln.time_ns : dr_now_ns();
        f->long_stream = ln.stream;
        f->long_partial = ln.partial;
        ln.partial = true;
        dr_join_push(&f->join, &ln, line_off, dr_mono_ns(), c, &f->st->jstats);
        return;
    }
    if (f->long_raw) {
        add_raw_record(f, c, p, n, DR_REC_MALFORMED | DR_REC_SPLIT);
        return;
    }
    dr_line ln = {.time_ns = f->long_time_ns,
                  .stream = f->long_stream,
                  .partial = last ? f->long_partial : true,
                  .msg = p,
                  .msg_len = (uint32_t)n};
    dr_join_push(&f->join, &ln, line_off, dr_mono_ns(), c, &f->st->jstats);
}

/* Parses data[0..n) that starts at file offset `base`. Returns the bytes
 * consumed (complete lines, and the whole buffer when it holds part of an
 * over-long line). `final`: no more data will come, so a last line without
 * newline is complete. */
static size_t parse_buffer(tail_file *f, dr_chunk *c, char *data, size_t n, uint64_t base,
                           bool buffer_full, bool final)
{
    size_t pos = 0;
    if (f->in_long_line) {
        char *nl = memchr(data, '\n', n);
        size_t len = nl ? (size_t)(nl - data) : n;
        bool last = nl != NULL || final;
        process_long_piece(f, c, data, len, last,
                           f->join.s[f->long_stream].active ? f->join.s[f->long_stream].start_offset
                                                            : base);
        if (!last)
            return n;
        f->in_long_line = false;
        pos = nl ? len + 1 : n;
    }
    while (pos < n) {
        char *line = data + pos;
        char *nl = memchr(line, '\n', n - pos);
        if (!nl) {
            size_t len = n - pos;
            if (final) {
                process_line(f, c, line, len, base + pos);
                return n;
            }
            if (pos == 0 && buffer_full) {
                process_long_piece(f, c, line, len, false, base);
                return n;
            }
            return pos;
        }
        size_t len = (size_t)(nl - line);
        if (len > 0 && line[len - 1] == '\r' && f->fmt == DR_FMT_DOCKER)
            len--;
        process_line(f, c, line, len, base + pos);
        pos += len + 1;
        if (line + len < nl)
            pos++; /* the \r dropped above */
    }
    return pos;
}

/* ---- reading ---------------------------------------------------------------------------- */

static bool content_replaced(tail_file *f);
static void extend_fingerprint(tail_file *f);

static ssize_t read_plain(tail_file *f, char *buf, size_t cap)
{
    for (;;) {
        ssize_t n = pread(f->fd, buf, cap, (off_t)f->read_off);
        if (n < 0 && errno == EINTR)
            continue;
        return n;
    }
}

/* Compressed files: the carry (an incomplete line) first, then new data. */
static ssize_t read_gz(tail_file *f, char *buf, size_t cap, size_t *carried)
{
    size_t c = f->carry.len < cap ? f->carry.len : cap;
    if (c > 0)
        memcpy(buf, f->carry.p, c);
    *carried = c;
    int n = gzread(f->gz, buf + c, (unsigned)(cap - c));
    if (n < 0) {
        int zerr;
        const char *msg = gzerror(f->gz, &zerr);
        dr_log(f->st->inst, DR_LOG_WARN, "compressed file is damaged; reading stops here",
               "path=%s error=\"%s\"", f->path, msg);
        n = 0;
    }
    return (ssize_t)(c + (size_t)n);
}

int tail_file_read_once(tail_file *f)
{
    tail_state *st = f->st;
    if (f->closing)
        return 0;
    size_t cap = (size_t)st->conf->read_buffer;
    size_t carried = 0;
    ssize_t n = f->gz ? read_gz(f, st->buf, cap, &carried) : read_plain(f, st->buf, cap);
    if (n < 0) {
        dr_log(st->inst, DR_LOG_ERROR, "read failed", "path=%s error=\"%s\"", f->path,
               strerror(errno));
        f->hot = false;
        return DR_EIO;
    }
    /* The first bytes still being those we fingerprinted after the read
     * means the read saw the content we were reading, not a file that was
     * truncated and has grown again past our offset. */
    if (!f->gz && n > 0 && content_replaced(f))
        return TAIL_TRUNCATED;
    bool eof_now = (size_t)n - carried == 0;
    if (eof_now) {
        if (!f->at_eof)
            f->eof_since_ns = dr_mono_ns();
        f->at_eof = true;
        f->hot = false;
        /* a compressed file is finished: its unterminated last line is whole */
        if (f->gz && f->carry.len > 0) {
            dr_chunk *c = dr_chunk_new(st->inst, f->carry.len);
            char *copy = c ? dr_chunk_alloc(c, f->carry.len) : NULL;
            if (copy) {
                memcpy(copy, f->carry.p, f->carry.len);
                uint64_t base = f->read_off - f->carry.len;
                parse_buffer(f, c, copy, f->carry.len, base, false, true);
                f->carry.len = 0;
                account_read(f, c);
            } else if (c) {
                dr_chunk_discard(c);
            }
        }
        return 0;
    }
    f->at_eof = false;
    bool adopt = (size_t)n > cap / 2;
    dr_chunk *c = dr_chunk_new(st->inst, adopt ? 0 : (size_t)n);
    if (!c)
        return DR_ENOMEM;
    char *data;
    if (adopt) {
        /* the chunk takes the read buffer; we take a new one */
        char *fresh = malloc(cap);
        if (!fresh) {
            dr_chunk_discard(c);
            return DR_ENOMEM;
        }
        data = st->buf;
        dr_chunk_adopt(c, data, cap);
        st->buf = fresh;
    } else {
        data = dr_chunk_alloc(c, (size_t)n);
        if (!data) {
            dr_chunk_discard(c);
            return DR_ENOMEM;
        }
        memcpy(data, st->buf, (size_t)n);
    }
    uint64_t base = f->gz ? f->read_off - carried : f->read_off;
    bool full = (size_t)n == cap;
    size_t used = parse_buffer(f, c, data, (size_t)n, base, full, false);
    if (f->gz) {
        f->carry.len = 0;
        dr_buf_append(&f->carry, data + used, (size_t)n - used);
        f->read_off += (size_t)n - carried;
    } else {
        f->read_off += used;
    }
    if (f->read_off > f->size_seen)
        f->size_seen = f->read_off;
    /* Every checkpoint is then covered by the fingerprint (up to its
     * DR_FP_MAX bytes): a reused inode can never resume from it. */
    if (!f->gz)
        extend_fingerprint(f);
    account_read(f, c);
    sync_join_stats(f);
    return full ? 1 : 0;
}

void tail_file_finish(tail_file *f)
{
    tail_state *st = f->st;
    if (f->closing)
        return;
    /* Whatever complete lines are left, then the last unterminated one. */
    while (tail_file_read_once(f) == 1)
        ;
    if (!f->gz) {
        struct stat sb;
        if (fstat(f->fd, &sb) == 0 && (uint64_t)sb.st_size > f->read_off) {
            size_t n = (size_t)((uint64_t)sb.st_size - f->read_off);
            if (n > (size_t)st->conf->read_buffer)
                n = (size_t)st->conf->read_buffer;
            dr_chunk *c = dr_chunk_new(st->inst, n);
            char *data = c ? dr_chunk_alloc(c, n) : NULL;
            ssize_t got = data ? read_plain(f, data, n) : -1;
            if (got > 0) {
                parse_buffer(f, c, data, (size_t)got, f->read_off, false, true);
                f->read_off += (size_t)got;
                account_read(f, c);
            } else if (c) {
                dr_chunk_discard(c);
            }
        }
    }
    tail_file_flush_partials(f, true);
}

void tail_file_flush_partials(tail_file *f, bool force)
{
    tail_state *st = f->st;
    if (dr_join_pending_count(&f->join) == 0)
        return;
    int64_t timeout = force ? -1 : st->conf->partial_timeout_ms * 1000000;
    if (!force && dr_mono_ns() - dr_join_oldest_mono(&f->join) < timeout)
        return;
    dr_chunk *c = dr_chunk_new(st->inst, 0);
    if (!c)
        return;
    dr_join_flush(&f->join, dr_mono_ns(), timeout, c, &st->jstats);
    sync_join_stats(f);
    account_read(f, c);
}

/* ---- growth and truncation ------------------------------------------------------------- */

void tail_file_take_partials(tail_file *to, tail_file *from, bool same_content)
{
    for (int i = 0; i < 2; i++) {
        dr_join_stream *src = &from->join.s[i], *dst = &to->join.s[i];
        if (!src->active || dst->active)
            continue;
        dr_join_stream moved = *src;
        /* the continuation comes from `to`: until the record is complete,
         * its checkpoint stays where the continuation starts */
        if (!same_content)
            moved.start_offset = to->read_off;
        free(dst->buf);
        *dst = moved;
        memset(src, 0, sizeof *src);
    }
}

void tail_file_handoff(tail_file *from, tail_file *copy)
{
    if (from->ring_len == 0 || from->handoff_to)
        return; /* nothing in flight: the copy's checkpoint may start where we read */
    uint64_t seq = copy->next_seq++;
    if (ring_push(copy, seq, copy->read_off) < 0)
        return;
    copy->ckpt_off = from->ckpt_off;
    tail_file_update_checkpoint(copy);
    from->handoff_to = copy;
    from->handoff_seq = seq;
}

void tail_file_restart(tail_file *f)
{
    tail_state *st = f->st;
    dr_counter_add(st->truncations, 1);
    dr_log(st->inst, DR_LOG_WARN, "file truncated, reading it from the start", "path=%s", f->path);
    /* Chunks in flight describe the old content: their acknowledgements
     * must not move the new content's checkpoint. */
    for (size_t i = 0; i < f->ring_len; i++)
        ring_at(f, i)->stale = true;
    dr_ckpt_remove(st->ckpt, &f->key);
    dr_join_reset(&f->join);
    f->in_long_line = false;
    f->stalled = false;
    if (st->conf->format == 0)
        f->fmt = DR_FMT_UNKNOWN;
    tail_identity(f->fd, false, &f->key, f->prefix);
    f->read_off = f->ckpt_off = 0;
    f->at_eof = false;
    f->hot = true;
    tail_file_update_checkpoint(f);
}

/* True when the first bytes of the file are no longer those we
 * fingerprinted: the file was truncated and written again. */
static bool content_replaced(tail_file *f)
{
    if (f->key.fp_len == 0)
        return false;
    unsigned char now[DR_FP_MAX];
    ssize_t n = pread(f->fd, now, f->key.fp_len, 0);
    return n != (ssize_t)f->key.fp_len || memcmp(now, f->prefix, f->key.fp_len) != 0;
}

/* A file that was short when opened gets a longer fingerprint as it grows,
 * so that a reused inode is told apart from it more surely. */
static void extend_fingerprint(tail_file *f)
{
    if (f->key.fp_len >= DR_FP_MAX || f->size_seen <= f->key.fp_len)
        return;
    dr_ckpt_key old = f->key;
    if (tail_identity(f->fd, false, &f->key, f->prefix) < 0)
        return;
    if (old.fp_len != f->key.fp_len) {
        dr_ckpt_remove(f->st->ckpt, &old);
        tail_file_update_checkpoint(f);
    }
}

int tail_file_poll(tail_file *f)
{
    if (f->closing || f->gz)
        return 0;
    struct stat sb;
    if (fstat(f->fd, &sb) < 0)
        return 0;
    uint64_t size = (uint64_t)sb.st_size;
    if (size < f->read_off || content_replaced(f)) {
        f->size_seen = size;
        return TAIL_TRUNCATED;
    }
    if (size > f->read_off)
        f->hot = true;
    f->size_seen = size;
    extend_fingerprint(f);
    return 0;
}
