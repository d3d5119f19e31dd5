"""Place keys of a post: specific anchors (a compound, a village, a company, a school), towns and districts.

The clusterer uses them as features of an event, not as join rules: a shared anchor adds a bonus to the
text similarity, and two posts naming different specific anchors are incompatible (wage arrears at two
companies are two matters, however alike the words). Word lists live in ``data/words.yaml``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import yaml

from core.records import AnalyzedPost, Entities

WORDS_FILE = Path(__file__).with_name("data") / "words.yaml"
FOCUS_CHARS = 120
_WS = re.compile(r"\s+")


@lru_cache(maxsize=1)
def words() -> dict[str, tuple[str, ...]]:
    """The word lists of ``data/words.yaml`` (loaded once)."""
    raw = yaml.safe_load(WORDS_FILE.read_text(encoding="utf-8")) or {}
    return {key: tuple(str(w) for w in value or ()) for key, value in raw.items()}


# Administrative prefix (province, city, district/county, street/town) stripped so "A市A3区丽发新城小区"
# and "丽发新城" meet under one key.
_ADMIN_PREFIX = re.compile(
    r"^(?:[\u4e00-\u9fffA-Za-z]{2,4}省)?(?:[\u4e00-\u9fffA-Za-z0-9]{1,4}市)?(?:[\u4e00-\u9fffA-Za-z0-9]{1,4}[区县])?"
    r"(?:[\u4e00-\u9fff]{2,4}(?:街道|镇|乡))?"
)
_ABOVE_TOWN = re.compile(
    r"^(?:[\u4e00-\u9fffA-Za-z]{2,4}省)?(?:[\u4e00-\u9fffA-Za-z0-9]{1,4}市)?(?:[\u4e00-\u9fffA-Za-z0-9]{1,4}[区县])?"
)
_TOWN_FIRST = re.compile(r"^([\u4e00-\u9fff]{2,4}?(?:街道|镇|乡))")


def anchor_key(name: str) -> str | None:
    """The canonical anchor key of an entity name, or None when the name is too generic to tie posts."""
    w = words()
    suffixes, generic = w["anchor_suffixes"], frozenset(w["generic_names"])
    name = _WS.sub("", name or "")
    if len(name) < 3 or len(name) > 24:
        return None
    stripped = _ADMIN_PREFIX.sub("", name, count=1)
    # Keep the full name when stripping would eat it (e.g. "金麓小区" looks like "金麓小" + "区").
    if len(stripped) >= 3 and stripped.endswith(suffixes) and stripped not in generic:
        name = stripped
    if not name.endswith(suffixes) or name.endswith(w["gov_endings"]) or name in generic:
        return None
    if name.startswith(w["junk_prefixes"]):
        return None
    for prefix in w["generic_prefixes"]:
        if name.startswith(prefix) and name[len(prefix) :] in generic:
            return None
    for suffix in w["strip_suffixes"]:
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            name = name[: -len(suffix)]
            break
    return name


def focus_text(post: AnalyzedPost) -> str:
    """Where a post names its subject: the title, or the first ``FOCUS_CHARS`` characters of the text."""
    if post.title:
        return _WS.sub("", post.title)
    return _WS.sub("", post.text_norm or post.text)[:FOCUS_CHARS]


def anchor_keys(entities: Entities, focus: str | None = None) -> list[str]:
    """Distinct anchor keys among the entities' places and organisations, in first-seen order.

    With ``focus`` (a title, or the opening of the text) only names that appear in it count: a message
    names what it is about up front, while names deep in the body are context (and extraction slips).
    """
    out: list[str] = []
    for name in [*entities.places, *entities.orgs]:
        key = anchor_key(name)
        if key and key not in out and (focus is None or key in focus):
            out.append(key)
    return out


def town_keys(entities: Entities) -> list[str]:
    """Towns (…镇/…乡/…街道, also inside a longer name such as "青石镇工业园") without any district prefix."""
    out: list[str] = []
    for name in entities.places:
        m = _TOWN_FIRST.match(_ABOVE_TOWN.sub("", _WS.sub("", name), count=1))
        if m and m.group(1) not in out:
            out.append(m.group(1))
    return out


def same_thing(a: str, b: str) -> bool:
    """Do two anchor keys name one thing (equal, one inside the other, or a 4+ char common ending)?"""
    if a in b or b in a:
        return True
    org = words()["org_endings"]
    if a.endswith(org) or b.endswith(org):
        return False
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n >= 4


def compatible(anchors: Sequence[str], other: Sequence[str]) -> bool:
    """False when both name specific anchors and none is the same thing."""
    return not anchors or not other or any(same_thing(a, b) for a in anchors for b in other)


def shares_anchor(anchors: Sequence[str], other: Sequence[str]) -> bool:
    """True when some anchor of one names the same thing as some anchor of the other."""
    return any(same_thing(a, b) for a in anchors for b in other)
