"""The main job: corpus -> features -> three separators x seeds -> mapping fits -> evaluation -> figures
-> report, each stage through its own run directory and checkpoints.

Run (the README's `make reproduce` does this in a fresh virtualenv):
    python experiments/reproduce.py                               # embedded synthetic corpus
    python experiments/reproduce.py --musdb-root ~/musdb18 --preset paper --out runs/musdb
    python experiments/reproduce.py --musdb-root ../shared/data/musdb18-sample --out runs/sample

Yields under --out (default runs/default): train/<model>/ (checkpoints, metrics), mappings/ (matrices,
fit metrics), evaluation/ (museval and magnitude SDR), figures/ (PNG + PDF), REPORT.md (tables and the
conclusion computed from them) and timings.json (wall time of every stage). A stage whose outputs exist
for the same config is skipped, so re-running after an interruption continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ncajax import mappings, pipeline, runs
from ncajax.config import CorpusConfig, TrainConfig, preset


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/default", help="run directory of the whole study")
    ap.add_argument("--musdb-root", default=None, help="MUSDB18 root (stems) or MUSDB18-HQ root (--is-wav)")
    ap.add_argument("--is-wav", action="store_true", help="read --musdb-root as MUSDB18-HQ wav folders")
    ap.add_argument("--preset", default="fast", help="STFT preset: fast (8 kHz, N=129) or paper (N=2049)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per model (trained in one program)")
    ap.add_argument("--epochs", type=int, default=TrainConfig.max_epochs)
    ap.add_argument("--fit-steps", type=int, default=3000, help="steps of the converged NCA/student fits")
    ap.add_argument("--fit-lr", type=float, default=1e-3, help="learning rate of the converged fits")
    ap.add_argument("--fit-frames", type=int, default=1024, help="pooled frames each mapping is fitted on")
    ap.add_argument("--heldout-tracks", type=int, default=2, help="test tracks held out from the fits")
    ap.add_argument("--no-bss", action="store_true", help="skip museval (magnitude SDR only)")
    ap.add_argument("--figures-dir", default=None, help="also copy the figures and REPORT.md here")
    ap.add_argument("--corpus-tracks", type=int, nargs=2, default=None, metavar=("TRAIN", "TEST"),
                    help="size of the embedded corpus (default 24 6)")
    ap.add_argument("--corpus-seconds", type=float, default=None, help="duration of each corpus track")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    def stage(name, fn):
        print(f"== {name} ==", flush=True)
        t0 = time.perf_counter()
        value = fn()
        timings[name] = round(time.perf_counter() - t0, 2)
        print(f"   {name}: {timings[name]:.1f} s", flush=True)
        return value

    corpus_cfg = None
    if args.musdb_root is None:
        kw = {"sample_rate": preset(args.preset).sample_rate}
        if args.corpus_tracks:
            kw.update(n_train=args.corpus_tracks[0], n_test=args.corpus_tracks[1])
        if args.corpus_seconds:
            kw["duration"] = args.corpus_seconds
        corpus_cfg = CorpusConfig(**kw)
    data = stage("data", lambda: pipeline.prepare_data(
        musdb_root=args.musdb_root, is_wav=args.is_wav or None, preset_name=args.preset,
        corpus_cfg=corpus_cfg))
    timings.update({f"data.{k}": round(v, 2) for k, v in data.timings.items()})
    train_cfg = TrainConfig(max_epochs=args.epochs, n_seeds=args.seeds)
    stage("train", lambda: pipeline.train_all(data, out / "train", train_cfg=train_cfg))
    fit_cfg = mappings.MappingConfig(
        settings=mappings.default_settings(args.fit_steps, args.fit_lr),
        n_fit_frames=args.fit_frames, heldout_tracks=args.heldout_tracks,
    )
    stage("mappings", lambda: pipeline.fit_all(data, out / "train", out / "mappings", cfg=fit_cfg))
    stage("evaluate", lambda: pipeline.evaluate_all(data, out / "train", out / "evaluation",
                                                    with_bss=not args.no_bss))
    from ncajax import plots, report

    stage("figures", lambda: plots.make_all(out, out / "figures", data=data))
    stage("report", lambda: report.write_report(out, out / "REPORT.md", timings=timings))
    timings["total"] = round(time.perf_counter() - t_all, 2)
    runs.write_json(out / "timings.json", timings)
    if args.figures_dir:
        report.copy_outputs(out, Path(args.figures_dir))
    print(json.dumps(timings, indent=1))
    print(f"report: {out / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
