/*
 * Lifting a JSON object's members into fields (see lift.h).
 *
 * The object is parsed whole (src/jsonp.c, into the scratch's reusable
 * document) and every member's name is checked before any is set, so a bad
 * object changes nothing rather than leaving half of its members lifted.
 * Values keep their exact text: a member that is not a string becomes a
 * JSON field of the bytes it had in the object.
 */
#include <string.h>

#include "../keys.h"
#include "lift.h"

/* The longest key dr_record_set takes. */
#define MAX_KEY 4096

/* PREFIX + the member's name, in s->name. */
static int member_name(dr_lift_scratch *s, const char *prefix, size_t prefix_len, const dr_jv *m)
{
    dr_buf_reset(&s->name);
    /* +1: never an empty (NULL) buffer, even for "" */
    if (dr_buf_reserve(&s->name, prefix_len + m->key_len + 1) < 0)
        return DR_ENOMEM;
    dr_buf_append(&s->name, prefix, prefix_len);
    dr_buf_append(&s->name, m->key, m->key_len);
    return 0;
}

static bool name_settable(const dr_buf *name)
{
    return name->len <= MAX_KEY && dr_key_writable(name->p, name->len, "", NULL);
}

static int check_members(const dr_jv *obj, const char *prefix, size_t prefix_len,
                         dr_lift_scratch *s)
{
    for (const dr_jv *m = obj->child; m; m = m->next) {
        int rc = member_name(s, prefix, prefix_len, m);
        if (rc < 0)
            return rc;
        if (!name_settable(&s->name))
            return DR_EINVAL;
    }
    return 0;
}

static int set_member(dr_chunk *c, dr_record *r, const char *prefix, size_t prefix_len,
                      const dr_jv *m, dr_lift_scratch *s)
{
    int rc = member_name(s, prefix, prefix_len, m);
    if (rc < 0)
        return rc;
    if (m->type == DR_JV_STRING)
        return dr_record_set(c, r, s->name.p, s->name.len, m->str, m->len, DR_FIELD_STRING);
    return dr_record_set(c, r, s->name.p, s->name.len, m->raw, m->raw_len, DR_FIELD_JSON);
}

int dr_lift(dr_chunk *c, dr_record *r, const char *key, size_t key_len, const char *prefix,
            size_t prefix_len, dr_lift_scratch *s)
{
    dr_field *f = dr_record_field(r, key, key_len);
    if (!f)
        return 0;
    if (f->type != DR_FIELD_JSON)
        return DR_EINVAL;
    if (!s->doc && !(s->doc = dr_json_doc_new()))
        return DR_ENOMEM;
    /* The text lives in the chunk's arena: it stays where it is whatever
     * happens to the fields array below, and the members' raw text with it. */
    const dr_json_limits lim = {.max_depth = DR_LIFT_MAX_DEPTH};
    const dr_jv *obj;
    int rc = dr_json_parse(s->doc, f->val, f->val_len, &lim, &obj, NULL);
    if (rc < 0)
        return rc;
    if (obj->type != DR_JV_OBJECT)
        return DR_EINVAL;
    rc = check_members(obj, prefix, prefix_len, s);
    if (rc < 0)
        return rc;
    /* Removed first, so that a member of the same name is not removed with it. */
    dr_record_remove(r, key, key_len);
    for (const dr_jv *m = obj->child; m; m = m->next) {
        rc = set_member(c, r, prefix, prefix_len, m, s);
        if (rc < 0)
            return rc;
    }
    return 0;
}

void dr_lift_scratch_free(dr_lift_scratch *s)
{
    dr_buf_free(&s->name);
    dr_json_doc_free(s->doc);
    s->doc = NULL;
}
