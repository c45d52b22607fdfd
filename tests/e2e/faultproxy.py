"""A fault-injecting HTTP reverse proxy for drover's end-to-end tests.

`FaultProxy` listens on 127.0.0.1 (a free port) in front of an upstream
(a real Loki) and answers each request according to its current mode:

  pass      forward to the upstream and relay its answer (502 when the
            upstream cannot be reached)
  slow      as pass, after holding the request `delay` seconds (a receiver
            slower than the load)
  503       answer 503, with `Retry-After: N` when retry_after is given
  429       answer 429 (Retry-After as for 503)
  500       answer 500
  hang      read the request, never answer; hold the connection until the
            client gives up (its timeout) or the proxy stops (bounded by
            max_hang)
  close     read the headers and part of the body, then reset the
            connection (mid-request)
  garbage   read the request, answer bytes that are not HTTP, close

set_mode(mode, seconds=..., count=...) switches now; after `seconds` or once
`count` requests were answered in that mode, the proxy is back to `pass`.

Every request is recorded (`ProxiedRequest`): arrival time, the mode it was
answered with, the status sent, how many requests were open at the proxy at
its arrival (itself included) and the most that were open while it was, the
headers and (with keep_bodies) the body. `decode_push()` reads a Loki push
body (protobuf + snappy, or JSON, gzip or not) back into entries, so a test
can count what drover sent, resends included.

    with FaultProxy(loki.http_port) as proxy:
        url = proxy.url + "/loki/api/v1/push"
        proxy.set_mode("503", retry_after=3, seconds=8)
        ...
        failing = proxy.requests(mode="503")

Every wait is bounded; stop() closes every connection and joins every thread
it started (bounded too).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import gzip
import http.client
import http.server
import json
import re
import select
import socket
import socketserver
import struct
import threading
import time
from typing import Callable, Optional

from drover_e2e import HOST

MODES = ("pass", "slow", "503", "429", "500", "hang", "close", "garbage")

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
               "trailer", "trailers", "transfer-encoding", "upgrade", "expect", "host",
               "content-length"}

GARBAGE = (b"\x00\x17\xfe NOT HTTP \xff\r\n\x01\x02\x03 garbage garbage\r\n\r\n"
           b"\x89PNG\r\n\x1a\n" + bytes(range(256)))


@dataclasses.dataclass
class ProxiedRequest:
    seq: int
    arrived: float  # time.monotonic() when its headers were read
    wall: float  # time.time() at the same moment
    mode: str  # the mode it was answered with
    concurrent: int  # requests open at the proxy at its arrival, itself included
    method: str
    path: str
    headers: dict  # lower-cased names
    body: bytes = b""  # kept with keep_bodies (else empty)
    body_len: int = -1  # bytes of body read (-1: not read)
    status: Optional[int] = None  # the status sent (None: no HTTP answer)
    upstream_status: Optional[int] = None
    done: Optional[float] = None  # answer sent, or connection closed (monotonic)
    peak: int = 0  # the most requests open at once while this one was open
    error: str = ""  # what went wrong (upstream unreachable, client gone, ...)

    @property
    def duration(self) -> Optional[float]:
        return None if self.done is None else self.done - self.arrived

    def summary(self, t0: float = 0.0) -> str:
        return ("#%d +%.3fs %s %s mode=%s status=%s conc=%d peak=%d body=%d%s%s"
                % (self.seq, self.arrived - t0, self.method, self.path, self.mode, self.status,
                   self.concurrent, self.peak, self.body_len,
                   "" if self.duration is None else " took=%.3fs" % self.duration,
                   " err=" + self.error if self.error else ""))


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    proxy: "FaultProxy"

    def handle_error(self, request, client_address):  # no tracebacks on stderr
        self.proxy._errors += 1

    def process_request(self, request, client_address):
        t = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                             name="faultproxy-conn", daemon=True)
        with self.proxy._lock:
            self.proxy._threads.append(t)
            self.proxy._conns.add(request)
        t.start()

    def shutdown_request(self, request):
        with self.proxy._lock:
            self.proxy._conns.discard(request)
        super().shutdown_request(request)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as curl expects
    server_version = "faultproxy"
    timeout = 120  # an idle keep-alive connection is closed after this

    def log_message(self, format, *args):  # quiet
        pass

    def do_POST(self):
        self.server.proxy._handle(self)

    do_GET = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_POST


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = HOST, *, keep_bodies: bool = True,
                 max_hang: float = 120.0, upstream_timeout: float = 60.0):
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.keep_bodies = keep_bodies
        self.max_hang = max_hang
        self.upstream_timeout = upstream_timeout
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._records: list[ProxiedRequest] = []
        self._open: list[ProxiedRequest] = []
        self._threads: list[threading.Thread] = []
        self._conns: set = set()
        self._errors = 0
        self._mode = "pass"
        self._opts: dict = {}
        self._until: Optional[float] = None
        self._count_left: Optional[int] = None
        self._changes: list[tuple[float, str]] = [(time.monotonic(), "pass")]
        self._server: Optional[_Server] = None
        self._serve_thread: Optional[threading.Thread] = None
        self.port = 0

    # ---- life cycle ----

    def start(self) -> "FaultProxy":
        assert self._server is None, "already started"
        self._server = _Server((HOST, 0), _Handler)
        self._server.proxy = self
        self.port = self._server.server_address[1]
        self._serve_thread = threading.Thread(target=self._server.serve_forever,
                                              kwargs={"poll_interval": 0.1},
                                              name="faultproxy", daemon=True)
        self._serve_thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stops accepting, drops every open connection (hung ones too) and
        joins the threads; bounded by `timeout`."""
        if self._server is None:
            return
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self._serve_thread:
            self._serve_thread.join(max(0.0, deadline - time.monotonic()))
        self._server = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return "http://%s:%d" % (HOST, self.port)

    @property
    def push_url(self) -> str:
        return self.url + "/loki/api/v1/push"

    # ---- control ----

    def set_mode(self, mode: str, *, seconds: Optional[float] = None, count: Optional[int] = None,
                 retry_after: Optional[float] = None, delay: float = 0.0,
                 body: Optional[bytes] = None) -> None:
        """Answers from now on in `mode`; back to pass after `seconds`, or
        after `count` requests answered in this mode. retry_after: the
        Retry-After header of a 503 or 429 (seconds). delay: seconds to hold
        a 503/429/500 answer (so that overlapping requests show), or a
        request before it is forwarded (slow)."""
        assert mode in MODES, mode
        with self._lock:
            self._mode = mode
            self._opts = {"retry_after": retry_after, "delay": delay, "body": body}
            self._until = time.monotonic() + seconds if seconds is not None else None
            self._count_left = count
            self._changes.append((time.monotonic(), mode))

    @property
    def mode(self) -> str:
        with self._lock:
            return self._current_locked()[0]

    def _current_locked(self) -> tuple[str, dict]:
        if self._mode != "pass":
            expired = (self._until is not None and time.monotonic() >= self._until) or \
                (self._count_left is not None and self._count_left <= 0)
            if expired:
                self._mode, self._opts = "pass", {}
                self._until = self._count_left = None
                self._changes.append((time.monotonic(), "pass"))
        return self._mode, self._opts

    def changes(self) -> list[tuple[float, str]]:
        """(monotonic time, mode) of every switch, the automatic ones included
        (those are noted when the next request comes or mode is read)."""
        with self._lock:
            self._current_locked()
            return list(self._changes)

    # ---- the records ----

    def requests(self, *, mode: Optional[str] = None, since: Optional[float] = None,
                 until: Optional[float] = None, path: Optional[str] = None) -> list[ProxiedRequest]:
        with self._lock:
            recs = list(self._records)
        return [r for r in recs
                if (mode is None or r.mode == mode) and (since is None or r.arrived >= since)
                and (until is None or r.arrived < until) and (path is None or r.path == path)]

    def open_requests(self) -> int:
        with self._lock:
            return len(self._open)

    def wait_requests(self, n: int, *, timeout: float, mode: Optional[str] = None,
                      since: Optional[float] = None) -> list[ProxiedRequest]:
        """Waits (bounded) until at least n requests (of a mode, since a time)
        have arrived; returns them. Raises AssertionError at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.requests(mode=mode, since=since)
            if len(got) >= n:
                return got
            if time.monotonic() >= deadline:
                raise AssertionError("faultproxy: %d of %d requests (mode %s) within %.0fs"
                                     % (len(got), n, mode, timeout))
            time.sleep(0.05)

    def report(self, limit: int = 60, t0: Optional[float] = None) -> str:
        """The last `limit` requests, one per line, times relative to t0
        (default: the first request)."""
        recs = self.requests()
        if t0 is None:
            t0 = recs[0].arrived if recs else 0.0
        return "\n".join(r.summary(t0) for r in recs[-limit:])

    # ---- serving ----

    def _handle(self, h: _Handler) -> None:
        now = time.monotonic()
        with self._lock:
            mode, opts = self._current_locked()
            if mode != "pass" and self._count_left is not None:
                self._count_left -= 1
            rec = ProxiedRequest(seq=len(self._records) + 1, arrived=now, wall=time.time(),
                                 mode=mode, concurrent=len(self._open) + 1, method=h.command,
                                 path=h.path, headers={k.lower(): v for k, v in h.headers.items()})
            self._records.append(rec)
            self._open.append(rec)
            for r in self._open:
                r.peak = max(r.peak, len(self._open))
        try:
            if mode == "close":
                self._close_mid_request(h, rec)
                return
            body = self._read_body(h, rec)
            if body is None:
                return
            if mode == "slow" and (opts.get("delay") or 0.0) > 0:
                self._stop.wait(opts["delay"])
            if mode in ("pass", "slow"):
                self._forward(h, rec, body)
            elif mode in ("503", "429", "500"):
                d = opts.get("delay") or 0.0
                if d > 0:
                    self._stop.wait(d)
                extra = {}
                if opts.get("retry_after") is not None and mode in ("503", "429"):
                    ra = opts["retry_after"]
                    extra["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
                text = opts.get("body") or ("faultproxy: injected %s\n" % mode).encode()
                self._answer(h, rec, int(mode), text, extra)
            elif mode == "hang":
                self._hang(h, rec)
            elif mode == "garbage":
                try:
                    h.wfile.write(GARBAGE)
                    h.wfile.flush()
                except OSError as e:
                    rec.error = "client: %s" % e
                h.close_connection = True
        except OSError as e:
            rec.error = rec.error or "client: %s" % e
            h.close_connection = True
        finally:
            with self._lock:
                if rec.done is None:
                    rec.done = time.monotonic()
                if rec in self._open:
                    self._open.remove(rec)

    def _read_body(self, h: _Handler, rec: ProxiedRequest) -> Optional[bytes]:
        try:
            if "chunked" in h.headers.get("Transfer-Encoding", "").lower():
                parts = []
                while True:
                    size_line = h.rfile.readline(1024)
                    if not size_line:
                        raise ConnectionError("eof in a chunked body")
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while h.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    parts.append(h.rfile.read(size))
                    h.rfile.readline(1024)
                body = b"".join(parts)
            else:
                n = int(h.headers.get("Content-Length") or 0)
                body = h.rfile.read(n) if n > 0 else b""
                if len(body) != n:
                    raise ConnectionError("eof after %d of %d body bytes" % (len(body), n))
        except (OSError, ValueError) as e:
            rec.error = "reading the body: %s" % e
            h.close_connection = True
            return None
        rec.body_len = len(body)
        if self.keep_bodies:
            rec.body = body
        return body

    def _answer(self, h: _Handler, rec: ProxiedRequest, status: int, body: bytes,
                headers: Optional[dict] = None, content_type: str = "text/plain; charset=utf-8") -> None:
        rec.status = status  # before the answer leaves: a reader never sees it answered without
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)
        h.wfile.flush()
        rec.done = time.monotonic()

    def _forward(self, h: _Handler, rec: ProxiedRequest, body: bytes) -> None:
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP_BY_HOP}
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port,
                                          timeout=self.upstream_timeout)
        try:
            conn.request(h.command, h.path, body=body if h.command not in ("GET", "HEAD") or body else None,
                         headers=headers)
            r = conn.getresponse()
            data = r.read()
            rec.upstream_status = r.status
            out = {k: v for k, v in r.getheaders() if k.lower() not in _HOP_BY_HOP
                   and k.lower() not in ("content-type", "date", "server")}
            ctype = r.getheader("Content-Type", "text/plain; charset=utf-8")
        except (OSError, http.client.HTTPException) as e:
            rec.error = "upstream: %s" % e
            self._answer(h, rec, 502, ("faultproxy: upstream unreachable: %s\n" % e).encode())
            return
        finally:
            conn.close()
        self._answer(h, rec, r.status, data, out, ctype)

    def _hang(self, h: _Handler, rec: ProxiedRequest) -> None:
        """Never answers: waits for the client to close (or stop/max_hang)."""
        sock = h.connection
        deadline = time.monotonic() + self.max_hang
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                r, _, _ = select.select([sock], [], [], 0.05)
            except (OSError, ValueError):
                break
            if r:
                try:
                    data = sock.recv(65536, socket.MSG_PEEK)
                except OSError:
                    data = b""
                if not data:
                    rec.error = "client closed"
                    break
                sock.recv(len(data))  # the client sends more (discarded)
        else:
            rec.error = "proxy stopped" if self._stop.is_set() else "max_hang"
        rec.done = time.monotonic()
        h.close_connection = True

    def _close_mid_request(self, h: _Handler, rec: ProxiedRequest) -> None:
        n = int(h.headers.get("Content-Length") or 0)
        try:
            if n > 1:
                got = h.rfile.read(min(n // 2, 65536))
                rec.body_len = len(got)
        except OSError:
            pass
        try:  # a reset, not a clean end
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        rec.error = "closed mid-request"
        rec.done = time.monotonic()
        h.close_connection = True


# ---- reading Loki push bodies -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PushedEntry:
    labels: tuple  # sorted (name, value) pairs
    ts: int
    line: str
    metadata: tuple  # sorted (name, value) pairs

    @property
    def label_dict(self) -> dict:
        return dict(self.labels)


_snappy_lib = None


def _snappy():
    global _snappy_lib
    if _snappy_lib is None:
        name = ctypes.util.find_library("snappy") or "libsnappy.so.1"
        try:
            lib = ctypes.CDLL(name)
            lib.snappy_uncompressed_length.argtypes = [ctypes.c_char_p, ctypes.c_size_t,
                                                       ctypes.POINTER(ctypes.c_size_t)]
            lib.snappy_uncompress.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                              ctypes.POINTER(ctypes.c_size_t)]
            _snappy_lib = lib
        except OSError:
            _snappy_lib = False
    return _snappy_lib


def snappy_decompress(data: bytes) -> bytes:
    """A snappy block (not framed), through libsnappy when there is one."""
    lib = _snappy()
    if lib:
        n = ctypes.c_size_t()
        if lib.snappy_uncompressed_length(data, len(data), ctypes.byref(n)) != 0:
            raise ValueError("not a snappy block")
        out = ctypes.create_string_buffer(max(1, n.value))
        if lib.snappy_uncompress(data, len(data), out, ctypes.byref(n)) != 0:
            raise ValueError("corrupt snappy block")
        return out.raw[:n.value]
    return _snappy_decompress_py(data)


def _snappy_decompress_py(data: bytes) -> bytes:
    pos, size, shift = 0, 0, 0
    while True:
        b = data[pos]
        pos += 1
        size |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            break
    out = bytearray()
    n = len(data)
    while pos < n:
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:
            ln = tag >> 2
            if ln >= 60:
                extra = ln - 59
                ln = int.from_bytes(data[pos:pos + extra], "little")
                pos += extra
            ln += 1
            out += data[pos:pos + ln]
            pos += ln
            continue
        if kind == 1:
            ln = ((tag >> 2) & 7) + 4
            off = ((tag >> 5) << 8) | data[pos]
            pos += 1
        elif kind == 2:
            ln = (tag >> 2) + 1
            off = int.from_bytes(data[pos:pos + 2], "little")
            pos += 2
        else:
            ln = (tag >> 2) + 1
            off = int.from_bytes(data[pos:pos + 4], "little")
            pos += 4
        if off <= 0 or off > len(out):
            raise ValueError("corrupt snappy block")
        start = len(out) - off
        if off >= ln:
            out += out[start:start + ln]
        else:
            for i in range(ln):
                out.append(out[start + i])
    if len(out) != size:
        raise ValueError("snappy: %d bytes, header says %d" % (len(out), size))
    return bytes(out)


def _pb_fields(buf: bytes):
    """(field number, wire type, value) of one protobuf message; value is an
    int for varints and fixed, bytes for length-delimited."""
    pos, n = 0, len(buf)

    def varint():
        nonlocal pos
        v, shift = 0, 0
        while True:
            b = buf[pos]
            pos += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return v

    while pos < n:
        key = varint()
        field, wt = key >> 3, key & 7
        if wt == 0:
            yield field, wt, varint()
        elif wt == 2:
            ln = varint()
            yield field, wt, buf[pos:pos + ln]
            pos += ln
        elif wt == 1:
            yield field, wt, int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wt == 5:
            yield field, wt, int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            raise ValueError("protobuf wire type %d" % wt)


_LABEL_PAIR_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_label_string(s: str) -> dict:
    """Loki's stream selector syntax, {a="x", b="y"}, to a dict."""
    s = s.strip()
    if s.startswith("{") and s.endswith("}"):
        s = s[1:-1]
    out, pos = {}, 0
    while pos < len(s):
        m = _LABEL_PAIR_RE.match(s, pos)
        if not m:
            raise ValueError("bad label string %r at %d" % (s, pos))
        out[m.group(1)] = json.loads('"' + m.group(2) + '"')
        pos = m.end()
    return out


def _decode_text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def decode_push(body: bytes, headers: dict) -> list[PushedEntry]:
    """The entries of one Loki push request body (as the proxy recorded it,
    with its lower-cased headers). Lines that are not valid UTF-8 keep their
    bytes as surrogate escapes."""
    ctype = (headers.get("content-type") or "").lower()
    if (headers.get("content-encoding") or "").lower() == "gzip":
        body = gzip.decompress(body)
    out = []
    if "json" in ctype:
        doc = json.loads(body)
        for s in doc.get("streams", []):
            labels = tuple(sorted((s.get("stream") or {}).items()))
            for v in s.get("values", []):
                meta = tuple(sorted((v[2] if len(v) > 2 and v[2] else {}).items()))
                out.append(PushedEntry(labels, int(v[0]), v[1], meta))
        return out
    raw = snappy_decompress(body)
    for f, _, stream in _pb_fields(raw):
        if f != 1:
            continue
        labels: tuple = ()
        entries = []
        for sf, _, sv in _pb_fields(stream):
            if sf == 1:
                labels = tuple(sorted(parse_label_string(_decode_text(sv)).items()))
            elif sf == 2:
                ts, line, meta = 0, b"", []
                for ef, _, ev in _pb_fields(sv):
                    if ef == 1:
                        secs = nanos = 0
                        for tf, _, tv in _pb_fields(ev):
                            if tf == 1:
                                secs = tv - (1 << 64) if tv >= 1 << 63 else tv
                            elif tf == 2:
                                nanos = tv
                        ts = secs * 1_000_000_000 + nanos
                    elif ef == 2:
                        line = ev
                    elif ef == 3:
                        name = value = b""
                        for lf, _, lv in _pb_fields(ev):
                            if lf == 1:
                                name = lv
                            elif lf == 2:
                                value = lv
                        meta.append((_decode_text(name), _decode_text(value)))
                entries.append((ts, _decode_text(line), tuple(sorted(meta))))
        for ts, line, meta in entries:
            out.append(PushedEntry(labels, ts, line, meta))
    return out


def pushed_entries(reqs: list[ProxiedRequest], *, only_status: Optional[Callable[[int], bool]] = None
                   ) -> list[PushedEntry]:
    """Every entry of the push requests recorded (bodies kept), in order;
    only_status filters by the status the proxy answered."""
    out = []
    for r in reqs:
        if not r.body or r.path.split("?")[0] != "/loki/api/v1/push":
            continue
        if only_status is not None and not only_status(r.status if r.status is not None else -1):
            continue
        out.extend(decode_push(r.body, r.headers))
    return out


# ---- writing Loki push bodies (for tests of the proxy itself) ----------------------------------


def snappy_compress(data: bytes) -> bytes:
    """A snappy block: libsnappy when there is one, else literals only
    (valid snappy, no compression)."""
    lib = _snappy()
    if lib:
        lib.snappy_max_compressed_length.restype = ctypes.c_size_t
        cap = lib.snappy_max_compressed_length(ctypes.c_size_t(len(data)))
        out = ctypes.create_string_buffer(cap)
        n = ctypes.c_size_t(cap)
        if lib.snappy_compress(data, ctypes.c_size_t(len(data)), out, ctypes.byref(n)) != 0:
            raise ValueError("snappy_compress failed")
        return out.raw[:n.value]
    out = bytearray(_varint(len(data)))
    for i in range(0, len(data), 1 << 16):
        lit = data[i:i + (1 << 16)]
        ln = len(lit) - 1
        if ln < 60:
            out.append(ln << 2)
        else:
            nb = (ln.bit_length() + 7) // 8
            out.append((59 + nb) << 2)
            out += ln.to_bytes(nb, "little")
        out += lit
    return bytes(out)


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _pb_bytes(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _pb_varint(field: int, v: int) -> bytes:
    return _varint(field << 3) + _varint(v & ((1 << 64) - 1))


def encode_push_protobuf(streams: list[dict]) -> bytes:
    """Loki's PushRequest, snappy-compressed, from streams in push_json's
    shape ({"stream": {...}, "values": [[ts, line, {meta}], ...]})."""
    msg = bytearray()
    for s in streams:
        labels = "{" + ", ".join('%s=%s' % (k, json.dumps(v)) for k, v in sorted(s["stream"].items())) + "}"
        sb = bytearray(_pb_bytes(1, labels.encode()))
        for v in s["values"]:
            ts = int(v[0])
            t = _pb_varint(1, ts // 1_000_000_000) + _pb_varint(2, ts % 1_000_000_000)
            e = _pb_bytes(1, t) + _pb_bytes(2, v[1].encode("utf-8", "surrogateescape"))
            for k, val in (v[2] if len(v) > 2 and v[2] else {}).items():
                e += _pb_bytes(3, _pb_bytes(1, k.encode()) + _pb_bytes(2, val.encode()))
            sb += _pb_bytes(2, e)
        msg += _pb_bytes(1, bytes(sb))
    return snappy_compress(bytes(msg))
