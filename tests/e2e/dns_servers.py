"""DNS servers for the dns_probe end-to-end tests, on 127.0.0.1 free ports.

StubDNS is a small authoritative-looking server in the test process (UDP and
TCP on the same port) that answers by the first label of the name asked:

    ok.*       NOERROR, one A record        two.*     NOERROR, two A records
    nx.*       NXDOMAIN                     fail.*    SERVFAIL
    drop.*     nothing at all (the client times out)
    big.*      over UDP: TC set and no records; over TCP: three A records
    wrongid.*  first a reply with another id, then one for another question,
               then the right answer (the client must skip the first two)
    garbage.*  our id and question, then a record whose name is a
               compression pointer to itself (a malformed answer)
    tcpclose.* TC over UDP; over TCP the connection is closed unanswered
    tcpjunk.*  TC over UDP; over TCP a message of 5 bytes (no header)
    anything else: NOERROR without records (CoreDNS' health checks ask ". NS")

It counts the queries it got per (protocol, name). The messages are built
by hand here, independently of drover's encoder.

CoreDNS runs the real binary ($COREDNS_BIN, scripts/servers/coredns.sh)
with a Corefile of the test: a cluster.local zone from a zone file, and a
`.` block that forwards to a StubDNS.
"""

from __future__ import annotations

import collections
import os
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from typing import Optional

from drover_e2e import HOST, free_port


# ---- the stub -------------------------------------------------------------------------------


def parse_query(msg: bytes) -> Optional[tuple[int, str, int, bytes]]:
    """(id, lower-case name, qtype, the question's bytes) of a query, or None."""
    if len(msg) < 12:
        return None
    qid, _flags, qd = struct.unpack("!HHH", msg[:6])
    if qd != 1:
        return None
    labels, off = [], 12
    while off < len(msg) and msg[off] != 0:
        n = msg[off]
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace").lower())
        off += 1 + n
    off += 1
    if off + 4 > len(msg):
        return None
    qtype = struct.unpack("!H", msg[off:off + 2])[0]
    return qid, ".".join(labels), qtype, msg[12:off + 4]


def a_record(ip: str) -> bytes:
    # the name is a compression pointer to the question's (offset 12)
    return b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + socket.inet_aton(ip)


def reply(qid: int, question: bytes, *, rcode: int = 0, answers: list[bytes] = (),
          tc: bool = False) -> bytes:
    flags = 0x8180 | (0x0200 if tc else 0) | rcode  # QR, RD, RA
    return struct.pack("!HHHHHH", qid, flags, 1, len(answers), 0, 0) + question + b"".join(answers)


class StubDNS:
    def __init__(self):
        self.port = free_port()
        self.queries: collections.Counter = collections.Counter()
        self.lock = threading.Lock()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((HOST, self.port))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((HOST, self.port))
        self.tcp.listen(16)
        self.stopping = False
        self.threads = [threading.Thread(target=self._serve_udp, daemon=True),
                        threading.Thread(target=self._serve_tcp, daemon=True)]
        for t in self.threads:
            t.start()

    @property
    def address(self) -> str:
        return "%s:%d" % (HOST, self.port)

    def count(self, proto: str, name: str) -> int:
        with self.lock:
            return self.queries[(proto, name)]

    def answers(self, msg: bytes, proto: str) -> list[bytes]:
        """The datagrams (or TCP messages) that answer one query."""
        q = parse_query(msg)
        if q is None:
            return []
        qid, name, _qtype, question = q
        with self.lock:
            self.queries[(proto, name)] += 1
        first = name.split(".", 1)[0]
        if first == "ok":
            return [reply(qid, question, answers=[a_record("192.0.2.1")])]
        if first == "two":
            return [reply(qid, question, answers=[a_record("192.0.2.1"), a_record("192.0.2.2")])]
        if first == "nx":
            return [reply(qid, question, rcode=3)]
        if first == "fail":
            return [reply(qid, question, rcode=2)]
        if first == "drop":
            return []
        if first == "big":
            if proto == "udp":
                return [reply(qid, question, tc=True)]
            return [reply(qid, question, answers=[a_record("192.0.2.%d" % i) for i in (1, 2, 3)])]
        if first in ("tcpclose", "tcpjunk"):
            if proto == "udp":
                return [reply(qid, question, tc=True)]
            return [b""] if first == "tcpclose" else [b"junk!"]
        if first == "wrongid":
            other = parse_query(build_query((qid + 1) & 0xFFFF, "other.example.test"))[3]
            return [reply((qid + 1) & 0xFFFF, question, answers=[a_record("192.0.2.9")]),
                    reply(qid, other, answers=[a_record("192.0.2.8")]),
                    reply(qid, question, answers=[a_record("192.0.2.1")])]
        if first == "garbage":
            at = 12 + len(question)
            bad = struct.pack("!BB", 0xC0 | (at >> 8), at & 0xFF) + struct.pack("!HHIH", 1, 1, 30, 0)
            return [struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + question + bad]
        return [reply(qid, question)]

    def _serve_udp(self) -> None:
        while not self.stopping:
            try:
                msg, peer = self.udp.recvfrom(4096)
            except OSError:
                return
            for out in self.answers(msg, "udp"):
                try:
                    self.udp.sendto(out, peer)
                except OSError:
                    pass

    def _serve_tcp(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_conn, args=(conn,), daemon=True).start()

    def _serve_conn(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            with conn:
                while True:
                    head = _recv_exact(conn, 2)
                    if not head:
                        return
                    msg = _recv_exact(conn, struct.unpack("!H", head)[0])
                    if msg is None:
                        return
                    for out in self.answers(msg, "tcp"):
                        if not out:
                            return  # close without answering
                        conn.sendall(struct.pack("!H", len(out)) + out)
        except OSError:
            return

    def stop(self) -> None:
        self.stopping = True
        for s in (self.udp, self.tcp):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in self.threads:
            t.join(5)


def _recv_exact(conn: socket.socket, n: int) -> Optional[bytes]:
    buf = b""
    while len(buf) < n:
        part = conn.recv(n - len(buf))
        if not part:
            return None
        buf += part
    return buf


def build_query(qid: int, name: str, qtype: int = 1) -> bytes:
    q = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\x00"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", qtype, 1)


def ask(port: int, name: str, timeout: float = 2.0) -> Optional[bytes]:
    """One UDP query to 127.0.0.1:port; the reply or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(build_query(0x1234, name), (HOST, port))
        try:
            return s.recv(4096)
        except socket.timeout:
            return None


# ---- CoreDNS ---------------------------------------------------------------------------------

ZONE = """$ORIGIN cluster.local.
@ 3600 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 30
@ 3600 IN NS ns.dns.cluster.local.
ns.dns 3600 IN A 10.96.0.10
kubernetes.default.svc 30 IN A 10.96.0.1
kube-dns.kube-system.svc 30 IN A 10.96.0.10
web.apps.svc 30 IN A 10.96.5.1
web.apps.svc 30 IN A 10.96.5.2
"""


class CoreDNS:
    def __init__(self, binary: str, workdir: str, upstream: str):
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.ready_port = free_port()
        os.makedirs(workdir, exist_ok=True)
        zone = os.path.join(workdir, "cluster.local.zone")
        with open(zone, "w") as f:
            f.write(ZONE)
        self.corefile = os.path.join(workdir, "Corefile")
        with open(self.corefile, "w") as f:
            f.write("""cluster.local:%(port)d {
    bind %(host)s
    errors
    file %(zone)s
    prometheus %(host)s:%(mport)d
}
.:%(port)d {
    bind %(host)s
    errors
    health %(host)s:%(hport)d
    ready %(host)s:%(rport)d
    prometheus %(host)s:%(mport)d
    forward . %(upstream)s
}
""" % dict(port=self.port, host=HOST, zone=zone, mport=self.metrics_port,
           hport=self.health_port, rport=self.ready_port, upstream=upstream))
        self.log = os.path.join(workdir, "coredns.log")
        self.proc: Optional[subprocess.Popen] = None

    @property
    def address(self) -> str:
        return "%s:%d" % (HOST, self.port)

    @property
    def metrics_address(self) -> str:
        return "%s:%d" % (HOST, self.metrics_port)

    def start(self, timeout: float = 30.0) -> "CoreDNS":
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen([self.binary, "-conf", self.corefile],
                                         stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("coredns exited (rc=%s):\n%s" % (self.proc.returncode,
                                                                     self.log_text()))
            try:
                with urllib.request.urlopen("http://%s:%d/ready" % (HOST, self.ready_port),
                                            timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("coredns not ready within %.0fs:\n%s" % (timeout, self.log_text()))

    def log_text(self) -> str:
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
