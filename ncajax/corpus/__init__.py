"""The embedded synthetic multitrack corpus, written in the MUSDB18-HQ folder layout.

Real MUSDB18 cannot be downloaded here, so the study's default data are songs this package synthesises:

- vocals: source-filter singing. A glottal-like harmonic source (all harmonics below Nyquist, spectral
  tilt varied per song, +6 dB/oct lip radiation) is shaped by a cascade of five vowel formants that move
  smoothly from syllable to syllable; phrases of notes in the singer's range (bass/tenor/alto/soprano) with
  portamento, vibrato (5-7 Hz), pitch jitter, consonant noise bursts at syllable onsets, aspiration, breaths
  and rests between phrases. The harmonics are synthesised additively with the phase of the cumulative f0
  and amplitude envelope(k * f0(t), vowel(t)), so no time-varying filter is needed.
- accompaniment in the song's key and chord progression: `other` (piano strikes, pads, arpeggios and, in
  about 60 % of the songs, a distorted electric guitar: saturated power chords through a cabinet band
  limit, chugged, sustained, off-beat or riffed), `bass` (plucked roots, fifths and octaves), `drums`
  (pitch-dropping kick, noise+tone snare, band-passed noise hi-hats).
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

Modules: `plan` (key, chords, tempo, singer, vocal score), `voice` (the singing voice), `instruments`
(other, guitar, bass, drums), `dsp` (shared sound primitives), `mix` (EQ, room, levels, limiter),
`song` (`synthesize_track`), `store` (`generate_corpus`: cache directory, atomic write).
"""

from __future__ import annotations

from .mix import LOUDNESS_DBFS, PEAK, STEMS, VOCAL_LEVEL_DB
from .song import MIN_SAMPLE_RATE, SPLITS, synthesize_track
from .store import DEFAULT_CONFIG, FORMAT_VERSION, MARKER, corpus_dir, generate_corpus, track_names

__all__ = [
    "DEFAULT_CONFIG",
    "FORMAT_VERSION",
    "LOUDNESS_DBFS",
    "MARKER",
    "MIN_SAMPLE_RATE",
    "PEAK",
    "SPLITS",
    "STEMS",
    "VOCAL_LEVEL_DB",
    "corpus_dir",
    "generate_corpus",
    "synthesize_track",
    "track_names",
]
