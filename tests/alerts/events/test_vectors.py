"""alerts.events.vectors: character n-gram features, the stream's IDF, TF-IDF and cosine."""

from __future__ import annotations

import math

from alerts.events.config import ClustererConfig
from alerts.events.vectors import StreamIdf, char_features, cosine, tfidf, top_features

CFG = ClustererConfig()


def test_features_are_bigrams_and_unigrams_without_urls_mentions_or_emoticon_codes():
    counts = char_features("//@某人: 大闸蟹[哈哈] http://t.cn/abc OK", CFG)
    assert {"大闸", "闸蟹", "大", "闸", "蟹", "ok"} == set(counts)


def test_stream_idf_weighs_rare_features_more_and_halving_keeps_it_bounded():
    idf = StreamIdf(prior_docs=0, halflife_docs=1000)
    for n in range(999):
        idf.observe({"常见": 1.0} if n % 2 else {"常见": 1.0, f"稀{n}": 1.0})
    assert idf.weight("稀0") > idf.weight("常见") >= 1.0
    idf.observe({"常见": 1.0})  # the 1000th document halves the counts: once-seen features go
    assert "稀0" not in idf.df and idf.df["常见"] == 500.0


def test_tfidf_is_unit_length_and_identical_texts_have_cosine_one():
    idf = StreamIdf()
    counts = char_features("市民反映丽发新城搅拌站噪音扰民", CFG)
    idf.observe(counts)
    vec = tfidf(counts, idf, CFG)
    assert math.isclose(math.sqrt(sum(w * w for w in vec.values())), 1.0)
    assert math.isclose(cosine(vec, vec, 1.0), 1.0)
    assert top_features(vec, 3) == top_features(dict(reversed(list(vec.items()))), 3)  # deterministic
