"""TfidfSentiment: fit, predict, save/load round trip, errors; a sanity check on real reviews."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("sklearn")

from analyze.sentiment.tfidf import TfidfSentiment

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data" / "sentiment"

POSITIVE = ["很好吃，下次还点", "服务很好，环境不错", "质量很好，很满意", "好评，物流很快", "味道不错，很满意",
            "房间干净，服务热情", "非常好，推荐", "很喜欢，不错"]
NEGATIVE = ["太难吃了，很失望", "服务太差，环境很脏", "质量差，不满意", "差评，物流太慢", "味道很差，失望",
            "房间很脏，服务冷漠", "非常差，不推荐", "很讨厌，太差"]


def _fitted() -> TfidfSentiment:
    texts = POSITIVE + NEGATIVE
    return TfidfSentiment(min_df=1).fit(texts, [1] * len(POSITIVE) + [0] * len(NEGATIVE))


def test_fit_separates_training_texts() -> None:
    model = _fitted()
    p = model.predict_negative(POSITIVE + NEGATIVE)
    assert all(x < 0.5 for x in p[: len(POSITIVE)])
    assert all(x > 0.5 for x in p[len(POSITIVE):])
    assert model.predict_negative(["", "  "]) == [0.5, 0.5]
    assert model.predict_negative([]) == []


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = _fitted()
    model.save(tmp_path / "tfidf")
    loaded = TfidfSentiment.load(tmp_path / "tfidf")
    probe = ["服务不错", "太差了", "完全没见过的字句😀", "x" * 20_000]
    assert loaded.predict_negative(probe) == pytest.approx(model.predict_negative(probe), abs=1e-5)
    assert (loaded.c, loaded.min_df, loaded.ngram_max) == (model.c, model.min_df, model.ngram_max)


def test_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        TfidfSentiment().predict_negative(["好"])
    with pytest.raises(ValueError, match="labels"):
        TfidfSentiment().fit(["好", "差"], [1])
    with pytest.raises(ValueError, match="both 0 and 1"):
        TfidfSentiment().fit(["好", "差"], [1, 1])
    with pytest.raises(RuntimeError, match="cannot load"):
        TfidfSentiment.load(tmp_path / "missing")


@pytest.mark.shared
def test_learns_real_reviews() -> None:
    from analyze.sentiment.train import load_splits

    if not SHARED.is_dir():
        pytest.skip(f"../shared/data not found: {SHARED}")
    splits = load_splits(SHARED)["waimai"]
    train, test = splits["train"][:3000], splits["test"][:500]  # small: keeps the test fast
    model = TfidfSentiment().fit([r.text for r in train], [r.label for r in train])
    p = model.predict_negative([r.text for r in test])
    accuracy = sum((x >= 0.5) == (r.label == 0) for x, r in zip(p, test, strict=True)) / len(test)
    assert accuracy > 0.75  # snownlp-level; the full train split reaches ~0.9
