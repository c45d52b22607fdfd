#!/usr/bin/env python3
"""Time a log agent reading a gen_pods.py tree from head to end.

Two sub-commands:

  throughput   start the agent on a tree, wait until it is done, and report
               wall seconds, user+sys CPU seconds and peak RSS (GNU time -v),
               input MiB, MiB per CPU-second and records per CPU-second.
  idle         start the agent on a tree with no traffic and sample its RSS
               and CPU for a while.

The agent is described only by a command line and an optional config
template, so any agent can be measured.  Both may use these placeholders,
replaced before the run (also exported as environment variables BENCH_<NAME>):

  {{LOG_DIR}}          root of the generated tree (contains pods/, containers/)
  {{CONTAINERS_GLOB}}  {{LOG_DIR}}/containers/*.log
  {{PODS_GLOB}}        {{LOG_DIR}}/pods/*/*/*.log
  {{RUN_DIR}}          fresh empty directory for this run (position DB, buffers)
  {{CONFIG}}           the rendered config file ({{RUN_DIR}}/agent.<ext>)
  {{SINK_HOST}}        127.0.0.1
  {{SINK_PORT}}        port of the counting sink (sink.py) when --sink is used
  {{SINK_URL}}         http://127.0.0.1:<port>
  {{METRICS_PORT}}     a free loopback port the agent may use for its own metrics
  {{EXPECTED_RECORDS}} records the tree holds after partial-line merge
  {{TOKEN_FILE}}       {{RUN_DIR}}/token, a dummy service-account token
  {{LOG_DIR_DOTS}}     LOG_DIR without leading "/" and with "/" -> "." (for tag prefixes)
  {{FORMAT}}           cri or docker (the tree's line format, from manifest.json)
  {{NODE_NAME}}        spec.nodeName of the sink's stub Kubernetes API pods (bench-node-1)

Completion (--done):
  exit   the agent exits by itself when it has read everything (e.g. Fluent
         Bit's tail Exit_On_Eof).  wall = process lifetime.
  sink   the sink has received EXPECTED_RECORDS records; the agent is then
         stopped with SIGTERM.  wall = start -> last expected record received.
  poll   records processed so far are read from the agent, either in-process
         from a Prometheus endpoint (--poll-prom 'URL METRIC [label=value ...]')
         or from a command printing a number (--poll-cmd); done when it
         reaches EXPECTED_RECORDS; the agent is then stopped with SIGTERM.
         wall = start -> first poll that saw EXPECTED_RECORDS.

CPU and peak RSS always cover the whole process lifetime (start-up, work and
shutdown), measured by /usr/bin/time -v around the agent.

Results are appended as one JSON object per run to --results (JSONL); use
summarize.py to build median/min/max tables.  Python 3 stdlib only.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the harness directory clean
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
GNU_TIME = "/usr/bin/time"
STUB_NODE = "bench-node-1"  # the node of every pod of the sink's stub Kubernetes API


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def render(text, tokens):
    def rep(m):
        k = m.group(1)
        if k not in tokens:
            raise KeyError("unknown placeholder {{%s}}" % k)
        return str(tokens[k])
    return re.sub(r"\{\{([A-Z_]+)\}\}", rep, text)


def load_manifest(data_dir):
    p = os.path.join(data_dir, "manifest.json")
    if not os.path.exists(p):
        sys.exit("run_bench: %s not found (generate the tree with gen_pods.py)" % p)
    with open(p) as f:
        return json.load(f)


def warm_cache(data_dir):
    """Read every log file once so each agent starts with the same warm page cache."""
    buf = bytearray(1 << 20)
    total = 0
    for root, _dirs, files in os.walk(os.path.join(data_dir, "pods")):
        for fn in files:
            with open(os.path.join(root, fn), "rb", buffering=0) as f:
                while True:
                    n = f.readinto(buf)
                    if not n:
                        break
                    total += n
    return total


def parse_gnu_time(path):
    out = {}
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if ":" not in line:
                continue
            k, _, v = line.rpartition(": ")
            k = k.strip()
            v = v.strip()
            if k == "User time (seconds)":
                out["user_s"] = float(v)
            elif k == "System time (seconds)":
                out["sys_s"] = float(v)
            elif k == "Maximum resident set size (kbytes)":
                out["max_rss_kib"] = int(v)
            elif k.startswith("Elapsed (wall clock) time"):
                parts = [float(x) for x in v.split(":")]
                secs = 0.0
                for p in parts:
                    secs = secs * 60 + p
                out["process_wall_s"] = secs
            elif k == "Exit status":
                out["exit_status"] = int(v)
            elif k == "Voluntary context switches":
                out["vol_ctx_switches"] = int(v)
            elif k == "Involuntary context switches":
                out["invol_ctx_switches"] = int(v)
            elif k == "Major (requiring I/O) page faults":
                out["major_faults"] = int(v)
            elif k == "File system inputs":
                out["fs_inputs"] = int(v)
        # GNU time prints "Command terminated by signal N" on its first line
    with open(path) as f:
        first = f.readline()
        m = re.search(r"terminated by signal (\d+)", first)
        if m:
            out["term_signal"] = int(m.group(1))
    return out


def child_pids(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def proc_cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (clock ticks)


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                out[k] = int(v.split()[0])
    return out


def machine_busy_ticks():
    """Busy clock ticks of the whole machine (all CPUs) from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


def background_cores(window=2.0):
    t0, b0 = time.monotonic(), machine_busy_ticks()
    time.sleep(window)
    t1, b1 = time.monotonic(), machine_busy_ticks()
    return (b1 - b0) / os.sysconf("SC_CLK_TCK") / (t1 - t0)


def wait_quiet(max_wait, threshold):
    """Wait (up to max_wait s) until other load on the machine is below threshold cores."""
    deadline = time.monotonic() + max_wait
    while True:
        bg = background_cores()
        if bg <= threshold or time.monotonic() >= deadline:
            return bg
        sys.stderr.write("run_bench: machine busy (%.2f cores used by others), waiting...\n" % bg)
        time.sleep(5)


class Sink:
    def __init__(self, run_dir, expect, manifest_path, long_threshold):
        self.port_file = os.path.join(run_dir, "sink.port")
        self.done_file = os.path.join(run_dir, "sink.done")
        self.stats_file = os.path.join(run_dir, "sink.stats")
        self.log = open(os.path.join(run_dir, "sink.log"), "w")
        cmd = [sys.executable, os.path.join(HERE, "sink.py"), "--port", "0",
               "--port-file", self.port_file, "--expect", str(expect),
               "--long-threshold", str(long_threshold),
               "--done-file", self.done_file, "--stats-file", self.stats_file,
               "--quiet-errors"]
        if manifest_path:
            cmd += ["--manifest", manifest_path, "--node-name", STUB_NODE]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("sink did not start (see %s)" % self.log.name)
            time.sleep(0.02)
        with open(self.port_file) as f:
            self.port = int(f.read())

    def done(self):
        if os.path.exists(self.done_file):
            with open(self.done_file) as f:
                return json.load(f)
        return None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        _pid, _status, ru = os.wait4(self.proc.pid, 0)
        self.proc.returncode = 0
        self.log.close()
        stats = {}
        if os.path.exists(self.stats_file):
            with open(self.stats_file) as f:
                stats = json.load(f)
        stats["sink_cpu_s"] = round(ru.ru_utime + ru.ru_stime, 3)
        return stats


def setup_run(a, manifest, want_sink):
    base = os.path.abspath(a.work_dir)
    os.makedirs(base, exist_ok=True)
    run_dir = tempfile.mkdtemp(prefix="%s-" % re.sub(r"[^A-Za-z0-9_.-]", "_", a.name), dir=base)
    data = os.path.abspath(a.data)
    sink = None
    if want_sink:
        sink = Sink(run_dir, manifest["records"], os.path.join(data, "manifest.json"),
                    manifest.get("long_threshold", 16384))
    with open(os.path.join(run_dir, "token"), "w") as f:
        f.write("bench-dummy-token\n")
    tokens = {
        "LOG_DIR": data,
        "CONTAINERS_GLOB": os.path.join(data, manifest.get("containers_glob", "containers/*.log")),
        "PODS_GLOB": os.path.join(data, manifest.get("pods_glob", "pods/*/*/*.log")),
        "RUN_DIR": run_dir,
        "SINK_HOST": "127.0.0.1",
        "SINK_PORT": sink.port if sink else 0,
        "SINK_URL": "http://127.0.0.1:%d" % (sink.port if sink else 0),
        "METRICS_PORT": free_port(),
        "EXPECTED_RECORDS": manifest["records"],
        "TOKEN_FILE": os.path.join(run_dir, "token"),
        # LOG_DIR with "/" turned into "." (how Fluent Bit's tail expands Tag kube.*)
        "LOG_DIR_DOTS": data.strip("/").replace("/", "."),
        # on-disk format of the tree: cri or docker (also Fluent Bit's built-in parser names)
        "FORMAT": manifest.get("format", "cri"),
        # the node of the stub API's pods (a kubernetes filter watching its node's pods)
        "NODE_NAME": STUB_NODE,
    }
    cfg_path = ""
    if a.config:
        ext = os.path.splitext(a.config)[1] or ".conf"
        cfg_path = os.path.join(run_dir, "agent" + ext)
        tokens["CONFIG"] = cfg_path
        with open(a.config) as f:
            txt = render(f.read(), tokens)
        with open(cfg_path, "w") as f:
            f.write(txt)
    else:
        tokens["CONFIG"] = ""
    env = dict(os.environ)
    for k, v in tokens.items():
        env["BENCH_" + k] = str(v)
    return run_dir, sink, tokens, env


def start_agent(cmd, run_dir, env):
    time_out = os.path.join(run_dir, "time.txt")
    log = open(os.path.join(run_dir, "agent.log"), "w")
    argv = [GNU_TIME, "-v", "-o", time_out, "/bin/sh", "-c", "exec " + cmd]
    t0_wall = time.time()
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, start_new_session=True, cwd=run_dir)
    return proc, log, t0, t0_wall, time_out


def agent_pid(proc):
    kids = child_pids(proc.pid)
    return kids[0] if kids else None


def stop_agent(proc, sig, stop_timeout):
    """Signal the agent (the child of GNU time); escalate to SIGKILL."""
    how = "signal-%d" % sig
    pid = agent_pid(proc)
    if pid:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=stop_timeout)
    except subprocess.TimeoutExpired:
        how = "killed"
        pid = agent_pid(proc)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
    return how


def run_poll_prom(spec):
    import prom_count
    parts = shlex.split(spec)
    try:
        return prom_count.scrape(parts[0], parts[1], dict(kv.split("=", 1) for kv in parts[2:]), timeout=2)
    except Exception:
        return None


def run_poll_cmd(cmd, env):
    try:
        r = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, env=env, timeout=10)
        m = re.search(r"-?\d+(\.\d+)?", r.stdout)
        return int(float(m.group(0))) if m and r.returncode == 0 else None
    except Exception:
        return None


def cmd_throughput(a):
    manifest = load_manifest(a.data)
    want_sink = a.sink or a.done == "sink"
    if a.done == "poll" and not (a.poll_cmd or a.poll_prom):
        sys.exit("run_bench: --done poll needs --poll-prom or --poll-cmd")
    results = []
    for i in range(a.runs):
        run_dir, sink, tokens, env = setup_run(a, manifest, want_sink)
        cmd = render(a.agent_cmd, tokens)
        poll_cmd = render(a.poll_cmd, tokens) if a.poll_cmd else None
        poll_prom = render(a.poll_prom, tokens) if a.poll_prom else None
        if not a.no_warm_cache:
            warm_cache(tokens["LOG_DIR"])
        bg_before = wait_quiet(a.quiet_wait, a.quiet_threshold) if a.quiet_wait >= 0 else None
        busy0 = machine_busy_ticks()
        proc, log, t0, t0_wall, time_out = start_agent(cmd, run_dir, env)
        expected = manifest["records"]
        t_done = None
        how = None
        polled = None
        next_poll = 0.0
        deadline = t0 + a.timeout
        while True:
            now = time.monotonic()
            exited = proc.poll() is not None
            if a.done == "exit" and exited:
                t_done, how = now, "exited"
                break
            if a.done == "sink":
                d = sink.done()
                if d:
                    t_done = t0 + (d["t_done"] - t0_wall)
                    break
            if a.done == "poll" and now >= next_poll:
                v = run_poll_prom(poll_prom) if poll_prom else run_poll_cmd(poll_cmd, env)
                if v is not None:
                    polled = v
                    if v >= expected:
                        t_done = time.monotonic()
                        break
                next_poll = now + a.poll_interval
            if exited:
                how = "exited-early"
                # give an in-flight delivery a moment to land
                if sink:
                    time.sleep(2)
                    d = sink.done()
                    if d:
                        t_done = t0 + (d["t_done"] - t0_wall)
                break
            if now > deadline:
                how = "timeout"
                break
            time.sleep(0.05)
        if proc.poll() is None:
            if a.settle > 0:
                time.sleep(a.settle)
            how = stop_agent(proc, signal.SIGTERM if how != "timeout" else signal.SIGKILL, a.stop_timeout)
            if how.startswith("signal") and t_done is not None:
                how = "stopped-after-done"
        elif how is None:
            how = "exited"
        t_exit = time.monotonic()
        busy_s = (machine_busy_ticks() - busy0) / float(os.sysconf("SC_CLK_TCK"))
        log.close()
        tm = parse_gnu_time(time_out)
        sstats = sink.stop() if sink else {}
        cpu = tm.get("user_s", 0.0) + tm.get("sys_s", 0.0)
        mib = manifest["bytes"] / 1048576.0
        wall = (t_done - t0) if t_done is not None else None
        delivered = None
        long_delivered = None
        if sink:
            delivered = sstats.get("records")
            long_delivered = sstats.get("long_records")
        elif a.done == "poll":
            delivered = polled
        if how in ("exited", "exited-early") and tm.get("exit_status", 0) != 0:
            verified = "FAIL"  # the agent failed (see agent.log in the kept run dir)
        elif delivered is None:
            verified = "n/a"
        elif delivered == expected and (long_delivered is None or long_delivered == manifest["long_records"]):
            verified = "ok"
        else:
            verified = "FAIL"
        rec = {
            "name": a.name, "scenario": a.scenario or a.name, "agent_version": a.agent_version,
            "dataset": a.label or os.path.basename(os.path.abspath(a.data)),
            "data_dir": os.path.abspath(a.data), "run": a.run_index + i, "done_mode": a.done,
            "input_bytes": manifest["bytes"], "input_mib": round(mib, 2),
            "records_expected": expected, "physical_lines": manifest["physical_lines"],
            "long_expected": manifest["long_records"],
            "wall_s": round(wall, 3) if wall is not None else None,
            "process_wall_s": tm.get("process_wall_s", round(t_exit - t0, 2)),
            "user_s": tm.get("user_s"), "sys_s": tm.get("sys_s"), "cpu_s": round(cpu, 2),
            "max_rss_kib": tm.get("max_rss_kib"),
            "max_rss_mib": round(tm["max_rss_kib"] / 1024.0, 1) if "max_rss_kib" in tm else None,
            "mib_per_cpu_s": round(mib / cpu, 2) if cpu > 0 else None,
            "records_per_cpu_s": int(expected / cpu) if cpu > 0 else None,
            "lines_per_cpu_s": int(manifest["physical_lines"] / cpu) if cpu > 0 else None,
            "mib_per_wall_s": round(mib / wall, 2) if wall else None,
            "delivered": delivered, "long_delivered": long_delivered, "verified": verified,
            "ended": how, "exit_status": tm.get("exit_status"), "term_signal": tm.get("term_signal"),
            "vol_ctx_switches": tm.get("vol_ctx_switches"), "invol_ctx_switches": tm.get("invol_ctx_switches"),
            "fs_inputs_blocks": tm.get("fs_inputs"), "major_faults": tm.get("major_faults"),
            # CPU the rest of the machine used during the run (anything but the agent and
            # the sink: the runner's own polling is small).  Large values = noisy run.
            "machine_busy_s": round(busy_s, 2),
            "other_cpu_s": round(max(0.0, busy_s - cpu - (sstats.get("sink_cpu_s") or 0.0)), 2),
            "other_cores": round(max(0.0, busy_s - cpu - (sstats.get("sink_cpu_s") or 0.0)) / (t_exit - t0), 2),
            "bg_cores_before": round(bg_before, 2) if bg_before is not None else None,
            "sink_cpu_s": sstats.get("sink_cpu_s"), "sink_requests": sstats.get("requests"),
            "sink_bytes_wire": sstats.get("bytes_wire"), "sink_errors": sstats.get("errors"),
            "sink_bytes_decoded": sstats.get("bytes_decoded"),  # drover's copy: decompressed size
            "sink_formats": sstats.get("formats"),
            # drover's copy: requests to the sink's stub Kubernetes API, by verb
            "k8s_requests": sstats.get("k8s_requests"), "k8s_gets": sstats.get("k8s_gets"),
            "k8s_lists": sstats.get("k8s_lists"), "k8s_watches": sstats.get("k8s_watches"),
            "k8s_no_token": sstats.get("k8s_no_token"),
            "run_dir": run_dir, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        results.append(rec)
        if a.results:
            with open(a.results, "a") as f:
                f.write(json.dumps(rec) + "\n")
        print("%-22s %-10s run %d: wall %s s, cpu %.2f s (u %.2f s %.2f), rss %s MiB, %s MiB/cpu-s, "
              "%s rec/cpu-s, delivered %s/%s long %s/%s -> %s [%s] others %.2f cores" % (
                  rec["scenario"], rec["dataset"], rec["run"],
                  "%.2f" % wall if wall is not None else "-", cpu, tm.get("user_s", 0), tm.get("sys_s", 0),
                  rec["max_rss_mib"], rec["mib_per_cpu_s"], rec["records_per_cpu_s"],
                  delivered, expected, long_delivered, manifest["long_records"], verified, how,
                  rec["other_cores"]),
              flush=True)
        if not a.keep_run_dirs and verified != "FAIL" and how not in ("timeout", "exited-early", "killed"):
            shutil.rmtree(run_dir, ignore_errors=True)
    return 0 if all(r["verified"] != "FAIL" and r["wall_s"] is not None for r in results) else 1


def cmd_idle(a):
    manifest = load_manifest(a.data)
    run_dir, sink, tokens, env = setup_run(a, manifest, a.sink)
    cmd = render(a.agent_cmd, tokens)
    proc, log, t0, t0_wall, time_out = start_agent(cmd, run_dir, env)
    time.sleep(0.5)
    pid = agent_pid(proc)
    if not pid:
        sys.exit("run_bench idle: agent did not start (see %s)" % run_dir)
    time.sleep(a.warmup)
    hz = os.sysconf("SC_CLK_TCK")
    samples = []
    cpu0 = proc_cpu_ticks(pid)
    busy0 = machine_busy_ticks()
    s0 = proc_status(pid)
    t_s0 = time.monotonic()
    end = t_s0 + a.duration
    while time.monotonic() < end and proc.poll() is None:
        st = proc_status(pid)
        samples.append(st["VmRSS"])
        time.sleep(a.interval)
    alive = proc.poll() is None
    st1 = proc_status(pid) if alive else {}
    cpu1 = proc_cpu_ticks(pid) if alive else cpu0
    busy1 = machine_busy_ticks()
    elapsed = time.monotonic() - t_s0
    how = stop_agent(proc, signal.SIGTERM, a.stop_timeout) if alive else "exited-early"
    log.close()
    tm = parse_gnu_time(time_out)
    sstats = sink.stop() if sink else {}
    samples.sort()
    rec = {
        "name": a.name, "scenario": a.scenario or a.name, "agent_version": a.agent_version,
        "mode": "idle", "dataset": a.label or os.path.basename(os.path.abspath(a.data)),
        "files": manifest["files"], "warmup_s": a.warmup, "duration_s": round(elapsed, 1),
        "rss_start_kib": s0.get("VmRSS"), "rss_end_kib": st1.get("VmRSS"),
        "rss_median_kib": samples[len(samples) // 2] if samples else None,
        "rss_max_kib": samples[-1] if samples else None,
        "rss_anon_end_kib": st1.get("RssAnon"), "rss_file_end_kib": st1.get("RssFile"),
        "hwm_kib": st1.get("VmHWM"), "threads": st1.get("Threads"),
        "idle_cpu_ms_per_min": round((cpu1 - cpu0) * 1000.0 / hz * 60.0 / elapsed, 1) if elapsed else None,
        "gnu_time_max_rss_kib": tm.get("max_rss_kib"), "ended": how,
        "other_cores": round(max(0, (busy1 - busy0) - (cpu1 - cpu0)) / float(hz) / elapsed, 2) if elapsed else None,
        "k8s_api_requests": sstats.get("k8s_requests"), "sink_records": sstats.get("records"),
        "k8s_lists": sstats.get("k8s_lists"), "k8s_watches": sstats.get("k8s_watches"),  # drover's copy
        "run_dir": run_dir, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if a.results:
        with open(a.results, "a") as f:
            f.write(json.dumps(rec) + "\n")
    print("%-22s idle %.0fs: RSS start %s KiB, end %s KiB (anon %s, file %s), max %s KiB, HWM %s KiB, "
          "%s threads, idle CPU %s ms/min" % (
              rec["scenario"], elapsed, rec["rss_start_kib"], rec["rss_end_kib"], rec["rss_anon_end_kib"],
              rec["rss_file_end_kib"], rec["rss_max_kib"], rec["hwm_kib"], rec["threads"],
              rec["idle_cpu_ms_per_min"]), flush=True)
    if not a.keep_run_dirs:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description="log-agent catch-up benchmark runner")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--data", required=True, help="tree made by gen_pods.py")
        p.add_argument("--agent-cmd", required=True,
                       help="shell command starting the agent in the foreground, e.g. "
                            "'/opt/fb/bin/fluent-bit -c {{CONFIG}}'")
        p.add_argument("--config", help="config template rendered to {{CONFIG}}")
        p.add_argument("--name", required=True, help="agent name for the results, e.g. fluent-bit")
        p.add_argument("--scenario", help="scenario label (default: --name)")
        p.add_argument("--label", help="dataset label (default: basename of --data)")
        p.add_argument("--agent-version", default="", help="free text recorded in the results")
        p.add_argument("--sink", action="store_true", help="start the counting sink (implied by --done sink)")
        p.add_argument("--results", help="append JSON lines here")
        p.add_argument("--work-dir", default=os.environ.get("TMPDIR", "/tmp") + "/logbench-runs")
        p.add_argument("--keep-run-dirs", action="store_true")
        p.add_argument("--stop-timeout", type=float, default=30.0,
                       help="seconds to wait after SIGTERM before SIGKILL")

    p = sub.add_parser("throughput", help="time a full read of the tree")
    common(p)
    p.add_argument("--done", choices=["exit", "sink", "poll"], default="exit")
    p.add_argument("--poll-prom", help="'URL METRIC [label=value ...]': Prometheus counter of records "
                                      "processed so far (for --done poll), placeholders allowed")
    p.add_argument("--poll-cmd", help="command printing records processed so far (for --done poll)")
    p.add_argument("--poll-interval", type=float, default=0.25)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--run-index", type=int, default=1, help="number of the first run (for the results)")
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--settle", type=float, default=0.0,
                   help="seconds to leave the agent running after done (duplicates then show up)")
    p.add_argument("--no-warm-cache", action="store_true")
    p.add_argument("--quiet-wait", type=float, default=600.0,
                   help="before each run wait up to this many seconds for other load on the machine "
                        "to drop below --quiet-threshold cores (-1: do not check)")
    p.add_argument("--quiet-threshold", type=float, default=0.15)
    p.set_defaults(fn=cmd_throughput)

    p = sub.add_parser("idle", help="RSS/CPU of an agent with nothing to do")
    common(p)
    p.add_argument("--warmup", type=float, default=10.0)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--interval", type=float, default=1.0)
    p.set_defaults(fn=cmd_idle)

    a = ap.parse_args(argv)
    if not os.path.exists(GNU_TIME):
        sys.exit("run_bench: %s missing (Debian: apt-get install time)" % GNU_TIME)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
