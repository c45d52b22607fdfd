/*
 * remote_write shards: per-shard FIFOs of requests, each sent one at a
 * time, retried alone with exponential backoff (min_backoff doubling up to
 * max_backoff, or longer when the receiver says Retry-After), and the
 * number of shards adjusted to the load the way Prometheus' queue manager
 * does it.
 *
 * Resharding: every 10 s the rates of samples in and out and the time spent
 * sending give the time one sample takes to send; the shards wanted are
 * that time multiplied by the rate of samples coming in, plus a share of
 * the backlog (so a queue that fell behind catches up). The count changes
 * only when the wish is more than 30% away from the current count, never
 * upwards while sends fail (more shards would not help a receiver that is
 * down), never downwards while the queue is over half full, and only once
 * every shard has drained: a series' samples must not be in two shards at
 * once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress.h"
#include "rw.h"

#define RW_EWMA_WEIGHT 0.2
#define RW_BACKLOG_SHARE 0.05
/* A queue this full, with shards sending this share of the time, means the
 * shards cannot keep up. */
#define RW_SATURATED_FILL 0.5
#define RW_SATURATED_BUSY 0.7
/* What a growth for a full queue must have gained before the next one. */
#define RW_GROWTH_GAIN 1.1

static void shard_kick(rw_shard *sh);

static int64_t now_ms(void)
{
    return dr_now_ns() / 1000000;
}

static void update_pending(rw_state *st)
{
    if (!st->shards)
        return;
    uint64_t n = 0;
    for (uint32_t i = 0; i < st->max_shards; i++)
        n += st->shards[i].pending_samples;
    dr_gauge_set(st->m.pending, (double)n);
}

void rw_request_free(rw_state *st, rw_request *req)
{
    (void)st;
    dr_buf_free(&req->body);
    free(req->samples);
    free(req);
}

static void batch_end(rw_batch *b, bool retry)
{
    if (retry)
        dr_output_done(b->flush, DR_RETRY, NULL);
    else
        dr_output_done_partial(b->flush, b->dropped);
    free(b);
}

void rw_request_done(rw_state *st, rw_request *req, uint64_t dropped)
{
    if (req->replay) {
        rw_spill_pos end = req->spill_end;
        rw_request_free(st, req);
        rw_disk_replay_done(st, end);
        rw_disk_kick(st);
        return;
    }
    rw_batch *b = req->batch;
    rw_request_free(st, req);
    b->dropped += dropped;
    if (--b->outstanding == 0)
        batch_end(b, false);
    if (st->want_shards != st->nshards && rw_shards_idle(st))
        rw_release_held(st);
    rw_disk_kick(st);
}

bool rw_shards_idle(const rw_state *st)
{
    for (uint32_t i = 0; i < st->max_shards; i++)
        if (st->shards[i].head || st->shards[i].inflight)
            return false;
    return true;
}

static rw_request *shard_pop(rw_shard *sh)
{
    rw_request *req = sh->head;
    sh->head = req->next;
    if (!sh->head)
        sh->tail = NULL;
    sh->pending_samples -= req->nsamples;
    return req;
}

void rw_shards_refresh(rw_state *st)
{
    update_pending(st);
}

void rw_shard_push(rw_shard *sh, rw_request *req)
{
    if (rw_disk_take(sh->st, sh, req))
        return;
    req->next = NULL;
    if (sh->tail)
        sh->tail->next = req;
    else
        sh->head = req;
    sh->tail = req;
    sh->pending_samples += req->nsamples;
    update_pending(sh->st);
    shard_kick(sh);
}

/* ---- answers ---------------------------------------------------------------------------- */

static void on_backoff_done(uv_timer_t *t)
{
    rw_shard *sh = t->data;
    sh->waiting = false;
    shard_kick(sh);
}

static void count_sent(rw_state *st, const rw_request *req)
{
    if (req->nmetas) {
        dr_counter_add(st->m.metadata_sent, req->nmetas);
        return;
    }
    uint64_t hist = req->nhist;
    dr_counter_add(st->m.samples_sent, req->nsamples - hist);
    dr_counter_add(st->m.histograms_sent, hist);
    dr_counter_add(st->m.bytes_sent, req->body.len);
    if (req->max_ts_ms > st->highest_sent_ts_ms) {
        st->highest_sent_ts_ms = req->max_ts_ms;
        dr_gauge_set(st->m.highest_sent_ts, (double)req->max_ts_ms / 1000.0);
    }
}

static void schedule_retry(rw_shard *sh, rw_request *req, const dr_http_response *r)
{
    rw_state *st = sh->st;
    int64_t delay = sh->backoff_ms;
    if (r->retry_after_ms > delay)
        delay = r->retry_after_ms;
    sh->backoff_ms *= 2;
    if (sh->backoff_ms > st->conf->max_backoff_ms)
        sh->backoff_ms = st->conf->max_backoff_ms;
    req->attempts++;
    st->last_failure_ms = now_ms();
    if (!st->failing_since_ms)
        st->failing_since_ms = st->last_failure_ms;
    dr_counter_add(st->m.requests_retried, 1);
    if (!req->nmetas)
        dr_counter_add(st->m.samples_retried, req->nsamples);
    char snippet[201];
    dr_http_response_snippet(r, snippet, sizeof snippet);
    dr_log(st->inst, DR_LOG_WARN, "remote write failed, will retry",
           "shard=%u status=%d attempt=%u retry_in_ms=%lld %s=\"%s\"", sh->index, r->status,
           req->attempts, (long long)delay, r->status ? "response" : "error", snippet);
    sh->waiting = true;
    uv_timer_start(&sh->timer, on_backoff_done, (uint64_t)delay, 0);
}

static const char *refusal_reason(int status)
{
    switch (status) {
    case 400:
        return "rejected";
    case 401:
    case 403:
        return "unauthorized";
    case 404:
        return "not_found";
    case 413:
        return "too_large";
    default:
        return "refused";
    }
}

static void refuse(rw_shard *sh, rw_request *req, const dr_http_response *r)
{
    rw_state *st = sh->st;
    char snippet[301];
    dr_http_response_snippet(r, snippet, sizeof snippet);
    const char *reason = refusal_reason(r->status);
    uint64_t dropped = 0;
    if (req->nmetas) {
        dr_log(st->inst, DR_LOG_WARN, "metadata refused, dropped",
               "status=%d entries=%u response=\"%s\"", r->status, req->nmetas, snippet);
    } else {
        dropped = req->nsamples;
        dr_counter_add(st->m.samples_failed, dropped);
        dr_count_drop(st->inst, reason, dropped);
        dr_log(st->inst, DR_LOG_WARN, "remote write refused, samples dropped",
               "status=%d samples=%u reason=%s response=\"%s\"", r->status, req->nsamples, reason,
               snippet);
    }
    rw_request_done(st, shard_pop(sh), dropped);
}

/* A 2.0 receiver that does not speak 2.0 answers 415: from now on 1.0,
 * this request too (encoded again, sent at once). */
static bool fall_back_to_v1(rw_shard *sh, rw_request *req, const dr_http_response *r)
{
    rw_state *st = sh->st;
    if (r->status != 415 || req->version != RW_V2 || req->replay)
        return false; /* a body from disk cannot be encoded again: refused */
    if (st->version == RW_V2)
        dr_log(st->inst, DR_LOG_WARN,
               "the receiver does not take remote write 2.0 (415), using 1.0", NULL);
    st->version = RW_V1;
    return rw_request_encode(st, sh, req) == 0;
}

static void on_sent(void *ctx, const dr_http_response *r)
{
    rw_shard *sh = ctx;
    rw_state *st = sh->st;
    sh->inflight = false;
    if (st->stopping)
        return; /* rw_shards_stop ended the batches; the instance may be gone */
    rw_request *req = sh->head;
    st->send_ns_total += dr_mono_ns() - sh->sent_at_ns;
    dr_http_stats_answer(&st->http_stats, r->status);
    switch (dr_http_classify(r)) {
    case DR_HTTP_OK:
        sh->backoff_ms = st->conf->min_backoff_ms;
        st->failing_since_ms = 0;
        count_sent(st, req);
        rw_request_done(st, shard_pop(sh), 0);
        break;
    case DR_HTTP_RETRY:
        schedule_retry(sh, req, r);
        return;
    case DR_HTTP_FAIL:
        if (!fall_back_to_v1(sh, req, r))
            refuse(sh, req, r);
        break;
    }
    update_pending(st);
    shard_kick(sh);
}

/* ---- sending ---------------------------------------------------------------------------- */

static void send_head(rw_shard *sh)
{
    rw_state *st = sh->st;
    rw_request *req = sh->head;
    const char *headers[12];
    size_t nh = 0;
    headers[nh++] = "Content-Encoding: snappy";
    if (req->version == RW_V2) {
        headers[nh++] = "Content-Type: application/x-protobuf;proto=io.prometheus.write.v2.Request";
        headers[nh++] = "X-Prometheus-Remote-Write-Version: 2.0.0";
    } else {
        headers[nh++] = "Content-Type: application/x-protobuf";
        headers[nh++] = "X-Prometheus-Remote-Write-Version: 0.1.0";
    }
    headers[nh++] = "User-Agent: drover/" DROVER_VERSION;
    headers[nh] = NULL;
    int signed_rc = st->sigv4 ? rw_sigv4_sign(st, headers, &nh, sizeof headers / sizeof headers[0],
                                              req->body.p, req->body.len)
                              : 0;
    if (signed_rc == DR_EAGAIN)
        return; /* held until credentials arrive: rw_shards_kick_all */
    if (signed_rc != 0) {
        dr_http_response none = {.status = 0, .error = "cannot sign", .retry_after_ms = -1};
        schedule_retry(sh, req, &none);
        return;
    }
    dr_http_request hr = {.method = "POST",
                          .url = st->conf->url,
                          .headers = headers,
                          .body = req->body.p,
                          .body_len = req->body.len,
                          .timeout_ms = st->conf->remote_timeout_ms};
    sh->inflight = true;
    sh->sent_at_ns = dr_mono_ns();
    int rc = dr_http_client_send(st->client, &hr, on_sent, sh);
    if (rc < 0) {
        sh->inflight = false;
        dr_http_response none = {.status = 0, .error = dr_strerror(rc), .retry_after_ms = -1};
        schedule_retry(sh, req, &none);
        return;
    }
    dr_http_stats_sent(&st->http_stats, req->body.len);
}

static void shard_kick(rw_shard *sh)
{
    if (sh->st->stopping || sh->inflight || sh->waiting || !sh->head)
        return;
    send_head(sh);
}

void rw_shards_kick_all(rw_state *st)
{
    for (uint32_t i = 0; st->shards && i < st->max_shards; i++)
        shard_kick(&st->shards[i]);
}

/* ---- life cycle -------------------------------------------------------------------------- */

int rw_shards_init(rw_state *st)
{
    uint32_t n = st->max_shards;
    st->shards = calloc(n, sizeof *st->shards);
    if (!st->shards)
        return DR_ENOMEM;
    /* every timer first, so that closing them all is always right */
    for (uint32_t i = 0; i < n; i++) {
        rw_shard *sh = &st->shards[i];
        sh->st = st;
        sh->index = i;
        sh->backoff_ms = st->conf->min_backoff_ms;
        uv_timer_init(st->inst->loop, &sh->timer);
        sh->timer.data = sh;
        st->open_handles++;
    }
    for (uint32_t i = 0; i < n; i++)
        if (!(st->shards[i].writer = dr_prw_writer_new()))
            return DR_ENOMEM;
    st->nshards = st->want_shards = (uint32_t)st->conf->min_shards;
    dr_gauge_set(st->m.shards, st->nshards);
    dr_gauge_set(st->m.shards_desired, st->nshards);
    return 0;
}

void rw_shards_stop(rw_state *st)
{
    st->stopping = true;
    for (uint32_t i = 0; st->shards && i < st->max_shards; i++) {
        rw_shard *sh = &st->shards[i];
        uv_timer_stop(&sh->timer);
        sh->waiting = false;
        /* every batch with a request left ends as a retry: the core gives
         * its chunks back (at shutdown: not acknowledged) */
        while (sh->head) {
            rw_request *req = shard_pop(sh);
            if (req->replay) { /* not delivered: read again at the next start */
                rw_request_free(st, req);
                continue;
            }
            rw_batch *b = req->batch;
            rw_request_free(st, req);
            b->failed = true;
            if (--b->outstanding == 0)
                batch_end(b, true);
        }
    }
    while (st->held) {
        rw_batch *b = st->held;
        st->held = b->next;
        batch_end(b, true);
    }
    st->held_tail = NULL;
    update_pending(st);
}

void rw_shards_close(rw_state *st, uv_close_cb on_closed)
{
    for (uint32_t i = 0; st->shards && i < st->max_shards; i++) {
        rw_shard *sh = &st->shards[i];
        if (!uv_is_closing((uv_handle_t *)&sh->timer))
            uv_close((uv_handle_t *)&sh->timer, on_closed);
    }
}

/* ---- resharding -------------------------------------------------------------------------- */

static double ewma(double old, double sample)
{
    return old == 0 ? sample : old + RW_EWMA_WEIGHT * (sample - old);
}

static uint32_t desired_shards(rw_state *st)
{
    uint64_t in = dr_counter_get(st->m.samples_in);
    uint64_t out = dr_counter_get(st->m.samples_sent) + dr_counter_get(st->m.histograms_sent);
    double secs = RW_RESHARD_MS / 1000.0;
    double out_now = (double)(out - st->last_out) / secs;
    st->in_rate = ewma(st->in_rate, (double)(in - st->last_in) / secs);
    st->out_rate = ewma(st->out_rate, out_now);
    /* seconds spent sending, per second: over the last period (busy) and
     * smoothed (send_rate) */
    double busy = (double)(st->send_ns_total - st->last_send_ns) / 1e9 / secs;
    st->send_rate = ewma(st->send_rate, busy);
    st->last_in = in;
    st->last_out = out;
    st->last_send_ns = st->send_ns_total;
    if (st->out_rate <= 0)
        return st->nshards;
    double time_per_sample = st->send_rate / st->out_rate;
    uint64_t pending = 0;
    for (uint32_t i = 0; i < st->nshards; i++)
        pending += st->shards[i].pending_samples;
    double want = time_per_sample * (st->in_rate + RW_BACKLOG_SHARE * (double)pending);
    /* Busy shards behind a filling queue: the input is held back (scrapes
     * skip), so its rate understates the load. Grow by half at a time,
     * judging the last period alone (the smoothed rate would lag a step
     * behind each growth), and again only once the last growth has sent
     * more: shards wait on a receiver (or a loop) at its limit just as
     * busily, and more of them only make smaller requests. */
    double fill = st->max_fill;
    st->max_fill = 0;
    if (fill >= RW_SATURATED_FILL && busy >= RW_SATURATED_BUSY * st->nshards) {
        double grown = st->nshards + (st->nshards + 1) / 2;
        if (want < grown && out_now >= RW_GROWTH_GAIN * st->grown_out_rate) {
            want = grown;
            st->grown_out_rate = out_now;
        }
    } else if (fill < RW_SATURATED_FILL) {
        st->grown_out_rate = 0;
    }
    double lo = 0.7 * st->nshards, hi = 1.3 * st->nshards;
    if (want >= lo && want <= hi)
        return st->nshards;
    /* fewer shards behind a filling queue would only fall further behind
     * (the rates are noisy while scrapes skip and reshards drain) */
    if (want < lo && fill >= RW_SATURATED_FILL)
        return st->nshards;
    uint32_t n = (uint32_t)(want + 0.999);
    if (n < (uint32_t)st->conf->min_shards)
        n = (uint32_t)st->conf->min_shards;
    if (n > st->max_shards)
        n = st->max_shards;
    /* more shards do not help a receiver that fails */
    if (n > st->nshards && now_ms() - st->last_failure_ms < 2 * RW_RESHARD_MS)
        return st->nshards;
    return n;
}

void rw_reshard_tick(uv_timer_t *timer)
{
    rw_state *st = timer->data;
    if (st->stopping)
        return;
    uint32_t want = desired_shards(st);
    dr_gauge_set(st->m.shards_desired, want);
    if (want != st->nshards) {
        dr_log(st->inst, DR_LOG_INFO, "resharding", "from=%u to=%u", st->nshards, want);
        st->want_shards = want;
        if (rw_shards_idle(st))
            rw_release_held(st);
    }
}
