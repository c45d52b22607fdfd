/*
 * dr_kube_meta: one allocation per object. The struct comes first, then the
 * three key/value arrays, then every string. Being immutable and in one
 * block, it is cheap to share between all chunks of a container and freed
 * with one free() when the last of them lets go.
 */
#include "kube_meta.h"

#include <stdlib.h>
#include <string.h>

dr_kube_meta *dr_kube_meta_ref(dr_kube_meta *m)
{
    m->refs++;
    return m;
}

void dr_kube_meta_unref(dr_kube_meta *m)
{
    if (m && --m->refs == 0)
        free(m);
}

static size_t str_size(const char *s)
{
    return (s ? strlen(s) : 0) + 1;
}

static size_t list_size(const dr_kv *l, uint32_t n)
{
    size_t total = 0;
    for (uint32_t i = 0; i < n; i++)
        total += str_size(l[i].key) + str_size(l[i].val);
    return total;
}

/* Copies s to *at, advancing it; returns the copy. */
static const char *put_str(char **at, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    char *dst = *at;
    if (n)
        memcpy(dst, s, n);
    dst[n] = '\0';
    *at += n + 1;
    return dst;
}

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const dr_kv *)a)->key, ((const dr_kv *)b)->key);
}

/* Copies a list into dst, sorts it by key and removes duplicate keys
 * (keeping the last given: qsort is not stable, so the position in the
 * input decides). Returns the number kept. */
static uint32_t put_list(char **at, dr_kv *dst, const dr_kv *src, uint32_t n)
{
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!src[i].key)
            continue;
        bool later = false;
        for (uint32_t j = i + 1; j < n && !later; j++)
            later = src[j].key && strcmp(src[j].key, src[i].key) == 0;
        if (later)
            continue;
        dst[m].key = put_str(at, src[i].key);
        dst[m].val = put_str(at, src[i].val);
        m++;
    }
    if (m > 1)
        qsort(dst, m, sizeof *dst, kv_cmp);
    return m;
}

dr_kube_meta *dr_kube_meta_build(const dr_kube_meta_spec *s)
{
    const char *const scalars[] = {s->namespace_,   s->pod,       s->pod_uid, s->container,
                                   s->container_id, s->image,     s->node,    s->pod_ip,
                                   s->owner_kind,   s->owner_name};
    size_t strings = 0;
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++)
        strings += str_size(scalars[i]);
    strings += list_size(s->labels, s->nlabels) + list_size(s->annotations, s->nannotations) +
               list_size(s->namespace_labels, s->nnamespace_labels);
    size_t nkv = (size_t)s->nlabels + s->nannotations + s->nnamespace_labels;
    dr_kube_meta *m = malloc(sizeof *m + nkv * sizeof(dr_kv) + strings);
    if (!m)
        return NULL;
    dr_kv *kv = (dr_kv *)(m + 1);
    char *at = (char *)(kv + nkv);
    m->refs = 1;
    m->namespace_ = put_str(&at, s->namespace_);
    m->pod = put_str(&at, s->pod);
    m->pod_uid = put_str(&at, s->pod_uid);
    m->container = put_str(&at, s->container);
    m->container_id = put_str(&at, s->container_id);
    m->image = put_str(&at, s->image);
    m->node = put_str(&at, s->node);
    m->pod_ip = put_str(&at, s->pod_ip);
    m->owner_kind = put_str(&at, s->owner_kind);
    m->owner_name = put_str(&at, s->owner_name);
    m->labels = kv;
    m->nlabels = put_list(&at, kv, s->labels, s->nlabels);
    kv += m->nlabels;
    m->annotations = kv;
    m->nannotations = put_list(&at, kv, s->annotations, s->nannotations);
    kv += m->nannotations;
    m->namespace_labels = kv;
    m->nnamespace_labels = put_list(&at, kv, s->namespace_labels, s->nnamespace_labels);
    return m;
}
