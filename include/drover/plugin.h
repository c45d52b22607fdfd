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

#define DR_PLUGIN_ABI 1

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

/* A small key/value pair added by parsers. Both strings live in the chunk. */
typedef struct dr_field {
    const char *key;
    const char *val;
    uint32_t key_len;
    uint32_t val_len;
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

typedef enum { DR_CHUNK_LOGS = 0 } dr_chunk_kind;

typedef struct dr_chunk dr_chunk;
typedef struct dr_instance dr_instance;

/* Called once when every output has finished with a chunk. `delivered` is
 * false only when the chunk was abandoned (shutdown before delivery): the
 * input must then not advance past it. Dropped-on-purpose counts as done. */
typedef void (*dr_ack_fn)(void *ctx, uint64_t token, bool delivered);

struct dr_chunk {
    dr_chunk_kind kind;
    uint32_t refs;
    dr_instance *input;
    dr_meta *meta; /* one reference held by the chunk, may be NULL */
    dr_record *recs;
    uint32_t nrecs;
    uint32_t cap;
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
/* Memory that lives as long as the chunk (8-byte aligned). */
void *dr_chunk_alloc(dr_chunk *c, size_t n);
/* Adopts a malloc'd buffer so it is freed with the chunk. */
void dr_chunk_adopt(dr_chunk *c, void *buf, size_t size);
/* Appends an empty record and returns it (NULL on allocation failure). */
dr_record *dr_chunk_add(dr_chunk *c);
void dr_chunk_set_meta(dr_chunk *c, dr_meta *m);
void dr_chunk_set_ack(dr_chunk *c, dr_ack_fn fn, void *ctx, uint64_t token);
/* Hands the chunk to the router. Ownership passes to the core. */
void dr_input_emit(dr_instance *input, dr_chunk *c);
/* Frees a chunk that was never emitted. */
void dr_chunk_discard(dr_chunk *c);

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
} dr_opt_type;

typedef struct dr_strlist {
    char **v;
    size_t n;
} dr_strlist;

enum {
    DR_OPT_REQUIRED = 1u << 0,
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
    /* Filters: edits records in place (may set DR_REC_DROPPED). */
    void (*filter)(dr_instance *inst, dr_chunk *c);
    /* Outputs: deliver the chunks of one batch (dr_flush_chunk), then call
     * dr_output_done or one of its variants, now or later. A batch holds
     * one chunk unless the output asked for batching (dr_output_set_batch). */
    void (*flush)(dr_instance *inst, dr_flush *f);
    /* Stops producing (inputs) or finishes what is in flight (outputs).
     * An input must emit nothing after stop; it may still receive acks. */
    void (*stop)(dr_instance *inst);
    /* Frees everything; timers and handles must be closed before it
     * returns (the core runs the loop until they are). */
    void (*destroy)(dr_instance *inst);
} dr_plugin;

/* The chunks of a batch, oldest first. Chunks of one source (one
 * container) keep their order, and a source never has chunks in two
 * batches in flight at once, so an output that sends batches in parallel
 * never reorders a stream. */
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
    bool oneshot; /* read to the current end, then report dr_input_drained */
    /* standard self-metrics, created by the core */
    dr_counter *records_in, *bytes_in, *records_out, *bytes_out;
};

/* Agent-wide settings a plugin may read. */
const char *dr_agent_data_dir(const dr_agent *a);
const char *dr_agent_node_name(const dr_agent *a);

/* Inputs: true while every output fed by this input has room. An input
 * checks before each read and stops reading when it is false; the core
 * calls the input's resume callback once those queues have drained below
 * half. (The pause callback is for the core's own reasons: shutdown and
 * reload.) */
bool dr_input_may_emit(const dr_instance *input);
/* Oneshot: the input has read everything there was and emitted it all. */
void dr_input_drained(dr_instance *input);

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

/* Formats a message into err->msg (err may be NULL). */
void dr_error_set(dr_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes all of data, retrying short writes and EINTR. 0 or -errno. */
int dr_write_all(int fd, const void *data, size_t n);
/* Creates the directories of path like mkdir -p (only its parents when
 * parents_only). 0 or -errno. */
int dr_mkdirs(const char *path, bool parents_only);

#endif
