"""The main job: corpus -> features -> three separators x 10 seeds -> mapping fits (fitted on the training
songs, judged on unseen test songs) -> evaluation -> figures -> report with the verdict and its seed x song
intervals.

Run (the README's `make reproduce` does the first in a fresh virtualenv):
    python experiments/reproduce.py                               # embedded corpus, corpus seed 0
    python experiments/reproduce.py --corpora 3 --out runs/corpora --figures-dir figures   # the committed figures/
    python experiments/reproduce.py --corpus-seed 4 --out runs/corpus4
    python experiments/reproduce.py --preset mid --out runs/mid      # 16 kHz, N = 513 (the middle rung)
    python experiments/reproduce.py --musdb-root ~/musdb18 --preset paper --out runs/musdb
    python experiments/reproduce.py --musdb-root ../shared/data/musdb18-sample --out runs/sample --seeds 3

Yields under --out (default runs/default): train/<model>/ (checkpoints, metrics), mappings/ (matrices,
errors per seed and song, structure metrics), evaluation/ (museval and magnitude SDR, also on the real
MUSDB18 track of --real-test), figures/ (PNG + PDF), REPORT.md, conclusion.json and timings.json.
With --corpora K: one such study per corpus seed in --out/corpus-<seed>/, plus across_corpora.json and
--out/REPORT.md (the first corpus's report with the verdict across all K). A stage whose outputs exist
for the same config is skipped, so re-running after an interruption continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ncajax import study
from ncajax.config import (
    CONTROL_SEEDS,
    CONTROL_STEPS,
    FIT_LEARNING_RATE,
    FIT_STEPS,
    STUDY_SEEDS,
    TRAIN_RECIPES,
    TrainConfig,
)
from ncajax.pipeline import PRESET_HELP

REAL_TEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "musdb18-sample"


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="run directory (default runs/default, or runs/corpus<seed>)")
    ap.add_argument("--musdb-root", default=None, help="MUSDB18 root (stems) or MUSDB18-HQ root (--is-wav)")
    ap.add_argument("--is-wav", action="store_true", help="read --musdb-root as MUSDB18-HQ wav folders")
    ap.add_argument("--preset", default="fast", help=PRESET_HELP)
    ap.add_argument("--seeds", type=int, default=STUDY_SEEDS, help="seeds per model (trained in one vmapped program)")
    ap.add_argument("--epochs", type=int, default=TrainConfig.max_epochs)
    ap.add_argument("--fit-steps", type=int, default=FIT_STEPS, help="steps of the converged NCA/student fits")
    ap.add_argument("--fit-lr", type=float, default=FIT_LEARNING_RATE, help="learning rate of the converged fits")
    ap.add_argument("--control-steps", type=int, nargs="*", default=(), metavar="STEPS",
                    help="run the under-convergence control of the authors' and the converged NCA at these Adam "
                         f"step counts (the committed study: {' '.join(map(str, CONTROL_STEPS))}; default: none, "
                         "it costs 10,000-step fits; with --corpora only the first corpus runs it)")
    ap.add_argument("--control-seeds", type=int, default=CONTROL_SEEDS,
                    help="seeds per model of the under-convergence control (the first ones)")
    ap.add_argument("--recipe-control", action="store_true",
                    help="also train the models with the earlier raw-magnitude MSE recipe (3 seeds) and map them "
                         "with the primary estimator: what dying output units did to the mappings")
    ap.add_argument("--recipe", default="study", choices=sorted(TRAIN_RECIPES),
                    help="training recipe of the study's models (ncajax.config.TRAIN_RECIPES)")
    ap.add_argument("--fit-frames", type=int, default=None,
                    help="training-song frames each mapping is fitted on (default 4 N rounded up to a multiple "
                         "of 256, at least 1024: fast 1024, mid 2304, paper 8448; at least N)")
    ap.add_argument("--jacobian-chunk", type=int, default=None,
                    help="frames of per-frame Jacobians formed at a time, seed by seed (default: the most whose "
                         "(chunk, N, N) float32 block fits in 16 MiB on a CPU, 512 MiB on an accelerator)")
    ap.add_argument("--heldout-frames", type=int, default=256, help="frames of each unseen test song scored")
    ap.add_argument("--extra-settings", action="store_true",
                    help="also fit the NCA variants (output-unit bias, uniform init) and the student at 600 steps")
    ap.add_argument("--no-bss", action="store_true", help="skip museval (magnitude SDR only)")
    ap.add_argument("--corpus-seed", type=int, default=0, help="seed of the embedded corpus")
    ap.add_argument("--corpora", type=int, default=1, help="run the study on this many corpus seeds")
    ap.add_argument("--real-test", default=None,
                    help=f"MUSDB18 root scored as real music (default: {REAL_TEST.name} beside the repo, if present; "
                         "'none' to skip)")
    ap.add_argument("--figures-dir", default=None, help="also copy the figures and REPORT.md here")
    ap.add_argument("--corpus-tracks", type=int, nargs=2, default=None, metavar=("TRAIN", "TEST"),
                    help="size of the embedded corpus (default 60 30)")
    ap.add_argument("--corpus-seconds", type=float, default=None, help="duration of each corpus track")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    real = args.real_test
    if real is None:
        real = str(REAL_TEST) if any(REAL_TEST.glob("*/*.stem.mp4")) and not args.no_bss else None
    elif real.lower() == "none":
        real = None
    opts = study.StudyOptions(
        musdb_root=args.musdb_root, is_wav=args.is_wav, preset=args.preset, seeds=args.seeds,
        epochs=args.epochs, fit_steps=args.fit_steps, fit_lr=args.fit_lr, fit_frames=args.fit_frames,
        heldout_frames=args.heldout_frames, extra_settings=args.extra_settings, with_bss=not args.no_bss,
        corpus_seed=args.corpus_seed, corpus_tracks=tuple(args.corpus_tracks) if args.corpus_tracks else None,
        corpus_seconds=args.corpus_seconds, real_test=real, jacobian_chunk=args.jacobian_chunk,
        control_steps=tuple(args.control_steps), control_seeds=args.control_seeds,
        recipe_control=args.recipe_control, recipe=args.recipe)
    default_out = "runs/default" if args.corpus_seed == 0 else f"runs/corpus{args.corpus_seed}"
    out = Path(args.out or default_out)
    if args.corpora > 1:
        summary = study.run_corpora(out, opts, args.corpora, log=lambda s: print(s, flush=True))
        report_dir = study.corpus_dir(out, args.corpus_seed)
        print(json.dumps(summary["verdicts"], indent=1))
    else:
        print(json.dumps(study.run_study(out, opts, log=lambda s: print(s, flush=True)), indent=1))
        report_dir = out
    if args.figures_dir:
        import shutil

        from ncajax import report

        dest = Path(args.figures_dir)
        report.copy_outputs(report_dir, dest)
        # the numbers behind the report travel with it, so what the README quotes is committed
        for src in (report_dir / "conclusion.json", out / "across_corpora.json", out / "timings.json"):
            if src.exists():
                shutil.copy2(src, dest / src.name)
    print(f"report: {out / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    from ncajax import cli

    sys.exit(cli.run(main))
