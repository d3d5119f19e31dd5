"""The reference point of issue #23: a plain character-bigram TF-IDF single-pass clusterer.

Each post, in time order, joins the most similar cluster centroid (cosine of bigram TF-IDF, IDF from the
stream so far) at or above a fixed ``threshold``, else opens a cluster. No reposts, no places, no decay,
no window (reposts are followed only when asked, for the linked figures). The threshold is fixed at
``BASELINE_THRESHOLD`` (not tuned on the scored data) and reported with the figures, because the baseline's
score moves with it.
"""

from __future__ import annotations

import math
import re
from collections import Counter

BASELINE_THRESHOLD = 0.3
_CJK = re.compile(r"[\u3400-\u9fff]+")


def _bigrams(text: str) -> Counter[str]:
    return Counter(run[i : i + 2] for run in _CJK.findall(text or "") for i in range(len(run) - 1))


def baseline_clusters(texts: list[tuple[str, str]], threshold: float = BASELINE_THRESHOLD,
                      reposts: dict[str, str] | None = None) -> dict[str, int]:
    """Cluster ``(id, text)`` pairs given in time order; return id -> cluster number. With ``reposts``
    (id -> original id) a repost of a clustered original simply joins it, as issue #23's linked baseline."""
    df: Counter[str] = Counter()
    sq: list[float] = []  # squared norm of each cluster's centroid
    postings: dict[str, dict[int, float]] = {}  # bigram -> cluster -> centroid weight (the centroids, inverted)
    out: dict[str, int] = {}
    for n, (pid, text) in enumerate(texts, start=1):
        original = (reposts or {}).get(pid)
        if original is not None and original in out:
            out[pid] = out[original]
            continue
        tf = _bigrams(text)
        df.update(tf.keys())
        vec = {g: (1 + math.log(c)) * math.log((n + 1) / (df[g] + 1) + 1) for g, c in tf.items()}
        norm = math.sqrt(sum(w * w for w in vec.values())) or 1.0
        vec = {g: w / norm for g, w in vec.items()}
        dots: dict[int, float] = {}
        for g, w in vec.items():
            for k, cw in postings.get(g, {}).items():
                dots[k] = dots.get(k, 0.0) + w * cw
        best, best_sim = -1, threshold
        for k in sorted(dots):
            sim = dots[k] / math.sqrt(sq[k])
            if sim >= best_sim:
                best, best_sim = k, sim
        if best < 0:
            best = len(sq)
            sq.append(0.0)
        for g, w in vec.items():
            cw = postings.setdefault(g, {}).get(best, 0.0)
            sq[best] += (cw + w) ** 2 - cw**2
            postings[g][best] = cw + w
        out[pid] = best
    return out
