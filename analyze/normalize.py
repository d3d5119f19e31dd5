"""Text normalisation for analysis: pure functions that run on every post and never raise on a ``str``.

Display text is never replaced by these results: what is shown stays as received and is escaped on render.
"""

from __future__ import annotations

import html
import logging
import re
import unicodedata
from functools import lru_cache

logger = logging.getLogger(__name__)

# Zero-width and bidi-control characters: invisible, used to dodge keyword filters, and they split words.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\u00ad\u180e\u034f]+")
_HSPACE = re.compile(r"[^\S\n]+")
_MULTI_NL = re.compile(r"\s*\n\s*")


@lru_cache(maxsize=1)
def _traditional_chars() -> frozenset[str]:
    """Characters that zhconv would change to simplified; a cheap pre-check before the costly convert."""
    try:
        import zhconv.zhconv as zc

        table = zc.getdict("zh-cn")
    except Exception:  # zhconv missing or its tables unreadable: normalise without it
        logger.warning("zhconv unavailable: traditional characters are kept as they are")
        return frozenset()
    # Single-character entries only: phrase entries also rewrite simplified words (么二三 → 幺二三).
    return frozenset(k for k, v in table.items() if len(k) == 1 and k != v)


def _to_simplified(text: str) -> str:
    trad = _traditional_chars()
    if not trad or trad.isdisjoint(text):
        return text
    try:
        import zhconv

        return str(zhconv.convert(text, "zh-cn"))
    except Exception:  # never let a conversion table quirk lose the post
        logger.debug("zhconv failed on a text; kept unconverted", exc_info=True)
        return text


def _drop_controls(text: str) -> str:
    # Cc (controls), Cs (lone surrogates from broken UTF-8), Co (private use) are noise; keep \n and \t.
    # isprintable() is False for every character of those categories (and for a few kept ones, such as
    # \n, \t, other spaces and format characters): when it holds without \n and \t, nothing is dropped.
    if text.isprintable() or text.replace("\n", "").replace("\t", "").isprintable():
        return text
    return "".join(
        ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs", "Co", "Cn")
    )


def normalize(text: str) -> str:
    """NFKC (full-width → half-width), traditional → simplified, no control/zero-width chars, tidy spaces."""
    if not isinstance(text, str) or not text:
        return ""
    text = _INVISIBLE.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u3000", " ")
    text = _drop_controls(text)
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    text = _to_simplified(text)
    text = _HSPACE.sub(" ", text)
    text = _MULTI_NL.sub("\n", text)
    return text.strip()


_SCRIPT_STYLE = re.compile(r"<(script|style|noscript|iframe)\b[^>]*>.*?</\1\s*>", re.I | re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_BLOCK_TAG = re.compile(r"<\s*(br|/p|/div|/li|/tr|/h[1-6])\b[^>]*>", re.I)
_TAG = re.compile(r"</?[a-zA-Z][^<>]*>|<![^<>]*>")


def strip_html(text: str) -> str:
    """Tags (and script/style bodies) removed, entities unescaped; for analysis only, never for display."""
    if not isinstance(text, str) or not text:
        return ""
    if "<" not in text and "&" not in text:
        return text
    text = _SCRIPT_STYLE.sub("", text)
    text = _COMMENT.sub("", text)
    text = _BLOCK_TAG.sub("\n", text)
    text = _TAG.sub("", text)
    return _MULTI_NL.sub("\n", html.unescape(text)).strip()


_URL = re.compile(r"(?:https?://|ftp://|www\.)[^\s\u4e00-\u9fff，。！？、；：“”‘’（）【】《》]*", re.I)
_SHORT_URL = re.compile(r"\b(?:t\.cn|dwz\.cn|url\.cn)/[A-Za-z0-9]+", re.I)
_REPOST_CHAIN = re.compile(r"//@[^:：\s]{1,30}[:：]")
_MENTION = re.compile(r"@[\w\u4e00-\u9fff\-·]{1,30}")
_HASHTAG = re.compile(r"#([^#\n]{1,60})#")
_EMOJI = re.compile(
    "["
    "\U0001f000-\U0001faff"  # emoticons, pictographs, transport, supplemental symbols
    "\u2600-\u27bf"  # misc symbols and dingbats
    "\u2b00-\u2bff"  # arrows and stars used as decoration
    "\ufe0e\ufe0f"  # variation selectors
    "\U000e0000-\U000e007f"  # tag characters (flag sequences)
    "]+"
)
_SCORING_NOISE = re.compile(r"(?:网页链接|展开全文|收起全文|O网页链接|\.\.\.全文|转发微博)")


def text_for_scoring(text: str) -> str:
    """normalize() minus URLs, @mentions, #话题# hash marks (topic words kept) and emoji; for models only."""
    text = normalize(text)
    if not text:
        return ""
    text = _URL.sub(" ", text)
    text = _SHORT_URL.sub(" ", text)
    text = _REPOST_CHAIN.sub(" ", text)
    text = _MENTION.sub(" ", text)
    text = _HASHTAG.sub(r" \1 ", text)
    text = _EMOJI.sub(" ", text)
    text = _SCORING_NOISE.sub(" ", text)
    text = _HSPACE.sub(" ", text)
    text = _MULTI_NL.sub("\n", text)
    return text.strip()
