/*
 * Configuration: YAML files parsed into a tree that remembers where every
 * node came from (file, line, column), merged across a directory, with
 * ${VAR} and ${VAR:-default} substitution in scalars, and applied to plugin
 * config structs through their option tables (dr_option).
 *
 * Every error is reported as "file:line:column: key.path: message" and all
 * errors are collected, not just the first, so --check-config can list them.
 */
#ifndef DROVER_CONFIG_H
#define DROVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "drover/plugin.h"

typedef enum { DR_CFG_NULL, DR_CFG_SCALAR, DR_CFG_MAP, DR_CFG_SEQ } dr_cfg_type;

typedef struct dr_cfg_node dr_cfg_node;

typedef struct dr_cfg_pair {
    dr_cfg_node *key; /* always a scalar */
    dr_cfg_node *val;
} dr_cfg_pair;

struct dr_cfg_node {
    dr_cfg_type type;
    const char *file;    /* owned by the document */
    int line, col;       /* 1-based */
    char *str;           /* DR_CFG_SCALAR: the value after ${VAR} substitution */
    bool quoted;         /* scalar was quoted in YAML (so "true" stays a string) */
    size_t n;            /* number of pairs (map) or items (seq) */
    dr_cfg_pair *pairs;  /* DR_CFG_MAP */
    dr_cfg_node **items; /* DR_CFG_SEQ */
};

#define DR_CFG_MAX_ERRORS 64

typedef struct dr_cfg_errors {
    size_t n;       /* errors recorded (at most DR_CFG_MAX_ERRORS kept) */
    size_t dropped; /* errors beyond the limit */
    char *msg[DR_CFG_MAX_ERRORS];
} dr_cfg_errors;

typedef struct dr_cfg_doc dr_cfg_doc; /* owns every node and string */

/* Loads a file, or every *.yaml and *.yml of a directory in name order,
 * merging them: top-level maps are merged key by key (recursively for maps;
 * a later scalar replaces an earlier one), the top-level lists `inputs`,
 * `filters` and `outputs` are concatenated. Returns NULL when a file cannot
 * be read or parsed (errs says why, with positions). An error in a value
 * that leaves the document whole (an unset environment variable without a
 * default) is added to errs and the document is still returned, so that
 * the caller can check the rest and report every problem at once: a caller
 * treats any error added to errs as a failure. */
dr_cfg_doc *dr_cfg_load(const char *path, dr_cfg_errors *errs);
/* Same from a string (tests); `name` stands for the file name in errors. */
dr_cfg_doc *dr_cfg_load_string(const char *name, const char *yaml, dr_cfg_errors *errs);
/* The same for text the agent's operator did not write (the filter rules a
 * namespace keeps in a ConfigMap): ${VAR} is left as it is, never taken
 * from the agent's environment, and the top level may be a list. */
dr_cfg_doc *dr_cfg_load_untrusted(const char *name, const char *yaml, dr_cfg_errors *errs);
void dr_cfg_doc_free(dr_cfg_doc *doc);
/* The root map (an empty map node for an empty document), or the root
 * list of an untrusted document. */
const dr_cfg_node *dr_cfg_root(const dr_cfg_doc *doc);

/* The value for `key` in a map node, NULL if absent or not a map. */
const dr_cfg_node *dr_cfg_get(const dr_cfg_node *map, const char *key);

/* Records an error at a node's position: "file:line:col: path: message". */
void dr_cfg_error(dr_cfg_errors *errs, const dr_cfg_node *at, const char *path, const char *fmt,
                  ...) __attribute__((format(printf, 4, 5)));
void dr_cfg_errors_free(dr_cfg_errors *errs);

/* The options of a table with every DR_OPT_GROUP entry replaced by the
 * options of its group (names prefixed with "group." unless the group's
 * name is "", offsets added), in a new array ended by a NULL name, with
 * names of its own. Free with dr_options_free. NULL on allocation failure. */
dr_option *dr_options_flatten(const dr_option *opts);
void dr_options_free(dr_option *flat);

/* Fills `conf` (a zeroed struct) from `map` with the option table: defaults
 * first, then the values present. `path` is the key path of the map for
 * error messages (such as "inputs[0]"). Keys listed in `extra_keys`
 * (NULL-terminated, may be NULL) are accepted without being applied; any
 * other key not in the table is an error. Option names may contain dots
 * ("http.listen") to reach into nested maps. Returns the number of errors
 * added. `map` may be NULL (only defaults apply, required options fail). */
int dr_cfg_apply(const dr_option *opts, const dr_cfg_node *map, void *conf, const char *path,
                 const char *const *extra_keys, dr_cfg_errors *errs);
/* Frees the strings and lists that dr_cfg_apply allocated in `conf`. */
void dr_cfg_free_conf(const dr_option *opts, void *conf);

/* Value parsers shared with the rest of the agent. Return 0 or DR_EINVAL. */
int dr_parse_size(const char *s, uint64_t *bytes); /* 512, 16KiB, 1MiB, 2GiB, 1KB, 1MB */
int dr_parse_duration(const char *s, int64_t *ms); /* 250ms, 5s, 2m, 1h, 1h30m; 0 */
int dr_parse_bool(const char *s, bool *v);         /* true/false, yes/no, on/off */

#endif
