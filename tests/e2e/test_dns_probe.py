"""The dns_probe input against the real CoreDNS 1.12.4 ($COREDNS_BIN, built by
scripts/servers/coredns.sh) and a stub DNS server of the test (dns_servers.py),
on 127.0.0.1 free ports, shipped to the file output and read back.

Checked, per (server, name, type): the response codes CoreDNS gives for its
cluster.local zone (NOERROR, NXDOMAIN) and for names it forwards to the stub
(NOERROR, NXDOMAIN, SERVFAIL, and timeouts when the stub stays silent); the
answers of the last response; that every probe is in the histogram (its
_count and +Inf bucket equal the rounds emitted, and the stub saw exactly
that many queries); the TCP fallback after a truncated UDP answer (the stub
sees each query over both), and the truncated answer taken as it is with
tcp_fallback: false; replies with another id or question ignored;
a malformed answer counted, never a crash. CoreDNS' own /metrics is scraped
by prometheus_scrape into the same output. The samples also go through
remote_write to Prometheus 2, which gets exactly what the file output wrote.
"""

from __future__ import annotations

import collections
import os
import time

import pytest

from dns_servers import CoreDNS, StubDNS
from drover_e2e import HOST, OutputFile, wait_until, yaml_str
from test_remote_write import compare, produced, wait_sent
from metrics_servers import prometheus, record_value  # noqa: F401 (a fixture)

COREDNS_BIN = os.environ.get("COREDNS_BIN") or os.path.expanduser(
    "~/.cache/drover-test/coredns-v1.12.4/coredns")

needs_coredns = pytest.mark.skipif(
    not os.access(COREDNS_BIN, os.X_OK),
    reason="CoreDNS not found at %s: set COREDNS_BIN (bash scripts/servers/coredns.sh builds it)"
    % COREDNS_BIN)

ROUNDS = 4

THROUGH_COREDNS = {
    # name: (rcode or "timeout", answers)
    "kubernetes.default.svc.cluster.local": ("NOERROR", 1),
    "web.apps.svc.cluster.local": ("NOERROR", 2),
    "missing.default.svc.cluster.local": ("NXDOMAIN", 0),
    "ok.example.test": ("NOERROR", 1),
    "nx.example.test": ("NXDOMAIN", 0),
    "fail.example.test": ("SERVFAIL", 0),
    "drop.example.test": ("timeout", None),
}

DIRECT_TO_STUB = {
    "big.example.test": ("NOERROR", 3),
    "wrongid.example.test": ("NOERROR", 1),
    "garbage.example.test": ("malformed", None),
    "tcpclose.example.test": ("network", None),
    "tcpjunk.example.test": ("malformed", None),
    "drop.example.test": ("timeout", None),
}


@pytest.fixture
def stub():
    s = StubDNS()
    yield s
    s.stop()


@pytest.fixture
def coredns(stub, tmp_path):
    c = CoreDNS(COREDNS_BIN, str(tmp_path / "coredns"), stub.address)
    try:
        yield c.start()
    finally:
        c.stop()


def names_yaml(names) -> str:
    return "[" + ", ".join(yaml_str(n) for n in names) + "]"


def write_config(tmp_path, coredns: CoreDNS, stub: StubDNS) -> tuple[str, str]:
    out = os.path.join(str(tmp_path), "out.ndjson")
    cfg = """agent:
  data_dir: %(data)s
  http: { listen: %(listen)s }
  grace_period: 5s
inputs:
  - name: cluster_dns
    type: dns_probe
    servers: [%(coredns)s]
    names: %(cnames)s
    interval: 1500ms
    timeout: 700ms
  - name: stub_dns
    type: dns_probe
    servers: [%(stub)s]
    names: %(snames)s
    interval: 1500ms
    timeout: 700ms
  - name: stub_udp_only
    type: dns_probe
    servers: [%(stub)s]
    names: [two.notcp.example.test, big.notcp.example.test]
    interval: 1500ms
    timeout: 700ms
    tcp_fallback: false
  - name: coredns_metrics
    type: prometheus_scrape
    scrape_interval: 1s
    scrape_timeout: 1s
    scrape_configs:
      - job_name: coredns
        static_configs: [{targets: [%(cmetrics)s]}]
outputs:
  - { name: out, type: file, match: [cluster_dns, stub_dns, stub_udp_only, coredns_metrics], path: %(out)s }
""" % dict(data=yaml_str(os.path.join(str(tmp_path), "data")), listen=yaml_str("%s:0" % HOST),
           coredns=yaml_str(coredns.address), stub=yaml_str(stub.address),
           cnames=names_yaml(THROUGH_COREDNS), snames=names_yaml(DIRECT_TO_STUB),
           cmetrics=yaml_str(coredns.metrics_address), out=yaml_str(out))
    path = os.path.join(str(tmp_path), "drover.yaml")
    with open(path, "w") as f:
        f.write(cfg)
    return path, out


class Probes:
    """The dns_probe samples of the output, by (server, name): one dict per
    emitted round (time), metric name plus extra label to value."""

    def __init__(self, records: list[dict]):
        self.rounds = collections.defaultdict(lambda: collections.OrderedDict())
        for r in records:
            if not r["name"].startswith("drover_dns_probe_"):
                continue
            lb = dict(r["labels"])
            key = (lb.pop("server"), lb.pop("name"))
            assert lb.pop("type") == "A"
            extra = ",".join("%s=%s" % kv for kv in sorted(lb.items()))
            sample = r["name"] + ("{%s}" % extra if extra else "")
            self.rounds[key].setdefault(r["time"], {})[sample] = record_value(r)

    def last(self, server: str, name: str) -> dict:
        rounds = self.rounds[(server, name)]
        assert rounds, "no samples for %s %s" % (server, name)
        return list(rounds.values())[-1]

    def nrounds(self, server: str, name: str) -> int:
        return len(self.rounds[(server, name)])


def check_target(p: Probes, server: str, name: str, want: str, answers) -> dict:
    s = p.last(server, name)
    n = p.nrounds(server, name)
    count = s["drover_dns_probe_duration_seconds_count"]
    # every probe is in the histogram, once per emitted round
    assert count == n, (name, s)
    assert s["drover_dns_probe_duration_seconds_bucket{le=+Inf}"] == count
    buckets = sorted((float(k.split("le=")[1].rstrip("}")), v) for k, v in s.items()
                     if "_bucket{" in k)
    assert [v for _, v in buckets] == sorted(v for _, v in buckets), "buckets not cumulative"
    assert s["drover_dns_probe_duration_seconds_sum"] >= 0
    responses = {k.split("rcode=")[1].rstrip("}"): v for k, v in s.items()
                 if k.startswith("drover_dns_probe_responses_total")}
    timeouts = s["drover_dns_probe_timeouts_total"]
    malformed = s["drover_dns_probe_errors_total{reason=malformed}"]
    network = s["drover_dns_probe_errors_total{reason=network}"]
    assert sum(responses.values()) + timeouts + malformed + network == count, (name, s)
    if want == "timeout":
        assert timeouts == count and not responses, (name, s)
        assert s["drover_dns_probe_up"] == 0
        assert "drover_dns_probe_answers" not in s
        # each waited for the timeout
        assert s["drover_dns_probe_duration_seconds_sum"] >= 0.6 * count
    elif want in ("malformed", "network"):
        assert (malformed if want == "malformed" else network) == count, (name, s)
        assert not responses and not timeouts, (name, s)
        assert s["drover_dns_probe_up"] == 0
    else:
        assert responses == {want: count}, (name, s)
        assert timeouts == 0 and malformed == 0 and network == 0
        assert s["drover_dns_probe_answers"] == answers, (name, s)
        assert s["drover_dns_probe_up"] == 1
        assert s["drover_dns_probe_duration_seconds_sum"] < 0.7 * count
    return s


@needs_coredns
@pytest.mark.sanitizer
@pytest.mark.time_limit(120)
def test_dns_probe_through_coredns_and_stub(start_drover, coredns, stub, tmp_path):
    cfg, out = write_config(tmp_path, coredns, stub)
    d = start_drover(cfg)
    d.wait_ready()
    # a round under way at SIGTERM is cancelled, not emitted: wait for one more
    wait_until(lambda: d.metrics().get("drover_dns_probe_rounds_total", name="stub_dns") > ROUNDS
               and d.metrics().get("drover_dns_probe_rounds_total", name="cluster_dns") > ROUNDS,
               timeout=30)
    m = d.metrics()
    assert m.get("drover_dns_probe_ignored_replies_total", name="stub_dns",
                 reason="wrong_id") >= ROUNDS
    assert m.get("drover_dns_probe_ignored_replies_total", name="stub_dns",
                 reason="wrong_question") >= ROUNDS
    assert m.get("drover_dns_probe_rounds_skipped_total", name="cluster_dns") == 0
    assert d.stop() == 0
    f = OutputFile(out)
    records = f.read()
    assert not f.corrupt
    p = Probes(records)

    for name, (want, answers) in THROUGH_COREDNS.items():
        check_target(p, coredns.address, name, want, answers)
        assert p.nrounds(coredns.address, name) >= ROUNDS
    for name, (want, answers) in DIRECT_TO_STUB.items():
        check_target(p, stub.address, name, want, answers)
    n = p.nrounds(stub.address, "big.example.test")
    assert n >= ROUNDS
    # the input without TCP fallback takes the truncated answer as it is
    # (no records) and asks nothing over TCP
    m = p.nrounds(stub.address, "big.notcp.example.test")
    assert m >= ROUNDS
    check_target(p, stub.address, "two.notcp.example.test", "NOERROR", 2)
    check_target(p, stub.address, "big.notcp.example.test", "NOERROR", 0)
    assert m <= stub.count("udp", "big.notcp.example.test") <= m + 1
    assert stub.count("tcp", "big.notcp.example.test") == 0
    # the stub saw each probe: truncated over UDP, then again over TCP (plus
    # the probes of the round that SIGTERM cancelled, if it had sent them)
    assert n <= stub.count("udp", "big.example.test") <= n + 1
    assert n <= stub.count("tcp", "big.example.test") <= n + 1
    assert n <= stub.count("udp", "garbage.example.test") <= n + 1
    assert stub.count("tcp", "wrongid.example.test") == 0
    assert n <= stub.count("tcp", "tcpclose.example.test") <= n + 1
    assert n <= stub.count("tcp", "tcpjunk.example.test") <= n + 1
    # what CoreDNS forwarded: one upstream query per probe of a forwarded name
    # (no cache in the Corefile); cluster.local names never reach the stub
    nx = p.nrounds(coredns.address, "nx.example.test")
    assert nx <= stub.count("udp", "nx.example.test") <= nx + 1
    assert stub.count("udp", "kubernetes.default.svc.cluster.local") == 0

    # CoreDNS' own metrics, scraped into the same output
    coredns_samples = [r for r in records if r["labels"].get("job") == "coredns"]
    by_name = collections.defaultdict(list)
    for r in coredns_samples:
        by_name[r["name"]].append(r)
    assert by_name["up"] and all(record_value(r) == 1 for r in by_name["up"])
    requests = [r for r in by_name["coredns_dns_requests_total"]
                if r["labels"].get("zone") == "cluster.local."]
    assert requests and max(record_value(r) for r in requests) >= ROUNDS
    nxdomain = [r for r in by_name["coredns_dns_responses_total"]
                if r["labels"].get("rcode") == "NXDOMAIN"]
    assert nxdomain and max(record_value(r) for r in nxdomain) >= ROUNDS
    assert by_name["coredns_build_info"][0]["labels"]["version"] == "1.12.4"
    assert by_name["coredns_dns_request_duration_seconds_bucket"]


@pytest.mark.sanitizer
@pytest.mark.time_limit(60)
def test_dns_probe_broken_path_shows(start_drover, tmp_path):
    """A server nobody listens on: every probe is counted (refused or timed
    out), up is 0, and the agent keeps running."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    # the port is closed again: the kernel answers port unreachable
    out = os.path.join(str(tmp_path), "out.ndjson")
    resolv = os.path.join(str(tmp_path), "resolv.conf")
    with open(resolv, "w") as f:
        f.write("# from the node\nsearch svc.cluster.local\nnameserver %s:%d\noptions ndots:5\n"
                % (HOST, port))
    cfg = os.path.join(str(tmp_path), "drover.yaml")
    with open(cfg, "w") as f:
        f.write("""agent:
  data_dir: %s
  http: { listen: %s }
inputs:
  - { name: dns, type: dns_probe, resolv_conf: %s, names: [kubernetes.default.svc.cluster.local],
      interval: 500ms, timeout: 300ms }
outputs:
  - { name: out, type: file, match: dns, path: %s }
""" % (yaml_str(os.path.join(str(tmp_path), "data")), yaml_str("%s:0" % HOST), yaml_str(resolv),
            yaml_str(out)))
    d = start_drover(cfg)
    d.wait_ready()
    wait_until(lambda: d.metrics().get("drover_dns_probe_rounds_total", name="dns") > 3,
               timeout=20)
    assert d.stop() == 0
    p = Probes(OutputFile(out).read())
    server = "%s:%d" % (HOST, port)
    s = p.last(server, "kubernetes.default.svc.cluster.local")
    count = s["drover_dns_probe_duration_seconds_count"]
    assert count == p.nrounds(server, "kubernetes.default.svc.cluster.local") >= 3
    failed = (s["drover_dns_probe_errors_total{reason=network}"]
              + s["drover_dns_probe_timeouts_total"])
    assert failed == count
    assert s["drover_dns_probe_up"] == 0


@pytest.mark.sanitizer
@pytest.mark.time_limit(60)
def test_dns_probe_missing_resolv_conf(start_drover, stub, tmp_path):
    """No resolv.conf (or one without a nameserver): the agent starts and its
    other inputs go on; the rounds without a server are counted and the
    file is read again every round, so probing starts once it is there."""
    out = os.path.join(str(tmp_path), "out.ndjson")
    resolv = os.path.join(str(tmp_path), "resolv.conf")
    cfg = os.path.join(str(tmp_path), "drover.yaml")
    with open(cfg, "w") as f:
        f.write("""agent:
  data_dir: %s
  http: { listen: %s }
inputs:
  - { name: dns, type: dns_probe, resolv_conf: %s, names: [ok.example.test],
      interval: 300ms, timeout: 200ms }
outputs:
  - { name: out, type: file, match: dns, path: %s }
""" % (yaml_str(os.path.join(str(tmp_path), "data")), yaml_str("%s:0" % HOST), yaml_str(resolv),
            yaml_str(out)))
    d = start_drover(cfg)
    d.wait_ready()
    without = lambda: d.metrics().get("drover_dns_probe_rounds_without_servers_total",  # noqa: E731
                                      name="dns")
    wait_until(lambda: without() >= 3, timeout=20, what="rounds counted without a server")
    assert d.metrics().get("drover_dns_probe_rounds_total", name="dns") == 0
    with open(resolv + ".tmp", "w") as f:
        f.write("search cluster.local\n")  # no nameserver yet
    os.replace(resolv + ".tmp", resolv)
    seen = without()
    wait_until(lambda: without() >= seen + 2, timeout=20, what="a resolv.conf without servers")
    with open(resolv + ".tmp", "w") as f:
        f.write("nameserver %s\n" % stub.address)
    os.replace(resolv + ".tmp", resolv)
    wait_until(lambda: d.metrics().get("drover_dns_probe_rounds_total", name="dns") >= 2,
               timeout=20, what="probing once resolv.conf names a server")
    assert d.metrics().get("drover_dns_probe_servers", name="dns") == 1
    assert d.stop() == 0
    p = Probes(OutputFile(out).read())
    assert p.last(stub.address, "ok.example.test")["drover_dns_probe_up"] == 1
    assert "no DNS servers to probe" in d.log_text()


@pytest.mark.time_limit(120)
def test_dns_probe_to_remote_write(start_drover, stub, prometheus, tmp_path):
    """The probe samples reach a metrics output as scraped ones do: what
    Prometheus 2 received through remote write is, series by series and
    sample by sample, what the file output wrote."""
    out = os.path.join(str(tmp_path), "out.ndjson")
    cfg = os.path.join(str(tmp_path), "drover.yaml")
    with open(cfg, "w") as f:
        f.write("""agent:
  data_dir: %s
  http: { listen: %s }
  grace_period: 10s
inputs:
  - name: dns
    type: dns_probe
    servers: [%s]
    names: [ok.example.test, nx.example.test, drop.example.test, big.example.test]
    interval: 1s
    timeout: 500ms
outputs:
  - { name: out, type: file, match: dns, path: %s }
  - { name: rw, type: remote_write, match: dns, url: %s, batch_send_deadline: 200ms }
""" % (yaml_str(os.path.join(str(tmp_path), "data")), yaml_str("%s:0" % HOST),
            yaml_str(stub.address), yaml_str(out), yaml_str(prometheus.write_url)))
    t0 = time.time()
    d = start_drover(cfg)
    d.wait_ready()
    wait_until(lambda: d.metrics().get("drover_dns_probe_rounds_total", name="dns") > 3,
               timeout=30)
    wait_sent(d)
    assert d.stop() == 0
    want = produced(out)
    assert len(want) > 4 * 20  # buckets, sums, counts, rcodes, ... of four names
    got = prometheus.samples('{__name__=~"drover_dns_probe_.*"}', t0 - 5, time.time() + 1)
    compare(want, got)
    # and the histogram works as one in PromQL
    r = prometheus.query('histogram_quantile(0.5, drover_dns_probe_duration_seconds_bucket'
                         '{name="drop.example.test"})', at=time.time())
    assert r and 0.25 <= float(r[0]["value"][1]) <= 1.0, r
