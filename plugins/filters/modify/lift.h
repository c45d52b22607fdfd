/*
 * modify's `lift`: the members of a field holding a JSON object become
 * fields of the record.
 */
#ifndef DROVER_MODIFY_LIFT_H
#define DROVER_MODIFY_LIFT_H

#include <stddef.h>

#include "buf.h"
#include "drover/plugin.h"
#include "jsonp.h"

/* How deep containers may nest inside a lifted object. */
#define DR_LIFT_MAX_DEPTH 256

/* What is reused from one lift to the next (owned by the caller). */
typedef struct dr_lift_scratch {
    dr_buf name;      /* PREFIX + a member's name */
    dr_json_doc *doc; /* the parsed object; made at the first lift */
} dr_lift_scratch;

/* Lifts the field key[0..key_len): each member of its JSON object becomes
 * the field prefix + name (string members unescaped, as strings; others as
 * their JSON text), and the field is removed. It happens whole or not at
 * all: nothing changes when the value is not a JSON object or a member's
 * name cannot be set (stream, time, kubernetes.*, empty). Returns 0 (also
 * when there is no such field), DR_EINVAL in those cases, DR_ENOMEM. */
int dr_lift(dr_chunk *c, dr_record *r, const char *key, size_t key_len, const char *prefix,
            size_t prefix_len, dr_lift_scratch *s);

void dr_lift_scratch_free(dr_lift_scratch *s);

#endif
