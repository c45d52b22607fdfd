/*
 * Metric exposition parsers: what a scrape answers, turned into samples.
 *
 * Three formats, as Prometheus negotiates them:
 *   - the text format 0.0.4 (text/plain; version=0.0.4),
 *   - OpenMetrics 1.0 text (application/openmetrics-text; version=1.0.0),
 *   - the delimited protobuf format (application/vnd.google.protobuf;
 *     proto=io.prometheus.client.MetricFamily; encoding=delimited), the only
 *     one that carries native histograms.
 *
 * A parser walks the whole body and hands every sample and every family's
 * metadata to a sink, through callbacks, without building a tree: the
 * caller (a scrape) decides what to keep. Label bytes handed to the sink are
 * valid only during the callback (they point into the body or into the
 * parser's scratch space for unescaped values).
 *
 * What is accepted and what is rejected follows Prometheus' own scrape
 * parsers (model/textparse) with the UTF-8 name validation of Prometheus 3:
 * a scrape that Prometheus fails, drover fails with the reason; a scrape
 * Prometheus takes, drover takes with the same samples. A body that fails
 * part way is a failed scrape: samples already handed to the sink must be
 * discarded by the caller (dr_expo_parse returns an error).
 */
#ifndef DROVER_EXPO_H
#define DROVER_EXPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drover/plugin.h"
#include "labels.h"

typedef enum {
    DR_EXPO_TEXT = 0,        /* text 0.0.4 */
    DR_EXPO_OPENMETRICS = 1, /* OpenMetrics 1.0 */
    DR_EXPO_PROTOBUF = 2,    /* delimited io.prometheus.client.MetricFamily */
} dr_expo_format;

/* Metric types, numbered as remote write's MetricMetadata.MetricType. */
typedef enum {
    DR_MT_UNKNOWN = 0, /* untyped (text), unknown (OpenMetrics) */
    DR_MT_COUNTER = 1,
    DR_MT_GAUGE = 2,
    DR_MT_HISTOGRAM = 3,
    DR_MT_GAUGEHISTOGRAM = 4,
    DR_MT_SUMMARY = 5,
    DR_MT_INFO = 6,
    DR_MT_STATESET = 7,
} dr_metric_type;

/* One bucket span of a native histogram: `length` consecutive buckets
 * starting `offset` buckets after the end of the previous span. */
typedef struct dr_hist_span {
    int32_t offset;
    uint32_t length;
} dr_hist_span;

/* A native (exponential) histogram sample, as io.prometheus.client carries
 * it and remote write sends it. Bucket counts are deltas (integer
 * histograms) or absolute counts (float histograms), as on the wire. */
typedef struct dr_native_hist {
    bool is_float;      /* counts are doubles (float histogram) */
    uint64_t count_int; /* !is_float */
    double count_float; /* is_float */
    double sum;
    int32_t schema;
    double zero_threshold;
    uint64_t zero_count_int; /* !is_float */
    double zero_count_float; /* is_float */
    const dr_hist_span *neg_spans, *pos_spans;
    uint32_t n_neg_spans, n_pos_spans;
    const int64_t *neg_deltas, *pos_deltas; /* !is_float */
    const double *neg_counts, *pos_counts;  /* is_float */
    uint32_t n_neg, n_pos;                  /* buckets in the arrays above */
    uint8_t reset_hint;                     /* remote write's Histogram.ResetHint */
} dr_native_hist;

/* The identity of a sample's series as a body spells it: a 128-bit hash,
 * at which size a collision among even billions of series is not a
 * practical event. Equal keys mean equal label sets. The text formats key
 * the bytes of the series as written (name and label block, with the
 * format and the type Prometheus rewrites le and quantile by), so one label
 * set spelled two ways has two keys; protobuf keys the label set. */
typedef struct dr_expo_key {
    uint64_t a, b; /* never both 0 */
} dr_expo_key;

typedef struct dr_expo_sample {
    /* The series: __name__ first, then the labels in the order of the
     * input, unescaped. Not canonical (use dr_labels_canon on a copy).
     * NULL when the sink's known callback recognised the key. */
    const dr_labels *labels;
    dr_expo_key key;
    /* The family the sample belongs to (its TYPE/HELP name: "foo" for
     * foo_bucket of histogram foo), and the family's type. The name is
     * the sample's own name when no metadata line named its family. */
    const char *family;
    size_t family_len;
    dr_metric_type type;
    double value;  /* for a native histogram: 0, see hist */
    bool has_ts;   /* the body gave a timestamp */
    int64_t ts_ms; /* milliseconds since the Unix epoch, when has_ts */
    /* A native histogram sample (protobuf only), else NULL. */
    const dr_native_hist *hist;
    /* An exemplar attached to the sample (OpenMetrics, protobuf), else NULL. */
    const dr_labels *exemplar;
    double exemplar_value;
    bool exemplar_has_ts;
    int64_t exemplar_ts_ms;
} dr_expo_sample;

/* A family's metadata. HELP and UNIT are unescaped; length 0 when absent. */
typedef struct dr_expo_meta {
    const char *family;
    size_t family_len;
    dr_metric_type type;
    const char *help;
    size_t help_len;
    const char *unit;
    size_t unit_len;
} dr_expo_meta;

typedef struct dr_expo_sink {
    void *ctx;
    /* Every sample, in body order. A non-zero return stops the parse, and
     * dr_expo_parse returns that value (a scrape over its sample_limit,
     * say). */
    int (*sample)(void *ctx, const dr_expo_sample *s);
    /* Once per family that has metadata (a TYPE, HELP or UNIT line, or a
     * protobuf MetricFamily), before the family's first sample; may be
     * NULL. A non-zero return stops the parse as above. */
    int (*meta)(void *ctx, const dr_expo_meta *m);
    /* May be NULL. Asked, for a series of a text body, before its labels are
     * taken apart: true when the sink remembers the key from an earlier
     * sample and needs no label set; the sample then comes with labels
     * NULL. Taking a line apart is most of a parse's cost, and in steady
     * state a scrape sees the same series every time. The bytes behind a
     * known key parsed before, and parse the same way again, so skipping
     * them loses no validation. */
    bool (*known)(void *ctx, const dr_expo_key *key);
} dr_expo_sink;

/* Parses a whole (already decompressed) body. Returns 0, the non-zero value
 * a sink callback returned, or DR_EINVAL with err saying what is wrong and
 * where ("line 12: expected label value, got ..."; for protobuf the byte
 * offset), or DR_ENOMEM. */
int dr_expo_parse(dr_expo_format fmt, const char *body, size_t len, const dr_expo_sink *sink,
                  dr_error *err);

/* The key of a label set (what protobuf samples carry; never equal to a
 * text key). */
void dr_expo_labels_key(const dr_labels *ls, dr_expo_key *key);

/* The format a Content-Type header names (NULL or unknown: text 0.0.4, as
 * Prometheus falls back to; an unsupported explicit type sets *known to
 * false so the caller can refuse it when it was strict). */
dr_expo_format dr_expo_format_of(const char *content_type, bool *known);

/* Name of a metric type as TYPE lines spell it ("counter", "untyped" for
 * DR_MT_UNKNOWN). */
const char *dr_metric_type_name(dr_metric_type t);

#endif
