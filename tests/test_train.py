"""Training: golden loss, learning, checkpoints, resume, seeds vmapped, data parallelism, guards."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from fakes import array_cache

from ncajax import checkpoints, config, models, runs
from ncajax.training import _train as train
from ncajax.training import _trainer as trainer

N = 16  # fakes.array_cache's default number of bins


@pytest.fixture(scope="module")
def caches():
    return array_cache(1024, 0), array_cache(256, 1), array_cache(256, 2)


def tcfg(**kw):
    # the loop's tests pin MSE without augmentation (not the study's recipe, config.TRAIN_RECIPES["study"])
    base = dict(learning_rate=3e-3, batch_size=64, max_epochs=4, patience=10, n_seeds=2, loss="mse",
                augment_gain_db=0.0)
    return config.TrainConfig(**{**base, **kw})


def _train(tmp, caches, model="dae", **kw):
    return train.train_model(
        config.ModelConfig(model, N), tcfg(**kw), config.PRESETS["fast"], *caches, tmp, progress=False
    )


def test_golden_one_step_loss():
    """The first step's loss equals an independent NumPy forward pass with the same initial params."""
    model = models.build("dae", N)
    tx = optax.adam(1e-3)
    state = trainer.init_state(model, tx, jax.random.key(7))
    x = np.random.default_rng(0).random((8, N)).astype(np.float32)
    y = 0.5 * x
    step = jax.jit(trainer.make_train_step(model, tx, "mse"))
    _, metrics = step(state, (x, y))
    h = x.astype(np.float64)
    for kernel, bias in models.dense_layers(state.params):
        h = np.maximum(h @ np.asarray(kernel, np.float64) + np.asarray(bias, np.float64), 0)
    np.testing.assert_allclose(float(metrics["loss"]), np.mean((y - h) ** 2), rtol=1e-5)


@pytest.mark.parametrize("loss", ["mse", "l1", "gkl"])
def test_losses_closed_form(loss):
    y = jnp.array([[1.0, 2.0]])
    y_hat = jnp.array([[2.0, 2.0]])
    expected = {"mse": 0.5, "l1": 0.5, "gkl": (1 * np.log(1 / 2) - 1 + 2) / 2}[loss]
    np.testing.assert_allclose(float(trainer.loss_fn(loss)(y, y_hat)), expected, rtol=1e-5)


def test_training_lowers_validation_loss(tmp_path, caches):
    res = _train(tmp_path / "run", caches, max_epochs=5)
    history = runs.read_metrics(tmp_path / "run")
    assert len(history) == 5
    first, last = np.array(history[0]["val_loss"]), np.array(history[-1]["val_loss"])
    assert np.all(last < 0.7 * first)
    assert res.result["finished"] and len(res.result["test_mag_sdr_db"]) == 2
    assert all(d > 3 for d in res.result["test_improvement_db"])
    for name in ("config.json", "meta.json", "metrics.jsonl", "result.json"):
        assert (tmp_path / "run" / name).exists()
    meta = runs.read_json(tmp_path / "run" / "meta.json")
    assert "git_commit" in meta and meta["versions"]["jax"] == jax.__version__


def test_checkpoint_roundtrip_identical(tmp_path):
    model = models.build("dae_sf", N)
    tx = optax.adam(1e-3)
    state = trainer.init_states(model, tx, [0, 1])
    step = jax.vmap(trainer.make_train_step(model, tx, "mse"))
    x = np.random.default_rng(0).random((2, 8, N)).astype(np.float32)
    state, _ = step(state, (x, x * 0.3))  # non-trivial optimizer moments
    cfg = {"model": "dae_sf", "n_bins": N}
    mngr = checkpoints.manager(tmp_path / "ckpt")
    checkpoints.save(mngr, 1, state, cfg, metrics={"val_loss": 1.0})
    abstract = jax.eval_shape(lambda: trainer.init_states(model, tx, [0, 1]))
    restored = checkpoints.restore(mngr, 1, abstract, cfg)
    mngr.close()
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert jax.tree.structure(state) == jax.tree.structure(restored)


def test_resume_is_bit_exact(tmp_path, caches):
    full = _train(tmp_path / "full", caches, max_epochs=4)
    partial = _train(tmp_path / "part", caches, max_epochs=4)  # noqa: F841 - warm compile cache
    # interrupted after 2 epochs, then resumed
    train.train_model(config.ModelConfig("dae", N), tcfg(max_epochs=4), config.PRESETS["fast"], *caches,
                      tmp_path / "resumed", progress=False, stop_after_epochs=2)
    assert not runs.is_finished(tmp_path / "resumed")
    resumed = _train(tmp_path / "resumed", caches, max_epochs=4)
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [r["epoch"] for r in runs.read_metrics(tmp_path / "resumed")] == [1, 2, 3, 4]
    assert full.result["test_mag_sdr_db"] == resumed.result["test_mag_sdr_db"]


def test_finished_run_is_reused_and_other_config_refused(tmp_path, caches):
    first = _train(tmp_path / "run", caches, max_epochs=2)
    again = _train(tmp_path / "run", caches, max_epochs=2)
    assert again.result == first.result
    with pytest.raises(ValueError, match="different config.*max_epochs"):
        _train(tmp_path / "run", caches, max_epochs=3)


def test_vmapped_seeds_equal_single_seed_runs(tmp_path, caches):
    both = _train(tmp_path / "both", caches, n_seeds=2, max_epochs=2)
    for s in range(2):
        one = _train(tmp_path / f"one{s}", caches, n_seeds=1, seed=s, max_epochs=2)
        for a, b in zip(jax.tree.leaves(both.params), jax.tree.leaves(one.params), strict=True):
            np.testing.assert_allclose(np.asarray(a)[s], np.asarray(b)[0], rtol=1e-5, atol=1e-6)


def test_one_seed_steps_without_the_seed_axis_like_the_vmapped_step():
    """One seed on one device: `unstack` drops the size-1 seed axis and `step` runs the plain program.
    Against the size-1 vmap of the same step (the S-seed program), 10 steps with gain augmentation and
    an L1 loss agree to float32 rounding; `stack(unstack(s))` is `s` bit for bit; with two seeds both are
    the identity."""
    model = models.build("dae_sf", N)
    cfg = tcfg(n_seeds=1, seed=3, batch_size=8, loss="l1", augment_gain_db=6.0, recipe="raw")
    tr = trainer.Trainer(model, cfg)
    ref, work = tr.init(), tr.unstack(tr.init())
    assert work.step.shape == () and all(
        w.shape == r.shape[1:] for w, r in zip(jax.tree.leaves(work), jax.tree.leaves(ref), strict=True))
    rng = np.random.default_rng(0)
    for _ in range(10):
        x = rng.random((1, 8, N), np.float32)
        batch = (jnp.asarray(x), jnp.asarray(0.5 * x))
        ref, m_ref = tr.step(ref, batch)
        work, m_work = tr.step(work, batch)
        assert m_work["loss"].shape == (1,) and work.step.shape == ()
        np.testing.assert_allclose(np.asarray(m_work["loss"]), np.asarray(m_ref["loss"]), rtol=1e-5)
    back = tr.stack(work)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(ref), strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    state = tr.init()
    kept = [np.asarray(v).copy() for v in jax.tree.leaves(state)]
    for a, b in zip(jax.tree.leaves(tr.stack(tr.unstack(state))), kept, strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    two = trainer.Trainer(model, tcfg(n_seeds=2, batch_size=8))
    both = two.init()
    assert two.unstack(both) is both and two.stack(both) is both
    with pytest.raises(ValueError, match="no seed axis.*2 seed"):
        two.step(tr.unstack(tr.init()), (jnp.zeros((2, 8, N)), jnp.zeros((2, 8, N))))


def test_nan_guard_stops_with_clear_message(tmp_path):
    """NaN (and Inf: the same isfinite guard) features stop training with both fixes named."""
    bad = array_cache(256, 0)
    bad.mixture[3, 2] = np.nan  # past the from_arrays check, as a corrupted cache would be
    with pytest.raises(FloatingPointError, match="non-finite.*learning rate.*NaN/Inf"):
        train.train_model(config.ModelConfig("dae", N), tcfg(max_epochs=2, n_seeds=1),
                          config.PRESETS["fast"], bad, bad, bad, tmp_path / "nan", progress=False)


@pytest.mark.slow  # two training processes
def test_data_parallel_matches_single_device(tmp_path):
    """4 forced CPU devices: batch sharded over a Mesh, params replicated; loss curve as on one device."""
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import jax
        from test_train import array_cache, tcfg
        from ncajax import config, runs, training as train
        caches = array_cache(1024, 0), array_cache(256, 1), array_cache(256, 2)
        assert jax.device_count() == int(sys.argv[2]), jax.devices()
        train.train_model(config.ModelConfig("dae_deep", {N}), tcfg(max_epochs=3), config.PRESETS["fast"],
                          *caches, sys.argv[1], progress=False)
        print(json.dumps([r["train_loss"] + r["val_loss"] for r in runs.read_metrics(sys.argv[1])]))
    """)
    curves = []
    for devices in (1, 4):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
               "JAX_PLATFORMS": "cpu"}
        out = subprocess.run([sys.executable, "-c", script, str(tmp_path / f"d{devices}"), str(devices)],
                             capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        curves.append(np.array(json.loads(out.stdout.strip().splitlines()[-1])))
    np.testing.assert_allclose(curves[0], curves[1], rtol=1e-4)


def test_seeds_stop_early_exactly_as_alone(tmp_path):
    """Each vmapped seed freezes when its own early stopping triggers (patience 1, noisy steps)."""
    caches = array_cache(1024, 0), array_cache(256, 1), array_cache(256, 2)
    kw = dict(learning_rate=0.05, batch_size=16, max_epochs=10, patience=2, recipe="raw")
    both = _train(tmp_path / "both", caches, n_seeds=2, **kw)
    stopped = [r["stopped"] for r in runs.read_metrics(tmp_path / "both")]
    assert any(a != b for a, b in stopped), "the seeds should stop at different epochs here"
    for s in range(2):
        one = _train(tmp_path / f"one{s}", caches, n_seeds=1, seed=s, **kw)
        np.testing.assert_allclose(both.result["best_val_loss"][s], one.result["best_val_loss"][0],
                                   rtol=1e-5)
        for a, b in zip(jax.tree.leaves(both.params), jax.tree.leaves(one.params), strict=True):
            np.testing.assert_allclose(np.asarray(a)[s], np.asarray(b)[0], rtol=1e-4, atol=1e-5)


def test_later_stages_refuse_unfinished_training(tmp_path, caches):
    from ncajax.study import _pipeline as pipeline

    train.train_model(config.ModelConfig("dae", N), tcfg(max_epochs=3), config.PRESETS["fast"], *caches,
                      tmp_path / "dae", progress=False, stop_after_epochs=1)
    with pytest.raises(ValueError, match="has not finished"):
        pipeline.load_separators(tmp_path, ("dae",))


def test_standardised_recipe_stores_scaling_and_hands_out_folded_params(tmp_path, caches):
    from ncajax.data._features import per_bin_rms

    res = _train(tmp_path / "run", caches, model="dae_sf", max_epochs=2)
    cfg = runs.read_json(tmp_path / "run" / "config.json")
    assert cfg["train"]["recipe"] == "standardised" and cfg["normalisation"] == train.PER_BIN_RMS
    sc = runs.read_json(tmp_path / "run" / train.SCALING_FILE)
    s, t = per_bin_rms(caches[0])
    np.testing.assert_array_equal(np.asarray(sc["input_rms"], np.float32), s)
    np.testing.assert_array_equal(np.asarray(sc["target_rms"], np.float32), t)
    # the folded params on raw magnitudes score what the training-space params scored
    np.testing.assert_allclose(res.result["test_mag_sdr_db_folded"], res.result["test_mag_sdr_db"],
                               atol=1e-3)
    loaded = train.load_trained(tmp_path / "run")
    for a, b in zip(jax.tree.leaves(res.params), jax.tree.leaves(loaded.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    mngr = checkpoints.manager(tmp_path / "run" / "checkpoints")
    raw_state = checkpoints.restore(mngr, mngr.latest_step(), loaded_abstract(loaded), cfg)
    mngr.close()
    want = models.fold_scaling(loaded.model, raw_state.best_params, s, t)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(loaded.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # reused as finished: the same folded params again
    again = _train(tmp_path / "run", caches, model="dae_sf", max_epochs=2)
    for a, b in zip(jax.tree.leaves(res.params), jax.tree.leaves(again.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def loaded_abstract(trained):
    return train.Trainer(trained.model, trained.train_cfg).abstract_state()


def test_raw_recipe_keeps_raw_training(tmp_path, caches):
    res = _train(tmp_path / "run", caches, max_epochs=1, recipe="raw")
    cfg = runs.read_json(tmp_path / "run" / "config.json")
    assert cfg["normalisation"] is None and not (tmp_path / "run" / train.SCALING_FILE).exists()
    assert "test_mag_sdr_db_folded" not in res.result


def test_standardised_loss_is_in_scaled_units():
    """dae: the training loss is MSE between y / t and model(x / s); dae_sf: (x / t) * m(x / s)."""
    rng = np.random.default_rng(0)
    x = rng.random((8, N)).astype(np.float32)
    y = (0.4 * x).astype(np.float32)
    s = rng.uniform(0.2, 2.0, N).astype(np.float32)
    t = rng.uniform(0.2, 2.0, N).astype(np.float32)
    tx = optax.adam(1e-3)
    for name in ("dae", "dae_sf"):
        model = models.build(name, N)
        state = trainer.init_state(model, tx, jax.random.key(1))
        step = jax.jit(trainer.make_train_step(model, tx, "mse", scaling=(s, t)))
        _, metrics = step(state, (x, y))
        if name == "dae":
            pred = model.apply(state.params, x / s)
        else:
            pred = (x / t) * model.apply(state.params, x / s, method="mask")
        np.testing.assert_allclose(float(metrics["loss"]), float(jnp.mean((y / t - pred) ** 2)), rtol=1e-5)


def test_gain_augmentation_is_a_pure_function_of_seed_and_step():
    x = jnp.ones((64, N))
    a = trainer.augment_gain(x, 2 * x, 3, 10, 12.0)
    b = trainer.augment_gain(x, 2 * x, 3, 10, 12.0)
    c = trainer.augment_gain(x, 2 * x, 3, 11, 12.0)
    d = trainer.augment_gain(x, 2 * x, 4, 10, 12.0)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[0], d[0])
    db = 20 * np.log10(np.asarray(a[0][:, 0]))
    assert np.all(np.abs(db) <= 12.0 + 1e-4) and db.std() > 3  # spread over the range
    np.testing.assert_allclose(np.asarray(a[1]), 2 * np.asarray(a[0]), rtol=1e-6)  # same gain on y
    assert np.all(np.asarray(a[0]) == np.asarray(a[0])[:, :1])  # one gain per example


def test_resume_is_bit_exact_with_gain_augmentation(tmp_path, caches):
    kw = dict(max_epochs=3, augment_gain_db=12.0, loss="l1")
    full = _train(tmp_path / "full", caches, **kw)
    train.train_model(config.ModelConfig("dae", N), tcfg(**kw), config.PRESETS["fast"], *caches,
                      tmp_path / "resumed", progress=False, stop_after_epochs=1)
    resumed = _train(tmp_path / "resumed", caches, **kw)
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    plain = _train(tmp_path / "plain", caches, max_epochs=3, loss="l1")
    assert full.result["test_loss"] != plain.result["test_loss"]  # the augmentation did something


@pytest.mark.parametrize("kw,match", [
    (dict(augment_gain_db=50.0), r"augment_gain_db must be between 0 and 40 dB.*augment_gain_db=12.0"),
    (dict(augment_gain_db=-1.0), r"augment_gain_db"),
    (dict(recipe="zscore"), r"unknown recipe 'zscore'.*recipe='raw'"),
])
def test_recipe_options_are_checked(kw, match):
    with pytest.raises(ValueError, match=match):
        config.TrainConfig(**kw)


@pytest.mark.parametrize("model", ["dae", "dae_sf"])
def test_per_model_loss_is_recorded_resolved_and_trained_with(tmp_path, caches, model):
    """TrainConfig(loss="per_model"): the run's config.json records the resolved loss, and the run equals
    one trained with that loss written out (same params, bit for bit)."""
    res = _train(tmp_path / "auto", caches, model=model, loss="per_model", max_epochs=1)
    recorded = json.loads((tmp_path / "auto" / "config.json").read_text())["train"]["loss"]
    assert recorded == config.MODEL_LOSSES[model]
    explicit = _train(tmp_path / "explicit", caches, model=model, loss=recorded, max_epochs=1)
    for a, b in zip(jax.tree.leaves(res.params), jax.tree.leaves(explicit.params), strict=True):
        np.testing.assert_array_equal(a, b)
