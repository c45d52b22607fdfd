/*
 * remote_write spilling: when the receiver fails and the output's queue
 * passes spill_high_water of queue_max_bytes, or the receiver has failed
 * for spill_after (what is in memory is what a kill loses), requests go to
 * disk segments
 * (rw_spill.c) instead of waiting in memory, and their batches are
 * acknowledged, so the scrapes go on through an outage as long as the disk
 * bound lasts.
 *
 * Order: a series' samples must reach the receiver in order (Prometheus
 * refuses older samples). So once spilling has begun, every new request
 * goes to disk too, until the disk queue has drained, and the requests
 * still in the shards at that moment go to disk as well (those behind a
 * request in flight; the one in flight finishes first). A record is read
 * back only when every shard is idle, and one at a time, through shard 0
 * with its retry and backoff: disk order is send order. When the last
 * record is delivered, the output goes back to memory.
 *
 * A second timer syncs the segments and saves the delivered position off
 * the loop (uv_queue_work), so a kill loses at most the second before it
 * of a power loss, and nothing of a plain SIGKILL (the kernel has the
 * writes). While spilling, a batch waits at most RW_SPILL_BATCH_WAIT_MS
 * in the core's queue, which is memory: a kill loses no more than that.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress.h"
#include "rw.h"

#define RW_SPILL_TICK_MS 1000

static bool receiver_failing(const rw_state *st)
{
    for (uint32_t i = 0; i < st->max_shards; i++)
        if (st->shards[i].waiting || (st->shards[i].head && st->shards[i].head->attempts > 0))
            return true;
    return false;
}

/* ---- self-metrics ---------------------------------------------------------------------------- */

static void create_metrics(rw_state *st)
{
    dr_instance *inst = st->inst;
    rw_disk *d = &st->disk;
    d->g_bytes = dr_gauge_new(inst, "drover_remote_write_spill_bytes",
                              "Bytes of spilled requests on disk.", NULL, NULL);
    d->g_segments = dr_gauge_new(inst, "drover_remote_write_spill_segments",
                                 "Spill segment files on disk.", NULL, NULL);
    d->g_active =
        dr_gauge_new(inst, "drover_remote_write_spill_active",
                     "1 while new requests go to disk, until it has drained.", NULL, NULL);
    d->written = dr_counter_new(inst, "drover_remote_write_spill_records_written_total",
                                "Requests written to disk.", NULL, NULL);
    d->replayed = dr_counter_new(inst, "drover_remote_write_spill_records_replayed_total",
                                 "Requests read back from disk and delivered.", NULL, NULL);
    const char *rname = "drover_remote_write_spill_records_dropped_total";
    const char *rhelp = "Spilled requests lost: full (the oldest segment made room), corrupt "
                        "(a torn tail or a bad checksum), too_large (larger than the bound).";
    d->records_dropped_full = dr_counter_new(inst, rname, rhelp, "reason", "full");
    d->records_dropped_corrupt = dr_counter_new(inst, rname, rhelp, "reason", "corrupt");
    d->records_dropped_too_large = dr_counter_new(inst, rname, rhelp, "reason", "too_large");
    const char *sname = "drover_remote_write_spill_samples_dropped_total";
    const char *shelp = "Samples (and histograms) of the spilled requests lost, by reason.";
    d->samples_dropped_full = dr_counter_new(inst, sname, shelp, "reason", "full");
    d->samples_dropped_too_large = dr_counter_new(inst, sname, shelp, "reason", "too_large");
}

/* Adds what the store counted since the last call to the counters (and
 * the samples lost to drover_dropped_records_total). */
static void publish(rw_state *st)
{
    rw_disk *d = &st->disk;
    const rw_spill_counts *c = &d->store.counts;
    rw_spill_counts *s = &d->shown;
    dr_counter_add(d->written, c->records_written - s->records_written);
    dr_counter_add(d->records_dropped_full, c->records_dropped_full - s->records_dropped_full);
    dr_counter_add(d->records_dropped_corrupt,
                   c->records_dropped_corrupt - s->records_dropped_corrupt);
    dr_counter_add(d->records_dropped_too_large,
                   c->records_dropped_too_large - s->records_dropped_too_large);
    uint64_t full = c->samples_dropped_full - s->samples_dropped_full;
    uint64_t large = c->samples_dropped_too_large - s->samples_dropped_too_large;
    dr_counter_add(d->samples_dropped_full, full);
    dr_counter_add(d->samples_dropped_too_large, large);
    if (full)
        dr_count_drop(st->inst, "spill_full", full);
    if (large)
        dr_count_drop(st->inst, "spill_too_large", large);
    if (c->records_dropped_corrupt > s->records_dropped_corrupt)
        dr_log(st->inst, DR_LOG_WARN,
               "damaged spill records skipped (a torn tail or a bad checksum)", "records=%llu",
               (unsigned long long)(c->records_dropped_corrupt - s->records_dropped_corrupt));
    if (full)
        dr_log(st->inst, DR_LOG_WARN, "spill directory full, oldest segments dropped",
               "samples=%llu", (unsigned long long)full);
    *s = *c;
    dr_gauge_set(d->g_bytes, (double)d->store.total_bytes);
    dr_gauge_set(d->g_segments, (double)d->store.nsegs);
    dr_gauge_set(d->g_active, d->active ? 1 : 0);
}

/* ---- going to disk and back ------------------------------------------------------------------ */

static void set_active(rw_state *st, bool active)
{
    rw_disk *d = &st->disk;
    if (d->active == active)
        return;
    d->active = active;
    dr_log(st->inst, DR_LOG_INFO, active ? "spilling to disk" : "spilled data delivered",
           "bytes=%llu", (unsigned long long)d->store.total_bytes);
    if (!active)
        rw_spill_finish_writer(&d->store);
    rw_update_batch(st);
    publish(st);
}

/* Writes a request to disk; its body is the uncompressed one in raw.
 * 0: written; DR_EINVAL: larger than the whole bound, counted as dropped
 * (the caller ends the request); another error: it stays in memory. */
static int spill_request(rw_state *st, const rw_request *req, const dr_buf *raw)
{
    rw_disk *d = &st->disk;
    rw_spill_info info = {.version = (uint8_t)req->version,
                          .nsamples = req->nmetas ? 0 : req->nsamples - req->nhist,
                          .nhist = req->nmetas ? 0 : req->nhist,
                          .nmetas = req->nmetas,
                          .max_ts_ms = req->max_ts_ms};
    int rc = rw_spill_append(&d->store, &info, raw->p, raw->len);
    publish(st);
    if (rc != 0 && rc != DR_EINVAL)
        dr_log(st->inst, DR_LOG_ERROR,
               "cannot write to the spill directory, keeping the request in memory", "error=\"%s\"",
               dr_strerror(rc));
    return rc;
}

/* The samples a request drops when it is too large for the disk. */
static uint64_t request_samples(const rw_request *req)
{
    return req->nmetas ? 0 : req->nsamples;
}

bool rw_disk_take(rw_state *st, rw_shard *sh, rw_request *req)
{
    rw_disk *d = &st->disk;
    if (!d->enabled || !d->active || req->replay || st->stopping)
        return false;
    int rc = spill_request(st, req, &sh->scratch);
    if (rc == 0)
        rw_request_done(st, req, 0);
    else if (rc == DR_EINVAL)
        rw_request_done(st, req, request_samples(req));
    return rc == 0 || rc == DR_EINVAL;
}

/* Moves the requests waiting in a shard to disk, in order (the one in
 * flight stays). Each is encoded again: its samples are still held by
 * its batch. */
static void evacuate_shard(rw_state *st, rw_shard *sh)
{
    rw_request **link = &sh->head;
    if (sh->inflight && sh->head) {
        link = &sh->head->next;
    } else {
        uv_timer_stop(&sh->timer);
        sh->waiting = false;
    }
    while (*link) {
        rw_request *req = *link;
        if (req->replay || rw_request_encode(st, sh, req) != 0)
            break; /* stays, with what follows it, in memory */
        int rc = spill_request(st, req, &sh->scratch);
        if (rc != 0 && rc != DR_EINVAL)
            break;
        *link = req->next;
        if (sh->tail == req)
            sh->tail = link == &sh->head ? NULL : sh->head;
        sh->pending_samples -= req->nsamples;
        rw_request_done(st, req, rc == 0 ? 0 : request_samples(req));
    }
}

void rw_disk_check(rw_state *st)
{
    rw_disk *d = &st->disk;
    if (!d->enabled || d->active || st->stopping || !st->shards)
        return;
    if (!receiver_failing(st))
        return;
    int64_t after = st->conf->spill_after_ms;
    bool long_failing =
        after > 0 && st->failing_since_ms && dr_now_ns() / 1000000 - st->failing_since_ms >= after;
    bool full = dr_output_queue_fill(st->inst) * 100 >= (double)st->conf->spill_high_water;
    if (!long_failing && !full)
        return;
    set_active(st, true);
    for (uint32_t i = 0; i < st->max_shards; i++)
        evacuate_shard(st, &st->shards[i]);
    rw_shards_refresh(st);
}

/* A request for the record just read into d->raw. */
static rw_request *replay_request(rw_state *st, const rw_spill_info *info, rw_spill_pos end)
{
    rw_disk *d = &st->disk;
    rw_request *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    if (dr_compress_snappy(d->raw.p, d->raw.len, &req->body) != 0) {
        free(req);
        return NULL;
    }
    req->replay = true;
    req->spill_end = end;
    req->version = info->version == RW_V2 ? RW_V2 : RW_V1;
    req->nsamples = info->nsamples + info->nhist;
    req->nhist = info->nhist;
    req->nmetas = info->nmetas;
    req->max_ts_ms = info->max_ts_ms;
    return req;
}

void rw_disk_kick(rw_state *st)
{
    rw_disk *d = &st->disk;
    if (!d->enabled || !d->active || d->replaying || st->stopping || !st->shards ||
        !rw_shards_idle(st))
        return;
    rw_spill_info info;
    rw_spill_pos end;
    int rc = rw_spill_next(&d->store, &info, &d->raw, &end);
    publish(st);
    if (rc == 0) {
        if (rw_spill_empty(&d->store))
            set_active(st, false);
        return;
    }
    if (rc < 0) {
        dr_log(st->inst, DR_LOG_ERROR, "cannot read the spill directory, will try again",
               "error=\"%s\"", dr_strerror(rc));
        return;
    }
    rw_request *req = replay_request(st, &info, end);
    if (!req) {
        /* read again next time: nothing was delivered */
        dr_log(st->inst, DR_LOG_ERROR, "out of memory replaying a spilled request", NULL);
        rw_spill_unread(&d->store);
        return;
    }
    d->replaying = true;
    rw_shard_push(&st->shards[0], req);
}

void rw_disk_replay_done(rw_state *st, rw_spill_pos end)
{
    rw_disk *d = &st->disk;
    d->replaying = false;
    dr_counter_add(d->replayed, 1);
    rw_spill_delivered(&d->store, end);
    publish(st);
}

/* ---- the timer: syncs off the loop ---------------------------------------------------- */

static void sync_work(uv_work_t *w)
{
    rw_state *st = w->data;
    rw_spill_sync_run(&st->disk.sync);
}

static void sync_done(uv_work_t *w, int status)
{
    (void)status;
    rw_state *st = w->data;
    rw_disk *d = &st->disk;
    if (d->sync.err && !st->stopping)
        dr_log(st->inst, DR_LOG_ERROR, "cannot sync the spill directory", "error=\"%s\"",
               strerror(d->sync.err));
    rw_spill_sync_free(&d->sync);
    d->syncing = false;
    rw_handle_closed(st);
}

static void start_sync(rw_state *st)
{
    rw_disk *d = &st->disk;
    if (d->syncing || !rw_spill_sync_take(&d->store, &d->sync))
        return;
    d->work.data = st;
    if (uv_queue_work(st->inst->loop, &d->work, sync_work, sync_done) != 0) {
        rw_spill_sync_run(&d->sync); /* no worker: here, rather than not at all */
        rw_spill_sync_free(&d->sync);
        return;
    }
    d->syncing = true;
    st->open_handles++;
}

static void on_tick(uv_timer_t *t)
{
    rw_state *st = t->data;
    if (st->stopping)
        return;
    rw_disk_check(st);
    rw_disk_kick(st);
    start_sync(st);
    publish(st);
}

/* ---- life cycle ------------------------------------------------------------------------------ */

void rw_disk_start(rw_state *st)
{
    rw_disk *d = &st->disk;
    create_metrics(st);
    if (!st->conf->spill_max_bytes)
        return;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/remote_write/%s", dr_agent_data_dir(st->inst->agent),
             st->inst->name);
    dr_error err = {{0}};
    if (rw_spill_open(&d->store, dir, st->conf->spill_max_bytes, st->conf->spill_segment_bytes,
                      &err) != 0) {
        dr_log(st->inst, DR_LOG_ERROR, "spilling to disk is off", "error=\"%s\"", err.msg);
        rw_spill_close(&d->store, false);
        return;
    }
    d->enabled = true;
    uv_timer_init(st->inst->loop, &d->timer);
    d->timer.data = st;
    d->timer_open = true;
    st->open_handles++;
    uv_timer_start(&d->timer, on_tick, RW_SPILL_TICK_MS, RW_SPILL_TICK_MS);
    if (!rw_spill_empty(&d->store)) {
        dr_log(st->inst, DR_LOG_INFO, "replaying what an earlier run spilled", "bytes=%llu",
               (unsigned long long)d->store.total_bytes);
        set_active(st, true);
    }
    publish(st);
}

void rw_disk_stop(rw_state *st)
{
    rw_disk *d = &st->disk;
    d->replaying = false;
    if (d->timer_open)
        uv_timer_stop(&d->timer);
}

void rw_disk_close(rw_state *st, uv_close_cb on_closed)
{
    rw_disk *d = &st->disk;
    if (d->timer_open && !uv_is_closing((uv_handle_t *)&d->timer))
        uv_close((uv_handle_t *)&d->timer, on_closed);
}

void rw_disk_free(rw_state *st)
{
    rw_disk *d = &st->disk;
    /* a sync still running saves the state itself: two writers of the
     * temporary state file would spoil it */
    if (d->enabled)
        rw_spill_close(&d->store, !d->syncing);
    d->enabled = false;
    dr_buf_free(&d->raw);
}
