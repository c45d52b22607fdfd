/*
 * remote_write spill: the disk queue of encoded requests, for outages that
 * outlast the memory queue.
 *
 * A directory holds numbered segment files (00000000000000000001.seg, ...)
 * and a small state file. A segment starts with an 8-byte magic and holds
 * records, each one request body:
 *
 *   u32 payload length | u32 CRC32C of the rest | u8 version | 3 bytes zero
 *   | u32 raw length | u32 samples | u32 histograms | u32 metadata entries
 *   | i64 newest timestamp (ms) | payload (one zstd frame of the raw body)
 *
 * all little-endian. Records are appended to the newest segment; a segment
 * that would pass segment_bytes is closed and a new one started. The total
 * is bounded by max_bytes: a record that does not fit makes the oldest
 * whole segment go, and its records and samples not yet read are counted
 * as dropped (reason "full").
 *
 * Crash safety: records are written with one write() each, so a SIGKILL
 * leaves them to the kernel; a background fdatasync every second (the
 * caller runs rw_spill_sync_job off the loop) bounds what a power loss
 * can take. The state file holds the position up to which records are
 * delivered; it is written to a temporary file, synced and renamed, so it
 * is always whole, and its own checksum catches the rest. At open, every
 * segment is scanned: the first record whose length or checksum is wrong
 * ends the segment (a torn tail), counted as a corrupt record, and nothing
 * after it is read. The writer never appends to a segment of an earlier
 * run: it starts a new one.
 *
 * Reading is one record at a time, oldest first; rw_spill_delivered moves
 * the delivered position past a record, and a segment is deleted once
 * every record in it is delivered.
 */
#ifndef DROVER_RW_SPILL_H
#define DROVER_RW_SPILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "drover/plugin.h"

/* What a record says of the request it holds. */
typedef struct rw_spill_info {
    uint8_t version; /* the remote-write version of the body */
    uint32_t nsamples, nhist, nmetas;
    int64_t max_ts_ms;
} rw_spill_info;

/* Where a record ends: delivering a record moves the delivered position
 * there. */
typedef struct rw_spill_pos {
    uint64_t seq;
    uint64_t off;
} rw_spill_pos;

/* One segment on disk. */
typedef struct rw_spill_seg {
    uint64_t seq;
    uint64_t bytes;   /* valid bytes (a torn tail is not counted) */
    uint64_t records; /* valid records */
    uint64_t samples; /* samples and histograms in them */
} rw_spill_seg;

/* Counts for the self-metrics; the store only adds to them. */
typedef struct rw_spill_counts {
    uint64_t records_written, records_read;
    uint64_t records_dropped_full, samples_dropped_full;
    uint64_t records_dropped_corrupt;
    uint64_t records_dropped_too_large, samples_dropped_too_large;
} rw_spill_counts;

/* Descriptors retired by rotation wait here for the next sync job, which
 * syncs and closes them off the loop. */
#define RW_SPILL_MAX_RETIRED 16

typedef struct rw_spill {
    char *dir;
    uint64_t max_bytes, segment_bytes;
    rw_spill_seg *segs; /* oldest first */
    size_t nsegs, segs_cap;
    uint64_t total_bytes;
    /* the writer: the newest segment, when it belongs to this run */
    int wfd;       /* -1: none open; the next append starts a segment */
    uint64_t wseq; /* its sequence number */
    uint64_t next_seq;
    bool wdirty; /* written since the last sync */
    /* the reader */
    int rfd;
    uint64_t rseq, roff;    /* the next record to read */
    uint64_t rsamples_read; /* samples read from segment rseq */
    uint64_t rrecords_read; /* records read from segment rseq */
    /* where the reader was before the last record it read */
    uint64_t prev_rseq, prev_roff, prev_rrecords, prev_rsamples;
    rw_spill_pos delivered; /* everything before it is delivered */
    bool state_dirty;       /* delivered moved since the state was saved */
    int retired[RW_SPILL_MAX_RETIRED];
    size_t nretired;
    dr_buf scratch;
    rw_spill_counts counts;
} rw_spill;

/* A sync: the descriptors to fdatasync and close and the state to save,
 * copied from the store on the loop, then run anywhere (rw_spill_sync_run
 * touches nothing of the store). */
typedef struct rw_spill_sync {
    int fds[RW_SPILL_MAX_RETIRED + 1];
    size_t nfds;
    bool save_state;
    char *state_path, *tmp_path;
    unsigned char state[32];
    int err; /* 0, or the first errno */
} rw_spill_sync;

/* Opens (creating) the directory, reads the state file and scans every
 * segment of an earlier run. 0, DR_EIO (err says why) or DR_ENOMEM. */
int rw_spill_open(rw_spill *s, const char *dir, uint64_t max_bytes, uint64_t segment_bytes,
                  dr_error *err);
/* Closes the files (syncing them) and saves the state when save_state
 * (false while a sync that saves it may still run). */
void rw_spill_close(rw_spill *s, bool save_state);

/* Appends one request body (raw: uncompressed protobuf). 0; DR_EIO (the
 * caller keeps the request in memory); DR_ENOMEM; DR_EINVAL when the record
 * alone is larger than max_bytes (counted as too_large). */
int rw_spill_append(rw_spill *s, const rw_spill_info *info, const void *raw, size_t n);

/* The next record not yet read: 1 with info, the raw body in *raw (reset
 * first) and the position it ends at; 0 when every record has been read;
 * DR_EIO or DR_ENOMEM. A record that fails its checksum ends its segment
 * (counted corrupt) and the next segment is read. */
int rw_spill_next(rw_spill *s, rw_spill_info *info, dr_buf *raw, rw_spill_pos *end);

/* The record rw_spill_next returned last is to be read again. */
void rw_spill_unread(rw_spill *s);

/* Every record up to `end` is delivered: segments before it are deleted. */
void rw_spill_delivered(rw_spill *s, rw_spill_pos end);

/* The disk queue has drained: the writer's segment is closed and, once
 * delivered, deleted; the next append starts a new one. */
void rw_spill_finish_writer(rw_spill *s);

/* True when every record on disk has been read. */
bool rw_spill_all_read(const rw_spill *s);
/* True when no record is left on disk undelivered. */
bool rw_spill_empty(const rw_spill *s);

/* Fills a sync with what the store has to sync (the writer's segment, the
 * retired ones) and the state when it moved; false when nothing needs it.
 * The sync owns its descriptors and strings: rw_spill_sync_run then
 * rw_spill_sync_free. */
bool rw_spill_sync_take(rw_spill *s, rw_spill_sync *sync);
void rw_spill_sync_run(rw_spill_sync *sync);
void rw_spill_sync_free(rw_spill_sync *sync);

/* CRC32C (Castagnoli), the checksum of the records and the state file. */
uint32_t rw_crc32c(uint32_t crc, const void *data, size_t n);

#endif
