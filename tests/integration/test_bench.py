"""`tradepulse bench customs` end to end on the real broker, small: every variant (the Quix Streams
peer too) runs, the JSON
carries what docs/performance.md quotes. (Speed itself is never asserted: machines are noisy.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.tools.bench import run_bench


@pytest.fixture
def on_the_session_broker(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """KAFKA_BOOTSTRAP_SERVERS names the session's broker: the benchmark uses it."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    return kafka_bootstrap


@pytest.mark.timeout(240)
@pytest.mark.usefixtures("on_the_session_broker")
def test_the_customs_benchmark_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "customs.json"
    run_bench(events=6000, partitions=4, out=out, rate=100.0, latency_s=4.0, rounds=1)
    report = json.loads(out.read_text())
    rates = report["events_per_s"]
    assert set(rates) == {
        "raw_aiokafka_decode",
        "faust_empty_agent",
        "faust_batch_agent",
        "customs_pipeline",
        "quix_streams",
    }
    assert all(rate > 0 for rate in rates.values()), rates
    assert report["events"] == 6000
    assert report["ratio_c_over_b"] == pytest.approx(
        rates["customs_pipeline"] / rates["faust_empty_agent"], rel=1e-2
    )
    assert report["ratio_c_over_b_by_round"] == [report["ratio_c_over_b"]]
    over_quix = rates["customs_pipeline"] / rates["quix_streams"]
    assert report["ratio_over_quix"] == pytest.approx(over_quix, rel=1e-2)
    assert report["latency"]["indicator_interval_s"] == 0.25  # the defaults: the latency the user gets
    assert report["latency"]["probes"] > 0
    assert 0 < report["latency"]["p50_s"] <= report["latency"]["p99_s"]


@pytest.mark.timeout(240)
def test_the_gateway_benchmark_writes_both_routes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a broker of its own (KAFKA_BOOTSTRAP_SERVERS unset, also when the suite runs against an
    external broker)."""
    from services.tools.bench_gateway import run_gateway_bench

    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)

    out = tmp_path / "gateway.json"
    run_gateway_bench(events=400, out=out, rounds=1, batch=50, concurrency=4)
    report = json.loads(out.read_text())
    assert set(report["events_per_s"]) == {"gateway_single", "direct_single", "gateway_batch", "direct_batch"}
    assert all(rate > 0 for rate in report["events_per_s"].values())
    assert all(ms > 0 for ms in report["p99_ms"].values())
    assert report["ratio_gateway_over_direct"]["batch"] == pytest.approx(
        report["events_per_s"]["gateway_batch"] / report["events_per_s"]["direct_batch"], rel=1e-2
    )
    assert report["machine"]["kafka"].startswith("Apache Kafka 4.")


@pytest.mark.timeout(300)
def test_the_comparison_runs_an_older_commit_against_the_working_tree(
    tmp_path: Path, on_the_session_broker: str
) -> None:
    from services.tools.bench_compare import run_compare

    out = tmp_path / "compare.json"
    run_compare(old="HEAD", target="customs", events=1500, rounds=1, out=out)
    report = json.loads(out.read_text())
    assert set(report["events_per_s"]) == {"old", "new"}
    assert all(rate > 0 for rate in report["events_per_s"].values())
    # CPU time moves in ticks of 10 ms: on so few records one side may read 0; together they did work
    assert set(report["cpu_us_per_event"]) == {"old", "new"}
    assert sum(report["cpu_us_per_event"].values()) > 0
    assert report["new_over_old_by_round"] == [report["new_over_old"]]
    assert report["machine"]["kafka"] == on_the_session_broker
