"""Sentiment throughput: the shipped transformer (batched, 2 threads) vs snownlp on the same 2,000 texts.

Texts: 2,000 rows drawn (seeded) from the held-out test splits of the three dev corpora in ../shared,
so the length mix is the real one (short takeaway notes to long hotel reviews). The ratio is the figure
that carries across machines; the absolute posts/s depend on how busy the cores are.

Varied shapes (``sentiment.varied_shapes.*``): a service scores batches of every size and width. Two fresh
processes score the same seeded random batches (1-40 texts cut to 5-400 characters) for
``VARIED_SHAPES_SECONDS`` each, one as shipped (oneDNN off) and one with torch's oneDNN kernels back on
(the baseline: what the model did before), and report their RSS growth after warm-up.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

N_TEXTS = 2000
VARIED_SHAPES_SECONDS = 45.0


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
    """Report posts/s of the ensemble (default), the transformer and snownlp, and their ratios to snownlp."""
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
    from analyze.sentiment.ngram import NgramSentiment

    ensemble = NgramSentiment()  # the default model (analyze.sentiment_model=ensemble)
    e_rate = _rate(ensemble.predict_negative, texts)
    report("sentiment.ensemble.posts_per_s", e_rate)
    report("sentiment.ensemble_vs_snownlp.ratio", e_rate / s_rate)
    grew: dict[bool, float] = {}
    for onednn in (False, True):
        figures = _varied_shapes_growth(onednn=onednn)
        label = "onednn_on_baseline" if onednn else "shipped"
        report(f"sentiment.varied_shapes.{label}.rss_start_mb", figures["start_mb"])
        report(f"sentiment.varied_shapes.{label}.rss_end_mb", figures["end_mb"])
        report(f"sentiment.varied_shapes.{label}.posts", figures["posts"])
        grew[onednn] = figures["end_mb"] - figures["start_mb"]
    # Growth in MB (not a ratio of RSS): ~0 for the shipped setting, so the baseline's figure is the contrast.
    report("sentiment.varied_shapes.shipped.rss_growth_mb", grew[False])
    report("sentiment.varied_shapes.onednn_on_baseline.rss_growth_mb", grew[True])


def _varied_shapes_growth(*, onednn: bool) -> dict[str, float]:
    """RSS before/after scoring random batch shapes for VARIED_SHAPES_SECONDS, in a fresh process."""
    cmd = [sys.executable, "-m", "bench.bench_sentiment", "--varied-shapes", "on" if onednn else "off"]
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        cmd, capture_output=True, text=True, timeout=VARIED_SHAPES_SECONDS * 4, check=True,
        cwd=Path(__file__).resolve().parents[1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _score_varied_shapes(onednn: bool) -> None:
    """Child process of ``_varied_shapes_growth``: prints one JSON line with the RSS figures."""
    import torch

    from analyze.sentiment.transformer import TransformerSentiment
    from bench.bench_soak import _rss_mb

    texts = _texts()
    model = TransformerSentiment(threads=1, batch_size=64)
    torch.backends.mkldnn.enabled = onednn  # after the constructor, which turns it off
    rng = random.Random(1)
    model.predict_negative(texts[:64])
    start = _rss_mb()
    posts = 0
    deadline = time.monotonic() + VARIED_SHAPES_SECONDS
    while time.monotonic() < deadline:
        batch = [rng.choice(texts)[: rng.randint(5, 400)] for _ in range(rng.randint(1, 40))]
        model.predict_negative(batch)
        posts += len(batch)
    sys.stdout.write(json.dumps({"start_mb": round(start), "end_mb": round(_rss_mb()), "posts": posts}) + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--varied-shapes":
        _score_varied_shapes(sys.argv[2] == "on")
    else:
        sys.exit("usage: python -m bench.bench_sentiment --varied-shapes on|off")
