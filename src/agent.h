/*
 * The core's internal interface: the agent (one loaded configuration and its
 * running pipeline: inputs, filters, outputs, the router and the per-output
 * queues), the plugin registry, and chunk references.
 */
#ifndef DROVER_AGENT_H
#define DROVER_AGENT_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "drover/plugin.h"
#include "metrics.h"

/* ---- chunks (chunk.c; retain, release and abandon are in plugin.h) ---- */
size_t dr_chunk_payload_bytes(const dr_chunk *c);

/* ---- log (log.c) ---- */
void dr_log_set_level(dr_log_level lvl);
int dr_log_level_parse(const char *s, dr_log_level *lvl);
/* Logs without an instance (core messages). */
void dr_log_core(dr_log_level lvl, const char *msg, const char *kvfmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- plugin registry (registry.c) ---- */
const dr_plugin *dr_plugin_find(const char *name);
size_t dr_plugin_count(void);
const dr_plugin *dr_plugin_at(size_t i);
/* Writes the Markdown reference page of a plugin (the docs/plugins pages). */
int dr_plugin_describe(const dr_plugin *p, dr_buf *out);
/* The option tables of the keys every instance accepts, for the docs. */
extern const dr_option dr_common_input_options[];
extern const dr_option dr_common_filter_options[];
extern const dr_option dr_common_output_options[];
extern const dr_option dr_agent_options[];

/* ---- the agent (agent.c) ---- */

/* Settings of the `agent:` section. */
typedef struct dr_agent_conf {
    char *data_dir;
    char *node_name;
    char *http_listen;
    int log_level;
    int64_t grace_period_ms;
    int64_t max_series;
} dr_agent_conf;

/* Loads and validates a configuration and initialises its plugins, without
 * starting anything. Returns NULL with every problem in errs. */
dr_agent *dr_agent_create(uv_loop_t *loop, dr_metrics *metrics, const char *config_path,
                          bool oneshot, dr_cfg_errors *errs);
/* Starts outputs, filters, then inputs (at once, or once every filter is
 * ready). Returns 0 or a negative DR_E* (logged). */
int dr_agent_start(dr_agent *a);

typedef void (*dr_agent_cb)(dr_agent *a, void *ctx);
/* Called when an input that waited for the filters fails to start (the
 * agent cannot run as configured: the caller stops it). */
void dr_agent_on_failed(dr_agent *a, dr_agent_cb cb, void *ctx);
/* Oneshot: called once every input has drained, every filter has let go
 * of what it held (its stop callback runs then), and every chunk is acked. */
void dr_agent_on_finished(dr_agent *a, dr_agent_cb cb, void *ctx);
/* Stops inputs, then filters (which emit what they held), lets the outputs
 * deliver what is queued within the grace period, abandons the rest (its
 * sources keep it: checkpoints do not pass it), stops and destroys every
 * plugin, then calls cb. */
void dr_agent_shutdown(dr_agent *a, dr_agent_cb cb, void *ctx);
void dr_agent_free(dr_agent *a);

const dr_agent_conf *dr_agent_get_conf(const dr_agent *a);

/* A filter made at run time from a configuration fragment (the rules a
 * namespace owns): checked, initialised and started like a configured one,
 * named `name` in logs and metrics, marked restricted, but part of no
 * input's pipeline: its owner calls its filter callback, and a chunk it
 * emits (dr_filter_emit) goes to `hook`, which carries it on. `match` is
 * refused. NULL with errs
 * filled. Its handles may still be closing when dr_agent_filter_free
 * returns: plugins free their state from their close callbacks. */
typedef void (*dr_filter_emit_hook)(void *ctx, dr_instance *filter, dr_chunk *c);
dr_instance *dr_agent_filter_new(dr_agent *a, const dr_cfg_node *entry, const char *path,
                                 const char *name, dr_filter_emit_hook hook, void *hook_ctx,
                                 dr_cfg_errors *errs);
void dr_agent_filter_free(dr_instance *inst);
bool dr_agent_ready(const dr_agent *a);

#endif
