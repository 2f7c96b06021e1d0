"""One song of the synthetic corpus: its generators, renderers and mix (`synthesize_track`)."""

from __future__ import annotations

import numpy as np
from jaxtyping import Float

from ...config import CorpusConfig
from . import stereo
from .dsp import rms
from .instruments import (
    LEAD_KINDS_V4,
    render_bass,
    render_drums,
    render_guitar,
    render_lead,
    render_other,
    render_register_pad,
)
from .mix import master, room, tone_eq
from .plan import song_plan
from .voice import render_vocal_stem

SPLITS = {"train": 0, "test": 1}
MIN_SAMPLE_RATE = 8000


def synthesize_track(
    cfg: CorpusConfig, split: str, index: int
) -> tuple[dict[str, Float[np.ndarray, "n_samples"]], dict]:
    """One song: `(stems, params)`.

    `stems` maps "mixture", "vocals", "drums", "bass", "other" to float32 `(n_samples,)` arrays
    (`(n_samples, 2)` stereo for `cfg.realism == "v4"`) with mixture == ((vocals + drums) + bass) +
    other exactly; `params` is the JSON-ready song description.
    """
    check_config(cfg)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLITS)}")
    if index < 0:
        raise ValueError(f"track index must be >= 0, got {index}")
    sr = cfg.sample_rate
    n = int(round(cfg.duration * sr))
    rng = np.random.default_rng([cfg.seed, SPLITS[split], index])
    plan_rng, voc_rng, drum_rng, bass_rng, other_rng, mix_rng, gtr_rng, room_rng, eq_rng, lead_rng = (
        rng.spawn(10)
    )

    plan = song_plan(plan_rng, cfg.duration)
    if cfg.realism == "v4":  # v4 draws from generators spawned after the v3 ones: v3 is untouched
        return _synthesize_v4(
            cfg, split, index, plan, n, (voc_rng, drum_rng, bass_rng, other_rng, mix_rng, gtr_rng,
                                         room_rng, eq_rng, lead_rng, *rng.spawn(3))
        )
    vocals, voice_params = render_vocal_stem(voc_rng, plan, n, sr)
    guitar, guitar_params = render_guitar(gtr_rng, plan, n, sr)
    lead, lead_params = render_lead(lead_rng, plan, n, sr)
    raw = {
        "vocals": vocals,
        "drums": render_drums(drum_rng, plan, n, sr),
        "bass": render_bass(bass_rng, plan, n, sr),
        "other": render_other(other_rng, plan, n, sr),
    }
    # The guitar and the lead instrument sit in "other", as in MUSDB18, each at its level relative
    # to the keyboards.
    keys_rms = rms(raw["other"])
    for part, db in ((guitar, guitar_params["guitar_level_db"]), (lead, lead_params["lead_level_db"])):
        if part is not None:
            raw["other"] = raw["other"] + part / max(rms(part), 1e-12) * keys_rms * 10 ** (db / 20)
    raw, eq_params = tone_eq(eq_rng, raw, sr)
    raw, room_params = room(room_rng, raw, sr)
    stems, levels = master(mix_rng, raw, sr)
    params = {
        "name": track_name(split, index),
        "split": split,
        "index": index,
        **plan["public"],
        **voice_params,
        **guitar_params,
        **lead_params,
        **eq_params,
        **room_params,
        **levels,
    }
    return stems, params


def _synthesize_v4(cfg: CorpusConfig, split: str, index: int, plan: dict, n: int, rngs: tuple):
    """Realism v4 (see `ncajax.data`): stereo stems, the vocal parts panned apart and through the
    v4 vocal strip, a pad in the singer's register, more lead instruments (a lead guitar among them),
    panned accompaniment and a stereo room with a vocal echo."""
    (voc_rng, drum_rng, bass_rng, other_rng, mix_rng, gtr_rng, room_rng, eq_rng, lead_rng,
     pan_rng, vfx_rng, pad_rng) = rngs
    sr = cfg.sample_rate
    parts, voice_params = render_vocal_stem(voc_rng, plan, n, sr, realism="v4")
    chained, chain_params = stereo.vocal_chain(vfx_rng, [x for _, x in parts], sr)
    pans = {"vocal_lead": float(np.clip(pan_rng.normal(0.0, 0.05), -0.15, 0.15))}
    vocals = stereo.pan(chained[0], pans["vocal_lead"])
    for (role, _), x in zip(parts[1:], chained[1:], strict=True):
        key = f"vocal_{role}"
        if role == "double" and pan_rng.random() < 0.5:  # centred, or split against the lead
            pans[key] = 0.0
        else:
            pans[key] = float(pan_rng.choice([-1.0, 1.0]) * pan_rng.uniform(0.3, 0.9))
        vocals = vocals + stereo.pan(x, pans[key])
    guitar, guitar_params = render_guitar(gtr_rng, plan, n, sr)
    lead, lead_params = render_lead(lead_rng, plan, n, sr, p_lead=0.7, kinds=LEAD_KINDS_V4)
    pad, pad_params = render_register_pad(pad_rng, plan, n, sr)
    keys = render_other(other_rng, plan, n, sr)
    keys_rms = rms(keys)
    pans["keys"] = float(pan_rng.uniform(-0.5, 0.5))
    other = stereo.pan(keys, pans["keys"])
    for name, part, db in (("guitar", guitar, guitar_params["guitar_level_db"]),
                           ("lead", lead, lead_params["lead_level_db"]),
                           ("register_pad", pad, pad_params["register_pad_level_db"])):
        if part is None:
            continue
        part = part / max(rms(part), 1e-12) * keys_rms * 10 ** (db / 20)
        if name == "guitar":
            wide, pans["guitar_haas_ms"] = stereo.haas(pan_rng, part, sr, float(pan_rng.uniform(0.6, 1.0)))
            other = other + wide
        else:
            pans[name] = float(pan_rng.uniform(-0.7, 0.7))
            other = other + stereo.pan(part, pans[name])
    raw = {
        "vocals": vocals,
        "drums": stereo.pan(render_drums(drum_rng, plan, n, sr), float(pan_rng.uniform(-0.1, 0.1))),
        "bass": stereo.pan(render_bass(bass_rng, plan, n, sr), 0.0),
        "other": other,
    }
    raw, eq_params = tone_eq(eq_rng, raw, sr, vocals=False)
    raw, room_params = stereo.room(room_rng, raw, sr, plan["beat"])
    stems, levels = master(mix_rng, raw, sr)
    params = {
        "name": track_name(split, index),
        "split": split,
        "index": index,
        "realism": cfg.realism,
        **plan["public"],
        **voice_params,
        **chain_params,
        **guitar_params,
        **lead_params,
        **pad_params,
        "pan": {k: round(v, 3) for k, v in pans.items()},
        **eq_params,
        **room_params,
        **levels,
    }
    return stems, params


def check_config(cfg: CorpusConfig) -> None:
    """Raise ValueError for a config the corpus cannot be synthesised from."""
    if not isinstance(cfg, CorpusConfig):
        raise ValueError(f"cfg must be a CorpusConfig, got {type(cfg).__name__}")
    if cfg.sample_rate < MIN_SAMPLE_RATE:
        raise ValueError(
            f"sample_rate {cfg.sample_rate} Hz is too low for the synthetic corpus (formants, "
            f"consonants and hi-hats need >= {MIN_SAMPLE_RATE} Hz); raise CorpusConfig.sample_rate"
        )
    if cfg.seed < 0:
        raise ValueError(f"seed must be >= 0 (numpy SeedSequence entropy), got {cfg.seed}")


def track_name(split: str, index: int) -> str:
    return f"synth-{split}-{index:03d}"
