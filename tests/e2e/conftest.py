"""End-to-end tests use the integration fixtures: the session's real broker and database."""

from tests.integration.conftest import database_url, kafka_bootstrap, prefix, start_worker

__all__ = ["database_url", "kafka_bootstrap", "prefix", "start_worker"]
