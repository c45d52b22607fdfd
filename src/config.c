/*
 * Configuration loading (see config.h for the contract).
 *
 * The YAML is read with libyaml's event API and turned into a small tree of
 * dr_cfg_node. Every node and string of a document lives in one arena owned
 * by the document, so freeing a document is freeing its blocks, and merging
 * files never has to decide who owns a node: merged maps simply point at the
 * nodes of the files they came from.
 *
 * Everything is bounded: a file is at most 16 MiB, nesting at most 64 levels,
 * the arena at most 64 MiB (which bounds the number of nodes), a directory at
 * most 1024 files, and at most DR_CFG_MAX_ERRORS messages are kept. Messages
 * quote user values shortened and with control bytes escaped, so a garbage
 * file cannot flood or corrupt the terminal.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "buf.h"

#define CFG_MAX_FILE_BYTES ((size_t)16 << 20)
#define CFG_MAX_DEPTH 64
#define CFG_MAX_FILES 1024
#define CFG_MAX_ARENA_BYTES ((size_t)64 << 20)
#define CFG_ARENA_BLOCK ((size_t)64 << 10)
#define CFG_MAX_MSG 1024      /* one error message, in bytes */
#define CFG_MAX_KEYPATH 512   /* a key path in a message */
#define CFG_MAX_SHOWN 60      /* a user value quoted in a message */
#define CFG_MAX_VARNAME 256   /* ${NAME} */
#define CFG_FRACTION_DIGITS 6 /* digits kept after the point in sizes and durations */

/* ---- small helpers ---------------------------------------------------------- */

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static bool is_name_start(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_name_char(int c)
{
    return is_name_start(c) || is_digit(c);
}

/* Renders a user value for a message: at most CFG_MAX_SHOWN bytes, control
 * bytes, quotes and backslashes escaped, "..." when cut. `out` must hold
 * CFG_MAX_SHOWN * 4 + 8 bytes. Returns out. */
#define SHOWN_SIZE (CFG_MAX_SHOWN * 4 + 8)
static const char *show_n(const char *s, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i < n && i < CFG_MAX_SHOWN; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, 5, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    if (i < n) {
        /* The last multi-byte character may be cut short: drop it whole,
         * its continuation bytes and then its lead byte. */
        size_t cut = o;
        while (cut > 0 && ((unsigned char)out[cut - 1] & 0xC0) == 0x80)
            cut--;
        if (cut > 0 && ((unsigned char)out[cut - 1] & 0xC0) == 0xC0)
            o = cut - 1;
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

static const char *show(const char *s, char *out)
{
    return show_n(s, strlen(s), out);
}

/* Key paths for messages: "inputs[0].paths". Too long paths are cut, and
 * control bytes in keys become '?'. */
typedef struct keypath {
    char s[CFG_MAX_KEYPATH];
    size_t len;
} keypath;

static void kp_raw(keypath *kp, const char *s, size_t n)
{
    size_t room = sizeof kp->s - 1 - kp->len;
    if (n > room)
        n = room;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        kp->s[kp->len++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    kp->s[kp->len] = '\0';
}

static void kp_init(keypath *kp, const char *base)
{
    kp->len = 0;
    kp->s[0] = '\0';
    if (base)
        kp_raw(kp, base, strlen(base));
}

static void kp_key_n(keypath *kp, const char *key, size_t n)
{
    if (kp->len)
        kp_raw(kp, ".", 1);
    kp_raw(kp, key, n);
}

static void kp_key(keypath *kp, const char *key)
{
    kp_key_n(kp, key, strlen(key));
}

static void kp_index(keypath *kp, size_t i)
{
    char b[32];
    int n = snprintf(b, sizeof b, "[%zu]", i);
    kp_raw(kp, b, (size_t)n);
}

/* ---- errors ------------------------------------------------------------------ */

/* Takes ownership of msg. Identical messages are kept once: option tables
 * applied to the same map (the agent applies the common keys and then the
 * plugin's) would otherwise report the same problem twice. */
static void errs_take(dr_cfg_errors *errs, char *msg)
{
    if (!errs) {
        free(msg);
        return;
    }
    if (!msg) {
        errs->dropped++;
        return;
    }
    for (size_t i = 0; i < errs->n; i++) {
        if (strcmp(errs->msg[i], msg) == 0) {
            free(msg);
            return;
        }
    }
    if (errs->n < DR_CFG_MAX_ERRORS)
        errs->msg[errs->n++] = msg;
    else {
        errs->dropped++;
        free(msg);
    }
}

/* Formats "file:line:col: path: message" (parts left out when absent) and
 * records it. */
static void errs_vadd(dr_cfg_errors *errs, const char *file, int line, int col, const char *path,
                      const char *fmt, va_list ap)
{
    if (!errs)
        return;
    dr_buf b = {0};
    int rc = 0;
    if (file)
        rc |= dr_buf_printf(&b, "%s:%d:%d: ", file, line, col);
    if (path && *path)
        rc |= dr_buf_printf(&b, "%s: ", path);
    rc |= dr_buf_vprintf(&b, fmt, ap);
    rc |= dr_buf_putc(&b, '\0');
    if (rc != 0) {
        dr_buf_free(&b);
        errs_take(errs, NULL);
        return;
    }
    if (b.len > CFG_MAX_MSG) {
        size_t cut = CFG_MAX_MSG - 4;
        while (cut > 0 && ((unsigned char)b.p[cut] & 0xC0) == 0x80)
            cut--;
        memcpy(b.p + cut, "...", 4);
    }
    errs_take(errs, b.p);
}

static void errs_add(dr_cfg_errors *errs, const char *file, int line, int col, const char *path,
                     const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void errs_add(dr_cfg_errors *errs, const char *file, int line, int col, const char *path,
                     const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    errs_vadd(errs, file, line, col, path, fmt, ap);
    va_end(ap);
}

void dr_cfg_error(dr_cfg_errors *errs, const dr_cfg_node *at, const char *path, const char *fmt,
                  ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (at)
        errs_vadd(errs, at->file, at->line, at->col, path, fmt, ap);
    else
        errs_vadd(errs, NULL, 0, 0, path, fmt, ap);
    va_end(ap);
}

void dr_cfg_errors_free(dr_cfg_errors *errs)
{
    if (!errs)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->msg[i]);
    memset(errs, 0, sizeof *errs);
}

/* ---- the document and its arena ------------------------------------------------ */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    _Alignas(max_align_t) unsigned char data[];
} arena_block;

struct dr_cfg_doc {
    int value_errors;    /* errors in values, reported in errs; the tree is whole */
    arena_block *blocks; /* the head is the block being filled */
    size_t bytes;        /* total block capacity, at most CFG_MAX_ARENA_BYTES */
    dr_cfg_node *root;
};

/* Zeroed memory that lives as long as the document; NULL when out of memory
 * or past the arena's bound. */
static void *doc_alloc(dr_cfg_doc *doc, size_t n)
{
    const size_t align = _Alignof(max_align_t);
    if (n > CFG_MAX_ARENA_BYTES)
        return NULL;
    n = n ? (n + align - 1) & ~(align - 1) : align;
    arena_block *head = doc->blocks;
    if (!head || head->cap - head->used < n) {
        /* A large request gets a block of its own behind the head, so the
         * head's free space is not wasted. */
        bool own = n > CFG_ARENA_BLOCK / 4;
        size_t cap = own ? n : CFG_ARENA_BLOCK;
        if (cap > CFG_MAX_ARENA_BYTES - doc->bytes)
            return NULL;
        arena_block *b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->used = 0;
        b->cap = cap;
        doc->bytes += cap;
        if (own && head) {
            b->next = head->next;
            head->next = b;
        } else {
            b->next = head;
            doc->blocks = b;
        }
        head = b;
    }
    void *p = head->data + head->used;
    head->used += n;
    memset(p, 0, n);
    return p;
}

static char *doc_strndup(dr_cfg_doc *doc, const char *s, size_t n)
{
    if (n >= CFG_MAX_ARENA_BYTES)
        return NULL;
    char *p = doc_alloc(doc, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static dr_cfg_node *doc_node(dr_cfg_doc *doc, dr_cfg_type type, const char *file, int line, int col)
{
    dr_cfg_node *n = doc_alloc(doc, sizeof *n);
    if (n) {
        n->type = type;
        n->file = file;
        n->line = line;
        n->col = col;
    }
    return n;
}

static dr_cfg_doc *doc_new(void)
{
    return calloc(1, sizeof(dr_cfg_doc));
}

void dr_cfg_doc_free(dr_cfg_doc *doc)
{
    if (!doc)
        return;
    arena_block *b = doc->blocks;
    while (b) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
    free(doc);
}

const dr_cfg_node *dr_cfg_root(const dr_cfg_doc *doc)
{
    return doc ? doc->root : NULL;
}

static const dr_cfg_node *map_get_n(const dr_cfg_node *map, const char *key, size_t len)
{
    if (!map || map->type != DR_CFG_MAP)
        return NULL;
    for (size_t i = 0; i < map->n; i++) {
        const char *k = map->pairs[i].key->str;
        if (strncmp(k, key, len) == 0 && k[len] == '\0')
            return map->pairs[i].val;
    }
    return NULL;
}

const dr_cfg_node *dr_cfg_get(const dr_cfg_node *map, const char *key)
{
    return key ? map_get_n(map, key, strlen(key)) : NULL;
}

/* Pairs sorted by key (then by position, so the first of equal keys comes
 * first): duplicate detection and merging stay O(n log n) on huge maps. */
static int cmp_pair_ptr(const void *a, const void *b)
{
    const dr_cfg_pair *pa = *(const dr_cfg_pair *const *)a;
    const dr_cfg_pair *pb = *(const dr_cfg_pair *const *)b;
    int c = strcmp(pa->key->str, pb->key->str);
    if (c)
        return c;
    return pa < pb ? -1 : pa > pb;
}

static const dr_cfg_pair **sorted_pairs(const dr_cfg_node *map)
{
    const dr_cfg_pair **idx = malloc((map->n ? map->n : 1) * sizeof *idx);
    if (!idx)
        return NULL;
    for (size_t i = 0; i < map->n; i++)
        idx[i] = &map->pairs[i];
    qsort(idx, map->n, sizeof *idx, cmp_pair_ptr);
    return idx;
}

/* The index in map->pairs of `key`, or -1. `idx` is from sorted_pairs. */
static long sorted_find(const dr_cfg_node *map, const dr_cfg_pair **idx, const char *key)
{
    size_t lo = 0, hi = map->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(idx[mid]->key->str, key);
        if (c == 0)
            return (long)(idx[mid] - map->pairs);
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* ---- YAML to tree ---------------------------------------------------------------- */

/* A map or sequence being built. Its children collect in a malloc'd vector
 * that moves into the arena when the container ends. */
typedef struct frame {
    dr_cfg_node *node;
    dr_cfg_node *key; /* map: the key whose value comes next */
    void *vec;        /* dr_cfg_pair[] or dr_cfg_node *[] */
    size_t n, cap;
} frame;

typedef struct parser {
    dr_cfg_doc *doc;
    dr_cfg_errors *errs;
    const char *file; /* the document's copy of the name */
    const unsigned char *text;
    size_t len;
    int nerr;  /* errors that leave no usable document */
    int nsoft; /* errors in values (variables): the document is still checked */
    int ndocs;
    dr_cfg_node *root;
    int depth;
    frame stack[CFG_MAX_DEPTH];
    bool untrusted; /* literal text (no ${VAR}); any top level */
} parser;

static void parse_error(parser *P, int line, int col, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void parse_error(parser *P, int line, int col, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    errs_vadd(P->errs, P->file, line, col, path, fmt, ap);
    va_end(ap);
    P->nerr++;
}

/* An error in a value that leaves the document's shape intact (an unset
 * variable): reported, and the rest of the configuration is still checked
 * so that one run shows every problem. */
static void value_error(parser *P, int line, int col, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void value_error(parser *P, int line, int col, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    errs_vadd(P->errs, P->file, line, col, path, fmt, ap);
    va_end(ap);
    P->nsoft++;
}

static int parse_oom(parser *P, int line, int col)
{
    parse_error(P, line, col, NULL,
                "out of memory (a configuration may take at most %zu MiB once parsed)",
                CFG_MAX_ARENA_BYTES >> 20);
    return DR_ENOMEM;
}

/* The key path of the child being built inside frames [0, upto). */
static void frames_path(const parser *P, int upto, keypath *kp)
{
    kp_init(kp, NULL);
    for (int i = 0; i < upto; i++) {
        const frame *f = &P->stack[i];
        if (f->node->type == DR_CFG_SEQ)
            kp_index(kp, f->n);
        else if (f->key)
            kp_key(kp, f->key->str);
    }
}

static bool expecting_key(const parser *P)
{
    if (P->depth == 0)
        return false;
    const frame *f = &P->stack[P->depth - 1];
    return f->node->type == DR_CFG_MAP && !f->key;
}

static int vec_push(frame *f, const void *elem, size_t size)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        void *v = realloc(f->vec, cap * size);
        if (!v)
            return DR_ENOMEM;
        f->vec = v;
        f->cap = cap;
    }
    memcpy((char *)f->vec + f->n * size, elem, size);
    f->n++;
    return 0;
}

/* Hangs a finished node into its parent (or makes it the root). */
static int add_child(parser *P, dr_cfg_node *node)
{
    if (P->depth == 0) {
        P->root = node;
        return 0;
    }
    frame *f = &P->stack[P->depth - 1];
    int rc;
    if (f->node->type == DR_CFG_MAP) {
        if (!f->key) {
            f->key = node; /* the callers made sure it is a scalar */
            return 0;
        }
        dr_cfg_pair pair = {f->key, node};
        rc = vec_push(f, &pair, sizeof pair);
        f->key = NULL;
    } else {
        rc = vec_push(f, &node, sizeof node);
    }
    return rc < 0 ? parse_oom(P, node->line, node->col) : 0;
}

/* Appends the value of ${ref} (ref without the braces) to out. Shell
 * semantics: ${NAME:-default} takes the default when NAME is unset or empty.
 * The default is literal text; nothing substituted is expanded again. */
static int substitute_ref(parser *P, const char *ref, size_t n, dr_buf *out, int line, int col)
{
    keypath path;
    frames_path(P, P->depth, &path);
    char shown[SHOWN_SIZE];
    size_t nlen = 0;
    if (n > 0 && is_name_start((unsigned char)ref[0]))
        while (nlen < n && is_name_char((unsigned char)ref[nlen]))
            nlen++;
    bool has_default = nlen + 2 <= n && ref[nlen] == ':' && ref[nlen + 1] == '-';
    if (nlen == 0 || (nlen < n && !has_default)) {
        value_error(P, line, col, path.s,
                    "invalid variable reference \"${%s}\" (use ${NAME} or ${NAME:-default}, "
                    "and $$ for a literal $)",
                    show_n(ref, n, shown));
        return DR_EINVAL;
    }
    if (nlen >= CFG_MAX_VARNAME) {
        value_error(P, line, col, path.s, "variable name \"%s\" is too long",
                    show_n(ref, nlen, shown));
        return DR_EINVAL;
    }
    char name[CFG_MAX_VARNAME];
    memcpy(name, ref, nlen);
    name[nlen] = '\0';
    const char *val = getenv(name);
    if (has_default && (!val || !*val))
        return dr_buf_append(out, ref + nlen + 2, n - nlen - 2) < 0 ? DR_ENOMEM : 0;
    if (!val) {
        value_error(P, line, col, path.s, "environment variable %s is not set and has no default",
                    name);
        return DR_EINVAL;
    }
    return dr_buf_append(out, val, strlen(val)) < 0 ? DR_ENOMEM : 0;
}

/* True for the inside of ${12}: digits only. */
static bool is_group_ref(const char *ref, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (ref[i] < '0' || ref[i] > '9')
            return false;
    return true;
}

/* The scalar's text with ${VAR} references replaced, in the arena. Errors
 * are recorded at the scalar's position; NULL only when out of memory. */
static char *expand_env(parser *P, const char *s, size_t len, int line, int col)
{
    if (P->untrusted) /* the agent's environment is not theirs to read */
        return doc_strndup(P->doc, s, len);
    dr_buf out = {0};
    int oom = 0;
    size_t i = 0;
    while (i < len) {
        const char *dollar = memchr(s + i, '$', len - i);
        size_t lit = dollar ? (size_t)(dollar - (s + i)) : len - i;
        oom |= dr_buf_append(&out, s + i, lit) < 0;
        i += lit;
        if (!dollar)
            break;
        if (i + 1 < len && s[i + 1] == '$') { /* $$ is a literal $ */
            oom |= dr_buf_putc(&out, '$') < 0;
            i += 2;
            continue;
        }
        if (i + 1 >= len || s[i + 1] != '{') { /* a lone $ stays */
            oom |= dr_buf_putc(&out, '$') < 0;
            i++;
            continue;
        }
        const char *close = memchr(s + i + 2, '}', len - i - 2);
        if (!close) {
            keypath kp;
            frames_path(P, P->depth, &kp);
            value_error(P, line, col, kp.s, "unterminated \"${\" (write $$ for a literal $)");
            break;
        }
        size_t reflen = (size_t)(close - (s + i + 2));
        if (is_group_ref(s + i + 2, reflen)) {
            /* ${1}: a regex group in a relabel replacement pasted from a
             * prometheus.yml; no environment variable is named so */
            oom |= dr_buf_append(&out, s + i, reflen + 3) < 0;
            i = (size_t)(close - s) + 1;
            continue;
        }
        oom |= substitute_ref(P, s + i + 2, reflen, &out, line, col) == DR_ENOMEM;
        i = (size_t)(close - s) + 1;
    }
    char *r = oom ? NULL : doc_strndup(P->doc, out.p ? out.p : "", out.len);
    dr_buf_free(&out);
    return r;
}

static bool is_null_literal(const char *s, size_t n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        if (strlen(nulls[i]) == n && memcmp(nulls[i], s, n) == 0)
            return true;
    return false;
}

static int on_scalar(parser *P, const yaml_event_t *ev)
{
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    const char *raw = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    bool is_key = expecting_key(P);
    bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    dr_cfg_node *n = doc_node(P->doc, DR_CFG_SCALAR, P->file, line, col);
    if (!n)
        return parse_oom(P, line, col);
    n->quoted = !plain;
    if (memchr(raw, '\0', len)) {
        keypath kp;
        frames_path(P, P->depth, &kp);
        parse_error(P, line, col, kp.s, "NUL characters are not allowed in strings");
        n->str = "";
    } else if (is_key) {
        n->str = doc_strndup(P->doc, raw, len);
    } else if (plain && !ev->data.scalar.tag && is_null_literal(raw, len)) {
        n->type = DR_CFG_NULL;
        /* keep the literal: `type: null` names the null output */
        n->str = doc_strndup(P->doc, raw, len);
    } else {
        n->str = expand_env(P, raw, len, line, col);
    }
    if (!n->str)
        return parse_oom(P, line, col);
    return add_child(P, n);
}

static int on_alias(parser *P, const yaml_event_t *ev)
{
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    char shown[SHOWN_SIZE];
    keypath kp;
    frames_path(P, P->depth, &kp);
    parse_error(P, line, col, kp.s, "aliases (*%s) are not supported; repeat the value instead",
                show((const char *)ev->data.alias.anchor, shown));
    if (expecting_key(P))
        return DR_EINVAL;
    /* Go on with a null in its place to find further errors. */
    dr_cfg_node *n = doc_node(P->doc, DR_CFG_NULL, P->file, line, col);
    if (!n)
        return parse_oom(P, line, col);
    n->str = "";
    return add_child(P, n);
}

static int on_start(parser *P, const yaml_event_t *ev, dr_cfg_type type)
{
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    if (expecting_key(P)) {
        keypath kp;
        frames_path(P, P->depth, &kp);
        parse_error(P, line, col, kp.s, "a key must be a string, not a %s",
                    type == DR_CFG_MAP ? "map" : "list");
        return DR_EINVAL;
    }
    if (P->depth == CFG_MAX_DEPTH) {
        parse_error(P, line, col, NULL, "nested deeper than %d levels", CFG_MAX_DEPTH);
        return DR_EINVAL;
    }
    dr_cfg_node *n = doc_node(P->doc, type, P->file, line, col);
    if (!n)
        return parse_oom(P, line, col);
    P->stack[P->depth++] = (frame){.node = n};
    return 0;
}

/* Reports every key of a finished map that an earlier key already used. */
static int check_duplicates(parser *P, const dr_cfg_node *map)
{
    if (map->n < 2)
        return 0;
    const dr_cfg_pair **idx = sorted_pairs(map);
    if (!idx)
        return parse_oom(P, map->line, map->col);
    keypath base;
    frames_path(P, P->depth - 1, &base);
    size_t first = 0;
    for (size_t i = 1; i < map->n; i++) {
        if (strcmp(idx[i]->key->str, idx[first]->key->str) != 0) {
            first = i;
            continue;
        }
        keypath kp = base;
        kp_key(&kp, idx[i]->key->str);
        const dr_cfg_node *k = idx[i]->key, *k0 = idx[first]->key;
        parse_error(P, k->line, k->col, kp.s, "duplicate key (first defined at line %d, column %d)",
                    k0->line, k0->col);
    }
    free(idx);
    return 0;
}

static int on_end(parser *P)
{
    frame *f = &P->stack[P->depth - 1];
    dr_cfg_node *n = f->node;
    size_t size = n->type == DR_CFG_MAP ? sizeof(dr_cfg_pair) : sizeof(dr_cfg_node *);
    void *v = NULL;
    if (f->n) {
        v = doc_alloc(P->doc, f->n * size);
        if (!v)
            return parse_oom(P, n->line, n->col);
        memcpy(v, f->vec, f->n * size);
    }
    n->n = f->n;
    if (n->type == DR_CFG_MAP) {
        n->pairs = v;
        int rc = check_duplicates(P, n);
        if (rc < 0)
            return rc;
    } else {
        n->items = v;
    }
    free(f->vec);
    P->depth--;
    return add_child(P, n);
}

static int on_event(parser *P, const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++P->ndocs > 1) {
            parse_error(P, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1, NULL,
                        "only one YAML document per file is supported (use a directory of "
                        "files to split a configuration)");
            return DR_EINVAL;
        }
        return 0;
    case YAML_SCALAR_EVENT:
        return on_scalar(P, ev);
    case YAML_ALIAS_EVENT:
        return on_alias(P, ev);
    case YAML_MAPPING_START_EVENT:
        return on_start(P, ev, DR_CFG_MAP);
    case YAML_SEQUENCE_START_EVENT:
        return on_start(P, ev, DR_CFG_SEQ);
    case YAML_MAPPING_END_EVENT:
    case YAML_SEQUENCE_END_EVENT:
        return on_end(P);
    default:
        return 0;
    }
}

/* Line and column of a byte offset, for reader errors (libyaml gives only
 * the offset for those). Columns count characters, as libyaml's do. */
static void offset_position(const unsigned char *text, size_t len, size_t off, int *line, int *col)
{
    int l = 1, c = 1;
    if (off > len)
        off = len;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else if ((text[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static void report_yaml_error(parser *P, const yaml_parser_t *yp)
{
    int line, col;
    if (yp->error == YAML_READER_ERROR) {
        offset_position(P->text, P->len, yp->problem_offset, &line, &col);
    } else {
        line = (int)yp->problem_mark.line + 1;
        col = (int)yp->problem_mark.column + 1;
    }
    const char *problem = yp->problem                      ? yp->problem
                          : yp->error == YAML_MEMORY_ERROR ? "out of memory"
                                                           : "invalid YAML";
    if (yp->error == YAML_READER_ERROR && yp->problem_value >= 0)
        parse_error(P, line, col, NULL, "%s (0x%X)", problem, (unsigned)yp->problem_value);
    else if (yp->context)
        parse_error(P, line, col, NULL, "%s (%s at line %d, column %d)", problem, yp->context,
                    (int)yp->context_mark.line + 1, (int)yp->context_mark.column + 1);
    else
        parse_error(P, line, col, NULL, "%s", problem);
}

static int parse_events(parser *P, yaml_parser_t *yp)
{
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(yp, &ev)) {
            report_yaml_error(P, yp);
            return DR_EINVAL;
        }
        int rc = on_event(P, &ev);
        bool end = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (rc < 0)
            return rc;
        if (end)
            return 0;
    }
}

/* The root of a parsed file: a map; nothing at all counts as an empty map. */
static dr_cfg_node *finish_root(parser *P)
{
    dr_cfg_node *r = P->root;
    if (r && (r->type == DR_CFG_MAP || (P->untrusted && r->type == DR_CFG_SEQ)))
        return r;
    if (r && r->type != DR_CFG_NULL) {
        parse_error(P, r->line, r->col, NULL,
                    "the top level must be a map of keys (such as `inputs:`), not a %s",
                    r->type == DR_CFG_SEQ ? "list" : "string");
        return NULL;
    }
    dr_cfg_node *m = doc_node(P->doc, DR_CFG_MAP, P->file, r ? r->line : 1, r ? r->col : 1);
    if (!m)
        parse_oom(P, 1, 1);
    return m;
}

/* Parses one file's text into its root map. Returns NULL after recording
 * errors (*nerr counts them). */
static dr_cfg_node *parse_yaml(dr_cfg_doc *doc, const char *file, const char *text, size_t len,
                               bool untrusted, dr_cfg_errors *errs, int *nerr)
{
    parser *P = calloc(1, sizeof *P);
    if (!P) {
        errs_add(errs, file, 1, 1, NULL, "out of memory");
        (*nerr)++;
        return NULL;
    }
    P->doc = doc;
    P->errs = errs;
    P->file = file;
    P->text = (const unsigned char *)text;
    P->len = len;
    P->untrusted = untrusted;
    dr_cfg_node *root = NULL;
    yaml_parser_t yp;
    if (!yaml_parser_initialize(&yp)) {
        parse_oom(P, 1, 1);
    } else {
        yaml_parser_set_input_string(&yp, (const unsigned char *)text, len);
        int rc = parse_events(P, &yp);
        yaml_parser_delete(&yp);
        if (rc == 0 && P->nerr == 0)
            root = finish_root(P);
    }
    for (int i = 0; i < P->depth; i++) /* frames left open by an error */
        free(P->stack[i].vec);
    *nerr += P->nerr;
    doc->value_errors += P->nsoft;
    if (P->nerr)
        root = NULL;
    free(P);
    return root;
}

/* ---- merging files ------------------------------------------------------------ */

static bool is_concat_key(const char *k)
{
    return strcmp(k, "inputs") == 0 || strcmp(k, "filters") == 0 || strcmp(k, "outputs") == 0;
}

static dr_cfg_node *merge_maps(dr_cfg_doc *doc, const dr_cfg_node *a, const dr_cfg_node *b,
                               bool top);

static dr_cfg_node *concat_seqs(dr_cfg_doc *doc, const dr_cfg_node *a, const dr_cfg_node *b)
{
    dr_cfg_node *s = doc_node(doc, DR_CFG_SEQ, a->file, a->line, a->col);
    if (!s)
        return NULL;
    s->n = a->n + b->n;
    if (s->n) {
        s->items = doc_alloc(doc, s->n * sizeof *s->items);
        if (!s->items)
            return NULL;
        if (a->n)
            memcpy(s->items, a->items, a->n * sizeof *s->items);
        if (b->n)
            memcpy(s->items + a->n, b->items, b->n * sizeof *s->items);
    }
    return s;
}

/* What a later file's value `b` makes of an earlier value `a`: maps merge,
 * the top-level lists concatenate (a null adds nothing), anything else is
 * replaced. */
static dr_cfg_node *merge_value(dr_cfg_doc *doc, dr_cfg_node *a, dr_cfg_node *b, bool concat)
{
    if (a->type == DR_CFG_MAP && b->type == DR_CFG_MAP)
        return merge_maps(doc, a, b, false);
    if (concat) {
        if (b->type == DR_CFG_NULL)
            return a;
        if (a->type == DR_CFG_SEQ && b->type == DR_CFG_SEQ)
            return concat_seqs(doc, a, b);
    }
    return b;
}

/* A new map: a's keys in a's order with b's values merged in, then b's new
 * keys in b's order. Neither input is changed. */
static dr_cfg_node *merge_maps(dr_cfg_doc *doc, const dr_cfg_node *a, const dr_cfg_node *b,
                               bool top)
{
    dr_cfg_node *m = doc_node(doc, DR_CFG_MAP, a->file, a->line, a->col);
    if (!m)
        return NULL;
    if (a->n + b->n == 0)
        return m;
    m->pairs = doc_alloc(doc, (a->n + b->n) * sizeof *m->pairs);
    const dr_cfg_pair **idx = m->pairs ? sorted_pairs(a) : NULL;
    if (!idx)
        return NULL;
    if (a->n)
        memcpy(m->pairs, a->pairs, a->n * sizeof *m->pairs);
    m->n = a->n;
    for (size_t i = 0; i < b->n; i++) {
        const dr_cfg_pair *bp = &b->pairs[i];
        long j = sorted_find(a, idx, bp->key->str);
        if (j < 0) {
            m->pairs[m->n++] = *bp;
            continue;
        }
        dr_cfg_node *v =
            merge_value(doc, a->pairs[j].val, bp->val, top && is_concat_key(bp->key->str));
        if (!v) {
            free(idx);
            return NULL;
        }
        m->pairs[j].key = bp->key; /* errors about the value point at the later file */
        m->pairs[j].val = v;
    }
    free(idx);
    return m;
}

/* ---- loading files and directories ----------------------------------------------- */

/* Reads a whole file of at most CFG_MAX_FILE_BYTES; a larger one is refused
 * after reading one byte past the limit, whatever its size claims (pipes and
 * /proc files have none). Returns 0, or a negative DR_E* with *why set. */
static int read_bounded(const char *path, char **out, size_t *len, const char **why)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *why = strerror(errno);
        return DR_EIO;
    }
    struct stat st;
    size_t cap = 4096;
    if (fstat(fd, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            close(fd);
            *why = "is a directory";
            return DR_EIO;
        }
        if (S_ISREG(st.st_mode) && st.st_size > 0)
            cap = (uint64_t)st.st_size < CFG_MAX_FILE_BYTES ? (size_t)st.st_size + 1
                                                            : CFG_MAX_FILE_BYTES + 1;
    }
    char *buf = malloc(cap);
    size_t n = 0;
    int rc = 0;
    *why = "out of memory";
    if (!buf)
        rc = DR_ENOMEM;
    while (rc == 0 && n <= CFG_MAX_FILE_BYTES) {
        if (n == cap) {
            size_t ncap = cap * 2 > CFG_MAX_FILE_BYTES + 1 ? CFG_MAX_FILE_BYTES + 1 : cap * 2;
            char *p = realloc(buf, ncap);
            if (!p) {
                rc = DR_ENOMEM;
                break;
            }
            buf = p;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r == 0)
            break;
        if (r < 0 && errno != EINTR) {
            *why = strerror(errno);
            rc = DR_EIO;
        }
        if (r > 0)
            n += (size_t)r;
    }
    close(fd);
    if (rc == 0 && n > CFG_MAX_FILE_BYTES) {
        *why = "the file is larger than 16 MiB";
        rc = DR_EINVAL;
    }
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = n;
    return 0;
}

static dr_cfg_node *load_file(dr_cfg_doc *doc, const char *path, dr_cfg_errors *errs, int *nerr)
{
    char *file = doc_strndup(doc, path, strlen(path));
    if (!file) {
        errs_add(errs, NULL, 0, 0, path, "out of memory");
        (*nerr)++;
        return NULL;
    }
    char *text;
    size_t len;
    const char *why;
    if (read_bounded(path, &text, &len, &why) < 0) {
        errs_add(errs, NULL, 0, 0, path, "cannot load: %s", why);
        (*nerr)++;
        return NULL;
    }
    dr_cfg_node *root = parse_yaml(doc, file, text, len, false, errs, nerr);
    free(text);
    return root;
}

static bool is_yaml_name(const char *name)
{
    size_t n = strlen(name);
    if (name[0] == '.') /* hidden files, editors' leftovers, ConfigMap internals */
        return false;
    return (n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
           (n > 4 && strcmp(name + n - 4, ".yml") == 0);
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The full paths of the directory's regular *.yaml / *.yml files, sorted by
 * name. Returns the count, or a negative DR_E* after recording an error. */
static long list_yaml_files(const char *dir, char ***out, dr_cfg_errors *errs)
{
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) {
        errs_add(errs, NULL, 0, 0, dir, "cannot open directory: %s", strerror(errno));
        return DR_EIO;
    }
    size_t dlen = strlen(dir);
    const char *sep = dlen && dir[dlen - 1] == '/' ? "" : "/";
    char **names = calloc(CFG_MAX_FILES, sizeof *names);
    size_t n = 0;
    int rc = names ? 0 : DR_ENOMEM;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (!is_yaml_name(de->d_name))
            continue;
        if (n == CFG_MAX_FILES) {
            errs_add(errs, NULL, 0, 0, dir, "more than %d configuration files", CFG_MAX_FILES);
            rc = DR_EINVAL;
            break;
        }
        size_t size = dlen + strlen(sep) + strlen(de->d_name) + 1;
        char *full = malloc(size);
        if (!full) {
            rc = DR_ENOMEM;
            break;
        }
        snprintf(full, size, "%s%s%s", dir, sep, de->d_name);
        struct stat st;
        if (stat(full, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(full); /* a dangling link or a directory named x.yaml */
            continue;
        }
        names[n++] = full;
    }
    closedir(d);
    if (rc == DR_ENOMEM)
        errs_add(errs, NULL, 0, 0, dir, "out of memory");
    if (rc == 0 && n == 0) {
        errs_add(errs, NULL, 0, 0, dir, "no *.yaml or *.yml files in the directory");
        rc = DR_EINVAL;
    }
    if (rc < 0) {
        free_names(names, n);
        return rc;
    }
    qsort(names, n, sizeof *names, cmp_str_ptr);
    *out = names;
    return (long)n;
}

static dr_cfg_node *load_dir(dr_cfg_doc *doc, const char *dir, dr_cfg_errors *errs, int *nerr)
{
    char **names;
    long n = list_yaml_files(dir, &names, errs);
    if (n < 0) {
        (*nerr)++;
        return NULL;
    }
    dr_cfg_node *merged = NULL;
    for (long i = 0; i < n; i++) {
        /* Every file is parsed, even after a failure, to report all errors. */
        dr_cfg_node *root = load_file(doc, names[i], errs, nerr);
        if (!root || *nerr)
            continue;
        merged = merged ? merge_maps(doc, merged, root, true) : root;
        if (!merged) {
            errs_add(errs, NULL, 0, 0, dir, "out of memory while merging %s", names[i]);
            (*nerr)++;
        }
    }
    free_names(names, (size_t)n);
    return *nerr ? NULL : merged;
}

dr_cfg_doc *dr_cfg_load(const char *path, dr_cfg_errors *errs)
{
    struct stat st;
    if (!path || stat(path, &st) != 0) {
        errs_add(errs, NULL, 0, 0, path ? path : "(null)", "cannot load: %s",
                 path ? strerror(errno) : "no path");
        return NULL;
    }
    dr_cfg_doc *doc = doc_new();
    if (!doc) {
        errs_add(errs, NULL, 0, 0, path, "out of memory");
        return NULL;
    }
    int nerr = 0;
    doc->root =
        S_ISDIR(st.st_mode) ? load_dir(doc, path, errs, &nerr) : load_file(doc, path, errs, &nerr);
    if (nerr || !doc->root) {
        dr_cfg_doc_free(doc);
        return NULL;
    }
    return doc;
}

static dr_cfg_doc *load_string(const char *name, const char *yaml, bool untrusted,
                               dr_cfg_errors *errs)
{
    if (!name)
        name = "<string>";
    size_t len = yaml ? strlen(yaml) : 0;
    if (len > CFG_MAX_FILE_BYTES) {
        errs_add(errs, NULL, 0, 0, name, "the configuration is larger than 16 MiB");
        return NULL;
    }
    dr_cfg_doc *doc = doc_new();
    char *file = doc ? doc_strndup(doc, name, strlen(name)) : NULL;
    if (!file) {
        errs_add(errs, NULL, 0, 0, name, "out of memory");
        dr_cfg_doc_free(doc);
        return NULL;
    }
    int nerr = 0;
    doc->root = parse_yaml(doc, file, yaml ? yaml : "", len, untrusted, errs, &nerr);
    if (nerr || !doc->root) {
        dr_cfg_doc_free(doc);
        return NULL;
    }
    return doc;
}

dr_cfg_doc *dr_cfg_load_string(const char *name, const char *yaml, dr_cfg_errors *errs)
{
    return load_string(name, yaml, false, errs);
}

dr_cfg_doc *dr_cfg_load_untrusted(const char *name, const char *yaml, dr_cfg_errors *errs)
{
    return load_string(name, yaml, true, errs);
}

/* ---- value parsers ------------------------------------------------------------------ */

typedef enum { PARSED = 0, NOT_VALID, TOO_LARGE } parse_status;

/* A non-negative decimal with an optional fraction: "12", "1.5". Only the
 * first CFG_FRACTION_DIGITS fraction digits count (the rest must still be
 * digits), which keeps frac * unit within 64 bits for every unit we have. */
typedef struct decimal {
    uint64_t whole;
    uint64_t frac;  /* the fraction is frac / scale */
    uint64_t scale; /* 1 when there is no fraction */
    bool overflow;
} decimal;

static bool read_decimal(const char **pp, decimal *d)
{
    const char *p = *pp;
    *d = (decimal){.scale = 1};
    if (!is_digit((unsigned char)*p))
        return false;
    for (; is_digit((unsigned char)*p); p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (d->whole > (UINT64_MAX - digit) / 10)
            d->overflow = true;
        else
            d->whole = d->whole * 10 + digit;
    }
    if (*p == '.') {
        p++;
        if (!is_digit((unsigned char)*p))
            return false;
        for (int kept = 0; is_digit((unsigned char)*p); p++) {
            if (kept++ < CFG_FRACTION_DIGITS) {
                d->frac = d->frac * 10 + (uint64_t)(*p - '0');
                d->scale *= 10;
            }
        }
    }
    *pp = p;
    return true;
}

/* d * unit, truncated to a whole number; false on overflow. */
static bool scale_decimal(const decimal *d, uint64_t unit, uint64_t *out)
{
    uint64_t whole;
    if (d->overflow || __builtin_mul_overflow(d->whole, unit, &whole))
        return false;
    return !__builtin_add_overflow(whole, d->frac * unit / d->scale, out);
}

static parse_status parse_int(const char *s, int64_t *v)
{
    const char *p = s;
    bool neg = *p == '-';
    if (*p == '-' || *p == '+')
        p++;
    if (!is_digit((unsigned char)*p))
        return NOT_VALID;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, acc = 0;
    bool overflow = false;
    for (; is_digit((unsigned char)*p); p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (acc > (limit - digit) / 10)
            overflow = true;
        else
            acc = acc * 10 + digit;
    }
    if (*p)
        return NOT_VALID;
    if (overflow)
        return TOO_LARGE;
    *v = neg ? (acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc) : (int64_t)acc;
    return PARSED;
}

static parse_status parse_size(const char *s, uint64_t *bytes)
{
    static const struct {
        const char *suffix;
        uint64_t mult;
    } units[] = {
        {"", 1},
        {"b", 1},
        {"k", 1ull << 10},
        {"kib", 1ull << 10},
        {"ki", 1ull << 10},
        {"kb", 1000ull},
        {"m", 1ull << 20},
        {"mib", 1ull << 20},
        {"mi", 1ull << 20},
        {"mb", 1000000ull},
        {"g", 1ull << 30},
        {"gib", 1ull << 30},
        {"gi", 1ull << 30},
        {"gb", 1000000000ull},
        {"t", 1ull << 40},
        {"tib", 1ull << 40},
        {"ti", 1ull << 40},
        {"tb", 1000000000000ull},
    };
    const char *p = s;
    decimal d;
    if (!read_decimal(&p, &d))
        return NOT_VALID;
    while (*p == ' ')
        p++;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(p, units[i].suffix) != 0)
            continue;
        if (units[i].mult == 1 && d.frac) /* no fractions of a byte */
            return NOT_VALID;
        return scale_decimal(&d, units[i].mult, bytes) ? PARSED : TOO_LARGE;
    }
    return NOT_VALID;
}

static parse_status parse_duration(const char *s, int64_t *ms)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    if (strcmp(s, "0") == 0) {
        *ms = 0;
        return PARSED;
    }
    const char *p = s;
    uint64_t total = 0;
    if (!*p)
        return NOT_VALID;
    while (*p) {
        decimal d;
        if (!read_decimal(&p, &d))
            return NOT_VALID;
        size_t i = 0, ulen = 0;
        for (; i < sizeof units / sizeof units[0]; i++) {
            ulen = strlen(units[i].unit);
            /* "ms" is tried before "m" */
            if (strncmp(p, units[i].unit, ulen) == 0)
                break;
        }
        if (i == sizeof units / sizeof units[0])
            return NOT_VALID; /* a number without a unit */
        uint64_t part;
        if (!scale_decimal(&d, units[i].ms, &part) || __builtin_add_overflow(total, part, &total) ||
            total > (uint64_t)INT64_MAX)
            return TOO_LARGE;
        p += ulen;
    }
    *ms = (int64_t)total;
    return PARSED;
}

static parse_status parse_bool(const char *s, bool *v)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *v = true;
            return PARSED;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *v = false;
            return PARSED;
        }
    }
    return NOT_VALID;
}

int dr_parse_size(const char *s, uint64_t *bytes)
{
    return s && parse_size(s, bytes) == PARSED ? 0 : DR_EINVAL;
}

int dr_parse_duration(const char *s, int64_t *ms)
{
    return s && parse_duration(s, ms) == PARSED ? 0 : DR_EINVAL;
}

int dr_parse_bool(const char *s, bool *v)
{
    return s && parse_bool(s, v) == PARSED ? 0 : DR_EINVAL;
}

/* ---- applying option tables ------------------------------------------------------------ */

typedef union opt_value {
    char *s;
    int64_t i;
    uint64_t u;
    bool b;
    int e;
    dr_strlist l;
    const dr_cfg_node *node;
} opt_value;

typedef struct applier {
    const dr_option *opts;
    const char *const *extra;
    size_t nopts, nextra;
    const char *path;
    const dr_cfg_node *where; /* the position of a missing map (a null value) */
    dr_cfg_errors *errs;
    int nerr;
} applier;

/* Records an error about option key `rel` (relative to the applier's path;
 * NULL for the map itself) at node `at` (may be NULL). */
static void apply_error(applier *A, const dr_cfg_node *at, const char *rel, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void apply_error(applier *A, const dr_cfg_node *at, const char *rel, const char *fmt, ...)
{
    keypath kp;
    kp_init(&kp, A->path);
    if (rel)
        kp_key(&kp, rel);
    va_list ap;
    va_start(ap, fmt);
    if (at)
        errs_vadd(A->errs, at->file, at->line, at->col, kp.s, fmt, ap);
    else
        errs_vadd(A->errs, NULL, 0, 0, kp.s, fmt, ap);
    va_end(ap);
    A->nerr++;
}

static void strlist_free(dr_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* A list with room for n strings and a terminating NULL. */
static bool strlist_init(dr_strlist *l, size_t n)
{
    l->n = 0;
    l->v = calloc(n + 1, sizeof *l->v);
    return l->v != NULL;
}

static void *field_of(const dr_option *o, void *conf)
{
    return (char *)conf + o->offset;
}

/* Replaces the field's value (freeing the old one) with v. */
static void field_store(const dr_option *o, void *conf, opt_value *v)
{
    void *f = field_of(o, conf);
    switch (o->type) {
    case DR_OPT_STRING:
        free(*(char **)f);
        *(char **)f = v->s;
        break;
    case DR_OPT_INT:
    case DR_OPT_DURATION:
        *(int64_t *)f = v->i;
        break;
    case DR_OPT_BOOL:
        *(bool *)f = v->b;
        break;
    case DR_OPT_SIZE:
        *(uint64_t *)f = v->u;
        break;
    case DR_OPT_STRLIST:
        strlist_free((dr_strlist *)f);
        *(dr_strlist *)f = v->l;
        break;
    case DR_OPT_ENUM:
        *(int *)f = v->e;
        break;
    case DR_OPT_GROUP:
        break; /* flattened away before values are stored */
    case DR_OPT_NODE:
        *(const dr_cfg_node **)f = v->node;
        break;
    }
}

static const char *type_name(dr_opt_type t)
{
    switch (t) {
    case DR_OPT_STRING:
        return "a string";
    case DR_OPT_INT:
        return "an integer";
    case DR_OPT_BOOL:
        return "true or false";
    case DR_OPT_SIZE:
        return "a size (such as 64KiB)";
    case DR_OPT_DURATION:
        return "a duration (such as 5s)";
    case DR_OPT_STRLIST:
        return "a string or a list of strings";
    case DR_OPT_ENUM:
        return "one of a fixed set of words";
    case DR_OPT_GROUP:
        return "a map";
    case DR_OPT_NODE:
        return "a YAML value";
    }
    return "a value";
}

static bool has_range(const dr_option *o)
{
    return o->min < o->max;
}

static bool in_range_u(const dr_option *o, uint64_t v)
{
    uint64_t lo = o->min < 0 ? 0 : (uint64_t)o->min;
    return o->max >= 0 && v >= lo && v <= (uint64_t)o->max;
}

/* A list default written as in YAML's flow style, "[a, b, c]" (items
 * without quotes or commas of their own). */
static bool parse_default_list(const char *s, dr_strlist *l, char *why, size_t cap)
{
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    if (!strlist_init(l, n)) {
        snprintf(why, cap, "out of memory");
        return false;
    }
    const char *p = s + 1;
    while (*p && *p != ']') {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, ",]");
        size_t end = len;
        while (end > 0 && p[end - 1] == ' ')
            end--;
        if (end > 0 && !(l->v[l->n++] = strndup(p, end))) {
            strlist_free(l);
            snprintf(why, cap, "out of memory");
            return false;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return true;
}

/* Parses scalar text for option o into *v. On failure writes a message
 * into why and returns false. */
static bool parse_option_text(const dr_option *o, const char *s, opt_value *v, char *why,
                              size_t cap)
{
    char shown[SHOWN_SIZE];
    parse_status st;
    switch (o->type) {
    case DR_OPT_STRING:
        v->s = strdup(s);
        if (!v->s)
            snprintf(why, cap, "out of memory");
        return v->s != NULL;
    case DR_OPT_INT:
        st = parse_int(s, &v->i);
        if (st == NOT_VALID)
            snprintf(why, cap, "expected an integer, got \"%s\"", show(s, shown));
        else if (st == TOO_LARGE)
            snprintf(why, cap, "integer \"%s\" is out of range", show(s, shown));
        else if (has_range(o) && (v->i < o->min || v->i > o->max))
            snprintf(why, cap, "must be between %lld and %lld, got %lld", (long long)o->min,
                     (long long)o->max, (long long)v->i);
        else
            return true;
        return false;
    case DR_OPT_BOOL:
        if (parse_bool(s, &v->b) == PARSED)
            return true;
        snprintf(why, cap, "expected true or false (or yes/no, on/off), got \"%s\"",
                 show(s, shown));
        return false;
    case DR_OPT_SIZE:
        st = parse_size(s, &v->u);
        if (st == NOT_VALID)
            snprintf(why, cap,
                     "invalid size \"%s\" (use bytes or a number with B, KB, MB, GB, KiB, "
                     "MiB or GiB)",
                     show(s, shown));
        else if (st == TOO_LARGE)
            snprintf(why, cap, "size \"%s\" is too large", show(s, shown));
        else if (has_range(o) && !in_range_u(o, v->u))
            snprintf(why, cap, "must be between %lld and %lld bytes, got %llu", (long long)o->min,
                     (long long)o->max, (unsigned long long)v->u);
        else
            return true;
        return false;
    case DR_OPT_DURATION:
        st = parse_duration(s, &v->i);
        if (st == NOT_VALID)
            snprintf(why, cap,
                     "invalid duration \"%s\" (use numbers with ms, s, m or h, such as 500ms, "
                     "30s or 1h30m)",
                     show(s, shown));
        else if (st == TOO_LARGE)
            snprintf(why, cap, "duration \"%s\" is too large", show(s, shown));
        else if (has_range(o) && (v->i < o->min || v->i > o->max))
            snprintf(why, cap, "must be between %lldms and %lldms, got %lldms", (long long)o->min,
                     (long long)o->max, (long long)v->i);
        else
            return true;
        return false;
    case DR_OPT_STRLIST:
        if (o->def == s && s[0] == '[')
            return parse_default_list(s, &v->l, why, cap);
        /* A default or a single scalar: a list of one; an empty default is
         * an empty list. */
        if (!strlist_init(&v->l, 1)) {
            snprintf(why, cap, "out of memory");
            return false;
        }
        if (*s && !(v->l.v[v->l.n++] = strdup(s))) {
            strlist_free(&v->l);
            snprintf(why, cap, "out of memory");
            return false;
        }
        return true;
    case DR_OPT_ENUM:
        for (int i = 0; o->choices && o->choices[i]; i++) {
            if (strcmp(s, o->choices[i]) == 0) {
                v->e = i;
                return true;
            }
        }
        {
            dr_buf list = {0};
            for (int i = 0; o->choices && o->choices[i]; i++)
                dr_buf_printf(&list, "%s%s", i ? ", " : "", o->choices[i]);
            snprintf(why, cap, "\"%s\" is not one of: %.*s", show(s, shown), (int)list.len,
                     list.p ? list.p : "");
            dr_buf_free(&list);
        }
        return false;
    case DR_OPT_GROUP:
        break; /* flattened away before values are parsed */
    case DR_OPT_NODE:
        snprintf(why, cap, "a structured option has no default text");
        return false;
    }
    snprintf(why, cap, "unknown option type");
    return false;
}

/* A YAML list of scalars into v->l; errors at the offending items. */
static bool parse_option_list(applier *A, const dr_option *o, const dr_cfg_node *seq, opt_value *v)
{
    if (!strlist_init(&v->l, seq->n)) {
        apply_error(A, seq, o->name, "out of memory");
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < seq->n; i++) {
        const dr_cfg_node *it = seq->items[i];
        if (it->type != DR_CFG_SCALAR) {
            keypath rel;
            kp_init(&rel, o->name);
            kp_index(&rel, i);
            apply_error(A, it, rel.s, "expected a string, got %s",
                        it->type == DR_CFG_MAP   ? "a map"
                        : it->type == DR_CFG_SEQ ? "a list"
                                                 : "nothing (null)");
            ok = false;
        } else if (ok && !(v->l.v[v->l.n++] = strdup(it->str))) {
            apply_error(A, it, o->name, "out of memory");
            ok = false;
        }
    }
    if (!ok)
        strlist_free(&v->l);
    return ok;
}

/* Applies a YAML value to one option. */
static void apply_node(applier *A, const dr_option *o, const dr_cfg_node *val, void *conf)
{
    opt_value v = {0};
    if (o->type == DR_OPT_NODE) {
        v.node = val; /* the plugin reads it in its init */
        field_store(o, conf, &v);
        return;
    }
    if (o->type == DR_OPT_STRLIST && val->type == DR_CFG_SEQ) {
        if (parse_option_list(A, o, val, &v))
            field_store(o, conf, &v);
        return;
    }
    if (val->type != DR_CFG_SCALAR) {
        apply_error(A, val, o->name, "expected %s, got a %s", type_name(o->type),
                    val->type == DR_CFG_MAP ? "map" : "list");
        return;
    }
    char why[CFG_MAX_MSG / 2];
    if (parse_option_text(o, val->str, &v, why, sizeof why))
        field_store(o, conf, &v);
    else
        apply_error(A, val, o->name, "%s", why);
}

/* Applies an option's default. A default that does not parse is a bug in
 * the option table; it is reported like any error so it cannot go unseen. */
static void apply_default(applier *A, const dr_option *o, const dr_cfg_node *map, void *conf)
{
    opt_value v = {0};
    char why[CFG_MAX_MSG / 2];
    if (parse_option_text(o, o->def, &v, why, sizeof why))
        field_store(o, conf, &v);
    else
        apply_error(A, map, o->name, "invalid default: %s", why);
}

/* Finds the value for a dotted option name. *parent is set to the deepest
 * map reached (where a missing key is reported); when an intermediate value
 * is not a map, returns NULL with *blocker set to it and *blocker_len to the
 * length of the name's prefix that leads to it. */
static const dr_cfg_node *lookup_option(const dr_cfg_node *map, const char *name,
                                        const dr_cfg_node **parent, const dr_cfg_node **blocker,
                                        size_t *blocker_len)
{
    *parent = map;
    *blocker = NULL;
    const char *seg = name;
    for (;;) {
        const char *dot = strchr(seg, '.');
        size_t len = dot ? (size_t)(dot - seg) : strlen(seg);
        const dr_cfg_node *v = map_get_n(*parent, seg, len);
        if (!dot || !v || v->type == DR_CFG_NULL)
            return v;
        if (v->type != DR_CFG_MAP) {
            *blocker = v;
            *blocker_len = (size_t)(dot - name);
            return NULL;
        }
        *parent = v;
        seg = dot + 1;
    }
}

static void apply_option(applier *A, const dr_option *o, const dr_cfg_node *map, void *conf)
{
    if (o->def)
        apply_default(A, o, map, conf);
    if (map && map->type != DR_CFG_MAP)
        return; /* already reported; defaults only */
    const dr_cfg_node *parent, *blocker;
    size_t blen = 0;
    const dr_cfg_node *v = lookup_option(map, o->name, &parent, &blocker, &blen);
    if (blocker) {
        char rel[CFG_MAX_KEYPATH];
        snprintf(rel, sizeof rel, "%.*s", (int)blen, o->name);
        apply_error(A, blocker, rel, "expected a map");
        return;
    }
    if (v && v->type != DR_CFG_NULL) {
        apply_node(A, o, v, conf);
    } else if (o->flags & DR_OPT_REQUIRED) {
        if (v)
            apply_error(A, v, o->name, "a value is required");
        else
            apply_error(A, parent ? parent : A->where, o->name, "missing required key");
    }
}

/* The names an applier accepts: its options' names, then the extra keys. */
static const char *known_at(const applier *A, size_t i)
{
    if (i < A->nopts)
        return A->opts[i].name;
    return i - A->nopts < A->nextra ? A->extra[i - A->nopts] : NULL;
}

/* 0: unknown, 1: an option or extra key, 2: a map on the way to one. */
static int known_kind(const applier *A, const char *full, size_t len)
{
    int kind = 0;
    const char *k;
    for (size_t i = 0; (k = known_at(A, i)); i++) {
        if (strncmp(k, full, len) != 0)
            continue;
        if (k[len] == '\0')
            return 1;
        if (k[len] == '.')
            kind = 2;
    }
    return kind;
}

/* Optimal string alignment distance (an adjacent swap costs 1), or 3 when
 * it is certainly more than 2. */
static int edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
    enum { MAXLEN = 64 };
    if (la > MAXLEN || lb > MAXLEN || (la > lb ? la - lb : lb - la) > 2)
        return 3;
    int rows[3][MAXLEN + 1]; /* row i lives in rows[i % 3] */
    for (size_t j = 0; j <= lb; j++)
        rows[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int *cur = rows[i % 3], *prev = rows[(i + 2) % 3], *prev2 = rows[(i + 1) % 3];
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int cost = a[i - 1] != b[j - 1];
            int d = prev[j] + 1;
            if (cur[j - 1] + 1 < d)
                d = cur[j - 1] + 1;
            if (prev[j - 1] + cost < d)
                d = prev[j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                prev2[j - 2] + 1 < d)
                d = prev2[j - 2] + 1;
            cur[j] = d;
        }
    }
    return rows[la % 3][lb];
}

/* The known key at the level of `prefix` (the keys of the map reached by
 * prefix) closest to `key`, if within distance 2 and shorter than the key
 * itself (so "x" does not suggest "id"). Writes it to out (cap > 0). */
static bool suggest_key(const applier *A, const char *prefix, const char *key, char *out,
                        size_t cap)
{
    size_t plen = strlen(prefix), klen = strlen(key);
    int best = 3;
    out[0] = '\0';
    const char *k;
    for (size_t i = 0; (k = known_at(A, i)); i++) {
        if (plen && (strncmp(k, prefix, plen) != 0 || k[plen] != '.'))
            continue;
        const char *seg = plen ? k + plen + 1 : k;
        const char *dot = strchr(seg, '.');
        size_t slen = dot ? (size_t)(dot - seg) : strlen(seg);
        int d = edit_distance(key, klen, seg, slen);
        if (d > best || d > 2 || (size_t)d >= klen)
            continue;
        /* Ties go to the first in name order, not table order: the agent
         * applies two tables to one map, and both must suggest the same. */
        char cand[128];
        snprintf(cand, sizeof cand, "%.*s", (int)slen, seg);
        if (d < best || strcmp(cand, out) < 0) {
            best = d;
            snprintf(out, cap, "%s", cand);
        }
    }
    return best <= 2;
}

/* Reports the keys of `map` (reached by `prefix`, "" for the applier's own
 * map) that no option or extra key accounts for, descending into the maps
 * that dotted option names reach into. */
static void check_unknown_keys(applier *A, const dr_cfg_node *map, const char *prefix)
{
    for (size_t i = 0; i < map->n; i++) {
        const dr_cfg_node *key = map->pairs[i].key, *val = map->pairs[i].val;
        char full[CFG_MAX_KEYPATH];
        int len = snprintf(full, sizeof full, "%s%s%s", prefix, *prefix ? "." : "", key->str);
        if (len < 0 || (size_t)len >= sizeof full) {
            apply_error(A, key, NULL, "unknown key (%zu bytes long)", strlen(key->str));
            continue;
        }
        int kind = known_kind(A, full, (size_t)len);
        if (kind && strchr(key->str, '.')) {
            apply_error(A, key, full, "unknown key (write dotted options as nested maps)");
            continue;
        }
        if (kind == 1)
            continue;
        if (kind == 2) {
            if (val->type == DR_CFG_MAP)
                check_unknown_keys(A, val, full);
            continue; /* null is fine; another type is reported by the option */
        }
        char hint[128];
        if (suggest_key(A, prefix, key->str, hint, sizeof hint))
            apply_error(A, key, full, "unknown key, did you mean \"%s\"?", hint);
        else
            apply_error(A, key, full, "unknown key");
    }
}

static int apply_flat_options(const dr_option *opts, const dr_cfg_node *map, void *conf,
                              const char *path, const char *const *extra_keys, dr_cfg_errors *errs);

/* Length of an option name's first key ("oauth2" of "oauth2.token_url"). */
static size_t top_key_len(const char *name)
{
    return strcspn(name, ".");
}

/* The value of an option's top-level key in map (present: checked). */
static const dr_cfg_node *top_value(const dr_cfg_node *map, const char *name)
{
    return map_get_n(map, name, top_key_len(name));
}

static bool comes_before(const dr_cfg_node *a, const dr_cfg_node *b)
{
    return a->line < b->line || (a->line == b->line && a->col < b->col);
}

/* DR_OPT_ONE_OF: flagged options set under two top-level keys are reported
 * at whichever of the two comes later in the file. */
static void check_one_of(applier *A, const dr_cfg_node *map)
{
    const dr_option *first = NULL;
    for (size_t i = 0; i < A->nopts; i++) {
        const dr_option *o = &A->opts[i];
        if (!(o->flags & DR_OPT_ONE_OF))
            continue;
        const dr_cfg_node *parent, *blocker;
        size_t blen = 0;
        const dr_cfg_node *v = lookup_option(map, o->name, &parent, &blocker, &blen);
        if (!v || v->type == DR_CFG_NULL)
            continue;
        size_t len = top_key_len(o->name);
        if (!first) {
            first = o;
            continue;
        }
        if (top_key_len(first->name) == len && strncmp(first->name, o->name, len) == 0)
            continue;
        const dr_cfg_node *a = top_value(map, first->name), *b = top_value(map, o->name);
        const dr_option *later = comes_before(a, b) ? o : first;
        const dr_option *other = later == o ? first : o;
        char top[CFG_MAX_KEYPATH];
        snprintf(top, sizeof top, "%.*s", (int)top_key_len(later->name), later->name);
        apply_error(A, later == o ? b : a, top,
                    "cannot be set with %.*s: choose one way to authenticate",
                    (int)top_key_len(other->name), other->name);
        return;
    }
}

static size_t count_flat_options(const dr_option *opts)
{
    size_t n = 0;
    for (const dr_option *o = opts; o && o->name; o++)
        n += o->type == DR_OPT_GROUP ? count_flat_options(o->group) : 1;
    return n;
}

/* Copies the options of `opts` to `out` (names prefixed, offsets moved by
 * `base`); returns the next free slot, or NULL on allocation failure. */
static dr_option *flatten_into(const dr_option *opts, const char *prefix, size_t base,
                               dr_option *out)
{
    for (const dr_option *o = opts; o && o->name; o++) {
        char name[CFG_MAX_KEYPATH];
        snprintf(name, sizeof name, "%s%s%s", prefix, *prefix && *o->name ? "." : "", o->name);
        if (o->type == DR_OPT_GROUP) {
            out = flatten_into(o->group, name, base + o->offset, out);
            if (!out)
                return NULL;
            continue;
        }
        *out = *o;
        out->offset = base + o->offset;
        out->name = strdup(name);
        if (!out->name)
            return NULL;
        out++;
    }
    return out;
}

dr_option *dr_options_flatten(const dr_option *opts)
{
    dr_option *flat = calloc(count_flat_options(opts) + 1, sizeof *flat);
    if (flat && !flatten_into(opts, "", 0, flat)) {
        dr_options_free(flat);
        return NULL;
    }
    return flat;
}

void dr_options_free(dr_option *flat)
{
    for (dr_option *o = flat; o && o->name; o++)
        free((char *)o->name);
    free(flat);
}

int dr_cfg_apply(const dr_option *opts, const dr_cfg_node *map, void *conf, const char *path,
                 const char *const *extra_keys, dr_cfg_errors *errs)
{
    dr_option *flat = dr_options_flatten(opts);
    if (!flat && opts) {
        errs_add(errs, NULL, 0, 0, path ? path : "", "out of memory");
        return 1;
    }
    int nerr = apply_flat_options(flat, map, conf, path, extra_keys, errs);
    dr_options_free(flat);
    return nerr;
}

static int apply_flat_options(const dr_option *opts, const dr_cfg_node *map, void *conf,
                              const char *path, const char *const *extra_keys, dr_cfg_errors *errs)
{
    applier A = {.opts = opts, .extra = extra_keys, .path = path ? path : "", .errs = errs};
    while (opts && opts[A.nopts].name)
        A.nopts++;
    while (extra_keys && extra_keys[A.nextra])
        A.nextra++;
    if (map && map->type == DR_CFG_NULL) {
        A.where = map; /* `agent:` with nothing under it */
        map = NULL;
    }
    if (map && map->type != DR_CFG_MAP)
        apply_error(&A, map, NULL, "expected a map, got a %s",
                    map->type == DR_CFG_SEQ ? "list" : "string");
    else if (map)
        check_unknown_keys(&A, map, "");
    for (size_t i = 0; opts && opts[i].name; i++)
        apply_option(&A, &opts[i], map, conf);
    if (map && map->type == DR_CFG_MAP)
        check_one_of(&A, map);
    return A.nerr;
}

void dr_cfg_free_conf(const dr_option *opts, void *conf)
{
    if (!conf)
        return;
    for (size_t i = 0; opts && opts[i].name; i++) {
        if (opts[i].type == DR_OPT_GROUP) {
            dr_cfg_free_conf(opts[i].group, (char *)conf + opts[i].offset);
            continue;
        }
        void *f = field_of(&opts[i], conf);
        if (opts[i].type == DR_OPT_STRING) {
            free(*(char **)f);
            *(char **)f = NULL;
        } else if (opts[i].type == DR_OPT_STRLIST) {
            strlist_free((dr_strlist *)f);
        }
    }
}
