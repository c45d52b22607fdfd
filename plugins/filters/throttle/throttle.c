/*
 * throttle filter: a token bucket per group of records (per namespace by
 * default), so that one noisy tenant cannot use up a node's share of the
 * log backend. Records over the rate are dropped and counted.
 *
 * The clock is read once per chunk: the records of a chunk were read
 * together, and the bucket arithmetic (bucket.c) takes the time as an
 * argument so that tests can drive it.
 */
#include <stdlib.h>
#include <string.h>

#include "../keys.h"
#include "drover/plugin.h"
#include "groups.h"

typedef struct throttle_conf {
    char *key;
    int64_t records_per_second;
    uint64_t bytes_per_second;
    int64_t burst_ms;
    int64_t max_groups;
} throttle_conf;

static const dr_option throttle_options[] = {
    {"key", DR_OPT_STRING, offsetof(throttle_conf, key), "kubernetes.namespace", 0, NULL, 0, 0,
     "The record key whose value makes the groups, each with its own bucket: "
     "`kubernetes.namespace`, `kubernetes.pod`, `kubernetes.labels.app`, a field, ... Records "
     "without the key share one group. Values longer than 256 bytes are grouped by their "
     "first 256."},
    {"records_per_second", DR_OPT_INT, offsetof(throttle_conf, records_per_second), "0", 0, NULL, 0,
     1000000000, "Records each group may pass per second, on average; 0: no limit on records."},
    {"bytes_per_second", DR_OPT_SIZE, offsetof(throttle_conf, bytes_per_second), "0", 0, NULL, 0,
     (int64_t)1 << 40,
     "Message bytes each group may pass per second, on average (such as 1MiB); 0: no limit "
     "on bytes. A message passes while its group has any bytes left and then takes its whole "
     "size, so a message larger than the bucket still passes, and the group waits for the "
     "debt to be paid."},
    {"burst", DR_OPT_DURATION, offsetof(throttle_conf, burst_ms), "1s", 0, NULL, 1, 3600000,
     "How much a group may send at once after a quiet spell: its bucket holds this long's "
     "worth of its rates (and at least one record). A group seen for the first time starts "
     "with a full bucket."},
    {"max_groups", DR_OPT_INT, offsetof(throttle_conf, max_groups), "10000", 0, NULL, 1, 1000000,
     "Most groups kept at once (memory stays bounded whatever the key's values). When a new "
     "group comes and the table is full, the group seen least recently is forgotten; if it "
     "comes back it starts with a full bucket."},
    {0},
};

typedef struct throttle_state {
    dr_throttle_groups groups;
    dr_bucket_limits limits;
    size_t key_len;
    dr_counter *throttled;
    dr_gauge *ngroups;
} throttle_state;

static void throttle_destroy(dr_instance *inst)
{
    throttle_state *st = inst->state;
    if (!st)
        return;
    dr_throttle_groups_free(&st->groups);
    free(st);
    inst->state = NULL;
}

static int throttle_init(dr_instance *inst, dr_error *err)
{
    throttle_conf *conf = inst->conf;
    if (conf->records_per_second == 0 && conf->bytes_per_second == 0) {
        dr_error_set(err, "set records_per_second or bytes_per_second (or both): without a rate "
                          "there is nothing to throttle");
        return DR_EINVAL;
    }
    if (!dr_key_readable(conf->key, strlen(conf->key), "key", err))
        return DR_EINVAL;
    throttle_state *st = calloc(1, sizeof *st);
    if (!st || dr_throttle_groups_init(&st->groups, (size_t)conf->max_groups) < 0) {
        free(st);
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    inst->state = st;
    st->key_len = strlen(conf->key);
    st->limits = dr_bucket_limits_make((uint64_t)conf->records_per_second, conf->bytes_per_second,
                                       conf->burst_ms);
    st->throttled =
        dr_counter_new(inst, "drover_filter_throttled_records_total",
                       "Records dropped for going over their group's rate.", NULL, NULL);
    st->ngroups = dr_gauge_new(inst, "drover_filter_throttle_groups",
                               "Groups (token buckets) the throttle filter holds.", NULL, NULL);
    return 0;
}

/* May the record pass? Out of memory for its group lets it pass: the
 * throttle protects the backend, it must not lose logs for its own sake. */
static bool record_passes(const throttle_conf *conf, throttle_state *st, const dr_chunk *c,
                          const dr_record *r, int64_t now)
{
    dr_value v;
    char tbuf[40];
    if (!dr_record_get(c, r, conf->key, st->key_len, &v, tbuf)) {
        v.p = "";
        v.len = 0;
    }
    dr_throttle_group *g = dr_throttle_groups_get(&st->groups, v.p, v.len, &st->limits, now);
    return !g || dr_bucket_take(&g->bucket, &st->limits, now, r->msg_len);
}

static void throttle_filter(dr_instance *inst, dr_chunk *c)
{
    throttle_conf *conf = inst->conf;
    throttle_state *st = inst->state;
    int64_t now = dr_mono_ns();
    uint64_t dropped = 0;
    for (uint32_t i = 0; i < c->nrecs; i++) {
        dr_record *r = &c->recs[i];
        if (r->flags & DR_REC_DROPPED)
            continue;
        if (!record_passes(conf, st, c, r, now)) {
            r->flags |= DR_REC_DROPPED;
            dropped++;
        }
    }
    if (dropped) {
        dr_counter_add(st->throttled, dropped);
        dr_count_drop(inst, "throttled", dropped);
    }
    dr_gauge_set(st->ngroups, (double)st->groups.n);
}

const dr_plugin dr_plugin_throttle = {
    .abi = DR_PLUGIN_ABI,
    .name = "throttle",
    .kind = DR_FILTER,
    .description =
        "Limits the rate of records per group (per namespace by default) with a token bucket "
        "per group, so that one noisy workload cannot crowd out the others.\n\n"
        "```yaml\nfilters:\n  - type: throttle\n    key: kubernetes.namespace\n"
        "    records_per_second: 500\n    bytes_per_second: 1MiB\n    burst: 5s\n```\n\n"
        "Set `records_per_second`, `bytes_per_second` or both (a configuration with neither "
        "is refused). Each group's bucket fills at the rates and holds `burst` worth of them; "
        "a record "
        "passes when its group's bucket allows it on every limit set, else it is dropped, "
        "counted in `drover_filter_throttled_records_total` and "
        "`drover_dropped_records_total{reason=\"throttled\"}`. The groups held are in "
        "`drover_filter_throttle_groups`. Buckets live in memory: a restart or a reload "
        "starts every group with a full bucket. Throttling drops records: to slow a source "
        "down without losing anything, rely on the outputs' queues (`queue_max_bytes`) "
        "instead, which make inputs wait.",
    .options = throttle_options,
    .conf_size = sizeof(throttle_conf),
    .init = throttle_init,
    .filter = throttle_filter,
    .destroy = throttle_destroy,
};
