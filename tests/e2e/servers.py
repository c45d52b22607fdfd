"""Real servers for drover's end-to-end tests (see ../shared/SERVERS.md).

Grafana Loki: `LokiServer` runs one Loki process with a fast-starting test
config (ready in about 1.5 s), on 127.0.0.1 ports of its own, with its data in
a directory of the test; it can be stopped and started again on the same
ports and data. The binary is $LOKI_BIN, else the one scripts/servers/loki.sh
prints (built once, cached outside the checkout).

Fixtures (import them into a test module: `from servers import loki`):

  loki_bin    session: the Loki binary; the test fails (not skips) without one
  loki        a started, ready LokiServer with the default test config
  start_loki  start_loki(limits={...}, server={...}, extra="yaml", start=True) -> LokiServer,
              for tests that need other limits or several servers

Every Loki a fixture starts is stopped by its own pid at the end of the test
(SIGTERM, then SIGKILL), pass or fail; when a test fails, the tail of each
Loki's log is attached to its report.
"""

from __future__ import annotations

import dataclasses
import gzip as gzip_mod
import http.client
import json
import os
import signal
import subprocess
import time
import urllib.parse
from typing import Any, Optional

import pytest

from drover_e2e import HOST, REPO, Metrics, free_port, report_logs_on_failure

LOKI_VERSION = "3.7.8"
LOKI_SCRIPT = REPO / "scripts" / "servers" / "loki.sh"
LOKI_BUILD_TIMEOUT = 1800  # a cold build takes 5-10 minutes on 2 cores
LOKI_MAX_LIMIT = 5000  # Loki's max_entries_limit_per_query default
MAX_LINE_SIZE = 256 * 1024  # Loki's max_line_size default: longer entries answer 400


# ---- the binary ------------------------------------------------------------------------------


def find_or_build_loki() -> tuple[Optional[str], str]:
    """(path, "") or (None, why). $LOKI_BIN overrides; otherwise
    scripts/servers/loki.sh, which returns the cached binary at once or
    builds it (minutes, once per machine)."""
    env = os.environ.get("LOKI_BIN")
    if env:
        if os.access(env, os.X_OK):
            return env, ""
        return None, "LOKI_BIN=%s is not an executable file" % env
    try:
        p = subprocess.run(["bash", str(LOKI_SCRIPT)], cwd=REPO, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=LOKI_BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, "%s did not finish within %ds" % (LOKI_SCRIPT, LOKI_BUILD_TIMEOUT)
    err = p.stderr.decode("utf-8", "replace")
    lines = p.stdout.decode("utf-8", "replace").strip().splitlines()
    path = lines[-1] if lines else ""
    if p.returncode != 0 or not path or not os.access(path, os.X_OK):
        return None, "%s failed (exit %d):\n%s" % (LOKI_SCRIPT, p.returncode, err[-8000:])
    return path, ""


# ---- results ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LokiEntry:
    """One log entry read back. With categorize_labels, `labels` are the
    stream's own labels and `metadata` the entry's structured metadata;
    without it Loki merges the metadata into `labels`."""

    ts: int  # nanoseconds
    line: str
    labels: dict
    metadata: dict = dataclasses.field(default_factory=dict)
    parsed: dict = dataclasses.field(default_factory=dict)

    def key(self) -> tuple:
        return (tuple(sorted(self.labels.items())), self.ts, self.line,
                tuple(sorted(self.metadata.items())))


class LokiError(AssertionError):
    """An HTTP answer other than the one expected."""

    def __init__(self, method: str, path: str, status: int, body: str):
        super().__init__("%s %s: HTTP %d: %s" % (method, path[:300], status, body[:2000]))
        self.status = status
        self.body = body


# ---- the server --------------------------------------------------------------------------------


DEFAULT_LIMITS: dict[str, Any] = {
    "allow_structured_metadata": True,
    "ingestion_rate_mb": 1024,
    "ingestion_burst_size_mb": 1024,
    "per_stream_rate_limit": "1GB",
    "per_stream_rate_limit_burst": "1GB",
    "shard_streams": {"enabled": False},  # else a busy stream splits into __stream_shard__ streams
    "discover_service_name": [],  # else Loki adds a service_name label
    "discover_log_levels": False,  # else Loki adds detected_level metadata
    "reject_old_samples": False,
}


def _yaml(value: Any, indent: int) -> str:
    """A small YAML writer for the config: dicts, lists, scalars (strings
    are written as JSON strings, which YAML reads back as the same)."""
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return " {}\n"
        out = "\n"
        for k, v in value.items():
            out += "%s%s:%s" % (pad, k, _yaml(v, indent + 2))
        return out
    if isinstance(value, (list, tuple)):
        return " [%s]\n" % ", ".join(_yaml(v, 0).strip() for v in value)
    if isinstance(value, bool):
        return " %s\n" % ("true" if value else "false")
    if isinstance(value, (int, float)):
        return " %s\n" % value
    return " %s\n" % json.dumps(str(value))


def loki_config(*, http_port: int, grpc_port: int, data_dir: str,
                limits: Optional[dict] = None, extra: str = "", log_level: str = "info",
                server: Optional[dict] = None) -> str:
    """The test config of SERVERS.md. `limits` overrides or adds
    limits_config keys; `server` adds server keys (such as
    grpc_server_max_recv_msg_size, 4 MiB by default: the largest push the
    distributor can hand to the ingester); `extra` is YAML appended at the
    top level (sections not otherwise written)."""
    lim = dict(DEFAULT_LIMITS)
    lim.update(limits or {})
    cfg = {
        "auth_enabled": False,
        "server": {
            "http_listen_address": HOST,
            "http_listen_port": http_port,
            "grpc_listen_address": HOST,
            "grpc_listen_port": grpc_port,
            "log_level": log_level,
            # a stop waits this long at most for requests still open (a push
            # caught by the shutdown); dskit's default is 30 s
            "graceful_shutdown_timeout": "5s",
            **(server or {}),
        },
        "common": {
            "path_prefix": data_dir,
            "instance_addr": HOST,
            "replication_factor": 1,
            "ring": {"kvstore": {"store": "inmemory"}},
            "storage": {"filesystem": {
                "chunks_directory": os.path.join(data_dir, "chunks"),
                "rules_directory": os.path.join(data_dir, "rules"),
            }},
        },
        "schema_config": {"configs": "@SCHEMA@"},
        "frontend": {"scheduler_dns_lookup_period": "1s"},
        "ingester": {
            "lifecycler": {"min_ready_duration": "0s"},
            # else entries older than ~2h40m cannot be queried until flushed
            "query_store_max_look_back_period": -1,
        },
        "limits_config": lim,
        "analytics": {"reporting_enabled": False},
    }
    text = "".join("%s:%s" % (k, _yaml(v, 2)) for k, v in cfg.items())
    schema = ("\n"
              "    - from: 2024-01-01\n"
              "      store: tsdb\n"
              "      object_store: filesystem\n"
              "      schema: v13\n"
              "      index:\n"
              "        prefix: index_\n"
              "        period: 24h\n")
    text = text.replace(' "@SCHEMA@"\n', schema)
    if extra:
        text += extra.rstrip("\n") + "\n"
    return text


class LokiServer:
    """One Loki process at a time over one data directory; stop() and
    start() keep the ports and the data (the ingester's WAL is replayed)."""

    def __init__(self, binary: str, workdir: str, *, name: str = "loki",
                 limits: Optional[dict] = None, extra: str = "", log_level: str = "info",
                 server: Optional[dict] = None, ready_timeout: float = 60.0):
        self.binary = binary
        self.workdir = os.path.abspath(workdir)
        self.name = name
        self.data_dir = os.path.join(self.workdir, "data")
        self.config_path = os.path.join(self.workdir, "loki.yaml")
        self.http_port = free_port()
        self.grpc_port = free_port()
        while self.grpc_port == self.http_port:
            self.grpc_port = free_port()
        self.ready_timeout = ready_timeout
        self.proc: Optional[subprocess.Popen] = None
        self.logs: list[str] = []
        self.runs = 0
        os.makedirs(self.data_dir, exist_ok=True)
        with open(self.config_path, "w") as f:
            f.write(loki_config(http_port=self.http_port, grpc_port=self.grpc_port,
                                data_dir=self.data_dir, limits=limits, extra=extra,
                                log_level=log_level, server=server))

    @property
    def url(self) -> str:
        return "http://%s:%d" % (HOST, self.http_port)

    @property
    def push_url(self) -> str:
        return self.url + "/loki/api/v1/push"

    # ---- life cycle ----

    def start(self, wait: bool = True) -> "LokiServer":
        assert not self.alive(), "loki %s is already running (pid %d)" % (self.name, self.proc.pid)
        self.runs += 1
        log = os.path.join(self.workdir, "%s-run%d.log" % (self.name, self.runs))
        self.logs.append(log)
        with open(log, "wb") as logf:
            self.proc = subprocess.Popen(
                [self.binary, "-config.file=" + self.config_path],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                cwd=self.workdir)
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.kill()
                raise
        return self

    def wait_ready(self, timeout: Optional[float] = None) -> "LokiServer":
        """GET /ready until 200, bounded; fails early if Loki exits. (The
        first query after a start can still take ~1-2 s more while the
        query frontend finds its scheduler.)"""
        timeout = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            if not self.alive():
                raise AssertionError("loki %s exited (rc=%s) before ready:\n%s"
                                     % (self.name, self.proc.returncode if self.proc else None,
                                        self.log_text()[-6000:]))
            try:
                status, body = self.request("GET", "/ready", timeout=2.0)
                if status == 200:
                    return self
                last = "%d %s" % (status, body.strip()[:200])
            except OSError as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise AssertionError("loki %s not ready within %.0fs (last answer: %s):\n%s"
                                     % (self.name, timeout, last, self.log_text()[-6000:]))
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM to Loki's own pid and wait; SIGKILL past the timeout
        (and fail: a Loki that ignores SIGTERM would lose its WAL tail)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("loki %s ignored SIGTERM for %.0fs:\n%s"
                                 % (self.name, timeout, self.log_text()[-4000:]))

    def kill(self) -> None:
        """SIGKILL and reap (a crash: what is not yet in the WAL is lost)."""
        if self.alive():
            self.proc.kill()
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def restart(self, down_for: float = 0.0) -> "LokiServer":
        """stop(), stay down `down_for` seconds, start() on the same ports and data."""
        self.stop()
        if down_for > 0:
            time.sleep(down_for)
        return self.start()

    def cleanup(self) -> None:
        """For teardown: never raises, always leaves no process behind."""
        try:
            self.stop(timeout=20.0)
        except BaseException:
            self.kill()

    def log_text(self, run: int = -1) -> str:
        try:
            with open(self.logs[run], "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (IndexError, FileNotFoundError):
            return ""

    # ---- HTTP ----

    def request(self, method: str, path: str, body: Optional[bytes] = None,
                headers: Optional[dict] = None, timeout: float = 30.0) -> tuple[int, str]:
        conn = http.client.HTTPConnection(HOST, self.http_port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def get_json(self, path: str, params: dict, headers: Optional[dict] = None,
                 timeout: float = 30.0) -> dict:
        full = path + "?" + urllib.parse.urlencode(params)
        status, body = self.request("GET", full, headers=headers, timeout=timeout)
        if status != 200:
            raise LokiError("GET", full, status, body)
        return json.loads(body)

    # ---- push ----

    def push_json(self, streams: list[dict], *, gzip: bool = False, check: bool = True,
                  timeout: float = 30.0) -> tuple[int, str]:
        """POST /loki/api/v1/push with a JSON body. `streams` in Loki's shape:
        [{"stream": {label: value}, "values": [[ts_ns, line] or
        [ts_ns, line, {metadata}], ...]}]; timestamps may be ints. Returns
        (status, body); with check, anything but 204 raises LokiError."""
        norm = []
        for s in streams:
            vals = []
            for v in s["values"]:
                v = list(v)
                v[0] = str(v[0])
                vals.append(v)
            norm.append({"stream": s["stream"], "values": vals})
        body = json.dumps({"streams": norm}).encode()
        headers = {"Content-Type": "application/json"}
        if gzip:
            body = gzip_mod.compress(body)
            headers["Content-Encoding"] = "gzip"
        status, text = self.request("POST", "/loki/api/v1/push", body=body, headers=headers,
                                    timeout=timeout)
        if check and status != 204:
            raise LokiError("POST", "/loki/api/v1/push", status, text)
        return status, text

    # ---- read back ----

    def query_range(self, query: str, start_ns: int, end_ns: int, limit: Optional[int] = None,
                    direction: str = "forward", categorize_labels: bool = True,
                    timeout: float = 30.0, page_size: int = 0) -> list[LokiEntry]:
        """Every entry of a log query in [start_ns, end_ns) (Loki's own
        bounds), in time order of `direction`; with limit, at most that many.
        Pages by time past Loki's 5000 a query: the next page starts at the
        last timestamp seen, and the entries at that timestamp already
        returned are skipped (so nothing is returned twice; more than 5000
        entries with one timestamp cannot be paged and raise). page_size
        (default Loki's most, 5000) keeps pages of huge lines under the 4 MiB
        a querier takes from an ingester in one message."""
        page_size = page_size or LOKI_MAX_LIMIT
        assert direction in ("forward", "backward")
        forward = direction == "forward"
        headers = {"X-Loki-Response-Encoding-Flags": "categorize-labels"} if categorize_labels else {}
        out: list[LokiEntry] = []
        lo, hi = int(start_ns), int(end_ns)
        at_edge: set = set()  # keys of the entries already returned at the page edge timestamp
        while lo < hi and (limit is None or len(out) < limit):
            data = self.get_json("/loki/api/v1/query_range", {
                "query": query, "start": str(lo), "end": str(hi), "limit": str(page_size),
                "direction": direction}, headers=headers, timeout=timeout)["data"]
            if data.get("resultType") != "streams":
                raise AssertionError("query_range %r: not a log query (resultType %r)"
                                     % (query, data.get("resultType")))
            page = _entries(data)
            page.sort(key=lambda e: e.ts, reverse=not forward)
            out.extend(e for e in page if e.key() not in at_edge)
            if len(page) < page_size:
                break  # the range is exhausted
            edge = page[-1].ts
            if edge == (lo if forward else hi - 1):
                raise AssertionError("query_range %r: %d or more entries at timestamp %d; "
                                     "cannot page by time" % (query, page_size, edge))
            # Loki's range is [start, end): the next page includes `edge` again
            at_edge = {e.key() for e in page if e.ts == edge}
            if forward:
                lo = edge
            else:
                hi = edge + 1
        if limit is not None:
            out = out[:limit]
        return out

    def query(self, query: str, time_ns: int, timeout: float = 30.0) -> list[dict]:
        """An instant metric query; returns data.result (vector samples)."""
        return self.get_json("/loki/api/v1/query", {"query": query, "time": str(int(time_ns))},
                             timeout=timeout)["data"]["result"]

    def count(self, selector: str, start_ns: int, end_ns: int) -> int:
        """Entries of a log selector in (end - range, end] with range whole
        seconds: sum(count_over_time(SELECTOR[Ns])) at end_ns, N rounded up.
        Exact, and fast for millions of entries; for an exact window use
        timestamps not on its edges (or len(query_range(...)))."""
        secs = max(1, -(-(int(end_ns) - int(start_ns)) // 1_000_000_000))
        res = self.query("sum(count_over_time(%s[%ds]))" % (selector, secs), end_ns)
        return int(float(res[0]["value"][1])) if res else 0

    def wait_for_count(self, selector: str, start_ns: int, end_ns: int, want: int, *,
                       timeout: float, interval: float = 0.5) -> int:
        """Polls count() until it reaches `want` or the timeout ends; returns
        the last count (the caller checks)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                n = self.count(selector, start_ns, end_ns)
            except (OSError, LokiError):
                n = -1
            if n >= want or time.monotonic() >= deadline:
                return n
            time.sleep(interval)

    def series(self, match: str, start_ns: int, end_ns: int) -> list[dict]:
        """The label sets of the streams matching `match` in the range."""
        return self.get_json("/loki/api/v1/series", {"match[]": match, "start": str(int(start_ns)),
                                                     "end": str(int(end_ns))})["data"]

    def metrics(self) -> Metrics:
        status, body = self.request("GET", "/metrics")
        assert status == 200, "loki GET /metrics: %d %s" % (status, body[:200])
        return Metrics(body)


def _entries(data: dict) -> list[LokiEntry]:
    out = []
    categorized = "categorize-labels" in (data.get("encodingFlags") or [])
    for stream in data.get("result", []):
        labels = dict(stream.get("stream") or {})
        for v in stream.get("values", []):
            meta, parsed = {}, {}
            if categorized and len(v) > 2 and v[2]:
                meta = dict(v[2].get("structuredMetadata") or {})
                parsed = dict(v[2].get("parsed") or {})
            out.append(LokiEntry(int(v[0]), v[1], labels, meta, parsed))
    return out


# ---- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def loki_bin() -> str:
    """The Loki binary. Session-scoped, so a first build happens before any
    test's watchdog starts. No binary: the test fails with the reason."""
    path, why = find_or_build_loki()
    if not path:
        pytest.fail("cannot get Loki %s: %s" % (LOKI_VERSION, why), pytrace=False)
    return path


@pytest.fixture
def start_loki(request, loki_bin, tmp_path):
    """start_loki(name=..., limits={...}, server={...}, extra="...", start=True) -> LokiServer
    (started and ready unless start=False). All are stopped at teardown."""
    servers: list[LokiServer] = []
    report_logs_on_failure(request, lambda: [
        ("loki %s run %d log (%s)" % (srv.name, i + 1, path), srv.log_text(i))
        for srv in servers for i, path in enumerate(srv.logs)])

    def start(*, name: str = "loki", start: bool = True, **kwargs) -> LokiServer:
        srv = LokiServer(loki_bin, str(tmp_path / ("loki-" + name)), name=name, **kwargs)
        servers.append(srv)
        if start:
            srv.start()
        return srv

    try:
        yield start
    finally:
        for srv in servers:
            srv.cleanup()


@pytest.fixture
def loki(start_loki) -> LokiServer:
    """A started, ready Loki with the test config; stopped at teardown."""
    return start_loki()
