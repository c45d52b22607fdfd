/*
 * Kubernetes API client: configuration, informers (list + watch) and Events.
 *
 * An informer's life:
 *
 *   LIST (paged, limit=500) --all pages--> synced --> WATCH from the list's
 *   resourceVersion, with bookmarks, for a random 5 to 10 minutes --ends-->
 *   WATCH again from the last resourceVersion seen (an event's or a
 *   bookmark's) ... and so on.
 *
 * Only two things bring a LIST back: a 410 Gone (the resourceVersion fell
 * out of the server's history: the watch cannot resume) and having no
 * resourceVersion at all (the first list failed). Errors (no answer, 5xx,
 * 429) wait with exponential backoff and full jitter, then resume the
 * watch. That keeps a thousand agents from LISTing the API server every
 * time it restarts: each resumes its watch instead.
 *
 * Objects are tracked by namespace/name with their uid, which is all a
 * relist needs to report the objects that went away while the watch was
 * broken.
 */
#include "kube.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "buf.h"
#include "config.h"
#include "http_client.h"
#include "json.h"

#define KUBE_LIST_PAGE 500
#define KUBE_WATCH_MIN_S 300
#define KUBE_WATCH_MAX_S 600
#define KUBE_BACKOFF_MIN_MS 500
#define KUBE_BACKOFF_MAX_MS 30000
#define KUBE_DEFAULT_MAX_LIST (64u << 20)
#define KUBE_MAX_URL 4096

const dr_option dr_kube_options[] = {
    {"api.url", DR_OPT_STRING, offsetof(dr_kube_conf, url), NULL, 0, NULL, 0, 0,
     "The API server, `https://host:port`. Unset: in a pod, the in-cluster address "
     "(KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT); elsewhere, the current context "
     "of `api.kubeconfig`."},
    {"api.kubeconfig", DR_OPT_STRING, offsetof(dr_kube_conf, kubeconfig), NULL, 0, NULL, 0, 0,
     "A kubeconfig file, for running outside a cluster; unset: $KUBECONFIG. Its current "
     "context's server, certificate-authority(-data), insecure-skip-tls-verify, token, "
     "tokenFile and client-certificate/key(-data) are used; exec and auth-provider plugins "
     "are not."},
    {"api.token_file", DR_OPT_STRING, offsetof(dr_kube_conf, token_file), NULL, 0, NULL, 0, 0,
     "Bearer token file, read again whenever it changes (bound service-account tokens "
     "rotate). Unset in a pod: " DR_KUBE_SA_DIR "/token."},
    {"api.ca_file", DR_OPT_STRING, offsetof(dr_kube_conf, ca_file), NULL, 0, NULL, 0, 0,
     "CA bundle (PEM) that verifies the API server. Unset in a pod: " DR_KUBE_SA_DIR "/ca.crt."},
    {"api.insecure_skip_verify", DR_OPT_BOOL, offsetof(dr_kube_conf, insecure_skip_verify), "false",
     0, NULL, 0, 0, "Do not verify the API server's certificate (an explicit opt-out)."},
    {"api.timeout", DR_OPT_DURATION, offsetof(dr_kube_conf, timeout_ms), "30s", 0, NULL, 1000,
     600000, "Time limit of a LIST request (watches last 5 to 10 minutes each)."},
    {"api.max_list_bytes", DR_OPT_SIZE, offsetof(dr_kube_conf, max_list_bytes), "64MiB", 0, NULL,
     1 << 20, 1LL << 32,
     "Largest answer kept: a LIST page of 500 objects, or one watch event. A larger one is an "
     "error (logged, retried)."},
    {0},
};

/* ---- the client --------------------------------------------------------------------- */

struct dr_kube {
    dr_instance *inst;
    uv_loop_t *loop;
    char *url; /* without a trailing slash */
    dr_http_client *http;
    dr_kube_conf conf;
    dr_kube_informer *informers;
    int open_handles;
    bool closing;
    dr_counter *lists, *watches, *relists, *errors, *events_created;
};

typedef enum { INF_IDLE, INF_LISTING, INF_WATCHING, INF_WAITING } inf_state;

/* An object the informer has reported: namespace/name and its uid. */
typedef struct known_obj {
    char *key;
    char *uid;
    bool seen; /* in the current relist */
} known_obj;

struct dr_kube_informer {
    dr_kube_informer *next;
    dr_kube *k;
    char *path, *field_selector, *label_selector;
    dr_kube_handler h;
    void *ctx;
    inf_state state;
    bool synced;
    bool busy;  /* a request is in flight */
    char *rv;   /* last resourceVersion; NULL: list first */
    char *cont; /* LIST paging: the continue token */
    known_obj *objs;
    size_t nobjs, capobjs;
    dr_buf line;         /* the watch stream not yet handled */
    bool stream_stopped; /* an ERROR event ended it: ignore the rest */
    uv_timer_t drain;    /* handles the stream outside curl's callbacks */
    dr_json_doc *doc;
    int64_t backoff_ms;
    int64_t watch_started_ns;
    uint64_t watch_events;
    uv_timer_t timer;
    bool relist_wanted; /* an ERROR 410 came in the watch stream */
};

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void conf_free(dr_kube_conf *c)
{
    free(c->url);
    free(c->kubeconfig);
    free(c->token_file);
    free(c->ca_file);
    memset(c, 0, sizeof *c);
}

static bool file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* ---- kubeconfig --------------------------------------------------------------------- */

static int b64_value(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Decodes base64 (whitespace ignored, padding optional) into out. */
static int b64_decode(const char *s, dr_buf *out)
{
    uint32_t acc = 0;
    int bits = 0;
    for (; *s; s++) {
        if (*s == '=' || *s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')
            continue;
        int v = b64_value((unsigned char)*s);
        if (v < 0)
            return DR_EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (dr_buf_putc(out, (char)((acc >> bits) & 0xff)) < 0)
                return DR_ENOMEM;
        }
    }
    return 0;
}

/* Writes inline kubeconfig data to <data_dir>/kube/<name>, readable by us only. */
static char *write_inline(const char *data_dir, const char *name, const char *b64, dr_error *err)
{
    dr_buf pem = {0};
    char path[1024];
    snprintf(path, sizeof path, "%s/kube/%s", data_dir, name);
    if (b64_decode(b64, &pem) < 0) {
        dr_error_set(err, "kubeconfig: %s is not valid base64", name);
        dr_buf_free(&pem);
        return NULL;
    }
    int rc = dr_mkdirs(path, true);
    FILE *f = rc == 0 ? fopen(path, "w") : NULL;
    if (f)
        fchmod(fileno(f), 0600);
    bool ok = f && fwrite(pem.p, 1, pem.len, f) == pem.len;
    if (f && fclose(f) != 0)
        ok = false;
    dr_buf_free(&pem);
    if (!ok) {
        dr_error_set(err, "kubeconfig: cannot write %s: %s", path, strerror(errno));
        return NULL;
    }
    return strdup(path);
}

static const char *cfg_str(const dr_cfg_node *map, const char *key)
{
    const dr_cfg_node *n = dr_cfg_get(map, key);
    return n && n->type == DR_CFG_SCALAR ? n->str : NULL;
}

/* The map named `name` in a kubeconfig list (clusters, contexts, users):
 * [{name: x, cluster|context|user: {...}}]. */
static const dr_cfg_node *named_entry(const dr_cfg_node *root, const char *list, const char *inner,
                                      const char *name)
{
    const dr_cfg_node *seq = dr_cfg_get(root, list);
    if (!seq || seq->type != DR_CFG_SEQ || !name)
        return NULL;
    for (size_t i = 0; i < seq->n; i++) {
        const char *n = cfg_str(seq->items[i], "name");
        if (n && strcmp(n, name) == 0)
            return dr_cfg_get(seq->items[i], inner);
    }
    return NULL;
}

/* A path from the kubeconfig, relative to the file's directory. */
static char *resolve_path(const char *kubeconfig, const char *p)
{
    if (!p)
        return NULL;
    if (p[0] == '/')
        return strdup(p);
    const char *slash = strrchr(kubeconfig, '/');
    dr_buf b = {0};
    if (slash)
        dr_buf_append(&b, kubeconfig, (size_t)(slash - kubeconfig) + 1);
    dr_buf_puts(&b, p);
    dr_buf_putc(&b, '\0');
    return b.p;
}

/* A file option from either its path key or its *-data key. */
static int pick_file(const char *path, const dr_cfg_node *map, const char *key,
                     const char *data_key, const char *data_dir, const char *file_name, char **out,
                     dr_error *err)
{
    const char *data = cfg_str(map, data_key);
    if (data) {
        *out = write_inline(data_dir, file_name, data, err);
        return *out ? 0 : DR_EINVAL;
    }
    *out = resolve_path(path, cfg_str(map, key));
    return 0;
}

int dr_kube_read_kubeconfig(const char *path, const char *data_dir, dr_kube_conf *conf,
                            char **cert_file, char **key_file, char **token, dr_error *err)
{
    dr_cfg_errors errs = {0};
    dr_cfg_doc *doc = dr_cfg_load(path, &errs);
    if (!doc || errs.n) {
        dr_error_set(err, "kubeconfig %s: %s", path, errs.n ? errs.msg[0] : "cannot be read");
        dr_cfg_errors_free(&errs);
        dr_cfg_doc_free(doc);
        return DR_EINVAL;
    }
    const dr_cfg_node *root = dr_cfg_root(doc);
    const char *ctx_name = cfg_str(root, "current-context");
    const dr_cfg_node *ctx = named_entry(root, "contexts", "context", ctx_name);
    const dr_cfg_node *cluster = named_entry(root, "clusters", "cluster", cfg_str(ctx, "cluster"));
    const dr_cfg_node *user = named_entry(root, "users", "user", cfg_str(ctx, "user"));
    int rc = DR_EINVAL;
    if (!ctx || !cluster || !cfg_str(cluster, "server")) {
        dr_error_set(err, "kubeconfig %s: no server for the current context \"%s\"", path,
                     ctx_name ? ctx_name : "");
        goto out;
    }
    conf->url = strdup(cfg_str(cluster, "server"));
    const char *skip = cfg_str(cluster, "insecure-skip-tls-verify");
    bool b;
    if (skip && dr_parse_bool(skip, &b) == 0 && b)
        conf->insecure_skip_verify = true;
    if (!conf->ca_file &&
        pick_file(path, cluster, "certificate-authority", "certificate-authority-data", data_dir,
                  "ca.crt", &conf->ca_file, err) < 0)
        goto out;
    if (user) {
        if (cfg_str(user, "exec") || dr_cfg_get(user, "exec") ||
            dr_cfg_get(user, "auth-provider")) {
            dr_error_set(err,
                         "kubeconfig %s: user \"%s\" authenticates with an exec or "
                         "auth-provider plugin, which drover does not run; use a token",
                         path, cfg_str(ctx, "user"));
            goto out;
        }
        if (pick_file(path, user, "client-certificate", "client-certificate-data", data_dir,
                      "client.crt", cert_file, err) < 0 ||
            pick_file(path, user, "client-key", "client-key-data", data_dir, "client.key", key_file,
                      err) < 0)
            goto out;
        if (!conf->token_file && cfg_str(user, "tokenFile"))
            conf->token_file = resolve_path(path, cfg_str(user, "tokenFile"));
        *token = xstrdup(cfg_str(user, "token"));
    }
    rc = 0;
out:
    dr_cfg_doc_free(doc);
    return rc;
}

/* ---- making a client ------------------------------------------------------------------ */

/* Fills k->conf with where to go: explicit, in-cluster, or kubeconfig. */
static int resolve_target(dr_kube *k, const dr_kube_conf *in, dr_http_client_conf *hc, char **token,
                          dr_error *err)
{
    dr_kube_conf *c = &k->conf;
    c->url = xstrdup(in->url);
    c->kubeconfig = xstrdup(in->kubeconfig);
    c->token_file = xstrdup(in->token_file);
    c->ca_file = xstrdup(in->ca_file);
    c->insecure_skip_verify = in->insecure_skip_verify;
    c->timeout_ms = in->timeout_ms ? in->timeout_ms : 30000;
    c->max_list_bytes = in->max_list_bytes ? in->max_list_bytes : KUBE_DEFAULT_MAX_LIST;

    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (!c->url && host && host[0] && !c->kubeconfig) {
        char url[512];
        bool v6 = strchr(host, ':') != NULL;
        snprintf(url, sizeof url, "https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "",
                 port && port[0] ? port : "443");
        c->url = strdup(url);
        if (!c->token_file && file_exists(DR_KUBE_SA_DIR "/token"))
            c->token_file = strdup(DR_KUBE_SA_DIR "/token");
        if (!c->ca_file && file_exists(DR_KUBE_SA_DIR "/ca.crt"))
            c->ca_file = strdup(DR_KUBE_SA_DIR "/ca.crt");
    } else if (!c->url) {
        const char *kc = c->kubeconfig ? c->kubeconfig : getenv("KUBECONFIG");
        if (!kc || !kc[0]) {
            dr_error_set(err, "no Kubernetes API server: not in a pod (KUBERNETES_SERVICE_HOST "
                              "is unset) and neither api.url nor api.kubeconfig is set");
            return DR_EINVAL;
        }
        if (dr_kube_read_kubeconfig(kc, dr_agent_data_dir(k->inst->agent), c, &hc->cert_file,
                                    &hc->key_file, token, err) < 0)
            return DR_EINVAL;
    }
    size_t n = strlen(c->url);
    while (n > 0 && c->url[n - 1] == '/')
        c->url[--n] = '\0';
    return dr_http_check_url(c->url, err);
}

dr_kube *dr_kube_new(dr_instance *inst, const dr_kube_conf *conf, dr_error *err)
{
    dr_kube *k = calloc(1, sizeof *k);
    if (!k) {
        dr_error_set(err, "out of memory");
        return NULL;
    }
    k->inst = inst;
    k->loop = inst->loop;
    dr_http_client_conf hc = {0};
    char *token = NULL;
    if (resolve_target(k, conf, &hc, &token, err) < 0)
        goto fail;
    hc.ca_file = k->conf.ca_file;
    hc.insecure_skip_verify = k->conf.insecure_skip_verify;
    hc.bearer_token = token;
    hc.bearer_token_file = token ? NULL : k->conf.token_file;
    hc.timeout_ms = k->conf.timeout_ms;
    hc.max_response_bytes = k->conf.max_list_bytes;
    k->http = dr_http_client_new(k->loop, &hc, err);
    if (!k->http)
        goto fail;
    free(hc.cert_file);
    free(hc.key_file);
    free(token);
    k->url = k->conf.url;
    k->lists = dr_counter_new(inst, "drover_kube_requests_total",
                              "Requests to the Kubernetes API server, by verb.", "verb", "list");
    k->watches = dr_counter_new(inst, "drover_kube_requests_total",
                                "Requests to the Kubernetes API server, by verb.", "verb", "watch");
    k->events_created =
        dr_counter_new(inst, "drover_kube_requests_total",
                       "Requests to the Kubernetes API server, by verb.", "verb", "create");
    k->relists =
        dr_counter_new(inst, "drover_kube_relists_total",
                       "LISTs made again because a watch could not resume (410 Gone).", NULL, NULL);
    k->errors = dr_counter_new(inst, "drover_kube_errors_total",
                               "Failed requests to the Kubernetes API server and broken watches.",
                               NULL, NULL);
    return k;
fail:
    free(hc.cert_file);
    free(hc.key_file);
    free(token);
    conf_free(&k->conf);
    free(k);
    return NULL;
}

const char *dr_kube_url(const dr_kube *k)
{
    return k->url;
}

/* ---- known objects ----------------------------------------------------------------------- */

static known_obj *known_find(dr_kube_informer *inf, const char *key)
{
    for (size_t i = 0; i < inf->nobjs; i++)
        if (strcmp(inf->objs[i].key, key) == 0)
            return &inf->objs[i];
    return NULL;
}

static known_obj *known_add(dr_kube_informer *inf, const char *key, const char *uid)
{
    if (inf->nobjs == inf->capobjs) {
        size_t cap = inf->capobjs ? inf->capobjs * 2 : 64;
        known_obj *o = realloc(inf->objs, cap * sizeof *o);
        if (!o)
            return NULL;
        inf->objs = o;
        inf->capobjs = cap;
    }
    known_obj *o = &inf->objs[inf->nobjs];
    o->key = strdup(key);
    o->uid = strdup(uid);
    o->seen = true;
    if (!o->key || !o->uid) {
        free(o->key);
        free(o->uid);
        return NULL;
    }
    inf->nobjs++;
    return o;
}

static void known_remove(dr_kube_informer *inf, known_obj *o)
{
    free(o->key);
    free(o->uid);
    *o = inf->objs[--inf->nobjs];
}

static void object_key(const dr_jv *obj, char *key, size_t keysz)
{
    const char *ns = dr_jv_str_or(dr_jv_path(obj, "metadata", "namespace", NULL), "");
    const char *name = dr_jv_str_or(dr_jv_path(obj, "metadata", "name", NULL), "");
    snprintf(key, keysz, "%s/%s", ns, name);
}

/* Reports an object and keeps track of it. `listing`: it comes from a
 * (re)list, where an object already known is reported as modified. */
static void deliver(dr_kube_informer *inf, dr_kube_event ev, const dr_jv *obj)
{
    char key[512];
    object_key(obj, key, sizeof key);
    const char *uid = dr_jv_str_or(dr_jv_path(obj, "metadata", "uid", NULL), "");
    known_obj *o = known_find(inf, key);
    if (ev == DR_KUBE_DELETED) {
        if (o)
            known_remove(inf, o);
    } else if (o) {
        o->seen = true;
        if (strcmp(o->uid, uid) != 0) {
            /* the same name, another object: the old one went away */
            char *nu = strdup(uid);
            if (nu) {
                free(o->uid);
                o->uid = nu;
            }
        }
        ev = DR_KUBE_MODIFIED;
    } else {
        known_add(inf, key, uid);
        ev = DR_KUBE_ADDED;
    }
    inf->h.event(inf->ctx, ev, obj);
}

/* After a relist: whatever the list did not have is gone. The subscriber
 * gets a minimal object (namespace, name, uid). */
static void deliver_unseen_as_deleted(dr_kube_informer *inf)
{
    for (size_t i = 0; i < inf->nobjs;) {
        known_obj *o = &inf->objs[i];
        if (o->seen) {
            i++;
            continue;
        }
        const char *slash = strchr(o->key, '/');
        dr_buf b = {0};
        dr_buf_puts(&b, "{\"metadata\":{\"namespace\":");
        dr_json_string(&b, o->key, (size_t)(slash - o->key));
        dr_buf_puts(&b, ",\"name\":");
        dr_json_string(&b, slash + 1, strlen(slash + 1));
        dr_buf_puts(&b, ",\"uid\":");
        dr_json_string(&b, o->uid, strlen(o->uid));
        dr_buf_puts(&b, "}}");
        const dr_jv *obj;
        if (b.p && dr_json_parse(inf->doc, b.p, b.len, NULL, &obj, NULL) == 0)
            inf->h.event(inf->ctx, DR_KUBE_DELETED, obj);
        dr_buf_free(&b);
        known_remove(inf, o); /* moves the last one here: do not advance */
    }
}

/* ---- requests ------------------------------------------------------------------------------ */

static void inf_schedule(dr_kube_informer *inf, int64_t delay_ms);
static void inf_next(dr_kube_informer *inf);

/* Percent-encodes a query value or a path segment (malloc'd; NULL when
 * out of memory). */
static char *url_escape(const char *s)
{
    char *c = curl_easy_escape(NULL, s, 0);
    char *out = c ? strdup(c) : NULL;
    curl_free(c);
    return out;
}

static void url_add_param(dr_buf *u, const char *name, const char *value)
{
    char *esc = url_escape(value);
    bool first = !u->p || !memchr(u->p, '?', u->len);
    dr_buf_printf(u, "%s%s=%s", first ? "?" : "&", name, esc ? esc : "");
    free(esc);
}

/* dr_buf does not NUL-terminate; a URL handed to curl must be. */
static const char *url_finish(dr_buf *u)
{
    if (dr_buf_putc(u, '\0') < 0)
        return NULL;
    u->len--;
    return u->p;
}

static void inf_fail(dr_kube_informer *inf, const char *what, const dr_http_response *r)
{
    char snippet[200];
    dr_http_response_snippet(r, snippet, sizeof snippet);
    dr_counter_add(inf->k->errors, 1);
    dr_log(inf->k->inst, DR_LOG_WARN, "Kubernetes API request failed",
           "request=%s path=%s status=%d error=\"%s\" retry_in_ms=%lld", what, inf->path, r->status,
           snippet, (long long)inf->backoff_ms);
    int64_t wait = inf->backoff_ms;
    /* full jitter: anywhere up to the bound */
    wait = wait / 2 + (int64_t)((uint64_t)rand() % (uint64_t)(wait / 2 + 1));
    inf->backoff_ms =
        inf->backoff_ms * 2 > KUBE_BACKOFF_MAX_MS ? KUBE_BACKOFF_MAX_MS : inf->backoff_ms * 2;
    inf_schedule(inf, wait);
}

static void set_rv(dr_kube_informer *inf, const char *rv)
{
    if (!rv || !rv[0])
        return;
    char *n = strdup(rv);
    if (n) {
        free(inf->rv);
        inf->rv = n;
    }
}

static void on_list_done(void *ctx, const dr_http_response *r)
{
    dr_kube_informer *inf = ctx;
    inf->busy = false;
    if (inf->k->closing)
        return;
    if (dr_http_classify(r) != DR_HTTP_OK || r->body_truncated) {
        if (r->body_truncated)
            dr_log(inf->k->inst, DR_LOG_ERROR, "LIST answer larger than api.max_list_bytes",
                   "path=%s", inf->path);
        free(inf->cont);
        inf->cont = NULL;
        inf_fail(inf, "list", r);
        return;
    }
    const dr_jv *root;
    dr_error err = {0};
    if (dr_json_parse(inf->doc, r->body, r->body_len, NULL, &root, &err) < 0 ||
        root->type != DR_JV_OBJECT) {
        dr_http_response bad = *r;
        bad.status = 0;
        bad.error = err.msg[0] ? err.msg : "not a JSON object";
        bad.body_len = 0;
        free(inf->cont);
        inf->cont = NULL;
        inf_fail(inf, "list", &bad);
        return;
    }
    const dr_jv *items = dr_jv_get(root, "items");
    for (const dr_jv *it = items && items->type == DR_JV_ARRAY ? items->child : NULL; it;
         it = it->next)
        deliver(inf, DR_KUBE_ADDED, it);
    const char *cont = dr_jv_str(dr_jv_path(root, "metadata", "continue", NULL));
    set_rv(inf, dr_jv_str(dr_jv_path(root, "metadata", "resourceVersion", NULL)));
    free(inf->cont);
    inf->cont = cont && cont[0] ? strdup(cont) : NULL;
    if (!inf->cont) {
        deliver_unseen_as_deleted(inf);
        inf->backoff_ms = KUBE_BACKOFF_MIN_MS;
        inf->synced = true;
        if (inf->h.synced)
            inf->h.synced(inf->ctx);
        inf->state = INF_WATCHING;
    }
    dr_json_doc_trim(inf->doc);
    inf_next(inf);
}

static void start_list(dr_kube_informer *inf)
{
    dr_buf u = {0};
    dr_buf_printf(&u, "%s%s", inf->k->url, inf->path);
    char limit[16];
    snprintf(limit, sizeof limit, "%d", KUBE_LIST_PAGE);
    url_add_param(&u, "limit", limit);
    if (inf->field_selector)
        url_add_param(&u, "fieldSelector", inf->field_selector);
    if (inf->label_selector)
        url_add_param(&u, "labelSelector", inf->label_selector);
    if (inf->cont) {
        url_add_param(&u, "continue", inf->cont);
    } else {
        /* a fresh list: every known object must show up again or is gone */
        for (size_t i = 0; i < inf->nobjs; i++)
            inf->objs[i].seen = false;
    }
    static const char *const headers[] = {"Accept: application/json", NULL};
    dr_http_request req = {.method = "GET", .url = url_finish(&u), .headers = headers};
    inf->state = INF_LISTING;
    inf->busy = true;
    dr_counter_add(inf->k->lists, 1);
    int rc = req.url ? dr_http_client_send(inf->k->http, &req, on_list_done, inf) : DR_ENOMEM;
    if (rc < 0) {
        inf->busy = false;
        dr_http_response r = {.status = 0, .error = dr_strerror(rc)};
        inf_fail(inf, "list", &r);
    }
    dr_buf_free(&u);
}

/* One line of a watch stream: {"type": ..., "object": {...}}. Returns
 * false when the stream must end (an ERROR event). */
static bool watch_event(dr_kube_informer *inf, const char *line, size_t len)
{
    const dr_jv *ev;
    dr_error err = {0};
    if (dr_json_parse(inf->doc, line, len, NULL, &ev, &err) < 0) {
        dr_log(inf->k->inst, DR_LOG_WARN, "bad watch event", "path=%s error=\"%s\"", inf->path,
               err.msg);
        dr_counter_add(inf->k->errors, 1);
        return false;
    }
    const char *type = dr_jv_str_or(dr_jv_get(ev, "type"), "");
    const dr_jv *obj = dr_jv_get(ev, "object");
    if (!obj || obj->type != DR_JV_OBJECT)
        return false;
    inf->watch_events++;
    if (strcmp(type, "ERROR") == 0) {
        int64_t code = 0;
        dr_jv_int(dr_jv_get(obj, "code"), &code);
        if (code == 410) {
            inf->relist_wanted = true;
        } else {
            dr_log(inf->k->inst, DR_LOG_WARN, "watch ended with an error", "path=%s code=%lld",
                   inf->path, (long long)code);
            dr_counter_add(inf->k->errors, 1);
        }
        return false;
    }
    set_rv(inf, dr_jv_str(dr_jv_path(obj, "metadata", "resourceVersion", NULL)));
    if (strcmp(type, "ADDED") == 0)
        deliver(inf, DR_KUBE_ADDED, obj);
    else if (strcmp(type, "MODIFIED") == 0)
        deliver(inf, DR_KUBE_MODIFIED, obj);
    else if (strcmp(type, "DELETED") == 0)
        deliver(inf, DR_KUBE_DELETED, obj);
    /* BOOKMARK: only the resourceVersion, taken above */
    return true;
}

/* Handles the complete events in the stream buffer and keeps the rest.
 * Never called from inside curl's callbacks: subscribers may send
 * requests (an Event), which curl refuses to start from within a
 * transfer's own callback. */
static void drain_stream(dr_kube_informer *inf)
{
    if (inf->line.len == 0)
        return;
    size_t at = 0;
    while (!inf->stream_stopped && at < inf->line.len) {
        const char *start = inf->line.p + at;
        const char *nl = memchr(start, '\n', inf->line.len - at);
        if (!nl)
            break;
        size_t n = (size_t)(nl - start);
        if (n > 0 && !watch_event(inf, start, n))
            inf->stream_stopped = true; /* an ERROR: the rest is moot */
        at += n + 1;
    }
    if (inf->stream_stopped)
        at = inf->line.len;
    memmove(inf->line.p, inf->line.p + at, inf->line.len - at);
    inf->line.len -= at;
}

static void on_drain(uv_timer_t *t)
{
    dr_kube_informer *inf = t->data;
    if (!inf->k->closing)
        drain_stream(inf);
}

/* curl's write callback for a watch: only buffers (see drain_stream). */
static bool on_watch_data(void *ctx, const char *data, size_t len)
{
    dr_kube_informer *inf = ctx;
    if (inf->k->closing || inf->stream_stopped)
        return false;
    if (inf->line.len + len > inf->k->conf.max_list_bytes) {
        dr_log(inf->k->inst, DR_LOG_ERROR, "watch event larger than api.max_list_bytes", "path=%s",
               inf->path);
        dr_counter_add(inf->k->errors, 1);
        inf->relist_wanted = true; /* an event is lost: only a list recovers it */
        return false;
    }
    if (dr_buf_append(&inf->line, data, len) < 0)
        return false;
    if (memchr(data, '\n', len))
        uv_timer_start(&inf->drain, on_drain, 0, 0);
    return true;
}

static void relist(dr_kube_informer *inf)
{
    free(inf->rv);
    inf->rv = NULL;
    free(inf->cont);
    inf->cont = NULL;
    dr_counter_add(inf->k->relists, 1);
    dr_log(inf->k->inst, DR_LOG_INFO, "watch cannot resume (410 Gone): listing again", "path=%s",
           inf->path);
    inf->state = INF_LISTING;
    inf_next(inf);
}

static void on_watch_done(void *ctx, const dr_http_response *r)
{
    dr_kube_informer *inf = ctx;
    inf->busy = false;
    if (!inf->k->closing)
        drain_stream(inf); /* what came before the end */
    dr_buf_reset(&inf->line);
    inf->stream_stopped = false;
    uv_timer_stop(&inf->drain);
    if (inf->k->closing)
        return;
    if (inf->relist_wanted || r->status == 410) {
        inf->relist_wanted = false;
        relist(inf);
        return;
    }
    bool aborted = r->error && strcmp(r->error, "aborted") == 0;
    if (!aborted && dr_http_classify(r) == DR_HTTP_OK) {
        /* The server ended it (timeoutSeconds): resume at once, unless it
         * ended at once with nothing said, which would make a busy loop. */
        bool quick = dr_mono_ns() - inf->watch_started_ns < 1000000000LL;
        if (quick && inf->watch_events == 0) {
            inf_schedule(inf, inf->backoff_ms);
            inf->backoff_ms = inf->backoff_ms * 2 > KUBE_BACKOFF_MAX_MS ? KUBE_BACKOFF_MAX_MS
                                                                        : inf->backoff_ms * 2;
            return;
        }
        inf->backoff_ms = KUBE_BACKOFF_MIN_MS;
        inf_next(inf);
        return;
    }
    inf_fail(inf, "watch", r);
}

static void start_watch(dr_kube_informer *inf)
{
    dr_buf u = {0};
    dr_buf_printf(&u, "%s%s", inf->k->url, inf->path);
    url_add_param(&u, "watch", "1");
    url_add_param(&u, "allowWatchBookmarks", "true");
    url_add_param(&u, "resourceVersion", inf->rv);
    int timeout_s =
        KUBE_WATCH_MIN_S + (int)((unsigned)rand() % (KUBE_WATCH_MAX_S - KUBE_WATCH_MIN_S + 1));
    char ts[16];
    snprintf(ts, sizeof ts, "%d", timeout_s);
    url_add_param(&u, "timeoutSeconds", ts);
    if (inf->field_selector)
        url_add_param(&u, "fieldSelector", inf->field_selector);
    if (inf->label_selector)
        url_add_param(&u, "labelSelector", inf->label_selector);
    static const char *const headers[] = {"Accept: application/json", NULL};
    dr_http_request req = {
        .method = "GET",
        .url = url_finish(&u),
        .headers = headers,
        .on_data = on_watch_data,
        .timeout_ms = (int64_t)(timeout_s + 60) * 1000,
    };
    inf->state = INF_WATCHING;
    inf->busy = true;
    inf->watch_started_ns = dr_mono_ns();
    inf->watch_events = 0;
    dr_counter_add(inf->k->watches, 1);
    int rc = req.url ? dr_http_client_send(inf->k->http, &req, on_watch_done, inf) : DR_ENOMEM;
    if (rc < 0) {
        inf->busy = false;
        dr_http_response r = {.status = 0, .error = dr_strerror(rc)};
        inf_fail(inf, "watch", &r);
    }
    dr_buf_free(&u);
}

/* Starts whatever comes next: a list (page) or a watch. */
static void inf_next(dr_kube_informer *inf)
{
    if (inf->k->closing || inf->busy)
        return;
    if (!inf->rv || inf->cont || inf->state == INF_LISTING)
        start_list(inf);
    else
        start_watch(inf);
}

static void on_inf_timer(uv_timer_t *t)
{
    dr_kube_informer *inf = t->data;
    if (inf->state == INF_WAITING)
        inf->state = inf->rv && !inf->cont ? INF_WATCHING : INF_LISTING;
    inf_next(inf);
}

static void inf_schedule(dr_kube_informer *inf, int64_t delay_ms)
{
    inf->state = INF_WAITING;
    uv_timer_start(&inf->timer, on_inf_timer, (uint64_t)(delay_ms > 0 ? delay_ms : 0), 0);
}

dr_kube_informer *dr_kube_watch(dr_kube *k, const char *path, const char *field_selector,
                                const char *label_selector, const dr_kube_handler *h, void *ctx)
{
    dr_kube_informer *inf = calloc(1, sizeof *inf);
    if (!inf)
        return NULL;
    inf->k = k;
    inf->path = strdup(path);
    inf->field_selector = xstrdup(field_selector);
    inf->label_selector = xstrdup(label_selector);
    inf->doc = dr_json_doc_new();
    inf->h = *h;
    inf->ctx = ctx;
    inf->backoff_ms = KUBE_BACKOFF_MIN_MS;
    if (!inf->path || !inf->doc || (field_selector && !inf->field_selector) ||
        (label_selector && !inf->label_selector)) {
        free(inf->path);
        free(inf->field_selector);
        free(inf->label_selector);
        dr_json_doc_free(inf->doc);
        free(inf);
        return NULL;
    }
    uv_timer_init(k->loop, &inf->timer);
    inf->timer.data = inf;
    uv_timer_init(k->loop, &inf->drain);
    inf->drain.data = inf;
    k->open_handles++;
    inf->next = k->informers;
    k->informers = inf;
    inf_schedule(inf, 0); /* no resourceVersion yet: the timer starts with a LIST */
    return inf;
}

bool dr_kube_informer_synced(const dr_kube_informer *inf)
{
    return inf->synced;
}

/* ---- Events -------------------------------------------------------------------------------- */

/* A request whose body the client does not own: freed when it is done. */
typedef struct owned_body {
    dr_kube *k;
    char *body;
} owned_body;

static void on_event_done(void *ctx, const dr_http_response *r)
{
    owned_body *ob = ctx;
    dr_kube *k = ob->k;
    free(ob->body);
    free(ob);
    /* 409: another agent made this very Event first */
    if (dr_http_classify(r) != DR_HTTP_OK && r->status != 409 && !k->closing) {
        char snippet[200];
        dr_http_response_snippet(r, snippet, sizeof snippet);
        dr_counter_add(k->errors, 1);
        dr_log(k->inst, DR_LOG_WARN, "cannot create a Kubernetes Event", "status=%d error=\"%s\"",
               r->status, snippet);
    }
}

static void put_json_pair(dr_buf *b, const char *key, const char *val, bool comma)
{
    if (comma)
        dr_buf_putc(b, ',');
    dr_json_string(b, key, strlen(key));
    dr_buf_putc(b, ':');
    dr_json_string(b, val ? val : "", val ? strlen(val) : 0);
}

void dr_kube_event_create(dr_kube *k, const char *namespace_, const char *kind, const char *name,
                          const char *uid, const char *event_name, const char *type,
                          const char *reason, const char *message)
{
    if (k->closing)
        return;
    char now[40];
    dr_format_rfc3339nano(dr_now_ns(), now);
    now[19] = 'Z'; /* Events take seconds: 2026-11-25T04:10:38Z */
    now[20] = '\0';
    char evname[300];
    if (event_name)
        snprintf(evname, sizeof evname, "%.250s", event_name);
    else
        snprintf(evname, sizeof evname, "%.200s.drover%llx", name, (unsigned long long)dr_now_ns());
    dr_buf b = {0};
    dr_buf_puts(&b, "{\"apiVersion\":\"v1\",\"kind\":\"Event\",\"metadata\":{");
    put_json_pair(&b, "name", evname, false);
    put_json_pair(&b, "namespace", namespace_, true);
    dr_buf_puts(&b, "},\"involvedObject\":{\"apiVersion\":\"v1\"");
    put_json_pair(&b, "kind", kind, true);
    put_json_pair(&b, "name", name, true);
    put_json_pair(&b, "namespace", namespace_, true);
    if (uid && uid[0])
        put_json_pair(&b, "uid", uid, true);
    dr_buf_putc(&b, '}');
    put_json_pair(&b, "type", type, true);
    put_json_pair(&b, "reason", reason, true);
    put_json_pair(&b, "message", message, true);
    put_json_pair(&b, "firstTimestamp", now, true);
    put_json_pair(&b, "lastTimestamp", now, true);
    dr_buf_puts(&b, ",\"count\":1,\"source\":{");
    put_json_pair(&b, "component", "drover", false);
    put_json_pair(&b, "host", dr_agent_node_name(k->inst->agent), true);
    dr_buf_puts(&b, "}}");

    dr_buf u = {0};
    char *ns = url_escape(namespace_);
    dr_buf_printf(&u, "%s/api/v1/namespaces/%s/events", k->url, ns ? ns : "");
    free(ns);
    static const char *const headers[] = {"Content-Type: application/json",
                                          "Accept: application/json", NULL};
    dr_http_request req = {.method = "POST",
                           .url = url_finish(&u),
                           .headers = headers,
                           .body = b.p,
                           .body_len = b.len};
    dr_counter_add(k->events_created, 1);
    owned_body *ob = calloc(1, sizeof *ob);
    if (ob && b.p && req.url) {
        ob->k = k;
        ob->body = b.p; /* the body must outlive the request */
        if (dr_http_client_send(k->http, &req, on_event_done, ob) == 0) {
            dr_buf_free(&u);
            return;
        }
    }
    free(ob);
    dr_buf_free(&b);
    dr_buf_free(&u);
}

/* ---- owners ---------------------------------------------------------------------------- */

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

void dr_kube_top_owner(const char *owner_kind, const char *owner_name, const char *template_hash,
                       char *kind, char *name)
{
    snprintf(kind, 254, "%s", owner_kind);
    snprintf(name, 254, "%s", owner_name);
    const char *dash = strrchr(owner_name, '-');
    if (!dash || dash == owner_name)
        return;
    size_t prefix = (size_t)(dash - owner_name);
    if (strcmp(owner_kind, "ReplicaSet") == 0 && template_hash && template_hash[0] &&
        strcmp(dash + 1, template_hash) == 0) {
        snprintf(kind, 254, "Deployment");
        snprintf(name, 254, "%.*s", (int)prefix, owner_name);
    } else if (strcmp(owner_kind, "Job") == 0 && strlen(dash + 1) >= 8 && all_digits(dash + 1)) {
        snprintf(kind, 254, "CronJob");
        snprintf(name, 254, "%.*s", (int)prefix, owner_name);
    }
}

/* ---- closing ---------------------------------------------------------------------------- */

static void kube_free_if_done(dr_kube *k)
{
    if (k->open_handles > 0)
        return;
    conf_free(&k->conf);
    free(k);
}

static void on_inf_timer_closed(uv_handle_t *h);

static void on_drain_closed(uv_handle_t *h)
{
    dr_kube_informer *inf = h->data;
    uv_close((uv_handle_t *)&inf->timer, on_inf_timer_closed);
}

static void on_inf_timer_closed(uv_handle_t *h)
{
    dr_kube_informer *inf = h->data;
    dr_kube *k = inf->k;
    for (size_t i = 0; i < inf->nobjs; i++) {
        free(inf->objs[i].key);
        free(inf->objs[i].uid);
    }
    free(inf->objs);
    free(inf->path);
    free(inf->field_selector);
    free(inf->label_selector);
    free(inf->rv);
    free(inf->cont);
    dr_buf_free(&inf->line);
    dr_json_doc_free(inf->doc);
    free(inf);
    k->open_handles--;
    kube_free_if_done(k);
}

void dr_kube_close(dr_kube *k)
{
    if (!k)
        return;
    k->closing = true;
    /* Cancels watches and lists: their done callbacks see `closing`. */
    dr_http_client_close(k->http);
    k->http = NULL;
    dr_kube_informer *inf = k->informers;
    k->informers = NULL;
    k->open_handles++; /* hold k while the informers close */
    while (inf) {
        dr_kube_informer *next = inf->next;
        uv_timer_stop(&inf->timer);
        uv_timer_stop(&inf->drain);
        /* the drain timer first, then the timer, whose close frees inf */
        uv_close((uv_handle_t *)&inf->drain, on_drain_closed);
        inf = next;
    }
    k->open_handles--;
    kube_free_if_done(k);
}
