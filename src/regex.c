/*
 * Regular expressions over PCRE2 (see regex.h for what callers can rely on).
 *
 * Each dr_regex owns everything a match needs: the compiled code, a match
 * context carrying its limits, a JIT stack of bounded size and match data
 * for callers that need no captures. Nothing is allocated per match.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "regex.h"

/* The JIT keeps its backtracking state on a stack of its own; the default
 * one (32 KiB on the machine stack) is small enough that long lines fail
 * with ordinary patterns. This one grows on demand up to the maximum and is
 * freed with the regex. */
#define JIT_STACK_START (32 * 1024)
#define JIT_STACK_MAX (512 * 1024)

/* The interpreter (used when there is no JIT) keeps its backtracking frames
 * on the heap; PCRE2's own default bound is 20 GB. In KiB. */
#define HEAP_LIMIT_KIB 16384

struct dr_regex {
    char *pattern;
    pcre2_code *code;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack; /* NULL when the pattern is not JIT-compiled */
    pcre2_match_data *own_md;   /* for callers that pass no match data */
    uint32_t groups;
};

struct dr_regex_match_data {
    pcre2_match_data *md;
};

static void regex_error(dr_error *err, const char *pattern, int code, size_t offset)
{
    PCRE2_UCHAR why[256];
    if (pcre2_get_error_message(code, why, sizeof why) < 0)
        snprintf((char *)why, sizeof why, "error %d", code);
    dr_error_set(err, "invalid regex \"%.200s\" at offset %zu: %s", pattern, offset,
                 (const char *)why);
}

/* JIT compilation is an optimisation: a library without JIT, or a pattern
 * the JIT does not take, is matched by the interpreter instead. */
static void try_jit(dr_regex *re)
{
    if (pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) != 0)
        return;
    re->jit_stack = pcre2_jit_stack_create(JIT_STACK_START, JIT_STACK_MAX, NULL);
    if (re->jit_stack)
        pcre2_jit_stack_assign(re->mctx, NULL, re->jit_stack);
}

dr_regex *dr_regex_compile(const char *pattern, unsigned flags, dr_error *err)
{
    dr_regex *re = calloc(1, sizeof *re);
    if (!re || !(re->pattern = strdup(pattern))) {
        free(re);
        dr_error_set(err, "out of memory");
        return NULL;
    }
    uint32_t options = 0;
    if (flags & DR_REGEX_CASELESS)
        options |= PCRE2_CASELESS;
    if (flags & DR_REGEX_DOLLAR_ENDONLY)
        options |= PCRE2_DOLLAR_ENDONLY;
    /* Without UTF, a pattern may not switch it on with (*UTF): subjects are
     * bytes, and a UTF check on them would fail on any invalid byte. */
    options |= (flags & DR_REGEX_UTF) ? PCRE2_UTF | PCRE2_MATCH_INVALID_UTF : PCRE2_NEVER_UTF;
    int code;
    PCRE2_SIZE offset;
    re->code =
        pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, options, &code, &offset, NULL);
    if (!re->code) {
        regex_error(err, pattern, code, (size_t)offset);
        dr_regex_free(re);
        return NULL;
    }
    re->mctx = pcre2_match_context_create(NULL);
    re->own_md = pcre2_match_data_create_from_pattern(re->code, NULL);
    if (!re->mctx || !re->own_md) {
        dr_error_set(err, "out of memory");
        dr_regex_free(re);
        return NULL;
    }
    pcre2_set_heap_limit(re->mctx, HEAP_LIMIT_KIB);
    dr_regex_set_limits(re, DR_REGEX_MATCH_LIMIT, DR_REGEX_DEPTH_LIMIT);
    pcre2_pattern_info(re->code, PCRE2_INFO_CAPTURECOUNT, &re->groups);
    try_jit(re);
    return re;
}

void dr_regex_free(dr_regex *re)
{
    if (!re)
        return;
    pcre2_match_data_free(re->own_md);
    pcre2_jit_stack_free(re->jit_stack);
    pcre2_match_context_free(re->mctx);
    pcre2_code_free(re->code);
    free(re->pattern);
    free(re);
}

const char *dr_regex_pattern(const dr_regex *re)
{
    return re->pattern;
}

void dr_regex_set_limits(dr_regex *re, uint32_t match_limit, uint32_t depth_limit)
{
    if (match_limit)
        pcre2_set_match_limit(re->mctx, match_limit);
    if (depth_limit)
        pcre2_set_depth_limit(re->mctx, depth_limit);
}

dr_regex_match_data *dr_regex_match_data_new(const dr_regex *re)
{
    dr_regex_match_data *md = malloc(sizeof *md);
    if (!md)
        return NULL;
    md->md = pcre2_match_data_create_from_pattern(re->code, NULL);
    if (!md->md) {
        free(md);
        return NULL;
    }
    return md;
}

void dr_regex_match_data_free(dr_regex_match_data *md)
{
    if (!md)
        return;
    pcre2_match_data_free(md->md);
    free(md);
}

int dr_regex_search(const dr_regex *re, const char *subject, size_t len, size_t offset,
                    dr_regex_match_data *md)
{
    if (offset > len)
        return 0;
    /* PCRE2 wants a non-NULL subject even when it is empty. */
    PCRE2_SPTR s = (PCRE2_SPTR)(subject ? subject : "");
    int rc = pcre2_match(re->code, s, len, offset, 0, md ? md->md : re->own_md, re->mctx);
    if (rc >= 0)
        return 1;
    if (rc == PCRE2_ERROR_NOMATCH || rc == PCRE2_ERROR_PARTIAL)
        return 0;
    /* PCRE2_ERROR_MATCHLIMIT, _DEPTHLIMIT, _HEAPLIMIT, _JIT_STACKLIMIT,
     * _NOMEMORY: the match gave up. */
    return DR_ERR;
}

int dr_regex_match(const dr_regex *re, const char *subject, size_t len, dr_regex_match_data *md)
{
    return dr_regex_search(re, subject, len, 0, md);
}

bool dr_regex_group(const dr_regex_match_data *md, uint32_t n, size_t *start, size_t *end)
{
    if (n >= pcre2_get_ovector_count(md->md))
        return false;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md->md);
    if (ov[2 * n] == PCRE2_UNSET)
        return false;
    *start = ov[2 * n];
    *end = ov[2 * n + 1];
    /* \K in a lookahead can put the start after the end: an empty match */
    if (*end < *start)
        *end = *start;
    return true;
}

uint32_t dr_regex_group_count(const dr_regex *re)
{
    return re->groups;
}

uint32_t dr_regex_name_count(const dr_regex *re)
{
    uint32_t n = 0;
    pcre2_pattern_info(re->code, PCRE2_INFO_NAMECOUNT, &n);
    return n;
}

bool dr_regex_name_at(const dr_regex *re, uint32_t i, const char **name, uint32_t *group)
{
    uint32_t count = 0, entry_size = 0;
    PCRE2_SPTR table = NULL;
    pcre2_pattern_info(re->code, PCRE2_INFO_NAMECOUNT, &count);
    if (i >= count)
        return false;
    pcre2_pattern_info(re->code, PCRE2_INFO_NAMEENTRYSIZE, &entry_size);
    pcre2_pattern_info(re->code, PCRE2_INFO_NAMETABLE, &table);
    /* Each entry: the group number in two bytes, most significant first,
     * then the name, NUL-terminated. */
    PCRE2_SPTR e = table + (size_t)i * entry_size;
    *group = ((uint32_t)e[0] << 8) | e[1];
    *name = (const char *)(e + 2);
    return true;
}

int dr_regex_group_index(const dr_regex *re, const char *name)
{
    int n = pcre2_substring_number_from_name(re->code, (PCRE2_SPTR)name);
    if (n >= 0)
        return n;
    if (n == PCRE2_ERROR_NOUNIQUESUBSTRING) {
        /* (?J) duplicate names: the first in the table */
        uint32_t count = dr_regex_name_count(re);
        for (uint32_t i = 0; i < count; i++) {
            const char *nm;
            uint32_t g;
            if (dr_regex_name_at(re, i, &nm, &g) && strcmp(nm, name) == 0)
                return (int)g;
        }
    }
    return -1;
}
