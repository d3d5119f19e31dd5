"""Validation: one raw record (bytes) becomes a ``Post`` or a ``RecordError`` with a specific reason.

Two input shapes are accepted:

(a) the project's own post JSONL shape::

      {"source": "weibo", "external_id": "123" (or "id"), "title": "...", "text": "...", "url": "https://...",
       "author": "...", "published_at": "2024-05-01T10:00:00+08:00",
       "engagement": {"reposts": 1, "comments": 2, "likes": 3, "dislikes": 0}  (or the four as flat fields),
       "repost_of": "122", "place_hints": ["A7县"]}

(b) the 12345 hotline / 市长信箱 export shape::

      {"id": "188006", "user": "A000102948", "subject": "...", "time": "2019-02-28T11:25:05+08:00",
       "body": "...", "likes": 0, "dislikes": 0}   (+ optional "reply", "reply_time")

    recognised by ``body``, ``subject``, ``user`` or ``time`` without a ``text`` field; its source is
    the record's ``source`` field, else ``source_hint``, else ``mailbox``.

Decisions (documented because they change what reaches analysis):

- Too-long text is a dead letter, never truncated: truncation silently drops what may be the important
  part (the demand at the end of a hotline order), while a dead letter keeps the raw bytes and the reason,
  and can be replayed with a higher ``max_text_chars``.
- HTML or script in text is kept verbatim as text: stripping is analysis's job, escaping is the renderer's.
  NUL characters are the one exception: they are removed because PostgreSQL text cannot hold them.
- Naive times are Asia/Shanghai (UTC+8, no DST since 1991); all times are stored in UTC.
- The author's name never leaves this function in clear: the post keeps ``author_hash`` (salted) and
  ``author_display`` (a pseudonym from the hash), and ``author``/``user`` are removed from ``raw``. The
  dead-letter store keeps the original bytes (inside the core) so a failed record can still be replayed.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from pydantic import ValidationError

from core.errors import RecordError
from core.records import Engagement, Post, Source, post_id, utcnow

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
MAX_EXTERNAL_ID = 256
MAX_TITLE_CHARS = 1_000
MAX_URL_CHARS = 2_048
MAX_RECORD_BYTES = 16 * 1024 * 1024
MAX_PLACE_HINTS = 50
MAX_PLACE_HINT_CHARS = 64
# Fields other than text, title and the ones validated here are kept in ``raw`` as they came: bounded.
MAX_OTHER_FIELDS_BYTES = 64 * 1024
MAX_COUNT = 10**12  # larger engagement counts are corrupt data, and would overflow a BIGINT downstream
OLDEST = datetime(1990, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)  # source clocks drift; a day ahead is still plausible

ENGAGEMENT_FIELDS = ("reposts", "comments", "likes", "dislikes")
# Any of these without a ``text`` field means the hotline/mailbox shape (b).
MAILBOX_FIELDS = ("body", "subject", "user", "time")
# Fields that name a person: hashed and masked, then dropped from ``raw``.
AUTHOR_FIELDS = ("author", "user")

SOURCE_ALIASES: dict[str, Source] = {
    "微博": Source.weibo,
    "微信": Source.wechat,
    "公众号": Source.wechat,
    "抖音": Source.douyin,
    "新闻": Source.news,
    "论坛": Source.forum,
    "12345": Source.hotline,
    "热线": Source.hotline,
    "信箱": Source.mailbox,
    "市长信箱": Source.mailbox,
    "留言": Source.mailbox,
}

_TIME_FORMATS = ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%Y-%m-%d %H:%M", "%Y年%m月%d日 %H:%M",
                 "%Y年%m月%d日")
_BOM = b"\xef\xbb\xbf"
_WEB_URL = re.compile(r"https?://", re.IGNORECASE)


class RecordRejected(RecordError):
    """A ``RecordError`` that also says which kind of problem it is (for counting), e.g. ``json``."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


_KIND_PREFIXES = (
    ("invalid UTF-8", "encoding"),
    ("invalid Unicode", "encoding"),
    ("malformed JSON", "json"),
    ("expected a JSON object", "json"),
    ("empty record", "empty"),
    ("record too large", "too_large"),
    ("text too long", "too_large"),
    ("text is empty", "empty_text"),
    ("missing field", "missing_field"),
    ("unknown source", "unknown_source"),
    ("published_at", "time"),
)


def reason_kind(reason: str) -> str:
    """The kind of a stored reason string (``json``, ``missing_field``, ``type``...), for counting."""
    for prefix, kind in _KIND_PREFIXES:
        if reason.startswith(prefix):
            return kind
    return "type" if reason.startswith("field ") else "other"


def _reject(kind: str, reason: str) -> RecordRejected:
    return RecordRejected(kind, reason)


def _show(value: Any, limit: int = 40) -> str:
    """A short, masked repr of an offending value for a reason string (never the whole 1 MB, never raw PII).

    Reasons go to logs, API answers and the dead-letter list: a phone number typed into the date field must
    not travel with them. The raw bytes stay in the dead-letter row, inside the core.
    """
    text = repr(value)
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return mask_reason(text)


def mask_reason(reason: str) -> str:
    """``reason`` with phones, ID and bank numbers, e-mails, plates and cued names masked."""
    try:
        from analyze.privacy import mask_pii
    except ImportError:  # pragma: no cover - stripped-down installs without analyze
        return re.sub(r"\d{7,}", lambda m: "*" * len(m.group(0)), reason)
    return mask_pii(reason).text


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
            int: "integer", float: "number"}.get(type(value), type(value).__name__)


def _decode(raw: bytes) -> str:
    if raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _reject("encoding", f"invalid UTF-8 at byte {exc.start}") from None


def _load(text: str) -> dict[str, Any]:
    if not text.strip():
        raise _reject("empty", "empty record")
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise _reject("json", f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise _reject("json", "malformed JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with more than 4300 digits, NaN/Infinity
        raise _reject("json", f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _reject("json", f"expected a JSON object, got {_type_name(obj)}")
    if "\\u" in text:
        # JSON may spell a lone surrogate (\ud800) that no UTF-8 store or serializer accepts later.
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise _reject("encoding", "invalid Unicode: lone surrogate escape in JSON string") from None
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _opt_str(obj: dict[str, Any], name: str, *, limit: int) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _reject("type", f"field {name}: expected a string, got {_type_name(value)}")
    text = str(value).replace("\x00", "").strip()
    if len(text) > limit:
        raise _reject("type", f"field {name}: too long ({len(text)} characters > {limit})")
    return text or None


def _source(obj: dict[str, Any], fallback: str | None) -> Source:
    value = obj.get("source")
    if value is None or value == "":
        value = fallback
    if value is None or value == "":
        raise _reject("missing_field", "missing field: source")
    if not isinstance(value, str):
        raise _reject("type", f"field source: expected a string, got {_type_name(value)}")
    key = value.strip()
    if key in SOURCE_ALIASES:
        return SOURCE_ALIASES[key]
    try:
        return Source(key.lower())
    except ValueError:
        raise _reject("unknown_source", f"unknown source {_show(value)}") from None


def _external_id(obj: dict[str, Any]) -> str:
    name = "external_id" if obj.get("external_id") not in (None, "") else "id"
    value = obj.get(name)
    if value is None or value == "":
        raise _reject("missing_field", "missing field: external_id")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _reject("type", f"field {name}: expected a string or integer, got {_type_name(value)}")
    text = str(value).strip()
    if not text:
        raise _reject("missing_field", "missing field: external_id")
    if len(text) > MAX_EXTERNAL_ID:
        raise _reject("type", f"field {name}: too long ({len(text)} characters > {MAX_EXTERNAL_ID})")
    return text


def _text(obj: dict[str, Any], name: str, max_text_chars: int) -> str:
    if name not in obj or obj[name] is None:
        raise _reject("missing_field", f"missing field: {name}")
    value = obj[name]
    if not isinstance(value, str):
        raise _reject("type", f"field {name}: expected a string, got {_type_name(value)}")
    text = value.replace("\x00", "")
    if not text.strip():
        raise _reject("empty_text", "text is empty")
    if len(text) > max_text_chars:
        raise _reject("too_large", f"text too long: {len(text)} characters > {max_text_chars}")
    return text


def _count(name: str, value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        raise _reject("type", f"field {name}: expected a non-negative integer, got {_show(value)}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isdecimal() and len(value.strip()) <= 15:
        number = int(value.strip())  # CSV exports and some APIs send counts as strings
    else:
        raise _reject("type", f"field {name}: expected a non-negative integer, got {_show(value)}")
    if number < 0:
        raise _reject("type", f"field {name}: expected a non-negative integer, got {number}")
    if number > MAX_COUNT:
        raise _reject("type", f"field {name}: implausibly large ({number})")
    return number


def _engagement(obj: dict[str, Any]) -> Engagement:
    nested = obj.get("engagement")
    if nested is not None and not isinstance(nested, dict):
        raise _reject("type", f"field engagement: expected an object, got {_type_name(nested)}")
    counts = {}
    for name in ENGAGEMENT_FIELDS:
        if nested is not None and name in nested:
            counts[name] = _count(name, nested[name])
        else:
            counts[name] = _count(name, obj.get(name))
    return Engagement(**counts)


def parse_time(value: Any, *, field: str = "published_at") -> datetime:
    """An aware UTC datetime from ISO 8601 (naive = Asia/Shanghai), a few Chinese formats, or epoch s/ms."""
    if value is None or value == "":
        raise _reject("missing_field", f"missing field: {field}")
    if isinstance(value, bool):
        raise _reject("time", f"{field}: not a date ({_show(value)})")
    parsed: datetime | None = None
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise _reject("time", f"{field}: not a date ({_show(value)})")
        seconds = value / 1000 if abs(value) > 1e11 else value  # epoch milliseconds are common in APIs
        try:
            parsed = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise _reject("time", f"{field}: not a date ({_show(value)})") from None
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            for fmt in _TIME_FORMATS:
                try:
                    parsed = datetime.strptime(text, fmt)  # naive means Shanghai, set below
                    break
                except ValueError:
                    continue
        if parsed is None:
            raise _reject("time", f"{field}: not a date ({_show(value)})")
    else:
        raise _reject("time", f"{field}: not a date (got {_type_name(value)})")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=SHANGHAI)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise _reject("time", f"{field}: not a date ({_show(value)})") from None


def _published_at(value: Any, received_at: datetime, field: str) -> datetime:
    when = parse_time(value, field=field)
    if when < OLDEST:
        raise _reject("time", f"published_at: implausibly old ({when.date().isoformat()})")
    if when > received_at + FUTURE_SLACK:
        raise _reject("time", f"published_at: in the future ({when.isoformat()})")
    return when


def _place_hints(obj: dict[str, Any]) -> list[str]:
    value = obj.get("place_hints")
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _reject("type", "field place_hints: expected a list of strings")
    # Refused, not cut: the whole list is also kept in ``raw``, and 200,000 hints made a 1.2 MB document.
    if len(value) > MAX_PLACE_HINTS:
        raise _reject("type", f"field place_hints: too many ({len(value)} > {MAX_PLACE_HINTS})")
    hints = [v.replace("\x00", "").strip() for v in value]
    too_long = next((h for h in hints if len(h) > MAX_PLACE_HINT_CHARS), None)
    if too_long is not None:
        raise _reject("type", f"field place_hints: an entry is too long ({len(too_long)} characters > "
                              f"{MAX_PLACE_HINT_CHARS})")
    return list(dict.fromkeys(h for h in hints if h))


def _other_fields(obj: dict[str, Any], used: tuple[str, ...]) -> dict[str, Any]:
    """The record minus people's names, for ``raw``; refused when the rest is implausibly large."""
    rest = {k: v for k, v in obj.items() if k not in AUTHOR_FIELDS}
    extra = {k: v for k, v in rest.items() if k not in used}
    size = len(json.dumps(extra, ensure_ascii=False))
    if size > MAX_OTHER_FIELDS_BYTES:
        raise _reject("too_large", f"record too large: {size} bytes of other fields > {MAX_OTHER_FIELDS_BYTES}")
    return rest


def _url(obj: dict[str, Any]) -> str | None:
    url = _opt_str(obj, "url", limit=MAX_URL_CHARS)
    # Only web links: a javascript: or data: URL would be a script vector wherever a link is rendered.
    if url is not None and not _WEB_URL.match(url):
        raise _reject("type", f"field url: expected an http(s) URL, got {_show(url)}")
    return url


try:  # analyze.privacy owns hashing and masking of people; see the fallback below for when it is absent
    from analyze.privacy import hash_author as _hash_author
    from analyze.privacy import pseudonym as _pseudonym
except ImportError:  # pragma: no cover - only while analyze.privacy is not installed
    _hash_author = None  # type: ignore[assignment]
    _pseudonym = None  # type: ignore[assignment]


def _author(obj: dict[str, Any], name: str, salt: str) -> tuple[str | None, str | None]:
    author = _opt_str(obj, name, limit=256)
    if author is None:
        return None, None
    if _hash_author is not None and _pseudonym is not None:
        digest = _hash_author(author, salt)
        return digest, _pseudonym(digest)
    # Same contract as analyze.privacy, used only when that module is missing (stripped-down installs).
    digest = hashlib.blake2b(author.encode(), key=salt.encode()[:64], digest_size=12).hexdigest()
    return digest, "网友" + digest[:6].upper()


def parse_record(raw: bytes, *, source_hint: str | None, salt: str, max_text_chars: int,
                 received_at: datetime | None = None) -> Post:
    """Validate one raw record into a Post, or raise RecordError with a specific reason."""
    received = received_at or utcnow()
    # Before parsing: JSON escapes take at most 6 bytes a character, so anything far larger cannot fit;
    # below MAX_RECORD_BYTES we parse anyway so the reason names the text length, which is clearer.
    byte_limit = max(max_text_chars * 6 + 65_536, MAX_RECORD_BYTES)
    if len(raw) > byte_limit:
        raise _reject("too_large", f"record too large: {len(raw)} bytes > {byte_limit}")
    obj = _load(_decode(raw))
    mailbox_shape = "text" not in obj and any(name in obj for name in MAILBOX_FIELDS)
    if mailbox_shape:
        source = _source(obj, source_hint or Source.mailbox.value)
        external_id = _external_id(obj)
        title = _opt_str(obj, "subject", limit=MAX_TITLE_CHARS) or ""
        text = _text(obj, "body", max_text_chars)
        time_field = "time" if "time" in obj else "published_at"
        author_field = "user" if "user" in obj else "author"
    else:
        source = _source(obj, source_hint)
        external_id = _external_id(obj)
        title = _opt_str(obj, "title", limit=MAX_TITLE_CHARS) or ""
        text = _text(obj, "text", max_text_chars)
        time_field = "published_at"
        author_field = "author"
    published_at = _published_at(obj.get(time_field), received, time_field)
    author_hash, author_display = _author(obj, author_field, salt)
    repost_of = _opt_str(obj, "repost_of", limit=MAX_EXTERNAL_ID)
    place_hints = _place_hints(obj)
    raw_payload = _other_fields(obj, ("text", "title", "body", "subject"))
    try:
        return _post(source=source, external_id=external_id, title=title, text=text, url=_url(obj),
                     author_hash=author_hash, author_display=author_display, published_at=published_at,
                     received_at=received, engagement=_engagement(obj), repost_of=repost_of,
                     place_hints=place_hints, raw=raw_payload)
    except ValidationError as exc:  # the checks above should leave nothing for pydantic; belt and braces
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error.get("loc", ())) or "record"
        raise _reject("other", f"field {where}: {error.get('msg', 'invalid')}") from None


def _post(*, source: Source, external_id: str, **fields: Any) -> Post:
    return Post(id=post_id(source.value, external_id), source=source, external_id=external_id, **fields)


def guess_source(raw: bytes, source_hint: str | None = None) -> str:
    """Best-effort source of a record that failed validation (for the dead-letter row), else the hint."""
    # A regex over the head, not a parse: the record is known to be bad and may be huge.
    match = _SOURCE_RE.search(raw[:4096])
    if match:
        return match.group(1).decode("utf-8", errors="replace").strip()[:32] or (source_hint or "unknown")
    return source_hint or "unknown"


_SOURCE_RE = re.compile(rb'"source"\s*:\s*"([^"\\]{1,64})"')
