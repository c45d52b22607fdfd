/*
 * The filter tests' harness (see filter_harness.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "buf.h"
#include "filter_harness.h"
#include "test.h"

#define CID "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

const char *dt_filter_root(void)
{
    return dt_tmpdir();
}

void dt_filter_add_log(const char *root, const char *ns, const char *pod, const char *lines)
{
    char dir[700], cmd[1600], target[800], link[800];
    snprintf(dir, sizeof dir, "%s/pods/%s_%s_uid-%s/app", root, ns, pod, pod);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' '%s/containers'", dir, root);
    CHECK_INT(system(cmd), 0);
    snprintf(target, sizeof target, "%s/0.log", dir);
    snprintf(link, sizeof link, "%s/containers/%s_%s_app-%s.log", root, pod, ns, CID);
    FILE *f = fopen(target, "ab");
    if (!CHECK(f != NULL))
        return;
    fputs(lines, f);
    fclose(f);
    unlink(link);
    CHECK_INT(symlink(target, link), 0);
}

static void on_stopped(dr_agent *a, void *ctx)
{
    (void)a;
    (void)ctx;
}

static void on_finished(dr_agent *a, void *ctx)
{
    dr_agent_shutdown(a, on_stopped, ctx);
}

static char *join_errors(const dr_cfg_errors *errs)
{
    dr_buf b = {0};
    for (size_t i = 0; i < errs->n; i++)
        dr_buf_printf(&b, "%s\n", errs->msg[i]);
    dr_buf_putc(&b, '\0');
    return b.p;
}

char *dt_filter_run(const char *root, const char *filters, dr_metrics *m, char **errors)
{
    return dt_filter_run_outputs(root, filters, "", m, errors);
}

char *dt_filter_run_outputs(const char *root, const char *filters, const char *outputs,
                            dr_metrics *m, char **errors)
{
    char cfgpath[600], out[600];
    snprintf(out, sizeof out, "%s/out.ndjson", root);
    snprintf(cfgpath, sizeof cfgpath, "%s/drover.yaml", root);
    unlink(out);
    FILE *f = fopen(cfgpath, "w");
    if (!CHECK(f != NULL))
        return NULL;
    fprintf(f,
            "agent:\n  data_dir: %s/data\n  http: {listen: \"off\"}\n"
            "inputs:\n  - {name: pods, type: tail, paths: [\"%s/containers/*.log\"], "
            "read_from: head}\n"
            "filters:\n%s"
            "outputs:\n  - {name: out, type: file, match: pods, path: \"%s\"}\n%s",
            root, root, filters, out, outputs);
    fclose(f);

    dr_log_set_level(DR_LOG_ERROR);
    uv_loop_t loop;
    uv_loop_init(&loop);
    dr_cfg_errors errs = {0};
    dr_agent *a = dr_agent_create(&loop, m, cfgpath, true, &errs);
    if (errors)
        *errors = a ? NULL : join_errors(&errs);
    dr_cfg_errors_free(&errs);
    if (!a) {
        CHECK_INT(uv_loop_close(&loop), 0);
        return NULL;
    }
    dr_agent_on_finished(a, on_finished, NULL);
    CHECK_INT(dr_agent_start(a), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    dr_agent_free(a);
    CHECK_INT(uv_loop_close(&loop), 0);
    char *content = dt_read_file(out, NULL);
    return content ? content : strdup("");
}

char *dt_filter_run_lines(const char *filters, const char *lines, dr_metrics *m)
{
    const char *root = dt_filter_root();
    dt_filter_add_log(root, "shop", "web-1", lines);
    char *errors = NULL;
    char *out = dt_filter_run(root, filters, m, &errors);
    if (!out)
        fprintf(stderr, "  config refused:\n%s", errors ? errors : "");
    free(errors);
    return out;
}

char *dt_filter_config_errors(const char *filters)
{
    const char *root = dt_filter_root();
    dt_filter_add_log(root, "shop", "web-1", "");
    dr_metrics *m = dr_metrics_new();
    char *errors = NULL;
    char *out = dt_filter_run(root, filters, m, &errors);
    free(out);
    dr_metrics_free(m);
    return errors;
}

char *dt_filter_bodies(const char *out)
{
    dr_buf b = {0};
    dr_buf_reserve(&b, 1);
    const char *line = out;
    while (line && *line) {
        const char *nl = strchr(line, '\n');
        const char *end = nl ? nl : line + strlen(line);
        const char *from = strstr(line, "\"message\":");
        const char *to = strstr(line, ",\"kubernetes\":");
        if (from && from < end) {
            if (!to || to > end)
                to = end;
            dr_buf_append(&b, from, (size_t)(to - from));
            dr_buf_putc(&b, '\n');
        }
        line = nl ? nl + 1 : NULL;
    }
    dr_buf_putc(&b, '\0');
    return b.p;
}

long long dt_metric(dr_metrics *m, const char *series)
{
    dr_buf b = {0};
    if (dr_metrics_render(m, &b) < 0 || dr_buf_putc(&b, '\0') < 0) {
        dr_buf_free(&b);
        return -1;
    }
    long long v = -1;
    size_t n = strlen(series);
    for (const char *p = b.p; p && *p;) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            v = strtoll(p + n + 1, NULL, 10);
            break;
        }
        const char *nl = strchr(p, '\n');
        p = nl ? nl + 1 : NULL;
    }
    dr_buf_free(&b);
    return v;
}
