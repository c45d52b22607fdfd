/*
 * Filters made at run time from rules a namespace owns (dr_agent_filter_new):
 * what is refused, that ${VAR} stays literal, that route may only name
 * outputs offered to namespaces, and that a made filter works on chunks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "config.h"
#include "filter_harness.h"
#include "test.h"

typedef struct fixture {
    uv_loop_t loop;
    dr_metrics *m;
    dr_agent *a;
} fixture;

static bool fixture_open(fixture *f)
{
    const char *root = dt_filter_root();
    char cfg[512];
    snprintf(cfg, sizeof cfg, "%s/drover.yaml", root);
    FILE *fp = fopen(cfg, "w");
    if (!CHECK(fp != NULL))
        return false;
    fprintf(fp,
            "agent:\n  data_dir: %s/data\n  http: {listen: \"off\"}\n"
            "inputs:\n  - {name: pods, type: tail, paths: [\"%s/none/*.log\"]}\n"
            "outputs:\n  - {name: out, type: null, match: pods}\n"
            "  - {name: team, type: null, match: none, offer_to_namespaces: true}\n",
            root, root);
    fclose(fp);
    dr_log_set_level(DR_LOG_ERROR);
    uv_loop_init(&f->loop);
    f->m = dr_metrics_new();
    dr_cfg_errors errs = {0};
    f->a = dr_agent_create(&f->loop, f->m, cfg, false, &errs);
    dr_cfg_errors_free(&errs);
    return CHECK(f->a != NULL);
}

static void fixture_close(fixture *f)
{
    dr_agent_free(f->a);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(&f->loop), 0);
    dr_metrics_free(f->m);
}

/* Makes a filter from one YAML list item; NULL with the errors in *why. */
static dr_instance *make(fixture *f, const char *yaml, char **why)
{
    dr_cfg_errors errs = {0};
    dr_cfg_doc *doc = dr_cfg_load_untrusted("team-a/drover-filters:filters.yaml", yaml, &errs);
    dr_instance *inst = NULL;
    if (doc && dr_cfg_root(doc)->type == DR_CFG_SEQ)
        inst = dr_agent_filter_new(f->a, dr_cfg_root(doc)->items[0], "[0]", "team-a/0", NULL, NULL,
                                   &errs);
    dr_buf b = {0};
    for (size_t i = 0; i < errs.n; i++)
        dr_buf_printf(&b, "%s\n", errs.msg[i]);
    dr_buf_putc(&b, '\0');
    *why = b.p;
    dr_cfg_errors_free(&errs);
    dr_cfg_doc_free(doc);
    return inst;
}

void test_dynamic_filters_refused(void)
{
    fixture f;
    if (!fixture_open(&f))
        return;
    static const struct {
        const char *yaml, *why;
    } bad[] = {
        {"- {type: grep, match: '*', exclude: ['message x']}\n", "[0].match: not allowed"},
        {"- {type: grep, exclude: ['message (']}\n", "exclude[0]"},
        {"- {type: route, outputs: [out]}\n", "\"out\" is not offered to namespaces"},
        {"- {type: route, outputs: [nowhere]}\n", "no output named \"nowhere\""},
        {"- {type: modify, operations: ['set kubernetes.namespace b']}\n", "kubernetes"},
        {"- {type: grep, exclude: ['message x'], bogus: 1}\n", "bogus: unknown key"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *why = NULL;
        dr_instance *inst = make(&f, bad[i].yaml, &why);
        CHECK(inst == NULL);
        if (!CHECK(why && strstr(why, bad[i].why)))
            fprintf(stderr, "    %s gave: %s\n", bad[i].yaml, why ? why : "(nothing)");
        free(why);
        dr_agent_filter_free(inst);
    }
    fixture_close(&f);
}

void test_dynamic_filters_work(void)
{
    fixture f;
    if (!fixture_open(&f))
        return;
    setenv("DROVER_TEST_SECRET", "s3cr3t", 1);
    char *why = NULL;
    dr_instance *mod =
        make(&f, "- {type: modify, operations: ['set leak ${DROVER_TEST_SECRET}']}\n", &why);
    free(why);
    dr_instance *route = make(&f, "- {type: route, outputs: [team]}\n", &why);
    free(why);
    if (CHECK(mod != NULL) && CHECK(route != NULL)) {
        CHECK(mod->restricted && route->restricted);
        dr_chunk *c = dr_chunk_new(NULL, 0);
        dr_record *r = dr_chunk_add(c);
        r->msg = "x";
        r->msg_len = 1;
        mod->plugin->filter(mod, c);
        dr_value v;
        char tbuf[40];
        CHECK(dr_record_get(c, r, "leak", 4, &v, tbuf) && v.len == 21 &&
              memcmp(v.p, "${DROVER_TEST_SECRET}", 21) == 0);
        route->plugin->filter(route, c);
        CHECK_INT(c->nroute, 1);
        CHECK(c->nroute == 1 && c->route[0] == dr_agent_output(f.a, "team"));
        CHECK(!c->route_keep_default);
        dr_chunk_discard(c);
    }
    dr_agent_filter_free(mod);
    dr_agent_filter_free(route);
    unsetenv("DROVER_TEST_SECRET");
    fixture_close(&f);
}
