"""Separation quality of the trained separators: museval SDR/SIR/SAR and magnitude SDR on the test tracks.

Run (after experiments/train_separators.py, with the same data options):
    python experiments/evaluate_separation.py
    python experiments/evaluate_separation.py --musdb-root ~/musdb18 --preset paper --train-dir runs/musdb/train

Every model and seed is scored next to two references, the mixture itself and the oracle ideal ratio mask
at the same STFT (median over 1-s frames, then over tracks, as in SiSEC). Yields --out/result.json.
"""

from __future__ import annotations

import argparse
import json

from ncajax import pipeline


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pipeline.add_data_arguments(ap, stage_dirs=("runs/default/train", "runs/default/evaluation"))
    ap.add_argument("--no-bss", action="store_true", help="magnitude SDR only (no museval/ffmpeg)")
    args = ap.parse_args(argv)
    data = pipeline.data_from_arguments(args)
    result = pipeline.evaluate_all(data, args.train_dir, args.out, model_names=tuple(args.models),
                                   with_bss=not args.no_bss)
    summary = {k: {"mag_sdr": v.get("mag_sdr"), "vocals_SDR": (v.get("vocals") or {}).get("SDR")}
               for k, v in result["summary"].items()}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    from ncajax import cli

    cli.exit(main)
