/*
 * The pod cache: API objects turned into the few values the filter uses.
 * Only this file knows the shape of a Pod object.
 */
#include "pods.h"

#include <stdlib.h>
#include <string.h>

#include "kube.h"

static void kv_free(dr_kv *kv, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        free((char *)kv[i].key);
        free((char *)kv[i].val);
    }
    free(kv);
}

/* A JSON object of strings (labels, annotations) as a key/value array.
 * Non-string values are skipped: the API never sends them. */
static int kv_from_object(const dr_jv *obj, dr_kv **out, uint32_t *n)
{
    *out = NULL;
    *n = 0;
    if (!obj || obj->type != DR_JV_OBJECT || obj->len == 0)
        return 0;
    dr_kv *kv = calloc(obj->len, sizeof *kv);
    if (!kv)
        return DR_ENOMEM;
    uint32_t m = 0;
    for (const dr_jv *v = obj->child; v; v = v->next) {
        if (v->type != DR_JV_STRING)
            continue;
        kv[m].key = strdup(v->key);
        kv[m].val = strdup(v->str);
        if (!kv[m].key || !kv[m].val) {
            kv_free(kv, m + 1);
            return DR_ENOMEM;
        }
        m++;
    }
    *out = kv;
    *n = m;
    return 0;
}

static char *dup_str(const dr_jv *v)
{
    return strdup(dr_jv_str_or(v, ""));
}

static void pod_free(kp_pod *p)
{
    if (!p)
        return;
    free(p->uid);
    free(p->rv);
    free(p->namespace_);
    free(p->name);
    free(p->node);
    free(p->pod_ip);
    free(p->owner_kind);
    free(p->owner_name);
    kv_free(p->labels, p->nlabels);
    kv_free(p->annotations, p->nannotations);
    for (uint32_t i = 0; i < p->ncontainers; i++) {
        free(p->containers[i].name);
        free(p->containers[i].image);
        free(p->containers[i].id);
    }
    free(p->containers);
    free(p);
}

/* "containerd://0123..." -> "0123..." */
static const char *strip_scheme(const char *id)
{
    const char *s = strstr(id, "://");
    return s ? s + 3 : id;
}

/* The runtime id of a container from the pod's status lists. */
static const char *status_container_id(const dr_jv *status, const char *name)
{
    static const char *const lists[] = {"containerStatuses", "initContainerStatuses",
                                        "ephemeralContainerStatuses"};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        const dr_jv *l = dr_jv_get(status, lists[i]);
        for (const dr_jv *cs = l && l->type == DR_JV_ARRAY ? l->child : NULL; cs; cs = cs->next) {
            if (strcmp(dr_jv_str_or(dr_jv_get(cs, "name"), ""), name) == 0)
                return strip_scheme(dr_jv_str_or(dr_jv_get(cs, "containerID"), ""));
        }
    }
    return "";
}

static int add_containers(kp_pod *p, const dr_jv *spec, const dr_jv *status)
{
    static const char *const lists[] = {"initContainers", "containers", "ephemeralContainers"};
    uint32_t total = 0;
    for (size_t i = 0; i < 3; i++) {
        const dr_jv *l = dr_jv_get(spec, lists[i]);
        if (l && l->type == DR_JV_ARRAY)
            total += l->len;
    }
    if (total == 0)
        return 0;
    p->containers = calloc(total, sizeof *p->containers);
    if (!p->containers)
        return DR_ENOMEM;
    for (size_t i = 0; i < 3; i++) {
        const dr_jv *l = dr_jv_get(spec, lists[i]);
        for (const dr_jv *c = l && l->type == DR_JV_ARRAY ? l->child : NULL; c; c = c->next) {
            const char *name = dr_jv_str(dr_jv_get(c, "name"));
            if (!name)
                continue;
            kp_container *kc = &p->containers[p->ncontainers++];
            kc->name = strdup(name);
            kc->image = dup_str(dr_jv_get(c, "image"));
            kc->id = strdup(status_container_id(status, name));
            if (!kc->name || !kc->image || !kc->id)
                return DR_ENOMEM;
        }
    }
    return 0;
}

/* The controlling owner (or the first), resolved to the top owner. */
static int set_owner(kp_pod *p, const dr_jv *meta)
{
    const dr_jv *refs = dr_jv_get(meta, "ownerReferences");
    const dr_jv *pick = NULL;
    for (const dr_jv *r = refs && refs->type == DR_JV_ARRAY ? refs->child : NULL; r; r = r->next) {
        if (!pick || dr_jv_is_true(dr_jv_get(r, "controller")))
            pick = r;
        if (dr_jv_is_true(dr_jv_get(r, "controller")))
            break;
    }
    char kind[256] = "", name[256] = "";
    if (pick) {
        const char *hash = dr_kv_find(p->labels, p->nlabels, "pod-template-hash");
        dr_kube_top_owner(dr_jv_str_or(dr_jv_get(pick, "kind"), ""),
                          dr_jv_str_or(dr_jv_get(pick, "name"), ""), hash, kind, name);
    }
    p->owner_kind = strdup(kind);
    p->owner_name = strdup(name);
    return p->owner_kind && p->owner_name ? 0 : DR_ENOMEM;
}

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const dr_kv *)a)->key, ((const dr_kv *)b)->key);
}

/* Sorted by key, for dr_kv_find (qsort must not see a NULL array). */
static void kv_sort(dr_kv *kv, uint32_t n)
{
    if (n > 1)
        qsort(kv, n, sizeof *kv, kv_cmp);
}

static kp_pod *pod_from_json(const dr_jv *obj)
{
    const dr_jv *meta = dr_jv_get(obj, "metadata");
    const dr_jv *spec = dr_jv_get(obj, "spec");
    const dr_jv *status = dr_jv_get(obj, "status");
    if (!dr_jv_str(dr_jv_get(meta, "name")))
        return NULL;
    kp_pod *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->uid = dup_str(dr_jv_get(meta, "uid"));
    p->rv = dup_str(dr_jv_get(meta, "resourceVersion"));
    p->namespace_ = dup_str(dr_jv_get(meta, "namespace"));
    p->name = dup_str(dr_jv_get(meta, "name"));
    p->node = dup_str(dr_jv_get(spec, "nodeName"));
    p->pod_ip = dup_str(dr_jv_get(status, "podIP"));
    if (!p->uid || !p->rv || !p->namespace_ || !p->name || !p->node || !p->pod_ip ||
        kv_from_object(dr_jv_get(meta, "labels"), &p->labels, &p->nlabels) < 0 ||
        kv_from_object(dr_jv_get(meta, "annotations"), &p->annotations, &p->nannotations) < 0) {
        pod_free(p);
        return NULL;
    }
    kv_sort(p->labels, p->nlabels);
    kv_sort(p->annotations, p->nannotations);
    if (set_owner(p, meta) < 0 || add_containers(p, spec, status) < 0) {
        pod_free(p);
        return NULL;
    }
    return p;
}

/* The index of the live pod with this uid, else of the live pod with this
 * namespace/name, else -1. */
static long find_index(const kp_cache *c, const char *uid, const char *ns, const char *name,
                       bool live_only)
{
    long by_name = -1;
    for (size_t i = 0; i < c->npods; i++) {
        const kp_pod *p = c->pods[i];
        if (live_only && p->deleted_ns)
            continue;
        if (uid && uid[0] && strcmp(p->uid, uid) == 0)
            return (long)i;
        if ((!uid || !uid[0]) && ns && name && strcmp(p->namespace_, ns) == 0 &&
            strcmp(p->name, name) == 0) {
            /* the newest: live beats deleted, later beats earlier */
            if (by_name < 0 || !p->deleted_ns || c->pods[by_name]->deleted_ns)
                by_name = (long)i;
        }
    }
    return by_name;
}

int kp_pod_upsert(kp_cache *c, const dr_jv *obj)
{
    const dr_jv *meta = dr_jv_get(obj, "metadata");
    const char *uid = dr_jv_str_or(dr_jv_get(meta, "uid"), "");
    const char *rv = dr_jv_str_or(dr_jv_get(meta, "resourceVersion"), "");
    long known = uid[0] ? find_index(c, uid, NULL, NULL, false) : -1;
    if (known >= 0 && rv[0] && strcmp(c->pods[known]->rv, rv) == 0 && !c->pods[known]->deleted_ns) {
        c->pods[known]->seen = true; /* the same version: nothing to rebuild */
        return 0;
    }
    kp_pod *p = pod_from_json(obj);
    if (!p)
        return dr_jv_str(dr_jv_path(obj, "metadata", "name", NULL)) ? DR_ENOMEM : DR_EINVAL;
    p->version = ++c->next_version;
    p->seen = true;
    c->generation++;
    long i = find_index(c, p->uid, NULL, NULL, false);
    if (i >= 0) {
        pod_free(c->pods[i]);
        c->pods[i] = p;
        return 0;
    }
    if (c->npods == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        kp_pod **np = realloc(c->pods, cap * sizeof *np);
        if (!np) {
            pod_free(p);
            return DR_ENOMEM;
        }
        c->pods = np;
        c->cap = cap;
    }
    c->pods[c->npods++] = p;
    return 0;
}

void kp_pod_delete(kp_cache *c, const dr_jv *obj, int64_t now_ns)
{
    const dr_jv *meta = dr_jv_get(obj, "metadata");
    const char *uid = dr_jv_str_or(dr_jv_get(meta, "uid"), "");
    long i = find_index(c, uid, dr_jv_str(dr_jv_get(meta, "namespace")),
                        dr_jv_str(dr_jv_get(meta, "name")), true);
    if (i < 0)
        return;
    c->pods[i]->deleted_ns = now_ns ? now_ns : 1;
    c->generation++;
}

void kp_expire(kp_cache *c, int64_t now_ns, int64_t ttl_ns)
{
    for (size_t i = 0; i < c->npods;) {
        kp_pod *p = c->pods[i];
        if (p->deleted_ns && now_ns - p->deleted_ns >= ttl_ns) {
            pod_free(p);
            c->pods[i] = c->pods[--c->npods];
            c->generation++;
        } else {
            i++;
        }
    }
}

const kp_pod *kp_find(const kp_cache *c, const char *uid, const char *namespace_, const char *name)
{
    /* A known uid decides: the same name may belong to a newer pod. */
    long i = uid && uid[0] ? find_index(c, uid, NULL, NULL, false)
                           : find_index(c, NULL, namespace_, name, false);
    return i < 0 ? NULL : c->pods[i];
}

const kp_container *kp_find_container(const kp_pod *p, const char *name)
{
    for (uint32_t i = 0; i < p->ncontainers; i++)
        if (strcmp(p->containers[i].name, name) == 0)
            return &p->containers[i];
    return NULL;
}

/* ---- namespaces ----------------------------------------------------------------------- */

static void ns_free(kp_namespace *n)
{
    if (!n)
        return;
    free(n->name);
    kv_free(n->labels, n->nlabels);
    free(n);
}

static long ns_index(const kp_cache *c, const char *name)
{
    for (size_t i = 0; i < c->nnamespaces; i++)
        if (strcmp(c->namespaces[i]->name, name) == 0)
            return (long)i;
    return -1;
}

int kp_namespace_upsert(kp_cache *c, const dr_jv *obj)
{
    const dr_jv *meta = dr_jv_get(obj, "metadata");
    const char *name = dr_jv_str(dr_jv_get(meta, "name"));
    if (!name)
        return DR_EINVAL;
    kp_namespace *n = calloc(1, sizeof *n);
    if (!n || !(n->name = strdup(name)) ||
        kv_from_object(dr_jv_get(meta, "labels"), &n->labels, &n->nlabels) < 0) {
        ns_free(n);
        return DR_ENOMEM;
    }
    kv_sort(n->labels, n->nlabels);
    n->version = ++c->next_version;
    c->generation++;
    long i = ns_index(c, name);
    if (i >= 0) {
        ns_free(c->namespaces[i]);
        c->namespaces[i] = n;
        return 0;
    }
    if (c->nnamespaces == c->nscap) {
        size_t cap = c->nscap ? c->nscap * 2 : 32;
        kp_namespace **nn = realloc(c->namespaces, cap * sizeof *nn);
        if (!nn) {
            ns_free(n);
            return DR_ENOMEM;
        }
        c->namespaces = nn;
        c->nscap = cap;
    }
    c->namespaces[c->nnamespaces++] = n;
    return 0;
}

void kp_namespace_delete(kp_cache *c, const dr_jv *obj)
{
    long i = ns_index(c, dr_jv_str_or(dr_jv_path(obj, "metadata", "name", NULL), ""));
    if (i < 0)
        return;
    ns_free(c->namespaces[i]);
    c->namespaces[i] = c->namespaces[--c->nnamespaces];
    c->generation++;
}

const kp_namespace *kp_find_namespace(const kp_cache *c, const char *name)
{
    long i = ns_index(c, name);
    return i < 0 ? NULL : c->namespaces[i];
}

void kp_cache_free(kp_cache *c)
{
    for (size_t i = 0; i < c->npods; i++)
        pod_free(c->pods[i]);
    free(c->pods);
    for (size_t i = 0; i < c->nnamespaces; i++)
        ns_free(c->namespaces[i]);
    free(c->namespaces);
    memset(c, 0, sizeof *c);
}
