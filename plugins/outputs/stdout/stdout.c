/*
 * stdout output: records on standard output, as NDJSON (the file output's
 * form) or as one readable line per record.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../ndjson.h"
#include "buf.h"
#include "drover/plugin.h"

typedef struct stdout_conf {
    int format;
} stdout_conf;

static const char *const stdout_formats[] = {"json", "text", NULL};

static const dr_option stdout_options[] = {
    {"format", DR_OPT_ENUM, offsetof(stdout_conf, format), "json", 0, stdout_formats, 0, 0,
     "`json`: one JSON object per line, as the file output writes. `text`: "
     "`<time> <namespace>/<pod>/<container> <stream>: <message>`, the message escaped so "
     "that a record is always one line; a metric sample as `name{labels} value "
     "timestamp_ms`."},
    {0},
};

typedef struct stdout_state {
    dr_ndjson_writer out;
} stdout_state;

static void stdout_flush(dr_instance *inst, dr_flush *f)
{
    stdout_state *st = inst->state;
    if (dr_ndjson_writer_encode(&st->out, f) < 0) {
        dr_output_done(f, DR_RETRY, NULL);
        return;
    }
    const char *p = st->out.buf.p;
    size_t n = st->out.buf.len;
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            usleep(1000);
            continue;
        }
        if (w < 0) {
            /* Standard output is gone (closed pipe): nothing to retry. */
            dr_output_done(f, DR_DROP, "stdout_closed");
            return;
        }
        p += w;
        n -= (size_t)w;
    }
    dr_ndjson_writer_trim(&st->out);
    dr_output_done(f, DR_DELIVERED, NULL);
}

static int stdout_init(dr_instance *inst, dr_error *err)
{
    stdout_state *st = calloc(1, sizeof *st);
    if (!st) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    inst->state = st;
    return 0;
}

static int stdout_start(dr_instance *inst)
{
    stdout_state *st = inst->state;
    dr_ndjson_writer_init(&st->out, inst, (dr_line_style)((stdout_conf *)inst->conf)->format);
    return 0;
}

static void stdout_destroy(dr_instance *inst)
{
    stdout_state *st = inst->state;
    dr_ndjson_writer_free(&st->out);
    free(st);
    inst->state = NULL;
}

const dr_plugin dr_plugin_stdout = {
    .abi = DR_PLUGIN_ABI,
    .name = "stdout",
    .kind = DR_OUTPUT,
    .data = DR_DATA_LOGS | DR_DATA_METRICS,
    .description =
        "Writes records to standard output, as NDJSON or as readable lines. " DR_NDJSON_METRICS_DOC,
    .options = stdout_options,
    .conf_size = sizeof(stdout_conf),
    .init = stdout_init,
    .start = stdout_start,
    .flush = stdout_flush,
    .destroy = stdout_destroy,
};
