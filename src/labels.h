/*
 * Label sets: the identity of a metric series.
 *
 * A series is its metric name (the label __name__) and its other labels,
 * compared byte for byte. Everything that handles series (the exposition
 * parsers, relabeling, the series table, the remote-write encoders) works
 * on a dr_labels: a small array of name/value pairs with lengths.
 *
 * A dr_labels owns the bytes of every label it copied (dr_labels_set and
 * dr_labels_add_copy put them in a pool of blocks that never move, so
 * pointers into it stay valid until dr_labels_reset or dr_labels_free).
 * dr_labels_add takes the caller's bytes by reference: the caller keeps
 * them alive as long as the set is used (a parser's input buffer, say).
 *
 * As in Prometheus, a label with an empty value is the same as no label:
 * dr_labels_set with an empty value removes the label, and dr_labels_canon
 * drops empty ones. Label sets are small (tens of labels), so lookups are
 * linear scans.
 */
#ifndef DROVER_LABELS_H
#define DROVER_LABELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dr_label {
    const char *name; /* not NUL-terminated */
    const char *value;
    uint32_t name_len;
    uint32_t value_len;
} dr_label;

typedef struct dr_labels_block dr_labels_block;

typedef struct dr_labels {
    dr_label *v;
    uint32_t n, cap;
    dr_labels_block *pool; /* copies of label bytes; newest block first */
} dr_labels;

/* Bounds that keep a hostile input from growing a set without limit. */
#define DR_LABELS_MAX 4096u            /* labels in one set */
#define DR_LABELS_MAX_BYTES (1u << 20) /* one name or one value */

void dr_labels_init(dr_labels *ls);
void dr_labels_free(dr_labels *ls);
/* Empties the set and its pool, keeping the memory for the next use. */
void dr_labels_reset(dr_labels *ls);

/* Appends a label referencing the caller's bytes (no copy, no check for a
 * duplicate name). DR_ENOMEM or DR_EINVAL (over the bounds above). */
int dr_labels_add(dr_labels *ls, const char *name, size_t name_len, const char *value,
                  size_t value_len);
/* Appends a label with its bytes copied into the set's pool. */
int dr_labels_add_copy(dr_labels *ls, const char *name, size_t name_len, const char *value,
                       size_t value_len);
/* Sets a label (copying both strings): replaces the value of an existing
 * label of that name, or appends one; an empty value removes the label. */
int dr_labels_set(dr_labels *ls, const char *name, size_t name_len, const char *value,
                  size_t value_len);
/* Convenience for NUL-terminated strings. */
int dr_labels_sets(dr_labels *ls, const char *name, const char *value);
/* Removes the label of that name, if any (the order of the others is kept). */
void dr_labels_del(dr_labels *ls, const char *name, size_t name_len);
/* Removes the label at index i (the order of the others is kept). */
void dr_labels_del_at(dr_labels *ls, uint32_t i);

/* The label of that name, or NULL. */
const dr_label *dr_labels_get(const dr_labels *ls, const char *name, size_t name_len);
const dr_label *dr_labels_gets(const dr_labels *ls, const char *name);
/* The value of that label, "" (length 0) when absent. */
const char *dr_labels_value(const dr_labels *ls, const char *name, size_t name_len,
                            size_t *value_len);

/* Makes the set canonical: sorted by name (bytewise, as Go compares
 * strings), labels with empty values removed. Returns DR_EINVAL if two
 * labels share a name (the set is still sorted then), else 0. */
int dr_labels_canon(dr_labels *ls);
/* True if the sorted set has two labels of the same name. */
bool dr_labels_has_dup(const dr_labels *ls);

/* Copies src into dst (dst's previous contents are dropped; strings are
 * copied into dst's pool, so dst does not depend on src afterwards). */
int dr_labels_copy(dr_labels *dst, const dr_labels *src);

/* A 64-bit hash of the set in its current order (canonicalize first to
 * compare sets). Equal sets hash equally; names and values are separated so
 * that {a="bc"} and {ab="c"} differ. */
uint64_t dr_labels_hash(const dr_labels *ls);
/* True if both sets hold the same labels in the same order. */
bool dr_labels_equal(const dr_labels *a, const dr_labels *b);

/* Writes the set as Prometheus prints a series: name{a="1",b="2"} with
 * the values escaped (\\, \" and \n), __name__ taken out as the metric
 * name. NUL-terminated, clipped to cap (returns the length it would have
 * had, as snprintf). For logs and tests. */
size_t dr_labels_format(const dr_labels *ls, char *out, size_t cap);

/* Label names Prometheus accepts without quoting ([a-zA-Z_][a-zA-Z0-9_]*);
 * metric names may also hold ':'. */
bool dr_label_name_is_legacy(const char *name, size_t len);
bool dr_metric_name_is_legacy(const char *name, size_t len);

#endif
