/*
 * /stats/summary to Prometheus text.
 *
 * The summary is a tree: the node, its pods, each pod's containers and
 * volumes, and for each a few stat blocks (cpu, memory, network, a
 * filesystem). One table (summary_metrics) says, for every family, which
 * block and field it reads at each level, and the divisor from the kubelet's
 * unit to the family's (nanocores to cores, nanoseconds to seconds). The
 * text is written family by family, so that each family's samples are
 * together under one TYPE line as the text format wants.
 *
 * A field that is absent (or not a number) makes no sample: a kubelet that
 * does not report a stat must not look like one that reports zero.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "drover/plugin.h"
#include "jsonp.h"
#include "summary.h"

/* Where a family's entities are. */
typedef enum { LEVEL_NODE, LEVEL_POD, LEVEL_CONTAINER, LEVEL_VOLUME, NLEVELS } summary_level;

static const char *const level_prefix[NLEVELS] = {
    "k8s_node_",
    "k8s_pod_",
    "k8s_container_",
    "k8s_volume_",
};

/* The block a family reads at each level: a key of the entity's object,
 * "" for the entity itself, NULL when the family has no series there. */
typedef struct summary_metric {
    const char *name; /* after the level's prefix */
    bool counter;
    const char *field;    /* the number read in the block */
    const char *tx_field; /* network families: the transmit field (field is receive) */
    double divisor;       /* from the kubelet's unit to the family's */
    const char *block[NLEVELS];
    const char *help;
} summary_metric;

static const summary_metric summary_metrics[] = {
    {"cpu_usage",
     false,
     "usageNanoCores",
     NULL,
     1e9,
     {"cpu", "cpu", "cpu", NULL},
     "CPU in use, in cores (usageNanoCores / 1e9)."},
    {"cpu_time_seconds_total",
     true,
     "usageCoreNanoSeconds",
     NULL,
     1e9,
     {"cpu", "cpu", "cpu", NULL},
     "CPU time used, in seconds (usageCoreNanoSeconds / 1e9)."},
    {"memory_available_bytes",
     false,
     "availableBytes",
     NULL,
     1,
     {"memory", "memory", "memory", NULL},
     "Memory available (availableBytes)."},
    {"memory_usage_bytes",
     false,
     "usageBytes",
     NULL,
     1,
     {"memory", "memory", "memory", NULL},
     "Memory in use, page cache included (usageBytes)."},
    {"memory_working_set_bytes",
     false,
     "workingSetBytes",
     NULL,
     1,
     {"memory", "memory", "memory", NULL},
     "Memory working set (workingSetBytes)."},
    {"memory_rss_bytes",
     false,
     "rssBytes",
     NULL,
     1,
     {"memory", "memory", "memory", NULL},
     "Anonymous and swap cache memory (rssBytes)."},
    {"memory_page_faults",
     false,
     "pageFaults",
     NULL,
     1,
     {"memory", "memory", "memory", NULL},
     "Page faults (pageFaults)."},
    {"memory_major_page_faults",
     false,
     "majorPageFaults",
     NULL,
     1,
     {"memory", "memory", "memory", NULL},
     "Major page faults (majorPageFaults)."},
    {"filesystem_available_bytes",
     false,
     "availableBytes",
     NULL,
     1,
     {"fs", "ephemeral-storage", "rootfs", NULL},
     "Filesystem space available: the node's fs, a pod's ephemeral-storage, a container's "
     "rootfs (availableBytes)."},
    {"filesystem_capacity_bytes",
     false,
     "capacityBytes",
     NULL,
     1,
     {"fs", "ephemeral-storage", "rootfs", NULL},
     "Filesystem size (capacityBytes)."},
    {"filesystem_usage_bytes",
     false,
     "usedBytes",
     NULL,
     1,
     {"fs", "ephemeral-storage", "rootfs", NULL},
     "Filesystem space used (usedBytes)."},
    {"network_io_bytes_total",
     true,
     "rxBytes",
     "txBytes",
     1,
     {"network", "network", NULL, NULL},
     "Bytes received (direction=\"receive\", rxBytes) and sent (direction=\"transmit\", "
     "txBytes), per interface."},
    {"network_errors_total",
     true,
     "rxErrors",
     "txErrors",
     1,
     {"network", "network", NULL, NULL},
     "Receive (rxErrors) and transmit (txErrors) errors, per interface."},
    {"available_bytes",
     false,
     "availableBytes",
     NULL,
     1,
     {NULL, NULL, NULL, ""},
     "Volume space available (availableBytes)."},
    {"capacity_bytes",
     false,
     "capacityBytes",
     NULL,
     1,
     {NULL, NULL, NULL, ""},
     "Volume size (capacityBytes)."},
    {"inodes", false, "inodes", NULL, 1, {NULL, NULL, NULL, ""}, "Volume inodes (inodes)."},
    {"inodes_free",
     false,
     "inodesFree",
     NULL,
     1,
     {NULL, NULL, NULL, ""},
     "Volume inodes free (inodesFree)."},
    {"inodes_used",
     false,
     "inodesUsed",
     NULL,
     1,
     {NULL, NULL, NULL, ""},
     "Volume inodes used (inodesUsed)."},
};

#define NMETRICS (sizeof summary_metrics / sizeof summary_metrics[0])

/* Bounds of a summary document, beyond the body's own size bound. */
#define SUMMARY_MAX_DEPTH 32

/* ---- writing text ---------------------------------------------------------------- */

/* One family being written: its name, and whether its TYPE line is out. */
typedef struct family_out {
    dr_buf *out;
    const summary_metric *m;
    summary_level level;
    bool typed;
    int rc;
} family_out;

/* A label value with the text format's escapes. 0 or DR_ENOMEM. */
static int put_label_value(dr_buf *b, const char *s)
{
    int rc = 0;
    for (; *s; s++) {
        if (*s == '\\')
            rc |= dr_buf_puts(b, "\\\\");
        else if (*s == '"')
            rc |= dr_buf_puts(b, "\\\"");
        else if (*s == '\n')
            rc |= dr_buf_puts(b, "\\n");
        else
            rc |= dr_buf_putc(b, *s);
    }
    return rc;
}

/* The labels of an entity, in order: name=value pairs, NULL-terminated
 * names; a NULL value skips its label. */
typedef struct entity_labels {
    const char *name[6];
    const char *value[6];
} entity_labels;

static void write_sample(family_out *f, const entity_labels *el, const char *iface,
                         const char *direction, double v)
{
    dr_buf *b = f->out;
    if (!f->typed) {
        f->rc |= dr_buf_printf(b, "# HELP %s%s %s\n# TYPE %s%s %s\n", level_prefix[f->level],
                               f->m->name, f->m->help, level_prefix[f->level], f->m->name,
                               f->m->counter ? "counter" : "gauge");
        f->typed = true;
    }
    f->rc |= dr_buf_printf(b, "%s%s{", level_prefix[f->level], f->m->name);
    bool first = true;
    for (size_t i = 0; el && i < 6 && el->name[i]; i++) {
        if (!el->value[i])
            continue;
        f->rc |= dr_buf_printf(b, "%s%s=\"", first ? "" : ",", el->name[i]);
        f->rc |= put_label_value(b, el->value[i]);
        f->rc |= dr_buf_putc(b, '"');
        first = false;
    }
    if (iface) {
        f->rc |= dr_buf_printf(b, "%sinterface=\"", first ? "" : ",");
        f->rc |= put_label_value(b, iface);
        f->rc |= dr_buf_printf(b, "\",direction=\"%s\"", direction);
    }
    f->rc |= dr_buf_printf(b, "} %.17g\n", v);
}

/* A number of a block, scaled; false when absent. */
static bool read_field(const dr_jv *block, const char *field, double divisor, double *v)
{
    double raw;
    if (!dr_jv_double(dr_jv_get(block, field), &raw))
        return false;
    *v = raw / divisor;
    return true;
}

/* The interfaces of a network block: its list, or the block itself (the
 * default interface) when it has none. */
static void write_network(family_out *f, const entity_labels *el, const dr_jv *net)
{
    const dr_jv *list = dr_jv_get(net, "interfaces");
    const dr_jv *first = list && list->type == DR_JV_ARRAY ? list->child : NULL;
    bool use_list = first != NULL;
    for (const dr_jv *i = use_list ? first : net; i; i = use_list ? i->next : NULL) {
        const char *name = dr_jv_str(dr_jv_get(i, "name"));
        double v;
        if (!name)
            continue;
        if (read_field(i, f->m->field, f->m->divisor, &v))
            write_sample(f, el, name, "receive", v);
        if (read_field(i, f->m->tx_field, f->m->divisor, &v))
            write_sample(f, el, name, "transmit", v);
    }
}

/* The sample(s) of one entity for the family being written. */
static void write_entity(family_out *f, const entity_labels *el, const dr_jv *entity)
{
    const char *key = f->m->block[f->level];
    const dr_jv *block = key[0] ? dr_jv_get(entity, key) : entity;
    if (!block || block->type != DR_JV_OBJECT)
        return;
    if (f->m->tx_field) {
        write_network(f, el, block);
        return;
    }
    double v;
    if (read_field(block, f->m->field, f->m->divisor, &v))
        write_sample(f, el, NULL, NULL, v);
}

/* ---- walking the summary --------------------------------------------------------- */

static void pod_labels(const dr_jv *pod, entity_labels *el)
{
    const dr_jv *ref = dr_jv_get(pod, "podRef");
    memset(el, 0, sizeof *el);
    el->name[0] = "namespace";
    el->value[0] = dr_jv_str(dr_jv_get(ref, "namespace"));
    el->name[1] = "pod";
    el->value[1] = dr_jv_str(dr_jv_get(ref, "name"));
    el->name[2] = "uid";
    el->value[2] = dr_jv_str(dr_jv_get(ref, "uid"));
}

static const dr_jv *array_first(const dr_jv *v, const char *key)
{
    const dr_jv *a = dr_jv_get(v, key);
    return a && a->type == DR_JV_ARRAY ? a->child : NULL;
}

/* The containers or volumes of every pod. */
static void write_pod_children(family_out *f, const dr_jv *pods)
{
    const char *list = f->level == LEVEL_CONTAINER ? "containers" : "volume";
    for (const dr_jv *pod = pods; pod; pod = pod->next) {
        entity_labels el;
        pod_labels(pod, &el);
        for (const dr_jv *c = array_first(pod, list); c; c = c->next) {
            const char *name = dr_jv_str(dr_jv_get(c, "name"));
            if (!name)
                continue;
            el.name[3] = f->level == LEVEL_CONTAINER ? "container" : "volume";
            el.value[3] = name;
            if (f->level == LEVEL_VOLUME) {
                el.name[4] = "persistentvolumeclaim";
                el.value[4] = dr_jv_str(dr_jv_path(c, "pvcRef", "name", NULL));
            }
            write_entity(f, &el, c);
        }
    }
}

static int write_family(dr_buf *out, const summary_metric *m, summary_level level,
                        const dr_jv *node, const dr_jv *pods)
{
    family_out f = {.out = out, .m = m, .level = level};
    if (!m->block[level])
        return 0;
    if (level == LEVEL_NODE) {
        if (node)
            write_entity(&f, NULL, node);
    } else if (level == LEVEL_POD) {
        for (const dr_jv *pod = pods; pod; pod = pod->next) {
            entity_labels el;
            pod_labels(pod, &el);
            write_entity(&f, &el, pod);
        }
    } else {
        write_pod_children(&f, pods);
    }
    return f.rc ? DR_ENOMEM : 0;
}

int kubelet_summary_to_text(const char *body, size_t len, dr_buf *out, char *why, size_t whylen)
{
    dr_json_doc *doc = dr_json_doc_new();
    if (!doc) {
        snprintf(why, whylen, "out of memory");
        return DR_ENOMEM;
    }
    dr_json_limits lim = {.max_depth = SUMMARY_MAX_DEPTH};
    const dr_jv *root = NULL;
    dr_error err = {{0}};
    int rc = dr_json_parse(doc, body, len, &lim, &root, &err);
    if (rc != 0) {
        snprintf(why, whylen, "stats summary: %s", err.msg[0] ? err.msg : dr_strerror(rc));
        dr_json_doc_free(doc);
        return rc;
    }
    const dr_jv *node = dr_jv_get(root, "node");
    const dr_jv *pods_v = dr_jv_get(root, "pods");
    if (!root || root->type != DR_JV_OBJECT || (node && node->type != DR_JV_OBJECT) ||
        (pods_v && pods_v->type != DR_JV_ARRAY) || (!node && !pods_v)) {
        snprintf(why, whylen, "stats summary: not a summary (an object with node and pods)");
        dr_json_doc_free(doc);
        return DR_EINVAL;
    }
    const dr_jv *pods = pods_v ? pods_v->child : NULL;
    for (size_t i = 0; i < NMETRICS && rc == 0; i++)
        for (int level = 0; level < NLEVELS && rc == 0; level++)
            rc = write_family(out, &summary_metrics[i], (summary_level)level, node, pods);
    if (rc != 0)
        snprintf(why, whylen, "out of memory");
    dr_json_doc_free(doc);
    return rc;
}
