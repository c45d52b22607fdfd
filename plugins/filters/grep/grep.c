/*
 * grep filter: keeps or drops records by regexes on their keys.
 *
 * `regex` rules say what to keep (all of them must match, or any with
 * logical_op: or), `exclude` rules what to drop (any match drops). A record
 * must pass both. A regex that gives up at its limit never causes a drop:
 * a filter that loses logs because a pattern is slow is worse than one that
 * lets a few through, and the counter shows it happened.
 */
#include <stdio.h>
#include <stdlib.h>

#include "../keys.h"
#include "drover/plugin.h"

typedef struct grep_conf {
    dr_strlist regex;
    dr_strlist exclude;
    int logical_op;
} grep_conf;

enum { GREP_AND = 0, GREP_OR = 1 };

static const char *const grep_ops[] = {"and", "or", NULL};

static const dr_option grep_options[] = {
    {"regex", DR_OPT_STRLIST, offsetof(grep_conf, regex), NULL, 0, NULL, 0, 0,
     "Rules of records to keep, each \"KEY REGEX\": the record key (`message`, `stream`, "
     "`time`, `kubernetes.<name>` or a field), a space, then a PCRE2 regular expression "
     "searched for anywhere in the key's value (anchor it with ^ and $ to match the whole "
     "value). A record is kept only when every rule matches (or at least one, with "
     "`logical_op: or`). A record without the key does not match. Write each rule in single "
     "quotes in YAML, such as `'message ^ERROR'`."},
    {"exclude", DR_OPT_STRLIST, offsetof(grep_conf, exclude), NULL, 0, NULL, 0, 0,
     "Rules of records to drop, each \"KEY REGEX\" as in `regex`: a record is dropped when "
     "any rule matches. With both options a record is kept when it passes `regex` and no "
     "`exclude` rule matches."},
    {"logical_op", DR_OPT_ENUM, offsetof(grep_conf, logical_op), "and", 0, grep_ops, 0, 0,
     "How the `regex` rules combine: `and` keeps a record when all of them match, `or` when "
     "any does. (`exclude` rules always combine with or.)"},
    {0},
};

typedef struct grep_state {
    dr_key_regex *keep;
    size_t nkeep;
    dr_key_regex *drop;
    size_t ndrop;
    dr_counter *regex_errors;
} grep_state;

static int parse_rules(const dr_strlist *specs, const char *option, dr_key_regex **out, size_t *n,
                       dr_error *err)
{
    *out = NULL;
    *n = 0;
    if (specs->n == 0)
        return 0;
    dr_key_regex *rules = calloc(specs->n, sizeof *rules);
    if (!rules) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    *out = rules;
    for (size_t i = 0; i < specs->n; i++) {
        char what[64];
        snprintf(what, sizeof what, "%s[%zu]", option, i);
        int rc = dr_key_regex_parse(specs->v[i], what, &rules[i], err);
        if (rc < 0)
            return rc;
        (*n)++;
    }
    return 0;
}

static void free_rules(dr_key_regex *rules, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dr_key_regex_free(&rules[i]);
    free(rules);
}

static void grep_destroy(dr_instance *inst)
{
    grep_state *st = inst->state;
    if (!st)
        return;
    free_rules(st->keep, st->nkeep);
    free_rules(st->drop, st->ndrop);
    free(st);
    inst->state = NULL;
}

static int grep_init(dr_instance *inst, dr_error *err)
{
    grep_conf *conf = inst->conf;
    grep_state *st = calloc(1, sizeof *st);
    if (!st) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    inst->state = st;
    int rc = parse_rules(&conf->regex, "regex", &st->keep, &st->nkeep, err);
    if (rc == 0)
        rc = parse_rules(&conf->exclude, "exclude", &st->drop, &st->ndrop, err);
    if (rc == 0 && st->nkeep == 0 && st->ndrop == 0) {
        dr_error_set(err, "give at least one rule in `regex` or `exclude`");
        rc = DR_EINVAL;
    }
    if (rc < 0) {
        grep_destroy(inst);
        return rc;
    }
    st->regex_errors = dr_filter_regex_errors_counter(inst);
    return 0;
}

/* Matches one rule; a regex that gave up counts as `on_error`. */
static bool rule_matches(dr_instance *inst, const dr_key_regex *rule, const dr_chunk *c,
                         const dr_record *r, bool on_error)
{
    grep_state *st = inst->state;
    int m = dr_key_regex_match(rule, c, r);
    if (m < 0) {
        dr_filter_regex_gave_up(inst, st->regex_errors, rule->re);
        return on_error;
    }
    return m == 1;
}

/* The `regex` rules: should the record be kept? A rule that gave up counts
 * as a match, so that it cannot be the reason for a drop. */
static bool passes_keep_rules(dr_instance *inst, int op, const dr_chunk *c, const dr_record *r)
{
    grep_state *st = inst->state;
    if (st->nkeep == 0)
        return true;
    for (size_t i = 0; i < st->nkeep; i++) {
        bool m = rule_matches(inst, &st->keep[i], c, r, true);
        if (op == GREP_OR && m)
            return true;
        if (op == GREP_AND && !m)
            return false;
    }
    return op == GREP_AND;
}

/* The `exclude` rules: does one of them match? One that gave up does not. */
static bool hits_drop_rule(dr_instance *inst, const dr_chunk *c, const dr_record *r)
{
    grep_state *st = inst->state;
    for (size_t i = 0; i < st->ndrop; i++)
        if (rule_matches(inst, &st->drop[i], c, r, false))
            return true;
    return false;
}

static void grep_filter(dr_instance *inst, dr_chunk *c)
{
    grep_conf *conf = inst->conf;
    uint64_t dropped = 0;
    for (uint32_t i = 0; i < c->nrecs; i++) {
        dr_record *r = &c->recs[i];
        if (r->flags & DR_REC_DROPPED)
            continue;
        if (!passes_keep_rules(inst, conf->logical_op, c, r) || hits_drop_rule(inst, c, r)) {
            r->flags |= DR_REC_DROPPED;
            dropped++;
        }
    }
    if (dropped)
        dr_count_drop(inst, "grep", dropped);
}

const dr_plugin dr_plugin_grep = {
    .abi = DR_PLUGIN_ABI,
    .name = "grep",
    .kind = DR_FILTER,
    .description =
        "Keeps or drops records by regular expressions on their keys, like Fluent Bit's grep "
        "filter.\n\n"
        "```yaml\nfilters:\n  - type: grep\n    regex: ['kubernetes.namespace ^(shop|payments)$']\n"
        "    exclude: ['message healthz', 'kubernetes.labels.app ^debug-']\n```\n\n"
        "Keys are those of every filter: `message`, `stream` (stdout or stderr), `time` "
        "(RFC 3339), `kubernetes.<name>` (namespace, pod, container, labels.<key>, ...) and "
        "fields that earlier filters added. Regexes are PCRE2 on bytes (no UTF mode; a line "
        "with invalid UTF-8 matches like any other) and are checked when the configuration is "
        "loaded: a bad one is an error naming its offset.\n\n"
        "Dropped records are counted in `drover_dropped_records_total{reason=\"grep\"}`. Every "
        "match runs under a limit (100000 backtracking steps, depth 10000); a regex that hits it "
        "is counted in `drover_filter_regex_errors_total` and never causes a drop: for `regex` "
        "it counts as a match, for `exclude` as no match (the filter fails open).",
    .options = grep_options,
    .conf_size = sizeof(grep_conf),
    .init = grep_init,
    .filter = grep_filter,
    .destroy = grep_destroy,
};
