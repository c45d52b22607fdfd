/*
 * The kubelet's /stats/summary (JSON) as Prometheus text, so that the
 * scrape machinery (series cache, metric relabeling, staleness) treats it
 * as any other target's body. The names are those of the OpenTelemetry
 * kubeletstats receiver written the Prometheus way (k8s.node.cpu.usage is
 * k8s_node_cpu_usage; a unit of bytes or seconds adds _bytes or _seconds,
 * a counter _total), with a k8s_container_ prefix for containers so that
 * no name clashes with cAdvisor's container_* families.
 */
#ifndef DROVER_KUBELET_SUMMARY_H
#define DROVER_KUBELET_SUMMARY_H

#include <stddef.h>

#include "buf.h"

/* Writes the series of a /stats/summary body to out as Prometheus text
 * 0.0.4 (no timestamps: samples take the scrape's time). Fields missing
 * from the JSON make no series. 0, or DR_EINVAL (the body is not JSON or
 * not a summary) or DR_ENOMEM, with why filled. */
int kubelet_summary_to_text(const char *body, size_t len, dr_buf *out, char *why, size_t whylen);

#endif
