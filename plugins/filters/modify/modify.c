/*
 * modify filter: changes record keys with a list of operations run in the
 * order they are written, each on the result of the ones before (as Fluent
 * Bit's modify rules and a Vector remap program do).
 *
 * The operations are one list of strings rather than one option per kind,
 * because options of different names have no order between them and the
 * order matters ("lift, then rename a lifted field" is not "rename, then
 * lift"). Every operation is parsed and its keys checked at init, so a
 * running filter never meets a key it may not change.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../keys.h"
#include "drover/plugin.h"
#include "lift.h"

typedef struct modify_conf {
    dr_strlist operations;
} modify_conf;

static const dr_option modify_options[] = {
    {"operations", DR_OPT_STRLIST, offsetof(modify_conf, operations), NULL, DR_OPT_REQUIRED, NULL,
     0, 0,
     "The operations, one string each, run on every record in the order written, each "
     "seeing the result of the ones before: `set KEY VALUE`, `rename OLD NEW`, `copy FROM "
     "TO`, `remove KEY...` and `lift KEY [PREFIX]`, described above. An unknown operation, "
     "a wrong number of words, or a change of `stream`, `time`, `kubernetes.*` (or a "
     "removal of `message`) is an error when the configuration is loaded."},
    {0},
};

typedef enum { OP_SET, OP_RENAME, OP_COPY, OP_REMOVE, OP_REMOVE_PREFIX, OP_LIFT } op_kind;

/* One operation; a `remove` of several keys becomes one per key. */
typedef struct modify_op {
    op_kind kind;
    char *a; /* set: KEY; rename: OLD; copy: FROM; remove: KEY or prefix; lift: KEY */
    size_t a_len;
    char *b; /* set: VALUE; rename: NEW; copy: TO; lift: PREFIX ("" when none) */
    size_t b_len;
} modify_op;

typedef struct modify_state {
    modify_op *ops;
    size_t nops, cap;
    dr_lift_scratch lift;
    dr_counter *errors;
} modify_state;

/* ---- parsing the operations --------------------------------------------------- */

/* Splits s into at most `max` words (spaces and tabs between them). Returns
 * how many there were, max + 1 when there were more. */
static size_t split_words(const char *s, const char **words, size_t *lens, size_t max)
{
    size_t n = 0;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            return n;
        if (n == max)
            return max + 1;
        words[n] = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        lens[n] = (size_t)(p - words[n]);
        n++;
    }
}

static int add_op(modify_state *st, op_kind kind, const char *a, size_t a_len, const char *b,
                  size_t b_len, dr_error *err)
{
    if (st->nops == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 8;
        modify_op *ops = realloc(st->ops, cap * sizeof *ops);
        if (!ops)
            goto oom;
        st->ops = ops;
        st->cap = cap;
    }
    modify_op *op = &st->ops[st->nops];
    op->kind = kind;
    op->a = strndup(a, a_len);
    op->b = strndup(b ? b : "", b ? b_len : 0);
    if (!op->a || !op->b) {
        free(op->a);
        free(op->b);
        goto oom;
    }
    op->a_len = a_len;
    op->b_len = b ? b_len : 0;
    st->nops++;
    return 0;
oom:
    dr_error_set(err, "out of memory");
    return DR_ENOMEM;
}

static int parse_set(modify_state *st, const char *args, const char *what, dr_error *err)
{
    size_t klen;
    const char *value;
    dr_split_word(args, &klen, &value);
    if (klen == 0 || !value) {
        dr_error_set(err, "%s: expected \"set KEY VALUE\"", what);
        return DR_EINVAL;
    }
    if (!dr_key_writable(args, klen, what, err))
        return DR_EINVAL;
    return add_op(st, OP_SET, args, klen, value, strlen(value), err);
}

static int parse_rename_or_copy(modify_state *st, op_kind kind, const char *args, const char *what,
                                dr_error *err)
{
    const char *w[2];
    size_t len[2];
    const char *usage = kind == OP_RENAME ? "rename OLD NEW" : "copy FROM TO";
    if (split_words(args, w, len, 2) != 2) {
        dr_error_set(err, "%s: expected \"%s\"", what, usage);
        return DR_EINVAL;
    }
    bool from_ok = kind == OP_RENAME ? dr_key_is_field(w[0], len[0], what, err)
                                     : dr_key_readable(w[0], len[0], what, err);
    if (!from_ok || !dr_key_writable(w[1], len[1], what, err))
        return DR_EINVAL;
    return add_op(st, kind, w[0], len[0], w[1], len[1], err);
}

static int parse_remove(modify_state *st, const char *args, const char *what, dr_error *err)
{
    const char *p = args;
    size_t n = 0;
    for (;;) {
        size_t len;
        const char *rest;
        dr_split_word(p, &len, &rest);
        if (len == 0)
            break;
        const char *star = memchr(p, '*', len);
        if (star && star != p + len - 1) {
            dr_error_set(err, "%s: \"%.*s\": `*` may only end a name (a prefix such as tmp_*)",
                         what, (int)len, p);
            return DR_EINVAL;
        }
        int rc;
        if (star) {
            rc = add_op(st, OP_REMOVE_PREFIX, p, len - 1, NULL, 0, err);
        } else {
            if (!dr_key_is_field(p, len, what, err))
                return DR_EINVAL;
            rc = add_op(st, OP_REMOVE, p, len, NULL, 0, err);
        }
        if (rc < 0)
            return rc;
        n++;
        if (!rest)
            break;
        p = rest;
    }
    if (n == 0) {
        dr_error_set(err, "%s: expected \"remove KEY...\"", what);
        return DR_EINVAL;
    }
    return 0;
}

static int parse_lift(modify_state *st, const char *args, const char *what, dr_error *err)
{
    const char *w[2];
    size_t len[2];
    size_t n = split_words(args, w, len, 2);
    if (n < 1 || n > 2) {
        dr_error_set(err, "%s: expected \"lift KEY\" or \"lift KEY PREFIX\"", what);
        return DR_EINVAL;
    }
    if (!dr_key_is_field(w[0], len[0], what, err))
        return DR_EINVAL;
    /* Other names a prefix could make read-only (PREFIX "ti" and a member
     * "me") are caught per record, when the object is known. */
    if (n == 2 && len[1] >= 11 && memcmp(w[1], "kubernetes.", 11) == 0) {
        dr_error_set(err, "%s: prefix \"%.*s\": kubernetes.* keys cannot be changed", what,
                     (int)len[1], w[1]);
        return DR_EINVAL;
    }
    return add_op(st, OP_LIFT, w[0], len[0], n == 2 ? w[1] : NULL, n == 2 ? len[1] : 0, err);
}

static bool word_is(const char *word, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(word, lit, len) == 0;
}

static int parse_operation(modify_state *st, const char *spec, const char *what, dr_error *err)
{
    size_t oplen;
    const char *args;
    dr_split_word(spec, &oplen, &args);
    if (!args)
        args = "";
    if (word_is(spec, oplen, "set"))
        return parse_set(st, args, what, err);
    if (word_is(spec, oplen, "rename"))
        return parse_rename_or_copy(st, OP_RENAME, args, what, err);
    if (word_is(spec, oplen, "copy"))
        return parse_rename_or_copy(st, OP_COPY, args, what, err);
    if (word_is(spec, oplen, "remove"))
        return parse_remove(st, args, what, err);
    if (word_is(spec, oplen, "lift"))
        return parse_lift(st, args, what, err);
    dr_error_set(err, "%s: unknown operation \"%.*s\" (known: set, rename, copy, remove, lift)",
                 what, (int)oplen, spec);
    return DR_EINVAL;
}

static void modify_destroy(dr_instance *inst)
{
    modify_state *st = inst->state;
    if (!st)
        return;
    for (size_t i = 0; i < st->nops; i++) {
        free(st->ops[i].a);
        free(st->ops[i].b);
    }
    free(st->ops);
    dr_lift_scratch_free(&st->lift);
    free(st);
    inst->state = NULL;
}

static int modify_init(dr_instance *inst, dr_error *err)
{
    modify_conf *conf = inst->conf;
    modify_state *st = calloc(1, sizeof *st);
    if (!st) {
        dr_error_set(err, "out of memory");
        return DR_ENOMEM;
    }
    inst->state = st;
    if (conf->operations.n == 0) {
        dr_error_set(err, "operations: give at least one operation");
        modify_destroy(inst);
        return DR_EINVAL;
    }
    for (size_t i = 0; i < conf->operations.n; i++) {
        char what[64];
        snprintf(what, sizeof what, "operations[%zu]", i);
        int rc = parse_operation(st, conf->operations.v[i], what, err);
        if (rc < 0) {
            modify_destroy(inst);
            return rc;
        }
    }
    st->errors = dr_counter_new(inst, "drover_filter_modify_errors_total",
                                "Operations that could not be carried out: a lift of a value "
                                "that is not a JSON object, a record at its field limit, no "
                                "memory.",
                                NULL, NULL);
    return 0;
}

/* ---- running them --------------------------------------------------------------- */

static int run_rename(dr_chunk *c, dr_record *r, const modify_op *op)
{
    dr_field *f = dr_record_field(r, op->a, op->a_len);
    if (!f || (op->a_len == op->b_len && memcmp(op->a, op->b, op->a_len) == 0))
        return 0;
    if (op->b_len == 7 && memcmp(op->b, "message", 7) == 0) {
        /* the value is in the arena already: the message can point at it */
        r->msg = f->val;
        r->msg_len = f->val_len;
        dr_record_remove(r, op->a, op->a_len);
        return 0;
    }
    char *key = dr_chunk_strdup(c, op->b, op->b_len);
    if (!key)
        return DR_ENOMEM;
    /* Renaming in place keeps the field where it was among the others. */
    dr_record_remove(r, op->b, op->b_len);
    f = dr_record_field(r, op->a, op->a_len); /* the removal may have moved it */
    f->key = key;
    f->key_len = (uint32_t)op->b_len;
    return 0;
}

static int run_copy(dr_chunk *c, dr_record *r, const modify_op *op)
{
    dr_value v;
    char tbuf[40];
    if (!dr_record_get(c, r, op->a, op->a_len, &v, tbuf))
        return 0;
    return dr_record_set(c, r, op->b, op->b_len, v.p, v.len, (dr_field_type)v.type);
}

static void run_remove_prefix(dr_record *r, const modify_op *op)
{
    for (uint16_t i = r->nfields; i-- > 0;) {
        dr_field *f = &r->fields[i];
        if (f->key_len >= op->a_len && memcmp(f->key, op->a, op->a_len) == 0)
            dr_record_remove(r, f->key, f->key_len);
    }
}

static int run_op(modify_state *st, dr_chunk *c, dr_record *r, const modify_op *op)
{
    switch (op->kind) {
    case OP_SET:
        return dr_record_set(c, r, op->a, op->a_len, op->b, op->b_len, DR_FIELD_STRING);
    case OP_RENAME:
        return run_rename(c, r, op);
    case OP_COPY:
        return run_copy(c, r, op);
    case OP_REMOVE:
        dr_record_remove(r, op->a, op->a_len);
        return 0;
    case OP_REMOVE_PREFIX:
        run_remove_prefix(r, op);
        return 0;
    case OP_LIFT:
        return dr_lift(c, r, op->a, op->a_len, op->b, op->b_len, &st->lift);
    }
    return 0;
}

static void modify_filter(dr_instance *inst, dr_chunk *c)
{
    modify_state *st = inst->state;
    uint64_t errors = 0;
    for (uint32_t i = 0; i < c->nrecs; i++) {
        dr_record *r = &c->recs[i];
        if (r->flags & DR_REC_DROPPED)
            continue;
        for (size_t j = 0; j < st->nops; j++)
            if (run_op(st, c, r, &st->ops[j]) < 0)
                errors++;
    }
    if (errors)
        dr_counter_add(st->errors, errors);
}

const dr_plugin dr_plugin_modify = {
    .abi = DR_PLUGIN_ABI,
    .name = "modify",
    .kind = DR_FILTER,
    .description =
        "Sets, renames, copies, removes and lifts record keys, in the order the operations are "
        "written (as Fluent Bit's modify rules, or the statements of a Vector remap).\n\n"
        "```yaml\nfilters:\n  - type: modify\n    operations:\n"
        "      - lift payload            # {\"user\":\"ann\",\"ms\":12} -> fields user, ms\n"
        "      - rename ms duration_ms\n"
        "      - copy kubernetes.pod pod\n"
        "      - set cluster prod-eu\n"
        "      - remove tmp_* debug\n```\n\n"
        "Keys are those of every filter: `message` (the line), `stream` (stdout or stderr), "
        "`time` (RFC 3339), `kubernetes.<name>` (namespace, pod, container, labels.<key>, ...) "
        "and fields that filters added. The operations:\n\n"
        "- `set KEY VALUE`: sets the field KEY, or `message`, to VALUE: the rest of the "
        "string, which may hold spaces. The value is a string; it replaces what the key held.\n"
        "- `rename OLD NEW`: renames the field OLD to NEW, replacing NEW if it was there. NEW "
        "may be `message`: the field's value becomes the line and the field goes. Nothing "
        "happens when OLD is missing.\n"
        "- `copy FROM TO`: copies any key, `stream`, `time` and `kubernetes.*` included, to "
        "the field TO or to `message`. Nothing happens when FROM is missing.\n"
        "- `remove KEY...`: removes fields by name, one or more. A name ending in `*` removes "
        "every field that starts with what is before the `*` (`tmp_*`; a lone `*` removes all "
        "fields). Missing fields are not an error.\n"
        "- `lift KEY [PREFIX]`: KEY is a field holding a JSON object (as parsers make them). "
        "Each member becomes a field named PREFIX followed by the member's name (a string "
        "member as text, any other as JSON), and KEY is removed; a member named `message` "
        "(without a prefix) replaces the line. When the value is not a JSON "
        "object, or a member's name could not be a field (`stream`, `time`, `kubernetes.*`), "
        "nothing is lifted and the error is counted in `drover_filter_modify_errors_total`.\n\n"
        "`message` can be set, copied to and renamed to (the line is replaced) but not removed: "
        "set it to change it. `stream`, `time` and `kubernetes.*` come from the source: they "
        "can be copied, never changed. Copies and renames keep the type of the value (a JSON "
        "value stays JSON in the output).",
    .options = modify_options,
    .conf_size = sizeof(modify_conf),
    .init = modify_init,
    .filter = modify_filter,
    .destroy = modify_destroy,
};
