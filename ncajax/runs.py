"""Run directories: each stage writes into its own directory its config, provenance and metric history.

Layout of a run directory::

    config.json     the stage's full configuration (what decides whether a finished run can be reused)
    meta.json       git commit, package versions, command line, host, start time
    metrics.jsonl   one JSON object per line (per epoch / per fit), appended as work progresses
    result.json     written last, atomically: its presence means the stage finished

A directory holding a finished run of a *different* config is never overwritten: `open_run` raises and
names the differing fields; the user picks another directory or removes it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from .config import mismatch

__all__ = [
    "PACKAGES",
    "RECIPE_CONTROL_DIR",
    "SPECTROGRAMS_FILE",
    "append_metrics",
    "finish",
    "finished_result",
    "git_commit",
    "is_finished",
    "open_run",
    "package_versions",
    "read_json",
    "read_metrics",
    "truncate_metrics",
    "write_json",
]

SPECTROGRAMS_FILE = "spectrograms.npz"
RECIPE_CONTROL_DIR = "control"  # the study's recipe control: <run>/control/{train,mappings}
"""In the evaluation stage's directory: the test excerpt the spectrogram figure draws (written by
`ncajax.study.evaluate_all`, read by `ncajax.plots`)."""

PACKAGES = (
    "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "librosa", "musdb", "museval",
    "soundfile", "matplotlib",
)


def git_commit(repo: Path | None = None) -> str:
    """The commit of the ncajax checkout (with `+dirty` when it has changes), or "unknown"."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo, capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("+dirty" if dirty else "")) if sha else "unknown"


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename), so a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def open_run(run_dir: Path, config: dict) -> Path:
    """Create or reopen `run_dir` for `config`.

    A fresh directory gets config.json and meta.json. A directory with the same config is reopened (to
    resume or to reuse a finished result). A directory with a different config raises ValueError naming
    the differing fields: nothing a user produced is overwritten silently.
    """
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    config = json.loads(json.dumps(config, default=_json_default))
    if cfg_path.exists():
        found = read_json(cfg_path)
        diff = mismatch(config, found)
        if diff:
            state = "a finished run" if is_finished(run_dir) else "a run"
            raise ValueError(
                f"{run_dir} already holds {state} with a different config ({'; '.join(diff[:6])}). "
                "Choose another --run-dir (or --out), or delete that directory to start over."
            )
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(cfg_path, config)
    meta = {
        "git_commit": git_commit(),
        "versions": package_versions(),
        "argv": sys.argv,
        "host": platform.node(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    history = read_json(run_dir / "meta.json").get("sessions", []) if (run_dir / "meta.json").exists() else []
    write_json(run_dir / "meta.json", {**meta, "sessions": history + [meta["started"]]})
    return run_dir


def append_metrics(run_dir: Path, record: dict) -> None:
    """Append one record to metrics.jsonl (flushed and fsynced: it survives a kill)."""
    line = json.dumps(record, sort_keys=True, default=_json_default)
    with open(Path(run_dir) / "metrics.jsonl", "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill mid-write
                break
    return out


def truncate_metrics(run_dir: Path, keep) -> None:
    """Keep only records for which `keep(record)` is true (used when resuming from a checkpoint)."""
    records = [r for r in read_metrics(run_dir) if keep(r)]
    path = Path(run_dir) / "metrics.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    os.replace(tmp, path)


def finish(run_dir: Path, result: dict) -> None:
    write_json(Path(run_dir) / "result.json", result)


def is_finished(run_dir: Path) -> bool:
    return (Path(run_dir) / "result.json").exists()


def finished_result(run_dir: Path, config: dict) -> dict | None:
    """The result of a finished run with exactly `config`, else None."""
    run_dir = Path(run_dir)
    if not is_finished(run_dir) or not (run_dir / "config.json").exists():
        return None
    config = json.loads(json.dumps(config, default=_json_default))
    if mismatch(config, read_json(run_dir / "config.json")):
        return None
    return read_json(run_dir / "result.json")
