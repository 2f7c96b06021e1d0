"""Map any separator from its outputs alone: mapping matrices from saved magnitude frames.

Save the mixture frames you gave your separator and the estimate it returned, `(nb_frames, nb_bins)`
magnitudes with nb_bins = n_fft // 2 + 1 (from any framework: `np.save("mix.npy", X)`), then run:

    python experiments/map_frames.py --mixture mix.npy --estimate est.npy --sample-rate 8000 --n-fft 256 \
        --out runs/my_separator
    python experiments/map_frames.py --mixture frames.npz --sample-rate 44100 --n-fft 4096 \
        --methods lstsq --heldout-songs song_3 --out runs/my_separator

File conventions (`ncajax.frames.load_frames`): a .npy holds one song `(nb_frames, nb_bins)` or a stack
`(songs, nb_frames, nb_bins)`; an .npz holds one such array, one 2-D array per song (the same names in
both files), or both parts in one file (`np.savez(path, mixture=X, estimate=Y)`, or per-song
`mixture_<song>` / `estimate_<song>`). Several songs: whole songs are held out (`--heldout-songs`, or a
`--heldout-fraction` of them drawn with `--seed`); one song: the last `--heldout-fraction` of its frames.

Fits C (y ≈ C x) by least squares and/or the linear student ("nca" and "jacobian" need the model
itself: use `ncajax.frames.map_callable` or `ncajax.nca.fit_mapping`), and judges every matrix on the
held-out frames against the zero predictor and the best per-bin gain. Yields under --out:
    mapping.json                   every number: fit and held-out errors (clipped at 0, raw beside),
                                   baselines, functional diagonality (keep shares), the split
    matrices.npz                   one (N, N) matrix per method, per_bin_gain, frequencies_hz
    frame_mapping_matrices.{png,pdf}, frame_mapping_errors.{png,pdf}   (unless --no-figures)
Bad input (a missing file, an estimate without its mixture, mismatched or negative frames, ...) is one
`error:` line naming the file and the fix, exit code 2, and nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ncajax import frames
from ncajax.config import DIAGONAL_BAND_HZ, FIT_LEARNING_RATE, FIT_STEPS


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mixture", default=None, help="the mixture frames (.npy/.npz), or one .npz holding both")
    ap.add_argument("--estimate", default=None, help="the separator's output frames (.npy/.npz)")
    ap.add_argument("--sample-rate", type=float, required=True, help="sample rate of the frames' STFT (Hz)")
    ap.add_argument("--n-fft", type=int, required=True, help="FFT size of the frames' STFT (N = n_fft // 2 + 1)")
    ap.add_argument("--out", default="runs/map_frames", help="output directory")
    ap.add_argument("--methods", nargs="+", default=list(frames.FRAME_METHODS),
                    help="lstsq and/or student (nca and jacobian need the model)")
    ap.add_argument("--heldout-songs", nargs="+", default=None,
                    help="songs to hold out, by name or index (several songs only)")
    ap.add_argument("--heldout-fraction", type=float, default=0.25,
                    help="share of the songs (several) or of the frames (one song) held out")
    ap.add_argument("--student-steps", type=int, default=FIT_STEPS, help="Adam steps of the linear student")
    ap.add_argument("--lr", type=float, default=FIT_LEARNING_RATE, help="learning rate of the linear student")
    ap.add_argument("--band-hz", type=float, default=DIAGONAL_BAND_HZ,
                    help="half-width (Hz) of the band part in the functional diagonality")
    ap.add_argument("--seed", type=int, default=0, help="student init and held-out song draw")
    ap.add_argument("--no-figures", action="store_true", help="skip the figures")
    return ap.parse_args(argv)


def _heldout(values):
    """--heldout-songs as indices where every value is an integer, else names."""
    if values is None:
        return None
    return [int(v) for v in values] if all(v.lstrip("-").isdigit() for v in values) else list(values)


def main(argv=None) -> dict:
    """Load, map, then write (nothing is written when any check fails); returns mapping.json's content."""
    args = parse(argv)
    frames.check_methods(args.methods, frames.FRAME_METHODS)  # refuse nca/jacobian before reading files
    loaded = frames.load_frames(args.mixture, args.estimate, n_fft=args.n_fft)
    result = frames.map_frames(
        loaded.mixture, loaded.estimate, sample_rate=args.sample_rate, n_fft=args.n_fft,
        heldout=_heldout(args.heldout_songs), heldout_fraction=args.heldout_fraction, methods=args.methods,
        student_steps=args.student_steps, learning_rate=args.lr, band_hz=args.band_hz, seed=args.seed,
        songs=loaded.songs,
    )
    out = Path(args.out)
    written = result.save(out)
    if not args.no_figures:
        written += frames.plot_frame_mapping(result, out)
    print(result.table())
    print("wrote " + ", ".join(str(p) for p in written))
    return result.to_dict()


if __name__ == "__main__":
    from ncajax import cli

    cli.exit(main)
