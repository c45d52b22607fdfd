"""The prometheus_scrape input against real targets on 127.0.0.1: Debian's
node-exporter and recorded payloads of real servers (../shared/fixtures)
served by the test, shipped to the file output and read back.

Checked: every sample of a recorded payload arrives with its labels and
value (compared with an independent reader of the text format); job and
instance labels and the report series (up, scrape_duration_seconds,
scrape_samples_scraped, ...); relabel_configs and metric_relabel_configs;
honor_labels; gzip bodies; OpenMetrics and protobuf negotiation; staleness
markers when a series disappears, when a scrape fails and when a target
goes away (file_sd); sample_limit failing a scrape with its reason counted.
"""

from __future__ import annotations

import collections
import json
import os
import time

from drover_e2e import HOST, OutputFile, wait_until, yaml_str
from metrics_servers import (Answer, indent, node_exporter, parse_text, payloads,  # noqa: F401
                             read_fixture, record_value, same_value)

INTERVAL = "1s"


def scrape_config(tmp_path, jobs: str, *, interval: str = INTERVAL, extra_input: str = "") -> tuple[str, str]:
    out = os.path.join(str(tmp_path), "out.ndjson")
    cfg = (
        "agent:\n"
        "  data_dir: %s\n"
        "  http:\n"
        "    listen: %s\n"
        "  grace_period: 5s\n"
        "  log_level: debug\n"
        "inputs:\n"
        "  - name: scrape\n"
        "    type: prometheus_scrape\n"
        "    scrape_interval: %s\n"
        "    scrape_timeout: %s\n"
        "%s"
        "    scrape_configs:\n"
        "%s"
        "outputs:\n"
        "  - name: out\n"
        "    type: file\n"
        "    match: scrape\n"
        "    path: %s\n"
    ) % (yaml_str(os.path.join(str(tmp_path), "data")), yaml_str("%s:0" % HOST), interval,
         interval, extra_input, indent(jobs, 6), yaml_str(out))
    path = os.path.join(str(tmp_path), "drover.yaml")
    with open(path, "w") as f:
        f.write(cfg)
    return path, out




class Samples:
    """The samples in the output file, grouped by scrape (job, instance,
    timestamp)."""

    def __init__(self, path: str):
        self.file = OutputFile(path)

    def all(self) -> list[dict]:
        self.file.read()
        return self.file.records

    def scrapes(self, job: str, instance: str) -> list[list[dict]]:
        by_time = collections.OrderedDict()
        for r in self.all():
            lb = r["labels"]
            if lb.get("job") == job and lb.get("instance") == instance:
                by_time.setdefault(r["time"], []).append(r)
        return list(by_time.values())

    def complete_scrapes(self, job: str, instance: str) -> list[list[dict]]:
        """Scrapes whose report series arrived (the report closes a scrape)."""
        return [s for s in self.scrapes(job, instance)
                if any(r["name"] == "scrape_series_added" for r in s)]

    def wait_scrapes(self, job: str, instance: str, n: int, timeout: float = 20.0) -> list[list[dict]]:
        return wait_until(lambda: (lambda s: s if len(s) >= n else None)(
            self.complete_scrapes(job, instance)), timeout, what="%d scrapes of %s" % (n, job))


def by_name(scrape: list[dict], name: str) -> list[dict]:
    return [r for r in scrape if r["name"] == name]


def report(scrape: list[dict], name: str) -> float:
    rs = by_name(scrape, name)
    assert len(rs) == 1, (name, rs)
    return record_value(rs[0])


REPORT = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
          "scrape_samples_post_metric_relabeling", "scrape_series_added"}


def test_node_exporter(start_drover, node_exporter, tmp_path):
    cfg, out = scrape_config(tmp_path, """
- job_name: node
  static_configs:
    - targets: [%s]
""" % node_exporter.address)
    d = start_drover(cfg)
    d.wait_ready()
    samples = Samples(out)
    scrapes = samples.wait_scrapes("node", node_exporter.address, 3)
    for s in scrapes[:3]:
        assert report(s, "up") == 1
        scraped = [r for r in s if r["name"] not in REPORT]
        assert report(s, "scrape_samples_scraped") == len(scraped)
        assert report(s, "scrape_samples_post_metric_relabeling") == len(scraped)
        assert 0 < report(s, "scrape_duration_seconds") < 1
        # one sample per series and scrape
        keys = [json.dumps([r["name"], r["labels"]], sort_keys=True) for r in s]
        assert len(keys) == len(set(keys))
    first, second = scrapes[0], scrapes[1]
    assert report(first, "scrape_series_added") == len(first) - len(REPORT)
    assert report(second, "scrape_series_added") == 0
    idle = [r for r in first if r["name"] == "node_cpu_seconds_total"
            and r["labels"].get("mode") == "idle"]
    assert idle and all(r["labels"]["cpu"].isdigit() for r in idle)
    assert by_name(first, "node_exporter_build_info")[0]["labels"]["version"] == "1.5.0"
    # what node-exporter was asked for
    m = d.metrics()
    assert m.get("drover_scrapes_total", name="scrape") >= 3
    assert m.get("drover_scrape_targets", name="scrape") == 1
    assert not m.has("drover_scrape_failures_total", name="scrape")


RECORDED = ["exposition/live-prometheus-2.42.0-self.prom",
            "exposition/live-alertmanager-0.25.0-self.prom",
            "exposition/live-coredns-1.12.4.prom",
            "exposition/live-victoriametrics-1.79.5-self.prom",
            "exposition/kube-state-metrics-k8s1.35.prom"]


def test_recorded_payloads_arrive_exactly(start_drover, payloads, tmp_path):
    """Every sample of each recorded payload, with its labels and value,
    and nothing else."""
    jobs = []
    for i, rel in enumerate(RECORDED):
        payloads.set("/m%d" % i, Answer(read_fixture(rel), gzip_body=i % 2 == 0))
        jobs.append("- job_name: j%d\n  metrics_path: /m%d\n  static_configs:\n"
                    "    - targets: [%s]\n" % (i, i, payloads.address))
    cfg, out = scrape_config(tmp_path, "".join(jobs))
    d = start_drover(cfg)
    d.wait_ready()
    samples = Samples(out)
    for i, rel in enumerate(RECORDED):
        want = parse_text(read_fixture(rel).decode())
        s = samples.wait_scrapes("j%d" % i, payloads.address, 1)[0]
        assert report(s, "up") == 1, rel
        got = {}
        for r in s:
            if r["name"] in REPORT:
                continue
            lb = dict(r["labels"])
            assert lb.pop("job") == "j%d" % i and lb.pop("instance") == payloads.address
            got[json.dumps([r["name"], lb], sort_keys=True)] = record_value(r)
        assert len(got) == len(want), rel
        for name, labels, value in want:
            key = json.dumps([name, labels], sort_keys=True)
            assert key in got, (rel, key)
            assert same_value(got[key], value), (rel, key, got[key], value)
        assert report(s, "scrape_samples_scraped") == len(want)
    # bodies were asked for gzip'ed, with the scrape timeout
    h = payloads.requests_for("/m0")[0]
    assert "gzip" in h.get("Accept-Encoding", "")
    assert h.get("X-Prometheus-Scrape-Timeout-Seconds") == "1"
    assert "text/plain" in h.get("Accept", "")


def test_relabeling_and_honor_labels(start_drover, payloads, tmp_path):
    body = (b"# TYPE app_requests_total counter\n"
            b'app_requests_total{code="200",path="/a"} 10\n'
            b'app_requests_total{code="500",path="/a"} 2\n'
            b"# TYPE go_goroutines gauge\n"
            b"go_goroutines 7\n"
            b'clash{job="theirs",instance="x"} 1\n')
    payloads.set("/metrics", Answer(body))
    cfg, out = scrape_config(tmp_path, """
- job_name: plain
  static_configs:
    - targets: [%(a)s]
      labels: {team: blue}
  relabel_configs:
    - source_labels: [team]
      regex: (.*)
      target_label: owner
      replacement: team-${1}
  metric_relabel_configs:
    - source_labels: [__name__]
      regex: go_.*
      action: drop
    - source_labels: [code]
      regex: 5..
      target_label: error
      replacement: "true"
- job_name: honored
  honor_labels: true
  static_configs:
    - targets: [%(a)s]
""" % {"a": payloads.address})
    d = start_drover(cfg)
    d.wait_ready()
    samples = Samples(out)
    s = samples.wait_scrapes("plain", payloads.address, 1)[0]
    names = {r["name"] for r in s}
    assert "go_goroutines" not in names
    assert report(s, "scrape_samples_scraped") == 4
    assert report(s, "scrape_samples_post_metric_relabeling") == 3
    reqs = {r["labels"]["code"]: r for r in by_name(s, "app_requests_total")}
    assert reqs["500"]["labels"].get("error") == "true" and "error" not in reqs["200"]["labels"]
    for r in s:
        assert r["labels"]["team"] == "blue" and r["labels"]["owner"] == "team-blue"
    clash = by_name(s, "clash")[0]["labels"]
    assert clash["exported_job"] == "theirs" and clash["exported_instance"] == "x"
    # honor_labels: the target's own job and instance win
    honored = wait_until(lambda: [r for r in samples.all() if r["name"] == "clash"
                                  and r["labels"].get("job") == "theirs"], 10, what="honored")
    assert all("exported_job" not in r["labels"] and r["labels"]["instance"] == "x"
               for r in honored)


def test_staleness(start_drover, payloads, tmp_path):
    two = b"# TYPE a gauge\na 1\n# TYPE b gauge\nb 2\n"
    payloads.set("/metrics", Answer(two))
    cfg, out = scrape_config(tmp_path, """
- job_name: s
  static_configs:
    - targets: [%s]
""" % payloads.address)
    d = start_drover(cfg)
    d.wait_ready()
    samples = Samples(out)
    inst = payloads.address
    samples.wait_scrapes("s", inst, 1)
    # b disappears: its series ends with one staleness marker
    payloads.set("/metrics", Answer(b"# TYPE a gauge\na 1\n"))
    n0 = len(samples.complete_scrapes("s", inst))
    s = wait_until(lambda: next((s for s in samples.complete_scrapes("s", inst)[n0:]
                                 if by_name(s, "b")), None), 10, what="b's marker")
    (b,) = by_name(s, "b")
    assert b.get("stale") is True and b["value"] == "NaN"
    assert report(s, "up") == 1 and report(s, "scrape_samples_scraped") == 1
    # the target fails: up = 0 and a's series ends
    payloads.set("/metrics", Answer(b"oops", status=500))
    s = wait_until(lambda: next((s for s in samples.complete_scrapes("s", inst)
                                 if report(s, "up") == 0), None), 10, what="a failed scrape")
    (a,) = by_name(s, "a")
    assert a.get("stale") is True
    assert report(s, "scrape_samples_scraped") == 0
    assert d.metrics().get("drover_scrape_failures_total", name="scrape", reason="http_status") >= 1
    # later failures mark nothing again
    time.sleep(2.5)
    later = [r for r in samples.all() if r["name"] == "a" and r.get("stale")]
    assert len(later) == 1


def test_file_sd_target_removed(start_drover, payloads, tmp_path):
    payloads.set("/metrics", Answer(b"x 1\n"))
    sd = os.path.join(str(tmp_path), "targets.json")
    with open(sd, "w") as f:
        json.dump([{"targets": [payloads.address], "labels": {"env": "test"}}], f)
    cfg, out = scrape_config(tmp_path, """
- job_name: fsd
  file_sd_configs:
    - files: [%s]
""" % yaml_str(sd))
    d = start_drover(cfg)
    d.wait_ready()
    samples = Samples(out)
    s = samples.wait_scrapes("fsd", payloads.address, 1)[0]
    assert by_name(s, "x")[0]["labels"]["env"] == "test"
    with open(sd + ".tmp", "w") as f:
        json.dump([], f)
    os.rename(sd + ".tmp", sd)
    # within the file_sd check period (5 s): x and the report series end
    wait_until(lambda: any(r["name"] == "x" and r.get("stale") for r in samples.all()), 15,
               what="x's staleness marker")
    ups = [r for r in samples.all() if r["name"] == "up"]
    assert ups[-1].get("stale") is True
    assert wait_until(lambda: d.metrics().get("drover_scrape_targets", name="scrape") == 0, 5,
                      what="no targets")


def test_sample_limit_and_formats(start_drover, payloads, tmp_path):
    many = "".join("m{i=\"%d\"} %d\n" % (i, i) for i in range(20)).encode()
    payloads.set("/many", Answer(many))
    om = read_fixture("exposition/openmetrics-1histogram.om.txt")
    payloads.set("/om", Answer(om, content_type="application/openmetrics-text; version=1.0.0; charset=utf-8"))
    proto = read_fixture("exposition/live-node-exporter-1.5.0.delimited-protobuf.bin")
    payloads.set("/pb", Answer(proto, content_type="application/vnd.google.protobuf; "
                               "proto=io.prometheus.client.MetricFamily; encoding=delimited"))
    payloads.set("/none", Answer(b"x 1\n", content_type=None))
    cfg, out = scrape_config(tmp_path, """
- job_name: limited
  metrics_path: /many
  sample_limit: 10
  static_configs: [{targets: [%(a)s]}]
- job_name: om
  metrics_path: /om
  static_configs: [{targets: [%(a)s]}]
- job_name: pb
  metrics_path: /pb
  scrape_protocols: [PrometheusProto, PrometheusText0.0.4]
  static_configs: [{targets: [%(a)s]}]
- job_name: none
  metrics_path: /none
  static_configs: [{targets: [%(a)s]}]
""" % {"a": payloads.address})
    d = start_drover(cfg)
    d.wait_ready()
    samples = Samples(out)
    a = payloads.address
    s = samples.wait_scrapes("limited", a, 1)[0]
    assert report(s, "up") == 0 and not by_name(s, "m")
    assert d.metrics().get("drover_scrape_failures_total", name="scrape", reason="sample_limit") >= 1
    s = samples.wait_scrapes("om", a, 1)[0]
    assert report(s, "up") == 1
    assert "openmetrics-text" in payloads.requests_for("/om")[0]["Accept"].split(",")[0]
    s = samples.wait_scrapes("pb", a, 1)[0]
    assert report(s, "up") == 1
    assert payloads.requests_for("/pb")[0]["Accept"].startswith("application/vnd.google.protobuf")
    idle = [r for r in s if r["name"] == "node_cpu_seconds_total" and r["labels"]["mode"] == "idle"]
    assert idle
    # no Content-Type and no fallback_scrape_protocol: the scrape fails, as in Prometheus 3
    s = samples.wait_scrapes("none", a, 1)[0]
    assert report(s, "up") == 0
    assert d.metrics().get("drover_scrape_failures_total", name="scrape", reason="content_type") >= 1
