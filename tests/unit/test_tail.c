/*
 * The tail input and the file output driven through a whole agent in
 * oneshot mode, on files this test writes: joining, rotation with gzip,
 * checkpoints across runs, truncation, malformed and invalid bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "agent.h"
#include "metrics.h"
#include "test.h"

#define CID "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void on_done_stop(dr_agent *a, void *ctx)
{
    (void)a;
    (void)ctx;
}

static void on_finished(dr_agent *a, void *ctx)
{
    dr_agent_shutdown(a, on_done_stop, ctx);
}

/* Runs one oneshot agent over `root` with extra tail options; returns the
 * output file's content (caller frees). */
static char *run_oneshot(const char *root, const char *tail_extra, dr_metrics *m)
{
    char cfg[2048], cfgpath[512], out[512];
    snprintf(out, sizeof out, "%s/out.ndjson", root);
    unlink(out);
    snprintf(cfg, sizeof cfg,
             "agent:\n  data_dir: %s/data\n  http: {listen: \"off\"}\n"
             "inputs:\n  - {name: pods, type: tail, paths: [\"%s/containers/*.log\"], "
             "read_from: head%s}\n"
             "outputs:\n  - {name: out, type: file, match: pods, path: \"%s\"}\n",
             root, root, tail_extra, out);
    snprintf(cfgpath, sizeof cfgpath, "%s/drover.yaml", root);
    FILE *f = fopen(cfgpath, "w");
    fputs(cfg, f);
    fclose(f);

    dr_log_set_level(DR_LOG_ERROR);
    uv_loop_t loop;
    uv_loop_init(&loop);
    dr_cfg_errors errs = {0};
    dr_agent *a = dr_agent_create(&loop, m, cfgpath, true, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "  config: %s\n", errs.msg[i]);
    dr_cfg_errors_free(&errs);
    if (!CHECK(a != NULL)) {
        uv_loop_close(&loop);
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

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Makes root/pods/<ns>_<pod>_<uid>/<container>/ and the containers link to
 * <base> in it. Returns the pod directory in dir. */
static void make_container(const char *root, const char *base, char *dir, size_t cap)
{
    char cmd[1024];
    snprintf(dir, cap, "%s/pods/shop_web-1_uid-42/app", root);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' '%s/containers'", dir, root);
    CHECK_INT(system(cmd), 0);
    char target[600], link[600];
    snprintf(target, sizeof target, "%s/%s", dir, base);
    snprintf(link, sizeof link, "%s/containers/web-1_shop_app-%s.log", root, CID);
    unlink(link);
    CHECK_INT(symlink(target, link), 0);
}

static void append(const char *path, const char *text, size_t n)
{
    FILE *f = fopen(path, "ab");
    fwrite(text, 1, n, f);
    fclose(f);
}

static void append_str(const char *path, const char *text)
{
    append(path, text, strlen(text));
}

void test_tail_basic_join_and_metadata(void)
{
    const char *root = dt_tmpdir();
    char dir[512], log[600];
    make_container(root, "0.log", dir, sizeof dir);
    snprintf(log, sizeof log, "%s/0.log", dir);
    append_str(log, "2026-11-25T04:00:01.000000001Z stdout F one\n"
                    "2026-11-25T04:00:02.000000001Z stdout P tw\n"
                    "2026-11-25T04:00:02.500000000Z stderr F err\n"
                    "2026-11-25T04:00:03.000000001Z stdout F o\n");
    dr_metrics *m = dr_metrics_new();
    char *out = run_oneshot(root, "", m);
    CHECK_INT(count_lines(out), 3);
    CHECK(strstr(out,
                 "{\"time\":\"2026-11-25T04:00:01.000000001Z\",\"stream\":\"stdout\","
                 "\"message\":\"one\",\"kubernetes\":{\"namespace\":\"shop\",\"pod\":\"web-1\","
                 "\"pod_uid\":\"uid-42\",\"container\":\"app\",\"container_id\":\"" CID
                 "\"}}\n") != NULL);
    CHECK(strstr(out, "\"stream\":\"stdout\",\"message\":\"two\"") != NULL);
    CHECK(strstr(out, "\"stream\":\"stderr\",\"message\":\"err\"") != NULL);
    /* the joined record keeps the time of its first piece */
    CHECK(strstr(out, "02.000000001Z\",\"stream\":\"stdout\",\"message\":\"two\"") != NULL);
    free(out);

    /* a second run resumes from the checkpoint: nothing again */
    out = run_oneshot(root, "", m);
    CHECK_INT(count_lines(out), 0);
    free(out);
    append_str(log, "2026-11-25T04:00:04.000000001Z stdout F four\n");
    out = run_oneshot(root, "", m);
    CHECK_INT(count_lines(out), 1);
    CHECK(strstr(out, "\"message\":\"four\"") != NULL);
    free(out);
    dr_metrics_free(m);
}

static void write_gz(const char *path, const char *text)
{
    gzFile gz = gzopen(path, "wb");
    gzwrite(gz, text, (unsigned)strlen(text));
    gzclose(gz);
}

void test_tail_rotated_siblings_in_order(void)
{
    const char *root = dt_tmpdir();
    char dir[512], p[700];
    make_container(root, "0.log", dir, sizeof dir);
    /* oldest gzipped, then a plain rotation, then the live file */
    snprintf(p, sizeof p, "%s/0.log.20261125-040000.gz", dir);
    write_gz(p, "2026-11-25T04:00:00.000000001Z stdout F r1\n"
                "2026-11-25T04:00:00.000000002Z stdout F r2\n");
    snprintf(p, sizeof p, "%s/0.log.20261125-040100", dir);
    append_str(p, "2026-11-25T04:01:00.000000001Z stdout F r3\n");
    snprintf(p, sizeof p, "%s/0.log", dir);
    append_str(p, "2026-11-25T04:02:00.000000001Z stdout F r4\n");
    dr_metrics *m = dr_metrics_new();
    char *out = run_oneshot(root, "", m);
    CHECK_INT(count_lines(out), 4);
    const char *a = strstr(out, "r1"), *b = strstr(out, "r2"), *c = strstr(out, "r3"),
               *d = strstr(out, "r4");
    CHECK(a && b && c && d && a < b && b < c && c < d);
    free(out);
    /* the plain rotation is gzipped now, as the kubelet does: not read again */
    char gz[720];
    snprintf(p, sizeof p, "%s/0.log.20261125-040100", dir);
    snprintf(gz, sizeof gz, "%s.gz", p);
    write_gz(gz, "2026-11-25T04:01:00.000000001Z stdout F r3\n");
    unlink(p);
    out = run_oneshot(root, "", m);
    CHECK_INT(count_lines(out), 0);
    free(out);
    dr_metrics_free(m);
}

void test_tail_rotation_resumes_in_renamed_file(void)
{
    const char *root = dt_tmpdir();
    char dir[512], live[600], rotated[700];
    make_container(root, "0.log", dir, sizeof dir);
    snprintf(live, sizeof live, "%s/0.log", dir);
    append_str(live, "2026-11-25T04:00:00.000000001Z stdout F a1\n");
    dr_metrics *m = dr_metrics_new();
    char *out = run_oneshot(root, "", m);
    CHECK_INT(count_lines(out), 1);
    free(out);
    /* more lines, then the kubelet renames it and starts a new file */
    append_str(live, "2026-11-25T04:00:01.000000001Z stdout F a2\n");
    snprintf(rotated, sizeof rotated, "%s/0.log.20261125-040001", dir);
    CHECK_INT(rename(live, rotated), 0);
    append_str(live, "2026-11-25T04:00:02.000000001Z stdout F a3\n");
    out = run_oneshot(root, "", m);
    CHECK_INT(count_lines(out), 2);
    CHECK(strstr(out, "a1") == NULL);
    CHECK(strstr(out, "a2") != NULL && strstr(out, "a3") != NULL);
    free(out);
    dr_metrics_free(m);
}

void test_tail_truncation_and_bad_bytes(void)
{
    const char *root = dt_tmpdir();
    char dir[512], log[600];
    make_container(root, "0.log", dir, sizeof dir);
    snprintf(log, sizeof log, "%s/0.log", dir);
    const char bad[] = "2026-11-25T04:00:01.000000001Z stdout F bin\xff\x00\x01 end\n"
                       "this is not a CRI line\n"
                       "\n"
                       "2026-11-25T04:00:02.000000001Z stdout F\n";
    append(log, bad, sizeof bad - 1);
    dr_metrics *m = dr_metrics_new();
    char *out = run_oneshot(root, "", m);
    CHECK_INT(count_lines(out), 4);
    CHECK(strstr(out, "\"message\":\"bin\xef\xbf\xbd\\u0000\\u0001 end\"") != NULL);
    CHECK(strstr(out, "\"message\":\"this is not a CRI line\"") != NULL);
    CHECK(strstr(out, "\"message\":\"\"") != NULL);
    free(out);
    /* cut and rewritten shorter: read from the start again */
    FILE *f = fopen(log, "w");
    fputs("2026-11-25T04:00:09.000000001Z stdout F fresh\n", f);
    fclose(f);
    out = run_oneshot(root, "", m);
    CHECK_INT(count_lines(out), 1);
    CHECK(strstr(out, "fresh") != NULL);
    free(out);
    /* malformed lines dropped by option */
    append_str(log, "garbage\n2026-11-25T04:00:10.000000001Z stdout F ok\n");
    out = run_oneshot(root, ", malformed: drop", m);
    CHECK_INT(count_lines(out), 1);
    free(out);
    dr_metrics_free(m);
}

void test_tail_long_lines(void)
{
    const char *root = dt_tmpdir();
    char dir[512], log[600];
    make_container(root, "0.log", dir, sizeof dir);
    snprintf(log, sizeof log, "%s/0.log", dir);
    /* a 10000-byte physical line through a 4 KiB read buffer, split at 3000 */
    size_t n = 10000;
    char *line = malloc(n + 64);
    int h = snprintf(line, 64, "2026-11-25T04:00:01.000000001Z stdout F ");
    for (size_t i = 0; i < n; i++)
        line[h + i] = (char)('a' + i % 26);
    line[h + n] = '\n';
    append(log, line, (size_t)h + n + 1);
    append_str(log, "2026-11-25T04:00:02.000000001Z stdout F after\n");
    dr_metrics *m = dr_metrics_new();
    char *out = run_oneshot(root, ", read_buffer: 4KiB, max_record_bytes: 3000", m);
    CHECK_INT(count_lines(out), 5); /* 3000+3000+3000+1000, then "after" */
    CHECK(strstr(out, "\"message\":\"after\"") != NULL);
    free(out);
    free(line);
    dr_metrics_free(m);
}

/* logrotate copytruncate while drover is stopped: the copy supplies what
 * had not been read, the truncated file is read from its start. */
void test_tail_copytruncate_between_runs(void)
{
    const char *root = dt_tmpdir();
    char dir[512], log[600], copy[700];
    make_container(root, "0.log", dir, sizeof dir);
    snprintf(log, sizeof log, "%s/0.log", dir);
    snprintf(copy, sizeof copy, "%s/0.log.1", dir);
    append_str(log,
               "{\"log\":\"c1\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-25T04:00:01Z\"}\n");
    dr_metrics *m = dr_metrics_new();
    char *out = run_oneshot(root, "", m);
    CHECK_INT(count_lines(out), 1);
    free(out);
    append_str(log,
               "{\"log\":\"c2\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-25T04:00:02Z\"}\n");
    char *content = dt_read_file(log, NULL);
    FILE *f = fopen(copy, "w");
    fputs(content, f);
    fclose(f);
    free(content);
    f = fopen(log, "w"); /* truncate */
    fputs("{\"log\":\"c3\\n\",\"stream\":\"stderr\",\"time\":\"2026-11-25T04:00:03Z\"}\n", f);
    fclose(f);
    out = run_oneshot(root, "", m);
    CHECK_INT(count_lines(out), 2);
    CHECK(strstr(out, "\"message\":\"c1\"") == NULL);
    const char *c2 = strstr(out, "\"message\":\"c2\""), *c3 = strstr(out, "\"message\":\"c3\"");
    CHECK(c2 && c3 && c2 < c3);
    free(out);
    dr_metrics_free(m);
}

/* dockershim layout: the pods path is itself a link to the docker file. */
void test_tail_docker_layout_metadata(void)
{
    const char *root = dt_tmpdir();
    char cmd[2048], pods[700], docker[700], link[800];
    snprintf(pods, sizeof pods, "%s/pods/shop_api-7_uid-9/api", root);
    snprintf(docker, sizeof docker, "%s/docker/%s", root, CID);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' '%s' '%s/containers'", pods, docker, root);
    CHECK_INT(system(cmd), 0);
    char real[900], hop[800];
    snprintf(real, sizeof real, "%s/%s-json.log", docker, CID);
    snprintf(hop, sizeof hop, "%s/2.log", pods);
    snprintf(link, sizeof link, "%s/containers/api-7_shop_api-%s.log", root, CID);
    CHECK_INT(symlink(real, hop), 0);
    CHECK_INT(symlink(hop, link), 0);
    append_str(real,
               "{\"log\":\"hi\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-25T04:00:01Z\"}\n");
    dr_metrics *m = dr_metrics_new();
    char *out = run_oneshot(root, "", m);
    CHECK(strstr(out, "\"kubernetes\":{\"namespace\":\"shop\",\"pod\":\"api-7\",\"pod_uid\":"
                      "\"uid-9\",\"container\":\"api\",\"container_id\":\"" CID "\"}") != NULL);
    free(out);
    dr_metrics_free(m);
}
