"""MinHash signatures of character shingles: the near-duplicate test of the event stage (and the analyze stage's
stored signature)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

_MAX32 = np.uint64(0xFFFFFFFF)
_SEED = 0x59_51_49_4E  # "YQIN": fixed so signatures agree across processes and releases
# Text beyond this many characters adds little to "is this the same text" and costs time.
MAX_SIGNATURE_CHARS = 20_000
EMPTY_SIGNATURE_VALUE = 0xFFFFFFFF
_WS = re.compile(r"\s+")


@lru_cache(maxsize=8)
def _permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients of the hashes h(x) = ((a·x + b) mod 2^64) >> 32, from a fixed seed.

    Multiply-add-shift (Dietzfelbinger) is strongly universal for 32-bit keys with 64-bit a, b, and
    numpy's uint64 arithmetic wraps exactly mod 2^64, so it is both fast and the same everywhere.
    """
    rng = np.random.Generator(np.random.PCG64(_SEED))
    a = rng.integers(0, np.iinfo(np.uint64).max, size=num_perm, dtype=np.uint64, endpoint=True) | np.uint64(1)
    b = rng.integers(0, np.iinfo(np.uint64).max, size=num_perm, dtype=np.uint64, endpoint=True)
    return a, b


def _shingle_hashes(text: str, shingle: int) -> np.ndarray:
    """32-bit hashes of the distinct character k-shingles (code points mixed with splitmix64)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    k = min(shingle, len(codes))
    n = len(codes) - k + 1
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(k):
            h = (h ^ codes[i : i + n]) * np.uint64(0x100000001B3)  # FNV-style combine, wraps mod 2^64
        # splitmix64 finaliser: spreads bits so the low 32 are well mixed.
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return np.unique(h & _MAX32)


def minhash_signature(text: str, *, num_perm: int = 64, shingle: int = 3) -> list[int]:
    """MinHash signature (``num_perm`` 32-bit ints) of the text's character shingles; whitespace ignored."""
    if num_perm <= 0 or shingle <= 0:
        raise ValueError("num_perm and shingle must be positive")
    text = _WS.sub("", text or "")[:MAX_SIGNATURE_CHARS]
    if not text:
        return [EMPTY_SIGNATURE_VALUE] * num_perm
    x = _shingle_hashes(text, shingle)
    a, b = _permutations(num_perm)
    with np.errstate(over="ignore"):
        values = (np.outer(a, x) + b[:, None]) >> np.uint64(32)
    return values.min(axis=1).astype(np.int64).tolist()


def estimated_jaccard(sig_a: Iterable[int], sig_b: Iterable[int]) -> float:
    """Share of equal MinHash slots: an unbiased estimate of the shingle sets' Jaccard similarity."""
    a, b = np.asarray(list(sig_a)), np.asarray(list(sig_b))
    if a.shape != b.shape or a.size == 0:
        return 0.0
    return float(np.mean(a == b))
