"""Top keywords of a slice of posts (the dashboard's 负面高频词), from the stored pre-segmented tokens."""

from __future__ import annotations

from collections import Counter

from core.store.base import PostQuery, PostStore


def top_keywords(store: PostStore, query: PostQuery, *, sample: int = 1000, top: int = 20) -> list[tuple[str, int]]:
    """Most frequent tokens (two characters or more, counted once per post) in the newest ``sample`` matching posts."""
    counts: Counter[str] = Counter()
    offset = 0
    page_size = min(500, sample)
    while offset < sample:
        page = store.search(query.model_copy(update={"limit": page_size, "offset": offset}))
        for post in page.items:
            counts.update({t for t in post.tokens if len(t) >= 2 and not t.isdigit()})
        offset += page_size
        if offset >= page.total:
            break
    return counts.most_common(top)
