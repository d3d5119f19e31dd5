"""TransformerSentiment: the shipped model offline, label mapping, odd input, loading another model dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from analyze.sentiment.transformer import SHIPPED_MODEL_DIR, TransformerSentiment, negative_index  # noqa: E402
from core.records import SentimentLabel  # noqa: E402

NEGATIVE_TEXTS = [
    "太难吃了，送来都凉了，等了两个小时，再也不点了",
    "房间又脏又小，隔音很差，前台态度恶劣，非常失望",
    "质量太差了，用了两天就坏了，客服也不理人，退货！",
]
POSITIVE_TEXTS = [
    "味道很好，送餐很快，分量也足，好评！",
    "酒店位置方便，房间干净整洁，服务热情周到，下次还会入住",
    "东西很好，质量不错，物流也快，非常满意",
]


@pytest.fixture(scope="module")
def shipped() -> TransformerSentiment:
    return TransformerSentiment()


def test_shipped_model_loads_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    model = TransformerSentiment(threads=1)
    assert model.model_dir == SHIPPED_MODEL_DIR
    assert (SHIPPED_MODEL_DIR / "model.safetensors").stat().st_size < 30 * 1024 * 1024
    assert 0.0 <= model.predict_negative(["还行"])[0] <= 1.0


def test_obvious_texts_get_the_right_side(shipped: TransformerSentiment) -> None:
    p = shipped.predict_negative(NEGATIVE_TEXTS + POSITIVE_TEXTS)
    assert all(x > 0.5 for x in p[:3]), p
    assert all(x < 0.5 for x in p[3:]), p


def test_score_labels_follow_input_order(shipped: TransformerSentiment) -> None:
    texts = [NEGATIVE_TEXTS[0], POSITIVE_TEXTS[0], NEGATIVE_TEXTS[1], "", POSITIVE_TEXTS[1]]
    verdicts = shipped.score(texts)
    assert [v.label for v in verdicts] == [SentimentLabel.negative, SentimentLabel.positive,
                                          SentimentLabel.negative, SentimentLabel.neutral,
                                          SentimentLabel.positive]
    # Batch composition must not change a text's score (padding is masked).
    alone = [shipped.predict_negative([t])[0] for t in texts]
    together = shipped.predict_negative(texts)
    assert together == pytest.approx(alone, abs=1e-4)


def test_odd_input_still_gets_a_score(shipped: TransformerSentiment) -> None:
    texts = ["", "   \n", "😀😡🙏" * 3, "差" * 200_000, "<script>alert(1)</script>", "\x00\ufffd", "abc 123"]
    p = shipped.predict_negative(texts)
    assert len(p) == len(texts)
    assert all(0.0 <= x <= 1.0 for x in p)
    assert p[0] == 0.5 and p[1] == 0.5
    assert shipped.predict_negative([]) == []


@pytest.mark.parametrize(
    ("id2label", "expected"),
    [
        ({0: "negative", 1: "positive"}, 0),
        ({0: "POSITIVE", 1: "NEGATIVE"}, 1),
        ({"0": "LABEL_0", "1": "LABEL_1"}, 0),
        ({0: "0", 1: "1"}, 0),
        ({0: "正面", 1: "中性", 2: "负面"}, 2),
        ({0: "neutral", 1: "neg", 2: "pos"}, 1),
    ],
)
def test_negative_index(id2label: dict, expected: int) -> None:
    assert negative_index(id2label) == expected


def test_negative_index_refuses_to_guess() -> None:
    with pytest.raises(RuntimeError, match="negative"):
        negative_index({0: "sports", 1: "politics"})


def _tiny_model_dir(path: Path, id2label: dict[int, str]) -> Path:
    """A random BertForSequenceClassification with a char vocab, saved like any local model dir."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path.mkdir()
    chars = list("好差很太了的服务味道酒店房间不是")
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n",
                                    encoding="utf-8")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt"), tokenize_chinese_chars=True).save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=5 + len(chars), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=len(id2label),
                        id2label=id2label, label2id={v: k for k, v in id2label.items()})
    BertForSequenceClassification(config).save_pretrained(path)
    return path


def _reference(path: Path, texts: list[str], column: int, temperature: float = 1.0) -> list[float]:
    from transformers import BertForSequenceClassification, BertTokenizerFast

    tok = BertTokenizerFast.from_pretrained(path)
    model = BertForSequenceClassification.from_pretrained(path).eval()
    out = []
    with torch.inference_mode():
        for text in texts:
            logits = model(**tok([text], return_tensors="pt")).logits / temperature
            out.append(float(torch.softmax(logits, -1)[0, column]))
    return out


def test_loads_another_model_dir_by_option(tmp_path: Path) -> None:
    path = _tiny_model_dir(tmp_path / "tiny", {0: "POSITIVE", 1: "NEGATIVE"})
    model = TransformerSentiment(path, threads=1, batch_size=2, max_length=32)
    texts = ["服务很好", "太差了不好", "酒店房间的味道"]
    assert model.model_dir == path and model.max_length == 32
    assert model.predict_negative(texts) == pytest.approx(_reference(path, texts, column=1), abs=1e-5)


def test_calibration_temperature_is_applied(tmp_path: Path) -> None:
    path = _tiny_model_dir(tmp_path / "tiny", {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"})
    (path / "calibration.json").write_text(json.dumps({"temperature": 0.05}), encoding="utf-8")
    model = TransformerSentiment(path, threads=1)
    texts = ["很好", "不是太差"]
    assert model.temperature == 0.05
    assert model.predict_negative(texts) == pytest.approx(_reference(path, texts, 0, 0.05), abs=1e-5)


def test_missing_or_broken_dir_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"config\.json"):
        TransformerSentiment(tmp_path / "nothing")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(RuntimeError, match="cannot load"):
        TransformerSentiment(tmp_path / "broken")


def test_loading_turns_onednn_off_and_scores_stay_the_same(shipped: TransformerSentiment) -> None:
    """oneDNN caches a kernel per batch shape without bound (module docstring); its absence changes no score."""
    texts = NEGATIVE_TEXTS + POSITIVE_TEXTS
    assert torch.backends.mkldnn.enabled is False
    without = shipped.predict_negative(texts)
    torch.backends.mkldnn.enabled = True
    try:
        with_onednn = shipped.predict_negative(texts)
    finally:
        torch.backends.mkldnn.enabled = False
    assert without == pytest.approx(with_onednn, abs=1e-4)
