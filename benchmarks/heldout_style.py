"""A held-out "style" of songs that `ncajax.data` did not make, for judging transfer.

Every sound here is synthesised by a different method from the corpus generator's, so a separator
that only learnt the corpus' own synthesis artefacts gets no help from them:

- vocals: a Rosenberg glottal pulse train (a time-domain waveform, not the corpus' additive
  harmonics) through a cascade of time-varying two-pole formant filters (recursive filtering, not a
  magnitude envelope) on the Peterson-Barney women's/children's vowel table, sung on a pentatonic
  melody with scoops into notes, then white-noise consonant bursts and its own EQ (a random peaking
  filter and a shelf);
- accompaniment: a Karplus-Strong strummed acoustic guitar, an FM electric piano in the singer's
  register, a detuned "supersaw" lead line (naive sawtooth, so aliasing included), a sine sub bass
  and a drum kit of a pitch-swept sine kick, a white-noise snare and metallic square-wave hats;
- mix: a Schroeder reverb (four combs and two all-passes, not a noise impulse response) on the voice
  and the instruments, vocal level -6..+3 dB, mixture RMS -26..-10 dBFS.

`heldout_tracks(n, sample_rate, seed)` returns mono `data.TrackAudio` tracks for
`ncajax.separation.evaluate_tracks`. The style is deterministic per (seed, index).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from ncajax import data

# Peterson & Barney (1952) women's/children's F1-F3 (Hz).
_VOWELS = {
    "iy": (310, 2790, 3310), "ih": (430, 2480, 3070), "eh": (610, 2330, 2990),
    "ae": (860, 2050, 2850), "ah": (850, 1220, 2810), "aa": (590, 920, 2710),
    "uh": (470, 1160, 2680), "uw": (370, 950, 2670), "er": (500, 1430, 1650),
}
_PENTA = (0, 2, 4, 7, 9)


def _midi_hz(m):
    return 440.0 * 2.0 ** ((np.asarray(m, float) - 69) / 12)


def _rosenberg(phase: np.ndarray, open_q: float) -> np.ndarray:
    """Rosenberg glottal pulse at cycle position `phase` in [0, 1): its derivative (the flow
    derivative excites the tract)."""
    tp, tn = 0.6 * open_q, 0.4 * open_q
    g = np.where(phase < tp, 0.5 * (1 - np.cos(np.pi * phase / tp)),
                 np.where(phase < tp + tn, np.cos(np.pi / 2 * (phase - tp) / tn), 0.0))
    return np.diff(g, prepend=g[0])


def _voice(rng, n, sr, key, lo):
    """(vocal line `(n,)`, note list)."""
    beat = 60.0 / rng.uniform(70, 150)
    t, notes = rng.uniform(0.1, 0.8), []
    while t < n / sr - 0.3:
        phrase_end = t + rng.choice([3, 4, 6]) * beat
        while t < min(phrase_end, n / sr - 0.2):
            d = rng.choice([0.5, 0.5, 1.0, 1.0, 1.5, 2.0]) * beat
            m = lo + key + _PENTA[rng.integers(5)] + 12 * int(rng.integers(0, 2))
            notes.append((t, d, m, tuple(_VOWELS)[rng.integers(len(_VOWELS))]))
            t += d
        t += rng.choice([1, 2]) * beat
    f0 = np.full(n, np.nan)
    gate = np.zeros(n)
    vowel_id = np.zeros(n, int)
    for on, d, m, v in notes:
        a, b = int(on * sr), min(n, int((on + d) * sr))
        if b <= a:
            continue
        tt = np.arange(b - a) / sr
        scoop = -1.5 * np.exp(-tt / 0.05)  # semitones
        vib = rng.uniform(0, 60) / 100 * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * tt) * (tt > 0.2)
        f0[a:b] = _midi_hz(m + scoop + vib)
        gate[a:b] = np.minimum(1, np.minimum(tt / 0.02, (d - tt) / 0.05)).clip(0)
        vowel_id[a:b] = tuple(_VOWELS).index(v)
    ok = np.isfinite(f0)
    if not ok.any():
        return np.zeros(n), notes
    f0 = np.interp(np.arange(n), np.flatnonzero(ok), f0[ok])
    phase = np.cumsum(f0 / sr) % 1.0
    src = _rosenberg(phase, rng.uniform(0.4, 0.7)) * gate
    src += rng.uniform(0.002, 0.02) * rng.standard_normal(n) * gate  # breath
    # Time-varying formant cascade, filter coefficients per 10 ms block (state carried).
    scale = rng.uniform(0.9, 1.1)
    out = src.copy()
    for k in range(3):
        y, zi, blk = np.empty(n), np.zeros(2), int(0.01 * sr)
        for i in range(0, n, blk):
            f = min(_VOWELS[tuple(_VOWELS)[vowel_id[i]]][k] * scale, 0.45 * sr)
            r = np.exp(-np.pi * (60 + 40 * k) / sr)
            a = [1.0, -2 * r * np.cos(2 * np.pi * f / sr), r * r]
            y[i:i + blk], zi = signal.lfilter([1 - r], a, out[i:i + blk], zi=zi)
        out = y
    for on, _d, _, _ in notes:  # consonants: white-noise bursts, high-passed
        if rng.random() < 0.5:
            a, b = int(on * sr), min(n, int((on + rng.uniform(0.03, 0.08)) * sr))
            burst = rng.standard_normal(b - a) * np.hanning(b - a)
            out[a:b] += 0.3 * np.std(out[gate > 0.5] if (gate > 0.5).any() else out) * \
                signal.lfilter([1, -0.95], [1], burst)
    w = 2 * np.pi * rng.uniform(300, 3000) / sr
    g, q = 10 ** (rng.uniform(-6, 6) / 40), rng.uniform(0.7, 2)
    al = np.sin(w) / (2 * q)
    out = signal.lfilter([1 + al * g, -2 * np.cos(w), 1 - al * g], [1 + al / g, -2 * np.cos(w), 1 - al / g], out)
    return out, notes


def _karplus(rng, f0, dur, sr):
    n, L = int(dur * sr), max(2, int(round(sr / f0)))
    x = np.zeros(n)
    x[:L] = rng.uniform(-1, 1, L)
    a = np.zeros(L + 2)
    a[0], a[L], a[L + 1] = 1.0, -0.497, -0.497
    return signal.lfilter([1.0], a, x)


def _accompaniment(rng, n, sr, key, lo, notes):
    beat = 60.0 / rng.uniform(80, 140)
    prog = [(0, (0, 4, 7)), (9, (0, 3, 7)), (5, (0, 4, 7)), (7, (0, 4, 7))]
    rng.shuffle(prog)
    parts = {}
    gtr, ep, bass = np.zeros(n), np.zeros(n), np.zeros(n)
    bar = 4 * beat
    for i in range(int(np.ceil(n / sr / bar))):
        root, tri = prog[i % len(prog)]
        for s in range(8):  # strums on eighths
            t0 = i * bar + s * beat / 2
            if t0 * sr >= n or rng.random() < 0.25:
                continue
            for j, iv in enumerate((0, 7, 12, tri[1] + 12, tri[2] + 12)):
                on = int((t0 + 0.008 * j) * sr)
                if on >= n:
                    continue
                note = _karplus(rng, _midi_hz(40 + key + root + iv), 1.0, sr) * rng.uniform(0.5, 1)
                m = min(note.size, n - on)
                gtr[on:on + m] += note[:m]
        a0, a1 = int(i * bar * sr), min(n, int((i + 1) * bar * sr))
        tt = np.arange(a1 - a0) / sr
        for iv in tri:  # FM e-piano chord in the vocal register
            fc = _midi_hz(lo + 5 + key + root + iv)
            idx = 2.5 * np.exp(-tt / 0.4)
            ep[a0:a1] += np.sin(2 * np.pi * fc * tt + idx * np.sin(2 * np.pi * fc * tt)) * np.exp(-tt / 1.5)
        bass[a0:a1] += np.sin(2 * np.pi * _midi_hz(28 + key + root) * tt) * np.exp(-(tt % beat) / 0.3)
    parts["guitar"], parts["epiano"], parts["bass"] = gtr, ep, bass
    # Supersaw lead: a counter line in the rests of the voice, three detuned naive saws.
    lead = np.zeros(n)
    busy = np.zeros(n, bool)
    for on, d, _, _ in notes:
        busy[int(on * sr):int((on + d) * sr)] = True
    t0 = 0.0
    while t0 < n / sr:
        d = rng.choice([1, 2]) * beat
        a0, a1 = int(t0 * sr), min(n, int((t0 + d) * sr))
        if a1 > a0 and (not busy[a0:a1].mean() > 0.5 or rng.random() < 0.3):
            f = _midi_hz(lo + key + _PENTA[rng.integers(5)] + 12 * rng.integers(0, 2))
            tt = np.arange(a1 - a0) / sr
            saw = sum(2 * ((f * (1 + det) * tt) % 1.0) - 1 for det in (-0.01, 0.0, 0.012))
            lead[a0:a1] += saw * np.minimum(1, tt / 0.02) * np.minimum(1, (d - tt) / 0.05).clip(0)
        t0 += d
    lead = signal.lfilter(*signal.butter(2, min(rng.uniform(1200, 3000), 0.45 * sr), fs=sr), lead)
    parts["lead"] = lead if rng.random() < 0.7 else np.zeros(n)
    drums = np.zeros(n)
    tk = np.arange(int(0.3 * sr)) / sr
    kick = np.sin(2 * np.pi * np.cumsum(50 + 100 * np.exp(-tk / 0.03)) / sr) * np.exp(-tk / 0.15)
    snare = rng.standard_normal(tk.size) * np.exp(-tk / 0.07)
    hat = sum(signal.square(2 * np.pi * f * tk) for f in (205, 304, 369, 522, 540, 800))
    hat = signal.lfilter(*signal.butter(2, 0.7 * sr / 2, "highpass", fs=sr), hat) * np.exp(-tk / 0.02)
    for s in range(int(n / sr / (beat / 2)) + 1):
        on = int(s * beat / 2 * sr)
        if on >= n:
            break
        for snd, hit, g in ((kick, s % 4 == 0, 1.0), (snare, s % 4 == 2, 0.6), (hat, True, 0.15)):
            if hit:
                m = min(snd.size, n - on)
                drums[on:on + m] += g * snd[:m]
    parts["drums"] = drums
    return parts


def _schroeder(x, sr, rng, wet):
    combs = [int(sr * d) for d in (0.0297, 0.0371, 0.0411, 0.0437)]
    g = rng.uniform(0.7, 0.84)
    y = sum(signal.lfilter([1.0], np.r_[1.0, np.zeros(d - 1), -g], x) for d in combs) / 4
    for d, ga in ((int(0.005 * sr), 0.7), (int(0.0017 * sr), 0.7)):
        y = signal.lfilter(np.r_[-ga, np.zeros(d - 1), 1.0], np.r_[1.0, np.zeros(d - 1), -ga], y)
    return x + wet * y


def _rms(x):
    return float(np.sqrt(np.mean(np.square(x)))) + 1e-12


def heldout_track(index: int, sample_rate: int = 8000, duration: float = 6.0, seed: int = 1234):
    """One held-out-style song as a mono `data.TrackAudio`."""
    rng = np.random.default_rng([seed, 7, index])
    n, sr = int(duration * sample_rate), sample_rate
    key, lo = int(rng.integers(12)), int(rng.choice([48, 53, 57, 60]))
    voc, notes = _voice(rng, n, sr, key, lo)
    parts = _accompaniment(rng, n, sr, key, lo, notes)
    acc = np.zeros(n)
    for x in parts.values():
        if x.any():
            acc += x / _rms(x) * 10 ** (rng.uniform(-6, 3) / 20)
    voc = _schroeder(voc, sr, rng, 10 ** (rng.uniform(-16, -6) / 20))
    acc = _schroeder(acc, sr, rng, 10 ** (rng.uniform(-20, -10) / 20))
    voc = voc / _rms(voc) * _rms(acc) * 10 ** (rng.uniform(-6, 3) / 20)
    g = 10 ** (rng.uniform(-26, -10) / 20) / _rms(voc + acc)
    peak = max(np.abs(g * (voc + acc)).max(), 1e-12)
    g *= min(1.0, 0.9 / peak)
    voc, acc = (g * voc).astype(np.float32), (g * acc).astype(np.float32)
    return data.TrackAudio(f"heldout-{index:02d}", sr, voc + acc, voc, acc)


def heldout_tracks(n: int = 8, sample_rate: int = 8000, seed: int = 1234) -> list:
    return [heldout_track(i, sample_rate, seed=seed) for i in range(n)]


if __name__ == "__main__":
    import time

    t0 = time.perf_counter()
    for tr in heldout_tracks():
        v, a = tr.vocals.astype(float), tr.accompaniment.astype(float)
        print(tr.name, tr.mixture.shape, round(20 * np.log10(_rms(tr.mixture)), 1),
              round(20 * np.log10(_rms(v) / _rms(a)), 1))
    print(f"{time.perf_counter() - t0:.1f} s")
