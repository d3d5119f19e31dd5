"""The analyze stage for a batch of posts: everything that needs no shared state.

Normalisation, segmentation, sentiment (batched), topic, entities, PII masking and the MinHash
signature are all pure functions of one post, so any number of analyze workers can share the load;
the stateful part (which event a post joins) happens in the event stage (``alerts.worker``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from alerts.events.minhash import minhash_signature
from analyze.entities import EntityExtractor
from analyze.normalize import normalize, strip_html, text_for_scoring
from analyze.privacy import mask_pii
from analyze.sentiment.base import SentimentModel
from analyze.topics import TopicClassifier
from core.records import AnalyzedPost, Post

if TYPE_CHECKING:
    from analyze.process import AnalyzePool

log = logging.getLogger(__name__)

# Distinct texts whose analysis is kept (reposts and forwarded messages repeat a text word for word; the demo
# stream repeats ~14 % of its texts). About 10 KiB per entry.
TEXT_CACHE_SIZE = 4096


class Analyzer:
    """Turns Posts into AnalyzedPosts. Built once by core.wiring; used from one worker thread.

    With ``pool`` (``analyze.processes`` >= 1) the models live in the pool's child processes and this
    object keeps only the cache, the within-batch de-duplication and the assembly of the results.
    """

    def __init__(
        self,
        *,
        sentiment: SentimentModel | None = None,
        topics: TopicClassifier | None = None,
        entities: EntityExtractor | None = None,
        neutral_band: float = 0.15,
        num_perm: int = 64,
        ner: EntityExtractor | None = None,
        ner_sources: frozenset[str] = frozenset({"hotline", "mailbox"}),
        cache_size: int = TEXT_CACHE_SIZE,
        pool: AnalyzePool | None = None,
    ) -> None:
        if pool is None and (sentiment is None or topics is None or entities is None):
            raise ValueError("an Analyzer needs its models (sentiment, topics, entities) or a pool that has them")
        self.sentiment = sentiment
        self.topics = topics
        self.entities = entities
        self.ner = ner  # the slower NER extractor, for ``ner_sources`` (None: gazetteer and patterns only)
        self.ner_sources = ner_sources
        self.pool = pool
        # Part of the cache key: the same text from a NER source and from another source may differ.
        self.ner_enabled = bool(pool.ner_enabled) if pool is not None else ner is not None
        self.neutral_band = neutral_band
        self.num_perm = num_perm
        # (title, text, NER on?) -> what analysis derives from the text alone; a post is a pure function of these.
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str | None, str, bool], dict[str, Any]] = OrderedDict()
        self.cache_hits = 0

    def analyze(self, posts: Sequence[Post]) -> list[AnalyzedPost]:
        """Analyze a batch; sentiment is scored in one batched call, a text seen recently is not analysed again."""
        if not posts:
            return []
        keys = [(p.title, p.text, self.ner_enabled and p.source.value in self.ner_sources) for p in posts]
        derived: dict[tuple[str | None, str, bool], dict[str, Any]] = {}
        todo: list[int] = []
        for i, key in enumerate(keys):
            if key in derived:
                continue
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self.cache_hits += 1
                derived[key] = hit
            else:
                derived[key] = {}
                todo.append(i)
        if todo:
            todo_posts = [posts[i] for i in todo]
            new = self.pool.derive(todo_posts) if self.pool is not None else self._derive(todo_posts)
            for key, fields in zip((keys[i] for i in todo), new, strict=True):
                derived[key] = fields
                if self.cache_size:
                    self._cache[key] = fields
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        out: list[AnalyzedPost] = []
        for post, key in zip(posts, keys, strict=True):
            fields = derived[key]
            entities = fields["entities"].model_copy(deep=True)
            # Place hints from the source (a hotline order's district field) count as places too.
            for hint in post.place_hints:
                if hint not in entities.places:
                    entities.places.append(hint)
            out.append(
                AnalyzedPost(
                    **post.model_dump(),
                    text_norm=fields["text_norm"],
                    text_masked=fields["text_masked"],
                    title_masked=fields["title_masked"],
                    tokens=list(fields["tokens"]),
                    sentiment=fields["sentiment"].model_copy(),
                    topic=fields["topic"].model_copy(),
                    entities=entities,
                    pii_found=list(fields["pii_found"]),
                    signature=list(fields["signature"]),
                )
            )
        return out

    def close(self) -> None:
        """Stop the pool's child processes, if any."""
        if self.pool is not None:
            self.pool.close()

    def _derive(self, posts: Sequence[Post]) -> list[dict[str, Any]]:
        """What each post's title and text give (everything but the post's own fields and place hints)."""
        assert self.sentiment is not None and self.topics is not None and self.entities is not None
        plain = [strip_html(p.full_text) for p in posts]
        scoring = [text_for_scoring(t) for t in plain]
        # One segmentation per post serves the topic model, the stored tokens and the sentiment model's words.
        segmented = [self.topics.classify_tokenize_words(t) for t in scoring]
        sentiments = self.sentiment.score(scoring, neutral_band=self.neutral_band, words=[s[2] for s in segmented])
        out: list[dict[str, Any]] = []
        for post, text_plain, text_scoring, sentiment, (topic, tokens, _) in zip(
                posts, plain, scoring, sentiments, segmented, strict=True):
            text_norm = normalize(text_plain)  # once: the entities read it, the stored text_norm is it
            if self.ner is not None and post.source.value in self.ner_sources:
                # Names the model found are masked too (raw names never leave this function).
                entities, names = self.ner.extract_with_people(text_norm, normalized=True)
            else:
                entities, names = self.entities.extract_with_people(text_norm, normalized=True)[0], []
            masked_text = mask_pii(post.text, names=names)
            masked_title = mask_pii(post.title, names=names) if post.title else None
            out.append({
                "text_norm": text_norm,
                "text_masked": masked_text.text,
                "title_masked": masked_title.text if masked_title else "",
                "tokens": tokens,
                "sentiment": sentiment,
                "topic": topic,
                "entities": entities,
                "pii_found": sorted(set(masked_text.kinds) | set(masked_title.kinds if masked_title else [])),
                "signature": minhash_signature(text_scoring, num_perm=self.num_perm),
            })
        return out
