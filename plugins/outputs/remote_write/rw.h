/*
 * remote_write output: the model shared by its files.
 *
 *   remote_write.c  the plugin: options, batches from the core, series
 *                   through write_relabel_configs (cached per series),
 *                   family metadata, splitting a batch into requests
 *   rw_shards.c     the shards: one FIFO of requests each, sent one at a
 *                   time with their own retry and backoff, and resharding
 *
 * A sample goes to the shard of its series (hash % shards), and a shard
 * sends its requests in order, one at a time: the samples of a series
 * reach the receiver in the order they were scraped, whatever the number
 * of shards, and a failing request is retried alone (the ones before it
 * were accepted), so nothing is sent twice. A batch from the core is done
 * when every request made from it is done; its chunks are acknowledged
 * only then.
 */
#ifndef DROVER_RW_H
#define DROVER_RW_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "aws_credentials.h"
#include "aws_provider.h"
#include "buf.h"
#include "drover/plugin.h"
#include "http_client.h"
#include "labels.h"
#include "prw.h"
#include "relabel.h"
#include "series.h"

enum { RW_V1 = 1, RW_V2 = 2 };

typedef struct rw_conf {
    char *url;
    int protobuf_message; /* 0: prometheus.WriteRequest (1.0), 1: io.prometheus.write.v2.Request */
    const dr_cfg_node *external_labels;
    const dr_cfg_node *write_relabel_configs;
    int64_t min_shards, max_shards;
    int64_t max_samples_per_send;
    int64_t batch_send_deadline_ms;
    int64_t min_backoff_ms, max_backoff_ms;
    bool send_metadata;
    int64_t metadata_max_per_send;
    int64_t remote_timeout_ms;
    const dr_cfg_node *sigv4;
    dr_http_client_conf http;
} rw_conf;

/* SigV4 signing of the requests (rw_sigv4.c). */
typedef struct rw_sigv4 {
    char *region, *service;
    dr_aws_creds creds;
    /* credentials from a shared credentials file: re-read when it changes */
    char *file, *profile;
    struct timespec file_mtime;
    int64_t file_checked_ms;
    /* temporary credentials (web identity, container, IMDS) or a role
     * assumed: fetched in the background; NULL: creds above sign */
    dr_aws_provider *provider;
    char *host, *path, *query; /* of the url */
    /* the headers signing adds to the request being sent (copied by the
     * HTTP client at once, so one set serves every shard) */
    char host_header[320], date_header[40];
    dr_buf token_header, authz_header;
} rw_sigv4;

typedef struct rw_state rw_state;

/* One batch of the core, until every request made from it is done. */
typedef struct rw_batch {
    dr_flush *flush;
    uint32_t outstanding;  /* requests not done yet */
    uint64_t dropped;      /* samples dropped on purpose (relabeling, refusals) */
    bool failed;           /* ended by a stop: given back to the core as a retry */
    struct rw_batch *next; /* held while a reshard waits for the shards to drain */
} rw_batch;

/* One request: its samples (with a reference on each series, so it can be
 * encoded again for 1.0 after a 415) or metadata, and its encoded body. */
typedef struct rw_request {
    struct rw_request *next;
    rw_batch *batch;
    dr_sample *samples;
    uint32_t nsamples;
    const dr_metric_meta *metas; /* a 1.0 metadata request: entries in the chunks */
    uint32_t nmetas;
    int version; /* what body holds */
    dr_buf body; /* snappy-compressed */
    int64_t max_ts_ms;
    uint32_t attempts;
} rw_request;

typedef struct rw_shard {
    rw_state *st;
    uint32_t index;
    rw_request *head, *tail;
    uint64_t pending_samples;
    bool inflight;
    bool waiting; /* backoff timer armed */
    int64_t backoff_ms;
    int64_t sent_at_ns;
    uv_timer_t timer;
    dr_prw_writer *writer;
    dr_buf scratch; /* uncompressed body */
} rw_shard;

/* The self-metrics, prometheus_remote_storage_* style. */
typedef struct rw_metrics {
    dr_counter *samples_in, *samples_sent, *samples_failed, *samples_retried;
    dr_counter *histograms_sent, *metadata_sent, *bytes_sent, *requests_retried;
    dr_gauge *pending, *shards, *shards_desired, *highest_sent_ts;
} rw_metrics;

struct rw_state {
    dr_instance *inst;
    rw_conf *conf;
    dr_series_table *series;
    dr_labels external; /* canonical */
    dr_relabel_rules *relabel;
    dr_http_client *client;
    rw_sigv4 *sigv4; /* NULL: not signed */
    dr_http_stats http_stats;
    rw_metrics m;
    int version; /* what is sent now: falls back to 1.0 after a 415 */
    bool stopping;

    rw_shard *shards; /* max_shards of them */
    uint32_t max_shards;
    uint32_t nshards, want_shards;
    rw_batch *held, *held_tail; /* batches waiting for a reshard */

    /* resharding input, sampled every RW_RESHARD_MS */
    uv_timer_t reshard_timer;
    uint64_t last_in, last_out;
    int64_t send_ns_total, last_send_ns;
    double in_rate, out_rate, send_rate; /* exponentially weighted */
    /* The fullest the output's queue was at a flush since the last reshard
     * tick: a full queue makes the scrapes skip, so the input rate alone
     * would never show the backlog. */
    double max_fill;
    double grown_out_rate; /* samples/s out when the shards last grew for a full queue */
    int64_t last_failure_ms;
    int64_t highest_sent_ts_ms;

    /* write relabeling, cached per input series */
    struct rw_cache_entry *cache;
    uint32_t cache_mask, cache_n;
    dr_labels scratch;

    /* the newest metadata of each family, for 2.0 */
    struct rw_family *families;
    uint32_t families_mask, families_n;

    int64_t last_sweep_ms;
    uint32_t open_handles; /* timers not yet closed; the last to close frees the state */
};

#define RW_RESHARD_MS 10000

/* rw_shards.c */
int rw_shards_init(rw_state *st);
/* Queues a request on a shard and starts it when the shard is idle. */
void rw_shard_push(rw_shard *sh, rw_request *req);
/* Starts every idle shard that has requests (credentials arrived). */
void rw_shards_kick_all(rw_state *st);
/* True when no shard has anything queued or in flight. */
bool rw_shards_idle(const rw_state *st);
void rw_request_free(rw_state *st, rw_request *req);
/* A request is done (sent, or dropped with its samples counted). */
void rw_request_done(rw_state *st, rw_request *req, uint64_t dropped);
/* Stops the shards: every queued request ends its batch as a retry. */
void rw_shards_stop(rw_state *st);
void rw_shards_close(rw_state *st, uv_close_cb on_closed);
void rw_reshard_tick(uv_timer_t *timer);
/* remote_write.c: encodes a request's body for st->version (2.0 takes
 * each series' family metadata as known now); 0 or DR_ENOMEM. */
int rw_request_encode(rw_state *st, rw_shard *sh, rw_request *req);
/* remote_write.c: called when the shards drained for a pending reshard. */
void rw_release_held(rw_state *st);

/* ---- rw_sigv4.c ---- */

/* Reads the sigv4 map, the credentials and the region; 0 when signing is
 * off or ready, else DR_EINVAL with err. */
int rw_sigv4_init(rw_state *st, dr_error *err);
void rw_sigv4_free(rw_sigv4 *s);
/* Starts fetching temporary credentials, if the chain ended on a source
 * that needs it; 0 or a DR_E* code. */
int rw_sigv4_start(rw_state *st);
/* Appends Host, X-Amz-Date, X-Amz-Security-Token (temporary credentials)
 * and Authorization to headers[0..*nh) (room for cap, NULL-terminated),
 * signed over them and the body. DR_EAGAIN while there are no credentials
 * yet (the request waits: the shards are kicked when they come). */
int rw_sigv4_sign(rw_state *st, const char **headers, size_t *nh, size_t cap, const void *body,
                  size_t body_len);

#endif
