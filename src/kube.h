/*
 * The Kubernetes API client every plugin that needs the cluster shares:
 * where the API server is and how to authenticate (in-cluster service
 * account, an explicit URL, or a kubeconfig), and informers: a LIST, then a
 * WATCH from the list's resourceVersion that is resumed where it stopped,
 * so that after start-up the API server only serves watches.
 *
 * An informer keeps the set of objects it has reported (by namespace and
 * name) so that after a relist (410 Gone) it can report as deleted what the
 * new list no longer has: its subscriber sees one consistent stream of
 * added, modified and deleted objects however often the watch breaks.
 *
 * Everything runs on the loop thread; objects are handed over as parsed
 * JSON (jsonp.h) that lives only during the callback.
 */
#ifndef DROVER_KUBE_H
#define DROVER_KUBE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "drover/plugin.h"
#include "jsonp.h"

#define DR_KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* How to reach the API server. Every field may be NULL/0. */
typedef struct dr_kube_conf {
    char *url;        /* https://host:port; unset: in-cluster, else the kubeconfig */
    char *kubeconfig; /* unset: $KUBECONFIG when not in a cluster */
    char *token_file; /* bearer token, re-read when it changes */
    char *ca_file;
    bool insecure_skip_verify;
    int64_t timeout_ms;      /* of LIST requests; 0: 30 s */
    uint64_t max_list_bytes; /* largest LIST page kept; 0: 64 MiB */
} dr_kube_conf;

/* The option table of dr_kube_conf (a DR_OPT_GROUP). */
extern const dr_option dr_kube_options[];

typedef struct dr_kube dr_kube;

/* Works out the server and credentials (reads a kubeconfig if it comes to
 * that) and makes a client. NULL with err filled. `inst` names the plugin
 * in logs and owns the metrics (drover_kube_requests_total{verb}). */
dr_kube *dr_kube_new(dr_instance *inst, const dr_kube_conf *conf, dr_error *err);
/* Stops every informer and frees the client once its handles closed. */
void dr_kube_close(dr_kube *k);
/* The base URL in use (for logs). */
const char *dr_kube_url(const dr_kube *k);

typedef enum { DR_KUBE_ADDED, DR_KUBE_MODIFIED, DR_KUBE_DELETED } dr_kube_event;

typedef struct dr_kube_handler {
    /* An object appeared, changed or went away. */
    void (*event)(void *ctx, dr_kube_event ev, const dr_jv *obj);
    /* The first complete list was delivered (and again after each relist):
     * from now on the set of objects is the cluster's. */
    void (*synced)(void *ctx);
} dr_kube_handler;

typedef struct dr_kube_informer dr_kube_informer;

/* Lists and watches `path` (such as "/api/v1/pods") with optional field
 * and label selectors. The handler's ctx must outlive the informer. */
dr_kube_informer *dr_kube_watch(dr_kube *k, const char *path, const char *field_selector,
                                const char *label_selector, const dr_kube_handler *h, void *ctx);
bool dr_kube_informer_synced(const dr_kube_informer *inf);

/* Creates an Event about an object (best effort: failures are logged).
 * `event_name` names it (NULL: one of its own): every agent of a cluster
 * that reports the same thing under the same name makes one Event between
 * them (the first creates it, the others' 409 AlreadyExists is fine), not
 * one per node. */
void dr_kube_event_create(dr_kube *k, const char *namespace_, const char *kind, const char *name,
                          const char *uid, const char *event_name, const char *type,
                          const char *reason, const char *message);

/* ---- pieces that are tested on their own ----------------------------------------- */

/* The owner that matters to people: a ReplicaSet "web-5d8f7c9b6" whose
 * name ends in the pod's pod-template-hash belongs to Deployment "web"; a
 * Job "backup-29012345" whose suffix is a CronJob's schedule stamp (8 or
 * more digits) belongs to CronJob "backup". Writes into kind and name
 * (each at least 254 bytes). */
void dr_kube_top_owner(const char *owner_kind, const char *owner_name, const char *template_hash,
                       char *kind, char *name);

/* Reads the server, CA, token and client certificate of the current
 * context from a kubeconfig file into conf (strings newly allocated;
 * relative paths resolved against the file's directory). Inline
 * *-data values are written to files under data_dir. 0 or DR_EINVAL. */
int dr_kube_read_kubeconfig(const char *path, const char *data_dir, dr_kube_conf *conf,
                            char **cert_file, char **key_file, char **token, dr_error *err);

#endif
