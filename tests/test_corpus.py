"""The synthetic corpus: layout, determinism, exact mixtures, caching/atomicity and the voice's structure."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from ncajax import corpus
from ncajax.config import CorpusConfig, fingerprint, to_dict
from ncajax.corpus import (
    FORMAT_VERSION,
    MARKER,
    PEAK,
    STEMS,
    VOCAL_LEVEL_DB,
    corpus_dir,
    generate_corpus,
    synthesize_track,
    track_names,
)

TINY = CorpusConfig(seed=3, n_train=2, n_test=1, duration=2.0, sample_rate=16000)
FILES = ("mixture", *STEMS)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return generate_corpus(tmp_path_factory.mktemp("cache"), TINY)


def _tracks(root):
    return [root / split / name for split, names in track_names(TINY).items() for name in names]


def _read(folder):
    return {name: sf.read(folder / f"{name}.wav", dtype="float32")[0] for name in FILES}


def _frames(x, size=512):
    return np.lib.stride_tricks.sliding_window_view(x, size)[:: size // 2]


def test_layout_headers_and_metadata(tiny):
    assert tiny.name == f"synth-v{FORMAT_VERSION}-{fingerprint(to_dict(TINY))}"
    assert tiny == corpus_dir(tiny.parent, TINY)
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
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "FLOAT")
            assert info.frames == 32000
    meta = json.loads((tiny / "corpus.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["config"] == to_dict(TINY)
    assert [t["name"] for t in meta["tracks"]] == [
        "synth-train-000",
        "synth-train-001",
        "synth-test-000",
    ]
    for t in meta["tracks"]:
        lo, hi = t["singer_range_midi"]
        assert t["singer"] in ("bass", "tenor", "alto", "soprano") and lo < hi
        assert 80 <= t["tempo_bpm"] <= 140 and t["mode"] in ("major", "minor")


def test_same_config_gives_identical_files(tiny, tmp_path):
    other = generate_corpus(tmp_path / "elsewhere", TINY)
    for a, b in zip(_tracks(tiny), _tracks(other), strict=True):
        for name in FILES:
            assert (a / f"{name}.wav").read_bytes() == (b / f"{name}.wav").read_bytes()
    assert (tiny / "corpus.json").read_text() == (other / "corpus.json").read_text()


def test_tracks_depend_on_seed_not_on_track_counts():
    small, _ = synthesize_track(TINY, "test", 0)
    more = CorpusConfig(seed=3, n_train=5, n_test=4, duration=2.0, sample_rate=16000)
    same, _ = synthesize_track(more, "test", 0)
    reseeded, _ = synthesize_track(
        CorpusConfig(seed=4, n_train=2, n_test=1, duration=2.0), "test", 0
    )
    train0, _ = synthesize_track(TINY, "train", 0)
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


def test_vocal_level_is_drawn_in_range_and_recorded(tiny):
    meta = {t["name"]: t for t in json.loads((tiny / "corpus.json").read_text())["tracks"]}
    for folder in _tracks(tiny):
        a = _read(folder)
        acc = a["drums"].astype(np.float64) + a["bass"] + a["other"]
        level = 20 * np.log10(
            np.sqrt(np.mean(a["vocals"].astype(np.float64) ** 2) / np.mean(acc**2))
        )
        assert VOCAL_LEVEL_DB[0] <= level <= VOCAL_LEVEL_DB[1]
        assert level == pytest.approx(meta[folder.name]["vocal_level_db"], abs=0.01)


def test_voice_has_rests_and_harmonic_frames(tiny):
    sr = TINY.sample_rate
    for folder in _tracks(tiny):
        v = sf.read(folder / "vocals.wav", dtype="float64")[0]
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


def test_cached_corpus_is_reused_without_work(tiny, monkeypatch):
    stamps = {p: p.stat().st_mtime_ns for p in tiny.rglob("*")}

    def boom(*args, **kwargs):
        raise AssertionError("a cached corpus must not be synthesised again")

    monkeypatch.setattr(corpus, "synthesize_track", boom)
    assert generate_corpus(tiny.parent, TINY) == tiny
    assert {p: p.stat().st_mtime_ns for p in tiny.rglob("*")} == stamps


def test_interrupted_generation_leaves_nothing_valid(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_write = corpus._write_wav

    def flaky_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt  # like Ctrl-C half way through the second track
        return real_write(*args, **kwargs)

    monkeypatch.setattr(corpus, "_write_wav", flaky_write)
    with pytest.raises(KeyboardInterrupt):
        generate_corpus(tmp_path, TINY)
    assert list(tmp_path.iterdir()) == []  # no final dir, temp dir cleaned up
    monkeypatch.setattr(corpus, "_write_wav", real_write)
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
