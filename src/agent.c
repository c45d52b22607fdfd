/*
 * The agent: one loaded configuration and its running pipeline.
 *
 * Life of a chunk:
 *
 *   input --dr_input_emit--> filters (in config order, those whose match
 *   selects the input) --> one queue entry (dr_flush) per routed output
 *   --dispatch--> plugin flush --dr_output_done--> release
 *
 * A filter may also make chunks of its own (the multiline filter emits a
 * group of lines it held back): dr_filter_emit sends such a chunk down the
 * same pipeline, from the filter after it. A filter that holds a reference
 * to a chunk delays that chunk's acknowledgement until it lets go.
 *
 * The chunk holds one reference per queue entry; when the last output is
 * done with it, its acknowledgement runs and the input may move its
 * checkpoint past it. Nothing is acknowledged early, so a crash at any point
 * leaves the data in its source.
 *
 * Bounds: each output counts the bytes of the chunks queued for it
 * (delivered or not yet). An input may emit only while every output it feeds
 * is below its queue_max_bytes; otherwise it waits, and is resumed when those
 * queues drain below half. So memory is bounded by the sum of the output
 * queue bounds plus one read per input, whatever the backlog.
 *
 * Everything here runs on the loop thread.
 */
#include <fnmatch.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "series.h"
#include "config.h"
#include "metrics.h"

/* ---- instances ------------------------------------------------------------ */

typedef struct dr_node dr_node;
typedef struct dr_output_rt dr_output_rt;

/* Common keys of every instance (filled by dr_cfg_apply). */
typedef struct common_conf {
    char *name;
    char *type;
    dr_strlist match;
    uint64_t queue_max_bytes;
    int64_t retry_min_ms;
    int64_t retry_max_ms;
    int64_t max_inflight;
    bool offer_to_namespaces;
} common_conf;

/* One chunk in an output's queue: waiting, or in flight as part of a batch.
 * Entries stay in arrival order whatever happens to them; a batch that
 * fails simply gives its entries back (batch = NULL). */
typedef struct dr_qentry dr_qentry;
struct dr_qentry {
    dr_qentry *prev, *next;
    dr_chunk *chunk;
    size_t bytes;      /* payload, for batch sizes */
    size_t mem;        /* what it holds in memory, for the queue's bound */
    int64_t queued_ns; /* monotonic */
    uint32_t attempts;
    dr_flush *batch; /* the batch in flight holding it, NULL while waiting */
};

/* A batch of entries handed to an output's flush callback. */
struct dr_flush {
    dr_flush *prev, *next; /* the output's batches in flight */
    dr_output_rt *out;
    uint32_t attempts;
    size_t n;
    dr_qentry *entries[]; /* oldest first */
};

/* Most chunks one batch may hold, whatever their size. */
#define DR_BATCH_MAX_CHUNKS 4096
/* The longest wait a backend's Retry-After can impose. */
#define DR_RETRY_AFTER_MAX_MS (10 * 60 * 1000)

struct dr_output_rt {
    uint64_t queue_max_bytes;
    int64_t retry_min_ms, retry_max_ms;
    int max_inflight;
    uint64_t batch_max_bytes; /* 0: one chunk per flush */
    int64_t batch_wait_ms;
    dr_qentry *head, *tail; /* FIFO in arrival order */
    dr_flush *batches;      /* in flight */
    size_t queued_bytes;    /* memory of every entry, in flight or waiting */
    size_t queued_chunks;
    int inflight;       /* batches */
    bool retry_pending; /* the retry timer is armed: dispatch waits for it */
    bool failing;       /* the last attempt failed: one batch at a time */
    bool batch_timer_armed;
    int64_t backoff_ms;
    int64_t retry_due_ns; /* monotonic, while retry_pending */
    uv_timer_t retry_timer;
    uv_timer_t batch_timer; /* a partial batch's wait is over */
    dr_counter *retries, *dropped_abandoned;
    dr_gauge *g_queue_bytes, *g_queue_chunks, *g_oldest_age;
};

struct dr_node {
    dr_instance inst; /* first: dr_instance * and dr_node * convert */
    dr_plugin_kind kind;
    common_conf common;
    bool started;
    bool stopped;
    /* inputs */
    dr_output_rt **routes; /* outputs fed by this input */
    size_t nroutes;
    dr_node **filters; /* filters applied to this input, in order */
    size_t nfilters;
    bool waiting; /* may_emit said no; resume when room frees */
    /* filters made at run time (dr_agent_filter_new): who continues what
     * they emit */
    dr_filter_emit_hook emit_hook;
    void *emit_ctx;
    bool drained;
    /* outputs */
    dr_output_rt out;
};

struct dr_agent {
    uv_loop_t *loop;
    dr_metrics *metrics;
    dr_cfg_doc *doc;
    dr_agent_conf conf;
    bool oneshot;
    dr_node **nodes; /* inputs, filters and outputs in config order */
    size_t nnodes;
    bool running;
    bool shutting_down;
    uv_idle_t pump; /* dispatches queued entries on the next loop turn */
    bool pump_active;
    uv_timer_t grace_timer;
    uv_timer_t oneshot_timer;
    uv_timer_t startup_timer; /* inputs wait until every filter is ready */
    int handles_open;
    dr_agent_cb finished_cb, shutdown_cb, failed_cb;
    void *finished_ctx, *shutdown_ctx, *failed_ctx;
    dr_counter *dropped_no_route;
    dr_output_rt *route_targets[64]; /* outputs route filters may send to */
    size_t nroute_targets;
    dr_series_table *series; /* every metric series, made at first use */
};

static dr_node *node_of(dr_instance *inst)
{
    return (dr_node *)inst;
}

/* ---- option tables --------------------------------------------------------- */

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};

const dr_option dr_agent_options[] = {
    {"data_dir", DR_OPT_STRING, offsetof(dr_agent_conf, data_dir), "/var/lib/drover", 0, NULL, 0, 0,
     "Directory for checkpoints and other state. Created if missing."},
    {"node_name", DR_OPT_STRING, offsetof(dr_agent_conf, node_name), NULL, 0, NULL, 0, 0,
     "Name of the node the agent runs on. Default: the NODE_NAME environment variable, "
     "else the host name."},
    {"http.listen", DR_OPT_STRING, offsetof(dr_agent_conf, http_listen), "127.0.0.1:2020", 0, NULL,
     0, 0,
     "Address of the agent's own HTTP server (/metrics, /healthz, /readyz) as host:port; "
     "port 0 picks a free port; \"off\" disables the server."},
    {"log_level", DR_OPT_ENUM, offsetof(dr_agent_conf, log_level), "info", 0, log_levels, 0, 0,
     "Least severe level of the agent's own log: debug, info, warn or error."},
    {"grace_period", DR_OPT_DURATION, offsetof(dr_agent_conf, grace_period_ms), "5s", 0, NULL, 0,
     3600000,
     "On SIGTERM, SIGINT or a reload: how long outputs may take to deliver what is queued. "
     "What is left is not checkpointed and is read again on the next start."},
    {"max_series", DR_OPT_INT, offsetof(dr_agent_conf, max_series), "4000000", 0, NULL, 1,
     1000000000,
     "Most metric series the agent holds at once, over every scrape and queue. A sample of a "
     "new series beyond it is dropped and counted (reason series_limit)."},
    {0},
};

#define COMMON_NAME                                                                                \
    {                                                                                              \
        "name", DR_OPT_STRING, offsetof(common_conf, name), NULL, 0, NULL, 0, 0,                   \
            "Instance name, unique across the configuration; used by match and as the `name` "     \
            "label "                                                                               \
            "of the self-metrics. Default: the type followed by its position, such as tail.0."     \
    }
#define COMMON_TYPE                                                                                \
    {                                                                                              \
        "type", DR_OPT_STRING, offsetof(common_conf, type), NULL, 0, NULL, 0, 0,                   \
            "The plugin (required)."                                                               \
    }
#define COMMON_MATCH                                                                               \
    {                                                                                              \
        "match", DR_OPT_STRLIST, offsetof(common_conf, match), "*", 0, NULL, 0, 0,                 \
            "Names of the inputs whose records this instance takes: one or a list of glob "        \
            "patterns."                                                                            \
    }

const dr_option dr_common_input_options[] = {COMMON_NAME, COMMON_TYPE, {0}};
const dr_option dr_common_filter_options[] = {COMMON_NAME, COMMON_TYPE, COMMON_MATCH, {0}};
const dr_option dr_common_output_options[] = {
    COMMON_NAME,
    COMMON_TYPE,
    COMMON_MATCH,
    {"queue_max_bytes", DR_OPT_SIZE, offsetof(common_conf, queue_max_bytes), "8MiB", 0, NULL, 4096,
     (int64_t)1 << 40,
     "Bound of the memory queued for this output: the chunks of records taken and not yet "
     "delivered, counted whole (text, records, bookkeeping), so that many small chunks weigh "
     "what they cost. When it is reached the inputs that feed it stop reading until it "
     "drains below half."},
    {"max_inflight", DR_OPT_INT, offsetof(common_conf, max_inflight), "4", 0, NULL, 1, 1024,
     "Deliveries (chunks, or batches for outputs that batch) the output may have in flight at "
     "once; one while it is failing."},
    {"retry_min", DR_OPT_DURATION, offsetof(common_conf, retry_min_ms), "1s", 0, NULL, 1, 3600000,
     "First wait before retrying a failed delivery; doubled after each failure."},
    {"retry_max", DR_OPT_DURATION, offsetof(common_conf, retry_max_ms), "60s", 0, NULL, 1, 86400000,
     "Longest wait between retries. Each wait is drawn at random up to the current "
     "bound (full jitter)."},
    {"offer_to_namespaces", DR_OPT_BOOL, offsetof(common_conf, offer_to_namespaces), "false", 0,
     NULL, 0, 0,
     "Let the rules namespaces own (the namespaces filter) route records to this output by "
     "name. They still cannot see its URL, credentials or any other option."},
    {0},
};

static const char *const common_input_keys[] = {"name", "type", NULL};
static const char *const common_filter_keys[] = {"name", "type", "match", NULL};
static const char *const common_output_keys[] = {"name",
                                                 "type",
                                                 "match",
                                                 "queue_max_bytes",
                                                 "max_inflight",
                                                 "retry_min",
                                                 "retry_max",
                                                 "offer_to_namespaces",
                                                 NULL};

/* ---- self-metrics helpers ------------------------------------------------------ */

dr_counter *dr_counter_new(dr_instance *inst, const char *metric, const char *help,
                           const char *label, const char *label_value)
{
    const char *labels[] = {"plugin", inst->plugin->name, "name", inst->name,
                            label,    label_value,        NULL};
    return dr_metrics_counter(inst->agent->metrics, metric, help, labels);
}

dr_gauge *dr_gauge_new(dr_instance *inst, const char *metric, const char *help, const char *label,
                       const char *label_value)
{
    const char *labels[] = {"plugin", inst->plugin->name, "name", inst->name,
                            label,    label_value,        NULL};
    return dr_metrics_gauge(inst->agent->metrics, metric, help, labels);
}

void dr_count_drop(dr_instance *inst, const char *reason, uint64_t n)
{
    dr_counter *c = dr_counter_new(inst, "drover_dropped_records_total",
                                   "Records dropped on purpose, by reason.", "reason", reason);
    if (c)
        dr_counter_add(c, n);
}

static void create_standard_metrics(dr_node *n)
{
    dr_instance *in = &n->inst;
    if (n->kind == DR_INPUT) {
        in->records_in = dr_counter_new(in, "drover_input_records_total",
                                        "Records read by the input.", NULL, NULL);
        in->bytes_in = dr_counter_new(in, "drover_input_bytes_total",
                                      "Message bytes read by the input.", NULL, NULL);
    }
    if (n->kind == DR_OUTPUT) {
        in->records_out = dr_counter_new(in, "drover_output_records_total",
                                         "Records delivered by the output.", NULL, NULL);
        in->bytes_out = dr_counter_new(in, "drover_output_bytes_total",
                                       "Message bytes delivered by the output.", NULL, NULL);
        dr_output_rt *o = &n->out;
        o->retries = dr_counter_new(in, "drover_output_retries_total",
                                    "Deliveries that failed and were retried.", NULL, NULL);
        o->g_queue_bytes = dr_gauge_new(in, "drover_queue_bytes",
                                        "Memory of the chunks queued for the output.", NULL, NULL);
        o->g_queue_chunks =
            dr_gauge_new(in, "drover_queue_chunks", "Chunks queued for the output.", NULL, NULL);
        o->g_oldest_age =
            dr_gauge_new(in, "drover_queue_oldest_age_seconds",
                         "Age of the oldest chunk queued for the output.", NULL, NULL);
    }
}

/* Refreshes the queue gauges just before /metrics is rendered. */
/* The series table's size, for /metrics (the table exists once a metrics
 * plugin asked for it). */
static void refresh_series_gauges(dr_agent *a)
{
    if (!a->series)
        return;
    static const char *const no_labels[] = {NULL};
    dr_series_stats st;
    dr_series_table_stats(a->series, &st);
    dr_gauge_set(dr_metrics_gauge(a->metrics, "drover_series", "Metric series held.", no_labels),
                 st.series);
    dr_gauge_set(dr_metrics_gauge(a->metrics, "drover_series_symbols",
                                  "Distinct label strings of the series held.", no_labels),
                 st.symbols);
    dr_gauge_set(dr_metrics_gauge(a->metrics, "drover_series_bytes",
                                  "Memory of the series table: series, strings, hash tables.",
                                  no_labels),
                 (double)st.bytes);
    dr_gauge_set(dr_metrics_gauge(a->metrics, "drover_series_full_drops",
                                  "Samples of new series refused because the table held "
                                  "max_series (since start).",
                                  no_labels),
                 (double)st.full_drops);
}

static void refresh_queue_gauges(void *ctx)
{
    dr_agent *a = ctx;
    refresh_series_gauges(a);
    int64_t now = dr_mono_ns();
    for (size_t i = 0; i < a->nnodes; i++) {
        dr_node *n = a->nodes[i];
        if (n->kind != DR_OUTPUT)
            continue;
        dr_output_rt *o = &n->out;
        dr_gauge_set(o->g_queue_bytes, (double)o->queued_bytes);
        dr_gauge_set(o->g_queue_chunks, (double)o->queued_chunks);
        double age = o->head ? (double)(now - o->head->queued_ns) / 1e9 : 0;
        dr_gauge_set(o->g_oldest_age, age);
    }
}

/* ---- accessors for plugins ------------------------------------------------------- */

const char *dr_agent_data_dir(const dr_agent *a)
{
    return a->conf.data_dir;
}

const char *dr_agent_node_name(const dr_agent *a)
{
    return a->conf.node_name;
}

dr_series_table *dr_agent_series(dr_agent *a)
{
    if (!a->series)
        a->series = dr_series_table_new((uint32_t)a->conf.max_series);
    return a->series;
}

const dr_agent_conf *dr_agent_get_conf(const dr_agent *a)
{
    return &a->conf;
}

bool dr_agent_ready(const dr_agent *a)
{
    return a->running && !a->shutting_down;
}

/* ---- routing ---------------------------------------------------------------------- */

static bool match_selects(const dr_strlist *match, const char *input_name)
{
    for (size_t i = 0; i < match->n; i++)
        if (fnmatch(match->v[i], input_name, 0) == 0)
            return true;
    return false;
}

/* The kinds of data a plugin produces or handles (logs when it says none). */
static uint32_t plugin_data(const dr_plugin *p)
{
    return p->data ? p->data : DR_DATA_LOGS;
}

static int build_routes(dr_agent *a)
{
    for (size_t i = 0; i < a->nnodes; i++) {
        dr_node *in = a->nodes[i];
        if (in->kind != DR_INPUT)
            continue;
        in->routes = calloc(a->nnodes, sizeof *in->routes);
        in->filters = calloc(a->nnodes, sizeof *in->filters);
        if (!in->routes || !in->filters)
            return DR_ENOMEM;
        uint32_t produces = plugin_data(in->inst.plugin);
        for (size_t j = 0; j < a->nnodes; j++) {
            dr_node *n = a->nodes[j];
            if (!(plugin_data(n->inst.plugin) & produces))
                continue; /* a log filter or output never sees metrics, and back */
            if (n->kind == DR_OUTPUT && match_selects(&n->common.match, in->inst.name))
                in->routes[in->nroutes++] = &n->out;
            if (n->kind == DR_FILTER && match_selects(&n->common.match, in->inst.name))
                in->filters[in->nfilters++] = n;
        }
        if (in->nroutes == 0)
            dr_log(&in->inst, DR_LOG_WARN, "no output matches this input; its records are dropped",
                   NULL);
    }
    return 0;
}

static void pump_start(dr_agent *a);

bool dr_input_may_emit(const dr_instance *input)
{
    dr_node *in = node_of((dr_instance *)input);
    dr_agent *a = in->inst.agent;
    if (a->shutting_down)
        return false;
    for (size_t i = 0; i < in->nroutes + a->nroute_targets; i++) {
        dr_output_rt *o = i < in->nroutes ? in->routes[i] : a->route_targets[i - in->nroutes];
        if (o->queued_bytes >= o->queue_max_bytes) {
            in->waiting = true;
            return false;
        }
    }
    return true;
}

static dr_node *output_named(dr_agent *a, const char *name)
{
    for (size_t i = 0; i < a->nnodes; i++)
        if (a->nodes[i]->kind == DR_OUTPUT && strcmp(a->nodes[i]->inst.name, name) == 0)
            return a->nodes[i];
    return NULL;
}

dr_instance *dr_agent_output(dr_agent *a, const char *name)
{
    dr_node *n = output_named(a, name);
    return n ? &n->inst : NULL;
}

bool dr_output_offered(const dr_instance *output)
{
    const dr_node *n = (const dr_node *)output;
    return n->kind == DR_OUTPUT && n->common.offer_to_namespaces;
}

double dr_output_queue_fill(const dr_instance *output)
{
    const dr_node *n = (const dr_node *)output;
    if (n->kind != DR_OUTPUT || n->out.queue_max_bytes == 0)
        return 0;
    return (double)n->out.queued_bytes / (double)n->out.queue_max_bytes;
}

void dr_agent_route_target(dr_agent *a, dr_instance *output)
{
    dr_node *n = node_of(output);
    if (n->kind != DR_OUTPUT)
        return;
    for (size_t i = 0; i < a->nroute_targets; i++)
        if (a->route_targets[i] == &n->out)
            return;
    if (a->nroute_targets < sizeof a->route_targets / sizeof a->route_targets[0])
        a->route_targets[a->nroute_targets++] = &n->out;
}

static void enqueue(dr_output_rt *o, dr_chunk *c, size_t bytes)
{
    dr_qentry *e = calloc(1, sizeof *e);
    if (!e) {
        /* Cannot queue: leave the chunk unacknowledged-as-delivered so its
         * source keeps it; the input re-reads it after a restart. */
        c->abandoned = true;
        return;
    }
    dr_chunk_retain(c);
    e->chunk = c;
    e->bytes = bytes;
    /* A chunk of one short line holds far more than its payload: the
     * bound is on memory, so many small chunks cannot add up unseen. */
    e->mem = c->mem + sizeof *e;
    e->queued_ns = dr_mono_ns();
    e->prev = o->tail;
    if (o->tail)
        o->tail->next = e;
    else
        o->head = e;
    o->tail = e;
    o->queued_bytes += e->mem;
    o->queued_chunks++;
}

static void count_live_records(const dr_chunk *c, uint64_t *recs, uint64_t *bytes)
{
    *recs = 0;
    *bytes = 0;
    if (c->kind == DR_CHUNK_METRICS) {
        /* samples are the records of a metric chunk */
        *recs = c->nsamples;
        *bytes = c->bytes;
        return;
    }
    for (uint32_t i = 0; i < c->nrecs; i++) {
        if (c->recs[i].flags & DR_REC_DROPPED)
            continue;
        (*recs)++;
        *bytes += c->recs[i].msg_len;
    }
}

/* The outputs a chunk goes to: the input's, a route filter's, or both. */
static void enqueue_routes(dr_node *in, dr_chunk *c)
{
    bool keep_default = c->nroute == 0 || c->route_keep_default;
    size_t sent = 0;
    if (keep_default) {
        for (size_t i = 0; i < in->nroutes; i++)
            enqueue(in->routes[i], c, c->bytes);
        sent = in->nroutes;
    }
    for (uint8_t i = 0; i < c->nroute; i++) {
        dr_output_rt *o = &node_of(c->route[i])->out;
        bool dup = false;
        for (size_t j = 0; keep_default && j < in->nroutes && !dup; j++)
            dup = in->routes[j] == o;
        if (!dup) {
            enqueue(o, c, c->bytes);
            sent++;
        }
    }
    if (sent == 0) {
        uint64_t recs, bytes;
        count_live_records(c, &recs, &bytes);
        dr_counter_add(in->inst.agent->dropped_no_route, recs);
    }
}

/* The rest of a chunk's way through the pipeline of its input `in`: the
 * input's filters from `first_filter` on, then one queue entry per routed
 * output. Takes over the caller's reference. Shared by an input's chunks
 * (dr_input_emit, from the first filter) and the chunks a filter makes
 * (dr_filter_emit, from the filter after it). */
static void route_chunk(dr_node *in, dr_chunk *c, size_t first_filter)
{
    dr_agent *a = in->inst.agent;
    for (size_t i = first_filter; i < in->nfilters; i++)
        in->filters[i]->inst.plugin->filter(&in->filters[i]->inst, c);

    enqueue_routes(in, c);
    dr_chunk_release(c);
    pump_start(a);
}

void dr_input_emit(dr_instance *input, dr_chunk *c)
{
    c->input = input;
    c->bytes = dr_chunk_payload_bytes(c);
    dr_counter_add(input->records_in, c->kind == DR_CHUNK_METRICS ? c->nsamples : c->nrecs);
    dr_counter_add(input->bytes_in, c->bytes);
    route_chunk(node_of(input), c, 0);
}

/* The position after `filter` in the input's filter list; the end of the
 * list when the filter does not take this input's records (then the chunk
 * only goes to the outputs). */
static size_t filter_after(const dr_node *in, const dr_instance *filter)
{
    for (size_t i = 0; i < in->nfilters; i++)
        if (&in->filters[i]->inst == filter)
            return i + 1;
    return in->nfilters;
}

void dr_filter_emit(dr_instance *filter, dr_chunk *c)
{
    dr_agent *a = filter->agent;
    dr_node *fn = node_of(filter);
    if (fn->emit_hook && a->running) {
        /* a filter of a namespace's rules: its owner runs the rest */
        c->bytes = dr_chunk_payload_bytes(c);
        fn->emit_hook(fn->emit_ctx, filter, c);
        return;
    }
    dr_node *in = c->input ? node_of(c->input) : NULL;
    if (!a->running || !in || in->kind != DR_INPUT) {
        /* No pipeline to run (the agent has finished, or the chunk names
         * no input): its records go back to their source, which reads
         * them again after a restart. */
        c->abandoned = true;
        dr_chunk_release(c);
        return;
    }
    /* The input counted these records when it read them: not again. */
    c->bytes = dr_chunk_payload_bytes(c);
    route_chunk(in, c, filter_after(in, filter));
}

static void maybe_finish(dr_agent *a);
static void finish_shutdown(dr_agent *a);

/* Resumes the inputs that were waiting, once every queue they feed is
 * below half of its bound. */
static void resume_waiting_inputs(dr_agent *a)
{
    if (a->shutting_down)
        return;
    for (size_t i = 0; i < a->nnodes; i++) {
        dr_node *in = a->nodes[i];
        if (in->kind != DR_INPUT || !in->waiting)
            continue;
        bool room = true;
        for (size_t j = 0; j < in->nroutes; j++)
            if (in->routes[j]->queued_bytes > in->routes[j]->queue_max_bytes / 2)
                room = false;
        if (room) {
            in->waiting = false;
            if (in->inst.plugin->resume)
                in->inst.plugin->resume(&in->inst);
        }
    }
}

/* Removes an entry from its queue (it need not be the head) and drops its
 * chunk reference. */
static void release_entry(dr_output_rt *o, dr_qentry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        o->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        o->tail = e->prev;
    o->queued_bytes -= e->mem;
    o->queued_chunks--;
    dr_chunk *c = e->chunk;
    free(e);
    dr_chunk_release(c);
}

static void unlink_batch(dr_output_rt *o, dr_flush *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        o->batches = f->next;
    if (f->next)
        f->next->prev = f->prev;
    f->prev = f->next = NULL;
}

static dr_node *output_node(dr_output_rt *o)
{
    return (dr_node *)((char *)o - offsetof(dr_node, out));
}

static int64_t next_backoff(dr_output_rt *o)
{
    if (o->backoff_ms <= 0)
        o->backoff_ms = o->retry_min_ms;
    else if (o->backoff_ms < o->retry_max_ms)
        o->backoff_ms = o->backoff_ms * 2 > o->retry_max_ms ? o->retry_max_ms : o->backoff_ms * 2;
    /* full jitter: anywhere in [bound/2, bound] keeps some spacing */
    int64_t half = o->backoff_ms / 2;
    return half + (half > 0 ? (int64_t)(random() % (half + 1)) : 0);
}

static void on_retry_timer(uv_timer_t *t)
{
    dr_output_rt *o = t->data;
    o->retry_pending = false;
    pump_start(output_node(o)->inst.agent);
}

static void on_batch_timer(uv_timer_t *t)
{
    dr_output_rt *o = t->data;
    o->batch_timer_armed = false;
    pump_start(output_node(o)->inst.agent);
}

size_t dr_flush_count(const dr_flush *f)
{
    return f->n;
}

const dr_chunk *dr_flush_chunk(const dr_flush *f, size_t i)
{
    return i < f->n ? f->entries[i]->chunk : NULL;
}

uint32_t dr_flush_attempts(const dr_flush *f)
{
    return f->attempts;
}

void dr_output_set_batch(dr_instance *inst, uint64_t max_bytes, int64_t max_wait_ms)
{
    dr_output_rt *o = &node_of(inst)->out;
    o->batch_max_bytes = max_bytes ? max_bytes : 1;
    o->batch_wait_ms = max_wait_ms > 0 ? max_wait_ms : 0;
}

/* The batch failed for now: its entries wait again, at their places in the
 * queue, and the output sends one batch at a time until one gets through.
 * Returns false when the agent is shutting down (no more retries). */
static bool give_back(dr_flush *f, int64_t delay_ms)
{
    dr_output_rt *o = f->out;
    dr_agent *a = output_node(o)->inst.agent;
    if (a->shutting_down)
        return false;
    for (size_t i = 0; i < f->n; i++) {
        f->entries[i]->batch = NULL;
        f->entries[i]->attempts++;
    }
    o->inflight--;
    unlink_batch(o, f);
    free(f);
    dr_counter_add(o->retries, 1);
    o->failing = true;
    /* One wait for the output: a later failure may only make it longer
     * (another batch's Retry-After), never shorter. */
    int64_t due = dr_mono_ns() + delay_ms * 1000000;
    if (!o->retry_pending || due > o->retry_due_ns) {
        o->retry_pending = true;
        o->retry_due_ns = due;
        uv_timer_start(&o->retry_timer, on_retry_timer, (uint64_t)delay_ms, 0);
    }
    return true;
}

/* Ends a batch for good. DR_DROP: all its live records were refused, and
 * are counted here with `reason`. DR_DELIVERED: all but `dropped`, which
 * the output counted itself. DR_RETRY here means the agent is shutting
 * down and the chunks go back to their sources. */
static void finish_batch(dr_flush *f, dr_result res, uint64_t dropped, const char *reason)
{
    dr_output_rt *o = f->out;
    dr_node *n = output_node(o);
    dr_agent *a = n->inst.agent;
    uint64_t recs = 0, bytes = 0;
    for (size_t i = 0; i < f->n; i++) {
        uint64_t r, b;
        count_live_records(f->entries[i]->chunk, &r, &b);
        recs += r;
        bytes += b;
    }
    if (res == DR_DROP)
        dropped = recs;
    if (dropped > recs)
        dropped = recs;
    if (res == DR_RETRY) {
        for (size_t i = 0; i < f->n; i++)
            f->entries[i]->chunk->abandoned = true;
    } else {
        if (res == DR_DELIVERED) {
            o->backoff_ms = 0;
            o->failing = false;
        }
        dr_counter_add(n->inst.records_out, recs - dropped);
        /* the bytes of a partly refused batch are counted whole: which
         * records were refused is not known */
        if (res == DR_DELIVERED)
            dr_counter_add(n->inst.bytes_out, bytes);
        if (res == DR_DROP)
            dr_count_drop(&n->inst, reason ? reason : "rejected", dropped);
    }
    o->inflight--;
    unlink_batch(o, f);
    for (size_t i = 0; i < f->n; i++)
        release_entry(o, f->entries[i]);
    free(f);
    resume_waiting_inputs(a);
    pump_start(a);
    maybe_finish(a);
}

void dr_output_done(dr_flush *f, dr_result res, const char *reason)
{
    if (res == DR_RETRY && give_back(f, next_backoff(f->out)))
        return;
    finish_batch(f, res, 0, reason);
}

void dr_output_retry_after(dr_flush *f, int64_t delay_ms)
{
    /* The backend knows best when it will be ready: its hint replaces the
     * backoff (which still grows, for the failures that come without one). */
    int64_t backoff = next_backoff(f->out);
    if (delay_ms > DR_RETRY_AFTER_MAX_MS)
        delay_ms = DR_RETRY_AFTER_MAX_MS;
    if (delay_ms <= 0)
        delay_ms = backoff;
    if (give_back(f, delay_ms))
        return;
    finish_batch(f, DR_RETRY, 0, NULL);
}

void dr_output_done_partial(dr_flush *f, uint64_t dropped)
{
    finish_batch(f, DR_DELIVERED, dropped, NULL);
}

/* ---- batching ------------------------------------------------------------------------ */

/* A small set of pointers (open addressing), for the sources that have a
 * chunk in flight. */
typedef struct ptrset {
    const void **slots;
    size_t cap; /* a power of two, at least twice the entries */
} ptrset;

static size_t ptr_hash(const void *p, size_t cap)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x & (cap - 1);
}

static bool ptrset_init(ptrset *s, size_t entries)
{
    s->cap = 16;
    while (s->cap < entries * 2)
        s->cap *= 2;
    s->slots = calloc(s->cap, sizeof *s->slots);
    return s->slots != NULL;
}

static bool ptrset_has(const ptrset *s, const void *p)
{
    for (size_t i = ptr_hash(p, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (!s->slots[i])
            return false;
        if (s->slots[i] == p)
            return true;
    }
}

static void ptrset_add(ptrset *s, const void *p)
{
    size_t i = ptr_hash(p, s->cap);
    while (s->slots[i] && s->slots[i] != p)
        i = (i + 1) & (s->cap - 1);
    s->slots[i] = p;
}

/* The source a chunk belongs to: its container, else its input. Chunks of
 * one source must never be in two batches in flight at once. */
/* The stream a chunk keeps its order in (see dr_chunk.stream). */
static const void *source_of(const dr_chunk *c)
{
    if (c->stream)
        return c->stream;
    return c->meta ? (const void *)c->meta : (const void *)c->input;
}

static bool all_inputs_drained(dr_agent *a);

/* True when partial batches should go now rather than wait to fill. */
static bool flush_partial_now(dr_agent *a)
{
    return a->shutting_down || (a->finished_cb && all_inputs_drained(a));
}

/* Chooses the next batch: waiting entries in arrival order, skipping the
 * sources that have a chunk in flight (and everything after it from the
 * same source), up to the byte bound. Returns the number chosen (in
 * `pick`), or 0 when nothing should be sent now; a young partial batch
 * arms the batch timer instead. */
static size_t choose_batch(dr_output_rt *o, dr_agent *a, dr_qentry **pick, size_t max)
{
    /* full means the output's bound, not merely all that is queued now */
    size_t full_at = o->batch_max_bytes ? DR_BATCH_MAX_CHUNKS : 1;
    size_t busy_count = 0;
    for (dr_qentry *e = o->head; e; e = e->next)
        busy_count += e->batch != NULL;
    ptrset busy = {0};
    if (!ptrset_init(&busy, busy_count + max))
        return 0;
    for (dr_qentry *e = o->head; e; e = e->next)
        if (e->batch)
            ptrset_add(&busy, source_of(e->chunk));
    size_t n = 0;
    uint64_t bytes = 0;
    bool full = false;
    for (dr_qentry *e = o->head; e && !full; e = e->next) {
        if (e->batch)
            continue;
        const void *src = source_of(e->chunk);
        if (ptrset_has(&busy, src))
            continue;
        pick[n++] = e;
        bytes += e->bytes;
        full = n == full_at || o->batch_max_bytes == 0 || bytes >= o->batch_max_bytes;
        if (n == max)
            break;
    }
    free(busy.slots);
    if (n == 0 || full || o->batch_wait_ms == 0 || flush_partial_now(a))
        return n;
    int64_t due = pick[0]->queued_ns + o->batch_wait_ms * 1000000;
    int64_t now = dr_mono_ns();
    if (now >= due)
        return n;
    if (!o->batch_timer_armed) {
        o->batch_timer_armed = true;
        uv_timer_start(&o->batch_timer, on_batch_timer, (uint64_t)((due - now) / 1000000 + 1), 0);
    }
    return 0;
}

static dr_flush *next_batch(dr_output_rt *o, dr_agent *a)
{
    size_t max = o->batch_max_bytes ? DR_BATCH_MAX_CHUNKS : 1;
    if (max > o->queued_chunks)
        max = o->queued_chunks;
    if (max == 0)
        return NULL;
    dr_flush *f = malloc(sizeof *f + max * sizeof f->entries[0]);
    if (!f)
        return NULL;
    f->n = choose_batch(o, a, f->entries, max);
    if (f->n == 0) {
        free(f);
        return NULL;
    }
    f->out = o;
    f->attempts = 0;
    for (size_t i = 0; i < f->n; i++) {
        f->entries[i]->batch = f;
        if (f->entries[i]->attempts > f->attempts)
            f->attempts = f->entries[i]->attempts;
    }
    f->prev = NULL;
    f->next = o->batches;
    if (o->batches)
        o->batches->prev = f;
    o->batches = f;
    return f;
}

/* Hands batches to an output while it has room: max_inflight batches, or
 * one while it is failing. A flush may finish its batch before returning,
 * so every turn chooses afresh. */
static void dispatch_output(dr_node *n)
{
    dr_output_rt *o = &n->out;
    dr_agent *a = n->inst.agent;
    while (!o->retry_pending && o->inflight < (o->failing ? 1 : o->max_inflight)) {
        dr_flush *f = next_batch(o, a);
        if (!f)
            return;
        o->inflight++;
        n->inst.plugin->flush(&n->inst, f);
    }
}

static void dispatch(dr_agent *a)
{
    for (size_t i = 0; i < a->nnodes; i++) {
        dr_node *n = a->nodes[i];
        if (n->kind == DR_OUTPUT && n->started && !n->stopped)
            dispatch_output(n);
    }
}

/* The pump is stopped before dispatching: whatever a flush or an emit
 * inside it queues starts the pump again for the next loop turn. */
static void on_pump(uv_idle_t *h)
{
    dr_agent *a = h->data;
    uv_idle_stop(&a->pump);
    a->pump_active = false;
    dispatch(a);
}

static void pump_start(dr_agent *a)
{
    if (!a->pump_active && a->running) {
        uv_idle_start(&a->pump, on_pump);
        a->pump_active = true;
    }
}

/* ---- oneshot completion ------------------------------------------------------------- */

static bool all_inputs_drained(dr_agent *a)
{
    for (size_t i = 0; i < a->nnodes; i++)
        if (a->nodes[i]->kind == DR_INPUT && !a->nodes[i]->drained)
            return false;
    return true;
}

static bool all_queues_empty(dr_agent *a)
{
    for (size_t i = 0; i < a->nnodes; i++)
        if (a->nodes[i]->kind == DR_OUTPUT && a->nodes[i]->out.head)
            return false;
    return true;
}

/* Filters let go of what they hold (emitting it with dr_filter_emit) and
 * hold nothing from now on. In configuration order, so that what one
 * filter lets go of still passes the filters after it before they stop in
 * turn. */
static void stop_filters(dr_agent *a)
{
    for (size_t i = 0; i < a->nnodes; i++) {
        dr_node *n = a->nodes[i];
        if (n->kind == DR_FILTER && n->started && !n->stopped) {
            n->stopped = true;
            if (n->inst.plugin->stop)
                n->inst.plugin->stop(&n->inst);
        }
    }
}

/* Runs on a zero timer rather than inside the callback that made the
 * change, so that no plugin is stopped or destroyed while one of its own
 * callbacks is still on the stack. */
static void on_finish_check(uv_timer_t *t)
{
    dr_agent *a = t->data;
    if (a->shutting_down) {
        if (all_queues_empty(a))
            finish_shutdown(a);
        return;
    }
    if (!a->finished_cb || !all_inputs_drained(a))
        return;
    /* Oneshot: nothing more will come, so what filters hold (a group of
     * lines waiting for its next line) goes out now; the run finishes
     * once that is delivered too. */
    stop_filters(a);
    if (all_queues_empty(a)) {
        dr_agent_cb cb = a->finished_cb;
        a->finished_cb = NULL;
        cb(a, a->finished_ctx);
    }
}

void dr_input_drained(dr_instance *input)
{
    dr_node *in = node_of(input);
    in->drained = true;
    pump_start(input->agent); /* partial batches need not wait any more */
    maybe_finish(input->agent);
}

void dr_agent_on_finished(dr_agent *a, dr_agent_cb cb, void *ctx)
{
    a->finished_cb = cb;
    a->finished_ctx = ctx;
}

/* ---- shutdown ------------------------------------------------------------------------ */

static void abandon_waiting_entries(dr_agent *a)
{
    for (size_t i = 0; i < a->nnodes; i++) {
        dr_node *n = a->nodes[i];
        if (n->kind != DR_OUTPUT)
            continue;
        dr_qentry *e = n->out.head;
        while (e) {
            dr_qentry *next = e->next;
            if (!e->batch) {
                e->chunk->abandoned = true;
                release_entry(&n->out, e);
            }
            e = next;
        }
    }
}

static void stop_outputs(dr_agent *a)
{
    for (size_t i = 0; i < a->nnodes; i++) {
        dr_node *n = a->nodes[i];
        if (n->kind == DR_OUTPUT && n->started && !n->stopped) {
            n->stopped = true;
            if (n->inst.plugin->stop)
                n->inst.plugin->stop(&n->inst);
        }
    }
}

static void on_grace_timeout(uv_timer_t *t)
{
    dr_agent *a = t->data;
    dr_log_core(DR_LOG_WARN, "grace period over; undelivered records stay in their sources", NULL);
    abandon_waiting_entries(a);
    stop_outputs(a);
    finish_shutdown(a);
}

static void maybe_finish(dr_agent *a)
{
    if (!a->running)
        return;
    if (a->shutting_down || (a->finished_cb && all_inputs_drained(a) && all_queues_empty(a)))
        uv_timer_start(&a->oneshot_timer, on_finish_check, 0, 0);
}

static void on_handle_closed(uv_handle_t *h)
{
    dr_agent *a = h->data;
    if (--a->handles_open == 0 && a->shutdown_cb) {
        dr_agent_cb cb = a->shutdown_cb;
        a->shutdown_cb = NULL;
        cb(a, a->shutdown_ctx);
    }
}

static void destroy_plugins(dr_agent *a)
{
    /* Outputs and filters first; inputs last, since acknowledgements of
     * released chunks call into them. */
    for (size_t pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < a->nnodes; i++) {
            dr_node *n = a->nodes[i];
            bool is_input = n->kind == DR_INPUT;
            if ((pass == 0) == is_input || !n->inst.state)
                continue;
            if (n->inst.plugin->destroy)
                n->inst.plugin->destroy(&n->inst);
            n->inst.state = NULL;
        }
    }
}

static void finish_shutdown(dr_agent *a)
{
    if (!a->running)
        return;
    stop_outputs(a);
    /* Outputs must have finished everything in flight by now; anything still
     * queued is given back to its source. */
    abandon_waiting_entries(a);
    for (size_t i = 0; i < a->nnodes; i++) {
        dr_node *n = a->nodes[i];
        if (n->kind != DR_OUTPUT)
            continue;
        /* batches the output never finished: their chunks go back too */
        while (n->out.batches) {
            dr_flush *f = n->out.batches;
            unlink_batch(&n->out, f);
            free(f);
        }
        while (n->out.head) {
            n->out.head->chunk->abandoned = true;
            release_entry(&n->out, n->out.head);
        }
    }
    a->running = false;
    uv_timer_stop(&a->grace_timer);
    destroy_plugins(a);
    /* close the agent's own handles; shutdown_cb runs when all are closed */
    a->handles_open = 4;
    uv_timer_stop(&a->startup_timer);
    uv_close((uv_handle_t *)&a->startup_timer, on_handle_closed);
    uv_close((uv_handle_t *)&a->pump, on_handle_closed);
    uv_close((uv_handle_t *)&a->grace_timer, on_handle_closed);
    uv_close((uv_handle_t *)&a->oneshot_timer, on_handle_closed);
    for (size_t i = 0; i < a->nnodes; i++) {
        dr_node *n = a->nodes[i];
        if (n->kind == DR_OUTPUT) {
            a->handles_open += 2;
            n->out.retry_timer.data = a;
            uv_close((uv_handle_t *)&n->out.retry_timer, on_handle_closed);
            n->out.batch_timer.data = a;
            uv_close((uv_handle_t *)&n->out.batch_timer, on_handle_closed);
        }
    }
}

void dr_agent_shutdown(dr_agent *a, dr_agent_cb cb, void *ctx)
{
    a->shutdown_cb = cb;
    a->shutdown_ctx = ctx;
    if (!a->running) {
        a->shutdown_cb = NULL;
        cb(a, ctx);
        return;
    }
    if (a->shutting_down)
        return;
    a->shutting_down = true;
    dr_metrics_remove_hook(a->metrics, refresh_queue_gauges, a);
    for (size_t i = 0; i < a->nnodes; i++) {
        dr_node *n = a->nodes[i];
        if (n->kind == DR_INPUT && n->started && !n->stopped) {
            n->stopped = true;
            if (n->inst.plugin->stop)
                n->inst.plugin->stop(&n->inst);
        }
    }
    /* With the inputs quiet, what filters hold joins the queues and is
     * delivered within the grace period like the rest. */
    stop_filters(a);
    /* Retries wait no longer: one more attempt each, now. */
    for (size_t i = 0; i < a->nnodes; i++) {
        dr_node *n = a->nodes[i];
        if (n->kind == DR_OUTPUT && n->out.retry_pending) {
            uv_timer_stop(&n->out.retry_timer);
            n->out.retry_pending = false;
        }
    }
    if (all_queues_empty(a)) {
        finish_shutdown(a);
        return;
    }
    uv_timer_start(&a->grace_timer, on_grace_timeout, (uint64_t)a->conf.grace_period_ms, 0);
    pump_start(a);
}

/* ---- building the pipeline ------------------------------------------------------------ */

static const char *kind_name(dr_plugin_kind k)
{
    return k == DR_INPUT ? "input" : k == DR_FILTER ? "filter" : "output";
}

static void node_free(dr_node *n)
{
    if (!n)
        return;
    if (n->inst.conf) {
        dr_cfg_free_conf(n->inst.plugin->options, n->inst.conf);
        free(n->inst.conf);
    }
    const dr_option *common = n->kind == DR_INPUT    ? dr_common_input_options
                              : n->kind == DR_FILTER ? dr_common_filter_options
                                                     : dr_common_output_options;
    dr_cfg_free_conf(common, &n->common);
    free(n->inst.name);
    free(n->routes);
    free(n->filters);
    free(n);
}

/* Parses one entry of inputs/filters/outputs into a node. */
static dr_node *node_from_config(dr_agent *a, dr_plugin_kind kind, const dr_cfg_node *item,
                                 const char *path, size_t index, dr_cfg_errors *errs)
{
    if (item->type != DR_CFG_MAP) {
        dr_cfg_error(errs, item, path, "expected a map with at least `type`");
        return NULL;
    }
    dr_node *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->kind = kind;
    const dr_option *common = kind == DR_INPUT    ? dr_common_input_options
                              : kind == DR_FILTER ? dr_common_filter_options
                                                  : dr_common_output_options;
    /* Common keys first, ignoring the plugin's own keys for now. */
    /* A plain `type: null` is YAML's null, but it can only mean the null
     * output: take the literal. */
    const dr_cfg_node *type_node = dr_cfg_get(item, "type");
    bool null_literal = type_node && type_node->type == DR_CFG_NULL && type_node->str &&
                        strcasecmp(type_node->str, "null") == 0;
    if (!type_node || (type_node->type != DR_CFG_SCALAR && !null_literal)) {
        dr_cfg_error(errs, item, path, "`type` is required");
        free(n);
        return NULL;
    }
    const dr_plugin *p = dr_plugin_find(type_node->str);
    if (!p || p->kind != kind) {
        dr_buf known = {0};
        for (size_t i = 0; i < dr_plugin_count(); i++)
            if (dr_plugin_at(i)->kind == kind)
                dr_buf_printf(&known, "%s%s", known.len ? ", " : "", dr_plugin_at(i)->name);
        char sub[256];
        snprintf(sub, sizeof sub, "%s.type", path);
        dr_cfg_error(errs, type_node, sub, "unknown %s plugin \"%s\" (known: %s)", kind_name(kind),
                     type_node->str, known.p ? known.p : "none");
        dr_buf_free(&known);
        free(n);
        return NULL;
    }
    n->inst.plugin = p;
    n->inst.agent = a;
    n->inst.loop = a->loop;
    n->inst.oneshot = a->oneshot;
    /* keys the plugin does not know are errors, except the common ones */
    const char *const *common_keys = kind == DR_INPUT    ? common_input_keys
                                     : kind == DR_FILTER ? common_filter_keys
                                                         : common_output_keys;
    int nerr = 0;
    /* Apply common keys: every other key belongs to the plugin. Build the
     * list of the plugin's keys to pass as extra keys. */
    dr_option *flat = dr_options_flatten(p->options);
    size_t nopts = 0;
    while (flat && flat[nopts].name)
        nopts++;
    const char **plugin_keys = calloc(nopts + 1, sizeof *plugin_keys);
    if (!plugin_keys || (!flat && p->options)) {
        free(plugin_keys);
        dr_options_free(flat);
        free(n);
        return NULL;
    }
    for (size_t i = 0; i < nopts; i++)
        plugin_keys[i] = flat[i].name;
    nerr += dr_cfg_apply(common, item, &n->common, path, plugin_keys, errs);
    free(plugin_keys);
    dr_options_free(flat);
    n->inst.conf = calloc(1, p->conf_size ? p->conf_size : 1);
    if (!n->inst.conf) {
        node_free(n);
        return NULL;
    }
    nerr += dr_cfg_apply(p->options, item, n->inst.conf, path, common_keys, errs);
    if (n->common.name) {
        n->inst.name = strdup(n->common.name);
    } else {
        char def[128];
        snprintf(def, sizeof def, "%s.%zu", p->name, index);
        n->inst.name = strdup(def);
    }
    if (nerr || !n->inst.name) {
        node_free(n);
        return NULL;
    }
    if (kind == DR_OUTPUT) {
        n->out.queue_max_bytes = n->common.queue_max_bytes;
        n->out.max_inflight = (int)n->common.max_inflight;
        n->out.retry_min_ms = n->common.retry_min_ms;
        n->out.retry_max_ms = n->common.retry_max_ms;
        if (n->out.retry_max_ms < n->out.retry_min_ms) {
            dr_cfg_error(errs, item, path, "retry_max is shorter than retry_min");
            node_free(n);
            return NULL;
        }
    }
    return n;
}

static int load_section(dr_agent *a, const dr_cfg_node *root, const char *key, dr_plugin_kind kind,
                        dr_cfg_errors *errs)
{
    const dr_cfg_node *list = dr_cfg_get(root, key);
    if (!list || list->type == DR_CFG_NULL)
        return 0;
    if (list->type != DR_CFG_SEQ) {
        dr_cfg_error(errs, list, key, "expected a list");
        return 1;
    }
    int bad = 0;
    for (size_t i = 0; i < list->n; i++) {
        char path[64];
        snprintf(path, sizeof path, "%s[%zu]", key, i);
        dr_node *n = node_from_config(a, kind, list->items[i], path, i, errs);
        if (!n) {
            bad++;
            continue;
        }
        a->nodes[a->nnodes++] = n;
    }
    return bad;
}

static void check_unique_names(dr_agent *a, const dr_cfg_node *root, dr_cfg_errors *errs)
{
    for (size_t i = 0; i < a->nnodes; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(a->nodes[i]->inst.name, a->nodes[j]->inst.name) == 0)
                dr_cfg_error(errs, root, "", "two instances are named \"%s\"",
                             a->nodes[i]->inst.name);
}

static size_t count_entries(const dr_cfg_node *root, const char *key)
{
    const dr_cfg_node *l = dr_cfg_get(root, key);
    return l && l->type == DR_CFG_SEQ ? l->n : 0;
}

static void check_top_level_keys(const dr_cfg_node *root, dr_cfg_errors *errs)
{
    static const char *const known[] = {"agent", "inputs", "filters", "outputs", NULL};
    for (size_t i = 0; i < root->n; i++) {
        const char *k = root->pairs[i].key->str;
        bool ok = false;
        for (size_t j = 0; known[j]; j++)
            if (strcmp(k, known[j]) == 0)
                ok = true;
        if (!ok)
            dr_cfg_error(errs, root->pairs[i].key, k,
                         "unknown section (expected agent, inputs, filters or outputs)");
    }
}

static int init_plugins(dr_agent *a, dr_cfg_errors *errs)
{
    int bad = 0;
    for (size_t i = 0; i < a->nnodes; i++) {
        dr_node *n = a->nodes[i];
        if (!n->inst.plugin->init)
            continue;
        dr_error err = {{0}};
        if (n->inst.plugin->init(&n->inst, &err) < 0) {
            char sub[160];
            snprintf(sub, sizeof sub, "%s %s", kind_name(n->kind), n->inst.name);
            char *m = NULL;
            size_t len = strlen(sub) + strlen(err.msg) + 8;
            m = malloc(len);
            if (m) {
                snprintf(m, len, "%s: %s", sub, err.msg[0] ? err.msg : "failed to initialise");
                if (errs->n < DR_CFG_MAX_ERRORS)
                    errs->msg[errs->n++] = m;
                else {
                    errs->dropped++;
                    free(m);
                }
            }
            bad++;
        }
    }
    return bad;
}

dr_agent *dr_agent_create(uv_loop_t *loop, dr_metrics *metrics, const char *config_path,
                          bool oneshot, dr_cfg_errors *errs)
{
    dr_agent *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->loop = loop;
    a->metrics = metrics;
    a->oneshot = oneshot;
    size_t before = errs->n + errs->dropped;
    a->doc = dr_cfg_load(config_path, errs);
    if (!a->doc) {
        dr_agent_free(a);
        return NULL;
    }
    const dr_cfg_node *root = dr_cfg_root(a->doc);
    check_top_level_keys(root, errs);
    dr_cfg_apply(dr_agent_options, dr_cfg_get(root, "agent"), &a->conf, "agent", NULL, errs);
    size_t total = count_entries(root, "inputs") + count_entries(root, "filters") +
                   count_entries(root, "outputs");
    a->nodes = calloc(total + 1, sizeof *a->nodes);
    if (!a->nodes) {
        dr_agent_free(a);
        return NULL;
    }
    load_section(a, root, "inputs", DR_INPUT, errs);
    load_section(a, root, "filters", DR_FILTER, errs);
    load_section(a, root, "outputs", DR_OUTPUT, errs);
    check_unique_names(a, root, errs);
    if (count_entries(root, "inputs") == 0)
        dr_cfg_error(errs, root, "inputs", "at least one input is required");
    if (errs->n + errs->dropped > before) {
        dr_agent_free(a);
        return NULL;
    }
    if (!a->conf.node_name || !a->conf.node_name[0]) {
        free(a->conf.node_name);
        const char *env = getenv("NODE_NAME");
        char host[256] = "";
        if (!env || !*env) {
            gethostname(host, sizeof host - 1);
            env = host;
        }
        a->conf.node_name = strdup(env);
    }
    for (size_t i = 0; i < a->nnodes; i++)
        create_standard_metrics(a->nodes[i]);
    {
        const char *labels[] = {"plugin", "core", "name", "router", "reason", "no_route", NULL};
        a->dropped_no_route = dr_metrics_counter(metrics, "drover_dropped_records_total",
                                                 "Records dropped on purpose, by reason.", labels);
    }
    if (build_routes(a) < 0 || init_plugins(a, errs) > 0) {
        dr_agent_free(a);
        return NULL;
    }
    return a;
}

static int start_kind(dr_agent *a, dr_plugin_kind kind)
{
    for (size_t i = 0; i < a->nnodes; i++) {
        dr_node *n = a->nodes[i];
        if (n->kind != kind || n->started)
            continue;
        if (n->inst.plugin->start && n->inst.plugin->start(&n->inst) < 0) {
            dr_log(&n->inst, DR_LOG_ERROR, "failed to start", NULL);
            return DR_ERR;
        }
        n->started = true;
    }
    return 0;
}

/* True when no filter asks the inputs to wait (the kubernetes filter does
 * until its first list of pods is in, so that the first records already
 * carry their metadata; each filter bounds that wait itself). */
static bool filters_ready(dr_agent *a)
{
    for (size_t i = 0; i < a->nnodes; i++) {
        dr_node *n = a->nodes[i];
        if (n->kind == DR_FILTER && n->inst.plugin->ready && !n->inst.plugin->ready(&n->inst))
            return false;
    }
    return true;
}

static void on_startup_check(uv_timer_t *t)
{
    dr_agent *a = t->data;
    if (a->shutting_down || !a->running) {
        uv_timer_stop(t);
        return;
    }
    if (!filters_ready(a))
        return;
    uv_timer_stop(t);
    if (start_kind(a, DR_INPUT) < 0 && a->failed_cb)
        a->failed_cb(a, a->failed_ctx);
}

void dr_agent_on_failed(dr_agent *a, dr_agent_cb cb, void *ctx)
{
    a->failed_cb = cb;
    a->failed_ctx = ctx;
}

int dr_agent_start(dr_agent *a)
{
    uv_idle_init(a->loop, &a->pump);
    a->pump.data = a;
    uv_timer_init(a->loop, &a->grace_timer);
    a->grace_timer.data = a;
    uv_timer_init(a->loop, &a->oneshot_timer);
    a->oneshot_timer.data = a;
    for (size_t i = 0; i < a->nnodes; i++) {
        dr_node *n = a->nodes[i];
        if (n->kind == DR_OUTPUT) {
            uv_timer_init(a->loop, &n->out.retry_timer);
            n->out.retry_timer.data = &n->out;
            uv_timer_init(a->loop, &n->out.batch_timer);
            n->out.batch_timer.data = &n->out;
        }
    }
    uv_timer_init(a->loop, &a->startup_timer);
    a->startup_timer.data = a;
    a->running = true;
    dr_metrics_add_hook(a->metrics, refresh_queue_gauges, a);
    /* Outputs first, so that the first emitted chunk has somewhere to go;
     * inputs once the filters are ready (on_startup_check). */
    for (int pass = 0; pass < 2; pass++) {
        if (start_kind(a, pass == 0 ? DR_OUTPUT : DR_FILTER) < 0)
            return DR_ERR;
    }
    if (filters_ready(a))
        return start_kind(a, DR_INPUT);
    dr_log_core(DR_LOG_INFO, "inputs wait for the filters to be ready", NULL);
    uv_timer_start(&a->startup_timer, on_startup_check, 20, 20);
    return 0;
}

void dr_agent_free(dr_agent *a)
{
    if (!a)
        return;
    if (a->running) /* never started handles cannot be freed under the loop */
        return;
    for (size_t i = 0; i < a->nnodes; i++) {
        dr_node *n = a->nodes[i];
        if (n->inst.state && n->inst.plugin->destroy)
            n->inst.plugin->destroy(&n->inst);
        node_free(n);
    }
    free(a->nodes);
    /* last: the plugins and the chunks they held released their series */
    dr_series_table_free(a->series);
    dr_cfg_free_conf(dr_agent_options, &a->conf);
    dr_cfg_doc_free(a->doc);
    free(a);
}

/* ---- filters made at run time ------------------------------------------------------------ */

dr_instance *dr_agent_filter_new(dr_agent *a, const dr_cfg_node *entry, const char *path,
                                 const char *name, dr_filter_emit_hook hook, void *hook_ctx,
                                 dr_cfg_errors *errs)
{
    size_t before = errs->n + errs->dropped;
    if (dr_cfg_get(entry, "match")) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s.match", path);
        dr_cfg_error(errs, dr_cfg_get(entry, "match"), sub,
                     "not allowed here: these rules apply to their own records only");
        return NULL;
    }
    dr_node *n = node_from_config(a, DR_FILTER, entry, path, 0, errs);
    if (!n)
        return NULL;
    if (errs->n + errs->dropped > before) {
        node_free(n);
        return NULL;
    }
    free(n->inst.name);
    n->inst.name = strdup(name);
    n->inst.oneshot = a->oneshot;
    n->inst.restricted = true;
    n->emit_hook = hook;
    n->emit_ctx = hook_ctx;
    dr_error err = {{0}};
    if (!n->inst.name || (n->inst.plugin->init && n->inst.plugin->init(&n->inst, &err) < 0)) {
        dr_cfg_error(errs, entry, path, "%s", err.msg[0] ? err.msg : "cannot be initialised");
        if (n->inst.state && n->inst.plugin->destroy)
            n->inst.plugin->destroy(&n->inst);
        node_free(n);
        return NULL;
    }
    if (n->inst.plugin->start && n->inst.plugin->start(&n->inst) < 0) {
        dr_cfg_error(errs, entry, path, "cannot be started");
        if (n->inst.state && n->inst.plugin->destroy)
            n->inst.plugin->destroy(&n->inst);
        node_free(n);
        return NULL;
    }
    n->started = true;
    return &n->inst;
}

void dr_agent_filter_free(dr_instance *inst)
{
    if (!inst)
        return;
    dr_node *n = node_of(inst);
    if (inst->state && inst->plugin->destroy)
        inst->plugin->destroy(inst);
    inst->state = NULL;
    node_free(n);
}
