"""Transfer of the separators from the embedded corpus to music it did not make: realism v3 vs v4.

For each corpus realism (`CorpusConfig.realism`, default both "v3" and "v4", `--preset fast`: 8 kHz,
N = 129, the default 60 + 30 songs), generates the corpus, trains the three models on it
(`pipeline.prepare_data(corpus_cfg=...)` + `pipeline.train_all`, default `TrainConfig` with
`--seeds` seeds vmapped) and scores every seed with BSS Eval (`ncajax.separation.evaluate_tracks`,
museval v4, 1-second windows, vocals target, as benchmarks/bench_recipes.py does) on

- "real": the real MUSDB18 track shared beside the repository ("Music Delta - 80s Rock", mono, at the
  preset's rate; a development set of one 7-second song, not evidence);
- "heldout": `--heldout` songs of a style the corpus generator did not make
  (benchmarks/heldout_style.py: glottal-pulse voice through recursive formant filters, Karplus-Strong
  guitar, FM piano, supersaw lead, Schroeder reverb);
- "own test": the magnitude-SDR gain on the corpus' own test split (from training's result.json;
  each realism's own test songs, so the two rows are not comparable with each other).

The gain is the vocals SDR of the model minus that of the unprocessed mixture, per track; a row gives
the median over seeds (and its min/max) of the median over tracks. Prints a header (CPU, command,
git commit), one line per model x realism, then the timing line; `--json` adds the per-seed records.

    NCAJAX_CACHE=/tmp/transfer_cache python benchmarks/bench_transfer.py [--seeds 3]
        [--realism v3 v4] [--models dae dae_deep dae_sf] [--heldout 8] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (str(REPO), str(REPO / "benchmarks")):
    if p not in sys.path:
        sys.path.insert(0, p)

import common  # noqa: E402
import numpy as np  # noqa: E402
from heldout_style import heldout_tracks  # noqa: E402

from ncajax.config import CorpusConfig, TrainConfig, preset  # noqa: E402
from ncajax.separation import _evaluate as evaluate  # noqa: E402
from ncajax.study import _pipeline as pipeline  # noqa: E402


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x {os.cpu_count()}"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} x {os.cpu_count()}"


def _gains(result: dict, models: list[str]) -> dict[str, list[float]]:
    """Per model: per seed, the median over tracks of (model vocals SDR - mixture vocals SDR)."""
    per = result["per_track"]
    out: dict[str, list[float]] = {}
    for key in per:
        if key in evaluate.REFERENCES:
            continue
        name = key.split("/seed")[0]
        diffs = [row["vocals"]["SDR"] - per["mixture"][t]["vocals"]["SDR"]
                 for t, row in per[key].items()
                 if row.get("vocals") and row["vocals"].get("SDR") is not None
                 and per["mixture"][t].get("vocals") and per["mixture"][t]["vocals"].get("SDR") is not None]
        out.setdefault(name, []).append(float(np.median(diffs)) if diffs else float("nan"))
    return {m: out.get(m, []) for m in models}


def _fmt(vals: list[float]) -> str:
    if not vals:
        return "n/a"
    v = np.asarray(vals)
    return f"{np.median(v):+6.2f} [{v.min():+.2f}, {v.max():+.2f}]"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--realism", nargs="+", default=["v3", "v4"])
    ap.add_argument("--models", nargs="+", default=["dae", "dae_deep", "dae_sf"])
    ap.add_argument("--heldout", type=int, default=8, help="held-out-style songs (0: none)")
    ap.add_argument("--corpus-seed", type=int, default=CorpusConfig.seed)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--out", default=None, help="training run directories (default: a temp folder)")
    ap.add_argument("--json", action="store_true", help="also print per-seed JSON records")
    args = ap.parse_args(argv)

    stft = preset(args.preset)
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit = "?"
    print(f"# bench_transfer: {_cpu()}, {time.strftime('%Y-%m-%d')}, commit {commit} (working tree)")
    print("# command: python benchmarks/" + " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]))
    print(f"# preset {args.preset} ({stft.sample_rate} Hz, N = {stft.n_bins}), {args.seeds} seeds, "
          "default TrainConfig; vocals SDR gain over the mixture (BSS Eval v4), median over seeds "
          "[min, max] of the median over tracks", flush=True)
    real = common.real_track(stft.sample_rate)
    held = heldout_tracks(args.heldout, stft.sample_rate) if args.heldout else []
    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_transfer-")
    root = Path(args.out or tmp.name)
    cache_root = pipeline.default_cache_root()
    rows, timings = {}, {}
    for realism in args.realism:
        ccfg = CorpusConfig(seed=args.corpus_seed, sample_rate=stft.sample_rate, realism=realism)
        t0 = time.perf_counter()
        data = pipeline.prepare_data(preset_name=args.preset, corpus_cfg=ccfg, cache_root=cache_root,
                                     progress=False)
        t_data = time.perf_counter() - t0
        t0 = time.perf_counter()
        trained = pipeline.train_all(data, root / realism, model_names=tuple(args.models),
                                     train_cfg=TrainConfig(n_seeds=args.seeds), progress=False)
        t_train = time.perf_counter() - t0
        from ncajax.models import predict
        from ncajax.training import load_trained

        predictors, own = {}, {}
        for name in args.models:
            tr = load_trained(root / realism / name, expect={"name": name})
            imp = trained[name].result.get("test_improvement_db")
            own[name] = [float(v) for v in imp] if imp is not None else []
            for s in range(tr.train_cfg.n_seeds):
                params = tr.seed_params(s)
                predictors[f"{name}/seed{tr.train_cfg.seed + s}"] = (
                    lambda x, m=tr.model, p=params: predict(m, p, x))
        t0 = time.perf_counter()
        real_g = _gains(evaluate.evaluate_tracks(predictors, [real], stft), args.models) if real else {}
        held_g = _gains(evaluate.evaluate_tracks(predictors, held, stft), args.models) if held else {}
        t_eval = time.perf_counter() - t0
        timings[realism] = {"data_s": round(t_data, 1), "train_s": round(t_train, 1),
                            "eval_s": round(t_eval, 1)}
        for name in args.models:
            rows[(name, realism)] = {"real": real_g.get(name, []), "heldout": held_g.get(name, []),
                                     "own_test": own[name]}
            if args.json:
                print(json.dumps({"bench": "transfer", "model": name, "realism": realism,
                                  **rows[(name, realism)]}))
        print(f"# {realism}: data {t_data:.0f} s, training {t_train:.0f} s, evaluation {t_eval:.0f} s",
              flush=True)
    print()
    head = (f"{'model':<9} {'corpus':<7} {'real track (1 song)':>24} "
            f"{f'held-out style ({len(held)} songs)':>28} {'own test (mag SDR)':>24}")
    print(head)
    print("-" * len(head))
    for name in args.models:
        for realism in args.realism:
            r = rows[(name, realism)]
            print(f"{name:<9} {realism:<7} {_fmt(r['real']):>24} {_fmt(r['heldout']):>28} "
                  f"{_fmt(r['own_test']):>24}")
    print()
    print("# timings " + json.dumps(timings))
    if tmp is not None:
        tmp.cleanup()
    return {"rows": {f"{k[0]}/{k[1]}": v for k, v in rows.items()}, "timings": timings}


if __name__ == "__main__":
    main()
