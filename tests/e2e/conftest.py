"""End-to-end test helpers: each test's outcome is kept on its item so fixtures can save evidence on failure."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """Store the report of each phase as ``item.rep_<phase>`` (e.g. ``rep_call.failed``)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)
