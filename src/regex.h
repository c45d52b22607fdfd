/*
 * Regular expressions for filters: a thin wrapper over PCRE2 (8-bit).
 *
 * Every filter that takes a regex from its configuration goes through here,
 * so that they all behave alike:
 *
 * - Patterns are matched against bytes. UTF mode is off unless asked for, so
 *   a log line with invalid UTF-8 still matches like any other.
 * - Patterns are compiled with JIT when the library has it.
 * - Every match runs under a match limit and a depth limit. A pathological
 *   pattern (catastrophic backtracking) hits a limit after a bounded amount
 *   of work and reports DR_ERR instead of taking the event loop, and with it
 *   every other pipeline, hostage. Callers treat that as "no match" and
 *   count it as an error.
 *
 * Nothing here is thread-safe: a regex and its match data are used from one
 * thread (the loop thread) at a time.
 */
#ifndef DROVER_REGEX_H
#define DROVER_REGEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drover/plugin.h"

typedef struct dr_regex dr_regex;
typedef struct dr_regex_match_data dr_regex_match_data;

/* Compile flags. */
enum {
    DR_REGEX_CASELESS = 1u << 0, /* as (?i) */
    DR_REGEX_UTF = 1u << 1,      /* code points instead of bytes; invalid UTF-8 never matches */
    DR_REGEX_DOLLAR_ENDONLY = 1u << 2, /* $ matches at the very end only, not before a final
                                          newline (as in Go and RE2) */
};

/* Defaults of the limits (see dr_regex_set_limits). */
#define DR_REGEX_MATCH_LIMIT 100000u
#define DR_REGEX_DEPTH_LIMIT 10000u

/* Compiles a NUL-terminated pattern. On failure returns NULL and says why in
 * err, naming the offset in the pattern where the problem is. */
dr_regex *dr_regex_compile(const char *pattern, unsigned flags, dr_error *err);
void dr_regex_free(dr_regex *re);

/* The pattern as it was given (owned by the regex). */
const char *dr_regex_pattern(const dr_regex *re);

/* Bounds the work of one match: match_limit bounds the number of times the
 * matcher may backtrack (PCRE2's match limit), depth_limit how deep its
 * backtracking may nest (PCRE2's depth limit; the JIT has no such notion and
 * relies on the match limit). 0 keeps the current value. */
void dr_regex_set_limits(dr_regex *re, uint32_t match_limit, uint32_t depth_limit);

/* Room for the groups of `re` (pass it to the match functions to read
 * captures). NULL when out of memory. */
dr_regex_match_data *dr_regex_match_data_new(const dr_regex *re);
void dr_regex_match_data_free(dr_regex_match_data *md);

/* Looks for the pattern in subject[0..len), starting at byte `offset`
 * (lookbehinds may still see the bytes before it). `md` may be NULL when
 * the caller needs only a yes or no. Returns 1 on a match, 0 on no match,
 * DR_ERR when a limit was hit or the match failed otherwise. */
int dr_regex_search(const dr_regex *re, const char *subject, size_t len, size_t offset,
                    dr_regex_match_data *md);

/* dr_regex_search from the start of the subject. */
int dr_regex_match(const dr_regex *re, const char *subject, size_t len, dr_regex_match_data *md);

/* After a match: the bytes group `n` matched (0 is the whole match). False
 * when the group did not take part in the match or does not exist. */
bool dr_regex_group(const dr_regex_match_data *md, uint32_t n, size_t *start, size_t *end);

/* Capturing groups in the pattern (not counting group 0). */
uint32_t dr_regex_group_count(const dr_regex *re);

/* Named groups: how many there are, and the i-th one (in the order of the
 * name table, which is sorted by name) with its group number. */
uint32_t dr_regex_name_count(const dr_regex *re);
bool dr_regex_name_at(const dr_regex *re, uint32_t i, const char **name, uint32_t *group);

/* The number of the group called `name`, or -1 when there is none. When
 * (?J) lets several groups share a name, the first. */
int dr_regex_group_index(const dr_regex *re, const char *name);

#endif
