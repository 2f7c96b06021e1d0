"""`ncajax-sisec {evaluate,aggregate}`: the command line of the SiSEC-2018-comparable evaluation
(`ncajax.separation.evaluate_sisec`, `aggregate_runs`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..separation._sisec import (
    _write_atomic,
    aggregate_runs,
    evaluate_sisec,
    mixture_baseline,
    model_separator,
    stereo_tracks,
)
from . import _errors as cli

PROG = "ncajax-sisec"


def _parser():
    p = argparse.ArgumentParser(
        prog=PROG,
        description="SiSEC 2018-comparable scores (stereo, the tracks' own rate, museval BSS Eval v4 "
                    "per-track JSON, nSDR) of a trained ncajax run on MUSDB18 / MUSDB18-HQ tracks, or "
                    "the aggregate of result folders.")
    sub = p.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="score one trained model (or the mixture) on tracks")
    ev.add_argument("run_dir", help="training run directory (e.g. runs/x/train/dae_sf), or 'mixture' "
                                    "for SiSEC's MIX reference")
    ev.add_argument("--root", required=True, type=Path, help="MUSDB18 or MUSDB18-HQ root (holds test/)")
    ev.add_argument("--subset", default="test", help="subset folder (default test)")
    ev.add_argument("--track", action="append", default=None, help="only this track (repeatable)")
    ev.add_argument("--seed-index", type=int, default=0, help="which seed of the run (default 0)")
    ev.add_argument("--start", type=float, default=0.0, help="excerpt start, s (default 0)")
    ev.add_argument("--duration", type=float, default=None, help="excerpt length, s (default: whole)")
    ev.add_argument("--chunk", type=int, default=4096, help="STFT frames per model call")
    ev.add_argument("--out", required=True, type=Path, help="results folder (one per model and seed)")
    ag = sub.add_parser("aggregate", help="aggregate result folders (across tracks and runs)")
    ag.add_argument("folders", nargs="+", type=Path)
    ag.add_argument("--out", type=Path, default=None, help="write the aggregate JSON here")
    return p


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "evaluate":
        tracks = stereo_tracks(args.root, args.subset, names=args.track, start=args.start,
                               duration=args.duration)
        separator = (mixture_baseline() if args.run_dir == "mixture" else
                     model_separator(args.run_dir, seed_index=args.seed_index, chunk=args.chunk))
        result = evaluate_sisec(separator, tracks, args.out, progress=None)
    else:
        result = aggregate_runs(args.folders)
        if args.out is not None:
            _write_atomic(args.out, json.dumps(result, indent=2, allow_nan=True) + "\n")
    print(json.dumps(result, indent=2, allow_nan=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`ncajax-sisec evaluate RUN_DIR --root MUSDB --out DIR` / `... aggregate DIR...`;
    bad input is one `error:` line on stderr and exit code 2 (`ncajax.cli`)."""
    return cli.run_guarded(_main, argv, prog=PROG)
