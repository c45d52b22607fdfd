/*
 * The delimited protobuf exposition format: a body of MetricFamily messages
 * (proto/prometheus_client.proto), each preceded by its length as a varint.
 *
 * The messages are decoded by hand, straight from the body, rather than
 * unpacked into trees: a scrape of a few hundred thousand series then costs
 * no allocation per sample. Label names and values are handed to the sink
 * as pointers into the body. The only memory the parser owns is its label
 * sets and the scratch arrays of native histograms (spans and buckets),
 * reused from one sample to the next and bounded by the message size.
 *
 * What comes out follows Prometheus' protobuf scrape parser with native
 * histograms enabled and classic histograms not scraped in addition:
 *   - counter, gauge, untyped: one sample named after the family;
 *   - summary: name_count, name_sum, then name{quantile="q"} per quantile;
 *   - classic histogram (gauge histograms alike): name_count, name_sum, then
 *     name_bucket{le="b"} per bucket up to the first +Inf one, and a +Inf
 *     bucket holding the sample count when the message has none;
 *   - native histogram (one with spans, a zero threshold or a zero count):
 *     one sample carrying the histogram, its classic buckets ignored.
 * A timestamp_ms of 0 means "no timestamp", as in Prometheus (proto3 cannot
 * tell an absent field from a zero one). Created timestamps are ignored.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expo_internal.h"
#include "json.h" /* dr_utf8_valid_prefix */

/* Largest MetricFamily message accepted (a bound on hostile lengths). */
#define MAX_MESSAGE (64u << 20)
/* Prometheus reads the length prefix as at most a 32-bit varint. */
#define MAX_PREFIX_BYTES 5

/* Wire types. */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* io.prometheus.client.MetricType. */
enum { PT_COUNTER = 0, PT_GAUGE, PT_SUMMARY, PT_UNTYPED, PT_HISTOGRAM, PT_GAUGE_HISTOGRAM };

/* remote write's Histogram.ResetHint */
#define RESET_HINT_GAUGE 3

/* A part of the body being decoded. */
typedef struct span {
    const uint8_t *p, *end;
} span;

/* An absent string: empty, but never a NULL pointer for the sink. */
static const uint8_t empty_bytes[1];
#define EMPTY ((span){empty_bytes, empty_bytes})

/* One field as read from a message. */
typedef struct field {
    uint32_t num;
    int wt;
    const uint8_t *at; /* the tag, for error offsets */
    uint64_t u;        /* WT_VARINT, WT_I64, WT_I32 */
    span s;            /* WT_LEN */
} field;

/* Native histogram scratch: one side (positive or negative) after decoding
 * and compaction. */
typedef struct hside {
    dr_hist_span *spans;
    int64_t *deltas;
    double *counts;
    size_t nspans, nbuckets;
    size_t cap_spans, cap_buckets;
} hside;

typedef struct parser {
    const uint8_t *body;
    const dr_expo_sink *sink;
    dr_error *err;
    dr_labels ls; /* the sample's labels, __name__ first */
    dr_labels ex; /* the exemplar's labels */
    char *names;  /* family name with _count, _sum, _bucket suffixes */
    size_t names_cap;
    hside pos, neg;
    dr_hist_span *raw; /* a side's spans as sent, before compaction */
    size_t raw_cap;
    /* the family being parsed */
    const char *family;
    size_t family_len;
    int ptype;
    dr_metric_type type;
} parser;

/* ---- errors ------------------------------------------------------------------ */

static int fail(parser *ps, const uint8_t *at, const char *what)
{
    dr_error_set(ps->err, "byte %zu: %s", (size_t)(at - ps->body), what);
    return DR_EINVAL;
}

/* ---- wire decoding ------------------------------------------------------------- */

static int read_varint(parser *ps, span *s, uint64_t *out)
{
    uint64_t v = 0;
    const uint8_t *start = s->p;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (s->p >= s->end)
            return fail(ps, start, "truncated varint");
        uint8_t b = *s->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (b < 0x80) {
            *out = v;
            return 0;
        }
    }
    return fail(ps, start, "varint longer than 10 bytes");
}

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static double as_double(uint64_t bits)
{
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static int64_t unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* Reads the next field of a message; *f->s points into s for WT_LEN. */
static int next_field(parser *ps, span *s, field *f)
{
    uint64_t tag;
    f->at = s->p;
    int rc = read_varint(ps, s, &tag);
    if (rc)
        return rc;
    f->num = (uint32_t)(tag >> 3);
    f->wt = (int)(tag & 7);
    if (tag >> 3 == 0 || tag >> 3 > 0x1fffffff)
        return fail(ps, f->at, "invalid field number");
    switch (f->wt) {
    case WT_VARINT:
        return read_varint(ps, s, &f->u);
    case WT_I64:
        if (s->end - s->p < 8)
            return fail(ps, f->at, "truncated fixed64 field");
        f->u = load_le64(s->p);
        s->p += 8;
        return 0;
    case WT_I32:
        if (s->end - s->p < 4)
            return fail(ps, f->at, "truncated fixed32 field");
        f->u = (uint64_t)s->p[0] | (uint64_t)s->p[1] << 8 | (uint64_t)s->p[2] << 16 |
               (uint64_t)s->p[3] << 24;
        s->p += 4;
        return 0;
    case WT_LEN: {
        uint64_t n;
        if ((rc = read_varint(ps, s, &n)))
            return rc;
        if (n > (uint64_t)(s->end - s->p))
            return fail(ps, f->at, "field length past the end of its message");
        f->s.p = s->p;
        f->s.end = s->p + n;
        s->p += n;
        return 0;
    }
    default:
        /* groups (3, 4) are not part of this proto3 schema */
        return fail(ps, f->at, "unsupported wire type");
    }
}

static int want_wt(parser *ps, const field *f, int wt, const char *name)
{
    if (f->wt == wt)
        return 0;
    char msg[96];
    snprintf(msg, sizeof msg, "wrong wire type %d for field %s", f->wt, name);
    return fail(ps, f->at, msg);
}

static int get_double(parser *ps, const field *f, const char *name, double *out)
{
    int rc = want_wt(ps, f, WT_I64, name);
    if (rc == 0)
        *out = as_double(f->u);
    return rc;
}

/* ---- UTF-8 and names ------------------------------------------------------------ */

static bool utf8_ok(span s)
{
    size_t n = (size_t)(s.end - s.p);
    return dr_utf8_valid_prefix((const char *)s.p, n) == n;
}

static size_t slen(span s)
{
    return (size_t)(s.end - s.p);
}

/* Adds a label referencing body bytes; over the label bounds is bad input. */
static int add_label(parser *ps, dr_labels *ls, const uint8_t *at, const char *name, size_t nlen,
                     const char *value, size_t vlen)
{
    int rc = dr_labels_add(ls, name, nlen, value, vlen);
    if (rc == DR_ENOMEM)
        return rc;
    return rc ? fail(ps, at, "label too long or too many labels") : 0;
}

/* ---- float formatting ------------------------------------------------------------- */

/* Formats v as Go's strconv.FormatFloat(v, 'g', -1, 64) with ".0" appended
 * when the result has neither '.' nor 'e': how Prometheus 3 writes the le
 * and quantile labels ("1.0", "0.25", "1e+06", "+Inf"). out holds 32 bytes. */
static size_t format_le(double v, char *out)
{
    if (isnan(v))
        return (size_t)snprintf(out, 32, "NaN");
    if (isinf(v))
        return (size_t)snprintf(out, 32, v > 0 ? "+Inf" : "-Inf");
    if (v == 0)
        return (size_t)snprintf(out, 32, "0.0");
    /* the shortest decimal that reads back as v */
    char e[40];
    for (int prec = 0; prec <= 16; prec++) {
        snprintf(e, sizeof e, "%.*e", prec, v);
        if (strtod(e, NULL) == v)
            break;
    }
    /* e is [-]d[.ddd]e±XX: take the digits and the exponent apart */
    const char *p = e;
    bool neg = *p == '-';
    if (neg)
        p++;
    char digits[24];
    size_t nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.' && nd < sizeof digits - 1)
            digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    int exp = *p == 'e' ? atoi(p + 1) : 0;

    size_t n = 0;
    if (neg)
        out[n++] = '-';
    if (exp < -4 || exp >= 6) {
        /* %e: d[.ddd]e±XX with at least two exponent digits */
        out[n++] = digits[0];
        if (nd > 1) {
            out[n++] = '.';
            memcpy(out + n, digits + 1, nd - 1);
            n += nd - 1;
        }
        n += (size_t)snprintf(out + n, 32 - n, "e%c%02d", exp < 0 ? '-' : '+', abs(exp));
        return n;
    }
    if (exp < 0) {
        /* 0.000ddd */
        out[n++] = '0';
        out[n++] = '.';
        for (int i = -1; i > exp; i--)
            out[n++] = '0';
        memcpy(out + n, digits, nd);
        n += nd;
        out[n] = '\0';
        return n;
    }
    /* ddd[.ddd], the integer part padded with zeros */
    size_t ip = (size_t)exp + 1;
    for (size_t i = 0; i < ip; i++)
        out[n++] = i < nd ? digits[i] : '0';
    out[n++] = '.';
    if (nd > ip) {
        memcpy(out + n, digits + ip, nd - ip);
        n += nd - ip;
    } else {
        out[n++] = '0';
    }
    out[n] = '\0';
    return n;
}

/* ---- emitting samples -------------------------------------------------------------- */

static void sample_init(parser *ps, dr_expo_sample *s, int64_t ts)
{
    memset(s, 0, sizeof *s);
    s->labels = &ps->ls;
    s->family = ps->family;
    s->family_len = ps->family_len;
    s->type = ps->type;
    s->has_ts = ts != 0;
    s->ts_ms = ts;
}

static int emit(parser *ps, dr_expo_sample *s)
{
    dr_expo_labels_key(s->labels, &s->key);
    return ps->sink->sample(ps->sink->ctx, s);
}

/* Sets the sample's metric name (labels[0] is __name__). */
static void set_name(parser *ps, const char *name, size_t len)
{
    ps->ls.v[0].value = name;
    ps->ls.v[0].value_len = (uint32_t)len;
}

/* Adds the le or quantile label for one sample (removed by pop_label). */
static int push_label(parser *ps, const char *name, const char *value, size_t len)
{
    return add_label(ps, &ps->ls, ps->body, name, strlen(name), value, len);
}

static void pop_label(parser *ps)
{
    ps->ls.n--;
}

/* Decodes an Exemplar into ps->ex and the sample's exemplar fields. */
static int parse_exemplar(parser *ps, span m, dr_expo_sample *s)
{
    field f;
    int rc;
    dr_labels_reset(&ps->ex);
    s->exemplar = &ps->ex;
    s->exemplar_value = 0;
    s->exemplar_has_ts = false;
    s->exemplar_ts_ms = 0;
    while (m.p < m.end) {
        if ((rc = next_field(ps, &m, &f)))
            return rc;
        if (f.num == 1) {
            if ((rc = want_wt(ps, &f, WT_LEN, "Exemplar.label")))
                return rc;
            span name = EMPTY, value = EMPTY;
            field g;
            while (f.s.p < f.s.end) {
                if ((rc = next_field(ps, &f.s, &g)))
                    return rc;
                if (g.num == 1 || g.num == 2) {
                    if ((rc = want_wt(ps, &g, WT_LEN, "LabelPair")))
                        return rc;
                    *(g.num == 1 ? &name : &value) = g.s;
                }
            }
            if ((rc = add_label(ps, &ps->ex, f.at, (const char *)name.p, slen(name),
                                (const char *)value.p, slen(value))))
                return rc;
        } else if (f.num == 2) {
            if ((rc = get_double(ps, &f, "Exemplar.value", &s->exemplar_value)))
                return rc;
        } else if (f.num == 3) {
            if ((rc = want_wt(ps, &f, WT_LEN, "Exemplar.timestamp")))
                return rc;
            int64_t sec = 0, nanos = 0;
            field g;
            while (f.s.p < f.s.end) {
                if ((rc = next_field(ps, &f.s, &g)))
                    return rc;
                if (g.num == 1 || g.num == 2) {
                    if ((rc = want_wt(ps, &g, WT_VARINT, "Timestamp")))
                        return rc;
                    if (g.num == 1)
                        sec = (int64_t)g.u;
                    else
                        nanos = (int32_t)g.u;
                }
            }
            s->exemplar_has_ts = true;
            s->exemplar_ts_ms = (int64_t)((uint64_t)sec * 1000u + (uint64_t)(nanos / 1000000));
        }
    }
    return 0;
}

/* Value of a message { double value = 1; } (Gauge, Untyped), plus the
 * exemplar of a Counter (field 2) when s is given. */
static int parse_value_msg(parser *ps, span m, double *v, dr_expo_sample *s)
{
    field f;
    int rc;
    while (m.p < m.end) {
        if ((rc = next_field(ps, &m, &f)))
            return rc;
        if (f.num == 1) {
            if ((rc = get_double(ps, &f, "value", v)))
                return rc;
        } else if (f.num == 2 && s) {
            if ((rc = want_wt(ps, &f, WT_LEN, "Counter.exemplar")))
                return rc;
            if ((rc = parse_exemplar(ps, f.s, s)))
                return rc;
        }
    }
    return 0;
}

static int emit_simple(parser *ps, span m, int64_t ts)
{
    dr_expo_sample s;
    sample_init(ps, &s, ts);
    int rc = parse_value_msg(ps, m, &s.value, ps->ptype == PT_COUNTER ? &s : NULL);
    return rc ? rc : emit(ps, &s);
}

/* name_count, name_sum, name_bucket laid out in ps->names. */
static const char *suffixed(parser *ps, int which, size_t *len)
{
    static const size_t extra[3] = {6, 4, 7}; /* "_count" "_sum" "_bucket" */
    size_t off = 0;
    for (int i = 0; i < which; i++)
        off += ps->family_len + extra[i];
    *len = ps->family_len + extra[which];
    return ps->names + off;
}

static int make_names(parser *ps)
{
    size_t need = 3 * ps->family_len + 17;
    if (need > ps->names_cap) {
        char *n = realloc(ps->names, need);
        if (!n)
            return DR_ENOMEM;
        ps->names = n;
        ps->names_cap = need;
    }
    static const char *const sfx[3] = {"_count", "_sum", "_bucket"};
    char *p = ps->names;
    for (int i = 0; i < 3; i++) {
        memcpy(p, ps->family, ps->family_len);
        p += ps->family_len;
        memcpy(p, sfx[i], strlen(sfx[i]));
        p += strlen(sfx[i]);
    }
    return 0;
}

static int emit_named(parser *ps, int which, double v, int64_t ts)
{
    size_t len;
    const char *name = suffixed(ps, which, &len);
    set_name(ps, name, len);
    dr_expo_sample s;
    sample_init(ps, &s, ts);
    s.value = v;
    return emit(ps, &s);
}

static int emit_summary(parser *ps, span m, int64_t ts)
{
    uint64_t count = 0;
    double sum = 0;
    field f;
    int rc;
    span all = m;
    while (m.p < m.end) {
        if ((rc = next_field(ps, &m, &f)))
            return rc;
        if (f.num == 1) {
            if ((rc = want_wt(ps, &f, WT_VARINT, "Summary.sample_count")))
                return rc;
            count = f.u;
        } else if (f.num == 2) {
            if ((rc = get_double(ps, &f, "Summary.sample_sum", &sum)))
                return rc;
        } else if (f.num == 3) {
            if ((rc = want_wt(ps, &f, WT_LEN, "Summary.quantile")))
                return rc;
        }
    }
    if ((rc = emit_named(ps, 0, (double)count, ts)) || (rc = emit_named(ps, 1, sum, ts)))
        return rc;
    set_name(ps, ps->family, ps->family_len);
    m = all;
    while (m.p < m.end) {
        if ((rc = next_field(ps, &m, &f)))
            return rc;
        if (f.num != 3)
            continue;
        double q = 0, v = 0;
        field g;
        while (f.s.p < f.s.end) {
            if ((rc = next_field(ps, &f.s, &g)))
                return rc;
            if (g.num == 1 && (rc = get_double(ps, &g, "Quantile.quantile", &q)))
                return rc;
            if (g.num == 2 && (rc = get_double(ps, &g, "Quantile.value", &v)))
                return rc;
        }
        char buf[32];
        size_t n = format_le(q, buf);
        if ((rc = push_label(ps, "quantile", buf, n)))
            return rc;
        dr_expo_sample s;
        sample_init(ps, &s, ts);
        s.value = v;
        rc = emit(ps, &s);
        pop_label(ps);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- histograms --------------------------------------------------------------------- */

/* The scalar fields of a Histogram and how many of each repeated field. */
typedef struct hinfo {
    uint64_t count, zero_count;
    double count_f, sum, zero_threshold, zero_count_f;
    int32_t schema;
    size_t n_neg_span, n_pos_span, n_neg_delta, n_pos_delta, n_neg_count, n_pos_count;
    size_t n_bucket, n_exemplar;
} hinfo;

/* Elements in a repeated scalar field: a packed run or a single value. */
static int count_repeated(parser *ps, const field *f, int elem_wt, size_t *n)
{
    if (f->wt == elem_wt) {
        (*n)++;
        return 0;
    }
    if (f->wt != WT_LEN)
        return fail(ps, f->at, "wrong wire type for a repeated field");
    if (elem_wt == WT_I64) {
        if (slen(f->s) % 8)
            return fail(ps, f->at, "packed doubles not a multiple of 8 bytes");
        *n += slen(f->s) / 8;
        return 0;
    }
    span s = f->s;
    uint64_t v;
    while (s.p < s.end) {
        int rc = read_varint(ps, &s, &v);
        if (rc)
            return rc;
        (*n)++;
    }
    return 0;
}

static int scan_hist(parser *ps, span m, hinfo *h)
{
    memset(h, 0, sizeof *h);
    field f;
    int rc = 0;
    while (m.p < m.end && rc == 0) {
        if ((rc = next_field(ps, &m, &f)))
            return rc;
        switch (f.num) {
        case 1:
            if ((rc = want_wt(ps, &f, WT_VARINT, "Histogram.sample_count")) == 0)
                h->count = f.u;
            break;
        case 2:
            rc = get_double(ps, &f, "Histogram.sample_sum", &h->sum);
            break;
        case 3:
            if ((rc = want_wt(ps, &f, WT_LEN, "Histogram.bucket")) == 0)
                h->n_bucket++;
            break;
        case 4:
            rc = get_double(ps, &f, "Histogram.sample_count_float", &h->count_f);
            break;
        case 5:
            if ((rc = want_wt(ps, &f, WT_VARINT, "Histogram.schema")) == 0)
                h->schema = (int32_t)unzigzag((uint32_t)f.u);
            break;
        case 6:
            rc = get_double(ps, &f, "Histogram.zero_threshold", &h->zero_threshold);
            break;
        case 7:
            if ((rc = want_wt(ps, &f, WT_VARINT, "Histogram.zero_count")) == 0)
                h->zero_count = f.u;
            break;
        case 8:
            rc = get_double(ps, &f, "Histogram.zero_count_float", &h->zero_count_f);
            break;
        case 9:
        case 12:
            if ((rc = want_wt(ps, &f, WT_LEN, "Histogram span")) == 0)
                (*(f.num == 9 ? &h->n_neg_span : &h->n_pos_span))++;
            break;
        case 10:
            rc = count_repeated(ps, &f, WT_VARINT, &h->n_neg_delta);
            break;
        case 13:
            rc = count_repeated(ps, &f, WT_VARINT, &h->n_pos_delta);
            break;
        case 11:
            rc = count_repeated(ps, &f, WT_I64, &h->n_neg_count);
            break;
        case 14:
            rc = count_repeated(ps, &f, WT_I64, &h->n_pos_count);
            break;
        case 16:
            if ((rc = want_wt(ps, &f, WT_LEN, "Histogram.exemplars")) == 0)
                h->n_exemplar++;
            break;
        default:
            break;
        }
    }
    return rc;
}

/* Prometheus' test: a histogram is native when it has a span on either
 * side, a zero threshold or a zero count (an empty native histogram with a
 * zero threshold of 0 carries a no-op span to say so). */
static bool is_native(const hinfo *h)
{
    return h->n_neg_span > 0 || h->n_pos_span > 0 || h->zero_threshold > 0 || h->zero_count > 0;
}

static int grow_side(hside *sd, size_t nspans, size_t nbuckets)
{
    /* compaction can split spans: at most one span per bucket, plus one */
    size_t ns = (nspans > nbuckets ? nspans : nbuckets) + 1;
    if (ns > sd->cap_spans) {
        dr_hist_span *p = realloc(sd->spans, ns * sizeof *p);
        if (!p)
            return DR_ENOMEM;
        sd->spans = p;
        sd->cap_spans = ns;
    }
    size_t nb = nbuckets + 1;
    if (nb > sd->cap_buckets) {
        int64_t *d = realloc(sd->deltas, nb * sizeof *d);
        if (!d)
            return DR_ENOMEM;
        sd->deltas = d;
        double *c = realloc(sd->counts, nb * sizeof *c);
        if (!c)
            return DR_ENOMEM;
        sd->counts = c;
        sd->cap_buckets = nb;
    }
    return 0;
}

/* Loads one side's spans (into raw) and bucket counts (into sd) from the
 * message, as sent. */
static int load_side(parser *ps, span m, hside *sd, uint32_t span_field, uint32_t bucket_field,
                     bool is_float, size_t nspans, dr_hist_span *raw)
{
    field f;
    int rc;
    size_t is = 0, ib = 0;
    while (m.p < m.end) {
        if ((rc = next_field(ps, &m, &f)))
            return rc;
        if (f.num == span_field) {
            int32_t off = 0;
            uint32_t len = 0;
            field g;
            while (f.s.p < f.s.end) {
                if ((rc = next_field(ps, &f.s, &g)))
                    return rc;
                if (g.num == 1 || g.num == 2) {
                    if ((rc = want_wt(ps, &g, WT_VARINT, "BucketSpan")))
                        return rc;
                    if (g.num == 1)
                        off = (int32_t)unzigzag((uint32_t)g.u);
                    else
                        len = (uint32_t)g.u;
                }
            }
            if (is < nspans)
                raw[is++] = (dr_hist_span){off, len};
        } else if (f.num == bucket_field) {
            if (is_float) {
                if (f.wt == WT_I64) {
                    sd->counts[ib++] = as_double(f.u);
                } else {
                    for (const uint8_t *p = f.s.p; p < f.s.end; p += 8)
                        sd->counts[ib++] = as_double(load_le64(p));
                }
            } else if (f.wt == WT_VARINT) {
                sd->deltas[ib++] = unzigzag(f.u);
            } else {
                span s = f.s;
                uint64_t v;
                while (s.p < s.end) {
                    if ((rc = read_varint(ps, &s, &v)))
                        return rc;
                    sd->deltas[ib++] = unzigzag(v);
                }
            }
        }
    }
    return 0;
}

/* Rewrites a side as Prometheus' Compact(0) leaves it: empty buckets
 * dropped, the rest in maximal runs of consecutive indices, one span per
 * run. Rejects what Prometheus' validation rejects structurally: spans that
 * do not cover the buckets given, negative gaps, negative counts. */
static int compact_side(parser *ps, const uint8_t *at, hside *sd, const dr_hist_span *raw,
                        size_t nspans, size_t nbuckets, bool is_float)
{
    uint64_t covered = 0;
    for (size_t i = 0; i < nspans; i++)
        covered += raw[i].length;
    if (covered != nbuckets)
        return fail(ps, at, "native histogram spans do not match its bucket count");
    int64_t idx = 0, out_end = 0;
    uint64_t abs_in = 0, prev_out = 0; /* integer counts, wrapping as int64 does */
    size_t k = 0, ns = 0, nb = 0;
    for (size_t i = 0; i < nspans; i++) {
        if (i > 0 && raw[i].offset < 0)
            return fail(ps, at, "native histogram span with a negative offset");
        idx += raw[i].offset;
        for (uint32_t j = 0; j < raw[i].length; j++, idx++, k++) {
            bool empty;
            if (is_float) {
                double c = sd->counts[k];
                if (c < 0)
                    return fail(ps, at, "native histogram bucket with a negative count");
                empty = c == 0;
                if (!empty)
                    sd->counts[nb] = c;
            } else {
                abs_in += (uint64_t)sd->deltas[k];
                if ((int64_t)abs_in < 0)
                    return fail(ps, at, "native histogram bucket with a negative count");
                empty = abs_in == 0;
                if (!empty) {
                    sd->deltas[nb] = (int64_t)(abs_in - prev_out);
                    prev_out = abs_in;
                }
            }
            if (empty)
                continue;
            if (ns > 0 && idx == out_end) {
                sd->spans[ns - 1].length++;
            } else {
                int64_t off = ns > 0 ? idx - out_end : idx;
                if (off > INT32_MAX || off < INT32_MIN)
                    return fail(ps, at, "native histogram bucket index out of range");
                sd->spans[ns++] = (dr_hist_span){(int32_t)off, 1};
            }
            out_end = idx + 1;
            nb++;
        }
    }
    sd->nspans = ns;
    sd->nbuckets = nb;
    return 0;
}

static int build_side(parser *ps, span m, const uint8_t *at, hside *sd, uint32_t span_field,
                      uint32_t bucket_field, bool is_float, size_t nspans, size_t nbuckets)
{
    int rc = grow_side(sd, nspans, nbuckets);
    if (rc)
        return rc;
    /* the spans as sent are kept apart: compaction may write more spans
     * than it has read */
    if (nspans > ps->raw_cap) {
        dr_hist_span *raw = realloc(ps->raw, nspans * sizeof *raw);
        if (!raw)
            return DR_ENOMEM;
        ps->raw = raw;
        ps->raw_cap = nspans;
    }
    rc = load_side(ps, m, sd, span_field, bucket_field, is_float, nspans, ps->raw);
    if (rc == 0)
        rc = compact_side(ps, at, sd, ps->raw, nspans, nbuckets, is_float);
    return rc;
}

/* The native histogram's exemplar: the first of Histogram.exemplars with a
 * timestamp or, when that field is empty, the first classic bucket's
 * exemplar with a timestamp (Prometheus drops exemplars without one for
 * native histograms). */
static int native_exemplar(parser *ps, span m, const hinfo *h, dr_expo_sample *s)
{
    field f;
    int rc;
    while (m.p < m.end) {
        if ((rc = next_field(ps, &m, &f)))
            return rc;
        span ex = {0};
        bool found = false;
        if (h->n_exemplar > 0 && f.num == 16) {
            ex = f.s;
            found = true;
        } else if (h->n_exemplar == 0 && f.num == 3) {
            field g;
            while (f.s.p < f.s.end) {
                if ((rc = next_field(ps, &f.s, &g)))
                    return rc;
                if (g.num == 3) {
                    if ((rc = want_wt(ps, &g, WT_LEN, "Bucket.exemplar")))
                        return rc;
                    ex = g.s;
                    found = true;
                }
            }
        }
        if (!found)
            continue;
        if ((rc = parse_exemplar(ps, ex, s)))
            return rc;
        if (s->exemplar_has_ts)
            return 0;
    }
    s->exemplar = NULL;
    s->exemplar_value = 0;
    s->exemplar_has_ts = false;
    s->exemplar_ts_ms = 0;
    return 0;
}

static int emit_native(parser *ps, span m, const uint8_t *at, const hinfo *h, int64_t ts)
{
    dr_native_hist nh;
    memset(&nh, 0, sizeof nh);
    nh.is_float = h->count_f > 0 || h->zero_count_f > 0;
    nh.count_int = h->count;
    nh.count_float = h->count_f;
    nh.sum = h->sum;
    nh.schema = h->schema;
    nh.zero_threshold = h->zero_threshold;
    nh.zero_count_int = h->zero_count;
    nh.zero_count_float = h->zero_count_f;
    nh.reset_hint = ps->ptype == PT_GAUGE_HISTOGRAM ? RESET_HINT_GAUGE : 0;
    int rc = build_side(ps, m, at, &ps->pos, 12, nh.is_float ? 14 : 13, nh.is_float, h->n_pos_span,
                        nh.is_float ? h->n_pos_count : h->n_pos_delta);
    if (rc == 0)
        rc = build_side(ps, m, at, &ps->neg, 9, nh.is_float ? 11 : 10, nh.is_float, h->n_neg_span,
                        nh.is_float ? h->n_neg_count : h->n_neg_delta);
    if (rc)
        return rc;
    nh.pos_spans = ps->pos.spans;
    nh.n_pos_spans = (uint32_t)ps->pos.nspans;
    nh.neg_spans = ps->neg.spans;
    nh.n_neg_spans = (uint32_t)ps->neg.nspans;
    nh.n_pos = (uint32_t)ps->pos.nbuckets;
    nh.n_neg = (uint32_t)ps->neg.nbuckets;
    if (nh.is_float) {
        nh.pos_counts = ps->pos.counts;
        nh.neg_counts = ps->neg.counts;
    } else {
        nh.pos_deltas = ps->pos.deltas;
        nh.neg_deltas = ps->neg.deltas;
    }
    dr_expo_sample s;
    sample_init(ps, &s, ts);
    s.hist = &nh;
    if ((rc = native_exemplar(ps, m, h, &s)))
        return rc;
    return emit(ps, &s);
}

/* A classic bucket's sample: name_bucket{le="b"} with the cumulative count
 * (the float count when non-zero, as Prometheus reads it). */
static int emit_bucket(parser *ps, span b, int64_t ts, bool *was_inf)
{
    uint64_t cnt = 0;
    double cnt_f = 0, ub = 0;
    span ex = {0};
    bool has_ex = false;
    field f;
    int rc;
    while (b.p < b.end) {
        if ((rc = next_field(ps, &b, &f)))
            return rc;
        if (f.num == 1) {
            if ((rc = want_wt(ps, &f, WT_VARINT, "Bucket.cumulative_count")))
                return rc;
            cnt = f.u;
        } else if (f.num == 2) {
            if ((rc = get_double(ps, &f, "Bucket.upper_bound", &ub)))
                return rc;
        } else if (f.num == 3) {
            if ((rc = want_wt(ps, &f, WT_LEN, "Bucket.exemplar")))
                return rc;
            ex = f.s;
            has_ex = true;
        } else if (f.num == 4) {
            if ((rc = get_double(ps, &f, "Bucket.cumulative_count_float", &cnt_f)))
                return rc;
        }
    }
    dr_expo_sample s;
    sample_init(ps, &s, ts);
    s.value = cnt_f != 0 ? cnt_f : (double)cnt;
    if (has_ex && (rc = parse_exemplar(ps, ex, &s)))
        return rc;
    char buf[32];
    size_t n = format_le(ub, buf);
    if ((rc = push_label(ps, "le", buf, n)))
        return rc;
    rc = emit(ps, &s);
    pop_label(ps);
    *was_inf = isinf(ub) && ub > 0;
    return rc;
}

static int emit_classic(parser *ps, span m, const hinfo *h, int64_t ts)
{
    double count = h->count_f != 0 ? h->count_f : (double)h->count;
    int rc;
    if ((rc = emit_named(ps, 0, count, ts)) || (rc = emit_named(ps, 1, h->sum, ts)))
        return rc;
    size_t len;
    const char *name = suffixed(ps, 2, &len);
    set_name(ps, name, len);
    bool inf = false;
    field f;
    /* buckets up to the first +Inf one; those after it are ignored */
    while (m.p < m.end && !inf) {
        if ((rc = next_field(ps, &m, &f)))
            return rc;
        if (f.num == 3 && (rc = emit_bucket(ps, f.s, ts, &inf)))
            return rc;
    }
    if (inf)
        return 0;
    if ((rc = push_label(ps, "le", "+Inf", 4)))
        return rc;
    dr_expo_sample s;
    sample_init(ps, &s, ts);
    s.value = count;
    rc = emit(ps, &s);
    pop_label(ps);
    return rc;
}

static int emit_histogram(parser *ps, span m, const uint8_t *at, int64_t ts)
{
    hinfo h;
    int rc = scan_hist(ps, m, &h);
    if (rc)
        return rc;
    if (is_native(&h))
        return emit_native(ps, m, at, &h, ts);
    return emit_classic(ps, m, &h, ts);
}

/* ---- metrics and families ------------------------------------------------------------ */

static int cmp_label_name(const void *a, const void *b)
{
    const dr_label *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    if (c)
        return c;
    return (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

/* True if two labels of the set (or one of them and `extra`, the le or
 * quantile label the samples will add) share a name. */
static bool has_dup_name(const dr_labels *ls, const char *extra)
{
    uint32_t n = ls->n;
    size_t elen = extra ? strlen(extra) : 0;
    if (n <= 32) {
        for (uint32_t i = 0; i < n; i++) {
            if (extra && ls->v[i].name_len == elen && memcmp(ls->v[i].name, extra, elen) == 0)
                return true;
            for (uint32_t j = i + 1; j < n; j++)
                if (ls->v[i].name_len == ls->v[j].name_len &&
                    memcmp(ls->v[i].name, ls->v[j].name, ls->v[i].name_len) == 0)
                    return true;
        }
        return false;
    }
    dr_label *c = malloc((n + 1) * sizeof *c);
    if (!c)
        return true; /* cannot tell: refuse rather than pass a bad set */
    memcpy(c, ls->v, n * sizeof *c);
    if (extra)
        c[n++] = (dr_label){.name = extra, .name_len = (uint32_t)elen};
    qsort(c, n, sizeof *c, cmp_label_name);
    bool dup = false;
    for (uint32_t i = 1; i < n && !dup; i++)
        dup = cmp_label_name(&c[i - 1], &c[i]) == 0;
    free(c);
    return dup;
}

static int parse_label(parser *ps, const field *lf)
{
    span m = lf->s, name = {0}, value = {0};
    field f;
    int rc;
    while (m.p < m.end) {
        if ((rc = next_field(ps, &m, &f)))
            return rc;
        if (f.num == 1 || f.num == 2) {
            if ((rc = want_wt(ps, &f, WT_LEN, f.num == 1 ? "LabelPair.name" : "LabelPair.value")))
                return rc;
            *(f.num == 1 ? &name : &value) = f.s;
        }
    }
    if (slen(name) == 0 || !utf8_ok(name))
        return fail(ps, lf->at, "invalid label name (empty or not UTF-8)");
    if (!utf8_ok(value))
        return fail(ps, lf->at, "invalid label value (not UTF-8)");
    return add_label(ps, &ps->ls, lf->at, (const char *)name.p, slen(name), (const char *)value.p,
                     slen(value));
}

/* The Metric field that carries the family type's value. */
static uint32_t value_field(int ptype)
{
    switch (ptype) {
    case PT_GAUGE:
        return 2;
    case PT_COUNTER:
        return 3;
    case PT_SUMMARY:
        return 4;
    case PT_UNTYPED:
        return 5;
    default:
        return 7;
    }
}

static int parse_metric(parser *ps, const field *mf)
{
    span m = mf->s, val = {mf->s.end, mf->s.end};
    const uint8_t *val_at = mf->at;
    int64_t ts = 0;
    uint32_t want = value_field(ps->ptype);
    field f;
    int rc;
    dr_labels_reset(&ps->ls);
    if ((rc = add_label(ps, &ps->ls, mf->at, "__name__", 8, ps->family, ps->family_len)))
        return rc;
    while (m.p < m.end) {
        if ((rc = next_field(ps, &m, &f)))
            return rc;
        if (f.num == 1) {
            if ((rc = want_wt(ps, &f, WT_LEN, "Metric.label")) || (rc = parse_label(ps, &f)))
                return rc;
        } else if (f.num == 6) {
            if ((rc = want_wt(ps, &f, WT_VARINT, "Metric.timestamp_ms")))
                return rc;
            ts = (int64_t)f.u;
        } else if (f.num >= 2 && f.num <= 7) {
            if ((rc = want_wt(ps, &f, WT_LEN, "Metric value")))
                return rc;
            if (f.num == want) {
                val = f.s;
                val_at = f.at;
            }
        }
    }
    const char *magic = NULL;
    if (ps->ptype == PT_SUMMARY)
        magic = "quantile";
    else if (ps->ptype == PT_HISTOGRAM || ps->ptype == PT_GAUGE_HISTOGRAM)
        magic = "le";
    if (has_dup_name(&ps->ls, magic))
        return fail(ps, mf->at, "duplicate label name");
    switch (ps->ptype) {
    case PT_SUMMARY:
        return emit_summary(ps, val, ts);
    case PT_HISTOGRAM:
    case PT_GAUGE_HISTOGRAM:
        return emit_histogram(ps, val, val_at, ts);
    default:
        return emit_simple(ps, val, ts);
    }
}

static dr_metric_type map_type(int ptype)
{
    switch (ptype) {
    case PT_COUNTER:
        return DR_MT_COUNTER;
    case PT_GAUGE:
        return DR_MT_GAUGE;
    case PT_SUMMARY:
        return DR_MT_SUMMARY;
    case PT_HISTOGRAM:
        return DR_MT_HISTOGRAM;
    case PT_GAUGE_HISTOGRAM:
        return DR_MT_GAUGEHISTOGRAM;
    default:
        return DR_MT_UNKNOWN;
    }
}

static bool ends_with_unit(const char *name, size_t len, span unit)
{
    size_t ul = slen(unit);
    return len >= ul + 1 && memcmp(name + len - ul, unit.p, ul) == 0 && name[len - ul - 1] == '_';
}

/* Prometheus' rule: a unit must be the last part of the name ("_seconds"),
 * before "_total" for a counter named so. */
static bool unit_ok(const char *name, size_t len, int ptype, span unit)
{
    if (slen(unit) == 0)
        return true;
    if (ptype == PT_COUNTER && len >= 6 && memcmp(name + len - 6, "_total", 6) == 0)
        return ends_with_unit(name, len - 6, unit);
    return ends_with_unit(name, len, unit);
}

static int parse_family(parser *ps, span m, const uint8_t *at)
{
    span name = EMPTY, help = EMPTY, unit = EMPTY, all = m;
    uint64_t type = 0;
    size_t nmetrics = 0;
    field f;
    int rc;
    while (m.p < m.end) {
        if ((rc = next_field(ps, &m, &f)))
            return rc;
        switch (f.num) {
        case 1:
        case 2:
        case 5:
            if ((rc = want_wt(ps, &f, WT_LEN, "MetricFamily string")))
                return rc;
            *(f.num == 1 ? &name : f.num == 2 ? &help : &unit) = f.s;
            break;
        case 3:
            if ((rc = want_wt(ps, &f, WT_VARINT, "MetricFamily.type")))
                return rc;
            type = f.u;
            break;
        case 4:
            if ((rc = want_wt(ps, &f, WT_LEN, "MetricFamily.metric")))
                return rc;
            nmetrics++;
            break;
        default:
            break;
        }
    }
    /* like Prometheus, a family without metrics is skipped unchecked */
    if (nmetrics == 0)
        return 0;
    if (slen(name) == 0 || !utf8_ok(name))
        return fail(ps, at, "invalid metric name (empty or not UTF-8)");
    if (!utf8_ok(help))
        return fail(ps, at, "help is not valid UTF-8");
    if (type > PT_GAUGE_HISTOGRAM)
        return fail(ps, at, "unknown metric type");
    ps->family = (const char *)name.p;
    ps->family_len = slen(name);
    ps->ptype = (int)type;
    ps->type = map_type(ps->ptype);
    if (!unit_ok(ps->family, ps->family_len, ps->ptype, unit))
        return fail(ps, at, "unit is not a suffix of the metric name");
    if (ps->family_len > DR_LABELS_MAX_BYTES - 8)
        return fail(ps, at, "metric name too long");
    if (type == PT_SUMMARY || type == PT_HISTOGRAM || type == PT_GAUGE_HISTOGRAM) {
        if ((rc = make_names(ps)))
            return rc;
    }
    if (ps->sink->meta) {
        dr_expo_meta meta = {
            .family = ps->family,
            .family_len = ps->family_len,
            .type = ps->type,
            .help = (const char *)help.p,
            .help_len = slen(help),
            .unit = (const char *)unit.p,
            .unit_len = slen(unit),
        };
        if ((rc = ps->sink->meta(ps->sink->ctx, &meta)))
            return rc;
    }
    m = all;
    while (m.p < m.end) {
        if ((rc = next_field(ps, &m, &f)))
            return rc;
        if (f.num == 4 && (rc = parse_metric(ps, &f)))
            return rc;
    }
    return 0;
}

static void parser_free(parser *ps)
{
    dr_labels_free(&ps->ls);
    dr_labels_free(&ps->ex);
    free(ps->names);
    free(ps->raw);
    hside *sides[2] = {&ps->pos, &ps->neg};
    for (int i = 0; i < 2; i++) {
        free(sides[i]->spans);
        free(sides[i]->deltas);
        free(sides[i]->counts);
    }
}

int dr_expo_parse_protobuf(const char *body, size_t len, const dr_expo_sink *sink, dr_error *err)
{
    parser ps;
    memset(&ps, 0, sizeof ps);
    ps.body = (const uint8_t *)body;
    ps.sink = sink;
    ps.err = err;
    dr_labels_init(&ps.ls);
    dr_labels_init(&ps.ex);
    span in = {ps.body, ps.body + len};
    int rc = 0;
    while (in.p < in.end && rc == 0) {
        const uint8_t *at = in.p;
        uint64_t n;
        if ((rc = read_varint(&ps, &in, &n)))
            break;
        if (in.p - at > MAX_PREFIX_BYTES) {
            rc = fail(&ps, at, "message length prefix longer than 5 bytes");
        } else if (n > MAX_MESSAGE) {
            rc = fail(&ps, at, "message longer than 64 MiB");
        } else if (n > (uint64_t)(in.end - in.p)) {
            rc = fail(&ps, at, "message length past the end of the body");
        } else {
            span m = {in.p, in.p + n};
            in.p += n;
            rc = parse_family(&ps, m, at);
        }
    }
    parser_free(&ps);
    return rc;
}
