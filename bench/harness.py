"""`make bench`: runs every bench module and prints one `name: value` line per figure.

Each module in this package with a ``run(report)`` function is a benchmark; ``report(name, value)``
prints the line at once (so a long bench shows progress). Baselines are measured in the same run so
ratios, not absolute numbers, carry across machines.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from typing import Annotated

import typer

MODULES = [
    "bench_ingest", "bench_analyze", "bench_sentiment", "bench_events", "bench_incidents", "bench_rules",
    "bench_backends",
    "bench_pipeline", "bench_dashboard", "bench_scale", "bench_soak",
]


def report(name: str, value: float | int | str) -> None:
    """Print one figure."""
    if isinstance(value, float):
        value = f"{value:.4g}" if abs(value) < 1e6 else f"{value:.0f}"
    sys.stdout.write(f"{name}: {value}\n")
    sys.stdout.flush()


def bench(only: Annotated[list[str] | None, typer.Argument(help="bench modules to run (default: all)")] = None
          ) -> None:
    """Run the benchmarks."""
    logging.basicConfig(level=logging.WARNING)
    names = only or MODULES
    for name in names:
        module_name = name if name.startswith("bench_") else f"bench_{name}"
        try:
            module = importlib.import_module(f"bench.{module_name}")
        except ModuleNotFoundError as exc:
            report(f"{module_name}.skipped", f"module missing ({exc.name})")
            continue
        started = time.perf_counter()
        try:
            module.run(report)
        except Exception as exc:  # one broken bench must not hide the others' figures
            report(f"{module_name}.error", f"{type(exc).__name__}: {exc}")
        report(f"{module_name}.wall_s", time.perf_counter() - started)


if __name__ == "__main__":
    typer.run(bench)
