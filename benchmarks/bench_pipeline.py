"""The README's main job end to end, per stage, from the job's own timings file.

By default reads `runs/default/timings.json` (written by `experiments/reproduce.py`). With `--run` it
first runs `experiments/reproduce.py --out <temporary dir>` (extra arguments after `--` are passed on)
and reads `<dir>/timings.json`, also timing the whole command from outside.

timings.json: a JSON object whose numeric leaves are seconds (nested objects are flattened to
`stage.sub` names); a `total_s` / `total` entry, when present, is the total.

With `--fresh-clone` it measures what a new user waits for: `git clone` of this repository's HEAD into
a temporary folder, then the README's `make reproduce` there (a new virtualenv, an empty corpus and
feature cache), timed from outside; the target is 10 minutes on the 2-core machine.

    python benchmarks/bench_pipeline.py [--timings runs/default/timings.json]
    python benchmarks/bench_pipeline.py --run [-- --extra reproduce args]
    python benchmarks/bench_pipeline.py --fresh-clone
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

TARGET_S = 600.0  # the default main job, fresh clone included: under 10 minutes on the 2-core machine


def flatten(data, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        out[prefix[:-1]] = float(data)
    return out


def read_timings(path: Path) -> dict[str, float]:
    if not path.is_file():
        raise FileNotFoundError(
            f"no timings file {path}: run the main job first (make reproduce) or pass --run"
        )
    return flatten(json.loads(path.read_text()))


def main(argv=None) -> list[dict]:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    ap = common.parser(__doc__)
    ap.add_argument("--timings", type=Path, default=common.REPO / "runs/default/timings.json")
    ap.add_argument("--run", action="store_true", help="run experiments/reproduce.py first")
    ap.add_argument("--fresh-clone", action="store_true",
                    help="clone HEAD into a temporary folder and time `make reproduce` there from scratch")
    args = ap.parse_args(argv)
    info = common.header("bench_pipeline")
    wall = None
    with tempfile.TemporaryDirectory(prefix="ncajax-reproduce-") as tmp:
        path = args.timings
        if args.fresh_clone:
            clone = Path(tmp) / "ncajax"
            subprocess.run(["git", "clone", "-q", str(common.REPO), str(clone)], check=True)
            env = {**os.environ, "NCAJAX_CACHE": str(Path(tmp) / "cache")}
            print(f"# running: make reproduce in a fresh clone of HEAD ({clone})", flush=True)
            t0 = time.perf_counter()
            subprocess.run(["make", "reproduce"], check=True, cwd=clone, env=env)
            wall = time.perf_counter() - t0
            path = clone / "runs/default/timings.json"
        elif args.run:
            cmd = [sys.executable, str(common.REPO / "experiments/reproduce.py"), "--out", tmp, *extra]
            print("# running: " + " ".join(cmd), flush=True)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=common.REPO)
            wall = time.perf_counter() - t0
            path = Path(tmp) / "timings.json"
        stages = read_timings(path)
    total = next((stages[k] for k in ("total_s", "total", "wall_s") if k in stages), None)
    if total is None:
        total = sum(stages.values())
    if args.fresh_clone:
        total = wall  # venv set-up and everything else a new user waits for
    rows = [{"bench": "pipeline", "stage": k, "seconds": v, "platform": info["platform"]}
            for k, v in stages.items() if k not in ("total_s", "total", "wall_s")]
    summary = {"bench": "pipeline", "stage": "TOTAL", "seconds": total, "outside_wall_s": wall,
               "source": os.path.relpath(path), "target": f"< {TARGET_S:.0f} s", "met": bool(total < TARGET_S),
               "platform": info["platform"]}
    for rec in rows + [summary]:
        common.emit(rec)
    print(common.table(rows + [summary], ["stage", "seconds", "outside_wall_s", "met"]), flush=True)
    return rows + [summary]


if __name__ == "__main__":
    main()
