/*
 * Tests of src/config.c: YAML to tree with positions, errors and their exact
 * positions, ${VAR} substitution, directory merging, the value parsers and
 * option tables (dr_cfg_apply), and robustness against garbage input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "test.h"

/* ---- helpers ------------------------------------------------------------------ */

static dr_cfg_doc *load(const char *yaml, dr_cfg_errors *e)
{
    return dr_cfg_load_string("t.yaml", yaml, e);
}

/* Loads yaml expecting it to fail, and returns the first message ("" when
 * it loaded). `count` receives the number of messages when not NULL. */
static char first_msg[2048];
static const char *load_error(const char *yaml, size_t *count)
{
    dr_cfg_errors e = {0};
    dr_cfg_doc *d = load(yaml, &e);
    snprintf(first_msg, sizeof first_msg, "%s", e.n ? e.msg[0] : "");
    CHECK(d != NULL || e.n > 0);
    if (count)
        *count = e.n;
    dr_cfg_doc_free(d);
    dr_cfg_errors_free(&e);
    return first_msg;
}

static const dr_cfg_node *at_path(const dr_cfg_node *n, const char *k1, const char *k2)
{
    n = dr_cfg_get(n, k1);
    return k2 ? dr_cfg_get(n, k2) : n;
}

static void write_file(const char *dir, const char *name, const char *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    CHECK(fwrite(data, 1, len, f) == len);
    fclose(f);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    write_file(dir, name, text, strlen(text));
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* An option table exercising every type, nested names and bounds. */
typedef struct tconf {
    char *name;
    int64_t count;
    bool enabled;
    uint64_t max_size;
    int64_t timeout_ms;
    dr_strlist paths;
    dr_strlist match;
    int level;
    char *listen;
    char *cert;
    uint64_t buf;
    int64_t flush_ms;
} tconf;

static const char *const levels[] = {"debug", "info", "warn", "error", NULL};

static const dr_option topts[] = {
    {"name", DR_OPT_STRING, offsetof(tconf, name), NULL, DR_OPT_REQUIRED, NULL, 0, 0, "name"},
    {"count", DR_OPT_INT, offsetof(tconf, count), "5", 0, NULL, 1, 100, "count"},
    {"enabled", DR_OPT_BOOL, offsetof(tconf, enabled), "true", 0, NULL, 0, 0, "on"},
    {"max_size", DR_OPT_SIZE, offsetof(tconf, max_size), "1MiB", 0, NULL, 0, 0, "size"},
    {"timeout", DR_OPT_DURATION, offsetof(tconf, timeout_ms), "5s", 0, NULL, 0, 0, "t"},
    {"paths", DR_OPT_STRLIST, offsetof(tconf, paths), NULL, 0, NULL, 0, 0, "paths"},
    {"match", DR_OPT_STRLIST, offsetof(tconf, match), "*", 0, NULL, 0, 0, "match"},
    {"level", DR_OPT_ENUM, offsetof(tconf, level), "info", 0, levels, 0, 0, "level"},
    {"http.listen", DR_OPT_STRING, offsetof(tconf, listen), "127.0.0.1:2020", 0, NULL, 0, 0, "l"},
    {"http.tls.cert", DR_OPT_STRING, offsetof(tconf, cert), NULL, 0, NULL, 0, 0, "cert"},
    {"buf", DR_OPT_SIZE, offsetof(tconf, buf), "4KiB", 0, NULL, 1024, 1 << 20, "buf"},
    {"flush", DR_OPT_DURATION, offsetof(tconf, flush_ms), "1s", 0, NULL, 10, 60000, "flush"},
    {0},
};

/* Loads yaml, applies topts to its root with `path` and `extra`, frees the
 * document (conf keeps copies). Returns dr_cfg_apply's count, or -1 when the
 * YAML did not load. */
static int apply_yaml(const char *yaml, const char *path, const char *const *extra, tconf *c,
                      dr_cfg_errors *e)
{
    memset(c, 0, sizeof *c);
    dr_cfg_doc *d = load(yaml, e);
    CHECK(d != NULL);
    if (!d)
        return -1;
    int n = dr_cfg_apply(topts, dr_cfg_root(d), c, path, extra, e);
    dr_cfg_doc_free(d);
    return n;
}

/* The first error applying yaml (with a valid `name` unless the yaml has
 * one), everything freed. */
static const char *apply_error(const char *yaml)
{
    tconf c;
    dr_cfg_errors e = {0};
    int n = apply_yaml(yaml, "", NULL, &c, &e);
    CHECK(n > 0);
    CHECK(e.n > 0 && e.n <= (size_t)n); /* identical messages are kept once */
    snprintf(first_msg, sizeof first_msg, "%s", e.n ? e.msg[0] : "");
    dr_cfg_free_conf(topts, &c);
    dr_cfg_errors_free(&e);
    return first_msg;
}

/* ---- the tree ------------------------------------------------------------------- */

static const char minimal_yaml[] =
    "agent:\n"
    "  data_dir: /var/lib/drover\n"
    "  http: { listen: 127.0.0.1:2020 }\n"
    "inputs:\n"
    "  - { name: pods, type: tail, paths: [/var/log/containers/*.log], read_from: head }\n"
    "outputs:\n"
    "  - { name: out, type: file, match: pods, path: /tmp/out.ndjson }\n";

typedef struct agent_conf {
    char *data_dir;
    char *listen;
    char *node_name;
} agent_conf;

static const dr_option agent_opts[] = {
    {"data_dir", DR_OPT_STRING, offsetof(agent_conf, data_dir), "/x", 0, NULL, 0, 0, "d"},
    {"http.listen", DR_OPT_STRING, offsetof(agent_conf, listen), "0:0", 0, NULL, 0, 0, "l"},
    {"node_name", DR_OPT_STRING, offsetof(agent_conf, node_name), NULL, 0, NULL, 0, 0, "n"},
    {0},
};

typedef struct input_conf {
    char *name, *type, *read_from;
    dr_strlist paths;
} input_conf;

static const char *const read_froms[] = {"head", "tail", NULL};
static const dr_option input_opts[] = {
    {"name", DR_OPT_STRING, offsetof(input_conf, name), NULL, 0, NULL, 0, 0, "n"},
    {"type", DR_OPT_STRING, offsetof(input_conf, type), NULL, DR_OPT_REQUIRED, NULL, 0, 0, "t"},
    {"paths", DR_OPT_STRLIST, offsetof(input_conf, paths), NULL, DR_OPT_REQUIRED, NULL, 0, 0, "p"},
    {"read_from", DR_OPT_STRING, offsetof(input_conf, read_from), "tail", 0, read_froms, 0, 0, "r"},
    {0},
};

void test_config_minimal(void)
{
    dr_cfg_errors e = {0};
    dr_cfg_doc *d = load(minimal_yaml, &e);
    CHECK(d != NULL);
    CHECK_INT(e.n, 0);
    if (!d)
        return;
    const dr_cfg_node *root = dr_cfg_root(d);
    CHECK_INT(root->type, DR_CFG_MAP);
    CHECK_INT(root->n, 3);
    CHECK_STR(root->file, "t.yaml");

    const dr_cfg_node *dd = at_path(root, "agent", "data_dir");
    CHECK_STR(dd->str, "/var/lib/drover");
    CHECK_INT(dd->line, 2);
    CHECK_INT(dd->col, 13);
    const dr_cfg_node *listen = dr_cfg_get(at_path(root, "agent", "http"), "listen");
    CHECK_STR(listen->str, "127.0.0.1:2020");
    CHECK_INT(listen->line, 3);
    CHECK_INT(listen->col, 19);

    const dr_cfg_node *inputs = dr_cfg_get(root, "inputs");
    CHECK_INT(inputs->type, DR_CFG_SEQ);
    CHECK_INT(inputs->n, 1);
    CHECK_INT(inputs->line, 5);
    CHECK_INT(inputs->col, 3);
    const dr_cfg_node *in0 = inputs->items[0];
    CHECK_INT(in0->line, 5);
    CHECK_INT(in0->col, 5);
    CHECK_STR(dr_cfg_get(in0, "name")->str, "pods");
    CHECK_INT(dr_cfg_get(in0, "name")->col, 13);
    CHECK_STR(dr_cfg_get(in0, "read_from")->str, "head");
    const dr_cfg_node *paths = dr_cfg_get(in0, "paths");
    CHECK_INT(paths->type, DR_CFG_SEQ);
    CHECK_INT(paths->n, 1);
    CHECK_STR(paths->items[0]->str, "/var/log/containers/*.log");
    const dr_cfg_node *out0 = dr_cfg_get(root, "outputs")->items[0];
    CHECK_STR(dr_cfg_get(out0, "path")->str, "/tmp/out.ndjson");
    CHECK_STR(dr_cfg_get(out0, "match")->str, "pods");
    CHECK(dr_cfg_get(root, "filters") == NULL);
    CHECK(dr_cfg_get(in0, "nope") == NULL);
    CHECK(dr_cfg_get(paths, "x") == NULL); /* not a map */

    /* and through option tables, as the agent uses them */
    agent_conf ac = {0};
    CHECK_INT(dr_cfg_apply(agent_opts, dr_cfg_get(root, "agent"), &ac, "agent", NULL, &e), 0);
    CHECK_STR(ac.data_dir, "/var/lib/drover");
    CHECK_STR(ac.listen, "127.0.0.1:2020");
    CHECK(ac.node_name == NULL);
    input_conf ic = {0};
    CHECK_INT(dr_cfg_apply(input_opts, in0, &ic, "inputs[0]", NULL, &e), 0);
    CHECK_STR(ic.name, "pods");
    CHECK_STR(ic.type, "tail");
    CHECK_STR(ic.read_from, "head");
    CHECK_INT(ic.paths.n, 1);
    CHECK_STR(ic.paths.v[0], "/var/log/containers/*.log");
    CHECK_INT(e.n, 0);
    dr_cfg_free_conf(agent_opts, &ac);
    dr_cfg_free_conf(input_opts, &ic);
    CHECK(ac.data_dir == NULL && ic.paths.v == NULL && ic.paths.n == 0);
    dr_cfg_doc_free(d);
    dr_cfg_errors_free(&e);
}

void test_config_scalars_and_positions(void)
{
    dr_cfg_errors e = {0};
    dr_cfg_doc *d = load("# comment\n"
                         "a: \"true\"\n"
                         "b: true\n"
                         "c:\n"
                         "d: ~\n"
                         "e: ''\n"
                         "f: !!str null\n"
                         "g:\n"
                         "  - x\n"
                         "  -   'y z'\n"
                         "  -\n"
                         "h: |\n"
                         "  line1\n"
                         "  line2\n"
                         "i: null\n"
                         "j: 007\n",
                         &e);
    CHECK(d != NULL);
    if (!d)
        return;
    const dr_cfg_node *r = dr_cfg_root(d);
    CHECK_INT(r->line, 2);
    CHECK_INT(r->col, 1);
    const dr_cfg_node *a = dr_cfg_get(r, "a"), *b = dr_cfg_get(r, "b");
    CHECK_INT(a->type, DR_CFG_SCALAR);
    CHECK(a->quoted);
    CHECK_STR(a->str, "true");
    CHECK_INT(a->line, 2);
    CHECK_INT(a->col, 4);
    CHECK(!b->quoted);
    CHECK_STR(b->str, "true");
    CHECK_INT(r->pairs[1].key->line, 3);
    CHECK_INT(r->pairs[1].key->col, 1);
    CHECK_INT(r->pairs[1].key->type, DR_CFG_SCALAR);
    CHECK_INT(dr_cfg_get(r, "c")->type, DR_CFG_NULL);
    CHECK_INT(dr_cfg_get(r, "d")->type, DR_CFG_NULL);
    CHECK_INT(dr_cfg_get(r, "i")->type, DR_CFG_NULL);
    CHECK_INT(dr_cfg_get(r, "e")->type, DR_CFG_SCALAR);
    CHECK_STR(dr_cfg_get(r, "e")->str, "");
    CHECK_INT(dr_cfg_get(r, "f")->type, DR_CFG_SCALAR); /* tagged: a string */
    CHECK_STR(dr_cfg_get(r, "f")->str, "null");
    const dr_cfg_node *g = dr_cfg_get(r, "g");
    CHECK_INT(g->n, 3);
    CHECK_INT(g->line, 9);
    CHECK_INT(g->col, 3);
    CHECK_STR(g->items[1]->str, "y z");
    CHECK_INT(g->items[1]->line, 10);
    CHECK_INT(g->items[1]->col, 7);
    CHECK_INT(g->items[2]->type, DR_CFG_NULL);
    CHECK_STR(dr_cfg_get(r, "h")->str, "line1\nline2\n");
    CHECK_STR(dr_cfg_get(r, "j")->str, "007");
    dr_cfg_doc_free(d);
    dr_cfg_errors_free(&e);
}

void test_config_empty_documents(void)
{
    static const char *const empties[] = {"", "# only a comment\n", "---\n", "~\n", "---\n...\n"};
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        dr_cfg_errors e = {0};
        dr_cfg_doc *d = load(empties[i], &e);
        CHECK(d != NULL);
        CHECK_INT(e.n, 0);
        const dr_cfg_node *r = dr_cfg_root(d);
        CHECK(r && r->type == DR_CFG_MAP && r->n == 0);
        CHECK_STR(r ? r->file : NULL, "t.yaml");
        dr_cfg_doc_free(d);
    }
    CHECK(dr_cfg_root(NULL) == NULL);
    dr_cfg_doc_free(NULL);
    CHECK_STR(load_error("- a\n- b\n", NULL),
              "t.yaml:1:1: the top level must be a map of keys (such as `inputs:`), not a list");
    CHECK_STR(load_error("\n  hello\n", NULL),
              "t.yaml:2:3: the top level must be a map of keys (such as `inputs:`), not a string");
    CHECK_STR(load_error("a: 1\n---\nb: 2\n", NULL),
              "t.yaml:2:1: only one YAML document per file is supported (use a directory of "
              "files to split a configuration)");
}

void test_config_syntax_errors(void)
{
    CHECK_STR(load_error("a: 1\n  b: 2\n", NULL),
              "t.yaml:2:4: mapping values are not allowed in this context");
    CHECK_STR(load_error("a: [1, 2\nb: 3\n", NULL),
              "t.yaml:2:2: did not find expected ',' or ']' (while parsing a flow sequence at "
              "line 1, column 4)");
    CHECK_STR(load_error("x: 1\ny: \"open\n", NULL),
              "t.yaml:3:1: found unexpected end of stream (while scanning a quoted scalar at line "
              "2, column 4)");
    CHECK_STR(load_error("a:\n\t- b\n", NULL),
              "t.yaml:2:1: found character that cannot start any token (while scanning for the "
              "next token at line 2, column 1)");
    CHECK_STR(load_error("a: b\n- c\n", NULL),
              "t.yaml:2:1: did not find expected key (while parsing a block mapping at line 1, "
              "column 1)");
    /* invalid UTF-8 is a reader error: the position comes from the offset */
    CHECK_STR(load_error("a: 1\nb: x\xff\n", NULL),
              "t.yaml:2:5: invalid leading UTF-8 octet (0xFF)");
    CHECK_STR(load_error("a: \x01\n", NULL),
              "t.yaml:1:4: control characters are not allowed (0x1)");
}

void test_config_duplicate_keys(void)
{
    size_t n;
    CHECK_STR(load_error("a:\n  b: 1\n  c: 2\n  b: 3\n", &n),
              "t.yaml:4:3: a.b: duplicate key (first defined at line 2, column 3)");
    CHECK_INT(n, 1);
    CHECK_STR(load_error("x: 1\ny: 2\nx: 3\nx: 4\n", &n),
              "t.yaml:3:1: x: duplicate key (first defined at line 1, column 1)");
    CHECK_INT(n, 2);
    CHECK_STR(load_error("inputs:\n  - {name: a, name: b}\n", NULL),
              "t.yaml:2:15: inputs[0].name: duplicate key (first defined at line 2, column 6)");
    /* the same key in different maps is fine, and so is a quoted twin of
     * a different key */
    CHECK_STR(load_error("a: {k: 1}\nb: {k: 2}\n\"c\": 1\nc2: 2\n", NULL), "");
}

void test_config_keys_and_aliases(void)
{
    CHECK_STR(load_error("? [a]\n: 1\n", NULL), "t.yaml:1:3: a key must be a string, not a list");
    CHECK_STR(load_error("a: {{x: 1}: 2}\n", NULL),
              "t.yaml:1:5: a: a key must be a string, not a map");
    size_t n;
    CHECK_STR(load_error("base: &b {x: 1}\nother: *b\nlist: [*b, *b]\n", &n),
              "t.yaml:2:8: other: aliases (*b) are not supported; repeat the value instead");
    CHECK_INT(n, 3);
    CHECK_STR(load_error("a: &x {k: 1}\n*x : 2\n", NULL),
              "t.yaml:2:1: aliases (*x) are not supported; repeat the value instead");
    CHECK_STR(load_error("a: {b: 1}\nc:\n  <<: *a\n", NULL),
              "t.yaml:3:7: c.<<: aliases (*a) are not supported; repeat the value instead");
    /* an anchor that is never used is harmless */
    dr_cfg_errors e = {0};
    dr_cfg_doc *d = load("a: &x 1\n", &e);
    CHECK(d != NULL);
    CHECK_STR(d ? dr_cfg_get(dr_cfg_root(d), "a")->str : NULL, "1");
    dr_cfg_doc_free(d);
    /* keys are taken as they are: no substitution, no null */
    d = load("${HOME}: 1\n~: 2\n\"\": 3\n", &e);
    CHECK(d != NULL);
    CHECK(dr_cfg_get(dr_cfg_root(d), "${HOME}") != NULL);
    CHECK(dr_cfg_get(dr_cfg_root(d), "~") != NULL);
    CHECK(dr_cfg_get(dr_cfg_root(d), "") != NULL);
    CHECK_INT(e.n, 0);
    dr_cfg_doc_free(d);
}

void test_config_depth_limit(void)
{
    char yaml[300];
    /* the root map is level 1, so 63 brackets make 64 levels */
    for (int depth = 63; depth <= 64; depth++) {
        int o = snprintf(yaml, sizeof yaml, "a: ");
        for (int i = 0; i < depth; i++)
            yaml[o++] = '[';
        for (int i = 0; i < depth; i++)
            yaml[o++] = ']';
        yaml[o] = '\0';
        if (depth == 63)
            CHECK_STR(load_error(yaml, NULL), "");
        else
            CHECK_STR(load_error(yaml, NULL), "t.yaml:1:67: nested deeper than 64 levels");
    }
    /* very deep nesting is refused early, without recursion */
    size_t big = 200000;
    char *deep = malloc(big + 1);
    memset(deep, '[', big);
    deep[big] = '\0';
    CHECK_STR(load_error(deep, NULL), "t.yaml:1:65: nested deeper than 64 levels");
    for (size_t i = 0; i < big; i += 2)
        memcpy(deep + i, "- ", 2);
    CHECK(strstr(load_error(deep, NULL), "nested deeper than 64 levels") != NULL);
    free(deep);
}

/* ---- ${VAR} substitution ---------------------------------------------------------- */

void test_config_env_substitution(void)
{
    setenv("DRT_SET", "value", 1);
    setenv("DRT_EMPTY", "", 1);
    setenv("DRT_TRICKY", "${DRT_SET} $$ ${DRT_UNSET} $", 1);
    unsetenv("DRT_UNSET");
    dr_cfg_errors e = {0};
    dr_cfg_doc *d = load("a: ${DRT_SET}\n"
                         "b: pre-${DRT_SET}-${DRT_SET}post\n"
                         "c: ${DRT_UNSET:-fallback}\n"
                         "d: ${DRT_EMPTY:-fallback}\n"
                         "e: ${DRT_EMPTY}\n"
                         "f: $${DRT_SET}\n"
                         "g: cost $5, $$ and $\n"
                         "h: ${DRT_TRICKY}\n"
                         "i: \"${DRT_SET}\"\n"
                         "j: ${DRT_SET:-x}\n"
                         "k: ${DRT_UNSET:-}\n"
                         "l: ${DRT_UNSET:-a$b ${c}\n"
                         "m: [\"${DRT_SET}\", '${DRT_SET}']\n"
                         "n: {x: \"${DRT_SET}\"}\n"
                         "o: $$$$\n",
                         &e);
    CHECK(d != NULL);
    CHECK_INT(e.n, 0);
    if (!d)
        return;
    const dr_cfg_node *r = dr_cfg_root(d);
    CHECK_STR(dr_cfg_get(r, "a")->str, "value");
    CHECK_STR(dr_cfg_get(r, "b")->str, "pre-value-valuepost");
    CHECK_STR(dr_cfg_get(r, "c")->str, "fallback");
    CHECK_STR(dr_cfg_get(r, "d")->str, "fallback");
    CHECK_STR(dr_cfg_get(r, "e")->str, "");
    CHECK_INT(dr_cfg_get(r, "e")->type, DR_CFG_SCALAR); /* empty, not null */
    CHECK_STR(dr_cfg_get(r, "f")->str, "${DRT_SET}");
    CHECK_STR(dr_cfg_get(r, "g")->str, "cost $5, $ and $");
    CHECK_STR(dr_cfg_get(r, "h")->str, "${DRT_SET} $$ ${DRT_UNSET} $"); /* not re-expanded */
    CHECK_STR(dr_cfg_get(r, "i")->str, "value");
    CHECK_STR(dr_cfg_get(r, "j")->str, "value");
    CHECK_STR(dr_cfg_get(r, "k")->str, "");
    CHECK_STR(dr_cfg_get(r, "l")->str, "a$b ${c"); /* the default is literal */
    CHECK_STR(dr_cfg_get(r, "m")->items[0]->str, "value");
    CHECK_STR(dr_cfg_get(r, "m")->items[1]->str, "value");
    CHECK_STR(at_path(r, "n", "x")->str, "value");
    CHECK_STR(dr_cfg_get(r, "o")->str, "$$");
    dr_cfg_doc_free(d);
    unsetenv("DRT_SET");
    unsetenv("DRT_EMPTY");
    unsetenv("DRT_TRICKY");
}

void test_config_env_errors(void)
{
    unsetenv("DRT_UNSET");
    unsetenv("DRT_UNSET2");
    size_t n;
    CHECK_STR(load_error("x:\n  y: [a, \"${DRT_UNSET}\"]\n", &n),
              "t.yaml:2:10: x.y[1]: environment variable DRT_UNSET is not set and has no default");
    CHECK_INT(n, 1);
    /* every problem is reported, with its own position */
    dr_cfg_errors e = {0};
    /* errors in values leave the document whole, so the rest can be checked */
    dr_cfg_doc *d = load("a: ${DRT_UNSET}\nb: ok\nc: \"${DRT_UNSET2} ${DRT_UNSET}\"\n", &e);
    CHECK(d != NULL);
    CHECK_STR(d ? dr_cfg_get(dr_cfg_root(d), "b")->str : NULL, "ok");
    dr_cfg_doc_free(d);
    CHECK_INT(e.n, 3);
    CHECK_STR(e.msg[0],
              "t.yaml:1:4: a: environment variable DRT_UNSET is not set and has no default");
    CHECK_STR(e.msg[1],
              "t.yaml:3:4: c: environment variable DRT_UNSET2 is not set and has no default");
    CHECK_STR(e.msg[2],
              "t.yaml:3:4: c: environment variable DRT_UNSET is not set and has no default");
    dr_cfg_errors_free(&e);
    CHECK_STR(load_error("a: ${1X}\n", NULL),
              "t.yaml:1:4: a: invalid variable reference \"${1X}\" (use ${NAME} or "
              "${NAME:-default}, and $$ for a literal $)");
    CHECK_STR(load_error("a: ${}\n", NULL),
              "t.yaml:1:4: a: invalid variable reference \"${}\" (use ${NAME} or "
              "${NAME:-default}, and $$ for a literal $)");
    CHECK_STR(load_error("a: ${X-y}\n", NULL),
              "t.yaml:1:4: a: invalid variable reference \"${X-y}\" (use ${NAME} or "
              "${NAME:-default}, and $$ for a literal $)");
    CHECK_STR(load_error("a: \"${DRT_SET\"\n", NULL),
              "t.yaml:1:4: a: unterminated \"${\" (write $$ for a literal $)");
    /* a set-but-empty variable without a default is just empty */
    setenv("DRT_EMPTY", "", 1);
    CHECK_STR(load_error("a: ${DRT_EMPTY}\n", NULL), "");
    unsetenv("DRT_EMPTY");
}

/* ---- value parsers ---------------------------------------------------------------- */

void test_config_parse_size(void)
{
    static const struct {
        const char *s;
        uint64_t want;
    } good[] = {
        {"0", 0},
        {"512", 512},
        {"512B", 512},
        {"1b", 1},
        {"1KB", 1000},
        {"1kb", 1000},
        {"1KiB", 1024},
        {"1kib", 1024},
        {"1K", 1024},
        {"1k", 1024},
        {"16KiB", 16384},
        {"1MB", 1000000},
        {"1MiB", 1048576},
        {"1M", 1048576},
        {"1mib", 1048576},
        {"1GB", 1000000000},
        {"2GiB", 2147483648ull},
        {"1G", 1073741824},
        {"1TiB", 1099511627776ull},
        {"1.5KiB", 1536},
        {"1.5MB", 1500000},
        {"0.5K", 512},
        {"1.0B", 1},
        {"16 MiB", 16777216},
        {"18446744073709551615", UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint64_t v = 42;
        if (!CHECK_INT(dr_parse_size(good[i].s, &v), 0))
            fprintf(stderr, "    for \"%s\"\n", good[i].s);
        if (!CHECK(v == good[i].want))
            fprintf(stderr, "    \"%s\" gave %llu\n", good[i].s, (unsigned long long)v);
    }
    static const char *const bad[] = {
        "",
        "abc",
        "-1",
        "+1",
        " 1",
        "1.5",
        "1.5B",
        "1XB",
        "KiB",
        "1 KiB x",
        "1KiBs",
        "18446744073709551616",
        "17179869184GiB",
        "16777216TiB",
        ".5K",
        "1.K",
        "1e3",
        "1_000",
        "15EiB",
        "0x10",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 42;
        if (!CHECK_INT(dr_parse_size(bad[i], &v), DR_EINVAL))
            fprintf(stderr, "    for \"%s\"\n", bad[i]);
        CHECK(v == 42);
    }
    uint64_t v;
    CHECK_INT(dr_parse_size(NULL, &v), DR_EINVAL);
}

void test_config_parse_duration(void)
{
    static const struct {
        const char *s;
        int64_t want;
    } good[] = {
        {"0", 0},          {"0s", 0},
        {"0ms", 0},        {"250ms", 250},
        {"5s", 5000},      {"2m", 120000},
        {"1h", 3600000},   {"1h30m", 5400000},
        {"1m30s", 90000},  {"1h2m3s4ms", 3723004},
        {"1.5s", 1500},    {"0.5m", 30000},
        {"1.5h", 5400000}, {"1.0009s", 1000},
        {"2.5ms", 2},      {"9223372036854775807ms", INT64_MAX},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int64_t v = 42;
        if (!CHECK_INT(dr_parse_duration(good[i].s, &v), 0))
            fprintf(stderr, "    for \"%s\"\n", good[i].s);
        if (!CHECK(v == good[i].want))
            fprintf(stderr, "    \"%s\" gave %lld\n", good[i].s, (long long)v);
    }
    static const char *const bad[] = {
        "",
        "5",
        "s",
        "-1s",
        "+1s",
        "1d",
        "1 s",
        "1h30",
        "5S",
        "1.s",
        ".5s",
        "1H",
        "ms",
        "9223372036854775808ms",
        "9223372036854775807ms1ms",
        "99999999999999h",
        "99999999999999999999999s",
        "00",
        "1sm",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 42;
        if (!CHECK_INT(dr_parse_duration(bad[i], &v), DR_EINVAL))
            fprintf(stderr, "    for \"%s\"\n", bad[i]);
        CHECK(v == 42);
    }
    int64_t v;
    CHECK_INT(dr_parse_duration(NULL, &v), DR_EINVAL);
}

void test_config_parse_bool(void)
{
    static const char *const yes[] = {"true", "yes", "on", "TRUE", "Yes", "On"};
    static const char *const no[] = {"false", "no", "off", "False", "NO", "OFF"};
    for (size_t i = 0; i < 6; i++) {
        bool v = false;
        CHECK_INT(dr_parse_bool(yes[i], &v), 0);
        CHECK(v);
        v = true;
        CHECK_INT(dr_parse_bool(no[i], &v), 0);
        CHECK(!v);
    }
    static const char *const bad[] = {"", "1", "0", "maybe", "truex", "y", " true"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bool v = true;
        CHECK_INT(dr_parse_bool(bad[i], &v), DR_EINVAL);
        CHECK(v);
    }
    bool v;
    CHECK_INT(dr_parse_bool(NULL, &v), DR_EINVAL);
}

/* ---- option tables ----------------------------------------------------------------- */

void test_config_apply_values(void)
{
    tconf c;
    dr_cfg_errors e = {0};
    int n = apply_yaml("name: web\n"
                       "count: \"7\"\n"
                       "enabled: off\n"
                       "max_size: 16KiB\n"
                       "timeout: 1m30s\n"
                       "paths: [/a, \"/b\"]\n"
                       "match: one\n"
                       "level: error\n"
                       "http:\n"
                       "  listen: 0.0.0.0:80\n"
                       "  tls: { cert: /c.pem }\n"
                       "buf: 1MiB\n"
                       "flush: 1m\n",
                       "", NULL, &c, &e);
    CHECK_INT(n, 0);
    CHECK_INT(e.n, 0);
    CHECK_STR(c.name, "web");
    CHECK_INT(c.count, 7);
    CHECK(!c.enabled);
    CHECK(c.max_size == 16384);
    CHECK_INT(c.timeout_ms, 90000);
    CHECK_INT(c.paths.n, 2);
    CHECK_STR(c.paths.v[0], "/a");
    CHECK_STR(c.paths.v[1], "/b");
    CHECK(c.paths.v[2] == NULL);
    CHECK_INT(c.match.n, 1);
    CHECK_STR(c.match.v[0], "one");
    CHECK_INT(c.level, 3);
    CHECK_STR(c.listen, "0.0.0.0:80");
    CHECK_STR(c.cert, "/c.pem");
    CHECK(c.buf == 1048576);
    CHECK_INT(c.flush_ms, 60000);
    dr_cfg_free_conf(topts, &c);
    CHECK(c.name == NULL && c.paths.v == NULL && c.match.n == 0 && c.listen == NULL);

    /* strings keep what YAML would read as other types */
    n = apply_yaml("name: true\nhttp: {listen: 8080}\npaths: \"single\"\nmatch: []\n", "", NULL, &c,
                   &e);
    CHECK_INT(n, 0);
    CHECK_STR(c.name, "true");
    CHECK_STR(c.listen, "8080");
    CHECK_INT(c.paths.n, 1);
    CHECK_STR(c.paths.v[0], "single");
    CHECK_INT(c.match.n, 0);
    CHECK(c.match.v != NULL && c.match.v[0] == NULL);
    dr_cfg_free_conf(topts, &c);
    dr_cfg_errors_free(&e);
}

void test_config_apply_defaults(void)
{
    tconf c;
    dr_cfg_errors e = {0};
    /* null values count as absent */
    CHECK_INT(apply_yaml("name: x\ncount:\nhttp:\nmatch: ~\n", "", NULL, &c, &e), 0);
    CHECK_INT(c.count, 5);
    CHECK(c.enabled);
    CHECK(c.max_size == 1048576);
    CHECK_INT(c.timeout_ms, 5000);
    CHECK_INT(c.paths.n, 0);
    CHECK(c.paths.v == NULL);
    CHECK_INT(c.match.n, 1);
    CHECK_STR(c.match.v[0], "*");
    CHECK_INT(c.level, 1);
    CHECK_STR(c.listen, "127.0.0.1:2020");
    CHECK(c.cert == NULL);
    CHECK(c.buf == 4096);
    CHECK_INT(c.flush_ms, 1000);
    dr_cfg_free_conf(topts, &c);

    /* no map at all: defaults, and the required key is missing (no position) */
    memset(&c, 0, sizeof c);
    CHECK_INT(dr_cfg_apply(topts, NULL, &c, "inputs[2]", NULL, &e), 1);
    CHECK_INT(e.n, 1);
    CHECK_STR(e.msg[0], "inputs[2].name: missing required key");
    CHECK_STR(c.listen, "127.0.0.1:2020");
    dr_cfg_free_conf(topts, &c);
    dr_cfg_errors_free(&e);

    /* a default that does not parse is reported (a bug in a table) */
    typedef struct {
        int64_t n;
    } small;
    static const dr_option bad_default[] = {
        {"n", DR_OPT_INT, offsetof(small, n), "many", 0, NULL, 0, 0, "n"},
        {0},
    };
    small s = {0};
    CHECK_INT(dr_cfg_apply(bad_default, NULL, &s, "", NULL, &e), 1);
    CHECK_STR(e.msg[0], "n: invalid default: expected an integer, got \"many\"");
    dr_cfg_errors_free(&e);
    dr_cfg_free_conf(NULL, &s);
    dr_cfg_free_conf(topts, NULL);
}

void test_config_apply_wrong_types(void)
{
    CHECK_STR(apply_error("name: [a]\n"), "t.yaml:1:7: name: expected a string, got a list");
    CHECK_STR(apply_error("name: x\ncount: {a: 1}\n"),
              "t.yaml:2:8: count: expected an integer, got a map");
    CHECK_STR(apply_error("name: x\ncount: abc\n"),
              "t.yaml:2:8: count: expected an integer, got \"abc\"");
    CHECK_STR(apply_error("name: x\ncount: 1.5\n"),
              "t.yaml:2:8: count: expected an integer, got \"1.5\"");
    CHECK_STR(apply_error("name: x\nenabled: maybe\n"),
              "t.yaml:2:10: enabled: expected true or false (or yes/no, on/off), got \"maybe\"");
    CHECK_STR(apply_error("name: x\nenabled: [true]\n"),
              "t.yaml:2:10: enabled: expected true or false, got a list");
    CHECK_STR(apply_error("name: x\nmax_size: 12XB\n"),
              "t.yaml:2:11: max_size: invalid size \"12XB\" (use bytes or a number with B, KB, "
              "MB, GB, KiB, MiB or GiB)");
    CHECK_STR(apply_error("name: x\nmax_size: 99999999999GiB\n"),
              "t.yaml:2:11: max_size: size \"99999999999GiB\" is too large");
    CHECK_STR(apply_error("name: x\ntimeout: 5\n"),
              "t.yaml:2:10: timeout: invalid duration \"5\" (use numbers with ms, s, m or h, such "
              "as 500ms, 30s or 1h30m)");
    CHECK_STR(apply_error("name: x\ntimeout: 99999999999999h\n"),
              "t.yaml:2:10: timeout: duration \"99999999999999h\" is too large");
    CHECK_STR(apply_error("name: x\nlevel: verbose\n"),
              "t.yaml:2:8: level: \"verbose\" is not one of: debug, info, warn, error");
    CHECK_STR(apply_error("name: x\nlevel: INFO\n"),
              "t.yaml:2:8: level: \"INFO\" is not one of: debug, info, warn, error");
    CHECK_STR(apply_error("name: x\npaths: {a: 1}\n"),
              "t.yaml:2:8: paths: expected a string or a list of strings, got a map");
    CHECK_STR(apply_error("name: x\npaths: [a, [b], c]\n"),
              "t.yaml:2:12: paths[1]: expected a string, got a list");
    CHECK_STR(apply_error("name: x\npaths:\n  - a\n  -\n"),
              "t.yaml:4:4: paths[1]: expected a string, got nothing (null)");
    /* values are shown shortened and escaped */
    CHECK_STR(apply_error("name: x\ncount: \"a\\tb\\\"c\"\n"),
              "t.yaml:2:8: count: expected an integer, got \"a\\x09b\\\"c\"");
}

void test_config_apply_ranges(void)
{
    CHECK_STR(apply_error("name: x\ncount: 0\n"),
              "t.yaml:2:8: count: must be between 1 and 100, got 0");
    CHECK_STR(apply_error("name: x\ncount: 101\n"),
              "t.yaml:2:8: count: must be between 1 and 100, got 101");
    CHECK_STR(apply_error("name: x\ncount: -5\n"),
              "t.yaml:2:8: count: must be between 1 and 100, got -5");
    CHECK_STR(apply_error("name: x\ncount: 99999999999999999999\n"),
              "t.yaml:2:8: count: integer \"99999999999999999999\" is out of range");
    CHECK_STR(apply_error("name: x\nbuf: 1000\n"),
              "t.yaml:2:6: buf: must be between 1024 and 1048576 bytes, got 1000");
    CHECK_STR(apply_error("name: x\nbuf: 2MiB\n"),
              "t.yaml:2:6: buf: must be between 1024 and 1048576 bytes, got 2097152");
    CHECK_STR(apply_error("name: x\nflush: 5ms\n"),
              "t.yaml:2:8: flush: must be between 10ms and 60000ms, got 5ms");
    CHECK_STR(apply_error("name: x\nflush: 2m\n"),
              "t.yaml:2:8: flush: must be between 10ms and 60000ms, got 120000ms");
    tconf c;
    dr_cfg_errors e = {0};
    CHECK_INT(apply_yaml("name: x\ncount: 100\nbuf: 1KiB\nflush: 10ms\n", "", NULL, &c, &e), 0);
    CHECK_INT(c.count, 100);
    CHECK(c.buf == 1024);
    CHECK_INT(c.flush_ms, 10);
    dr_cfg_free_conf(topts, &c);

    /* without bounds (min == max) any int64 goes */
    typedef struct {
        int64_t n;
    } small;
    static const dr_option any[] = {
        {"n", DR_OPT_INT, offsetof(small, n), NULL, 0, NULL, 0, 0, "n"},
        {0},
    };
    dr_cfg_doc *d = load("n: -9223372036854775808\n", &e);
    small s = {0};
    CHECK_INT(dr_cfg_apply(any, dr_cfg_root(d), &s, "", NULL, &e), 0);
    CHECK(s.n == INT64_MIN);
    dr_cfg_doc_free(d);
    d = load("n: 9223372036854775807\n", &e);
    CHECK_INT(dr_cfg_apply(any, dr_cfg_root(d), &s, "", NULL, &e), 0);
    CHECK(s.n == INT64_MAX);
    dr_cfg_doc_free(d);
    d = load("n: 9223372036854775808\n", &e);
    CHECK_INT(dr_cfg_apply(any, dr_cfg_root(d), &s, "", NULL, &e), 1);
    CHECK(s.n == INT64_MAX); /* unchanged on error */
    dr_cfg_doc_free(d);
    dr_cfg_errors_free(&e);
}

void test_config_apply_required(void)
{
    dr_cfg_errors e = {0};
    dr_cfg_doc *d = load("inputs:\n  - {count: 3}\n  - name:\n", &e);
    CHECK(d != NULL);
    const dr_cfg_node *inputs = dr_cfg_get(dr_cfg_root(d), "inputs");
    tconf c = {0};
    CHECK_INT(dr_cfg_apply(topts, inputs->items[0], &c, "inputs[0]", NULL, &e), 1);
    CHECK_STR(e.msg[0], "t.yaml:2:5: inputs[0].name: missing required key");
    CHECK_INT(c.count, 3); /* the rest still applies */
    dr_cfg_free_conf(topts, &c);
    memset(&c, 0, sizeof c);
    CHECK_INT(dr_cfg_apply(topts, inputs->items[1], &c, "inputs[1]", NULL, &e), 1);
    CHECK_STR(e.msg[1], "t.yaml:3:10: inputs[1].name: a value is required");
    dr_cfg_free_conf(topts, &c);
    dr_cfg_doc_free(d);
    dr_cfg_errors_free(&e);

    /* a null where the map should be: reported at the null */
    d = load("agent:\n", &e);
    memset(&c, 0, sizeof c);
    CHECK_INT(dr_cfg_apply(topts, dr_cfg_get(dr_cfg_root(d), "agent"), &c, "agent", NULL, &e), 1);
    CHECK_STR(e.msg[0], "t.yaml:1:7: agent.name: missing required key");
    dr_cfg_free_conf(topts, &c);
    dr_cfg_doc_free(d);
    dr_cfg_errors_free(&e);
}

void test_config_apply_unknown_keys(void)
{
    CHECK_STR(apply_error("nmae: x\n"), "t.yaml:1:1: nmae: unknown key, did you mean \"name\"?");
    CHECK_STR(apply_error("name: x\nlevl: info\n"),
              "t.yaml:2:1: levl: unknown key, did you mean \"level\"?");
    CHECK_STR(apply_error("name: x\ntimeuot: 1s\n"),
              "t.yaml:2:1: timeuot: unknown key, did you mean \"timeout\"?");
    CHECK_STR(apply_error("name: x\ncolour: red\n"), "t.yaml:2:1: colour: unknown key");
    CHECK_STR(apply_error("name: x\nzz: 1\n"), "t.yaml:2:1: zz: unknown key");
    CHECK_STR(apply_error("name: x\nhttp:\n  listn: x\n"),
              "t.yaml:3:3: http.listn: unknown key, did you mean \"listen\"?");
    CHECK_STR(apply_error("name: x\nhttp: {tls: {cert: a, key: b}}\n"),
              "t.yaml:2:23: http.tls.key: unknown key");
    CHECK_STR(apply_error("name: x\nhttp.listen: x\n"),
              "t.yaml:2:1: http.listen: unknown key (write dotted options as nested maps)");

    /* with a path, extra keys, and errors for every unknown key */
    tconf c;
    dr_cfg_errors e = {0};
    static const char *const extra[] = {"type", "match_regex", "http.auth", NULL};
    int n = apply_yaml("name: a\ntype: tail\nhttp: {auth: x}\ntpye: y\nmatch_rgex: z\nqq: 1\n",
                       "inputs[0]", extra, &c, &e);
    CHECK_INT(n, 3);
    CHECK_INT(e.n, 3);
    CHECK_STR(e.msg[0], "t.yaml:4:1: inputs[0].tpye: unknown key, did you mean \"type\"?");
    CHECK_STR(e.msg[1],
              "t.yaml:5:1: inputs[0].match_rgex: unknown key, did you mean \"match_regex\"?");
    CHECK_STR(e.msg[2], "t.yaml:6:1: inputs[0].qq: unknown key");
    dr_cfg_free_conf(topts, &c);
    dr_cfg_errors_free(&e);

    /* two tables over one map (as the agent does: common keys, then the
     * plugin's, each with the other's names as extra keys) report an
     * unknown key once, with the same suggestion whatever the table order */
    typedef struct {
        char *a, *b;
    } two;
    static const dr_option first[] = {
        {"path_b", DR_OPT_STRING, offsetof(two, a), NULL, 0, NULL, 0, 0, "a"},
        {0},
    };
    static const dr_option second[] = {
        {"path_a", DR_OPT_STRING, offsetof(two, b), NULL, 0, NULL, 0, 0, "b"},
        {0},
    };
    static const char *const first_names[] = {"path_b", NULL};
    static const char *const second_names[] = {"path_a", NULL};
    dr_cfg_doc *d = load("path_c: x\n", &e);
    two t = {0};
    CHECK_INT(dr_cfg_apply(first, dr_cfg_root(d), &t, "o", second_names, &e), 1);
    CHECK_INT(dr_cfg_apply(second, dr_cfg_root(d), &t, "o", first_names, &e), 1);
    CHECK_INT(e.n, 1);
    CHECK_STR(e.msg[0], "t.yaml:1:1: o.path_c: unknown key, did you mean \"path_a\"?");
    dr_cfg_free_conf(first, &t);
    dr_cfg_free_conf(second, &t);
    dr_cfg_doc_free(d);
    dr_cfg_errors_free(&e);
}

void test_config_apply_nested(void)
{
    CHECK_STR(apply_error("name: x\nhttp: 5\n"), "t.yaml:2:7: http: expected a map");
    CHECK_STR(apply_error("name: x\nhttp: [a]\n"), "t.yaml:2:7: http: expected a map");
    CHECK_STR(apply_error("name: x\nhttp: {tls: on}\n"), "t.yaml:2:13: http.tls: expected a map");
    /* one error for a blocked map, even though two options go through it */
    tconf c;
    dr_cfg_errors e = {0};
    CHECK_INT(apply_yaml("name: x\nhttp: 5\n", "agent", NULL, &c, &e), 2);
    CHECK_INT(e.n, 1);
    CHECK_STR(e.msg[0], "t.yaml:2:7: agent.http: expected a map");
    CHECK_STR(c.listen, "127.0.0.1:2020");
    dr_cfg_free_conf(topts, &c);
    dr_cfg_errors_free(&e);
    CHECK_INT(apply_yaml("name: x\nhttp: {tls: }\n", "", NULL, &c, &e), 0);
    CHECK(c.cert == NULL);
    dr_cfg_free_conf(topts, &c);

    /* a map that is not a map: defaults only */
    dr_cfg_doc *d = load("agent: [1, 2]\nother: text\n", &e);
    memset(&c, 0, sizeof c);
    CHECK_INT(dr_cfg_apply(topts, dr_cfg_get(dr_cfg_root(d), "agent"), &c, "agent", NULL, &e), 1);
    CHECK_STR(e.msg[0], "t.yaml:1:8: agent: expected a map, got a list");
    CHECK_STR(c.listen, "127.0.0.1:2020");
    dr_cfg_free_conf(topts, &c);
    memset(&c, 0, sizeof c);
    CHECK_INT(dr_cfg_apply(topts, dr_cfg_get(dr_cfg_root(d), "other"), &c, "", NULL, &e), 1);
    CHECK_STR(e.msg[1], "t.yaml:2:8: expected a map, got a string");
    dr_cfg_free_conf(topts, &c);
    dr_cfg_doc_free(d);
    dr_cfg_errors_free(&e);
}

void test_config_error_format_and_limit(void)
{
    dr_cfg_errors e = {0};
    dr_cfg_doc *d = load("a:\n  b: 1\n", &e);
    const dr_cfg_node *b = at_path(dr_cfg_root(d), "a", "b");
    dr_cfg_error(&e, b, "a.b", "bad value %d", 1);
    dr_cfg_error(&e, b, "", "no key here");
    dr_cfg_error(&e, b, NULL, "nor here");
    dr_cfg_error(&e, NULL, "a", "no position");
    dr_cfg_error(&e, b, "a.b", "bad value %d", 1); /* a duplicate is kept once */
    dr_cfg_error(NULL, b, "a.b", "ignored");
    CHECK_INT(e.n, 4);
    CHECK_STR(e.msg[0], "t.yaml:2:6: a.b: bad value 1");
    CHECK_STR(e.msg[1], "t.yaml:2:6: no key here");
    CHECK_STR(e.msg[2], "t.yaml:2:6: nor here");
    CHECK_STR(e.msg[3], "a: no position");
    dr_cfg_errors_free(&e);
    CHECK_INT(e.n, 0);

    /* at most DR_CFG_MAX_ERRORS messages; the rest are counted */
    for (int i = 0; i < DR_CFG_MAX_ERRORS + 10; i++)
        dr_cfg_error(&e, b, "k", "error %d", i);
    CHECK_INT(e.n, DR_CFG_MAX_ERRORS);
    CHECK_INT(e.dropped, 10);
    CHECK_STR(e.msg[DR_CFG_MAX_ERRORS - 1], "t.yaml:2:6: k: error 63");
    dr_cfg_errors_free(&e);
    CHECK_INT(e.dropped, 0);
    dr_cfg_doc_free(d);

    /* 70 unknown keys: apply counts them all */
    char yaml[2048];
    size_t o = (size_t)snprintf(yaml, sizeof yaml, "name: x\n");
    for (int i = 0; i < 70; i++)
        o += (size_t)snprintf(yaml + o, sizeof yaml - o, "unknown%02d: 1\n", i);
    tconf c;
    CHECK_INT(apply_yaml(yaml, "", NULL, &c, &e), 70);
    CHECK_INT(e.n, DR_CFG_MAX_ERRORS);
    CHECK_INT(e.dropped, 6);
    dr_cfg_free_conf(topts, &c);
    dr_cfg_errors_free(&e);

    /* a huge value is shown shortened */
    size_t big = 1 << 20;
    char *huge = malloc(big + 32);
    memcpy(huge, "name: x\ncount: ", 15);
    memset(huge + 15, '7', big);
    memcpy(huge + 15 + big, "x\n", 3);
    const char *m = apply_error(huge);
    CHECK(strlen(m) < 200);
    CHECK(strstr(m, "t.yaml:2:8: count: expected an integer, got \"7777") == m);
    CHECK(strstr(m, "...\"") != NULL);
    free(huge);
}

/* ---- files and directories ---------------------------------------------------------- */

void test_config_load_file(void)
{
    const char *dir = dt_tmpdir();
    write_text(dir, "agent.yaml", minimal_yaml);
    char path[512];
    snprintf(path, sizeof path, "%s/agent.yaml", dir);
    dr_cfg_errors e = {0};
    dr_cfg_doc *d = dr_cfg_load(path, &e);
    CHECK(d != NULL);
    CHECK_INT(e.n, 0);
    const dr_cfg_node *dd = at_path(dr_cfg_root(d), "agent", "data_dir");
    CHECK_STR(dd ? dd->file : NULL, path);
    CHECK_INT(dd ? dd->line : 0, 2);
    dr_cfg_doc_free(d);

    /* errors name the file */
    write_text(dir, "bad.yaml", "a: 1\n  b: 2\n");
    snprintf(path, sizeof path, "%s/bad.yaml", dir);
    CHECK(dr_cfg_load(path, &e) == NULL);
    char want[600];
    snprintf(want, sizeof want, "%s:2:4: mapping values are not allowed in this context", path);
    CHECK_STR(e.msg[0], want);
    dr_cfg_errors_free(&e);

    snprintf(path, sizeof path, "%s/missing.yaml", dir);
    CHECK(dr_cfg_load(path, &e) == NULL);
    snprintf(want, sizeof want, "%s: cannot load: No such file or directory", path);
    CHECK_STR(e.msg[0], want);
    dr_cfg_errors_free(&e);
    CHECK(dr_cfg_load(NULL, &e) == NULL);
    CHECK_INT(e.n, 1);
    dr_cfg_errors_free(&e);
    d = dr_cfg_load_string("s", NULL, &e); /* no text: an empty document */
    CHECK(d != NULL && dr_cfg_root(d)->n == 0);
    dr_cfg_doc_free(d);
}

void test_config_file_size_limit(void)
{
    const char *dir = dt_tmpdir();
    size_t limit = (size_t)16 << 20;
    char *text = malloc(limit + 1);
    /* exactly 16 MiB: a comment line, then a key */
    memset(text, 'x', limit);
    text[0] = '#';
    memcpy(text + limit - 7, "\na: 1\n", 6);
    text[limit - 1] = '\n';
    write_file(dir, "max.yaml", text, limit);
    text[limit] = '\n';
    write_file(dir, "over.yaml", text, limit + 1);
    free(text);

    char path[512];
    dr_cfg_errors e = {0};
    snprintf(path, sizeof path, "%s/max.yaml", dir);
    dr_cfg_doc *d = dr_cfg_load(path, &e);
    CHECK(d != NULL);
    CHECK_STR(d ? dr_cfg_get(dr_cfg_root(d), "a")->str : NULL, "1");
    dr_cfg_doc_free(d);
    snprintf(path, sizeof path, "%s/over.yaml", dir);
    CHECK(dr_cfg_load(path, &e) == NULL);
    char want[600];
    snprintf(want, sizeof want, "%s: cannot load: the file is larger than 16 MiB", path);
    CHECK_STR(e.n ? e.msg[0] : NULL, want);
    dr_cfg_errors_free(&e);
}

void test_config_dir_merge(void)
{
    const char *dir = dt_tmpdir();
    write_text(dir, "20-more.yml",
               "agent:\n"
               "  log_level: debug\n"
               "  http: { port: 2 }\n"
               "inputs:\n"
               "  - { name: two, type: tail }\n"
               "outputs:\n");
    write_text(dir, "10-base.yaml",
               "agent:\n"
               "  data_dir: /a\n"
               "  log_level: info\n"
               "  http: { listen: 1.1.1.1:1 }\n"
               "  tags: [a, b]\n"
               "inputs:\n"
               "  - { name: one, type: tail }\n"
               "outputs:\n"
               "  - { name: o1, type: null }\n");
    write_text(dir, "30-last.yaml",
               "inputs:\n"
               "  - { name: three, type: tail }\n"
               "  - { name: four, type: tail }\n"
               "filters: []\n"
               "agent: { tags: [c] }\n");
    write_text(dir, "notes.txt", "garbage: [");
    write_text(dir, ".hidden.yaml", "broken: [");
    write_text(dir, "x.yaml~", "broken: [");
    char sub[512];
    snprintf(sub, sizeof sub, "%s/sub.yaml", dir);
    CHECK(mkdir(sub, 0755) == 0);

    dr_cfg_errors e = {0};
    dr_cfg_doc *d = dr_cfg_load(dir, &e);
    CHECK(d != NULL);
    CHECK_INT(e.n, 0);
    if (!d)
        return;
    const dr_cfg_node *r = dr_cfg_root(d);
    CHECK(ends_with(r->file, "/10-base.yaml"));
    CHECK_INT(r->n, 4); /* agent, inputs, outputs, filters */
    CHECK_STR(r->pairs[0].key->str, "agent");
    CHECK_STR(r->pairs[3].key->str, "filters");
    const dr_cfg_node *agent = dr_cfg_get(r, "agent");
    CHECK_STR(dr_cfg_get(agent, "data_dir")->str, "/a");
    const dr_cfg_node *lvl = dr_cfg_get(agent, "log_level");
    CHECK_STR(lvl->str, "debug"); /* a later scalar replaces */
    CHECK(ends_with(lvl->file, "/20-more.yml"));
    CHECK_INT(lvl->line, 2);
    const dr_cfg_node *http = dr_cfg_get(agent, "http"); /* maps merge */
    CHECK_STR(dr_cfg_get(http, "listen")->str, "1.1.1.1:1");
    CHECK(ends_with(dr_cfg_get(http, "listen")->file, "/10-base.yaml"));
    CHECK_STR(dr_cfg_get(http, "port")->str, "2");
    CHECK(ends_with(dr_cfg_get(http, "port")->file, "/20-more.yml"));
    const dr_cfg_node *tags = dr_cfg_get(agent, "tags"); /* other lists are replaced */
    CHECK_INT(tags->n, 1);
    CHECK_STR(tags->items[0]->str, "c");

    const dr_cfg_node *inputs = dr_cfg_get(r, "inputs"); /* concatenated in name order */
    CHECK_INT(inputs->n, 4);
    static const char *const names[] = {"one", "two", "three", "four"};
    static const char *const files[] = {"/10-base.yaml", "/20-more.yml", "/30-last.yaml",
                                        "/30-last.yaml"};
    static const int lines[] = {7, 5, 2, 3};
    for (size_t i = 0; i < 4 && i < inputs->n; i++) {
        const dr_cfg_node *name = dr_cfg_get(inputs->items[i], "name");
        CHECK_STR(name->str, names[i]);
        CHECK(ends_with(name->file, files[i]));
        CHECK_INT(name->line, lines[i]);
    }
    const dr_cfg_node *outputs = dr_cfg_get(r, "outputs"); /* a null adds nothing */
    CHECK_INT(outputs->type, DR_CFG_SEQ);
    CHECK_INT(outputs->n, 1);
    CHECK_INT(dr_cfg_get(r, "filters")->n, 0);
    dr_cfg_doc_free(d);

    /* a trailing slash changes nothing */
    char slash[512];
    snprintf(slash, sizeof slash, "%s/", dir);
    d = dr_cfg_load(slash, &e);
    CHECK(d != NULL);
    CHECK(d && !strstr(dr_cfg_root(d)->file, "//"));
    dr_cfg_doc_free(d);
}

void test_config_dir_errors(void)
{
    dr_cfg_errors e = {0};
    const char *dir = dt_tmpdir();
    char want[600];
    CHECK(dr_cfg_load(dir, &e) == NULL);
    snprintf(want, sizeof want, "%s: no *.yaml or *.yml files in the directory", dir);
    CHECK_STR(e.n ? e.msg[0] : NULL, want);
    dr_cfg_errors_free(&e);

    write_text(dir, "readme.txt", "a: 1\n");
    CHECK(dr_cfg_load(dir, &e) == NULL);
    CHECK_STR(e.n ? e.msg[0] : NULL, want);
    dr_cfg_errors_free(&e);

    /* every broken file is reported, each under its own name */
    write_text(dir, "a.yaml", "ok: 1\n");
    write_text(dir, "b.yaml", "x: [\n");
    write_text(dir, "c.yml", "y: ${DRT_SURELY_UNSET}\n");
    unsetenv("DRT_SURELY_UNSET");
    CHECK(dr_cfg_load(dir, &e) == NULL);
    CHECK_INT(e.n, 2);
    snprintf(want, sizeof want, "%s/b.yaml:2:1: ", dir);
    CHECK(e.n > 0 && strncmp(e.msg[0], want, strlen(want)) == 0);
    snprintf(want, sizeof want,
             "%s/c.yml:1:4: y: environment variable DRT_SURELY_UNSET is not set and has no "
             "default",
             dir);
    CHECK_STR(e.n > 1 ? e.msg[1] : NULL, want);
    dr_cfg_errors_free(&e);
}

/* ---- robustness ----------------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

/* Loads text (and applies topts to whatever loaded); must never crash,
 * and a failure always says why. */
static void load_anything(const char *text)
{
    dr_cfg_errors e = {0};
    dr_cfg_doc *d = load(text, &e);
    if (d) {
        tconf c = {0};
        dr_cfg_apply(topts, dr_cfg_root(d), &c, "fuzz", NULL, &e);
        dr_cfg_free_conf(topts, &c);
        const dr_cfg_node *r = dr_cfg_root(d);
        for (size_t i = 0; i < r->n; i++) {
            memset(&c, 0, sizeof c);
            dr_cfg_apply(topts, r->pairs[i].val, &c, r->pairs[i].key->str, NULL, &e);
            dr_cfg_free_conf(topts, &c);
        }
    } else {
        CHECK(e.n > 0);
    }
    for (size_t i = 0; i < e.n; i++)
        CHECK(strlen(e.msg[i]) <= 1024);
    dr_cfg_doc_free(d);
    dr_cfg_errors_free(&e);
}

void test_config_garbage(void)
{
    static const char *const tokens[] = {
        "a",           "name",   "count", ":",   ": ",   " ",     "  ",   "\n",       "- ",
        "[",           "]",      "{",     "}",   ",",    "\"",    "'",    "&x ",      "*x",
        "${DRT_G}",    "${",     "$$",    "?",   "# c",  "\t",    "\xff", "\xc3\xa9", "|",
        ">",           "!!str ", "---",   "...", "1.5s", "16KiB", "true", "~",        "\\",
        "%YAML 1.1\n", "http:",  "\r\n",  "!",   "@",    "`",     "\x01",
    };
    setenv("DRT_G", "${DRT_G}: [", 1);
    char text[512];
    for (int iter = 0; iter < 2000; iter++) {
        size_t o = 0;
        int ntok = 1 + (int)(rng() % 40);
        for (int t = 0; t < ntok; t++) {
            const char *tok = tokens[rng() % (sizeof tokens / sizeof tokens[0])];
            size_t l = strlen(tok);
            if (o + l >= sizeof text)
                break;
            memcpy(text + o, tok, l);
            o += l;
        }
        text[o] = '\0';
        load_anything(text);
    }
    for (int iter = 0; iter < 500; iter++) {
        size_t n = rng() % (sizeof text - 1);
        for (size_t i = 0; i < n; i++)
            text[i] = (char)(1 + rng() % 255);
        text[n] = '\0';
        load_anything(text);
    }
    unsetenv("DRT_G");

    /* binary garbage with NUL bytes, from a file */
    const char *dir = dt_tmpdir();
    unsigned char bin[4096];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (unsigned char)rng();
    write_file(dir, "bin.yaml", (const char *)bin, sizeof bin);
    write_file(dir, "nul.yaml", "a: b\0c\n", 7);
    write_file(dir, "utf16.yaml",
               "\xff\xfe"
               "a\0:\0 \0b\0\n\0",
               12);
    static const char *const files[] = {"bin.yaml", "nul.yaml", "utf16.yaml"};
    for (size_t i = 0; i < 3; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        dr_cfg_errors e = {0};
        dr_cfg_doc *d = dr_cfg_load(path, &e);
        CHECK(d != NULL || e.n > 0);
        dr_cfg_doc_free(d);
        dr_cfg_errors_free(&e);
    }
    CHECK_STR(load_error("a: \"x\\0y\"\n", NULL),
              "t.yaml:1:4: a: NUL characters are not allowed in strings");

    /* a huge scalar loads whole */
    size_t big = 4 << 20;
    char *huge = malloc(big + 8);
    memcpy(huge, "k: ", 3);
    memset(huge + 3, 'v', big);
    huge[3 + big] = '\0';
    dr_cfg_errors e = {0};
    dr_cfg_doc *d = load(huge, &e);
    CHECK(d != NULL);
    CHECK_INT(d ? strlen(dr_cfg_get(dr_cfg_root(d), "k")->str) : 0, big);
    dr_cfg_doc_free(d);
    free(huge);

    /* a map with very many keys: duplicate detection stays fast */
    size_t nkeys = 50000;
    char *many = malloc(nkeys * 16 + 16);
    size_t o = 0;
    for (size_t i = 0; i < nkeys; i++)
        o += (size_t)sprintf(many + o, "k%zu: %zu\n", i, i);
    o += (size_t)sprintf(many + o, "k7: dup\n");
    CHECK_STR(load_error(many, NULL),
              "t.yaml:50001:1: k7: duplicate key (first defined at line 8, column 1)");
    free(many);

    /* a file of millions of tiny values runs into the memory bound */
    size_t nitems = 1000000; /* about 80 bytes each once parsed */
    char *items = malloc(nitems * 2 + 16);
    memcpy(items, "a: [", 4);
    for (size_t i = 0; i < nitems; i++)
        memcpy(items + 4 + 2 * i, "1,", 2);
    memcpy(items + 4 + 2 * nitems, "1]", 3);
    const char *m = load_error(items, NULL);
    CHECK(strstr(m, "t.yaml:1:") == m);
    CHECK(strstr(m, ": out of memory (a configuration may take at most 64 MiB once parsed)"));
    free(items);
}

/* A structured option hands the plugin the YAML value itself, any shape,
 * with its position; absent, it is NULL. */
void test_config_apply_node(void)
{
    typedef struct {
        const dr_cfg_node *jobs;
        const dr_cfg_node *other;
        int64_t n;
    } node_conf;
    static const dr_option opts[] = {
        {"scrape_configs", DR_OPT_NODE, offsetof(node_conf, jobs), NULL, 0, NULL, 0, 0, "jobs"},
        {"other", DR_OPT_NODE, offsetof(node_conf, other), NULL, 0, NULL, 0, 0, "absent"},
        {"n", DR_OPT_INT, offsetof(node_conf, n), "3", 0, NULL, 0, 0, "n"},
        {0},
    };
    dr_cfg_errors e = {0};
    dr_cfg_doc *d = dr_cfg_load_string("t.yaml",
                                       "scrape_configs:\n"
                                       "  - job_name: node\n"
                                       "    static_configs: [{targets: ['a:9100']}]\n",
                                       &e);
    CHECK(d != NULL);
    node_conf c = {0};
    CHECK_INT(dr_cfg_apply(opts, dr_cfg_root(d), &c, "inputs[0]", NULL, &e), 0);
    CHECK(c.jobs != NULL);
    CHECK_INT(c.jobs->type, DR_CFG_SEQ);
    CHECK_INT(c.jobs->n, 1);
    CHECK_INT(c.jobs->line, 2);
    CHECK_STR(dr_cfg_get(c.jobs->items[0], "job_name")->str, "node");
    CHECK(c.other == NULL);
    CHECK_INT(c.n, 3);
    dr_cfg_free_conf(opts, &c);
    dr_cfg_doc_free(d);
    dr_cfg_errors_free(&e);
}
