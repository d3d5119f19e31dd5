"""Sentiment throughput: the shipped transformer (batched, 2 threads) vs snownlp on the same 2,000 texts.

Texts: 2,000 rows drawn (seeded) from the held-out test splits of the three dev corpora in ../shared,
so the length mix is the real one (short takeaway notes to long hotel reviews). The ratio is the figure
that carries across machines; the absolute posts/s depend on how busy the cores are.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

N_TEXTS = 2000


def _texts() -> list[str]:
    from analyze.sentiment.train import DATASETS, default_data_dir, load_splits

    splits = load_splits(default_data_dir())
    rows = [r.text for name in DATASETS for r in splits[name]["test"]]
    random.Random(0).shuffle(rows)
    return rows[:N_TEXTS]


def _rate(predict: Callable[[list[str]], list[float]], texts: list[str]) -> float:
    predict(texts[:64])  # warm-up: lazy init, allocator, first-call kernels
    started = time.perf_counter()
    predict(texts)
    return len(texts) / (time.perf_counter() - started)


def run(report: Callable[[str, float | int | str], None]) -> None:
    """Report posts/s of the transformer and snownlp, and their ratio."""
    from analyze.sentiment.train import DataError

    try:
        texts = _texts()
    except DataError as exc:
        report("sentiment.skipped", f"../shared data not found: {exc}")
        return
    from analyze.sentiment.snow import SnowNLPSentiment
    from analyze.sentiment.transformer import TransformerSentiment

    transformer = TransformerSentiment(threads=2, batch_size=64)
    snow = SnowNLPSentiment()
    report("sentiment.texts", len(texts))
    report("sentiment.mean_chars", sum(map(len, texts)) / len(texts))
    t_rate = _rate(transformer.predict_negative, texts)
    report("sentiment.transformer.posts_per_s", t_rate)
    s_rate = _rate(snow.predict_negative, texts)
    report("sentiment.snownlp.posts_per_s", s_rate)
    report("sentiment.transformer_vs_snownlp.ratio", t_rate / s_rate)
