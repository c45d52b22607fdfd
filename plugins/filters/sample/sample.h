/*
 * sample filter internals, for the unit tests.
 */
#ifndef DROVER_FILTER_SAMPLE_H
#define DROVER_FILTER_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

/* The hash that decides which values are kept: FNV-1a 64 with a final mix.
 * Fixed for good: changing it changes which traces every node keeps. */
uint64_t dr_sample_hash(const char *s, size_t n);

#endif
