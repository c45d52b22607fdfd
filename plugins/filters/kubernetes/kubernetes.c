/*
 * kubernetes filter: puts each container's Kubernetes metadata on its
 * records (pod labels, chosen annotations, namespace labels, node, owner,
 * image, pod IP) and honours the annotations that steer a pod's logs.
 *
 * Load on the API server: the filter watches only the pods of its own node
 * (fieldSelector spec.nodeName) and the namespaces; after the first LIST of
 * each, it only keeps two watches open. No lookup ever happens per record
 * or per pod: everything is answered from the local cache. With `source:
 * kubelet` it asks the node's kubelet instead (GET /pods) and the API server
 * sees nothing at all.
 *
 * Cost per chunk: the metadata is worked out once per container and kept on
 * the input's source (dr_meta->ext) with the cache generation it was made
 * at; a chunk then only compares two integers and takes a reference to the
 * shared dr_kube_meta. Only a change in the cache (any pod or namespace
 * event) makes a source look its pod up again.
 */
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "http_client.h"
#include "kube.h"
#include "kube_meta.h"
#include "../parse/parse.h"
#include "pods.h"

#define KF_TICK_MS 5000
#define KF_EXCLUDE_ANNOTATION "drover.io/exclude"
#define KF_PARSER_ANNOTATION "drover.io/parser"
#define KF_MAX_PARSERS 64

typedef enum { KF_SOURCE_API = 0, KF_SOURCE_KUBELET = 1 } kf_source_kind;

typedef struct kf_conf {
    int source;
    dr_kube_conf api;
    char *kubelet_url;
    char *kubelet_token_file;
    char *kubelet_ca_file;
    bool kubelet_insecure_skip_verify;
    int64_t kubelet_interval_ms;
    char *node_name;
    bool labels;
    dr_strlist annotations;
    bool namespace_labels;
    bool honor_annotations;
    dr_strlist parsers;
    int64_t deleted_pod_ttl_ms;
    int64_t wait_for_metadata_ms;
} kf_conf;

static const char *const sources[] = {"api", "kubelet", NULL};

static const dr_option kf_options[] = {
    {"source", DR_OPT_ENUM, offsetof(kf_conf, source), "api", 0, sources, 0, 0,
     "Where pod metadata comes from: `api`, the Kubernetes API server (a watch on this "
     "node's pods and on namespaces), or `kubelet`, the node's kubelet (GET /pods; no load on "
     "the API server, but no namespace labels)."},
    {"", DR_OPT_GROUP, offsetof(kf_conf, api), NULL, 0, .group = dr_kube_options},
    {"kubelet.url", DR_OPT_STRING, offsetof(kf_conf, kubelet_url), "https://127.0.0.1:10250", 0,
     NULL, 0, 0, "The kubelet's address (source: kubelet); drover runs with hostNetwork."},
    {"kubelet.token_file", DR_OPT_STRING, offsetof(kf_conf, kubelet_token_file),
     DR_KUBE_SA_DIR "/token", 0, NULL, 0, 0,
     "Bearer token for the kubelet (the service account's, which needs nodes/proxy get), read "
     "again when it changes."},
    {"kubelet.ca_file", DR_OPT_STRING, offsetof(kf_conf, kubelet_ca_file), NULL, 0, NULL, 0, 0,
     "CA bundle that verifies the kubelet's serving certificate; unset: the system's store."},
    {"kubelet.insecure_skip_verify", DR_OPT_BOOL, offsetof(kf_conf, kubelet_insecure_skip_verify),
     "false", 0, NULL, 0, 0,
     "Do not verify the kubelet's certificate (kubelets often serve a self-signed one)."},
    {"kubelet.interval", DR_OPT_DURATION, offsetof(kf_conf, kubelet_interval_ms), "10s", 0, NULL,
     1000, 3600000,
     "How often the kubelet's pod list is fetched; a record of a pod not yet known brings the "
     "next fetch forward (at most one a second)."},
    {"node_name", DR_OPT_STRING, offsetof(kf_conf, node_name), NULL, 0, NULL, 0, 0,
     "The node whose pods to watch; unset: the agent's node_name."},
    {"labels", DR_OPT_BOOL, offsetof(kf_conf, labels), "true", 0, NULL, 0, 0,
     "Add the pod's labels (kubernetes.labels)."},
    {"annotations", DR_OPT_STRLIST, offsetof(kf_conf, annotations), NULL, 0, NULL, 0, 0,
     "Pod annotations to add (kubernetes.annotations), as globs over their keys such as "
     "`example.com/*`; unset: none (annotations are often large)."},
    {"namespace_labels", DR_OPT_BOOL, offsetof(kf_conf, namespace_labels), "true", 0, NULL, 0, 0,
     "Add the namespace's labels (kubernetes.namespace_labels); needs a watch on namespaces "
     "(source: api)."},
    {"honor_annotations", DR_OPT_BOOL, offsetof(kf_conf, honor_annotations), "true", 0, NULL, 0, 0,
     "Let pods steer their logs: `drover.io/exclude: \"true\"` drops a pod's records, "
     "`drover.io/exclude-<container>: \"true\"` one container's (counted as dropped, reason "
     "`excluded`); `drover.io/parser` chooses a parser (see parsers)."},
    {"parsers", DR_OPT_STRLIST, offsetof(kf_conf, parsers), NULL, 0, NULL, 0, 0,
     "Named parsers a pod may ask for with `drover.io/parser: <name>`, each \"NAME REGEX\" "
     "(a PCRE2 pattern whose named groups become fields, as the parse filter's `regex` "
     "format). `json` and `logfmt` are always there. With honor_annotations, "
     "`drover.io/parser` (or `drover.io/parser-<container>` for one container) parses the "
     "message of the pod's records like the parse filter with its defaults; an unknown name "
     "is counted in drover_kube_unknown_parser_total and the records pass unparsed."},
    {"deleted_pod_ttl", DR_OPT_DURATION, offsetof(kf_conf, deleted_pod_ttl_ms), "10m", 0, NULL, 0,
     86400000,
     "How long a deleted pod's metadata stays for log lines read after it is gone. A container "
     "whose lines were enriched before keeps its metadata until its files are drained, however "
     "long that takes."},
    {"wait_for_metadata", DR_OPT_DURATION, offsetof(kf_conf, wait_for_metadata_ms), "10s", 0, NULL,
     0, 600000,
     "At start, the inputs wait up to this long for the first list of pods, so that the first "
     "records carry their metadata; 0: do not wait."},
    {0},
};

typedef struct kf_state {
    dr_instance *inst;
    kf_conf *conf;
    uint64_t id; /* tells our dr_meta->ext from another instance's */
    kp_cache cache;
    const char *node;
    int64_t started_ns;
    bool pods_synced, namespaces_synced;
    /* source: api */
    dr_kube *kube;
    /* source: kubelet */
    dr_http_client *kubelet;
    char *kubelet_pods_url;
    bool kubelet_busy;
    int64_t kubelet_last_ns; /* monotonic, last fetch started */
    bool kubelet_wanted;     /* a miss asks for an early fetch */
    dr_json_doc *doc;
    uv_timer_t tick;
    bool tick_open;
    dr_counter *enriched, *misses, *excluded;
    /* parsers pods may ask for: json, logfmt, then the configured ones */
    char *parser_names[KF_MAX_PARSERS + 2];
    dr_parse_ctx *parsers[KF_MAX_PARSERS + 2];
    size_t nparsers;
    dr_counter *parse_errors, *unknown_parser;
    dr_gauge *pods_gauge;
} kf_state;

/* What a source (one container's log file) carries between chunks. */
typedef struct kf_source {
    uint64_t owner_id;
    uint64_t generation; /* of the cache when this was worked out */
    uint64_t pod_version, ns_version;
    dr_kube_meta *km; /* NULL: no metadata known */
    bool excluded;
    int parser; /* index in kf_state.parsers, -1: none */
} kf_source;

static uint64_t next_instance_id = 1;

static void source_free(void *ext)
{
    kf_source *s = ext;
    dr_kube_meta_unref(s->km);
    free(s);
}

/* ---- the metadata of one container ------------------------------------------------------ */

static bool annotation_wanted(const kf_conf *conf, const char *key)
{
    for (size_t i = 0; i < conf->annotations.n; i++)
        if (fnmatch(conf->annotations.v[i], key, 0) == 0)
            return true;
    return false;
}

static bool pod_excludes(const kp_pod *p, const char *container)
{
    const char *all = dr_kv_find(p->annotations, p->nannotations, KF_EXCLUDE_ANNOTATION);
    if (all && strcmp(all, "true") == 0)
        return true;
    char key[320];
    snprintf(key, sizeof key, "%s-%s", KF_EXCLUDE_ANNOTATION, container);
    const char *one = dr_kv_find(p->annotations, p->nannotations, key);
    return one && strcmp(one, "true") == 0;
}

/* The parser a pod's annotations ask for this container: -1 for none
 * (or an unknown one, counted). */
static int pod_parser(kf_state *st, const kp_pod *p, const char *container)
{
    char key[320];
    snprintf(key, sizeof key, "%s-%s", KF_PARSER_ANNOTATION, container);
    const char *name = dr_kv_find(p->annotations, p->nannotations, key);
    if (!name)
        name = dr_kv_find(p->annotations, p->nannotations, KF_PARSER_ANNOTATION);
    if (!name || !name[0])
        return -1;
    for (size_t i = 0; i < st->nparsers; i++)
        if (strcmp(st->parser_names[i], name) == 0)
            return (int)i;
    dr_counter_add(st->unknown_parser, 1);
    dr_log(st->inst, DR_LOG_WARN, "a pod asks for a parser that is not configured",
           "namespace=%s pod=%s parser=\"%.64s\"", p->namespace_, p->name, name);
    return -1;
}

static dr_kube_meta *build_meta(kf_state *st, const kp_pod *p, const kp_namespace *ns,
                                const dr_meta *m)
{
    const kf_conf *conf = st->conf;
    const kp_container *kc = kp_find_container(p, m->container);
    dr_kv *ann = NULL;
    uint32_t nann = 0;
    if (conf->annotations.n && p->nannotations) {
        ann = calloc(p->nannotations, sizeof *ann);
        if (!ann)
            return NULL;
        for (uint32_t i = 0; i < p->nannotations; i++)
            if (annotation_wanted(conf, p->annotations[i].key))
                ann[nann++] = p->annotations[i];
    }
    dr_kube_meta_spec spec = {
        .namespace_ = p->namespace_,
        .pod = p->name,
        .pod_uid = p->uid,
        .container = m->container,
        .container_id = m->container_id[0] ? m->container_id
                        : kc               ? kc->id
                                           : "",
        .image = kc ? kc->image : "",
        .node = p->node[0] ? p->node : st->node,
        .pod_ip = p->pod_ip,
        .owner_kind = p->owner_kind,
        .owner_name = p->owner_name,
        .labels = conf->labels ? p->labels : NULL,
        .nlabels = conf->labels ? p->nlabels : 0,
        .annotations = ann,
        .nannotations = nann,
        .namespace_labels = ns && conf->namespace_labels ? ns->labels : NULL,
        .nnamespace_labels = ns && conf->namespace_labels ? ns->nlabels : 0,
    };
    dr_kube_meta *km = dr_kube_meta_build(&spec);
    free(ann);
    return km;
}

/* Brings a source up to date with the cache. */
static void refresh_source(kf_state *st, kf_source *src, const dr_meta *m)
{
    if (src->generation == st->cache.generation && src->owner_id == st->id)
        return;
    src->generation = st->cache.generation;
    const kp_pod *p = kp_find(&st->cache, m->pod_uid, m->namespace_, m->pod);
    if (!p) {
        /* Unknown (yet, or long gone): keep what we had, if anything. */
        if (!src->km) {
            dr_counter_add(st->misses, 1);
            st->kubelet_wanted = true;
        }
        return;
    }
    const kp_namespace *ns = kp_find_namespace(&st->cache, p->namespace_);
    uint64_t nsv = ns ? ns->version : 0;
    if (src->km && src->pod_version == p->version && src->ns_version == nsv)
        return;
    dr_kube_meta *km = build_meta(st, p, ns, m);
    if (!km)
        return; /* out of memory: keep the old one, try at the next change */
    dr_kube_meta_unref(src->km);
    src->km = km;
    src->pod_version = p->version;
    src->ns_version = nsv;
    src->excluded = st->conf->honor_annotations && pod_excludes(p, m->container);
    src->parser = st->conf->honor_annotations ? pod_parser(st, p, m->container) : -1;
}

/* The source state of a chunk: kept on dr_meta->ext when that is free or
 * ours; in `tmp` (valid for this call) when another filter owns ext. */
static kf_source *source_of(kf_state *st, dr_meta *m, kf_source *tmp)
{
    if (m->ext && m->ext_free == source_free && ((kf_source *)m->ext)->owner_id == st->id)
        return m->ext;
    if (!m->ext) {
        kf_source *s = calloc(1, sizeof *s);
        if (s) {
            s->owner_id = st->id;
            s->generation = UINT64_MAX;
            s->parser = -1;
            m->ext = s;
            m->ext_free = source_free;
            return s;
        }
    }
    memset(tmp, 0, sizeof *tmp);
    tmp->owner_id = st->id;
    tmp->generation = UINT64_MAX;
    tmp->parser = -1;
    return tmp;
}

/* The parser a pod asked for, on every record; a line that does not
 * parse passes as it is (counted). */
static void parse_chunk(kf_state *st, dr_parse_ctx *ctx, dr_chunk *c)
{
    for (uint32_t i = 0; i < c->nrecs; i++) {
        dr_record *r = &c->recs[i];
        if (r->flags & DR_REC_DROPPED)
            continue;
        int rc = dr_parse_record(ctx, c, r);
        if (rc < 0)
            dr_counter_add(st->parse_errors, 1);
    }
}

static void kf_filter(dr_instance *inst, dr_chunk *c)
{
    kf_state *st = inst->state;
    dr_meta *m = c->meta;
    if (!m || (!m->pod[0] && !m->pod_uid[0]))
        return;
    kf_source tmp;
    kf_source *src = source_of(st, m, &tmp);
    refresh_source(st, src, m);
    if (src->excluded) {
        uint64_t n = 0;
        for (uint32_t i = 0; i < c->nrecs; i++) {
            if (!(c->recs[i].flags & DR_REC_DROPPED)) {
                c->recs[i].flags |= DR_REC_DROPPED;
                n++;
            }
        }
        dr_count_drop(inst, "excluded", n);
    } else if (src->km) {
        dr_chunk_set_kube(c, src->km);
        dr_counter_add(st->enriched, c->nrecs);
        if (src->parser >= 0)
            parse_chunk(st, st->parsers[src->parser], c);
    }
    if (src == &tmp)
        dr_kube_meta_unref(tmp.km);
}

/* ---- source: api --------------------------------------------------------------------------- */

static void on_pod_event(void *ctx, dr_kube_event ev, const dr_jv *obj)
{
    kf_state *st = ctx;
    if (ev == DR_KUBE_DELETED)
        kp_pod_delete(&st->cache, obj, dr_mono_ns());
    else if (kp_pod_upsert(&st->cache, obj) == DR_ENOMEM)
        dr_log(st->inst, DR_LOG_ERROR, "out of memory caching a pod", NULL);
}

static void on_pods_synced(void *ctx)
{
    kf_state *st = ctx;
    if (!st->pods_synced)
        dr_log(st->inst, DR_LOG_INFO, "pods listed", "node=%s pods=%zu", st->node, st->cache.npods);
    st->pods_synced = true;
}

static void on_namespace_event(void *ctx, dr_kube_event ev, const dr_jv *obj)
{
    kf_state *st = ctx;
    if (ev == DR_KUBE_DELETED)
        kp_namespace_delete(&st->cache, obj);
    else if (kp_namespace_upsert(&st->cache, obj) == DR_ENOMEM)
        dr_log(st->inst, DR_LOG_ERROR, "out of memory caching a namespace", NULL);
}

static void on_namespaces_synced(void *ctx)
{
    kf_state *st = ctx;
    st->namespaces_synced = true;
}

static int start_api(kf_state *st)
{
    dr_error err = {0};
    st->kube = dr_kube_new(st->inst, &st->conf->api, &err);
    if (!st->kube) {
        dr_log(st->inst, DR_LOG_ERROR, "cannot reach Kubernetes", "error=\"%s\"", err.msg);
        return DR_ERR;
    }
    char selector[512];
    snprintf(selector, sizeof selector, "spec.nodeName=%s", st->node);
    static const dr_kube_handler pods = {on_pod_event, on_pods_synced};
    static const dr_kube_handler namespaces = {on_namespace_event, on_namespaces_synced};
    if (!dr_kube_watch(st->kube, "/api/v1/pods", selector, NULL, &pods, st))
        return DR_ENOMEM;
    if (st->conf->namespace_labels &&
        !dr_kube_watch(st->kube, "/api/v1/namespaces", NULL, NULL, &namespaces, st))
        return DR_ENOMEM;
    if (!st->conf->namespace_labels)
        st->namespaces_synced = true;
    dr_log(st->inst, DR_LOG_INFO, "watching pods", "api=%s node=%s", dr_kube_url(st->kube),
           st->node);
    return 0;
}

/* ---- source: kubelet ------------------------------------------------------------------------ */

static void on_kubelet_pods(void *ctx, const dr_http_response *r)
{
    kf_state *st = ctx;
    st->kubelet_busy = false;
    if (!st->tick_open)
        return; /* shutting down */
    const dr_jv *root = NULL;
    dr_error err = {0};
    if (dr_http_classify(r) != DR_HTTP_OK || r->body_truncated) {
        char snippet[200];
        dr_http_response_snippet(r, snippet, sizeof snippet);
        dr_log(st->inst, DR_LOG_WARN, "kubelet /pods failed", "status=%d error=\"%s\"", r->status,
               r->body_truncated ? "answer larger than api.max_list_bytes" : snippet);
        return;
    }
    if (dr_json_parse(st->doc, r->body, r->body_len, NULL, &root, &err) < 0) {
        dr_log(st->inst, DR_LOG_WARN, "kubelet /pods answer is not JSON", "error=\"%s\"", err.msg);
        return;
    }
    /* Mark and sweep: what the kubelet no longer lists is deleted. */
    for (size_t i = 0; i < st->cache.npods; i++)
        st->cache.pods[i]->seen = false;
    const dr_jv *items = dr_jv_get(root, "items");
    for (const dr_jv *it = items && items->type == DR_JV_ARRAY ? items->child : NULL; it;
         it = it->next)
        kp_pod_upsert(&st->cache, it);
    int64_t now = dr_mono_ns();
    for (size_t i = 0; i < st->cache.npods; i++) {
        kp_pod *p = st->cache.pods[i];
        if (!p->seen && !p->deleted_ns) {
            p->deleted_ns = now;
            st->cache.generation++;
        }
    }
    dr_json_doc_trim(st->doc);
    if (!st->pods_synced)
        dr_log(st->inst, DR_LOG_INFO, "pods listed by the kubelet", "pods=%zu", st->cache.npods);
    st->pods_synced = true;
}

static void kubelet_fetch(kf_state *st)
{
    if (st->kubelet_busy)
        return;
    static const char *const headers[] = {"Accept: application/json", NULL};
    dr_http_request req = {.method = "GET", .url = st->kubelet_pods_url, .headers = headers};
    st->kubelet_busy = true;
    st->kubelet_wanted = false;
    st->kubelet_last_ns = dr_mono_ns();
    if (dr_http_client_send(st->kubelet, &req, on_kubelet_pods, st) < 0)
        st->kubelet_busy = false;
}

static int start_kubelet(kf_state *st)
{
    const kf_conf *conf = st->conf;
    dr_http_client_conf hc = {
        .ca_file = conf->kubelet_ca_file,
        .insecure_skip_verify = conf->kubelet_insecure_skip_verify,
        .bearer_token_file = conf->kubelet_token_file,
        .max_response_bytes = conf->api.max_list_bytes,
    };
    dr_error err = {0};
    st->kubelet = dr_http_client_new(st->inst->loop, &hc, &err);
    if (!st->kubelet) {
        dr_log(st->inst, DR_LOG_ERROR, "cannot make the kubelet client", "error=\"%s\"", err.msg);
        return DR_ERR;
    }
    size_t n = strlen(conf->kubelet_url);
    st->kubelet_pods_url = malloc(n + 8);
    if (!st->kubelet_pods_url)
        return DR_ENOMEM;
    memcpy(st->kubelet_pods_url, conf->kubelet_url, n);
    while (n > 0 && st->kubelet_pods_url[n - 1] == '/')
        n--;
    memcpy(st->kubelet_pods_url + n, "/pods", 6);
    st->namespaces_synced = true;
    kubelet_fetch(st);
    return 0;
}

/* ---- life cycle ------------------------------------------------------------------------------ */

static void on_tick(uv_timer_t *t)
{
    kf_state *st = t->data;
    int64_t now = dr_mono_ns();
    kp_expire(&st->cache, now, st->conf->deleted_pod_ttl_ms * 1000000LL);
    dr_gauge_set(st->pods_gauge, (double)st->cache.npods);
    if (st->kubelet) {
        int64_t since = now - st->kubelet_last_ns;
        if (since >= st->conf->kubelet_interval_ms * 1000000LL ||
            (st->kubelet_wanted && since >= 1000000000LL))
            kubelet_fetch(st);
    }
}

static int add_parser(kf_state *st, const char *name, dr_parse_format format, const char *pattern,
                      dr_error *err)
{
    dr_parse_spec spec;
    dr_parse_spec_init(&spec, format);
    spec.pattern = pattern;
    dr_error perr = {0};
    if (dr_parse_ctx_new(&spec, &st->parsers[st->nparsers], &perr) < 0) {
        dr_error_set(err, "parsers: \"%s\": %s", name, perr.msg);
        return DR_EINVAL;
    }
    st->parser_names[st->nparsers] = strdup(name);
    if (!st->parser_names[st->nparsers]) {
        dr_parse_ctx_free(st->parsers[st->nparsers]);
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    st->nparsers++;
    return 0;
}

static int make_parsers(kf_state *st, dr_error *err)
{
    const dr_strlist *named = &st->conf->parsers;
    if (named->n > KF_MAX_PARSERS) {
        dr_error_set(err, "parsers: at most %d", KF_MAX_PARSERS);
        return DR_EINVAL;
    }
    if (add_parser(st, "json", DR_PARSE_JSON, NULL, err) < 0 ||
        add_parser(st, "logfmt", DR_PARSE_LOGFMT, NULL, err) < 0)
        return DR_EINVAL;
    for (size_t i = 0; i < named->n; i++) {
        const char *spec = named->v[i];
        const char *sp = strchr(spec, ' ');
        if (!sp || sp == spec) {
            dr_error_set(err, "parsers[%zu]: expected \"NAME REGEX\"", i);
            return DR_EINVAL;
        }
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(sp - spec), spec);
        while (*sp == ' ')
            sp++;
        for (size_t j = 0; j < st->nparsers; j++) {
            if (strcmp(st->parser_names[j], name) == 0) {
                dr_error_set(err,
                             "parsers[%zu]: \"%s\" is given twice (json and logfmt are "
                             "built in)",
                             i, name);
                return DR_EINVAL;
            }
        }
        if (add_parser(st, name, DR_PARSE_REGEX, sp, err) < 0)
            return DR_EINVAL;
    }
    return 0;
}

static void free_parsers(kf_state *st)
{
    for (size_t i = 0; i < st->nparsers; i++) {
        dr_parse_ctx_free(st->parsers[i]);
        free(st->parser_names[i]);
    }
    st->nparsers = 0;
}

static int kf_init(dr_instance *inst, dr_error *err)
{
    kf_conf *conf = inst->conf;
    if (conf->source == KF_SOURCE_KUBELET && dr_http_check_url(conf->kubelet_url, err) < 0)
        return DR_EINVAL;
    if (conf->api.url && dr_http_check_url(conf->api.url, err) < 0)
        return DR_EINVAL;
    kf_state *st = calloc(1, sizeof *st);
    if (!st) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    st->inst = inst;
    st->conf = conf;
    st->id = next_instance_id++;
    st->doc = dr_json_doc_new();
    if (!st->doc) {
        free(st);
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    st->node =
        conf->node_name && conf->node_name[0] ? conf->node_name : dr_agent_node_name(inst->agent);
    inst->state = st;
    if (make_parsers(st, err) < 0) {
        free_parsers(st);
        dr_json_doc_free(st->doc);
        free(st);
        inst->state = NULL;
        return DR_EINVAL;
    }
    return 0;
}

static int kf_start(dr_instance *inst)
{
    kf_state *st = inst->state;
    st->enriched = dr_counter_new(inst, "drover_kube_enriched_records_total",
                                  "Records given Kubernetes metadata.", NULL, NULL);
    st->misses = dr_counter_new(inst, "drover_kube_metadata_misses_total",
                                "Containers whose pod was not (yet) known when their records came.",
                                NULL, NULL);
    st->parse_errors =
        dr_counter_new(inst, "drover_kube_parse_errors_total",
                       "Records that the parser a pod asked for could not parse (they pass as "
                       "they are).",
                       NULL, NULL);
    st->unknown_parser =
        dr_counter_new(inst, "drover_kube_unknown_parser_total",
                       "Containers whose drover.io/parser names no parser.", NULL, NULL);
    st->pods_gauge = dr_gauge_new(inst, "drover_kube_cached_pods",
                                  "Pods in the metadata cache, deleted ones kept for their logs "
                                  "included.",
                                  NULL, NULL);
    st->started_ns = dr_mono_ns();
    uv_timer_init(inst->loop, &st->tick);
    st->tick.data = st;
    st->tick_open = true;
    uv_timer_start(&st->tick, on_tick, st->conf->source == KF_SOURCE_KUBELET ? 250 : KF_TICK_MS,
                   st->conf->source == KF_SOURCE_KUBELET ? 250 : KF_TICK_MS);
    return st->conf->source == KF_SOURCE_KUBELET ? start_kubelet(st) : start_api(st);
}

static bool kf_ready(dr_instance *inst)
{
    kf_state *st = inst->state;
    if (st->pods_synced && st->namespaces_synced)
        return true;
    if (dr_mono_ns() - st->started_ns >= st->conf->wait_for_metadata_ms * 1000000LL) {
        if (st->conf->wait_for_metadata_ms > 0)
            dr_log(inst, DR_LOG_WARN, "no pod list yet; inputs start without waiting longer",
                   "waited_ms=%lld", (long long)st->conf->wait_for_metadata_ms);
        st->pods_synced = st->namespaces_synced = true; /* do not hold the inputs again */
        return true;
    }
    return false;
}

static void on_tick_closed(uv_handle_t *h)
{
    kf_state *st = h->data;
    free_parsers(st);
    kp_cache_free(&st->cache);
    dr_json_doc_free(st->doc);
    free(st->kubelet_pods_url);
    free(st);
}

static void kf_destroy(dr_instance *inst)
{
    kf_state *st = inst->state;
    if (!st)
        return;
    inst->state = NULL;
    dr_kube_close(st->kube);
    dr_http_client_close(st->kubelet);
    if (st->tick_open) {
        st->tick_open = false;
        uv_close((uv_handle_t *)&st->tick, on_tick_closed);
    } else {
        free_parsers(st);
        kp_cache_free(&st->cache);
        dr_json_doc_free(st->doc);
        free(st->kubelet_pods_url);
        free(st);
    }
}

const dr_plugin dr_plugin_kubernetes = {
    .abi = DR_PLUGIN_ABI,
    .name = "kubernetes",
    .kind = DR_FILTER,
    .description =
        "Adds Kubernetes metadata to container log records (`kubernetes.*`: namespace, pod, "
        "pod_uid, container, container_id, image, node, pod_ip, owner_kind, owner_name, labels, "
        "annotations, namespace_labels) from a watch on this node's pods, and drops the records "
        "of pods annotated `drover.io/exclude: \"true\"`. The owner is the workload people know: "
        "a Deployment rather than its ReplicaSet, a CronJob rather than its Job. The API server "
        "is listed once at start and then only watched; RBAC: get, list and watch on pods and "
        "namespaces.",
    .options = kf_options,
    .conf_size = sizeof(kf_conf),
    .init = kf_init,
    .start = kf_start,
    .ready = kf_ready,
    .filter = kf_filter,
    .destroy = kf_destroy,
};
