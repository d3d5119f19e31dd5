"""Chinese word segmentation with jieba, place names from the gazetteer kept whole.

One private ``jieba.Tokenizer`` (not jieba's global one, which other code may configure differently) is
built on first use under a lock; after that cutting only reads the dictionary, so it is thread-safe.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Sequence
from functools import lru_cache
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
# Runs of CJK/letters/digits that ``tokenize`` keeps the words of (cleaned), per Segmenter: clauses recur
# (boilerplate, reposts, 请尽快处理), and jieba's DAG + HMM is the costliest step of the stage. ~100 B each.
BLOCK_CACHE_SIZE = 65_536


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
        self._risky_stopwords: tuple[str, ...] | None = None
        # jieba.Tokenizer.cut(text, HMM=True) cuts each run matched by re_han on its own (DAG + HMM, nothing
        # carried between runs) and yields the rest piece by piece: a run's words depend on the run alone.
        self._re_han = jieba.re_han_default
        self._re_skip = jieba.re_skip_default
        self._cut_run = self._tk._Tokenizer__cut_DAG  # the very function cut() uses for a run with HMM
        self._run_words = lru_cache(maxsize=BLOCK_CACHE_SIZE)(self._run_words_uncached)

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

    def _run_words_uncached(self, run: str) -> tuple[str, ...]:
        return tuple(w for w in (piece.strip() for piece in self._cut_run(run)) if w)

    def words(self, text: str) -> list[str]:
        """Every piece of the normalised text in precise mode (HMM on), stripped, blanks dropped - punctuation and
        stopwords kept: the sentiment model's word features read them (negation scope ends at punctuation).

        The same pieces as jieba ``cut(text, HMM=True)`` (tests/analyze/test_segment.py), with each run of
        CJK/letters/digits looked up in a bounded cache before it is cut.
        """
        text = normalize(text)
        if not text:
            return []
        out: list[str] = []
        re_han, re_skip = self._re_han, self._re_skip
        for block in re_han.split(text):
            if not block:
                continue
            if re_han.match(block):
                out.extend(self._run_words(block))
            else:  # what cut() yields between runs: whitespace pieces whole, anything else char by char
                for part in re_skip.split(block):
                    if not part:
                        continue
                    for piece in ((part,) if re_skip.match(part) else part):
                        piece = piece.strip()
                        if piece:
                            out.append(piece)
        return out

    def tokenize(self, text: str) -> list[str]:
        """Words of the normalised text, without stopwords and punctuation; ASCII-only words lower-cased."""
        return self.clean(self.words(text))

    def block_cache_info(self) -> tuple[int, int]:
        """(hits, misses) of the run cache."""
        info = self._run_words.cache_info()
        return info.hits, info.misses

    def tokenize_for_search(self, text: str) -> list[str]:
        """Words plus their shorter parts (jieba cut_for_search), for index and query terms."""
        text = normalize(text)
        if not text:
            return []
        return self.clean(self._tk.cut_for_search(text, HMM=True))

    def search_terms_from_words(self, text: str, words: Sequence[str]) -> list[str] | None:
        """``tokenize_for_search(text)`` computed from ``tokenize(text)``'s ``words`` without segmenting again, or
        None where the words cannot tell (the caller segments then). ``text`` is normalised already.

        jieba's search mode is its plain cut with each longer word preceded by its 2- and 3-character parts that
        are dictionary words; the same clean-up follows. What the clean-up took out of ``words`` is lost, so
        None when it may have mattered: a dropped stopword of 3+ characters whose parts would be kept, or an
        ASCII word of 3+ characters that may have been upper-case (its parts are looked up as written)."""
        if self._risky_stopwords is None:
            freq = self._tk.FREQ
            self._risky_stopwords = tuple(
                w for w in self.stopwords if len(w) > 2 and self.clean(_parts(w, freq)))
        if any(w in text for w in self._risky_stopwords):
            return None
        freq = self._tk.FREQ
        lowered: str | None = None
        out: list[str] = []
        for word in words:
            if len(word) > 2:
                if word.isascii() and not word.isdigit():
                    lowered = text.lower() if lowered is None else lowered
                    if lowered.count(word) != text.count(word):
                        return None
                out += self.clean(_parts(word, freq))
            out.append(word)
        return out


def _parts(word: str, freq: dict[str, int]) -> list[str]:
    """jieba ``cut_for_search``'s extra terms of one word: its dictionary 2-grams, then 3-grams."""
    out = [word[i : i + 2] for i in range(len(word) - 1) if freq.get(word[i : i + 2])] if len(word) > 2 else []
    if len(word) > 3:
        out += [word[i : i + 3] for i in range(len(word) - 2) if freq.get(word[i : i + 3])]
    return out


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


def search_tokens_of_post(title: str, text: str, full_text: str, words: Sequence[str]) -> list[str]:
    """``tokenize_for_search(f"{title}\\n{text}")`` (what the post stores index), from the analyze stage's words
    (``tokenize`` of ``text_for_scoring(strip_html(full_text))``) when they are the words of that very text,
    else by segmenting it again. Both give the same terms; the first skips jieba's second pass over the post."""
    from analyze.normalize import strip_html, text_for_scoring

    indexed = f"{title}\n{text}"
    norm = normalize(indexed)
    if words and norm == text_for_scoring(strip_html(full_text)):
        terms = get_segmenter().search_terms_from_words(norm, words)
        if terms is not None:
            return terms
    return tokenize_for_search(indexed)
