/*
 * namespaces filter: the rules each namespace owns.
 *
 * A namespace's owners put a ConfigMap (default `drover-filters`) in their
 * namespace whose `filters.yaml` lists filters in the same form as the
 * agent's configuration. This filter watches those ConfigMaps cluster-wide
 * (one watch, fieldSelector metadata.name) and runs each namespace's rules
 * on that namespace's records only, after the cluster-wide filters that
 * come before it.
 *
 * Isolation, which is the point of it all:
 * - A chunk holds the records of one container, so of one namespace: the
 *   rules of namespace A are only ever handed A's chunks. No rule can name
 *   another namespace, a file, a URL or a credential: only the filter types
 *   the operator allows, with `match` refused and ${VAR} left literal (the
 *   agent's environment is not theirs to read).
 * - A broken ConfigMap is refused with its reasons (agent log, the gauge
 *   drover_namespace_rules_valid{namespace}, and a Kubernetes Event in that
 *   namespace); the last good rules stay in force.
 * - The operator caps each namespace (records and bytes per second, a
 *   token bucket that refills continuously, counted drops) before its rules
 *   run, and bounds the time its rules may take per second of wall clock
 *   (`cpu_budget`): past it, the namespace's records are dropped and
 *   counted for the rest of that second, rather than slowing the
 *   namespaces that share the agent. Regexes are bounded by PCRE2 match
 *   limits in the filters themselves.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "checkpoint.h"
#include "config.h"
#include "kube.h"

#define NS_MAX_TRACKED 10000
#define NS_MAX_ERROR_TEXT 1024

typedef struct ns_conf {
    dr_kube_conf api;
    char *configmap;
    char *key;
    dr_strlist allowed;
    int64_t max_filters;
    uint64_t max_rules_bytes;
    int64_t records_per_second;
    uint64_t bytes_per_second;
    int64_t cpu_budget_ms;
    bool events;
    int64_t wait_for_rules_ms;
} ns_conf;

static const dr_option ns_options[] = {
    {"", DR_OPT_GROUP, offsetof(ns_conf, api), NULL, 0, .group = dr_kube_options},
    {"configmap", DR_OPT_STRING, offsetof(ns_conf, configmap), "drover-filters", 0, NULL, 0, 0,
     "Name of the ConfigMap that holds a namespace's rules, in that namespace."},
    {"key", DR_OPT_STRING, offsetof(ns_conf, key), "filters.yaml", 0, NULL, 0, 0,
     "The ConfigMap's key whose value is the YAML list of filters."},
    {"allowed", DR_OPT_STRLIST, offsetof(ns_conf, allowed),
     "[grep, parse, multiline, modify, redact, throttle, sample, route]", 0, NULL, 0, 0,
     "Filter types a namespace may use. None of them can read files or reach the network; "
     "route can only name outputs that offer themselves (`offer_to_namespaces: true`)."},
    {"max_filters", DR_OPT_INT, offsetof(ns_conf, max_filters), "32", 0, NULL, 1, 1000,
     "Most filters one namespace may list."},
    {"max_rules_bytes", DR_OPT_SIZE, offsetof(ns_conf, max_rules_bytes), "64KiB", 0, NULL, 1024,
     1 << 20, "Largest rules text accepted."},
    {"records_per_second", DR_OPT_INT, offsetof(ns_conf, records_per_second), "0", 0, NULL, 0,
     1000000000,
     "Cap on each namespace's records per second (a token bucket holding one second's "
     "worth), before its rules run; records over it are dropped and counted "
     "(reason `namespace_cap`). 0: no cap."},
    {"bytes_per_second", DR_OPT_SIZE, offsetof(ns_conf, bytes_per_second), "0", 0, NULL, 0, 0,
     "Cap on each namespace's message bytes per second, as records_per_second. 0: no cap."},
    {"cpu_budget", DR_OPT_DURATION, offsetof(ns_conf, cpu_budget_ms), "100ms", 0, NULL, 0, 1000,
     "Time a namespace's rules may take per second; past it, that namespace's records are "
     "dropped and counted (reason `namespace_cpu_budget`) until the second is over, so that "
     "one namespace's costly rules cannot slow the others. 0: no budget."},
    {"events", DR_OPT_BOOL, offsetof(ns_conf, events), "true", 0, NULL, 0, 0,
     "Tell a namespace about its rules with Kubernetes Events (Warning InvalidFilters when "
     "refused, Normal FiltersApplied when taken). Needs `create` on events."},
    {"wait_for_rules", DR_OPT_DURATION, offsetof(ns_conf, wait_for_rules_ms), "10s", 0, NULL, 0,
     600000,
     "At start, the inputs wait up to this long for the first list of ConfigMaps, so that the "
     "first records already get their namespace's rules; 0: do not wait."},
    {0},
};

typedef struct ns_state ns_state;

/* One namespace: its rules, its caps, its metrics. */
typedef struct ns_entry {
    ns_state *st;
    char *name;
    dr_instance **filters; /* the rules in force */
    size_t nfilters;
    char *rules_rv; /* resourceVersion of the ConfigMap in force ("" none) */
    char *refused_rv;
    double rec_tokens, byte_tokens;
    int64_t refill_ns;
    int64_t cpu_second_ns; /* start of the current second */
    int64_t cpu_used_ns;
    dr_gauge *valid, *rule_count;
    dr_counter *capped, *over_budget, *refusals;
} ns_entry;

struct ns_state {
    dr_instance *inst;
    ns_conf *conf;
    dr_kube *kube;
    ns_entry **slots; /* open addressing by name */
    size_t nslots, nentries;
    bool synced;
    int64_t started_ns;
};

/* ---- the table of namespaces ---------------------------------------------------------- */

static ns_entry **slot_of(ns_state *st, const char *name)
{
    size_t mask = st->nslots - 1;
    for (size_t i = dr_hash64(name, strlen(name)) & mask;; i = (i + 1) & mask) {
        if (!st->slots[i] || strcmp(st->slots[i]->name, name) == 0)
            return &st->slots[i];
    }
}

static int grow_table(ns_state *st)
{
    size_t n = st->nslots ? st->nslots * 2 : 64;
    ns_entry **old = st->slots;
    size_t oldn = st->nslots;
    st->slots = calloc(n, sizeof *st->slots);
    if (!st->slots) {
        st->slots = old;
        return DR_ENOMEM;
    }
    st->nslots = n;
    for (size_t i = 0; i < oldn; i++)
        if (old[i])
            *slot_of(st, old[i]->name) = old[i];
    free(old);
    return 0;
}

static ns_entry *find_entry(ns_state *st, const char *name)
{
    return st->nslots ? *slot_of(st, name) : NULL;
}

/* The entry of a namespace, made on first sight (NULL past the bound or
 * out of memory: the namespace then goes uncapped and without rules). */
static ns_entry *get_entry(ns_state *st, const char *name)
{
    ns_entry *e = find_entry(st, name);
    if (e)
        return e;
    if (st->nentries >= NS_MAX_TRACKED)
        return NULL;
    if ((st->nentries + 1) * 2 > st->nslots && grow_table(st) < 0)
        return NULL;
    e = calloc(1, sizeof *e);
    if (!e || !(e->name = strdup(name))) {
        free(e);
        return NULL;
    }
    e->st = st;
    e->rules_rv = strdup("");
    e->refused_rv = strdup("");
    e->rec_tokens = (double)st->conf->records_per_second;
    e->byte_tokens = (double)st->conf->bytes_per_second;
    e->refill_ns = dr_mono_ns();
    dr_instance *inst = st->inst;
    e->valid = dr_gauge_new(inst, "drover_namespace_rules_valid",
                            "1 when the namespace's latest rules were taken, 0 when refused (the "
                            "last good ones stay in force).",
                            "namespace", name);
    e->rule_count = dr_gauge_new(inst, "drover_namespace_rules",
                                 "Filters in force for the namespace.", "namespace", name);
    e->capped = dr_counter_new(inst, "drover_namespace_capped_records_total",
                               "Records dropped by the namespace caps.", "namespace", name);
    e->over_budget =
        dr_counter_new(inst, "drover_namespace_over_budget_records_total",
                       "Records dropped because the namespace's rules used up their CPU budget.",
                       "namespace", name);
    e->refusals =
        dr_counter_new(inst, "drover_namespace_rules_refused_total",
                       "Versions of the namespace's rules that were refused.", "namespace", name);
    dr_gauge_set(e->valid, 1);
    *slot_of(st, name) = e;
    st->nentries++;
    return e;
}

/* Lets the rules give back what they hold (a multiline group), while
 * they are still the entry's, so that it goes on through the rest of them. */
static void stop_rules(dr_instance **filters, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (filters[i]->plugin->stop)
            filters[i]->plugin->stop(filters[i]);
}

static void free_rules(dr_instance **filters, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dr_agent_filter_free(filters[i]);
    free(filters);
}

/* A chunk one of a namespace's filters emitted: the rest of the rules,
 * then on down the agent's pipeline after this filter. */
static void on_rule_emit(void *ctx, dr_instance *filter, dr_chunk *c)
{
    ns_entry *e = ctx;
    size_t i = 0;
    while (i < e->nfilters && e->filters[i] != filter)
        i++;
    for (i++; i < e->nfilters; i++)
        e->filters[i]->plugin->filter(e->filters[i], c);
    dr_filter_emit(e->st->inst, c);
}

/* ---- taking a ConfigMap ------------------------------------------------------------------- */

static bool type_allowed(const ns_conf *conf, const char *type)
{
    for (size_t i = 0; i < conf->allowed.n; i++)
        if (strcmp(conf->allowed.v[i], type) == 0)
            return true;
    return false;
}

static void errors_text(const dr_cfg_errors *errs, char *out, size_t outsz)
{
    size_t at = 0;
    out[0] = '\0';
    for (size_t i = 0; i < errs->n && at + 2 < outsz; i++)
        at += (size_t)snprintf(out + at, outsz - at, "%s%s", i ? "; " : "", errs->msg[i]);
}

/* Builds the rules of a namespace from its YAML. NULL (errors in errs)
 * when anything is wrong: nothing is half-taken. */
static dr_instance **build_rules(ns_state *st, ns_entry *e, const char *ns, const char *yaml,
                                 size_t *n, dr_cfg_errors *errs)
{
    const ns_conf *conf = st->conf;
    char name[300];
    snprintf(name, sizeof name, "%s/%s:%s", ns, conf->configmap, conf->key);
    *n = 0;
    if (strlen(yaml) > conf->max_rules_bytes) {
        dr_cfg_error(errs, NULL, name, "larger than %llu bytes",
                     (unsigned long long)conf->max_rules_bytes);
        return NULL;
    }
    dr_cfg_doc *doc = dr_cfg_load_untrusted(name, yaml, errs);
    if (!doc)
        return NULL;
    const dr_cfg_node *root = dr_cfg_root(doc);
    if (root->type == DR_CFG_MAP && root->n == 0) {
        dr_cfg_doc_free(doc);
        return calloc(1, sizeof(dr_instance *)); /* empty: no rules */
    }
    if (root->type != DR_CFG_SEQ) {
        dr_cfg_error(errs, root, name, "expected a list of filters");
        dr_cfg_doc_free(doc);
        return NULL;
    }
    if ((int64_t)root->n > conf->max_filters) {
        dr_cfg_error(errs, root, name, "%zu filters; at most %lld are allowed", root->n,
                     (long long)conf->max_filters);
        dr_cfg_doc_free(doc);
        return NULL;
    }
    dr_instance **rules = calloc(root->n + 1, sizeof *rules);
    if (!rules) {
        dr_cfg_doc_free(doc);
        return NULL;
    }
    size_t before = errs->n + errs->dropped;
    for (size_t i = 0; i < root->n; i++) {
        const dr_cfg_node *item = root->items[i];
        char path[64];
        snprintf(path, sizeof path, "[%zu]", i);
        const dr_cfg_node *type = dr_cfg_get(item, "type");
        if (type && type->type == DR_CFG_SCALAR && !type_allowed(conf, type->str)) {
            dr_cfg_error(errs, type, path, "filter type \"%s\" is not allowed for namespaces",
                         type->str);
            continue;
        }
        char iname[400];
        /* a stable name: a new version of the rules counts in the same
         * series as the last, so changes add no metric series */
        snprintf(iname, sizeof iname, "%s/%zu", ns, i);
        rules[*n] = dr_agent_filter_new(st->inst->agent, item, path, iname, on_rule_emit, e, errs);
        if (rules[*n])
            (*n)++;
    }
    dr_cfg_doc_free(doc);
    if (errs->n + errs->dropped > before) {
        free_rules(rules, *n);
        *n = 0;
        return NULL;
    }
    return rules;
}

static void tell_namespace(ns_state *st, const dr_jv *cm, const char *type, const char *reason,
                           const char *message)
{
    if (!st->conf->events)
        return;
    const dr_jv *meta = dr_jv_get(cm, "metadata");
    const char *name = dr_jv_str_or(dr_jv_get(meta, "name"), "");
    /* One Event per version and verdict for the whole cluster: every
     * node's agent reaches the same verdict on the same text. */
    char event_name[300];
    snprintf(event_name, sizeof event_name, "%.200s.%.40s.%s", name,
             dr_jv_str_or(dr_jv_get(meta, "resourceVersion"), "0"),
             type[0] == 'W' ? "refused" : "applied");
    dr_kube_event_create(st->kube, dr_jv_str_or(dr_jv_get(meta, "namespace"), ""), "ConfigMap",
                         name, dr_jv_str_or(dr_jv_get(meta, "uid"), ""), event_name, type, reason,
                         message);
}

static void take_configmap(ns_state *st, const dr_jv *cm)
{
    const dr_jv *meta = dr_jv_get(cm, "metadata");
    const char *ns = dr_jv_str_or(dr_jv_get(meta, "namespace"), "");
    const char *rv = dr_jv_str_or(dr_jv_get(meta, "resourceVersion"), "");
    ns_entry *e = get_entry(st, ns);
    if (!e || strcmp(e->rules_rv, rv) == 0 || strcmp(e->refused_rv, rv) == 0)
        return; /* seen this version already (a relist) */
    const char *yaml = dr_jv_str(dr_jv_path(cm, "data", st->conf->key, NULL));
    dr_cfg_errors errs = {0};
    size_t n = 0;
    dr_instance **rules = NULL;
    if (!yaml)
        dr_cfg_error(&errs, NULL, st->conf->key, "the ConfigMap has no key \"%s\" in data",
                     st->conf->key);
    else
        rules = build_rules(st, e, ns, yaml, &n, &errs);
    if (!rules) {
        char text[NS_MAX_ERROR_TEXT];
        errors_text(&errs, text, sizeof text);
        dr_log(st->inst, DR_LOG_WARN, "namespace rules refused; the last good ones stay",
               "namespace=%s resource_version=%s errors=\"%s\"", ns, rv, text);
        dr_gauge_set(e->valid, 0);
        dr_counter_add(e->refusals, 1);
        free(e->refused_rv);
        e->refused_rv = strdup(rv);
        tell_namespace(st, cm, "Warning", "InvalidFilters", text);
        dr_cfg_errors_free(&errs);
        return;
    }
    dr_cfg_errors_free(&errs);
    stop_rules(e->filters, e->nfilters);
    free_rules(e->filters, e->nfilters);
    e->filters = rules;
    e->nfilters = n;
    free(e->rules_rv);
    e->rules_rv = strdup(rv);
    dr_gauge_set(e->valid, 1);
    dr_gauge_set(e->rule_count, (double)n);
    dr_log(st->inst, DR_LOG_INFO, "namespace rules taken", "namespace=%s filters=%zu", ns, n);
    char msg[128];
    snprintf(msg, sizeof msg, "drover applies %zu filter(s) to this namespace's logs", n);
    tell_namespace(st, cm, "Normal", "FiltersApplied", msg);
}

static void drop_configmap(ns_state *st, const dr_jv *cm)
{
    const char *ns = dr_jv_str_or(dr_jv_path(cm, "metadata", "namespace", NULL), "");
    ns_entry *e = find_entry(st, ns);
    if (!e)
        return;
    stop_rules(e->filters, e->nfilters);
    free_rules(e->filters, e->nfilters);
    e->filters = NULL;
    e->nfilters = 0;
    free(e->rules_rv);
    e->rules_rv = strdup("");
    dr_gauge_set(e->valid, 1);
    dr_gauge_set(e->rule_count, 0);
    dr_log(st->inst, DR_LOG_INFO, "namespace rules removed", "namespace=%s", ns);
}

static void on_synced(void *ctx)
{
    ns_state *st = ctx;
    st->synced = true;
}

static void on_configmap(void *ctx, dr_kube_event ev, const dr_jv *cm)
{
    if (ev == DR_KUBE_DELETED)
        drop_configmap(ctx, cm);
    else
        take_configmap(ctx, cm);
}

/* ---- running the rules ------------------------------------------------------------------- */

static void refill(ns_state *st, ns_entry *e, int64_t now)
{
    double secs = (double)(now - e->refill_ns) / 1e9;
    e->refill_ns = now;
    double rps = (double)st->conf->records_per_second, bps = (double)st->conf->bytes_per_second;
    e->rec_tokens = e->rec_tokens + secs * rps > rps ? rps : e->rec_tokens + secs * rps;
    e->byte_tokens = e->byte_tokens + secs * bps > bps ? bps : e->byte_tokens + secs * bps;
}

/* Drops what does not fit in the namespace's caps. */
static void apply_caps(ns_state *st, ns_entry *e, dr_chunk *c)
{
    const ns_conf *conf = st->conf;
    if (!conf->records_per_second && !conf->bytes_per_second)
        return;
    refill(st, e, dr_mono_ns());
    uint64_t dropped = 0;
    for (uint32_t i = 0; i < c->nrecs; i++) {
        dr_record *r = &c->recs[i];
        if (r->flags & DR_REC_DROPPED)
            continue;
        bool fits = (!conf->records_per_second || e->rec_tokens >= 1.0) &&
                    (!conf->bytes_per_second || e->byte_tokens >= (double)r->msg_len);
        if (fits) {
            e->rec_tokens -= 1.0;
            e->byte_tokens -= (double)r->msg_len;
        } else {
            r->flags |= DR_REC_DROPPED;
            dropped++;
        }
    }
    if (dropped) {
        dr_counter_add(e->capped, dropped);
        dr_count_drop(st->inst, "namespace_cap", dropped);
    }
}

static void drop_all(ns_state *st, dr_chunk *c, dr_counter *counter, const char *reason)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < c->nrecs; i++) {
        if (!(c->recs[i].flags & DR_REC_DROPPED)) {
            c->recs[i].flags |= DR_REC_DROPPED;
            n++;
        }
    }
    dr_counter_add(counter, n);
    dr_count_drop(st->inst, reason, n);
}

static void run_rules(ns_state *st, ns_entry *e, dr_chunk *c)
{
    int64_t budget = st->conf->cpu_budget_ms * 1000000LL;
    int64_t now = dr_mono_ns();
    if (now - e->cpu_second_ns >= 1000000000LL) {
        e->cpu_second_ns = now;
        e->cpu_used_ns = 0;
    }
    if (budget && e->cpu_used_ns >= budget) {
        drop_all(st, c, e->over_budget, "namespace_cpu_budget");
        return;
    }
    for (size_t i = 0; i < e->nfilters; i++)
        e->filters[i]->plugin->filter(e->filters[i], c);
    e->cpu_used_ns += dr_mono_ns() - now;
}

static void ns_filter(dr_instance *inst, dr_chunk *c)
{
    ns_state *st = inst->state;
    const char *ns = c->kube ? c->kube->namespace_ : c->meta ? c->meta->namespace_ : "";
    if (!ns[0])
        return;
    ns_entry *e = find_entry(st, ns);
    if (!e && (st->conf->records_per_second || st->conf->bytes_per_second))
        e = get_entry(st, ns);
    if (!e)
        return;
    apply_caps(st, e, c);
    if (e->nfilters)
        run_rules(st, e, c);
}

/* ---- life cycle ------------------------------------------------------------------------- */

static int ns_init(dr_instance *inst, dr_error *err)
{
    ns_conf *conf = inst->conf;
    for (size_t i = 0; i < conf->allowed.n; i++) {
        const dr_plugin *p = dr_plugin_find(conf->allowed.v[i]);
        if (!p || p->kind != DR_FILTER || strcmp(p->name, "namespaces") == 0 ||
            strcmp(p->name, "kubernetes") == 0) {
            dr_error_set(err, "allowed: \"%s\" is not a filter namespaces may use",
                         conf->allowed.v[i]);
            return DR_EINVAL;
        }
    }
    if (!conf->configmap[0] || !conf->key[0]) {
        dr_error_set(err, "configmap and key must not be empty");
        return DR_EINVAL;
    }
    ns_state *st = calloc(1, sizeof *st);
    if (!st) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    st->inst = inst;
    st->conf = conf;
    inst->state = st;
    return 0;
}

static int ns_start(dr_instance *inst)
{
    ns_state *st = inst->state;
    dr_error err = {0};
    st->kube = dr_kube_new(inst, &st->conf->api, &err);
    if (!st->kube) {
        dr_log(inst, DR_LOG_ERROR, "cannot reach Kubernetes", "error=\"%s\"", err.msg);
        return DR_ERR;
    }
    char selector[300];
    snprintf(selector, sizeof selector, "metadata.name=%s", st->conf->configmap);
    static const dr_kube_handler h = {on_configmap, on_synced};
    st->started_ns = dr_mono_ns();
    if (!dr_kube_watch(st->kube, "/api/v1/configmaps", selector, NULL, &h, st))
        return DR_ENOMEM;
    return 0;
}

static bool ns_ready(dr_instance *inst)
{
    ns_state *st = inst->state;
    if (st->synced)
        return true;
    if (dr_mono_ns() - st->started_ns >= st->conf->wait_for_rules_ms * 1000000LL) {
        if (st->conf->wait_for_rules_ms > 0)
            dr_log(inst, DR_LOG_WARN, "no ConfigMap list yet; inputs start without waiting longer",
                   NULL);
        st->synced = true;
    }
    return st->synced;
}

/* Shutdown (or the end of a oneshot run): every namespace's rules give
 * back what they hold, before the outputs stop. */
static void ns_stop(dr_instance *inst)
{
    ns_state *st = inst->state;
    for (size_t i = 0; i < st->nslots; i++)
        if (st->slots[i])
            stop_rules(st->slots[i]->filters, st->slots[i]->nfilters);
}

static void ns_destroy(dr_instance *inst)
{
    ns_state *st = inst->state;
    if (!st)
        return;
    dr_kube_close(st->kube);
    for (size_t i = 0; i < st->nslots; i++) {
        ns_entry *e = st->slots[i];
        if (!e)
            continue;
        free_rules(e->filters, e->nfilters);
        free(e->name);
        free(e->rules_rv);
        free(e->refused_rv);
        free(e);
    }
    free(st->slots);
    free(st);
    inst->state = NULL;
}

const dr_plugin dr_plugin_namespaces = {
    .abi = DR_PLUGIN_ABI,
    .name = "namespaces",
    .kind = DR_FILTER,
    .description =
        "Runs the filter rules each namespace keeps in its own ConfigMap (default "
        "`drover-filters`, key `filters.yaml`) on that namespace's records only, within caps the "
        "operator sets. Put it after the cluster-wide filters. A refused ConfigMap leaves the "
        "last good rules in force and is reported to its namespace as a Kubernetes Event. "
        "RBAC: get, list and watch on configmaps, create on events. See "
        "docs/namespace-filters.md.",
    .options = ns_options,
    .conf_size = sizeof(ns_conf),
    .init = ns_init,
    .start = ns_start,
    .ready = ns_ready,
    .filter = ns_filter,
    .stop = ns_stop,
    .destroy = ns_destroy,
};
