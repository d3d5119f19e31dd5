"""Fixtures for the ticket tests: a migrated SQLite database copied from a per-session template."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.db.models import UnitRow
from core.db.session import Database


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tpl") / "template.sqlite"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    with db.transaction() as s:
        s.add_all([
            UnitRow(id="env", name="生态环境局", supervisor="gov-office"),
            UnitRow(id="housing", name="住建局", supervisor="gov-office"),
            UnitRow(id="police", name="公安局", supervisor=None),
            UnitRow(id="gov-office", name="政府办", supervisor=None),
        ])
    db.close()
    return path


@pytest.fixture()
def db(template_db: Path, tmp_path: Path) -> Iterator[Database]:
    path = tmp_path / "t.sqlite"
    shutil.copy(template_db, path)
    database = Database(f"sqlite:///{path}")
    yield database
    database.close()
