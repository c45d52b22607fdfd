#!/usr/bin/env python3
"""The Kubernetes API server of the DaemonSet-like metrics benchmark (scenario a-daemonset).

The agents find the harness's targets through kubernetes_sd_configs (role pod, this node
only) instead of static targets, as a DaemonSet's agent does. The API server (etcd +
kube-apiserver from tests/e2e/kube.py) runs here, outside the agents' measured process
tree, for the whole session:

  kube-cluster.py serve DIR        start it, write DIR/api_url, DIR/ca.crt (a copy of the
                                   serving certificate), DIR/token (a ServiceAccount token
                                   bound to a ClusterRole that may list and watch pods and
                                   nodes) and DIR/node (this node's name); run until
                                   SIGTERM/SIGINT, then stop etcd and the API server.
  kube-cluster.py pods DIR SD_JSON create one Pod per harness target of SD_JSON (the
                                   harness's file_sd file) on this node, and the same pods
                                   again on another node that a node-local agent must not
                                   scrape; pods that exist are kept (every agent of a
                                   session sees the same ports).

A pod: label bench-job=<job>, annotations prometheus.io/scrape=true and
prometheus.io/path=<metrics path>, one container port (the target's port), status
podIP 127.0.0.1 and phase Running (set through the status subresource: no kubelet runs).
"""

import json
import os
import signal
import ssl
import sys
import threading
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "e2e"))

NAMESPACE = "bench"
THIS_NODE = "bench-node-a"
OTHER_NODE = "bench-node-b"
READER_RULES = [{"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}]
REQUEST_TIMEOUT = 30


def node_body(name):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}


def write_file(path, text):
    with open(path, "w") as f:
        f.write(text)


def serve(workdir):
    from kube import ADMIN_TOKEN, KubeServer, find_or_build_kube
    os.makedirs(workdir, exist_ok=True)
    bin_dir, why = find_or_build_kube()
    if not bin_dir:
        print("kube-cluster: no kube-apiserver and etcd: %s" % why, file=sys.stderr)
        return 1
    server = KubeServer(bin_dir, os.path.join(workdir, "server")).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        server.create_namespace(NAMESPACE)
        for node in (THIS_NODE, OTHER_NODE):
            server.call("POST", "/api/v1/nodes", node_body(node))
        token = server.service_account_token(NAMESPACE, "agent", READER_RULES, cluster=True)
        with open(server.ca_file) as f:
            write_file(os.path.join(workdir, "ca.crt"), f.read())
        write_file(os.path.join(workdir, "token"), token)
        write_file(os.path.join(workdir, "admin_token"), ADMIN_TOKEN)
        write_file(os.path.join(workdir, "node"), THIS_NODE)
        write_file(os.path.join(workdir, "api_url"), server.url)  # last: the ready mark
        print("kube-cluster: %s ready, node %s" % (server.url, THIS_NODE), flush=True)
        while not stop.wait(1):
            if server.apiserver.poll() is not None or server.etcd.poll() is not None:
                print("kube-cluster: etcd or kube-apiserver exited", file=sys.stderr)
                return 1
        return 0
    finally:
        for name in ("api_url",):
            try:
                os.unlink(os.path.join(workdir, name))
            except FileNotFoundError:
                pass
        server.stop()


class Api:
    """Just enough of an admin client for the pods subcommand."""

    def __init__(self, workdir):
        def read(name):
            with open(os.path.join(workdir, name)) as f:
                return f.read().strip()
        self.url = read("api_url")
        self.token = read("admin_token")
        self.ctx = ssl.create_default_context(cafile=os.path.join(workdir, "ca.crt"))

    def call(self, method, path, body, content_type="application/json", ok=(200, 201)):
        req = urllib.request.Request(self.url + path, method=method, data=json.dumps(body).encode(),
                                     headers={"Authorization": "Bearer " + self.token,
                                              "Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=REQUEST_TIMEOUT) as r:
                return r.status
        except urllib.error.HTTPError as e:
            if e.code in ok:
                return e.code
            raise SystemExit("kube-cluster: %s %s: %d %s" % (method, path, e.code, e.read()[:300]))


def pod_body(name, node, job, path, port):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"bench-job": job},
                         "annotations": {"prometheus.io/scrape": "true", "prometheus.io/path": path}},
            "spec": {"nodeName": node,
                     "containers": [{"name": "metrics", "image": "registry.example/%s:1.0" % job,
                                     "ports": [{"name": "metrics", "containerPort": port}]}]}}


def pod_status():
    return {"status": {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
                       "hostIP": "127.0.0.1",
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def targets_of(sd_file):
    """(job, metrics path, port) for every target of the harness's file_sd file."""
    with open(sd_file) as f:
        groups = json.load(f)
    for g in groups:
        for t in g["targets"]:
            yield g["labels"]["job"], g["labels"].get("__metrics_path__", "/metrics"), int(t.rsplit(":", 1)[1])


def create_pods(workdir, sd_file):
    api = Api(workdir)
    base = "/api/v1/namespaces/%s/pods" % NAMESPACE
    created = 0
    for node in (THIS_NODE, OTHER_NODE):
        for job, path, port in targets_of(sd_file):
            name = "%s-%s-%d" % (job, node, port)
            if api.call("POST", base, pod_body(name, node, job, path, port), ok=(201, 409)) == 409:
                continue
            api.call("PATCH", "%s/%s/status" % (base, name), pod_status(),
                     content_type="application/merge-patch+json")
            created += 1
    print("kube-cluster: %d pods created" % created, file=sys.stderr)
    return 0


def main(argv):
    if len(argv) == 3 and argv[1] == "serve":
        return serve(argv[2])
    if len(argv) == 4 and argv[1] == "pods":
        return create_pods(argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
