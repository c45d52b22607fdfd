/*
 * redact filter: replaces what regexes match in some keys (the message by
 * default) with a fixed text, so that secrets and personal data written to
 * logs do not leave the node.
 *
 * Patterns run one after the other over the value, each on the result of
 * the ones before, replacing every match. Built-in patterns cover what is
 * most often leaked; card numbers are also checked with the Luhn sum, so
 * that ids and timestamps of the right length are not taken for cards.
 *
 * A pattern that gives up at its limit leaves us not knowing whether the
 * value holds a secret. By default the whole value is then replaced: for a
 * redaction filter, losing a line is better than leaking one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../keys.h"
#include "buf.h"
#include "drover/plugin.h"
#include "regex.h"

typedef struct redact_conf {
    dr_strlist keys;
    dr_strlist patterns;
    dr_strlist builtins;
    char *replacement;
    int on_error;
} redact_conf;

enum { ON_ERROR_MASK = 0, ON_ERROR_KEEP = 1, ON_ERROR_DROP = 2 };

static const char *const on_error_choices[] = {"mask", "keep", "drop", NULL};

static bool card_number_valid(const char *s, size_t n);

/* Built-in patterns, each a regex of our own. Every one starts where a run
 * of the characters it takes starts (a lookbehind), so that it is tried
 * once per candidate, not once per byte of it. */
static const struct builtin {
    const char *name;
    const char *pattern;
    bool (*valid)(const char *s, size_t n); /* a check a regex cannot make, or NULL */
} builtins[] = {
    {"email",
     "(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}",
     NULL},
    {"ipv4",
     "(?<![0-9.])(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}"
     "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?![0-9]|\\.[0-9])",
     NULL},
    {"credit_card", "(?<![0-9])[2-6][0-9](?:[ -]?[0-9]){11,17}(?![0-9])", card_number_valid},
    /* \K: the word Bearer stays, only the token goes */
    {"bearer_token", "(?i)(?<![A-Za-z0-9])bearer[ \\t]+\\K[A-Za-z0-9._~+/-]+=*", NULL},
    {"aws_access_key", "(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])", NULL},
    {"jwt", "(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]+\\.eyJ[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]*", NULL},
};

#define NBUILTINS (sizeof builtins / sizeof builtins[0])

static const dr_option redact_options[] = {
    {"keys", DR_OPT_STRLIST, offsetof(redact_conf, keys), "[message]", 0, NULL, 0, 0,
     "The keys whose values are redacted: `message` and fields (not `stream`, `time` or "
     "`kubernetes.*`, which come from the source). A record without a key is left as it "
     "is. A field holding JSON is redacted as text, and becomes a string when something in it "
     "is replaced."},
    {"patterns", DR_OPT_STRLIST, offsetof(redact_conf, patterns), NULL, 0, NULL, 0, 0,
     "PCRE2 regular expressions of your own (on bytes; `(?i)` makes one case-insensitive). "
     "Every match is replaced; with `\\K` only what follows it is, so `'password=\\K\\S+'` "
     "keeps `password=`. Empty matches are ignored."},
    {"builtins", DR_OPT_STRLIST, offsetof(redact_conf, builtins), NULL, 0, NULL, 0, 0,
     "Built-in patterns by name: `email`; `ipv4` (dotted quads); `credit_card` (13 to 19 "
     "digits, spaces or dashes between them allowed, of a card network's prefix and with a "
     "valid Luhn check digit); `bearer_token` (the token after `Bearer `, which stays); "
     "`aws_access_key` (AKIA..., ASIA... key ids); `jwt` (eyJ....eyJ....). They run before "
     "`patterns`, in the order listed."},
    {"replacement", DR_OPT_STRING, offsetof(redact_conf, replacement), "[REDACTED]", 0, NULL, 0, 0,
     "What each match is replaced with (may be empty)."},
    {"on_error", DR_OPT_ENUM, offsetof(redact_conf, on_error), "mask", 0, on_error_choices, 0, 0,
     "When a pattern gives up at its match limit (counted in "
     "`drover_filter_regex_errors_total`), nobody knows what the rest of the value holds. "
     "`mask`: the whole value becomes the replacement. `keep`: the value stays as the "
     "patterns before the failing one left it (it may leak). `drop`: the record is dropped, "
     "counted in `drover_dropped_records_total{reason=\"redact_error\"}`."},
    {0},
};

typedef struct redact_pattern {
    dr_regex *re;
    dr_regex_match_data *md;
    bool (*valid)(const char *s, size_t n);
} redact_pattern;

typedef struct redact_state {
    redact_pattern *patterns;
    size_t npatterns;
    size_t replacement_len;
    dr_buf scratch[2]; /* each pattern writes into one, reading the other */
    dr_counter *redacted;
    dr_counter *regex_errors;
} redact_state;

/* ---- card numbers ----------------------------------------------------------------- */

/* The prefixes (issuer identification numbers) of the major card networks:
 * Visa, Mastercard, American Express, Discover, JCB, Diners Club. */
static bool card_prefix_known(const char *d)
{
    int two = (d[0] - '0') * 10 + (d[1] - '0');
    int four = two * 100 + (d[2] - '0') * 10 + (d[3] - '0');
    int three = four / 10;
    return d[0] == '4' || (two >= 51 && two <= 55) || (four >= 2221 && four <= 2720) || two == 34 ||
           two == 37 || four == 6011 || (three >= 644 && three <= 649) || two == 65 || two == 35 ||
           two == 36 || two == 38 || (three >= 300 && three <= 305);
}

/* The Luhn check: doubling every second digit from the right, the sum of
 * the digits is a multiple of ten. */
static bool luhn_ok(const char *d, size_t n)
{
    int sum = 0;
    for (size_t i = 0; i < n; i++) {
        int v = d[n - 1 - i] - '0';
        if (i % 2 == 1) {
            v *= 2;
            if (v > 9)
                v -= 9;
        }
        sum += v;
    }
    return sum % 10 == 0;
}

static bool card_number_valid(const char *s, size_t n)
{
    char digits[20];
    size_t nd = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            continue;
        if (nd == sizeof digits)
            return false;
        digits[nd++] = s[i];
    }
    return nd >= 13 && nd <= 19 && card_prefix_known(digits) && luhn_ok(digits, nd);
}

/* ---- init and destroy ---------------------------------------------------------------- */

static int add_pattern(redact_state *st, const char *pattern, bool (*valid)(const char *, size_t),
                       const char *what, dr_error *err)
{
    dr_error why = {{0}};
    redact_pattern *p = &st->patterns[st->npatterns];
    p->re = dr_regex_compile(pattern, 0, &why);
    if (!p->re) {
        dr_error_set(err, "%s: %s", what, why.msg);
        return DR_EINVAL;
    }
    p->md = dr_regex_match_data_new(p->re);
    if (!p->md) {
        dr_regex_free(p->re);
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    p->valid = valid;
    st->npatterns++;
    return 0;
}

static const struct builtin *find_builtin(const char *name)
{
    for (size_t i = 0; i < NBUILTINS; i++)
        if (strcmp(builtins[i].name, name) == 0)
            return &builtins[i];
    return NULL;
}

static int add_builtins(redact_state *st, const dr_strlist *names, dr_error *err)
{
    for (size_t i = 0; i < names->n; i++) {
        char what[64];
        snprintf(what, sizeof what, "builtins[%zu]", i);
        const struct builtin *b = find_builtin(names->v[i]);
        if (!b) {
            dr_error_set(err,
                         "%s: unknown pattern \"%s\" (known: email, ipv4, credit_card, "
                         "bearer_token, aws_access_key, jwt)",
                         what, names->v[i]);
            return DR_EINVAL;
        }
        int rc = add_pattern(st, b->pattern, b->valid, what, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int check_keys(const dr_strlist *keys, dr_error *err)
{
    if (keys->n == 0) {
        dr_error_set(err, "keys: give at least one key");
        return DR_EINVAL;
    }
    for (size_t i = 0; i < keys->n; i++) {
        char what[64];
        snprintf(what, sizeof what, "keys[%zu]", i);
        if (!dr_key_writable(keys->v[i], strlen(keys->v[i]), what, err))
            return DR_EINVAL;
    }
    return 0;
}

static void redact_destroy(dr_instance *inst)
{
    redact_state *st = inst->state;
    if (!st)
        return;
    for (size_t i = 0; i < st->npatterns; i++) {
        dr_regex_match_data_free(st->patterns[i].md);
        dr_regex_free(st->patterns[i].re);
    }
    free(st->patterns);
    dr_buf_free(&st->scratch[0]);
    dr_buf_free(&st->scratch[1]);
    free(st);
    inst->state = NULL;
}

static int redact_init(dr_instance *inst, dr_error *err)
{
    redact_conf *conf = inst->conf;
    redact_state *st = calloc(1, sizeof *st);
    if (!st) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    inst->state = st;
    int rc = check_keys(&conf->keys, err);
    size_t total = conf->builtins.n + conf->patterns.n;
    if (rc == 0 && total == 0) {
        dr_error_set(err, "give at least one pattern in `patterns` or `builtins`");
        rc = DR_EINVAL;
    }
    if (rc == 0 && !(st->patterns = calloc(total, sizeof *st->patterns))) {
        dr_error_set(err, "out of memory");
        rc = DR_ENOMEM;
    }
    if (rc == 0)
        rc = add_builtins(st, &conf->builtins, err);
    for (size_t i = 0; rc == 0 && i < conf->patterns.n; i++) {
        char what[64];
        snprintf(what, sizeof what, "patterns[%zu]", i);
        rc = add_pattern(st, conf->patterns.v[i], NULL, what, err);
    }
    if (rc < 0) {
        redact_destroy(inst);
        return rc;
    }
    st->replacement_len = strlen(conf->replacement ? conf->replacement : "");
    st->redacted = dr_counter_new(inst, "drover_filter_redacted_records_total",
                                  "Records in which at least one match was replaced.", NULL, NULL);
    st->regex_errors = dr_filter_regex_errors_counter(inst);
    return 0;
}

/* ---- redacting ------------------------------------------------------------------------- */

/* Replaces every match of one pattern in s[0..n), writing into out. Returns
 * the number of replacements, or DR_ERR when the regex gave up, DR_ENOMEM. */
static long replace_all(const redact_pattern *p, const char *s, size_t n, const char *replacement,
                        size_t replacement_len, dr_buf *out)
{
    long count = 0;
    size_t pos = 0, copied = 0;
    dr_buf_reset(out);
    /* never NULL, even when everything is replaced by nothing */
    if (dr_buf_reserve(out, 1) < 0)
        return DR_ENOMEM;
    while (pos <= n) {
        int rc = dr_regex_search(p->re, s, n, pos, p->md);
        if (rc < 0)
            return DR_ERR;
        if (rc == 0)
            break;
        size_t start, end;
        dr_regex_group(p->md, 0, &start, &end);
        if (start < copied)
            start = copied;
        if (end <= start) {
            pos = (end > pos ? end : pos) + 1; /* an empty match: move on */
            continue;
        }
        if (p->valid && !p->valid(s + start, end - start)) {
            pos = start + 1;
            continue;
        }
        if (dr_buf_append(out, s + copied, start - copied) < 0 ||
            dr_buf_append(out, replacement, replacement_len) < 0)
            return DR_ENOMEM;
        count++;
        copied = end;
        pos = end;
    }
    if (count && dr_buf_append(out, s + copied, n - copied) < 0)
        return DR_ENOMEM;
    return count;
}

/* Runs every pattern over one value. On return *res points at the result
 * (the value itself when nothing changed, else one of the scratch buffers).
 * Returns the number of replacements or DR_ERR when a pattern gave up
 * (*failed says which; *res is the value as the patterns before it left
 * it). */
static long redact_value(redact_state *st, const char *replacement, const char *val, size_t len,
                         const char **res, size_t *res_len, const redact_pattern **failed)
{
    long total = 0;
    int next = 0; /* the scratch buffer the next pattern writes into */
    *res = val;
    *res_len = len;
    for (size_t i = 0; i < st->npatterns; i++) {
        dr_buf *out = &st->scratch[next];
        long n =
            replace_all(&st->patterns[i], *res, *res_len, replacement, st->replacement_len, out);
        if (n < 0) {
            *failed = &st->patterns[i];
            return n;
        }
        if (n == 0)
            continue;
        total += n;
        *res = out->p;
        *res_len = out->len;
        next = 1 - next;
    }
    return total;
}

typedef enum { KEY_UNCHANGED, KEY_CHANGED, KEY_DROP } key_outcome;

static key_outcome redact_key(dr_instance *inst, dr_chunk *c, dr_record *r, const char *key)
{
    redact_conf *conf = inst->conf;
    redact_state *st = inst->state;
    size_t klen = strlen(key);
    dr_value v;
    char tbuf[40];
    if (!dr_record_get(c, r, key, klen, &v, tbuf))
        return KEY_UNCHANGED;
    const char *replacement = conf->replacement ? conf->replacement : "";
    const char *res;
    size_t res_len;
    const redact_pattern *failed = NULL;
    long n = redact_value(st, replacement, v.p, v.len, &res, &res_len, &failed);
    if (n < 0) {
        dr_filter_regex_gave_up(inst, st->regex_errors, failed->re);
        if (conf->on_error == ON_ERROR_DROP)
            return KEY_DROP;
        if (conf->on_error == ON_ERROR_MASK) {
            res = replacement;
            res_len = st->replacement_len;
        }
    }
    if (res == v.p && res_len == v.len)
        return KEY_UNCHANGED;
    /* copied into the chunk: the scratch buffers are reused */
    if (dr_record_set(c, r, key, klen, res, res_len, DR_FIELD_STRING) < 0) {
        /* out of memory: a value that could not be redacted must not leave */
        return KEY_DROP;
    }
    return KEY_CHANGED;
}

static void redact_filter(dr_instance *inst, dr_chunk *c)
{
    redact_conf *conf = inst->conf;
    redact_state *st = inst->state;
    uint64_t changed = 0, dropped = 0;
    for (uint32_t i = 0; i < c->nrecs; i++) {
        dr_record *r = &c->recs[i];
        if (r->flags & DR_REC_DROPPED)
            continue;
        bool rec_changed = false;
        for (size_t k = 0; k < conf->keys.n; k++) {
            key_outcome o = redact_key(inst, c, r, conf->keys.v[k]);
            if (o == KEY_DROP) {
                r->flags |= DR_REC_DROPPED;
                dropped++;
                rec_changed = false;
                break;
            }
            rec_changed |= o == KEY_CHANGED;
        }
        changed += rec_changed;
    }
    dr_counter_add(st->redacted, changed);
    if (dropped)
        dr_count_drop(inst, "redact_error", dropped);
}

const dr_plugin dr_plugin_redact = {
    .abi = DR_PLUGIN_ABI,
    .name = "redact",
    .kind = DR_FILTER,
    .description =
        "Replaces what regular expressions match in the message (or other keys) with "
        "`[REDACTED]`, so that secrets and personal data do not leave the node.\n\n"
        "```yaml\nfilters:\n  - type: redact\n    builtins: [email, credit_card, bearer_token]\n"
        "    patterns: ['(?i)password=\\K\\S+']\n```\n\n"
        "`Authorization: Bearer eyJhbGciOi...` becomes `Authorization: Bearer [REDACTED]`, "
        "`card 4111 1111 1111 1111` becomes `card [REDACTED]`. The built-in patterns run first, "
        "then `patterns`, each over the result of the ones before; every match is replaced. "
        "Records in which something was replaced are counted in "
        "`drover_filter_redacted_records_total`. Every match runs under a limit (100000 "
        "backtracking steps, depth 10000); what happens when a pattern hits it is `on_error`.",
    .options = redact_options,
    .conf_size = sizeof(redact_conf),
    .init = redact_init,
    .filter = redact_filter,
    .destroy = redact_destroy,
};
