/*
 * Chunks: a batch of records from one input with an arena that holds their
 * bytes. Records never own memory of their own; freeing the chunk frees
 * everything at once. The records array grows by doubling; arena blocks are
 * chained and never move, so pointers into them stay valid.
 */
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "drover/plugin.h"
#include "series.h"

typedef struct dr_arena_block {
    struct dr_arena_block *next;
    size_t used, cap;
    bool adopted; /* data is a separate malloc'd buffer (dr_chunk_adopt) */
    void *adopted_buf;
    _Alignas(16) unsigned char data[];
} dr_arena_block;

#define DR_ARENA_MIN_BLOCK 4096

static dr_arena_block *arena_block_new(size_t cap)
{
    dr_arena_block *b = malloc(sizeof *b + cap);
    if (!b)
        return NULL;
    b->next = NULL;
    b->used = 0;
    b->cap = cap;
    b->adopted = false;
    b->adopted_buf = NULL;
    return b;
}

dr_chunk *dr_chunk_new(dr_instance *input, size_t bytes_hint)
{
    dr_chunk *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->kind = DR_CHUNK_LOGS;
    c->refs = 1;
    c->input = input;
    c->created_ns = dr_mono_ns();
    c->mem = sizeof *c;
    if (bytes_hint) {
        size_t cap = (bytes_hint + 7) & ~(size_t)7;
        c->blocks = arena_block_new(cap);
        if (!c->blocks) {
            free(c);
            return NULL;
        }
        c->mem += sizeof *c->blocks + cap;
    }
    return c;
}

dr_chunk *dr_chunk_new_metrics(dr_instance *input, dr_series_table *series)
{
    dr_chunk *c = dr_chunk_new(input, 0);
    if (!c)
        return NULL;
    c->kind = DR_CHUNK_METRICS;
    c->series = series;
    return c;
}

/* Wire size of a sample as remote write sends it (a value and a
 * timestamp), the "bytes" of a metric chunk that queues and metrics count. */
#define SAMPLE_PAYLOAD_BYTES 16

dr_sample *dr_chunk_add_sample(dr_chunk *c, dr_series *s, int64_t ts_ms, double value)
{
    if (c->nsamples == c->samples_cap) {
        uint32_t cap = c->samples_cap ? c->samples_cap * 2 : 64;
        dr_sample *v = realloc(c->samples, (size_t)cap * sizeof *v);
        if (!v)
            return NULL;
        c->mem += (size_t)(cap - c->samples_cap) * sizeof *v;
        c->samples = v;
        c->samples_cap = cap;
    }
    dr_sample *smp = &c->samples[c->nsamples++];
    smp->series = dr_series_ref(s);
    smp->ts_ms = ts_ms;
    smp->value = value;
    smp->hist = NULL;
    c->bytes += SAMPLE_PAYLOAD_BYTES;
    return smp;
}

int dr_chunk_add_meta(dr_chunk *c, const char *family, size_t family_len, uint8_t type,
                      const char *help, size_t help_len, const char *unit, size_t unit_len)
{
    if (c->nmetas == c->metas_cap) {
        uint32_t cap = c->metas_cap ? c->metas_cap * 2 : 16;
        dr_metric_meta *v = realloc(c->metas, (size_t)cap * sizeof *v);
        if (!v)
            return DR_ENOMEM;
        c->mem += (size_t)(cap - c->metas_cap) * sizeof *v;
        c->metas = v;
        c->metas_cap = cap;
    }
    dr_metric_meta m;
    m.family = dr_chunk_strdup(c, family, family_len);
    m.help = dr_chunk_strdup(c, help ? help : "", help ? help_len : 0);
    m.unit = dr_chunk_strdup(c, unit ? unit : "", unit ? unit_len : 0);
    m.type = type;
    if (!m.family || !m.help || !m.unit)
        return DR_ENOMEM;
    c->metas[c->nmetas++] = m;
    c->bytes += family_len + (help ? help_len : 0) + (unit ? unit_len : 0);
    return 0;
}

void *dr_chunk_alloc(dr_chunk *c, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    dr_arena_block *b = c->blocks;
    if (!b || b->adopted || b->cap - b->used < n) {
        size_t cap = n > DR_ARENA_MIN_BLOCK ? n : DR_ARENA_MIN_BLOCK;
        dr_arena_block *nb = arena_block_new(cap);
        if (!nb)
            return NULL;
        c->mem += sizeof *nb + cap;
        nb->next = c->blocks;
        c->blocks = nb;
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

void dr_chunk_adopt(dr_chunk *c, void *buf, size_t size)
{
    /* A zero-capacity block that only remembers the buffer to free. Put it
     * second in the chain so the current allocation block stays first. */
    dr_arena_block *nb = arena_block_new(0);
    if (!nb) {
        free(buf); /* cannot track it: better lose the memory than leak it */
        return;
    }
    nb->adopted = true;
    nb->adopted_buf = buf;
    c->mem += sizeof *nb + size;
    if (c->blocks) {
        nb->next = c->blocks->next;
        c->blocks->next = nb;
    } else {
        c->blocks = nb;
    }
}

dr_record *dr_chunk_add(dr_chunk *c)
{
    if (c->nrecs == c->cap) {
        /* small first: a chunk of one read of a quiet file holds a line or two */
        uint32_t cap = c->cap ? c->cap * 2 : 8;
        dr_record *r = realloc(c->recs, cap * sizeof *r);
        if (!r)
            return NULL;
        c->mem += (size_t)(cap - c->cap) * sizeof *r;
        c->recs = r;
        c->cap = cap;
    }
    dr_record *r = &c->recs[c->nrecs++];
    memset(r, 0, sizeof *r);
    return r;
}

void dr_chunk_set_meta(dr_chunk *c, dr_meta *m)
{
    if (c->meta)
        dr_meta_unref(c->meta);
    c->meta = m ? dr_meta_ref(m) : NULL;
}

void dr_chunk_set_ack(dr_chunk *c, dr_ack_fn fn, void *ctx, uint64_t token)
{
    c->ack = fn;
    c->ack_ctx = ctx;
    c->ack_token = token;
}

void dr_chunk_set_kube(dr_chunk *c, dr_kube_meta *m)
{
    if (m)
        dr_kube_meta_ref(m);
    if (c->kube)
        dr_kube_meta_unref(c->kube);
    c->kube = m;
}

void dr_chunk_route(dr_chunk *c, dr_instance *const *outputs, uint8_t n, bool keep_default)
{
    c->route_keep_default = c->nroute ? c->route_keep_default && keep_default : keep_default;
    for (uint8_t i = 0; i < n; i++) {
        bool known = false;
        for (uint8_t j = 0; j < c->nroute && !known; j++)
            known = c->route[j] == outputs[i];
        if (!known && c->nroute < DR_ROUTE_MAX)
            c->route[c->nroute++] = outputs[i];
    }
}

char *dr_chunk_strdup(dr_chunk *c, const char *s, size_t n)
{
    char *p = dr_chunk_alloc(c, n + 1);
    if (!p)
        return NULL;
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static void chunk_free(dr_chunk *c)
{
    dr_arena_block *b = c->blocks;
    while (b) {
        dr_arena_block *next = b->next;
        if (b->adopted)
            free(b->adopted_buf);
        free(b);
        b = next;
    }
    if (c->meta)
        dr_meta_unref(c->meta);
    if (c->kube)
        dr_kube_meta_unref(c->kube);
    for (uint32_t i = 0; i < c->nsamples; i++)
        dr_series_unref(c->series, c->samples[i].series);
    free(c->samples);
    free(c->metas);
    free(c->recs);
    free(c);
}

void dr_chunk_discard(dr_chunk *c)
{
    chunk_free(c);
}

void dr_chunk_retain(dr_chunk *c)
{
    c->refs++;
}

void dr_chunk_abandon(dr_chunk *c)
{
    c->abandoned = true;
}

void dr_chunk_release(dr_chunk *c)
{
    if (--c->refs > 0)
        return;
    if (c->ack)
        c->ack(c->ack_ctx, c->ack_token, !c->abandoned);
    chunk_free(c);
}

size_t dr_chunk_payload_bytes(const dr_chunk *c)
{
    if (c->kind == DR_CHUNK_METRICS)
        return c->bytes; /* kept up to date as samples are added */
    size_t n = 0;
    for (uint32_t i = 0; i < c->nrecs; i++)
        n += c->recs[i].msg_len;
    return n;
}

/* ---- metadata ------------------------------------------------------------ */

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

dr_meta *dr_meta_new(const char *path, const char *namespace_, const char *pod, const char *pod_uid,
                     const char *container, const char *container_id, int restart)
{
    dr_meta *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->refs = 1;
    m->path = dup_or_empty(path);
    m->namespace_ = dup_or_empty(namespace_);
    m->pod = dup_or_empty(pod);
    m->pod_uid = dup_or_empty(pod_uid);
    m->container = dup_or_empty(container);
    m->container_id = dup_or_empty(container_id);
    m->restart = restart;
    if (!m->path || !m->namespace_ || !m->pod || !m->pod_uid || !m->container || !m->container_id) {
        m->refs = 1;
        dr_meta_unref(m);
        return NULL;
    }
    return m;
}

dr_meta *dr_meta_ref(dr_meta *m)
{
    m->refs++;
    return m;
}

void dr_meta_unref(dr_meta *m)
{
    if (!m || --m->refs > 0)
        return;
    if (m->ext && m->ext_free)
        m->ext_free(m->ext);
    free((char *)m->path);
    free((char *)m->namespace_);
    free((char *)m->pod);
    free((char *)m->pod_uid);
    free((char *)m->container);
    free((char *)m->container_id);
    free(m);
}
