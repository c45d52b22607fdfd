/*
 * remote_write output: metric samples to a Prometheus remote-write
 * receiver (Prometheus, VictoriaMetrics, Mimir, Thanos, managed services),
 * remote write 1.0 (prometheus.WriteRequest) or 2.0
 * (io.prometheus.write.v2.Request), snappy-compressed.
 *
 * The core hands over batches of metric chunks (up to 10 requests' worth of
 * samples, or what arrived within batch_send_deadline). Each sample's
 * series goes through write_relabel_configs once (the result is cached per
 * series, so a series scraped every 15 s is relabeled once in its life),
 * then to the shard of its series; rw_shards.c sends and retries. Family
 * metadata goes as separate 1.0 metadata requests, or inline with each
 * series in 2.0.
 */
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "compress.h"
#include "rw.h"

static const char *const messages[] = {"prometheus.WriteRequest", "io.prometheus.write.v2.Request",
                                       NULL};

static const dr_option rw_options[] = {
    {"url",
     DR_OPT_STRING,
     offsetof(rw_conf, url),
     NULL,
     DR_OPT_REQUIRED,
     {NULL},
     0,
     0,
     "The receiver's remote-write endpoint, http:// or https:// (Prometheus: "
     "`/api/v1/write`, VictoriaMetrics: `/api/v1/write`)."},
    {"protobuf_message",
     DR_OPT_ENUM,
     offsetof(rw_conf, protobuf_message),
     "prometheus.WriteRequest",
     0,
     {.choices = messages},
     0,
     0,
     "`prometheus.WriteRequest`: remote write 1.0. `io.prometheus.write.v2.Request`: remote "
     "write 2.0 (a symbol table per request, metadata inline); a receiver that answers 415 "
     "is then written with 1.0."},
    {"external_labels",
     DR_OPT_NODE,
     offsetof(rw_conf, external_labels),
     NULL,
     0,
     {NULL},
     0,
     0,
     "Labels added to every series that does not have them, a map of names to values (such "
     "as `{cluster: prod-eu}`)."},
    {"write_relabel_configs",
     DR_OPT_NODE,
     offsetof(rw_conf, write_relabel_configs),
     NULL,
     0,
     {NULL},
     0,
     0,
     "Relabeling of the series before they are sent, as in a prometheus.yml (every action; "
     "`drop` to leave series out). Computed once per series. Dropped samples count in "
     "drover_dropped_records_total{reason=\"write_relabel\"}."},
    {"min_shards",
     DR_OPT_INT,
     offsetof(rw_conf, min_shards),
     "1",
     0,
     {NULL},
     1,
     1000,
     "Fewest shards (requests in flight at once)."},
    {"max_shards",
     DR_OPT_INT,
     offsetof(rw_conf, max_shards),
     "50",
     0,
     {NULL},
     1,
     1000,
     "Most shards; the number in use follows the load (every 10 s, from the rates of samples "
     "in and out and the time sends take, as Prometheus computes it; when the queue fills "
     "while the shards are busy, which holds the scrapes back, by half as many again; never "
     "fewer while the queue is over half full)."},
    {"max_samples_per_send",
     DR_OPT_INT,
     offsetof(rw_conf, max_samples_per_send),
     "2000",
     0,
     {NULL},
     1,
     1000000,
     "Most samples in one request."},
    {"batch_send_deadline",
     DR_OPT_DURATION,
     offsetof(rw_conf, batch_send_deadline_ms),
     "5s",
     0,
     {NULL},
     1,
     600000,
     "Longest a sample waits for its request to fill before it is sent anyway."},
    {"min_backoff",
     DR_OPT_DURATION,
     offsetof(rw_conf, min_backoff_ms),
     "30ms",
     0,
     {NULL},
     1,
     3600000,
     "First wait before a failed request (no answer, 5xx, 429) is sent again; doubled after "
     "each failure."},
    {"max_backoff",
     DR_OPT_DURATION,
     offsetof(rw_conf, max_backoff_ms),
     "5s",
     0,
     {NULL},
     1,
     3600000,
     "Longest wait between retries; a longer Retry-After is honoured."},
    {"send_metadata",
     DR_OPT_BOOL,
     offsetof(rw_conf, send_metadata),
     "true",
     0,
     {NULL},
     0,
     0,
     "Send the families' TYPE, HELP and UNIT (1.0: as metadata requests when the scrape "
     "reports them, every metadata_interval; 2.0: with each series)."},
    {"metadata_max_per_send",
     DR_OPT_INT,
     offsetof(rw_conf, metadata_max_per_send),
     "500",
     0,
     {NULL},
     1,
     100000,
     "Most metadata entries in one 1.0 metadata request."},
    {"remote_timeout",
     DR_OPT_DURATION,
     offsetof(rw_conf, remote_timeout_ms),
     "30s",
     0,
     {NULL},
     1,
     3600000,
     "How long one request may take."},
    {"sigv4",
     DR_OPT_NODE,
     offsetof(rw_conf, sigv4),
     NULL,
     DR_OPT_ONE_OF,
     {NULL},
     0,
     0,
     "AWS Signature Version 4 for Amazon Managed Service for Prometheus, as Prometheus' "
     "remote_write has it: a map of region (unset: AWS_REGION, then AWS_DEFAULT_REGION), "
     "access_key and secret_key (unset: the credential chain), profile (unset: AWS_PROFILE, "
     "then `default`), service (`aps`), role_arn (unset: none; a role assumed with STS "
     "AssumeRole signed with the chain's credentials), external_id (unset: none) and "
     "role_session_name (`drover`) for that role, sts_endpoint (unset: AWS_ENDPOINT_URL_STS, "
     "then https://sts.REGION.amazonaws.com) and imds_endpoint (unset: "
     "AWS_EC2_METADATA_SERVICE_ENDPOINT, then http://169.254.169.254). The credential chain, "
     "in the AWS SDKs' order: access_key and secret_key; the environment (AWS_ACCESS_KEY_ID, "
     "AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN); web identity (AWS_ROLE_ARN, "
     "AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_SESSION_NAME: STS AssumeRoleWithWebIdentity); the "
     "shared credentials file (AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials) and its "
     "profile, read again whenever the file changes; container credentials "
     "(AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI, with "
     "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE or _TOKEN: EKS Pod Identity, ECS); IMDSv2 unless "
     "AWS_EC2_METADATA_DISABLED is true. A profile given skips the environment and web "
     "identity. Temporary credentials are fetched in the background and again before they "
     "expire; requests wait for the first ones; a failed fetch is retried with backoff and "
     "counted in drover_aws_credentials_refresh_errors_total{source}, the old credentials "
     "signing until they expire. Every request is signed as it is sent. Not with basic, "
     "bearer or oauth2 authentication. `sigv4: {}` signs with what the chain finds."},
    {"spill_max_bytes",
     DR_OPT_SIZE,
     offsetof(rw_conf, spill_max_bytes),
     "1GiB",
     0,
     {NULL},
     0,
     0,
     "Most bytes of requests spilled to disk, under data_dir/remote_write/<name>/ (0: never "
     "spill; the queue in memory is then the limit). When full, the oldest whole segment is "
     "dropped, counted in drover_remote_write_spill_samples_dropped_total{reason=\"full\"}."},
    {"spill_segment_bytes",
     DR_OPT_SIZE,
     offsetof(rw_conf, spill_segment_bytes),
     "16MiB",
     0,
     {NULL},
     65536,
     1073741824,
     "Size at which a spill segment file is closed and the next one started; the unit the "
     "bound drops, and a segment is deleted once all of it is delivered. At most "
     "spill_max_bytes."},
    {"spill_high_water",
     DR_OPT_INT,
     offsetof(rw_conf, spill_high_water),
     "50",
     0,
     {NULL},
     1,
     100,
     "Percent of queue_max_bytes queued, while the receiver fails, at which requests start "
     "going to disk."},
    {"spill_after",
     DR_OPT_DURATION,
     offsetof(rw_conf, spill_after_ms),
     "5s",
     0,
     {NULL},
     0,
     3600000,
     "How long the receiver may fail before requests go to disk below spill_high_water too, "
     "so that a kill during an outage loses no more than this (0: only at the high water "
     "mark)."},
    {.name = "",
     .type = DR_OPT_GROUP,
     .offset = offsetof(rw_conf, http),
     .group = dr_http_client_options},
    {0},
};

/* ---- series through write relabeling, cached ------------------------------------------ */

typedef struct rw_cache_entry {
    dr_series *in;  /* one reference held */
    dr_series *out; /* one reference held; NULL: the rules drop the series */
} rw_cache_entry;

static uint32_t ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (uint32_t)x;
}

static int cache_grow(rw_state *st)
{
    uint32_t cap = st->cache ? (st->cache_mask + 1) * 2 : 1024;
    rw_cache_entry *t = calloc(cap, sizeof *t);
    if (!t)
        return DR_ENOMEM;
    for (uint32_t i = 0; st->cache && i <= st->cache_mask; i++) {
        if (!st->cache[i].in)
            continue;
        uint32_t j = ptr_hash(st->cache[i].in) & (cap - 1);
        while (t[j].in)
            j = (j + 1) & (cap - 1);
        t[j] = st->cache[i];
    }
    free(st->cache);
    st->cache = t;
    st->cache_mask = cap - 1;
    return 0;
}

/* Lets go of the entries of series nobody but the cache holds any more
 * (their targets are gone): the table is rebuilt without them. */
static void cache_sweep(rw_state *st)
{
    if (!st->cache)
        return;
    uint32_t cap = st->cache_mask + 1;
    rw_cache_entry *old = st->cache;
    st->cache = NULL;
    st->cache_n = 0;
    st->cache_mask = 0;
    uint32_t keep = 0;
    for (uint32_t i = 0; i < cap; i++)
        keep += old[i].in && old[i].in->refs > 1;
    uint32_t ncap = 1024;
    while (ncap < 2 * keep)
        ncap *= 2;
    rw_cache_entry *t = calloc(ncap, sizeof *t);
    for (uint32_t i = 0; i < cap; i++) {
        rw_cache_entry *e = &old[i];
        if (!e->in)
            continue;
        if (e->in->refs > 1 && t) {
            uint32_t j = ptr_hash(e->in) & (ncap - 1);
            while (t[j].in)
                j = (j + 1) & (ncap - 1);
            t[j] = *e;
            st->cache_n++;
            continue;
        }
        if (e->out)
            dr_series_unref(st->series, e->out);
        dr_series_unref(st->series, e->in);
    }
    free(old);
    if (t) {
        st->cache = t;
        st->cache_mask = ncap - 1;
    }
}

static void cache_free(rw_state *st)
{
    for (uint32_t i = 0; st->cache && i <= st->cache_mask; i++) {
        if (!st->cache[i].in)
            continue;
        if (st->cache[i].out)
            dr_series_unref(st->series, st->cache[i].out);
        dr_series_unref(st->series, st->cache[i].in);
    }
    free(st->cache);
    st->cache = NULL;
}

/* The series a sample of `in` is sent as after write_relabel_configs, or
 * NULL when the rules drop it (or it cannot be computed: counted as a
 * drop too, with the reason logged). */
static dr_series *relabeled(rw_state *st, dr_series *in)
{
    if (!st->relabel)
        return in;
    if (st->cache) {
        for (uint32_t j = ptr_hash(in) & st->cache_mask; st->cache[j].in;
             j = (j + 1) & st->cache_mask)
            if (st->cache[j].in == in)
                return st->cache[j].out;
    }
    dr_series *out = NULL;
    int rc = dr_series_labels(st->series, in, &st->scratch);
    if (rc == 0)
        rc = dr_relabel_apply(st->relabel, &st->scratch);
    if (rc == 1) {
        rc = dr_labels_canon(&st->scratch);
        size_t nlen = 0;
        dr_labels_value(&st->scratch, "__name__", 8, &nlen);
        if (rc == 0 && st->scratch.n > 0 && nlen > 0)
            rc = dr_series_intern(st->series, &st->scratch, dr_labels_hash(&st->scratch), &out);
        else
            out = NULL; /* no name left: nothing to send */
    }
    if (rc < 0) {
        dr_log(st->inst, DR_LOG_WARN, "write relabeling failed, series dropped", "error=\"%s\"",
               dr_strerror(rc));
        return NULL; /* not cached: it may work next time */
    }
    if ((st->cache_n + 1) * 2 > (st->cache ? st->cache_mask + 1 : 0) && cache_grow(st) != 0) {
        if (out)
            dr_series_unref(st->series, out);
        dr_log(st->inst, DR_LOG_WARN, "out of memory caching write relabeling, sample dropped",
               NULL);
        return NULL;
    }
    uint32_t j = ptr_hash(in) & st->cache_mask;
    while (st->cache[j].in)
        j = (j + 1) & st->cache_mask;
    st->cache[j].in = dr_series_ref(in);
    st->cache[j].out = out;
    st->cache_n++;
    return out;
}

/* ---- family metadata (2.0 sends it with each series) ------------------------------------ */

typedef struct rw_family {
    char *name;
    dr_metric_meta meta; /* strings owned here */
} rw_family;

#define RW_MAX_FAMILIES (1u << 18)
#define RW_SWEEP_MS 60000

/* Family names hash with the core's dr_hash64 (src/checkpoint.h). */
static uint32_t str_hash(const char *s, size_t n)
{
    return (uint32_t)dr_hash64(s, n);
}

static rw_family *family_find(const rw_state *st, const char *name, size_t n)
{
    if (!st->families)
        return NULL;
    for (uint32_t j = str_hash(name, n) & st->families_mask; st->families[j].name;
         j = (j + 1) & st->families_mask)
        if (strlen(st->families[j].name) == n && memcmp(st->families[j].name, name, n) == 0)
            return &st->families[j];
    return NULL;
}

static void family_clear(rw_family *f)
{
    free(f->name);
    free((char *)f->meta.help);
    free((char *)f->meta.unit);
    memset(f, 0, sizeof *f);
}

static int families_grow(rw_state *st)
{
    uint32_t cap = st->families ? (st->families_mask + 1) * 2 : 256;
    rw_family *t = calloc(cap, sizeof *t);
    if (!t)
        return DR_ENOMEM;
    for (uint32_t i = 0; st->families && i <= st->families_mask; i++) {
        if (!st->families[i].name)
            continue;
        uint32_t j = str_hash(st->families[i].name, strlen(st->families[i].name)) & (cap - 1);
        while (t[j].name)
            j = (j + 1) & (cap - 1);
        t[j] = st->families[i];
    }
    free(st->families);
    st->families = t;
    st->families_mask = cap - 1;
    return 0;
}

/* Remembers the newest metadata of a family. */
static void family_note(rw_state *st, const dr_metric_meta *m)
{
    size_t n = strlen(m->family);
    rw_family *f = family_find(st, m->family, n);
    if (f && f->meta.type == m->type && strcmp(f->meta.help, m->help) == 0 &&
        strcmp(f->meta.unit, m->unit) == 0)
        return;
    char *help = strdup(m->help), *unit = strdup(m->unit);
    if (!help || !unit) {
        free(help);
        free(unit);
        return;
    }
    if (f) {
        free((char *)f->meta.help);
        free((char *)f->meta.unit);
    } else {
        if (st->families_n >= RW_MAX_FAMILIES ||
            ((st->families_n + 1) * 2 > (st->families ? st->families_mask + 1 : 0) &&
             families_grow(st) != 0)) {
            free(help);
            free(unit);
            return;
        }
        uint32_t j = str_hash(m->family, n) & st->families_mask;
        while (st->families[j].name)
            j = (j + 1) & st->families_mask;
        f = &st->families[j];
        f->name = strdup(m->family);
        if (!f->name) {
            free(help);
            free(unit);
            return;
        }
        f->meta.family = f->name;
        st->families_n++;
    }
    f->meta.help = help;
    f->meta.unit = unit;
    f->meta.type = m->type;
}

/* The family of a series whose __name__ is `name`: the name, or the name
 * without the suffix a histogram, summary, counter or info sample carries. */
static const dr_metric_meta *family_of(const rw_state *st, dr_symbol_view name)
{
    static const char *const suffixes[] = {"_bucket",  "_count", "_sum",    "_total",
                                           "_created", "_info",  "_gcount", "_gsum"};
    if (!st->families_n || !name.s)
        return NULL;
    rw_family *f = family_find(st, name.s, name.len);
    for (size_t i = 0; !f && i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t sl = strlen(suffixes[i]);
        if (name.len > sl && memcmp(name.s + name.len - sl, suffixes[i], sl) == 0)
            f = family_find(st, name.s, name.len - sl);
    }
    return f ? &f->meta : NULL;
}

/* The symbol id of a series' __name__ value (name_sym: the id of
 * "__name__"), or DR_SERIES_NO_SYMBOL. */
static uint32_t name_value_id(const dr_series *s, uint32_t name_sym)
{
    if (name_sym == DR_SERIES_NO_SYMBOL)
        return DR_SERIES_NO_SYMBOL;
    for (uint32_t k = 0; k < s->nlabels; k++)
        if (dr_series_sym(s, 2 * k) == name_sym)
            return dr_series_sym(s, 2 * k + 1);
    return DR_SERIES_NO_SYMBOL;
}

/* ---- requests ----------------------------------------------------------------------------- */

int rw_request_encode(rw_state *st, rw_shard *sh, rw_request *req)
{
    dr_buf_reset(&sh->scratch);
    int rc;
    if (req->nmetas) {
        rc = dr_prw1_encode_metadata(sh->writer, req->metas, req->nmetas, &sh->scratch);
        req->version = RW_V1;
    } else if (st->version == RW_V2) {
        const dr_metric_meta **meta = calloc(req->nsamples ? req->nsamples : 1, sizeof *meta);
        if (!meta)
            return DR_ENOMEM;
        /* samples of one family come in runs: look a name up once a run */
        uint32_t name_sym = dr_series_symbol_find(st->series, "__name__", 8);
        uint32_t last = DR_SERIES_NO_SYMBOL;
        const dr_metric_meta *last_meta = NULL;
        for (uint32_t i = 0; i < req->nsamples; i++) {
            uint32_t v = name_value_id(req->samples[i].series, name_sym);
            if (v == DR_SERIES_NO_SYMBOL || v != last) {
                last_meta = family_of(st, dr_series_symbol(st->series, v));
                last = v;
            }
            meta[i] = last_meta;
        }
        rc = dr_prw2_encode(sh->writer, st->series, req->samples, meta, req->nsamples,
                            &st->external, &sh->scratch);
        free(meta);
        req->version = RW_V2;
    } else {
        rc = dr_prw1_encode(sh->writer, st->series, req->samples, req->nsamples, &st->external,
                            &sh->scratch);
        req->version = RW_V1;
    }
    if (rc != 0)
        return rc;
    dr_buf_reset(&req->body);
    return dr_compress_snappy(sh->scratch.p, sh->scratch.len, &req->body);
}

static rw_request *request_new(rw_batch *b, uint32_t nsamples)
{
    rw_request *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    req->batch = b;
    if (nsamples && !(req->samples = malloc(nsamples * sizeof *req->samples))) {
        free(req);
        return NULL;
    }
    req->max_ts_ms = INT64_MIN;
    return req;
}

/* Where each sample of a batch goes: its series after relabeling and its
 * shard (UINT32_MAX: dropped). */
typedef struct rw_route {
    dr_sample s;
    uint32_t shard;
} rw_route;

static int queue_shard(rw_state *st, rw_batch *b, uint32_t shard, const rw_route *routes, size_t n,
                       uint32_t count)
{
    rw_shard *sh = &st->shards[shard];
    uint32_t max = (uint32_t)st->conf->max_samples_per_send;
    rw_request *req = NULL;
    for (size_t i = 0; i < n && count > 0; i++) {
        if (routes[i].shard != shard)
            continue;
        if (!req && !(req = request_new(b, count < max ? count : max)))
            return DR_ENOMEM;
        req->samples[req->nsamples++] = routes[i].s;
        req->nhist += routes[i].s.hist != NULL;
        if (routes[i].s.ts_ms > req->max_ts_ms)
            req->max_ts_ms = routes[i].s.ts_ms;
        count--;
        if (req->nsamples == max || count == 0) {
            if (rw_request_encode(st, sh, req) != 0) {
                rw_request_free(st, req);
                return DR_ENOMEM;
            }
            b->outstanding++;
            rw_shard_push(sh, req);
            req = NULL;
        }
    }
    return 0;
}

/* 1.0 metadata requests for the families the batch's chunks describe. */
static int queue_metadata(rw_state *st, rw_batch *b)
{
    uint32_t max = (uint32_t)st->conf->metadata_max_per_send;
    for (size_t c = 0; c < dr_flush_count(b->flush); c++) {
        const dr_chunk *ch = dr_flush_chunk(b->flush, c);
        for (uint32_t i = 0; i < ch->nmetas; i += max) {
            rw_request *req = request_new(b, 0);
            if (!req)
                return DR_ENOMEM;
            req->metas = &ch->metas[i];
            req->nmetas = ch->nmetas - i < max ? ch->nmetas - i : max;
            if (rw_request_encode(st, &st->shards[0], req) != 0) {
                rw_request_free(st, req);
                return DR_ENOMEM;
            }
            b->outstanding++;
            rw_shard_push(&st->shards[0], req);
        }
    }
    return 0;
}

/* Turns a batch into requests on the shards. On failure (out of memory)
 * what was queued goes out and the batch ends as a retry of everything:
 * never a partial acknowledgement of unsent samples. */
static void process_batch(rw_state *st, rw_batch *b)
{
    size_t total = 0;
    for (size_t c = 0; c < dr_flush_count(b->flush); c++)
        total += dr_flush_chunk(b->flush, c)->nsamples;
    dr_counter_add(st->m.samples_in, total);
    rw_route *routes = malloc((total ? total : 1) * sizeof *routes);
    uint32_t *per_shard = calloc(st->nshards, sizeof *per_shard);
    if (!routes || !per_shard) {
        free(routes);
        free(per_shard);
        dr_output_done(b->flush, DR_RETRY, NULL);
        free(b);
        return;
    }
    size_t n = 0;
    uint64_t dropped = 0;
    for (size_t c = 0; c < dr_flush_count(b->flush); c++) {
        const dr_chunk *ch = dr_flush_chunk(b->flush, c);
        for (uint32_t i = 0; i < ch->nmetas; i++)
            family_note(st, &ch->metas[i]);
        for (uint32_t i = 0; i < ch->nsamples; i++) {
            dr_series *out = relabeled(st, ch->samples[i].series);
            if (!out) {
                dropped++;
                continue;
            }
            routes[n].s = ch->samples[i];
            routes[n].s.series = out;
            routes[n].shard = (uint32_t)(out->hash % st->nshards);
            per_shard[routes[n].shard]++;
            n++;
        }
    }
    if (dropped)
        dr_count_drop(st->inst, "write_relabel", dropped);
    b->dropped = dropped;
    /* one outstanding count of our own while queuing, so that a request
     * done at once cannot end the batch early */
    b->outstanding = 1;
    int rc = 0;
    for (uint32_t sh = 0; sh < st->nshards && rc == 0; sh++)
        if (per_shard[sh])
            rc = queue_shard(st, b, sh, routes, n, per_shard[sh]);
    if (rc == 0 && st->conf->send_metadata && st->version == RW_V1)
        rc = queue_metadata(st, b);
    free(routes);
    free(per_shard);
    if (rc != 0) {
        dr_log(st->inst, DR_LOG_ERROR, "out of memory building remote-write requests", NULL);
        b->failed = true;
    }
    if (--b->outstanding == 0) {
        if (b->failed)
            dr_output_done(b->flush, DR_RETRY, NULL);
        else
            dr_output_done_partial(b->flush, b->dropped);
        free(b);
    }
}

/* Payload bytes of a batch (a metric chunk counts 16 per sample): about
 * ten requests' worth, or two per shard where there are more shards, so
 * that requests stay near max_samples_per_send however many shards share
 * a batch (at most a hundred requests' worth). */
static uint64_t batch_bytes(const rw_conf *conf, uint32_t nshards)
{
    uint64_t requests = nshards > 5 ? 2 * (uint64_t)nshards : 10;
    if (requests > 100)
        requests = 100;
    return 16 * (uint64_t)conf->max_samples_per_send * requests;
}

/* While spilling, the core's queue is the only memory a kill can lose. */
#define RW_SPILL_BATCH_WAIT_MS 200

void rw_update_batch(rw_state *st)
{
    int64_t wait = st->conf->batch_send_deadline_ms;
    if (st->disk.active && wait > RW_SPILL_BATCH_WAIT_MS)
        wait = RW_SPILL_BATCH_WAIT_MS;
    dr_output_set_batch(st->inst, batch_bytes(st->conf, st->nshards), wait);
}

void rw_release_held(rw_state *st)
{
    if (st->want_shards != st->nshards) {
        st->nshards = st->want_shards;
        dr_gauge_set(st->m.shards, st->nshards);
        rw_update_batch(st);
    }
    while (st->held && st->want_shards == st->nshards) {
        rw_batch *b = st->held;
        st->held = b->next;
        if (!st->held)
            st->held_tail = NULL;
        process_batch(st, b);
    }
}

/* ---- the plugin ---------------------------------------------------------------------------- */

static int parse_external_labels(rw_state *st, const dr_cfg_node *map, dr_error *err)
{
    if (!map || map->type == DR_CFG_NULL)
        return 0;
    if (map->type != DR_CFG_MAP) {
        dr_error_set(err, "%s:%d:%d: external_labels: expected a map of label names to values",
                     map->file, map->line, map->col);
        return DR_EINVAL;
    }
    for (size_t i = 0; i < map->n; i++) {
        const dr_cfg_node *k = map->pairs[i].key, *v = map->pairs[i].val;
        if (v->type != DR_CFG_SCALAR || !k->str[0] || strcmp(k->str, "__name__") == 0) {
            dr_error_set(err, "%s:%d:%d: external_labels.%s: expected a label name and a string",
                         k->file, k->line, k->col, k->str);
            return DR_EINVAL;
        }
        if (dr_labels_sets(&st->external, k->str, v->str) != 0)
            return DR_ENOMEM;
    }
    if (dr_labels_canon(&st->external) != 0) {
        dr_error_set(err, "external_labels: a label is named twice");
        return DR_EINVAL;
    }
    return 0;
}

static int parse_relabel(rw_state *st, const dr_cfg_node *list, dr_error *err)
{
    if (!list)
        return 0;
    dr_cfg_errors errs = {0};
    int rc = dr_relabel_parse(list, "write_relabel_configs", &st->relabel, &errs);
    for (size_t i = 0; i < errs.n; i++)
        dr_log(st->inst, DR_LOG_ERROR, "invalid write_relabel_configs", "error=\"%s\"",
               errs.msg[i]);
    if (errs.n)
        dr_error_set(err, "%s", errs.msg[0]);
    else if (rc != 0)
        dr_error_set(err, "write_relabel_configs: %s", dr_strerror(rc));
    dr_cfg_errors_free(&errs);
    return rc != 0 || errs.n ? DR_EINVAL : 0;
}

static int rw_init(dr_instance *inst, dr_error *err)
{
    rw_conf *conf = inst->conf;
    if (dr_http_check_url(conf->url, err) < 0)
        return DR_EINVAL;
    if (conf->min_shards > conf->max_shards) {
        dr_error_set(err, "min_shards (%lld) is more than max_shards (%lld)",
                     (long long)conf->min_shards, (long long)conf->max_shards);
        return DR_EINVAL;
    }
    if (conf->min_backoff_ms > conf->max_backoff_ms) {
        dr_error_set(err, "min_backoff is longer than max_backoff");
        return DR_EINVAL;
    }
    if (conf->spill_max_bytes && conf->spill_max_bytes < conf->spill_segment_bytes) {
        dr_error_set(err, "spill_max_bytes (%llu) is less than spill_segment_bytes (%llu)",
                     (unsigned long long)conf->spill_max_bytes,
                     (unsigned long long)conf->spill_segment_bytes);
        return DR_EINVAL;
    }
    rw_state *st = calloc(1, sizeof *st);
    if (!st) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    inst->state = st;
    st->inst = inst;
    st->conf = conf;
    st->version = conf->protobuf_message == 1 ? RW_V2 : RW_V1;
    st->max_shards = (uint32_t)conf->max_shards;
    dr_labels_init(&st->external);
    dr_labels_init(&st->scratch);
    if (parse_external_labels(st, conf->external_labels, err) != 0 ||
        parse_relabel(st, conf->write_relabel_configs, err) != 0)
        return DR_EINVAL;
    st->client = dr_http_client_new(inst->loop, &conf->http, err);
    if (!st->client || rw_sigv4_init(st, err) != 0)
        return DR_EINVAL;
    dr_output_set_batch(inst, batch_bytes(conf, (uint32_t)conf->min_shards),
                        conf->batch_send_deadline_ms);
    return 0;
}

static void create_metrics(rw_state *st)
{
    dr_instance *inst = st->inst;
    rw_metrics *m = &st->m;
    m->samples_in =
        dr_counter_new(inst, "drover_remote_write_samples_in_total",
                       "Samples (and native histograms) taken from the queue.", NULL, NULL);
    m->samples_sent = dr_counter_new(inst, "drover_remote_write_samples_total",
                                     "Float samples the receiver accepted.", NULL, NULL);
    m->histograms_sent =
        dr_counter_new(inst, "drover_remote_write_histograms_total",
                       "Native histogram samples the receiver accepted.", NULL, NULL);
    m->samples_failed =
        dr_counter_new(inst, "drover_remote_write_samples_failed_total",
                       "Samples the receiver refused for good (4xx); dropped.", NULL, NULL);
    m->samples_retried =
        dr_counter_new(inst, "drover_remote_write_samples_retried_total",
                       "Samples of requests sent again after a failure.", NULL, NULL);
    m->requests_retried = dr_counter_new(inst, "drover_remote_write_retries_total",
                                         "Requests sent again after a failure.", NULL, NULL);
    m->metadata_sent = dr_counter_new(inst, "drover_remote_write_metadata_total",
                                      "Metadata entries sent (1.0 metadata requests).", NULL, NULL);
    m->bytes_sent =
        dr_counter_new(inst, "drover_remote_write_bytes_total",
                       "Compressed bytes of sample requests the receiver accepted.", NULL, NULL);
    m->pending = dr_gauge_new(inst, "drover_remote_write_samples_pending",
                              "Samples in the shards' queues, not yet accepted.", NULL, NULL);
    m->shards = dr_gauge_new(inst, "drover_remote_write_shards", "Shards in use.", NULL, NULL);
    m->shards_desired = dr_gauge_new(inst, "drover_remote_write_shards_desired",
                                     "Shards the load calls for.", NULL, NULL);
    m->highest_sent_ts =
        dr_gauge_new(inst, "drover_remote_write_highest_sent_timestamp_seconds",
                     "Newest sample timestamp the receiver accepted, in seconds.", NULL, NULL);
}

static int rw_start(dr_instance *inst)
{
    rw_state *st = inst->state;
    st->series = dr_agent_series(inst->agent);
    if (!st->series)
        return DR_ENOMEM;
    dr_http_stats_init(&st->http_stats, inst);
    dr_http_client_instrument(st->client, inst);
    create_metrics(st);
    uv_timer_init(inst->loop, &st->reshard_timer);
    st->reshard_timer.data = st;
    st->open_handles++;
    if (rw_shards_init(st) != 0 || rw_sigv4_start(st) != 0)
        return DR_ENOMEM;
    uv_timer_start(&st->reshard_timer, rw_reshard_tick, RW_RESHARD_MS, RW_RESHARD_MS);
    rw_disk_start(st);
    return 0;
}

static void rw_flush(dr_instance *inst, dr_flush *f)
{
    rw_state *st = inst->state;
    if (st->stopping || !st->shards) {
        dr_output_done(f, DR_RETRY, NULL);
        return;
    }
    rw_batch *b = calloc(1, sizeof *b);
    if (!b) {
        dr_output_done(f, DR_RETRY, NULL);
        return;
    }
    b->flush = f;
    double fill = dr_output_queue_fill(inst);
    if (fill > st->max_fill)
        st->max_fill = fill;
    rw_disk_check(st);
    if (st->want_shards != st->nshards && !rw_shards_idle(st)) {
        /* a reshard waits for the shards to drain: hold the batch */
        if (st->held_tail)
            st->held_tail->next = b;
        else
            st->held = b;
        st->held_tail = b;
        return;
    }
    if (st->want_shards != st->nshards)
        rw_release_held(st);
    process_batch(st, b);
    /* the cache sweep rides on the batches: at most once a minute */
    int64_t now = dr_now_ns() / 1000000;
    if (st->relabel && now - st->last_sweep_ms >= RW_SWEEP_MS) {
        st->last_sweep_ms = now;
        cache_sweep(st);
    }
}

/* What the state holds of the agent's (series references) and of the
 * configuration goes at destroy, at once: both may be gone when the last
 * timer's close callback frees the rest. */
static void release_shared(rw_state *st)
{
    cache_free(st);
    for (uint32_t i = 0; st->families && i <= st->families_mask; i++)
        if (st->families[i].name)
            family_clear(&st->families[i]);
    free(st->families);
    st->families = NULL;
    dr_relabel_free(st->relabel);
    st->relabel = NULL;
    dr_labels_free(&st->external);
    dr_labels_free(&st->scratch);
    rw_sigv4_free(st->sigv4);
    st->sigv4 = NULL;
}

static void state_free(rw_state *st)
{
    for (uint32_t i = 0; st->shards && i < st->max_shards; i++) {
        dr_prw_writer_free(st->shards[i].writer);
        dr_buf_free(&st->shards[i].scratch);
    }
    free(st->shards);
    free(st);
}

/* The timers close one by one (and spill syncs end); the last frees the
 * state. */
void rw_handle_closed(rw_state *st)
{
    if (--st->open_handles == 0)
        state_free(st);
}

static void on_shard_timer_closed(uv_handle_t *h)
{
    rw_handle_closed(((rw_shard *)h->data)->st);
}

static void on_reshard_timer_closed(uv_handle_t *h)
{
    rw_handle_closed(h->data);
}

static void rw_stop(dr_instance *inst)
{
    rw_state *st = inst->state;
    if (!st || st->stopping)
        return;
    /* every batch still queued goes back to the core; then the answers
     * that the closing client cancels find nothing to do */
    rw_shards_stop(st);
    rw_disk_stop(st);
    if (st->client) {
        dr_http_client_close(st->client);
        st->client = NULL;
    }
    if (st->open_handles)
        uv_timer_stop(&st->reshard_timer);
}

static void rw_destroy(dr_instance *inst)
{
    rw_state *st = inst->state;
    if (!st)
        return;
    inst->state = NULL;
    rw_stop(inst);
    rw_disk_free(st);
    if (st->client) /* never started */
        dr_http_client_close(st->client);
    release_shared(st);
    if (!st->open_handles) {
        state_free(st);
        return;
    }
    rw_shards_close(st, on_shard_timer_closed);
    rw_disk_close(st, on_reshard_timer_closed);
    uv_close((uv_handle_t *)&st->reshard_timer, on_reshard_timer_closed);
}

const dr_plugin dr_plugin_remote_write = {
    .abi = DR_PLUGIN_ABI,
    .name = "remote_write",
    .kind = DR_OUTPUT,
    .description =
        "Sends metric samples to a Prometheus remote-write receiver (Prometheus with "
        "--web.enable-remote-write-receiver, VictoriaMetrics, Mimir, Thanos, managed services): "
        "remote write 1.0 or 2.0, snappy-compressed, with the spec's headers. Samples are "
        "spread over shards by series, so each series stays in order; a shard sends one request "
        "at a time and retries it alone (no answer, 5xx, 429) with backoff and Retry-After, so "
        "nothing is sent twice. Other 4xx answers drop the request's samples, counted by reason "
        "in drover_dropped_records_total. Authentication: basic, bearer (a token file re-read "
        "when it changes), OAuth2 client credentials (oauth2: Grafana Cloud, Azure Monitor), "
        "mutual TLS, or AWS SigV4 for Amazon Managed Service for Prometheus (sigv4). Chunks are "
        "acknowledged only once every sample in them "
        "is accepted or dropped; while the queue (queue_max_bytes) is full, scrapes are skipped "
        "and counted. Self-metrics: drover_remote_write_* (samples in, sent, failed, retried, "
        "pending, shards, highest sent timestamp, bytes).\n\n"
        "Spilling to disk: when the receiver fails and the queue passes spill_high_water percent "
        "of queue_max_bytes, or the receiver has failed for spill_after, the requests (those "
        "waiting in the shards, then every new one) are "
        "written to segment files under data_dir/remote_write/<name>/, zstd-compressed, each "
        "record with its length and a CRC32C, and their chunks acknowledged, so scraping goes "
        "on through the outage. Once spilling has begun, new requests keep going to disk until "
        "it has drained: when the receiver is back, the records are sent oldest first, one at a "
        "time, so each series stays in order, and a segment is deleted once all of it is "
        "delivered. The segments are bounded by spill_max_bytes: to make room, the oldest whole "
        "segment is dropped and its samples counted in "
        "drover_remote_write_spill_samples_dropped_total{reason=\"full\"} (and "
        "drover_dropped_records_total{reason=\"spill_full\"}). The files are synced every "
        "second off the event loop, with a state file of the delivered position; after a crash "
        "or a restart, what is on disk is sent from that position, and a torn tail or a bad "
        "checksum ends its segment, counted in "
        "drover_remote_write_spill_records_dropped_total{reason=\"corrupt\"}. While spilling, a "
        "batch waits at most 200ms in memory, so a kill loses at most that. A 2.0 record that "
        "the receiver refuses with 415 after a restart cannot be written again as 1.0 and is "
        "dropped, counted. Self-metrics: drover_remote_write_spill_bytes, _segments, _active, "
        "_records_written_total, _records_replayed_total, _records_dropped_total{reason}, "
        "_samples_dropped_total{reason}.",
    .options = rw_options,
    .conf_size = sizeof(rw_conf),
    .init = rw_init,
    .start = rw_start,
    .flush = rw_flush,
    .stop = rw_stop,
    .destroy = rw_destroy,
    .data = DR_DATA_METRICS,
};
