/*
 * The loki output's request builder, apart from the plugin so that it can
 * be tested without a network: it turns a batch of chunks into push
 * requests (one per tenant) in Loki's protobuf (snappy) or JSON form.
 *
 * Grouping: every record goes to the stream named by its label set (the
 * configured labels, sorted by name, empty values left out). Within a
 * stream, entries are sorted by time (records of one container are already
 * in order; records of several containers that share a label set are
 * merged). Lines longer than max_line_bytes are split, truncated or
 * dropped as configured; invalid UTF-8 becomes U+FFFD.
 */
#ifndef DROVER_LOKI_H
#define DROVER_LOKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "drover/plugin.h"

/* Where a label, a structured-metadata pair or the tenant takes its value. */
typedef enum {
    LOKI_SRC_NAMESPACE,
    LOKI_SRC_POD,
    LOKI_SRC_POD_UID,
    LOKI_SRC_CONTAINER,
    LOKI_SRC_CONTAINER_ID,
    LOKI_SRC_STREAM,
    LOKI_SRC_NODE,
    LOKI_SRC_PATH,
    LOKI_SRC_APP,      /* the pod's app.kubernetes.io/name or app label */
    LOKI_SRC_FIELD,    /* any other record key (a filter's field, kubernetes.*) */
    LOKI_SRC_CONSTANT, /* a static label */
} loki_source;

typedef struct loki_attr {
    char *name; /* the label or metadata name */
    loki_source src;
    char *arg; /* LOKI_SRC_FIELD: the field name; LOKI_SRC_CONSTANT: the value */
} loki_attr;

typedef enum { LOKI_FORMAT_PROTOBUF = 0, LOKI_FORMAT_JSON = 1 } loki_format;
typedef enum { LOKI_LINE_MESSAGE = 0, LOKI_LINE_JSON = 1 } loki_line_format;
typedef enum { LOKI_TOO_LONG_SPLIT = 0, LOKI_TOO_LONG_TRUNCATE, LOKI_TOO_LONG_DROP } loki_too_long;

/* What the builder needs to know, made once from the configuration. */
typedef struct loki_layout {
    loki_attr *labels; /* sorted by name, static labels included */
    size_t nlabels;
    loki_attr *metadata;
    size_t nmetadata;
    bool labels_per_record;   /* a label comes from a record field */
    bool metadata_per_record; /* a metadata value comes from a record field */
    loki_attr tenant_attr;    /* name == NULL: no tenant field */
    const char *tenant;       /* static tenant (fallback); NULL: none */
    const char *node;
    loki_format format;
    bool gzip; /* JSON only */
    loki_line_format line_format;
    size_t max_line_bytes;
    loki_too_long too_long;
    size_t max_request_bytes; /* lines per request; a longer batch is cut in several */
} loki_layout;

/* Parses one `labels` / `structured_metadata` entry: "field" or
 * "name=field". Returns 0 or DR_EINVAL with err filled. */
int loki_attr_parse(const char *spec, loki_attr *out, dr_error *err);
/* Parses one `static_labels` entry: "name=value". */
int loki_static_label_parse(const char *spec, loki_attr *out, dr_error *err);
void loki_attr_free(loki_attr *a);
/* True for names Loki accepts as label names: [a-zA-Z_][a-zA-Z0-9_]*. */
bool loki_label_name_ok(const char *name);

/* One push request: the body ready to send and what it holds. */
typedef struct loki_request {
    char *tenant;     /* NULL: no X-Scope-OrgID */
    dr_buf body;      /* compressed as the format says */
    size_t raw_bytes; /* before compression */
    uint64_t entries; /* entries in the body (split pieces count each) */
    uint64_t records; /* records they come from */
} loki_request;

/* What building a batch's requests found, counted once the batch is done
 * (a batch that is retried is built again). */
typedef struct loki_build_stats {
    uint64_t invalid_utf8; /* records whose invalid UTF-8 was replaced */
    uint64_t split;        /* records sent as several entries */
    uint64_t truncated;    /* records cut at max_line_bytes */
    uint64_t too_long;     /* records dropped for their length */
} loki_build_stats;

/* What the builder keeps from one batch to the next (its buffers), owned
 * by the output; loki_build resets it. */
typedef struct loki_builder loki_builder;
loki_builder *loki_builder_new(void);
void loki_builder_free(loki_builder *lb);

/* Builds the requests for the chunks of a batch: one per tenant, or more
 * when the lines pass max_request_bytes (to be sent one after the other,
 * which keeps each stream in order). On success *reqs holds *nreqs
 * requests (possibly 0 when every record was dropped); free them with
 * loki_requests_free. Returns 0 or DR_ENOMEM / DR_ERR. */
int loki_build(loki_builder *lb, const loki_layout *lay, const dr_chunk *const *chunks,
               size_t nchunks, loki_request **reqs, size_t *nreqs, loki_build_stats *stats);
void loki_requests_free(loki_request *reqs, size_t n);

/* What a 400 answer says: which entries Loki refused, grouped by reason (a
 * metric label: too_old, too_new, too_long, out_of_order, rejected). Loki
 * 3 answers one message for a single bad entry, or "N errors like: <msg>;
 * M errors like: <msg>" for several; the good entries of the request are
 * stored all the same. An answer that names no entry (a malformed request)
 * refuses all `entries`. Fills at most max groups; returns how many. */
typedef struct loki_refusal {
    const char *reason;
    uint64_t count;
} loki_refusal;

size_t loki_refusals(const char *body, uint64_t entries, loki_refusal *out, size_t max);

#endif
