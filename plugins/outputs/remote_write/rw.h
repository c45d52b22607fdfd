/*
 * remote_write output: the model shared by its files.
 *
 *   remote_write.c  the plugin: options, batches from the core, series
 *                   through write_relabel_configs (cached per series),
 *                   family metadata, splitting a batch into requests
 *   rw_shards.c     the shards: one FIFO of requests each, sent one at a
 *                   time with their own retry and backoff, and resharding
 *   rw_disk.c       spilling to disk while the receiver fails and the queue
 *                   fills, and the replay, oldest first, when it is back
 *   rw_spill.c      the disk queue itself: segment files of records
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
#include "rw_spill.h"
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
    uint64_t spill_max_bytes; /* 0: no spilling */
    uint64_t spill_segment_bytes;
    int64_t spill_high_water; /* percent of queue_max_bytes */
    int64_t spill_after_ms;   /* 0: only the high water mark */
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
    uint32_t nhist; /* native histograms among the samples */
    uint32_t attempts;
    /* a request replayed from disk: no batch and no samples (nsamples and
     * nhist still count them), the body as it was written */
    bool replay;
    rw_spill_pos spill_end;
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

/* Spilling to disk (rw_disk.c). */
typedef struct rw_disk {
    bool enabled; /* spill_max_bytes set and the directory usable */
    rw_spill store;
    bool active;      /* every new request goes to disk, until it has drained */
    bool replaying;   /* a request read from disk is in shard 0 */
    uv_timer_t timer; /* every second: sync, state file, checks */
    bool timer_open;
    bool syncing; /* a sync runs on a worker */
    uv_work_t work;
    rw_spill_sync sync;
    dr_buf raw;            /* the body of a record read back */
    rw_spill_counts shown; /* what the counters below have been given */
    dr_gauge *g_bytes, *g_segments, *g_active;
    dr_counter *written, *replayed;
    dr_counter *records_dropped_full, *records_dropped_corrupt, *records_dropped_too_large;
    dr_counter *samples_dropped_full, *samples_dropped_too_large;
} rw_disk;

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
    int64_t failing_since_ms; /* the first failure since the last success; 0: none */
    int64_t highest_sent_ts_ms;

    /* write relabeling, cached per input series */
    struct rw_cache_entry *cache;
    uint32_t cache_mask, cache_n;
    dr_labels scratch;

    /* the newest metadata of each family, for 2.0 */
    struct rw_family *families;
    uint32_t families_mask, families_n;

    int64_t last_sweep_ms;
    rw_disk disk;
    uint32_t open_handles; /* timers not yet closed; the last to close frees the state */
};

#define RW_RESHARD_MS 10000

/* rw_shards.c */
int rw_shards_init(rw_state *st);
/* Queues a request on a shard and starts it when the shard is idle. */
void rw_shard_push(rw_shard *sh, rw_request *req);
/* Starts every idle shard that has requests (credentials arrived). */
void rw_shards_kick_all(rw_state *st);
/* Sets the pending-samples gauge again after requests left the shards. */
void rw_shards_refresh(rw_state *st);
/* remote_write.c: the core's batch size and wait for the shards in use
 * (a short wait while spilling). */
void rw_update_batch(rw_state *st);
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

/* remote_write.c: a timer or a worker of the state is closed or done; the
 * last frees the state. */
void rw_handle_closed(rw_state *st);

/* ---- rw_disk.c ---- */

/* Opens the spill directory (data_dir/remote_write/<name>) and replays what
 * an earlier run left; without a usable directory the output keeps to
 * memory (logged). */
void rw_disk_start(rw_state *st);
/* Takes a request the batch code would queue on sh (sh->scratch holds its
 * uncompressed body) when spilling: true when it went to disk (or was
 * dropped, counted) and is done. */
bool rw_disk_take(rw_state *st, rw_shard *sh, rw_request *req);
/* Starts spilling when the receiver fails and the queue is past the high
 * water mark. */
void rw_disk_check(rw_state *st);
/* Sends the next record from disk when the shards are idle. */
void rw_disk_kick(rw_state *st);
/* A replayed request is done (delivered, or refused and counted). */
void rw_disk_replay_done(rw_state *st, rw_spill_pos end);
void rw_disk_stop(rw_state *st);
void rw_disk_close(rw_state *st, uv_close_cb on_closed);
/* Closes the store (syncing it) at destroy: a new instance of the next
 * configuration may open the same directory. */
void rw_disk_free(rw_state *st);

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
