"""Helpers for drover's end-to-end tests: running drover as a real process,
reading its /metrics and its file output, and checking what arrived against
what kubelet_writer wrote."""

from __future__ import annotations

import collections
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

from kubelet_writer import Expected, parse_rfc3339nano

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


# ---- locating / building drover ------------------------------------------------------


def zig_path() -> Optional[str]:
    if os.environ.get("ZIG"):
        return os.environ["ZIG"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    pinned = os.path.join(cache, "drover-tools", "bin", "zig")
    if os.access(pinned, os.X_OK):
        return pinned
    return shutil.which("zig")


def find_or_build_drover() -> tuple[Optional[str], str]:
    """(path, "") or (None, why). DROVER_BIN overrides; otherwise
    zig-out/bin/drover, built with `zig build` when missing."""
    env = os.environ.get("DROVER_BIN")
    if env:
        if os.access(env, os.X_OK):
            return env, ""
        return None, "DROVER_BIN=%s is not an executable file" % env
    binary = REPO / "zig-out" / "bin" / "drover"
    if os.access(binary, os.X_OK):
        return str(binary), ""
    zig = zig_path()
    if not zig:
        return None, "zig-out/bin/drover is missing and no zig was found (run scripts/setup.sh)"
    try:
        p = subprocess.run([zig, "build"], cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=900)
    except subprocess.TimeoutExpired:
        return None, "zig build timed out"
    if p.returncode != 0 or not os.access(binary, os.X_OK):
        out = p.stdout.decode("utf-8", "replace")
        return None, "zig build failed (exit %d):\n%s" % (p.returncode, out[-6000:])
    return str(binary), ""


# ---- small utilities ----------------------------------------------------------------------


def report_logs_on_failure(request, sections: Callable[[], Iterable[tuple[str, str]]]) -> None:
    """When the test of this fixture request fails, its report gets the
    (title, log text) pairs `sections` returns then (conftest.py keeps the
    last lines of each)."""
    request.node.__dict__.setdefault("_e2e_log_sections", []).append(sections)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_until(pred: Callable[[], object], timeout: float, interval: float = 0.1,
               what: str = "condition") -> object:
    """Polls pred until it returns something truthy; raises AssertionError at
    the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def make_cert(directory, name: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, made
    by `openssl req`: (cert path, key path) in directory."""
    cert, key = os.path.join(str(directory), name + ".crt"), os.path.join(str(directory), name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    return cert, key


def yaml_str(s: str) -> str:
    """A YAML double-quoted scalar (JSON's escapes are YAML's)."""
    return json.dumps(s)


def tail_config(*, data_dir: str, paths: Iterable[str], out: str, port: int = 0,
                name: str = "pods", output_name: str = "out", extra_tail: str = "",
                agent_extra: str = "", extra: str = "", log_level: str = "debug") -> str:
    """A config with one tail input and one file output. extra_tail: more
    option lines for the input ("key: value" each, any indentation)."""
    tail_lines = "".join("    %s\n" % l.strip() for l in extra_tail.strip().splitlines() if l.strip())
    return (
        "agent:\n"
        "  data_dir: %s\n"
        "  http:\n"
        "    listen: %s\n"
        "  grace_period: 5s\n"
        "  log_level: %s\n"
        "%s"
        "inputs:\n"
        "  - name: %s\n"
        "    type: tail\n"
        "    paths: [%s]\n"
        "    read_from: head\n"
        "%s"
        "outputs:\n"
        "  - name: %s\n"
        "    type: file\n"
        "    match: %s\n"
        "    path: %s\n"
        "%s"
    ) % (yaml_str(data_dir), yaml_str("%s:%d" % (HOST, port)), log_level, agent_extra, name,
         ", ".join(yaml_str(p) for p in paths), tail_lines, output_name,
         name, yaml_str(out), extra)


# ---- drover as a process ---------------------------------------------------------------------


_PORT_RE = re.compile(r'msg="HTTP server listening".*?\bport=(\d+)')


class Drover:
    """One drover process at a time, restartable; every run's stderr is kept."""

    def __init__(self, binary: str, config: str, workdir: str, *, name: str = "drover",
                 args: Iterable[str] = (), env: Optional[dict] = None):
        self.binary = binary
        self.config = config
        self.workdir = workdir
        self.name = name
        self.args = list(args)
        self.env = env
        self.proc: Optional[subprocess.Popen] = None
        self.logs: list[str] = []
        self.port: Optional[int] = None
        self.runs = 0
        os.makedirs(workdir, exist_ok=True)

    # ---- life cycle ----

    @property
    def log_path(self) -> str:
        return self.logs[-1]

    def start(self, *extra_args: str) -> "Drover":
        assert not self.alive(), "drover %s is already running" % self.name
        self.runs += 1
        log = os.path.join(self.workdir, "%s-run%d.stderr" % (self.name, self.runs))
        out = os.path.join(self.workdir, "%s-run%d.stdout" % (self.name, self.runs))
        self.logs.append(log)
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        with open(log, "wb") as errf, open(out, "wb") as outf:
            self.proc = subprocess.Popen([self.binary, "-c", self.config, *self.args, *extra_args],
                                         stdin=subprocess.DEVNULL, stdout=outf, stderr=errf,
                                         cwd=self.workdir, env=env)
        self.port = None
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_text(self, run: int = -1) -> str:
        try:
            with open(self.logs[run], "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (IndexError, FileNotFoundError):
            return ""

    def all_logs(self) -> str:
        return "".join(self.log_text(i) for i in range(len(self.logs)))

    def wait_ready(self, timeout: float = 20.0) -> "Drover":
        """Waits for the HTTP port in the log, then for /readyz 200."""
        deadline = time.monotonic() + timeout
        while self.port is None:
            m = _PORT_RE.search(self.log_text())
            if m:
                self.port = int(m.group(1))
                break
            if not self.alive():
                raise AssertionError("drover exited (rc=%s) before listening:\n%s"
                                     % (self.proc.returncode, self.log_text()[-4000:]))
            if time.monotonic() > deadline:
                raise AssertionError("drover did not log its HTTP port within %.0fs:\n%s"
                                     % (timeout, self.log_text()[-4000:]))
            time.sleep(0.05)
        while True:
            try:
                status, _ = self.http("/readyz")
                if status == 200:
                    return self
            except OSError:
                pass
            if not self.alive():
                raise AssertionError("drover exited (rc=%s) before ready:\n%s"
                                     % (self.proc.returncode, self.log_text()[-4000:]))
            if time.monotonic() > deadline:
                raise AssertionError("drover not ready within %.0fs:\n%s"
                                     % (timeout, self.log_text()[-4000:]))
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        assert self.alive(), "drover %s is not running" % self.name
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("drover %s did not exit within %.0fs:\n%s"
                                 % (self.name, timeout, self.log_text()[-4000:]))

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; SIGKILL (and fail) past the timeout."""
        if self.proc is None:
            return 0
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError("drover %s ignored SIGTERM for %.0fs:\n%s"
                                 % (self.name, timeout, self.log_text()[-4000:]))

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        if self.alive():
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)

    def cleanup(self) -> None:
        if self.alive():
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    # ---- HTTP ----

    def http(self, path: str, timeout: float = 3.0) -> tuple[int, str]:
        assert self.port, "drover's port is not known yet (call wait_ready)"
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def metrics(self) -> "Metrics":
        status, body = self.http("/metrics")
        assert status == 200, "GET /metrics: %d %s" % (status, body[:200])
        return Metrics(body)

    def metric(self, metric_name: str, /, **labels: str) -> float:
        return self.metrics().get(metric_name, **labels)


_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def kill_at(d: "Drover", times: Iterable[float], rng) -> list[float]:
    """SIGKILLs drover at each of `times` (seconds from now, ascending),
    keeps it down for a moment drawn from rng (0 to 0.8 s) and starts it
    again, ready; returns when each kill happened, in seconds from the call."""
    t0 = time.monotonic()
    kills = []
    for kt in times:
        delay = kt - (time.monotonic() - t0)
        if delay > 0:
            time.sleep(delay)
        d.kill()
        assert d.proc.returncode == -signal.SIGKILL, d.proc.returncode
        kills.append(round(time.monotonic() - t0, 2))
        time.sleep(rng.uniform(0, 0.8))
        d.start().wait_ready()
    return kills


class Metrics:
    """Prometheus text format, parsed."""

    def __init__(self, text: str):
        self.text = text
        self.samples: list[tuple[str, dict, float]] = []
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = _SAMPLE_RE.match(line)
            if not m:
                continue
            labels = dict(_LABEL_RE.findall(m.group(3) or ""))
            try:
                v = float(m.group(4))
            except ValueError:
                continue
            self.samples.append((m.group(1), labels, v))

    def find(self, metric_name: str, /, **labels: str) -> list[tuple[dict, float]]:
        return [(l, v) for n, l, v in self.samples
                if n == metric_name and all(l.get(k) == want for k, want in labels.items())]

    def get(self, metric_name: str, /, **labels: str) -> float:
        """Sum of the matching series; 0 when there is none."""
        return sum(v for _, v in self.find(metric_name, **labels))

    def has(self, metric_name: str, /, **labels: str) -> bool:
        return bool(self.find(metric_name, **labels))


# ---- the output file ---------------------------------------------------------------------------


class OutputFile:
    """drover's NDJSON output, read incrementally. A line that does not parse
    (a record torn by SIGKILL, followed by the next run's records) is
    counted in `corrupt`; records after the tear on the same line are
    recovered."""

    def __init__(self, path: str):
        self.path = path
        self.offset = 0
        self.records: list[dict] = []
        self.corrupt: list[bytes] = []

    def read(self) -> list[dict]:
        """Parses the complete lines added since the last call; returns them."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        new = []
        for line in data[:end].split(b"\n"):
            new.extend(self._parse(line))
        self.records.extend(new)
        return new

    def _parse(self, line: bytes) -> list[dict]:
        try:
            return [json.loads(line)]
        except ValueError:
            pass
        self.corrupt.append(line[:300])
        # a torn record glued to the next run's first record
        at = line.rfind(b'{"time":"')
        if at > 0:
            try:
                return [json.loads(line[at:])]
            except ValueError:
                return []
        return []

    def count(self) -> int:
        self.read()
        return len(self.records)


# ---- checking delivery --------------------------------------------------------------------------


_ID_RE = re.compile(r"^seq=(\S+)")
K8S_FIELDS = ("namespace", "pod", "pod_uid", "container", "container_id")


def id_of(message: str) -> Optional[str]:
    m = _ID_RE.match(message)
    return m.group(1) if m else None


class Delivery:
    """What arrived compared with what was written."""

    def __init__(self, expected: list[Expected], records: list[dict], *, check_time: bool = True):
        self.expected = expected
        self.by_id: dict[str, Expected] = {}
        self.anon: collections.Counter = collections.Counter()
        for e in expected:
            if e.id is not None:
                assert e.id not in self.by_id, "duplicate id in the manifest: %s" % e.id
                self.by_id[e.id] = e
            else:
                self.anon[self._anon_key_e(e)] += 1
        self.seen: collections.Counter = collections.Counter()
        self.anon_seen: collections.Counter = collections.Counter()
        self.unexpected: list[dict] = []
        self.mismatches: list[str] = []
        self.n_mismatches = 0
        for r in records:
            msg = r.get("message")
            if not isinstance(msg, str):
                self._mismatch("record without a string message: %r" % (r,))
                continue
            rid = id_of(msg)
            e = self.by_id.get(rid) if rid is not None else None
            if e is None:
                k = self._anon_key_r(r)
                if rid is None and k in self.anon:
                    self.anon_seen[k] += 1
                else:
                    self.unexpected.append(r)
                continue
            self.seen[rid] += 1
            if self.seen[rid] == 1:
                self._compare(e, r, check_time)
        self.missing = [i for i in self.by_id if self.seen[i] == 0]
        self.duplicates = sum(n - 1 for n in self.seen.values() if n > 1)
        self.anon_missing = sum(max(0, n - self.anon_seen[k]) for k, n in self.anon.items())
        self.anon_duplicates = sum(max(0, n - self.anon[k]) for k, n in self.anon_seen.items())
        self.delivered = sum(1 for n in self.seen.values() if n) + sum(
            min(n, self.anon[k]) for k, n in self.anon_seen.items())

    @staticmethod
    def _anon_key_e(e: Expected) -> tuple:
        return (e.container_id, e.stream, e.text)

    @staticmethod
    def _anon_key_r(r: dict) -> tuple:
        return ((r.get("kubernetes") or {}).get("container_id"), r.get("stream"), r.get("message"))

    def _mismatch(self, s: str) -> None:
        self.n_mismatches += 1
        if len(self.mismatches) < 15:
            self.mismatches.append(s)

    def _compare(self, e: Expected, r: dict, check_time: bool) -> None:
        if r.get("message") != e.text:
            got, want = r.get("message"), e.text
            i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]),
                     min(len(got), len(want)))
            self._mismatch("%s: message differs at char %d (len got %d, want %d): got %r, want %r"
                           % (e.id, i, len(got), len(want), got[max(0, i - 20):i + 40],
                              want[max(0, i - 20):i + 40]))
        if r.get("stream") != e.stream:
            self._mismatch("%s: stream %r, want %r" % (e.id, r.get("stream"), e.stream))
        k = r.get("kubernetes") or {}
        for f in K8S_FIELDS:
            if k.get(f) != getattr(e, f):
                self._mismatch("%s: kubernetes.%s = %r, want %r" % (e.id, f, k.get(f), getattr(e, f)))
        if check_time:
            try:
                t = parse_rfc3339nano(r.get("time", ""))
            except Exception:
                t = None
            if t != e.time_ns:
                self._mismatch("%s: time %r (%s ns), want %d ns" % (e.id, r.get("time"), t, e.time_ns))

    # ---- reporting ----

    @property
    def total_expected(self) -> int:
        return len(self.by_id) + sum(self.anon.values())

    def missing_summary(self, limit: int = 12) -> str:
        by_key = collections.defaultdict(list)
        for i in self.missing:
            key, _, n = i.rpartition(":")
            by_key[key].append(int(n) if n.isdigit() else n)
        parts = []
        for key, ns in sorted(by_key.items()):
            ns = sorted(x for x in ns if isinstance(x, int))
            ranges, start, prev = [], None, None
            for n in ns:
                if start is None:
                    start = prev = n
                elif n == prev + 1:
                    prev = n
                else:
                    ranges.append((start, prev))
                    start = prev = n
            if start is not None:
                ranges.append((start, prev))
            txt = ",".join("%d" % a if a == b else "%d-%d" % (a, b) for a, b in ranges[:limit])
            if len(ranges) > limit:
                txt += ",..."
            parts.append("%s: %d missing [%s]" % (key, len(ns), txt))
        return "; ".join(parts)

    def summary(self) -> str:
        s = ("expected %d records (%d with ids), delivered %d distinct; missing %d (+%d without id); "
             "duplicates %d (+%d without id); unexpected %d; mismatched fields %d"
             % (self.total_expected, len(self.by_id), self.delivered, len(self.missing),
                self.anon_missing, self.duplicates, self.anon_duplicates, len(self.unexpected),
                self.n_mismatches))
        if self.missing:
            s += "\n  missing: " + self.missing_summary()
        if self.duplicates:
            dup_ids = [i for i, n in self.seen.items() if n > 1][:10]
            s += "\n  duplicated ids (first 10): %s" % ", ".join(dup_ids)
        if self.unexpected:
            s += "\n  unexpected (first 5): " + "; ".join(
                repr(r.get("message", r))[:160] for r in self.unexpected[:5])
        if self.mismatches:
            s += "\n  mismatches:\n    " + "\n    ".join(self.mismatches)
        return s

    def assert_exactly_once(self) -> None:
        assert (not self.missing and not self.anon_missing and not self.duplicates
                and not self.anon_duplicates and not self.unexpected
                and not self.n_mismatches), self.summary()

    def assert_nothing_lost(self) -> None:
        assert (not self.missing and not self.anon_missing and not self.unexpected
                and not self.n_mismatches), self.summary()


def wait_for_count(get: Callable[[], float], want: int, *, timeout: float, settle: float = 1.0,
                   what: str = "records") -> float:
    """Polls get() until it equals `want` (then waits `settle` seconds more to
    see late duplicates) or stops changing for 5 s while above `want`, or the
    timeout ends. Returns the last value; never raises: the caller checks."""
    deadline = time.monotonic() + timeout
    last, last_change = None, time.monotonic()
    while time.monotonic() < deadline:
        v = get()
        if v != last:
            last, last_change = v, time.monotonic()
        if v == want:
            time.sleep(settle)
            return get()
        if v > want and time.monotonic() - last_change > 5:
            return v
        time.sleep(0.2)
    return last if last is not None else get()


def run_writer_cli(args: list[str], *, timeout: float, log_path: str) -> subprocess.Popen:
    """Starts kubelet_writer.py as a process (stdout: its JSON summary, stderr: progress)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kubelet_writer.py")
    logf = open(log_path, "wb")
    p = subprocess.Popen([sys.executable, script, *args], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=logf)
    logf.close()
    return p


class WriterProcess:
    """kubelet_writer.py run as a process over a node root, with a manifest."""

    def __init__(self, root: str, workdir: str, *, seed: int, rate: float, duration: float,
                 pods: int = 2, containers: int = 2, docker: int = 1, max_size: int = 512 * 1024,
                 max_files: int = 5, restart_at: Iterable[float] = (), link_remove_delay: float = 5.0,
                 mix: Optional[dict] = None):
        self.root = root
        self.manifest_path = os.path.join(workdir, "manifest-%d.ndjson" % seed)
        self.log_path = os.path.join(workdir, "writer-%d.log" % seed)
        mix = DEFAULT_MIX if mix is None else mix
        self.args = ["--root", root, "--seed", str(seed), "--rate", str(rate),
                     "--duration", str(duration), "--pods", str(pods), "--containers", str(containers),
                     "--docker", str(docker), "--max-size", str(max_size), "--max-files", str(max_files),
                     "--link-remove-delay", str(link_remove_delay), "--manifest", self.manifest_path]
        for t in restart_at:
            self.args += ["--restart-at", str(t)]
        for k, v in mix.items():
            self.args += ["--" + k.replace("_", "-"), str(v)]
        self.duration = duration
        self.proc: Optional[subprocess.Popen] = None
        self.summary: dict = {}

    def start(self) -> subprocess.Popen:
        self.proc = run_writer_cli(self.args, timeout=self.duration + 60, log_path=self.log_path)
        return self.proc

    def finish(self, timeout: Optional[float] = None) -> list:
        """Waits for the writer to end; returns the manifest's records."""
        from kubelet_writer import Manifest
        assert self.proc is not None
        try:
            out, _ = self.proc.communicate(timeout=timeout or self.duration + 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("kubelet_writer did not finish in time")
        assert self.proc.returncode == 0, "kubelet_writer failed (%d):\n%s" % (
            self.proc.returncode, open(self.log_path, errors="replace").read()[-3000:])
        self.summary = json.loads(out.decode().strip().splitlines()[-1])
        return Manifest.load(self.manifest_path)


DEFAULT_MIX = {"stderr": 0.2, "long": 0.002, "unicode": 0.01, "invalid_utf8": 0.005,
               "binary": 0.005, "empty": 0.005, "interleave": 0.01, "torn": 0.01}


def rss_bytes(pid: int) -> int:
    """A process's resident set (VmRSS of /proc/<pid>/status) in bytes; 0
    when the process is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return 0
