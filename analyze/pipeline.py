"""The analyze stage for a batch of posts: everything that needs no shared state.

Normalisation, segmentation, sentiment (batched), topic, entities, PII masking and the MinHash
signature are all pure functions of one post, so any number of analyze workers can share the load;
the stateful part (which event a post joins) happens in the event stage (``alerts.worker``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from alerts.events.minhash import minhash_signature
from analyze.entities import EntityExtractor
from analyze.normalize import normalize, strip_html, text_for_scoring
from analyze.privacy import mask_pii
from analyze.sentiment.base import SentimentModel
from analyze.topics import TopicClassifier
from core.records import AnalyzedPost, Post

log = logging.getLogger(__name__)


class Analyzer:
    """Turns Posts into AnalyzedPosts. Built once by core.wiring; used from one worker thread."""

    def __init__(
        self,
        *,
        sentiment: SentimentModel,
        topics: TopicClassifier,
        entities: EntityExtractor,
        neutral_band: float = 0.15,
        num_perm: int = 64,
        ner: EntityExtractor | None = None,
        ner_sources: frozenset[str] = frozenset({"hotline", "mailbox"}),
    ) -> None:
        self.sentiment = sentiment
        self.topics = topics
        self.entities = entities
        self.ner = ner  # the slower NER extractor, for ``ner_sources`` (None: gazetteer and patterns only)
        self.ner_sources = ner_sources
        self.neutral_band = neutral_band
        self.num_perm = num_perm

    def analyze(self, posts: Sequence[Post]) -> list[AnalyzedPost]:
        """Analyze a batch; sentiment is scored in one batched call."""
        if not posts:
            return []
        plain = [strip_html(p.full_text) for p in posts]
        scoring = [text_for_scoring(t) for t in plain]
        sentiments = self.sentiment.score(scoring, neutral_band=self.neutral_band)
        out: list[AnalyzedPost] = []
        for post, text_plain, text_scoring, sentiment in zip(posts, plain, scoring, sentiments, strict=True):
            # One segmentation per post serves the topic model and the stored tokens.
            topic, tokens = self.topics.classify_and_tokenize(text_scoring)
            if self.ner is not None and post.source.value in self.ner_sources:
                # Names the model found are masked too (raw names never leave this function).
                entities, names = self.ner.extract_with_people(text_plain)
            else:
                entities, names = self.entities.extract(text_plain), []
            masked_text = mask_pii(post.text, names=names)
            masked_title = mask_pii(post.title, names=names) if post.title else None
            # Place hints from the source (a hotline order's district field) count as places too.
            for hint in post.place_hints:
                if hint not in entities.places:
                    entities.places.append(hint)
            out.append(
                AnalyzedPost(
                    **post.model_dump(),
                    text_norm=normalize(text_plain),
                    text_masked=masked_text.text,
                    title_masked=masked_title.text if masked_title else "",
                    tokens=tokens,
                    sentiment=sentiment,
                    topic=topic,
                    entities=entities,
                    pii_found=sorted(set(masked_text.kinds) | set(masked_title.kinds if masked_title else [])),
                    signature=minhash_signature(text_scoring, num_perm=self.num_perm),
                )
            )
        return out
