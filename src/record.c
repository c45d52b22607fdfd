/*
 * Record keys: how filters and outputs read and change a record by name.
 *
 * A record has a fixed part (time, stream, message), the fields filters
 * added, and, through its chunk, the container's Kubernetes metadata. One
 * naming scheme covers all three (see plugin.h), so that a grep on
 * "kubernetes.labels.app" and a parse of "message" are written alike in
 * every filter's configuration.
 *
 * A record's fields array lives in its chunk's arena and is grown by
 * doubling; its capacity is kept in a small header in front of the first
 * field, so dr_record stays 32 bytes. Arena memory is never freed before the
 * chunk, so a replaced array is simply left behind: a record that gains n
 * fields leaves at most n fields' worth of old arrays.
 */
#include <stdlib.h>
#include <string.h>

#include "drover/plugin.h"
#include "json.h"

/* In front of every fields array. 8 bytes, so the fields stay aligned. */
typedef struct fields_header {
    uint32_t cap;
    uint32_t pad;
} fields_header;

#define DR_FIELDS_MAX 65535u

static bool key_is(const char *key, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    return len == n && memcmp(key, lit, n) == 0;
}

static bool key_has_prefix(const char *key, size_t len, const char *prefix, size_t *plen)
{
    size_t n = strlen(prefix);
    if (len <= n || memcmp(key, prefix, n) != 0)
        return false;
    *plen = n;
    return true;
}

static void set_str(dr_value *out, const char *s)
{
    out->p = s;
    out->len = strlen(s);
    out->type = DR_FIELD_STRING;
}

/* Finds key[0..len) in a sorted list (the key is not NUL-terminated). */
static const char *kv_find_n(const dr_kv *list, uint32_t n, const char *key, size_t len)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int cmp = strncmp(list[mid].key, key, len);
        if (cmp == 0 && list[mid].key[len] != '\0')
            cmp = 1; /* the list's key is longer: it sorts after */
        if (cmp == 0)
            return list[mid].val;
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *dr_kv_find(const dr_kv *list, uint32_t n, const char *key)
{
    return kv_find_n(list, n, key, strlen(key));
}

/* "kubernetes.<name>" from the chunk's metadata: the Kubernetes metadata
 * when the kubernetes filter set it, else what the input knew from the file
 * name (namespace, pod, pod_uid, container, container_id). */
static bool get_kube(const dr_chunk *c, const char *name, size_t len, dr_value *out)
{
    const dr_kube_meta *k = c->kube;
    size_t plen;
    if (k) {
        if (key_has_prefix(name, len, "labels.", &plen) ||
            key_has_prefix(name, len, "annotations.", &plen) ||
            key_has_prefix(name, len, "namespace_labels.", &plen)) {
            const dr_kv *list = name[0] == 'l'   ? k->labels
                                : name[0] == 'a' ? k->annotations
                                                 : k->namespace_labels;
            uint32_t n = name[0] == 'l'   ? k->nlabels
                         : name[0] == 'a' ? k->nannotations
                                          : k->nnamespace_labels;
            const char *v = kv_find_n(list, n, name + plen, len - plen);
            if (!v)
                return false;
            set_str(out, v);
            return true;
        }
        static const struct {
            const char *name;
            size_t off;
        } scalars[] = {
            {"namespace", offsetof(dr_kube_meta, namespace_)},
            {"pod", offsetof(dr_kube_meta, pod)},
            {"pod_uid", offsetof(dr_kube_meta, pod_uid)},
            {"container", offsetof(dr_kube_meta, container)},
            {"container_id", offsetof(dr_kube_meta, container_id)},
            {"image", offsetof(dr_kube_meta, image)},
            {"node", offsetof(dr_kube_meta, node)},
            {"pod_ip", offsetof(dr_kube_meta, pod_ip)},
            {"owner_kind", offsetof(dr_kube_meta, owner_kind)},
            {"owner_name", offsetof(dr_kube_meta, owner_name)},
        };
        for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++) {
            if (key_is(name, len, scalars[i].name)) {
                const char *v = *(const char *const *)((const char *)k + scalars[i].off);
                if (!v[0])
                    return false;
                set_str(out, v);
                return true;
            }
        }
        return false;
    }
    const dr_meta *m = c->meta;
    if (!m)
        return false;
    const char *v = key_is(name, len, "namespace")      ? m->namespace_
                    : key_is(name, len, "pod")          ? m->pod
                    : key_is(name, len, "pod_uid")      ? m->pod_uid
                    : key_is(name, len, "container")    ? m->container
                    : key_is(name, len, "container_id") ? m->container_id
                                                        : NULL;
    if (!v || !v[0])
        return false;
    set_str(out, v);
    return true;
}

dr_field *dr_record_field(const dr_record *r, const char *key, size_t key_len)
{
    for (uint16_t i = 0; i < r->nfields; i++) {
        dr_field *f = &r->fields[i];
        if (f->key_len == key_len && memcmp(f->key, key, key_len) == 0)
            return f;
    }
    return NULL;
}

bool dr_record_get(const dr_chunk *c, const dr_record *r, const char *key, size_t key_len,
                   dr_value *out, char tbuf[40])
{
    size_t plen;
    if (key_is(key, key_len, "message")) {
        out->p = r->msg;
        out->len = r->msg_len;
        out->type = DR_FIELD_STRING;
        return true;
    }
    if (key_is(key, key_len, "stream")) {
        set_str(out, r->stream == DR_STREAM_STDERR ? "stderr" : "stdout");
        return true;
    }
    if (key_is(key, key_len, "time")) {
        out->len = dr_format_rfc3339nano(r->time_ns, tbuf);
        out->p = tbuf;
        out->type = DR_FIELD_STRING;
        return true;
    }
    if (key_has_prefix(key, key_len, "kubernetes.", &plen))
        return get_kube(c, key + plen, key_len - plen, out);
    const dr_field *f = dr_record_field(r, key, key_len);
    if (!f)
        return false;
    out->p = f->val;
    out->len = f->val_len;
    out->type = f->type;
    return true;
}

static uint32_t fields_cap(const dr_record *r)
{
    if (!r->fields)
        return 0;
    return ((const fields_header *)r->fields - 1)->cap;
}

/* Room for one more field, growing the array in the arena. */
static int fields_reserve(dr_chunk *c, dr_record *r)
{
    uint32_t cap = fields_cap(r);
    if (r->nfields < cap)
        return 0;
    if (r->nfields >= DR_FIELDS_MAX)
        return DR_EINVAL;
    uint32_t ncap = cap ? cap * 2 : 4;
    if (ncap > DR_FIELDS_MAX)
        ncap = DR_FIELDS_MAX;
    fields_header *h = dr_chunk_alloc(c, sizeof *h + (size_t)ncap * sizeof(dr_field));
    if (!h)
        return DR_ENOMEM;
    h->cap = ncap;
    dr_field *f = (dr_field *)(h + 1);
    if (r->nfields)
        memcpy(f, r->fields, r->nfields * sizeof *f);
    r->fields = f;
    return 0;
}

int dr_record_set(dr_chunk *c, dr_record *r, const char *key, size_t key_len, const char *val,
                  size_t val_len, dr_field_type type)
{
    size_t plen;
    if (val_len > UINT32_MAX || key_len == 0 || key_len > 4096)
        return DR_EINVAL;
    if (key_is(key, key_len, "stream") || key_is(key, key_len, "time") ||
        key_has_prefix(key, key_len, "kubernetes.", &plen) || key_is(key, key_len, "kubernetes"))
        return DR_EINVAL;
    char *v = dr_chunk_strdup(c, val, val_len);
    if (!v)
        return DR_ENOMEM;
    if (key_is(key, key_len, "message")) {
        r->msg = v;
        r->msg_len = (uint32_t)val_len;
        return 0;
    }
    dr_field *f = dr_record_field(r, key, key_len);
    if (!f) {
        int rc = fields_reserve(c, r);
        if (rc < 0)
            return rc;
        char *k = dr_chunk_strdup(c, key, key_len);
        if (!k)
            return DR_ENOMEM;
        f = &r->fields[r->nfields++];
        f->key = k;
        f->key_len = (uint32_t)key_len;
    }
    f->val = v;
    f->val_len = (uint32_t)val_len;
    f->type = (uint8_t)type;
    return 0;
}

bool dr_record_remove(dr_record *r, const char *key, size_t key_len)
{
    dr_field *f = dr_record_field(r, key, key_len);
    if (!f)
        return false;
    size_t i = (size_t)(f - r->fields);
    memmove(f, f + 1, (r->nfields - i - 1) * sizeof *f);
    r->nfields--;
    return true;
}
