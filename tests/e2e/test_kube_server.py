"""The Kubernetes API server fixture itself (tests/e2e/kube.py): it starts,
stores pods and namespaces, filters by node, enforces RBAC on ServiceAccount
tokens, hands out the 410 "Expired" an old watch gets, and logs requests by
verb for the tests that count LISTs."""

import json
import ssl
import http.client
import time

import pytest

from kube import KubeServer, KubeError, kube, kube_bin_dir, start_kube  # noqa: F401 (fixtures)

# The least privilege drover's DaemonSet will get: metadata and namespace filters.
AGENT_RULES = [
    {"apiGroups": [""], "resources": ["pods", "namespaces", "configmaps"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]


@pytest.mark.time_limit(240)
def test_kube_server_basics(kube: KubeServer):
    version = kube.call("GET", "/version")
    assert version["gitVersion"] == "v1.34.4", version
    kube.create_namespace("shop", labels={"team": "shop"})
    kube.create_pod("shop", "web-1", "node-a", ["app", "sidecar"], labels={"app": "web"})
    kube.create_pod("shop", "web-2", "node-b", ["app"])
    on_a = kube.call("GET", "/api/v1/pods", params={"fieldSelector": "spec.nodeName=node-a"})
    assert [p["metadata"]["name"] for p in on_a["items"]] == ["web-1"]
    assert on_a["metadata"]["resourceVersion"]

    token = kube.service_account_token("kube-system", "drover", AGENT_RULES, cluster=True)
    pods = kube.call("GET", "/api/v1/namespaces/shop/pods", token=token)
    assert len(pods["items"]) == 2
    # outside the role: refused
    with pytest.raises(KubeError) as e:
        kube.call("GET", "/api/v1/namespaces/shop/secrets", token=token)
    assert e.value.status == 403
    with pytest.raises(KubeError) as e:
        kube.call("DELETE", "/api/v1/namespaces/shop/pods/web-1", token=token)
    assert e.value.status == 403
    # requests of the ServiceAccount are in the audit log, by verb
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        verbs = kube.audit_verbs("serviceaccount:kube-system:drover")
        if ("list", "/api/v1/namespaces/shop/pods") in verbs:
            break
        time.sleep(0.2)
    assert ("list", "/api/v1/namespaces/shop/pods") in verbs, verbs


@pytest.mark.time_limit(240)
def test_kube_server_watch_and_expired(start_kube):
    # Pods without a watch cache: their watches are served by etcd, so a
    # compaction expires old resourceVersions at once (with the cache, only
    # once enough newer events have pushed them out of its window).
    kube = start_kube(extra_args=["--watch-cache-sizes=pods#0"])
    kube.create_namespace("ops")
    rv = kube.call("GET", "/api/v1/namespaces/ops/pods")["metadata"]["resourceVersion"]
    kube.create_pod("ops", "job-1", "node-a", ["main"])
    # a watch from the list's resourceVersion sees the pod being added
    ctx = ssl.create_default_context(cafile=kube.ca_file)
    conn = http.client.HTTPSConnection("127.0.0.1", kube.port, context=ctx, timeout=10)
    conn.request("GET", "/api/v1/namespaces/ops/pods?watch=1&resourceVersion=%s"
                 "&allowWatchBookmarks=true&timeoutSeconds=5" % rv,
                 headers={"Authorization": "Bearer drover-test-admin-token"})
    r = conn.getresponse()
    assert r.status == 200
    ev = json.loads(r.readline())
    assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "job-1", ev
    conn.close()
    # history compacted past a resourceVersion: a watch from it gets HTTP 200,
    # then an ERROR event with code 410 (or, depending on where it is served, 410)
    for i in range(3):
        kube.create_pod("ops", "job-%d" % (i + 2), "node-a", ["main"])
    kube.compact_etcd()
    conn = http.client.HTTPSConnection("127.0.0.1", kube.port, context=ctx, timeout=10)
    conn.request("GET", "/api/v1/namespaces/ops/pods?watch=1&resourceVersion=%s&timeoutSeconds=5" % rv,
                 headers={"Authorization": "Bearer drover-test-admin-token"})
    r = conn.getresponse()
    if r.status == 200:
        ev = json.loads(r.readline())
        assert ev["type"] == "ERROR" and ev["object"]["code"] == 410, ev
    else:
        assert r.status == 410, (r.status, r.read()[:300])
    conn.close()
