/*
 * What the kafka output sends: one message per log record, and one per run
 * of up to metrics_samples_per_message samples of a metric chunk.
 *
 * A record's message: the topic (`topic`, or the value of `topic_key` when
 * the record has it), the key (`key`'s value, none when missing), a header
 * per `headers` entry the record has, and the value in `format`. A run of
 * samples: a remote-write 1.0 WriteRequest (uncompressed protobuf: Kafka
 * compresses the batches), on `topic`, keyed by the first sample's job and
 * instance ("job/instance") so that one target's samples stay in one
 * partition, in order.
 *
 * Producing stops when librdkafka's queue (buffer_max_bytes) is full and
 * goes on from the same record once delivery reports have made room; the
 * batch remembers where it stopped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../msgpack.h"
#include "../ndjson.h"
#include "jsonp.h"
#include "kafka.h"
#include "series.h"

/* Kafka's rule for topic names: 1 to 249 of [a-zA-Z0-9._-], not "." or "..". */
bool kafka_topic_name_valid(const char *s, size_t n)
{
    if (n == 0 || n > 249 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* The handle of a topic, from the cache (the last one used first: the
 * records of a chunk usually share it). NULL when the cache is full or out
 * of memory: the caller then names the topic for librdkafka to look up. */
static rd_kafka_topic_t *topic_handle(kafka_state *st, const char *name, size_t n)
{
    if (st->ntopics > 0) {
        kafka_topic *t = &st->topics[st->last_topic];
        if (t->len == n && memcmp(t->name, name, n) == 0)
            return t->rkt;
    }
    for (size_t i = 0; i < st->ntopics; i++) {
        kafka_topic *t = &st->topics[i];
        if (t->len == n && memcmp(t->name, name, n) == 0) {
            st->last_topic = i;
            return t->rkt;
        }
    }
    if (st->ntopics == KAFKA_TOPIC_CACHE)
        return NULL;
    char *copy = strndup(name, n);
    if (!copy)
        return NULL;
    /* topic settings come from the default topic configuration (kafka_conf.c) */
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(st->rk, copy, NULL);
    if (!rkt) {
        free(copy);
        return NULL;
    }
    st->topics[st->ntopics] = (kafka_topic){.name = copy, .len = n, .rkt = rkt};
    st->last_topic = st->ntopics++;
    return rkt;
}

void kafka_batch_drop(kafka_batch *b, const char *reason, uint64_t n)
{
    dr_count_drop(b->st->inst, reason, n);
    b->dropped += n;
}

/* The message's topic: a cached handle or, past the cache, its name. */
typedef struct topic_ref {
    rd_kafka_topic_t *rkt;
    char name[256];
} topic_ref;

/* The record's topic. False (and the record counted as dropped) when the
 * record names one Kafka would refuse. */
static bool record_topic(kafka_batch *b, const dr_chunk *c, const dr_record *r, topic_ref *t)
{
    kafka_state *st = b->st;
    kafka_conf *conf = st->inst->conf;
    const char *name = conf->topic;
    size_t n = strlen(name);
    dr_value v;
    char tbuf[40];
    if (conf->topic_key &&
        dr_record_get(c, r, conf->topic_key, strlen(conf->topic_key), &v, tbuf) && v.len > 0) {
        if (!kafka_topic_name_valid(v.p, v.len)) {
            dr_log(st->inst, DR_LOG_WARN, "record names an invalid topic, dropped",
                   "topic_key=%s value=\"%.*s\"", conf->topic_key, v.len > 64 ? 64 : (int)v.len,
                   v.p);
            kafka_batch_drop(b, "invalid_topic", 1);
            return false;
        }
        name = v.p;
        n = v.len;
    }
    t->rkt = topic_handle(st, name, n);
    if (!t->rkt) { /* past the cache: librdkafka looks the name up */
        memcpy(t->name, name, n);
        t->name[n] = '\0';
    }
    return true;
}

/* Encodes the record's value into st->scratch, or points *val at the
 * message itself (raw). 0 or a negative DR_E* code. */
static int record_value(kafka_state *st, const dr_record *r, const char **val, size_t *len)
{
    kafka_conf *conf = st->inst->conf;
    long bad = 0;
    dr_buf_reset(&st->scratch);
    switch ((kafka_format)conf->format) {
    case KAFKA_FMT_RAW:
        *val = r->msg;
        *len = r->msg_len;
        return 0;
    case KAFKA_FMT_NDJSON:
        bad = dr_ndjson_encode_record(r, &st->meta, &st->scratch);
        if (bad >= 0 && st->scratch.len > 0)
            st->scratch.len--; /* a message is one record: no newline */
        break;
    case KAFKA_FMT_MSGPACK:
        bad = dr_msgpack_encode_record(r, &st->meta, &st->scratch, &st->json);
        break;
    }
    if (bad < 0)
        return (int)bad;
    if (bad > 0)
        dr_counter_add(st->invalid_utf8, 1);
    *val = st->scratch.p;
    *len = st->scratch.len;
    return 0;
}

/* Hands one message to librdkafka. Returns 0 (handed over, or refused for
 * good and counted as dropped), DR_EAGAIN (queue full) or DR_ENOMEM. */
static int produce(kafka_batch *b, const topic_ref *t, const void *key, size_t key_len,
                   const void *val, size_t len, rd_kafka_vu_t *hdrs, size_t nhdrs, kafka_msg *m)
{
    kafka_state *st = b->st;
    rd_kafka_vu_t vu[4 + KAFKA_MAX_HEADERS];
    size_t n = 0;
    if (t->rkt) {
        vu[n].vtype = RD_KAFKA_VTYPE_RKT;
        vu[n++].u.rkt = t->rkt;
    } else {
        vu[n].vtype = RD_KAFKA_VTYPE_TOPIC;
        vu[n++].u.cstr = t->name;
    }
    vu[n].vtype = RD_KAFKA_VTYPE_VALUE;
    vu[n].u.mem.ptr = (void *)val;
    vu[n++].u.mem.size = len;
    if (key) {
        vu[n].vtype = RD_KAFKA_VTYPE_KEY;
        vu[n].u.mem.ptr = (void *)key;
        vu[n++].u.mem.size = key_len;
    }
    vu[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vu[n++].u.i = RD_KAFKA_MSG_F_COPY;
    if (nhdrs > 0) {
        memcpy(vu + n, hdrs, nhdrs * sizeof *hdrs);
        n += nhdrs;
    }
    vu[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
    vu[n++].u.ptr = m;

    rd_kafka_error_t *e = rd_kafka_produceva(st->rk, vu, n);
    if (!e) {
        b->pending++;
        return 0;
    }
    rd_kafka_resp_err_t code = rd_kafka_error_code(e);
    if (code == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_error_destroy(e);
        return DR_EAGAIN;
    }
    /* Refused before it was queued: too large for message_max_bytes, a
     * topic or partition known not to exist, a fatal producer state. */
    const char *reason = code == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ? "too_large"
                         : code == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC   ? "unknown_topic"
                                                                      : NULL;
    kafka_stats_count_error(st->stats, code);
    if (!reason) {
        /* a state of the producer, not of the message: try the batch again */
        dr_log(st->inst, DR_LOG_WARN, "cannot produce, will retry", "error=\"%s\"",
               rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        b->retry = true;
        return 0;
    }
    dr_log(st->inst, DR_LOG_WARN, "message refused, dropped", "topic=%s reason=%s error=\"%s\"",
           t->rkt ? rd_kafka_topic_name(t->rkt) : t->name, reason, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    kafka_batch_drop(b, reason, m->records);
    if (m->owned)
        free(m);
    return 0;
}

/* The headers of a record from the `headers` entries it has. A "time"
 * value is formatted into the header's own tbufs entry. */
static size_t record_headers(kafka_state *st, const dr_chunk *c, const dr_record *r,
                             rd_kafka_vu_t *hdrs, char (*tbufs)[40])
{
    size_t n = 0;
    for (size_t i = 0; i < st->nheaders; i++) {
        dr_value v;
        const kafka_header *h = &st->headers[i];
        if (!dr_record_get(c, r, h->key, strlen(h->key), &v, tbufs[i]))
            continue;
        hdrs[n].vtype = RD_KAFKA_VTYPE_HEADER;
        hdrs[n].u.header.name = h->name;
        hdrs[n].u.header.val = v.p;
        hdrs[n].u.header.size = (ssize_t)v.len;
        n++;
    }
    return n;
}

static int produce_records(kafka_batch *b, const dr_chunk *c)
{
    kafka_state *st = b->st;
    kafka_conf *conf = st->inst->conf;
    if (!b->meta_ready) {
        dr_buf_reset(&st->meta);
        if (conf->format == KAFKA_FMT_MSGPACK && dr_msgpack_encode_meta(c, &st->meta) < 0)
            return DR_ENOMEM;
        if (conf->format == KAFKA_FMT_NDJSON)
            dr_ndjson_encode_meta(c, &st->meta);
        b->meta_ready = true;
    }
    for (; b->item < c->nrecs; b->item++) {
        const dr_record *r = &c->recs[b->item];
        if (r->flags & DR_REC_DROPPED)
            continue;
        topic_ref t;
        if (!record_topic(b, c, r, &t))
            continue;
        const char *val;
        size_t len;
        int rc = record_value(st, r, &val, &len);
        if (rc < 0)
            return rc;
        dr_value key = {0};
        char tbuf[40];
        bool has_key = conf->key && dr_record_get(c, r, conf->key, strlen(conf->key), &key, tbuf);
        rd_kafka_vu_t hdrs[KAFKA_MAX_HEADERS];
        char tbufs[KAFKA_MAX_HEADERS][40];
        size_t nh = record_headers(st, c, r, hdrs, tbufs);
        rc = produce(b, &t, has_key ? key.p : NULL, key.len, val, len, hdrs, nh, &b->one);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The key of a run of samples: "job/instance" of its first sample. */
static size_t samples_key(const dr_chunk *c, const dr_sample *s, char *out, size_t outsz)
{
    dr_symbol_view job = dr_series_value(c->series, s->series, "job", 3);
    dr_symbol_view inst = dr_series_value(c->series, s->series, "instance", 8);
    if (job.len + inst.len + 1 >= outsz)
        return 0;
    memcpy(out, job.s, job.len);
    out[job.len] = '/';
    memcpy(out + job.len + 1, inst.s, inst.len);
    return job.len + 1 + inst.len;
}

static int produce_samples(kafka_batch *b, const dr_chunk *c)
{
    kafka_state *st = b->st;
    kafka_conf *conf = st->inst->conf;
    size_t per = (size_t)conf->metrics_samples_per_message;
    while (b->item < c->nsamples) {
        size_t n = c->nsamples - b->item;
        if (n > per)
            n = per;
        const dr_sample *first = &c->samples[b->item];
        dr_buf_reset(&st->scratch);
        int rc = dr_prw1_encode(st->prw, c->series, first, n, NULL, &st->scratch);
        if (rc == DR_EINVAL) {
            /* a sample the encoder cannot write: nothing else would either */
            kafka_batch_drop(b, "invalid_sample", n);
            b->item += n;
            continue;
        }
        if (rc < 0)
            return rc;
        kafka_msg *m = malloc(sizeof *m);
        if (!m)
            return DR_ENOMEM;
        *m = (kafka_msg){.batch = b, .records = n, .owned = true};
        topic_ref t = {.rkt = topic_handle(st, conf->topic, strlen(conf->topic))};
        if (!t.rkt)
            snprintf(t.name, sizeof t.name, "%s", conf->topic);
        char key[512];
        size_t klen = samples_key(c, first, key, sizeof key);
        rc = produce(b, &t, klen ? key : NULL, klen, st->scratch.p, st->scratch.len, NULL, 0, m);
        if (rc < 0) {
            free(m);
            return rc;
        }
        b->item += n;
    }
    return 0;
}

int kafka_produce_batch(kafka_batch *b)
{
    size_t nchunks = dr_flush_count(b->flush);
    for (; b->chunk < nchunks; b->chunk++, b->item = 0, b->meta_ready = false) {
        const dr_chunk *c = dr_flush_chunk(b->flush, b->chunk);
        int rc = c->kind == DR_CHUNK_METRICS ? produce_samples(b, c) : produce_records(b, c);
        if (rc < 0)
            return rc;
    }
    b->produced = true;
    return 0;
}
