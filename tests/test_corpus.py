"""The synthetic corpus: layout, determinism, exact mixtures, caching/atomicity and the voice's structure."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import soundfile as sf

from ncajax.config import CorpusConfig, fingerprint, to_dict
from ncajax.data._corpus import (
    FORMAT_VERSION,
    LOUDNESS_DBFS,
    MARKER,
    PEAK,
    STEMS,
    VOCAL_LEVEL_DB,
    corpus_dir,
    generate_corpus,
    instruments,
    store,
    synthesize_track,
    track_names,
)
from ncajax.data._corpus.mix import limiter_gain, room
from ncajax.data._corpus.plan import song_plan

TINY = CorpusConfig(seed=3, n_train=2, n_test=1, duration=2.0, sample_rate=16000)  # default realism
FILES = ("mixture", *STEMS)
# Properties every corpus must have are checked on the default realism ("v4", stereo) and on the
# previous corpus ("v3", mono), pinned explicitly.
REALISMS = ("v4", "v3")


def _with_realism(cfg, realism):
    return cfg if cfg.realism == realism else dataclasses.replace(cfg, realism=realism)


@pytest.fixture(scope="module", params=REALISMS)
def tiny_cfg(request):
    return _with_realism(TINY, request.param)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_cfg):
    return generate_corpus(tmp_path_factory.mktemp(f"cache_{tiny_cfg.realism}"), tiny_cfg)


def _tracks(root):
    return [root / split / name for split, names in track_names(TINY).items() for name in names]


def _read(folder):
    return {name: sf.read(folder / f"{name}.wav", dtype="float32")[0] for name in FILES}


def _mono(x):
    """What the pipeline reads (`ncajax.data`): mono as is, stereo `(n, 2)` as (L + R) / 2."""
    x = np.asarray(x, dtype=np.float64)
    return x if x.ndim == 1 else x.mean(axis=1)


def _frames(x, size=512):
    return np.lib.stride_tricks.sliding_window_view(x, size)[:: size // 2]


def test_layout_headers_and_metadata(tiny, tiny_cfg):
    channels = {"v4": 2, "v3": 1}[tiny_cfg.realism]  # v4 stems are stereo, v3 mono
    assert tiny.name == f"synth-v{FORMAT_VERSION}-{fingerprint(to_dict(tiny_cfg))}"
    assert tiny == corpus_dir(tiny.parent, tiny_cfg)
    assert (tiny / MARKER).is_file()
    assert sorted(p.name for p in (tiny / "train").iterdir()) == [
        "synth-train-000",
        "synth-train-001",
    ]
    assert sorted(p.name for p in (tiny / "test").iterdir()) == ["synth-test-000"]
    for folder in _tracks(tiny):
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.wav" for n in FILES)
        for name in FILES:
            info = sf.info(folder / f"{name}.wav")
            assert (info.samplerate, info.channels, info.subtype) == (16000, channels, "FLOAT")
            assert info.frames == 32000
    meta = json.loads((tiny / "corpus.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["config"] == to_dict(tiny_cfg)
    assert meta["config"]["realism"] == tiny_cfg.realism
    assert [t["name"] for t in meta["tracks"]] == [
        "synth-train-000",
        "synth-train-001",
        "synth-test-000",
    ]
    for t in meta["tracks"]:
        lo, hi = t["singer_range_midi"]
        assert t["singer"] in ("bass", "tenor", "alto", "soprano") and lo < hi
        assert 80 <= t["tempo_bpm"] <= 140 and t["mode"] in ("major", "minor")
        assert t.get("realism", "v3") == tiny_cfg.realism  # v3 keeps format 3's track records


def test_same_config_gives_identical_files(tiny, tiny_cfg, tmp_path):
    other = generate_corpus(tmp_path / "elsewhere", tiny_cfg)
    for a, b in zip(_tracks(tiny), _tracks(other), strict=True):
        for name in FILES:
            assert (a / f"{name}.wav").read_bytes() == (b / f"{name}.wav").read_bytes()
    assert (tiny / "corpus.json").read_text() == (other / "corpus.json").read_text()


@pytest.mark.parametrize("realism", REALISMS)
def test_tracks_depend_on_seed_not_on_track_counts(realism):
    cfg = _with_realism(TINY, realism)
    small, _ = synthesize_track(cfg, "test", 0)
    more = CorpusConfig(
        seed=3, n_train=5, n_test=4, duration=2.0, sample_rate=16000, realism=realism
    )
    same, _ = synthesize_track(more, "test", 0)
    reseeded, _ = synthesize_track(
        CorpusConfig(seed=4, n_train=2, n_test=1, duration=2.0, realism=realism), "test", 0
    )
    train0, _ = synthesize_track(cfg, "train", 0)
    for name in FILES:
        np.testing.assert_array_equal(small[name], same[name])
    assert not np.array_equal(small["vocals"], reseeded["vocals"])
    assert not np.array_equal(small["vocals"], train0["vocals"])


def test_mixture_is_exact_float32_sum_and_does_not_clip(tiny):
    for folder in _tracks(tiny):
        a = _read(folder)
        # The documented summation order reproduces the stored mixture bit for bit.
        np.testing.assert_array_equal(
            a["mixture"], ((a["vocals"] + a["drums"]) + a["bass"]) + a["other"]
        )
        np.testing.assert_allclose(
            a["mixture"], sum(a[s].astype(np.float64) for s in STEMS), rtol=0, atol=1e-6
        )
        assert max(np.abs(x).max() for x in a.values()) <= PEAK
        assert all(np.sqrt(np.mean(a[s] ** 2)) > 1e-3 for s in STEMS)  # every stem is audible
        # ... and so in what the pipeline reads (a stem panned apart could cancel in the down-mix)
        assert all(np.sqrt(np.mean(_mono(a[s]) ** 2)) > 1e-3 for s in STEMS)


def test_vocal_level_is_drawn_in_range_and_recorded(tiny):
    """The level is the one the models see: on the mono down-mix for stereo stems."""
    meta = {t["name"]: t for t in json.loads((tiny / "corpus.json").read_text())["tracks"]}
    for folder in _tracks(tiny):
        a = {k: _mono(x) for k, x in _read(folder).items()}
        acc = a["drums"] + a["bass"] + a["other"]
        level = 20 * np.log10(np.sqrt(np.mean(a["vocals"] ** 2) / np.mean(acc**2)))
        assert VOCAL_LEVEL_DB[0] <= level <= VOCAL_LEVEL_DB[1]
        assert level == pytest.approx(meta[folder.name]["vocal_level_db"], abs=0.01)


def test_voice_has_rests_and_harmonic_frames(tiny, tiny_cfg):
    """On the vocals the models see (the mono down-mix of a stereo stem)."""
    sr = tiny_cfg.sample_rate
    for folder in _tracks(tiny):
        v = _mono(sf.read(folder / "vocals.wav", dtype="float64")[0])
        rms = np.sqrt(np.mean(_frames(v) ** 2, axis=1))
        assert (rms < 1e-2 * rms.max()).mean() > 0.05  # rests: frames 40 dB below the loudest
        frame = _frames(v, 1024)[np.argmax(np.sqrt(np.mean(_frames(v, 1024) ** 2, axis=1)))]
        frame = frame * np.hanning(frame.size)
        ac = np.correlate(frame, frame, "full")[frame.size - 1 :]
        ac /= ac[0]
        lags = np.arange(int(sr / 1000), int(sr / 70))
        lag = lags[np.argmax(ac[lags])]
        assert ac[lag] > 0.5  # periodic
        f0 = sr / lag
        power = np.abs(np.fft.rfft(frame, 8192)) ** 2
        freqs = np.fft.rfftfreq(8192, 1 / sr)
        dist = np.abs(freqs / f0 - np.round(freqs / f0))
        near = (dist < 0.15) & (freqs > 0.5 * f0)
        # Energy sits at multiples of f0 (white noise would put ~30 % of it there).
        assert power[near].sum() / power.sum() > 0.8


def test_harmonic_measure_rejects_noise():
    """Guard for the test above: the same harmonic-energy measure is low for white noise."""
    rng = np.random.default_rng(0)
    frame = rng.standard_normal(1024) * np.hanning(1024)
    power = np.abs(np.fft.rfft(frame, 8192)) ** 2
    freqs = np.fft.rfftfreq(8192, 1 / 16000)
    f0 = 180.0
    dist = np.abs(freqs / f0 - np.round(freqs / f0))
    assert power[(dist < 0.15) & (freqs > 0.5 * f0)].sum() / power.sum() < 0.5


def test_cached_corpus_is_reused_without_work(tiny, tiny_cfg, monkeypatch):
    stamps = {p: p.stat().st_mtime_ns for p in tiny.rglob("*")}

    def boom(*args, **kwargs):
        raise AssertionError("a cached corpus must not be synthesised again")

    monkeypatch.setattr(store, "synthesize_track", boom)
    assert generate_corpus(tiny.parent, tiny_cfg) == tiny
    assert {p: p.stat().st_mtime_ns for p in tiny.rglob("*")} == stamps


def test_interrupted_generation_leaves_nothing_valid(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_write = store._write_wav

    def flaky_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt  # like Ctrl-C half way through the second track
        return real_write(*args, **kwargs)

    monkeypatch.setattr(store, "_write_wav", flaky_write)
    with pytest.raises(KeyboardInterrupt):
        generate_corpus(tmp_path, TINY)
    assert list(tmp_path.iterdir()) == []  # no final dir, temp dir cleaned up
    monkeypatch.setattr(store, "_write_wav", real_write)
    assert (generate_corpus(tmp_path, TINY) / MARKER).is_file()


def test_partial_and_stale_directories_are_not_trusted(tmp_path):
    final = corpus_dir(tmp_path, TINY)
    (final / "train" / "synth-train-000").mkdir(parents=True)  # half-written, no marker
    (final / "train" / "synth-train-000" / "mixture.wav").write_bytes(b"garbage")
    dead_pid = 2**22 + 12345  # above Linux's default pid_max, so no such process
    stale = tmp_path / f".{final.name}.tmp-{dead_pid}-abc"
    (stale / "train").mkdir(parents=True)
    out = generate_corpus(tmp_path, TINY)
    assert out == final and (out / MARKER).is_file()
    assert sf.info(out / "train" / "synth-train-000" / "mixture.wav").frames == 32000
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [final.name]


def test_bad_inputs_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="sample_rate"):
        generate_corpus(tmp_path, CorpusConfig(sample_rate=4000))
    with pytest.raises(ValueError, match="seed"):
        generate_corpus(tmp_path, CorpusConfig(seed=-1))
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(ValueError, match="directory"):
        generate_corpus(afile, TINY)
    with pytest.raises(ValueError, match="split"):
        synthesize_track(TINY, "valid", 0)
    assert os.listdir(tmp_path) == ["file"]


# ------------------------------------------------------------------ realism (project issue 14)

FAST = CorpusConfig(seed=0, n_train=10, n_test=1, duration=4.0, sample_rate=8000)  # default realism


@pytest.fixture(scope="module", params=REALISMS)
def fast_cfg(request):
    return _with_realism(FAST, request.param)


@pytest.fixture(scope="module")
def fast_tracks(fast_cfg):
    return [synthesize_track(fast_cfg, "train", i) for i in range(fast_cfg.n_train)]


def _band_power(x, sr, lo, hi):
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / sr)
    return spec[(freqs >= lo) & (freqs < hi)].sum() / spec.sum()


def test_loudness_and_vocal_level_spread_like_real_mixes(fast_tracks):
    """Mixture RMS spans quiet to mastered-loud (the models see raw magnitudes, so the level range
    is what lets them separate real songs at their own level); the limiter holds every peak (of every
    channel). Levels are those of the mono down-mix the models see."""
    rms_db, vocal_db, limited = [], [], []
    for stems, params in fast_tracks:
        mix = _mono(stems["mixture"])
        rms = 20 * np.log10(np.sqrt(np.mean(mix**2)))
        assert rms == pytest.approx(params["mixture_rms_dbfs"], abs=1e-3)
        assert LOUDNESS_DBFS[0] - 0.01 <= rms <= LOUDNESS_DBFS[1] + 0.01
        assert params["mixture_rms_dbfs"] <= params["loudness_target_dbfs"] + 1e-3
        assert max(np.abs(x).max() for x in stems.values()) <= PEAK
        acc = sum(_mono(stems[s]) for s in ("drums", "bass", "other"))
        level = 10 * np.log10(np.mean(_mono(stems["vocals"]) ** 2) / np.mean(acc**2))
        assert level == pytest.approx(params["vocal_level_db"], abs=0.01)  # exact after limiting
        rms_db.append(rms)
        vocal_db.append(level)
        limited.append(params["limiter_max_reduction_db"] > 1.0)
    assert max(rms_db) - min(rms_db) > 8.0
    assert max(vocal_db) - min(vocal_db) > 5.0
    assert any(limited) and not all(limited)


def test_limiter_gain_never_overshoots_and_is_smooth():
    sr = 8000
    rng = np.random.default_rng(0)
    x = rng.standard_normal(sr) * np.where(np.arange(sr) % 2000 < 200, 8.0, 1.0)
    g = limiter_gain(x, sr, 2.0)
    assert np.all(g <= 1.0) and np.all(g > 0)
    assert np.abs(x * g).max() <= 2.0 + 1e-12
    assert np.abs(np.diff(g)).max() < 0.05  # a ~20 ms envelope, not sample-wise clipping
    np.testing.assert_array_equal(limiter_gain(0.05 * x, sr, 2.0), np.ones(sr))


def test_vocals_have_formants_and_high_frequency_noise(fast_tracks, fast_cfg):
    """Source-filter voice: energy above 2 kHz (upper formants, aspiration, consonants) is present
    and, over the songs, typically well below the low band, as in real singing (the real MUSDB18
    track: 0.11); the vocal styles and the vocal EQ spread it from dull to bright. Measured on the
    mono down-mix the models see."""
    highs = []
    for stems, _ in fast_tracks:
        highs.append(_band_power(_mono(stems["vocals"]), fast_cfg.sample_rate, 2000, 4000))
    assert all(1e-4 < h < 0.75 for h in highs)
    assert 0.01 < np.median(highs) < 0.3
    assert max(highs) / min(highs) > 5  # timbre variety, not one voice


def test_guitars_are_distorted_and_fill_the_voice_band(fast_tracks):
    styles = [params["guitar"] for _, params in fast_tracks]
    assert any(s is not None for s in styles) and any(s is None for s in styles)
    plan = song_plan(np.random.default_rng(1), 4.0)
    for seed in range(20):
        guitar, params = instruments.render_guitar(np.random.default_rng(seed), plan, 32000, 8000)
        if guitar is not None:
            break
    assert guitar is not None and params["guitar"] in instruments.GUITAR_STYLES
    # Saturation spreads power-chord energy over the voice band (a clean low E chord would not).
    assert _band_power(guitar, 8000, 500, 3000) > 0.1
    assert _band_power(guitar, 8000, 3500, 4000) < 0.05  # the cabinet rolls off the top


def test_room_reverb_leaves_a_decaying_tail_and_a_dry_bass():
    sr = 8000
    burst = np.zeros(sr)
    burst[:400] = np.random.default_rng(0).standard_normal(400)
    raw = {name: burst.copy() for name in STEMS}
    wet, params = room(np.random.default_rng(2), raw, sr)
    np.testing.assert_array_equal(wet["bass"], burst)
    head = int(0.005 * sr)  # inside the pre-delay: dry only
    np.testing.assert_allclose(wet["vocals"][:head], burst[:head], rtol=0, atol=1e-9)
    tail = wet["vocals"][400:]
    assert np.abs(tail).max() > 1e-3  # reverberation after the dry sound ends
    early = np.sqrt(np.mean(tail[:400] ** 2))
    late = np.sqrt(
        np.mean(tail[int(params["rt60_s"] * sr) - 400 : int(params["rt60_s"] * sr)] ** 2)
    )
    assert late < 0.1 * early  # decays (~60 dB over RT60)


# ---------------------------------------------- vocal variety, backing vocals, lead (format 3)


def test_vocal_styles_doubles_backing_and_lead_instruments_vary(fast_tracks, fast_cfg):
    from ncajax.data._corpus.voice import VOCAL_STYLES, VOCAL_STYLES_V4

    styles = {"v4": VOCAL_STYLES_V4, "v3": VOCAL_STYLES}[fast_cfg.realism]
    eq_keys = {
        "v4": {"low_cut_hz", "peaks", "air_db", "telephone"},
        "v3": {"low_cut_hz", "low_mid", "presence", "air_db"},
    }[fast_cfg.realism]
    params = [p for _, p in fast_tracks]
    assert len({p["vocal_style"] for p in params}) >= 3
    assert all(p["vocal_style"] in styles for p in params)
    assert any(p["double_db"] is not None for p in params)
    assert any(p["double_db"] is None for p in params)
    assert any(p["backing"] is not None for p in params)
    assert any(p["lead"] is not None for p in params) and any(p["lead"] is None for p in params)
    for p in params:  # every vocal is compressed and EQ'd, the choices recorded
        assert set(p["vocal_eq"]) == eq_keys
        assert len(p["vocal_compressor"]) == 2


def test_backing_plans_stay_in_key_and_doubles_lag():
    from ncajax.data._corpus.plan import backing_plan, double_plan, scale_midis

    plan = song_plan(np.random.default_rng(7), 8.0)
    scale = set(scale_midis(plan))
    harm = backing_plan(np.random.default_rng(1), plan, "harmony")
    assert harm["notes"] and all(n["midi"] in scale for n in harm["notes"])
    for n in harm["notes"]:  # a third or a sixth (3-9 semitones) from the lead's note
        near = min(plan["notes"], key=lambda m, n=n: abs(m["onset"] - n["onset"]))
        assert 3 <= abs(n["midi"] - near["midi"]) <= 9
    oohs = backing_plan(np.random.default_rng(2), plan, "oohs")
    assert all(n["cons"] is None and n["dur"] > plan["beat"] for n in oohs["notes"])
    dbl = double_plan(np.random.default_rng(3), plan)
    lags = [d["onset"] - n["onset"] for d, n in zip(dbl["notes"], plan["notes"], strict=True)]
    assert 0.0 < np.median(lags) < 0.05
    assert [d["midi"] for d in dbl["notes"]] == [n["midi"] for n in plan["notes"]]


def test_lead_instrument_sits_in_the_singers_register():
    plan = song_plan(np.random.default_rng(5), 6.0)
    lo, hi = plan["public"]["singer_range_midi"]
    sr = 8000
    for seed in range(40):
        lead, params = instruments.render_lead(np.random.default_rng(seed), plan, 6 * sr, sr)
        if lead is not None and params["lead_role"] != "unison":
            break
    assert lead is not None and params["lead"] in instruments.LEAD_KINDS
    notes = instruments._lead_notes(np.random.default_rng(0), plan, params["lead_role"], lo, hi)
    assert notes and all(lo <= m <= hi for _, _, m in notes)
    # Sustained and pitched: most of its power lies between the register's f0s and 4 kHz.
    assert _band_power(lead, sr, 0.9 * 440 * 2 ** ((lo - 69) / 12), 4000) > 0.8


@pytest.mark.parametrize("realism", REALISMS)
def test_high_rates_get_full_band_hats_and_sibilants(realism):
    """At the preset's own rate the corpus is full band: hats and sibilants reach above 6 kHz (at 8 kHz
    they are clamped below Nyquist), in the mono down-mix the models see and in every channel."""
    cfg = CorpusConfig(
        seed=2, n_train=2, n_test=1, duration=2.0, sample_rate=32000, realism=realism
    )
    stems, _ = synthesize_track(cfg, "train", 0)
    assert stems["drums"].ndim == {"v4": 2, "v3": 1}[realism]
    for name, floor in (("drums", 0.01), ("mixture", 1e-3)):
        x = stems[name].astype(np.float64)
        channels = [x] if x.ndim == 1 else [x[:, c] for c in range(x.shape[1])]
        for part in (_mono(x), *channels):
            assert _band_power(part, 32000, 6000, 16000) > floor, name


# ------------------------------------------------------------------------------- realism v4


V4 = CorpusConfig(seed=5, n_train=2, n_test=1, duration=3.0, sample_rate=8000, realism="v4")


def test_default_realism_is_v4_recorded_and_cached_apart_from_v3(tmp_path):
    """Corpus format 4: the config always names its realism, "v4" by default, so run configs,
    corpus.json and the cache directory name it; a v3 corpus lives in its own directory."""
    from ncajax.config import CORPUS_REALISM, from_dict

    assert CORPUS_REALISM == ("v3", "v4") and FORMAT_VERSION == 4
    default = CorpusConfig()
    assert default.realism == "v4" and TINY.realism == "v4" and FAST.realism == "v4"
    fields = {"seed": 0, "n_train": 60, "n_test": 30, "duration": 5.0, "sample_rate": 8000}
    assert to_dict(default) == {**fields, "realism": "v4"}
    v3 = CorpusConfig(realism="v3")
    assert to_dict(v3) == {**fields, "realism": "v3"} and v3 != default
    assert fingerprint(to_dict(default)) != fingerprint(to_dict(v3))
    assert corpus_dir("c") == corpus_dir("c", default) != corpus_dir("c", v3)
    assert corpus_dir("c").name == f"synth-v4-{fingerprint(to_dict(default))}"
    for cfg in (default, v3, V4):  # from_dict round-trips, also through JSON
        assert from_dict(CorpusConfig, to_dict(cfg)) == cfg
        assert from_dict(CorpusConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg
    for make in (
        lambda: CorpusConfig(realism="v5"),
        lambda: from_dict(CorpusConfig, {**fields, "realism": "v5"}),
    ):
        with pytest.raises(ValueError, match="realism") as err:
            make()
        assert "'v5'" in str(err.value) and all(repr(r) in str(err.value) for r in CORPUS_REALISM)
    # A corpus generated at the default realism records it in corpus.json and in its directory name.
    small = CorpusConfig(seed=1, n_train=2, n_test=1, duration=0.5)
    root = generate_corpus(tmp_path, small)
    meta = json.loads((root / "corpus.json").read_text())
    assert meta["format_version"] == 4 and meta["config"] == {**to_dict(small), "realism": "v4"}
    assert meta["fingerprint"] == fingerprint(to_dict(small))
    assert root == corpus_dir(tmp_path, small) != corpus_dir(tmp_path, _with_realism(small, "v3"))
    assert all(t["realism"] == "v4" for t in meta["tracks"])
    assert sf.info(root / "train" / "synth-train-000" / "vocals.wav").channels == 2


@pytest.fixture(scope="module")
def tiny_v4(tmp_path_factory):
    return generate_corpus(tmp_path_factory.mktemp("cache_v4"), V4)


def test_v4_stems_are_stereo_exact_sums_and_read_as_the_documented_downmix(tiny_v4):
    from ncajax.data import _sources as sources

    meta = {t["name"]: t for t in json.loads((tiny_v4 / "corpus.json").read_text())["tracks"]}
    assert json.loads((tiny_v4 / "corpus.json").read_text())["config"]["realism"] == "v4"
    for folder in [tiny_v4 / s / n for s, names in track_names(V4).items() for n in names]:
        a = {name: sf.read(folder / f"{name}.wav", dtype="float32")[0] for name in FILES}
        assert all(x.shape == (24000, 2) for x in a.values())
        np.testing.assert_array_equal(
            a["mixture"], ((a["vocals"] + a["drums"]) + a["bass"]) + a["other"]
        )
        assert max(np.abs(x).max() for x in a.values()) <= PEAK
        mono = {k: x.astype(np.float64).mean(axis=1) for k, x in a.items()}
        acc = mono["drums"] + mono["bass"] + mono["other"]
        level = 10 * np.log10(np.mean(mono["vocals"] ** 2) / np.mean(acc**2))
        # every recorded level holds on the mono down-mix the pipeline reads
        assert level == pytest.approx(meta[folder.name]["vocal_level_db"], abs=0.01)
        track = sources.load_track(sources.TrackRef(folder.name, str(folder), "wav"), 8000)
        np.testing.assert_allclose(track.mixture, mono["mixture"], atol=1e-6)
        np.testing.assert_allclose(track.mixture, track.vocals + track.accompaniment, atol=1e-6)

        def side_share(x):  # energy of (L - R) / 2 relative to (L + R) / 2
            return np.mean((x[:, 0] - x[:, 1]) ** 2) / np.mean((x[:, 0] + x[:, 1]) ** 2)

        # the lead vocal sits near the centre; the accompaniment is panned wider
        assert side_share(a["vocals"].astype(np.float64)) < side_share(
            a["other"].astype(np.float64)
        )


def test_v4_adds_register_instruments_vocal_processing_and_new_timbres():
    from ncajax.data._corpus.voice import VOCAL_STYLES_V4

    cfg = CorpusConfig(seed=0, n_train=24, n_test=1, duration=3.0, realism="v4")
    params = [synthesize_track(cfg, "train", i)[1] for i in range(cfg.n_train)]
    assert all(p["vocal_style"] in VOCAL_STYLES_V4 for p in params)
    assert len({p["vocal_style"] for p in params}) >= 4
    assert sum(p["lead"] is not None for p in params) > sum(p["lead"] is None for p in params)
    assert any(p["register_pad"] is not None for p in params)
    assert any(p["vocal_saturation"] is not None for p in params)
    assert any(p["vocal_echo"] is not None for p in params)
    assert all(len(p["vocal_eq"]["peaks"]) == 3 and p["realism"] == "v4" for p in params)
    assert all(abs(p["pan"]["vocal_lead"]) <= 0.15 for p in params)


def test_v4_draws_leave_the_v3_generators_untouched():
    """The song plan (key, tempo, score) comes from the same generator in both realisms."""
    v3p = synthesize_track(dataclasses.replace(V4, realism="v3"), "train", 0)[1]
    v4p = synthesize_track(V4, "train", 0)[1]
    for key in ("key", "tempo_bpm", "singer", "n_notes", "progression"):
        assert v3p[key] == v4p[key]


def test_register_pad_sits_in_the_singers_register():
    plan = song_plan(np.random.default_rng(5), 6.0)
    lo, _ = plan["public"]["singer_range_midi"]
    for seed in range(40):
        pad, params = instruments.render_register_pad(
            np.random.default_rng(seed), plan, 6 * 8000, 8000
        )
        if pad is not None:
            break
    assert pad is not None and np.isfinite(pad).all()
    assert _band_power(pad, 8000, 0.9 * 440 * 2 ** ((lo - 69) / 12), 4000) > 0.8


def test_a_corpus_config_from_before_format_4_reads_as_v3():
    """A config dict without `realism` (corpus.json or a run config written before corpus format 4) was
    the v3 corpus; `from_dict` must not turn it into today's v4 default."""
    from ncajax.config import from_dict, to_dict

    old = {k: v for k, v in to_dict(CorpusConfig(seed=3)).items() if k != "realism"}
    assert from_dict(CorpusConfig, old) == CorpusConfig(seed=3, realism="v3")
    assert from_dict(CorpusConfig, to_dict(CorpusConfig(seed=3))) == CorpusConfig(seed=3)
