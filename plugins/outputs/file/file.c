/*
 * file output: one JSON object per record per line (NDJSON), appended to a
 * file.
 *
 * A chunk counts as delivered once write(2) has handed all of it to the
 * kernel: from then on a crash of drover cannot lose it. fsync(2) runs every
 * fsync_interval to bound what a crash of the whole machine could lose (0
 * makes every chunk wait for its fsync). If the file is removed or renamed
 * under us (log rotation), the output notices at the next fsync tick and
 * opens the path again.
 */
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../ndjson.h"
#include "buf.h"
#include "drover/plugin.h"

typedef struct file_conf {
    char *path;
    int64_t fsync_interval_ms;
    int format;
} file_conf;

static const char *const file_formats[] = {"json", "text", NULL};

static const dr_option file_options[] = {
    {"path", DR_OPT_STRING, offsetof(file_conf, path), NULL, DR_OPT_REQUIRED, NULL, 0, 0,
     "File to append to; created (mode 0644) if missing, its directory too."},
    {"format", DR_OPT_ENUM, offsetof(file_conf, format), "json", 0, file_formats, 0, 0,
     "`json`: one JSON object per line (NDJSON). `text`: a readable line per record (per "
     "sample: the exposition text form)."},
    {"fsync_interval", DR_OPT_DURATION, offsetof(file_conf, fsync_interval_ms), "1s", 0, NULL, 0,
     3600000,
     "How often written data is fsync'ed. A record counts as delivered when it is written "
     "(it then survives a crash of drover); 0 also waits for fsync after every chunk (it then "
     "survives a crash of the machine)."},
    {0},
};

typedef struct file_state {
    int fd;
    dr_ndjson_writer out;
    uv_timer_t timer;
    bool dirty;
    dr_counter *write_errors;
} file_state;

static int open_output(dr_instance *inst)
{
    file_conf *conf = inst->conf;
    file_state *st = inst->state;
    dr_mkdirs(conf->path, true);
    int fd = open(conf->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        dr_log(inst, DR_LOG_ERROR, "cannot open output file", "path=%s error=\"%s\"", conf->path,
               strerror(errno));
        return DR_EIO;
    }
    if (st->fd >= 0)
        close(st->fd);
    st->fd = fd;
    return 0;
}

/* Reopens the file when the path no longer names the file we write to. */
static void reopen_if_moved(dr_instance *inst)
{
    file_conf *conf = inst->conf;
    file_state *st = inst->state;
    struct stat by_path, by_fd;
    if (st->fd >= 0 && fstat(st->fd, &by_fd) == 0 && stat(conf->path, &by_path) == 0 &&
        by_fd.st_dev == by_path.st_dev && by_fd.st_ino == by_path.st_ino)
        return;
    open_output(inst);
}

static void on_fsync_timer(uv_timer_t *t)
{
    dr_instance *inst = t->data;
    file_state *st = inst->state;
    if (st->dirty && st->fd >= 0) {
        fdatasync(st->fd);
        st->dirty = false;
    }
    reopen_if_moved(inst);
}

static void file_flush(dr_instance *inst, dr_flush *f)
{
    file_conf *conf = inst->conf;
    file_state *st = inst->state;
    if (dr_ndjson_writer_encode(&st->out, f) < 0) {
        dr_output_done(f, DR_RETRY, NULL);
        return;
    }
    if (st->fd < 0 && open_output(inst) < 0) {
        dr_output_done(f, DR_RETRY, NULL);
        return;
    }
    int rc = dr_write_all(st->fd, st->out.buf.p, st->out.buf.len);
    if (rc < 0) {
        /* Part of the chunk may be in the file already: the retry writes it
         * again, a duplicate rather than a loss. */
        dr_counter_add(st->write_errors, 1);
        dr_log(inst, DR_LOG_ERROR, "write failed, will retry", "path=%s error=\"%s\"", conf->path,
               strerror(-rc));
        dr_output_done(f, DR_RETRY, NULL);
        return;
    }
    if (conf->fsync_interval_ms == 0)
        fdatasync(st->fd);
    else
        st->dirty = true;
    dr_ndjson_writer_trim(&st->out);
    dr_output_done(f, DR_DELIVERED, NULL);
}

static int file_init(dr_instance *inst, dr_error *err)
{
    file_state *st = calloc(1, sizeof *st);
    if (!st) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    st->fd = -1;
    inst->state = st;
    return 0;
}

static int file_start(dr_instance *inst)
{
    file_conf *conf = inst->conf;
    file_state *st = inst->state;
    dr_ndjson_writer_init(&st->out, inst, (dr_line_style)conf->format);
    st->write_errors = dr_counter_new(inst, "drover_output_write_errors_total",
                                      "Failed writes (retried).", NULL, NULL);
    uv_timer_init(inst->loop, &st->timer);
    st->timer.data = inst;
    uint64_t every = conf->fsync_interval_ms > 0 ? (uint64_t)conf->fsync_interval_ms : 1000;
    uv_timer_start(&st->timer, on_fsync_timer, every, every);
    return open_output(inst) < 0 ? DR_EIO : 0;
}

static void file_stop(dr_instance *inst)
{
    file_state *st = inst->state;
    if (st->fd >= 0)
        fdatasync(st->fd);
    st->dirty = false;
    uv_timer_stop(&st->timer);
}

static void free_state(uv_handle_t *h)
{
    free(h->data);
}

static void file_destroy(dr_instance *inst)
{
    file_state *st = inst->state;
    if (st->fd >= 0)
        close(st->fd);
    dr_ndjson_writer_free(&st->out);
    if (uv_is_active((uv_handle_t *)&st->timer) || st->timer.loop) {
        st->timer.data = st;
        uv_close((uv_handle_t *)&st->timer, free_state);
    } else {
        free(st);
    }
    inst->state = NULL;
}

const dr_plugin dr_plugin_file = {
    .abi = DR_PLUGIN_ABI,
    .name = "file",
    .kind = DR_OUTPUT,
    .data = DR_DATA_LOGS | DR_DATA_METRICS,
    .description =
        "Appends records to a file, one JSON object per line (NDJSON):\n\n"
        "```\n{\"time\":\"2026-11-25T04:10:38.123456789Z\",\"stream\":\"stdout\","
        "\"message\":\"...\",\"kubernetes\":{\"namespace\":\"...\",\"pod\":\"...\","
        "\"pod_uid\":\"...\",\"container\":\"...\",\"container_id\":\"...\"}}\n```\n\n"
        "Fields that filters add stand beside these. Invalid UTF-8 in a message becomes "
        "U+FFFD and is counted in `drover_output_invalid_utf8_records_total`. A record is "
        "delivered (and its input may checkpoint past it) once it is written; see "
        "`fsync_interval`. When the file is renamed or removed (rotation), the output opens "
        "the path again within a second.\n\n" DR_NDJSON_METRICS_DOC,
    .options = file_options,
    .conf_size = sizeof(file_conf),
    .init = file_init,
    .start = file_start,
    .flush = file_flush,
    .stop = file_stop,
    .destroy = file_destroy,
};
