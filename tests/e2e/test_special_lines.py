"""(d) Special lines: 5 MiB lines (split, truncated), a P without its F,
invalid UTF-8 and binary bytes, empty lines, malformed lines, interleaved
partials, docker escapes, non-UTC timestamps, and records whose pieces
straddle a rotation."""

from __future__ import annotations

import signal
import time

import pytest

from drover_e2e import Delivery, OutputFile, tail_config, wait_until, yaml_str
from kubelet_writer import KubeletWriter, Mix, parse_rfc3339nano, rfc3339nano

MIB = 1024 * 1024
PARTIAL_TIMEOUT = 2.0


def k8s(r):
    return r.get("kubernetes") or {}


def records_of(records, container, pod=None):
    return [r for r in records if k8s(r).get("container") == container
            and (pod is None or k8s(r).get("pod") == pod)]


def big(w, c, size):
    head = ("seq=%s " % c.next_id()).encode()
    return head + w._payload(size - len(head))


@pytest.mark.sanitizer
@pytest.mark.time_limit(150)
def test_special_lines(start_drover, tmp_path):
    root, root_t = tmp_path / "node", tmp_path / "node-trunc"
    out, out_t = tmp_path / "out.ndjson", tmp_path / "out-trunc.ndjson"
    w = KubeletWriter(str(root), seed=11)
    wt = KubeletWriter(str(root_t), seed=12)

    # -- lines written before drover starts ---------------------------------------------
    huge = w.add_container("special", "huge", "huge")
    exact = big(w, huge, 5 * MIB)  # 320 P pieces and an empty F
    w.log(huge, exact)
    odd = big(w, huge, 5 * MIB + 100)
    w.log(huge, odd)
    huge_after = w.log(huge, b"seq=%s after the huge ones" % huge.next_id().encode())

    binc = w.add_container("special", "bytes", "bytes")
    bad_messages = [
        b"\xff\xfe leading invalid",
        b"overlong \xc0\xaf and lone continuation \x80\x80",
        b"truncated sequences \xe2\x82 and \xf0\x9f\x98 end",
        b"surrogate \xed\xa0\x80 and too big \xf4\x90\x80\x80",
        b"\x00\x01\x02 NUL and controls \x1b[31mred\x1b[0m \x7f DEL",
        b"tab\there, backspace\x08, formfeed\x0c, CR in the middle\r of it",
        b"ends with CR\r",
        "valid: caf\u00e9 \u65e5\u672c \U0001F600 \u2028".encode(),
        b"quote \" and backslash \\ and json {\"a\":1}",
    ]
    n_invalid = 0
    for i, m in enumerate(bad_messages):
        msg = b"seq=%s " % binc.next_id().encode() + m
        try:
            msg.decode("utf-8")
        except UnicodeDecodeError:
            n_invalid += 1
        w.log(binc, msg, "stderr" if i % 2 else "stdout")

    empty = w.add_container("special", "empty", "empty")
    w.log(empty, b"seq=%s before the empty ones" % empty.next_id().encode())
    w.log(empty, b"")  # "<time> stdout F \n"
    w.raw(empty, ("%s stderr F\n" % rfc3339nano(time.time_ns())).encode())  # no separator
    w.manifest.add(empty.expected(None, "stderr", time.time_ns(), b""))
    w.manifest.records[-1].time_ns = None  # not checked: written by hand above
    w.log(empty, b"seq=%s after the empty ones" % empty.next_id().encode())

    mal = w.add_container("special", "malformed", "malformed")
    mal_first = w.log(mal, b"seq=%s a good line first" % mal.next_id().encode())
    bad_line = b"this is not a CRI line at all"
    w.raw(mal, bad_line + b"\n")
    mal_last = w.log(mal, b"seq=%s a good line after" % mal.next_id().encode())

    inter = w.add_container("special", "inter", "inter")
    w.interleaved(inter, b"seq=%s stdout first half|stdout second half" % inter.next_id().encode(),
                  b"seq=%s stderr first half|stderr second half" % inter.next_id().encode())
    # three stdout pieces around two stderr pieces, by hand
    t0 = time.time_ns()
    oid, eid = inter.next_id(), inter.next_id()
    for stream, tag, data in [("stdout", "P", b"seq=%s A1-" % oid.encode()),
                              ("stderr", "P", b"seq=%s B1-" % eid.encode()),
                              ("stdout", "P", b"A2-"), ("stderr", "F", b"B2"),
                              ("stdout", "F", b"A3")]:
        w._cri_piece(inter, stream, tag, data, t0 if tag == "P" and data.startswith(b"seq") else time.time_ns())
    w.manifest.add(inter.expected(oid, "stdout", t0, b"seq=%s A1-A2-A3" % oid.encode()))
    w.manifest.add(inter.expected(eid, "stderr", t0, b"seq=%s B1-B2" % eid.encode()))

    dock = w.add_container("special", "docker", "main", fmt="docker", rotation=None)
    for m in [b'quotes " and \\ backslash', b"<html> & </html>", "line\u2028sep".encode(),
              b"controls \x00\x01\x1f\t\r", "emoji \U0001F600 caf\u00e9".encode(),
              b"invalid \xff\xfe bytes"]:
        w.log(dock, b"seq=%s " % dock.next_id().encode() + m)
    w.log(dock, big(w, dock, 40 * 1024))  # three docker pieces
    w.log(dock, b"")

    tz = w.add_container("special", "tz", "tz", utc_offset=120)
    w.log(tz, b"seq=%s written at +02:00" % tz.next_id().encode())
    tz.utc_offset = -330
    w.log(tz, b"seq=%s written at -05:30" % tz.next_id().encode())

    ht = wt.add_container("special", "huge-t", "huge")
    trunc_line = big(wt, ht, 5 * MIB)
    wt.log(ht, trunc_line)
    trunc_after = wt.log(ht, b"seq=%s after the truncated one" % ht.next_id().encode())

    # -- drover ---------------------------------------------------------------------------
    cfg = tmp_path / "drover.yaml"
    cfg.write_text(
        tail_config(data_dir=str(tmp_path / "data"), paths=[str(root / "containers" / "*.log")],
                    out=str(out), extra_tail="partial_timeout: %ds\npoll_interval: 250ms"
                    % PARTIAL_TIMEOUT)
        .replace("inputs:\n", "inputs:\n"
                 "  - name: trunc\n"
                 "    type: tail\n"
                 "    paths: [%s]\n"
                 "    long_records: truncate\n" % yaml_str(str(root_t / "containers" / "*.log")))
        + "  - name: tout\n    type: file\n    match: trunc\n    path: %s\n" % yaml_str(str(out_t)))
    d = start_drover(str(cfg)).wait_ready()

    # -- the P without its F, written while drover runs -------------------------------
    part = w.add_container("special", "partial", "partial")
    part_first = w.log(part, b"seq=%s a whole line" % part.next_id().encode())
    o = OutputFile(str(out))
    wait_until(lambda: o.read() or any(r["message"] == part_first.text for r in o.records), 20,
               what="the partial container's first line")
    partial_rec = w.partial(part, b"seq=%s the container died in the middle of th" % part.next_id().encode())
    t_written = time.monotonic()
    wait_until(lambda: d.metric("drover_tail_partial_records_pending", name="pods") >= 1, 5,
               interval=0.05, what="drover_tail_partial_records_pending >= 1")
    o.read()
    assert not any(r["message"] == partial_rec.text for r in o.records), "emitted before its timeout"

    def partial_arrived():
        o.read()
        return any(r["message"] == partial_rec.text for r in o.records)

    wait_until(partial_arrived, PARTIAL_TIMEOUT + 10, interval=0.05, what="the timed-out partial line")
    waited = time.monotonic() - t_written
    assert waited >= PARTIAL_TIMEOUT - 0.3, "the partial went out after %.2fs, before its timeout" % waited

    # -- everything else ----------------------------------------------------------------------
    n_expected = len(w.manifest.records) + (5 - 1) + (6 - 1)  # the split pieces
    wait_until(lambda: o.count() >= n_expected, 60, interval=0.2,
               what="%d records in %s" % (n_expected, out))
    ot = OutputFile(str(out_t))
    wait_until(lambda: ot.count() >= 2, 30, what="2 records in the truncating output")
    time.sleep(1.0)
    o.read()
    ot.read()
    m = d.metrics()

    # huge lines: split into 1 MiB pieces, in order, nothing else
    hs = records_of(o.records, "huge")
    sizes = [len(r["message"]) for r in hs]
    assert sizes == [MIB] * 5 + [MIB] * 5 + [100] + [len(huge_after.msg)], sizes
    assert "".join(r["message"] for r in hs[:5]) == exact.decode()
    assert "".join(r["message"] for r in hs[5:11]) == odd.decode()
    assert hs[11]["message"] == huge_after.text
    assert m.get("drover_tail_split_records_total", name="pods") == 2, m.find("drover_tail_split_records_total")

    # truncate mode: the first MiB once, then the next line
    ts_ = ot.records
    assert [len(r["message"]) for r in ts_] == [MIB, len(trunc_after.msg)], [len(r["message"]) for r in ts_]
    assert ts_[0]["message"] == trunc_line[:MIB].decode()
    assert ts_[1]["message"] == trunc_after.text
    assert m.get("drover_tail_truncated_records_total", name="trunc") == 1
    assert m.get("drover_tail_split_records_total", name="trunc") == 0

    # the partial: its content as it was, counted as a timeout
    assert m.get("drover_tail_partial_timeouts_total", name="pods") == 1, m.find(
        "drover_tail_partial_timeouts_total")

    # malformed: passed on raw, between its neighbours, counted
    ms = [r["message"] for r in records_of(o.records, "malformed")]
    assert ms == [mal_first.text, bad_line.decode(), mal_last.text], ms
    assert m.get("drover_tail_malformed_lines_total", name="pods") == 1

    # invalid UTF-8: replaced, counted; drover alive
    assert m.get("drover_output_invalid_utf8_records_total", name="out") >= n_invalid
    assert d.http("/healthz")[0] == 200

    # the rest, compared record by record (time included, except the hand-made one)
    skip = {"huge", "malformed"}
    rest = [r for r in o.records if k8s(r).get("container") not in skip]
    expected = [e for e in w.manifest.records if e.container not in skip]
    hand = [e for e in expected if e.time_ns is None]
    for e in hand:
        e.time_ns = 0
    dl = Delivery(expected, rest, check_time=False)
    dl.assert_exactly_once()
    timed = Delivery([e for e in expected if e not in hand],
                     [r for r in rest if r["message"] != ""])
    assert not timed.mismatches, timed.summary()

    empties = [r for r in records_of(o.records, "empty") if r["message"] == ""]
    assert [r["stream"] for r in empties] == ["stdout", "stderr"], empties
    assert [r["message"] for r in records_of(o.records, "main", pod="docker")][-1] == ""

    assert d.stop() == 0


@pytest.mark.parametrize("fmt", ["cri", "docker"])
@pytest.mark.time_limit(90)
def test_record_pieces_straddling_a_rotation(start_drover, tmp_path, fmt):
    """The runtime writes the first piece of a long line, the file is rotated
    (kubelet rename for CRI, copytruncate for docker), and the last piece goes
    to the new file: still one record."""
    root = tmp_path / "node"
    out = tmp_path / "out.ndjson"
    w = KubeletWriter(str(root), seed=5, max_size=None)
    c = w.add_container("special", "straddle", "app", fmt=fmt)
    cfg = tmp_path / "drover.yaml"
    cfg.write_text(tail_config(data_dir=str(tmp_path / "data"),
                               paths=[str(root / "containers" / "*.log")], out=str(out),
                               extra_tail="partial_timeout: 1s\nrotate_wait: 1s\npoll_interval: 200ms"))
    d = start_drover(str(cfg)).wait_ready()
    w.log(c, b"seq=%s before" % c.next_id().encode())
    o = OutputFile(str(out))
    wait_until(lambda: o.count() >= 1, 20, what="the first record")
    time.sleep(0.5)  # a few polls: drover has fingerprinted the file's content
    # the first piece, the rotation; drover sees both before the rest comes
    rec = big(w, c, 40 * 1024)
    pieces = w.pieces(c, rec)
    t0 = time.time_ns()
    w._write_piece(c, "stdout", pieces[0][0], pieces[0][1], t0)
    w.force_rotate(c)
    time.sleep(1.0)
    reported = b""
    for final, data in pieces[1:]:
        reported += w._write_piece(c, "stdout", final, data, time.time_ns())
    w.manifest.add(c.expected(c.key + ":%d" % c.seq, "stdout", t0, rec))
    w.log(c, b"seq=%s after" % c.next_id().encode())
    n = len(w.manifest.records)
    wait_until(lambda: o.count() >= n, 20, what="%d records" % n)
    time.sleep(3)  # rotate_wait, partial_timeout: anything late shows up
    o.read()
    dl = Delivery(w.manifest.records, o.records)
    dl.assert_exactly_once()
    assert d.stop() == 0


@pytest.mark.time_limit(90)
def test_copytruncate_then_quick_regrowth(start_drover, tmp_path):
    """logrotate copytruncate, then the application writes more than drover
    had read of the old content before drover polls the file: the new
    content must be read from its start (not from the old offset), and what
    had not been read of the old content comes from the copy."""
    root = tmp_path / "node"
    out = tmp_path / "out.ndjson"
    w = KubeletWriter(str(root), seed=6, max_size=None)
    cfg = tmp_path / "drover.yaml"
    cfg.write_text(tail_config(data_dir=str(tmp_path / "data"),
                               paths=[str(root / "containers" / "*.log")], out=str(out),
                               extra_tail="rotate_wait: 1s"))
    d = start_drover(str(cfg)).wait_ready()
    o = OutputFile(str(out))
    for round_ in range(3):
        c = w.add_container("special", "regrow-%d" % round_, "app", fmt="docker")
        w.log(c, b"seq=%s before" % c.next_id().encode())
        n = len(w.manifest.records)
        wait_until(lambda: o.count() >= n, 20, what="%d records" % n)
        w.force_rotate(c)  # copy to 0.log.1, truncate 0.log
        for i in range(10):
            w.log(c, b"seq=%s regrowth %d " % (c.next_id().encode(), i) + w._payload(100))
    n = len(w.manifest.records)
    wait_until(lambda: o.count() >= n, 20, what="%d records" % n)
    time.sleep(2)
    o.read()
    Delivery(w.manifest.records, o.records).assert_exactly_once()
    assert d.stop() == 0


@pytest.mark.time_limit(90)
def test_copytruncate_of_a_young_file_while_drover_lags(start_drover, tmp_path):
    """A file that was empty when drover opened it is copied and truncated
    while drover is behind (SIGSTOP stands in for a busy node): the lines
    drover had not read yet are in the copy and must be read from there."""
    root = tmp_path / "node"
    out = tmp_path / "out.ndjson"
    w = KubeletWriter(str(root), seed=8, max_size=None)
    c = w.add_container("special", "young", "app", fmt="docker")
    cfg = tmp_path / "drover.yaml"
    cfg.write_text(tail_config(data_dir=str(tmp_path / "data"),
                               paths=[str(root / "containers" / "*.log")], out=str(out),
                               extra_tail="rotate_wait: 1s\npoll_interval: 3s"))
    d = start_drover(str(cfg)).wait_ready()
    o = OutputFile(str(out))
    w.log(c, b"seq=%s first line, read at once " % c.next_id().encode() + w._payload(200))
    wait_until(lambda: o.count() >= 1, 20, what="the first record")
    d.signal(signal.SIGSTOP)
    try:
        for i in range(5):
            w.log(c, b"seq=%s written while drover lags %d" % (c.next_id().encode(), i))
        w.force_rotate(c)
        w.log(c, b"seq=%s new" % c.next_id().encode())
    finally:
        d.signal(signal.SIGCONT)
    last = w.manifest.records[-1].text
    wait_until(lambda: o.read() is not None and any(r["message"] == last for r in o.records), 20,
               interval=0.05, what="the last line")
    time.sleep(1)
    o.read()
    Delivery(w.manifest.records, o.records).assert_exactly_once()
    assert d.stop() == 0
