"""(b) The steady workload while drover is killed with SIGKILL at random
(seeded) moments and restarted with the same data_dir: nothing may be lost;
duplicates (records delivered but not yet checkpointed when killed) are
counted, printed and bounded."""

from __future__ import annotations

import random
import signal
import time

import pytest

from drover_e2e import Delivery, OutputFile, WriterProcess, kill_at, tail_config, wait_until

RATE = 3000
DURATION = 20
KILLS = 4
CHECKPOINT_INTERVAL = 1.0  # drover saves checkpoints at most every second


@pytest.mark.time_limit(170)
def test_sigkill_restarts_lose_nothing(start_drover, track, tmp_path):
    rng = random.Random(2024)
    root = tmp_path / "node"
    out = tmp_path / "out.ndjson"
    cfg = tmp_path / "drover.yaml"
    cfg.write_text(tail_config(data_dir=str(tmp_path / "data"),
                               paths=[str(root / "containers" / "*.log")], out=str(out),
                               extra_tail="partial_timeout: 1s"))
    # old links stay long enough for a restarted drover to finish the old file
    w = WriterProcess(str(root), str(tmp_path), seed=202, rate=RATE, duration=DURATION,
                      restart_at=[DURATION * 0.4], link_remove_delay=10)
    track(w.start())
    d = start_drover(str(cfg)).wait_ready()
    kills = kill_at(d, sorted(rng.uniform(2, DURATION - 2) for _ in range(KILLS)), rng)
    expected = w.finish()
    n = len(expected)
    o = OutputFile(str(out))
    by_id = {e.id for e in expected if e.id is not None}

    def all_there():
        o.read()
        seen = set()
        for r in o.records:
            m = r.get("message", "")
            if m.startswith("seq="):
                seen.add(m[4:].split(" ", 1)[0])
        return by_id <= seen

    try:
        wait_until(all_there, 90, interval=0.5, what="every written record in the output")
    except AssertionError:
        pass  # the comparison below says what is missing
    time.sleep(3)  # anything late (duplicates) shows up
    assert d.stop() == 0
    o.read()
    dl = Delivery(expected, o.records)
    dups = dl.duplicates + dl.anon_duplicates
    frac = dups / max(1, n)
    print("\nkill: writer %s\n  SIGKILL at %s s; %d output records for %d written; "
          "duplicates %d (%.2f%%), torn lines %d\n  %s"
          % (w.summary, kills, len(o.records), n, dups, 100 * frac, len(o.corrupt), dl.summary()))
    dl.assert_nothing_lost()
    # each kill may repeat what was delivered since the last checkpoint save:
    # about one checkpoint interval of writing; allow 1.5 of them per kill
    bound = KILLS * RATE * CHECKPOINT_INTERVAL * 1.5
    assert dups <= bound, "%d duplicates for %d kills (bound %d)" % (dups, KILLS, bound)
    assert frac < 0.15, "%.1f%% duplicates" % (100 * frac)


@pytest.mark.time_limit(150)
def test_sigterm_restarts_exactly_once(start_drover, track, tmp_path):
    """Graceful stops (SIGTERM, SIGINT) and restarts in the middle of the
    run: the last checkpoints cover exactly what was delivered, so nothing is
    lost and nothing repeated. drover starts on an empty node here: the
    containers appear while it runs."""
    rng = random.Random(4048)
    root = tmp_path / "node"
    (root / "containers").mkdir(parents=True)
    (root / "pods").mkdir(parents=True)
    out = tmp_path / "out.ndjson"
    cfg = tmp_path / "drover.yaml"
    cfg.write_text(tail_config(data_dir=str(tmp_path / "data"),
                               paths=[str(root / "containers" / "*.log")], out=str(out),
                               extra_tail="partial_timeout: 1s"))
    d = start_drover(str(cfg)).wait_ready()
    duration = 15
    w = WriterProcess(str(root), str(tmp_path), seed=404, rate=RATE, duration=duration,
                      restart_at=[duration * 0.5], link_remove_delay=10)
    track(w.start())
    t0 = time.monotonic()
    stops = []
    for i, st in enumerate(sorted(rng.uniform(2, duration - 2) for _ in range(3))):
        delay = st - (time.monotonic() - t0)
        if delay > 0:
            time.sleep(delay)
        sig = signal.SIGINT if i == 1 else signal.SIGTERM
        d.signal(sig)
        rc = d.wait(15)
        stops.append((round(time.monotonic() - t0, 2), sig.name, rc))
        assert rc == 0, "exit %d after %s" % (rc, sig.name)
        assert "level=info msg=stopped" in d.log_text()
        d.start().wait_ready()
    expected = w.finish()
    n = len(expected)
    o = OutputFile(str(out))
    wait_until(lambda: o.count() >= n, 60, interval=0.5, what="%d output records" % n)
    time.sleep(2)
    assert d.stop() == 0
    o.read()
    dl = Delivery(expected, o.records)
    print("\nsigterm: writer %s\n  stops %s\n  %s" % (w.summary, stops, dl.summary()))
    dl.assert_exactly_once()
