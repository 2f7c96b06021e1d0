"""Coverage of the seed x song intervals (`ncajax.stats.seed_song_bootstrap`) at nominal 95 %.

Simulates synthetic seed x song tables with a known mean (`stats.synthetic_tables`: additive seed effect
+ song effect + seed x song noise, the two-way structure of the study's tables) and counts how often each
method's interval contains the truth (`stats.interval_coverage`, vectorised NumPy), per method x n_songs
x variance mix x design:
- design "one": one table (the per-seed-per-song difference, e.g. `vs_gain` / `vs_zero` in verdict.py);
- design "two": two models with seeds of their own and shared songs (`direction` in verdict.py).
Variance mixes (sd of seed, song, noise) are `stats.VARIANCE_MIXES`; "skewed-song" draws the song
effects from a centred lognormal (skewness ~1.75), a stress test beyond the normal model.

    python benchmarks/bench_coverage.py [--quick] [--n-seeds 10] [--n-songs 6 30] [--n-rep 10000]
        [--n-rep-boot 2000] [--n-boot 1000] [--designs one two] [--methods t percentile bootstrap-t]

Prints one `BENCH {json}` line per cell and a table of coverage per method. `mc_se` is the binomial
Monte-Carlo standard error of a coverage (about 0.002 at 10000 replicates, 0.005 at 2000). Deterministic.
(~9 min on 2 CPU cores, nearly all of it the bootstrap-t; `--methods t percentile` ~1 min;
`--quick` ~15 s.)
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import common

from ncajax import stats


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few replicates (smoke run)")
    ap.add_argument("--n-seeds", type=int, default=10)
    ap.add_argument("--n-songs", type=int, nargs="+", default=[6, 30])
    ap.add_argument("--n-rep", type=int, default=10000, help="replicates per cell, method t")
    ap.add_argument("--n-rep-boot", type=int, default=2000, help="replicates per cell, bootstrap methods")
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap draws per interval")
    ap.add_argument("--designs", nargs="+", default=["one", "two"], choices=["one", "two"])
    ap.add_argument("--methods", nargs="+", default=list(stats.METHODS), choices=list(stats.METHODS))
    ap.add_argument("--mixes", nargs="+", default=list(stats.VARIANCE_MIXES), choices=list(stats.VARIANCE_MIXES))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.quick:
        args.n_rep, args.n_rep_boot, args.n_boot = 2000, 300, 200
    cmd = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    print(f"# bench_coverage: {cpu_model()}, nominal {stats.CONFIDENCE:.0%}, default method "
          f"{stats.DEFAULT_METHOD!r}, n_seeds {args.n_seeds}", flush=True)
    print(f"# command: {cmd}", flush=True)
    common.emit({"bench": "coverage", "kind": "machine", "cpu": cpu_model(), "command": cmd})
    rows: list[dict] = []
    pivot: dict[tuple, dict] = {}
    for design in args.designs:
        for n_songs in args.n_songs:
            for mix in args.mixes:
                key = (design, n_songs, mix)
                cell = pivot.setdefault(key, {"design": design, "n_songs": n_songs, "mix": mix})
                for method in args.methods:
                    n_rep = args.n_rep if method == "t" else args.n_rep_boot
                    t0 = time.perf_counter()
                    r = stats.interval_coverage(method, n_seeds=args.n_seeds, n_songs=n_songs, mix=mix,
                                                design=design, n_rep=n_rep, n_boot=args.n_boot,
                                                seed=args.seed)
                    r["seconds"] = time.perf_counter() - t0
                    common.emit({"bench": "coverage", "kind": "cell", "n_boot": args.n_boot, **r})
                    rows.append(r)
                    cell[method] = f"{r['coverage']:.3f}±{r['mc_se']:.3f}"
                    cell[f"w_{method}"] = r["mean_width"]
    print()
    print("coverage ± Monte-Carlo se per method; w_* = mean interval width "
          f"(n_rep {args.n_rep} for t, {args.n_rep_boot} for the bootstraps, n_boot {args.n_boot})")
    columns = ["design", "n_songs", "mix", *args.methods, *(f"w_{m}" for m in args.methods)]
    print(common.table(list(pivot.values()), columns))
    return rows


if __name__ == "__main__":
    main()
