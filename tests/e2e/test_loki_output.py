"""The loki output against a real Grafana Loki (servers.py), directly or
through the fault-injecting proxy (faultproxy.py).

Everything written by kubelet_writer is read back from Loki with
query_range (paged) and compared record by record with the writer's
manifest (Delivery): message bytes, time (the entry's timestamp), stream,
namespace and container (stream labels), pod, pod_uid and container_id
(structured metadata). Loki hides exact duplicates (same stream, timestamp
and line) from log queries (count_over_time still counts them), so what a
query returns shows "at least once, nothing extra"; what drover sent twice
is measured at the proxy where one is used, and only reported.

  test_faultproxy_modes_against_loki     the proxy itself (every mode, the push decoder)
  test_steady_protobuf_exactly_once      (a) steady writer -> protobuf -> Loki
  test_batches_fill_for_batch_wait       batch_wait makes batches (not one push per chunk)
  test_formats_json_gzip_and_line_json   (b) json, json + gzip, line_format json
  test_loki_down_30s_nothing_lost_rss_bounded   (c)
  test_sigkill_restarts_nothing_lost     (d)
  test_huge_line_split_truncate_drop     (e)
  test_invalid_utf8_replaced_and_counted (f)
  test_too_old_entry_dropped_not_retried (g)
  test_retry_after_503_one_at_a_time     (h) 503 + Retry-After
  test_500_hang_close_garbage_429_retried (h) the other failures
  test_sigterm_during_outage_within_grace (i)
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import random
import re
import signal
import time

import pytest

from drover_e2e import HOST, Delivery, WriterProcess, kill_at, rss_bytes, wait_until, yaml_str
from faultproxy import FaultProxy, decode_push, encode_push_protobuf, pushed_entries
from kubelet_writer import Expected, KubeletWriter, rfc3339nano
from servers import LokiEntry, LokiServer, loki, loki_bin, start_loki  # noqa: F401

NODE = "e2e-node-7"
LABEL_KEYS = frozenset({"namespace", "container", "stream", "node"})
META_KEYS = frozenset({"pod", "pod_uid", "container_id"})
MAX_LINE_BYTES = 250 * 1024  # max_line_bytes: 250KiB, set where it matters
SEL = '{node="%s"}' % NODE


# ---- configuration ------------------------------------------------------------------------------


_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+-]+$")


def _yaml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[%s]" % ", ".join(yaml_str(str(x)) for x in v)
    s = str(v)
    return s if _PLAIN.match(s) else yaml_str(s)


def loki_output(name: str, url: str, *, match: str = "pods", **opts) -> str:
    """One `outputs:` entry of type loki; opts are its options (lists,
    strings, numbers; sizes and durations as strings such as "250KiB")."""
    text = "  - name: %s\n    type: loki\n    match: %s\n    url: %s\n" % (name, match, _yaml_value(url))
    for k, v in opts.items():
        text += "    %s: %s\n" % (k, _yaml_value(v))
    return text


def drover_config(tmp_path, *, paths, outputs: list[str], tail: dict | None = None,
                  grace_period: str = "5s", log_level: str = "debug") -> str:
    """A config file (its path) with one tail input `pods` and the given outputs."""
    tail_opts = {"partial_timeout": "1s"}
    tail_opts.update(tail or {})
    text = ("agent:\n"
            "  node_name: %s\n"
            "  data_dir: %s\n"
            "  http:\n"
            "    listen: %s\n"
            "  grace_period: %s\n"
            "  log_level: %s\n"
            "inputs:\n"
            "  - name: pods\n"
            "    type: tail\n"
            "    paths: [%s]\n"
            "    read_from: head\n"
            % (NODE, yaml_str(str(tmp_path / "data")), yaml_str("%s:0" % HOST), grace_period,
               log_level, ", ".join(yaml_str(str(p)) for p in paths)))
    for k, v in tail_opts.items():
        text += "    %s: %s\n" % (k, _yaml_value(v))
    text += "outputs:\n" + "".join(outputs)
    path = tmp_path / "drover.yaml"
    path.write_text(text)
    return str(path)


def node_paths(root) -> list[str]:
    return [str(root / "containers" / "*.log")]


# ---- reading back ------------------------------------------------------------------------------------


def now_ns() -> int:
    return time.time_ns()


def loki_count(srv: LokiServer, selector: str, start_ns: int) -> int:
    try:
        return srv.count(selector, start_ns, now_ns() + 10**9)
    except (OSError, AssertionError):
        return -1


def wait_loki_count(srv: LokiServer, selector: str, start_ns: int, want: int, *, timeout: float,
                    settle: float = 1.5) -> int:
    """Polls Loki's count of a selector until it reaches `want` (then waits
    `settle` more seconds) or the timeout ends; returns the last count."""
    deadline = time.monotonic() + timeout
    n = -1
    while time.monotonic() < deadline:
        n = loki_count(srv, selector, start_ns)
        if n >= want:
            time.sleep(settle)
            return loki_count(srv, selector, start_ns)
        time.sleep(0.5)
    return n


def read_back(srv: LokiServer, selector: str, start_ns: int, page_size: int = 0) -> list[LokiEntry]:
    return srv.query_range(selector, start_ns, now_ns() + 10**9, page_size=page_size)


def as_records(entries: list[LokiEntry]) -> list[dict]:
    """Loki entries in the file output's record shape, for Delivery."""
    out = []
    for e in entries:
        out.append({
            "message": e.line,
            "stream": e.labels.get("stream"),
            "time": rfc3339nano(e.ts),
            "kubernetes": {"namespace": e.labels.get("namespace"),
                           "container": e.labels.get("container"),
                           "pod": e.metadata.get("pod"),
                           "pod_uid": e.metadata.get("pod_uid"),
                           "container_id": e.metadata.get("container_id")},
        })
    return out


def shape_problems(entries: list[LokiEntry], *, extra_labels: dict | None = None,
                   meta_keys=META_KEYS, limit: int = 10) -> list[str]:
    """Entries whose label set is not exactly the default labels (+ the
    static ones), whose node label is wrong, or whose structured metadata
    keys are not exactly meta_keys."""
    extra = extra_labels or {}
    want = set(LABEL_KEYS) | set(extra)
    probs = []
    for e in entries:
        if set(e.labels) != want:
            probs.append("labels %s, want keys %s (line %r)" % (e.labels, sorted(want), e.line[:60]))
        elif e.labels["node"] != NODE or any(e.labels[k] != v for k, v in extra.items()):
            probs.append("labels %s (node %s, static %s) (line %r)" % (e.labels, NODE, extra, e.line[:60]))
        if set(e.metadata) != set(meta_keys):
            probs.append("structured metadata %s, want keys %s (line %r)"
                         % (e.metadata, sorted(meta_keys), e.line[:60]))
        if len(probs) >= limit:
            break
    return probs


def invalid_utf8(expected: list[Expected]) -> int:
    n = 0
    for e in expected:
        try:
            e.msg.decode("utf-8")
        except UnicodeDecodeError:
            n += 1
    return n


def metric_lines(d, *names: str) -> str:
    """drover's /metrics lines of the named metrics (for reports)."""
    try:
        text = d.metrics().text
    except Exception as e:  # drover gone
        return "(no metrics: %s)" % e
    return "\n".join(l for l in text.splitlines() if not l.startswith("#") and l.startswith(names))


def requests_by_code(m, name: str = "loki") -> dict:
    return {l.get("code"): v for l, v in m.find("drover_output_requests_total", name=name) if v}


def start_time(expected: list[Expected]) -> int:
    return min(e.time_ns for e in expected) - 2 * 10**9


OUT_METRICS = ("drover_output_records_total", "drover_dropped_records_total",
               "drover_output_retries_total", "drover_output_requests_total",
               "drover_output_invalid_utf8_records_total", "drover_output_split_records_total",
               "drover_output_truncated_records_total", "drover_queue_bytes")


# ---- the proxy itself ------------------------------------------------------------------------------


def _post(port: int, body: bytes, ctype: str, timeout: float = 5.0):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request("POST", "/loki/api/v1/push", body=body, headers={"Content-Type": ctype})
        r = c.getresponse()
        return r.status, r.getheader("Retry-After"), r.read()
    except (OSError, http.client.HTTPException) as e:
        return None, None, type(e).__name__
    finally:
        c.close()


@pytest.mark.time_limit(60)
def test_faultproxy_modes_against_loki(loki: LokiServer):
    """Pass-through to a real Loki (protobuf and JSON bodies read back, the
    recorded bodies decode to what Loki stored), then every fault mode, the
    automatic return to pass, and the concurrency record."""
    with FaultProxy(loki.http_port) as p:
        t0 = now_ns() - 10 * 10**9
        streams = [{"stream": {"job": "px", "q": 'a"b'},
                    "values": [[t0 + i, "line %d \u00e9 \U0001F600" % i, {"pod": "p%d" % i}]
                               for i in range(300)]}]
        assert _post(p.port, encode_push_protobuf(streams), "application/x-protobuf")[0] == 204
        js = {"streams": [{"stream": {"job": "px"}, "values": [[str(t0 + 1000), "json line"]]}]}
        assert _post(p.port, json.dumps(js).encode(), "application/json")[0] == 204
        got = read_back(loki, '{job="px"}', t0 - 10**9)
        assert len(got) == 301
        sent = pushed_entries(p.requests())
        assert sorted((e.labels, e.ts, e.line, e.metadata) for e in sent) == sorted(
            (tuple(sorted(g.labels.items())), g.ts, g.line, tuple(sorted(g.metadata.items())))
            for g in got)

        p.set_mode("503", retry_after=3, seconds=0.5)
        assert _post(p.port, b"{}", "application/json")[:2] == (503, "3")
        time.sleep(0.6)
        assert p.mode == "pass"
        p.set_mode("429", count=1)
        assert _post(p.port, b"{}", "application/json")[0] == 429
        assert p.mode == "pass"
        p.set_mode("500")
        assert _post(p.port, b"{}", "application/json")[0] == 500
        p.set_mode("hang")
        t = time.monotonic()
        assert _post(p.port, b"{}", "application/json", timeout=0.5)[0] is None
        assert 0.4 < time.monotonic() - t < 2
        wait_until(lambda: p.open_requests() == 0, 5, what="the hung request to end")
        p.set_mode("close")
        assert _post(p.port, b"x" * 100000, "application/json")[0] is None
        p.set_mode("garbage")
        assert _post(p.port, b"{}", "application/json")[0] is None
        p.set_mode("pass")
        modes = [r.mode for r in p.requests()]
        assert modes == ["pass", "pass", "503", "429", "500", "hang", "close", "garbage"], modes
        hung = p.requests(mode="hang")[0]
        assert hung.error == "client closed" and 0.4 < hung.duration < 2, hung.summary()
        # sequential posts: a request may be counted open a moment after its
        # answer reached the client, so the next can see one more
        assert all(r.concurrent <= 2 for r in p.requests()), p.report()


# ---- (a) steady ------------------------------------------------------------------------------------


RATE = 3000
DURATION = 16


@pytest.mark.time_limit(150)
def test_steady_protobuf_exactly_once(start_loki, start_drover, track, tmp_path):
    """Several thousand lines/s with kubelet rotation (rename, gzip,
    deletion), a container restart (dying mid-line) and a copytruncate
    docker container, through the default protobuf output: every line in
    Loki exactly once, with its timestamp, the labels {namespace, container,
    stream, node} and the metadata {pod, pod_uid, container_id}."""
    srv = start_loki()
    root = tmp_path / "node"
    w = WriterProcess(str(root), str(tmp_path), seed=701, rate=RATE, duration=DURATION,
                      restart_at=[DURATION / 2], max_size=256 * 1024)
    track(w.start())
    time.sleep(0.5)
    d = start_drover(drover_config(tmp_path, paths=node_paths(root),
                                   outputs=[loki_output("loki", srv.push_url)])).wait_ready()
    t_start = time.monotonic()
    expected = w.finish()
    n = len(expected)
    t0 = start_time(expected)
    c = wait_loki_count(srv, SEL, t0, n, timeout=60)
    caught_up = time.monotonic() - t_start - DURATION
    m = d.metrics()
    t = time.monotonic()
    entries = read_back(srv, SEL, t0)
    read_s = time.monotonic() - t
    assert d.stop() == 0, "drover did not stop cleanly"
    dl = Delivery(expected, as_records(entries))
    print("\nsteady loki: writer %s\n  Loki count %d, %.1fs after the writer's end; read back %d "
          "entries in %.1fs\n  drover requests %s\n  %s"
          % (w.summary, c, caught_up, len(entries), read_s, requests_by_code(m), dl.summary()))
    dl.assert_exactly_once()
    probs = shape_problems(entries)
    assert not probs, "\n".join(probs)
    assert m.get("drover_output_records_total", name="loki") == n, m.find("drover_output_records_total")
    assert m.get("drover_dropped_records_total") == 0, m.find("drover_dropped_records_total")
    codes = requests_by_code(m)
    assert set(codes) == {"204"}, codes
    assert m.get("drover_output_invalid_utf8_records_total", name="loki") == invalid_utf8(expected)
    assert m.get("drover_tail_rotated_lost_bytes_total") == 0
    s = w.summary
    assert s["rotations"] >= 10 and s["compressed"] >= 3 and s["deleted"] >= 1, s
    assert s["copytruncates"] >= 2 and s["restarts"] == 1, s


@pytest.mark.time_limit(90)
def test_batches_fill_for_batch_wait(start_loki, start_drover, track, tmp_path):
    """1000 lines/s from 5 containers with batch_wait 1s and batch_max_bytes
    1MiB (the defaults): the output's batches wait up to a second to fill
    ("Longest a record waits for its batch to fill before it is sent
    anyway"), so about one push a second goes out, a few more at most, not
    one per chunk read. Bound: 5 pushes a second."""
    srv = start_loki()
    root = tmp_path / "node"
    duration = 6
    w = WriterProcess(str(root), str(tmp_path), seed=711, rate=1000, duration=duration,
                      max_size=1024 * 1024)
    track(w.start())
    time.sleep(0.5)
    with FaultProxy(srv.http_port) as proxy:
        d = start_drover(drover_config(tmp_path, paths=node_paths(root), outputs=[
            loki_output("loki", proxy.push_url, batch_wait="1s", batch_max_bytes="1MiB")])).wait_ready()
        expected = w.finish()
        t0 = start_time(expected)
        c = wait_loki_count(srv, SEL, t0, len(expected), timeout=30)
        m = d.metrics()
        assert d.stop() == 0
        reqs = [r for r in proxy.requests() if r.status == 204]
    sent = pushed_entries(reqs)
    span = (reqs[-1].arrived - reqs[0].arrived) if reqs else 0.0
    rate = len(reqs) / max(span, 1.0)
    print("\nbatching: %d lines in %d pushes over %.1fs (%.1f pushes/s, %.1f entries and %.0f body "
          "bytes a push); Loki count %d" % (len(expected), len(reqs), span, rate,
                                            len(sent) / max(1, len(reqs)),
                                            sum(r.body_len for r in reqs) / max(1, len(reqs)), c))
    assert c == len(expected)
    assert rate <= 5, ("%d pushes in %.1fs (%.0f/s, %.1f entries each) with batch_wait 1s"
                       % (len(reqs), span, rate, len(sent) / max(1, len(reqs))))


# ---- (b) formats --------------------------------------------------------------------------------------


@pytest.mark.time_limit(120)
def test_formats_json_gzip_and_line_json(start_loki, start_drover, track, tmp_path):
    """One writer, one drover with three loki outputs into one Loki, told
    apart by a static label: format json; json + gzip; protobuf with
    line_format json (the line is the record as the file output writes
    it). Each one holds every line exactly once."""
    srv = start_loki()
    root = tmp_path / "node"
    w = WriterProcess(str(root), str(tmp_path), seed=702, rate=2000, duration=8,
                      restart_at=[4], max_size=256 * 1024)
    track(w.start())
    time.sleep(0.5)
    outs = [loki_output("json", srv.push_url, format="json", static_labels=["job=json"]),
            loki_output("jsongz", srv.push_url, format="json", compression="gzip",
                        static_labels=["job=jsongz"]),
            loki_output("linejson", srv.push_url, line_format="json",
                        static_labels=["job=linejson"])]
    d = start_drover(drover_config(tmp_path, paths=node_paths(root), outputs=outs)).wait_ready()
    expected = w.finish()
    n = len(expected)
    t0 = start_time(expected)
    for job in ("json", "jsongz", "linejson"):
        wait_loki_count(srv, '{job="%s"}' % job, t0, n, timeout=45, settle=0)
    time.sleep(1.5)
    m = d.metrics()
    assert d.stop() == 0
    failures = []
    for job in ("json", "jsongz", "linejson"):
        entries = read_back(srv, '{node="%s", job="%s"}' % (NODE, job), t0)
        if job == "linejson":
            records, bad = [], []
            for e in entries:
                try:
                    r = json.loads(e.line)
                except ValueError:
                    bad.append(e.line[:120])
                    continue
                records.append(r)
                if not {"time", "stream", "message", "kubernetes"} <= set(r):
                    bad.append("keys %s" % sorted(r))
            if bad:
                failures.append("linejson: %d lines are not the record JSON: %s" % (len(bad), bad[:3]))
        else:
            records = as_records(entries)
        dl = Delivery(expected, records)
        print("\n%s: %d entries; %s" % (job, len(entries), dl.summary()))
        try:
            dl.assert_exactly_once()
        except AssertionError as e:
            failures.append("%s: %s" % (job, e))
        probs = shape_problems(entries, extra_labels={"job": job})
        if probs:
            failures.append("%s: %s" % (job, "\n  ".join(probs)))
        got = m.get("drover_output_records_total", name=job)
        if got != n:
            failures.append("%s: drover_output_records_total %d, written %d" % (job, got, n))
        codes = requests_by_code(m, job)
        if set(codes) != {"204"}:
            failures.append("%s: requests by code %s" % (job, codes))
        inv = m.get("drover_output_invalid_utf8_records_total", name=job)
        if inv != invalid_utf8(expected):
            failures.append("%s: invalid_utf8 counter %d, want %d" % (job, inv, invalid_utf8(expected)))
    assert not failures, "\n".join(failures)


# ---- (c) Loki down for 30 s ------------------------------------------------------------------------------


@pytest.mark.time_limit(170)
def test_loki_down_30s_nothing_lost_rss_bounded(start_loki, start_drover, track, tmp_path):
    """Loki stops 4 s into a 40 s run and starts again 30 s later on the same
    data: nothing is lost, and drover's RSS stays under 64 MiB while its
    queue is full (the log files are the buffer)."""
    srv = start_loki()
    root = tmp_path / "node"
    duration, down_at, down_for = 40, 4, 30
    w = WriterProcess(str(root), str(tmp_path), seed=703, rate=1500, duration=duration,
                      restart_at=[20], max_size=1024 * 1024, link_remove_delay=10)
    track(w.start())
    time.sleep(0.5)
    d = start_drover(drover_config(tmp_path, paths=node_paths(root),
                                   outputs=[loki_output("loki", srv.push_url, retry_min="500ms",
                                                        retry_max="4s")])).wait_ready()
    t_start = time.monotonic()
    time.sleep(down_at)
    srv.stop()
    t_down = time.monotonic()
    rss, queue = [], []  # queue: (bytes, chunks)
    while time.monotonic() - t_down < down_for:
        assert d.alive(), "drover exited while Loki was down"
        rss.append(rss_bytes(d.pid))
        try:
            qm = d.metrics()
            queue.append((qm.get("drover_queue_bytes", name="loki"),
                          qm.get("drover_queue_chunks", name="loki")))
        except OSError:
            pass
        time.sleep(0.25)
    m_down = d.metrics()
    srv.start()
    t_up = time.monotonic()
    expected = w.finish()
    n = len(expected)
    t0 = start_time(expected)
    c = wait_loki_count(srv, SEL, t0, n, timeout=90)
    caught_up = time.monotonic() - t_up
    rss_after = rss_bytes(d.pid)
    m = d.metrics()
    entries = read_back(srv, SEL, t0)
    assert d.stop() == 0
    dl = Delivery(expected, as_records(entries))
    print("\nloki down %.0fs: writer %s\n  RSS while down: max %.1f MiB (first %.1f, last %.1f); "
          "after %.1f MiB; queue bytes max %.0f\n  requests %s, retries %d; Loki count %d, %.1fs "
          "after Loki came back\n  %s"
          % (down_for, w.summary, max(rss) / 2**20, rss[0] / 2**20, rss[-1] / 2**20,
             rss_after / 2**20, max(q[0] for q in queue or [(0, 0)]), requests_by_code(m),
             m.get("drover_output_retries_total", name="loki"), c, caught_up, dl.summary()))
    dl.assert_exactly_once()
    assert not shape_problems(entries)
    qb, qc = queue[-1] if queue else (0, 0)
    assert max(rss) < 64 * 2**20, (
        "drover RSS %.1f MiB while Loki was down (%.1f MiB before); at the end of the outage "
        "drover_queue_bytes %.0f in %.0f drover_queue_chunks (%.0f bytes a chunk, %.1f KiB of RSS "
        "a chunk)" % (max(rss) / 2**20, rss[0] / 2**20, qb, qc, qb / max(1, qc),
                      (rss[-1] - rss[0]) / 1024 / max(1, qc)))
    assert m_down.get("drover_output_retries_total", name="loki") > 0, "no retry while Loki was down"
    assert m.get("drover_dropped_records_total") == 0, m.find("drover_dropped_records_total")
    assert m.get("drover_tail_rotated_lost_bytes_total") == 0
    assert t_up - t_start > down_at + down_for - 1


# ---- (d) SIGKILL ---------------------------------------------------------------------------------------


@pytest.mark.time_limit(170)
def test_sigkill_restarts_nothing_lost(start_loki, start_drover, track, tmp_path):
    """drover killed with SIGKILL 4 times at random (seeded) moments and
    restarted: Loki holds every line (it drops exact duplicates, so what
    drover sent again does not show there; the proxy in front counts it)."""
    rng = random.Random(7042)
    srv = start_loki()
    root = tmp_path / "node"
    duration = 15
    w = WriterProcess(str(root), str(tmp_path), seed=704, rate=3000, duration=duration,
                      restart_at=[duration * 0.4], link_remove_delay=10)
    track(w.start())
    time.sleep(0.5)
    with FaultProxy(srv.http_port) as proxy:
        d = start_drover(drover_config(tmp_path, paths=node_paths(root),
                                       outputs=[loki_output("loki", proxy.push_url)])).wait_ready()
        kills = kill_at(d, sorted(rng.uniform(2, duration - 2) for _ in range(4)), rng)
        expected = w.finish()
        n = len(expected)
        t0 = start_time(expected)
        c = wait_loki_count(srv, SEL, t0, n, timeout=90, settle=3)
        entries = read_back(srv, SEL, t0)
        m = d.metrics()
        assert d.stop() == 0
        sent = pushed_entries(proxy.requests(), only_status=lambda s: 200 <= s < 300)
        reqs = proxy.requests()
    dl = Delivery(expected, as_records(entries))
    distinct = len(set(sent))
    print("\nsigkill: writer %s\n  SIGKILL at %s s; Loki count %d for %d written\n"
          "  drover sent %d entries in %d requests answered 2xx: %d distinct, %d sent again "
          "(%.2f%%; invisible in Loki)\n  %s"
          % (w.summary, kills, c, n, len(sent), len(reqs), distinct, len(sent) - distinct,
             100.0 * (len(sent) - distinct) / max(1, n), dl.summary()))
    dl.assert_nothing_lost()
    assert not shape_problems(entries)
    assert m.get("drover_dropped_records_total") == 0, m.find("drover_dropped_records_total")


# ---- (e) a 5 MiB line ----------------------------------------------------------------------------------


def _small_node(root, seed: int) -> KubeletWriter:
    return KubeletWriter(str(root), seed=seed, max_size=None)


def _lines(w: KubeletWriter, c, n: int, tag: str, stream: str = "stdout") -> list[Expected]:
    return [w.log(c, ("seq=%s %s %d " % (c.next_id(), tag, i)).encode() + w._payload(30), stream)
            for i in range(n)]


BATCH_MAX_BYTES = 1024 * 1024  # the output's default batch_max_bytes


@pytest.mark.time_limit(90)
def test_huge_line_split_truncate_drop(start_loki, start_drover, tmp_path):
    """A 5 MiB line (the tail input's max_record_bytes raised to 8 MiB) to
    three outputs with max_line_bytes 250KiB, through the proxy into a Loki
    with its default limits: split (pieces of at most max_line_bytes that
    concatenate to the line, in timestamp order), truncate (its first
    max_line_bytes), drop (counted with reason too_long); the lines around
    it arrive in all three. No push request carries more than
    batch_max_bytes (1MiB) of lines: Loki's distributor hands a push to the
    ingester in one gRPC message of at most 4 MiB by default
    (grpc_server_max_recv_msg_size) and answers 500 to a larger one."""
    srv = start_loki()
    root = tmp_path / "node"
    w = _small_node(root, 705)
    c = w.add_container("big", "huge-0", "app")
    before = _lines(w, c, 5, "before")
    huge = w.log(c, ("seq=%s huge " % c.next_id()).encode() + w._payload(5 * 1024 * 1024 - 40))
    after = _lines(w, c, 5, "after")
    w.close()
    with FaultProxy(srv.http_port) as proxy:
        outs = [loki_output(job, proxy.push_url, line_too_long=job, max_line_bytes="250KiB",
                            static_labels=["job=" + job]) for job in ("split", "truncate", "drop")]
        d = start_drover(drover_config(tmp_path, paths=node_paths(root), outputs=outs,
                                       tail={"max_record_bytes": "8MiB"})).wait_ready()
        t0 = start_time(before)
        small = before + after
        want_pieces = -(-len(huge.msg) // MAX_LINE_BYTES)
        wait_loki_count(srv, '{job="truncate"}', t0, len(small) + 1, timeout=20, settle=0)
        wait_loki_count(srv, '{job="drop"}', t0, len(small), timeout=10, settle=0)
        wait_loki_count(srv, '{job="split"}', t0, len(small) + want_pieces, timeout=20, settle=1.5)
        m = d.metrics()
        report = metric_lines(d, *OUT_METRICS)
        assert d.stop() == 0
        reqs = proxy.requests()
    failures = []
    # what each request carried, by output (the job label)
    per_req = []
    for r in reqs:
        if not r.body:
            continue
        ents = decode_push(r.body, r.headers)
        jobs = sorted({dict(e.labels).get("job") for e in ents})
        per_req.append((r.seq, jobs, len(ents), sum(len(e.line.encode("utf-8", "surrogateescape"))
                                                   for e in ents), r.status))
    big = [x for x in per_req if x[3] > BATCH_MAX_BYTES]
    if big:
        failures.append("push requests with more than batch_max_bytes (%d) of lines "
                        "(seq, jobs, entries, line bytes, status): %s" % (BATCH_MAX_BYTES, big[:6]))
    print("\nrequests (seq, jobs, entries, line bytes, status): %s" % per_req[:40])
    small_text = {e.text for e in small}
    for job in ("split", "truncate", "drop"):
        # pages of 8: 21 pieces of 250 KiB are more than a querier takes in one message
        entries = read_back(srv, '{job="%s"}' % job, t0, page_size=8)
        rest = [e for e in entries if e.line not in small_text]
        dl = Delivery(small, as_records([e for e in entries if e.line in small_text]))
        if dl.missing or dl.duplicates or dl.n_mismatches:
            failures.append("%s: the small lines: %s" % (job, dl.summary()))
        probs = shape_problems(entries, extra_labels={"job": job})
        if probs:
            failures.append("%s: %s" % (job, "; ".join(probs[:3])))
        sizes = [len(e.line.encode()) for e in rest]
        print("%s: %d entries beside the small lines, sizes %s%s" % (
            job, len(rest), sizes[:6], "..." if len(sizes) > 6 else ""))
        codes = requests_by_code(m, job)
        if set(codes) != {"204"}:
            failures.append("%s: requests by code %s" % (job, codes))
        if job == "split":
            rest.sort(key=lambda e: e.ts)
            joined = "".join(e.line for e in rest)
            tss = [e.ts for e in rest]
            if len(rest) < want_pieces or any(s > MAX_LINE_BYTES for s in sizes):
                failures.append("split: %d pieces (want >= %d), sizes %s, max_line_bytes %d"
                                % (len(rest), want_pieces, sizes, MAX_LINE_BYTES))
            if joined != huge.text:
                failures.append("split: the pieces in timestamp order do not make the line "
                                "(%d bytes, want %d; distinct timestamps %d of %d)"
                                % (len(joined), len(huge.text), len(set(tss)), len(tss)))
            if tss and tss[0] != huge.time_ns:
                failures.append("split: first piece at %d, the line's time is %d" % (tss[0], huge.time_ns))
            if m.get("drover_output_split_records_total", name="split") != 1:
                failures.append("split: drover_output_split_records_total %s"
                                % m.find("drover_output_split_records_total", name="split"))
        elif job == "truncate":
            if len(rest) != 1 or rest[0].line != huge.text[:len(rest[0].line)] or \
                    not MAX_LINE_BYTES - 4 <= sizes[0] <= MAX_LINE_BYTES:
                failures.append("truncate: want one entry, the first %d bytes of the line; got sizes %s"
                                % (MAX_LINE_BYTES, sizes))
            if m.get("drover_output_truncated_records_total", name="truncate") != 1:
                failures.append("truncate: drover_output_truncated_records_total %s"
                                % m.find("drover_output_truncated_records_total", name="truncate"))
        else:
            if rest:
                failures.append("drop: %d entries of the huge line arrived" % len(rest))
            got = m.get("drover_dropped_records_total", name="drop", reason="too_long")
            if got != 1:
                failures.append("drop: drover_dropped_records_total{reason=too_long} %s, want 1"
                                % m.find("drover_dropped_records_total"))
    for name in ("split", "truncate"):
        if m.get("drover_dropped_records_total", name=name):
            failures.append("%s: dropped %s" % (name, m.find("drover_dropped_records_total", name=name)))
    assert not failures, "\n".join(failures) + "\n" + report


# ---- (f) invalid UTF-8 ---------------------------------------------------------------------------------


INVALID = [b"\xff", b"\xfe\xfe", b"\xc3\x28", b"\xe2\x82", b"\xf0\x9f\x98", b"\xed\xa0\x80",
           b"\xc0\xaf", b"\x80\x80\x80", b"\xf8\x88\x80", b"\xf4\x90\x80\x80"]


@pytest.mark.sanitizer
@pytest.mark.time_limit(60)
def test_invalid_utf8_replaced_and_counted(start_loki, start_drover, tmp_path):
    """CRI lines with invalid UTF-8 (lone bytes, truncated sequences,
    surrogates, overlong forms, past U+10FFFF) arrive with U+FFFD in their
    place (both formats), valid multi-byte lines untouched; each output
    counts them in drover_output_invalid_utf8_records_total."""
    srv = start_loki()
    root = tmp_path / "node"
    w = _small_node(root, 706)
    c = w.add_container("utf", "bad-0", "app")
    exp = []
    for i, bad in enumerate(INVALID):
        exp.append(w.log(c, ("seq=%s bad %d <" % (c.next_id(), i)).encode() + bad + b"> end",
                         "stderr" if i % 3 == 0 else "stdout"))
        exp.append(w.log(c, ("seq=%s good %d caf\u00e9 \u65e5\u672c \U0001F600" % (c.next_id(), i)).encode()))
    exp.append(w.log(c, ("seq=%s tail " % c.next_id()).encode() + b"\xe2\x82"))  # cut at the end
    w.close()
    n_bad = invalid_utf8(exp)
    assert n_bad == len(INVALID) + 1
    outs = [loki_output("pb", srv.push_url, static_labels=["job=pb"]),
            loki_output("js", srv.push_url, format="json", static_labels=["job=js"])]
    d = start_drover(drover_config(tmp_path, paths=node_paths(root), outputs=outs)).wait_ready()
    t0 = start_time(exp)
    for job in ("pb", "js"):
        wait_loki_count(srv, '{job="%s"}' % job, t0, len(exp), timeout=30, settle=0)
    time.sleep(1)
    m = d.metrics()
    assert d.stop() == 0
    failures = []
    for job in ("pb", "js"):
        entries = read_back(srv, '{job="%s"}' % job, t0)
        dl = Delivery(exp, as_records(entries))
        print("\n%s: %s" % (job, dl.summary()))
        if dl.missing or dl.duplicates or dl.n_mismatches or dl.unexpected:
            failures.append("%s: %s" % (job, dl.summary()))
        if not any("\ufffd" in e.line for e in entries):
            failures.append("%s: no U+FFFD at all" % job)
        got = m.get("drover_output_invalid_utf8_records_total", name=job)
        if got != n_bad:
            failures.append("%s: drover_output_invalid_utf8_records_total %s, want %d"
                            % (job, got, n_bad))
    assert not failures, "\n".join(failures)


# ---- (g) an entry Loki refuses ------------------------------------------------------------------------------


@pytest.mark.sanitizer
@pytest.mark.time_limit(60)
def test_too_old_entry_dropped_not_retried(start_loki, start_drover, tmp_path):
    """Loki with reject_old_samples (max age 1h); a CRI line timestamped two
    days ago between 20 good lines of the same stream and beside another
    container's lines, all read in one go: Loki answers 400 "timestamp too
    old" (and stores the rest of the batch); drover drops exactly that
    entry (reason too_old), sends it once, does not retry, and every other
    line is in Loki."""
    srv = start_loki(limits={"reject_old_samples": True, "reject_old_samples_max_age": "1h"})
    root = tmp_path / "node"
    w = _small_node(root, 707)
    c = w.add_container("old", "old-0", "app")
    side = w.add_container("old", "old-0", "side")
    good = _lines(w, c, 10, "before") + _lines(w, side, 5, "side")
    old_ns = now_ns() - 2 * 86400 * 10**9
    real_clock = w.clock
    w.clock = lambda: old_ns
    old = w.log(c, ("seq=%s two days old" % c.next_id()).encode())
    w.clock = real_clock
    good += _lines(w, c, 10, "after") + _lines(w, side, 5, "side-after")
    w.close()
    with FaultProxy(srv.http_port) as proxy:
        d = start_drover(drover_config(tmp_path, paths=node_paths(root),
                                       outputs=[loki_output("loki", proxy.push_url)])).wait_ready()
        t0 = start_time(good)
        wait_until(lambda: d.metric("drover_output_records_total", name="loki")
                   + d.metric("drover_dropped_records_total", name="loki") >= len(good) + 1, 30,
                   interval=0.2, what="every record delivered or dropped")
        wait_loki_count(srv, SEL, t0, len(good), timeout=15, settle=0)
        time.sleep(3)  # a retry, if any, would come within retry_min (1s) .. 2s
        m = d.metrics()
        log = d.log_text()
        assert d.stop() == 0
        reqs = proxy.requests()
    sent = pushed_entries(reqs)
    old_sent = [e for e in sent if e.line == old.text]
    entries = read_back(srv, SEL, t0)
    dl = Delivery(good, as_records(entries))
    warn = [l for l in log.splitlines() if "400" in l or "too_old" in l][:5]
    print("\ntoo old: %d requests %s; the old line sent %d times; %s\n  drover: %s\n  %s"
          % (len(reqs), [r.status for r in reqs], len(old_sent), dl.summary(),
             {"dropped": m.find("drover_dropped_records_total"),
              "records": m.get("drover_output_records_total", name="loki"),
              "codes": requests_by_code(m), "retries": m.get("drover_output_retries_total")},
             "\n  ".join(warn)))
    failures = []
    if dl.missing or dl.duplicates or dl.unexpected or dl.n_mismatches:
        failures.append("the good lines: " + dl.summary())
    if any(e.line == old.text for e in entries):
        failures.append("the old line is in Loki")
    if len(old_sent) != 1:
        failures.append("the old line was sent %d times (want once: a 400 is not retried)" % len(old_sent))
    if 400 not in [r.status for r in reqs]:
        failures.append("Loki never answered 400: %s" % [r.status for r in reqs])
    too_old = m.get("drover_dropped_records_total", name="loki", reason="too_old")
    if too_old != 1:
        failures.append("drover_dropped_records_total{reason=\"too_old\"} = %s, want 1 (all drops: %s)"
                        % (too_old, m.find("drover_dropped_records_total")))
    if m.get("drover_output_retries_total", name="loki") != 0:
        failures.append("drover_output_retries_total %s" % m.get("drover_output_retries_total", name="loki"))
    delivered = m.get("drover_output_records_total", name="loki")
    if delivered != len(good):
        failures.append("drover_output_records_total %s, want %d (Loki stored them)" % (delivered, len(good)))
    assert not failures, "\n".join(failures)


# ---- (h) through the fault proxy --------------------------------------------------------------------------


def _after_wave(reqs, first_fail_done: float, margin: float = 0.5):
    """The requests that arrived clearly after the first failure was
    answered (the ones already in flight then are the "wave")."""
    return [r for r in reqs if r.arrived > first_fail_done + margin]


ON_THE_WAY = 0.05  # a request this soon after an answer may have left before drover read it


def fault_report(reqs, t0: float) -> str:
    """The requests not answered 2xx in pass mode, and the first one after
    each run of those, relative to t0."""
    out, prev_bad = [], False
    for r in reqs:
        bad = r.mode != "pass" or not (r.status and 200 <= r.status < 300)
        if bad or prev_bad:
            out.append(r.summary(t0))
        prev_bad = bad
    return "\n".join(out[-80:])


@pytest.mark.time_limit(120)
def test_retry_after_503_one_at_a_time(start_loki, start_drover, track, tmp_path):
    """503 with Retry-After: 3 for 8 s (each answer held 0.2 s so that
    overlapping requests would show). Once the first 503 is answered, the
    requests already on their way aside, drover has at most one request
    open, and sends nothing sooner than ~3 s (2.7) after the latest 503
    answer; then everything arrives."""
    srv = start_loki()
    root = tmp_path / "node"
    w = WriterProcess(str(root), str(tmp_path), seed=708, rate=300, duration=16,
                      max_size=256 * 1024)
    track(w.start())
    time.sleep(0.5)
    with FaultProxy(srv.http_port) as proxy:
        d = start_drover(drover_config(tmp_path, paths=node_paths(root),
                                       outputs=[loki_output("loki", proxy.push_url,
                                                            batch_wait="200ms")])).wait_ready()
        proxy.wait_requests(3, timeout=15, mode="pass")
        time.sleep(1)
        fail_start = time.monotonic()
        proxy.set_mode("503", retry_after=3, seconds=8, delay=0.2)
        time.sleep(8)
        fail_end = time.monotonic()
        expected = w.finish()
        t0 = start_time(expected)
        c = wait_loki_count(srv, SEL, t0, len(expected), timeout=60)
        entries = read_back(srv, SEL, t0)
        m = d.metrics()
        assert d.stop() == 0
        reqs = proxy.requests()
    report = fault_report(reqs, fail_start)
    failing = [r for r in reqs if r.mode == "503"]
    dl = Delivery(expected, as_records(entries))
    print("\n503: %d requests answered 503; Loki count %d of %d\n%s\n  %s\n  drover %s retries %s"
          % (len(failing), c, len(expected), report, dl.summary(), requests_by_code(m),
             m.get("drover_output_retries_total", name="loki")))
    assert len(failing) >= 2, "drover did not retry within 8 s of 503s:\n" + report
    first_done = min(r.done for r in failing)
    wave = [r for r in reqs if fail_start <= r.arrived <= first_done + ON_THE_WAY]
    # every request after the wave, while failing and the first one after
    checked = [r for r in reqs if r.arrived > first_done + ON_THE_WAY]
    first_ok = next((r for r in checked if r.mode == "pass"), None)
    checked = [r for r in checked if r.mode == "503" or r is first_ok]
    failures = []
    for r in checked:
        if r.mode == "503" and (r.concurrent != 1 or r.peak != 1):
            failures.append("request #%d arrived while failing with %d open (peak %d)"
                            % (r.seq, r.concurrent, r.peak))
        answered = [f for f in failing if f.done is not None and f.done <= r.arrived]
        last = max(answered, key=lambda f: f.done)
        gap = r.arrived - last.done
        if gap < 2.7:  # "at least ~3 s": 10% slack
            failures.append("request #%d (%s) came %.3fs after the 503 (Retry-After: 3) answered to #%d"
                            % (r.seq, r.mode, gap, last.seq))
    if len(wave) > 4:
        failures.append("%d requests in the first wave (max_inflight 4)" % len(wave))
    assert not failures, "\n".join(failures) + "\n" + report
    assert first_ok is not None and first_ok.arrived < fail_end + 4, "no success after the 503s"
    dl.assert_exactly_once()
    assert m.get("drover_output_requests_total", name="loki", code="503") == len(failing)
    assert m.get("drover_output_retries_total", name="loki") >= 1


@pytest.mark.time_limit(170)
def test_500_hang_close_garbage_429_retried(start_loki, start_drover, track, tmp_path):
    """Through the proxy, one failure after another, each followed by
    pass-through until a push succeeds again (so that backoff starts afresh):
    500 for 6 s (retried with growing waits, not hammered); a hung backend
    for 5 s with timeout: 2s (each hung request given up after ~2 s, then
    retried); 3 connections reset mid-request; 3 garbage answers; 2 x 429.
    Nothing is lost."""
    srv = start_loki()
    root = tmp_path / "node"
    w = WriterProcess(str(root), str(tmp_path), seed=709, rate=300, duration=120,
                      max_size=256 * 1024)
    track(w.start())
    time.sleep(0.5)
    # (mode, seconds, requests): the mode lasts `seconds`, or until that many requests got it
    phases = [("500", 6, None), ("hang", 5, None), ("close", 15, 3), ("garbage", 15, 3), ("429", 15, 2)]
    windows = {}
    with FaultProxy(srv.http_port) as proxy:
        d = start_drover(drover_config(tmp_path, paths=node_paths(root), outputs=[
            loki_output("loki", proxy.push_url, batch_wait="200ms", timeout="2s",
                        retry_min="500ms", retry_max="4s")])).wait_ready()
        proxy.wait_requests(2, timeout=15, mode="pass")
        t_begin = time.monotonic()
        for mode, secs, count in phases:
            start = time.monotonic()
            proxy.set_mode(mode, seconds=secs, count=count)
            if count:
                try:
                    proxy.wait_requests(count, timeout=secs, mode=mode, since=start)
                except AssertionError:
                    pass  # the checks below say what is missing
                proxy.set_mode("pass")
            else:
                time.sleep(secs)
            end = time.monotonic()
            windows[mode] = (start, end)
            # recovered: a push went through after the phase
            try:
                wait_until(lambda: any(r.arrived > end and r.status == 204 for r in proxy.requests()),
                           12, interval=0.1, what="a successful push after %s" % mode)
            except AssertionError:
                pass
            time.sleep(0.5)
        w.proc.send_signal(signal.SIGINT)  # the writer ends cleanly, with its manifest
        expected = w.finish()
        t0 = start_time(expected)
        c = wait_loki_count(srv, SEL, t0, len(expected), timeout=60)
        entries = read_back(srv, SEL, t0)
        m = d.metrics()
        assert d.stop() == 0
        reqs = proxy.requests()
    report = fault_report(reqs, t_begin)
    dl = Delivery(expected, as_records(entries))
    by_mode = collections.Counter(r.mode for r in reqs)
    print("\nfailures: requests by mode %s; phases %s; Loki count %d of %d\n%s\n  %s\n"
          "  drover %s retries %s"
          % (dict(by_mode), {k: (round(a - t_begin, 2), round(b - t_begin, 2)) for k, (a, b) in windows.items()},
             c, len(expected), report, dl.summary(), requests_by_code(m),
             m.get("drover_output_retries_total", name="loki")))
    failures = []
    for mode, _, count in phases:
        if by_mode[mode] < (count or 1):
            failures.append("%d request(s) answered %s, want %d" % (by_mode[mode], mode, count or 1))
    # 500: retried, with backoff: not more than a wave plus ~6 retries in 6 s
    f500 = [r for r in reqs if r.mode == "500"]
    if not 2 <= len(f500) <= 12:
        failures.append("%d requests answered 500 in 6 s (want retries with backoff: 2..12)" % len(f500))
    # while failing: one request at a time once the first failure was answered
    for mode in ("500", "429", "close", "garbage"):
        fs = [r for r in reqs if r.mode == mode]
        if fs:
            first_done = min(r.done for r in fs if r.done is not None)
            for r in fs:
                if r.arrived > first_done + ON_THE_WAY and r.concurrent != 1:
                    failures.append("%s: request #%d arrived with %d open" % (mode, r.seq, r.concurrent))
    # hang: every hung request given up by drover after ~timeout (2 s)
    hung = [r for r in reqs if r.mode == "hang"]
    for r in hung:
        if r.error != "client closed" or not 1.5 <= (r.duration or 0) <= 4.5:
            failures.append("hung request #%d: %s after %.2fs (timeout: 2s)"
                            % (r.seq, r.error, r.duration or -1))
    if len(hung) < 2:
        failures.append("only %d request(s) hung in 5 s: not retried after the timeout?" % len(hung))
    # after the last phase everything goes through
    last_end = windows["429"][1]
    tail = [r for r in reqs if r.arrived > last_end + 0.1]
    if not tail or any(r.status != 204 for r in tail):
        failures.append("after the faults: %s" % [(r.seq, r.status) for r in tail][:10])
    assert not failures, "\n".join(failures) + "\n" + report
    dl.assert_exactly_once()
    assert m.get("drover_output_requests_total", name="loki", code="500") == len(f500)
    assert m.get("drover_output_retries_total", name="loki") >= len(f500)
    assert m.get("drover_dropped_records_total") == 0, m.find("drover_dropped_records_total")


# ---- (i) SIGTERM during an outage ---------------------------------------------------------------------------


@pytest.mark.time_limit(120)
def test_sigterm_during_outage_within_grace(start_loki, start_drover, track, tmp_path):
    """Loki down, drover retrying with records queued: SIGTERM makes it exit
    (status 0) within its grace_period (3 s here, plus a little); started
    again with Loki back up, it sends the rest: nothing lost."""
    grace = 3.0
    srv = start_loki()
    root = tmp_path / "node"
    duration = 14
    w = WriterProcess(str(root), str(tmp_path), seed=710, rate=800, duration=duration,
                      max_size=512 * 1024, link_remove_delay=10)
    track(w.start())
    time.sleep(0.5)
    cfg = drover_config(tmp_path, paths=node_paths(root), grace_period="%ds" % grace,
                        outputs=[loki_output("loki", srv.push_url, retry_min="500ms", retry_max="2s")])
    d = start_drover(cfg).wait_ready()
    time.sleep(3)
    srv.stop()
    time.sleep(3)
    m_before = d.metrics()
    queued = m_before.get("drover_queue_bytes", name="loki")
    t = time.monotonic()
    d.signal(signal.SIGTERM)
    rc = d.wait(grace + 15)
    took = time.monotonic() - t
    first_log = d.log_text()
    srv.start()
    time.sleep(1)
    d.start().wait_ready()
    expected = w.finish()
    t0 = start_time(expected)
    c = wait_loki_count(srv, SEL, t0, len(expected), timeout=60)
    entries = read_back(srv, SEL, t0)
    m = d.metrics()
    assert d.stop() == 0
    dl = Delivery(expected, as_records(entries))
    print("\nsigterm during outage: queued %.0f bytes, retries %s; exit %s after %.2fs "
          "(grace_period %.0fs)\n  second run: %s; Loki count %d of %d\n  %s"
          % (queued, m_before.get("drover_output_retries_total", name="loki"), rc, took, grace,
             requests_by_code(m), c, len(expected), dl.summary()))
    assert m_before.get("drover_output_retries_total", name="loki") > 0, "drover was not retrying"
    assert took <= grace + 1.5, "drover took %.2fs to exit after SIGTERM (grace_period %.0fs)\n%s" % (
        took, grace, first_log[-3000:])
    assert rc == 0, "exit status %s after SIGTERM\n%s" % (rc, first_log[-3000:])
    dl.assert_exactly_once()
