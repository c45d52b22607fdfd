/* The delimited protobuf exposition parser: a live node_exporter capture
 * checked against the text capture of the same endpoint, hand-built
 * messages for native, float, gauge and classic histograms, exemplars and
 * timestamps, and malformed bodies. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drover/plugin.h"
#include "expo_internal.h"
#include "prometheus_client.pb-c.h"
#include "test.h"

/* ---- a sink that records everything ------------------------------------------------ */

typedef struct rec_sample {
    char series[512];
    char family[128];
    dr_metric_type type;
    double value;
    bool has_ts;
    int64_t ts;
    bool has_hist;
    dr_native_hist h; /* pointers cleared; arrays copied below */
    dr_hist_span pos_spans[8], neg_spans[8];
    int64_t pos_deltas[16], neg_deltas[16];
    double pos_counts[16], neg_counts[16];
    bool has_ex;
    char ex[256];
    double ex_value;
    bool ex_has_ts;
    int64_t ex_ts;
} rec_sample;

typedef struct rec_meta {
    char family[128];
    char help[512];
    char unit[64];
    dr_metric_type type;
    size_t first_sample; /* samples recorded before this family's metadata */
} rec_meta;

typedef struct rec {
    rec_sample *s;
    size_t ns, cap;
    rec_meta *m;
    size_t nm, mcap;
    int stop_after; /* return 7 after that many samples; 0: never */
} rec;

static void copy_str(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static int rec_sample_cb(void *ctx, const dr_expo_sample *s)
{
    rec *r = ctx;
    if (r->ns == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        r->s = realloc(r->s, r->cap * sizeof *r->s);
    }
    rec_sample *o = &r->s[r->ns++];
    memset(o, 0, sizeof *o);
    dr_labels_format(s->labels, o->series, sizeof o->series);
    /* a series without labels is written as the text format does: no braces */
    size_t n = strlen(o->series);
    if (n >= 2 && strcmp(o->series + n - 2, "{}") == 0)
        o->series[n - 2] = '\0';
    copy_str(o->family, sizeof o->family, s->family, s->family_len);
    o->type = s->type;
    o->value = s->value;
    o->has_ts = s->has_ts;
    o->ts = s->ts_ms;
    if (s->hist) {
        o->has_hist = true;
        o->h = *s->hist;
        for (uint32_t i = 0; i < s->hist->n_pos_spans && i < 8; i++)
            o->pos_spans[i] = s->hist->pos_spans[i];
        for (uint32_t i = 0; i < s->hist->n_neg_spans && i < 8; i++)
            o->neg_spans[i] = s->hist->neg_spans[i];
        for (uint32_t i = 0; i < s->hist->n_pos && i < 16; i++) {
            if (s->hist->is_float)
                o->pos_counts[i] = s->hist->pos_counts[i];
            else
                o->pos_deltas[i] = s->hist->pos_deltas[i];
        }
        for (uint32_t i = 0; i < s->hist->n_neg && i < 16; i++) {
            if (s->hist->is_float)
                o->neg_counts[i] = s->hist->neg_counts[i];
            else
                o->neg_deltas[i] = s->hist->neg_deltas[i];
        }
    }
    if (s->exemplar) {
        o->has_ex = true;
        dr_labels_format(s->exemplar, o->ex, sizeof o->ex);
        o->ex_value = s->exemplar_value;
        o->ex_has_ts = s->exemplar_has_ts;
        o->ex_ts = s->exemplar_ts_ms;
    }
    if (r->stop_after && (int)r->ns >= r->stop_after)
        return 7;
    return 0;
}

static int rec_meta_cb(void *ctx, const dr_expo_meta *m)
{
    rec *r = ctx;
    if (r->nm == r->mcap) {
        r->mcap = r->mcap ? 2 * r->mcap : 64;
        r->m = realloc(r->m, r->mcap * sizeof *r->m);
    }
    rec_meta *o = &r->m[r->nm++];
    copy_str(o->family, sizeof o->family, m->family, m->family_len);
    copy_str(o->help, sizeof o->help, m->help, m->help_len);
    copy_str(o->unit, sizeof o->unit, m->unit, m->unit_len);
    o->type = m->type;
    o->first_sample = r->ns;
    return 0;
}

static void rec_free(rec *r)
{
    free(r->s);
    free(r->m);
}

static int parse(const void *body, size_t len, rec *r, dr_error *err)
{
    dr_expo_sink sink = {.ctx = r, .sample = rec_sample_cb, .meta = rec_meta_cb};
    memset(err, 0, sizeof *err);
    return dr_expo_parse_protobuf(body, len, &sink, err);
}

static const rec_sample *find(const rec *r, const char *series)
{
    for (size_t i = 0; i < r->ns; i++)
        if (strcmp(r->s[i].series, series) == 0)
            return &r->s[i];
    return NULL;
}

/* ---- building bodies ------------------------------------------------------------------ */

typedef struct body {
    uint8_t b[8192];
    size_t n;
} body;

static void put_varint(body *o, uint64_t v)
{
    while (v >= 0x80) {
        o->b[o->n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    o->b[o->n++] = (uint8_t)v;
}

static void put_family(body *o, const Io__Prometheus__Client__MetricFamily *mf)
{
    size_t n = io__prometheus__client__metric_family__get_packed_size(mf);
    put_varint(o, n);
    if (o->n + n > sizeof o->b)
        abort();
    io__prometheus__client__metric_family__pack(mf, o->b + o->n);
    o->n += n;
}

static void put_raw(body *o, const void *p, size_t n)
{
    memcpy(o->b + o->n, p, n);
    o->n += n;
}

/* A family of one metric. */
static Io__Prometheus__Client__MetricFamily one_family(const char *name, int type,
                                                       Io__Prometheus__Client__Metric *m,
                                                       Io__Prometheus__Client__Metric **slot)
{
    Io__Prometheus__Client__MetricFamily mf = IO__PROMETHEUS__CLIENT__METRIC_FAMILY__INIT;
    mf.name = (char *)name;
    mf.type = (Io__Prometheus__Client__MetricType)type;
    *slot = m;
    mf.n_metric = 1;
    mf.metric = slot;
    return mf;
}

/* ---- the live capture ---------------------------------------------------------------------- */

/* Series and HELP lines of the text capture. */
typedef struct text_capture {
    char *buf;
    char **series; /* "name{labels}" of each sample line */
    size_t nseries;
    char **type_names;
    size_t ntypes;
} text_capture;

static bool load_text(text_capture *t)
{
    size_t len;
    memset(t, 0, sizeof *t);
    t->buf = dt_read_file(dt_fixture("exposition/live-node-exporter-1.5.0.prom"), &len);
    if (!t->buf)
        return false;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += t->buf[i] == '\n';
    t->series = calloc(lines, sizeof *t->series);
    t->type_names = calloc(lines, sizeof *t->type_names);
    for (char *line = strtok(t->buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "# TYPE ", 7) == 0) {
            t->type_names[t->ntypes++] = line + 7; /* "name type" */
        } else if (line[0] != '#') {
            /* the value follows the last space (no timestamps in this capture) */
            char *sp = strrchr(line, ' ');
            if (sp)
                *sp = '\0';
            t->series[t->nseries++] = line;
        }
    }
    return true;
}

static void free_text(text_capture *t)
{
    free(t->series);
    free(t->type_names);
    free(t->buf);
}

/* How the text format's TYPE lines name each type. */
static const char *type_word(dr_metric_type t)
{
    switch (t) {
    case DR_MT_COUNTER:
        return "counter";
    case DR_MT_GAUGE:
        return "gauge";
    case DR_MT_SUMMARY:
        return "summary";
    case DR_MT_HISTOGRAM:
        return "histogram";
    default:
        return "untyped";
    }
}

static char *read_capture_help(const char *family)
{
    size_t len;
    char *buf = dt_read_file(dt_fixture("exposition/live-node-exporter-1.5.0.prom"), &len);
    if (!buf)
        return NULL;
    char key[160];
    snprintf(key, sizeof key, "# HELP %s ", family);
    char *p = strstr(buf, key), *out = NULL;
    if (p) {
        p += strlen(key);
        char *e = strchr(p, '\n');
        out = strndup(p, e ? (size_t)(e - p) : strlen(p));
    }
    free(buf);
    return out;
}

void test_expo_proto_node_exporter_capture(void)
{
    size_t len;
    char *bin = dt_read_file(
        dt_fixture("exposition/live-node-exporter-1.5.0.delimited-protobuf.bin"), &len);
    CHECK(bin != NULL);
    text_capture t;
    CHECK(load_text(&t));
    if (!bin || !t.buf) {
        free(bin);
        free_text(&t);
        return;
    }
    rec r = {0};
    dr_error err;
    CHECK_INT(parse(bin, len, &r, &err), 0);

    /* one family per TYPE line of the text capture, in the same order,
     * with the same type */
    CHECK_INT(r.nm, t.ntypes);
    CHECK_INT(t.ntypes, 282);
    for (size_t i = 0; i < r.nm && i < t.ntypes; i++) {
        char want[256];
        snprintf(want, sizeof want, "%s %s", r.m[i].family, type_word(r.m[i].type));
        if (!CHECK_STR(want, t.type_names[i]))
            break;
    }

    /* every sample line of the text capture, and no other: 499 metrics,
     * the summary's one expanded into 7 samples */
    CHECK_INT(r.ns, t.nseries);
    CHECK_INT(r.ns, 505);
    size_t missing = 0;
    for (size_t i = 0; i < r.ns; i++) {
        if (strcmp(r.s[i].family, "go_gc_duration_seconds") == 0)
            continue; /* quantile labels are normalized, checked below */
        bool found = false;
        for (size_t j = 0; j < t.nseries && !found; j++)
            found = strcmp(t.series[j], r.s[i].series) == 0;
        if (!found && missing++ < 5)
            CHECK_STR(r.s[i].series, "(a series of the text capture)");
    }
    CHECK_INT(missing, 0);

    const rec_sample *s = find(&r, "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"}");
    CHECK(s != NULL);
    if (s) {
        CHECK_INT(s->type, DR_MT_COUNTER);
        CHECK_STR(s->family, "node_cpu_seconds_total");
        CHECK(s->value > 0);
        CHECK(!s->has_ts);
        CHECK(!s->has_hist);
    }
    s = find(&r, "node_exporter_build_info{branch=\"debian/sid\",goarch=\"amd64\",goos=\"linux\","
                 "goversion=\"go1.19.8\",revision=\"1.5.0-1+b6\",version=\"1.5.0\"}");
    CHECK(s != NULL);
    if (s) {
        CHECK_INT(s->type, DR_MT_GAUGE);
        CHECK(s->value == 1);
    }
    s = find(&r, "go_goroutines");
    CHECK(s != NULL);
    if (s)
        CHECK_INT(s->type, DR_MT_GAUGE);

    /* the summary: _count, _sum, then the quantiles of the text capture
     * (0, 0.25, 0.5, 0.75, 1) written as Prometheus 3 normalizes them */
    size_t k = 0;
    while (k < r.ns && strcmp(r.s[k].family, "go_gc_duration_seconds") != 0)
        k++;
    const char *want[] = {"go_gc_duration_seconds_count",
                          "go_gc_duration_seconds_sum",
                          "go_gc_duration_seconds{quantile=\"0.0\"}",
                          "go_gc_duration_seconds{quantile=\"0.25\"}",
                          "go_gc_duration_seconds{quantile=\"0.5\"}",
                          "go_gc_duration_seconds{quantile=\"0.75\"}",
                          "go_gc_duration_seconds{quantile=\"1.0\"}"};
    CHECK(k + 7 <= r.ns);
    for (size_t i = 0; i < 7 && k + i < r.ns; i++) {
        CHECK_STR(r.s[k + i].series, want[i]);
        CHECK_INT(r.s[k + i].type, DR_MT_SUMMARY);
    }
    if (k + 1 < r.ns) {
        CHECK(r.s[k].value >= 1 && r.s[k].value == floor(r.s[k].value)); /* a count */
        CHECK(r.s[k + 1].value > 0);
    }

    /* help strings as the text capture's HELP lines, metadata before the
     * family's first sample */
    size_t bad = 0;
    for (size_t i = 0; i < r.nm; i++) {
        char *help = read_capture_help(r.m[i].family);
        if (!help || strcmp(help, r.m[i].help) != 0) {
            if (bad++ < 3)
                CHECK_STR(r.m[i].help, help ? help : "(no HELP line)");
        }
        free(help);
        if (r.m[i].first_sample < r.ns)
            CHECK_STR(r.s[r.m[i].first_sample].family, r.m[i].family);
        CHECK_STR(r.m[i].unit, "");
    }
    CHECK_INT(bad, 0);

    rec_free(&r);
    free_text(&t);
    free(bin);
}

/* ---- hand-built messages ------------------------------------------------------------------ */

void test_expo_proto_native_histogram(void)
{
    /* positive spans {-1,3},{0,1} with deltas 2,-2,1,0: absolute counts 2,0,1,1
     * at indices -1..2. Prometheus compacts it: the zero-offset span is merged,
     * the empty bucket at index 0 cut out, leaving spans {-1,1},{1,2} with
     * counts 2,1,1 (deltas 2,-1,0). */
    Io__Prometheus__Client__BucketSpan p1 = IO__PROMETHEUS__CLIENT__BUCKET_SPAN__INIT,
                                       p2 = IO__PROMETHEUS__CLIENT__BUCKET_SPAN__INIT,
                                       n1 = IO__PROMETHEUS__CLIENT__BUCKET_SPAN__INIT;
    p1.offset = -1;
    p1.length = 3;
    p2.offset = 0;
    p2.length = 1;
    n1.offset = 2;
    n1.length = 1;
    Io__Prometheus__Client__BucketSpan *pspans[] = {&p1, &p2}, *nspans[] = {&n1};
    int64_t pdeltas[] = {2, -2, 1, 0}, ndeltas[] = {3};

    /* classic buckets too: ignored when the histogram is native */
    Io__Prometheus__Client__Bucket b1 = IO__PROMETHEUS__CLIENT__BUCKET__INIT;
    b1.upper_bound = 1;
    b1.cumulative_count = 5;
    Io__Prometheus__Client__Bucket *buckets[] = {&b1};

    /* two exemplars: the first has no timestamp, so the second is taken */
    Io__Prometheus__Client__LabelPair el = IO__PROMETHEUS__CLIENT__LABEL_PAIR__INIT;
    el.name = "trace_id";
    el.value = "t2";
    Io__Prometheus__Client__LabelPair *els[] = {&el};
    Io__Prometheus__Client__Exemplar e1 = IO__PROMETHEUS__CLIENT__EXEMPLAR__INIT,
                                     e2 = IO__PROMETHEUS__CLIENT__EXEMPLAR__INIT;
    e1.value = 0.5;
    e2.value = 0.75;
    e2.n_label = 1;
    e2.label = els;
    Io__Prometheus__Client__Timestamp ets = IO__PROMETHEUS__CLIENT__TIMESTAMP__INIT;
    ets.seconds = 1700000000;
    ets.nanos = 250000000;
    e2.timestamp = &ets;
    Io__Prometheus__Client__Exemplar *exs[] = {&e1, &e2};

    Io__Prometheus__Client__Histogram h = IO__PROMETHEUS__CLIENT__HISTOGRAM__INIT;
    h.sample_count = 9;
    h.sample_sum = 10.5;
    h.schema = 3;
    h.zero_threshold = 0.001;
    h.zero_count = 1;
    h.n_positive_span = 2;
    h.positive_span = pspans;
    h.n_positive_delta = 4;
    h.positive_delta = pdeltas;
    h.n_negative_span = 1;
    h.negative_span = nspans;
    h.n_negative_delta = 1;
    h.negative_delta = ndeltas;
    h.n_bucket = 1;
    h.bucket = buckets;
    h.n_exemplars = 2;
    h.exemplars = exs;

    Io__Prometheus__Client__LabelPair lp = IO__PROMETHEUS__CLIENT__LABEL_PAIR__INIT;
    lp.name = "path";
    lp.value = "/api";
    Io__Prometheus__Client__LabelPair *lps[] = {&lp};
    Io__Prometheus__Client__Metric m = IO__PROMETHEUS__CLIENT__METRIC__INIT, *slot;
    m.histogram = &h;
    m.n_label = 1;
    m.label = lps;
    m.timestamp_ms = 1700000000123;
    Io__Prometheus__Client__MetricFamily mf = one_family(
        "http_request_duration_seconds", IO__PROMETHEUS__CLIENT__METRIC_TYPE__HISTOGRAM, &m, &slot);
    mf.help = "Request latency.";
    mf.unit = "seconds";

    body b = {0};
    put_family(&b, &mf);
    rec r = {0};
    dr_error err;
    CHECK_INT(parse(b.b, b.n, &r, &err), 0);
    CHECK_INT(r.nm, 1);
    if (r.nm == 1) {
        CHECK_STR(r.m[0].family, "http_request_duration_seconds");
        CHECK_STR(r.m[0].help, "Request latency.");
        CHECK_STR(r.m[0].unit, "seconds");
        CHECK_INT(r.m[0].type, DR_MT_HISTOGRAM);
    }
    CHECK_INT(r.ns, 1);
    if (r.ns == 1) {
        const rec_sample *s = &r.s[0];
        CHECK_STR(s->series, "http_request_duration_seconds{path=\"/api\"}");
        CHECK_INT(s->type, DR_MT_HISTOGRAM);
        CHECK(s->has_ts);
        CHECK_INT(s->ts, 1700000000123);
        CHECK(s->has_hist);
        CHECK(!s->h.is_float);
        CHECK_INT(s->h.count_int, 9);
        CHECK(s->h.sum == 10.5);
        CHECK_INT(s->h.schema, 3);
        CHECK(s->h.zero_threshold == 0.001);
        CHECK_INT(s->h.zero_count_int, 1);
        CHECK_INT(s->h.reset_hint, 0); /* unknown, as Prometheus scrapes counters */
        CHECK_INT(s->h.n_pos_spans, 2);
        CHECK_INT(s->pos_spans[0].offset, -1);
        CHECK_INT(s->pos_spans[0].length, 1);
        CHECK_INT(s->pos_spans[1].offset, 1);
        CHECK_INT(s->pos_spans[1].length, 2);
        CHECK_INT(s->h.n_pos, 3);
        CHECK_INT(s->pos_deltas[0], 2);
        CHECK_INT(s->pos_deltas[1], -1);
        CHECK_INT(s->pos_deltas[2], 0);
        CHECK_INT(s->h.n_neg_spans, 1);
        CHECK_INT(s->neg_spans[0].offset, 2);
        CHECK_INT(s->neg_spans[0].length, 1);
        CHECK_INT(s->h.n_neg, 1);
        CHECK_INT(s->neg_deltas[0], 3);
        CHECK(s->has_ex);
        CHECK_STR(s->ex, "{trace_id=\"t2\"}");
        CHECK(s->ex_value == 0.75);
        CHECK(s->ex_has_ts);
        CHECK_INT(s->ex_ts, 1700000000250);
    }
    rec_free(&r);
}

void test_expo_proto_float_and_gauge_histograms(void)
{
    /* a float histogram (sample_count_float > 0): absolute counts */
    Io__Prometheus__Client__BucketSpan sp = IO__PROMETHEUS__CLIENT__BUCKET_SPAN__INIT;
    sp.offset = 0;
    sp.length = 3;
    Io__Prometheus__Client__BucketSpan *spans[] = {&sp};
    double counts[] = {2.5, 0, 3.0};
    Io__Prometheus__Client__Histogram fh = IO__PROMETHEUS__CLIENT__HISTOGRAM__INIT;
    fh.sample_count_float = 5.5;
    fh.sample_sum = 1.25;
    fh.n_positive_span = 1;
    fh.positive_span = spans;
    fh.n_positive_count = 3;
    fh.positive_count = counts;
    Io__Prometheus__Client__Metric m1 = IO__PROMETHEUS__CLIENT__METRIC__INIT, *slot1;
    m1.histogram = &fh;
    Io__Prometheus__Client__MetricFamily f1 =
        one_family("float_h", IO__PROMETHEUS__CLIENT__METRIC_TYPE__HISTOGRAM, &m1, &slot1);

    /* a native gauge histogram: reset hint GAUGE */
    Io__Prometheus__Client__BucketSpan noop = IO__PROMETHEUS__CLIENT__BUCKET_SPAN__INIT;
    Io__Prometheus__Client__BucketSpan *noops[] = {&noop};
    Io__Prometheus__Client__Histogram gh = IO__PROMETHEUS__CLIENT__HISTOGRAM__INIT;
    gh.n_positive_span = 1; /* the no-op span of an empty native histogram */
    gh.positive_span = noops;
    Io__Prometheus__Client__Metric m2 = IO__PROMETHEUS__CLIENT__METRIC__INIT, *slot2;
    m2.histogram = &gh;
    Io__Prometheus__Client__MetricFamily f2 =
        one_family("gauge_h", IO__PROMETHEUS__CLIENT__METRIC_TYPE__GAUGE_HISTOGRAM, &m2, &slot2);

    /* a classic gauge histogram: the same _count, _sum, _bucket series as a
     * histogram (the protobuf parser has no _gcount/_gsum) */
    Io__Prometheus__Client__Bucket cb = IO__PROMETHEUS__CLIENT__BUCKET__INIT;
    cb.upper_bound = 10;
    cb.cumulative_count = 2;
    Io__Prometheus__Client__Bucket *cbs[] = {&cb};
    Io__Prometheus__Client__Histogram ch = IO__PROMETHEUS__CLIENT__HISTOGRAM__INIT;
    ch.sample_count = 3;
    ch.sample_sum = 12;
    ch.n_bucket = 1;
    ch.bucket = cbs;
    Io__Prometheus__Client__Metric m3 = IO__PROMETHEUS__CLIENT__METRIC__INIT, *slot3;
    m3.histogram = &ch;
    Io__Prometheus__Client__MetricFamily f3 =
        one_family("classic_gh", IO__PROMETHEUS__CLIENT__METRIC_TYPE__GAUGE_HISTOGRAM, &m3, &slot3);

    body b = {0};
    put_family(&b, &f1);
    put_family(&b, &f2);
    put_family(&b, &f3);
    rec r = {0};
    dr_error err;
    CHECK_INT(parse(b.b, b.n, &r, &err), 0);
    CHECK_INT(r.nm, 3);
    CHECK_INT(r.ns, 6);
    if (r.ns != 6) {
        rec_free(&r);
        return;
    }
    const rec_sample *s = &r.s[0];
    CHECK_STR(s->series, "float_h");
    CHECK(s->has_hist && s->h.is_float);
    CHECK(s->h.count_float == 5.5);
    CHECK(s->h.sum == 1.25);
    CHECK(!s->has_ts);
    /* the empty middle bucket is cut: spans {0,1},{1,1} */
    CHECK_INT(s->h.n_pos_spans, 2);
    CHECK_INT(s->pos_spans[0].offset, 0);
    CHECK_INT(s->pos_spans[0].length, 1);
    CHECK_INT(s->pos_spans[1].offset, 1);
    CHECK_INT(s->pos_spans[1].length, 1);
    CHECK_INT(s->h.n_pos, 2);
    CHECK(s->pos_counts[0] == 2.5);
    CHECK(s->pos_counts[1] == 3.0);
    CHECK_INT(s->h.n_neg, 0);
    CHECK_INT(s->h.reset_hint, 0);

    s = &r.s[1];
    CHECK_STR(s->series, "gauge_h");
    CHECK_INT(s->type, DR_MT_GAUGEHISTOGRAM);
    CHECK(s->has_hist && !s->h.is_float);
    CHECK_INT(s->h.reset_hint, 3);  /* remote write's GAUGE */
    CHECK_INT(s->h.n_pos_spans, 0); /* the no-op span compacted away */
    CHECK_INT(s->h.count_int, 0);

    const char *want[] = {"classic_gh_count", "classic_gh_sum", "classic_gh_bucket{le=\"10.0\"}",
                          "classic_gh_bucket{le=\"+Inf\"}"};
    const double vals[] = {3, 12, 2, 3};
    for (int i = 0; i < 4; i++) {
        CHECK_STR(r.s[2 + i].series, want[i]);
        CHECK(r.s[2 + i].value == vals[i]);
        CHECK_INT(r.s[2 + i].type, DR_MT_GAUGEHISTOGRAM);
        CHECK(!r.s[2 + i].has_hist);
    }
    rec_free(&r);
}

void test_expo_proto_classic_histogram_missing_inf(void)
{
    Io__Prometheus__Client__LabelPair el = IO__PROMETHEUS__CLIENT__LABEL_PAIR__INIT;
    el.name = "trace_id";
    el.value = "abc";
    Io__Prometheus__Client__LabelPair *els[] = {&el};
    Io__Prometheus__Client__Exemplar ex = IO__PROMETHEUS__CLIENT__EXEMPLAR__INIT;
    ex.n_label = 1;
    ex.label = els;
    ex.value = 0.9;
    Io__Prometheus__Client__Bucket b1 = IO__PROMETHEUS__CLIENT__BUCKET__INIT,
                                   b2 = IO__PROMETHEUS__CLIENT__BUCKET__INIT;
    b1.upper_bound = 0.5;
    b1.cumulative_count = 1;
    b2.upper_bound = 1;
    b2.cumulative_count = 3;
    b2.exemplar = &ex; /* no timestamp: kept for classic buckets */
    Io__Prometheus__Client__Bucket *bs[] = {&b1, &b2};
    Io__Prometheus__Client__Histogram h = IO__PROMETHEUS__CLIENT__HISTOGRAM__INIT;
    h.sample_count = 4;
    h.sample_sum = 2.5;
    h.n_bucket = 2;
    h.bucket = bs;
    Io__Prometheus__Client__Metric m = IO__PROMETHEUS__CLIENT__METRIC__INIT, *slot;
    m.histogram = &h;
    m.timestamp_ms = 42;
    Io__Prometheus__Client__MetricFamily mf =
        one_family("lat", IO__PROMETHEUS__CLIENT__METRIC_TYPE__HISTOGRAM, &m, &slot);
    body b = {0};
    put_family(&b, &mf);
    rec r = {0};
    dr_error err;
    CHECK_INT(parse(b.b, b.n, &r, &err), 0);
    const char *want[] = {"lat_count", "lat_sum", "lat_bucket{le=\"0.5\"}",
                          "lat_bucket{le=\"1.0\"}", "lat_bucket{le=\"+Inf\"}"};
    const double vals[] = {4, 2.5, 1, 3, 4};
    CHECK_INT(r.ns, 5);
    for (size_t i = 0; i < 5 && i < r.ns; i++) {
        CHECK_STR(r.s[i].series, want[i]);
        CHECK(r.s[i].value == vals[i]);
        CHECK_STR(r.s[i].family, "lat");
        CHECK_INT(r.s[i].type, DR_MT_HISTOGRAM);
        CHECK(r.s[i].has_ts);
        CHECK_INT(r.s[i].ts, 42);
        CHECK(r.s[i].has_ex == (i == 3));
    }
    if (r.ns == 5) {
        CHECK_STR(r.s[3].ex, "{trace_id=\"abc\"}");
        CHECK(r.s[3].ex_value == 0.9);
        CHECK(!r.s[3].ex_has_ts);
    }
    rec_free(&r);
}

/* le and quantile values as Go's strconv.FormatFloat(f, 'g', -1, 64) writes
 * them, with ".0" added when neither '.' nor 'e' is in the result. */
void test_expo_proto_le_formatting(void)
{
    static const struct {
        double v;
        const char *le;
    } cases[] = {
        {1, "1.0"},
        {-1, "-1.0"},
        {0, "0.0"},
        {0.005, "0.005"},
        {2.5, "2.5"},
        {100000, "100000.0"},
        {1e6, "1e+06"},
        {123456789, "1.23456789e+08"},
        {0.0001, "0.0001"},
        {1e-05, "1e-05"},
        {1.5e300, "1.5e+300"},
        {0.1, "0.1"},
        {1.0 / 3, "0.3333333333333333"},
        {INFINITY, "+Inf"},
    };
    enum { N = sizeof cases / sizeof cases[0] };
    Io__Prometheus__Client__Bucket bk[N], *bs[N];
    for (int i = 0; i < N; i++) {
        Io__Prometheus__Client__Bucket init = IO__PROMETHEUS__CLIENT__BUCKET__INIT;
        bk[i] = init;
        bk[i].upper_bound = cases[i].v;
        bs[i] = &bk[i];
    }
    Io__Prometheus__Client__Histogram h = IO__PROMETHEUS__CLIENT__HISTOGRAM__INIT;
    h.n_bucket = N;
    h.bucket = bs;
    Io__Prometheus__Client__Metric m = IO__PROMETHEUS__CLIENT__METRIC__INIT, *slot;
    m.histogram = &h;
    Io__Prometheus__Client__MetricFamily mf =
        one_family("f", IO__PROMETHEUS__CLIENT__METRIC_TYPE__HISTOGRAM, &m, &slot);
    body b = {0};
    put_family(&b, &mf);
    rec r = {0};
    dr_error err;
    CHECK_INT(parse(b.b, b.n, &r, &err), 0);
    CHECK_INT(r.ns, 2 + N); /* +Inf given: none added */
    for (int i = 0; i < N && 2 + (size_t)i < r.ns; i++) {
        char want[64];
        snprintf(want, sizeof want, "f_bucket{le=\"%s\"}", cases[i].le);
        CHECK_STR(r.s[2 + i].series, want);
    }
    rec_free(&r);
}

void test_expo_proto_counter_exemplar_and_timestamps(void)
{
    Io__Prometheus__Client__LabelPair el = IO__PROMETHEUS__CLIENT__LABEL_PAIR__INIT;
    el.name = "trace_id";
    el.value = "abc";
    Io__Prometheus__Client__LabelPair *els[] = {&el};
    Io__Prometheus__Client__Timestamp ts = IO__PROMETHEUS__CLIENT__TIMESTAMP__INIT;
    ts.seconds = 1700000000;
    ts.nanos = 500000000;
    Io__Prometheus__Client__Exemplar ex = IO__PROMETHEUS__CLIENT__EXEMPLAR__INIT;
    ex.n_label = 1;
    ex.label = els;
    ex.value = 1.5;
    ex.timestamp = &ts;
    Io__Prometheus__Client__Counter c = IO__PROMETHEUS__CLIENT__COUNTER__INIT;
    c.value = 42;
    c.exemplar = &ex;
    Io__Prometheus__Client__Metric m = IO__PROMETHEUS__CLIENT__METRIC__INIT, *slot;
    m.counter = &c;
    Io__Prometheus__Client__MetricFamily f1 =
        one_family("reqs_total", IO__PROMETHEUS__CLIENT__METRIC_TYPE__COUNTER, &m, &slot);

    /* gauges: one with a timestamp, one with 0 (no timestamp) */
    Io__Prometheus__Client__Gauge g1 = IO__PROMETHEUS__CLIENT__GAUGE__INIT,
                                  g2 = IO__PROMETHEUS__CLIENT__GAUGE__INIT;
    g1.value = -3.5;
    g2.value = NAN;
    Io__Prometheus__Client__LabelPair a = IO__PROMETHEUS__CLIENT__LABEL_PAIR__INIT,
                                      bl = IO__PROMETHEUS__CLIENT__LABEL_PAIR__INIT;
    a.name = "k";
    a.value = "1";
    bl.name = "k";
    bl.value = "2";
    Io__Prometheus__Client__LabelPair *la[] = {&a}, *lb[] = {&bl};
    Io__Prometheus__Client__Metric gm1 = IO__PROMETHEUS__CLIENT__METRIC__INIT,
                                   gm2 = IO__PROMETHEUS__CLIENT__METRIC__INIT;
    gm1.gauge = &g1;
    gm1.timestamp_ms = 1234;
    gm1.n_label = 1;
    gm1.label = la;
    gm2.gauge = &g2;
    gm2.n_label = 1;
    gm2.label = lb;
    Io__Prometheus__Client__Metric *gms[] = {&gm1, &gm2};
    Io__Prometheus__Client__MetricFamily f2 = IO__PROMETHEUS__CLIENT__METRIC_FAMILY__INIT;
    f2.name = "temp";
    f2.type = IO__PROMETHEUS__CLIENT__METRIC_TYPE__GAUGE;
    f2.n_metric = 2;
    f2.metric = gms;

    /* untyped, with a UTF-8 name Prometheus 3 accepts */
    Io__Prometheus__Client__Untyped u = IO__PROMETHEUS__CLIENT__UNTYPED__INIT;
    u.value = 7;
    Io__Prometheus__Client__Metric um = IO__PROMETHEUS__CLIENT__METRIC__INIT, *uslot;
    um.untyped = &u;
    Io__Prometheus__Client__MetricFamily f3 =
        one_family("température.°C", IO__PROMETHEUS__CLIENT__METRIC_TYPE__UNTYPED, &um, &uslot);

    /* a family without metrics is skipped, as Prometheus does */
    Io__Prometheus__Client__MetricFamily f4 = IO__PROMETHEUS__CLIENT__METRIC_FAMILY__INIT;
    f4.name = "empty";

    body b = {0};
    put_family(&b, &f1);
    put_family(&b, &f4);
    put_family(&b, &f2);
    put_family(&b, &f3);
    rec r = {0};
    dr_error err;
    CHECK_INT(parse(b.b, b.n, &r, &err), 0);
    CHECK_INT(r.nm, 3);
    CHECK_INT(r.ns, 4);
    if (r.ns == 4) {
        CHECK_STR(r.s[0].series, "reqs_total");
        CHECK_INT(r.s[0].type, DR_MT_COUNTER);
        CHECK(r.s[0].value == 42);
        CHECK(r.s[0].has_ex);
        CHECK_STR(r.s[0].ex, "{trace_id=\"abc\"}");
        CHECK(r.s[0].ex_value == 1.5);
        CHECK(r.s[0].ex_has_ts);
        CHECK_INT(r.s[0].ex_ts, 1700000000500);
        CHECK(!r.s[0].has_ts);

        CHECK_STR(r.s[1].series, "temp{k=\"1\"}");
        CHECK(r.s[1].value == -3.5);
        CHECK(r.s[1].has_ts);
        CHECK_INT(r.s[1].ts, 1234);
        CHECK(!r.s[1].has_ex);
        CHECK_STR(r.s[2].series, "temp{k=\"2\"}");
        CHECK(isnan(r.s[2].value));
        CHECK(!r.s[2].has_ts);
        CHECK_INT(r.s[2].type, DR_MT_GAUGE);

        CHECK_STR(r.s[3].family, "température.°C");
        CHECK_INT(r.s[3].type, DR_MT_UNKNOWN);
        CHECK(r.s[3].value == 7);
    }
    if (r.nm == 3)
        CHECK_STR(r.m[1].family, "temp");

    /* a sink's non-zero return stops the parse and is returned */
    rec r2 = {.stop_after = 2};
    CHECK_INT(parse(b.b, b.n, &r2, &err), 7);
    CHECK_INT(r2.ns, 2);
    rec_free(&r2);
    rec_free(&r);
}

/* ---- malformed input ---------------------------------------------------------------------- */

/* DR_EINVAL, err giving the byte offset (prefix "byte N: ") and the reason. */
static void expect_einval(const void *body, size_t len, const char *prefix, const char *reason)
{
    rec r = {0};
    dr_error err;
    CHECK_INT(parse(body, len, &r, &err), DR_EINVAL);
    if (strncmp(err.msg, prefix, strlen(prefix)) != 0 || strstr(err.msg, reason) == NULL) {
        char want[256];
        snprintf(want, sizeof want, "%s...%s...", prefix, reason);
        CHECK_STR(err.msg, want);
    }
    rec_free(&r);
}

static Io__Prometheus__Client__MetricFamily
labelled_gauge(const char *name, Io__Prometheus__Client__LabelPair **lps, size_t n, int type,
               Io__Prometheus__Client__Metric *m, Io__Prometheus__Client__Metric **slot)
{
    Io__Prometheus__Client__Metric init = IO__PROMETHEUS__CLIENT__METRIC__INIT;
    *m = init;
    m->n_label = n;
    m->label = lps;
    return one_family(name, type, m, slot);
}

void test_expo_proto_malformed(void)
{
    expect_einval("\x80", 1, "byte 0: ", "truncated varint");
    expect_einval("\x05\x0a\x01", 3, "byte 0: ", "message length past the end");
    expect_einval("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11,
                  "byte 0: ", "varint longer than 10 bytes");
    expect_einval("\x80\x80\x80\x80\x40", 5, "byte 0: ", "longer than 64 MiB");
    expect_einval("\x03\xff\xff\xff", 4, "byte 1: ", "truncated varint");
    /* field 1 (name) with a length past its message */
    expect_einval("\x03\x0a\x09x", 4, "byte 1: ", "field length past");

    Io__Prometheus__Client__LabelPair l1 = IO__PROMETHEUS__CLIENT__LABEL_PAIR__INIT,
                                      l2 = IO__PROMETHEUS__CLIENT__LABEL_PAIR__INIT;
    Io__Prometheus__Client__LabelPair *lps[] = {&l1, &l2};
    Io__Prometheus__Client__Metric m, *slot;
    Io__Prometheus__Client__MetricFamily mf;
    body b;

    /* an invalid UTF-8 family name */
    mf = labelled_gauge("bad\xff\xfename", NULL, 0, 1, &m, &slot);
    b = (body){0};
    put_family(&b, &mf);
    expect_einval(b.b, b.n, "byte 0: ", "invalid metric name");

    /* an empty family name */
    mf = labelled_gauge("", NULL, 0, 1, &m, &slot);
    b = (body){0};
    put_family(&b, &mf);
    expect_einval(b.b, b.n, "byte 0: ", "invalid metric name");

    /* but an invalid name in a family without metrics is not looked at */
    mf = labelled_gauge("bad\xff", NULL, 0, 1, &m, &slot);
    mf.n_metric = 0;
    b = (body){0};
    put_family(&b, &mf);
    rec r = {0};
    dr_error err;
    CHECK_INT(parse(b.b, b.n, &r, &err), 0);
    CHECK_INT(r.nm, 0);
    rec_free(&r);

    /* duplicate label names */
    l1.name = "a";
    l1.value = "1";
    l2.name = "a";
    l2.value = "2";
    mf = labelled_gauge("g", lps, 2, 1, &m, &slot);
    b = (body){0};
    put_family(&b, &mf);
    expect_einval(b.b, b.n, "byte ", "duplicate label name");

    /* a label named as the metric-name label duplicates it */
    l1.name = "__name__";
    mf = labelled_gauge("g", lps, 1, 1, &m, &slot);
    b = (body){0};
    put_family(&b, &mf);
    expect_einval(b.b, b.n, "byte ", "duplicate label name");

    /* a summary with a quantile label of its own */
    l1.name = "quantile";
    Io__Prometheus__Client__Quantile q = IO__PROMETHEUS__CLIENT__QUANTILE__INIT;
    Io__Prometheus__Client__Quantile *qs[] = {&q};
    Io__Prometheus__Client__Summary su = IO__PROMETHEUS__CLIENT__SUMMARY__INIT;
    su.n_quantile = 1;
    su.quantile = qs;
    mf = labelled_gauge("s", lps, 1, IO__PROMETHEUS__CLIENT__METRIC_TYPE__SUMMARY, &m, &slot);
    m.summary = &su;
    b = (body){0};
    put_family(&b, &mf);
    expect_einval(b.b, b.n, "byte ", "duplicate label name");

    /* an invalid UTF-8 label name, an empty one, an invalid value */
    l1.name = "\xc3\x28";
    l1.value = "v";
    mf = labelled_gauge("g", lps, 1, 1, &m, &slot);
    b = (body){0};
    put_family(&b, &mf);
    expect_einval(b.b, b.n, "byte ", "invalid label name");
    l1.name = "";
    b = (body){0};
    put_family(&b, &mf);
    expect_einval(b.b, b.n, "byte ", "invalid label name");
    l1.name = "ok";
    l1.value = "\xed\xa0\x80"; /* a UTF-16 surrogate */
    b = (body){0};
    put_family(&b, &mf);
    expect_einval(b.b, b.n, "byte ", "invalid label value");

    /* an unknown metric type; a unit that does not end the name */
    mf = labelled_gauge("g", NULL, 0, 9, &m, &slot);
    b = (body){0};
    put_family(&b, &mf);
    expect_einval(b.b, b.n, "byte 0: ", "unknown metric type");
    mf = labelled_gauge("g_bytes_total", NULL, 0, IO__PROMETHEUS__CLIENT__METRIC_TYPE__COUNTER, &m,
                        &slot);
    mf.unit = "seconds";
    b = (body){0};
    put_family(&b, &mf);
    expect_einval(b.b, b.n, "byte 0: ", "unit is not a suffix");
    mf.unit = "bytes"; /* before _total on a counter: fine */
    b = (body){0};
    put_family(&b, &mf);
    r = (rec){0};
    CHECK_INT(parse(b.b, b.n, &r, &err), 0);
    CHECK_INT(r.ns, 1);
    rec_free(&r);

    /* native histogram spans that do not cover the deltas given */
    Io__Prometheus__Client__BucketSpan sp = IO__PROMETHEUS__CLIENT__BUCKET_SPAN__INIT;
    sp.length = 3;
    Io__Prometheus__Client__BucketSpan *sps[] = {&sp};
    int64_t deltas[] = {1, 1};
    Io__Prometheus__Client__Histogram h = IO__PROMETHEUS__CLIENT__HISTOGRAM__INIT;
    h.n_positive_span = 1;
    h.positive_span = sps;
    h.n_positive_delta = 2;
    h.positive_delta = deltas;
    mf = labelled_gauge("h", NULL, 0, IO__PROMETHEUS__CLIENT__METRIC_TYPE__HISTOGRAM, &m, &slot);
    m.histogram = &h;
    b = (body){0};
    put_family(&b, &mf);
    expect_einval(b.b, b.n, "byte ", "spans do not match");

    /* an error in a later message names that message's offset */
    mf = labelled_gauge("g", NULL, 0, 1, &m, &slot);
    b = (body){0};
    put_family(&b, &mf);
    size_t first = b.n;
    put_raw(&b, "\x07\x0a\x05", 3);
    char want[32];
    snprintf(want, sizeof want, "byte %zu: ", first);
    expect_einval(b.b, b.n, want, "past the end");
    r = (rec){0};
    CHECK_INT(parse(b.b, b.n, &r, &err), DR_EINVAL);
    CHECK_INT(r.ns, 1); /* the first one was handed over: the caller discards it */
    rec_free(&r);

    /* empty body: nothing, no error */
    r = (rec){0};
    CHECK_INT(parse("", 0, &r, &err), 0);
    CHECK_INT(r.ns, 0);
    rec_free(&r);
}

/* Unpacked repeated fields (proto2 encoders send them so) read as packed
 * ones: a native histogram written by hand with one delta per field. */
void test_expo_proto_unpacked_repeated(void)
{
    /* Histogram: positive_span {offset 0 (field 1 absent), length 2};
     * positive_delta 13 as two varint fields: 1 (zigzag 2), 1 (zigzag 2);
     * schema 5 = 1 (zigzag 2). */
    static const uint8_t hist[] = {0x28, 0x02, 0x62, 0x02, 0x10, 0x02, 0x68, 0x02, 0x68, 0x02};
    uint8_t metric[2 + sizeof hist];
    metric[0] = 0x3a; /* field 7, length-delimited */
    metric[1] = sizeof hist;
    memcpy(metric + 2, hist, sizeof hist);
    uint8_t fam[64];
    size_t n = 0;
    fam[n++] = 0x0a; /* name */
    fam[n++] = 1;
    fam[n++] = 'h';
    fam[n++] = 0x18; /* type HISTOGRAM */
    fam[n++] = 4;
    fam[n++] = 0x22; /* metric */
    fam[n++] = sizeof metric;
    memcpy(fam + n, metric, sizeof metric);
    n += sizeof metric;
    body b = {0};
    put_varint(&b, n);
    put_raw(&b, fam, n);
    rec r = {0};
    dr_error err;
    CHECK_INT(parse(b.b, b.n, &r, &err), 0);
    CHECK_INT(r.ns, 1);
    if (r.ns == 1) {
        CHECK(r.s[0].has_hist);
        CHECK_INT(r.s[0].h.schema, 1);
        CHECK_INT(r.s[0].h.n_pos_spans, 1);
        CHECK_INT(r.s[0].pos_spans[0].length, 2);
        CHECK_INT(r.s[0].h.n_pos, 2);
        CHECK_INT(r.s[0].pos_deltas[0], 1);
        CHECK_INT(r.s[0].pos_deltas[1], 1);
    }
    rec_free(&r);
}

static int count_cb(void *ctx, const dr_expo_sample *s)
{
    (void)s;
    (*(size_t *)ctx)++;
    return 0;
}

/* Damaged copies of the live capture (cut short, or a byte changed) parse
 * or fail cleanly: never a crash, never another error code. */
void test_expo_proto_damaged_capture(void)
{
    size_t len;
    char *bin = dt_read_file(
        dt_fixture("exposition/live-node-exporter-1.5.0.delimited-protobuf.bin"), &len);
    CHECK(bin != NULL);
    if (!bin)
        return;
    char *copy = malloc(len);
    size_t n = 0, bad = 0;
    dr_expo_sink sink = {.ctx = &n, .sample = count_cb};
    dr_error err;
    for (size_t i = 0; i < len; i += 37) {
        int rc = dr_expo_parse_protobuf(bin, i, &sink, &err);
        bad += rc != 0 && rc != DR_EINVAL;
        memcpy(copy, bin, len);
        copy[i] ^= (char)(0x5a + i % 7);
        rc = dr_expo_parse_protobuf(copy, len, &sink, &err);
        bad += rc != 0 && rc != DR_EINVAL;
    }
    CHECK_INT(bad, 0);
    free(copy);
    free(bin);
}
