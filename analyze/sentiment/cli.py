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

from analyze.sentiment.base import SentimentModel
from analyze.sentiment.train import (
    DATASETS,
    DataError,
    LabelledText,
    TrainConfig,
    default_data_dir,
    load_splits,
    read_labelled_csv,
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


def _parse_upsample(spec: str) -> dict[str, int]:
    try:
        pairs = [item.split("=", 1) for item in spec.split(",") if item.strip()]
        return {name.strip(): int(copies) for name, copies in pairs}
    except ValueError as exc:
        raise typer.BadParameter(f"--upsample: expected name=copies[,name=copies], got {spec!r}") from exc


def eval_sentiment(
    data: Path | None = typer.Option(None, "--data", help="CSV with columns label,text (default: held-out dev splits)"),
    limit: int | None = typer.Option(None, help="score at most this many rows per data set"),
    model_dir: Path | None = typer.Option(None, "--model-dir", help="transformers model dir (default: shipped)"),
) -> None:
    """Accuracy, macro-F1 and confusion matrix of snownlp, TF-IDF and the transformer, per data set."""
    from analyze.sentiment.snow import SnowNLPSentiment
    from analyze.sentiment.train import train_tfidf
    from analyze.sentiment.transformer import TransformerSentiment

    logging.basicConfig(level=logging.WARNING)
    seed = _trained_seed(model_dir or SHIPPED_MODEL_DIR)
    try:
        splits = load_splits(default_data_dir(), seed=seed)
        if data is not None:
            sets = {data.stem.replace(".", "_"): read_labelled_csv(data)}
        else:
            sets = {name: splits[name]["test"] for name in DATASETS}
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if limit is not None:
        sets = {name: rows[:limit] for name, rows in sets.items()}

    train_rows = [r for name in DATASETS for r in splits[name]["train"]]
    typer.echo(f"sentiment.tfidf.train_rows: {len(train_rows)}")
    models: list[SentimentModel] = [
        SnowNLPSentiment(),
        train_tfidf(splits),
        TransformerSentiment(model_dir),
    ]
    for set_name, rows in sets.items():
        typer.echo(f"sentiment.{set_name}.rows: {len(rows)}")
        for model in models:
            p_negative = model.predict_negative([r.text for r in rows])
            for key, value in metrics(rows, p_negative).items():
                shown = f"{value:.4f}" if isinstance(value, float) else str(value)
                typer.echo(f"sentiment.{set_name}.{model.name}.{key}: {shown}")


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

if __name__ == "__main__":
    app()
