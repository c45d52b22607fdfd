"""Rules that namespaces own (ConfigMap drover-filters), against a real API
server: taken within seconds, reverted on deletion, a broken one refused
with an Event while the last good rules stay, one namespace's rules never
touching another's records, the environment never leaking into rules, and
a noisy namespace capped while a quiet one flows."""

from __future__ import annotations

import json
import time

import pytest

from drover_e2e import OutputFile, tail_config, wait_until, yaml_str
from kube import KubeServer, kube, kube_bin_dir, start_kube  # noqa: F401 (fixtures)
from kubelet_writer import KubeletWriter
from test_kubernetes import NODE, add_container, agent_token, make_pod, records_with, wait_record


def ns_config(tmp_path, root: str, out: str, kube: KubeServer, token_file: str,
              extra: str = "", outputs: str = "") -> str:
    cfg = tail_config(data_dir=str(tmp_path / "data"), paths=[root + "/containers/*.log"], out=out,
                      agent_extra="  node_name: %s\n" % NODE, extra=outputs)
    api = ("    api:\n      url: %s\n      ca_file: %s\n      token_file: %s\n"
           % (yaml_str(kube.url), yaml_str(kube.ca_file), yaml_str(token_file)))
    cfg += "filters:\n  - type: kubernetes\n" + api
    cfg += "  - type: namespaces\n" + api + extra
    path = str(tmp_path / "drover.yaml")
    with open(path, "w") as f:
        f.write(cfg)
    return path


def put_rules(kube: KubeServer, ns: str, rules: str) -> dict:
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "drover-filters", "namespace": ns},
            "data": {"filters.yaml": rules}}
    status, _ = kube.request("GET", "/api/v1/namespaces/%s/configmaps/drover-filters" % ns)
    if status == 200:
        return kube.call("PUT", "/api/v1/namespaces/%s/configmaps/drover-filters" % ns, body)
    return kube.call("POST", "/api/v1/namespaces/%s/configmaps" % ns, body)


def events(kube: KubeServer, ns: str) -> list[dict]:
    return kube.call("GET", "/api/v1/namespaces/%s/events" % ns)["items"]


def probe(w: KubeletWriter, c, out: OutputFile, tag: str, n: int, drop_word: str) -> bool:
    """Writes a line that the rules drop and a marker line; once the marker
    arrived, says whether the dropped line came through (False: rules work)."""
    w.log(c, b"%s-%d %s" % (tag.encode(), n, drop_word.encode()))
    w.log(c, b"%s-%d marker" % (tag.encode(), n))
    wait_record(out, "%s-%d marker" % (tag, n))
    return bool(records_with(out, "%s-%d %s" % (tag, n, drop_word)))


@pytest.mark.time_limit(300)
def test_namespace_rules_lifecycle(kube, start_drover, tmp_path, monkeypatch):
    for ns in ("team-a", "team-b"):
        kube.create_namespace(ns)
    put_rules(kube, "team-a", "- type: grep\n  exclude: [\"message NOISE\"]\n")
    pa = make_pod(kube, "team-a", "app-a", ["main"])
    pb = make_pod(kube, "team-b", "app-b", ["main"])
    token_file = agent_token(kube, tmp_path)
    root = str(tmp_path / "node")
    out_path = str(tmp_path / "out.ndjson")
    w = KubeletWriter(root, seed=11)
    ca, cb = add_container(w, pa, "main"), add_container(w, pb, "main")
    team_path, secret_path = str(tmp_path / "team.ndjson"), str(tmp_path / "secret.ndjson")
    outputs = ("  - {name: team, type: file, match: none, path: %s, offer_to_namespaces: true}\n"
               "  - {name: secret, type: file, match: none, path: %s}\n"
               % (yaml_str(team_path), yaml_str(secret_path)))
    d = start_drover(ns_config(tmp_path, root, out_path, kube, token_file, outputs=outputs),
                     env={"DROVER_SECRET": "s3cr3t"})
    d.wait_ready()
    out = OutputFile(out_path)

    # A's rules apply to A from the first records, and never to B.
    assert probe(w, ca, out, "a", 1, "NOISE") is False
    assert probe(w, cb, out, "b", 1, "NOISE") is True
    assert d.metric("drover_namespace_rules", namespace="team-a") == 1

    # A broken version: refused with its reason, an Event in A, the last
    # good rules stay; B untouched.
    broken = put_rules(kube, "team-a", "- type: grep\n  exclude: [\"message (unclosed\"]\n")
    wait_until(lambda: d.metric("drover_namespace_rules_valid", namespace="team-a") == 0, 20,
               what="the broken rules refused")
    ev = wait_until(lambda: [e for e in events(kube, "team-a") if e["reason"] == "InvalidFilters"],
                    20, what="an InvalidFilters event in team-a")[0]
    assert ev["type"] == "Warning" and ev["involvedObject"]["name"] == "drover-filters", ev
    assert "exclude" in ev["message"], ev
    # named after the version: every node's agent makes the same one Event
    assert ev["metadata"]["name"] == "drover-filters.%s.refused" % (
        broken["metadata"]["resourceVersion"]), ev
    assert not [e for e in events(kube, "team-b") if e["reason"] == "InvalidFilters"]
    assert probe(w, ca, out, "a", 2, "NOISE") is False
    assert probe(w, cb, out, "b", 2, "NOISE") is True

    # Rules that reach beyond the namespace are refused the same way.
    for bad in ("- type: grep\n  match: \"*\"\n  exclude: [\"message x\"]\n",
                "- type: kubernetes\n",
                "- type: route\n  outputs: [secret]\n",
                "- type: route\n  outputs: [nowhere]\n",
                "- type: modify\n  operations: [\"set kubernetes.namespace team-b\"]\n"):
        before = d.metric("drover_namespace_rules_refused_total", namespace="team-a")
        put_rules(kube, "team-a", bad)
        wait_until(lambda: d.metric("drover_namespace_rules_refused_total",
                                    namespace="team-a") > before, 20,
                   what="refusal of %r" % bad)
    assert probe(w, ca, out, "a", 3, "NOISE") is False

    # A good change applies within seconds; ${VAR} stays literal.
    put_rules(kube, "team-a", "- type: grep\n  exclude: [\"message CHATTER\"]\n"
                              "- type: modify\n  operations: [\"set leak ${DROVER_SECRET}\"]\n")
    deadline = time.monotonic() + 20
    n = 10
    while probe(w, ca, out, "a", n, "CHATTER"):
        assert time.monotonic() < deadline, "new rules not applied"
        n += 1
    r = records_with(out, "a-%d marker" % n)[-1]
    assert r["leak"] == "${DROVER_SECRET}", r
    assert "s3cr3t" not in json.dumps(out.records)
    applied = [e for e in events(kube, "team-a") if e["reason"] == "FiltersApplied"]
    assert applied and applied[-1]["type"] == "Normal", applied

    # Routing to an output the operator offers: A's records go there, B's do not.
    put_rules(kube, "team-a", "- type: route\n  outputs: [team]\n  when: [\"message ^to-team\"]\n")
    team = OutputFile(team_path)
    deadline = time.monotonic() + 20
    n = 0
    while True:
        n += 1
        w.log(ca, b"to-team %d" % n)
        w.log(cb, b"to-team b%d" % n)
        w.log(ca, b"a-route-marker %d" % n)
        wait_record(out, "a-route-marker %d" % n)
        team.read()
        if any(r["message"].endswith("to-team %d" % n) for r in team.records):
            break
        assert time.monotonic() < deadline, "route rules not applied"
    assert not any("to-team %d" % n in r["message"] and r["kubernetes"]["namespace"] == "team-a"
                   for r in records_with(out, "to-team"))
    assert all(r["kubernetes"]["namespace"] == "team-a" for r in team.records), team.records
    assert not OutputFile(secret_path).count()

    # Deleted: A's records are A's again, untouched.
    kube.delete("/api/v1/namespaces/team-a/configmaps/drover-filters", grace_seconds=None)
    deadline = time.monotonic() + 20
    n = 100
    while not probe(w, ca, out, "a", n, "CHATTER"):
        assert time.monotonic() < deadline, "rules not removed"
        n += 1
    assert d.metric("drover_namespace_rules", namespace="team-a") == 0
    w.close()
    assert d.stop() == 0


@pytest.mark.time_limit(300)
def test_noisy_namespace_capped_quiet_flows(kube, start_drover, tmp_path):
    for ns in ("noisy", "quiet"):
        kube.create_namespace(ns)
    pn = make_pod(kube, "noisy", "spam-1", ["main"])
    pq = make_pod(kube, "quiet", "calm-1", ["main"])
    token_file = agent_token(kube, tmp_path)
    root = str(tmp_path / "node")
    out_path = str(tmp_path / "out.ndjson")
    w = KubeletWriter(root, seed=12)
    cn, cq = add_container(w, pn, "main"), add_container(w, pq, "main")
    d = start_drover(ns_config(tmp_path, root, out_path, kube, token_file,
                               extra="    records_per_second: 100\n    allowed: [grep]\n"))
    d.wait_ready()
    out = OutputFile(out_path)
    # The noisy namespace writes 5000 lines at once; the quiet one a few.
    for i in range(5000):
        w.log(cn, b"spam %d" % i)
    t0 = time.monotonic()
    for i in range(5):
        w.log(cq, b"calm %d" % i)
    wait_record(out, "calm 4", timeout=10)
    quiet_latency = time.monotonic() - t0
    assert len(records_with(out, "calm ")) == 5
    wait_until(lambda: d.metric("drover_namespace_capped_records_total", namespace="noisy") > 0,
               10, what="noisy capped")
    time.sleep(1.5)
    spam = len(records_with(out, "spam "))
    capped = d.metric("drover_namespace_capped_records_total", namespace="noisy")
    # a one-second bucket of 100 plus what refilled meanwhile; the rest counted
    assert 100 <= spam <= 600, spam
    assert spam + capped == 5000, (spam, capped)
    assert d.metric("drover_dropped_records_total", reason="namespace_cap") == capped
    assert d.metric("drover_namespace_capped_records_total", namespace="quiet") == 0
    assert quiet_latency < 5, quiet_latency
    w.close()
    assert d.stop() == 0
