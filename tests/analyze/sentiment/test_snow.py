"""analyze.sentiment.snow: the snownlp baseline behind the SentimentModel contract."""

import csv
import random
from pathlib import Path

import pytest

from analyze.sentiment.snow import SnowNLPSentiment
from core.records import SentimentLabel

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data" / "sentiment"


@pytest.fixture(scope="module")
def model():
    return SnowNLPSentiment()


def test_clear_negative_and_positive_texts(model):
    neg, pos = model.predict_negative(["太差了，服务态度恶劣，再也不来了，垃圾", "非常好，干净舒适，服务热情，很满意"])
    assert neg > 0.5 > pos


def test_output_order_and_range(model):
    texts = ["很满意", "", "糟糕透顶，非常失望", "   ", "😀" * 5, "好" * 3000]
    scores = model.predict_negative(texts)
    assert len(scores) == len(texts)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[1] == scores[3] == 0.5  # empty text is neutral
    assert scores[2] > scores[0]


def test_three_class_labels(model):
    verdicts = model.score(["太差了，服务态度恶劣，垃圾", "非常好，很满意", ""])
    assert verdicts[0].label == SentimentLabel.negative
    assert verdicts[1].label == SentimentLabel.positive
    assert verdicts[2].label == SentimentLabel.neutral and verdicts[2].score == 0.5


@pytest.mark.shared
@pytest.mark.slow
def test_better_than_chance_on_held_reviews(model):
    path = SHARED / "hotel.dev.csv"
    if not path.exists():
        pytest.skip(f"../shared/data not found: {path}")
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    sample = random.Random(0).sample(rows, 60)
    preds = model.predict_negative([r["text"] for r in sample])
    correct = sum((p >= 0.5) == (r["label"] == "0") for p, r in zip(preds, sample, strict=True))
    assert correct / len(sample) > 0.6
