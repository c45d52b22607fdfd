/*
 * Relabeling: the cases of Prometheus' model/relabel tests (inputs and
 * expected label sets as Prometheus states them, hashmod numbers included),
 * the defaults and template rules of its Config, and configuration errors
 * with their positions.
 */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "drover/plugin.h"
#include "labels.h"
#include "md5.h"
#include "relabel.h"
#include "test.h"

/* ---- helpers ------------------------------------------------------------------ */

/* Parses `yaml` (the list under the key "r") into rules; NULL with *first
 * set to the first error message when it fails (first may be NULL). The
 * text is loaded as literal text (no ${VAR} from the environment), so that
 * rules read exactly as they do in a Prometheus configuration. */
static dr_relabel_rules *parse(const char *yaml, char *first, size_t cap, int *rc_out)
{
    dr_cfg_errors e = {0};
    dr_cfg_doc *doc = dr_cfg_load_untrusted("t.yaml", yaml, &e);
    dr_relabel_rules *r = NULL;
    int rc = DR_EINVAL;
    if (doc && e.n == 0)
        rc = dr_relabel_parse(dr_cfg_get(dr_cfg_root(doc), "r"), "r", &r, &e);
    if (first)
        snprintf(first, cap, "%s", e.n ? e.msg[0] : "");
    if (rc_out)
        *rc_out = rc;
    CHECK((rc == 0) == (e.n == 0));
    dr_cfg_errors_free(&e);
    dr_cfg_doc_free(doc);
    return r;
}

/* Applies the rules of `yaml` to the label set `in` (name, value, ...,
 * NULL) and writes the canonical result as Prometheus prints it. Returns
 * what dr_relabel_apply returned. */
static int run(const char *yaml, const char *const *in, char *out, size_t cap)
{
    char err[512];
    dr_relabel_rules *r = parse(yaml, err, sizeof err, NULL);
    CHECK_STR(err, "");
    dr_labels ls;
    dr_labels_init(&ls);
    for (size_t i = 0; in[i]; i += 2)
        CHECK_INT(dr_labels_add(&ls, in[i], strlen(in[i]), in[i + 1], strlen(in[i + 1])), 0);
    int rc = dr_relabel_apply(r, &ls);
    out[0] = '\0';
    if (rc == 1) {
        CHECK_INT(dr_labels_canon(&ls), 0);
        dr_labels_format(&ls, out, cap);
    }
    dr_labels_free(&ls);
    dr_relabel_free(r);
    return rc;
}

/* Expects the rules to keep the set and give `want`. */
#define KEEPS(yaml, want, ...)                                                                     \
    do {                                                                                           \
        const char *in_[] = {__VA_ARGS__, NULL};                                                   \
        char out_[1024];                                                                           \
        CHECK_INT(run(yaml, in_, out_, sizeof out_), 1);                                           \
        CHECK_STR(out_, want);                                                                     \
    } while (0)

#define DROPS(yaml, ...)                                                                           \
    do {                                                                                           \
        const char *in_[] = {__VA_ARGS__, NULL};                                                   \
        char out_[1024];                                                                           \
        CHECK_INT(run(yaml, in_, out_, sizeof out_), 0);                                           \
    } while (0)

/* The first error of rules that must not parse. */
static char parse_err[1024];
static const char *bad(const char *yaml)
{
    int rc = 0;
    dr_relabel_rules *r = parse(yaml, parse_err, sizeof parse_err, &rc);
    CHECK(r == NULL);
    CHECK(rc < 0);
    dr_relabel_free(r);
    return parse_err;
}

#define CHECK_HAS(hay, needle)                                                                     \
    do {                                                                                           \
        const char *h_ = (hay);                                                                    \
        if (!CHECK(strstr(h_, needle) != NULL))                                                    \
            fprintf(stderr, "    in: %s\n    missing: %s\n", h_, needle);                          \
    } while (0)

/* ---- replace ------------------------------------------------------------------ */

void test_relabel_replace_groups(void)
{
    KEEPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: f(.*)\n"
          "    target_label: d\n"
          "    separator: ';'\n"
          "    replacement: ch${1}-ch${1}\n"
          "    action: replace\n",
          "{a=\"foo\",b=\"bar\",c=\"baz\",d=\"choo-choo\"}", "a", "foo", "b", "bar", "c", "baz");
    /* $1 without braces, and a single group of a longer match */
    KEEPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: .*(b).*\n"
          "    target_label: d\n"
          "    replacement: $1\n",
          "{a=\"abc\",d=\"b\"}", "a", "abc");
}

void test_relabel_replace_multiple_sources(void)
{
    KEEPS("r:\n"
          "  - source_labels: [a, b]\n"
          "    regex: f(.*);(.*)r\n"
          "    target_label: a\n"
          "    separator: ';'\n"
          "    replacement: b${1}${2}m\n"
          "  - source_labels: [c, a]\n"
          "    regex: (b).*b(.*)ba(.*)\n"
          "    target_label: d\n"
          "    separator: ';'\n"
          "    replacement: $1$2$2$3\n",
          "{a=\"boobam\",b=\"bar\",c=\"baz\",d=\"boooom\"}", "a", "foo", "b", "bar", "c", "baz");
    /* another separator, and a missing source label as an empty string */
    KEEPS("r:\n"
          "  - source_labels: [a, missing, b]\n"
          "    separator: /\n"
          "    target_label: j\n",
          "{a=\"x\",b=\"y\",j=\"x//y\"}", "a", "x", "b", "y");
    KEEPS("r:\n"
          "  - source_labels: [missing, a]\n"
          "    regex: ;(.*)\n"
          "    target_label: j\n"
          "    replacement: got-$1\n",
          "{a=\"x\",j=\"got-x\"}", "a", "x");
}

void test_relabel_replace_no_match_unchanged(void)
{
    KEEPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: f\n"
          "    target_label: b\n"
          "    replacement: bar\n",
          "{a=\"boo\"}", "a", "boo");
}

void test_relabel_replace_empty_result_deletes(void)
{
    /* target $1 expands to "f"; the replacement $2 names no group: empty */
    KEEPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: (f).*\n"
          "    target_label: $1\n"
          "    replacement: $2\n",
          "{a=\"foo\"}", "a", "foo", "f", "baz");
    /* an explicitly empty replacement deletes the target */
    KEEPS("r:\n"
          "  - target_label: b\n"
          "    replacement: ''\n",
          "{a=\"1\"}", "a", "1", "b", "2");
}

void test_relabel_replace_templated_target(void)
{
    KEEPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: some-([^-]+)-([^,]+)\n"
          "    replacement: ${2}\n"
          "    target_label: ${1}\n",
          "{a=\"some-name-value\",name=\"value\"}", "a", "some-name-value");
    /* a replacement naming a group that does not exist: empty, so the
     * (absent) target is deleted and nothing changes */
    KEEPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: some-([^-]+)-([^,]+)\n"
          "    replacement: ${3}\n"
          "    target_label: ${1}\n",
          "{a=\"some-name-value\"}", "a", "some-name-value");
    /* a target that expands to nothing is no label name: left alone */
    KEEPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: some-([^-]+)-([^,]+)\n"
          "    replacement: ${1}\n"
          "    target_label: ${3}\n"
          "  - source_labels: [a]\n"
          "    regex: some-([^-]+)(-[^,]+)\n"
          "    replacement: ${1}\n"
          "    target_label: ${3}\n",
          "{a=\"some-name-0\"}", "a", "some-name-0");
}

void test_relabel_replace_real_life(void)
{
    KEEPS("r:\n"
          "  - source_labels: [__meta_sd_tags]\n"
          "    regex: '(?:.+,|^)path:(/[^,]+).*'\n"
          "    replacement: ${1}\n"
          "    target_label: __metrics_path__\n"
          "  - source_labels: [__meta_sd_tags]\n"
          "    regex: '(?:.+,|^)job:([^,]+).*'\n"
          "    replacement: ${1}\n"
          "    target_label: job\n"
          "  - source_labels: [__meta_sd_tags]\n"
          "    regex: '(?:.+,|^)label:([^=]+)=([^,]+).*'\n"
          "    replacement: ${2}\n"
          "    target_label: ${1}\n",
          "{__meta_sd_tags=\"path:/secret,job:some-job,label:foo=bar\",__metrics_path__=\"/"
          "secret\",foo=\"bar\",job=\"some-job\"}",
          "__meta_sd_tags", "path:/secret,job:some-job,label:foo=bar");
}

void test_relabel_replace_newlines(void)
{
    /* Prometheus 3 compiles ^(?s:regex)$: '.' crosses newlines */
    KEEPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: line1.*line2\n"
          "    target_label: d\n"
          "    replacement: match${1}\n",
          "{a=\"line1\\nline2\",b=\"bar\",c=\"baz\",d=\"match\"}", "a", "line1\nline2", "b", "bar",
          "c", "baz");
    /* and $ is the very end, not the place before a final newline */
    KEEPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: abc\n"
          "    target_label: d\n"
          "    replacement: yes\n",
          "{a=\"abc\\n\"}", "a", "abc\n");
}

void test_relabel_replace_utf8_names(void)
{
    KEEPS("r:\n"
          "  - source_labels: [utf-8.label]\n"
          "    regex: line1.*line2\n"
          "    target_label: d\n"
          "    replacement: match${1}\n",
          "{b=\"bar\",d=\"match\",utf-8.label=\"line1\\nline2\"}", "utf-8.label", "line1\nline2",
          "b", "bar");
    KEEPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: line1.*line2\n"
          "    target_label: utf-8.label\n"
          "    replacement: match${1}\n",
          "{a=\"line1\\nline2\",utf-8.label=\"match\"}", "a", "line1\nline2");
    KEEPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: line1.*line2\n"
          "    target_label: utf-8.label${1}\n"
          "    replacement: match${1}\n",
          "{a=\"line1\\nline2\",utf-8.label=\"match\"}", "a", "line1\nline2");
}

void test_relabel_replace_named_groups(void)
{
    KEEPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: (line1).*(?<second>line2)\n"
          "    target_label: label1_${1}\n"
          "    replacement: val_${second}\n"
          "  - source_labels: [a]\n"
          "    regex: (line1).*(?<second>line2)\n"
          "    target_label: label2_$1\n"
          "    replacement: val_$second\n",
          "{a=\"line1\\nline2\",label1_line1=\"val_line2\",label2_line1=\"val_line2\"}", "a",
          "line1\nline2");
    /* (?P<name>) too */
    KEEPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: (?P<host>[^:]+):(?P<port>\\d+)\n"
          "    target_label: port\n"
          "    replacement: ${port}\n",
          "{a=\"h:80\",port=\"80\"}", "a", "h:80");
}

void test_relabel_template_rules(void)
{
    /* $$ is a dollar; "$1x" is the group named "1x" (none: empty), where
     * "${1}x" is group 1 then x; a '$' before nothing a name can hold stays */
    KEEPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: (.)(.)\n"
          "    target_label: t1\n"
          "    replacement: $$1-$1x-${1}x-$-${2}$\n",
          "{a=\"pq\",t1=\"$1--px-$-q$\"}", "a", "pq");
    /* ${ without its brace is literal; $01 is a name, not group 1 */
    KEEPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: (.)(.)\n"
          "    target_label: t2\n"
          "    replacement: ${1-$01-$0\n",
          "{a=\"pq\",t2=\"${1--pq\"}", "a", "pq");
}

void test_relabel_replace_defaults(void)
{
    /* regex (.*), replacement $1, separator ;, action replace */
    KEEPS("r:\n"
          "  - source_labels: [a, b]\n"
          "    target_label: c\n",
          "{a=\"1\",b=\"2\",c=\"1;2\"}", "a", "1", "b", "2");
    /* no sources: a static label */
    KEEPS("r:\n"
          "  - target_label: cluster\n"
          "    replacement: dev-us-central-0\n",
          "{a=\"1\",cluster=\"dev-us-central-0\"}", "a", "1");
    /* an empty source with the default regex and $1: deletes the target */
    KEEPS("r:\n"
          "  - source_labels: [missing]\n"
          "    target_label: a\n",
          "{b=\"2\"}", "a", "1", "b", "2");
    /* `regex:` with nothing is the empty pattern (YAML null, as in
     * Prometheus): it matches the empty value only */
    KEEPS("r:\n"
          "  - regex:\n"
          "    replacement: static\n"
          "    target_label: abc\n"
          "  - source_labels: [a]\n"
          "    regex:\n"
          "    replacement: never\n"
          "    target_label: xyz\n",
          "{a=\"1\",abc=\"static\"}", "a", "1");
    /* the action's case does not matter */
    KEEPS("r:\n"
          "  - target_label: x\n"
          "    replacement: y\n"
          "    action: RePlace\n",
          "{x=\"y\"}", "x", "z");
}

/* ---- keep / drop ---------------------------------------------------------------- */

void test_relabel_keep_drop(void)
{
    DROPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: .*o.*\n"
          "    action: drop\n"
          "  - source_labels: [a]\n"
          "    regex: f(.*)\n"
          "    target_label: d\n"
          "    replacement: ch$1-ch$1\n",
          "a", "foo");
    DROPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: .*o.*\n"
          "    action: drop\n",
          "a", "foo", "b", "bar");
    KEEPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: no-match\n"
          "    action: drop\n",
          "{a=\"foo\"}", "a", "foo");
    /* anchored: f|o matches neither all of "foo" */
    KEEPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: f|o\n"
          "    action: drop\n",
          "{a=\"foo\"}", "a", "foo");
    DROPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: no-match\n"
          "    action: keep\n",
          "a", "foo");
    KEEPS("r:\n"
          "  - source_labels: [a]\n"
          "    regex: f.*\n"
          "    action: keep\n",
          "{a=\"foo\"}", "a", "foo");
    /* a drop on an empty regex drops series without the label */
    DROPS("r:\n"
          "  - source_labels: [name]\n"
          "    regex: ''\n"
          "    action: drop\n",
          "a", "1");
}

void test_relabel_keepequal_dropequal(void)
{
    KEEPS("r:\n"
          "  - source_labels: [__tmp_port]\n"
          "    action: keepequal\n"
          "    target_label: __port1\n",
          "{__port1=\"1234\",__port2=\"5678\",__tmp_port=\"1234\"}", "__tmp_port", "1234",
          "__port1", "1234", "__port2", "5678");
    DROPS("r:\n"
          "  - source_labels: [__tmp_port]\n"
          "    action: dropequal\n"
          "    target_label: __port1\n",
          "__tmp_port", "1234", "__port1", "1234", "__port2", "5678");
    KEEPS("r:\n"
          "  - source_labels: [__tmp_port]\n"
          "    action: dropequal\n"
          "    target_label: __port2\n",
          "{__port1=\"1234\",__port2=\"5678\",__tmp_port=\"1234\"}", "__tmp_port", "1234",
          "__port1", "1234", "__port2", "5678");
    DROPS("r:\n"
          "  - source_labels: [__tmp_port]\n"
          "    action: keepequal\n"
          "    target_label: __port2\n",
          "__tmp_port", "1234", "__port1", "1234", "__port2", "5678");
}

/* ---- hashmod, case ---------------------------------------------------------------- */

void test_relabel_hashmod(void)
{
    KEEPS("r:\n"
          "  - source_labels: [c]\n"
          "    target_label: d\n"
          "    separator: ';'\n"
          "    action: hashmod\n"
          "    modulus: 1000\n",
          "{a=\"foo\",b=\"bar\",c=\"baz\",d=\"976\"}", "a", "foo", "b", "bar", "c", "baz");
    KEEPS("r:\n"
          "  - source_labels: [a]\n"
          "    target_label: b\n"
          "    action: hashmod\n"
          "    modulus: 1000\n",
          "{a=\"foo\\nbar\",b=\"734\"}", "a", "foo\nbar");
}

void test_relabel_md5_rfc1321(void)
{
    /* the test suite of RFC 1321, appendix A.5 */
    static const char *const v[][2] = {
        {"", "d41d8cd98f00b204e9800998ecf8427e"},
        {"a", "0cc175b9c0f1b6a831c399e269772661"},
        {"abc", "900150983cd24fb0d6963f7d28e17f72"},
        {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
        {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
         "d174ab98d277d9f5a5611c2c9f419d9f"},
        {"1234567890123456789012345678901234567890123456789012345678901234567890123456789"
         "0",
         "57edf4a22be3c955ac49da2e2107b67a"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        unsigned char sum[16];
        char hex[33];
        dr_md5(v[i][0], strlen(v[i][0]), sum);
        for (int k = 0; k < 16; k++)
            snprintf(hex + 2 * k, 3, "%02x", sum[k]);
        CHECK_STR(hex, v[i][1]);
        /* the same fed in uneven pieces (across block boundaries) */
        dr_md5_ctx c;
        dr_md5_init(&c);
        size_t n = strlen(v[i][0]), step = 1;
        for (size_t off = 0; off < n; off += step, step = step * 2 + 1)
            dr_md5_update(&c, v[i][0] + off, off + step <= n ? step : n - off);
        dr_md5_final(&c, sum);
        for (int k = 0; k < 16; k++)
            snprintf(hex + 2 * k, 3, "%02x", sum[k]);
        CHECK_STR(hex, v[i][1]);
    }
}

void test_relabel_lowercase_uppercase(void)
{
    KEEPS("r:\n"
          "  - source_labels: [foo]\n"
          "    action: uppercase\n"
          "    target_label: foo_uppercase\n"
          "  - source_labels: [foo]\n"
          "    action: lowercase\n"
          "    target_label: foo_lowercase\n",
          "{foo=\"bAr123Foo\",foo_lowercase=\"bar123foo\",foo_uppercase=\"BAR123FOO\"}", "foo",
          "bAr123Foo");
    locale_t l = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (l) {
        /* Unicode letters, when the C library has their tables */
        freelocale(l);
        KEEPS("r:\n"
              "  - source_labels: [v]\n"
              "    action: lowercase\n"
              "    target_label: low\n"
              "  - source_labels: [v]\n"
              "    action: uppercase\n"
              "    target_label: up\n",
              "{low=\"\xc3\xa4\xc3\xb6\xce\xb4x\",up=\"\xc3\x84\xc3\x96\xce\x94X\",v=\"\xc3\x84"
              "\xc3\xb6\xce\xb4x\"}",
              "v", "\xc3\x84\xc3\xb6\xce\xb4x");
    }
}

/* ---- label name actions ------------------------------------------------------------ */

void test_relabel_labelmap(void)
{
    KEEPS("r:\n"
          "  - regex: (b.*)\n"
          "    replacement: bar_${1}\n"
          "    action: labelmap\n",
          "{a=\"foo\",b1=\"bar\",b2=\"baz\",bar_b1=\"bar\",bar_b2=\"baz\"}", "a", "foo", "b1",
          "bar", "b2", "baz");
    KEEPS("r:\n"
          "  - regex: __meta_(my.*)\n"
          "    replacement: ${1}\n"
          "    action: labelmap\n",
          "{__meta_my_bar=\"aaa\",__meta_my_baz=\"bbb\",__meta_other=\"ccc\",a=\"foo\",my_bar="
          "\"aaa\",my_baz=\"bbb\"}",
          "a", "foo", "__meta_my_bar", "aaa", "__meta_my_baz", "bbb", "__meta_other", "ccc");
    /* the default replacement $1 */
    KEEPS("r:\n"
          "  - regex: __meta_kubernetes_pod_label_(.+)\n"
          "    action: labelmap\n",
          "{__meta_kubernetes_pod_label_app=\"web\",app=\"web\"}",
          "__meta_kubernetes_pod_label_app", "web");
}

void test_relabel_labeldrop_labelkeep(void)
{
    KEEPS("r:\n"
          "  - regex: (b.*)\n"
          "    action: labelkeep\n",
          "{b1=\"bar\",b2=\"baz\"}", "a", "foo", "b1", "bar", "b2", "baz");
    KEEPS("r:\n"
          "  - regex: (b.*)\n"
          "    action: labeldrop\n",
          "{a=\"foo\"}", "a", "foo", "b1", "bar", "b2", "baz");
    /* prometheus/prometheus#12283: a label dropped, then set again, kept */
    KEEPS("r:\n"
          "  - regex: ^__meta_kubernetes_pod_container_port_name$\n"
          "    action: labeldrop\n"
          "  - source_labels: [__meta_kubernetes_pod_annotation_XXX_metrics_port]\n"
          "    regex: (.+)\n"
          "    action: replace\n"
          "    replacement: metrics\n"
          "    target_label: __meta_kubernetes_pod_container_port_name\n"
          "  - source_labels: [__meta_kubernetes_pod_container_port_name]\n"
          "    regex: ^metrics$\n"
          "    action: keep\n",
          "{__meta_kubernetes_pod_annotation_XXX_metrics_port=\"9091\",__meta_kubernetes_pod_"
          "container_port_name=\"metrics\"}",
          "__meta_kubernetes_pod_container_port_name", "foo",
          "__meta_kubernetes_pod_annotation_XXX_metrics_port", "9091");
}

/* ---- the rest of the API ------------------------------------------------------------ */

void test_relabel_empty_and_null(void)
{
    dr_labels ls;
    dr_labels_init(&ls);
    dr_labels_sets(&ls, "a", "1");
    CHECK_INT(dr_relabel_apply(NULL, &ls), 1);
    CHECK_INT(ls.n, 1);
    dr_labels_free(&ls);
    dr_relabel_free(NULL);
    char err[256];
    int rc = -100;
    CHECK(parse("r: []\n", err, sizeof err, &rc) == NULL);
    CHECK_INT(rc, 0);
    CHECK(parse("x: 1\n", err, sizeof err, &rc) == NULL); /* no list at all */
    CHECK_INT(rc, 0);
    dr_relabel_rules *r =
        parse("r:\n  - target_label: a\n  - action: keep\n", err, sizeof err, &rc);
    CHECK_INT(rc, 0);
    CHECK_INT(dr_relabel_count(r), 2);
    dr_relabel_free(r);
}

void test_relabel_steady_state(void)
{
    /* The same rules over many sets, reset between them: the scratch space
     * is reused and the results stay right. */
    char err[256];
    dr_relabel_rules *r = parse("r:\n"
                                "  - source_labels: [__name__, le]\n"
                                "    regex: (.*)_bucket;(.*)\n"
                                "    target_label: bucket_of\n"
                                "    replacement: ${1}@${2}\n"
                                "  - source_labels: [pod]\n"
                                "    target_label: shard\n"
                                "    modulus: 4\n"
                                "    action: hashmod\n"
                                "  - regex: tmp_.*\n"
                                "    action: labeldrop\n",
                                err, sizeof err, NULL);
    CHECK_STR(err, "");
    dr_labels ls;
    dr_labels_init(&ls);
    for (int i = 0; i < 200; i++) {
        dr_labels_reset(&ls);
        char le[16];
        snprintf(le, sizeof le, "%d", i);
        dr_labels_sets(&ls, "__name__", "http_bucket");
        dr_labels_sets(&ls, "le", le);
        dr_labels_sets(&ls, "tmp_x", "1");
        CHECK_INT(dr_relabel_apply(r, &ls), 1);
        char want[64];
        snprintf(want, sizeof want, "http@%d", i);
        size_t n;
        const char *v = dr_labels_value(&ls, "bucket_of", 9, &n);
        CHECK_MEM(v, n, want, strlen(want));
        /* md5("") ends in ...98ecf8427e: 0x...427e % 4 */
        v = dr_labels_value(&ls, "shard", 5, &n);
        CHECK_MEM(v, n, "2", 1);
        CHECK(dr_labels_gets(&ls, "tmp_x") == NULL);
    }
    dr_labels_free(&ls);
    dr_relabel_free(r);
}

void test_relabel_regex_limit_is_an_error(void)
{
    char err[256];
    dr_relabel_rules *r = parse("r:\n"
                                "  - source_labels: [a]\n"
                                "    regex: (a|aa)*(a|aa)*(a|aa)*[bc]\n"
                                "    action: keep\n",
                                err, sizeof err, NULL);
    CHECK_STR(err, "");
    dr_labels ls;
    dr_labels_init(&ls);
    char v[80];
    memset(v, 'a', sizeof v - 1);
    v[sizeof v - 1] = '\0';
    dr_labels_sets(&ls, "a", v);
    CHECK_INT(dr_relabel_apply(r, &ls), DR_ERR);
    dr_labels_free(&ls);
    dr_relabel_free(r);
}

/* ---- configuration errors ---------------------------------------------------------- */

void test_relabel_error_missing_target(void)
{
    const char *e = bad("r:\n  - source_labels: [a]\n    action: replace\n");
    CHECK_HAS(e, "t.yaml:2:5: r[0]: ");
    CHECK_HAS(e, "relabel configuration for replace action requires 'target_label' value");
    e = bad("r:\n  - source_labels: [a]\n    action: lowercase\n");
    CHECK_HAS(e, "requires 'target_label' value");
    e = bad("r:\n  - target_label: x\n  - source_labels: [a]\n    action: hashmod\n"
            "    target_label: h\n");
    CHECK_HAS(e, "r[1]: relabel configuration for hashmod requires non-zero modulus");
}

void test_relabel_error_bad_action(void)
{
    const char *e = bad("r:\n  - target_label: x\n    action: replase\n");
    CHECK_HAS(e, "t.yaml:3:13: r[0].action: ");
    CHECK_HAS(e, "unknown relabel action \"replase\", did you mean \"replace\"?");
    e = bad("r:\n  - target_label: x\n    action: frobnicate\n");
    CHECK_HAS(e, "unknown relabel action \"frobnicate\"");
    e = bad("r:\n  - target_label: x\n    action: ''\n");
    CHECK_HAS(e, "relabel action cannot be empty");
}

void test_relabel_error_bad_regex(void)
{
    const char *e = bad("r:\n  - source_labels: [a]\n    regex: 'a(b'\n    action: keep\n");
    CHECK_HAS(e, "t.yaml:3:12: r[0].regex: ");
    CHECK_HAS(e, "invalid regex \"a(b\" at offset 3");
    /* constructs RE2 does not have */
    e = bad("r:\n  - source_labels: [a]\n    regex: 'foo(?=bar)'\n    action: keep\n");
    CHECK_HAS(e, "r[0].regex: invalid regex \"foo(?=bar)\" at offset 3");
    e = bad("r:\n  - source_labels: [a]\n    regex: '(a)\\1'\n    action: keep\n");
    CHECK_HAS(e, "backreferences");
    e = bad("r:\n  - source_labels: [a]\n    regex: 'a++'\n    action: keep\n");
    CHECK_HAS(e, "possessive");
    /* but escapes, classes and flags RE2 has are fine */
    char err[256];
    dr_relabel_rules *r =
        parse("r:\n  - source_labels: [a]\n    regex: '(?i)[(?=]\\(\\d+\\)\\Q(?=\\E'\n"
              "    action: keep\n",
              err, sizeof err, NULL);
    CHECK_STR(err, "");
    dr_relabel_free(r);
}

void test_relabel_error_forbidden_fields(void)
{
    const char *e = bad("r:\n  - source_labels: [a]\n    regex: x\n    action: labeldrop\n");
    CHECK_HAS(e, "t.yaml:2:5: r[0]: labeldrop action requires only 'regex', and no other fields");
    e = bad("r:\n  - regex: x\n    target_label: y\n    action: labelkeep\n");
    CHECK_HAS(e, "labelkeep action requires only 'regex'");
    e = bad("r:\n  - regex: x\n    separator: ','\n    action: labeldrop\n");
    CHECK_HAS(e, "labeldrop action requires only 'regex'");
    e = bad("r:\n  - source_labels: [a]\n    target_label: b\n    regex: (.*)\n"
            "    action: keepequal\n");
    CHECK_HAS(e, "keepequal action requires only 'source_labels' and `target_label`");
    e = bad("r:\n  - source_labels: [a]\n    target_label: b\n    replacement: x\n"
            "    action: uppercase\n");
    CHECK_HAS(e, "r[0].replacement: 'replacement' can not be set for uppercase action");
    e = bad("r:\n  - regex: (.*)\n    replacement: ''\n    action: labelmap\n");
    CHECK_HAS(e, "\"\" is invalid 'replacement' for labelmap action");
}

void test_relabel_error_unknown_key(void)
{
    const char *e = bad("r:\n  - sourcelabels: [a]\n    target_label: b\n");
    CHECK_HAS(e, "t.yaml:2:5: r[0].sourcelabels: unknown key, did you mean \"source_labels\"?");
    e = bad("r:\n  - target_label: b\n    regexp: x\n");
    CHECK_HAS(e, "r[0].regexp: unknown key, did you mean \"regex\"?");
}

void test_relabel_error_types(void)
{
    const char *e = bad("r:\n  - source_labels: a\n    target_label: b\n");
    CHECK_HAS(e, "r[0].source_labels: expected a list of label names");
    e = bad("r:\n  - target_label: b\n    modulus: -1\n    action: hashmod\n");
    CHECK_HAS(e, "r[0].modulus: expected a non-negative integer");
    e = bad("r:\n  - target_label: [b]\n");
    CHECK_HAS(e, "r[0].target_label: expected a string, got a list");
    e = bad("r:\n  - 5\n");
    CHECK_HAS(e, "r[0]: expected a map");
    e = bad("r:\n  target_label: b\n");
    CHECK_HAS(e, "r: expected a list of relabel configs");
    e = bad("r:\n  - target_label: b\n  -\n");
    CHECK_HAS(e, "t.yaml:3:4: r[1]: empty or null relabeling rule");
    e = bad("r:\n  - source_labels: ['']\n    target_label: b\n");
    CHECK_HAS(e, "r[0].source_labels[0]: \"\" is not a valid label name");
}

void test_relabel_errors_all_reported(void)
{
    /* every rule is checked, not just the first bad one */
    dr_cfg_errors e = {0};
    dr_cfg_doc *doc = dr_cfg_load_untrusted("t.yaml",
                                            "r:\n"
                                            "  - action: keep\n"
                                            "    regex: '('\n"
                                            "  - action: nope\n",
                                            &e);
    dr_relabel_rules *r = NULL;
    CHECK_INT(dr_relabel_parse(dr_cfg_get(dr_cfg_root(doc), "r"), "r", &r, &e), DR_EINVAL);
    CHECK(r == NULL);
    CHECK_INT(e.n, 2);
    dr_cfg_errors_free(&e);
    dr_cfg_doc_free(doc);
}

void test_relabel_in_agent_config(void)
{
    /* In the agent's own configuration ${NAME} names an environment
     * variable, but ${2} (digits: no variable is named so) stays as it is,
     * so a pasted Prometheus replacement works; $${2} is the same. */
    dr_cfg_errors e = {0};
    dr_cfg_doc *doc = dr_cfg_load_string("t.yaml",
                                         "r:\n"
                                         "  - source_labels: [a]\n"
                                         "    regex: (.)(.*)\n"
                                         "    target_label: b\n"
                                         "    replacement: $${2}-$1-${2}\n",
                                         &e);
    CHECK_INT(e.n, 0);
    dr_relabel_rules *r = NULL;
    CHECK_INT(dr_relabel_parse(dr_cfg_get(dr_cfg_root(doc), "r"), "r", &r, &e), 0);
    dr_labels ls;
    dr_labels_init(&ls);
    dr_labels_sets(&ls, "a", "xyz");
    CHECK_INT(dr_relabel_apply(r, &ls), 1);
    size_t n;
    const char *v = dr_labels_value(&ls, "b", 1, &n);
    CHECK_MEM(v, n, "yz-x-yz", 7);
    dr_labels_free(&ls);
    dr_relabel_free(r);
    dr_cfg_errors_free(&e);
    dr_cfg_doc_free(doc);
}
