/*
 * Label sets (see labels.h).
 *
 * The pool is a list of blocks: a copy goes into the newest block if it
 * fits, or into a new block at least twice the size of the last one, so a
 * set that is reset and refilled for every series of a scrape settles on
 * one or two blocks and stops allocating.
 */
#include "labels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drover/plugin.h"

struct dr_labels_block {
    dr_labels_block *next;
    size_t used, cap;
    char data[];
};

#define POOL_FIRST_BLOCK 1024u

void dr_labels_init(dr_labels *ls)
{
    memset(ls, 0, sizeof *ls);
}

static void free_blocks(dr_labels_block *b)
{
    while (b) {
        dr_labels_block *next = b->next;
        free(b);
        b = next;
    }
}

void dr_labels_free(dr_labels *ls)
{
    free(ls->v);
    free_blocks(ls->pool);
    dr_labels_init(ls);
}

void dr_labels_reset(dr_labels *ls)
{
    ls->n = 0;
    if (!ls->pool)
        return;
    /* Keep the newest (largest) block only. */
    free_blocks(ls->pool->next);
    ls->pool->next = NULL;
    ls->pool->used = 0;
}

/* Room for n bytes in the pool; NULL when out of memory. */
static char *pool_alloc(dr_labels *ls, size_t n)
{
    dr_labels_block *b = ls->pool;
    if (!b || b->cap - b->used < n) {
        size_t cap = b ? b->cap * 2 : POOL_FIRST_BLOCK;
        while (cap < n)
            cap *= 2;
        dr_labels_block *nb = malloc(sizeof *nb + cap);
        if (!nb)
            return NULL;
        nb->next = b;
        nb->used = 0;
        nb->cap = cap;
        ls->pool = nb;
        b = nb;
    }
    char *p = b->data + b->used;
    b->used += n;
    return p;
}

static const char *pool_copy(dr_labels *ls, const char *s, size_t n)
{
    if (n == 0)
        return "";
    char *p = pool_alloc(ls, n);
    if (p)
        memcpy(p, s, n);
    return p;
}

static int grow(dr_labels *ls)
{
    if (ls->n < ls->cap)
        return 0;
    if (ls->n >= DR_LABELS_MAX)
        return DR_EINVAL;
    uint32_t cap = ls->cap ? ls->cap * 2 : 16;
    dr_label *v = realloc(ls->v, cap * sizeof *v);
    if (!v)
        return DR_ENOMEM;
    ls->v = v;
    ls->cap = cap;
    return 0;
}

int dr_labels_add(dr_labels *ls, const char *name, size_t name_len, const char *value,
                  size_t value_len)
{
    if (name_len > DR_LABELS_MAX_BYTES || value_len > DR_LABELS_MAX_BYTES)
        return DR_EINVAL;
    int rc = grow(ls);
    if (rc)
        return rc;
    ls->v[ls->n++] = (dr_label){.name = name,
                                .value = value,
                                .name_len = (uint32_t)name_len,
                                .value_len = (uint32_t)value_len};
    return 0;
}

int dr_labels_add_copy(dr_labels *ls, const char *name, size_t name_len, const char *value,
                       size_t value_len)
{
    if (name_len > DR_LABELS_MAX_BYTES || value_len > DR_LABELS_MAX_BYTES)
        return DR_EINVAL;
    const char *n = pool_copy(ls, name, name_len);
    const char *v = pool_copy(ls, value, value_len);
    if (!n || !v)
        return DR_ENOMEM;
    return dr_labels_add(ls, n, name_len, v, value_len);
}

static int index_of(const dr_labels *ls, const char *name, size_t name_len)
{
    for (uint32_t i = 0; i < ls->n; i++) {
        const dr_label *l = &ls->v[i];
        if (l->name_len == name_len && memcmp(l->name, name, name_len) == 0)
            return (int)i;
    }
    return -1;
}

int dr_labels_set(dr_labels *ls, const char *name, size_t name_len, const char *value,
                  size_t value_len)
{
    int i = index_of(ls, name, name_len);
    if (value_len == 0) {
        if (i >= 0)
            dr_labels_del_at(ls, (uint32_t)i);
        return 0;
    }
    if (i < 0)
        return dr_labels_add_copy(ls, name, name_len, value, value_len);
    if (value_len > DR_LABELS_MAX_BYTES)
        return DR_EINVAL;
    const char *v = pool_copy(ls, value, value_len);
    if (!v)
        return DR_ENOMEM;
    ls->v[i].value = v;
    ls->v[i].value_len = (uint32_t)value_len;
    return 0;
}

int dr_labels_sets(dr_labels *ls, const char *name, const char *value)
{
    return dr_labels_set(ls, name, strlen(name), value, strlen(value));
}

void dr_labels_del_at(dr_labels *ls, uint32_t i)
{
    if (i >= ls->n)
        return;
    memmove(&ls->v[i], &ls->v[i + 1], (ls->n - i - 1) * sizeof ls->v[0]);
    ls->n--;
}

void dr_labels_del(dr_labels *ls, const char *name, size_t name_len)
{
    int i = index_of(ls, name, name_len);
    if (i >= 0)
        dr_labels_del_at(ls, (uint32_t)i);
}

const dr_label *dr_labels_get(const dr_labels *ls, const char *name, size_t name_len)
{
    int i = index_of(ls, name, name_len);
    return i < 0 ? NULL : &ls->v[i];
}

const dr_label *dr_labels_gets(const dr_labels *ls, const char *name)
{
    return dr_labels_get(ls, name, strlen(name));
}

const char *dr_labels_value(const dr_labels *ls, const char *name, size_t name_len,
                            size_t *value_len)
{
    const dr_label *l = dr_labels_get(ls, name, name_len);
    *value_len = l ? l->value_len : 0;
    return l ? l->value : "";
}

/* Bytewise comparison, a shorter prefix first: Go's string order. */
static int cmp_bytes(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c)
        return c;
    return an < bn ? -1 : an > bn;
}

static int cmp_label(const dr_label *a, const dr_label *b)
{
    return cmp_bytes(a->name, a->name_len, b->name, b->name_len);
}

/* Insertion sort: label sets are short and usually nearly sorted already
 * (exporters write labels in order), where this is linear. */
static void sort_by_name(dr_labels *ls)
{
    for (uint32_t i = 1; i < ls->n; i++) {
        dr_label x = ls->v[i];
        uint32_t j = i;
        while (j > 0 && cmp_label(&ls->v[j - 1], &x) > 0) {
            ls->v[j] = ls->v[j - 1];
            j--;
        }
        ls->v[j] = x;
    }
}

bool dr_labels_has_dup(const dr_labels *ls)
{
    for (uint32_t i = 1; i < ls->n; i++)
        if (cmp_label(&ls->v[i - 1], &ls->v[i]) == 0)
            return true;
    return false;
}

int dr_labels_canon(dr_labels *ls)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < ls->n; i++)
        if (ls->v[i].value_len > 0)
            ls->v[k++] = ls->v[i];
    ls->n = k;
    sort_by_name(ls);
    return dr_labels_has_dup(ls) ? DR_EINVAL : 0;
}

int dr_labels_copy(dr_labels *dst, const dr_labels *src)
{
    dr_labels_reset(dst);
    for (uint32_t i = 0; i < src->n; i++) {
        const dr_label *l = &src->v[i];
        int rc = dr_labels_add_copy(dst, l->name, l->name_len, l->value, l->value_len);
        if (rc)
            return rc;
    }
    return 0;
}

/* FNV-1a, fed incrementally. 0xff never occurs in UTF-8, so it separates
 * names from values unambiguously. */
static uint64_t fnv_feed(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t dr_labels_hash(const dr_labels *ls)
{
    static const unsigned char sep = 0xff;
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t i = 0; i < ls->n; i++) {
        h = fnv_feed(h, ls->v[i].name, ls->v[i].name_len);
        h = fnv_feed(h, &sep, 1);
        h = fnv_feed(h, ls->v[i].value, ls->v[i].value_len);
        h = fnv_feed(h, &sep, 1);
    }
    return h;
}

bool dr_labels_equal(const dr_labels *a, const dr_labels *b)
{
    if (a->n != b->n)
        return false;
    for (uint32_t i = 0; i < a->n; i++) {
        const dr_label *x = &a->v[i], *y = &b->v[i];
        if (x->name_len != y->name_len || x->value_len != y->value_len ||
            memcmp(x->name, y->name, x->name_len) != 0 ||
            memcmp(x->value, y->value, x->value_len) != 0)
            return false;
    }
    return true;
}

/* Appends to out[*len] while there is room, always counting. */
static void put(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++, (*len)++)
        if (*len + 1 < cap)
            out[*len] = s[i];
}

static void put_escaped(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\')
            put(out, cap, len, "\\\\", 2);
        else if (s[i] == '"')
            put(out, cap, len, "\\\"", 2);
        else if (s[i] == '\n')
            put(out, cap, len, "\\n", 2);
        else
            put(out, cap, len, &s[i], 1);
    }
}

size_t dr_labels_format(const dr_labels *ls, char *out, size_t cap)
{
    size_t len = 0;
    const dr_label *name = dr_labels_gets(ls, "__name__");
    if (name)
        put(out, cap, &len, name->value, name->value_len);
    put(out, cap, &len, "{", 1);
    bool first = true;
    for (uint32_t i = 0; i < ls->n; i++) {
        const dr_label *l = &ls->v[i];
        if (l == name)
            continue;
        if (!first)
            put(out, cap, &len, ",", 1);
        first = false;
        put(out, cap, &len, l->name, l->name_len);
        put(out, cap, &len, "=\"", 2);
        put_escaped(out, cap, &len, l->value, l->value_len);
        put(out, cap, &len, "\"", 1);
    }
    put(out, cap, &len, "}", 1);
    if (cap > 0)
        out[len < cap ? len : cap - 1] = '\0';
    return len;
}

static bool is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

bool dr_label_name_is_legacy(const char *name, size_t len)
{
    if (len == 0 || !is_alpha_(name[0]))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!is_alpha_(name[i]) && !is_digit(name[i]))
            return false;
    return true;
}

bool dr_metric_name_is_legacy(const char *name, size_t len)
{
    if (len == 0 || (!is_alpha_(name[0]) && name[0] != ':'))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!is_alpha_(name[i]) && !is_digit(name[i]) && name[i] != ':')
            return false;
    return true;
}
