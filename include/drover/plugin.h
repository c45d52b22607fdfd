/*
 * drover plugin API: the whole model in one header.
 *
 * A plugin is a plain struct of callbacks (dr_plugin). The core creates one
 * dr_instance per configured input, filter or output, fills the plugin's own
 * config struct from its option table (dr_option), and calls the callbacks on
 * the event-loop thread. Nothing here is thread-safe: plugins that start
 * threads of their own hand results back to the loop (uv_async_t).
 *
 * Data flows as chunks (dr_chunk): an input fills a chunk with records and
 * emits it; the router runs the filters and hands the chunk to every output
 * whose `match` selects the input. Each output reports the outcome of every
 * chunk it was given (dr_output_done). When all outputs are done, the chunk's
 * acknowledgement runs and the input may advance its checkpoint. This is how
 * "at least once" is kept end to end: an input never forgets data whose chunk
 * has not been acknowledged.
 *
 * Error convention (as libuv): functions return 0 or a positive value on
 * success and a negative DR_E* code on failure.
 */
#ifndef DROVER_PLUGIN_H
#define DROVER_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define DR_PLUGIN_ABI 2

/* ---- errors ------------------------------------------------------------ */

enum {
    DR_OK = 0,
    DR_ERR = -1,    /* generic failure, details were logged or put in dr_error */
    DR_ENOMEM = -2, /* allocation failed */
    DR_EINVAL = -3, /* invalid argument or configuration */
    DR_EIO = -4,    /* I/O error */
    DR_EAGAIN = -5, /* try again later (queue full, backend busy) */
};

/* A configuration or start-up error: where and why. The core prints it as
 * "file:line:column: key: message". */
typedef struct dr_error {
    char msg[512];
} dr_error;

/* ---- records and chunks -------------------------------------------------- */

typedef enum { DR_STREAM_STDOUT = 0, DR_STREAM_STDERR = 1 } dr_stream;

/* Record flags: what happened to a record on its way in. */
enum {
    DR_REC_DROPPED = 1u << 0,   /* removed by a filter; outputs skip it */
    DR_REC_SPLIT = 1u << 1,     /* a piece of a record longer than max_record_bytes */
    DR_REC_TRUNCATED = 1u << 2, /* cut at max_record_bytes, the rest discarded */
    DR_REC_TIMEOUT = 1u << 3,   /* a partial line whose continuation never came */
    DR_REC_MALFORMED = 1u << 4, /* the source line did not parse; message is the raw line */
};

/* Where a log record comes from. Shared by every record of one container
 * (reference-counted, never copied per record). Later filters may attach
 * richer Kubernetes metadata through `ext`. */
typedef struct dr_meta {
    uint32_t refs;
    const char *path;       /* the file as the input found it */
    const char *namespace_; /* "" when unknown */
    const char *pod;
    const char *pod_uid;
    const char *container;
    const char *container_id;
    int restart; /* -1 when unknown */
    void *ext;   /* owned by whoever set it, freed with ext_free */
    void (*ext_free)(void *ext);
} dr_meta;

dr_meta *dr_meta_new(const char *path, const char *namespace_, const char *pod, const char *pod_uid,
                     const char *container, const char *container_id, int restart);
dr_meta *dr_meta_ref(dr_meta *m);
void dr_meta_unref(dr_meta *m);

/* What a field's value is. A string is any bytes (encoders quote it and
 * repair invalid UTF-8); a JSON value is valid JSON text (a number, true,
 * false, null, an object or an array) that encoders write as it is. */
typedef enum { DR_FIELD_STRING = 0, DR_FIELD_JSON = 1 } dr_field_type;

/* A key/value pair added by filters (parsers, modify, ...). Both strings
 * live in the chunk. A record's fields array is managed by the
 * dr_record_* functions below only (it carries its capacity in front). */
typedef struct dr_field {
    const char *key;
    const char *val;
    uint32_t key_len;
    uint32_t val_len;
    uint8_t type; /* dr_field_type */
} dr_field;

typedef struct dr_record {
    int64_t time_ns; /* nanoseconds since the Unix epoch */
    const char *msg; /* not NUL-terminated; may hold any bytes */
    uint32_t msg_len;
    uint8_t stream; /* dr_stream */
    uint8_t flags;  /* DR_REC_* */
    uint16_t nfields;
    dr_field *fields;
} dr_record;

typedef enum { DR_CHUNK_LOGS = 0, DR_CHUNK_METRICS = 1 } dr_chunk_kind;

/* ---- metric samples ------------------------------------------------------- */

/* A series of the agent's series table (src/series.h): an interned,
 * canonical label set, reference-counted. */
typedef struct dr_series dr_series;
typedef struct dr_series_table dr_series_table;
struct dr_native_hist;

/* One sample of a metric chunk. The chunk holds one reference to the
 * series for each sample. */
typedef struct dr_sample {
    dr_series *series;
    int64_t ts_ms; /* milliseconds since the Unix epoch */
    double value;  /* may be the staleness marker (dr_stale_nan) */
    /* A native histogram sample, in the chunk's arena; NULL for a float
     * sample (then `value` is the sample). */
    const struct dr_native_hist *hist;
} dr_sample;

/* The metadata of a metric family (Prometheus' TYPE, HELP and UNIT), as a
 * metric chunk carries it for remote write. Strings in the chunk's arena,
 * NUL-terminated, "" when absent. */
typedef struct dr_metric_meta {
    const char *family;
    const char *help;
    const char *unit;
    uint8_t type; /* dr_metric_type (src/expo.h), numbered as remote write's */
} dr_metric_meta;

/* What a plugin produces (inputs) or handles (filters and outputs), as a
 * mask. 0 in dr_plugin.data means logs only. */
enum { DR_DATA_LOGS = 1u << 0, DR_DATA_METRICS = 1u << 1 };

/* ---- Kubernetes metadata ---------------------------------------------------- */

typedef struct dr_kv {
    const char *key;
    const char *val;
} dr_kv;

/* What the kubernetes filter knows of a record's pod and container. One
 * block of memory, immutable once made, reference-counted: every chunk of a
 * container holds one reference to the same object, and a change of the pod
 * (new labels, say) makes a new object for the chunks that follow. Strings
 * are never NULL ("" when unknown); lists are sorted by key. */
typedef struct dr_kube_meta {
    uint32_t refs;
    const char *namespace_;
    const char *pod;
    const char *pod_uid;
    const char *container;
    const char *container_id;
    const char *image;
    const char *node;
    const char *pod_ip;
    const char *owner_kind; /* Deployment, StatefulSet, DaemonSet, Job, CronJob, ... */
    const char *owner_name;
    const dr_kv *labels;
    const dr_kv *annotations; /* those the filter was told to keep */
    const dr_kv *namespace_labels;
    uint32_t nlabels, nannotations, nnamespace_labels;
} dr_kube_meta;

dr_kube_meta *dr_kube_meta_ref(dr_kube_meta *m);
void dr_kube_meta_unref(dr_kube_meta *m);
/* The value of a key in one of its sorted lists, or NULL. */
const char *dr_kv_find(const dr_kv *list, uint32_t n, const char *key);

typedef struct dr_chunk dr_chunk;
typedef struct dr_instance dr_instance;

/* Most outputs one chunk can be routed to by route filters. */
#define DR_ROUTE_MAX 8

/* Called once when every output has finished with a chunk. `delivered` is
 * false only when the chunk was abandoned (shutdown before delivery): the
 * input must then not advance past it. Dropped-on-purpose counts as done. */
typedef void (*dr_ack_fn)(void *ctx, uint64_t token, bool delivered);

struct dr_chunk {
    dr_chunk_kind kind;
    uint32_t refs;
    dr_instance *input;
    dr_meta *meta;      /* one reference held by the chunk, may be NULL */
    dr_kube_meta *kube; /* one reference, set by the kubernetes filter; may be NULL */
    /* What the chunk's order is kept within (an identity, never read):
     * chunks of one stream are delivered in the order emitted. NULL: the
     * meta's source (one container) or, without meta, the whole input. A
     * scrape input sets its target, so that targets go out in parallel. */
    const void *stream;
    /* Outputs a route filter chose (dr_chunk_route); none: the input's. */
    dr_instance *route[DR_ROUTE_MAX];
    uint8_t nroute;
    bool route_keep_default; /* the input's outputs too */
    dr_record *recs;
    uint32_t nrecs;
    uint32_t cap;
    /* A metric chunk's samples and family metadata; `series` is the table
     * its samples' series belong to. */
    dr_sample *samples;
    uint32_t nsamples, samples_cap;
    dr_metric_meta *metas;
    uint32_t nmetas, metas_cap;
    dr_series_table *series;
    size_t bytes;       /* payload bytes (messages), for accounting */
    size_t mem;         /* memory it holds (arena, records, itself): what queues bound */
    int64_t created_ns; /* monotonic, for the oldest-queued age */
    dr_ack_fn ack;
    void *ack_ctx;
    uint64_t ack_token;
    bool abandoned;
    /* arena: a list of blocks, freed together with the chunk */
    struct dr_arena_block *blocks;
};

/* A chunk of log records. `bytes_hint` sizes the first arena block
 * exactly (a chunk that copies one read takes no more than it needs). */
dr_chunk *dr_chunk_new(dr_instance *input, size_t bytes_hint);
/* A chunk of metric samples whose series belong to `series`. */
dr_chunk *dr_chunk_new_metrics(dr_instance *input, dr_series_table *series);
/* Appends a sample; the chunk takes a reference to `s`. NULL when out of
 * memory (then it took none). */
dr_sample *dr_chunk_add_sample(dr_chunk *c, dr_series *s, int64_t ts_ms, double value);
/* Appends a family's metadata, copying the strings (lengths given; help and
 * unit may be NULL). 0 or DR_ENOMEM. */
int dr_chunk_add_meta(dr_chunk *c, const char *family, size_t family_len, uint8_t type,
                      const char *help, size_t help_len, const char *unit, size_t unit_len);
/* Memory that lives as long as the chunk (8-byte aligned). */
void *dr_chunk_alloc(dr_chunk *c, size_t n);
/* Adopts a malloc'd buffer so it is freed with the chunk. */
void dr_chunk_adopt(dr_chunk *c, void *buf, size_t size);
/* Appends an empty record and returns it (NULL on allocation failure). */
dr_record *dr_chunk_add(dr_chunk *c);
void dr_chunk_set_meta(dr_chunk *c, dr_meta *m);
void dr_chunk_set_ack(dr_chunk *c, dr_ack_fn fn, void *ctx, uint64_t token);
/* Sends the chunk to these outputs (added to those a route filter chose
 * before; at most DR_ROUTE_MAX in all). The input's own outputs still get
 * it only if every route on it says keep_default. */
void dr_chunk_route(dr_chunk *c, dr_instance *const *outputs, uint8_t n, bool keep_default);
/* Gives the chunk a reference to m (dropping the one it had). */
void dr_chunk_set_kube(dr_chunk *c, dr_kube_meta *m);
/* Copies n bytes into the chunk's arena (NUL-terminated); NULL when out of memory. */
char *dr_chunk_strdup(dr_chunk *c, const char *s, size_t n);

/* ---- record keys, as filters and outputs name them ---------------------------
 *
 * "message" is the log line, "stream" is stdout or stderr, "time" the
 * timestamp (RFC 3339). "kubernetes.<name>" reads the chunk's metadata:
 * namespace, pod, pod_uid, container, container_id, image, node, pod_ip,
 * owner_kind, owner_name, and "kubernetes.labels.<key>",
 * "kubernetes.annotations.<key>", "kubernetes.namespace_labels.<key>"
 * (label keys may hold dots and slashes: everything after the prefix is
 * the key). Any other key names a field that a filter added. */

typedef struct dr_value {
    const char *p;
    size_t len;
    uint8_t type; /* dr_field_type */
} dr_value;

/* Reads a key of a record. "time" is written into tbuf (at least 40
 * bytes). False when the record has no such key. */
bool dr_record_get(const dr_chunk *c, const dr_record *r, const char *key, size_t key_len,
                   dr_value *out, char tbuf[40]);
/* The field a filter added under this key, or NULL. */
dr_field *dr_record_field(const dr_record *r, const char *key, size_t key_len);
/* Sets a key: "message" replaces the line; "stream" and "time" cannot be
 * set (DR_EINVAL), nor can "kubernetes.*"; any other key adds or replaces a
 * field. Key and value are copied into the chunk. 0, DR_EINVAL or DR_ENOMEM. */
int dr_record_set(dr_chunk *c, dr_record *r, const char *key, size_t key_len, const char *val,
                  size_t val_len, dr_field_type type);
/* Removes a field (true when it was there). The message cannot be removed:
 * setting it to "" is the way. */
bool dr_record_remove(dr_record *r, const char *key, size_t key_len);

/* Hands the chunk to the router. Ownership passes to the core. */
void dr_input_emit(dr_instance *input, dr_chunk *c);
/* Frees a chunk that was never emitted. */
void dr_chunk_discard(dr_chunk *c);

/* A filter hands the core a chunk it made: dr_chunk_new(src->input, ...)
 * with the metadata of the chunk its records came from (dr_chunk_set_meta,
 * dr_chunk_set_kube) and usually an acknowledgement of its own. The chunk
 * continues down the pipeline of c->input from the filter after `filter`
 * (the filters that follow it for that input, then every routed output),
 * as if that filter had passed it on. Its records are not counted again
 * as read by the input. Ownership passes to the core. */
void dr_filter_emit(dr_instance *filter, dr_chunk *c);

/* References to a chunk. The core holds one per output queue it is in; a
 * filter may take one to keep a chunk it was given past its filter call,
 * and so delay the chunk's acknowledgement (and the input's checkpoint)
 * until it lets go. The last release runs the acknowledgement, with
 * delivered = false when the chunk was abandoned, then frees it. */
void dr_chunk_retain(dr_chunk *c);
void dr_chunk_release(dr_chunk *c);
/* Marks a chunk as not delivered: its acknowledgement will say so, and its
 * input must not move its checkpoint past it (the records are read again
 * after a restart). For a holder that lets go of records it could not
 * deliver. */
void dr_chunk_abandon(dr_chunk *c);

/* ---- configuration schema -------------------------------------------------- */

typedef enum {
    DR_OPT_STRING,   /* char *, NULL when unset without default */
    DR_OPT_INT,      /* int64_t */
    DR_OPT_BOOL,     /* bool */
    DR_OPT_SIZE,     /* uint64_t bytes; "16KiB", "1MiB", "1GB", or a plain number */
    DR_OPT_DURATION, /* int64_t milliseconds; "500ms", "5s", "2m", "1h" */
    DR_OPT_STRLIST,  /* dr_strlist; a YAML list, or one string */
    DR_OPT_ENUM,     /* int: the index of the value in `choices` */
    DR_OPT_GROUP,    /* the options of `group`, filling the struct at `offset`
                        (keys prefixed with "name." unless name is "") */
    DR_OPT_NODE,     /* const struct dr_cfg_node *: the YAML value as it is, for
                        structures a table cannot say (Prometheus scrape_configs);
                        NULL when absent; no default; valid for the instance's
                        life (src/config.h reads it); `group` may name the
                        keys each entry takes, for --describe and the docs */
} dr_opt_type;

typedef struct dr_strlist {
    char **v;
    size_t n;
} dr_strlist;

enum {
    DR_OPT_REQUIRED = 1u << 0,
    /* Alternatives (ways to authenticate): of the options so flagged in one
     * table, only those under one top-level key may be set; two keys set
     * is a configuration error at the second one's position. */
    DR_OPT_ONE_OF = 1u << 1,
};

typedef struct dr_option {
    const char *name;
    dr_opt_type type;
    size_t offset;   /* offsetof(plugin config struct, field) */
    const char *def; /* default, written as in YAML; NULL = none */
    unsigned flags;  /* DR_OPT_* */
    union {
        const char *const *choices;    /* DR_OPT_ENUM: NULL-terminated */
        const struct dr_option *group; /* DR_OPT_GROUP (a designated initializer) */
    };
    int64_t min, max; /* DR_OPT_INT/SIZE/DURATION bounds when min < max */
    const char *help; /* one paragraph, used for --describe and the docs */
} dr_option;

/* ---- plugins ---------------------------------------------------------------- */

typedef enum { DR_INPUT = 0, DR_FILTER = 1, DR_OUTPUT = 2 } dr_plugin_kind;

/* How an output finished with a chunk. */
typedef enum {
    DR_DELIVERED = 0, /* written; counts as records out */
    DR_RETRY = 1,     /* failed for now; the core retries with backoff */
    DR_DROP = 2,      /* refused for good; counted as dropped with `reason` */
} dr_result;

typedef struct dr_flush dr_flush; /* one chunk being flushed by one output */

typedef struct dr_plugin {
    uint32_t abi; /* DR_PLUGIN_ABI */
    const char *name;
    dr_plugin_kind kind;
    const char *description;
    const dr_option *options; /* terminated by an entry with name == NULL */
    size_t conf_size;         /* size of the config struct the options fill */

    /* Checks the filled config beyond what the schema can say and allocates
     * the instance state. No I/O that could block, no timers yet. */
    int (*init)(dr_instance *inst, dr_error *err);
    /* Starts timers, watches and reading. */
    int (*start)(dr_instance *inst);
    /* Inputs: stop producing (backpressure) and start again. */
    void (*pause)(dr_instance *inst);
    void (*resume)(dr_instance *inst);
    /* Filters, optional: false while the filter cannot do its work yet
     * (the kubernetes filter before its first list of pods). The inputs
     * start once every filter is ready; a filter bounds that wait itself. */
    bool (*ready)(dr_instance *inst);
    /* Filters: edits records in place (may set DR_REC_DROPPED), and may
     * emit chunks of its own (dr_filter_emit). */
    void (*filter)(dr_instance *inst, dr_chunk *c);
    /* Outputs: deliver the chunks of one batch (dr_flush_chunk), then call
     * dr_output_done or one of its variants, now or later. A batch holds
     * one chunk unless the output asked for batching (dr_output_set_batch). */
    void (*flush)(dr_instance *inst, dr_flush *f);
    /* Stops producing (inputs) or finishes what is in flight (outputs).
     * An input must emit nothing after stop; it may still receive acks.
     * Filters, optional: emit what they hold back (dr_filter_emit) and
     * hold nothing from now on; called once the inputs have stopped at
     * shutdown, or, in oneshot mode, once every input has drained, and
     * always before the outputs stop. Their filter callback may still be
     * called afterwards. */
    void (*stop)(dr_instance *inst);
    /* Frees everything, or starts to: handles are closed with uv_close,
     * and their close callbacks may free the plugin's own memory, as the
     * core runs the loop after destroy until every handle is closed. What
     * belongs to the core must be let go before destroy returns (series
     * references, chunks, the configuration's strings): the core frees the
     * instances and the series table right after the destroys, before the
     * loop runs again. */
    void (*destroy)(dr_instance *inst);
    /* DR_DATA_* this plugin produces (inputs) or handles (filters and
     * outputs); 0 means logs. The core routes a chunk only to the filters
     * and outputs that handle its kind, whatever their `match` says. */
    uint32_t data;
} dr_plugin;

/* The chunks of a batch, oldest first. Chunks of one stream (one
 * container, one scrape target: dr_chunk.stream) keep their order, and a
 * stream never has chunks in two batches in flight at once, so an output
 * that sends batches in parallel never reorders a stream. */
size_t dr_flush_count(const dr_flush *f);
const dr_chunk *dr_flush_chunk(const dr_flush *f, size_t i);
/* How many times this batch's oldest chunk was tried before (0 at first). */
uint32_t dr_flush_attempts(const dr_flush *f);

/* The outcome of a flush. `reason` (for DR_DROP) is a short static string
 * used as a metric label, such as "too_large". */
void dr_output_done(dr_flush *f, dr_result res, const char *reason);
/* DR_RETRY after at least `delay_ms` (a backend's Retry-After), instead of
 * the core's own backoff when that is shorter. Capped at 10 minutes. */
void dr_output_retry_after(dr_flush *f, int64_t delay_ms);
/* Delivered, except `dropped` records that the output counted as dropped
 * itself (dr_count_drop, with its reasons): the rest count as records out. */
void dr_output_done_partial(dr_flush *f, uint64_t dropped);

/* Outputs that send many chunks per request call this from init: the core
 * then hands over batches of chunks up to `max_bytes` of payload, waiting
 * up to `max_wait_ms` after the oldest chunk arrived for a batch to fill
 * (no wait at the end of a oneshot run or at shutdown). `max_inflight`
 * then counts batches. While the output is failing, one batch at a time. */
void dr_output_set_batch(dr_instance *inst, uint64_t max_bytes, int64_t max_wait_ms);

/* ---- instances -------------------------------------------------------------- */

typedef struct dr_counter dr_counter;
typedef struct dr_gauge dr_gauge;
typedef struct dr_agent dr_agent;

struct dr_instance {
    const dr_plugin *plugin;
    char *name;
    void *conf;  /* the plugin's config struct, filled from its options */
    void *state; /* the plugin's own */
    uv_loop_t *loop;
    dr_agent *agent;
    bool oneshot;    /* read to the current end, then report dr_input_drained */
    bool restricted; /* made from rules a namespace owns (see the namespaces filter) */
    /* standard self-metrics, created by the core */
    dr_counter *records_in, *bytes_in, *records_out, *bytes_out;
};

/* Agent-wide settings a plugin may read. */
const char *dr_agent_data_dir(const dr_agent *a);
const char *dr_agent_node_name(const dr_agent *a);
/* The agent's series table (src/series.h), shared by every metrics plugin;
 * NULL when it cannot be made (out of memory). */
dr_series_table *dr_agent_series(dr_agent *a);

/* Inputs: true while every output fed by this input has room. An input
 * checks before each read and stops reading when it is false; the core
 * calls the input's resume callback once those queues have drained below
 * half. (The pause callback is for the core's own reasons: shutdown and
 * reload.) */
bool dr_input_may_emit(const dr_instance *input);
/* Oneshot: the input has read everything there was and emitted it all. */
void dr_input_drained(dr_instance *input);

/* The output with this name, or NULL. */
dr_instance *dr_agent_output(dr_agent *a, const char *name);
/* True when the output's configuration offers it to namespaces' rules
 * (offer_to_namespaces). */
bool dr_output_offered(const dr_instance *output);
/* How full the output's queue is: its queued bytes (waiting or in flight)
 * over its queue_max_bytes; 1 or more when inputs wait for it. */
double dr_output_queue_fill(const dr_instance *output);
/* A route filter says it may send to this output: the inputs then also
 * wait while that output's queue is full. */
void dr_agent_route_target(dr_agent *a, dr_instance *output);

/* Counts records dropped on purpose (drover_dropped_records_total). */
void dr_count_drop(dr_instance *inst, const char *reason, uint64_t n);

/* ---- self-metrics ------------------------------------------------------------ */

/* Series are labelled {plugin="<plugin name>",name="<instance name>"} plus
 * an optional extra label pair. Names must start with drover_. */
dr_counter *dr_counter_new(dr_instance *inst, const char *metric, const char *help,
                           const char *label, const char *label_value);
void dr_counter_add(dr_counter *c, uint64_t n);
uint64_t dr_counter_get(const dr_counter *c);
dr_gauge *dr_gauge_new(dr_instance *inst, const char *metric, const char *help, const char *label,
                       const char *label_value);
void dr_gauge_set(dr_gauge *g, double v);
void dr_gauge_add(dr_gauge *g, double v);

/* ---- agent log ---------------------------------------------------------------- */

typedef enum { DR_LOG_DEBUG = 0, DR_LOG_INFO, DR_LOG_WARN, DR_LOG_ERROR } dr_log_level;

/* logfmt on stderr: level, msg, then the instance's plugin and name, then
 * the caller's key=value pairs (kvfmt is printf-style, may be NULL).
 * The same msg from the same call site is rate-limited. */
void dr_log(const dr_instance *inst, dr_log_level lvl, const char *msg, const char *kvfmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- time ----------------------------------------------------------------------- */

int64_t dr_now_ns(void);  /* wall clock, Unix epoch */
int64_t dr_mono_ns(void); /* monotonic */

/* ---- utilities ------------------------------------------------------------------ */

/* A short text for a DR_E* code ("out of memory", "invalid argument", ...). */
const char *dr_strerror(int rc);
/* Formats a message into err->msg (err may be NULL). */
void dr_error_set(dr_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes all of data, retrying short writes and EINTR. 0 or -errno. */
int dr_write_all(int fd, const void *data, size_t n);
/* Creates the directories of path like mkdir -p (only its parents when
 * parents_only). 0 or -errno. */
int dr_mkdirs(const char *path, bool parents_only);
/* The value of a hexadecimal digit (either case), or -1. */
int dr_hex_value(char c);

#endif
