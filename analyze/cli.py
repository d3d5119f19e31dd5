"""Analysis commands: ``yuqing train topics`` and ``yuqing eval topics`` (mounted by core.cli).

The functions are plain typer-compatible callables so the lead can mount them under any group; ``app``
exposes them as ``train-topics`` / ``eval-topics`` for direct use.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer

from analyze.topics import DEFAULT_MODEL, WEAK_MARGIN, TopicClassifier, file_sha256, read_jsonl, train_model

app = typer.Typer(help="Text analysis: topic model training and evaluation.", no_args_is_help=True)

SHARED_MAILBOX = Path(__file__).resolve().parents[2] / "shared" / "data" / "mailbox"
DEFAULT_LABELLED = SHARED_MAILBOX / "labelled.dev.jsonl"


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        typer.echo(f"error: {what} not found: {path}", err=True)
        raise typer.Exit(2)
    return path


def train_topics(
    out: Path = typer.Option(DEFAULT_MODEL, "--out", help="Where to write the model JSON."),
    messages: Path = typer.Option(SHARED_MAILBOX / "messages.jsonl", "--messages", help="Unlabelled messages."),
    replies: Path = typer.Option(SHARED_MAILBOX / "replies.jsonl", "--replies", help="Answered messages."),
    labelled: Path | None = typer.Option(
        DEFAULT_LABELLED, "--labelled", help="Labelled JSONL (subject, body, label); scored by cross-validation."
    ),
    no_labelled: bool = typer.Option(False, "--no-labelled", help="Train from weak labels only."),
    seed: int = typer.Option(0, "--seed"),
    weak_margin: float = typer.Option(WEAK_MARGIN, "--weak-margin", min=0.0, max=1.0,
                                      help="Keep a weak label when its class leads the runner-up by this share."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Score by cross-validation only; write no model."),
) -> None:
    """Train the level-1 topic model from weak labels (+ labelled data) and write it as JSON."""
    _need(messages, "messages file")
    _need(replies, "replies file")
    lab = None if no_labelled or labelled is None else _need(labelled, "labelled file")
    try:
        report = train_model(messages=messages, replies=replies, labelled=lab, out=out, seed=seed,
                             weak_margin=weak_margin, write=not dry_run)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"topics.model: {report.out}")
    typer.echo(f"topics.train.weak_examples: {report.n_weak}")
    typer.echo(f"topics.train.labelled_examples: {report.n_labelled}")
    typer.echo(f"topics.train.vocab: {report.vocab_size}")
    if report.cv_accuracy is not None:
        typer.echo(f"topics.cv_accuracy: {report.cv_accuracy:.4f}")
    if report.period_accuracy is not None:
        typer.echo(f"topics.leave_one_period_out_accuracy: {report.period_accuracy:.4f}")
    for name, recall in sorted(report.class_recall.items()):
        typer.echo(f"topics.cv_recall.{name}: {recall:.4f}")
    for name, n in sorted(report.class_counts.items(), key=lambda kv: -kv[1]):
        typer.echo(f"topics.train.class.{name}: {n}")


def eval_topics(
    data: Path | None = typer.Option(None, "--data", help="JSONL with subject, body, label (default: labelled.dev)."),
    model: Path | None = typer.Option(None, "--model", help="Model JSON (default: the shipped one)."),
) -> None:
    """Accuracy and per-class precision/recall/F1 of the topic classifier on a labelled JSONL file."""
    path = _need(data or DEFAULT_LABELLED, "labelled data file")
    try:
        records = read_jsonl(path, ("subject", "body", "label"))
    except (ValueError, UnicodeDecodeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not records:
        typer.echo(f"error: {path} has no records", err=True)
        raise typer.Exit(2)
    clf = TopicClassifier.load(model)
    if clf.model is not None and clf.model.meta.get("labelled_sha256") == file_sha256(path):
        typer.echo(
            "note: the model was trained on this file; see topics.cv_accuracy from training for held-out accuracy",
            err=True,
        )
    gold = [str(r["label"]) for r in records]
    pred = [clf.classify_subject_body(r["subject"], r["body"]).l1 for r in records]
    correct = sum(g == p for g, p in zip(gold, pred, strict=True))
    typer.echo(f"topics.backend: {clf.backend}")
    if clf.model is not None and clf.model.meta.get("cv_accuracy") is not None:
        typer.echo(f"topics.model_cv_accuracy: {float(clf.model.meta['cv_accuracy']):.4f}")
    typer.echo(f"topics.n: {len(gold)}")
    typer.echo(f"topics.accuracy: {correct / len(gold):.4f}")
    tp = Counter(g for g, p in zip(gold, pred, strict=True) if g == p)
    n_gold, n_pred = Counter(gold), Counter(pred)
    rows = []
    f1s = []
    for name in sorted(set(gold) | set(pred), key=lambda c: -n_gold[c]):
        precision = tp[name] / n_pred[name] if n_pred[name] else 0.0
        recall = tp[name] / n_gold[name] if n_gold[name] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if n_gold[name]:
            f1s.append(f1)
        rows.append((name, precision, recall, f1, n_gold[name]))
    typer.echo(f"topics.macro_f1: {sum(f1s) / len(f1s):.4f}")
    typer.echo(f"{_pad('class', 16)}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
    for name, precision, recall, f1, support in rows:
        typer.echo(f"{_pad(name, 16)}{precision:>10.4f}{recall:>10.4f}{f1:>10.4f}{support:>10d}")


def _pad(text: str, width: int) -> str:
    """Left-align in a terminal where CJK characters take two columns."""
    shown = sum(2 if ord(ch) >= 0x2E80 else 1 for ch in text)
    return text + " " * max(1, width - shown)


app.command("train-topics")(train_topics)
app.command("eval-topics")(eval_topics)
