/*
 * One scrape_configs entry, read the way Prometheus reads it, so that a job
 * pasted from a prometheus.yml means the same here: the same keys, the
 * same defaults, the same target labels before and after relabel_configs.
 *
 * A target's labels are made as Prometheus' PopulateLabels makes them:
 * the group's labels and __address__, then the job's job, __scheme__,
 * __metrics_path__, __scrape_interval__, __scrape_timeout__ and
 * __param_<name> where discovery did not set them; then relabel_configs;
 * then instance defaults to __address__, and every label starting with
 * "__" is taken off (after the URL is built from them).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "scrape.h"
#include "series.h"

/* ---- options ---------------------------------------------------------------------- */

typedef struct job_conf {
    char *job_name;
    int64_t scrape_interval, scrape_timeout;
    char *metrics_path, *scheme;
    bool honor_labels, honor_timestamps, track_timestamps_staleness, enable_compression;
    int64_t sample_limit, label_limit, label_name_length_limit, label_value_length_limit;
    uint64_t body_size_limit;
    dr_strlist scrape_protocols;
    char *fallback_scrape_protocol;
    const dr_cfg_node *params, *static_configs, *file_sd_configs, *kubernetes_sd_configs,
        *relabel_configs, *metric_relabel_configs;
    char *basic_username, *basic_password, *basic_password_file;
    char *auth_type, *auth_credentials, *auth_credentials_file;
    char *bearer_token, *bearer_token_file;
    char *tls_ca_file, *tls_cert_file, *tls_key_file, *tls_server_name;
    bool tls_insecure_skip_verify;
    char *proxy_url;
} job_conf;

#define OPT(n, t, f, d, h)                                                                         \
    {                                                                                              \
        n, t, offsetof(job_conf, f), d, 0, {NULL}, 0, 0, h                                         \
    }

/* The keys of a scrape_configs entry. Their descriptions are in
 * docs/plugins/prometheus_scrape.md (the table there is this one). */
const dr_option scrape_job_options[] = {
    {"job_name",
     DR_OPT_STRING,
     offsetof(job_conf, job_name),
     NULL,
     DR_OPT_REQUIRED,
     {NULL},
     0,
     0,
     "The job label of the job's series; unique among the jobs."},
    OPT("scrape_interval", DR_OPT_DURATION, scrape_interval, NULL,
        "How often to scrape each target; the input's scrape_interval when unset."),
    OPT("scrape_timeout", DR_OPT_DURATION, scrape_timeout, NULL,
        "How long a scrape may take; the input's scrape_timeout when unset, and never more "
        "than the interval."),
    OPT("metrics_path", DR_OPT_STRING, metrics_path, "/metrics", "The path scraped."),
    OPT("scheme", DR_OPT_STRING, scheme, "http", "http or https."),
    OPT("honor_labels", DR_OPT_BOOL, honor_labels, "false",
        "On a clash between a scraped label and a target label, keep the scraped one (else "
        "the scraped one is renamed exported_<name>)."),
    OPT("honor_timestamps", DR_OPT_BOOL, honor_timestamps, "true",
        "Use the timestamps the target exposes (else every sample gets the scrape's time)."),
    OPT("track_timestamps_staleness", DR_OPT_BOOL, track_timestamps_staleness, "false",
        "Also mark series that carried their own timestamps stale when they disappear."),
    OPT("enable_compression", DR_OPT_BOOL, enable_compression, "true",
        "Ask for a gzip'ed body (Accept-Encoding: gzip)."),
    OPT("sample_limit", DR_OPT_INT, sample_limit, "0",
        "A scrape with more samples after metric relabeling fails; 0: no limit."),
    OPT("label_limit", DR_OPT_INT, label_limit, "0",
        "A scrape with a series of more labels fails; 0: no limit."),
    OPT("label_name_length_limit", DR_OPT_INT, label_name_length_limit, "0",
        "A scrape with a longer label name fails; 0: no limit."),
    OPT("label_value_length_limit", DR_OPT_INT, label_value_length_limit, "0",
        "A scrape with a longer label value fails; 0: no limit."),
    OPT("body_size_limit", DR_OPT_SIZE, body_size_limit, "0",
        "A scrape whose (uncompressed) body is larger fails; 0: the input's bound."),
    OPT("scrape_protocols", DR_OPT_STRLIST, scrape_protocols,
        "[OpenMetricsText1.0.0, OpenMetricsText0.0.1, PrometheusText1.0.0, PrometheusText0.0.4]",
        "Exposition formats to ask for, most wanted first: PrometheusProto, "
        "OpenMetricsText1.0.0, OpenMetricsText0.0.1, PrometheusText1.0.0, PrometheusText0.0.4."),
    OPT("fallback_scrape_protocol", DR_OPT_STRING, fallback_scrape_protocol, NULL,
        "The format of a body whose Content-Type is missing or unknown; unset: such a scrape "
        "fails."),
    OPT("params", DR_OPT_NODE, params, NULL,
        "Query parameters of the scrape URL: a map of names to lists of values."),
    OPT("static_configs", DR_OPT_NODE, static_configs, NULL,
        "Target groups: a list of {targets: [host:port, ...], labels: {name: value}}."),
    OPT("file_sd_configs", DR_OPT_NODE, file_sd_configs, NULL,
        "Target groups read from files: a list of {files: [glob, ...], refresh_interval}."),
    {"kubernetes_sd_configs",
     DR_OPT_NODE,
     offsetof(job_conf, kubernetes_sd_configs),
     NULL,
     0,
     {.group = kube_sd_options},
     0,
     0,
     "Targets from the Kubernetes API, as Prometheus discovers them: a list of discoveries, "
     "each with the keys in the table below (every role: pod, node, service, endpoints, "
     "endpointslice, ingress); only this node's pods, node and endpoints when the agent "
     "knows its node (node_local). The targets follow the objects within 5 s. Self-metrics: "
     "drover_sd_kubernetes_events_total{role} (watch events) and "
     "drover_sd_kubernetes_objects{role} (objects with targets)."},
    OPT("relabel_configs", DR_OPT_NODE, relabel_configs, NULL,
        "Relabeling of the targets, before scraping."),
    OPT("metric_relabel_configs", DR_OPT_NODE, metric_relabel_configs, NULL,
        "Relabeling of the scraped series."),
    OPT("basic_auth.username", DR_OPT_STRING, basic_username, NULL, "Basic authentication."),
    OPT("basic_auth.password", DR_OPT_STRING, basic_password, NULL, "Its password."),
    OPT("basic_auth.password_file", DR_OPT_STRING, basic_password_file, NULL,
        "Its password, read from a file at start."),
    OPT("authorization.type", DR_OPT_STRING, auth_type, "Bearer",
        "The scheme of the Authorization header."),
    OPT("authorization.credentials", DR_OPT_STRING, auth_credentials, NULL,
        "The credentials of the Authorization header."),
    OPT("authorization.credentials_file", DR_OPT_STRING, auth_credentials_file, NULL,
        "The credentials, from a file (re-read when it changes, for the Bearer type)."),
    OPT("bearer_token", DR_OPT_STRING, bearer_token, NULL,
        "Same as authorization.credentials with the Bearer type."),
    OPT("bearer_token_file", DR_OPT_STRING, bearer_token_file, NULL,
        "Same as authorization.credentials_file with the Bearer type."),
    OPT("tls_config.ca_file", DR_OPT_STRING, tls_ca_file, NULL,
        "CA bundle to verify the targets with; unset: the system's."),
    OPT("tls_config.cert_file", DR_OPT_STRING, tls_cert_file, NULL, "Client certificate."),
    OPT("tls_config.key_file", DR_OPT_STRING, tls_key_file, NULL, "Its key."),
    OPT("tls_config.server_name", DR_OPT_STRING, tls_server_name, NULL,
        "The name to verify the certificate against."),
    OPT("tls_config.insecure_skip_verify", DR_OPT_BOOL, tls_insecure_skip_verify, "false",
        "Do not verify the targets' certificates."),
    OPT("proxy_url", DR_OPT_STRING, proxy_url, NULL, "An HTTP proxy for the scrapes."),
    {0},
};

/* ---- small helpers ------------------------------------------------------------------ */

static char *take(char **s)
{
    char *v = *s;
    *s = NULL;
    return v;
}

/* Reads a small file whole (credentials); NULL with err set. */
static char *read_secret(const char *path, const char *what, dr_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        dr_error_set(err, "%s %s: cannot be read", what, path);
        return NULL;
    }
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--; /* as Prometheus, the trailing newline is not part of it */
    buf[n] = '\0';
    return strdup(buf);
}

static const struct {
    const char *name;
    scrape_protocol proto;
} protocol_names[] = {
    {"PrometheusProto", PROTO_PROMETHEUS_PROTO},
    {"OpenMetricsText1.0.0", PROTO_OPENMETRICS_1_0_0},
    {"OpenMetricsText0.0.1", PROTO_OPENMETRICS_0_0_1},
    {"PrometheusText1.0.0", PROTO_PROMETHEUS_TEXT_1_0_0},
    {"PrometheusText0.0.4", PROTO_PROMETHEUS_TEXT_0_0_4},
};

/* The media type each protocol asks for in the Accept header. */
static const char *const protocol_media[PROTO_COUNT] = {
    [PROTO_PROMETHEUS_PROTO] = ("application/vnd.google.protobuf;"
                                "proto=io.prometheus.client.MetricFamily;encoding=delimited"),
    [PROTO_OPENMETRICS_1_0_0] = "application/openmetrics-text;version=1.0.0",
    [PROTO_OPENMETRICS_0_0_1] = "application/openmetrics-text;version=0.0.1",
    [PROTO_PROMETHEUS_TEXT_1_0_0] = "text/plain;version=1.0.0",
    [PROTO_PROMETHEUS_TEXT_0_0_4] = "text/plain;version=0.0.4",
};

static int protocol_of(const char *name, scrape_protocol *out)
{
    for (size_t i = 0; i < sizeof protocol_names / sizeof protocol_names[0]; i++) {
        if (strcmp(protocol_names[i].name, name) == 0) {
            *out = protocol_names[i].proto;
            return 0;
        }
    }
    return DR_EINVAL;
}

static dr_expo_format protocol_format(scrape_protocol p)
{
    switch (p) {
    case PROTO_PROMETHEUS_PROTO:
        return DR_EXPO_PROTOBUF;
    case PROTO_OPENMETRICS_1_0_0:
    case PROTO_OPENMETRICS_0_0_1:
        return DR_EXPO_OPENMETRICS;
    default:
        return DR_EXPO_TEXT;
    }
}

/* The Accept header, weighted in the order given, as Prometheus writes it:
 * q=0.6 for the first of five possible, down to a catch-all. */
static char *accept_header(const scrape_protocol *p, size_t n)
{
    dr_buf b = {0};
    int weight = PROTO_COUNT + 1;
    for (size_t i = 0; i < n; i++, weight--)
        dr_buf_printf(&b, "%s;q=0.%d,", protocol_media[p[i]], weight);
    dr_buf_printf(&b, "*/*;q=0.%d", weight);
    if (dr_buf_putc(&b, '\0') < 0) { /* a C string; NULL: out of memory */
        dr_buf_free(&b);
        return NULL;
    }
    return b.p;
}

/* ---- target groups ------------------------------------------------------------------ */

void group_clear(target_group *g)
{
    for (size_t j = 0; j < g->targets.n; j++) {
        free(g->targets.v[j]);
        if (g->per_target)
            dr_labels_free(&g->per_target[j]);
    }
    free(g->targets.v);
    free(g->per_target);
    dr_labels_free(&g->labels);
    free(g->source);
    memset(g, 0, sizeof *g);
}

void groups_free(target_group *g, size_t n)
{
    for (size_t i = 0; i < n; i++)
        group_clear(&g[i]);
    free(g);
}

static int group_parse(const dr_cfg_node *map, const char *path, target_group *g,
                       dr_cfg_errors *errs)
{
    int nerr = 0;
    if (map->type != DR_CFG_MAP) {
        dr_cfg_error(errs, map, path, "expected a map of targets and labels");
        return 1;
    }
    for (size_t i = 0; i < map->n; i++) {
        const char *k = map->pairs[i].key->str;
        const dr_cfg_node *v = map->pairs[i].val;
        if (strcmp(k, "targets") == 0) {
            if (v->type != DR_CFG_SEQ) {
                dr_cfg_error(errs, v, path, "targets: expected a list of host:port");
                nerr++;
                continue;
            }
            g->targets.v = calloc(v->n + 1, sizeof *g->targets.v);
            if (!g->targets.v)
                return nerr + 1;
            for (size_t j = 0; j < v->n; j++) {
                const dr_cfg_node *t = v->items[j];
                if (t->type != DR_CFG_SCALAR || !t->str[0]) {
                    dr_cfg_error(errs, t, path, "targets[%zu]: expected host:port", j);
                    nerr++;
                } else if (!(g->targets.v[g->targets.n++] = strdup(t->str))) {
                    return nerr + 1;
                }
            }
        } else if (strcmp(k, "labels") == 0) {
            if (v->type == DR_CFG_NULL)
                continue;
            if (v->type != DR_CFG_MAP) {
                dr_cfg_error(errs, v, path, "labels: expected a map of names to values");
                nerr++;
                continue;
            }
            for (size_t j = 0; j < v->n; j++) {
                const char *name = v->pairs[j].key->str;
                const dr_cfg_node *val = v->pairs[j].val;
                if (val->type != DR_CFG_SCALAR) {
                    dr_cfg_error(errs, val, path, "labels.%s: expected a string", name);
                    nerr++;
                } else if (dr_utf8_valid_prefix(name, strlen(name)) != strlen(name) || !name[0]) {
                    dr_cfg_error(errs, v->pairs[j].key, path,
                                 "labels: \"%s\" is not a valid "
                                 "label name",
                                 name);
                    nerr++;
                } else if (dr_labels_set(&g->labels, name, strlen(name), val->str,
                                         strlen(val->str)) != 0) {
                    return nerr + 1;
                }
            }
        } else {
            dr_cfg_error(errs, map->pairs[i].key, path,
                         "unknown key \"%s\" (a target group has "
                         "targets and labels)",
                         k);
            nerr++;
        }
    }
    return nerr;
}

int groups_parse(const dr_cfg_node *list, const char *path, const char *source, target_group **out,
                 size_t *nout, dr_cfg_errors *errs)
{
    *out = NULL;
    *nout = 0;
    if (!list || list->type == DR_CFG_NULL)
        return 0;
    if (list->type != DR_CFG_SEQ) {
        dr_cfg_error(errs, list, path, "expected a list of target groups");
        return 1;
    }
    target_group *g = calloc(list->n ? list->n : 1, sizeof *g);
    if (!g)
        return 1;
    int nerr = 0;
    for (size_t i = 0; i < list->n; i++) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s[%zu]", path, i);
        dr_labels_init(&g[i].labels);
        nerr += group_parse(list->items[i], sub, &g[i], errs);
        if (source && !(g[i].source = strdup(source)))
            nerr++;
    }
    if (nerr) {
        groups_free(g, list->n);
        return nerr;
    }
    *out = g;
    *nout = list->n;
    return 0;
}

/* ---- parsing a job ---------------------------------------------------------------- */

static int parse_params(const dr_cfg_node *params, const char *path, dr_labels *out,
                        dr_cfg_errors *errs)
{
    if (!params || params->type == DR_CFG_NULL)
        return 0;
    if (params->type != DR_CFG_MAP) {
        dr_cfg_error(errs, params, path, "params: expected a map of names to lists of values");
        return 1;
    }
    int nerr = 0;
    for (size_t i = 0; i < params->n; i++) {
        const char *k = params->pairs[i].key->str;
        const dr_cfg_node *v = params->pairs[i].val;
        size_t nv = v->type == DR_CFG_SEQ ? v->n : 1;
        for (size_t j = 0; j < nv; j++) {
            const dr_cfg_node *it = v->type == DR_CFG_SEQ ? v->items[j] : v;
            if (it->type != DR_CFG_SCALAR) {
                dr_cfg_error(errs, it, path, "params.%s: expected strings", k);
                nerr++;
            } else if (dr_labels_add_copy(out, k, strlen(k), it->str, strlen(it->str)) != 0) {
                nerr++;
            }
        }
    }
    return nerr;
}

static int parse_protocols(scrape_job *job, const job_conf *c, const dr_cfg_node *map,
                           const char *path, dr_cfg_errors *errs)
{
    int nerr = 0;
    for (size_t i = 0; i < c->scrape_protocols.n; i++) {
        scrape_protocol p;
        if (protocol_of(c->scrape_protocols.v[i], &p) != 0) {
            dr_cfg_error(errs, dr_cfg_get(map, "scrape_protocols"), path,
                         "scrape_protocols: unknown protocol \"%s\"", c->scrape_protocols.v[i]);
            nerr++;
            continue;
        }
        bool dup = false;
        for (size_t j = 0; j < job->nprotocols; j++)
            dup |= job->protocols[j] == p;
        if (dup) {
            dr_cfg_error(errs, dr_cfg_get(map, "scrape_protocols"), path,
                         "scrape_protocols: \"%s\" is listed twice", c->scrape_protocols.v[i]);
            nerr++;
            continue;
        }
        job->protocols[job->nprotocols++] = p;
    }
    if (c->scrape_protocols.n == 0) {
        dr_cfg_error(errs, map, path, "scrape_protocols: must not be empty");
        nerr++;
    }
    if (c->fallback_scrape_protocol) {
        scrape_protocol p;
        if (protocol_of(c->fallback_scrape_protocol, &p) != 0) {
            dr_cfg_error(errs, dr_cfg_get(map, "fallback_scrape_protocol"), path,
                         "fallback_scrape_protocol: unknown protocol \"%s\"",
                         c->fallback_scrape_protocol);
            nerr++;
        } else {
            job->has_fallback = true;
            job->fallback = protocol_format(p);
        }
    }
    if (nerr == 0 && !(job->accept = accept_header(job->protocols, job->nprotocols)))
        nerr++;
    return nerr;
}

/* The HTTP client settings of the job, from its auth, TLS and proxy keys. */
static int http_settings(scrape_job *job, job_conf *c, const dr_cfg_node *map, const char *path,
                         dr_cfg_errors *errs)
{
    dr_http_client_conf *h = &job->http_conf;
    int nerr = 0;
    int nauth = (c->basic_username || c->basic_password || c->basic_password_file) +
                (c->auth_credentials || c->auth_credentials_file) +
                (c->bearer_token || c->bearer_token_file);
    if (nauth > 1) {
        dr_cfg_error(errs, map, path,
                     "at most one of basic_auth, authorization and bearer_token may be set");
        nerr++;
    }
    if (c->basic_password && c->basic_password_file) {
        dr_cfg_error(errs, map, path, "basic_auth: password and password_file are exclusive");
        nerr++;
    }
    if (c->auth_credentials && c->auth_credentials_file) {
        dr_cfg_error(errs, map, path,
                     "authorization: credentials and credentials_file are exclusive");
        nerr++;
    }
    if (nerr)
        return nerr;
    h->username = take(&c->basic_username);
    h->password = take(&c->basic_password);
    if (c->basic_password_file) {
        dr_error err = {{0}};
        if (!(h->password =
                  read_secret(c->basic_password_file, "basic_auth.password_file", &err))) {
            dr_cfg_error(errs, dr_cfg_get(map, "basic_auth"), path, "%s", err.msg);
            return 1;
        }
    }
    bool bearer = !c->auth_type || strcasecmp(c->auth_type, "Bearer") == 0;
    if (c->auth_credentials || c->auth_credentials_file) {
        if (bearer) {
            h->bearer_token = take(&c->auth_credentials);
            h->bearer_token_file = take(&c->auth_credentials_file);
        } else {
            /* another scheme: one fixed header (its file is read now) */
            char *cred = c->auth_credentials ? take(&c->auth_credentials) : NULL;
            dr_error err = {{0}};
            if (!cred && !(cred = read_secret(c->auth_credentials_file,
                                              "authorization.credentials_file", &err))) {
                dr_cfg_error(errs, dr_cfg_get(map, "authorization"), path, "%s", err.msg);
                return 1;
            }
            size_t len = strlen(c->auth_type) + strlen(cred) + 32;
            char *hdr = malloc(len);
            h->headers.v = calloc(2, sizeof *h->headers.v);
            if (!hdr || !h->headers.v) {
                free(hdr);
                free(cred);
                return 1;
            }
            snprintf(hdr, len, "Authorization: %s %s", c->auth_type, cred);
            free(cred);
            h->headers.v[h->headers.n++] = hdr;
        }
    }
    if (c->bearer_token)
        h->bearer_token = take(&c->bearer_token);
    if (c->bearer_token_file)
        h->bearer_token_file = take(&c->bearer_token_file);
    h->ca_file = take(&c->tls_ca_file);
    h->cert_file = take(&c->tls_cert_file);
    h->key_file = take(&c->tls_key_file);
    h->server_name = take(&c->tls_server_name);
    h->insecure_skip_verify = c->tls_insecure_skip_verify;
    h->proxy_url = take(&c->proxy_url);
    if (!h->cert_file != !h->key_file) {
        dr_cfg_error(errs, dr_cfg_get(map, "tls_config"), path,
                     "tls_config: cert_file and key_file go together");
        nerr++;
    }
    return nerr;
}

static int parse_file_sds(scrape_job *job, const dr_cfg_node *list, const char *path,
                          dr_cfg_errors *errs)
{
    if (!list || list->type == DR_CFG_NULL)
        return 0;
    if (list->type != DR_CFG_SEQ) {
        dr_cfg_error(errs, list, path, "file_sd_configs: expected a list");
        return 1;
    }
    job->file_sds = calloc(list->n ? list->n : 1, sizeof *job->file_sds);
    if (!job->file_sds)
        return 1;
    int nerr = 0;
    for (size_t i = 0; i < list->n; i++) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s.file_sd_configs[%zu]", path, i);
        nerr += file_sd_parse(list->items[i], sub, &job->file_sds[i], errs);
        job->nfile_sds++;
    }
    return nerr;
}

static int parse_kube_sds(scrape_job *job, const dr_cfg_node *list, const char *path,
                          dr_cfg_errors *errs)
{
    if (!list || list->type == DR_CFG_NULL)
        return 0;
    if (list->type != DR_CFG_SEQ) {
        dr_cfg_error(errs, list, path, "kubernetes_sd_configs: expected a list");
        return 1;
    }
    job->kube_sds = calloc(list->n ? list->n : 1, sizeof *job->kube_sds);
    if (!job->kube_sds)
        return 1;
    int nerr = 0;
    for (size_t i = 0; i < list->n; i++) {
        char sub[300];
        snprintf(sub, sizeof sub, "%s.kubernetes_sd_configs[%zu]", path, i);
        nerr += kube_sd_parse(list->items[i], sub, &job->kube_sds[i], errs);
        job->nkube_sds++;
    }
    return nerr;
}

/* Keys of Prometheus' scrape_config that drover does not read (yet). They
 * are refused by name, so that a pasted job never silently loses them. */
static const char *const unsupported_keys[] = {
    "consul_sd_configs",
    "dns_sd_configs",
    "ec2_sd_configs",
    "http_sd_configs",
    "oauth2",
    "sigv4",
    "follow_redirects",
    "enable_http2",
    "native_histogram_bucket_limit",
    "native_histogram_min_bucket_factor",
    "always_scrape_classic_histograms",
    "convert_classic_histograms_to_nhcb",
    "scrape_classic_histograms",
    "keep_dropped_targets",
    "target_limit",
    "no_proxy",
    "proxy_from_environment",
    "proxy_connect_header",
    "metric_name_validation_scheme",
    "metric_name_escaping_scheme",
    "scrape_failure_log_file",
    "scrape_native_histograms",
    NULL,
};

static int refuse_unsupported(const dr_cfg_node *map, const char *path, dr_cfg_errors *errs)
{
    int nerr = 0;
    for (size_t i = 0; i < map->n; i++) {
        for (size_t k = 0; unsupported_keys[k]; k++) {
            if (strcmp(map->pairs[i].key->str, unsupported_keys[k]) == 0) {
                dr_cfg_error(errs, map->pairs[i].key, path,
                             "%s: not supported by drover's prometheus_scrape",
                             unsupported_keys[k]);
                nerr++;
            }
        }
    }
    return nerr;
}

int job_parse(scrape_input *in, const dr_cfg_node *map, const char *path, scrape_job *job,
              dr_cfg_errors *errs)
{
    job->in = in;
    dr_labels_init(&job->params);
    if (map->type != DR_CFG_MAP) {
        dr_cfg_error(errs, map, path, "expected a scrape config (a map)");
        return 1;
    }
    int nerr = refuse_unsupported(map, path, errs);
    if (nerr)
        return nerr;
    job_conf c = {0};
    nerr = dr_cfg_apply(scrape_job_options, map, &c, path, NULL, errs);
    if (nerr) {
        dr_cfg_free_conf(scrape_job_options, &c);
        return nerr;
    }
    job->name = take(&c.job_name);
    job->interval_ms = c.scrape_interval ? c.scrape_interval : in->default_interval_ms;
    /* Prometheus: an unset timeout is the global one, cut to the interval */
    job->timeout_ms = c.scrape_timeout ? c.scrape_timeout : in->default_timeout_ms;
    if (!c.scrape_timeout && job->timeout_ms > job->interval_ms)
        job->timeout_ms = job->interval_ms;
    if (job->interval_ms <= 0) {
        dr_cfg_error(errs, map, path, "scrape_interval: must be more than 0");
        nerr++;
    }
    if (job->timeout_ms <= 0 || job->timeout_ms > job->interval_ms) {
        dr_cfg_error(errs, dr_cfg_get(map, "scrape_timeout"), path,
                     "scrape_timeout: must be more than 0 and at most scrape_interval");
        nerr++;
    }
    job->metrics_path = take(&c.metrics_path);
    job->scheme = take(&c.scheme);
    if (strcmp(job->scheme, "http") != 0 && strcmp(job->scheme, "https") != 0) {
        dr_cfg_error(errs, dr_cfg_get(map, "scheme"), path, "scheme: http or https, not \"%s\"",
                     job->scheme);
        nerr++;
    }
    job->honor_labels = c.honor_labels;
    job->honor_timestamps = c.honor_timestamps;
    job->track_timestamps_staleness = c.track_timestamps_staleness;
    job->enable_compression = c.enable_compression;
    if (c.sample_limit < 0 || c.label_limit < 0 || c.label_name_length_limit < 0 ||
        c.label_value_length_limit < 0) {
        dr_cfg_error(errs, map, path, "limits must not be negative");
        nerr++;
    }
    job->sample_limit = (uint64_t)c.sample_limit;
    job->label_limit = (uint64_t)c.label_limit;
    job->label_name_length_limit = (uint64_t)c.label_name_length_limit;
    job->label_value_length_limit = (uint64_t)c.label_value_length_limit;
    job->body_size_limit = c.body_size_limit;
    nerr += parse_protocols(job, &c, map, path, errs);
    nerr += parse_params(c.params, path, &job->params, errs);
    nerr += http_settings(job, &c, map, path, errs);

    char sub[256];
    snprintf(sub, sizeof sub, "%s.static_configs", path);
    nerr +=
        groups_parse(c.static_configs, sub, NULL, &job->static_groups, &job->nstatic_groups, errs);
    nerr += parse_file_sds(job, c.file_sd_configs, path, errs);
    nerr += parse_kube_sds(job, c.kubernetes_sd_configs, path, errs);
    if (c.relabel_configs) {
        snprintf(sub, sizeof sub, "%s.relabel_configs", path);
        nerr += dr_relabel_parse(c.relabel_configs, sub, &job->relabel, errs) != 0;
    }
    if (c.metric_relabel_configs) {
        snprintf(sub, sizeof sub, "%s.metric_relabel_configs", path);
        nerr += dr_relabel_parse(c.metric_relabel_configs, sub, &job->metric_relabel, errs) != 0;
    }
    dr_cfg_free_conf(scrape_job_options, &c);
    return nerr;
}

static void http_conf_free(dr_http_client_conf *h)
{
    free(h->ca_file);
    free(h->cert_file);
    free(h->key_file);
    free(h->server_name);
    free(h->proxy_url);
    free(h->username);
    free(h->password);
    free(h->bearer_token);
    free(h->bearer_token_file);
    for (size_t i = 0; i < h->headers.n; i++)
        free(h->headers.v[i]);
    free(h->headers.v);
}

void job_free(scrape_job *job)
{
    free(job->name);
    free(job->metrics_path);
    free(job->scheme);
    free(job->accept);
    dr_labels_free(&job->params);
    dr_relabel_free(job->relabel);
    dr_relabel_free(job->metric_relabel);
    http_conf_free(&job->http_conf);
    groups_free(job->static_groups, job->nstatic_groups);
    for (size_t i = 0; i < job->nfile_sds; i++)
        file_sd_free(&job->file_sds[i]);
    free(job->file_sds);
    for (size_t i = 0; i < job->nkube_sds; i++)
        kube_sd_free(&job->kube_sds[i]);
    free(job->kube_sds);
}

int job_start(scrape_job *job, dr_error *err)
{
    job->http = dr_http_client_new(job->in->inst->loop, &job->http_conf, err);
    if (!job->http)
        return DR_EINVAL;
    for (size_t i = 0; i < job->nkube_sds; i++) {
        int rc = kube_sd_start(job, &job->kube_sds[i], err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- targets ------------------------------------------------------------------------- */

/* Appends s[0..n) to b with URL query escaping. */
static void query_escape(dr_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            dr_buf_putc(b, (char)ch);
        } else if (ch == ' ') {
            dr_buf_putc(b, '+');
        } else {
            dr_buf_putc(b, '%');
            dr_buf_putc(b, hex[ch >> 4]);
            dr_buf_putc(b, hex[ch & 15]);
        }
    }
}

static bool has_prefix(const dr_label *l, const char *p)
{
    size_t n = strlen(p);
    return l->name_len >= n && memcmp(l->name, p, n) == 0;
}

/* The scrape URL from the relabeled labels: __scheme__://__address__
 * __metrics_path__ ? the job's params, each replaced by a __param_<name>
 * label when there is one. */
static char *target_url(const scrape_job *job, const dr_labels *ls)
{
    size_t n;
    dr_buf b = {0};
    const char *scheme = dr_labels_value(ls, "__scheme__", 10, &n);
    dr_buf_append(&b, scheme, n);
    dr_buf_puts(&b, "://");
    const char *addr = dr_labels_value(ls, "__address__", 11, &n);
    dr_buf_append(&b, addr, n);
    const char *path = dr_labels_value(ls, "__metrics_path__", 16, &n);
    if (n == 0 || path[0] != '/')
        dr_buf_putc(&b, '/');
    dr_buf_append(&b, path, n);
    char sep = '?';
    /* parameters of the job, in order, then __param_ labels it lacks */
    for (uint32_t i = 0; i < job->params.n; i++) {
        const dr_label *p = &job->params.v[i];
        char lname[300];
        int ln = snprintf(lname, sizeof lname, "__param_%.*s", (int)p->name_len, p->name);
        const dr_label *over =
            ln > 0 && (size_t)ln < sizeof lname ? dr_labels_get(ls, lname, (size_t)ln) : NULL;
        /* a __param_ label replaces every value of that parameter: write it once */
        if (over) {
            bool first = true;
            for (uint32_t j = 0; j < i; j++)
                first &= !(job->params.v[j].name_len == p->name_len &&
                           memcmp(job->params.v[j].name, p->name, p->name_len) == 0);
            if (!first)
                continue;
        }
        dr_buf_putc(&b, sep);
        sep = '&';
        query_escape(&b, p->name, p->name_len);
        dr_buf_putc(&b, '=');
        if (over)
            query_escape(&b, over->value, over->value_len);
        else
            query_escape(&b, p->value, p->value_len);
    }
    for (uint32_t i = 0; i < ls->n; i++) {
        const dr_label *l = &ls->v[i];
        if (!has_prefix(l, "__param_"))
            continue;
        const char *pname = l->name + 8;
        size_t plen = l->name_len - 8;
        bool in_job = false;
        for (uint32_t j = 0; j < job->params.n && !in_job; j++)
            in_job = job->params.v[j].name_len == plen &&
                     memcmp(job->params.v[j].name, pname, plen) == 0;
        if (in_job)
            continue;
        dr_buf_putc(&b, sep);
        sep = '&';
        query_escape(&b, pname, plen);
        dr_buf_putc(&b, '=');
        query_escape(&b, l->value, l->value_len);
    }
    if (dr_buf_putc(&b, '\0') < 0) { /* the URL is a C string; NULL: out of memory */
        dr_buf_free(&b);
        return NULL;
    }
    return b.p;
}

static void set_if_absent(dr_labels *ls, const char *name, const char *value)
{
    if (!dr_labels_gets(ls, name))
        dr_labels_sets(ls, name, value);
}

/* Makes the labels of one target of a group, as PopulateLabels does.
 * Returns 1 with the target's final labels in `out`, its URL in *url and
 * its interval and timeout; 0 when relabeling dropped it; a DR_E* code
 * with `why` set when the result is not a target. */
static int populate(const scrape_job *job, const target_group *g, size_t index,
                    dr_labels *discovered, dr_labels *out, char **url, int64_t *interval_ms,
                    int64_t *timeout_ms, char *why, size_t whylen)
{
    dr_labels_reset(discovered);
    dr_labels_reset(out);
    if (dr_labels_copy(discovered, &g->labels) != 0)
        return DR_ENOMEM;
    if (g->per_target) {
        /* a target's own labels win over its group's, as in Prometheus */
        const dr_labels *own = &g->per_target[index];
        for (uint32_t i = 0; i < own->n; i++)
            if (dr_labels_set(discovered, own->v[i].name, own->v[i].name_len, own->v[i].value,
                              own->v[i].value_len) != 0)
                return DR_ENOMEM;
    }
    dr_labels_sets(discovered, "__address__", g->targets.v[index]);
    if (g->source && !g->per_target)
        set_if_absent(discovered, "__meta_filepath", g->source);
    set_if_absent(discovered, "job", job->name);
    set_if_absent(discovered, "__scheme__", job->scheme);
    set_if_absent(discovered, "__metrics_path__", job->metrics_path);
    char d[32];
    snprintf(d, sizeof d, "%llds", (long long)(job->interval_ms / 1000));
    if (job->interval_ms % 1000)
        snprintf(d, sizeof d, "%lldms", (long long)job->interval_ms);
    set_if_absent(discovered, "__scrape_interval__", d);
    snprintf(d, sizeof d, "%llds", (long long)(job->timeout_ms / 1000));
    if (job->timeout_ms % 1000)
        snprintf(d, sizeof d, "%lldms", (long long)job->timeout_ms);
    set_if_absent(discovered, "__scrape_timeout__", d);
    for (uint32_t i = 0; i < job->params.n; i++) {
        const dr_label *p = &job->params.v[i];
        char lname[300];
        int ln = snprintf(lname, sizeof lname, "__param_%.*s", (int)p->name_len, p->name);
        if (ln > 0 && (size_t)ln < sizeof lname && !dr_labels_get(discovered, lname, (size_t)ln))
            dr_labels_add_copy(discovered, lname, (size_t)ln, p->value, p->value_len);
    }
    if (dr_labels_copy(out, discovered) != 0)
        return DR_ENOMEM;
    if (job->relabel) {
        int keep = dr_relabel_apply(job->relabel, out);
        if (keep < 0) {
            snprintf(why, whylen, "relabeling failed: %s", dr_strerror(keep));
            return keep;
        }
        if (keep == 0)
            return 0;
    }
    size_t alen;
    const char *addr = dr_labels_value(out, "__address__", 11, &alen);
    if (alen == 0) {
        snprintf(why, whylen, "no address");
        return DR_EINVAL;
    }
    /* interval and timeout may have been relabeled */
    size_t n;
    const char *v = dr_labels_value(out, "__scrape_interval__", 19, &n);
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.*s", (int)n, v);
    if (dr_parse_duration(tmp, interval_ms) != 0 || *interval_ms <= 0) {
        snprintf(why, whylen, "invalid __scrape_interval__ \"%s\"", tmp);
        return DR_EINVAL;
    }
    v = dr_labels_value(out, "__scrape_timeout__", 18, &n);
    snprintf(tmp, sizeof tmp, "%.*s", (int)n, v);
    if (dr_parse_duration(tmp, timeout_ms) != 0 || *timeout_ms <= 0 || *timeout_ms > *interval_ms) {
        snprintf(why, whylen, "invalid __scrape_timeout__ \"%s\" (at most the interval)", tmp);
        return DR_EINVAL;
    }
    if (!(*url = target_url(job, out)))
        return DR_ENOMEM;
    if (!dr_labels_gets(out, "instance"))
        dr_labels_set(out, "instance", 8, addr, alen);
    /* what starts with "__" served its purpose */
    for (uint32_t i = 0; i < out->n;) {
        if (out->v[i].name_len >= 2 && out->v[i].name[0] == '_' && out->v[i].name[1] == '_')
            dr_labels_del_at(out, i);
        else
            i++;
    }
    for (uint32_t i = 0; i < out->n; i++) {
        const dr_label *l = &out->v[i];
        if (dr_utf8_valid_prefix(l->value, l->value_len) != l->value_len) {
            snprintf(why, whylen, "label %.*s has an invalid UTF-8 value", (int)l->name_len,
                     l->name);
            free(*url);
            *url = NULL;
            return DR_EINVAL;
        }
    }
    if (dr_labels_canon(out) != 0) {
        snprintf(why, whylen, "duplicate label names");
        free(*url);
        *url = NULL;
        return DR_EINVAL;
    }
    return 1;
}

/* Identity of a target: its labels and its URL. */
static uint64_t target_hash(const dr_labels *ls, const char *url)
{
    uint64_t h = dr_labels_hash(ls);
    for (const unsigned char *p = (const unsigned char *)url; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    return h;
}

static scrape_target *find_target(scrape_target *list, uint64_t hash, const dr_labels *ls,
                                  const char *url)
{
    for (scrape_target *t = list; t; t = t->next)
        if (t->hash == hash && strcmp(t->url, url) == 0 && dr_labels_equal(&t->labels, ls))
            return t;
    return NULL;
}

/* Adds the targets of one group to *fresh, reusing live ones. */
static void sync_group(scrape_job *job, const target_group *g, scrape_target **live,
                       scrape_target **fresh, size_t *nfresh)
{
    dr_labels discovered, final;
    dr_labels_init(&discovered);
    dr_labels_init(&final);
    for (size_t i = 0; i < g->targets.n; i++) {
        char *url = NULL;
        int64_t interval_ms = 0, timeout_ms = 0;
        char why[256] = "";
        int rc = populate(job, g, i, &discovered, &final, &url, &interval_ms, &timeout_ms, why,
                          sizeof why);
        if (rc <= 0) {
            if (rc < 0)
                dr_log(job->in->inst, DR_LOG_WARN, "target dropped",
                       "job=%s target=%s reason=\"%s\"", job->name, g->targets.v[i], why);
            job->ndropped_targets++;
            dr_counter_add(job->in->targets_dropped, 1);
            continue;
        }
        uint64_t h = target_hash(&final, url);
        if (find_target(*fresh, h, &final, url)) {
            free(url); /* the same target twice: once is enough */
            continue;
        }
        scrape_target *t = find_target(*live, h, &final, url);
        if (t) {
            /* unchanged: take it off the live list, keep its state */
            scrape_target **pp = live;
            while (*pp != t)
                pp = &(*pp)->next;
            *pp = t->next;
            free(url);
        } else if (*nfresh >= SCRAPE_MAX_TARGETS_PER_JOB) {
            dr_log(job->in->inst, DR_LOG_WARN, "too many targets; the rest are not scraped",
                   "job=%s max=%u", job->name, SCRAPE_MAX_TARGETS_PER_JOB);
            free(url);
            break;
        } else {
            t = target_new(job);
            if (!t) {
                free(url);
                continue;
            }
            t->hash = h;
            t->url = url;
            t->interval_ms = interval_ms;
            t->timeout_ms = timeout_ms;
            if (dr_labels_copy(&t->labels, &final) != 0 ||
                dr_labels_copy(&t->discovered, &discovered) != 0 || target_start(t) != 0) {
                target_stop(t, false);
                continue;
            }
        }
        t->next = *fresh;
        *fresh = t;
        (*nfresh)++;
    }
    dr_labels_free(&discovered);
    dr_labels_free(&final);
}

/* What a sync carries from group to group. */
typedef struct sync_state {
    scrape_job *job;
    scrape_target *live, *fresh;
    size_t nfresh;
} sync_state;

static void sync_visit(void *ctx, const target_group *g)
{
    sync_state *s = ctx;
    sync_group(s->job, g, &s->live, &s->fresh, &s->nfresh);
}

void job_sync_targets(scrape_job *job)
{
    if (job->in->stopping)
        return;
    sync_state st = {job, job->targets, NULL, 0};
    job->ndropped_targets = 0;
    for (size_t i = 0; i < job->nstatic_groups; i++)
        sync_visit(&st, &job->static_groups[i]);
    for (size_t s = 0; s < job->nfile_sds; s++)
        for (size_t i = 0; i < job->file_sds[s].ngroups; i++)
            sync_visit(&st, &job->file_sds[s].groups[i]);
    for (size_t s = 0; s < job->nkube_sds; s++)
        kube_sd_visit(&job->kube_sds[s], sync_visit, &st);
    scrape_target *live = st.live, *fresh = st.fresh;
    size_t nfresh = st.nfresh;
    /* what is left on the live list is gone: its series end */
    while (live) {
        scrape_target *t = live;
        live = t->next;
        target_stop(t, true);
    }
    size_t before = job->ntargets;
    job->targets = fresh;
    job->ntargets = nfresh;
    dr_gauge_add(job->in->targets_active, (double)nfresh - (double)before);
}
