"""Chinese word segmentation with jieba, place names from the gazetteer kept whole.

One private ``jieba.Tokenizer`` (not jieba's global one, which other code may configure differently) is
built on first use under a lock; after that cutting only reads the dictionary, so it is thread-safe.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from pathlib import Path

from analyze.normalize import normalize

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_GAZETTEER = DATA_DIR / "gazetteer.yaml"
DEFAULT_STOPWORDS = DATA_DIR / "stopwords.txt"

# A token is kept only if it has a letter, digit or CJK character (drops punctuation, emoji, symbols).
_CONTENT = re.compile(r"[0-9A-Za-z\u3400-\u9fff]")
# High frequency so jieba prefers these over splitting "A3区" into "A3" + "区".
_USER_FREQ = 200_000


def gazetteer_words(path: Path | None = None) -> list[str]:
    """Every name in the gazetteer (province, city, districts, towns) for the segmenter's user dictionary."""
    import yaml

    path = path or DEFAULT_GAZETTEER
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    words: list[str] = [str(data[k]) for k in ("province", "city") if data.get(k)]
    for name, info in (data.get("districts") or {}).items():
        words.append(str(name))
        info = info or {}
        words.extend(str(a) for a in info.get("aliases") or [])
        words.extend(str(t) for t in info.get("towns") or [])
    return words


def load_stopwords(path: Path | None = None) -> frozenset[str]:
    """Stopwords, one per line, ``#`` comments ignored."""
    path = path or DEFAULT_STOPWORDS
    words = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            word = line.split("#", 1)[0].strip()
            if word:
                words.add(word)
    return frozenset(words)


class Segmenter:
    """jieba with the gazetteer as user dictionary and a stopword filter."""

    def __init__(
        self,
        *,
        gazetteer_path: Path | None = None,
        stopwords_path: Path | None = None,
        extra_words: Iterable[str] = (),
    ) -> None:
        import jieba

        jieba.setLogLevel(logging.WARNING)
        self._tk = jieba.Tokenizer()
        self._tk.initialize()
        words = [*gazetteer_words(gazetteer_path), *extra_words]
        for word in words:
            self._tk.add_word(word, freq=_USER_FREQ)
        self.user_words = frozenset(words)
        self.stopwords = load_stopwords(stopwords_path)

    def clean(self, pieces: Iterable[str]) -> list[str]:
        """``pieces`` without stopwords and punctuation; ASCII-only words lower-cased (``tokenize`` = clean(words))."""
        out: list[str] = []
        for piece in pieces:
            tok = piece.strip()
            if not tok or tok in self.stopwords or not _CONTENT.search(tok):
                continue
            if tok.isascii():
                tok = tok.lower()
            out.append(tok)
        return out

    def words(self, text: str) -> list[str]:
        """Every piece of the normalised text in precise mode (HMM on), stripped, blanks dropped - punctuation and
        stopwords kept: the sentiment model's word features read them (negation scope ends at punctuation)."""
        text = normalize(text)
        if not text:
            return []
        return [w for w in (piece.strip() for piece in self._tk.cut(text, HMM=True)) if w]

    def tokenize(self, text: str) -> list[str]:
        """Words of the normalised text, without stopwords and punctuation; ASCII-only words lower-cased."""
        return self.clean(self.words(text))

    def tokenize_for_search(self, text: str) -> list[str]:
        """Words plus their shorter parts (jieba cut_for_search), for index and query terms."""
        text = normalize(text)
        if not text:
            return []
        return self.clean(self._tk.cut_for_search(text, HMM=True))


_lock = threading.Lock()
_default: Segmenter | None = None


def get_segmenter() -> Segmenter:
    """The shared default Segmenter, built once (about a second: jieba loads its dictionary)."""
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                _default = Segmenter()
                logger.info("jieba segmenter ready (%d gazetteer words)", len(_default.user_words))
    return _default


def tokenize(text: str) -> list[str]:
    """Words of ``text`` (see Segmenter.tokenize) with the default segmenter."""
    return get_segmenter().tokenize(text)


def words(text: str) -> list[str]:
    """Raw precise-mode words of ``text`` (see Segmenter.words) with the default segmenter."""
    return get_segmenter().words(text)


def tokenize_for_search(text: str) -> list[str]:
    """Search terms of ``text`` (see Segmenter.tokenize_for_search) with the default segmenter."""
    return get_segmenter().tokenize_for_search(text)
