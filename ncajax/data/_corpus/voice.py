"""The singing voice: source-filter synthesis driven by the song plan's vocal score.

A glottal-like harmonic source (all harmonics below Nyquist, spectral tilt varied per song, +6 dB/oct
lip radiation) shaped by a cascade of five vowel formants that move smoothly from syllable to syllable,
with portamento, vibrato, pitch jitter, consonant noise bursts, aspiration and breaths. Pitch, loudness
and formant tracks are built at a control rate and the harmonics are synthesised additively.

Every singer belongs to one of VOCAL_STYLES (format 3), each its own region of timbre space: "chest"
(the format-2 voice), "breathy" (steep tilt, strong aspiration, wide formants), "belt" (flat tilt,
strong singer's formant), "nasal" (a nasal pole-zero pair, narrow formants) and "head" (thin, steep,
near-sinusoidal). `render_vocal_stem` adds what real vocal stems hold besides the lead: a doubled take
of the lead line (a few cents and tens of ms off) and backing vocals (a diatonic harmony a third or
sixth away, or sustained "oo/ah" chord tones, by a second singer).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from .dsp import band_noise
from .plan import CONSONANTS, VOICES, backing_plan, double_plan

_CTRL_RATE = 200.0  # Hz; f0, loudness and formant tracks are built at this rate, then interpolated

# Adult-male vowel formants F1..F5 (Hz) and bandwidths (Hz); scaled per singer.
_VOWELS = {
    "a": ((730, 1090, 2440, 3400, 4300), (80, 90, 120, 150, 200)),
    "e": ((530, 1840, 2480, 3500, 4300), (60, 100, 120, 150, 200)),
    "i": ((270, 2290, 3010, 3700, 4400), (50, 100, 120, 150, 200)),
    "o": ((570, 840, 2410, 3300, 4300), (70, 80, 100, 150, 200)),
    "u": ((300, 870, 2240, 3300, 4300), (50, 80, 100, 150, 200)),
}


# Timbre families: uniform ranges of the source/filter draws (tilt dB/oct, singer's-formant boost dB,
# aspiration level, formant-bandwidth scale, vibrato depth cents) and the nasal pole-zero's depth dB.
VOCAL_STYLES = {
    "chest": {"tilt": (-13.0, -7.0), "bright": (3.0, 15.0), "asp": (0.005, 0.02),
              "bw": (0.8, 1.3), "vib": (20.0, 70.0), "nasal": (0.0, 0.0)},
    "breathy": {"tilt": (-16.0, -11.0), "bright": (0.0, 6.0), "asp": (0.05, 0.15),
                "bw": (1.2, 1.8), "vib": (10.0, 40.0), "nasal": (0.0, 0.0)},
    "belt": {"tilt": (-10.0, -7.5), "bright": (6.0, 12.0), "asp": (0.003, 0.01),
             "bw": (0.85, 1.15), "vib": (30.0, 90.0), "nasal": (0.0, 0.0)},
    "nasal": {"tilt": (-12.0, -7.0), "bright": (4.0, 12.0), "asp": (0.005, 0.02),
              "bw": (0.85, 1.1), "vib": (15.0, 50.0), "nasal": (4.0, 9.0)},
    "head": {"tilt": (-15.0, -12.0), "bright": (0.0, 5.0), "asp": (0.02, 0.06),
             "bw": (1.0, 1.5), "vib": (20.0, 60.0), "nasal": (0.0, 0.0)},
}
# Realism v4: every family with a wider formant scale (±15 % instead of ±8 %: children's, falsetto
# and pitch-shifted voices), plus "raspy" (flat tilt, heavy aspiration noise, wide formants) and
# "tuned" (pitch-corrected pop vocals: no vibrato, almost no jitter, so "vibrato = voice" fails).
VOCAL_STYLES_V4 = {
    **{name: {**r, "fscale": (0.85, 1.15)} for name, r in VOCAL_STYLES.items()},
    "raspy": {"tilt": (-10.0, -6.0), "bright": (2.0, 10.0), "asp": (0.08, 0.25),
              "bw": (1.1, 1.6), "vib": (5.0, 40.0), "nasal": (0.0, 0.0), "fscale": (0.85, 1.15)},
    "tuned": {"tilt": (-12.0, -7.0), "bright": (3.0, 12.0), "asp": (0.005, 0.03),
              "bw": (0.85, 1.2), "vib": (0.0, 6.0), "nasal": (0.0, 0.0), "fscale": (0.85, 1.15),
              "jitter": (0.5, 2.0)},
}


def render_vocal_stem(
    rng: np.random.Generator, plan: dict, n: int, sr: int, *, realism: str = "v3"
) -> tuple[np.ndarray | list[tuple[str, np.ndarray]], dict]:
    """The vocals stem `(n_samples,)` float64: the lead, maybe a doubled take of it and maybe backing
    vocals (levels relative to the lead's RMS), and the JSON-ready parameters of all three.

    `realism="v4"` draws from VOCAL_STYLES_V4, doubles 50 % and adds backing vocals to 55 % of the
    songs, and returns the parts unsummed, `[("lead" | "double" | "backing", (n_samples,)), ...]`
    (each at its level), for the mix to pan them apart."""
    v4 = realism == "v4"
    styles = VOCAL_STYLES_V4 if v4 else VOCAL_STYLES
    p_double, p_backing = (0.5, 0.55) if v4 else (0.35, 0.45)
    lead_rng, dbl_rng, back_rng, choice_rng = rng.spawn(4)
    style = tuple(styles)[int(choice_rng.integers(len(styles)))]
    lead, params = render_vocals(lead_rng, plan, n, sr, style=style, styles=styles)
    ref = max(_rms(lead), 1e-12)
    out = lead.copy()
    parts = [("lead", lead)]
    params["double_db"] = params["backing"] = None
    if choice_rng.random() < p_double:  # the lead line sung twice, as producers stack takes
        db = float(choice_rng.uniform(-9.0, -2.0))
        take, _ = render_vocals(dbl_rng, double_plan(dbl_rng, plan), n, sr, style=style, styles=styles)
        take = take / max(_rms(take), 1e-12) * ref * 10 ** (db / 20)
        out += take
        parts.append(("double", take))
        params["double_db"] = round(db, 3)
    if choice_rng.random() < p_backing:
        kind = ("harmony", "oohs")[int(choice_rng.integers(2))]
        bplan = backing_plan(back_rng, plan, kind)
        if bplan["notes"]:
            bstyle = tuple(styles)[int(choice_rng.integers(len(styles)))]
            db = float(choice_rng.uniform(-14.0, -4.0))
            back, _ = render_vocals(back_rng, bplan, n, sr, style=bstyle, styles=styles)
            back = back / max(_rms(back), 1e-12) * ref * 10 ** (db / 20)
            out += back
            parts.append(("backing", back))
            params["backing"] = {"kind": kind, "singer": bplan["voice"], "style": bstyle,
                                 "level_db": round(db, 3)}
    return (parts if v4 else out), params


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def render_vocals(
    rng: np.random.Generator, plan: dict, n: int, sr: int, *, style: str = "chest",
    styles: dict | None = None,
) -> tuple[np.ndarray, dict]:
    """One singing voice `(n_samples,)` float64 (arbitrary scale) and its timbre parameters; `style`
    names a family of `styles` (default VOCAL_STYLES)."""
    hop = sr / _CTRL_RATE
    nc = int(np.ceil(n / hop)) + 2
    timbre, params = _timbre(rng, plan["voice"], style, styles)
    tracks = _note_tracks(plan, nc, timbre["fscale"], timbre["bw_scale"])
    if not np.isfinite(tracks["midi"]).any():
        return np.zeros(n), params
    f0, amp, formants, bands = _control_tracks(rng, tracks, timbre)
    voiced = _harmonic_sum(f0, amp, formants, bands, timbre, n, sr)
    active = np.interp(np.arange(n) / hop, np.arange(nc), amp)
    level = np.sqrt(np.mean(voiced[active > 0.3] ** 2)) if (active > 0.3).any() else 1.0
    out = voiced / max(level, 1e-12)
    _add_noises(rng, out, plan, amp, tracks["cons"], timbre["aspiration"], sr)
    return out, params


def _timbre(
    rng: np.random.Generator, voice: str, style: str = "chest", styles: dict | None = None
) -> tuple[dict, dict]:
    """The singer's timbre draws (inside the ranges of `style`) and their JSON-ready record."""
    _, _, fscale = VOICES[voice]
    r = (VOCAL_STYLES if styles is None else styles)[style]
    timbre = {
        "fscale": fscale * float(rng.uniform(*r.get("fscale", (0.92, 1.08)))),
        "bw_scale": float(rng.uniform(*r["bw"])),
        "tilt": float(rng.uniform(*r["tilt"])),  # dB/oct of the glottal source
        "bright_db": float(rng.uniform(*r["bright"])),  # "singer's formant" boost near 3 kHz
        "bright_hz": float(rng.uniform(2600.0, 3400.0)),
        "vib_rate": float(rng.uniform(4.5, 7.0)),
        "vib_depth": float(rng.uniform(*r["vib"])),  # cents
        "jitter": float(rng.uniform(*r.get("jitter", (5.0, 15.0)))),  # cents
        "tremolo": float(rng.uniform(0.05, 0.2)),
        "aspiration": float(rng.uniform(*r["asp"])),
        "nasal_db": float(rng.uniform(*r["nasal"])),
        "nasal_hz": float(rng.uniform(220.0, 300.0)),  # nasal resonance; its zero sits ~3x higher
    }
    params = {
        "vocal_style": style,
        "formant_scale": round(timbre["fscale"], 4),
        "bandwidth_scale": round(timbre["bw_scale"], 4),
        "tilt_db_per_octave": round(timbre["tilt"], 3),
        "brightness_db": round(timbre["bright_db"], 3),
        "vibrato_hz": round(timbre["vib_rate"], 3),
        "vibrato_cents": round(timbre["vib_depth"], 3),
        "jitter_cents": round(timbre["jitter"], 3),
        "aspiration": round(timbre["aspiration"], 4),
        "nasal_db": round(timbre["nasal_db"], 3),
    }
    return timbre, params


def _note_tracks(plan: dict, nc: int, fscale: float, bw_scale: float) -> dict[str, np.ndarray]:
    """Raw control-rate tracks of the score: pitch (NaN in rests), loudness, vibrato onset, formants,
    bandwidths and one envelope per consonant."""
    tc = np.arange(nc) / _CTRL_RATE
    midi = np.full(nc, np.nan)
    amp = np.zeros(nc)
    vib_env = np.zeros(nc)
    formants = np.full((nc, 5), np.nan)
    bands = np.full((nc, 5), np.nan)
    cons_env = {c: np.zeros(nc) for c in CONSONANTS}
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
            _, _, cdur, level = CONSONANTS[note["cons"]]
            gate = np.clip(1.0 - np.abs(t - cdur / 2) / (cdur / 2), 0.0, 1.0) * level
            cons_env[note["cons"]][c0:c1] += gate
            vowel_start = 0.6 * cdur
        attack = 0.03 if note["cons"] is None else 0.05
        rise = np.clip((t - vowel_start) / attack, 0.0, 1.0)
        fall = np.clip((note["dur"] - t) / 0.04, 0.0, 1.0)
        amp[c0:c1] = np.maximum(amp[c0:c1], note["gain"] * np.minimum(rise, fall))
        vib_env[c0:c1] = np.clip((t - 0.15) / 0.3, 0.0, 1.0)
    return {"midi": midi, "amp": amp, "vib_env": vib_env, "formants": formants, "bands": bands,
            "cons": cons_env}


def _control_tracks(
    rng: np.random.Generator, tracks: dict, timbre: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Held through rests and smoothed (portamento, coarticulation), with vibrato, jitter and tremolo:
    `(f0 Hz, amplitude, formants, bandwidths)` at the control rate."""
    nc = tracks["midi"].shape[0]
    midi = _fill(tracks["midi"])
    formants, bands = _fill(tracks["formants"]), _fill(tracks["bands"])
    midi = _smooth(midi, 0.04)  # portamento
    formants, bands = _smooth(formants, 0.06), _smooth(bands, 0.06)  # coarticulation
    amp = _smooth(tracks["amp"], 0.015)
    wobble = 1 + 0.05 * _smooth(rng.standard_normal(nc), 0.3)
    vib_phase = 2 * np.pi * np.cumsum(timbre["vib_rate"] * wobble)
    vib = np.sin(vib_phase / _CTRL_RATE + rng.uniform(0, 2 * np.pi))
    jit = _smooth(rng.standard_normal(nc), 0.03)
    jit *= timbre["jitter"] / max(jit.std(), 1e-9)
    cents = timbre["vib_depth"] * _smooth(tracks["vib_env"], 0.05) * vib + jit
    f0 = 440.0 * 2.0 ** ((midi + cents / 100 - 69) / 12)
    amp = amp * (1 + timbre["tremolo"] * vib)
    amp[amp < 1e-4] = 0.0
    return f0, amp, formants, bands


def _add_noises(
    rng: np.random.Generator,
    out: np.ndarray,
    plan: dict,
    amp: np.ndarray,
    cons_env: dict[str, np.ndarray],
    aspiration: float,
    sr: int,
) -> None:
    """Add aspiration, consonant bursts and breaths to the normalised voice `out` in place."""
    n, nc = out.size, amp.size
    up = np.arange(n) / (sr / _CTRL_RATE)
    out += aspiration * band_noise(rng, n, sr, 1500.0, 9000.0) * np.interp(up, np.arange(nc), amp)
    for name, env in cons_env.items():
        if env.any():
            lo, hi, _, _ = CONSONANTS[name]
            out += band_noise(rng, n, sr, lo, hi) * np.interp(up, np.arange(nc), env)
    breath = np.zeros(nc)
    for start, dur in plan["breaths"]:
        c0, c1 = int(start * _CTRL_RATE), min(nc, int((start + dur) * _CTRL_RATE))
        if c1 > c0:
            breath[c0:c1] = 0.06 * np.sin(np.linspace(0, np.pi, c1 - c0))
    if breath.any():
        out += band_noise(rng, n, sr, 400.0, 2500.0) * np.interp(up, np.arange(nc), breath)
def _harmonic_sum(
    f0: np.ndarray,
    amp: np.ndarray,
    formants: np.ndarray,
    bands: np.ndarray,
    timbre: dict,
    n: int,
    sr: int,
) -> np.ndarray:
    """Additive source-filter voice from control-rate tracks `(nc,)`, `(nc, 5)`; returns `(n,)`.

    Harmonic k at control frame c has amplitude amp[c] * k**((tilt + 6) / 6.02) * formant envelope at
    k * f0[c] (times the singer's-formant boost and the nasal pole-zero pair); amplitudes are
    interpolated linearly to the sample rate; phases follow the cumulative f0.
    """
    tilt, bright_db, bright_hz = timbre["tilt"], timbre["bright_db"], timbre["bright_hz"]
    nasal = 10 ** (timbre["nasal_db"] / 20) - 1
    nasal_hz = timbre["nasal_hz"]
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
            env *= 1 + bright * np.exp(-(((freq - bright_hz) / 700.0) ** 2))
            if nasal > 0:  # nasal murmur: a resonance near 250 Hz, an anti-resonance near 800 Hz
                env *= (1 + nasal * np.exp(-(((freq - nasal_hz) / 80.0) ** 2))) / (
                    1 + nasal * np.exp(-(((freq - 3.2 * nasal_hz) / 150.0) ** 2))
                )
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
