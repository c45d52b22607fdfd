/*
 * The coredns input: the cluster DNS's own metrics without a scrape config.
 *
 *   inputs:
 *     - { name: dns, type: coredns }
 *
 * It is prometheus_scrape with one job written for the user: the CoreDNS
 * pods found by kubernetes_sd_configs (role pod, kube-system,
 * k8s-app=kube-dns), their metrics port (9153), and the labels
 * kube-prometheus' CoreDNS ServiceMonitor gives, so that the CoreDNS
 * mixin's dashboards and alerts (job="kube-dns") work unchanged.
 *
 * Which agent scrapes which pod: scope node (the default) keeps the
 * discovery node-local, so each agent of a DaemonSet scrapes the CoreDNS
 * pods on its own node and every pod is scraped exactly once, by the agent
 * beside it, with no election and no cluster-wide watch; an agent on a
 * node without CoreDNS scrapes nothing. Scope cluster scrapes every CoreDNS
 * pod: for a single agent (a one-replica Deployment), never for a DaemonSet,
 * where every node would scrape every pod.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../prometheus_scrape/scrape.h"
#include "config.h"

typedef struct coredns_conf {
    int scope;
    char *namespace_, *selector, *job_name;
    int64_t port;
    int64_t scrape_interval_ms, scrape_timeout_ms, metadata_interval_ms;
    char *api_server, *kubeconfig_file, *bearer_token_file, *ca_file;
    bool insecure_skip_verify;
    const dr_cfg_node *metric_relabel_configs;
} coredns_conf;

static const char *const scope_names[] = {"node", "cluster", NULL};
enum { SCOPE_NODE, SCOPE_CLUSTER };

#define COPT(n, t, f, d, h)                                                                        \
    {                                                                                              \
        n, t, offsetof(coredns_conf, f), d, 0, {NULL}, 0, 0, h                                     \
    }

static const dr_option coredns_options[] = {
    {"scope",
     DR_OPT_ENUM,
     offsetof(coredns_conf, scope),
     "node",
     0,
     {.choices = scope_names},
     0,
     0,
     "node: scrape the CoreDNS pods on the agent's node (agent.node_name: NODE_NAME, else the "
     "host name), so that a DaemonSet "
     "scrapes each pod once, from its own node, with a watch of that node's pods only. "
     "cluster: every CoreDNS pod, for a single agent (a one-replica Deployment): in a "
     "DaemonSet every agent would scrape every pod."},
    COPT("namespace", DR_OPT_STRING, namespace_, "kube-system", "The namespace of the pods."),
    COPT("selector", DR_OPT_STRING, selector, "k8s-app=kube-dns",
         "The label selector of the pods (a Kubernetes label selector)."),
    {"port",
     DR_OPT_INT,
     offsetof(coredns_conf, port),
     "9153",
     0,
     {NULL},
     1,
     65535,
     "The container port of the metrics (the prometheus plugin's port); a pod must declare it "
     "among its container ports, as the standard CoreDNS manifests do."},
    COPT("job_name", DR_OPT_STRING, job_name, "kube-dns",
         "The job label, kube-dns as kube-prometheus names it (the CoreDNS mixin selects "
         "job=\"kube-dns\")."),
    {"scrape_interval",
     DR_OPT_DURATION,
     offsetof(coredns_conf, scrape_interval_ms),
     "15s",
     0,
     {NULL},
     1,
     86400000,
     "How often each pod is scraped."},
    {"scrape_timeout",
     DR_OPT_DURATION,
     offsetof(coredns_conf, scrape_timeout_ms),
     "10s",
     0,
     {NULL},
     1,
     86400000,
     "The scrape timeout; at most scrape_interval."},
    {"metadata_interval",
     DR_OPT_DURATION,
     offsetof(coredns_conf, metadata_interval_ms),
     "1m",
     0,
     {NULL},
     1,
     86400000,
     "How often the families' metadata (TYPE, HELP, UNIT) goes out with the samples."},
    COPT("api_server", DR_OPT_STRING, api_server, NULL,
         "The API server, https://host:port; unset with kubeconfig_file unset: the in-cluster "
         "address and service account."),
    COPT("kubeconfig_file", DR_OPT_STRING, kubeconfig_file, NULL,
         "A kubeconfig to reach the API server with (not with api_server)."),
    COPT("bearer_token_file", DR_OPT_STRING, bearer_token_file, NULL,
         "The API server's bearer token file (with api_server), re-read when it changes."),
    COPT("ca_file", DR_OPT_STRING, ca_file, NULL, "The API server's CA (with api_server)."),
    COPT("insecure_skip_verify", DR_OPT_BOOL, insecure_skip_verify, "false",
         "Do not verify the API server's certificate (with api_server)."),
    {"metric_relabel_configs",
     DR_OPT_NODE,
     offsetof(coredns_conf, metric_relabel_configs),
     NULL,
     0,
     {NULL},
     0,
     0,
     "Relabeling of the scraped series, as in a scrape config; none by default."},
    {0},
};

/* key: "value"\n, the value quoted for YAML; nothing when value is unset. */
static int put_key(dr_buf *b, const char *indent, const char *key, const char *value)
{
    if (!value || !value[0])
        return 0;
    int rc = dr_buf_printf(b, "%s%s: ", indent, key) < 0;
    rc |= scrape_yaml_quoted(b, value) != 0;
    rc |= dr_buf_putc(b, '\n') < 0;
    return rc ? DR_ENOMEM : 0;
}

/* The scrape config of the job: the pods by discovery, the metrics port
 * of the running ones, and the ServiceMonitor's target labels. */
static int write_job(dr_buf *b, const coredns_conf *c)
{
    int rc = put_key(b, "", "job_name", c->job_name);
    rc |= dr_buf_printf(b,
                        "scrape_interval: %lldms\n"
                        "scrape_timeout: %lldms\n"
                        "kubernetes_sd_configs:\n"
                        "  - role: pod\n"
                        "    node_local: %s\n"
                        "    namespaces:\n"
                        "      names: [",
                        (long long)c->scrape_interval_ms, (long long)c->scrape_timeout_ms,
                        c->scope == SCOPE_NODE ? "true" : "false") < 0;
    rc |= scrape_yaml_quoted(b, c->namespace_);
    rc |= dr_buf_puts(b, "]\n") < 0;
    if (c->selector && c->selector[0]) {
        rc |= dr_buf_puts(b, "    selectors:\n      - role: pod\n") < 0;
        rc |= put_key(b, "        ", "label", c->selector);
    }
    rc |= put_key(b, "    ", "api_server", c->api_server);
    rc |= put_key(b, "    ", "kubeconfig_file", c->kubeconfig_file);
    rc |= put_key(b, "    ", "bearer_token_file", c->bearer_token_file);
    if (c->ca_file || c->insecure_skip_verify) {
        rc |= dr_buf_puts(b, "    tls_config:\n") < 0;
        rc |= put_key(b, "      ", "ca_file", c->ca_file);
        if (c->insecure_skip_verify)
            rc |= dr_buf_puts(b, "      insecure_skip_verify: true\n") < 0;
    }
    rc |= dr_buf_printf(b,
                        "relabel_configs:\n"
                        "  - source_labels: [__meta_kubernetes_pod_container_port_number]\n"
                        "    regex: \"%lld\"\n"
                        "    action: keep\n"
                        "  - source_labels: [__meta_kubernetes_pod_phase]\n"
                        "    regex: Running\n"
                        "    action: keep\n"
                        "  - source_labels: [__meta_kubernetes_namespace]\n"
                        "    target_label: namespace\n"
                        "  - source_labels: [__meta_kubernetes_pod_name]\n"
                        "    target_label: pod\n"
                        "  - source_labels: [__meta_kubernetes_pod_container_name]\n"
                        "    target_label: container\n"
                        "  - source_labels: [__meta_kubernetes_pod_node_name]\n"
                        "    target_label: node\n"
                        "  - source_labels: [__meta_kubernetes_pod_container_port_name]\n"
                        "    target_label: endpoint\n",
                        (long long)c->port) < 0;
    rc |= dr_buf_putc(b, '\0') < 0; /* read as a C string */
    return rc ? DR_ENOMEM : 0;
}

static int coredns_init(dr_instance *inst, dr_error *err)
{
    coredns_conf *c = inst->conf;
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
    if (!c->namespace_ || !c->namespace_[0] || strchr(c->namespace_, '/')) {
        dr_error_set(err, "namespace: expected a namespace, not \"%s\"",
                     c->namespace_ ? c->namespace_ : "");
        return DR_EINVAL;
    }
    scrape_input *in = scrape_input_new(inst, 1, c->scrape_interval_ms, c->scrape_timeout_ms,
                                        c->metadata_interval_ms);
    if (!in)
        return DR_ENOMEM;
    dr_buf yaml = {0};
    dr_cfg_errors errs = {0};
    int nerr = -1;
    if (write_job(&yaml, c) == 0) {
        nerr = scrape_job_from_yaml(in, yaml.p, "coredns", &in->jobs[in->njobs++], &errs);
        if (nerr == 0)
            nerr = scrape_metric_relabel(&in->jobs[0], mr, NULL, NULL, &errs);
    }
    dr_buf_free(&yaml);
    if (nerr != 0) {
        if (errs.n)
            dr_error_set(err, "%s", errs.msg[0]);
        else
            dr_error_set(err, "out of memory");
        dr_cfg_errors_free(&errs);
        scrape_input_free(in);
        return nerr < 0 ? DR_ENOMEM : DR_EINVAL;
    }
    inst->state = in;
    return 0;
}

const dr_plugin dr_plugin_coredns = {
    .abi = DR_PLUGIN_ABI,
    .name = "coredns",
    .kind = DR_INPUT,
    .description =
        "Scrapes the cluster DNS (CoreDNS) without a scrape config: the pods of `namespace` "
        "matching `selector`, found through the Kubernetes API (kubernetes_sd_configs, role "
        "pod), running, at their container port `port`. By default (scope node) each agent "
        "scrapes only the CoreDNS pods on its own node, so a DaemonSet scrapes every pod "
        "exactly once and watches only its node's pods; scope cluster is for a single agent. "
        "The scrapes are those of prometheus_scrape (up, scrape_duration_seconds and the other "
        "report series, staleness markers, its self-metrics).\n\n"
        "Every series gets the labels kube-prometheus' CoreDNS ServiceMonitor gives, so the "
        "CoreDNS mixin's dashboards and alerts work unchanged: job (`job_name`, kube-dns), "
        "instance (podIP:port), namespace, pod, container, node and endpoint (the port's name, "
        "metrics in the standard manifests).\n\n"
        "The agent's service account needs get, list and watch on pods in `namespace`. To see "
        "the DNS path of every node, with or without CoreDNS on it, use the dns_probe input "
        "beside this one.",
    .options = coredns_options,
    .conf_size = sizeof(coredns_conf),
    .init = coredns_init,
    .start = scrape_plugin_start,
    .stop = scrape_plugin_stop,
    .destroy = scrape_plugin_destroy,
    .data = DR_DATA_METRICS,
};
