"""The Kafka fixtures themselves (kafka_servers.py), against real brokers:

  test_single_broker_roundtrip   a topic created with its settings; keys, headers
                                 (repeated, null, with '=' and ',' and any byte)
                                 and binary values written with kcat -P and read
                                 back exactly, partition and offset included; the
                                 data kept over stop_all / start_all
  test_single_broker_settings    auto.create.topics.enable off (an unknown topic is
                                 refused), message.max.bytes and a topic's own
                                 max.message.bytes, num.partitions
  test_three_brokers_sigkill     replication 3 on three brokers: one SIGKILLed,
                                 acks=all writes go on (min.insync.replicas 2), the
                                 broker starts again on its ports and data and
                                 catches up; every message readable exactly once,
                                 also after all three are stopped and started
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from kafka_servers import KCAT, KafkaError, kafka, kafka3, kafka_libs, start_kafka  # noqa: F401


def topic_metadata(cluster, topic: str) -> dict:
    md = cluster.metadata(topic=topic, timeout=5.0)
    t = next((t for t in md.get("topics", []) if t["topic"] == topic), None)
    assert t is not None, json.dumps(md)[:2000]
    return t


def wait_isr(cluster, topic: str, want: int, timeout: float) -> dict:
    """Until every partition of the topic has `want` in-sync replicas."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            t = topic_metadata(cluster, topic)
            if not t.get("error") and all(len(p.get("isrs", [])) >= want and p.get("leader", -1) >= 0
                                          for p in t["partitions"]):
                return t
        except (KafkaError, ValueError, subprocess.TimeoutExpired, AssertionError):
            t = None
        if time.monotonic() >= deadline:
            raise AssertionError("%s: not every partition has %d in-sync replicas after %.0fs: %s"
                                 % (topic, want, timeout, json.dumps(t)[:2000]))
        time.sleep(0.5)


@pytest.mark.time_limit(180)
def test_single_broker_roundtrip(kafka):
    kafka.create_topic("roundtrip", partitions=2, configs={"retention.ms": "86400000"})
    t = topic_metadata(kafka, "roundtrip")
    assert sorted(p["partition"] for p in t["partitions"]) == [0, 1]

    every_byte = bytes(range(256))
    headers = [("trace", b"abc-123"), ("odd", b"a=b,c=d;\x01\xff"), ("trace", b"again")]
    records = [(b"k1", b"first"), (b"k\x00\xff", every_byte), (None, b"no key"),
               (b"", b"empty key"), (b"k5", b"line\nbreak \"quoted\" \\ \xc3\xa9")]
    kafka.produce("roundtrip", records, headers=headers, partition=1)
    kafka.produce("roundtrip", [(b"plain", b"no headers")], partition=0)
    assert kafka.wait_for_count("roundtrip", 6, timeout=30) == 6

    got = kafka.consume("roundtrip")
    assert len(got) == 6, got
    p1 = sorted((m for m in got if m.partition == 1), key=lambda m: m.offset)
    assert [m.offset for m in p1] == [0, 1, 2, 3, 4]
    assert [(m.key, m.value) for m in p1] == records
    for m in p1:
        assert m.topic == "roundtrip"
        assert m.headers == headers, m.headers
        assert m.timestamp and abs(m.timestamp / 1000 - time.time()) < 300, m.timestamp
        assert m.timestamp_type == "create"
    (p0,) = [m for m in got if m.partition == 0]
    assert (p0.offset, p0.key, p0.value, p0.headers) == (0, b"plain", b"no headers", [])

    # a header without '=' is a null header value; a null key stays null
    subprocess.run([KCAT, "-P", "-b", kafka.bootstrap, "-t", "roundtrip", "-p", "0",
                    "-H", "flag"], input=b"v\n", timeout=30, check=True,
                   stdout=subprocess.DEVNULL)
    last = max((m for m in kafka.consume("roundtrip") if m.partition == 0), key=lambda m: m.offset)
    assert (last.offset, last.key, last.value, last.headers) == (1, None, b"v", [("flag", None)])

    # the whole cluster down and up again: same ports, same data
    kafka.stop_all()
    assert not any(n.alive() for n in kafka.nodes)
    kafka.start_all()
    after = kafka.consume("roundtrip")
    assert sorted((m.partition, m.offset, m.key, m.value) for m in after) == sorted(
        (m.partition, m.offset, m.key, m.value) for m in got + [last])


@pytest.mark.time_limit(180)
def test_single_broker_settings(start_kafka):
    k = start_kafka(auto_create_topics=False, message_max_bytes=4096, num_partitions=2)
    # librdkafka keeps waiting for an unknown topic to appear: the message times out
    with pytest.raises(KafkaError, match="(?i)unknown topic|timed out"):
        k.produce("nosuchtopic", [(None, b"x")], timeout=8)
    assert not any(t["topic"] == "nosuchtopic"
                   for t in k.metadata(timeout=5.0).get("topics", []))

    k.create_topic("small", partitions=2)
    k.produce("small", [(None, b"x" * 3000)])
    with pytest.raises(KafkaError, match="(?i)too large"):
        k.produce("small", [(None, b"y" * 8000)], timeout=15)
    assert [m.value for m in k.consume("small")] == [b"x" * 3000]
    # a topic's own max.message.bytes over the broker's
    k.create_topic("big", partitions=1, configs={"max.message.bytes": "20000"})
    k.produce("big", [(None, b"y" * 8000)])
    assert [len(m.value) for m in k.consume("big")] == [8000]

    k2 = start_kafka(name="auto")  # the defaults: auto-created topics, 3 partitions
    k2.produce("auto-made", [(None, b"z")])
    assert len(topic_metadata(k2, "auto-made")["partitions"]) == 3


@pytest.mark.time_limit(300)
def test_three_brokers_sigkill(kafka3):
    assert len(kafka3.bootstrap.split(",")) == 3
    assert {b["id"] for b in kafka3.metadata()["brokers"]} == {1, 2, 3}
    kafka3.create_topic("ha", partitions=3, replication=3)
    t = wait_isr(kafka3, "ha", 3, timeout=60)
    assert all(len(p["replicas"]) == 3 for p in t["partitions"]), t

    first = [(b"k%d" % i, b"before-%d" % i) for i in range(60)]
    kafka3.produce("ha", first)

    victim = 1  # nodes[1]: broker 2
    pid = kafka3.nodes[victim].proc.pid
    kafka3.kill_broker(victim)
    assert not kafka3.nodes[victim].alive()
    assert kafka3.nodes[victim].proc.returncode == -9, kafka3.nodes[victim].proc.returncode
    # two in-sync replicas are enough for acks=all (min.insync.replicas 2); the
    # producer waits out the leader moves away from the dead broker
    second = [(b"k%d" % i, b"during-%d" % i) for i in range(60)]
    t0 = time.monotonic()
    kafka3.produce("ha", second, timeout=90)
    print("\nacks=all writes with broker 2 SIGKILLed (pid %d): %.1fs" % (pid, time.monotonic() - t0))

    kafka3.start_broker(victim, wait=True)
    assert kafka3.nodes[victim].port == int(kafka3.bootstrap.split(",")[victim].rsplit(":", 1)[1])
    wait_isr(kafka3, "ha", 3, timeout=90)  # it caught up from its own data
    third = [(b"k%d" % i, b"after-%d" % i) for i in range(30)]
    kafka3.produce("ha", third)

    assert kafka3.wait_for_count("ha", 150, timeout=30) == 150
    got = kafka3.consume("ha")
    assert sorted((m.key, m.value) for m in got) == sorted(first + second + third)
    # per key, one partition, in the order written
    by_key = {}
    for m in sorted(got, key=lambda m: (m.partition, m.offset)):
        by_key.setdefault(m.key, []).append((m.partition, m.value))
    for key, vals in by_key.items():
        assert len({p for p, _ in vals}) == 1, (key, vals)
        order = [v.split(b"-")[0] for _, v in vals]
        assert order == sorted(order, key=[b"before", b"during", b"after"].index), (key, vals)

    # all three down and up again on the same ports and data
    t0 = time.monotonic()
    kafka3.stop_all()
    assert not any(n.alive() for n in kafka3.nodes)
    stopped = time.monotonic() - t0
    kafka3.start_all()
    print("three brokers: stopped in %.1fs, started again in %.1fs"
          % (stopped, time.monotonic() - t0 - stopped))
    wait_isr(kafka3, "ha", 3, timeout=90)
    assert sorted((m.partition, m.offset, m.value) for m in kafka3.consume("ha")) == sorted(
        (m.partition, m.offset, m.value) for m in got)
