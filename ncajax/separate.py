"""Separate any audio file into vocals and accompaniment with a trained separator.

Run it as::

    python -m ncajax.separate RUN_DIR song.flac [--out DIR] [--seed-index 0] [--chunk 4096] [--model-rate]
    ncajax-separate runs/default/train/dae_sf song.wav

RUN_DIR is a training run directory (see `ncajax.train.train_model`), i.e. one trained model such as
`runs/default/train/dae_sf`, not the study directory `runs/default` above it. The input (wav, flac,
ogg, mp3, ...; anything the installed libsndfile reads, MP3 needs libsndfile >= 1.1 as bundled with
soundfile >= 0.12; mono or multi-channel, any sample rate) comes back at its own sample rate and
channel count: stereo in, stereo out.

Each channel is separated on its own (the models are mono and frame-wise; no mid/side downmix, so a
vocal panned off-centre stays where it was and out-of-phase channels cannot cancel): the channel is
resampled to the model's rate, the model estimates the vocal magnitude frame by frame, the vocal
waveform is its inverse STFT with the channel's mixture phase, and it is resampled back to the input's
rate and trimmed/padded to the input's length. The accompaniment is the input channel minus those
vocals, so vocals + accompaniment equal the input, channel by channel, up to float32 rounding. Content
above the model's Nyquist frequency (4 kHz for the `fast` preset), which the model never hears, lands
in the accompaniment. With `--model-rate` the outputs are written at the model's rate instead (each
channel resampled to it; the pair sums to that resampled input). The old `--keep-rate` flag is still
accepted and does nothing: keeping the input's rate is now the default. Written as 32-bit float wav
(no clipping): `<OUT>/<stem>_vocals.wav` and `<OUT>/<stem>_accompaniment.wav`. Existing outputs are replaced;
files get the usual permissions (0o666 & ~umask). All output paths are worked out before anything is
separated: two inputs that would write the same file (same stem, same output folder, e.g.
`tone.flac tone.mp3` or `a/song.wav b/song.wav --out D`) are refused and nothing is written.

Exit codes: 0 success; 2 bad input (missing/unreadable/empty/non-finite audio, not a run directory,
clashing output names, bad option), reported as one line on stderr naming the file and the problem
(`ncajax.cli`; `--debug` or NCAJAX_DEBUG=1 shows the traceback instead).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from jaxtyping import Float

EXIT_USAGE = 2


class InputError(ValueError):
    """Bad user input: reported as one line, exit code 2."""


@dataclass
class _MixtureOnly:
    """The TrackAudio fields `ncajax.evaluate.separate_track` reads; stems are unknown (zeros)."""

    name: str
    rate: int
    mixture: np.ndarray
    vocals: np.ndarray
    accompaniment: np.ndarray


def read_audio(
    path: str | os.PathLike, *, mono: bool = True
) -> tuple[Float[np.ndarray, " n_samples"] | Float[np.ndarray, "n_samples n_channels"], int]:
    """Float32 samples and the sample rate of an audio file: mono `(n_samples,)` (channel mean), or
    with `mono=False` every channel, `(n_samples, n_channels)`.

    Raises FileNotFoundError (missing) or InputError (a folder, not audio, zero samples, NaN/Inf),
    each naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an audio file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError) as err:
        reason = " ".join(str(err).split())
        raise InputError(
            f"{path}: not a readable audio file ({reason}); use wav, flac, ogg or mp3"
        ) from err
    if data.shape[0] == 0:
        raise InputError(f"{path}: holds no samples (zero-length audio)")
    if not np.all(np.isfinite(data)):
        raise InputError(f"{path}: contains NaN or Inf samples; re-create the file")
    if not mono:
        return np.ascontiguousarray(data), int(rate)
    return np.ascontiguousarray(data.mean(axis=1, dtype=np.float32)), int(rate)


def _resample(x: np.ndarray, orig: int, target: int) -> np.ndarray:
    if orig == target:
        return x
    import librosa

    return np.asarray(librosa.resample(x, orig_sr=orig, target_sr=target), dtype=np.float32)


def separate_file(
    trained,
    path: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    seed_index: int = 0,
    chunk: int = 4096,
    model_rate: bool = False,
) -> dict[str, Path]:
    """Separate the audio file `path` with `trained` (an `ncajax.train.Trained`).

    Writes the input's sample rate and channel count (each channel separated on its own), or with
    `model_rate=True` the model's rate. Returns `{"vocals": path, "accompaniment": path}` of the
    written wav files (see module docstring).
    """
    from . import evaluate, models

    _check_seed_index(trained, seed_index)
    if chunk < 1:
        raise InputError(f"--chunk must be a positive number of frames, got {chunk}")
    path = Path(path)
    audio, rate = read_audio(path, mono=False)  # (n_samples, n_channels)
    cfg = trained.stft
    params = trained.seed_params(seed_index)

    def predict_fn(x):
        return models.predict(trained.model, params, x, chunk=chunk)

    vocals, accompaniment = [], []
    for c in range(audio.shape[1]):  # each channel on its own (module docstring)
        channel = audio[:, c]
        mixture = _resample(channel, rate, cfg.sample_rate)
        if mixture.size == 0:
            raise InputError(f"{path}: too short to resample to {cfg.sample_rate} Hz")
        zeros = np.zeros_like(mixture)
        track = _MixtureOnly(path.stem, cfg.sample_rate, mixture, zeros, zeros)
        name = str(path) if audio.shape[1] == 1 else f"{path} (channel {c})"
        sep = evaluate.separate_track(predict_fn, track, cfg, batch_size=chunk, name=name)
        v, a = sep["vocals"], sep["accompaniment"]
        if not model_rate:
            v = _resample(v, cfg.sample_rate, rate)
            v = np.pad(v, (0, max(0, len(channel) - len(v))))[: len(channel)]
            a = channel - v
        vocals.append(v.astype(np.float32))
        accompaniment.append(a.astype(np.float32))
    vocals, accompaniment = np.stack(vocals, axis=1), np.stack(accompaniment, axis=1)
    out_rate = cfg.sample_rate if model_rate else rate
    written = output_paths(path, out=out)
    written["vocals"].parent.mkdir(parents=True, exist_ok=True)
    for target, signal in (("vocals", vocals), ("accompaniment", accompaniment)):
        _write_wav(written[target], signal, out_rate)
    return written


def output_paths(path: str | os.PathLike, *, out: str | os.PathLike | None = None) -> dict[str, Path]:
    """`{"vocals": path, "accompaniment": path}` that `separate_file` writes for the input `path`."""
    path = Path(path)
    folder = Path(out) if out is not None else path.parent
    return {target: folder / f"{path.stem}_{target}.wav" for target in ("vocals", "accompaniment")}


def check_output_clashes(
    inputs: list[str | os.PathLike], *, out: str | os.PathLike | None = None
) -> None:
    """Raise InputError if two inputs would write the same file, or an output would overwrite an input.

    Checked before anything is separated, so a clash writes nothing.
    """
    inputs = [Path(p) for p in inputs]
    owner: dict[str, Path] = {}
    for audio in inputs:
        for target in output_paths(audio, out=out).values():
            key = os.path.abspath(target)
            if key in owner:
                raise InputError(
                    f"{owner[key]} and {audio} would both write {target} (same stem "
                    f"{audio.stem!r}): run them separately, each with its own --out dir"
                )
            owner[key] = audio
    for audio in inputs:
        owned_by = owner.get(os.path.abspath(audio))
        if owned_by is not None:
            raise InputError(
                f"{owned_by} would overwrite the input {audio} with its output: "
                "rename the input or pass a different --out dir"
            )


def _check_seed_index(trained, seed_index: int) -> None:
    import jax

    n_seeds = int(np.shape(jax.tree.leaves(trained.params)[0])[0])
    if not 0 <= seed_index < n_seeds:
        raise InputError(
            f"--seed-index {seed_index} is out of range: the run holds {n_seeds} seed(s), "
            f"choose 0..{n_seeds - 1}"
        )


def _write_wav(path: Path, signal: np.ndarray, rate: int) -> None:
    """32-bit float wav, written to a temporary sibling and renamed (a kill leaves no half file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        sf.write(tmp, np.asarray(signal, np.float32), rate, format="WAV", subtype="FLOAT")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it and put it back
    os.umask(mask)
    return mask


def _check_run_dir(run_dir: Path) -> None:
    """Raise InputError when `run_dir` is a study (or train/) directory rather than one model's run."""
    if (run_dir / "config.json").exists() or not run_dir.is_dir():
        return  # a run directory, or missing: `load_trained` names the problem
    found = sorted(
        {c.parent for pattern in ("train/*/config.json", "*/config.json")
         for c in run_dir.glob(pattern) if (c.parent / "checkpoints").is_dir()}
    )
    if not found:
        return
    kind = "a study directory" if (run_dir / "train").is_dir() else "a folder of training runs"
    raise InputError(
        f"{run_dir} is {kind}; pass one of its trained models: {', '.join(map(str, found))}"
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ncajax-separate",
        description="Separate an audio file into vocals and accompaniment with a trained ncajax run.",
    )
    p.add_argument("run_dir", type=Path, help="training run directory, e.g. runs/default/train/dae_sf")
    p.add_argument("audio", type=Path, nargs="+", help="audio file(s): wav, flac, ogg, mp3; any rate")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: next to each input)")
    p.add_argument("--seed-index", type=int, default=0, help="which seed of the run (default 0)")
    p.add_argument("--chunk", type=_positive_int, default=4096,
                   help="STFT frames per model call (default 4096; lower it to save memory)")
    p.add_argument("--model-rate", action="store_true",
                   help="write at the model's sample rate instead of the input's (default: the "
                        "input's rate and channel count)")
    p.add_argument("--keep-rate", action="store_true", help=argparse.SUPPRESS)  # now the default
    return p


PROG = "ncajax-separate"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for bad input, with a one-line message).

    Errors go through `ncajax.cli.run`: one `ncajax-separate: error: ...` line, or with `--debug` /
    NCAJAX_DEBUG=1 the traceback.
    """
    from . import cli

    debug = cli.debug_requested(sys.argv[1:] if argv is None else argv)
    return cli.run(lambda args: _main(args, debug=debug), argv, prog=PROG)


def _main(argv: list[str], *, debug: bool = False) -> int:
    args = _parser().parse_args(argv)
    prog = PROG
    from . import train

    try:
        check_output_clashes(args.audio, out=args.out)
        _check_run_dir(args.run_dir)
        trained = train.load_trained(args.run_dir)
        _check_seed_index(trained, args.seed_index)
    except (FileNotFoundError, ValueError) as err:
        if debug:
            raise
        print(f"{prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return EXIT_USAGE
    status = 0
    for audio in args.audio:  # a bad file is reported and skipped; the others are still separated
        try:
            written = separate_file(
                trained, audio, out=args.out, seed_index=args.seed_index, chunk=args.chunk,
                model_rate=args.model_rate,
            )
        except (FileNotFoundError, InputError) as err:
            if debug:
                raise
            print(f"{prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        print(f"{audio}: wrote {written['vocals']} and {written['accompaniment']}")
    return status


if __name__ == "__main__":
    sys.exit(main())
