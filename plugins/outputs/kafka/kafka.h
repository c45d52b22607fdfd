/*
 * The kafka output's parts, shared by its files:
 *
 *   kafka.c          options, the producer's life, flushes and delivery reports
 *   kafka_conf.c     the librdkafka configuration made from the options
 *   kafka_message.c  what a record or a run of samples becomes: topic, key,
 *                    headers and value
 *   kafka_stats.c    librdkafka's statistics as self-metrics
 *
 * librdkafka runs threads of its own; drover talks to it from the loop
 * thread only. Delivery reports, statistics, errors and librdkafka's log
 * lines arrive as events on the producer's main queue, whose callback (on a
 * librdkafka thread) only wakes the loop through a uv_async_t; the loop then
 * serves the queue.
 */
#ifndef DROVER_KAFKA_H
#define DROVER_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "drover/plugin.h"
#include "prw.h"

/* In the order of the `format` choices. */
typedef enum { KAFKA_FMT_NDJSON = 0, KAFKA_FMT_RAW = 1, KAFKA_FMT_MSGPACK = 2 } kafka_format;

/* Most headers a message gets from record fields. */
#define KAFKA_MAX_HEADERS 16

typedef struct kafka_conf {
    dr_strlist brokers;
    char *topic;
    char *topic_key;
    char *key;
    dr_strlist headers;
    int format;
    int compression;
    int64_t compression_level;
    int acks;
    bool idempotence;
    int64_t linger_ms;
    uint64_t batch_bytes;
    int64_t batch_messages;
    uint64_t buffer_bytes;
    int64_t delivery_timeout_ms;
    uint64_t message_max_bytes;
    int64_t metrics_samples_per_message;
    int64_t statistics_interval_ms;
    char *client_id;
    char *partitioner;
    /* TLS */
    bool tls_enabled;
    char *tls_ca_file;
    char *tls_cert_file;
    char *tls_key_file;
    char *tls_key_password;
    bool tls_insecure_skip_verify;
    /* SASL */
    int sasl_mechanism;
    char *sasl_username;
    char *sasl_password;
    char *sasl_password_file;
    char *oauth_token_url;
    char *oauth_client_id;
    char *oauth_client_secret;
    char *oauth_client_secret_file;
    dr_strlist oauth_scopes;
    const struct dr_cfg_node *properties;
    uint64_t batch_max_bytes; /* of the core's batches */
} kafka_conf;

/* In the order of the `sasl.mechanism` choices. */
enum {
    KAFKA_SASL_NONE = 0,
    KAFKA_SASL_PLAIN,
    KAFKA_SASL_SCRAM256,
    KAFKA_SASL_SCRAM512,
    KAFKA_SASL_OAUTHBEARER
};

/* A header taken from a record key. */
typedef struct kafka_header {
    char *name;
    char *key;
} kafka_header;

/* A topic handle, kept for the topics the records name (bounded). */
#define KAFKA_TOPIC_CACHE 256

typedef struct kafka_topic {
    char *name;
    size_t len;
    rd_kafka_topic_t *rkt;
} kafka_topic;

typedef struct kafka_batch kafka_batch;

/* What a delivery report refers to (the message's opaque): its batch and
 * how many records it carries. A log record's message points at the
 * batch's `one`; a message of samples owns one of its own (freed with its
 * report). */
typedef struct kafka_msg {
    kafka_batch *batch;
    uint64_t records;
    bool owned;
} kafka_msg;

typedef struct kafka_state {
    dr_instance *inst;
    rd_kafka_t *rk;          /* NULL once stopped */
    rd_kafka_queue_t *queue; /* the main queue, where the events arrive */
    uv_async_t wake;
    bool stopping;
    bool fatal; /* the producer reported a fatal error: no more produce */
    kafka_header headers[KAFKA_MAX_HEADERS];
    size_t nheaders;
    kafka_topic topics[KAFKA_TOPIC_CACHE];
    size_t ntopics;
    size_t last_topic;
    kafka_batch *blocked;     /* batches waiting for room in librdkafka's queue */
    kafka_batch *active;      /* every batch not yet done */
    dr_buf meta;              /* the kubernetes part of the chunk being produced */
    dr_buf scratch;           /* a record being encoded */
    struct dr_json_doc *json; /* msgpack's JSON fields */
    dr_prw_writer *prw;
    /* self-metrics */
    dr_counter *invalid_utf8;
    dr_counter *messages_delivered;
    dr_counter *resent;
    struct kafka_stats *stats;
    /* OAUTHBEARER: the token source, and whether librdkafka waits for a token */
    struct dr_oauth2 *oauth;
    bool oauth_wanted;
} kafka_state;

/* One flush on its way: its messages are produced (maybe in several goes,
 * while librdkafka's queue is full) and it is done when the last delivery
 * report is in. */
struct kafka_batch {
    kafka_batch *next_blocked;
    kafka_batch *next_active, *prev_active;
    kafka_state *st;
    dr_flush *flush;
    kafka_msg one;      /* the opaque of its log records' messages */
    size_t chunk;       /* where producing goes on: chunk index */
    size_t item;        /* record or sample index in it */
    bool meta_ready;    /* st->meta holds this chunk's part */
    bool produced;      /* every message was handed to librdkafka */
    uint64_t pending;   /* messages with no delivery report yet */
    uint64_t delivered; /* records delivered */
    uint64_t dropped;   /* records dropped (counted with their reasons) */
    bool retry;         /* a message failed for now: the core sends the batch again */
    bool blocked;       /* on st->blocked */
};

/* kafka_conf.c: a librdkafka configuration from the options, or NULL with
 * err set. */
rd_kafka_conf_t *kafka_make_conf(dr_instance *inst, dr_error *err);
/* The librdkafka properties drover sets itself (refused in `properties`). */
bool kafka_property_is_ours(const char *name);

/* kafka_message.c: produces the messages of the batch from where it
 * stopped. Returns 0 when all are handed over, DR_EAGAIN when librdkafka's
 * queue is full (call again after delivery reports), or DR_ENOMEM. */
int kafka_produce_batch(kafka_batch *b);
/* A drop of n records for this reason (a metric label) in the batch. */
void kafka_batch_drop(kafka_batch *b, const char *reason, uint64_t n);

/* Kafka's rule for topic names: 1 to 249 of [a-zA-Z0-9._-], not "." or "..". */
bool kafka_topic_name_valid(const char *s, size_t n);

/* kafka_stats.c */
struct kafka_stats *kafka_stats_new(dr_instance *inst);
void kafka_stats_update(struct kafka_stats *s, const char *json, size_t len);
void kafka_stats_count_error(struct kafka_stats *s, rd_kafka_resp_err_t err);
void kafka_stats_free(struct kafka_stats *s);

#endif
