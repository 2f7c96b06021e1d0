"""The accompaniment renderers, in the song's key and chord progression: `other` (piano strikes, pads,
arpeggios), an optional distorted electric guitar and an optional sustained melodic instrument in the
singer's register (both mixed into `other`), `bass` and `drums`.

Each renderer draws its own parameters from its own generator and returns float64 `(n_samples,)` audio
at an arbitrary scale (the mix sets the levels).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from .dsp import band_noise, glide, midi_hz, peaking_sos, place, tone
from .plan import TRIADS, chord_at, chords, steps

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

GUITAR_STYLES = ("chug", "sustain", "offbeat", "riff")
_GUITAR_PATTERNS = {
    "chug": "x.x.x.x.x.x.x.x.",
    "sustain": None,  # one chord per chord change
    "offbeat": "..x...x...x...x.",
    "riff": "x..x..x.x..x..x.",
}


def _chord_midis(root: int, quality: str, lo: int, sevenths: bool) -> list[int]:
    """Close voicing of a chord, its lowest note the first chord tone at or above MIDI `lo`."""
    ivs = list(TRIADS[quality]) + ([_SEVENTHS[quality]] if sevenths else [])
    base = lo + (root - lo) % 12
    notes = sorted(base + iv for iv in ivs)
    return [m - 12 if m - 12 >= lo and base > lo + 5 else m for m in notes]


def _next_onsets(hits: list[tuple[float, int]], plan: dict) -> list[float]:
    """The onset after each hit (past the song's end for the last one)."""
    return [h[0] for h in hits[1:]] + [plan["duration"] + 1.0]


# ------------------------------------------------------------------------------------------ other


def render_other(rng: np.random.Generator, plan: dict, n: int, sr: int) -> np.ndarray:
    """Piano strikes, a pad and maybe an arpeggio on the chord progression, `(n_samples,)`."""
    out = np.zeros(n)
    chord_list = chords(plan)
    use = rng.random(3) < (0.75, 0.55, 0.45)
    if not use[:2].any():
        use[0] = True
    lo = int(rng.integers(50, 57))
    cache: dict = {}
    if use[0]:
        _piano(rng, out, plan, chord_list, lo, sr, cache)
    if use[1]:
        _pad(rng, out, plan, chord_list, lo, sr, cache)
    if use[2]:
        _arpeggio(rng, out, plan, chord_list, lo, sr, cache)
    return out


def _piano(rng, out, plan, chord_list, lo, sr, cache) -> None:
    """Struck chords on one of the piano patterns, each ringing until the next strike."""
    pattern = _PIANO[int(rng.integers(len(_PIANO)))]
    slope, decay = float(rng.uniform(1.0, 1.8)), float(rng.uniform(0.5, 1.4))
    hits = steps(plan, pattern)
    for (t, _), nxt in zip(hits, _next_onsets(hits, plan), strict=True):
        _, _, root, quality = chord_at(chord_list, t)
        length = min(nxt - t + 0.3, 3.0)
        vel = float(rng.uniform(0.6, 1.0))
        for m in _chord_midis(root, quality, lo, plan["sevenths"]):
            key = ("p", m, round(length, 3))
            if key not in cache:
                cache[key] = tone(midi_hz(m), length, sr, slope=slope, decay=decay, inharm=2e-4)
            place(out, t, sr, cache[key], vel)


def _pad(rng, out, plan, chord_list, lo, sr, cache) -> None:
    """A pad: two detuned voices, slow attack, sustained per chord."""
    slope, gain = float(rng.uniform(1.6, 2.4)), float(rng.uniform(0.3, 0.7))
    for t, span, root, quality in chord_list:
        for m in _chord_midis(root, quality, lo, plan["sevenths"]):
            key = ("pad", m, round(span, 3))
            if key not in cache:
                cache[key] = sum(
                    tone(
                        midi_hz(m + d),
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
            place(out, t, sr, cache[key], gain)


def _arpeggio(rng, out, plan, chord_list, lo, sr, cache) -> None:
    """Eighth-note arpeggio in the singer's register (overlaps the voice's f0 range)."""
    slope, decay, gain = (
        float(rng.uniform(0.8, 1.4)),
        float(rng.uniform(0.15, 0.4)),
        float(rng.uniform(0.3, 0.6)),
    )
    eighth = plan["beat"] / 2
    for j, (t, _) in enumerate(steps(plan, "x.x.x.x.x.x.x.x.")):
        _, _, root, quality = chord_at(chord_list, t)
        notes = _chord_midis(root, quality, lo + 12, plan["sevenths"])
        m = notes[j % len(notes)]
        key = ("arp", m)
        if key not in cache:
            cache[key] = tone(
                midi_hz(m), eighth + 0.2, sr, slope=slope, decay=decay, max_partials=10
            )
        place(out, t, sr, cache[key], gain * float(rng.uniform(0.7, 1.0)))


# ----------------------------------------------------------------------------------- bass, drums


def render_bass(rng: np.random.Generator, plan: dict, n: int, sr: int) -> np.ndarray:
    """Plucked bass on chord roots (and some fifths/octaves), `(n_samples,)`."""
    out = np.zeros(n)
    chord_list = chords(plan)
    pattern = _BASS[int(rng.integers(len(_BASS)))]
    slope, decay = float(rng.uniform(0.8, 1.6)), float(rng.uniform(0.3, 0.9))
    hits = steps(plan, pattern)
    cache: dict = {}
    for (t, step), nxt in zip(hits, _next_onsets(hits, plan), strict=True):
        _, _, root, _ = chord_at(chord_list, t)
        m = 28 + (root - 4) % 12  # E1..D#2
        if step % 4 and rng.random() < 0.3:
            m += 7 if rng.random() < 0.5 else 12
        length = min(nxt - t, 2.0)
        key = (m, round(length, 3))
        if key not in cache:
            cache[key] = tone(
                midi_hz(m), length, sr, slope=slope, decay=decay, decay_slope=0.7, max_partials=24
            )
        place(out, t, sr, cache[key], float(rng.uniform(0.75, 1.0)))
    return out


def render_drums(rng: np.random.Generator, plan: dict, n: int, sr: int) -> np.ndarray:
    """Kick, snare and hi-hats on 16-step patterns, `(n_samples,)`."""
    out = np.zeros(n)
    t = np.arange(int(0.4 * sr)) / sr
    f_hi, f_lo, tau_f = rng.uniform(100, 160), rng.uniform(40, 55), rng.uniform(0.02, 0.06)
    freq = f_lo + (f_hi - f_lo) * np.exp(-t / tau_f)
    kick = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / rng.uniform(0.12, 0.3))
    kick += 0.3 * band_noise(rng, t.size, sr, 1000, 5000) * np.exp(-t / 0.004)
    tn = t[: int(0.35 * sr)]
    snare = band_noise(rng, tn.size, sr, 1000, 10000) * np.exp(-tn / rng.uniform(0.04, 0.09))
    snare += 0.8 * np.sin(2 * np.pi * rng.uniform(170, 240) * tn) * np.exp(-tn / 0.05)
    hat_lo = min(6000.0, 0.35 * sr)  # full band at 44.1 kHz (6-18 kHz); 2.8-3.6 kHz at 8 kHz
    noise = band_noise(rng, tn.size, sr, hat_lo, 18000.0)
    hat = noise * np.exp(-tn / rng.uniform(0.015, 0.04))
    open_hat = noise * np.exp(-tn / rng.uniform(0.06, 0.12))
    kit = (
        (kick, _KICK[int(rng.integers(len(_KICK)))], 1.0),
        (snare, _SNARE[int(rng.integers(len(_SNARE)))], float(rng.uniform(0.5, 0.9))),
        (hat, _HATS[int(rng.integers(len(_HATS)))], float(rng.uniform(0.12, 0.3))),
    )
    swing = float(rng.uniform(0.0, 0.01))
    for sound, pattern, gain in kit:
        for t0, step in steps(plan, pattern):
            jitter = rng.normal(0.0, 0.003) + (swing if step % 2 else 0.0)
            accent = 1.0 if step % 4 == 0 else 0.8
            place(
                out, max(0.0, t0 + jitter), sr, sound, gain * accent * float(rng.uniform(0.8, 1.0))
            )
    if rng.random() < 0.5:  # open hat on the last off-beat of every other bar
        for t0, _ in steps(plan, "..............x."):
            if int(t0 / (4 * plan["beat"])) % 2:
                place(out, t0, sr, open_hat, 0.2)
    return out



# ----------------------------------------------------------------------------------------- guitar


def render_guitar(
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
    style = GUITAR_STYLES[int(rng.integers(len(GUITAR_STYLES)))]
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
    chord_list = chords(plan)
    sustain = _GUITAR_PATTERNS[style] is None
    if sustain:
        hits = [(t, 0) for t, _, _, _ in chord_list]
        ends = [t + span for t, span, _, _ in chord_list]
    else:
        hits = steps(plan, _GUITAR_PATTERNS[style])
        ends = _next_onsets(hits, plan)
    out = np.zeros(n)
    cache: dict = {}
    for (t, _), nxt in zip(hits, ends, strict=True):
        _, _, root, _ = chord_at(chord_list, t)
        m = 40 + (root - 4) % 12
        length = min(nxt - t, 2.5) if sustain else min(nxt - t, 0.6)
        key = (m, round(length, 3))
        if key not in cache:
            decay = mute if style == "chug" else 1.5
            cache[key] = _power_chord(m, length, sr, decay=decay, drive=drive, sos=sos)
        place(out, t, sr, cache[key], float(rng.uniform(0.8, 1.0)))
    params = {
        "guitar": style,
        "guitar_level_db": round(level_db, 3),
        "guitar_drive": round(drive, 3),
    }
    return out, params


def _power_chord(
    m: int, length: float, sr: int, *, decay: float, drive: float, sos: np.ndarray
) -> np.ndarray:
    """Root, fifth and octave on MIDI `m`, saturated and band-limited by the cabinet filter `sos`."""
    x = sum(
        tone(
            midi_hz(m + iv) * (1 + 0.002 * d),
            length,
            sr,
            slope=0.8,
            decay=decay,
            decay_slope=0.3,
            attack=0.003,
            release=0.03,
            inharm=1e-4,
            max_partials=20,
        )
        for iv, d in ((0, 0.0), (7, 0.7), (12, -0.5))
    )
    x = np.tanh(drive * x / max(float(np.abs(x).max()), 1e-12))
    return signal.sosfilt(sos, x)


# ----------------------------------------------------------------- melodic lead in the voice's register

# Lead instruments: (partial slope, max partials, odd partials only, vibrato cents range, attack s,
# body resonances [(Hz, dB, Q)]). Sustained, pitched and in the singer's range: the instruments a
# separator trained on piano/guitar/bass/drums accompaniment mistakes for a voice.
LEAD_KINDS = {
    "strings": (1.0, 24, False, (8.0, 25.0), 0.15, ((450.0, 6.0, 1.5), (2500.0, 4.0, 1.2))),
    "organ": (1.6, 8, False, (0.0, 0.0), 0.02, ()),
    "clarinet": (1.1, 15, True, (0.0, 10.0), 0.05, ((1500.0, 4.0, 1.0),)),
    "sax": (0.8, 24, False, (15.0, 40.0), 0.04, ((700.0, 6.0, 1.2), (1800.0, 8.0, 1.5))),
    "synth": (0.6, 30, False, (10.0, 50.0), 0.01, ()),
}
LEAD_ROLES = ("counter", "fills", "unison")
# Realism v4 adds a distorted lead guitar (single notes with bends and wide vibrato, saturated and
# cabinet-filtered: the rock solo / fill line that sits on the voice's f0 and formant range).
LEAD_KINDS_V4 = {**LEAD_KINDS, "guitar": (0.8, 20, False, (20.0, 60.0), 0.005, ())}


def render_lead(
    rng: np.random.Generator, plan: dict, n: int, sr: int, *, p_lead: float = 0.5,
    kinds: dict | None = None,
) -> tuple[np.ndarray | None, dict]:
    """A sustained melodic instrument in the singer's register (or none), `(n_samples,)` or None, and
    its parameters. Roles: a counter-melody of chord tones throughout ("counter"), lines only in the
    vocal rests ("fills", call and response), or the vocal melody itself an octave-free unison
    ("unison": the instrument doubles the lead's notes, as a string line or a sax often does).
    `p_lead`: the chance of a lead instrument; `kinds`: the instruments drawn from (LEAD_KINDS)."""
    kinds = LEAD_KINDS if kinds is None else kinds
    if rng.random() >= p_lead:
        return None, {"lead": None, "lead_role": None, "lead_level_db": None}
    kind = tuple(kinds)[int(rng.integers(len(kinds)))]
    role = LEAD_ROLES[int(rng.integers(len(LEAD_ROLES)))]
    slope, partials, odd, vib_range, attack, body = kinds[kind]
    vib_cents, vib_hz = float(rng.uniform(*vib_range)), float(rng.uniform(4.5, 6.5))
    level_db = float(rng.uniform(-6.0, 3.0))  # relative to the rest of "other"
    lo, hi = plan["public"]["singer_range_midi"]
    out = np.zeros(n)
    for onset, dur, m in _lead_notes(rng, plan, role, lo, hi):
        length = min(dur, plan["duration"] - onset)
        if length <= 0.05:
            continue
        t = np.arange(int(round(length * sr))) / sr
        vib = vib_cents * np.clip((t - 0.2) / 0.3, 0.0, 1.0) * np.sin(2 * np.pi * vib_hz * t)
        f0 = midi_hz(m) * 2.0 ** ((vib + float(rng.normal(0.0, 5.0))) / 1200)
        if kind == "guitar" and rng.random() < 0.4:  # bend up a whole tone into the note
            f0 = f0 * 2.0 ** (-2.0 / 12 * np.clip(1.0 - t / 0.12, 0.0, 1.0))
        note = glide(f0, sr, slope=slope, max_partials=partials, odd_only=odd, attack=attack,
                     release=min(0.15, 0.4 * length))
        place(out, onset, sr, note, float(rng.uniform(0.7, 1.0)))
    if not out.any():
        return None, {"lead": None, "lead_role": None, "lead_level_db": None}
    if kind == "guitar":
        drive = float(rng.uniform(3.0, 10.0))
        out = np.tanh(drive * out / max(float(np.abs(out).max()), 1e-12))
        cab = np.concatenate([signal.butter(2, 100.0, btype="highpass", fs=sr, output="sos"),
                              signal.butter(2, min(float(rng.uniform(2500.0, 4500.0)), 0.4 * sr),
                                            btype="lowpass", fs=sr, output="sos")])
        out = signal.sosfilt(cab, out)
    for freq, db, q in body:
        out = signal.sosfilt(peaking_sos(freq, db, q, sr), out)
    params = {"lead": kind, "lead_role": role, "lead_level_db": round(level_db, 3)}
    return out, params


def _lead_notes(
    rng: np.random.Generator, plan: dict, role: str, lo: int, hi: int
) -> list[tuple[float, float, int]]:
    """(onset s, duration s, MIDI) of the lead instrument's notes for `role`."""
    if role == "unison":
        return [(nt["onset"], nt["dur"], nt["midi"]) for nt in plan["notes"]]
    chord_list = chords(plan)
    beat, t, cur = plan["beat"], 0.0, int(rng.integers(lo, hi + 1))
    notes = []
    while t < plan["duration"]:
        if role == "fills":
            inside = [b for a, b in plan["phrases"] if a - 0.1 <= t < b]
            if inside:
                t = inside[0]
                continue
        dur = float(rng.choice([1.0, 2.0, 2.0, 3.0, 4.0])) * beat
        _, _, root, quality = chord_at(chord_list, t)
        tones = [m for m in range(lo, hi + 1) if (m - root) % 12 in TRIADS[quality]] or [cur]
        cur = min(tones, key=lambda m: abs(m - cur) + 3 * float(rng.random()))
        notes.append((t, dur, cur))
        t += dur
    return notes


# ------------------------------------------------------------- realism v4: a pad in the singer's register


def render_register_pad(
    rng: np.random.Generator, plan: dict, n: int, sr: int
) -> tuple[np.ndarray | None, dict]:
    """A string-ensemble / synth pad voiced inside the singer's tessitura (or none, 45 %): sustained
    chord tones with a bright sawtooth-like spectrum (partials k^-0.7..k^-1.3), two detuned voices, a
    slow attack and a slow low-pass swell, so its partials sit on the voice's f0 and formants through
    every phrase. `(n_samples,)` or None and its parameters."""
    if rng.random() >= 0.55:
        return None, {"register_pad": None, "register_pad_level_db": None}
    slope = float(rng.uniform(0.7, 1.3))
    attack = float(rng.uniform(0.1, 0.5))
    detune = float(rng.uniform(0.03, 0.12))
    level_db = float(rng.uniform(-6.0, 3.0))  # relative to the rest of "other"
    lo, hi = plan["public"]["singer_range_midi"]
    base = int(rng.integers(lo, max(lo + 1, hi - 6)))
    out = np.zeros(n)
    cache: dict = {}
    for t, span, root, quality in chords(plan):
        for m in _chord_midis(root, quality, base, plan["sevenths"]):
            key = (m, round(span, 3))
            if key not in cache:
                cache[key] = sum(
                    tone(midi_hz(m + d), span + 0.3, sr, slope=slope, decay=None, max_partials=16,
                         attack=attack, release=0.3)
                    for d in (-detune, detune)
                )
            place(out, t, sr, cache[key], 1.0)
    # The swell: a one-pole low-pass whose cutoff moves with a slow (0.05-0.3 Hz) sine.
    rate, lo_hz = float(rng.uniform(0.05, 0.3)), float(rng.uniform(600.0, 1500.0))
    t = np.arange(n) / sr
    cut = lo_hz * 2.0 ** (1.5 * (1 + np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))))
    a = np.exp(-2 * np.pi * np.minimum(cut, 0.45 * sr) / sr)
    out = _one_pole(out, a)
    params = {"register_pad": round(slope, 3), "register_pad_level_db": round(level_db, 3)}
    return out, params


def _one_pole(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """y[i] = (1 - a[i]) x[i] + a[i] y[i-1] with a time-varying pole, in blocks of 64 samples (the
    pole held per block, state carried), so it runs as scipy filters, not a Python loop per sample."""
    y = np.empty_like(x)
    zi = np.zeros(1)
    for i in range(0, x.size, 64):
        ai = float(a[i])
        y[i:i + 64], zi = signal.lfilter([1 - ai], [1.0, -ai], x[i:i + 64], zi=zi)
    return y
