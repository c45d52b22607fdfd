/*
 * What the exposition parsers share between src/expo.c (text 0.0.4 and
 * OpenMetrics, and the dispatch in dr_expo_parse) and src/expo_proto.c (the
 * delimited protobuf format). Not part of the interface plugins see.
 */
#ifndef DROVER_EXPO_INTERNAL_H
#define DROVER_EXPO_INTERNAL_H

#include "expo.h"

/* Parses a body of varint-length-delimited io.prometheus.client.MetricFamily
 * messages; the contract is dr_expo_parse's. */
int dr_expo_parse_protobuf(const char *body, size_t len, const dr_expo_sink *sink, dr_error *err);

#endif
