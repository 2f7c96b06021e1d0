"""Reliability guarantees of issue 6 not already covered by the per-module tests.

Covered elsewhere (not repeated here): dataset layout, missing stems, mismatched stems, corrupt/truncated/
zero-length/NaN audio and missing ffmpeg (test_sources.py); partly written caches and NaN features
(test_features.py); NaN fit inputs, unknown method, steps=0 (test_nca.py); in-process resume, the
non-finite-loss guard (test_train.py); unknown model names (test_models.py); interrupted corpus
generation (test_corpus.py). A kill between an epoch's metrics line and its checkpoint is the
kill-mid-save case here (it replaced a weaker in-process copy in test_train.py).

Here: SIGKILL during training and during a checkpoint save, then resume -> bit-identical parameters;
determinism of fits and metrics; finished runs never overwritten; invalid options; caches of another
format version or preset; no network use; checkpoints restored with a mismatching config.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
import soundfile as sf
from fakes import array_cache

from ncajax import checkpoints, config, models, runs
from ncajax.data import _corpus as corpus
from ncajax.data import _features as features
from ncajax.data import _sources as sources
from ncajax.data._features import FeatureCache
from ncajax.nca import NCA, LeastSquares, Student
from ncajax.nca import _couplings as nca
from ncajax.nca import _structure as analysis
from ncajax.training import _train as train

N = 16
FAST = config.PRESETS["fast"]


class ArrayCache(FeatureCache):
    """`fakes.array_cache` that SIGKILLs its own process when asked for batch `kill_at_step`."""

    def __init__(self, n_frames, seed, n_bins=N, kill_at_step=None):
        self.__dict__.update(array_cache(n_frames, seed, n_bins).__dict__)
        self.kill_at_step = kill_at_step

    def batch(self, step, batch_size, seed):
        if step == self.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().batch(step, batch_size, seed)


CHILD = f"""
import os, signal, sys
sys.path.insert(0, {str(os.path.dirname(os.path.abspath(__file__)))!r})
from test_reliability import ArrayCache

run_dir, mode = sys.argv[1], sys.argv[2]
kill_at_step = None
if mode == "kill-mid-epoch":
    kill_at_step = 4 * 16 + 8  # in the middle of epoch 5 (16 steps per epoch)
elif mode == "kill-mid-save":
    # SIGKILL inside the save of the epoch-3 checkpoint: its config item is committed, the state
    # item is fully written but not yet renamed into place. orbax's private atomicity module is the
    # only place to stop a save between writing and committing (no public hook exists).
    from orbax.checkpoint._src.path import atomicity

    original = atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize(self):
        path = self.get()
        if path.name.startswith("state") and path.parent.name.startswith("3."):
            os.kill(os.getpid(), signal.SIGKILL)
        return await original(self)

    atomicity.AtomicRenameTemporaryPath.finalize = finalize

from ncajax import config
from ncajax import training as train

caches = (ArrayCache(512, 0, 16, kill_at_step), ArrayCache(128, 1, 16), ArrayCache(128, 2, 16))
train.train_model(
    config.ModelConfig("dae", 16),
    config.TrainConfig(learning_rate=3e-3, batch_size=32, max_epochs=6, patience=10, n_seeds=2),
    config.PRESETS["fast"], *caches, run_dir, progress=False,
)
"""


def _spawn(script, run_dir, mode):
    # A persistent compilation cache shared by the children: only the first one compiles (the
    # executables are identical, so this cannot hide a difference between runs).
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "JAX_COMPILATION_CACHE_DIR": str(script.parent / "jax-cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}
    return subprocess.Popen(
        [sys.executable, str(script), str(run_dir), mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def _finish(proc, timeout=240):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _without_time(records):
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records]


# ------------------------------------------------------------------------ interruptions, determinism


@pytest.mark.slow  # four training processes
def test_sigkill_mid_save_then_mid_epoch_resumes_bit_identical(tmp_path):
    """One run killed twice (during the epoch-3 checkpoint save, then, resumed, in the middle of
    epoch 5), resumed again, ends bit-identical to an uninterrupted run in another process."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    run = tmp_path / "killed"
    code, err = _finish(_spawn(script, tmp_path / "full", "full"))
    assert code == 0, err[-3000:]
    full_metrics = _without_time(runs.read_metrics(tmp_path / "full"))

    code, err = _finish(_spawn(script, run, "kill-mid-save"))
    assert code == -signal.SIGKILL, err[-3000:]
    assert not runs.is_finished(run)
    # epoch 3's checkpoint was never committed: its temporary directory is left, step 2 is latest.
    # Its metrics line was written just before the save; the resume drops and redoes it.
    assert [r["epoch"] for r in runs.read_metrics(run)] == [1, 2, 3]
    ckpts = run / "checkpoints"
    assert list(ckpts.glob("3.orbax-checkpoint-tmp*")), sorted(p.name for p in ckpts.iterdir())
    mngr = checkpoints.manager(ckpts)
    assert mngr.latest_step() == 2
    mngr.close()
    partial = train.load_params(run)  # the previous checkpoint restores
    assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(partial))

    code, err = _finish(_spawn(script, run, "kill-mid-epoch"))
    assert code == -signal.SIGKILL, err[-3000:]
    assert not runs.is_finished(run)
    # same config + seed in other processes give the same metrics, epoch by epoch
    assert _without_time(runs.read_metrics(run)) == full_metrics[:4]

    code, err = _finish(_spawn(script, run, "resume"))
    assert code == 0, err[-3000:]
    assert runs.is_finished(run)
    assert _without_time(runs.read_metrics(run)) == full_metrics
    full_params, params = train.load_params(tmp_path / "full"), train.load_params(run)
    assert jax.tree.structure(params) == jax.tree.structure(full_params)
    for a, b in zip(jax.tree.leaves(full_params), jax.tree.leaves(params), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    full_result, result = (runs.read_json(d / "result.json") for d in (tmp_path / "full", run))
    assert result["test_mag_sdr_db"] == full_result["test_mag_sdr_db"]
    assert result["best_val_loss"] == full_result["best_val_loss"]


def test_same_seed_same_mapping_matrices_and_metrics():
    model = models.build("dae", N)
    params = models.init_params(model, jax.random.key(3))
    x = np.random.default_rng(0).random((64, N)).astype(np.float32)
    fits = [
        nca.fit_mapping(model, params, x, cls(steps=30, learning_rate=0.01), seed=5)
        for cls in (NCA, Student, NCA, Student)
    ]
    for first, second in ((fits[0], fits[2]), (fits[1], fits[3])):
        assert np.array_equal(np.asarray(first.matrix), np.asarray(second.matrix))
        assert np.array_equal(np.asarray(first.losses), np.asarray(second.losses))
        m1 = analysis.structure_metrics(first.matrix)
        m2 = analysis.structure_metrics(second.matrix)
        assert m1.keys() == m2.keys() and len(m1) > 0
        for key in m1:
            assert np.array_equal(np.asarray(m1[key]), np.asarray(m2[key]), equal_nan=True), key
    other = nca.fit_mapping(model, params, x, Student(steps=30, learning_rate=0.01), seed=6)
    assert not np.array_equal(np.asarray(other.matrix), np.asarray(fits[1].matrix))


# ------------------------------------------------------------------------------- run directories


def test_finished_run_of_other_config_is_never_overwritten(tmp_path):
    run = tmp_path / "run"
    cfg = {"model": {"name": "dae", "n_bins": N}, "stft": config.to_dict(FAST)}
    runs.open_run(run, cfg)
    runs.append_metrics(run, {"epoch": 1})
    runs.finish(run, {"finished": True})
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    other = {"model": {"name": "dae", "n_bins": 32}, "stft": config.to_dict(FAST)}
    with pytest.raises(ValueError, match=r"finished run .*model\.n_bins: expected 32, found 16"):
        runs.open_run(run, other)
    new_field = {**cfg, "normalisation": "max"}
    with pytest.raises(ValueError, match=r"normalisation: expected 'max', found '<missing>'"):
        runs.open_run(run, new_field)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_unknown_model_leaves_no_run_directory(tmp_path):
    cache = ArrayCache(64, 0, N)
    with pytest.raises(ValueError, match="unknown model 'unet'"):
        train.train_model(config.ModelConfig("unet", N), config.TrainConfig(batch_size=32),
                          FAST, cache, cache, cache, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # nothing left that would block the corrected call


# ---------------------------------------------------------------------------------- bad options


def _fit(estimator=NCA(), x=None):
    model = models.build("dae", 8)
    params = models.init_params(model, jax.random.key(0))
    return nca.fit_mapping(model, params, np.ones((4, 8), np.float32) if x is None else x, estimator)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: NCA(steps=-5), "NCA: steps must be a positive integer"),
        (lambda: Student(steps=-1), "Student: steps must be a positive integer"),
        (lambda: _fit("pca"), "estimator must be one of"),
        (lambda: config.from_dict(config.MappingConfig, {"settings": [{"name": "x", "method": "pca"}]}),
         "unknown method 'pca'"),
        (lambda: config.STFTConfig(n_fft=256, win_length=512), "window longer than the FFT"),
        (lambda: config.STFTConfig(hop_length=0), "hop_length must be positive"),
        (lambda: config.STFTConfig(n_fft=255), "positive even number"),
        (lambda: config.TrainConfig(max_epochs=-1), "max_epochs must be positive"),
        (lambda: config.TrainConfig(loss="kl"), "unknown loss 'kl'"),
        (lambda: config.preset("slow"), r"unknown STFT preset 'slow'.*\['fast', 'mid', 'paper'\]"),
        (lambda: config.ModelConfig("dae", n_bins=0), "n_bins must be positive"),
        (lambda: _fit(x=np.full((4, 8), np.inf, np.float32)), "NaN or Inf"),
        (lambda: _fit(LeastSquares(), x=np.full((4, 8), np.inf, np.float32)), "NaN or Inf"),
        (lambda: features.stft(np.array([0.0, np.inf, 1.0]), FAST), "NaN or Inf"),
    ],
)
def test_invalid_options_and_non_finite_input_raise_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# ------------------------------------------------------------------------------- feature caches


def _wav_refs(root, n_tracks=2, n=2000, rate=8000):
    refs = []
    rng = np.random.default_rng(0)
    for i in range(n_tracks):
        folder = root / f"t{i}"
        folder.mkdir(parents=True)
        stems = {s: (0.1 * rng.standard_normal(n)).astype(np.float32)
                 for s in ("vocals", "drums", "bass", "other")}
        stems["mixture"] = sum(stems.values())
        for s, v in stems.items():
            sf.write(folder / f"{s}.wav", v, rate, subtype="FLOAT")
        refs.append(sources.TrackRef(folder.name, str(folder), "wav"))
    return refs


@pytest.mark.parametrize("stale", ["format_version", "other_preset"])
def test_cache_of_other_format_version_or_preset_is_rebuilt(tmp_path, stale, caplog):
    refs = _wav_refs(tmp_path / "data")
    good = features.build_cache(refs, FAST, tmp_path / "cache", name="c")
    path, expected = good.path, np.array(good.mixture)
    del good
    meta = json.loads((path / "meta.json").read_text())
    if stale == "format_version":
        meta["format_version"] = features.FORMAT_VERSION - 1
        (path / "meta.json").write_text(json.dumps(meta))
        reason = "format version"
    else:  # a cache of another STFT config sitting under this config's directory name
        other = dataclasses.replace(FAST, n_fft=128, win_length=128)
        wrong = features.build_cache(refs, other, tmp_path / "other", name="c")
        wrong_path = wrong.path
        del wrong
        import shutil

        shutil.rmtree(path)
        shutil.copytree(wrong_path, path)
        reason = "config/tracks differ"
        assert features.open_cache(path).n_bins == 65  # it looks like a valid cache on its own
    if stale == "format_version":
        with pytest.raises(ValueError, match="format version"):
            features.open_cache(path)
    with caplog.at_level(logging.WARNING, logger="ncajax.data"):
        rebuilt = features.build_cache(refs, FAST, tmp_path / "cache", name="c")
    assert "rebuilding" in caplog.text and reason in caplog.text
    assert rebuilt.path == path and rebuilt.n_bins == FAST.n_bins
    assert rebuilt.meta["format_version"] == features.FORMAT_VERSION
    np.testing.assert_array_equal(rebuilt.mixture, expected)


# --------------------------------------------------------------------------------------- network


def test_nothing_reaches_the_network(tmp_path, monkeypatch):
    attempts = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guard(real):
        def connect(self, address):
            if self.family in (socket.AF_INET, socket.AF_INET6):
                attempts.append(address)
                raise OSError(f"network use blocked by the test: connect to {address}")
            return real(self, address)

        return connect

    def no_dns(*args, **kwargs):
        attempts.append(args[:2])
        raise OSError(f"network use blocked by the test: name lookup {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", guard(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guard(real_connect_ex))
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(OSError, match="blocked"):  # the guard itself works
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    assert attempts
    attempts.clear()

    root = corpus.generate_corpus(
        tmp_path / "corpus", config.CorpusConfig(seed=1, n_train=2, n_test=1, duration=1.0)
    )
    splits = sources.dataset_splits(root, is_wav=True)
    caches = [
        features.build_cache(splits[s], FAST, tmp_path / "features", name=s)
        for s in ("train", "valid", "test")
    ]
    res = train.train_model(
        config.ModelConfig("dae", FAST.n_bins),
        config.TrainConfig(batch_size=32, max_epochs=1, max_steps_per_epoch=2),
        FAST, *caches, tmp_path / "run", progress=False,
    )
    assert res.result["finished"]
    trained = train.load_trained(tmp_path / "run")
    x = np.asarray(caches[2].mixture[:64])
    fit = nca.fit_mapping(trained.model, trained.seed_params(0), x, LeastSquares())
    assert fit.matrix.shape == (FAST.n_bins, FAST.n_bins) and np.all(np.isfinite(fit.matrix))
    assert attempts == []


# ----------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def dae_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ckpt") / "dae"
    cache = ArrayCache(128, 0, N)
    train.train_model(config.ModelConfig("dae", N), config.TrainConfig(batch_size=32, max_epochs=1),
                      FAST, cache, cache, cache, run, progress=False)
    return run


def test_checkpoint_with_mismatching_config_names_the_field(dae_run, tmp_path):
    with pytest.raises(ValueError, match=r"n_bins: expected 32, found 16"):
        train.load_trained(dae_run, expect={"n_bins": 32})
    with pytest.raises(ValueError, match=r"name: expected 'dae_deep', found 'dae'"):
        train.load_trained(dae_run, expect={"name": "dae_deep"})
    assert train.load_trained(dae_run, expect={"name": "dae", "n_bins": N}).model.n_bins == N
    with pytest.raises(FileNotFoundError, match="not a training run"):
        train.load_trained(dae_run.parent / "nothing")
    # restoring the dae weights into a dae_deep module: refused, not silently half-restored
    with pytest.raises(ValueError, match=r"parameter structure.*encoder_1/bias: in the model, not"):
        train.load_trained(dae_run, model=models.build("dae_deep", N))
    with pytest.raises(ValueError, match=r"encoder_0/kernel: checkpoint shape \(1, 16, 16\), "
                                         r"model shape \(1, 16, 8\)"):
        train.load_trained(dae_run, model=models.build("dae", N, hidden=8))
    # the same checkpoint checked against another preset (and another depth) names each field
    stored = runs.read_json(dae_run / "config.json")
    expected = {**stored, "stft": config.to_dict(config.PRESETS["paper"]),
                "model": {**stored["model"], "name": "dae_deep"}}
    mngr = checkpoints.manager(dae_run / "checkpoints")
    try:
        abstract = train.Trainer(models.build("dae", N), config.TrainConfig()).abstract_state()
        with pytest.raises(ValueError) as err:
            checkpoints.restore(mngr, mngr.latest_step(), abstract, expected)
    finally:
        mngr.close()
    for field in ("model.name: expected 'dae_deep'", "stft.n_fft: expected 4096, found 256",
                  "stft.sample_rate: expected 44100, found 8000"):
        assert field in str(err.value)
    # resuming training into that directory with another preset is refused by name as well
    cache = ArrayCache(128, 0, N)
    with pytest.raises(ValueError, match=r"stft\.n_fft: expected 4096, found 256"):
        train.train_model(config.ModelConfig("dae", N), config.TrainConfig(batch_size=32, max_epochs=1),
                          config.PRESETS["paper"], cache, cache, cache, dae_run, progress=False)
