"""Worked example: map a separator defined outside ncajax from its saved output frames alone.

Run:
    python experiments/map_outside_separator.py                    # about a minute on 2 CPU cores
    python experiments/map_outside_separator.py --floor 0 --methods lstsq   # exactly linear: C is recovered
    python experiments/map_outside_separator.py --out runs/outside --student-steps 1000

What it does:
1. builds a small embedded corpus (4 training and 2 test songs of 3 s at 8 kHz, the "fast" STFT:
   N = 129 bins of 31.25 Hz) with `ncajax.study.prepare_data`;
2. defines `WienerSeparator`, a plain NumPy separator that ncajax knows nothing about: a Wiener-style
   soft mask m = |V|² / (|V|² + |A|²) from the long-term average power spectra of the vocals V and the
   accompaniment A of the training songs, applied to the mixture smoothed across frequency (a Hann
   kernel of ±`--smooth-bins` bins, so that the separator couples neighbouring bins), with a spectral-
   subtraction floor: y = max(m ⊙ (K x) - floor · mean_bins(x), 0). Its linear part diag(m) K -
   floor/N 1 1^T is known, so the example can say how close the mapping comes to it;
3. runs it on every song and saves the frames as a user would, `frames/mixture.npy` and
   `frames/estimate.npy` (stacks `(songs, nb_frames, nb_bins)`, songs in `frames/songs.json`);
4. maps them through the same path as `experiments/map_frames.py`: `ncajax.nca.load_frames`, then
   `ncajax.nca.map_frames` (fit on the training songs, judged on the two test songs held out), then
   `FrameMapping.save` and `plot_frame_mapping`;
5. if PyTorch is importable (it is not a dependency of ncajax), also a tiny untrained `torch.nn` mask
   network (Linear-ReLU-Linear-sigmoid, y = x ⊙ mask(x)), its frames exported with `.numpy()` and
   mapped the same way; skipped with a note otherwise.

Yields under --out (default runs/map_outside_separator):
    frames/            mixture.npy, estimate.npy, songs.json (and torch_estimate.npy with PyTorch)
    wiener/            mapping.json, matrices.npz, frame_mapping_{matrices,errors}.{png,pdf}
    torch/             the same for the torch module (with PyTorch only)
    summary.json       the held-out errors, keep shares and the distance of each C to the known linear part
The command line equivalent of step 4 is printed (experiments/map_frames.py with --heldout-songs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.ndimage import convolve1d

from ncajax import nca, plots, runs, study
from ncajax.config import CorpusConfig


class WienerSeparator:
    """y = max(mask ⊙ (K x) - floor · mean_bins(x), 0) on magnitude frames `(nb_frames, nb_bins)`, NumPy.

    mask: the Wiener gain |V|² / (|V|² + |A|²) per bin from long-term average power spectra; K: a
    normalised Hann kernel of ±smooth_bins bins across frequency (zero outside the spectrum).
    """

    def __init__(self, vocal_power: np.ndarray, accompaniment_power: np.ndarray, *, smooth_bins: int = 2,
                 floor: float = 0.1):
        v = np.asarray(vocal_power, np.float64)
        a = np.asarray(accompaniment_power, np.float64)
        self.mask = v / np.maximum(v + a, 1e-12)
        kernel = np.hanning(2 * smooth_bins + 3)[1:-1]  # 2 smooth_bins + 1 non-zero taps
        self.kernel = kernel / kernel.sum()
        self.floor = float(floor)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        smoothed = convolve1d(x, self.kernel, axis=-1, mode="constant")
        return np.maximum(self.mask * smoothed - self.floor * x.mean(-1, keepdims=True), 0.0).astype(np.float32)

    def linear_part(self, n_bins: int) -> np.ndarray:
        """diag(mask) K - floor/N 1 1^T: the separator without its clipping, as an (N, N) matrix."""
        eye = np.eye(n_bins)
        k = convolve1d(eye, self.kernel, axis=-1, mode="constant")  # row j: K applied to e_j, i.e. K[:, j]
        return self.mask[:, None] * k.T - self.floor / n_bins


def torch_separator(n_bins: int, seed: int):
    """A tiny untrained torch mask network, or None when PyTorch is not installed (never imported at
    module level: torch is not a dependency of ncajax)."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(n_bins, n_bins), torch.nn.ReLU(), torch.nn.Linear(n_bins, n_bins),
                              torch.nn.Sigmoid())

    def separate(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
            return (t * net(t)).detach().cpu().numpy()

    return separate


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/map_outside_separator", help="output directory")
    ap.add_argument("--methods", nargs="+", default=list(nca.FRAME_METHODS), help="lstsq and/or student")
    ap.add_argument("--student-steps", type=int, default=2000, help="Adam steps of the linear student")
    ap.add_argument("--smooth-bins", type=int, default=2, help="half-width of the separator's smoothing kernel")
    ap.add_argument("--floor", type=float, default=0.1, help="spectral-subtraction floor (0: a linear separator)")
    ap.add_argument("--seed", type=int, default=0, help="student init and the torch module's weights")
    ap.add_argument("--no-figures", action="store_true", help="skip the figures")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    if args.smooth_bins < 0 or args.floor < 0:
        raise ValueError(f"--smooth-bins and --floor must be >= 0, got {args.smooth_bins} and {args.floor}")
    nca.check_methods(args.methods)
    return args


def song_frames(data) -> tuple[list[np.ndarray], list[str], list[int]]:
    """Mixture frames of every song (train, valid, test caches), their names and the test songs' indices."""
    mix, names, test = [], [], []
    for split, cache in (("train", data.train), ("valid", data.valid), ("test", data.test)):
        for i, name in enumerate(cache.track_names):
            if split == "test":
                test.append(len(mix))
            mix.append(np.asarray(cache.track(i)[0], np.float32))
            names.append(f"{split}/{name}")
    return mix, names, test


def map_saved(mixture_file: Path, estimate_file: Path, out: Path, args, stft, heldout: list[int],
              known: np.ndarray | None) -> dict:
    """Step 4: the user's path from files to the mapping, its files and figures; returns its summary."""
    loaded = nca.load_frames(mixture_file, estimate_file, n_fft=stft.n_fft)
    result = nca.map_frames(loaded.mixture, loaded.estimate, sample_rate=stft.sample_rate, n_fft=stft.n_fft,
                               heldout=heldout, methods=args.methods, student_steps=args.student_steps,
                               seed=args.seed)
    result.save(out)
    if not args.no_figures:
        plots.plot_frame_mapping(result, out, zoom_hz=1000.0)
    print(f"\n{out.name}:\n{result.table()}")
    summary = {m: {"heldout_error": r.heldout_error, "fit_error": r.fit_error,
                   "keep_diag": r.functional["keep_diag"], "keep_band": r.functional["keep_band"]}
               for m, r in result.methods.items()}
    summary["per_bin_gain"] = {"heldout_error": result.baselines["per_bin_gain"].heldout_error}
    if known is not None:
        for m, r in result.methods.items():
            distance = float(np.linalg.norm(r.matrix - known) / np.linalg.norm(known))
            summary[m]["distance_to_linear_part"] = distance
            print(f"{m}: ||C - linear part||_F / ||linear part||_F = {distance:.3g}")
        if args.floor > 0:
            print("(with --floor > 0 the clipping at 0 moves the best linear map away from the linear part; "
                  "--floor 0 makes the separator linear and C recovers it)")
    print(f"same from the command line: python experiments/map_frames.py --mixture {mixture_file} --estimate "
          f"{estimate_file} --sample-rate {stft.sample_rate} --n-fft {stft.n_fft} --heldout-songs "
          f"{' '.join(map(str, heldout))} --methods {' '.join(args.methods)} --out {out}")
    return summary


def main(argv=None) -> dict:
    args = parse(argv)
    out = Path(args.out)
    data = study.prepare_data(preset_name="fast", corpus_cfg=CorpusConfig(n_train=4, n_test=2, duration=3.0,
                                                                             sample_rate=8000),
                                 progress=not args.no_progress)
    stft = data.stft

    # 2. the outside separator, "trained" on the training songs' long-term spectra
    vocals = np.asarray(data.train.vocals, np.float64)
    vocal_power = np.mean(vocals**2, axis=0)
    accompaniment_power = np.maximum(np.mean(np.asarray(data.train.mixture, np.float64) ** 2, axis=0) - vocal_power, 0)
    separator = WienerSeparator(vocal_power, accompaniment_power, smooth_bins=args.smooth_bins, floor=args.floor)

    # 3. its frames, saved as a user would (songs cut to a common length so that they stack)
    mix, names, test = song_frames(data)
    n = min(len(x) for x in mix)
    mixture = np.stack([x[:n] for x in mix])
    estimate = np.stack([separator(x) for x in mixture])
    frame_dir = out / "frames"
    frame_dir.mkdir(parents=True, exist_ok=True)
    np.save(frame_dir / "mixture.npy", mixture)
    np.save(frame_dir / "estimate.npy", estimate)
    runs.write_json(frame_dir / "songs.json", {"songs": names, "heldout": test})

    # 4. mapped from the files alone
    summary = {"songs": names, "heldout": test, "frames_per_song": int(n),
               "wiener": map_saved(frame_dir / "mixture.npy", frame_dir / "estimate.npy", out / "wiener", args,
                                   stft, test, separator.linear_part(stft.n_bins))}

    # 5. optional: a torch module's frames
    torch_net = torch_separator(stft.n_bins, args.seed)
    if torch_net is None:
        print("\nPyTorch is not installed: the torch example is skipped (pip install torch to run it).")
        summary["torch"] = "skipped: PyTorch is not installed"
    else:
        np.save(frame_dir / "torch_estimate.npy", np.stack([torch_net(x) for x in mixture]))
        summary["torch"] = map_saved(frame_dir / "mixture.npy", frame_dir / "torch_estimate.npy", out / "torch",
                                     args, stft, test, None)
    runs.write_json(out / "summary.json", summary)
    print(f"\nsummary: {out / 'summary.json'}")
    return summary


if __name__ == "__main__":
    from ncajax import cli

    cli.exit(main)
