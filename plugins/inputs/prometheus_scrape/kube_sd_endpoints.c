/*
 * kubernetes_sd_configs roles endpoints and endpointslice: a target per
 * address and port of a service's endpoints, labelled as Prometheus labels
 * them, with the labels of the service they belong to and of the pod each
 * address points at (and its container whose port matches). Each pod seen
 * behind an address also gives a target for every container port no
 * endpoint port covered, as Prometheus does.
 *
 * A group joins three kinds of objects, so the discovery keeps what the
 * joins need of each, not the objects themselves: of a pod its labels, IP
 * and container ports; of a service its labels and IP families; of an
 * Endpoints or EndpointSlice its own labels and a list of prepared targets
 * (address, endpoint labels, the pod it points at). A change of any of them
 * builds again the groups that join it.
 *
 * Node-local (agent.node_name set, node_local true): only the endpoints on
 * this node are kept (nodeName, or a targetRef of kind Node naming it), and
 * the pod watch is the node's own (spec.nodeName), so every pod an address
 * can point at is known; endpoints elsewhere are the other agents'. The
 * endpoints and services watches are cluster-wide (or per namespace):
 * Kubernetes has no field selector for an endpoint's node.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube_sd_int.h"

/* ---- what the joins keep of each object --------------------------------------------------- */

/* A container port of a pod. */
typedef struct ksd_cport {
    char *container, *image, *name, *protocol;
    int64_t number;
    bool init;
} ksd_cport;

typedef struct ksd_pod {
    ksd_item it; /* first: the table's */
    dr_labels labels;
    char *ip; /* NULL when the pod has none */
    ksd_cport *ports;
    size_t nports;
} ksd_pod;

typedef struct ksd_service {
    ksd_item it;
    dr_labels labels;
    char *primary_family; /* spec.ipFamilies[0] of a dual-stack service, else NULL */
} ksd_service;

/* One prepared target of an Endpoints or EndpointSlice. */
typedef struct ksd_ep {
    char *address; /* host:port, or the host when the port has no number */
    dr_labels own; /* the endpoint's and the port's labels */
    char *pod;     /* "namespace/name" of the pod it points at, or NULL */
    bool has_port;
    int64_t port;
    char *protocol; /* the port's */
} ksd_ep;

typedef struct ksd_obj {
    ksd_item it;
    char *source;
    dr_labels labels;   /* namespace, the object's name, labels and annotations */
    char *service;      /* "namespace/name" of its service */
    char *address_type; /* an EndpointSlice's (IPv4, IPv6, FQDN) */
    ksd_ep *eps;
    size_t neps, cap;
} ksd_obj;

struct ksd_links {
    ksd_table pods, services, objs;
    char *node; /* node-local: the endpoints on this node only */
};

static void pod_free(ksd_pod *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nports; i++) {
        free(p->ports[i].container);
        free(p->ports[i].image);
        free(p->ports[i].name);
        free(p->ports[i].protocol);
    }
    free(p->ports);
    free(p->ip);
    dr_labels_free(&p->labels);
    free((char *)p->it.key);
    free(p);
}

static void service_free(ksd_service *s)
{
    if (!s)
        return;
    dr_labels_free(&s->labels);
    free(s->primary_family);
    free((char *)s->it.key);
    free(s);
}

static void obj_free(ksd_obj *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->neps; i++) {
        free(o->eps[i].address);
        dr_labels_free(&o->eps[i].own);
        free(o->eps[i].pod);
        free(o->eps[i].protocol);
    }
    free(o->eps);
    dr_labels_free(&o->labels);
    free(o->service);
    free(o->address_type);
    free(o->source);
    free((char *)o->it.key);
    free(o);
}

static char *dup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

/* "namespace/name" of an object, or NULL when it has no name. */
static char *object_key(const dr_jv *obj)
{
    const char *ns = dr_jv_str(dr_jv_path(obj, "metadata", "namespace", NULL));
    const char *name = dr_jv_str(dr_jv_path(obj, "metadata", "name", NULL));
    if (!ns || !name || !*name)
        return NULL;
    dr_buf b = {0};
    dr_buf_printf(&b, "%s/%s", ns, name);
    if (dr_buf_putc(&b, '\0') < 0) {
        dr_buf_free(&b);
        return NULL;
    }
    return b.p;
}

/* ---- pods ------------------------------------------------------------------------------ */

static int pod_add_ports(ksd_pod *p, const dr_jv *containers, bool init)
{
    for (const dr_jv *c = containers && containers->type == DR_JV_ARRAY ? containers->child : NULL;
         c; c = c->next) {
        const dr_jv *ports = dr_jv_get(c, "ports");
        for (const dr_jv *cp = ports && ports->type == DR_JV_ARRAY ? ports->child : NULL; cp;
             cp = cp->next) {
            int64_t number = 0;
            dr_jv_int(dr_jv_get(cp, "containerPort"), &number);
            ksd_cport *v = realloc(p->ports, (p->nports + 1) * sizeof *v);
            if (!v)
                return DR_ENOMEM;
            p->ports = v;
            ksd_cport *k = &p->ports[p->nports++];
            memset(k, 0, sizeof *k);
            k->number = number;
            k->init = init;
            k->container = dup_or_null(dr_jv_str(dr_jv_get(c, "name")));
            k->image = dup_or_null(dr_jv_str(dr_jv_get(c, "image")));
            k->name = dup_or_null(dr_jv_str(dr_jv_get(cp, "name")));
            /* the API server defaults the protocol; a recorded object may lack it */
            k->protocol = strdup(dr_jv_str_or(dr_jv_get(cp, "protocol"), "TCP"));
        }
    }
    return 0;
}

static ksd_pod *pod_from(const dr_jv *obj, char *key)
{
    ksd_pod *p = calloc(1, sizeof *p);
    if (!p) {
        free(key);
        return NULL;
    }
    p->it.key = key;
    dr_labels_init(&p->labels);
    dr_buf tmp = {0};
    int rc = ksd_pod_labels(obj, &p->labels, &tmp);
    dr_buf_free(&tmp);
    p->ip = dup_or_null(dr_jv_str(dr_jv_path(obj, "status", "podIP", NULL)));
    /* containers first, then init containers, as Prometheus numbers them */
    if (rc == 0)
        rc = pod_add_ports(p, dr_jv_path(obj, "spec", "containers", NULL), false);
    if (rc == 0)
        rc = pod_add_ports(p, dr_jv_path(obj, "spec", "initContainers", NULL), true);
    if (rc != 0) {
        pod_free(p);
        return NULL;
    }
    return p;
}

/* ---- services -------------------------------------------------------------------------- */

static ksd_service *service_from(const dr_jv *obj, char *key)
{
    ksd_service *s = calloc(1, sizeof *s);
    if (!s) {
        free(key);
        return NULL;
    }
    s->it.key = key;
    dr_labels_init(&s->labels);
    dr_buf tmp = {0};
    const dr_jv *meta = dr_jv_get(obj, "metadata");
    int rc = 0;
    rc |= ksd_add_labels(&s->labels, "__meta_kubernetes_namespace",
                         dr_jv_str(dr_jv_get(meta, "namespace")));
    rc |= ksd_add_labels(&s->labels, "__meta_kubernetes_service_name",
                         dr_jv_str(dr_jv_get(meta, "name")));
    if (rc == 0)
        rc = ksd_add_object_map(&s->labels, dr_jv_get(meta, "labels"), "service", "label", &tmp);
    if (rc == 0)
        rc = ksd_add_object_map(&s->labels, dr_jv_get(meta, "annotations"), "service", "annotation",
                                &tmp);
    dr_buf_free(&tmp);
    /* a dual-stack service has a slice per family: only its primary one's
     * targets count (the other's would be the same pods again) */
    const char *policy = dr_jv_str_or(dr_jv_path(obj, "spec", "ipFamilyPolicy", NULL), "");
    const dr_jv *fams = dr_jv_path(obj, "spec", "ipFamilies", NULL);
    if ((strcmp(policy, "PreferDualStack") == 0 || strcmp(policy, "RequireDualStack") == 0) &&
        fams && fams->type == DR_JV_ARRAY && fams->child && dr_jv_str(fams->child))
        s->primary_family = strdup(dr_jv_str(fams->child));
    if (rc != 0) {
        service_free(s);
        return NULL;
    }
    return s;
}

/* ---- Endpoints and EndpointSlices ------------------------------------------------------ */

static ksd_ep *obj_new_ep(ksd_obj *o)
{
    if (o->neps == o->cap) {
        size_t n = o->cap ? o->cap * 2 : 8;
        ksd_ep *v = realloc(o->eps, n * sizeof *v);
        if (!v)
            return NULL;
        o->eps = v;
        o->cap = n;
    }
    ksd_ep *e = &o->eps[o->neps++];
    memset(e, 0, sizeof *e);
    dr_labels_init(&e->own);
    return e;
}

/* host:port (IPv6 bracketed), or the host alone without a port. */
static char *join_host_port(const char *host, bool has_port, int64_t port)
{
    dr_buf b = {0};
    if (!has_port)
        dr_buf_puts(&b, host);
    else if (strchr(host, ':'))
        dr_buf_printf(&b, "[%s]:%lld", host, (long long)port);
    else
        dr_buf_printf(&b, "%s:%lld", host, (long long)port);
    if (dr_buf_putc(&b, '\0') < 0) {
        dr_buf_free(&b);
        return NULL;
    }
    return b.p;
}

/* The pod a targetRef names, "namespace/name", or NULL. */
static char *pod_ref(const dr_jv *ref, const char *obj_ns)
{
    if (!ref || strcmp(dr_jv_str_or(dr_jv_get(ref, "kind"), ""), "Pod") != 0)
        return NULL;
    const char *name = dr_jv_str(dr_jv_get(ref, "name"));
    if (!name)
        return NULL;
    dr_buf b = {0};
    dr_buf_printf(&b, "%s/%s", dr_jv_str_or(dr_jv_get(ref, "namespace"), obj_ns), name);
    if (dr_buf_putc(&b, '\0') < 0) {
        dr_buf_free(&b);
        return NULL;
    }
    return b.p;
}

/* Node-local: whether an endpoint is on the agent's node. */
static bool on_node(const char *node, const char *node_name, const dr_jv *ref)
{
    if (!node)
        return true;
    if (node_name)
        return strcmp(node_name, node) == 0;
    return ref && strcmp(dr_jv_str_or(dr_jv_get(ref, "kind"), ""), "Node") == 0 &&
           strcmp(dr_jv_str_or(dr_jv_get(ref, "name"), ""), node) == 0;
}

static int obj_labels(ksd_obj *o, const dr_jv *obj, const char *role, dr_buf *tmp)
{
    const dr_jv *meta = dr_jv_get(obj, "metadata");
    char name[64];
    snprintf(name, sizeof name, "__meta_kubernetes_%s_name", role);
    int rc = 0;
    rc |= ksd_add_labels(&o->labels, "__meta_kubernetes_namespace",
                         dr_jv_str(dr_jv_get(meta, "namespace")));
    rc |= ksd_add_labels(&o->labels, name, dr_jv_str(dr_jv_get(meta, "name")));
    if (rc == 0)
        rc = ksd_add_object_map(&o->labels, dr_jv_get(meta, "labels"), role, "label", tmp);
    if (rc == 0)
        rc =
            ksd_add_object_map(&o->labels, dr_jv_get(meta, "annotations"), role, "annotation", tmp);
    return rc ? DR_ENOMEM : 0;
}

static void add_bool_label(dr_labels *ls, const char *name, const dr_jv *v)
{
    if (v && (v->type == DR_JV_TRUE || v->type == DR_JV_FALSE))
        ksd_add_labels(ls, name, v->type == DR_JV_TRUE ? "true" : "false");
}

/* The targets of one address of an Endpoints subset and one of its ports. */
static int endpoints_address(ksd_obj *o, const dr_jv *addr, const dr_jv *port, const char *ready,
                             const char *ns)
{
    const char *ip = dr_jv_str(dr_jv_get(addr, "ip"));
    if (!ip || !*ip || strlen(ip) > 256)
        return 0;
    ksd_ep *e = obj_new_ep(o);
    if (!e)
        return DR_ENOMEM;
    e->has_port = dr_jv_int(dr_jv_get(port, "port"), &e->port);
    e->address = join_host_port(ip, true, e->port);
    e->protocol = dup_or_null(dr_jv_str_or(dr_jv_get(port, "protocol"), "TCP"));
    const dr_jv *ref = dr_jv_get(addr, "targetRef");
    e->pod = pod_ref(ref, ns);
    int rc = e->address ? 0 : DR_ENOMEM;
    rc |= ksd_add_labels(&e->own, "__meta_kubernetes_endpoint_port_name",
                         dr_jv_str(dr_jv_get(port, "name")));
    rc |= ksd_add_labels(&e->own, "__meta_kubernetes_endpoint_port_protocol", e->protocol);
    rc |= ksd_add_labels(&e->own, "__meta_kubernetes_endpoint_ready", ready);
    if (ref) {
        rc |= ksd_add_labels(&e->own, "__meta_kubernetes_endpoint_address_target_kind",
                             dr_jv_str(dr_jv_get(ref, "kind")));
        rc |= ksd_add_labels(&e->own, "__meta_kubernetes_endpoint_address_target_name",
                             dr_jv_str(dr_jv_get(ref, "name")));
    }
    rc |= ksd_add_labels(&e->own, "__meta_kubernetes_endpoint_node_name",
                         dr_jv_str(dr_jv_get(addr, "nodeName")));
    rc |= ksd_add_labels(&e->own, "__meta_kubernetes_endpoint_hostname",
                         dr_jv_str(dr_jv_get(addr, "hostname")));
    return rc ? DR_ENOMEM : 0;
}

static int endpoints_addresses(ksd_obj *o, const dr_jv *list, const dr_jv *port, const char *ready,
                               const char *ns, const char *node)
{
    int rc = 0;
    for (const dr_jv *a = list && list->type == DR_JV_ARRAY ? list->child : NULL; a && rc == 0;
         a = a->next)
        if (on_node(node, dr_jv_str(dr_jv_get(a, "nodeName")), dr_jv_get(a, "targetRef")))
            rc = endpoints_address(o, a, port, ready, ns);
    return rc;
}

/* An Endpoints object: its subsets' addresses (ready, then not ready) by
 * their ports; its service is the one of the same name. */
static int parse_endpoints(ksd_obj *o, const dr_jv *obj, const char *node, dr_buf *tmp)
{
    const char *ns = dr_jv_str_or(dr_jv_path(obj, "metadata", "namespace", NULL), "");
    int rc = obj_labels(o, obj, "endpoints", tmp);
    if (rc == 0 && !(o->service = strdup(o->it.key)))
        rc = DR_ENOMEM;
    const dr_jv *subsets = dr_jv_get(obj, "subsets");
    for (const dr_jv *ss = subsets && subsets->type == DR_JV_ARRAY ? subsets->child : NULL;
         ss && rc == 0; ss = ss->next) {
        const dr_jv *ports = dr_jv_get(ss, "ports");
        for (const dr_jv *p = ports && ports->type == DR_JV_ARRAY ? ports->child : NULL;
             p && rc == 0; p = p->next) {
            rc = endpoints_addresses(o, dr_jv_get(ss, "addresses"), p, "true", ns, node);
            if (rc == 0)
                rc = endpoints_addresses(o, dr_jv_get(ss, "notReadyAddresses"), p, "false", ns,
                                         node);
        }
    }
    return rc;
}

/* __meta_kubernetes_endpointslice_endpoint_topology_{,present_}<key> */
static int slice_topology(dr_labels *ls, const dr_jv *topo, dr_buf *tmp)
{
    int rc = 0;
    for (const dr_jv *t = topo && topo->type == DR_JV_OBJECT ? topo->child : NULL; t && rc == 0;
         t = t->next) {
        ksd_sanitized_name(tmp, "__meta_kubernetes_endpointslice_endpoint_topology_", t->key);
        rc = ksd_add_label(ls, tmp->p, tmp->len, t->type == DR_JV_STRING ? t->str : "");
        ksd_sanitized_name(tmp, "__meta_kubernetes_endpointslice_endpoint_topology_present_",
                           t->key);
        if (rc == 0)
            rc = ksd_add_label(ls, tmp->p, tmp->len, "true");
    }
    return rc;
}

/* The target of one address of an endpoint of a slice and one port. */
static int slice_address(ksd_obj *o, const char *addr, const dr_jv *ep, const dr_jv *port,
                         const char *ns, dr_buf *tmp)
{
    if (strlen(addr) > 256)
        return 0;
    ksd_ep *e = obj_new_ep(o);
    if (!e)
        return DR_ENOMEM;
    e->has_port = dr_jv_int(dr_jv_get(port, "port"), &e->port);
    e->address = join_host_port(addr, e->has_port, e->port);
    e->protocol = dup_or_null(dr_jv_str(dr_jv_get(port, "protocol")));
    const dr_jv *ref = dr_jv_get(ep, "targetRef");
    e->pod = pod_ref(ref, ns);
    dr_labels *ls = &e->own;
    int rc = e->address ? 0 : DR_ENOMEM;
    rc |= ksd_add_labels(ls, "__meta_kubernetes_endpointslice_port_name",
                         dr_jv_str(dr_jv_get(port, "name")));
    rc |= ksd_add_labels(ls, "__meta_kubernetes_endpointslice_port_protocol", e->protocol);
    if (e->has_port) {
        char num[24];
        snprintf(num, sizeof num, "%lld", (long long)e->port);
        rc |= ksd_add_labels(ls, "__meta_kubernetes_endpointslice_port", num);
    }
    rc |= ksd_add_labels(ls, "__meta_kubernetes_endpointslice_port_app_protocol",
                         dr_jv_str(dr_jv_get(port, "appProtocol")));
    const dr_jv *cond = dr_jv_get(ep, "conditions");
    add_bool_label(ls, "__meta_kubernetes_endpointslice_endpoint_conditions_ready",
                   dr_jv_get(cond, "ready"));
    add_bool_label(ls, "__meta_kubernetes_endpointslice_endpoint_conditions_serving",
                   dr_jv_get(cond, "serving"));
    add_bool_label(ls, "__meta_kubernetes_endpointslice_endpoint_conditions_terminating",
                   dr_jv_get(cond, "terminating"));
    rc |= ksd_add_labels(ls, "__meta_kubernetes_endpointslice_endpoint_hostname",
                         dr_jv_str(dr_jv_get(ep, "hostname")));
    if (ref) {
        rc |= ksd_add_labels(ls, "__meta_kubernetes_endpointslice_address_target_kind",
                             dr_jv_str(dr_jv_get(ref, "kind")));
        rc |= ksd_add_labels(ls, "__meta_kubernetes_endpointslice_address_target_name",
                             dr_jv_str(dr_jv_get(ref, "name")));
    }
    rc |= ksd_add_labels(ls, "__meta_kubernetes_endpointslice_endpoint_node_name",
                         dr_jv_str(dr_jv_get(ep, "nodeName")));
    rc |= ksd_add_labels(ls, "__meta_kubernetes_endpointslice_endpoint_zone",
                         dr_jv_str(dr_jv_get(ep, "zone")));
    if (rc == 0)
        rc = slice_topology(ls, dr_jv_get(ep, "deprecatedTopology"), tmp);
    return rc ? DR_ENOMEM : 0;
}

/* An EndpointSlice: every endpoint by every port by every address; its
 * service is named by its kubernetes.io/service-name label. */
static int parse_slice(ksd_obj *o, const dr_jv *obj, const char *node, dr_buf *tmp)
{
    const char *ns = dr_jv_str_or(dr_jv_path(obj, "metadata", "namespace", NULL), "");
    int rc = obj_labels(o, obj, "endpointslice", tmp);
    o->address_type = dup_or_null(dr_jv_str(dr_jv_get(obj, "addressType")));
    rc |=
        ksd_add_labels(&o->labels, "__meta_kubernetes_endpointslice_address_type", o->address_type);
    const char *svc = dr_jv_str(
        dr_jv_get(dr_jv_path(obj, "metadata", "labels", NULL), "kubernetes.io/service-name"));
    if (svc) {
        dr_buf b = {0};
        dr_buf_printf(&b, "%s/%s", ns, svc);
        if (dr_buf_putc(&b, '\0') < 0)
            rc = DR_ENOMEM;
        o->service = b.p;
    }
    const dr_jv *eps = dr_jv_get(obj, "endpoints");
    const dr_jv *ports = dr_jv_get(obj, "ports");
    for (const dr_jv *ep = eps && eps->type == DR_JV_ARRAY ? eps->child : NULL; ep && rc == 0;
         ep = ep->next) {
        if (!on_node(node, dr_jv_str(dr_jv_get(ep, "nodeName")), dr_jv_get(ep, "targetRef")))
            continue;
        const dr_jv *addrs = dr_jv_get(ep, "addresses");
        for (const dr_jv *p = ports && ports->type == DR_JV_ARRAY ? ports->child : NULL;
             p && rc == 0; p = p->next)
            for (const dr_jv *a = addrs && addrs->type == DR_JV_ARRAY ? addrs->child : NULL;
                 a && rc == 0; a = a->next)
                if (dr_jv_str(a) && *dr_jv_str(a))
                    rc = slice_address(o, dr_jv_str(a), ep, p, ns, tmp);
    }
    return rc ? DR_ENOMEM : 0;
}

static ksd_obj *obj_from(const kube_sd *sd, const dr_jv *obj, char *key)
{
    ksd_obj *o = calloc(1, sizeof *o);
    if (!o) {
        free(key);
        return NULL;
    }
    o->it.key = key;
    dr_labels_init(&o->labels);
    bool slice = sd->role == KUBE_SD_ENDPOINTSLICE;
    dr_buf tmp = {0};
    dr_buf_printf(&tmp, "%s/%s", slice ? "endpointslice" : "endpoints", key);
    int rc = dr_buf_putc(&tmp, '\0') < 0 ? DR_ENOMEM : 0;
    if (rc == 0 && !(o->source = strdup(tmp.p)))
        rc = DR_ENOMEM;
    if (rc == 0)
        rc = slice ? parse_slice(o, obj, sd->links->node, &tmp)
                   : parse_endpoints(o, obj, sd->links->node, &tmp);
    dr_buf_free(&tmp);
    if (rc != 0) {
        obj_free(o);
        return NULL;
    }
    return o;
}

/* ---- the joined group ------------------------------------------------------------------ */

/* The pods seen behind an object's addresses, with the ports the
 * endpoints covered. */
typedef struct seen_pod {
    const ksd_pod *pod;
    int64_t *ports;
    size_t nports;
} seen_pod;

static seen_pod *seen_entry(seen_pod **seen, size_t *n, const ksd_pod *pod)
{
    for (size_t i = 0; i < *n; i++)
        if ((*seen)[i].pod == pod)
            return &(*seen)[i];
    seen_pod *v = realloc(*seen, (*n + 1) * sizeof *v);
    if (!v)
        return NULL;
    *seen = v;
    seen_pod *s = &v[(*n)++];
    memset(s, 0, sizeof *s);
    s->pod = pod;
    return s;
}

static int set_container_labels(dr_labels *ls, const ksd_cport *c, int64_t number,
                                const char *protocol)
{
    char num[24];
    snprintf(num, sizeof num, "%lld", (long long)number);
    int rc = 0;
    rc |= ksd_add_labels(ls, "__meta_kubernetes_pod_container_name", c->container);
    rc |= ksd_add_labels(ls, "__meta_kubernetes_pod_container_image", c->image);
    rc |= ksd_add_labels(ls, "__meta_kubernetes_pod_container_port_name", c->name);
    rc |= ksd_add_labels(ls, "__meta_kubernetes_pod_container_port_number", num);
    rc |= ksd_add_labels(ls, "__meta_kubernetes_pod_container_port_protocol", protocol);
    rc |= ksd_add_labels(ls, "__meta_kubernetes_pod_container_init", c->init ? "true" : "false");
    return rc;
}

/* own += the pod's labels and, when a container port is the endpoint's,
 * that container's (the last container with it, as Prometheus' loop). */
static int join_pod(dr_labels *own, const ksd_pod *pod, const ksd_ep *e, bool endpoints_role)
{
    int rc = 0;
    for (uint32_t i = 0; i < pod->labels.n && rc == 0; i++) {
        const dr_label *l = &pod->labels.v[i];
        rc = dr_labels_set(own, l->name, l->name_len, l->value, l->value_len);
    }
    const ksd_cport *match = NULL;
    for (size_t i = 0; i < pod->nports && e->has_port; i++)
        if (pod->ports[i].number == e->port &&
            (!match || strcmp(match->container ? match->container : "",
                              pod->ports[i].container ? pod->ports[i].container : "") != 0))
            match = &pod->ports[i];
    if (match && rc == 0)
        rc = set_container_labels(own, match, e->port,
                                  endpoints_role ? e->protocol : match->protocol);
    return rc;
}

static bool port_covered(const seen_pod *s, int64_t number)
{
    for (size_t i = 0; i < s->nports; i++)
        if (s->ports[i] == number)
            return true;
    return false;
}

/* The targets of a seen pod's container ports no endpoint covered. */
static int uncovered_ports(target_group *g, size_t *cap, const seen_pod *s)
{
    const ksd_pod *pod = s->pod;
    int rc = 0;
    for (size_t i = 0; i < pod->nports && pod->ip && rc == 0; i++) {
        const ksd_cport *c = &pod->ports[i];
        if (port_covered(s, c->number))
            continue;
        char *addr = join_host_port(pod->ip, true, c->number);
        dr_labels own;
        dr_labels_init(&own);
        rc = addr ? set_container_labels(&own, c, c->number, c->protocol) : DR_ENOMEM;
        for (uint32_t k = 0; k < pod->labels.n && rc == 0; k++) {
            const dr_label *l = &pod->labels.v[k];
            rc = dr_labels_set(&own, l->name, l->name_len, l->value, l->value_len);
        }
        if (rc == 0)
            rc = ksd_add_target(g, cap, addr, &own);
        dr_labels_free(&own);
        free(addr);
    }
    return rc;
}

static int copy_labels_into(dr_labels *dst, const dr_labels *src)
{
    int rc = 0;
    for (uint32_t i = 0; i < src->n && rc == 0; i++)
        rc = dr_labels_set(dst, src->v[i].name, src->v[i].name_len, src->v[i].value,
                           src->v[i].value_len);
    return rc;
}

static int build_group(kube_sd *sd, const ksd_obj *o, target_group *g)
{
    ksd_links *lk = sd->links;
    bool endpoints_role = sd->role == KUBE_SD_ENDPOINTS;
    memset(g, 0, sizeof *g);
    dr_labels_init(&g->labels);
    if (!(g->source = strdup(o->source)))
        return DR_ENOMEM;
    const ksd_service *svc =
        o->service ? (const ksd_service *)ksd_table_get(&lk->services, o->service) : NULL;
    int rc = svc ? copy_labels_into(&g->labels, &svc->labels) : 0;
    if (rc == 0)
        rc = copy_labels_into(&g->labels, &o->labels);
    if (rc != 0)
        return DR_ENOMEM;
    if (!endpoints_role && svc && svc->primary_family && o->address_type &&
        strcmp(svc->primary_family, o->address_type) != 0)
        return 0; /* the secondary family's slice of a dual-stack service */
    seen_pod *seen = NULL;
    size_t nseen = 0, cap = 0;
    for (size_t i = 0; i < o->neps && rc == 0; i++) {
        const ksd_ep *e = &o->eps[i];
        dr_labels own;
        dr_labels_init(&own);
        rc = dr_labels_copy(&own, &e->own);
        const ksd_pod *pod = e->pod ? (const ksd_pod *)ksd_table_get(&lk->pods, e->pod) : NULL;
        if (pod && rc == 0) {
            seen_pod *s = seen_entry(&seen, &nseen, pod);
            rc = s ? join_pod(&own, pod, e, endpoints_role) : DR_ENOMEM;
            if (rc == 0 && e->has_port) {
                int64_t *v = realloc(s->ports, (s->nports + 1) * sizeof *v);
                if (v) {
                    s->ports = v;
                    s->ports[s->nports++] = e->port;
                } else {
                    rc = DR_ENOMEM;
                }
            }
        }
        if (rc == 0)
            rc = ksd_add_target(g, &cap, e->address, &own);
        dr_labels_free(&own);
    }
    for (size_t i = 0; i < nseen && rc == 0; i++)
        rc = uncovered_ports(g, &cap, &seen[i]);
    for (size_t i = 0; i < nseen; i++)
        free(seen[i].ports);
    free(seen);
    return rc ? DR_ENOMEM : 0;
}

/* Builds the object's group again and puts it in the discovery's table. */
static void refresh_group(kube_sd *sd, const ksd_obj *o)
{
    target_group g;
    int rc = build_group(sd, o, &g);
    if (rc == 0 && g.targets.n == 0) {
        ksd_remove_group(sd, o->source);
        group_clear(&g);
        return;
    }
    if (rc == 0)
        rc = ksd_put_group(sd, &g);
    if (rc != 0) {
        group_clear(&g);
        dr_log(sd->job->in->inst, DR_LOG_WARN, "object not discovered", "job=%s %s error=%s",
               sd->job->name, o->source, dr_strerror(rc));
    }
}

static bool obj_points_at_pod(const ksd_obj *o, const char *pod)
{
    for (size_t i = 0; i < o->neps; i++)
        if (o->eps[i].pod && strcmp(o->eps[i].pod, pod) == 0)
            return true;
    return false;
}

/* The groups that join a pod or a service changed with it. */
static void refresh_joining(kube_sd *sd, ksd_kind kind, const char *key)
{
    ksd_table *t = &sd->links->objs;
    for (uint32_t i = 0; i < t->nb; i++)
        for (ksd_item *it = t->b[i]; it; it = it->next) {
            const ksd_obj *o = (const ksd_obj *)it;
            bool joins = kind == KSD_OBJ_SERVICE ? o->service && strcmp(o->service, key) == 0
                                                 : obj_points_at_pod(o, key);
            if (joins)
                refresh_group(sd, o);
        }
}

/* ---- events ---------------------------------------------------------------------------- */

static void free_item(ksd_kind kind, ksd_item *it)
{
    if (kind == KSD_OBJ_POD)
        pod_free((ksd_pod *)it);
    else if (kind == KSD_OBJ_SERVICE)
        service_free((ksd_service *)it);
    else
        obj_free((ksd_obj *)it);
}

static ksd_table *table_of(ksd_links *lk, ksd_kind kind)
{
    return kind == KSD_OBJ_POD ? &lk->pods : kind == KSD_OBJ_SERVICE ? &lk->services : &lk->objs;
}

void ksd_links_event(kube_sd *sd, ksd_kind kind, dr_kube_event ev, const dr_jv *obj)
{
    ksd_links *lk = sd->links;
    dr_counter_add(sd->events, 1);
    char *key = object_key(obj);
    if (!key)
        return;
    ksd_table *t = table_of(lk, kind);
    ksd_item *old = ksd_table_take(t, key);
    ksd_item *now = NULL;
    if (ev != DR_KUBE_DELETED) {
        now = kind == KSD_OBJ_POD       ? (ksd_item *)pod_from(obj, strdup(key))
              : kind == KSD_OBJ_SERVICE ? (ksd_item *)service_from(obj, strdup(key))
                                        : (ksd_item *)obj_from(sd, obj, strdup(key));
        if (!now || !now->key || ksd_table_put(t, now) != 0) {
            dr_log(sd->job->in->inst, DR_LOG_WARN, "object not discovered", "job=%s %s/%s",
                   sd->job->name, kind == KSD_OBJ_POD ? "pod" : "object", key);
            free_item(kind, now);
            now = NULL;
        }
    }
    if (kind == KSD_OBJ_MAIN) {
        if (now)
            refresh_group(sd, (ksd_obj *)now);
        else if (old)
            ksd_remove_group(sd, ((ksd_obj *)old)->source);
    } else {
        refresh_joining(sd, kind, key);
    }
    free_item(kind, old);
    free(key);
}

int ksd_links_new(kube_sd *sd, const char *node)
{
    ksd_links *lk = calloc(1, sizeof *lk);
    if (!lk)
        return DR_ENOMEM;
    if (node && !(lk->node = strdup(node))) {
        free(lk);
        return DR_ENOMEM;
    }
    sd->links = lk;
    return 0;
}

static void on_main(void *ctx, dr_kube_event ev, const dr_jv *obj)
{
    ksd_links_event(ctx, KSD_OBJ_MAIN, ev, obj);
}

static void on_pod(void *ctx, dr_kube_event ev, const dr_jv *obj)
{
    ksd_links_event(ctx, KSD_OBJ_POD, ev, obj);
}

static void on_service(void *ctx, dr_kube_event ev, const dr_jv *obj)
{
    ksd_links_event(ctx, KSD_OBJ_SERVICE, ev, obj);
}

static const dr_kube_handler main_handler = {on_main, ksd_synced};
static const dr_kube_handler pod_handler = {on_pod, ksd_synced};
static const dr_kube_handler service_handler = {on_service, ksd_synced};

static int open_watch(kube_sd *sd, const char *prefix, const char *ns, const char *plural,
                      const char *fields, const char *labels, const dr_kube_handler *h)
{
    char path[400];
    if (ns)
        snprintf(path, sizeof path, "%s/namespaces/%s/%s", prefix, ns, plural);
    else
        snprintf(path, sizeof path, "%s/%s", prefix, plural);
    return ksd_watch(sd, path, fields, labels, h);
}

int ksd_links_watch(kube_sd *sd, const char *main_fields, const char *main_labels,
                    const char *pod_fields, const char *pod_labels, const char *svc_fields,
                    const char *svc_labels)
{
    bool slice = sd->role == KUBE_SD_ENDPOINTSLICE;
    size_t nwatch = sd->namespaces.n ? sd->namespaces.n : 1;
    int rc = 0;
    for (size_t i = 0; i < nwatch && rc == 0; i++) {
        const char *ns = sd->namespaces.n ? sd->namespaces.v[i] : NULL;
        rc = open_watch(sd, slice ? "/apis/discovery.k8s.io/v1" : "/api/v1", ns,
                        slice ? "endpointslices" : "endpoints", main_fields, main_labels,
                        &main_handler);
        if (rc == 0)
            rc = open_watch(sd, "/api/v1", ns, "pods", pod_fields, pod_labels, &pod_handler);
        if (rc == 0)
            rc =
                open_watch(sd, "/api/v1", ns, "services", svc_fields, svc_labels, &service_handler);
    }
    return rc;
}

static void pod_item_free(ksd_item *it)
{
    pod_free((ksd_pod *)it);
}

static void service_item_free(ksd_item *it)
{
    service_free((ksd_service *)it);
}

static void obj_item_free(ksd_item *it)
{
    obj_free((ksd_obj *)it);
}

void ksd_links_free(kube_sd *sd)
{
    ksd_links *lk = sd->links;
    if (!lk)
        return;
    ksd_table_clear(&lk->pods, pod_item_free);
    ksd_table_clear(&lk->services, service_item_free);
    ksd_table_clear(&lk->objs, obj_item_free);
    free(lk->node);
    free(lk);
    sd->links = NULL;
}
