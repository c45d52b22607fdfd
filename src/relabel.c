/*
 * Prometheus relabeling (see relabel.h).
 *
 * Parsing follows Prometheus' Config.UnmarshalYAML and Validate: keys take
 * their defaults, a YAML null gives the zero value (an empty string, no
 * source labels, modulus 0, and for regex the empty pattern), and each rule
 * reports the first validation failure Prometheus would. Applying follows
 * relabel(): the source values joined by the separator, then the action.
 */
#include "relabel.h"

#include <ctype.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include "buf.h"
#include "md5.h"
#include "regex.h"

typedef enum {
    ACT_REPLACE,
    ACT_KEEP,
    ACT_DROP,
    ACT_KEEPEQUAL,
    ACT_DROPEQUAL,
    ACT_HASHMOD,
    ACT_LABELMAP,
    ACT_LABELDROP,
    ACT_LABELKEEP,
    ACT_LOWERCASE,
    ACT_UPPERCASE,
} action;

static const char *const action_names[] = {
    "replace",  "keep",      "drop",      "keepequal", "dropequal", "hashmod",
    "labelmap", "labeldrop", "labelkeep", "lowercase", "uppercase", NULL,
};

static const char *const rule_keys[] = {
    "source_labels", "separator", "regex", "modulus", "target_label", "replacement", "action", NULL,
};

#define DEFAULT_SEPARATOR ";"
#define DEFAULT_REGEX "(.*)"
#define DEFAULT_REPLACEMENT "$1"

/* A string with its length (label names may not hold NUL, but the lengths
 * save a strlen per sample). */
typedef struct {
    char *s;
    size_t len;
} str;

typedef struct rule {
    action act;
    str *sources;
    size_t nsources;
    str separator;
    dr_regex *re;
    dr_regex_match_data *md; /* for the actions that read groups */
    bool regex_default;      /* no regex key: (.*), which matches every value whole */
    uint64_t modulus;
    str target;
    bool target_has_var; /* contains '$': expanded per match */
    str replacement;
    bool replacement_has_var;
} rule;

/* Space reused by every apply (hence one thread at a time), apart from the
 * rules so that applying const rules may write to it. */
typedef struct scratch {
    dr_buf value;   /* joined source values */
    dr_buf target;  /* expanded target label, or a labelmap name */
    dr_buf result;  /* expanded replacement, or a case-mapped value */
    dr_label *snap; /* labelmap's copy of the set it walks */
    uint32_t snap_cap;
} scratch;

struct dr_relabel_rules {
    rule *v;
    size_t n;
    scratch *s;
};

/* ---- UTF-8 ---------------------------------------------------------------- */

/* Decodes one code point as Go does: an invalid or overlong sequence, a
 * surrogate or a value past U+10FFFF is one byte of U+FFFD. */
static uint32_t utf8_decode(const unsigned char *s, size_t n, size_t *size)
{
    unsigned char c = s[0];
    *size = 1;
    if (c < 0x80)
        return c;
    size_t need;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 2, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0xfffd;
    }
    if (n < need)
        return 0xfffd;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0xfffd;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0xfffd;
    *size = need;
    return cp;
}

static bool utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t size;
        uint32_t cp = utf8_decode((const unsigned char *)s + i, n - i, &size);
        /* U+FFFD itself is three bytes; one byte of it means invalid */
        if (cp == 0xfffd && size == 1)
            return false;
        i += size;
    }
    return true;
}

static size_t utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Prometheus 3 validates names as UTF-8: any non-empty valid UTF-8. */
static bool label_name_valid(const char *s, size_t n)
{
    return n > 0 && utf8_valid(s, n);
}

/* The Unicode character tables of the C library, independent of the
 * process locale. Created at parse time (on the config thread, before any
 * apply) and kept for the life of the process; (locale_t)0 when the
 * C.UTF-8 locale is not installed, and then only ASCII is mapped. */
static locale_t unicode_locale;
static bool unicode_locale_tried;

static void unicode_locale_init(void)
{
    if (unicode_locale_tried)
        return;
    unicode_locale_tried = true;
    unicode_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

static uint32_t map_case(uint32_t cp, bool upper)
{
    if (cp < 0x80)
        return upper ? (uint32_t)toupper((int)cp) : (uint32_t)tolower((int)cp);
    if (!unicode_locale)
        return cp;
    wint_t w =
        upper ? towupper_l((wint_t)cp, unicode_locale) : towlower_l((wint_t)cp, unicode_locale);
    return (uint32_t)w;
}

/* A letter, digit or '_': the characters of a $name in a template. */
static bool is_name_rune(uint32_t cp)
{
    if (cp < 0x80)
        return isalnum((int)cp) || cp == '_';
    return unicode_locale && cp != 0xfffd && iswalnum_l((wint_t)cp, unicode_locale);
}

/* ---- templates ($1, ${name}, $$) ------------------------------------------- */

/* The groups of one match: from the regex's match data, or the whole value
 * as group 0 and 1 for the default regex (which is not run at all). */
typedef struct {
    const dr_regex *re;
    const dr_regex_match_data *md;
    size_t len; /* of the subject */
} match;

static bool match_group(const match *m, long n, size_t *start, size_t *end)
{
    if (n < 0)
        return false;
    if (!m->md) {
        if (n > 1)
            return false;
        *start = 0;
        *end = m->len;
        return true;
    }
    return dr_regex_group(m->md, (uint32_t)n, start, end);
}

/* Reads the reference after a '$' as Go's regexp.Expand does: a name of
 * letters, digits and '_', in braces or not (the longest run, so "$1x" is
 * the group named "1x"). A name of digits only, without a leading zero, is
 * a group number. False when malformed; the '$' is then literal. */
static bool template_ref(const char *t, size_t n, size_t *used, const char **name, size_t *name_len,
                         long *num)
{
    size_t i = 0;
    bool brace = n > 0 && t[0] == '{';
    if (brace)
        i++;
    size_t start = i;
    while (i < n) {
        size_t size;
        uint32_t cp = utf8_decode((const unsigned char *)t + i, n - i, &size);
        if (!is_name_rune(cp))
            break;
        i += size;
    }
    if (i == start)
        return false;
    *name = t + start;
    *name_len = i - start;
    if (brace) {
        if (i >= n || t[i] != '}')
            return false;
        i++;
    }
    *used = i;
    long v = 0;
    for (size_t k = 0; k < *name_len; k++) {
        char c = (*name)[k];
        if (c < '0' || c > '9' || v >= 100000000) {
            v = -1;
            break;
        }
        v = v * 10 + (c - '0');
    }
    if (*name_len > 1 && (*name)[0] == '0')
        v = -1;
    *num = v;
    return true;
}

static int out_append(dr_buf *out, const char *s, size_t n)
{
    if (out->len + n > DR_LABELS_MAX_BYTES)
        return DR_EINVAL; /* could never be a label name or value */
    return dr_buf_append(out, s, n);
}

/* Expands template t against the match of subject into out (reset first). */
static int expand(dr_buf *out, const str *t, const char *subject, const match *m)
{
    dr_buf_reset(out);
    const char *p = t->s, *end = t->s + t->len;
    while (p < end) {
        const char *dollar = memchr(p, '$', (size_t)(end - p));
        if (!dollar)
            return out_append(out, p, (size_t)(end - p));
        int rc = out_append(out, p, (size_t)(dollar - p));
        if (rc)
            return rc;
        p = dollar + 1;
        if (p < end && *p == '$') {
            rc = out_append(out, "$", 1);
            p++;
            if (rc)
                return rc;
            continue;
        }
        const char *name;
        size_t used, name_len;
        long num;
        if (!template_ref(p, (size_t)(end - p), &used, &name, &name_len, &num)) {
            rc = out_append(out, "$", 1);
            if (rc)
                return rc;
            continue;
        }
        p += used;
        if (num < 0 && m->re && m->md) {
            /* group names are short ASCII words; anything longer is no group */
            char nm[64];
            if (name_len < sizeof nm) {
                memcpy(nm, name, name_len);
                nm[name_len] = '\0';
                num = dr_regex_group_index(m->re, nm);
            }
        }
        size_t s, e;
        if (num >= 0 && match_group(m, num, &s, &e)) {
            rc = out_append(out, subject + s, e - s);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* ---- parsing --------------------------------------------------------------- */

/* Constructs PCRE2 has and RE2 lacks, found by a scan that knows escapes,
 * character classes and \Q...\E. Returns what was found (and where), or
 * NULL. PCRE2 reports everything else that is malformed. */
static const char *non_re2(const char *p, size_t *at)
{
    size_t n = strlen(p);
    for (size_t i = 0; i < n;) {
        char c = p[i];
        *at = i;
        if (c == '\\') {
            if (i + 1 >= n)
                return NULL;
            char e = p[i + 1];
            if (e == 'Q') {
                const char *q = strstr(p + i + 2, "\\E");
                if (!q)
                    return NULL;
                i = (size_t)(q - p) + 2;
                continue;
            }
            if (e >= '1' && e <= '9')
                return "backreferences are not supported";
            if (strchr("gkKGZRXhHVNCco", e))
                return "this escape is not RE2 syntax";
            i += 2;
            continue;
        }
        if (c == '[') {
            i++;
            if (i < n && p[i] == '^')
                i++;
            if (i < n && p[i] == ']')
                i++;
            while (i < n && p[i] != ']') {
                if (p[i] == '\\')
                    i++;
                else if (p[i] == '[' && i + 1 < n && p[i + 1] == ':') {
                    const char *q = strstr(p + i + 2, ":]");
                    if (q)
                        i = (size_t)(q - p) + 1;
                }
                i++;
            }
            i++;
            continue;
        }
        if (c == '(' && i + 1 < n && p[i + 1] == '*')
            return "(*VERB) is not RE2 syntax";
        if (c == '(' && i + 1 < n && p[i + 1] == '?') {
            size_t q = i + 2;
            if (q < n && p[q] == ':') {
                i = q + 1;
                continue;
            }
            if (q + 1 < n && p[q] == 'P' && p[q + 1] == '<') {
                i = q + 2;
                continue;
            }
            if (q + 1 < n && p[q] == '<' && p[q + 1] != '=' && p[q + 1] != '!') {
                i = q + 1;
                continue;
            }
            while (q < n && strchr("imsU-", p[q]))
                q++;
            if (q > i + 2 && q < n && (p[q] == ':' || p[q] == ')')) {
                i = q + 1;
                continue;
            }
            return "only (?:...), (?P<name>...), (?<name>...) and the flags i, m, s, U are "
                   "RE2 syntax (no lookarounds, atomic groups, recursion, conditionals, "
                   "comments or other flags)";
        }
        if ((c == '*' || c == '+' || c == '?') && i + 1 < n && p[i + 1] == '+') {
            *at = i + 1;
            return "possessive quantifiers are not RE2 syntax";
        }
        i++;
    }
    return NULL;
}

static int compile_regex(rule *ru, const char *pattern, const dr_cfg_node *at, const char *path,
                         dr_cfg_errors *errs)
{
    size_t off;
    const char *why = non_re2(pattern, &off);
    if (why) {
        dr_cfg_error(errs, at, path, "invalid regex \"%.200s\" at offset %zu: %s", pattern, off,
                     why);
        return DR_EINVAL;
    }
    const unsigned flags = DR_REGEX_UTF | DR_REGEX_DOLLAR_ENDONLY;
    size_t len = strlen(pattern);
    char *anchored = malloc(len + 8);
    if (!anchored)
        return DR_ENOMEM;
    /* Prometheus 3 anchors as ^(?s:regex)$: the whole value, '.' matching
     * newlines too. */
    snprintf(anchored, len + 8, "^(?s:%s)$", pattern);
    dr_error err = {0};
    ru->re = dr_regex_compile(anchored, flags, &err);
    free(anchored);
    if (!ru->re) {
        /* The message of the pattern as written, with its own offsets. */
        dr_regex *alone = dr_regex_compile(pattern, flags, &err);
        if (alone) {
            dr_regex_free(alone);
            dr_error_set(&err, "invalid regex \"%.200s\"", pattern);
        }
        dr_cfg_error(errs, at, path, "%s", err.msg);
        return DR_EINVAL;
    }
    return 0;
}

/* "path.key" for the errors about one key of a rule. */
typedef struct {
    char s[512];
} keypath;

static const char *kp(keypath *k, const char *path, const char *key)
{
    snprintf(k->s, sizeof k->s, "%s.%s", path, key);
    return k->s;
}

/* A string option: the default when absent, "" for a YAML null. */
static int get_str(const dr_cfg_node *item, const char *key, const char *def, str *out,
                   const char *path, dr_cfg_errors *errs, const dr_cfg_node **node)
{
    const dr_cfg_node *v = dr_cfg_get(item, key);
    *node = v;
    const char *s = def;
    if (v && v->type == DR_CFG_NULL) {
        s = "";
    } else if (v && v->type != DR_CFG_SCALAR) {
        keypath k;
        dr_cfg_error(errs, v, kp(&k, path, key), "expected a string, got a %s",
                     v->type == DR_CFG_MAP ? "map" : "list");
        s = def;
    } else if (v) {
        s = v->str;
    }
    out->len = strlen(s);
    out->s = strdup(s);
    return out->s ? 0 : DR_ENOMEM;
}

static bool parse_u64(const char *s, uint64_t *v)
{
    if (!*s)
        return false;
    uint64_t x = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *v = x;
    return true;
}

/* Levenshtein distance, capped at 3 (only close names are suggested). */
static int distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    enum { MAX = 32 };
    if (la > MAX || lb > MAX)
        return 3;
    int prev[MAX + 1], cur[MAX + 1];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int d = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < d)
                d = prev[j] + 1;
            if (cur[j - 1] + 1 < d)
                d = cur[j - 1] + 1;
            cur[j] = d;
        }
        memcpy(prev, cur, sizeof prev);
    }
    return prev[lb] < 3 ? prev[lb] : 3;
}

static bool parse_action(const char *s, action *out)
{
    char low[32];
    size_t n = strlen(s);
    if (n >= sizeof low)
        return false;
    for (size_t i = 0; i <= n; i++)
        low[i] = (char)tolower((unsigned char)s[i]);
    for (int i = 0; action_names[i]; i++)
        if (strcmp(low, action_names[i]) == 0) {
            *out = (action)i;
            return true;
        }
    return false;
}

static void unknown_action(const char *s, const dr_cfg_node *at, const char *path,
                           dr_cfg_errors *errs)
{
    const char *best = NULL;
    int bd = 3;
    for (int i = 0; action_names[i]; i++) {
        int d = distance(s, action_names[i]);
        if (d < bd && (size_t)d < strlen(s)) {
            bd = d;
            best = action_names[i];
        }
    }
    if (best)
        dr_cfg_error(errs, at, path, "unknown relabel action \"%s\", did you mean \"%s\"?", s,
                     best);
    else
        dr_cfg_error(errs, at, path,
                     "unknown relabel action \"%s\" (known: replace, keep, drop, keepequal, "
                     "dropequal, hashmod, labelmap, labeldrop, labelkeep, lowercase, uppercase)",
                     s);
}

static int parse_sources(rule *ru, const dr_cfg_node *v, const char *path, dr_cfg_errors *errs)
{
    keypath k;
    if (v->type != DR_CFG_SEQ) {
        dr_cfg_error(errs, v, kp(&k, path, "source_labels"), "expected a list of label names");
        return 0;
    }
    if (v->n == 0)
        return 0;
    ru->sources = calloc(v->n, sizeof *ru->sources);
    if (!ru->sources)
        return DR_ENOMEM;
    for (size_t i = 0; i < v->n; i++) {
        const dr_cfg_node *it = v->items[i];
        const char *s = it->type == DR_CFG_SCALAR ? it->str : it->type == DR_CFG_NULL ? "" : NULL;
        if (!s || !label_name_valid(s, strlen(s))) {
            char sub[32];
            snprintf(sub, sizeof sub, "source_labels[%zu]", i);
            dr_cfg_error(errs, it, kp(&k, path, sub), "\"%s\" is not a valid label name",
                         s ? s : "");
            continue;
        }
        ru->sources[ru->nsources].len = strlen(s);
        if (!(ru->sources[ru->nsources].s = strdup(s)))
            return DR_ENOMEM;
        ru->nsources++;
    }
    return 0;
}

static bool str_is(const str *s, const char *lit)
{
    return s->len == strlen(lit) && memcmp(s->s, lit, s->len) == 0;
}

/* Prometheus' Validate, in its order: the first failure is reported. */
static void validate(const rule *ru, const dr_cfg_node *item, const dr_cfg_node *target_node,
                     const dr_cfg_node *repl_node, bool sources_given, bool regex_given,
                     const char *path, dr_cfg_errors *errs)
{
    action a = ru->act;
    const char *an = action_names[a];
    const dr_cfg_node *tat = target_node ? target_node : item;
    bool target_valid = label_name_valid(ru->target.s, ru->target.len);
    bool case_or_equal =
        a == ACT_LOWERCASE || a == ACT_UPPERCASE || a == ACT_KEEPEQUAL || a == ACT_DROPEQUAL;
    bool default_repl = str_is(&ru->replacement, DEFAULT_REPLACEMENT);
    bool default_sep = str_is(&ru->separator, DEFAULT_SEPARATOR);
    keypath k;

    if (a == ACT_HASHMOD && ru->modulus == 0) {
        const dr_cfg_node *mod = dr_cfg_get(item, "modulus");
        dr_cfg_error(errs, mod ? mod : item, mod ? kp(&k, path, "modulus") : path,
                     "relabel configuration for hashmod requires non-zero modulus");
        return;
    }
    if ((a == ACT_REPLACE || a == ACT_HASHMOD || case_or_equal) && ru->target.len == 0) {
        dr_cfg_error(errs, item, path,
                     "relabel configuration for %s action requires 'target_label' value", an);
        return;
    }
    /* With UTF-8 names, a target with $ references is valid as written
     * whenever it is valid UTF-8; the expansion is checked per series. */
    if ((a == ACT_REPLACE || a == ACT_HASHMOD || case_or_equal) && !target_valid) {
        dr_cfg_error(errs, tat, kp(&k, path, "target_label"),
                     "\"%s\" is invalid 'target_label' for %s action", ru->target.s, an);
        return;
    }
    if (case_or_equal && !default_repl) {
        dr_cfg_error(errs, repl_node ? repl_node : item, kp(&k, path, "replacement"),
                     "'replacement' can not be set for %s action", an);
        return;
    }
    if (a == ACT_LABELMAP && !label_name_valid(ru->replacement.s, ru->replacement.len)) {
        dr_cfg_error(errs, repl_node ? repl_node : item, kp(&k, path, "replacement"),
                     "\"%s\" is invalid 'replacement' for %s action", ru->replacement.s, an);
        return;
    }
    if ((a == ACT_KEEPEQUAL || a == ACT_DROPEQUAL) &&
        (regex_given || ru->modulus != 0 || !default_sep || !default_repl)) {
        dr_cfg_error(errs, item, path,
                     "%s action requires only 'source_labels' and `target_label`, and no other "
                     "fields",
                     an);
        return;
    }
    if ((a == ACT_LABELDROP || a == ACT_LABELKEEP) &&
        (sources_given || ru->target.len != 0 || ru->modulus != 0 || !default_sep ||
         !default_repl)) {
        dr_cfg_error(errs, item, path, "%s action requires only 'regex', and no other fields", an);
        return;
    }
}

static void rule_free(rule *ru)
{
    for (size_t i = 0; i < ru->nsources; i++)
        free(ru->sources[i].s);
    free(ru->sources);
    free(ru->separator.s);
    free(ru->target.s);
    free(ru->replacement.s);
    dr_regex_match_data_free(ru->md);
    dr_regex_free(ru->re);
}

static int parse_rule_keys(rule *ru, const dr_cfg_node *item, const char *path, dr_cfg_errors *errs)
{
    if (item->type == DR_CFG_NULL) {
        dr_cfg_error(errs, item, path, "empty or null relabeling rule");
        return 0;
    }
    /* Unknown keys (with a suggestion) and a non-map item. */
    dr_cfg_apply(NULL, item, NULL, path, rule_keys, errs);
    if (item->type != DR_CFG_MAP)
        return 0;
    keypath k;
    const dr_cfg_node *sep_node = NULL, *target_node = NULL, *repl_node = NULL, *action_node = NULL,
                      *regex_node = NULL;
    int rc = get_str(item, "separator", DEFAULT_SEPARATOR, &ru->separator, path, errs, &sep_node);
    if (!rc)
        rc = get_str(item, "target_label", "", &ru->target, path, errs, &target_node);
    if (!rc)
        rc = get_str(item, "replacement", DEFAULT_REPLACEMENT, &ru->replacement, path, errs,
                     &repl_node);
    str act = {0}, regex = {0};
    if (!rc)
        rc = get_str(item, "action", "replace", &act, path, errs, &action_node);
    if (!rc)
        rc = get_str(item, "regex", DEFAULT_REGEX, &regex, path, errs, &regex_node);
    const dr_cfg_node *src = dr_cfg_get(item, "source_labels");
    bool sources_given = src && src->type != DR_CFG_NULL;
    if (!rc && sources_given)
        rc = parse_sources(ru, src, path, errs);

    const dr_cfg_node *mod = dr_cfg_get(item, "modulus");
    if (!rc && mod && mod->type != DR_CFG_NULL &&
        (mod->type != DR_CFG_SCALAR || !parse_u64(mod->str, &ru->modulus))) {
        dr_cfg_error(errs, mod, kp(&k, path, "modulus"), "expected a non-negative integer");
    }

    ru->regex_default = regex_node == NULL;
    if (!rc) {
        if (compile_regex(ru, regex.s, regex_node ? regex_node : item, kp(&k, path, "regex"),
                          errs) == DR_ENOMEM)
            rc = DR_ENOMEM;
    }

    bool action_ok = false;
    if (!rc) {
        kp(&k, path, "action");
        if (act.len == 0)
            dr_cfg_error(errs, action_node ? action_node : item, k.s,
                         "relabel action cannot be empty");
        else if (!(action_ok = parse_action(act.s, &ru->act)))
            unknown_action(act.s, action_node, k.s, errs);
    }
    if (!rc && action_ok)
        validate(ru, item, target_node, repl_node, sources_given, regex_node != NULL, path, errs);

    if (!rc) {
        ru->target_has_var = memchr(ru->target.s, '$', ru->target.len) != NULL;
        ru->replacement_has_var = memchr(ru->replacement.s, '$', ru->replacement.len) != NULL;
        if (ru->re && (ru->act == ACT_REPLACE || ru->act == ACT_LABELMAP) &&
            !(ru->md = dr_regex_match_data_new(ru->re)))
            rc = DR_ENOMEM;
    }
    free(act.s);
    free(regex.s);
    return rc;
}

/* Parses list item `item` into ru. Adds the number of errors it reports to
 * *nerr; returns only DR_ENOMEM as an error of its own. */
static int parse_rule(rule *ru, const dr_cfg_node *item, const char *path, dr_cfg_errors *errs,
                      int *nerr)
{
    size_t before = errs->n + errs->dropped;
    int rc = parse_rule_keys(ru, item, path, errs);
    *nerr += (int)(errs->n + errs->dropped - before);
    return rc;
}

int dr_relabel_parse(const dr_cfg_node *list, const char *path, dr_relabel_rules **out,
                     dr_cfg_errors *errs)
{
    *out = NULL;
    if (!path)
        path = "";
    if (!errs) {
        /* the count of errors decides, so there must be somewhere to put them */
        dr_cfg_errors mine = {0};
        int rc = dr_relabel_parse(list, path, out, &mine);
        dr_cfg_errors_free(&mine);
        return rc;
    }
    if (!list || list->type == DR_CFG_NULL)
        return 0;
    if (list->type != DR_CFG_SEQ) {
        dr_cfg_error(errs, list, path, "expected a list of relabel configs, got a %s",
                     list->type == DR_CFG_MAP ? "map" : "string");
        return DR_EINVAL;
    }
    if (list->n == 0)
        return 0;
    unicode_locale_init();
    dr_relabel_rules *r = calloc(1, sizeof *r);
    if (!r || !(r->v = calloc(list->n, sizeof *r->v))) {
        free(r);
        dr_cfg_error(errs, list, path, "out of memory");
        return DR_ENOMEM;
    }
    int nerr = 0, rc = 0;
    for (size_t i = 0; i < list->n && !rc; i++) {
        char ipath[512];
        snprintf(ipath, sizeof ipath, "%s[%zu]", path, i);
        r->n++;
        rc = parse_rule(&r->v[i], list->items[i], ipath, errs, &nerr);
    }
    if (!rc && !nerr)
        rc = (r->s = calloc(1, sizeof *r->s)) ? 0 : DR_ENOMEM;
    if (rc == DR_ENOMEM)
        dr_cfg_error(errs, list, path, "out of memory");
    if (rc || nerr) {
        dr_relabel_free(r);
        return rc ? rc : DR_EINVAL;
    }
    *out = r;
    return 0;
}

void dr_relabel_free(dr_relabel_rules *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        rule_free(&r->v[i]);
    free(r->v);
    if (r->s) {
        dr_buf_free(&r->s->value);
        dr_buf_free(&r->s->target);
        dr_buf_free(&r->s->result);
        free(r->s->snap);
        free(r->s);
    }
    free(r);
}

size_t dr_relabel_count(const dr_relabel_rules *r)
{
    return r ? r->n : 0;
}

/* ---- applying -------------------------------------------------------------- */

/* The source values joined by the separator. One source label is used in
 * place (its bytes stay put while the rule runs). The joined length is
 * bounded by the number of sources times labels.h's bound on a value. */
static int join_sources(const dr_relabel_rules *r, const rule *ru, const dr_labels *ls,
                        const char **val, size_t *len)
{
    if (ru->nsources == 1) {
        *val = dr_labels_value(ls, ru->sources[0].s, ru->sources[0].len, len);
        return 0;
    }
    dr_buf *b = &r->s->value;
    dr_buf_reset(b);
    for (size_t i = 0; i < ru->nsources; i++) {
        size_t n;
        const char *v = dr_labels_value(ls, ru->sources[i].s, ru->sources[i].len, &n);
        if ((i > 0 && dr_buf_append(b, ru->separator.s, ru->separator.len)) ||
            dr_buf_append(b, v, n))
            return DR_ENOMEM;
    }
    *val = b->p ? b->p : "";
    *len = b->len;
    return 0;
}

/* Runs the rule's regex on s: 1, 0, or DR_ERR at a work limit. The default
 * (.*) matches every string (even one that is not UTF-8, as in Go) and is
 * not run; m then stands for the whole string. */
static int run_regex(const rule *ru, const char *s, size_t n, match *m)
{
    m->len = n;
    m->re = ru->re;
    m->md = NULL;
    if (ru->regex_default)
        return 1;
    m->md = ru->md;
    return dr_regex_match(ru->re, s, n, ru->md);
}

static int do_replace(const dr_relabel_rules *r, const rule *ru, dr_labels *ls, const char *val,
                      size_t len)
{
    if (len == 0 && ru->regex_default && !ru->target_has_var && !ru->replacement_has_var)
        return dr_labels_set(ls, ru->target.s, ru->target.len, ru->replacement.s,
                             ru->replacement.len);
    match m;
    int rc = run_regex(ru, val, len, &m);
    if (rc <= 0)
        return rc;
    const char *name = ru->target.s, *res = ru->replacement.s;
    size_t name_len = ru->target.len, res_len = ru->replacement.len;
    if (ru->target_has_var) {
        if ((rc = expand(&r->s->target, &ru->target, val, &m)))
            return rc;
        name = r->s->target.p;
        name_len = r->s->target.len;
        if (!label_name_valid(name, name_len))
            return 0; /* Prometheus leaves the set as it is */
    }
    if (ru->replacement_has_var) {
        if ((rc = expand(&r->s->result, &ru->replacement, val, &m)))
            return rc;
        res = r->s->result.p;
        res_len = r->s->result.len;
    }
    if (res_len == 0) {
        dr_labels_del(ls, name, name_len);
        return 0;
    }
    return dr_labels_set(ls, name, name_len, res, res_len);
}

static int do_case(const dr_relabel_rules *r, const rule *ru, dr_labels *ls, const char *val,
                   size_t len, bool upper)
{
    dr_buf *b = &r->s->result;
    dr_buf_reset(b);
    if (dr_buf_reserve(b, len))
        return DR_ENOMEM;
    const unsigned char *s = (const unsigned char *)val;
    for (size_t i = 0; i < len;) {
        size_t size;
        uint32_t cp = utf8_decode(s + i, len - i, &size);
        char enc[4];
        size_t n = utf8_encode(map_case(cp, upper), enc);
        if (out_append(b, enc, n))
            return DR_EINVAL;
        i += size;
    }
    return dr_labels_set(ls, ru->target.s, ru->target.len, b->p ? b->p : "", b->len);
}

static int do_hashmod(const rule *ru, dr_labels *ls, const char *val, size_t len)
{
    unsigned char sum[16];
    dr_md5(val, len, sum);
    /* Prometheus reads the last 8 bytes of the digest, big-endian. */
    uint64_t h = 0;
    for (int i = 8; i < 16; i++)
        h = (h << 8) | sum[i];
    char num[24];
    int n = snprintf(num, sizeof num, "%llu", (unsigned long long)(h % ru->modulus));
    return dr_labels_set(ls, ru->target.s, ru->target.len, num, (size_t)n);
}

/* labelmap walks a copy of the set as it was (Prometheus ranges over a
 * snapshot), in name order; the copy's bytes stay valid because a dr_labels
 * never frees the bytes of a label it replaces until it is reset. */
static int do_labelmap(const dr_relabel_rules *r, const rule *ru, dr_labels *ls)
{
    scratch *sc = r->s;
    dr_labels_canon(ls); /* names are unique on input; a duplicate changes nothing here */
    if (ls->n > sc->snap_cap) {
        dr_label *v = realloc(sc->snap, ls->n * sizeof *v);
        if (!v)
            return DR_ENOMEM;
        sc->snap = v;
        sc->snap_cap = ls->n;
    }
    uint32_t n = ls->n;
    if (n)
        memcpy(sc->snap, ls->v, n * sizeof *sc->snap);
    for (uint32_t i = 0; i < n; i++) {
        const dr_label *l = &sc->snap[i];
        match m;
        int rc = run_regex(ru, l->name, l->name_len, &m);
        if (rc < 0)
            return rc;
        if (rc == 0)
            continue;
        if ((rc = expand(&sc->target, &ru->replacement, l->name, &m)))
            return rc;
        if (sc->target.len == 0)
            continue; /* no label can have an empty name */
        if ((rc = dr_labels_set(ls, sc->target.p, sc->target.len, l->value, l->value_len)))
            return rc;
    }
    return 0;
}

static int do_labelfilter(const rule *ru, dr_labels *ls, bool keep_matching)
{
    for (uint32_t i = 0; i < ls->n;) {
        int rc =
            ru->regex_default ? 1 : dr_regex_match(ru->re, ls->v[i].name, ls->v[i].name_len, NULL);
        if (rc < 0)
            return rc;
        if ((rc == 1) != keep_matching)
            dr_labels_del_at(ls, i);
        else
            i++;
    }
    return 0;
}

static bool equal_bytes(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && memcmp(a, b, an) == 0;
}

/* One rule: 1 keep, 0 drop, or an error. */
static int apply_rule(const dr_relabel_rules *r, const rule *ru, dr_labels *ls)
{
    const char *val;
    size_t len;
    int rc = join_sources(r, ru, ls, &val, &len);
    if (rc)
        return rc;
    match m;
    size_t tn;
    const char *tv;
    switch (ru->act) {
    case ACT_DROP:
        rc = run_regex(ru, val, len, &m);
        return rc < 0 ? rc : !rc;
    case ACT_KEEP:
        return run_regex(ru, val, len, &m);
    case ACT_DROPEQUAL:
        tv = dr_labels_value(ls, ru->target.s, ru->target.len, &tn);
        return !equal_bytes(tv, tn, val, len);
    case ACT_KEEPEQUAL:
        tv = dr_labels_value(ls, ru->target.s, ru->target.len, &tn);
        return equal_bytes(tv, tn, val, len);
    case ACT_REPLACE:
        rc = do_replace(r, ru, ls, val, len);
        break;
    case ACT_LOWERCASE:
    case ACT_UPPERCASE:
        rc = do_case(r, ru, ls, val, len, ru->act == ACT_UPPERCASE);
        break;
    case ACT_HASHMOD:
        rc = do_hashmod(ru, ls, val, len);
        break;
    case ACT_LABELMAP:
        rc = do_labelmap(r, ru, ls);
        break;
    case ACT_LABELDROP:
        rc = do_labelfilter(ru, ls, false);
        break;
    case ACT_LABELKEEP:
        rc = do_labelfilter(ru, ls, true);
        break;
    }
    return rc < 0 ? rc : 1;
}

int dr_relabel_apply(const dr_relabel_rules *r, dr_labels *ls)
{
    if (!r)
        return 1;
    for (size_t i = 0; i < r->n; i++) {
        int rc = apply_rule(r, &r->v[i], ls);
        if (rc <= 0)
            return rc;
    }
    return 1;
}
