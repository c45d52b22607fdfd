/*
 * The prometheus_scrape input: Prometheus' scrape_configs, scraped as
 * Prometheus scrapes them, into metric chunks for the metric outputs.
 *
 *   inputs:
 *     - type: prometheus_scrape
 *       scrape_interval: 15s
 *       scrape_configs:
 *         - job_name: node
 *           static_configs: [{targets: ["127.0.0.1:9100"]}]
 *
 * This file holds the plugin's options, its start and stop, and the
 * periodic re-reading of file_sd files; job.c, target.c and cache.c do the
 * rest (see scrape.h).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scrape.h"
#include "series.h"

typedef struct scrape_conf {
    int64_t scrape_interval_ms, scrape_timeout_ms, metadata_interval_ms;
    const dr_cfg_node *scrape_configs;
} scrape_conf;

static const dr_option scrape_options[] = {
    {"scrape_interval",
     DR_OPT_DURATION,
     offsetof(scrape_conf, scrape_interval_ms),
     "1m",
     0,
     {NULL},
     1,
     86400000,
     "The scrape_interval of jobs that set none (Prometheus' global scrape_interval)."},
    {"scrape_timeout",
     DR_OPT_DURATION,
     offsetof(scrape_conf, scrape_timeout_ms),
     "10s",
     0,
     {NULL},
     1,
     86400000,
     "The scrape_timeout of jobs that set none (cut to the job's interval when longer)."},
    {"metadata_interval",
     DR_OPT_DURATION,
     offsetof(scrape_conf, metadata_interval_ms),
     "1m",
     0,
     {NULL},
     1,
     86400000,
     "How often each target's family metadata (TYPE, HELP, UNIT) goes out with its samples."},
    {"scrape_configs",
     DR_OPT_NODE,
     offsetof(scrape_conf, scrape_configs),
     NULL,
     DR_OPT_REQUIRED,
     {.group = scrape_job_options},
     0,
     0,
     "The jobs, as the scrape_configs list of a prometheus.yml: each entry takes the keys in "
     "the table below."},
    {0},
};

/* How often file_sd files are looked at for changes. */
#define FILE_SD_CHECK_MS 5000

void scrape_input_free(scrape_input *in)
{
    for (size_t i = 0; i < in->njobs; i++)
        job_free(&in->jobs[i]);
    free(in->jobs);
    dr_buf_free(&in->body);
    dr_buf_free(&in->converted);
    free(in);
}

/* Puts the errors of the jobs into err: the first in full (it has its
 * position), and how many more there are (all were logged). */
static void report_errors(dr_instance *inst, dr_cfg_errors *errs, dr_error *err)
{
    for (size_t i = 0; i < errs->n; i++)
        dr_log(inst, DR_LOG_ERROR, "invalid scrape config", "error=\"%s\"", errs->msg[i]);
    if (errs->n == 1)
        dr_error_set(err, "%s", errs->msg[0]);
    else
        dr_error_set(err, "%s (and %zu more errors)", errs->msg[0], errs->n - 1 + errs->dropped);
}

static int scrape_init(dr_instance *inst, dr_error *err)
{
    scrape_conf *conf = inst->conf;
    const dr_cfg_node *list = conf->scrape_configs;
    if (list->type != DR_CFG_SEQ || list->n == 0) {
        dr_error_set(err, "%s:%d:%d: scrape_configs: expected a list of jobs", list->file,
                     list->line, list->col);
        return DR_EINVAL;
    }
    scrape_input *in = scrape_input_new(inst, list->n, conf->scrape_interval_ms,
                                        conf->scrape_timeout_ms, conf->metadata_interval_ms);
    if (!in)
        return DR_ENOMEM;
    inst->state = in;
    dr_cfg_errors errs = {0};
    for (size_t i = 0; i < list->n; i++) {
        char path[64];
        snprintf(path, sizeof path, "scrape_configs[%zu]", i);
        job_parse(in, list->items[i], path, &in->jobs[in->njobs], &errs);
        in->njobs++;
        for (size_t j = 0; j + 1 < in->njobs && !errs.n; j++)
            if (in->jobs[i].name && in->jobs[j].name &&
                strcmp(in->jobs[i].name, in->jobs[j].name) == 0)
                dr_cfg_error(&errs, dr_cfg_get(list->items[i], "job_name"), path,
                             "job_name \"%s\" is used twice", in->jobs[i].name);
    }
    if (errs.n) {
        report_errors(inst, &errs, err);
        dr_cfg_errors_free(&errs);
        scrape_input_free(in);
        inst->state = NULL;
        return DR_EINVAL;
    }
    return 0;
}

static void on_sd_timer(uv_timer_t *timer)
{
    scrape_input *in = timer->data;
    for (size_t i = 0; i < in->njobs; i++) {
        scrape_job *job = &in->jobs[i];
        bool changed = false;
        for (size_t s = 0; s < job->nfile_sds; s++)
            changed |= file_sd_refresh(job, &job->file_sds[s], false);
        for (size_t s = 0; s < job->nkube_sds; s++)
            changed |= kube_sd_take_changes(&job->kube_sds[s]);
        if (changed)
            job_sync_targets(job);
    }
}

int scrape_input_start(scrape_input *in)
{
    dr_instance *inst = in->inst;
    in->series = dr_agent_series(inst->agent);
    if (!in->series)
        return DR_ENOMEM;
    in->scrapes = dr_counter_new(inst, "drover_scrapes_total", "Scrapes started.", NULL, NULL);
    in->skipped = dr_counter_new(inst, "drover_scrapes_skipped_total",
                                 "Scrapes not started: the outputs were full or the last scrape "
                                 "of the target had not ended.",
                                 NULL, NULL);
    in->samples = dr_counter_new(inst, "drover_scrape_samples_total",
                                 "Samples emitted: scraped, staleness markers and report series.",
                                 NULL, NULL);
    in->stale_markers =
        dr_counter_new(inst, "drover_scrape_stale_markers_total",
                       "Staleness markers emitted for series that ended.", NULL, NULL);
    in->targets_dropped = dr_counter_new(inst, "drover_scrape_targets_dropped_total",
                                         "Targets relabel_configs dropped or that had no valid "
                                         "labels, over every target sync.",
                                         NULL, NULL);
    in->targets_active =
        dr_gauge_new(inst, "drover_scrape_targets", "Targets being scraped.", NULL, NULL);
    bool any_file_sd = false;
    for (size_t i = 0; i < in->njobs; i++) {
        dr_error err = {{0}};
        if (job_start(&in->jobs[i], &err) != 0) {
            dr_log(inst, DR_LOG_ERROR, "cannot start job", "job=%s error=\"%s\"", in->jobs[i].name,
                   err.msg);
            return DR_EINVAL;
        }
        for (size_t s = 0; s < in->jobs[i].nfile_sds; s++) {
            file_sd_refresh(&in->jobs[i], &in->jobs[i].file_sds[s], true);
            any_file_sd = true;
        }
        if (in->jobs[i].nkube_sds)
            any_file_sd = true; /* the same tick applies discovered changes */
        job_sync_targets(&in->jobs[i]);
    }
    if (any_file_sd) {
        uv_timer_init(inst->loop, &in->sd_timer);
        in->sd_timer.data = in;
        in->sd_timer_started = true;
        uv_timer_start(&in->sd_timer, on_sd_timer, FILE_SD_CHECK_MS, FILE_SD_CHECK_MS);
    }
    return 0;
}

static void on_sd_closed(uv_handle_t *h)
{
    scrape_input *in = h->data;
    in->sd_timer_started = false;
    scrape_input_free(in);
}

void scrape_input_stop(scrape_input *in)
{
    if (in->stopping)
        return;
    in->stopping = true;
    for (size_t i = 0; i < in->njobs; i++) {
        scrape_job *job = &in->jobs[i];
        if (job->http) {
            dr_http_client_close(job->http); /* cancels: scrape_done sees stopping */
            job->http = NULL;
        }
        while (job->targets) {
            scrape_target *t = job->targets;
            job->targets = t->next;
            target_stop(t, false);
        }
        job->ntargets = 0;
        for (size_t s = 0; s < job->nkube_sds; s++)
            kube_sd_stop(&job->kube_sds[s]);
    }
    if (in->sd_timer_started)
        uv_timer_stop(&in->sd_timer);
}

void scrape_plugin_stop(dr_instance *inst)
{
    scrape_input *in = inst->state;
    if (in)
        scrape_input_stop(in);
}

void scrape_input_destroy(scrape_input *in)
{
    scrape_input_stop(in);
    if (in->sd_timer_started && !uv_is_closing((uv_handle_t *)&in->sd_timer)) {
        uv_close((uv_handle_t *)&in->sd_timer, on_sd_closed); /* frees in */
        return;
    }
    scrape_input_free(in);
}

int scrape_plugin_start(dr_instance *inst)
{
    return scrape_input_start(inst->state);
}

void scrape_plugin_destroy(dr_instance *inst)
{
    scrape_input *in = inst->state;
    if (!in)
        return;
    inst->state = NULL;
    scrape_input_destroy(in);
}

const dr_plugin dr_plugin_prometheus_scrape = {
    .abi = DR_PLUGIN_ABI,
    .name = "prometheus_scrape",
    .kind = DR_INPUT,
    .description =
        "Scrapes Prometheus endpoints with the scrape_configs of a prometheus.yml: static, "
        "file-based and Kubernetes-discovered targets (every role of kubernetes_sd_configs, with "
        "attach_metadata; this node's pods, node and endpoints by default), "
        "relabel_configs and metric_relabel_configs, honor_labels and "
        "honor_timestamps, sample and label limits, basic, bearer and TLS authentication. Text "
        "0.0.4, OpenMetrics 1.0 and protobuf bodies, gzip'ed or not, chosen by "
        "scrape_protocols. Each target gets up, scrape_duration_seconds, "
        "scrape_samples_scraped, scrape_samples_post_metric_relabeling and scrape_series_added, "
        "and its series get staleness markers when they disappear, when a scrape fails and "
        "when the target goes away. Scrapes are spread over the interval; while the outputs "
        "are full, scrapes are skipped and counted.",
    .options = scrape_options,
    .conf_size = sizeof(scrape_conf),
    .init = scrape_init,
    .start = scrape_plugin_start,
    .stop = scrape_plugin_stop,
    .destroy = scrape_plugin_destroy,
    .data = DR_DATA_METRICS,
};
