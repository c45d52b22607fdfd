#!/usr/bin/env python3
"""A stand-in for the kubelet and the container runtime, writing container logs.

It lays out a node's log directories under a root directory the way the
kubelet does:

    ROOT/containers/<pod>_<namespace>_<container>-<64 hex id>.log
        -> ROOT/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log   (absolute symlink)

and writes to them like containerd (CRI lines) or docker (json-file lines):

    CRI     <RFC3339Nano> <stdout|stderr> <P|F> <message>\\n
            A line longer than 16 KiB goes out as 16 KiB "P" pieces and a final
            "F" piece (empty when the length is an exact multiple of 16 KiB, as
            Go's bufio makes containerd do).
    docker  {"log":"<message>\\n","stream":"stdout","time":"<RFC3339Nano>"}\\n
            escaped like moby's json-file driver; pieces of 16 KiB without the
            trailing "\\n" for longer lines.

Rotation, like the kubelet's container log manager (CRI containers):
  when <restart>.log exceeds max_size: remove leftover *.tmp files, remove the
  oldest rotated files so that at most max_files-2 remain, gzip every rotated
  file but the newest (write "<f>.gz.tmp", rename it to "<f>.gz", remove
  "<f>"), rename the live file to "<restart>.log.<YYYYMMDD-HHMMSS>" (with a
  "_NNN" suffix when that name is taken, which keeps the names sorting by age)
  and let the runtime reopen a fresh one; the runtime may write a few more
  lines to the renamed file first (it reopens asynchronously; by default
  only between records, with reopen_mid_record=True also between the pieces
  of one record, which leaves a record's P pieces in the rotated file and its
  F in the new one).
Rotation like logrotate's copytruncate (docker json-file containers):
  shift "<f>.N" to "<f>.N+1" (dropping those past max_files), copy the file to
  "<f>.1", truncate the file to 0, between two writes of the writer.
Container restarts: a new container id, a new "<restart+1>.log", a new
symlink; the old symlink is removed link_remove_delay seconds later. The dead
container can leave a "P" line without its "F" behind.

Every logical line the writer emits carries a unique id, "seq=<key>:<n>",
where <key> is "<pod>/<container>/r<restart>", and is recorded in a manifest
(per line: the id, the kubernetes fields, the stream, the time of the first
piece and the exact message bytes a perfect shipper reports). Load it with
Manifest.load(path).

Library use:

    w = KubeletWriter(root, seed=1, max_size=256 * 1024, max_files=5)
    c = w.add_container("default", "web-0", "app")
    w.log(c, b"hello")                    # one logical line
    w.run(rate=2000, duration=5)          # a seeded random mix
    w.close()
    expected = w.manifest.records

CLI (runs until SIGINT/SIGTERM with --duration 0):

    python3 tests/e2e/kubelet_writer.py --root /tmp/node --rate 50 --duration 0
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import random
import re
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

_PRINTABLE = re.compile(rb"[\x20-\x7e]*")

CRI_PIECE = 16 * 1024  # containerd's and docker's line buffer
DOCKER_PIECE = 16 * 1024


# ---- formatting ----------------------------------------------------------------


def rfc3339nano(ns: int, offset_minutes: int = 0) -> str:
    """Go's time.RFC3339Nano: trailing zeros of the fraction trimmed, no
    fraction at all when it is zero; "Z" for UTC, else "+hh:mm"."""
    secs, frac = divmod(ns, 1_000_000_000)
    t = time.gmtime(secs + offset_minutes * 60)
    s = "%04d-%02d-%02dT%02d:%02d:%02d" % t[:6]
    if frac:
        s += ("." + "%09d" % frac).rstrip("0")
    if offset_minutes == 0:
        return s + "Z"
    sign = "+" if offset_minutes > 0 else "-"
    m = abs(offset_minutes)
    return s + "%s%02d:%02d" % (sign, m // 60, m % 60)


def parse_rfc3339nano(s: str) -> int:
    """RFC 3339 with an optional fraction of up to 9 digits -> ns since the epoch."""
    import calendar

    date, _, rest = s.partition("T")
    y, mo, d = (int(x) for x in date.split("-"))
    if rest.endswith("Z") or rest.endswith("z"):
        clock, off = rest[:-1], 0
    else:
        sign_at = max(rest.rfind("+"), rest.rfind("-"))
        clock, tz = rest[:sign_at], rest[sign_at:]
        hh, mm = tz[1:].split(":")
        off = (int(hh) * 60 + int(mm)) * (1 if tz[0] == "+" else -1)
    hms, _, frac = clock.partition(".")
    h, mi, sec = (int(x) for x in hms.split(":"))
    frac_ns = int((frac + "000000000")[:9]) if frac else 0
    secs = calendar.timegm((y, mo, d, h, mi, sec, 0, 0, 0)) - off * 60
    return secs * 1_000_000_000 + frac_ns


def docker_escape(msg: bytes) -> str:
    """The body of a JSON string as moby's json-file driver writes it:
    '"' and '\\\\' escaped, \\n \\r \\t as such, other controls and <, >, & as
    \\u00XX, U+2028/U+2029 escaped, each invalid UTF-8 byte as \\ufffd, and the
    rest as raw UTF-8."""
    out = []
    i, n = 0, len(msg)
    while i < n:
        b = msg[i]
        if b < 0x80:
            c = chr(b)
            if c in '"\\':
                out.append("\\" + c)
            elif c == "\n":
                out.append("\\n")
            elif c == "\r":
                out.append("\\r")
            elif c == "\t":
                out.append("\\t")
            elif b < 0x20 or c in "<>&":
                out.append("\\u%04x" % b)
            else:
                out.append(c)
            i += 1
            continue
        # one UTF-8 sequence, or one invalid byte (Go's utf8.DecodeRune)
        for width in (2, 3, 4):
            try:
                ch = msg[i:i + width].decode("utf-8")
            except UnicodeDecodeError:
                continue
            if len(ch) == 1:
                break
        else:
            ch = None
        if ch is None:
            out.append("\\ufffd")
            i += 1
            continue
        if ch in "\u2028\u2029":
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
        i += len(ch.encode("utf-8"))
    return "".join(out)


def docker_line(log: str, stream: str, ts: str) -> bytes:
    return ('{"log":"%s","stream":"%s","time":"%s"}\n' % (log, stream, ts)).encode("utf-8")


def cri_pieces(msg: bytes, piece: int = CRI_PIECE) -> list[tuple[str, bytes]]:
    """Splits a message as containerd does: 16 KiB "P" pieces and a final "F"
    (empty when the message is a non-empty exact multiple of the piece size)."""
    out = []
    pos = 0
    while len(msg) - pos >= piece and len(msg) > 0:
        out.append(("P", msg[pos:pos + piece]))
        pos += piece
    out.append(("F", msg[pos:]))
    return out


# ---- the manifest -----------------------------------------------------------------


@dataclass
class Expected:
    """One record a perfect shipper reports for one logical line."""

    id: Optional[str]
    namespace: str
    pod: str
    pod_uid: str
    container: str
    container_id: str
    stream: str
    time_ns: int
    msg: bytes  # as the shipper should report it before UTF-8 repair
    kind: str = "line"  # line | partial_only (a P whose F never came)

    @property
    def text(self) -> str:
        """The message as it must appear in the JSON output."""
        return self.msg.decode("utf-8", "replace")

    def to_json(self) -> str:
        d = {
            "id": self.id,
            "namespace": self.namespace,
            "pod": self.pod,
            "pod_uid": self.pod_uid,
            "container": self.container,
            "container_id": self.container_id,
            "stream": self.stream,
            "time_ns": self.time_ns,
            "kind": self.kind,
        }
        if _PRINTABLE.fullmatch(self.msg):
            d["msg"] = self.msg.decode("ascii")
        else:
            d["b64"] = base64.b64encode(self.msg).decode("ascii")
        return json.dumps(d, separators=(",", ":"))

    @staticmethod
    def from_json(line: str) -> "Expected":
        d = json.loads(line)
        msg = d["msg"].encode("ascii") if "msg" in d else base64.b64decode(d["b64"])
        return Expected(
            id=d["id"],
            namespace=d["namespace"],
            pod=d["pod"],
            pod_uid=d["pod_uid"],
            container=d["container"],
            container_id=d["container_id"],
            stream=d["stream"],
            time_ns=d["time_ns"],
            msg=msg,
            kind=d.get("kind", "line"),
        )


class Manifest:
    """What was written: every logical line, in writing order. Kept in memory
    and, when a path is given, appended to that file as NDJSON."""

    def __init__(self, path: Optional[str] = None, keep: bool = True):
        self.records: list[Expected] = []
        self.count = 0
        self.keep = keep  # False: only the file (a long-running CLI writer)
        self.path = path
        self._fh = open(path, "w", encoding="utf-8") if path else None

    def add(self, rec: Expected) -> Expected:
        self.count += 1
        if self.keep:
            self.records.append(rec)
        if self._fh:
            self._fh.write(rec.to_json() + "\n")
        return rec

    def flush(self) -> None:
        if self._fh:
            self._fh.flush()

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None

    @staticmethod
    def load(path: str) -> list[Expected]:
        out = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    out.append(Expected.from_json(line))
        return out


# ---- containers -----------------------------------------------------------------------


@dataclass
class Container:
    writer: "KubeletWriter"
    namespace: str
    pod: str
    pod_uid: str
    name: str
    restart: int
    container_id: str
    fmt: str  # cri | docker
    rotation: Optional[str]  # kubelet | copytruncate | None
    utc_offset: int = 0  # minutes, for the CRI timestamps
    seq: int = 0
    fd: int = -1
    old_fd: int = -1  # the renamed file the runtime still writes to
    reopen_after: int = 0  # lines still to write to old_fd
    hold_reopen: bool = False  # pieces of some stream are pending: no reopen now
    dead: bool = False
    rotations: int = 0
    lines: int = 0

    @property
    def key(self) -> str:
        return "%s/%s/r%d" % (self.pod, self.name, self.restart)

    @property
    def log_dir(self) -> str:
        return os.path.join(self.writer.pods_dir, "%s_%s_%s" % (self.namespace, self.pod, self.pod_uid),
                            self.name)

    @property
    def path(self) -> str:
        return os.path.join(self.log_dir, "%d.log" % self.restart)

    @property
    def link(self) -> str:
        return os.path.join(self.writer.containers_dir,
                            "%s_%s_%s-%s.log" % (self.pod, self.namespace, self.name, self.container_id))

    def next_id(self) -> str:
        self.seq += 1
        return "%s:%d" % (self.key, self.seq)

    def expected(self, id: Optional[str], stream: str, time_ns: int, msg: bytes,
                 kind: str = "line") -> Expected:
        return Expected(id, self.namespace, self.pod, self.pod_uid, self.name, self.container_id,
                        stream, time_ns, msg, kind)


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _uid(rng: random.Random) -> str:
    h = _hex(rng, 32)
    return "%s-%s-4%s-a%s-%s" % (h[:8], h[8:12], h[13:16], h[17:20], h[20:32])


@dataclass
class Mix:
    """Probabilities (per logical line) of the special kinds of lines in run()."""

    stderr: float = 0.2
    long: float = 0.0  # 17..60 KiB: several CRI/docker pieces
    invalid_utf8: float = 0.0
    binary: float = 0.0
    unicode: float = 0.0  # valid multi-byte UTF-8, quotes, backslashes
    empty: float = 0.0
    interleave: float = 0.0  # stdout and stderr partials interleaved
    torn: float = 0.0  # a physical line written in two write() calls
    min_len: int = 20
    max_len: int = 200


_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_.,:;=/"


class KubeletWriter:
    def __init__(self, root: str, *, seed: int = 0, max_size: Optional[int] = None,
                 max_files: int = 5, manifest: Optional[str] = None,
                 link_remove_delay: float = 2.0, reopen_lag: tuple[int, int] = (0, 3),
                 rotate_mid_record: bool = False, reopen_mid_record: bool = False,
                 keep_manifest: bool = True, clock: Callable[[], int] = time.time_ns):
        self.root = os.path.abspath(root)
        self.containers_dir = os.path.join(self.root, "containers")
        self.pods_dir = os.path.join(self.root, "pods")
        os.makedirs(self.containers_dir, exist_ok=True)
        os.makedirs(self.pods_dir, exist_ok=True)
        self.rng = random.Random(seed)
        self.max_size = max_size
        self.max_files = max(2, max_files)
        self.manifest = Manifest(manifest, keep=keep_manifest)
        self.link_remove_delay = link_remove_delay
        self.reopen_lag = reopen_lag
        self.rotate_mid_record = rotate_mid_record
        self.reopen_mid_record = reopen_mid_record
        self.clock = clock
        self.containers: list[Container] = []  # live ones
        self.dead: list[Container] = []
        self._link_removals: list[tuple[float, str]] = []
        self._pod_uids: dict[tuple[str, str], str] = {}
        self._noise = "".join(self.rng.choice(_ALPHABET) for _ in range(1 << 16))
        self.stats = {"lines": 0, "bytes": 0, "rotations": 0, "copytruncates": 0,
                      "compressed": 0, "deleted": 0, "restarts": 0}
        self._lock = threading.Lock()

    # ---- layout -------------------------------------------------------------

    def add_container(self, namespace: str, pod: str, name: str, *, fmt: str = "cri",
                      rotation: Optional[str] = "default", restart: int = 0,
                      utc_offset: int = 0) -> Container:
        """A running container; rotation "default" is kubelet for CRI and
        copytruncate for docker (None: never rotated)."""
        if rotation == "default":
            rotation = "kubelet" if fmt == "cri" else "copytruncate"
        uid = self._pod_uids.setdefault((namespace, pod), _uid(self.rng))
        c = Container(self, namespace, pod, uid, name, restart, _hex(self.rng, 64), fmt, rotation,
                      utc_offset)
        os.makedirs(c.log_dir, exist_ok=True)
        self._open(c)
        self._make_link(c)
        self.containers.append(c)
        return c

    def _open(self, c: Container) -> None:
        c.fd = os.open(c.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def _make_link(self, c: Container) -> None:
        tmp = c.link + ".tmp-link"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(c.path, tmp)
        os.replace(tmp, c.link)

    def restart(self, c: Container, *, die_mid_line: Optional[bytes] = None) -> Container:
        """The container dies (leaving `die_mid_line` as a P piece without its F,
        when given) and the kubelet starts it again: new id, new file, new link;
        the old link goes link_remove_delay seconds later."""
        if die_mid_line is not None:
            self.partial(c, die_mid_line)
        c.dead = True
        self._finish_reopen(c)
        if c.fd >= 0:
            os.close(c.fd)
        c.fd = -1
        self.containers.remove(c)
        self.dead.append(c)
        n = Container(self, c.namespace, c.pod, c.pod_uid, c.name, c.restart + 1,
                      _hex(self.rng, 64), c.fmt, c.rotation, c.utc_offset)
        self._open(n)
        self._make_link(n)
        self.containers.append(n)
        self._link_removals.append((time.monotonic() + self.link_remove_delay, c.link))
        self.stats["restarts"] += 1
        return n

    def tick(self, *, force: bool = False) -> None:
        """Removes the links of dead containers whose time has come."""
        now = time.monotonic()
        keep = []
        for when, link in self._link_removals:
            if force or when <= now:
                try:
                    os.unlink(link)
                except FileNotFoundError:
                    pass
            else:
                keep.append((when, link))
        self._link_removals = keep

    # ---- writing ----------------------------------------------------------------

    def _now(self) -> int:
        return self.clock()

    def _write(self, c: Container, data: bytes, torn: bool = False) -> None:
        fd = c.old_fd if c.old_fd >= 0 else c.fd
        if torn and len(data) > 2:
            cut = self.rng.randrange(1, len(data) - 1)
            os.write(fd, data[:cut])
            os.write(fd, data[cut:])
        else:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        self.stats["bytes"] += len(data)

    def _after_physical_line(self, c: Container, final: bool = True) -> None:
        if c.old_fd >= 0 and (final or self.reopen_mid_record) and not c.hold_reopen:
            c.reopen_after -= 1
            if c.reopen_after <= 0:
                self._finish_reopen(c)

    def _finish_reopen(self, c: Container, reopen: bool = True) -> None:
        """The runtime reopens the log after a rotation: later writes go to
        the new file."""
        if c.old_fd >= 0:
            os.close(c.old_fd)
            c.old_fd = -1
        if reopen and c.fd < 0 and not c.dead:
            self._open(c)

    def _cri_piece(self, c: Container, stream: str, tag: str, data: bytes, ts_ns: int,
                   torn: bool = False) -> None:
        head = ("%s %s %s " % (rfc3339nano(ts_ns, c.utc_offset), stream, tag)).encode("ascii")
        self._write(c, head + data + b"\n", torn)
        self._after_physical_line(c, tag == "F")

    def _docker_piece(self, c: Container, stream: str, data: bytes, final: bool, ts_ns: int,
                      torn: bool = False) -> str:
        body = docker_escape(data) + ("\\n" if final else "")
        self._write(c, docker_line(body, stream, rfc3339nano(ts_ns)), torn)
        self._after_physical_line(c, final)
        return body

    def pieces(self, c: Container, msg: bytes) -> list[tuple[bool, bytes]]:
        """(final, data) pieces of a logical line in the container's format."""
        if c.fmt == "cri":
            return [(tag == "F", data) for tag, data in cri_pieces(msg)]
        out = []
        pos = 0
        while len(msg) - pos > DOCKER_PIECE:
            out.append((False, msg[pos:pos + DOCKER_PIECE]))
            pos += DOCKER_PIECE
        out.append((True, msg[pos:]))
        return out

    def _write_piece(self, c: Container, stream: str, final: bool, data: bytes, ts: int,
                     torn: bool = False) -> bytes:
        """Writes one physical line; returns the bytes a shipper reports for it."""
        if c.fmt == "cri":
            self._cri_piece(c, stream, "F" if final else "P", data, ts, torn)
            return data
        body = self._docker_piece(c, stream, data, final, ts, torn)
        text = json.loads('"' + body + '"')
        if final:
            text = text[:-1]
        return text.encode("utf-8", "surrogatepass")

    def log(self, c: Container, msg: bytes, stream: str = "stdout", *, torn: bool = False,
            record: bool = True, id: Optional[str] = None,
            rotate_after_piece: Optional[int] = None) -> Expected:
        """Writes one logical line (in pieces when long) and records it.
        rotate_after_piece=k rotates the file (the container's way, the
        runtime reopening at once) right after the k-th piece (1-based)."""
        with self._lock:
            reported = b""
            first_ts = None
            for k, (final, data) in enumerate(self.pieces(c, msg), 1):
                ts = self._now()
                if first_ts is None:
                    first_ts = ts
                reported += self._write_piece(c, stream, final, data, ts, torn)
                if k == rotate_after_piece:
                    self.force_rotate(c)
                elif self.rotate_mid_record and not final:
                    self.maybe_rotate(c)
            c.lines += 1
            self.stats["lines"] += 1
            if id is None:
                id = _id_of(msg)
            rec = c.expected(id, stream, first_ts, reported)
            if record:
                self.manifest.add(rec)
            self.maybe_rotate(c)
            return rec

    def partial(self, c: Container, msg: bytes, stream: str = "stdout",
                record: bool = True) -> Expected:
        """A piece of a line whose end never comes (the container died)."""
        with self._lock:
            ts = self._now()
            if c.fmt == "cri":
                self._cri_piece(c, stream, "P", msg, ts)
                reported = msg
            else:
                reported = self._write_piece(c, stream, False, msg, ts)
            rec = c.expected(_id_of(msg), stream, ts, reported, kind="partial_only")
            if record:
                self.manifest.add(rec)
            return rec

    def interleaved(self, c: Container, out_msg: bytes, err_msg: bytes) -> list[Expected]:
        """stdout and stderr lines whose pieces interleave:
        out P, err P, out F, err F (each message cut in two)."""
        with self._lock:
            a, b = len(out_msg) // 2, len(err_msg) // 2
            c.hold_reopen = not self.reopen_mid_record
            t1 = self._now()
            r_out = self._write_piece(c, "stdout", False, out_msg[:a], t1)
            t2 = self._now()
            r_err = self._write_piece(c, "stderr", False, err_msg[:b], t2)
            r_out += self._write_piece(c, "stdout", True, out_msg[a:], self._now())
            c.hold_reopen = False
            r_err += self._write_piece(c, "stderr", True, err_msg[b:], self._now())
            c.lines += 2
            self.stats["lines"] += 2
            recs = [c.expected(_id_of(out_msg), "stdout", t1, r_out),
                    c.expected(_id_of(err_msg), "stderr", t2, r_err)]
            for r in recs:
                self.manifest.add(r)
            self.maybe_rotate(c)
            return recs

    def raw(self, c: Container, data: bytes) -> None:
        """Bytes written as they are (a malformed line, say); not recorded."""
        with self._lock:
            self._write(c, data)

    # ---- rotation ------------------------------------------------------------------

    def maybe_rotate(self, c: Container) -> bool:
        if not self.max_size or not c.rotation or c.dead or c.fd < 0:
            return False
        try:
            size = os.fstat(c.fd).st_size
        except OSError:
            return False
        if size <= self.max_size:
            return False
        if c.rotation == "kubelet":
            self.rotate(c)
        else:
            self.copytruncate(c)
        return True

    def force_rotate(self, c: Container) -> None:
        """Rotates now, whatever the size, the runtime reopening at once."""
        lag = self.reopen_lag
        self.reopen_lag = (0, 0)
        try:
            if c.rotation == "copytruncate":
                self.copytruncate(c)
            else:
                self.rotate(c)
        finally:
            self.reopen_lag = lag

    def _rotated_names(self, c: Container) -> list[str]:
        base = "%d.log." % c.restart
        return sorted(n for n in os.listdir(c.log_dir)
                      if n.startswith(base) and not n.endswith(".tmp"))

    def _compress(self, path: str) -> None:
        tmp = path + ".gz.tmp"
        with open(path, "rb") as src, open(tmp, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                shutil.copyfileobj(src, gz, 1 << 20)
            raw.flush()
        os.rename(tmp, path + ".gz")
        os.unlink(path)
        self.stats["compressed"] += 1

    def rotate(self, c: Container) -> None:
        """The kubelet's rotation of a CRI container's log."""
        self._finish_reopen(c)
        d = c.log_dir
        # cleanupUnusedLogs: leftover temporary files, plain files already compressed
        names = os.listdir(d)
        for n in names:
            if n.startswith("%d.log." % c.restart) and n.endswith(".tmp"):
                os.unlink(os.path.join(d, n))
            elif n.startswith("%d.log." % c.restart) and n + ".gz" in names:
                os.unlink(os.path.join(d, n))
        # removeExcessLogs: at most max_files-2 rotated files before this rotation
        rotated = self._rotated_names(c)
        excess = len(rotated) - (self.max_files - 2)
        for n in rotated[:max(0, excess)]:
            os.unlink(os.path.join(d, n))
            self.stats["deleted"] += 1
        # compress all rotated logs but the newest
        rotated = self._rotated_names(c)
        for n in rotated[:-1]:
            if not n.endswith(".gz"):
                self._compress(os.path.join(d, n))
        # rotateLatestLog: rename, then the runtime reopens
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(self._now() // 1_000_000_000))
        target = "%s.%s" % (c.path, stamp)
        k = 0
        while os.path.exists(target) or os.path.exists(target + ".gz"):
            k += 1
            target = "%s.%s_%03d" % (c.path, stamp, k)
        os.rename(c.path, target)
        lag = self.rng.randint(*self.reopen_lag) if self.reopen_lag[1] > 0 else 0
        if lag > 0:
            c.old_fd = c.fd  # the runtime keeps writing to the renamed file a little
            c.fd = -1
            c.reopen_after = lag
        else:
            os.close(c.fd)
            c.fd = -1
            self._open(c)
        c.rotations += 1
        self.stats["rotations"] += 1

    def copytruncate(self, c: Container) -> None:
        """logrotate's copytruncate: copy to <f>.1 (shifting older copies), truncate <f>."""
        p = c.path
        last = self.max_files - 1
        if os.path.exists("%s.%d" % (p, last)):
            os.unlink("%s.%d" % (p, last))
            self.stats["deleted"] += 1
        for i in range(last - 1, 0, -1):
            if os.path.exists("%s.%d" % (p, i)):
                os.rename("%s.%d" % (p, i), "%s.%d" % (p, i + 1))
        with open(p, "rb") as src, open(p + ".1", "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.truncate(p, 0)
        c.rotations += 1
        self.stats["copytruncates"] += 1

    # ---- a generated workload --------------------------------------------------------

    def _payload(self, n: int) -> bytes:
        start = self.rng.randrange(0, len(self._noise) - n) if n < len(self._noise) else 0
        s = self._noise[start:start + n]
        while len(s) < n:
            s += self._noise[: n - len(s)]
        return s.encode("ascii")

    def make_message(self, c: Container, mix: Mix) -> tuple[str, bytes]:
        """(kind, message) for the next generated line of container c."""
        id = c.next_id()
        head = ("seq=%s " % id).encode("ascii")
        r = self.rng.random()
        acc = 0.0
        for kind in ("empty", "long", "invalid_utf8", "binary", "unicode", "interleave"):
            acc += getattr(mix, kind)
            if r < acc:
                break
        else:
            kind = "plain"
        if kind == "empty":
            return kind, b""
        if kind == "long":
            return kind, head + self._payload(self.rng.randint(17 * 1024, 60 * 1024))
        if kind == "invalid_utf8":
            bad = self.rng.choice([b"\xff", b"\xfe\xfe", b"\xc3\x28", b"\xe2\x82", b"\xf0\x9f\x98",
                                   b"\xed\xa0\x80", b"\xc0\xaf", b"\x80\x80\x80", b"\xf8\x88\x80"])
            return kind, head + self._payload(10) + bad + self._payload(10)
        if kind == "binary":
            junk = bytes(self.rng.choice([0, 1, 2, 7, 8, 9, 11, 12, 13, 27, 31, 127])
                         for _ in range(8))
            return kind, head + junk + self._payload(5)
        if kind == "unicode":
            extra = self.rng.choice(['"quoted" \\back\\slash', "caf\u00e9 na\u00efve",
                                     "\u65e5\u672c\u8a9e", "emoji \U0001F600\U0001F680",
                                     "<tag attr='x'>&amp;</tag>", "line\u2028sep \ttab"])
            return kind, head + extra.encode("utf-8")
        if kind == "interleave":
            return kind, head + self._payload(self.rng.randint(mix.min_len, mix.max_len))
        return kind, head + self._payload(self.rng.randint(mix.min_len, mix.max_len))

    def write_generated(self, c: Container, mix: Mix) -> int:
        kind, msg = self.make_message(c, mix)
        stream = "stderr" if self.rng.random() < mix.stderr else "stdout"
        torn = self.rng.random() < mix.torn
        if kind == "interleave":
            other = ("seq=%s " % c.next_id()).encode("ascii") + self._payload(
                self.rng.randint(mix.min_len, mix.max_len))
            self.interleaved(c, msg, other)
            return 2
        if c.fmt == "docker" and kind in ("invalid_utf8", "binary"):
            pass  # docker escapes them: still a useful line
        self.log(c, msg, stream, torn=torn)
        return 1

    def write_n(self, n: int, mix: Optional[Mix] = None,
                containers: Optional[list[Container]] = None) -> None:
        """Writes n generated lines at once (no pacing), round robin."""
        mix = mix or Mix()
        i = 0
        while i < n:
            cs = containers or self.containers
            c = cs[i % len(cs)]
            i += self.write_generated(c, mix)
        self.manifest.flush()

    def run(self, *, rate: float, duration: float, mix: Optional[Mix] = None,
            restarts: Iterable[float] = (), die_mid_line: bool = True,
            stop: Optional[threading.Event] = None,
            on_progress: Optional[Callable[["KubeletWriter"], None]] = None) -> None:
        """Writes generated lines at `rate` lines per second over the live
        containers (chosen at random, seeded) for `duration` seconds (0: until
        `stop` is set). At each time in `restarts` (seconds from the start) one
        container is restarted, in turn, dying mid-line when die_mid_line."""
        mix = mix or Mix()
        restarts = sorted(restarts)
        start = time.monotonic()
        written = 0
        next_restart = 0
        last_progress = start
        while True:
            now = time.monotonic()
            el = now - start
            if stop is not None and stop.is_set():
                break
            if duration > 0 and el >= duration:
                break
            if next_restart < len(restarts) and el >= restarts[next_restart]:
                cands = [c for c in self.containers if c.fmt == "cri"] or self.containers
                victim = cands[next_restart % len(cands)]
                mid = None
                if die_mid_line:
                    mid = ("seq=%s " % victim.next_id()).encode("ascii") + b"died mid-line " + \
                        self._payload(40)
                self.restart(victim, die_mid_line=mid)
                next_restart += 1
            due = int(rate * el) - written
            budget = min(due, max(1, int(rate / 50)))
            while budget > 0 and self.containers:
                c = self.containers[self.rng.randrange(len(self.containers))]
                n = self.write_generated(c, mix)
                written += n
                budget -= n
            self.tick()
            if on_progress and now - last_progress >= 1.0:
                last_progress = now
                on_progress(self)
            time.sleep(0.005 if due <= 0 else 0)
        self.manifest.flush()

    def close(self, *, remove_links: bool = True) -> None:
        for c in self.containers + self.dead:
            self._finish_reopen(c, reopen=False)
            if c.fd >= 0:
                os.close(c.fd)
                c.fd = -1
        if remove_links:
            self.tick(force=True)
        self.manifest.close()


def _id_of(msg: bytes) -> Optional[str]:
    if not msg.startswith(b"seq="):
        return None
    end = msg.find(b" ")
    return msg[4:end if end > 0 else len(msg)].decode("ascii", "replace")


# ---- CLI --------------------------------------------------------------------------------


def build_default_node(w: KubeletWriter, pods: int, containers: int, docker: int) -> None:
    for p in range(pods):
        ns = "team-%d" % (p % 3)
        for k in range(containers):
            w.add_container(ns, "web-%d" % p, "app-%d" % k if k else "app")
    for d in range(docker):
        w.add_container("legacy", "docker-%d" % d, "main", fmt="docker")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        description="Write container logs like the kubelet and containerd/docker would.")
    ap.add_argument("--root", required=True, help="node root: ROOT/containers, ROOT/pods")
    ap.add_argument("--rate", type=float, default=50, help="lines per second, all containers")
    ap.add_argument("--duration", type=float, default=10, help="seconds; 0 runs until SIGINT/SIGTERM")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pods", type=int, default=2)
    ap.add_argument("--containers", type=int, default=2, help="CRI containers per pod")
    ap.add_argument("--docker", type=int, default=1, help="docker json-file containers (copytruncate)")
    ap.add_argument("--max-size", type=int, default=256 * 1024, help="rotate above this size; 0: never")
    ap.add_argument("--max-files", type=int, default=5)
    ap.add_argument("--restart-at", type=float, action="append", default=[],
                    help="seconds from the start at which a container restarts (repeatable)")
    ap.add_argument("--restart-every", type=float, default=0, help="restart a container this often")
    ap.add_argument("--no-die-mid-line", action="store_true",
                    help="restarted containers finish their last line")
    ap.add_argument("--link-remove-delay", type=float, default=2.0)
    ap.add_argument("--manifest", help="write the manifest (NDJSON) here")
    ap.add_argument("--stderr", type=float, default=0.2)
    ap.add_argument("--long", type=float, default=0.0)
    ap.add_argument("--invalid-utf8", type=float, default=0.0)
    ap.add_argument("--binary", type=float, default=0.0)
    ap.add_argument("--unicode", type=float, default=0.0)
    ap.add_argument("--empty", type=float, default=0.0)
    ap.add_argument("--interleave", type=float, default=0.0)
    ap.add_argument("--torn", type=float, default=0.0)
    ap.add_argument("--huge", type=int, default=0, help="5 MiB lines written at the start")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    w = KubeletWriter(a.root, seed=a.seed, max_size=a.max_size or None, max_files=a.max_files,
                      manifest=a.manifest, link_remove_delay=a.link_remove_delay,
                      keep_manifest=False)
    build_default_node(w, a.pods, a.containers, a.docker)
    for _ in range(a.huge):
        c = w.containers[0]
        w.log(c, ("seq=%s " % c.next_id()).encode() + w._payload(5 * 1024 * 1024 - 40))
    restarts = list(a.restart_at)
    if a.restart_every > 0:
        horizon = a.duration if a.duration > 0 else 24 * 3600
        t = a.restart_every
        while t < horizon:
            restarts.append(t)
            t += a.restart_every
    mix = Mix(stderr=a.stderr, long=a.long, invalid_utf8=a.invalid_utf8, binary=a.binary,
              unicode=a.unicode, empty=a.empty, interleave=a.interleave, torn=a.torn)

    def progress(wr: KubeletWriter) -> None:
        if not a.quiet:
            print("kubelet_writer: %(lines)d lines, %(rotations)d rotations, "
                  "%(copytruncates)d copytruncates, %(restarts)d restarts" % wr.stats,
                  file=sys.stderr, flush=True)

    t0 = time.monotonic()
    try:
        w.run(rate=a.rate, duration=a.duration, mix=mix, restarts=restarts,
              die_mid_line=not a.no_die_mid_line, stop=stop, on_progress=progress)
    finally:
        w.close()
    summary = dict(w.stats)
    summary["records"] = w.manifest.count
    summary["seconds"] = round(time.monotonic() - t0, 3)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
