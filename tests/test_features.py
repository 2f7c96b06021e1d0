"""ncajax.data: STFT vs a NumPy reference, iSTFT round trip, the feature cache, batches."""

from __future__ import annotations

import dataclasses
import logging
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from ncajax.config import PRESETS, STFTConfig
from ncajax.data import _features as features
from ncajax.data._features import FeatureCache, build_cache, istft, open_cache, stft
from ncajax.data._sources import TrackAudio, TrackRef, load_track

FAST = PRESETS["fast"]


def noisy_sine(n: int, rate: int, seed: int = 0) -> np.ndarray:
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    return (0.4 * np.sin(2 * np.pi * 523.0 * t) + 0.1 * rng.standard_normal(n)).astype(np.float32)


def write_tracks(root: Path, n_tracks: int, n: int, rate: int = 16000) -> list[TrackRef]:
    """HQ-layout track folders (mono); returns their TrackRefs."""
    refs = []
    for i in range(n_tracks):
        folder = root / f"track{i}"
        folder.mkdir(parents=True)
        stems = {
            s: noisy_sine(n, rate, seed=10 * i + k)
            for k, s in enumerate(("vocals", "drums", "bass", "other"))
        }
        stems["mixture"] = sum(stems.values())
        for s, x in stems.items():
            sf.write(folder / f"{s}.wav", x, rate, subtype="FLOAT")
        refs.append(TrackRef(folder.name, str(folder), "wav"))
    return refs


@pytest.fixture
def refs(tmp_path) -> list[TrackRef]:
    # 3 tracks of 0.5 s (written at 16 kHz, read at the preset rate) -> 63 frames each
    return write_tracks(tmp_path / "data", 3, 8000)


# ----------------------------------------------------------------------------------------- STFT


def reference_stft(x: np.ndarray, cfg: STFTConfig) -> np.ndarray:
    """NumPy loop: centred (zero-padded) frames times the window zero-padded to n_fft, then rfft."""
    win = scipy.signal.get_window(cfg.window, cfg.win_length, fftbins=True)
    lpad = (cfg.n_fft - cfg.win_length) // 2
    window = np.zeros(cfg.n_fft)
    window[lpad : lpad + cfg.win_length] = win
    padded = np.pad(x.astype(np.float64), cfg.n_fft // 2)
    n_frames = 1 + len(x) // cfg.hop_length
    frames = [
        padded[t * cfg.hop_length : t * cfg.hop_length + cfg.n_fft] * window
        for t in range(n_frames)
    ]
    return np.fft.rfft(np.array(frames), axis=1)


@pytest.mark.parametrize("name, n", [("fast", 4000), ("paper", 9000)])
def test_stft_matches_numpy_and_round_trips(name, n):
    cfg = PRESETS[name]
    x = noisy_sine(n, cfg.sample_rate)
    spec = stft(x, cfg)
    assert spec.shape == (1 + n // cfg.hop_length, cfg.n_bins) and spec.dtype == np.complex64
    ref = reference_stft(x, cfg)
    np.testing.assert_allclose(spec, ref, atol=1e-3 * np.abs(ref).max())
    y = istft(np.abs(spec), spec, cfg, n)
    assert y.shape == (n,) and y.dtype == np.float32
    assert np.linalg.norm(y - x) / np.linalg.norm(x) < 1e-4


def test_istft_uses_mixture_phase():
    x = noisy_sine(2000, 16000)
    spec = stft(x, FAST)
    # half the magnitude with the mixture phase is half the signal (iSTFT is linear)
    y = istft(0.5 * np.abs(spec), spec, FAST, len(x))
    np.testing.assert_allclose(y, 0.5 * x, atol=1e-4)


def test_stft_istft_bad_input():
    with pytest.raises(ValueError, match="mono"):
        stft(np.zeros((2, 100), np.float32), FAST)
    spec = stft(np.ones(1000, np.float32), FAST)
    with pytest.raises(ValueError, match="same"):
        istft(np.abs(spec)[:-1], spec, FAST, 1000)
    with pytest.raises(ValueError, match="n_bins"):
        istft(np.abs(spec), spec, PRESETS["paper"], 1000)


# ----------------------------------------------------------------------------------------- cache


def test_cache_values_offsets_and_reuse(refs, tmp_path):
    cache = build_cache(refs, FAST, tmp_path / "cache", name="train")
    assert cache.path.parent == tmp_path / "cache" and cache.path.name.startswith("train-")
    assert cache.n_bins == FAST.n_bins and cache.n_frames == 3 * 63
    np.testing.assert_array_equal(cache.offsets, [0, 63, 126, 189])
    assert cache.track_names == ["track0", "track1", "track2"] and cache.stft == FAST
    assert isinstance(cache.mixture, np.memmap) and not cache.mixture.flags.writeable
    for i, ref in enumerate(refs):
        audio = load_track(ref, FAST.sample_rate)
        mix, voc = cache.track(i)
        np.testing.assert_array_equal(mix, np.abs(stft(audio.mixture, FAST)))
        np.testing.assert_array_equal(voc, np.abs(stft(audio.vocals, FAST)))

    mtime = (cache.path / "mixture.npy").stat().st_mtime_ns
    again = build_cache(refs, FAST, tmp_path / "cache", name="train")
    assert again.path == cache.path
    assert (again.path / "mixture.npy").stat().st_mtime_ns == mtime
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [
        cache.path.name
    ]  # no temp leftovers

    other = build_cache(
        refs, dataclasses.replace(FAST, hop_length=256), tmp_path / "cache", name="train"
    )
    assert other.path != cache.path and other.n_frames == 3 * (1 + (FAST.sample_rate // 2) // 256)
    seg = [dataclasses.replace(r, stop=0.25) for r in refs]
    assert build_cache(seg, FAST, tmp_path / "cache", name="train").path not in (
        cache.path,
        other.path,
    )


@pytest.mark.parametrize("damage", ["marker", "truncate", "meta"])
def test_partial_cache_is_rebuilt(refs, tmp_path, damage, caplog):
    cache = build_cache(refs, FAST, tmp_path / "cache", name="c")
    expected = np.array(cache.mixture)
    path = cache.path
    del cache
    if damage == "marker":
        (path / features.MARKER).unlink()
    elif damage == "truncate":
        data = (path / "vocals.npy").read_bytes()
        (path / "vocals.npy").write_bytes(data[: len(data) // 2])
    else:
        (path / "meta.json").write_text("{")
    with pytest.raises(ValueError, match="unusable"):
        open_cache(path)
    with caplog.at_level(logging.WARNING, logger="ncajax.data"):
        rebuilt = build_cache(refs, FAST, tmp_path / "cache", name="c")
    assert "rebuilding" in caplog.text
    assert rebuilt.path == path and (path / features.MARKER).exists()
    np.testing.assert_array_equal(rebuilt.mixture, expected)
    assert rebuilt.vocals.shape == expected.shape


def test_nan_features_name_the_track(refs, tmp_path, monkeypatch):
    def bad_load(ref, rate):
        x = np.full(800, np.nan, np.float32)
        return TrackAudio(ref.name, rate, x, x, x)

    monkeypatch.setattr(features, "load_track", bad_load)
    with pytest.raises(ValueError, match="track0.*NaN"):
        build_cache(refs, FAST, tmp_path / "cache", name="bad")
    assert list((tmp_path / "cache").iterdir()) == []  # the temporary directory is removed


def test_open_cache_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="build_cache"):
        open_cache(tmp_path / "none")


# ----------------------------------------------------------------------------------------- batches


def test_batches_are_pure_functions_of_seed_and_step(refs, tmp_path):
    cache = build_cache(refs, FAST, tmp_path / "cache", name="b")
    bs = 16
    spe = cache.steps_per_epoch(bs)
    assert spe == 189 // 16
    twin = open_cache(cache.path)
    # step spe + 2 (epoch 1) computed first on one object, after all of epoch 0 on the other
    first = cache.batch(spe + 2, bs, seed=3)
    for s in range(spe):
        twin.batch(s, bs, seed=3)
    for a, b in zip(first, twin.batch(spe + 2, bs, seed=3), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(cache.batch(1, bs, 3)[0], cache.batch(1, bs, 3)[0])
    assert not np.array_equal(cache.batch(1, bs, 3)[0], cache.batch(1, bs, 4)[0])
    assert not np.array_equal(cache.batch(1, bs, 3)[0], cache.batch(1 + spe, bs, 3)[0])

    # several seeds read side by side (as vmapped training does) give each seed's own sequence
    interleaved = [[cache.batch_indices(s, bs, seed) for seed in range(20)] for s in (0, spe, 1)]
    fresh = open_cache(cache.path)
    for seed in (0, 7, 19):
        for k, s in enumerate((0, spe, 1)):
            np.testing.assert_array_equal(interleaved[k][seed], fresh.batch_indices(s, bs, seed))

    idx = np.concatenate([cache.batch_indices(s, bs, 3) for s in range(spe)])
    assert len(idx) == spe * bs and len(np.unique(idx)) == len(idx) and idx.max() < cache.n_frames
    for s in (0, spe - 1):
        i = cache.batch_indices(s, bs, 3)
        assert np.all(np.diff(i) > 0)  # sorted within the batch
        x, y = cache.batch(s, bs, 3)
        assert x.shape == y.shape == (bs, FAST.n_bins) and x.dtype == np.float32
        np.testing.assert_array_equal(x, cache.mixture[i])
        np.testing.assert_array_equal(y, cache.vocals[i])


def test_prefetched_batches_equal_direct_batches(refs, tmp_path):
    cache = build_cache(refs, FAST, tmp_path / "cache", name="b")
    bs, spe = 20, cache.steps_per_epoch(20)
    got = list(cache.batches(bs, seed=1, start_step=spe + 3))  # to the end of epoch 1
    assert len(got) == spe - 3
    for k, (x, y) in enumerate(got):
        ex, ey = cache.batch(spe + 3 + k, bs, 1)
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)
    assert len(list(cache.batches(bs, seed=1, start_step=0, n_steps=2 * spe + 1))) == 2 * spe + 1
    with pytest.raises(ValueError, match="exceeds"):
        cache.steps_per_epoch(1000)


def test_prefetch_worker_errors_reach_the_consumer(refs, tmp_path, monkeypatch):
    cache = build_cache(refs, FAST, tmp_path / "cache", name="b")
    real = cache.batch

    def flaky(step, batch_size, seed):
        if step == 2:
            raise OSError("disk went away")
        return real(step, batch_size, seed)

    monkeypatch.setattr(cache, "batch", flaky)
    it = cache.batches(8, seed=0, n_steps=5)
    next(it), next(it)
    with pytest.raises(OSError, match="disk went away"):
        next(it)


def test_streaming_memory_is_flat(tmp_path):
    # 6 tracks of 2 s -> 1506 frames: 1.5 MB per array, far more than the 4-batch prefetch queue
    refs = write_tracks(tmp_path / "data", 6, 32000)
    cache = build_cache(refs, FAST, tmp_path / "cache", name="mem")
    bs = 16
    batch_bytes = 2 * bs * cache.n_bins * 4
    cache_bytes = cache.mixture.nbytes + cache.vocals.nbytes

    def peak_while_streaming(n_steps: int) -> int:
        tracemalloc.start()
        try:
            for x, _ in cache.batches(bs, seed=0, n_steps=n_steps):
                assert x.shape == (bs, cache.n_bins)
                time.sleep(0.001)  # a slow consumer: the prefetch queue stays full in both runs
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    spe = cache.steps_per_epoch(bs)
    short = peak_while_streaming(spe)
    long = peak_while_streaming(4 * spe)  # 4 epochs: every frame read 4 times
    # bounded by the prefetch queue (+ the batches in flight) and the epoch permutations, whatever
    # the
    # number of batches; a leak of the streamed batches alone would exceed 4 * cache_bytes
    bound = (features.PREFETCH + 4) * batch_bytes + 4 * cache.n_frames * 8 + 64_000
    assert short < bound and long < bound
    assert long < short + 2 * batch_bytes
    assert long < cache_bytes / 4


def test_from_arrays_streams_like_the_disk_cache(refs, tmp_path):
    cache = build_cache(refs, FAST, tmp_path / "cache", name="train")
    mem = FeatureCache.from_arrays(np.asarray(cache.mixture), np.asarray(cache.vocals), stft=FAST)
    assert mem.n_frames == cache.n_frames and mem.steps_per_epoch(16) == cache.steps_per_epoch(16)
    for step in (0, 5, cache.steps_per_epoch(16) + 2):
        for a, b in zip(mem.batch(step, 16, 3), cache.batch(step, 16, 3), strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="equal"):
        FeatureCache.from_arrays(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        FeatureCache.from_arrays(np.full((4, 3), np.nan), np.zeros((4, 3)))


def test_per_bin_rms_matches_numpy_and_floors_silent_bins():
    rng = np.random.default_rng(3)
    mix = rng.random((1000, 7)).astype(np.float32) * np.arange(1, 8, dtype=np.float32)
    voc = (mix * 0.5).astype(np.float32)
    voc[:, 2] = 0.0  # a silent bin
    cache = FeatureCache.from_arrays(mix, voc)
    s, t = features.per_bin_rms(cache, chunk=128)  # several chunks
    np.testing.assert_allclose(s, np.sqrt(np.mean(mix.astype(np.float64) ** 2, axis=0)), rtol=1e-6)
    ref_t = np.sqrt(np.mean(voc.astype(np.float64) ** 2, axis=0))
    np.testing.assert_allclose(np.delete(t, 2), np.delete(ref_t, 2), rtol=1e-6)
    assert t[2] == pytest.approx(1e-6 * ref_t.max(), rel=1e-5) and s.dtype == t.dtype == np.float32
