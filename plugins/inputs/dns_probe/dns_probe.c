/*
 * The dns_probe input: asks the cluster's DNS the same questions at an
 * interval and turns what happens into metric samples, so that a node whose
 * DNS path is broken (a CoreDNS pod unreachable from it, a conntrack table
 * full, a stale resolv.conf) shows up in the same place as its other
 * metrics.
 *
 *   inputs:
 *     - type: dns_probe
 *       names: [kubernetes.default.svc.cluster.local, "example.com AAAA"]
 *
 * Every round sends each name to each server at once (exchange.c: UDP,
 * TCP after a truncated answer, one timeout for both) and emits one metric
 * chunk when the last of them has ended, with, per (server, name, type):
 * a latency histogram, the responses by rcode, timeouts and errors, the
 * answers of the last response and whether the last probe was answered.
 * The samples go into the pipeline as prometheus_scrape's do (interned
 * series of the agent's table, family metadata with them), so every
 * metrics output takes them.
 *
 * Rounds never overlap: the timeout is shorter than the interval, and a
 * round that would start while the outputs are full is skipped and
 * counted. Memory is one target per (server, name) pair, at most
 * DNS_MAX_SERVERS * MAX_NAMES, each with its exchange's buffers.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drover/plugin.h"
#include "exchange.h"
#include "expo.h"
#include "labels.h"
#include "series.h"
#include "servers.h"

/* Names one input probes at most. */
#define MAX_NAMES 100

typedef struct probe_conf {
    dr_strlist names;
    dr_strlist servers;
    char *resolv_conf;
    int64_t interval_ms, timeout_ms;
    bool tcp_fallback;
} probe_conf;

static const dr_option probe_options[] = {
    {"names",
     DR_OPT_STRLIST,
     offsetof(probe_conf, names),
     NULL,
     DR_OPT_REQUIRED,
     {NULL},
     0,
     0,
     "The names to resolve, each \"NAME\" or \"NAME TYPE\" (A, AAAA, CNAME, MX, NS, PTR, SOA, "
     "SRV, TXT, CAA, DS, DNSKEY, SVCB, HTTPS, ANY or TYPEnnn; A when not given). Names are "
     "asked as written, absolute (no search domains), with recursion desired; at most 100."},
    {"servers",
     DR_OPT_STRLIST,
     offsetof(probe_conf, servers),
     NULL,
     0,
     {NULL},
     0,
     0,
     "The DNS servers to ask, as IP addresses host[:port] (port 53 when not given; IPv6 in "
     "brackets when a port follows, [fd00::10]:53). When not set: the nameserver lines of "
     "resolv_conf. At most 16."},
    {"resolv_conf",
     DR_OPT_STRING,
     offsetof(probe_conf, resolv_conf),
     "/etc/resolv.conf",
     0,
     {NULL},
     0,
     0,
     "Where the servers come from when servers is not set: its nameserver lines, read when the "
     "input starts (and at every reload). Starting fails when it has none."},
    {"interval",
     DR_OPT_DURATION,
     offsetof(probe_conf, interval_ms),
     "30s",
     0,
     {NULL},
     100,
     86400000,
     "How often every name is asked of every server."},
    {"timeout",
     DR_OPT_DURATION,
     offsetof(probe_conf, timeout_ms),
     "2s",
     0,
     {NULL},
     10,
     60000,
     "How long one probe may take, UDP and TCP together, before it counts as a timeout. "
     "Must be shorter than interval."},
    {"tcp_fallback",
     DR_OPT_BOOL,
     offsetof(probe_conf, tcp_fallback),
     "true",
     0,
     {NULL},
     0,
     0,
     "Ask again over TCP when a UDP answer is truncated (TC bit). When false, the truncated "
     "answer is taken as it is."},
    {0},
};

/* Buckets of drover_dns_probe_duration_seconds, in seconds (and +Inf). */
static const double bucket_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                       0.25,  0.5,    1,     2.5,  5,     10};
#define NBUCKETS (sizeof bucket_bounds / sizeof bucket_bounds[0])

enum { ERR_MALFORMED = 0, ERR_NETWORK = 1, NERRORS };
static const char *const error_reasons[NERRORS] = {"malformed", "network"};

typedef struct dns_probe dns_probe;

/* One (server, name, type): its exchange, what it has seen so far (the
 * counters are cumulative, as a scraped counter is) and its series. */
typedef struct probe_target {
    dns_probe *in;
    const dns_server *server;
    char name[DNS_NAME_TEXT_MAX];
    uint16_t qtype;
    char type_name[16];
    dns_exchange x;

    uint64_t bucket_counts[NBUCKETS + 1]; /* per bucket, not cumulative; the last is +Inf */
    double sum;
    uint64_t count;
    uint64_t rcodes[16];
    uint64_t timeouts;
    uint64_t errors[NERRORS];
    bool answered_once, up;
    uint16_t answers;

    /* made at the first round that emits them, held until destroy */
    dr_series *s_bucket[NBUCKETS + 1], *s_sum, *s_count;
    dr_series *s_rcode[16], *s_timeouts, *s_errors[NERRORS], *s_answers, *s_up;
} probe_target;

struct dns_probe {
    dr_instance *inst;
    dr_series_table *series;
    dns_server servers[DNS_MAX_SERVERS];
    size_t nservers;
    probe_target *targets;
    size_t ntargets;
    uv_timer_t timer;
    bool timer_open, started, stopping, paused;
    size_t outstanding; /* exchanges of the current round not yet done */
    bool round_emitted; /* oneshot: the single round is out */
    dr_counter *rounds, *skipped, *samples, *wrong_id, *wrong_question;
    dr_counter *no_servers; /* rounds without a server to ask (resolv.conf unreadable) */
    dr_gauge *nservers_gauge;
};

/* ---- configuration --------------------------------------------------------------------- */

/* "NAME" or "NAME TYPE" into a normalized name and a type. */
static int parse_name_entry(const char *entry, char *name, uint16_t *qtype, dr_error *err,
                            size_t index)
{
    char word[DNS_NAME_TEXT_MAX], type[32] = "A", extra[2];
    int n = sscanf(entry, "%1020s %31s %1s", word, type, extra);
    if (n < 1 || n > 2 || strlen(entry) >= sizeof word) {
        dr_error_set(err, "names[%zu]: expected \"NAME\" or \"NAME TYPE\", got \"%s\"", index,
                     entry);
        return DR_EINVAL;
    }
    const char *why;
    if (dns_name_normalize(word, name, DNS_NAME_TEXT_MAX, &why) != 0) {
        dr_error_set(err, "names[%zu]: \"%s\": %s", index, word, why);
        return DR_EINVAL;
    }
    if (dns_type_parse(type, qtype) != 0) {
        dr_error_set(err, "names[%zu]: unknown query type \"%s\"", index, type);
        return DR_EINVAL;
    }
    return 0;
}

static int parse_servers(dns_probe *in, const dr_strlist *list, dr_error *err)
{
    if (list->n > DNS_MAX_SERVERS) {
        dr_error_set(err, "servers: at most %d servers, got %zu", DNS_MAX_SERVERS, list->n);
        return DR_EINVAL;
    }
    for (size_t i = 0; i < list->n; i++) {
        const char *why;
        if (dns_server_parse(list->v[i], &in->servers[i], &why) != 0) {
            dr_error_set(err, "servers[%zu]: \"%s\": %s", i, list->v[i], why);
            return DR_EINVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(in->servers[j].label, in->servers[i].label) == 0) {
                dr_error_set(err, "servers[%zu]: %s is listed twice", i, in->servers[i].label);
                return DR_EINVAL;
            }
    }
    in->nservers = list->n;
    return 0;
}

/* The names, checked once: the targets are made at start, when the
 * servers are known. */
static int check_names(const probe_conf *conf, dr_error *err)
{
    if (conf->names.n == 0) {
        dr_error_set(err, "names: at least one name is needed");
        return DR_EINVAL;
    }
    if (conf->names.n > MAX_NAMES) {
        dr_error_set(err, "names: at most %d names, got %zu", MAX_NAMES, conf->names.n);
        return DR_EINVAL;
    }
    char a[DNS_NAME_TEXT_MAX], b[DNS_NAME_TEXT_MAX];
    for (size_t i = 0; i < conf->names.n; i++) {
        uint16_t ta, tb;
        if (parse_name_entry(conf->names.v[i], a, &ta, err, i) != 0)
            return DR_EINVAL;
        for (size_t j = 0; j < i; j++) {
            parse_name_entry(conf->names.v[j], b, &tb, err, j);
            if (ta == tb && strcmp(a, b) == 0) {
                dr_error_set(err, "names[%zu]: \"%s\" is listed twice", i, conf->names.v[i]);
                return DR_EINVAL;
            }
        }
    }
    return 0;
}

static int probe_init(dr_instance *inst, dr_error *err)
{
    probe_conf *conf = inst->conf;
    if (conf->timeout_ms >= conf->interval_ms) {
        dr_error_set(err, "timeout: %lldms must be shorter than interval (%lldms)",
                     (long long)conf->timeout_ms, (long long)conf->interval_ms);
        return DR_EINVAL;
    }
    if (check_names(conf, err) != 0)
        return DR_EINVAL;
    dns_probe *in = calloc(1, sizeof *in);
    if (!in)
        return DR_ENOMEM;
    in->inst = inst;
    if (conf->servers.n > 0 && parse_servers(in, &conf->servers, err) != 0) {
        free(in);
        return DR_EINVAL;
    }
    inst->state = in;
    return 0;
}

/* ---- samples --------------------------------------------------------------------------- */

/* The series of one of a target's samples: __name__, server, name, type and
 * an optional extra label. NULL when it cannot be made (counted as a drop
 * by the caller). */
static dr_series *make_series(dns_probe *in, const probe_target *t, const char *metric,
                              const char *label, const char *value)
{
    dr_labels ls;
    dr_labels_init(&ls);
    int rc = dr_labels_sets(&ls, "__name__", metric);
    if (rc == 0)
        rc = dr_labels_sets(&ls, "server", t->server->label);
    if (rc == 0)
        rc = dr_labels_sets(&ls, "name", t->name);
    if (rc == 0)
        rc = dr_labels_sets(&ls, "type", t->type_name);
    if (rc == 0 && label)
        rc = dr_labels_sets(&ls, label, value);
    if (rc == 0)
        rc = dr_labels_canon(&ls);
    dr_series *s = NULL;
    if (rc == 0 && dr_series_intern(in->series, &ls, dr_labels_hash(&ls), &s) != 0)
        s = NULL;
    dr_labels_free(&ls);
    return s;
}

/* Adds one sample, making its series on first use. */
static void add_sample(dns_probe *in, dr_chunk *c, const probe_target *t, dr_series **slot,
                       const char *metric, const char *label, const char *value, int64_t ts_ms,
                       double v)
{
    if (!*slot)
        *slot = make_series(in, t, metric, label, value);
    if (!*slot || !dr_chunk_add_sample(c, *slot, ts_ms, v))
        dr_count_drop(in->inst, "series_unavailable", 1);
}

static void add_target_samples(dns_probe *in, dr_chunk *c, probe_target *t, int64_t ts_ms)
{
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= NBUCKETS; i++) {
        char le[32];
        if (i < NBUCKETS)
            snprintf(le, sizeof le, "%g", bucket_bounds[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        cumulative += t->bucket_counts[i];
        add_sample(in, c, t, &t->s_bucket[i], "drover_dns_probe_duration_seconds_bucket", "le", le,
                   ts_ms, (double)cumulative);
    }
    add_sample(in, c, t, &t->s_sum, "drover_dns_probe_duration_seconds_sum", NULL, NULL, ts_ms,
               t->sum);
    add_sample(in, c, t, &t->s_count, "drover_dns_probe_duration_seconds_count", NULL, NULL, ts_ms,
               (double)t->count);
    for (unsigned r = 0; r < 16; r++)
        if (t->rcodes[r])
            add_sample(in, c, t, &t->s_rcode[r], "drover_dns_probe_responses_total", "rcode",
                       dns_rcode_name(r), ts_ms, (double)t->rcodes[r]);
    add_sample(in, c, t, &t->s_timeouts, "drover_dns_probe_timeouts_total", NULL, NULL, ts_ms,
               (double)t->timeouts);
    for (int e = 0; e < NERRORS; e++)
        add_sample(in, c, t, &t->s_errors[e], "drover_dns_probe_errors_total", "reason",
                   error_reasons[e], ts_ms, (double)t->errors[e]);
    if (t->answered_once)
        add_sample(in, c, t, &t->s_answers, "drover_dns_probe_answers", NULL, NULL, ts_ms,
                   (double)t->answers);
    add_sample(in, c, t, &t->s_up, "drover_dns_probe_up", NULL, NULL, ts_ms, t->up ? 1 : 0);
}

typedef struct family {
    const char *name, *help;
    dr_metric_type type;
} family;

static const family families[] = {
    {"drover_dns_probe_duration_seconds",
     "How long DNS probes took, answered or not (a timeout counts the time waited).",
     DR_MT_HISTOGRAM},
    {"drover_dns_probe_responses_total", "DNS responses received, by response code.",
     DR_MT_COUNTER},
    {"drover_dns_probe_timeouts_total", "DNS probes that got no answer within the timeout.",
     DR_MT_COUNTER},
    {"drover_dns_probe_errors_total",
     "DNS probes that failed: a malformed answer, or the query could not be sent or was refused.",
     DR_MT_COUNTER},
    {"drover_dns_probe_answers", "Answer records in the last response.", DR_MT_GAUGE},
    {"drover_dns_probe_up", "1 when the last DNS probe got a response, whatever its rcode.",
     DR_MT_GAUGE},
};

static void emit_round(dns_probe *in)
{
    dr_chunk *c = dr_chunk_new_metrics(in->inst, in->series);
    if (!c) {
        dr_count_drop(in->inst, "out_of_memory", in->ntargets);
        return;
    }
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        const family *f = &families[i];
        dr_chunk_add_meta(c, f->name, strlen(f->name), (uint8_t)f->type, f->help, strlen(f->help),
                          NULL, 0);
    }
    int64_t ts_ms = dr_now_ns() / 1000000;
    for (size_t i = 0; i < in->ntargets; i++)
        add_target_samples(in, c, &in->targets[i], ts_ms);
    if (c->nsamples == 0) {
        dr_chunk_discard(c);
        return;
    }
    dr_counter_add(in->samples, c->nsamples);
    dr_input_emit(in->inst, c);
}

/* ---- rounds ---------------------------------------------------------------------------- */

static void observe(probe_target *t, double seconds)
{
    size_t b = 0;
    while (b < NBUCKETS && seconds > bucket_bounds[b])
        b++;
    t->bucket_counts[b]++;
    t->sum += seconds;
    t->count++;
}

static void record_outcome(probe_target *t, const dns_outcome *o)
{
    observe(t, o->seconds);
    t->up = o->result == DNS_ANSWERED;
    switch (o->result) {
    case DNS_ANSWERED:
        t->rcodes[o->rcode & 15]++;
        t->answers = o->answers;
        t->answered_once = true;
        break;
    case DNS_TIMEOUT:
        t->timeouts++;
        break;
    case DNS_MALFORMED:
    case DNS_NETWORK:
        t->errors[o->result == DNS_MALFORMED ? ERR_MALFORMED : ERR_NETWORK]++;
        dr_log(t->in->inst, DR_LOG_WARN, "DNS probe failed",
               "server=%s qname=%s qtype=%s error=\"%s\"", t->server->label, t->name, t->type_name,
               o->reason ? o->reason : "");
        break;
    case DNS_CANCELLED:
        break;
    }
}

static void maybe_free(dns_probe *in);

static void on_probe_done(dns_exchange *x, const dns_outcome *o)
{
    probe_target *t = x->ctx;
    dns_probe *in = t->in;
    if (o->result != DNS_CANCELLED && !in->stopping)
        record_outcome(t, o);
    if (--in->outstanding > 0)
        return;
    if (in->stopping) {
        maybe_free(in);
        return;
    }
    emit_round(in);
    if (in->inst->oneshot && !in->round_emitted) {
        in->round_emitted = true;
        dr_input_drained(in->inst);
    }
}

static void on_tick(uv_timer_t *timer);
static int ensure_targets(dns_probe *in, const probe_conf *conf);

static void start_round(dns_probe *in)
{
    if (in->stopping || (in->inst->oneshot && in->round_emitted))
        return;
    if (ensure_targets(in, in->inst->conf) != 0) {
        /* no server to ask: counted and logged, tried again next round;
         * the agent and its other inputs go on */
        dr_counter_add(in->no_servers, 1);
        if (in->inst->oneshot && !in->round_emitted) {
            in->round_emitted = true;
            dr_input_drained(in->inst);
        }
        return;
    }
    if (in->outstanding > 0 || !dr_input_may_emit(in->inst)) {
        dr_counter_add(in->skipped, 1);
        if (in->inst->oneshot) /* the single round must still happen */
            uv_timer_start(&in->timer, on_tick, 100, 0);
        return;
    }
    dr_counter_add(in->rounds, 1);
    for (size_t i = 0; i < in->ntargets; i++)
        if (dns_exchange_start(&in->targets[i].x) == 0)
            in->outstanding++;
}

static void on_tick(uv_timer_t *timer)
{
    start_round(timer->data);
}

/* ---- start, stop, destroy ----------------------------------------------------------------- */

static int load_servers(dns_probe *in, const probe_conf *conf)
{
    if (in->nservers > 0)
        return 0;
    char why[512];
    int rc = dns_resolv_conf_servers(conf->resolv_conf, in->servers, DNS_MAX_SERVERS, &in->nservers,
                                     why, sizeof why);
    if (rc == 0 && in->nservers == 0) {
        snprintf(why, sizeof why, "%s has no nameserver line", conf->resolv_conf);
        rc = DR_EINVAL;
    }
    if (rc != 0) {
        in->nservers = 0; /* read again at the next round */
        dr_log(in->inst, DR_LOG_ERROR, "no DNS servers to probe", "error=\"%s\"", why);
    }
    return rc;
}

static void make_targets(dns_probe *in, const probe_conf *conf)
{
    dr_error err;
    size_t k = 0;
    for (size_t s = 0; s < in->nservers; s++)
        for (size_t i = 0; i < conf->names.n; i++) {
            probe_target *t = &in->targets[k++];
            t->in = in;
            t->server = &in->servers[s];
            parse_name_entry(conf->names.v[i], t->name, &t->qtype, &err, i); /* checked at init */
            char buf[16];
            snprintf(t->type_name, sizeof t->type_name, "%s",
                     dns_type_name(t->qtype, buf, sizeof buf));
            t->x.loop = in->inst->loop;
            t->x.server = (const struct sockaddr *)&t->server->addr;
            t->x.name = t->name;
            t->x.qtype = t->qtype;
            t->x.timeout_ms = conf->timeout_ms;
            t->x.tcp_fallback = conf->tcp_fallback;
            t->x.done = on_probe_done;
            t->x.ctx = t;
            t->x.counters.wrong_id = in->wrong_id;
            t->x.counters.wrong_question = in->wrong_question;
        }
    in->ntargets = k;
}

/* The targets, made once there are servers: the configured ones, or those
 * of resolv.conf, read again at each round until it gives some (a node
 * whose resolv.conf is missing or empty must not stop the agent). */
static int ensure_targets(dns_probe *in, const probe_conf *conf)
{
    if (in->targets)
        return 0;
    int rc = load_servers(in, conf);
    if (rc != 0)
        return rc;
    if (!(in->targets = calloc(in->nservers * conf->names.n, sizeof *in->targets)))
        return DR_ENOMEM;
    make_targets(in, conf);
    dr_gauge_set(in->nservers_gauge, (double)in->nservers);
    dr_log(in->inst, DR_LOG_INFO, "probing DNS", "servers=%zu names=%zu", in->nservers,
           conf->names.n);
    return 0;
}

static int probe_start(dr_instance *inst)
{
    dns_probe *in = inst->state;
    probe_conf *conf = inst->conf;
    in->series = dr_agent_series(inst->agent);
    if (!in->series)
        return DR_ENOMEM;
    in->no_servers = dr_counter_new(inst, "drover_dns_probe_rounds_without_servers_total",
                                    "Rounds with no server to ask: resolv.conf could not be read "
                                    "or has no nameserver line (read again every round).",
                                    NULL, NULL);
    in->nservers_gauge = dr_gauge_new(inst, "drover_dns_probe_servers",
                                      "The DNS servers the probes ask.", NULL, NULL);
    in->rounds =
        dr_counter_new(inst, "drover_dns_probe_rounds_total",
                       "Rounds of probes started (every name of every server).", NULL, NULL);
    in->skipped = dr_counter_new(inst, "drover_dns_probe_rounds_skipped_total",
                                 "Rounds not started: the outputs were full.", NULL, NULL);
    in->samples = dr_counter_new(inst, "drover_dns_probe_samples_total",
                                 "Metric samples emitted by the DNS probes.", NULL, NULL);
    in->wrong_id = dr_counter_new(inst, "drover_dns_probe_ignored_replies_total",
                                  "UDP replies ignored while waiting for an answer, by reason.",
                                  "reason", "wrong_id");
    in->wrong_question = dr_counter_new(
        inst, "drover_dns_probe_ignored_replies_total",
        "UDP replies ignored while waiting for an answer, by reason.", "reason", "wrong_question");
    uv_timer_init(inst->loop, &in->timer);
    in->timer.data = in;
    in->timer_open = true;
    in->started = true;
    uv_timer_start(&in->timer, on_tick, 0, inst->oneshot ? 0 : (uint64_t)conf->interval_ms);
    return 0;
}

static void probe_pause(dr_instance *inst)
{
    dns_probe *in = inst->state;
    if (!in || !in->timer_open || in->paused)
        return;
    in->paused = true;
    uv_timer_stop(&in->timer);
}

/* Also called when the outputs drained after being full: the timer never
 * stopped for that, so only a pause is undone. */
static void probe_resume(dr_instance *inst)
{
    dns_probe *in = inst->state;
    probe_conf *conf = inst->conf;
    if (!in || !in->timer_open || !in->paused || in->stopping)
        return;
    in->paused = false;
    uv_timer_start(&in->timer, on_tick, (uint64_t)conf->interval_ms,
                   inst->oneshot ? 0 : (uint64_t)conf->interval_ms);
}

static void stop_everything(dns_probe *in)
{
    if (in->stopping)
        return;
    in->stopping = true;
    if (in->timer_open)
        uv_timer_stop(&in->timer);
    for (size_t i = 0; i < in->ntargets; i++)
        dns_exchange_cancel(&in->targets[i].x);
}

static void probe_stop(dr_instance *inst)
{
    dns_probe *in = inst->state;
    if (in)
        stop_everything(in);
}

static void release_series(dns_probe *in, probe_target *t)
{
    dr_series **all[] = {&t->s_sum, &t->s_count, &t->s_timeouts, &t->s_answers, &t->s_up};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (*all[i]) {
            dr_series_unref(in->series, *all[i]);
            *all[i] = NULL;
        }
    for (size_t i = 0; i <= NBUCKETS; i++)
        if (t->s_bucket[i])
            dr_series_unref(in->series, t->s_bucket[i]);
    for (size_t i = 0; i < 16; i++)
        if (t->s_rcode[i])
            dr_series_unref(in->series, t->s_rcode[i]);
    for (size_t i = 0; i < NERRORS; i++)
        if (t->s_errors[i])
            dr_series_unref(in->series, t->s_errors[i]);
}

/* Frees the state once the timer and every exchange are closed. */
static void maybe_free(dns_probe *in)
{
    if (!in->stopping || in->timer_open || in->outstanding > 0 || in->inst)
        return;
    free(in->targets);
    free(in);
}

static void on_timer_closed(uv_handle_t *h)
{
    dns_probe *in = h->data;
    in->timer_open = false;
    maybe_free(in);
}

static void probe_destroy(dr_instance *inst)
{
    dns_probe *in = inst->state;
    if (!in)
        return;
    stop_everything(in);
    /* the series belong to the core's table, freed right after destroy */
    for (size_t i = 0; i < in->ntargets; i++)
        release_series(in, &in->targets[i]);
    inst->state = NULL;
    in->inst = NULL; /* from now on nothing is counted, logged or emitted */
    if (in->timer_open)
        uv_close((uv_handle_t *)&in->timer, on_timer_closed);
    else
        maybe_free(in);
}

const dr_plugin dr_plugin_dns_probe = {
    .abi = DR_PLUGIN_ABI,
    .name = "dns_probe",
    .kind = DR_INPUT,
    .description =
        "Resolves a list of names through each DNS server of the node (the nameserver lines of "
        "/etc/resolv.conf, or servers given) at an interval, over UDP with a fresh random id per "
        "query and TCP when an answer is truncated, and emits per server, name and type: "
        "drover_dns_probe_duration_seconds (a histogram of every probe's time, answered or not, "
        "so its _count is the number of probes; buckets 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, "
        "0.1, 0.25, 0.5, 1, 2.5, 5, 10 seconds and +Inf), "
        "drover_dns_probe_responses_total{rcode} (NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...), "
        "drover_dns_probe_timeouts_total, drover_dns_probe_errors_total{reason} (malformed: an "
        "answer that does not parse; network: the query could not be sent, or the server port "
        "refused it), drover_dns_probe_answers (answer records of the last response) and "
        "drover_dns_probe_up (1 when the last probe got a response), labelled server, name and "
        "type. Replies with another id or question are ignored and counted "
        "(drover_dns_probe_ignored_replies_total{reason}). While the outputs are full, rounds "
        "are skipped and counted. A resolv.conf that cannot be read or names no server does not "
        "stop the agent: it is logged, the rounds are counted in "
        "drover_dns_probe_rounds_without_servers_total, and it is read again every round until "
        "it gives servers (drover_dns_probe_servers). Two inputs that ask the same name of the "
        "same server make the same series: give each (server, name, type) to one input.",
    .options = probe_options,
    .conf_size = sizeof(probe_conf),
    .init = probe_init,
    .start = probe_start,
    .pause = probe_pause,
    .resume = probe_resume,
    .stop = probe_stop,
    .destroy = probe_destroy,
    .data = DR_DATA_METRICS,
};
