"""Shared service fixtures: where the Kafka, Elasticsearch and PostgreSQL test servers are.

``make test`` runs ``deploy/test-services.sh start``, which exports the variables read here. Outside
it the tests needing a server are skipped with a message saying so; under CI (``CI`` set) a missing
server fails the run instead, so a pipeline can never pass by silently skipping them.
"""

from __future__ import annotations

import os

import pytest

_HOW = "run through `make test`, which starts noida-db (or eval \"$(deploy/test-services.sh start)\")"


def _service_env(*names: str) -> str:
    """The first set variable among ``names``; skip (or fail under CI) when none is set."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    message = f"{names[0]} not set: {_HOW}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so a missing test server is an error, not a skip)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """host:port of a Kafka-protocol server (YUQING_KAFKA_BOOTSTRAP)."""
    return _service_env("YUQING_KAFKA_BOOTSTRAP")


@pytest.fixture(scope="session")
def es_url() -> str:
    """Base URL of an Elasticsearch-API server (YUQING_ES_URL)."""
    return _service_env("YUQING_ES_URL")


@pytest.fixture(scope="session")
def pg_url() -> str:
    """SQLAlchemy URL of a throw-away PostgreSQL database (YUQING_TEST_DATABASE_URL, YUQING_DATABASE_URL)."""
    return _service_env("YUQING_TEST_DATABASE_URL", "YUQING_DATABASE_URL")


@pytest.fixture(autouse=True)
def _default_ticket_channels():
    """A container built by one test sets this process's ticket channels; the next test starts from the default."""
    from alerts.notifiers import channels

    yield
    channels.configure(wecom=False, webhook=False)
