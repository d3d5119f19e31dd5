"""Corpora: every shared set is found, labels read, and the split is deterministic and disjoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyze.sentiment.corpora import KNOWN_SETS, load_corpora, read_rows, set_names
from analyze.sentiment.train import DataError, split_of

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data" / "sentiment"


def test_read_rows_accepts_three_labels_and_names_bad_lines(tmp_path: Path) -> None:
    good = tmp_path / "a.dev.csv"
    good.write_text("label,text\n0,差\n1,好\n2,通知\n1,  \n", encoding="utf-8")
    assert [(r.label, r.text) for r in read_rows(good)] == [(0, "差"), (1, "好"), (2, "通知")]
    bad = tmp_path / "b.dev.csv"
    bad.write_text("label,text\n0,差\n5,好\n", encoding="utf-8")
    with pytest.raises(DataError, match=":3:"):
        read_rows(bad)
    with pytest.raises(DataError, match="header"):
        (tmp_path / "c.dev.csv").write_text("x,y\n1,2\n", encoding="utf-8")
        read_rows(tmp_path / "c.dev.csv")


def test_small_directory_split_and_classes(tmp_path: Path) -> None:
    (tmp_path / "extra.dev.csv").write_text("label,text\n" + "".join(f"{i % 3},句子{i}\n" for i in range(300)),
                                           encoding="utf-8")
    (tmp_path / "hotel.dev.csv").write_text("label,text\n" + "".join(f"{i % 2},评论{i}\n" for i in range(300)),
                                           encoding="utf-8")
    assert set_names(tmp_path) == ["hotel", "extra"]
    corpora = load_corpora(tmp_path)
    assert corpora["hotel"].classes == 2 and corpora["extra"].classes == 3
    assert corpora["hotel"].domain == "review" and corpora["extra"].domain == "social"
    parts = corpora["extra"].parts
    assert sum(len(v) for v in parts.values()) == 300
    for part, rows in parts.items():
        assert all(split_of(r.text) == part for r in rows)
    assert 10 <= len(parts["test"]) <= 55 and len(parts["train"]) > 200
    assert len(load_corpora(tmp_path, limit=7)["extra"].parts["train"]) == 7
    with pytest.raises(DataError, match="not found"):
        load_corpora(tmp_path / "missing")


def test_shared_sets_load() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"shared sentiment data not present at {SHARED}")
    names = set_names(SHARED)
    assert set(KNOWN_SETS) <= set(names)
    corpora = load_corpora(SHARED, limit=10)
    assert corpora["covid_weibo"].classes == 3 and corpora["smp2020_usual"].classes == 3
    assert corpora["weibo2018"].classes == 2 and corpora["waimai"].classes == 2
    train = {r.text for c in corpora.values() for r in c.parts["train"]}
    test = {r.text for c in corpora.values() for r in c.parts["test"]}
    assert not train & test


def test_accuracy_and_macro_f1() -> None:
    from analyze.sentiment.cli import accuracy_macro_f1

    acc, f1 = accuracy_macro_f1([0, 0, 1, 1], [0, 1, 1, 1], classes=(0, 1))
    assert acc == 0.75 and f1 == pytest.approx((2 / 3 + 0.8) / 2)
    acc, f1 = accuracy_macro_f1([0, 1, 2], [0, 1, 1], classes=(0, 1, 2))
    assert acc == pytest.approx(2 / 3) and f1 == pytest.approx((1 + 2 / 3 + 0) / 3)
