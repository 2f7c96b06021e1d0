"""Realism of the embedded corpus: does a separator trained on it separate a real song?

Generates the embedded synthetic corpus (`ncajax.data`, default `CorpusConfig` at the preset's sample
rate, `--preset fast` by default: 8 kHz, N = 129 bins), compares its statistics with the real track's,
trains the separators on it only (`pipeline.prepare_data` + `pipeline.train_all`,
default `TrainConfig`, `--seeds` seeds vmapped), then separates the real 7-second MUSDB18 track
("Music Delta - 80s Rock", ../shared/data/musdb18-sample beside the repository; read with `ncajax.data`, needs ffmpeg),
resampled to the preset's rate and downmixed to mono, and scores it with `ncajax.separation.evaluate_tracks` exactly as
the project's evaluation does (museval BSS Eval v4, 1-second windows, median over windows; vocals target).

    NCAJAX_CACHE=/tmp/realism_cache python benchmarks/bench_realism.py [--seeds 3]
        [--models dae_sf dae dae_deep] [--corpus-seed 0] [--n-train 60] [--n-test 30] [--duration 5]
        [--realism v3|v4]
        [--gains-db -12 0 12] [--out DIR]  # training run dirs; default: a temp folder (always retrains)

    python benchmarks/bench_realism.py --stats-only [--fresh]  # corpus statistics only, no training

Prints JSON lines (one per record, `"bench": "realism"`):
- `{"kind": "stats", "source": "corpus" | "real", ...}`: what the separators see, per source: mixture
  RMS (dBFS), vocal-to-accompaniment level (dB), vocal activity (share of 32 ms frames within 30 dB of
  the loudest), the vocals' and the accompaniment's power shares in four bands (<500 Hz, 0.5-2 kHz,
  2-4 kHz, >4 kHz up to Nyquist) and the pitched-ness of the accompaniment in the voice register
  (share of its 150-1000 Hz power in spectral peaks); the corpus values as median and 10th/90th
  percentile over its songs, and `"kind": "stats_gap"` with |corpus median - real| per statistic;
  `--stats-only` stops after these (and the generation time, `--fresh` in a new temp cache);
- `{"kind": "reference", "name": "mixture" | "oracle_irm", "vocals_sdr": ...}` on the real track;
- `{"kind": "seed", "model": m, "seed": s, "vocals_sdr": ..., "improvement_db": ...}` per trained seed
  (improvement = model vocals SDR - mixture vocals SDR on the real track, dB);
- `{"kind": "level", "model": m, "gain_db": g, "improvement_db_median": ...}`: the same with the real
  track (all stems) scaled by each of `--gains-db` (the separators see raw magnitudes, so a louder or
  quieter song is a different input; +12 dB puts this track near a loud modern master);
- `{"kind": "model", "model": m, "vocals_sdr_median": ..., "improvement_db_median": ...,
  "improvement_db_best": ..., "improvement_db_worst": ..., "synthetic_test_mag_sdr_gain": ...,
  "improvement_db_median_at_gain": {...}}` per model (median/best/worst over seeds; the magnitude-SDR
  gain over the mixture on the corpus' own test split, from training's result.json; the level records);
- a final `{"kind": "summary", ...}` with the corpus format version, the generation and training times,
  the best model's median improvement and whether it reaches `TARGET_DB` (2 dB, project issue 14).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python benchmarks/bench_realism.py` from anywhere
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from ncajax.config import CorpusConfig, TrainConfig, preset  # noqa: E402
from ncajax.data import _corpus as corpus  # noqa: E402
from ncajax.data import _sources as sources  # noqa: E402
from ncajax.separation import _evaluate as evaluate  # noqa: E402
from ncajax.study import _pipeline as pipeline  # noqa: E402

TARGET_DB = 2.0
REAL_TRACK = (
    REPO.parent / "shared" / "data" / "musdb18-sample" / "train" / "Music Delta - 80s Rock.stem.mp4"
)


def emit(record: dict) -> None:
    print(json.dumps({"bench": "realism", **record}), flush=True)


def real_track(path: Path, sample_rate: int) -> sources.TrackAudio:
    """The whole real track, mono, at `sample_rate`."""
    sources.require_ffmpeg()
    name = path.name.removesuffix(".stem.mp4")
    return sources.load_track(sources.TrackRef(name=name, path=str(path), kind="stem"), sample_rate)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=["dae_sf", "dae", "dae_deep"])
    ap.add_argument("--corpus-seed", type=int, default=CorpusConfig.seed)
    ap.add_argument("--n-train", type=int, default=CorpusConfig.n_train)
    ap.add_argument("--n-test", type=int, default=CorpusConfig.n_test)
    ap.add_argument("--duration", type=float, default=CorpusConfig.duration)
    ap.add_argument("--realism", default=CorpusConfig.realism,
                    help="corpus generator (CorpusConfig.realism: v3 default, v4 stereo/more varied); "
                    "benchmarks/bench_transfer.py compares them on the real and a held-out style")
    ap.add_argument("--real", default=str(REAL_TRACK), help="the real .stem.mp4 track to separate")
    ap.add_argument("--out", default=None, help="training run directories (default: a temp folder)")
    ap.add_argument(
        "--gains-db",
        nargs="+",
        type=float,
        default=[-12.0, 0.0, 12.0],
        help="also score the real track scaled by these gains (the models see raw magnitudes)",
    )
    ap.add_argument("--preset", default="fast", help="STFT preset; the corpus follows its sample rate")
    ap.add_argument("--stats-only", action="store_true", help="corpus statistics only, no training")
    ap.add_argument("--fresh", action="store_true", help="generate the corpus in a new temp cache")
    args = ap.parse_args(argv)

    stft = preset(args.preset)
    if args.fresh:
        fresh_cache = tempfile.TemporaryDirectory(prefix="bench_realism-cache-")
        os.environ["NCAJAX_CACHE"] = fresh_cache.name
    ccfg = CorpusConfig(
        seed=args.corpus_seed,
        n_train=args.n_train,
        n_test=args.n_test,
        duration=args.duration,
        sample_rate=stft.sample_rate,
        realism=args.realism,
    )
    cache_root = pipeline.default_cache_root()
    t0 = time.perf_counter()
    cdir = corpus.corpus_dir(cache_root / "corpus", ccfg)
    fresh = not (cdir / corpus.MARKER).is_file()
    corpus.generate_corpus(cache_root / "corpus", ccfg)
    corpus_s = time.perf_counter() - t0
    emit({"kind": "generation", "corpus": dataclasses.asdict(ccfg), "generated": fresh,
          "corpus_s": round(corpus_s, 2), "cpus": os.cpu_count()})
    data = pipeline.prepare_data(corpus_cfg=ccfg, cache_root=cache_root, progress=False)
    synth = [sources.load_track(r, stft.sample_rate) for split in ("train", "valid", "test")
             for r in data.refs[split]]
    real = real_track(Path(args.real), stft.sample_rate)
    emit_stats([track_stats(t) for t in synth], track_stats(real))
    if args.stats_only:
        return {"corpus_s": corpus_s}

    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_realism-")
        out = Path(tmp.name)
    else:
        out = Path(args.out)
    t0 = time.perf_counter()
    trained = pipeline.train_all(
        data,
        out,
        model_names=tuple(args.models),
        train_cfg=TrainConfig(n_seeds=args.seeds),
        progress=False,
    )
    train_s = time.perf_counter() - t0

    from ncajax.models import predict
    from ncajax.training import load_trained

    predictors, synth_gain = {}, {}
    for name in args.models:
        tr = load_trained(out / name, expect={"name": name})
        res = trained[name].result
        synth_gain[name] = _synthetic_gain(res)
        for s in range(tr.train_cfg.n_seeds):
            params = tr.seed_params(s)
            predictors[f"{name}/seed{tr.train_cfg.seed + s}"] = lambda x, m=tr.model, p=params: (
                predict(m, p, x)
            )
    track = real
    t0 = time.perf_counter()
    result = evaluate.evaluate_tracks(predictors, [track], stft, with_bss=True)
    level_robustness = {}
    for g in args.gains_db:
        if g == 0.0:
            continue
        k = np.float32(10 ** (g / 20))
        scaled = dataclasses.replace(
            track,
            mixture=track.mixture * k,
            vocals=track.vocals * k,
            accompaniment=track.accompaniment * k,
        )
        summ = evaluate.evaluate_tracks(predictors, [scaled], stft, with_bss=True)["summary"]
        base = summ["mixture"]["vocals"]["SDR"]
        for name in args.models:
            imps = [
                summ[k_]["vocals"]["SDR"] - base for k_ in summ if k_.startswith(f"{name}/seed")
            ]
            level_robustness.setdefault(name, {})[f"{g:+g} dB"] = float(np.median(imps))
            emit(
                {
                    "kind": "level",
                    "model": name,
                    "gain_db": g,
                    "improvement_db_median": float(np.median(imps)),
                    "improvement_db_per_seed": imps,
                }
            )
    eval_s = time.perf_counter() - t0
    summary = result["summary"]
    mix_sdr = summary["mixture"]["vocals"]["SDR"]
    for ref in evaluate.REFERENCES:
        emit(
            {
                "kind": "reference",
                "name": ref,
                "track": track.name,
                "vocals_sdr": summary[ref]["vocals"]["SDR"],
                "mag_sdr": summary[ref]["mag_sdr"],
            }
        )
    per_model: dict[str, list[float]] = {}
    for key, row in summary.items():
        if key in evaluate.REFERENCES:
            continue
        name, seed = key.split("/seed")
        sdr = row["vocals"]["SDR"]
        per_model.setdefault(name, []).append(sdr)
        emit(
            {
                "kind": "seed",
                "model": name,
                "seed": int(seed),
                "vocals_sdr": sdr,
                "improvement_db": sdr - mix_sdr,
                "mag_sdr": row["mag_sdr"],
            }
        )
    best_name, best_imp = None, -np.inf
    for name, sdrs in per_model.items():
        imp = np.asarray(sdrs) - mix_sdr
        med = float(np.median(imp))
        if med > best_imp:
            best_name, best_imp = name, med
        emit(
            {
                "kind": "model",
                "model": name,
                "vocals_sdr_median": float(np.median(sdrs)),
                "improvement_db_median": med,
                "improvement_db_best": float(imp.max()),
                "improvement_db_worst": float(imp.min()),
                "n_seeds": len(sdrs),
                "synthetic_test_mag_sdr_gain": synth_gain.get(name),
                "improvement_db_median_at_gain": level_robustness.get(name, {}),
            }
        )
    record = {
        "kind": "summary",
        "corpus_format": corpus.FORMAT_VERSION,
        "corpus": data.description["corpus"],
        "corpus_generated": fresh,
        "corpus_s": round(corpus_s, 2),
        "train_s": round(train_s, 2),
        "eval_s": round(eval_s, 2),
        "mixture_vocals_sdr": mix_sdr,
        "oracle_irm_vocals_sdr": summary["oracle_irm"]["vocals"]["SDR"],
        "best_model": best_name,
        "best_improvement_db_median": best_imp,
        "target_db": TARGET_DB,
        "reached": bool(best_imp >= TARGET_DB),
        "cache": str(cache_root),
        "cpus": os.cpu_count(),
    }
    emit(record)
    if tmp is not None:
        tmp.cleanup()
    return record


BANDS = ((0.0, 500.0), (500.0, 2000.0), (2000.0, 4000.0), (4000.0, None))


def track_stats(track: sources.TrackAudio) -> dict[str, float]:
    """The statistics of one mono track (see the module docstring)."""
    sr = track.rate

    def db(x: np.ndarray) -> float:
        return float(10 * np.log10(max(float(np.mean(np.square(x, dtype=np.float64))), 1e-20)))

    def bands(x: np.ndarray) -> dict[str, float]:
        spec = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
        f = np.fft.rfftfreq(x.size, 1 / sr)
        tot = max(spec.sum(), 1e-30)
        return {f"{lo:g}-{hi or sr / 2:g}Hz": float(spec[(f >= lo) & (f < (hi or sr))].sum() / tot)
                for lo, hi in BANDS if lo < sr / 2}

    win = int(0.032 * sr)
    frames = np.lib.stride_tricks.sliding_window_view(track.vocals, win)[::win]
    frame_db = 10 * np.log10(np.mean(np.square(frames, dtype=np.float64), axis=1) + 1e-20)
    acc = track.accompaniment.astype(np.float64)
    # Pitched-ness in the voice register: the share of the accompaniment's 150-1000 Hz power in
    # frequency bins at least 10 dB above the local median (spectral peaks, i.e. partials).
    n_fft = 4 * win
    fr = np.lib.stride_tricks.sliding_window_view(acc, n_fft)[::n_fft // 2] * np.hanning(n_fft)
    spec = np.abs(np.fft.rfft(fr, axis=1)) ** 2
    f = np.fft.rfftfreq(n_fft, 1 / sr)
    reg = (f >= 150) & (f < 1000)
    from scipy.ndimage import median_filter

    local = median_filter(spec, size=(1, 15), mode="nearest")
    peaks = spec > 10 * local
    pitched = float((spec * peaks)[:, reg].sum() / max(spec[:, reg].sum(), 1e-30))
    out = {
        "mixture_rms_dbfs": db(track.mixture),
        "vocal_level_db": db(track.vocals) - db(acc),
        "vocal_activity": float(np.mean(frame_db > frame_db.max() - 30)),
        "accompaniment_pitched_150_1000Hz": pitched,
    }
    out.update({f"vocals_{k}": v for k, v in bands(track.vocals).items()})
    out.update({f"accompaniment_{k}": v for k, v in bands(acc).items()})
    return out


def emit_stats(corpus_stats: list[dict[str, float]], real_stats: dict[str, float]) -> None:
    """Emit the corpus (median, p10, p90 over songs) and real statistics and their gaps."""
    summary = {}
    for key in real_stats:
        vals = np.asarray([s[key] for s in corpus_stats])
        summary[key] = {"median": float(np.median(vals)), "p10": float(np.percentile(vals, 10)),
                        "p90": float(np.percentile(vals, 90))}
    emit({"kind": "stats", "source": "corpus", "n_tracks": len(corpus_stats), **summary})
    emit({"kind": "stats", "source": "real", **real_stats})
    emit({"kind": "stats_gap", **{k: abs(summary[k]["median"] - v) for k, v in real_stats.items()},
          "real_inside_p10_p90": {k: bool(summary[k]["p10"] <= v <= summary[k]["p90"])
                                  for k, v in real_stats.items()}})


def _synthetic_gain(result: dict) -> float | None:
    """Median over seeds of (test magnitude SDR - mixture magnitude SDR) on the corpus test split."""
    imp = result.get("test_improvement_db")
    return None if imp is None else float(np.median(np.asarray(imp, dtype=float)))


if __name__ == "__main__":
    main()
