"""Training helpers: CSV validation, the seeded split, temperature scaling."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyze.sentiment.train import DataError, load_splits, read_labelled_csv, split_of


def test_read_csv_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("label,text\n1,好\n0,差\n2,怪\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"x\.csv:4: label must be 0 or 1"):
        read_labelled_csv(path)
    path.write_text("score,body\n1,好\n", encoding="utf-8")
    with pytest.raises(DataError, match="label,text"):
        read_labelled_csv(path)
    path.write_bytes(b"label,text\n1,\xff\xfe\n")
    with pytest.raises(DataError, match="UTF-8"):
        read_labelled_csv(path)
    with pytest.raises(DataError, match="not found"):
        read_labelled_csv(tmp_path / "missing.csv")


def test_read_csv_ok(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text('label,text,category\n1,"好,很好",a\n0,差,b\n', encoding="utf-8")
    rows = read_labelled_csv(path)
    assert [(r.label, r.text) for r in rows] == [(1, "好,很好"), (0, "差")]


def test_split_is_seeded_and_order_free() -> None:
    texts = [f"评论{i}" for i in range(4000)]
    first = [split_of(t, seed=42) for t in texts]
    assert first == [split_of(t, seed=42) for t in texts]
    assert first != [split_of(t, seed=7) for t in texts]
    share = {s: first.count(s) / len(first) for s in ("train", "val", "test")}
    assert share["test"] == pytest.approx(0.10, abs=0.02)
    assert share["val"] == pytest.approx(0.05, abs=0.015)


def test_load_splits_needs_the_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_splits(tmp_path / "nope")


def test_fit_temperature_recovers_a_known_temperature() -> None:
    torch = pytest.importorskip("torch")
    from analyze.sentiment.train import fit_temperature

    gen = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 2, generator=gen) * 2
    labels = torch.multinomial(torch.softmax(true_logits, -1), 1, generator=gen).squeeze(1)
    # The model is over-confident by 3x; the fitted temperature must undo it.
    assert fit_temperature(true_logits * 3, labels.tolist()) == pytest.approx(3.0, rel=0.15)
