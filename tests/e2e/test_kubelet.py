"""The kubelet input against a stand-in kubelet and a real receiver.

The stand-in is an HTTPS server in the test process (python ssl, a
self-signed certificate made by `openssl req` for 127.0.0.1) that answers
like a kubelet: 401 without the bearer token it expects, else
/metrics/cadvisor and /metrics/resource from the recorded kubelet payloads,
/metrics from cAdvisor's golden output, /metrics/probes from a body made
here, and /stats/summary from a recorded summary. drover's kubelet input
writes to VictoriaMetrics (Debian) and, beside it, to the file output.

Checked: every sample of the payloads that the default metric relabeling
does not drop (the drop rules applied here, by a reader of our own) is
produced with the labels kube-prometheus gives (job, metrics_path, instance,
node, endpoint) and its value, and arrives in the receiver; the dropped
families are absent; /stats/summary series carry the JSON's values; and a
new token in the token file is picked up without a restart.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import ssl
import threading
import time

import pytest

from drover_e2e import HOST, OutputFile, make_cert as make_cert_in, wait_until, yaml_str
from metrics_servers import parse_text, read_fixture, victoria  # noqa: F401

PAYLOADS = {
    "/metrics": "exposition/cadvisor-golden-prometheus_metrics.prom",
    "/metrics/cadvisor": "exposition/kubelet-metrics-cadvisor-k8s1.35.prom",
    "/metrics/resource": "exposition/kubelet-metrics-resource.prom",
}

SUMMARY = "k8s-api/kubelet-stats-summary-k8s1.35.json"

PROBES = (
    "# HELP prober_probe_total [ALPHA] Cumulative number of a liveness, readiness or startup probe.\n"
    "# TYPE prober_probe_total counter\n"
    'prober_probe_total{container="coredns",namespace="kube-system",pod="coredns-1",'
    'pod_uid="u1",probe_type="Liveness",result="successful"} 120\n'
    'prober_probe_total{container="coredns",namespace="kube-system",pod="coredns-1",'
    'pod_uid="u1",probe_type="Readiness",result="failed"} 3\n'
)

# The default metric_relabel_configs of the kubelet input (docs/plugins/kubelet.md),
# as (source labels, regex) of drop rules.
DEFAULT_DROPS = [
    (("__name__",), r"container_(tasks_state|memory_failures_total|blkio_device_usage_total|"
                    r"network_tcp_usage_total|network_udp_usage_total|cpu_load_average_10s)"),
    (("__name__", "container", "image"),
     r"(container_fs_.*|container_spec_.*|container_file_descriptors|container_sockets|"
     r"container_threads_max|container_threads|container_start_time_seconds|"
     r"container_last_seen);;"),
    (("__name__", "le"), r"(csi_operations|storage_operation_duration)_seconds_bucket;"
                         r"(0.25|2.5|15|25|120|600)(\.0)?"),
    (("__name__", "le"), r"(apiserver_request|etcd_request|rest_client_request|"
                         r"kubelet_runtime_operations|kubelet_http_requests)_duration_seconds_bucket;"
                         r"(0.15|0.2|0.3|0.35|0.4|0.45|0.6|0.7|0.8|0.9|1.25|1.5|1.75|2|3|3.5|4|"
                         r"4.5|6|7|8|9|15|25|40|50)(\.0)?"),
]

REPORT = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
          "scrape_samples_post_metric_relabeling", "scrape_series_added"}


def dropped_by_default(name: str, labels: dict) -> bool:
    full = dict(labels, __name__=name)
    return any(re.fullmatch(rx, ";".join(full.get(l, "") for l in src))
               for src, rx in DEFAULT_DROPS)


def without_timestamps(text: str) -> str:
    """The recorded payloads carry millisecond timestamps, which the input
    ignores by default (honor_timestamps: false): the samples, without them."""
    out = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            head, sep, tail = line.rpartition("}")
            fields = (tail if sep else line).split()
            if len(fields) == (2 if sep else 3):
                line = line[:line.rstrip().rfind(" ")]
        out.append(line)
    return "\n".join(out) + "\n"


def make_cert(tmp_path) -> tuple[str, str]:
    return make_cert_in(tmp_path, "kubelet")


class FakeKubelet:
    """An HTTPS server answering like a kubelet; `tokens` are the bearer
    tokens it accepts, `seen` the (path, token) of every request."""

    def __init__(self, cert: str, key: str, bodies: dict[str, bytes], token: str):
        self.bodies = bodies
        self.tokens = {token}
        self.seen: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                auth = self.headers.get("Authorization", "")
                token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
                with outer.lock:
                    outer.seen.append((self.path, token))
                    ok = token in outer.tokens
                body = outer.bodies.get(self.path)
                if not ok:
                    self.send_response(401)
                    body, ctype = b"Unauthorized\n", "text/plain"
                elif body is None:
                    self.send_response(404)
                    body, ctype = b"404 page not found\n", "text/plain"
                else:
                    self.send_response(200)
                    ctype = ("application/json" if self.path == "/stats/summary"
                             else "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "FakeKubelet":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)

    def tokens_seen(self) -> set[str]:
        with self.lock:
            return {t for _, t in self.seen}


@pytest.fixture
def kubelet(tmp_path):
    cert, key = make_cert(tmp_path)
    bodies = {path: read_fixture(rel) for path, rel in PAYLOADS.items()}
    bodies["/metrics/probes"] = PROBES.encode()
    bodies["/stats/summary"] = read_fixture(SUMMARY)
    k = FakeKubelet(cert, key, bodies, "token-one").start()
    k.cert = cert
    try:
        yield k
    finally:
        k.stop()


def config(tmp_path, kubelet: FakeKubelet, token_file: str, write_url: str) -> tuple[str, str]:
    out = os.path.join(str(tmp_path), "samples.ndjson")
    cfg = (
        "agent:\n"
        "  data_dir: %(data)s\n"
        "  node_name: node-a\n"
        "  http: {listen: %(listen)s}\n"
        "  grace_period: 10s\n"
        "inputs:\n"
        "  - name: kubelet\n"
        "    type: kubelet\n"
        "    address: 127.0.0.1\n"
        "    port: %(port)d\n"
        "    ca_file: %(ca)s\n"
        "    bearer_token_file: %(token)s\n"
        "    scrape_interval: 1s\n"
        "    scrape_timeout: 1s\n"
        "    stats_summary: true\n"
        "outputs:\n"
        "  - {name: rw, type: remote_write, match: kubelet, url: %(url)s,\n"
        "     batch_send_deadline: 200ms, min_backoff: 100ms, max_backoff: 1s}\n"
        "  - {name: copy, type: file, match: kubelet, path: %(out)s}\n"
    ) % {"data": yaml_str(os.path.join(str(tmp_path), "data")), "listen": yaml_str(HOST + ":0"),
         "port": kubelet.port, "ca": yaml_str(kubelet.cert), "token": yaml_str(token_file),
         "url": yaml_str(write_url), "out": yaml_str(out)}
    path = os.path.join(str(tmp_path), "drover.yaml")
    with open(path, "w") as f:
        f.write(cfg)
    return path, out


def key_of(name: str, labels: dict) -> str:
    return json.dumps(dict(labels, __name__=name), sort_keys=True)


def expected_scraped(port: int) -> dict[str, float]:
    """Every sample of the served payloads the default relabeling keeps,
    with the target labels the input adds: {series: value}."""
    want = {}
    bodies = {p: read_fixture(rel).decode() for p, rel in PAYLOADS.items()}
    bodies["/metrics/probes"] = PROBES
    for path, text in bodies.items():
        for name, labels, value in parse_text(without_timestamps(text)):
            if dropped_by_default(name, labels):
                continue
            # honor_labels: a label of the payload wins over a target label
            # (cAdvisor's NUMA series have a node label of their own)
            target = {"job": "kubelet", "metrics_path": path, "node": "node-a",
                      "instance": "127.0.0.1:%d" % port, "endpoint": "https-metrics"}
            full = dict(target, **labels)
            want[key_of(name, full)] = value
    return want


def last_scrape(out: str) -> tuple[dict[str, float], set[str]]:
    """From the file output: the last value of each series, staleness
    markers and report series left out; and every name produced."""
    f = OutputFile(out)
    f.read()
    last, names = {}, set()
    for r in f.records:
        names.add(r["name"])
        if r.get("stale") or r["name"] in REPORT:
            continue
        v = r["value"]
        last[key_of(r["name"], r["labels"])] = float(v)
    return last, names


@pytest.mark.time_limit(240)
def test_kubelet_to_victoriametrics(start_drover, kubelet, victoria, tmp_path):
    token_file = str(tmp_path / "token")
    with open(token_file, "w") as f:
        f.write("token-one\n")
    cfg, out = config(tmp_path, kubelet, token_file, victoria.write_url)
    d = start_drover(cfg)
    d.wait_ready()
    wait_until(lambda: d.metrics().get("drover_scrapes_total", name="kubelet") >= 15, 30,
               what="3 scrapes of each endpoint")
    m = d.metrics()
    assert m.get("drover_scrape_targets", name="kubelet") == 5
    assert kubelet.tokens_seen() == {"token-one"}

    # a new token: the file is re-read, and scrapes go on with it
    with kubelet.lock:
        kubelet.tokens.add("token-two")
    with open(token_file + ".new", "w") as f:
        f.write("token-two\n")
    os.replace(token_file + ".new", token_file)
    wait_until(lambda: "token-two" in kubelet.tokens_seen(), 15, what="the new token in use")
    with kubelet.lock:
        kubelet.tokens.discard("token-one")
        n_before = len(kubelet.seen)
    wait_until(lambda: len(kubelet.seen) >= n_before + 10, 15, what="10 scrapes with the new token")
    with kubelet.lock:
        late = kubelet.seen[n_before:]
    assert {t for _, t in late} == {"token-two"}, "the old token was sent again"
    assert {p for p, _ in late} == {"/metrics", "/metrics/cadvisor", "/metrics/resource",
                                    "/metrics/probes", "/stats/summary"}
    failures = d.metrics().get("drover_scrape_failures_total", name="kubelet", reason="http_status")
    assert not failures, "a scrape got 401"
    assert d.stop() == 0

    produced, names = last_scrape(out)
    # every kept sample of the payloads, with the ServiceMonitor's labels and its value
    want = expected_scraped(kubelet.port)
    scraped = {k: v for k, v in produced.items() if not json.loads(k)["__name__"].startswith("k8s_")}
    missing = [k for k in want if k not in scraped]
    extra = [k for k in scraped if k not in want]
    assert not missing, "%d series missing, e.g. %s" % (len(missing), missing[:2])
    assert not extra, "%d series not expected, e.g. %s" % (len(extra), extra[:2])
    bad = [k for k in want if want[k] != scraped[k]]
    assert not bad, "%d values differ, e.g. %s" % (len(bad), bad[:2])
    assert len(want) > 3000
    # the dropped families are there in the payloads, and nowhere in the output
    for family in ("container_tasks_state", "container_memory_failures_total",
                   "container_blkio_device_usage_total"):
        assert family.encode() in read_fixture(PAYLOADS["/metrics/cadvisor"]) + \
            read_fixture(PAYLOADS["/metrics"])
        assert family not in names
    assert not [k for k in produced if json.loads(k)["__name__"].startswith("container_fs_")
                and not json.loads(k).get("container") and not json.loads(k).get("image")]
    assert any(json.loads(k)["__name__"].startswith("container_fs_") for k in produced)

    # /stats/summary: values as the JSON has them
    summary = json.loads(read_fixture(SUMMARY))
    base = {"job": "kubelet", "metrics_path": "/stats/summary", "node": "node-a",
            "instance": "127.0.0.1:%d" % kubelet.port, "endpoint": "https-metrics"}
    node = summary["node"]
    assert produced[key_of("k8s_node_cpu_usage", base)] == node["cpu"]["usageNanoCores"] / 1e9
    assert produced[key_of("k8s_node_memory_working_set_bytes", base)] == \
        node["memory"]["workingSetBytes"]
    pod = summary["pods"][0]
    pl = dict(base, namespace=pod["podRef"]["namespace"], pod=pod["podRef"]["name"],
              uid=pod["podRef"]["uid"])
    c = pod["containers"][0]
    assert produced[key_of("k8s_container_memory_rss_bytes", dict(pl, container=c["name"]))] == \
        c["memory"]["rssBytes"]
    eth0 = [i for i in pod["network"]["interfaces"] if i["name"] == "eth0"][0]
    assert produced[key_of("k8s_pod_network_io_bytes_total",
                           dict(pl, interface="eth0", direction="transmit"))] == eth0["txBytes"]
    n_containers = sum(len(p["containers"]) for p in summary["pods"])
    assert len([k for k in produced
                if json.loads(k)["__name__"] == "k8s_container_cpu_usage"]) == n_containers

    # everything produced arrived in the receiver, with its labels and values
    def arrived():
        got = victoria.export('{job="kubelet"}')
        last = {k: v[-1][1] for k, v in got.items()}
        lost = [k for k in produced if k not in last]
        off = [k for k in produced if k in last and
               abs(last[k] - produced[k]) > 1e-11 * max(1.0, abs(produced[k]))]
        return (not lost and not off) or (lost[:2], off[:2])

    deadline = time.monotonic() + 30
    while (res := arrived()) is not True:
        assert time.monotonic() < deadline, "not in the receiver: %s" % (res,)
        time.sleep(1)


def test_wrong_token_and_bad_summary_are_counted(start_drover, kubelet, tmp_path):
    """A token the kubelet refuses (401) and a /stats/summary that is not
    JSON fail their scrapes with up = 0, counted by reason; the other
    endpoints go on."""
    token_file = str(tmp_path / "token")
    with open(token_file, "w") as f:
        f.write("not-the-token\n")
    kubelet.bodies["/stats/summary"] = b'{"node": {"cpu": '
    cfg, out = config(tmp_path, kubelet, token_file, "http://%s:1/api/v1/write" % HOST)
    d = start_drover(cfg)
    d.wait_ready()

    def failures(reason):
        return d.metrics().get("drover_scrape_failures_total", name="kubelet", reason=reason) or 0

    wait_until(lambda: failures("http_status") >= 5, 20, what="refused scrapes")
    assert kubelet.tokens_seen() == {"not-the-token"}
    with open(token_file, "w") as f:
        f.write("token-one\n")
    wait_until(lambda: failures("convert") >= 2, 20, what="summary scrapes that fail")
    assert d.stop() == 0
    f = OutputFile(out)
    f.read()
    up = {}
    for r in f.records:
        if r["name"] == "up":
            up[r["labels"]["metrics_path"]] = float(r["value"])
    assert up["/stats/summary"] == 0
    assert up["/metrics/cadvisor"] == 1 and up["/metrics/probes"] == 1
