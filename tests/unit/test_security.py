"""Security settings without a broker: which combinations are refused and how, secrets from files,
no secret in any rendering of the settings, the ACL table of the documents equal to the code's,
and personal data validated without being quoted (docs/security.md)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme
from pydantic import ValidationError

from services.cbec.events import CATALOG, OrderDeclared
from services.cbec.simulator import fake_person, simulate
from services.contract.codec import DecodeError, decode
from services.contract.fields import resident_id_check, resident_id_valid
from services.runtime.kafka_admin import READ_WRITE, Access
from services.runtime.permissions import Operation
from services.runtime.security import ConfigError, KafkaSecurity, read_secret_files
from services.runtime.settings import Settings
from services.tools.acls import acl_arguments, acl_table
from services.tools.simulate import encode

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-Value-91"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith(("KAFKA_", "DATABASE_URL", "TRADEPULSE_")):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME"),
        ({"KAFKA_SASL_USERNAME": "u"}, "does not use SASL"),
        ({"KAFKA_SSL_CAFILE": "/etc/hostname"}, "does not use TLS"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": "/etc/hostname"}, "go together"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nonexistent.pem"}, "not a readable file"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL_SASL"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
    ],
)
def test_settings_that_cannot_work_are_refused_by_name(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        KafkaSecurity()
    assert named in str(caught.value)


def test_a_password_never_shows_in_a_rendering_of_the_settings(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    clean_env.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    clean_env.setenv("KAFKA_SASL_USERNAME", "customs")
    clean_env.setenv("KAFKA_SASL_PASSWORD", SECRET)
    clean_env.setenv("DATABASE_URL", f"postgresql://u:{SECRET}@db/x")
    settings = Settings()
    shown = [repr(settings), str(settings), settings.model_dump_json(), repr(settings.kafka),
             settings.kafka.describe(), repr(settings.kafka.faust())]  # fmt: skip
    assert all(SECRET not in s for s in shown)
    assert settings.kafka.aiokafka()["sasl_plain_password"] == SECRET  # but the client gets it


def test_secrets_come_from_files_and_both_forms_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text(SECRET + "\n")
    assert read_secret_files({"KAFKA_SASL_PASSWORD_FILE": str(path)}) == {"KAFKA_SASL_PASSWORD": SECRET}
    with pytest.raises(ConfigError, match="KAFKA_SASL_PASSWORD and KAFKA_SASL_PASSWORD_FILE") as both:
        read_secret_files({"KAFKA_SASL_PASSWORD_FILE": str(path), "KAFKA_SASL_PASSWORD": SECRET})
    assert SECRET not in str(both.value)
    with pytest.raises(ConfigError, match="DATABASE_URL_FILE: cannot read"):
        read_secret_files({"DATABASE_URL_FILE": str(tmp_path / "absent")})


def test_the_ssl_context_trusts_the_ca_file_and_loads_an_encrypted_client_key(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    client = ca.issue_cert("client.tradepulse.test")
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(client.private_key_pem.bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(SECRET.encode()),
    )
    (tmp_path / "client.key").write_bytes(encrypted)
    clean_env.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    clean_env.setenv("KAFKA_SSL_CAFILE", str(tmp_path / "ca.pem"))
    clean_env.setenv("KAFKA_SSL_CERTFILE", str(tmp_path / "client.pem"))
    clean_env.setenv("KAFKA_SSL_KEYFILE", str(tmp_path / "client.key"))
    clean_env.setenv("KAFKA_SSL_KEY_PASSWORD", SECRET)
    context = KafkaSecurity().ssl_context()
    assert context is not None
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert len(context.get_ca_certs()) == 1

    clean_env.setenv("KAFKA_SSL_KEY_PASSWORD", "Wr0ng-Passphrase")
    with pytest.raises(ConfigError, match="KAFKA_SSL_KEY_PASSWORD") as wrong:
        KafkaSecurity().ssl_context()
    assert "Wr0ng-Passphrase" not in str(wrong.value)
    clean_env.setenv("KAFKA_SSL_KEY_PASSWORD", SECRET)
    clean_env.setenv("KAFKA_SSL_CHECK_HOSTNAME", "false")
    context = KafkaSecurity().ssl_context()
    assert context is not None
    assert not context.check_hostname


def _table(path: Path) -> str:
    text = path.read_text()
    start, end = text.index("<!-- acl-table -->\n"), text.index("<!-- /acl-table -->")
    return text[start + len("<!-- acl-table -->\n") : end].strip()


@pytest.mark.parametrize("document", ["docs/security.md", "docs/configuration.md"])
def test_the_documented_acls_are_the_ones_the_code_checks(
    clean_env: pytest.MonkeyPatch, document: str
) -> None:
    assert _table(REPO / document) == acl_table(Settings())


def test_create_is_granted_only_while_the_process_creates_topics() -> None:
    access = Access({"a": READ_WRITE}, group="g", create=False)
    assert all(Operation.CREATE.label() not in call for call in acl_arguments(access, "User:x"))
    access = Access({"a": READ_WRITE}, group="g", create=True)
    calls = acl_arguments(access, "User:x")
    assert ["--add", "--allow-principal", "User:x", "--operation", "Create", "--topic", "a"] in calls


def _order(**personal: object) -> dict[str, object]:
    data = {"order_no": "SO1", "ebp_code": "E1", "ebc_code": "C1", "ie_flag": "I",
            "goods_value": {"amount": "1.00", "currency": "CNY"}, **personal}  # fmt: skip
    return {"specversion": "1.0", "id": "1", "source": "/ceb/E1", "type": "cbec.order.declared",
            "time": "2025-11-10T08:00:00+08:00", "subject": "E1:SO1", "data": data}  # fmt: skip


def test_identity_card_numbers_carry_their_check_character() -> None:
    assert resident_id_valid("11010519491231002X")  # the example of GB 11643-1999
    assert not resident_id_valid("110105194912310020")
    assert not resident_id_valid("110105194913310021")  # month 13
    body = "44010619900307123"
    assert resident_id_valid(body + resident_id_check(body))
    assert all(resident_id_valid(fake_person(f"SO{n:014d}")["buyer_id_number"]) for n in range(0, 10**6, 997))


@pytest.mark.parametrize(
    ("personal", "field"),
    [
        ({"buyer_id_type": "1", "buyer_id_number": "110105194912310020"}, "data.buyer_id_number"),
        ({"buyer_phone": "138 0013 8000"}, "data.buyer_phone"),
        ({"consignee_phone": "Zhang 13800138000"}, "data.consignee_phone"),
        ({"buyer_id_type": "3"}, "data.buyer_id_type"),
        ({"consignee_address": "x" * 501}, "data.consignee_address"),
        ({"buyer_name": ""}, "data.buyer_name"),
    ],
)
def test_a_refused_personal_field_is_named_and_never_quoted(personal: dict[str, str], field: str) -> None:
    _key, value, headers = encode(_order(**personal), binary=False)
    with pytest.raises(DecodeError) as caught:
        decode(value, headers, catalog=CATALOG)
    assert caught.value.detail.startswith(field)
    for v in personal.values():
        if len(v) > 1:
            assert v not in caught.value.detail
            assert v[:8] not in caught.value.detail


def test_valid_personal_fields_are_taken_and_left_out_of_the_event_that_travels() -> None:
    person = fake_person("SO00000000012345")
    _key, value, headers = encode(_order(**person), binary=True)
    event = decode(value, headers, catalog=CATALOG)
    assert isinstance(event.data, OrderDeclared)
    assert event.data.buyer_name == person["buyer_name"]
    travels = str(event.without_personal_data())
    assert all(v not in travels for v in person.values() if len(v) > 1)
    assert OrderDeclared.personal_fields() == set(person)


def test_simulated_import_orders_carry_fake_personal_data() -> None:
    events = simulate(cases=200, seed=3, start_s=1.7e9, span_s=86400)
    orders = [e for e in events if e["type"] == "cbec.order.declared"]
    imports = [o for o in orders if o["data"]["ie_flag"] == "I"]
    assert imports
    assert all(o["data"]["buyer_id_number"].startswith("000000") for o in imports)  # no such region
    assert all(o["data"]["buyer_phone"].startswith("100") for o in imports)  # no such mobile prefix
    assert all("buyer_name" not in o["data"] for o in orders if o["data"]["ie_flag"] == "E")


def test_the_acls_command_serves_every_process_with_a_principal(capsys: pytest.CaptureFixture[str]) -> None:
    from services.cli import main
    from services.tools.acls import processes

    for process in processes():
        assert main(["acls", process, "--principal", "User:someone"]) == 0
        printed = capsys.readouterr().out.splitlines()
        assert printed, process
        assert all(line.startswith("kafka-acls.sh ") and "User:someone" in line for line in printed)


def test_the_topics_command_prints_what_the_worker_creates(capsys: pytest.CaptureFixture[str]) -> None:
    from services.cli import main

    assert main(["topics", "cycle"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert any("--topic cases.customs.v1 " in line for line in printed)  # an input of the derived service
    assert all(line.startswith("kafka-topics.sh --bootstrap-server ") for line in printed)
