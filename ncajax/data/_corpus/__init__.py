"""The embedded synthetic multitrack corpus, written in the MUSDB18-HQ folder layout.

Real MUSDB18 cannot be downloaded here, so the study's default data are songs this package synthesises:

- vocals: source-filter singing. A glottal-like harmonic source (all harmonics below Nyquist, spectral
  tilt varied per song, +6 dB/oct lip radiation) is shaped by a cascade of five vowel formants that move
  smoothly from syllable to syllable; phrases of notes in the singer's range (bass/tenor/alto/soprano) with
  portamento, vibrato (4.5-7 Hz), pitch jitter, consonant noise bursts at syllable onsets (sibilance up to
  11 kHz where the rate allows), aspiration, breaths and rests between phrases. The harmonics are
  synthesised additively with the phase of the cumulative f0 and amplitude envelope(k * f0(t), vowel(t)),
  so no time-varying filter is needed. Each singer has one of five timbre families (chest, breathy,
  belt, nasal, head; `voice.VOCAL_STYLES`); in about 35 % of the songs the lead is doubled (a second
  take 10-35 ms late, its own intonation, -9..-2 dB) and in about 45 % a second singer adds backing
  vocals (a diatonic third/sixth harmony or sustained "oo/ah" chord tones, -14..-4 dB), all in `vocals`.
- accompaniment in the song's key and chord progression: `other` (piano strikes, pads, arpeggios; in
  about 60 % of the songs a distorted electric guitar: saturated power chords through a cabinet band
  limit, chugged, sustained, off-beat or riffed; in about 50 % a sustained melodic instrument in the
  singer's register, `instruments.LEAD_KINDS` strings/organ/clarinet/sax/synth, with vibrato, as a
  counter-melody, in the vocal rests or in unison with the voice), `bass` (plucked roots, fifths and
  octaves), `drums` (pitch-dropping kick, noise+tone snare, band-passed noise hi-hats up to 18 kHz).
- production: a per-song EQ of each accompaniment stem (low and high shelves, -6..+6 dB each), a vocal
  channel strip (compressor, low cut, low-mid and presence peaks, air shelf; `mix.vocal_chain`), one light
  reverb per song (pre-delayed, damped, exponentially decaying noise impulse response, RT60 0.2-0.8 s) on
  vocals, drums and other at per-stem wet levels; the mixture is scaled to a loudness drawn from
  LOUDNESS_DBFS (-30..-6 dBFS RMS, quiet demo to loud master) and held under PEAK by a smooth peak limiter
  whose gain envelope multiplies every stem (so the mixture stays their exact sum).

Every song draws key, mode, progression, tempo (80-140 BPM), singer, timbre family, doubles, backing
vocals, guitar, lead instrument, EQ, vocal chain, room, loudness and the vocal-to-accompaniment level
(RMS, -9..+4 dB, exact after limiting) from `np.random.default_rng([seed, split_code, index])`, so a track depends only on (seed, split, index,
duration, sample_rate), never on how many other tracks there are. Same config -> bit-identical files. The
mixture is the float32 sum `((vocals + drums) + bass) + other` of the stored stems, and no stem and no
mixture sample exceeds 0.9 in magnitude.

Rates: the corpus is synthesised at `CorpusConfig.sample_rate`, which the pipeline and the study set to
their STFT preset's rate ("fast": 8 kHz; "mid": 16 kHz; "paper": 44.1 kHz, full band); band limits are written for the
full band and clamped below Nyquist only where the rate requires it.

Why the vocal variety, backing vocals and the lead instrument (format 3, issue "Separators worth
studying"): separators fail on real songs where the voice is EQ'd and compressed, stacked with doubles
and harmonies, and shares its register with sustained pitched instruments; a corpus with one voice
family and only percussive/chordal accompaniment lets a model learn "pitched with vibrato = voice".

Why the accompaniment, room and level spread (format 2, project issue 14): the separators see raw
magnitudes, so what they learn transfers to a real song only if the corpus covers its level, its dense
distorted-guitar spectra in the voice band and its reverberant vocals; `benchmarks/bench_realism.py`
measures the transfer on the real MUSDB18 track.

Realism v4 (`CorpusConfig(realism="v4")`, the default since corpus format 4; "v3" is everything above,
byte for byte the audio of format 3): stereo stems `(n, 2)` with
constant-power panning (lead vocal within ±0.15 of the centre, doubles centred or split to a side,
backing vocals 0.3-0.9 to a side, keys ±0.5, lead instrument and register pad ±0.7, guitar double-tracked
8-25 ms apart on both sides, bass centred, drums ±0.1), every level set on the mono down-mix
(L + R) / 2 that `ncajax.data` reads (`stereo`); vocal families `voice.VOCAL_STYLES_V4` (the five
with a ±15 % formant scale, "raspy", pitch-corrected "tuned"), doubles in 50 % and backing vocals in
55 % of the songs, a wider vocal strip (`stereo.vocal_chain`: compression up to 8:1, saturation in 35 %,
low cut up to 350 Hz, three peaks, air shelf, a telephone band in 10 %); a lead instrument in 70 % of
the songs with a distorted lead guitar among the kinds (`instruments.LEAD_KINDS_V4`), a bright pad
voiced inside the singer's tessitura in 55 % (`instruments.render_register_pad`); a stereo room
(decorrelated tails, RT60 0.2-1.2 s) and a ping-pong vocal echo in 40 % (`stereo.room`). Generation
costs about the same as v3 (benchmarks/results-transfer-cpu-2026-12-07.txt).

Modules: `plan` (key, chords, tempo, singer, vocal score), `voice` (the singing voice), `instruments`
(other, guitar, bass, drums), `dsp` (shared sound primitives), `mix` (EQ, room, levels, limiter),
`stereo` (realism v4: panning, vocal strip, stereo room), `song` (`synthesize_track`), `store`
(`generate_corpus`: cache directory, atomic write).
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
