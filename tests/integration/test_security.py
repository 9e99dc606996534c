"""Security end to end, on real servers: a Kafka broker (the same jars) with a SASL_SSL listener,
SCRAM-SHA-512 users created at format time and the StandardAuthorizer (nothing allowed unless
granted), its certificate from a CA made here; PostgreSQL with ``ssl = on`` taking TLS connections
only. A worker and ``history`` run over them with the ACLs of docs/security.md and nothing more,
their secrets read from files; every misconfiguration stops the process with one line naming the
setting or the permission, exit status 2."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from services.devstack.kafka import KafkaNode, SaslSsl
from services.devstack.postgres import PgTls, PostgresCluster
from services.devstack.process import free_port
from services.registry import DOMAINS
from services.runtime.settings import Settings
from services.runtime.worker import worker_topics
from services.tools.acls import access_of, acl_arguments, create_arguments
from tests.integration.domain import VALID_ONLY
from tests.integration.harness import (
    REPO,
    WorkerProcess,
    eventually,
    produce,
    running,
    start_history,
    worker_env,
)
from tests.integration.test_customs import CUSTOMS

USERS = ("admin", "customs", "history", "producer", "nobody")
PRINCIPAL = {"customs": "customs", "history": "history", "producer": "producer"}


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path  # a CA that signed nothing the servers show
    keystore: Path  # the broker's PKCS#8 key and certificate chain
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    home = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    key = serialization.load_pem_private_key(server.private_key_pem.bytes(), None)
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    chain = b"".join(blob.bytes() for blob in server.cert_chain_pems)
    (home / "keystore.pem").write_bytes(pkcs8 + chain)
    (home / "server.crt").write_bytes(chain)
    (home / "server.key").write_bytes(pkcs8)
    ca.cert_pem.write_to_path(str(home / "ca.pem"))
    other.cert_pem.write_to_path(str(home / "other-ca.pem"))
    for path in home.iterdir():
        path.chmod(0o644 if path.suffix != ".key" else 0o600)
    home.chmod(0o755)
    return Pki(
        home / "ca.pem",
        home / "other-ca.pem",
        home / "keystore.pem",
        home / "server.crt",
        home / "server.key",
    )


@pytest.fixture(scope="module")
def passwords() -> dict[str, str]:
    return {user: secrets.token_urlsafe(18) for user in USERS}


@pytest.fixture(scope="module")
def secure_kafka(
    pki: Pki, passwords: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaNode]:
    home = tmp_path_factory.mktemp("kafka-sasl-ssl")
    secure = SaslSsl(pki.keystore, pki.ca, passwords)
    with running(KafkaNode(home, port=free_port(), controller_port=free_port(), secure=secure), home) as node:
        yield node


@pytest.fixture(scope="module")
def secure_pg(
    pki: Pki, passwords: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PostgresCluster]:
    home = Path(tempfile.mkdtemp(prefix="tradepulse-pg-ssl-"))  # not under pytest's 0700 folder:
    home.chmod(0o755)  # the server runs as postgres when the tests run as root
    tls = PgTls(pki.cert, pki.key, passwords["admin"])
    with running(PostgresCluster(home, port=free_port(), tls=tls), home) as cluster:
        yield cluster


@dataclass
class Secured:
    """One test's topics on the secured broker, created by the administrator, with the ACLs of
    docs/security.md granted to the customs, history and producer users."""

    node: KafkaNode
    pki: Pki
    prefix: str
    passwords: dict[str, str]
    secrets_dir: Path

    def client(self, user: str) -> dict[str, Any]:
        """aiokafka options of ``user``."""
        return {
            **self.node.client_options(),
            "sasl_plain_username": user,
            "sasl_plain_password": self.passwords[user],
        }

    def env(self, user: str, **extra: str) -> dict[str, str]:
        """The environment of a TradePulse process connecting as ``user``, its password in a file."""
        password_file = self.secrets_dir / f"{user}.password"
        password_file.write_text(self.passwords[user] + "\n")
        password_file.chmod(0o600)
        security = {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": user,
            "KAFKA_SASL_PASSWORD_FILE": str(password_file),
            "KAFKA_SSL_CAFILE": str(self.pki.ca),
            "TRADEPULSE_CREATE_TOPICS": "false",
            "TRADEPULSE_STARTUP_TIMEOUT_S": "10",
        }
        return worker_env(self.node.bootstrap, self.prefix, **{**security, **extra})


@pytest.fixture
def secured(
    secure_kafka: KafkaNode, pki: Pki, passwords: dict[str, str], prefix: str, tmp_path: Path
) -> Secured:
    settings = Settings(topic_prefix=prefix)
    admin = {**secure_kafka.client_options()}
    asyncio.run(_create_topics(admin, settings))
    for process, user in PRINCIPAL.items():
        for args in acl_arguments(access_of(process, settings), f"User:{user}"):
            secure_kafka.acl(*args)
    return Secured(secure_kafka, pki, prefix, passwords, tmp_path)


async def _create_topics(admin: dict[str, Any], settings: Settings) -> None:
    """As an administrator would, from `tradepulse topics customs` (plus the history's inputs)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    specs = worker_topics(settings, DOMAINS["customs"])
    client = AIOKafkaAdminClient(**admin)
    await client.start()
    try:
        new = []
        for spec in specs:
            args = create_arguments(spec, 1)
            config = (
                dict(a.split("=", 1) for a in args[args.index("--config") + 1 :: 2])
                if "--config" in args
                else {}
            )
            new.append(NewTopic(spec.name, spec.partitions, 1, topic_configs=config))
        await client.create_topics(new)
    finally:
        await client.close()


def _run(argv: list[str], env: dict[str, str], timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *argv], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=timeout_s, check=False,
    )  # fmt: skip


def test_a_worker_and_history_run_over_sasl_ssl_and_tls_postgres_with_the_documented_acls_only(
    secured: Secured, secure_pg: PostgresCluster, tmp_path: Path
) -> None:
    env = secured.env("customs", **CUSTOMS.fast)
    worker = WorkerProcess("customs", env, tmp_path / "customs.log").start().wait_ready()
    history = None
    try:
        events, records = CUSTOMS.corpus(80, seed=5, faults=VALID_ONLY)
        asyncio.run(produce(secured.client("producer"), secured.prefix + CUSTOMS.topic, records))
        consumed = asyncio.run(eventually(lambda: CUSTOMS.consumed([worker]) >= len(records), timeout_s=90))
        assert consumed, CUSTOMS.consumed([worker])
        admin = secured.client("admin")
        asyncio.run(CUSTOMS.settle(admin, secured.prefix))
        assert asyncio.run(CUSTOMS.differences(admin, secured.prefix, CUSTOMS.oracle(events))) == []

        url_file = tmp_path / "database-url"
        url_file.write_text(f"{secure_pg.url}?sslmode=verify-full&sslrootcert={secured.pki.ca}\n")
        url_file.chmod(0o600)
        env = secured.env("history", DATABASE_URL_FILE=str(url_file))
        history = start_history(env, tmp_path / "history.log")
        rows = asyncio.run(_wait_rows(secure_pg.url, secured.pki.ca))
        assert rows > 0, (tmp_path / "history.log").read_text()[-2000:]

        # no secret in the process's command line, its log or its metrics
        assert worker.proc is not None
        cmdline = Path(f"/proc/{worker.proc.pid}/cmdline").read_bytes().decode(errors="replace")
        seen = cmdline + (tmp_path / "customs.log").read_text() + worker.get("/metrics")[1]
        seen += (tmp_path / "history.log").read_text()
        for secret in (*secured.passwords.values(), secure_pg.url.split(":")[2].split("@")[0]):
            assert secret not in seen
    finally:
        if history is not None:
            history.terminate()
            history.wait(timeout=30)
        assert worker.stop() == 0


async def _wait_rows(url: str, ca: Path) -> int:
    deadline = time.monotonic() + 60
    count = 0
    while time.monotonic() < deadline and not count:
        try:
            conn = await asyncpg.connect(f"{url}?sslmode=verify-full&sslrootcert={ca}")
        except (OSError, asyncpg.PostgresError):
            await asyncio.sleep(0.5)
            continue
        try:
            count = await conn.fetchval(
                "SELECT (SELECT count(*) FROM indicator_window) + (SELECT count(*) FROM case_state)"
            )
        except asyncpg.UndefinedTableError:
            count = 0
        finally:
            await conn.close()
        await asyncio.sleep(0.5)
    return int(count or 0)


BROKEN: dict[str, tuple[dict[str, str], str]] = {
    "wrong password": (
        {"KAFKA_SASL_PASSWORD_FILE": "", "KAFKA_SASL_PASSWORD": "not-the-password"},
        "KAFKA_SASL_PASSWORD",
    ),
    "unknown CA": ({"KAFKA_SSL_CAFILE": "other"}, "KAFKA_SSL_CAFILE"),
    "plaintext client on the TLS port": (
        {
            "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "",
            "KAFKA_SASL_USERNAME": "",
            "KAFKA_SASL_PASSWORD_FILE": "",
            "KAFKA_SSL_CAFILE": "",
        },
        "KAFKA_SECURITY_PROTOCOL",
    ),
    "missing ACL": ({"KAFKA_SASL_USERNAME": "nobody"}, "lacks Read on topic"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_each_misconfiguration_stops_the_worker_with_one_line_naming_the_fix(
    secured: Secured, case: str
) -> None:
    changes, named = BROKEN[case]
    user = changes.get("KAFKA_SASL_USERNAME") or "customs"
    env = secured.env(user)
    for name, value in changes.items():
        if name == "KAFKA_SSL_CAFILE" and value == "other":
            value = str(secured.pki.other_ca)
        if value:
            env[name] = value
        else:
            env.pop(name, None)
    done = _run(["worker", "customs"], env)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert named in lines[0]
    assert not any(p in done.stderr + done.stdout for p in secured.passwords.values())


def test_history_refuses_postgres_without_tls_or_with_an_unknown_ca(
    secured: Secured, secure_pg: PostgresCluster, tmp_path: Path
) -> None:
    for query, named in (
        ("sslmode=disable", "TLS connections only"),
        (f"sslmode=verify-full&sslrootcert={secured.pki.other_ca}", "not trusted"),
    ):
        env = secured.env("history", DATABASE_URL=f"{secure_pg.url}?{query}")
        done = _run(["history"], env)
        assert done.returncode == 2, done.stderr[-3000:]
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr[-3000:]
        assert named in lines[0]
        assert secured.passwords["admin"] not in done.stderr


def test_a_secret_given_twice_or_an_unreadable_secret_file_is_refused_by_name(
    secured: Secured, tmp_path: Path
) -> None:
    env = secured.env("customs", KAFKA_SASL_PASSWORD="x")
    done = _run(["worker", "customs"], env)
    assert done.returncode == 2
    assert "KAFKA_SASL_PASSWORD and KAFKA_SASL_PASSWORD_FILE are both set" in done.stderr
    env = secured.env("customs", KAFKA_SASL_PASSWORD_FILE=str(tmp_path / "missing"))
    done = _run(["worker", "customs"], env)
    assert done.returncode == 2
    assert "KAFKA_SASL_PASSWORD_FILE: cannot read" in done.stderr
