/*
 * Tests of the remote_write disk queue (plugins/outputs/remote_write/rw_spill.c):
 * records in order across rotated segments, the total bound and the drop of
 * whole oldest segments (counted exactly), the delivered position kept
 * across a restart, a torn tail and a bad checksum found at open.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../plugins/outputs/remote_write/rw_spill.h"
#include "test.h"

/* A body that zstd cannot shrink much, so sizes are predictable: bytes
 * from a small generator seeded by the record number. */
static void make_body(dr_buf *b, int i, size_t n)
{
    dr_buf_reset(b);
    dr_buf_reserve(b, n);
    uint32_t x = 2654435761u * (uint32_t)(i + 1);
    for (size_t k = 0; k < n; k++) {
        x = x * 1103515245u + 12345u;
        b->p[k] = (char)(x >> 16);
    }
    b->len = n;
}

static rw_spill_info info_of(int i)
{
    rw_spill_info info = {.version = 1, .nsamples = (uint32_t)(i + 1), .max_ts_ms = 1000 + i};
    return info;
}

static void fresh_dir(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", dt_tmpdir(), name);
}

static int count_segment_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strstr(e->d_name, ".seg") != NULL;
    closedir(d);
    return n;
}

static int append_range(rw_spill *s, int from, int to, size_t size)
{
    dr_buf body = {0};
    int rc = 0;
    for (int i = from; i < to && rc == 0; i++) {
        make_body(&body, i, size);
        rw_spill_info info = info_of(i);
        rc = rw_spill_append(s, &info, body.p, body.len);
    }
    dr_buf_free(&body);
    return rc;
}

/* Reads records and checks they are `from`, `from + 1`, ... up to `to`;
 * delivers each when `deliver`. Returns how many matched. */
static int read_expect(rw_spill *s, int from, int to, size_t size, bool deliver)
{
    dr_buf got = {0}, want = {0};
    int ok = 0;
    for (int i = from; i < to; i++) {
        rw_spill_info info;
        rw_spill_pos end;
        if (rw_spill_next(s, &info, &got, &end) != 1)
            break;
        make_body(&want, i, size);
        if (info.nsamples != (uint32_t)(i + 1) || info.max_ts_ms != 1000 + i ||
            got.len != want.len || memcmp(got.p, want.p, got.len) != 0)
            break;
        if (deliver)
            rw_spill_delivered(s, end);
        ok++;
    }
    dr_buf_free(&got);
    dr_buf_free(&want);
    return ok;
}

void test_rw_spill_order_and_rotation(void)
{
    char dir[512];
    fresh_dir(dir, sizeof dir, "spill-rotate");
    rw_spill s;
    dr_error err = {{0}};
    CHECK_INT(rw_spill_open(&s, dir, 1 << 20, 8192, &err), 0);
    CHECK(rw_spill_empty(&s));
    CHECK_INT(append_range(&s, 0, 40, 1500), 0);
    /* about five records of 1.5 KB to a segment of 8 KiB */
    CHECK(s.nsegs >= 7);
    CHECK_INT(count_segment_files(dir), (int)s.nsegs);
    for (size_t i = 0; i < s.nsegs; i++)
        CHECK(s.segs[i].bytes <= 8192);
    CHECK(!rw_spill_empty(&s));
    CHECK_INT(read_expect(&s, 0, 40, 1500, true), 40);
    rw_spill_info info;
    rw_spill_pos end;
    dr_buf raw = {0};
    CHECK_INT(rw_spill_next(&s, &info, &raw, &end), 0);
    CHECK(rw_spill_all_read(&s));
    CHECK(rw_spill_empty(&s));
    /* delivered segments are gone; the writer's stays until it is finished */
    CHECK_INT(count_segment_files(dir), 1);
    rw_spill_finish_writer(&s);
    CHECK_INT(count_segment_files(dir), 0);
    CHECK_INT(s.total_bytes, 0);
    CHECK_INT(s.counts.records_written, 40);
    CHECK_INT(s.counts.records_read, 40);
    /* the next record starts a new segment */
    CHECK_INT(append_range(&s, 40, 41, 100), 0);
    CHECK_INT(count_segment_files(dir), 1);
    CHECK_INT(read_expect(&s, 40, 41, 100, true), 1);
    dr_buf_free(&raw);
    rw_spill_close(&s, true);
}

void test_rw_spill_bound_drops_oldest(void)
{
    char dir[512];
    fresh_dir(dir, sizeof dir, "spill-bound");
    rw_spill s;
    dr_error err = {{0}};
    CHECK_INT(rw_spill_open(&s, dir, 32768, 8192, &err), 0);
    CHECK_INT(append_range(&s, 0, 100, 1500), 0);
    CHECK(s.total_bytes <= 32768);
    CHECK(s.counts.records_dropped_full > 0);
    /* the records left are the newest, whole segments of the oldest went */
    int first = 100 - (int)(s.counts.records_written - s.counts.records_dropped_full);
    uint64_t want_samples = 0;
    for (int i = 0; i < first; i++)
        want_samples += (uint64_t)(i + 1);
    CHECK_INT(s.counts.records_dropped_full, first);
    CHECK_INT(s.counts.samples_dropped_full, want_samples);
    CHECK_INT(read_expect(&s, first, 100, 1500, false), 100 - first);
    /* a record larger than the whole bound is refused, counted */
    dr_buf big = {0};
    make_body(&big, 7, 40000);
    rw_spill_info info = info_of(7);
    CHECK_INT(rw_spill_append(&s, &info, big.p, big.len), DR_EINVAL);
    CHECK_INT(s.counts.records_dropped_too_large, 1);
    CHECK_INT(s.counts.samples_dropped_too_large, 8);
    dr_buf_free(&big);
    rw_spill_close(&s, true);
}

void test_rw_spill_drop_counts_only_unread(void)
{
    char dir[512];
    fresh_dir(dir, sizeof dir, "spill-drop-read");
    rw_spill s;
    dr_error err = {{0}};
    CHECK_INT(rw_spill_open(&s, dir, 32768, 8192, &err), 0);
    CHECK_INT(append_range(&s, 0, 10, 1500), 0);
    /* two records read (one delivered, one in flight): a drop of their
     * segment counts only the three others */
    CHECK_INT(read_expect(&s, 0, 1, 1500, true), 1);
    CHECK_INT(read_expect(&s, 1, 2, 1500, false), 1);
    uint64_t first_seg_records = s.segs[0].records;
    CHECK_INT(first_seg_records, 5);
    CHECK_INT(append_range(&s, 10, 25, 1500), 0);
    CHECK(s.counts.records_dropped_full >= 3);
    /* whatever went, reading goes on with the oldest record left */
    int left = (int)(s.counts.records_written - s.counts.records_dropped_full) - 2;
    CHECK_INT(read_expect(&s, 25 - left, 25, 1500, true), left);
    CHECK(rw_spill_empty(&s));
    rw_spill_close(&s, true);
}

void test_rw_spill_restart_resumes(void)
{
    char dir[512];
    fresh_dir(dir, sizeof dir, "spill-restart");
    rw_spill s;
    dr_error err = {{0}};
    CHECK_INT(rw_spill_open(&s, dir, 1 << 20, 8192, &err), 0);
    CHECK_INT(append_range(&s, 0, 30, 1500), 0);
    CHECK_INT(read_expect(&s, 0, 12, 1500, true), 12);
    /* the sync a timer runs: segments synced, the state file saved */
    rw_spill_sync sync;
    CHECK(rw_spill_sync_take(&s, &sync));
    CHECK(sync.save_state);
    rw_spill_sync_run(&sync);
    CHECK_INT(sync.err, 0);
    rw_spill_sync_free(&sync);
    /* a record read but not delivered is sent again after the restart */
    CHECK_INT(read_expect(&s, 12, 13, 1500, false), 1);
    rw_spill_close(&s, true);

    CHECK_INT(rw_spill_open(&s, dir, 1 << 20, 8192, &err), 0);
    CHECK(!rw_spill_empty(&s));
    CHECK_INT(s.counts.records_dropped_corrupt, 0);
    CHECK_INT(read_expect(&s, 12, 30, 1500, true), 18);
    /* new records go to a new segment, after the old ones */
    CHECK_INT(append_range(&s, 30, 32, 1500), 0);
    CHECK_INT(read_expect(&s, 30, 32, 1500, true), 2);
    CHECK(rw_spill_empty(&s));
    rw_spill_finish_writer(&s);
    CHECK_INT(count_segment_files(dir), 0);
    rw_spill_close(&s, true);

    /* a damaged state file: everything on disk is sent again */
    CHECK_INT(rw_spill_open(&s, dir, 1 << 20, 8192, &err), 0);
    CHECK_INT(append_range(&s, 0, 3, 100), 0);
    CHECK_INT(read_expect(&s, 0, 1, 100, true), 1);
    rw_spill_close(&s, true);
    char path[600];
    snprintf(path, sizeof path, "%s/state", dir);
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    CHECK_INT(pwrite(fd, "X", 1, 9), 1);
    close(fd);
    CHECK_INT(rw_spill_open(&s, dir, 1 << 20, 8192, &err), 0);
    CHECK_INT(read_expect(&s, 0, 3, 100, true), 3);
    rw_spill_close(&s, true);
}

/* The path of the newest segment file of dir. */
static void newest_segment(const char *dir, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    char best[64] = "";
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".seg") && strcmp(e->d_name, best) > 0)
            snprintf(best, sizeof best, "%s", e->d_name);
    if (d)
        closedir(d);
    snprintf(out, cap, "%s/%s", dir, best);
}

void test_rw_spill_torn_tail(void)
{
    char dir[512];
    fresh_dir(dir, sizeof dir, "spill-torn");
    rw_spill s;
    dr_error err = {{0}};
    CHECK_INT(rw_spill_open(&s, dir, 1 << 20, 1 << 20, &err), 0);
    CHECK_INT(append_range(&s, 0, 5, 1500), 0);
    rw_spill_close(&s, true);
    /* a crash in the middle of the last write */
    char path[700];
    newest_segment(dir, path, sizeof path);
    struct stat st;
    CHECK_INT(stat(path, &st), 0);
    CHECK_INT(truncate(path, st.st_size - 700), 0);
    CHECK_INT(rw_spill_open(&s, dir, 1 << 20, 1 << 20, &err), 0);
    CHECK_INT(s.counts.records_dropped_corrupt, 1);
    CHECK_INT(read_expect(&s, 0, 5, 1500, true), 4);
    rw_spill_info info;
    rw_spill_pos end;
    dr_buf raw = {0};
    CHECK_INT(rw_spill_next(&s, &info, &raw, &end), 0);
    dr_buf_free(&raw);
    CHECK(rw_spill_empty(&s));
    rw_spill_close(&s, true);
}

void test_rw_spill_bad_checksum(void)
{
    char dir[512];
    fresh_dir(dir, sizeof dir, "spill-crc");
    rw_spill s;
    dr_error err = {{0}};
    CHECK_INT(rw_spill_open(&s, dir, 1 << 20, 1 << 20, &err), 0);
    CHECK_INT(append_range(&s, 0, 6, 1500), 0);
    rw_spill_close(&s, true);
    /* a second run writes its own segment */
    CHECK_INT(rw_spill_open(&s, dir, 1 << 20, 1 << 20, &err), 0);
    char first[700];
    newest_segment(dir, first, sizeof first);
    CHECK_INT(append_range(&s, 6, 8, 1500), 0);
    rw_spill_close(&s, true);
    /* one flipped byte inside the fourth record of the first segment */
    uint64_t rec = 36;
    int fd = open(first, O_RDWR);
    CHECK(fd >= 0);
    struct stat st;
    fstat(fd, &st);
    uint64_t each = ((uint64_t)st.st_size - 8) / 6;
    char b;
    off_t at = (off_t)(8 + 3 * each + rec + 100);
    CHECK_INT(pread(fd, &b, 1, at), 1);
    b ^= 0x5a;
    CHECK_INT(pwrite(fd, &b, 1, at), 1);
    close(fd);
    CHECK_INT(rw_spill_open(&s, dir, 1 << 20, 1 << 20, &err), 0);
    CHECK_INT(s.counts.records_dropped_corrupt, 1);
    /* the three before it, then the next segment's records */
    CHECK_INT(read_expect(&s, 0, 3, 1500, true), 3);
    CHECK_INT(read_expect(&s, 6, 8, 1500, true), 2);
    CHECK(rw_spill_empty(&s));
    rw_spill_close(&s, true);
}

void test_rw_spill_crc32c(void)
{
    /* the check value of CRC-32C (RFC 3720, B.4) */
    CHECK_INT(rw_crc32c(0, "123456789", 9), 0xe3069283u);
    unsigned char zeros[32] = {0};
    CHECK_INT(rw_crc32c(0, zeros, sizeof zeros), 0x8a9136aau);
}
