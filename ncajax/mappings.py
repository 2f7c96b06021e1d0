"""The mapping-function stage: fit every estimator to every trained separator and measure the result.

For each model (all its trained seeds at once, one vmapped program per setting) and each `FitSetting`:
the matrix C on the pooled frames of the *fit* test tracks, its fidelity there and on the *held-out* test
tracks the fit never saw, convergence of iterative fits, and the structure metrics of `ncajax.analysis`.
Also per fit track (one vmapped call over tracks), the dead units of each model, and how linear each
model is (the spread of the per-frame Jacobians and the distribution of their structure metrics).

Writes into its run directory: config.json, meta.json, metrics.jsonl (one line per finished fit, which is
what lets an interrupted stage resume), matrices/<model>__<setting>.npz, per_track/<model>__<setting>.npz,
frames.npz (input energy and bin frequencies) and result.json.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from . import analysis, nca, runs
from .config import STFTConfig, to_dict
from .train import predict


@dataclass(frozen=True)
class FitSetting:
    """One estimator configuration, e.g. the authors' NCA (600 steps at lr 1e-4, Xavier-normal P)."""

    name: str
    method: str
    steps: int = 0
    learning_rate: float = 0.0
    init: str = "xavier_normal"
    bias_axis: str = "output"

    def kwargs(self) -> dict:
        if self.method in ("nca", "student"):
            out = {"steps": self.steps, "learning_rate": self.learning_rate, "init": self.init}
            if self.method == "nca":
                out["bias_axis"] = self.bias_axis
            return out
        return {}


def default_settings(converged_steps: int = 3000, converged_lr: float = 1e-3) -> tuple[FitSetting, ...]:
    """The authors' settings, a converged setting with both NCA initialisations, and the closed forms."""
    return (
        FitSetting("nca_authors", "nca", 600, 1e-4, "xavier_normal"),
        FitSetting("nca_converged", "nca", converged_steps, converged_lr, "xavier_normal"),
        FitSetting("nca_uniform", "nca", converged_steps, converged_lr, "uniform"),
        FitSetting("student_authors", "student", 600, 1e-4, "xavier_normal"),
        FitSetting("student_converged", "student", converged_steps, converged_lr, "xavier_normal"),
        FitSetting("lstsq", "lstsq"),
        FitSetting("jacobian", "jacobian"),
    )


@dataclass(frozen=True)
class MappingConfig:
    """Which frames the fits see and which settings run."""

    settings: tuple[FitSetting, ...] = default_settings()
    per_track_settings: tuple[str, ...] = ("lstsq", "jacobian")
    n_fit_frames: int = 1024
    n_heldout_frames: int = 1024
    frames_per_track: int = 512
    heldout_tracks: int = 2
    jacobian_frames: int = 512
    band_k: int = 2
    seed: int = 0

    def __post_init__(self):
        names = [s.name for s in self.settings]
        if len(set(names)) != len(names):
            raise ValueError(f"fit setting names must be unique, got {names}")
        unknown = set(self.per_track_settings) - set(names)
        if unknown:
            raise ValueError(f"per_track_settings {sorted(unknown)} are not among the settings {names}")
        for s in self.settings:
            if s.method not in nca.METHODS:
                raise ValueError(f"setting {s.name!r}: unknown method {s.method!r}; choose from {nca.METHODS}")
            if s.method in ("nca", "student") and (s.steps < 1 or s.learning_rate <= 0):
                raise ValueError(f"setting {s.name!r}: iterative fits need steps >= 1 and learning_rate > 0")
        if self.heldout_tracks < 1:
            raise ValueError("heldout_tracks must be >= 1: fidelity on unseen frames is part of every result")

    def to_json(self) -> dict:
        d = to_dict(self)
        d["settings"] = [dataclasses.asdict(s) for s in self.settings]
        return d


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

    def apply(self, s: int):
        if self.params is None:
            return lambda x: self.model(x)
        p = jax.tree.map(lambda a: a[s], self.params)
        return lambda x: self.model.apply(p, x)


def select_frames(cache, cfg: MappingConfig) -> dict[str, np.ndarray]:
    """Fit, held-out and per-track frames from a test FeatureCache (a pure function of cfg.seed).

    The last `heldout_tracks` tracks are held out; the others are pooled for the fit and also fitted one
    by one. With too few test tracks for that (e.g. one real track split in time), every track is split
    in time instead: its first 70 % of frames are fitted, its last 30 % held out. Frames are drawn without
    replacement (all of them when a split has fewer).
    """
    n_tracks = len(cache.track_names)
    rng = np.random.default_rng([cfg.seed, 7])
    spans = [(int(cache.offsets[i]), int(cache.offsets[i + 1])) for i in range(n_tracks)]
    if n_tracks >= cfg.heldout_tracks + 1:
        fit_spans = spans[: n_tracks - cfg.heldout_tracks]
        held_spans = spans[n_tracks - cfg.heldout_tracks :]
        fit_names = cache.track_names[: n_tracks - cfg.heldout_tracks]
        held_names = cache.track_names[n_tracks - cfg.heldout_tracks :]
    else:
        cut = [a + int(0.7 * (b - a)) for a, b in spans]
        if any(c - a < 2 or b - c < 1 for (a, b), c in zip(spans, cut, strict=True)):
            raise ValueError(
                f"the test split has {n_tracks} track(s), too short to split in time for held-out "
                "fidelity: use longer or more test tracks, or fewer --heldout-tracks"
            )
        fit_spans = [(a, c) for (a, _), c in zip(spans, cut, strict=True)]
        held_spans = [(c, b) for (_, b), c in zip(spans, cut, strict=True)]
        fit_names = [f"{n} [0-70%]" for n in cache.track_names]
        held_names = [f"{n} [70-100%]" for n in cache.track_names]

    def rows(spans_):
        return np.concatenate([np.arange(a, b) for a, b in spans_])

    def draw(idx, n):
        idx = np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False))
        return np.asarray(cache.mixture[idx], np.float32)

    per_track_n = min(cfg.frames_per_track, min(b - a for a, b in fit_spans))
    return {
        "fit": draw(rows(fit_spans), cfg.n_fit_frames),
        "heldout": draw(rows(held_spans), cfg.n_heldout_frames),
        "per_track": np.stack([draw(rows([span]), per_track_n) for span in fit_spans]),
        "fit_tracks": np.array(fit_names),
        "heldout_tracks": np.array(held_names),
    }


def _outputs(sep: Separator, x: np.ndarray) -> np.ndarray:
    """Model output per seed: (S, nb_frames, nb_bins) (compiled once per model and shape)."""
    if sep.params is None:
        return np.asarray(jax.jit(sep.model)(x))[None]
    return np.stack([predict(sep.model, jax.tree.map(lambda a, s=s: a[s], sep.params), x)
                     for s in range(sep.n_seeds)])


def _fit(sep: Separator, setting: FitSetting, x: np.ndarray, target: np.ndarray, seed: int,
         chunk_size: int) -> nca.MappingFit:
    """K fits in one vmapped call: x and target (K, nb_frames, nb_bins), params per fit when K = S."""
    if sep.params is None:
        fits = [
            nca.fit_mapping(sep.model, None, x[k], target=target[k], method=setting.method, seed=seed,
                            chunk_size=chunk_size, **setting.kwargs())
            for k in range(len(x))
        ]
        return _stack_fits(fits)
    params_axis = 0 if jax.tree.leaves(sep.params)[0].shape[0] == len(x) else None
    params = sep.params if params_axis == 0 else jax.tree.map(lambda a: a[0], sep.params)
    return nca.fit_mapping(sep.model, params, x, target=target, method=setting.method, seed=seed,
                           chunk_size=chunk_size, params_axis=params_axis, **setting.kwargs())


def _stack_fits(fits: list[nca.MappingFit]) -> nca.MappingFit:
    def stack(name):
        vals = [getattr(f, name) for f in fits]
        return None if vals[0] is None else np.stack([np.asarray(v) for v in vals])

    first = fits[0]
    return dataclasses.replace(
        first, matrix=stack("matrix"), losses=stack("losses"), fidelity=stack("fidelity"),
        converged=stack("converged"), local_spread=stack("local_spread"),
        parts={k: np.stack([f.parts[k] for f in fits]) for k in first.parts},
    )


def _per_seed(values, n: int) -> list:
    if values is None:
        return [None] * n
    arr = np.asarray(values)
    return arr.tolist() if arr.ndim else [arr.item()] * n


def _metric_rows(matrices: np.ndarray, energy: np.ndarray, stft: STFTConfig, k: int) -> list[dict]:
    m = analysis.structure_metrics(jnp.asarray(matrices), input_energy=jnp.asarray(energy),
                                   sample_rate=stft.sample_rate, n_fft=stft.n_fft, k=k)
    m = {key: np.asarray(v) for key, v in m.items()}
    return [{key: float(v[i]) for key, v in m.items()} for i in range(matrices.shape[0])]


_FRAME_METRICS = ("diagonal_energy_ratio", "weighted_diagonal_energy_ratio", "near_diagonal_energy",
                  "mean_coupling_distance")
_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def linearity(sep: Separator, x: np.ndarray, cfg: MappingConfig, s: int = 0) -> dict:
    """How well one matrix describes seed `s` of a model on frames x.

    Quantiles over frames of the structure metrics of the per-frame Jacobians J(x_t); the relative L1
    fidelity of the per-frame linear maps J(x_t) x_t (via a Jacobian-vector product) against that of the
    mean Jacobian; and the local spread sqrt(mean ||J_t - Jbar||^2) / ||Jbar||.
    """
    energy = analysis.mean_input_energy(jnp.asarray(x))
    k = cfg.band_k

    def frame_metrics(j):
        full = analysis.structure_metrics(j, input_energy=energy, k=k)
        return {name: full[name] for name in _FRAME_METRICS}

    model, params = (sep.model, None) if sep.params is None else (sep.model, jax.tree.map(lambda a: a[s], sep.params))
    per_frame = nca.jacobian_stream(model, params, x, fn=_cached_fn(frame_metrics, energy, k))
    f = sep.apply(s)
    y = np.asarray(jax.jit(f)(x))
    # frame-wise f: the JVP of the batch with tangent x is J(x_t) x_t for every frame t
    jx = np.asarray(jax.jit(lambda v: jax.jvp(f, (v,), (v,))[1])(x))
    mean_fit = nca.fit_mapping(model, params, x, method="jacobian")
    return {
        "frame_metric_quantiles": {
            name: np.asarray(analysis.quantiles(np.asarray(v), _QUANTILES)).tolist()
            for name, v in per_frame.items()
        },
        "quantile_levels": list(_QUANTILES),
        "frame_metric_values": {name: np.asarray(v).tolist() for name, v in per_frame.items()},
        "fidelity_per_frame_linear": float(nca.relative_l1(y, jx)),
        "fidelity_mean_jacobian": float(mean_fit.fidelity),
        "local_spread": float(mean_fit.local_spread),
    }


_FN_CACHE: dict = {}


def _cached_fn(fn, energy, k):
    """Reuse one function object per (energy, k) so nca.jacobian_stream reuses its compiled program."""
    key = (np.asarray(energy).tobytes(), k)
    return _FN_CACHE.setdefault(key, fn)


def run_stage(
    separators: dict[str, Separator],
    test_cache,
    stft: STFTConfig,
    out_dir: str | Path,
    cfg: MappingConfig = MappingConfig(),
    *,
    provenance: dict | None = None,
    progress: bool = True,
) -> dict:
    """Fit every setting of `cfg` to every separator; write and return the stage's results.

    Every matmul runs at full float32 precision (on GPUs the default would be TF32), so targets,
    fits and metrics agree with `nca.fit_mapping` run on its own."""
    with jax.default_matmul_precision("highest"):
        return _run_stage(separators, test_cache, stft, out_dir, cfg, provenance, progress)


def _run_stage(separators, test_cache, stft, out_dir, cfg, provenance, progress) -> dict:
    out_dir = Path(out_dir)
    config = {"mapping": cfg.to_json(), "stft": to_dict(stft), "models": sorted(separators),
              "inputs": provenance or {}}
    if (done := runs.finished_result(out_dir, config)) is not None:
        return done
    runs.open_run(out_dir, config)
    (out_dir / "matrices").mkdir(exist_ok=True)
    (out_dir / "per_track").mkdir(exist_ok=True)
    frames = select_frames(test_cache, cfg)
    energy = np.asarray(analysis.mean_input_energy(frames["fit"]))
    np.savez(out_dir / "frames.npz", fit_input_energy=energy,
             frequencies=analysis.bin_frequencies(stft.n_bins, sample_rate=stft.sample_rate, n_fft=stft.n_fft),
             fit_tracks=frames["fit_tracks"], heldout_tracks=frames["heldout_tracks"])

    records: list[dict] = runs.read_metrics(out_dir)  # fits finished before an interruption
    done_keys = {(r["model"], r["setting"], r["kind"]) for r in records}
    jobs = list(_jobs(separators, cfg))
    bar = tqdm(total=len(jobs), initial=sum((m, s.name if s else "-", k) in done_keys for m, s, k in jobs),
               disable=not progress, desc="fit mappings", unit="fit", dynamic_ncols=True)
    for model_name, setting, kind in jobs:
        key = (model_name, setting.name if setting else "-", kind)
        if key in done_keys:
            continue
        bar.set_postfix_str(f"{model_name} {key[1]} {kind}")
        sep = separators[model_name]
        t0 = time.perf_counter()
        if kind == "not_applicable":
            record = {"method": setting.method, "not_applicable": (
                "NCA builds its matrix from the model's dense layers; a bare callable has none "
                "(params=None). student, lstsq and jacobian map any callable.")}
        elif kind == "pooled":
            record = _pooled(sep, setting, frames, energy, stft, cfg, out_dir / "matrices" / f"{model_name}__{setting.name}.npz")
        elif kind == "per_track":
            record = _per_track(sep, setting, frames, energy, stft, cfg, out_dir / "per_track" / f"{model_name}__{setting.name}.npz")
        else:
            record = _model_facts(sep, frames, stft, cfg)
        record.update(model=model_name, setting=key[1], kind=kind, wall_s=time.perf_counter() - t0)
        runs.append_metrics(out_dir, record)
        records.append(record)
        bar.update(1)
    bar.close()
    result = {"records": records, "fit_tracks": frames["fit_tracks"].tolist(),
              "heldout_tracks": frames["heldout_tracks"].tolist(),
              "wall_s": sum(r["wall_s"] for r in records)}
    runs.finish(out_dir, result)
    return result


def _jobs(separators: dict[str, Separator], cfg: MappingConfig):
    """(model, setting, kind) of every fit of the stage, in order. NCA needs the layer weights: a bare
    callable gets one "not_applicable" record instead of its NCA fits."""
    for name, sep in separators.items():
        runnable = [s for s in cfg.settings if not (s.method == "nca" and sep.params is None)]
        for s in cfg.settings:
            yield name, s, "pooled" if s in runnable else "not_applicable"
        for s in runnable:
            if s.name in cfg.per_track_settings:
                yield name, s, "per_track"
        yield name, None, "model"


def _pooled(sep, setting, frames, energy, stft, cfg, path) -> dict:
    s_count = sep.n_seeds
    x = np.broadcast_to(frames["fit"], (s_count, *frames["fit"].shape))
    target = _outputs(sep, frames["fit"])
    fit = _fit(sep, setting, np.ascontiguousarray(x), target, cfg.seed, 256)
    held_y = _outputs(sep, frames["heldout"])
    held_fid = np.asarray(nca.relative_l1(held_y, nca.predict(fit.matrix, frames["heldout"])))
    arrays = {"matrix": np.asarray(fit.matrix, np.float32)}
    if fit.losses is not None:
        arrays["losses"] = np.asarray(fit.losses, np.float32)
    for name, part in fit.parts.items():
        arrays[f"part_{name}"] = np.asarray(part, np.float32)
    np.savez(path, **arrays)
    record = {
        "method": setting.method, "settings": dataclasses.asdict(setting),
        "fidelity_fit": _per_seed(fit.fidelity, s_count),
        "fidelity_heldout": held_fid.tolist(),
        "converged": _per_seed(fit.converged, s_count),
        "final_loss": _per_seed(None if fit.losses is None else np.asarray(fit.losses)[:, -1], s_count),
        "local_spread": _per_seed(fit.local_spread, s_count),
        "metrics": _metric_rows(np.asarray(fit.matrix), energy, stft, cfg.band_k),
    }
    if fit.parts:
        record["part_metrics"] = {
            name: _metric_rows(np.asarray(part), energy, stft, cfg.band_k) for name, part in fit.parts.items()
        }
    return record


def _per_track(sep, setting, frames, energy, stft, cfg, path) -> dict:
    x = frames["per_track"]  # (T, F, N), seed 0 of the model for every track
    first = Separator(sep.model, None if sep.params is None else jax.tree.map(lambda a: a[:1], sep.params), 1)
    target = np.stack([_outputs(first, xt)[0] for xt in x])
    fit = _fit(first, setting, x, target, cfg.seed, 256)
    held_y = _outputs(first, frames["heldout"])[0]
    held_fid = np.asarray(nca.relative_l1(held_y[None], nca.predict(fit.matrix, frames["heldout"])))
    np.savez(path, matrix=np.asarray(fit.matrix, np.float32))
    track_energy = np.asarray(analysis.mean_input_energy(x))
    t_count = x.shape[0]
    return {
        "method": setting.method, "tracks": frames["fit_tracks"].tolist(),
        "fidelity_fit": _per_seed(fit.fidelity, t_count),
        "fidelity_heldout": held_fid.tolist(),
        "converged": _per_seed(fit.converged, t_count),
        "metrics": _metric_rows(np.asarray(fit.matrix), track_energy, stft, cfg.band_k),
    }


def _model_facts(sep, frames, stft, cfg) -> dict:
    out: dict[str, Any] = {}
    if sep.params is not None and sep.relu_stack:
        try:
            out["dead_units"] = [
                {k: float(v) for k, v in analysis.dead_unit_share(
                    sep.model, jax.tree.map(lambda a, s=s: a[s], sep.params), frames["fit"]).items()}
                for s in range(sep.n_seeds)
            ]
        except ValueError as err:  # not a stack of dense layers
            out["dead_units_error"] = str(err)
    x = frames["fit"][: cfg.jacobian_frames]
    out["linearity"] = [linearity(sep, x, cfg, s) for s in range(sep.n_seeds)]
    return out
