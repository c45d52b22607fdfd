/*
 * Making dr_kube_meta objects (the public struct is in drover/plugin.h).
 */
#ifndef DROVER_KUBE_META_H
#define DROVER_KUBE_META_H

#include "drover/plugin.h"

/* What goes into one object. Strings may be NULL (stored as ""); lists
 * need not be sorted, and a key given twice keeps its last value. */
typedef struct dr_kube_meta_spec {
    const char *namespace_, *pod, *pod_uid, *container, *container_id, *image, *node, *pod_ip,
        *owner_kind, *owner_name;
    const dr_kv *labels, *annotations, *namespace_labels;
    uint32_t nlabels, nannotations, nnamespace_labels;
} dr_kube_meta_spec;

/* One block holding the struct, its lists and every string; refs = 1.
 * NULL when out of memory. */
dr_kube_meta *dr_kube_meta_build(const dr_kube_meta_spec *s);

#endif
