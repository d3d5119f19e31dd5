"""The incident-purity bench: the soak's stream analysed and clustered, figures per incident."""

from __future__ import annotations

from pathlib import Path

from bench.bench_incidents import incident_figures, replay


def test_replay_tags_incident_posts_and_the_first_incident_becomes_one_event(tmp_path: Path) -> None:
    analysed, incident_of, analysis_s = replay(rate_per_s=4.0, seconds=60.0, data_dir=tmp_path)
    assert analysis_s > 0 and len(analysed) > len(incident_of) > 20
    assert [p.published_at for p in analysed] == sorted(p.published_at for p in analysed)
    assert set(incident_of.values()) == {"a7-chemical-plant"}  # the only incident that starts in the first minute
    figures = incident_figures(analysed, incident_of)
    a7 = figures["a7-chemical-plant"]
    assert a7["posts"] == len(incident_of)
    # Reposts, copies and eyewitness posts told in other words: one event, and everyday posts stay out of it.
    assert a7["events"] == 1 and a7["in_main"] == a7["posts"]
    assert a7["main_size"] - a7["in_main"] <= 0.1 * a7["main_size"]
