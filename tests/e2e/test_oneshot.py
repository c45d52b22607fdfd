"""(f) --oneshot on a prepared node: everything delivered exactly once, exit
0; a second run delivers nothing (checkpoints); a third one, after more
writing and rotating, exactly the new records."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from drover_e2e import Delivery, OutputFile, tail_config
from kubelet_writer import KubeletWriter, Mix

MIX = Mix(stderr=0.3, long=0.01, invalid_utf8=0.02, binary=0.02, unicode=0.03, empty=0.02,
          interleave=0.02, torn=0.0)


def oneshot(drover_bin, config, log_path, timeout=90):
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        try:
            p = subprocess.run([drover_bin, "-c", config, "--oneshot"], stdin=subprocess.DEVNULL,
                               stdout=log, stderr=log, timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail("drover --oneshot did not finish within %ds:\n%s"
                        % (timeout, open(log_path, errors="replace").read()[-4000:]))
    text = open(log_path, errors="replace").read()
    return p.returncode, text, time.monotonic() - t0


def make_node(root, seed):
    w = KubeletWriter(str(root), seed=seed, max_size=64 * 1024, max_files=50,
                      link_remove_delay=3600)
    for p in range(2):
        w.add_container("ns-%d" % p, "pod-%d" % p, "app")
        w.add_container("ns-%d" % p, "pod-%d" % p, "sidecar")
    w.add_container("legacy", "dock", "main", fmt="docker")
    return w


@pytest.mark.sanitizer
def test_oneshot_delivers_everything_once_and_resumes(drover_bin, tmp_path):
    root = tmp_path / "node"
    out = tmp_path / "out.ndjson"
    w = make_node(root, seed=7)
    w.write_n(6000, MIX)
    victim = w.containers[1]
    w.restart(victim, die_mid_line=b"seq=%s died mid-line" % victim.next_id().encode())
    w.write_n(3000, MIX)
    assert w.stats["rotations"] >= 5 and w.stats["compressed"] >= 3, w.stats
    assert w.stats["copytruncates"] >= 2, w.stats
    assert w.stats["deleted"] == 0, "the test needs every written line still on disk: %s" % w.stats

    cfg = tmp_path / "drover.yaml"
    cfg.write_text(tail_config(data_dir=str(tmp_path / "data"),
                               paths=[str(root / "containers" / "*.log")], out=str(out),
                               extra_tail="partial_timeout: 1s"))

    rc, log, secs = oneshot(drover_bin, str(cfg), str(tmp_path / "run1.log"))
    assert rc == 0, "first --oneshot exited %d:\n%s" % (rc, log[-4000:])
    o = OutputFile(str(out))
    o.read()
    d = Delivery(w.manifest.records, o.records)
    print("oneshot 1: %.2fs, %s" % (secs, d.summary().splitlines()[0]))
    d.assert_exactly_once()
    assert not o.corrupt, o.corrupt[:3]
    assert os.path.exists(tmp_path / "data" / "tail-pods.ckpt")

    size_before = out.stat().st_size
    rc, log, secs = oneshot(drover_bin, str(cfg), str(tmp_path / "run2.log"))
    assert rc == 0, "second --oneshot exited %d:\n%s" % (rc, log[-4000:])
    assert out.stat().st_size == size_before, (
        "second --oneshot delivered %d more bytes:\n%s"
        % (out.stat().st_size - size_before, out.read_bytes()[size_before:size_before + 2000]))

    # more lines, rotations and a restart while drover is not running
    w.write_n(4000, MIX)
    w.restart(w.containers[0])
    w.write_n(500, MIX)
    w.close(remove_links=False)
    assert w.stats["deleted"] == 0, w.stats
    rc, log, secs = oneshot(drover_bin, str(cfg), str(tmp_path / "run3.log"))
    assert rc == 0, "third --oneshot exited %d:\n%s" % (rc, log[-4000:])
    o = OutputFile(str(out))
    o.read()
    d = Delivery(w.manifest.records, o.records)
    print("oneshot 3: %.2fs, %s" % (secs, d.summary().splitlines()[0]))
    d.assert_exactly_once()
