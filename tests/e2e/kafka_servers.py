"""Real Apache Kafka for drover's end-to-end tests (see ../shared/SERVERS.md).

`KafkaCluster` runs one to three Kafka 4.4 (or 3.9) brokers in KRaft mode on 127.0.0.1,
each node both broker and controller (a static quorum of all of them), with
ports of their own and data in a directory of the test. The jars are in
$KAFKA_LIBS ($KAFKA39_LIBS), else in the directory scripts/servers/kafka.sh prints (fetched
once from Maven Central, cached outside the checkout). Three brokers get the
settings of a cluster that survives one broker failure: replication factor 3
and min.insync.replicas 2 by default (one broker: 1 and 1). A broker can be
killed (SIGKILL), stopped and started again on its ports and data.

Writing and reading back go through kcat (Debian), binary-safe:
`produce(topic, [(key, value), ...], headers=...)` writes with acks=all and
the idempotent producer; `consume(topic)` reads every message of every
partition from the beginning to the end, with its partition, offset,
timestamp, key, headers and value as bytes (kcat's JSON, see _parse_kcat);
`count(topic)` and `wait_for_count(topic, n, timeout)` go by the partitions'
end offsets.

Fixtures (import them into a test module: `from kafka_servers import kafka`):

  kafka_libs   session: the jar directory; the test fails (not skips) without it
  kafka39_libs session: the same for Kafka 3.9
  kafka        a started single-broker cluster (auto.create.topics.enable on,
               3 partitions per new topic)
  kafka3       a started three-broker cluster
  start_kafka  start_kafka(brokers=1, **settings) -> KafkaCluster, for other settings
               (auto_create_topics=False, message_max_bytes=..., extra={...}, and
               sasl_users={name: password} and tls=(cert, key) for listeners with SASL
               (PLAIN and SCRAM for those users, OAUTHBEARER with unsecured JWTs),
               TLS, and both: bootstrap_of("sasl" | "tls" | "sasl_tls");
               version="3.9.1" for Kafka 3.9)

Every broker a fixture starts is stopped by its own pid at the end of the
test (SIGTERM, then SIGKILL), pass or fail; when a test fails, the tail of
each broker's log is attached to its report.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import time
from typing import Optional

import pytest

from drover_e2e import HOST, REPO, free_port, report_logs_on_failure

KAFKA_SCRIPT = REPO / "scripts" / "servers" / "kafka.sh"
KAFKA_FETCH_TIMEOUT = 900
KCAT = shutil.which("kcat") or "/usr/bin/kcat"
JAVA = shutil.which("java") or "/usr/bin/java"
# What the SASL listeners accept: PLAIN from the JAAS user list, SCRAM from
# credentials made at format time for the same users, OAUTHBEARER with
# unsecured JWTs (oauth2_server.TokenServer's jwt_subject).
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
SASL_MECHANISMS = ("PLAIN",) + SCRAM_MECHANISMS + ("OAUTHBEARER",)
READY_TIMEOUT = 90.0  # a broker starts in about 10-15 s on 2 cores
TOOL_TIMEOUT = 90.0


# The Kafka versions the tests run, by the variable that may name their jars.
KAFKA_VERSIONS = {"4.4.0": "KAFKA_LIBS", "3.9.1": "KAFKA39_LIBS"}


def find_or_fetch_kafka(version: str = "4.4.0") -> tuple[Optional[str], str]:
    """(libs directory, "") or (None, why). $KAFKA_LIBS (4.4.0) or
    $KAFKA39_LIBS (3.9.1) overrides."""
    env = os.environ.get(KAFKA_VERSIONS[version])
    if env:
        if os.path.isdir(env) and any(n.startswith("kafka_2.13-") for n in os.listdir(env)):
            return env, ""
        return None, "KAFKA_LIBS=%s holds no kafka_2.13 jar" % env
    try:
        p = subprocess.run(["bash", str(KAFKA_SCRIPT), version], cwd=REPO, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=KAFKA_FETCH_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, "%s did not finish within %ds" % (KAFKA_SCRIPT, KAFKA_FETCH_TIMEOUT)
    lines = p.stdout.decode("utf-8", "replace").strip().splitlines()
    path = lines[-1] if lines else ""
    if p.returncode != 0 or not os.path.isdir(path):
        return None, "%s failed (exit %d):\n%s" % (KAFKA_SCRIPT, p.returncode,
                                                  p.stderr.decode("utf-8", "replace")[-6000:])
    return path, ""


@dataclasses.dataclass
class KafkaMessage:
    topic: str
    partition: int
    offset: int
    key: Optional[bytes]  # None: a null key
    value: Optional[bytes]  # None: a null value (a tombstone)
    headers: list  # [(name, value bytes or None)] in order, repeats kept
    timestamp: Optional[int] = None  # milliseconds; None when the broker has none
    timestamp_type: str = ""  # "create" or "logappend" as kcat says


class KafkaError(AssertionError):
    pass


def _bytes(s: Optional[str]) -> Optional[bytes]:
    return None if s is None else s.encode("utf-8", "surrogateescape")


def _parse_kcat(out: bytes) -> list[KafkaMessage]:
    """Parses `kcat -C -J` output: one JSON object a line,
    {"topic", "partition", "offset", "tstype", "ts", "broker", "headers":
    [name, value, name, value, ...] (absent without headers; a null value
    is null), "key", "payload"} (null when null). kcat escapes quotes,
    backslashes and control characters (so a message never spans lines)
    but writes every other byte as it is, valid UTF-8 or not: decoded with
    surrogateescape and encoded back the same way, keys, values and header
    values come back byte for byte."""
    msgs = []
    for line in out.split(b"\n"):
        if not line.strip():
            continue
        try:
            d = json.loads(line.decode("utf-8", "surrogateescape"))
        except ValueError as e:
            raise KafkaError("kcat: unexpected line %r: %s" % (line[:300], e))
        h = d.get("headers") or []
        headers = [(h[i], _bytes(h[i + 1])) for i in range(0, len(h) - 1, 2)]
        ts = d.get("ts")
        msgs.append(KafkaMessage(d["topic"], int(d["partition"]), int(d["offset"]),
                                 _bytes(d.get("key")), _bytes(d.get("payload")), headers,
                                 int(ts) if ts is not None and ts >= 0 else None,
                                 d.get("tstype") or ""))
    return msgs


class KafkaNode:
    def __init__(self, workdir: str, node_id: int):
        self.id = node_id
        self.workdir = workdir
        self.port = free_port()
        taken = {self.port}

        def another() -> int:
            while True:
                p = free_port()
                if p not in taken:
                    taken.add(p)
                    return p

        self.controller_port = another()
        # the listeners of KafkaCluster's sasl_users and tls
        self.sasl_port, self.tls_port, self.sasl_tls_port = another(), another(), another()
        self.data_dir = os.path.join(workdir, "data")
        self.config_path = os.path.join(workdir, "server.properties")
        self.proc: Optional[subprocess.Popen] = None
        self.logs: list[str] = []

    @property
    def address(self) -> str:
        return "%s:%d" % (HOST, self.port)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class KafkaCluster:
    """One to three KRaft nodes (broker + controller each)."""

    def __init__(self, libs: str, workdir: str, *, brokers: int = 1, name: str = "kafka",
                 auto_create_topics: bool = True, num_partitions: int = 3,
                 message_max_bytes: Optional[int] = None, extra: Optional[dict] = None,
                 sasl_users: Optional[dict] = None, tls: Optional[tuple[str, str]] = None):
        assert 1 <= brokers <= 3
        self.sasl_users = dict(sasl_users or {})
        self.tls = tls
        self.libs = libs
        self.name = name
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.nodes = [KafkaNode(os.path.join(self.workdir, "node%d" % (i + 1)), i + 1)
                      for i in range(brokers)]
        rf = 3 if brokers == 3 else 1
        voters = ",".join("%d@%s:%d" % (n.id, HOST, n.controller_port) for n in self.nodes)
        for n in self.nodes:
            os.makedirs(n.data_dir, exist_ok=True)
            props = {
                "process.roles": "broker,controller",
                "node.id": str(n.id),
                "controller.quorum.voters": voters,
                "listeners": "PLAINTEXT://%s:%d,CONTROLLER://%s:%d" % (HOST, n.port, HOST,
                                                                       n.controller_port),
                "advertised.listeners": "PLAINTEXT://%s:%d" % (HOST, n.port),
                "controller.listener.names": "CONTROLLER",
                "inter.broker.listener.name": "PLAINTEXT",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "log.dirs": n.data_dir,
                "num.partitions": str(num_partitions),
                "default.replication.factor": str(rf),
                "min.insync.replicas": "2" if rf == 3 else "1",
                "offsets.topic.replication.factor": str(rf),
                "transaction.state.log.replication.factor": str(rf),
                "transaction.state.log.min.isr": "2" if rf == 3 else "1",
                "share.coordinator.state.topic.replication.factor": str(rf),
                "share.coordinator.state.topic.min.isr": "2" if rf == 3 else "1",
                "group.initial.rebalance.delay.ms": "0",
                "auto.create.topics.enable": "true" if auto_create_topics else "false",
                "unclean.leader.election.enable": "false",
                "log.flush.interval.messages": "9223372036854775807",
            }
            if message_max_bytes is not None:
                props["message.max.bytes"] = str(message_max_bytes)
            props.update(self._security_props(n))
            props.update(extra or {})
            with open(n.config_path, "w") as f:
                f.writelines("%s=%s\n" % kv for kv in props.items())
        self.formatted = False

    @property
    def bootstrap(self) -> str:
        return ",".join(n.address for n in self.nodes)

    def bootstrap_of(self, listener: str) -> str:
        """The addresses of a security listener: "sasl" (SASL_PLAINTEXT),
        "tls" (SSL) or "sasl_tls" (SASL_SSL)."""
        attr = {"sasl": "sasl_port", "tls": "tls_port", "sasl_tls": "sasl_tls_port"}[listener]
        return ",".join("%s:%d" % (HOST, getattr(n, attr)) for n in self.nodes)

    # The listeners beside PLAINTEXT (which the brokers, kcat and the
    # tools use): with sasl_users, SASL (SASL_PLAINTEXT) taking PLAIN for
    # those users; with tls (a PEM
    # certificate and its unencrypted PKCS#8 key), TLS (SSL); with both,
    # SASLTLS (SASL_SSL) too.

    def _security_props(self, n: KafkaNode) -> dict:
        listeners = []
        if self.sasl_users:
            listeners.append(("SASL", "SASL_PLAINTEXT", n.sasl_port))
        if self.tls:
            listeners.append(("TLS", "SSL", n.tls_port))
        if self.sasl_users and self.tls:
            listeners.append(("SASLTLS", "SASL_SSL", n.sasl_tls_port))
        if not listeners:
            return {}
        props = {
            "listeners": "PLAINTEXT://%s:%d,CONTROLLER://%s:%d,%s" % (
                HOST, n.port, HOST, n.controller_port,
                ",".join("%s://%s:%d" % (name, HOST, port) for name, _, port in listeners)),
            "advertised.listeners": "PLAINTEXT://%s:%d,%s" % (
                HOST, n.port, ",".join("%s://%s:%d" % (name, HOST, port)
                                       for name, _, port in listeners)),
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,%s" % (
                ",".join("%s:%s" % (name, proto) for name, proto, _ in listeners)),
        }
        if self.tls:
            keystore = os.path.join(n.workdir, "keystore.pem")
            with open(keystore, "w") as out:
                for path in (self.tls[1], self.tls[0]):  # the key, then the certificate
                    with open(path) as f:
                        out.write(f.read())
        for name, proto, _ in listeners:
            ln = "listener.name.%s." % name.lower()
            if proto.startswith("SASL"):
                props[ln + "sasl.enabled.mechanisms"] = ",".join(SASL_MECHANISMS)
                users = " ".join('user_%s="%s"' % kv for kv in self.sasl_users.items())
                props[ln + "plain.sasl.jaas.config"] = (
                    "org.apache.kafka.common.security.plain.PlainLoginModule required %s;" % users)
                for mech in SCRAM_MECHANISMS:
                    props[ln + mech.lower() + ".sasl.jaas.config"] = (
                        "org.apache.kafka.common.security.scram.ScramLoginModule required;")
                # Kafka's default OAUTHBEARER validator: it takes unsecured
                # JWTs (alg none) that are well formed and not expired,
                # naming the principal in "sub".
                props[ln + "oauthbearer.sasl.jaas.config"] = (
                    "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule "
                    'required unsecuredLoginStringClaim_sub="broker";')
            if proto.endswith("SSL"):
                props[ln + "ssl.keystore.type"] = "PEM"
                props[ln + "ssl.keystore.location"] = keystore
        return props

    # ---- life cycle ----

    def _java(self, *args: str, timeout: float = TOOL_TIMEOUT) -> subprocess.CompletedProcess:
        return subprocess.run([JAVA, "-Xmx256m", "-cp", os.path.join(self.libs, "*"), *args],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout)

    # SCRAM credentials live in the cluster metadata: the format step
    # writes them into the bootstrap snapshot, for each user and mechanism.
    def _scram_args(self) -> list:
        args = []
        for name, password in self.sasl_users.items():
            for mech in SCRAM_MECHANISMS:
                args += ["--add-scram", "%s=[name=%s,password=%s]" % (mech, name, password)]
        return args

    def _format(self) -> None:
        p = self._java("kafka.tools.StorageTool", "random-uuid")
        cluster_id = p.stdout.decode().strip().splitlines()[-1].strip()
        for n in self.nodes:
            p = self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c",
                           n.config_path, *self._scram_args())
            if p.returncode != 0:
                raise KafkaError("formatting %s failed:\n%s" % (n.data_dir, p.stdout.decode()[-3000:]))
        self.formatted = True

    def start(self, wait: bool = True) -> "KafkaCluster":
        if not self.formatted:
            self._format()
        for i in range(len(self.nodes)):
            if not self.nodes[i].alive():
                self.start_broker(i, wait=False)
        if wait:
            self.wait_ready()
        return self

    def start_broker(self, i: int, wait: bool = False) -> None:
        n = self.nodes[i]
        assert not n.alive(), "broker %d is running" % n.id
        log = os.path.join(n.workdir, "run%d.log" % (len(n.logs) + 1))
        n.logs.append(log)
        with open(log, "wb") as logf:
            n.proc = subprocess.Popen(
                [JAVA, "-Xmx256m", "-Xms64m", "-XX:+UseSerialGC",
                 "-Dlog4j2.level=INFO", "-cp", os.path.join(self.libs, "*"), "kafka.Kafka",
                 n.config_path],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, cwd=n.workdir)
        if wait:
            self.wait_ready()

    def metadata(self, topic: Optional[str] = None, timeout: float = 5.0) -> dict:
        """kcat -L -J: brokers and topics as the cluster reports them."""
        args = [KCAT, "-L", "-J", "-b", self.bootstrap, "-m", str(int(max(1, timeout)))]
        if topic:
            args += ["-t", topic]
        p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout + 10)
        if p.returncode != 0:
            raise KafkaError("kcat -L: %s" % p.stderr.decode("utf-8", "replace")[-500:])
        return json.loads(p.stdout)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> "KafkaCluster":
        """Until every running broker is in the cluster's metadata; fails
        early when one exits."""
        deadline = time.monotonic() + timeout
        want = {n.id for n in self.nodes if n.proc is not None and n.alive()}
        last = "no answer"
        while True:
            for n in self.nodes:
                if n.proc is not None and not n.alive() and n.id in want:
                    raise KafkaError("broker %d exited (rc=%s) before ready:\n%s"
                                     % (n.id, n.proc.returncode, self.log_text(n.id - 1)[-6000:]))
            try:
                md = self.metadata(timeout=2.0)
                seen = {b["id"] for b in md.get("brokers", [])}
                if want <= seen:
                    return self
                last = "brokers %s" % sorted(seen)
            except (KafkaError, ValueError, subprocess.TimeoutExpired) as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise KafkaError("kafka %s not ready within %.0fs (last: %s):\n%s"
                                 % (self.name, timeout, last, self.log_text(0)[-6000:]))
            time.sleep(0.5)

    def kill_broker(self, i: int) -> None:
        n = self.nodes[i]
        if n.alive():
            n.proc.kill()
        if n.proc is not None:
            try:
                n.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass

    def stop_broker(self, i: int, timeout: float = 60.0) -> None:
        n = self.nodes[i]
        if not n.alive():
            return
        n.proc.send_signal(signal.SIGTERM)
        try:
            n.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_broker(i)

    def stop_all(self, timeout: float = 60.0) -> None:
        """SIGTERM to every broker at once, then wait (SIGKILL past the
        timeout). One at a time, the last node of three would wait for a
        controller quorum that is gone before it gives up."""
        running = [i for i, n in enumerate(self.nodes) if n.alive()]
        for i in running:
            self.nodes[i].proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for i in running:
            try:
                self.nodes[i].proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill_broker(i)

    def start_all(self) -> None:
        self.start(wait=True)

    def cleanup(self) -> None:
        """For teardown: never raises, leaves no process behind."""
        try:
            self.stop_all(timeout=20.0)
        except BaseException:
            pass
        for i in range(len(self.nodes)):
            try:
                self.kill_broker(i)
            except BaseException:
                pass

    def log_text(self, i: int, run: int = -1) -> str:
        try:
            with open(self.nodes[i].logs[run], "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (IndexError, OSError):
            return ""

    # ---- topics and messages ----

    def create_topic(self, name: str, *, partitions: int = 3, replication: Optional[int] = None,
                     configs: Optional[dict] = None) -> None:
        """Creates the topic and waits until every partition has a leader."""
        rf = replication or (3 if len(self.nodes) == 3 else 1)
        args = ["org.apache.kafka.tools.TopicCommand", "--bootstrap-server", self.bootstrap,
                "--create", "--topic", name, "--partitions", str(partitions),
                "--replication-factor", str(rf)]
        for k, v in (configs or {}).items():
            args += ["--config", "%s=%s" % (k, v)]
        p = self._java(*args)
        if p.returncode != 0:
            raise KafkaError("creating topic %s failed:\n%s" % (name, p.stdout.decode()[-3000:]))
        deadline = time.monotonic() + 30
        while True:
            try:
                md = self.metadata(topic=name, timeout=2.0)
                t = next((t for t in md.get("topics", []) if t["topic"] == name), None)
                if t and not t.get("error") and len(t["partitions"]) == partitions and all(
                        p.get("leader", -1) >= 0 for p in t["partitions"]):
                    return
            except (KafkaError, ValueError, subprocess.TimeoutExpired):
                pass
            if time.monotonic() > deadline:
                raise KafkaError("topic %s has no leaders after 30 s" % name)
            time.sleep(0.3)

    def produce(self, topic: str, records: list, *, headers=(), partition: Optional[int] = None,
                props: Optional[dict] = None, timeout: float = 60.0) -> None:
        """Writes records [(key bytes or None, value bytes), ...] with kcat
        -P, acks=all and the idempotent producer, each with the same
        headers [(name, value)]; partition None lets the key choose (the
        default partitioner of librdkafka, which is not Java's). Fails when
        any message is not delivered within `timeout`."""
        kdelim, mdelim = b"\x1e@K@\x1e", b"\x1f@M@\x1f"
        body = b""
        for key, value in records:
            assert kdelim not in value and mdelim not in value, "a delimiter in a value"
            if key is not None:
                assert kdelim not in key and mdelim not in key, "a delimiter in a key"
                body += key + kdelim
            body += value + mdelim
        args = [KCAT, "-P", "-b", self.bootstrap, "-t", topic, "-K", kdelim, "-D", mdelim,
                "-X", "acks=all", "-X", "enable.idempotence=true",
                "-X", "message.timeout.ms=%d" % int(timeout * 1000 * 0.8)]
        if partition is not None:
            args += ["-p", str(partition)]
        for name, value in headers:
            name = name.encode() if isinstance(name, str) else name
            value = value.encode() if isinstance(value, str) else value
            args += ["-H", name + b"=" + value]
        for k, v in (props or {}).items():
            args += ["-X", "%s=%s" % (k, v)]
        p = subprocess.run(args, input=body, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
        # kcat reports connection errors ("% ERROR: ... Connection refused", a
        # broker down) and goes on; a message not delivered is "Delivery
        # failed" and exit status 1
        err = p.stderr.decode("utf-8", "replace")
        if p.returncode != 0 or "Delivery failed" in err:
            raise KafkaError("kcat -P %s (exit %d): %s" % (topic, p.returncode, err[-1500:]))

    def consume(self, topic: str, timeout: float = 60.0) -> list[KafkaMessage]:
        """Every message of the topic, from the beginning of each partition
        to its end, in offset order per partition (partitions interleaved as
        kcat reads them); keys, values and headers as bytes."""
        p = subprocess.run([KCAT, "-C", "-b", self.bootstrap, "-t", topic, "-o", "beginning",
                            "-e", "-q", "-J"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        if p.returncode != 0:
            raise KafkaError("kcat -C %s: %s" % (topic, p.stderr.decode("utf-8", "replace")[-800:]))
        return _parse_kcat(p.stdout)

    def wait_for_count(self, topic: str, want: int, timeout: float,
                       interval: float = 0.5) -> int:
        """Polls count() until the topic holds at least `want` messages or
        the timeout ends; returns the last count (the caller checks)."""
        deadline = time.monotonic() + timeout
        while True:
            n = self.count(topic)
            if n >= want or time.monotonic() >= deadline:
                return n
            time.sleep(interval)

    def count(self, topic: str) -> int:
        """Messages in the topic: the sum of its partitions' end offsets (-1
        when the cluster cannot say)."""
        try:
            md = self.metadata(topic=topic, timeout=3.0)
            t = next((t for t in md.get("topics", []) if t["topic"] == topic), None)
            if not t or t.get("error"):
                return 0
            args = [KCAT, "-Q", "-b", self.bootstrap]
            for part in t["partitions"]:
                args += ["-t", "%s:%d:-1" % (topic, part["partition"])]
            p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=15)
            if p.returncode != 0:
                return -1
            total = 0
            for line in p.stdout.decode().splitlines():
                # "<topic> [<partition>] offset <n>"
                fields = line.split()
                if len(fields) >= 4 and fields[2] == "offset":
                    total += int(fields[3])
            return total
        except (KafkaError, ValueError, subprocess.TimeoutExpired):
            return -1


# ---- fixtures -------------------------------------------------------------------------------------


def _libs_or_fail(version: str) -> str:
    path, why = find_or_fetch_kafka(version)
    if not path:
        pytest.fail("cannot get Kafka %s: %s" % (version, why), pytrace=False)
    for tool in (KCAT, JAVA):
        if not os.access(tool, os.X_OK):
            pytest.fail("%s is not installed (scripts/setup.sh)" % tool, pytrace=False)
    return path


@pytest.fixture(scope="session")
def kafka_libs() -> str:
    """The Kafka 4.4 jars. Session-scoped, so a first fetch happens before
    any test's watchdog starts; when they cannot be had the test fails with
    the reason."""
    return _libs_or_fail("4.4.0")


@pytest.fixture(scope="session")
def kafka39_libs() -> str:
    """The Kafka 3.9 jars: SCRAM logins of librdkafka before 2.6.1 work
    with Kafka 3 brokers only (kafka.sh)."""
    return _libs_or_fail("3.9.1")


@pytest.fixture
def start_kafka(request, kafka_libs, tmp_path):
    """start_kafka(brokers=1, name=..., start=True, version="4.4.0", **settings)
    -> KafkaCluster (started and ready unless start=False); version "3.9.1"
    runs Kafka 3.9. All are stopped at teardown."""
    clusters: list[KafkaCluster] = []
    report_logs_on_failure(request, lambda: [
        ("kafka %s broker %d run %d log (%s)" % (c.name, n.id, r + 1, path), c.log_text(i, r))
        for c in clusters for i, n in enumerate(c.nodes) for r, path in enumerate(n.logs)])

    def start(*, brokers: int = 1, name: str = "kafka", start: bool = True,
              version: str = "4.4.0", **kw) -> KafkaCluster:
        libs = kafka_libs if version == "4.4.0" else request.getfixturevalue("kafka39_libs")
        c = KafkaCluster(libs, str(tmp_path / ("kafka-" + name)), brokers=brokers,
                         name=name, **kw)
        clusters.append(c)
        if start:
            c.start()
        return c

    try:
        yield start
    finally:
        for c in clusters:
            c.cleanup()


@pytest.fixture
def kafka(start_kafka) -> KafkaCluster:
    """A started single-broker cluster; stopped at teardown."""
    return start_kafka()


@pytest.fixture
def kafka3(start_kafka) -> KafkaCluster:
    """A started three-broker cluster (replication 3, min.insync.replicas 2)."""
    return start_kafka(brokers=3, name="kafka3")
