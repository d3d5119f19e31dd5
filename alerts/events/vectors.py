"""Character n-gram TF-IDF vectors with the IDF learned online from the stream itself.

Chinese posts about one story share names and phrases, not whitespace words: character bigrams catch
them without a segmenter (and unigrams, weighted down, help short posts). No fixed vocabulary or corpus
is needed: document frequencies are counted as posts arrive, starting from a flat prior, and halve every
``idf_halflife_docs`` documents so memory stays bounded and the weights follow the stream's drift.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from alerts.events.config import ClustererConfig

Vector = dict[str, float]

# URLs, @mentions, repost chains ("//@name:") and emoticon codes ("[哈哈]") say nothing about the story.
_NOISE = re.compile(r"https?://[!-~]+|//@[^:：\s]{1,30}[:：]?|@[^\s:：@，,。]{1,30}|\[[^\]\s]{1,8}\]")
_RUNS = re.compile(r"[a-z0-9]+|[\u3400-\u9fff]+")


def char_features(text: str, config: ClustererConfig) -> Counter[str]:
    """Term counts of a text: CJK character bigrams and (weighted down) unigrams; ASCII words whole."""
    text = _NOISE.sub(" ", (text or "").lower())[: config.max_chars]
    counts: Counter[str] = Counter()
    for run in _RUNS.findall(text):
        if run.isascii():
            if len(run) > 1:
                counts[run] += 1
            continue
        if config.unigram_weight > 0:
            counts.update(run)
        counts.update(run[i : i + 2] for i in range(len(run) - 1))
    return counts


class StreamIdf:
    """Document frequencies counted over the stream; ``weight`` is the smoothed IDF of a feature."""

    def __init__(self, prior_docs: float = 20.0, halflife_docs: int = 200_000) -> None:
        self.prior_docs = prior_docs
        self.halflife_docs = halflife_docs
        self.docs = 0.0
        self.df: dict[str, float] = {}
        self._since_halving = 0

    def observe(self, features: Counter[str] | dict[str, float]) -> None:
        """Count one document's distinct features."""
        df = self.df
        for f in features:
            df[f] = df.get(f, 0.0) + 1.0
        self.docs += 1.0
        self._since_halving += 1
        if self._since_halving >= self.halflife_docs:
            self._halve()

    def _halve(self) -> None:
        # Halving keeps ratios (so IDFs) while dropping features seen about once long ago: bounded memory.
        self._since_halving = 0
        self.docs /= 2.0
        self.df = {f: c / 2.0 for f, c in self.df.items() if c >= 2.0}

    def weight(self, feature: str) -> float:
        """Smoothed IDF: log((N + prior + 1) / (df + 1)) + 1; unseen features weigh most."""
        return math.log((self.docs + self.prior_docs + 1.0) / (self.df.get(feature, 0.0) + 1.0)) + 1.0


def tfidf(counts: Counter[str], idf: StreamIdf, config: ClustererConfig) -> Vector:
    """Unit-length sublinear TF-IDF vector of a post's feature counts."""
    vec: Vector = {}
    for f, c in counts.items():
        w = (1.0 + math.log(c)) * idf.weight(f)
        if len(f) == 1 and not f.isascii():
            w *= config.unigram_weight
        vec[f] = w
    norm = math.sqrt(sum(w * w for w in vec.values()))
    if norm == 0.0:
        return {}
    return {f: w / norm for f, w in vec.items()}


def top_features(vec: Vector, k: int) -> list[str]:
    """The ``k`` strongest features (ties by feature, so the choice is deterministic)."""
    return [f for f, _ in sorted(vec.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def cosine(vec: Vector, centroid: Vector, centroid_norm: float) -> float:
    """Cosine of a unit vector and a centroid of known norm."""
    if centroid_norm <= 0.0:
        return 0.0
    if len(vec) > len(centroid):
        return sum(w * vec.get(f, 0.0) for f, w in centroid.items()) / centroid_norm
    return sum(w * centroid.get(f, 0.0) for f, w in vec.items()) / centroid_norm
