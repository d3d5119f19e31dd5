"""The sentiment contract: a batch of texts in, calibrated P(negative) out.

Lifecycle: built once by ``core.wiring`` (loading weights may take seconds), then ``predict_negative``
is called from one worker thread with batches; implementations set their own thread counts
explicitly (``threads``) so two workers on two cores do not oversubscribe.

Failure: raises ``RuntimeError`` if the model files are missing or unreadable at construction,
never per text: odd input (empty, very long, emoji only) still gets a score.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from core.records import Sentiment, SentimentLabel


class SentimentModel(ABC):
    """Scores texts for negativity."""

    name: str = "base"

    @abstractmethod
    def predict_negative(self, texts: Sequence[str]) -> list[float]:
        """Calibrated probability that each text is negative, in input order."""

    def score(self, texts: Sequence[str], *, neutral_band: float = 0.15,
              words: Sequence[Sequence[str]] | None = None) -> list[Sentiment]:
        """Three-class verdicts: 负面 above 0.5+band, 正面 below 0.5-band, else 中性.

        ``words``: per text, the raw words the analyze stage segmented (``analyze.topics.text_words``), so a
        model with word features need not segment again; models without them ignore it.
        """
        out: list[Sentiment] = []
        for p in self.predict_negative(texts):
            p = min(1.0, max(0.0, float(p)))
            if p >= 0.5 + neutral_band:
                label = SentimentLabel.negative
            elif p <= 0.5 - neutral_band:
                label = SentimentLabel.positive
            else:
                label = SentimentLabel.neutral
            out.append(Sentiment(label=label, score=p))
        return out
