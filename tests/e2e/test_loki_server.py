"""The Loki fixture itself (servers.py) against a real Loki: what is pushed
is read back exactly (lines, labels, structured metadata), paging past
Loki's 5000 entries a query returns everything once, a stop/start keeps the
data, and one documented error answer. No Loki binary: these tests fail."""

from __future__ import annotations

import collections
import time

import pytest

from servers import MAX_LINE_SIZE, LokiEntry, LokiError, LokiServer, loki, loki_bin, start_loki  # noqa: F401


def _now_ns() -> int:
    return time.time_ns()


def _expected(streams: list[dict]) -> list[tuple]:
    """The LokiEntry keys a push should read back as."""
    out = []
    for s in streams:
        for v in s["values"]:
            meta = v[2] if len(v) > 2 else {}
            out.append(LokiEntry(int(v[0]), v[1], dict(s["stream"]), dict(meta)).key())
    return out


@pytest.mark.time_limit(120)
def test_push_and_read_back_exactly(loki: LokiServer):
    t0 = _now_ns() - 60 * 10**9
    app = {"job": "drover-test", "namespace": "ns-a", "pod": "web-1", "container": "app"}
    side = {"job": "drover-test", "namespace": "ns-a", "pod": "web-1", "container": "sidecar"}
    streams = [
        {"stream": app, "values": [
            [t0 + 1, "plain line", {}],
            [t0 + 2, "with metadata", {"trace_id": "abc123", "stream": "stdout"}],
            [t0 + 2, "same timestamp, other line", {"stream": "stderr"}],
            [t0 + 3, "unicode: h\u00e9 \u2603 \U0001f600 \"quoted\" \\ tab\tend"],
            [t0 + 4, "  leading and trailing spaces  ", {"pod_uid": "0b7c-uid", "stream": "stdout"}],
        ]},
        {"stream": side, "values": [
            [t0 + 5, "{\"level\":\"info\",\"msg\":\"json line\"}", {"stream": "stdout"}],
            [t0 + 6, "x" * 10000],
        ]},
    ]
    loki.push_json(streams)
    # the same content gzipped, at other timestamps, on a third stream
    gz = {"job": "drover-test", "namespace": "ns-b", "pod": "db-0", "container": "db"}
    gz_streams = [{"stream": gz, "values": [[t0 + 10 + i, "gzip %d" % i, {"n": str(i)}]
                                            for i in range(50)]}]
    loki.push_json(gz_streams, gzip=True)
    want = sorted(_expected(streams) + _expected(gz_streams))

    got = loki.query_range('{job="drover-test"}', t0, t0 + 10**9)
    assert sorted(e.key() for e in got) == want
    assert [e.ts for e in got] == sorted(e.ts for e in got), "forward order"
    # structured metadata is categorized, never merged into the stream labels
    by_line = {e.line: e for e in got}
    assert by_line["with metadata"].labels == app
    assert by_line["with metadata"].metadata == {"trace_id": "abc123", "stream": "stdout"}
    assert by_line["plain line"].metadata == {}
    assert by_line["x" * 10000].labels == side

    # without the categorize-labels header Loki merges metadata into the labels
    merged = loki.query_range('{job="drover-test", namespace="ns-a"}', t0, t0 + 10**9,
                              categorize_labels=False)
    m = {e.line: e for e in merged}
    assert m["with metadata"].labels == dict(app, trace_id="abc123", stream="stdout")
    assert m["with metadata"].metadata == {}

    # no label of Loki's own (service_name, __stream_shard__, detected_level)
    series = loki.series('{job="drover-test"}', t0, t0 + 10**9)
    assert sorted(sorted(s.items()) for s in series) == sorted(sorted(s.items()) for s in (app, side, gz))
    assert loki.count('{job="drover-test"}', t0, t0 + 10**9) == len(want)

    # backward, and a limit
    back = loki.query_range('{job="drover-test"}', t0, t0 + 10**9, direction="backward", limit=3)
    assert [e.line for e in back] == ["gzip 49", "gzip 48", "gzip 47"]

    # an exact duplicate (same stream, timestamp and line) is dropped silently
    loki.push_json(streams[:1])
    again = loki.query_range('{job="drover-test"}', t0, t0 + 10**9)
    assert sorted(e.key() for e in again) == want


@pytest.mark.time_limit(170)
def test_paging_returns_everything_once(loki: LokiServer):
    n = 12000
    t0 = _now_ns() - 30 * 60 * 10**9
    labels = [{"job": "paging", "pod": "p%d" % k} for k in range(2)]
    # three entries per timestamp (one in one stream, two in the other), so
    # that page edges fall inside groups of equal timestamps
    entries = [(t0 + (i // 3) * 1000, labels[i % 3 == 2], "line %06d" % i) for i in range(n)]
    batch = 2000
    for b in range(0, n, batch):
        per = collections.defaultdict(list)
        for ts, lab, line in entries[b:b + batch]:
            per[lab["pod"]].append([ts, line, {"i": line[5:]}])
        loki.push_json([{"stream": {"job": "paging", "pod": pod}, "values": vals}
                        for pod, vals in per.items()])
    end = t0 + n * 1000
    want = sorted((tuple(sorted(lab.items())), ts, line, (("i", line[5:]),))
                  for ts, lab, line in entries)

    t = time.monotonic()
    fwd = loki.query_range('{job="paging"}', t0, end)
    took = time.monotonic() - t
    keys = [e.key() for e in fwd]
    assert len(keys) == n, "forward: %d entries, want %d (%d distinct)" % (len(keys), n, len(set(keys)))
    assert len(set(keys)) == n, "forward: duplicates"
    assert sorted(keys) == want
    assert [e.ts for e in fwd] == sorted(e.ts for e in fwd)
    assert took < 60, "paging 12000 entries took %.1fs" % took

    bwd = loki.query_range('{job="paging"}', t0, end, direction="backward")
    assert len(bwd) == n and sorted(e.key() for e in bwd) == want
    assert [e.ts for e in bwd] == sorted((e.ts for e in bwd), reverse=True)

    # a limit past one page: the first 7002 entries (whole groups of 3 timestamps)
    part = loki.query_range('{job="paging"}', t0, end, limit=7002)
    assert len(part) == 7002 and sorted(e.key() for e in part) == sorted(keys[:7002])
    assert loki.count('{job="paging"}', t0 - 10**9, end) == n
    assert loki.count('{job="paging", pod="p1"}', t0 - 10**9, end) == n // 3


@pytest.mark.time_limit(150)
def test_stop_start_keeps_data(loki: LokiServer):
    t0 = _now_ns() - 5 * 60 * 10**9
    lab = {"job": "restart"}
    first = [{"stream": lab, "values": [[t0 + i, "before %d" % i, {"k": "v%d" % i}] for i in range(500)]}]
    loki.push_json(first)
    port, pid, url = loki.http_port, loki.pid, loki.url

    t = time.monotonic()
    loki.stop()
    stop_s = time.monotonic() - t
    assert not loki.alive()
    with pytest.raises(OSError):
        loki.request("GET", "/ready", timeout=2)
    t = time.monotonic()
    loki.start()
    start_s = time.monotonic() - t
    assert loki.http_port == port and loki.url == url and loki.pid != pid
    print("loki stop %.1fs, start to ready %.1fs" % (stop_s, start_s))

    got = loki.query_range('{job="restart"}', t0, t0 + 10**9)
    assert sorted(e.key() for e in got) == sorted(_expected(first))
    second = [{"stream": lab, "values": [[t0 + 1000 + i, "after %d" % i] for i in range(500)]}]
    loki.push_json(second)

    loki.restart()
    got = loki.query_range('{job="restart"}', t0, t0 + 10**9)
    assert sorted(e.key() for e in got) == sorted(_expected(first) + _expected(second))
    assert loki.runs == 3


@pytest.mark.time_limit(90)
def test_entry_over_max_line_size_is_400(loki: LokiServer):
    t0 = _now_ns() - 60 * 10**9
    lab = {"job": "errors"}
    big = "y" * (MAX_LINE_SIZE + 1)
    with pytest.raises(LokiError) as err:
        loki.push_json([{"stream": lab, "values": [[t0, "small before"], [t0 + 1, big],
                                                   [t0 + 2, "small after"]]}])
    assert err.value.status == 400
    assert "max entry size" in err.value.body, err.value.body
    # the good entries of a batch answered 400 are stored
    got = loki.query_range('{job="errors"}', t0, t0 + 10**9)
    assert [e.line for e in got] == ["small before", "small after"]
    # an entry of exactly the limit is accepted
    status, _ = loki.push_json([{"stream": lab, "values": [[t0 + 3, "z" * MAX_LINE_SIZE]]}])
    assert status == 204
    # no Content-Type: 400
    status, body = loki.request("POST", "/loki/api/v1/push", body=b'{"streams":[]}')
    assert status == 400, (status, body)
