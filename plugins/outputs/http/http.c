/*
 * http output: batches of records as one HTTP request each, for any
 * collector that takes JSON (or msgpack) over HTTP.
 *
 * A batch (dr_output_set_batch) is encoded in the configured format
 * (body.h), compressed if asked, and sent with the shared HTTP client
 * (src/http_client.h). The response decides the batch's fate through
 * dr_http_classify: 2xx delivered; no answer, 5xx, 429 and 408 retried by
 * the core (after Retry-After when the server sent one); any other answer
 * dropped, since sending the same bytes again cannot help.
 *
 * Buffers: each request owns its body (http_req), which the client reads
 * until the request's done callback: up to max_inflight of them exist at
 * once. A batch is encoded into the instance's scratch buffer; without
 * compression the scratch buffer itself becomes the body (the two buffers
 * are swapped, no copy), with it the compressed bytes are written into the
 * body. Finished requests go back to a small pool, and buffers that grew
 * past DR_HTTP_KEEP_BYTES are freed rather than kept.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../ndjson.h"
#include "body.h"
#include "buf.h"
#include "compress.h"
#include "drover/plugin.h"
#include "http_client.h"

/* Idle requests kept for reuse, and the largest buffer one keeps. */
#define DR_HTTP_POOL_MAX 4
#define DR_HTTP_KEEP_BYTES ((size_t)4 << 20)
/* Bytes of a refused request's response quoted in the log. */
#define DR_HTTP_LOG_BODY 200

typedef struct http_conf {
    char *url;
    int method;
    int format;
    int compression;
    uint64_t batch_max_bytes;
    int64_t batch_wait_ms;
    dr_http_client_conf http;
} http_conf;

static const char *const http_methods[] = {"POST", "PUT", NULL};
static const char *const http_formats[] = {"ndjson", "json_array", "msgpack", NULL};
/* In the order of dr_compression. */
static const char *const http_compressions[] = {"none", "gzip", "zstd", NULL};

static const dr_option http_options[] = {
    {"url", DR_OPT_STRING, offsetof(http_conf, url), NULL, DR_OPT_REQUIRED, NULL, 0, 0,
     "Where each batch is sent: an http:// or https:// URL, path and query included."},
    {"method", DR_OPT_ENUM, offsetof(http_conf, method), "POST", 0, http_methods, 0, 0,
     "HTTP method of the requests."},
    {"format", DR_OPT_ENUM, offsetof(http_conf, format), "ndjson", 0, http_formats, 0, 0,
     "Body of a request. `ndjson`: one JSON object per record per line, exactly what the "
     "file output writes (Content-Type: application/x-ndjson). `json_array`: the same objects "
     "in one JSON array (application/json). `msgpack`: the same record as one msgpack map "
     "per record, the maps concatenated (a stream, not an array; application/msgpack)."},
    {"compression", DR_OPT_ENUM, offsetof(http_conf, compression), "none", 0, http_compressions, 0,
     0, "Compression of the body, announced in Content-Encoding."},
    {"batch_max_bytes", DR_OPT_SIZE, offsetof(http_conf, batch_max_bytes), "1MiB", 0, NULL, 1024,
     (int64_t)256 << 20,
     "Most record payload (message bytes) in one request; a single larger chunk is sent "
     "alone. The body is larger: metadata and encoding add to it."},
    {"batch_wait", DR_OPT_DURATION, offsetof(http_conf, batch_wait_ms), "1s", 0, NULL, 0, 60000,
     "Longest wait after the oldest queued record for a batch to fill before it is sent "
     "anyway; 0 sends at once what is queued. Never waited for at shutdown or at the end of "
     "a oneshot run."},
    {.name = "",
     .type = DR_OPT_GROUP,
     .offset = offsetof(http_conf, http),
     .group = dr_http_client_options},
    {0},
};

typedef struct http_req {
    struct http_req *next; /* on the pool */
    dr_instance *inst;
    dr_flush *flush;
    dr_buf body;
} http_req;

typedef struct http_state {
    dr_http_client *client; /* NULL once stopped */
    dr_compression compression;
    const char *method;
    const char *headers[3]; /* Content-Type, Content-Encoding, NULL */
    char content_type[64];
    char content_encoding[64];
    dr_ndjson_writer scratch; /* its buffer is the scratch buffer */
    http_req *pool;
    size_t pooled;
    dr_http_stats stats;
} http_state;

/* ---- configuration ------------------------------------------------------------ */

/* The headers the output sets from format and compression: a user's copy
 * would be sent beside ours (curl does not replace them), and the server
 * would read the body wrong. */
static int check_headers(const dr_strlist *headers, dr_error *err)
{
    static const char *const ours[] = {"Content-Type", "Content-Encoding", "Content-Length",
                                       "Transfer-Encoding", NULL};
    for (size_t i = 0; i < headers->n; i++) {
        const char *h = headers->v[i];
        const char *colon = h ? strchr(h, ':') : NULL;
        if (!colon)
            continue; /* the client reports malformed headers */
        size_t len = (size_t)(colon - h);
        while (len > 0 && (h[len - 1] == ' ' || h[len - 1] == '\t'))
            len--;
        for (const char *const *o = ours; *o; o++) {
            if (strlen(*o) == len && strncasecmp(h, *o, len) == 0) {
                dr_error_set(err,
                             "headers: %s is set by the output (from format and compression) "
                             "and cannot be replaced",
                             *o);
                return DR_EINVAL;
            }
        }
    }
    return 0;
}

static void set_request_headers(http_state *st, const http_conf *conf)
{
    snprintf(st->content_type, sizeof st->content_type, "Content-Type: %s",
             dr_http_body_content_type((dr_http_format)conf->format));
    st->headers[0] = st->content_type;
    const char *enc = dr_compress_encoding(st->compression);
    if (enc) {
        snprintf(st->content_encoding, sizeof st->content_encoding, "Content-Encoding: %s", enc);
        st->headers[1] = st->content_encoding;
    }
}

/* ---- requests ------------------------------------------------------------------- */

static http_req *req_get(http_state *st)
{
    http_req *q = st->pool;
    if (q) {
        st->pool = q->next;
        st->pooled--;
        q->next = NULL;
        dr_buf_reset(&q->body);
        return q;
    }
    return calloc(1, sizeof(http_req));
}

static void req_put(http_state *st, http_req *q)
{
    if (st->pooled >= DR_HTTP_POOL_MAX) {
        dr_buf_free(&q->body);
        free(q);
        return;
    }
    if (q->body.cap > DR_HTTP_KEEP_BYTES)
        dr_buf_free(&q->body);
    q->inst = NULL;
    q->flush = NULL;
    q->next = st->pool;
    st->pool = q;
    st->pooled++;
}

/* Encodes the batch into q->body (compressed when asked). Counts the
 * records whose invalid UTF-8 was replaced. 0 or a negative DR_E* code. */
static int encode_batch(dr_instance *inst, const dr_flush *f, http_req *q)
{
    http_conf *conf = inst->conf;
    http_state *st = inst->state;
    dr_buf *scratch = &st->scratch.buf;
    dr_buf_reset(scratch);
    dr_http_body body;
    int rc = dr_http_body_begin(&body, (dr_http_format)conf->format, scratch);
    for (size_t i = 0; rc == 0 && i < dr_flush_count(f); i++)
        rc = dr_http_body_add(&body, dr_flush_chunk(f, i));
    if (rc < 0)
        return rc;
    dr_http_body_end(&body);
    dr_counter_add(st->scratch.invalid_utf8, body.bad_records);
    if (scratch->len == 0)
        return 0;
    if (st->compression == DR_COMPRESS_NONE) {
        dr_buf t = q->body;
        q->body = *scratch;
        *scratch = t;
        dr_buf_reset(scratch);
    } else {
        rc = dr_compress(st->compression, scratch->p, scratch->len, &q->body);
    }
    dr_ndjson_writer_trim(&st->scratch);
    return rc;
}

/* The drop reason (a metric label) of a refused request. */
static const char *refusal_reason(int status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 401:
    case 403:
        return "unauthorized";
    case 413:
        return "too_large";
    default:
        return "rejected";
    }
}

static void on_response(void *ctx, const dr_http_response *r)
{
    http_req *q = ctx;
    dr_instance *inst = q->inst;
    dr_flush *f = q->flush;
    http_state *st = inst->state;
    bool cancelled = st->client == NULL; /* closing: the core gives the batch back */
    req_put(st, q);
    if (!cancelled)
        dr_http_stats_answer(&st->stats, r->status);

    char snippet[DR_HTTP_LOG_BODY + 1];
    switch (dr_http_classify(r)) {
    case DR_HTTP_OK:
        dr_output_done(f, DR_DELIVERED, NULL);
        return;
    case DR_HTTP_RETRY:
        if (!cancelled) {
            dr_http_response_snippet(r, snippet, sizeof snippet);
            dr_log(inst, DR_LOG_WARN, "request failed, will retry", "status=%d %s=\"%s\"",
                   r->status, r->status ? "response" : "error", snippet);
        }
        dr_http_retry(f, r);
        return;
    case DR_HTTP_FAIL: {
        const char *reason = refusal_reason(r->status);
        dr_http_response_snippet(r, snippet, sizeof snippet);
        dr_log(inst, DR_LOG_WARN, "request refused, batch dropped",
               "status=%d reason=%s response=\"%s\"", r->status, reason, snippet);
        dr_output_done(f, DR_DROP, reason);
        return;
    }
    }
}

static void http_flush(dr_instance *inst, dr_flush *f)
{
    http_conf *conf = inst->conf;
    http_state *st = inst->state;
    http_req *q = st->client ? req_get(st) : NULL;
    if (!q) {
        dr_output_done(f, DR_RETRY, NULL);
        return;
    }
    int rc = encode_batch(inst, f, q);
    if (rc < 0 || q->body.len == 0) {
        /* A batch whose records filters all dropped has nothing to send. */
        if (rc < 0)
            dr_log(inst, DR_LOG_ERROR, "cannot encode a batch, will retry", "error=%d", rc);
        req_put(st, q);
        dr_output_done(f, rc < 0 ? DR_RETRY : DR_DELIVERED, NULL);
        return;
    }
    q->inst = inst;
    q->flush = f;
    dr_http_request req = {
        .method = st->method,
        .url = conf->url,
        .headers = st->headers,
        .body = q->body.p,
        .body_len = q->body.len,
    };
    rc = dr_http_client_send(st->client, &req, on_response, q);
    if (rc < 0) {
        dr_log(inst, DR_LOG_ERROR, "cannot start a request, will retry", "error=%d", rc);
        req_put(st, q);
        dr_output_done(f, DR_RETRY, NULL);
        return;
    }
    dr_http_stats_sent(&st->stats, q->body.len);
}

/* ---- life cycle ------------------------------------------------------------------- */

/* The client is made here rather than in start: its checks (readable
 * certificate and token files, the proxy URL) are configuration errors,
 * reported with the others by --check-config and by a refused reload. */
static int http_init(dr_instance *inst, dr_error *err)
{
    http_conf *conf = inst->conf;
    if (dr_http_check_url(conf->url, err) < 0 || check_headers(&conf->http.headers, err) < 0)
        return DR_EINVAL;
    http_state *st = calloc(1, sizeof *st);
    if (!st) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    st->compression = (dr_compression)conf->compression;
    st->method = http_methods[conf->method];
    set_request_headers(st, conf);
    st->client = dr_http_client_new(inst->loop, &conf->http, err);
    if (!st->client) {
        free(st);
        return DR_EINVAL;
    }
    inst->state = st;
    dr_output_set_batch(inst, conf->batch_max_bytes, conf->batch_wait_ms);
    return 0;
}

static int http_start(dr_instance *inst)
{
    http_state *st = inst->state;
    dr_ndjson_writer_init(&st->scratch, inst, DR_LINE_JSON);
    dr_http_stats_init(&st->stats, inst);
    dr_http_client_instrument(st->client, inst);
    return 0;
}

/* Requests still in flight are cancelled: their callbacks run now and hand
 * the batches back to the core. */
static void http_stop(dr_instance *inst)
{
    http_state *st = inst->state;
    dr_http_client *c = st->client;
    st->client = NULL;
    dr_http_client_close(c);
}

static void http_destroy(dr_instance *inst)
{
    http_state *st = inst->state;
    if (st->client)
        http_stop(inst);
    while (st->pool) {
        http_req *q = st->pool;
        st->pool = q->next;
        dr_buf_free(&q->body);
        free(q);
    }
    dr_ndjson_writer_free(&st->scratch);
    free(st);
    inst->state = NULL;
}

const dr_plugin dr_plugin_http = {
    .abi = DR_PLUGIN_ABI,
    .name = "http",
    .kind = DR_OUTPUT,
    .description =
        "Sends batches of records to an HTTP endpoint, one request per batch, for any "
        "collector that takes JSON or msgpack over HTTP. Each record is the one the file "
        "output writes:\n\n"
        "```\n{\"time\":\"2026-11-25T04:10:38.123456789Z\",\"stream\":\"stdout\","
        "\"message\":\"...\",\"kubernetes\":{\"namespace\":\"...\",\"pod\":\"...\","
        "\"pod_uid\":\"...\",\"container\":\"...\",\"container_id\":\"...\"}}\n```\n\n"
        "framed by `format`: NDJSON lines, one JSON array, or concatenated msgpack maps (the "
        "same keys; every value a string, `kubernetes` a map). Invalid UTF-8 becomes U+FFFD "
        "and is counted in `drover_output_invalid_utf8_records_total`.\n\n"
        "A 2xx answer delivers the batch. No answer (connection error, `timeout`), 5xx, 429 "
        "and 408 are retried with backoff, after `Retry-After` when the server sends it; while "
        "failing, one request at a time is sent. Any other answer drops the batch, counted in "
        "`drover_dropped_records_total` with reason `bad_request` (400), `unauthorized` (401, "
        "403), `too_large` (413) or `rejected`, and logged with the start of the response. "
        "Requests are counted in `drover_output_requests_total{code}` (`error`: no answer) and "
        "body bytes sent, after compression, in `drover_output_request_bytes_total`.\n\n"
        "Fluentd's `in_http` reads the `time` key as epoch seconds unless its `<parse>` "
        "section sets `time_type string` (with a matching `time_format`).",
    .options = http_options,
    .conf_size = sizeof(http_conf),
    .init = http_init,
    .start = http_start,
    .flush = http_flush,
    .stop = http_stop,
    .destroy = http_destroy,
};
