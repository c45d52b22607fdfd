#!/usr/bin/env python3
"""Counting HTTP sink for log-agent benchmarks (loopback only).

Accepts POST/PUT bodies in any of these shapes, optionally gzip-compressed
(Content-Encoding: gzip, or a gzip magic number):

  * Loki push protobuf  snappy (block format) compressed logproto.PushRequest,
                     Content-Type application/x-protobuf (or no Content-Type on a
                     Loki push path), as Loki reads it: the body is snappy-decoded
                     whatever Content-Encoding says (gzip/deflate are undone first;
                     "snappy" or none mean the snappy block itself).  Entries are
                     counted by walking the protobuf framing; a record is long when
                     its line field is >= --long-threshold bytes (exact).
  * Loki push JSON   {"streams":[{"stream":{...},"values":[[ts,line],...]}]}
                     (any path; /loki/api/v1/push answers 204 like Loki)
  * JSON array       [ {...}, {...} ]          one record per element
  * NDJSON / JSON lines  {...}\\n{...}\\n         one record per non-empty line
  * single JSON object  {...}                   one record

Other Content-Encodings: "snappy" (block format, any body), "zstd" when the
`zstandard` module imports (it is not in the standard library; without it a
zstd body is answered 415 and counted as an error), "deflate".  Any other
Content-Encoding is answered 415 and counted as an error.
bytes_wire counts the bodies as received, bytes_decoded after every decoding
step (gzip/deflate/zstd and snappy).

`t_done` is the arrival time of the payload that completed the count.
It counts records and "long" records (a Loki line, an NDJSON line, or any
top-level string value of a JSON-array element that is >= --long-threshold
bytes; used to check that CRI/docker partial lines were merged).  When the
count reaches --expect it writes --done-file (JSON, with the wall-clock time
`t_done`) once.  On SIGTERM/SIGINT it writes --stats-file and exits.

Optional: --manifest MANIFEST.json makes it also serve a stub Kubernetes API
on 127.0.0.1 with plausible objects built from the manifest (pods with the uids
and container ids of the tree's file names, all on node --node-name, and their
namespaces): the GETs of one pod or namespace that a per-record metadata filter
makes (GET /api/v1/namespaces/<ns>/pods/<pod>, GET /api/v1/namespaces/<ns>), and
LIST + WATCH of pods (fieldSelector spec.nodeName=...) and namespaces, the way an
informer-based filter works (see "the stub Kubernetes API" below).  Its requests
are counted: k8s_gets, k8s_lists, k8s_watches (k8s_requests is their sum).

GET /stats returns the current counters as JSON.  Python 3 stdlib only
(plus `zstandard`, optional).

This is drover's copy of ../shared/bench/logs/sink.py (2026-11-25); see
README.md next to it for what differs.
"""

import argparse
import base64
import gzip
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:  # not in the standard library; used only for Content-Encoding: zstd
    import zstandard
except ImportError:  # pragma: no cover - depends on the machine
    zstandard = None


class Counters:
    def __init__(self, expect, long_threshold):
        self.lock = threading.Lock()
        self.expect = expect
        self.long_threshold = long_threshold
        self.records = 0
        self.long_records = 0
        self.requests = 0
        self.bytes_wire = 0
        self.bytes_decoded = 0
        self.errors = 0
        self.error_samples = []
        self.formats = {}
        self.t_first = None
        self.t_last = None
        self.t_done = None
        self.k8s_requests = 0      # every stub API request answered 200 (the sum of the next three)
        self.k8s_gets = 0          # GETs of one object (Fluent Bit's lookups)
        self.k8s_lists = 0         # LISTs, one per page
        self.k8s_watches = 0       # WATCHes started
        self.k8s_watch_events = 0  # events sent on watches (ADDED, BOOKMARK)
        self.k8s_no_token = 0      # stub API requests without "Authorization: Bearer ..."

    def k8s_count(self, verb, token):
        with self.lock:
            self.k8s_requests += 1
            setattr(self, "k8s_" + verb, getattr(self, "k8s_" + verb) + 1)
            if not token:
                self.k8s_no_token += 1

    def snapshot(self):
        with self.lock:
            return {
                "records": self.records, "long_records": self.long_records,
                "expect": self.expect, "requests": self.requests,
                "bytes_wire": self.bytes_wire, "bytes_decoded": self.bytes_decoded,
                "errors": self.errors, "error_samples": self.error_samples[:5],
                "formats": dict(self.formats), "t_first": self.t_first,
                "t_last": self.t_last, "t_done": self.t_done,
                "k8s_requests": self.k8s_requests, "k8s_gets": self.k8s_gets,
                "k8s_lists": self.k8s_lists, "k8s_watches": self.k8s_watches,
                "k8s_watch_events": self.k8s_watch_events, "k8s_no_token": self.k8s_no_token,
            }


STRICT = False
# Start of one Loki value tuple: ["<unix ns>","  A line's own quotes are escaped
# inside the JSON string, so this byte sequence can only start a tuple.
LOKI_VALUE = re.compile(rb'\[\s*"\d+"\s*,\s*"')


def count_loki_fast(s, thr):
    """Exact record count of a Loki push JSON body without building objects.

    Records = value tuples.  A record is "long" when the distance from its
    tuple start to the next tuple start (or the end of the body) is >= thr
    bytes; normal records are < 2 KiB apart, so only lines near thr could be
    misjudged, and the generator makes none between 2 KiB and 16 KiB.
    """
    starts = [m.start() for m in LOKI_VALUE.finditer(s)]
    if not starts:
        return 0, 0
    lng = 0
    for i in range(len(starts) - 1):
        if starts[i + 1] - starts[i] >= thr:
            lng += 1
    if len(s) - starts[-1] >= thr:
        lng += 1
    return len(starts), lng


def count_body(body, path, thr):
    """Return (records, long_records, format_name)."""
    s = body.lstrip()
    if not STRICT and s[:1] == b"{" and b'"streams"' in s[:64]:
        n, lng = count_loki_fast(s, thr)
        return n, lng, "loki_json"
    if not s:
        return 0, 0, "empty"
    if s[:1] == b"[":
        arr = json.loads(s)
        n = 0
        lng = 0
        for e in arr:
            n += 1
            if isinstance(e, dict):
                for v in e.values():
                    if isinstance(v, str) and len(v) >= thr:
                        lng += 1
                        break
            elif isinstance(e, str) and len(e) >= thr:
                lng += 1
        return n, lng, "json_array"
    if s[:1] == b"{":
        if b"\n" in s.rstrip():
            # NDJSON. A Loki body is a single JSON document; pretty-printed
            # single documents are handled by the fallback below.
            lines = [ln for ln in s.split(b"\n") if ln.strip()]
            if lines and lines[0].rstrip().endswith(b"}"):
                lng = sum(1 for ln in lines if len(ln) >= thr)
                return len(lines), lng, "ndjson"
        doc = json.loads(s)
        if isinstance(doc, dict) and isinstance(doc.get("streams"), list):
            n = 0
            lng = 0
            for st in doc["streams"]:
                vals = st.get("values") or []
                n += len(vals)
                for v in vals:
                    if len(v) > 1 and len(v[1]) >= thr:
                        lng += 1
            return n, lng, "loki_json"
        return 1, (1 if len(s) >= thr else 0), "json_object"
    raise ValueError("unsupported body (starts with %r)" % s[:16])


class UnsupportedEncoding(ValueError):
    """A Content-Encoding this sink cannot decode: answered 415, counted as an error."""


# --- snappy, block format ------------------------------------------------------
# A block is: the uncompressed length as a little-endian base-128 varint, then
# elements until the end of the input.  The low two bits of an element's tag
# byte give its type:
#   00 literal: length-1 in the upper 6 bits when < 60; 60..63 mean the
#      length-1 follows in 1..4 little-endian bytes; then the literal bytes.
#   01 copy, 1-byte offset: length-4 in bits 2-4 (lengths 4..11), offset bits
#      8-10 in bits 5-7 of the tag, offset bits 0-7 in the next byte.
#   10 copy, 2-byte offset: length-1 in the upper 6 bits (1..64), offset in the
#      next 2 bytes, little-endian.
#   11 copy, 4-byte offset: as 10 with a 4-byte offset.
# A copy repeats `length` bytes starting `offset` bytes back in the output; the
# source may overlap what it writes (offset < length: a repeated pattern).
#
# Pure Python, tuned for CPython 3.11 (the harness is stdlib only): the output
# is preallocated, and both literals and copies are single bytearray slice
# assignments (bytearray-to-bytearray is the fastest slice copy CPython has;
# memoryview targets and bytes sources measured slower).  Overlapping copies
# are built by repeating the pattern.  About 22-30 MiB/s of output on one core
# of the 2-vCPU bench machine; see bench_decode.py.

_SNAPPY_LEN_HI6 = [(t >> 2) + 1 for t in range(256)]       # literal < 60, copy-2, copy-4
_SNAPPY_LEN_COPY1 = [((t >> 2) & 7) + 4 for t in range(256)]
_SNAPPY_OFF_COPY1 = [(t >> 5) << 8 for t in range(256)]


def snappy_uncompressed_length(src):
    """(uncompressed length, position of the first element) of a snappy block."""
    n = 0
    shift = 0
    ip = 0
    while True:
        if ip >= len(src):
            raise ValueError("snappy: truncated length header")
        b = src[ip]
        ip += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, ip
        shift += 7
        if shift > 28:
            raise ValueError("snappy: length header longer than 5 bytes")


def snappy_decompress(src, max_len=1 << 30):
    """Decode one snappy block (not the framed format); returns a bytearray.

    Raises ValueError on any malformed input: a bad offset (0 or before the
    start of the output), an element running past the end of the input, or an
    output longer or shorter than the header says.
    """
    src = bytearray(src)  # bytearray slices assign fastest into a bytearray
    n, ip = snappy_uncompressed_length(src)
    if n > max_len:
        raise ValueError("snappy: uncompressed length %d over the limit %d" % (n, max_len))
    out = bytearray(n)
    end = len(src)
    # Invariants that make one check at the end enough: every slice assigned
    # has exactly the target's length unless the input is truncated (a short
    # literal at the end shrinks `out`) or a write runs past n (grows `out`);
    # copy sources are range-checked before use.
    try:
        op = _snappy_elements(src, ip, end, out)
    except IndexError:
        raise ValueError("snappy: input ends inside an element") from None
    if op != n or len(out) != n:
        raise ValueError("snappy: decoded %d bytes, header says %d" % (min(op, len(out)), n))
    return out


def _snappy_elements(src, ip, end, out):
    """Decode the elements src[ip:end] into the preallocated out; returns the output length."""
    op = 0
    hi6 = _SNAPPY_LEN_HI6
    len1 = _SNAPPY_LEN_COPY1
    off1 = _SNAPPY_OFF_COPY1
    while ip < end:
        tag = src[ip]
        t = tag & 3
        if t == 2:                        # copy, 2-byte offset (most common)
            ln = hi6[tag]
            off = src[ip + 1] | (src[ip + 2] << 8)
            ip += 3
        elif t == 0:                      # literal
            if tag < 240:
                ln = (tag >> 2) + 1
                ip += 1
            else:
                k = (tag >> 2) - 59
                ln = int.from_bytes(src[ip + 1:ip + 1 + k], "little") + 1
                ip += 1 + k
            e = op + ln
            out[op:e] = src[ip:ip + ln]
            ip += ln
            op = e
            continue
        elif t == 1:                      # copy, 1-byte offset
            ln = len1[tag]
            off = off1[tag] | src[ip + 1]
            ip += 2
        else:                             # copy, 4-byte offset
            ln = hi6[tag]
            off = int.from_bytes(src[ip + 1:ip + 5], "little")
            if ip + 5 > end:
                raise ValueError("snappy: truncated copy element")
            ip += 5
        s = op - off
        e = op + ln
        if ln <= off <= op:
            out[op:e] = out[s:s + ln]
        else:
            if off == 0 or s < 0:
                raise ValueError("snappy: copy offset %d at output position %d" % (off, op))
            # overlapping copy: the last `off` bytes repeated
            out[op:e] = (out[s:op] * (ln // off + 1))[:ln]
        op = e
    return op


# --- logproto.PushRequest -------------------------------------------------------
# Field numbers (../shared/fixtures/remote-write/PROTOCOLS.md section 3):
#   PushRequest   1 streams (repeated StreamAdapter)   2 format (string)
#   StreamAdapter 1 labels (string)  2 entries (repeated EntryAdapter)  3 hash (uint64)
#   EntryAdapter  1 timestamp (google.protobuf.Timestamp: 1 seconds, 2 nanos)
#                 2 line (string)    3 structuredMetadata (repeated LabelPairAdapter)
#                 4 parsed (repeated LabelPairAdapter, responses only)
#   LabelPairAdapter 1 name  2 value
# Tag bytes: (field << 3) | wire type; 0x0a = field 1 length-delimited, 0x12 = field 2.


def _pb_varint(b, p):
    """(value, position after it) of the varint starting at b[p]."""
    v = 0
    shift = 0
    while True:
        c = b[p]
        p += 1
        v |= (c & 0x7F) << shift
        if c < 0x80:
            return v, p
        shift += 7
        if shift >= 64:
            raise ValueError("protobuf: varint longer than 10 bytes")


def _pb_skip(b, p, wt):
    """Position after a field's value of wire type wt whose value starts at b[p]."""
    if wt == 0:
        return _pb_varint(b, p)[1]
    if wt == 2:
        ln, p = _pb_varint(b, p)
        return p + ln
    if wt == 1:
        return p + 8
    if wt == 5:
        return p + 4
    raise ValueError("protobuf: unsupported wire type %d" % wt)


def _pb_fields(b, p, end):
    """Yield (field, wire type, value start, value end) of a message in b[p:end]."""
    while p < end:
        tag, p = _pb_varint(b, p)
        wt = tag & 7
        if wt == 2:
            ln, p = _pb_varint(b, p)
            q = p + ln
        else:
            q = _pb_skip(b, p, wt)
        if q > end:
            raise ValueError("protobuf: field %d overruns its message" % (tag >> 3))
        yield tag >> 3, wt, p, q
        p = q
    if p != end:
        raise ValueError("protobuf: message overruns its length")


def _pb_label_pair_strict(b, p, end):
    for f, wt, s, e in _pb_fields(b, p, end):
        if f in (1, 2) and wt != 2:
            raise ValueError("protobuf: LabelPairAdapter field %d has wire type %d" % (f, wt))


def _entry_line_len(b, p, end, strict):
    """Length of an EntryAdapter's line (field 2); with strict, check the whole entry."""
    line_len = 0
    seen_ts = False
    for f, wt, s, e in _pb_fields(b, p, end):
        if f == 2:
            if wt != 2:
                raise ValueError("protobuf: entry line has wire type %d" % wt)
            line_len = e - s  # proto3: the last occurrence wins
        elif strict:
            if f == 1:
                if wt != 2:
                    raise ValueError("protobuf: entry timestamp has wire type %d" % wt)
                seen_ts = True
                for tf, twt, ts, te in _pb_fields(b, s, e):
                    if tf in (1, 2) and twt != 0:
                        raise ValueError("protobuf: Timestamp field %d has wire type %d" % (tf, twt))
                    if tf == 2:
                        nanos = _pb_varint(b, ts)[0]
                        if nanos > 999999999:
                            raise ValueError("protobuf: Timestamp nanos %d out of range" % nanos)
            elif f in (3, 4):
                if wt != 2:
                    raise ValueError("protobuf: entry field %d has wire type %d" % (f, wt))
                _pb_label_pair_strict(b, s, e)
    if strict and not seen_ts:
        raise ValueError("protobuf: entry without timestamp")
    return line_len


def _count_stream(b, p, end, thr, strict):
    """(entries, long entries) of one StreamAdapter in b[p:end]."""
    n = 0
    lng = 0
    labels = None
    while p < end:
        if b[p] == 0x12:                  # entries: the hot loop
            ln = b[p + 1]
            if ln < 0x80:
                p += 2
            else:
                ln, p = _pb_varint(b, p + 1)
            q = p + ln
            if q > end:
                raise ValueError("protobuf: entry overruns its stream")
            n += 1
            # line length <= entry length: only entries >= thr can hold a long line
            if ln >= thr or strict:
                if _entry_line_len(b, p, q, strict) >= thr:
                    lng += 1
            p = q
            continue
        tag, p = _pb_varint(b, p)
        wt = tag & 7
        q = _pb_skip(b, p, wt)
        if q > end:
            raise ValueError("protobuf: stream field %d overruns its stream" % (tag >> 3))
        if strict and tag >> 3 == 1:
            if wt != 2:
                raise ValueError("protobuf: stream labels have wire type %d" % wt)
            labels = bytes(b[_pb_varint(b, p)[1]:q])
        elif strict and tag >> 3 == 3 and wt != 0:
            raise ValueError("protobuf: stream hash has wire type %d" % wt)
        p = q
    if strict:
        if not labels or not (labels.startswith(b"{") and labels.endswith(b"}")) or labels == b"{}":
            raise ValueError("protobuf: stream labels %r are not a label set" % (labels,))
        labels.decode("utf-8")
    return n, lng


def count_loki_proto(b, thr, strict=False):
    """(entries, long entries) of a decoded logproto.PushRequest, exactly.

    Walks the framing only: top-level streams, then each stream's entries by
    their length prefixes; an entry's own fields are read only when it is at
    least thr bytes long (a line >= thr needs an entry >= thr).  strict parses
    every entry and its timestamp, and checks wire types and the stream labels.
    """
    try:
        return _count_push_request(b, thr, strict)
    except IndexError:
        raise ValueError("protobuf: body ends inside a field") from None


def _count_push_request(b, thr, strict):
    n = 0
    lng = 0
    p = 0
    end = len(b)
    while p < end:
        tag, p = _pb_varint(b, p)
        wt = tag & 7
        if tag == 0x0A:                   # streams
            ln, p = _pb_varint(b, p)
            q = p + ln
            if q > end:
                raise ValueError("protobuf: stream overruns the request")
            sn, sl = _count_stream(b, p, q, thr, strict)
            n += sn
            lng += sl
            p = q
        else:
            if strict and tag >> 3 == 1:
                raise ValueError("protobuf: streams have wire type %d" % wt)
            p = _pb_skip(b, p, wt)
    if p != end:
        raise ValueError("protobuf: request overruns the body")
    return n, lng


# --- the stub Kubernetes API ---------------------------------------------------
# Built from the manifest: one Pod per (namespace, pod) of the tree, with the uid
# and container ids of its log files' names, all on one node (--node-name), and
# one Namespace per namespace.  Objects never change during a run, so every
# object gets a resourceVersion once, from one counter (as etcd's revision), and
# a LIST answers the highest one.  Verbs:
#
#   GET   /api/v1/namespaces/<ns>/pods/<pod>, /api/v1/namespaces/<ns>   (one object)
#   LIST  /api/v1/pods, /api/v1/namespaces/<ns>/pods, /api/v1/namespaces
#         fieldSelector (pods: spec.nodeName, metadata.name, metadata.namespace,
#         status.phase; namespaces: metadata.name, status.phase; = == !=),
#         labelSelector (equality-based: k=v k==v k!=v k !k), limit + continue
#   WATCH the same paths with watch=1|true: chunked newline-delimited JSON events.
#         From resourceVersion "" or "0": an ADDED event per object first (the API's
#         synthetic initial events); from a number: the objects newer than it (none
#         after a LIST of the same collection).  Then, with allowWatchBookmarks=true,
#         a BOOKMARK every --k8s-bookmark-interval seconds; the stream ends cleanly
#         (last chunk) at timeoutSeconds (default 1800) or when the sink stops.
#
# Unsupported selectors, a malformed continue token or resourceVersion: 400 with a
# Status object, as the API server answers.  Other query parameters are ignored.

STUB_NODE = "bench-node-1"
STUB_FIRST_RV = 1000


def make_k8s_objects(manifest_path):
    pods = {}
    namespaces = set()
    if not manifest_path:
        return pods, namespaces
    with open(manifest_path) as f:
        m = json.load(f)
    for e in m.get("per_file", []):
        key = (e["namespace"], e["pod"])
        namespaces.add(e["namespace"])
        p = pods.setdefault(key, {"uid": e["uid"], "containers": []})
        p["containers"].append((e["container"], e["container_id"]))
    return pods, namespaces


def pod_object(ns, name, info, node=STUB_NODE, rv=None):
    app = re.sub(r"-[0-9a-f]{10}-[a-z0-9]{5}$|-\d+$", "", name)
    containers = [{"name": c, "image": "registry.example.com/%s:1.4.2" % c} for c, _ in info["containers"]]
    statuses = [{"name": c, "ready": True, "restartCount": 0,
                 "image": "registry.example.com/%s:1.4.2" % c,
                 "imageID": "registry.example.com/%s@sha256:%s" % (c, cid),
                 "containerID": "containerd://%s" % cid} for c, cid in info["containers"]]
    obj = {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "name": name, "namespace": ns, "uid": info["uid"],
            "labels": {"app": app, "app.kubernetes.io/name": app, "pod-template-hash": "7d9f8b6c5",
                       "team": ns},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090",
                            "kubectl.kubernetes.io/default-container": info["containers"][0][0]},
            "creationTimestamp": "2026-11-23T09:00:00Z",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": app + "-7d9f8b6c5",
                                 "uid": "00000000-0000-4000-8000-000000000001", "controller": True}],
        },
        "spec": {"nodeName": node, "containers": containers, "serviceAccountName": "default"},
        "status": {"phase": "Running", "podIP": "10.244.1.23", "hostIP": "192.0.2.10",
                   "containerStatuses": statuses},
    }
    if rv is not None:
        obj["metadata"]["resourceVersion"] = str(rv)
    return obj


def namespace_object(ns, rv=None):
    obj = {"kind": "Namespace", "apiVersion": "v1",
           "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}, "annotations": {}}}
    if rv is not None:
        obj["metadata"]["resourceVersion"] = str(rv)
        obj["metadata"]["uid"] = "00000000-0000-4000-9000-%012d" % rv
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}
    return obj


class K8sError(Exception):
    """An API error answered as a Status object."""

    def __init__(self, code, reason, message):
        super().__init__(message)
        self.code = code
        self.reason = reason


def k8s_status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


_POD_FIELDS = {
    "metadata.name": lambda o: o["metadata"]["name"],
    "metadata.namespace": lambda o: o["metadata"]["namespace"],
    "spec.nodeName": lambda o: o["spec"].get("nodeName", ""),
    "status.phase": lambda o: o["status"].get("phase", ""),
}
_NAMESPACE_FIELDS = {
    "metadata.name": lambda o: o["metadata"]["name"],
    "status.phase": lambda o: o["status"].get("phase", ""),
}


def parse_field_selector(sel, fields):
    """[(getter, want_equal, value)] of a fieldSelector; K8sError 400 when unsupported."""
    reqs = []
    for part in sel.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"^([^!=\s]+)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise K8sError(400, "BadRequest", "invalid field selector: %r" % part)
        if m.group(1) not in fields:
            raise K8sError(400, "BadRequest", "field label not supported: %s" % m.group(1))
        reqs.append((fields[m.group(1)], m.group(2) != "!=", m.group(3).strip()))
    return reqs


def parse_label_selector(sel):
    """[(key, op, value)] of an equality-based labelSelector; op is = != exists !exists."""
    reqs = []
    for part in sel.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"^([A-Za-z0-9._/-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)$", part)
        if m:
            reqs.append((m.group(1), "!=" if m.group(2) == "!=" else "=", m.group(3)))
        elif re.match(r"^!\s*[A-Za-z0-9._/-]+$", part):
            reqs.append((part[1:].strip(), "!exists", None))
        elif re.match(r"^[A-Za-z0-9._/-]+$", part):
            reqs.append((part, "exists", None))
        else:  # set-based (in, notin) and anything else
            raise K8sError(400, "BadRequest",
                           "label selector %r: the stub API takes equality-based requirements only" % part)
    return reqs


def selected(obj, freqs, lreqs):
    for get, eq, val in freqs:
        if (get(obj) == val) != eq:
            return False
    labels = obj["metadata"].get("labels") or {}
    for key, op, val in lreqs:
        if op == "=" and labels.get(key) != val:
            return False
        if op == "!=" and labels.get(key) == val:
            return False
        if op == "exists" and key not in labels:
            return False
        if op == "!exists" and key in labels:
            return False
    return True


class K8sStub:
    """The objects and the verbs of the stub API (see the comment above)."""

    def __init__(self, pods, namespaces, node=STUB_NODE, bookmark_interval=5.0):
        self.node = node
        self.bookmark_interval = bookmark_interval
        self.stopping = threading.Event()
        rv = STUB_FIRST_RV
        self.namespaces = {}
        for ns in sorted(namespaces):
            rv += 1
            self.namespaces[ns] = namespace_object(ns, rv)
        self.pods = {}
        for key in sorted(pods):
            rv += 1
            self.pods[key] = pod_object(key[0], key[1], pods[key], node, rv)
        self.rv = rv  # the collections' resourceVersion: nothing changes after this

    def collection(self, path):
        """(kind, objects, field getters) of a LIST/WATCH path, or None."""
        if path == "/api/v1/pods":
            return "Pod", list(self.pods.values()), _POD_FIELDS
        if path == "/api/v1/namespaces":
            return "Namespace", list(self.namespaces.values()), _NAMESPACE_FIELDS
        m = re.match(r"^/api/v1/namespaces/([^/]+)/pods$", path)
        if m:
            return "Pod", [o for (ns, _), o in self.pods.items() if ns == m.group(1)], _POD_FIELDS
        return None

    @staticmethod
    def select(objs, fields, q):
        freqs = parse_field_selector(q.get("fieldSelector", ""), fields)
        lreqs = parse_label_selector(q.get("labelSelector", ""))
        return [o for o in objs if selected(o, freqs, lreqs)]

    def list(self, kind, objs, fields, q):
        """The body of a LIST (one page)."""
        objs = self.select(objs, fields, q)
        start = 0
        if q.get("continue"):
            try:
                tok = json.loads(base64.b64decode(q["continue"], validate=True))
                start = int(tok["start"])
                if tok["rv"] != self.rv or not 0 <= start <= len(objs):
                    raise ValueError
            except (ValueError, KeyError, TypeError):
                raise K8sError(400, "BadRequest", "invalid continue token") from None
        limit = q.get("limit", "")
        try:
            limit = int(limit) if limit else 0
        except ValueError:
            raise K8sError(400, "BadRequest", "invalid limit %r" % limit) from None
        end = start + limit if limit > 0 else len(objs)
        meta = {"resourceVersion": str(self.rv)}
        if end < len(objs):
            meta["continue"] = base64.b64encode(json.dumps({"rv": self.rv, "start": end}).encode()).decode()
            meta["remainingItemCount"] = len(objs) - end
        items = []
        for o in objs[start:end]:  # a list's items carry no kind/apiVersion
            items.append({k: v for k, v in o.items() if k not in ("kind", "apiVersion")})
        return {"kind": kind + "List", "apiVersion": "v1", "metadata": meta, "items": items}

    def watch_plan(self, kind, objs, fields, q):
        """(initial events, bookmarks wanted, seconds until the stream ends) of a WATCH."""
        objs = self.select(objs, fields, q)
        rv = q.get("resourceVersion", "")
        if rv in ("", "0"):
            since = -1
        else:
            try:
                since = int(rv)
            except ValueError:
                raise K8sError(400, "BadRequest", "invalid resourceVersion %r" % rv) from None
        initial = [{"type": "ADDED", "object": o} for o in objs
                   if int(o["metadata"]["resourceVersion"]) > since]
        try:
            timeout = float(q.get("timeoutSeconds") or 1800)
        except ValueError:
            raise K8sError(400, "BadRequest", "invalid timeoutSeconds") from None
        bookmarks = q.get("allowWatchBookmarks", "") in ("true", "1")
        return initial, bookmarks, max(0.0, timeout)

    def bookmark(self, kind):
        return {"type": "BOOKMARK",
                "object": {"kind": kind, "apiVersion": "v1",
                           "metadata": {"resourceVersion": str(self.rv)}}}


def zstd_decompress(raw):
    if zstandard is None:
        raise UnsupportedEncoding("Content-Encoding zstd: this sink cannot decode zstd "
                                  "(the Python module `zstandard` is not installed)")
    import io
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True) as r:
        return r.read()


def is_loki_protobuf(ctype, path, body):
    """Loki reads a push as protobuf when Content-Type says so or is absent."""
    if "protobuf" in ctype:
        return True
    return (not ctype and "/loki/api/v1/push" in path
            and body[:1] not in (b"{", b"[", b" ", b"\t", b"\r", b"\n", b""))


def decode_and_count(raw, enc, path, thr, ctype=""):
    """Return (decoded body, records, long records, format name)."""
    body = raw
    proto = "protobuf" in ctype
    if "gzip" in enc or (not proto and raw[:2] == b"\x1f\x8b"):
        body = gzip.decompress(raw)
    elif "deflate" in enc:
        body = zlib.decompress(raw)
    elif "zstd" in enc:
        body = zstd_decompress(raw)
    elif enc and enc not in ("identity", "snappy"):
        raise UnsupportedEncoding("unsupported Content-Encoding %s" % enc)
    if is_loki_protobuf(ctype, path, body):
        # Loki: a protobuf push is a snappy block whatever Content-Encoding says
        body = snappy_decompress(body)
        n, lng = count_loki_proto(body, thr, STRICT)
        return body, n, lng, "loki_protobuf"
    if "snappy" in enc:
        body = snappy_decompress(body)
    n, lng, fmt = count_body(body, path, thr)
    return body, n, lng, fmt


class Recorder:
    """Applies counted payloads to the counters; writes the done file once."""

    def __init__(self, ctr, done_file, quiet_errors):
        self.ctr = ctr
        self.done_file = done_file
        self.quiet_errors = quiet_errors

    def record(self, t_arrival, raw, enc, path, ctype=""):
        """None when counted, else (HTTP status, error message)."""
        ctr = self.ctr
        try:
            body, n, lng, fmt = decode_and_count(raw, enc, path, ctr.long_threshold, ctype)
        except Exception as e:  # malformed payload
            with ctr.lock:
                ctr.errors += 1
                if len(ctr.error_samples) < 5:
                    ctr.error_samples.append("%s: %s" % (path, e))
            if not self.quiet_errors:
                sys.stderr.write("sink: bad request on %s: %s\n" % (path, e))
            return (415 if isinstance(e, UnsupportedEncoding) else 400), str(e)
        reached = False
        with ctr.lock:
            ctr.requests += 1
            ctr.bytes_wire += len(raw)
            ctr.bytes_decoded += len(body)
            ctr.records += n
            ctr.long_records += lng
            ctr.formats[fmt] = ctr.formats.get(fmt, 0) + 1
            if ctr.t_first is None or t_arrival < ctr.t_first:
                ctr.t_first = t_arrival
            if ctr.t_last is None or t_arrival > ctr.t_last:
                ctr.t_last = t_arrival
            if ctr.expect and ctr.t_done is None and ctr.records >= ctr.expect:
                # t_done is when the completing payload ARRIVED, not when it was counted
                ctr.t_done = t_arrival
                reached = True
        if reached and self.done_file:
            tmp = self.done_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump(ctr.snapshot(), f)
            os.rename(tmp, self.done_file)
        return None


def build_handler(ctr, recorder, stub):

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "bench-sink/1"

        def log_message(self, fmt, *args):  # silence per-request logging
            pass

        def _reply(self, code, body=b"", ctype="application/json"):
            self.send_response(code)
            if code != 204:
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and code != 204:
                self.wfile.write(body)

        def _read_body(self):
            te = (self.headers.get("Transfer-Encoding") or "").lower()
            if "chunked" in te:
                parts = []
                while True:
                    line = self.rfile.readline()
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(parts)
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def do_POST(self):
            raw = self._read_body()
            now = time.time()  # the payload has fully arrived
            enc = (self.headers.get("Content-Encoding") or "").lower()
            ctype = (self.headers.get("Content-Type") or "").lower()
            err = recorder.record(now, raw, enc, self.path, ctype)
            if err:
                self._reply(err[0], json.dumps({"error": "bad payload: %s" % err[1]}).encode())
            elif "/loki/api/v1/push" in self.path:
                self._reply(204)
            else:
                self._reply(200, b"{}")

        do_PUT = do_POST

        def do_GET(self):
            path, _, query = self.path.partition("?")
            path = path.rstrip("/")
            if path == "/stats":
                self._reply(200, json.dumps(ctr.snapshot()).encode())
                return
            if path in ("/ready", "/healthz", "/readyz", ""):
                self._reply(200, b"ok", "text/plain")
                return
            if stub is None or not path.startswith("/api/"):
                self._reply(404, b'{"kind":"Status","status":"Failure","code":404}')
                return
            token = (self.headers.get("Authorization") or "").startswith("Bearer ")
            q = {k: v[-1] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}
            try:
                coll = stub.collection(path)
                if coll and q.get("watch") in ("1", "true"):
                    plan = stub.watch_plan(*coll, q)
                    ctr.k8s_count("watches", token)
                    self._watch(coll[0], *plan)
                    return
                if coll:
                    body = json.dumps(stub.list(*coll, q)).encode()
                    ctr.k8s_count("lists", token)
                    self._reply(200, body)
                    return
            except K8sError as e:
                self._reply(e.code, json.dumps(k8s_status(e.code, e.reason, str(e))).encode())
                return
            m = re.match(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)$", path)
            if m and (m.group(1), m.group(2)) in stub.pods:
                ctr.k8s_count("gets", token)
                self._reply(200, json.dumps(stub.pods[(m.group(1), m.group(2))]).encode())
                return
            m = re.match(r"^/api/v1/namespaces/([^/]+)$", path)
            if m and m.group(1) in stub.namespaces:
                ctr.k8s_count("gets", token)
                self._reply(200, json.dumps(stub.namespaces[m.group(1)]).encode())
                return
            self._reply(404, json.dumps(k8s_status(404, "NotFound", "%s not found" % path)).encode())

        def _watch(self, kind, initial, bookmarks, timeout):
            """A watch stream: chunked, one JSON event per line, ended cleanly."""
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            end = time.monotonic() + timeout
            pending = initial
            try:
                while True:
                    for ev in pending:
                        data = json.dumps(ev).encode() + b"\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                        with ctr.lock:
                            ctr.k8s_watch_events += 1
                    self.wfile.flush()
                    left = end - time.monotonic()
                    if left <= 0:
                        break
                    wait = min(left, stub.bookmark_interval) if bookmarks else left
                    if stub.stopping.wait(wait):
                        break
                    pending = [stub.bookmark(kind)] if bookmarks and time.monotonic() < end else []
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:  # the client went away
                self.close_connection = True

    return Handler


def main(argv=None):
    ap = argparse.ArgumentParser(description="counting HTTP sink (Loki push protobuf or JSON / JSON / NDJSON)")
    ap.add_argument("--host", default="127.0.0.1", help="bind address (keep it on loopback)")
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port (see --port-file)")
    ap.add_argument("--port-file", help="write the bound port here once listening")
    ap.add_argument("--expect", type=int, default=0, help="records to wait for")
    ap.add_argument("--long-threshold", type=int, default=16384)
    ap.add_argument("--done-file", help="written (JSON) when --expect records have arrived")
    ap.add_argument("--stats-file", help="written (JSON) on SIGTERM/SIGINT")
    ap.add_argument("--manifest", help="gen_pods manifest.json: also serve a stub Kubernetes API")
    ap.add_argument("--node-name", default=STUB_NODE,
                    help="spec.nodeName of every pod of the stub API (default %(default)s)")
    ap.add_argument("--k8s-bookmark-interval", type=float, default=5.0,
                    help="seconds between BOOKMARK events on a watch that allows them")
    ap.add_argument("--quiet-errors", action="store_true")
    ap.add_argument("--strict", action="store_true",
                    help="fully parse Loki push bodies: JSON with json.loads, protobuf entry by entry "
                         "with wire-type, timestamp and label checks (default: exact count by a byte "
                         "scan / the protobuf framing, much cheaper; see count_body, count_loki_proto)")
    a = ap.parse_args(argv)
    if not (a.host.startswith("127.") or a.host in ("::1", "localhost")):
        sys.exit("sink: refusing to bind a non-loopback address")

    ctr = Counters(a.expect, a.long_threshold)
    stub = None
    if a.manifest:
        stub = K8sStub(*make_k8s_objects(a.manifest), node=a.node_name,
                       bookmark_interval=a.k8s_bookmark_interval)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 128
    global STRICT
    STRICT = a.strict
    recorder = Recorder(ctr, a.done_file, a.quiet_errors)
    srv = ThreadingHTTPServer((a.host, a.port), build_handler(ctr, recorder, stub))
    port = srv.server_address[1]
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write("%d\n" % port)
        os.rename(a.port_file + ".tmp", a.port_file)

    def stop(signum, frame):
        if stub:
            stub.stopping.set()  # open watches end cleanly
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    srv.serve_forever(poll_interval=0.2)
    snap = ctr.snapshot()
    if a.stats_file:
        with open(a.stats_file, "w") as f:
            json.dump(snap, f)
    print(json.dumps(snap))
    return 0


if __name__ == "__main__":
    sys.exit(main())
