"""``yuqing eval events FILE``: replay mailbox-shaped JSONL through the clusterer and report the events.

Each line needs ``id, subject, body, time`` (``user``, ``likes`` optional). Messages are replayed in time
order through the same normalisation, segmentation, topic classifier, entity extraction and MinHash
signature as the analyze stage, then ``EventClusterer.assign``. Figures, one ``name: value`` line each:

* the top events by size with one sample subject each (PII masked), and a label-free check of each: its
  commonest anchor (compound, village, company), the share of members naming it (``anchor_purity``) and
  the share of all messages naming it in their subject that landed in the event (``anchor_recall``);
* ``labelled_purity_*``: for messages with a known class (``--labels``; labelled messages not in FILE
  are replayed along with it unless ``--no-merge-labelled``), the share of each event's labelled members
  in its majority class (top events, and every event with at least two labelled members);
* ``duplicate_recall``: of message pairs with the same normalised subject (a matter sent again), the
  share that landed in one event — a label-free recall estimate.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from datetime import datetime
from itertools import combinations
from pathlib import Path
from typing import Any

import typer

DEFAULT_LABELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "mailbox" / "labelled.dev.jsonl"

log = logging.getLogger(__name__)


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Rows with the required fields, and how many lines were skipped (malformed or incomplete)."""
    rows: list[dict[str, Any]] = []
    skipped = 0
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("not an object")
                row["_at"] = datetime.fromisoformat(str(row["time"]))
                if row["_at"].tzinfo is None:
                    raise ValueError("time without a UTC offset")
                row["id"] = str(row["id"])
                row["subject"] = str(row.get("subject") or "")
                row["body"] = str(row.get("body") or "")
            except (ValueError, KeyError, TypeError) as exc:
                skipped += 1
                log.warning("%s line %d skipped: %s", path, number, exc)
                continue
            rows.append(row)
    return rows, skipped


def replay_mailbox(rows: list[dict[str, Any]], *, lac: bool = False, topics: bool = True) -> tuple[dict[str, str], str]:
    """Replay mailbox rows (as ``_read_jsonl`` gives them; sorted here by time) through the analyze stage's
    steps and a fresh clusterer: (row id -> event id, entity backend). Sets each row's ``_anchors``."""
    from alerts.events.clusterer import EventClusterer
    from alerts.events.minhash import minhash_signature
    from alerts.events.places import anchor_keys, focus_text
    from analyze.entities import EntityExtractor
    from analyze.normalize import normalize, text_for_scoring
    from analyze.segment import tokenize
    from analyze.topics import TopicClassifier
    from core.records import AnalyzedPost, Engagement, Sentiment, SentimentLabel, Source, Topic, post_id

    rows.sort(key=lambda r: (r["_at"], r["id"]))
    extractor = EntityExtractor.load(use_lac=lac)
    classifier = TopicClassifier.load() if topics else None
    clusterer = EventClusterer()
    event_of: dict[str, str] = {}
    for r in rows:
        text = f"{r['subject']}\n{r['body']}" if r["subject"] else r["body"]
        scoring = text_for_scoring(text)
        likes = r.get("likes")
        post = AnalyzedPost(
            id=post_id("mailbox", r["id"]), source=Source.mailbox, external_id=r["id"], title=r["subject"],
            text=r["body"], published_at=r["_at"], author_hash=str(r.get("user") or "") or None,
            engagement=Engagement(likes=likes if isinstance(likes, int) and likes >= 0 else 0),
            text_norm=normalize(text), tokens=tokenize(scoring),
            sentiment=Sentiment(label=SentimentLabel.neutral, score=0.5),
            topic=classifier.classify(scoring) if classifier is not None else Topic(l1="unknown"),
            entities=extractor.extract(text), signature=minhash_signature(scoring),
        )
        event_of[r["id"]] = clusterer.assign(post).event_id
        r["_anchors"] = anchor_keys(post.entities, focus_text(post))
    return {k: clusterer.resolve(e) for k, e in event_of.items()}, extractor.backend


def _purity(groups: list[list[str]]) -> tuple[float, int]:
    """Share of labelled members in their event's majority class, over the groups given; and member count."""
    total = majority = 0
    for labels in groups:
        if labels:
            total += len(labels)
            majority += Counter(labels).most_common(1)[0][1]
    return (majority / total if total else float("nan")), total


def _eval_stream(posts: Path, truth: Path | None, half: int | None, lac: bool) -> None:
    """``--posts/--truth``: score the clusterer and the bigram baseline on labelled stories."""
    from alerts.events.evaluate import eval_stream

    logging.basicConfig(level=logging.WARNING)
    if truth is None or not posts.exists() or not truth.exists():
        typer.echo("error: --posts and --truth must name existing files", err=True)
        raise typer.Exit(2)
    for name, value in eval_stream(posts, truth, half=half, lac=lac).items():
        typer.echo(f"{name}: {value:.3f}" if isinstance(value, float) and not value.is_integer() else
                   f"{name}: {value:g}")


def eval_events(
    file: Path | None = typer.Argument(None, help="mailbox-shaped JSONL: id, subject, body, time[, user, likes]"),
    posts: Path | None = typer.Option(None, "--posts", help="posts JSONL (project post format) to score"),
    truth: Path | None = typer.Option(None, "--truth", help="JSONL external_id -> event_id (with --posts)"),
    half: int | None = typer.Option(None, "--half", help="score only the even (0) or odd (1) stories"),
    top: int = 15,
    labels: Path | None = typer.Option(None, "--labels", help="JSONL with id and label (default: shared dev set)"),
    merge_labelled: bool = typer.Option(True, "--merge-labelled/--no-merge-labelled",
                                        help="replay labelled messages missing from FILE along with it"),
    lac: bool = typer.Option(False, "--lac/--no-lac", help="use the LAC model for entities (slower)"),
    topics: bool = typer.Option(True, "--topics/--no-topics",
                                help="classify topics as the analyze stage does (hot-window keys use them)"),
) -> None:
    """Replay messages through the event clusterer; print top events, purity and duplicate recall (or, with
    ``--posts/--truth``, B-cubed scores, the baseline's and detection delay)."""
    if posts is not None:
        _eval_stream(posts, truth, half, lac)
        return
    if file is None:
        typer.echo("error: give a mailbox FILE, or --posts FILE --truth TRUTH", err=True)
        raise typer.Exit(2)
    from analyze.normalize import normalize
    from analyze.privacy import mask_pii

    logging.basicConfig(level=logging.WARNING)
    if not file.exists():
        typer.echo(f"error: {file} not found", err=True)
        raise typer.Exit(2)
    rows, skipped = _read_jsonl(file)
    label_of: dict[str, str] = {}
    labels_path = labels or (DEFAULT_LABELS if DEFAULT_LABELS.exists() else None)
    merged = 0
    if labels_path is not None:
        labelled, _ = _read_jsonl(labels_path)
        label_of = {r["id"]: str(r["label"]) for r in labelled if r.get("label")}
        if merge_labelled:
            present = {r["id"] for r in rows}
            extra = [r for r in labelled if r["id"] not in present]
            rows.extend(extra)
            merged = len(extra)
    started = time.perf_counter()
    event_of, extractor_backend = replay_mailbox(rows, lac=lac, topics=topics)
    elapsed = time.perf_counter() - started

    members: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        members[event_of[r["id"]]].append(r)
    ranked = sorted(members.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    typer.echo(f"events.posts: {len(rows)}")
    typer.echo(f"events.skipped_lines: {skipped}")
    typer.echo(f"events.entities_backend: {extractor_backend}")
    typer.echo(f"events.topics: {'classifier' if topics else 'off'}")
    typer.echo(f"events.posts_per_s: {len(rows) / elapsed:.1f}")
    typer.echo(f"events.events: {len(members)}")
    typer.echo(f"events.multi_post_events: {sum(1 for _, m in ranked if len(m) > 1)}")
    typer.echo(f"events.singleton_share: {sum(1 for _, m in ranked if len(m) == 1) / max(len(members), 1):.3f}")
    purities: list[float] = []
    recalls: list[float] = []
    for i, (event_id, group) in enumerate(ranked[:top], 1):
        sample = " ".join(mask_pii(group[0]["subject"] or group[0]["body"][:40]).text.split())
        typer.echo(f"events.top{i:02d}.size: {len(group)}")
        typer.echo(f"events.top{i:02d}.sample: {sample[:60]}")
        anchors = Counter(a for r in group for a in r["_anchors"])
        if anchors:
            # Label-free check: the event's commonest anchor — how many members name it (purity), and how
            # many of all messages naming it in their subject landed here (recall).
            anchor = anchors.most_common(1)[0][0]
            purity = sum(anchor in r["subject"] + r["body"] for r in group) / len(group)
            naming = [r for r in rows if anchor in r["subject"]]
            recall = sum(event_of[r["id"]] == event_id for r in naming) / len(naming) if naming else float("nan")
            purities.append(purity)
            if naming:
                recalls.append(recall)
            typer.echo(f"events.top{i:02d}.anchor: {anchor}")
            typer.echo(f"events.top{i:02d}.anchor_purity: {purity:.3f}")
            typer.echo(f"events.top{i:02d}.anchor_recall: {recall:.3f}")
    nan = float("nan")
    typer.echo(f"events.top_anchor_purity_mean: {sum(purities) / len(purities) if purities else nan:.3f}")
    typer.echo(f"events.top_anchor_recall_mean: {sum(recalls) / len(recalls) if recalls else nan:.3f}")

    def labels_in(group: list[dict[str, Any]]) -> list[str]:
        return [label_of[r["id"]] for r in group if r["id"] in label_of]

    labelled_present = sum(1 for r in rows if r["id"] in label_of)
    typer.echo(f"events.labelled_merged: {merged}")
    typer.echo(f"events.labelled_in_replay: {labelled_present}")
    top_purity, top_n = _purity([labels_in(g) for _, g in ranked[:top]])
    multi = [labels_in(g) for _, g in ranked if len(labels_in(g)) >= 2]
    all_purity, all_n = _purity(multi)
    typer.echo(f"events.labelled_purity_top: {top_purity:.3f}")
    typer.echo(f"events.labelled_in_top: {top_n}")
    typer.echo(f"events.labelled_purity_multi: {all_purity:.3f}")
    typer.echo(f"events.labelled_in_multi: {all_n}")

    by_subject: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        key = normalize(r["subject"]).rstrip("!！?？。.")
        if len(key) >= 6:
            by_subject[key].append(r["id"])
    pairs = together = 0
    for ids in by_subject.values():
        for a, b in combinations(ids, 2):
            pairs += 1
            together += event_of[a] == event_of[b]
    typer.echo(f"events.duplicate_pairs: {pairs}")
    typer.echo(f"events.duplicate_recall: {together / pairs if pairs else float('nan'):.3f}")
