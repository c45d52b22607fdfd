/*
 * remote_write spill: segment files of encoded requests (see rw_spill.h for
 * the format and the crash-safety rules). Plain POSIX I/O, no loop: the
 * remote_write output calls it on the loop thread and runs the syncs on a
 * worker (rw_spill_sync_run touches no state of the store).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "compress.h"
#include "rw_spill.h"

#define SEG_MAGIC "DRSPILL1"
#define SEG_HEADER 8
#define REC_HEADER 36
#define STATE_MAGIC "DRSS"
#define STATE_BYTES 32
/* No request body is larger: a length beyond it is damage. */
#define REC_MAX_RAW (256u << 20)

/* ---- CRC32C ---------------------------------------------------------------------------------- */

static uint32_t crc_table[256];
static bool crc_ready;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_table[i] = c;
    }
    crc_ready = true;
}

uint32_t rw_crc32c(uint32_t crc, const void *data, size_t n)
{
    if (!crc_ready)
        crc_init();
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- little-endian fields -------------------------------------------------------------------- */

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* A record header: the length and checksum, then the fields the checksum
 * covers with the payload. */
typedef struct rec_header {
    uint32_t len, crc, raw_len;
    rw_spill_info info;
} rec_header;

static void encode_header(unsigned char *h, uint32_t len, uint32_t raw_len,
                          const rw_spill_info *info)
{
    memset(h, 0, REC_HEADER);
    put_u32(h, len);
    h[8] = info->version;
    put_u32(h + 12, raw_len);
    put_u32(h + 16, info->nsamples);
    put_u32(h + 20, info->nhist);
    put_u32(h + 24, info->nmetas);
    put_u64(h + 28, (uint64_t)info->max_ts_ms);
}

static void decode_header(const unsigned char *h, rec_header *r)
{
    r->len = get_u32(h);
    r->crc = get_u32(h + 4);
    r->info.version = h[8];
    r->raw_len = get_u32(h + 12);
    r->info.nsamples = get_u32(h + 16);
    r->info.nhist = get_u32(h + 20);
    r->info.nmetas = get_u32(h + 24);
    r->info.max_ts_ms = (int64_t)get_u64(h + 28);
}

/* The checksum of a whole record in memory (header and payload). */
static uint32_t record_crc(const unsigned char *rec, size_t n)
{
    return rw_crc32c(0, rec + 8, n - 8);
}

/* ---- paths and segments ---------------------------------------------------------------------- */

static void seg_path(const rw_spill *s, uint64_t seq, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%020llu.seg", s->dir, (unsigned long long)seq);
}

static void state_path(const rw_spill *s, char *out, size_t cap, bool tmp)
{
    snprintf(out, cap, "%s/%s", s->dir, tmp ? "state.tmp" : "state");
}

static rw_spill_seg *seg_find(rw_spill *s, uint64_t seq)
{
    for (size_t i = 0; i < s->nsegs; i++)
        if (s->segs[i].seq == seq)
            return &s->segs[i];
    return NULL;
}

static bool is_writer_seg(const rw_spill *s, uint64_t seq)
{
    return s->wfd >= 0 && s->wseq == seq;
}

static int seg_push(rw_spill *s, rw_spill_seg seg)
{
    if (s->nsegs == s->segs_cap) {
        size_t cap = s->segs_cap ? 2 * s->segs_cap : 16;
        rw_spill_seg *t = realloc(s->segs, cap * sizeof *t);
        if (!t)
            return DR_ENOMEM;
        s->segs = t;
        s->segs_cap = cap;
    }
    s->segs[s->nsegs++] = seg;
    s->total_bytes += seg.bytes;
    return 0;
}

static void reader_close(rw_spill *s)
{
    if (s->rfd >= 0)
        close(s->rfd);
    s->rfd = -1;
}

/* The reader moves to the start of the first segment after `seq`. */
static void reader_move_past(rw_spill *s, uint64_t seq)
{
    reader_close(s);
    uint64_t next = s->next_seq;
    for (size_t i = 0; i < s->nsegs; i++)
        if (s->segs[i].seq > seq && s->segs[i].seq < next)
            next = s->segs[i].seq;
    s->rseq = next;
    s->roff = SEG_HEADER;
    s->rrecords_read = 0;
    s->rsamples_read = 0;
}

/* Syncs and closes a descriptor now (when no sync job can take it). */
static void sync_close_now(int fd)
{
    fdatasync(fd);
    close(fd);
}

/* The writer lets go of its segment: the next append starts a new one. */
static void writer_retire(rw_spill *s)
{
    if (s->wfd < 0)
        return;
    if (s->nretired < RW_SPILL_MAX_RETIRED)
        s->retired[s->nretired++] = s->wfd;
    else
        sync_close_now(s->wfd);
    s->wfd = -1;
}

/* Deletes the oldest segment (its file and its entry). */
static void seg_remove_oldest(rw_spill *s)
{
    rw_spill_seg seg = s->segs[0];
    if (is_writer_seg(s, seg.seq))
        writer_retire(s);
    char path[4096];
    seg_path(s, seg.seq, path, sizeof path);
    unlink(path);
    s->total_bytes -= seg.bytes;
    memmove(&s->segs[0], &s->segs[1], (s->nsegs - 1) * sizeof *s->segs);
    s->nsegs--;
    if (s->rseq == seg.seq)
        reader_move_past(s, seg.seq);
}

/* Makes room for `need` more bytes by dropping whole oldest segments; the
 * records in them not read yet are counted as dropped. */
static void drop_oldest_for(rw_spill *s, uint64_t need)
{
    while (s->nsegs > 0 && s->total_bytes + need > s->max_bytes) {
        const rw_spill_seg *seg = &s->segs[0];
        uint64_t recs = 0, samples = 0;
        if (seg->seq > s->rseq) {
            recs = seg->records;
            samples = seg->samples;
        } else if (seg->seq == s->rseq) {
            recs = seg->records - s->rrecords_read;
            samples = seg->samples - s->rsamples_read;
        }
        s->counts.records_dropped_full += recs;
        s->counts.samples_dropped_full += samples;
        seg_remove_oldest(s);
    }
}

static int writer_start(rw_spill *s)
{
    char path[4096];
    uint64_t seq = s->next_seq;
    seg_path(s, seq, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return DR_EIO;
    if (dr_write_all(fd, SEG_MAGIC, SEG_HEADER) != 0) {
        close(fd);
        unlink(path);
        return DR_EIO;
    }
    rw_spill_seg seg = {.seq = seq, .bytes = SEG_HEADER};
    if (seg_push(s, seg) != 0) {
        close(fd);
        unlink(path);
        return DR_ENOMEM;
    }
    s->next_seq = seq + 1;
    s->wfd = fd;
    s->wseq = seq;
    s->wdirty = true;
    return 0;
}

/* ---- appending ------------------------------------------------------------------------------- */

/* The record for a body in s->scratch: header, then the zstd frame. */
static int build_record(rw_spill *s, const rw_spill_info *info, const void *raw, size_t n)
{
    dr_buf_reset(&s->scratch);
    unsigned char zero[REC_HEADER] = {0};
    int rc = dr_buf_append(&s->scratch, zero, sizeof zero);
    if (rc == 0)
        rc = dr_compress_zstd(raw, n, &s->scratch);
    if (rc != 0)
        return rc;
    unsigned char *h = (unsigned char *)s->scratch.p;
    encode_header(h, (uint32_t)(s->scratch.len - REC_HEADER), (uint32_t)n, info);
    put_u32(h + 4, record_crc(h, s->scratch.len));
    return 0;
}

int rw_spill_append(rw_spill *s, const rw_spill_info *info, const void *raw, size_t n)
{
    if (n > REC_MAX_RAW)
        return DR_EINVAL;
    int rc = build_record(s, info, raw, n);
    if (rc != 0)
        return rc;
    uint64_t rec = s->scratch.len;
    if (rec + SEG_HEADER > s->max_bytes) {
        s->counts.records_dropped_too_large++;
        s->counts.samples_dropped_too_large += info->nsamples + info->nhist;
        return DR_EINVAL;
    }
    rw_spill_seg *cur = s->wfd >= 0 ? seg_find(s, s->wseq) : NULL;
    if (cur && cur->bytes > SEG_HEADER && cur->bytes + rec > s->segment_bytes)
        writer_retire(s);
    drop_oldest_for(s, rec + (s->wfd < 0 ? SEG_HEADER : 0));
    if (s->wfd < 0 && (rc = writer_start(s)) != 0)
        return rc;
    if (dr_write_all(s->wfd, s->scratch.p, rec) != 0) {
        /* what did reach the file is past the segment's valid bytes:
         * never read, and found torn at the next start */
        writer_retire(s);
        return DR_EIO;
    }
    cur = seg_find(s, s->wseq);
    cur->bytes += rec;
    cur->records++;
    cur->samples += info->nsamples + info->nhist;
    s->total_bytes += rec;
    s->wdirty = true;
    s->counts.records_written++;
    return 0;
}

/* ---- reading --------------------------------------------------------------------------------- */

static int pread_all(int fd, void *buf, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return DR_EIO;
        got += (size_t)r;
    }
    return 0;
}

/* Reads the record at `off` of fd into s->scratch (header and payload) and
 * checks it: 0; DR_EINVAL for damage (a length past `limit`, a checksum that
 * does not match, a short file); DR_ENOMEM. */
static int read_record(rw_spill *s, int fd, uint64_t off, uint64_t limit, rec_header *h)
{
    if (off + REC_HEADER > limit)
        return DR_EINVAL;
    dr_buf_reset(&s->scratch);
    if (dr_buf_reserve(&s->scratch, REC_HEADER) != 0)
        return DR_ENOMEM;
    unsigned char *p = (unsigned char *)s->scratch.p;
    if (pread_all(fd, p, REC_HEADER, off) != 0)
        return DR_EINVAL;
    decode_header(p, h);
    if (h->raw_len > REC_MAX_RAW || h->len > ZSTD_compressBound(REC_MAX_RAW) ||
        off + REC_HEADER + h->len > limit)
        return DR_EINVAL;
    if (dr_buf_reserve(&s->scratch, REC_HEADER + (size_t)h->len) != 0)
        return DR_ENOMEM;
    p = (unsigned char *)s->scratch.p;
    if (pread_all(fd, p + REC_HEADER, h->len, off + REC_HEADER) != 0)
        return DR_EINVAL;
    s->scratch.len = REC_HEADER + h->len;
    if (record_crc(p, s->scratch.len) != h->crc)
        return DR_EINVAL;
    return 0;
}

static int decompress_payload(const rw_spill *s, const rec_header *h, dr_buf *raw)
{
    const char *payload = s->scratch.p + REC_HEADER;
    unsigned long long size = ZSTD_getFrameContentSize(payload, h->len);
    if (size != h->raw_len)
        return DR_EINVAL;
    if (dr_buf_reserve(raw, h->raw_len + 1) != 0)
        return DR_ENOMEM;
    size_t got = ZSTD_decompress(raw->p + raw->len, h->raw_len, payload, h->len);
    if (ZSTD_isError(got) || got != h->raw_len)
        return DR_EINVAL;
    raw->len += got;
    return 0;
}

static int reader_open(rw_spill *s)
{
    if (s->rfd >= 0)
        return 0;
    char path[4096];
    seg_path(s, s->rseq, path, sizeof path);
    s->rfd = open(path, O_RDONLY | O_CLOEXEC);
    return s->rfd < 0 ? DR_EIO : 0;
}

/* A damaged record ends its segment: nothing after it can be trusted. */
static void seg_cut_at(rw_spill *s, rw_spill_seg *seg, uint64_t off)
{
    s->counts.records_dropped_corrupt++;
    s->total_bytes -= seg->bytes - off;
    seg->bytes = off;
    seg->records = s->rrecords_read;
    seg->samples = s->rsamples_read;
}

int rw_spill_next(rw_spill *s, rw_spill_info *info, dr_buf *raw, rw_spill_pos *end)
{
    for (;;) {
        rw_spill_seg *seg = seg_find(s, s->rseq);
        if (!seg) {
            if (s->rseq >= s->next_seq)
                return 0;
            reader_move_past(s, s->rseq);
            continue;
        }
        if (s->roff >= seg->bytes) {
            if (is_writer_seg(s, seg->seq))
                return 0; /* caught up with the writer */
            reader_move_past(s, seg->seq);
            continue;
        }
        if (reader_open(s) != 0)
            return DR_EIO;
        rec_header h;
        int rc = read_record(s, s->rfd, s->roff, seg->bytes, &h);
        dr_buf_reset(raw);
        if (rc == 0)
            rc = decompress_payload(s, &h, raw);
        if (rc == DR_ENOMEM)
            return rc;
        if (rc != 0) {
            seg_cut_at(s, seg, s->roff);
            if (is_writer_seg(s, seg->seq))
                writer_retire(s);
            continue;
        }
        s->prev_rseq = s->rseq;
        s->prev_roff = s->roff;
        s->prev_rrecords = s->rrecords_read;
        s->prev_rsamples = s->rsamples_read;
        s->roff += REC_HEADER + h.len;
        s->rrecords_read++;
        s->rsamples_read += h.info.nsamples + h.info.nhist;
        s->counts.records_read++;
        *info = h.info;
        end->seq = s->rseq;
        end->off = s->roff;
        return 1;
    }
}

void rw_spill_unread(rw_spill *s)
{
    if (!seg_find(s, s->prev_rseq))
        return; /* its segment was dropped since */
    if (s->rseq != s->prev_rseq)
        reader_close(s);
    s->rseq = s->prev_rseq;
    s->roff = s->prev_roff;
    s->rrecords_read = s->prev_rrecords;
    s->rsamples_read = s->prev_rsamples;
    s->counts.records_read--;
}

/* ---- delivery -------------------------------------------------------------------------------- */

static bool pos_before(rw_spill_pos a, rw_spill_pos b)
{
    return a.seq < b.seq || (a.seq == b.seq && a.off < b.off);
}

/* True when every record of the oldest segment is delivered and no more
 * will be written to it. */
static bool oldest_done(const rw_spill *s)
{
    const rw_spill_seg *seg = &s->segs[0];
    if (is_writer_seg(s, seg->seq))
        return false;
    if (seg->seq < s->delivered.seq)
        return true;
    return seg->seq == s->delivered.seq && s->delivered.off >= seg->bytes;
}

static void remove_delivered_segments(rw_spill *s)
{
    while (s->nsegs > 0 && oldest_done(s))
        seg_remove_oldest(s);
}

void rw_spill_delivered(rw_spill *s, rw_spill_pos end)
{
    if (pos_before(s->delivered, end)) {
        s->delivered = end;
        s->state_dirty = true;
    }
    remove_delivered_segments(s);
}

bool rw_spill_all_read(const rw_spill *s)
{
    for (size_t i = 0; i < s->nsegs; i++) {
        const rw_spill_seg *seg = &s->segs[i];
        if (seg->seq > s->rseq && seg->records > 0)
            return false;
        if (seg->seq == s->rseq && s->roff < seg->bytes)
            return false;
    }
    return true;
}

bool rw_spill_empty(const rw_spill *s)
{
    for (size_t i = 0; i < s->nsegs; i++) {
        const rw_spill_seg *seg = &s->segs[i];
        if (seg->seq > s->delivered.seq && seg->bytes > SEG_HEADER)
            return false;
        if (seg->seq == s->delivered.seq && s->delivered.off < seg->bytes)
            return false;
    }
    return true;
}

void rw_spill_finish_writer(rw_spill *s)
{
    writer_retire(s);
    remove_delivered_segments(s);
    /* a segment with nothing in it but its header goes too */
    while (s->nsegs > 0 && s->segs[0].records == 0 && !is_writer_seg(s, s->segs[0].seq))
        seg_remove_oldest(s);
}

/* ---- the state file -------------------------------------------------------------------------- */

static void encode_state(rw_spill_pos pos, unsigned char *out)
{
    memset(out, 0, STATE_BYTES);
    memcpy(out, STATE_MAGIC, 4);
    put_u64(out + 8, pos.seq);
    put_u64(out + 16, pos.off);
    put_u32(out + 24, rw_crc32c(0, out, 24));
}

/* The delivered position saved by the last run; {0, 0} when there is none
 * or it is damaged (then every record on disk is sent again). */
static rw_spill_pos read_state(const rw_spill *s)
{
    rw_spill_pos none = {0, 0};
    char path[4096];
    state_path(s, path, sizeof path, false);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return none;
    unsigned char b[STATE_BYTES];
    ssize_t n = read(fd, b, sizeof b);
    close(fd);
    if (n != STATE_BYTES || memcmp(b, STATE_MAGIC, 4) != 0 ||
        get_u32(b + 24) != rw_crc32c(0, b, 24))
        return none;
    rw_spill_pos pos = {get_u64(b + 8), get_u64(b + 16)};
    return pos;
}

/* ---- syncs ----------------------------------------------------------------------------------- */

bool rw_spill_sync_take(rw_spill *s, rw_spill_sync *sync)
{
    memset(sync, 0, sizeof *sync);
    for (size_t i = 0; i < s->nretired; i++)
        sync->fds[sync->nfds++] = s->retired[i];
    s->nretired = 0;
    if (s->wfd >= 0 && s->wdirty) {
        int fd = dup(s->wfd);
        if (fd >= 0) {
            sync->fds[sync->nfds++] = fd;
            s->wdirty = false;
        }
    }
    if (s->state_dirty) {
        char path[4096];
        state_path(s, path, sizeof path, false);
        sync->state_path = strdup(path);
        state_path(s, path, sizeof path, true);
        sync->tmp_path = strdup(path);
        if (sync->state_path && sync->tmp_path) {
            encode_state(s->delivered, sync->state);
            sync->save_state = true;
            s->state_dirty = false;
        }
    }
    return sync->nfds > 0 || sync->save_state;
}

static void note_errno(rw_spill_sync *sync)
{
    if (!sync->err)
        sync->err = errno;
}

static void save_state_file(rw_spill_sync *sync)
{
    int fd = open(sync->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        note_errno(sync);
        return;
    }
    int rc = dr_write_all(fd, sync->state, STATE_BYTES);
    if (rc != 0 || fdatasync(fd) != 0) {
        if (rc != 0)
            errno = -rc;
        note_errno(sync);
        close(fd);
        return;
    }
    close(fd);
    if (rename(sync->tmp_path, sync->state_path) != 0)
        note_errno(sync);
}

void rw_spill_sync_run(rw_spill_sync *sync)
{
    for (size_t i = 0; i < sync->nfds; i++) {
        if (fdatasync(sync->fds[i]) != 0)
            note_errno(sync);
        close(sync->fds[i]);
    }
    sync->nfds = 0;
    if (sync->save_state)
        save_state_file(sync);
}

void rw_spill_sync_free(rw_spill_sync *sync)
{
    for (size_t i = 0; i < sync->nfds; i++)
        close(sync->fds[i]);
    sync->nfds = 0;
    free(sync->state_path);
    free(sync->tmp_path);
    sync->state_path = sync->tmp_path = NULL;
}

/* ---- opening: what an earlier run left ------------------------------------------------------- */

static int seq_compare(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The sequence number of a segment file name, or 0 for any other name. */
static uint64_t seg_name_seq(const char *name)
{
    size_t n = strlen(name);
    if (n != 24 || strcmp(name + 20, ".seg") != 0)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    return v;
}

static int list_segments(const rw_spill *s, uint64_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(s->dir);
    if (!d)
        return DR_EIO;
    size_t cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        uint64_t seq = seg_name_seq(e->d_name);
        if (!seq)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            uint64_t *t = realloc(*out, cap * sizeof *t);
            if (!t) {
                rc = DR_ENOMEM;
                break;
            }
            *out = t;
        }
        (*out)[(*n)++] = seq;
    }
    closedir(d);
    if (*n)
        qsort(*out, *n, sizeof **out, seq_compare);
    return rc;
}

/* Scans a segment of an earlier run: its valid records up to the first
 * damaged one (a torn tail, counted once). For the segment holding the
 * delivered position, the records before it count as read. */
static int scan_segment(rw_spill *s, uint64_t seq, rw_spill_seg *seg)
{
    char path[4096];
    seg_path(s, seq, path, sizeof path);
    memset(seg, 0, sizeof *seg);
    seg->seq = seq;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return DR_EIO;
    off_t size = lseek(fd, 0, SEEK_END);
    char magic[SEG_HEADER];
    if (size < SEG_HEADER || pread_all(fd, magic, SEG_HEADER, 0) != 0 ||
        memcmp(magic, SEG_MAGIC, SEG_HEADER) != 0) {
        close(fd);
        if (size > 0)
            s->counts.records_dropped_corrupt++;
        return 0; /* nothing usable: bytes 0, removed by the caller */
    }
    uint64_t off = SEG_HEADER;
    int rc = 0;
    for (;;) {
        if (off >= (uint64_t)size)
            break;
        rec_header h;
        rc = read_record(s, fd, off, (uint64_t)size, &h);
        if (rc == DR_ENOMEM)
            break;
        if (rc != 0) {
            s->counts.records_dropped_corrupt++;
            rc = 0;
            break;
        }
        off += REC_HEADER + h.len;
        seg->records++;
        seg->samples += h.info.nsamples + h.info.nhist;
        if (seq == s->delivered.seq && off <= s->delivered.off) {
            s->rrecords_read++;
            s->rsamples_read += h.info.nsamples + h.info.nhist;
        }
    }
    close(fd);
    seg->bytes = off;
    return rc;
}

static void unlink_segment(const rw_spill *s, uint64_t seq)
{
    char path[4096];
    seg_path(s, seq, path, sizeof path);
    unlink(path);
}

static int recover(rw_spill *s)
{
    uint64_t *seqs;
    size_t n;
    int rc = list_segments(s, &seqs, &n);
    if (rc != 0) {
        free(seqs);
        return rc;
    }
    s->delivered = read_state(s);
    for (size_t i = 0; i < n && rc == 0; i++) {
        s->next_seq = seqs[i] + 1;
        rw_spill_seg seg;
        if (seqs[i] < s->delivered.seq) {
            unlink_segment(s, seqs[i]); /* delivered before the restart */
            continue;
        }
        rc = scan_segment(s, seqs[i], &seg);
        if (rc == 0 && seg.records == 0)
            unlink_segment(s, seqs[i]);
        else if (rc == 0)
            rc = seg_push(s, seg);
    }
    free(seqs);
    if (rc != 0)
        return rc;
    /* the reader starts where delivery stopped, or at the oldest segment */
    rw_spill_seg *at = seg_find(s, s->delivered.seq);
    if (at && s->delivered.off >= SEG_HEADER && s->delivered.off <= at->bytes) {
        s->rseq = at->seq;
        s->roff = s->delivered.off;
    } else {
        s->rrecords_read = s->rsamples_read = 0;
        s->rseq = s->nsegs ? s->segs[0].seq : s->next_seq;
        s->roff = SEG_HEADER;
        s->delivered.seq = s->rseq;
        s->delivered.off = SEG_HEADER;
    }
    remove_delivered_segments(s);
    return 0;
}

int rw_spill_open(rw_spill *s, const char *dir, uint64_t max_bytes, uint64_t segment_bytes,
                  dr_error *err)
{
    memset(s, 0, sizeof *s);
    s->wfd = s->rfd = -1;
    s->next_seq = 1;
    s->max_bytes = max_bytes;
    s->segment_bytes = segment_bytes;
    s->dir = strdup(dir);
    if (!s->dir)
        return DR_ENOMEM;
    int rc = dr_mkdirs(dir, false);
    if (rc != 0) {
        dr_error_set(err, "cannot create the spill directory %s: %s", dir, strerror(-rc));
        return DR_EIO;
    }
    rc = recover(s);
    if (rc == DR_EIO)
        dr_error_set(err, "cannot read the spill directory %s: %s", dir, strerror(errno));
    else if (rc != 0)
        dr_error_set(err, "out of memory reading the spill directory %s", dir);
    /* a store fuller than a smaller bound set since: drop down to it */
    if (rc == 0)
        drop_oldest_for(s, 0);
    return rc;
}

void rw_spill_close(rw_spill *s, bool save_state)
{
    writer_retire(s);
    if (!save_state)
        s->state_dirty = false;
    rw_spill_sync sync;
    if (rw_spill_sync_take(s, &sync))
        rw_spill_sync_run(&sync);
    rw_spill_sync_free(&sync);
    for (size_t i = 0; i < s->nretired; i++)
        sync_close_now(s->retired[i]);
    s->nretired = 0;
    reader_close(s);
    free(s->segs);
    s->segs = NULL;
    s->nsegs = s->segs_cap = 0;
    free(s->dir);
    s->dir = NULL;
    dr_buf_free(&s->scratch);
}
