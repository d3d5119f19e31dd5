"""Post search."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api.deps import PostStoreDep, QueryTime, Reader, SettingsDep, is_privileged, unprocessable
from api.schemas import PostOut, PostPageOut
from core.records import SentimentLabel, Source
from core.store.base import PostQuery

router = APIRouter(prefix="/api/v1/posts", tags=["posts"])


@router.get("", response_model=PostPageOut)
def search_posts(
    store: PostStoreDep,
    settings: SettingsDep,
    user: Reader,
    q: Annotated[str | None, Query(max_length=200, description="full-text query")] = None,
    source: Source | None = None,
    sentiment: SentimentLabel | None = None,
    topic: Annotated[str | None, Query(max_length=64)] = None,
    event_id: Annotated[str | None, Query(max_length=40)] = None,
    district: Annotated[str | None, Query(max_length=32)] = None,
    from_: Annotated[QueryTime | None, Query(alias="from")] = None,
    to: QueryTime | None = None,
    limit: Annotated[int, Query(ge=1)] = 20,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> PostPageOut:
    """Search posts, newest first."""
    if limit > settings.api.page_size_max:
        raise unprocessable(["query", "limit"], f"limit may be at most {settings.api.page_size_max}")
    if from_ and to and from_ > to:
        return PostPageOut(total=0, limit=limit, offset=offset, items=[])  # an empty window
    privileged = is_privileged(user)
    text = q.strip() if q and q.strip() else None
    if text is not None and not privileged:
        # Roles that see masked text search masked text: the raw index must not confirm a number or a name.
        from analyze.privacy import mask_pii

        text = mask_pii(text).text
    query = PostQuery(
        q=text, masked_only=not privileged, source=source.value if source else None,
        sentiment=sentiment.value if sentiment else None, topic=topic, event_id=event_id, district=district,
        since=from_, until=to, limit=limit, offset=offset,
    )
    page = store.search(query)
    return PostPageOut(
        total=page.total, limit=limit, offset=offset,
        items=[PostOut.from_post(p, privileged=privileged) for p in page.items],
    )


@router.get("/{post_id}", response_model=PostOut)
def get_post(post_id: str, store: PostStoreDep, user: Reader) -> PostOut:
    """One post."""
    post = store.get(post_id)
    if post is None:
        raise HTTPException(404, "post not found")
    return PostOut.from_post(post, privileged=is_privileged(user))
