"""Checkpoints of files drover first saw empty (a container that has just
started), when drover stops before it has fingerprinted their content: a
later run must neither repeat nor skip records because of that checkpoint.

drover fingerprints a file when it opens it and extends the fingerprint on
its poll timer; poll_interval is 5s here so that the stop reliably comes
before the first poll (with the default 1s it is a window of up to a second)."""

from __future__ import annotations

import os
import shutil
import signal
import time

import pytest

from drover_e2e import Delivery, OutputFile, tail_config, wait_until
from kubelet_writer import KubeletWriter


def config(tmp_path, root, out):
    return tail_config(data_dir=str(tmp_path / "data"), paths=[str(root / "containers" / "*.log")],
                       out=str(out), extra_tail="poll_interval: 5s\nrotate_wait: 1s")


def write_lines(w, c, n, tag):
    for i in range(n):
        w.log(c, b"seq=%s %s line %d " % (c.next_id().encode(), tag.encode(), i) + w._payload(60))


def delivered(o, n, what="records"):
    wait_until(lambda: o.count() >= n, 20, interval=0.05, what="%d %s" % (n, what))


@pytest.mark.time_limit(90)
def test_no_repeats_after_resuming_a_file_first_seen_empty(start_drover, tmp_path):
    root, out = tmp_path / "node", tmp_path / "out.ndjson"
    w = KubeletWriter(str(root), seed=31, max_size=None)
    c = w.add_container("ckpt", "young", "app")  # an empty 0.log
    cfg = tmp_path / "drover.yaml"
    cfg.write_text(config(tmp_path, root, out))
    o = OutputFile(str(out))

    d = start_drover(str(cfg)).wait_ready()  # run 1: opens the empty file
    write_lines(w, c, 50, "A")
    delivered(o, 50)
    d.signal(signal.SIGTERM)
    assert d.wait(15) == 0

    d.start().wait_ready()  # run 2: resumes, reads more, the file is rotated
    write_lines(w, c, 100, "B")
    delivered(o, 150)
    w.force_rotate(c)
    write_lines(w, c, 10, "C")
    delivered(o, 160)
    d.signal(signal.SIGTERM)
    assert d.wait(15) == 0

    d.start().wait_ready()  # run 3: finds the rotated file beside the new one
    write_lines(w, c, 10, "D")
    delivered(o, 170)
    time.sleep(2)
    assert d.stop() == 0
    o.read()
    Delivery(w.manifest.records, o.records).assert_exactly_once()


@pytest.mark.time_limit(90)
def test_no_loss_when_an_inode_is_reused(start_drover, tmp_path):
    """The pod is deleted while drover is stopped and a new container's log
    gets the same inode number (ext4 reuses them at once): its lines must
    all be read."""
    root, out = tmp_path / "node", tmp_path / "out.ndjson"
    w = KubeletWriter(str(root), seed=32, max_size=None)
    a = w.add_container("ckpt", "doomed", "app")
    cfg = tmp_path / "drover.yaml"
    cfg.write_text(config(tmp_path, root, out))
    o = OutputFile(str(out))

    d = start_drover(str(cfg)).wait_ready()
    write_lines(w, a, 30, "A")
    delivered(o, 30)
    d.signal(signal.SIGTERM)
    assert d.wait(15) == 0

    ino = os.stat(a.path).st_ino
    # the kubelet deletes the pod: its link and its log directory
    os.close(a.fd)
    a.fd = -1
    w.containers.remove(a)
    os.unlink(a.link)
    shutil.rmtree(os.path.dirname(a.log_dir))
    b = w.add_container("ckpt", "newcomer", "app")
    if os.stat(b.path).st_ino != ino:
        pytest.skip("the file system did not reuse the inode")
    write_lines(w, b, 60, "B")

    d.start().wait_ready()
    last = w.manifest.records[-1].text
    wait_until(lambda: o.read() is not None and any(r["message"] == last for r in o.records), 20,
               interval=0.05, what="the new container's last line")
    time.sleep(1)
    assert d.stop() == 0
    o.read()
    Delivery(w.manifest.records, o.records).assert_exactly_once()
