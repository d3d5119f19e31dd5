"""Post store on Elasticsearch for scale mode: time-based indices behind one alias.

Talks to the cluster through the official ``elasticsearch`` client (pinned to 8.x: the 9.x client sends
``compatible-with=9`` headers that an 8.x cluster rejects), one ``perform_request`` call site, so
timeouts, retries with backoff and the mapping of errors to ``BackendUnavailable`` live in one place
(the client's own retries are off).

Layout: an index template ``<prefix>`` for ``<prefix>-*`` with explicit mappings puts every new
index behind the alias ``<prefix>``; a post goes to the index of its ``published_at`` period
(``<prefix>-YYYY.MM`` or ``-YYYY.MM.DD``, UTC), so retention drops whole indices. The full record
is kept in a non-indexed ``doc`` object; the other fields are copies for filters and aggregations.

Upsert is exact about new ids without a read: each document is written with
``version_type=external_gte`` and ``version = received_at`` in ms, so the bulk result says
``created`` only for a new id, a same-or-newer copy replaces the stored one (later engagement, an
event id set by clustering), and an older redelivery is refused by the version check.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from elastic_transport import ConnectionError as EsConnectionError
from elastic_transport import ConnectionTimeout, TransportError
from elasticsearch import ApiError, Elasticsearch

from core.errors import BackendUnavailable, RecordError
from core.records import AnalyzedPost, Entities
from core.store.base import Bucket, Overview, PostPage, PostQuery, PostStore, SignatureRow, index_tokens
from core.store.sqlite_posts import searchable_tokens, sentiment_value, to_ms

log = logging.getLogger(__name__)

_RETRY_STATUS = {429, 502, 503, 504}
_MAX_RESULT_WINDOW = 10_000
_AGG_SIZE = 1_000


def _without_credentials(url: str) -> str:
    """The URL with any user:password@ removed (for logs and errors)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url.rstrip("/")
    host = rest.rsplit("@", 1)[-1]
    return f"{scheme}://{host}".rstrip("/")


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class ElasticsearchPostStore(PostStore):
    """Post store on an Elasticsearch 8 cluster (or an API-compatible server)."""

    def __init__(self, *, url: str, username: str | None, password: Any, index_prefix: str,
                 index_period: Literal["day", "month"], bulk_batch: int, request_timeout_s: float,
                 max_retries: int, use_ik: bool, tokenize: Callable[[str], list[str]],
                 utc_offset_hours: int = 8) -> None:
        secret = password.get_secret_value() if hasattr(password, "get_secret_value") else password
        self.url = _without_credentials(url)  # safe to log
        self._client = Elasticsearch(
            url.rstrip("/"), basic_auth=(username, secret or "") if username else None,
            request_timeout=request_timeout_s, max_retries=0, retry_on_timeout=False,
        )
        self.alias = index_prefix
        self.index_period = index_period
        self.bulk_batch = bulk_batch
        self.max_retries = max_retries
        self.use_ik = use_ik
        self._tokenize = tokenize
        self._tz = timezone(timedelta(hours=utc_offset_hours))
        self._tz_name = f"{'+' if utc_offset_hours >= 0 else '-'}{abs(utc_offset_hours):02d}:00"

    # -- HTTP with retries ------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, body: Any = None, content: bytes | None = None,
                 params: dict[str, str] | None = None, ok404: bool = False) -> dict[str, Any]:
        """One call with bounded retries on 429/5xx/timeouts; BackendUnavailable when they run out."""
        mime = "application/vnd.elasticsearch+x-ndjson; compatible-with=8" if content is not None else \
            "application/vnd.elasticsearch+json; compatible-with=8"
        headers = {"accept": "application/vnd.elasticsearch+json; compatible-with=8", "content-type": mime}
        payload: Any = content if content is not None else body
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                # Exponential backoff with jitter so many writers do not retry in lockstep.
                time.sleep(min(8.0, 0.2 * 2 ** (attempt - 1)) * (0.5 + random.random()))
            try:
                resp = self._client.perform_request(method, path, params=params, headers=headers, body=payload)
            except ApiError as exc:
                status = exc.meta.status
                if status in _RETRY_STATUS:
                    last = f"HTTP {status}: {str(exc.body)[:200]}"
                    continue
                if status == 404 and ok404:
                    extra = exc.body if isinstance(exc.body, dict) else {}
                    return {"_not_found": True, **extra}
                raise ValueError(f"elasticsearch {method} {path}: HTTP {status}: {str(exc.body)[:500]}") from None
            except (EsConnectionError, ConnectionTimeout, TransportError) as exc:
                last = f"{type(exc).__name__}: {str(exc)[:200]}"
                continue
            if method == "HEAD" and resp.meta.status == 404:
                # The client answers HEAD with a bool body instead of raising for 404.
                if ok404:
                    return {"_not_found": True}
                raise ValueError(f"elasticsearch {method} {path}: HTTP 404")
            body_out = resp.body
            return body_out if isinstance(body_out, dict) else {}
        raise BackendUnavailable(f"elasticsearch at {self.url}: {method} {path} failed after "
                                 f"{self.max_retries + 1} attempts: {last}")

    # -- schema -----------------------------------------------------------------------------------

    def _text_field(self) -> dict[str, Any]:
        return {"type": "text", "analyzer": "ik_max_word", "search_analyzer": "ik_smart"}

    def template(self) -> dict[str, Any]:
        """The index template body (explicit mappings; unknown fields are not indexed)."""
        properties: dict[str, Any] = {
            "id": {"type": "keyword"},
            "source": {"type": "keyword"},
            "sentiment": {"type": "keyword"},
            "negative_score": {"type": "float"},
            "topic": {"type": "keyword"},
            "topic_l2": {"type": "keyword"},
            "event_id": {"type": "keyword"},
            "districts": {"type": "keyword"},
            "author_hash": {"type": "keyword"},
            "published_at": {"type": "date"},
            "received_at": {"type": "date"},
            "engagement": {"type": "long"},
            # Pre-segmented words, split on spaces only: segmentation happened in Python (jieba).
            "tokens": {"type": "text", "analyzer": "yuqing_words"},
            "doc": {"type": "object", "enabled": False},
        }
        if self.use_ik:
            properties["text"] = self._text_field()
        return {
            "index_patterns": [f"{self.alias}-*"],
            "priority": 100,
            "template": {
                "settings": {
                    "number_of_shards": 1,
                    "analysis": {"analyzer": {"yuqing_words": {
                        "type": "custom", "tokenizer": "whitespace", "filter": ["lowercase"]}}},
                },
                "mappings": {"dynamic": False, "properties": properties},
                "aliases": {self.alias: {}},
            },
        }

    def ensure_schema(self) -> None:
        """Put the index template and create the current period's index (which joins the alias)."""
        try:
            self._request("PUT", f"/_index_template/{self.alias}", body=self.template())
            index = self.index_for(datetime.now(UTC))
            if self._request("HEAD", f"/{index}", ok404=True).get("_not_found"):
                try:
                    self._request("PUT", f"/{index}")
                except ValueError as exc:
                    if "resource_already_exists" not in str(exc):  # another process won the race
                        raise
        except ValueError as exc:
            if self.use_ik and "ik_" in str(exc):
                raise ValueError("use_ik=True needs the analysis-ik plugin on every Elasticsearch node"
                                 f" (or set use_ik=False): {exc}") from exc
            raise

    def index_for(self, published_at: datetime) -> str:
        """The index a post published at this moment lives in."""
        moment = published_at if published_at.tzinfo else published_at.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
        suffix = moment.strftime("%Y.%m") if self.index_period == "month" else moment.strftime("%Y.%m.%d")
        return f"{self.alias}-{suffix}"

    def _period(self, index: str) -> tuple[datetime, datetime] | None:
        """[start, end) of an index's period, from its name (either period, in case the setting changed)."""
        suffix = index[len(self.alias) + 1:]
        for pattern, monthly in (("%Y.%m.%d", False), ("%Y.%m", True)):
            try:
                start = datetime.strptime(suffix, pattern).replace(tzinfo=UTC)
            except ValueError:
                continue
            end = (start + timedelta(days=32)).replace(day=1) if monthly else start + timedelta(days=1)
            return start, end
        return None

    def _indices(self) -> list[str]:
        found = self._request("GET", f"/_alias/{self.alias}", ok404=True)
        return sorted(k for k in found if not k.startswith("_") and k not in ("error", "status"))

    # -- writes -----------------------------------------------------------------------------------

    def _source(self, post: AnalyzedPost) -> dict[str, Any]:
        src: dict[str, Any] = {
            "id": post.id, "source": post.source.value, "sentiment": post.sentiment.label.value,
            "negative_score": post.sentiment.score, "topic": post.topic.l1, "topic_l2": post.topic.l2,
            "event_id": post.event_id, "districts": sorted(set(post.entities.districts)),
            "author_hash": post.author_hash, "published_at": _iso(post.published_at),
            "received_at": _iso(post.received_at), "engagement": post.engagement.total,
            "tokens": " ".join(searchable_tokens(index_tokens(post, self._tokenize))),
            "doc": post.model_dump(mode="json"),
        }
        if self.use_ik:
            src["text"] = f"{post.title}\n{post.text}"
        return src

    def upsert(self, posts: Sequence[AnalyzedPost]) -> set[str]:
        """Bulk-write in batches of ``bulk_batch``; return the ids the cluster created."""
        latest: dict[str, AnalyzedPost] = {}
        for post in posts:
            kept = latest.get(post.id)
            if kept is None or post.received_at >= kept.received_at:
                latest[post.id] = post
        created: set[str] = set()
        items = list(latest.values())
        for i in range(0, len(items), self.bulk_batch):
            created |= self._bulk_write(items[i:i + self.bulk_batch])
        return created

    def _bulk_write(self, batch: Sequence[AnalyzedPost]) -> set[str]:
        pending = {p.id: p for p in batch}
        created: set[str] = set()
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(min(8.0, 0.2 * 2 ** (attempt - 1)) * (0.5 + random.random()))
            lines: list[str] = []
            for post in pending.values():
                action = {"index": {"_index": self.index_for(post.published_at), "_id": post.id,
                                    "version": to_ms(post.received_at), "version_type": "external_gte"}}
                lines.append(json.dumps(action))
                lines.append(json.dumps(self._source(post), ensure_ascii=False))
            result = self._request("POST", "/_bulk", content=("\n".join(lines) + "\n").encode("utf-8"))
            retry: dict[str, AnalyzedPost] = {}
            for item in result.get("items", []):
                op = item.get("index") or next(iter(item.values()))
                pid, status = op.get("_id"), op.get("status", 500)
                if status in (200, 201):
                    if op.get("result") == "created":
                        created.add(pid)
                elif status == 409:
                    pass  # an equal-or-newer copy is stored: not new, nothing to do
                elif status in _RETRY_STATUS:
                    retry[pid] = pending[pid]
                else:
                    reason = (op.get("error") or {}).get("reason", f"status {status}")
                    raise RecordError(f"elasticsearch refused post {pid}: {reason}")
            if not retry:
                return created
            pending = retry
        raise BackendUnavailable(f"elasticsearch at {self.url}: {len(pending)} post(s) still rejected"
                                 f" after {self.max_retries + 1} bulk attempts")

    def refresh(self) -> None:
        """Make every write so far visible to search."""
        self._request("POST", f"/{self.alias}/_refresh", ok404=True)

    # -- reads ------------------------------------------------------------------------------------

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        found = self._request("POST", f"/{self.alias}/_search", body=body, ok404=True)
        if found.get("_not_found"):  # no index at all yet (or retention dropped them all)
            return {"hits": {"total": {"value": 0}, "hits": []}, "aggregations": {}}
        return found

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of these ids are stored (search on the id keyword, so all indices are covered)."""
        found: set[str] = set()
        unique = list(dict.fromkeys(ids))
        for i in range(0, len(unique), 1000):
            chunk = unique[i:i + 1000]
            result = self._search({"query": {"ids": {"values": chunk}}, "_source": False, "size": len(chunk)})
            found.update(h["_id"] for h in result["hits"]["hits"])
        return found

    def get(self, post_id: str) -> AnalyzedPost | None:
        """One post by id, or None."""
        return self.get_many([post_id]).get(post_id)

    def get_many(self, post_ids: Sequence[str]) -> dict[str, AnalyzedPost]:
        """The stored posts among ``post_ids``, by id (one ids query per 1,000)."""
        unique = list(dict.fromkeys(post_ids))
        found: dict[str, AnalyzedPost] = {}
        for i in range(0, len(unique), 1000):
            chunk = unique[i:i + 1000]
            result = self._search({"query": {"ids": {"values": chunk}}, "_source": ["doc"], "size": len(chunk)})
            for hit in result["hits"]["hits"]:
                found[hit["_id"]] = AnalyzedPost.model_validate(hit["_source"]["doc"])
        return found

    def _filters(self, query: PostQuery) -> dict[str, Any]:
        must: list[dict[str, Any]] = []
        filters: list[dict[str, Any]] = []
        if query.q and query.q.strip():
            if self.use_ik:
                must.append({"match": {"text": {"query": query.q, "operator": "and"}}})
            else:
                tokens = searchable_tokens(self._tokenize(query.q))
                if not tokens:
                    raise ValueError(f"query {query.q!r} has no searchable words")
                must.append({"match": {"tokens": {"query": " ".join(tokens), "operator": "and"}}})
        for field, value in (("source", query.source), ("topic", query.topic), ("event_id", query.event_id),
                             ("districts", query.district),
                             ("sentiment", sentiment_value(query.sentiment) if query.sentiment else None)):
            if value:
                filters.append({"term": {field: value}})
        span: dict[str, str] = {}
        if query.since is not None:
            span["gte"] = _iso(query.since)
        if query.until is not None:
            span["lt"] = _iso(query.until)
        if span:
            filters.append({"range": {"published_at": span}})
        if not must and not filters:
            return {"match_all": {}}
        return {"bool": {"must": must, "filter": filters}}

    def search(self, query: PostQuery) -> PostPage:
        """Filtered full-text search, newest first; ``total`` is exact."""
        if query.offset + query.limit > _MAX_RESULT_WINDOW:
            raise ValueError(f"offset+limit may not exceed {_MAX_RESULT_WINDOW}: narrow the query instead")
        result = self._search({
            "query": self._filters(query), "sort": [{"published_at": "desc"}, {"id": "desc"}],
            "from": query.offset, "size": query.limit, "track_total_hits": True, "_source": ["doc"]})
        hits = result["hits"]
        return PostPage(total=hits["total"]["value"],
                        items=[AnalyzedPost.model_validate(h["_source"]["doc"]) for h in hits["hits"]])

    def overview(self, query: PostQuery, *, interval: Literal["hour", "day"] = "hour") -> Overview:
        """Terms aggregations plus a date histogram (local days) split by sentiment."""
        histogram: dict[str, Any] = {"field": "published_at", "min_doc_count": 0, "time_zone": self._tz_name}
        histogram["fixed_interval" if interval == "hour" else "calendar_interval"] = \
            "1h" if interval == "hour" else "1d"
        terms = {name: {"terms": {"field": name, "size": _AGG_SIZE}}
                 for name in ("sentiment", "topic", "source", "districts")}
        result = self._search({
            "query": self._filters(query), "size": 0, "track_total_hits": True,
            "aggs": {**terms, "series": {"date_histogram": histogram, "aggs": {"sentiment": terms["sentiment"]}}}})
        aggs = result.get("aggregations") or {}

        def counts(name: str, source: dict[str, Any]) -> dict[str, int]:
            return {b["key"]: b["doc_count"] for b in (source.get(name) or {}).get("buckets", [])}

        series = [Bucket(start=datetime.fromtimestamp(b["key"] / 1000, tz=self._tz),
                         counts=counts("sentiment", b))
                  for b in (aggs.get("series") or {}).get("buckets", [])]
        return Overview(total=result["hits"]["total"]["value"], by_sentiment=counts("sentiment", aggs),
                        by_topic=counts("topic", aggs), by_source=counts("source", aggs),
                        by_district=counts("districts", aggs), series=series, interval=interval)

    def recent_signatures(self, since: datetime) -> Iterator[SignatureRow]:
        """Posts with an event id published since ``since``, oldest first (search_after pages)."""
        body: dict[str, Any] = {
            "query": {"bool": {"filter": [{"range": {"published_at": {"gte": _iso(since)}}},
                                          {"exists": {"field": "event_id"}}]}},
            "sort": [{"published_at": "asc"}, {"id": "asc"}], "size": 1000,
            "_source": ["id", "event_id", "doc.published_at", "doc.signature", "doc.source", "doc.external_id",
                        "doc.repost_of", "doc.title", "doc.title_masked", "doc.text_norm", "doc.tokens", "doc.entities",
                        "doc.topic.l1", "doc.sentiment.label"]}
        while True:
            hits = self._search(body)["hits"]["hits"]
            for h in hits:
                src = h["_source"]
                doc = src["doc"]
                yield SignatureRow(post_id=src["id"], event_id=src["event_id"], published_at=doc["published_at"],
                                   signature=doc.get("signature", []), source=doc.get("source", ""),
                                   external_id=doc.get("external_id", ""), repost_of=doc.get("repost_of"),
                                   title=doc.get("title_masked") or doc.get("title") or "",
                                   text_norm=doc.get("text_norm") or "", tokens=doc.get("tokens") or [],
                                   entities=Entities.model_validate(doc.get("entities") or {}),
                                   topic=(doc.get("topic") or {}).get("l1") or "",
                                   sentiment=(doc.get("sentiment") or {}).get("label") or "")
            if len(hits) < body["size"]:
                return
            body["search_after"] = hits[-1]["sort"]

    def count(self) -> int:
        """How many posts are stored."""
        found = self._request("POST", f"/{self.alias}/_count", body={"query": {"match_all": {}}}, ok404=True)
        return 0 if found.get("_not_found") else int(found["count"])

    def delete_older_than(self, cutoff: datetime) -> int:
        """Drop whole indices that end before ``cutoff``; delete by query in the boundary index."""
        cutoff = cutoff if cutoff.tzinfo else cutoff.replace(tzinfo=UTC)
        deleted = 0
        for index in self._indices():
            period = self._period(index)
            if period is None or period[0] >= cutoff:
                continue
            if period[1] <= cutoff:
                deleted += int(self._request("POST", f"/{index}/_count", body={"query": {"match_all": {}}})["count"])
                self._request("DELETE", f"/{index}")
                log.info("retention: dropped index %s", index)
            else:
                result = self._request("POST", f"/{index}/_delete_by_query",
                                       params={"refresh": "true", "conflicts": "proceed"},
                                       body={"query": {"range": {"published_at": {"lt": _iso(cutoff)}}}})
                deleted += int(result.get("deleted", 0))
        return deleted

    def drop_all(self) -> None:
        """Delete every index of this prefix and the template (tests and resets only)."""
        for index in self._indices():
            self._request("DELETE", f"/{index}", ok404=True)
        self._request("DELETE", f"/_index_template/{self.alias}", ok404=True)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()
