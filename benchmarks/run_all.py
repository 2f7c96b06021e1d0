"""Run every benchmark (what `make bench` calls) and save all JSON lines to one file.

    python benchmarks/run_all.py [--quick] [--out benchmarks/results-<platform>.jsonl]
                                 [--only train nca features pipeline] [--pipeline-run]

`--quick`: N = 1025 only, few repeats (< 3 minutes on a GPU). The pipeline stage reads
runs/default/timings.json and is skipped with a note when the main job has not run yet
(`--pipeline-run` runs it in a temporary folder instead).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

import bench_features
import bench_nca
import bench_pipeline
import bench_train
import common

BENCHES = {"train": bench_train, "nca": bench_nca, "features": bench_features,
           "pipeline": bench_pipeline}


class Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        for st in self.streams:
            st.write(s)
        return len(s)

    def flush(self):
        for st in self.streams:
            st.flush()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="+", choices=list(BENCHES), default=list(BENCHES))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--pipeline-run", action="store_true")
    args = ap.parse_args(argv)
    info = common.machine()
    out = args.out or Path(__file__).parent / f"results-{info['platform']}.jsonl"
    buf = io.StringIO()
    t0 = time.perf_counter()
    failed = []
    with contextlib.redirect_stdout(Tee(sys.stdout, buf)):
        for name in args.only:
            bench_args = ["--quick"] if args.quick else []
            if name == "pipeline":
                bench_args = ["--run"] if args.pipeline_run else []
            print(f"\n## {name} {' '.join(bench_args)}", flush=True)
            try:
                BENCHES[name].main(bench_args)
            except FileNotFoundError as err:  # pipeline without a finished main job
                print(f"# skipped {name}: {err}", flush=True)
            except Exception as err:  # noqa: BLE001 - report and go on with the other benchmarks
                failed.append(name)
                print(f"# FAILED {name}: {type(err).__name__}: {err}", flush=True)
    lines = [ln[len("BENCH "):] for ln in buf.getvalue().splitlines() if ln.startswith("BENCH ")]
    out.write_text("\n".join(lines) + "\n")
    met = [json.loads(ln) for ln in lines]
    targets = [r for r in met if "met" in r]
    print(f"\n# {len(lines)} measurements -> {out} in {time.perf_counter() - t0:.0f} s; "
          f"targets met {sum(r['met'] for r in targets)}/{len(targets)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
