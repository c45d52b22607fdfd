"""Scrape targets for the metrics end-to-end tests.

NodeExporter runs Debian's prometheus-node-exporter on a 127.0.0.1 port of
its own (scripts/setup.sh installs it; the test fails without it).
PayloadServer is an HTTP server in the test process that answers each path
with what the test set for it (a recorded payload from ../shared/fixtures,
a status code, gzip or not), and keeps the requests it got, so a test can
change what a target exposes between two scrapes.

Fixtures: `node_exporter` (a started NodeExporter), `payloads` (a started
PayloadServer). Both are stopped at the end of the test, pass or fail.

parse_text() reads the text exposition format of the recorded payloads the
tests compare against (name, labels, value; no timestamps in those files):
a reader independent of drover's parser.
"""

from __future__ import annotations

import gzip
import http.server
import math
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from typing import Optional

import pytest

from drover_e2e import HOST, free_port

FIXTURES = os.environ.get("DROVER_FIXTURES") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "fixtures")

NODE_EXPORTER = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"


def indent(text: str, n: int) -> str:
    """Every line of a YAML fragment indented by n spaces (for config templates)."""
    return "".join(" " * n + l + "\n" for l in text.strip("\n").splitlines())


def fixture_path(rel: str) -> str:
    return os.path.join(FIXTURES, rel)


def read_fixture(rel: str) -> bytes:
    with open(fixture_path(rel), "rb") as f:
        return f.read()


# ---- node-exporter ---------------------------------------------------------------------------


class NodeExporter:
    # A few collectors that work in any container, so that its answer is
    # quick and the same series come back on every scrape.
    COLLECTORS = ("cpu", "meminfo", "loadavg", "stat", "time", "uname", "vmstat")

    def __init__(self, workdir: str):
        self.port = free_port()
        self.log = os.path.join(workdir, "node-exporter.log")
        self.proc: Optional[subprocess.Popen] = None

    @property
    def address(self) -> str:
        return "%s:%d" % (HOST, self.port)

    def start(self) -> "NodeExporter":
        if not os.path.exists(NODE_EXPORTER):
            raise AssertionError("prometheus-node-exporter is not installed (scripts/setup.sh)")
        args = [NODE_EXPORTER, "--web.listen-address=" + self.address,
                "--collector.disable-defaults"]
        args += ["--collector." + c for c in self.COLLECTORS]
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen("http://%s/metrics" % self.address, timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                with open(self.log, "rb") as f:
                    raise AssertionError("node-exporter did not start:\n%s"
                                         % f.read().decode("utf-8", "replace")[-3000:])
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def node_exporter(tmp_path):
    ne = NodeExporter(str(tmp_path)).start()
    try:
        yield ne
    finally:
        ne.stop()


# ---- payloads --------------------------------------------------------------------------------


class Answer:
    def __init__(self, body: bytes = b"", *, status: int = 200,
                 content_type: Optional[str] = "text/plain; version=0.0.4; charset=utf-8",
                 gzip_body: bool = False, delay: float = 0.0):
        self.body = body
        self.status = status
        self.content_type = content_type
        self.gzip_body = gzip_body
        self.delay = delay


class PayloadServer:
    def __init__(self):
        self.answers: dict[str, Answer] = {}
        self.requests: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                with server.lock:
                    server.requests.append((self.path, dict(self.headers.items())))
                    a = server.answers.get(path)
                if a is None:
                    a = Answer(b"not found\n", status=404, content_type="text/plain")
                if a.delay:
                    time.sleep(a.delay)
                body = a.body
                self.send_response(a.status)
                if a.content_type:
                    self.send_header("Content-Type", a.content_type)
                if a.gzip_body:
                    body = gzip.compress(body)
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return "%s:%d" % (HOST, self.port)

    def set(self, path: str, answer: Answer) -> None:
        with self.lock:
            self.answers[path] = answer

    def requests_for(self, path: str) -> list[dict]:
        with self.lock:
            return [h for p, h in self.requests if p.split("?", 1)[0] == path]

    def start(self) -> "PayloadServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def payloads():
    s = PayloadServer().start()
    try:
        yield s
    finally:
        s.stop()


# ---- reading the text format -----------------------------------------------------------------

_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def _unescape(v: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


def go_float(x: float) -> str:
    """x as Go's strconv.FormatFloat(x, 'g', -1, 64) writes it: the
    shortest digits, in exponent form below 1e-4 and from 1e6 on."""
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if math.isnan(x):
        return "NaN"
    if x == 0:
        return "-0" if math.copysign(1, x) < 0 else "0"
    import decimal
    sign, digits, exp = decimal.Decimal(repr(x)).normalize().as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    point = len(digits) + exp  # digits before the decimal point
    e = point - 1
    neg = "-" if sign else ""
    if e < -4 or e >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return "%s%se%s%02d" % (neg, mant, "-" if e < 0 else "+", abs(e))
    if point <= 0:
        return neg + "0." + "0" * (-point) + ds
    if point >= len(ds):
        return neg + ds + "0" * (point - len(ds))
    return neg + ds[:point] + "." + ds[point:]


def normalized_bound(v: str) -> str:
    """A le or quantile value as Prometheus 3 stores it: Go's shortest
    float form with ".0" added to integers ("1" -> "1.0")."""
    try:
        x = float(v)
    except ValueError:
        return v
    out = go_float(x)
    if not any(c in out for c in ".eIN"):
        out += ".0"
    return out


def parse_text(text: str) -> list[tuple[str, dict, float]]:
    """Samples of a text-format body whose metric and label names are all
    legacy ones and that has no timestamps (the recorded payloads used
    here): (name, labels, value). As Prometheus 3 does, the quantile of a
    summary's samples and the le of a histogram's are normalized."""
    out = []
    current_type = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# TYPE "):
            parts = line.split()
            current_type = parts[3] if len(parts) > 3 else None
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", line)
        assert m, line
        name, rest = m.group(1), line[m.end():]
        labels = {}
        if rest.startswith("{"):
            end = 1
            while True:
                lm = _LABEL_RE.match(rest, end)
                if not lm:
                    break
                labels[lm.group(1)] = _unescape(lm.group(2))
                end = lm.end()
            assert rest[end:].lstrip().startswith("}"), line
            rest = rest[end:].lstrip()[1:]
        fields = rest.split()
        assert len(fields) == 1, "timestamps are not expected here: " + line
        for key, kind in (("quantile", "summary"), ("le", "histogram")):
            if key in labels and current_type == kind:
                labels[key] = normalized_bound(labels[key])
        out.append((name, {k: v for k, v in labels.items() if v != ""}, float(fields[0])))
    return out


def same_value(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def record_value(r: dict) -> float:
    """A sample's value as the file output writes it (NaN and infinities
    as strings)."""
    v = r["value"]
    return float(v) if isinstance(v, str) else float(v)


# ---- remote-write receivers ------------------------------------------------------------------

import json as _json
import signal as _signal
import urllib.parse as _urlparse

PROMETHEUS2 = shutil.which("prometheus") or "/usr/bin/prometheus"
VICTORIA_METRICS = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
PROMETHEUS3_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                  "scripts", "servers", "prometheus3.sh")


class Receiver:
    """A receiver process on a port of its own, restartable on the same port
    and data; `query` reads through the Prometheus query API."""

    write_path = "/api/v1/write"
    ready_path = "/-/ready"

    def __init__(self, binary: str, workdir: str, name: str):
        self.binary = binary
        self.workdir = os.path.join(workdir, name)
        os.makedirs(self.workdir, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.runs = 0

    @property
    def url(self) -> str:
        return "http://%s:%d" % (HOST, self.port)

    @property
    def write_url(self) -> str:
        return self.url + self.write_path

    def args(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> "Receiver":
        if not os.path.exists(self.binary):
            raise AssertionError("%s is not installed (scripts/setup.sh): %s" % (self.name, self.binary))
        self.runs += 1
        self.log = os.path.join(self.workdir, "run%d.log" % self.runs)
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen([self.binary] + self.args(), stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("%s did not start:\n%s" % (self.name, self.log_text()[-3000:]))
            time.sleep(0.1)

    def log_text(self) -> str:
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(_signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def get(self, path: str, params: dict) -> dict:
        url = self.url + path + "?" + _urlparse.urlencode(params, doseq=True)
        with urllib.request.urlopen(url, timeout=10) as r:
            return _json.loads(r.read())

    def query(self, q: str, at: Optional[float] = None) -> list[dict]:
        """An instant query's vector: [{"metric": {...}, "value": [ts, "v"]}]."""
        params = {"query": q}
        if at is not None:
            params["time"] = "%.3f" % at
        d = self.get("/api/v1/query", params)
        assert d["status"] == "success", d
        return d["data"]["result"]

    def samples(self, selector: str, start: float, end: float) -> dict[str, list[tuple[int, float]]]:
        """Every raw sample of the series matching `selector` between start
        and end (s): {series as sorted JSON labels: [(ts_ms, value)]},
        read with count_over_time-free range vectors so nothing is
        interpolated."""
        span = max(1, int(end - start) + 1)
        d = self.get("/api/v1/query", {"query": "%s[%ds]" % (selector, span), "time": "%.3f" % end})
        assert d["status"] == "success", d
        out = {}
        for r in d["data"]["result"]:
            if "values" not in r:
                continue  # a native histogram series: see histograms()
            key = _json.dumps(r["metric"], sort_keys=True)
            out[key] = [(int(round(float(t) * 1000)), float(v)) for t, v in r["values"]]
        return out

    def histograms(self, selector: str, start: float,
                   end: float) -> dict[str, list[tuple[int, float, float, list]]]:
        """Every native histogram sample of the series matching `selector`
        between start and end (s): {series: [(ts_ms, count, sum,
        [(lower, upper, count) of each populated bucket])]}, as the query API
        returns them (boundary_rule dropped, zero bucket included)."""
        span = max(1, int(end - start) + 1)
        d = self.get("/api/v1/query", {"query": "%s[%ds]" % (selector, span), "time": "%.3f" % end})
        assert d["status"] == "success", d
        out = {}
        for r in d["data"]["result"]:
            if "histograms" not in r:
                continue
            key = _json.dumps(r["metric"], sort_keys=True)
            out[key] = [(int(round(float(t) * 1000)), float(h["count"]), float(h["sum"]),
                         [(float(lo), float(hi), float(c)) for _, lo, hi, c in h.get("buckets", [])])
                        for t, h in r["histograms"]]
        return out


class Prometheus(Receiver):
    def __init__(self, binary: str, workdir: str, name: str = "prometheus", extra: tuple = ()):
        super().__init__(binary, workdir, name)
        self.extra = list(extra)
        self.config = os.path.join(self.workdir, "prometheus.yml")
        with open(self.config, "w") as f:
            f.write("global:\n  scrape_interval: 1m\n")

    def args(self) -> list[str]:
        return ["--config.file=" + self.config,
                "--storage.tsdb.path=" + os.path.join(self.workdir, "data"),
                "--web.listen-address=%s:%d" % (HOST, self.port),
                "--web.enable-remote-write-receiver", "--log.level=warn"] + self.extra


class VictoriaMetrics(Receiver):
    ready_path = "/health"

    def __init__(self, workdir: str):
        super().__init__(VICTORIA_METRICS, workdir, "victoria-metrics")

    def args(self) -> list[str]:
        return ["-httpListenAddr=%s:%d" % (HOST, self.port),
                "-storageDataPath=" + os.path.join(self.workdir, "data"),
                "-retentionPeriod=1", "-search.latencyOffset=0s", "-search.disableCache",
                "-loggerLevel=WARN"]

    def flush(self) -> None:
        with urllib.request.urlopen(self.url + "/internal/force_flush", timeout=10):
            pass

    def export(self, selector: str) -> dict[str, list[tuple[int, float]]]:
        """Every raw sample VictoriaMetrics holds for the series."""
        self.flush()
        url = self.url + "/api/v1/export?" + _urlparse.urlencode({"match[]": selector})
        out = {}
        with urllib.request.urlopen(url, timeout=20) as r:
            for line in r.read().splitlines():
                if not line.strip():
                    continue
                d = _json.loads(line)
                key = _json.dumps(d["metric"], sort_keys=True)
                vals = [float(v) if v is not None else float("nan") for v in d["values"]]
                out.setdefault(key, []).extend(zip(d["timestamps"], vals))
        for v in out.values():
            v.sort()
        return out


def prometheus3_bin() -> str:
    b = os.environ.get("PROMETHEUS3_BIN")
    if b:
        return b
    p = subprocess.run(["bash", PROMETHEUS3_SCRIPT], stdout=subprocess.PIPE, timeout=3000)
    if p.returncode != 0:
        raise AssertionError("could not build Prometheus 3 (scripts/servers/prometheus3.sh)")
    return p.stdout.decode().strip()


@pytest.fixture
def prometheus(tmp_path):
    p = Prometheus(PROMETHEUS2, str(tmp_path)).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def victoria(tmp_path):
    v = VictoriaMetrics(str(tmp_path)).start()
    try:
        yield v
    finally:
        v.stop()


@pytest.fixture
def start_prometheus3(tmp_path):
    started = []

    def start(**kw) -> Prometheus:
        p = Prometheus(prometheus3_bin(), str(tmp_path), name="prometheus3-%d" % len(started), **kw)
        started.append(p)
        return p.start()

    try:
        yield start
    finally:
        for p in started:
            p.stop()
