"""Writing the corpus: its cache directory, the per-track wav files and the atomic, resumable write."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from tqdm.auto import tqdm

from ...config import CorpusConfig, fingerprint, to_dict
from .mix import STEMS
from .song import check_config, synthesize_track, track_name

# 2: distorted guitars, accompaniment EQ, room reverb, wider vocal/loudness ranges, limiter.
# 3: vocal styles, doubled leads and backing vocals, vocal compression and EQ, a lead instrument in the
#    singer's register, full-band sibilants/snare/hats at high sample rates.
# 4: `CorpusConfig.realism` recorded (the config, so the fingerprint and directory name, always name it);
#    "v3" writes the bytes of format 3, "v4" (the default) the stereo corpus of `ncajax.data._corpus.stereo`.
FORMAT_VERSION = 4
MARKER = ".complete"
DEFAULT_CONFIG = CorpusConfig()  # the study's default corpus: 60 train + 30 test songs of 5 s at 8 kHz


def corpus_dir(cache_root: str | Path, cfg: CorpusConfig = DEFAULT_CONFIG) -> Path:
    """Where `generate_corpus(cache_root, cfg)` puts the corpus (whether or not it exists yet)."""
    return Path(cache_root) / f"synth-v{FORMAT_VERSION}-{fingerprint(to_dict(cfg))}"


def track_names(cfg: CorpusConfig = DEFAULT_CONFIG) -> dict[str, list[str]]:
    """Track folder names per split: `{"train": [...], "test": [...]}`."""
    return {
        "train": [track_name("train", i) for i in range(cfg.n_train)],
        "test": [track_name("test", i) for i in range(cfg.n_test)],
    }


def generate_corpus(
    cache_root: str | Path, cfg: CorpusConfig = DEFAULT_CONFIG, *, progress: bool = False
) -> Path:
    """Generate (or reuse) the synthetic corpus under `cache_root`; returns its directory.

    Layout: `<dir>/{train,test}/<track>/{mixture,vocals,drums,bass,other}.wav` (float32 wav at
    `cfg.sample_rate`, mono; stereo for `cfg.realism == "v4"`), `<dir>/corpus.json` (config and per-track parameters) and the marker `.complete`.
    A directory with the marker is returned as is. Otherwise the corpus is written into a temporary
    sibling directory that is renamed into place only when complete, so a killed run never leaves a
    directory that looks valid; temp directories of dead runs are removed.
    """
    check_config(cfg)
    root = Path(cache_root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"cache_root {root} is a file; pass a directory for the corpus cache")
    final = corpus_dir(root, cfg)
    if (final / MARKER).is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(root, final.name)

    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=root))
    try:
        _write_tracks(tmp, cfg, progress)
        if final.exists():  # no marker: debris from outside this module's atomic writes
            shutil.rmtree(final)
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / MARKER).is_file():  # a concurrent run did not finish it either
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _write_tracks(folder: Path, cfg: CorpusConfig, progress: bool) -> None:
    """Every track's wav files, then corpus.json, then the completion marker, under `folder`."""
    tracks = []
    jobs = [
        (split, i) for split, n in (("train", cfg.n_train), ("test", cfg.n_test)) for i in range(n)
    ]
    for split, index in tqdm(jobs, desc="synthetic corpus", unit="track", disable=not progress):
        stems, params = synthesize_track(cfg, split, index)
        track = folder / split / params["name"]
        track.mkdir(parents=True)
        for name, audio in stems.items():
            _write_wav(track / f"{name}.wav", audio, cfg.sample_rate)
        tracks.append(params)
    meta = {
        "format_version": FORMAT_VERSION,
        "config": to_dict(cfg),
        "fingerprint": fingerprint(to_dict(cfg)),
        "stems": ["mixture", *STEMS],
        "mixture": "float32 sum ((vocals + drums) + bass) + other",
        "tracks": tracks,
    }
    (folder / "corpus.json").write_text(json.dumps(meta, indent=1))
    (folder / MARKER).write_text("")


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """IEEE-float32 wav, mono `(n,)` or stereo `(n, 2)`. scipy, not soundfile: libsndfile adds a PEAK chunk holding the write
    time, which would make identical corpora differ byte for byte."""
    wavfile.write(path, sample_rate, np.ascontiguousarray(audio, dtype=np.float32))


def _remove_stale_temps(root: Path, name: str) -> None:
    """Delete `.<name>.tmp-<pid>-*` dirs whose writer process is gone (killed runs)."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.tmp-(\d+)-")
    for path in root.iterdir():
        match = pattern.match(path.name)
        if match and path.is_dir() and not _pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # an earlier, interrupted call in this very process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
