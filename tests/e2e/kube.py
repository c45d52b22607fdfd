"""A real Kubernetes API server for drover's end-to-end tests: etcd 3.6 and
kube-apiserver 1.34 on 127.0.0.1 (see ../shared/SERVERS.md, "Kubernetes API
server and etcd"). The binaries are in $KUBE_BIN_DIR, else in the directory
scripts/servers/kube.sh prints (built once, cached outside the checkout).

No controller manager or kubelet runs: objects are stored and watched, pods
with spec.nodeName stay Pending, and the test plays the rest. Authentication
is by static tokens (an admin in system:masters) and by ServiceAccount tokens
from the TokenRequest API; authorization is RBAC, so a token bound to a Role
gets exactly what the Role grants.

Fixtures (import them into a test module: `from kube import kube`):

  kube_bin_dir  session: the directory with kube-apiserver and etcd
  kube          a started, ready KubeServer; stopped at the end of the test
  start_kube    start_kube(extra_args=[...]) -> KubeServer, for other server flags
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.parse
from typing import Any, Optional

import pytest

from drover_e2e import HOST, REPO, free_port

KUBE_VERSION = "1.34.4"
KUBE_SCRIPT = REPO / "scripts" / "servers" / "kube.sh"
KUBE_BUILD_TIMEOUT = 2400  # a cold build takes about 10 minutes on 2 cores
ADMIN_TOKEN = "drover-test-admin-token"


def find_or_build_kube() -> tuple[Optional[str], str]:
    """(directory, "") or (None, why)."""
    env = os.environ.get("KUBE_BIN_DIR")
    if env:
        for b in ("kube-apiserver", "etcd"):
            if not os.access(os.path.join(env, b), os.X_OK):
                return None, "KUBE_BIN_DIR=%s has no executable %s" % (env, b)
        return env, ""
    try:
        p = subprocess.run(["bash", str(KUBE_SCRIPT)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=KUBE_BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, "scripts/servers/kube.sh took over %ds" % KUBE_BUILD_TIMEOUT
    if p.returncode != 0:
        return None, "scripts/servers/kube.sh failed:\n" + p.stderr.decode("utf-8", "replace")[-4000:]
    return p.stdout.decode().strip(), ""


class KubeError(AssertionError):
    def __init__(self, method: str, path: str, status: int, body: str):
        super().__init__("%s %s: %d %s" % (method, path, status, body[:500]))
        self.status = status
        self.body = body


class KubeServer:
    """etcd + kube-apiserver over one work directory, on ports of their own."""

    def __init__(self, bin_dir: str, workdir: str, ready_timeout: float = 60.0,
                 extra_args: Optional[list] = None):
        self.bin_dir = bin_dir
        self.extra_args = list(extra_args or [])
        self.workdir = os.path.abspath(workdir)
        self.ready_timeout = ready_timeout
        os.makedirs(self.workdir, exist_ok=True)
        self.etcd_port, self.etcd_peer_port, self.port = free_port(), free_port(), free_port()
        self.cert_dir = os.path.join(self.workdir, "certs")
        self.sa_key = os.path.join(self.workdir, "sa.key")
        self.tokens = os.path.join(self.workdir, "tokens.csv")
        self.audit_log = os.path.join(self.workdir, "audit.log")
        self.etcd: Optional[subprocess.Popen] = None
        self.apiserver: Optional[subprocess.Popen] = None
        self._ssl: Optional[ssl.SSLContext] = None

    @property
    def url(self) -> str:
        return "https://%s:%d" % (HOST, self.port)

    @property
    def ca_file(self) -> str:
        """The CA that verifies the server: its self-signed serving certificate
        (which names 127.0.0.1, not localhost)."""
        return os.path.join(self.cert_dir, "apiserver.crt")

    # ---- life cycle ----

    def _log(self, name: str):
        return open(os.path.join(self.workdir, name + ".log"), "ab")

    def start(self) -> "KubeServer":
        subprocess.run(["openssl", "genrsa", "-out", self.sa_key, "2048"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(self.tokens, "w") as f:
            f.write('%s,drover-test-admin,admin-uid,"system:masters"\n' % ADMIN_TOKEN)
        with open(os.path.join(self.workdir, "audit-policy.yaml"), "w") as f:
            # every request of a ServiceAccount at Metadata level: tests count verbs
            f.write("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n"
                    "  - level: Metadata\n    userGroups: [\"system:serviceaccounts\"]\n"
                    "  - level: None\n")
        with self._log("etcd") as log:
            self.etcd = subprocess.Popen([
                os.path.join(self.bin_dir, "etcd"),
                "--data-dir", os.path.join(self.workdir, "etcd"),
                "--listen-client-urls", "http://%s:%d" % (HOST, self.etcd_port),
                "--advertise-client-urls", "http://%s:%d" % (HOST, self.etcd_port),
                "--listen-peer-urls", "http://%s:%d" % (HOST, self.etcd_peer_port),
                "--initial-advertise-peer-urls", "http://%s:%d" % (HOST, self.etcd_peer_port),
                "--initial-cluster", "default=http://%s:%d" % (HOST, self.etcd_peer_port),
                "--listen-metrics-urls", "http://%s:%d" % (HOST, free_port()),
            ], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        with self._log("kube-apiserver") as log:
            self.apiserver = subprocess.Popen([
                os.path.join(self.bin_dir, "kube-apiserver"),
                "--etcd-servers", "http://%s:%d" % (HOST, self.etcd_port),
                "--bind-address", HOST, "--secure-port", str(self.port),
                "--advertise-address", HOST, "--endpoint-reconciler-type", "none",
                "--cert-dir", self.cert_dir,
                "--service-account-issuer", "https://kubernetes.default.svc",
                "--service-account-key-file", self.sa_key,
                "--service-account-signing-key-file", self.sa_key,
                "--token-auth-file", self.tokens,
                "--authorization-mode", "RBAC",
                "--service-cluster-ip-range", "10.96.0.0/24",
                "--audit-policy-file", os.path.join(self.workdir, "audit-policy.yaml"),
                "--audit-log-path", self.audit_log,
            ] + self.extra_args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def start_retrying(self, attempts: int = 3) -> "KubeServer":
        """start(), again on new ports when a port picked free was taken by
        someone else before etcd or the API server could bind it."""
        for attempt in range(attempts):
            try:
                return self.start()
            except AssertionError:
                taken = any("address already in use" in self.log_text(n)
                            for n in ("etcd", "kube-apiserver"))
                if not taken or attempt + 1 == attempts:
                    raise
                self.etcd_port, self.etcd_peer_port, self.port = (free_port(), free_port(),
                                                                  free_port())
                for n in ("etcd", "kube-apiserver"):
                    os.replace(os.path.join(self.workdir, n + ".log"),
                               os.path.join(self.workdir, "%s.%d.log" % (n, attempt)))
                shutil.rmtree(os.path.join(self.workdir, "etcd"), ignore_errors=True)
        raise AssertionError("unreachable")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last = "no answer"
        while True:
            for name, p in (("etcd", self.etcd), ("kube-apiserver", self.apiserver)):
                if p is None or p.poll() is not None:
                    raise AssertionError("%s exited before the API server was ready:\n%s"
                                         % (name, self.log_text(name)[-4000:]))
            if os.path.exists(self.ca_file):
                try:
                    status, body = self.request("GET", "/readyz", timeout=2.0)
                    if status == 200:
                        return
                    last = "%d %s" % (status, body[:200])
                except (OSError, ssl.SSLError) as e:
                    last = str(e)
            if time.monotonic() > deadline:
                raise AssertionError("the API server was not ready within %.0fs (last: %s):\n%s"
                                     % (self.ready_timeout, last,
                                        self.log_text("kube-apiserver")[-4000:]))
            time.sleep(0.2)

    def stop(self) -> None:
        """kube-apiserver, then etcd: SIGTERM, SIGKILL after 15 s. Never raises."""
        for p in (self.apiserver, self.etcd):
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)

    def log_text(self, name: str) -> str:
        try:
            with open(os.path.join(self.workdir, name + ".log"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    # ---- HTTP ----

    def request(self, method: str, path: str, body: Any = None, token: str = ADMIN_TOKEN,
                timeout: float = 30.0, content_type: str = "application/json") -> tuple[int, str]:
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=self.ca_file)
        conn = http.client.HTTPSConnection(HOST, self.port, context=self._ssl, timeout=timeout)
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        headers = {"Authorization": "Bearer " + token, "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        try:
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def call(self, method: str, path: str, body: Any = None, token: str = ADMIN_TOKEN,
             params: Optional[dict] = None, ok: tuple = (200, 201)) -> dict:
        full = path + ("?" + urllib.parse.urlencode(params) if params else "")
        status, text = self.request(method, full, body, token=token)
        if status not in ok:
            raise KubeError(method, full, status, text)
        return json.loads(text) if text else {}

    # ---- objects a test needs ----

    def create_namespace(self, name: str, labels: Optional[dict] = None) -> dict:
        ns = self.call("POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels or {}}})
        # no controller manager: the default ServiceAccount pods need is made here
        self.call("POST", "/api/v1/namespaces/%s/serviceaccounts" % name, {
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})
        return ns

    def create_pod(self, namespace: str, name: str, node: str, containers: list[str],
                   labels: Optional[dict] = None, annotations: Optional[dict] = None) -> dict:
        return self.call("POST", "/api/v1/namespaces/%s/pods" % namespace, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}},
            "spec": {"nodeName": node,
                     "containers": [{"name": c, "image": "registry.example/%s:1.0" % c}
                                    for c in containers]}})

    def delete(self, path: str, grace_seconds: Optional[int] = 0) -> dict:
        body = None if grace_seconds is None else {"gracePeriodSeconds": grace_seconds}
        return self.call("DELETE", path, body, ok=(200, 202))

    def service_account_token(self, namespace: str, name: str, rules: list[dict],
                              cluster: bool = False) -> str:
        """A ServiceAccount bound to a (Cluster)Role with `rules`, and a token
        for it from the TokenRequest API."""
        self.call("POST", "/api/v1/namespaces/%s/serviceaccounts" % namespace, {
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
            ok=(201, 409))
        kind = "ClusterRole" if cluster else "Role"
        base = ("/apis/rbac.authorization.k8s.io/v1" if cluster else
                "/apis/rbac.authorization.k8s.io/v1/namespaces/%s" % namespace)
        plural = "clusterroles" if cluster else "roles"
        binding = "clusterrolebindings" if cluster else "rolebindings"
        role_name = "%s-%s" % (namespace, name)
        self.call("POST", "%s/%s" % (base, plural), {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
            "metadata": {"name": role_name}, "rules": rules})
        self.call("POST", "%s/%s" % (base, binding), {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind + "Binding",
            "metadata": {"name": role_name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role_name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]})
        tr = self.call("POST", "/api/v1/namespaces/%s/serviceaccounts/%s/token" % (namespace, name),
                       {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                        "spec": {"expirationSeconds": 3600}})
        return tr["status"]["token"]

    def compact_etcd(self) -> int:
        """Compacts etcd's history up to now (as the cluster's own compaction
        does every few minutes), so that a watch from an older
        resourceVersion gets 410 Expired. Returns the revision."""
        def post(path: str, body: dict) -> dict:
            conn = http.client.HTTPConnection(HOST, self.etcd_port, timeout=10)
            try:
                conn.request("POST", path, body=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                text = r.read().decode()
                if r.status != 200:
                    raise AssertionError("etcd %s: %d %s" % (path, r.status, text[:300]))
                return json.loads(text)
            finally:
                conn.close()
        rev = int(post("/v3/maintenance/status", {})["header"]["revision"])
        post("/v3/kv/compaction", {"revision": str(rev), "physical": True})
        return rev

    def audit_verbs(self, username_part: str) -> list[tuple[str, str]]:
        """(verb, requestURI) of every request received from users whose
        name contains username_part (ServiceAccounts only are logged)."""
        out = []
        try:
            with open(self.audit_log) as f:
                for line in f:
                    ev = json.loads(line)
                    if ev.get("stage") != "RequestReceived":
                        continue
                    if username_part in ev.get("user", {}).get("username", ""):
                        out.append((ev.get("verb"), ev.get("requestURI")))
        except FileNotFoundError:
            pass
        return out


# ---- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kube_bin_dir() -> str:
    path, why = find_or_build_kube()
    if not path:
        pytest.fail("cannot get kube-apiserver %s and etcd: %s" % (KUBE_VERSION, why), pytrace=False)
    return path


@pytest.fixture
def start_kube(kube_bin_dir, tmp_path):
    """start_kube(extra_args=[...]) -> a started KubeServer; all stopped at teardown."""
    servers: list[KubeServer] = []

    def start(**kwargs) -> KubeServer:
        srv = KubeServer(kube_bin_dir, str(tmp_path / ("kube-%d" % len(servers))), **kwargs)
        servers.append(srv)
        return srv.start_retrying()

    try:
        yield start
    finally:
        for srv in servers:
            srv.stop()


@pytest.fixture
def kube(start_kube) -> KubeServer:
    """A started, ready API server with etcd; stopped at teardown."""
    return start_kube()
