/*
 * Tests of the checkpoint store: the round trip of awkward paths, and above
 * all that every kind of damaged file (cut short at any byte, a flipped
 * byte, garbage, a newer version) is detected and the previous table used.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "test.h"

/* ---- helpers ---------------------------------------------------------------- */

static const char *ckpt_path(const char *dir, const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!CHECK(f != NULL))
        return;
    CHECK(fwrite(data, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

static dr_ckpt_key key_of(int i)
{
    dr_ckpt_key k = {2049 + (uint64_t)(i % 3), 1000000 + (uint64_t)i * 7, (uint32_t)(i % 257),
                     dr_hash64(&i, sizeof i)};
    if (i == 0) {
        k.dev = UINT64_MAX;
        k.ino = UINT64_MAX;
        k.fp_len = DR_FP_MAX;
    }
    return k;
}

/* Paths chosen to exercise the escaping: spaces, newlines, backslashes,
 * control characters, invalid UTF-8, an empty path. */
static void path_of(int i, char *buf, size_t size)
{
    switch (i % 6) {
    case 0:
        snprintf(buf, size, "/var/log/with space %d.log", i);
        break;
    case 1:
        snprintf(buf, size, "new\nline\r%d", i);
        break;
    case 2:
        snprintf(buf, size, "\xff\xfe bad \xc3 utf8 %d \x7f", i);
        break;
    case 3:
        snprintf(buf, size, "back\\slash\t\\x41 %d #", i);
        break;
    case 4:
        snprintf(buf, size, "/var/log/pods/ns_pod-%d_0b1c/app/0.log", i);
        break;
    default:
        snprintf(buf, size, "%s", i == 5 ? "" : "\x01\x1f\x80~");
        break;
    }
}

static uint64_t offset_of(int i, int version)
{
    return i == 0 ? UINT64_MAX : (uint64_t)i * 1000 + (uint64_t)version;
}

static int64_t seen_of(int i)
{
    return i == 0 ? INT64_MIN : 1764043838 - i;
}

/* Version v of a table holds n entries. */
static void fill(dr_ckpt_store *s, int n, int version)
{
    char path[128];
    for (int i = 0; i < n; i++) {
        dr_ckpt_key k = key_of(i);
        path_of(i, path, sizeof path);
        CHECK_INT(dr_ckpt_set(s, &k, offset_of(i, version), path, seen_of(i)), 0);
    }
}

/* True when s holds exactly version v with n entries. */
static bool holds(dr_ckpt_store *s, int n, int version)
{
    if (dr_ckpt_count(s) != (size_t)n)
        return false;
    char path[128];
    for (int i = 0; i < n; i++) {
        dr_ckpt_key k = key_of(i);
        dr_ckpt_entry *e = dr_ckpt_find(s, &k);
        path_of(i, path, sizeof path);
        if (!e || e->offset != offset_of(i, version) || e->seen_s != seen_of(i) ||
            strcmp(e->path, path) != 0)
            return false;
    }
    return true;
}

/* Saves a table of n entries, version v, at path. */
static void save_version(const char *path, int n, int version)
{
    dr_error err = {{0}};
    dr_ckpt_store *s = dr_ckpt_open(path, NULL, &err);
    if (!CHECK(s != NULL))
        return;
    fill(s, n, version);
    CHECK_INT(dr_ckpt_save(s, &err), 0);
    dr_ckpt_close(s);
}

/* Opens path and checks what it loads: version v with n entries (n == 0:
 * empty) and whether a recovery was reported. */
static void check_open(const char *path, int n, int version, bool want_recovered)
{
    dr_error err = {{0}};
    bool recovered = !want_recovered;
    dr_ckpt_store *s = dr_ckpt_open(path, &recovered, &err);
    if (!CHECK(s != NULL))
        return;
    CHECK(recovered == want_recovered);
    CHECK(holds(s, n, version));
    CHECK(want_recovered ? err.msg[0] != '\0' : err.msg[0] == '\0');
    CHECK(dr_ckpt_dirty(s) == want_recovered);
    dr_ckpt_close(s);
}

/* ---- tests ------------------------------------------------------------------ */

void test_ckpt_hash64(void)
{
    CHECK(dr_hash64("", 0) == 0xcbf29ce484222325ull);
    CHECK(dr_hash64("a", 1) == 0xaf63dc4c8601ec8cull);
    CHECK(dr_hash64("foobar", 6) == 0x85944171f73967e8ull);
}

void test_ckpt_round_trip(void)
{
    const char *path = ckpt_path(dt_tmpdir(), "ckpt");
    save_version(path, 300, 1);
    check_open(path, 300, 1, false);

    /* Readable with cat: a header, one line per entry, the end line. */
    size_t len;
    char *text = dt_read_file(path, &len);
    if (CHECK(text != NULL)) {
        CHECK(strncmp(text, "drover-checkpoint v1\n", 21) == 0);
        CHECK(strstr(text, "/var/log/with\\x20space\\x2012.log\n") != NULL);
        CHECK(strstr(text, "\nend 300 ") != NULL);
        CHECK(text[len - 1] == '\n');
    }
    free(text);
}

void test_ckpt_long_path_clipped(void)
{
    const char *path = ckpt_path(dt_tmpdir(), "ckpt");
    dr_error err = {{0}};
    dr_ckpt_store *s = dr_ckpt_open(path, NULL, &err);
    if (!CHECK(s != NULL))
        return;
    char *longpath = malloc(10000);
    memset(longpath, ' ', 9999);
    longpath[9999] = '\0';
    dr_ckpt_key k = key_of(1);
    CHECK_INT(dr_ckpt_set(s, &k, 5, longpath, 6), 0);
    dr_ckpt_key bad = key_of(2);
    bad.fp_len = DR_FP_MAX + 1;
    CHECK_INT(dr_ckpt_set(s, &bad, 5, "x", 6), DR_EINVAL);
    CHECK_INT(dr_ckpt_save(s, &err), 0);
    dr_ckpt_close(s);

    s = dr_ckpt_open(path, NULL, &err);
    if (CHECK(s != NULL)) {
        dr_ckpt_entry *e = dr_ckpt_find(s, &k);
        if (CHECK(e != NULL))
            CHECK_INT(strlen(e->path), 4096);
        CHECK(dr_ckpt_find(s, &bad) == NULL);
    }
    dr_ckpt_close(s);
    free(longpath);
}

/* A save cut short at any byte: the table before it must come back. */
void test_ckpt_torn_write(void)
{
    const char *dir = dt_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s", ckpt_path(dir, "ckpt"));
    save_version(path, 20, 1);
    save_version(path, 25, 2);

    size_t full;
    char *v2 = dt_read_file(path, &full);
    if (!CHECK(v2 != NULL))
        return;
    for (size_t len = 0; len < full; len++) {
        write_bytes(path, v2, len);
        check_open(path, 20, 1, true);
    }
    write_bytes(path, v2, full);
    check_open(path, 25, 2, false);
    free(v2);
}

/* Every single flipped bit in the file is caught (CRC-32 guarantees it). */
void test_ckpt_flipped_byte(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s", ckpt_path(dt_tmpdir(), "ckpt"));
    save_version(path, 10, 1);
    save_version(path, 10, 2);

    size_t full;
    char *v2 = dt_read_file(path, &full);
    if (!CHECK(v2 != NULL))
        return;
    for (size_t i = 0; i < full; i++) {
        v2[i] ^= 0x04;
        write_bytes(path, v2, full);
        check_open(path, 10, 1, true);
        v2[i] ^= 0x04;
    }
    free(v2);
}

void test_ckpt_garbage_file(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s", ckpt_path(dt_tmpdir(), "ckpt"));
    const char garbage[] = "hello, world\nthis is not a checkpoint\n";
    write_bytes(path, garbage, sizeof garbage - 1);
    check_open(path, 0, 0, true);

    char zeros[4096] = {0};
    write_bytes(path, zeros, sizeof zeros);
    check_open(path, 0, 0, true);
}

void test_ckpt_newer_version(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s", ckpt_path(dt_tmpdir(), "ckpt"));
    const char v9[] = "drover-checkpoint v9\nend 0 00000000\n";
    write_bytes(path, v9, sizeof v9 - 1);
    dr_error err = {{0}};
    bool recovered = false;
    dr_ckpt_store *s = dr_ckpt_open(path, &recovered, &err);
    if (CHECK(s != NULL)) {
        CHECK(recovered);
        CHECK_INT(dr_ckpt_count(s), 0);
        CHECK(strstr(err.msg, "version 9") != NULL);
    }
    dr_ckpt_close(s);
}

void test_ckpt_missing_file(void)
{
    const char *dir = dt_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s", ckpt_path(dir, "ckpt"));
    check_open(path, 0, 0, false);

    /* A stale .tmp from a crashed save is never read. */
    write_bytes(ckpt_path(dir, "ckpt.tmp"), "junk", 4);
    check_open(path, 0, 0, false);
}

/* A save that crashed between moving the table aside and putting the new
 * one in place (the rename fallback) leaves only "<path>.prev". */
void test_ckpt_main_missing_prev_good(void)
{
    const char *dir = dt_tmpdir();
    char path[512], prev[512];
    snprintf(path, sizeof path, "%s", ckpt_path(dir, "ckpt"));
    snprintf(prev, sizeof prev, "%s", ckpt_path(dir, "ckpt.prev"));
    save_version(path, 7, 1);
    CHECK(rename(path, prev) == 0);
    check_open(path, 7, 1, true);
}

void test_ckpt_both_damaged(void)
{
    const char *dir = dt_tmpdir();
    char path[512], prev[512];
    snprintf(path, sizeof path, "%s", ckpt_path(dir, "ckpt"));
    snprintf(prev, sizeof prev, "%s", ckpt_path(dir, "ckpt.prev"));
    save_version(path, 5, 1);
    save_version(path, 5, 2);
    write_bytes(path, "drover-checkpoint v1\n1 2", 24);
    write_bytes(prev, "xx", 2);
    check_open(path, 0, 0, true);

    /* The next save writes a good table again. */
    dr_error err = {{0}};
    dr_ckpt_store *s = dr_ckpt_open(path, NULL, &err);
    if (CHECK(s != NULL)) {
        fill(s, 3, 3);
        CHECK_INT(dr_ckpt_save(s, &err), 0);
    }
    dr_ckpt_close(s);
    check_open(path, 3, 3, false);
}

/* After a recovery from .prev, saving must not replace the good .prev with
 * the damaged file (a crash right after would leave nothing good). */
void test_ckpt_recovery_keeps_prev(void)
{
    const char *dir = dt_tmpdir();
    char path[512], prev[512];
    snprintf(path, sizeof path, "%s", ckpt_path(dir, "ckpt"));
    snprintf(prev, sizeof prev, "%s", ckpt_path(dir, "ckpt.prev"));
    save_version(path, 4, 1);
    save_version(path, 4, 2);
    size_t prev_len;
    char *prev_before = dt_read_file(prev, &prev_len);
    write_bytes(path, "damaged", 7);

    dr_error err = {{0}};
    bool recovered = false;
    dr_ckpt_store *s = dr_ckpt_open(path, &recovered, &err);
    if (CHECK(s != NULL)) {
        CHECK(recovered);
        CHECK(holds(s, 4, 1));
        CHECK(dr_ckpt_dirty(s));
        CHECK_INT(dr_ckpt_save(s, &err), 0);
    }
    dr_ckpt_close(s);

    size_t len;
    char *prev_after = dt_read_file(prev, &len);
    if (CHECK(prev_before && prev_after))
        CHECK_MEM(prev_after, len, prev_before, prev_len);
    check_open(path, 4, 1, false);
    free(prev_before);
    free(prev_after);
}

void test_ckpt_remove(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s", ckpt_path(dt_tmpdir(), "ckpt"));
    dr_error err = {{0}};
    dr_ckpt_store *s = dr_ckpt_open(path, NULL, &err);
    if (!CHECK(s != NULL))
        return;
    fill(s, 3, 1);
    CHECK_INT(dr_ckpt_save(s, &err), 0);

    dr_ckpt_key k1 = key_of(1), k9 = key_of(9);
    dr_ckpt_remove(s, &k9); /* absent: nothing changes */
    CHECK(!dr_ckpt_dirty(s));
    dr_ckpt_remove(s, &k1);
    CHECK(dr_ckpt_dirty(s));
    CHECK_INT(dr_ckpt_count(s), 2);
    CHECK(dr_ckpt_find(s, &k1) == NULL);
    dr_ckpt_key k0 = key_of(0), k2 = key_of(2);
    CHECK(dr_ckpt_find(s, &k0) != NULL);
    CHECK(dr_ckpt_find(s, &k2) != NULL);
    CHECK(dr_ckpt_at(s, 2) == NULL);
    CHECK_INT(dr_ckpt_save(s, &err), 0);
    dr_ckpt_close(s);

    s = dr_ckpt_open(path, NULL, &err);
    if (CHECK(s != NULL)) {
        CHECK_INT(dr_ckpt_count(s), 2);
        CHECK(dr_ckpt_find(s, &k1) == NULL);
    }
    dr_ckpt_close(s);
}

void test_ckpt_dirty(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s", ckpt_path(dt_tmpdir(), "ckpt"));
    dr_error err = {{0}};
    dr_ckpt_store *s = dr_ckpt_open(path, NULL, &err);
    if (!CHECK(s != NULL))
        return;
    CHECK(!dr_ckpt_dirty(s));
    dr_ckpt_key k = key_of(1);
    CHECK_INT(dr_ckpt_set(s, &k, 10, "/a", 100), 0);
    CHECK(dr_ckpt_dirty(s));
    CHECK_INT(dr_ckpt_save(s, &err), 0);
    CHECK(!dr_ckpt_dirty(s));

    /* The same values again, or a NULL path: no change. */
    CHECK_INT(dr_ckpt_set(s, &k, 10, "/a", 100), 0);
    CHECK_INT(dr_ckpt_set(s, &k, 10, NULL, 100), 0);
    CHECK(!dr_ckpt_dirty(s));
    CHECK_STR(dr_ckpt_find(s, &k)->path, "/a");

    /* A clean store is not written: prove it by removing the file. */
    CHECK(unlink(path) == 0);
    CHECK_INT(dr_ckpt_save(s, &err), 0);
    CHECK(access(path, F_OK) != 0);

    CHECK_INT(dr_ckpt_set(s, &k, 11, "/a", 100), 0);
    CHECK(dr_ckpt_dirty(s));
    CHECK_INT(dr_ckpt_save(s, &err), 0);
    CHECK(access(path, F_OK) == 0);
    CHECK_INT(dr_ckpt_set(s, &k, 11, "/b", 100), 0);
    CHECK(dr_ckpt_dirty(s));
    CHECK_STR(dr_ckpt_find(s, &k)->path, "/b");
    dr_ckpt_close(s);
}

void test_ckpt_save_missing_dir(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s", ckpt_path(dt_tmpdir(), "no-such-dir/ckpt"));
    dr_error err = {{0}};
    bool recovered = true;
    dr_ckpt_store *s = dr_ckpt_open(path, &recovered, &err);
    if (!CHECK(s != NULL))
        return;
    CHECK(!recovered);
    dr_ckpt_key k = key_of(3);
    CHECK_INT(dr_ckpt_set(s, &k, 1, "/x", 2), 0);
    CHECK_INT(dr_ckpt_save(s, &err), DR_EIO);
    CHECK(strstr(err.msg, "no-such-dir") != NULL);
    CHECK(dr_ckpt_dirty(s));
    dr_ckpt_close(s);
}
