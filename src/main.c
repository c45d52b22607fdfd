/*
 * drover: the command line, signals, the agent's own HTTP endpoints, and
 * configuration reloads.
 *
 * The process owns one libuv loop, one self-metrics registry and one HTTP
 * server for its whole life; the agent (the configuration and its pipeline)
 * is replaced on SIGHUP: the new configuration is loaded and validated first,
 * and only when it is good is the old agent shut down (inputs stop, queues
 * drain, checkpoints are saved) and the new one started from those
 * checkpoints. So a reload neither loses nor repeats a record.
 */
#include <getopt.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "buf.h"
#include "config.h"
#include "http_server.h"
#include "metrics.h"
#include "process_metrics.h"

#ifndef DROVER_VERSION
#define DROVER_VERSION "dev"
#endif

typedef struct app {
    uv_loop_t *loop;
    dr_metrics *metrics;
    const char *config_path;
    bool oneshot;
    dr_agent *agent;
    dr_agent *next; /* validated, waiting for the old agent to stop */
    dr_http_server *http;
    char *http_listen;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t trim_timer;
    bool stopping;
    int exit_code;
    dr_counter *reload_ok, *reload_failed;
    dr_gauge *reload_success;
} app;

static void usage(FILE *f)
{
    fprintf(f, "usage: drover [options]\n"
               "\n"
               "  -c, --config PATH     configuration file, or a directory whose *.yaml files\n"
               "                        are merged in name order (default /etc/drover/conf.d)\n"
               "      --check-config    validate the configuration, print every error, exit\n"
               "      --oneshot         read every input to its current end, deliver it all,\n"
               "                        save checkpoints and exit\n"
               "      --describe PLUGIN print a plugin's options as Markdown (\"all\" lists them)\n"
               "      --version         print the version\n"
               "  -h, --help            this text\n"
               "\n"
               "Signals: SIGTERM or SIGINT stop gracefully; SIGHUP reloads the configuration.\n");
}

static void print_errors(const dr_cfg_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "%s\n", errs->msg[i]);
    if (errs->dropped)
        fprintf(stderr, "(%zu more errors)\n", errs->dropped);
}

/* ---- HTTP endpoints ------------------------------------------------------ */

static int handle_http(void *ctx, const char *method, const char *path, dr_buf *body,
                       const char **content_type)
{
    app *ap = ctx;
    (void)method;
    *content_type = "text/plain; charset=utf-8";
    if (strcmp(path, "/metrics") == 0) {
        *content_type = "text/plain; version=0.0.4; charset=utf-8";
        return dr_metrics_render(ap->metrics, body) < 0 ? 500 : 200;
    }
    if (strcmp(path, "/healthz") == 0) {
        dr_buf_puts(body, "ok\n");
        return 200;
    }
    if (strcmp(path, "/readyz") == 0) {
        bool ready = ap->agent && dr_agent_ready(ap->agent) && !ap->next;
        dr_buf_puts(body, ready ? "ready\n" : "not ready\n");
        return ready ? 200 : 503;
    }
    dr_buf_puts(body, "not found\n");
    return 404;
}

static int start_http(app *ap, const char *listen)
{
    free(ap->http_listen);
    ap->http_listen = strdup(listen);
    if (strcmp(listen, "off") == 0 || listen[0] == '\0')
        return 0;
    dr_error err = {{0}};
    ap->http = dr_http_server_start(ap->loop, listen, handle_http, ap, &err);
    if (!ap->http) {
        dr_log_core(DR_LOG_ERROR, "cannot start the HTTP server", "listen=%s error=\"%s\"", listen,
                    err.msg);
        return DR_ERR;
    }
    dr_log_core(DR_LOG_INFO, "HTTP server listening", "listen=%s port=%d", listen,
                dr_http_server_port(ap->http));
    return 0;
}

static void stop_http(app *ap)
{
    if (ap->http) {
        dr_http_server_close(ap->http);
        ap->http = NULL;
    }
}

/* ---- life cycle -------------------------------------------------------------- */

static void close_signals(app *ap)
{
    uv_close((uv_handle_t *)&ap->sig_term, NULL);
    uv_close((uv_handle_t *)&ap->sig_int, NULL);
    uv_close((uv_handle_t *)&ap->sig_hup, NULL);
    uv_close((uv_handle_t *)&ap->trim_timer, NULL);
}

/* How often the heap gives its free pages back. */
#define TRIM_INTERVAL_MS 10000

/* A scrape's body, its gunzip'ed copy, a request being encoded: large
 * buffers come and go all the time, and the allocator keeps the pages they
 * freed in the middle of the heap resident. Handing those back every few
 * seconds keeps the steady RSS at what is in use; the pages that are soon
 * needed again cost a page fault each, a small price at this interval. */
static void on_trim_timer(uv_timer_t *t)
{
    (void)t;
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

static void on_final_stop(dr_agent *a, void *ctx)
{
    app *ap = ctx;
    dr_agent_free(a);
    if (ap->agent == a)
        ap->agent = NULL;
    if (ap->next) {
        dr_agent_free(ap->next);
        ap->next = NULL;
    }
    stop_http(ap);
    close_signals(ap);
    dr_log_core(DR_LOG_INFO, "stopped", NULL);
}

static void begin_stop(app *ap, const char *why)
{
    if (ap->stopping) {
        return;
    }
    ap->stopping = true;
    dr_log_core(DR_LOG_INFO, "stopping", "reason=%s", why);
    if (ap->agent)
        dr_agent_shutdown(ap->agent, on_final_stop, ap);
    else
        on_final_stop(NULL, ap);
}

static void on_oneshot_finished(dr_agent *a, void *ctx)
{
    (void)a;
    begin_stop(ctx, "oneshot_done");
}

static void on_agent_failed(dr_agent *a, void *ctx)
{
    app *ap = ctx;
    (void)a;
    ap->exit_code = 1;
    begin_stop(ap, "start_failed");
}

static int start_agent(app *ap, dr_agent *a)
{
    ap->agent = a;
    dr_agent_on_failed(a, on_agent_failed, ap);
    if (ap->oneshot)
        dr_agent_on_finished(a, on_oneshot_finished, ap);
    if (dr_agent_start(a) < 0) {
        ap->exit_code = 1;
        begin_stop(ap, "start_failed");
        return DR_ERR;
    }
    return 0;
}

static void on_old_agent_stopped(dr_agent *old, void *ctx)
{
    app *ap = ctx;
    dr_agent_free(old);
    dr_agent *a = ap->next;
    ap->next = NULL;
    ap->agent = NULL;
    const char *listen = dr_agent_get_conf(a)->http_listen;
    if (!ap->http_listen || strcmp(listen, ap->http_listen) != 0) {
        stop_http(ap);
        start_http(ap, listen);
    }
    dr_log_set_level((dr_log_level)dr_agent_get_conf(a)->log_level);
    if (start_agent(ap, a) == 0) {
        dr_counter_add(ap->reload_ok, 1);
        dr_gauge_set(ap->reload_success, 1);
        dr_log_core(DR_LOG_INFO, "configuration reloaded", "config=%s", ap->config_path);
    }
}

static void reload(app *ap)
{
    if (ap->stopping || ap->next || !ap->agent)
        return;
    dr_log_core(DR_LOG_INFO, "reloading configuration", "config=%s", ap->config_path);
    dr_cfg_errors errs = {0};
    dr_agent *a = dr_agent_create(ap->loop, ap->metrics, ap->config_path, ap->oneshot, &errs);
    if (!a) {
        for (size_t i = 0; i < errs.n; i++)
            dr_log_core(DR_LOG_ERROR, "new configuration refused; the running one stays",
                        "error=\"%s\"", errs.msg[i]);
        dr_cfg_errors_free(&errs);
        dr_counter_add(ap->reload_failed, 1);
        dr_gauge_set(ap->reload_success, 0);
        return;
    }
    dr_cfg_errors_free(&errs);
    ap->next = a;
    dr_agent_shutdown(ap->agent, on_old_agent_stopped, ap);
}

static void on_signal(uv_signal_t *h, int signum)
{
    app *ap = h->data;
    if (signum == SIGHUP) {
        reload(ap);
        return;
    }
    if (ap->stopping) {
        /* A second request: checkpoints only ever cover delivered records,
         * so leaving now loses nothing; the next start resends the rest. */
        dr_log_core(DR_LOG_WARN, "second stop signal, exiting now", NULL);
        _exit(0);
    }
    begin_stop(ap, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void register_core_metrics(app *ap)
{
    const char *build[] = {"version", DROVER_VERSION, NULL};
    dr_gauge_set(
        dr_metrics_gauge(ap->metrics, "drover_build_info", "The running drover's version.", build),
        1);
    const char *ok[] = {"result", "success", NULL};
    const char *bad[] = {"result", "failure", NULL};
    const char *none[] = {NULL};
    ap->reload_ok = dr_metrics_counter(ap->metrics, "drover_config_reloads_total",
                                       "Configuration reloads, by result.", ok);
    ap->reload_failed = dr_metrics_counter(ap->metrics, "drover_config_reloads_total",
                                           "Configuration reloads, by result.", bad);
    ap->reload_success =
        dr_metrics_gauge(ap->metrics, "drover_config_last_reload_successful",
                         "1 when the last configuration (re)load succeeded.", none);
    dr_gauge_set(ap->reload_success, 1);
    if (dr_process_metrics_register(ap->metrics) < 0)
        dr_log_core(DR_LOG_WARN, "cannot read /proc/self: no process_* metrics", NULL);
}

static int describe(const char *name)
{
    dr_buf out = {0};
    if (strcmp(name, "all") == 0) {
        for (size_t i = 0; i < dr_plugin_count(); i++)
            dr_buf_printf(&out, "%s\n", dr_plugin_at(i)->name);
    } else {
        const dr_plugin *p = dr_plugin_find(name);
        if (!p) {
            fprintf(stderr, "drover: no plugin named \"%s\" (try --describe all)\n", name);
            return 2;
        }
        dr_plugin_describe(p, &out);
    }
    fwrite(out.p, 1, out.len, stdout);
    dr_buf_free(&out);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'C'},
        {"oneshot", no_argument, NULL, 'o'},
        {"describe", required_argument, NULL, 'D'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    app ap = {0};
    ap.config_path = "/etc/drover/conf.d";
    bool check_only = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            ap.config_path = optarg;
            break;
        case 'C':
            check_only = true;
            break;
        case 'o':
            ap.oneshot = true;
            break;
        case 'D':
            return describe(optarg);
        case 'V':
            printf("drover %s\n", DROVER_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "drover: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    srandom((unsigned)dr_now_ns());

    ap.loop = uv_default_loop();
    ap.metrics = dr_metrics_new();
    if (!ap.metrics) {
        fprintf(stderr, "drover: out of memory\n");
        return 1;
    }
    register_core_metrics(&ap);

    dr_cfg_errors errs = {0};
    dr_agent *a = dr_agent_create(ap.loop, ap.metrics, ap.config_path, ap.oneshot, &errs);
    if (!a) {
        print_errors(&errs);
        dr_cfg_errors_free(&errs);
        if (check_only)
            fprintf(stderr, "configuration %s: invalid\n", ap.config_path);
        dr_metrics_free(ap.metrics);
        return 1;
    }
    if (check_only) {
        printf("configuration %s: ok\n", ap.config_path);
        dr_agent_free(a);
        /* plugins may have opened handles in init (HTTP clients): let
         * them close */
        uv_run(ap.loop, UV_RUN_DEFAULT);
        dr_metrics_free(ap.metrics);
        return 0;
    }
    dr_log_set_level((dr_log_level)dr_agent_get_conf(a)->log_level);

    uv_signal_init(ap.loop, &ap.sig_term);
    uv_signal_init(ap.loop, &ap.sig_int);
    uv_signal_init(ap.loop, &ap.sig_hup);
    ap.sig_term.data = ap.sig_int.data = ap.sig_hup.data = &ap;
    uv_signal_start(&ap.sig_term, on_signal, SIGTERM);
    uv_signal_start(&ap.sig_int, on_signal, SIGINT);
    uv_signal_start(&ap.sig_hup, on_signal, SIGHUP);
    uv_timer_init(ap.loop, &ap.trim_timer);
    uv_timer_start(&ap.trim_timer, on_trim_timer, TRIM_INTERVAL_MS, TRIM_INTERVAL_MS);
    uv_unref((uv_handle_t *)&ap.trim_timer);

    dr_log_core(DR_LOG_INFO, "starting", "version=%s config=%s oneshot=%s", DROVER_VERSION,
                ap.config_path, ap.oneshot ? "true" : "false");
    if (start_http(&ap, dr_agent_get_conf(a)->http_listen) < 0) {
        ap.exit_code = 1;
        ap.agent = a;
        begin_stop(&ap, "http_failed");
    } else {
        start_agent(&ap, a);
    }
    uv_run(ap.loop, UV_RUN_DEFAULT);
    free(ap.http_listen);
    dr_metrics_free(ap.metrics);
    int rc = uv_loop_close(ap.loop);
    if (rc != 0)
        dr_log_core(DR_LOG_WARN, "loop closed with handles open", "error=%s", uv_strerror(rc));
    return ap.exit_code;
}
