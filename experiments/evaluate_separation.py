"""Separation quality of the trained separators: museval SDR/SIR/SAR and magnitude SDR on the test tracks.

A thin wrapper of `ncajax evaluate` (the same flags and defaults; `ncajax evaluate --help` lists them).
The data options default to those the training run under --train-dir recorded (a MUSDB18 root is not
recorded: pass --musdb-root again).

Run (after experiments/train_separators.py):
    python experiments/evaluate_separation.py
    python experiments/evaluate_separation.py --musdb-root ~/musdb18 --train-dir runs/musdb/train

Every model and seed is scored next to two references, the mixture itself and the oracle ideal ratio mask
at the same STFT (median over 1-s frames, then over tracks, as in SiSEC), on the test songs and (unless
--real-test none or --no-bss) the real MUSDB18 sample track beside the repository, as `ncajax reproduce`
does. Yields --out/result.json and --out/spectrograms.npz.
"""

from __future__ import annotations

from ncajax import cli


def main(argv=None):
    return cli.run("evaluate", argv)


if __name__ == "__main__":
    from ncajax import cli

    cli.exit(main)
