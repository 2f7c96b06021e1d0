"""Test fakes shared across test files: hand-built mapping-stage run directories (the records and files
`ncajax.nca.run_stage` writes, with numbers the tests choose) for the report and figure tests, and
in-memory feature caches for the training tests."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from ncajax.config import MappingConfig, STFTConfig, to_dict
from ncajax.data._features import FeatureCache


def grid(level: float, key: str, shape: tuple[int, int], jitter: float = 0.02) -> list[list[float]]:
    """A deterministic seed x song table of `shape` around `level` (the jitter depends on `key` only)."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    return (level + jitter * rng.uniform(-1.0, 1.0, shape)).tolist()


def array_cache(n_frames: int, seed: int, n_bins: int = 16) -> FeatureCache:
    """An in-memory FeatureCache: vocals are a fixed per-bin gain (0 .. 1) of a random mixture."""
    rng = np.random.default_rng(seed)
    mixture = (rng.random((n_frames, n_bins)) * 2).astype(np.float32)
    return FeatureCache.from_arrays(mixture, mixture * np.linspace(0.0, 1.0, n_bins, dtype=np.float32))


def baseline_records(model: str, *, n_seeds: int, n_songs: int, gain_fit: list[float],
                     gain_heldout: list[list[float]]) -> list[dict]:
    """The zero and per-bin-gain baseline records of one model."""
    ones = [[1.0] * n_songs for _ in range(n_seeds)]
    zero = {"model": model, "setting": "zero", "kind": "baseline", "method": "zero",
            "rel_l1_fit": [1.0] * n_seeds, "rel_l1_heldout": ones, "rel_l1_heldout_clipped": ones,
            "wall_s": 0.1}
    gain = {"model": model, "setting": "per_bin_gain", "kind": "baseline", "method": "per_bin_gain",
            "rel_l1_fit": gain_fit, "rel_l1_heldout": gain_heldout, "rel_l1_heldout_clipped": gain_heldout,
            "wall_s": 0.1}
    return [zero, gain]


def write_mapping_stage(mdir: Path, records: list[dict], *, cfg: MappingConfig, stft: STFTConfig,
                        models: tuple[str, ...], heldout_songs: list[str], finished: bool = True,
                        meta: dict | None = None) -> None:
    """config.json, metrics.jsonl and (when `finished`) result.json of a mapping stage in `mdir`."""
    mdir.mkdir(parents=True, exist_ok=True)
    config = {"mapping": cfg.to_json(), "stft": to_dict(stft), "models": list(models), "inputs": {}}
    (mdir / "config.json").write_text(json.dumps(config))
    if meta is not None:
        (mdir / "meta.json").write_text(json.dumps(meta))
    (mdir / "metrics.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    if finished:
        result = {"records": records, "fit_songs": ["a", "b"], "heldout_songs": heldout_songs,
                  "n_fit_frames": cfg.n_fit_frames,
                  "heldout_frames": [cfg.heldout_frames_per_song] * len(heldout_songs),
                  "wall_s": float(sum(r.get("wall_s", 0.0) for r in records))}
        (mdir / "result.json").write_text(json.dumps(result))


def control_record(model: str, setting: str, steps: int, *, keep: list[list[float]], ratio: list[list[float]],
                   fit_err: list[float], fit_steps: int, learning_rate: float) -> dict:
    """One record of the under-convergence control (kind "control", setting `<setting>@<steps>`): the
    diagonal keep (primary metric) and weighted diagonal energy ratio tables `(S, T)` and the per-seed
    fit errors the tests choose; every held-out error 0.3."""
    n_seeds, n_songs = len(keep), len(keep[0])
    errs = [[0.3] * n_songs for _ in range(n_seeds)]
    return {"model": model, "setting": f"{setting}@{steps}", "kind": "control", "method": "nca",
            "control": {"setting": setting, "steps": steps, "fit_steps": fit_steps, "learning_rate": learning_rate},
            "fit_seeds": list(range(n_seeds)), "rel_l1_fit": list(fit_err), "rel_l1_heldout": errs,
            "rel_l1_heldout_clipped": errs, "converged": [None if steps == 0 else True] * n_seeds,
            "metrics": {"weighted_diagonal_energy_ratio": ratio}, "functional": {"keep_diag": keep},
            "wall_s": 0.5}
