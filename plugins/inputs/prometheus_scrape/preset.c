/*
 * What the inputs built on prometheus_scrape's jobs share (kubelet,
 * coredns): they write each job as the scrape_configs entry a user would
 * have written and read it with job_parse, so that every rule of a scrape
 * config (defaults, TLS and token handling, limits, discovery) holds for
 * them exactly as for a hand-written job.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "scrape.h"

int scrape_yaml_escaped(dr_buf *b, const char *s)
{
    int rc = 0;
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            rc |= dr_buf_putc(b, '\\');
        if (*s == '\n')
            rc |= dr_buf_puts(b, "\\n");
        else
            rc |= dr_buf_putc(b, *s);
    }
    return rc ? DR_ENOMEM : 0;
}

int scrape_yaml_quoted(dr_buf *b, const char *s)
{
    int rc = dr_buf_putc(b, '"') | scrape_yaml_escaped(b, s) | dr_buf_putc(b, '"');
    return rc ? DR_ENOMEM : 0;
}

int scrape_job_from_yaml(scrape_input *in, const char *yaml, const char *path, scrape_job *job,
                         dr_cfg_errors *errs)
{
    dr_cfg_doc *doc = dr_cfg_load_untrusted(path, yaml, errs);
    if (!doc)
        return 1;
    int nerr = job_parse(in, dr_cfg_root(doc), path, job, errs);
    dr_cfg_doc_free(doc);
    return nerr;
}

int scrape_metric_relabel(scrape_job *job, const dr_cfg_node *user, const char *defaults_yaml,
                          const char *defaults_name, dr_cfg_errors *errs)
{
    if (user) {
        if (user->type == DR_CFG_SEQ && user->n == 0)
            return 0;
        return dr_relabel_parse(user, "metric_relabel_configs", &job->metric_relabel, errs) != 0;
    }
    if (!defaults_yaml)
        return 0;
    dr_cfg_doc *doc = dr_cfg_load_untrusted(defaults_name, defaults_yaml, errs);
    if (!doc)
        return 1;
    int nerr = dr_relabel_parse(dr_cfg_get(dr_cfg_root(doc), "rules"), "metric_relabel_configs",
                                &job->metric_relabel, errs) != 0;
    dr_cfg_doc_free(doc);
    return nerr;
}

scrape_input *scrape_input_new(dr_instance *inst, size_t max_jobs, int64_t interval_ms,
                               int64_t timeout_ms, int64_t metadata_interval_ms)
{
    scrape_input *in = calloc(1, sizeof *in);
    if (!in || !(in->jobs = calloc(max_jobs ? max_jobs : 1, sizeof *in->jobs))) {
        free(in);
        return NULL;
    }
    in->inst = inst;
    in->default_interval_ms = interval_ms;
    in->default_timeout_ms = timeout_ms;
    in->metadata_interval_ms = metadata_interval_ms;
    return in;
}
