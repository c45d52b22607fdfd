/*
 * The kubelet input: this node's kubelet and cAdvisor metrics without a
 * scrape config.
 *
 *   inputs:
 *     - { name: kubelet, type: kubelet }
 *
 * It is prometheus_scrape with the jobs written for the user: one job per
 * kubelet endpoint (/metrics, /metrics/cadvisor, /metrics/resource,
 * /metrics/probes, /stats/summary), each with the labels kube-prometheus'
 * kubelet ServiceMonitor gives (job="kubelet", metrics_path, instance,
 * node), the service-account credentials, and metric_relabel_configs that
 * drop what most installations drop. The jobs are made by writing each as
 * a scrape_configs entry and reading it with job_parse, so that every rule
 * of a scrape config (defaults, TLS and token handling, limits) holds here
 * exactly as there; /stats/summary is JSON, and its job turns each body
 * into Prometheus text first (summary.c).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../prometheus_scrape/scrape.h"
#include "config.h"
#include "summary.h"

typedef struct kubelet_conf {
    char *address;
    int64_t port;
    bool read_only_port;
    char *bearer_token_file, *ca_file;
    bool insecure_skip_verify;
    int64_t scrape_interval_ms, scrape_timeout_ms, metadata_interval_ms;
    bool metrics, cadvisor, resource, probes, stats_summary;
    bool honor_timestamps;
    bool default_metric_relabel;
    const dr_cfg_node *metric_relabel_configs;
} kubelet_conf;

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* What metric_relabel_configs is when the user gives none: the series
 * kube-prometheus' kubelet ServiceMonitor drops, as rules of the same form
 * (YAML, read with the user's rules' parser). */
static const char default_relabel_yaml[] =
    "rules:\n"
    "  # cAdvisor families of a series per container, CPU and state that the\n"
    "  # kubernetes-mixin dashboards and alerts never read\n"
    "  - source_labels: [__name__]\n"
    "    regex: container_(tasks_state|memory_failures_total|blkio_device_usage_total|"
    "network_tcp_usage_total|network_udp_usage_total|cpu_load_average_10s)\n"
    "    action: drop\n"
    "  # per-container filesystem and spec series of the cgroup hierarchy itself\n"
    "  # (no container, no image)\n"
    "  - source_labels: [__name__, container, image]\n"
    "    regex: (container_fs_.*|container_spec_.*|container_file_descriptors|"
    "container_sockets|container_threads_max|container_threads|container_start_time_seconds|"
    "container_last_seen);;\n"
    "    action: drop\n"
    "  # the extra buckets of the kubelet's operation histograms\n"
    "  - source_labels: [__name__, le]\n"
    "    regex: (csi_operations|storage_operation_duration)_seconds_bucket;"
    "(0.25|2.5|15|25|120|600)(\\.0)?\n"
    "    action: drop\n"
    "  - source_labels: [__name__, le]\n"
    "    regex: (apiserver_request|etcd_request|rest_client_request|"
    "kubelet_runtime_operations|kubelet_http_requests)_duration_seconds_bucket;"
    "(0.15|0.2|0.3|0.35|0.4|0.45|0.6|0.7|0.8|0.9|1.25|1.5|1.75|2|3|3.5|4|4.5|6|7|8|9|15|25|"
    "40|50)(\\.0)?\n"
    "    action: drop\n";

static const dr_option kubelet_options[] = {
    {"address",
     DR_OPT_STRING,
     offsetof(kubelet_conf, address),
     NULL,
     0,
     {NULL},
     0,
     0,
     "The kubelet's host or IP address. Unset: the NODE_IP environment variable (a DaemonSet "
     "sets it from status.hostIP), else the agent's node_name (itself NODE_NAME, else the host "
     "name), resolved when the scrapes connect; a config error when none of them is set."},
    {"port",
     DR_OPT_INT,
     offsetof(kubelet_conf, port),
     "0",
     0,
     {NULL},
     0,
     65535,
     "The kubelet's port; 0: 10250 (HTTPS), or 10255 with read_only_port."},
    {"read_only_port",
     DR_OPT_BOOL,
     offsetof(kubelet_conf, read_only_port),
     "false",
     0,
     {NULL},
     0,
     0,
     "Scrape the kubelet's read-only port over plain HTTP, without credentials (where a "
     "cluster still has it)."},
    {"bearer_token_file",
     DR_OPT_STRING,
     offsetof(kubelet_conf, bearer_token_file),
     SA_DIR "/token",
     0,
     {NULL},
     0,
     0,
     "The token sent to the kubelet (Authorization: Bearer), read again whenever the file "
     "changes (projected service-account tokens rotate); \"\": none. Not used with "
     "read_only_port."},
    {"ca_file",
     DR_OPT_STRING,
     offsetof(kubelet_conf, ca_file),
     SA_DIR "/ca.crt",
     0,
     {NULL},
     0,
     0,
     "The CA bundle the kubelet's serving certificate is verified with; \"\": the system's."},
    {"insecure_skip_verify",
     DR_OPT_BOOL,
     offsetof(kubelet_conf, insecure_skip_verify),
     "false",
     0,
     {NULL},
     0,
     0,
     "Do not verify the kubelet's certificate (kubelets with self-signed serving certificates, "
     "the default of many clusters)."},
    {"scrape_interval",
     DR_OPT_DURATION,
     offsetof(kubelet_conf, scrape_interval_ms),
     "30s",
     0,
     {NULL},
     1,
     86400000,
     "How often each endpoint is scraped."},
    {"scrape_timeout",
     DR_OPT_DURATION,
     offsetof(kubelet_conf, scrape_timeout_ms),
     "10s",
     0,
     {NULL},
     1,
     86400000,
     "How long a scrape may take (at most scrape_interval)."},
    {"metadata_interval",
     DR_OPT_DURATION,
     offsetof(kubelet_conf, metadata_interval_ms),
     "1m",
     0,
     {NULL},
     1,
     86400000,
     "How often the families' metadata (TYPE, HELP) goes out with the samples."},
    {"metrics",
     DR_OPT_BOOL,
     offsetof(kubelet_conf, metrics),
     "true",
     0,
     {NULL},
     0,
     0,
     "Scrape /metrics (the kubelet's own)."},
    {"cadvisor",
     DR_OPT_BOOL,
     offsetof(kubelet_conf, cadvisor),
     "true",
     0,
     {NULL},
     0,
     0,
     "Scrape /metrics/cadvisor (containers)."},
    {"resource",
     DR_OPT_BOOL,
     offsetof(kubelet_conf, resource),
     "true",
     0,
     {NULL},
     0,
     0,
     "Scrape /metrics/resource (CPU and memory of node, pods and containers)."},
    {"probes",
     DR_OPT_BOOL,
     offsetof(kubelet_conf, probes),
     "true",
     0,
     {NULL},
     0,
     0,
     "Scrape /metrics/probes (liveness, readiness and startup probe results)."},
    {"stats_summary",
     DR_OPT_BOOL,
     offsetof(kubelet_conf, stats_summary),
     "false",
     0,
     {NULL},
     0,
     0,
     "Scrape /stats/summary and turn it into the k8s_* series of the table above."},
    {"honor_timestamps",
     DR_OPT_BOOL,
     offsetof(kubelet_conf, honor_timestamps),
     "false",
     0,
     {NULL},
     0,
     0,
     "Keep the timestamps the kubelet puts on samples (cAdvisor's are those of its last "
     "housekeeping, and kube-prometheus ignores them); false: every sample gets the scrape's "
     "time."},
    {"default_metric_relabel",
     DR_OPT_BOOL,
     offsetof(kubelet_conf, default_metric_relabel),
     "true",
     0,
     {NULL},
     0,
     0,
     "Apply the default metric_relabel_configs (above) when metric_relabel_configs is not set; "
     "false: keep every series."},
    {"metric_relabel_configs",
     DR_OPT_NODE,
     offsetof(kubelet_conf, metric_relabel_configs),
     NULL,
     0,
     {NULL},
     0,
     0,
     "Relabeling of the scraped series, as in a scrape config; when set, it replaces the "
     "defaults (an empty list keeps every series)."},
    {0},
};

/* The endpoints, in the order of their options. */
typedef struct kubelet_endpoint {
    const char *path;
    size_t conf_offset; /* of its bool in kubelet_conf */
    scrape_convert_fn convert;
} kubelet_endpoint;

static const kubelet_endpoint endpoints[] = {
    {"/metrics", offsetof(kubelet_conf, metrics), NULL},
    {"/metrics/cadvisor", offsetof(kubelet_conf, cadvisor), NULL},
    {"/metrics/resource", offsetof(kubelet_conf, resource), NULL},
    {"/metrics/probes", offsetof(kubelet_conf, probes), NULL},
    {"/stats/summary", offsetof(kubelet_conf, stats_summary), kubelet_summary_to_text},
};

#define NENDPOINTS (sizeof endpoints / sizeof endpoints[0])

/* ---- writing the jobs ------------------------------------------------------------- */

/* "host:port", with an IPv6 address in brackets. */
static int put_host_port(dr_buf *b, const char *host, int64_t port)
{
    bool v6 = strchr(host, ':') && host[0] != '[';
    return dr_buf_puts(b, v6 ? "\"[" : "\"") | scrape_yaml_escaped(b, host) |
           dr_buf_printf(b, "%s:%lld\"", v6 ? "]" : "", (long long)port);
}

/* The scrape config of one endpoint. */
static int write_job(dr_buf *b, const kubelet_conf *c, const char *host, int64_t port,
                     const char *node, const kubelet_endpoint *ep)
{
    bool https = !c->read_only_port;
    int rc =
        dr_buf_printf(b,
                      "job_name: kubelet\n"
                      "metrics_path: %s\n"
                      "scheme: %s\n"
                      "honor_labels: true\n"
                      "honor_timestamps: %s\n"
                      "scrape_interval: %lldms\n"
                      "scrape_timeout: %lldms\n",
                      ep->path, https ? "https" : "http", c->honor_timestamps ? "true" : "false",
                      (long long)c->scrape_interval_ms, (long long)c->scrape_timeout_ms);
    rc |= dr_buf_puts(b, "static_configs:\n  - targets: [");
    rc |= put_host_port(b, host, port);
    rc |=
        dr_buf_printf(b, "]\n    labels: {metrics_path: \"%s\", endpoint: \"%s\", node: ", ep->path,
                      https ? "https-metrics" : "http-metrics");
    rc |= scrape_yaml_quoted(b, node);
    rc |= dr_buf_puts(b, "}\n");
    if (https && c->bearer_token_file && c->bearer_token_file[0]) {
        rc |= dr_buf_puts(b, "bearer_token_file: ");
        rc |= scrape_yaml_quoted(b, c->bearer_token_file);
        rc |= dr_buf_putc(b, '\n');
    }
    if (https) {
        rc |= dr_buf_printf(b, "tls_config:\n  insecure_skip_verify: %s\n",
                            c->insecure_skip_verify ? "true" : "false");
        if (c->ca_file && c->ca_file[0] && !c->insecure_skip_verify) {
            rc |= dr_buf_puts(b, "  ca_file: ");
            rc |= scrape_yaml_quoted(b, c->ca_file);
            rc |= dr_buf_putc(b, '\n');
        }
    }
    rc |= dr_buf_putc(b, '\0'); /* read as a C string */
    return rc ? DR_ENOMEM : 0;
}

/* The kubelet's host: the option, else NODE_IP, else the node's name. */
static const char *kubelet_host(const kubelet_conf *c, const dr_instance *inst)
{
    if (c->address && c->address[0])
        return c->address;
    const char *ip = getenv("NODE_IP");
    if (ip && ip[0])
        return ip;
    const char *node = inst->agent ? dr_agent_node_name(inst->agent) : NULL;
    return node && node[0] ? node : NULL;
}

/* The job's metric relabeling: the user's rules, else the defaults. */
static int relabel_rules(const kubelet_conf *c, scrape_job *job, dr_cfg_errors *errs)
{
    return scrape_metric_relabel(job, c->metric_relabel_configs,
                                 c->default_metric_relabel ? default_relabel_yaml : NULL,
                                 "kubelet default metric_relabel_configs", errs);
}

/* Makes the job of every endpoint switched on. */
static int make_jobs(scrape_input *in, const kubelet_conf *c, const char *host, const char *node,
                     dr_cfg_errors *errs)
{
    int64_t port = c->port ? c->port : (c->read_only_port ? 10255 : 10250);
    int nerr = 0;
    dr_buf yaml = {0};
    for (size_t i = 0; i < NENDPOINTS && !nerr; i++) {
        const kubelet_endpoint *ep = &endpoints[i];
        if (!*(const bool *)((const char *)c + ep->conf_offset))
            continue;
        dr_buf_reset(&yaml);
        if (write_job(&yaml, c, host, port, node, ep) != 0) {
            dr_buf_free(&yaml);
            return -1;
        }
        scrape_job *job = &in->jobs[in->njobs++];
        char path[64];
        snprintf(path, sizeof path, "kubelet%s", ep->path);
        nerr += scrape_job_from_yaml(in, yaml.p, path, job, errs);
        if (!nerr)
            nerr += relabel_rules(c, job, errs);
        job->convert = ep->convert;
    }
    dr_buf_free(&yaml);
    return nerr;
}

/* ---- the plugin ------------------------------------------------------------------- */

static int kubelet_init(dr_instance *inst, dr_error *err)
{
    kubelet_conf *c = inst->conf;
    if (c->scrape_timeout_ms > c->scrape_interval_ms) {
        dr_error_set(err, "scrape_timeout: must be at most scrape_interval");
        return DR_EINVAL;
    }
    const dr_cfg_node *mr = c->metric_relabel_configs;
    if (mr && mr->type != DR_CFG_SEQ) {
        dr_error_set(err, "%s:%d:%d: metric_relabel_configs: expected a list of rules", mr->file,
                     mr->line, mr->col);
        return DR_EINVAL;
    }
    const char *host = kubelet_host(c, inst);
    if (!host) {
        dr_error_set(err, "address: not set, and neither the NODE_IP environment variable nor "
                          "agent.node_name says where this node's kubelet is");
        return DR_EINVAL;
    }
    const char *node = inst->agent ? dr_agent_node_name(inst->agent) : NULL;
    if (!node || !node[0])
        node = host;
    scrape_input *in = scrape_input_new(inst, NENDPOINTS, c->scrape_interval_ms,
                                        c->scrape_timeout_ms, c->metadata_interval_ms);
    if (!in)
        return DR_ENOMEM;
    dr_cfg_errors errs = {0};
    int nerr = make_jobs(in, c, host, node, &errs);
    if (nerr != 0 || in->njobs == 0) {
        if (nerr < 0)
            dr_error_set(err, "out of memory");
        else if (errs.n)
            dr_error_set(err, "%s", errs.msg[0]);
        else
            dr_error_set(err, "every endpoint is switched off (metrics, cadvisor, resource, "
                              "probes, stats_summary)");
        dr_cfg_errors_free(&errs);
        scrape_input_free(in);
        return nerr < 0 ? DR_ENOMEM : DR_EINVAL;
    }
    inst->state = in;
    return 0;
}

const dr_plugin dr_plugin_kubelet = {
    .abi = DR_PLUGIN_ABI,
    .name = "kubelet",
    .kind = DR_INPUT,
    .description =
        "Scrapes this node's kubelet without a scrape config: /metrics, /metrics/cadvisor, "
        "/metrics/resource and /metrics/probes (each can be switched off), and /stats/summary "
        "turned into Prometheus series (switched on with stats_summary). HTTPS on port 10250 "
        "with the service-account token (re-read when it changes) and CA, or the read-only "
        "port 10255 over HTTP. The scrapes are those of prometheus_scrape: one job per "
        "endpoint, with up, scrape_duration_seconds and the other report series, staleness "
        "markers, and the self-metrics of prometheus_scrape (a body that cannot be read, "
        "/stats/summary JSON that does not parse included, counts in "
        "drover_scrape_failures_total{reason} and makes up 0).\n\n"
        "Every series gets the labels kube-prometheus' kubelet ServiceMonitor gives: "
        "job=\"kubelet\", metrics_path (\"/metrics/cadvisor\", ...), instance (address:port), "
        "node (the agent's node_name, else the address) and endpoint (\"https-metrics\", or "
        "\"http-metrics\" on the read-only port); the kubelet's own labels (namespace, pod, "
        "container) are kept as they are (honor_labels).\n\n"
        "Default metric_relabel_configs (when metric_relabel_configs is unset and "
        "default_metric_relabel is true), dropping what the kubernetes-mixin dashboards and "
        "alerts never read:\n\n"
        "| source_labels | regex | action |\n"
        "|---|---|---|\n"
        "| `__name__` | `container_(tasks_state\\|memory_failures_total\\|blkio_device_usage_total"
        "\\|network_tcp_usage_total\\|network_udp_usage_total\\|cpu_load_average_10s)` | drop |\n"
        "| `__name__, container, image` | `(container_fs_.*\\|container_spec_.*\\|"
        "container_file_descriptors\\|container_sockets\\|container_threads_max\\|"
        "container_threads\\|container_start_time_seconds\\|container_last_seen);;` | drop |\n"
        "| `__name__, le` | `(csi_operations\\|storage_operation_duration)_seconds_bucket;"
        "(0.25\\|2.5\\|15\\|25\\|120\\|600)(\\.0)?` | drop |\n"
        "| `__name__, le` | `(apiserver_request\\|etcd_request\\|rest_client_request\\|"
        "kubelet_runtime_operations\\|kubelet_http_requests)_duration_seconds_bucket;"
        "(0.15\\|0.2\\|0.3\\|0.35\\|0.4\\|0.45\\|0.6\\|0.7\\|0.8\\|0.9\\|1.25\\|1.5\\|1.75\\|2"
        "\\|3\\|3.5\\|4\\|4.5\\|6\\|7\\|8\\|9\\|15\\|25\\|40\\|50)(\\.0)?` | drop |\n\n"
        "/stats/summary series (the OpenTelemetry kubeletstats receiver's names in Prometheus "
        "form, k8s_container_* for containers). A field the kubelet does not report makes no "
        "series. Labels: node-level series none of their own; pod-level namespace, pod, uid; "
        "container-level also container; volume-level also volume and persistentvolumeclaim "
        "(when the volume has a claim); network series also interface and direction "
        "(receive, transmit).\n\n"
        "| series | type | unit | levels | summary field |\n"
        "|---|---|---|---|---|\n"
        "| `k8s_{node,pod,container}_cpu_usage` | gauge | cores | node, pod, container | "
        "cpu.usageNanoCores / 1e9 |\n"
        "| `k8s_{node,pod,container}_cpu_time_seconds_total` | counter | seconds | node, pod, "
        "container | cpu.usageCoreNanoSeconds / 1e9 |\n"
        "| `k8s_{node,pod,container}_memory_available_bytes` | gauge | bytes | node, pod, "
        "container | memory.availableBytes |\n"
        "| `k8s_{node,pod,container}_memory_usage_bytes` | gauge | bytes | node, pod, container "
        "| memory.usageBytes |\n"
        "| `k8s_{node,pod,container}_memory_working_set_bytes` | gauge | bytes | node, pod, "
        "container | memory.workingSetBytes |\n"
        "| `k8s_{node,pod,container}_memory_rss_bytes` | gauge | bytes | node, pod, container | "
        "memory.rssBytes |\n"
        "| `k8s_{node,pod,container}_memory_page_faults` | gauge | faults | node, pod, container "
        "| memory.pageFaults |\n"
        "| `k8s_{node,pod,container}_memory_major_page_faults` | gauge | faults | node, pod, "
        "container | memory.majorPageFaults |\n"
        "| `k8s_{node,pod,container}_filesystem_available_bytes` | gauge | bytes | node, pod, "
        "container | fs (node), ephemeral-storage (pod), rootfs (container) .availableBytes |\n"
        "| `k8s_{node,pod,container}_filesystem_capacity_bytes` | gauge | bytes | node, pod, "
        "container | the same .capacityBytes |\n"
        "| `k8s_{node,pod,container}_filesystem_usage_bytes` | gauge | bytes | node, pod, "
        "container | the same .usedBytes |\n"
        "| `k8s_{node,pod}_network_io_bytes_total` | counter | bytes | node, pod | "
        "network.interfaces[].rxBytes (direction=receive), .txBytes (direction=transmit); the "
        "default interface when there is no list |\n"
        "| `k8s_{node,pod}_network_errors_total` | counter | errors | node, pod | "
        "network.interfaces[].rxErrors, .txErrors |\n"
        "| `k8s_volume_available_bytes` | gauge | bytes | volume | pods[].volume[].availableBytes "
        "|\n"
        "| `k8s_volume_capacity_bytes` | gauge | bytes | volume | .capacityBytes |\n"
        "| `k8s_volume_inodes` | gauge | inodes | volume | .inodes |\n"
        "| `k8s_volume_inodes_free` | gauge | inodes | volume | .inodesFree |\n"
        "| `k8s_volume_inodes_used` | gauge | inodes | volume | .inodesUsed |",
    .options = kubelet_options,
    .conf_size = sizeof(kubelet_conf),
    .init = kubelet_init,
    .start = scrape_plugin_start,
    .stop = scrape_plugin_stop,
    .destroy = scrape_plugin_destroy,
    .data = DR_DATA_METRICS,
};
