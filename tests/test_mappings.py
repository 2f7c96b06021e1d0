"""The mapping stage: every setting for every separator, held-out fidelity, resume, callables."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ncajax import mappings, models, nca, runs
from ncajax.config import STFTConfig

N = 16
STFT = STFTConfig(sample_rate=8000, n_fft=30, win_length=30, hop_length=15)  # N = 16


class TinyTest:
    """A test-split stand-in: 4 tracks of 40 frames, magnitudes >= 0."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.mixture = rng.random((160, N)).astype(np.float32)
        self.track_names = [f"t{i}" for i in range(4)]
        self.offsets = np.array([0, 40, 80, 120, 160])


SETTINGS = (
    mappings.FitSetting("nca_fast", "nca", 30, 1e-2, "uniform"),
    mappings.FitSetting("student_fast", "student", 30, 1e-2),
    mappings.FitSetting("lstsq", "lstsq"),
    mappings.FitSetting("jacobian", "jacobian"),
)
CFG = mappings.MappingConfig(settings=SETTINGS, per_track_settings=("lstsq",), n_fit_frames=64,
                             n_heldout_frames=32, frames_per_track=20, heldout_tracks=1,
                             jacobian_frames=16)


def _dae_sf_separator(n_seeds=2):
    model = models.build("dae_sf", N)
    params = jax.vmap(lambda k: models.init_params(model, k))(
        jax.random.split(jax.random.key(0), n_seeds))
    params = jax.tree.map(lambda a: a + 0.05, params)  # open masks
    return mappings.Separator(model, params, n_seeds)


def test_select_frames_holds_out_last_tracks_and_is_deterministic():
    cache = TinyTest()
    a, b = mappings.select_frames(cache, CFG), mappings.select_frames(cache, CFG)
    np.testing.assert_array_equal(a["fit"], b["fit"])
    assert list(a["heldout_tracks"]) == ["t3"] and list(a["fit_tracks"]) == ["t0", "t1", "t2"]
    held_rows = {tuple(r) for r in cache.mixture[120:160]}
    assert all(tuple(r) in held_rows for r in a["heldout"])
    assert not any(tuple(r) in held_rows for r in a["fit"])
    assert a["per_track"].shape == (3, 20, N)


def test_stage_writes_every_fit_and_matches_direct_fits(tmp_path):
    sep = _dae_sf_separator()
    result = mappings.run_stage({"dae_sf": sep}, TinyTest(), STFT, tmp_path, CFG, progress=False)
    kinds = {(r["setting"], r["kind"]) for r in result["records"]}
    assert kinds == {(s.name, "pooled") for s in SETTINGS} | {("lstsq", "per_track"), ("-", "model")}
    frames = mappings.select_frames(TinyTest(), CFG)
    stored = np.load(tmp_path / "matrices" / "dae_sf__lstsq.npz")["matrix"]
    for s in range(2):  # each seed's matrix equals a direct single fit on the same frames
        f = nca.fit_mapping(sep.model, jax.tree.map(lambda a, s=s: a[s], sep.params), frames["fit"],
                            method="lstsq")
        np.testing.assert_allclose(stored[s], f.matrix, rtol=1e-4, atol=1e-5)
    rec = next(r for r in result["records"] if r["setting"] == "lstsq" and r["kind"] == "pooled")
    y_held = np.asarray(sep.model.apply(jax.tree.map(lambda a: a[0], sep.params), frames["heldout"]))
    expected = np.abs(y_held - frames["heldout"] @ stored[0].T).sum() / np.abs(y_held).sum()
    np.testing.assert_allclose(rec["fidelity_heldout"][0], expected, rtol=1e-4)
    assert len(rec["metrics"]) == 2 and 0 <= rec["metrics"][0]["weighted_diagonal_energy_ratio"] <= 1
    jac = next(r for r in result["records"] if r["setting"] == "jacobian" and r["kind"] == "pooled")
    assert set(jac["part_metrics"]) == {"mask", "mask_jacobian"}
    assert np.load(tmp_path / "matrices" / "dae_sf__nca_fast.npz")["losses"].shape == (2, 30)
    model_rec = next(r for r in result["records"] if r["kind"] == "model")
    assert len(model_rec["dead_units"]) == 2 and len(model_rec["linearity"]) == 2
    assert runs.is_finished(tmp_path)


def test_stage_resumes_without_refitting(tmp_path, monkeypatch):
    sep = _dae_sf_separator(1)
    cfg = mappings.MappingConfig(settings=SETTINGS[2:], per_track_settings=(), n_fit_frames=64,
                                 n_heldout_frames=32, heldout_tracks=1, jacobian_frames=16)
    first = mappings.run_stage({"dae_sf": sep}, TinyTest(), STFT, tmp_path, cfg, progress=False)
    # an interruption after the first fit: drop result.json and all but one metrics line
    (tmp_path / "result.json").unlink()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    (tmp_path / "metrics.jsonl").write_text(lines[0] + "\n")
    calls = []
    real = mappings._fit
    monkeypatch.setattr(mappings, "_fit", lambda *a, **k: calls.append(a[1].name) or real(*a, **k))
    again = mappings.run_stage({"dae_sf": sep}, TinyTest(), STFT, tmp_path, cfg, progress=False)
    assert calls == ["jacobian"]  # lstsq was done already
    assert json.dumps(first["records"][0], sort_keys=True) == json.dumps(again["records"][0], sort_keys=True)


def test_callable_gets_not_applicable_nca(tmp_path):
    # a callable written for (nb_frames, nb_bins) batches only (axis=1), as fit_mapping calls it
    sep = mappings.Separator(lambda x: jnp.maximum(x - 0.5 * x.mean(axis=1, keepdims=True), 0.0),
                             None, 1)
    result = mappings.run_stage({"f": sep}, TinyTest(), STFT, tmp_path, CFG, progress=False)
    na = [r for r in result["records"] if r["kind"] == "not_applicable"]
    assert [r["setting"] for r in na] == ["nca_fast"] and "dense layers" in na[0]["not_applicable"]
    pooled = {r["setting"] for r in result["records"] if r["kind"] == "pooled"}
    assert pooled == {"student_fast", "lstsq", "jacobian"}


def test_separator_checks_its_seed_axis():
    sep = _dae_sf_separator(1)
    with pytest.raises(ValueError, match="leading seed axis of n_seeds=3"):
        mappings.Separator(sep.model, sep.params, 3)
    with pytest.raises(ValueError, match="n_seeds=1"):
        mappings.Separator(lambda x: x, None, 2)


def test_config_validation():
    with pytest.raises(ValueError, match="unique"):
        mappings.MappingConfig(settings=(SETTINGS[2], SETTINGS[2]), per_track_settings=())
    with pytest.raises(ValueError, match="not among"):
        mappings.MappingConfig(settings=SETTINGS[2:], per_track_settings=("nca_fast",))


def test_too_few_test_tracks_split_in_time():
    cache = TinyTest()
    cache.track_names, cache.offsets = ["only"], np.array([0, 40])
    cfg = mappings.MappingConfig(settings=SETTINGS, per_track_settings=(), n_fit_frames=100,
                                 n_heldout_frames=100, heldout_tracks=2)
    f = mappings.select_frames(cache, cfg)
    np.testing.assert_array_equal(f["fit"], cache.mixture[:28])  # all of the first 70 %
    np.testing.assert_array_equal(f["heldout"], cache.mixture[28:40])
    assert list(f["heldout_tracks"]) == ["only [70-100%]"]
    cache.offsets = np.array([0, 2])
    with pytest.raises(ValueError, match="too short to split in time"):
        mappings.select_frames(cache, cfg)
