/*
 * The checkpoint store: where each tailed file has been read to, keyed by
 * file identity. The whole table is small (one entry per file, hundreds at
 * most) and is rewritten as a whole: write a temporary file, fsync it, rename
 * it over the old one, fsync the directory. A reader therefore sees either
 * the old or the new table, never a mix. The file also carries a checksum so
 * that a table damaged in any other way (a torn write on a file system that
 * does not honour the rename order, a truncated copy) is detected: then the
 * previous table, kept as "<path>.prev", is used instead, and failing that
 * the store starts empty and says so.
 */
#ifndef DROVER_CHECKPOINT_H
#define DROVER_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "drover/plugin.h"

/* A file's identity: device and inode, plus a hash of its first fp_len bytes
 * (fp_len is at most DR_FP_MAX; a shorter file has a shorter fingerprint),
 * so that a reused inode is not taken for the old file. */
#define DR_FP_MAX 256

typedef struct dr_ckpt_key {
    uint64_t dev;
    uint64_t ino;
    uint32_t fp_len;
    uint64_t fp_hash;
} dr_ckpt_key;

typedef struct dr_ckpt_entry {
    dr_ckpt_key key;
    uint64_t offset; /* bytes of the file delivered (uncompressed offset for .gz) */
    int64_t seen_s;  /* wall-clock seconds when the file was last seen */
    char *path;      /* last known path, informational */
} dr_ckpt_entry;

typedef struct dr_ckpt_store dr_ckpt_store;

/* Opens (and loads) the store at `path`. A missing file gives an empty
 * store. A damaged file falls back to "<path>.prev"; `*recovered` (may be
 * NULL) is set when that happened or when both were damaged (then the store
 * is empty). Returns NULL only on allocation failure or an unreadable
 * directory, with err filled. */
dr_ckpt_store *dr_ckpt_open(const char *path, bool *recovered, dr_error *err);
void dr_ckpt_close(dr_ckpt_store *s);

/* Entries, in no particular order; valid until the next set/remove. */
size_t dr_ckpt_count(const dr_ckpt_store *s);
dr_ckpt_entry *dr_ckpt_at(dr_ckpt_store *s, size_t i);
/* Exact match on every key field. */
dr_ckpt_entry *dr_ckpt_find(dr_ckpt_store *s, const dr_ckpt_key *k);
/* Inserts or updates. Returns 0 or DR_ENOMEM. */
int dr_ckpt_set(dr_ckpt_store *s, const dr_ckpt_key *k, uint64_t offset, const char *path,
                int64_t seen_s);
void dr_ckpt_remove(dr_ckpt_store *s, const dr_ckpt_key *k);
/* True when something changed since the last save. */
bool dr_ckpt_dirty(const dr_ckpt_store *s);
/* Writes the table crash-safely (see above). Returns 0 or DR_EIO. */
int dr_ckpt_save(dr_ckpt_store *s, dr_error *err);

/* 64-bit FNV-1a, the fingerprint hash. */
uint64_t dr_hash64(const void *data, size_t n);

#endif
