#!/usr/bin/env python3
"""How fast sink.py decodes and counts Loki protobuf+snappy pushes (one core).

  bench_decode.py [--data /tmp/logbench-data/k8slogs-cri-256m] [--mib 32]
                  [--batch-bytes 1MiB] [--seconds 10]

Builds logproto.PushRequest bodies of about --batch-bytes each from the first
--mib MiB of log lines of a gen_pods.py tree (one stream per container file,
CRI prefix stripped, partial lines joined), compresses them with the real
libsnappy (through ctypes: it must be installed, e.g. Debian libsnappy1v5),
then times, for --seconds, three things on the same bodies:

  snappy      sink.snappy_decompress alone
  count       sink.count_loki_proto alone (on the decoded bodies)
  sink path   sink.decode_and_count (what one push costs the sink)

and prints MiB/s of decompressed protobuf, MiB/s of log-line bytes and
records/s, plus the compression ratio.  CPU time of this process
(time.process_time), so other load on the machine matters less than for wall
time; still run it on a quiet machine.
"""

import argparse
import ctypes
import ctypes.util
import glob
import os
import sys
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sink  # noqa: E402


def libsnappy_compress():
    name = ctypes.util.find_library("snappy")
    if not name:
        sys.exit("bench_decode: libsnappy not found (Debian: apt-get install libsnappy1v5)")
    lib = ctypes.CDLL(name)
    lib.snappy_max_compressed_length.restype = ctypes.c_size_t
    lib.snappy_max_compressed_length.argtypes = [ctypes.c_size_t]
    lib.snappy_compress.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                    ctypes.POINTER(ctypes.c_size_t)]

    def compress(data):
        cap = lib.snappy_max_compressed_length(len(data))
        out = ctypes.create_string_buffer(cap)
        n = ctypes.c_size_t(cap)
        if lib.snappy_compress(data, len(data), out, ctypes.byref(n)) != 0:
            raise RuntimeError("snappy_compress failed")
        return out.raw[:n.value]
    return compress


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def fld(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def cri_records(path):
    """(seconds, nanos, message) of a CRI file, partial (P) lines joined."""
    part = []
    with open(path, "rb") as f:
        for line in f:
            ts, _stream, tag, msg = line.rstrip(b"\n").split(b" ", 3)
            part.append(msg)
            if tag == b"P":
                continue
            sec = 1795428000 + int(ts[17:19])
            nanos = int(ts[20:29])
            yield sec, nanos, b"".join(part)
            part = []


def build_bodies(data, mib, batch):
    files = sorted(glob.glob(os.path.join(data, "containers", "*.log")))
    if not files:
        sys.exit("bench_decode: no %s/containers/*.log (make the tree with gen_pods.py)" % data)
    budget = mib << 20
    bodies = []
    lines = 0
    line_bytes = 0
    streams = []
    size = 0
    for fn in files:
        labels = ('{job="drover", filename="%s", stream="stdout"}' % os.path.basename(fn)).encode()
        entries = []
        for sec, nanos, msg in cri_records(fn):
            e = fld(2, fld(1, varint(8) + varint(sec) + varint(16) + varint(nanos)) + fld(2, msg))
            entries.append(e)
            size += len(e)
            lines += 1
            line_bytes += len(msg)
            if size >= batch:
                streams.append(fld(1, fld(1, labels) + b"".join(entries)))
                bodies.append(b"".join(streams))
                streams, entries, size = [], [], 0
                if sum(len(b) for b in bodies) >= budget:
                    return bodies, lines, line_bytes
        if entries:
            streams.append(fld(1, fld(1, labels) + b"".join(entries)))
    if streams:
        bodies.append(b"".join(streams))
    return bodies, lines, line_bytes


def timed(fn, items, seconds):
    t0 = time.process_time()
    rounds = 0
    while True:
        for it in items:
            fn(it)
        rounds += 1
        dt = time.process_time() - t0
        if dt >= seconds:
            return rounds, dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/tmp/logbench-data/k8slogs-cri-256m")
    ap.add_argument("--mib", type=int, default=32, help="MiB of protobuf to build from the tree")
    ap.add_argument("--batch-bytes", type=int, default=1 << 20)
    ap.add_argument("--seconds", type=float, default=10.0, help="CPU seconds per measurement")
    a = ap.parse_args()
    compress = libsnappy_compress()
    bodies, lines, line_bytes = build_bodies(a.data, a.mib, a.batch_bytes)
    blocks = [compress(b) for b in bodies]
    raw = sum(len(b) for b in bodies)
    wire = sum(len(b) for b in blocks)
    for blk, body in zip(blocks, bodies):
        assert bytes(sink.snappy_decompress(blk)) == body
    n = sum(sink.count_loki_proto(b, 16384)[0] for b in bodies)
    assert n == lines, (n, lines)
    print("%d bodies, %.1f MiB protobuf (%.1f MiB of lines, %d records), %.1f MiB snappy (ratio %.2f)" % (
        len(bodies), raw / 1048576.0, line_bytes / 1048576.0, lines, wire / 1048576.0, raw / float(wire)))
    thr = 16384
    for name, fn, items in (
            ("snappy", sink.snappy_decompress, blocks),
            ("count", lambda b: sink.count_loki_proto(b, thr), bodies),
            ("sink path", lambda b: sink.decode_and_count(b, "", "/loki/api/v1/push", thr,
                                                          "application/x-protobuf"), blocks)):
        rounds, dt = timed(fn, items, a.seconds)
        print("%-10s %7.1f MiB/s protobuf out, %7.1f MiB/s of lines, %9d records/s  (%.1f CPU-s)" % (
            name, rounds * raw / dt / 1048576.0, rounds * line_bytes / dt / 1048576.0,
            rounds * lines / dt, dt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
