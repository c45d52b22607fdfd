/*
 * attach_metadata of kubernetes_sd_configs: the labels of a target's node
 * (__meta_kubernetes_node_*) and namespace (__meta_kubernetes_namespace_*),
 * as Prometheus attaches them.
 *
 * The groups are kept as their own objects make them; the node's and the
 * namespace's labels are added when the job reads the groups
 * (kube_sd_visit), so that a node or namespace that changes only marks the
 * discovery dirty instead of rebuilding every group that names it. The
 * node is the pod's spec.nodeName (role pod, on the group) or the
 * endpoint's node (roles endpoints and endpointslice, on each target: its
 * nodeName, or a targetRef of kind Node).
 *
 * Node-local, the node watch is a watch of the agent's node alone: the
 * only node a node-local target can be on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube_sd_int.h"

/* A node's or namespace's labels, by its name. */
typedef struct ksd_meta_entry {
    ksd_item it; /* it.key: the name, owned */
    dr_labels labels;
} ksd_meta_entry;

struct ksd_meta {
    ksd_table nodes, namespaces;
    /* "namespace/name" of a ReplicaSet: its Deployment's name; of a Job:
     * its CronJob's (as __meta_kubernetes_pod_deployment_name, _cronjob_name) */
    ksd_table replicasets, jobs;
};

static ksd_table *table_of(ksd_meta *m, ksd_meta_kind kind)
{
    return kind == KSD_META_NODE         ? &m->nodes
           : kind == KSD_META_NAMESPACE  ? &m->namespaces
           : kind == KSD_META_REPLICASET ? &m->replicasets
                                         : &m->jobs;
}

static void meta_entry_free(ksd_item *it)
{
    ksd_meta_entry *e = (ksd_meta_entry *)it;
    if (!e)
        return;
    dr_labels_free(&e->labels);
    free((char *)e->it.key);
    free(e);
}

/* The name of the owner of kind `kind` that controls obj, or NULL. */
static const char *controlling_owner(const dr_jv *obj, const char *kind)
{
    const dr_jv *refs = dr_jv_path(obj, "metadata", "ownerReferences", NULL);
    for (const dr_jv *r = refs && refs->type == DR_JV_ARRAY ? refs->child : NULL; r; r = r->next)
        if (dr_jv_is_true(dr_jv_get(r, "controller")))
            return strcmp(dr_jv_str_or(dr_jv_get(r, "kind"), ""), kind) == 0
                       ? dr_jv_str(dr_jv_get(r, "name"))
                       : NULL;
    return NULL;
}

/* "namespace/name" of obj, or its name alone (nodes, namespaces). */
static char *entry_key(const dr_jv *obj, bool namespaced)
{
    const char *ns = dr_jv_str(dr_jv_path(obj, "metadata", "namespace", NULL));
    const char *name = dr_jv_str(dr_jv_path(obj, "metadata", "name", NULL));
    if (!name || !*name || (namespaced && !ns))
        return NULL;
    dr_buf b = {0};
    if (namespaced)
        dr_buf_printf(&b, "%s/", ns);
    dr_buf_puts(&b, name);
    if (dr_buf_putc(&b, '\0') < 0) {
        dr_buf_free(&b);
        return NULL;
    }
    return b.p;
}

/* Node: __meta_kubernetes_node_name and the node's labels and annotations;
 * namespace: its labels and annotations (the name is on the target).
 * ReplicaSet: __meta_kubernetes_pod_deployment_name of its Deployment; Job:
 * __meta_kubernetes_pod_cronjob_name of its CronJob (no label when it has
 * none). */
static int entry_labels(ksd_meta_entry *e, const dr_jv *obj, ksd_meta_kind kind)
{
    const dr_jv *meta = dr_jv_get(obj, "metadata");
    if (kind == KSD_META_REPLICASET)
        return ksd_add_labels(&e->labels, "__meta_kubernetes_pod_deployment_name",
                              controlling_owner(obj, "Deployment"));
    if (kind == KSD_META_JOB)
        return ksd_add_labels(&e->labels, "__meta_kubernetes_pod_cronjob_name",
                              controlling_owner(obj, "CronJob"));
    bool is_node = kind == KSD_META_NODE;
    const char *role = is_node ? "node" : "namespace";
    dr_buf tmp = {0};
    int rc = 0;
    if (is_node)
        rc = ksd_add_labels(&e->labels, "__meta_kubernetes_node_name", e->it.key);
    if (rc == 0)
        rc = ksd_add_object_map(&e->labels, dr_jv_get(meta, "labels"), role, "label", &tmp);
    if (rc == 0)
        rc = ksd_add_object_map(&e->labels, dr_jv_get(meta, "annotations"), role, "annotation",
                                &tmp);
    dr_buf_free(&tmp);
    return rc;
}

static ksd_meta_entry *meta_entry_from(const dr_jv *obj, ksd_meta_kind kind, char *key)
{
    ksd_meta_entry *e = calloc(1, sizeof *e);
    if (!e) {
        free(key);
        return NULL;
    }
    dr_labels_init(&e->labels);
    e->it.key = key;
    if (entry_labels(e, obj, kind) != 0) {
        meta_entry_free(&e->it);
        return NULL;
    }
    return e;
}

void ksd_meta_event(kube_sd *sd, ksd_meta_kind kind, dr_kube_event ev, const dr_jv *obj)
{
    ksd_meta *m = sd->meta;
    bool namespaced = kind == KSD_META_REPLICASET || kind == KSD_META_JOB;
    char *key = m ? entry_key(obj, namespaced) : NULL;
    if (!key)
        return;
    ksd_table *t = table_of(m, kind);
    meta_entry_free(ksd_table_take(t, key));
    if (ev != DR_KUBE_DELETED) {
        char *copy = strdup(key);
        ksd_meta_entry *e = copy ? meta_entry_from(obj, kind, copy) : NULL;
        if (!e || ksd_table_put(t, &e->it) != 0) {
            meta_entry_free(e ? &e->it : NULL);
            dr_log(sd->job ? sd->job->in->inst : NULL, DR_LOG_WARN,
                   "metadata not attached: out of memory or over the bound", "object=%s", key);
        }
    }
    free(key);
    sd->dirty = true;
}

static void on_node(void *ctx, dr_kube_event ev, const dr_jv *obj)
{
    ksd_meta_event(ctx, KSD_META_NODE, ev, obj);
}

static void on_namespace(void *ctx, dr_kube_event ev, const dr_jv *obj)
{
    ksd_meta_event(ctx, KSD_META_NAMESPACE, ev, obj);
}

static void on_replicaset(void *ctx, dr_kube_event ev, const dr_jv *obj)
{
    ksd_meta_event(ctx, KSD_META_REPLICASET, ev, obj);
}

static void on_job(void *ctx, dr_kube_event ev, const dr_jv *obj)
{
    ksd_meta_event(ctx, KSD_META_JOB, ev, obj);
}

static const dr_kube_handler node_handler = {on_node, ksd_synced};
static const dr_kube_handler namespace_handler = {on_namespace, ksd_synced};
static const dr_kube_handler replicaset_handler = {on_replicaset, ksd_synced};
static const dr_kube_handler job_handler = {on_job, ksd_synced};

/* A watch per namespace of the discovery (every namespace: one). */
static int watch_owners(kube_sd *sd, const char *prefix, const char *plural,
                        const dr_kube_handler *h)
{
    size_t n = sd->namespaces.n ? sd->namespaces.n : 1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char path[400];
        if (sd->namespaces.n)
            snprintf(path, sizeof path, "%s/namespaces/%s/%s", prefix, sd->namespaces.v[i], plural);
        else
            snprintf(path, sizeof path, "%s/%s", prefix, plural);
        rc = ksd_watch(sd, path, NULL, NULL, h);
    }
    return rc;
}

int ksd_meta_watch(kube_sd *sd, const char *node)
{
    bool nodes = sd->attach_node && (sd->role == KUBE_SD_POD || sd->role == KUBE_SD_ENDPOINTS ||
                                     sd->role == KUBE_SD_ENDPOINTSLICE);
    bool namespaces = sd->attach_namespace && sd->role != KUBE_SD_NODE;
    bool pods = sd->role == KUBE_SD_POD || sd->role == KUBE_SD_ENDPOINTS ||
                sd->role == KUBE_SD_ENDPOINTSLICE;
    bool owners = pods && (sd->attach_deployment || sd->attach_job || sd->attach_cronjob);
    if (!nodes && !namespaces && !owners)
        return 0;
    if (!sd->meta && !(sd->meta = calloc(1, sizeof *sd->meta)))
        return DR_ENOMEM;
    int rc = 0;
    if (nodes) {
        /* the pod role's node selector chooses the nodes, as in Prometheus */
        dr_buf f = {0};
        const char *sel = sd->field_selector[KUBE_SD_NODE];
        if (sel && *sel)
            dr_buf_puts(&f, sel);
        if (node)
            dr_buf_printf(&f, "%smetadata.name=%s", f.len ? "," : "", node);
        const char *labels = sd->label_selector[KUBE_SD_NODE];
        dr_buf_putc(&f, '\0');
        rc = ksd_watch(sd, "/api/v1/nodes", f.p && f.p[0] ? f.p : NULL,
                       labels && *labels ? labels : NULL, &node_handler);
        dr_buf_free(&f);
    }
    if (rc == 0 && namespaces)
        rc = ksd_watch(sd, "/api/v1/namespaces", NULL, NULL, &namespace_handler);
    if (rc == 0 && pods && sd->attach_deployment)
        rc = watch_owners(sd, "/apis/apps/v1", "replicasets", &replicaset_handler);
    if (rc == 0 && pods && sd->attach_cronjob)
        rc = watch_owners(sd, "/apis/batch/v1", "jobs", &job_handler);
    return rc;
}

/* ---- attaching ------------------------------------------------------------------------- */

static int merge_into(dr_labels *dst, const dr_labels *src)
{
    int rc = 0;
    for (uint32_t i = 0; i < src->n && rc == 0; i++)
        rc = dr_labels_set(dst, src->v[i].name, src->v[i].name_len, src->v[i].value,
                           src->v[i].value_len);
    return rc;
}

/* The labels of the entry named by the value of label `name` in ls. */
static const dr_labels *labels_named_by(const ksd_table *t, const dr_labels *ls, const char *name)
{
    const dr_label *l = dr_labels_gets(ls, name);
    if (!l || !t->nb)
        return NULL;
    char key[256];
    if (l->value_len >= sizeof key)
        return NULL;
    memcpy(key, l->value, l->value_len);
    key[l->value_len] = '\0';
    const ksd_meta_entry *e = (const ksd_meta_entry *)ksd_table_get(t, key);
    return e ? &e->labels : NULL;
}

/* The node an endpoint target is on: a targetRef of kind Node first
 * (endpointslice) or its nodeName first (endpoints), as Prometheus. */
static const dr_labels *endpoint_node(const kube_sd *sd, const dr_labels *own)
{
    bool slice = sd->role == KUBE_SD_ENDPOINTSLICE;
    const char *kind = slice ? "__meta_kubernetes_endpointslice_address_target_kind"
                             : "__meta_kubernetes_endpoint_address_target_kind";
    const char *target = slice ? "__meta_kubernetes_endpointslice_address_target_name"
                               : "__meta_kubernetes_endpoint_address_target_name";
    const char *node = slice ? "__meta_kubernetes_endpointslice_endpoint_node_name"
                             : "__meta_kubernetes_endpoint_node_name";
    const dr_label *k = dr_labels_gets(own, kind);
    bool node_ref = k && k->value_len == 4 && memcmp(k->value, "Node", 4) == 0;
    const ksd_table *t = &sd->meta->nodes;
    if (node_ref && (slice || !dr_labels_gets(own, node)))
        return labels_named_by(t, own, target);
    /* only an endpoint's own targets: a pod's other container ports have
     * no node of their own in Prometheus */
    return labels_named_by(t, own, node);
}

static int copy_group(const target_group *g, target_group *out)
{
    memset(out, 0, sizeof *out);
    dr_labels_init(&out->labels);
    size_t n = g->targets.n;
    out->targets.v = calloc(n + 1, sizeof *out->targets.v);
    out->per_target = g->per_target ? calloc(n ? n : 1, sizeof *out->per_target) : NULL;
    out->source = g->source ? strdup(g->source) : NULL;
    if (!out->targets.v || (g->per_target && !out->per_target) || (g->source && !out->source) ||
        dr_labels_copy(&out->labels, &g->labels) != 0)
        return DR_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!(out->targets.v[i] = strdup(g->targets.v[i])))
            return DR_ENOMEM;
        out->targets.n++;
        if (out->per_target) {
            dr_labels_init(&out->per_target[i]);
            if (dr_labels_copy(&out->per_target[i], &g->per_target[i]) != 0)
                return DR_ENOMEM;
        }
    }
    return 0;
}

/* "namespace/name" of the pod's controller, if of that kind, in key. */
static bool controller_key(const dr_labels *pod, const char *kind, char *key, size_t cap)
{
    const dr_label *k = dr_labels_gets(pod, "__meta_kubernetes_pod_controller_kind");
    const dr_label *n = dr_labels_gets(pod, "__meta_kubernetes_pod_controller_name");
    const dr_label *ns = dr_labels_gets(pod, "__meta_kubernetes_namespace");
    if (!k || !n || !ns || k->value_len != strlen(kind) || memcmp(k->value, kind, k->value_len))
        return false;
    int len =
        snprintf(key, cap, "%.*s/%.*s", (int)ns->value_len, ns->value, (int)n->value_len, n->value);
    return len > 0 && (size_t)len < cap;
}

/* A pod's owners' names: deployment (by its ReplicaSet), job, cronjob (by
 * its Job), into ls (where the pod's labels are). */
static int attach_owners(const kube_sd *sd, dr_labels *ls)
{
    const ksd_meta *m = sd->meta;
    char key[600];
    int rc = 0;
    if (sd->attach_deployment && controller_key(ls, "ReplicaSet", key, sizeof key)) {
        const ksd_meta_entry *e = (const ksd_meta_entry *)ksd_table_get(&m->replicasets, key);
        if (e)
            rc = merge_into(ls, &e->labels);
    }
    if (rc == 0 && (sd->attach_job || sd->attach_cronjob) &&
        controller_key(ls, "Job", key, sizeof key)) {
        if (sd->attach_job)
            rc = ksd_add_labels(ls, "__meta_kubernetes_pod_job_name", strchr(key, '/') + 1);
        const ksd_meta_entry *e =
            sd->attach_cronjob ? (const ksd_meta_entry *)ksd_table_get(&m->jobs, key) : NULL;
        if (rc == 0 && e)
            rc = merge_into(ls, &e->labels);
    }
    return rc;
}

int ksd_meta_attach(const kube_sd *sd, const target_group *g, target_group *out)
{
    const ksd_meta *m = sd->meta;
    int rc = copy_group(g, out);
    if (rc == 0 && sd->attach_namespace && sd->role != KUBE_SD_NODE) {
        const dr_labels *ns =
            labels_named_by(&m->namespaces, &g->labels, "__meta_kubernetes_namespace");
        if (ns)
            rc = merge_into(&out->labels, ns);
    }
    if (rc == 0 && sd->attach_node && sd->role == KUBE_SD_POD) {
        const dr_labels *node =
            labels_named_by(&m->nodes, &g->labels, "__meta_kubernetes_pod_node_name");
        if (node)
            rc = merge_into(&out->labels, node);
    }
    if (rc == 0 && sd->role == KUBE_SD_POD)
        rc = attach_owners(sd, &out->labels);
    bool endpoints = sd->role == KUBE_SD_ENDPOINTS || sd->role == KUBE_SD_ENDPOINTSLICE;
    for (size_t i = 0; endpoints && i < out->targets.n && out->per_target && rc == 0; i++) {
        const dr_labels *node = sd->attach_node ? endpoint_node(sd, &out->per_target[i]) : NULL;
        if (node)
            rc = merge_into(&out->per_target[i], node);
        if (rc == 0)
            rc = attach_owners(sd, &out->per_target[i]);
    }
    if (rc != 0)
        group_clear(out);
    return rc;
}

void ksd_meta_free(kube_sd *sd)
{
    if (!sd->meta)
        return;
    ksd_table_clear(&sd->meta->nodes, meta_entry_free);
    ksd_table_clear(&sd->meta->namespaces, meta_entry_free);
    ksd_table_clear(&sd->meta->replicasets, meta_entry_free);
    ksd_table_clear(&sd->meta->jobs, meta_entry_free);
    free(sd->meta);
    sd->meta = NULL;
}
