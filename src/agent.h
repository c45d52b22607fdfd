/*
 * The core's internal interface: the agent (one loaded configuration and its
 * running pipeline), the router, per-output queues, and chunk references.
 */
#ifndef DROVER_AGENT_H
#define DROVER_AGENT_H

#include <stdbool.h>
#include <stddef.h>

#include "drover/plugin.h"

void dr_chunk_retain(dr_chunk *c);
/* Drops a reference; the last one runs the acknowledgement and frees. */
void dr_chunk_release(dr_chunk *c);
size_t dr_chunk_payload_bytes(const dr_chunk *c);

/* Agent log setup (log.c). */
void dr_log_set_level(dr_log_level lvl);
int dr_log_level_parse(const char *s, dr_log_level *lvl);
/* Logs without an instance (core messages). */
void dr_log_core(dr_log_level lvl, const char *msg, const char *kvfmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
