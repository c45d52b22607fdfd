/*
 * What filters share about record keys in their configuration: checking at
 * init that a key can be read or written, and "KEY REGEX" rules (grep,
 * sample) with the one counter every filter uses for regexes that gave up.
 */
#ifndef DROVER_FILTER_KEYS_H
#define DROVER_FILTER_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "drover/plugin.h"
#include "regex.h"

/* A key can be read when it is message, stream, time, a field name, or one
 * of the names kubernetes.<x> that plugin.h lists. Otherwise err says why;
 * `what` names the option for the message. */
bool dr_key_readable(const char *key, size_t len, const char *what, dr_error *err);

/* A key can be written (set, copied to, renamed to) when it is message or a
 * field name: stream, time and kubernetes.* belong to the source. */
bool dr_key_writable(const char *key, size_t len, const char *what, dr_error *err);

/* A key can be removed or renamed away when it names a field. */
bool dr_key_is_field(const char *key, size_t len, const char *what, dr_error *err);

/* One "KEY REGEX" entry of a filter's configuration. */
typedef struct dr_key_regex {
    char *key;
    size_t key_len;
    dr_regex *re;
} dr_key_regex;

/* Parses "KEY REGEX": the key up to the first space, the regex after the
 * spaces that follow it (it may hold spaces itself). `what` names the
 * option (such as "regex[2]") in errors. 0 or DR_EINVAL/DR_ENOMEM. */
int dr_key_regex_parse(const char *spec, const char *what, dr_key_regex *out, dr_error *err);
void dr_key_regex_free(dr_key_regex *kr);

/* Does the record's value of the key match? 1 yes, 0 no (or no such key),
 * DR_ERR when the regex gave up (a limit: see regex.h). */
int dr_key_regex_match(const dr_key_regex *kr, const dr_chunk *c, const dr_record *r);

/* The instance's drover_filter_regex_errors_total: matches that hit a
 * regex limit. The same metric and help for every filter. */
dr_counter *dr_filter_regex_errors_counter(dr_instance *inst);

/* Counts a match that gave up in `errors` and logs a warning naming the
 * regex (rate-limited like every log line), so that an operator can tell
 * which pattern to fix. */
void dr_filter_regex_gave_up(dr_instance *inst, dr_counter *errors, const dr_regex *re);

/* Splits "WORD REST" at the first run of spaces: word[0..*word_len) and
 * *rest (NULL when there is nothing after the word). */
void dr_split_word(const char *s, size_t *word_len, const char **rest);

#endif
