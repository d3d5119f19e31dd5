"""TF-IDF baseline: character 1-3-gram TF-IDF + logistic regression (scikit-learn, extra ``ml``).

The evaluation baseline the shipped transformer must beat; it trains in seconds, so ``yuqing eval
sentiment`` fits it on the train split each time. Saved as plain arrays (``tfidf.npz`` + ``vocab.json``),
not pickle, so loading a directory never executes code from it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from analyze.sentiment.base import SentimentModel

SHIPPED_TFIDF_DIR = Path(__file__).resolve().parent / "model" / "tfidf"
_TEXT_CAP = 5000  # chars; a huge post's sentiment is decided long before this, and n-gramming it costs


class TfidfSentiment(SentimentModel):
    """Char n-gram TF-IDF + LogisticRegression; label 1 positive, 0 negative (the dev CSVs' convention)."""

    name = "tfidf"

    def __init__(self, *, c: float = 4.0, min_df: int = 2, ngram_max: int = 3) -> None:
        try:
            from sklearn.feature_extraction.text import TfidfVectorizer
            from sklearn.linear_model import LogisticRegression
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("TfidfSentiment needs scikit-learn: pip install 'yuqing[ml]'") from exc
        self.c, self.min_df, self.ngram_max = c, min_df, ngram_max
        self._vectorizer = TfidfVectorizer(
            analyzer="char", ngram_range=(1, ngram_max), min_df=min_df, sublinear_tf=True, dtype=_float32()
        )
        self._clf = LogisticRegression(C=c, max_iter=2000, solver="liblinear")
        self._fitted = False

    def fit(self, texts: Sequence[str], labels: Sequence[int]) -> TfidfSentiment:
        """Learn vocabulary, IDF and weights from labelled texts (1 positive, 0 negative, 2 neutral if any)."""
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        if not {0, 1} <= set(labels) <= {0, 1, 2}:
            raise ValueError(f"labels must contain both 0 and 1 (and may contain 2), got {sorted(set(labels))}")
        x = self._vectorizer.fit_transform([clean_text(t) for t in texts])
        if 2 in set(labels):  # liblinear is binary only; lbfgs fits a multinomial model
            from sklearn.linear_model import LogisticRegression

            self._clf = LogisticRegression(C=self.c, max_iter=1000, solver="lbfgs")
        self._clf.fit(x, list(labels))
        self._fitted = True
        return self

    def predict_negative(self, texts: Sequence[str]) -> list[float]:
        """P(label 0) from the logistic regression; empty text is 0.5."""
        if not self._fitted:
            raise RuntimeError("TfidfSentiment is not fitted: call fit() or load()")
        if not texts:
            return []
        cleaned = [clean_text(t) for t in texts]
        proba = self._clf.predict_proba(self._vectorizer.transform(cleaned))
        neg_col = list(self._clf.classes_).index(0)
        return [0.5 if not c else float(p) for c, p in zip(cleaned, proba[:, neg_col], strict=True)]

    def predict_proba3(self, texts: Sequence[str]) -> list[tuple[float, float, float]]:
        """(P negative, P positive, P neutral) per text; a 2-class fit has P neutral 0; empty text is neutral."""
        if not self._fitted:
            raise RuntimeError("TfidfSentiment is not fitted: call fit() or load()")
        if not texts:
            return []
        cleaned = [clean_text(t) for t in texts]
        proba = self._clf.predict_proba(self._vectorizer.transform(cleaned))
        classes = [int(c) for c in self._clf.classes_]
        out: list[tuple[float, float, float]] = []
        for c, row in zip(cleaned, proba, strict=True):
            if not c:
                out.append((0.0, 0.0, 1.0))
                continue
            by = dict(zip(classes, (float(v) for v in row), strict=True))
            out.append((by.get(0, 0.0), by.get(1, 0.0), by.get(2, 0.0)))
        return out

    def save(self, directory: Path) -> None:
        """Write ``vocab.json`` (settings + vocabulary) and ``tfidf.npz`` (idf, coef, intercept)."""
        import numpy as np

        if not self._fitted:
            raise RuntimeError("TfidfSentiment is not fitted: nothing to save")
        directory.mkdir(parents=True, exist_ok=True)
        vocab = {k: int(v) for k, v in self._vectorizer.vocabulary_.items()}
        meta = {"c": self.c, "min_df": self.min_df, "ngram_max": self.ngram_max, "vocabulary": vocab}
        (directory / "vocab.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        np.savez(
            directory / "tfidf.npz",
            # float32 halves the file; the scores move by < 1e-6
            idf=self._vectorizer.idf_.astype(np.float32),
            coef=self._clf.coef_.astype(np.float32),
            intercept=self._clf.intercept_.astype(np.float32),
            classes=self._clf.classes_,
        )

    @classmethod
    def load_default(cls) -> TfidfSentiment:
        """The baseline shipped beside the transformer (``model/tfidf``, written by ``yuqing train sentiment``)."""
        return cls.load(SHIPPED_TFIDF_DIR)

    @classmethod
    def load(cls, directory: Path) -> TfidfSentiment:
        """A fitted model from a directory written by ``save``; RuntimeError if files are missing or bad."""
        import numpy as np

        try:
            meta = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
            with np.load(directory / "tfidf.npz", allow_pickle=False) as arrays:
                idf, coef = arrays["idf"].astype(np.float64), arrays["coef"].astype(np.float64)
                intercept, classes = arrays["intercept"].astype(np.float64), arrays["classes"]
        except (OSError, ValueError, KeyError) as exc:
            raise RuntimeError(f"cannot load TF-IDF model from {directory}: {exc}") from exc
        model = cls(c=meta["c"], min_df=meta["min_df"], ngram_max=meta["ngram_max"])
        model._vectorizer.vocabulary_ = meta["vocabulary"]
        model._vectorizer.idf_ = idf
        model._clf.coef_, model._clf.intercept_, model._clf.classes_ = coef, intercept, classes
        model._fitted = True
        return model


def clean_text(text: str) -> str:
    """The text as the n-gram models see it: stripped and capped at ``_TEXT_CAP`` chars."""
    return str(text).strip()[:_TEXT_CAP]


def _float32():
    import numpy as np

    return np.float32
