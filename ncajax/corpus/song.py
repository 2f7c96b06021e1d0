"""One song of the synthetic corpus: its generators, renderers and mix (`synthesize_track`)."""

from __future__ import annotations

import numpy as np
from jaxtyping import Float

from ..config import CorpusConfig
from .dsp import rms
from .instruments import render_bass, render_drums, render_guitar, render_lead, render_other
from .mix import master, room, tone_eq
from .plan import song_plan
from .voice import render_vocal_stem

SPLITS = {"train": 0, "test": 1}
MIN_SAMPLE_RATE = 8000


def synthesize_track(
    cfg: CorpusConfig, split: str, index: int
) -> tuple[dict[str, Float[np.ndarray, "n_samples"]], dict]:
    """One song: `(stems, params)`.

    `stems` maps "mixture", "vocals", "drums", "bass", "other" to float32 `(n_samples,)` arrays with
    mixture == ((vocals + drums) + bass) + other exactly; `params` is the JSON-ready song description.
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
