/*
 * file_sd_configs: target groups kept in files (JSON or YAML), the way
 * Prometheus reads them: each file holds a list of {targets, labels}, the
 * patterns may be globs over file names, and every target gets the label
 * __meta_filepath with the file it came from.
 *
 * The files are looked at (names, sizes and modification times) every few
 * seconds and read again when anything changed, and in any case every
 * refresh_interval. A file that does not parse keeps the groups it had, and
 * the error is logged: a half-written file never empties a job.
 */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "scrape.h"

/* Files larger than this are not target lists. */
#define FILE_SD_MAX_BYTES (16u << 20)

int file_sd_parse(const dr_cfg_node *map, const char *path, file_sd *out, dr_cfg_errors *errs)
{
    memset(out, 0, sizeof *out);
    out->refresh_ms = 5 * 60 * 1000; /* Prometheus' default */
    if (map->type != DR_CFG_MAP) {
        dr_cfg_error(errs, map, path, "expected a map with files and refresh_interval");
        return 1;
    }
    int nerr = 0;
    for (size_t i = 0; i < map->n; i++) {
        const char *k = map->pairs[i].key->str;
        const dr_cfg_node *v = map->pairs[i].val;
        if (strcmp(k, "files") == 0) {
            if (v->type != DR_CFG_SEQ || v->n == 0) {
                dr_cfg_error(errs, v, path, "files: expected a list of file patterns");
                nerr++;
                continue;
            }
            out->patterns.v = calloc(v->n + 1, sizeof *out->patterns.v);
            if (!out->patterns.v)
                return nerr + 1;
            for (size_t j = 0; j < v->n; j++) {
                const dr_cfg_node *f = v->items[j];
                const char *ext = f->type == DR_CFG_SCALAR ? strrchr(f->str, '.') : NULL;
                if (!ext || (strcmp(ext, ".json") != 0 && strcmp(ext, ".yml") != 0 &&
                             strcmp(ext, ".yaml") != 0)) {
                    /* as Prometheus: the extension says the format */
                    dr_cfg_error(errs, f, path,
                                 "files[%zu]: a pattern must end in .json, .yml or .yaml", j);
                    nerr++;
                } else if (!(out->patterns.v[out->patterns.n++] = strdup(f->str))) {
                    return nerr + 1;
                }
            }
        } else if (strcmp(k, "refresh_interval") == 0) {
            if (v->type != DR_CFG_SCALAR || dr_parse_duration(v->str, &out->refresh_ms) != 0 ||
                out->refresh_ms <= 0) {
                dr_cfg_error(errs, v, path, "refresh_interval: expected a duration such as 5m");
                nerr++;
            }
        } else {
            dr_cfg_error(errs, map->pairs[i].key, path,
                         "unknown key \"%s\" (file_sd_configs have files and refresh_interval)", k);
            nerr++;
        }
    }
    if (!out->patterns.n && !nerr) {
        dr_cfg_error(errs, map, path, "files: at least one pattern is required");
        nerr++;
    }
    return nerr;
}

void file_sd_free(file_sd *sd)
{
    for (size_t i = 0; i < sd->patterns.n; i++)
        free(sd->patterns.v[i]);
    free(sd->patterns.v);
    groups_free(sd->groups, sd->ngroups);
    free(sd->last_error);
    memset(sd, 0, sizeof *sd);
}

/* The files the patterns name now, sorted and without repeats. */
static int list_files(const file_sd *sd, glob_t *g)
{
    memset(g, 0, sizeof *g);
    for (size_t i = 0; i < sd->patterns.n; i++) {
        int rc = glob(sd->patterns.v[i], i ? GLOB_APPEND : 0, NULL, g);
        if (rc != 0 && rc != GLOB_NOMATCH)
            return DR_EIO;
    }
    return 0;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* What the files look like now: names, sizes, modification times. */
static uint64_t fingerprint(const glob_t *g)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < g->gl_pathc; i++) {
        struct stat st;
        h = fnv(h, g->gl_pathv[i], strlen(g->gl_pathv[i]) + 1);
        if (stat(g->gl_pathv[i], &st) == 0) {
            h = fnv(h, &st.st_size, sizeof st.st_size);
            h = fnv(h, &st.st_mtim, sizeof st.st_mtim);
            h = fnv(h, &st.st_ino, sizeof st.st_ino);
        }
    }
    return h;
}

static char *read_file(const char *path, char *why, size_t whylen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, whylen, "cannot be read");
        return NULL;
    }
    dr_buf b = {0};
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (b.len + n > FILE_SD_MAX_BYTES) {
            snprintf(why, whylen, "larger than %u bytes", FILE_SD_MAX_BYTES);
            fclose(f);
            dr_buf_free(&b);
            return NULL;
        }
        dr_buf_append(&b, tmp, n);
    }
    fclose(f);
    dr_buf_putc(&b, '\0');
    return b.p ? b.p : strdup("");
}

/* Reads one file's groups and appends them to *all. */
static int read_groups(scrape_job *job, const char *path, target_group **all, size_t *nall)
{
    char why[256] = "";
    char *text = read_file(path, why, sizeof why);
    if (!text) {
        dr_log(job->in->inst, DR_LOG_WARN, "file_sd file skipped", "job=%s file=%s error=\"%s\"",
               job->name, path, why);
        return DR_EIO;
    }
    dr_cfg_errors errs = {0};
    /* JSON is read as the YAML it also is */
    dr_cfg_doc *doc = dr_cfg_load_untrusted(path, text, &errs);
    free(text);
    target_group *g = NULL;
    size_t ng = 0;
    int rc = 0;
    if (!doc || errs.n) {
        rc = DR_EINVAL;
    } else {
        const dr_cfg_node *root = dr_cfg_root(doc);
        /* an empty file is an empty list */
        if (root->type == DR_CFG_MAP && root->n == 0)
            rc = 0;
        else if (groups_parse(root, "", path, &g, &ng, &errs) != 0)
            rc = DR_EINVAL;
    }
    if (rc != 0) {
        dr_log(job->in->inst, DR_LOG_WARN, "file_sd file does not parse; its last targets stay",
               "job=%s file=%s error=\"%s\"", job->name, path, errs.n ? errs.msg[0] : "unreadable");
    } else if (ng > 0) {
        target_group *grown = realloc(*all, (*nall + ng) * sizeof *grown);
        if (!grown) {
            groups_free(g, ng);
            rc = DR_ENOMEM;
        } else {
            memcpy(grown + *nall, g, ng * sizeof *g);
            free(g); /* its members moved */
            *all = grown;
            *nall += ng;
        }
    }
    dr_cfg_errors_free(&errs);
    dr_cfg_doc_free(doc);
    return rc;
}

/* Moves the groups of `path` from the old list to *all (the file did not
 * parse this time: what it held stays). */
static void keep_old_groups(file_sd *sd, const char *path, target_group **all, size_t *nall)
{
    for (size_t i = 0; i < sd->ngroups; i++) {
        target_group *g = &sd->groups[i];
        if (!g->source || strcmp(g->source, path) != 0)
            continue;
        target_group *grown = realloc(*all, (*nall + 1) * sizeof *grown);
        if (!grown)
            return;
        grown[*nall] = *g;
        memset(g, 0, sizeof *g); /* moved: freeing the old list skips it */
        dr_labels_init(&g->labels);
        *all = grown;
        (*nall)++;
    }
}

bool file_sd_refresh(scrape_job *job, file_sd *sd, bool force)
{
    int64_t now = dr_mono_ns() / 1000000;
    glob_t g;
    if (list_files(sd, &g) != 0) {
        globfree(&g);
        return false;
    }
    uint64_t fp = fingerprint(&g);
    if (!force && fp == sd->fingerprint && now < sd->next_read_ms) {
        globfree(&g);
        return false;
    }
    target_group *all = NULL;
    size_t nall = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        if (i > 0 && strcmp(g.gl_pathv[i], g.gl_pathv[i - 1]) == 0)
            continue;
        if (read_groups(job, g.gl_pathv[i], &all, &nall) != 0)
            keep_old_groups(sd, g.gl_pathv[i], &all, &nall);
    }
    globfree(&g);
    groups_free(sd->groups, sd->ngroups);
    sd->groups = all;
    sd->ngroups = nall;
    sd->fingerprint = fp;
    sd->next_read_ms = now + sd->refresh_ms;
    return true;
}
