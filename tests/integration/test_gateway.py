"""The HTTP gateway as a producer meets it: a running ``tradepulse gateway`` on the real broker, a real
HTTP client, and the official CloudEvents SDK writing the requests (structured, binary, batch).
Who may send what, bad input, limits, the rate limit, Kafka going away and coming back, SIGHUP,
and the acceptance: events through the gateway give the same indicator records as events
produced to Kafka directly."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
import yaml
from cloudevents.v1.conversion import to_binary, to_dict, to_structured
from cloudevents.v1.http import CloudEvent

from services.devstack.kafka import KafkaNode
from services.devstack.probe import web_get
from services.devstack.process import free_port, tail
from services.gateway.credentials import hash_key
from tests.batch_customs import compare
from tests.integration.harness import (
    REPO,
    Gateway,
    StartWorker,
    eventually,
    input_topics,
    latest,
    produce,
    read_to_end,
    spawn_gateway,
    start_gateway,
    stop_gateway,
    worker_env,
)
from tests.integration.test_customs import CUSTOMS, TOPIC

CUSTOMS_KEY, BANK_KEY, SLOW_KEY = (
    "tpk_customs-test-key-0001",
    "tpk_bank-test-key-0002",
    "tpk_slow-test-key-0003",
)


def _credentials(path: Path, *, customs_types: tuple[str, ...] = ("customs.*",)) -> Path:
    entries = [
        {"name": "singlewindow", "key_sha256": hash_key(CUSTOMS_KEY), "sources": ["/singlewindow/"],
         "types": list(customs_types)},
        {"name": "bank", "key_sha256": hash_key(BANK_KEY), "sources": ["/cips/"], "types": ["cips.*"]},
        {"name": "slow", "key_sha256": hash_key(SLOW_KEY), "sources": ["/singlewindow/"],
         "types": ["customs.*"], "rate_per_s": 1, "burst": 2},
    ]  # fmt: skip
    path.write_text(yaml.safe_dump({"credentials": entries}))
    return path


def _start(
    bootstrap: str, prefix: str, tmp_path: Path, *, credentials: Path | None = None, **extra: str
) -> Gateway:
    credentials = credentials or _credentials(tmp_path / "credentials.yaml")
    return start_gateway(bootstrap, prefix, tmp_path, credentials=credentials, **extra)


@pytest.fixture
def gateway(kafka_bootstrap: str, prefix: str, tmp_path: Path) -> Iterator[Gateway]:
    asyncio.run(input_topics(kafka_bootstrap, prefix))
    started = _start(kafka_bootstrap, prefix, tmp_path)
    yield started
    stop_gateway(started)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def sdk_event(event: dict[str, Any]) -> CloudEvent:
    attributes = {k: v for k, v in event.items() if k not in ("data", "specversion")}
    return CloudEvent(attributes, event["data"])


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes | io.BytesIO, headers: dict[str, str]
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with http.post(url, data=body, headers=headers) as response:
        text = await response.read()
        return response.status, (orjson.loads(text) if text else {}), dict(response.headers)


def structured(event: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    headers, body = to_structured(sdk_event(event))
    return dict(headers), body


def batch_of(events: list[dict[str, Any]]) -> tuple[dict[str, str], bytes]:
    body = orjson.dumps([to_dict(sdk_event(e)) for e in events])
    return {"Content-Type": "application/cloudevents-batch+json"}, body


EVENTS = CUSTOMS.simulate(cases=20, seed=81, start_s=CUSTOMS.start_s, span_s=CUSTOMS.span_s)
CUSTOMS_EVENTS = [e for e in EVENTS if e["source"].startswith("/singlewindow/")]


async def test_each_mode_of_the_sdk_is_written_to_its_topic_keyed_by_subject(
    gateway: Gateway, http: aiohttp.ClientSession, kafka_bootstrap: str, prefix: str
) -> None:
    one, two, rest = CUSTOMS_EVENTS[0], CUSTOMS_EVENTS[1], CUSTOMS_EVENTS[2:12]
    headers, body = structured(one)
    assert (await post(http, gateway.url, body, {**headers, **bearer(CUSTOMS_KEY)}))[0] == 202
    headers, body = to_binary(sdk_event(two))
    assert (await post(http, gateway.url, body, {**dict(headers), **bearer(CUSTOMS_KEY)}))[0] == 202
    headers, body = batch_of(rest)
    status, answer, _ = await post(http, gateway.url, body, {**headers, "X-API-Key": CUSTOMS_KEY})
    assert (status, answer) == (202, {"accepted": len(rest)})
    written = await read_to_end(kafka_bootstrap, prefix + TOPIC)
    assert sorted((r.key or b"").decode() for r in written) == sorted(e["subject"] for e in [one, two, *rest])
    ids = set()
    for r in written:
        h = dict(r.headers)
        ids.add(orjson.loads(r.value)["id"] if "ce_id" not in h else h["ce_id"].decode())
    assert ids == {e["id"] for e in [one, two, *rest]}
    assert gateway.metric("tradepulse_gateway_events_total", topic=TOPIC) == 12


async def test_who_may_send_what(
    gateway: Gateway, http: aiohttp.ClientSession, kafka_bootstrap: str, prefix: str
) -> None:
    headers, body = structured(CUSTOMS_EVENTS[0])
    status, problem, answer_headers = await post(http, gateway.url, body, headers)
    assert status == 401
    assert "WWW-Authenticate" in answer_headers
    assert (await post(http, gateway.url, body, {**headers, **bearer("tpk_wrong")}))[0] == 401
    status, problem, answer_headers = await post(http, gateway.url, body, {**headers, **bearer(BANK_KEY)})
    assert status == 403
    assert answer_headers["Content-Type"].startswith("application/problem+json")
    assert problem["errors"] == [{"field": "source", "rule": "this credential may not send this source"}]
    other_source = {**CUSTOMS_EVENTS[0], "source": "/bank/5141"}
    headers, body = structured(other_source)
    assert (await post(http, gateway.url, body, {**headers, **bearer(CUSTOMS_KEY)}))[0] == 403
    log = gateway.log.read_text()
    assert log.count('"credential":"bank"') == 1
    assert log.count('"credential":"anonymous"') == 2  # each refusal, none thinned out
    assert BANK_KEY not in log
    assert CUSTOMS_KEY not in log
    assert (
        gateway.metric("tradepulse_gateway_refusals_total", credential="bank", reason="source_not_granted")
        == 1
    )
    assert gateway.metric("tradepulse_gateway_requests_total", status="401", credential="anonymous") == 2
    assert await read_to_end(kafka_bootstrap, prefix + TOPIC) == []


async def test_a_batch_with_one_bad_event_is_refused_whole_naming_index_field_and_rule(
    gateway: Gateway, http: aiohttp.ClientSession, kafka_bootstrap: str, prefix: str
) -> None:
    events = [dict(e) for e in CUSTOMS_EVENTS[:5]]
    events[3] = {**events[3], "data": {k: v for k, v in events[3]["data"].items() if k != "entry_id"}}
    headers, body = batch_of(events)
    status, problem, _ = await post(http, gateway.url, body, {**headers, **bearer(CUSTOMS_KEY)})
    assert status == 400
    assert problem["status"] == 400
    assert problem["errors"] == [{"index": 3, "field": "data.entry_id", "rule": "Field required"}]
    unknown = {**CUSTOMS_EVENTS[0], "type": "customs.declaration.teleported"}
    headers, body = batch_of([CUSTOMS_EVENTS[0], unknown])
    status, problem, _ = await post(http, gateway.url, body, {**headers, **bearer(CUSTOMS_KEY)})
    assert (status, problem["errors"][0]["index"], problem["errors"][0]["field"]) == (400, 1, "type")
    assert await read_to_end(kafka_bootstrap, prefix + TOPIC) == []  # nothing of either batch


async def test_limits_and_the_rate_limit(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    big = io.BytesIO(orjson.dumps([to_dict(sdk_event(CUSTOMS_EVENTS[0]))] * 501))
    headers = {"Content-Type": "application/cloudevents-batch+json", **bearer(CUSTOMS_KEY)}
    status, problem, _ = await post(http, gateway.url, big, headers)
    assert (status, problem["errors"][0]["rule"]) == (413, "at most 500 events per batch")
    huge = io.BytesIO(b"[" + b" " * (1 << 20) + b"]")
    assert (await post(http, gateway.url, huge, headers))[0] == 413
    headers_one, body = structured(CUSTOMS_EVENTS[0])
    answers = [await post(http, gateway.url, body, {**headers_one, **bearer(SLOW_KEY)}) for _ in range(3)]
    assert [a[0] for a in answers] == [202, 202, 429]
    assert int(answers[2][2]["Retry-After"]) >= 1
    assert (await post(http, gateway.url, b"{}", {"Content-Type": "text/plain", **bearer(CUSTOMS_KEY)}))[
        0
    ] == 415


async def test_credentials_reload_on_sighup_without_dropping_connections(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    headers, body = structured(CUSTOMS_EVENTS[0])
    assert (await post(http, gateway.url, body, {**headers, **bearer(CUSTOMS_KEY)}))[0] == 202

    def logged(line: str) -> int:
        return gateway.log.read_text().count(line)

    reloaded, refused = logged('"credentials reloaded"'), logged('"credentials not reloaded')
    _credentials(gateway.credentials, customs_types=("cips.*",))  # customs taken away
    gateway.proc.send_signal(signal.SIGHUP)
    assert await eventually(lambda: logged('"credentials reloaded"') > reloaded, timeout_s=10)
    assert (await post(http, gateway.url, body, {**headers, **bearer(CUSTOMS_KEY)}))[0] == 403  # same session
    gateway.credentials.write_text("credentials: [{name: broken}]")
    gateway.proc.send_signal(signal.SIGHUP)
    assert await eventually(lambda: logged('"credentials not reloaded') > refused, timeout_s=10)
    assert gateway.proc.poll() is None
    assert (await post(http, gateway.url, body, {**headers, **bearer(CUSTOMS_KEY)}))[
        0
    ] == 403  # the last good file


async def test_kafka_away_is_503_and_the_gateway_recovers(
    private_kafka: KafkaNode, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    await input_topics(private_kafka.bootstrap, "")
    gateway = _start(private_kafka.bootstrap, "", tmp_path, TRADEPULSE_GATEWAY_ACK_TIMEOUT_S="3")
    try:
        headers, body = structured(CUSTOMS_EVENTS[0])
        assert (await post(http, gateway.url, body, {**headers, **bearer(CUSTOMS_KEY)}))[0] == 202
        private_kafka.stop()
        status, _, answer_headers = await post(http, gateway.url, body, {**headers, **bearer(CUSTOMS_KEY)})
        assert (status, answer_headers.get("Retry-After")) == (503, "5")
        await asyncio.to_thread(private_kafka.start)  # it probes the broker with its own event loop
        deadline = time.monotonic() + 60
        while True:
            status, _, _ = await post(http, gateway.url, body, {**headers, **bearer(CUSTOMS_KEY)})
            if status == 202 or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        assert status == 202, tail(gateway.log, 20)
    finally:
        stop_gateway(gateway)


async def test_events_through_the_gateway_give_the_records_of_events_produced_directly(
    kafka_bootstrap: str, start_worker: StartWorker, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    events = CUSTOMS.simulate(cases=120, seed=82, start_s=CUSTOMS.start_s, span_s=CUSTOMS.span_s)
    direct, via = f"d{os.getpid()}{int(time.time())}.", f"g{os.getpid()}{int(time.time())}."
    await input_topics(kafka_bootstrap, via)
    gateway = _start(kafka_bootstrap, via, tmp_path)
    try:
        start_worker("customs", TRADEPULSE_TOPIC_PREFIX=direct, **CUSTOMS.fast)
        start_worker("customs", TRADEPULSE_TOPIC_PREFIX=via, **CUSTOMS.fast)
        await produce(kafka_bootstrap, direct + TOPIC, [structured_record(e) for e in events])
        for i in range(0, len(events), 50):
            headers, body = batch_of(events[i : i + 50])
            assert (await post(http, gateway.url, body, {**headers, **bearer(CUSTOMS_KEY)}))[0] == 202
        await CUSTOMS.settle(kafka_bootstrap, direct)
        await CUSTOMS.settle(kafka_bootstrap, via)
        by_direct = await latest(kafka_bootstrap, direct + "indicators.customs.v1")
        by_gateway = await latest(kafka_bootstrap, via + "indicators.customs.v1")
        assert compare(CUSTOMS.oracle(events), by_gateway) == []
        strip = ("revision", "final", "late_events")
        a = {k: {f: v for f, v in d.items() if f not in strip} for k, d in by_direct.items()}
        b = {k: {f: v for f, v in d.items() if f not in strip} for k, d in by_gateway.items()}
        diff = {
            k: {f: (v, b[k].get(f)) for f, v in a[k].items() if b[k].get(f) != v}
            for k in a
            if a[k] != b.get(k)
        }
        assert set(a) == set(b)
        assert diff == {}
    finally:
        stop_gateway(gateway)


def structured_record(event: dict[str, Any]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    return event["subject"].encode(), orjson.dumps(event), [("content-type", b"application/cloudevents+json")]


async def test_the_readme_curl_publishes_one_event_with_the_demo_credentials(
    kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## HTTP gateway") :]
    start = section.index("```sh\n") + 6
    command = section[start : section.index("\n```", start)]
    comment = command.split("\n# ")[1]
    await input_topics(kafka_bootstrap, prefix)
    gateway = _start(
        kafka_bootstrap,
        prefix,
        tmp_path,
        credentials=REPO / "deploy" / "gateway" / "credentials.example.yaml",
        TRADEPULSE_MAX_EVENT_AGE_S="34560000",  # the default: the README's event is of today
    )
    try:
        script = command.split("\n# ")[0].replace("127.0.0.1:6070", f"127.0.0.1:{gateway.port}")
        curl = await asyncio.create_subprocess_exec(
            "sh", "-c", script, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(curl.communicate(), timeout=30)
        assert curl.returncode == 0, err.decode()
        assert orjson.loads(out) == orjson.loads(comment)
        (record,) = await read_to_end(kafka_bootstrap, prefix + TOPIC)
        assert record.key == b"514120250000012345"
    finally:
        stop_gateway(gateway)


async def test_a_client_certificate_is_a_login_when_the_gateway_terminates_tls(
    kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    client = ca.issue_cert("singlewindow-client.example", common_name="singlewindow-client")
    client.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client.pem"))
    credentials = tmp_path / "tls-credentials.yaml"
    entry = {"name": "singlewindow-tls", "certificate_subject": "singlewindow-client",
             "sources": ["/singlewindow/"], "types": ["customs.*"]}  # fmt: skip
    credentials.write_text(yaml.safe_dump({"credentials": [entry]}))
    await input_topics(kafka_bootstrap, prefix)
    tls = {"TRADEPULSE_GATEWAY_TLS_CERTFILE": str(tmp_path / "server.pem"),
           "TRADEPULSE_GATEWAY_TLS_KEYFILE": str(tmp_path / "server.pem"),
           "TRADEPULSE_GATEWAY_TLS_CLIENT_CAFILE": str(tmp_path / "ca.pem")}  # fmt: skip
    port = free_port()
    env = worker_env(kafka_bootstrap, prefix, TRADEPULSE_GATEWAY_PORT=str(port),
                     TRADEPULSE_GATEWAY_CREDENTIALS_FILE=str(credentials), **tls)  # fmt: skip
    log = tmp_path / "tls-gateway.log"
    proc = spawn_gateway(env, log)
    gateway = Gateway(proc, port, log, credentials)
    url = f"https://127.0.0.1:{port}/events"
    with_cert = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with_cert.load_cert_chain(str(tmp_path / "client.pem"))
    without = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    headers, body = structured(CUSTOMS_EVENTS[0])
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, tail(log, 30)
                try:
                    async with session.post(url, data=body, headers=headers, ssl=without) as answer:
                        status = answer.status
                    break
                except aiohttp.ClientConnectionError:
                    assert time.monotonic() < deadline, tail(log, 30)
                    await asyncio.sleep(0.3)
            assert status == 401  # TLS alone is no login
            async with session.post(url, data=body, headers=headers, ssl=with_cert) as answer:
                assert answer.status == 202, await answer.text()
    finally:
        stop_gateway(gateway)


@pytest.mark.parametrize(
    "source",
    [
        "/singlewindow/../etax/4401",
        "/singlewindow/%2e%2e/etax",
        "/singlewindow%2Fetax",
        "/singlewindowX/5141",
    ],
)
async def test_a_source_outside_the_grant_never_passes_for_one_inside_it(
    gateway: Gateway, http: aiohttp.ClientSession, kafka_bootstrap: str, prefix: str, source: str
) -> None:
    """Grants were string prefixes: /singlewindow/../etax/4401 was written to Kafka (202)."""
    headers, body = structured({**CUSTOMS_EVENTS[0], "source": source})
    status, problem, _ = await post(http, gateway.url, body, {**headers, **bearer(CUSTOMS_KEY)})
    assert status == 403
    assert problem["errors"] == [{"field": "source", "rule": "this credential may not send this source"}]
    # binary mode: header values are percent-encoded (the HTTP binding), so the source as sent
    binary_headers = {**_binary_headers(CUSTOMS_EVENTS[0]), "ce-source": quote(source), **bearer(CUSTOMS_KEY)}
    assert (await post(http, gateway.url, orjson.dumps(CUSTOMS_EVENTS[0]["data"]), binary_headers))[0] == 403
    assert await read_to_end(kafka_bootstrap, prefix + TOPIC) == []


async def test_a_key_learns_nothing_of_the_rules_of_a_topic_it_may_not_write(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    """An event outside the grant with invalid data was a 400 naming the data rule it broke."""
    invalid = {**CUSTOMS_EVENTS[0], "data": {"no": "such field"}}
    headers, body = structured(invalid)
    status, problem, _ = await post(http, gateway.url, body, {**headers, **bearer(BANK_KEY)})
    assert status == 403
    assert problem["errors"] == [{"field": "source", "rule": "this credential may not send this source"}]
    assert "entry_id" not in orjson.dumps(problem).decode()


def _binary_headers(event: dict[str, Any]) -> dict[str, str]:
    headers, _ = to_binary(sdk_event(event))
    return dict(headers)


def _start_with(bootstrap: str, prefix: str, tmp_path: Path, env: dict[str, Any]) -> Gateway:
    return _start(bootstrap, prefix, tmp_path, **env)


def _half_sent_body() -> bytes:
    """A request's head, whole, and the first byte of a 1,000-byte body."""
    head = (
        "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\n"
        f"Authorization: Bearer {CUSTOMS_KEY}\r\nContent-Length: 1000\r\n\r\n{{"
    )
    return head.encode()


async def test_slow_and_greedy_clients_are_cut_off_and_counted(
    kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    """4,000 half-sent requests were held 150 s and none was closed: one client could take every
    socket the process may open."""
    await input_topics(kafka_bootstrap, prefix)
    limits = {"TRADEPULSE_GATEWAY_HEADER_TIMEOUT_S": "1", "TRADEPULSE_GATEWAY_BODY_TIMEOUT_S": "1",
              "TRADEPULSE_GATEWAY_MAX_CONNECTIONS": "20"}  # fmt: skip
    gateway = await asyncio.to_thread(_start_with, kafka_bootstrap, prefix, tmp_path, limits)
    try:
        # a head that never ends
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(b"POST /events HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""  # closed by the gateway
        writer.close()
        # a body that never ends
        _, body_writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        body_writer.write(_half_sent_body())
        await body_writer.drain()

        def cut_off(phase: str) -> bool:
            return gateway.metric("tradepulse_gateway_slow_clients_total", phase=phase) == 1

        assert await eventually(lambda: cut_off("body"), timeout_s=10)
        assert cut_off("headers")
        body_writer.close()
        # more connections than the process takes: the surplus is closed at once, counted
        held = [await asyncio.open_connection("127.0.0.1", gateway.port) for _ in range(25)]
        surplus = [await asyncio.wait_for(r.read(), timeout=5) for r, _ in held[20:]]
        assert surplus == [b""] * 5  # closed at once
        for _, w in held:
            w.close()

        ours = []  # the page needs a connection of its own: refused (and counted) until the held ones go

        def answered() -> bool:
            status, _ = web_get(gateway.port, "/metrics")
            ours.append(status)
            return status == 200

        assert await eventually(answered, timeout_s=10)
        refused_ours = sum(1 for status in ours if status == 0)
        assert gateway.metric("tradepulse_gateway_connections_refused_total") == 5 + refused_ours
        # and the gateway still answers
        async with aiohttp.ClientSession() as http:
            headers, body = structured(CUSTOMS_EVENTS[0])
            assert (await post(http, gateway.url, body, {**headers, **bearer(CUSTOMS_KEY)}))[0] == 202
    finally:
        stop_gateway(gateway)


async def test_one_credential_holds_at_most_its_share_of_concurrent_requests(
    kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    await input_topics(kafka_bootstrap, prefix)
    limits = {
        "TRADEPULSE_GATEWAY_MAX_CONCURRENT_PER_CREDENTIAL": "2",
        "TRADEPULSE_GATEWAY_BODY_TIMEOUT_S": "5",
    }
    gateway = await asyncio.to_thread(_start_with, kafka_bootstrap, prefix, tmp_path, limits)
    try:
        slow = []
        for _ in range(2):  # two requests whose bodies are still on their way
            _, w = await asyncio.open_connection("127.0.0.1", gateway.port)
            w.write(_half_sent_body())
            await w.drain()
            slow.append(w)
        await asyncio.sleep(0.5)
        async with aiohttp.ClientSession() as http:
            headers, body = structured(CUSTOMS_EVENTS[0])
            status, problem, _ = await post(http, gateway.url, body, {**headers, **bearer(CUSTOMS_KEY)})
            assert (status, problem["errors"][0]["rule"]) == (
                429,
                "at most 2 requests at once per credential",
            )
            assert (await post(http, gateway.url, body, {**headers, **bearer(BANK_KEY)}))[
                0
            ] == 403  # others go on
        for w in slow:
            w.close()
    finally:
        stop_gateway(gateway)
