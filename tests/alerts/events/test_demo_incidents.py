"""The demo's injected incidents each become one clean event, in publication order and in bus order.

A shortened replay of the soak's stream (``bench/bench_incidents.py``: the stock incidents of the first
quarter hour at a modest background rate), analysed by the shipped analyzer and clustered by a fresh
clusterer. Everyday posts about the same compounds and firms (the demo's background reuses them) must not
collect in an incident's event, and an incident must not be split.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.bench_incidents import bus_order, incident_figures, replay

RATE_PER_S = 3.0
MINUTES = 12.0  # the last stock incident (a5, wage arrears) starts at 10 min
MAX_BACKGROUND_SHARE = 0.10
INCIDENTS = ("a7-chemical-plant", "a3-school-food-poisoning", "a2-property-water-cut", "a5-wage-arrears")


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict[str, int]]]:
    analysed, incident_of, _ = replay(rate_per_s=RATE_PER_S, seconds=MINUTES * 60.0,
                                      data_dir=Path(tmp_path_factory.mktemp("incidents")))
    span = (analysed[-1].published_at - analysed[0].published_at).total_seconds()
    busy = bus_order(analysed, per_post_s=0.9 * span / len(analysed))  # a stage 90 % busy, as the bench
    return {"publication": incident_figures(analysed, incident_of), "bus": incident_figures(busy, incident_of)}


@pytest.mark.parametrize("order", ["publication", "bus"])
@pytest.mark.parametrize("name", INCIDENTS)
def test_incident_event_has_few_everyday_posts(figures: dict[str, dict[str, dict[str, int]]], name: str,
                                               order: str) -> None:
    f = figures[order][name]
    assert f["posts"] >= 20
    # Everyday posts about the incident's compound or firm stay out of its event ...
    assert f["main_size"] - f["in_main"] <= MAX_BACKGROUND_SHARE * f["main_size"], f
    # ... and nearly all of the incident is in it.
    assert f["in_main"] >= 0.9 * f["posts"], f


@pytest.mark.parametrize("order", ["publication", "bus"])
@pytest.mark.parametrize("name", INCIDENTS)
def test_incident_is_one_event(figures: dict[str, dict[str, dict[str, int]]], name: str, order: str) -> None:
    f = figures[order][name]
    assert f["events"] == 1 and f["in_main"] == f["posts"], f
