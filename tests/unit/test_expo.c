/* The text exposition parsers: conformance tables, real payloads, errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drover/plugin.h"
#include "expo.h"
#include "test.h"

/* ---- a sink that keeps what it was given --------------------------------- */

typedef struct got_sample {
    char *series; /* dr_labels_format of the labels: name{a="1",...} */
    char *family;
    dr_metric_type type;
    double value;
    bool has_ts;
    int64_t ts;
    char *exemplar; /* NULL without one */
    double ex_value;
    bool ex_has_ts;
    int64_t ex_ts;
} got_sample;

typedef struct got_meta {
    char *family, *help, *unit;
    dr_metric_type type;
    size_t before; /* samples seen before this call */
} got_meta;

/* Keys seen, with the labels they stood for (open addressing). */
typedef struct key_slot {
    dr_expo_key key;
    char *series; /* NULL: empty slot */
} key_slot;

typedef struct key_memory {
    key_slot *slots;
    size_t cap, n;
    bool answer;    /* the known callback answers from memory (else: no) */
    size_t hits;    /* samples that came with labels NULL */
    size_t clashes; /* one key seen for two label sets */
} key_memory;

typedef struct collector {
    got_sample *s;
    size_t n, cap;
    got_meta *m;
    size_t nm, capm;
    size_t stop_at; /* return stop_rc from this sample (1-based), 0: never */
    int stop_rc;
    key_memory *keys; /* when set, the parse has a known callback */
} collector;

static key_slot *key_slot_of(key_memory *km, const dr_expo_key *k)
{
    if (km->cap == 0)
        return NULL;
    for (size_t i = (size_t)k->a & (km->cap - 1);; i = (i + 1) & (km->cap - 1))
        if (!km->slots[i].series || (km->slots[i].key.a == k->a && km->slots[i].key.b == k->b))
            return &km->slots[i];
}

static void key_remember(key_memory *km, const dr_expo_key *k, const char *series)
{
    if ((km->n + 1) * 2 > km->cap) {
        key_memory grown = {.cap = km->cap ? km->cap * 2 : 1024};
        grown.slots = calloc(grown.cap, sizeof *grown.slots);
        for (size_t i = 0; i < km->cap; i++)
            if (km->slots[i].series)
                *key_slot_of(&grown, &km->slots[i].key) = km->slots[i];
        free(km->slots);
        km->slots = grown.slots;
        km->cap = grown.cap;
    }
    key_slot *e = key_slot_of(km, k);
    if (e->series) {
        km->clashes += strcmp(e->series, series) != 0;
        return;
    }
    e->key = *k;
    e->series = strdup(series);
    km->n++;
}

static void key_memory_free(key_memory *km)
{
    for (size_t i = 0; i < km->cap; i++)
        free(km->slots[i].series);
    free(km->slots);
    memset(km, 0, sizeof *km);
}

static bool on_known(void *ctx, const dr_expo_key *k)
{
    collector *c = ctx;
    if (!c->keys->answer)
        return false;
    key_slot *e = key_slot_of(c->keys, k);
    return e && e->series;
}

static char *dup_mem(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static char *format_labels(const dr_labels *ls)
{
    size_t n = dr_labels_format(ls, NULL, 0);
    char *out = malloc(n + 1);
    dr_labels_format(ls, out, n + 1);
    return out;
}

static int on_sample(void *ctx, const dr_expo_sample *s)
{
    collector *c = ctx;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->s = realloc(c->s, c->cap * sizeof *c->s);
    }
    got_sample *g = &c->s[c->n++];
    memset(g, 0, sizeof *g);
    if (s->labels) {
        g->series = format_labels(s->labels);
        if (c->keys)
            key_remember(c->keys, &s->key, g->series);
    } else {
        /* only a sink with a known callback gets labels NULL, and only for
         * a key it said it knows */
        key_slot *e = c->keys ? key_slot_of(c->keys, &s->key) : NULL;
        g->series = strdup(e && e->series ? e->series : "<labels NULL for an unknown key>");
        if (c->keys)
            c->keys->hits++;
    }
    g->family = dup_mem(s->family, s->family_len);
    g->type = s->type;
    g->value = s->value;
    g->has_ts = s->has_ts;
    g->ts = s->ts_ms;
    if (s->exemplar) {
        g->exemplar = format_labels(s->exemplar);
        g->ex_value = s->exemplar_value;
        g->ex_has_ts = s->exemplar_has_ts;
        g->ex_ts = s->exemplar_ts_ms;
    }
    if (c->stop_at && c->n == c->stop_at)
        return c->stop_rc;
    return 0;
}

static int on_meta(void *ctx, const dr_expo_meta *m)
{
    collector *c = ctx;
    if (c->nm == c->capm) {
        c->capm = c->capm ? c->capm * 2 : 64;
        c->m = realloc(c->m, c->capm * sizeof *c->m);
    }
    got_meta *g = &c->m[c->nm++];
    g->family = dup_mem(m->family, m->family_len);
    g->help = dup_mem(m->help, m->help_len);
    g->unit = dup_mem(m->unit, m->unit_len);
    g->type = m->type;
    g->before = c->n;
    return 0;
}

static void collector_free(collector *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->s[i].series);
        free(c->s[i].family);
        free(c->s[i].exemplar);
    }
    for (size_t i = 0; i < c->nm; i++) {
        free(c->m[i].family);
        free(c->m[i].help);
        free(c->m[i].unit);
    }
    free(c->s);
    free(c->m);
    memset(c, 0, sizeof *c);
}

static int parse_mem(dr_expo_format f, const char *body, size_t len, collector *c, dr_error *err)
{
    dr_expo_sink sink = {
        .ctx = c, .sample = on_sample, .meta = on_meta, .known = c->keys ? on_known : NULL};
    memset(err, 0, sizeof *err);
    return dr_expo_parse(f, body, len, &sink, err);
}

static int parse_str(dr_expo_format f, const char *body, collector *c, dr_error *err)
{
    return parse_mem(f, body, strlen(body), c, err);
}

static bool same_double(double a, double b)
{
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* The samples of two parses agree in every field, metadata too. */
static bool same_parse(const collector *x, const collector *y)
{
    if (x->n != y->n || x->nm != y->nm)
        return false;
    for (size_t i = 0; i < x->n; i++) {
        const got_sample *a = &x->s[i], *b = &y->s[i];
        if (!same_str(a->series, b->series) || !same_str(a->family, b->family) ||
            a->type != b->type || !same_double(a->value, b->value) || a->has_ts != b->has_ts ||
            a->ts != b->ts || !same_str(a->exemplar, b->exemplar) ||
            (a->exemplar && (!same_double(a->ex_value, b->ex_value) ||
                             a->ex_has_ts != b->ex_has_ts || a->ex_ts != b->ex_ts)))
            return false;
    }
    for (size_t i = 0; i < x->nm; i++)
        if (!same_str(x->m[i].family, y->m[i].family) || !same_str(x->m[i].help, y->m[i].help) ||
            !same_str(x->m[i].unit, y->m[i].unit) || x->m[i].type != y->m[i].type ||
            x->m[i].before != y->m[i].before)
            return false;
    return true;
}

/*
 * A body parsed as a scrape cache sees it: once with a sink that learns
 * every key, then again with one that knows them all. The second parse must
 * reach the same verdict with the same samples, the labels coming from what
 * the first parse said each key stood for; and no key may have stood for
 * two label sets. Returns the first parse's rc; *hits: samples of the
 * second parse that came without labels.
 */
static int parse_twice(dr_expo_format f, const char *body, size_t len, collector *c, dr_error *err,
                       size_t *hits)
{
    key_memory km = {0};
    c->keys = &km;
    int rc = parse_mem(f, body, len, c, err);
    km.answer = true;
    collector again = {.keys = &km};
    dr_error err2;
    int rc2 = parse_mem(f, body, len, &again, &err2);
    bool agree = rc == rc2 && (rc != 0 || same_parse(c, &again)) &&
                 (rc == 0 || strcmp(err->msg, err2.msg) == 0);
    if (!agree)
        fprintf(stderr, "  second parse differs: rc %d/%d \"%s\" / \"%s\"\n", rc, rc2, err->msg,
                err2.msg);
    CHECK(agree);
    CHECK_INT(km.clashes, 0);
    if (hits)
        *hits = km.hits;
    collector_free(&again);
    key_memory_free(&km);
    c->keys = NULL;
    return rc;
}

/* Parses a fixture file; -100 if it cannot be read. */
static int parse_fixture(dr_expo_format f, const char *rel, collector *c, dr_error *err)
{
    size_t len;
    char *body = dt_read_file(dt_fixture(rel), &len);
    if (!body) {
        fprintf(stderr, "cannot read fixture %s\n", rel);
        return -100;
    }
    int rc = parse_mem(f, body, len, c, err);
    free(body);
    return rc;
}

static const got_sample *find(const collector *c, const char *series)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->s[i].series, series) == 0)
            return &c->s[i];
    return NULL;
}

static const got_meta *find_meta(const collector *c, const char *family)
{
    for (size_t i = 0; i < c->nm; i++)
        if (strcmp(c->m[i].family, family) == 0)
            return &c->m[i];
    return NULL;
}

/* ---- tables of verdicts --------------------------------------------------- */

/* Splits a TSV line in place into at most max fields. */
static int split_tab(char *line, char **f, int max)
{
    int n = 0;
    f[n++] = line;
    for (char *p = line; *p && n < max; p++) {
        if (*p == '\t') {
            *p = '\0';
            f[n++] = p + 1;
        }
    }
    return n;
}

/* Calls fn for each data row of a TSV file under exposition-edge/. */
static int for_each_row(const char *rel, void (*fn)(char **f, int nf, void *ctx), void *ctx)
{
    size_t len;
    char *tsv = dt_read_file(dt_fixture(rel), &len);
    if (!tsv)
        return -1;
    int rows = 0;
    char *save = NULL;
    bool header = true;
    for (char *line = strtok_r(tsv, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (header) {
            header = false;
            continue;
        }
        char *f[8];
        int nf = split_tab(line, f, 8);
        fn(f, nf, ctx);
        rows++;
    }
    free(tsv);
    return rows;
}

typedef struct table_run {
    const char *dir;
    int failed;
    int checked;
} table_run;

/* One verdict: accepted must parse, rejected must fail with DR_EINVAL. */
static void check_verdict(table_run *t, const char *name, const char *file, dr_expo_format f,
                          bool want_ok)
{
    char rel[512];
    snprintf(rel, sizeof rel, "exposition-edge/%s/%s", t->dir, file);
    collector c = {0};
    dr_error err;
    size_t len;
    char *body = dt_read_file(dt_fixture(rel), &len);
    int rc = body ? parse_twice(f, body, len, &c, &err, NULL) : -100;
    free(body);
    bool ok = rc == 0;
    t->checked++;
    if (rc == -100 || ok != want_ok || (!ok && rc != DR_EINVAL) ||
        (!ok && strncmp(err.msg, "line ", 5) != 0)) {
        t->failed++;
        fprintf(stderr, "  %s/%s: want %s, got rc=%d %s\n", t->dir, name,
                want_ok ? "accepted" : "rejected", rc, ok ? "" : err.msg);
    }
    collector_free(&c);
}

static void textparse_row(char **f, int nf, void *ctx)
{
    if (nf < 3)
        return;
    dr_expo_format fmt = strncmp(f[0], "om_", 3) == 0 ? DR_EXPO_OPENMETRICS : DR_EXPO_TEXT;
    check_verdict(ctx, f[0], f[0], fmt, strncmp(f[2], "accepted", 8) == 0);
}

/* Prometheus' own parsers' verdicts (model/textparse tests), matched exactly. */
void test_expo_prometheus_textparse_cases(void)
{
    table_run t = {.dir = "prometheus-textparse"};
    int rows = for_each_row("exposition-edge/prometheus-textparse/CASES.tsv", textparse_row, &t);
    CHECK_INT(rows, 113);
    CHECK_INT(t.checked, 113);
    CHECK_INT(t.failed, 0);
}

/*
 * The OpenMetrics suite's invalid cases that Prometheus' scrape parser
 * takes (run against model/textparse at prometheus commit d15adb9): it
 * checks the syntax of each line, not the rules between lines or of a
 * type's samples, so drover takes them too.
 */
static const char *const om_invalid_taken_by_prometheus[] = {
    /* names of different families that clash: not checked */
    "bad_clashing_names_0",
    "bad_clashing_names_1",
    "bad_clashing_names_2",
    /* negative, NaN or non-integer counter/bucket values: not checked */
    "bad_counter_values_0",
    "bad_counter_values_1",
    "bad_counter_values_2",
    "bad_counter_values_3",
    "bad_counter_values_4",
    "bad_counter_values_5",
    "bad_counter_values_6",
    "bad_counter_values_7",
    "bad_counter_values_8",
    "bad_counter_values_9",
    "bad_counter_values_10",
    "bad_counter_values_11",
    "bad_counter_values_12",
    "bad_counter_values_13",
    "bad_counter_values_14",
    "bad_counter_values_15",
    "bad_counter_values_16",
    "bad_counter_values_17",
    "bad_counter_values_18",
    "bad_counter_values_19",
    /* exemplar label sets over 128 code points: the scrape drops the
     * exemplar when appending, the sample stays */
    "bad_exemplar_complex_chars",
    "bad_exemplars_6",
    /* exemplars on types or series that may not carry one: not checked */
    "bad_exemplars_on_unallowed_metric_types_0",
    "bad_exemplars_on_unallowed_metric_types_1",
    "bad_exemplars_on_unallowed_metric_types_2",
    "bad_exemplars_on_unallowed_samples_0",
    "bad_exemplars_on_unallowed_samples_1",
    "bad_exemplars_on_unallowed_samples_2",
    "bad_exemplars_on_unallowed_samples_3",
    /* order of series and families: not checked */
    "bad_grouping_or_ordering_0",
    "bad_grouping_or_ordering_2",
    "bad_grouping_or_ordering_3",
    "bad_grouping_or_ordering_4",
    "bad_grouping_or_ordering_5",
    "bad_grouping_or_ordering_6",
    "bad_grouping_or_ordering_7",
    "bad_grouping_or_ordering_8",
    "bad_grouping_or_ordering_9",
    "bad_grouping_or_ordering_10",
    /* histogram bucket rules (order, +Inf, count): not checked */
    "bad_histograms_0",
    "bad_histograms_1",
    "bad_histograms_2",
    "bad_histograms_3",
    "bad_histograms_6",
    "bad_histograms_7",
    "bad_histograms_8",
    "bad_histograms_9",
    "bad_histograms_10",
    "bad_histograms_11",
    "bad_histograms_12",
    "bad_histograms_13",
    "bad_histograms_14",
    /* info/stateset values other than 1 (or 0/1): not checked */
    "bad_info_and_stateset_values_0",
    "bad_info_and_stateset_values_1",
    "bad_stateset_info_values_0",
    "bad_stateset_info_values_1",
    "bad_stateset_info_values_2",
    "bad_stateset_info_values_3",
    /* duplicate label names: refused after parsing, when the caller makes
     * the set canonical (Prometheus' appender does the same) */
    "bad_invalid_labels_2",
    "bad_invalid_labels_5",
    /* metadata after samples, repeated metadata: not checked */
    "bad_metadata_in_wrong_place_0",
    "bad_metadata_in_wrong_place_1",
    "bad_metadata_in_wrong_place_2",
    "bad_repeated_metadata_0",
    "bad_repeated_metadata_1",
    "bad_repeated_metadata_3",
    /* a comma before '}': Prometheus' OpenMetrics parser allows it */
    "bad_missing_or_extra_commas_2",
    /* missing or misplaced le/quantile labels: not checked */
    "bad_missing_or_invalid_labels_for_a_type_0",
    "bad_missing_or_invalid_labels_for_a_type_1",
    "bad_missing_or_invalid_labels_for_a_type_2",
    "bad_missing_or_invalid_labels_for_a_type_3",
    "bad_missing_or_invalid_labels_for_a_type_4",
    "bad_missing_or_invalid_labels_for_a_type_5",
    "bad_missing_or_invalid_labels_for_a_type_6",
    "bad_missing_or_invalid_labels_for_a_type_7",
    /* UNIT on info and stateset families: not checked */
    "bad_unit_6",
    "bad_unit_7",
};

#define N_OM_TAKEN                                                                                 \
    (sizeof om_invalid_taken_by_prometheus / sizeof om_invalid_taken_by_prometheus[0])

static bool om_taken(const char *name)
{
    for (size_t i = 0; i < N_OM_TAKEN; i++)
        if (strcmp(om_invalid_taken_by_prometheus[i], name) == 0)
            return true;
    return false;
}

typedef struct om_run {
    table_run t;
    int valid, invalid, taken;
} om_run;

static void om_row(char **f, int nf, void *ctx)
{
    om_run *r = ctx;
    if (nf < 2)
        return;
    char file[300];
    snprintf(file, sizeof file, "%s/metrics", f[0]);
    bool valid = strcmp(f[1], "valid") == 0;
    bool taken = !valid && om_taken(f[0]);
    r->valid += valid;
    r->invalid += !valid;
    r->taken += taken;
    check_verdict(&r->t, f[0], file, DR_EXPO_OPENMETRICS, valid || taken);
}

void test_expo_openmetrics_testsuite(void)
{
    om_run r = {.t = {.dir = "openmetrics-1.0-testsuite"}};
    int rows = for_each_row("exposition-edge/openmetrics-1.0-testsuite/VERDICTS.tsv", om_row, &r);
    CHECK_INT(rows, 211);
    CHECK_INT(r.valid, 44);
    CHECK_INT(r.invalid, 167);
    /* every exception names an invalid case of the suite */
    CHECK_INT(r.taken, (int)N_OM_TAKEN);
    CHECK_INT(r.t.failed, 0);
}

/*
 * The client_golang text decoder (prometheus/common expfmt) is stricter
 * than the scrape parser in places and looser in others. Where they differ
 * drover does what Prometheus' scrape parser does:
 */
static const struct {
    const char *file;
    bool accepted; /* by Prometheus' scrape parser */
    const char *why;
} expfmt_differs[] = {
    {"ok_03.prom", false, "negative timestamp (-2): the text lexer takes digits only"},
    {"ok_15.prom", false, "TYPE gaugehistogram is not a text 0.0.4 type for the scrape parser"},
    {"ok_16.prom", false, "TYPE gauge_histogram, same"},
    {"ok_17.prom", false, "TYPE gauge_histogram, same"},
    {"err_00.prom", true, "no final newline: the scrape parser implies one"},
    {"err_01.prom", true, "unknown escape \\t in a label value is kept as written"},
    {"err_02.prom", true, "raw newline inside a quoted label value is allowed by the lexer"},
    {"err_04.prom", true, "__name__ given as a label: a duplicate, refused at canonicalization"},
    {"err_07.prom", true, "quantile value not a float: kept as written"},
    {"err_12.prom", true, "second HELP line: not checked"},
    {"err_13.prom", true, "second TYPE line: not checked"},
    {"err_14.prom", true, "TYPE after samples: not checked"},
    {"err_19.prom", true, "le value not a float: kept as written"},
    {"err_32.prom", true, "le=\"0x1p-3\": a hexadecimal float, rewritten to 0.125"},
    {"err_33.prom", true, "quantile=\"0x1p-3\": same"},
    {"err_34.prom", true, "duplicate label names: refused at canonicalization"},
    {"err_36.prom", true, "unknown escape in a quoted name is kept as written"},
    {"err_38.prom", true, "same, \\t in a quoted name"},
    {"err_39.prom", true, "raw newline inside a quoted metric name is allowed by the lexer"},
    {"err_40.prom", true, "raw newline inside a quoted label name, same"},
    {"err_43.prom", true, "negative histogram counts: not checked"},
    {"err_44.prom", true, "same"},
    {"err_45.prom", true, "same"},
    {"err_46.prom", true, "same"},
};

#define N_EXPFMT_DIFFERS (sizeof expfmt_differs / sizeof expfmt_differs[0])

typedef struct expfmt_run {
    table_run t;
    int differs;
} expfmt_run;

static void expfmt_row(char **f, int nf, void *ctx)
{
    expfmt_run *r = ctx;
    if (nf < 2)
        return;
    bool want = strcmp(f[1], "valid") == 0; /* the UTF-8 name scheme of Prometheus 3 */
    for (size_t i = 0; i < N_EXPFMT_DIFFERS; i++) {
        if (strcmp(expfmt_differs[i].file, f[0]) == 0) {
            CHECK(want != expfmt_differs[i].accepted);
            want = expfmt_differs[i].accepted;
            r->differs++;
        }
    }
    check_verdict(&r->t, f[0], f[0], DR_EXPO_TEXT, want);
}

void test_expo_expfmt_cases(void)
{
    expfmt_run r = {.t = {.dir = "prometheus-common-expfmt"}};
    int rows = for_each_row("exposition-edge/prometheus-common-expfmt/CASES.tsv", expfmt_row, &r);
    CHECK_INT(rows, 66);
    CHECK_INT(r.differs, (int)N_EXPFMT_DIFFERS);
    CHECK_INT(r.t.failed, 0);
}

void test_expo_real_world_quirks(void)
{
    static const char *const files[] = {
        "dotnet-prometheus-net.prom",
        "envoy-empty-braces-blank-lines.prom",
        "histogram-different-label-count.prom",
        "histogram-float-counts.prom",
        "java-micrometer-uppercase-exponent.prom",
        "node-power-supply-brackets-in-label.prom",
        "node-textfile-collector-sample.prom",
        "node-zfs-negative-untyped.prom",
        "summary-nan-quantiles.prom",
        "tab-separated-no-newline.prom",
    };
    table_run t = {.dir = "real-world-quirks"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        check_verdict(&t, files[i], files[i], DR_EXPO_TEXT, true);
    CHECK_INT(t.failed, 0);

    /* The whole file: "_bu_nn<TAB>0<TAB>171798732", no newline. */
    collector c = {0};
    dr_error err;
    CHECK_INT(parse_fixture(DR_EXPO_TEXT,
                            "exposition-edge/real-world-quirks/tab-separated-no-newline.prom", &c,
                            &err),
              0);
    CHECK_INT(c.n, 1);
    if (c.n == 1) {
        CHECK_STR(c.s[0].series, "_bu_nn{}");
        CHECK(c.s[0].value == 0);
        CHECK(c.s[0].has_ts);
        CHECK_INT(c.s[0].ts, 171798732);
    }
    collector_free(&c);
}

/* ---- real payloads -------------------------------------------------------- */

void test_expo_node_exporter_payload(void)
{
    collector c = {0};
    dr_error err;
    CHECK_INT(parse_fixture(DR_EXPO_TEXT, "exposition/live-node-exporter-1.5.0.prom", &c, &err), 0);
    /* grep -vc '^#' on the file (it has no blank lines) */
    CHECK_INT(c.n, 505);
    /* 282 families, each with a HELP and a TYPE line: one call each */
    CHECK_INT(c.nm, 282);

    /* line 105: node_cpu_seconds_total{cpu="0",mode="idle"} 333.45, after
     * lines 103-104: HELP "Seconds the CPUs spent in each mode.", TYPE counter */
    const got_sample *s = find(&c, "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"}");
    CHECK(s != NULL);
    if (s) {
        CHECK(s->value == 333.45);
        CHECK(!s->has_ts);
        CHECK_STR(s->family, "node_cpu_seconds_total");
        CHECK_INT(s->type, DR_MT_COUNTER);
    }
    const got_meta *m = find_meta(&c, "node_cpu_seconds_total");
    CHECK(m != NULL);
    if (m) {
        CHECK_INT(m->type, DR_MT_COUNTER);
        CHECK_STR(m->help, "Seconds the CPUs spent in each mode.");
        CHECK_STR(m->unit, "");
    }

    /* lines 2-9: summary go_gc_duration_seconds; quantile="0" is written
     * "0.0" as Prometheus rewrites quantile values; _sum and _count belong
     * to the family */
    s = find(&c, "go_gc_duration_seconds{quantile=\"0.0\"}");
    CHECK(s != NULL);
    if (s) {
        CHECK(s->value == 1.9677e-05);
        CHECK_STR(s->family, "go_gc_duration_seconds");
        CHECK_INT(s->type, DR_MT_SUMMARY);
    }
    CHECK(find(&c, "go_gc_duration_seconds{quantile=\"0.25\"}") != NULL);
    CHECK(find(&c, "go_gc_duration_seconds{quantile=\"1.0\"}") != NULL);
    s = find(&c, "go_gc_duration_seconds_count{}");
    CHECK(s != NULL);
    if (s) {
        CHECK(s->value == 22);
        CHECK_STR(s->family, "go_gc_duration_seconds");
        CHECK_INT(s->type, DR_MT_SUMMARY);
    }
    /* line 93 */
    s = find(&c, "node_boot_time_seconds{}");
    CHECK(s != NULL && s->value == 1.795444489e+09);
    /* line 588: six labels, one of them empty */
    s = find(&c, "node_network_info{address=\"02:fc:00:00:00:01\",broadcast=\"ff:ff:ff:ff:ff:ff\","
                 "device=\"eth0\",duplex=\"unknown\",ifalias=\"\",operstate=\"up\"}");
    CHECK(s != NULL && s->value == 1);
    /* line 1015: a label value with '#', '@' and spaces */
    CHECK(find(&c, "node_uname_info{domainname=\"(none)\",machine=\"x86_64\",nodename=\"vm\","
                   "release=\"6.18.44-fc-v769\",sysname=\"Linux\","
                   "version=\"#1 SMP PREEMPT_DYNAMIC @0\"}") != NULL);
    /* metadata comes before the family's first sample */
    for (size_t i = 0; i < c.nm; i++) {
        const got_meta *mm = &c.m[i];
        for (size_t k = 0; k < mm->before; k++)
            if (strcmp(c.s[k].family, mm->family) == 0) {
                CHECK(!"a sample came before its family's metadata");
                break;
            }
    }
    collector_free(&c);
}

void test_expo_cadvisor_payloads(void)
{
    collector c = {0};
    dr_error err;
    CHECK_INT(
        parse_fixture(DR_EXPO_TEXT, "exposition/kubelet-metrics-cadvisor-k8s1.35.prom", &c, &err),
        0);
    /* grep -vc '^#' (no blank lines) */
    CHECK_INT(c.n, 4621);
    /* line 288, under "# TYPE container_cpu_usage_seconds_total counter" (287) */
    const got_sample *s = find(&c, "container_cpu_usage_seconds_total{container=\"\",cpu=\"total\","
                                   "id=\"/\",image=\"\",name=\"\",namespace=\"\",pod=\"\"}");
    CHECK(s != NULL);
    if (s) {
        CHECK(s->value == 62.148052);
        CHECK(s->has_ts);
        CHECK_INT(s->ts, 1782468875486LL);
        CHECK_STR(s->family, "container_cpu_usage_seconds_total");
        CHECK_INT(s->type, DR_MT_COUNTER);
    }
    /* line 4764 */
    s = find(&c, "machine_memory_bytes{boot_id=\"3f08706e-fbd4-4afe-ab2e-cb273a74d98b\","
                 "machine_id=\"e366bd4b77b9d6be2d67552f69964f40\","
                 "system_uuid=\"e366bd4b77b9d6be2d67552f69964f40\"}");
    CHECK(s != NULL && s->value == 8.216887296e+09 && !s->has_ts);
    collector_free(&c);

    CHECK_INT(
        parse_fixture(DR_EXPO_TEXT, "exposition/cadvisor-golden-prometheus_metrics.prom", &c, &err),
        0);
    CHECK_INT(c.n, 287); /* grep -vc '^#' */
    /* line 47 */
    s = find(&c, "container_cpu_usage_seconds_total{container_env_foo_env=\"prod\","
                 "container_label_foo_label=\"bar\",cpu=\"cpu00\",id=\"testcontainer\","
                 "image=\"test\",name=\"testcontaineralias\",zone_name=\"hello\"}");
    CHECK(s != NULL);
    if (s) {
        CHECK(s->value == 2e-09);
        CHECK_INT(s->ts, 1395066363000LL);
    }
    /* line 3 */
    CHECK(find(&c, "cadvisor_version_info{cadvisorRevision=\"abcdef\",cadvisorVersion=\"0.16.0\","
                   "dockerVersion=\"1.8.1\",kernelVersion=\"4.1.6-200.fc22.x86_64\","
                   "osVersion=\"Fedora 22 (Twenty Two)\"}") != NULL);
    collector_free(&c);
}

void test_expo_openmetrics_payload(void)
{
    collector c = {0};
    dr_error err;
    CHECK_INT(
        parse_fixture(DR_EXPO_OPENMETRICS, "exposition/openmetrics-alltypes.5mfs.om.txt", &c, &err),
        0);
    CHECK_INT(c.n, 53); /* grep -vc '^#' */
    CHECK_INT(c.nm, 5);
    /* line 3 (after HELP/TYPE gauge on 1-2) */
    const got_sample *s = find(&c, "go_build_info{checksum=\"\",path=\"\",version=\"\"}");
    CHECK(s != NULL && s->value == 1 && s->type == DR_MT_GAUGE);
    /* line 7: a _created series stays a sample of counter
     * promhttp_metric_handler_errors (TYPE on line 5) */
    s = find(&c, "promhttp_metric_handler_errors_created{cause=\"encoding\"}");
    CHECK(s != NULL);
    if (s) {
        CHECK(s->value == 1.726839813016397e+09);
        CHECK_STR(s->family, "promhttp_metric_handler_errors");
        CHECK_INT(s->type, DR_MT_COUNTER);
    }
    s = find(&c, "promhttp_metric_handler_errors_total{cause=\"encoding\"}");
    CHECK(s != NULL && s->type == DR_MT_COUNTER);
    /* line 19: an exemplar with a float-seconds timestamp */
    s = find(&c, "rpc_durations_histogram_seconds_bucket{le=\"-0.0002899999999999998\"}");
    CHECK(s != NULL);
    if (s) {
        CHECK(s->value == 3);
        CHECK_STR(s->family, "rpc_durations_histogram_seconds");
        CHECK_INT(s->type, DR_MT_HISTOGRAM);
        CHECK(s->exemplar != NULL);
        if (s->exemplar)
            CHECK_STR(s->exemplar, "{dummyID=\"17783\"}");
        CHECK(s->ex_value == -0.0003825067330956884);
        CHECK(s->ex_has_ts);
        CHECK_INT(s->ex_ts, 1726839814223LL); /* 1.7268398142239082e+09 s */
    }
    /* line 21: le written in exponent form stays so (Go's shortest form) */
    CHECK(find(&c, "rpc_durations_histogram_seconds_bucket{le=\"-8.999999999999979e-05\"}") !=
          NULL);
    /* line 35: histogram _created */
    s = find(&c, "rpc_durations_histogram_seconds_created{}");
    CHECK(s != NULL && s->type == DR_MT_HISTOGRAM);
    /* line 38: summary quantile, line 43 its _created */
    s = find(&c, "rpc_durations_seconds{service=\"exponential\",quantile=\"0.5\"}");
    CHECK(s != NULL && s->value == 7.689368882420941e-07 && s->type == DR_MT_SUMMARY);
    s = find(&c, "rpc_durations_seconds_created{service=\"exponential\"}");
    CHECK(s != NULL && s->type == DR_MT_SUMMARY);
    const got_meta *m = find_meta(&c, "rpc_requests");
    CHECK(m != NULL && m->type == DR_MT_COUNTER &&
          strcmp(m->help, "Total number of RPC requests received.") == 0);
    collector_free(&c);

    /* ends with "# EOF" and no newline */
    CHECK_INT(
        parse_fixture(DR_EXPO_OPENMETRICS, "exposition/openmetrics-1histogram.om.txt", &c, &err),
        0);
    CHECK(c.n > 0);
    collector_free(&c);
}

/* ---- syntax details ------------------------------------------------------- */

void test_expo_text_details(void)
{
    collector c = {0};
    dr_error err;
    const char *body = "# HELP esc A \\\\ back\\nslash \\\" kept\n"
                       "# TYPE esc gauge\n"
                       "esc{v=\"a\\\\b\\\"c\\nd\\te\"} 1\n"
                       "{\"my.metric\",\"a.b\"=\"c\",d=\"e\"} +Inf 1700000000000\n"
                       "nan_val NaN\n"
                       "neg -Inf\n"
                       "# TYPE h histogram\n"
                       "h_bucket{le=\"1\"} 2\n"
                       "h_bucket{le=\"+Inf\"} 3\n"
                       "h_count 3\n"
                       "h_sum 4.5\n"
                       "other_bucket{le=\"1\"} 1\n"
                       "   \t\n"
                       "# a comment\n"
                       "spaced {a=\"1\" , b=\"2\",} 7\n"
                       "last 1e3";
    CHECK_INT(parse_str(DR_EXPO_TEXT, body, &c, &err), 0);
    CHECK_INT(c.n, 11);
    if (c.n == 11) {
        /* \\ \" \n unescaped, an unknown escape kept */
        CHECK_STR(c.s[0].series, "esc{v=\"a\\\\b\\\"c\\nd\\\\te\"}");
        CHECK_STR(c.s[1].series, "my.metric{a.b=\"c\",d=\"e\"}");
        CHECK(isinf(c.s[1].value) && c.s[1].value > 0);
        CHECK_INT(c.s[1].ts, 1700000000000LL);
        CHECK(isnan(c.s[2].value));
        uint64_t bits;
        memcpy(&bits, &c.s[2].value, 8);
        CHECK(bits == 0x7ff8000000000001ull); /* Prometheus' normal NaN */
        CHECK(isinf(c.s[3].value) && c.s[3].value < 0);
        CHECK_STR(c.s[3].family, "neg");
        CHECK_INT(c.s[3].type, DR_MT_UNKNOWN);
        /* le rewritten under a histogram TYPE */
        CHECK_STR(c.s[4].series, "h_bucket{le=\"1.0\"}");
        CHECK_STR(c.s[4].family, "h");
        CHECK_INT(c.s[4].type, DR_MT_HISTOGRAM);
        CHECK_STR(c.s[5].series, "h_bucket{le=\"+Inf\"}");
        CHECK_STR(c.s[6].family, "h");
        CHECK_STR(c.s[7].family, "h");
        /* a different family after the TYPE: its own name, untyped (its le
         * is still rewritten, as Prometheus does by the last TYPE) */
        CHECK_STR(c.s[8].series, "other_bucket{le=\"1.0\"}");
        CHECK_STR(c.s[8].family, "other_bucket");
        CHECK_INT(c.s[8].type, DR_MT_UNKNOWN);
        CHECK_STR(c.s[9].series, "spaced{a=\"1\",b=\"2\"}");
        CHECK(c.s[10].value == 1000); /* no final newline */
    }
    CHECK_INT(c.nm, 2);
    if (c.nm == 2) {
        /* text HELP unescapes \\ and \n only */
        CHECK_STR(c.m[0].help, "A \\ back\nslash \\\" kept");
        CHECK_INT(c.m[0].type, DR_MT_GAUGE);
        CHECK_INT(c.m[0].before, 0);
        CHECK_STR(c.m[1].family, "h");
        CHECK_INT(c.m[1].before, 4);
    }
    collector_free(&c);

    /* A NUL at the start of a line ends a text body (as in Prometheus). */
    static const char nul_body[] = "a 1\n\0garbage{\n";
    CHECK_INT(parse_mem(DR_EXPO_TEXT, nul_body, sizeof nul_body - 1, &c, &err), 0);
    CHECK_INT(c.n, 1);
    collector_free(&c);
    /* A NUL inside a label value is kept (om_nul_00's case). */
    static const char nul_value[] = "m{a=\"abc\0\"} 1\n";
    CHECK_INT(parse_mem(DR_EXPO_TEXT, nul_value, sizeof nul_value - 1, &c, &err), 0);
    CHECK_INT(c.n, 1);
    if (c.n == 1)
        CHECK_MEM(c.s[0].series, 13, "m{a=\"abc\0\"}", 13);
    collector_free(&c);

    /* Empty body: nothing, no error. */
    CHECK_INT(parse_str(DR_EXPO_TEXT, "", &c, &err), 0);
    CHECK_INT(c.n, 0);
    collector_free(&c);
}

void test_expo_openmetrics_details(void)
{
    collector c = {0};
    dr_error err;
    const char *body = "# TYPE foo_seconds counter\n"
                       "# UNIT foo_seconds seconds\n"
                       "# HELP foo_seconds Help \\\"quoted\\\" \\n.\n"
                       "foo_seconds_total 1 # {trace_id=\"abc\"} 0.5 123.456\n"
                       "foo_seconds_created 1.5e9\n"
                       "other_total{a=\"b\"} 2 1.5 # {} 3\n"
                       "# TYPE s stateset\n"
                       "s{s=\"x\"} 1\n"
                       "# TYPE i info\n"
                       "i_info{v=\"1\"} 1 -1.25\n"
                       "{\"u.t\",\"l.a\"=\"v\",} 1\n"
                       "# EOF\n";
    CHECK_INT(parse_str(DR_EXPO_OPENMETRICS, body, &c, &err), 0);
    CHECK_INT(c.n, 6);
    if (c.n == 6) {
        /* _total and _created of counter foo_seconds */
        CHECK_STR(c.s[0].family, "foo_seconds");
        CHECK_INT(c.s[0].type, DR_MT_COUNTER);
        CHECK(c.s[0].exemplar != NULL);
        if (c.s[0].exemplar)
            CHECK_STR(c.s[0].exemplar, "{trace_id=\"abc\"}");
        CHECK(c.s[0].ex_value == 0.5);
        CHECK_INT(c.s[0].ex_ts, 123456);
        CHECK(!c.s[0].has_ts);
        CHECK_STR(c.s[1].family, "foo_seconds");
        CHECK_INT(c.s[1].type, DR_MT_COUNTER);
        CHECK(c.s[1].value == 1.5e9);
        /* no metadata line names other_total's family */
        CHECK_STR(c.s[2].family, "other_total");
        CHECK_INT(c.s[2].type, DR_MT_UNKNOWN);
        CHECK_INT(c.s[2].ts, 1500);
        CHECK(c.s[2].exemplar != NULL);
        if (c.s[2].exemplar)
            CHECK_STR(c.s[2].exemplar, "{}");
        CHECK(c.s[2].ex_value == 3);
        CHECK(!c.s[2].ex_has_ts);
        CHECK_INT(c.s[3].type, DR_MT_STATESET);
        CHECK_STR(c.s[4].family, "i");
        CHECK_INT(c.s[4].type, DR_MT_INFO);
        CHECK_INT(c.s[4].ts, -1250);
        CHECK_STR(c.s[5].series, "u.t{l.a=\"v\"}");
    }
    CHECK_INT(c.nm, 3);
    if (c.nm >= 1) {
        CHECK_STR(c.m[0].family, "foo_seconds");
        CHECK_INT(c.m[0].type, DR_MT_COUNTER);
        CHECK_STR(c.m[0].unit, "seconds");
        /* OpenMetrics HELP also unescapes \" */
        CHECK_STR(c.m[0].help, "Help \"quoted\" \n.");
    }
    collector_free(&c);

    /* a unit that is not a suffix of the name */
    CHECK_INT(
        parse_str(DR_EXPO_OPENMETRICS, "# TYPE foo counter\n# UNIT foo seconds\n# EOF\n", &c, &err),
        DR_EINVAL);
    CHECK_STR(err.msg, "line 2: unit \"seconds\" not a suffix of metric \"foo\"");
    collector_free(&c);

    /* # EOF without a newline is the end; anything after it is an error. */
    CHECK_INT(parse_str(DR_EXPO_OPENMETRICS, "a 1\n# EOF", &c, &err), 0);
    collector_free(&c);
    CHECK_INT(parse_str(DR_EXPO_OPENMETRICS, "a 1\n# EOF\n\n", &c, &err), DR_EINVAL);
    CHECK(strstr(err.msg, "unexpected data after # EOF") != NULL);
    collector_free(&c);
    CHECK_INT(parse_str(DR_EXPO_OPENMETRICS, "a 1\n", &c, &err), DR_EINVAL);
    CHECK_STR(err.msg, "line 2: data does not end with # EOF");
    collector_free(&c);
    /* a TYPE the text format has but OpenMetrics not */
    CHECK_INT(parse_str(DR_EXPO_OPENMETRICS, "# TYPE u untyped\n# EOF\n", &c, &err), DR_EINVAL);
    CHECK_STR(err.msg, "line 1: invalid metric type \"untyped\"");
    collector_free(&c);
    CHECK_INT(parse_str(DR_EXPO_OPENMETRICS, "a 1 NaN\n# EOF\n", &c, &err), DR_EINVAL);
    CHECK_STR(err.msg, "line 1: invalid timestamp NaN");
    collector_free(&c);
}

void test_expo_errors_name_the_line(void)
{
    collector c = {0};
    dr_error err;
    CHECK_INT(parse_str(DR_EXPO_TEXT, "a 1\nb 2\nc{d='x'} 3\n", &c, &err), DR_EINVAL);
    CHECK_STR(err.msg, "line 3: expected label value, got \"'\" (INVALID)");
    collector_free(&c);
    CHECK_INT(parse_str(DR_EXPO_TEXT, "# HELP a x\n\na 1\nb true\n", &c, &err), DR_EINVAL);
    CHECK_STR(err.msg, "line 4: invalid float \"true\"");
    collector_free(&c);
    CHECK_INT(parse_str(DR_EXPO_TEXT, "a 1\nfoo 1_2\n", &c, &err), DR_EINVAL);
    CHECK_STR(err.msg, "line 2: unsupported character in float");
    collector_free(&c);
    CHECK_INT(parse_str(DR_EXPO_TEXT, "a 1\n# TYPE a countr\n", &c, &err), DR_EINVAL);
    CHECK_STR(err.msg, "line 2: invalid metric type \"countr\"");
    collector_free(&c);
    CHECK_INT(parse_str(DR_EXPO_TEXT, "{a=\"1\"} 1\n", &c, &err), DR_EINVAL);
    CHECK_STR(err.msg, "line 1: metric name not set");
    collector_free(&c);
    CHECK_INT(parse_str(DR_EXPO_TEXT, "a 1 99999999999999999999\n", &c, &err), DR_EINVAL);
    CHECK_STR(err.msg, "line 1: timestamp out of range");
    collector_free(&c);
    CHECK_INT(parse_str(DR_EXPO_TEXT, "a 1e999\n", &c, &err), DR_EINVAL);
    collector_free(&c);
    /* UTF-8 names must be valid and not empty (Prometheus 3's scrape check) */
    CHECK_INT(parse_str(DR_EXPO_TEXT, "{\"\",a=\"b\"} 1\n", &c, &err), DR_EINVAL);
    CHECK_STR(err.msg, "line 1: invalid metric name");
    collector_free(&c);
    CHECK_INT(parse_str(DR_EXPO_TEXT, "m{\"\\xff\"=\"b\"} 1\nm{\"\xff\"=\"b\"} 1\n", &c, &err),
              DR_EINVAL);
    CHECK_STR(err.msg, "line 2: invalid label name");
    CHECK_INT(c.n, 1); /* the first, with a literal "\xff" name, was taken */
    collector_free(&c);
}

void test_expo_invalid_utf8_label_value(void)
{
    /* Prometheus refuses a scrape with a label value that is not UTF-8
     * (prom_err_04: "invalid UTF-8 label value"), in both formats. */
    collector c = {0};
    dr_error err;
    CHECK_INT(parse_str(DR_EXPO_TEXT, "ok{a=\"\xc3\xa9\"} 1\nbad{a=\"\xc3\x28\"} 1\n", &c, &err),
              DR_EINVAL);
    CHECK_STR(err.msg, "line 2: invalid UTF-8 label value");
    CHECK_INT(c.n, 1);
    collector_free(&c);
    /* an overlong form and a surrogate are not valid either */
    CHECK_INT(parse_str(DR_EXPO_TEXT, "bad{a=\"\xc0\xaf\"} 1\n", &c, &err), DR_EINVAL);
    collector_free(&c);
    CHECK_INT(parse_str(DR_EXPO_OPENMETRICS, "bad{a=\"\xed\xa0\x80\"} 1\n# EOF\n", &c, &err),
              DR_EINVAL);
    collector_free(&c);
    /* HELP text too */
    CHECK_INT(parse_str(DR_EXPO_TEXT, "# HELP a \xff\n", &c, &err), DR_EINVAL);
    CHECK_STR(err.msg, "line 1: help text is not valid UTF-8");
    collector_free(&c);
}

void test_expo_sink_stop(void)
{
    collector c = {.stop_at = 2, .stop_rc = 42};
    dr_error err;
    CHECK_INT(parse_str(DR_EXPO_TEXT, "a 1\nb 2\nc 3\n", &c, &err), 42);
    CHECK_INT(c.n, 2);
    collector_free(&c);
    c.stop_at = 1;
    c.stop_rc = DR_EINVAL;
    CHECK_INT(parse_str(DR_EXPO_OPENMETRICS, "a 1\nb 2\n# EOF\n", &c, &err), DR_EINVAL);
    CHECK_INT(c.n, 1);
    collector_free(&c);
}

void test_expo_huge_lines(void)
{
    /* 3000 labels on one line, one value of 300 000 bytes */
    size_t cap = 4u << 20, o = 0;
    char *body = malloc(cap);
    o += (size_t)snprintf(body + o, cap - o, "wide{");
    for (int i = 0; i < 3000; i++)
        o += (size_t)snprintf(body + o, cap - o, "l%d=\"v%d\",", i, i);
    o += (size_t)snprintf(body + o, cap - o, "big=\"");
    memset(body + o, 'x', 300000);
    o += 300000;
    o += (size_t)snprintf(body + o, cap - o, "\"} 5\nnext 6\n");
    collector c = {0};
    dr_error err;
    CHECK_INT(parse_mem(DR_EXPO_TEXT, body, o, &c, &err), 0);
    CHECK_INT(c.n, 2);
    if (c.n == 2) {
        CHECK(strstr(c.s[0].series, "l2999=\"v2999\"") != NULL);
        /* formatted as written: wide{l0="v0",...,big="xx..."} */
        CHECK_INT(strlen(c.s[0].series), o - strlen(" 5\nnext 6\n"));
        CHECK(c.s[0].value == 5);
    }
    collector_free(&c);

    /* past the bounds of a label set: a clear error, not a crash */
    o = (size_t)snprintf(body, cap, "toolong{v=\"");
    memset(body + o, 'y', (1u << 20) + 1);
    o += (1u << 20) + 1;
    o += (size_t)snprintf(body + o, cap - o, "\"} 1\n");
    CHECK_INT(parse_mem(DR_EXPO_TEXT, body, o, &c, &err), DR_EINVAL);
    CHECK(strstr(err.msg, "line 1: label longer than") != NULL);
    collector_free(&c);
    o = (size_t)snprintf(body, cap, "many{");
    for (int i = 0; i < 5000; i++)
        o += (size_t)snprintf(body + o, cap - o, "l%d=\"v\",", i);
    o += (size_t)snprintf(body + o, cap - o, "} 1\n");
    CHECK_INT(parse_mem(DR_EXPO_TEXT, body, o, &c, &err), DR_EINVAL);
    CHECK(strstr(err.msg, "labels") != NULL);
    collector_free(&c);
    free(body);
}

void test_expo_format_of(void)
{
    bool known = true;
    CHECK_INT(dr_expo_format_of("text/plain; version=0.0.4; charset=utf-8", &known), DR_EXPO_TEXT);
    CHECK(known);
    CHECK_INT(
        dr_expo_format_of("application/openmetrics-text; version=1.0.0; charset=utf-8", &known),
        DR_EXPO_OPENMETRICS);
    CHECK(known);
    CHECK_INT(dr_expo_format_of("application/openmetrics-text;version=0.0.1", &known),
              DR_EXPO_OPENMETRICS);
    CHECK(known);
    CHECK_INT(dr_expo_format_of("application/vnd.google.protobuf; "
                                "proto=io.prometheus.client.MetricFamily; encoding=delimited",
                                &known),
              DR_EXPO_PROTOBUF);
    CHECK(known);
    CHECK_INT(dr_expo_format_of("Text/Plain", &known), DR_EXPO_TEXT);
    CHECK(known);
    CHECK_INT(dr_expo_format_of("text/plain;", &known), DR_EXPO_TEXT);
    CHECK(known);
    /* the fallback cases: missing, empty, unparsable, unsupported */
    CHECK_INT(dr_expo_format_of(NULL, &known), DR_EXPO_TEXT);
    CHECK(!known);
    known = true;
    CHECK_INT(dr_expo_format_of("", &known), DR_EXPO_TEXT);
    CHECK(!known);
    known = true;
    CHECK_INT(dr_expo_format_of("application/json", &known), DR_EXPO_TEXT);
    CHECK(!known);
    known = true;
    dr_expo_format_of("text/plain; charset", &known);
    CHECK(!known);
    known = true;
    dr_expo_format_of("text", &known);
    CHECK(!known);
    dr_expo_format_of("text/plain", NULL); /* known may be NULL */
}

void test_expo_type_names(void)
{
    CHECK_STR(dr_metric_type_name(DR_MT_UNKNOWN), "untyped");
    CHECK_STR(dr_metric_type_name(DR_MT_COUNTER), "counter");
    CHECK_STR(dr_metric_type_name(DR_MT_GAUGE), "gauge");
    CHECK_STR(dr_metric_type_name(DR_MT_HISTOGRAM), "histogram");
    CHECK_STR(dr_metric_type_name(DR_MT_GAUGEHISTOGRAM), "gaugehistogram");
    CHECK_STR(dr_metric_type_name(DR_MT_SUMMARY), "summary");
    CHECK_STR(dr_metric_type_name(DR_MT_INFO), "info");
    CHECK_STR(dr_metric_type_name(DR_MT_STATESET), "stateset");
}

/* The known-series path on real payloads: every plain line is found by its
 * key on the second parse, and the samples are the same. */
void test_expo_known_series_payloads(void)
{
    static const struct {
        const char *file;
        dr_expo_format f;
    } files[] = {
        {"exposition/kubelet-metrics-cadvisor-k8s1.35.prom", DR_EXPO_TEXT},
        {"exposition/cadvisor-golden-prometheus_metrics.prom", DR_EXPO_TEXT},
        {"exposition/live-node-exporter-1.5.0.prom", DR_EXPO_TEXT},
        {"exposition/kube-state-metrics-k8s1.35.prom", DR_EXPO_TEXT},
        {"exposition/etcd-metrics-k8s1.35.prom", DR_EXPO_TEXT},
        {"exposition/live-coredns-1.12.4.prom", DR_EXPO_TEXT},
        {"exposition/prometheus-server-alltypes.237mfs.prom", DR_EXPO_TEXT},
        {"exposition/openmetrics-alltypes.5mfs.om.txt", DR_EXPO_OPENMETRICS},
        {"exposition/openmetrics-1histogram.om.txt", DR_EXPO_OPENMETRICS},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        size_t len, hits = 0;
        char *body = dt_read_file(dt_fixture(files[i].file), &len);
        CHECK(body != NULL);
        if (!body)
            continue;
        collector c = {0};
        dr_error err;
        CHECK_INT(parse_twice(files[i].f, body, len, &c, &err, &hits), 0);
        if (hits != c.n)
            fprintf(stderr, "  %s: %zu of %zu samples known\n", files[i].file, hits, c.n);
        CHECK(c.n > 0 && hits == c.n);
        collector_free(&c);
        free(body);
    }
}

/* What the scan leaves to the lexer, and what a known series still checks. */
void test_expo_known_series_edges(void)
{
    static const struct {
        dr_expo_format f;
        const char *body;
        size_t hits; /* samples the second parse finds by key */
    } cases[] = {
        /* plain lines */
        {DR_EXPO_TEXT, "a 1\nb{x=\"1\"} 2 1000\nc{x=\"q\\\"}\"} 3\n", 3},
        /* a blank between name and braces; a quoted name; leading blanks */
        {DR_EXPO_TEXT, "a {x=\"1\"} 1\n{\"b\",x=\"1\"} 2\n  c 3\n", 0},
        /* a newline inside a label value (the text format allows it) */
        {DR_EXPO_TEXT, "a{x=\"1\n2\"} 1\n", 0},
        /* a known series with a bad value still fails */
        {DR_EXPO_TEXT, "a{x=\"1\"} 1\na{x=\"1\"} zz\n", 1},
        /* labels after a known series' braces still fail */
        {DR_EXPO_TEXT, "a{x=\"1\"} 1\na{x=\"1\"}{y=\"2\"} 1\n", 1},
        /* OpenMetrics with exemplars and timestamps */
        {DR_EXPO_OPENMETRICS,
         "# TYPE a counter\na_total{x=\"1\"} 1 1.5 # {t=\"9\"} 2 3.0\na_created 2\n# EOF\n", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        collector c = {0};
        dr_error err;
        size_t hits = 0;
        parse_twice(cases[i].f, cases[i].body, strlen(cases[i].body), &c, &err, &hits);
        if (hits != cases[i].hits)
            fprintf(stderr, "  case %zu: %zu known, want %zu\n", i, hits, cases[i].hits);
        CHECK_INT(hits, cases[i].hits);
        collector_free(&c);
    }
    /* le is rewritten by the type of the last TYPE line: the same bytes
     * under another type are another key */
    key_memory km = {0};
    collector c = {.keys = &km};
    dr_error err;
    CHECK_INT(parse_str(DR_EXPO_TEXT,
                        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\n# TYPE h untyped\n"
                        "h_bucket{le=\"1\"} 1\n",
                        &c, &err),
              0);
    CHECK_INT(km.n, 2);
    CHECK_INT(km.clashes, 0);
    CHECK_STR(c.s[0].series, "h_bucket{le=\"1.0\"}");
    CHECK_STR(c.s[1].series, "h_bucket{le=\"1\"}");
    collector_free(&c);
    key_memory_free(&km);
}

/* Values parsed without strtod round exactly as strtod does: random
 * decimals of every length around the shortcut's limits. */
void test_expo_values_match_strtod(void)
{
    uint64_t r = 0x9e3779b97f4a7c15ull;
    char body[128], v[64];
    int mismatches = 0;
    for (int i = 0; i < 20000; i++) {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        int digits = 1 + (int)(r % 18), point = (int)((r >> 8) % (uint64_t)(digits + 1));
        int exp = (int)((r >> 16) % 61) - 30;
        size_t k = 0;
        if ((r >> 24) & 1)
            v[k++] = '-';
        uint64_t d = r >> 28;
        for (int j = 0; j < digits; j++) {
            if (j == point && j > 0)
                v[k++] = '.';
            v[k++] = (char)('0' + (d % 10));
            d = d / 10 ^ (d << 7);
        }
        if ((r >> 32) & 1)
            k += (size_t)snprintf(v + k, sizeof v - k, "e%d", exp);
        v[k] = '\0';
        snprintf(body, sizeof body, "m %s\n", v);
        collector c = {0};
        dr_error err;
        int rc = parse_str(DR_EXPO_TEXT, body, &c, &err);
        double want = strtod(v, NULL);
        if (rc != 0 || c.n != 1 || memcmp(&c.s[0].value, &want, sizeof want) != 0) {
            if (mismatches++ < 5)
                fprintf(stderr, "  %s: rc %d got %.17g want %.17g\n", v, rc,
                        c.n ? c.s[0].value : 0.0, want);
        }
        collector_free(&c);
    }
    CHECK_INT(mismatches, 0);
}

/* Braces, quotes and backslashes inside label values at every offset of
 * the scan's 16-byte windows: the second parse must find each line by its
 * key and end its series where the lexer does. */
void test_expo_known_series_window_edges(void)
{
    static const char *const tricky[] = {"}", "\\\"", "\\\\",         "}\\\"}",
                                         "{", "\\n",  ",a=\\\"b\\\"}"};
    char body[65536];
    size_t len = 0, lines = 0;
    for (size_t t = 0; t < sizeof tricky / sizeof tricky[0]; t++)
        for (int pad = 0; pad < 40; pad++) {
            len +=
                (size_t)snprintf(body + len, sizeof body - len, "m{a=\"%.*s%s\",b=\"x\"} %d\n", pad,
                                 "........................................", tricky[t], pad);
            lines++;
        }
    collector c = {0};
    dr_error err;
    size_t hits = 0;
    CHECK_INT(parse_twice(DR_EXPO_TEXT, body, len, &c, &err, &hits), 0);
    CHECK_INT(c.n, lines);
    CHECK_INT(hits, lines);
    collector_free(&c);
}
