/*
 * Prometheus remote-write request bodies: the protobuf of remote write 1.0
 * (prometheus.WriteRequest) and 2.0 (io.prometheus.write.v2.Request),
 * uncompressed; the caller snappy-compresses them and adds the headers
 * (../shared/fixtures/remote-write/PROTOCOLS.md sections 1 and 2).
 *
 * The encoders write the protobuf wire format by hand, straight from the
 * series table and the samples of metric chunks: every message's size is
 * computed first, so each is written once into the output, without a tree
 * of messages in between and without allocating per sample (a writer's
 * scratch arrays grow to the largest request and are then reused).
 *
 * What goes on the wire, as Prometheus sends it:
 *   - one TimeSeries per run of consecutive samples of the same series (2.0
 *     also starts a new one when the metadata changes, and between float
 *     and histogram samples, since a 2.0 TimeSeries holds only one kind);
 *   - labels: the series' own merged with the external labels (an external
 *     label is added only when the series has no label of that name; an
 *     external label with an empty value is no label), sorted by name;
 *   - values as fixed64 doubles, bit for bit: the staleness marker
 *     (DR_STALE_NAN_BITS), other NaNs, infinities and -0 arrive unchanged.
 *     As in proto3, fields holding zero are left out (a double only when
 *     all its bits are zero, so -0 is sent);
 *   - timestamps as int64 varints (a negative one takes 10 bytes);
 *   - native histograms with the count and zero-bucket count of their kind
 *     (the count_int / count_float and zero_count_int / zero_count_float
 *     oneofs are always set, so a receiver can tell an integer histogram of
 *     count 0 from a float one), deltas as packed sint64, float counts as
 *     packed doubles, reset_hint as given;
 *   - no exemplars, and no start (created) timestamp: 2.0-rc.3's
 *     TimeSeries.created_timestamp and rc.4's Sample/Histogram
 *     start_timestamp are left unset, which both revisions read as unknown.
 *
 * The encoders read the series table (symbol strings, and for 2.0 the
 * symbol ids): call them where the table is not being changed (the loop
 * thread, or while it holds the table still). A writer is used by one
 * thread at a time: one per remote-write shard.
 */
#ifndef DROVER_PRW_H
#define DROVER_PRW_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "drover/plugin.h"
#include "expo.h"
#include "labels.h"
#include "series.h"

/* Reusable scratch state of the encoders; one per remote-write shard. */
typedef struct dr_prw_writer dr_prw_writer;

/* NULL when out of memory. */
dr_prw_writer *dr_prw_writer_new(void);
void dr_prw_writer_free(dr_prw_writer *w); /* w may be NULL */

/* Remote write 1.0: appends to `out` a WriteRequest of the n samples (in
 * their order), one TimeSeries per run of consecutive samples of the same
 * series: labels (the series' merged with `external`, which may be NULL,
 * sorted by name), then its float samples {value, timestamp}, then its
 * native histogram samples (those with hist set) as prompb.Histogram.
 * Returns 0, DR_ENOMEM, or DR_EINVAL for a sample without a series or a
 * histogram whose bucket arrays are missing; on error `out` is as it was. */
int dr_prw1_encode(dr_prw_writer *w, const dr_series_table *t, const dr_sample *samples, size_t n,
                   const dr_labels *external, dr_buf *out);

/* Remote write 1.0 metadata: appends a WriteRequest holding only the n
 * MetricMetadata entries {type, metric_family_name, help, unit}, as
 * Prometheus sends metadata in requests of their own. 0 or DR_ENOMEM. */
int dr_prw1_encode_metadata(dr_prw_writer *w, const dr_metric_meta *metas, size_t n, dr_buf *out);

/* Remote write 2.0: appends an io.prometheus.write.v2.Request of the n
 * samples: the symbols table (symbols[0] is "", every other string once:
 * label names and values, help and unit texts), then the TimeSeries, each
 * with its labels_refs (name, value pairs in sorted label order, external
 * labels merged as for 1.0), its samples or histograms, and its metadata
 * from meta[i], the metadata of sample i's family (`meta` may be NULL, or
 * meta[i] NULL: type unspecified, no help or unit; the family name is not
 * sent, 2.0 has it in __name__). Returns 0, DR_ENOMEM or DR_EINVAL as
 * dr_prw1_encode; on error `out` is as it was. */
int dr_prw2_encode(dr_prw_writer *w, const dr_series_table *t, const dr_sample *samples,
                   const dr_metric_meta *const *meta, size_t n, const dr_labels *external,
                   dr_buf *out);

#endif
