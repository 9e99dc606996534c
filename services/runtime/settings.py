"""Typed settings, read from the environment once, at start-up.

Every variable is listed in docs/configuration.md; a test keeps the two in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from services.runtime.security import FileSecretsSettings, KafkaSecurity

__all__ = ["LOCAL_DATABASE_URL", "LOCAL_KAFKA", "STATE_DIR", "Settings", "load_settings"]

STATE_DIR = Path(__file__).resolve().parents[2] / ".tradepulse" / "state"
LOCAL_KAFKA = "127.0.0.1:19092"
LOCAL_DATABASE_URL = "postgresql://tradepulse@127.0.0.1:15432/tradepulse"


class Settings(FileSecretsSettings):
    """TradePulse settings. ``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL`` and the ``KAFKA_*``
    security settings keep their common names; everything else carries the ``TRADEPULSE_`` prefix.
    ``DATABASE_URL`` may come from a file (``DATABASE_URL_FILE``)."""

    model_config = SettingsConfigDict(
        env_prefix="TRADEPULSE_", extra="ignore", frozen=True, env_ignore_empty=True
    )

    kafka_bootstrap_servers: Annotated[
        str, Field(validation_alias="KAFKA_BOOTSTRAP_SERVERS", min_length=1)
    ] = LOCAL_KAFKA
    database_url: Annotated[SecretStr, Field(validation_alias="DATABASE_URL")] = SecretStr(LOCAL_DATABASE_URL)
    topic_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]*$")] = ""
    topic_partitions: Annotated[int, Field(ge=1, le=1024)] = 4
    topic_replication: Annotated[int, Field(ge=1, le=16)] = 1
    dedup_horizon_s: Annotated[float, Field(gt=0)] = 7 * 24 * 3600.0
    max_record_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 262_144
    max_clock_skew_s: Annotated[float, Field(ge=0)] = 300.0
    # contract section 1: older events are refused (400 days covers a year of replayed history)
    max_event_age_s: Annotated[float, Field(gt=0)] = 400 * 86400.0
    batch_max_events: Annotated[int, Field(ge=1, le=100_000)] = 2000
    batch_within_s: Annotated[float, Field(gt=0, le=10)] = 0.2
    commit_interval_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    session_timeout_s: Annotated[float, Field(ge=6, le=300)] = 10.0
    # Faust's livelock check: a partition with records waiting that no batch of took in this long
    # is logged as an ERROR (the stream stopped, or one batch takes this long)
    stream_processing_timeout_s: Annotated[float, Field(gt=0)] = 300.0
    gc_gen0_threshold: Annotated[int, Field(ge=100, le=10_000_000)] = 50_000
    web_host: str = "127.0.0.1"
    web_port: Annotated[int | None, Field(ge=0, le=65535)] = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"
    startup_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    stop_timeout_s: Annotated[float, Field(gt=0, le=300)] = 8.0
    create_topics: bool = True
    # Local copies of the state (RocksDB, a folder per state topic and partition); the state topic
    # is the source of truth, so losing the folder costs a rebuild from the topic, nothing more.
    state_dir: Path = STATE_DIR
    # Memory for state besides what every worker has (about 150 MB): RocksDB's cache and memtables
    # take half, decoded cases the other half. 512 suits a worker given 2 GB (docs/performance.md).
    state_cache_mb: Annotated[int, Field(ge=16, le=1_048_576)] = 512
    kafka: Annotated[KafkaSecurity, Field(default_factory=KafkaSecurity, exclude=True)]

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _hosts_have_ports(cls, value: str) -> str:
        for host in value.split(","):
            name, _, port = host.strip().removeprefix("kafka://").rpartition(":")
            if not name or not port.isdigit():
                msg = f"expected host:port[,host:port...], got {value!r}"
                raise ValueError(msg)
        return value

    def topic(self, name: str) -> str:
        """The physical topic name: the contract name behind the optional test prefix."""
        return f"{self.topic_prefix}{name}"

    def bootstrap_list(self) -> list[str]:
        """Bootstrap servers as ``host:port`` strings."""
        return [h.strip().removeprefix("kafka://") for h in self.kafka_bootstrap_servers.split(",")]

    def kafka_client(self) -> dict[str, Any]:
        """Keyword arguments of every aiokafka client: the bootstrap servers and the security."""
        return {"bootstrap_servers": self.bootstrap_list(), **self.kafka.aiokafka()}

    def port_for(self, default: int) -> int:
        """The web (metrics, health) port: ``TRADEPULSE_WEB_PORT``, else the service's own."""
        return self.web_port if self.web_port is not None else default


S = TypeVar("S", bound=Settings)


def load_settings(kind: type[S]) -> S:
    """Read settings (``Settings``, or a subclass for a process with its own) from the environment;
    raises pydantic's ValidationError naming the variable."""
    return kind()
