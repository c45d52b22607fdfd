/*
 * kafka output: records and samples into Apache Kafka, with librdkafka.
 *
 * At least once: a batch is done only when every one of its messages has
 * its delivery report, and with the defaults (acks all, idempotence,
 * delivery_timeout 0 = never give up) a report without an error means the
 * message is in every in-sync replica. librdkafka retries what can be
 * retried itself, keeping each partition's order (idempotence); what comes
 * back as an error is either permanent for the message (too large, an
 * unknown or invalid topic, not authorised: dropped and counted with the
 * reason) or the end of a try (delivery_timeout, shutdown, a fatal producer
 * error): the core then gives the whole batch again, and the messages of it
 * that were delivered are sent twice (counted in
 * drover_kafka_resent_records_total).
 *
 * Memory: librdkafka copies each message into its queue, which
 * buffer_max_bytes bounds. When it is full, producing stops in the middle
 * of a batch and goes on from there when delivery reports have made room;
 * meanwhile the output's queue fills and the inputs wait (the files are the
 * buffer). The core's batches are at most KAFKA_FLUSH_BYTES of payload and
 * max_inflight of them are in flight, so one output never holds much more
 * than its queue plus librdkafka's buffer.
 *
 * Events: librdkafka's delivery reports, statistics, errors and log lines
 * go to its main queue; the queue's callback (a librdkafka thread) wakes the
 * loop with uv_async_send, and the loop serves at most KAFKA_EVENTS_PER_WAKE
 * events at a time, waking itself again for the rest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_client.h"
#include "jsonp.h"
#include "kafka.h"
#include "oauth2.h"

/* Payload of one of the core's batches (dr_output_set_batch). */
#define KAFKA_FLUSH_BYTES ((uint64_t)4 << 20)
/* Events served per wake-up of the loop, so that a burst of reports does
 * not hold it for long. */
#define KAFKA_EVENTS_PER_WAKE 256
/* How long stop waits for librdkafka to hand back what it held. */
#define KAFKA_STOP_WAIT_MS 5000

static const char *const kafka_formats[] = {"ndjson", "raw", "msgpack", NULL};
static const char *const kafka_compressions[] = {"zstd", "snappy", "lz4", "gzip", "none", NULL};
static const char *const kafka_acks[] = {"all", "leader", "none", NULL};
static const char *const kafka_sasl[] = {"none",          "PLAIN",       "SCRAM-SHA-256",
                                         "SCRAM-SHA-512", "OAUTHBEARER", NULL};

#define OPT(n, t, f, d, h)                                                                         \
    {                                                                                              \
        n, t, offsetof(kafka_conf, f), d, 0, NULL, 0, 0, h                                         \
    }

static const dr_option kafka_options[] = {
    {"brokers", DR_OPT_STRLIST, offsetof(kafka_conf, brokers), NULL, DR_OPT_REQUIRED, NULL, 0, 0,
     "Bootstrap brokers, each host:port; the rest of the cluster is learned from them."},
    {"topic", DR_OPT_STRING, offsetof(kafka_conf, topic), NULL, DR_OPT_REQUIRED, NULL, 0, 0,
     "Topic of every message, or of the records without a topic_key value. Metric samples "
     "always go here."},
    OPT("topic_key", DR_OPT_STRING, topic_key, NULL,
        "A record key whose value is the record's topic, such as `kubernetes.namespace` for a "
        "topic per namespace (keys as in filters: message, stream, kubernetes.<name>, "
        "kubernetes.labels.<key>, or a field). A record without it, or with it empty, goes to "
        "`topic`; a value Kafka would refuse as a topic name (1 to 249 of a-z A-Z 0-9 . _ -) "
        "drops the record, counted with reason invalid_topic."),
    OPT("key", DR_OPT_STRING, key, NULL,
        "A record key whose value is the message key, such as `kubernetes.pod_uid`: one pod's "
        "lines then go to one partition, in order. Unset, or missing from a record: no key "
        "(the partitioner spreads such messages)."),
    {"headers", DR_OPT_STRLIST, offsetof(kafka_conf, headers), NULL, 0, NULL, 0, 0,
     "Message headers from record keys, each `name=key` or `key` (the header named as the "
     "key), such as `namespace=kubernetes.namespace`; at most 16. A record without the key "
     "gets no such header."},
    {"format", DR_OPT_ENUM, offsetof(kafka_conf, format), "ndjson", 0, kafka_formats, 0, 0,
     "The value of a record's message: `ndjson`, the JSON object the file output writes (without "
     "its newline); `raw`, the record's message bytes as they are; `msgpack`, the same record "
     "as one msgpack map (as the http output's msgpack). Metric samples are always remote-write "
     "1.0 WriteRequests."},
    {"compression", DR_OPT_ENUM, offsetof(kafka_conf, compression), "zstd", 0, kafka_compressions,
     0, 0, "Compression of the message batches (compression.codec)."},
    {"compression_level", DR_OPT_INT, offsetof(kafka_conf, compression_level), "1", 0, NULL, -1, 12,
     "Level of the compression (compression.level): 1, the fastest, by default (on a node "
     "the agent's CPU is the scarcer resource); -1 takes the codec's own default (gzip 6, lz4 "
     "0, zstd 3); higher is smaller and slower. "
     "Ignored for snappy and none."},
    {"acks", DR_OPT_ENUM, offsetof(kafka_conf, acks), "all", 0, kafka_acks, 0, 0,
     "Which replicas must have a message before its delivery counts: `all` in-sync replicas "
     "(acks=all; the topic's min.insync.replicas then decides how many), the `leader` alone "
     "(acks=1) or `none` (acks=0: nothing is confirmed and a broker failure loses messages). "
     "Anything but `all` needs idempotence: false."},
    {"idempotence", DR_OPT_BOOL, offsetof(kafka_conf, idempotence), "true", 0, NULL, 0, 0,
     "The idempotent producer (enable.idempotence): the brokers drop the copies that "
     "librdkafka's own retries make, and each partition keeps its order."},
    {"linger", DR_OPT_DURATION, offsetof(kafka_conf, linger_ms), "5ms", 0, NULL, 0, 900000,
     "Longest a message waits for its batch to fill before it is sent (linger.ms)."},
    {"batch_bytes", DR_OPT_SIZE, offsetof(kafka_conf, batch_bytes), "1MiB", 0, NULL, 1, 2147483647,
     "Largest message batch sent to a partition in one request, in bytes (batch.size)."},
    {"batch_messages", DR_OPT_INT, offsetof(kafka_conf, batch_messages), "10000", 0, NULL, 1,
     1000000, "Most messages in one batch (batch.num.messages)."},
    {"buffer_max_bytes", DR_OPT_SIZE, offsetof(kafka_conf, buffer_bytes), "16MiB", 0, NULL, 1 << 20,
     (int64_t)2147483647 * 1024,
     "Most bytes of messages librdkafka holds (queued, in flight, waiting to be retried; "
     "queue.buffering.max.kbytes). When full, the output stops producing until deliveries make "
     "room, and its queue and then the inputs wait. At least twice message_max_bytes."},
    {"delivery_timeout", DR_OPT_DURATION, offsetof(kafka_conf, delivery_timeout_ms), "0", 0, NULL,
     0, 2147483647,
     "How long librdkafka tries to deliver a message (message.timeout.ms); 0 tries until it is "
     "delivered, so an outage of the whole cluster holds the records (in the output's queue "
     "and in their files) rather than sending them twice. With a limit, a message that runs "
     "out of time makes its batch go again."},
    {"message_max_bytes", DR_OPT_SIZE, offsetof(kafka_conf, message_max_bytes), "1000000", 0, NULL,
     1000, 1000000000,
     "Largest message (message.max.bytes), checked before sending: a larger record is dropped, "
     "counted with reason too_large. Keep it at most the brokers' message.max.bytes (topic: "
     "max.message.bytes); a message the broker refuses as too large is dropped the same way."},
    {"metrics_samples_per_message", DR_OPT_INT, offsetof(kafka_conf, metrics_samples_per_message),
     "2000", 0, NULL, 1, 1000000,
     "Most metric samples in one WriteRequest message (as remote write's "
     "max_samples_per_send)."},
    {"statistics_interval", DR_OPT_DURATION, offsetof(kafka_conf, statistics_interval_ms), "15s", 0,
     NULL, 0, 86400000,
     "How often librdkafka's statistics update the drover_kafka_* self-metrics; 0: never."},
    OPT("client_id", DR_OPT_STRING, client_id, "drover",
        "The client id the brokers see (client.id), in their logs and quotas."),
    OPT("partitioner", DR_OPT_STRING, partitioner, "murmur2_random",
        "How a message's partition is chosen (librdkafka's partitioner). `murmur2_random`: by "
        "the murmur2 hash of the key, as the Java producer does (so keys land where Kafka "
        "Streams and Java producers put them), randomly without a key; also `consistent_random`, "
        "`consistent`, `murmur2`, `fnv1a`, `fnv1a_random`, `random`."),
    OPT("tls.enabled", DR_OPT_BOOL, tls_enabled, "false",
        "TLS to the brokers. Also on when tls.ca_file or tls.cert_file is set."),
    OPT("tls.ca_file", DR_OPT_STRING, tls_ca_file, NULL,
        "PEM file of the certificate authorities that verify the brokers; unset, the system's."),
    OPT("tls.cert_file", DR_OPT_STRING, tls_cert_file, NULL,
        "Client certificate (PEM) for mutual TLS; needs tls.key_file."),
    OPT("tls.key_file", DR_OPT_STRING, tls_key_file, NULL, "Private key (PEM) of tls.cert_file."),
    OPT("tls.key_password", DR_OPT_STRING, tls_key_password, NULL,
        "Password of an encrypted tls.key_file."),
    OPT("tls.insecure_skip_verify", DR_OPT_BOOL, tls_insecure_skip_verify, "false",
        "Do not verify the brokers' certificates or names at all. For tests only."),
    {"sasl.mechanism", DR_OPT_ENUM, offsetof(kafka_conf, sasl_mechanism), "none", 0, kafka_sasl, 0,
     0,
     "SASL authentication: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` with sasl.username and "
     "a password, or `OAUTHBEARER` with OpenID Connect client credentials "
     "(sasl.oauthbearer.*). Over TLS when TLS is on (sasl_ssl), else sasl_plaintext. SCRAM "
     "logins to Kafka 4 brokers need librdkafka 2.6.1 or newer (older ones repeat the client "
     "nonce, which Kafka 4 refuses as invalid credentials; drover warns at start)."},
    OPT("sasl.username", DR_OPT_STRING, sasl_username, NULL, "SASL user name."),
    OPT("sasl.password", DR_OPT_STRING, sasl_password, NULL, "SASL password."),
    OPT("sasl.password_file", DR_OPT_STRING, sasl_password_file, NULL,
        "File holding the SASL password (read at start)."),
    OPT("sasl.oauthbearer.token_url", DR_OPT_STRING, oauth_token_url, NULL,
        "OAUTHBEARER: the OAuth2 token endpoint. drover fetches tokens there with the client "
        "credentials grant (as the HTTP outputs' oauth2 does: the id and secret in HTTP Basic) "
        "and hands them to librdkafka, which asks for a new one at 80% of a token's life "
        "(expires_in; one hour when the endpoint gives none). Failed fetches are logged, "
        "counted in drover_oauth2_token_requests_total and retried with backoff."),
    OPT("sasl.oauthbearer.client_id", DR_OPT_STRING, oauth_client_id, NULL,
        "OAUTHBEARER: the client's id."),
    OPT("sasl.oauthbearer.client_secret", DR_OPT_STRING, oauth_client_secret, NULL,
        "OAUTHBEARER: the client's secret."),
    OPT("sasl.oauthbearer.client_secret_file", DR_OPT_STRING, oauth_client_secret_file, NULL,
        "OAUTHBEARER: file holding the client's secret (read again at each fetch when it "
        "changed)."),
    {"sasl.oauthbearer.scopes", DR_OPT_STRLIST, offsetof(kafka_conf, oauth_scopes), NULL, 0, NULL,
     0, 0, "OAUTHBEARER: scopes asked for; none: no scope parameter."},
    {"properties", DR_OPT_NODE, offsetof(kafka_conf, properties), NULL, 0, NULL, 0, 0,
     "Any other librdkafka property, a map of names to values, such as `{socket.keepalive.enable: "
     "true, queue.buffering.max.messages: 200000}`. The properties the options above set, and "
     "every ssl.* and sasl.* one, are refused here: bootstrap.servers, client.id, "
     "compression.codec, compression.level, acks, enable.idempotence, linger.ms, batch.size, "
     "batch.num.messages, "
     "queue.buffering.max.kbytes, message.timeout.ms, message.max.bytes, "
     "statistics.interval.ms, delivery.report.only.error, partitioner, security.protocol, "
     "log.queue (and their aliases)."},
    {0},
};

/* ---- batches -------------------------------------------------------------------- */

static void active_link(kafka_state *st, kafka_batch *b)
{
    b->next_active = st->active;
    if (st->active)
        st->active->prev_active = b;
    st->active = b;
}

static void active_unlink(kafka_state *st, kafka_batch *b)
{
    if (b->prev_active)
        b->prev_active->next_active = b->next_active;
    else
        st->active = b->next_active;
    if (b->next_active)
        b->next_active->prev_active = b->prev_active;
}

static void blocked_push(kafka_state *st, kafka_batch *b)
{
    if (b->blocked)
        return;
    b->blocked = true;
    b->next_blocked = NULL;
    kafka_batch **p = &st->blocked;
    while (*p)
        p = &(*p)->next_blocked;
    *p = b;
}

/* Ends the batch when everything is produced and reported. */
static void batch_maybe_done(kafka_batch *b)
{
    if (!b->produced || b->pending > 0)
        return;
    kafka_state *st = b->st;
    active_unlink(st, b);
    if (b->flush) {
        if (b->retry) {
            dr_counter_add(st->resent, b->delivered);
            dr_output_done(b->flush, DR_RETRY, NULL);
        } else if (b->dropped > 0) {
            dr_output_done_partial(b->flush, b->dropped);
        } else {
            dr_output_done(b->flush, DR_DELIVERED, NULL);
        }
    }
    free(b);
}

/* Produces what is left of the batch. Returns false when librdkafka's
 * queue is full (the batch is not done). */
static bool batch_produce_some(kafka_batch *b)
{
    int rc = kafka_produce_batch(b);
    if (rc == DR_EAGAIN)
        return false;
    if (rc < 0) {
        dr_log(b->st->inst, DR_LOG_ERROR, "cannot encode a message, will retry", "error=\"%s\"",
               dr_strerror(rc));
        b->retry = true;
        b->produced = true;
    }
    return true;
}

/* The batches that waited for room, oldest first, until one waits again. */
static void resume_blocked(kafka_state *st)
{
    while (st->blocked && st->rk) {
        kafka_batch *b = st->blocked;
        if (!batch_produce_some(b))
            return; /* still full: it stays first */
        st->blocked = b->next_blocked;
        b->blocked = false;
        batch_maybe_done(b);
    }
}

/* Ends every batch still producing (shutdown, fatal error): their messages
 * already handed over still get their reports. */
static void abandon_blocked(kafka_state *st)
{
    while (st->blocked) {
        kafka_batch *b = st->blocked;
        st->blocked = b->next_blocked;
        b->blocked = false;
        b->retry = true;
        b->produced = true;
        batch_maybe_done(b);
    }
}

/* ---- delivery reports -------------------------------------------------------------- */

/* The drop reason of an error that no retry can fix; NULL for the others. */
static const char *permanent_reason(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
        return "too_large";
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
        return "unknown_topic";
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
        return "invalid_topic";
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
        return "unauthorized";
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
        return "rejected";
    default:
        return NULL;
    }
}

static void message_done(kafka_state *st, const rd_kafka_message_t *rm)
{
    kafka_msg *m = rm->_private;
    if (!m)
        return;
    kafka_batch *b = m->batch;
    uint64_t records = m->records;
    if (m->owned)
        free(m);
    b->pending--;
    rd_kafka_resp_err_t err = rm->err;
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        b->delivered += records;
        dr_counter_add(st->messages_delivered, 1);
    } else {
        kafka_stats_count_error(st->stats, err);
        const char *reason = permanent_reason(err);
        const char *topic = rm->rkt ? rd_kafka_topic_name(rm->rkt) : "";
        if (reason) {
            dr_log(st->inst, DR_LOG_WARN, "message refused, dropped",
                   "topic=%s reason=%s error=\"%s\"", topic, reason, rd_kafka_err2str(err));
            kafka_batch_drop(b, reason, records);
        } else {
            if (!st->stopping)
                dr_log(st->inst, DR_LOG_WARN, "delivery failed, will retry",
                       "topic=%s error=\"%s\"", topic, rd_kafka_err2str(err));
            b->retry = true;
        }
    }
    batch_maybe_done(b);
}

/* ---- events ---------------------------------------------------------------------------- */

static void on_error_event(kafka_state *st, rd_kafka_event_t *ev)
{
    if (!rd_kafka_event_error_is_fatal(ev)) {
        dr_log(st->inst, DR_LOG_WARN, "kafka client error", "code=%s error=\"%s\"",
               rd_kafka_err2name(rd_kafka_event_error(ev)), rd_kafka_event_error_string(ev));
        return;
    }
    char why[512];
    rd_kafka_resp_err_t code = rd_kafka_fatal_error(st->rk, why, sizeof why);
    dr_log(st->inst, DR_LOG_ERROR, "kafka producer failed for good, starting a new one",
           "code=%s error=\"%s\"", rd_kafka_err2name(code), why);
    st->fatal = true;
}

static void on_log_event(kafka_state *st, rd_kafka_event_t *ev)
{
    const char *fac = "", *text = "";
    int level = 6;
    if (rd_kafka_event_log(ev, &fac, &text, &level) != 0)
        return;
    /* syslog levels */
    dr_log_level lvl = level <= 3   ? DR_LOG_ERROR
                       : level == 4 ? DR_LOG_WARN
                       : level <= 6 ? DR_LOG_INFO
                                    : DR_LOG_DEBUG;
    dr_log(st->inst, lvl, "librdkafka", "facility=%s text=\"%s\"", fac, text);
}

/* ---- OAUTHBEARER tokens -----------------------------------------------------------------------
 *
 * librdkafka asks for a token (an OAUTHBEARER_TOKEN_REFRESH event) when a
 * producer starts and again at 80% of the last token's lifetime. The token
 * comes from drover's OAuth2 client (src/oauth2.c), on the loop: a fresh
 * fetch for each ask, handed over when it arrives. Until then librdkafka
 * keeps the token it has (or, at the start, waits to connect).
 */

#define KAFKA_OAUTH_UNSAID_LIFE_MS (3600 * 1000) /* no expires_in: ask again within the hour */

static void oauth_hand_over(kafka_state *st)
{
    if (!st->rk || !st->oauth_wanted)
        return;
    const char *token = dr_oauth2_token(st->oauth);
    if (!token)
        return; /* on_oauth_ready comes back */
    int64_t life_ms = dr_oauth2_token_life_ms(st->oauth);
    if (life_ms < 0)
        life_ms = KAFKA_OAUTH_UNSAID_LIFE_MS;
    const kafka_conf *conf = st->inst->conf;
    char why[256];
    st->oauth_wanted = false;
    if (rd_kafka_oauthbearer_set_token(st->rk, token, dr_now_ns() / 1000000 + life_ms,
                                       conf->oauth_client_id, NULL, 0, why,
                                       sizeof why) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        dr_log(st->inst, DR_LOG_ERROR, "oauthbearer: the token was refused", "error=\"%s\"", why);
        rd_kafka_oauthbearer_set_token_failure(st->rk, why);
    }
}

static void on_oauth_ready(void *ctx)
{
    oauth_hand_over(ctx);
}

static void on_token_refresh(kafka_state *st)
{
    if (!st->oauth)
        return;
    st->oauth_wanted = true;
    dr_oauth2_renew(st->oauth);
}

/* The token source of an OAUTHBEARER output, from the sasl.oauthbearer.*
 * options (kafka_conf.c checked they are there). */
static int oauth_new(kafka_state *st, dr_error *err)
{
    const kafka_conf *conf = st->inst->conf;
    if (conf->sasl_mechanism != KAFKA_SASL_OAUTHBEARER)
        return 0;
    dr_oauth2_conf oc = {
        .client_id = conf->oauth_client_id,
        .client_secret = conf->oauth_client_secret,
        .client_secret_file = conf->oauth_client_secret_file,
        .token_url = conf->oauth_token_url,
        .scopes = conf->oauth_scopes,
    };
    dr_http_client_conf timeouts = {.timeout_ms = 0, .connect_timeout_ms = 0}; /* 30 s, 10 s */
    st->oauth = dr_oauth2_new(st->inst->loop, &oc, &timeouts, on_oauth_ready, st, err);
    return st->oauth ? 0 : DR_EINVAL;
}

static void handle_event(kafka_state *st, rd_kafka_event_t *ev)
{
    switch (rd_kafka_event_type(ev)) {
    case RD_KAFKA_EVENT_DR: {
        const rd_kafka_message_t *rm;
        while ((rm = rd_kafka_event_message_next(ev)))
            message_done(st, rm);
        break;
    }
    case RD_KAFKA_EVENT_STATS: {
        const char *json = rd_kafka_event_stats(ev);
        if (json)
            kafka_stats_update(st->stats, json, strlen(json));
        break;
    }
    case RD_KAFKA_EVENT_ERROR:
        on_error_event(st, ev);
        break;
    case RD_KAFKA_EVENT_LOG:
        on_log_event(st, ev);
        break;
    case RD_KAFKA_EVENT_OAUTHBEARER_TOKEN_REFRESH:
        on_token_refresh(st);
        break;
    default:
        break;
    }
}

/* Serves up to `max` events; true when the queue may hold more. */
static bool serve_queue(kafka_state *st, int max, int timeout_ms)
{
    for (int i = 0; i < max; i++) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(st->queue, i == 0 ? timeout_ms : 0);
        if (!ev)
            return false;
        handle_event(st, ev);
        rd_kafka_event_destroy(ev);
    }
    return true;
}

/* On a librdkafka thread: only wake the loop. */
static void on_queue_nonempty(rd_kafka_t *rk, void *opaque)
{
    (void)rk;
    uv_async_send(opaque);
}

static int producer_new(kafka_state *st, dr_error *err);
static void producer_free(kafka_state *st);

static void on_wake(uv_async_t *h)
{
    kafka_state *st = h->data;
    if (!st->queue)
        return;
    if (serve_queue(st, KAFKA_EVENTS_PER_WAKE, 0))
        uv_async_send(&st->wake);
    if (st->fatal) {
        /* a fatal producer hands every message back with an error; once
         * all are in, a new producer takes over */
        abandon_blocked(st);
        if (!st->active && !st->stopping) {
            dr_error err;
            producer_free(st);
            st->fatal = false;
            if (producer_new(st, &err) < 0)
                dr_log(st->inst, DR_LOG_ERROR, "cannot start a new kafka producer", "error=\"%s\"",
                       err.msg);
        }
        return;
    }
    resume_blocked(st);
}

/* ---- the producer -------------------------------------------------------------------------- */

static int producer_new(kafka_state *st, dr_error *err)
{
    rd_kafka_conf_t *kc = kafka_make_conf(st->inst, err);
    if (!kc)
        return DR_EINVAL;
    int events =
        RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_STATS | RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_LOG;
    if (st->oauth)
        events |= RD_KAFKA_EVENT_OAUTHBEARER_TOKEN_REFRESH;
    rd_kafka_conf_set_events(kc, events);
    char why[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, why, sizeof why);
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        dr_error_set(err, "cannot create the kafka producer: %s", why);
        return DR_EINVAL;
    }
    st->rk = rk;
    st->queue = rd_kafka_queue_get_main(rk);
    rd_kafka_set_log_queue(rk, NULL); /* librdkafka's log lines to the main queue */
    rd_kafka_queue_cb_event_enable(st->queue, on_queue_nonempty, &st->wake);
    return 0;
}

static void producer_free(kafka_state *st)
{
    for (size_t i = 0; i < st->ntopics; i++) {
        rd_kafka_topic_destroy(st->topics[i].rkt);
        free(st->topics[i].name);
    }
    st->ntopics = 0;
    st->last_topic = 0;
    if (st->queue) {
        rd_kafka_queue_cb_event_enable(st->queue, NULL, NULL);
        rd_kafka_queue_destroy(st->queue);
        st->queue = NULL;
    }
    if (st->rk) {
        rd_kafka_destroy(st->rk);
        st->rk = NULL;
    }
}

/* ---- configuration ----------------------------------------------------------------------------
 */

static int parse_headers(kafka_state *st, const kafka_conf *conf, dr_error *err)
{
    if (conf->headers.n > KAFKA_MAX_HEADERS) {
        dr_error_set(err, "headers: at most %d", KAFKA_MAX_HEADERS);
        return DR_EINVAL;
    }
    for (size_t i = 0; i < conf->headers.n; i++) {
        const char *h = conf->headers.v[i];
        const char *eq = strchr(h, '=');
        const char *key = eq ? eq + 1 : h;
        size_t name_len = eq ? (size_t)(eq - h) : strlen(h);
        if (name_len == 0 || key[0] == '\0') {
            dr_error_set(err, "headers: \"%s\": expected name=key or key", h);
            return DR_EINVAL;
        }
        kafka_header *kh = &st->headers[st->nheaders];
        kh->name = strndup(h, name_len);
        kh->key = strdup(key);
        st->nheaders++;
        if (!kh->name || !kh->key) {
            dr_error_set(err, "out of memory");
            return DR_ENOMEM;
        }
    }
    return 0;
}

static int check_conf(const kafka_conf *conf, dr_error *err)
{
    if (conf->brokers.n == 0) {
        dr_error_set(err, "brokers: at least one host:port");
        return DR_EINVAL;
    }
    if (!kafka_topic_name_valid(conf->topic, strlen(conf->topic))) {
        dr_error_set(err, "topic: \"%s\" is not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)",
                     conf->topic);
        return DR_EINVAL;
    }
    if (conf->sasl_mechanism == KAFKA_SASL_OAUTHBEARER &&
        (!conf->oauth_token_url || !conf->oauth_client_id ||
         (!conf->oauth_client_secret && !conf->oauth_client_secret_file))) {
        dr_error_set(err, "sasl.mechanism OAUTHBEARER needs sasl.oauthbearer.token_url, "
                          "sasl.oauthbearer.client_id and sasl.oauthbearer.client_secret (or "
                          "client_secret_file)");
        return DR_EINVAL;
    }
    if (conf->buffer_bytes < 2 * conf->message_max_bytes) {
        dr_error_set(err, "buffer_max_bytes: must be at least twice message_max_bytes");
        return DR_EINVAL;
    }
    return 0;
}

/* ---- life cycle ---------------------------------------------------------------------------------
 */

static void free_state(kafka_state *st)
{
    for (size_t i = 0; i < st->nheaders; i++) {
        free(st->headers[i].name);
        free(st->headers[i].key);
    }
    dr_buf_free(&st->meta);
    dr_buf_free(&st->scratch);
    dr_json_doc_free(st->json);
    dr_prw_writer_free(st->prw);
    kafka_stats_free(st->stats);
    /* batches whose reports never came (stop ran out of time) */
    while (st->active) {
        kafka_batch *b = st->active;
        st->active = b->next_active;
        free(b);
    }
    free(st);
}

static void on_wake_closed(uv_handle_t *h)
{
    free_state(h->data);
}

/* The producer is made here: librdkafka checks its whole configuration
 * (properties, certificate and key files) when it is created, so a wrong
 * setting is a configuration error, reported by --check-config and by a
 * refused reload. */
static int kafka_init(dr_instance *inst, dr_error *err)
{
    kafka_conf *conf = inst->conf;
    if (check_conf(conf, err) < 0)
        return DR_EINVAL;
    kafka_state *st = calloc(1, sizeof *st);
    if (!st) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    st->inst = inst;
    st->prw = dr_prw_writer_new();
    int rc = st->prw ? parse_headers(st, conf, err) : DR_ENOMEM;
    if (rc == 0)
        rc = uv_async_init(inst->loop, &st->wake, on_wake) == 0 ? 0 : DR_ERR;
    if (rc < 0) {
        if (rc == DR_ENOMEM || rc == DR_ERR)
            dr_error_set(err, "out of memory");
        free_state(st);
        return rc;
    }
    st->wake.data = st;
    inst->state = st;
    rc = oauth_new(st, err);
    if (rc == 0)
        rc = producer_new(st, err);
    if (rc < 0) {
        dr_oauth2_close(st->oauth);
        inst->state = NULL;
        uv_close((uv_handle_t *)&st->wake, on_wake_closed);
        return rc;
    }
    dr_output_set_batch(inst, KAFKA_FLUSH_BYTES, 0);
    return 0;
}

/* librdkafka before 2.6.1 repeats the client nonce in SCRAM's final
 * message; Kafka 4 brokers check it as RFC 5802 says and refuse every such
 * login as "invalid credentials" (Kafka 3 brokers take it). Said once at
 * start, as that error alone points at the password. */
#define KAFKA_SCRAM_FIXED_VERSION 0x020601ff

static void warn_old_scram(dr_instance *inst)
{
    const kafka_conf *conf = inst->conf;
    if ((conf->sasl_mechanism == KAFKA_SASL_SCRAM256 ||
         conf->sasl_mechanism == KAFKA_SASL_SCRAM512) &&
        rd_kafka_version() < KAFKA_SCRAM_FIXED_VERSION)
        dr_log(inst, DR_LOG_WARN,
               "this librdkafka cannot log in with SCRAM to Kafka 4 brokers (2.6.1 and newer can; "
               "Kafka 3 brokers are fine)",
               "librdkafka=%s", rd_kafka_version_str());
}

static int kafka_start(dr_instance *inst)
{
    kafka_state *st = inst->state;
    warn_old_scram(inst);
    st->stats = kafka_stats_new(inst);
    if (st->oauth)
        dr_oauth2_instrument(st->oauth, inst);
    st->invalid_utf8 =
        dr_counter_new(inst, "drover_output_invalid_utf8_records_total",
                       "Records whose invalid UTF-8 was replaced by U+FFFD.", NULL, NULL);
    st->messages_delivered = dr_counter_new(
        inst, "drover_kafka_delivered_messages_total",
        "Messages the Kafka cluster confirmed (their delivery reports).", NULL, NULL);
    st->resent = dr_counter_new(inst, "drover_kafka_resent_records_total",
                                "Records delivered in a batch that then went again (after a "
                                "delivery timeout or a fatal producer error): sent twice.",
                                NULL, NULL);
    uv_async_send(&st->wake); /* events from before start */
    return 0;
}

static void kafka_flush(dr_instance *inst, dr_flush *f)
{
    kafka_state *st = inst->state;
    if (!st->rk || st->fatal || st->stopping) {
        dr_output_done(f, DR_RETRY, NULL);
        return;
    }
    kafka_batch *b = calloc(1, sizeof *b);
    if (!b) {
        dr_output_done(f, DR_RETRY, NULL);
        return;
    }
    b->st = st;
    b->flush = f;
    b->one = (kafka_msg){.batch = b, .records = 1};
    active_link(st, b);
    /* behind the batches that wait, if any: they keep the order they came in */
    if (st->blocked || !batch_produce_some(b)) {
        blocked_push(st, b);
        return;
    }
    batch_maybe_done(b);
}

/* Hands back everything librdkafka holds: queued and in-flight messages are
 * purged and come back as failed reports, so their batches go back to the
 * core (their records stay in their sources). */
static void kafka_stop(dr_instance *inst)
{
    kafka_state *st = inst->state;
    if (!st || st->stopping)
        return;
    st->stopping = true;
    abandon_blocked(st);
    if (!st->rk)
        return;
    rd_kafka_purge(st->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    int64_t deadline = dr_mono_ns() + (int64_t)KAFKA_STOP_WAIT_MS * 1000000;
    while (st->active && dr_mono_ns() < deadline)
        serve_queue(st, KAFKA_EVENTS_PER_WAKE, 100);
    /* what is left never gets a report: its batches go back now */
    for (kafka_batch *b = st->active; b; b = b->next_active) {
        if (b->flush) {
            dr_output_done(b->flush, DR_RETRY, NULL);
            b->flush = NULL;
        }
    }
}

static void kafka_destroy(dr_instance *inst)
{
    kafka_state *st = inst->state;
    if (!st)
        return;
    kafka_stop(inst);
    producer_free(st);
    dr_oauth2_close(st->oauth); /* frees itself once its handles are closed */
    st->oauth = NULL;
    inst->state = NULL;
    uv_close((uv_handle_t *)&st->wake, on_wake_closed);
}

const dr_plugin dr_plugin_kafka = {
    .abi = DR_PLUGIN_ABI,
    .name = "kafka",
    .kind = DR_OUTPUT,
    .description =
        "Writes records and metric samples to Apache Kafka with librdkafka, at least once: a "
        "record counts as delivered (and its input may move its checkpoint past it) only when "
        "the cluster has confirmed its message, with acks=all and the idempotent producer by "
        "default.\n\n"
        "A log record is one message: on `topic` (or the topic a record key names, "
        "`topic_key`), keyed by `key`, with `headers` from record keys, its value the file "
        "output's JSON object (`format: ndjson`), the raw message or msgpack. Metric samples "
        "are remote-write 1.0 `prometheus.WriteRequest` protobuf messages, uncompressed (Kafka "
        "compresses the batches), of up to metrics_samples_per_message samples, on `topic`, "
        "keyed `<job>/<instance>` of their target so that a target's samples stay in order in "
        "one partition: the form Prometheus-to-Kafka adapters write and their consumers read "
        "(prompb.WriteRequest: repeated TimeSeries {labels, samples}).\n\n"
        "librdkafka retries failed sends itself, keeping each partition's order. A delivery "
        "that fails for good is dropped and counted in `drover_dropped_records_total` with "
        "reason `too_large` (over message_max_bytes, or the broker's limit), `unknown_topic` "
        "(it does not exist and the brokers do not create topics), `invalid_topic`, "
        "`unauthorized` or `rejected`; other failures (a delivery_timeout that ran out, a "
        "fatal producer error, after which a new producer starts) send the batch again. "
        "While librdkafka's buffer (buffer_max_bytes) is full the output stops taking records, "
        "and the inputs wait: a cluster outage is held in the files, not in memory.\n\n"
        "Self-metrics: `drover_kafka_delivered_messages_total`, "
        "`drover_kafka_resent_records_total`, `drover_kafka_errors_total{code}` (librdkafka's "
        "error names), and from librdkafka's statistics every statistics_interval: "
        "`drover_kafka_sent_messages_total`, `drover_kafka_sent_bytes_total`, "
        "`drover_kafka_queue_messages`, `drover_kafka_queue_bytes`, "
        "`drover_kafka_inflight_messages`, `drover_kafka_retries_total`, "
        "`drover_kafka_broker_up{broker}` and `drover_kafka_broker_rtt_seconds{broker}` (the "
        "broker's node id). librdkafka's own log lines are logged with msg=librdkafka.",
    .options = kafka_options,
    .conf_size = sizeof(kafka_conf),
    .init = kafka_init,
    .start = kafka_start,
    .flush = kafka_flush,
    .stop = kafka_stop,
    .destroy = kafka_destroy,
    .data = DR_DATA_LOGS | DR_DATA_METRICS,
};
