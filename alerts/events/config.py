"""Every tuning knob of the event clusterer in one validated model (defaults tuned on the even half of the
Weibo development stories; see docs/events.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ClustererConfig(BaseModel):
    """Knobs of ``EventClusterer``: vectors, similarity, places, windows and memory bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # ---- vectors: character uni- and bigrams, TF-IDF with the IDF learned from the stream
    max_chars: int = Field(default=400, ge=20)  # the opening says what a post is about; the rest costs time
    unigram_weight: float = Field(default=0.6, ge=0.0)  # single characters are weak evidence next to bigrams
    idf_prior_docs: float = Field(default=20.0, ge=0.0)  # pseudo-documents before the stream has taught the IDF
    idf_halflife_docs: int = Field(default=200_000, ge=1000)  # document frequencies halve: bounded, follows drift

    # ---- similarity to an event
    threshold: float = Field(default=0.15, gt=0.0, le=1.0)  # cosine to a centroid that joins the event
    min_shared_bigrams: int = Field(default=2, ge=0)  # bigrams a post must share with a centroid to join it
    short_post_features: int = Field(default=40, ge=0)  # posts with fewer features join at ...
    short_post_threshold: float = Field(default=0.045, gt=0.0, le=1.0)  # ... this lower cosine
    centroid_halflife_hours: float = Field(default=12.0, gt=0)  # older members weigh half after this long
    window_hours: float = Field(default=48.0, gt=0)  # an event quiet for longer takes no new post by text
    slow_sources: frozenset[str] = frozenset({"mailbox", "hotline"})  # citizens' letters: one matter for weeks
    slow_window_hours: float = Field(default=336.0, gt=0)  # ... so their events stay open this long
    slow_threshold: float = Field(default=0.13, gt=0.0, le=1.0)  # ... and a letter retold in new words joins
    slow_revive_days: float = Field(default=730.0, ge=0)  # a letter revives its place's matter for years ...
    slow_revive_matter: float = Field(default=0.1, ge=0.0)  # ... by its own words: cosine besides the place names
    revive_window_days: float = Field(default=60.0, ge=0)  # a quiet event can be revived by a retelling ...
    revive_threshold: float = Field(default=0.5, gt=0.0, le=1.0)  # ... as similar as this
    centroid_features: int = Field(default=300, ge=16)  # strongest features kept per centroid (memory bound)

    # ---- candidate retrieval (inverted index over the events' strongest features)
    index_features: int = Field(default=64, ge=1)  # a post's strongest features that point to its event
    query_features: int = Field(default=64, ge=1)  # a post's strongest features used to find candidates
    candidates: int = Field(default=100, ge=1)  # candidate events scored in full per post
    postings_per_feature: int = Field(default=64, ge=1)  # most recently active events kept per feature

    # ---- places: features and constraints, never join rules on their own
    anchor_bonus: float = Field(default=0.12, ge=0.0)  # both name the same specific anchor (a compound, a firm)
    town_bonus: float = Field(default=0.05, ge=0.0)  # both name the same town or street (镇/乡/街道)
    hot_minutes: float = Field(default=30.0, ge=0.0)  # an event active this recently at the post's place ...
    hot_place_bonus: float = Field(default=0.1, ge=0.0)  # ... gets this on top of the place bonus
    matter_floor: float = Field(default=0.05, ge=0.0)  # cosine besides the place's name that place bonuses need
    district_penalty: float = Field(default=0.08, ge=0.0)  # both name districts and none is shared

    # ---- merging: a post that joins two live events and names the main anchor of each shows them one matter
    merge_similarity: float = Field(default=0.25, gt=0.0)  # its score to the second event (above 1: never merge)
    merge_centroid: float = Field(default=0.1, ge=0.0)  # ... and the two centroids at least this alike
    merge_conaming: float = Field(default=0.5, ge=0.0, le=1.0)  # ... and the two names go together in this share
    merge_conaming_min: int = Field(default=3, ge=1)  # ... of the rarer name's posts, at least this many

    # ---- reposts and near-duplicates
    repost_weight: float = Field(default=0.0, ge=0.0)  # a followed repost's own words ("转发", "顶") add noise
    repost_window_days: float = Field(default=7.0, gt=0)
    num_perm: int = Field(default=64, ge=16)
    bands: int = Field(default=16, ge=2)
    near_dup_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    near_dup_window_hours: float = Field(default=72.0, gt=0)

    # ---- memory
    max_posts: int = Field(default=100_000, ge=100)
    gc_every: int = Field(default=2000, ge=1)

    @model_validator(mode="after")
    def _bands_divide(self) -> ClustererConfig:
        if self.num_perm % self.bands:
            raise ValueError(f"num_perm ({self.num_perm}) must be a multiple of bands ({self.bands})")
        return self
