"""remote_write spilling to disk, against real receivers on 127.0.0.1.

drover scrapes a target served by the test and writes to the receivers and,
beside them, to the file output, which says exactly which samples drover
produced. The memory queue is kept small (queue_max_bytes: 64KiB), so an
outage soon sends the requests to disk segments (seen in the self-metrics
while the receiver is down). Prometheus refuses a sample older than the
newest of its series, so a complete series in Prometheus also proves the
order.

- a receiver down for 10 minutes (VictoriaMetrics and Prometheus 3 at
  once): every sample scraped during the outage arrives (marked slow:
  `-m "not slow"` leaves it out; the full suite runs it);
- the disk bound reached: the oldest segments go, their samples counted
  exactly, every other sample delivered;
- SIGKILL during an outage, a restart, the receiver back: nothing older
  than about a second before the kill is lost (with a small queue, and
  with the default one, where spill_after starts the spilling);
- SIGTERM during an outage: the queue goes to disk at once, and after the
  restart every sample arrives exactly once;
- spill_max_bytes: 0 keeps to memory.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from drover_e2e import HOST, wait_until, yaml_str
from metrics_servers import (Answer, Prometheus, indent, payloads, prometheus,  # noqa: F401
                             prometheus3_bin, victoria)
from test_remote_write import VM_REL, compare, compare_eventually, produced

SMALL_QUEUE = "queue_max_bytes: 64KiB\nspill_segment_bytes: 64KiB\n"


def spill_config(tmp_path, target: str, receivers: dict[str, str], *, rw_extra: str = "",
                 queue: str = SMALL_QUEUE) -> tuple[str, str]:
    """A config scraping `target` every second into one remote_write output
    per receiver ({output name: write url}) and the file output."""
    out = os.path.join(str(tmp_path), "samples.ndjson")
    outputs = ""
    for name, url in receivers.items():
        outputs += (
            "  - name: %s\n"
            "    type: remote_write\n"
            "    match: scrape\n"
            "    url: %s\n"
            "    batch_send_deadline: 200ms\n"
            "    min_backoff: 100ms\n"
            "    max_backoff: 1s\n"
            "%s" % (name, yaml_str(url), indent(queue + rw_extra, 4) if queue + rw_extra else ""))
    cfg = (
        "agent:\n"
        "  data_dir: %(data)s\n"
        "  http:\n"
        "    listen: %(listen)s\n"
        "  grace_period: 10s\n"
        "inputs:\n"
        "  - name: scrape\n"
        "    type: prometheus_scrape\n"
        "    scrape_interval: 1s\n"
        "    scrape_timeout: 1s\n"
        "    scrape_configs:\n"
        "      - job_name: spill\n"
        "        static_configs: [{targets: [%(target)s]}]\n"
        "outputs:\n"
        "%(outputs)s"
        "  - name: copy\n"
        "    type: file\n"
        "    match: scrape\n"
        "    path: %(out)s\n"
    ) % {"data": yaml_str(os.path.join(str(tmp_path), "data")), "listen": yaml_str(HOST + ":0"),
         "target": target, "outputs": outputs, "out": yaml_str(out)}
    path = os.path.join(str(tmp_path), "drover.yaml")
    with open(path, "w") as f:
        f.write(cfg)
    return path, out


def serve_series(payloads, n: int) -> None:
    payloads.set("/metrics", Answer(b"".join(b'load{n="%d"} %d\n' % (i, i) for i in range(n))))


def spill_metric(d, metric: str, name: str, **labels) -> float:
    return d.metrics().get("drover_remote_write_spill_" + metric, name=name, **labels)


def wait_spilling(d, name: str, timeout: float = 30) -> None:
    """Until requests of output `name` are on disk."""
    wait_until(lambda: spill_metric(d, "segments", name) > 0 and
               spill_metric(d, "records_written_total", name) > 0, timeout,
               what="%s to spill to disk" % name)


def wait_drained(d, name: str, timeout: float = 120) -> None:
    """Until output `name` has delivered everything on disk and in memory."""
    def done():
        m = d.metrics()
        return (m.get("drover_remote_write_spill_active", name=name) == 0 and
                m.get("drover_remote_write_spill_bytes", name=name) == 0 and
                m.get("drover_remote_write_samples_pending", name=name) == 0)
    wait_until(done, timeout, interval=0.5, what="%s to drain its disk queue" % name)


def spill_files(tmp_path, name: str) -> list[str]:
    d = os.path.join(str(tmp_path), "data", "remote_write", name)
    return sorted(f for f in os.listdir(d) if f.endswith(".seg")) if os.path.isdir(d) else []


def job_samples(want: dict) -> dict:
    return {k: v for k, v in want.items() if json.loads(k).get("job") == "spill"}


@pytest.mark.slow
@pytest.mark.time_limit(1200)
def test_receivers_down_10_minutes_nothing_lost(start_drover, payloads, victoria, tmp_path):
    prom = Prometheus(prometheus3_bin(), str(tmp_path), name="prometheus3").start()
    try:
        serve_series(payloads, 50)
        cfg, out = spill_config(tmp_path, payloads.address,
                                {"vm": victoria.write_url, "prom": prom.write_url})
        d = start_drover(cfg)
        d.wait_ready()
        t0 = time.time()
        wait_until(lambda: d.metrics().get("drover_remote_write_samples_total", name="vm") > 0 and
                   d.metrics().get("drover_remote_write_samples_total", name="prom") > 0, 30,
                   what="first samples sent")
        victoria.stop()
        prom.stop()
        wait_spilling(d, "vm")
        wait_spilling(d, "prom")
        end = time.monotonic() + 600
        most_segments = 0
        while time.monotonic() < end:
            time.sleep(30)
            assert d.alive()
            most_segments = max(most_segments, spill_metric(d, "segments", "prom"))
            # memory stays bounded by the queue: the rest is on disk
            assert d.metrics().get("drover_queue_bytes", name="prom") <= 2 * 65536
        assert most_segments >= 1 and spill_files(tmp_path, "prom")
        written = spill_metric(d, "records_written_total", "prom")
        assert written > 500
        victoria.start()
        prom.start()
        wait_drained(d, "vm", 300)
        wait_drained(d, "prom", 300)
        assert spill_metric(d, "records_replayed_total", "prom") >= written
        for name in ("vm", "prom"):
            assert spill_metric(d, "records_dropped_total", name, reason="full") == 0
            assert spill_metric(d, "records_dropped_total", name, reason="corrupt") == 0
        assert d.stop() == 0
        want = job_samples(produced(out))
        up = json.dumps({"__name__": "up", "instance": payloads.address, "job": "spill"},
                        sort_keys=True)
        assert len(want[up]) >= 600
        compare_eventually(want, lambda: victoria.export('{job="spill"}'), rel=VM_REL)
        compare(want, prom.samples('{job="spill"}', t0 - 5, time.time() + 1))
        for name in ("vm", "prom"):
            assert not spill_files(tmp_path, name), "segments left after delivery"
    finally:
        prom.stop()


@pytest.mark.time_limit(240)
def test_disk_bound_drops_oldest_counted(start_drover, payloads, prometheus, tmp_path):
    serve_series(payloads, 2000)
    cfg, out = spill_config(tmp_path, payloads.address, {"rw": prometheus.write_url},
                            rw_extra="spill_max_bytes: 128KiB\n")
    d = start_drover(cfg)
    d.wait_ready()
    t0 = time.time()
    wait_until(lambda: d.metrics().get("drover_remote_write_samples_total", name="rw") > 0, 30,
               what="first samples sent")
    prometheus.stop()
    wait_spilling(d, "rw")
    wait_until(lambda: spill_metric(d, "samples_dropped_total", "rw", reason="full") > 0, 90,
               interval=0.5, what="the disk bound to drop the oldest segment")
    assert spill_metric(d, "bytes", "rw") <= 128 * 1024
    time.sleep(3)
    prometheus.start()
    wait_drained(d, "rw")
    m = d.metrics()
    dropped = m.get("drover_remote_write_spill_samples_dropped_total", name="rw", reason="full")
    assert m.get("drover_dropped_records_total", name="rw", reason="spill_full") == dropped
    assert m.get("drover_remote_write_spill_records_dropped_total", name="rw", reason="full") > 0
    assert d.stop() == 0
    want = job_samples(produced(out))
    got = prometheus.samples('{job="spill"}', t0 - 5, time.time() + 1)
    missing = {}
    for k, samples in want.items():
        have = set(got.get(k, []))
        assert have <= set(samples), "samples nobody produced in %s" % k
        missing[k] = [s for s in samples if s not in have]
    assert sum(len(v) for v in missing.values()) == dropped
    # what went is the oldest of the outage: after the first missing sample
    # of a series, only missing samples until the first delivered one again
    for k, samples in want.items():
        gone = [i for i, s in enumerate(samples) if s in set(missing[k])]
        if gone:
            assert gone == list(range(gone[0], gone[-1] + 1)), "not one run of the oldest: %s" % k
    assert not spill_files(tmp_path, "rw")


# With the default queue (8MiB) the high water mark is far: spill_after (5s)
# sends the requests to disk.
@pytest.mark.parametrize("queue", [SMALL_QUEUE, ""], ids=["small_queue", "default_queue"])
@pytest.mark.time_limit(240)
def test_sigkill_during_outage_loses_at_most_a_second(start_drover, payloads, prometheus,
                                                      tmp_path, queue):
    serve_series(payloads, 200)
    cfg, out = spill_config(tmp_path, payloads.address, {"rw": prometheus.write_url},
                            queue=queue)
    d = start_drover(cfg)
    d.wait_ready()
    t0 = time.time()
    wait_until(lambda: d.metrics().get("drover_remote_write_samples_total", name="rw") > 0, 30,
               what="first samples sent")
    prometheus.stop()
    wait_spilling(d, "rw")
    time.sleep(15)
    written = spill_metric(d, "records_written_total", "rw")
    assert written > 5
    killed_at = time.time()
    d.signal(signal.SIGKILL)
    d.wait(10)
    assert spill_files(tmp_path, "rw")
    prometheus.start()
    d.start()
    d.wait_ready()
    # what the first run left is replayed, then the new samples
    wait_until(lambda: spill_metric(d, "records_replayed_total", "rw") > 0, 30,
               what="the replay of the first run's records")
    wait_drained(d, "rw")
    assert spill_metric(d, "records_dropped_total", "rw", reason="corrupt") == 0
    assert d.stop() == 0
    want = job_samples(produced(out))
    got = prometheus.samples('{job="spill"}', t0 - 5, time.time() + 1)
    lost = []
    for k, samples in want.items():
        have = set(got.get(k, []))
        lost += [(k, ts) for ts, v in samples if (ts, v) not in have
                 and ts < (killed_at - 1.0) * 1000]
    assert not lost, "%d samples lost from before the kill, e.g. %s" % (len(lost), lost[:3])
    # and the second run's samples, after the restart, all arrived
    after = {k: [s for s in v if s[0] > killed_at * 1000] for k, v in want.items()}
    assert sum(len(v) for v in after.values()) > 0
    for k, samples in after.items():
        assert set(samples) <= set(got.get(k, [])), "a sample of the second run missing in %s" % k
    assert not spill_files(tmp_path, "rw")


@pytest.mark.sanitizer
@pytest.mark.time_limit(240)
def test_sigterm_during_outage_then_restart_exactly(start_drover, payloads, prometheus, tmp_path):
    """A graceful stop while spilling: the queue drains to disk at once, and
    after the restart every sample arrives, none twice and in order."""
    serve_series(payloads, 200)
    cfg, out = spill_config(tmp_path, payloads.address, {"rw": prometheus.write_url})
    d = start_drover(cfg)
    d.wait_ready()
    t0 = time.time()
    wait_until(lambda: d.metrics().get("drover_remote_write_samples_total", name="rw") > 0, 30,
               what="first samples sent")
    prometheus.stop()
    wait_spilling(d, "rw")
    time.sleep(5)
    stopped = time.monotonic()
    assert d.stop() == 0
    # nothing to wait for: what was queued went to disk
    assert time.monotonic() - stopped < 8
    assert spill_files(tmp_path, "rw")
    prometheus.start()
    d.start()
    d.wait_ready()
    wait_until(lambda: spill_metric(d, "records_replayed_total", "rw") > 0, 30,
               what="the replay of the first run's records")
    wait_drained(d, "rw")
    assert d.stop() == 0
    want = job_samples(produced(out))
    compare(want, prometheus.samples('{job="spill"}', t0 - 5, time.time() + 1))
    assert not spill_files(tmp_path, "rw")


@pytest.mark.time_limit(180)
def test_spill_off_keeps_to_memory(start_drover, payloads, victoria, tmp_path):
    serve_series(payloads, 50)
    cfg, out = spill_config(tmp_path, payloads.address, {"rw": victoria.write_url}, queue="",
                            rw_extra="spill_max_bytes: 0\n")
    d = start_drover(cfg)
    d.wait_ready()
    wait_until(lambda: d.metrics().get("drover_remote_write_samples_total", name="rw") > 0, 30,
               what="first samples sent")
    victoria.stop()
    time.sleep(10)
    m = d.metrics()
    assert m.get("drover_remote_write_samples_pending", name="rw") > 0
    assert m.get("drover_remote_write_spill_segments", name="rw") == 0
    assert m.get("drover_remote_write_spill_records_written_total", name="rw") == 0
    assert not spill_files(tmp_path, "rw")
    victoria.start()
    wait_until(lambda: d.metrics().get("drover_remote_write_samples_pending", name="rw") == 0,
               60, what="the backlog to drain")
    assert d.stop() == 0
    compare_eventually(job_samples(produced(out)), lambda: victoria.export('{job="spill"}'),
                       rel=VM_REL)
