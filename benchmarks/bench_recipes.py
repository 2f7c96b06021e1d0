"""What keeps the separators' output units alive: training recipes side by side, in the real study.

Trains dae / dae_deep / dae_sf (`--seeds` seeds vmapped, default `TrainConfig` otherwise) on the embedded
corpus (default `CorpusConfig` at the `fast` preset) once per recipe, then measures on the corpus's
held-out test songs, per model and seed (`ncajax.separation.unit_facts`):
- the dead share of output units (zero on every held-out frame; for `dae_sf` the mask units);
- the homogeneity error ||f(a x) - a f(x)|| / ||a f(x)|| at a = 1/4 and 4;
- the magnitude-SDR gain over the mixture on the test songs (from the run's result.json), and the vocals
  BSS Eval SDR gain over the mixture on the real MUSDB18 track of ../shared/data/musdb18-sample (whole, mono, at the preset's rate; needs ffmpeg) when
  it is there.

Recipes (`--recipes`, any of RECIPES): `raw_mse` (raw magnitudes, MSE: the recipe before 2026-12-05),
`std_mse` (per-bin RMS standardisation folded into the saved model, MSE), `std_l1` (the same, L1 loss),
`std_l1_gain12` (plus a random +-12 dB gain per example), `std_l1_remix` (plus stem remixing across
songs and +-6 dB per-stem gains), `std_l1_remix_gain12` (both augmentations).

    python benchmarks/bench_recipes.py [--seeds 3] [--recipes raw_mse std_mse std_l1 std_l1_gain12]
        [--out DIR]   # training runs kept in DIR (default: a temp folder)

Prints one `BENCH {json}` line per (recipe, model) and a markdown table; records the CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)
import numpy as np

from ncajax import nca, separation, study
from ncajax.config import CorpusConfig, TrainConfig, preset
from ncajax.training import load_trained

RECIPES = {
    "raw_mse": {"recipe": "raw", "loss": "mse"},
    "std_mse": {"recipe": "standardised", "loss": "mse"},
    "std_l1": {"recipe": "standardised", "loss": "l1"},
    "std_l1_gain12": {"recipe": "standardised", "loss": "l1", "augment_gain_db": 12.0},
    "std_l1_remix": {"recipe": "standardised", "loss": "l1", "augment_remix": 0.5,
                     "augment_stem_gain_db": 6.0},
    "std_l1_remix_gain12": {"recipe": "standardised", "loss": "l1", "augment_gain_db": 12.0,
                            "augment_remix": 0.5, "augment_stem_gain_db": 6.0},
}



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--recipes", nargs="+", default=["raw_mse", "std_mse", "std_l1", "std_l1_gain12"],
                    choices=sorted(RECIPES))
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--corpus-seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=TrainConfig.max_epochs)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    machine = common.machine()
    print(f"# bench_recipes  {machine['date']}  cpu: {machine['cpu']} ({machine['cores']} cores)")
    print(f"# command: python benchmarks/bench_recipes.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    stft = preset(args.preset)
    data = study.prepare_data(preset_name=args.preset, progress=False,
                                 corpus_cfg=CorpusConfig(seed=args.corpus_seed, sample_rate=stft.sample_rate))
    x_test = np.asarray(data.test.mixture, np.float32)
    freqs = nca.bin_frequencies(stft.n_bins, sample_rate=stft.sample_rate, n_fft=stft.n_fft)
    real = common.real_track(stft.sample_rate)
    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_recipes-")
    root = Path(args.out or tmp.name)
    rows = []
    for name in args.recipes:
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        opts = RECIPES[name]
        if not set(opts) <= fields:
            print(f"# {name}: skipped, this checkout's TrainConfig lacks {sorted(set(opts) - fields)}")
            continue
        cfg = TrainConfig(n_seeds=args.seeds, max_epochs=args.epochs, **opts)
        t0 = time.perf_counter()
        results = study.train_all(data, root / name, train_cfg=cfg, progress=False)
        train_s = time.perf_counter() - t0
        trained = {m: load_trained(root / name / m) for m in results}
        predictors = {}
        for model, tr in trained.items():
            seeds = [tr.seed_params(s) for s in range(args.seeds)]
            facts = [separation.unit_facts(tr.model, p, x_test, freqs) for p in seeds]
            real_gain = None
            if real is not None:
                for s, p in enumerate(seeds):
                    predictors[f"{model}/{s}"] = lambda x, m=tr.model, p=p: np.asarray(m.apply(p, x))
            rec = {
                "bench": "recipes", "recipe": name, "model": model, "options": opts, "seeds": args.seeds,
                "dead_share": [f["dead_share"] for f in facts],
                "homogeneity_0.25": [f["homogeneity"]["0.25"] for f in facts],
                "homogeneity_4": [f["homogeneity"]["4"] for f in facts],
                "test_gain_db": results[model].result.get("test_improvement_db"),
                "train_s_all_models": round(train_s, 1), "real_gain_db": real_gain, "cpu": machine["cpu"],
            }
            rows.append(rec)
        if real is not None:
            res = separation.evaluate_tracks(predictors, [real], stft, with_bss=True, progress=False)
            mix = res["summary"]["mixture"]["vocals"]["SDR"]
            for rec in rows[-len(trained):]:
                per = [res["summary"][f"{rec['model']}/{s}"]["vocals"]["SDR"] for s in range(args.seeds)]
                rec["real_gain_db"] = [None if v is None else float(v - mix) for v in per]
        for rec in rows[-len(trained):]:
            print("BENCH " + json.dumps(rec))
    print()
    print("| recipe | model | dead share (mean, max over seeds) | homogeneity 1/4 / 4 | test gain dB | real-track gain dB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        d = np.asarray(r["dead_share"])
        gains = [v for v in (r["real_gain_db"] or []) if v is not None]
        real = f"{np.mean(gains):+.2f}" if gains else "—"
        print(f"| {r['recipe']} | {r['model']} | {d.mean():.3f} ({d.max():.3f}) | "
              f"{np.mean(r['homogeneity_0.25']):.3f} / {np.mean(r['homogeneity_4']):.3f} | "
              f"{np.mean(r['test_gain_db']):+.2f} | {real} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
