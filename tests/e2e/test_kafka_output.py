"""The kafka output against real Apache Kafka brokers (kafka_servers.py): a
single KRaft node for most tests, a three-broker cluster (replication 3,
min.insync.replicas 2) for the failure tests.

What drover wrote is read back from the topics from the beginning with
kcat and compared with kubelet_writer's manifest (Delivery): every line
with its time, stream and kubernetes fields. With SIGKILLs and broker
failures the check is "nothing lost" after de-duplication by content (the
line's unique id), and the copies are counted and reported.

  test_steady_exactly_once_in_pod_order   writer -> tail -> kafka: exactly once,
                                          one pod's lines in one partition in order,
                                          headers, self-metrics
  test_topic_from_a_field                 topic_key: per-record topics, default topic,
                                          an invalid name dropped and counted
  test_raw_and_msgpack_values             format raw (bytes as written) and msgpack
  test_samples_as_write_requests          prometheus_scrape -> kafka: WriteRequests that
                                          hold exactly what drover scraped
  test_too_large_dropped_rest_flows       too large for the broker or for message_max_bytes:
                                          counted drops, the rest flows
  test_unknown_topic_dropped_when_brokers_do_not_create_topics
  test_broker_sigkill_nothing_lost        3 brokers, one SIGKILLed mid-run and restarted
  test_cluster_down_30s_held_and_caught_up  all brokers down for 30 s: RSS flat, caught up
  test_drover_sigkill_nothing_lost        drover SIGKILLed and restarted: duplicates counted
  test_sasl_and_tls                       SASL PLAIN, TLS, both; a wrong password
                                          and a wrong CA deliver nothing and say why
  test_sasl_scram                         SCRAM-SHA-256 and -512 (Kafka 3.9 brokers)
  test_sasl_oauthbearer                   OAUTHBEARER with client-credentials tokens,
                                          refreshed; a wrong client secret delivers nothing
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import struct
import subprocess
import time

import pytest

from drover_e2e import (HOST, Delivery, OutputFile, WriterProcess, kill_at, make_cert, rss_bytes,
                        wait_until, yaml_str)
from kafka_servers import kafka, kafka3, kafka39_libs, kafka_libs, start_kafka  # noqa: F401
from kubelet_writer import Expected
from metrics_servers import node_exporter  # noqa: F401

NODE = "e2e-kafka-node"


# ---- configuration ---------------------------------------------------------------------------------


def kafka_output(name: str, brokers: str, topic: str, *, match: str = "pods", **opts) -> str:
    text = ("  - name: %s\n    type: kafka\n    match: %s\n    brokers: [%s]\n    topic: %s\n"
            "    statistics_interval: 1s\n" % (name, match, yaml_str(brokers), yaml_str(topic)))
    for k, v in opts.items():
        if isinstance(v, (list, tuple)):
            v = "[%s]" % ", ".join(yaml_str(str(x)) for x in v)
        elif isinstance(v, bool):
            v = "true" if v else "false"
        elif not isinstance(v, (int, float)):
            v = yaml_str(str(v))
        text += "    %s: %s\n" % (k, v)
    return text


def drover_config(tmp_path, *, paths, outputs: list[str], filters: str = "",
                  grace_period: str = "5s") -> str:
    text = ("agent:\n"
            "  node_name: %s\n"
            "  data_dir: %s\n"
            "  http:\n"
            "    listen: %s\n"
            "  grace_period: %s\n"
            "  log_level: debug\n"
            "inputs:\n"
            "  - name: pods\n"
            "    type: tail\n"
            "    paths: [%s]\n"
            "    read_from: head\n"
            "    partial_timeout: 1s\n"
            % (NODE, yaml_str(str(tmp_path / "data")), yaml_str("%s:0" % HOST), grace_period,
               ", ".join(yaml_str(str(p)) for p in paths)))
    if filters:
        text += "filters:\n" + filters
    text += "outputs:\n" + "".join(outputs)
    path = tmp_path / "drover.yaml"
    path.write_text(text)
    return str(path)


def node_paths(root) -> list[str]:
    return [str(root / "containers" / "*.log")]


def records_of(messages) -> list[dict]:
    return [json.loads(m.value) for m in messages]


def invalid_utf8(expected: list[Expected]) -> int:
    n = 0
    for e in expected:
        try:
            e.msg.decode("utf-8")
        except UnicodeDecodeError:
            n += 1
    return n


def seq_of(message: str):
    """("pod/container/rN", n) of a line's unique id, or None."""
    if not message.startswith("seq="):
        return None
    key, _, n = message[4:].split(" ", 1)[0].rpartition(":")
    return (key, int(n)) if n.isdigit() else None


def consume_all(srv, topic: str, want: int, *, timeout: float):
    """Every message of the topic once at least `want` are there (or the
    timeout passed): polled with kcat, then read whole."""
    wait_until(lambda: srv.count(topic) >= want, timeout=timeout, interval=1.0)
    return srv.consume(topic)


# ---- (a) steady: exactly once, per-pod order ---------------------------------------------------------


@pytest.mark.time_limit(180)
def test_steady_exactly_once_in_pod_order(kafka, start_drover, track, tmp_path):
    """3000 lines/s for 12 s with rotation, a container restart and a
    docker container, into a topic of 3 partitions keyed by pod uid: every
    line exactly once with its time, stream and kubernetes fields; all of a
    pod's lines in one partition, each container stream's in the order written;
    the headers from record keys; the self-metrics from librdkafka's
    statistics."""
    kafka.create_topic("logs", partitions=3)
    root = tmp_path / "node"
    w = WriterProcess(str(root), str(tmp_path), seed=801, rate=3000, duration=12, pods=3,
                      restart_at=[6], max_size=256 * 1024)
    track(w.start())
    time.sleep(0.5)
    d = start_drover(drover_config(tmp_path, paths=node_paths(root), outputs=[
        kafka_output("kafka", kafka.bootstrap, "logs", key="kubernetes.pod_uid",
                     headers=["namespace=kubernetes.namespace", "kubernetes.container", "stream"])
    ])).wait_ready()
    expected = w.finish()
    n = len(expected)
    wait_until(lambda: d.metric("drover_output_records_total", name="kafka") >= n, timeout=60,
               interval=0.5)
    msgs = consume_all(kafka, "logs", n, timeout=30)
    time.sleep(2)  # a statistics interval, for the gauges
    m = d.metrics()
    assert d.stop() == 0
    dl = Delivery(expected, records_of(msgs))
    print("\nsteady kafka: writer %s\n  %d messages in partitions %s\n  %s"
          % (w.summary, len(msgs), dict(collections.Counter(x.partition for x in msgs)),
             dl.summary()))
    dl.assert_exactly_once()

    # one pod, one partition; a container's lines of one stream in order along the offsets
    partitions_of = collections.defaultdict(set)
    last = {}
    for x in sorted(msgs, key=lambda x: (x.partition, x.offset)):
        rec = json.loads(x.value)
        k8s = rec["kubernetes"]
        assert x.key == k8s["pod_uid"].encode(), (x.key, k8s)
        partitions_of[k8s["pod_uid"]].add(x.partition)
        hdrs = dict(x.headers)
        assert hdrs == {"namespace": k8s["namespace"].encode(),
                        "kubernetes.container": k8s["container"].encode(),
                        "stream": rec["stream"].encode()}, hdrs
        s = seq_of(rec["message"])
        if s:
            # per stream: a line split in pieces can be finished after a line of
            # the other stream that the runtime wrote between its pieces
            k = (s[0], rec["stream"])
            assert last.get(k, -1) < s[1], "out of order: %s after %s" % (s, last.get(k))
            last[k] = s[1]
    assert all(len(p) == 1 for p in partitions_of.values()), dict(partitions_of)
    assert len({next(iter(p)) for p in partitions_of.values()}) >= 2, "3 pods in one partition"

    assert m.get("drover_output_records_total", name="kafka") == n
    assert m.get("drover_kafka_delivered_messages_total", name="kafka") == n
    assert m.get("drover_dropped_records_total") == 0, m.find("drover_dropped_records_total")
    assert m.get("drover_output_invalid_utf8_records_total", name="kafka") == invalid_utf8(expected)
    assert m.get("drover_kafka_sent_messages_total", name="kafka") >= n
    assert m.get("drover_kafka_broker_up", name="kafka", broker="1") == 1
    assert m.has("drover_kafka_broker_rtt_seconds", name="kafka", broker="1")
    assert m.get("drover_kafka_resent_records_total", name="kafka") == 0


# ---- (b) topics from a field ----------------------------------------------------------------------------


@pytest.mark.sanitizer
@pytest.mark.time_limit(120)
def test_topic_from_a_field(kafka, start_drover, tmp_path):
    """topic_key names a field the parse filter takes from JSON lines: a
    line with tenant "team-a" goes to topic team-a (created by the broker),
    one without the field to the default topic, one with a name Kafka
    refuses is dropped and counted as invalid_topic."""
    from kubelet_writer import KubeletWriter
    root = tmp_path / "node"
    w = KubeletWriter(str(root), seed=3)
    c = w.add_container("shop", "web-0", "app")
    lines = [b'{"tenant":"team-a","n":1}', b'{"n":2}', b'{"tenant":"team-b","n":3}',
             b'{"tenant":"not a topic!","n":4}', b'{"tenant":"team-a","n":5}', b'plain text 6']
    for line in lines:
        w.log(c, line)
    w.close()
    filters = "  - {type: parse, match: pods, format: json}\n"
    d = start_drover(drover_config(tmp_path, paths=node_paths(root), filters=filters, outputs=[
        kafka_output("kafka", kafka.bootstrap, "logs-default", topic_key="tenant", format="raw")
    ])).wait_ready()
    wait_until(lambda: d.metric("drover_output_records_total", name="kafka") >= 5, timeout=60,
               interval=0.5)
    m = d.metrics()
    assert d.stop() == 0
    got = {t: sorted(x.value for x in kafka.consume(t)) for t in ("team-a", "team-b", "logs-default")}
    assert got == {"team-a": sorted([lines[0], lines[4]]), "team-b": [lines[2]],
                   "logs-default": sorted([lines[1], lines[5]])}, got
    assert m.get("drover_dropped_records_total", name="kafka", reason="invalid_topic") == 1
    assert m.get("drover_output_records_total", name="kafka") == 5


# ---- (c) value formats -------------------------------------------------------------------------------


def mp_decode(b: bytes):
    """A msgpack reader for what drover writes (str, map, array, nil, bool, ints, float64)."""
    import msgpack
    return msgpack.unpackb(b, raw=False)


@pytest.mark.sanitizer
@pytest.mark.time_limit(120)
def test_raw_and_msgpack_values(kafka, start_drover, tmp_path):
    """format raw: the value is the line's bytes as the container wrote them,
    invalid UTF-8 included; msgpack: the file output's record as one map
    (invalid UTF-8 replaced, as msgpack strings must be UTF-8)."""
    from kubelet_writer import KubeletWriter
    root = tmp_path / "node"
    w = KubeletWriter(str(root), seed=4)
    c = w.add_container("ns1", "api-0", "srv")
    lines = [b"hello", b"caf\xc3\xa9", b"bad \xff\xfe bytes", b"", b"x" * 20000]
    for line in lines:
        w.log(c, line)
    w.close()
    d = start_drover(drover_config(tmp_path, paths=node_paths(root), outputs=[
        kafka_output("raw", kafka.bootstrap, "raw", format="raw"),
        kafka_output("mp", kafka.bootstrap, "mp", format="msgpack"),
    ])).wait_ready()
    wait_until(lambda: d.metric("drover_output_records_total", name="mp") >= len(lines)
               and d.metric("drover_output_records_total", name="raw") >= len(lines), timeout=60,
               interval=0.5)
    m = d.metrics()
    assert d.stop() == 0
    raw = [x.value for x in sorted(kafka.consume("raw"), key=lambda x: (x.partition, x.offset))]
    assert sorted(raw) == sorted(lines)
    mp = [mp_decode(x.value) for x in kafka.consume("mp")]
    assert sorted(r["message"] for r in mp) == sorted(l.decode("utf-8", "replace") for l in lines)
    r = next(r for r in mp if r["message"] == "hello")
    assert r["stream"] == "stdout" and r["kubernetes"]["namespace"] == "ns1"
    assert r["kubernetes"]["pod"] == "api-0" and r["kubernetes"]["container"] == "srv"
    assert set(r) == {"time", "stream", "message", "kubernetes"}, r
    assert m.get("drover_output_invalid_utf8_records_total", name="mp") == 1


# ---- (d) metric samples as WriteRequests ---------------------------------------------------------------


def _varint(b: bytes, i: int) -> tuple[int, int]:
    x = shift = 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return x, i


def _fields(b: bytes):
    """(field number, value) of a protobuf message: ints, 8-byte and length-delimited values."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wt)
        yield num, v


STALE_NAN = 0x7FF0000000000002


def write_request_samples(body: bytes):
    """The samples of a prometheus.WriteRequest (remote write 1.0): yields
    (labels, ts_ms, value) with value "stale" for the staleness marker.
    TimeSeries = 1 {labels = 1 {name = 1, value = 2}, samples = 2 {value = 1
    (double), timestamp = 2 (int64)}}."""
    for num, ts in _fields(body):
        if num != 1:
            continue
        labels, samples = {}, []
        for f, v in _fields(ts):
            if f == 1:
                kv = dict(_fields(v))
                labels[kv.get(1, b"").decode()] = kv.get(2, b"").decode()
            elif f == 2:
                s = dict(_fields(v))
                bits = struct.unpack("<Q", s.get(1, b"\0" * 8))[0]
                t = s.get(2, 0)
                if t >= 1 << 63:
                    t -= 1 << 64
                value = "stale" if bits == STALE_NAN else struct.unpack("<d", struct.pack("<Q", bits))[0]
                samples.append((t, value))
        for t, value in samples:
            yield labels, t, value


def _ts_ms(rfc3339: str) -> int:
    import datetime
    base, _, frac = rfc3339.rstrip("Z").partition(".")
    t = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return int(t.timestamp()) * 1000 + int((frac + "000")[:3])


def _key(labels: dict, ts: int, value) -> tuple:
    if isinstance(value, float) and value != value:
        value = "NaN"
    return (json.dumps(labels, sort_keys=True), ts, value)


@pytest.mark.sanitizer
@pytest.mark.time_limit(120)
def test_samples_as_write_requests(kafka, node_exporter, start_drover, tmp_path):
    """prometheus_scrape of node-exporter every second into kafka and, beside
    it, the file output: the topic's messages are remote-write 1.0
    WriteRequests (at most metrics_samples_per_message samples each), keyed
    job/instance, holding exactly the samples of the file, each once."""
    out = str(tmp_path / "samples.ndjson")
    cfg = ("agent:\n  data_dir: %s\n  http:\n    listen: %s\n  log_level: debug\n"
           "inputs:\n  - name: scrape\n    type: prometheus_scrape\n    scrape_interval: 1s\n"
           "    scrape_timeout: 1s\n    scrape_configs:\n"
           "      - job_name: node\n        static_configs: [{targets: [%s]}]\n"
           "outputs:\n%s  - name: copy\n    type: file\n    match: scrape\n    path: %s\n"
           % (yaml_str(str(tmp_path / "data")), yaml_str(HOST + ":0"), node_exporter.address,
              kafka_output("kafka", kafka.bootstrap, "metrics", match="scrape",
                           metrics_samples_per_message=100), yaml_str(out)))
    (tmp_path / "drover.yaml").write_text(cfg)
    d = start_drover(str(tmp_path / "drover.yaml")).wait_ready()
    time.sleep(5)
    assert d.stop() == 0
    f = OutputFile(out)
    f.read()
    want = collections.Counter()
    for r in f.records:
        labels = dict(r["labels"])
        labels["__name__"] = r["name"]
        value = "stale" if r.get("stale") else float(r["value"])
        want[_key(labels, _ts_ms(r["time"]), value)] += 1
    assert len(want) > 100, "too few samples scraped: %d" % len(want)
    msgs = kafka.consume("metrics")
    got = collections.Counter()
    for x in msgs:
        assert x.key == ("node/%s" % node_exporter.address).encode(), x.key
        n = 0
        for labels, ts, value in write_request_samples(x.value):
            got[_key(labels, ts, value)] += 1
            n += 1
        assert 0 < n <= 100, n
    missing = want - got
    extra = got - want
    assert not missing and not extra, "missing %d (e.g. %s), extra %d (e.g. %s)" % (
        len(missing), list(missing)[:3], len(extra), list(extra)[:3])


# ---- (e) permanent errors ------------------------------------------------------------------------------


@pytest.mark.time_limit(150)
def test_too_large_dropped_rest_flows(kafka, start_drover, tmp_path):
    """A topic whose max.message.bytes is 8 KiB: a 40 KB line the broker
    refuses is dropped, counted as too_large, and every other line arrives;
    with message_max_bytes 4096 the output drops a 5 KB line itself, before
    sending."""
    from kubelet_writer import KubeletWriter
    kafka.create_topic("small", partitions=1, configs={"max.message.bytes": "8192"})
    root = tmp_path / "node"
    w = KubeletWriter(str(root), seed=5)
    c = w.add_container("ns1", "big-0", "app")
    rng = random.Random(5)
    small = [b"line %d" % i for i in range(100)]
    huge = "".join("%02x" % rng.randrange(256) for _ in range(20000)).encode()  # 40 KB
    medium = "".join("%02x" % rng.randrange(256) for _ in range(2500)).encode()  # 5 KB
    for line in small[:50] + [huge, medium] + small[50:]:
        w.log(c, line)
    w.close()
    d = start_drover(drover_config(tmp_path, paths=node_paths(root), outputs=[
        kafka_output("broker", kafka.bootstrap, "small", format="raw", batch_bytes=8000),
        kafka_output("local", kafka.bootstrap, "local", format="raw", message_max_bytes=4096),
    ])).wait_ready()
    wait_until(lambda: d.metric("drover_output_records_total", name="broker") >= 101
               and d.metric("drover_output_records_total", name="local") >= 100, timeout=60,
               interval=0.5)
    m = d.metrics()
    assert d.stop() == 0
    assert sorted(x.value for x in kafka.consume("small")) == sorted(small + [medium])
    assert sorted(x.value for x in kafka.consume("local")) == sorted(small)
    assert m.get("drover_dropped_records_total", name="broker", reason="too_large") == 1
    assert m.get("drover_dropped_records_total", name="local", reason="too_large") == 2
    assert m.get("drover_kafka_errors_total", name="broker", code="MSG_SIZE_TOO_LARGE") == 1


# ---- (f) failures ----------------------------------------------------------------------------------------


def nothing_lost(expected, msgs, label: str, extra: str = "") -> Delivery:
    dl = Delivery(expected, records_of(msgs))
    print("\n%s: %d written, %d messages, %d duplicates\n  %s%s"
          % (label, len(expected), len(msgs), dl.duplicates, dl.summary(), extra))
    dl.assert_nothing_lost()
    return dl


@pytest.mark.time_limit(300)
def test_broker_sigkill_nothing_lost(kafka3, start_drover, track, tmp_path):
    """Three brokers, a topic of replication 3 and min.insync.replicas 2: one
    broker SIGKILLed 5 s into a 20 s run and started again 8 s later. Every
    line arrives (acks=all: a confirmed line is on two brokers at least);
    the idempotent producer keeps librdkafka's resends out of the topic."""
    kafka3.create_topic("logs", partitions=3, replication=3)
    root = tmp_path / "node"
    duration = 20
    w = WriterProcess(str(root), str(tmp_path), seed=811, rate=2000, duration=duration, pods=3)
    track(w.start())
    time.sleep(0.5)
    d = start_drover(drover_config(tmp_path, paths=node_paths(root), outputs=[
        kafka_output("kafka", kafka3.bootstrap, "logs", key="kubernetes.pod_uid")])).wait_ready()
    time.sleep(5)
    kafka3.kill_broker(0)
    time.sleep(8)
    kafka3.start_broker(0)
    expected = w.finish()
    n = len(expected)
    wait_until(lambda: d.metric("drover_output_records_total", name="kafka") >= n, timeout=120,
               interval=1.0)
    m = d.metrics()
    assert d.stop() == 0
    msgs = kafka3.consume("logs")
    dl = nothing_lost(expected, msgs, "broker SIGKILL",
                      "\n  librdkafka retries %s" % m.get("drover_kafka_retries_total", name="kafka"))
    assert dl.duplicates == 0, dl.duplicates
    assert m.get("drover_dropped_records_total") == 0, m.find("drover_dropped_records_total")


@pytest.mark.time_limit(300)
def test_cluster_down_30s_held_and_caught_up(kafka, start_drover, track, tmp_path):
    """The whole cluster (one broker) stopped for 30 s while 2000 lines/s are
    written: drover holds (librdkafka's buffer, 4 MiB here, then the output's
    queue fill, then the inputs wait on their files), its RSS stays within
    a bound over the outage, and everything arrives once the broker is back."""
    kafka.create_topic("logs", partitions=3)
    root = tmp_path / "node"
    duration = 45
    w = WriterProcess(str(root), str(tmp_path), seed=812, rate=2000, duration=duration, pods=2,
                      max_size=4 * 1024 * 1024, max_files=8)
    track(w.start())
    time.sleep(0.5)
    d = start_drover(drover_config(tmp_path, paths=node_paths(root), outputs=[
        kafka_output("kafka", kafka.bootstrap, "logs", buffer_max_bytes="4MiB")])).wait_ready()
    time.sleep(5)
    rss_before = rss_bytes(d.pid)
    kafka.stop_all()
    rss = []
    t_end = time.monotonic() + 30
    while time.monotonic() < t_end:
        rss.append(rss_bytes(d.pid))
        time.sleep(1)
    queued = d.metric("drover_kafka_queue_bytes", name="kafka")
    kafka.start_all()
    expected = w.finish()
    n = len(expected)
    wait_until(lambda: d.metric("drover_output_records_total", name="kafka") >= n, timeout=120,
               interval=1.0)
    m = d.metrics()
    assert d.stop() == 0
    msgs = kafka.consume("logs")
    nothing_lost(expected, msgs, "cluster down 30s",
                 "\n  RSS before %.1f MiB, during the outage max %.1f MiB; librdkafka queue %d bytes"
                 % (rss_before / 2**20, max(rss) / 2**20, queued))
    assert max(rss) - rss_before < 40 * 2**20, (rss_before, max(rss))
    assert m.get("drover_dropped_records_total") == 0, m.find("drover_dropped_records_total")


@pytest.mark.time_limit(240)
def test_drover_sigkill_nothing_lost(kafka, start_drover, track, tmp_path):
    """drover SIGKILLed 3 times at seeded moments and restarted: every line
    in the topic; what a killed drover had sent but not checkpointed is sent
    again (counted and reported, not an error)."""
    kafka.create_topic("logs", partitions=3)
    rng = random.Random(8130)
    root = tmp_path / "node"
    duration = 15
    w = WriterProcess(str(root), str(tmp_path), seed=813, rate=3000, duration=duration,
                      restart_at=[duration * 0.4], link_remove_delay=10)
    track(w.start())
    time.sleep(0.5)
    d = start_drover(drover_config(tmp_path, paths=node_paths(root), outputs=[
        kafka_output("kafka", kafka.bootstrap, "logs", key="kubernetes.pod_uid")])).wait_ready()
    kills = kill_at(d, sorted(rng.uniform(2, duration - 2) for _ in range(3)), rng)
    expected = w.finish()
    n = len(expected)
    wait_until(lambda: kafka.count("logs") >= n and
               d.metric("drover_queue_chunks", name="kafka") == 0, timeout=90, interval=1.0)
    time.sleep(2)
    m = d.metrics()
    assert d.stop() == 0
    msgs = kafka.consume("logs")
    nothing_lost(expected, msgs, "drover SIGKILL at %s s" % kills)
    assert m.get("drover_dropped_records_total") == 0, m.find("drover_dropped_records_total")


@pytest.mark.time_limit(150)
def test_unknown_topic_dropped_when_brokers_do_not_create_topics(start_kafka, start_drover, tmp_path):
    """auto.create.topics.enable false: records for a topic that does not
    exist are dropped once librdkafka gives up waiting for it
    (topic.metadata.propagation.max.ms, passed through `properties`),
    counted as unknown_topic; the records of an existing topic flow."""
    from kubelet_writer import KubeletWriter
    kafka = start_kafka(auto_create_topics=False)
    kafka.create_topic("known", partitions=1)
    root = tmp_path / "node"
    w = KubeletWriter(str(root), seed=6)
    c = w.add_container("ns1", "app-0", "app")
    lines = [b'{"t":"known","n":%d}' % i if i % 2 else b'{"t":"missing","n":%d}' % i
             for i in range(20)]
    for line in lines:
        w.log(c, line)
    w.close()
    filters = "  - {type: parse, match: pods, format: json}\n"
    out = kafka_output("kafka", kafka.bootstrap, "known", topic_key="t", format="raw")
    out += "    properties: {topic.metadata.propagation.max.ms: 3000}\n"
    d = start_drover(drover_config(tmp_path, paths=node_paths(root), filters=filters,
                                   outputs=[out])).wait_ready()
    wait_until(lambda: d.metric("drover_dropped_records_total", name="kafka",
                                reason="unknown_topic") >= 10, timeout=90, interval=0.5)
    wait_until(lambda: d.metric("drover_output_records_total", name="kafka") >= 10, timeout=30,
               interval=0.5)
    m = d.metrics()
    assert d.stop() == 0
    assert sorted(x.value for x in kafka.consume("known")) == sorted(lines[1::2])
    assert m.get("drover_dropped_records_total", name="kafka", reason="unknown_topic") == 10
    assert m.get("drover_output_records_total", name="kafka") == 10
    assert kafka.count("missing") == 0


# ---- (g) authentication and TLS --------------------------------------------------------------------------


@pytest.mark.time_limit(150)
def test_sasl_and_tls(start_kafka, start_drover, tmp_path):
    """Brokers with SASL PLAIN and TLS listeners: SASL PLAIN in the clear,
    SASL PLAIN over TLS with the password from a file and the broker
    verified against its CA, TLS alone; each output's lines
    arrive. A wrong password delivers nothing and says why in the log; TLS
    against a CA that did not sign the broker's certificate neither."""
    from kubelet_writer import KubeletWriter
    cert, key = make_cert(tmp_path, "kafka")
    other_ca, _ = make_cert(tmp_path, "other")
    kafka = start_kafka(sasl_users={"drover": "drover-secret"}, tls=(cert, key))
    pw = tmp_path / "password"
    pw.write_text("drover-secret\n")
    root = tmp_path / "node"
    w = KubeletWriter(str(root), seed=7)
    c = w.add_container("ns1", "auth-0", "app")
    lines = [b"auth line %d" % i for i in range(10)]
    for line in lines:
        w.log(c, line)
    w.close()
    outputs = [
        kafka_output("plain", kafka.bootstrap_of("sasl"), "plain", format="raw")
        + "    sasl: {mechanism: PLAIN, username: drover, password: drover-secret}\n",
        kafka_output("sasltls", kafka.bootstrap_of("sasl_tls"), "sasltls", format="raw")
        + "    sasl: {mechanism: PLAIN, username: drover, password_file: %s}\n" % yaml_str(str(pw))
        + "    tls: {ca_file: %s}\n" % yaml_str(cert),
        kafka_output("tls", kafka.bootstrap_of("tls"), "tls", format="raw")
        + "    tls: {ca_file: %s}\n" % yaml_str(cert),
        kafka_output("badpw", kafka.bootstrap_of("sasl"), "badpw", format="raw")
        + "    sasl: {mechanism: PLAIN, username: drover, password: wrong}\n",
        kafka_output("badca", kafka.bootstrap_of("tls"), "badca", format="raw")
        + "    tls: {ca_file: %s}\n" % yaml_str(other_ca),
    ]
    d = start_drover(drover_config(tmp_path, paths=node_paths(root), outputs=outputs,
                                   grace_period="1s")).wait_ready()
    wait_until(lambda: all(d.metric("drover_output_records_total", name=n) >= 10
                           for n in ("plain", "sasltls", "tls")), timeout=60, interval=0.5)
    time.sleep(3)
    m = d.metrics()
    d.stop()
    for t in ("plain", "sasltls", "tls"):
        assert sorted(x.value for x in kafka.consume(t)) == sorted(lines), t
    for n in ("badpw", "badca"):
        assert m.get("drover_output_records_total", name=n) == 0
        assert kafka.count(n) <= 0
    log = d.all_logs()
    assert "Authentication failed" in log or "SASL authentication error" in log, log[-3000:]
    assert "certificate verify failed" in log, log[-3000:]


def auth_lines(tmp_path, seed: int, n: int = 10):
    """A node of one container that wrote n lines: (its root, the lines)."""
    from kubelet_writer import KubeletWriter
    root = tmp_path / "node"
    w = KubeletWriter(str(root), seed=seed)
    c = w.add_container("ns1", "auth-0", "app")
    lines = [b"auth line %d" % i for i in range(n)]
    for line in lines:
        w.log(c, line)
    w.close()
    return root, lines


def librdkafka_version() -> tuple[int, ...]:
    """The librdkafka drover and kcat link (Debian's one), from kcat -V."""
    out = subprocess.run(["kcat", "-V"], capture_output=True, timeout=10).stdout.decode()
    m = re.search(r"librdkafka ([0-9]+)\.([0-9]+)\.([0-9]+)", out)
    assert m, out
    return tuple(int(x) for x in m.groups())


@pytest.mark.time_limit(150)
def test_sasl_scram(start_kafka, start_drover, tmp_path):
    """SCRAM-SHA-256 and SCRAM-SHA-512 logins against Kafka 3.9 brokers
    (librdkafka before 2.6.1 cannot log in with SCRAM to Kafka 4 ones:
    drover warns at start then, and says which librdkafka it has); a wrong
    password delivers nothing and the log says why."""
    kafka = start_kafka(version="3.9.1", name="kafka39", sasl_users={"drover": "drover-secret"})
    root, lines = auth_lines(tmp_path, seed=11)
    sasl = kafka.bootstrap_of("sasl")
    outputs = [
        kafka_output("s256", sasl, "s256", format="raw")
        + "    sasl: {mechanism: SCRAM-SHA-256, username: drover, password: drover-secret}\n",
        kafka_output("s512", sasl, "s512", format="raw")
        + "    sasl: {mechanism: SCRAM-SHA-512, username: drover, password: drover-secret}\n",
        kafka_output("badpw", sasl, "badpw", format="raw")
        + "    sasl: {mechanism: SCRAM-SHA-512, username: drover, password: drover-wrong}\n",
    ]
    d = start_drover(drover_config(tmp_path, paths=node_paths(root), outputs=outputs,
                                   grace_period="1s")).wait_ready()
    wait_until(lambda: all(d.metric("drover_output_records_total", name=n) >= 10
                           for n in ("s256", "s512")), timeout=60, interval=0.5)
    time.sleep(2)
    m = d.metrics()
    d.stop()
    for t in ("s256", "s512"):
        assert sorted(x.value for x in kafka.consume(t)) == sorted(lines), t
    assert m.get("drover_output_records_total", name="badpw") == 0
    assert kafka.count("badpw") <= 0
    log = d.all_logs()
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in log, log[-3000:]
    warned = "cannot log in with SCRAM to Kafka 4 brokers" in log
    assert warned == (librdkafka_version() < (2, 6, 1)), log[-3000:]


@pytest.mark.sanitizer
@pytest.mark.time_limit(150)
def test_sasl_oauthbearer(start_kafka, start_drover, tmp_path):
    """OAUTHBEARER: drover gets tokens from an OAuth2 token endpoint with the
    client-credentials grant (a scope asked for) and logs in with them
    (Kafka's default validator takes the endpoint's unsecured JWTs); tokens
    that live 6 s are fetched again before they run out. A wrong client
    secret gets no token: nothing delivered, the log says why."""
    from oauth2_server import TokenServer
    kafka = start_kafka(sasl_users={"drover": "drover-secret"})
    root, lines = auth_lines(tmp_path, seed=13)
    with TokenServer("drover-client", "s3cret", expires_in=6, scope="kafka",
                     jwt_subject="drover") as ts:
        oauth = ("    sasl:\n      mechanism: OAUTHBEARER\n"
                 "      oauthbearer: {token_url: %s, client_id: drover-client,"
                 " client_secret: %s, scopes: [kafka]}\n")
        outputs = [
            kafka_output("oauth", kafka.bootstrap_of("sasl"), "oauth", format="raw")
            + oauth % (yaml_str(ts.url), "s3cret"),
            kafka_output("badsecret", kafka.bootstrap_of("sasl"), "badsecret", format="raw")
            + oauth % (yaml_str(ts.url), "wrong"),
        ]
        d = start_drover(drover_config(tmp_path, paths=node_paths(root), outputs=outputs,
                                       grace_period="1s")).wait_ready()
        wait_until(lambda: d.metric("drover_output_records_total", name="oauth") >= 10,
                   timeout=60, interval=0.5)
        # a refresh: librdkafka asks again at 80% of a token's life
        wait_until(lambda: len([r for r in ts.fetches(ok=True) if r["secret"] == "s3cret"]) >= 3,
                   timeout=30, interval=0.5)
        m = d.metrics()
        d.stop()
        good = [r for r in ts.fetches(ok=True) if r["secret"] == "s3cret"]
        bad = [r for r in ts.requests if r["secret"] == "wrong"]
    assert sorted(x.value for x in kafka.consume("oauth")) == sorted(lines)
    assert len(good) >= 3, ts.requests
    assert bad and all(r["why"] for r in bad), bad
    assert m.get("drover_output_records_total", name="badsecret") == 0
    assert m.get("drover_oauth2_token_requests_total", name="badsecret", result="error") >= 1
    assert m.get("drover_oauth2_token_requests_total", name="oauth", result="ok") >= 3
    assert kafka.count("badsecret") <= 0
    log = d.all_logs()
    assert any("oauth2: cannot get a token" in ln and "name=badsecret" in ln
               for ln in log.splitlines()), log[-3000:]
