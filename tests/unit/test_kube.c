/*
 * Kubernetes pieces that need no API server: owners, the pod cache fed
 * with recorded API objects, metadata objects, record keys, kubeconfig.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/filters/kubernetes/pods.h"
#include "drover/plugin.h"
#include "jsonp.h"
#include "kube.h"
#include "kube_meta.h"
#include "test.h"

void test_kube_top_owner(void)
{
    char kind[256], name[256];
    dr_kube_top_owner("ReplicaSet", "web-5d8f7c9b6", "5d8f7c9b6", kind, name);
    CHECK_STR(kind, "Deployment");
    CHECK_STR(name, "web");
    /* a ReplicaSet made by hand: its name does not end in the hash */
    dr_kube_top_owner("ReplicaSet", "web-blue", "5d8f7c9b6", kind, name);
    CHECK_STR(kind, "ReplicaSet");
    CHECK_STR(name, "web-blue");
    dr_kube_top_owner("ReplicaSet", "web-5d8f7c9b6", NULL, kind, name);
    CHECK_STR(kind, "ReplicaSet");
    dr_kube_top_owner("Job", "e2e-cronjob-29707813", NULL, kind, name);
    CHECK_STR(kind, "CronJob");
    CHECK_STR(name, "e2e-cronjob");
    dr_kube_top_owner("Job", "migrate-2", NULL, kind, name);
    CHECK_STR(kind, "Job");
    CHECK_STR(name, "migrate-2");
    dr_kube_top_owner("StatefulSet", "db", NULL, kind, name);
    CHECK_STR(kind, "StatefulSet");
    CHECK_STR(name, "db");
    dr_kube_top_owner("Job", "-12345678", NULL, kind, name);
    CHECK_STR(kind, "Job");
}

/* Parses a fixture file into doc; NULL when it cannot. */
static const dr_jv *load_fixture(dr_json_doc *doc, const char *rel, char **text)
{
    size_t len;
    *text = dt_read_file(dt_fixture(rel), &len);
    if (!CHECK(*text != NULL))
        return NULL;
    const dr_jv *root = NULL;
    dr_error err = {0};
    if (!CHECK(dr_json_parse(doc, *text, len, NULL, &root, &err) == 0))
        fprintf(stderr, "  %s: %s\n", rel, err.msg);
    return root;
}

void test_kube_pod_cache_objects(void)
{
    dr_json_doc *doc = dr_json_doc_new();
    kp_cache c = {0};
    char *text;
    const dr_jv *pod = load_fixture(doc, "k8s-api/pod-kairosdb-replicaset-owner.json", &text);
    CHECK_INT(kp_pod_upsert(&c, pod), 0);
    const kp_pod *p = kp_find(&c, "d6c53deb-05a4-11e8-a8c4-080027435fb7", NULL, NULL);
    if (CHECK(p != NULL)) {
        CHECK_STR(p->name, "kairosdb-914055854-b63vq");
        CHECK_STR(p->namespace_, "default");
        CHECK_STR(p->owner_kind, "Deployment");
        CHECK_STR(p->owner_name, "kairosdb");
        CHECK_STR(dr_kv_find(p->labels, p->nlabels, "name"), "kairosdb");
        const kp_container *kc = kp_find_container(p, "kairosdb");
        if (CHECK(kc != NULL)) {
            CHECK_STR(kc->image,
                      "docker.io/davradocker/docker-kairosdb:1.1.1_9"); /* spec, not status */
            CHECK_STR(kc->id, "02d45318f220ad01109d13df31fbbb0668b87fdd06ef6607abfdecf5eba4b311");
        }
        CHECK_STR(dr_kv_find(p->annotations, p->nannotations, "fluentbit.io/exclude-kairosdb"),
                  "true");
    }
    /* by namespace and name too, when the file name gave no uid */
    CHECK(kp_find(&c, "", "default", "kairosdb-914055854-b63vq") == p);
    CHECK(kp_find(&c, "other-uid", "default", "kairosdb-914055854-b63vq") == NULL);
    free(text);

    pod = load_fixture(doc, "k8s-api/pod-daemonset-owner.json", &text);
    CHECK_INT(kp_pod_upsert(&c, pod), 0);
    p = kp_find(&c, "e9f2963f-55f2-11e9-84c5-02e422b8a84a", NULL, NULL);
    if (CHECK(p != NULL)) {
        CHECK_STR(p->owner_kind, "DaemonSet");
        CHECK_STR(p->owner_name, "fluentbit-max");
        CHECK_STR(p->pod_ip, "100.116.192.42");
    }
    uint64_t gen = c.generation;
    uint64_t version = p ? p->version : 0;
    /* the same resourceVersion again: nothing changes */
    CHECK_INT(kp_pod_upsert(&c, pod), 0);
    CHECK_INT(c.generation, gen);
    p = kp_find(&c, "e9f2963f-55f2-11e9-84c5-02e422b8a84a", NULL, NULL);
    CHECK_INT(p ? p->version : 0, version);
    free(text);

    /* deleted: kept as a tombstone until its time is up */
    pod = load_fixture(doc, "k8s-api/pod-daemonset-owner.json", &text);
    kp_pod_delete(&c, pod, 1000);
    CHECK(c.generation > gen);
    CHECK(kp_find(&c, "e9f2963f-55f2-11e9-84c5-02e422b8a84a", NULL, NULL) != NULL);
    kp_expire(&c, 1500, 1000);
    CHECK(kp_find(&c, "e9f2963f-55f2-11e9-84c5-02e422b8a84a", NULL, NULL) != NULL);
    kp_expire(&c, 2000, 1000);
    CHECK(kp_find(&c, "e9f2963f-55f2-11e9-84c5-02e422b8a84a", NULL, NULL) == NULL);
    CHECK_INT(c.npods, 1);
    free(text);

    /* an object without a name is refused */
    const dr_jv *bad;
    CHECK_INT(dr_json_parse(doc, "{\"metadata\":{}}", 15, NULL, &bad, NULL), 0);
    CHECK_INT(kp_pod_upsert(&c, bad), DR_EINVAL);
    kp_cache_free(&c);
    dr_json_doc_free(doc);
}

void test_kube_pod_cache_kubelet_list(void)
{
    dr_json_doc *doc = dr_json_doc_new();
    kp_cache c = {0};
    char *text;
    const dr_jv *list = load_fixture(doc, "k8s-api/kubelet-pods-k8s1.35.json", &text);
    const dr_jv *items = dr_jv_get(list, "items");
    for (const dr_jv *it = items ? items->child : NULL; it; it = it->next)
        CHECK_INT(kp_pod_upsert(&c, it), 0);
    CHECK_INT(c.npods, 24);
    const kp_pod *p = kp_find(&c, "8c27e2aa-e3ee-406d-b45e-432476d5dc13", NULL, NULL);
    if (CHECK(p != NULL)) {
        CHECK_STR(p->name, "e2e-cronjob-29707813-dhlr2");
        CHECK_STR(p->owner_kind, "CronJob");
        CHECK_STR(p->owner_name, "e2e-cronjob");
    }
    p = kp_find(&c, "", "scraper", "e2e-hpa-6cd8d99884-tggnr");
    if (CHECK(p != NULL)) {
        CHECK_STR(p->owner_kind, "Deployment");
        CHECK_STR(p->owner_name, "e2e-hpa");
        CHECK_STR(dr_kv_find(p->labels, p->nlabels, "app"), "hpa");
    }
    p = kp_find(&c, "", "scraper", "e2e-statefulset-1");
    CHECK(p && strcmp(p->owner_kind, "StatefulSet") == 0);
    /* a static pod has no owner reference */
    p = kp_find(&c, "", "kube-system", "etcd-datagen-1-35");
    CHECK(p && p->owner_kind[0] == '\0');
    free(text);
    kp_cache_free(&c);
    dr_json_doc_free(doc);
}

void test_kube_namespaces(void)
{
    dr_json_doc *doc = dr_json_doc_new();
    kp_cache c = {0};
    char *text;
    const dr_jv *list = load_fixture(doc, "k8s-api/namespacelist-k8s1.35.json", &text);
    const dr_jv *items = dr_jv_get(list, "items");
    size_t n = 0;
    for (const dr_jv *it = items ? items->child : NULL; it; it = it->next, n++)
        CHECK_INT(kp_namespace_upsert(&c, it), 0);
    CHECK(n > 0);
    CHECK_INT(c.nnamespaces, n);
    const kp_namespace *ns = kp_find_namespace(&c, "kube-system");
    if (CHECK(ns != NULL))
        CHECK_STR(dr_kv_find(ns->labels, ns->nlabels, "kubernetes.io/metadata.name"),
                  "kube-system");
    const dr_jv *obj;
    CHECK_INT(dr_json_parse(doc, "{\"metadata\":{\"name\":\"kube-system\"}}", 35, NULL, &obj, NULL),
              0);
    kp_namespace_delete(&c, obj);
    CHECK(kp_find_namespace(&c, "kube-system") == NULL);
    CHECK_INT(c.nnamespaces, n - 1);
    free(text);
    kp_cache_free(&c);
    dr_json_doc_free(doc);
}

void test_kube_meta_build(void)
{
    dr_kv labels[] = {{"tier", "web"}, {"app", "shop"}, {"tier", "api"}, {"a/b.c", "x"}};
    dr_kube_meta_spec spec = {.namespace_ = "shop", .pod = "web-1", .labels = labels, .nlabels = 4};
    dr_kube_meta *m = dr_kube_meta_build(&spec);
    if (!CHECK(m != NULL))
        return;
    CHECK_STR(m->namespace_, "shop");
    CHECK_STR(m->image, "");
    CHECK_INT(m->nlabels, 3);
    CHECK_STR(m->labels[0].key, "a/b.c");
    CHECK_STR(m->labels[1].key, "app");
    CHECK_STR(m->labels[2].key, "tier");
    CHECK_STR(m->labels[2].val, "api"); /* the last one given wins */
    CHECK_STR(dr_kv_find(m->labels, m->nlabels, "app"), "shop");
    CHECK(dr_kv_find(m->labels, m->nlabels, "ap") == NULL);
    CHECK(dr_kv_find(m->labels, m->nlabels, "apps") == NULL);
    CHECK_INT(m->nannotations, 0);
    dr_kube_meta_ref(m);
    CHECK_INT(m->refs, 2);
    dr_kube_meta_unref(m);
    dr_kube_meta_unref(m);
}

void test_record_keys(void)
{
    dr_chunk *c = dr_chunk_new(NULL, 0);
    dr_meta *meta = dr_meta_new("/x.log", "shop", "web-1", "uid-1", "app", "cid", 0);
    dr_chunk_set_meta(c, meta);
    dr_meta_unref(meta);
    dr_record *r = dr_chunk_add(c);
    r->msg = "hello";
    r->msg_len = 5;
    r->stream = DR_STREAM_STDERR;
    r->time_ns = 1764649838123456789LL;
    dr_value v;
    char tbuf[40];
#define GET(k) dr_record_get(c, r, k, strlen(k), &v, tbuf)
    CHECK(GET("message") && v.len == 5 && memcmp(v.p, "hello", 5) == 0);
    CHECK(GET("stream") && v.len == 6 && memcmp(v.p, "stderr", 6) == 0);
    CHECK(GET("time") && v.len == 30 && memcmp(v.p, "2025-12-02T04:30:38.123456789Z", 30) == 0);
    /* without the kubernetes filter: what the file name said */
    CHECK(GET("kubernetes.namespace") && v.len == 4 && memcmp(v.p, "shop", 4) == 0);
    CHECK(!GET("kubernetes.labels.app"));
    CHECK(!GET("level"));

    dr_kv labels[] = {{"app.kubernetes.io/name", "shop"}};
    dr_kube_meta_spec spec = {
        .namespace_ = "shop-ns", .node = "n1", .labels = labels, .nlabels = 1};
    dr_kube_meta *km = dr_kube_meta_build(&spec);
    dr_chunk_set_kube(c, km);
    dr_kube_meta_unref(km);
    CHECK(GET("kubernetes.namespace") && v.len == 7);
    CHECK(GET("kubernetes.node") && v.len == 2);
    CHECK(GET("kubernetes.labels.app.kubernetes.io/name") && v.len == 4);
    CHECK(!GET("kubernetes.labels.app"));
    CHECK(!GET("kubernetes.image")); /* empty is absent */

    /* fields: add, replace, grow past the first array, remove */
    CHECK_INT(dr_record_set(c, r, "level", 5, "info", 4, DR_FIELD_STRING), 0);
    CHECK_INT(dr_record_set(c, r, "n", 1, "42", 2, DR_FIELD_JSON), 0);
    CHECK(GET("n") && v.type == DR_FIELD_JSON && v.len == 2);
    CHECK_INT(dr_record_set(c, r, "level", 5, "warn", 4, DR_FIELD_STRING), 0);
    CHECK_INT(r->nfields, 2);
    char key[16];
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "k%d", i);
        CHECK_INT(dr_record_set(c, r, key, strlen(key), key, strlen(key), DR_FIELD_STRING), 0);
    }
    CHECK_INT(r->nfields, 22);
    CHECK(GET("level") && v.len == 4 && memcmp(v.p, "warn", 4) == 0);
    CHECK(GET("k19") && v.len == 3 && memcmp(v.p, "k19", 3) == 0);
    CHECK(dr_record_remove(r, "k0", 2));
    CHECK(!dr_record_remove(r, "k0", 2));
    CHECK(!GET("k0"));
    CHECK(GET("k1") && GET("k19"));
    CHECK_INT(r->nfields, 21);
    /* the message can be replaced; the rest cannot be set */
    CHECK_INT(dr_record_set(c, r, "message", 7, "bye", 3, DR_FIELD_STRING), 0);
    CHECK(GET("message") && v.len == 3 && memcmp(v.p, "bye", 3) == 0);
    CHECK_INT(dr_record_set(c, r, "stream", 6, "x", 1, DR_FIELD_STRING), DR_EINVAL);
    CHECK_INT(dr_record_set(c, r, "time", 4, "x", 1, DR_FIELD_STRING), DR_EINVAL);
    CHECK_INT(dr_record_set(c, r, "kubernetes.pod", 14, "x", 1, DR_FIELD_STRING), DR_EINVAL);
    CHECK_INT(dr_record_set(c, r, "", 0, "x", 1, DR_FIELD_STRING), DR_EINVAL);
#undef GET
    dr_chunk_discard(c);
}

void test_kube_kubeconfig(void)
{
    char path[512], data[512];
    const char *dir = dt_tmpdir();
    snprintf(path, sizeof path, "%s/kubeconfig", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    FILE *f = fopen(path, "w");
    fputs("apiVersion: v1\nkind: Config\ncurrent-context: dev\n"
          "clusters:\n"
          "- name: other\n  cluster: {server: https://10.0.0.1:6443}\n"
          "- name: local\n  cluster:\n    server: https://127.0.0.1:6443/\n"
          "    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==\n"
          "contexts:\n- name: dev\n  context: {cluster: local, user: me}\n"
          "users:\n- name: me\n  user: {token: abc.def, client-key: keys/me.key}\n",
          f);
    fclose(f);
    dr_kube_conf conf = {0};
    char *cert = NULL, *key = NULL, *token = NULL;
    dr_error err = {0};
    CHECK_INT(dr_kube_read_kubeconfig(path, data, &conf, &cert, &key, &token, &err), 0);
    CHECK_STR(conf.url, "https://127.0.0.1:6443/");
    CHECK_STR(token, "abc.def");
    CHECK(cert == NULL);
    char want[600];
    snprintf(want, sizeof want, "%s/keys/me.key", dir);
    CHECK_STR(key, want);
    size_t len = 0;
    char *ca = conf.ca_file ? dt_read_file(conf.ca_file, &len) : NULL;
    CHECK(ca && strcmp(ca, "-----BEGIN CERTIFICATE-----\n") == 0);
    free(ca);
    free(conf.url);
    free(conf.ca_file);
    free(cert);
    free(key);
    free(token);

    /* exec plugins are refused with a reason */
    f = fopen(path, "w");
    fputs("current-context: c\nclusters: [{name: k, cluster: {server: https://h:1}}]\n"
          "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
          "users: [{name: u, user: {exec: {command: aws}}}]\n",
          f);
    fclose(f);
    memset(&conf, 0, sizeof conf);
    cert = key = token = NULL;
    CHECK_INT(dr_kube_read_kubeconfig(path, data, &conf, &cert, &key, &token, &err), DR_EINVAL);
    CHECK(strstr(err.msg, "exec") != NULL);
    free(conf.url);
    free(conf.ca_file);
    /* no current context */
    f = fopen(path, "w");
    fputs("clusters: []\n", f);
    fclose(f);
    memset(&conf, 0, sizeof conf);
    CHECK_INT(dr_kube_read_kubeconfig(path, data, &conf, &cert, &key, &token, &err), DR_EINVAL);
    CHECK(strstr(err.msg, "no server") != NULL);
}
