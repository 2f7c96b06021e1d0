"""The embedded synthetic multitrack corpus, written in the MUSDB18-HQ folder layout.

Real MUSDB18 cannot be downloaded here, so the study's default data are songs this module synthesises:

- vocals: source-filter singing. A glottal-like harmonic source (all harmonics below Nyquist, spectral
  tilt varied per song, +6 dB/oct lip radiation) is shaped by a cascade of five vowel formants that move
  smoothly from syllable to syllable; phrases of notes in the singer's range (bass/tenor/alto/soprano) with
  portamento, vibrato (5-7 Hz), pitch jitter, consonant noise bursts at syllable onsets, aspiration, breaths
  and rests between phrases. The harmonics are synthesised additively with the phase of the cumulative f0
  and amplitude envelope(k * f0(t), vowel(t)), so no time-varying filter is needed.
- accompaniment in the song's key and chord progression: `other` (piano strikes, pads, arpeggios and, in
  about 60 % of the songs, a distorted electric guitar: saturated power chords through a cabinet band
  limit, chugged, sustained, off-beat or riffed), `bass` (plucked roots/fifths), `drums` (pitch-dropping
  kick, noise+tone snare, high-passed hi-hats).
- production: a per-song EQ of each accompaniment stem (low and high shelves, -6..+6 dB each), one light
  reverb per song (pre-delayed, damped, exponentially decaying noise impulse response, RT60 0.2-0.8 s) on
  vocals, drums and other at per-stem wet levels; the mixture is scaled to a loudness drawn from
  LOUDNESS_DBFS (-30..-6 dBFS RMS, quiet demo to loud master) and held under PEAK by a smooth peak limiter
  whose gain envelope multiplies every stem (so the mixture stays their exact sum).

Every song draws key, mode, progression, tempo (80-140 BPM), singer, timbre, guitar, EQ, room, loudness and the
vocal-to-accompaniment level (RMS, -9..+4 dB, exact after limiting) from
`np.random.default_rng([seed, split_code, index])`, so a track depends only on (seed, split, index,
duration, sample_rate), never on how many other tracks there are. Same config -> bit-identical files. The
mixture is the float32 sum `((vocals + drums) + bass) + other` of the stored stems, and no stem and no
mixture sample exceeds 0.9 in magnitude.

Why the accompaniment, room and level spread (format 2, project issue 14): the separators see raw
magnitudes, so what they learn transfers to a real song only if the corpus covers its level, its dense
distorted-guitar spectra in the voice band and its reverberant vocals; `benchmarks/bench_realism.py`
measures the transfer on the real MUSDB18 track.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
from jaxtyping import Float
from scipy import ndimage, signal
from scipy.io import wavfile
from tqdm.auto import tqdm

from .config import CorpusConfig, fingerprint, to_dict

FORMAT_VERSION = (
    2  # 2: distorted guitars, accompaniment EQ, room reverb, wider vocal/loudness ranges, limiter
)
STEMS = ("vocals", "drums", "bass", "other")
MARKER = ".complete"
SPLITS = {"train": 0, "test": 1}
VOCAL_LEVEL_DB = (-9.0, 4.0)  # vocal / accompaniment RMS over the whole track
LOUDNESS_DBFS = (-30.0, -6.0)  # mixture RMS target before the peak limit (quiet mixes to mastered)
PEAK = 0.9
MIN_SAMPLE_RATE = 8000
DEFAULT_CONFIG = (
    CorpusConfig()
)  # the study's default corpus: 24 train + 6 test songs of 12 s at 16 kHz

_CTRL_RATE = 200.0  # Hz; f0, loudness and formant tracks are built at this rate, then interpolated

# Singer: (lowest MIDI note, highest MIDI note, formant scale factor).
_VOICES = {
    "bass": (40, 62, 0.90),
    "tenor": (48, 69, 1.00),
    "alto": (55, 74, 1.12),
    "soprano": (60, 81, 1.20),
}
# Adult-male vowel formants F1..F5 (Hz) and bandwidths (Hz); scaled per singer.
_VOWELS = {
    "a": ((730, 1090, 2440, 3400, 4300), (80, 90, 120, 150, 200)),
    "e": ((530, 1840, 2480, 3500, 4300), (60, 100, 120, 150, 200)),
    "i": ((270, 2290, 3010, 3700, 4400), (50, 100, 120, 150, 200)),
    "o": ((570, 840, 2410, 3300, 4300), (70, 80, 100, 150, 200)),
    "u": ((300, 870, 2240, 3300, 4300), (50, 80, 100, 150, 200)),
}
# Consonant noise: (low Hz, high Hz, duration s, level relative to the voiced RMS).
_CONSONANTS = {
    "s": (4000.0, 7500.0, 0.08, 0.30),
    "sh": (1800.0, 4500.0, 0.09, 0.30),
    "f": (1000.0, 7000.0, 0.07, 0.12),
    "t": (2500.0, 6500.0, 0.025, 0.45),
    "k": (1200.0, 3200.0, 0.03, 0.40),
    "h": (500.0, 3000.0, 0.06, 0.12),
}

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
# Chords as (root semitones above the key, quality).
_PROGRESSIONS = {
    "major": (
        ((0, "maj"), (7, "maj"), (9, "min"), (5, "maj")),
        ((9, "min"), (5, "maj"), (0, "maj"), (7, "maj")),
        ((0, "maj"), (9, "min"), (5, "maj"), (7, "maj")),
        ((0, "maj"), (5, "maj"), (7, "maj"), (5, "maj")),
        ((2, "min"), (7, "maj"), (0, "maj"), (9, "min")),
        ((0, "maj"), (4, "min"), (5, "maj"), (7, "maj")),
    ),
    "minor": (
        ((0, "min"), (8, "maj"), (3, "maj"), (10, "maj")),
        ((0, "min"), (5, "min"), (7, "min"), (0, "min")),
        ((0, "min"), (10, "maj"), (8, "maj"), (7, "maj")),
        ((0, "min"), (5, "min"), (10, "maj"), (3, "maj")),
    ),
}
_TRIADS = {"maj": (0, 4, 7), "min": (0, 3, 7)}
_SEVENTHS = {"maj": 11, "min": 10}

# 16-step (sixteenth-note) patterns for one 4/4 bar.
_KICK = (
    "x.......x.......",
    "x.......x.x.....",
    "x..x....x.......",
    "x.....x...x.....",
    "x...x...x...x...",
)
_SNARE = ("....x.......x...", "....x.......x..x", "....x..x....x...")
_HATS = ("x.x.x.x.x.x.x.x.", "xxxxxxxxxxxxxxxx", "x...x...x...x...", "..x...x...x...x.")
_BASS = (
    "x...x...x...x...",
    "x.......x.......",
    "x.x.x.x.x.x.x.x.",
    "x..x..x.x..x..x.",
    "x......xx.......",
)
_PIANO = ("x...............", "x.......x.......", "x...x...x...x...", "x..x..x...x.....")


def corpus_dir(cache_root: str | Path, cfg: CorpusConfig = DEFAULT_CONFIG) -> Path:
    """Where `generate_corpus(cache_root, cfg)` puts the corpus (whether or not it exists yet)."""
    return Path(cache_root) / f"synth-v{FORMAT_VERSION}-{fingerprint(to_dict(cfg))}"


def track_names(cfg: CorpusConfig = DEFAULT_CONFIG) -> dict[str, list[str]]:
    """Track folder names per split: `{"train": [...], "test": [...]}`."""
    return {
        "train": [_track_name("train", i) for i in range(cfg.n_train)],
        "test": [_track_name("test", i) for i in range(cfg.n_test)],
    }


def generate_corpus(
    cache_root: str | Path, cfg: CorpusConfig = DEFAULT_CONFIG, *, progress: bool = False
) -> Path:
    """Generate (or reuse) the synthetic corpus under `cache_root`; returns its directory.

    Layout: `<dir>/{train,test}/<track>/{mixture,vocals,drums,bass,other}.wav` (mono float32 wav at
    `cfg.sample_rate`), `<dir>/corpus.json` (config and per-track parameters) and the marker `.complete`.
    A directory with the marker is returned as is. Otherwise the corpus is written into a temporary
    sibling directory that is renamed into place only when complete, so a killed run never leaves a
    directory that looks valid; temp directories of dead runs are removed.
    """
    _check_config(cfg)
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
        tracks = []
        jobs = [
            (split, i)
            for split, n in (("train", cfg.n_train), ("test", cfg.n_test))
            for i in range(n)
        ]
        for split, index in tqdm(jobs, desc="synthetic corpus", unit="track", disable=not progress):
            stems, params = synthesize_track(cfg, split, index)
            folder = tmp / split / params["name"]
            folder.mkdir(parents=True)
            for name, audio in stems.items():
                _write_wav(folder / f"{name}.wav", audio, cfg.sample_rate)
            tracks.append(params)
        meta = {
            "format_version": FORMAT_VERSION,
            "config": to_dict(cfg),
            "fingerprint": fingerprint(to_dict(cfg)),
            "stems": ["mixture", *STEMS],
            "mixture": "float32 sum ((vocals + drums) + bass) + other",
            "tracks": tracks,
        }
        (tmp / "corpus.json").write_text(json.dumps(meta, indent=1))
        (tmp / MARKER).write_text("")
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


def synthesize_track(
    cfg: CorpusConfig, split: str, index: int
) -> tuple[dict[str, Float[np.ndarray, "n_samples"]], dict]:
    """One song: `(stems, params)`.

    `stems` maps "mixture", "vocals", "drums", "bass", "other" to float32 `(n_samples,)` arrays with
    mixture == ((vocals + drums) + bass) + other exactly; `params` is the JSON-ready song description.
    """
    _check_config(cfg)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLITS)}")
    if index < 0:
        raise ValueError(f"track index must be >= 0, got {index}")
    sr = cfg.sample_rate
    n = int(round(cfg.duration * sr))
    rng = np.random.default_rng([cfg.seed, SPLITS[split], index])
    plan_rng, voc_rng, drum_rng, bass_rng, other_rng, mix_rng, gtr_rng, room_rng, eq_rng = (
        rng.spawn(9)
    )

    plan = _song_plan(plan_rng, cfg.duration)
    vocals, voice_params = _render_vocals(voc_rng, plan, n, sr)
    guitar, guitar_params = _render_guitar(gtr_rng, plan, n, sr)
    raw = {
        "vocals": vocals,
        "drums": _render_drums(drum_rng, plan, n, sr),
        "bass": _render_bass(bass_rng, plan, n, sr),
        "other": _render_other(other_rng, plan, n, sr),
    }
    if guitar is not None:  # the guitar sits in "other", as in MUSDB18
        other = raw["other"]
        raw["other"] = other + guitar / max(_rms(guitar), 1e-12) * _rms(other) * 10 ** (
            guitar_params["guitar_level_db"] / 20
        )
    raw, eq_params = _tone_eq(eq_rng, raw, sr)
    raw, room_params = _room(room_rng, raw, sr)
    stems, levels = _mix(mix_rng, raw, sr)
    params = {
        "name": _track_name(split, index),
        "split": split,
        "index": index,
        **plan["public"],
        **voice_params,
        **guitar_params,
        **eq_params,
        **room_params,
        **levels,
    }
    return stems, params


# ----------------------------------------------------------------------------------------- checks


def _check_config(cfg: CorpusConfig) -> None:
    if not isinstance(cfg, CorpusConfig):
        raise ValueError(f"cfg must be a CorpusConfig, got {type(cfg).__name__}")
    if cfg.sample_rate < MIN_SAMPLE_RATE:
        raise ValueError(
            f"sample_rate {cfg.sample_rate} Hz is too low for the synthetic corpus (formants, "
            f"consonants and hi-hats need >= {MIN_SAMPLE_RATE} Hz); raise CorpusConfig.sample_rate"
        )
    if cfg.seed < 0:
        raise ValueError(f"seed must be >= 0 (numpy SeedSequence entropy), got {cfg.seed}")


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Mono IEEE-float32 wav. scipy, not soundfile: libsndfile adds a PEAK chunk holding the write
    time, which would make identical corpora differ byte for byte."""
    wavfile.write(path, sample_rate, np.ascontiguousarray(audio, dtype=np.float32))


def _track_name(split: str, index: int) -> str:
    return f"synth-{split}-{index:03d}"


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


# ------------------------------------------------------------------------------------------ plan


def _song_plan(rng: np.random.Generator, duration: float) -> dict:
    """Key, tempo, chords and the vocal score (notes, phrases, breaths) of one song."""
    mode = "major" if rng.random() < 0.6 else "minor"
    key = int(rng.integers(12))
    progs = _PROGRESSIONS[mode]
    prog = progs[int(rng.integers(len(progs)))]
    tempo = float(rng.uniform(80.0, 140.0))
    beat = 60.0 / tempo
    chord_beats = 2 if (tempo < 95 and rng.random() < 0.5) else 4
    sevenths = bool(rng.random() < 0.3)
    voice = ("bass", "tenor", "alto", "soprano")[int(rng.integers(4))]
    lo, hi, _ = _VOICES[voice]
    # A per-song tessitura: about an octave and a half inside the singer's range.
    span = int(rng.integers(14, 20))
    lo_song = int(rng.integers(lo, max(lo + 1, hi - span + 1)))
    hi_song = min(hi, lo_song + span)
    scale = _MAJOR if mode == "major" else _MINOR

    def chord_at(t: float) -> tuple[int, str]:
        root, quality = prog[int(t / (chord_beats * beat)) % len(prog)]
        return (key + root) % 12, quality

    allowed = [m for m in range(lo_song, hi_song + 1) if (m - key) % 12 in scale]
    cons_prob = float(rng.uniform(0.4, 0.8))
    cons_names = tuple(_CONSONANTS)
    notes, phrases, breaths = [], [], []
    t = min(int(rng.integers(1, 5)) * beat, 0.25 * duration)
    cur = len(allowed) // 2 + int(rng.integers(-2, 3))
    steps = np.array([-3, -2, -1, 0, 1, 2, 3])
    step_p = np.array([0.05, 0.15, 0.25, 0.1, 0.25, 0.15, 0.05])
    durs = np.array([0.5, 1.0, 1.5, 2.0])
    dur_p = np.array([0.3, 0.4, 0.1, 0.2])
    while t < duration - 0.25:
        if rng.random() < 0.8:
            b = float(rng.uniform(0.15, 0.35))
            breaths.append((max(0.0, t - b - 0.02), b))
        start = t
        end = t + float(rng.choice([4.0, 6.0, 6.0, 8.0])) * beat
        while t < end and t < duration:
            d = float(rng.choice(durs, p=dur_p)) * beat
            cur = int(np.clip(cur + rng.choice(steps, p=step_p), 0, len(allowed) - 1))
            root, quality = chord_at(t)
            tones = {(root + iv) % 12 for iv in _TRIADS[quality]}
            if rng.random() < 0.6:  # lean on chord tones
                near = [j for j in range(len(allowed)) if allowed[j] % 12 in tones]
                cur = min(near, key=lambda j: abs(j - cur)) if near else cur
            cons = (
                cons_names[int(rng.integers(len(cons_names)))] if rng.random() < cons_prob else None
            )
            notes.append(
                {
                    "onset": t,
                    "dur": d,
                    "midi": allowed[cur],
                    "vowel": "aeiou"[int(rng.integers(5))],
                    "cons": cons,
                    "gain": float(rng.uniform(0.7, 1.0)),
                    "detune": float(rng.normal(0.0, 8.0)),  # cents of intonation error
                }
            )
            t += d
        notes[-1]["dur"] += beat  # phrase-final notes are held
        t += beat
        phrases.append((start, t))
        t += float(rng.choice([1.0, 1.0, 2.0, 2.0, 3.0])) * beat

    public = {
        "key": ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"][key],
        "key_pc": key,
        "mode": mode,
        "tempo_bpm": round(tempo, 3),
        "chord_beats": chord_beats,
        "progression": [[int(r), q] for r, q in prog],
        "sevenths": sevenths,
        "singer": voice,
        "singer_range_midi": [lo_song, hi_song],
        "n_notes": len(notes),
        "n_phrases": len(phrases),
    }
    return {
        "key": key,
        "mode": mode,
        "prog": prog,
        "tempo": tempo,
        "beat": beat,
        "chord_beats": chord_beats,
        "sevenths": sevenths,
        "voice": voice,
        "notes": notes,
        "phrases": phrases,
        "breaths": breaths,
        "duration": duration,
        "public": public,
    }


def _chords(plan: dict) -> list[tuple[float, float, int, str]]:
    """(onset s, duration s, root pitch class, quality) of every chord in the song."""
    span = plan["chord_beats"] * plan["beat"]
    out, t, i = [], 0.0, 0
    while t < plan["duration"]:
        root, quality = plan["prog"][i % len(plan["prog"])]
        out.append((t, span, (plan["key"] + root) % 12, quality))
        t += span
        i += 1
    return out


def _steps(plan: dict, pattern: str) -> list[tuple[float, int]]:
    """(time s, step index in bar) of every hit of a 16-step pattern over the song."""
    step = plan["beat"] / 4
    hits = [i for i, c in enumerate(pattern) if c == "x"]
    out, bar = [], 0
    while bar * 16 * step < plan["duration"]:
        out += [
            ((bar * 16 + i) * step, i) for i in hits if (bar * 16 + i) * step < plan["duration"]
        ]
        bar += 1
    return out


# ---------------------------------------------------------------------------------------- vocals


def _render_vocals(
    rng: np.random.Generator, plan: dict, n: int, sr: int
) -> tuple[np.ndarray, dict]:
    """The singing voice `(n_samples,)` float64 (arbitrary scale) and its timbre parameters."""
    hop = sr / _CTRL_RATE
    nc = int(np.ceil(n / hop)) + 2
    tc = np.arange(nc) / _CTRL_RATE
    _, _, fscale = _VOICES[plan["voice"]]
    fscale *= float(rng.uniform(0.95, 1.05))
    bw_scale = float(rng.uniform(0.8, 1.3))
    tilt = float(rng.uniform(-13.0, -7.0))  # dB/oct of the glottal source
    bright_db = float(rng.uniform(3.0, 15.0))  # "singer's formant" boost near 3 kHz
    vib_rate = float(rng.uniform(5.0, 7.0))
    vib_depth = float(rng.uniform(20.0, 70.0))  # cents
    jitter = float(rng.uniform(5.0, 15.0))  # cents
    tremolo = float(rng.uniform(0.05, 0.2))
    aspiration = float(rng.uniform(0.005, 0.02))
    params = {
        "formant_scale": round(fscale, 4),
        "bandwidth_scale": round(bw_scale, 4),
        "tilt_db_per_octave": round(tilt, 3),
        "brightness_db": round(bright_db, 3),
        "vibrato_hz": round(vib_rate, 3),
        "vibrato_cents": round(vib_depth, 3),
        "jitter_cents": round(jitter, 3),
    }

    midi = np.full(nc, np.nan)
    amp = np.zeros(nc)
    vib_env = np.zeros(nc)
    formants = np.full((nc, 5), np.nan)
    bands = np.full((nc, 5), np.nan)
    cons_env = {c: np.zeros(nc) for c in _CONSONANTS}
    for note in plan["notes"]:
        c0, c1 = (np.array([note["onset"], note["onset"] + note["dur"]]) * _CTRL_RATE).astype(int)
        c1 = min(c1, nc)
        if c1 <= c0:
            continue
        t = tc[c0:c1] - note["onset"]
        midi[c0:c1] = note["midi"] + note["detune"] / 100
        f, b = _VOWELS[note["vowel"]]
        formants[c0:c1] = np.asarray(f) * fscale
        bands[c0:c1] = np.asarray(b) * bw_scale
        vowel_start = 0.0
        if note["cons"] is not None:
            _, _, cdur, level = _CONSONANTS[note["cons"]]
            gate = np.clip(1.0 - np.abs(t - cdur / 2) / (cdur / 2), 0.0, 1.0) * level
            cons_env[note["cons"]][c0:c1] += gate
            vowel_start = 0.6 * cdur
        attack = 0.03 if note["cons"] is None else 0.05
        rise = np.clip((t - vowel_start) / attack, 0.0, 1.0)
        fall = np.clip((note["dur"] - t) / 0.04, 0.0, 1.0)
        amp[c0:c1] = np.maximum(amp[c0:c1], note["gain"] * np.minimum(rise, fall))
        vib_env[c0:c1] = np.clip((t - 0.15) / 0.3, 0.0, 1.0)
    if not np.isfinite(midi).any():
        return np.zeros(n), params
    midi = _fill(midi)
    formants, bands = _fill(formants), _fill(bands)
    midi = _smooth(midi, 0.04)  # portamento
    formants, bands = _smooth(formants, 0.06), _smooth(bands, 0.06)  # coarticulation
    amp = _smooth(amp, 0.015)
    vib_phase = 2 * np.pi * np.cumsum(vib_rate * (1 + 0.05 * _smooth(rng.standard_normal(nc), 0.3)))
    vib = np.sin(vib_phase / _CTRL_RATE + rng.uniform(0, 2 * np.pi))
    jit = _smooth(rng.standard_normal(nc), 0.03)
    jit *= jitter / max(jit.std(), 1e-9)
    cents = vib_depth * _smooth(vib_env, 0.05) * vib + jit
    f0 = 440.0 * 2.0 ** ((midi + cents / 100 - 69) / 12)
    amp = amp * (1 + tremolo * vib)
    amp[amp < 1e-4] = 0.0

    voiced = _harmonic_sum(f0, amp, formants, bands, tilt, bright_db, n, sr)
    active = np.interp(np.arange(n) / hop, np.arange(nc), amp)
    rms = np.sqrt(np.mean(voiced[active > 0.3] ** 2)) if (active > 0.3).any() else 1.0
    out = voiced / max(rms, 1e-12)

    up = np.arange(n) / hop
    out += aspiration * _band_noise(rng, n, sr, 1500.0, 6000.0) * np.interp(up, np.arange(nc), amp)
    for name, env in cons_env.items():
        if env.any():
            lo, hi, _, _ = _CONSONANTS[name]
            out += _band_noise(rng, n, sr, lo, hi) * np.interp(up, np.arange(nc), env)
    breath = np.zeros(nc)
    for start, dur in plan["breaths"]:
        c0, c1 = int(start * _CTRL_RATE), min(nc, int((start + dur) * _CTRL_RATE))
        if c1 > c0:
            breath[c0:c1] = 0.06 * np.sin(np.linspace(0, np.pi, c1 - c0))
    if breath.any():
        out += _band_noise(rng, n, sr, 400.0, 2500.0) * np.interp(up, np.arange(nc), breath)
    return out, params


def _harmonic_sum(
    f0: np.ndarray,
    amp: np.ndarray,
    formants: np.ndarray,
    bands: np.ndarray,
    tilt: float,
    bright_db: float,
    n: int,
    sr: int,
) -> np.ndarray:
    """Additive source-filter voice from control-rate tracks `(nc,)`, `(nc, 5)`; returns `(n,)`.

    Harmonic k at control frame c has amplitude amp[c] * k**((tilt + 6) / 6.02) * formant envelope at
    k * f0[c]; amplitudes are interpolated linearly to the sample rate; phases follow the cumulative f0.
    """
    hop = sr / _CTRL_RATE
    nc = f0.shape[0]
    nyq = sr / 2
    pos = np.arange(n) / hop
    phase = np.cumsum(np.interp(pos, np.arange(nc), f0) / sr)
    phase -= np.floor(phase)
    out = np.zeros(n)
    bright = 10 ** (bright_db / 20) - 1
    slope = (tilt + 6.0) / (20 * np.log10(2))
    for c0, c1 in _runs(amp > 0):
        a, b = max(0, c0 - 1), min(nc, c1 + 1)
        s0, s1 = int(np.ceil(a * hop)), min(n, int(np.floor((b - 1) * hop)) + 1)
        if s1 <= s0:
            continue
        rel = pos[s0:s1] - a
        i0 = np.minimum(rel.astype(int), b - a - 2)
        frac = (rel - i0).astype(np.float32)
        ph = phase[s0:s1]
        n_harm = int(0.95 * nyq / f0[a:b].min())
        for k0 in range(1, n_harm + 1, 24):
            k = np.arange(k0, min(k0 + 24, n_harm + 1), dtype=np.float64)
            freq = k[:, None] * f0[None, a:b]  # (K, frames)
            env = _formant_env(freq, formants[a:b], bands[a:b])
            env *= 1 + bright * np.exp(-(((freq - 3000.0) / 700.0) ** 2))
            env *= np.clip((0.95 * nyq - freq) / (0.1 * nyq), 0.0, 1.0)
            ak = (amp[None, a:b] * k[:, None] ** slope * env).astype(np.float32)
            a0, a1 = ak[:, i0], ak[:, np.minimum(i0 + 1, b - a - 1)]
            amps = a0 + (a1 - a0) * frac
            cycles = np.multiply.outer(k, ph)
            arg = np.subtract(cycles, np.floor(cycles), out=cycles).astype(np.float32)
            arg *= np.float32(2 * np.pi)
            out[s0:s1] += np.einsum("kn,kn->n", amps, np.sin(arg, out=arg))
    return out


def _formant_env(freq: np.ndarray, formants: np.ndarray, bands: np.ndarray) -> np.ndarray:
    """Cascade of two-pole resonances (unit gain at 0 Hz): `(K, frames)` magnitudes at `freq`."""
    env = np.ones_like(freq)
    for i in range(formants.shape[1]):
        fi, hb = formants[None, :, i], bands[None, :, i] / 2
        env *= (fi**2 + hb**2) / np.sqrt(((freq - fi) ** 2 + hb**2) * ((freq + fi) ** 2 + hb**2))
    return env


def _fill(x: np.ndarray) -> np.ndarray:
    """Forward- then backward-fill NaN rows of a `(n,)` or `(n, d)` array (holds a value in rests)."""
    x = x.copy()
    ok = np.isfinite(x if x.ndim == 1 else x[:, 0])
    idx = np.where(ok, np.arange(len(ok)), 0)
    np.maximum.accumulate(idx, out=idx)
    first = int(np.argmax(ok))
    idx[: first + 1] = first
    return x[idx]


def _smooth(x: np.ndarray, seconds: float) -> np.ndarray:
    """Hann-window moving average along axis 0 at the control rate, edges held."""
    w = max(3, int(seconds * _CTRL_RATE) | 1)
    kernel = np.hanning(w + 2)[1:-1]
    kernel /= kernel.sum()
    pad = [(w // 2, w // 2)] + [(0, 0)] * (x.ndim - 1)
    xp = np.pad(x, pad, mode="edge")
    return signal.convolve(xp, kernel.reshape((-1,) + (1,) * (x.ndim - 1)), mode="valid")


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index ranges where a boolean `(n,)` mask is True."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True))


def _band_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    """Unit-RMS white noise band-passed to [lo, hi] Hz (clamped below Nyquist)."""
    hi = min(hi, 0.45 * sr)
    lo = min(lo, 0.5 * hi)
    sos = signal.butter(4, [lo, hi], btype="bandpass", fs=sr, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal(n))
    return x / max(float(x.std()), 1e-12)


# --------------------------------------------------------------------------------- accompaniment


def _place(out: np.ndarray, onset: float, sr: int, sound: np.ndarray, gain: float = 1.0) -> None:
    i = int(round(onset * sr))
    if i >= len(out):
        return
    m = min(len(sound), len(out) - i)
    out[i : i + m] += gain * sound[:m]


def _tone(
    f0: float,
    seconds: float,
    sr: int,
    *,
    slope: float,
    decay: float | None,
    decay_slope: float = 0.5,
    attack: float = 0.005,
    release: float = 0.03,
    inharm: float = 0.0,
    max_partials: int = 16,
) -> np.ndarray:
    """A harmonic note `(round(seconds * sr),)`: partials k^-slope, decaying as
    exp(-t k^decay_slope / decay) (no decay for `decay=None`), linear attack and release ramps."""
    n = max(1, int(round(seconds * sr)))
    t = np.arange(n) / sr
    k = np.arange(1, max_partials + 1, dtype=np.float64)
    fk = k * f0 * np.sqrt(1 + inharm * k**2)
    k, fk = k[fk < 0.45 * sr], fk[fk < 0.45 * sr]
    if k.size == 0:
        return np.zeros(n)
    # Phase in cycles wrapped in float64, sine in float32: exact enough and several times faster.
    cycles = np.multiply.outer(fk, t)
    arg = np.subtract(cycles, np.floor(cycles), out=cycles).astype(np.float32)
    waves = np.sin(arg * np.float32(2 * np.pi), out=arg)
    if decay is not None:
        rates = (k**decay_slope / decay).astype(np.float32)
        waves *= np.exp(-t.astype(np.float32)[None] * rates[:, None])
    x = np.einsum("k,kn->n", (k**-slope).astype(np.float32), waves)  # BLAS gemv is slower here
    x *= np.minimum(1.0, t / attack) * np.clip((seconds - t) / release, 0.0, 1.0)
    return x.astype(np.float64)


def _chord_midis(root: int, quality: str, lo: int, sevenths: bool) -> list[int]:
    """Close voicing of a chord, its lowest note the first chord tone at or above MIDI `lo`."""
    ivs = list(_TRIADS[quality]) + ([_SEVENTHS[quality]] if sevenths else [])
    base = lo + (root - lo) % 12
    notes = sorted(base + iv for iv in ivs)
    return [m - 12 if m - 12 >= lo and base > lo + 5 else m for m in notes]


def _midi_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69) / 12)


def _render_other(rng: np.random.Generator, plan: dict, n: int, sr: int) -> np.ndarray:
    """Piano strikes, a pad and maybe an arpeggio on the chord progression, `(n_samples,)`."""
    out = np.zeros(n)
    chords = _chords(plan)
    use = rng.random(3) < (0.75, 0.55, 0.45)
    if not use[:2].any():
        use[0] = True
    lo = int(rng.integers(50, 57))
    cache: dict = {}
    if use[0]:  # piano
        pattern = _PIANO[int(rng.integers(len(_PIANO)))]
        slope, decay = float(rng.uniform(1.0, 1.8)), float(rng.uniform(0.5, 1.4))
        hits = _steps(plan, pattern)
        for (t, _), nxt in zip(
            hits, [h[0] for h in hits[1:]] + [plan["duration"] + 1.0], strict=True
        ):
            _, _, root, quality = _chord_at(chords, t)
            length = min(nxt - t + 0.3, 3.0)
            vel = float(rng.uniform(0.6, 1.0))
            for m in _chord_midis(root, quality, lo, plan["sevenths"]):
                key = ("p", m, round(length, 3))
                if key not in cache:
                    cache[key] = _tone(
                        _midi_hz(m), length, sr, slope=slope, decay=decay, inharm=2e-4
                    )
                _place(out, t, sr, cache[key], vel)
    if use[1]:  # pad: two detuned voices, slow attack, sustained per chord
        slope, gain = float(rng.uniform(1.6, 2.4)), float(rng.uniform(0.3, 0.7))
        for t, span, root, quality in chords:
            for m in _chord_midis(root, quality, lo, plan["sevenths"]):
                key = ("pad", m, round(span, 3))
                if key not in cache:
                    cache[key] = sum(
                        _tone(
                            _midi_hz(m + d),
                            span + 0.25,
                            sr,
                            slope=slope,
                            decay=None,
                            max_partials=10,
                            attack=0.15,
                            release=0.25,
                        )
                        for d in (-0.07, 0.07)
                    )
                _place(out, t, sr, cache[key], gain)
    if use[2]:  # arpeggio in the singer's register (overlaps the voice's f0 range)
        slope, decay, gain = (
            float(rng.uniform(0.8, 1.4)),
            float(rng.uniform(0.15, 0.4)),
            float(rng.uniform(0.3, 0.6)),
        )
        eighth = plan["beat"] / 2
        for j, (t, _) in enumerate(_steps(plan, "x.x.x.x.x.x.x.x.")):
            _, _, root, quality = _chord_at(chords, t)
            notes = _chord_midis(root, quality, lo + 12, plan["sevenths"])
            m = notes[j % len(notes)]
            key = ("arp", m)
            if key not in cache:
                cache[key] = _tone(
                    _midi_hz(m), eighth + 0.2, sr, slope=slope, decay=decay, max_partials=10
                )
            _place(out, t, sr, cache[key], gain * float(rng.uniform(0.7, 1.0)))
    return out


def _chord_at(chords: list, t: float) -> tuple:
    for c in reversed(chords):
        if c[0] <= t + 1e-9:
            return c
    return chords[0]


def _render_bass(rng: np.random.Generator, plan: dict, n: int, sr: int) -> np.ndarray:
    """Plucked bass on chord roots (and some fifths/octaves), `(n_samples,)`."""
    out = np.zeros(n)
    chords = _chords(plan)
    pattern = _BASS[int(rng.integers(len(_BASS)))]
    slope, decay = float(rng.uniform(0.8, 1.6)), float(rng.uniform(0.3, 0.9))
    hits = _steps(plan, pattern)
    cache: dict = {}
    for (t, step), nxt in zip(
        hits, [h[0] for h in hits[1:]] + [plan["duration"] + 1.0], strict=True
    ):
        _, _, root, _ = _chord_at(chords, t)
        m = 28 + (root - 4) % 12  # E1..D#2
        if step % 4 and rng.random() < 0.3:
            m += 7 if rng.random() < 0.5 else 12
        length = min(nxt - t, 2.0)
        key = (m, round(length, 3))
        if key not in cache:
            cache[key] = _tone(
                _midi_hz(m), length, sr, slope=slope, decay=decay, decay_slope=0.7, max_partials=24
            )
        _place(out, t, sr, cache[key], float(rng.uniform(0.75, 1.0)))
    return out


def _render_drums(rng: np.random.Generator, plan: dict, n: int, sr: int) -> np.ndarray:
    """Kick, snare and hi-hats on 16-step patterns, `(n_samples,)`."""
    out = np.zeros(n)
    t = np.arange(int(0.4 * sr)) / sr
    f_hi, f_lo, tau_f = rng.uniform(100, 160), rng.uniform(40, 55), rng.uniform(0.02, 0.06)
    freq = f_lo + (f_hi - f_lo) * np.exp(-t / tau_f)
    kick = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / rng.uniform(0.12, 0.3))
    kick += 0.3 * _band_noise(rng, t.size, sr, 1000, 5000) * np.exp(-t / 0.004)
    tn = t[: int(0.35 * sr)]
    snare = _band_noise(rng, tn.size, sr, 1000, 7000) * np.exp(-tn / rng.uniform(0.04, 0.09))
    snare += 0.8 * np.sin(2 * np.pi * rng.uniform(170, 240) * tn) * np.exp(-tn / 0.05)
    hat_lo = min(6000.0, 0.35 * sr)
    noise = _band_noise(rng, tn.size, sr, hat_lo, 0.45 * sr)
    hat = noise * np.exp(-tn / rng.uniform(0.015, 0.04))
    open_hat = noise * np.exp(-tn / rng.uniform(0.06, 0.12))
    kit = (
        (kick, _KICK[int(rng.integers(len(_KICK)))], 1.0),
        (snare, _SNARE[int(rng.integers(len(_SNARE)))], float(rng.uniform(0.5, 0.9))),
        (hat, _HATS[int(rng.integers(len(_HATS)))], float(rng.uniform(0.12, 0.3))),
    )
    swing = float(rng.uniform(0.0, 0.01))
    for sound, pattern, gain in kit:
        for t0, step in _steps(plan, pattern):
            jitter = rng.normal(0.0, 0.003) + (swing if step % 2 else 0.0)
            accent = 1.0 if step % 4 == 0 else 0.8
            _place(
                out, max(0.0, t0 + jitter), sr, sound, gain * accent * float(rng.uniform(0.8, 1.0))
            )
    if rng.random() < 0.5:  # open hat on the last off-beat of every other bar
        for t0, _ in _steps(plan, "..............x."):
            if int(t0 / (4 * plan["beat"])) % 2:
                _place(out, t0, sr, open_hat, 0.2)
    return out


_GUITAR_STYLES = ("chug", "sustain", "offbeat", "riff")


def _render_guitar(
    rng: np.random.Generator, plan: dict, n: int, sr: int
) -> tuple[np.ndarray | None, dict]:
    """A distorted electric guitar (or none), `(n_samples,)` or None, and its parameters.

    Power chords (root, fifth, octave, each string slightly detuned) on the chord roots in E2..D#3, a
    bright string tone driven through tanh saturation (dense intermodulation partials across the voice
    band), then a guitar-cabinet band limit (high-pass ~90 Hz, low-pass 2.2-4 kHz). Styles: palm-muted
    eighths ("chug"), one sustained chord per chord change ("sustain"), off-beat stabs, a syncopated riff.
    """
    if rng.random() >= 0.6:
        return None, {"guitar": None, "guitar_level_db": None}
    style = _GUITAR_STYLES[int(rng.integers(len(_GUITAR_STYLES)))]
    drive = float(rng.uniform(3.0, 12.0))
    cutoff = min(float(rng.uniform(2200.0, 4000.0)), 0.4 * sr)
    level_db = float(rng.uniform(-4.0, 6.0))  # relative to the rest of "other"
    mute = float(rng.uniform(0.06, 0.15))  # palm-mute decay (s)
    sos = np.concatenate(
        [
            signal.butter(2, 90.0, btype="highpass", fs=sr, output="sos"),
            signal.butter(2, cutoff, btype="lowpass", fs=sr, output="sos"),
        ]
    )
    chords = _chords(plan)
    pattern = {
        "chug": "x.x.x.x.x.x.x.x.",
        "sustain": None,
        "offbeat": "..x...x...x...x.",
        "riff": "x..x..x.x..x..x.",
    }[style]
    if pattern is None:
        hits = [(t, 0) for t, _, _, _ in chords]
        ends = [t + span for t, span, _, _ in chords]
    else:
        hits = _steps(plan, pattern)
        ends = [h[0] for h in hits[1:]] + [plan["duration"] + 1.0]
    out = np.zeros(n)
    cache: dict = {}
    for (t, _), nxt in zip(hits, ends, strict=True):
        _, _, root, _ = _chord_at(chords, t)
        m = 40 + (root - 4) % 12
        length = min(nxt - t, 2.5) if pattern is None else min(nxt - t, 0.6)
        key = (m, round(length, 3))
        if key not in cache:
            x = sum(
                _tone(
                    _midi_hz(m + iv) * (1 + 0.002 * d),
                    length,
                    sr,
                    slope=0.8,
                    decay=(mute if style == "chug" else 1.5),
                    decay_slope=0.3,
                    attack=0.003,
                    release=0.03,
                    inharm=1e-4,
                    max_partials=20,
                )
                for iv, d in ((0, 0.0), (7, 0.7), (12, -0.5))
            )
            x = np.tanh(drive * x / max(float(np.abs(x).max()), 1e-12))
            cache[key] = signal.sosfilt(sos, x)
        _place(out, t, sr, cache[key], float(rng.uniform(0.8, 1.0)))
    params = {
        "guitar": style,
        "guitar_level_db": round(level_db, 3),
        "guitar_drive": round(drive, 3),
    }
    return out, params


def _tone_eq(
    rng: np.random.Generator, raw: dict[str, np.ndarray], sr: int
) -> tuple[dict[str, np.ndarray], dict]:
    """Per-song mixing EQ of the accompaniment stems: a low shelf (below ~300 Hz) and a high shelf
    (above ~2 kHz), each -6..+6 dB, so the accompaniment's long-term spectrum varies from song to song
    as real productions do (dark to bright, thin to boomy); the vocals are left as synthesised."""
    lo_sos = signal.butter(2, 300.0, btype="lowpass", fs=sr, output="sos")
    hi_sos = signal.butter(2, 2000.0, btype="highpass", fs=sr, output="sos")
    out, params = dict(raw), {}
    for name in ("drums", "bass", "other"):
        low_db, high_db = float(rng.uniform(-6.0, 6.0)), float(rng.uniform(-6.0, 6.0))
        x = raw[name]
        out[name] = (
            x
            + (10 ** (low_db / 20) - 1) * signal.sosfilt(lo_sos, x)
            + (10 ** (high_db / 20) - 1) * signal.sosfilt(hi_sos, x)
        )
        params[name] = [round(low_db, 2), round(high_db, 2)]
    return out, {"eq_low_high_db": params}


def _room(
    rng: np.random.Generator, raw: dict[str, np.ndarray], sr: int
) -> tuple[dict[str, np.ndarray], dict]:
    """Light reverb: one room (pre-delayed, low-passed, exponentially decaying noise impulse response of
    RT60 0.2-0.8 s) added to the vocals, drums and other at per-stem wet levels; the bass stays dry."""
    rt60 = float(rng.uniform(0.2, 0.8))
    pre = int(rng.uniform(0.005, 0.03) * sr)
    t = np.arange(int(rt60 * sr)) / sr
    damp = signal.butter(1, min(float(rng.uniform(2000.0, 5000.0)), 0.4 * sr), fs=sr, output="sos")
    ir = signal.sosfilt(damp, rng.standard_normal(t.size)) * np.exp(-6.91 * t / rt60)
    ir = np.concatenate([np.zeros(pre), ir / np.sqrt(np.sum(ir**2))])
    wet_db = {
        "vocals": float(rng.uniform(-18.0, -8.0)),
        "drums": float(rng.uniform(-24.0, -12.0)),
        "other": float(rng.uniform(-20.0, -10.0)),
    }
    out = dict(raw)
    for name, db in wet_db.items():
        x = raw[name]
        out[name] = x + 10 ** (db / 20) * signal.fftconvolve(x, ir)[: x.size]
    params = {
        "rt60_s": round(rt60, 3),
        "reverb_wet_db": {k: round(v, 2) for k, v in wet_db.items()},
    }
    return out, params


# ------------------------------------------------------------------------------------------- mix


def _mix(
    rng: np.random.Generator, raw: dict[str, np.ndarray], sr: int
) -> tuple[dict[str, np.ndarray], dict]:
    """Balance the stems, set the vocal level and the loudness, limit the peaks; float32 stems plus
    their exact sum.

    Loudness: the mixture is scaled to an RMS drawn from LOUDNESS_DBFS, then a peak limiter (one smooth
    gain envelope applied to every stem, so the mixture stays their sum) holds it under PEAK, as a
    mastering limiter does; loud targets therefore come out dense and compressed, quiet ones untouched.
    The vocals are then rescaled so the recorded vocal-to-accompaniment level holds exactly.
    """
    rel_db = {"drums": rng.uniform(-3, 3), "bass": rng.uniform(-4, 2), "other": rng.uniform(-3, 3)}
    vocal_db = float(rng.uniform(*VOCAL_LEVEL_DB))
    loud_db = float(rng.uniform(*LOUDNESS_DBFS))
    stems = {}
    for name in ("drums", "bass", "other"):
        x = raw[name]
        stems[name] = x / max(_rms(x), 1e-12) * 10 ** (rel_db[name] / 20)
    acc = stems["drums"] + stems["bass"] + stems["other"]
    v = raw["vocals"]
    stems["vocals"] = v / max(_rms(v), 1e-12) * _rms(acc) * 10 ** (vocal_db / 20)
    mix = stems["vocals"] + acc
    gain = 10 ** (loud_db / 20) / max(_rms(mix), 1e-12)
    env = _limiter_gain(gain * mix, sr, 0.97 * PEAK)
    stems = {name: gain * env * x for name, x in stems.items()}
    acc = stems["drums"] + stems["bass"] + stems["other"]
    stems["vocals"] *= _rms(acc) * 10 ** (vocal_db / 20) / max(_rms(stems["vocals"]), 1e-12)
    mix = stems["vocals"] + acc
    peak = max(np.abs(mix).max(), *(np.abs(s).max() for s in stems.values()))
    guard = min(1.0, PEAK * (1 - 1e-4) / max(peak, 1e-12))
    out = {name: (stems[name] * guard).astype(np.float32) for name in STEMS}
    out = {"mixture": ((out["vocals"] + out["drums"]) + out["bass"]) + out["other"], **out}
    levels = {
        "vocal_level_db": round(vocal_db, 4),
        "stem_level_db": {k: round(float(v), 3) for k, v in rel_db.items()},
        "loudness_target_dbfs": round(loud_db, 3),
        "limiter_max_reduction_db": round(
            max(0.0, -20 * math.log10(max(float(env.min()), 1e-12))), 3
        ),
        "mixture_rms_dbfs": round(20 * math.log10(max(_rms(out["mixture"]), 1e-12)), 3),
        "gain_db": round(20 * math.log10(gain * guard), 3),
    }
    return out, levels


def _limiter_gain(x: np.ndarray, sr: int, limit: float) -> np.ndarray:
    """A smooth gain envelope `(n,)` in (0, 1] with |x * gain| <= limit everywhere.

    The needed gain min(1, limit / |x|) is min-filtered and then averaged over the same centred 21 ms
    window: every averaged value is a mean of minima over windows that contain its own sample, so it
    never exceeds the needed gain there (no overshoot), and it moves smoothly (no clicks).
    """
    need = np.minimum(1.0, limit / np.maximum(np.abs(x), 1e-12))
    if need.min() >= 1.0:
        return np.ones_like(x)
    size = int(0.021 * sr) | 1
    low = ndimage.minimum_filter1d(need, size, mode="nearest")
    return np.minimum(ndimage.uniform_filter1d(low, size, mode="nearest"), need)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
