/*
 * Configuration checks of whole agents, for the tests of plugins' option
 * errors: the configuration is written to a file and made into an agent
 * with the checks of --check-config, and the errors are returned.
 */
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "agent.h"
#include "config.h"
#include "drover/plugin.h"
#include "metrics.h"
#include "test.h"

const char *dt_config_errors(const char *agent_extra, const char *pipeline)
{
    static char errors[4096];
    char path[512];
    const char *dir = dt_tmpdir();
    snprintf(path, sizeof path, "%s/agent.yaml", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return "cannot write the configuration";
    fprintf(f, "agent:\n  data_dir: %s/data\n  http: {listen: \"off\"}\n", dir);
    if (agent_extra)
        fprintf(f, "  %s\n", agent_extra);
    fputs(pipeline, f);
    fclose(f);
    dr_log_set_level(DR_LOG_ERROR);
    dr_metrics *m = dr_metrics_new();
    uv_loop_t loop;
    uv_loop_init(&loop);
    dr_cfg_errors errs = {0};
    dr_agent *a = dr_agent_create(&loop, m, path, true, &errs);
    errors[0] = '\0';
    for (size_t i = 0; i < errs.n; i++) {
        size_t o = strlen(errors);
        snprintf(errors + o, sizeof errors - o, "%s\n", errs.msg[i]);
    }
    if (!a && errs.n == 0)
        snprintf(errors, sizeof errors, "refused without an error\n");
    dr_cfg_errors_free(&errs);
    if (a)
        dr_agent_free(a);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    dr_metrics_free(m);
    return errors;
}
