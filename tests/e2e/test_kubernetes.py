"""The kubernetes filter against a real API server (kube-apiserver 1.34 with
etcd 3.6, tests/e2e/kube.py) and against a kubelet stand-in serving recorded
/pods answers: metadata on every record, pods that come, change and go,
a watch that cannot resume (410) and relists, no LIST in steady state, and
the least-privilege RBAC the DaemonSet gets."""

from __future__ import annotations

import http.server
import json
import os
import socket
import ssl
import threading
import time

import pytest

from drover_e2e import HOST, OutputFile, free_port, make_cert, tail_config, wait_until, yaml_str
from kube import KubeServer, kube, kube_bin_dir, start_kube  # noqa: F401 (fixtures)
from kubelet_writer import KubeletWriter

FIXTURES = os.environ.get("DROVER_FIXTURES") or os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "shared", "fixtures")

# What the Helm chart grants the DaemonSet: nothing more.
AGENT_RULES = [
    {"apiGroups": [""], "resources": ["pods", "namespaces", "configmaps"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
SA_USER = "system:serviceaccount:kube-system:drover"
NODE = "node-a"


class TcpGate(threading.Thread):
    """A TCP relay to the API server that the test can cut: close every
    connection and refuse new ones until reopened."""

    def __init__(self, upstream_port: int):
        super().__init__(daemon=True)
        self.upstream = upstream_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        self.blocked = False
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            if self.blocked:
                c.close()
                continue
            try:
                u = socket.create_connection((HOST, self.upstream), timeout=5)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            a.settimeout(None)
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.blocked = True
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self.conns = []

    def reopen(self) -> None:
        self.blocked = False

    def stop(self) -> None:
        self.closed = True
        self.cut()
        self.sock.close()
        self.join(5)


def make_pod(kube: KubeServer, ns: str, name: str, containers: list[str], *, node: str = NODE,
             labels=None, annotations=None, owner=None) -> dict:
    meta = {"name": name, "labels": labels or {}, "annotations": annotations or {}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1],
                                    "uid": "00000000-0000-0000-0000-0000000000aa",
                                    "controller": True}]
    return kube.call("POST", "/api/v1/namespaces/%s/pods" % ns, {
        "apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": {"nodeName": node,
                 "containers": [{"name": c, "image": "registry.example/%s:1.0" % c}
                                for c in containers]}})


def merge_patch(kube: KubeServer, path: str, body: dict) -> None:
    status, text = kube.request("PATCH", path, body,
                                content_type="application/merge-patch+json")
    assert status == 200, (status, text[:300])


def agent_token(kube: KubeServer, tmp_path) -> str:
    token = kube.service_account_token("kube-system", "drover", AGENT_RULES, cluster=True)
    path = str(tmp_path / "token")
    with open(path, "w") as f:
        f.write(token + "\n")
    return path


def kube_config(tmp_path, root: str, out: str, url: str, ca: str, token_file: str,
                extra: str = "") -> str:
    cfg = tail_config(data_dir=str(tmp_path / "data"), paths=[root + "/containers/*.log"], out=out,
                      agent_extra="  node_name: %s\n" % NODE)
    cfg += ("filters:\n"
            "  - type: kubernetes\n"
            "    match: pods\n"
            "    api:\n"
            "      url: %s\n"
            "      ca_file: %s\n"
            "      token_file: %s\n"
            "    annotations: [\"example.com/*\"]\n"
            "%s") % (yaml_str(url), yaml_str(ca), yaml_str(token_file), extra)
    path = str(tmp_path / "drover.yaml")
    with open(path, "w") as f:
        f.write(cfg)
    return path


def add_container(w: KubeletWriter, pod: dict, name: str):
    m = pod["metadata"]
    w._pod_uids[(m["namespace"], m["name"])] = m["uid"]  # the API server's uid
    return w.add_container(m["namespace"], m["name"], name, rotation=None)


def records_with(out: OutputFile, marker: str) -> list[dict]:
    out.read()
    return [r for r in out.records if marker in r.get("message", "")]


def wait_record(out: OutputFile, marker: str, timeout: float = 20.0) -> dict:
    return wait_until(lambda: (records_with(out, marker) or [None])[-1], timeout,
                      what="a record with %r" % marker)


def audit(kube: KubeServer, stage: str = "ResponseComplete") -> list[dict]:
    evs = []
    try:
        with open(kube.audit_log) as f:
            for line in f:
                ev = json.loads(line)
                if ev.get("stage") == stage and ev.get("user", {}).get("username") == SA_USER:
                    evs.append(ev)
    except FileNotFoundError:
        pass
    return evs


@pytest.mark.time_limit(300)
def test_metadata_on_records(kube, start_drover, tmp_path):
    kube.create_namespace("shop", labels={"team": "shop", "tier": "gold"})
    kube.create_namespace("quiet")
    web = make_pod(kube, "shop", "web-5d8f7c9b6-x1", ["app", "proxy"],
                   labels={"app": "web", "pod-template-hash": "5d8f7c9b6"},
                   annotations={"example.com/team": "checkout", "other.io/big": "x" * 100},
                   owner=("ReplicaSet", "web-5d8f7c9b6"))
    noisy = make_pod(kube, "quiet", "noisy-1", ["main", "side"],
                     annotations={"drover.io/exclude-side": "true"})
    muted = make_pod(kube, "quiet", "muted-1", ["main"], annotations={"drover.io/exclude": "true"})
    make_pod(kube, "shop", "elsewhere-1", ["app"], node="node-b")
    parsed = make_pod(kube, "shop", "parsed-1", ["app", "plain"],
                      annotations={"drover.io/parser": "json",
                                   "drover.io/parser-plain": "level-first"})

    token_file = agent_token(kube, tmp_path)
    root = str(tmp_path / "node")
    out_path = str(tmp_path / "out.ndjson")
    w = KubeletWriter(root, seed=7)
    c_app = add_container(w, web, "app")
    c_proxy = add_container(w, web, "proxy")
    c_main = add_container(w, noisy, "main")
    c_side = add_container(w, noisy, "side")
    c_muted = add_container(w, muted, "main")
    c_json = add_container(w, parsed, "app")
    c_plain = add_container(w, parsed, "plain")
    for c in (c_app, c_proxy, c_main, c_side, c_muted):
        w.log(c, b"before-start " + c.key.encode())
    w.log(c_json, b'{"level":"warn","n":3,"ctx":{"user":"ann"},"msg":"json-line"}')
    w.log(c_json, b"not json at all json-bad")
    w.log(c_plain, b"ERROR plain-line")
    d = start_drover(kube_config(tmp_path, root, out_path, kube.url, kube.ca_file, token_file,
                                 extra="    parsers: ['level-first ^(?<level>[A-Z]+) ']\n"))
    d.wait_ready()
    out = OutputFile(out_path)

    # Lines written before drover started carry their metadata too: the
    # inputs waited for the first list.
    r = wait_record(out, "before-start " + c_app.key)
    k = r["kubernetes"]
    assert k["namespace"] == "shop" and k["pod"] == "web-5d8f7c9b6-x1", k
    assert k["pod_uid"] == web["metadata"]["uid"], k
    assert k["container"] == "app" and k["image"] == "registry.example/app:1.0", k
    assert k["node"] == NODE, k
    assert k["owner_kind"] == "Deployment" and k["owner_name"] == "web", k
    assert k["labels"] == {"app": "web", "pod-template-hash": "5d8f7c9b6"}, k
    assert k["annotations"] == {"example.com/team": "checkout"}, k
    assert k["namespace_labels"]["team"] == "shop", k
    assert k["namespace_labels"]["kubernetes.io/metadata.name"] == "shop", k
    assert wait_record(out, "before-start " + c_proxy.key)["kubernetes"]["image"] == \
        "registry.example/proxy:1.0"
    assert wait_record(out, "before-start " + c_main.key)["kubernetes"]["pod"] == "noisy-1"

    # Annotations choose a parser: per pod, or per container by name.
    r = wait_record(out, "json-line")
    assert r["level"] == "warn" and r["n"] == 3 and r["ctx"] == {"user": "ann"}, r
    r = wait_record(out, "json-bad")
    assert "level" not in r, r
    assert d.metric("drover_kube_parse_errors_total") == 1
    r = wait_record(out, "plain-line")
    assert r["level"] == "ERROR", r

    # Annotations steer: a whole pod, or one container, excluded (counted).
    wait_until(lambda: d.metric("drover_dropped_records_total", reason="excluded") >= 2, 10,
               what="two excluded records")
    w.log(c_side, b"side-after")
    w.log(c_muted, b"muted-after")
    w.log(c_main, b"main-after")
    wait_record(out, "main-after")
    assert not records_with(out, "side-after") and not records_with(out, "muted-after")
    assert not records_with(out, "before-start " + c_side.key)

    # A pod that comes later; a label that changes; both within seconds.
    late = make_pod(kube, "shop", "late-1", ["app"], labels={"app": "late"})
    c_late = add_container(w, late, "app")
    w.log(c_late, b"late-line")
    r = wait_record(out, "late-line")
    assert r["kubernetes"]["labels"] == {"app": "late"}, r
    merge_patch(kube, "/api/v1/namespaces/shop/pods/web-5d8f7c9b6-x1",
                {"metadata": {"labels": {"version": "v2"}}})
    merge_patch(kube, "/api/v1/namespaces/shop", {"metadata": {"labels": {"tier": "platinum"}}})
    deadline = time.monotonic() + 20
    n = 0
    while True:
        n += 1
        w.log(c_app, b"relabel-%d" % n)
        r = wait_record(out, "relabel-%d" % n)
        k = r["kubernetes"]
        if k["labels"].get("version") == "v2" and k["namespace_labels"].get("tier") == "platinum":
            break
        assert time.monotonic() < deadline, "label changes not applied: %r" % k
        time.sleep(0.3)

    # The pod is deleted while its file still has lines to read.
    kube.delete("/api/v1/namespaces/shop/pods/web-5d8f7c9b6-x1", grace_seconds=0)
    time.sleep(1.0)
    w.log(c_app, b"after-delete")
    r = wait_record(out, "after-delete")
    assert r["kubernetes"]["owner_name"] == "web" and r["kubernetes"]["labels"]["app"] == "web", r

    # Steady state: one LIST per watched resource, then watches only; and
    # nothing the RBAC role does not grant was asked for.
    time.sleep(3)
    lists = [e["requestURI"] for e in audit(kube) if e["verb"] == "list"]
    assert len(lists) == 2, lists  # pods of this node, and namespaces
    assert any("/api/v1/pods?" in u and "spec.nodeName%3Dnode-a" in u for u in lists), lists
    assert any(u.startswith("/api/v1/namespaces?") for u in lists), lists
    watches = [e for e in audit(kube, "RequestReceived") if e["verb"] == "watch"]
    assert len(watches) >= 2, watches
    denied = [(e["verb"], e["requestURI"]) for e in audit(kube)
              if e.get("responseStatus", {}).get("code", 200) >= 400]
    assert not denied, denied
    assert d.metric("drover_kube_requests_total", verb="list") == 2
    assert d.metric("drover_kube_relists_total") == 0
    w.close()
    assert d.stop() == 0


@pytest.mark.time_limit(300)
def test_watch_expired_relists(start_kube, start_drover, tmp_path):
    # Pods served straight from etcd: a compaction expires old versions at once.
    kube = start_kube(extra_args=["--watch-cache-sizes=pods#0"])
    kube.create_namespace("ops")
    gone = make_pod(kube, "ops", "gone-1", ["main"], labels={"v": "1"})
    token_file = agent_token(kube, tmp_path)
    gate = TcpGate(kube.port)
    gate.start()
    try:
        root = str(tmp_path / "node")
        out_path = str(tmp_path / "out.ndjson")
        w = KubeletWriter(root, seed=3)
        c_gone = add_container(w, gone, "main")
        d = start_drover(kube_config(tmp_path, root, out_path, "https://%s:%d" % (HOST, gate.port),
                                     kube.ca_file, token_file,
                                     extra="    deleted_pod_ttl: 0s\n"))
        d.wait_ready()
        out = OutputFile(out_path)
        wait_until(lambda: d.metric("drover_kube_requests_total", verb="watch") >= 1, 20,
                   what="a watch")
        # While drover cannot reach the API server, pods come and go and
        # the history it would resume from is compacted away.
        gate.cut()
        kube.delete("/api/v1/namespaces/ops/pods/gone-1", grace_seconds=0)
        born = make_pod(kube, "ops", "born-1", ["main"], labels={"v": "2"})
        for i in range(3):
            make_pod(kube, "ops", "filler-%d" % i, ["main"])
        kube.compact_etcd()
        time.sleep(1.5)
        gate.reopen()
        wait_until(lambda: d.metric("drover_kube_relists_total") >= 1, 60, what="a relist")
        # The relist reports born-1 and the fillers, and gone-1 as deleted
        # (its tombstone expires at once): 4 pods cached.
        wait_until(lambda: d.metric("drover_kube_cached_pods") == 4, 30, what="4 cached pods")
        c_born = add_container(w, born, "main")
        w.log(c_born, b"born-line")
        r = wait_record(out, "born-line")
        assert r["kubernetes"]["labels"] == {"v": "2"}, r
        w.close()
        assert d.stop() == 0
        assert "listing again" in d.log_text()
    finally:
        gate.stop()


class _KubeletHandler(http.server.BaseHTTPRequestHandler):
    body = b""
    token = ""
    requests: list = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        ok = self.headers.get("Authorization") == "Bearer " + self.token
        type(self).requests.append((self.path, ok))
        if not ok:
            self.send_response(401)
            self.end_headers()
            return
        if self.path != "/pods":
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


@pytest.mark.sanitizer
@pytest.mark.time_limit(120)
def test_kubelet_source(start_drover, tmp_path):
    """No real kubelet runs here: a local HTTPS server with token auth
    serves the recorded answer of a real one (k8s 1.35)."""
    with open(os.path.join(FIXTURES, "k8s-api", "kubelet-pods-k8s1.35.json"), "rb") as f:
        body = f.read()
    pods = json.loads(body)["items"]
    hpa = next(p for p in pods if p["metadata"]["name"] == "e2e-hpa-6cd8d99884-tggnr")
    cert, key = make_cert(tmp_path, "kubelet")
    _KubeletHandler.body = body
    _KubeletHandler.token = "kubelet-test-token"
    _KubeletHandler.requests = []
    srv = http.server.ThreadingHTTPServer((HOST, 0), _KubeletHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        token_file = str(tmp_path / "token")
        with open(token_file, "w") as f:
            f.write("kubelet-test-token\n")
        root = str(tmp_path / "node")
        out_path = str(tmp_path / "out.ndjson")
        w = KubeletWriter(root, seed=5)
        c = add_container(w, hpa, "php-apache")
        w.log(c, b"from-kubelet")
        cfg = tail_config(data_dir=str(tmp_path / "data"), paths=[root + "/containers/*.log"],
                          out=out_path, agent_extra="  node_name: datagen-1-35\n")
        cfg += ("filters:\n  - type: kubernetes\n    source: kubelet\n"
                "    kubelet:\n      url: https://%s:%d\n      ca_file: %s\n"
                "      token_file: %s\n") % (HOST, srv.server_address[1], yaml_str(cert),
                                                  yaml_str(token_file))
        path = str(tmp_path / "drover.yaml")
        with open(path, "w") as f:
            f.write(cfg)
        d = start_drover(path)
        d.wait_ready()
        out = OutputFile(out_path)
        r = wait_record(out, "from-kubelet")
        k = r["kubernetes"]
        assert k["namespace"] == "scraper" and k["pod"] == "e2e-hpa-6cd8d99884-tggnr", k
        assert k["labels"]["app"] == "hpa", k
        assert k["owner_kind"] == "Deployment" and k["owner_name"] == "e2e-hpa", k
        assert k["image"] == "docker.io/library/nginx:alpine", k
        assert k["pod_ip"] == "10.244.0.6", k
        assert "namespace_labels" not in k
        assert all(ok for _, ok in _KubeletHandler.requests), _KubeletHandler.requests
        w.close()
        assert d.stop() == 0
    finally:
        srv.shutdown()
        srv.server_close()
