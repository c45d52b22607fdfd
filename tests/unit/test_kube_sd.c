/* kubernetes_sd_configs: the pod role's targets from a pod list recorded
 * from a real API server, and the configuration rules Prometheus applies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/inputs/prometheus_scrape/kube_sd_int.h"
#include "config.h"
#include "jsonp.h"
#include "test.h"

static const dr_jv *pod_named(const dr_jv *items, const char *name)
{
    for (const dr_jv *p = items ? items->child : NULL; p; p = p->next)
        if (strcmp(dr_jv_str_or(dr_jv_path(p, "metadata", "name", NULL), ""), name) == 0)
            return p;
    return NULL;
}

/* A label of target i: its own, else its group's. */
static const char *label_of(const target_group *g, size_t i, const char *name)
{
    const dr_label *l = g->per_target ? dr_labels_gets(&g->per_target[i], name) : NULL;
    if (!l)
        l = dr_labels_gets(&g->labels, name);
    static char buf[512];
    if (!l)
        return NULL;
    snprintf(buf, sizeof buf, "%.*s", (int)l->value_len, l->value);
    return buf;
}

/* How many targets the pod role makes of a pod, counted from the JSON:
 * each container (and init container) one per port, or one without. */
static size_t expected_targets(const dr_jv *pod)
{
    const char *ip = dr_jv_str(dr_jv_path(pod, "status", "podIP", NULL));
    if (!ip || !*ip)
        return 0;
    size_t n = 0;
    const char *lists[2] = {"containers", "initContainers"};
    for (int k = 0; k < 2; k++) {
        const dr_jv *cs = dr_jv_path(pod, "spec", lists[k], NULL);
        for (const dr_jv *c = cs ? cs->child : NULL; c; c = c->next) {
            const dr_jv *ports = dr_jv_get(c, "ports");
            n += ports && ports->len ? ports->len : 1;
        }
    }
    return n;
}

/* A recorded list (../shared/fixtures/k8s-api) parsed: its items, or NULL
 * (the test fails). The text and the doc are the caller's to free. */
static const dr_jv *load_items(const char *fixture, char **text, dr_json_doc **doc)
{
    size_t len;
    *text = dt_read_file(dt_fixture(fixture), &len);
    *doc = dr_json_doc_new();
    CHECK(*text != NULL && *doc != NULL);
    if (!*text || !*doc)
        return NULL;
    const dr_jv *root = NULL;
    dr_error err = {{0}};
    CHECK_INT(dr_json_parse(*doc, *text, len, NULL, &root, &err), 0);
    return dr_jv_get(root, "items");
}

void test_kube_sd_pod_targets(void)
{
    char *text;
    dr_json_doc *doc;
    const dr_jv *items = load_items("k8s-api/podlist-apiserver-k8s1.35.json", &text, &doc);
    if (!items) {
        free(text);
        dr_json_doc_free(doc);
        return;
    }

    /* every pod: the count the JSON implies; a pod without an IP: none */
    size_t pods = 0, targets = 0;
    for (const dr_jv *p = items ? items->child : NULL; p; p = p->next) {
        target_group g;
        CHECK_INT(kube_sd_pod_group(p, &g), 0);
        CHECK_INT(g.targets.n, expected_targets(p));
        for (size_t i = 0; i < g.targets.n; i++) {
            CHECK(label_of(&g, i, "__meta_kubernetes_pod_container_name") != NULL);
            CHECK(label_of(&g, i, "__meta_kubernetes_pod_container_init") != NULL);
        }
        pods++;
        targets += g.targets.n;
        group_clear(&g);
    }
    CHECK_INT(pods, 25);
    CHECK(targets > 25);

    /* CoreDNS: five ports, five targets, with what Prometheus labels them */
    target_group g;
    CHECK_INT(kube_sd_pod_group(pod_named(items, "coredns-7d764666f9-qdcxt"), &g), 0);
    CHECK_INT(g.targets.n, 5);
    CHECK_STR(g.source, "pod/kube-system/coredns-7d764666f9-qdcxt");
    CHECK_STR(g.targets.v[0], "10.244.0.2:53");
    CHECK_STR(g.targets.v[2], "10.244.0.2:9153");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_pod_container_port_protocol"), "UDP");
    CHECK_STR(label_of(&g, 1, "__meta_kubernetes_pod_container_port_name"), "dns-tcp");
    CHECK_STR(label_of(&g, 2, "__meta_kubernetes_pod_container_port_number"), "9153");
    CHECK_STR(label_of(&g, 2, "__meta_kubernetes_pod_container_image"),
              "registry.k8s.io/coredns/coredns:v1.13.1");
    CHECK_STR(label_of(&g, 2, "__meta_kubernetes_pod_container_id"),
              "containerd://facedc3f02c7efea0daff3590c408c2fb5820f875b93cb4c757df0d10d73786f");
    CHECK_STR(label_of(&g, 2, "__meta_kubernetes_pod_container_init"), "false");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_namespace"), "kube-system");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_pod_label_k8s_app"), "kube-dns");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_pod_labelpresent_pod_template_hash"), "true");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_pod_controller_kind"), "ReplicaSet");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_pod_controller_name"), "coredns-7d764666f9");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_pod_ready"), "true");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_pod_phase"), "Running");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_pod_host_ip"), "192.168.67.2");
    group_clear(&g);

    /* a container without ports: one target at the pod IP */
    CHECK_INT(kube_sd_pod_group(pod_named(items, "kube-proxy-8k9zt"), &g), 0);
    CHECK_INT(g.targets.n, 1);
    CHECK_STR(g.targets.v[0], "192.168.67.2");
    CHECK(label_of(&g, 0, "__meta_kubernetes_pod_container_port_number") == NULL);
    group_clear(&g);

    /* unscheduled: no IP, no targets */
    CHECK_INT(kube_sd_pod_group(pod_named(items, "e2e-container-pending"), &g), 0);
    CHECK_INT(g.targets.n, 0);
    group_clear(&g);

    dr_json_doc_free(doc);
    free(text);
}

void test_kube_sd_label_names(void)
{
    /* keys sanitized as Prometheus does (one '_' per character), IPv6
     * addresses bracketed, the controller only when marked so */
    const char *pod =
        "{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"uid\":\"u\","
        "\"labels\":{\"app.kubernetes.io/name\":\"x\",\"caf\xc3\xa9\":\"y\"},"
        "\"annotations\":{\"a-b\":\"\"},"
        "\"ownerReferences\":[{\"kind\":\"Node\",\"name\":\"n1\"}]},"
        "\"spec\":{\"containers\":[{\"name\":\"c\",\"ports\":[{\"containerPort\":9100}]}]},"
        "\"status\":{\"podIP\":\"fd00::5\"}}";
    dr_json_doc *doc = dr_json_doc_new();
    const dr_jv *root = NULL;
    dr_error err = {{0}};
    CHECK_INT(dr_json_parse(doc, pod, strlen(pod), NULL, &root, &err), 0);
    target_group g;
    CHECK_INT(kube_sd_pod_group(root, &g), 0);
    CHECK_INT(g.targets.n, 1);
    CHECK_STR(g.targets.v[0], "[fd00::5]:9100");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_pod_label_app_kubernetes_io_name"), "x");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_pod_label_caf_"), "y");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_pod_annotationpresent_a_b"), "true");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_pod_ready"), "unknown");
    CHECK(label_of(&g, 0, "__meta_kubernetes_pod_controller_kind") == NULL);
    group_clear(&g);
    dr_json_doc_free(doc);
}

/* Parses one kubernetes_sd_configs entry; the first error, or "". */
static const char *sd_error(const char *yaml)
{
    static char msg[600];
    dr_cfg_errors e = {0};
    dr_cfg_doc *doc = dr_cfg_load_string("t.yaml", yaml, &e);
    CHECK_INT(e.n, 0);
    kube_sd sd;
    kube_sd_parse(dr_cfg_root(doc), "sd", &sd, &e);
    snprintf(msg, sizeof msg, "%s", e.n ? e.msg[0] : "");
    kube_sd_free(&sd);
    dr_cfg_errors_free(&e);
    dr_cfg_doc_free(doc);
    return msg;
}

static void check_error(const char *yaml, const char *want)
{
    const char *got = sd_error(yaml);
    if (!strstr(got, want)) {
        fprintf(stderr, "  for %s\n  want an error with \"%s\", got \"%s\"\n", yaml, want, got);
        CHECK(!"the expected error");
    }
}

void test_kube_sd_config_rules(void)
{
    CHECK_STR(sd_error("role: pod\n"), "");
    CHECK_STR(
        sd_error("role: pod\nnamespaces: {own_namespace: true, names: [a, b]}\n"
                 "selectors: [{role: pod, label: \"app=x\", field: \"status.phase=Running\"}]\n"
                 "node_local: false\n"),
        "");
    CHECK_STR(sd_error("role: pod\napi_server: https://127.0.0.1:6443\n"
                       "bearer_token_file: /t\ntls_config: {ca_file: /ca}\n"),
              "");
    check_error("api_server: https://x\n", "sd.role: missing required key");
    check_error("role: pods\n", "sd.role: \"pods\" is not one of: pod, node, service");
    CHECK_STR(sd_error("role: endpointslice\nselectors: [{role: pod, field: \"a=b\"}, "
                       "{role: service, label: app=x}, {role: endpointslice, label: c=d}]\n"),
              "");
    CHECK_STR(sd_error("role: ingress\nselectors: [{role: ingress, label: app=x}]\n"), "");
    check_error("role: endpoints\nselectors: [{role: endpointslice}]\n",
                "endpoints role supports only pod, service, endpoints selectors");
    check_error("role: endpointslice\nselectors: [{role: node, label: a=b}]\n",
                "endpointslice role supports only pod, service, endpointslice selectors");
    CHECK_STR(sd_error("role: service\nselectors: [{role: service, label: app=x}]\n"), "");
    check_error("role: service\nselectors: [{role: pod}]\n",
                "service role supports only service selectors");
    check_error("role: pod\napi_server: https://x\nkubeconfig_file: /k\n",
                "cannot use 'kubeconfig_file' and 'api_server' simultaneously");
    check_error("role: pod\nkubeconfig_file: /k\nbearer_token_file: /t\n",
                "cannot use a custom HTTP client configuration together with 'kubeconfig_file'");
    check_error("role: pod\ntls_config: {insecure_skip_verify: true}\n",
                "please provide the 'api_server' URL explicitly");
    check_error("role: pod\napi_server: https://x\nnamespaces: {own_namespace: true}\n",
                "cannot use 'api_server' and 'namespaces.own_namespace' simultaneously");
    check_error("role: pod\nselectors: [{role: pod}, {role: pod}]\n",
                "duplicated selector role: pod");
    check_error("role: pod\nselectors: [{role: service}]\n",
                "pod role supports only pod, node selectors");
    CHECK_STR(sd_error("role: pod\nselectors: [{role: node, label: a=b}]\n"
                       "attach_metadata: {node: true, namespace: true}\n"),
              "");
    CHECK_STR(sd_error("role: node\nselectors: [{role: node, label: \"pool=gpu\"}]\n"), "");
    check_error("role: node\nselectors: [{role: pod}]\n", "node role supports only node selectors");
    CHECK_STR(sd_error("role: pod\nattach_metadata: {deployment: true, job: true, cronjob: "
                       "true}\n"),
              "");
    check_error("role: pod\nattach_metadata: {statefulset: true}\n",
                "attach_metadata: unknown key \"statefulset\"");
    check_error("role: pod\nattach_metadata: {node: maybe}\n",
                "attach_metadata.node: expected true or false");
    check_error("role: pod\nbasic_auth: {username: a}\n", "sd.basic_auth: unknown key");
    check_error("role: pod\nnamespaces: {names: [a/b]}\n", "expected a namespace");
    check_error("role: pod\napi_server: https://x\ntls_config: {cert_file: /c}\n",
                "sd.tls_config.cert_file: unknown key");
}

void test_kube_sd_node_targets(void)
{
    char *text;
    dr_json_doc *doc;
    const dr_jv *items = load_items("k8s-api/nodelist-k8s1.35.json", &text, &doc);
    const dr_jv *node = items ? items->child : NULL;
    if (!node) {
        free(text);
        dr_json_doc_free(doc);
        return;
    }
    target_group g;
    CHECK_INT(kube_sd_node_group(node, &g), 0);
    CHECK_INT(g.targets.n, 1);
    CHECK_STR(g.source, "node/datagen-1-35");
    CHECK_STR(g.targets.v[0], "192.168.67.2:10250");
    CHECK_STR(label_of(&g, 0, "instance"), "datagen-1-35");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_node_name"), "datagen-1-35");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_node_address_InternalIP"), "192.168.67.2");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_node_address_Hostname"), "datagen-1-35");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_node_condition_ready"), "true");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_node_condition_memorypressure"), "false");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_node_label_kubernetes_io_hostname"),
              "datagen-1-35");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_node_labelpresent_kubernetes_io_arch"), "true");
    CHECK(label_of(&g, 0, "__meta_kubernetes_node_provider_id") == NULL);
    group_clear(&g);
    dr_json_doc_free(doc);
    free(text);

    /* no address: nothing to scrape */
    const char *bare = "{\"metadata\":{\"name\":\"n\"},\"status\":{\"addresses\":[]}}";
    doc = dr_json_doc_new();
    const dr_jv *root = NULL;
    dr_error err = {{0}};
    CHECK_INT(dr_json_parse(doc, bare, strlen(bare), NULL, &root, &err), 0);
    CHECK_INT(kube_sd_node_group(root, &g), 0);
    CHECK_INT(g.targets.n, 0);
    group_clear(&g);
    dr_json_doc_free(doc);
}

void test_kube_sd_service_targets(void)
{
    const char *svc =
        "{\"metadata\":{\"name\":\"web\",\"namespace\":\"apps\",\"labels\":{\"app\":\"web\"}},"
        "\"spec\":{\"type\":\"LoadBalancer\",\"clusterIP\":\"10.96.0.10\","
        "\"ports\":[{\"name\":\"http\",\"port\":80,\"protocol\":\"TCP\"},"
        "{\"port\":9090,\"protocol\":\"TCP\"}]},"
        "\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"1.2.3.4\"},{\"hostname\":\"h\"},"
        "{\"ip\":\"5.6.7.8\"}]}}}";
    dr_json_doc *doc = dr_json_doc_new();
    const dr_jv *root = NULL;
    dr_error err = {{0}};
    CHECK_INT(dr_json_parse(doc, svc, strlen(svc), NULL, &root, &err), 0);
    target_group g;
    CHECK_INT(kube_sd_service_group(root, &g), 0);
    CHECK_INT(g.targets.n, 2);
    CHECK_STR(g.source, "svc/apps/web");
    CHECK_STR(g.targets.v[0], "web.apps.svc:80");
    CHECK_STR(g.targets.v[1], "web.apps.svc:9090");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_service_port_name"), "http");
    CHECK(label_of(&g, 1, "__meta_kubernetes_service_port_name") == NULL);
    CHECK_STR(label_of(&g, 1, "__meta_kubernetes_service_loadbalancer_ip"), "1.2.3.4,5.6.7.8");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_service_cluster_ip"), "10.96.0.10");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_service_type"), "LoadBalancer");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_service_label_app"), "web");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_namespace"), "apps");
    group_clear(&g);
    dr_json_doc_free(doc);

    const char *ext = "{\"metadata\":{\"name\":\"db\",\"namespace\":\"apps\"},"
                      "\"spec\":{\"type\":\"ExternalName\",\"externalName\":\"db.example.com\","
                      "\"ports\":[{\"port\":5432,\"protocol\":\"TCP\"}]}}";
    doc = dr_json_doc_new();
    CHECK_INT(dr_json_parse(doc, ext, strlen(ext), NULL, &root, &err), 0);
    CHECK_INT(kube_sd_service_group(root, &g), 0);
    CHECK_INT(g.targets.n, 1);
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_service_external_name"), "db.example.com");
    CHECK(label_of(&g, 0, "__meta_kubernetes_service_cluster_ip") == NULL);
    group_clear(&g);
    dr_json_doc_free(doc);
}

/* A parsed JSON text; the doc is the caller's. */
static const dr_jv *parse_json(const char *text, dr_json_doc **doc)
{
    *doc = dr_json_doc_new();
    const dr_jv *root = NULL;
    dr_error err = {{0}};
    CHECK_INT(dr_json_parse(*doc, text, strlen(text), NULL, &root, &err), 0);
    return root;
}

static void send_json(kube_sd *sd, ksd_kind kind, dr_kube_event ev, const char *text)
{
    dr_json_doc *doc;
    const dr_jv *obj = parse_json(text, &doc);
    if (obj)
        ksd_links_event(sd, kind, ev, obj);
    dr_json_doc_free(doc);
}

typedef struct found_group {
    const target_group *g;
    size_t n;
} found_group;

static void take_group(void *ctx, const target_group *g)
{
    found_group *f = ctx;
    f->g = g;
    f->n++;
}

/* The target of g at addr with a label name=value (NULL: any), or -1. */
static long target_at(const target_group *g, const char *addr, const char *name, const char *value)
{
    for (size_t i = 0; g && i < g->targets.n; i++) {
        if (strcmp(g->targets.v[i], addr) != 0)
            continue;
        const char *v = name ? label_of(g, i, name) : NULL;
        if (!name || (v && strcmp(v, value) == 0))
            return (long)i;
    }
    return -1;
}

/* The kube-dns EndpointSlice as the endpointslice controller writes it,
 * pointing at the recorded CoreDNS pod, and one endpoint on another node. */
static const char *kube_dns_slice =
    "{\"kind\":\"EndpointSlice\",\"apiVersion\":\"discovery.k8s.io/v1\","
    "\"metadata\":{\"name\":\"kube-dns-x7k2p\",\"namespace\":\"kube-system\","
    "\"labels\":{\"kubernetes.io/service-name\":\"kube-dns\","
    "\"endpointslice.kubernetes.io/managed-by\":\"endpointslice-controller.k8s.io\"}},"
    "\"addressType\":\"IPv4\","
    "\"endpoints\":[{\"addresses\":[\"10.244.0.2\"],\"conditions\":{\"ready\":true,"
    "\"serving\":true,\"terminating\":false},\"nodeName\":\"datagen-1-35\","
    "\"targetRef\":{\"kind\":\"Pod\",\"namespace\":\"kube-system\","
    "\"name\":\"coredns-7d764666f9-qdcxt\"}},"
    "{\"addresses\":[\"10.244.1.9\"],\"conditions\":{\"ready\":false},"
    "\"nodeName\":\"other-node\",\"zone\":\"b\","
    "\"targetRef\":{\"kind\":\"Pod\",\"namespace\":\"kube-system\","
    "\"name\":\"coredns-elsewhere\"}}],"
    "\"ports\":[{\"name\":\"dns-tcp\",\"protocol\":\"TCP\",\"port\":53},"
    "{\"name\":\"metrics\",\"protocol\":\"TCP\",\"port\":9153}]}";

static const char *kube_dns_service =
    "{\"metadata\":{\"name\":\"kube-dns\",\"namespace\":\"kube-system\","
    "\"labels\":{\"k8s-app\":\"kube-dns\"}},\"spec\":{\"clusterIP\":\"10.96.0.10\"}}";

void test_kube_sd_endpointslice_joins(void)
{
    char *text;
    dr_json_doc *doc;
    const dr_jv *items = load_items("k8s-api/podlist-apiserver-k8s1.35.json", &text, &doc);
    const dr_jv *pod = pod_named(items, "coredns-7d764666f9-qdcxt");
    CHECK(pod != NULL);
    if (!pod) {
        free(text);
        dr_json_doc_free(doc);
        return;
    }
    kube_sd sd = {0};
    sd.role = KUBE_SD_ENDPOINTSLICE;
    CHECK_INT(ksd_links_new(&sd, "datagen-1-35"), 0);
    ksd_links_event(&sd, KSD_OBJ_POD, DR_KUBE_ADDED, pod);
    send_json(&sd, KSD_OBJ_SERVICE, DR_KUBE_ADDED, kube_dns_service);
    send_json(&sd, KSD_OBJ_MAIN, DR_KUBE_ADDED, kube_dns_slice);

    found_group f = {0};
    kube_sd_visit(&sd, take_group, &f);
    CHECK_INT(f.n, 1);
    const target_group *g = f.g;
    CHECK_STR(g->source, "endpointslice/kube-system/kube-dns-x7k2p");
    /* node-local: the other node's endpoint is not here; two endpoint
     * ports, and the two container ports they do not cover (53 UDP shares
     * its number with the endpoint's 53 TCP, so it counts as covered) */
    CHECK_INT(g->targets.n, 4);
    long m =
        target_at(g, "10.244.0.2:9153", "__meta_kubernetes_endpointslice_port_name", "metrics");
    CHECK(m >= 0);
    if (m >= 0) {
        size_t i = (size_t)m;
        CHECK_STR(label_of(g, i, "__meta_kubernetes_endpointslice_name"), "kube-dns-x7k2p");
        CHECK_STR(label_of(g, i, "__meta_kubernetes_endpointslice_address_type"), "IPv4");
        CHECK_STR(label_of(g, i, "__meta_kubernetes_endpointslice_port"), "9153");
        CHECK_STR(label_of(g, i, "__meta_kubernetes_endpointslice_endpoint_conditions_ready"),
                  "true");
        CHECK_STR(label_of(g, i, "__meta_kubernetes_endpointslice_endpoint_conditions_terminating"),
                  "false");
        CHECK_STR(label_of(g, i, "__meta_kubernetes_endpointslice_endpoint_node_name"),
                  "datagen-1-35");
        CHECK_STR(label_of(g, i, "__meta_kubernetes_endpointslice_address_target_kind"), "Pod");
        CHECK_STR(label_of(g, i, "__meta_kubernetes_service_name"), "kube-dns");
        CHECK_STR(label_of(g, i, "__meta_kubernetes_service_label_k8s_app"), "kube-dns");
        CHECK_STR(label_of(g, i, "__meta_kubernetes_pod_name"), "coredns-7d764666f9-qdcxt");
        CHECK_STR(label_of(g, i, "__meta_kubernetes_pod_container_name"), "coredns");
        CHECK_STR(label_of(g, i, "__meta_kubernetes_pod_container_port_name"), "metrics");
        CHECK_STR(label_of(g, i, "__meta_kubernetes_pod_container_init"), "false");
        CHECK(label_of(g, i, "__meta_kubernetes_pod_container_id") == NULL);
        CHECK(label_of(g, i, "__meta_kubernetes_endpointslice_endpoint_zone") == NULL);
    }
    /* port 53: the first container port numbered 53 is the pod's (as
     * Prometheus matches by number), with that port's protocol */
    m = target_at(g, "10.244.0.2:53", NULL, NULL);
    CHECK(m >= 0);
    if (m >= 0) {
        CHECK_STR(label_of(g, (size_t)m, "__meta_kubernetes_endpointslice_port_protocol"), "TCP");
        CHECK_STR(label_of(g, (size_t)m, "__meta_kubernetes_pod_container_port_name"), "dns");
        CHECK_STR(label_of(g, (size_t)m, "__meta_kubernetes_pod_container_port_protocol"), "UDP");
    }
    /* a container port no endpoint covered: pod labels, no endpoint labels */
    m = target_at(g, "10.244.0.2:8181", "__meta_kubernetes_pod_container_port_name",
                  "readiness-probe");
    CHECK(m >= 0);
    if (m >= 0) {
        CHECK(label_of(g, (size_t)m, "__meta_kubernetes_endpointslice_port") == NULL);
        CHECK_STR(label_of(g, (size_t)m, "__meta_kubernetes_endpointslice_name"), "kube-dns-x7k2p");
    }

    /* the pod goes: its endpoints stay, without the pod's labels */
    ksd_links_event(&sd, KSD_OBJ_POD, DR_KUBE_DELETED, pod);
    f = (found_group){0};
    kube_sd_visit(&sd, take_group, &f);
    CHECK_INT(f.n, 1);
    CHECK_INT(f.g ? f.g->targets.n : 0, 2);
    CHECK(f.g && f.g->targets.n && label_of(f.g, 0, "__meta_kubernetes_pod_name") == NULL);

    /* the slice goes: so does its group */
    send_json(&sd, KSD_OBJ_MAIN, DR_KUBE_DELETED, kube_dns_slice);
    f = (found_group){0};
    kube_sd_visit(&sd, take_group, &f);
    CHECK_INT(f.n, 0);
    kube_sd_free(&sd);
    dr_json_doc_free(doc);
    free(text);
}

void test_kube_sd_ingress_targets(void)
{
    const char *ing =
        "{\"metadata\":{\"name\":\"web\",\"namespace\":\"apps\",\"labels\":{\"a\":\"b\"}},"
        "\"spec\":{\"ingressClassName\":\"nginx\",\"tls\":[{\"hosts\":[\"*.example.com\"]}],"
        "\"rules\":[{\"host\":\"shop.example.com\",\"http\":{\"paths\":[{\"path\":\"/api\","
        "\"pathType\":\"Prefix\"},{\"pathType\":\"Prefix\"}]}},"
        "{\"host\":\"a.b.example.com\"},{\"http\":{\"paths\":[{\"path\":\"/x\"}]}}]}}";
    dr_json_doc *doc;
    const dr_jv *root = parse_json(ing, &doc);
    target_group g;
    CHECK_INT(kube_sd_ingress_group(root, &g), 0);
    CHECK_STR(g.source, "ingress/apps/web");
    /* two paths of the first rule, the second rule's "/", no host: none */
    CHECK_INT(g.targets.n, 3);
    CHECK_STR(g.targets.v[0], "shop.example.com");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_ingress_scheme"), "https");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_ingress_path"), "/api");
    CHECK_STR(label_of(&g, 1, "__meta_kubernetes_ingress_path"), "/");
    CHECK_STR(label_of(&g, 2, "__meta_kubernetes_ingress_scheme"), "http");
    CHECK_STR(label_of(&g, 2, "__meta_kubernetes_ingress_host"), "a.b.example.com");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_ingress_class_name"), "nginx");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_ingress_label_a"), "b");
    CHECK_STR(label_of(&g, 0, "__meta_kubernetes_ingress_name"), "web");
    group_clear(&g);
    dr_json_doc_free(doc);
}
