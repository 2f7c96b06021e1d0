"""The song plan: key, mode, chord progression, tempo, singer and the vocal score of one song.

`song_plan(rng, duration)` draws everything the renderers share; `chords`, `chord_at` and `steps`
turn a plan into chord spans and pattern hits; `double_plan` and `backing_plan` derive the scores of a
doubled take and of backing vocals from the lead's.
"""

from __future__ import annotations

import numpy as np

# Singer: (lowest MIDI note, highest MIDI note, formant scale factor).
VOICES = {
    "bass": (40, 62, 0.90),
    "tenor": (48, 69, 1.00),
    "alto": (55, 74, 1.12),
    "soprano": (60, 81, 1.20),
}
# Consonant noise: (low Hz, high Hz, duration s, level relative to the voiced RMS).
# The bands are the full-band ones (sibilance up to 11 kHz); band_noise clamps them below Nyquist, so
# at 8 kHz they end at 3.6 kHz.
CONSONANTS = {
    "s": (4000.0, 11000.0, 0.08, 0.30),
    "sh": (1800.0, 6000.0, 0.09, 0.30),
    "f": (1000.0, 10000.0, 0.07, 0.12),
    "t": (2500.0, 9000.0, 0.025, 0.45),
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
TRIADS = {"maj": (0, 4, 7), "min": (0, 3, 7)}
_KEY_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

# Melody: scale steps between notes and note lengths (beats), with their probabilities.
_STEPS = np.array([-3, -2, -1, 0, 1, 2, 3])
_STEP_P = np.array([0.05, 0.15, 0.25, 0.1, 0.25, 0.15, 0.05])
_DURS = np.array([0.5, 1.0, 1.5, 2.0])
_DUR_P = np.array([0.3, 0.4, 0.1, 0.2])


def song_plan(rng: np.random.Generator, duration: float) -> dict:
    """Key, tempo, chords and the vocal score (notes, phrases, breaths) of one song."""
    song = _harmony(rng)
    notes, phrases, breaths = _score(rng, song, duration)
    lo_song, hi_song = song.pop("range")
    public = {
        "key": _KEY_NAMES[song["key"]],
        "key_pc": song["key"],
        "mode": song["mode"],
        "tempo_bpm": round(song["tempo"], 3),
        "chord_beats": song["chord_beats"],
        "progression": [[int(r), q] for r, q in song["prog"]],
        "sevenths": song["sevenths"],
        "singer": song["voice"],
        "singer_range_midi": [lo_song, hi_song],
        "n_notes": len(notes),
        "n_phrases": len(phrases),
    }
    return {
        **song,
        "notes": notes,
        "phrases": phrases,
        "breaths": breaths,
        "duration": duration,
        "public": public,
    }


def _harmony(rng: np.random.Generator) -> dict:
    """Mode, key, progression, tempo, chord length, sevenths, singer and the song's tessitura."""
    mode = "major" if rng.random() < 0.6 else "minor"
    key = int(rng.integers(12))
    progs = _PROGRESSIONS[mode]
    prog = progs[int(rng.integers(len(progs)))]
    tempo = float(rng.uniform(80.0, 140.0))
    chord_beats = 2 if (tempo < 95 and rng.random() < 0.5) else 4
    sevenths = bool(rng.random() < 0.3)
    voice = ("bass", "tenor", "alto", "soprano")[int(rng.integers(4))]
    lo, hi, _ = VOICES[voice]
    # A per-song tessitura: about an octave and a half inside the singer's range.
    span = int(rng.integers(14, 20))
    lo_song = int(rng.integers(lo, max(lo + 1, hi - span + 1)))
    return {
        "key": key,
        "mode": mode,
        "prog": prog,
        "tempo": tempo,
        "beat": 60.0 / tempo,
        "chord_beats": chord_beats,
        "sevenths": sevenths,
        "voice": voice,
        "range": (lo_song, min(hi, lo_song + span)),
    }


def _score(rng: np.random.Generator, song: dict, duration: float) -> tuple[list, list, list]:
    """Phrases of notes separated by rests, a breath before most phrases: (notes, phrases, breaths)."""
    beat, key = song["beat"], song["key"]
    scale = _MAJOR if song["mode"] == "major" else _MINOR
    lo_song, hi_song = song["range"]
    allowed = [m for m in range(lo_song, hi_song + 1) if (m - key) % 12 in scale]
    cons_prob = float(rng.uniform(0.4, 0.8))
    notes, phrases, breaths = [], [], []
    t = min(int(rng.integers(1, 5)) * beat, 0.25 * duration)
    cur = len(allowed) // 2 + int(rng.integers(-2, 3))
    while t < duration - 0.25:
        if rng.random() < 0.8:
            b = float(rng.uniform(0.15, 0.35))
            breaths.append((max(0.0, t - b - 0.02), b))
        start = t
        end = t + float(rng.choice([4.0, 6.0, 6.0, 8.0])) * beat
        while t < end and t < duration:
            note, cur = _note(rng, song, allowed, cur, t, cons_prob)
            notes.append(note)
            t += note["dur"]
        notes[-1]["dur"] += beat  # phrase-final notes are held
        t += beat
        phrases.append((start, t))
        t += float(rng.choice([1.0, 1.0, 2.0, 2.0, 3.0])) * beat
    return notes, phrases, breaths


def _note(
    rng: np.random.Generator, song: dict, allowed: list[int], cur: int, t: float, cons_prob: float
) -> tuple[dict, int]:
    """The note starting at `t` (a step from scale index `cur`, drawn towards chord tones) and its
    scale index."""
    d = float(rng.choice(_DURS, p=_DUR_P)) * song["beat"]
    cur = int(np.clip(cur + rng.choice(_STEPS, p=_STEP_P), 0, len(allowed) - 1))
    prog = song["prog"]
    root, quality = prog[int(t / (song["chord_beats"] * song["beat"])) % len(prog)]
    root = (song["key"] + root) % 12
    tones = {(root + iv) % 12 for iv in TRIADS[quality]}
    if rng.random() < 0.6:  # lean on chord tones
        near = [j for j in range(len(allowed)) if allowed[j] % 12 in tones]
        cur = min(near, key=lambda j: abs(j - cur)) if near else cur
    names = tuple(CONSONANTS)
    cons = names[int(rng.integers(len(names)))] if rng.random() < cons_prob else None
    note = {
        "onset": t,
        "dur": d,
        "midi": allowed[cur],
        "vowel": "aeiou"[int(rng.integers(5))],
        "cons": cons,
        "gain": float(rng.uniform(0.7, 1.0)),
        "detune": float(rng.normal(0.0, 8.0)),  # cents of intonation error
    }
    return note, cur


def chords(plan: dict) -> list[tuple[float, float, int, str]]:
    """(onset s, duration s, root pitch class, quality) of every chord in the song."""
    span = plan["chord_beats"] * plan["beat"]
    out, t, i = [], 0.0, 0
    while t < plan["duration"]:
        root, quality = plan["prog"][i % len(plan["prog"])]
        out.append((t, span, (plan["key"] + root) % 12, quality))
        t += span
        i += 1
    return out


def chord_at(chord_list: list, t: float) -> tuple:
    """The chord of `chords(plan)` sounding at time `t` s."""
    for c in reversed(chord_list):
        if c[0] <= t + 1e-9:
            return c
    return chord_list[0]


def steps(plan: dict, pattern: str) -> list[tuple[float, int]]:
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


# ------------------------------------------------------------------------ doubles, backing vocals


def scale_midis(plan: dict) -> list[int]:
    """Every MIDI note (24..108) of the song's key and mode."""
    scale = _MAJOR if plan["mode"] == "major" else _MINOR
    return [m for m in range(24, 109) if (m - plan["key"]) % 12 in scale]


def double_plan(rng: np.random.Generator, plan: dict) -> dict:
    """The lead line sung again: each note 10-35 ms late, its own intonation error, no breaths."""
    lag = float(rng.uniform(0.01, 0.035))
    notes = [
        {**note, "onset": note["onset"] + lag + float(rng.normal(0.0, 0.005)),
         "detune": note["detune"] + float(rng.normal(0.0, 7.0)),
         "gain": note["gain"] * float(rng.uniform(0.85, 1.0))}
        for note in plan["notes"]
    ]
    return {**plan, "notes": notes, "breaths": []}


def backing_plan(rng: np.random.Generator, plan: dict, kind: str) -> dict:
    """The score of backing vocals by a second singer, on some of the lead's phrases: "harmony" (the
    lead's notes moved a diatonic third or sixth up or down, same syllables) or "oohs" (one sustained
    open-vowel chord tone per chord, no consonants)."""
    keep = rng.random(len(plan["phrases"])) < 0.6
    if len(keep) and not keep.any():
        keep[int(rng.integers(len(keep)))] = True
    spans = [p for p, k in zip(plan["phrases"], keep, strict=True) if k]

    def inside(t: float) -> bool:
        return any(a <= t < b for a, b in spans)

    scale = scale_midis(plan)
    if kind == "harmony":
        shift = int(rng.choice([2, -2, 5, -5]))
        notes = []
        for note in plan["notes"]:
            if not inside(note["onset"]):
                continue
            j = min(range(len(scale)), key=lambda i: abs(scale[i] - note["midi"]))
            j = int(np.clip(j + shift, 0, len(scale) - 1))
            notes.append({**note, "midi": scale[j], "detune": float(rng.normal(0.0, 8.0)),
                          "onset": max(0.0, note["onset"] + float(rng.normal(0.0, 0.01)))})
    else:
        lo, hi = plan["public"]["singer_range_midi"]
        vowel = "uoa"[int(rng.integers(3))]
        notes = []
        for t, span, root, quality in chords(plan):
            if not inside(t) or rng.random() >= 0.8:
                continue
            target = float(rng.uniform(lo, hi))
            tones = [m for m in range(lo - 5, hi + 6) if (m - root) % 12 in TRIADS[quality]]
            notes.append({"onset": t, "dur": 0.95 * span,
                          "midi": min(tones, key=lambda m: abs(m - target)), "vowel": vowel,
                          "cons": None, "gain": float(rng.uniform(0.7, 0.9)),
                          "detune": float(rng.normal(0.0, 8.0))})
    mid = float(np.median([nt["midi"] for nt in notes])) if notes else 60.0
    fits = [v for v, (lo_v, hi_v, _) in VOICES.items() if lo_v + 2 <= mid <= hi_v - 2]
    voice = fits[int(rng.integers(len(fits)))] if fits else plan["voice"]
    return {**plan, "notes": notes, "breaths": [], "voice": voice}
