/*
 * sample filter: keeps one record in `rate`.
 *
 * Without a key it keeps every rate-th record it sees, starting with the
 * first: deterministic, so a test or a replay keeps the same records. With a
 * key it keeps the records whose value hashes to a multiple of the rate:
 * all the records of one trace id (say) are kept or dropped together, on
 * every node and across restarts, since the hash has no seed. The hash is
 * FNV-1a, with a final mix so that its low bits (what the modulo sees) are
 * as good as its high ones.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../keys.h"
#include "drover/plugin.h"
#include "sample.h"

typedef struct sample_conf {
    int64_t rate;
    char *key;
    dr_strlist exclude;
} sample_conf;

static const dr_option sample_options[] = {
    {"rate", DR_OPT_INT, offsetof(sample_conf, rate), "10", 0, NULL, 1, 1000000000,
     "Keep one record in this many. 1 keeps everything."},
    {"key", DR_OPT_STRING, offsetof(sample_conf, key), NULL, 0, NULL, 0, 0,
     "A record key (such as a `trace_id` field) whose value decides: the records whose value "
     "hashes to a multiple of `rate` are kept, so all records with one value are kept or "
     "dropped together, on every node alike. Records without the key are sampled by count. "
     "Without `key`, every `rate`-th record is kept, starting with the first."},
    {"exclude", DR_OPT_STRLIST, offsetof(sample_conf, exclude), NULL, 0, NULL, 0, 0,
     "Rules \"KEY REGEX\" (as grep's) of records that are always kept and not counted, such "
     "as `'stream ^stderr$'` or `'message (?i)error'`. A regex that gives up at its limit "
     "keeps the record (counted in `drover_filter_regex_errors_total`)."},
    {0},
};

typedef struct sample_state {
    dr_key_regex *keep;
    size_t nkeep;
    size_t key_len;
    uint64_t seen; /* records sampled by count so far */
    dr_counter *regex_errors;
} sample_state;

/* FNV-1a over the bytes, then the finaliser of splitmix64. */
uint64_t dr_sample_hash(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

static void sample_destroy(dr_instance *inst)
{
    sample_state *st = inst->state;
    if (!st)
        return;
    for (size_t i = 0; i < st->nkeep; i++)
        dr_key_regex_free(&st->keep[i]);
    free(st->keep);
    free(st);
    inst->state = NULL;
}

static int sample_init(dr_instance *inst, dr_error *err)
{
    sample_conf *conf = inst->conf;
    sample_state *st = calloc(1, sizeof *st);
    if (!st) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    inst->state = st;
    if (conf->key) {
        st->key_len = strlen(conf->key);
        if (!dr_key_readable(conf->key, st->key_len, "key", err)) {
            sample_destroy(inst);
            return DR_EINVAL;
        }
    }
    if (conf->exclude.n && !(st->keep = calloc(conf->exclude.n, sizeof *st->keep))) {
        dr_error_set(err, "out of memory");
        sample_destroy(inst);
        return DR_ENOMEM;
    }
    for (size_t i = 0; i < conf->exclude.n; i++) {
        char what[64];
        snprintf(what, sizeof what, "exclude[%zu]", i);
        int rc = dr_key_regex_parse(conf->exclude.v[i], what, &st->keep[i], err);
        if (rc < 0) {
            sample_destroy(inst);
            return rc;
        }
        st->nkeep++;
    }
    st->regex_errors = dr_filter_regex_errors_counter(inst);
    return 0;
}

/* Is the record one that is always kept? A regex that gave up says yes. */
static bool always_kept(dr_instance *inst, const dr_chunk *c, const dr_record *r)
{
    sample_state *st = inst->state;
    for (size_t i = 0; i < st->nkeep; i++) {
        int m = dr_key_regex_match(&st->keep[i], c, r);
        if (m < 0)
            dr_filter_regex_gave_up(inst, st->regex_errors, st->keep[i].re);
        if (m != 0)
            return true;
    }
    return false;
}

static bool sampled_in(const sample_conf *conf, sample_state *st, const dr_chunk *c,
                       const dr_record *r)
{
    uint64_t rate = (uint64_t)conf->rate;
    dr_value v;
    char tbuf[40];
    if (conf->key && dr_record_get(c, r, conf->key, st->key_len, &v, tbuf))
        return dr_sample_hash(v.p, v.len) % rate == 0;
    return st->seen++ % rate == 0;
}

static void sample_filter(dr_instance *inst, dr_chunk *c)
{
    sample_conf *conf = inst->conf;
    sample_state *st = inst->state;
    uint64_t dropped = 0;
    for (uint32_t i = 0; i < c->nrecs; i++) {
        dr_record *r = &c->recs[i];
        if (r->flags & DR_REC_DROPPED)
            continue;
        if (always_kept(inst, c, r) || sampled_in(conf, st, c, r))
            continue;
        r->flags |= DR_REC_DROPPED;
        dropped++;
    }
    if (dropped)
        dr_count_drop(inst, "sampled", dropped);
}

const dr_plugin dr_plugin_sample = {
    .abi = DR_PLUGIN_ABI,
    .name = "sample",
    .kind = DR_FILTER,
    .description =
        "Keeps one record in `rate` and drops the others, counted in "
        "`drover_dropped_records_total{reason=\"sampled\"}`.\n\n"
        "```yaml\nfilters:\n  - type: sample\n    match: noisy-*\n    rate: 20\n"
        "    key: trace_id              # keep or drop whole traces\n"
        "    exclude: ['stream ^stderr$']  # errors are always kept\n```\n\n"
        "With `key`, the decision is a hash of the key's value (FNV-1a, no seed): the same "
        "value gives the same answer on every node and after restarts, so the records of one "
        "trace or request stay together. Without it, records are counted per filter instance "
        "and every `rate`-th is kept. Records that an `exclude` rule matches are kept and not "
        "counted.",
    .options = sample_options,
    .conf_size = sizeof(sample_conf),
    .init = sample_init,
    .filter = sample_filter,
    .destroy = sample_destroy,
};
