"""docker-compose.yml cannot run here; these tests keep it consistent with the code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from services.cli import long_running_commands
from services.registry import DOMAINS
from services.runtime.settings import Settings
from services.tools.history import PORT as HISTORY_PORT
from tests.unit.test_readme import env_names

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def _known(name: str) -> bool:
    names = env_names()
    if name in names:
        return True
    service_field = name.split("_", 2)  # TRADEPULSE_<SERVICE>_<FIELD>
    return len(service_field) == 3 and f"TRADEPULSE_<SERVICE>_{service_field[2]}" in names


def test_every_domain_service_is_in_the_stack_with_the_infrastructure() -> None:
    assert set(DOMAINS) | {"kafka", "postgres", "prometheus", "grafana"} <= set(SERVICES)


def test_every_long_running_command_of_the_cli_runs_in_the_stack() -> None:
    """Derived from the CLI, so that the next long-running command cannot be forgotten here."""
    commands = [svc.get("command") for svc in SERVICES.values()]
    missing = [c for c in long_running_commands() if c not in commands]
    assert missing == []
    assert ["history"] in long_running_commands()


def test_our_services_get_more_time_to_stop_than_their_own_deadline() -> None:
    deadline_s = Settings.model_fields["stop_timeout_s"].default
    for name, svc in SERVICES.items():
        if "build" in svc:
            grace = svc.get("stop_grace_period", "10s")
            assert grace.endswith("s")
            assert float(grace[:-1]) > deadline_s + 2, name


def test_every_environment_variable_a_service_gets_exists_in_the_settings() -> None:
    for name in [*DOMAINS, "history", "release", "gateway"]:
        env = SERVICES[name]["environment"]
        unknown = sorted(k for k in env if not _known(k))
        assert unknown == [], f"{name}: {unknown}"


def test_services_run_their_own_worker_on_their_own_port() -> None:
    for name in DOMAINS:
        svc = SERVICES[name]
        assert svc["command"] == ["worker", name]
        port = int(svc["environment"]["TRADEPULSE_WEB_PORT"])
        assert port == DOMAINS[name].port
        assert f"{port}:{port}" in svc["ports"]


def test_prometheus_scrapes_each_service_on_its_compose_port() -> None:
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for cfg in job["static_configs"] for t in cfg["targets"]}
    expected = {f"{name}:{_web_port(name)}" for name in [*DOMAINS, "history", "release", "gateway"]}
    assert targets == expected


def _web_port(service: str) -> str:
    """The port of a service's /health, /ready and /metrics, as the image's health check finds it."""
    env = SERVICES[service]["environment"]
    return str(env.get("TRADEPULSE_WEB_PORT") or env["TRADEPULSE_GATEWAY_PORT"])


def test_every_long_running_service_has_pages_its_health_check_and_prometheus_reach() -> None:
    """The image's HEALTHCHECK reads TRADEPULSE_WEB_PORT, else TRADEPULSE_GATEWAY_PORT: every
    service built from it sets one, publishes it, and the image exposes it (history and the
    gateway had none the check could use)."""
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    check = next(line for line in dockerfile.splitlines() if "urlopen" in line)
    assert "os.environ.get('TRADEPULSE_WEB_PORT') or os.environ['TRADEPULSE_GATEWAY_PORT']" in check
    exposed = next(line for line in dockerfile.splitlines() if line.startswith("EXPOSE")).split()[1:]
    for name, svc in SERVICES.items():
        if "build" in svc:
            port = _web_port(name)
            assert port in exposed, name
            assert f"{port}:{port}" in svc["ports"], name
    assert _web_port("history") == str(HISTORY_PORT)


def test_services_reach_kafka_and_postgres_by_their_compose_names() -> None:
    for name in [*DOMAINS, "history"]:
        env = SERVICES[name]["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"].split(":")[0] == "kafka"
        assert "kafka" in SERVICES[name]["depends_on"]
    assert "@postgres:" in SERVICES["history"]["environment"]["DATABASE_URL"]
    assert "postgres" in SERVICES["history"]["depends_on"]


def test_the_image_installs_the_package_and_runs_the_cli() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "pip install ." in dockerfile
    assert 'ENTRYPOINT ["tradepulse"]' in dockerfile


# docker-compose.secure.yml, merged over docker-compose.yml as `docker compose -f a -f b` does
SECURE_FILE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.secure.yml").read_text())


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {k: _merge(base[k], v) if k in base else v for k, v in over.items()} | {
            k: v for k, v in base.items() if k not in over
        }
    if isinstance(base, list) and isinstance(over, list):
        return base + [v for v in over if v not in base]
    return over


SECURE = _merge(COMPOSE, SECURE_FILE)["services"]
CLIENTS = [*DOMAINS, "history", "release", "gateway"]


def _properties(env: dict[str, str]) -> dict[str, str]:
    """The apache/kafka image's mapping of KAFKA_* variables to server properties (``_`` -> ``.``,
    ``__`` -> ``_``, ``___`` -> ``-``)."""
    out = {}
    for name, value in env.items():
        key = name.removeprefix("KAFKA_").lower()
        key = key.replace("___", "\0").replace("__", "\1").replace("_", ".")
        out[key.replace("\0", "-").replace("\1", "_")] = str(value)
    return out


def test_secured_services_connect_with_sasl_ssl_and_a_principal_of_their_own() -> None:
    users = set()
    for name in CLIENTS:
        env = SECURE[name]["environment"]
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", name
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9094", name
        assert env["TRADEPULSE_CREATE_TOPICS"] == "false", name
        assert env.get("KAFKA_SASL_PASSWORD") is None, f"{name}: a password belongs in a file"
        users.add(env["KAFKA_SASL_USERNAME"])
        assert SECURE[name]["depends_on"]["kafka-setup"] == {"condition": "service_completed_successfully"}
        unknown = sorted(k for k in env if not _known(k))
        assert unknown == [], f"{name}: {unknown}"
    assert users == set(CLIENTS)


def test_every_secret_comes_from_a_declared_file_mounted_where_the_setting_points() -> None:
    declared = SECURE_FILE["secrets"]
    for name, svc in SECURE.items():
        mounted = set(svc.get("secrets", []))
        assert mounted <= set(declared), name
        for key, value in svc.get("environment", {}).items():
            if key.endswith(("_FILE", "_CAFILE", "_LOCATION")) and str(value).startswith("/run/secrets/"):
                assert value.removeprefix("/run/secrets/") in mounted, f"{name}: {key}"
    assert all(spec["file"].startswith("./secrets/") for spec in declared.values())
    history = SECURE["history"]["environment"]
    assert history["DATABASE_URL"] == ""
    assert history["DATABASE_URL_FILE"] == "/run/secrets/database_url"
    assert "/secrets/" in (ROOT / ".gitignore").read_text().splitlines()


def test_an_empty_variable_counts_as_unset_so_the_secret_file_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = tmp_path / "database_url"
    url.write_text("postgresql://history:from-the-file@postgres/tradepulse\n")
    monkeypatch.setenv("DATABASE_URL", "")
    monkeypatch.setenv("DATABASE_URL_FILE", str(url))
    assert "from-the-file" in Settings().database_url.get_secret_value()


def test_the_secured_broker_is_configured_like_the_tests_secured_broker() -> None:
    from services.devstack.kafka import KafkaNode, SaslSsl

    props = _properties(SECURE["kafka"]["environment"])
    secure = SaslSsl(Path("/k"), Path("/c"), {"admin": "a"})
    node = KafkaNode(Path("/x"), port=1, controller_port=2, secure=secure)
    tested = dict(line.split("=", 1) for line in node._security_properties())
    for key in ("sasl.enabled.mechanisms", "ssl.keystore.type", "authorizer.class.name",
                "allow.everyone.if.no.acl.found"):  # fmt: skip
        assert props[key] == tested[key], key
    assert "User:ANONYMOUS" in props["super.users"].split(";")
    # ANONYMOUS is a super user: only listeners on the loopback address may be PLAINTEXT
    protocols = dict(p.split(":") for p in props["listener.security.protocol.map"].split(","))
    for listener in props["listeners"].split(","):
        name, address = listener.split("://")
        assert protocols[name] != "PLAINTEXT" or address.startswith("127.0.0.1:"), listener
    assert props["listener.name.clients.scram-sha-512.sasl.jaas.config"].startswith(
        "org.apache.kafka.common.security.scram.ScramLoginModule required"
    )
    assert props["ssl.keystore.location"] == "/run/secrets/kafka_keystore"


def test_the_set_up_script_grants_what_the_code_checks() -> None:
    from services.tools.generate import secure_setup

    assert int(COMPOSE["x-service-env"]["TRADEPULSE_TOPIC_PARTITIONS"]) == 8  # as generated
    script = (ROOT / "deploy" / "kafka" / "secure-setup.sh").read_text()
    assert script == secure_setup(), "run: tradepulse generate"
    assert '$(cat "/run/secrets/kafka_$1_password")' in script  # user NAME reads kafka_NAME_password
    for user in CLIENTS:
        assert f"\nuser {user}\n" in script
        assert f"kafka_{user}_password" in SECURE["kafka-setup"]["secrets"]


def test_make_secrets_writes_what_the_secured_stack_mounts(tmp_path: Path) -> None:
    import ssl
    import subprocess

    script = ROOT / "deploy" / "secure" / "make-secrets.sh"
    subprocess.run(["sh", str(script), str(tmp_path / "s")], check=True, capture_output=True)
    for spec in SECURE_FILE["secrets"].values():
        assert (tmp_path / "s" / spec["file"].removeprefix("./secrets/")).is_file(), spec
    context = ssl.create_default_context(cafile=str(tmp_path / "s" / "ca.pem"))
    context.load_cert_chain(str(tmp_path / "s" / "kafka-keystore.pem"))  # key and chain in one PEM
    keystore = (tmp_path / "s" / "kafka-keystore.pem").read_text()
    assert keystore.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, as Kafka's PEM keystore wants
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "s" / "ca.pem"),
                             "-verify_hostname", "kafka", str(tmp_path / "s" / "kafka-keystore.pem")],
                            capture_output=True, text=True)  # fmt: skip
    assert verify.returncode == 0, verify.stderr
