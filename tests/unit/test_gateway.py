"""The gateway without a server: credentials files, grants, the token bucket, and the OpenAPI
document against the code (routes and every answer the handler can give)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from services.gateway import app, openapi
from services.gateway.credentials import CredentialsError, hash_key, load, new_key

ROOT = Path(__file__).resolve().parents[2]


def test_the_openapi_document_lists_every_answer_the_handler_gives() -> None:
    tree = ast.parse(Path(app.__file__).read_text())
    given = {
        str(node.args[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("Problem", "Refusal")
        and node.args and isinstance(node.args[0], ast.Constant)
    }  # fmt: skip
    given |= {"202"}
    assert given == set(openapi.STATUSES)
    doc = openapi.document()
    assert set(doc["paths"]) == set(app.ROUTES)
    assert set(doc["paths"]["/events"]["post"]["responses"]) == set(openapi.STATUSES)
    assert (ROOT / "schemas" / openapi.FILE).read_text() == openapi.text()


def test_the_example_credentials_load_and_grant_what_they_say() -> None:
    grants = load(ROOT / "deploy" / "gateway" / "credentials.example.yaml")
    demo = grants.for_key("tpk_demo-local-only-not-secret")
    assert demo is not None
    assert demo.allows("/singlewindow/5141", "customs.declaration.accepted") is None
    assert demo.allows("/cips/gateway", "customs.declaration.accepted") == "source"
    assert demo.allows("/singlewindow/5141", "cips.payment.initiated") == "type"
    assert grants.for_key("tpk_wrong") is None


@pytest.mark.parametrize(
    ("entries", "named"),
    [
        ([{"name": "a", "sources": ["/x/"], "types": ["x.*"]}], "give key_sha256 or certificate_subject"),
        ([{"name": "a", "key_sha256": "00", "sources": ["/x/"], "types": ["x.*"]}],
         "credentials.0.key_sha256"),
        ([{"name": "a", "key_sha256": hash_key("k"), "sources": [], "types": ["x.*"]}],
         "credentials.0.sources"),
        ([{"name": "a", "key_sha256": hash_key("k"), "sources": ["/x/"], "types": ["x.*"]},
          {"name": "a", "key_sha256": hash_key("j"), "sources": ["/x/"], "types": ["x.*"]}], "used twice"),
        ([{"name": "a", "key_sha256": hash_key("k"), "sources": ["/x/"], "types": ["x.*"], "secret": "k"}],
         "credentials.0.secret"),
    ],
)  # fmt: skip
def test_a_bad_credentials_file_is_refused_naming_the_entry(
    tmp_path: Path, entries: list[dict[str, object]], named: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"credentials": entries}))
    with pytest.raises(CredentialsError, match=re.escape(named)) as caught:
        load(path)
    assert str(path) in str(caught.value)


def test_keys_are_random_and_only_their_hash_is_kept() -> None:
    (a, ha), (b, hb) = new_key(), new_key()
    assert a != b
    assert len(a) > 30
    assert (ha, hb) == (hash_key(a), hash_key(b))
    assert a not in ha


def test_the_token_bucket_grants_the_burst_then_the_rate() -> None:
    bucket = app.Bucket(rate=10.0, burst=5.0)
    assert bucket.take(5) == 0
    wait = bucket.take(3)
    assert 0.25 <= wait <= 0.31  # 3 tokens at 10 a second, less what trickled in meanwhile
