"""analyze.pipeline.Analyzer segments each post once: the sentiment model reads the words the topic step made.

The stage passes the segmenter's raw words to the n-gram sentiment model (``score(..., words=...)``); its scores
must be those of the model segmenting the text itself (same segmenter, same tokens), and the global jieba
(a second dictionary, a second pass) is never used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sklearn")
jieba = pytest.importorskip("jieba")

from analyze.normalize import strip_html, text_for_scoring  # noqa: E402
from analyze.segment import Segmenter, get_segmenter  # noqa: E402
from analyze.sentiment.ngram import NgramSentiment, cap_words, text_words, tokens  # noqa: E402
from analyze.topics import split_subject  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.wiring import Container  # noqa: E402
from ingest.demo import DemoStream  # noqa: E402
from ingest.validate import parse_record  # noqa: E402

EXTRA = [
    ("A3区迎宾大道施工扰民", "晚上十一点还在施工，噪音太大了，孩子都睡不着。\n投诉了三次都没人管，太失望了！"),
    (None, "地铁3号线今天开通了，以后上班再也不用挤公交了👍 #A市地铁# @A市发布 http://t.cn/abc"),
    (None, "污水处理厂提标改造完成，河里又能看到小鱼了。" * 30 + "可是最近又开始有异味，没人管吗？" * 10),
    ("关于停水的通知", "因管网维修，梅溪街道金桂苑小区明日9:00-17:00停水，请居民提前储水。"),
]


def _posts(n: int) -> list:
    out = []
    for i, record in enumerate(DemoStream(seed=29, rate_per_min=600.0)):
        if i >= n:
            break
        out.append(parse_record(json.dumps(record, ensure_ascii=False).encode(), source_hint=None, salt="t",
                                max_text_chars=20_000))
    for j, (title, text) in enumerate(EXTRA):
        out.append(out[j].model_copy(update={"id": f"extra-{j}", "title": title or "", "text": text}))
    return out


def test_stage_scores_equal_the_models_own_segmentation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    analyzer = Container(Settings(mode="embedded", data_dir=tmp_path, database_url="")).analyzer
    model = analyzer.sentiment
    assert isinstance(model, NgramSentiment)  # the default model is the one that reads words
    posts = _posts(300)
    scoring = [text_for_scoring(strip_html(p.full_text)) for p in posts]
    assert any("\n" in t and split_subject(t)[0] for t in scoring)  # subject + body texts are covered
    assert any(sum(map(len, text_words(t))) > 600 for t in scoring)  # so are capped long texts
    expected = model.score(scoring)  # the model segments the raw texts itself

    calls = {"segmenter": 0}
    segmenter = get_segmenter()
    real_words = segmenter.words

    def counting(text: str) -> list[str]:
        calls["segmenter"] += 1
        return real_words(text)

    def no_global_jieba(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the analyze stage used the global jieba tokenizer")

    monkeypatch.setattr(segmenter, "words", counting)
    monkeypatch.setattr(jieba.dt, "cut", no_global_jieba)
    analyzer.cache_size = 0
    got = analyzer.analyze(posts)
    for a, e in zip(got, expected, strict=True):
        assert a.sentiment.label == e.label
        assert a.sentiment.score == pytest.approx(e.score, rel=1e-12, abs=1e-12)
    # subject and body once each (a body longer than the topic model reads is cut once more, for topics only)
    # (a text repeated within the batch is analysed once: the stage's own de-duplication)
    first: dict[tuple[str | None, str, bool], str] = {}
    for p, t in zip(posts, scoring, strict=True):
        first.setdefault((p.title, p.text, analyzer.ner is not None and p.source.value in analyzer.ner_sources), t)
    long_bodies = sum(1 for t in first.values() if len(split_subject(t)[1]) > 800)
    assert calls["segmenter"] == 2 * len(first) + long_bodies


def test_words_given_or_not_give_the_same_features() -> None:
    texts = [t for _, t in EXTRA] + ["服务太差了，再也不来了", "", "😀😀"]
    for text in texts:
        assert tokens(text, text_words(text)) == tokens(text)
    model = NgramSentiment()
    words = [text_words(t) for t in texts]
    assert model.predict_negative(texts, words) == pytest.approx(model.predict_negative(texts), abs=1e-12)
    with pytest.raises(ValueError):
        model.predict_negative(texts, words[:-1])


def test_segmenter_tokens_are_the_cleaned_words() -> None:
    seg = Segmenter()
    for text in ["A3区梅溪街道的垃圾没人管，臭死了！", "iPhone 15 降价了", "", "  ,。 "]:
        words = seg.words(text)
        assert all(w and w == w.strip() for w in words)
        assert seg.tokenize(text) == seg.clean(words)
    assert "A3区" in seg.words("A3区梅溪街道的垃圾没人管")  # the gazetteer keeps place names whole
    assert "，" not in seg.words("好，很好") and "," in seg.words("好，很好")  # normalised (NFKC) punctuation kept


def test_cap_words_keeps_head_and_tail() -> None:
    words = ["一二"] * 400
    capped = cap_words(words)
    assert 600 <= sum(map(len, capped)) <= 604 and capped == words[:200] + words[-100:]
    assert cap_words(["短", "文本"]) == ["短", "文本"]
