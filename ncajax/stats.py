"""Seed x song intervals for the mapping study (plain NumPy, deterministic).

Every number the verdict rests on is a table `(n_seeds, n_songs)`: one value per trained seed of a model
and per held-out song. Two sources of chance make such a number move: which seeds were trained and
which songs were tested. `seed_song_bootstrap` gives an interval for the mean of a table (or for the
difference of two tables' means) that accounts for both, by one of three methods:

- `method="t"` (default): a t-interval on the two-way random-effects design `x_ij = mu + seed_i + song_j
  + noise_ij`. The variance of the grand mean, var(seed)/S + var(song)/T + var(noise)/(S T), is
  estimated from the ANOVA mean squares (seed, song and residual; variance components truncated at 0)
  and the degrees of freedom by Satterthwaite. With two models (seeds of their own, songs shared) the
  song term is the variance of the per-song difference of the two models' song means.
- `method="percentile"`: the two-way (pigeonhole) bootstrap. Each replicate draws seeds with
  replacement (per model, its seeds are its own) and songs with replacement (shared by every table in
  the comparison, since every model is scored on the same songs), and takes the mean over the drawn
  cells; the interval is the replicates' percentiles. With few songs it is too narrow (it uses the
  song spread with divisor T instead of T - 1, and normal instead of t quantiles; likewise for 10
  seeds): at nominal 95 % and 10 seeds it covers 0.86-0.93 at 6 songs (0.7x the t-interval's width
  when songs dominate) and 0.90-0.94 at 30 songs, except where the noise dominates (there it
  over-covers, 0.97-0.99). Hence no longer the default.
- `method="bootstrap-t"`: the same draws, each studentised by its own two-way standard error. Covers
  0.93-0.96, no better than "t", at ~n_boot times the work; kept for comparison.

Measured (`interval_coverage`, benchmarks/bench_coverage.py, 10 seeds, normal seed / song / noise
effects in four variance mixes, one table or two models): "t" covers 0.947-0.971 at 6 and 30 songs
(Monte-Carlo se 0.002). With skewed song effects (lognormal, skewness 1.75) and 6 songs every method
falls short (t 0.918, bootstrap-t 0.930, percentile 0.847 for one table).

A replicate's mean of `a[seeds][:, songs]` is `cs @ a @ ct / (S T)` with `cs`, `ct` the multinomial
draw counts of seeds and songs, so B replicates are two small matrix products, not B copies.

`interval_coverage` measures each method's coverage on synthetic seed x song tables with a known mean.
`seed_interval` is the plain mean and Student-t interval over seeds of one value per seed (the
report's mean ± CI columns).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats
from jaxtyping import ArrayLike, Float

__all__ = [
    "seed_interval",
    "CONFIDENCE",
    "DEFAULT_METHOD",
    "METHODS",
    "N_BOOT",
    "VARIANCE_MIXES",
    "interval_coverage",
    "seed_song_bootstrap",
    "sign",
    "synthetic_tables",
]

N_BOOT = 4000
CONFIDENCE = 0.95
METHODS = ("t", "percentile", "bootstrap-t")
DEFAULT_METHOD = "t"

# (sd of the seed effect, sd of the song effect, sd of the seed x song noise) of `interval_coverage`'s
# synthetic tables; "skewed-song" draws the song effects from a centred lognormal (skewness ~1.75).
VARIANCE_MIXES = {
    "balanced": (1.0, 1.0, 1.0),
    "seed-dominant": (1.0, 0.25, 0.25),
    "song-dominant": (0.25, 1.0, 0.25),
    "noise-dominant": (0.25, 0.25, 1.0),
    "skewed-song": (0.25, 1.0, 0.25),
}


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


def _two_way_var(
    tables: list[np.ndarray], signs: list[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-way random-effects variance of `sum_g sign_g * mean(table_g)` for a batch of tables.

    tables: `(R, S_g, T)` arrays, R independent problems; each table has seeds of its own, the T songs
    are shared. Returns (mean, var, df), each `(R,)` (df = inf where var = 0).

    Model per table g: x_ij = mu_g + seed_gi + song_gj + noise_gij. The variance of the statistic is
    sum_g [var(seed_g)/S_g + var(noise_g)/(S_g T)] + var(sum_g sign_g song_g)/T, estimated by
    - seed_g: (MS_seed_g - MS_err_g) / (S_g T), MS_seed_g = T * var(row means), df S_g - 1;
    - noise_g: MS_err_g / (S_g T), MS_err_g = residual mean square, df (S_g - 1)(T - 1);
    - song: (v_d - sum_g MS_err_g / S_g) / T, v_d = var over songs of d_j = sum_g sign_g colmean_gj,
      df T - 1;
    the seed and song components truncated at 0, and the df of the sum by Satterthwaite. A table with
    one seed has no seed term (its noise is in v_d); with one song there is no song term (the noise is
    in the seed term).
    """
    n_songs = tables[0].shape[-1]
    r = tables[0].shape[0]
    mean = sum(sg * x.mean(axis=(1, 2)) for sg, x in zip(signs, tables, strict=True))
    terms: list[tuple[np.ndarray, np.ndarray, float]] = []  # (coefficient, mean square, df)
    song_active = np.zeros(r)
    errs: list[tuple[np.ndarray, int, np.ndarray]] = []
    if n_songs > 1:
        d = sum(sg * x.mean(axis=1) for sg, x in zip(signs, tables, strict=True))  # (R, T)
        v_d = d.var(axis=1, ddof=1)
        excess = v_d.copy()
    for x in tables:
        n_seeds = x.shape[1]
        if n_seeds < 2:
            continue
        rows = x.mean(axis=2)
        ms_seed = n_songs * rows.var(axis=1, ddof=1)
        if n_songs > 1:
            cols = x.mean(axis=1)
            resid = x - rows[:, :, None] - cols[:, None, :] + x.mean(axis=(1, 2))[:, None, None]
            ms_err = np.einsum("rst,rst->r", resid, resid) / ((n_seeds - 1) * (n_songs - 1))
            seed_active = np.where(ms_seed > ms_err, 1.0, 0.0)
            errs.append((ms_err, n_seeds, seed_active))
            excess = excess - ms_err / n_seeds
            terms.append((seed_active / (n_seeds * n_songs), ms_seed, n_seeds - 1))
        else:
            terms.append((np.full(r, 1.0 / n_seeds), ms_seed, n_seeds - 1))
    if n_songs > 1:
        song_active = np.where(excess > 0, 1.0, 0.0)
        terms.append((song_active / n_songs, v_d, n_songs - 1))
        # MS_err_g enters the noise term (+1), the seed component (-1 if kept) and the song component
        # (-1 if kept): one coefficient per mean square, as Satterthwaite's formula needs
        for ms_err, n_seeds, seed_active in errs:
            k = (1.0 - seed_active - song_active) / (n_seeds * n_songs)
            terms.append((k, ms_err, (n_seeds - 1) * (n_songs - 1)))
    var = np.zeros(r)
    denom = np.zeros(r)
    for k, ms, df in terms:
        var = var + k * ms
        denom = denom + (k * ms) ** 2 / df
    var = np.maximum(var, 0.0)
    pos = (var > 0) & (denom > 0)
    df = np.where(pos, var**2 / np.where(pos, denom, 1.0), np.inf)
    return mean, var, df


def _two_way_t(
    tables: list[np.ndarray], signs: list[float], confidence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two-way t-interval (`_two_way_var`, t quantile at its Satterthwaite df) for a batch of tables.
    Returns (mean, half_width, se, df), each `(R,)`."""
    mean, var, df = _two_way_var(tables, signs)
    q = scipy.stats.t.ppf((1.0 + confidence) / 2.0, df)
    se = np.sqrt(var)
    return mean, np.where(var > 0, q * se, 0.0), se, df


def _resample_indices(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """`(n_boot, n)` indices of n draws with replacement from n items."""
    return rng.integers(0, n, size=(n_boot, n))


def _bootstrap_t_batch(
    tables: list[np.ndarray], signs: list[float], n_boot: int, confidence: float,
    rng: np.random.Generator, chunk_cells: int = 4_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Studentised two-way bootstrap (bootstrap-t) intervals for a batch of `(R, S_g, T)` tables.

    Each replicate draws seeds (per table) and songs (shared) with replacement, as the percentile
    bootstrap does, and studentises its mean with the two-way standard error of the drawn table:
    t* = (mean* - mean) / se*. The interval is [mean - q_hi se, mean - q_lo se], q the t* quantiles.
    The same draws serve every problem of the batch."""
    n_songs = tables[0].shape[-1]
    r = tables[0].shape[0]
    it = _resample_indices(rng, n_songs, n_boot)
    iss = [_resample_indices(rng, x.shape[1], n_boot) for x in tables]
    mean, var, _ = _two_way_var(tables, signs)
    se = np.sqrt(var)
    cells = n_boot * sum(x.shape[1] for x in tables) * n_songs
    step = max(1, chunk_cells // cells)
    lo, hi = np.empty(r), np.empty(r)
    qs = [(1 - confidence) / 2, (1 + confidence) / 2]
    for start in range(0, r, step):
        sl = slice(start, min(r, start + step))
        n = sl.stop - sl.start
        drawn = [x[sl][:, i[:, :, None], it[:, None, :]].reshape(n * n_boot, x.shape[1], n_songs)
                 for x, i in zip(tables, iss, strict=True)]  # (n, B, S_g, T) -> (n B, S_g, T)
        m_star, v_star, _ = _two_way_var(drawn, signs)
        m_star, se_star = m_star.reshape(n, n_boot), np.sqrt(v_star).reshape(n, n_boot)
        num = m_star - mean[sl, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            t_star = np.where(se_star > 0, num / se_star, np.where(num == 0, 0.0, np.sign(num) * np.inf))
        q_lo, q_hi = np.quantile(t_star, qs, axis=1)
        lo[sl] = np.where(se[sl] > 0, mean[sl] - q_hi * se[sl], mean[sl])
        hi[sl] = np.where(se[sl] > 0, mean[sl] - q_lo * se[sl], mean[sl])
    return lo, hi


def _check(a, b, paired_seeds: bool, n_boot: int, confidence: float, method: str):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
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
    return a, b


def seed_song_bootstrap(
    a: Float[ArrayLike, "n_seeds_a n_songs"],
    b: Float[ArrayLike, "n_seeds_b n_songs"] | None = None,
    *,
    paired_seeds: bool = False,
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = 0,
    method: str = DEFAULT_METHOD,
) -> dict:
    """Mean of `a` (or of `a - b`) with a seed x song interval (two-way t by default).

    a, b: `(n_seeds, n_songs)` tables over the same songs (a 1-D table is one song). With `b`, the
    statistic is mean(a) - mean(b); the songs are shared by a and b. `paired_seeds=True`: row i
    of a and of b come from the same seed (e.g. two estimators of one model), so the interval is that of
    the one table a - b; otherwise (two models) each table's seeds are its own.
    method: "t" (default) the two-way random-effects t-interval (module docstring; deterministic, no
    resampling, `n_boot` and `seed` unused); "percentile" the two-way bootstrap's percentile interval
    (`n_boot` replicates drawn from `seed`), which undercovers with few songs; "bootstrap-t" the same
    draws studentised by each replicate's two-way standard error (covers about as well as "t", wider
    and ~n_boot times the work; kept for comparison).
    Returns {"mean", "lo", "hi", "n_seeds", "n_songs", "n_boot", "confidence", "method", "se", "df"};
    mean is the statistic on the full tables; for "t", se is the estimated standard error and df its
    Satterthwaite degrees of freedom; for "percentile", se is the replicates' standard deviation; for
    "bootstrap-t", the two-way standard error; df is None for both bootstraps. With one seed and one song (or tables without spread) lo = hi = mean.
    """
    a, b = _check(a, b, paired_seeds, n_boot, confidence, method)
    n_songs = a.shape[1]
    info = {
        "n_seeds": [int(a.shape[0])] + ([] if b is None or paired_seeds else [int(b.shape[0])]),
        "n_songs": int(n_songs),
        "n_boot": int(n_boot),
        "confidence": float(confidence),
        "method": method,
    }
    if b is None:
        tables, signs = [a], [1.0]
    elif paired_seeds:
        tables, signs = [a - b], [1.0]
    else:
        tables, signs = [a, b], [1.0, -1.0]
    if method == "bootstrap-t":
        batch = [t[None] for t in tables]
        lo, hi = _bootstrap_t_batch(batch, signs, n_boot, confidence, np.random.default_rng(seed))
        mean, var, _ = _two_way_var(batch, signs)
        return {"mean": float(mean[0]), "lo": float(lo[0]), "hi": float(hi[0]), **info,
                "se": float(np.sqrt(var[0])), "df": None}
    if method == "t":
        mean, half, se, df = _two_way_t([t[None] for t in tables], signs, confidence)
        m, h = float(mean[0]), float(half[0])
        dof = float(df[0])
        return {"mean": m, "lo": m - h, "hi": m + h, **info, "se": float(se[0]),
                "df": dof if np.isfinite(dof) else None}
    rng = np.random.default_rng(seed)
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
    return {"mean": float(mean), "lo": float(lo), "hi": float(hi), **info,
            "se": float(reps.std()), "df": None}


# ----------------------------------------------------------------------------------- coverage


def synthetic_tables(
    n_rep: int,
    n_seeds: int,
    n_songs: int,
    mix: str | tuple[float, float, float] = "balanced",
    *,
    design: str = "one",
    true_mean: float = 0.3,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """`n_rep` synthetic seed x song tables with known mean: `[x]` (design "one": x = true_mean + seed_i
    + song_j + noise_ij, (n_rep, n_seeds, n_songs)) or `[a, b]` (design "two": two models with seeds of
    their own and shared songs, mean(a) - mean(b) = true_mean in expectation; b's song effect is
    0.5 x a's plus an independent part of the same variance, so the song term does not cancel)."""
    sd_seed, sd_song, sd_noise = VARIANCE_MIXES[mix] if isinstance(mix, str) else mix
    skewed = mix == "skewed-song"

    def song_effects():
        if not skewed:
            return sd_song * rng.standard_normal((n_rep, 1, n_songs))
        s2 = 0.25  # lognormal sigma 0.5: skewness 1.75
        z = np.exp(0.5 * rng.standard_normal((n_rep, 1, n_songs))) - np.exp(s2 / 2)
        return sd_song * z / np.sqrt((np.exp(s2) - 1) * np.exp(s2))

    def table(mu, song):
        return (mu + sd_seed * rng.standard_normal((n_rep, n_seeds, 1)) + song
                + sd_noise * rng.standard_normal((n_rep, n_seeds, n_songs)))

    song_a = song_effects()
    if design == "one":
        return [table(true_mean, song_a)]
    if design != "two":
        raise ValueError(f"design must be 'one' or 'two', got {design!r}")
    song_b = 0.5 * song_a + np.sqrt(0.75) * song_effects()
    return [table(true_mean, song_a), table(0.0, song_b)]


def _percentile_batch(tables, signs, n_boot, confidence, rng, chunk=256):
    """Percentile intervals of the two-way bootstrap for a batch of `(R, S_g, T)` tables (the same
    multinomial counts for every problem of the batch: the problems are independent anyway)."""
    n_songs = tables[0].shape[-1]
    ct = _counts(rng, n_songs, n_boot)
    cs = [_counts(rng, x.shape[1], n_boot) for x in tables]
    r = tables[0].shape[0]
    lo, hi = np.empty(r), np.empty(r)
    qs = [(1 - confidence) / 2, (1 + confidence) / 2]
    for start in range(0, r, chunk):
        sl = slice(start, start + chunk)
        reps = 0.0
        for sg, x, c in zip(signs, tables, cs, strict=True):
            s = x.shape[1]
            reps = reps + sg * np.einsum("bs,rsb->rb", c, x[sl] @ ct.T) / (s * n_songs)
        lo[sl], hi[sl] = np.quantile(reps, qs, axis=1)
    return lo, hi


def interval_coverage(
    method: str = DEFAULT_METHOD,
    *,
    n_seeds: int = 10,
    n_songs: int = 30,
    mix: str | tuple[float, float, float] = "balanced",
    design: str = "one",
    n_rep: int = 4000,
    n_boot: int = 1000,
    confidence: float = CONFIDENCE,
    true_mean: float = 0.3,
    seed: int = 0,
) -> dict:
    """Monte-Carlo coverage of `seed_song_bootstrap`'s interval (same arithmetic, vectorised over
    `n_rep` synthetic tables from `synthetic_tables`) at a known mean.

    Returns {"method", "n_seeds", "n_songs", "mix", "design", "n_rep", "coverage", "mc_se" (binomial
    standard error of the coverage), "miss_lo" / "miss_hi" (fraction with the truth below lo / above
    hi), "mean_width", "true_sd" (sd of the statistic over the replicates), "confidence"}.
    Deterministic given `seed`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    rng = np.random.default_rng(seed)
    tables = synthetic_tables(n_rep, n_seeds, n_songs, mix, design=design, true_mean=true_mean, rng=rng)
    signs = [1.0, -1.0][: len(tables)]
    mean = sum(sg * x.mean(axis=(1, 2)) for sg, x in zip(signs, tables, strict=True))
    if method == "t":
        _, half, _, _ = _two_way_t(tables, signs, confidence)
        lo, hi = mean - half, mean + half
    elif method == "bootstrap-t":
        lo, hi = _bootstrap_t_batch(tables, signs, n_boot, confidence, rng)
    else:
        lo, hi = _percentile_batch(tables, signs, n_boot, confidence, rng)
    cover = (lo <= true_mean) & (true_mean <= hi)
    p = float(cover.mean())
    return {
        "method": method, "n_seeds": n_seeds, "n_songs": n_songs,
        "mix": mix if isinstance(mix, str) else str(tuple(mix)), "design": design, "n_rep": n_rep,
        "coverage": p, "mc_se": float(np.sqrt(p * (1 - p) / n_rep)),
        "miss_lo": float(np.mean(true_mean < lo)), "miss_hi": float(np.mean(true_mean > hi)),
        "mean_width": float(np.mean(hi - lo)), "true_sd": float(mean.std()),
        "confidence": float(confidence),
    }


def sign(interval: dict) -> int:
    """+1 when the interval lies above 0, -1 below 0, 0 when it includes 0."""
    if interval["lo"] > 0:
        return 1
    if interval["hi"] < 0:
        return -1
    return 0


def seed_interval(
    values: ArrayLike, *, axis: int = 0, confidence: float = 0.95
) -> dict[str, np.ndarray | float | int]:
    """Mean, sample std (ddof=1) and a two-sided Student-t confidence interval over `axis` (seeds).

    Returns {"mean", "std", "lo", "hi", "n"}: lo/hi = mean ∓ t_{(1+confidence)/2, n-1} · std / √n.
    With n = 1 there is no spread estimate: std = 0.0 and lo = hi = mean. Python floats for 1-D
    input, arrays of the remaining axes otherwise.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 0:
        raise ValueError("values must have at least one axis (the seeds), got a scalar")
    n = v.shape[axis]
    if n == 0:
        raise ValueError(f"no values along axis {axis} (shape {v.shape}): nothing to summarise")
    mean = v.mean(axis=axis)
    if n == 1:
        std = np.zeros_like(mean)
        half = np.zeros_like(mean)
    else:
        std = v.std(axis=axis, ddof=1)
        half = scipy.stats.t.ppf((1.0 + confidence) / 2.0, df=n - 1) * std / math.sqrt(n)

    def out(a):
        return float(a) if np.ndim(a) == 0 else a

    return {
        "mean": out(mean),
        "std": out(std),
        "lo": out(mean - half),
        "hi": out(mean + half),
        "n": n,
    }
