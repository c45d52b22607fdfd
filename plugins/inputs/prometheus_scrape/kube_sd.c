/*
 * kubernetes_sd_configs: scrape targets from the Kubernetes API, with the
 * target labels Prometheus' Kubernetes discovery gives them, so that the
 * relabel_configs of a pasted job work unchanged.
 *
 * Role pod: every container port of every pod with an IP is a target
 * (podIP:port), and a container without ports is one target at the pod IP;
 * init containers too, marked __meta_kubernetes_pod_container_init="true".
 * The pod's labels, annotations, phase, readiness, node, host IP, UID and
 * controlling owner become __meta_kubernetes_pod_* labels. A pod without an
 * IP (pending, evicted) has no targets.
 *
 * Role node: one target per node, at its first address by type
 * (InternalIP, InternalDNS, ExternalIP, ExternalDNS, LegacyHostIP,
 * Hostname) and its kubelet port, with instance = the node's name and
 * __meta_kubernetes_node_* labels (name, provider ID, conditions, the
 * first address of each type, labels and annotations).
 *
 * Role service: a target per service port at <name>.<namespace>.svc:<port>
 * with __meta_kubernetes_service_* labels, cluster-wide (a service runs on
 * no node in particular). Role ingress: a target per rule and path at the
 * rule's host, cluster-wide too. Roles endpoints and endpointslice join
 * three kinds of objects: kube_sd_endpoints.c.
 *
 * Node-local by default: when the agent knows its node (node_name, as a
 * DaemonSet sets it from the downward API), the pod role watches only the
 * pods with spec.nodeName of that node (the node role: that node alone,
 * metadata.name), as a field selector would; each
 * agent scrapes what runs beside it and the API server serves one small
 * watch per node instead of every pod of the cluster to every node.
 *
 * The watches come from the shared Kubernetes client (src/kube.h): one
 * LIST, then a WATCH resumed where it stopped; the groups change as events
 * arrive and the job's targets follow at the next discovery tick (the
 * first complete list applies at once).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube_sd_int.h"

/* An object's target group, found by its source ("pod/<namespace>/<name>"). */
typedef struct kube_sd_entry {
    ksd_item it; /* it.key is g.source */
    target_group g;
} kube_sd_entry;

/* In kube_sd_role's order; NULL-terminated for the option table. */
static const char *const role_names[] = {"pod",           "node",    "service", "endpoints",
                                         "endpointslice", "ingress", NULL};

/* The selector roles each discovery role takes (Prometheus' rules). */
static bool selector_role_allowed(kube_sd_role role, const char *sel)
{
    switch (role) {
    case KUBE_SD_POD:
        return strcmp(sel, "pod") == 0 || strcmp(sel, "node") == 0;
    case KUBE_SD_NODE:
        return strcmp(sel, "node") == 0;
    case KUBE_SD_SERVICE:
        return strcmp(sel, "service") == 0;
    case KUBE_SD_ENDPOINTS:
        return strcmp(sel, "endpoints") == 0 || strcmp(sel, "pod") == 0 ||
               strcmp(sel, "service") == 0;
    case KUBE_SD_ENDPOINTSLICE:
        return strcmp(sel, "endpointslice") == 0 || strcmp(sel, "pod") == 0 ||
               strcmp(sel, "service") == 0;
    case KUBE_SD_INGRESS:
        return strcmp(sel, "ingress") == 0;
    }
    return false;
}

/* What selectors_allowed lists in its error, per role. */
static const char *const selector_roles_text[] = {
    "pod, node", "node", "service", "pod, service, endpoints", "pod, service, endpointslice",
    "ingress"};

static int role_of(const char *s, kube_sd_role *out)
{
    for (size_t i = 0; role_names[i]; i++)
        if (strcmp(s, role_names[i]) == 0) {
            *out = (kube_sd_role)i;
            return 0;
        }
    return DR_EINVAL;
}

/* ---- configuration -------------------------------------------------------------------- */

typedef struct kube_sd_conf {
    int role;
    char *api_server, *kubeconfig_file;
    bool own_namespace;
    dr_strlist names;
    const dr_cfg_node *selectors, *attach_metadata;
    char *bearer_token_file, *auth_type, *auth_credentials_file;
    char *tls_ca_file;
    bool tls_insecure_skip_verify;
    bool node_local;
} kube_sd_conf;

#define KOPT(n, t, f, d, h)                                                                        \
    {                                                                                              \
        n, t, offsetof(kube_sd_conf, f), d, 0, {NULL}, 0, 0, h                                     \
    }

/* The keys of a kubernetes_sd_configs entry (the docs' table is this one). */
const dr_option kube_sd_options[] = {
    {"role",
     DR_OPT_ENUM,
     offsetof(kube_sd_conf, role),
     NULL,
     DR_OPT_REQUIRED,
     {.choices = role_names},
     0,
     0,
     "What to discover. pod: every container port of every pod with an IP (podIP:port, or "
     "the pod IP for a container without ports), labelled __meta_kubernetes_namespace, "
     "__meta_kubernetes_pod_{name, ip, uid, phase, ready, node_name, host_ip, "
     "controller_kind, controller_name}, __meta_kubernetes_pod_{label, labelpresent, "
     "annotation, annotationpresent}_<name> and __meta_kubernetes_pod_container_{name, id, "
     "image, init, port_name, port_number, port_protocol}, as Prometheus does. node: one "
     "target per node at its first address (InternalIP, InternalDNS, ExternalIP, "
     "ExternalDNS, LegacyHostIP, Hostname) and kubelet port, instance = the node's name, "
     "labelled __meta_kubernetes_node_{name, provider_id}, "
     "__meta_kubernetes_node_condition_<type>, __meta_kubernetes_node_address_<type> and "
     "the node's labels and annotations. service: a target per service port at "
     "<name>.<namespace>.svc:<port>, labelled __meta_kubernetes_service_{name, port_name, "
     "port_number, port_protocol, type, cluster_ip, external_name, loadbalancer_ip} and the "
     "service's labels and annotations (cluster-wide: node_local does not apply). "
     "endpointslice: a target per address and port of every EndpointSlice (address:port), "
     "labelled __meta_kubernetes_endpointslice_{name, address_type, port, port_name, "
     "port_protocol, port_app_protocol, endpoint_conditions_{ready, serving, terminating}, "
     "endpoint_hostname, endpoint_node_name, endpoint_zone, address_target_kind, "
     "address_target_name}, the slice's labels and annotations, its service's "
     "__meta_kubernetes_service_* (name, labels, annotations), and, for an address that points "
     "at a pod, the pod's labels as the pod role gives them (without container_id) with the "
     "container whose port is the endpoint's; every other container port of such a pod is a "
     "target too; the secondary slice of a dual-stack service gives none. endpoints: the same "
     "from Endpoints objects, labelled __meta_kubernetes_endpoints_name (and its labels and "
     "annotations) and __meta_kubernetes_endpoint_{ready, port_name, port_protocol, "
     "address_target_kind, address_target_name, node_name, hostname}. Node-local, both keep "
     "only the endpoints on the agent's node (nodeName, or a targetRef of kind Node naming it) "
     "and watch only that node's pods; the endpoints and services watches stay cluster-wide "
     "(or per namespace). ingress: a target per rule and path at the rule's host, labelled "
     "__meta_kubernetes_ingress_{name, scheme (https when a TLS host covers it), host, path, "
     "class_name} and its labels and annotations (cluster-wide)."},
    KOPT("api_server", DR_OPT_STRING, api_server, NULL,
         "The API server, https://host:port. Unset with kubeconfig_file unset: the in-cluster "
         "address and service account."),
    KOPT("kubeconfig_file", DR_OPT_STRING, kubeconfig_file, NULL,
         "A kubeconfig to reach the API server with (not with api_server)."),
    KOPT("namespaces.own_namespace", DR_OPT_BOOL, own_namespace, "false",
         "Watch the agent's own namespace (in-cluster only)."),
    KOPT("namespaces.names", DR_OPT_STRLIST, names, NULL,
         "The namespaces to watch; none: every namespace."),
    {"selectors",
     DR_OPT_NODE,
     offsetof(kube_sd_conf, selectors),
     NULL,
     0,
     {NULL},
     0,
     0,
     "A list of {role, label, field}: Kubernetes label and field selectors of the watches, at "
     "most one per role: the pod role takes pod selectors, node node, service service, "
     "ingress ingress; endpoints takes endpoints, pod and service selectors, endpointslice "
     "endpointslice, pod and service selectors (the pods and services its groups join)."},
    {"attach_metadata",
     DR_OPT_NODE,
     offsetof(kube_sd_conf, attach_metadata),
     NULL,
     0,
     {NULL},
     0,
     0,
     "{node, namespace, deployment, job, cronjob}, all false by default. node (roles pod, "
     "endpoints, endpointslice): the labels of the target's node, "
     "__meta_kubernetes_node_{name, label_<name>, labelpresent_<name>, annotation_<name>, "
     "annotationpresent_<name>} (node-local: a watch of the agent's node alone; else of every "
     "node, the pod role's node selector applying). namespace (every role but node): "
     "__meta_kubernetes_namespace_{label, labelpresent, annotation, annotationpresent}_<name> "
     "of the target's namespace (a watch of every namespace). deployment, job, cronjob (roles "
     "pod, endpoints, endpointslice): for a pod controlled by a ReplicaSet, "
     "__meta_kubernetes_pod_deployment_name, the Deployment that controls that ReplicaSet (a "
     "watch of the ReplicaSets of the discovery's namespaces); by a Job, "
     "__meta_kubernetes_pod_job_name, the Job's name (no watch), and "
     "__meta_kubernetes_pod_cronjob_name, the CronJob that controls the Job (a watch of the "
     "Jobs)."},
    KOPT("bearer_token_file", DR_OPT_STRING, bearer_token_file, NULL,
         "A file with the bearer token (with api_server), re-read when it changes."),
    KOPT("authorization.type", DR_OPT_STRING, auth_type, "Bearer", "Bearer only."),
    KOPT("authorization.credentials_file", DR_OPT_STRING, auth_credentials_file, NULL,
         "As bearer_token_file."),
    KOPT("tls_config.ca_file", DR_OPT_STRING, tls_ca_file, NULL,
         "The CA of the API server (with api_server)."),
    KOPT("tls_config.insecure_skip_verify", DR_OPT_BOOL, tls_insecure_skip_verify, "false",
         "Do not verify the API server's certificate."),
    KOPT("node_local", DR_OPT_BOOL, node_local, "true",
         "drover's own: when the agent knows its node (agent.node_name), watch only the pods of "
         "that node (the field selector spec.nodeName) or, role node, that node itself "
         "(metadata.name), so that each agent of a DaemonSet "
         "scrapes what runs beside it and the API server serves one small watch per node."),
    {0},
};

static int parse_selectors(kube_sd *sd, const dr_cfg_node *list, const char *path,
                           dr_cfg_errors *errs)
{
    if (!list || list->type == DR_CFG_NULL)
        return 0;
    if (list->type != DR_CFG_SEQ) {
        dr_cfg_error(errs, list, path, "selectors: expected a list of {role, label, field}");
        return 1;
    }
    int nerr = 0;
    bool seen[KUBE_SD_NROLES] = {false};
    for (size_t i = 0; i < list->n; i++) {
        const dr_cfg_node *m = list->items[i];
        if (m->type != DR_CFG_MAP) {
            dr_cfg_error(errs, m, path, "selectors[%zu]: expected a map of role, label, field", i);
            nerr++;
            continue;
        }
        const dr_cfg_node *r = dr_cfg_get(m, "role");
        kube_sd_role role;
        if (!r || r->type != DR_CFG_SCALAR || role_of(r->str, &role) != 0) {
            dr_cfg_error(errs, r ? r : m, path,
                         "selectors[%zu].role: expected one of pod, node, service, endpoints, "
                         "endpointslice, ingress",
                         i);
            nerr++;
            continue;
        }
        if (seen[role]) {
            dr_cfg_error(errs, r, path, "selectors: duplicated selector role: %s", r->str);
            nerr++;
            continue;
        }
        seen[role] = true;
        if (!selector_role_allowed(sd->role, r->str)) {
            dr_cfg_error(errs, r, path, "selectors[%zu]: %s role supports only %s selectors", i,
                         role_names[sd->role], selector_roles_text[sd->role]);
            nerr++;
            continue;
        }
        for (size_t j = 0; j < m->n; j++) {
            const char *k = m->pairs[j].key->str;
            const dr_cfg_node *v = m->pairs[j].val;
            char **dst = strcmp(k, "label") == 0   ? &sd->label_selector[role]
                         : strcmp(k, "field") == 0 ? &sd->field_selector[role]
                                                   : NULL;
            if (strcmp(k, "role") == 0)
                continue;
            if (!dst) {
                dr_cfg_error(errs, m->pairs[j].key, path,
                             "selectors[%zu]: unknown key \"%s\" (role, label, field)", i, k);
                nerr++;
            } else if (v->type != DR_CFG_SCALAR) {
                dr_cfg_error(errs, v, path, "selectors[%zu].%s: expected a string", i, k);
                nerr++;
            } else {
                free(*dst);
                if (!(*dst = strdup(v->str)))
                    return nerr + 1;
            }
        }
    }
    return nerr;
}

/* attach_metadata: which objects' metadata the targets get (kube_sd_meta.c). */
static int parse_attach_metadata(kube_sd *sd, const dr_cfg_node *map, const char *path,
                                 dr_cfg_errors *errs)
{
    if (!map || map->type == DR_CFG_NULL)
        return 0;
    if (map->type != DR_CFG_MAP) {
        dr_cfg_error(errs, map, path, "attach_metadata: expected a map");
        return 1;
    }
    int nerr = 0;
    for (size_t i = 0; i < map->n; i++) {
        const char *k = map->pairs[i].key->str;
        const dr_cfg_node *v = map->pairs[i].val;
        bool on = false;
        if (strcmp(k, "node") != 0 && strcmp(k, "namespace") != 0 && strcmp(k, "deployment") != 0 &&
            strcmp(k, "job") != 0 && strcmp(k, "cronjob") != 0) {
            dr_cfg_error(errs, map->pairs[i].key, path,
                         "attach_metadata: unknown key \"%s\" (node, namespace, deployment, job, "
                         "cronjob)",
                         k);
            nerr++;
        } else if (v->type != DR_CFG_SCALAR || dr_parse_bool(v->str, &on) != 0) {
            dr_cfg_error(errs, v, path, "attach_metadata.%s: expected true or false", k);
            nerr++;
        } else if (strcmp(k, "node") == 0) {
            sd->attach_node = on;
        } else if (strcmp(k, "namespace") == 0) {
            sd->attach_namespace = on;
        } else if (strcmp(k, "deployment") == 0) {
            sd->attach_deployment = on;
        } else if (strcmp(k, "job") == 0) {
            sd->attach_job = on;
        } else {
            sd->attach_cronjob = on;
        }
    }
    return nerr;
}

/* Prometheus' consistency rules between the ways to reach the API server. */
static int check_access(const kube_sd *sd, const dr_cfg_node *map, const char *path,
                        bool custom_http, dr_cfg_errors *errs)
{
    const char *why = NULL;
    if (sd->api.url && sd->api.kubeconfig)
        why = "cannot use 'kubeconfig_file' and 'api_server' simultaneously";
    else if (sd->api.kubeconfig && custom_http)
        why = "cannot use a custom HTTP client configuration together with 'kubeconfig_file'";
    else if (!sd->api.url && custom_http)
        why = "to use custom HTTP client configuration please provide the 'api_server' URL "
              "explicitly";
    else if (sd->api.url && sd->own_namespace)
        why = "cannot use 'api_server' and 'namespaces.own_namespace' simultaneously";
    else if (sd->api.kubeconfig && sd->own_namespace)
        why = "cannot use 'kubeconfig_file' and 'namespaces.own_namespace' simultaneously";
    if (!why)
        return 0;
    dr_cfg_error(errs, map, path, "%s", why);
    return 1;
}

static char *take_str(char **s)
{
    char *v = *s;
    *s = NULL;
    return v;
}

int kube_sd_parse(const dr_cfg_node *map, const char *path, kube_sd *sd, dr_cfg_errors *errs)
{
    memset(sd, 0, sizeof *sd);
    if (map->type != DR_CFG_MAP) {
        dr_cfg_error(errs, map, path, "expected a map with role and the keys of a discovery");
        return 1;
    }
    kube_sd_conf c = {0};
    int nerr = dr_cfg_apply(kube_sd_options, map, &c, path, NULL, errs);
    if (nerr) {
        dr_cfg_free_conf(kube_sd_options, &c);
        return nerr;
    }
    sd->role = (kube_sd_role)c.role;
    if (c.bearer_token_file && c.auth_credentials_file) {
        dr_cfg_error(errs, map, path,
                     "at most one of bearer_token_file and authorization.credentials_file");
        nerr++;
    }
    if (strcmp(c.auth_type, "Bearer") != 0) {
        dr_cfg_error(errs, dr_cfg_get(map, "authorization"), path,
                     "authorization.type: only Bearer is supported");
        nerr++;
    }
    sd->api.url = take_str(&c.api_server);
    sd->api.kubeconfig = take_str(&c.kubeconfig_file);
    sd->api.token_file =
        take_str(c.auth_credentials_file ? &c.auth_credentials_file : &c.bearer_token_file);
    sd->api.ca_file = take_str(&c.tls_ca_file);
    sd->api.insecure_skip_verify = c.tls_insecure_skip_verify;
    sd->own_namespace = c.own_namespace;
    sd->node_local = c.node_local;
    bool custom_http = sd->api.token_file || sd->api.ca_file || sd->api.insecure_skip_verify;
    /* the names, with room for the own namespace added at start */
    if (c.names.n && !(sd->namespaces.v = calloc(c.names.n + 2, sizeof *sd->namespaces.v)))
        nerr++;
    for (size_t i = 0; sd->namespaces.v && i < c.names.n; i++) {
        if (!c.names.v[i][0] || strchr(c.names.v[i], '/')) {
            dr_cfg_error(errs, dr_cfg_get(map, "namespaces"), path,
                         "namespaces.names[%zu]: expected a namespace, not \"%s\"", i,
                         c.names.v[i]);
            nerr++;
        }
        sd->namespaces.v[sd->namespaces.n++] = take_str(&c.names.v[i]);
    }
    nerr += parse_selectors(sd, c.selectors, path, errs);
    nerr += parse_attach_metadata(sd, c.attach_metadata, path, errs);
    if (nerr == 0)
        nerr += check_access(sd, map, path, custom_http, errs);
    dr_cfg_free_conf(kube_sd_options, &c);
    return nerr;
}

/* ---- groups by source --------------------------------------------------------------- */

uint64_t ksd_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static ksd_item **table_slot(ksd_table *t, const char *key, uint64_t h)
{
    ksd_item **pp = &t->b[h & (t->nb - 1)];
    while (*pp && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0))
        pp = &(*pp)->next;
    return pp;
}

ksd_item *ksd_table_get(const ksd_table *t, const char *key)
{
    return t->nb ? *table_slot((ksd_table *)t, key, ksd_hash(key)) : NULL;
}

ksd_item *ksd_table_take(ksd_table *t, const char *key)
{
    if (!t->nb)
        return NULL;
    ksd_item **pp = table_slot(t, key, ksd_hash(key));
    ksd_item *it = *pp;
    if (it) {
        *pp = it->next;
        t->n--;
    }
    return it;
}

/* Doubles the buckets once there are as many entries as buckets. */
static int table_make_room(ksd_table *t)
{
    if (t->nb && t->n < t->nb)
        return 0;
    uint32_t n = t->nb ? t->nb * 2 : 64;
    ksd_item **b = calloc(n, sizeof *b);
    if (!b)
        return DR_ENOMEM;
    for (uint32_t i = 0; i < t->nb; i++)
        for (ksd_item *e = t->b[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    free(t->b);
    t->b = b;
    t->nb = n;
    return 0;
}

int ksd_table_put(ksd_table *t, ksd_item *it)
{
    if (t->n >= KUBE_SD_MAX_GROUPS)
        return DR_EAGAIN; /* over the bound: not discovered */
    if (table_make_room(t) != 0)
        return DR_ENOMEM;
    it->hash = ksd_hash(it->key);
    it->next = NULL;
    *table_slot(t, it->key, it->hash) = it;
    t->n++;
    return 0;
}

void ksd_table_clear(ksd_table *t, void (*free_item)(ksd_item *it))
{
    for (uint32_t i = 0; i < t->nb; i++)
        for (ksd_item *e = t->b[i], *next; e; e = next) {
            next = e->next;
            free_item(e);
        }
    free(t->b);
    memset(t, 0, sizeof *t);
}

static void entry_free(ksd_item *it)
{
    kube_sd_entry *e = (kube_sd_entry *)it;
    group_clear(&e->g);
    free(e);
}

void ksd_remove_group(kube_sd *sd, const char *source)
{
    ksd_item *it = ksd_table_take(&sd->groups, source);
    if (!it)
        return;
    entry_free(it);
    dr_gauge_add(sd->objects, -1);
    sd->dirty = true;
}

/* Same targets with the same labels, in the same order (a pod's status
 * changes often without changing what there is to scrape). */
static bool same_group(const target_group *a, const target_group *b)
{
    if (a->targets.n != b->targets.n || !dr_labels_equal(&a->labels, &b->labels))
        return false;
    for (size_t i = 0; i < a->targets.n; i++)
        if (strcmp(a->targets.v[i], b->targets.v[i]) != 0 ||
            !dr_labels_equal(&a->per_target[i], &b->per_target[i]))
            return false;
    return true;
}

/* Takes g (its memory) as the group of its source, replacing the one
 * before; the targets are synced again only when it differs. */
int ksd_put_group(kube_sd *sd, target_group *g)
{
    kube_sd_entry *e = (kube_sd_entry *)ksd_table_get(&sd->groups, g->source);
    if (e && same_group(&e->g, g)) {
        group_clear(g);
        return 0;
    }
    if (e) {
        group_clear(&e->g);
        e->g = *g;
        e->it.key = e->g.source; /* same bytes, new copy: the hash holds */
    } else {
        if (!(e = calloc(1, sizeof *e)))
            return DR_ENOMEM;
        e->g = *g;
        e->it.key = e->g.source;
        int rc = ksd_table_put(&sd->groups, &e->it);
        if (rc != 0) {
            free(e);
            return rc;
        }
        dr_gauge_add(sd->objects, 1);
    }
    memset(g, 0, sizeof *g);
    sd->dirty = true;
    return 0;
}

void kube_sd_visit(const kube_sd *sd, void (*fn)(void *ctx, const target_group *g), void *ctx)
{
    for (uint32_t i = 0; i < sd->groups.nb; i++)
        for (const ksd_item *it = sd->groups.b[i]; it; it = it->next) {
            const target_group *g = &((const kube_sd_entry *)it)->g;
            target_group with;
            if (sd->meta && ksd_meta_attach(sd, g, &with) == 0) {
                fn(ctx, &with);
                group_clear(&with);
            } else {
                fn(ctx, g); /* without the attached labels when out of memory */
            }
        }
}

/* ---- an object's group ---------------------------------------------------------------- */

/* How one role turns its object into a group (source already made). */
typedef int (*group_builder)(const dr_jv *obj, const char *source, target_group *g, dr_buf *tmp);

/* The group of an object, known by its source "<kind>/[<namespace>/]<name>".
 * DR_EINVAL when the object has no name (or it does not fit). */
static int make_group(const dr_jv *obj, const char *kind, bool namespaced, group_builder build,
                      target_group *g)
{
    char source[600];
    const char *ns = dr_jv_str(dr_jv_path(obj, "metadata", "namespace", NULL));
    const char *name = dr_jv_str(dr_jv_path(obj, "metadata", "name", NULL));
    memset(g, 0, sizeof *g);
    if (!name || (namespaced && !ns))
        return DR_EINVAL;
    int n = namespaced ? snprintf(source, sizeof source, "%s/%s/%s", kind, ns, name)
                       : snprintf(source, sizeof source, "%s/%s", kind, name);
    if (n < 0 || (size_t)n >= sizeof source)
        return DR_EINVAL;
    dr_buf tmp = {0};
    int rc = build(obj, source, g, &tmp);
    dr_buf_free(&tmp);
    if (rc != 0)
        group_clear(g);
    return rc;
}

/* ---- pods to targets ----------------------------------------------------------------- */

/* A label name made of a Kubernetes key, as Prometheus' SanitizeLabelName
 * makes it: every character outside [a-zA-Z0-9_] becomes '_' (one for a
 * whole multi-byte character). */
void ksd_sanitized_name(dr_buf *b, const char *prefix, const char *key)
{
    dr_buf_reset(b);
    dr_buf_puts(b, prefix);
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        if ((*p & 0xC0) == 0x80)
            continue; /* the rest of a character already replaced */
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '_';
        dr_buf_putc(b, ok ? (char)*p : '_');
    }
}

/* Adds name=value when the value is not empty (Prometheus reads an empty
 * label as an absent one). */
int ksd_add_label(dr_labels *ls, const char *name, size_t name_len, const char *value)
{
    if (!value || !*value)
        return 0;
    return dr_labels_set(ls, name, name_len, value, strlen(value));
}

int ksd_add_labels(dr_labels *ls, const char *name, const char *value)
{
    return ksd_add_label(ls, name, strlen(name), value);
}

/* __meta_kubernetes_<role>_{label,labelpresent,annotation,annotationpresent}_* */
int ksd_add_object_map(dr_labels *ls, const dr_jv *map, const char *role, const char *kind,
                       dr_buf *tmp)
{
    if (!map || map->type != DR_JV_OBJECT)
        return 0;
    char value_prefix[64], present_prefix[64];
    snprintf(value_prefix, sizeof value_prefix, "__meta_kubernetes_%s_%s_", role, kind);
    snprintf(present_prefix, sizeof present_prefix, "__meta_kubernetes_%s_%spresent_", role, kind);
    for (const dr_jv *m = map->child; m; m = m->next) {
        const char *v = m->type == DR_JV_STRING ? m->str : "";
        ksd_sanitized_name(tmp, value_prefix, m->key);
        int rc = dr_labels_set(ls, tmp->p, tmp->len, v, strlen(v));
        ksd_sanitized_name(tmp, present_prefix, m->key);
        if (rc == 0)
            rc = dr_labels_set(ls, tmp->p, tmp->len, "true", 4);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static const char *pod_ready(const dr_jv *pod)
{
    const dr_jv *conds = dr_jv_path(pod, "status", "conditions", NULL);
    for (const dr_jv *c = conds && conds->type == DR_JV_ARRAY ? conds->child : NULL; c;
         c = c->next) {
        if (strcmp(dr_jv_str_or(dr_jv_get(c, "type"), ""), "Ready") != 0)
            continue;
        const char *s = dr_jv_str_or(dr_jv_get(c, "status"), "Unknown");
        return strcmp(s, "True") == 0 ? "true" : strcmp(s, "False") == 0 ? "false" : "unknown";
    }
    return "unknown";
}

/* The owner reference with controller: true, if any. */
static const dr_jv *controller_of(const dr_jv *pod)
{
    const dr_jv *refs = dr_jv_path(pod, "metadata", "ownerReferences", NULL);
    for (const dr_jv *r = refs && refs->type == DR_JV_ARRAY ? refs->child : NULL; r; r = r->next)
        if (dr_jv_is_true(dr_jv_get(r, "controller")))
            return r;
    return NULL;
}

int ksd_pod_labels(const dr_jv *pod, dr_labels *ls, dr_buf *tmp)
{
    const dr_jv *meta = dr_jv_get(pod, "metadata");
    int rc = 0;
    rc |=
        ksd_add_labels(ls, "__meta_kubernetes_namespace", dr_jv_str(dr_jv_get(meta, "namespace")));
    rc |= ksd_add_labels(ls, "__meta_kubernetes_pod_name", dr_jv_str(dr_jv_get(meta, "name")));
    rc |= ksd_add_labels(ls, "__meta_kubernetes_pod_ip",
                         dr_jv_str(dr_jv_path(pod, "status", "podIP", NULL)));
    rc |= ksd_add_labels(ls, "__meta_kubernetes_pod_ready", pod_ready(pod));
    rc |= ksd_add_labels(ls, "__meta_kubernetes_pod_phase",
                         dr_jv_str(dr_jv_path(pod, "status", "phase", NULL)));
    rc |= ksd_add_labels(ls, "__meta_kubernetes_pod_node_name",
                         dr_jv_str(dr_jv_path(pod, "spec", "nodeName", NULL)));
    rc |= ksd_add_labels(ls, "__meta_kubernetes_pod_host_ip",
                         dr_jv_str(dr_jv_path(pod, "status", "hostIP", NULL)));
    rc |= ksd_add_labels(ls, "__meta_kubernetes_pod_uid", dr_jv_str(dr_jv_get(meta, "uid")));
    const dr_jv *owner = controller_of(pod);
    if (owner) {
        rc |= ksd_add_labels(ls, "__meta_kubernetes_pod_controller_kind",
                             dr_jv_str(dr_jv_get(owner, "kind")));
        rc |= ksd_add_labels(ls, "__meta_kubernetes_pod_controller_name",
                             dr_jv_str(dr_jv_get(owner, "name")));
    }
    if (rc == 0)
        rc = ksd_add_object_map(ls, dr_jv_get(meta, "labels"), "pod", "label", tmp);
    if (rc == 0)
        rc = ksd_add_object_map(ls, dr_jv_get(meta, "annotations"), "pod", "annotation", tmp);
    return rc ? DR_ENOMEM : 0;
}

static const char *container_id(const dr_jv *statuses, const char *name)
{
    for (const dr_jv *s = statuses && statuses->type == DR_JV_ARRAY ? statuses->child : NULL; s;
         s = s->next)
        if (strcmp(dr_jv_str_or(dr_jv_get(s, "name"), ""), name) == 0)
            return dr_jv_str(dr_jv_get(s, "containerID"));
    return NULL;
}

/* Appends one target: its address and its own labels. */
int ksd_add_target(target_group *g, size_t *cap, const char *addr, dr_labels *own)
{
    if (g->targets.n + 1 >= *cap) {
        size_t n = *cap ? *cap * 2 : 8;
        char **v = realloc(g->targets.v, n * sizeof *v);
        if (!v)
            return DR_ENOMEM;
        g->targets.v = v;
        dr_labels *l = realloc(g->per_target, n * sizeof *l);
        if (!l)
            return DR_ENOMEM;
        g->per_target = l;
        *cap = n;
    }
    char *a = strdup(addr);
    if (!a)
        return DR_ENOMEM;
    g->targets.v[g->targets.n] = a;
    g->per_target[g->targets.n] = *own; /* taken */
    g->targets.n++;
    g->targets.v[g->targets.n] = NULL;
    dr_labels_init(own);
    return 0;
}

/* The targets of one container: one per port, or one at the pod IP. */
static int container_targets(target_group *g, size_t *cap, const dr_jv *c, bool init,
                             const char *ip, const char *id)
{
    const char *name = dr_jv_str_or(dr_jv_get(c, "name"), "");
    const dr_jv *ports = dr_jv_get(c, "ports");
    bool any_port = ports && ports->type == DR_JV_ARRAY && ports->child;
    const dr_jv *p = any_port ? ports->child : NULL;
    do {
        dr_labels own;
        dr_labels_init(&own);
        int rc = 0;
        rc |= ksd_add_labels(&own, "__meta_kubernetes_pod_container_name", name);
        rc |= ksd_add_labels(&own, "__meta_kubernetes_pod_container_id", id);
        rc |= ksd_add_labels(&own, "__meta_kubernetes_pod_container_image",
                             dr_jv_str(dr_jv_get(c, "image")));
        rc |= ksd_add_labels(&own, "__meta_kubernetes_pod_container_init", init ? "true" : "false");
        char addr[320];
        int64_t port = 0;
        if (p && dr_jv_int(dr_jv_get(p, "containerPort"), &port) && port > 0 && port < 65536) {
            char num[16];
            snprintf(num, sizeof num, "%lld", (long long)port);
            bool v6 = strchr(ip, ':') != NULL;
            snprintf(addr, sizeof addr, "%s%s%s:%s", v6 ? "[" : "", ip, v6 ? "]" : "", num);
            rc |= ksd_add_labels(&own, "__meta_kubernetes_pod_container_port_number", num);
            rc |= ksd_add_labels(&own, "__meta_kubernetes_pod_container_port_name",
                                 dr_jv_str(dr_jv_get(p, "name")));
            rc |= ksd_add_labels(&own, "__meta_kubernetes_pod_container_port_protocol",
                                 dr_jv_str(dr_jv_get(p, "protocol")));
        } else if (p) {
            dr_labels_free(&own);
            p = p->next; /* a port without a number is no target */
            continue;
        } else {
            snprintf(addr, sizeof addr, "%s", ip);
        }
        if (rc == 0)
            rc = ksd_add_target(g, cap, addr, &own);
        dr_labels_free(&own);
        if (rc != 0)
            return DR_ENOMEM;
        p = p ? p->next : NULL;
    } while (p);
    return 0;
}

/* The target group of a pod, as Prometheus' pod role builds it; no
 * targets when the pod has no IP yet (or any more). */
static int pod_group(const dr_jv *pod, const char *source, target_group *g, dr_buf *tmp)
{
    memset(g, 0, sizeof *g);
    dr_labels_init(&g->labels);
    if (!(g->source = strdup(source)))
        return DR_ENOMEM;
    const char *ip = dr_jv_str(dr_jv_path(pod, "status", "podIP", NULL));
    if (!ip || !*ip || strlen(ip) > 256)
        return 0;
    int rc = ksd_pod_labels(pod, &g->labels, tmp);
    size_t cap = 0;
    static const char *const lists[2] = {"containers", "initContainers"};
    static const char *const status_lists[2] = {"containerStatuses", "initContainerStatuses"};
    for (int k = 0; k < 2 && rc == 0; k++) {
        const dr_jv *cs = dr_jv_path(pod, "spec", lists[k], NULL);
        const dr_jv *st = dr_jv_path(pod, "status", status_lists[k], NULL);
        for (const dr_jv *c = cs && cs->type == DR_JV_ARRAY ? cs->child : NULL; c && rc == 0;
             c = c->next)
            rc = container_targets(g, &cap, c, k == 1, ip,
                                   container_id(st, dr_jv_str_or(dr_jv_get(c, "name"), "")));
    }
    return rc;
}

int kube_sd_pod_group(const dr_jv *pod, target_group *g)
{
    return make_group(pod, "pod", true, pod_group, g);
}

/* ---- nodes to targets ---------------------------------------------------------------- */

/* The address Prometheus' node role scrapes a node at: the first address
 * of the first type present in this order. */
static const char *node_address(const dr_jv *addresses)
{
    static const char *const order[] = {"InternalIP",  "InternalDNS",  "ExternalIP",
                                        "ExternalDNS", "LegacyHostIP", "Hostname"};
    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++)
        for (const dr_jv *a = addresses ? addresses->child : NULL; a; a = a->next)
            if (strcmp(dr_jv_str_or(dr_jv_get(a, "type"), ""), order[k]) == 0 &&
                dr_jv_str(dr_jv_get(a, "address")))
                return dr_jv_str(dr_jv_get(a, "address"));
    return NULL;
}

static int node_group_labels(const dr_jv *node, dr_labels *ls, dr_buf *tmp)
{
    const dr_jv *meta = dr_jv_get(node, "metadata");
    int rc = 0;
    rc |= ksd_add_labels(ls, "__meta_kubernetes_node_name", dr_jv_str(dr_jv_get(meta, "name")));
    rc |= ksd_add_labels(ls, "__meta_kubernetes_node_provider_id",
                         dr_jv_str(dr_jv_path(node, "spec", "providerID", NULL)));
    /* __meta_kubernetes_node_condition_<type, lowercased>: the status, lowercased */
    const dr_jv *conds = dr_jv_path(node, "status", "conditions", NULL);
    for (const dr_jv *c = conds && conds->type == DR_JV_ARRAY ? conds->child : NULL; c && rc == 0;
         c = c->next) {
        char type[128], status[64];
        snprintf(type, sizeof type, "%s", dr_jv_str_or(dr_jv_get(c, "type"), ""));
        snprintf(status, sizeof status, "%s", dr_jv_str_or(dr_jv_get(c, "status"), ""));
        for (char *p = type; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        for (char *p = status; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        ksd_sanitized_name(tmp, "__meta_kubernetes_node_condition_", type);
        rc = ksd_add_label(ls, tmp->p, tmp->len, status);
    }
    if (rc == 0)
        rc = ksd_add_object_map(ls, dr_jv_get(meta, "labels"), "node", "label", tmp);
    if (rc == 0)
        rc = ksd_add_object_map(ls, dr_jv_get(meta, "annotations"), "node", "annotation", tmp);
    return rc ? DR_ENOMEM : 0;
}

/* The one target of a node: its address and kubelet port, instance = the
 * node's name, and __meta_kubernetes_node_address_<type> with the first
 * address of each type. No address: no target (Prometheus keeps what it
 * had then; a node without addresses has nothing to scrape). */
static int node_group(const dr_jv *node, const char *source, target_group *g, dr_buf *tmp)
{
    memset(g, 0, sizeof *g);
    dr_labels_init(&g->labels);
    if (!(g->source = strdup(source)))
        return DR_ENOMEM;
    const dr_jv *addresses = dr_jv_path(node, "status", "addresses", NULL);
    const char *addr = node_address(addresses);
    if (!addr || strlen(addr) > 256)
        return 0;
    int rc = node_group_labels(node, &g->labels, tmp);
    if (rc != 0)
        return rc;
    int64_t port = 0;
    dr_jv_int(dr_jv_path(node, "status", "daemonEndpoints", "kubeletEndpoint", "Port", NULL),
              &port);
    char target[320];
    bool v6 = strchr(addr, ':') != NULL;
    snprintf(target, sizeof target, "%s%s%s:%lld", v6 ? "[" : "", addr, v6 ? "]" : "",
             (long long)port);
    dr_labels own;
    dr_labels_init(&own);
    rc |= ksd_add_labels(&own, "instance", dr_jv_str(dr_jv_path(node, "metadata", "name", NULL)));
    for (const dr_jv *a = addresses ? addresses->child : NULL; a && rc == 0; a = a->next) {
        ksd_sanitized_name(tmp, "__meta_kubernetes_node_address_",
                           dr_jv_str_or(dr_jv_get(a, "type"), ""));
        if (!dr_labels_get(&own, tmp->p, tmp->len)) /* the first of each type */
            rc = ksd_add_label(&own, tmp->p, tmp->len, dr_jv_str(dr_jv_get(a, "address")));
    }
    size_t cap = 0;
    if (rc == 0)
        rc = ksd_add_target(g, &cap, target, &own);
    dr_labels_free(&own);
    return rc ? DR_ENOMEM : 0;
}

int kube_sd_node_group(const dr_jv *node, target_group *g)
{
    return make_group(node, "node", false, node_group, g);
}

/* ---- services to targets ------------------------------------------------------------- */

/* The load balancer's IPs, comma-separated, else spec.loadBalancerIP. */
static void put_lb_ips(const dr_jv *svc, dr_buf *b)
{
    dr_buf_reset(b);
    const dr_jv *ing = dr_jv_path(svc, "status", "loadBalancer", "ingress", NULL);
    for (const dr_jv *i = ing && ing->type == DR_JV_ARRAY ? ing->child : NULL; i; i = i->next) {
        const char *ip = dr_jv_str(dr_jv_get(i, "ip"));
        if (ip && *ip)
            dr_buf_printf(b, "%s%s", b->len ? "," : "", ip);
    }
    if (!b->len)
        dr_buf_puts(b, dr_jv_str_or(dr_jv_path(svc, "spec", "loadBalancerIP", NULL), ""));
    dr_buf_putc(b, '\0');
}

/* A target per service port, at <name>.<namespace>.svc:<port>, as
 * Prometheus' service role (for probing services through a blackbox). */
static int service_group(const dr_jv *svc, const char *source, target_group *g, dr_buf *tmp)
{
    memset(g, 0, sizeof *g);
    dr_labels_init(&g->labels);
    if (!(g->source = strdup(source)))
        return DR_ENOMEM;
    const dr_jv *meta = dr_jv_get(svc, "metadata");
    const char *ns = dr_jv_str_or(dr_jv_get(meta, "namespace"), "");
    const char *name = dr_jv_str_or(dr_jv_get(meta, "name"), "");
    int rc = 0;
    rc |= ksd_add_labels(&g->labels, "__meta_kubernetes_namespace", ns);
    rc |= ksd_add_labels(&g->labels, "__meta_kubernetes_service_name", name);
    if (rc == 0)
        rc = ksd_add_object_map(&g->labels, dr_jv_get(meta, "labels"), "service", "label", tmp);
    if (rc == 0)
        rc = ksd_add_object_map(&g->labels, dr_jv_get(meta, "annotations"), "service", "annotation",
                                tmp);
    const char *type = dr_jv_str_or(dr_jv_path(svc, "spec", "type", NULL), "");
    const dr_jv *ports = dr_jv_path(svc, "spec", "ports", NULL);
    size_t cap = 0;
    for (const dr_jv *p = ports && ports->type == DR_JV_ARRAY ? ports->child : NULL; p && rc == 0;
         p = p->next) {
        int64_t port = 0;
        dr_jv_int(dr_jv_get(p, "port"), &port);
        char num[24], addr[600];
        snprintf(num, sizeof num, "%lld", (long long)port);
        if ((size_t)snprintf(addr, sizeof addr, "%s.%s.svc:%s", name, ns, num) >= sizeof addr)
            continue;
        dr_labels own;
        dr_labels_init(&own);
        rc |= ksd_add_labels(&own, "__meta_kubernetes_service_port_name",
                             dr_jv_str(dr_jv_get(p, "name")));
        rc |= ksd_add_labels(&own, "__meta_kubernetes_service_port_number", num);
        rc |= ksd_add_labels(&own, "__meta_kubernetes_service_port_protocol",
                             dr_jv_str(dr_jv_get(p, "protocol")));
        rc |= ksd_add_labels(&own, "__meta_kubernetes_service_type", type);
        if (strcmp(type, "ExternalName") == 0)
            rc |= ksd_add_labels(&own, "__meta_kubernetes_service_external_name",
                                 dr_jv_str(dr_jv_path(svc, "spec", "externalName", NULL)));
        else
            rc |= ksd_add_labels(&own, "__meta_kubernetes_service_cluster_ip",
                                 dr_jv_str(dr_jv_path(svc, "spec", "clusterIP", NULL)));
        if (strcmp(type, "LoadBalancer") == 0) {
            put_lb_ips(svc, tmp);
            rc |= ksd_add_labels(&own, "__meta_kubernetes_service_loadbalancer_ip", tmp->p);
        }
        if (rc == 0)
            rc = ksd_add_target(g, &cap, addr, &own);
        dr_labels_free(&own);
    }
    return rc ? DR_ENOMEM : 0;
}

int kube_sd_service_group(const dr_jv *svc, target_group *g)
{
    return make_group(svc, "svc", true, service_group, g);
}

/* ---- ingresses to targets ------------------------------------------------------------- */

/* Whether a TLS host pattern covers a rule's host: equal, or "*.rest"
 * with a host of as many dot-separated parts whose parts after the
 * first are the same. */
static bool host_matches(const char *pattern, const char *host)
{
    if (strcmp(pattern, host) == 0)
        return true;
    if (strcmp(pattern, "*") == 0)
        return !strchr(host, '.');
    if (strncmp(pattern, "*.", 2) != 0)
        return false;
    const char *dot = strchr(host, '.');
    return dot && strcmp(dot + 1, pattern + 2) == 0;
}

static const char *rule_scheme(const dr_jv *ingress, const char *host)
{
    const dr_jv *tls = dr_jv_path(ingress, "spec", "tls", NULL);
    for (const dr_jv *t = tls && tls->type == DR_JV_ARRAY ? tls->child : NULL; t; t = t->next) {
        const dr_jv *hosts = dr_jv_get(t, "hosts");
        for (const dr_jv *h = hosts && hosts->type == DR_JV_ARRAY ? hosts->child : NULL; h;
             h = h->next)
            if (dr_jv_str(h) && host_matches(dr_jv_str(h), host))
                return "https";
    }
    return "http";
}

static int ingress_target(target_group *g, size_t *cap, const char *host, const char *scheme,
                          const char *path)
{
    dr_labels own;
    dr_labels_init(&own);
    int rc = 0;
    rc |= ksd_add_labels(&own, "__meta_kubernetes_ingress_scheme", scheme);
    rc |= ksd_add_labels(&own, "__meta_kubernetes_ingress_host", host);
    rc |= ksd_add_labels(&own, "__meta_kubernetes_ingress_path", path && *path ? path : "/");
    if (rc == 0)
        rc = ksd_add_target(g, cap, host, &own);
    dr_labels_free(&own);
    return rc;
}

/* A target per rule and path, at the rule's host, as Prometheus' ingress
 * role (for probing through a blackbox). A rule without a host has no
 * address to probe and gives no target. */
static int ingress_group(const dr_jv *ing, const char *source, target_group *g, dr_buf *tmp)
{
    memset(g, 0, sizeof *g);
    dr_labels_init(&g->labels);
    if (!(g->source = strdup(source)))
        return DR_ENOMEM;
    const dr_jv *meta = dr_jv_get(ing, "metadata");
    int rc = 0;
    rc |= ksd_add_labels(&g->labels, "__meta_kubernetes_namespace",
                         dr_jv_str(dr_jv_get(meta, "namespace")));
    rc |= ksd_add_labels(&g->labels, "__meta_kubernetes_ingress_name",
                         dr_jv_str(dr_jv_get(meta, "name")));
    rc |= ksd_add_labels(&g->labels, "__meta_kubernetes_ingress_class_name",
                         dr_jv_str(dr_jv_path(ing, "spec", "ingressClassName", NULL)));
    if (rc == 0)
        rc = ksd_add_object_map(&g->labels, dr_jv_get(meta, "labels"), "ingress", "label", tmp);
    if (rc == 0)
        rc = ksd_add_object_map(&g->labels, dr_jv_get(meta, "annotations"), "ingress", "annotation",
                                tmp);
    const dr_jv *rules = dr_jv_path(ing, "spec", "rules", NULL);
    size_t cap = 0;
    for (const dr_jv *r = rules && rules->type == DR_JV_ARRAY ? rules->child : NULL; r && rc == 0;
         r = r->next) {
        const char *host = dr_jv_str(dr_jv_get(r, "host"));
        if (!host || !*host || strlen(host) > 256)
            continue;
        const char *scheme = rule_scheme(ing, host);
        const dr_jv *paths = dr_jv_path(r, "http", "paths", NULL);
        if (!paths || paths->type != DR_JV_ARRAY) {
            rc = ingress_target(g, &cap, host, scheme, "/");
            continue;
        }
        for (const dr_jv *p = paths->child; p && rc == 0; p = p->next)
            rc = ingress_target(g, &cap, host, scheme, dr_jv_str(dr_jv_get(p, "path")));
    }
    return rc ? DR_ENOMEM : 0;
}

int kube_sd_ingress_group(const dr_jv *ing, target_group *g)
{
    return make_group(ing, "ingress", true, ingress_group, g);
}

/* ---- the watch ----------------------------------------------------------------------- */

/* An object of the role appeared, changed or went away: its group with it. */
static void on_object(void *ctx, dr_kube_event ev, const dr_jv *obj)
{
    kube_sd *sd = ctx;
    dr_counter_add(sd->events, 1);
    target_group g;
    int rc = sd->role == KUBE_SD_NODE      ? kube_sd_node_group(obj, &g)
             : sd->role == KUBE_SD_SERVICE ? kube_sd_service_group(obj, &g)
             : sd->role == KUBE_SD_INGRESS ? kube_sd_ingress_group(obj, &g)
                                           : kube_sd_pod_group(obj, &g);
    if (rc != 0) {
        if (rc != DR_EINVAL) /* DR_EINVAL: no name to know the object by */
            dr_log(sd->job->in->inst, DR_LOG_WARN, "object not discovered",
                   "job=%s name=%s error=%s", sd->job->name,
                   dr_jv_str_or(dr_jv_path(obj, "metadata", "name", NULL), ""), dr_strerror(rc));
        return;
    }
    if (ev == DR_KUBE_DELETED || g.targets.n == 0) {
        ksd_remove_group(sd, g.source);
        group_clear(&g);
        return;
    }
    char source[600];
    snprintf(source, sizeof source, "%s", g.source);
    rc = ksd_put_group(sd, &g);
    if (rc != 0) {
        group_clear(&g);
        dr_log(sd->job->in->inst, DR_LOG_WARN, "object not discovered", "job=%s %s error=%s",
               sd->job->name, source, dr_strerror(rc));
    }
}

void ksd_synced(void *ctx)
{
    kube_sd *sd = ctx;
    for (size_t i = 0; i < sd->ninfs; i++)
        if (!dr_kube_informer_synced(sd->infs[i]))
            return;
    sd->synced = true;
    /* the first complete lists, or one after a relist: apply at once */
    sd->dirty = false;
    job_sync_targets(sd->job);
}

int ksd_watch(kube_sd *sd, const char *path, const char *fields, const char *labels,
              const dr_kube_handler *h)
{
    dr_kube_informer **v = realloc(sd->infs, (sd->ninfs + 1) * sizeof *v);
    if (!v)
        return DR_ENOMEM;
    sd->infs = v;
    dr_kube_informer *inf = dr_kube_watch(sd->kube, path, fields, labels, h, sd);
    if (!inf)
        return DR_ENOMEM;
    sd->infs[sd->ninfs++] = inf;
    return 0;
}

static const dr_kube_handler object_handler = {on_object, ksd_synced};

static char *read_own_namespace(dr_error *err)
{
    FILE *f = fopen(DR_KUBE_SA_DIR "/namespace", "r");
    char buf[256] = "";
    if (f) {
        if (!fgets(buf, sizeof buf, f))
            buf[0] = '\0';
        fclose(f);
    }
    buf[strcspn(buf, "\r\n")] = '\0';
    if (!buf[0]) {
        dr_error_set(err, "namespaces.own_namespace: cannot read %s/namespace", DR_KUBE_SA_DIR);
        return NULL;
    }
    return strdup(buf);
}

/* The field selector of a watch of objects of role sel: the configured one
 * and, when node_key is set, node_key=node (the pods on the agent's node,
 * or the node itself). NULL when there is none. */
static char *field_selector(const kube_sd *sd, kube_sd_role sel, const char *node_key,
                            const char *node)
{
    dr_buf b = {0};
    if (sd->field_selector[sel] && sd->field_selector[sel][0])
        dr_buf_puts(&b, sd->field_selector[sel]);
    if (node && node_key) {
        if (b.len)
            dr_buf_putc(&b, ',');
        dr_buf_printf(&b, "%s=%s", node_key, node);
    }
    if (!b.len || dr_buf_putc(&b, '\0') < 0) {
        dr_buf_free(&b);
        return NULL;
    }
    return b.p;
}

static const char *label_selector(const kube_sd *sd, kube_sd_role sel)
{
    return sd->label_selector[sel] && sd->label_selector[sel][0] ? sd->label_selector[sel] : NULL;
}

/* The watches of the roles whose groups are one object each. */
static int watch_objects(kube_sd *sd, const char *node)
{
    static const char *const prefix[] = {"/api/v1", "/api/v1", "/api/v1",
                                         NULL,      NULL,      "/apis/networking.k8s.io/v1"};
    static const char *const plural[] = {"pods", "nodes", "services", NULL, NULL, "ingresses"};
    const char *node_key = sd->role == KUBE_SD_POD    ? "spec.nodeName"
                           : sd->role == KUBE_SD_NODE ? "metadata.name"
                                                      : NULL;
    char *fields = field_selector(sd, sd->role, node_key, node);
    const char *labels = label_selector(sd, sd->role);
    int rc = 0;
    /* nodes belong to no namespace */
    size_t nwatch = sd->namespaces.n && sd->role != KUBE_SD_NODE ? sd->namespaces.n : 1;
    for (size_t i = 0; i < nwatch && rc == 0; i++) {
        char path[400];
        if (sd->namespaces.n && sd->role != KUBE_SD_NODE)
            snprintf(path, sizeof path, "%s/namespaces/%s/%s", prefix[sd->role],
                     sd->namespaces.v[i], plural[sd->role]);
        else
            snprintf(path, sizeof path, "%s/%s", prefix[sd->role], plural[sd->role]);
        rc = ksd_watch(sd, path, fields, labels, &object_handler);
    }
    free(fields);
    return rc;
}

/* The three watches of the endpoints roles: the role's objects, the pods
 * (of the agent's node, node-local) and the services. */
static int watch_links(kube_sd *sd, const char *node)
{
    int rc = ksd_links_new(sd, node);
    if (rc != 0)
        return rc;
    char *main_fields = field_selector(sd, sd->role, NULL, NULL);
    char *pod_fields = field_selector(sd, KUBE_SD_POD, "spec.nodeName", node);
    char *svc_fields = field_selector(sd, KUBE_SD_SERVICE, NULL, NULL);
    rc = ksd_links_watch(sd, main_fields, label_selector(sd, sd->role), pod_fields,
                         label_selector(sd, KUBE_SD_POD), svc_fields,
                         label_selector(sd, KUBE_SD_SERVICE));
    free(main_fields);
    free(pod_fields);
    free(svc_fields);
    return rc;
}

int kube_sd_start(scrape_job *job, kube_sd *sd, dr_error *err)
{
    sd->job = job;
    dr_instance *inst = job->in->inst;
    if (sd->own_namespace) {
        char *own = read_own_namespace(err);
        if (!own)
            return DR_EINVAL;
        if (!sd->namespaces.v && !(sd->namespaces.v = calloc(2, sizeof *sd->namespaces.v))) {
            free(own);
            return DR_ENOMEM;
        }
        sd->namespaces.v[sd->namespaces.n++] = own;
    }
    const char *node = dr_agent_node_name(inst->agent);
    /* services and ingresses run on no node in particular */
    if (!sd->node_local || !node || !node[0] || sd->role == KUBE_SD_SERVICE ||
        sd->role == KUBE_SD_INGRESS)
        node = NULL;
    sd->events = dr_counter_new(inst, "drover_sd_kubernetes_events_total",
                                "Watch events (added, modified, deleted) kubernetes_sd_configs "
                                "received, by role.",
                                "role", role_names[sd->role]);
    sd->objects = dr_gauge_new(inst, "drover_sd_kubernetes_objects",
                               "Objects kubernetes_sd_configs discovered targets on, by role.",
                               "role", role_names[sd->role]);
    sd->kube = dr_kube_new(inst, &sd->api, err);
    if (!sd->kube)
        return DR_EINVAL;
    int rc = sd->role == KUBE_SD_ENDPOINTS || sd->role == KUBE_SD_ENDPOINTSLICE
                 ? watch_links(sd, node)
                 : watch_objects(sd, node);
    if (rc == 0)
        rc = ksd_meta_watch(sd, node);
    dr_log(inst, DR_LOG_INFO, "kubernetes discovery", "job=%s role=%s api=%s node=%s", job->name,
           role_names[sd->role], dr_kube_url(sd->kube), node ? node : "(all)");
    return rc;
}

bool kube_sd_take_changes(kube_sd *sd)
{
    bool dirty = sd->dirty && sd->synced;
    if (dirty)
        sd->dirty = false;
    return dirty;
}

void kube_sd_stop(kube_sd *sd)
{
    if (sd->kube) {
        dr_kube_close(sd->kube);
        sd->kube = NULL;
    }
}

void kube_sd_free(kube_sd *sd)
{
    kube_sd_stop(sd);
    ksd_links_free(sd);
    ksd_table_clear(&sd->groups, entry_free);
    ksd_meta_free(sd);
    free(sd->infs);
    for (size_t i = 0; i < sd->namespaces.n; i++)
        free(sd->namespaces.v[i]);
    free(sd->namespaces.v);
    for (int r = 0; r < KUBE_SD_NROLES; r++) {
        free(sd->label_selector[r]);
        free(sd->field_selector[r]);
    }
    free(sd->api.url);
    free(sd->api.kubeconfig);
    free(sd->api.token_file);
    free(sd->api.ca_file);
    memset(sd, 0, sizeof *sd);
}
