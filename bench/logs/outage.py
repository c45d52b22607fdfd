#!/usr/bin/env python3
"""A backend outage during a catch-up: memory stays flat, nothing is lost.

drover reads a gen_pods.py tree from the head and ships it to the counting
sink (harness/sink.py, standing in for Loki: the sink answers like Loki's
push API and costs far less CPU) through a TCP relay of this script's own.
A few seconds in, the relay goes away for --down seconds (its port refuses
connections, the connections it carried are cut), then comes back on the
same port; the sink itself runs throughout, so its count is exact.
Meanwhile drover's RSS is sampled every second. At the end:

  * max RSS during the outage and over the whole run (GNU time),
  * records the sink counted before the outage and in all, against the
    tree's manifest, and drover's own drover_output_records_total and
    drover_dropped_records_total,
  * verified = ok when drover delivered exactly the expected records,
    dropped none, and the sink saw at least all of them (a batch that was
    in flight when the relay went away may arrive twice: at least once).

One JSON object is appended to --results and printed.

  python3 bench/logs/outage.py --drover /tmp/drover-rel/bin/drover \\
      --data /tmp/logbench-data/k8slogs-cri-1g --down 600 --results /tmp/outage.jsonl
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SINK = os.path.join(HERE, "harness", "sink.py")
sys.path.insert(0, os.path.join(HERE, "harness"))
from run_bench import free_port  # noqa: E402  (the harness's own)


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def metric(port, metric_name, **labels):
    """Sum of a metric's series whose labels include `labels`."""
    try:
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read()
    except OSError:
        return None
    total = 0.0
    for line in text.decode().splitlines():
        if not line.startswith(metric_name):
            continue
        m = re.match(r"^%s(\{[^}]*\})?\s+(\S+)$" % re.escape(metric_name), line)
        if not m:
            continue
        ls = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(ls.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


class Relay:
    """A TCP relay on 127.0.0.1:port to the sink. down() closes the port and
    cuts the connections it carries; up() opens the port again."""

    def __init__(self, port, target):
        self.port, self.target = port, target
        self.lock = threading.Lock()
        self.conns = []
        self.listener = None
        self.up()

    def up(self):
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        self.listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def down(self):
        ls, self.listener = self.listener, None
        if ls:
            ls.shutdown(socket.SHUT_RDWR)
            ls.close()
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self, ls):
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return  # closed by down()
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(1 << 18)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Sink:
    def __init__(self, run_dir, port, tag, expect):
        self.stats = os.path.join(run_dir, "sink-%s.stats" % tag)
        self.done = os.path.join(run_dir, "sink-%s.done" % tag)
        self.log = open(os.path.join(run_dir, "sink-%s.log" % tag), "w")
        self.proc = subprocess.Popen(
            [sys.executable, SINK, "--port", str(port), "--expect", str(expect),
             "--done-file", self.done, "--stats-file", self.stats, "--quiet-errors"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sink did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        with open(self.stats) as f:
            return json.load(f)


CONFIG = """agent:
  data_dir: {run}/data
  http: {{ listen: "127.0.0.1:{mport}" }}
  grace_period: 10s
inputs:
  - {{ name: pods, type: tail, paths: ["{data}/containers/*.log"], read_from: head, format: {fmt} }}
outputs:
  - name: loki
    type: loki
    match: pods
    url: http://127.0.0.1:{sport}/loki/api/v1/push
    format: {wire}
    retry_max: {retry_max}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--drover", required=True)
    ap.add_argument("--data", required=True, help="a gen_pods.py tree (with manifest.json)")
    ap.add_argument("--down", type=float, default=600, help="seconds the sink is away")
    ap.add_argument("--up-first", type=float, default=3, help="seconds of delivery before it goes")
    ap.add_argument("--format", default="protobuf", choices=["protobuf", "json"])
    ap.add_argument("--retry-max", default="30s")
    ap.add_argument("--timeout", type=float, default=900, help="wait after the sink returns")
    ap.add_argument("--results", help="append the JSON result here")
    a = ap.parse_args()

    with open(os.path.join(a.data, "manifest.json")) as f:
        manifest = json.load(f)
    expected = manifest["records"]
    run = tempfile.mkdtemp(prefix="drover-outage-")
    sport, mport, relay_port = free_port(), free_port(), free_port()
    cfg = os.path.join(run, "drover.yaml")
    with open(cfg, "w") as f:
        f.write(CONFIG.format(run=run, mport=mport, data=a.data, fmt=manifest.get("format", "cri"),
                              sport=relay_port, wire=a.format, retry_max=a.retry_max))
    timef = os.path.join(run, "time.txt")
    result = {"scenario": "loki_outage", "format": a.format, "data": a.data,
              "expected": expected, "down_s": a.down}
    sink = Sink(run, sport, "all", expected)
    relay = Relay(relay_port, sport)
    t0 = time.time()
    log = open(os.path.join(run, "drover.log"), "w")
    drover = subprocess.Popen(["/usr/bin/time", "-v", "-o", timef, a.drover, "-c", cfg],
                              stdout=log, stderr=subprocess.STDOUT)
    # GNU time's child is drover: find its pid for /proc sampling
    pid = None
    while pid is None and time.time() - t0 < 10:
        try:
            kids = open("/proc/%d/task/%d/children" % (drover.pid, drover.pid)).read().split()
            pid = int(kids[0]) if kids else None
        except OSError:
            pass
        time.sleep(0.05)
    try:
        time.sleep(a.up_first)
        relay.down()
        t_down = time.time()
        result["records_before"] = json.loads(urllib.request.urlopen(
            "http://127.0.0.1:%d/stats" % sport, timeout=10).read())["records"]
        samples = []
        while time.time() - t_down < a.down:
            samples.append(rss_kib(pid))
            time.sleep(1)
        result["outage_rss_max_kib"] = max(samples)
        result["outage_rss_last_kib"] = samples[-1]
        result["queue_bytes_during_outage"] = metric(mport, "drover_queue_bytes")
        relay.up()
        t_up = time.time()
        while time.time() - t_up < a.timeout and not os.path.exists(sink.done):
            if metric(mport, "drover_output_records_total", name="loki") == expected:
                break
            time.sleep(0.5)
        time.sleep(2)  # the last answers
        result["catch_up_after_s"] = round(time.time() - t_up, 1)
        result["records_out"] = metric(mport, "drover_output_records_total", name="loki")
        result["dropped"] = metric(mport, "drover_dropped_records_total")
        result["retries"] = metric(mport, "drover_output_retries_total")
        stats = sink.stop()
        result["records_seen"] = stats["records"]
        result["long_records_seen"] = stats["long_records"]
        result["sink_bytes_wire"] = stats["bytes_wire"]
    finally:
        # GNU time does not pass signals on: stop drover itself
        if pid:
            os.kill(pid, signal.SIGTERM)
        relay.down()
        try:
            drover.wait(timeout=60)
        except subprocess.TimeoutExpired:
            drover.kill()
            drover.wait()
        log.close()
    with open(timef) as f:
        for line in f:
            if "Maximum resident set size" in line:
                result["max_rss_kib"] = int(line.rsplit(":", 1)[1])
            if "User time" in line or "System time" in line:
                result["cpu_s"] = round(result.get("cpu_s", 0) + float(line.rsplit(":", 1)[1]), 2)
    seen = result["records_seen"]
    result["verified"] = "ok" if (result["records_out"] == expected and not result["dropped"]
                                  and seen >= expected) else "FAIL"
    result["duplicates_at_sink"] = seen - expected
    line = json.dumps(result)
    print(line)
    if a.results:
        with open(a.results, "a") as f:
            f.write(line + "\n")
    if result["verified"] == "ok":
        shutil.rmtree(run, ignore_errors=True)
    else:
        print("kept %s" % run, file=sys.stderr)
    return 0 if result["verified"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
