"""The worked example experiments/map_your_model.py: a custom flax module and a bare callable mapped
end to end on a tiny corpus, and the callable API of `fit_mapping` against the module API."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ncajax import models
from ncajax.config import METHODS, CorpusConfig
from ncajax.nca import LeastSquares, MeanJacobian
from ncajax.nca import _couplings as nca
from ncajax.nca import _stage as mappings
from ncajax.study import _pipeline as pipeline

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "map_your_model.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("map_your_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # flax dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _frames(key, n_frames, n_bins):
    return jnp.abs(jax.random.normal(key, (n_frames, n_bins)))


def test_gelu_mask_net_forward_and_layers(example):
    n, h = 6, 4
    model = example.GeluMaskNet(n_bins=n, hidden=h)
    params = models.init_params(model, jax.random.key(0))
    x = _frames(jax.random.key(1), 5, n)
    p = params["params"]
    w1, b1 = p["encoder_0"]["kernel"], p["encoder_0"]["bias"]
    w2, b2 = p["decoder"]["kernel"], p["decoder"]["bias"]
    # independent NumPy forward pass: tanh-approximate GELU as flax's default, logistic sigmoid
    xn = np.asarray(x, np.float64)
    z = xn @ np.asarray(w1, np.float64) + np.asarray(b1, np.float64)
    g = 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))
    m = 1 / (1 + np.exp(-(g @ np.asarray(w2, np.float64) + np.asarray(b2, np.float64))))
    np.testing.assert_allclose(np.asarray(model.apply(params, x)), xn * m, rtol=1e-5, atol=1e-6)
    # NCA can list the layers in forward order: N -> H -> N
    layers = models.dense_layers(params)
    assert [k.shape for k, _ in layers] == [(n, h), (h, n)]


@pytest.mark.parametrize("estimator", [LeastSquares(), MeanJacobian()])
def test_callable_api_equals_module_api(example, estimator):
    n = 8
    model = example.GeluMaskNet(n_bins=n, hidden=n)
    params = models.init_params(model, jax.random.key(2))
    x = _frames(jax.random.key(3), 40, n)
    via_module = nca.fit_mapping(model, params, x, estimator)
    via_callable = nca.fit_mapping(lambda v: model.apply(params, v), None, x, estimator)
    np.testing.assert_allclose(via_callable.matrix, via_module.matrix, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(via_callable.rel_l1_error, via_module.rel_l1_error, rtol=1e-5)
    if isinstance(estimator, MeanJacobian):
        np.testing.assert_allclose(via_callable.local_spread, via_module.local_spread, rtol=1e-5)


def test_spectral_subtraction_jacobian_closed_form(example):
    # On every frame all outputs are active (x_i > 0.5 mean x), so y = x (I - 0.5/N 1 1^T)^T exactly.
    n = 5
    x = 1.0 + 0.1 * _frames(jax.random.key(4), 30, n)
    fit = nca.fit_mapping(example.spectral_subtraction, None, x, MeanJacobian())
    np.testing.assert_allclose(fit.matrix, np.eye(n) - 0.5 / n, atol=1e-6)
    assert fit.local_spread == pytest.approx(0.0, abs=1e-6)


def test_nca_refuses_the_bare_callable(example):
    message = example.nca_refusal(np.ones((4, 3), np.float32))
    assert "bare callable" in message and "LeastSquares()" in message


def test_main_tiny_corpus(example, tmp_path, monkeypatch):
    monkeypatch.setenv("NCAJAX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    summary = example.main([
        "--out", str(out), "--corpus-tracks", "3", "2", "--corpus-seconds", "2", "--epochs", "1",
        "--fit-steps", "20", "--fit-frames", "160", "--seeds", "1", "--settings", "one-per-method",
        "--no-figures", "--no-progress",
    ])  # figures are drawn by ncajax.plots (tested there); the default run draws them
    assert (tmp_path / "cache" / "corpus").is_dir()  # the cache was isolated
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert json.loads((out / "train" / "gelu_mask" / "result.json").read_text())["finished"]

    module = json.loads((out / "mappings" / "result.json").read_text())
    called = json.loads((out / "callable" / "mappings" / "result.json").read_text())
    pooled = {(r["model"], r["method"]) for r in module["records"] + called["records"]
              if r["kind"] == "pooled"}
    for method in METHODS:
        assert ("gelu_mask", method) in pooled
    for method in ("student", "lstsq", "jacobian"):
        assert ("spectral_subtraction", method) in pooled
    assert ("spectral_subtraction", "nca") not in pooled
    assert "nca" in summary["not_applicable"]["spectral_subtraction"]
    assert "bare callable" in summary["not_applicable"]["spectral_subtraction"]["nca"]

    for model_name, settings in summary["models"].items():
        for setting, row in settings.items():
            assert np.isfinite(row["rel_l1_fit"]) and np.isfinite(row["rel_l1_heldout"]), (
                model_name, setting)
            assert (out / ("mappings" if model_name == "gelu_mask" else "callable/mappings")
                    / "matrices" / f"{model_name}__{setting}.npz").exists()
    # the stored lstsq matrix of the callable reproduces its recorded relative L1 errors: on the stage's
    # fit frames (training songs) and on each held-out test song
    module_cfg, cfg = example.mapping_configs(
        example.parse(["--fit-frames", "160", "--settings", "one-per-method"]))
    assert {s.method for s in cfg.settings} == {"student", "lstsq", "jacobian"}
    assert {s.method for s in module_cfg.settings} == set(METHODS)
    assert cfg.n_fit_frames == module_cfg.n_fit_frames == 160 and cfg.heldout_frames_per_song == 160
    data = pipeline.prepare_data(
        corpus_cfg=CorpusConfig(sample_rate=8000, n_train=3, n_test=2, duration=2.0), progress=False)
    frames = mappings.select_frames(data.train, data.test, cfg)
    assert set(frames["fit_songs"]) <= set(data.train.track_names)
    assert frames["heldout_songs"] == list(data.test.track_names) == called["heldout_songs"]
    matrix = np.load(out / "callable" / "mappings" / "matrices" / "spectral_subtraction__lstsq.npz")["matrix"][0]

    def rel_l1(x):
        y = np.asarray(example.spectral_subtraction(x), np.float64)
        return np.abs(y - x @ matrix.T).sum() / np.abs(y).sum()

    row = summary["models"]["spectral_subtraction"]["lstsq"]
    assert rel_l1(frames["fit"]) == pytest.approx(row["rel_l1_fit"], rel=1e-4)
    held = [rel_l1(x) for x in frames["heldout"]]
    rec = next(r for r in called["records"] if r["model"] == "spectral_subtraction" and r["setting"] == "lstsq")
    np.testing.assert_allclose(rec["rel_l1_heldout"][0], held, rtol=1e-4)
    assert row["rel_l1_heldout"] == pytest.approx(np.mean(held), rel=1e-4)
    # both baselines are there for both models, per seed and test song
    for stage, model_name, n_seeds in ((module, "gelu_mask", 1), (called, "spectral_subtraction", 1)):
        base = {r["setting"]: r for r in stage["records"] if r["kind"] == "baseline" and r["model"] == model_name}
        assert set(base) == {"zero", "per_bin_gain"}
        assert np.shape(base["per_bin_gain"]["rel_l1_heldout"]) == (n_seeds, 2)
        np.testing.assert_allclose(base["zero"]["rel_l1_heldout"], 1.0)
