"""Map any separator from its outputs alone: mapping matrices from saved magnitude frames.

Save the mixture frames you gave your separator and the estimate it returned, `(nb_frames, nb_bins)`
magnitudes with nb_bins = n_fft // 2 + 1 (from any framework: `np.save("mix.npy", X)`), then run (a thin
wrapper of `ncajax map`, the same flags and defaults, `ncajax map --help`; the old `--student-steps`,
`--lr` and `--seed` are still accepted here for `--fit-steps`, `--fit-lr` and `--fit-seed`):

    python experiments/map_frames.py --mixture mix.npy --estimate est.npy --sample-rate 8000 --n-fft 256 \
        --out runs/my_separator
    python experiments/map_frames.py --mixture frames.npz --sample-rate 44100 --n-fft 4096 \
        --methods lstsq --heldout-songs song_3 --out runs/my_separator
    python experiments/map_frames.py --model-dir runs/default/train/dae_sf --mixture mix.npy \
        --methods lstsq jacobian --out runs/dae_sf_frames     # an ncajax model computes the estimate

File conventions (`ncajax.nca.load_frames`): a .npy holds one song `(nb_frames, nb_bins)` or a stack
`(songs, nb_frames, nb_bins)`; an .npz holds one such array, one 2-D array per song (the same names in
both files), or both parts in one file (`np.savez(path, mixture=X, estimate=Y)`, or per-song
`mixture_<song>` / `estimate_<song>`). Several songs: whole songs are held out (`--heldout-songs`, or a
`--heldout-fraction` of them drawn with `--seed`); one song: the last `--heldout-fraction` of its frames.

Fits C (y ≈ C x) by least squares and/or the linear student ("nca" and "jacobian" need the model
itself: use `ncajax.nca.map_callable` or `ncajax.nca.fit_mapping`), and judges every matrix on the
held-out frames against the zero predictor and the best per-bin gain. Yields under --out:
    mapping.json                   every number: fit and held-out errors (clipped at 0, raw beside),
                                   baselines, functional diagonality (keep shares), the split
    matrices.npz                   one (N, N) matrix per method, per_bin_gain, frequencies_hz
    frame_mapping_matrices.{png,pdf}, frame_mapping_errors.{png,pdf}   (unless --no-figures)
Bad input (a missing file, an estimate without its mixture, mismatched or negative frames, ...) is one
`error:` line naming the file and the fix, exit code 2, and nothing is written.
"""

from __future__ import annotations

from ncajax import cli

LEGACY = {"--student-steps": "--fit-steps", "--lr": "--fit-lr", "--seed": "--fit-seed"}  # the old spellings


def parse(argv=None):
    """The options `ncajax map` parses from `argv` (old spellings accepted)."""
    return cli.parse("map", cli.legacy_flags(argv, LEGACY))


def main(argv=None) -> dict:
    """Load, map, then write (nothing is written when any check fails); returns mapping.json's content."""
    return cli.run("map", cli.legacy_flags(argv, LEGACY))


if __name__ == "__main__":
    from ncajax import cli

    cli.exit(main)
