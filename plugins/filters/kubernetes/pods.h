/*
 * The kubernetes filter's pod cache: the pods of this node as the API server
 * (or the kubelet) last described them, and the namespaces' labels.
 *
 * Pods are few per node (110 by default), so they sit in an array searched
 * by uid or by namespace/name. A deleted pod is kept for deleted_pod_ttl as
 * a tombstone: its containers' log files are usually read after it is gone
 * (the last lines, or a backlog), and those lines still need its metadata.
 */
#ifndef DROVER_KUBE_PODS_H
#define DROVER_KUBE_PODS_H

#include <stdbool.h>
#include <stdint.h>

#include "drover/plugin.h"
#include "jsonp.h"

typedef struct kp_container {
    char *name;
    char *image;
    char *id; /* the runtime's id without its "containerd://" scheme; "" if not running yet */
} kp_container;

typedef struct kp_pod {
    char *uid, *namespace_, *name, *node, *pod_ip;
    char *rv;                      /* metadata.resourceVersion: an unchanged pod is not rebuilt */
    char *owner_kind, *owner_name; /* the top owner (Deployment rather than ReplicaSet) */
    dr_kv *labels;
    uint32_t nlabels;
    dr_kv *annotations; /* all of them: exclusion and parser hints are read here */
    uint32_t nannotations;
    kp_container *containers; /* init, regular and ephemeral */
    uint32_t ncontainers;
    uint64_t version;   /* changes whenever the pod does */
    int64_t deleted_ns; /* monotonic time of deletion, 0 while it exists */
    bool seen;          /* kubelet source: in the latest /pods answer */
} kp_pod;

typedef struct kp_namespace {
    char *name;
    dr_kv *labels;
    uint32_t nlabels;
    uint64_t version;
} kp_namespace;

typedef struct kp_cache {
    kp_pod **pods;
    size_t npods, cap;
    kp_namespace **namespaces;
    size_t nnamespaces, nscap;
    uint64_t generation; /* bumped by every change: lets callers skip lookups */
    uint64_t next_version;
} kp_cache;

/* Adds or replaces a pod from its API object. 0, DR_EINVAL (no uid or
 * name) or DR_ENOMEM. */
int kp_pod_upsert(kp_cache *c, const dr_jv *pod);
/* Marks a pod deleted (by uid, else namespace/name) at monotonic now_ns. */
void kp_pod_delete(kp_cache *c, const dr_jv *pod, int64_t now_ns);
/* Drops tombstones older than ttl_ns. */
void kp_expire(kp_cache *c, int64_t now_ns, int64_t ttl_ns);

int kp_namespace_upsert(kp_cache *c, const dr_jv *ns);
void kp_namespace_delete(kp_cache *c, const dr_jv *ns);

/* A pod by uid (when uid is not empty), else by namespace and name; the
 * newest when several match (a pod recreated under the same name). */
const kp_pod *kp_find(const kp_cache *c, const char *uid, const char *namespace_, const char *name);
const kp_namespace *kp_find_namespace(const kp_cache *c, const char *name);
const kp_container *kp_find_container(const kp_pod *p, const char *name);

void kp_cache_free(kp_cache *c);

#endif
