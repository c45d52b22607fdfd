/*
 * null output: counts records and discards them. For benchmarks and for
 * inputs whose records are only wanted in the self-metrics.
 */
#include "drover/plugin.h"

static const dr_option null_options[] = {{0}};

static void null_flush(dr_instance *inst, dr_flush *f)
{
    (void)inst;
    dr_output_done(f, DR_DELIVERED, NULL);
}

const dr_plugin dr_plugin_null = {
    .abi = DR_PLUGIN_ABI,
    .name = "null",
    .kind = DR_OUTPUT,
    .data = DR_DATA_LOGS | DR_DATA_METRICS,
    .description = "Counts the records (or metric samples) it is given "
                   "(drover_output_records_total) and discards them. Every record counts as "
                   "delivered, so inputs checkpoint past it.",
    .options = null_options,
    .conf_size = 0,
    .flush = null_flush,
};
