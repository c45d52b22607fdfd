/*
 * tail input: internal structures shared by tail.c (the instance: discovery,
 * rotation, wake-ups, checkpoints) and tail_file.c (one open file: identity,
 * reading, parsing, acknowledgements).
 *
 * Vocabulary:
 *   group   the log of one container run, as the kubelet writes it: a
 *           directory and a base name ("/var/log/pods/ns_pod_uid/app",
 *           "0.log"), plus the rotated siblings "0.log.<time>" and
 *           "0.log.<time>.gz" beside it.
 *   file    one open file of a group: the live one, or a rotated, deleted or
 *           compressed one that still has unread data.
 *   offset  bytes of the file's (uncompressed) content. read_off: what has
 *           been read and parsed; ckpt_off: what every output has delivered.
 */
#ifndef DROVER_TAIL_H
#define DROVER_TAIL_H

#include <stdbool.h>
#include <stdint.h>
#include <zlib.h>

#include "checkpoint.h"
#include "drover/plugin.h"
#include "format.h"

typedef struct tail_conf {
    dr_strlist paths;
    dr_strlist exclude;
    int read_from; /* 0 head, 1 tail */
    int format;    /* 0 auto, 1 cri, 2 docker */
    uint64_t max_record_bytes;
    int long_records; /* dr_long_mode */
    int malformed;    /* 0 pass, 1 drop */
    int64_t partial_timeout_ms;
    int64_t refresh_interval_ms;
    int64_t poll_interval_ms;
    int64_t rotate_wait_ms;
    int64_t max_rotated_files;
    uint64_t read_buffer;
    int64_t checkpoint_ttl_ms;
} tail_conf;

typedef struct tail_state tail_state;
typedef struct tail_group tail_group;
typedef struct tail_file tail_file;

/* One emitted chunk of a file, waiting for its acknowledgement. */
typedef struct tail_inflight {
    uint64_t seq;
    uint64_t end_off; /* the checkpoint once this and all before are delivered */
    bool acked;
    bool abandoned;
    bool stale; /* emitted before the file was truncated: moves no checkpoint */
} tail_inflight;

struct tail_file {
    tail_file *next;
    tail_state *st;
    tail_group *group;
    char *path; /* where it was last seen */
    int fd;
    gzFile gz;                       /* compressed rotated file, read sequentially */
    dr_buf carry;                    /* gz: the incomplete last line of the previous read */
    dr_ckpt_key key;                 /* identity */
    unsigned char prefix[DR_FP_MAX]; /* the first bytes, which key.fp_hash covers */
    uint32_t order;                  /* reading order within the group: older rotations first */
    bool compressed;
    uint64_t read_off;
    uint64_t ckpt_off;
    uint64_t size_seen; /* size at the last fstat */
    dr_log_format fmt;
    dr_joiner join;
    bool rotated;      /* the group's path no longer names this file */
    bool close_at_eof; /* nobody writes to it any more (an old rotation found at start) */
    bool hot;          /* may have data: read it on the next pass */
    bool at_eof;
    bool closing; /* fd closed, waiting for acknowledgements */
    bool stalled; /* an ack came back undelivered: do not advance */
    int64_t eof_since_ns;
    /* a physical line longer than the read buffer, being read in pieces */
    bool in_long_line;
    bool long_raw; /* the long line did not parse: pass it on raw */
    int64_t long_time_ns;
    uint8_t long_stream;
    bool long_partial;
    /* copytruncate: the copy that continues this file's old content waits
     * for our chunks of that content before its checkpoint may pass them */
    tail_file *handoff_to;
    uint64_t handoff_seq;
    /* acknowledgements, in emission order */
    tail_inflight *ring;
    size_t ring_cap, ring_head, ring_len;
    uint64_t next_seq;
};

struct tail_group {
    tail_group *next;
    char *dir;
    char *base;
    char *watched; /* the path the glob found (a /var/log/containers link) */
    dr_meta *meta;
    tail_file *live; /* the file now at dir/base, if open */
    int wd;          /* inotify watch on dir, -1 if none */
    uint32_t next_order;
    bool seen; /* found by the current scan */
};

struct tail_state {
    dr_instance *inst;
    tail_conf *conf;
    tail_file *files;
    tail_group *groups;
    dr_ckpt_store *ckpt;
    char *ckpt_path;
    int inotify_fd;
    int *dir_wds; /* watches on the directories of the path globs */
    size_t n_dir_wds;
    uv_poll_t inotify_poll;
    uv_idle_t reader;
    uv_timer_t poll_timer, scan_timer, save_timer;
    bool reader_active;
    bool stopped;
    bool paused;
    bool waiting_room; /* may_emit said no */
    bool drained_reported;
    int handles_open;
    char *buf; /* read buffer, conf->read_buffer bytes */
    /* metrics */
    dr_counter *malformed, *rotations, *truncations, *split, *truncated, *timeouts, *lost_bytes;
    dr_gauge *g_open_files, *g_lag, *g_partials;
    dr_join_stats jstats_reported;
    dr_join_stats jstats;
};

#define TAIL_TRUNCATED 2

/* tail_file.c */
/* Opens a file of a group (the descriptor is taken over). NULL on failure. */
tail_file *tail_file_open(tail_state *st, tail_group *g, const char *path, int fd, bool compressed,
                          uint32_t order);
/* Positions a newly opened file: from its checkpoint when one matches
 * (same inode and fingerprint; or, when by_content, any entry with the same
 * fingerprint: a compressed or copied rotation). Otherwise at `start`
 * (0 = head, UINT64_MAX = its current end). Returns true when a checkpoint
 * matched. */
bool tail_file_position(tail_file *f, uint64_t start, bool by_content);
/* Reads and emits one buffer. Returns 1 if more data may follow at once, 0
 * at the end of the data, TAIL_TRUNCATED when the file turned out to have
 * been truncated (nothing was emitted; see tail_file_poll), negative on
 * error. */
int tail_file_read_once(tail_file *f);
/* Emits partial lines that waited long enough (all of them when force). */
void tail_file_flush_partials(tail_file *f, bool force);
/* Reads what is left of a file nobody writes to any more, taking an
 * unterminated last line as complete, and emits its pending partials. */
void tail_file_finish(tail_file *f);
/* Closes the descriptor; the struct lives on until every chunk is acked. */
void tail_file_close(tail_file *f);
bool tail_file_can_free(const tail_file *f);
void tail_file_free(tail_file *f);
/* Checks growth and truncation with fstat; marks the file hot on growth.
 * Returns TAIL_TRUNCATED when the content was cut or replaced (the caller
 * then looks for a copy and calls tail_file_restart), else 0. */
int tail_file_poll(tail_file *f);
/* Bytes on disk not yet delivered. */
uint64_t tail_file_lag(const tail_file *f);
/* Reads identity and the first DR_FP_MAX bytes (uncompressed) of an open
 * descriptor; leaves its offset at 0. Returns 0 or DR_EIO. */
int tail_identity(int fd, bool compressed, dr_ckpt_key *key, unsigned char *prefix);
/* Looks for a checkpoint of this content (see tail_file_position). */
dr_ckpt_entry *tail_find_checkpoint(tail_state *st, const dr_ckpt_key *key,
                                    const unsigned char *prefix, bool by_content, const char *dir);
/* Records the file's delivered offset in the checkpoint table. */
void tail_file_update_checkpoint(tail_file *f);
/* Moves the pending partial lines of `from` into `to`, the file that
 * continues it (a newer file of the container, or the copy of a truncated
 * file when same_content), for the streams `to` has nothing pending on. */
void tail_file_take_partials(tail_file *to, tail_file *from, bool same_content);
/* The copy of a truncated file continues its old content from where we
 * had read; its checkpoint must not pass what we still have in flight. */
void tail_file_handoff(tail_file *from, tail_file *copy);
/* Counts a truncation and starts the file again from its beginning. */
void tail_file_restart(tail_file *f);

#endif
