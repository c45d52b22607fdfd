#include "ndjson.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "expo.h"
#include "json.h"
#include "metrics.h"
#include "series.h"

static const char *stream_name(uint8_t s)
{
    return s == DR_STREAM_STDERR ? "stderr" : "stdout";
}

static long put_key_string(dr_buf *b, const char *key, const char *val, size_t n)
{
    dr_buf_putc(b, '"');
    dr_buf_puts(b, key);
    dr_buf_puts(b, "\":");
    return dr_json_string(b, val, n);
}

static void put_string_pair(dr_buf *b, bool *first, const char *key, const char *val)
{
    if (!val[0])
        return;
    if (!*first)
        dr_buf_putc(b, ',');
    *first = false;
    put_key_string(b, key, val, strlen(val));
}

static void put_kv_object(dr_buf *b, bool *first, const char *key, const dr_kv *kv, uint32_t n)
{
    if (n == 0)
        return;
    if (!*first)
        dr_buf_putc(b, ',');
    *first = false;
    dr_buf_printf(b, "\"%s\":{", key);
    for (uint32_t i = 0; i < n; i++) {
        if (i)
            dr_buf_putc(b, ',');
        dr_json_string(b, kv[i].key, strlen(kv[i].key));
        dr_buf_putc(b, ':');
        dr_json_string(b, kv[i].val, strlen(kv[i].val));
    }
    dr_buf_putc(b, '}');
}

/* What the kubernetes filter added: every known value, empty ones left out. */
static void encode_kube(const dr_kube_meta *k, dr_buf *b)
{
    bool first = true;
    dr_buf_puts(b, ",\"kubernetes\":{");
    put_string_pair(b, &first, "namespace", k->namespace_);
    put_string_pair(b, &first, "pod", k->pod);
    put_string_pair(b, &first, "pod_uid", k->pod_uid);
    put_string_pair(b, &first, "container", k->container);
    put_string_pair(b, &first, "container_id", k->container_id);
    put_string_pair(b, &first, "image", k->image);
    put_string_pair(b, &first, "node", k->node);
    put_string_pair(b, &first, "pod_ip", k->pod_ip);
    put_string_pair(b, &first, "owner_kind", k->owner_kind);
    put_string_pair(b, &first, "owner_name", k->owner_name);
    put_kv_object(b, &first, "labels", k->labels, k->nlabels);
    put_kv_object(b, &first, "annotations", k->annotations, k->nannotations);
    put_kv_object(b, &first, "namespace_labels", k->namespace_labels, k->nnamespace_labels);
    dr_buf_putc(b, '}');
}

void dr_ndjson_encode_meta(const dr_chunk *c, dr_buf *b)
{
    if (c->kube) {
        encode_kube(c->kube, b);
        return;
    }
    const dr_meta *m = c->meta;
    if (!m)
        return;
    dr_buf_puts(b, ",\"kubernetes\":{");
    put_key_string(b, "namespace", m->namespace_, strlen(m->namespace_));
    dr_buf_putc(b, ',');
    put_key_string(b, "pod", m->pod, strlen(m->pod));
    dr_buf_putc(b, ',');
    put_key_string(b, "pod_uid", m->pod_uid, strlen(m->pod_uid));
    dr_buf_putc(b, ',');
    put_key_string(b, "container", m->container, strlen(m->container));
    dr_buf_putc(b, ',');
    put_key_string(b, "container_id", m->container_id, strlen(m->container_id));
    dr_buf_putc(b, '}');
}

long dr_ndjson_encode_record(const dr_record *r, const dr_buf *meta, dr_buf *b)
{
    char ts[40];
    size_t tn = dr_format_rfc3339nano(r->time_ns, ts);
    dr_buf_reserve(b, r->msg_len + meta->len + 96);
    dr_buf_puts(b, "{\"time\":\"");
    dr_buf_append(b, ts, tn);
    dr_buf_puts(b, "\",\"stream\":\"");
    dr_buf_puts(b, stream_name(r->stream));
    dr_buf_puts(b, "\",\"message\":");
    long bad = dr_json_string(b, r->msg, r->msg_len);
    if (bad < 0)
        return bad;
    for (uint16_t i = 0; i < r->nfields; i++) {
        const dr_field *f = &r->fields[i];
        dr_buf_putc(b, ',');
        if (dr_json_string(b, f->key, f->key_len) < 0)
            return DR_ENOMEM;
        dr_buf_putc(b, ':');
        if (f->type == DR_FIELD_JSON) {
            /* valid JSON text already (the parser that made it checked) */
            dr_buf_append(b, f->val, f->val_len);
            continue;
        }
        long fb = dr_json_string(b, f->val, f->val_len);
        if (fb < 0)
            return fb;
        bad += fb;
    }
    dr_buf_append(b, meta->p, meta->len);
    dr_buf_puts(b, "}\n");
    return bad;
}

/* "2026-11-25T04:10:38.123456789Z ns/pod/container stderr: message" with
 * the message escaped as in JSON but without the quotes, so one record is
 * always one terminal line. */
static long encode_text_record(const dr_record *r, const dr_meta *m, dr_buf *b)
{
    char ts[40];
    size_t tn = dr_format_rfc3339nano(r->time_ns, ts);
    dr_buf_append(b, ts, tn);
    dr_buf_putc(b, ' ');
    if (m && m->pod[0])
        dr_buf_printf(b, "%s/%s/%s ", m->namespace_, m->pod, m->container);
    else if (m)
        dr_buf_printf(b, "%s ", m->path);
    dr_buf_puts(b, stream_name(r->stream));
    dr_buf_puts(b, ": ");
    size_t at = b->len;
    long bad = dr_json_string(b, r->msg, r->msg_len);
    if (bad < 0)
        return bad;
    /* drop the quotes dr_json_string put around the message */
    memmove(b->p + at, b->p + at + 1, b->len - at - 2);
    b->len -= 2;
    dr_buf_putc(b, '\n');
    return bad;
}

/* ---- metric samples ---------------------------------------------------------- */

/* A sample value in JSON: a number, or "NaN", "+Inf", "-Inf" as strings
 * (JSON has no such numbers). */
static void put_json_double(dr_buf *b, double v)
{
    char num[40];
    dr_format_double(num, sizeof num, v);
    if (isnan(v) || isinf(v))
        dr_buf_printf(b, "\"%s\"", num);
    else
        dr_buf_puts(b, num);
}

static void put_json_spans(dr_buf *b, const char *key, const dr_hist_span *sp, uint32_t n)
{
    dr_buf_printf(b, ",\"%s\":[", key);
    for (uint32_t i = 0; i < n; i++)
        dr_buf_printf(b, "%s[%d,%u]", i ? "," : "", (int)sp[i].offset, (unsigned)sp[i].length);
    dr_buf_putc(b, ']');
}

static void put_json_buckets(dr_buf *b, const char *side, const dr_native_hist *h, bool neg)
{
    uint32_t n = neg ? h->n_neg : h->n_pos;
    dr_buf_printf(b, ",\"%s_%s\":[", side, h->is_float ? "counts" : "deltas");
    for (uint32_t i = 0; i < n; i++) {
        if (i)
            dr_buf_putc(b, ',');
        if (h->is_float)
            put_json_double(b, neg ? h->neg_counts[i] : h->pos_counts[i]);
        else
            dr_buf_printf(b, "%lld", (long long)(neg ? h->neg_deltas[i] : h->pos_deltas[i]));
    }
    dr_buf_putc(b, ']');
}

static void put_json_hist(dr_buf *b, const dr_native_hist *h)
{
    dr_buf_puts(b, ",\"histogram\":{\"count\":");
    if (h->is_float)
        put_json_double(b, h->count_float);
    else
        dr_buf_printf(b, "%llu", (unsigned long long)h->count_int);
    dr_buf_puts(b, ",\"sum\":");
    put_json_double(b, h->sum);
    dr_buf_printf(b, ",\"schema\":%d,\"zero_threshold\":", (int)h->schema);
    put_json_double(b, h->zero_threshold);
    dr_buf_puts(b, ",\"zero_count\":");
    if (h->is_float)
        put_json_double(b, h->zero_count_float);
    else
        dr_buf_printf(b, "%llu", (unsigned long long)h->zero_count_int);
    put_json_spans(b, "negative_spans", h->neg_spans, h->n_neg_spans);
    put_json_buckets(b, "negative", h, true);
    put_json_spans(b, "positive_spans", h->pos_spans, h->n_pos_spans);
    put_json_buckets(b, "positive", h, false);
    dr_buf_putc(b, '}');
}

/* {"time":"...","name":"up","labels":{"job":"x"},"value":1} */
static long encode_json_sample(const dr_chunk *c, const dr_sample *smp, dr_buf *b)
{
    char ts[40];
    dr_format_rfc3339nano(smp->ts_ms * 1000000, ts);
    dr_buf_printf(b, "{\"time\":\"%s\",\"name\":", ts);
    dr_symbol_view name = dr_series_value(c->series, smp->series, "__name__", 8);
    long bad = dr_json_string(b, name.s, name.len);
    if (bad < 0)
        return DR_ENOMEM;
    dr_buf_puts(b, ",\"labels\":{");
    bool first = true;
    for (uint32_t i = 0; i < smp->series->nlabels; i++) {
        dr_symbol_view k, v;
        dr_series_label(c->series, smp->series, i, &k, &v);
        if (k.len == 8 && memcmp(k.s, "__name__", 8) == 0)
            continue;
        if (!first)
            dr_buf_putc(b, ',');
        first = false;
        long bk = dr_json_string(b, k.s, k.len);
        dr_buf_putc(b, ':');
        long bv = dr_json_string(b, v.s, v.len);
        if (bk < 0 || bv < 0)
            return DR_ENOMEM;
        bad |= bk > 0 || bv > 0;
    }
    dr_buf_puts(b, "},\"value\":");
    put_json_double(b, smp->hist ? 0 : smp->value);
    if (dr_is_stale_nan(smp->value))
        dr_buf_puts(b, ",\"stale\":true");
    if (smp->hist)
        put_json_hist(b, smp->hist);
    if (dr_buf_puts(b, "}\n") < 0)
        return DR_ENOMEM;
    return bad;
}

/* A label value as the exposition text format escapes it. */
static void put_text_escaped(dr_buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\')
            dr_buf_puts(b, "\\\\");
        else if (s[i] == '"')
            dr_buf_puts(b, "\\\"");
        else if (s[i] == '\n')
            dr_buf_puts(b, "\\n");
        else
            dr_buf_putc(b, s[i]);
    }
}

/* name{job="x"} 1 1733480000000: the exposition text form of a sample,
 * with its timestamp in milliseconds; a native histogram's value is
 * written {count:N,sum:S,schema:K}; a staleness marker is "stale". */
static long encode_text_sample(const dr_chunk *c, const dr_sample *smp, dr_buf *b)
{
    dr_symbol_view name = dr_series_value(c->series, smp->series, "__name__", 8);
    dr_buf_append(b, name.s, name.len);
    bool first = true;
    for (uint32_t i = 0; i < smp->series->nlabels; i++) {
        dr_symbol_view k, v;
        dr_series_label(c->series, smp->series, i, &k, &v);
        if (k.len == 8 && memcmp(k.s, "__name__", 8) == 0)
            continue;
        dr_buf_putc(b, first ? '{' : ',');
        first = false;
        dr_buf_append(b, k.s, k.len);
        dr_buf_puts(b, "=\"");
        put_text_escaped(b, v.s, v.len);
        dr_buf_putc(b, '"');
    }
    if (!first)
        dr_buf_putc(b, '}');
    char num[40], sum[40];
    if (smp->hist) {
        const dr_native_hist *h = smp->hist;
        dr_format_double(sum, sizeof sum, h->sum);
        if (h->is_float)
            dr_format_double(num, sizeof num, h->count_float);
        else
            snprintf(num, sizeof num, "%llu", (unsigned long long)h->count_int);
        dr_buf_printf(b, " {count:%s,sum:%s,schema:%d}", num, sum, (int)h->schema);
    } else if (dr_is_stale_nan(smp->value)) {
        dr_buf_puts(b, " stale");
    } else {
        dr_format_double(num, sizeof num, smp->value);
        dr_buf_printf(b, " %s", num);
    }
    if (dr_buf_printf(b, " %lld\n", (long long)smp->ts_ms) < 0)
        return DR_ENOMEM;
    return 0;
}

static long encode_metric_chunk(const dr_chunk *c, dr_line_style style, dr_buf *out)
{
    long bad_samples = 0;
    for (uint32_t i = 0; i < c->nsamples; i++) {
        long bad = style == DR_LINE_JSON ? encode_json_sample(c, &c->samples[i], out)
                                         : encode_text_sample(c, &c->samples[i], out);
        if (bad < 0)
            return bad;
        bad_samples += bad > 0;
    }
    return bad_samples;
}

long dr_ndjson_encode_chunk(const dr_chunk *c, dr_line_style style, dr_buf *out)
{
    if (c->kind == DR_CHUNK_METRICS)
        return encode_metric_chunk(c, style, out);
    dr_buf meta = {0};
    if (style == DR_LINE_JSON)
        dr_ndjson_encode_meta(c, &meta);
    long bad_records = 0;
    for (uint32_t i = 0; i < c->nrecs; i++) {
        const dr_record *r = &c->recs[i];
        if (r->flags & DR_REC_DROPPED)
            continue;
        long bad = style == DR_LINE_JSON ? dr_ndjson_encode_record(r, &meta, out)
                                         : encode_text_record(r, c->meta, out);
        if (bad < 0) {
            dr_buf_free(&meta);
            return bad;
        }
        bad_records += bad > 0;
    }
    dr_buf_free(&meta);
    return bad_records;
}

/* Beyond this the buffer is freed after each write rather than kept. */
#define DR_NDJSON_KEEP_BYTES (4u << 20)

void dr_ndjson_writer_init(dr_ndjson_writer *w, dr_instance *inst, dr_line_style style)
{
    w->style = style;
    w->invalid_utf8 =
        dr_counter_new(inst, "drover_output_invalid_utf8_records_total",
                       "Records whose invalid UTF-8 was replaced by U+FFFD.", NULL, NULL);
}

int dr_ndjson_writer_encode(dr_ndjson_writer *w, const dr_flush *f)
{
    dr_buf_reset(&w->buf);
    for (size_t i = 0; i < dr_flush_count(f); i++) {
        long bad = dr_ndjson_encode_chunk(dr_flush_chunk(f, i), w->style, &w->buf);
        if (bad < 0)
            return DR_ENOMEM;
        dr_counter_add(w->invalid_utf8, (uint64_t)bad);
    }
    return 0;
}

void dr_ndjson_writer_trim(dr_ndjson_writer *w)
{
    if (w->buf.cap > DR_NDJSON_KEEP_BYTES)
        dr_buf_free(&w->buf);
}

void dr_ndjson_writer_free(dr_ndjson_writer *w)
{
    dr_buf_free(&w->buf);
}
