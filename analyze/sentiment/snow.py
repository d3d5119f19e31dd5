"""snownlp baseline sentiment (a naive-Bayes model trained on shopping reviews, shipped by snownlp)."""

from __future__ import annotations

from collections.abc import Sequence

from analyze.sentiment.base import SentimentModel


class SnowNLPSentiment(SentimentModel):
    """snownlp's ``sentiments`` (P(positive)) turned into P(negative)."""

    name = "snownlp"

    def __init__(self) -> None:
        # Imported here: snownlp loads its model files at import time.
        from snownlp import SnowNLP

        self._snow = SnowNLP

    def predict_negative(self, texts: Sequence[str]) -> list[float]:
        """One snownlp call per text; empty text is neutral (0.5)."""
        out: list[float] = []
        for text in texts:
            text = text.strip()
            if not text:
                out.append(0.5)
                continue
            out.append(1.0 - float(self._snow(text[:2000]).sentiments))
        return out
