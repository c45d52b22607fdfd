"""kubernetes_sd_configs (every role: pod, node, service, endpoints, endpointslice,
ingress) against a real API server (kube-apiserver
1.34 with etcd 3.6, tests/e2e/kube.py), with Prometheus 3 beside drover as
the reference: both discover the same pods with the same job, and every
__meta_kubernetes_* label Prometheus gives a target (all mapped into the
target's labels with labelmap) must be on drover's target too, with the
same value. Also: node-local discovery (only the pods of the agent's node),
pods that get an IP, go away and come, the target's series ending when its
pod is deleted, and no LIST in steady state.

No kubelet runs: the test plays it, setting each pod's status (IP, phase,
readiness, container IDs) through the status subresource. Every pod's IP is
127.0.0.1 and its container port the test's payload server, so the
discovered targets are scraped for real.
"""

from __future__ import annotations

import json
import os
import time

from drover_e2e import HOST, OutputFile, wait_until, yaml_str
from kube import ADMIN_TOKEN, KubeServer, kube, kube_bin_dir, start_kube  # noqa: F401
from metrics_servers import Answer, Prometheus, indent, payloads, prometheus3_bin  # noqa: F401

NODE = "node-a"
READER_RULES = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
SA_USER = "system:serviceaccount:kube-system:sd-reader"


def owner(kind: str, name: str, api: str = "apps/v1") -> dict:
    return {"apiVersion": api, "kind": kind, "name": name,
            "uid": "00000000-0000-0000-0000-0000000000bb", "controller": True}


def create_pod(kube: KubeServer, ns: str, name: str, node: str, port: int, *,
               labels=None, annotations=None, controller=None) -> None:
    kube.call("POST", "/api/v1/namespaces/%s/pods" % ns, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {},
                     "ownerReferences": [controller or
                                         owner("ReplicaSet", name.rsplit("-", 1)[0] + "-7d9f")]},
        "spec": {"nodeName": node,
                 "initContainers": [{"name": "setup", "image": "registry.example/setup:1.0"}],
                 "containers": [
                     {"name": "app", "image": "registry.example/app:2.1",
                      "ports": [{"name": "metrics", "containerPort": port},
                                {"name": "dns", "containerPort": 53, "protocol": "UDP"}]},
                     {"name": "sidecar", "image": "registry.example/sidecar:0.3"}]}})


def set_running(kube: KubeServer, ns: str, name: str, ip: str = HOST) -> None:
    """What a kubelet reports once the pod runs."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def status(c: str, image: str) -> dict:
        return {"name": c, "ready": True, "restartCount": 0, "image": image,
                "imageID": image + "@sha256:" + "ab" * 32,
                "containerID": "containerd://%s-%s" % (name, c),
                "state": {"running": {"startedAt": now}}}
    body = {"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "10.0.0.7",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
        "initContainerStatuses": [dict(status("setup", "registry.example/setup:1.0"),
                                       ready=False, state={"terminated": {
                                           "exitCode": 0, "startedAt": now, "finishedAt": now}})],
        "containerStatuses": [status("app", "registry.example/app:2.1"),
                              status("sidecar", "registry.example/sidecar:0.3")]}}
    st, text = kube.request("PATCH", "/api/v1/namespaces/%s/pods/%s/status" % (ns, name), body,
                            content_type="application/merge-patch+json")
    assert st == 200, (st, text[:300])


def reader_token(kube: KubeServer, tmp_path, account: str) -> str:
    """A token that may read pods, in a file."""
    token = kube.service_account_token("kube-system", account, READER_RULES, cluster=True)
    path = str(tmp_path / account)
    with open(path, "w") as f:
        f.write(token + "\n")
    return path


def sd_job(name: str, kube: KubeServer, token_file: str, extra_sd: str = "") -> str:
    """One job as a prometheus.yml has it, every target label Prometheus
    discovers kept (labelmap). Every container port is a target, and each
    container without ports one at the pod IP: only the app's metrics port
    answers, the others are targets that are down."""
    return """- job_name: %(name)s
  scrape_interval: 1s
  scrape_timeout: 1s
  kubernetes_sd_configs:
    - role: pod
      api_server: %(url)s
      bearer_token_file: %(token)s
      tls_config: {ca_file: %(ca)s}
      namespaces: {names: [apps]}
%(extra)s  relabel_configs:
    - regex: __meta_kubernetes_(.+)
      action: labelmap
      replacement: k8s_$1
""" % {"name": name, "url": yaml_str(kube.url), "token": yaml_str(token_file),
       "ca": yaml_str(kube.ca_file), "extra": extra_sd}


def drover_config(tmp_path, jobs: str, out: str) -> str:
    cfg = (
        "agent:\n"
        "  data_dir: %s\n"
        "  node_name: %s\n"
        "  http:\n"
        "    listen: %s\n"
        "  grace_period: 5s\n"
        "  log_level: debug\n"
        "inputs:\n"
        "  - name: scrape\n"
        "    type: prometheus_scrape\n"
        "    scrape_configs:\n"
        "%s"
        "outputs:\n"
        "  - name: out\n"
        "    type: file\n"
        "    match: scrape\n"
        "    path: %s\n"
    ) % (yaml_str(str(tmp_path / "data")), NODE, yaml_str("%s:0" % HOST), indent(jobs, 6),
         yaml_str(out))
    path = str(tmp_path / "drover.yaml")
    with open(path, "w") as f:
        f.write(cfg)
    return path


def target_key(labels: dict) -> tuple:
    return (labels.get("k8s_pod_name"), labels.get("k8s_pod_container_name"),
            labels.get("k8s_pod_container_port_name", ""))


def up_targets(out: OutputFile, job: str) -> dict[tuple, dict]:
    """The labels of each target's `up` series, by (pod, container, port
    name), from the file output."""
    out.read()
    return {target_key(r["labels"]): dict(r["labels"]) for r in out.records
            if r["name"] == "up" and r["labels"].get("job") == job and not r.get("stale")}


def pods(targets: dict) -> set:
    return {k[0] for k in targets}


def test_pod_targets_match_prometheus(start_drover, kube, payloads, tmp_path):
    payloads.set("/metrics", Answer(b"# TYPE app_up gauge\napp_up 1\n"))
    port = payloads.port
    kube.create_namespace("apps")
    token_file = reader_token(kube, tmp_path, "sd-reader")
    prom_token_file = reader_token(kube, tmp_path, "prom-reader")
    labels = {"app": "web", "app.kubernetes.io/name": "web", "tier": "front-end"}
    annotations = {"prometheus.io/scrape": "true", "example.com/owner": "team-a"}
    create_pod(kube, "apps", "web-1", NODE, port, labels=labels, annotations=annotations)
    create_pod(kube, "apps", "web-2", "node-b", port, labels=labels)
    create_pod(kube, "apps", "pending-1", NODE, port, labels=labels)  # no IP: no target
    set_running(kube, "apps", "web-1")
    set_running(kube, "apps", "web-2")

    # Prometheus 3, node-local through its own field selector
    selector = "      selectors: [{role: pod, field: \"spec.nodeName=%s\"}]\n" % NODE
    prom = Prometheus(prometheus3_bin(), str(tmp_path), name="prometheus3-sd")
    with open(prom.config, "w") as f:
        f.write("global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n" +
                indent(sd_job("same", kube, prom_token_file, selector), 2))
    prom.start()
    try:
        out_path = str(tmp_path / "out.ndjson")
        jobs = (sd_job("same", kube, token_file, selector) +
                sd_job("local", kube, token_file) +
                sd_job("all", kube, token_file, "      node_local: false\n"))
        d = start_drover(drover_config(tmp_path, jobs, out_path))
        d.wait_ready()
        out = OutputFile(out_path)
        # web-1: app's two ports, sidecar and the init container
        wait_until(lambda: len(up_targets(out, "same")) == 4 and
                   pods(up_targets(out, "all")) == {"web-1", "web-2"}, 30,
                   what="the discovered targets scraped")

        def prom_targets():
            got = {}
            for r in prom.query('up{job="same"}'):
                m = dict(r["metric"])
                m.pop("__name__", None)
                got[target_key(m)] = m
            return got if len(got) >= 4 else None
        want = wait_until(prom_targets, 30, what="Prometheus to scrape the discovered targets")
        got = up_targets(out, "same")
        assert set(got) == set(want), (sorted(got), sorted(want))
        for k in want:
            assert got[k] == want[k], "%s: drover %s\nPrometheus %s" % (
                k, json.dumps(got[k], sort_keys=True, indent=1),
                json.dumps(want[k], sort_keys=True, indent=1))
        # what the labels say, in case both were wrong the same way
        t = got[("web-1", "app", "metrics")]
        assert t["instance"] == "%s:%d" % (HOST, port)
        assert t["k8s_pod_label_app_kubernetes_io_name"] == "web"
        assert t["k8s_pod_labelpresent_tier"] == "true"
        assert t["k8s_pod_annotation_prometheus_io_scrape"] == "true"
        assert t["k8s_pod_container_name"] == "app" and t["k8s_pod_container_init"] == "false"
        assert t["k8s_pod_container_id"] == "containerd://web-1-app"
        assert t["k8s_pod_controller_kind"] == "ReplicaSet"
        assert t["k8s_pod_ready"] == "true" and t["k8s_pod_phase"] == "Running"
        assert t["k8s_pod_node_name"] == NODE and t["k8s_namespace"] == "apps"
        init = got[("web-1", "setup", "")]
        assert init["k8s_pod_container_init"] == "true" and "k8s_pod_container_port_number" not in init
        assert got[("web-1", "app", "dns")]["k8s_pod_container_port_protocol"] == "UDP"

        # node-local by default: the agent's node only; node_local: false sees both
        assert pods(up_targets(out, "local")) == {"web-1"}
        assert pods(up_targets(out, "all")) == {"web-1", "web-2"}
        m = d.metrics()
        assert m.get("drover_sd_kubernetes_events_total", name="scrape", role="pod") >= 4
        # web-1 in three jobs, web-2 in one; pending-1 has no IP, so no targets
        assert m.get("drover_sd_kubernetes_objects", name="scrape", role="pod") == 4

        # a pod that gets its IP becomes a target; a deleted pod's series end
        set_running(kube, "apps", "pending-1")
        wait_until(lambda: "pending-1" in pods(up_targets(out, "local")), 30,
                   what="the pod that got an IP scraped")
        kube.delete("/api/v1/namespaces/apps/pods/web-1")

        def web1_stale():
            out.read()
            return any(r["name"] == "app_up" and r.get("stale") and
                       r["labels"].get("k8s_pod_name") == "web-1" and
                       r["labels"].get("job") == "local" for r in out.records)
        wait_until(web1_stale, 30, what="staleness markers for the deleted pod's series")

        # steady state: watches only, no LIST (the informer lists once per watch)
        lists = lambda: sum(1 for verb, _ in kube.audit_verbs(SA_USER) if verb == "list")  # noqa: E731
        before = lists()
        time.sleep(8)
        assert lists() == before, kube.audit_verbs(SA_USER)[-10:]
        assert d.stop() == 0
    finally:
        prom.stop()


NODE_READER_RULES = [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}]


def create_node(kube: KubeServer, name: str, port: int, labels: dict) -> None:
    kube.call("POST", "/api/v1/nodes", {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"providerID": "aws:///eu-west-1a/i-0%s" % name.encode().hex()}})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    cond = lambda t, s: {"type": t, "status": s, "lastHeartbeatTime": now,  # noqa: E731
                         "lastTransitionTime": now, "reason": "Test", "message": "set by the test"}
    st, text = kube.request("PATCH", "/api/v1/nodes/%s/status" % name, {"status": {
        "addresses": [{"type": "Hostname", "address": name},
                      {"type": "InternalIP", "address": HOST},
                      {"type": "InternalIP", "address": "10.0.0.8"},
                      {"type": "ExternalDNS", "address": name + ".example.com"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "conditions": [cond("Ready", "True"), cond("DiskPressure", "False")]}},
        content_type="application/merge-patch+json")
    assert st == 200, (st, text[:300])


def test_node_targets_match_prometheus(start_drover, kube, payloads, tmp_path):
    """Role node: the same targets and labels as Prometheus' (every meta
    label mapped in), and node-local by default (the agent's node alone)."""
    payloads.set("/metrics", Answer(b"kubelet_up 1\n"))
    token = kube.service_account_token("kube-system", "node-reader", NODE_READER_RULES,
                                       cluster=True)
    token_file = str(tmp_path / "node-reader")
    with open(token_file, "w") as f:
        f.write(token + "\n")
    create_node(kube, NODE, payloads.port, {"kubernetes.io/hostname": NODE, "pool": "general"})
    create_node(kube, "node-b", payloads.port, {"kubernetes.io/hostname": "node-b"})

    def job(name: str, extra: str = "") -> str:
        return """- job_name: %s
  scrape_interval: 1s
  scrape_timeout: 1s
  kubernetes_sd_configs:
    - role: node
      api_server: %s
      bearer_token_file: %s
      tls_config: {ca_file: %s}
%s  relabel_configs:
    - regex: __meta_kubernetes_(.+)
      action: labelmap
      replacement: k8s_$1
""" % (name, yaml_str(kube.url), yaml_str(token_file), yaml_str(kube.ca_file), extra)
    selector = "      selectors: [{role: node, field: \"metadata.name=%s\"}]\n" % NODE
    prom = Prometheus(prometheus3_bin(), str(tmp_path), name="prometheus3-nodes")
    with open(prom.config, "w") as f:
        f.write("global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n" +
                indent(job("nodes", selector), 2))
    prom.start()
    try:
        out_path = str(tmp_path / "out.ndjson")
        d = start_drover(drover_config(tmp_path, job("nodes", selector) + job("local") +
                                       job("all", "      node_local: false\n"), out_path))
        d.wait_ready()
        out = OutputFile(out_path)

        def ups(j):
            out.read()
            return {r["labels"]["instance"]: dict(r["labels"]) for r in out.records
                    if r["name"] == "up" and r["labels"].get("job") == j}
        wait_until(lambda: len(ups("all")) == 2 and ups("nodes"), 30,
                   what="the nodes scraped")

        def prom_ups():
            got = {r["metric"]["instance"]: {k: v for k, v in r["metric"].items()
                                             if k != "__name__"}
                   for r in prom.query('up{job="nodes"}')}
            return got or None
        want = wait_until(prom_ups, 30, what="Prometheus to scrape the node")
        got = ups("nodes")
        assert got == want, "drover %s\nPrometheus %s" % (
            json.dumps(got, sort_keys=True, indent=1), json.dumps(want, sort_keys=True, indent=1))
        t = got[NODE]
        assert t["k8s_node_address_InternalIP"] == HOST  # the first of its type
        assert t["k8s_node_condition_ready"] == "true"
        assert t["k8s_node_label_pool"] == "general"
        assert set(ups("local")) == {NODE}
        assert set(ups("all")) == {NODE, "node-b"}
        assert d.stop() == 0
    finally:
        prom.stop()


SERVICE_READER_RULES = [{"apiGroups": [""], "resources": ["services"],
                         "verbs": ["get", "list", "watch"]}]


def test_service_targets_match_prometheus(start_drover, kube, tmp_path):
    """Role service: a target per service port (ClusterIP, LoadBalancer with
    its ingress IPs, ExternalName), the same labels as Prometheus gives."""
    kube.create_namespace("apps")
    token = kube.service_account_token("kube-system", "svc-reader", SERVICE_READER_RULES,
                                       cluster=True)
    token_file = str(tmp_path / "svc-reader")
    with open(token_file, "w") as f:
        f.write(token + "\n")

    def service(name: str, spec: dict, labels=None) -> None:
        kube.call("POST", "/api/v1/namespaces/apps/services", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": labels or {},
                         "annotations": {"prometheus.io/probe": "true"}},
            "spec": spec})
    service("web", {"selector": {"app": "web"}, "ports": [
        {"name": "http", "port": 80, "targetPort": 8080},
        {"name": "metrics", "port": 9090, "protocol": "TCP"}]}, {"app": "web"})
    service("edge", {"type": "LoadBalancer", "selector": {"app": "edge"},
                     "ports": [{"port": 443, "targetPort": 8443}]})
    st, text = kube.request("PATCH", "/api/v1/namespaces/apps/services/edge/status",
                            {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"},
                                                                     {"ip": "192.0.2.11"}]}}},
                            content_type="application/merge-patch+json")
    assert st == 200, (st, text[:300])
    service("db", {"type": "ExternalName", "externalName": "db.example.com",
                   "ports": [{"port": 5432}]})

    job = """- job_name: services
  scrape_interval: 1s
  scrape_timeout: 1s
  kubernetes_sd_configs:
    - role: service
      api_server: %s
      bearer_token_file: %s
      tls_config: {ca_file: %s}
      namespaces: {names: [apps]}
  relabel_configs:
    - regex: __meta_kubernetes_(.+)
      action: labelmap
      replacement: k8s_$1
""" % (yaml_str(kube.url), yaml_str(token_file), yaml_str(kube.ca_file))
    prom = Prometheus(prometheus3_bin(), str(tmp_path), name="prometheus3-svc")
    with open(prom.config, "w") as f:
        f.write("global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n" +
                indent(job, 2))
    prom.start()
    try:
        out_path = str(tmp_path / "out.ndjson")
        d = start_drover(drover_config(tmp_path, job, out_path))
        d.wait_ready()
        out = OutputFile(out_path)

        def ups():
            out.read()
            return {r["labels"]["instance"]: dict(r["labels"]) for r in out.records
                    if r["name"] == "up" and r["labels"].get("job") == "services"}
        wait_until(lambda: len(ups()) == 4, 30, what="the 4 service ports as targets")

        def prom_ups():
            got = {r["metric"]["instance"]: {k: v for k, v in r["metric"].items()
                                             if k != "__name__"}
                   for r in prom.query('up{job="services"}')}
            return got if len(got) == 4 else None
        want = wait_until(prom_ups, 30, what="Prometheus to have the 4 targets")
        got = ups()
        assert got == want, "drover %s\nPrometheus %s" % (
            json.dumps(got, sort_keys=True, indent=1), json.dumps(want, sort_keys=True, indent=1))
        assert got["edge.apps.svc:443"]["k8s_service_loadbalancer_ip"] == "192.0.2.10,192.0.2.11"
        assert got["db.apps.svc:5432"]["k8s_service_external_name"] == "db.example.com"
        assert d.stop() == 0
    finally:
        prom.stop()


ENDPOINTS_READER_RULES = [
    {"apiGroups": [""], "resources": ["pods", "services", "endpoints", "nodes", "namespaces"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
     "verbs": ["get", "list", "watch"]}]


def endpoints_objects(kube: KubeServer, port: int) -> None:
    """A service whose endpoints are web-1 (on the agent's node), web-2 (on
    another) and an address that is no pod, as the endpoints and
    endpointslice controllers would write them (no controller manager runs
    here, so the test writes them itself)."""
    kube.call("POST", "/api/v1/namespaces/apps/services", {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "labels": {"app": "web"},
                     "annotations": {"prometheus.io/scrape": "true"}},
        "spec": {"selector": {"app": "web"}, "ports": [
            {"name": "metrics", "port": port, "targetPort": port},
            {"name": "dns", "port": 53, "protocol": "UDP"}]}})

    def ref(pod):
        return {"kind": "Pod", "namespace": "apps", "name": pod}
    kube.call("POST", "/apis/discovery.k8s.io/v1/namespaces/apps/endpointslices", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-abcde",
                     "labels": {"kubernetes.io/service-name": "web",
                                "endpointslice.kubernetes.io/managed-by": "test"}},
        "addressType": "IPv4",
        "ports": [{"name": "metrics", "port": port, "protocol": "TCP", "appProtocol": "http"}],
        "endpoints": [
            {"addresses": ["10.0.0.1"], "nodeName": NODE, "zone": "z1", "targetRef": ref("web-1"),
             "conditions": {"ready": True, "serving": True, "terminating": False}},
            {"addresses": ["10.0.0.2"], "nodeName": "node-b", "targetRef": ref("web-2"),
             "conditions": {"ready": False}},
            {"addresses": ["10.0.0.3"], "hostname": "static-1", "nodeName": NODE,
             "conditions": {"ready": True}}]})
    kube.call("POST", "/api/v1/namespaces/apps/endpoints", {
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "subsets": [{
            "addresses": [{"ip": "10.0.0.1", "nodeName": NODE, "targetRef": ref("web-1")},
                          {"ip": "10.0.0.3", "hostname": "static-1", "nodeName": NODE}],
            "notReadyAddresses": [{"ip": "10.0.0.2", "nodeName": "node-b",
                                   "targetRef": ref("web-2")}],
            "ports": [{"name": "metrics", "port": port, "protocol": "TCP"}]}]})


def endpoints_job(name: str, role: str, kube: KubeServer, token_file: str, extra: str,
                  scrape_at: str) -> str:
    """Every meta label mapped in; only what is on NODE kept (the endpoint's
    node, or for the other container ports of a pod, the pod's node), as a
    Prometheus beside each node would have to be told. Endpoint addresses
    may not be loopback ones, so each target keeps its address as instance
    and is scraped at scrape_at (the payload server) instead."""
    node_label = ("__meta_kubernetes_endpointslice_endpoint_node_name" if role == "endpointslice"
                  else "__meta_kubernetes_endpoint_node_name")
    return """- job_name: %(name)s
  scrape_interval: 1s
  scrape_timeout: 1s
  kubernetes_sd_configs:
    - role: %(role)s
      api_server: %(url)s
      bearer_token_file: %(token)s
      tls_config: {ca_file: %(ca)s}
      namespaces: {names: [apps]}
%(extra)s  relabel_configs:
    - source_labels: [%(node_label)s, __meta_kubernetes_pod_node_name]
      regex: "%(node)s;.*|;%(node)s"
      action: keep
    - source_labels: [__address__]
      target_label: instance
    - target_label: __address__
      replacement: %(at)s
    - regex: __meta_kubernetes_(.+)
      action: labelmap
      replacement: k8s_$1
""" % {"name": name, "role": role, "url": yaml_str(kube.url), "token": yaml_str(token_file),
       "ca": yaml_str(kube.ca_file), "extra": extra, "node_label": node_label, "node": NODE,
       "at": scrape_at}


def label_sets(records) -> set:
    return {tuple(sorted(r.items())) for r in records}


def check_endpoints_role(start_drover, kube, payloads, tmp_path, role: str,
                         attach: str = "") -> dict:
    """The targets of an endpoints role (with attach_metadata `attach`)
    match Prometheus 3's, by address."""
    payloads.set("/metrics", Answer(b"app_up 1\n"))
    port = payloads.port
    kube.create_namespace("apps", labels={"team": "shop", "env": "prod"})
    create_node(kube, NODE, port, {"kubernetes.io/hostname": NODE, "pool": "general"})
    create_node(kube, "node-b", port, {"kubernetes.io/hostname": "node-b"})
    token = kube.service_account_token("kube-system", "ep-reader", ENDPOINTS_READER_RULES,
                                       cluster=True)
    token_file = str(tmp_path / "ep-reader")
    with open(token_file, "w") as f:
        f.write(token + "\n")
    labels = {"app": "web", "tier": "front-end"}
    create_pod(kube, "apps", "web-1", NODE, port, labels=labels,
               annotations={"example.com/owner": "team-a"})
    create_pod(kube, "apps", "web-2", "node-b", port, labels=labels)
    set_running(kube, "apps", "web-1", ip="10.0.0.1")
    set_running(kube, "apps", "web-2", ip="10.0.0.2")
    endpoints_objects(kube, port)

    selector = "      selectors: [{role: pod, field: \"spec.nodeName=%s\"}]\n" % NODE + attach
    at = "%s:%d" % (HOST, port)
    prom = Prometheus(prometheus3_bin(), str(tmp_path), name="prometheus3-" + role)
    with open(prom.config, "w") as f:
        f.write("global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n" +
                indent(endpoints_job("same", role, kube, token_file, selector, at), 2))
    prom.start()
    try:
        out_path = str(tmp_path / "out.ndjson")
        jobs = (endpoints_job("same", role, kube, token_file, selector, at) +
                endpoints_job("local", role, kube, token_file, attach, at))
        d = start_drover(drover_config(tmp_path, jobs, out_path))
        d.wait_ready()
        out = OutputFile(out_path)

        def ups(job):
            out.read()
            return [{k: v for k, v in r["labels"].items()} for r in out.records
                    if r["name"] == "up" and r["labels"].get("job") == job]

        def prom_ups():
            got = [{k: v for k, v in r["metric"].items() if k != "__name__"}
                   for r in prom.query('up{job="same"}')]
            return got if len(got) >= 3 else None  # two endpoints, a pod port
        want = label_sets(wait_until(prom_ups, 30, what="Prometheus to scrape the endpoints"))
        wait_until(lambda: label_sets(ups("same")) == want, 30,
                   what="drover's targets to be Prometheus' (%s)" % sorted(want))
        # node-local by default: the same targets without being told
        same = {tuple(x for x in s if x[0] != "job") for s in want}
        wait_until(lambda: {tuple(x for x in s if x[0] != "job")
                            for s in label_sets(ups("local"))} == same, 30,
                   what="the node-local job to find the same targets")
        by_addr = {}
        for s in want:
            t = dict(s)
            by_addr.setdefault(t["instance"], []).append(t)
        assert "10.0.0.2:%d" % port not in by_addr  # the other node's
        assert d.stop() == 0
        return by_addr
    finally:
        prom.stop()


def test_endpointslice_targets_match_prometheus(start_drover, kube, payloads, tmp_path):
    """Role endpointslice: the same targets and labels as Prometheus 3 (the
    slice's, its service's, the pod's and the matching container's, the node's
    and namespace's attached), node-local."""
    by_addr = check_endpoints_role(start_drover, kube, payloads, tmp_path, "endpointslice",
                                   "      attach_metadata: {node: true, namespace: true}\n")
    port = payloads.port
    t = by_addr["10.0.0.1:%d" % port]
    ep = [x for x in t if "k8s_endpointslice_port" in x][0]
    assert ep["k8s_endpointslice_endpoint_zone"] == "z1"
    assert ep["k8s_endpointslice_port_app_protocol"] == "http"
    assert ep["k8s_service_label_app"] == "web"
    assert ep["k8s_pod_name"] == "web-1" and ep["k8s_pod_container_name"] == "app"
    # attach_metadata: the endpoint's node and the namespace
    assert ep["k8s_node_label_pool"] == "general" and ep["k8s_node_name"] == NODE
    assert ep["k8s_namespace_label_team"] == "shop"
    # the pod's UDP port no endpoint covers is a target of its own
    assert "10.0.0.1:53" in by_addr, sorted(by_addr)
    static = by_addr["10.0.0.3:%d" % port][0]
    assert static["k8s_endpointslice_endpoint_hostname"] == "static-1"
    assert "k8s_pod_name" not in static


def test_endpoints_targets_match_prometheus(start_drover, kube, payloads, tmp_path):
    """Role endpoints: the same targets and labels as Prometheus 3, node-local."""
    by_addr = check_endpoints_role(start_drover, kube, payloads, tmp_path, "endpoints")
    port = payloads.port
    ep = [x for x in by_addr["10.0.0.1:%d" % port] if "k8s_endpoint_ready" in x][0]
    assert ep["k8s_endpoint_ready"] == "true" and ep["k8s_endpoints_name"] == "web"
    assert ep["k8s_pod_container_port_name"] == "metrics"


INGRESS_READER_RULES = [{"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"],
                         "verbs": ["get", "list", "watch"]}]


def test_ingress_targets_match_prometheus(start_drover, kube, payloads, tmp_path):
    """Role ingress: a target per rule and path (https where a TLS host,
    wildcard or not, covers the rule), the same labels as Prometheus 3."""
    payloads.set("/metrics", Answer(b"probe_up 1\n"))
    kube.create_namespace("apps")
    token = kube.service_account_token("kube-system", "ing-reader", INGRESS_READER_RULES,
                                       cluster=True)
    token_file = str(tmp_path / "ing-reader")
    with open(token_file, "w") as f:
        f.write(token + "\n")
    backend = {"service": {"name": "web", "port": {"number": 80}}}
    kube.call("POST", "/apis/networking.k8s.io/v1/namespaces/apps/ingresses", {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop", "labels": {"team": "a"},
                     "annotations": {"example.com/probe": "true"}},
        "spec": {"ingressClassName": "nginx",
                 "tls": [{"hosts": ["*.example.com"], "secretName": "wild"}],
                 "rules": [
                     {"host": "shop.example.com", "http": {"paths": [
                         {"path": "/api", "pathType": "Prefix", "backend": backend},
                         {"path": "/", "pathType": "Prefix", "backend": backend}]}},
                     {"host": "a.b.example.com", "http": {"paths": [
                         {"path": "/x", "pathType": "Exact", "backend": backend}]}}]}})

    job = """- job_name: ingresses
  scrape_interval: 1s
  scrape_timeout: 1s
  kubernetes_sd_configs:
    - role: ingress
      api_server: %s
      bearer_token_file: %s
      tls_config: {ca_file: %s}
  relabel_configs:
    - regex: __meta_kubernetes_(.+)
      action: labelmap
      replacement: k8s_$1
    - source_labels: [__address__, __meta_kubernetes_ingress_path]
      separator: ""
      target_label: instance
    - target_label: __address__
      replacement: %s
""" % (yaml_str(kube.url), yaml_str(token_file), yaml_str(kube.ca_file),
       "%s:%d" % (HOST, payloads.port))
    prom = Prometheus(prometheus3_bin(), str(tmp_path), name="prometheus3-ing")
    with open(prom.config, "w") as f:
        f.write("global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n" +
                indent(job, 2))
    prom.start()
    try:
        out_path = str(tmp_path / "out.ndjson")
        d = start_drover(drover_config(tmp_path, job, out_path))
        d.wait_ready()
        out = OutputFile(out_path)

        def ups():
            out.read()
            return {r["labels"]["instance"]: dict(r["labels"]) for r in out.records
                    if r["name"] == "up" and r["labels"].get("job") == "ingresses"}

        def prom_ups():
            got = {r["metric"]["instance"]: {k: v for k, v in r["metric"].items()
                                             if k != "__name__"}
                   for r in prom.query('up{job="ingresses"}')}
            return got if len(got) == 3 else None
        want = wait_until(prom_ups, 30, what="Prometheus to have the 3 targets")
        wait_until(lambda: len(ups()) == 3, 30, what="drover's 3 ingress targets")
        got = ups()
        assert got == want, "drover %s\nPrometheus %s" % (
            json.dumps(got, sort_keys=True, indent=1), json.dumps(want, sort_keys=True, indent=1))
        assert got["shop.example.com/api"]["k8s_ingress_scheme"] == "https"
        assert got["a.b.example.com/x"]["k8s_ingress_scheme"] == "http"
        assert got["shop.example.com/"]["k8s_ingress_class_name"] == "nginx"
        assert d.stop() == 0
    finally:
        prom.stop()


OWNER_READER_RULES = ENDPOINTS_READER_RULES + [
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch"]}]


def test_pod_attach_metadata_matches_prometheus(start_drover, kube, payloads, tmp_path):
    """attach_metadata on the pod role (node, namespace, deployment, job,
    cronjob): the node's and namespace's labels and the owners' names on
    every target, as Prometheus 3 attaches them, and a node whose labels
    change relabels its targets."""
    payloads.set("/metrics", Answer(b"app_up 1\n"))
    kube.create_namespace("apps", labels={"team": "shop"})
    token = kube.service_account_token("kube-system", "meta-reader", OWNER_READER_RULES,
                                       cluster=True)
    token_file = str(tmp_path / "meta-reader")
    with open(token_file, "w") as f:
        f.write(token + "\n")
    create_node(kube, NODE, payloads.port, {"kubernetes.io/hostname": NODE, "pool": "general"})
    create_pod(kube, "apps", "web-1", NODE, payloads.port, labels={"app": "web"})
    set_running(kube, "apps", "web-1")
    # web-1's ReplicaSet, controlled by the Deployment web (no controller
    # manager runs: the objects are only there to be read)
    template = {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:2.1"}]}}
    kube.call("POST", "/apis/apps/v1/namespaces/apps/replicasets", {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-7d9f", "ownerReferences": [owner("Deployment", "web")]},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                 "template": template}})
    # a pod of a Job of the CronJob backup
    kube.call("POST", "/apis/batch/v1/namespaces/apps/jobs", {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "backup-29000000",
                     "ownerReferences": [owner("CronJob", "backup", "batch/v1")]},
        "spec": {"suspend": True, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "backup", "image": "registry.example/backup:1"}]}}}})
    create_pod(kube, "apps", "backup-29000000-x", NODE, payloads.port,
               controller=owner("Job", "backup-29000000", "batch/v1"))
    set_running(kube, "apps", "backup-29000000-x")
    extra = ("      selectors: [{role: pod, field: \"spec.nodeName=%s\"}]\n"
             "      attach_metadata: {node: true, namespace: true, deployment: true, job: true,"
             " cronjob: true}\n" % NODE)
    prom = Prometheus(prometheus3_bin(), str(tmp_path), name="prometheus3-attach")
    with open(prom.config, "w") as f:
        f.write("global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n" +
                indent(sd_job("same", kube, token_file, extra), 2))
    prom.start()
    try:
        out_path = str(tmp_path / "out.ndjson")
        d = start_drover(drover_config(tmp_path, sd_job("same", kube, token_file, extra),
                                       out_path))
        d.wait_ready()
        out = OutputFile(out_path)

        def prom_targets():
            got = {}
            for r in prom.query('up{job="same"}'):
                m = dict(r["metric"])
                m.pop("__name__", None)
                got[target_key(m)] = m
            return got if len(got) >= 8 else None
        want = wait_until(prom_targets, 30, what="Prometheus to scrape the pods' targets")
        wait_until(lambda: len(up_targets(out, "same")) == len(want), 30,
                   what="drover's %d targets" % len(want))
        got = up_targets(out, "same")
        for k in want:
            assert got.get(k) == want[k], "%s: drover %s\nPrometheus %s" % (
                k, json.dumps(got.get(k), sort_keys=True, indent=1),
                json.dumps(want[k], sort_keys=True, indent=1))
        t = want[("web-1", "app", "metrics")]
        assert t["k8s_node_label_pool"] == "general"
        assert t["k8s_namespace_label_team"] == "shop"
        assert t["k8s_pod_deployment_name"] == "web"
        b = want[("backup-29000000-x", "app", "metrics")]
        assert b["k8s_pod_job_name"] == "backup-29000000"
        assert b["k8s_pod_cronjob_name"] == "backup"

        # the node's labels change: the targets' follow
        st, text = kube.request("PATCH", "/api/v1/nodes/%s" % NODE,
                                {"metadata": {"labels": {"pool": "gpu"}}},
                                content_type="application/merge-patch+json")
        assert st == 200, (st, text[:300])

        def relabelled():
            out.read()
            return any(r["name"] == "up" and r["labels"].get("k8s_node_label_pool") == "gpu"
                       for r in out.records)
        wait_until(relabelled, 30, what="the targets with the node's new label")
        assert d.stop() == 0
    finally:
        prom.stop()
