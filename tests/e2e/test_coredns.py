"""The coredns input against a real CoreDNS 1.12.4 (tests/e2e/dns_servers.py) and
a real API server (tests/e2e/kube.py): the CoreDNS pods are found through
the API (kube-system, k8s-app=kube-dns), their metrics port scraped, with
the labels kube-prometheus' ServiceMonitor gives. Scope node (the default)
scrapes only the pod on the agent's node; scope cluster scrapes both.

No kubelet runs: the test writes the pods and their status itself, every
pod at 127.0.0.1 with the real CoreDNS's metrics port as its container port.
"""

from __future__ import annotations

import os
import subprocess
import urllib.request

import pytest

from dns_servers import CoreDNS, StubDNS, ask
from drover_e2e import HOST, OutputFile, wait_until, yaml_str
from kube import KubeServer, kube, kube_bin_dir, start_kube  # noqa: F401
from metrics_servers import parse_text
from test_kube_sd import NODE, set_running

COREDNS_BIN = os.environ.get("COREDNS_BIN", "")
pytestmark = pytest.mark.skipif(not COREDNS_BIN or not os.access(COREDNS_BIN, os.X_OK),
                                reason="COREDNS_BIN is not set (scripts/servers/coredns.sh)")

READER_RULES = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]


@pytest.fixture
def coredns(tmp_path):
    stub = StubDNS()
    c = CoreDNS(COREDNS_BIN, str(tmp_path / "coredns"), stub.address)
    try:
        yield c.start()
    finally:
        c.stop()
        stub.stop()


def create_coredns_pod(kube: KubeServer, name: str, node: str, metrics_port: int) -> None:
    """A CoreDNS pod as the standard manifests declare it (ports dns, dns-tcp, metrics)."""
    kube.call("POST", "/api/v1/namespaces/kube-system/pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"k8s-app": "kube-dns", "pod-template-hash": "7d9f"}},
        "spec": {"nodeName": node, "containers": [{
            "name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.12.4",
            "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                      {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                      {"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"}]}]}})
    set_running(kube, "kube-system", name)


def drover_config(tmp_path, kube: KubeServer, token_file: str, out: str) -> str:
    def input_(name: str, scope: str, job: str) -> str:
        return ("  - name: %s\n"
                "    type: coredns\n"
                "    scope: %s\n"
                "    job_name: %s\n"
                "    port: %%(port)d\n"
                "    scrape_interval: 1s\n"
                "    scrape_timeout: 1s\n"
                "    api_server: %s\n"
                "    bearer_token_file: %s\n"
                "    ca_file: %s\n") % (name, scope, job, yaml_str(kube.url),
                                        yaml_str(token_file), yaml_str(kube.ca_file))
    return (
        "agent:\n"
        "  data_dir: %s\n"
        "  node_name: %s\n"
        "  http: {listen: %s}\n"
        "inputs:\n" % (yaml_str(str(tmp_path / "data")), NODE, yaml_str("%s:0" % HOST)) +
        input_("dns", "node", "kube-dns") + input_("dns_all", "cluster", "kube-dns-all") +
        "outputs:\n"
        "  - {name: out, type: file, match: \"dns*\", path: %s}\n" % yaml_str(out))


def test_coredns_pods_scraped_node_local(start_drover, kube, coredns, tmp_path):
    # no controller manager: the default ServiceAccount pods need is made here
    kube.call("POST", "/api/v1/namespaces/kube-system/serviceaccounts", {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
        ok=(201, 409))
    token = kube.service_account_token("kube-system", "dns-reader", READER_RULES)
    token_file = str(tmp_path / "dns-reader")
    with open(token_file, "w") as f:
        f.write(token + "\n")
    create_coredns_pod(kube, "coredns-7d9f-aaaaa", NODE, coredns.metrics_port)
    create_coredns_pod(kube, "coredns-7d9f-bbbbb", "node-b", coredns.metrics_port)
    for i in range(5):  # something for coredns_dns_requests_total to count
        assert ask(coredns.port, "kubernetes.default.svc.cluster.local") is not None

    out_path = str(tmp_path / "out.ndjson")
    cfg = str(tmp_path / "drover.yaml")
    with open(cfg, "w") as f:
        f.write(drover_config(tmp_path, kube, token_file, out_path) %
                {"port": coredns.metrics_port})
    d = start_drover(cfg)
    d.wait_ready()
    out = OutputFile(out_path)

    def requests(job: str) -> dict:
        out.read()
        return {r["labels"]["pod"]: r for r in out.records
                if r["name"] == "coredns_dns_requests_total" and r["labels"].get("job") == job
                and r["labels"].get("zone") == "cluster.local."}
    got = wait_until(lambda: requests("kube-dns") or None, 30, what="CoreDNS's requests counted")
    wait_until(lambda: len(requests("kube-dns-all")) == 2, 30,
               what="scope cluster to scrape both pods")
    # scope node: only the pod on the agent's node
    assert set(got) == {"coredns-7d9f-aaaaa"}
    labels = got["coredns-7d9f-aaaaa"]["labels"]
    assert labels["namespace"] == "kube-system" and labels["node"] == NODE
    assert labels["container"] == "coredns" and labels["endpoint"] == "metrics"
    assert labels["instance"] == "%s:%d" % (HOST, coredns.metrics_port)
    # the value is CoreDNS's own: at least the 5 queries, at most what it says now
    with urllib.request.urlopen("http://%s/metrics" % coredns.metrics_address, timeout=5) as r:
        now = parse_text(r.read().decode())
    theirs = sum(v for n, ls, v in now if n == "coredns_dns_requests_total" and
                 ls.get("zone") == "cluster.local.")
    mine = sum(r["value"] for r in requests("kube-dns").values())
    assert 5 <= mine <= theirs, (mine, theirs)
    ups = [r for r in out.records if r["name"] == "up" and r["labels"].get("job") == "kube-dns"]
    assert ups and all(r["value"] == 1 for r in ups)
    assert d.stop() == 0


def test_coredns_config_errors(drover_bin, tmp_path):
    """A scope that is not one, and a namespace that is not one: refused."""
    def run(extra: str, check: bool) -> subprocess.CompletedProcess:
        cfg = str(tmp_path / "drover.yaml")
        with open(cfg, "w") as f:
            f.write("agent: {data_dir: %s}\ninputs:\n  - {name: dns, type: coredns, "
                    "api_server: \"https://127.0.0.1:1\", %s}\noutputs:\n"
                    "  - {name: out, type: null, match: dns}\n"
                    % (yaml_str(str(tmp_path / "data")), extra))
        return subprocess.run([drover_bin, "-c", cfg] + (["--check-config"] if check else []),
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
    p = run("scope: region", True)
    assert p.returncode == 1 and b'"region" is not one of: node, cluster' in p.stderr, p
    p = run("namespace: a/b", False)
    assert p.returncode != 0 and b'namespace: expected a namespace, not "a/b"' in p.stderr, p
