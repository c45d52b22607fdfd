/*
 * Prometheus relabeling: the rules of relabel_configs, metric_relabel_configs
 * and write_relabel_configs, parsed once from the configuration and applied
 * to label sets, with the semantics of Prometheus 3 (model/relabel).
 *
 * A rule list is parsed into compiled regexes (anchored as ^(?s:regex)$) and
 * scratch space (match data, buffers) that dr_relabel_apply reuses, so that
 * applying rules to every sample of a scrape allocates nothing beyond the
 * label set's own pool. Because of that scratch space, one rule list is used
 * from one thread at a time.
 *
 * Where this differs from Prometheus (regexes run on PCRE2, not Go's RE2):
 * - Patterns are checked for constructs RE2 does not have (lookarounds,
 *   backreferences, atomic groups, possessive quantifiers, recursion,
 *   conditionals, (*VERB)s, \K \G \Z \R \X \h \g \k ...) and rejected;
 *   finer differences remain (\v is vertical whitespace here, a vertical tab
 *   in Go; Go's bound of 1000 on {n,m} is not enforced).
 * - Regexes match UTF-8 code points; a value that is not valid UTF-8 never
 *   matches a regex other than the default (.*), where Go would match.
 * - A match that hits src/regex.h's work limits is an error (DR_ERR), not a
 *   non-match: the caller drops the series and counts it.
 * - lowercase/uppercase and the letters allowed in $name references use the
 *   C library's Unicode tables (C.UTF-8), ASCII only when that locale is
 *   missing; Go uses its own tables (they agree but for rare special cases).
 *
 * In the agent's own configuration files ${NAME} is an environment variable
 * (config.h) but ${1} (digits) is left as it is, so a replacement pasted from
 * a prometheus.yml works unchanged except for a named group, written
 * "$${name}", and "$$", written "$$$$".
 */
#ifndef DROVER_RELABEL_H
#define DROVER_RELABEL_H

#include "config.h"
#include "labels.h"

typedef struct dr_relabel_rules dr_relabel_rules;

/* Parses a YAML list of relabel configs (relabel_configs /
 * metric_relabel_configs / write_relabel_configs); `path` is the option path
 * for error messages ("scrape_configs[0].relabel_configs"); every problem is
 * added to errs with its position; returns 0 or a negative DR_E* code
 * (nonzero when errs got errors); *out is NULL for an empty list. */
int dr_relabel_parse(const dr_cfg_node *list, const char *path, dr_relabel_rules **out,
                     dr_cfg_errors *errs);
void dr_relabel_free(dr_relabel_rules *r); /* NULL ok */

/* Applies the rules in order to ls in place: returns 1 keep, 0 drop, or a
 * negative DR_E* code (a regex hit its work limit: DR_ERR; a result over
 * labels.h's bounds: DR_EINVAL; DR_ENOMEM), after which ls may be partly
 * relabeled and the caller drops it. NULL rules keep everything. The order
 * of ls may change (labelmap sorts it first, as Prometheus iterates labels
 * in order); the caller canonicalizes afterwards. */
int dr_relabel_apply(const dr_relabel_rules *r, dr_labels *ls);

/* The number of rules (0 for NULL). */
size_t dr_relabel_count(const dr_relabel_rules *r);

#endif
