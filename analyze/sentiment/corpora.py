"""Every labelled sentiment corpus in ``../shared/data/sentiment`` and the one deterministic split all tools use.

Sets (``/work/shared/README.md``): review corpora ``waimai``, ``hotel``, ``shopping`` and the Weibo sets
``weibo``, ``weibo2018``, ``weibo_covid7`` have 2 classes (0 negative, 1 positive); ``covid_weibo`` and
``smp2020_usual`` have 3 (2 is a real neutral). Any further ``*.dev.csv`` dropped into the directory is
picked up too (2- or 3-class by its labels).

Split: a seeded hash of the text (``analyze.sentiment.train.split_of``, seed 42): 10 % ``test`` (only ever
scored, by ``yuqing eval sentiment``), 5 % ``val`` (fits the ensemble's stacker and calibration), 85 %
``train``. The same text always lands in the same part, in every set, so an eval row is never trained on.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from analyze.sentiment.train import DataError, default_data_dir, split_of

NEGATIVE, POSITIVE, NEUTRAL = 0, 1, 2
REVIEW_SETS = ("waimai", "hotel", "shopping")
WEIBO_SETS = ("weibo", "weibo2018", "weibo_covid7")
THREE_CLASS_SETS = ("covid_weibo", "smp2020_usual")
KNOWN_SETS = REVIEW_SETS + WEIBO_SETS + THREE_CLASS_SETS
PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class Row:
    """One labelled text: 0 negative, 1 positive, 2 neutral."""

    label: int
    text: str


@dataclass
class Corpus:
    """One data set, split into train / val / test."""

    name: str
    classes: int  # 2 or 3
    parts: dict[str, list[Row]]

    @property
    def domain(self) -> str:
        """``review`` for the product-review corpora, ``social`` for everything else."""
        return "review" if self.name in REVIEW_SETS else "social"


def read_rows(path: Path) -> list[Row]:
    """Rows of a ``label,text[,...]`` CSV with labels 0/1/2; DataError naming the bad line."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows: list[Row] = []
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            if "label" not in header or "text" not in header:
                raise DataError(f"{path}:1: header must contain columns label,text (got {header})")
            for row in reader:
                label, text = (row.get("label") or "").strip(), row.get("text")
                if label not in ("0", "1", "2") or text is None:
                    raise DataError(f"{path}:{reader.line_num}: label must be 0, 1 or 2, got {label!r}")
                if text.strip():
                    rows.append(Row(int(label), text))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc})") from exc
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from exc
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def set_names(data_dir: Path) -> list[str]:
    """The known sets first (in their fixed order), then any other ``*.dev.csv``, by name."""
    found = {p.name[: -len(".dev.csv")] for p in data_dir.glob("*.dev.csv")}
    return [n for n in KNOWN_SETS if n in found] + sorted(found - set(KNOWN_SETS))


def load_corpora(data_dir: Path | None = None, *, seed: int = 42, limit: int | None = None) -> dict[str, Corpus]:
    """``{name: Corpus}`` for every ``*.dev.csv`` in ``data_dir`` (default ``../shared/data/sentiment``).

    ``limit`` caps the train part of each set (first rows in file order), for quick runs.
    """
    data_dir = data_dir or default_data_dir()
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: sentiment data directory not found (expected ../shared/data/sentiment)")
    out: dict[str, Corpus] = {}
    for name in set_names(data_dir):
        rows = read_rows(data_dir / f"{name}.dev.csv")
        parts: dict[str, list[Row]] = {p: [] for p in PARTS}
        for row in rows:
            parts[split_of(row.text, seed=seed)].append(row)
        if limit is not None:
            parts["train"] = parts["train"][:limit]
        classes = 3 if any(r.label == NEUTRAL for r in rows) else 2
        out[name] = Corpus(name, classes, parts)
    if not out:
        raise DataError(f"{data_dir}: no *.dev.csv files")
    return out
