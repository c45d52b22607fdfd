"""The Helm chart (packaging/helm/drover), the manifests rendered from it
(packaging/manifests) and the systemd unit (packaging/systemd):

- `helm lint --strict` without a warning, for every values file below;
- kube-score (1.20.0) without a warning or a critical on what the chart
  renders;
- kubernetes-validate --strict against the Kubernetes 1.34 schemas, for
  every rendered object it has a schema for (the prometheus-operator's
  PodMonitor and ServiceMonitor are CRDs it does not ship: those are checked
  here against the objects they select instead);
- the drover configuration in the ConfigMap passes `drover --check-config`
  with exactly the environment the DaemonSet gives the container;
- the RBAC follows the configuration, and the values schema refuses what it
  should;
- packaging/manifests is what scripts/gen-manifests.sh renders today;
- the real kube-apiserver 1.34 (tests/e2e/kube.py) takes the manifests with
  strict field validation, and `helm install` and `helm upgrade` of the
  chart (a new configuration changes the pod template, the same one does
  not); drover, running with the rendered configuration and the token of
  the chart's ServiceAccount (its RBAC, and nothing else), enriches
  records, applies a namespace's ConfigMap rules, reports them with an
  Event and runs the scrape jobs' Kubernetes discovery, without a single
  refused request;
- the systemd unit passes `systemd-analyze verify` and its security review.

The tools: helm is $HELM_BIN, else scripts/servers/helm.sh (built once and
cached); kube-score is $KUBE_SCORE_BIN, else scripts/servers/kube-score.sh;
kubernetes-validate is the PyPI package's module; systemd-analyze is looked
up on PATH. A test that needs a tool that cannot be had is skipped with the
reason; $HELM_BIN or $KUBE_SCORE_BIN set to something that does not run is
an error.
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import pytest
import yaml

from drover_e2e import HOST, REPO, OutputFile, wait_until
from kube import ADMIN_TOKEN, KubeServer, kube, kube_bin_dir, start_kube  # noqa: F401 (fixtures)
from kubelet_writer import KubeletWriter
from test_kubernetes import NODE, add_container, make_pod, records_with, wait_record

CHART = REPO / "packaging" / "helm" / "drover"
MANIFESTS = REPO / "packaging" / "manifests"
UNIT = REPO / "packaging" / "systemd" / "drover.service"
VALUES = Path(__file__).resolve().parent / "packaging"
KUBE_VERSION = "1.34.0"  # what the chart is rendered and validated for
NAMESPACE = "drover"
BUILD_TIMEOUT = 1800

# kube-score checks that are turned off, and why:
KUBE_SCORE_IGNORED = [
    # It wants imagePullPolicy: Always everywhere. A node agent with a pinned
    # tag or digest must start again on a node that has its image while the
    # registry is unreachable (the outage it may be needed to diagnose);
    # IfNotPresent is the default, Always stays one value away.
    "container-image-pull-policy",
]
# Optional checks that do apply to a DaemonSet, turned on.
KUBE_SCORE_OPTIONAL = ["container-seccomp-profile", "container-ports-check"]
CRD_KINDS = {("monitoring.coreos.com/v1", "PodMonitor"),
             ("monitoring.coreos.com/v1", "ServiceMonitor")}

GUIDE = REPO / "docs" / "getting-started.md"


def guide_block(marker: str) -> str:
    """The ```yaml block of docs/getting-started.md whose first line is
    `# <marker>`: the guide's files are tested as a reader copies them."""
    for m in re.finditer(r"```yaml\n(.*?)```", GUIDE.read_text(), re.S):
        if m.group(1).startswith("# %s\n" % marker):
            return m.group(1)
    raise AssertionError("docs/getting-started.md has no yaml block starting # %s" % marker)


GUIDE_DIR = tempfile.mkdtemp(prefix="drover-guide-")
atexit.register(shutil.rmtree, GUIDE_DIR, True)
GUIDE_VALUES = Path(GUIDE_DIR) / "my-values.yaml"
GUIDE_VALUES.write_text(guide_block("my-values.yaml"))

# Values combinations rendered and checked: (id, helm arguments).
COMBOS = [
    ("getting-started", ["-f", str(GUIDE_VALUES)]),
    ("defaults", []),
    ("full", ["-f", str(VALUES / "full.yaml")]),
    ("grafana-cloud", ["-f", str(VALUES / "grafana-cloud.yaml")]),
    ("service-monitor", ["--set", "serviceMonitor.enabled=true"]),
    ("pod-monitor", ["--set", "podMonitor.enabled=true"]),
    ("monitors", ["-f", str(VALUES / "monitors.yaml")]),
    ("kubelet-source", ["-f", str(VALUES / "kubelet-source.yaml")]),
    ("docker", ["--set", "logs.dockerContainersPath=/var/lib/docker/containers"]),
    ("root", ["-f", str(VALUES / "root.yaml")]),
]


# ---- tools ---------------------------------------------------------------------------------------


def _cached_tool(env: str, script: str) -> tuple[Optional[str], str]:
    """$env, else what scripts/servers/<script> prints; (None, why) when it
    cannot be built here (no Go, no network to the module proxy)."""
    path = os.environ.get(env)
    if path:
        if not os.access(path, os.X_OK):
            # set on purpose (scripts/test.sh, CI) and wrong: an error, not a skip
            pytest.fail("%s=%s is not an executable file" % (env, path), pytrace=False)
        return path, ""
    try:
        p = subprocess.run(["bash", str(REPO / "scripts" / "servers" / script)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, "scripts/servers/%s took over %ds" % (script, BUILD_TIMEOUT)
    if p.returncode != 0:
        return None, "scripts/servers/%s failed:\n%s" % (
            script, p.stderr.decode("utf-8", "replace")[-2000:])
    return p.stdout.decode().strip(), ""


@pytest.fixture(scope="session")
def helm() -> str:
    path, why = _cached_tool("HELM_BIN", "helm.sh")
    if not path:
        pytest.skip("no helm: " + why)
    return path


@pytest.fixture(scope="session")
def kube_score() -> str:
    path, why = _cached_tool("KUBE_SCORE_BIN", "kube-score.sh")
    if not path:
        pytest.skip("no kube-score: " + why)
    return path


@pytest.fixture(scope="session")
def kubernetes_validate() -> list[str]:
    """The command: the PyPI package's module, run by this Python."""
    try:
        import kubernetes_validate  # noqa: F401
    except ImportError:
        pytest.skip("the kubernetes-validate package is not installed "
                    "(pip install kubernetes-validate; scripts/setup.sh does)")
    return [sys.executable, "-m", "kubernetes_validate"]


def run(args: list[str], *, input: Optional[str] = None, env: Optional[dict] = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, input=input, env=env, capture_output=True, text=True,
                          timeout=timeout)


def render(helm: str, args: list[str], release: str = "drover") -> str:
    p = run([helm, "template", release, str(CHART), "--namespace", NAMESPACE,
             "--kube-version", KUBE_VERSION] + args)
    assert p.returncode == 0, "helm template %s failed:\n%s" % (" ".join(args), p.stderr)
    return p.stdout


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def one(objs: list[dict], kind: str) -> dict:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, "%d objects of kind %s" % (len(found), kind)
    return found[0]


def drover_container(objs: list[dict]) -> dict:
    spec = one(objs, "DaemonSet")["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == "drover")


def drover_config(objs: list[dict]) -> str:
    return one(objs, "ConfigMap")["data"]["drover.yaml"]


def container_env(container: dict) -> dict:
    """The environment the kubelet would give the container, with stand-ins
    for what only a cluster knows (downward API fields, Secrets)."""
    downward = {"spec.nodeName": NODE, "status.hostIP": "10.0.0.7",
                "metadata.namespace": NAMESPACE, "status.podIP": "10.1.0.9"}
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "fieldRef" in e.get("valueFrom", {}):
            env[e["name"]] = downward[e["valueFrom"]["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in e.get("valueFrom", {}):
            env[e["name"]] = "secret-" + e["valueFrom"]["secretKeyRef"]["key"]
        else:
            raise AssertionError("an env entry the test does not know: %r" % e)
    return env


# ---- helm lint, kube-score, kubernetes-validate, --check-config ---------------------------------


@pytest.mark.parametrize("name,args", COMBOS, ids=[c[0] for c in COMBOS])
def test_helm_lint_strict(helm, name, args):
    p = run([helm, "lint", "--strict", str(CHART), "--namespace", NAMESPACE,
             "--kube-version", KUBE_VERSION] + args)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "[WARNING]" not in out and "[ERROR]" not in out, out
    assert "1 chart(s) linted, 0 chart(s) failed" in out, out


def score(kube_score: str, manifests: str, *extra: str) -> subprocess.CompletedProcess:
    args = [kube_score, "score", "-", "--kubernetes-version", "v1.34", "--output-format", "ci",
            "--exit-one-on-warning"]
    for t in KUBE_SCORE_IGNORED:
        args += ["--ignore-test", t]
    for t in KUBE_SCORE_OPTIONAL:
        args += ["--enable-optional-test", t]
    return run(args + list(extra), input=manifests)


def findings(p: subprocess.CompletedProcess) -> list[str]:
    return [line for line in p.stdout.splitlines()
            if line.startswith(("[WARNING]", "[CRITICAL]"))]


@pytest.mark.parametrize("name,args", [c for c in COMBOS if c[0] != "root"],
                         ids=[c[0] for c in COMBOS if c[0] != "root"])
def test_kube_score(helm, kube_score, name, args):
    p = score(kube_score, render(helm, args))
    assert p.returncode == 0 and not findings(p), p.stdout + p.stderr
    # kube-score looked at the workload at all
    assert "apps/v1/DaemonSet" in p.stdout, p.stdout


def test_kube_score_drover_container_user(helm, kube_score):
    """The default render carries kube-score/ignore for the user-and-group
    check, for the init container that must run as root; without that init
    container, and with the ignore annotations disregarded, the drover
    container passes the check on its own."""
    objs = docs(render(helm, []))
    ds = one(objs, "DaemonSet")
    assert ds["metadata"]["annotations"]["kube-score/ignore"] == \
        "container-security-context-user-group-id"
    init = ds["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["data-dir-owner"]
    assert init[0]["securityContext"]["capabilities"] == {"drop": ["ALL"],
                                                          "add": ["CHOWN", "FOWNER"]}
    text = render(helm, ["--set", "dataDir.fixPermissions=false"])
    assert "kube-score/ignore" not in text and "initContainers" not in text
    p = score(kube_score, text, "--disable-ignore-checks-annotations")
    assert p.returncode == 0 and not findings(p), p.stdout
    assert "container-security-context-user-group-id is ignored" not in p.stdout


def test_kube_score_flags_root(helm, kube_score):
    """Running as root (values root.yaml) is a choice kube-score reports:
    with exactly the user and group ID findings, and nothing else."""
    p = score(kube_score, render(helm, ["-f", str(VALUES / "root.yaml")]))
    assert p.returncode != 0
    got = findings(p)
    assert got == ["[CRITICAL] drover/%s apps/v1/DaemonSet: (drover) The container is running "
                   "with a low user ID" % NAMESPACE,
                   "[CRITICAL] drover/%s apps/v1/DaemonSet: (drover) The container running "
                   "with a low group ID" % NAMESPACE], p.stdout


@pytest.mark.parametrize("name,args", COMBOS, ids=[c[0] for c in COMBOS])
def test_kubernetes_validate(helm, kubernetes_validate, tmp_path, name, args):
    objs = docs(render(helm, args))
    checked = 0
    for i, o in enumerate(objs):
        if (o["apiVersion"], o["kind"]) in CRD_KINDS:
            continue  # no schema shipped; test_monitors checks them
        path = tmp_path / ("%02d-%s.yaml" % (i, o["kind"].lower()))
        path.write_text(yaml.safe_dump(o))
        p = run(kubernetes_validate + ["-k", KUBE_VERSION, "--strict", str(path)])
        assert p.returncode == 0 and "passed" in p.stdout, (o["kind"], p.stdout + p.stderr)
        checked += 1
    assert checked >= 6, checked


def test_kubernetes_validate_refuses(kubernetes_validate, tmp_path):
    """The validator really validates: an unknown field and a wrong type fail."""
    for bad in ({"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": "x"}, "automountToken": True},
                {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x"},
                 "spec": {"selector": {"matchLabels": {"a": "b"}},
                          "template": {"metadata": {"labels": {"a": "b"}},
                                       "spec": {"containers": [{"name": "c", "image": "i",
                                                                "ports": [{"containerPort": "http"}]}]}}}}):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(bad))
        p = run(kubernetes_validate + ["-k", KUBE_VERSION, "--strict", str(path)])
        assert p.returncode != 0, p.stdout


@pytest.mark.parametrize("name,args", COMBOS, ids=[c[0] for c in COMBOS])
def test_rendered_config_checks(helm, drover_bin, tmp_path, name, args):
    """The ConfigMap's configuration is valid for drover with the very
    environment the DaemonSet sets: a ${VAR} the pod would lack fails."""
    objs = docs(render(helm, args))
    config = drover_config(objs)
    path = tmp_path / "drover.yaml"
    path.write_text(config)
    container = drover_container(objs)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env.update(container_env(container))
    p = run([drover_bin, "--check-config", "-c", str(path)], env=env)
    assert p.returncode == 0, "config:\n%s\n%s" % (config, p.stdout + p.stderr)

    # What the configuration uses is mounted where it expects it.
    conf = yaml.safe_load(config)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert not mounts[conf["agent"]["data_dir"]].get("readOnly")
    assert container["args"] == ["-c", "/etc/drover/drover.yaml"]
    assert mounts["/etc/drover"]["readOnly"]
    for pattern in conf["inputs"][0]["paths"]:
        assert any(pattern.startswith(m + "/") and mounts[m].get("readOnly") for m in mounts), \
            pattern
    port = container["ports"][0]
    assert conf["agent"]["http"]["listen"] == "0.0.0.0:%d" % port["containerPort"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}


def test_rendered_config_needs_its_env(helm, drover_bin, tmp_path):
    """The previous test can fail: the full configuration without the
    environment the DaemonSet gives it is refused, naming each variable."""
    objs = docs(render(helm, ["-f", str(VALUES / "full.yaml")]))
    path = tmp_path / "drover.yaml"
    path.write_text(drover_config(objs))
    p = run([drover_bin, "--check-config", "-c", str(path)],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert p.returncode == 1
    for var in ("NODE_NAME", "LOKI_USERNAME", "LOKI_PASSWORD"):
        assert "environment variable %s is not set" % var in p.stdout + p.stderr, p.stderr


def test_full_values_render(helm):
    """Loki with basic auth from a Secret, remote write signed with SigV4
    (IRSA on the ServiceAccount), namespace rules with quotas and an offer."""
    objs = docs(render(helm, ["-f", str(VALUES / "full.yaml")]))
    conf = yaml.safe_load(drover_config(objs))
    outs = {o["name"]: o for o in conf["outputs"]}
    assert outs["loki"]["basic_auth"] == {"username": "${LOKI_USERNAME}",
                                          "password": "${LOKI_PASSWORD}"}
    assert outs["loki"]["static_labels"] == ["cluster=prod-eu", "env=prod"]
    assert outs["remote-write"]["sigv4"] == {"region": "eu-west-1"}
    assert outs["remote-write"]["match"] == ["kubelet", "metrics"]
    assert outs["remote-write"]["external_labels"] == {"cluster": "prod-eu", "team": "platform"}
    assert outs["team-loki"]["offer_to_namespaces"] is True and outs["team-loki"]["match"] == "none"
    ns = next(f for f in conf["filters"] if f["type"] == "namespaces")
    assert (ns["records_per_second"], ns["bytes_per_second"], ns["max_filters"]) == \
        (2000, "4MiB", 16)
    assert [f["type"] for f in conf["filters"]] == ["kubernetes", "grep", "namespaces"]
    env = container_env(drover_container(objs))
    assert env["AWS_REGION"] == "eu-west-1"
    assert env["LOKI_PASSWORD"] == "secret-password"
    sa = one(objs, "ServiceAccount")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(":role/drover-amp")
    # no secret value in the ConfigMap, ever
    assert "secret-" not in drover_config(objs)


def rbac_rules(objs: list[dict]) -> dict:
    """{(apiGroup, resource): sorted verbs} of the ClusterRole."""
    got = {}
    for r in one(objs, "ClusterRole")["rules"] or []:
        for g in r["apiGroups"]:
            for res in r["resources"]:
                got.setdefault((g, res), set()).update(r["verbs"])
    return {k: sorted(v) for k, v in got.items()}


READ = ["get", "list", "watch"]


def test_rbac_follows_config(helm):
    assert rbac_rules(docs(render(helm, []))) == {("", "pods"): READ, ("", "namespaces"): READ}
    assert rbac_rules(docs(render(helm, ["--set", "config.kubernetes.namespaceLabels=false"]))) \
        == {("", "pods"): READ}
    assert rbac_rules(docs(render(helm, ["-f", str(VALUES / "kubelet-source.yaml")]))) == {
        ("", "nodes/proxy"): ["get"]}
    assert rbac_rules(docs(render(helm, ["-f", str(VALUES / "full.yaml")]))) == {
        ("", "pods"): READ, ("", "namespaces"): READ, ("", "services"): READ,
        ("", "configmaps"): READ, ("", "events"): ["create"],
        ("", "nodes/metrics"): ["get"], ("", "nodes/stats"): ["get"],
        ("apps", "replicasets"): READ, ("discovery.k8s.io", "endpointslices"): READ}
    assert rbac_rules(docs(render(helm, [
        "--set", "config.namespaceFilters.enabled=true",
        "--set", "config.namespaceFilters.events=false"]))) == {
        ("", "pods"): READ, ("", "namespaces"): READ, ("", "configmaps"): READ}
    objs = docs(render(helm, ["--set", "rbac.create=false"]))
    assert not [o for o in objs if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def test_monitors(helm):
    """The PodMonitor and the ServiceMonitor (CRDs: no schema to validate
    against) select what the chart runs, on the port it names."""
    objs = docs(render(helm, ["-f", str(VALUES / "monitors.yaml")]))
    pod = one(objs, "DaemonSet")["spec"]["template"]
    port = drover_container(objs)["ports"][0]["name"]
    pm, sm, svc = one(objs, "PodMonitor"), one(objs, "ServiceMonitor"), one(objs, "Service")
    for mon in (pm, sm):
        assert mon["apiVersion"] == "monitoring.coreos.com/v1"
        assert mon["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert mon["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert pm["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert [e["port"] for e in pm["spec"]["podMetricsEndpoints"]] == [port]
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert [(e["port"], e["path"], e["interval"]) for e in sm["spec"]["endpoints"]] == \
        [(svc["spec"]["ports"][0]["name"], "/metrics", "15s")]
    assert svc["spec"]["ports"][0]["targetPort"] == port
    # off by default, and the Service with them
    kinds = {o["kind"] for o in docs(render(helm, []))}
    assert not kinds & {"PodMonitor", "ServiceMonitor", "Service"}


def test_security_defaults(helm):
    objs = docs(render(helm, []))
    ds = one(objs, "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    psc = spec["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] >= 10000 and psc["runAsGroup"] >= 10000
    assert psc["supplementalGroups"] == [0]  # the kubelet's log files: root:root 0640
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = drover_container(objs)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert not spec.get("hostNetwork") and not spec.get("hostPID")
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["varlogpods"]["hostPath"]["path"] == "/var/log/pods"
    assert vols["varlogcontainers"]["hostPath"]["path"] == "/var/log/containers"
    assert vols["data"]["hostPath"] == {"path": "/var/lib/drover", "type": "DirectoryOrCreate"}
    res = drover_container(objs)["resources"]
    assert {"cpu", "memory"} <= res["requests"].keys() and {"cpu", "memory"} <= res["limits"].keys()
    init = spec["initContainers"][0]
    assert init["command"][-1].split() == [
        "chown", "-R", "%d:%d" % (psc["runAsUser"], psc["runAsGroup"]), "/var/lib/drover",
        "&&", "chmod", "0700", "/var/lib/drover"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
           for e in drover_container(objs)["env"] if "fieldRef" in e.get("valueFrom", {})}
    assert env == {"NODE_NAME": "spec.nodeName", "NODE_IP": "status.hostIP"}
    assert "dockercontainers" not in vols
    docker = one(docs(render(helm, ["--set", "logs.dockerContainersPath=/var/lib/docker/containers"])),
                 "DaemonSet")["spec"]["template"]["spec"]
    assert {"name": "dockercontainers", "hostPath": {"path": "/var/lib/docker/containers",
                                                     "type": "Directory"}} in docker["volumes"]
    assert {"name": "dockercontainers", "mountPath": "/var/lib/docker/containers",
            "readOnly": True} in docker["containers"][0]["volumeMounts"]
    # running as root: no init container, nothing else changes
    root = docs(render(helm, ["-f", str(VALUES / "root.yaml")]))
    rspec = one(root, "DaemonSet")["spec"]["template"]["spec"]
    assert "initContainers" not in rspec and rspec["securityContext"]["runAsUser"] == 0
    assert drover_container(root)["securityContext"] == sc


def test_checksum_rolls_pods(helm):
    def checksum(args):
        ds = one(docs(render(helm, args)), "DaemonSet")
        return ds["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    a = checksum([])
    assert a == checksum([]) and re.fullmatch(r"[0-9a-f]{64}", a)
    assert checksum(["--set", "config.logLevel=debug"]) != a
    # a value that does not change the configuration does not roll the pods
    assert checksum(["--set", "podLabels.team=platform"]) == a


@pytest.mark.parametrize("args,message", [
    (["--set", "config.loki.urll=http://x"], "additional properties 'urll' not allowed"),
    (["--set", "config.logLevel=verbose"], "logLevel"),
    (["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
    (["--set", "config.namespaceFilters.allowed={grep,tail}"], "allowed"),
    (["--set", "config.remoteWrite.enabled=true"], "config.remoteWrite.url is required"),
    (["--set", "config.remoteWrite.enabled=true,config.remoteWrite.url=http://x"],
     "no metrics to send"),
    (["--set", "config.loki.basicAuth.secretName=a,config.loki.bearerToken.secretName=b"],
     "set only one of"),
    (["--set", "config.loki.enabled=false"], "no output"),
], ids=["unknown-key", "bad-enum", "bad-pull-policy", "not-allowed-filter", "rw-no-url",
        "rw-no-metrics", "two-auths", "no-output"])
def test_values_refused(helm, args, message):
    p = run([helm, "template", "drover", str(CHART), "--kube-version", KUBE_VERSION] + args)
    assert p.returncode != 0 and message in p.stderr, p.stderr


def test_manifests_up_to_date(helm):
    p = run(["bash", str(REPO / "scripts" / "gen-manifests.sh"), "--check"],
            env=dict(os.environ, HELM_BIN=helm))
    assert p.returncode == 0, p.stdout + p.stderr
    assert sorted(f.name for f in MANIFESTS.iterdir()) == ["00-namespace.yaml", "drover.yaml"]
    ns = yaml.safe_load((MANIFESTS / "00-namespace.yaml").read_text())
    # hostPath volumes are beyond the baseline Pod Security Standard
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert docs((MANIFESTS / "drover.yaml").read_text()) == docs(render(helm, []))


def test_chart_readme_lists_every_value():
    """packaging/helm/drover/README.md has a row for every value, or for a
    map holding it, with the default values.yaml gives."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = {}
    for line in (CHART / "README.md").read_text().splitlines():
        m = re.match(r"^\| `([^`]+)` \| `(.*)` \| .* \|$", line)
        if m:
            rows[m.group(1)] = json.loads(m.group(2))

    def get(path: str):
        x = values
        for k in path.split("."):
            x = x[k]
        return x

    def leaves(d: dict, prefix: str = ""):
        for k, x in d.items():
            if isinstance(x, dict) and x:
                yield from leaves(x, prefix + k + ".")
            else:
                yield prefix + k

    for row, default in rows.items():
        assert get(row) == default, row
    for leaf in leaves(values):
        parts = leaf.split(".")
        covering = [".".join(parts[:i]) for i in range(len(parts), 0, -1)
                    if ".".join(parts[:i]) in rows]
        assert covering, "README.md has no row for %s" % leaf


# ---- the real API server --------------------------------------------------------------------------


def api_path(o: dict) -> str:
    group_version = o["apiVersion"]
    base = "/api/v1" if group_version == "v1" else "/apis/" + group_version
    plural = {"Namespace": "namespaces", "ServiceAccount": "serviceaccounts",
              "ConfigMap": "configmaps", "Service": "services", "DaemonSet": "daemonsets",
              "NetworkPolicy": "networkpolicies", "ClusterRole": "clusterroles",
              "ClusterRoleBinding": "clusterrolebindings"}[o["kind"]]
    ns = o["metadata"].get("namespace")
    return "%s/namespaces/%s/%s" % (base, ns, plural) if ns else "%s/%s" % (base, plural)


def create_all(kube: KubeServer, objs: list[dict]) -> list[str]:
    """Creates every object with strict field validation (an unknown or
    duplicate field is an error); returns "Kind/name" of each."""
    made = []
    for o in objs:
        kube.call("POST", api_path(o), o, params={"fieldValidation": "Strict"})
        made.append("%s/%s" % (o["kind"], o["metadata"]["name"]))
    return made


def can(kube: KubeServer, user: str, verb: str, resource: str, group: str = "",
        namespace: str = "", subresource: str = "") -> bool:
    r = kube.call("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": ["system:serviceaccounts",
                                           "system:serviceaccounts:" + NAMESPACE,
                                           "system:authenticated"],
                 "resourceAttributes": {"verb": verb, "resource": resource, "group": group,
                                        "namespace": namespace, "subresource": subresource}}})
    return r["status"].get("allowed", False)


def helm_client_env(kube: KubeServer, tmp_path) -> dict:
    """helm's environment for this API server: a kubeconfig with the admin
    token, and helm's own cache, configuration and data under tmp_path."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": kube.url,
                                                  "certificate-authority": kube.ca_file}}],
        "users": [{"name": "admin", "user": {"token": ADMIN_TOKEN}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}]}))
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(tmp_path / "helm" / var.lower())
    return env


def run_config(conf: dict, *, tmp_path, root: str, out: str, kube: KubeServer,
               token_file: str) -> str:
    """The rendered configuration as this test runs it: the node's paths,
    data_dir and port moved into tmp_path, the API server's address given
    (there is no in-cluster address outside a pod), the kubelet input (no
    kubelet here) left out and the remote backends replaced by a file
    output. The filters, their quotas, the scrape jobs and every other
    option stay as rendered."""
    conf = copy.deepcopy(conf)
    conf["agent"]["data_dir"] = str(tmp_path / "data")
    conf["agent"]["http"]["listen"] = "%s:0" % HOST
    conf["agent"]["log_level"] = "debug"
    inputs = {i["name"]: i for i in conf["inputs"]}
    pods, metrics = inputs["pods"], inputs["metrics"]
    assert pods["paths"] == ["/var/log/containers/*.log"]
    pods["paths"] = [root + "/containers/*.log"]
    conf["inputs"] = [pods, metrics]
    api = {"url": kube.url, "ca_file": kube.ca_file, "token_file": token_file}
    for f in conf["filters"]:
        if f["type"] in ("kubernetes", "namespaces"):
            f["api"] = dict(api)  # a copy each: drover's YAML takes no aliases
    for job in metrics["scrape_configs"]:
        for sd in job.get("kubernetes_sd_configs", []):
            sd.update(api_server=kube.url, bearer_token_file=token_file,
                      tls_config={"ca_file": kube.ca_file})
    conf["outputs"] = [{"name": "out", "type": "file", "match": ["pods", "metrics"],
                        "path": out}]
    path = tmp_path / "drover.yaml"
    path.write_text(yaml.safe_dump(conf))
    return str(path)


@pytest.mark.time_limit(300)
def test_on_api_server(helm, kube, start_drover, tmp_path):
    # The plain manifests, as `kubectl apply -f packaging/manifests/` would.
    plain = []
    for f in sorted(MANIFESTS.glob("*.yaml")):
        plain += docs(f.read_text())
    made = create_all(kube, plain)
    assert made == ["Namespace/drover", "NetworkPolicy/drover", "ServiceAccount/drover",
                    "ConfigMap/drover", "ClusterRole/drover", "ClusterRoleBinding/drover",
                    "DaemonSet/drover"], made
    ds = kube.call("GET", "/apis/apps/v1/namespaces/%s/daemonsets/drover" % NAMESPACE)
    assert ds["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True

    # Everything on, installed by helm itself as a second release beside it
    # (with a Service; the monitors are CRDs this API server does not have).
    helm_env = helm_client_env(kube, tmp_path)
    full_args = ["-f", str(VALUES / "full.yaml"), "--set", "service.enabled=true"]
    p = run([helm, "install", "drover-full", str(CHART), "--namespace", NAMESPACE] + full_args,
            env=helm_env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "STATUS: deployed" in p.stdout and "ConfigMap named\ndrover-filters" in p.stdout, p.stdout
    full = docs(render(helm, full_args, release="drover-full"))
    for o in full:
        got = kube.call("GET", api_path(o) + "/" + o["metadata"]["name"])
        assert got["metadata"]["labels"]["app.kubernetes.io/instance"] == "drover-full", got
    ds_path = "/apis/apps/v1/namespaces/%s/daemonsets/drover-full" % NAMESPACE

    def template_checksum() -> str:
        ds = kube.call("GET", ds_path)
        return ds["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    # helm upgrade with another configuration changes the pod template: the
    # DaemonSet controller rolls the pods.
    before = template_checksum()
    p = run([helm, "upgrade", "drover-full", str(CHART), "--namespace", NAMESPACE] + full_args +
            ["--set", "config.logLevel=debug"], env=helm_env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert template_checksum() != before
    cm = kube.call("GET", "/api/v1/namespaces/%s/configmaps/drover-full" % NAMESPACE)
    assert "log_level: debug" in cm["data"]["drover.yaml"]
    p = run([helm, "upgrade", "drover-full", str(CHART), "--namespace", NAMESPACE] + full_args,
            env=helm_env)
    assert p.returncode == 0 and template_checksum() == before, p.stdout + p.stderr

    # What the chart's RBAC lets the ServiceAccount do, and not do.
    user = "system:serviceaccount:%s:drover-full" % NAMESPACE
    assert can(kube, user, "watch", "pods") and can(kube, user, "list", "configmaps")
    assert can(kube, user, "create", "events", namespace="shop")
    assert can(kube, user, "get", "nodes", subresource="metrics")
    for verb, res, group, sub in (("get", "secrets", "", ""), ("list", "secrets", "", ""),
                                  ("patch", "events", "", ""), ("create", "pods", "", ""),
                                  ("update", "configmaps", "", ""), ("get", "nodes", "", "proxy"),
                                  ("list", "nodes", "", ""), ("list", "deployments", "apps", "")):
        assert not can(kube, user, verb, res, group, subresource=sub), (verb, res, sub)
    plain_user = "system:serviceaccount:%s:drover" % NAMESPACE
    assert can(kube, plain_user, "list", "namespaces")
    assert not can(kube, plain_user, "list", "configmaps")  # namespace rules are off by default

    # drover with the rendered configuration and the chart's ServiceAccount token.
    tr = kube.call("POST", "/api/v1/namespaces/%s/serviceaccounts/drover-full/token" % NAMESPACE,
                   {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                    "spec": {"expirationSeconds": 3600}})
    token_file = tmp_path / "token"
    token_file.write_text(tr["status"]["token"] + "\n")

    kube.create_namespace("shop", labels={"team": "shop"})
    web = make_pod(kube, "shop", "web-1", ["app"], labels={"app": "web"},
                   annotations={"example.com/team": "checkout"})
    # the namespace's ConfigMap of docs/getting-started.md, as its reader applies it
    guide_cm = yaml.safe_load(guide_block("shop-filters.yaml"))
    assert guide_cm["metadata"] == {"name": "drover-filters", "namespace": "shop"}, guide_cm
    kube.call("POST", "/api/v1/namespaces/shop/configmaps", guide_cm)

    root = str(tmp_path / "node")
    out_path = str(tmp_path / "out.ndjson")
    w = KubeletWriter(root, seed=3)
    c = add_container(w, web, "app")
    w.log(c, b"DEBUG dropped by the namespace's rules")
    w.log(c, b"GET /healthz dropped by the cluster's grep")
    w.log(c, b"hello from shop")
    w.log(c, b'{"msg":"order placed","order":42}')
    conf = yaml.safe_load(drover_config(full))
    d = start_drover(run_config(conf, tmp_path=tmp_path, root=root, out=out_path, kube=kube,
                                token_file=str(token_file)),
                     env={"NODE_NAME": NODE})
    d.wait_ready(timeout=30)
    out = OutputFile(out_path)

    r = wait_record(out, "hello from shop")
    k = r["kubernetes"]
    assert (k["namespace"], k["pod"], k["node"]) == ("shop", "web-1", NODE), k
    assert k["labels"] == {"app": "web"} and k["annotations"] == {"example.com/team": "checkout"}
    assert k["namespace_labels"]["team"] == "shop", k
    placed = wait_record(out, "order placed")
    assert placed["message"] == "order placed" and placed["order"] == 42, placed
    w.log(c, b"marker after")
    wait_record(out, "marker after")
    assert not records_with(out, "DEBUG") and not records_with(out, "/healthz")

    applied = wait_until(lambda: [e for e in kube.call("GET", "/api/v1/namespaces/shop/events")
                                  ["items"] if e["reason"] == "FiltersApplied"], 20,
                         what="a FiltersApplied event in shop")
    assert applied[0]["involvedObject"]["name"] == "drover-filters"

    # The scrape jobs' discovery watches what the ClusterRole allows for
    # their roles and attach_metadata: this node's pods, the ReplicaSets
    # (deployment), the EndpointSlices and Services (endpointslice).
    def audited() -> list[tuple[int, str, str]]:
        codes = []
        with open(kube.audit_log) as f:
            for line in f:
                ev = json.loads(line)
                # a watch under way has started its response, not completed it
                if ev.get("stage") in ("ResponseStarted", "ResponseComplete") and \
                        ev["user"]["username"] == user:
                    codes.append((ev["responseStatus"]["code"], ev["verb"], ev["requestURI"]))
        return codes

    def watched(prefix: str) -> bool:
        return any(verb == "watch" and uri.startswith(prefix) for _, verb, uri in audited())

    for prefix in ("/api/v1/pods?", "/api/v1/namespaces?", "/api/v1/configmaps?",
                   "/apis/apps/v1/replicasets?", "/apis/discovery.k8s.io/v1/endpointslices?",
                   "/api/v1/services?"):
        wait_until(lambda: watched(prefix), 20, what="a watch on " + prefix)
    pod_watches = [uri for _, verb, uri in audited()
                   if verb == "watch" and uri.startswith("/api/v1/pods?")]
    assert all("spec.nodeName%3D" + NODE in uri for uri in pod_watches), pod_watches

    # Not one request of the ServiceAccount was refused.
    codes = audited()
    assert not [x for x in codes if x[0] >= 400 and x[0] != 410], codes
    assert d.stop() == 0


# ---- systemd --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if not path:
        pytest.skip("systemd-analyze is not on PATH (Debian: apt-get install systemd)")
    return path


def installed_unit(tmp_path, drover_bin: str) -> Path:
    """The unit as installed, with drover where this checkout built it
    (verify checks that the executables exist)."""
    text = UNIT.read_text()
    assert "\nExecStartPre=/usr/local/bin/drover --check-config " in text
    assert "\nExecStart=/usr/local/bin/drover -c " in text
    path = tmp_path / "drover.service"
    path.write_text(text.replace("/usr/local/bin/drover", drover_bin))
    return path


def test_systemd_unit_verifies(systemd_analyze, drover_bin, tmp_path):
    unit = installed_unit(tmp_path, drover_bin)
    p = run([systemd_analyze, "verify", str(unit)])
    # verify exits 0 on unknown keys and bad values too: it must say nothing
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), p.stderr
    bad = tmp_path / "bad.service"
    bad.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=strictest"))
    p = run([systemd_analyze, "verify", str(bad)])
    assert "strictest" in p.stderr, p.stderr


def test_systemd_unit_hardening(systemd_analyze, drover_bin, tmp_path):
    unit = installed_unit(tmp_path, drover_bin)
    p = run([systemd_analyze, "security", "--offline=true", str(unit)])
    m = re.search(r"Overall exposure level for drover\.service: ([0-9.]+)", p.stdout)
    assert m, p.stdout + p.stderr
    assert float(m.group(1)) <= 2.0, p.stdout
    keys = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            keys.setdefault(k, []).append(v)
    assert keys["ProtectSystem"] == ["strict"] and keys["DynamicUser"] == ["yes"]
    assert keys["StateDirectory"] == ["drover"] and keys["ReadOnlyPaths"] == ["/var/log"]
    assert keys["Restart"] == ["on-failure"] and keys["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert keys["Environment"] == ["DROVER_CONFIG=/etc/drover/conf.d"]
    assert keys["CapabilityBoundingSet"] == [""]
