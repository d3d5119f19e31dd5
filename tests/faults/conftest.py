"""Fixtures of the scale-mode fault tests: isolated deployments on the shared or a private noida-db."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.faults.scale import EVENT_POSTS, PrivateNoida, Scale, demo_posts, fresh_database, sentiment_model


@pytest.fixture
def deployments(tmp_path: Path, pg_url: str) -> Iterator[Callable[..., Scale]]:
    """A factory of isolated scale deployments (own prefixes and ``yq_fault_*`` database), cleaned up after."""
    with ExitStack() as stack:

        def make(*, bootstrap: str, es_url: str, partitions: int = 3, name: str = "run",
                 extra_env: dict[str, str] | None = None) -> Scale:
            db_url = stack.enter_context(fresh_database(pg_url))
            scale = Scale(bootstrap=bootstrap, es_url=es_url, db_url=db_url, workdir=tmp_path / name,
                          partitions=partitions, extra_env=dict(extra_env or {}))
            scale.workdir.mkdir(parents=True, exist_ok=True)
            stack.callback(scale.close)  # LIFO: workers stop before their database is dropped
            return scale

        yield make


@pytest.fixture
def private_noida(tmp_path: Path) -> Iterator[PrivateNoida]:
    """A noida-db of this test's own, for stopping and starting its services."""
    server = PrivateNoida(tmp_path / "noida")
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture(scope="session")
def analyzed_demo(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """Demo posts through the real analyze stage once per session (the event-stage fault tests feed these)."""
    from core.settings import Settings
    from core.wiring import Container

    # A slow background so the first minute's incident (the chemical plant, in the stream from 5 s) is most of
    # the input: the event-stage faults must be judged on posts that open tickets, not on everyday chatter.
    posts = demo_posts(EVENT_POSTS, seed=31, rate_per_min=60.0)
    container = Container(Settings(mode="embedded", data_dir=tmp_path_factory.mktemp("analyze"), database_url="",
                                   analyze={"sentiment_model": sentiment_model()}))
    try:
        return container.analyzer.analyze(posts)
    finally:
        container.close()
