"""The mapping-function stage: fit every estimator to every trained separator, judge it on unseen songs.

Protocol (`config.MappingConfig`): each matrix C is fitted on `n_fit_frames` frames (default
`config.fit_frames_for(N)`: 4 N rounded up, fast 1024, mid 2304, paper 8448) pooled over the
songs of the *training* split, and judged on `heldout_frames_per_song` frames of each *test* song,
songs that neither the separator nor the fit has seen. Every number is kept per trained seed and per
test song, which is what the seed x song bootstrap of `ncajax.results` resamples. Every model (all its
seeds at once, one vmapped program per iterative setting, each fit with its own initialisation key; the
mean Jacobian seed by seed, `jacobian_chunk` frames at a time) gets:

- per setting: C, the relative L1 error on the fitted frames, on every held-out song (raw x C^T and
  clipped at 0), convergence of iterative fits, and the structure metrics of C per seed and song (the
  weighted metrics weight input bins by that song's mean input power);
- two baselines on the same frames: the zero predictor (error 1 by definition) and the best per-bin
  gain (the better on the fit frames, by L1, of the least-squares and the L1-optimal diagonal), against
  which a mapping must be clearly better on held-out songs before it says anything about couplings;
- functional diagonality per seed and song (`record["functional"]`, `analysis.functional_diagonality`):
  the held-out error of C, of diag(C), of its band part and of silence, and the share of C's advantage
  that the diagonal / the band keeps; structure restricted to live output rows and the voice band;
- the dead units of each seed and, for `linearity_seeds` seeds, how far one matrix can stand for the
  model (the spread and structure of the per-frame Jacobians);
- with `control_steps` (the under-convergence control), for each NCA setting of
  `config.CONTROL_SETTINGS`: one fit per seed to the largest step count with C kept at every step count
  (0: P frozen at its initialisation), each snapshot recorded like a pooled fit (kind "control", setting
  `<setting>@<steps>`, `record["control"]` naming the setting and step count).

Writes into its run directory: config.json, meta.json, metrics.jsonl (one line per finished fit, which
lets an interrupted stage resume), matrices/<model>__<setting>.npz, control/<model>__<setting>.npz (the
control's snapshots), frames.npz and result.json.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float
from tqdm.auto import tqdm

from .. import runs
from .._estimators import NCA, Estimator, MeanJacobian
from ..config import (
    CONTROL_SETTINGS,
    DIAGONAL_BAND_HZ,
    JACOBIAN_BLOCK_BYTES,
    JACOBIAN_CPU_BLOCK_BYTES,
    VOICE_BAND_HZ,
    MappingConfig,
    STFTConfig,
    fit_frames_for,
    jacobian_chunk_for,
    to_dict,
)
from ..models import predict
from . import _couplings as nca
from . import _structure as analysis

__all__ = ["MappingConfig", "Separator", "per_bin_gain", "per_bin_gain_l1", "best_per_bin_gain", "check_fit_set",
           "jacobian_chunk", "run_stage", "select_frames", "linearity"]

BASELINES = ("zero", "per_bin_gain")


@dataclass
class Separator:
    """A model to map: a flax module (or any callable, params=None) and its params with a seed axis."""

    model: Any
    params: Any  # leading seed axis (S, ...), or None for a callable
    n_seeds: int
    relu_stack: bool = True  # dead-unit shares assume a ReLU Dense stack; False skips them

    def __post_init__(self):
        if self.n_seeds < 1:
            raise ValueError(f"n_seeds must be >= 1, got {self.n_seeds}")
        if self.params is None and self.n_seeds != 1:
            raise ValueError("a bare callable (params=None) is one model: use n_seeds=1")
        if self.params is not None:
            axes = {np.shape(a)[0] if np.ndim(a) else None for a in jax.tree.leaves(self.params)}
            if axes != {self.n_seeds}:
                raise ValueError(
                    f"params must carry a leading seed axis of n_seeds={self.n_seeds} on every leaf, "
                    f"found leading sizes {sorted(axes, key=str)}: stack the seeds' params first"
                )

    def seed_params(self, s: int):
        return None if self.params is None else jax.tree.map(lambda a: a[s], self.params)

    def apply(self, s: int):
        if self.params is None:
            return lambda x: self.model(x)
        p = self.seed_params(s)
        return lambda x: self.model.apply(p, x)

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Model output per seed: `(S, nb_frames, nb_bins)` (compiled once per model and shape)."""
        if self.params is None:
            return np.asarray(jax.jit(self.model)(x))[None]
        return np.stack([predict(self.model, self.seed_params(s), x) for s in range(self.n_seeds)])


def per_bin_gain(
    x: Float[ArrayLike, "*k nb_frames nb_bins"], y: Float[ArrayLike, "*k nb_frames nb_bins"]
) -> Float[Array, "*k nb_bins"]:
    """The best per-bin gain g (least squares y_ti ≈ g_i x_ti): g_i = Σ_t x_ti y_ti / Σ_t x_ti².

    The diagonal matrix diag(g) is the baseline every mapping must beat on held-out songs: it is the
    best a pure per-bin filter (no inter-frequency coupling) does on the fitted frames. A bin whose
    input is silent on every frame gets gain 0.
    """
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    if x.shape != y.shape or x.ndim < 2:
        raise ValueError(f"x and y must be frames of one shape (nb_frames, nb_bins), got {x.shape}, {y.shape}")
    num, den = jnp.sum(x * y, axis=-2), jnp.sum(x * x, axis=-2)
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def per_bin_gain_l1(x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """The L1-optimal per-bin gain: per bin i, g_i minimises Σ_t |y_ti - g_i x_ti| exactly. For x >= 0
    that sum is Σ_t x_ti |y_ti / x_ti - g_i| (+ the frames with x_ti = 0, which do not depend on g), so
    g_i is the weighted median of y_ti / x_ti with weights x_ti (the smallest ratio whose cumulative
    weight reaches half the total). Frames `(*k, F, N)`, x >= 0; NumPy, `(*k, N)`. A bin whose input is
    silent on every frame gets gain 0."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim < 2:
        raise ValueError(f"x and y must be frames of one shape (nb_frames, nb_bins), got {x.shape}, {y.shape}")
    if np.any(x < 0):
        raise ValueError("per_bin_gain_l1 needs non-negative inputs x (magnitudes)")
    live = x > 0
    ratio = np.where(live, y / np.where(live, x, 1.0), np.inf)  # silent frames sort last, weight 0
    order = np.argsort(ratio, axis=-2, kind="stable")
    r = np.take_along_axis(ratio, order, axis=-2)
    w = np.take_along_axis(np.where(live, x, 0.0), order, axis=-2)
    cum = np.cumsum(w, axis=-2)
    total = cum[..., -1:, :]
    first = np.argmax(cum >= 0.5 * total, axis=-2)[..., None, :]
    g = np.take_along_axis(r, first, axis=-2)[..., 0, :]
    return np.where(total[..., 0, :] > 0, g, 0.0)


def best_per_bin_gain(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, list[str]]:
    """Per fit (leading axis of y `(S, F, N)`), the better on the fit frames by relative L1 (predictions
    clipped at 0) of the least-squares and the L1-optimal per-bin gain: `(S, N)` and the choice per fit."""
    y = np.asarray(y, np.float64)
    xb = np.broadcast_to(np.asarray(x, np.float64), y.shape)
    gains = {"least_squares": np.asarray(per_bin_gain(xb, y), np.float64), "l1": per_bin_gain_l1(xb, y)}
    errs = {k: analysis._rel_l1_np(y, np.maximum(xb * g[:, None, :], 0.0)) for k, g in gains.items()}
    pick = errs["l1"] <= errs["least_squares"]
    gain = np.where(pick[:, None], gains["l1"], gains["least_squares"])
    return gain, ["l1" if p else "least_squares" for p in pick]


def select_frames(train_cache, test_cache, cfg: MappingConfig) -> dict:
    """Fit frames pooled over the training songs and held-out frames per test song (a pure function
    of cfg.seed). Frames are drawn without replacement (all of them when a split has fewer).

    Returns {"fit": (F, N), "fit_songs": names of the songs the fit frames come from,
    "heldout": [(F_t, N) per test song], "heldout_songs": names, "heldout_vocals": the same frames of the
    vocals (target) per song, or None when the cache has no vocals}.
    """
    rng = np.random.default_rng([cfg.seed, 7])
    n = int(train_cache.offsets[-1])
    if n < 2:
        raise ValueError("the training split has fewer than 2 frames: nothing to fit a mapping on")
    n_fit = cfg.n_fit_frames or fit_frames_for(np.shape(train_cache.mixture)[-1])
    idx = np.sort(rng.choice(n, size=min(n_fit, n), replace=False))
    song_of = np.searchsorted(train_cache.offsets, idx, side="right") - 1
    heldout, names, heldout_vocals = [], [], []
    vocals = getattr(test_cache, "vocals", None)
    for i, name in enumerate(test_cache.track_names):
        a, b = int(test_cache.offsets[i]), int(test_cache.offsets[i + 1])
        if b - a < 1:
            continue
        rows = np.sort(rng.choice(np.arange(a, b), size=min(cfg.heldout_frames_per_song, b - a), replace=False))
        heldout.append(np.asarray(test_cache.mixture[rows], np.float32))
        if vocals is not None:
            heldout_vocals.append(np.asarray(vocals[rows], np.float32))
        names.append(name)
    if not heldout:
        raise ValueError("the test split has no frames: the mapping needs held-out songs to be judged on")
    return {
        "fit": np.asarray(train_cache.mixture[idx], np.float32),
        "fit_songs": [train_cache.track_names[i] for i in np.unique(song_of)],
        "heldout": heldout,
        "heldout_songs": names,
        "heldout_vocals": heldout_vocals if vocals is not None else None,
    }


def _fit(sep: Separator, setting: Estimator, x: np.ndarray, target: np.ndarray, seeds: list[int],
         chunk: int | None = None) -> nca.MappingFit:
    """S fits in one call: x and target `(S, nb_frames, nb_bins)`, fit s on seed s's params (iterative
    fits vmapped; the mean Jacobian seed by seed, `chunk` frames at a time, whatever the setting's own
    chunk_size: the stage picks it for its machine)."""
    if isinstance(setting, MeanJacobian):
        setting = dataclasses.replace(setting, chunk_size=chunk or jacobian_chunk(None, np.shape(x)[-1]))
    if sep.params is None:
        x1 = x if np.ndim(x) == 2 else x[0]  # the stage passes the shared (F, N) fit frames
        return nca.fit_mapping(sep.model, None, x1, setting, target=target[0], seed=seeds[0])
    frames = np.broadcast_to(x, target.shape)
    return nca.fit_mapping(sep.model, sep.params, np.ascontiguousarray(frames), setting, target=target,
                           seed=seeds, params_axis=0)


def jacobian_chunk(cfg: MappingConfig | None, n_bins: int) -> int:
    """Frames of per-frame Jacobians the stage forms at a time: cfg.jacobian_chunk when set, else the
    automatic chunk for this machine (`config.jacobian_chunk_for`: a JACOBIAN_BLOCK_BYTES block on an
    accelerator, JACOBIAN_CPU_BLOCK_BYTES on a CPU, where smaller blocks run faster)."""
    if cfg is not None and cfg.jacobian_chunk is not None:
        return cfg.jacobian_chunk
    budget = JACOBIAN_CPU_BLOCK_BYTES if jax.default_backend() == "cpu" else JACOBIAN_BLOCK_BYTES
    return jacobian_chunk_for(n_bins, budget=budget)


def _as_seeds(values, n: int) -> list:
    if values is None:
        return [None] * n
    arr = np.atleast_1d(np.asarray(values))
    return arr.tolist() if arr.size == n else [arr.item()] * n


class _Held:
    """The held-out songs of one model: frames, teacher outputs per seed, input energy."""

    def __init__(self, sep: Separator, frames: list[np.ndarray], vocals: list[np.ndarray] | None = None,
                 live_rows: np.ndarray | None = None, band_hz: float = DIAGONAL_BAND_HZ):
        self.frames = frames
        self.outputs = [sep.outputs(x) for x in frames]  # (S, F_t, N) per song
        self.energy = [np.asarray(analysis.mean_input_energy(x)) for x in frames]
        self.vocal_energy = None if vocals is None else [np.mean(np.asarray(v, np.float64) ** 2, axis=0)
                                                         for v in vocals]
        self.live_rows = live_rows  # (S, N): teacher output nonzero on some fit frame
        self.band_hz = band_hz

    def subset(self, n_seeds: int) -> _Held:
        """The same songs with the teacher outputs (and live rows) of the first `n_seeds` seeds only."""
        out = object.__new__(_Held)
        out.__dict__.update(self.__dict__)
        out.outputs = [y[:n_seeds] for y in self.outputs]
        out.live_rows = None if self.live_rows is None else self.live_rows[:n_seeds]
        return out

    def functional(self, matrices: np.ndarray, freqs: np.ndarray) -> dict[str, list]:
        """`analysis.functional_diagonality` per seed and song: `{name: (S, T)}`, NaN stored as None."""
        per_song = [analysis.functional_diagonality(matrices, x, y, freqs, self.band_hz)
                    for x, y in zip(self.frames, self.outputs, strict=True)]
        return {name: _json_table(np.stack([np.asarray(m[name]) for m in per_song], axis=1))
                for name in per_song[0]}

    def restricted(self, matrices: np.ndarray, stft: STFTConfig, freqs: np.ndarray) -> dict[str, list]:
        """`analysis.restricted_structure` per seed and song (live rows per seed, voice band, energy
        weights from each song's mixture and, when known, vocals power): `{name: (S, T)}`."""
        band = analysis.voice_band(freqs, sample_rate=stft.sample_rate, lo_hz=VOICE_BAND_HZ[0],
                                   hi_hz=VOICE_BAND_HZ[1])
        rows = []
        for s, c in enumerate(matrices):
            live = np.ones(len(freqs), bool) if self.live_rows is None else self.live_rows[s]
            per_song = []
            for t, e in enumerate(self.energy):
                energies = {"mixture": e}
                if self.vocal_energy is not None:
                    energies["vocals"] = self.vocal_energy[t]
                per_song.append(analysis.restricted_structure(c, live_rows=live, band=band, freqs=freqs,
                                                              band_hz=self.band_hz, energies=energies))
            rows.append(per_song)
        return {name: [[song[name] for song in seed] for seed in rows] for name in rows[0][0]}

    def errors(self, predict_song) -> tuple[np.ndarray, np.ndarray]:
        """Relative L1 error `(S, T)` raw and with predictions clipped at 0, for predict_song(t, x)
        -> `(S, F_t, N)`."""
        raw, clipped = [], []
        for t, (x, y) in enumerate(zip(self.frames, self.outputs, strict=True)):
            y_hat = np.broadcast_to(np.asarray(predict_song(t, x)), y.shape)
            raw.append(np.asarray(nca.relative_l1(y, y_hat)))
            clipped.append(np.asarray(nca.relative_l1(y, np.maximum(y_hat, 0.0))))
        return np.stack(raw, axis=1), np.stack(clipped, axis=1)

    def structure(self, matrices: np.ndarray, stft: STFTConfig, k: int) -> dict[str, list]:
        """Structure metrics `{name: (S, T)}` of the S matrices, weighted metrics by each song's energy."""
        per_song = [
            analysis.structure_metrics(jnp.asarray(matrices), input_energy=jnp.asarray(e),
                                       sample_rate=stft.sample_rate, n_fft=stft.n_fft, k=k)
            for e in self.energy
        ]
        return {name: np.stack([np.asarray(m[name]) for m in per_song], axis=1).tolist()
                for name in per_song[0]}


def _json_table(a: np.ndarray) -> list:
    """A float table as nested lists with NaN as None (JSON has no NaN; NumPy reads None back as NaN)."""
    a = np.asarray(a, np.float64)
    return np.where(np.isnan(a), None, a).tolist()


_FRAME_METRICS = ("diagonal_energy_ratio", "weighted_diagonal_energy_ratio", "near_diagonal_energy",
                  "mean_coupling_distance")
_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def linearity(sep: Separator, x: np.ndarray, cfg: MappingConfig, s: int = 0, *,
              stft: STFTConfig | None = None) -> dict:
    """How well one matrix describes seed `s` of a model on frames x.

    Quantiles over frames of the structure metrics of the per-frame Jacobians J(x_t), leaving out the
    frames whose Jacobian is all zero (every unit shut: the model outputs a constant there, and a zero
    matrix would score as perfectly diagonal and local); the relative L1 error of the per-frame linear
    maps J(x_t) x_t (via a Jacobian-vector product) against that of the mean Jacobian; and the local
    spread sqrt(mean ||J_t - Jbar||^2) / ||Jbar||. The near-diagonal band is `cfg.near_band_bins(stft)`
    (without `stft`: cfg.band_k, else `analysis.DEFAULT_K`); the Jacobians are formed
    `jacobian_chunk(cfg, N)` frames at a time.
    """
    energy = analysis.mean_input_energy(jnp.asarray(x))
    if stft is not None:
        k = cfg.near_band_bins(stft)
    else:
        k = cfg.band_k if cfg.band_k is not None else analysis.DEFAULT_K
    chunk = jacobian_chunk(cfg, np.shape(x)[-1])
    params = sep.seed_params(s)
    per_frame = nca.jacobian_stream(sep.model, params, x, fn=_frame_metrics_fn(energy, k), chunk_size=chunk)
    live = np.asarray(per_frame.pop("frobenius_norm")) > 0
    f = sep.apply(s)
    y = np.asarray(jax.jit(f)(x))
    # frame-wise f: the JVP of the batch with tangent x is J(x_t) x_t for every frame t
    jx = np.asarray(jax.jit(lambda v: jax.jvp(f, (v,), (v,))[1])(x))
    mean_fit = nca.fit_mapping(sep.model, params, x, MeanJacobian(chunk_size=chunk))
    values = {name: np.asarray(v)[live] for name, v in per_frame.items()}
    return {
        "frame_metric_quantiles": {
            name: (np.asarray(analysis.quantiles(v, _QUANTILES)).tolist() if v.size else None)
            for name, v in values.items()
        },
        "quantile_levels": list(_QUANTILES),
        "frame_metric_values": {name: v.tolist() for name, v in values.items()},
        "zero_jacobian_frames": int((~live).sum()),
        "n_frames": int(live.size),
        "rel_l1_per_frame_linear": float(nca.relative_l1(y, jx)),
        "rel_l1_mean_jacobian": float(mean_fit.rel_l1_error),
        "local_spread": float(mean_fit.local_spread),
    }


def _frame_metrics_fn(energy, k: int):
    """The per-frame metric function of (energy, k), one function object per value of them (so
    `nca.jacobian_stream`, whose `fn` is a static argument, reuses its compiled program)."""
    energy = np.asarray(energy)
    return _frame_metrics_for(energy.tobytes(), energy.dtype.str, energy.shape, k)


@functools.cache
def _frame_metrics_for(energy_bytes: bytes, dtype: str, shape: tuple, k: int):
    energy = jnp.asarray(np.frombuffer(energy_bytes, dtype).reshape(shape))

    def frame_metrics(j):
        full = analysis.structure_metrics(j, input_energy=energy, k=k)
        out = {name: full[name] for name in _FRAME_METRICS}
        out["frobenius_norm"] = jnp.linalg.norm(j)
        return out

    return frame_metrics


def run_stage(
    separators: dict[str, Separator],
    train_cache,
    test_cache,
    stft: STFTConfig,
    out_dir: str | Path,
    cfg: MappingConfig = MappingConfig(),
    *,
    provenance: dict | None = None,
    progress: bool = True,
    band_hz: float = DIAGONAL_BAND_HZ,
) -> dict:
    """Fit every setting of `cfg` to every separator on training-song frames, judge every fit on the
    test songs; write and return the stage's results. `band_hz`: half-width (Hz) of the band part of
    every matrix in the functional-diagonality tables (`analysis.functional_diagonality`).

    Every matmul runs at full float32 precision (on GPUs the default would be TF32), so targets,
    fits and metrics agree with `nca.fit_mapping` run on its own.

    `cfg` is first resolved against the STFT's N (`MappingConfig.resolved`: the default fit set; a fit
    set with fewer frames than bins or an explicit Jacobian chunk that cannot fit in memory is refused
    here, as is a training split with fewer frames than bins), before any fit. The mean Jacobian is
    formed seed by seed, `jacobian_chunk(cfg, N)` frames at a time."""
    cfg = cfg.resolved(stft)
    check_fit_set(int(train_cache.offsets[-1]), stft)
    with jax.default_matmul_precision("highest"):
        return _run_stage(separators, train_cache, test_cache, stft, Path(out_dir), cfg, provenance,
                          progress, float(band_hz))


def _run_stage(separators, train_cache, test_cache, stft, out_dir, cfg, provenance, progress, band_hz) -> dict:
    config = {"mapping": cfg.to_json(), "stft": to_dict(stft), "models": sorted(separators),
              "inputs": provenance or {},
              "functional": {"band_hz": band_hz, "voice_band_hz": list(VOICE_BAND_HZ)}}
    if (done := runs.finished_result(out_dir, config)) is not None:
        return done
    runs.open_run(out_dir, config)
    (out_dir / "matrices").mkdir(exist_ok=True)
    frames = select_frames(train_cache, test_cache, cfg)
    freqs = analysis.bin_frequencies(stft.n_bins, sample_rate=stft.sample_rate, n_fft=stft.n_fft)
    np.savez(out_dir / "frames.npz", fit_input_energy=np.asarray(analysis.mean_input_energy(frames["fit"])),
             heldout_input_energy=np.stack([np.asarray(analysis.mean_input_energy(x)) for x in frames["heldout"]]),
             frequencies=freqs,
             fit_songs=np.array(frames["fit_songs"]), heldout_songs=np.array(frames["heldout_songs"]))

    records: list[dict] = runs.read_metrics(out_dir)  # fits finished before an interruption
    done_keys = {(r["model"], r["setting"], r["kind"]) for r in records}
    jobs = list(_jobs(separators, cfg))
    bar = tqdm(total=len(jobs), initial=sum(_job_done(job, done_keys, cfg) for job in jobs),
               disable=not progress, desc="fit mappings", unit="fit", dynamic_ncols=True)
    context: dict[str, tuple] = {}
    for model_name, setting_name, kind in jobs:
        if _job_done((model_name, setting_name, kind), done_keys, cfg):
            continue
        bar.set_postfix_str(f"{model_name} {setting_name}")
        sep = separators[model_name]
        if model_name not in context:  # teacher outputs once per model
            fit_out = sep.outputs(frames["fit"])
            context = {model_name: (fit_out, _Held(sep, frames["heldout"], frames["heldout_vocals"],
                                                   np.any(fit_out != 0, axis=1), band_hz))}
        target, held = context[model_name]
        t0 = time.perf_counter()
        path = out_dir / "matrices" / f"{model_name}__{setting_name}.npz"
        if kind == "not_applicable":
            record = {"method": "nca", "not_applicable": (
                "NCA builds its matrix from the model's dense layers; a bare callable has none "
                "(params=None). student, lstsq and jacobian map any callable.")}
        elif kind == "baseline":
            record = _baseline(setting_name, frames["fit"], target, held, path)
        elif kind == "pooled":
            setting = next(s for s in cfg.settings if s.name == setting_name)
            record = _pooled(sep, setting, frames["fit"], target, held, stft, cfg, path, freqs)
        elif kind == "control":  # one fit, one record per step count (those not recorded before)
            setting = next(s for s in cfg.settings if s.name == setting_name)
            control = _control(sep, setting, frames["fit"], target, held, stft, cfg,
                               out_dir / "control" / f"{model_name}__{setting_name}.npz", freqs)
            wall = (time.perf_counter() - t0) / len(control)
            for name, record in control.items():
                if (model_name, name, kind) not in done_keys:
                    record.update(model=model_name, setting=name, kind=kind, wall_s=wall)
                    runs.append_metrics(out_dir, record)
                    records.append(record)
            bar.update(1)
            continue
        else:
            record = _model_facts(sep, frames["fit"], cfg, stft)
        record.update(model=model_name, setting=setting_name, kind=kind, wall_s=time.perf_counter() - t0)
        runs.append_metrics(out_dir, record)
        records.append(record)
        bar.update(1)
    bar.close()
    result = {"records": records, "fit_songs": frames["fit_songs"], "heldout_songs": frames["heldout_songs"],
              "n_fit_frames": int(len(frames["fit"])),
              "heldout_frames": [int(len(x)) for x in frames["heldout"]],
              "wall_s": sum(r["wall_s"] for r in records)}
    runs.finish(out_dir, result)
    return result


def check_fit_set(n_train_frames: int, stft: STFTConfig) -> None:
    """Refuse a training split with fewer frames than the STFT has bins: every N x N mapping fitted on
    it would be underdetermined, whatever n_fit_frames asks for."""
    if n_train_frames < stft.n_bins:
        raise ValueError(
            f"the training split has {n_train_frames} frames, fewer than the N = {stft.n_bins} frequency "
            f"bins: every mapping fitted on it would be underdetermined; use longer or more training songs "
            f"(e.g. --corpus-seconds / --corpus-tracks) for at least {stft.n_bins} frames, "
            f"{4 * stft.n_bins} or more to be well posed"
        )


def _jobs(separators: dict[str, Separator], cfg: MappingConfig):
    """(model, setting, kind) of every job of the stage, in order. NCA needs the layer weights: a bare
    callable gets one "not_applicable" record instead of its NCA fits (and no convergence control)."""
    for name, sep in separators.items():
        for b in BASELINES:
            yield name, b, "baseline"
        for s in cfg.settings:
            yield name, s.name, "not_applicable" if isinstance(s, NCA) and sep.params is None else "pooled"
        if sep.params is not None:
            for s in _control_settings(cfg):
                yield name, s.name, "control"
        yield name, "-", "model"


def control_name(setting: str, steps: int) -> str:
    """The setting name of a convergence-control record: `<setting>@<steps>`, e.g. nca_authors@600."""
    return f"{setting}@{steps}"


def _control_settings(cfg: MappingConfig) -> list[NCA]:
    """The settings of the under-convergence control: the NCA settings named in CONTROL_SETTINGS
    (none when cfg.control_steps is empty)."""
    if not cfg.control_steps:
        return []
    return [s for s in cfg.settings if s.name in CONTROL_SETTINGS and isinstance(s, NCA)]


def _job_done(job: tuple[str, str, str], done_keys: set, cfg: MappingConfig) -> bool:
    """Whether a job's records were all written before (a control job has one per step count)."""
    model, setting, kind = job
    if kind == "control":
        return all((model, control_name(setting, n), kind) in done_keys for n in cfg.control_steps)
    return job in done_keys


def _baseline(name: str, x: np.ndarray, target: np.ndarray, held: _Held, path: Path) -> dict:
    s_count = target.shape[0]
    if name == "zero":
        raw, clipped = held.errors(lambda t, xt: np.zeros_like(xt))
        return {"method": "zero", "rel_l1_fit": [1.0] * s_count, "rel_l1_heldout": raw.tolist(),
                "rel_l1_heldout_clipped": clipped.tolist()}
    # the better (fit frames, L1, clipped) of the least-squares and the L1-optimal gain, per seed
    gain, choice = best_per_bin_gain(x, target)  # (S, N)
    gain = gain.astype(np.float32)
    np.savez(path, gain=gain)
    raw, clipped = held.errors(lambda t, xt: xt[None] * gain[:, None, :])
    fit_err = np.asarray(nca.relative_l1(target, np.maximum(x[None] * gain[:, None, :], 0.0)))
    return {"method": "per_bin_gain", "gain_choice": choice, "rel_l1_fit": fit_err.tolist(),
            "rel_l1_heldout": raw.tolist(), "rel_l1_heldout_clipped": clipped.tolist()}


def _pooled(sep, setting, x, target, held: _Held, stft, cfg, path, freqs) -> dict:
    s_count = target.shape[0]
    seeds = [cfg.seed + s for s in range(s_count)]  # its own initialisation key for every fit
    if isinstance(setting, MeanJacobian):
        n = min(cfg.jacobian_frames, len(x))
        fit = _fit(sep, setting, x[:n], target[:, :n], seeds, jacobian_chunk(cfg, x.shape[-1]))
    else:
        fit = _fit(sep, setting, x, target, seeds)
    matrix = np.asarray(fit.matrix).reshape(s_count, *np.shape(fit.matrix)[-2:])
    raw, clipped = held.errors(lambda t, xt: np.asarray(nca.apply_matrix(matrix, xt)))
    arrays = {"matrix": matrix.astype(np.float32)}
    losses = getattr(fit, "losses", None)  # iterative fits only
    if losses is not None:
        arrays["losses"] = np.asarray(losses, np.float32).reshape(s_count, -1)
    parts = {name: np.asarray(p).reshape(s_count, *np.shape(p)[-2:])
             for name, p in getattr(fit, "parts", {}).items()}
    arrays.update({f"part_{name}": p.astype(np.float32) for name, p in parts.items()})
    np.savez(path, **arrays)
    record = {
        "method": setting.method, "settings": setting.setting_dict(),
        "fit_seeds": seeds if setting.method in ("nca", "student") else None,
        "rel_l1_fit": _as_seeds(fit.rel_l1_error, s_count),
        "rel_l1_heldout": raw.tolist(),
        "rel_l1_heldout_clipped": clipped.tolist(),
        "converged": _as_seeds(getattr(fit, "converged", None), s_count),
        "final_loss": _as_seeds(None if losses is None else np.asarray(losses)[..., -1], s_count),
        "local_spread": _as_seeds(getattr(fit, "local_spread", None), s_count),
        "metrics": {**held.structure(matrix, stft, cfg.near_band_bins(stft)),
                    **held.restricted(matrix, stft, freqs)},
        "functional": held.functional(matrix, freqs),
    }
    if parts:
        record["part_metrics"] = {name: held.structure(p, stft, cfg.near_band_bins(stft))
                                  for name, p in parts.items()}
    return record


def _control(sep, setting: NCA, x, target, held: _Held, stft, cfg, path: Path, freqs) -> dict[str, dict]:
    """The under-convergence control of one NCA setting: per seed one fit of max(cfg.control_steps) Adam
    steps (same frames, target, learning rate and initialisation keys as the pooled fit), C kept after
    each step count of cfg.control_steps (0: P frozen at its initialisation; the snapshot at the
    setting's own step count is its pooled matrix, see `NCA(snapshots=...)`).

    Returns {`control_name(setting, n)`: record} with the tables of a pooled record (held-out errors,
    structure and functional diagonality per seed and song) and the fit error on the fit frames; writes
    the snapshots `(S, n_steps, N, N)`, the step counts, the per-seed fit errors and the loss curves to
    `path`."""
    s_count = min(target.shape[0], cfg.control_seeds or target.shape[0])
    target = target[:s_count]
    if s_count < held.outputs[0].shape[0]:
        held = held.subset(s_count)
    params = jax.tree_util.tree_map(lambda a: a[:s_count], sep.params)
    seeds = [cfg.seed + s for s in range(s_count)]
    steps = tuple(cfg.control_steps)
    estimator = dataclasses.replace(setting, steps=steps[-1], snapshots=steps)
    frames = np.ascontiguousarray(np.broadcast_to(x, target.shape))
    fit = nca.fit_mapping(sep.model, params, frames, estimator, target=target, seed=seeds, params_axis=0)
    n_bins = np.shape(fit.matrix)[-1]
    snaps = np.asarray(fit.snapshot_matrices).reshape(s_count, len(steps), n_bins, n_bins)
    fit_err = np.asarray(fit.snapshot_rel_l1, np.float64).reshape(s_count, len(steps))
    losses = np.asarray(fit.losses, np.float64).reshape(s_count, -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, matrix=snaps.astype(np.float32), steps=np.asarray(steps), rel_l1_fit=fit_err,
             losses=losses.astype(np.float32))
    out = {}
    for i, n in enumerate(steps):
        matrix = snaps[:, i]
        raw, clipped = held.errors(lambda t, xt, c=matrix: np.asarray(nca.apply_matrix(c, xt)))
        converged = nca._converged(losses[:, :n]) if n > 0 else None
        out[control_name(setting.name, n)] = {
            "method": "nca", "settings": setting.setting_dict(),
            "control": {"setting": setting.name, "steps": int(n), "fit_steps": int(steps[-1]),
                        "learning_rate": float(setting.learning_rate)},
            "fit_seeds": seeds,
            "rel_l1_fit": fit_err[:, i].tolist(),
            "rel_l1_heldout": raw.tolist(),
            "rel_l1_heldout_clipped": clipped.tolist(),
            "converged": _as_seeds(converged, s_count),
            "metrics": {**held.structure(matrix, stft, cfg.near_band_bins(stft)),
                        **held.restricted(matrix, stft, freqs)},
            "functional": held.functional(matrix, freqs),
        }
    return out


def _model_facts(sep: Separator, x: np.ndarray, cfg: MappingConfig, stft: STFTConfig | None = None) -> dict:
    out: dict[str, Any] = {}
    if sep.params is not None and sep.relu_stack:
        try:
            out["dead_units"] = [
                {k: float(v) for k, v in analysis.dead_unit_share(sep.model, sep.seed_params(s), x).items()}
                for s in range(sep.n_seeds)
            ]
        except ValueError as err:  # not a stack of dense layers
            out["dead_units_error"] = str(err)
    xs = x[: cfg.linearity_frames]
    out["linearity"] = [linearity(sep, xs, cfg, s, stft=stft)
                        for s in range(min(cfg.linearity_seeds, sep.n_seeds))]
    return out
