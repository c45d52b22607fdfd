/*
 * Record keys in filter configurations (see keys.h).
 *
 * Keys are checked when the configuration is loaded, so that a typo such as
 * "kubernetes.namspace" is an error at start rather than a rule that
 * silently never matches.
 */
#include <stdlib.h>
#include <string.h>

#include "keys.h"

static bool is(const char *key, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(key, lit, len) == 0;
}

static bool has_prefix(const char *key, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(key, prefix, n) == 0;
}

/* The names after "kubernetes." that dr_record_get knows. */
static bool kube_name_known(const char *name, size_t len)
{
    static const char *const scalars[] = {"namespace",    "pod",       "pod_uid", "container",
                                          "container_id", "image",     "node",    "pod_ip",
                                          "owner_kind",   "owner_name"};
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++)
        if (is(name, len, scalars[i]))
            return true;
    static const char *const maps[] = {"labels.", "annotations.", "namespace_labels."};
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++)
        if (has_prefix(name, len, maps[i]) && len > strlen(maps[i]))
            return true;
    return false;
}

static bool key_is_kubernetes(const char *key, size_t len)
{
    return is(key, len, "kubernetes") || has_prefix(key, len, "kubernetes.");
}

bool dr_key_readable(const char *key, size_t len, const char *what, dr_error *err)
{
    if (len == 0) {
        dr_error_set(err, "%s: empty key", what);
        return false;
    }
    if (key_is_kubernetes(key, len)) {
        size_t p = strlen("kubernetes.");
        if (len <= p || !kube_name_known(key + p, len - p)) {
            dr_error_set(err,
                         "%s: unknown key \"%.*s\" (known: kubernetes.namespace, pod, pod_uid, "
                         "container, container_id, image, node, pod_ip, owner_kind, owner_name, "
                         "labels.<key>, annotations.<key>, namespace_labels.<key>)",
                         what, (int)len, key);
            return false;
        }
    }
    return true;
}

bool dr_key_writable(const char *key, size_t len, const char *what, dr_error *err)
{
    if (len == 0) {
        dr_error_set(err, "%s: empty key", what);
        return false;
    }
    if (is(key, len, "stream") || is(key, len, "time") || key_is_kubernetes(key, len)) {
        dr_error_set(err,
                     "%s: \"%.*s\" cannot be changed (stream, time and kubernetes.* come from "
                     "the source; copy them to a field to change the copy)",
                     what, (int)len, key);
        return false;
    }
    return true;
}

bool dr_key_is_field(const char *key, size_t len, const char *what, dr_error *err)
{
    if (!dr_key_writable(key, len, what, err))
        return false;
    if (is(key, len, "message")) {
        dr_error_set(err, "%s: \"message\" cannot be removed or renamed (set it to change it)",
                     what);
        return false;
    }
    return true;
}

void dr_split_word(const char *s, size_t *word_len, const char **rest)
{
    size_t n = 0;
    while (s[n] && s[n] != ' ' && s[n] != '\t')
        n++;
    *word_len = n;
    const char *r = s + n;
    while (*r == ' ' || *r == '\t')
        r++;
    *rest = *r ? r : NULL;
}

int dr_key_regex_parse(const char *spec, const char *what, dr_key_regex *out, dr_error *err)
{
    memset(out, 0, sizeof *out);
    size_t klen;
    const char *pattern;
    dr_split_word(spec, &klen, &pattern);
    if (klen == 0 || !pattern) {
        dr_error_set(err, "%s: \"%s\" is not \"KEY REGEX\" (such as \"message ^ERROR\")", what,
                     spec);
        return DR_EINVAL;
    }
    if (!dr_key_readable(spec, klen, what, err))
        return DR_EINVAL;
    out->key = strndup(spec, klen);
    if (!out->key) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    out->key_len = klen;
    dr_error why = {{0}};
    out->re = dr_regex_compile(pattern, 0, &why);
    if (!out->re) {
        dr_error_set(err, "%s: %s", what, why.msg);
        dr_key_regex_free(out);
        return DR_EINVAL;
    }
    return 0;
}

void dr_key_regex_free(dr_key_regex *kr)
{
    free(kr->key);
    dr_regex_free(kr->re);
    memset(kr, 0, sizeof *kr);
}

int dr_key_regex_match(const dr_key_regex *kr, const dr_chunk *c, const dr_record *r)
{
    dr_value v;
    char tbuf[40];
    if (!dr_record_get(c, r, kr->key, kr->key_len, &v, tbuf))
        return 0;
    return dr_regex_match(kr->re, v.p, v.len, NULL);
}

dr_counter *dr_filter_regex_errors_counter(dr_instance *inst)
{
    return dr_counter_new(inst, "drover_filter_regex_errors_total",
                          "Regex matches that gave up at their match or depth limit (the "
                          "filter then acts as its page says).",
                          NULL, NULL);
}

/* The pattern as a logfmt value: quotes and backslashes escaped, cut short. */
static void logfmt_pattern(const char *pattern, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = pattern; *p && o + 4 < cap; p++) {
        if (*p == '"' || *p == '\\')
            out[o++] = '\\';
        out[o++] = *p;
    }
    out[o] = '\0';
}

void dr_filter_regex_gave_up(dr_instance *inst, dr_counter *errors, const dr_regex *re)
{
    dr_counter_add(errors, 1);
    char pattern[200];
    logfmt_pattern(dr_regex_pattern(re), pattern, sizeof pattern);
    dr_log(inst, DR_LOG_WARN, "regex gave up at its match limit", "regex=\"%s\"", pattern);
}
