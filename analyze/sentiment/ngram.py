"""The shipped sentiment model: hashed word + character n-grams, per-domain heads, a calibrated stacker.

Features (``NgramFeaturizer``): character 1-3-grams, word 1-2-grams and negation-tagged words (``negated``) of
the text - the words of the analyze stage's segmenter (``analyze.segment``: jieba precise mode with the gazetteer),
passed in by the stage (``words=``) so a post is segmented once, or segmented here - hashed into
``2**20`` buckets, sublinear TF x IDF, L2-normalised - the TF-IDF baseline's features plus words.

Heads (logistic regressions on those features, trained on the ``train`` split only):

- ``review``: negative vs positive, product reviews (waimai, hotel, shopping);
- ``social``: negative vs positive, Weibo posts (the 2-class sets, the polar rows of the 3-class sets) and the
  hand-written government-domain posts in ``data/gov_train.csv``;
- ``pooled``: negative vs positive on every set's polar rows (the TF-IDF baseline's data);
- ``human``: negative vs positive on the hand-labelled Weibo sets only (not the emoticon-labelled ``weibo``);
- ``tri``: negative / positive / neutral (covid_weibo, smp2020_usual and gov_train.csv);
- ``domain``: review vs social text, and ``gov``: government-domain post vs other social text (which head
  to trust, and where 中性 notices are common);
- ``nb`` (optional, present when ``ngram.npz`` has ``nb_r``): an NB-LR head (Wang & Manning 2012) on the
  ``social`` head's polar rows (Weibo sets, 3-class sets, gov posts x5): binary n-gram presence scaled by the
  naive-Bayes log-count ratio ``r`` (negative vs positive, from the same train rows), L2-normalised, logistic
  regression.

Transformer (``ngram.json`` ``"transformer": true``): the small review-trained transformer shipped in
``model/`` is a further member; its logit enters the stacker like a head's.

Stacker (fitted on the ``val`` split, which no head saw): two small logistic regressions over the heads'
logits and their products with the domain probabilities - ``polar`` (negative vs positive, every set:
the 2-class decision, ``predict_both``) and ``tri`` (multinomial negative / positive / neutral, the 3-class
sets and gov_train.csv: the 3-class verdict and the P(negative) the rules use). Both are log-loss models
fitted on held-out rows, so their probabilities are calibrated.

Files (``model/ngram/``): ``ngram.json`` (settings, stacker weights, metadata) and ``ngram.npz`` (IDF and the
head weights, float16) - plain arrays, no pickle. ``yuqing train sentiment-ngram`` rebuilds them.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analyze.sentiment.base import SentimentModel
from core.records import Sentiment, SentimentLabel

logger = logging.getLogger(__name__)

SHIPPED_NGRAM_DIR = Path(__file__).resolve().parent / "model" / "ngram"
N_FEATURES = 2**20
TEXT_CAP = 600  # chars: head 400 + tail 200; verdicts sit at the start or the end of long reviews
PRUNE = 0.02  # |weight| below this is stored as 0 (the scores move by < 0.01 in logit)
HEADS = ("review", "social", "pooled", "human", "tri", "domain", "gov")
# Per text, its raw words from the analyze stage's segmenter, or None (then the model segments).
Words = Sequence[Sequence[str]] | None
# Class order of the 3-way outputs everywhere in this module.
NEG, POS, NEU = 0, 1, 2


def cap_text(text: str) -> str:
    """Stripped text; a long one is cut to its head and tail."""
    text = str(text).strip()
    if len(text) <= TEXT_CAP:
        return text
    return text[:400] + " " + text[-200:]


def text_words(text: str) -> list[str]:
    """The raw words of a text as the analyze stage has them (``analyze.topics.text_words``: the gazetteer-aware
    segmenter of ``analyze.segment``, punctuation and stopwords kept), for callers that pass texts only."""
    from analyze.topics import text_words as stage_words

    return stage_words(text)


def cap_words(words: Sequence[str]) -> list[str]:
    """The words of a long text cut as ``cap_text`` cuts its characters: the first 400 and the last 200 chars."""
    if sum(len(w) for w in words) <= TEXT_CAP:
        return list(words)
    head: list[str] = []
    n = 0
    for w in words:
        if n >= 400:
            break
        head.append(w)
        n += len(w)
    tail: list[str] = []
    n = 0
    for w in reversed(words):
        if n >= 200:
            break
        tail.append(w)
        n += len(w)
    return head + tail[::-1]


def tokens(text: str, words: Sequence[str] | None = None) -> list[str]:
    """Character 1-3-grams plus ``w:`` word unigrams, ``b:`` word bigrams and ``n:`` negated words.

    ``words``: the text's raw words from the analyze stage's segmenter (``text_words``; segmented here when
    None), so a post is segmented once for topics, stored tokens and sentiment.
    """
    if words is None:
        words = text_words(text)
    text = cap_text(text).lower()
    out: list[str] = []
    n = len(text)
    for i in range(n):
        out.append(text[i])
        if i + 1 < n:
            out.append(text[i : i + 2])
            if i + 2 < n:
                out.append(text[i : i + 3])
    ws = [w.lower() for w in cap_words(words)]
    out.extend("w:" + w for w in ws)
    out.extend("b:" + a + "|" + b for a, b in itertools.pairwise(ws))
    out.extend(negated(ws))
    return out


_CLAUSE_END = set("，。！？；,.!?;、~…\n")
_NEGATORS = ("没", "不", "无", "别", "未", "告别", "再也")


def negated(words: list[str]) -> list[str]:
    """``n:`` + each word of a clause that holds a negator (没有 / 不 / 再也不 / 告别 ...), the negator excepted.

    Negation tagging (Das & Chen 2001): "再也不堵了", "一点异味都没有" are praise although 堵 and 异味 are
    complaint words; tagged, ``n:堵`` can learn the opposite sign of ``w:堵``.
    """
    out: list[str] = []
    clause: list[str] = []
    for w in [*words, "。"]:
        if w in _CLAUSE_END or w[0] in _CLAUSE_END:
            if any(c.startswith(_NEGATORS) for c in clause):
                out.extend("n:" + c for c in clause if not c.startswith(_NEGATORS))
            clause = []
        else:
            clause.append(w)
    return out


class NgramFeaturizer:
    """Hashed sublinear TF-IDF over ``tokens``; ``idf`` is learnt by ``fit``."""

    def __init__(self, n_features: int = N_FEATURES) -> None:
        from sklearn.feature_extraction import FeatureHasher

        self.n_features = n_features
        self._hasher = FeatureHasher(n_features=n_features, input_type="string", alternate_sign=False)
        self.idf: Any = None

    def counts(self, texts: Sequence[str], words: Sequence[Sequence[str] | None] | None = None) -> Any:
        """Raw hashed counts (CSR, float32); ``words``: each text's raw words (``text_words``), or None."""
        import numpy as np

        if words is None:
            words = [None] * len(texts)
        elif len(words) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(words)} word lists")
        return self._hasher.transform(tokens(t, w) for t, w in zip(texts, words, strict=True)).astype(np.float32)

    def fit_idf(self, counts: Any) -> None:
        """Smoothed IDF from a count matrix (as sklearn's TfidfTransformer)."""
        import numpy as np

        df = np.bincount(counts.indices, minlength=self.n_features).astype(np.float64)
        self.idf = (np.log((1 + counts.shape[0]) / (1 + df)) + 1.0).astype(np.float32)

    def weight(self, counts: Any) -> Any:
        """Sublinear TF x IDF, rows L2-normalised (a copy)."""
        import numpy as np
        from sklearn.preprocessing import normalize

        x = counts.copy()
        x.data = (1.0 + np.log(x.data)) * self.idf[x.indices]
        return normalize(x, copy=False)

    def transform(self, texts: Sequence[str], words: Sequence[Sequence[str] | None] | None = None) -> Any:
        return self.weight(self.counts(texts, words))


def _softmax(z: Any) -> Any:
    import numpy as np

    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nb_features(counts: Any, r: Any) -> Any:
    """The NB-LR head's input: n-gram presence x log-count ratio ``r``, rows L2-normalised."""
    import numpy as np
    from sklearn.preprocessing import normalize

    x = counts.copy()
    x.data = np.ones_like(x.data) * r[x.indices]
    return normalize(x, copy=False)


def head_logits(heads: dict[str, tuple[Any, Any]], x: Any, x_nb: Any = None) -> dict[str, Any]:
    """Raw decision values per head: (n,) for binary heads, (n, 3) for ``tri``; ``nb`` reads ``x_nb``."""
    out = {}
    for name, (coef, intercept) in heads.items():
        z = (x_nb if name == "nb" else x) @ coef.T + intercept  # coef (k, F) float32
        out[name] = z[:, 0] if z.shape[1] == 1 else z
    return out


def stack_features(logits: dict[str, Any], transformer: Any = None) -> Any:
    """The stacker's inputs: head outputs (and the transformer's logit), domain probabilities, their products."""
    import numpy as np

    tri = logits["tri"] - logits["tri"].mean(axis=1, keepdims=True)
    p_review = 1.0 / (1.0 + np.exp(-np.clip(logits["domain"], -30, 30)))
    p_gov = (1.0 - p_review) / (1.0 + np.exp(-np.clip(logits["gov"], -30, 30)))
    base = np.column_stack([logits["review"], logits["social"], logits["pooled"], tri[:, NEG] - tri[:, POS],
                            tri[:, NEU]] + [logits[h] for h in ("human", "nb") if h in logits])
    if transformer is not None:
        p = np.clip(np.asarray(transformer, dtype=np.float64), 1e-6, 1 - 1e-6)
        base = np.column_stack([base, np.log(p / (1 - p))])
    return np.column_stack([base, base * p_review[:, None], base * p_gov[:, None], p_review, p_gov])


class NgramSentiment(SentimentModel):
    """Hashed n-gram heads + stacker: calibrated P(negative) and a 3-class verdict with a learnt 中性."""

    name = "ensemble"

    def __init__(self, model_dir: Path | None = None, *, threads: int = 2, batch_size: int = 64) -> None:
        import numpy as np

        self.model_dir = Path(model_dir) if model_dir is not None else SHIPPED_NGRAM_DIR
        try:
            meta = json.loads((self.model_dir / "ngram.json").read_text(encoding="utf-8"))
            with np.load(self.model_dir / "ngram.npz", allow_pickle=False) as arrays:
                idf = arrays["idf"].astype(np.float32)
                heads = {h: (arrays[f"{h}_coef"].astype(np.float32), arrays[f"{h}_intercept"].astype(np.float32))
                         for h in HEADS + (("nb",) if "nb_r" in arrays else ())}
                self.nb_r = arrays["nb_r"].astype(np.float32) if "nb_r" in arrays else None
        except (OSError, ValueError, KeyError) as exc:
            raise RuntimeError(f"cannot load the n-gram sentiment model from {self.model_dir}: {exc}") from exc
        self.meta = meta
        self.featurizer = NgramFeaturizer(int(meta["n_features"]))
        self.featurizer.idf = idf
        self.heads = heads
        self.stackers = {k: (np.asarray(v["coef"], dtype=np.float64), np.asarray(v["intercept"], dtype=np.float64))
                         for k, v in meta["stackers"].items()}
        self.transformer: SentimentModel | None = None
        if meta.get("transformer"):
            from analyze.sentiment.transformer import TransformerSentiment

            self.transformer = TransformerSentiment(threads=threads, batch_size=batch_size)
        from analyze.segment import get_segmenter

        get_segmenter()  # jieba's dictionary loads here, not on the first batch

    # -- scoring -------------------------------------------------------------------------------------
    # ``words``: per text, the raw words the analyze stage already has (``text_words``); None segments here.
    def predict_proba3(self, texts: Sequence[str], words: Words = None) -> list[tuple[float, float, float]]:
        """(P negative, P positive, P neutral) per text; empty text is certainly neutral."""
        return [tuple(row) for row in self._proba(texts, words)[0].tolist()]  # type: ignore[misc]

    def predict_both(self, texts: Sequence[str],
                     words: Words = None) -> tuple[list[float], list[tuple[float, float, float]]]:
        """P(negative | polar) - the 2-class decision - and the 3-class probabilities, in one pass."""
        proba3, polar = self._proba(texts, words)
        return polar.tolist(), [tuple(row) for row in proba3.tolist()]  # type: ignore[misc]

    def predict_negative(self, texts: Sequence[str], words: Words = None) -> list[float]:
        """Calibrated P(negative) (3-class sense: neutral mass is not negative); empty text 0."""
        return self._proba(texts, words)[0][:, NEG].tolist()

    def score(self, texts: Sequence[str], *, neutral_band: float = 0.15, words: Words = None) -> list[Sentiment]:
        """负面 / 正面 / 中性 by the largest class probability; ``score`` is P(negative).

        ``neutral_band`` is accepted for the contract but unused: neutral is a learnt class here.
        """
        proba3 = self._proba(texts, words)[0]
        labels = (SentimentLabel.negative, SentimentLabel.positive, SentimentLabel.neutral)
        return [Sentiment(label=labels[int(row.argmax())], score=float(min(1.0, max(0.0, row[NEG]))))
                for row in proba3]

    def _proba(self, texts: Sequence[str], words: Words = None) -> tuple[Any, Any]:
        import numpy as np

        n = len(texts)
        if words is not None and len(words) != n:
            raise ValueError(f"{n} texts but {len(words)} word lists")
        proba3 = np.zeros((n, 3))
        proba3[:, NEU] = 1.0
        polar = np.full(n, 0.5)
        keep = [i for i, t in enumerate(texts) if str(t).strip()]
        if keep:
            kept = [str(texts[i]) for i in keep]
            counts = self.featurizer.counts(kept, [words[i] for i in keep] if words is not None else None)
            x = self.featurizer.weight(counts)
            x_nb = nb_features(counts, self.nb_r) if self.nb_r is not None else None
            p_tr = self.transformer.predict_negative(kept) if self.transformer is not None else None
            z = stack_features(head_logits(self.heads, x, x_nb), p_tr)
            polar[keep] = _sigmoid(z @ self.stackers["polar"][0] + self.stackers["polar"][1])
            coef, intercept = self.stackers["tri"]
            proba3[keep] = _softmax(z @ coef.T + intercept)
        return proba3, polar


def _sigmoid(z: Any) -> Any:
    import numpy as np

    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def save_model(directory: Path, *, idf: Any, heads: dict[str, tuple[Any, Any]], stackers: dict[str, tuple[Any, Any]],
               info: dict[str, Any], nb_r: Any = None) -> None:
    """Write ``ngram.npz`` (float16 head weights and NB ratios, float32 IDF) and ``ngram.json``."""
    import numpy as np

    directory.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {"idf": idf.astype(np.float32)}
    if nb_r is not None:
        arrays["nb_r"] = np.asarray(nb_r).astype(np.float16)  # the trainer used the float16 values too
    for name, (coef, intercept) in heads.items():
        coef = np.asarray(coef, dtype=np.float32).copy()
        coef[np.abs(coef) < PRUNE] = 0.0  # buckets no text moved: zeros compress to nothing
        arrays[f"{name}_coef"] = coef.astype(np.float16)
        arrays[f"{name}_intercept"] = np.asarray(intercept, dtype=np.float32)
    np.savez_compressed(directory / "ngram.npz", **arrays)
    meta = {"n_features": int(idf.shape[0]),
            "stackers": {k: {"coef": np.asarray(coef, dtype=float).tolist(),
                             "intercept": np.asarray(b, dtype=float).tolist()}
                         for k, (coef, b) in stackers.items()},
            **info}
    (directory / "ngram.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")


def logit(p: float) -> float:
    p = min(1 - 1e-6, max(1e-6, p))
    return math.log(p / (1 - p))
