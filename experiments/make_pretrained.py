"""Regenerate the trained models shipped with ncajax (`ncajax/pretrained/<model>/`).

Run (from the repository root; 22 s on 2 CPU cores on 2026-12-07, most of it training):

    python experiments/make_pretrained.py
    python experiments/make_pretrained.py --work runs/pretrained --dest ncajax/pretrained \
        --real-root ../shared/data/musdb18-sample

What it does:
1. the data of the study's default: `study.prepare_data()` (the embedded synthetic corpus, seed 0,
   60 + 30 songs of 5 s, the `fast` preset: 8 kHz, n_fft 256, N = 129 bins);
2. trains seed 0 of `dae`, `dae_deep` and `dae_sf` with the default `TrainConfig()` (the study's recipe:
   standardised, +-12 dB gain augmentation, MSE for the DAEs and L1 for dae_sf, mask bias 1; n_seeds=1)
   through `study.train_all`, into `--work/<model>/` (reused when finished with the same config);
3. copies each run directory to `--dest/<model>/` as it is, except that `checkpoints/` keeps only the
   latest step: `train.load_trained` restores the latest step's `best_params` (training-space params,
   folded with `scaling.json` on load), so the best-by-validation step the CheckpointManager also keeps
   is a second copy of what the latest step already holds (Orbax's commit_success.txt markers, which
   name the absolute path of the save, are left out too: a local restore does not read them). A
   shipped model is therefore an ordinary
   training run directory and loads through the same code path as any run (`load_trained`);
4. loads every shipped copy back (`ncajax.pretrained.load`) and scores it on the real MUSDB18 track(s)
   under `--real-root` (`separation.evaluate_tracks`: mono at the model's rate, museval BSS Eval v4,
   median over 1 s windows; the numbers `ncajax evaluate --real-test` reports), next to the mixture;
5. writes `--dest/PROVENANCE.json`: this command, the commit (and the tracked files that differed from
   it), the date, the package versions, the
   training config, per model the test-song magnitude SDR, epochs, training time and the real-track
   scores, the size of each run directory and a SHA-256 of every shipped file (what
   `ncajax.pretrained.check` verifies before a shipped model is used).
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ncajax import pretrained, runs, separation, study  # noqa: E402
from ncajax.config import MODEL_NAMES, TrainConfig, to_dict  # noqa: E402
from ncajax.data import all_tracks, load_track  # noqa: E402
from ncajax.models import predict  # noqa: E402

RUN_FILES = ("config.json", "meta.json", "metrics.jsonl", "result.json", "scaling.json")


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "pretrained",
                    help="where the training runs are written (kept: a rerun reuses them)")
    ap.add_argument("--dest", type=Path, default=pretrained.PRETRAINED_DIR,
                    help="where the shipped run directories and PROVENANCE.json go")
    ap.add_argument("--real-root", type=Path, default=REPO.parent / "shared" / "data" / "musdb18-sample",
                    help="MUSDB18 folder whose tracks the shipped models are scored on")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap.parse_args(argv)


def ship(run_dir: Path, dest: Path) -> None:
    """Copy one training run to `dest`: its files and only the latest checkpoint step."""
    from ncajax import checkpoints

    mngr = checkpoints.manager(run_dir / "checkpoints")
    try:
        step = mngr.latest_step()
    finally:
        mngr.close()
    if step is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in RUN_FILES:
        shutil.copy2(run_dir / name, dest / name)
    # commit_success.txt only marks a finished save on object stores without atomic renames (and names
    # the absolute path it was written to); a local restore never reads it
    shutil.copytree(run_dir / "checkpoints" / str(step), dest / "checkpoints" / str(step),
                    ignore=shutil.ignore_patterns("commit_success.txt"))


def modified_files() -> list[str]:
    """The tracked files that differ from the commit (a "+dirty" commit: what the weights also depend on)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted(line[3:] for line in out.splitlines() if line.strip())


def dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def manifest(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `folder`."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def real_scores(dest: Path, real_root: Path, stft) -> dict:
    """Every shipped model (loaded from `dest`) on the real tracks: museval and magnitude SDR."""
    trained = {name: pretrained.load(name, root=dest, verify=False) for name in MODEL_NAMES}
    predictors = {name: (lambda x, t=t: predict(t.model, t.seed_params(0), x)) for name, t in trained.items()}
    tracks = [load_track(ref, stft.sample_rate) for ref in all_tracks(real_root)]
    result = separation.evaluate_tracks(predictors, tracks, stft, with_bss=True)
    out = {"tracks": [t.name for t in tracks]}
    for name, s in result["summary"].items():
        out[name] = {"vocals_sdr_db": s["vocals"]["SDR"], "vocals_sir_db": s["vocals"]["SIR"],
                     "vocals_sar_db": s["vocals"]["SAR"], "accompaniment_sdr_db": s["accompaniment"]["SDR"],
                     "vocals_mag_sdr_db": s["mag_sdr"]}
    return out


def main(argv=None) -> dict:
    args = parse(argv)
    t0 = time.perf_counter()
    data = study.prepare_data(progress=not args.no_progress)
    train_cfg = TrainConfig()
    t1 = time.perf_counter()
    results = study.train_all(data, args.work, train_cfg=train_cfg, progress=not args.no_progress)
    train_s = time.perf_counter() - t1
    args.dest.mkdir(parents=True, exist_ok=True)
    for name in MODEL_NAMES:
        ship(args.work / name, args.dest / name)
    real = real_scores(args.dest, args.real_root, data.stft)
    models = {}
    for name in MODEL_NAMES:
        r = results[name].result
        models[name] = {
            "test_mag_sdr_db": r["test_mag_sdr_db"][0],
            "test_mixture_mag_sdr_db": r["test_mixture_mag_sdr_db"],
            "epochs": r["epochs"], "stopped_early": r["stopped_early"], "train_wall_s": r["wall_s"],
            "real": real[name],
            "bytes": dir_bytes(args.dest / name),
            "sha256": manifest(args.dest / name),
        }
    provenance = {
        "command": " ".join(["python experiments/make_pretrained.py", *(sys.argv[1:] if argv is None else argv)]),
        "git_commit": runs.git_commit(REPO),
        "modified_files": modified_files(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"machine": platform.machine(), "processor": platform.processor() or platform.machine()},
        "versions": runs.package_versions(),
        "data": {k: v for k, v in data.description.items() if k not in ("root", "tracks")},
        "train": to_dict(train_cfg),
        "stft": to_dict(data.stft),
        "real_tracks": real["tracks"],
        "real_mixture": real["mixture"],
        "real_oracle_irm": real["oracle_irm"],
        "models": models,
        "total_bytes": int(sum(m["bytes"] for m in models.values())),
        "wall_s": {"total": time.perf_counter() - t0, "training_this_call": train_s,
                   "training_recorded": sum(m["train_wall_s"] for m in models.values())},
    }
    runs.write_json(args.dest / pretrained.PROVENANCE_FILE, provenance)
    print(f"wrote {args.dest} ({provenance['total_bytes'] / 1e6:.2f} MB in run directories)")
    for name in MODEL_NAMES:
        m = models[name]
        print(f"  {name:9s} test mag SDR {m['test_mag_sdr_db']:.2f} dB, real track vocals SDR "
              f"{m['real']['vocals_sdr_db']:.3f} dB (mixture {real['mixture']['vocals_sdr_db']:.3f} dB), "
              f"{m['bytes'] / 1e6:.2f} MB")
    print(f"real-track vocals SDR per model (dB): "
          f"{np.round([models[n]['real']['vocals_sdr_db'] for n in MODEL_NAMES], 3).tolist()}")
    return provenance


if __name__ == "__main__":
    from ncajax import cli

    cli.exit(main)
