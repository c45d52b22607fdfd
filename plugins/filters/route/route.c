/*
 * route filter: sends records to outputs named here, instead of (or as
 * well as) the outputs whose `match` takes their input.
 *
 * A chunk whose records all match is simply given a route (no copy). When
 * only some match, those go on in a new chunk: its records point into the
 * original chunk's memory, which the new chunk keeps alive with a
 * reference that its acknowledgement gives back. So the input's checkpoint
 * passes the original records only once the routed ones are delivered too.
 *
 * In a namespace's own rules (the namespaces filter), only the outputs the
 * operator offers to namespaces (`offer_to_namespaces: true`) can be named.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../keys.h"
#include "agent.h"
#include "drover/plugin.h"

typedef struct route_conf {
    dr_strlist outputs;
    dr_strlist when;
    bool copy;
} route_conf;

static const dr_option route_options[] = {
    {"outputs", DR_OPT_STRLIST, offsetof(route_conf, outputs), NULL, DR_OPT_REQUIRED, NULL, 0, 0,
     "Names of the outputs the records go to (at most 8). In a namespace's rules, only outputs "
     "with `offer_to_namespaces: true`."},
    {"when", DR_OPT_STRLIST, offsetof(route_conf, when), NULL, 0, NULL, 0, 0,
     "Rules a record must all match to be routed, each \"KEY REGEX\" as in grep's `regex`; "
     "unset: every record."},
    {"copy", DR_OPT_BOOL, offsetof(route_conf, copy), "false", 0, NULL, 0, 0,
     "false: the records that match go to `outputs` only; true: they go to `outputs` as well "
     "as to the outputs they would have reached anyway."},
    {0},
};

typedef struct route_state {
    dr_instance *outputs[DR_ROUTE_MAX];
    uint8_t noutputs;
    dr_key_regex *when;
    size_t nwhen;
    dr_counter *routed, *regex_errors;
} route_state;

static void route_destroy(dr_instance *inst)
{
    route_state *st = inst->state;
    if (!st)
        return;
    for (size_t i = 0; i < st->nwhen; i++)
        dr_key_regex_free(&st->when[i]);
    free(st->when);
    free(st);
    inst->state = NULL;
}

static int resolve_outputs(dr_instance *inst, route_state *st, dr_error *err)
{
    const route_conf *conf = inst->conf;
    if (conf->outputs.n == 0 || conf->outputs.n > DR_ROUTE_MAX) {
        dr_error_set(err, "outputs: name 1 to %d outputs", DR_ROUTE_MAX);
        return DR_EINVAL;
    }
    for (size_t i = 0; i < conf->outputs.n; i++) {
        const char *name = conf->outputs.v[i];
        dr_instance *out = dr_agent_output(inst->agent, name);
        if (!out) {
            dr_error_set(err, "outputs: there is no output named \"%s\"", name);
            return DR_EINVAL;
        }
        if (inst->restricted && !dr_output_offered(out)) {
            dr_error_set(err, "outputs: output \"%s\" is not offered to namespaces", name);
            return DR_EINVAL;
        }
        st->outputs[st->noutputs++] = out;
    }
    return 0;
}

static int route_init(dr_instance *inst, dr_error *err)
{
    route_conf *conf = inst->conf;
    route_state *st = calloc(1, sizeof *st);
    if (!st) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    inst->state = st;
    int rc = resolve_outputs(inst, st, err);
    if (rc == 0 && conf->when.n) {
        st->when = calloc(conf->when.n, sizeof *st->when);
        rc = st->when ? 0 : DR_ENOMEM;
        for (size_t i = 0; rc == 0 && i < conf->when.n; i++) {
            char what[64];
            snprintf(what, sizeof what, "when[%zu]", i);
            rc = dr_key_regex_parse(conf->when.v[i], what, &st->when[i], err);
            if (rc == 0)
                st->nwhen++;
        }
    }
    if (rc < 0) {
        route_destroy(inst);
        return rc;
    }
    for (uint8_t i = 0; i < st->noutputs; i++)
        dr_agent_route_target(inst->agent, st->outputs[i]);
    st->routed = dr_counter_new(inst, "drover_filter_routed_records_total",
                                "Records the filter sent to its outputs.", NULL, NULL);
    st->regex_errors = dr_filter_regex_errors_counter(inst);
    return 0;
}

/* All `when` rules match (a rule that gave up does not). */
static bool record_matches(dr_instance *inst, const dr_chunk *c, const dr_record *r)
{
    route_state *st = inst->state;
    for (size_t i = 0; i < st->nwhen; i++) {
        int m = dr_key_regex_match(&st->when[i], c, r);
        if (m < 0)
            dr_filter_regex_gave_up(inst, st->regex_errors, st->when[i].re);
        if (m != 1)
            return false;
    }
    return true;
}

static void release_parent(void *ctx, uint64_t token, bool delivered)
{
    dr_chunk *parent = ctx;
    (void)token;
    if (!delivered)
        dr_chunk_abandon(parent);
    dr_chunk_release(parent);
}

/* A copy of a record in another chunk: the message still points into the
 * original chunk (kept alive), the fields are copied so that the two
 * records can be changed apart. */
static int copy_record(dr_chunk *dst, const dr_record *src)
{
    dr_record *r = dr_chunk_add(dst);
    if (!r)
        return DR_ENOMEM;
    *r = *src;
    r->fields = NULL;
    r->nfields = 0;
    for (uint16_t i = 0; i < src->nfields; i++) {
        const dr_field *f = &src->fields[i];
        int rc =
            dr_record_set(dst, r, f->key, f->key_len, f->val, f->val_len, (dr_field_type)f->type);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Moves (or copies) the matching records into a chunk of their own. */
static void split_off(dr_instance *inst, dr_chunk *c, const bool *match, uint32_t nmatch)
{
    route_state *st = inst->state;
    const route_conf *conf = inst->conf;
    dr_chunk *n = dr_chunk_new(c->input, 0);
    if (!n)
        return; /* out of memory: the records stay on their usual way */
    dr_chunk_set_meta(n, c->meta);
    dr_chunk_set_kube(n, c->kube);
    for (uint32_t i = 0; i < c->nrecs; i++) {
        if (match[i] && copy_record(n, &c->recs[i]) < 0) {
            dr_chunk_discard(n);
            return;
        }
    }
    dr_chunk_retain(c);
    dr_chunk_set_ack(n, release_parent, c, 0);
    /* the originals (kept with copy) still go their usual way: the new
     * chunk only to the route's outputs */
    dr_chunk_route(n, st->outputs, st->noutputs, false);
    if (!conf->copy) {
        for (uint32_t i = 0; i < c->nrecs; i++)
            if (match[i])
                c->recs[i].flags |= DR_REC_DROPPED; /* they go on in n */
    }
    dr_counter_add(st->routed, nmatch);
    dr_filter_emit(inst, n);
}

static void route_filter(dr_instance *inst, dr_chunk *c)
{
    route_state *st = inst->state;
    const route_conf *conf = inst->conf;
    bool small[256];
    bool *match = c->nrecs <= 256 ? small : calloc(c->nrecs, sizeof *match);
    if (!match)
        return;
    uint32_t live = 0, nmatch = 0;
    for (uint32_t i = 0; i < c->nrecs; i++) {
        match[i] = false;
        if (c->recs[i].flags & DR_REC_DROPPED)
            continue;
        live++;
        match[i] = record_matches(inst, c, &c->recs[i]);
        nmatch += match[i];
    }
    if (nmatch && nmatch == live) {
        dr_chunk_route(c, st->outputs, st->noutputs, conf->copy);
        dr_counter_add(st->routed, nmatch);
    } else if (nmatch) {
        split_off(inst, c, match, nmatch);
    }
    if (match != small)
        free(match);
}

const dr_plugin dr_plugin_route = {
    .abi = DR_PLUGIN_ABI,
    .name = "route",
    .kind = DR_FILTER,
    .description =
        "Sends records to the outputs it names, instead of or as well as those whose `match` "
        "takes their input; with `when`, only the records that match. In a namespace's own "
        "rules it may name only outputs offered to namespaces.",
    .options = route_options,
    .conf_size = sizeof(route_conf),
    .init = route_init,
    .filter = route_filter,
    .destroy = route_destroy,
};
