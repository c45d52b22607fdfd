/*
 * loki output: pushes log records to Grafana Loki's push API
 * (POST /loki/api/v1/push), protobuf + snappy by default, JSON by option.
 *
 * The core hands over batches of chunks (bounded by batch_max_bytes and
 * batch_wait); loki_request.c turns a batch into one request per tenant.
 * A batch is done when all its requests are: any retryable failure retries
 * the whole batch (Loki drops exact duplicates, so the requests that had
 * got through do no harm when sent again); 400 answers are drops, counted
 * with the reason Loki gave, of the entries Loki says it ignored.
 */
#include <stdlib.h>
#include <string.h>

#include "drover/plugin.h"
#include "http_client.h"
#include "loki.h"

typedef struct loki_conf {
    char *url;
    int format;
    int compression;
    dr_strlist labels;
    dr_strlist static_labels;
    dr_strlist structured_metadata;
    int line_format;
    char *tenant;
    char *tenant_field;
    uint64_t max_line_bytes;
    int line_too_long;
    uint64_t batch_max_bytes;
    int64_t batch_wait_ms;
    dr_http_client_conf http;
} loki_conf;

static const char *const formats[] = {"protobuf", "json", NULL};
static const char *const compressions[] = {"none", "gzip", NULL};
static const char *const line_formats[] = {"message", "json", NULL};
static const char *const too_long_actions[] = {"split", "truncate", "drop", NULL};

static const dr_option loki_options[] = {
    {"url", DR_OPT_STRING, offsetof(loki_conf, url), "http://127.0.0.1:3100/loki/api/v1/push", 0,
     NULL, 0, 0, "Loki's push endpoint, http:// or https://."},
    {"format", DR_OPT_ENUM, offsetof(loki_conf, format), "protobuf", 0, formats, 0, 0,
     "Request body: `protobuf` (snappy-compressed, what Loki's own clients send) or `json`."},
    {"compression", DR_OPT_ENUM, offsetof(loki_conf, compression), "none", 0, compressions, 0, 0,
     "Compression of JSON bodies (`gzip`); protobuf bodies are always snappy-compressed."},
    {"labels", DR_OPT_STRLIST, offsetof(loki_conf, labels),
     "[namespace, container, stream, node, app]", 0, NULL, 0, 0,
     "Stream labels, each `field` or `label=field`. Fields: namespace, pod, pod_uid, container, "
     "container_id, stream, node, path, app (the pod's `app.kubernetes.io/name` or `app` "
     "label, from the kubernetes filter), or any record key such as a field a filter added or "
     "`kubernetes.labels.team`. Loki wants few labels with few values; per-pod values belong "
     "in structured_metadata. Empty values are left out."},
    {"static_labels", DR_OPT_STRLIST, offsetof(loki_conf, static_labels), NULL, 0, NULL, 0, 0,
     "Labels with a fixed value, each `name=value` (such as `cluster=prod-eu`)."},
    {"structured_metadata", DR_OPT_STRLIST, offsetof(loki_conf, structured_metadata),
     "[pod, pod_uid, container_id]", 0, NULL, 0, 0,
     "Per-entry structured metadata, each `field` or `name=field` (fields as for labels). "
     "Loki 3 must allow it (limits_config.allow_structured_metadata, on by default). An empty "
     "list sends none."},
    {"line_format", DR_OPT_ENUM, offsetof(loki_conf, line_format), "message", 0, line_formats, 0, 0,
     "The log line: the record's `message`, or `json`: the whole record as the file output "
     "writes it (time, stream, message, parser fields, kubernetes)."},
    {"tenant", DR_OPT_STRING, offsetof(loki_conf, tenant), NULL, 0, NULL, 0, 0,
     "Tenant sent as X-Scope-OrgID; unset, no header (a single-tenant Loki)."},
    {"tenant_field", DR_OPT_STRING, offsetof(loki_conf, tenant_field), NULL, 0, NULL, 0, 0,
     "Take the tenant from this field of each record (fields as for labels, such as "
     "`namespace`); records where it is empty use `tenant`. One request per tenant."},
    {"max_line_bytes", DR_OPT_SIZE, offsetof(loki_conf, max_line_bytes), "256KiB", 0, NULL, 64,
     1 << 30,
     "Longest line sent; match Loki's limits_config.max_line_size (its default, 256KB, "
     "is 256KiB). Longer lines are handled as line_too_long says."},
    {"line_too_long", DR_OPT_ENUM, offsetof(loki_conf, line_too_long), "split", 0, too_long_actions,
     0, 0,
     "What to do with a longer line: `split` into pieces of max_line_bytes (cut between UTF-8 "
     "characters, timestamps a nanosecond apart so they keep their order), `truncate` to the "
     "first piece, or `drop` it (counted in drover_dropped_records_total{reason=\"too_long\"})."},
    {"batch_max_bytes", DR_OPT_SIZE, offsetof(loki_conf, batch_max_bytes), "1MiB", 0, NULL, 1024,
     64 << 20, "Most message bytes in one push request (before compression)."},
    {"batch_wait", DR_OPT_DURATION, offsetof(loki_conf, batch_wait_ms), "1s", 0, NULL, 0, 600000,
     "Longest a record waits for its batch to fill before it is sent anyway."},
    {.name = "",
     .type = DR_OPT_GROUP,
     .offset = offsetof(loki_conf, http),
     .group = dr_http_client_options},
    {0},
};

typedef struct loki_state {
    loki_layout layout;
    loki_builder *builder;
    dr_http_client *client;
    dr_http_stats stats;
    dr_counter *invalid_utf8, *split, *truncated;
} loki_state;

/* One batch being pushed: its requests and how they ended. */
typedef struct loki_batch {
    dr_instance *inst;
    dr_flush *flush;
    loki_request *reqs;
    size_t nreqs;
    loki_build_stats stats;
    bool retry;
    int64_t retry_after_ms;  /* largest Retry-After among the failures */
    loki_refusal refused[8]; /* entries Loki refused, by reason */
    size_t nrefused;
} loki_batch;

typedef struct loki_send {
    loki_batch *batch;
    size_t index;
} loki_send;

/* ---- layout from the configuration ----------------------------------------------------- */

static int cmp_attr_names(const void *a, const void *b)
{
    return strcmp(((const loki_attr *)a)->name, ((const loki_attr *)b)->name);
}

static int parse_attr_list(const dr_strlist *l, bool is_static, loki_attr **out, size_t *n,
                           size_t extra, dr_error *err)
{
    *out = calloc(l->n + extra + 1, sizeof **out);
    if (!*out) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    for (size_t i = 0; i < l->n; i++) {
        int rc = is_static ? loki_static_label_parse(l->v[i], &(*out)[*n], err)
                           : loki_attr_parse(l->v[i], &(*out)[*n], err);
        if (rc < 0)
            return rc;
        (*n)++;
    }
    return 0;
}

static bool any_per_record(const loki_attr *a, size_t n, bool stream_too)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].src == LOKI_SRC_FIELD || (stream_too && a[i].src == LOKI_SRC_STREAM))
            return true;
    return false;
}

static void layout_free(loki_layout *lay)
{
    for (size_t i = 0; i < lay->nlabels; i++)
        loki_attr_free(&lay->labels[i]);
    for (size_t i = 0; i < lay->nmetadata; i++)
        loki_attr_free(&lay->metadata[i]);
    loki_attr_free(&lay->tenant_attr);
    free(lay->labels);
    free(lay->metadata);
}

static int make_layout(dr_instance *inst, loki_layout *lay, dr_error *err)
{
    loki_conf *conf = inst->conf;
    if (parse_attr_list(&conf->labels, false, &lay->labels, &lay->nlabels, conf->static_labels.n,
                        err) < 0)
        return DR_EINVAL;
    for (size_t i = 0; i < conf->static_labels.n; i++) {
        if (loki_static_label_parse(conf->static_labels.v[i], &lay->labels[lay->nlabels], err) < 0)
            return DR_EINVAL;
        lay->nlabels++;
    }
    qsort(lay->labels, lay->nlabels, sizeof *lay->labels, cmp_attr_names);
    for (size_t i = 1; i < lay->nlabels; i++) {
        if (strcmp(lay->labels[i].name, lay->labels[i - 1].name) == 0) {
            dr_error_set(err, "labels: \"%s\" is given twice", lay->labels[i].name);
            return DR_EINVAL;
        }
    }
    if (lay->nlabels == 0) {
        dr_error_set(err, "labels: Loki needs at least one label per stream");
        return DR_EINVAL;
    }
    if (parse_attr_list(&conf->structured_metadata, false, &lay->metadata, &lay->nmetadata, 0,
                        err) < 0)
        return DR_EINVAL;
    if (conf->tenant_field && loki_attr_parse(conf->tenant_field, &lay->tenant_attr, err) < 0)
        return DR_EINVAL;
    lay->labels_per_record = any_per_record(lay->labels, lay->nlabels, false);
    lay->metadata_per_record = any_per_record(lay->metadata, lay->nmetadata, true);
    lay->tenant = conf->tenant;
    lay->node = dr_agent_node_name(inst->agent);
    lay->format = conf->format == 1 ? LOKI_FORMAT_JSON : LOKI_FORMAT_PROTOBUF;
    lay->gzip = conf->compression == 1;
    lay->line_format = conf->line_format == 1 ? LOKI_LINE_JSON : LOKI_LINE_MESSAGE;
    lay->max_line_bytes = conf->max_line_bytes;
    lay->too_long = (loki_too_long)conf->line_too_long;
    lay->max_request_bytes = conf->batch_max_bytes;
    return 0;
}

/* ---- the plugin ------------------------------------------------------------------------ */

static int loki_init(dr_instance *inst, dr_error *err)
{
    loki_conf *conf = inst->conf;
    if (dr_http_check_url(conf->url, err) < 0)
        return DR_EINVAL;
    if (conf->compression == 1 && conf->format != 1) {
        dr_error_set(err, "compression: gzip applies to format json (protobuf is always snappy)");
        return DR_EINVAL;
    }
    loki_state *st = calloc(1, sizeof *st);
    if (!st) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    inst->state = st;
    st->builder = loki_builder_new();
    if (!st->builder) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    if (make_layout(inst, &st->layout, err) < 0)
        return DR_EINVAL;
    st->client = dr_http_client_new(inst->loop, &conf->http, err);
    if (!st->client)
        return DR_EINVAL;
    dr_output_set_batch(inst, conf->batch_max_bytes, conf->batch_wait_ms);
    return 0;
}

static int loki_start(dr_instance *inst)
{
    loki_state *st = inst->state;
    dr_http_stats_init(&st->stats, inst);
    dr_http_client_instrument(st->client, inst);
    st->invalid_utf8 =
        dr_counter_new(inst, "drover_output_invalid_utf8_records_total",
                       "Records whose invalid UTF-8 was replaced by U+FFFD.", NULL, NULL);
    st->split = dr_counter_new(inst, "drover_output_split_records_total",
                               "Records longer than max_line_bytes sent in pieces.", NULL, NULL);
    st->truncated = dr_counter_new(inst, "drover_output_truncated_records_total",
                                   "Records cut at max_line_bytes.", NULL, NULL);
    return 0;
}

/* Every request of the batch has an answer: one verdict for the batch. */
static void finish_batch(loki_batch *b)
{
    dr_instance *inst = b->inst;
    loki_state *st = inst->state;
    if (b->retry) {
        /* the largest Retry-After of the batch's requests, if any */
        dr_http_response worst = {.retry_after_ms = b->retry_after_ms};
        dr_http_retry(b->flush, &worst);
    } else {
        /* what building found is counted once, for the attempt that ends */
        dr_counter_add(st->invalid_utf8, b->stats.invalid_utf8);
        dr_counter_add(st->split, b->stats.split);
        dr_counter_add(st->truncated, b->stats.truncated);
        if (b->stats.too_long)
            dr_count_drop(inst, "too_long", b->stats.too_long);
        uint64_t dropped = b->stats.too_long;
        for (size_t i = 0; i < b->nrefused; i++) {
            dr_count_drop(inst, b->refused[i].reason, b->refused[i].count);
            dropped += b->refused[i].count;
        }
        dr_output_done_partial(b->flush, dropped);
    }
    loki_requests_free(b->reqs, b->nreqs);
    free(b);
}

static void send_from(loki_batch *b, size_t i);

/* A request Loki refused (4xx other than 429): its entries are dropped,
 * by the reasons of a 400 answer, or all of them. Counted as records,
 * which a split record's pieces may overstate; never more than it held. */
static void note_refusal(loki_batch *b, const loki_request *req, const dr_http_response *r)
{
    loki_refusal found[8];
    size_t n = 0;
    if (r->status == 400) {
        n = loki_refusals(r->body, req->records, found, 8);
    } else {
        found[0].reason = r->status == 401 || r->status == 403 ? "unauthorized"
                          : r->status == 413                   ? "too_large"
                                                               : "rejected";
        found[0].count = req->records;
        n = 1;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        total += found[i].count;
        size_t j = 0;
        while (j < b->nrefused && strcmp(b->refused[j].reason, found[i].reason) != 0)
            j++;
        if (j == b->nrefused && b->nrefused < 8)
            b->refused[b->nrefused++] = (loki_refusal){found[i].reason, 0};
        if (j < b->nrefused)
            b->refused[j].count += found[i].count;
    }
    char snippet[301];
    dr_http_response_snippet(r, snippet, sizeof snippet);
    dr_log(b->inst, DR_LOG_WARN, "push refused, entries dropped",
           "status=%d dropped=%llu reason=%s response=\"%s\"", r->status, (unsigned long long)total,
           n ? found[0].reason : "rejected", snippet);
}

static void on_push_done(void *ctx, const dr_http_response *r)
{
    loki_send *s = ctx;
    loki_batch *b = s->batch;
    dr_instance *inst = b->inst;
    loki_state *st = inst->state;
    size_t s_index = s->index;
    loki_request *req = &b->reqs[s_index];
    char snippet[201];
    free(s);
    dr_http_stats_answer(&st->stats, r->status);
    switch (dr_http_classify(r)) {
    case DR_HTTP_OK:
        break;
    case DR_HTTP_RETRY:
        b->retry = true;
        if (r->retry_after_ms > b->retry_after_ms)
            b->retry_after_ms = r->retry_after_ms;
        dr_http_response_snippet(r, snippet, sizeof snippet);
        dr_log(inst, DR_LOG_WARN, "push failed, will retry", "status=%d %s=\"%s\"", r->status,
               r->status ? "response" : "error", snippet);
        break;
    case DR_HTTP_FAIL:
        note_refusal(b, req, r);
        break;
    }
    send_from(b, s_index + 1);
}

/* Sends request i of the batch. Returns 0, or a negative code when it
 * could not even start (the batch is then retried). */
static int send_request(loki_batch *b, size_t i)
{
    dr_instance *inst = b->inst;
    loki_conf *conf = inst->conf;
    loki_state *st = inst->state;
    loki_request *req = &b->reqs[i];
    char tenant_header[300];
    const char *headers[4];
    size_t nh = 0;
    if (st->layout.format == LOKI_FORMAT_PROTOBUF) {
        headers[nh++] = "Content-Type: application/x-protobuf";
        headers[nh++] = "Content-Encoding: snappy";
    } else {
        headers[nh++] = "Content-Type: application/json";
        if (st->layout.gzip)
            headers[nh++] = "Content-Encoding: gzip";
    }
    if (req->tenant) {
        snprintf(tenant_header, sizeof tenant_header, "X-Scope-OrgID: %s", req->tenant);
        headers[nh++] = tenant_header;
    }
    headers[nh] = NULL;
    loki_send *s = malloc(sizeof *s);
    if (!s)
        return DR_ENOMEM;
    s->batch = b;
    s->index = i;
    dr_http_request hr = {.method = "POST",
                          .url = conf->url,
                          .headers = headers,
                          .body = req->body.p,
                          .body_len = req->body.len};
    int rc = dr_http_client_send(st->client, &hr, on_push_done, s);
    if (rc < 0) {
        free(s);
        return rc;
    }
    dr_http_stats_sent(&st->stats, req->body.len);
    return 0;
}

/* Sends the batch's requests one after the other, from request i on: a
 * stream cut across two requests stays in order. The batch ends after the
 * last, or at the first that must be retried. */
static void send_from(loki_batch *b, size_t i)
{
    if (b->retry || i >= b->nreqs) {
        finish_batch(b);
        return;
    }
    if (send_request(b, i) < 0) {
        b->retry = true;
        finish_batch(b);
    }
}

static void loki_flush(dr_instance *inst, dr_flush *f)
{
    loki_state *st = inst->state;
    if (!st->client) { /* stopped: nothing more goes out */
        dr_output_done(f, DR_RETRY, NULL);
        return;
    }
    size_t n = dr_flush_count(f);
    const dr_chunk **chunks = calloc(n + 1, sizeof *chunks);
    loki_batch *b = calloc(1, sizeof *b);
    if (!chunks || !b) {
        free(chunks);
        free(b);
        dr_output_done(f, DR_RETRY, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++)
        chunks[i] = dr_flush_chunk(f, i);
    b->inst = inst;
    b->flush = f;
    b->retry_after_ms = -1;
    int rc = loki_build(st->builder, &st->layout, chunks, n, &b->reqs, &b->nreqs, &b->stats);
    free(chunks);
    if (rc < 0) {
        dr_log(inst, DR_LOG_ERROR, "could not build a push request, will retry", NULL);
        free(b);
        dr_output_done(f, DR_RETRY, NULL);
        return;
    }
    send_from(b, 0);
}

static void loki_stop(dr_instance *inst)
{
    loki_state *st = inst->state;
    if (st && st->client) {
        /* cancels what is in flight: each batch ends (retry, which the
         * core turns into "give back to the source" at shutdown) */
        dr_http_client_close(st->client);
        st->client = NULL;
    }
}

static void loki_destroy(dr_instance *inst)
{
    loki_state *st = inst->state;
    if (!st)
        return;
    if (st->client)
        dr_http_client_close(st->client);
    layout_free(&st->layout);
    loki_builder_free(st->builder);
    free(st);
    inst->state = NULL;
}

const dr_plugin dr_plugin_loki = {
    .abi = DR_PLUGIN_ABI,
    .name = "loki",
    .kind = DR_OUTPUT,
    .description =
        "Pushes records to Grafana Loki (POST /loki/api/v1/push), protobuf with snappy by "
        "default or JSON. Records become entries of the stream their labels name, time-ordered "
        "within it; per-pod values go as structured metadata. Batches are bounded by bytes and "
        "by wait; several are in flight at once, but never two holding the same container, so "
        "no stream is reordered. Network errors, 429 and 5xx answers are retried with backoff "
        "(a Retry-After is honoured); a 400 (too old, out of order, too long) drops the entries "
        "Loki names, counted in drover_dropped_records_total by reason.",
    .options = loki_options,
    .conf_size = sizeof(loki_conf),
    .init = loki_init,
    .start = loki_start,
    .flush = loki_flush,
    .stop = loki_stop,
    .destroy = loki_destroy,
};
