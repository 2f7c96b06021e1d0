"""The mapping stage: fitted on frames pooled over the training songs, judged per unseen test song.

References are independent of the stage: direct `nca.fit_mapping` calls on the same frames and init
seed, NumPy recomputations of the held-out errors, a per-bin `np.linalg.lstsq` loop for the per-bin
gain baseline and `analysis.weighted_diagonal_energy_ratio` with each song's own input energy.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ncajax import config, models, runs
from ncajax.config import STFTConfig
from ncajax.nca import NCA, LeastSquares, MeanJacobian, Student
from ncajax.nca import _couplings as nca
from ncajax.nca import _stage as mappings
from ncajax.nca import _structure as analysis

N = 16
STFT = STFTConfig(sample_rate=8000, n_fft=30, win_length=30, hop_length=15)  # N = 16


class TinyCache:
    """A feature-cache stand-in: songs of the given frame counts, magnitudes >= 0, every row unique."""

    def __init__(self, seed, lengths, prefix):
        rng = np.random.default_rng(seed)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.mixture = rng.random((int(self.offsets[-1]), N)).astype(np.float32)
        self.track_names = [f"{prefix}{i}" for i in range(len(lengths))]


def _train():
    return TinyCache(0, [40, 40, 40, 40, 40], "train")


def _test():
    return TinyCache(1, [30, 30, 30], "test")


SETTINGS = (
    NCA(30, 1e-2, "xavier_normal", "input", name="nca_fast"),
    Student(30, 1e-2, "xavier_normal", name="student_fast"),
    LeastSquares(name="lstsq"),
    MeanJacobian(name="jacobian"),
)
# seed 3: the init keys of seed s are 3 + s, distinguishable from a fit that ignores cfg.seed
CFG = mappings.MappingConfig(settings=SETTINGS, n_fit_frames=64, heldout_frames_per_song=20,
                             jacobian_frames=16, linearity_frames=16, linearity_seeds=1, seed=3)
MODELS = ("dae", "dae_sf")
S = 2


def _separator(name, n_seeds=S):
    model = models.build(name, N)
    params = jax.vmap(lambda k: models.init_params(model, k))(
        jax.random.split(jax.random.key(0), n_seeds))
    params = jax.tree.map(lambda a: a + 0.05, params)  # open the ReLU gates
    return mappings.Separator(model, params, n_seeds)


def _rows(a):
    return {tuple(r) for r in np.asarray(a)}


def _rel_l1(y, y_hat):
    y, y_hat = np.asarray(y, np.float64), np.asarray(y_hat, np.float64)
    return np.abs(y - y_hat).sum() / np.abs(y).sum()


# ------------------------------------------------------------------------------------------------
# select_frames


def test_select_frames_fit_from_train_and_heldout_per_test_song():
    train = _train()
    test = TinyCache(1, [30, 0, 12, 30], "test")  # an empty song and one shorter than 20 frames
    a = mappings.select_frames(train, test, CFG)
    b = mappings.select_frames(_train(), TinyCache(1, [30, 0, 12, 30], "test"), CFG)
    # deterministic: a pure function of cfg.seed and the caches
    np.testing.assert_array_equal(a["fit"], b["fit"])
    for x, y in zip(a["heldout"], b["heldout"], strict=True):
        np.testing.assert_array_equal(x, y)

    # fit frames: n_fit_frames distinct rows of the training split, none of the test split
    assert a["fit"].shape == (64, N)
    train_index = {tuple(r): i for i, r in enumerate(train.mixture)}
    assert all(tuple(r) in train_index for r in a["fit"])
    assert not _rows(a["fit"]) & _rows(test.mixture)
    assert len(_rows(a["fit"])) == 64
    songs = {train.track_names[np.searchsorted(train.offsets, train_index[tuple(r)], side="right") - 1]
             for r in a["fit"]}
    assert sorted(a["fit_songs"]) == sorted(songs)

    # held-out frames: per non-empty test song, only from that song, min(20, length) distinct rows
    assert a["heldout_songs"] == ["test0", "test2", "test3"]
    for x, name, want in zip(a["heldout"], a["heldout_songs"], (20, 12, 20), strict=True):
        i = test.track_names.index(name)
        song = _rows(test.mixture[test.offsets[i]:test.offsets[i + 1]])
        assert x.shape == (want, N) and len(_rows(x)) == want
        assert _rows(x) <= song
    # a different seed draws different frames
    other = mappings.select_frames(train, test, mappings.MappingConfig(settings=SETTINGS, n_fit_frames=64,
                                                                       heldout_frames_per_song=20, seed=4))
    assert _rows(other["fit"]) != _rows(a["fit"])


def test_select_frames_takes_everything_from_small_splits_and_rejects_empty_ones():
    train, test = TinyCache(0, [10, 5], "a"), TinyCache(1, [6], "b")
    cfg = mappings.MappingConfig(settings=SETTINGS, n_fit_frames=100, heldout_frames_per_song=100)
    f = mappings.select_frames(train, test, cfg)
    np.testing.assert_array_equal(f["fit"], train.mixture)  # all 15, in order
    np.testing.assert_array_equal(f["heldout"][0], test.mixture)
    assert f["fit_songs"] == ["a0", "a1"] and f["heldout_songs"] == ["b0"]
    with pytest.raises(ValueError, match="test split has no frames"):
        mappings.select_frames(train, TinyCache(1, [0, 0], "b"), cfg)
    with pytest.raises(ValueError, match="fewer than 2 frames"):
        mappings.select_frames(TinyCache(0, [1], "a"), test, cfg)


# ------------------------------------------------------------------------------------------------
# per_bin_gain


def test_per_bin_gain_equals_a_per_bin_least_squares_loop():
    rng = np.random.default_rng(5)
    x = rng.random((3, 50, 7)).astype(np.float32)
    x[1, :, 4] = 0.0  # a bin silent on every frame of fit 1 -> gain 0
    y = (x * rng.random(7) + 0.3 * rng.random((3, 50, 7))).astype(np.float32)
    got = np.asarray(mappings.per_bin_gain(x, y))
    assert got.shape == (3, 7)
    for k in range(3):
        for i in range(7):
            xi = x[k, :, i:i + 1].astype(np.float64)
            want = 0.0 if not xi.any() else np.linalg.lstsq(xi, y[k, :, i].astype(np.float64), rcond=None)[0][0]
            assert got[k, i] == pytest.approx(want, rel=1e-5, abs=1e-7), (k, i)
    np.testing.assert_allclose(np.asarray(mappings.per_bin_gain(x[0], y[0])), got[0], rtol=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        mappings.per_bin_gain(x[0], y[0, :, :6])


# ------------------------------------------------------------------------------------------------
# the stage


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    out = tmp_path_factory.mktemp("stage")
    seps = {name: _separator(name) for name in MODELS}
    result = mappings.run_stage(seps, _train(), _test(), STFT, out, CFG, progress=False)
    return {"out": out, "seps": seps, "result": result,
            "frames": mappings.select_frames(_train(), _test(), CFG)}


def _record(result, model, setting):
    (rec,) = [r for r in result["records"] if r["model"] == model and r["setting"] == setting]
    return rec


def _teacher(sep, s, x):
    with jax.default_matmul_precision("highest"):  # full float32, as the stage (a GPU would use TF32)
        return np.asarray(sep.model.apply(sep.seed_params(s), jnp.asarray(x)), np.float64)


def test_stage_records_every_model_setting_and_both_baselines(stage):
    result = stage["result"]
    keys = [(r["model"], r["setting"], r["kind"]) for r in result["records"]]
    want = set()
    for m in MODELS:
        want |= {(m, "zero", "baseline"), (m, "per_bin_gain", "baseline"), (m, "-", "model")}
        want |= {(m, s.name, "pooled") for s in SETTINGS}
    assert len(keys) == len(set(keys)) and set(keys) == want
    assert result["fit_songs"] == stage["frames"]["fit_songs"]
    assert result["heldout_songs"] == ["test0", "test1", "test2"]
    assert result["n_fit_frames"] == 64 and result["heldout_frames"] == [20, 20, 20]
    for r in result["records"]:
        if r["kind"] in ("baseline", "pooled"):
            for key in ("rel_l1_heldout", "rel_l1_heldout_clipped"):
                assert np.shape(r[key]) == (S, 3), (r["model"], r["setting"], key)
        if r["kind"] == "pooled":
            assert {k: np.shape(v) for k, v in r["metrics"].items()} == {k: (S, 3) for k in r["metrics"]}
            assert (stage["out"] / "matrices" / f"{r['model']}__{r['setting']}.npz").exists()
    for m in MODELS:  # linearity for the first linearity_seeds (1) seeds only, dead units for every seed
        model_rec = _record(result, m, "-")
        assert len(model_rec["linearity"]) == 1 and len(model_rec["dead_units"]) == S
    jac = _record(result, "dae_sf", "jacobian")
    assert set(jac["part_metrics"]) == {"mask", "mask_jacobian"}
    assert np.load(stage["out"] / "matrices" / "dae_sf__nca_fast.npz")["losses"].shape == (S, 30)
    assert runs.is_finished(stage["out"])
    assert json.loads((stage["out"] / "result.json").read_text())["records"] == json.loads(
        json.dumps(result["records"]))


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_stage_matrix_equals_a_direct_fit_with_seed_cfg_seed_plus_s(stage, model_name, setting):
    sep = stage["seps"][model_name]
    x = stage["frames"]["fit"]
    if setting.method == "jacobian":
        x = x[:CFG.jacobian_frames]
    stored = np.load(stage["out"] / "matrices" / f"{model_name}__{setting.name}.npz")["matrix"]
    assert stored.shape == (S, N, N)
    rec = _record(stage["result"], model_name, setting.name)
    iterative = setting.method in ("nca", "student")
    assert rec["fit_seeds"] == ([CFG.seed + s for s in range(S)] if iterative else None)
    for s in range(S):
        direct = nca.fit_mapping(sep.model, sep.seed_params(s), x, setting, seed=CFG.seed + s)
        np.testing.assert_allclose(stored[s], direct.matrix, rtol=1e-4, atol=1e-5)
        assert rec["rel_l1_fit"][s] == pytest.approx(float(direct.rel_l1_error), rel=1e-4, abs=1e-6)
        if iterative:  # the seed matters: the default seed 0 is another fit
            other = nca.fit_mapping(sep.model, sep.seed_params(s), x, setting, seed=0)
            assert not np.allclose(stored[s], other.matrix, rtol=1e-4, atol=1e-5)
            assert rec["converged"][s] == bool(direct.converged)
        if setting.method == "jacobian":
            assert rec["local_spread"][s] == pytest.approx(float(direct.local_spread), rel=1e-4)


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("setting", [s.name for s in SETTINGS])
def test_heldout_errors_per_seed_and_song_match_numpy(stage, model_name, setting):
    sep = stage["seps"][model_name]
    matrix = np.load(stage["out"] / "matrices" / f"{model_name}__{setting}.npz")["matrix"].astype(np.float64)
    rec = _record(stage["result"], model_name, setting)
    for s in range(S):
        for t, x in enumerate(stage["frames"]["heldout"]):
            y = _teacher(sep, s, x)
            y_hat = np.asarray(x, np.float64) @ matrix[s].T
            assert rec["rel_l1_heldout"][s][t] == pytest.approx(_rel_l1(y, y_hat), rel=1e-4), (s, t)
            assert rec["rel_l1_heldout_clipped"][s][t] == pytest.approx(
                _rel_l1(y, np.maximum(y_hat, 0.0)), rel=1e-4), (s, t)
            assert rec["rel_l1_heldout_clipped"][s][t] <= rec["rel_l1_heldout"][s][t] + 1e-6  # y >= 0
            # the functional-diagonality tables: C, diag(C), silence on the same frames, clipped at 0
            fn = rec["functional"]
            assert fn["err_full"][s][t] == pytest.approx(_rel_l1(y, np.maximum(y_hat, 0.0)), rel=1e-4)
            assert fn["err_full_raw"][s][t] == pytest.approx(_rel_l1(y, y_hat), rel=1e-4)
            d_hat = np.maximum(np.asarray(x, np.float64) * np.diag(matrix[s]), 0.0)
            assert fn["err_diag"][s][t] == pytest.approx(_rel_l1(y, d_hat), rel=1e-4)
            assert fn["err_zero"][s][t] == 1.0
            if fn["err_full"][s][t] < 1.0:
                assert fn["keep_diag"][s][t] == pytest.approx(
                    (1.0 - fn["err_diag"][s][t]) / (1.0 - fn["err_full"][s][t]), rel=1e-6)


def _weighted_median(r, w):
    """A plain loop: the smallest r_k whose cumulative weight (in sorted order) reaches half the total."""
    pairs = sorted(zip(r, w, strict=True))
    total, acc = sum(w), 0.0
    for value, weight in pairs:
        acc += weight
        if acc >= total / 2:
            return value
    return 0.0


@pytest.mark.parametrize("model_name", MODELS)
def test_baselines_per_bin_gain_and_zero(stage, model_name):
    sep = stage["seps"][model_name]
    x = np.asarray(stage["frames"]["fit"], np.float64)
    gain = np.load(stage["out"] / "matrices" / f"{model_name}__per_bin_gain.npz")["gain"]
    assert gain.shape == (S, N)
    rec, zero = _record(stage["result"], model_name, "per_bin_gain"), _record(stage["result"], model_name, "zero")
    for s in range(S):
        y = _teacher(sep, s, x)
        ls = np.array([np.linalg.lstsq(x[:, i:i + 1], y[:, i], rcond=None)[0][0] for i in range(N)])
        l1 = np.array([_weighted_median(y[:, i] / x[:, i], x[:, i]) for i in range(N)])
        err = {"least_squares": _rel_l1(y, np.maximum(x * ls, 0)), "l1": _rel_l1(y, np.maximum(x * l1, 0))}
        pick = min(err, key=err.get)
        want = ls if pick == "least_squares" else l1
        assert rec["gain_choice"][s] == pick
        np.testing.assert_allclose(gain[s], want, rtol=1e-4, atol=1e-6)
        assert rec["rel_l1_fit"][s] == pytest.approx(err[pick], rel=1e-4)
        for t, xt in enumerate(stage["frames"]["heldout"]):
            yt, xt = _teacher(sep, s, xt), np.asarray(xt, np.float64)
            assert rec["rel_l1_heldout"][s][t] == pytest.approx(_rel_l1(yt, xt * want), rel=1e-4)
            assert rec["rel_l1_heldout_clipped"][s][t] == pytest.approx(_rel_l1(yt, np.maximum(xt * want, 0)),
                                                                        rel=1e-4)
    np.testing.assert_allclose(zero["rel_l1_heldout"], np.ones((S, 3)))
    np.testing.assert_allclose(zero["rel_l1_heldout_clipped"], np.ones((S, 3)))
    assert zero["rel_l1_fit"] == [1.0] * S


@pytest.mark.parametrize("setting", ["nca_fast", "lstsq"])
def test_weighted_metric_uses_each_songs_input_energy(stage, setting):
    matrix = np.load(stage["out"] / "matrices" / f"dae_sf__{setting}.npz")["matrix"]
    rec = _record(stage["result"], "dae_sf", setting)
    weighted, plain = rec["metrics"]["weighted_diagonal_energy_ratio"], rec["metrics"]["diagonal_energy_ratio"]
    for s in range(S):
        c = matrix[s].astype(np.float64)
        for t, x in enumerate(stage["frames"]["heldout"]):
            energy = (np.asarray(x, np.float64) ** 2).mean(axis=0)
            want = float(analysis.weighted_diagonal_energy_ratio(jnp.asarray(matrix[s]), jnp.asarray(energy)))
            assert weighted[s][t] == pytest.approx(want, rel=1e-5), (s, t)
            numpy_want = (np.diag(c) ** 2 * energy).sum() / (c ** 2 * energy[None, :]).sum()
            assert weighted[s][t] == pytest.approx(numpy_want, rel=1e-4), (s, t)
            assert plain[s][t] == pytest.approx((np.diag(c) ** 2).sum() / (c ** 2).sum(), rel=1e-4)
    saved = np.load(stage["out"] / "frames.npz")
    np.testing.assert_allclose(
        saved["heldout_input_energy"],
        np.stack([(np.asarray(x, np.float64) ** 2).mean(axis=0) for x in stage["frames"]["heldout"]]),
        rtol=1e-5)


def test_stage_resolves_its_config_and_counts_the_band_in_hz(stage):
    # the stored config is resolved against N: explicit fit frames and Jacobian chunk
    saved = json.loads((stage["out"] / "config.json").read_text())["mapping"]
    assert saved["n_fit_frames"] == 64 and saved["jacobian_chunk"] is None  # chosen by the machine
    assert saved["band_hz"] == config.NEAR_DIAGONAL_BAND_HZ and saved["band_k"] is None
    # near-diagonal band: 62.5 Hz in whole bins of this STFT's 267 Hz bins -> 1 bin (not DEFAULT_K = 2)
    k = CFG.near_band_bins(STFT)
    assert k == 1 != analysis.DEFAULT_K
    matrix = np.load(stage["out"] / "matrices" / "dae__lstsq.npz")["matrix"]
    near = _record(stage["result"], "dae", "lstsq")["metrics"]["near_diagonal_energy"]
    for s in range(S):
        want = float(analysis.near_diagonal_energy(jnp.asarray(matrix[s]), k))
        assert near[s] == pytest.approx([want] * 3, rel=1e-5), s


def test_stage_refuses_an_underdetermined_fit_before_any_work(tmp_path):
    seps = {"dae": _separator("dae")}
    cfg = mappings.MappingConfig(settings=SETTINGS, n_fit_frames=N - 1)
    with pytest.raises(ValueError, match=rf"n_fit_frames {N - 1} .* N = {N} .* use n_fit_frames \d+ or more"):
        mappings.run_stage(seps, _train(), _test(), STFT, tmp_path / "a", cfg, progress=False)
    short = TinyCache(0, [5, 5], "train")  # 10 training frames for 16 bins
    with pytest.raises(ValueError, match=f"training split has 10 frames, fewer than the N = {N}"):
        mappings.run_stage(seps, short, _test(), STFT, tmp_path / "b", CFG, progress=False)
    with pytest.raises(ValueError, match="jacobian_chunk 10000000000 cannot fit in memory"):
        mappings.run_stage(seps, _train(), _test(), STFT, tmp_path / "c",
                           mappings.MappingConfig(settings=SETTINGS, jacobian_chunk=10**10), progress=False)
    assert not any((tmp_path / d).exists() for d in "abc")


# ------------------------------------------------------------------------------------------------
# resume, callables, linearity, validation


def test_stage_resumes_without_refitting(tmp_path, monkeypatch):
    sep = _separator("dae_sf", 1)
    cfg = mappings.MappingConfig(settings=SETTINGS[2:], n_fit_frames=64, heldout_frames_per_song=20,
                                 jacobian_frames=16, linearity_frames=16, linearity_seeds=1)
    first = mappings.run_stage({"dae_sf": sep}, _train(), _test(), STFT, tmp_path, cfg, progress=False)
    assert [(r["setting"], r["kind"]) for r in first["records"]] == [
        ("zero", "baseline"), ("per_bin_gain", "baseline"), ("lstsq", "pooled"), ("jacobian", "pooled"),
        ("-", "model")]
    # an interruption after the lstsq fit: drop result.json and the last two metrics lines
    (tmp_path / "result.json").unlink()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines[:3]) + "\n")
    calls, lin = [], []
    real_fit, real_lin = mappings._fit, mappings.linearity
    monkeypatch.setattr(mappings, "_fit", lambda *a, **k: calls.append(a[1].name) or real_fit(*a, **k))
    monkeypatch.setattr(mappings, "linearity", lambda *a, **k: lin.append(1) or real_lin(*a, **k))
    again = mappings.run_stage({"dae_sf": sep}, _train(), _test(), STFT, tmp_path, cfg, progress=False)
    assert calls == ["jacobian"] and len(lin) == 1  # lstsq and the baselines were done already

    def strip(r):
        return json.dumps({k: v for k, v in r.items() if k != "wall_s"}, sort_keys=True)

    assert [strip(r) for r in again["records"]] == [strip(r) for r in first["records"]]
    calls.clear()
    lin.clear()
    third = mappings.run_stage({"dae_sf": sep}, _train(), _test(), STFT, tmp_path, cfg, progress=False)
    assert calls == [] and lin == [] and third["records"] == json.loads(json.dumps(again["records"]))


def test_callable_gets_not_applicable_nca(tmp_path):
    # a callable written for (nb_frames, nb_bins) batches only (axis=1), as fit_mapping calls it
    sep = mappings.Separator(lambda x: jnp.maximum(x - 0.5 * x.mean(axis=1, keepdims=True), 0.0), None, 1)
    cfg = mappings.MappingConfig(settings=SETTINGS, n_fit_frames=32, heldout_frames_per_song=10,
                                 jacobian_frames=16, linearity_frames=16)
    result = mappings.run_stage({"f": sep}, _train(), _test(), STFT, tmp_path, cfg, progress=False)
    na = [r for r in result["records"] if r["kind"] == "not_applicable"]
    assert [r["setting"] for r in na] == ["nca_fast"] and "dense layers" in na[0]["not_applicable"]
    assert "rel_l1_heldout" not in na[0]
    pooled = {r["setting"] for r in result["records"] if r["kind"] == "pooled"}
    assert pooled == {"student_fast", "lstsq", "jacobian"}
    assert {r["setting"] for r in result["records"] if r["kind"] == "baseline"} == {"zero", "per_bin_gain"}
    model_rec = next(r for r in result["records"] if r["kind"] == "model")
    assert "dead_units" not in model_rec and len(model_rec["linearity"]) == 1


def test_linearity_leaves_out_all_zero_jacobian_frames():
    # f = relu(x - 0.5) elementwise: J(x_t) = diag(x_t > 0.5), all zero where every bin is below 0.5
    rng = np.random.default_rng(2)
    x = (0.6 + 0.4 * rng.random((12, N))).astype(np.float32)
    x[:, ::2] *= 0.5  # even bins shut on every frame: J_t = diag of the odd bins
    x[[0, 5, 9]] = 0.4 * rng.random((3, N))  # three frames with every unit shut
    sep = mappings.Separator(lambda v: jnp.maximum(v - 0.5, 0.0), None, 1)
    cfg = mappings.MappingConfig(settings=SETTINGS[2:], linearity_frames=12)
    out = mappings.linearity(sep, x, cfg, 0)
    assert out["zero_jacobian_frames"] == 3 and out["n_frames"] == 12
    values = out["frame_metric_values"]
    assert all(len(v) == 9 for v in values.values())
    # every live frame's Jacobian is diagonal: ratio 1; a zero Jacobian would have scored 0
    np.testing.assert_allclose(values["diagonal_energy_ratio"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(out["frame_metric_quantiles"]["diagonal_energy_ratio"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(out["frame_metric_quantiles"]["mean_coupling_distance"], 0.0, atol=1e-6)
    # the mean Jacobian over all 12 frames is (9/12) diag(odd bins)
    y = np.maximum(x - 0.5, 0.0)
    mean_j = np.diag(np.where(np.arange(N) % 2 == 1, 9 / 12, 0.0))
    assert out["rel_l1_mean_jacobian"] == pytest.approx(_rel_l1(y, x @ mean_j.T), rel=1e-4)


def test_separator_checks_its_seed_axis():
    sep = _separator("dae_sf", 1)
    with pytest.raises(ValueError, match="leading seed axis of n_seeds=3"):
        mappings.Separator(sep.model, sep.params, 3)
    with pytest.raises(ValueError, match="n_seeds=1"):
        mappings.Separator(lambda x: x, None, 2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(settings=(SETTINGS[2], SETTINGS[2])), "unique"),
    (dict(settings=({"name": "x", "method": "nca"},)), r"settings\[0\] must be an estimator"),
    (dict(n_fit_frames=1), "n_fit_frames must be >= 2"),
    (dict(heldout_frames_per_song=1), "heldout_frames_per_song must be >= 2"),
    (dict(jacobian_frames=0), "jacobian_frames must be >= 2"),
    (dict(jacobian_chunk=0), "jacobian_chunk must be a positive number of frames"),
    (dict(band_hz=-5.0), "band_hz"),
    (dict(band_k=-1), "non-negative"),
    (dict(linearity_seeds=-1), "non-negative"),
    (dict(seed=-1), "non-negative"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mappings.MappingConfig(**{"settings": SETTINGS, **kwargs})


def test_default_settings():
    names = [s.name for s in config.default_settings(100, 1e-3)]
    assert names == ["nca_authors", "nca_converged", "student_converged", "lstsq", "jacobian"]
    extra = config.default_settings(100, 1e-3, extra=True)
    assert {"nca_output_bias", "nca_uniform", "student_authors"} <= {s.name for s in extra}
    assert all(s.bias_axis == "input" for s in extra if s.method == "nca" and s.name != "nca_output_bias")
    assert mappings.MappingConfig(settings=extra).settings == extra


# the settings as every study config has stored them (FitSetting's fields), byte for byte
LEGACY_SETTINGS = [
    {"name": "nca_authors", "method": "nca", "steps": 600, "learning_rate": 0.0001, "init": "xavier_normal",
     "bias_axis": "input"},
    {"name": "nca_converged", "method": "nca", "steps": 3000, "learning_rate": 0.001, "init": "xavier_normal",
     "bias_axis": "input"},
    {"name": "student_converged", "method": "student", "steps": 3000, "learning_rate": 0.001,
     "init": "xavier_normal", "bias_axis": "input"},
    {"name": "lstsq", "method": "lstsq", "steps": 0, "learning_rate": 0.0, "init": "xavier_normal",
     "bias_axis": "input"},
    {"name": "jacobian", "method": "jacobian", "steps": 0, "learning_rate": 0.0, "init": "xavier_normal",
     "bias_axis": "input"},
]


def test_settings_serialise_as_every_study_config_stored_them():
    cfg = mappings.MappingConfig()
    assert json.dumps(config.to_dict(cfg)["settings"]) == json.dumps(LEGACY_SETTINGS)
    assert cfg.settings == (NCA(name="nca_authors"), NCA(3000, 1e-3, name="nca_converged"),
                            Student(3000, 1e-3, name="student_converged"), LeastSquares(name="lstsq"),
                            MeanJacobian(name="jacobian"))
    # a run directory's config.json (FitSetting-shaped settings) loads, and writes back byte for byte
    stored = json.loads(json.dumps(cfg.to_json()))
    loaded = config.from_dict(mappings.MappingConfig, stored)
    assert loaded == cfg and json.dumps(loaded.to_json()) == json.dumps(cfg.to_json())
    assert config.fingerprint(loaded.to_json()) == config.fingerprint(cfg.to_json())
    # options outside that shape are written only when they differ from their defaults, and read back
    odd = (NCA(20, 1e-2, snapshots=(0, 20), name="a"), LeastSquares(ridge=0.0, name="b"),
           MeanJacobian(chunk_size=8, name="c"), Student(init="zeros", name="d"))
    odd_cfg = mappings.MappingConfig(settings=odd)
    rows = config.to_dict(odd_cfg)["settings"]
    assert rows[0]["snapshots"] == [0, 20] and rows[1]["ridge"] == 0.0 and rows[2]["chunk_size"] == 8
    assert "snapshots" not in rows[3]
    assert config.from_dict(mappings.MappingConfig, json.loads(json.dumps(odd_cfg.to_json()))) == odd_cfg
    with pytest.raises(ValueError, match="unknown method 'svd'"):
        config.from_dict(mappings.MappingConfig, {"settings": [{"name": "x", "method": "svd"}]})
    with pytest.raises(ValueError, match=r"unknown fields \['ridge'\]"):
        config.from_dict(mappings.MappingConfig, {"settings": [{"name": "x", "method": "nca", "ridge": 1}]})
    with pytest.raises(ValueError, match="NCA: steps must be a positive integer"):
        config.from_dict(mappings.MappingConfig, {"settings": [{**LEGACY_SETTINGS[0], "steps": 0}]})


# ------------------------------------------------------------------------------------------------
# the L1-optimal per-bin gain and the better of the two gains


def test_l1_gain_minimises_the_l1_error_against_a_brute_force_grid():
    rng = np.random.default_rng(5)
    x = rng.random((2, 25, 6)) * 10.0 ** rng.uniform(-1, 1, size=(2, 25, 1))
    y = np.abs(x * rng.normal(1.0, 0.5, size=x.shape) + rng.normal(0, 0.05, size=x.shape))
    x[:, :3, 0] = 0.0  # silent frames in one bin: they do not depend on the gain
    g = mappings.per_bin_gain_l1(x, y)
    assert g.shape == (2, 6)
    grid = np.linspace(0.0, 3.0, 30001)
    for k in range(2):
        for i in range(6):
            cost = np.array([np.abs(y[k, :, i] - c * x[k, :, i]).sum() for c in grid])
            ours = np.abs(y[k, :, i] - g[k, i] * x[k, :, i]).sum()
            assert ours <= cost.min() + 1e-9, (k, i)  # no grid point does better
            assert abs(g[k, i] - grid[cost.argmin()]) < 1e-2  # and it sits at the grid's minimum
    assert np.all(mappings.per_bin_gain_l1(np.zeros((4, 3)), np.ones((4, 3))) == 0.0)


def test_best_gain_picks_the_better_of_least_squares_and_l1_on_the_fit_frames():
    rng = np.random.default_rng(6)
    x = rng.random((40, N))
    y = np.stack([x * 0.5, x * 0.5])
    y[1, :4] *= 50.0  # outlier frames: least squares follows them, the L1 gain does not
    gain, choice = mappings.best_per_bin_gain(x, y)
    np.testing.assert_allclose(gain[1], 0.5, rtol=1e-9)
    assert choice[1] == "l1"
    for s in range(2):
        ls = np.array([np.linalg.lstsq(x[:, i:i + 1], y[s, :, i], rcond=None)[0][0] for i in range(N)])
        l1 = mappings.per_bin_gain_l1(x, y[s])
        err = {name: _rel_l1(y[s], np.maximum(x * gv, 0)) for name, gv in (("least_squares", ls), ("l1", l1))}
        assert _rel_l1(y[s], x * gain[s]) == pytest.approx(min(err.values()), rel=1e-9)


# ------------------------------------------------------------------------------------------------
# the under-convergence control


CONTROL_SETTINGS = (
    NCA(6, 1e-2, "xavier_normal", "input", name="nca_authors"),
    NCA(12, 3e-2, "xavier_normal", "input", name="nca_converged"),
    LeastSquares(name="lstsq"),
)
CONTROL_STEPS = (0, 6, 12, 20)


def test_stage_writes_convergence_control_records_and_resumes(tmp_path, monkeypatch):
    cfg = mappings.MappingConfig(settings=CONTROL_SETTINGS, n_fit_frames=64, heldout_frames_per_song=20,
                                 jacobian_frames=16, linearity_frames=16, linearity_seeds=0, seed=3,
                                 control_steps=CONTROL_STEPS)
    seps = {name: _separator(name) for name in MODELS}
    result = mappings.run_stage(seps, _train(), _test(), STFT, tmp_path, cfg, progress=False)
    control = {(r["model"], r["setting"]): r for r in result["records"] if r["kind"] == "control"}
    assert set(control) == {(m, f"{s}@{n}") for m in MODELS for s in ("nca_authors", "nca_converged")
                            for n in CONTROL_STEPS}
    for (_, name), rec in control.items():
        setting, steps = name.split("@")
        assert rec["control"] == {"setting": setting, "steps": int(steps), "fit_steps": 20,
                                  "learning_rate": 1e-2 if setting == "nca_authors" else 3e-2}
        assert rec["fit_seeds"] == [3, 4] and np.shape(rec["rel_l1_fit"]) == (S,)
        for key in ("rel_l1_heldout", "rel_l1_heldout_clipped"):
            assert np.shape(rec[key]) == (S, 3)
        assert {k: np.shape(v) for k, v in rec["metrics"].items()} == {k: (S, 3) for k in rec["metrics"]}
        assert {k: np.shape(v) for k, v in rec["functional"].items()} == {k: (S, 3) for k in rec["functional"]}
        assert rec["converged"] == ([None] * S if steps == "0" else [bool(c) for c in rec["converged"]])
    for m in MODELS:
        for setting in ("nca_authors", "nca_converged"):
            saved = np.load(tmp_path / "control" / f"{m}__{setting}.npz")
            assert saved["matrix"].shape == (S, 4, N, N) and saved["steps"].tolist() == list(CONTROL_STEPS)
            assert saved["losses"].shape == (S, 20)
            np.testing.assert_allclose(saved["rel_l1_fit"][:, 1], control[(m, f"{setting}@6")]["rel_l1_fit"])
        # the snapshot at a setting's own step count is its pooled fit (same keys, frames, target)
        for setting, own in (("nca_authors", 1), ("nca_converged", 2)):
            pooled = np.load(tmp_path / "matrices" / f"{m}__{setting}.npz")["matrix"]
            snap = np.load(tmp_path / "control" / f"{m}__{setting}.npz")["matrix"][:, own]
            np.testing.assert_allclose(snap, pooled, rtol=1e-6, atol=1e-7 * np.abs(pooled).max())
            np.testing.assert_allclose(control[(m, f"{setting}@{CONTROL_STEPS[own]}")]["rel_l1_fit"],
                                       _record(result, m, setting)["rel_l1_fit"], rtol=1e-5)
        # step 0: P frozen at its initialisation, the same for both settings (same keys, no step)
        a, b = (np.load(tmp_path / "control" / f"{m}__{s}.npz")["matrix"][:, 0]
                for s in ("nca_authors", "nca_converged"))
        np.testing.assert_array_equal(a, b)
        assert control[(m, "nca_authors@0")]["rel_l1_heldout"] == control[(m, "nca_converged@0")]["rel_l1_heldout"]
    # the held-out tables of a snapshot are those of its matrix
    sep, mat = seps["dae"], np.load(tmp_path / "control" / "dae__nca_converged.npz")["matrix"][:, 3]
    x = mappings.select_frames(_train(), _test(), cfg)["heldout"][1]
    for s in range(S):
        want = _rel_l1(_teacher(sep, s, x), np.asarray(x, np.float64) @ mat[s].astype(np.float64).T)
        assert control[("dae", "nca_converged@20")]["rel_l1_heldout"][s][1] == pytest.approx(want, rel=1e-4)

    # an interruption after the first control record of dae_sf's nca_converged: that fit is redone and
    # only its missing step counts are recorded; nothing else is refitted
    (tmp_path / "result.json").unlink()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    keys = [(json.loads(line)["model"], json.loads(line)["setting"]) for line in lines]
    cut = keys.index(("dae_sf", "nca_converged@0")) + 1
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines[:cut]) + "\n")
    calls, fits = [], []
    real_control, real_fit = mappings._control, mappings._fit
    monkeypatch.setattr(mappings, "_control", lambda *a, **k: calls.append(a[1].name) or real_control(*a, **k))
    monkeypatch.setattr(mappings, "_fit", lambda *a, **k: fits.append(a[1].name) or real_fit(*a, **k))
    again = mappings.run_stage(seps, _train(), _test(), STFT, tmp_path, cfg, progress=False)
    assert calls == ["nca_converged"] and fits == []
    again_keys = [(r["model"], r["setting"], r["kind"]) for r in again["records"]]
    assert len(again_keys) == len(set(again_keys)) and len(again_keys) == len(result["records"])

    def strip(r):
        return json.dumps({k: v for k, v in r.items() if k != "wall_s"}, sort_keys=True)

    assert sorted(map(strip, again["records"])) == sorted(map(strip, json.loads(json.dumps(result["records"]))))


def test_control_steps_validation_and_default_off():
    assert mappings.MappingConfig(settings=SETTINGS).control_steps == ()
    assert "control_steps" not in mappings.MappingConfig(settings=SETTINGS).to_json()
    cfg = mappings.MappingConfig(settings=SETTINGS, control_steps=[0, 5, 9])
    assert cfg.control_steps == (0, 5, 9) and cfg.to_json()["control_steps"] == (0, 5, 9)
    for bad in ((5, 3), (0,), (-1, 4), (0, 2.5), (0, 3, 3), 7):
        with pytest.raises(ValueError, match="control_steps"):
            mappings.MappingConfig(settings=SETTINGS, control_steps=bad)
    # no control settings among the fits, or no control steps: no control job
    seps = {"dae": _separator("dae")}
    assert all(k != "control" for *_, k in mappings._jobs(seps, cfg))
    cfg = mappings.MappingConfig(settings=CONTROL_SETTINGS, control_steps=(0, 5))
    assert [(s, k) for _, s, k in mappings._jobs(seps, cfg) if k == "control"] == [
        ("nca_authors", "control"), ("nca_converged", "control")]
    callable_sep = {"f": mappings.Separator(lambda x: x, None, 1)}
    assert all(k != "control" for *_, k in mappings._jobs(callable_sep, cfg))
