"""The trained models shipped with ncajax: seed 0 of `dae`, `dae_deep` and `dae_sf` at the `fast` preset
(8 kHz, n_fft 256, N = 129 bins), trained with the study's recipe (`TrainConfig()`) on the default
embedded corpus, so that separation and the mapping analysis work without training.

Each model is an ordinary training run directory, `ncajax/pretrained/<model>/` (config.json,
scaling.json, result.json, metrics.jsonl, meta.json and `checkpoints/` with its latest step, which holds
the best params), loaded through the same code path as any run (`ncajax.training.load_trained`).
`PROVENANCE.json` next to them records the command that regenerates them
(`python experiments/make_pretrained.py`), the commit, the measured numbers and a SHA-256 of every
file, which `check` verifies before a shipped model is used: a missing, truncated or replaced file
(a Git LFS pointer, a run of another model or size) is refused with an error naming it.

    from ncajax import pretrained
    trained = pretrained.load("dae_sf")          # an ncajax.training.Trained
    pretrained.run_dir("dae_sf")                 # its directory, for `ncajax map --model-dir`

On the command line a model name stands for its shipped run wherever a run directory is asked for:
`ncajax separate dae_sf song.wav`, `ncajax map --model-dir dae_sf --mixture mix.npy`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..config import MODEL_NAMES, preset
from ..training._train import load_trained

__all__ = ["NAMES", "PRETRAINED_DIR", "PROVENANCE_FILE", "check", "load", "provenance", "resolve", "run_dir"]

PRETRAINED_DIR = Path(__file__).resolve().parent
PROVENANCE_FILE = "PROVENANCE.json"
NAMES = MODEL_NAMES
REGENERATE = "python experiments/make_pretrained.py"


def _unknown(name: str) -> ValueError:
    return ValueError(f"no shipped model {name!r}; the shipped models are {', '.join(NAMES)} "
                      "(or pass a training run directory)")


def run_dir(name: str, *, root: str | os.PathLike | None = None) -> Path:
    """The run directory of the shipped model `name` (one of `NAMES`)."""
    if name not in NAMES:
        raise _unknown(name)
    return Path(root or PRETRAINED_DIR) / name


def provenance(*, root: str | os.PathLike | None = None) -> dict:
    """PROVENANCE.json of the shipped models: command, commit, config, measured numbers, checksums."""
    path = Path(root or PRETRAINED_DIR) / PROVENANCE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the shipped models are incomplete; regenerate them "
                                f"with `{REGENERATE}` or reinstall ncajax")
    return json.loads(path.read_text())


def check(name: str, *, root: str | os.PathLike | None = None, folder: str | os.PathLike | None = None) -> Path:
    """Verify the files of shipped model `name` against PROVENANCE.json (present, same SHA-256, no file
    missing from the checkpoint); returns its run directory. `folder`: check that directory instead of
    the shipped one (a copy). Raises ValueError naming the first differing files."""
    folder = Path(folder) if folder is not None else run_dir(name, root=root)
    if name not in NAMES:
        raise _unknown(name)
    expected = provenance(root=root)["models"][name]["sha256"]
    problems = []
    for rel, digest in expected.items():
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{rel} differs from the shipped file")
    if problems:
        raise ValueError(
            f"shipped model {name} in {folder} does not match its recorded files ({'; '.join(problems[:4])}"
            f"{'; ...' if len(problems) > 4 else ''}): a checkout without the weights (e.g. a Git LFS "
            f"pointer) or files of another model. Reinstall ncajax, or regenerate them with `{REGENERATE}`"
        )
    return folder


def load(name: str, *, root: str | os.PathLike | None = None, verify: bool = True):
    """The shipped model `name` as an `ncajax.training.Trained` (one seed: seed 0), loaded with
    `train.load_trained` and checked to be that model (name and N = 129 bins of its config); `verify`
    also checks every file against PROVENANCE.json first (`check`)."""
    folder = check(name, root=root) if verify else run_dir(name, root=root)
    return load_run(folder, name)


def load_run(folder: str | os.PathLike, name: str):
    """`train.load_trained(folder)`, refusing a run that is not model `name` at the shipped size."""

    return load_trained(Path(folder), expect={"name": name, "n_bins": preset("fast").n_bins})


def resolve(spec: str | os.PathLike) -> Path:
    """A run directory for `spec`: the path itself when it exists (or is not a model name), else the
    shipped run of the model it names (`ncajax separate dae_sf song.wav`)."""
    path = Path(spec)
    if not path.exists() and str(spec) in NAMES:
        return check(str(spec))
    return path
