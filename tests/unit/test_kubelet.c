/* The kubelet input: /stats/summary as Prometheus text, checked against a
 * summary recorded from a real kubelet (values read from the JSON here,
 * not by the converter), and the configuration errors of the input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../../plugins/inputs/kubelet/summary.h"
#include "agent.h"
#include "config.h"
#include "expo.h"
#include "jsonp.h"
#include "metrics.h"
#include "test.h"

/* The value of the line that starts with `series` and a space, or NAN
 * when there is none. */
static double value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return NAN;
}

/* Lines that start with prefix. */
static size_t count_lines(const char *text, const char *prefix)
{
    size_t n = 0, k = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        n += strncmp(p, prefix, k) == 0;
    return n;
}

static int count_sample(void *ctx, const dr_expo_sample *s)
{
    (void)s;
    (*(size_t *)ctx)++;
    return 0;
}

/* Converts a body; the text (NUL-terminated) in out. */
static int convert(const char *json, size_t len, dr_buf *out, char *why, size_t whylen)
{
    dr_buf_reset(out);
    int rc = kubelet_summary_to_text(json, len, out, why, whylen);
    if (rc == 0)
        dr_buf_putc(out, '\0');
    return rc;
}

void test_kubelet_summary_recorded(void)
{
    size_t len;
    char *json = dt_read_file(dt_fixture("k8s-api/kubelet-stats-summary-k8s1.35.json"), &len);
    if (!CHECK(json))
        return;
    dr_buf out = {0};
    char why[256] = "";
    CHECK_INT(convert(json, len, &out, why, sizeof why), 0);
    const char *t = out.p;
    /* node: cpu.usageNanoCores 573081903, memory.workingSetBytes 917110784,
     * fs.usedBytes 106943070208, as recorded */
    CHECK(value_of(t, "k8s_node_cpu_usage{}") == 0.573081903);
    CHECK(value_of(t, "k8s_node_memory_working_set_bytes{}") == 917110784.0);
    CHECK(value_of(t, "k8s_node_filesystem_usage_bytes{}") == 106943070208.0);
    CHECK(value_of(t, "k8s_node_cpu_time_seconds_total{}") == 62.148052);
    /* a container: kube-controller-manager's cpu and rootfs */
    const char *kcm = "namespace=\"kube-system\",pod=\"kube-controller-manager-datagen-1-35\","
                      "uid=\"e9afcd8d3c942968802548f9a24d942a\"";
    char series[512];
    snprintf(series, sizeof series,
             "k8s_container_cpu_usage{%s,container=\"kube-controller-manager\"}", kcm);
    CHECK(value_of(t, series) == 0.006605223);
    snprintf(series, sizeof series,
             "k8s_container_filesystem_usage_bytes{%s,container=\"kube-controller-manager\"}", kcm);
    CHECK(value_of(t, series) == 86016.0);
    /* its pod's network, per interface and direction */
    snprintf(series, sizeof series,
             "k8s_pod_network_io_bytes_total{%s,interface=\"eth0\",direction=\"receive\"}", kcm);
    CHECK(value_of(t, series) == 772919385.0);
    snprintf(series, sizeof series,
             "k8s_pod_network_io_bytes_total{%s,interface=\"eth0\",direction=\"transmit\"}", kcm);
    CHECK(value_of(t, series) == 13842013.0);
    /* a volume */
    CHECK(value_of(t,
                   "k8s_volume_available_bytes{namespace=\"scraper\",pod=\"e2e-daemonset-kb65b\","
                   "uid=\"45b528af-fb82-4e96-8103-b9da1194dd36\",volume=\"storage\"}") > 0);
    snprintf(series, sizeof series, "%s",
             "k8s_volume_inodes_used{namespace=\"kube-system\",pod=\"kube-proxy-8k9zt\","
             "uid=\"90565722-42c8-4f10-a59b-c8fc6571e86d\",volume=\"kube-proxy\"}");
    CHECK(!isnan(value_of(t, series)));
    /* counters and gauges are typed */
    CHECK(strstr(t, "# TYPE k8s_pod_network_io_bytes_total counter\n") != NULL);
    CHECK(strstr(t, "# TYPE k8s_container_memory_rss_bytes gauge\n") != NULL);
    /* the whole text parses as exposition */
    size_t samples = 0;
    dr_expo_sink sink = {.ctx = &samples, .sample = count_sample};
    dr_error err = {{0}};
    CHECK_INT(dr_expo_parse(DR_EXPO_TEXT, out.p, out.len - 1, &sink, &err), 0);
    CHECK_INT(samples, count_lines(t, "k8s_"));
    CHECK(samples > 1000);
    dr_buf_free(&out);
    free(json);
}

/* Every container of the recorded summary has its working set and CPU
 * time, with the value the JSON has; a pod whose memory block has no
 * availableBytes has no k8s_pod_memory_available_bytes. */
void test_kubelet_summary_every_container(void)
{
    size_t len;
    char *json = dt_read_file(dt_fixture("k8s-api/kubelet-stats-summary-k8s1.35.json"), &len);
    if (!CHECK(json))
        return;
    dr_buf out = {0};
    char why[256] = "";
    CHECK_INT(convert(json, len, &out, why, sizeof why), 0);
    dr_json_doc *doc = dr_json_doc_new();
    const dr_jv *root = NULL;
    dr_error err = {{0}};
    CHECK_INT(dr_json_parse(doc, json, len, NULL, &root, &err), 0);
    size_t containers = 0, pods_with_available = 0;
    for (const dr_jv *p = dr_jv_get(root, "pods")->child; p; p = p->next) {
        const char *ns = dr_jv_str(dr_jv_path(p, "podRef", "namespace", NULL));
        const char *name = dr_jv_str(dr_jv_path(p, "podRef", "name", NULL));
        const char *uid = dr_jv_str(dr_jv_path(p, "podRef", "uid", NULL));
        int64_t avail;
        if (dr_jv_int(dr_jv_path(p, "memory", "availableBytes", NULL), &avail))
            pods_with_available++;
        for (const dr_jv *c = dr_jv_get(p, "containers")->child; c; c = c->next) {
            const char *cn = dr_jv_str(dr_jv_get(c, "name"));
            int64_t ws, ns_cpu;
            char series[600];
            if (dr_jv_int(dr_jv_path(c, "memory", "workingSetBytes", NULL), &ws)) {
                snprintf(series, sizeof series,
                         "k8s_container_memory_working_set_bytes{namespace=\"%s\",pod=\"%s\","
                         "uid=\"%s\",container=\"%s\"}",
                         ns, name, uid, cn);
                CHECK(value_of(out.p, series) == (double)ws);
            }
            if (dr_jv_int(dr_jv_path(c, "cpu", "usageCoreNanoSeconds", NULL), &ns_cpu)) {
                snprintf(series, sizeof series,
                         "k8s_container_cpu_time_seconds_total{namespace=\"%s\",pod=\"%s\","
                         "uid=\"%s\",container=\"%s\"}",
                         ns, name, uid, cn);
                CHECK(value_of(out.p, series) == (double)ns_cpu / 1e9);
            }
            containers++;
        }
    }
    CHECK_INT(count_lines(out.p, "k8s_container_memory_working_set_bytes{"), containers);
    CHECK_INT(count_lines(out.p, "k8s_pod_memory_available_bytes{"), pods_with_available);
    dr_json_doc_free(doc);
    dr_buf_free(&out);
    free(json);
}

void test_kubelet_summary_missing_fields(void)
{
    static const char json[] =
        "{\"node\":{\"nodeName\":\"n\",\"cpu\":{\"usageNanoCores\":2500000000}},"
        "\"pods\":[{\"podRef\":{\"name\":\"p\",\"namespace\":\"ns\",\"uid\":\"u\"},"
        "\"memory\":{\"usageBytes\":0},"
        "\"containers\":[{\"name\":\"c\"}],"
        "\"network\":{\"name\":\"eth0\",\"rxBytes\":7}}]}";
    dr_buf out = {0};
    char why[256] = "";
    CHECK_INT(convert(json, sizeof json - 1, &out, why, sizeof why), 0);
    CHECK(value_of(out.p, "k8s_node_cpu_usage{}") == 2.5);
    CHECK_INT(count_lines(out.p, "k8s_node_memory"), 0);
    CHECK_INT(count_lines(out.p, "k8s_node_cpu_time"), 0);
    /* a zero that is there is a zero */
    CHECK(value_of(out.p, "k8s_pod_memory_usage_bytes{namespace=\"ns\",pod=\"p\",uid=\"u\"}") == 0);
    CHECK_INT(count_lines(out.p, "k8s_pod_memory_working_set"), 0);
    CHECK_INT(count_lines(out.p, "k8s_container_"), 0);
    /* no interface list: the default interface; no txBytes: no transmit */
    CHECK(value_of(out.p, "k8s_pod_network_io_bytes_total{namespace=\"ns\",pod=\"p\",uid=\"u\","
                          "interface=\"eth0\",direction=\"receive\"}") == 7);
    CHECK_INT(count_lines(out.p, "k8s_pod_network_io_bytes_total{"), 1);
    CHECK_INT(count_lines(out.p, "# TYPE k8s_pod_memory_working_set"), 0);
    dr_buf_free(&out);
}

void test_kubelet_summary_bad_json(void)
{
    static const char *const bodies[] = {
        "{\"node\":{\"cpu\":{\"usageNanoCores\":1}",
        "<html>not json</html>",
        "[]",
        "{\"kind\":\"Status\"}",
        "{\"node\":[],\"pods\":[]}",
        "",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        dr_buf out = {0};
        char why[256] = "";
        CHECK_INT(convert(bodies[i], strlen(bodies[i]), &out, why, sizeof why), DR_EINVAL);
        if (!CHECK(strncmp(why, "stats summary: ", 15) == 0))
            fprintf(stderr, "  body %zu: why \"%s\"\n", i, why);
        dr_buf_free(&out);
    }
}

void test_kubelet_summary_escapes(void)
{
    static const char json[] = "{\"pods\":[{\"podRef\":{\"name\":\"a\\\"b\\\\c\\nd\",\"namespace\":"
                               "\"ns\"},\"cpu\":{\"usageNanoCores\":1}}]}";
    dr_buf out = {0};
    char why[256] = "";
    CHECK_INT(convert(json, sizeof json - 1, &out, why, sizeof why), 0);
    CHECK(value_of(out.p, "k8s_pod_cpu_usage{namespace=\"ns\",pod=\"a\\\"b\\\\c\\nd\"}") == 1e-9);
    size_t samples = 0;
    dr_expo_sink sink = {.ctx = &samples, .sample = count_sample};
    dr_error err = {{0}};
    CHECK_INT(dr_expo_parse(DR_EXPO_TEXT, out.p, out.len - 1, &sink, &err), 0);
    CHECK_INT(samples, 1);
    dr_buf_free(&out);
}

/* Makes an agent of one kubelet input with these options; true when the
 * configuration is accepted. The first error, if any, in first. */
static bool config_accepted(const char *options, char *first, size_t firstlen, const char *want,
                            bool *found)
{
    char pipeline[2048];
    snprintf(pipeline, sizeof pipeline,
             "inputs:\n  - {name: k, type: kubelet%s%s}\n"
             "outputs:\n  - {name: out, type: stdout, match: k}\n",
             options[0] ? ", " : "", options);
    const char *errors = dt_config_errors("node_name: n1", pipeline);
    size_t n = strcspn(errors, "\n");
    if (n)
        snprintf(first, firstlen, "%.*s", (int)n, errors);
    else
        snprintf(first, firstlen, "nothing");
    *found = want && strstr(errors, want) != NULL;
    return errors[0] == '\0';
}

/* True when the options are refused with an error holding `want`. */
static bool config_refused(const char *options, const char *want)
{
    char first[512];
    bool found;
    if (!config_accepted(options, first, sizeof first, want, &found) && found)
        return true;
    fprintf(stderr, "  {%s}: wanted \"%s\", got \"%s\"\n", options, want, first);
    return false;
}

void test_kubelet_config_errors(void)
{
    CHECK(config_refused("scrape_interval: 5s, scrape_timeout: 10s",
                         "scrape_timeout: must be at most scrape_interval"));
    CHECK(config_refused("metrics: false, cadvisor: false, resource: false, probes: false",
                         "every endpoint is switched off"));
    CHECK(config_refused("metric_relabel_configs: [{action: bogus}]",
                         "unknown relabel action \"bogus\""));
    CHECK(config_refused("metric_relabel_configs: {action: drop}",
                         "metric_relabel_configs: expected a list of rules"));
    CHECK(config_refused("port: 70000", "port"));
    CHECK(config_refused("cadvisor: maybe", "cadvisor"));
    CHECK(config_refused("scrape_interval: 0s", "scrape_interval"));
    CHECK(config_refused("tls: {}", "tls"));
    char first[512];
    bool found;
    CHECK(config_accepted("address: 10.0.0.1, insecure_skip_verify: true", first, sizeof first,
                          NULL, &found));
    CHECK(config_accepted("read_only_port: true, metric_relabel_configs: []", first, sizeof first,
                          NULL, &found));
}
