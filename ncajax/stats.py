"""Seed x song bootstrap intervals for the mapping study (plain NumPy, deterministic).

Every number the verdict rests on is a table `(n_seeds, n_songs)`: one value per trained seed of a model
and per held-out song. Two sources of chance make such a number move: which seeds were trained and
which songs were tested. The two-way bootstrap resamples both at once: each replicate draws seeds with
replacement (per model, its seeds are its own) and songs with replacement (shared by every table in the
comparison, since every model is scored on the same songs), and takes the mean over the drawn cells.

A replicate's mean of `a[seeds][:, songs]` is `cs @ a @ ct / (S T)` with `cs`, `ct` the multinomial
draw counts of seeds and songs, so B replicates are two small matrix products, not B copies.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import ArrayLike, Float

N_BOOT = 4000
CONFIDENCE = 0.95


def _table(a, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"{name} must be a non-empty (n_seeds, n_songs) table, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds NaN or Inf: drop or repair those cells before the bootstrap")
    return arr


def _counts(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """Multinomial draw counts `(n_boot, n)` of n draws with replacement from n items."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def _replicate_means(table: np.ndarray, cs: np.ndarray, ct: np.ndarray) -> np.ndarray:
    s, t = table.shape
    return np.einsum("bs,st,bt->b", cs, table, ct) / (s * t)


def seed_song_bootstrap(
    a: Float[ArrayLike, "n_seeds_a n_songs"],
    b: Float[ArrayLike, "n_seeds_b n_songs"] | None = None,
    *,
    paired_seeds: bool = False,
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict:
    """Mean of `a` (or of `a - b`) with a percentile interval from the seed x song bootstrap.

    a, b: `(n_seeds, n_songs)` tables over the same songs (a 1-D table is one song). With `b`, the
    statistic is mean(a) - mean(b); the songs drawn are shared by a and b. `paired_seeds=True`: row i
    of a and of b come from the same seed (e.g. two estimators of one model) and are drawn together;
    otherwise (two models) each table's seeds are drawn on their own.
    Returns {"mean", "lo", "hi", "n_seeds", "n_songs", "n_boot", "confidence"}; mean is the statistic on
    the full tables, lo/hi the (1 - confidence)/2 and (1 + confidence)/2 quantiles of the replicates.
    With one seed and one song there is nothing to resample and lo = hi = mean.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    a = _table(a, "a")
    b = None if b is None else _table(b, "b")
    if b is not None and b.shape[1] != a.shape[1]:
        raise ValueError(f"a and b must cover the same songs, got {a.shape[1]} and {b.shape[1]} columns")
    if paired_seeds and b is not None and b.shape[0] != a.shape[0]:
        raise ValueError(f"paired_seeds needs tables of the same seeds, got {a.shape[0]} and {b.shape[0]}")
    rng = np.random.default_rng(seed)
    n_songs = a.shape[1]
    ct = _counts(rng, n_songs, n_boot)
    cs_a = _counts(rng, a.shape[0], n_boot)
    if b is None:
        reps, mean = _replicate_means(a, cs_a, ct), a.mean()
    elif paired_seeds:
        d = a - b
        reps, mean = _replicate_means(d, cs_a, ct), d.mean()
    else:
        cs_b = _counts(rng, b.shape[0], n_boot)
        reps = _replicate_means(a, cs_a, ct) - _replicate_means(b, cs_b, ct)
        mean = a.mean() - b.mean()
    lo, hi = np.quantile(reps, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {
        "mean": float(mean),
        "lo": float(lo),
        "hi": float(hi),
        "n_seeds": [int(a.shape[0])] + ([] if b is None or paired_seeds else [int(b.shape[0])]),
        "n_songs": int(n_songs),
        "n_boot": int(n_boot),
        "confidence": float(confidence),
    }


def sign(interval: dict) -> int:
    """+1 when the interval lies above 0, -1 below 0, 0 when it includes 0."""
    if interval["lo"] > 0:
        return 1
    if interval["hi"] < 0:
        return -1
    return 0
