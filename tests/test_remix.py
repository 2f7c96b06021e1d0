"""Stem-remix augmentation: the stems cache of complex STFTs, remix batches as pure functions of (seed,
step), their closed forms, the config checks and training with it (resume bit-exact)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import jax
import numpy as np
import pytest

from ncajax import config, runs
from ncajax.config import CorpusConfig, TrainConfig
from ncajax.data import _features as features
from ncajax.data._features import STEMS, FeatureCache, build_stems_cache, open_stems_cache
from ncajax.data._sources import TrackRef, load_stems, load_track
from ncajax.study import _pipeline as pipeline
from ncajax.training import _train as train

# 5 train songs of 1 s at 8 kHz: one goes to validation, 4 x 126 = 504 training frames of 129 bins
TINY = CorpusConfig(seed=1, n_train=5, n_test=1, duration=1.0, sample_rate=8000)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> pipeline.Data:
    return pipeline.prepare_data(corpus_cfg=TINY, cache_root=tmp_path_factory.mktemp("cache"),
                                 progress=False)


@pytest.fixture(scope="module")
def stems(data) -> features.StemsCache:
    return data.train_stems(progress=False)


def remix(stems, step, bs, seed, prob=0.0, gain_db=0.0):
    return stems.remix_batch(step, bs, seed, remix_prob=prob, stem_gain_db=gain_db)


# ------------------------------------------------------------------------------------- stems cache


def test_stems_cache_layout_and_reuse(data, stems):
    cache = data.train
    assert stems.path.parent == cache.path.parent and stems.path.name.startswith("train-stems-")
    assert stems.n_frames == cache.n_frames == 4 * 126 and stems.n_bins == 129
    np.testing.assert_array_equal(stems.offsets, cache.offsets)
    assert stems.track_names == cache.track_names and stems.refs == cache.refs
    for s in STEMS:
        arr = stems.stems[s]
        assert isinstance(arr, np.memmap) and arr.dtype == np.complex64 and not arr.flags.writeable
    # the cached rows are the stems' STFTs (track 1), and the vocals' magnitude is the cached target
    ref = data.refs["train"][1]
    audio = load_stems(ref, data.stft.sample_rate)
    lo, hi = stems.offsets[1], stems.offsets[2]
    for s in STEMS:
        np.testing.assert_array_equal(stems.stems[s][lo:hi], features.stft(audio[s], data.stft))
    np.testing.assert_array_equal(np.abs(stems.stems["vocals"][lo:hi]), cache.track(1)[1])
    np.testing.assert_array_equal(load_track(ref, data.stft.sample_rate).vocals, audio["vocals"])
    # built once: a second call reuses the directory untouched, and opening it checks it
    mtime = (stems.path / "vocals.npy").stat().st_mtime_ns
    again = features.stems_cache_for(cache)
    assert again.path == stems.path and (again.path / "vocals.npy").stat().st_mtime_ns == mtime
    assert open_stems_cache(stems.path).n_frames == stems.n_frames
    with pytest.raises(ValueError, match="stems cache.*unusable.*build_stems_cache"):
        open_stems_cache(cache.path)  # a magnitude cache is not a stems cache


def test_damaged_stems_cache_is_rebuilt(data, tmp_path, caplog):
    refs = data.refs["train"][:2]
    built = build_stems_cache(refs, data.stft, tmp_path, name="train")
    expected = np.array(built.stems["drums"])
    path = built.path
    del built
    data_bytes = (path / "drums.npy").read_bytes()
    (path / "drums.npy").write_bytes(data_bytes[: len(data_bytes) // 2])
    with pytest.raises(ValueError, match="unusable"):
        open_stems_cache(path)
    with caplog.at_level("WARNING", logger="ncajax.data"):
        rebuilt = build_stems_cache(refs, data.stft, tmp_path, name="train")
    assert "stems cache" in caplog.text and "rebuilding" in caplog.text
    np.testing.assert_array_equal(rebuilt.stems["drums"], expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp leftovers


def test_in_memory_cache_has_no_stems():
    mem = FeatureCache.from_arrays(np.ones((64, 5)), np.ones((64, 5)))
    with pytest.raises(ValueError, match="in-memory.*build_cache.*augment_remix=0.0"):
        features.stems_cache_for(mem)


# ----------------------------------------------------------------------------------- remix batches


def test_no_remix_no_gain_is_the_ordinary_batch(data, stems):
    """Linearity: |sum of the stems' STFTs| is the cached mixture magnitude up to float32 rounding."""
    cache, bs = data.train, 64
    spe = cache.steps_per_epoch(bs)
    for seed in (0, 3):
        for step in (0, 1, spe + 2):
            x, y = remix(stems, step, bs, seed)
            ex, ey = cache.batch(step, bs, seed)
            assert x.shape == y.shape == (bs, 129) and x.dtype == y.dtype == np.float32
            np.testing.assert_allclose(x, ex, rtol=1e-4, atol=1e-5 * float(ex.max()))
            np.testing.assert_array_equal(y, ey)  # the vocals are the same complex64 rows
            src = stems.remixer(0.0, 0.0).batch(step, bs, seed)
            np.testing.assert_array_equal(src[0], x)


def test_remix_batches_are_pure_functions_of_seed_and_step(data, stems):
    bs = 32
    first = remix(stems, 7, bs, 2, 0.5, 6.0)
    twin = open_stems_cache(stems.path)
    for s in range(7):  # other steps and seeds read first on the twin
        remix(twin, s, bs, 2, 0.5, 6.0)
        remix(twin, s, bs, 5, 0.5, 6.0)
    for a, b in zip(first, remix(twin, 7, bs, 2, 0.5, 6.0), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], remix(stems, 8, bs, 2, 0.5, 6.0)[0])
    assert not np.array_equal(first[0], remix(stems, 7, bs, 3, 0.5, 6.0)[0])
    f1, g1 = stems.remix_draws(7, bs, 2, remix_prob=0.5, stem_gain_db=6.0)
    f2, g2 = stems.remix_draws(7, bs, 2, remix_prob=0.5, stem_gain_db=6.0)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(g1, g2)


def test_gains_closed_form(stems):
    """One stem alone scaled by g gives g times its magnitude; the mixture is the gained sum."""
    bs, step, seed, prob, gain_db = 64, 4, 1, 0.5, 12.0
    frames, gains = stems.remix_draws(step, bs, seed, remix_prob=prob, stem_gain_db=gain_db)
    db = 20 * np.log10(gains)
    assert gains.shape == frames.shape == (bs, len(STEMS))
    assert np.all(np.abs(db) <= gain_db + 1e-4) and db.std() > 3.0  # spread over the range
    assert len(np.unique(gains)) == gains.size  # every stem of every example its own gain
    for k, stem in enumerate(STEMS):
        alone = copy.copy(stems)
        alone.stems = {s: a if s == stem else np.zeros_like(a) for s, a in stems.stems.items()}
        x, y = remix(alone, step, bs, seed, prob, gain_db)
        want = gains[:, k : k + 1] * np.abs(stems.stems[stem][frames[:, k]])
        np.testing.assert_allclose(x, want, rtol=1e-6, atol=1e-7 * float(want.max()))
        if stem == "vocals":
            np.testing.assert_array_equal(x, y)
        else:
            assert not np.any(y)  # silent vocals: a zero target
    # all four stems: |sum_k g_k S_k| in float64
    x, y = remix(stems, step, bs, seed, prob, gain_db)
    total = sum(gains[:, k : k + 1].astype(np.float64) * stems.stems[s][frames[:, k]].astype(np.complex128)
                for k, s in enumerate(STEMS))
    np.testing.assert_allclose(x, np.abs(total), rtol=1e-4, atol=1e-5 * float(x.max()))
    vox = gains[:, :1] * np.abs(stems.stems["vocals"][frames[:, 0]])
    np.testing.assert_allclose(y, vox, rtol=1e-6, atol=1e-7 * float(vox.max()))
    # no gain range: gains exactly 1
    assert np.all(stems.remix_draws(step, bs, seed, remix_prob=prob, stem_gain_db=0.0)[1] == 1.0)


def test_remixed_stems_come_from_several_songs(data, stems):
    bs = 256
    base = data.train.batch_indices(3, bs, 0)
    frames, _ = stems.remix_draws(3, bs, 0, remix_prob=1.0, stem_gain_db=0.0)
    songs = stems.track_of(frames)
    assert songs.shape == (bs, len(STEMS))
    assert len(np.unique(songs[:, 0])) == 4  # the vocals too come from every song of the split
    for k in range(len(STEMS)):
        assert np.bincount(songs[:, k], minlength=4).min() > bs / 4 / 3  # spread over the songs
    assert np.mean(np.all(songs == songs[:, :1], axis=1)) < 0.2  # rarely one song for all stems
    assert np.mean(np.all(frames == frames[:, :1], axis=1)) < 0.01
    assert np.mean(frames[:, 0] == base) < 0.05  # not the ordinary batch's frames
    # half the examples remixed, the others keep the ordinary batch's frame for all four stems
    frames, _ = stems.remix_draws(3, bs, 0, remix_prob=0.5, stem_gain_db=0.0)
    kept = np.all(frames == base[:, None], axis=1)
    assert 0.35 < kept.mean() < 0.65
    frames, _ = stems.remix_draws(3, bs, 0, remix_prob=0.0, stem_gain_db=6.0)
    np.testing.assert_array_equal(frames, np.repeat(base[:, None], len(STEMS), axis=1))
    assert stems.track_of([0, 125, 126, stems.n_frames - 1]).tolist() == [0, 0, 1, 3]


# ----------------------------------------------------------------------------------------- config


@pytest.mark.parametrize("kw,match", [
    (dict(augment_remix=1.5), r"augment_remix must be a probability between 0 and 1.*augment_remix=0.5"),
    (dict(augment_remix=-0.1), r"augment_remix.*augment_remix=0.5"),
    (dict(augment_remix=math.nan), r"augment_remix"),
    (dict(augment_stem_gain_db=30.0),
     r"augment_stem_gain_db must be between 0 and 24 dB.*augment_stem_gain_db=6.0"),
    (dict(augment_stem_gain_db=-3.0), r"augment_stem_gain_db.*augment_stem_gain_db=6.0"),
])
def test_remix_options_are_checked(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_remix_options_defaults_and_batch_checks(stems):
    assert TrainConfig().augment_remix == 0.0 and TrainConfig().augment_stem_gain_db == 0.0
    assert not TrainConfig().remixes
    assert TrainConfig(augment_remix=0.5).remixes and TrainConfig(augment_stem_gain_db=3.0).remixes
    with pytest.raises(ValueError, match=r"remix_prob.*remix_prob=0.5"):
        stems.remixer(2.0, 0.0)
    with pytest.raises(ValueError, match=r"stem_gain_db.*stem_gain_db=6.0"):
        remix(stems, 0, 8, 0, 0.5, 40.0)


def test_train_script_checks_options_before_the_data(monkeypatch, capsys):
    """An out-of-range option fails at once with one error line naming the option and a working value,
    before any data are prepared."""
    import importlib.util

    from ncajax.cli import _errors as cli

    path = Path(__file__).resolve().parents[1] / "experiments" / "train_separators.py"
    spec = importlib.util.spec_from_file_location("train_separators_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def no_data(*a, **k):
        raise AssertionError("data prepared before the options were checked")

    monkeypatch.setattr(pipeline, "prepare_data", no_data)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    for argv, want in [(["--augment-remix", "2"], "augment_remix must be a probability"),
                       (["--augment-stem-gain-db", "30"], "augment_stem_gain_db must be between 0 and 24")]:
        assert cli.run_guarded(module.main, argv) == 2
        errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(errors) == 1 and errors[0].startswith("error: ") and want in errors[0], errors
        assert "e.g. augment_" in errors[0]


# --------------------------------------------------------------------------------------- training


def tcfg(**kw):
    base = dict(learning_rate=3e-3, batch_size=64, max_epochs=3, patience=10, n_seeds=2,
                max_steps_per_epoch=3)
    return TrainConfig(**{**base, **kw})


def _train(data, run_dir, train_stems=None, **kw):
    return train.train_model(config.ModelConfig("dae", data.stft.n_bins), tcfg(**kw), data.stft,
                             data.train, data.valid, data.test, run_dir, progress=False,
                             train_stems=train_stems)


def test_training_with_remix_resumes_bit_exactly(data, stems, tmp_path):
    kw = dict(augment_remix=0.5, augment_stem_gain_db=6.0)
    full = _train(data, tmp_path / "full", **kw)  # stems found next to the training cache
    assert full.result["finished"]
    recorded = runs.read_json(tmp_path / "full" / "config.json")["train"]
    assert recorded["augment_remix"] == 0.5 and recorded["augment_stem_gain_db"] == 6.0
    train.train_model(config.ModelConfig("dae", data.stft.n_bins), tcfg(**kw), data.stft, data.train,
                      data.valid, data.test, tmp_path / "resumed", progress=False, stop_after_epochs=1,
                      train_stems=stems)
    assert not runs.is_finished(tmp_path / "resumed")
    resumed = _train(data, tmp_path / "resumed", train_stems=stems, **kw)
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert full.result["test_mag_sdr_db"] == resumed.result["test_mag_sdr_db"]
    plain = _train(data, tmp_path / "plain")
    assert plain.result["test_loss"] != full.result["test_loss"]  # the remix changed the batches
    # the per-bin scaling stays that of the real training frames
    assert runs.read_json(tmp_path / "full" / train.SCALING_FILE) == runs.read_json(
        tmp_path / "plain" / train.SCALING_FILE)


def test_train_all_builds_stems_only_with_remix(tmp_path):
    d = pipeline.prepare_data(corpus_cfg=TINY, cache_root=tmp_path / "cache", progress=False)
    cfg = tcfg(max_epochs=1, n_seeds=1)
    pipeline.train_all(d, tmp_path / "plain", model_names=("dae",), train_cfg=cfg, progress=False)
    assert not list((tmp_path / "cache" / "features").glob("train-stems-*"))
    cfg = tcfg(max_epochs=1, n_seeds=1, augment_remix=1.0)
    out = pipeline.train_all(d, tmp_path / "remix", model_names=("dae",), train_cfg=cfg, progress=False)
    assert out["dae"].result["finished"] and "stems_s" in d.timings
    assert len(list((tmp_path / "cache" / "features").glob("train-stems-*"))) == 1


def test_runs_without_the_remix_fields_still_load(data, tmp_path):
    """A run written before the remix options existed (no such fields anywhere) loads with them off."""
    run = tmp_path / "old"
    _train(data, run, max_epochs=1, n_seeds=1)
    for path in run.rglob("*"):
        if not path.is_file():
            continue
        try:
            doc = json.loads(path.read_text())
        except (UnicodeDecodeError, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("train"), dict) and "augment_remix" in doc["train"]:
            del doc["train"]["augment_remix"], doc["train"]["augment_stem_gain_db"]
            path.write_text(json.dumps(doc))
    assert "augment_remix" not in runs.read_json(run / "config.json")["train"]
    trained = train.load_trained(run)
    assert trained.train_cfg.augment_remix == 0.0 and trained.train_cfg.augment_stem_gain_db == 0.0


# ---------------------------------------------------------------------------------------- MUSDB18


@pytest.mark.ffmpeg
def test_musdb18_stem_file_serves_the_same_path(musdb_sample_root, tmp_path):
    """The real `.stem.mp4` track: the stems cache aligns with the magnitude cache frame for frame; the
    vocals are bit for bit the cached target and |sum of stems| the mixture up to mp4 coding noise."""
    path = next(musdb_sample_root.glob("train/*.stem.mp4"))
    refs = [TrackRef(name="sample", path=str(path), kind="stem", start=1.0, stop=3.0)]
    cfg = config.PRESETS["fast"]
    cache = features.build_cache(refs, cfg, tmp_path, name="train")
    stems = features.stems_cache_for(cache)
    assert stems.n_frames == cache.n_frames and stems.n_bins == cache.n_bins
    x, y = remix(stems, 0, 64, 0)
    ex, ey = cache.batch(0, 64, 0)
    np.testing.assert_array_equal(y, ey)
    assert np.linalg.norm(x - ex) < 0.1 * np.linalg.norm(ex)
