"""The http output against a receiver written here (http.server on
127.0.0.1): every format and compression delivers every written line exactly
once with the fields the file output writes; 500 is retried until delivered;
503 with Retry-After makes drover wait and send one request at a time; 400
drops the batch (counted, never resent); a server that never answers is timed
out and retried."""

from __future__ import annotations

import collections
import gzip
import http.server
import json
import struct
import threading
import time
from typing import Callable, Optional

import pytest

from drover_e2e import HOST, Delivery, OutputFile, tail_config, wait_until, yaml_str
from kubelet_writer import KubeletWriter, Mix

try:
    import msgpack  # type: ignore
except ImportError:  # the decoder below is used instead
    msgpack = None

try:
    import zstandard  # type: ignore
except ImportError:
    zstandard = None

MIX = Mix(stderr=0.3, long=0.01, invalid_utf8=0.03, binary=0.02, unicode=0.03, empty=0.02,
          interleave=0.02, torn=0.0)

CONTENT_TYPES = {"ndjson": "application/x-ndjson", "json_array": "application/json",
                 "msgpack": "application/msgpack"}


# ---- decoding bodies ---------------------------------------------------------------------------


def _mp_decode(data: bytes) -> list:
    """A tiny msgpack reader for what drover writes (str, map, array), used
    when the msgpack package is missing. Strings must be valid UTF-8."""
    out, i = [], 0

    def length(n: int) -> int:
        nonlocal i
        v = int.from_bytes(data[i:i + n], "big")
        i += n
        return v

    def value():
        nonlocal i
        t = data[i]
        i += 1
        if 0xA0 <= t <= 0xBF or t in (0xD9, 0xDA, 0xDB):
            n = t & 0x1F if t <= 0xBF else length({0xD9: 1, 0xDA: 2, 0xDB: 4}[t])
            s = data[i:i + n]
            assert len(s) == n, "truncated str"
            i += n
            return s.decode("utf-8")  # strict: drover must have repaired it
        if 0x80 <= t <= 0x8F or t in (0xDE, 0xDF):
            n = t & 0x0F if t <= 0x8F else length(2 if t == 0xDE else 4)
            return {value(): value() for _ in range(n)}
        if 0x90 <= t <= 0x9F or t in (0xDC, 0xDD):
            n = t & 0x0F if t <= 0x9F else length(2 if t == 0xDC else 4)
            return [value() for _ in range(n)]
        raise AssertionError("unexpected msgpack type 0x%02x at %d" % (t, i - 1))

    while i < len(data):
        out.append(value())
    return out


def decode_records(body: bytes, content_type: str, encoding: Optional[str]) -> list[dict]:
    if encoding == "gzip":
        body = gzip.decompress(body)
    elif encoding == "zstd":
        body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
    else:
        assert encoding is None, "unexpected Content-Encoding %r" % encoding
    if content_type == CONTENT_TYPES["ndjson"]:
        assert body.endswith(b"\n"), body[-100:]
        return [json.loads(line) for line in body.split(b"\n")[:-1]]
    if content_type == CONTENT_TYPES["json_array"]:
        recs = json.loads(body)
        assert isinstance(recs, list) and recs, "not a non-empty JSON array: %r" % body[:200]
        return recs
    if content_type == CONTENT_TYPES["msgpack"]:
        recs = _mp_decode(body)
        if msgpack is not None:  # the real decoder agrees (and checks the fallback)
            assert _unpack_all(body) == recs
        assert all(isinstance(r, dict) for r in recs), "a msgpack item is not a map"
        return recs
    raise AssertionError("unexpected Content-Type %r" % content_type)


def _unpack_all(body: bytes) -> list:
    u = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=max(len(body), 1 << 20))
    u.feed(body)
    return list(u)


# ---- the receiver --------------------------------------------------------------------------------


class Request:
    def __init__(self, method: str, path: str, headers, body: bytes, t_arrival: float,
                 concurrent: int):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.t_arrival = t_arrival
        self.concurrent = concurrent  # requests in the handler at arrival, this one included
        self.status: Optional[int] = None
        self.t_answer: Optional[float] = None
        self._records: Optional[list[dict]] = None

    @property
    def records(self) -> list[dict]:
        if self._records is None:
            self._records = decode_records(self.body, self.headers.get("Content-Type"),
                                           self.headers.get("Content-Encoding"))
        return self._records


# decide(request, index) -> (status, extra headers) or None to hang
Decide = Callable[[Request, int], Optional[tuple[int, dict]]]


class Receiver:
    """An HTTP server in a thread that records every request and answers as
    `decide` says."""

    HANG_LIMIT = 20.0

    def __init__(self, decide: Optional[Decide] = None):
        self.decide = decide or (lambda req, i: (200, {}))
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.inflight = 0
        self.release = threading.Event()
        rx = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with rx.lock:
                    rx.inflight += 1
                    req = Request(self.command, self.path, self.headers, body, time.monotonic(),
                                  rx.inflight)
                    index = len(rx.requests)
                    rx.requests.append(req)
                try:
                    answer = rx.decide(req, index)
                    if answer is None:  # hang: never answer, then drop the connection
                        rx.release.wait(rx.HANG_LIMIT)
                        self.close_connection = True
                        return
                    status, headers = answer
                    payload = b"" if status < 300 else b"refused: \"status\" %d\n" % status
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    req.status = status
                    req.t_answer = time.monotonic()
                finally:
                    with rx.lock:
                        rx.inflight -= 1

            do_POST = _handle
            do_PUT = _handle

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://%s:%d/ingest" % (HOST, self.port)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def snapshot(self) -> list[Request]:
        with self.lock:
            return list(self.requests)

    def accepted(self) -> list[Request]:
        return [r for r in self.snapshot() if r.status is not None and 200 <= r.status < 300]

    def accepted_records(self) -> list[dict]:
        return [rec for r in self.accepted() for rec in r.records]


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(decide: Optional[Decide] = None) -> Receiver:
        r = Receiver(decide)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


# ---- the node and drover -------------------------------------------------------------------------


def make_node(root, seed: int, lines: int) -> KubeletWriter:
    w = KubeletWriter(str(root), seed=seed, max_size=64 * 1024, max_files=50,
                      link_remove_delay=3600)
    for p in range(2):
        w.add_container("ns-%d" % p, "pod-%d" % p, "app")
    w.add_container("legacy", "dock", "main", fmt="docker")
    w.write_n(lines, MIX)
    return w


def http_output(url: str, **opts: str) -> str:
    """An http output entry for tail_config's `extra`."""
    lines = ["  - name: web", "    type: http", "    match: pods", "    url: %s" % yaml_str(url)]
    defaults = {"batch_max_bytes": "16KiB", "batch_wait": "200ms", "retry_min": "200ms",
                "retry_max": "1s"}
    defaults.update(opts)
    lines += ["    %s: %s" % (k, v) for k, v in defaults.items()]
    return "\n".join(lines) + "\n"


def start(start_drover, tmp_path, w: KubeletWriter, url: str, **opts: str):
    out = tmp_path / "out.ndjson"
    cfg = tmp_path / "drover.yaml"
    cfg.write_text(tail_config(data_dir=str(tmp_path / "data"),
                               paths=[str(tmp_path / "node" / "containers" / "*.log")],
                               out=str(out), extra=http_output(url, **opts)))
    return start_drover(str(cfg)).wait_ready(), OutputFile(str(out))


def canonical(records: list[dict]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in records)


def wait_delivered(rx: Receiver, n: int, timeout: float) -> list[dict]:
    wait_until(lambda: len(rx.accepted_records()) >= n, timeout,
               what="%d records accepted by the receiver (have %d)" % (n, len(rx.accepted_records())))
    time.sleep(0.5)  # late duplicates would show now
    return rx.accepted_records()


# ---- every format and compression ----------------------------------------------------------------


FORMATS = ["ndjson", "json_array", "msgpack"]
COMPRESSIONS = ["none", "gzip", "zstd"]


def _combo(fmt: str, comp: str):
    marks = [pytest.mark.time_limit(90)]
    if (fmt, comp) == ("msgpack", "gzip"):
        marks.append(pytest.mark.sanitizer)
    return pytest.param(fmt, comp, marks=marks, id="%s-%s" % (fmt, comp))


@pytest.mark.parametrize("fmt,comp", [_combo(f, c) for f in FORMATS for c in COMPRESSIONS])
def test_formats_deliver_exactly_once(start_drover, receiver, tmp_path, fmt, comp):
    if comp == "zstd" and zstandard is None:
        pytest.skip("the zstandard package is not installed (pip install zstandard): "
                    "Python's standard library cannot decompress zstd")
    w = make_node(tmp_path / "node", seed=11, lines=1500)
    n = len(w.manifest.records)
    rx = receiver()
    method = "PUT" if fmt == "json_array" else "POST"
    d, out = start(start_drover, tmp_path, w, rx.url, format=fmt, compression=comp, method=method,
                   headers='["X-Drover-Test: yes"]')
    got = wait_delivered(rx, n, timeout=45)
    wait_until(lambda: out.count() >= n, 20, what="the file output")
    m = d.metrics()
    assert d.stop() == 0

    reqs = rx.snapshot()
    assert len(reqs) > 3, "expected several batches, got %d requests" % len(reqs)
    for r in reqs:
        assert r.status == 200
        assert r.method == method and r.path == "/ingest"
        assert r.headers.get("Content-Type") == CONTENT_TYPES[fmt]
        assert r.headers.get("Content-Encoding") == (None if comp == "none" else comp)
        assert r.headers.get_all("Content-Type") == [CONTENT_TYPES[fmt]]
        assert r.headers.get("X-Drover-Test") == "yes"
    Delivery(w.manifest.records, got).assert_exactly_once()
    # the very records the file output wrote, field for field
    assert canonical(got) == canonical(out.records)
    assert m.get("drover_output_records_total", name="web") == n
    assert m.get("drover_output_requests_total", name="web", code="200") == len(reqs)
    assert m.get("drover_output_requests_total", name="web") == len(reqs)
    assert m.get("drover_output_request_bytes_total", name="web") == sum(len(r.body) for r in reqs)
    assert m.get("drover_dropped_records_total", name="web") == 0
    bad = sum(1 for e in w.manifest.records if e.msg.decode("utf-8", "replace").encode() != e.msg)
    assert bad > 0
    assert m.get("drover_output_invalid_utf8_records_total", name="web") == bad


# ---- failures ------------------------------------------------------------------------------------


@pytest.mark.time_limit(90)
def test_500_is_retried_until_delivered(start_drover, receiver, tmp_path):
    w = make_node(tmp_path / "node", seed=12, lines=600)
    n = len(w.manifest.records)
    rx = receiver(lambda req, i: (500, {}) if i < 3 else (200, {}))
    d, _ = start(start_drover, tmp_path, w, rx.url)
    got = wait_delivered(rx, n, timeout=45)
    m = d.metrics()
    assert d.stop() == 0
    Delivery(w.manifest.records, got).assert_exactly_once()
    failed = [r for r in rx.snapshot() if r.status == 500]
    assert len(failed) == 3
    # what the failed requests carried came again later
    later = {json.dumps(x, sort_keys=True) for r in rx.accepted() for x in r.records}
    for r in failed:
        assert all(json.dumps(x, sort_keys=True) in later for x in r.records)
    assert m.get("drover_output_requests_total", name="web", code="500") == 3
    assert m.get("drover_output_retries_total", name="web") >= 3
    assert m.get("drover_dropped_records_total", name="web") == 0


@pytest.mark.time_limit(90)
def test_503_retry_after_waits_and_sends_one_at_a_time(start_drover, receiver, tmp_path):
    w = make_node(tmp_path / "node", seed=13, lines=1500)
    n = len(w.manifest.records)
    fail_until = []

    def decide(req: Request, i: int):
        if not fail_until:
            fail_until.append(req.t_arrival + 6.0)
        if req.t_arrival < fail_until[0]:
            time.sleep(0.3)  # slow refusals: requests sent together overlap here
            return 503, {"Retry-After": "2"}
        return 200, {}

    rx = receiver(decide)
    d, _ = start(start_drover, tmp_path, w, rx.url, max_inflight="4", batch_max_bytes="4KiB",
                 batch_wait="0s")
    got = wait_delivered(rx, n, timeout=60)
    assert d.stop() == 0
    Delivery(w.manifest.records, got).assert_exactly_once()

    reqs = rx.snapshot()
    failing = [r for r in reqs if r.status == 503]
    first = failing[0].t_arrival
    print("\n503 timeline (s, status, in flight): %s" % ", ".join(
        "%.2f/%s/%d" % (r.t_arrival - first, r.status, r.concurrent) for r in reqs[:14]))
    burst = [r for r in failing if r.t_arrival < first + 0.5]
    after = [r for r in reqs if r.t_arrival >= first + 0.5 and r.t_arrival < fail_until[0] + 0.5]
    assert after, "no request after the first refusals"
    assert max(r.concurrent for r in burst) >= 2, "drover should send in parallel while healthy"
    # nothing comes back before Retry-After has passed ...
    assert after[0].t_arrival - max(r.t_answer for r in burst) >= 1.9, [
        round(r.t_arrival - first, 2) for r in reqs[:12]]
    # ... and while failing, one request at a time, each 2 s after the last answer
    for prev, cur in zip(after, after[1:]):
        if prev.status != 503:
            break
        assert cur.concurrent == 1, "%d requests in flight while failing" % cur.concurrent
        assert cur.t_arrival - prev.t_answer >= 1.9, (prev.t_answer - first, cur.t_arrival - first)
    assert any(r.status == 503 for r in after), "the failure should have lasted past one retry"


@pytest.mark.time_limit(90)
def test_400_drops_the_batch_once(start_drover, receiver, tmp_path):
    w = make_node(tmp_path / "node", seed=14, lines=600)
    n = len(w.manifest.records)
    rx = receiver(lambda req, i: (400, {}) if i == 0 else (200, {}))
    d, _ = start(start_drover, tmp_path, w, rx.url)
    refused = wait_until(lambda: [r for r in rx.snapshot() if r.status == 400], 30,
                         what="the refused request")[0]
    dropped = len(refused.records)
    assert dropped > 0
    wait_delivered(rx, n - dropped, timeout=45)
    wait_until(lambda: d.metric("drover_dropped_records_total", name="web") == dropped, 10,
               what="the drop counted")
    m = d.metrics()
    got = rx.accepted_records()
    assert d.stop() == 0

    assert m.get("drover_dropped_records_total", name="web", reason="bad_request") == dropped
    assert m.get("drover_output_records_total", name="web") == n - dropped
    assert m.get("drover_output_requests_total", name="web", code="400") == 1
    assert m.get("drover_output_retries_total", name="web") == 0
    # never sent again: the refused records are in no other request
    refused_keys = {json.dumps(x, sort_keys=True) for x in refused.records}
    assert not refused_keys & {json.dumps(x, sort_keys=True) for x in got}
    dl = Delivery(w.manifest.records, got + refused.records)
    dl.assert_exactly_once()
    assert "request refused, batch dropped" in d.log_text()
    assert 'refused: \'status\' 400' in d.log_text()


@pytest.mark.sanitizer
@pytest.mark.time_limit(90)
def test_hanging_server_times_out_and_is_retried(start_drover, receiver, tmp_path):
    w = make_node(tmp_path / "node", seed=15, lines=300)
    n = len(w.manifest.records)
    rx = receiver(lambda req, i: None if i == 0 else (200, {}))
    d, _ = start(start_drover, tmp_path, w, rx.url, timeout="1s", batch_max_bytes="1MiB",
                 max_inflight="1")
    got = wait_delivered(rx, n, timeout=45)
    m = d.metrics()
    assert d.stop() == 0
    Delivery(w.manifest.records, got).assert_exactly_once()
    reqs = rx.snapshot()
    hung, retry = reqs[0], reqs[1]
    assert hung.status is None
    assert 0.9 <= retry.t_arrival - hung.t_arrival <= 10, retry.t_arrival - hung.t_arrival
    # what the hung request carried was delivered by a later one
    assert set(canonical(hung.records)) <= set(canonical(got))
    assert m.get("drover_output_requests_total", name="web", code="error") >= 1
    assert "request failed, will retry" in d.log_text()


@pytest.mark.sanitizer
@pytest.mark.time_limit(90)
def test_stop_cancels_a_request_in_flight(start_drover, receiver, tmp_path):
    """SIGTERM while the server sits on a request: after grace_period the
    request is cancelled, drover exits cleanly without checkpointing it, and
    the next run delivers everything."""
    w = make_node(tmp_path / "node", seed=16, lines=300)
    n = len(w.manifest.records)
    hang = threading.Event()
    hang.set()
    rx = receiver(lambda req, i: None if hang.is_set() else (200, {}))
    d, _ = start(start_drover, tmp_path, w, rx.url, timeout="60s", max_inflight="1")
    wait_until(rx.snapshot, 20, what="the first request")
    t0 = time.monotonic()
    assert d.stop(timeout=30) == 0
    assert time.monotonic() - t0 < 15
    assert "grace period over" in d.log_text()
    assert not rx.accepted()

    hang.clear()
    d.start()
    d.wait_ready()
    got = wait_delivered(rx, n, timeout=45)
    assert d.stop() == 0
    Delivery(w.manifest.records, got).assert_exactly_once()


def test_config_errors(drover_bin, tmp_path):
    import subprocess

    def check(extra: str) -> str:
        cfg = tmp_path / "bad.yaml"
        cfg.write_text(tail_config(data_dir=str(tmp_path / "data"), paths=[str(tmp_path / "*.log")],
                                   out=str(tmp_path / "out"), extra=extra))
        p = subprocess.run([drover_bin, "--check-config", "-c", str(cfg)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        assert p.returncode == 1, p.stdout
        return p.stdout.decode()

    assert "scheme must be http:// or https://" in check(http_output("ftp://x/y"))
    assert "url" in check(http_output("http://"))
    out = check(http_output("http://127.0.0.1:1/", headers='["content-type: text/plain"]'))
    assert "Content-Type is set by the output" in out
    assert "format" in check(http_output("http://127.0.0.1:1/", format="xml"))
    assert "ca_file" in check(http_output("http://127.0.0.1:1/", **{"tls.ca_file": "/nonexistent"}))
