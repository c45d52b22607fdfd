/*
 * One scrape target: scraping it on its timer and turning each answer into
 * a metric chunk, as Prometheus' scrape loop does.
 *
 * A scrape: GET the URL (Accept from scrape_protocols, gzip asked for),
 * decompress, pick the parser from the Content-Type, and for each sample
 * find its series through the cache (cache.h); a line not seen before gets
 * the target's labels (honor_labels decides clashes), metric relabeling,
 * the limits, and is interned. Samples go into one chunk with the scrape's
 * timestamp (or their own, with honor_timestamps), followed by staleness
 * markers for the series that disappeared and by the report series (up,
 * scrape_duration_seconds, ...). A scrape fails as a whole: a bad body, a
 * limit passed or an HTTP error emits no samples of the body, only the
 * staleness markers of the last good scrape's series and up = 0.
 *
 * Memory: the decompressed body buffer is kept between scrapes (its size
 * is that of the target's body, bounded by body_size_limit); the cache and
 * the series are the steady state; a chunk lives until the outputs let go.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress.h"
#include "json.h"
#include "scrape.h"
#include "series.h"

/* The report series, in the order of scrape_target.report. */
enum { REPORT_UP, REPORT_DURATION, REPORT_SCRAPED, REPORT_POST_RELABEL, REPORT_ADDED, NREPORT };

static const char *const report_names[NREPORT] = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
};

/* Default bound of a body when the job sets none (uncompressed, and of the
 * compressed answer too). */
#define SCRAPE_DEFAULT_BODY_LIMIT ((uint64_t)128 << 20)

/* What one scrape in progress carries through the parser's callbacks. */
typedef struct scrape_run {
    scrape_target *t;
    dr_chunk *chunk;
    int64_t ts_ms;
    uint32_t iter;
    uint64_t scraped, post_relabel, series_added, duplicates, series_limited;
    bool want_meta;
    dr_labels scratch;
    char error[256];
    const char *reason; /* the failure's reason label, with error */
    cache_entry *hit;   /* what on_known found for the sample to come */
} scrape_run;

/* ---- lifetime ------------------------------------------------------------------------ */

scrape_target *target_new(scrape_job *job)
{
    scrape_target *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->job = job;
    dr_labels_init(&t->labels);
    dr_labels_init(&t->discovered);
    cache_init(&t->cache, job->in->series);
    return t;
}

static void release_series(scrape_target *t);

static void target_free(scrape_target *t)
{
    release_series(t);
    dr_labels_free(&t->labels);
    dr_labels_free(&t->discovered);
    free(t->url);
    free(t);
}

/* A target is freed once its timer is closed and no scrape is in flight. */
static void maybe_free(scrape_target *t)
{
    if (t->removed && !t->inflight && !t->timer_started)
        target_free(t);
}

static void on_timer_closed(uv_handle_t *h)
{
    scrape_target *t = h->data;
    t->timer_started = false;
    maybe_free(t);
}

/* ---- building series ------------------------------------------------------------------ */

/* A label of the target goes onto a scraped series. Without honor_labels
 * the target wins and a clashing scraped label is kept as exported_<name>
 * (exported_exported_<name> if that is taken too, shortest names first,
 * as Prometheus resolves them). */
static int merge_target_labels(const scrape_target *t, dr_labels *ls)
{
    const dr_labels *tl = &t->labels;
    if (t->job->honor_labels) {
        for (uint32_t i = 0; i < tl->n; i++)
            if (!dr_labels_get(ls, tl->v[i].name, tl->v[i].name_len)) {
                int rc = dr_labels_add(ls, tl->v[i].name, tl->v[i].name_len, tl->v[i].value,
                                       tl->v[i].value_len);
                if (rc != 0)
                    return rc;
            }
        return 0;
    }
    /* the clashes, remembered before the target's values replace them */
    dr_label clash[64];
    uint32_t nclash = 0;
    for (uint32_t i = 0; i < tl->n; i++) {
        const dr_label *have = dr_labels_get(ls, tl->v[i].name, tl->v[i].name_len);
        if (have && have->value_len > 0) {
            if (nclash == sizeof clash / sizeof clash[0])
                return DR_EINVAL; /* a target with this many labels is not one */
            clash[nclash++] = *have;
        }
        int rc =
            dr_labels_set(ls, tl->v[i].name, tl->v[i].name_len, tl->v[i].value, tl->v[i].value_len);
        if (rc != 0)
            return rc;
    }
    /* shortest first, then by name: the order Prometheus renames them in */
    for (uint32_t i = 1; i < nclash; i++)
        for (uint32_t j = i;
             j > 0 && (clash[j].name_len < clash[j - 1].name_len ||
                       (clash[j].name_len == clash[j - 1].name_len &&
                        memcmp(clash[j].name, clash[j - 1].name, clash[j].name_len) < 0));
             j--) {
            dr_label tmp = clash[j];
            clash[j] = clash[j - 1];
            clash[j - 1] = tmp;
        }
    for (uint32_t i = 0; i < nclash; i++) {
        char name[512];
        size_t n = (size_t)snprintf(name, sizeof name, "exported_%.*s", (int)clash[i].name_len,
                                    clash[i].name);
        while (n < sizeof name && dr_labels_get(ls, name, n)) {
            if (n + 9 >= sizeof name)
                return DR_EINVAL;
            memmove(name + 9, name, n + 1);
            memcpy(name, "exported_", 9);
            n += 9;
        }
        if (n >= sizeof name)
            return DR_EINVAL;
        int rc = dr_labels_set(ls, name, n, clash[i].value, clash[i].value_len);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The limits of the job on a series after relabeling; false with the
 * reason in r->error when one is passed. */
static bool within_limits(scrape_run *r, const dr_labels *ls)
{
    const scrape_job *job = r->t->job;
    if (job->label_limit && ls->n > job->label_limit) {
        r->reason = "label_limit";
        snprintf(r->error, sizeof r->error,
                 "label_limit exceeded (number of labels: %u, limit: %llu)", ls->n,
                 (unsigned long long)job->label_limit);
        return false;
    }
    for (uint32_t i = 0; i < ls->n; i++) {
        const dr_label *l = &ls->v[i];
        if (job->label_name_length_limit && l->name_len > job->label_name_length_limit) {
            r->reason = "label_name_length_limit";
            snprintf(r->error, sizeof r->error,
                     "label_name_length_limit exceeded (label name: %.50s, length: %u, limit: "
                     "%llu)",
                     l->name, l->name_len, (unsigned long long)job->label_name_length_limit);
            return false;
        }
        if (job->label_value_length_limit && l->value_len > job->label_value_length_limit) {
            r->reason = "label_value_length_limit";
            snprintf(r->error, sizeof r->error,
                     "label_value_length_limit exceeded (label name: %.*s, value length: %u, "
                     "limit: %llu)",
                     (int)(l->name_len < 50 ? l->name_len : 50), l->name, l->value_len,
                     (unsigned long long)job->label_value_length_limit);
            return false;
        }
    }
    return true;
}

/* Outcomes of make_series besides the DR_E* codes. */
enum { SERIES_MADE = 0, SERIES_DROPPED = 1, SERIES_TABLE_FULL = 2 };

/* The series a scraped line becomes. DR_EINVAL with r->error set fails
 * the scrape. */
static int make_series(scrape_run *r, const dr_labels *scraped, dr_series **out)
{
    scrape_target *t = r->t;
    dr_labels *ls = &r->scratch;
    dr_labels_reset(ls);
    for (uint32_t i = 0; i < scraped->n; i++) {
        const dr_label *l = &scraped->v[i];
        int rc = dr_labels_add(ls, l->name, l->name_len, l->value, l->value_len);
        if (rc != 0)
            return rc;
    }
    int rc = merge_target_labels(t, ls);
    if (rc != 0) {
        snprintf(r->error, sizeof r->error, "cannot add the target's labels: %s", dr_strerror(rc));
        return rc == DR_ENOMEM ? rc : DR_EINVAL;
    }
    if (t->job->metric_relabel) {
        int keep = dr_relabel_apply(t->job->metric_relabel, ls);
        if (keep < 0) {
            snprintf(r->error, sizeof r->error, "metric relabeling failed: %s", dr_strerror(keep));
            return keep == DR_ENOMEM ? keep : DR_EINVAL;
        }
        if (keep == 0)
            return SERIES_DROPPED;
    }
    if (dr_labels_canon(ls) != 0) {
        snprintf(r->error, sizeof r->error, "duplicate label names in a series");
        return DR_EINVAL;
    }
    if (ls->n == 0)
        return SERIES_DROPPED; /* relabeling emptied it: nothing to store */
    size_t nlen;
    dr_labels_value(ls, "__name__", 8, &nlen);
    if (nlen == 0) {
        snprintf(r->error, sizeof r->error, "a series has no metric name after relabeling");
        return DR_EINVAL;
    }
    for (uint32_t i = 0; i < ls->n; i++) {
        const dr_label *l = &ls->v[i];
        if (dr_utf8_valid_prefix(l->value, l->value_len) != l->value_len ||
            dr_utf8_valid_prefix(l->name, l->name_len) != l->name_len) {
            snprintf(r->error, sizeof r->error, "invalid UTF-8 in label %.*s",
                     (int)(l->name_len < 50 ? l->name_len : 50), l->name);
            return DR_EINVAL;
        }
    }
    if (!within_limits(r, ls))
        return DR_EINVAL;
    rc = dr_series_intern(t->cache.series, ls, dr_labels_hash(ls), out);
    if (rc == DR_EAGAIN)
        return SERIES_TABLE_FULL;
    return rc;
}

/* A native histogram copied into the chunk's arena (the parser's arrays
 * live only during its callback). */
static const dr_native_hist *copy_hist(dr_chunk *c, const dr_native_hist *h)
{
    dr_native_hist *n = dr_chunk_alloc(c, sizeof *n);
    if (!n)
        return NULL;
    *n = *h;
    dr_hist_span *ns = dr_chunk_alloc(c, sizeof *ns * (h->n_neg_spans + 1));
    dr_hist_span *ps = dr_chunk_alloc(c, sizeof *ps * (h->n_pos_spans + 1));
    if (!ns || !ps)
        return NULL;
    memcpy(ns, h->neg_spans, sizeof *ns * h->n_neg_spans);
    memcpy(ps, h->pos_spans, sizeof *ps * h->n_pos_spans);
    n->neg_spans = ns;
    n->pos_spans = ps;
    if (h->is_float) {
        double *nc = dr_chunk_alloc(c, sizeof *nc * (h->n_neg + 1));
        double *pc = dr_chunk_alloc(c, sizeof *pc * (h->n_pos + 1));
        if (!nc || !pc)
            return NULL;
        memcpy(nc, h->neg_counts, sizeof *nc * h->n_neg);
        memcpy(pc, h->pos_counts, sizeof *pc * h->n_pos);
        n->neg_counts = nc;
        n->pos_counts = pc;
    } else {
        int64_t *nd = dr_chunk_alloc(c, sizeof *nd * (h->n_neg + 1));
        int64_t *pd = dr_chunk_alloc(c, sizeof *pd * (h->n_pos + 1));
        if (!nd || !pd)
            return NULL;
        memcpy(nd, h->neg_deltas, sizeof *nd * h->n_neg);
        memcpy(pd, h->pos_deltas, sizeof *pd * h->n_pos);
        n->neg_deltas = nd;
        n->pos_deltas = pd;
    }
    return n;
}

/* ---- the parser's callbacks ----------------------------------------------------------- */

static int on_meta(void *ctx, const dr_expo_meta *m)
{
    scrape_run *r = ctx;
    if (!r->want_meta)
        return 0;
    return dr_chunk_add_meta(r->chunk, m->family, m->family_len, (uint8_t)m->type, m->help,
                             m->help_len, m->unit, m->unit_len);
}

/* The parser asks before it takes a series apart: a cached one needs no
 * labels. The entry found is the one the sample callback then uses. */
static bool on_known(void *ctx, const dr_expo_key *key)
{
    scrape_run *r = ctx;
    r->hit = cache_find(&r->t->cache, key->a, key->b);
    return r->hit != NULL;
}

static int on_sample(void *ctx, const dr_expo_sample *s)
{
    scrape_run *r = ctx;
    scrape_target *t = r->t;
    r->scraped++;
    cache_entry *e = s->labels ? cache_find(&t->cache, s->key.a, s->key.b) : r->hit;
    if (e && cache_seen(e, r->iter)) {
        r->duplicates++; /* the same series twice in one body: the first counts */
        return 0;
    }
    if (!e) {
        dr_series *series = NULL;
        int rc = make_series(r, s->labels, &series);
        if (rc < 0)
            return rc;
        if (rc == SERIES_TABLE_FULL) {
            r->series_limited++; /* not cached: it may fit next time */
            return 0;
        }
        e = cache_add(&t->cache, s->key.a, s->key.b, series, r->iter,
                      CACHE_NEW | (rc == SERIES_DROPPED ? CACHE_DROPPED : 0));
        if (!e) {
            dr_series_unref(t->cache.series, series);
            return DR_ENOMEM;
        }
        if (series)
            r->series_added++;
    }
    cache_mark_seen(e, r->iter);
    if (!e->series)
        return 0;
    r->post_relabel++;
    if (t->job->sample_limit && r->post_relabel > t->job->sample_limit) {
        r->reason = "sample_limit";
        snprintf(r->error, sizeof r->error, "sample_limit exceeded (limit: %llu)",
                 (unsigned long long)t->job->sample_limit);
        return DR_EINVAL;
    }
    bool own_ts = t->job->honor_timestamps && s->has_ts;
    if (own_ts && !t->job->track_timestamps_staleness)
        e->flags |= CACHE_EXPLICIT_TS;
    else
        e->flags &= ~(uint32_t)CACHE_EXPLICIT_TS;
    dr_sample *smp =
        dr_chunk_add_sample(r->chunk, e->series, own_ts ? s->ts_ms : r->ts_ms, s->value);
    if (!smp)
        return DR_ENOMEM;
    if (s->hist && !(smp->hist = copy_hist(r->chunk, s->hist)))
        return DR_ENOMEM;
    return 0;
}

/* ---- staleness and report ------------------------------------------------------------- */

typedef struct stale_ctx {
    dr_chunk *chunk;
    int64_t ts_ms;
    uint64_t n;
    bool all; /* every entry (a failed scrape), not only those not seen now */
} stale_ctx;

static bool wants_stale_marker(const cache_entry *e)
{
    return e->series && !(e->flags & CACHE_EXPLICIT_TS);
}

static void add_stale(void *ctx, const cache_entry *e)
{
    stale_ctx *sc = ctx;
    if (wants_stale_marker(e) && !(e->flags & CACHE_RESPELLED) &&
        dr_chunk_add_sample(sc->chunk, e->series, sc->ts_ms, dr_stale_nan()))
        sc->n++;
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

/* Text bodies key a series by its spelling, so after a scrape that came in
 * another format than the last one, the old entries go unseen although
 * their series may have come again under new keys. Those entries must go
 * without a stale marker: their series are alive. Rare (a target changing
 * its format), so a sorted array does. */
static void spare_respelled(scrape_target *t, uint32_t iter)
{
    scrape_cache *c = &t->cache;
    dr_series **seen = malloc(sizeof *seen * (c->n + 1));
    if (!seen)
        return; /* at worst, stale markers for live series */
    size_t n = 0;
    for (uint32_t i = 0; c->slots && i <= c->mask; i++)
        if (cache_used(&c->slots[i]) && cache_seen(&c->slots[i], iter) && c->slots[i].series)
            seen[n++] = c->slots[i].series;
    qsort(seen, n, sizeof *seen, cmp_ptr);
    for (uint32_t i = 0; c->slots && i <= c->mask; i++) {
        cache_entry *e = &c->slots[i];
        if (cache_used(e) && !cache_seen(e, iter) && e->series &&
            bsearch(&e->series, seen, n, sizeof *seen, cmp_ptr))
            e->flags |= CACHE_RESPELLED;
    }
    free(seen);
}

/* Stale markers for the series of the last good scrape: every entry that
 * was not added by the scrape that just failed. Then the cache empties
 * (the next good scrape builds it again). */
static uint64_t stale_all(scrape_target *t, dr_chunk *c, int64_t ts_ms)
{
    uint64_t n = 0;
    for (uint32_t i = 0; t->cache.slots && i <= t->cache.mask; i++) {
        const cache_entry *e = &t->cache.slots[i];
        if (cache_used(e) && !(e->flags & CACHE_NEW) && wants_stale_marker(e) &&
            dr_chunk_add_sample(c, e->series, ts_ms, dr_stale_nan()))
            n++;
    }
    dr_series_table *st = t->cache.series;
    cache_free(&t->cache);
    cache_init(&t->cache, st);
    return n;
}

static void clear_new_flags(scrape_target *t)
{
    for (uint32_t i = 0; t->cache.slots && i <= t->cache.mask; i++)
        t->cache.slots[i].flags &= ~(uint32_t)CACHE_NEW;
}

/* The report series of the target: its labels and the metric name. Made
 * at the first scrape and held. */
static int report_series(scrape_target *t, int which, dr_series **out)
{
    if (t->report[which]) {
        *out = t->report[which];
        return 0;
    }
    dr_labels ls;
    dr_labels_init(&ls);
    int rc = dr_labels_copy(&ls, &t->labels);
    if (rc == 0)
        rc = dr_labels_sets(&ls, "__name__", report_names[which]);
    if (rc == 0)
        rc = dr_labels_canon(&ls);
    if (rc == 0)
        rc = dr_series_intern(t->cache.series, &ls, dr_labels_hash(&ls), &t->report[which]);
    dr_labels_free(&ls);
    *out = t->report[which];
    return rc;
}

static void add_report(scrape_target *t, dr_chunk *c, int64_t ts_ms, const scrape_health *h)
{
    double v[NREPORT] = {
        h->up ? 1 : 0,
        h->duration_s,
        (double)h->samples_scraped,
        (double)h->samples_post_relabel,
        (double)h->series_added,
    };
    for (int i = 0; i < NREPORT; i++) {
        dr_series *s;
        if (report_series(t, i, &s) == 0)
            dr_chunk_add_sample(c, s, ts_ms, v[i]);
    }
}

/* ---- finishing a scrape ---------------------------------------------------------------- */

static void emit(scrape_target *t, dr_chunk *c)
{
    scrape_input *in = t->job->in;
    if (c->nsamples == 0) {
        dr_chunk_discard(c);
        return;
    }
    dr_counter_add(in->samples, c->nsamples);
    /* a target's scrapes stay in order; different targets' need not wait
     * for each other */
    c->stream = t;
    dr_input_emit(in->inst, c);
}

static void record_health(scrape_target *t, bool up, const char *error, const scrape_run *r)
{
    scrape_health *h = &t->health;
    h->up = up;
    snprintf(h->error, sizeof h->error, "%s", error ? error : "");
    h->last_ms = t->start_ms;
    h->duration_s = (double)(dr_mono_ns() - t->start_mono_ns) / 1e9;
    h->samples_scraped = r ? r->scraped : 0;
    h->samples_post_relabel = up && r ? r->post_relabel : 0;
    h->series_added = up && r ? r->series_added : 0;
}

/* A failed scrape: counted by reason (drover_scrape_failures_total{reason}),
 * logged, and every series of the target ends with a staleness marker. */
static void scrape_failed(scrape_target *t, const char *why, const char *reason)
{
    scrape_input *in = t->job->in;
    dr_counter *failures =
        dr_counter_new(in->inst, "drover_scrape_failures_total",
                       "Scrapes that failed (up = 0), by reason.", "reason", reason);
    if (failures)
        dr_counter_add(failures, 1);
    dr_log(in->inst, DR_LOG_WARN, "scrape failed", "job=%s url=\"%s\" reason=%s error=\"%s\"",
           t->job->name, t->url, reason, why);
    dr_chunk *c = dr_chunk_new_metrics(in->inst, in->series);
    if (!c)
        return;
    uint64_t stale = stale_all(t, c, t->start_ms);
    dr_counter_add(in->stale_markers, stale);
    add_report(t, c, t->start_ms, &t->health);
    emit(t, c);
}

/* The format of a body, from its Content-Type; false (with why) when it
 * names none drover reads and the job has no fallback. */
static bool body_format(const scrape_target *t, const dr_http_response *resp, dr_expo_format *fmt,
                        char *why, size_t whylen)
{
    const char *v;
    size_t n;
    char ct[256] = "";
    if (dr_http_response_header(resp, "Content-Type", &v, &n))
        snprintf(ct, sizeof ct, "%.*s", (int)n, v);
    bool known = false;
    *fmt = dr_expo_format_of(ct[0] ? ct : NULL, &known);
    if (known && ct[0])
        return true;
    if (t->job->has_fallback) {
        *fmt = t->job->fallback;
        return true;
    }
    snprintf(why, whylen,
             "received unsupported Content-Type \"%s\" and no fallback_scrape_protocol is set", ct);
    return false;
}

/* The body to parse: the answer itself, or its gunzip'ed form in the
 * input's shared buffer. */
static int body_bytes(scrape_target *t, const dr_http_response *resp, const char **p, size_t *n,
                      char *why, size_t whylen)
{
    const char *v;
    size_t vn;
    *p = resp->body;
    *n = resp->body_len;
    if (!dr_http_response_header(resp, "Content-Encoding", &v, &vn) || vn == 0 ||
        (vn == 8 && strncasecmp(v, "identity", 8) == 0))
        return 0;
    if (!(vn == 4 && strncasecmp(v, "gzip", 4) == 0)) {
        snprintf(why, whylen, "unsupported Content-Encoding \"%.*s\"", (int)(vn < 64 ? vn : 64), v);
        return DR_EINVAL;
    }
    uint64_t limit = t->job->body_size_limit ? t->job->body_size_limit : SCRAPE_DEFAULT_BODY_LIMIT;
    dr_error err = {{0}};
    dr_buf *buf = &t->job->in->body;
    dr_buf_reset(buf);
    int rc = dr_gunzip(resp->body, resp->body_len, (size_t)limit, buf, &err);
    if (rc != 0) {
        snprintf(why, whylen, "%s", err.msg[0] ? err.msg : dr_strerror(rc));
        return rc;
    }
    *p = buf->p ? buf->p : "";
    *n = buf->len;
    return 0;
}

/* A body of a job with a convert function, as the text it converts to. */
static int convert_body(scrape_target *t, const char **p, size_t *n, char *why, size_t whylen)
{
    dr_buf *out = &t->job->in->converted;
    dr_buf_reset(out);
    int rc = t->job->convert(*p, *n, out, why, whylen);
    if (rc != 0)
        return rc;
    *p = out->p ? out->p : "";
    *n = out->len;
    return 0;
}

static void scrape_done(void *ctx, const dr_http_response *resp)
{
    scrape_target *t = ctx;
    scrape_input *in = t->job->in;
    t->inflight = false;
    if (t->removed || in->stopping) {
        maybe_free(t);
        return;
    }
    char why[256] = "";
    const char *reason = NULL;
    if (resp->status == 0) {
        snprintf(why, sizeof why, "%s", resp->error ? resp->error : "no answer");
        reason = "no_answer";
    } else if (resp->status != 200) {
        snprintf(why, sizeof why, "server returned HTTP status %d", resp->status);
        reason = "http_status";
    } else if (resp->body_truncated) {
        snprintf(why, sizeof why, "body size limit exceeded");
        reason = "body_size_limit";
    }
    dr_expo_format fmt = DR_EXPO_TEXT;
    const char *body = NULL;
    size_t len = 0;
    if (!reason && !t->job->convert && !body_format(t, resp, &fmt, why, sizeof why))
        reason = "content_type";
    if (!reason && body_bytes(t, resp, &body, &len, why, sizeof why) != 0)
        reason = strstr(why, "limit") ? "body_size_limit" : "body";
    if (!reason && t->job->convert && convert_body(t, &body, &len, why, sizeof why) != 0)
        reason = "convert";
    if (reason) {
        record_health(t, false, why, NULL);
        scrape_failed(t, why, reason);
        return;
    }

    scrape_run r = {.t = t, .ts_ms = t->start_ms, .iter = ++t->iter};
    dr_labels_init(&r.scratch);
    r.chunk = dr_chunk_new_metrics(in->inst, in->series);
    r.want_meta = t->start_ms - t->meta_sent_ms >= in->metadata_interval_ms;
    if (!r.chunk) {
        dr_labels_free(&r.scratch);
        record_health(t, false, "out of memory", NULL);
        scrape_failed(t, "out of memory", "out_of_memory");
        return;
    }
    dr_expo_sink sink = {.ctx = &r, .sample = on_sample, .meta = on_meta, .known = on_known};
    dr_error err = {{0}};
    int rc = dr_expo_parse(fmt, body, len, &sink, &err);
    dr_labels_free(&r.scratch);
    if (rc != 0) {
        if (!r.error[0])
            snprintf(r.error, sizeof r.error, "%s", err.msg[0] ? err.msg : dr_strerror(rc));
        dr_chunk_discard(r.chunk); /* the body's samples go: the scrape failed */
        record_health(t, false, r.error, &r);
        scrape_failed(t, r.error,
                      r.reason          ? r.reason
                      : rc == DR_ENOMEM ? "out_of_memory"
                                        : "parse");
        return;
    }
    if (r.want_meta)
        t->meta_sent_ms = t->start_ms;
    if (fmt != t->last_fmt)
        spare_respelled(t, r.iter);
    t->last_fmt = fmt;
    /* series of the last scrape that this one did not have */
    stale_ctx sc = {.chunk = r.chunk, .ts_ms = t->start_ms};
    cache_sweep(&t->cache, r.iter, add_stale, &sc);
    clear_new_flags(t);
    dr_counter_add(in->stale_markers, sc.n);
    if (r.series_limited)
        dr_count_drop(in->inst, "series_limit", r.series_limited);
    if (r.duplicates)
        dr_count_drop(in->inst, "duplicate_sample", r.duplicates);
    record_health(t, true, NULL, &r);
    add_report(t, r.chunk, t->start_ms, &t->health);
    emit(t, r.chunk);
}

/* ---- scheduling ------------------------------------------------------------------------ */

static void scrape_start(scrape_target *t)
{
    scrape_input *in = t->job->in;
    if (t->inflight) {
        dr_counter_add(in->skipped, 1); /* the last one has not ended */
        return;
    }
    if (!dr_input_may_emit(in->inst)) {
        /* the outputs are full: skip this scrape rather than queue more */
        dr_counter_add(in->skipped, 1);
        return;
    }
    char timeout_hdr[64];
    snprintf(timeout_hdr, sizeof timeout_hdr, "X-Prometheus-Scrape-Timeout-Seconds: %g",
             (double)t->timeout_ms / 1000.0);
    char accept[512];
    snprintf(accept, sizeof accept, "Accept: %s", t->job->accept);
    const char *headers[5];
    size_t nh = 0;
    headers[nh++] = accept;
    if (t->job->enable_compression)
        headers[nh++] = "Accept-Encoding: gzip";
    else
        headers[nh++] = "Accept-Encoding: identity";
    headers[nh++] = timeout_hdr;
    headers[nh++] = "User-Agent: drover/" DROVER_VERSION;
    headers[nh] = NULL;
    uint64_t limit = t->job->body_size_limit ? t->job->body_size_limit : SCRAPE_DEFAULT_BODY_LIMIT;
    dr_http_request req = {
        .method = "GET",
        .url = t->url,
        .headers = headers,
        .timeout_ms = t->timeout_ms,
        .max_response_bytes = limit,
    };
    t->start_ms = dr_now_ns() / 1000000;
    t->start_mono_ns = dr_mono_ns();
    t->inflight = true;
    dr_counter_add(in->scrapes, 1);
    int rc = dr_http_client_send(t->job->http, &req, scrape_done, t);
    if (rc != 0) {
        t->inflight = false;
        char why[128];
        snprintf(why, sizeof why, "cannot start the request: %s", dr_strerror(rc));
        record_health(t, false, why, NULL);
        scrape_failed(t, why, "request");
    }
}

static void on_tick(uv_timer_t *timer)
{
    scrape_start(timer->data);
}

/* Where in the interval a target scrapes: fixed by its identity, so that
 * the targets of a job spread over the interval, and a restart scrapes
 * each at the same phase as before (as Prometheus' offsets do). */
static uint64_t first_delay_ms(const scrape_target *t)
{
    uint64_t interval = (uint64_t)t->interval_ms;
    uint64_t phase = t->hash % interval;
    uint64_t now = (uint64_t)(dr_now_ns() / 1000000) % interval;
    return (phase + interval - now) % interval;
}

int target_start(scrape_target *t)
{
    uv_timer_init(t->job->in->inst->loop, &t->timer);
    t->timer.data = t;
    t->timer_started = true;
    uv_timer_start(&t->timer, on_tick, first_delay_ms(t), (uint64_t)t->interval_ms);
    return 0;
}

/* Gives back the target's references to series at once: they belong to
 * the agent's table, which may be gone by the time the timer's close
 * callback frees the target. */
static void release_series(scrape_target *t)
{
    cache_free(&t->cache);
    for (int i = 0; i < NREPORT; i++) {
        if (t->report[i])
            dr_series_unref(t->cache.series, t->report[i]);
        t->report[i] = NULL;
    }
}

void target_stop(scrape_target *t, bool stale)
{
    scrape_input *in = t->job->in;
    if (stale && !in->stopping && t->cache.n > 0) {
        /* a target that went away: its series end now */
        dr_chunk *c = dr_chunk_new_metrics(in->inst, in->series);
        if (c) {
            stale_ctx sc = {.chunk = c, .ts_ms = dr_now_ns() / 1000000};
            cache_sweep(&t->cache, t->iter + 1, add_stale, &sc);
            dr_counter_add(in->stale_markers, sc.n);
            for (int i = 0; i < NREPORT && t->health.last_ms; i++) {
                dr_series *s;
                if (report_series(t, i, &s) == 0)
                    dr_chunk_add_sample(c, s, sc.ts_ms, dr_stale_nan());
            }
            emit(t, c);
        }
    }
    t->removed = true;
    release_series(t);
    if (t->timer_started) {
        uv_timer_stop(&t->timer);
        if (!uv_is_closing((uv_handle_t *)&t->timer))
            uv_close((uv_handle_t *)&t->timer, on_timer_closed);
        return;
    }
    maybe_free(t);
}
