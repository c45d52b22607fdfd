"""(a) A steady run: several containers at several thousand lines per second
with kubelet rotation (rename, gzip, deletion), a container restart (dying
mid-line) and a docker json-file container rotated by copytruncate. Every
record must arrive exactly once with the right bytes and kubernetes fields."""

from __future__ import annotations

import time

import pytest

from drover_e2e import Delivery, OutputFile, WriterProcess, tail_config, wait_for_count

RATE = 4000
DURATION = 18


@pytest.mark.time_limit(150)
def test_steady_run_exactly_once(start_drover, track, tmp_path):
    root = tmp_path / "node"
    out = tmp_path / "out.ndjson"
    cfg = tmp_path / "drover.yaml"
    cfg.write_text(tail_config(data_dir=str(tmp_path / "data"),
                               paths=[str(root / "containers" / "*.log")], out=str(out),
                               extra_tail="partial_timeout: 1s"))
    w = WriterProcess(str(root), str(tmp_path), seed=101, rate=RATE, duration=DURATION,
                      restart_at=[DURATION / 2])
    # the node exists before drover starts; drover reads it from the head
    track(w.start())
    time.sleep(0.5)
    d = start_drover(str(cfg)).wait_ready()
    t0 = time.monotonic()
    expected = w.finish()
    n = len(expected)
    got = wait_for_count(lambda: d.metric("drover_output_records_total", name="out"), n,
                         timeout=60, settle=2.0)
    caught_up = time.monotonic() - t0 - DURATION
    m = d.metrics()
    assert d.stop() == 0, "drover did not stop cleanly"
    o = OutputFile(str(out))
    o.read()
    dl = Delivery(expected, o.records)
    print("\nsteady: writer %s\n  drover caught up %.1fs after the writer; output metric %d; %s"
          % (w.summary, caught_up, got, dl.summary()))
    dl.assert_exactly_once()
    assert not o.corrupt, o.corrupt[:3]
    assert got == n, "drover_output_records_total %d, written %d" % (got, n)
    assert m.get("drover_input_records_total", name="pods") == n
    assert m.get("drover_dropped_records_total") == 0, m.find("drover_dropped_records_total")
    assert m.get("drover_tail_rotated_lost_bytes_total") == 0
    assert m.get("drover_tail_rotations_total", name="pods") >= w.summary["rotations"] - 5, (
        m.find("drover_tail_rotations_total"), w.summary)
    assert m.get("drover_tail_truncations_total", name="pods") >= w.summary["copytruncates"], (
        m.find("drover_tail_truncations_total"), w.summary)
    assert m.get("drover_tail_partial_timeouts_total", name="pods") == w.summary["restarts"]
    assert m.get("drover_tail_malformed_lines_total", name="pods") == 0
    assert w.summary["rotations"] >= 10 and w.summary["compressed"] >= 5 and w.summary["deleted"] >= 1
    assert w.summary["copytruncates"] >= 2 and w.summary["restarts"] == 1
