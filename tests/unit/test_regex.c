/*
 * src/regex.c: compile errors, matching bytes, offsets, groups and names,
 * and the limits that stop catastrophic backtracking.
 */
#include <string.h>

#include "regex.h"
#include "test.h"

static dr_regex *compile(const char *pattern, unsigned flags)
{
    dr_error err = {{0}};
    dr_regex *re = dr_regex_compile(pattern, flags, &err);
    if (!re)
        CHECK_STR(err.msg, "(compiled)");
    return re;
}

static int match(const dr_regex *re, const char *s)
{
    return dr_regex_match(re, s, strlen(s), NULL);
}

void test_regex_compile_errors(void)
{
    static const struct {
        const char *pattern;
        const char *msg;
    } cases[] = {
        {"(a+", "invalid regex \"(a+\" at offset 3: missing closing parenthesis"},
        {"a{2,1}", "invalid regex \"a{2,1}\" at offset 5: numbers out of order in {} quantifier"},
        {"[z-a]", "invalid regex \"[z-a]\" at offset 3: range out of order in character class"},
        {"x)", "invalid regex \"x)\" at offset 1: unmatched closing parenthesis"},
        /* UTF mode cannot be switched on from inside a pattern */
        {"(*UTF)a", "invalid regex \"(*UTF)a\" at offset 6: using UTF is disabled by the "
                    "application"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dr_error err = {{0}};
        dr_regex *re = dr_regex_compile(cases[i].pattern, 0, &err);
        CHECK(re == NULL);
        CHECK_STR(err.msg, cases[i].msg);
        dr_regex_free(re);
    }
}

void test_regex_match_bytes(void)
{
    dr_regex *re = compile("^b.n\\xff", 0);
    CHECK_INT(match(re, "bin\xff"), 1);
    CHECK_INT(match(re, "xbin\xff"), 0);
    dr_regex_free(re);
    /* NUL and invalid UTF-8 are ordinary bytes */
    re = compile("a.b$", 0);
    CHECK_INT(dr_regex_match(re, "xa\0b", 4, NULL), 1);
    CHECK_INT(dr_regex_match(re,
                             "\xc3\x28 a\xfe"
                             "b",
                             6, NULL),
              1);
    CHECK_INT(dr_regex_match(re, "ab", 2, NULL), 0);
    dr_regex_free(re);
    /* an empty subject, even without a pointer */
    re = compile("^$", 0);
    CHECK_INT(dr_regex_match(re, NULL, 0, NULL), 1);
    CHECK_STR(dr_regex_pattern(re), "^$");
    dr_regex_free(re);
    dr_regex_free(NULL);
}

void test_regex_flags(void)
{
    dr_regex *re = compile("^error", DR_REGEX_CASELESS);
    CHECK_INT(match(re, "ERROR: disk"), 1);
    dr_regex_free(re);
    re = compile("^error", 0);
    CHECK_INT(match(re, "ERROR: disk"), 0);
    dr_regex_free(re);
    /* without UTF a dot is one byte; with it one code point */
    re = compile("^.$", 0);
    CHECK_INT(match(re, "\xc3\xa9"), 0);
    dr_regex_free(re);
    re = compile("^.$", DR_REGEX_UTF);
    CHECK_INT(match(re, "\xc3\xa9"), 1);
    /* invalid UTF-8 does not match, and is no error */
    CHECK_INT(match(re, "\xff"), 0);
    dr_regex_free(re);
}

void test_regex_search_and_groups(void)
{
    dr_regex *re = compile("(\\d+)(x)?", 0);
    dr_regex_match_data *md = dr_regex_match_data_new(re);
    const char *s = "a12 b345";
    size_t st, en;
    CHECK_INT(dr_regex_group_count(re), 2);
    CHECK_INT(dr_regex_search(re, s, strlen(s), 0, md), 1);
    CHECK(dr_regex_group(md, 0, &st, &en) && st == 1 && en == 3);
    CHECK(dr_regex_group(md, 1, &st, &en) && st == 1 && en == 3);
    CHECK(!dr_regex_group(md, 2, &st, &en)); /* (x)? took no part */
    CHECK(!dr_regex_group(md, 7, &st, &en)); /* no such group */
    CHECK_INT(dr_regex_search(re, s, strlen(s), 3, md), 1);
    CHECK(dr_regex_group(md, 0, &st, &en) && st == 5 && en == 8);
    CHECK_INT(dr_regex_search(re, s, strlen(s), 8, md), 0);
    CHECK_INT(dr_regex_search(re, s, strlen(s), 99, md), 0);
    dr_regex_match_data_free(md);
    dr_regex_free(re);
    /* a lookbehind sees the bytes before the offset */
    re = compile("(?<=a)1", 0);
    CHECK_INT(dr_regex_search(re, "a1", 2, 1, NULL), 1);
    dr_regex_free(re);
}

void test_regex_named_groups(void)
{
    dr_regex *re = compile("^(?<level>[A-Z]+) (?:id=(\\d+) )?(?<msg>.*)$", 0);
    CHECK_INT(dr_regex_group_count(re), 3);
    CHECK_INT(dr_regex_name_count(re), 2);
    const char *name;
    uint32_t g;
    /* the name table is sorted by name */
    CHECK(dr_regex_name_at(re, 0, &name, &g));
    CHECK_STR(name, "level");
    CHECK_INT(g, 1);
    CHECK(dr_regex_name_at(re, 1, &name, &g));
    CHECK_STR(name, "msg");
    CHECK_INT(g, 3);
    CHECK(!dr_regex_name_at(re, 2, &name, &g));
    CHECK_INT(dr_regex_group_index(re, "msg"), 3);
    CHECK_INT(dr_regex_group_index(re, "level"), 1);
    CHECK_INT(dr_regex_group_index(re, "nope"), -1);
    dr_regex_match_data *md = dr_regex_match_data_new(re);
    const char *s = "WARN disk almost full";
    CHECK_INT(dr_regex_match(re, s, strlen(s), md), 1);
    size_t st, en;
    CHECK(dr_regex_group(md, 3, &st, &en));
    CHECK_MEM(s + st, en - st, "disk almost full", 16);
    dr_regex_match_data_free(md);
    dr_regex_free(re);
    /* (?J): two groups of one name; the first is given */
    re = compile("(?J)(?<v>a)|(?<v>b)", 0);
    CHECK_INT(dr_regex_group_index(re, "v"), 1);
    dr_regex_free(re);
}

/* (a+)+$ on a's followed by a b tries every way of splitting the a's
 * between the groups: 2^41 of them. The limit stops it at once. */
void test_regex_catastrophic_backtracking(void)
{
    const char *s = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab";
    dr_regex *re = compile("(a+)+$", 0);
    int64_t t0 = dr_mono_ns();
    for (int i = 0; i < 10; i++)
        CHECK_INT(match(re, s), DR_ERR);
    int64_t took = dr_mono_ns() - t0;
    CHECK(took < 2000000000); /* ten tries well under two seconds */
    /* a subject it can match is fine */
    CHECK_INT(match(re, "aaaa"), 1);
    dr_regex_free(re);
    /* the same with nested alternatives */
    re = compile("^(\\w+\\s?)*$", 0);
    CHECK_INT(match(re, "an ordinary log line that ends with a bang!"), DR_ERR);
    dr_regex_free(re);
}

void test_regex_limits_per_regex(void)
{
    /* needs some backtracking: fine by default, too much with a tiny limit */
    const char *s = "aaaaaaaaaaaaaaaaaaaa";
    dr_regex *re = compile("^(a|aa)*b?a$", 0);
    CHECK_INT(match(re, s), 1);
    dr_regex_set_limits(re, 2, 0);
    CHECK_INT(match(re, s), DR_ERR);
    dr_regex_set_limits(re, 1000000, 0);
    CHECK_INT(match(re, s), 1);
    dr_regex_free(re);
}
