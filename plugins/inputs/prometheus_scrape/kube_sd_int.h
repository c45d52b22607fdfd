/*
 * What kube_sd.c (the discovery, its config and the pod, node, service and
 * ingress roles) shares with kube_sd_endpoints.c (the endpoints and
 * endpointslice roles, whose groups join three kinds of objects).
 */
#ifndef DR_KUBE_SD_INT_H
#define DR_KUBE_SD_INT_H

#include "scrape.h"

/* Objects one discovery keeps at most, per kind (a cluster-wide watch of a
 * big cluster must not grow without bound). */
#define KUBE_SD_MAX_GROUPS 100000u

/* FNV-1a of a source or object key. */
uint64_t ksd_hash(const char *s);

/* The object tables (ksd_table in scrape.h): get and take (unlinks) by
 * key, NULL when absent; put links a new entry whose key is not there yet
 * (DR_EAGAIN over KUBE_SD_MAX_GROUPS entries); clear frees every entry. */
ksd_item *ksd_table_get(const ksd_table *t, const char *key);
ksd_item *ksd_table_take(ksd_table *t, const char *key);
int ksd_table_put(ksd_table *t, ksd_item *it);
void ksd_table_clear(ksd_table *t, void (*free_item)(ksd_item *it));

/* Opens a watch whose handler's ctx is sd, counted among the watches
 * ksd_synced waits for. */
int ksd_watch(kube_sd *sd, const char *path, const char *fields, const char *labels,
              const dr_kube_handler *h);
/* The synced callback of every watch of a discovery: once all of them
 * have their first list, the job's targets follow the groups. */
void ksd_synced(void *ctx);

/* The group table of a discovery (by g->source): put takes g's memory
 * (DR_EAGAIN over KUBE_SD_MAX_GROUPS); a group with no targets should be
 * removed instead. Both mark the discovery dirty when something changed. */
int ksd_put_group(kube_sd *sd, target_group *g);
void ksd_remove_group(kube_sd *sd, const char *source);

/* Label helpers, as Prometheus' Kubernetes discovery names and fills
 * labels: an empty value is no label. */
void ksd_sanitized_name(dr_buf *b, const char *prefix, const char *key);
int ksd_add_label(dr_labels *ls, const char *name, size_t name_len, const char *value);
int ksd_add_labels(dr_labels *ls, const char *name, const char *value);
/* __meta_kubernetes_<role>_{label,labelpresent}_* or _{annotation,annotationpresent}_* */
int ksd_add_object_map(dr_labels *ls, const dr_jv *map, const char *role, const char *kind,
                       dr_buf *tmp);
/* The labels every target of a pod has (Prometheus' podLabels, and the
 * namespace). */
int ksd_pod_labels(const dr_jv *pod, dr_labels *ls, dr_buf *tmp);
/* Appends a target with its own labels (taken; *own is left empty). */
int ksd_add_target(target_group *g, size_t *cap, const char *addr, dr_labels *own);

/* ---- kube_sd_endpoints.c ---- */

/* The kinds of object the endpoints roles watch. */
typedef enum { KSD_OBJ_MAIN, KSD_OBJ_POD, KSD_OBJ_SERVICE } ksd_kind;

/* Sets up the joins of an endpoints or endpointslice discovery; node (may
 * be NULL) keeps only the endpoints on that node. */
int ksd_links_new(kube_sd *sd, const char *node);
/* Opens the three watches of each namespace (endpoints or endpointslices,
 * pods, services). */
int ksd_links_watch(kube_sd *sd, const char *main_fields, const char *main_labels,
                    const char *pod_fields, const char *pod_labels, const char *svc_fields,
                    const char *svc_labels);
/* An object of a kind appeared, changed or went away: the groups that
 * join it follow. */
void ksd_links_event(kube_sd *sd, ksd_kind kind, dr_kube_event ev, const dr_jv *obj);
void ksd_links_free(kube_sd *sd);

/* ---- kube_sd_meta.c ---- */

/* Opens the node and namespace watches attach_metadata asks for; node
 * (may be NULL) limits the node watch to the agent's node. */
int ksd_meta_watch(kube_sd *sd, const char *node);
/* The kinds of object whose metadata is attached. */
typedef enum { KSD_META_NODE, KSD_META_NAMESPACE, KSD_META_REPLICASET, KSD_META_JOB } ksd_meta_kind;
/* An object of a kind appeared, changed or went away (tested alone). */
void ksd_meta_event(kube_sd *sd, ksd_meta_kind kind, dr_kube_event ev, const dr_jv *obj);
/* *out = g with the labels of its node and namespace attached (a copy the
 * caller clears). */
int ksd_meta_attach(const kube_sd *sd, const target_group *g, target_group *out);
void ksd_meta_free(kube_sd *sd);

#endif
