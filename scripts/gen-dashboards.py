#!/usr/bin/env python3
"""Writes the Grafana dashboards under dashboards/ (drover.json, kubelet.json,
coredns.json, logs.json) from the definitions below. Run it after changing a
panel; tests/e2e/test_dashboards.py checks the files are what this prints and
runs every query they hold against a real Prometheus and Loki.

    python3 scripts/gen-dashboards.py          # rewrite dashboards/*.json
    python3 scripts/gen-dashboards.py --check  # exit 1 when a file differs

Conventions every dashboard follows (docs/dashboards.md):
- one data source variable, `datasource` (prometheus, or loki for logs.json),
  and no data source UID anywhere: every panel and variable uses ${datasource};
- the Prometheus dashboards have `job` and `instance` variables (multi, All =
  .+) and every selector matches job=~"$job" and instance=~"$instance", as
  Grafana's dashboard linter wants; per-node views add `node` (the label the
  kubelet and coredns inputs set, and external_labels sets for the rest);
- rate() and irate() take $__rate_interval, LogQL ranges $__auto.
"""

from __future__ import annotations

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "dashboards")
SCHEMA_VERSION = 39

SEL = 'job=~"$job", instance=~"$instance", node=~"$node"'


# ---- building blocks -------------------------------------------------------------------------


def ds(kind: str) -> dict:
    return {"type": kind, "uid": "${datasource}"}


def datasource_var(kind: str) -> dict:
    return {
        "name": "datasource", "label": "Data source", "type": "datasource", "query": kind,
        "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [],
        "refresh": 1, "regex": "", "skipUrlSync": False,
    }


def query_var(kind: str, name: str, label: str, query: str, *, multi: bool = True,
              include_all: bool = True) -> dict:
    v = {
        "name": name, "label": label, "type": "query", "datasource": ds(kind),
        "definition": query, "query": query, "refresh": 2, "regex": "", "sort": 1,
        "hide": 0, "multi": multi, "includeAll": include_all, "options": [],
        "current": {"selected": True, "text": "All", "value": "$__all"} if include_all else {},
        "skipUrlSync": False,
    }
    if include_all:
        v["allValue"] = ".+"
    return v


class Board:
    """Panels laid out on Grafana's 24-column grid, rows as full-width headers."""

    def __init__(self, kind: str):
        self.kind = kind
        self.panels: list[dict] = []
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.row_h = 0

    def _place(self, w: int, h: int) -> dict:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self.panels.append({"type": "row", "title": title, "id": self.next_id, "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.next_id += 1
        self.y += 1

    def _targets(self, targets) -> list[dict]:
        out = []
        for i, t in enumerate(targets):
            expr, legend = t if isinstance(t, tuple) else (t, "")
            tgt = {"datasource": ds(self.kind), "expr": expr, "refId": chr(ord("A") + i)}
            if self.kind == "prometheus":
                tgt.update({"legendFormat": legend or "__auto", "range": True, "instant": False,
                            "editorMode": "code"})
            else:
                tgt.update({"legendFormat": legend, "queryType": "range", "editorMode": "code"})
            out.append(tgt)
        return out

    def timeseries(self, title: str, description: str, unit: str, targets, *, w: int = 8,
                   h: int = 8, stack: bool = False, min0: bool = True) -> None:
        defaults = {"unit": unit, "custom": {
            "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
            "spanNulls": False, "stacking": {"mode": "normal" if stack else "none", "group": "A"}}}
        if min0:
            defaults["min"] = 0
        self.panels.append({
            "type": "timeseries", "id": self.next_id, "title": title, "description": description,
            "datasource": ds(self.kind), "gridPos": self._place(w, h),
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom",
                                   "showLegend": True, "calcs": ["lastNotNull", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}},
            "targets": self._targets(targets),
        })
        self.next_id += 1

    def stat(self, title: str, description: str, unit: str, targets, *, w: int = 6, h: int = 4,
             thresholds=None, mappings=None) -> None:
        defaults = {"unit": unit, "color": {"mode": "thresholds"},
                    "thresholds": {"mode": "absolute", "steps": thresholds or [
                        {"color": "green", "value": None}]}}
        if mappings:
            defaults["mappings"] = mappings
        self.panels.append({
            "type": "stat", "id": self.next_id, "title": title, "description": description,
            "datasource": ds(self.kind), "gridPos": self._place(w, h),
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "textMode": "auto",
                        "justifyMode": "auto", "orientation": "auto"},
            "targets": self._targets(targets),
        })
        self.next_id += 1

    def logs(self, title: str, description: str, expr: str, *, w: int = 24, h: int = 12) -> None:
        self.panels.append({
            "type": "logs", "id": self.next_id, "title": title, "description": description,
            "datasource": ds(self.kind), "gridPos": self._place(w, h),
            "options": {"showTime": True, "wrapLogMessage": True, "sortOrder": "Descending",
                        "enableLogDetails": True, "dedupStrategy": "none",
                        "prettifyLogMessage": False, "showCommonLabels": False,
                        "showLabels": False},
            "targets": self._targets([expr]),
        })
        self.next_id += 1


def dashboard(uid: str, title: str, description: str, tags: list[str], variables: list[dict],
              board: Board, *, refresh: str = "30s") -> dict:
    return {
        "uid": uid, "title": title, "description": description, "tags": tags,
        "editable": False, "graphTooltip": 1, "schemaVersion": SCHEMA_VERSION, "version": 1,
        "time": {"from": "now-1h", "to": "now"}, "refresh": refresh, "timezone": "",
        "fiscalYearStartMonth": 0, "liveNow": False, "weekStart": "",
        "timepicker": {}, "links": [], "annotations": {"list": []},
        "templating": {"list": variables}, "panels": board.panels,
    }


def prom_vars(job_query: str, node_query: str, instance_query: str) -> list[dict]:
    return [
        datasource_var("prometheus"),
        query_var("prometheus", "job", "Job", job_query),
        query_var("prometheus", "node", "Node", node_query),
        query_var("prometheus", "instance", "Instance", instance_query),
    ]


# ---- drover.json: the agent's own health -----------------------------------------------------


def drover_dashboard() -> dict:
    b = Board("prometheus")
    s = SEL
    b.row("Overview")
    b.stat("Agents up", "drover processes whose /metrics the last scrape reached: up of the "
           "targets that export drover_build_info.", "none",
           ['sum(up{%s} and on (job, instance) drover_build_info{%s})' % (s, s)],
           thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}])
    b.stat("Versions", "Agents by drover version (drover_build_info).", "none",
           [('count by (version) (drover_build_info{%s})' % s, "{{version}}")])
    b.stat("Last reload OK", "0 when an agent's last configuration reload (SIGHUP) was refused "
           "(drover_config_last_reload_successful; the lowest of the agents shown).", "none",
           ['min(drover_config_last_reload_successful{%s})' % s],
           thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
           mappings=[{"type": "value", "options": {"0": {"text": "refused", "color": "red"},
                                                    "1": {"text": "ok", "color": "green"}}}])
    b.stat("Series held", "Series in the agents' series table, all metrics inputs together "
           "(drover_series).", "short", ['sum(drover_series{%s})' % s])
    b.timeseries("Config reloads", "Configuration reloads per second by result (drover_config_reloads_total).",
                 "ops", [('sum by (node, result) (rate(drover_config_reloads_total{%s}[$__rate_interval]))' % s,
                          "{{node}} {{result}}")], w=12)
    b.timeseries("Series table", "Series held (drover_series), distinct label strings "
                 "(drover_series_symbols), and samples of new series refused since start because "
                 "the table held max_series (drover_series_full_drops).", "short",
                 [('sum by (node) (drover_series{%s})' % s, "{{node}} series"),
                  ('sum by (node) (drover_series_symbols{%s})' % s, "{{node}} symbols"),
                  ('sum by (node) (drover_series_full_drops{%s})' % s, "{{node}} refused at max_series")],
                 w=6)
    b.timeseries("Series table memory", "Memory of the series table (drover_series_bytes).", "bytes",
                 [('sum by (node) (drover_series_bytes{%s})' % s, "{{node}}")], w=6)

    b.row("Resources")
    b.timeseries("CPU", "CPU time the agent uses, in cores (rate of process_cpu_seconds_total, user "
                 "and system).", "short",
                 [('sum by (node) (rate(process_cpu_seconds_total{%s}[$__rate_interval]))' % s,
                   "{{node}}")])
    b.timeseries("Memory (RSS)", "Resident memory of the agent (process_resident_memory_bytes): "
                 "what the pod's memory limit is measured against.", "bytes",
                 [('sum by (node) (process_resident_memory_bytes{%s})' % s, "{{node}}")])
    b.timeseries("Open file descriptors", "File descriptors the agent holds "
                 "(process_open_fds: tailed files, sockets) and its limit (process_max_fds).",
                 "short",
                 [('sum by (node) (process_open_fds{%s})' % s, "{{node}} open"),
                  ('min by (node) (process_max_fds{%s})' % s, "{{node}} limit")])

    b.row("Records")
    b.timeseries("Records in", "Records read per second by input instance (drover_input_records_total).",
                 "cps", [('sum by (node, name) (rate(drover_input_records_total{%s}[$__rate_interval]))' % s,
                          "{{node}} {{name}}")])
    b.timeseries("Records out", "Records delivered per second by output instance (drover_output_records_total).",
                 "cps", [('sum by (node, name) (rate(drover_output_records_total{%s}[$__rate_interval]))' % s,
                          "{{node}} {{name}}")])
    b.timeseries("Dropped records by reason", "Records dropped per second, by the instance that "
                 "dropped them and why (drover_dropped_records_total{reason}): no_route, too_long, "
                 "write_relabel, spill_full, answers a backend refused, ...", "cps",
                 [('sum by (node, name, reason) (rate(drover_dropped_records_total{%s}[$__rate_interval]))' % s,
                   "{{node}} {{name}} {{reason}}")])
    b.timeseries("Bytes in", "Bytes read per second by input instance (drover_input_bytes_total).",
                 "Bps", [('sum by (node, name) (rate(drover_input_bytes_total{%s}[$__rate_interval]))' % s,
                          "{{node}} {{name}}")])
    b.timeseries("Bytes out", "Bytes delivered per second by output instance (drover_output_bytes_total).",
                 "Bps", [('sum by (node, name) (rate(drover_output_bytes_total{%s}[$__rate_interval]))' % s,
                          "{{node}} {{name}}")])
    b.timeseries("Output retries", "Deliveries retried per second by output instance "
                 "(drover_output_retries_total): the backend failed or asked to wait.", "ops",
                 [('sum by (node, name) (rate(drover_output_retries_total{%s}[$__rate_interval]))' % s,
                   "{{node}} {{name}}")])

    b.row("Output queues")
    b.timeseries("Queued bytes", "Memory held by each output's queue (drover_queue_bytes); at "
                 "queue_max_bytes the inputs feeding it stop reading.", "bytes",
                 [('sum by (node, name) (drover_queue_bytes{%s})' % s, "{{node}} {{name}}")])
    b.timeseries("Oldest queued chunk", "Age of the oldest chunk waiting in each output's queue "
                 "(drover_queue_oldest_age_seconds): how far behind delivery is.", "s",
                 [('max by (node, name) (drover_queue_oldest_age_seconds{%s})' % s, "{{node}} {{name}}")])
    b.timeseries("Queued chunks", "Chunks waiting in each output's queue (drover_queue_chunks).", "short",
                 [('sum by (node, name) (drover_queue_chunks{%s})' % s, "{{node}} {{name}}")])

    b.row("Container logs (tail)")
    b.timeseries("Checkpoint lag", "Bytes of the open log files not yet delivered: their size "
                 "minus their checkpoint (drover_tail_checkpoint_lag_bytes). It grows while outputs "
                 "or reading fall behind; a restart reads it again.",
                 "bytes", [('max by (node, name) (drover_tail_checkpoint_lag_bytes{%s})' % s,
                            "{{node}} {{name}}")])
    b.timeseries("Open files", "Log files held open by each tail input (drover_tail_open_files).",
                 "short", [('sum by (node, name) (drover_tail_open_files{%s})' % s, "{{node}} {{name}}")])
    b.timeseries("Rotations and truncations", "Rotations and truncations seen per second "
                 "(drover_tail_rotations_total, drover_tail_truncations_total).", "ops",
                 [('sum by (node) (rate(drover_tail_rotations_total{%s}[$__rate_interval]))' % s,
                   "{{node}} rotations"),
                  ('sum by (node) (rate(drover_tail_truncations_total{%s}[$__rate_interval]))' % s,
                   "{{node}} truncations")])
    b.timeseries("Bytes lost to rotation", "Unread bytes of rotated files closed past "
                 "max_rotated_files (drover_tail_rotated_lost_bytes_total): the files rotated "
                 "faster than drover could read them.", "Bps",
                 [('sum by (node) (rate(drover_tail_rotated_lost_bytes_total{%s}[$__rate_interval]))' % s,
                   "{{node}}")])
    b.timeseries("Malformed, split and truncated lines", "Lines per second that were not CRI or "
                 "docker json-file, records split or truncated at the line limit "
                 "(drover_tail_malformed_lines_total, drover_tail_split_records_total, "
                 "drover_tail_truncated_records_total).", "cps",
                 [('sum by (node) (rate(drover_tail_malformed_lines_total{%s}[$__rate_interval]))' % s,
                   "{{node}} malformed"),
                  ('sum by (node) (rate(drover_tail_split_records_total{%s}[$__rate_interval]))' % s,
                   "{{node}} split"),
                  ('sum by (node) (rate(drover_tail_truncated_records_total{%s}[$__rate_interval]))' % s,
                   "{{node}} truncated")])
    b.timeseries("Partial lines pending", "Partial (P) lines waiting for the rest of their record "
                 "(drover_tail_partial_records_pending).", "short",
                 [('sum by (node) (drover_tail_partial_records_pending{%s})' % s, "{{node}}")])

    b.row("Scrapes")
    b.timeseries("Scrapes", "Scrapes per second by metrics input (drover_scrapes_total) and "
                 "scrapes skipped because the outputs were full (drover_scrapes_skipped_total).",
                 "ops", [('sum by (node, name) (rate(drover_scrapes_total{%s}[$__rate_interval]))' % s,
                          "{{node}} {{name}}"),
                         ('sum by (node, name) (rate(drover_scrapes_skipped_total{%s}[$__rate_interval]))' % s,
                          "{{node}} {{name}} skipped")])
    b.timeseries("Scrape failures by reason", "Failed scrapes per second by metrics input and reason "
                 "(drover_scrape_failures_total{reason}).", "ops",
                 [('sum by (node, name, reason) (rate(drover_scrape_failures_total{%s}[$__rate_interval]))' % s,
                   "{{node}} {{name}} {{reason}}")])
    b.timeseries("Samples scraped", "Samples scraped per second by metrics input "
                 "(drover_scrape_samples_total), and the targets each has (drover_scrape_targets).",
                 "short", [('sum by (node, name) (rate(drover_scrape_samples_total{%s}[$__rate_interval]))' % s,
                            "{{node}} {{name}} samples/s"),
                           ('sum by (node, name) (drover_scrape_targets{%s})' % s,
                            "{{node}} {{name}} targets")])
    # The series below are those of the scraped targets: job and instance are
    # theirs, not the agent's, so they are picked by the agent's node alone.
    b.timeseries("Targets up", "Targets the agents scrape that answered their last scrape, by "
                 "job, against all targets (up of every scraped target on the nodes shown).",
                 "short", [('sum by (node, job) (up{node=~"$node"})', "{{node}} {{job}} up"),
                           ('count by (node, job) (up{node=~"$node"})', "{{node}} {{job}} targets")])
    b.timeseries("Scrape duration", "The slowest scrape of each job (scrape_duration_seconds of the "
                 "targets on the nodes shown).", "s",
                 [('max by (node, job) (scrape_duration_seconds{node=~"$node"})', "{{node}} {{job}}")])
    b.timeseries("Samples per scrape", "Samples each job's targets gave in their last scrape, after "
                 "metric relabeling (scrape_samples_post_metric_relabeling).", "short",
                 [('sum by (node, job) (scrape_samples_post_metric_relabeling{node=~"$node"})',
                   "{{node}} {{job}}")])

    b.row("Remote write")
    b.timeseries("Samples sent", "Samples per second each remote_write output took from its queue "
                 "(drover_remote_write_samples_in_total) and float samples the receiver accepted "
                 "(drover_remote_write_samples_total).", "cps",
                 [('sum by (node, name) (rate(drover_remote_write_samples_in_total{%s}[$__rate_interval]))' % s,
                   "{{node}} {{name}} in"),
                  ('sum by (node, name) (rate(drover_remote_write_samples_total{%s}[$__rate_interval]))' % s,
                   "{{node}} {{name}} sent")])
    b.timeseries("Failed and retried samples", "Samples per second the receiver refused for good "
                 "(drover_remote_write_samples_failed_total) and sent again after a failure "
                 "(drover_remote_write_samples_retried_total).", "cps",
                 [('sum by (node, name) (rate(drover_remote_write_samples_failed_total{%s}[$__rate_interval]))' % s,
                   "{{node}} {{name}} failed"),
                  ('sum by (node, name) (rate(drover_remote_write_samples_retried_total{%s}[$__rate_interval]))' % s,
                   "{{node}} {{name}} retried")])
    b.timeseries("Pending samples", "Samples queued in the shards, not yet accepted "
                 "(drover_remote_write_samples_pending).", "short",
                 [('sum by (node, name) (drover_remote_write_samples_pending{%s})' % s, "{{node}} {{name}}")])
    b.timeseries("Send lag", "Seconds between now and the newest sample timestamp the receiver "
                 "accepted (drover_remote_write_highest_sent_timestamp_seconds).", "s",
                 [('time() - max by (node, name) (drover_remote_write_highest_sent_timestamp_seconds{%s})' % s,
                   "{{node}} {{name}}")])
    b.timeseries("Shards", "Shards in use and wanted by each remote_write output "
                 "(drover_remote_write_shards, drover_remote_write_shards_desired).", "short",
                 [('max by (node, name) (drover_remote_write_shards{%s})' % s, "{{node}} {{name}}"),
                  ('max by (node, name) (drover_remote_write_shards_desired{%s})' % s,
                   "{{node}} {{name}} desired")])
    b.timeseries("Bytes sent", "Request bytes per second sent by each remote_write output, "
                 "compressed (drover_remote_write_bytes_total).", "Bps",
                 [('sum by (node, name) (rate(drover_remote_write_bytes_total{%s}[$__rate_interval]))' % s,
                   "{{node}} {{name}}")])
    b.timeseries("Spilled to disk", "Bytes of requests spilled to disk while the receiver fails "
                 "(drover_remote_write_spill_bytes), at most spill_max_bytes.",
                 "bytes",
                 [('sum by (node, name) (drover_remote_write_spill_bytes{%s})' % s, "{{node}} {{name}}")])
    b.timeseries("Spill activity", "Whether each output is spilling (drover_remote_write_spill_active), "
                 "its segment files (drover_remote_write_spill_segments), and spill records written "
                 "and replayed per second (drover_remote_write_spill_records_written_total, "
                 "drover_remote_write_spill_records_replayed_total).", "short",
                 [('max by (node, name) (drover_remote_write_spill_active{%s})' % s,
                   "{{node}} {{name}} spilling"),
                  ('sum by (node, name) (drover_remote_write_spill_segments{%s})' % s,
                   "{{node}} {{name}} segments"),
                  ('sum by (node, name) (rate(drover_remote_write_spill_records_written_total{%s}[$__rate_interval]))' % s,
                   "{{node}} {{name}} written/s"),
                  ('sum by (node, name) (rate(drover_remote_write_spill_records_replayed_total{%s}[$__rate_interval]))' % s,
                   "{{node}} {{name}} replayed/s")])
    b.timeseries("Spill losses", "Samples dropped from the spill per second by reason "
                 "(drover_remote_write_spill_samples_dropped_total{reason}: full, the bound reached), "
                 "and spill records dropped (drover_remote_write_spill_records_dropped_total{reason}: "
                 "corrupt, a torn tail or bad checksum after a crash).", "cps",
                 [('sum by (node, name, reason) (rate(drover_remote_write_spill_samples_dropped_total{%s}[$__rate_interval]))' % s,
                   "{{node}} {{name}} samples {{reason}}"),
                  ('sum by (node, name, reason) (rate(drover_remote_write_spill_records_dropped_total{%s}[$__rate_interval]))' % s,
                   "{{node}} {{name}} records {{reason}}")])

    return dashboard(
        "drover-agent", "drover / Agent",
        "drover's own health per node: records in and out, drops, output queues, tail "
        "checkpoints, scrapes and remote write, from the agent's /metrics.",
        ["drover"],
        prom_vars('label_values(drover_build_info, job)',
                  'label_values(drover_build_info{job=~"$job"}, node)',
                  'label_values(drover_build_info{job=~"$job", node=~"$node"}, instance)'),
        b)


# ---- kubelet.json: nodes and pods from the kubelet and cAdvisor ------------------------------


def kubelet_dashboard() -> dict:
    b = Board("prometheus")
    s = SEL
    cad = s + ', metrics_path="/metrics/cadvisor"'
    res = s + ', metrics_path="/metrics/resource"'
    summ = s + ', metrics_path="/stats/summary"'
    pods = cad + ', namespace=~"$namespace", container!="", image!=""'
    netp = cad + ', namespace=~"$namespace", pod!=""'

    b.row("Node")
    b.stat("CPU cores", "CPU cores of the nodes shown (machine_cpu_cores, cAdvisor).", "short",
           ['sum(machine_cpu_cores{%s})' % cad])
    b.stat("Memory", "Memory of the nodes shown (machine_memory_bytes, cAdvisor).", "bytes",
           ['sum(machine_memory_bytes{%s})' % cad])
    b.stat("Kubelet endpoints up", "Kubelet endpoints (/metrics, /metrics/cadvisor, "
           "/metrics/resource, /metrics/probes, /stats/summary) that answered their last scrape "
           "(up of the series with a metrics_path label).", "none",
           ['sum(up{%s, metrics_path!=""})' % s])
    b.stat("Running containers", "Containers cAdvisor reports on the nodes shown "
           "(container_memory_working_set_bytes series with a container).", "none",
           ['count(container_memory_working_set_bytes{%s, container!="", image!=""})' % cad])
    b.timeseries("Node CPU", "CPU the node uses, in cores (rate of node_cpu_usage_seconds_total, "
                 "/metrics/resource), against its cores (machine_cpu_cores).", "short",
                 [('sum by (node) (rate(node_cpu_usage_seconds_total{%s}[$__rate_interval]))' % res,
                   "{{node}} used"),
                  ('sum by (node) (machine_cpu_cores{%s})' % cad, "{{node}} cores")])
    b.timeseries("Node memory", "Working set of the node (node_memory_working_set_bytes, "
                 "/metrics/resource) against its memory (machine_memory_bytes).", "bytes",
                 [('sum by (node) (node_memory_working_set_bytes{%s})' % res, "{{node}} working set"),
                  ('sum by (node) (machine_memory_bytes{%s})' % cad, "{{node}} memory")])
    b.timeseries("Node filesystem", "Used and available bytes of the node's root filesystem "
                 "(k8s_node_filesystem_usage_bytes, k8s_node_filesystem_available_bytes; "
                 "/stats/summary, stats_summary: true).", "bytes",
                 [('sum by (node) (k8s_node_filesystem_usage_bytes{%s})' % summ, "{{node}} used"),
                  ('sum by (node) (k8s_node_filesystem_available_bytes{%s})' % summ, "{{node}} available")])
    b.timeseries("Node network", "Bytes per second through the node's interfaces by direction "
                 "(k8s_node_network_io_bytes_total, /stats/summary).", "Bps",
                 [('sum by (node, direction) (rate(k8s_node_network_io_bytes_total{%s}[$__rate_interval]))' % summ,
                   "{{node}} {{direction}}")], w=12)
    b.timeseries("Scrape duration", "How long each kubelet endpoint takes to scrape "
                 "(scrape_duration_seconds).", "s",
                 [('max by (node, metrics_path) (scrape_duration_seconds{%s, metrics_path!=""})' % s,
                   "{{node}} {{metrics_path}}")], w=12)

    b.row("Pods: CPU")
    b.timeseries("CPU by pod", "CPU per pod in cores (rate of container_cpu_usage_seconds_total of "
                 "its containers, cAdvisor), the 10 busiest.", "short",
                 [('topk(10, sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{%s}[$__rate_interval])))' % pods,
                   "{{namespace}}/{{pod}}")], w=12)
    b.timeseries("CPU throttling by pod", "Share of CFS periods in which a pod's containers were "
                 "throttled (container_cpu_cfs_throttled_periods_total over "
                 "container_cpu_cfs_periods_total), the 10 most throttled.", "percentunit",
                 [('topk(10, sum by (namespace, pod) (rate(container_cpu_cfs_throttled_periods_total{%s}[$__rate_interval])) '
                   '/ sum by (namespace, pod) (rate(container_cpu_cfs_periods_total{%s}[$__rate_interval])))' % (pods, pods),
                   "{{namespace}}/{{pod}}")], w=12)
    b.timeseries("CPU by namespace", "CPU per namespace in cores (pod_cpu_usage_seconds_total, "
                 "/metrics/resource).", "short",
                 [('sum by (namespace) (rate(pod_cpu_usage_seconds_total{%s, namespace=~"$namespace"}[$__rate_interval]))' % res,
                   "{{namespace}}")], w=12, stack=True)
    b.timeseries("CPU by container (summary)", "CPU per container in cores (k8s_container_cpu_usage, "
                 "/stats/summary), the 10 busiest.", "short",
                 [('topk(10, sum by (namespace, pod, container) (k8s_container_cpu_usage{%s, namespace=~"$namespace"}))' % summ,
                   "{{namespace}}/{{pod}}/{{container}}")], w=12)

    b.row("Pods: memory")
    b.timeseries("Memory working set by pod", "Working set per pod (container_memory_working_set_bytes "
                 "of its containers, cAdvisor): what the kubelet evicts on and the OOM killer "
                 "counts, the 10 largest.", "bytes",
                 [('topk(10, sum by (namespace, pod) (container_memory_working_set_bytes{%s}))' % pods,
                   "{{namespace}}/{{pod}}")], w=12)
    b.timeseries("Memory RSS and cache by pod", "Resident (container_memory_rss) and page cache "
                 "(container_memory_cache) per pod, the 10 largest.", "bytes",
                 [('topk(10, sum by (namespace, pod) (container_memory_rss{%s}))' % pods,
                   "{{namespace}}/{{pod}} rss"),
                  ('topk(10, sum by (namespace, pod) (container_memory_cache{%s}))' % pods,
                   "{{namespace}}/{{pod}} cache")], w=12)
    b.timeseries("Memory by namespace", "Working set per namespace (pod_memory_working_set_bytes, "
                 "/metrics/resource).", "bytes",
                 [('sum by (namespace) (pod_memory_working_set_bytes{%s, namespace=~"$namespace"})' % res,
                   "{{namespace}}")], w=12, stack=True)
    b.timeseries("OOM events", "Out-of-memory kills per second by pod (container_oom_events_total).",
                 "ops", [('sum by (namespace, pod) (rate(container_oom_events_total{%s}[$__rate_interval]))' % pods,
                          "{{namespace}}/{{pod}}")], w=12)

    b.row("Pods: network")
    b.timeseries("Received by pod", "Bytes per second received per pod (container_network_receive_bytes_total), "
                 "the 10 busiest.", "Bps",
                 [('topk(10, sum by (namespace, pod) (rate(container_network_receive_bytes_total{%s}[$__rate_interval])))' % netp,
                   "{{namespace}}/{{pod}}")])
    b.timeseries("Transmitted by pod", "Bytes per second sent per pod (container_network_transmit_bytes_total), "
                 "the 10 busiest.", "Bps",
                 [('topk(10, sum by (namespace, pod) (rate(container_network_transmit_bytes_total{%s}[$__rate_interval])))' % netp,
                   "{{namespace}}/{{pod}}")])
    b.timeseries("Network errors and drops", "Packets per second with errors or dropped, both "
                 "directions, per pod (container_network_{receive,transmit}_{errors,packets_dropped}_total).",
                 "pps",
                 [('sum by (namespace, pod) (rate(container_network_receive_errors_total{%s}[$__rate_interval]) '
                   '+ rate(container_network_transmit_errors_total{%s}[$__rate_interval]))' % (netp, netp),
                   "{{namespace}}/{{pod}} errors"),
                  ('sum by (namespace, pod) (rate(container_network_receive_packets_dropped_total{%s}[$__rate_interval]) '
                   '+ rate(container_network_transmit_packets_dropped_total{%s}[$__rate_interval]))' % (netp, netp),
                   "{{namespace}}/{{pod}} dropped")])

    b.row("Pods: filesystem")
    b.timeseries("Filesystem reads and writes by pod", "Bytes per second read and written by each "
                 "pod's containers (container_fs_reads_bytes_total, container_fs_writes_bytes_total), "
                 "the 10 busiest.", "Bps",
                 [('topk(10, sum by (namespace, pod) (rate(container_fs_reads_bytes_total{%s}[$__rate_interval])))' % pods,
                   "{{namespace}}/{{pod}} read"),
                  ('topk(10, sum by (namespace, pod) (rate(container_fs_writes_bytes_total{%s}[$__rate_interval])))' % pods,
                   "{{namespace}}/{{pod}} write")])
    b.timeseries("Ephemeral storage by pod", "Bytes of ephemeral storage each pod uses "
                 "(k8s_pod_filesystem_usage_bytes, /stats/summary), the 10 largest.", "bytes",
                 [('topk(10, sum by (namespace, pod) (k8s_pod_filesystem_usage_bytes{%s, namespace=~"$namespace"}))' % summ,
                   "{{namespace}}/{{pod}}")])
    b.timeseries("Volume usage", "Share of each pod volume's capacity in use "
                 "(1 - k8s_volume_available_bytes / k8s_volume_capacity_bytes, /stats/summary), "
                 "the 10 fullest.", "percentunit",
                 [('topk(10, 1 - sum by (namespace, pod, volume) (k8s_volume_available_bytes{%s, namespace=~"$namespace"}) '
                   '/ sum by (namespace, pod, volume) (k8s_volume_capacity_bytes{%s, namespace=~"$namespace"}))' % (summ, summ),
                   "{{namespace}}/{{pod}} {{volume}}")])

    variables = prom_vars('label_values(up{metrics_path="/metrics/cadvisor"}, job)',
                          'label_values(up{job=~"$job", metrics_path="/metrics/cadvisor"}, node)',
                          'label_values(up{job=~"$job", node=~"$node", metrics_path="/metrics/cadvisor"}, instance)')
    variables.append(query_var(
        "prometheus", "namespace", "Namespace",
        'label_values(container_memory_working_set_bytes{job=~"$job", instance=~"$instance", '
        'node=~"$node", metrics_path="/metrics/cadvisor", namespace!=""}, namespace)'))
    return dashboard(
        "drover-kubelet", "drover / Kubelet and cAdvisor",
        "CPU, memory, network and filesystem of the nodes and their pods, from the kubelet "
        "input (/metrics/cadvisor, /metrics/resource, /stats/summary) with kube-prometheus' "
        "labels.", ["drover", "kubernetes"], variables, b)


# ---- coredns.json: cluster DNS from CoreDNS and from every node --------------------------------


def coredns_dashboard() -> dict:
    b = Board("prometheus")
    s = 'job=~"$job", instance=~"$instance"'
    sn = s + ', node=~"$node"'
    # dns_probe series are the agent's own (labels server, name, type, and node
    # from external_labels): they have no job or instance.
    p = 'node=~"$node", server=~"$server"'

    b.row("CoreDNS")
    b.stat("CoreDNS pods up", "CoreDNS pods that answered their last scrape: up of the targets "
           "that export coredns_build_info.", "none",
           ['sum(up{%s} and on (job, instance) coredns_build_info{%s})' % (sn, sn)], thresholds=[{"color": "red", "value": None},
                                            {"color": "green", "value": 1}])
    b.stat("Requests", "DNS requests per second, all CoreDNS pods shown (coredns_dns_requests_total).",
           "reqps", ['sum(rate(coredns_dns_requests_total{%s}[$__rate_interval]))' % sn])
    b.stat("Cache hit rate", "Share of cache lookups answered from the cache "
           "(coredns_cache_hits_total over hits plus coredns_cache_misses_total).", "percentunit",
           ['sum(rate(coredns_cache_hits_total{%s}[$__rate_interval])) / (sum(rate(coredns_cache_hits_total{%s}[$__rate_interval])) '
            '+ sum(rate(coredns_cache_misses_total{%s}[$__rate_interval])))' % (sn, sn, sn)])
    b.stat("SERVFAIL share", "Share of responses with rcode SERVFAIL (coredns_dns_responses_total).",
           "percentunit",
           ['sum(rate(coredns_dns_responses_total{%s, rcode="SERVFAIL"}[$__rate_interval])) '
            '/ sum(rate(coredns_dns_responses_total{%s}[$__rate_interval]))' % (sn, sn)],
           thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 0.01},
                       {"color": "red", "value": 0.05}])
    b.timeseries("Requests by protocol and type", "DNS requests per second by transport and query "
                 "type (coredns_dns_requests_total{proto, type}).", "reqps",
                 [('sum by (proto, type) (rate(coredns_dns_requests_total{%s}[$__rate_interval]))' % sn,
                   "{{proto}} {{type}}")])
    b.timeseries("Responses by rcode", "Responses per second by rcode (coredns_dns_responses_total{rcode}).",
                 "reqps", [('sum by (rcode) (rate(coredns_dns_responses_total{%s}[$__rate_interval]))' % sn,
                            "{{rcode}}")])
    b.timeseries("Requests by zone", "DNS requests per second by the server block's zone "
                 "(coredns_dns_requests_total{zone}).", "reqps",
                 [('sum by (zone) (rate(coredns_dns_requests_total{%s}[$__rate_interval]))' % sn,
                   "{{zone}}")])
    b.timeseries("Request latency", "50th, 90th and 99th percentile of the time CoreDNS takes "
                 "to answer (coredns_dns_request_duration_seconds).", "s",
                 [('histogram_quantile(0.99, sum by (le) (rate(coredns_dns_request_duration_seconds_bucket{%s}[$__rate_interval])))' % sn, "p99"),
                  ('histogram_quantile(0.90, sum by (le) (rate(coredns_dns_request_duration_seconds_bucket{%s}[$__rate_interval])))' % sn, "p90"),
                  ('histogram_quantile(0.50, sum by (le) (rate(coredns_dns_request_duration_seconds_bucket{%s}[$__rate_interval])))' % sn, "p50")])
    b.timeseries("Latency by pod", "99th percentile of the answer time per CoreDNS pod "
                 "(coredns_dns_request_duration_seconds).", "s",
                 [('histogram_quantile(0.99, sum by (pod, le) (rate(coredns_dns_request_duration_seconds_bucket{%s}[$__rate_interval])))' % sn,
                   "{{pod}}")])
    b.timeseries("Cache hits and misses", "Cache lookups per second answered from the cache by "
                 "type (coredns_cache_hits_total{type}: success, denial) and missed "
                 "(coredns_cache_misses_total).", "reqps",
                 [('sum by (type) (rate(coredns_cache_hits_total{%s}[$__rate_interval]))' % sn, "hits {{type}}"),
                  ('sum(rate(coredns_cache_misses_total{%s}[$__rate_interval]))' % sn, "misses")])
    b.timeseries("Cache entries", "Entries in the cache by type (coredns_cache_entries).", "short",
                 [('sum by (pod, type) (coredns_cache_entries{%s})' % sn, "{{pod}} {{type}}")])
    b.timeseries("Forwarded requests", "Requests per second forwarded upstream by rcode "
                 "(coredns_proxy_request_duration_seconds_count: CoreDNS 1.12 names the forward "
                 "plugin's metrics coredns_proxy_*).", "reqps",
                 [('sum by (to, rcode) (rate(coredns_proxy_request_duration_seconds_count{%s}[$__rate_interval]))' % sn,
                   "{{to}} {{rcode}}")])
    b.timeseries("Forward latency", "99th percentile of upstream answer times "
                 "(coredns_proxy_request_duration_seconds).", "s",
                 [('histogram_quantile(0.99, sum by (to, le) (rate(coredns_proxy_request_duration_seconds_bucket{%s}[$__rate_interval])))' % sn,
                   "{{to}}")])
    b.timeseries("Response size", "99th percentile of response sizes "
                 "(coredns_dns_response_size_bytes).", "bytes",
                 [('histogram_quantile(0.99, sum by (proto, le) (rate(coredns_dns_response_size_bytes_bucket{%s}[$__rate_interval])))' % sn,
                   "{{proto}}")])
    b.timeseries("Panics", "Panics CoreDNS recovered from per second (coredns_panics_total).",
                 "ops", [('sum by (pod) (rate(coredns_panics_total{%s}[$__rate_interval]))' % sn, "{{pod}}")])

    b.row("DNS from every node (dns_probe)")
    b.stat("Servers answering", "Share of the probed (node, server, name, type) whose last "
           "probe got a response (average of drover_dns_probe_up).", "percentunit",
           ['avg(drover_dns_probe_up{%s})' % p],
           thresholds=[{"color": "red", "value": None}, {"color": "orange", "value": 0.9},
                       {"color": "green", "value": 1}])
    b.stat("Probe timeouts", "Probes per second that got no answer within the timeout "
           "(drover_dns_probe_timeouts_total).", "ops",
           ['sum(rate(drover_dns_probe_timeouts_total{%s}[$__rate_interval]))' % p],
           thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 0.001}])
    b.stat("Probe latency p99", "99th percentile of probe times, timeouts included "
           "(drover_dns_probe_duration_seconds).", "s",
           ['histogram_quantile(0.99, sum by (le) (rate(drover_dns_probe_duration_seconds_bucket{%s}[$__rate_interval])))' % p])
    b.stat("Probes", "Probes per second (drover_dns_probe_duration_seconds_count).", "ops",
           ['sum(rate(drover_dns_probe_duration_seconds_count{%s}[$__rate_interval]))' % p])
    b.timeseries("Answered by node and server", "1 when the last probe of a name got a response "
                 "(drover_dns_probe_up), by node, server and name.", "short",
                 [('min by (node, server, name) (drover_dns_probe_up{%s})' % p,
                   "{{node}} {{server}} {{name}}")], w=12)
    b.timeseries("Probe latency by node", "99th percentile of probe times per node and server "
                 "(drover_dns_probe_duration_seconds).", "s",
                 [('histogram_quantile(0.99, sum by (node, server, le) (rate(drover_dns_probe_duration_seconds_bucket{%s}[$__rate_interval])))' % p,
                   "{{node}} {{server}}")], w=12)
    b.timeseries("Probe rcodes", "Probe responses per second by rcode "
                 "(drover_dns_probe_responses_total{rcode}).", "ops",
                 [('sum by (node, server, rcode) (rate(drover_dns_probe_responses_total{%s}[$__rate_interval]))' % p,
                   "{{node}} {{server}} {{rcode}}")])
    b.timeseries("Probe timeouts and errors", "Probes per second that timed out "
                 "(drover_dns_probe_timeouts_total) or failed (drover_dns_probe_errors_total{reason}: "
                 "malformed, network).", "ops",
                 [('sum by (node, server) (rate(drover_dns_probe_timeouts_total{%s}[$__rate_interval]))' % p,
                   "{{node}} {{server}} timeout"),
                  ('sum by (node, server, reason) (rate(drover_dns_probe_errors_total{%s}[$__rate_interval]))' % p,
                   "{{node}} {{server}} {{reason}}")])
    b.timeseries("Answer records", "Answer records in the last response per name "
                 "(drover_dns_probe_answers).", "short",
                 [('max by (node, server, name, type) (drover_dns_probe_answers{%s})' % p,
                   "{{node}} {{server}} {{name}} {{type}}")])

    variables = [
        datasource_var("prometheus"),
        query_var("prometheus", "job", "Job", 'label_values(coredns_build_info, job)'),
        query_var("prometheus", "instance", "Instance",
                  'label_values(coredns_build_info{job=~"$job"}, instance)'),
        query_var("prometheus", "node", "Node", 'label_values(drover_dns_probe_up, node)'),
        query_var("prometheus", "server", "Server",
                  'label_values(drover_dns_probe_up{node=~"$node"}, server)'),
    ]
    return dashboard(
        "drover-coredns", "drover / Cluster DNS",
        "CoreDNS as its pods report it (the coredns input: requests, rcodes, latency, cache) and "
        "the DNS path as every node sees it (the dns_probe input).",
        ["drover", "kubernetes", "dns"], variables, b)


# ---- logs.json: container logs in Loki -----------------------------------------------------


def logs_dashboard() -> dict:
    b = Board("loki")
    sel = '{namespace=~"$namespace", node=~"$node", container=~"$container"}'
    errors = ' |~ "(?i)(error|fatal|panic|exception)"'
    b.timeseries("Lines by namespace", "Log lines per second by namespace "
                 "(the namespace stream label the loki output sets).", "cps",
                 [('sum by (namespace) (rate(%s[$__auto]))' % sel,
                   "{{namespace}}")], w=12, stack=True)
    b.timeseries("Bytes by namespace", "Log bytes per second by namespace (bytes_rate).",
                 "Bps", [('sum by (namespace) (bytes_rate(%s[$__auto]))' % sel,
                          "{{namespace}}")], w=12, stack=True)
    b.timeseries("Error lines by namespace", "Lines per second that mention error, fatal, panic "
                 "or exception (any case), by namespace.", "cps",
                 [('sum by (namespace) (rate(%s%s [$__auto]))' % (sel, errors),
                   "{{namespace}}")], w=12)
    b.timeseries("Error share by namespace", "Share of each namespace's lines that mention error, "
                 "fatal, panic or exception.", "percentunit",
                 [('sum by (namespace) (count_over_time(%s%s [$__auto])) / sum by (namespace) (count_over_time(%s[$__auto]))'
                   % (sel, errors, sel), "{{namespace}}")], w=12)
    b.timeseries("stderr lines by container", "Lines per second written to stderr, by namespace and "
                 "container (the stream label), the 10 busiest.", "cps",
                 [('topk(10, sum by (namespace, container) (rate({namespace=~"$namespace", node=~"$node", '
                   'container=~"$container", stream="stderr"}[$__auto])))',
                   "{{namespace}}/{{container}}")], w=12)
    b.timeseries("Lines by node", "Log lines per second shipped from each node.", "cps",
                 [('sum by (node) (rate(%s[$__auto]))' % sel, "{{node}}")],
                 w=12)
    b.logs("Error lines", "The latest lines that mention error, fatal, panic or exception.",
           sel + errors, h=10)
    b.logs("Logs", "The latest lines of the streams picked above, filtered by the search box "
           "(a regular expression; empty shows all).", sel + ' |~ "$search"')
    variables = [
        datasource_var("loki"),
        query_var("loki", "node", "Node", 'label_values(node)'),
        query_var("loki", "namespace", "Namespace", 'label_values({node=~"$node"}, namespace)'),
        query_var("loki", "container", "Container",
                  'label_values({node=~"$node", namespace=~"$namespace"}, container)'),
        {"name": "search", "label": "Search", "type": "textbox", "query": "", "hide": 0,
         "current": {"text": "", "value": ""}, "options": [], "skipUrlSync": False},
    ]
    return dashboard(
        "drover-logs", "drover / Logs",
        "Container logs the loki output ships: volume and errors by namespace, node and "
        "container, and the lines themselves.", ["drover", "logs"], variables, b)


BOARDS = {
    "drover.json": drover_dashboard,
    "kubelet.json": kubelet_dashboard,
    "coredns.json": coredns_dashboard,
    "logs.json": logs_dashboard,
}


def render(make) -> str:
    return json.dumps(make(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, make in BOARDS.items():
        path = os.path.join(OUT, name)
        text = render(make)
        try:
            with open(path, encoding="utf-8") as f:
                same = f.read() == text
        except FileNotFoundError:
            same = False
        if same:
            continue
        if check:
            stale.append(name)
        else:
            os.makedirs(OUT, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    if stale:
        print("dashboards out of date (run scripts/gen-dashboards.py): " + ", ".join(stale),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
