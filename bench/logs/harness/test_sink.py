"""Tests of the copy's sink.py additions: snappy block decoding and Loki protobuf counting.

    python3 -m pytest -q bench/logs/harness/test_sink.py

Protobuf bodies are built by a tiny encoder here (no protobuf library).  Snappy
is checked three ways: hand-built element streams covering every tag type,
a reference compressor (libsnappy through a small C program compiled with
`cc ... -lsnappy`, skipped when cc or libsnappy is missing) whose output the
sink must decode byte for byte, and the sink end to end over HTTP.
"""

import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
import sink  # noqa: E402

THR = 16384
PROTO = "application/x-protobuf"

# --- a tiny protobuf encoder ------------------------------------------------


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(num, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_varint(num, v):
    return varint(num << 3) + varint(v)


def timestamp(sec, nanos):
    out = b""
    if sec:
        out += field_varint(1, sec)
    if nanos:
        out += field_varint(2, nanos)
    return out


def entry(line, sec=1795428000, nanos=123456789, metadata=(), ts=True):
    out = field_bytes(1, timestamp(sec, nanos)) if ts else b""
    out += field_bytes(2, line)
    for k, v in metadata:
        out += field_bytes(3, field_bytes(1, k) + field_bytes(2, v))
    return out


def stream(labels, lines, hash_=None, **kw):
    out = field_bytes(1, labels) if labels is not None else b""
    for ln in lines:
        out += field_bytes(2, entry(ln, **kw))
    if hash_ is not None:
        out += field_varint(3, hash_)
    return out


def push_request(streams, fmt=None):
    out = b"".join(field_bytes(1, s) for s in streams)
    if fmt is not None:
        out += field_bytes(2, fmt)
    return out


# --- a snappy element writer (every tag type, by hand) ----------------------


def s_len(n):
    return varint(n)


def s_lit(data):
    n = len(data) - 1
    if n < 60:
        return bytes([n << 2]) + data
    k = (n.bit_length() + 7) // 8
    return bytes([(59 + k) << 2]) + n.to_bytes(k, "little") + data


def s_copy1(off, ln):
    assert 4 <= ln <= 11 and off < 2048
    return bytes([((off >> 8) << 5) | ((ln - 4) << 2) | 1, off & 0xFF])


def s_copy2(off, ln):
    assert 1 <= ln <= 64 and off < 65536
    return bytes([((ln - 1) << 2) | 2]) + off.to_bytes(2, "little")


def s_copy4(off, ln):
    assert 1 <= ln <= 64
    return bytes([((ln - 1) << 2) | 3]) + off.to_bytes(4, "little")


def literal_only(data):
    """A valid snappy block made of literals only (what an encoder may emit for noise)."""
    out = bytearray(s_len(len(data)))
    for i in range(0, len(data), 65536):
        out += s_lit(data[i:i + 65536])
    return bytes(out)


# --- a reference snappy (libsnappy) -------------------------------------------

SNAPPYC_SRC = r"""
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    size_t cap = 1 << 16, n = 0, r;
    char *in = malloc(cap);
    while ((r = fread(in + n, 1, cap - n, stdin)) > 0) {
        n += r;
        if (n == cap) in = realloc(in, cap *= 2);
    }
    if (argc > 1 && strcmp(argv[1], "-d") == 0) {
        size_t ol;
        if (snappy_uncompressed_length(in, n, &ol) != SNAPPY_OK) return 2;
        char *o = malloc(ol + 1);
        if (snappy_uncompress(in, n, o, &ol) != SNAPPY_OK) return 3;
        fwrite(o, 1, ol, stdout);
        return 0;
    }
    size_t ol = snappy_max_compressed_length(n);
    char *o = malloc(ol);
    if (snappy_compress(in, n, o, &ol) != SNAPPY_OK) return 4;
    fwrite(o, 1, ol, stdout);
    return 0;
}
"""


def build_snappyc(dirpath):
    """Path of a compiled libsnappy filter (compress, or -d decompress), or None."""
    cc = shutil.which("cc")
    if not cc:
        return None
    src = os.path.join(dirpath, "snappyc.c")
    exe = os.path.join(dirpath, "snappyc")
    with open(src, "w") as f:
        f.write(SNAPPYC_SRC)
    r = subprocess.run([cc, "-O2", "-o", exe, src, "-lsnappy"], capture_output=True)
    return exe if r.returncode == 0 else None


@pytest.fixture(scope="session")
def snappyc(tmp_path_factory):
    exe = build_snappyc(str(tmp_path_factory.mktemp("snappyc")))
    if not exe:
        pytest.skip("no cc or no libsnappy (-lsnappy): reference snappy checks skipped")

    def run(data, decompress=False):
        r = subprocess.run([exe] + (["-d"] if decompress else []), input=data, capture_output=True)
        assert r.returncode == 0, r.stderr
        return r.stdout
    return run


def log_lines(n, seed=1, long_every=0):
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        if long_every and i % long_every == long_every - 1:
            out.append(("{\"msg\":\"%s\"}" % ("".join(rnd.choice("abcdef0123456789") for _ in range(20000)))))
            continue
        out.append('{"ts":"2026-11-23T10:00:%02d.%03dZ","level":"%s","logger":"com.example.%s",'
                   '"msg":"request done","trace_id":"%032x","status":%d}' % (
                       i % 60, i % 1000, rnd.choice(["info", "warn", "debug"]),
                       rnd.choice(["api", "db", "cache"]), rnd.getrandbits(128), rnd.choice([200, 404, 500])))
    return out


def count(body, ctype=PROTO, enc="", path="/loki/api/v1/push", thr=THR):
    return sink.decode_and_count(body, enc, path, thr, ctype)


# --- snappy decoder -------------------------------------------------------------


def test_snappy_every_element_type():
    blk = (s_len(0))
    assert sink.snappy_decompress(blk) == b""
    want = b"abcdefgh" + b"abcd" + b"abcd" * 3 + b"x" + b"x" * 40 + b"cdefgh" + b"xxxxx"
    blk = (s_len(len(want)) + s_lit(b"abcdefgh") + s_copy1(8, 4)
           + s_copy2(4, 12)                       # overlapping: "abcd" three times
           + s_lit(b"x") + s_copy2(1, 40)         # overlapping: offset 1, a run
           + s_copy4(65 - 2, 6)                   # back to "cdefgh" at position 2
           + s_copy1(35, 5))                      # inside the run of x
    assert bytes(sink.snappy_decompress(blk)) == want


def test_snappy_long_literals_every_length_width():
    rnd = random.Random(7)
    for n in (1, 59, 60, 61, 255, 256, 257, 65535, 65536, 65537, 70000, 1 << 20):
        data = bytes(rnd.getrandbits(8) for _ in range(min(n, 4096))) * (n // 4096 + 1)
        data = data[:n]
        blk = s_len(n) + s_lit(data)       # one literal: 1, 2 or 3 length bytes
        assert bytes(sink.snappy_decompress(blk)) == data, n
    # the 4-byte literal length form (tag 63 << 2) is legal too
    data = b"q" * 300
    blk = s_len(300) + bytes([63 << 2]) + (299).to_bytes(4, "little") + data
    assert bytes(sink.snappy_decompress(blk)) == data


def test_snappy_overlapping_copies_all_offsets():
    for off in range(1, 70):
        pat = bytes(range(1, off + 1))
        for ln in sorted({1, 4, 11, min(off, 64), min(off + 1, 64), 64}):
            want = pat + (pat * 70)[:ln]
            blk = s_len(len(want)) + s_lit(pat)
            blk += s_copy1(off, ln) if 4 <= ln <= 11 and off < 2048 else s_copy2(off, ln)
            assert bytes(sink.snappy_decompress(blk)) == want, (off, ln)


@pytest.mark.parametrize("blk,why", [
    (b"", "no header"),
    (b"\x80\x80\x80\x80\x80\x01", "header too long"),
    (s_len(10) + s_lit(b"abc"), "short output"),
    (s_len(3) + s_lit(b"abcd"), "long output"),
    (s_len(8) + s_lit(b"abc")[:-1], "truncated literal"),
    (s_len(8) + s_lit(b"abcd") + s_copy2(0, 4), "offset 0"),
    (s_len(8) + s_lit(b"abcd") + s_copy2(5, 4), "offset before start"),
    (s_len(8) + s_lit(b"abcd") + s_copy4(5, 4), "offset before start, 4-byte"),
    (s_len(8) + s_lit(b"abcd") + s_copy2(4, 4)[:2], "truncated copy"),
    (s_len(8) + s_lit(b"abcd") + s_copy4(4, 4)[:3], "truncated 4-byte copy"),
    (s_len(4) + s_copy2(1, 4), "copy before any literal"),
])
def test_snappy_rejects_malformed(blk, why):
    with pytest.raises((ValueError, IndexError)):
        sink.snappy_decompress(blk)


def test_snappy_against_libsnappy(snappyc):
    rnd = random.Random(42)
    cases = {
        "empty": b"",
        "one": b"x",
        "incompressible-200k": rnd.randbytes(200000),
        "zeros-1m": bytes(1 << 20),
        "run-ab": b"ab" * 300000,
        "short-period": bytes(range(7)) * 50000,
        "logs": "\n".join(log_lines(3000, long_every=700)).encode(),
        "mixed": b"".join(rnd.randbytes(rnd.randrange(1, 3000)) + b"z" * rnd.randrange(0, 5000)
                          for _ in range(300)),
    }
    for name, data in cases.items():
        blk = snappyc(data)
        assert bytes(sink.snappy_decompress(blk)) == data, name
        assert snappyc(blk, decompress=True) == data, name


def test_snappy_random_round_trip(snappyc):
    rnd = random.Random(1234)
    words = [rnd.randbytes(rnd.randrange(1, 40)) for _ in range(50)]
    for i in range(60):
        kind = i % 3
        n = rnd.choice([0, 1, 17, 4096, 65535, 65536, 65537, 300000])
        if kind == 0:      # incompressible
            data = rnd.randbytes(n)
        elif kind == 1:    # very compressible
            data = (rnd.choice(words) * (n + 1))[:n]
        else:              # words with noise: every element type libsnappy uses
            parts = []
            size = 0
            while size < n:
                w = rnd.choice(words) if rnd.random() < 0.8 else rnd.randbytes(rnd.randrange(1, 300))
                parts.append(w)
                size += len(w)
            data = b"".join(parts)[:n]
        assert bytes(sink.snappy_decompress(snappyc(data))) == data, (i, kind, n)


def test_snappy_literal_only_blocks_decode():
    rnd = random.Random(3)
    for n in (0, 5, 65536, 200001):
        data = rnd.randbytes(n)
        assert bytes(sink.snappy_decompress(literal_only(data))) == data


def test_prometheus_capture_decodes():
    # a real snappy body (Prometheus 2.42 remote write), 65,514 bytes uncompressed
    p = os.path.join(HERE, "..", "..", "..", "..", "shared", "fixtures", "remote-write", "captured",
                     "prometheus-2.42-writerequest-samples.snappy.bin")
    if not os.path.exists(p):
        pytest.skip("shared fixtures not present")
    with open(p, "rb") as f:
        out = sink.snappy_decompress(f.read())
    assert len(out) == 65514


# --- protobuf counting --------------------------------------------------------------


def snappy_block(data):
    """Our own (literal-only) snappy block: valid, so counting tests need no libsnappy."""
    return literal_only(data)


def test_count_empty_push_request():
    body = push_request([])
    assert body == b""
    dec, n, lng, fmt = count(snappy_block(body))
    assert (n, lng, fmt) == (0, 0, "loki_protobuf")
    assert bytes(dec) == b""
    # a stream without entries
    assert count(snappy_block(push_request([stream('{job="x"}', [])])))[1:3] == (0, 0)


def test_count_empty_http_body_is_an_error_for_protobuf():
    with pytest.raises(ValueError):
        count(b"")


def test_count_multi_stream_with_long_lines():
    s1 = stream('{job="drover", stream="stdout"}', ["a" * 10, "b" * (THR - 1), "c" * THR, ""])
    s2 = stream('{job="drover", stream="stderr"}', ["d" * (THR + 1), "e" * 100000, "f"], hash_=12345)
    s3 = stream('{job="x"}', ["g" * 200] * 1000)
    body = push_request([s1, s2, s3], fmt="loki")
    dec, n, lng, fmt = count(snappy_block(body))
    assert (n, lng) == (4 + 3 + 1000, 1 + 2)
    assert bytes(dec) == body


def test_count_long_threshold_is_about_the_line_not_the_entry():
    # entry is >= THR bytes (timestamp + metadata) but the line is THR-1: not long
    md = [("trace_id", "0" * 32), ("pod", "p" * 100)]
    body = push_request([stream('{a="b"}', ["x" * (THR - 1)], metadata=md)])
    assert count(snappy_block(body))[1:3] == (1, 0)
    body = push_request([stream('{a="b"}', ["x" * THR], metadata=md)])
    assert count(snappy_block(body))[1:3] == (1, 1)


def test_count_entries_with_metadata_and_no_timestamp_fields():
    # zero seconds and nanos: proto3 leaves the Timestamp message empty
    body = push_request([stream('{a="b"}', ["one", "two"], sec=0, nanos=0, metadata=[("k", "v")])])
    assert count(snappy_block(body))[1:3] == (2, 0)


def test_count_field_order_and_unknown_fields():
    # entries before labels, hash in the middle, an unknown fixed64 and fixed32 field
    e = field_bytes(2, entry("hello"))
    st = e + field_varint(3, 99) + field_bytes(1, '{a="b"}') + e + varint(9 << 3 | 1) + bytes(8) \
        + varint(10 << 3 | 5) + bytes(4) + e
    body = field_bytes(2, "loki") + field_bytes(1, st) + field_bytes(1, st)
    assert count(snappy_block(body))[1:3] == (6, 0)


def test_count_against_libsnappy_bodies(snappyc):
    lines = log_lines(20000, long_every=2500)
    streams = [stream('{namespace="ns%d", pod="p%d"}' % (i, i), lines[i::5]) for i in range(5)]
    body = push_request(streams)
    blk = snappyc(body)
    dec, n, lng, fmt = count(blk)
    assert (n, lng, fmt) == (20000, 8, "loki_protobuf")
    assert len(dec) == len(body) and len(blk) < len(body) // 2


@pytest.mark.parametrize("mut", ["truncate", "overrun", "bad_wire_type"])
def test_count_rejects_malformed_protobuf(mut):
    body = push_request([stream('{a="b"}', ["x" * 300, "y"])])
    if mut == "truncate":
        body = body[:-3]
    elif mut == "overrun":
        body = body[:1] + varint(len(body)) + body[2:]
    else:
        body = body + varint(3 << 3 | 7)
    with pytest.raises((ValueError, IndexError)):
        count(snappy_block(body))


def test_strict_counts_the_same_and_checks_more():
    body = push_request([stream('{a="b"}', ["x" * 20000, "y"], metadata=[("k", "v")]),
                         stream('{c="d"}', ["z"] * 10)])
    old = sink.STRICT
    try:
        sink.STRICT = True
        assert count(snappy_block(body))[1:3] == (12, 1)
        with pytest.raises(ValueError):   # an entry without a timestamp
            count(snappy_block(push_request([stream('{a="b"}', ["x"], ts=False)])))
        with pytest.raises(ValueError):   # a stream without labels
            count(snappy_block(push_request([stream(None, ["x"])])))
        with pytest.raises(ValueError):   # nanos out of range
            count(snappy_block(push_request([stream('{a="b"}', ["x"], nanos=1000000000)])))
        sink.STRICT = False
        assert count(snappy_block(push_request([stream('{a="b"}', ["x"], ts=False)])))[1:3] == (1, 0)
    finally:
        sink.STRICT = old


def test_content_type_and_encoding_combinations():
    body = push_request([stream('{a="b"}', ["x" * 20000, "y", "z"])])
    blk = snappy_block(body)
    want = (3, 1)
    assert count(blk, ctype=PROTO)[1:3] == want
    assert count(blk, ctype=PROTO, enc="snappy")[1:3] == want
    assert count(blk, ctype="", enc="")[1:3] == want                 # Loki's default: protobuf
    assert count(blk, ctype="", enc="snappy")[1:3] == want
    assert count(gzip.compress(blk), ctype=PROTO, enc="gzip")[1:3] == want
    dec, n, lng, fmt = count(gzip.compress(blk), ctype=PROTO, enc="gzip")
    assert len(dec) == len(body)
    # JSON bodies are unchanged by the copy, and may now come snappy-compressed
    js = json.dumps({"streams": [{"stream": {"a": "b"}, "values": [["1", "x"], ["2", "y" * 20000]]}]}).encode()
    assert count(js, ctype="application/json")[1:4] == (2, 1, "loki_json")
    assert count(snappy_block(js), ctype="application/json", enc="snappy")[1:4] == (2, 1, "loki_json")
    nd = b'{"log":"a"}\n{"log":"b"}\n'
    assert count(snappy_block(nd), ctype="application/x-ndjson", enc="snappy", path="/ingest")[1:4] == \
        (2, 0, "ndjson")


def test_zstd_without_module_is_unsupported(monkeypatch):
    monkeypatch.setattr(sink, "zstandard", None)
    with pytest.raises(sink.UnsupportedEncoding):
        count(b"\x28\xb5\x2f\xfd", ctype="application/x-ndjson", enc="zstd", path="/ingest")


def test_zstd_with_module():
    if sink.zstandard is None:
        pytest.skip("the zstandard module is not installed")
    nd = b'{"log":"a"}\n{"log":"%s"}\n' % (b"b" * 20000)
    z = sink.zstandard.ZstdCompressor().compress(nd) + sink.zstandard.ZstdCompressor().compress(nd)
    dec, n, lng, fmt = count(z, ctype="application/x-ndjson", enc="zstd", path="/ingest")
    assert (n, lng, fmt) == (4, 2, "ndjson") and len(dec) == 2 * len(nd)


# --- the sink end to end ------------------------------------------------------------


@pytest.fixture
def sink_proc(tmp_path):
    port_file = str(tmp_path / "port")
    stats_file = str(tmp_path / "stats")
    done_file = str(tmp_path / "done")
    p = subprocess.Popen([sys.executable, "-B", os.path.join(HERE, "sink.py"), "--port", "0",
                          "--port-file", port_file, "--expect", "1005", "--done-file", done_file,
                          "--stats-file", stats_file, "--quiet-errors"])
    deadline = time.time() + 20
    while not os.path.exists(port_file):
        assert p.poll() is None and time.time() < deadline
        time.sleep(0.02)
    with open(port_file) as f:
        port = int(f.read())
    yield "http://127.0.0.1:%d" % port, done_file
    p.terminate()
    p.wait(10)


def post(url, body, headers):
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_sink_http_protobuf_snappy(sink_proc, snappyc):
    url, done_file = sink_proc
    body1 = push_request([stream('{a="b"}', ["x" * 300] * 1000)])
    body2 = push_request([stream('{a="b"}', ["y" * 20000] * 2), stream('{c="d"}', ["z"] * 3)])
    blk1, blk2 = snappyc(body1), snappyc(body2)
    st, _ = post(url + "/loki/api/v1/push", blk1, {"Content-Type": PROTO})
    assert st == 204
    st, _ = post(url + "/loki/api/v1/push", blk2, {"Content-Type": PROTO, "Content-Encoding": "snappy"})
    assert st == 204
    st, msg = post(url + "/loki/api/v1/push", blk1[:-10], {"Content-Type": PROTO})
    assert st == 400 and b"snappy" in msg
    st, msg = post(url + "/ingest", b"{}\n", {"Content-Type": "application/x-ndjson", "Content-Encoding": "br"})
    assert st == 415 and b"Content-Encoding br" in msg
    with urllib.request.urlopen(url + "/stats") as r:
        stats = json.load(r)
    assert stats["records"] == 1005 and stats["long_records"] == 2
    assert stats["requests"] == 2 and stats["formats"] == {"loki_protobuf": 2}
    assert stats["bytes_wire"] == len(blk1) + len(blk2)
    assert stats["bytes_decoded"] == len(body1) + len(body2)
    assert stats["errors"] == 2
    assert os.path.exists(done_file)


# --- the stub Kubernetes API ----------------------------------------------------

K8S_FILES = [  # per_file entries as gen_pods.py writes them (only the fields the stub reads)
    ("payments", "checkout-api-59effaf74c-bbw5r", "b3fa635a-04db-44ac-a1dd-65f6034bfa92", "checkout-api"),
    ("payments", "checkout-api-59effaf74c-bbw5r", "b3fa635a-04db-44ac-a1dd-65f6034bfa92", "istio-proxy"),
    ("payments", "ledger-0", "0c2d7a1e-5b7e-4c1a-9d43-2f0f4e1a6b01", "ledger"),
    ("search", "indexer-7c9d2e1f0a-x1y2z", "9e8d7c6b-5a49-4382-a716-151413121110", "indexer"),
    ("kube-system", "coredns-5d78c9869d-abcde", "11111111-2222-4333-8444-555555555555", "coredns"),
]


def k8s_manifest(tmp_path):
    per_file = [{"namespace": ns, "pod": pod, "uid": uid, "container": c,
                 "container_id": "%064x" % (i + 1)} for i, (ns, pod, uid, c) in enumerate(K8S_FILES)]
    p = tmp_path / "manifest.json"
    p.write_text(json.dumps({"per_file": per_file}))
    return str(p)


@pytest.fixture
def stub(tmp_path):
    return sink.K8sStub(*sink.make_k8s_objects(k8s_manifest(tmp_path)), node="node-a", bookmark_interval=0.2)


def stub_list(stub, path, **q):
    return stub.list(*stub.collection(path), q)


def test_stub_objects_follow_the_manifest(stub):
    pods = stub_list(stub, "/api/v1/pods")
    assert pods["kind"] == "PodList" and len(pods["items"]) == 4
    by_uid = {p["metadata"]["uid"]: p for p in pods["items"]}
    p = by_uid["b3fa635a-04db-44ac-a1dd-65f6034bfa92"]
    assert p["metadata"]["namespace"] == "payments" and p["metadata"]["name"] == "checkout-api-59effaf74c-bbw5r"
    assert [c["name"] for c in p["spec"]["containers"]] == ["checkout-api", "istio-proxy"]
    assert [s["containerID"] for s in p["status"]["containerStatuses"]] == [
        "containerd://%064x" % 1, "containerd://%064x" % 2]
    assert p["spec"]["nodeName"] == "node-a" and p["status"]["podIP"]
    assert p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert "kind" not in p and "apiVersion" not in p  # as in a real list
    # every object has its own resourceVersion, the list the highest
    rvs = sorted(int(p["metadata"]["resourceVersion"]) for p in pods["items"])
    assert len(set(rvs)) == 4 and pods["metadata"]["resourceVersion"] == str(stub.rv) and rvs[-1] == stub.rv
    nss = stub_list(stub, "/api/v1/namespaces")
    assert nss["kind"] == "NamespaceList"
    assert [n["metadata"]["name"] for n in nss["items"]] == ["kube-system", "payments", "search"]
    assert nss["items"][1]["metadata"]["labels"] == {"kubernetes.io/metadata.name": "payments"}
    assert nss["metadata"]["resourceVersion"] == str(stub.rv)
    ns_pods = stub_list(stub, "/api/v1/namespaces/payments/pods")
    assert sorted(p["metadata"]["name"] for p in ns_pods["items"]) == [
        "checkout-api-59effaf74c-bbw5r", "ledger-0"]
    assert stub.collection("/api/v1/services") is None


def test_stub_field_and_label_selectors(stub):
    assert len(stub_list(stub, "/api/v1/pods", fieldSelector="spec.nodeName=node-a")["items"]) == 4
    assert len(stub_list(stub, "/api/v1/pods", fieldSelector="spec.nodeName==node-a")["items"]) == 4
    assert stub_list(stub, "/api/v1/pods", fieldSelector="spec.nodeName=node-b")["items"] == []
    assert len(stub_list(stub, "/api/v1/pods", fieldSelector="spec.nodeName!=node-b")["items"]) == 4
    one = stub_list(stub, "/api/v1/pods", fieldSelector="spec.nodeName=node-a,metadata.namespace=search")
    assert [p["metadata"]["name"] for p in one["items"]] == ["indexer-7c9d2e1f0a-x1y2z"]
    assert len(stub_list(stub, "/api/v1/pods", labelSelector="team=payments")["items"]) == 2
    assert len(stub_list(stub, "/api/v1/pods", labelSelector="team!=payments,app")["items"]) == 2
    assert stub_list(stub, "/api/v1/pods", labelSelector="!app")["items"] == []
    assert len(stub_list(stub, "/api/v1/namespaces", fieldSelector="metadata.name=search")["items"]) == 1
    for q in ({"fieldSelector": "spec.hostname=x"}, {"fieldSelector": "nonsense"},
              {"labelSelector": "team in (a,b)"}):
        with pytest.raises(sink.K8sError) as e:
            stub_list(stub, "/api/v1/pods", **q)
        assert e.value.code == 400
    with pytest.raises(sink.K8sError):  # namespaces have no spec.nodeName
        stub_list(stub, "/api/v1/namespaces", fieldSelector="spec.nodeName=node-a")


def test_stub_list_pages(stub):
    seen = []
    q = {"limit": "3"}
    pages = 0
    while True:
        page = stub_list(stub, "/api/v1/pods", **q)
        pages += 1
        assert page["metadata"]["resourceVersion"] == str(stub.rv)
        seen += [p["metadata"]["uid"] for p in page["items"]]
        if "continue" not in page["metadata"]:
            break
        assert page["metadata"]["remainingItemCount"] == 1
        q = {"limit": "3", "continue": page["metadata"]["continue"]}
    assert pages == 2 and len(seen) == len(set(seen)) == 4
    assert "continue" not in stub_list(stub, "/api/v1/pods", limit="500")["metadata"]
    for bad in ("bm90IGpzb24=", "%%%", base64_json({"rv": stub.rv - 1, "start": 1})):
        with pytest.raises(sink.K8sError) as e:
            stub_list(stub, "/api/v1/pods", limit="3", **{"continue": bad})
        assert e.value.code == 400


def base64_json(v):
    import base64
    return base64.b64encode(json.dumps(v).encode()).decode()


def test_stub_watch_plan(stub):
    coll = stub.collection("/api/v1/pods")
    initial, bookmarks, timeout = stub.watch_plan(*coll, {"resourceVersion": str(stub.rv),
                                                          "allowWatchBookmarks": "true",
                                                          "timeoutSeconds": "7"})
    assert initial == [] and bookmarks and timeout == 7  # nothing newer than the list
    initial, bookmarks, timeout = stub.watch_plan(*coll, {"fieldSelector": "spec.nodeName=node-a"})
    assert [e["type"] for e in initial] == ["ADDED"] * 4 and not bookmarks and timeout == 1800
    assert initial[0]["object"]["kind"] == "Pod"  # watch objects carry their kind
    newest = stub.watch_plan(*coll, {"resourceVersion": str(stub.rv - 1)})[0]
    assert [e["object"]["metadata"]["resourceVersion"] for e in newest] == [str(stub.rv)]
    with pytest.raises(sink.K8sError):
        stub.watch_plan(*coll, {"resourceVersion": "abc"})
    bm = stub.bookmark("Namespace")
    assert bm == {"type": "BOOKMARK", "object": {"kind": "Namespace", "apiVersion": "v1",
                                                 "metadata": {"resourceVersion": str(stub.rv)}}}


@pytest.fixture
def k8s_sink(tmp_path):
    port_file = str(tmp_path / "port")
    stats_file = str(tmp_path / "stats")
    p = subprocess.Popen([sys.executable, "-B", os.path.join(HERE, "sink.py"), "--port", "0",
                          "--port-file", port_file, "--stats-file", stats_file, "--quiet-errors",
                          "--manifest", k8s_manifest(tmp_path), "--node-name", "node-a",
                          "--k8s-bookmark-interval", "0.3"])
    deadline = time.time() + 20
    while not os.path.exists(port_file):
        assert p.poll() is None and time.time() < deadline
        time.sleep(0.02)
    with open(port_file) as f:
        port = int(f.read())
    yield "http://127.0.0.1:%d" % port, p, stats_file
    if p.poll() is None:
        p.terminate()
        p.wait(10)


def get(url, token="bench-dummy-token", timeout=10):
    headers = {"Authorization": "Bearer " + token} if token else {}
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_sink_k8s_list_then_watch_like_an_informer(k8s_sink):
    url, _p, _ = k8s_sink
    # the requests drover's kubernetes filter makes, percent-encoding included
    st, _, body = get(url + "/api/v1/pods?limit=500&fieldSelector=spec.nodeName%3Dnode-a")
    assert st == 200
    pods = json.loads(body)
    assert sorted(p["metadata"]["uid"] for p in pods["items"]) == sorted({u for _, _, u, _ in K8S_FILES})
    rv = pods["metadata"]["resourceVersion"]
    st, _, body = get(url + "/api/v1/namespaces?limit=500")
    assert st == 200 and len(json.loads(body)["items"]) == 3
    t0 = time.monotonic()
    st, headers, body = get(url + "/api/v1/pods?watch=1&allowWatchBookmarks=true&resourceVersion=%s"
                            "&timeoutSeconds=1&fieldSelector=spec.nodeName%%3Dnode-a" % rv)
    took = time.monotonic() - t0
    # urllib reads the chunked body to its last chunk: the stream ended cleanly
    assert st == 200 and headers["Transfer-Encoding"] == "chunked"
    assert 0.9 <= took < 5
    events = [json.loads(ln) for ln in body.decode().splitlines()]
    assert events and {e["type"] for e in events} == {"BOOKMARK"}  # nothing new after the list
    assert all(e["object"]["metadata"]["resourceVersion"] == rv for e in events)
    assert 2 <= len(events) <= 4  # every 0.3 s for 1 s
    # no bookmarks asked for: a silent stream, still ended at timeoutSeconds
    st, _, body = get(url + "/api/v1/namespaces?watch=true&resourceVersion=%s&timeoutSeconds=0.5" % rv)
    assert st == 200 and body == b""
    # from resourceVersion 0: the synthetic ADDED events first
    st, _, body = get(url + "/api/v1/pods?watch=1&resourceVersion=0&timeoutSeconds=0"
                            "&fieldSelector=spec.nodeName%3Dnode-a")
    assert [json.loads(ln)["type"] for ln in body.decode().splitlines()] == ["ADDED"] * 4
    # errors as the API server answers them
    st, _, body = get(url + "/api/v1/pods?fieldSelector=spec.host%3Dx")
    assert st == 400 and json.loads(body)["kind"] == "Status"
    st, _, body = get(url + "/api/v1/pods?watch=1&resourceVersion=x")
    assert st == 400
    # Fluent Bit's per-pod lookups are still served (same object as in the list)
    st, _, body = get(url + "/api/v1/namespaces/payments/pods/ledger-0", token=None)
    assert st == 200 and json.loads(body)["metadata"]["uid"] == "0c2d7a1e-5b7e-4c1a-9d43-2f0f4e1a6b01"
    st, _, body = get(url + "/api/v1/namespaces/search")
    assert st == 200 and json.loads(body)["kind"] == "Namespace"
    assert get(url + "/api/v1/namespaces/payments/pods/nope")[0] == 404
    with urllib.request.urlopen(url + "/stats") as r:
        stats = json.load(r)
    assert (stats["k8s_lists"], stats["k8s_watches"], stats["k8s_gets"]) == (2, 3, 2)
    assert stats["k8s_requests"] == 7 and stats["k8s_no_token"] == 1
    assert stats["k8s_watch_events"] == len(events) + 4


def test_sink_k8s_watch_ends_when_the_sink_stops(k8s_sink):
    url, p, stats_file = k8s_sink
    import http.client
    import signal
    host, port = url[len("http://"):].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("GET", "/api/v1/pods?watch=1&allowWatchBookmarks=true&resourceVersion=1&timeoutSeconds=600")
    r = c.getresponse()
    assert r.status == 200
    r.readline()  # the first event: the stream is open
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    p.wait(10)
    assert time.monotonic() - t0 < 5
    with open(stats_file) as f:
        stats = json.load(f)
    assert stats["k8s_watches"] == 1 and stats["k8s_lists"] == 0
    c.close()
