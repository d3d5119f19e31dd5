"""The shipped n-gram ensemble: contract, a learnt 中性, government posts (hand-written test set), demo praise."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("jieba")

from analyze.sentiment.ngram import SHIPPED_NGRAM_DIR, NgramSentiment, cap_text, tokens
from core.records import SentimentLabel
from ingest import demo_text

GOV_POSTS = Path(__file__).resolve().parent / "gov_posts.csv"
# written by hand after the model was tuned, without reading gov_posts.csv or the gov training data: a blind figure
GOV_POSTS_BLIND = Path(__file__).resolve().parent / "gov_posts_blind.csv"
LABELS = {"0": SentimentLabel.negative, "1": SentimentLabel.positive, "2": SentimentLabel.neutral}
SLOTS = {"d": "A3区", "street": "梅溪街道", "compound": "金桂苑", "road": "迎宾大道", "school": "明德小学",
         "hospital": "人民医院", "company": "恒达商贸有限公司", "prop": "恒居物业", "market": "东风农贸市场",
         "park": "滨江公园", "n": 3, "days": 15, "money": 1200, "bus": 12}


@pytest.fixture(scope="module")
def model() -> NgramSentiment:
    # The default model ships in the repository: a missing file is a broken checkout, not a reason to skip.
    assert (SHIPPED_NGRAM_DIR / "ngram.npz").is_file(), \
        f"no shipped n-gram model in {SHIPPED_NGRAM_DIR} (rebuild: yuqing train sentiment-ngram)"
    return NgramSentiment()


def test_contract_on_odd_input(model: NgramSentiment) -> None:
    texts = ["", "   ", "😀😀", "x" * 50_000, "好"]
    p = model.predict_negative(texts)
    assert len(p) == 5 and all(0.0 <= v <= 1.0 for v in p)
    assert p[0] == p[1] == 0.0
    proba = model.predict_proba3(texts)
    assert all(sum(row) == pytest.approx(1.0) for row in proba)
    assert [s.label for s in model.score(["", " "])] == [SentimentLabel.neutral] * 2
    assert model.predict_negative([]) == [] and model.score([]) == []
    # one batch or one at a time: the same scores
    assert model.predict_negative(texts[2:]) == pytest.approx([model.predict_negative([t])[0] for t in texts[2:]])


def test_scores_and_labels_agree(model: NgramSentiment) -> None:
    texts = ["服务太差了，再也不来了", "太好吃了，下次还点", "明天上午9点召开全区安全生产工作会议"]
    scored = model.score(texts)
    assert [s.label for s in scored] == [SentimentLabel.negative, SentimentLabel.positive, SentimentLabel.neutral]
    assert [s.score for s in scored] == pytest.approx(model.predict_negative(texts))
    polar, proba3 = model.predict_both(texts)
    assert polar[0] > 0.5 > polar[1]
    assert all(row[0] == pytest.approx(s.score) for row, s in zip(proba3, scored, strict=True))


def test_hand_written_government_posts(model: NgramSentiment) -> None:
    with GOV_POSTS.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 60
    got = model.score([r["text"] for r in rows])
    wrong = [(r["label"], s.label.value, r["text"])
             for r, s in zip(rows, got, strict=True) if LABELS[r["label"]] != s.label]
    assert len(wrong) <= len(rows) // 10, wrong  # >= 90 % right
    by_class = {lab: sum(r["label"] == lab for r in rows) for lab in LABELS}
    for lab, n in by_class.items():  # and no class is given up for the others
        assert sum(w[0] == lab for w in wrong) <= n // 5, (lab, wrong)


def test_blind_gov_posts(model: NgramSentiment) -> None:
    """The blind government set: 94 posts (32 负面, 30 正面, 32 中性) incl. sarcasm, polite complaints, praise of a
    fixed problem, questions about problems. Measured on the shipped model (retrained on the segmenter's words, with
    the NB-LR head): 86/94 (91.5 %); errors by gold class 负面 4, 正面 2, 中性 2. The asserts are that measured floor,
    not a target."""
    with GOV_POSTS_BLIND.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 80
    got = model.score([r["text"] for r in rows])
    wrong = [(r["label"], s.label.value, round(s.score, 3), r["text"])
             for r, s in zip(rows, got, strict=True) if LABELS[r["label"]] != s.label]
    assert len(rows) - len(wrong) >= 0.9 * len(rows), wrong  # measured 86/94 = 91.5 %
    floors = {"0": 4, "1": 2, "2": 2}  # measured errors per gold class
    for lab, most in floors.items():
        assert sum(w[0] == lab for w in wrong) <= most, (lab, wrong)
    # praise must not look like a complaint to the warning rules: P(negative) of gold 正面 stays below 0.5
    # (measured max 0.29). The rules count posts *labelled* 负面 (argmax of 3 classes), see below.
    p_pos = [s.score for r, s in zip(rows, got, strict=True) if r["label"] == "1"]
    assert max(p_pos) < 0.5
    praise_as_negative = [w for w in wrong if w[0] == "1" and w[1] == SentimentLabel.negative.value]
    assert not praise_as_negative, praise_as_negative  # measured 0 (the two missed praise posts are called 中性)


def test_demo_praise_and_news_never_negative(model: NgramSentiment) -> None:
    texts = []
    for parts in demo_text.TOPICS.values():
        for kind in ("news", "chatter"):
            texts.extend(t.format_map(SLOTS) for t in parts[kind])
    texts += [opener.format_map(SLOTS) + t.format_map(SLOTS) for opener in demo_text.NEWS_OPENERS
              for parts in demo_text.TOPICS.values() for t in parts["news"]]
    got = model.score(texts)
    negative = [(round(s.score, 2), t) for s, t in zip(got, texts, strict=True) if s.label == SentimentLabel.negative]
    assert not negative


def test_demo_complaints_are_mostly_negative(model: NgramSentiment) -> None:
    texts = [t.format_map(SLOTS) for parts in demo_text.TOPICS.values() for t in parts["complaint"]]
    got = model.score(texts)
    assert sum(s.label == SentimentLabel.negative for s in got) >= 0.7 * len(texts)


def test_features_are_chars_and_words() -> None:
    toks = tokens("地铁开通了")
    assert {"地", "地铁", "地铁开", "w:地铁", "w:开通"} <= set(toks)
    assert any(t.startswith("b:") for t in toks)
    long = "开头" + "中" * 5000 + "结尾"
    assert cap_text(long).startswith("开头") and cap_text(long).endswith("结尾") and len(cap_text(long)) < 700


def test_missing_model_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="cannot load"):
        NgramSentiment(tmp_path)
