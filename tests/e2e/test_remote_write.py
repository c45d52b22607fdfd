"""The remote_write output against real receivers on 127.0.0.1: Prometheus
2.42 (Debian, remote write 1.0), VictoriaMetrics 1.79 (Debian) and
Prometheus 3 (remote write 2.0, built once by scripts/servers/prometheus3.sh).

drover scrapes targets (recorded payloads served by the test, Debian's
node-exporter) and writes to a receiver and, beside it, to the file output:
the file says exactly which samples drover produced, and every one of them
must be in the receiver with its labels (plus the external labels), its
timestamp and its value, and nothing else. Also: a receiver down for 60 s
(nothing lost, then caught up), a 400 answer (dropped and counted, not
retried), staleness reaching the receiver, write_relabel_configs, 2.0 and
the fall back to 1.0 on 415, native histograms (scraped from Prometheus 3
in the protobuf format and written back with 1.0 and 2.0).
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.parse

import pytest

from drover_e2e import HOST, OutputFile, wait_until, yaml_str
from faultproxy import FaultProxy
from sigv4_verifier import SigV4Verifier
from aws_fakes import AwsFakes
from metrics_servers import (Answer, indent, node_exporter, payloads, prometheus,  # noqa: F401
                             read_fixture, record_value, start_prometheus3, victoria)


def config(tmp_path, jobs: str, write_url: str, *, rw_extra: str = "",
           interval: str = "1s") -> tuple[str, str]:
    out = os.path.join(str(tmp_path), "samples.ndjson")
    cfg = (
        "agent:\n"
        "  data_dir: %(data)s\n"
        "  http:\n"
        "    listen: %(listen)s\n"
        "  grace_period: 10s\n"
        "  log_level: debug\n"
        "inputs:\n"
        "  - name: scrape\n"
        "    type: prometheus_scrape\n"
        "    scrape_interval: %(interval)s\n"
        "    scrape_timeout: %(interval)s\n"
        "    scrape_configs:\n"
        "%(jobs)s"
        "outputs:\n"
        "  - name: rw\n"
        "    type: remote_write\n"
        "    match: scrape\n"
        "    url: %(url)s\n"
        "    batch_send_deadline: 200ms\n"
        "    min_backoff: 100ms\n"
        "    max_backoff: 1s\n"
        "%(rw_extra)s"
        "  - name: copy\n"
        "    type: file\n"
        "    match: scrape\n"
        "    path: %(out)s\n"
    ) % {"data": yaml_str(os.path.join(str(tmp_path), "data")), "listen": yaml_str(HOST + ":0"),
         "interval": interval, "jobs": indent(jobs, 6), "url": yaml_str(write_url),
         "rw_extra": indent(rw_extra, 4) if rw_extra.strip() else "", "out": yaml_str(out)}
    path = os.path.join(str(tmp_path), "drover.yaml")
    with open(path, "w") as f:
        f.write(cfg)
    return path, out




def produced(out: str, *, extra_labels: dict = None) -> dict[str, list[tuple[int, float]]]:
    """What drover produced, from the file output: {series: [(ts_ms, value)]},
    staleness markers left out (receivers keep them but do not show them)."""
    f = OutputFile(out)
    f.read()
    series = {}
    for r in f.records:
        if r.get("stale") or "histogram" in r:
            continue
        labels = dict(r["labels"])
        labels["__name__"] = r["name"]
        labels.update(extra_labels or {})
        ts = int(round(_ts_ms(r["time"])))
        series.setdefault(json.dumps(labels, sort_keys=True), []).append((ts, record_value(r)))
    for v in series.values():
        v.sort()
    return series


def produced_histograms(out: str) -> dict[str, list[tuple[int, float, float, list]]]:
    """The native histograms drover produced, from the file output, in the
    shape Receiver.histograms() reads them: {series: [(ts_ms, count, sum,
    [(lower, upper, count) of each populated bucket])]}. Bucket bounds follow
    the exponential schema: bucket i of schema s is (2^((i-1)/2^s), 2^(i/2^s)]."""
    f = OutputFile(out)
    f.read()
    series = {}
    for r in f.records:
        h = r.get("histogram")
        if r.get("stale") or not h:
            continue
        labels = dict(r["labels"])
        labels["__name__"] = r["name"]
        buckets = []
        if float(h["zero_count"]):
            zt = float(h["zero_threshold"])
            buckets.append((-zt, zt, float(h["zero_count"])))
        for side, sign in (("negative", -1), ("positive", 1)):
            counts = h.get(side + "_counts")
            if counts is None:  # integer buckets: deltas from the previous bucket
                counts, c = [], 0
                for delta in h[side + "_deltas"]:
                    c += delta
                    counts.append(c)
            idx, k = 0, 0
            for offset, length in h[side + "_spans"]:
                idx += offset
                for _ in range(length):
                    lo, hi = (2.0 ** ((idx - 1) / 2.0 ** h["schema"]),
                              2.0 ** (idx / 2.0 ** h["schema"]))
                    if float(counts[k]):
                        buckets.append((lo, hi, float(counts[k])) if sign > 0
                                       else (-hi, -lo, float(counts[k])))
                    idx += 1
                    k += 1
        ts = int(round(_ts_ms(r["time"])))
        series.setdefault(json.dumps(labels, sort_keys=True), []).append(
            (ts, float(h["count"]), float(h["sum"]), sorted(buckets)))
    for v in series.values():
        v.sort()
    return series


def same_histograms(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    for (ta, ca, sa, ba), (tb, cb, sb, bb) in zip(a, b):
        if ta != tb or ca != cb or not math.isclose(sa, sb, rel_tol=1e-12):
            return False
        if len(ba) != len(bb):
            return False
        for (la, ha, na), (lb, hb, nb) in zip(ba, sorted(bb)):
            if na != nb or not math.isclose(la, lb, rel_tol=1e-12) or \
                    not math.isclose(ha, hb, rel_tol=1e-12):
                return False
    return True


def _ts_ms(rfc3339: str) -> float:
    import datetime
    base, frac = rfc3339.rstrip("Z").split(".")
    t = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return t.timestamp() * 1000 + int(frac[:3])


def same_samples(a: list, b: list, rel: float = 0.0) -> bool:
    if len(a) != len(b):
        return False
    for (ta, va), (tb, vb) in zip(a, b):
        if ta != tb:
            return False
        if va == vb or (math.isnan(va) and math.isnan(vb)):
            continue
        if not (rel and math.isclose(va, vb, rel_tol=rel)):
            return False
    return True


# VictoriaMetrics keeps about 12 significant decimal digits of a value
# (its storage converts floats to decimal mantissas): 1796585964.5536885
# comes back as 1796585964.55369.
VM_REL = 1e-11


def wait_sent(d, timeout: float = 30.0) -> None:
    """Until the output has nothing pending and has sent something."""
    def done():
        m = d.metrics()
        return (m.get("drover_remote_write_samples_pending", name="rw") == 0 and
                m.get("drover_remote_write_samples_total", name="rw") > 0)
    wait_until(done, timeout, what="remote write to drain")


def compare(want: dict, got: dict, rel: float = 0.0) -> None:
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    assert not missing, "%d series missing, e.g. %s" % (len(missing), missing[:3])
    assert not extra, "%d unexpected series, e.g. %s" % (len(extra), extra[:3])
    bad = [k for k in want if not same_samples(want[k], got[k], rel)]
    assert not bad, "%d series differ, e.g. %s: want %s got %s" % (
        len(bad), bad[0], want[bad[0]][:5], got[bad[0]][:5])


def compare_eventually(want: dict, read, timeout: float = 15.0, rel: float = 0.0) -> None:
    """compare(), giving a receiver that makes new samples searchable a
    little later (VictoriaMetrics) the time to."""
    deadline = time.monotonic() + timeout
    while True:
        got = read()
        try:
            compare(want, got, rel)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(1)


def stop_scraping(d) -> None:
    """SIGTERM: the last scrapes are written before drover exits."""
    assert d.stop() == 0


def test_scrape_to_prometheus_exactly(start_drover, payloads, prometheus, tmp_path):
    payloads.set("/metrics", Answer(read_fixture("exposition/live-prometheus-2.42.0-self.prom"),
                                    gzip_body=True))
    cfg, out = config(tmp_path, "- job_name: p\n  static_configs: [{targets: [%s]}]\n"
                      % payloads.address, prometheus.write_url,
                      rw_extra="external_labels: {cluster: e2e}\nmax_samples_per_send: 500\n"
                               "min_shards: 2\n")
    d = start_drover(cfg)
    d.wait_ready()
    t0 = time.time()
    wait_until(lambda: d.metrics().get("drover_scrapes_total", name="scrape") >= 4, 20,
               what="4 scrapes")
    wait_sent(d)
    m = d.metrics()
    # requests of at most max_samples_per_send samples
    sent = m.get("drover_remote_write_samples_total", name="rw")
    assert m.get("drover_output_requests_total", name="rw", code="204") >= sent / 500
    stop_scraping(d)
    want = produced(out, extra_labels={"cluster": "e2e"})
    assert len(want) > 400
    got = prometheus.samples('{job="p"}', t0 - 5, time.time() + 1)
    compare(want, got)


def test_node_exporter_to_victoriametrics(start_drover, node_exporter, victoria, tmp_path):
    cfg, out = config(tmp_path, "- job_name: node\n  static_configs: [{targets: [%s]}]\n"
                      % node_exporter.address, victoria.write_url)
    d = start_drover(cfg)
    d.wait_ready()
    wait_until(lambda: d.metrics().get("drover_scrapes_total", name="scrape") >= 3, 20,
               what="3 scrapes")
    stop_scraping(d)
    want = produced(out)
    compare_eventually(want, lambda: victoria.export('{job="node"}'), rel=VM_REL)
    assert any('"node_cpu_seconds_total"' in k for k in want)


def test_receiver_down_60s_nothing_lost(start_drover, payloads, victoria, tmp_path):
    body = b"".join(b'load{n="%d"} %d\n' % (i, i) for i in range(50))
    payloads.set("/metrics", Answer(body))
    cfg, out = config(tmp_path, "- job_name: outage\n  static_configs: [{targets: [%s]}]\n"
                      % payloads.address, victoria.write_url)
    d = start_drover(cfg)
    d.wait_ready()
    wait_sent(d)
    victoria.stop()
    time.sleep(60)
    m = d.metrics()
    assert m.get("drover_remote_write_samples_pending", name="rw") > 0
    assert m.get("drover_remote_write_retries_total", name="rw") > 0
    victoria.start()
    wait_until(lambda: d.metrics().get("drover_remote_write_samples_pending", name="rw") == 0,
               60, what="the backlog to drain")
    stop_scraping(d)
    want = produced(out)
    assert len(want["%s" % json.dumps({"__name__": "up", "instance": payloads.address,
                                       "job": "outage"}, sort_keys=True)]) >= 60
    compare_eventually(want, lambda: victoria.export('{job="outage"}'), rel=VM_REL)


def test_400_is_dropped_and_counted(start_drover, payloads, prometheus, tmp_path):
    # a timestamp from 2001: out of bounds for Prometheus' head block, answered 400
    payloads.set("/metrics", Answer(b"old 1 1000000000000\n"))
    cfg, out = config(tmp_path, "- job_name: old\n  static_configs: [{targets: [%s]}]\n"
                      % payloads.address, prometheus.write_url)
    d = start_drover(cfg)
    d.wait_ready()
    wait_until(lambda: d.metrics().get("drover_remote_write_samples_failed_total", name="rw") > 0,
               20, what="a refused request")
    time.sleep(3)
    m = d.metrics()
    assert m.get("drover_remote_write_retries_total", name="rw") == 0
    assert m.get("drover_dropped_records_total", name="rw", reason="rejected") > 0
    assert "remote write refused" in d.log_text()
    # the target is fixed: what follows is written, the output is not stuck
    payloads.set("/metrics", Answer(b"old 1\n"))
    wait_until(lambda: prometheus.query('old{job="old"}'), 20, what="old to arrive")
    # and the refused requests were never sent again
    assert d.metrics().get("drover_remote_write_retries_total", name="rw") == 0


def test_staleness_reaches_the_receiver(start_drover, payloads, prometheus, tmp_path):
    payloads.set("/metrics", Answer(b"a 1\nb 2\n"))
    cfg, out = config(tmp_path, "- job_name: s\n  static_configs: [{targets: [%s]}]\n"
                      % payloads.address, prometheus.write_url)
    d = start_drover(cfg)
    d.wait_ready()
    wait_until(lambda: prometheus.query('b{job="s"}'), 20, what="b")
    payloads.set("/metrics", Answer(b"a 1\n"))
    # b's staleness marker makes it disappear from instant queries at once
    wait_until(lambda: not prometheus.query('b{job="s"}'), 20, what="b to end")
    assert prometheus.query('a{job="s"}')
    assert prometheus.query('last_over_time(b{job="s"}[5m])')


def test_write_relabel_and_v2_to_prometheus3(start_drover, payloads, start_prometheus3, tmp_path):
    p3 = start_prometheus3()
    body = (b"# HELP req_total Requests.\n# TYPE req_total counter\n"
            b'req_total{code="200"} 5\nreq_total{code="500"} 1\n'
            b"# TYPE secret gauge\nsecret 42\n")
    payloads.set("/metrics", Answer(body))
    cfg, out = config(tmp_path, "- job_name: v2\n  static_configs: [{targets: [%s]}]\n"
                      % payloads.address, p3.write_url, rw_extra="""
protobuf_message: io.prometheus.write.v2.Request
external_labels: {cluster: two}
write_relabel_configs:
  - source_labels: [__name__]
    regex: secret
    action: drop
  - source_labels: [code]
    regex: 5..
    target_label: failed
    replacement: "yes"
""")
    d = start_drover(cfg)
    d.wait_ready()
    wait_until(lambda: d.metrics().get("drover_scrapes_total", name="scrape") >= 3, 20,
               what="3 scrapes")
    wait_sent(d)
    m = d.metrics()
    assert m.get("drover_dropped_records_total", name="rw", reason="write_relabel") >= 2
    stop_scraping(d)
    want = {}
    for k, v in produced(out, extra_labels={"cluster": "two"}).items():
        labels = json.loads(k)
        if labels["__name__"] == "secret":
            continue
        if labels.get("code", "").startswith("5"):
            labels["failed"] = "yes"
        want[json.dumps(labels, sort_keys=True)] = v
    got = p3.samples('{job="v2"}', time.time() - 60, time.time() + 1)
    compare(want, got)
    assert "using 1.0" not in d.log_text()


def test_v2_falls_back_to_v1_on_415(start_drover, payloads, start_prometheus3, tmp_path):
    p3 = start_prometheus3(extra=("--web.remote-write-receiver.accepted-protobuf-messages="
                                  "prometheus.WriteRequest",))
    payloads.set("/metrics", Answer(b"x 1\n"))
    cfg, out = config(tmp_path, "- job_name: fb\n  static_configs: [{targets: [%s]}]\n"
                      % payloads.address, p3.write_url,
                      rw_extra="protobuf_message: io.prometheus.write.v2.Request\n")
    d = start_drover(cfg)
    d.wait_ready()
    wait_until(lambda: d.metrics().get("drover_scrapes_total", name="scrape") >= 3, 20,
               what="3 scrapes")
    stop_scraping(d)
    assert "using 1.0" in d.log_text()
    compare(produced(out), p3.samples('{job="fb"}', time.time() - 60, time.time() + 1))


def test_slow_receiver_gets_more_shards(start_drover, payloads, victoria, tmp_path):
    """A receiver slower than the load: the queue fills and the scrapes
    skip, so the input rate alone never shows the backlog. The shards must
    grow until they carry the load."""
    body = b"".join(b'load{n="%d"} %d\n' % (i, i) for i in range(20000))
    payloads.set("/metrics", Answer(body))
    with FaultProxy(victoria.port, keep_bodies=False) as proxy:
        # one shard: 2000 samples per 0.5 s at most, a fifth of the load
        proxy.set_mode("slow", delay=0.5)
        cfg, _ = config(tmp_path, "- job_name: slow\n  static_configs: [{targets: [%s]}]\n"
                        % payloads.address, proxy.url + "/api/v1/write",
                        rw_extra="queue_max_bytes: 4MiB\nmax_shards: 16\n")
        d = start_drover(cfg)
        d.wait_ready()

        def shards():
            return d.metrics().get("drover_remote_write_shards", name="rw")
        wait_until(lambda: shards() >= 3, 60, what="3 shards or more")
        sent0 = d.metrics().get("drover_remote_write_samples_total", name="rw")
        time.sleep(10)
        sent = d.metrics().get("drover_remote_write_samples_total", name="rw") - sent0
        # more than one shard could ever carry in that time
        assert sent > 1.5 * 4000 * 10, "%d samples in 10 s with %d shards" % (sent, shards())
        assert d.stop() == 0


@pytest.mark.parametrize("message", ["prometheus.WriteRequest", "io.prometheus.write.v2.Request"])
def test_native_histograms_to_prometheus3(start_drover, start_prometheus3, tmp_path, message):
    """Prometheus 3 exposes native histograms of its own (the query engine's
    and the HTTP handlers' durations) in the protobuf format: drover scrapes
    them from it and writes them back into it. Every histogram drover
    produced must be stored as that native histogram (count, sum, every
    bucket's bounds and count), every float series beside them too."""
    p3 = start_prometheus3()
    for _ in range(3):  # requests, so the duration histograms have buckets
        p3.query("up")
    cfg, out = config(tmp_path, "- job_name: nh\n  scrape_protocols: [PrometheusProto]\n"
                      "  static_configs: [{targets: [\"%s:%d\"]}]\n" % (HOST, p3.port),
                      p3.write_url, rw_extra="protobuf_message: %s\n" % message)
    d = start_drover(cfg)
    d.wait_ready()
    wait_until(lambda: d.metrics().get("drover_scrapes_total", name="scrape") >= 3, 20,
               what="3 scrapes")
    wait_sent(d)
    assert d.metrics().get("drover_remote_write_histograms_total", name="rw") > 0
    stop_scraping(d)
    want = produced_histograms(out)
    assert len(want) >= 5, "Prometheus 3 exposed %d native histograms" % len(want)
    assert any(len(v[0][3]) >= 2 for v in want.values()), "no histogram with buckets"
    start, end = time.time() - 60, time.time() + 1
    got = p3.histograms('{job="nh"}', start, end)
    missing = [k for k in want if k not in got]
    assert not missing, "%d histograms missing, e.g. %s" % (len(missing), missing[:3])
    bad = [k for k in want if not same_histograms(want[k], got[k])]
    assert not bad, "%d histograms differ, e.g. %s: want %s got %s" % (
        len(bad), bad[0], want[bad[0]][:2], got[bad[0]][:2])
    compare(produced(out), p3.samples('{job="nh"}', start, end))


def test_targets_are_sent_in_parallel(start_drover, payloads, victoria, tmp_path):
    """The chunks of one target keep their order, but different targets'
    must not wait for each other: with a receiver slower than the load,
    several batches (each of a few targets' scrapes) are in the shards at
    once, so more samples are pending than one batch holds."""
    body = b"".join(b'par{n="%d"} %d\n' % (i, i) for i in range(2000))
    payloads.set("/metrics", Answer(body))
    jobs = "".join("- job_name: par%d\n  static_configs: [{targets: [%s]}]\n" % (j, payloads.address)
                   for j in range(8))
    with FaultProxy(victoria.port, keep_bodies=False) as proxy:
        proxy.set_mode("slow", delay=0.5)
        # a batch: 16 B a sample, full past 16 * 500 * 10 B = 5000 samples,
        # so three scrapes of 2005 samples (6015) at most
        cfg, _ = config(tmp_path, jobs, proxy.url + "/api/v1/write",
                        rw_extra="min_shards: 4\nmax_shards: 4\nmax_samples_per_send: 500\n")
        d = start_drover(cfg)
        d.wait_ready()
        peak = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and peak <= 2 * 6015:
            peak = max(peak, d.metrics().get("drover_remote_write_samples_pending", name="rw"))
            time.sleep(0.2)
        assert peak > 2 * 6015, "at most %d samples pending: one batch at a time" % peak
        assert d.stop() == 0


def test_sigv4_signed_requests(start_drover, payloads, victoria, tmp_path):
    """Amazon Managed Service for Prometheus' authentication: every request
    signed with SigV4, checked by a verifier that recomputes the signature
    from what it received. Static keys, then temporary credentials from the
    environment (their token signed too), a shared credentials file's
    profile (read again when it is rewritten), then a wrong key (refused:
    dropped and counted, not retried)."""
    payloads.set("/metrics", Answer(b"# TYPE signed_total counter\nsigned_total 7\n"))
    job = "- job_name: sig\n  static_configs: [{targets: [%s]}]\n" % payloads.address
    with SigV4Verifier(victoria.port, "AKIDTEST", "s3cr3t/key+", "eu-west-1", "aps") as v:
        cfg, out = config(tmp_path, job, v.url + "?x=1", rw_extra=(
            "sigv4: {region: eu-west-1, access_key: AKIDTEST, secret_key: \"s3cr3t/key+\"}\n"))
        d = start_drover(cfg)
        d.wait_ready()
        wait_until(lambda: v.accepted >= 3, 20, what="3 signed requests accepted")
        assert v.rejected == 0, v.reasons[:3]
        stop_scraping(d)
        compare_eventually(produced(out), lambda: victoria.export('{job="sig"}'), rel=VM_REL)

        # temporary credentials from the environment
        cfg, _ = config(tmp_path, job, v.url, rw_extra="sigv4: {}\n")
        env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDTEST", AWS_SECRET_ACCESS_KEY="s3cr3t/key+",
                   AWS_SESSION_TOKEN="FQoGZXIvYXdzEXAMPLE//token==", AWS_REGION="eu-west-1")
        accepted = v.accepted
        d = start_drover(cfg, name="drover-env", env=env)
        d.wait_ready()
        wait_until(lambda: v.accepted >= accepted + 2, 20, what="requests signed from the env")
        assert v.rejected == 0, v.reasons[:3]
        assert v.tokens == {"FQoGZXIvYXdzEXAMPLE//token=="}
        stop_scraping(d)

        # a shared credentials file and its profile, read again when it changes
        creds = tmp_path / "aws-credentials"
        creds.write_text("[default]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = x\n"
                         "[ci]\naws_access_key_id = AKIDTEST\n"
                         "aws_secret_access_key = s3cr3t/key+\n")
        cfg, _ = config(tmp_path, job, v.url, rw_extra="sigv4: {region: eu-west-1, profile: ci}\n")
        env = {k: val for k, val in os.environ.items() if not k.startswith("AWS_")}
        env["AWS_SHARED_CREDENTIALS_FILE"] = str(creds)
        accepted, rejected = v.accepted, v.rejected
        d = start_drover(cfg, name="drover-file", env=env)
        d.wait_ready()
        wait_until(lambda: v.accepted >= accepted + 2, 20, what="requests signed from the file")
        assert v.rejected == rejected, v.reasons[-3:]
        # the keys rotate: the file is rewritten with a key the verifier does not know
        creds.write_text("[ci]\naws_access_key_id = AKIDTEST\naws_secret_access_key = rotated\n")
        wait_until(lambda: v.rejected > rejected, 20, what="the rewritten file to be used")
        assert "credentials read again" in d.log_text()
        stop_scraping(d)

        # a wrong secret: 403, dropped and counted, never retried
        cfg, _ = config(tmp_path, job, v.url, rw_extra=(
            "sigv4: {region: eu-west-1, access_key: AKIDTEST, secret_key: wrong}\n"))
        d = start_drover(cfg, name="drover-wrong")
        d.wait_ready()
        wait_until(lambda: d.metrics().get("drover_dropped_records_total", name="rw",
                                           reason="unauthorized") > 0, 20,
                   what="the refused samples counted")
        assert "signature does not match" in v.reasons
        assert d.metrics().get("drover_remote_write_retries_total", name="rw") == 0
        stop_scraping(d)


def aws_env(**kv: str) -> dict:
    """The environment without any AWS_* of the machine's, plus kv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_REGION="eu-west-1", AWS_SHARED_CREDENTIALS_FILE="/nonexistent/credentials")
    env.update(kv)
    return env


@pytest.mark.time_limit(175)
def test_sigv4_temporary_credentials(start_drover, payloads, victoria, tmp_path):
    """The credential chain's network sources, each in its own drover at
    once: web identity (STS AssumeRoleWithWebIdentity), container
    credentials (EKS Pod Identity), IMDSv2, and a role assumed with STS
    AssumeRole over static keys. The fakes hand out credentials that live
    60 s, so each is fetched again while the test runs; every remote-write
    request must be signed with credentials handed out and with their own
    session token. IMDS fails its first answer (the sends wait, then go)
    and the container endpoint its first refresh (the old credentials keep
    signing); both are counted and nothing is lost."""
    payloads.set("/metrics", Answer(b"# TYPE tmp_total counter\ntmp_total 3\n"))
    with AwsFakes() as fakes, SigV4Verifier(victoria.port, None, None, "eu-west-1", "aps") as v:
        fakes.on_issue = v.allow
        fakes.lifetime_s = 60
        wi_token = tmp_path / "web-identity-token"
        wi_token.write_text("eyJhbGciOiJSUzI1NiJ9.first-projected-token.c2ln\n")
        fakes.web_identity = {"RoleArn": "arn:aws:iam::123456789012:role/amp-writer",
                              "RoleSessionName": "node-1", "token_file": str(wi_token)}
        pod_token = tmp_path / "eks-pod-identity-token"
        pod_token.write_text("eks-pod-identity-token-1")
        fakes.container_token_file = str(pod_token)
        fakes.assume_role_checker.allow("AKIDSOURCE", "source/secret+key")
        fakes.assume_role = {"RoleArn": "arn:aws:iam::123456789012:role/cross-account",
                             "RoleSessionName": "drover-amp", "ExternalId": "ext-42"}
        fakes.fail_next["imds"] = [(503, b"")]

        runs = {}

        def run(name: str, rw_extra: str, env: dict) -> None:
            d_tmp = tmp_path / name
            d_tmp.mkdir()
            job = "- job_name: %s\n  static_configs: [{targets: [%s]}]\n" % (name,
                                                                             payloads.address)
            cfg, out = config(d_tmp, job, v.url, rw_extra=rw_extra)
            runs[name] = (start_drover(cfg, name="drover-" + name, env=env), out)

        run("wi", "sigv4: {}\n", aws_env(
            AWS_ROLE_ARN="arn:aws:iam::123456789012:role/amp-writer",
            AWS_WEB_IDENTITY_TOKEN_FILE=str(wi_token), AWS_ROLE_SESSION_NAME="node-1",
            AWS_ENDPOINT_URL_STS=fakes.sts_url))
        run("ctr", "sigv4: {}\n", aws_env(
            AWS_CONTAINER_CREDENTIALS_FULL_URI=fakes.container_url,
            AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(pod_token)))
        run("imds", "sigv4: {region: eu-west-1}\n", aws_env(
            AWS_EC2_METADATA_SERVICE_ENDPOINT=fakes.imds_url))
        run("role", "sigv4: {access_key: AKIDSOURCE, secret_key: \"source/secret+key\", "
            "role_arn: \"arn:aws:iam::123456789012:role/cross-account\", external_id: ext-42, "
            "role_session_name: drover-amp, sts_endpoint: \"%s\"}\n" % fakes.sts_url, aws_env())
        for d, _ in runs.values():
            d.wait_ready()

        sources = ("web_identity", "container", "imds", "assume_role")

        def signed_with(source: str, n: int) -> bool:
            keys = fakes.issued.get(source, [])
            return len(keys) > n and v.signed_by.get(keys[n], 0) > 0

        wait_until(lambda: all(signed_with(s, 0) for s in sources), 30,
                   what="requests signed with each source's first credentials")
        # the refreshes: a new projected token, a container endpoint that fails once
        wi_token.write_text("eyJhbGciOiJSUzI1NiJ9.rotated-projected-token.c2ln\n")
        fakes.fail_next["container"] = [(500, b"internal error")]
        wait_until(lambda: all(signed_with(s, 1) for s in sources), 90,
                   what="requests signed with each source's refreshed credentials")
        assert v.rejected == 0, v.reasons[:3]
        assert fakes.refusals == [], fakes.refusals[:3]
        # a role assumed signs with the role's keys, never the source's
        assert "AKIDSOURCE" not in v.signed_by

        # the requests the fakes got
        imds = [(m, p, h) for src, m, p, h, _ in fakes.requests if src == "imds"]
        assert imds[0][:2] == ("PUT", "/latest/api/token")
        assert all("X-aws-ec2-metadata-token-ttl-seconds" in h for m, _, h in imds if m == "PUT")
        assert ("GET", "/latest/meta-data/iam/security-credentials/eks-node-role") in [
            (m, p) for m, p, _ in imds]
        tokens = [urllib.parse.parse_qs(b.decode())["WebIdentityToken"][0]
                  for src, _, _, h, b in fakes.requests
                  if src == "sts" and b"AssumeRoleWithWebIdentity" in b]
        assert "eyJhbGciOiJSUzI1NiJ9.rotated-projected-token.c2ln" in tokens, tokens
        assert all("Authorization" not in h for src, _, _, h, b in fakes.requests
                   if src == "sts" and b"AssumeRoleWithWebIdentity" in b)
        assert all(h.get("Authorization") == "eks-pod-identity-token-1"
                   for src, _, _, h, _ in fakes.requests if src == "container")

        # self-metrics and the log
        metric = "drover_aws_credentials_refresh_errors_total"
        m = {name: d.metrics() for name, (d, _) in runs.items()}
        assert m["imds"].get(metric, name="rw", source="imds") >= 1
        assert m["ctr"].get(metric, name="rw", source="container") >= 1
        assert m["wi"].get(metric, name="rw") == 0
        assert m["role"].get(metric, name="rw") == 0
        for name in runs:
            assert m[name].get("drover_aws_credentials_refreshes_total", name="rw") >= 2, name
            assert m[name].get("drover_aws_credentials_expiry_timestamp_seconds",
                               name="rw") > time.time(), name
            # the sends waited for credentials: none failed for want of them
            assert m[name].get("drover_remote_write_retries_total", name="rw") == 0, name
        assert "aws credentials: fetch failed" in runs["imds"][0].log_text()
        assert "aws credentials: fetch failed" in runs["ctr"][0].log_text()

        for name, (d, out) in runs.items():
            stop_scraping(d)
            compare_eventually(produced(out), lambda: victoria.export('{job="%s"}' % name),
                               rel=VM_REL)



@pytest.mark.time_limit(120)
def test_sigv4_credential_fetch_failures(start_drover, payloads, victoria, tmp_path):
    """Credentials that cannot be had: STS refuses the web identity token
    (an ErrorResponse), the container endpoint answers garbage, then a
    document with a field of the wrong type, then one too large. Each is
    logged with what was wrong and counted; the writes wait, unsigned
    requests are never sent, and once the source answers right everything
    held is delivered."""
    payloads.set("/metrics", Answer(b"# TYPE held_total counter\nheld_total 5\n"))
    with AwsFakes() as fakes, SigV4Verifier(victoria.port, None, None, "eu-west-1", "aps") as v:
        fakes.on_issue = v.allow
        wi_token = tmp_path / "web-identity-token"
        wi_token.write_text("a-token-sts-does-not-know")
        good = tmp_path / "the-token-sts-knows"
        good.write_text("eyJhbGciOiJSUzI1NiJ9.known.c2ln")
        fakes.web_identity = {"RoleArn": "arn:aws:iam::123456789012:role/amp-writer",
                              "RoleSessionName": "drover", "token_file": str(good)}
        pod_token = tmp_path / "eks-pod-identity-token"
        pod_token.write_text("eks-pod-identity-token-1")
        fakes.container_token_file = str(pod_token)
        fakes.fail_next["container"] = [
            (200, b"<html><body>502 Bad Gateway</body></html>"),
            (200, b'{"AccessKeyId": 1, "SecretAccessKey": "s", "Token": "t", '
                  b'"Expiration": "2030-01-01T00:00:00Z"}'),
            (200, b'{"pad": "' + b"x" * 100000 + b'"}'),
        ]
        runs = {}
        for name, env in (
                ("wi", aws_env(AWS_ROLE_ARN="arn:aws:iam::123456789012:role/amp-writer",
                               AWS_WEB_IDENTITY_TOKEN_FILE=str(wi_token),
                               AWS_ENDPOINT_URL_STS=fakes.sts_url)),
                ("ctr", aws_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=fakes.container_url,
                                AWS_CONTAINER_AUTHORIZATION_TOKEN=pod_token.read_text()))):
            d_tmp = tmp_path / name
            d_tmp.mkdir()
            job = "- job_name: %s\n  static_configs: [{targets: [%s]}]\n" % (name,
                                                                           payloads.address)
            cfg, out = config(d_tmp, job, v.url, rw_extra="sigv4: {}\n")
            runs[name] = (start_drover(cfg, name="drover-" + name, env=env), out)
        for d, _ in runs.values():
            d.wait_ready()
        metric = "drover_aws_credentials_refresh_errors_total"
        wi, ctr = runs["wi"][0], runs["ctr"][0]
        wait_until(lambda: wi.metrics().get(metric, name="rw", source="web_identity") >= 2, 20,
                   what="the refused web identity counted")
        wait_until(lambda: fakes.issued.get("container"), 30,
                   what="the container endpoint to answer right")
        assert ctr.metrics().get(metric, name="rw", source="container") == 3
        log = ctr.log_text()
        assert "not a JSON object" in log and "no AccessKeyId" in log, log[-2000:]
        assert "larger than" in log, log[-2000:]
        assert "InvalidIdentityToken" in wi.log_text()
        assert v.rejected == 0, v.reasons[:3]  # nothing unsigned was sent
        assert not fakes.issued.get("web_identity")
        time.sleep(2)  # the web identity drover holds its writes a while longer

        wi_token.write_text(good.read_text())  # the kubelet projects a token STS knows
        wait_until(lambda: fakes.issued.get("web_identity"), 30,
                   what="web identity credentials after the token is right")
        wait_until(lambda: all(v.signed_by.get(k[0], 0) > 0 for k in
                               (fakes.issued["web_identity"], fakes.issued["container"])), 20,
                   what="the held writes signed and accepted")
        assert v.rejected == 0, v.reasons[:3]
        for d, _ in runs.values():  # held, not failed
            assert d.metrics().get("drover_remote_write_retries_total", name="rw") == 0
        for name, (d, out) in runs.items():
            stop_scraping(d)
            compare_eventually(produced(out), lambda: victoria.export('{job="%s"}' % name),
                               rel=VM_REL)


@pytest.mark.time_limit(90)
def test_sigv4_role_assumed_over_web_identity(start_drover, payloads, victoria, tmp_path):
    """role_arn on top of web identity: the web identity's temporary
    credentials sign STS AssumeRole (their session token signed too, checked
    by the fake STS), and only the assumed role's credentials sign the
    writes."""
    payloads.set("/metrics", Answer(b"# TYPE chained_total counter\nchained_total 2\n"))
    with AwsFakes() as fakes, SigV4Verifier(victoria.port, None, None, "eu-west-1", "aps") as v:
        def issued(ak: str, sk: str, token: str) -> None:
            v.allow(ak, sk, token)
            fakes.assume_role_checker.allow(ak, sk, token)

        fakes.on_issue = issued
        wi_token = tmp_path / "web-identity-token"
        wi_token.write_text("eyJhbGciOiJSUzI1NiJ9.chained.c2ln")
        fakes.web_identity = {"RoleArn": "arn:aws:iam::123456789012:role/irsa",
                              "RoleSessionName": "drover", "token_file": str(wi_token)}
        fakes.assume_role = {"RoleArn": "arn:aws:iam::210987654321:role/amp-writer",
                             "RoleSessionName": "drover", "ExternalId": None}
        job = "- job_name: chained\n  static_configs: [{targets: [%s]}]\n" % payloads.address
        cfg, out = config(tmp_path, job, v.url, rw_extra=(
            "sigv4: {role_arn: \"arn:aws:iam::210987654321:role/amp-writer\"}\n"))
        d = start_drover(cfg, env=aws_env(AWS_ROLE_ARN="arn:aws:iam::123456789012:role/irsa",
                                          AWS_WEB_IDENTITY_TOKEN_FILE=str(wi_token),
                                          AWS_ENDPOINT_URL_STS=fakes.sts_url))
        d.wait_ready()
        wait_until(lambda: any(v.signed_by.get(k) for k in fakes.issued.get("assume_role", [])),
                   20, what="writes signed with the assumed role's credentials")
        assert fakes.refusals == [], fakes.refusals[:3]
        assert v.rejected == 0, v.reasons[:3]
        assert not any(k in v.signed_by for k in fakes.issued["web_identity"])
        signed_sts = [h for src, _, _, h, b in fakes.requests
                      if src == "sts" and b.startswith(b"Action=AssumeRole&")]
        assert signed_sts and all("X-Amz-Security-Token" in h for h in signed_sts)
        stop_scraping(d)
        compare_eventually(produced(out), lambda: victoria.export('{job="chained"}'), rel=VM_REL)

