"""``yuqing train sentiment`` and ``yuqing eval sentiment`` (plain typer-compatible functions).

The lead mounts ``train_sentiment`` and ``eval_sentiment``; ``app`` offers the same two as ``train`` /
``eval`` for ``python -m analyze.sentiment.cli``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import typer

from analyze.sentiment.train import (
    DataError,
    LabelledText,
    TrainConfig,
    default_data_dir,
)
from analyze.sentiment.transformer import SHIPPED_MODEL_DIR

logger = logging.getLogger(__name__)
_DEFAULTS = TrainConfig()


def train_sentiment(
    out: Path = typer.Option(SHIPPED_MODEL_DIR, "--out", help="model directory to write"),
    epochs: int = typer.Option(_DEFAULTS.epochs, help="passes over the train split"),
    seed: int = typer.Option(_DEFAULTS.seed, help="seed for the split, init and batch order"),
    max_minutes: float = typer.Option(_DEFAULTS.max_minutes, help="wall-clock budget; LR decay fits it"),
    data: Path | None = typer.Option(None, "--data", help="directory with the *.dev.csv files"),
    pretrain_minutes: float = typer.Option(_DEFAULTS.pretrain_minutes, help="MLM pre-training on the texts first"),
    hidden: int = typer.Option(_DEFAULTS.hidden, help="hidden size"),
    layers: int = typer.Option(_DEFAULTS.layers, help="encoder layers"),
    distill: float = typer.Option(_DEFAULTS.distill, help="weight of the teacher's soft targets (0: off)"),
    teacher: str = typer.Option(_DEFAULTS.teacher, help="distillation teacher: tfidf or ngram-ensemble"),
    max_length: int = typer.Option(_DEFAULTS.max_length, help="tokens per text (longer: head + tail kept)"),
    ema: float = typer.Option(_DEFAULTS.ema, help="decay of the evaluated weight average (0: raw weights)"),
    finetunes: int = typer.Option(_DEFAULTS.finetunes, min=1, help="fine-tunes from one MLM; >1 may save their soup"),
    upsample: str = typer.Option(",".join(f"{k}={v}" for k, v in _DEFAULTS.upsample.items()),
                                 help="copies of each corpus per epoch, e.g. waimai=2,hotel=2,shopping=1"),
) -> None:
    """Train the sentiment model from the dev corpora and write it (default: the shipped model dir)."""
    from analyze.sentiment.train import train_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = TrainConfig(epochs=epochs, seed=seed, max_minutes=max_minutes, pretrain_minutes=pretrain_minutes,
                             hidden=hidden, layers=layers, intermediate=hidden * 4, distill=distill,
                             teacher=teacher, max_length=max_length, upsample=_parse_upsample(upsample), ema=ema,
                             finetunes=finetunes)
    except ValueError as exc:
        raise typer.BadParameter(f"--teacher: {exc}") from exc
    try:
        info = train_model(out, data_dir=data or default_data_dir(), config=config)
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"sentiment.train.steps: {info['steps']}")
    typer.echo(f"sentiment.train.wall_minutes: {info['wall_minutes']}")
    for name, acc in info["best"]["val"].items():
        typer.echo(f"sentiment.train.{name}.val_accuracy: {acc:.4f}")
    typer.echo(f"sentiment.train.temperature: {info['temperature']:.4f}")


def train_sentiment_ngram(
    out: Path = typer.Option(None, "--out", help="model directory to write (default: the shipped model/ngram)"),
    data: Path | None = typer.Option(None, "--data", help="directory with the *.dev.csv files"),
    limit: int | None = typer.Option(None, help="cap the train rows per set (quick runs)"),
    seed: int = typer.Option(42, help="split seed"),
) -> None:
    """Train the shipped n-gram ensemble (``analyze.sentiment.ngram``) on every set plus the gov posts."""
    from analyze.sentiment.ngram import SHIPPED_NGRAM_DIR
    from analyze.sentiment.train_ngram import train_ngram

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        info = train_ngram(out or SHIPPED_NGRAM_DIR, data_dir=data, seed=seed, limit=limit)
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for key, value in info["val"].items():
        typer.echo(f"sentiment.ngram.val.{key}: {value}")
    typer.echo(f"sentiment.ngram.wall_seconds: {info['wall_seconds']}")


def _parse_upsample(spec: str) -> dict[str, int]:
    try:
        pairs = [item.split("=", 1) for item in spec.split(",") if item.strip()]
        return {name.strip(): int(copies) for name, copies in pairs}
    except ValueError as exc:
        raise typer.BadParameter(f"--upsample: expected name=copies[,name=copies], got {spec!r}") from exc


def eval_sentiment(
    data: Path | None = typer.Option(None, "--data", help="one CSV label,text (0/1[/2]) instead of the test splits"),
    limit: int | None = typer.Option(None, help="score at most this many test rows per data set"),
    snownlp_rows: int = typer.Option(300, "--snownlp-rows", help="test rows per set snownlp scores (it is slow)"),
    train_limit: int | None = typer.Option(None, "--train-limit", help="cap the TF-IDF baseline's train rows per set"),
    model_dir: Path | None = typer.Option(None, "--model-dir", help="n-gram ensemble dir (default: shipped)"),
) -> None:
    """snownlp, TF-IDF and the shipped model side by side on the test split of every set (accuracy, macro-F1).

    2-class sets are scored negative vs positive; 3-class sets (label 2 neutral) on all three classes. The
    TF-IDF baselines are fitted here on the same train split the shipped model was trained on: a 2-class one
    on every set's polar rows and a 3-class one on the 3-class sets.
    """
    from analyze.sentiment.corpora import Row, load_corpora, read_rows
    from analyze.sentiment.ngram import NgramSentiment
    from analyze.sentiment.snow import SnowNLPSentiment
    from analyze.sentiment.tfidf import TfidfSentiment

    logging.basicConfig(level=logging.WARNING)
    try:
        corpora = load_corpora(limit=train_limit)
        if data is not None:
            sets: dict[str, list[Row]] = {data.name.split(".")[0]: read_rows(data)}
        else:
            sets = {name: c.parts["test"] for name, c in corpora.items()}
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if limit is not None:
        sets = {name: rows[:limit] for name, rows in sets.items()}
    polar_train = [r for c in corpora.values() for r in c.parts["train"] if r.label != 2]
    three_train = [r for c in corpora.values() if c.classes == 3 for r in c.parts["train"]]
    typer.echo(f"sentiment.tfidf.train_rows: {len(polar_train)} (2-class), {len(three_train)} (3-class)")
    tfidf2 = TfidfSentiment().fit([r.text for r in polar_train], [r.label for r in polar_train])
    tfidf3 = None
    if three_train:
        tfidf3 = TfidfSentiment().fit([r.text for r in three_train], [r.label for r in three_train])
    snow = SnowNLPSentiment()
    shipped = NgramSentiment(model_dir)
    for set_name, rows in sets.items():
        if not rows:
            continue
        three = any(r.label == 2 for r in rows)
        typer.echo(f"sentiment.{set_name}.rows: {len(rows)} ({3 if three else 2} classes)")
        texts, gold = [r.text for r in rows], [r.label for r in rows]
        # an evenly spaced subset: the files are grouped by label, so the first rows would be one class
        step = max(1, len(rows) // max(1, snownlp_rows))
        snow_texts, snow_gold = texts[::step][:snownlp_rows], gold[::step][:snownlp_rows]
        results: list[tuple[str, list[int], list[int]]] = []
        if three:
            snow_pred = [s.label for s in snow.score(snow_texts)]
            results.append(("snownlp", snow_gold, [_LABEL_ID[str(lab)] for lab in snow_pred]))
            t3 = (tfidf3 or tfidf2).predict_proba3(texts)
            results.append(("tfidf", gold, [_argmax3(p) for p in t3]))
            _, s3 = shipped.predict_both(texts)
            results.append((shipped.name, gold, [_argmax3(p) for p in s3]))
        else:
            snow_p = snow.predict_negative(snow_texts)
            results.append(("snownlp", snow_gold, [0 if p >= 0.5 else 1 for p in snow_p]))
            results.append(("tfidf", gold, [0 if p >= 0.5 else 1 for p in tfidf2.predict_negative(texts)]))
            polar, _ = shipped.predict_both(texts)
            results.append((shipped.name, gold, [0 if p >= 0.5 else 1 for p in polar]))
        for name, g, pred in results:
            acc, f1 = accuracy_macro_f1(g, pred, classes=(0, 1, 2) if three else (0, 1))
            suffix = f" ({len(g)} rows)" if len(g) != len(rows) else ""
            typer.echo(f"sentiment.{set_name}.{name}.accuracy: {acc:.4f}{suffix}")
            typer.echo(f"sentiment.{set_name}.{name}.macro_f1: {f1:.4f}{suffix}")


_LABEL_ID = {"负面": 0, "正面": 1, "中性": 2, "negative": 0, "positive": 1, "neutral": 2}


def _argmax3(p: Sequence[float]) -> int:
    return max(range(3), key=lambda i: p[i])


def accuracy_macro_f1(gold: Sequence[int], pred: Sequence[int], *, classes: Sequence[int]) -> tuple[float, float]:
    """Accuracy and the mean F1 over ``classes`` (a class never predicted nor present scores 0)."""
    n = max(1, len(gold))
    acc = sum(1 for g, p in zip(gold, pred, strict=True) if g == p) / n
    f1s = []
    for c in classes:
        tp = sum(1 for g, p in zip(gold, pred, strict=True) if g == c and p == c)
        fp = sum(1 for g, p in zip(gold, pred, strict=True) if g != c and p == c)
        fn = sum(1 for g, p in zip(gold, pred, strict=True) if g == c and p != c)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return acc, sum(f1s) / len(f1s)


def metrics(rows: Sequence[LabelledText], p_negative: Sequence[float]) -> dict[str, float | int]:
    """Accuracy, macro-F1, expected calibration error and the 2x2 confusion counts (P >= 0.5 is negative)."""
    counts = {(t, p): 0 for t in (0, 1) for p in (0, 1)}
    for row, p in zip(rows, p_negative, strict=True):
        counts[(row.label, 0 if p >= 0.5 else 1)] += 1
    n = max(1, len(rows))
    f1s = []
    for cls in (0, 1):
        tp = counts[(cls, cls)]
        fp = counts[(1 - cls, cls)]
        fn = counts[(cls, 1 - cls)]
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {
        "accuracy": (counts[(0, 0)] + counts[(1, 1)]) / n,
        "macro_f1": sum(f1s) / 2,
        "ece": _ece([r.label for r in rows], p_negative),
        "confusion.neg_pred_neg": counts[(0, 0)],
        "confusion.neg_pred_pos": counts[(0, 1)],
        "confusion.pos_pred_neg": counts[(1, 0)],
        "confusion.pos_pred_pos": counts[(1, 1)],
    }


def _ece(labels: Sequence[int], p_negative: Sequence[float], bins: int = 10) -> float:
    """Expected calibration error of P(negative) over equal-width bins."""
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, p in enumerate(p_negative) if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if idx:
            mean_p = sum(p_negative[i] for i in idx) / len(idx)
            frac_neg = sum(1 for i in idx if labels[i] == 0) / len(idx)
            total += len(idx) * abs(mean_p - frac_neg)
    return total / max(1, len(labels))


def _trained_seed(model_dir: Path) -> int:
    """The split seed the model was trained with (train_info.json), else the default 42."""
    try:
        return int(json.loads((model_dir / "train_info.json").read_text(encoding="utf-8"))["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return _DEFAULTS.seed


app = typer.Typer(help="Sentiment model: train and evaluate.", no_args_is_help=True)
app.command("train")(train_sentiment)
app.command("eval")(eval_sentiment)
app.command("train-ngram")(train_sentiment_ngram)

if __name__ == "__main__":
    app()
