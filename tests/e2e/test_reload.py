"""(c) SIGHUP reloads in the middle of a run: an equivalent configuration
(rotate_wait changed) is taken over without losing or repeating a record; a
broken one is refused with its file:line:col in the log, counted as a
failure, and the running configuration keeps delivering."""

from __future__ import annotations

import re
import signal
import time

import pytest

from drover_e2e import Delivery, OutputFile, WriterProcess, tail_config, wait_for_count, wait_until

RATE = 3000
DURATION = 15


@pytest.mark.sanitizer
@pytest.mark.time_limit(150)
def test_sighup_reload_good_then_broken(start_drover, track, tmp_path):
    root = tmp_path / "node"
    out = tmp_path / "out.ndjson"
    cfg = tmp_path / "drover.yaml"

    def config(rotate_wait: str) -> str:
        return tail_config(data_dir=str(tmp_path / "data"), paths=[str(root / "containers" / "*.log")],
                           out=str(out), extra_tail="partial_timeout: 1s\nrotate_wait: %s" % rotate_wait)

    cfg.write_text(config("5s"))
    w = WriterProcess(str(root), str(tmp_path), seed=303, rate=RATE, duration=DURATION,
                      restart_at=[DURATION * 0.3])
    track(w.start())
    d = start_drover(str(cfg)).wait_ready()
    t0 = time.monotonic()

    # an equivalent configuration, at about a third of the run
    time.sleep(max(0.0, DURATION * 0.35 - (time.monotonic() - t0)))
    cfg.write_text(config("3s"))
    d.signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in d.log_text(), 15, what="'configuration reloaded' in the log")
    d.wait_ready(10)
    wait_until(lambda: d.metric("drover_config_reloads_total", result="success") == 1, 5,
               what="drover_config_reloads_total{result=success} == 1")
    assert d.metric("drover_config_reloads_total", result="failure") == 0

    # a broken one, at about two thirds
    time.sleep(max(0.0, DURATION * 0.65 - (time.monotonic() - t0)))
    broken = config("3s").replace("rotate_wait: 3s", "rotate_wait: soon")
    bad_line = broken.splitlines().index("    rotate_wait: soon") + 1
    bad_col = len("    rotate_wait: ") + 1
    cfg.write_text(broken)
    d.signal(signal.SIGHUP)
    pat = re.compile(r'level=error msg="new configuration refused; the running one stays".*%s:%d:%d: '
                     r'inputs\[0\]\.rotate_wait: ' % (re.escape(str(cfg)), bad_line, bad_col))
    wait_until(lambda: pat.search(d.log_text()), 10,
               what="the refusal with %s:%d:%d in the log" % (cfg, bad_line, bad_col))
    assert d.metric("drover_config_reloads_total", result="failure") == 1
    assert d.metric("drover_config_reloads_total", result="success") == 1
    assert d.metric("drover_config_last_reload_successful") == 0
    status, _ = d.http("/readyz")
    assert status == 200
    before = d.metric("drover_output_records_total", name="out")
    wait_until(lambda: d.metric("drover_output_records_total", name="out") > before + 100, 10,
               what="delivery going on after the refused reload")

    expected = w.finish()
    n = len(expected)
    o = OutputFile(str(out))
    got = wait_for_count(lambda: o.count(), n, timeout=60, settle=2.0)
    metric_out = d.metric("drover_output_records_total", name="out")
    assert d.stop() == 0
    o.read()
    dl = Delivery(expected, o.records)
    print("\nreload: writer %s\n  output lines %d, drover_output_records_total %d\n  %s"
          % (w.summary, got, metric_out, dl.summary()))
    dl.assert_exactly_once()
    assert metric_out == n, "drover_output_records_total %d after reloads, %d delivered" % (metric_out, n)
