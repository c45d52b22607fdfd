/*
 * The table of in-tree plugins. The core knows plugins only through this
 * table: adding a plugin means adding its struct here and its sources to
 * build.zig.
 */
#include <string.h>

#include "agent.h"
#include "buf.h"
#include "config.h"

extern const dr_plugin dr_plugin_tail;
extern const dr_plugin dr_plugin_prometheus_scrape;
extern const dr_plugin dr_plugin_kubelet;
extern const dr_plugin dr_plugin_dns_probe;
extern const dr_plugin dr_plugin_coredns;
extern const dr_plugin dr_plugin_file;
extern const dr_plugin dr_plugin_stdout;
extern const dr_plugin dr_plugin_null;
extern const dr_plugin dr_plugin_http;
extern const dr_plugin dr_plugin_loki;
extern const dr_plugin dr_plugin_kafka;
extern const dr_plugin dr_plugin_remote_write;
extern const dr_plugin dr_plugin_kubernetes;
extern const dr_plugin dr_plugin_namespaces;
extern const dr_plugin dr_plugin_grep;
extern const dr_plugin dr_plugin_modify;
extern const dr_plugin dr_plugin_parse;
extern const dr_plugin dr_plugin_redact;
extern const dr_plugin dr_plugin_sample;
extern const dr_plugin dr_plugin_throttle;
extern const dr_plugin dr_plugin_multiline;
extern const dr_plugin dr_plugin_route;

static const dr_plugin *const builtin[] = {
    &dr_plugin_tail,
    &dr_plugin_file,
    &dr_plugin_stdout,
    &dr_plugin_null,
    &dr_plugin_http,
    &dr_plugin_loki,
    &dr_plugin_kafka,
    &dr_plugin_remote_write,
    &dr_plugin_kubernetes,
    &dr_plugin_namespaces,
    &dr_plugin_grep,
    &dr_plugin_modify,
    &dr_plugin_parse,
    &dr_plugin_redact,
    &dr_plugin_sample,
    &dr_plugin_throttle,
    &dr_plugin_multiline,
    &dr_plugin_route,
    &dr_plugin_prometheus_scrape,
    &dr_plugin_kubelet,
    &dr_plugin_dns_probe,
    &dr_plugin_coredns,
};

size_t dr_plugin_count(void)
{
    return sizeof builtin / sizeof builtin[0];
}

const dr_plugin *dr_plugin_at(size_t i)
{
    return i < dr_plugin_count() ? builtin[i] : NULL;
}

const dr_plugin *dr_plugin_find(const char *name)
{
    for (size_t i = 0; i < dr_plugin_count(); i++)
        if (strcmp(builtin[i]->name, name) == 0)
            return builtin[i];
    return NULL;
}

static const char *type_name(dr_opt_type t)
{
    switch (t) {
    case DR_OPT_STRING:
        return "string";
    case DR_OPT_INT:
        return "integer";
    case DR_OPT_BOOL:
        return "boolean";
    case DR_OPT_SIZE:
        return "size";
    case DR_OPT_DURATION:
        return "duration";
    case DR_OPT_STRLIST:
        return "list of strings";
    case DR_OPT_ENUM:
        return "one of";
    case DR_OPT_GROUP:
        return "group";
    case DR_OPT_NODE:
        return "YAML";
    }
    return "?";
}

static void describe_options(const dr_option *table, dr_buf *out)
{
    dr_option *opts = dr_options_flatten(table);
    dr_buf_puts(out, "| option | type | default | description |\n|---|---|---|---|\n");
    for (const dr_option *o = opts; o && o->name; o++) {
        dr_buf_printf(out, "| `%s` | %s", o->name, type_name(o->type));
        if (o->type == DR_OPT_ENUM) {
            for (const char *const *c = o->choices; c && *c; c++)
                dr_buf_printf(out, "%s`%s`", c == o->choices ? " " : ", ", *c);
        }
        if (o->flags & DR_OPT_REQUIRED)
            dr_buf_puts(out, " | required");
        else if (o->def)
            dr_buf_printf(out, " | `%s`", o->def);
        else
            dr_buf_puts(out, " | none");
        dr_buf_printf(out, " | %s |\n", o->help ? o->help : "");
    }
    dr_options_free(opts);
}

/* The tables of the structured options whose entries have keys of their
 * own (a list of maps: scrape_configs), and theirs in turn, each headed by
 * its path (scrape_configs[].kubernetes_sd_configs). */
static void describe_entries(const dr_option *table, const char *prefix, dr_buf *out)
{
    for (const dr_option *o = table; o && o->name; o++) {
        if (o->type != DR_OPT_NODE || !o->group)
            continue;
        char path[256];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "[]." : "", o->name);
        dr_buf_printf(out, "\n### Keys of each `%s` entry\n\n", path);
        describe_options(o->group, out);
        describe_entries(o->group, path, out);
    }
}

int dr_plugin_describe(const dr_plugin *p, dr_buf *out)
{
    static const char *const kinds[] = {"input", "filter", "output"};
    dr_buf_printf(out, "# %s (%s)\n\n%s\n\n", p->name, kinds[p->kind], p->description);
    unsigned data = p->data ? p->data : DR_DATA_LOGS;
    dr_buf_printf(out, "%s: %s.\n\n", p->kind == DR_INPUT ? "Produces" : "Handles",
                  data == (DR_DATA_LOGS | DR_DATA_METRICS) ? "log records and metric samples"
                  : data == DR_DATA_METRICS                ? "metric samples"
                                                           : "log records");
    dr_buf_puts(out, "## Options\n\n");
    describe_options(p->options, out);
    describe_entries(p->options, "", out);
    dr_buf_printf(out, "\n## Options every %s has\n\n", kinds[p->kind]);
    describe_options(p->kind == DR_INPUT    ? dr_common_input_options
                     : p->kind == DR_FILTER ? dr_common_filter_options
                                            : dr_common_output_options,
                     out);
    return 0;
}
