/*
 * The prometheus_scrape input: the model shared by its files.
 *
 *   scrape.c   the plugin: options, start and stop, the self-metrics
 *   job.c      one scrape_configs entry: its settings, as Prometheus reads
 *              them, and the targets its discovery yields (target labels
 *              before and after relabel_configs, the scrape URL)
 *   target.c   one target: its timer, the request, decoding and parsing
 *              the body, the series cache, staleness, the report series
 *   cache.c    the series cache of a target (cache.h)
 *   file_sd.c  file_sd_configs: target groups read from files
 *   kube_sd.c  kubernetes_sd_configs: target groups from the Kubernetes API
 *
 * Everything runs on the loop thread.
 */
#ifndef DROVER_SCRAPE_H
#define DROVER_SCRAPE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "cache.h"
#include "config.h"
#include "drover/plugin.h"
#include "expo.h"
#include "http_client.h"
#include "kube.h"
#include "labels.h"
#include "relabel.h"

typedef struct scrape_input scrape_input;
typedef struct scrape_job scrape_job;
typedef struct scrape_target scrape_target;

/* Exposition formats a job asks for, in its order of preference, as
 * Prometheus' scrape_protocols names them. */
typedef enum {
    PROTO_PROMETHEUS_PROTO,
    PROTO_OPENMETRICS_1_0_0,
    PROTO_OPENMETRICS_0_0_1,
    PROTO_PROMETHEUS_TEXT_1_0_0,
    PROTO_PROMETHEUS_TEXT_0_0_4,
    PROTO_COUNT,
} scrape_protocol;

/* One target group: the addresses and the labels they share, from a
 * static_configs entry, a file_sd file or a discovered object. */
typedef struct target_group {
    dr_strlist targets;
    dr_labels labels;      /* owns its bytes */
    dr_labels *per_target; /* each target's own labels (over the group's), or NULL */
    char *source;          /* the file (file_sd) or object (kube_sd) it came from, or NULL */
} target_group;

/* A file_sd_configs entry: the file patterns, and the groups last read. */
typedef struct file_sd {
    dr_strlist patterns;
    int64_t refresh_ms;
    int64_t next_read_ms; /* monotonic */
    uint64_t fingerprint; /* of the files' names, sizes and times last read */
    target_group *groups;
    size_t ngroups;
    char *last_error;
} file_sd;

/* A kubernetes_sd_configs entry. Roles in Prometheus' order. */
typedef enum {
    KUBE_SD_POD,
    KUBE_SD_NODE,
    KUBE_SD_SERVICE,
    KUBE_SD_ENDPOINTS,
    KUBE_SD_ENDPOINTSLICE,
    KUBE_SD_INGRESS,
} kube_sd_role;
#define KUBE_SD_NROLES (KUBE_SD_INGRESS + 1)

/* A hash table of objects by key (a group's source, "namespace/name"):
 * the entries embed a ksd_item first (kube_sd.c). */
typedef struct ksd_item ksd_item;
struct ksd_item {
    ksd_item *next; /* in its bucket */
    uint64_t hash;
    const char *key; /* the entry's own */
};
typedef struct ksd_table {
    ksd_item **b;
    uint32_t nb;
    size_t n;
} ksd_table;

typedef struct ksd_links ksd_links;
typedef struct ksd_meta ksd_meta;
typedef struct dr_kube_informer dr_kube_informer;

typedef struct kube_sd {
    scrape_job *job;
    kube_sd_role role;
    dr_kube_conf api; /* api_server, kubeconfig_file, token, TLS */
    dr_strlist namespaces;
    bool own_namespace;
    /* the selectors, by the role of the objects they select */
    char *label_selector[KUBE_SD_NROLES], *field_selector[KUBE_SD_NROLES];
    bool node_local; /* only this node's pods (default) */
    dr_kube *kube;
    ksd_links *links; /* endpoints, endpointslice: the objects a group joins */
    /* attach_metadata */
    bool attach_node, attach_namespace, attach_deployment, attach_job, attach_cronjob;
    ksd_meta *meta;          /* the nodes' and namespaces' labels attached */
    dr_kube_informer **infs; /* every watch; synced when all are */
    size_t ninfs;
    ksd_table groups; /* by source */
    bool dirty;       /* groups changed since the targets were synced */
    bool synced;      /* the first list is in */
    /* drover_sd_kubernetes_events_total{role}, drover_sd_kubernetes_objects{role} */
    dr_counter *events;
    dr_gauge *objects;
} kube_sd;

/* Turns the body of an answer into Prometheus text (format 0.0.4) in
 * `out`, for an endpoint that speaks JSON (the kubelet's /stats/summary).
 * 0, or a DR_E* code with why filled: the scrape then fails. */
typedef int (*scrape_convert_fn)(const char *body, size_t len, dr_buf *out, char *why,
                                 size_t whylen);

/* How many targets one job may have: a bound on what discovery can make
 * the agent do. */
#define SCRAPE_MAX_TARGETS_PER_JOB 10000u

struct scrape_job {
    scrape_input *in;
    char *name; /* job_name */
    int64_t interval_ms, timeout_ms;
    char *metrics_path, *scheme;
    dr_labels params; /* query parameters (a name may repeat) */
    bool honor_labels, honor_timestamps, track_timestamps_staleness, enable_compression;
    uint64_t sample_limit, label_limit, label_name_length_limit, label_value_length_limit;
    uint64_t body_size_limit;
    scrape_protocol protocols[PROTO_COUNT];
    size_t nprotocols;
    bool has_fallback;
    dr_expo_format fallback;
    char *accept; /* the Accept header the protocols make */
    dr_relabel_rules *relabel, *metric_relabel;
    dr_http_client_conf http_conf;
    dr_http_client *http;
    target_group *static_groups;
    size_t nstatic_groups;
    file_sd *file_sds;
    size_t nfile_sds;
    kube_sd *kube_sds;
    size_t nkube_sds;
    scrape_target *targets; /* the live targets (a list) */
    size_t ntargets;
    size_t ndropped_targets; /* relabel_configs dropped them at the last sync */
    /* NULL: bodies are exposition, parsed by their Content-Type; else every
     * body goes through it first (set by an input built on these jobs). */
    scrape_convert_fn convert;
};

/* What a target's last scrape came to (its "health", as Prometheus'
 * targets page shows it). */
typedef struct scrape_health {
    bool up;
    char error[256]; /* why the last scrape failed, "" when it did not */
    int64_t last_ms; /* when it started, Unix ms; 0 before the first */
    double duration_s;
    uint64_t samples_scraped, samples_post_relabel, series_added;
} scrape_health;

struct scrape_target {
    scrape_target *next;
    scrape_job *job;
    uint64_t hash;        /* of the final labels and the URL: the identity */
    dr_labels labels;     /* the target's labels (job, instance, ...), canonical */
    dr_labels discovered; /* before relabel_configs */
    char *url;
    int64_t interval_ms, timeout_ms;
    uv_timer_t timer;
    bool timer_started;
    bool inflight;
    bool removed;     /* no longer discovered: its scrape ends with staleness */
    bool ever_ok;     /* a scrape succeeded since the cache last emptied */
    int64_t start_ms; /* the scrape in flight started (Unix ms) */
    int64_t start_mono_ns;
    scrape_cache cache;
    uint32_t iter;           /* scrapes done; the cache's notion of "this scrape" */
    dr_expo_format last_fmt; /* of the last good scrape: keys depend on it */
    dr_series *report[5];    /* up, scrape_duration_seconds, ... (held) */
    int64_t meta_sent_ms;    /* when the families' metadata last went out */
    scrape_health health;
};

/* The input: its jobs and what they share. */
struct scrape_input {
    dr_instance *inst;
    int64_t default_interval_ms, default_timeout_ms;
    int64_t metadata_interval_ms;
    scrape_job *jobs;
    size_t njobs;
    dr_series_table *series;
    uv_timer_t sd_timer; /* re-reads file_sd files */
    bool sd_timer_started;
    bool stopping;
    /* The gunzip'ed body of the scrape being parsed. One for every target:
     * a body is parsed to its end within the answer's callback on the loop
     * thread, so no two need it at once (a node's kubelet and cAdvisor
     * bodies are megabytes each). */
    dr_buf body;
    dr_buf converted; /* the body as a job's convert function wrote it */
    size_t closing;   /* handles still closing */
    /* self-metrics */
    dr_counter *scrapes, *skipped, *samples, *stale_markers, *targets_dropped;
    dr_gauge *targets_active;
};

/* ---- scrape.c ---- */

/* The life of an input made of jobs, for the prometheus_scrape plugin and
 * for inputs that build their jobs themselves (kubelet): start the jobs'
 * clients and targets; stop every scrape; free now or once handles close. */
int scrape_input_start(scrape_input *in);
void scrape_input_stop(scrape_input *in);
void scrape_input_destroy(scrape_input *in);
/* Frees the jobs and the input (no handle may be open). */
void scrape_input_free(scrape_input *in);
/* The start, stop and destroy callbacks of every plugin whose state is a
 * scrape_input (prometheus_scrape, kubelet, coredns). */
int scrape_plugin_start(dr_instance *inst);
void scrape_plugin_stop(dr_instance *inst);
void scrape_plugin_destroy(dr_instance *inst);

/* ---- preset.c ---- */

/* An input of jobs, room for max_jobs, with the defaults of jobs that set
 * no interval, timeout or metadata interval. NULL when out of memory. */
scrape_input *scrape_input_new(dr_instance *inst, size_t max_jobs, int64_t interval_ms,
                               int64_t timeout_ms, int64_t metadata_interval_ms);
/* s escaped for a YAML double-quoted scalar (without the quotes), or as
 * one (with them). 0 or DR_ENOMEM. */
int scrape_yaml_escaped(dr_buf *b, const char *s);
int scrape_yaml_quoted(dr_buf *b, const char *s);
/* Reads one job from the text of its scrape_configs entry (`path` names it
 * in errors, which go to errs). The number of errors. */
int scrape_job_from_yaml(scrape_input *in, const char *yaml, const char *path, scrape_job *job,
                         dr_cfg_errors *errs);
/* The job's metric relabeling: the user's rules (an empty list: none),
 * else the rules under "rules:" of defaults_yaml (NULL: none). The number
 * of errors. */
int scrape_metric_relabel(scrape_job *job, const dr_cfg_node *user, const char *defaults_yaml,
                          const char *defaults_name, dr_cfg_errors *errs);

/* ---- job.c ---- */

/* Parses one scrape_configs entry into `job` (zeroed by the caller).
 * Errors go to errs with their positions; returns the number added. */
/* The keys of one scrape_configs entry (also what --describe lists). */
extern const dr_option scrape_job_options[];

int job_parse(scrape_input *in, const dr_cfg_node *map, const char *path, scrape_job *job,
              dr_cfg_errors *errs);
void job_free(scrape_job *job);
/* Starts the job's HTTP client. 0 or a DR_E* code with err. */
int job_start(scrape_job *job, dr_error *err);
/* Recomputes the job's targets from its groups: new targets start, gone
 * ones stop (with staleness markers), unchanged ones keep their state. */
void job_sync_targets(scrape_job *job);
/* Parses a list of target groups (a static_configs value, or a file_sd
 * file's content) into groups. 0, or the number of errors added. */
int groups_parse(const dr_cfg_node *list, const char *path, const char *source, target_group **out,
                 size_t *nout, dr_cfg_errors *errs);
void groups_free(target_group *g, size_t n);
/* Frees what one group holds and zeroes it. */
void group_clear(target_group *g);

/* ---- target.c ---- */

/* A new target (its labels and URL set by the job); not started. */
scrape_target *target_new(scrape_job *job);
/* Starts its timer, at its offset within the interval. */
int target_start(scrape_target *t);
/* Stops scraping. With `stale`, the series of its last scrape get
 * staleness markers (a target that went away). Frees the target once its
 * handles are closed and its scrape in flight has ended. */
void target_stop(scrape_target *t, bool stale);

/* ---- file_sd.c ---- */

int file_sd_parse(const dr_cfg_node *map, const char *path, file_sd *out, dr_cfg_errors *errs);
void file_sd_free(file_sd *sd);
/* Reads the files again when they changed or the refresh interval passed.
 * True when the groups changed. */
bool file_sd_refresh(scrape_job *job, file_sd *sd, bool force);

/* ---- kube_sd.c ---- */

/* The keys of a kubernetes_sd_configs entry (also what --describe lists). */
extern const dr_option kube_sd_options[];
int kube_sd_parse(const dr_cfg_node *map, const char *path, kube_sd *sd, dr_cfg_errors *errs);
/* Connects and starts the watches; the job's targets follow the first
 * complete list. 0 or a DR_E* code with err. */
int kube_sd_start(scrape_job *job, kube_sd *sd, dr_error *err);
/* True (once) when the groups changed since the last call. */
bool kube_sd_take_changes(kube_sd *sd);
/* Calls fn for every group. */
void kube_sd_visit(const kube_sd *sd, void (*fn)(void *ctx, const target_group *g), void *ctx);
void kube_sd_stop(kube_sd *sd);
void kube_sd_free(kube_sd *sd);
/* The target group of one pod object (the pod role; tested on its own). */
int kube_sd_pod_group(const dr_jv *pod, target_group *g);
/* The target group of one node object (the node role). */
int kube_sd_node_group(const dr_jv *node, target_group *g);
/* The target group of one service object (the service role). */
int kube_sd_service_group(const dr_jv *svc, target_group *g);
/* The target group of one ingress object (the ingress role). */
int kube_sd_ingress_group(const dr_jv *ing, target_group *g);

#endif
