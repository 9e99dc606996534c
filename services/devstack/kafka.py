"""One Apache Kafka 4.x node (broker + KRaft controller) from Maven Central, no Docker.

``deploy/kafka/pom.xml`` names the version; ``mvn dependency:copy-dependencies`` caches the jars in
``deploy/kafka/.cache/<version>/libs`` (gitignored). The node is formatted with
``kafka.tools.StorageTool format --standalone`` and run as ``kafka.Kafka`` with development settings.
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.devstack.process import (
    MissingTool,
    StackError,
    pid_alive,
    port_open,
    read_pid,
    require,
    stop_pid,
    tail,
)

__all__ = ["KafkaNode", "SaslSsl", "ensure_jars", "kafka_version"]

REPO = Path(__file__).resolve().parents[2]
POM = REPO / "deploy" / "kafka" / "pom.xml"
CACHE = REPO / "deploy" / "kafka" / ".cache"
JAVA_FIX = "Install Java 17+: apt-get install -y openjdk-17-jre-headless"
MAVEN_FIX = "Install Maven: apt-get install -y maven"

LOG4J2 = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        Pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
"""


def kafka_version() -> str:
    """The Kafka version pinned in deploy/kafka/pom.xml."""
    found = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    if not found:
        msg = f"{POM} does not set <kafka.version>"
        raise StackError(msg)
    return found.group(1)


def jar_version() -> str:
    """``version (commit)`` from kafka/kafka-version.properties in the cached kafka-clients jar."""
    libs = ensure_jars()
    jar = next(libs.glob("kafka-clients-*.jar"))
    with zipfile.ZipFile(jar) as zf:
        text = zf.read("kafka/kafka-version.properties").decode()
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return f"{props.get('version', '?')} (commit {props.get('commitId', '?')})"


def ensure_jars(*, quiet: bool = True) -> Path:
    """The folder of Kafka's jars, fetched with Maven on first use."""
    libs = CACHE / kafka_version() / "libs"
    marker = libs / ".complete"
    wanted = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]  # a changed pom fetches again
    if marker.exists() and marker.read_text() == wanted:
        return libs
    require("java", JAVA_FIX)
    mvn = require("mvn", MAVEN_FIX)
    cmd = [
        mvn,
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}",
        "-DincludeScope=runtime",
    ]
    if quiet:
        cmd.insert(1, "-q")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        output = done.stdout + done.stderr
        errors = [line for line in output.splitlines() if line.startswith("[ERROR]")]
        msg = (
            f"Maven could not fetch org.apache.kafka:kafka_2.13 {kafka_version()} from Maven Central "
            f"(exit {done.returncode}: {errors[0] if errors else 'no [ERROR] line'}); check the network "
            f"or Maven's proxy settings (~/.m2/settings.xml)\n{output[-3000:]}"
        )
        raise MissingTool(msg)
    if not any(libs.glob("kafka_2.13-*.jar")):
        msg = f"Maven finished but {libs} holds no kafka_2.13 jar"
        raise MissingTool(msg)
    marker.write_text(wanted)
    return libs


@dataclass(frozen=True, slots=True)
class SaslSsl:
    """A secured node: one SASL_SSL listener (SCRAM-SHA-512 users created when the storage is
    formatted, a PEM server certificate), ACLs enforced by the StandardAuthorizer with nothing
    allowed unless granted. ``admin`` is the super user (and the broker's own inter-broker login).

    The KRaft controller listener stays PLAINTEXT on the loopback address, and its principal
    (ANONYMOUS) is a super user too: KRaft authorizes the broker's registration there, and SCRAM
    is not available on controller listeners. Clients cannot reach data through it."""

    keystore_pem: Path  # PKCS#8 private key followed by the certificate chain
    ca_pem: Path
    users: dict[str, str]  # name -> password; must include admin
    admin: str = "admin"


@dataclass(slots=True)
class KafkaNode:
    """A single-node KRaft cluster living in ``home``."""

    home: Path
    port: int = 19092
    controller_port: int = 19093
    heap: str = "512m"
    secure: SaslSsl | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client_options(self) -> dict[str, Any]:
        """aiokafka options of the super user (readiness probe, topic and ACL set-up)."""
        if self.secure is None:
            return {"bootstrap_servers": self.bootstrap}
        import ssl

        return {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": "SASL_SSL",
            "ssl_context": ssl.create_default_context(cafile=str(self.secure.ca_pem)),
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": self.secure.admin,
            "sasl_plain_password": self.secure.users[self.secure.admin],
        }

    @property
    def pidfile(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def logfile(self) -> Path:
        return self.home / "broker.log"

    def _properties(self) -> str:
        data = self.home / "data"
        name = "PLAINTEXT" if self.secure is None else "SASL_SSL"
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
                f"listeners={name}://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners={name}://127.0.0.1:{self.port},"
                f"CONTROLLER://127.0.0.1:{self.controller_port}",
                "controller.listener.names=CONTROLLER",
                f"inter.broker.listener.name={name}",
                f"listener.security.protocol.map=CONTROLLER:PLAINTEXT,{name}:{name}",
                *self._security_properties(),
                f"log.dirs={data}",
                "num.partitions=1",
                "auto.create.topics.enable=false",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=10",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "log.cleaner.backoff.ms=1000",
                # Time retention checked every second from the start (defaults: 5 min, after 30 s):
                # a record stamped with a wrong time (dead letters were once stamped in 1970) is
                # deleted within a test, not minutes later in whichever test happens to be running.
                "log.retention.check.interval.ms=1000",
                "log.initial.task.delay.ms=0",
                "",
            ]
        )

    def _security_properties(self) -> list[str]:
        sec = self.secure
        if sec is None:
            return []
        login = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{sec.admin}" password="{sec.users[sec.admin]}";'
        )
        return [
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={login}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={sec.keystore_pem}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={sec.ca_pem}",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            f"super.users=User:{sec.admin};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found=false",
        ]

    def _scram_users(self) -> list[str]:
        """``--add-scram`` arguments of the storage format (SCRAM credentials live in KRaft metadata)."""
        if self.secure is None:
            return []
        out = []
        for user, password in self.secure.users.items():
            out += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
        return out

    def running(self) -> bool:
        pid = read_pid(self.pidfile)
        return pid is not None and pid_alive(pid)

    def start(self, *, timeout_s: float = 90.0) -> None:
        """Format (first time only), start, and wait until the broker answers metadata requests."""
        if self.running():
            return
        java = require("java", JAVA_FIX)
        libs = ensure_jars()
        self.home.mkdir(parents=True, exist_ok=True)
        props = self.home / "server.properties"
        props.write_text(self._properties())
        log4j = self.home / "log4j2.yaml"
        log4j.write_text(LOG4J2)
        classpath = f"{libs}/*"
        jvm = [
            java,
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
            "-cp",
            classpath,
        ]
        if not (self.home / "data" / "meta.properties").exists():
            fmt = subprocess.run(
                [
                    *jvm,
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    "-t",
                    _cluster_id(),
                    "-c",
                    str(props),
                    *self._scram_users(),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if fmt.returncode != 0:
                msg = f"formatting KRaft storage failed:\n{fmt.stdout}{fmt.stderr}"
                raise StackError(msg)
        if port_open("127.0.0.1", self.port):
            msg = (
                f"port {self.port} is already in use; stop what holds it or set "
                "TRADEPULSE_STACK_KAFKA_PORT (the controller takes the next port)"
            )
            raise StackError(msg)
        with self.logfile.open("ab") as out:
            proc = subprocess.Popen(
                [*jvm, "kafka.Kafka", str(props)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._proc = proc  # kept so the child is reaped (and no ResourceWarning) when stopped here
        self.pidfile.write_text(str(proc.pid))
        self._wait_ready(proc, timeout_s)

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
        from services.devstack.probe import kafka_answers

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                msg = f"Kafka exited with {proc.returncode}; last log lines:\n{tail(self.logfile)}"
                raise StackError(msg)
            if port_open("127.0.0.1", self.port) and kafka_answers(self.client_options()):
                return
            time.sleep(0.3)
        self.stop()
        msg = f"Kafka did not answer within {timeout_s:.0f}s; last log lines:\n{tail(self.logfile)}"
        raise StackError(msg)

    def acl(self, *arguments: str) -> None:
        """Run ``kafka-acls`` (org.apache.kafka.tools.AclCommand) as the super user."""
        if self.secure is None:
            msg = "ACLs need a secured node (KafkaNode(secure=SaslSsl(...)))"
            raise StackError(msg)
        sec = self.secure
        config = self.home / "admin.properties"
        config.write_text(
            "security.protocol=SASL_SSL\n"
            "sasl.mechanism=SCRAM-SHA-512\n"
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{sec.admin}" password="{sec.users[sec.admin]}";\n'
            "ssl.truststore.type=PEM\n"
            f"ssl.truststore.location={sec.ca_pem}\n"
        )
        config.chmod(0o600)
        java = require("java", JAVA_FIX)
        done = subprocess.run(
            [java, "-Xmx256m", "-cp", f"{ensure_jars()}/*", "org.apache.kafka.tools.AclCommand",
             "--bootstrap-server", self.bootstrap, "--command-config", str(config), *arguments],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            msg = f"kafka-acls {' '.join(arguments[:6])}... failed:\n{done.stdout}{done.stderr}"
            raise StackError(msg)

    def version_line(self) -> str:
        """The version of the Kafka jars this node runs, read from the jar itself."""
        return f"Apache Kafka {jar_version()}"

    def stop(self) -> None:
        pid = read_pid(self.pidfile)
        if pid is not None:
            stop_pid(pid, timeout_s=30.0)
        if self._proc is not None:
            self._proc.wait(timeout=5)
            self._proc = None
        self.pidfile.unlink(missing_ok=True)


def _cluster_id() -> str:
    """A KRaft cluster id: a base64url-encoded UUID (22 chars), as `random-uuid` prints.

    Like Kafka's own Uuid.randomUuid, never one that starts with "-": the storage tool's argument
    parser would read it as an option ("argument --cluster-id/-t: expected one argument"), which
    failed one CI run in 64.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
