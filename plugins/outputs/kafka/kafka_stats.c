/*
 * The kafka output's self-metrics from librdkafka's statistics (the JSON
 * document it emits every statistics_interval), a bounded set:
 *
 *   drover_kafka_sent_messages_total, drover_kafka_sent_bytes_total
 *       messages and their bytes sent to brokers (txmsgs, txmsg_bytes)
 *   drover_kafka_queue_messages, drover_kafka_queue_bytes
 *       waiting in the producer's queues, in flight included (msg_cnt, msg_size)
 *   drover_kafka_inflight_messages
 *       sent and waiting for the broker's answer (the brokers' waitresp_msg_cnt)
 *   drover_kafka_retries_total
 *       requests sent again (the brokers' txretries)
 *   drover_kafka_broker_up{broker}, drover_kafka_broker_rtt_seconds{broker}
 *       per broker (its node id): 1 while its state is UP, and the mean round
 *       trip of its requests over the last interval
 *   drover_kafka_errors_total{code}
 *       failed deliveries and refused messages by librdkafka's error name
 *
 * librdkafka's counters are totals since the producer started; they are
 * added to drover's counters as differences, so a new producer (after a
 * fatal error) does not make them go back. Brokers and error codes are
 * bounded: past KAFKA_STATS_BROKERS brokers or KAFKA_STATS_CODES codes the
 * rest are left out (brokers) or counted as "other" (codes).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonp.h"
#include "kafka.h"

#define KAFKA_STATS_BROKERS 32
#define KAFKA_STATS_CODES 32
/* A statistics document larger than this is not read (a few KiB per broker and partition). */
#define KAFKA_STATS_MAX_BYTES ((size_t)4 << 20)

typedef struct broker_stats {
    int64_t id;
    int64_t txretries; /* last total seen */
    dr_gauge *up, *rtt;
} broker_stats;

typedef struct kafka_stats {
    dr_instance *inst;
    dr_json_doc *doc;
    int64_t txmsgs, txmsg_bytes; /* last totals seen */
    dr_counter *sent_messages, *sent_bytes, *retries;
    dr_gauge *queue_messages, *queue_bytes, *inflight;
    broker_stats brokers[KAFKA_STATS_BROKERS];
    size_t nbrokers;
    struct {
        rd_kafka_resp_err_t code;
        dr_counter *counter;
    } codes[KAFKA_STATS_CODES];
    size_t ncodes;
    dr_counter *other_codes;
    dr_counter *unreadable;
} kafka_stats;

kafka_stats *kafka_stats_new(dr_instance *inst)
{
    kafka_stats *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->inst = inst;
    s->sent_messages = dr_counter_new(inst, "drover_kafka_sent_messages_total",
                                      "Messages sent to the Kafka brokers.", NULL, NULL);
    s->sent_bytes = dr_counter_new(inst, "drover_kafka_sent_bytes_total",
                                   "Bytes of the messages sent to the Kafka brokers.", NULL, NULL);
    s->retries = dr_counter_new(inst, "drover_kafka_retries_total",
                                "Produce requests sent again to a broker.", NULL, NULL);
    s->queue_messages =
        dr_gauge_new(inst, "drover_kafka_queue_messages",
                     "Messages in the producer's queues, waiting or in flight.", NULL, NULL);
    s->queue_bytes = dr_gauge_new(inst, "drover_kafka_queue_bytes",
                                  "Bytes of the messages in the producer's queues.", NULL, NULL);
    s->inflight = dr_gauge_new(inst, "drover_kafka_inflight_messages",
                               "Messages sent and waiting for the broker's answer.", NULL, NULL);
    s->unreadable = dr_counter_new(inst, "drover_kafka_statistics_errors_total",
                                   "librdkafka statistics that could not be read.", NULL, NULL);
    return s;
}

void kafka_stats_free(kafka_stats *s)
{
    if (!s)
        return;
    dr_json_doc_free(s->doc);
    free(s);
}

void kafka_stats_count_error(kafka_stats *s, rd_kafka_resp_err_t err)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->ncodes; i++) {
        if (s->codes[i].code == err) {
            dr_counter_add(s->codes[i].counter, 1);
            return;
        }
    }
    static const char help[] = "Failed Kafka deliveries and refused messages, by error.";
    if (s->ncodes == KAFKA_STATS_CODES) {
        if (!s->other_codes)
            s->other_codes =
                dr_counter_new(s->inst, "drover_kafka_errors_total", help, "code", "other");
        dr_counter_add(s->other_codes, 1);
        return;
    }
    dr_counter *c =
        dr_counter_new(s->inst, "drover_kafka_errors_total", help, "code", rd_kafka_err2name(err));
    s->codes[s->ncodes].code = err;
    s->codes[s->ncodes].counter = c;
    s->ncodes++;
    dr_counter_add(c, 1);
}

/* Adds the growth of a librdkafka total to a counter; a total that went
 * back (a new producer) counts from zero. */
static void add_growth(dr_counter *c, int64_t *last, const dr_jv *v)
{
    int64_t now;
    if (!dr_jv_int(v, &now) || now < 0)
        return;
    dr_counter_add(c, (uint64_t)(now >= *last ? now - *last : now));
    *last = now;
}

static void set_gauge(dr_gauge *g, const dr_jv *v)
{
    double d;
    if (dr_jv_double(v, &d))
        dr_gauge_set(g, d);
}

static broker_stats *broker_slot(kafka_stats *s, int64_t id)
{
    for (size_t i = 0; i < s->nbrokers; i++)
        if (s->brokers[i].id == id)
            return &s->brokers[i];
    if (s->nbrokers == KAFKA_STATS_BROKERS)
        return NULL;
    broker_stats *b = &s->brokers[s->nbrokers++];
    char label[24];
    snprintf(label, sizeof label, "%lld", (long long)id);
    b->id = id;
    b->up = dr_gauge_new(s->inst, "drover_kafka_broker_up",
                         "1 while the connection to the broker is up, else 0.", "broker", label);
    b->rtt = dr_gauge_new(s->inst, "drover_kafka_broker_rtt_seconds",
                          "Mean round trip of the requests to the broker over the last "
                          "statistics interval.",
                          "broker", label);
    return b;
}

/* One broker of the statistics; the bootstrap entries (node id -1) are
 * not brokers of the cluster and are left out. Returns its in-flight count. */
static int64_t read_broker(kafka_stats *s, const dr_jv *b)
{
    int64_t id, inflight = 0;
    if (!dr_jv_int(dr_jv_get(b, "nodeid"), &id) || id < 0)
        return 0;
    broker_stats *bs = broker_slot(s, id);
    if (!bs)
        return 0;
    const char *state = dr_jv_str_or(dr_jv_get(b, "state"), "");
    dr_gauge_set(bs->up, strcmp(state, "UP") == 0 ? 1 : 0);
    double rtt_us;
    if (dr_jv_double(dr_jv_path(b, "rtt", "avg", NULL), &rtt_us))
        dr_gauge_set(bs->rtt, rtt_us / 1e6);
    add_growth(s->retries, &bs->txretries, dr_jv_get(b, "txretries"));
    dr_jv_int(dr_jv_get(b, "waitresp_msg_cnt"), &inflight);
    return inflight;
}

void kafka_stats_update(kafka_stats *s, const char *json, size_t len)
{
    if (!s)
        return;
    if (!s->doc)
        s->doc = dr_json_doc_new();
    const dr_jv *root = NULL;
    dr_error err;
    if (!s->doc || len > KAFKA_STATS_MAX_BYTES ||
        dr_json_parse(s->doc, json, len, NULL, &root, &err) < 0 || root->type != DR_JV_OBJECT) {
        dr_counter_add(s->unreadable, 1);
        return;
    }
    add_growth(s->sent_messages, &s->txmsgs, dr_jv_get(root, "txmsgs"));
    add_growth(s->sent_bytes, &s->txmsg_bytes, dr_jv_get(root, "txmsg_bytes"));
    set_gauge(s->queue_messages, dr_jv_get(root, "msg_cnt"));
    set_gauge(s->queue_bytes, dr_jv_get(root, "msg_size"));
    int64_t inflight = 0;
    const dr_jv *brokers = dr_jv_get(root, "brokers");
    if (brokers && brokers->type == DR_JV_OBJECT)
        for (const dr_jv *b = brokers->child; b; b = b->next)
            inflight += read_broker(s, b);
    dr_gauge_set(s->inflight, (double)inflight);
    dr_json_doc_trim(s->doc);
}
