/*
 * The checkpoint store (see checkpoint.h for the interface).
 *
 * THE FILE
 *
 * The table is a small text file that an operator can read with cat:
 *
 *     drover-checkpoint v1
 *     # dev ino fp_len fp_hash offset seen_s path
 *     2049 1837261 256 e71fa2190541574b 104857 1764043838 /var/log/pods/ns_web_1/app/0.log
 *     2049 1837300 41 af63f54c86021707 41 1764043838 /var/log/a\x20b\x0a\xff.log
 *     end 2 e3201472
 *
 * The first line names the format and its version. Then one line per entry:
 * device, inode, fingerprint length, offset and seen_s in decimal, the
 * fingerprint hash as 16 hex digits, and last the path, in which every byte
 * that is a space, a backslash, a control character or not 7-bit ASCII is
 * written as \xHH (so a path with a newline or invalid UTF-8 still fits on
 * one line and comes back byte for byte). An empty path is an empty field.
 * Lines starting with '#' are comments. The last line gives the number of
 * entries and the CRC-32 of every byte before that line.
 *
 * A file is accepted only when it is complete: header, every line ended by a
 * newline, the "end" line present with the right count and checksum, every
 * field well formed, no key twice. Anything else, including a version newer
 * than this code knows, counts as damaged. Because the end line is last and
 * must be newline-terminated, a file cut at any byte is detected even before
 * the checksum is looked at; the checksum catches the rest (a flipped byte, a
 * block of zeros from a file system that lost data after a crash).
 *
 * CRASH SAFETY
 *
 * The table is never updated in place. dr_ckpt_save() does:
 *
 *   1. Write the whole table to "<path>.tmp" and fsync it. A crash here
 *      leaves a partial .tmp that nothing ever reads; the next save
 *      truncates it.
 *
 *   2. Make "<path>.prev" a hard link to the current "<path>" (after
 *      unlinking the old .prev). We link rather than rename so that "<path>"
 *      names a complete table at every instant: a rename would leave a window
 *      in which "<path>" does not exist at all. Both names then refer to the
 *      same inode, which is safe because no file of the store is ever written
 *      after it has been renamed into place.
 *
 *   3. rename("<path>.tmp", "<path>"), which atomically replaces the name.
 *      Because of step 1 the new inode's data is on disk before its name is.
 *
 *   4. fsync the directory so that the renames themselves are durable.
 *
 * The .prev file is there for damage that these rules cannot prevent (a
 * file system that reorders the rename before the data, a file copied by
 * hand, a bad block). Two further rules keep it useful:
 *
 *   - Step 2 is skipped when "<path>" was not known to be good (it was
 *     damaged or missing when the store was opened): otherwise a save that
 *     crashed between steps 2 and 3 would have replaced the one good table
 *     with the damaged one.
 *
 *   - On file systems without hard links, step 2 falls back to renaming
 *     "<path>" to "<path>.prev". A crash between that rename and step 3
 *     leaves no "<path>", so loading treats a missing "<path>" like a
 *     damaged one and tries "<path>.prev".
 *
 * Loading therefore takes "<path>" when it is good, else "<path>.prev" when
 * that is good (and says so through *recovered and err->msg), else starts
 * empty (also saying so, unless neither file exists: a first start). After a
 * recovery the store is dirty, so the next save writes a good "<path>" again.
 *
 * Only real I/O or allocation failures make dr_ckpt_open() fail: a missing
 * file or directory just means an empty store; saving into a directory that
 * does not exist then fails with DR_EIO.
 *
 * LIMITS
 *
 * Entries are kept in a plain array and looked up linearly: a node tails
 * hundreds of files, so a scan is cheaper than keeping an index current.
 * To keep memory and load time bounded whatever the disk holds, the store
 * holds at most DR_CKPT_MAX_ENTRIES entries, a path is clipped to
 * DR_CKPT_PATH_MAX bytes (it is informational), and a file larger than
 * DR_CKPT_MAX_BYTES is neither written nor read.
 */
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "buf.h"

#define DR_CKPT_MAGIC "drover-checkpoint v"
#define DR_CKPT_VERSION 1
#define DR_CKPT_LEGEND "# dev ino fp_len fp_hash offset seen_s path\n"
#define DR_CKPT_MAX_ENTRIES 65536
#define DR_CKPT_PATH_MAX 4096
#define DR_CKPT_MAX_BYTES (64u << 20)

/* Why a file was rejected, for the recovery message. */
typedef struct why {
    char msg[160];
} why;

typedef struct table {
    dr_ckpt_entry *v;
    size_t n, cap;
} table;

struct dr_ckpt_store {
    char *path;      /* the table */
    char *tmp_path;  /* "<path>.tmp", written then renamed over path */
    char *prev_path; /* "<path>.prev", the table before the last save */
    char *dir_path;  /* the directory holding them, fsynced after renames */
    table tab;
    bool dirty;     /* changed since the last load or save */
    bool disk_good; /* path holds a table that was read back or written whole */
};

/* Outcome of reading one file. Real errors are negative DR_E* codes. */
enum { LOAD_OK = 0, LOAD_MISSING = 1, LOAD_DAMAGED = 2 };

/* ---- small helpers ------------------------------------------------------ */

static void set_why(why *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_why(why *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->msg, sizeof w->msg, fmt, ap);
    va_end(ap);
}

static char *str_concat(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *s = malloc(na + nb + 1);
    if (!s)
        return NULL;
    memcpy(s, a, na);
    memcpy(s + na, b, nb + 1);
    return s;
}

/* The directory part of path: "." when there is none, "/" for "/x". */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return str_concat(".", "");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

/* A private copy of a path, clipped to DR_CKPT_PATH_MAX bytes. */
static char *path_dup(const char *path)
{
    size_t n = strnlen(path, DR_CKPT_PATH_MAX);
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    memcpy(p, path, n);
    p[n] = '\0';
    return p;
}

static bool key_equal(const dr_ckpt_key *a, const dr_ckpt_key *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->fp_len == b->fp_len &&
           a->fp_hash == b->fp_hash;
}

/* ---- the in-memory table -------------------------------------------------- */

static void table_free(table *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].path);
    free(t->v);
    t->v = NULL;
    t->n = t->cap = 0;
}

/* Makes room for one more entry. DR_ENOMEM when memory or the bound runs out. */
static int table_reserve_one(table *t)
{
    if (t->n < t->cap)
        return 0;
    if (t->cap >= DR_CKPT_MAX_ENTRIES)
        return DR_ENOMEM;
    size_t cap = t->cap ? t->cap * 2 : 16;
    if (cap > DR_CKPT_MAX_ENTRIES)
        cap = DR_CKPT_MAX_ENTRIES;
    dr_ckpt_entry *v = realloc(t->v, cap * sizeof *v);
    if (!v)
        return DR_ENOMEM;
    t->v = v;
    t->cap = cap;
    return 0;
}

static dr_ckpt_entry *table_find(table *t, const dr_ckpt_key *k)
{
    for (size_t i = 0; i < t->n; i++) {
        if (key_equal(&t->v[i].key, k))
            return &t->v[i];
    }
    return NULL;
}

static int compare_keys(const void *pa, const void *pb)
{
    const dr_ckpt_key *a = pa, *b = pb;
    if (a->dev != b->dev)
        return a->dev < b->dev ? -1 : 1;
    if (a->ino != b->ino)
        return a->ino < b->ino ? -1 : 1;
    if (a->fp_len != b->fp_len)
        return a->fp_len < b->fp_len ? -1 : 1;
    if (a->fp_hash != b->fp_hash)
        return a->fp_hash < b->fp_hash ? -1 : 1;
    return 0;
}

/* Sorting a copy of the keys finds duplicates in O(n log n), where calling
 * table_find for every loaded entry would be quadratic. */
static int table_has_duplicates(const table *t, bool *dup)
{
    *dup = false;
    if (t->n < 2)
        return 0;
    dr_ckpt_key *keys = malloc(t->n * sizeof *keys);
    if (!keys)
        return DR_ENOMEM;
    for (size_t i = 0; i < t->n; i++)
        keys[i] = t->v[i].key;
    qsort(keys, t->n, sizeof *keys, compare_keys);
    for (size_t i = 1; i < t->n && !*dup; i++)
        *dup = compare_keys(&keys[i - 1], &keys[i]) == 0;
    free(keys);
    return 0;
}

/* ---- writing the file ------------------------------------------------------ */

static bool byte_needs_escape(unsigned char c)
{
    return c <= ' ' || c == '\\' || c >= 0x7f;
}

static int render_path(dr_buf *out, const char *path)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if (!byte_needs_escape(*p)) {
            if (dr_buf_putc(out, (char)*p) < 0)
                return DR_ENOMEM;
            continue;
        }
        char esc[4] = {'\\', 'x', hex[*p >> 4], hex[*p & 15]};
        if (dr_buf_append(out, esc, sizeof esc) < 0)
            return DR_ENOMEM;
    }
    return 0;
}

static int render_entry(dr_buf *out, const dr_ckpt_entry *e)
{
    if (dr_buf_printf(
            out, "%" PRIu64 " %" PRIu64 " %" PRIu32 " %016" PRIx64 " %" PRIu64 " %" PRId64 " ",
            e->key.dev, e->key.ino, e->key.fp_len, e->key.fp_hash, e->offset, e->seen_s) < 0)
        return DR_ENOMEM;
    if (render_path(out, e->path) < 0)
        return DR_ENOMEM;
    return dr_buf_putc(out, '\n');
}

/* The whole file: header, legend, entries, then the end line whose CRC
 * covers everything before it. */
static int render_table(const table *t, dr_buf *out)
{
    if (dr_buf_printf(out, "%s%d\n%s", DR_CKPT_MAGIC, DR_CKPT_VERSION, DR_CKPT_LEGEND) < 0)
        return DR_ENOMEM;
    for (size_t i = 0; i < t->n; i++) {
        if (render_entry(out, &t->v[i]) < 0)
            return DR_ENOMEM;
    }
    uLong crc = crc32(crc32(0L, Z_NULL, 0), (const Bytef *)out->p, (uInt)out->len);
    if (dr_buf_printf(out, "end %zu %08lx\n", t->n, (unsigned long)crc) < 0)
        return DR_ENOMEM;
    return 0;
}

/* Step 1: the new table in "<path>.tmp", on disk before anything renames it. */
static int write_tmp_file(dr_ckpt_store *s, const dr_buf *data, dr_error *err)
{
    int fd = open(s->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        dr_error_set(err, "checkpoint: create %s: %s", s->tmp_path, strerror(errno));
        return DR_EIO;
    }
    const char *what = NULL;
    if (dr_write_all(fd, data->p, data->len) < 0)
        what = "write";
    else if (fsync(fd) < 0)
        what = "fsync";
    int saved = errno;
    if (close(fd) < 0 && !what) {
        what = "close";
        saved = errno;
    }
    if (what) {
        dr_error_set(err, "checkpoint: %s %s: %s", what, s->tmp_path, strerror(saved));
        unlink(s->tmp_path);
        return DR_EIO;
    }
    return 0;
}

static bool link_unsupported(int e)
{
    return e == EPERM || e == ENOTSUP || e == EOPNOTSUPP || e == EMLINK || e == ENOSYS;
}

/* Step 2: keep the current table as "<path>.prev". Skipped unless the current
 * file is known good, so that a good .prev is never replaced by a bad table. */
static int keep_previous(dr_ckpt_store *s, dr_error *err)
{
    if (!s->disk_good)
        return 0;
    if (unlink(s->prev_path) < 0 && errno != ENOENT) {
        dr_error_set(err, "checkpoint: unlink %s: %s", s->prev_path, strerror(errno));
        return DR_EIO;
    }
    if (link(s->path, s->prev_path) == 0 || errno == ENOENT)
        return 0; /* ENOENT: someone removed the table; nothing to keep */
    if (link_unsupported(errno) && rename(s->path, s->prev_path) == 0)
        return 0; /* a brief window without "<path>"; loading copes (see top) */
    dr_error_set(err, "checkpoint: keep %s as %s: %s", s->path, s->prev_path, strerror(errno));
    return DR_EIO;
}

static int fsync_dir(const char *dir, dr_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        dr_error_set(err, "checkpoint: open directory %s: %s", dir, strerror(errno));
        return DR_EIO;
    }
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    if (rc < 0) {
        dr_error_set(err, "checkpoint: fsync directory %s: %s", dir, strerror(saved));
        return DR_EIO;
    }
    return 0;
}

/* Steps 2 to 4, once the temporary file is safely on disk. */
static int install_tmp_file(dr_ckpt_store *s, dr_error *err)
{
    int rc = keep_previous(s, err);
    if (rc < 0) {
        unlink(s->tmp_path);
        return rc;
    }
    if (rename(s->tmp_path, s->path) < 0) {
        dr_error_set(err, "checkpoint: rename %s to %s: %s", s->tmp_path, s->path, strerror(errno));
        unlink(s->tmp_path);
        return DR_EIO;
    }
    return fsync_dir(s->dir_path, err);
}

/* Returns 0, DR_EIO, or DR_ENOMEM when the table cannot even be rendered;
 * on failure the store stays dirty so that the next save tries again. */
int dr_ckpt_save(dr_ckpt_store *s, dr_error *err)
{
    if (!s->dirty)
        return 0;
    dr_buf data = {0};
    int rc = render_table(&s->tab, &data);
    if (rc < 0) {
        dr_error_set(err, "checkpoint %s: out of memory", s->path);
    } else if (data.len > DR_CKPT_MAX_BYTES) {
        dr_error_set(err, "checkpoint %s: table of %zu bytes is over the %u byte limit", s->path,
                     data.len, DR_CKPT_MAX_BYTES);
        rc = DR_EIO;
    } else {
        rc = write_tmp_file(s, &data, err);
        if (rc == 0)
            rc = install_tmp_file(s, err);
    }
    dr_buf_free(&data);
    if (rc == 0) {
        s->dirty = false;
        s->disk_good = true;
    }
    return rc;
}

/* ---- reading the file ---------------------------------------------------- */

/* A cursor over one line of the file; parsing never reads past `end`. */
typedef struct cursor {
    const char *p, *end;
} cursor;

static bool expect_char(cursor *c, char ch)
{
    if (c->p == c->end || *c->p != ch)
        return false;
    c->p++;
    return true;
}

static bool parse_u64(cursor *c, uint64_t *v)
{
    const char *start = c->p;
    uint64_t x = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        unsigned d = (unsigned)(*c->p - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
        c->p++;
    }
    *v = x;
    return c->p > start;
}

static bool parse_i64(cursor *c, int64_t *v)
{
    bool neg = expect_char(c, '-');
    uint64_t mag;
    if (!parse_u64(c, &mag))
        return false;
    if (neg ? mag > (uint64_t)INT64_MAX + 1 : mag > (uint64_t)INT64_MAX)
        return false;
    *v = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return true;
}

/* Exactly `ndigits` hex digits. */
static bool parse_hex(cursor *c, int ndigits, uint64_t *v)
{
    if (c->end - c->p < ndigits)
        return false;
    uint64_t x = 0;
    for (int i = 0; i < ndigits; i++) {
        int d = dr_hex_value(*c->p++);
        if (d < 0)
            return false;
        x = x << 4 | (uint64_t)d;
    }
    *v = x;
    return true;
}

/* The rest of the line as an escaped path. Returns 0, 1 when malformed, or
 * DR_ENOMEM. */
static int parse_path(cursor *c, char **out)
{
    size_t room = (size_t)(c->end - c->p);
    if (room > DR_CKPT_PATH_MAX * 4)
        return 1;
    char *path = malloc(room + 1), *w = path;
    if (!path)
        return DR_ENOMEM;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p++;
        uint64_t byte;
        if (ch != '\\') {
            if (byte_needs_escape(ch))
                goto malformed;
            *w++ = (char)ch;
        } else if (expect_char(c, 'x') && parse_hex(c, 2, &byte) && byte != 0) {
            *w++ = (char)byte;
        } else {
            goto malformed;
        }
    }
    *w = '\0';
    *out = path;
    return 0;
malformed:
    free(path);
    return 1;
}

/* One entry line (without its newline) appended to t. Returns 0, 1 when
 * malformed, or DR_ENOMEM. */
static int parse_entry(cursor *c, table *t)
{
    dr_ckpt_entry e = {0};
    uint64_t fp_len;
    if (!parse_u64(c, &e.key.dev) || !expect_char(c, ' ') || !parse_u64(c, &e.key.ino) ||
        !expect_char(c, ' ') || !parse_u64(c, &fp_len) || fp_len > DR_FP_MAX ||
        !expect_char(c, ' ') || !parse_hex(c, 16, &e.key.fp_hash) || !expect_char(c, ' ') ||
        !parse_u64(c, &e.offset) || !expect_char(c, ' ') || !parse_i64(c, &e.seen_s) ||
        !expect_char(c, ' '))
        return 1;
    e.key.fp_len = (uint32_t)fp_len;
    if (table_reserve_one(t) < 0)
        return DR_ENOMEM;
    int rc = parse_path(c, &e.path);
    if (rc != 0)
        return rc;
    t->v[t->n++] = e;
    return 0;
}

/* The header line: the magic and a version this code understands. */
static bool check_header(const char *data, size_t len, const char **body, why *w)
{
    size_t mlen = strlen(DR_CKPT_MAGIC);
    if (len < mlen || memcmp(data, DR_CKPT_MAGIC, mlen) != 0) {
        if (len < mlen && memcmp(data, DR_CKPT_MAGIC, len) == 0)
            set_why(w, "truncated (%zu bytes)", len);
        else
            set_why(w, "not a drover checkpoint file");
        return false;
    }
    cursor c = {data + mlen, data + len};
    uint64_t version;
    if (!parse_u64(&c, &version) || !expect_char(&c, '\n')) {
        set_why(w, "malformed header line");
        return false;
    }
    if (version != DR_CKPT_VERSION) {
        set_why(w, "unsupported format version %" PRIu64 " (this drover reads %d)", version,
                DR_CKPT_VERSION);
        return false;
    }
    *body = c.p;
    return true;
}

/* The end line: checks the file is complete and its checksum, and gives the
 * entry count and where the entries stop. */
static bool check_trailer(const char *data, size_t len, const char **trailer, uint64_t *count,
                          why *w)
{
    if (data[len - 1] != '\n') {
        set_why(w, "truncated (no final newline)");
        return false;
    }
    const char *line = data + len - 1;
    while (line > data && line[-1] != '\n')
        line--;
    cursor c = {line, data + len - 1};
    uint64_t crc;
    if (!expect_char(&c, 'e') || !expect_char(&c, 'n') || !expect_char(&c, 'd') ||
        !expect_char(&c, ' ') || !parse_u64(&c, count) || !expect_char(&c, ' ') ||
        !parse_hex(&c, 8, &crc) || c.p != c.end) {
        set_why(w, "truncated (no valid end line)");
        return false;
    }
    uLong want = crc32(crc32(0L, Z_NULL, 0), (const Bytef *)data, (uInt)(line - data));
    if (crc != want) {
        set_why(w, "checksum mismatch");
        return false;
    }
    *trailer = line;
    return true;
}

/* Parses a whole file into t (empty on entry). Returns LOAD_OK, LOAD_DAMAGED
 * with the reason in w (t left empty), or DR_ENOMEM. */
static int parse_table(const char *data, size_t len, table *t, why *w)
{
    const char *p, *trailer;
    uint64_t count;
    if (len == 0) {
        set_why(w, "empty file");
        return LOAD_DAMAGED;
    }
    if (!check_header(data, len, &p, w) || !check_trailer(data, len, &trailer, &count, w))
        return LOAD_DAMAGED;
    int lineno = 1;
    while (p < trailer) {
        const char *nl = memchr(p, '\n', (size_t)(trailer - p));
        lineno++;
        cursor c = {p, nl};
        if (*p != '#' && t->n == DR_CKPT_MAX_ENTRIES) {
            set_why(w, "more than %d entries", DR_CKPT_MAX_ENTRIES);
            goto damaged;
        }
        int rc = *p == '#' ? 0 : parse_entry(&c, t);
        if (rc < 0)
            goto fail;
        if (rc > 0) {
            set_why(w, "line %d: malformed entry", lineno);
            goto damaged;
        }
        p = nl + 1;
    }
    if (count != t->n) {
        set_why(w, "end line counts %" PRIu64 " entries, file has %zu", count, t->n);
        goto damaged;
    }
    bool dup;
    if (table_has_duplicates(t, &dup) < 0)
        goto fail;
    if (dup) {
        set_why(w, "the same file appears twice");
        goto damaged;
    }
    return LOAD_OK;
damaged:
    table_free(t);
    return LOAD_DAMAGED;
fail:
    table_free(t);
    return DR_ENOMEM;
}

/* Reads a whole file. Returns LOAD_OK with *data (NUL-terminated, caller
 * frees), LOAD_MISSING, LOAD_DAMAGED when it is too large to be ours, or
 * DR_EIO / DR_ENOMEM with err filled. */
static int read_file(const char *path, char **data, size_t *len, why *w, dr_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return LOAD_MISSING;
        dr_error_set(err, "checkpoint: open %s: %s", path, strerror(errno));
        return DR_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        dr_error_set(err, "checkpoint: stat %s: %s", path, strerror(errno));
        close(fd);
        return DR_EIO;
    }
    if (!S_ISREG(st.st_mode)) {
        dr_error_set(err, "checkpoint: %s is not a regular file", path);
        close(fd);
        return DR_EIO;
    }
    if (st.st_size > (off_t)DR_CKPT_MAX_BYTES) {
        set_why(w, "too large (%lld bytes)", (long long)st.st_size);
        close(fd);
        return LOAD_DAMAGED;
    }
    size_t cap = (size_t)st.st_size, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        dr_error_set(err, "checkpoint: out of memory reading %s", path);
        close(fd);
        return DR_ENOMEM;
    }
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            dr_error_set(err, "checkpoint: read %s: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return DR_EIO;
        }
        if (r == 0)
            break; /* shrank since fstat: parse what there is */
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return LOAD_OK;
}

/* Loads one file into t (empty on entry). Returns LOAD_OK, LOAD_MISSING,
 * LOAD_DAMAGED (reason in w), or a negative DR_E* with err filled. */
static int load_file(const char *path, table *t, why *w, dr_error *err)
{
    char *data;
    size_t len;
    int rc = read_file(path, &data, &len, w, err);
    if (rc != LOAD_OK)
        return rc;
    rc = parse_table(data, len, t, w);
    free(data);
    if (rc == DR_ENOMEM)
        dr_error_set(err, "checkpoint: out of memory loading %s", path);
    return rc;
}

/* ---- the store -------------------------------------------------------------- */

static dr_ckpt_store *store_new(const char *path)
{
    dr_ckpt_store *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->path = str_concat(path, "");
    s->tmp_path = str_concat(path, ".tmp");
    s->prev_path = str_concat(path, ".prev");
    s->dir_path = dir_of(path);
    if (!s->path || !s->tmp_path || !s->prev_path || !s->dir_path) {
        dr_ckpt_close(s);
        return NULL;
    }
    return s;
}

/* The main file was missing or damaged (main_rc, reason in main_why): falls
 * back to "<path>.prev". Returns 0 or a negative DR_E*. */
static int load_fallback(dr_ckpt_store *s, int main_rc, const why *main_why, bool *recovered,
                         dr_error *err)
{
    why prev_why = {{0}};
    int rc = load_file(s->prev_path, &s->tab, &prev_why, err);
    if (rc < 0)
        return rc;
    if (main_rc == LOAD_MISSING && rc == LOAD_MISSING)
        return 0; /* a first start */
    const char *main_state = main_rc == LOAD_MISSING ? "missing" : main_why->msg;
    if (rc == LOAD_OK)
        dr_error_set(err, "checkpoint %s: %s; restored the previous table from %s", s->path,
                     main_state, s->prev_path);
    else
        dr_error_set(err, "checkpoint %s: %s; %s: %s; starting with no checkpoints", s->path,
                     main_state, s->prev_path, rc == LOAD_MISSING ? "missing" : prev_why.msg);
    if (recovered)
        *recovered = true;
    s->dirty = true; /* so that the next save repairs the file */
    return 0;
}

dr_ckpt_store *dr_ckpt_open(const char *path, bool *recovered, dr_error *err)
{
    if (recovered)
        *recovered = false;
    dr_ckpt_store *s = store_new(path);
    if (!s) {
        dr_error_set(err, "checkpoint %s: out of memory", path);
        return NULL;
    }
    why main_why = {{0}};
    int rc = load_file(s->path, &s->tab, &main_why, err);
    if (rc == LOAD_OK)
        s->disk_good = true;
    else if (rc > 0)
        rc = load_fallback(s, rc, &main_why, recovered, err);
    if (rc < 0) {
        dr_ckpt_close(s);
        return NULL;
    }
    return s;
}

void dr_ckpt_close(dr_ckpt_store *s)
{
    if (!s)
        return;
    table_free(&s->tab);
    free(s->path);
    free(s->tmp_path);
    free(s->prev_path);
    free(s->dir_path);
    free(s);
}

size_t dr_ckpt_count(const dr_ckpt_store *s)
{
    return s->tab.n;
}

dr_ckpt_entry *dr_ckpt_at(dr_ckpt_store *s, size_t i)
{
    return i < s->tab.n ? &s->tab.v[i] : NULL;
}

dr_ckpt_entry *dr_ckpt_find(dr_ckpt_store *s, const dr_ckpt_key *k)
{
    return table_find(&s->tab, k);
}

/* Updates an existing entry; the store turns dirty only on a real change so
 * that re-setting the same values costs no write. A NULL path keeps the old. */
static int update_entry(dr_ckpt_store *s, dr_ckpt_entry *e, uint64_t offset, const char *path,
                        int64_t seen_s)
{
    char *newpath = NULL;
    if (path && strncmp(e->path, path, DR_CKPT_PATH_MAX) != 0) {
        newpath = path_dup(path);
        if (!newpath)
            return DR_ENOMEM;
    }
    if (newpath) {
        free(e->path);
        e->path = newpath;
        s->dirty = true;
    }
    if (e->offset != offset || e->seen_s != seen_s) {
        e->offset = offset;
        e->seen_s = seen_s;
        s->dirty = true;
    }
    return 0;
}

/* Beyond checkpoint.h: a NULL path means "unknown" (an update keeps the old
 * one, a new entry gets ""); DR_EINVAL for fp_len > DR_FP_MAX; DR_ENOMEM also
 * when the store already holds DR_CKPT_MAX_ENTRIES entries. */
int dr_ckpt_set(dr_ckpt_store *s, const dr_ckpt_key *k, uint64_t offset, const char *path,
                int64_t seen_s)
{
    if (k->fp_len > DR_FP_MAX)
        return DR_EINVAL; /* would make a file that does not load */
    dr_ckpt_entry *e = table_find(&s->tab, k);
    if (e)
        return update_entry(s, e, offset, path, seen_s);
    if (table_reserve_one(&s->tab) < 0)
        return DR_ENOMEM;
    char *p = path_dup(path ? path : "");
    if (!p)
        return DR_ENOMEM;
    s->tab.v[s->tab.n++] = (dr_ckpt_entry){*k, offset, seen_s, p};
    s->dirty = true;
    return 0;
}

void dr_ckpt_remove(dr_ckpt_store *s, const dr_ckpt_key *k)
{
    dr_ckpt_entry *e = table_find(&s->tab, k);
    if (!e)
        return;
    free(e->path);
    *e = s->tab.v[--s->tab.n]; /* order does not matter: move the last one in */
    s->dirty = true;
}

bool dr_ckpt_dirty(const dr_ckpt_store *s)
{
    return s->dirty;
}

uint64_t dr_hash64(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64-bit offset basis */
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull; /* FNV 64-bit prime */
    }
    return h;
}
