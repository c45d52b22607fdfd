/*
 * tail input: container log files, as the kubelet and the container runtime
 * write them, read with crash-safe checkpoints.
 *
 * Discovery. The `paths` globs (by default the .log files of /var/log/containers, the
 * kubelet's symlinks) are expanded at start, whenever inotify reports a
 * change in their directories, and every refresh_interval as a safety net.
 * Each match is resolved to the real file; its directory and base name make
 * a group (one container run: /var/log/pods/<ns>_<pod>_<uid>/<container>/0.log).
 *
 * Rotation. The kubelet renames 0.log to 0.log.<time>, the runtime opens a
 * new 0.log, the older rotation is gzipped and the oldest deleted. A file we
 * have open keeps its identity through the rename, so we keep reading it to
 * its end and close it rotate_wait after the last data; the new 0.log is a
 * new file of the same group and is read from its start. Deleted files are
 * read to their end through the open descriptor. logrotate's copytruncate
 * is detected as a truncation; the copy beside the file, recognised by its
 * fingerprint, supplies what had not been read yet.
 *
 * The source is the buffer. When an output falls behind, reading stops
 * (dr_input_may_emit) and rotated or deleted files stay open until they are
 * drained, up to max_rotated_files per container; past that the oldest is
 * closed and the unread bytes are counted as lost.
 *
 * Wake-ups. inotify (IN_MODIFY on the groups' directories) marks files hot;
 * a poll every poll_interval checks sizes with fstat in case an event was
 * missed, and detects truncation. An idle handle reads one buffer from each
 * hot file per loop turn, so one busy file cannot starve the others and the
 * loop keeps serving outputs and /metrics while catching up.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <glob.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "tail.h"

static const char *const read_from_choices[] = {"head", "tail", NULL};
static const char *const format_choices[] = {"auto", "cri", "docker", NULL};
static const char *const long_choices[] = {"split", "truncate", NULL};
static const char *const malformed_choices[] = {"pass", "drop", NULL};

static const dr_option tail_options[] = {
    {"paths", DR_OPT_STRLIST, offsetof(tail_conf, paths), "/var/log/containers/*.log", 0, NULL, 0,
     0, "Glob patterns of the files to read. Symbolic links are followed to the real files."},
    {"exclude", DR_OPT_STRLIST, offsetof(tail_conf, exclude), NULL, 0, NULL, 0, 0,
     "Glob patterns of paths (as matched by `paths`) to leave alone."},
    {"read_from", DR_OPT_ENUM, offsetof(tail_conf, read_from), "head", 0, read_from_choices, 0, 0,
     "Where to start in a file that has no checkpoint: `head` reads it whole (and the rotated "
     "files of the same container not read yet), `tail` only what is written from now on. A "
     "file with a checkpoint always resumes from it."},
    {"format", DR_OPT_ENUM, offsetof(tail_conf, format), "auto", 0, format_choices, 0, 0,
     "Line format: `cri` (containerd, CRI-O), `docker` (json-file), or `auto`, detected per "
     "file from its first line."},
    {"max_record_bytes", DR_OPT_SIZE, offsetof(tail_conf, max_record_bytes), "1MiB", 0, NULL, 1024,
     (int64_t)1 << 30,
     "Largest record, after joining partial lines. A longer one is split into pieces of this "
     "size or truncated (`long_records`), and counted."},
    {"long_records", DR_OPT_ENUM, offsetof(tail_conf, long_records), "split", 0, long_choices, 0, 0,
     "What to do with a record longer than max_record_bytes: `split` it into pieces, or "
     "`truncate` it and discard the rest."},
    {"malformed", DR_OPT_ENUM, offsetof(tail_conf, malformed), "pass", 0, malformed_choices, 0, 0,
     "Lines that are not of the file's format: `pass` them on as a raw message, or `drop` "
     "them. Counted either way in drover_tail_malformed_lines_total."},
    {"partial_timeout", DR_OPT_DURATION, offsetof(tail_conf, partial_timeout_ms), "5s", 0, NULL, 1,
     3600000,
     "A partial line whose continuation has not come this long after it arrived, while the "
     "file has no more data to read, is emitted as it is (the container died mid-line)."},
    {"refresh_interval", DR_OPT_DURATION, offsetof(tail_conf, refresh_interval_ms), "5s", 0, NULL,
     100, 3600000, "How often the globs are expanded again, besides the inotify events."},
    {"poll_interval", DR_OPT_DURATION, offsetof(tail_conf, poll_interval_ms), "1s", 0, NULL, 10,
     60000, "How often open files are checked for growth and truncation, besides inotify."},
    {"rotate_wait", DR_OPT_DURATION, offsetof(tail_conf, rotate_wait_ms), "5s", 0, NULL, 0, 3600000,
     "How long a rotated or deleted file stays open after its last data, for a writer that "
     "has not reopened yet."},
    {"max_rotated_files", DR_OPT_INT, offsetof(tail_conf, max_rotated_files), "5", 0, NULL, 1, 1000,
     "Rotated and deleted files kept open per container while outputs are behind. Past it "
     "the oldest is closed and its unread bytes are counted in "
     "drover_tail_rotated_lost_bytes_total."},
    {"read_buffer", DR_OPT_SIZE, offsetof(tail_conf, read_buffer), "256KiB", 0, NULL, 4096,
     64 << 20,
     "Bytes read from a file at once. Also the longest physical line handled in one "
     "piece; longer ones are read in pieces."},
    {"checkpoint_ttl", DR_OPT_DURATION, offsetof(tail_conf, checkpoint_ttl_ms), "1h", 0, NULL, 1000,
     (int64_t)365 * 86400000, "How long the checkpoint of a file that no longer exists is kept."},
    {0},
};

/* ---- metadata from paths ---------------------------------------------------- */

/* /var/log/containers/<pod>_<namespace>_<container>-<64 hex id>.log */
static void parse_containers_name(const char *path, char *pod, char *ns, char *container, char *id,
                                  size_t cap)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    if (len < 4 + 65 || strcmp(base + len - 4, ".log") != 0)
        return;
    const char *dash = base + len - 4 - 65;
    if (*dash != '-')
        return;
    const char *u1 = memchr(base, '_', (size_t)(dash - base));
    const char *u2 = u1 ? memchr(u1 + 1, '_', (size_t)(dash - u1 - 1)) : NULL;
    if (!u1 || !u2)
        return;
    snprintf(pod, cap, "%.*s", (int)(u1 - base), base);
    snprintf(ns, cap, "%.*s", (int)(u2 - u1 - 1), u1 + 1);
    snprintf(container, cap, "%.*s", (int)(dash - u2 - 1), u2 + 1);
    snprintf(id, cap, "%.*s", 64, dash + 1);
}

/* /var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log */
static void parse_pods_path(const char *path, char *ns, char *pod, char *uid, char *container,
                            int *restart, size_t cap)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    char *file = strrchr(tmp, '/');
    if (!file)
        return;
    *file++ = '\0';
    char *cont = strrchr(tmp, '/');
    if (!cont)
        return;
    *cont++ = '\0';
    char *poddir = strrchr(tmp, '/');
    poddir = poddir ? poddir + 1 : tmp;
    char *u1 = strchr(poddir, '_');
    char *u2 = u1 ? strchr(u1 + 1, '_') : NULL;
    if (!u1 || !u2)
        return;
    char *end;
    long n = strtol(file, &end, 10);
    if (end == file || strncmp(end, ".log", 4) != 0)
        return;
    *restart = (int)n;
    snprintf(ns, cap, "%.*s", (int)(u1 - poddir), poddir);
    snprintf(pod, cap, "%.*s", (int)(u2 - u1 - 1), u1 + 1);
    snprintf(uid, cap, "%s", u2 + 1);
    snprintf(container, cap, "%s", cont);
}

static dr_meta *meta_from_paths(const char *watched, const char *target)
{
    char ns[256] = "", pod[256] = "", uid[256] = "", cont[256] = "", id[256] = "";
    char ns2[256] = "", pod2[256] = "", cont2[256] = "";
    int restart = -1;
    /* With docker, /var/log/pods/.../0.log is itself a link to the file
     * under /var/lib/docker: the pods path is the first hop of the chain. */
    char hop[PATH_MAX];
    ssize_t n = readlink(watched, hop, sizeof hop - 1);
    if (n > 0) {
        hop[n] = '\0';
        parse_pods_path(hop, ns, pod, uid, cont, &restart, sizeof ns);
    }
    if (!ns[0])
        parse_pods_path(target, ns, pod, uid, cont, &restart, sizeof ns);
    parse_containers_name(watched, pod2, ns2, cont2, id, sizeof ns);
    return dr_meta_new(watched, ns[0] ? ns : ns2, pod[0] ? pod : pod2, uid, cont[0] ? cont : cont2,
                       id, restart);
}

/* ---- groups ------------------------------------------------------------------- */

static tail_group *find_group(tail_state *st, const char *dir, const char *base)
{
    for (tail_group *g = st->groups; g; g = g->next)
        if (strcmp(g->dir, dir) == 0 && strcmp(g->base, base) == 0)
            return g;
    return NULL;
}

static void watch_dir(tail_state *st, tail_group *g)
{
    if (st->inotify_fd < 0 || g->wd >= 0)
        return;
    g->wd = inotify_add_watch(st->inotify_fd, g->dir,
                              IN_MODIFY | IN_CREATE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE);
}

static tail_group *group_new(tail_state *st, const char *dir, const char *base, const char *watched,
                             const char *target)
{
    tail_group *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->dir = strdup(dir);
    g->base = strdup(base);
    g->watched = strdup(watched);
    g->meta = meta_from_paths(watched, target);
    g->wd = -1;
    if (!g->dir || !g->base || !g->watched || !g->meta) {
        free(g->dir);
        free(g->base);
        free(g->watched);
        dr_meta_unref(g->meta);
        free(g);
        return NULL;
    }
    g->next = st->groups;
    st->groups = g;
    watch_dir(st, g);
    return g;
}

static void group_free(tail_state *st, tail_group *g)
{
    if (g->wd >= 0 && st->inotify_fd >= 0) {
        /* another group may share the directory's watch descriptor */
        bool shared = false;
        for (tail_group *o = st->groups; o; o = o->next)
            if (o != g && o->wd == g->wd)
                shared = true;
        if (!shared)
            inotify_rm_watch(st->inotify_fd, g->wd);
    }
    free(g->dir);
    free(g->base);
    free(g->watched);
    dr_meta_unref(g->meta);
    free(g);
}

/* ---- opening files -------------------------------------------------------------- */

static bool is_excluded(tail_state *st, const char *path)
{
    for (size_t i = 0; i < st->conf->exclude.n; i++)
        if (fnmatch(st->conf->exclude.v[i], path, 0) == 0)
            return true;
    return false;
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* True when a file with the same content fingerprint is already open in
 * the group: a rotated file and its gzipped copy must not both be read. */
static bool same_content_open(tail_state *st, tail_group *g, const dr_ckpt_key *k)
{
    if (k->fp_len == 0)
        return false;
    for (tail_file *f = st->files; f; f = f->next)
        if (f->group == g && f->key.fp_len == k->fp_len && f->key.fp_hash == k->fp_hash)
            return true;
    return false;
}

/* scandir's filter takes no context argument, so the base name it compares
 * against is passed through these; the loop is single-threaded and they are
 * set only for the duration of list_siblings. */
static int sibling_filter_base_len;
static const char *sibling_filter_base;

static int is_sibling(const struct dirent *d)
{
    return strncmp(d->d_name, sibling_filter_base, (size_t)sibling_filter_base_len) == 0 &&
           d->d_name[sibling_filter_base_len] == '.' && !has_suffix(d->d_name, ".tmp");
}

/* The rotated siblings of a group ("0.log.<anything>" beside "0.log", not
 * the runtime's ".tmp" files), sorted by name: oldest rotation first. */
static int list_siblings(const tail_group *g, struct dirent ***names)
{
    sibling_filter_base = g->base;
    sibling_filter_base_len = (int)strlen(g->base);
    int n = scandir(g->dir, names, is_sibling, alphasort);
    sibling_filter_base = NULL;
    return n;
}

/* At the first sight of a container: its rotated files, oldest first. Those
 * with a checkpoint resume from it; those without are read from the head
 * when read_from is head, or when an older one had a checkpoint (then they
 * were written while we were away). Returns true when any had one. */
static bool open_rotated_siblings(tail_state *st, tail_group *g)
{
    struct dirent **names = NULL;
    int n = list_siblings(g, &names);
    bool seen_checkpoint = false;
    for (int i = 0; i < n; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", g->dir, names[i]->d_name);
        free(names[i]);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        bool gz = has_suffix(path, ".gz");
        dr_ckpt_key k;
        unsigned char prefix[DR_FP_MAX];
        if (tail_identity(fd, gz, &k, prefix) < 0 || same_content_open(st, g, &k)) {
            close(fd);
            continue;
        }
        tail_file *f = tail_file_open(st, g, path, fd, gz, g->next_order++);
        if (!f)
            continue;
        f->rotated = true;
        f->close_at_eof = true;
        uint64_t start = (st->conf->read_from == 0 || seen_checkpoint) ? 0 : UINT64_MAX;
        if (tail_file_position(f, start, true))
            seen_checkpoint = true;
    }
    free(names);
    return seen_checkpoint;
}

/* Finds the name a rotated file has now (same inode in the same directory),
 * for the checkpoint table and the logs. */
static void find_new_name(tail_file *f)
{
    DIR *d = opendir(f->group->dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if ((uint64_t)e->d_ino != f->key.ino)
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", f->group->dir, e->d_name);
        char *p = strdup(path);
        if (p) {
            free(f->path);
            f->path = p;
        }
        break;
    }
    closedir(d);
}

static void mark_rotated(tail_state *st, tail_file *f)
{
    if (f->rotated)
        return;
    f->rotated = true;
    f->hot = true; /* read what was written before the rename */
    dr_counter_add(st->rotations, 1);
    find_new_name(f);
    dr_log(st->inst, DR_LOG_DEBUG, "file rotated", "path=%s", f->path);
    if (f->group->live == f)
        f->group->live = NULL;
}

static void handle_path(tail_state *st, const char *watched)
{
    char target[PATH_MAX];
    if (!realpath(watched, target))
        return; /* dangling link: the file is gone or not there yet */
    struct stat sb;
    if (stat(target, &sb) < 0 || !S_ISREG(sb.st_mode))
        return;
    char dirbuf[PATH_MAX], basebuf[PATH_MAX];
    snprintf(dirbuf, sizeof dirbuf, "%s", target);
    snprintf(basebuf, sizeof basebuf, "%s", target);
    const char *dir = dirname(dirbuf);
    const char *base = basename(basebuf);
    tail_group *g = find_group(st, dir, base);
    bool first_sight = g == NULL;
    if (!g && !(g = group_new(st, dir, base, watched, target)))
        return;
    g->seen = true;
    if (g->live && g->live->key.dev == (uint64_t)sb.st_dev &&
        g->live->key.ino == (uint64_t)sb.st_ino)
        return;
    if (g->live)
        mark_rotated(st, g->live);
    bool older_had_checkpoint = first_sight && open_rotated_siblings(st, g);
    int fd = open(target, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        dr_log(st->inst, DR_LOG_WARN, "cannot open file", "path=%s error=\"%s\"", target,
               strerror(errno));
        return;
    }
    tail_file *f = tail_file_open(st, g, target, fd, false, g->next_order++);
    if (!f)
        return;
    /* A container seen before whose file was replaced: the new file is the
     * continuation, read it whole. */
    uint64_t start =
        (!first_sight || older_had_checkpoint || st->conf->read_from == 0) ? 0 : UINT64_MAX;
    tail_file_position(f, start, false);
    g->live = f;
    dr_log(st->inst, DR_LOG_DEBUG, "file opened", "path=%s offset=%llu", target,
           (unsigned long long)f->read_off);
}

/* The live file of a group whose path no longer names it (renamed and not
 * yet replaced, or deleted). */
static void check_live_file(tail_state *st, tail_group *g)
{
    if (!g->live)
        return;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", g->dir, g->base);
    struct stat sb;
    if (stat(path, &sb) == 0 && (uint64_t)sb.st_dev == g->live->key.dev &&
        (uint64_t)sb.st_ino == g->live->key.ino)
        return;
    mark_rotated(st, g->live);
}

/* ---- scanning ----------------------------------------------------------------------- */

static void forget_old_checkpoints(tail_state *st)
{
    int64_t now_s = dr_now_ns() / 1000000000;
    for (size_t i = dr_ckpt_count(st->ckpt); i-- > 0;) {
        dr_ckpt_entry *e = dr_ckpt_at(st->ckpt, i);
        bool open_now = false;
        for (tail_file *f = st->files; f && !open_now; f = f->next)
            open_now = f->key.dev == e->key.dev && f->key.ino == e->key.ino &&
                       f->key.fp_hash == e->key.fp_hash;
        if (open_now)
            continue;
        struct stat sb;
        char gzpath[PATH_MAX + 4];
        snprintf(gzpath, sizeof gzpath, "%s.gz", e->path ? e->path : "");
        bool exists = e->path && ((stat(e->path, &sb) == 0 && (uint64_t)sb.st_ino == e->key.ino) ||
                                  stat(gzpath, &sb) == 0);
        if (exists) {
            if (now_s - e->seen_s > 60)
                dr_ckpt_set(st->ckpt, &e->key, e->offset, e->path, now_s);
            continue;
        }
        if ((now_s - e->seen_s) * 1000 > st->conf->checkpoint_ttl_ms) {
            dr_ckpt_key k = e->key;
            dr_ckpt_remove(st->ckpt, &k);
        }
    }
}

static void reader_start(tail_state *st);

static void scan(tail_state *st)
{
    for (tail_group *g = st->groups; g; g = g->next)
        g->seen = false;
    for (size_t i = 0; i < st->conf->paths.n; i++) {
        glob_t gl;
        if (glob(st->conf->paths.v[i], 0, NULL, &gl) != 0)
            continue;
        for (size_t j = 0; j < gl.gl_pathc; j++)
            if (!is_excluded(st, gl.gl_pathv[j]))
                handle_path(st, gl.gl_pathv[j]);
        globfree(&gl);
    }
    for (tail_group *g = st->groups; g; g = g->next)
        check_live_file(st, g);
    /* groups with nothing open that the globs no longer find */
    for (tail_group **pp = &st->groups; *pp;) {
        tail_group *g = *pp;
        bool referenced = false;
        for (tail_file *f = st->files; f && !referenced; f = f->next)
            referenced = f->group == g;
        if (!g->seen && !referenced) {
            *pp = g->next;
            group_free(st, g);
        } else {
            pp = &g->next;
        }
    }
    forget_old_checkpoints(st);
    reader_start(st);
}

/* ---- reading ------------------------------------------------------------------------- */

static bool has_unread_data(tail_file *o)
{
    if (o->gz)
        return !o->at_eof;
    struct stat sb;
    return fstat(o->fd, &sb) == 0 && (uint64_t)sb.st_size > o->read_off;
}

/* Files of a container are read in order: a newer one waits while an older
 * one still has data. */
static bool older_file_pending(tail_state *st, tail_file *f)
{
    /* An older file may have been written to after we saw its end (the
     * runtime writes a little more to the renamed file before it reopens),
     * without an inotify event served yet: once the newer file has data,
     * those writes are done, and they come first. */
    for (tail_file *o = st->files; o; o = o->next) {
        if (o == f || o->group != f->group || o->order >= f->order || o->closing)
            continue;
        if ((o->hot && !o->at_eof) || has_unread_data(o)) {
            o->hot = true;
            return true;
        }
    }
    return false;
}

static void report_drained_if_done(tail_state *st);

/* A line can be cut by a rotation: its first pieces at the end of the old
 * file, the rest at the start of the new one (the runtime reopened in
 * between). Once a newer file has data, the older files of the container
 * are complete; before the newer one is read, it takes over their pending
 * pieces. Returns false when an older file must be read first. */
static void handle_truncation(tail_state *st, tail_file *f);

static bool inherit_partials(tail_state *st, tail_file *f)
{
    for (tail_file *o = st->files; o; o = o->next) {
        if (o == f || o->group != f->group || o->order > f->order || o->closing ||
            dr_join_pending_count(&o->join) == 0)
            continue;
        if (has_unread_data(o)) {
            o->hot = true;
            return false;
        }
        tail_file_take_partials(f, o, false);
        o->close_at_eof = true;
    }
    return true;
}

static void on_reader(uv_idle_t *h)
{
    tail_state *st = h->data;
    bool more = false;
    for (tail_file *f = st->files; f; f = f->next) {
        if (f->closing || !f->hot)
            continue;
        if (older_file_pending(st, f)) {
            more = true;
            continue;
        }
        if (!dr_input_may_emit(st->inst)) {
            st->waiting_room = true;
            uv_idle_stop(&st->reader);
            st->reader_active = false;
            return;
        }
        if (!inherit_partials(st, f)) {
            more = true;
            continue;
        }
        if (tail_file_read_once(f) == TAIL_TRUNCATED)
            handle_truncation(st, f);
        if (f->hot)
            more = true;
    }
    if (!more) {
        uv_idle_stop(&st->reader);
        st->reader_active = false;
        if (st->inst->oneshot)
            report_drained_if_done(st);
    }
}

static void reader_start(tail_state *st)
{
    if (st->reader_active || st->stopped || st->paused || st->waiting_room)
        return;
    uv_idle_start(&st->reader, on_reader);
    st->reader_active = true;
}

/* Oneshot: every file read to its end; emit what is pending and report. */
static void report_drained_if_done(tail_state *st)
{
    if (st->drained_reported)
        return;
    for (tail_file *f = st->files; f; f = f->next)
        if (!f->closing && (f->hot || !f->at_eof))
            return;
    for (tail_file *f = st->files; f; f = f->next) {
        if (f->closing)
            continue;
        if (f->rotated || f->close_at_eof) {
            tail_file_finish(f);
            tail_file_close(f);
        } else {
            tail_file_flush_partials(f, true);
        }
    }
    st->drained_reported = true;
    dr_input_drained(st->inst);
}

/* ---- periodic work ---------------------------------------------------------------------- */

/* logrotate copytruncate: the content we were reading was copied aside
 * (same first bytes, another inode) and the file cut to zero. What had not
 * been read yet is in the copy: read it from where we were. */
static void recover_from_copy(tail_state *st, tail_file *f)
{
    struct dirent **names = NULL;
    int n = list_siblings(f->group, &names);
    bool found = false;
    for (int i = n - 1; i >= 0; i--) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", f->group->dir, names[i]->d_name);
        free(names[i]);
        if (found)
            continue;
        bool gz = has_suffix(path, ".gz");
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        dr_ckpt_key k;
        unsigned char prefix[DR_FP_MAX];
        if (tail_identity(fd, gz, &k, prefix) < 0 || k.fp_len < f->key.fp_len ||
            f->key.fp_len == 0 || memcmp(prefix, f->prefix, f->key.fp_len) != 0 ||
            k.ino == f->key.ino) {
            close(fd);
            continue;
        }
        tail_file *copy = tail_file_open(st, f->group, path, fd, gz, f->order);
        if (!copy)
            continue;
        copy->rotated = true;
        copy->close_at_eof = true;
        copy->fmt = f->fmt;
        tail_file_position(copy, f->read_off, false);
        tail_file_handoff(f, copy);
        tail_file_take_partials(copy, f, true);
        found = true;
        dr_log(st->inst, DR_LOG_INFO, "reading the rest of a copied-and-truncated file",
               "path=%s copy=%s offset=%llu", f->path, path, (unsigned long long)f->read_off);
    }
    free(names);
}

/* The file was cut (and maybe written again): what had not been read comes
 * from the copy, if logrotate made one; the file itself starts over as the
 * newest file of its container. */
static void handle_truncation(tail_state *st, tail_file *f)
{
    recover_from_copy(st, f);
    f->order = f->group->next_order++;
    tail_file_restart(f);
}

static void close_finished_files(tail_state *st)
{
    int64_t now = dr_mono_ns();
    for (tail_file *f = st->files; f; f = f->next) {
        if (f->closing || !f->at_eof || f->hot)
            continue;
        bool done = f->close_at_eof || f->gz ||
                    (f->rotated && (st->inst->oneshot ||
                                    now - f->eof_since_ns >= st->conf->rotate_wait_ms * 1000000));
        if (!done)
            continue;
        tail_file_finish(f);
        tail_file_close(f);
        dr_log(st->inst, DR_LOG_DEBUG, "file closed", "path=%s offset=%llu", f->path,
               (unsigned long long)f->read_off);
    }
}

/* Keeps at most max_rotated_files rotated files open per container. */
static void enforce_rotated_bound(tail_state *st)
{
    for (tail_group *g = st->groups; g; g = g->next) {
        size_t rotated = 0;
        for (tail_file *f = st->files; f; f = f->next)
            if (f->group == g && f->rotated && !f->closing)
                rotated++;
        while (rotated > (size_t)st->conf->max_rotated_files) {
            tail_file *oldest = NULL;
            for (tail_file *f = st->files; f; f = f->next)
                if (f->group == g && f->rotated && !f->closing &&
                    (!oldest || f->order < oldest->order))
                    oldest = f;
            uint64_t lost = tail_file_lag(oldest);
            dr_counter_add(st->lost_bytes, lost);
            dr_log(st->inst, DR_LOG_WARN,
                   "too many rotated files held open; closing the oldest unread",
                   "path=%s lost_bytes=%llu", oldest->path, (unsigned long long)lost);
            tail_file_close(oldest);
            rotated--;
        }
    }
}

static void free_closed_files(tail_state *st)
{
    for (tail_file **pp = &st->files; *pp;) {
        tail_file *f = *pp;
        if (tail_file_can_free(f)) {
            *pp = f->next;
            if (f->group->live == f)
                f->group->live = NULL;
            tail_file_free(f);
        } else {
            pp = &f->next;
        }
    }
}

static void update_gauges(tail_state *st)
{
    double open = 0, lag = 0, partials = 0;
    for (tail_file *f = st->files; f; f = f->next) {
        if (f->closing)
            continue;
        open++;
        lag += (double)tail_file_lag(f);
        partials += dr_join_pending_count(&f->join);
    }
    dr_gauge_set(st->g_open_files, open);
    dr_gauge_set(st->g_lag, lag);
    dr_gauge_set(st->g_partials, partials);
}

static void on_poll_timer(uv_timer_t *t)
{
    tail_state *st = t->data;
    for (tail_file *f = st->files; f; f = f->next) {
        if (tail_file_poll(f) == TAIL_TRUNCATED)
            handle_truncation(st, f);
        /* a partial line waits for its continuation only while there is
         * nothing more to read */
        if (!f->closing && f->at_eof && !f->hot)
            tail_file_flush_partials(f, false);
    }
    close_finished_files(st);
    enforce_rotated_bound(st);
    free_closed_files(st);
    update_gauges(st);
    reader_start(st);
}

static void on_scan_timer(uv_timer_t *t)
{
    scan(t->data);
}

static void save_checkpoints(tail_state *st)
{
    if (!dr_ckpt_dirty(st->ckpt))
        return;
    dr_error err = {{0}};
    if (dr_ckpt_save(st->ckpt, &err) < 0)
        dr_log(st->inst, DR_LOG_ERROR, "cannot save checkpoints", "path=%s error=\"%s\"",
               st->ckpt_path, err.msg);
}

static void on_save_timer(uv_timer_t *t)
{
    save_checkpoints(t->data);
}

/* ---- inotify ------------------------------------------------------------------------------- */

static void mark_dir_hot(tail_state *st, int wd)
{
    for (tail_file *f = st->files; f; f = f->next)
        if (!f->closing && f->group->wd == wd)
            f->hot = true;
}

static void on_inotify(uv_poll_t *h, int status, int events)
{
    tail_state *st = h->data;
    (void)events;
    if (status < 0)
        return;
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool rescan = false;
    for (;;) {
        ssize_t n = read(st->inotify_fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            if (ev->mask & IN_Q_OVERFLOW) {
                rescan = true;
                for (tail_file *f = st->files; f; f = f->next)
                    f->hot = !f->closing;
            } else if (ev->mask & IN_MODIFY) {
                mark_dir_hot(st, ev->wd);
            } else {
                rescan = true;
                mark_dir_hot(st, ev->wd);
            }
            p += sizeof *ev + ev->len;
        }
    }
    if (rescan)
        scan(st);
    else
        reader_start(st);
}

static void watch_glob_dirs(tail_state *st)
{
    st->dir_wds = calloc(st->conf->paths.n, sizeof *st->dir_wds);
    if (!st->dir_wds)
        return;
    for (size_t i = 0; i < st->conf->paths.n; i++) {
        char dirbuf[PATH_MAX];
        snprintf(dirbuf, sizeof dirbuf, "%s", st->conf->paths.v[i]);
        const char *dir = dirname(dirbuf);
        if (strpbrk(dir, "*?[")) /* a pattern in the directory part: rescans cover it */
            continue;
        int wd = inotify_add_watch(st->inotify_fd, dir,
                                   IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB);
        if (wd >= 0)
            st->dir_wds[st->n_dir_wds++] = wd;
    }
}

/* ---- plugin callbacks ------------------------------------------------------------------------ */

static int tail_init(dr_instance *inst, dr_error *err)
{
    tail_conf *conf = inst->conf;
    if (conf->paths.n == 0) {
        dr_error_set(err, "paths: at least one pattern is needed");
        return DR_EINVAL;
    }
    if (conf->max_record_bytes > UINT32_MAX) {
        dr_error_set(err, "max_record_bytes: at most 4GiB");
        return DR_EINVAL;
    }
    tail_state *st = calloc(1, sizeof *st);
    if (!st) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    st->inst = inst;
    st->conf = conf;
    st->inotify_fd = -1;
    inst->state = st;
    return 0;
}

static void create_metrics(tail_state *st)
{
    dr_instance *in = st->inst;
    st->malformed = dr_counter_new(in, "drover_tail_malformed_lines_total",
                                   "Lines that were not of the file's format.", NULL, NULL);
    st->rotations = dr_counter_new(in, "drover_tail_rotations_total",
                                   "Files renamed or deleted while open.", NULL, NULL);
    st->truncations =
        dr_counter_new(in, "drover_tail_truncations_total",
                       "Files found cut short and read again from the start.", NULL, NULL);
    st->split =
        dr_counter_new(in, "drover_tail_split_records_total",
                       "Records longer than max_record_bytes, split into pieces.", NULL, NULL);
    st->truncated = dr_counter_new(in, "drover_tail_truncated_records_total",
                                   "Records longer than max_record_bytes, truncated.", NULL, NULL);
    st->timeouts = dr_counter_new(in, "drover_tail_partial_timeouts_total",
                                  "Partial lines emitted without their final piece.", NULL, NULL);
    st->lost_bytes =
        dr_counter_new(in, "drover_tail_rotated_lost_bytes_total",
                       "Unread bytes of rotated files closed past max_rotated_files.", NULL, NULL);
    st->g_open_files =
        dr_gauge_new(in, "drover_tail_open_files", "Files open for reading.", NULL, NULL);
    st->g_lag =
        dr_gauge_new(in, "drover_tail_checkpoint_lag_bytes",
                     "Bytes of open files not yet delivered (size minus checkpoint).", NULL, NULL);
    st->g_partials = dr_gauge_new(in, "drover_tail_partial_records_pending",
                                  "Partial lines waiting for their continuation.", NULL, NULL);
}

static int tail_start(dr_instance *inst)
{
    tail_state *st = inst->state;
    tail_conf *conf = st->conf;
    create_metrics(st);
    const char *data_dir = dr_agent_data_dir(inst->agent);
    int rc = dr_mkdirs(data_dir, false);
    if (rc < 0) {
        dr_log(inst, DR_LOG_ERROR, "cannot create data_dir", "path=%s error=\"%s\"", data_dir,
               strerror(-rc));
        return DR_EIO;
    }
    size_t len = strlen(data_dir) + strlen(inst->name) + 16;
    st->ckpt_path = malloc(len);
    st->buf = malloc((size_t)conf->read_buffer);
    if (!st->ckpt_path || !st->buf)
        return DR_ENOMEM;
    snprintf(st->ckpt_path, len, "%s/tail-%s.ckpt", data_dir, inst->name);
    bool recovered = false;
    dr_error err = {{0}};
    st->ckpt = dr_ckpt_open(st->ckpt_path, &recovered, &err);
    if (!st->ckpt) {
        dr_log(inst, DR_LOG_ERROR, "cannot open checkpoints", "path=%s error=\"%s\"", st->ckpt_path,
               err.msg);
        return DR_EIO;
    }
    if (recovered)
        dr_log(inst, DR_LOG_WARN, "checkpoint file was damaged", "path=%s detail=\"%s\"",
               st->ckpt_path, err.msg);

    st->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (st->inotify_fd < 0)
        dr_log(inst, DR_LOG_WARN, "inotify unavailable; relying on polling", "error=\"%s\"",
               strerror(errno));
    uv_idle_init(inst->loop, &st->reader);
    uv_timer_init(inst->loop, &st->poll_timer);
    uv_timer_init(inst->loop, &st->scan_timer);
    uv_timer_init(inst->loop, &st->save_timer);
    st->reader.data = st->poll_timer.data = st->scan_timer.data = st->save_timer.data = st;
    st->handles_open = 4;
    if (st->inotify_fd >= 0) {
        watch_glob_dirs(st);
        uv_poll_init(inst->loop, &st->inotify_poll, st->inotify_fd);
        st->inotify_poll.data = st;
        uv_poll_start(&st->inotify_poll, UV_READABLE, on_inotify);
        st->handles_open++;
    }
    uv_timer_start(&st->poll_timer, on_poll_timer, (uint64_t)conf->poll_interval_ms,
                   (uint64_t)conf->poll_interval_ms);
    if (!inst->oneshot)
        uv_timer_start(&st->scan_timer, on_scan_timer, (uint64_t)conf->refresh_interval_ms,
                       (uint64_t)conf->refresh_interval_ms);
    uv_timer_start(&st->save_timer, on_save_timer, 1000, 1000);
    scan(st);
    save_checkpoints(st);
    return 0;
}

static void tail_pause(dr_instance *inst)
{
    tail_state *st = inst->state;
    st->paused = true;
    if (st->reader_active) {
        uv_idle_stop(&st->reader);
        st->reader_active = false;
    }
}

static void tail_resume(dr_instance *inst)
{
    tail_state *st = inst->state;
    st->paused = false;
    st->waiting_room = false;
    reader_start(st);
}

static void tail_stop(dr_instance *inst)
{
    tail_state *st = inst->state;
    st->stopped = true;
    if (st->reader.loop) {
        uv_idle_stop(&st->reader);
        uv_timer_stop(&st->poll_timer);
        uv_timer_stop(&st->scan_timer);
    }
    if (st->inotify_fd >= 0 && st->inotify_poll.loop)
        uv_poll_stop(&st->inotify_poll);
    st->reader_active = false;
}

static void on_handle_closed(uv_handle_t *h)
{
    tail_state *st = h->data;
    if (--st->handles_open == 0)
        free(st);
}

static void tail_destroy(dr_instance *inst)
{
    tail_state *st = inst->state;
    inst->state = NULL;
    /* Every chunk has been released by now (the core destroys inputs last),
     * so the checkpoints are final. */
    if (st->ckpt) {
        save_checkpoints(st);
        dr_ckpt_close(st->ckpt);
    }
    while (st->files) {
        tail_file *f = st->files;
        st->files = f->next;
        tail_file_free(f);
    }
    while (st->groups) {
        tail_group *g = st->groups;
        st->groups = g->next;
        g->wd = -1;
        group_free(st, g);
    }
    free(st->dir_wds);
    free(st->buf);
    free(st->ckpt_path);
    if (st->inotify_fd >= 0 && !st->inotify_poll.loop)
        close(st->inotify_fd);
    if (!st->reader.loop) { /* never started */
        free(st);
        return;
    }
    uv_close((uv_handle_t *)&st->reader, on_handle_closed);
    uv_close((uv_handle_t *)&st->poll_timer, on_handle_closed);
    uv_close((uv_handle_t *)&st->scan_timer, on_handle_closed);
    uv_close((uv_handle_t *)&st->save_timer, on_handle_closed);
    if (st->inotify_fd >= 0) {
        /* libuv does not close the fd of a uv_poll_t */
        close(st->inotify_fd);
        uv_close((uv_handle_t *)&st->inotify_poll, on_handle_closed);
    }
}

const dr_plugin dr_plugin_tail = {
    .abi = DR_PLUGIN_ABI,
    .name = "tail",
    .kind = DR_INPUT,
    .description =
        "Reads container logs as the kubelet lays them out (`/var/log/containers/*.log` "
        "links to `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log`), or any "
        "files matched by `paths`. Lines are CRI (`<time> <stream> <P|F> <message>`) or docker "
        "json-file, detected per file; partial lines (CRI `P`, docker pieces without a "
        "newline) are joined per stream. Namespace, pod, pod uid, container, restart number "
        "and container id come from the path.\n\n"
        "Rotation (rename, gzip, deletion, logrotate copytruncate, truncation) loses nothing: "
        "an open file is read to its end, rotated files not read yet are read in order, and "
        "a checkpoint per file identity (device, inode and a fingerprint of the first 256 "
        "bytes) advances only past records every output delivered. Checkpoints are saved at "
        "most every second, crash-safely, as `<data_dir>/tail-<name>.ckpt`.\n\n"
        "Self-metrics: drover_tail_open_files, drover_tail_checkpoint_lag_bytes, "
        "drover_tail_partial_records_pending, drover_tail_malformed_lines_total, "
        "drover_tail_rotations_total, drover_tail_truncations_total, "
        "drover_tail_split_records_total, drover_tail_truncated_records_total, "
        "drover_tail_partial_timeouts_total, drover_tail_rotated_lost_bytes_total.",
    .options = tail_options,
    .conf_size = sizeof(tail_conf),
    .init = tail_init,
    .start = tail_start,
    .pause = tail_pause,
    .resume = tail_resume,
    .stop = tail_stop,
    .destroy = tail_destroy,
};
