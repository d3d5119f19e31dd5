"""The default sentiment model: a ``transformers`` sequence classifier, calibrated P(negative).

Model directory: any local ``transformers`` dir with config + weights + tokenizer (``AutoTokenizer`` /
``AutoModelForSequenceClassification``, loaded with ``local_files_only`` so nothing is ever downloaded).
The default is the one shipped in ``analyze/sentiment/model/`` (a small BERT trained from scratch on the
dev corpora by ``analyze.sentiment.train``; ``yuqing train sentiment`` reproduces it).

Labels: the negative class is found from ``config.id2label`` - a name such as ``negative``/``NEGATIVE``/
``neg``/``负面``/``消极`` wins; if the names are generic (``LABEL_0``/``0``...) the convention is
**label 0 = negative** (as in the dev CSVs, where 0 is negative and 1 positive). A model with a neutral
class works too: P(negative) is its probability mass on the negative class.

Calibration: ``calibration.json`` in the model dir holds a temperature T fitted on the validation split
(temperature scaling: P = softmax(logits / T)); without that file T = 1. The output is therefore a
probability that can be read as such: ~0.8 means about 4 in 5 such texts are negative.

Neutral: this class only reports P(negative). ``SentimentModel.score`` turns it into three verdicts with a
neutral band around 0.5 (default +/-0.15): 负面 if P >= 0.65, 正面 if P <= 0.35, else 中性 - i.e. neutral
is "the calibrated model is not confident either way", which is where factual, mixed and off-domain posts
land. Empty or whitespace-only text is exactly 0.5 (neutral) without running the model.

Threads: ``threads`` is applied with ``torch.set_num_threads`` (process-wide in torch), so construct one
instance per worker process with the core budget it should use.

Memory: the constructor also turns torch's oneDNN (mkldnn) CPU kernels off, process-wide. A service scores
batches of every shape (1..batch_size texts, 1..max_length pieces) and oneDNN builds and caches a kernel per
shape: scoring random batches of hotel reviews grew RSS from 420 to 1,174 MB in 150 s with it and stayed at
~450 MB without it, at the same speed for a model this small (``make bench``: ``sentiment.varied_shapes.*``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from analyze.sentiment.base import SentimentModel

logger = logging.getLogger(__name__)

SHIPPED_MODEL_DIR = Path(__file__).resolve().parent / "model"

_NEGATIVE_NAMES = {"negative", "neg", "负面", "消极", "负向", "差评", "bad"}
_GENERIC_ZERO = {"label_0", "0"}


def negative_index(id2label: dict) -> int:
    """Index of the negative class from a config's id2label (named class first, else label 0)."""
    names = {int(k): str(v).strip().lower() for k, v in id2label.items()}
    for idx, name in sorted(names.items()):
        if name in _NEGATIVE_NAMES:
            return idx
    for idx, name in sorted(names.items()):
        if name in _GENERIC_ZERO:
            return idx
    raise RuntimeError(f"cannot tell which class is negative from id2label={id2label!r}; "
                       "name it 'negative' (or use the convention label 0 = negative)")


class TransformerSentiment(SentimentModel):
    """A local transformers classifier with temperature-scaled P(negative), batched on ``threads`` cores."""

    name = "transformer"

    def __init__(self, model_dir: Path | None = None, *, threads: int = 2, batch_size: int = 64,
                 max_length: int | None = None) -> None:
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("TransformerSentiment needs torch and transformers: pip install 'yuqing[ml]'") from exc
        self.model_dir = Path(model_dir) if model_dir is not None else SHIPPED_MODEL_DIR
        if not (self.model_dir / "config.json").is_file():
            raise RuntimeError(f"no transformers model in {self.model_dir} (config.json missing)")
        if threads < 1 or batch_size < 1 or (max_length is not None and max_length < 8):
            raise ValueError("threads and batch_size must be >= 1, max_length >= 8")
        torch.set_num_threads(threads)
        # Per-shape oneDNN kernels are cached without bound on RSS (module docstring); torch's own kernels are not.
        torch.backends.mkldnn.enabled = False
        self._torch = torch
        self.batch_size = batch_size
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
            self._model = AutoModelForSequenceClassification.from_pretrained(
                self.model_dir, local_files_only=True, dtype=torch.float32
            )
        except (OSError, ValueError, KeyError) as exc:
            raise RuntimeError(f"cannot load the sentiment model from {self.model_dir}: {exc}") from exc
        self._model.eval()
        self._negative = negative_index(self._model.config.id2label)
        limit = int(getattr(self._tokenizer, "model_max_length", 0) or 0)
        if not 0 < limit < 100_000:  # tokenizers without a limit report a huge sentinel
            limit = int(getattr(self._model.config, "max_position_embeddings", 0) or 512)
        # The model's own length (what it was trained on) unless asked for less; 512 at most, for speed.
        self.max_length = min(max_length or limit, limit, 512)
        self.temperature = _read_temperature(self.model_dir)
        logger.info("sentiment model %s: negative=%d T=%.3f max_length=%d", self.model_dir, self._negative,
                    self.temperature, self.max_length)

    def predict_negative(self, texts: Sequence[str]) -> list[float]:
        """Calibrated P(negative) per text, in input order; batches are length-sorted to cut padding."""
        torch = self._torch
        # A char cap far above max_length tokens: truncation decides what is used, this only bounds the
        # tokenizer's work on a multi-megabyte post.
        cleaned = [str(t).strip()[: self.max_length * 8] for t in texts]
        out = [0.5] * len(cleaned)
        todo = sorted((i for i, t in enumerate(cleaned) if t), key=lambda i: len(cleaned[i]))
        with torch.inference_mode():
            for start in range(0, len(todo), self.batch_size):
                idx = todo[start : start + self.batch_size]
                # verbose=False: over-long texts are expected here (head_tail cuts them), so no warning.
                pieces = self._tokenizer([cleaned[i] for i in idx], truncation=False, verbose=False)
                ids = [head_tail(seq, self.max_length) for seq in pieces["input_ids"]]
                width = max(len(seq) for seq in ids)
                pad_id = int(self._tokenizer.pad_token_id or 0)
                input_ids = torch.tensor([seq + [pad_id] * (width - len(seq)) for seq in ids], dtype=torch.long)
                mask = torch.tensor([[1] * len(seq) + [0] * (width - len(seq)) for seq in ids], dtype=torch.long)
                enc = {"input_ids": input_ids, "attention_mask": mask}
                if not self._drop_token_types:
                    enc["token_type_ids"] = torch.zeros_like(input_ids)
                logits = self._model(**enc).logits.float() / self.temperature
                probs = torch.softmax(logits, dim=-1)[:, self._negative].tolist()
                for i, p in zip(idx, probs, strict=True):
                    out[i] = float(p)
        return out

    @property
    def _drop_token_types(self) -> bool:
        # Models with a single token type (e.g. RoBERTa: type_vocab_size 1) must not get token_type_ids.
        return int(getattr(self._model.config, "type_vocab_size", 2) or 0) < 2


def head_tail(ids: list[int], max_length: int) -> list[int]:
    """Cut a too-long token sequence to its head and tail (the [CLS]... start and ...[SEP] end both kept).

    Reviews and posts often put the verdict at the end ("...总之不会再来了"); keeping the first 5/8 and the
    last 3/8 of the budget beats plain head truncation on long texts (Sun et al. 2019, "How to Fine-Tune
    BERT for Text Classification").
    """
    if len(ids) <= max_length:
        return list(ids)
    head = max_length * 5 // 8
    return list(ids[:head]) + list(ids[len(ids) - (max_length - head):])


def _read_temperature(model_dir: Path) -> float:
    path = model_dir / "calibration.json"
    if not path.is_file():
        return 1.0
    try:
        value = float(json.loads(path.read_text(encoding="utf-8"))["temperature"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(f"{path}: unreadable calibration ({exc})") from exc
    if not 0.01 < value < 100:
        raise RuntimeError(f"{path}: implausible temperature {value}")
    return value
