"""Reproducible training of the shipped sentiment model, and the data splits eval uses.

Data: ``<data_dir>/{waimai,hotel,shopping}.dev.csv`` (columns ``label,text,category``; label 1 positive,
0 negative). Each row goes to ``test`` (10%), ``val`` (5%) or ``train`` by a seeded hash of its text, so the
split does not depend on row order and ``yuqing eval sentiment`` sees exactly the rows training never saw.

Recipe (no downloaded weights anywhere): a BPE vocabulary (12k pieces, NFKC + lowercase, digits split) is
trained on the train texts; a small BERT (hidden 128, 2 layers, 4 heads, intermediate 512, 160 positions,
~2M parameters, most of them the embedding table) gets its word embeddings warm-started from the train
split itself (PPMI-SVD co-occurrence vectors + a naive-Bayes log-odds column, see ``init_embeddings``) and
is trained for sequence classification with AdamW, linear warm-up/decay (the decay is fitted into
``max_minutes`` when the machine is slower than planned), length-bucketed batches, waimai up-sampled 2x and
hotel 4x, texts longer than 160 pieces cut to head + tail, and knowledge distillation: the loss mixes the
hard labels with the probabilities of TF-IDF models that never saw the text (4-fold cross-fitting,
``teacher_probabilities``). Before fine-tuning, the encoder is pre-trained as a masked LM on the
unlabelled train texts for ``pretrain_minutes`` (8; our own small "pre-trained Chinese model"), and the
weights evaluated and saved are an exponential moving average (``ema`` 0.999, see ``_Stepper``). The
whole recipe takes ~16 minutes on 2 idle cores. The checkpoint with the best
mean validation accuracy is kept, a temperature is fitted on the validation logits (calibration.json), and
the directory is written as a normal ``transformers`` model dir: config.json (id2label 0=negative,
1=positive), model.safetensors, tokenizer.json + tokenizer_config.json, calibration.json, train_info.json,
and the TF-IDF baseline fitted on the same train split in ``tfidf/``.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analyze.sentiment.tfidf import TfidfSentiment

logger = logging.getLogger(__name__)

DATASETS = ("waimai", "hotel", "shopping")
TEST_FRACTION = 0.10
VAL_FRACTION = 0.05
NEGATIVE, POSITIVE = 0, 1
TEACHERS = ("tfidf", "ngram-ensemble")  # distillation teachers (TrainConfig.teacher)
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Keyword names of the special tokens for PreTrainedTokenizerFast (pad first: id 0).
_SPECIAL_KWARGS = dict(zip(["pad_token", "unk_token", "cls_token", "sep_token", "mask_token"], SPECIAL_TOKENS,
                           strict=True))


@dataclass(frozen=True)
class LabelledText:
    """One labelled review: ``label`` 1 positive, 0 negative."""

    label: int
    text: str


class DataError(ValueError):
    """A sentiment CSV is missing or malformed (the message names file and line)."""


def default_data_dir() -> Path:
    """``../shared/data/sentiment`` beside the repository checkout."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "sentiment"


def read_labelled_csv(path: Path) -> list[LabelledText]:
    """Rows of a ``label,text[,category]`` CSV; raises DataError naming the bad line."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows: list[LabelledText] = []
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            if "label" not in header or "text" not in header:
                raise DataError(f"{path}:1: header must contain columns label,text (got {header})")
            for row in reader:
                line = reader.line_num
                label, text = row.get("label"), row.get("text")
                if label is None or text is None:
                    raise DataError(f"{path}:{line}: missing label or text column")
                if label.strip() not in ("0", "1"):
                    raise DataError(f"{path}:{line}: label must be 0 or 1, got {label!r}")
                rows.append(LabelledText(int(label), text))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc})") from exc
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from exc
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def split_of(text: str, *, seed: int = 42) -> str:
    """``test``/``val``/``train`` for one text, by a seeded hash (independent of row order)."""
    digest = hashlib.sha256(f"{seed}\x00{text}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < TEST_FRACTION:
        return "test"
    if u < TEST_FRACTION + VAL_FRACTION:
        return "val"
    return "train"


def load_splits(data_dir: Path, *, seed: int = 42) -> dict[str, dict[str, list[LabelledText]]]:
    """``{dataset: {"train"|"val"|"test": rows}}`` for the three dev corpora."""
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: sentiment data directory not found (expected ../shared/data/sentiment)")
    out: dict[str, dict[str, list[LabelledText]]] = {}
    for name in DATASETS:
        parts: dict[str, list[LabelledText]] = {"train": [], "val": [], "test": []}
        for row in read_labelled_csv(data_dir / f"{name}.dev.csv"):
            parts[split_of(row.text, seed=seed)].append(row)
        out[name] = parts
    return out


@dataclass
class TrainConfig:
    """Hyper-parameters of the shipped recipe (defaults are what shipped)."""

    epochs: int = 3
    seed: int = 42
    max_minutes: float = 30.0
    vocab_size: int = 12000
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    intermediate: int = 512
    max_length: int = 160
    batch_size: int = 32
    lr: float = 1e-3
    # Peak LR of fine-tuning (``lr`` is MLM's); 3e-4 was tried and did no better (model card).
    finetune_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.06
    dropout: float = 0.1
    threads: int = 2
    # hotel is the smallest corpus and the longest texts: it is seen 4 times per epoch.
    upsample: dict[str, int] = field(default_factory=lambda: {"waimai": 2, "hotel": 4, "shopping": 1})
    evals_per_epoch: int = 4
    warm_embeddings: bool = True
    pretrain_minutes: float = 8.0
    mask_rate: float = 0.15
    distill: float = 0.5
    distill_folds: int = 4
    # One of TEACHERS: the baseline alone, or three n-gram views (analyze/sentiment/teacher.py).
    teacher: str = "tfidf"
    # Decay of the weight moving average that is evaluated and saved (0: the raw weights).
    ema: float = 0.999
    # Fine-tunes from the one pre-trained encoder (other batch order and dropout each); with more than one,
    # their uniform weight average ("soup") is saved when it is at least as good on val as the best of them.
    finetunes: int = 1

    def __post_init__(self) -> None:
        if self.finetunes < 1:
            raise ValueError(f"finetunes must be at least 1, got {self.finetunes}")
        if self.teacher not in TEACHERS:
            raise ValueError(f"unknown teacher {self.teacher!r}: expected one of {', '.join(TEACHERS)}")


def train_tokenizer(texts: Sequence[str], *, vocab_size: int, max_length: int):
    """A BPE ``PreTrainedTokenizerFast`` learnt from ``texts`` ([CLS] text [SEP], pad id 0)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=_SPECIAL_KWARGS["unk_token"]))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    tok.decoder = decoders.BPEDecoder()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=3, special_tokens=SPECIAL_TOKENS)
    tok.train_from_iterator(list(texts), trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=max_length, **_SPECIAL_KWARGS
    )


def init_embeddings(model, ids: Sequence[Sequence[int]], labels: Sequence[int], *, seed: int,
                    window: int = 3, first_regular: int = len(SPECIAL_TOKENS)) -> None:
    """Warm-start the word embeddings from the train split itself (no outside weights).

    Columns 1..H-1: PPMI co-occurrence vectors (window +/-3) reduced by a seeded randomized SVD - cheap
    distributional "pretraining" on the unlabelled text. Column 0: each piece's smoothed log-odds of
    appearing in a positive vs a negative review (the naive-Bayes feature). Attention starts near uniform,
    so the [CLS] output starts close to a mean of these vectors, i.e. a sensible bag-of-pieces classifier,
    which is what lets a small compute budget reach TF-IDF-level accuracy.
    """
    import numpy as np
    import scipy.sparse as sp
    import torch
    from sklearn.utils.extmath import randomized_svd

    vocab = model.config.vocab_size
    hidden = model.config.hidden_size
    rows, cols = [], []
    pos = np.zeros(vocab)
    neg = np.zeros(vocab)
    for seq, label in zip(ids, labels, strict=True):
        arr = np.asarray(seq[1:-1], dtype=np.int64)  # without [CLS]/[SEP]
        for d in range(1, window + 1):
            if len(arr) > d:
                rows.append(arr[:-d])
                cols.append(arr[d:])
        (pos if label == POSITIVE else neg)[np.unique(arr)] += 1
    r, c = np.concatenate(rows), np.concatenate(cols)
    co = sp.coo_matrix((np.ones(len(r), dtype=np.float64), (r, c)), shape=(vocab, vocab)).tocsr()
    co = (co + co.T).tocoo()
    total = co.data.sum()
    row_p = np.asarray(co.sum(axis=1)).ravel() / total
    ctx = row_p**0.75
    ctx /= ctx.sum()
    pmi = np.log(co.data / total / (row_p[co.row] * ctx[co.col]))
    keep = pmi > 0
    ppmi = sp.csr_matrix((pmi[keep], (co.row[keep], co.col[keep])), shape=(vocab, vocab))
    u, sigma, _ = randomized_svd(ppmi, n_components=hidden - 1, n_iter=4, random_state=seed)
    vectors = u * np.sqrt(sigma)
    vectors *= 0.02 / (vectors[first_regular:].std() + 1e-12)
    log_odds = np.log((pos + 1) / (pos.sum() + vocab)) - np.log((neg + 1) / (neg.sum() + vocab))
    log_odds *= 4 * 0.02 / (log_odds[first_regular:].std() + 1e-12)
    table = np.concatenate([log_odds[:, None], vectors], axis=1)
    seen = (pos + neg) > 0
    seen[:first_regular] = False  # special tokens keep their init ([PAD] stays zero)
    weight = model.bert.embeddings.word_embeddings.weight
    with torch.no_grad():
        weight[torch.as_tensor(seen)] = torch.as_tensor(table[seen], dtype=weight.dtype)
    logger.info("embeddings warm-started for %d of %d pieces", int(seen.sum()), vocab)


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> Iterator[list[int]]:
    """Length-bucketed batches: shuffle, sort within chunks of 50 batches, shuffle the batches (less padding)."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches.extend(part[j : j + batch_size] for j in range(0, len(part), batch_size))
    rng.shuffle(batches)
    yield from batches


def _pad(seqs: Sequence[Sequence[int]]):
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), width), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def _logits(model, encoded: Sequence[Sequence[int]], batch_size: int = 128):
    """Logits for pre-tokenised sequences, in input order."""
    import torch

    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out = torch.zeros((len(encoded), model.config.num_labels))
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ids, mask = _pad([encoded[i] for i in idx])
            out[idx] = model(input_ids=ids, attention_mask=mask).logits.float()
    return out


class _Stepper:
    """One optimiser step (backward, clip to norm 1, step, schedule, zero) and a smoothed loss for logging.

    Shared by MLM pre-training and fine-tuning so both follow the same update rule. With ``ema`` > 0 it
    also keeps an exponential moving average of the weights (Polyak averaging), which evaluation uses:
    on these small, noisy corpora the averaged weights generalise better than the last step's.
    """

    def __init__(self, params, opt, sched, *, ema: float = 0.0) -> None:
        self.params = list(params)
        self.opt, self.sched, self.ema = opt, sched, ema
        self.step_count = 0
        self._loss_avg = 0.0
        self.shadow = [p.detach().clone() for p in self.params] if ema > 0 else None

    def __call__(self, loss) -> None:
        import torch

        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        self.step_count += 1
        self._loss_avg = 0.98 * self._loss_avg + 0.02 * loss.item()
        if self.shadow is not None:
            # Warm-up of the decay (as in TF's ExponentialMovingAverage) so early steps are not frozen in.
            decay = min(self.ema, (1 + self.step_count) / (10 + self.step_count))
            with torch.no_grad():
                torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - decay)

    @property
    def loss(self) -> float:
        """Bias-corrected running mean of the loss."""
        return self._loss_avg / (1 - 0.98 ** max(self.step_count, 1))

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """The EMA weights are in the model inside this context (a no-op without EMA)."""
        import torch

        if self.shadow is None:
            yield
            return
        with torch.no_grad():
            live = [p.detach().clone() for p in self.params]
            for p, s in zip(self.params, self.shadow, strict=True):
                p.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, v in zip(self.params, live, strict=True):
                    p.copy_(v)


def pretrain_mlm(model, ids: Sequence[Sequence[int]], *, tokenizer, config: TrainConfig) -> dict:
    """Masked-language-model pre-training of ``model``'s encoder on the unlabelled train texts, in place.

    A ``BertForMaskedLM`` with the same config shares the encoder (and the tied word embeddings) with the
    classifier, so after ``config.pretrain_minutes`` of MLM (15% of pieces: 80% [MASK], 10% random, 10%
    kept; constant LR after warm-up, linear decay over the last fifth of the budget) the classifier starts
    from an encoder that has read the whole corpus - our own small "pre-trained Chinese model".
    """
    import torch
    from transformers import BertForMaskedLM

    mlm = BertForMaskedLM(model.config)
    mlm.bert.load_state_dict(model.bert.state_dict(), strict=False)
    mlm.tie_weights()
    g = torch.Generator().manual_seed(config.seed)
    rng = random.Random(config.seed + 1)
    lengths = [len(s) for s in ids]
    specials = torch.tensor(sorted({tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id}))
    vocab = model.config.vocab_size
    opt = torch.optim.AdamW(mlm.parameters(), lr=config.lr, betas=(0.9, 0.98), eps=1e-6,
                            weight_decay=config.weight_decay)
    budget = config.pretrain_minutes * 60
    started = time.monotonic()
    warm = 300

    def lr_factor(s: int) -> float:
        left = 1.0 - (time.monotonic() - started) / budget
        return min((s + 1) / warm, max(0.02, min(1.0, left * 5)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    stepper = _Stepper(mlm.parameters(), opt, sched)
    mlm.train()
    epochs = 0
    while time.monotonic() - started < budget:
        epochs += 1
        for batch in _batches(lengths, config.batch_size * 2, rng):
            input_ids, mask = _pad([ids[i] for i in batch])
            labels = input_ids.clone()
            candidates = (mask == 1) & ~torch.isin(input_ids, specials)
            chosen = (torch.rand(input_ids.shape, generator=g) < config.mask_rate) & candidates
            labels[~chosen] = -100
            roll = torch.rand(input_ids.shape, generator=g)
            input_ids = input_ids.masked_fill(chosen & (roll < 0.8), tokenizer.mask_token_id)
            swap = chosen & (roll >= 0.8) & (roll < 0.9)
            input_ids[swap] = torch.randint(len(SPECIAL_TOKENS), vocab, (int(swap.sum()),), generator=g)
            # The vocabulary projection only for the masked positions (~15%): most of MLM's cost otherwise.
            hidden = mlm.bert(input_ids=input_ids, attention_mask=mask).last_hidden_state
            picked = labels != -100
            logits = mlm.cls(hidden[picked])
            stepper(torch.nn.functional.cross_entropy(logits, labels[picked]))
            if stepper.step_count % 200 == 0:
                logger.info("pretrain step %d mlm loss %.3f %.1f min", stepper.step_count, stepper.loss,
                            (time.monotonic() - started) / 60)
            if time.monotonic() - started >= budget:
                break
    model.bert.load_state_dict(mlm.bert.state_dict(), strict=False)
    return {"steps": stepper.step_count, "epochs": epochs, "mlm_loss": round(stepper.loss, 4),
            "minutes": round((time.monotonic() - started) / 60, 2)}


def fit_temperature(logits, labels) -> float:
    """Temperature T minimising validation NLL of softmax(logits / T) (temperature scaling)."""
    import torch

    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)
    target = torch.as_tensor(labels, dtype=torch.long)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), target)
        loss.backward()
        return loss

    opt.step(closure)
    # Clamped to what TransformerSentiment accepts: an untrained model's best T tends to infinity.
    return min(50.0, max(0.05, float(log_t.exp().item())))


def teacher_probabilities(rows: Sequence[LabelledText], *, folds: int, seed: int,
                          kind: str = "tfidf") -> dict[str, float]:
    """P(positive) of each train text by an n-gram ``kind`` teacher that never saw it (``folds``-fold cross-fitting).

    These soft targets are the knowledge-distillation teacher: a character n-gram model errs on other texts
    than a small transformer does, so learning from both the hard labels and its probabilities gives the
    student what the bag of n-grams knows plus what word order and context add.
    """
    from analyze.sentiment.teacher import NgramEnsembleTeacher
    from analyze.sentiment.tfidf import TfidfSentiment

    if kind not in TEACHERS:
        raise ValueError(f"unknown teacher {kind!r}: expected one of {', '.join(TEACHERS)}")
    labelled: dict[str, int] = {}
    for row in rows:
        labelled.setdefault(row.text, row.label)
    texts = list(labelled)
    fold_of = [int.from_bytes(hashlib.sha256(f"{seed}\x01{t}".encode()).digest()[:4], "big") % folds for t in texts]
    out: dict[str, float] = {}
    for k in range(folds):
        fit_texts = [t for t, f in zip(texts, fold_of, strict=True) if f != k]
        held = [t for t, f in zip(texts, fold_of, strict=True) if f == k]
        fit_labels = [labelled[t] for t in fit_texts]
        if kind == "tfidf":
            p_positive = [1.0 - p for p in TfidfSentiment().fit(fit_texts, fit_labels).predict_negative(held)]
        else:
            p_positive = NgramEnsembleTeacher().fit(fit_texts, fit_labels).predict_positive(held)
        out.update(zip(held, p_positive, strict=True))
        logger.info("teacher fold %d/%d: %d texts", k + 1, folds, len(held))
    return out


def train_tfidf(splits: dict[str, dict[str, list[LabelledText]]]) -> TfidfSentiment:
    """The TF-IDF baseline fitted on the train split of all three corpora (shipped as ``<model>/tfidf``)."""
    from analyze.sentiment.tfidf import TfidfSentiment

    rows = [r for name in DATASETS for r in splits[name]["train"]]
    return TfidfSentiment().fit([r.text for r in rows], [r.label for r in rows])


def average_states(states: Sequence[dict]) -> dict:
    """The element-wise mean of state dicts with the same keys (integer buffers are taken from the first)."""
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = sum(s[key] for s in states) / len(states)
        else:
            out[key] = first.clone()
    return out


def _val_accuracies(model, val_ids: dict, val_y: dict) -> dict[str, float]:
    import torch

    accs = {}
    for name in DATASETS:
        pred = _logits(model, val_ids[name]).argmax(-1)
        accs[name] = float((pred == torch.tensor(val_y[name])).float().mean())
    return accs


def _finetune(model, train_ids: Sequence[Sequence[int]], train_y, soft_y, val_ids: dict, val_y: dict, *,
              config: TrainConfig, seed: int, budget: float, started: float) -> dict:
    """One fine-tuning run of ``model`` in place; returns its best (EMA) checkpoint by mean val accuracy.

    The linear decay is fitted into ``budget`` seconds when the machine is slower than planned; the run
    stops at the budget and keeps the best checkpoint seen (``stopped_early``).
    """
    import torch

    started_finetune = time.monotonic()
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.finetune_lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    steps_per_epoch = math.ceil(len(train_ids) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warm = max(1, int(total * config.warmup))

    def lr_factor(s: int) -> float:
        # Progress is the larger of step and wall-clock progress, so a run cut short by the budget still
        # finishes its decay (on an idle machine the step term always wins and the run is reproducible).
        progress = max(s / total, (time.monotonic() - started_finetune) / budget)
        return min((s + 1) / warm, max(0.0, (1.0 - progress) * total / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    stepper = _Stepper(model.parameters(), opt, sched, ema=config.ema)
    eval_every = max(1, steps_per_epoch // config.evals_per_epoch)
    lengths = [len(s) for s in train_ids]
    rng = random.Random(seed)
    best: dict = {"val_accuracy": -1.0}
    best_state: dict | None = None
    step = 0
    deadline = started_finetune + budget
    history: list[dict] = []
    stopped_early = False

    def evaluate() -> None:
        nonlocal best, best_state
        with stepper.swapped():
            accs = _val_accuracies(model, val_ids, val_y)
            mean = sum(accs.values()) / len(accs)
            if mean > best["val_accuracy"]:
                best = {"val_accuracy": mean, "val": accs, "step": step}
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        history.append({"step": step, "minutes": (time.monotonic() - started) / 60, "val": accs})
        logger.info("step %d/%d val %s mean %.4f", step, total, {k: round(v, 4) for k, v in accs.items()}, mean)
        model.train()

    model.train()
    for epoch in range(config.epochs):
        for batch in _batches(lengths, config.batch_size, rng):
            ids, mask = _pad([train_ids[i] for i in batch])
            logits = model(input_ids=ids, attention_mask=mask).logits
            loss = torch.nn.functional.cross_entropy(logits, train_y[batch])
            if soft_y is not None:
                soft = -(soft_y[batch] * torch.log_softmax(logits, dim=-1)).sum(-1).mean()
                loss = (1.0 - config.distill) * loss + config.distill * soft
            stepper(loss)
            step = stepper.step_count
            if step % 100 == 0:
                el = time.monotonic() - started_finetune
                logger.info("epoch %d step %d/%d loss %.4f %.1f min %.2f steps/s", epoch, step, total,
                            stepper.loss, (time.monotonic() - started) / 60, step / el)
            if step % eval_every == 0:
                evaluate()
            if time.monotonic() > deadline:
                stopped_early = True
                break
        if stopped_early:
            logger.warning("fine-tuning budget %.1f min reached at step %d/%d; keeping the best checkpoint",
                           budget / 60, step, total)
            break
    if step % eval_every:
        evaluate()
    assert best_state is not None
    return {"best": best, "state": best_state, "history": history, "steps": step, "total_steps_planned": total,
            "stopped_early": stopped_early}


def train_model(out: Path, *, data_dir: Path, config: TrainConfig) -> dict:
    """Train tokenizer + model by ``config``, write the model dir to ``out``; returns train_info."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertForSequenceClassification

    started = time.monotonic()
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    splits = load_splits(data_dir, seed=config.seed)

    train_rows: list[LabelledText] = []
    for name in DATASETS:
        train_rows.extend(splits[name]["train"] * config.upsample.get(name, 1))
    unique_train_texts = [r.text for name in DATASETS for r in splits[name]["train"]]
    tokenizer = train_tokenizer(unique_train_texts, vocab_size=config.vocab_size, max_length=config.max_length)
    logger.info("tokenizer: %d pieces (%.1fs)", len(tokenizer), time.monotonic() - started)

    def encode(texts: Sequence[str]) -> list[list[int]]:
        from analyze.sentiment.transformer import head_tail

        return [head_tail(seq, config.max_length)
                for seq in tokenizer([t[: config.max_length * 8] for t in texts], truncation=False,
                                    verbose=False)["input_ids"]]

    train_ids = encode([r.text for r in train_rows])
    train_y = torch.tensor([r.label for r in train_rows], dtype=torch.long)
    if config.distill > 0:
        teacher = teacher_probabilities(train_rows, folds=config.distill_folds, seed=config.seed,
                                        kind=config.teacher)
        teacher_pos = torch.tensor([teacher[r.text] for r in train_rows], dtype=torch.float32)
        soft_y = torch.stack([1.0 - teacher_pos, teacher_pos], dim=1)
    else:
        soft_y = None
    val_ids = {name: encode([r.text for r in splits[name]["val"]]) for name in DATASETS}
    val_y = {name: [r.label for r in splits[name]["val"]] for name in DATASETS}

    bert_config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        intermediate_size=config.intermediate,
        max_position_embeddings=config.max_length,
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=2,
        id2label={NEGATIVE: "negative", POSITIVE: "positive"},
        label2id={"negative": NEGATIVE, "positive": POSITIVE},
    )
    model = BertForSequenceClassification(bert_config)
    if config.warm_embeddings:
        init_embeddings(model, train_ids, [r.label for r in train_rows], seed=config.seed)
    pretrain_info: dict = {}
    if config.pretrain_minutes > 0:
        unique_ids = encode(unique_train_texts)
        pretrain_info = pretrain_mlm(model, unique_ids, tokenizer=tokenizer, config=config)
        started_finetune = time.monotonic()
    else:
        started_finetune = started
    # The fine-tuning budget is what pre-training left of max_minutes, shared by the fine-tunes.
    budget = max(60.0, config.max_minutes * 60 - (started_finetune - started))
    pretrained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    runs: list[dict] = []
    for run in range(config.finetunes):
        if run:
            # Same pre-trained start, another batch order and dropout draw: what a weight soup needs.
            model.load_state_dict(pretrained)
            torch.manual_seed(config.seed + run)
        run_budget = (started_finetune + budget - time.monotonic()) / (config.finetunes - run)
        runs.append(_finetune(model, train_ids, train_y, soft_y, val_ids, val_y, config=config,
                              seed=config.seed + run, budget=max(60.0, run_budget), started=started))
    winner = max(runs, key=lambda r: r["best"]["val_accuracy"])
    best, best_state = winner["best"] | {"run": runs.index(winner)}, winner["state"]
    soup: dict = {}
    if len(runs) > 1:
        # Uniform soup (Wortsman et al. 2022): the mean of the fine-tunes' weights, kept if val agrees.
        soup_state = average_states([r["state"] for r in runs])
        model.load_state_dict(soup_state)
        soup = {"val": _val_accuracies(model, val_ids, val_y)}
        soup["val_accuracy"] = sum(soup["val"].values()) / len(soup["val"])
        soup["kept"] = soup["val_accuracy"] >= best["val_accuracy"]
        logger.info("soup of %d fine-tunes: val %s mean %.4f (best single %.4f)%s", len(runs),
                    {k: round(v, 4) for k, v in soup["val"].items()}, soup["val_accuracy"],
                    best["val_accuracy"], "; kept" if soup["kept"] else "")
        if soup["kept"]:
            best = {"val_accuracy": soup["val_accuracy"], "val": soup["val"], "step": "soup"}
            best_state = soup_state
    model.load_state_dict(best_state)
    step = sum(r["steps"] for r in runs)
    total = sum(r["total_steps_planned"] for r in runs)
    stopped_early = any(r["stopped_early"] for r in runs)
    history = [h | {"run": i} for i, r in enumerate(runs) for h in r["history"]]

    all_logits = torch.cat([_logits(model, val_ids[n]) for n in DATASETS])
    all_y = [y for n in DATASETS for y in val_y[n]]
    temperature = fit_temperature(all_logits, all_y)
    out.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(out)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(out)
    (out / "calibration.json").write_text(
        json.dumps({"temperature": temperature, "fitted_on": "val split of the three dev corpora",
                    "negative_label": NEGATIVE}, indent=2) + "\n", encoding="utf-8")
    import transformers

    info = {
        "seed": config.seed,
        "config": {k: v for k, v in vars(config).items()},
        "steps": step,
        "total_steps_planned": total,
        "stopped_early": stopped_early,
        "wall_minutes": round((time.monotonic() - started) / 60, 2),
        "best": best,
        "history": history,
        "temperature": temperature,
        "train_rows": len(train_rows),
        "pretrain": pretrain_info,
        "finetunes": [{"best": r["best"], "steps": r["steps"], "stopped_early": r["stopped_early"]} for r in runs],
        "soup": soup,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    baseline = train_tfidf(splits)
    baseline.save(out / "tfidf")
    (out / "train_info.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    logger.info("saved %s (best step %s, T=%.3f, %.1f min)", out, best.get("step"), temperature,
                info["wall_minutes"])
    return info
