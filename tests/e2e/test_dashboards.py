"""The Grafana dashboards under dashboards/, proven against real data.

One drover runs every input the dashboards read, on loopback:
- tail over container log files written here (CRI, three namespaces, stdout
  and stderr, some lines with errors), into a real Loki (servers.py) through
  the loki output with its default labels;
- prometheus_scrape of drover's own /metrics (job drover), of a real
  node-exporter and of a port nobody listens on (a failing target);
- the kubelet input against the HTTPS stand-in kubelet of test_kubelet.py
  serving the recorded cAdvisor, resource and /stats/summary payloads;
- the coredns input against a real CoreDNS 1.12.4 (with a cache) found
  through a real API server (kube.py), as test_coredns.py does;
- dns_probe through that CoreDNS (answers, NXDOMAIN, SERVFAIL, timeouts) and
  against a closed port;
and remote_write sends every sample to a real Prometheus 3 with external
label node, as the example configurations do.

Then every PromQL and LogQL expression of every dashboard (every panel's
targets, rows' nested panels included, and every query variable) is run
through the query APIs, twice: with the variables as Grafana fills them by
default (All: `.+`), and with each set to the list of values its own query
returns. Each must return at least one series, with the labels its legend
shows; each variable query at least one value. The same expressions with
their metric names (or stream label names) renamed must return nothing, so
a metric that drover or a payload stops exporting fails the test. The other
tests lint every dashboard with Grafana's dashboard linter (--strict), check
the files are what scripts/gen-dashboards.py writes and name no data source
UID, check the provisioning examples, and that docs/dashboards.md has every
panel.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Iterator

import pytest

from dns_servers import CoreDNS, StubDNS, ask
from drover_e2e import HOST, REPO, free_port, yaml_str
from kube import kube, kube_bin_dir, start_kube  # noqa: F401
from metrics_servers import node_exporter, parse_text, read_fixture, start_prometheus3  # noqa: F401
from servers import loki, loki_bin, start_loki  # noqa: F401
from test_coredns import READER_RULES, create_coredns_pod
from test_kube_sd import NODE
from test_kubelet import PAYLOADS, FakeKubelet, kubelet, without_timestamps  # noqa: F401

DASHBOARDS = REPO / "dashboards"
BOARDS = ("drover.json", "kubelet.json", "coredns.json", "logs.json")
COREDNS_BIN = os.environ.get("COREDNS_BIN", "")
LINTER_SCRIPT = REPO / "scripts" / "servers" / "dashboard-linter.sh"

# What Grafana puts in place of its own variables; ranges long enough to hold
# several samples of the 1-2 s scrapes below.
GLOBALS = {
    "__rate_interval": "1m", "__interval": "15s", "__range": "5m", "__auto": "1m",
    "__interval_ms": "15000", "__range_s": "300", "__range_ms": "300000",
}
ALL = ".+"  # the allValue of every multi-value variable


# ---- reading the dashboards --------------------------------------------------------------------


def load(name: str) -> dict:
    with open(DASHBOARDS / name, encoding="utf-8") as f:
        return json.load(f)


def all_panels(panels: list[dict]) -> Iterator[dict]:
    """Every panel, those nested in (collapsed) rows included."""
    for p in panels:
        yield p
        yield from all_panels(p.get("panels") or [])


def board_kind(board: dict) -> str:
    kinds = [v["query"] for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert len(kinds) == 1, "%s: one data source variable expected, got %s" % (board["title"], kinds)
    return kinds[0]


def targets(board: dict) -> list[tuple[str, str, str]]:
    """(panel title, expr, legendFormat) of every query of every panel."""
    out = []
    panels = list(all_panels(board.get("panels") or []))
    for r in board.get("rows") or []:  # the old layout, in case
        panels += list(all_panels(r.get("panels") or []))
    for p in panels:
        for t in p.get("targets") or []:
            if t.get("hide"):
                continue
            assert t.get("expr"), "%s / %s: a target without expr" % (board["title"], p.get("title"))
            out.append((p.get("title", ""), t["expr"], t.get("legendFormat") or ""))
    return out


def query_variables(board: dict) -> list[dict]:
    return [v for v in board["templating"]["list"] if v["type"] == "query"]


def var_query(v: dict) -> str:
    q = v["query"]
    return q["query"] if isinstance(q, dict) else q


_VAR_RE = re.compile(r"\$\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)\]\]")


def substitute(expr: str, values: dict[str, str]) -> str:
    def one(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in GLOBALS:
            return GLOBALS[name]
        assert name in values, "unknown variable $%s in %r" % (name, expr)
        return values[name]
    out = _VAR_RE.sub(one, expr)
    assert "$" not in out, "variables left in %r" % out
    return out


def variable_values(board: dict) -> dict[str, str]:
    """What Grafana substitutes by default: All (.+) for multi-value
    variables, the default text of text boxes."""
    values = {}
    for v in board["templating"]["list"]:
        if v["type"] == "query":
            values[v["name"]] = v.get("allValue") or ALL
        elif v["type"] == "textbox":
            values[v["name"]] = (v.get("current") or {}).get("value", "")
        elif v["type"] == "custom":
            values[v["name"]] = (v.get("current") or {}).get("value", "")
    return values


_METRIC_RE = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{")
_LOKI_LABEL_RE = re.compile(r"([{,]\s*)([a-zA-Z_][a-zA-Z0-9_]*)(\s*(?:=~|!~|!=|=))")


def renamed_metrics(expr: str) -> str:
    """The PromQL expression with every metric name renamed."""
    return _METRIC_RE.sub(lambda m: m.group(1) + "_renamed{", expr)


def renamed_stream_labels(expr: str) -> str:
    """The LogQL expression with the label names of its stream selectors renamed."""
    def selector(m: re.Match) -> str:
        return _LOKI_LABEL_RE.sub(lambda l: l.group(1) + l.group(2) + "_renamed" + l.group(3),
                                  m.group(0))
    return re.sub(r"\{[^{}]*\}", selector, expr)


# ---- the query APIs ------------------------------------------------------------------------------


def get_json(url: str, timeout: float = 20) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise AssertionError("GET %s: HTTP %d %s" % (url[:400], e.code, e.read()[:500].decode(
            "utf-8", "replace")))


class PromAPI:
    def __init__(self, base: str):
        self.base = base

    def query(self, expr: str) -> list:
        d = get_json(self.base + "/api/v1/query?" + urllib.parse.urlencode(
            {"query": expr, "time": "%.3f" % time.time()}))
        assert d["status"] == "success", d
        res = d["data"]["result"]
        if d["data"]["resultType"] == "scalar":
            return [res]
        return res

    def variable(self, q: str) -> list[str]:
        """The values of a Grafana Prometheus variable query."""
        now = time.time()
        m = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", q)
        if m:
            d = get_json(self.base + "/api/v1/label/%s/values?" % m.group(2) + urllib.parse.urlencode(
                {"match[]": m.group(1), "start": "%.3f" % (now - 300), "end": "%.3f" % now}))
            return d["data"]
        m = re.fullmatch(r"\s*label_values\(\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", q)
        if m:
            return get_json(self.base + "/api/v1/label/%s/values" % m.group(1))["data"]
        m = re.fullmatch(r"\s*query_result\((.*)\)\s*", q)
        if m:
            return [json.dumps(r["metric"]) for r in self.query(m.group(1))]
        raise AssertionError("a variable query this test does not know: %r" % q)


class LokiAPI:
    def __init__(self, base: str):
        self.base = base

    def query(self, expr: str) -> list:
        """A metric query at now, or a log query over the last 10 minutes."""
        now_ns = time.time_ns()
        is_log = re.match(r"\s*\{", expr) is not None
        if is_log:
            d = get_json(self.base + "/loki/api/v1/query_range?" + urllib.parse.urlencode(
                {"query": expr, "start": str(now_ns - 600 * 10**9), "end": str(now_ns),
                 "limit": "100", "direction": "backward"}))
            assert d["data"]["resultType"] == "streams", d["data"]["resultType"]
            return [s for s in d["data"]["result"] if s.get("values")]
        d = get_json(self.base + "/loki/api/v1/query?" + urllib.parse.urlencode(
            {"query": expr, "time": str(now_ns)}))
        assert d["status"] == "success", d
        return d["data"]["result"]

    def variable(self, q: str) -> list[str]:
        now_ns = time.time_ns()
        span = {"start": str(now_ns - 600 * 10**9), "end": str(now_ns)}
        m = re.fullmatch(r"\s*label_values\((\{.*\}),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", q)
        if m:
            d = get_json(self.base + "/loki/api/v1/label/%s/values?" % m.group(2) +
                         urllib.parse.urlencode(dict(span, query=m.group(1))))
            return d.get("data") or []
        m = re.fullmatch(r"\s*label_values\(\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", q)
        if m:
            d = get_json(self.base + "/loki/api/v1/label/%s/values?" % m.group(1) +
                         urllib.parse.urlencode(span))
            return d.get("data") or []
        raise AssertionError("a Loki variable query this test does not know: %r" % q)


NAN_ONLY: list[str] = []  # queries that answered, but only with NaN (0/0 of idle counters)


def regex_of(values: list[str]) -> str:
    """Several values of a multi-value variable as Grafana writes them into a
    PromQL or LogQL regex: escaped, joined by |, in parentheses (and the
    backslashes doubled for the double-quoted string)."""
    return "(" + "|".join(re.escape(v).replace("\\", "\\\\") for v in values) + ")"


def check_board(board: dict, api, *, listed: bool = False) -> tuple[int, list[str]]:
    """Runs every variable query and target of a dashboard: (queries proven,
    failures). The variables are All (.+), or with `listed` every value their
    own query found, one by one (so that a variable whose values are not the
    label values the panels select on fails); only the All pass also runs the
    renamed queries."""
    kind = board_kind(board)
    values = variable_values(board)
    failures, proven = [], 0
    for v in query_variables(board):
        q = substitute(var_query(v), values)
        try:
            got = api.variable(q)
        except AssertionError as e:
            failures.append("variable $%s %r: %s" % (v["name"], q, e))
            continue
        if not got:
            failures.append("variable $%s %r: no values" % (v["name"], q))
        else:
            proven += 1
            if listed:
                values[v["name"]] = regex_of(sorted(got))
    for title, expr, legend in targets(board):
        q = substitute(expr, values)
        try:
            res = api.query(q)
        except AssertionError as e:
            failures.append("%s: %r: %s" % (title, q, e))
            continue
        if not res:
            failures.append("%s: %r: no series" % (title, q))
            continue
        # the labels the legend shows are there (a grouping by a label the
        # series do not have would answer, with empty legends)
        shown = re.findall(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", legend)
        missing = [l for l in shown if not any((r.get("metric") or r.get("stream") or {}).get(l)
                                                for r in res if isinstance(r, dict))]
        if missing:
            failures.append("%s: %r: no series has the legend's label(s) %s"
                            % (title, q, ", ".join(missing)))
            continue
        proven += 1
        if listed:
            continue
        if all(isinstance(r, dict) and r.get("value", [0, "0"])[1] == "NaN" for r in res):
            NAN_ONLY.append("%s / %s: %s" % (board["title"], title, q))
        # the negative control: the same query over names that do not exist
        broken = renamed_metrics(q) if kind == "prometheus" else renamed_stream_labels(q)
        assert broken != q, "nothing to rename in %r" % q
        try:
            if api.query(broken):
                failures.append("%s: %r still answers with its names renamed: %r"
                                % (title, q, broken))
        except AssertionError as e:
            failures.append("%s: renamed %r: %s" % (title, broken, e))
    return proven, failures


# ---- the data: container logs ---------------------------------------------------------------------

PODS = [  # namespace, pod, container
    ("shop", "web-6d4cf56db6-x2x8k", "nginx"),
    ("shop", "cart-5f7b9c8d7-q7m2p", "cart"),
    ("payments", "ledger-0", "ledger"),
    ("kube-system", "coredns-7d9f-aaaaa", "coredns"),
]


class ContainerLogs:
    """CRI log files as the kubelet lays them out, one per container of PODS:
    a minute of lines at start, then a line per container every 0.2 s until
    stop(), so the last minute always has some. Every fifth line of a file is
    an error, every third goes to stderr."""

    def __init__(self, root: str):
        self.root = root
        self.files = []
        self.n = 0
        self.stopping = threading.Event()
        os.makedirs(os.path.join(root, "containers"), exist_ok=True)
        for i, (ns, pod, container) in enumerate(PODS):
            uid = "0000000%d-aaaa-bbbb-cccc-00000000000%d" % (i, i)
            cid = ("%02d" % i) * 32
            pod_dir = os.path.join(root, "pods", "%s_%s_%s" % (ns, pod, uid), container)
            os.makedirs(pod_dir, exist_ok=True)
            path = os.path.join(pod_dir, "0.log")
            open(path, "w").close()
            os.symlink(path, os.path.join(root, "containers",
                                          "%s_%s_%s-%s.log" % (pod, ns, container, cid)))
            self.files.append(path)
        now = time.time()
        for k in range(40):
            self._write(now - 60 + k * 1.5)
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def glob(self) -> str:
        return os.path.join(self.root, "containers", "*.log")

    def _write(self, t: float) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%09dZ" % int((t % 1) * 1e9)
        k = self.n
        self.n += 1
        stream = "stderr" if k % 3 == 0 else "stdout"
        if k % 5 == 0:
            msg = 'level=error msg="request failed" err="connection refused" n=%d' % k
        else:
            msg = 'level=info msg="request served" status=200 n=%d' % k
        for path in self.files:
            with open(path, "a") as f:
                f.write("%s %s F %s\n" % (stamp, stream, msg))

    def _run(self) -> None:
        while not self.stopping.wait(0.2):
            self._write(time.time())

    def start(self) -> "ContainerLogs":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)


# ---- the environment -------------------------------------------------------------------------------


@pytest.fixture
def coredns_cached(tmp_path):
    """The real CoreDNS of dns_servers.py with a cache in front of its
    forwarding, so that coredns_cache_* have something to count."""
    if not COREDNS_BIN or not os.access(COREDNS_BIN, os.X_OK):
        pytest.fail("COREDNS_BIN is not set (scripts/servers/coredns.sh)", pytrace=False)
    stub = StubDNS()
    c = CoreDNS(COREDNS_BIN, str(tmp_path / "coredns"), stub.address)
    with open(c.corefile) as f:
        corefile = f.read()
    assert "    forward . " in corefile
    with open(c.corefile, "w") as f:
        f.write(corefile.replace("    forward . ", "    cache 30\n    forward . "))
    try:
        yield c.start()
    finally:
        c.stop()
        stub.stop()


PROBE_NAMES = ["kubernetes.default.svc.cluster.local", "ok.example.test", "nx.example.test",
               "fail.example.test", "drop.example.test"]


def drover_config(tmp_path, *, port: int, logs: str, loki_url: str, write_url: str,
                  kubelet: FakeKubelet, kubelet_token: str, kube, dns_token: str,
                  coredns: CoreDNS, node_exporter: str) -> str:
    cfg = """agent:
  data_dir: %(data)s
  node_name: %(node)s
  http: {listen: %(listen)s}
  grace_period: 5s
inputs:
  - name: pods
    type: tail
    paths: [%(logs)s]
    read_from: head
  - name: metrics
    type: prometheus_scrape
    scrape_interval: 1s
    scrape_timeout: 1s
    scrape_configs:
      - job_name: drover
        static_configs: [{targets: [%(self)s]}]
      - job_name: node
        static_configs: [{targets: [%(node_exporter)s]}]
      - job_name: gone
        static_configs: [{targets: [%(gone)s]}]
  - name: kubelet
    type: kubelet
    address: 127.0.0.1
    port: %(kubelet_port)d
    ca_file: %(kubelet_ca)s
    bearer_token_file: %(kubelet_token)s
    scrape_interval: 2s
    scrape_timeout: 2s
    stats_summary: true
  - name: dns
    type: coredns
    port: %(coredns_metrics)d
    scrape_interval: 1s
    scrape_timeout: 1s
    api_server: %(kube_url)s
    bearer_token_file: %(dns_token)s
    ca_file: %(kube_ca)s
  - name: dns_cluster
    type: dns_probe
    servers: [%(coredns)s]
    names: [%(names)s]
    interval: 1s
    timeout: 500ms
  - name: dns_closed
    type: dns_probe
    servers: [%(gone)s]
    names: [kubernetes.default.svc.cluster.local]
    interval: 1s
    timeout: 500ms
outputs:
  - name: loki
    type: loki
    match: pods
    url: %(loki)s
    batch_wait: 200ms
  - name: prometheus
    type: remote_write
    match: [metrics, kubelet, dns, dns_cluster, dns_closed]
    url: %(write)s
    protobuf_message: io.prometheus.write.v2.Request
    batch_send_deadline: 200ms
    external_labels: {node: %(node)s, cluster: test}
""" % {
        "data": yaml_str(str(tmp_path / "data")), "node": NODE,
        "listen": yaml_str("%s:%d" % (HOST, port)), "logs": yaml_str(logs),
        "self": yaml_str("%s:%d" % (HOST, port)), "node_exporter": yaml_str(node_exporter),
        "gone": yaml_str("%s:%d" % (HOST, free_port())),
        "kubelet_port": kubelet.port, "kubelet_ca": yaml_str(kubelet.cert),
        "kubelet_token": yaml_str(kubelet_token), "coredns_metrics": coredns.metrics_port,
        "kube_url": yaml_str(kube.url), "dns_token": yaml_str(dns_token),
        "kube_ca": yaml_str(kube.ca_file), "coredns": yaml_str(coredns.address),
        "names": ", ".join(yaml_str(n) for n in PROBE_NAMES),
        "loki": yaml_str(loki_url), "write": yaml_str(write_url)}
    path = str(tmp_path / "drover.yaml")
    with open(path, "w") as f:
        f.write(cfg)
    return path


@pytest.mark.time_limit(300)
def test_every_dashboard_query_answers(request, start_drover, tmp_path, loki, start_prometheus3,
                                       kube, coredns_cached, kubelet, node_exporter):
    # the CoreDNS pod on this node, as the coredns input finds it
    kube.call("POST", "/api/v1/namespaces/kube-system/serviceaccounts", {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
        ok=(201, 409))
    dns_token = str(tmp_path / "dns-reader")
    with open(dns_token, "w") as f:
        f.write(kube.service_account_token("kube-system", "dns-reader", READER_RULES) + "\n")
    create_coredns_pod(kube, "coredns-7d9f-aaaaa", NODE, coredns_cached.metrics_port)
    prometheus3 = start_prometheus3()
    kubelet_token = str(tmp_path / "kubelet-token")
    with open(kubelet_token, "w") as f:
        f.write(next(iter(kubelet.tokens)) + "\n")

    logs = ContainerLogs(str(tmp_path / "var-log")).start()
    request.addfinalizer(logs.stop)
    port = free_port()
    cfg = drover_config(tmp_path, port=port, logs=logs.glob,
                        loki_url=loki.push_url, write_url=prometheus3.write_url,
                        kubelet=kubelet, kubelet_token=kubelet_token, kube=kube,
                        dns_token=dns_token, coredns=coredns_cached,
                        node_exporter=node_exporter.address)
    d = start_drover(cfg)
    d.wait_ready()
    # TCP queries too, for coredns_dns_requests_total{proto="tcp"}
    for _ in range(3):
        assert ask(coredns_cached.port, "kubernetes.default.svc.cluster.local") is not None

    prom, lokiapi = PromAPI(prometheus3.url), LokiAPI(loki.url)
    apis = {"prometheus": prom, "loki": lokiapi}
    boards = {name: load(name) for name in BOARDS}
    # enough samples for rates over $__rate_interval, then every query must
    # answer; retried until the slowest series (a 2 s kubelet scrape, the
    # first remote-write batches) are in, at most 90 s
    time.sleep(15)
    deadline = time.monotonic() + 90
    while True:
        NAN_ONLY.clear()
        results = {name: check_board(b, apis[board_kind(b)]) for name, b in boards.items()}
        listed = {name: check_board(b, apis[board_kind(b)], listed=True)
                  for name, b in boards.items()}
        failures = [("%s: %s" % (name, f)) for name, (_, fs) in results.items() for f in fs]
        failures += [("%s (variables listed): %s" % (name, f))
                     for name, (_, fs) in listed.items() for f in fs]
        if not failures or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert d.alive(), "drover exited:\n" + d.log_text()[-3000:]
    summary = ", ".join("%s %d" % (name, n) for name, (n, _) in results.items())
    print("queries proven: " + summary)
    if NAN_ONLY:
        print("answered with NaN only (idle counters in this test):\n  " + "\n  ".join(NAN_ONLY))
    assert not failures, "%d of the dashboards' queries failed (proven: %s):\n  %s" % (
        len(failures), summary, "\n  ".join(failures))
    # every query and variable of every dashboard was counted
    for name, b in boards.items():
        assert results[name][0] == len(targets(b)) + len(query_variables(b)), name
        assert listed[name][0] == results[name][0], name

    # and a few panels show what the data holds
    def panel(name: str, title: str, i: int = 0) -> list:
        b = boards[name]
        exprs = [e for t, e, _ in targets(b) if t == title]
        return apis[board_kind(b)].query(substitute(exprs[i], variable_values(b)))

    def values(res: list, label: str = "") -> dict:
        return {(r["metric"].get(label) if label else ""): float(r["value"][1]) for r in res}

    containers = sum(1 for n, ls, _ in parse_text(without_timestamps(read_fixture(
        PAYLOADS["/metrics/cadvisor"]).decode()))
        if n == "container_memory_working_set_bytes" and ls.get("container") and ls.get("image"))
    assert values(panel("kubelet.json", "Running containers")) == {"": containers}
    share = values(panel("logs.json", "Error share by namespace"), "namespace")
    assert set(share) == {ns for ns, _, _ in PODS}
    assert all(0.15 <= v <= 0.25 for v in share.values()), share  # every fifth line
    records_in = values(panel("drover.json", "Records in"), "name")
    assert records_in.get("pods", 0) > 0 and records_in.get("metrics", 0) > 0, records_in
    rcodes = values(panel("coredns.json", "Responses by rcode"), "rcode")
    assert {"NOERROR", "NXDOMAIN", "SERVFAIL"} <= set(rcodes), rcodes
    assert values(panel("coredns.json", "Cache hit rate"))[""] > 0
    up = {(r["metric"]["server"], r["metric"]["name"]): float(r["value"][1])
          for r in panel("coredns.json", "Answered by node and server")}
    assert up[(coredns_cached.address, "kubernetes.default.svc.cluster.local")] == 1
    assert up[(coredns_cached.address, "drop.example.test")] == 0
    failed = values(panel("drover.json", "Scrape failures by reason"), "name")
    assert "metrics" in failed, failed  # the target nobody listens on
    assert d.stop() == 0


# ---- the linter and the files themselves -----------------------------------------------------------


def linter_bin() -> str:
    b = os.environ.get("DASHBOARD_LINTER_BIN")
    if b:
        return b
    p = subprocess.run(["bash", str(LINTER_SCRIPT)], stdout=subprocess.PIPE, timeout=1800)
    assert p.returncode == 0, "scripts/servers/dashboard-linter.sh failed"
    return p.stdout.decode().strip()


@pytest.mark.time_limit(1800)
@pytest.mark.parametrize("name", BOARDS)
def test_dashboard_lints_strict(name):
    linter = linter_bin()
    p = subprocess.run([linter, "lint", "--strict", str(DASHBOARDS / name)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, "dashboard-linter lint --strict %s:\n%s" % (name, out)


def test_dashboards_are_generated_and_portable():
    p = subprocess.run(["python3", str(REPO / "scripts" / "gen-dashboards.py"), "--check"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert p.returncode == 0, p.stdout.decode()
    uids = set()
    for name in BOARDS:
        b = load(name)
        assert b["schemaVersion"] >= 39, name
        assert b["uid"] not in uids
        uids.add(b["uid"])
        kind = board_kind(b)
        ds_vars = [v for v in b["templating"]["list"] if v["type"] == "datasource"]
        assert ds_vars[0]["name"] == "datasource"
        assert kind == ("loki" if name == "logs.json" else "prometheus")

        # no data source is named by UID: everything points at ${datasource}
        def walk(o, where):
            if isinstance(o, dict):
                if "datasource" in o and isinstance(o["datasource"], dict):
                    assert o["datasource"].get("uid") == "${datasource}", (name, where, o["datasource"])
                    assert o["datasource"].get("type") == kind, (name, where)
                for k, v in o.items():
                    walk(v, where + "/" + k)
            elif isinstance(o, list):
                for i, v in enumerate(o):
                    walk(v, "%s[%d]" % (where, i))
        walk(b, "")
        panels = [p for p in all_panels(b["panels"]) if p["type"] != "row"]
        assert panels and all(p.get("targets") for p in panels), name
        assert len({p["id"] for p in all_panels(b["panels"])}) == len(list(all_panels(b["panels"])))


def test_provisioning_files():
    """The provisioning examples are what Grafana reads: a file provider for
    the dashboards' folder, and a data source of each type the dashboards ask for."""
    import yaml
    prov = DASHBOARDS / "provisioning"
    with open(prov / "dashboards" / "drover.yaml") as f:
        d = yaml.safe_load(f)
    assert d["apiVersion"] == 1
    [p] = d["providers"]
    assert p["type"] == "file" and p["options"]["path"].startswith("/")
    with open(prov / "datasources" / "drover.yaml") as f:
        s = yaml.safe_load(f)
    assert s["apiVersion"] == 1
    kinds = {ds["type"] for ds in s["datasources"]}
    assert kinds == {board_kind(load(n)) for n in BOARDS} == {"prometheus", "loki"}
    assert all(ds["url"].startswith("http") and "uid" not in ds for ds in s["datasources"])


def test_docs_describe_every_panel():
    """docs/dashboards.md has a row for every panel of every dashboard."""
    with open(REPO / "docs" / "dashboards.md", encoding="utf-8") as f:
        doc = f.read()
    missing = []
    for name in BOARDS:
        b = load(name)
        assert "(%s)" % name in doc, name
        for p in all_panels(b["panels"]):
            row = "| **%s** |" % p["title"] if p["type"] == "row" else "| %s |" % p["title"]
            if row not in doc:
                missing.append("%s: %s" % (name, p["title"]))
    assert not missing, "panels docs/dashboards.md does not describe: %s" % ", ".join(missing)
