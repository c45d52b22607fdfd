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
};

static void meta_entry_free(ksd_item *it)
{
    ksd_meta_entry *e = (ksd_meta_entry *)it;
    if (!e)
        return;
    dr_labels_free(&e->labels);
    free((char *)e->it.key);
    free(e);
}

/* Node: __meta_kubernetes_node_name and the node's labels and annotations;
 * namespace: its labels and annotations (the name is on the target). */
static ksd_meta_entry *meta_entry_from(const dr_jv *obj, bool is_node)
{
    const dr_jv *meta = dr_jv_get(obj, "metadata");
    const char *name = dr_jv_str(dr_jv_get(meta, "name"));
    if (!name || !*name)
        return NULL;
    ksd_meta_entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    dr_labels_init(&e->labels);
    e->it.key = strdup(name);
    const char *role = is_node ? "node" : "namespace";
    dr_buf tmp = {0};
    int rc = e->it.key ? 0 : DR_ENOMEM;
    if (rc == 0 && is_node)
        rc = ksd_add_labels(&e->labels, "__meta_kubernetes_node_name", name);
    if (rc == 0)
        rc = ksd_add_object_map(&e->labels, dr_jv_get(meta, "labels"), role, "label", &tmp);
    if (rc == 0)
        rc = ksd_add_object_map(&e->labels, dr_jv_get(meta, "annotations"), role, "annotation",
                                &tmp);
    dr_buf_free(&tmp);
    if (rc != 0) {
        meta_entry_free(&e->it);
        return NULL;
    }
    return e;
}

void ksd_meta_event(kube_sd *sd, bool is_node, dr_kube_event ev, const dr_jv *obj)
{
    ksd_meta *m = sd->meta;
    const char *name = dr_jv_str(dr_jv_path(obj, "metadata", "name", NULL));
    if (!m || !name)
        return;
    ksd_table *t = is_node ? &m->nodes : &m->namespaces;
    meta_entry_free(ksd_table_take(t, name));
    if (ev != DR_KUBE_DELETED) {
        ksd_meta_entry *e = meta_entry_from(obj, is_node);
        if (!e || ksd_table_put(t, &e->it) != 0) {
            meta_entry_free(e ? &e->it : NULL);
            dr_log(sd->job ? sd->job->in->inst : NULL, DR_LOG_WARN,
                   "metadata not attached: out of memory or over the bound", "%s=%s",
                   is_node ? "node" : "namespace", name);
        }
    }
    sd->dirty = true;
}

static void on_node(void *ctx, dr_kube_event ev, const dr_jv *obj)
{
    ksd_meta_event(ctx, true, ev, obj);
}

static void on_namespace(void *ctx, dr_kube_event ev, const dr_jv *obj)
{
    ksd_meta_event(ctx, false, ev, obj);
}

static const dr_kube_handler node_handler = {on_node, ksd_synced};
static const dr_kube_handler namespace_handler = {on_namespace, ksd_synced};

int ksd_meta_watch(kube_sd *sd, const char *node)
{
    bool nodes = sd->attach_node && (sd->role == KUBE_SD_POD || sd->role == KUBE_SD_ENDPOINTS ||
                                     sd->role == KUBE_SD_ENDPOINTSLICE);
    bool namespaces = sd->attach_namespace && sd->role != KUBE_SD_NODE;
    if (!nodes && !namespaces)
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
    if (sd->attach_node && (sd->role == KUBE_SD_ENDPOINTS || sd->role == KUBE_SD_ENDPOINTSLICE))
        for (size_t i = 0; i < out->targets.n && out->per_target && rc == 0; i++) {
            const dr_labels *node = endpoint_node(sd, &out->per_target[i]);
            if (node)
                rc = merge_into(&out->per_target[i], node);
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
    free(sd->meta);
    sd->meta = NULL;
}
