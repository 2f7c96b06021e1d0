"""Structure metrics on hand-built matrices with closed-form answers, NumPy-loop references, dead units
on hand-built separators, relative L1 and seed statistics."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ncajax import models
from ncajax.nca import _structure as an
from ncajax.stats import seed_interval

N = 7


def close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), b, rtol=tol, atol=tol)


def banded(n, a, b):
    return a * np.eye(n) + b * (np.eye(n, k=1) + np.eye(n, k=-1))


# ---------------------------------------------------------------------------------------------------
# NumPy loop references (written independently of the vectorised code)


def ref_weighted_diag(C, e):
    num = den = 0.0
    for i in range(C.shape[0]):
        for j in range(C.shape[1]):
            w = C[i, j] ** 2 * e[j]
            den += w
            num += w if i == j else 0.0
    return num / den


def ref_weighted_band(C, e, k):
    num = den = 0.0
    for i in range(C.shape[0]):
        for j in range(C.shape[1]):
            w = C[i, j] ** 2 * e[j]
            den += w
            num += w if abs(i - j) <= k else 0.0
    return num / den


def ref_spread(C):
    out = []
    for row in np.abs(C):
        js = np.arange(len(row))
        if row.sum() == 0:
            out.append(0.0)
            continue
        mu = sum(w * j for w, j in zip(row, js, strict=True)) / row.sum()
        var = sum(w * (j - mu) ** 2 for w, j in zip(row, js, strict=True)) / row.sum()
        out.append(math.sqrt(var))
    return np.array(out)


# ---------------------------------------------------------------------------------------------------
# closed forms


def test_identity():
    C = np.eye(N)
    close(an.diagonal_energy_ratio(C), 1.0)
    close(an.near_diagonal_energy(C, 0), 1.0)
    close(an.near_diagonal_energy(C, 3), 1.0)
    close(an.mean_coupling_distance(C), 0.0)
    close(an.per_output_spread(C), np.zeros(N))
    close(an.mean_coupling_distance_octaves(C, sample_rate=16000, n_fft=2 * (N - 1)), 0.0)


@pytest.mark.parametrize("k", [0, 1, 3])
def test_all_ones(k):
    C = np.ones((N, N))
    close(an.diagonal_energy_ratio(C), 1.0 / N)
    count = N + 2 * sum(N - d for d in range(1, k + 1))
    close(an.near_diagonal_energy(C, k), count / N**2)
    close(an.mean_coupling_distance(C), (N**2 - 1) / (3 * N))
    # every row is uniform over 0..N-1: std of a discrete uniform
    close(an.per_output_spread(C), np.full(N, math.sqrt((N**2 - 1) / 12)))
    # scale does not matter
    close(an.near_diagonal_energy(-3.0 * C, k), count / N**2)


def test_banded():
    a, b = 2.0, -0.5
    C = banded(N, a, b)
    energy_diag, energy_off = N * a**2, 2 * (N - 1) * b**2
    close(an.diagonal_energy_ratio(C), energy_diag / (energy_diag + energy_off))
    close(an.near_diagonal_energy(C, 0), energy_diag / (energy_diag + energy_off))
    close(an.near_diagonal_energy(C, 1), 1.0)
    close(an.mean_coupling_distance(C), 2 * (N - 1) * abs(b) / (N * abs(a) + 2 * (N - 1) * abs(b)))


@pytest.mark.parametrize(("i", "j"), [(5, 2), (1, 6), (3, 3)])
def test_single_entry(i, j):
    C = np.zeros((N, N))
    C[i, j] = -1.7
    close(an.mean_coupling_distance(C), abs(i - j))
    close(an.diagonal_energy_ratio(C), float(i == j))
    close(an.near_diagonal_energy(C, abs(i - j)), 1.0)
    if i != j:
        close(an.near_diagonal_energy(C, abs(i - j) - 1), 0.0)
    # bins are multiples of sample_rate / n_fft, so the octave distance is log2(i / j)
    n_fft = 2 * (N - 1)
    close(
        an.mean_coupling_distance_octaves(C, sample_rate=22050, n_fft=n_fft),
        abs(math.log2(i / j)),
    )
    close(an.per_output_spread(C), np.zeros(N))


def test_octaves_dc_at_half_bin():
    C = np.zeros((N, N))
    C[4, 0] = 1.0
    n_fft = 2 * (N - 1)
    f = an.bin_frequencies(N, sample_rate=8000, n_fft=n_fft)
    close(f[1:], np.arange(1, N) * 8000 / n_fft)
    close(f[0], f[1] / 2)
    # f_0 = f_1 / 2 -> log2(4 / 0.5) = 3 octaves
    close(an.mean_coupling_distance_octaves(C, sample_rate=8000, n_fft=n_fft), 3.0)


def test_per_output_spread_two_entries_and_random():
    C = np.zeros((N, N))
    C[2, 1] = C[2, 5] = 3.0  # mean 3, std 2
    C[4, 0], C[4, 3] = 1.0, 2.0  # mean 2, var (1*4 + 2*1) / 3 = 2
    s = np.asarray(an.per_output_spread(C))
    close(s[2], 2.0)
    close(s[4], math.sqrt(2.0))
    close(s[[0, 1, 3, 5, 6]], 0.0)
    R = np.random.default_rng(0).normal(size=(N, N))
    close(an.per_output_spread(R), ref_spread(R))


def test_weighted_matches_numpy_loop():
    rng = np.random.default_rng(1)
    C = rng.normal(size=(N, N))
    e = np.zeros(N)
    e[[1, 4]] = [3.0, 0.5]  # energy on two columns only
    close(an.weighted_diagonal_energy_ratio(C, e), ref_weighted_diag(C, e))
    for k in (0, 1, 2):
        close(an.weighted_near_diagonal_energy(C, e, k), ref_weighted_band(C, e, k))
    # uniform energy reduces to the unweighted metrics
    ones = np.ones(N)
    close(an.weighted_diagonal_energy_ratio(C, ones), an.diagonal_energy_ratio(C))
    close(an.weighted_near_diagonal_energy(C, ones, 2), an.near_diagonal_energy(C, 2))
    # energy on one column: only that column's couplings count
    e1 = np.zeros(N)
    e1[3] = 1.0
    close(an.weighted_diagonal_energy_ratio(C, e1), C[3, 3] ** 2 / (C[:, 3] ** 2).sum())


def test_mean_input_energy():
    x = np.random.default_rng(2).normal(size=(11, N))
    close(an.mean_input_energy(x), (x**2).mean(axis=0))
    close(an.mean_input_energy(np.stack([x, 2 * x])), [(x**2).mean(0), 4 * (x**2).mean(0)])


def test_zero_matrix_gives_zeros_not_nan():
    Z = jnp.zeros((N, N))
    m = an.structure_metrics(Z, input_energy=jnp.ones(N), sample_rate=16000, n_fft=2 * (N - 1))
    assert len(m) == 8
    for name, v in m.items():
        assert np.isfinite(v), name
        close(v, 0.0)
    close(an.per_output_spread(Z), np.zeros(N))
    # silent input on a non-zero matrix is zero too
    close(an.weighted_diagonal_energy_ratio(jnp.eye(N), jnp.zeros(N)), 0.0)
    g = jax.grad(an.diagonal_energy_ratio)(Z)
    assert np.all(np.isfinite(g))


# ---------------------------------------------------------------------------------------------------
# structure_metrics, vmap and jit


def test_structure_metrics_values_and_median():
    C = np.zeros((N, N))
    C[0, 0] = 1.0
    C[2, 1] = C[2, 5] = 1.0  # spread 2
    C[3, 0] = C[3, 6] = 1.0  # spread 3
    m = an.structure_metrics(C, k=1)
    # rows 1, 4, 5, 6 are all zero and do not count in the spread statistics
    close(m["spread_mean"], (0.0 + 2.0 + 3.0) / 3)
    close(m["spread_median"], 2.0)
    close(m["diagonal_energy_ratio"], 1 / 5)
    close(m["near_diagonal_energy"], 2 / 5)
    assert set(m) == {
        "diagonal_energy_ratio",
        "near_diagonal_energy",
        "mean_coupling_distance",
        "spread_mean",
        "spread_median",
    }


def test_vmap_and_jit_equal_loop():
    rng = np.random.default_rng(3)
    K = 4
    Cs = rng.normal(size=(K, N, N)).astype(np.float32)
    Es = rng.uniform(size=(K, N)).astype(np.float32)
    kw = dict(sample_rate=16000, n_fft=2 * (N - 1), k=1)
    stacked = an.structure_metrics(Cs, input_energy=Es, **kw)
    jitted = jax.jit(functools.partial(an.structure_metrics, **kw))
    stacked_jit = jitted(Cs, input_energy=Es)
    shared = an.structure_metrics(Cs, input_energy=Es[0], **kw)
    for i in range(K):
        one = an.structure_metrics(Cs[i], input_energy=Es[i], **kw)
        one_shared = an.structure_metrics(Cs[i], input_energy=Es[0], **kw)
        for name in one:
            assert stacked[name].shape == (K,)
            close(stacked[name][i], float(one[name]))
            close(stacked_jit[name][i], float(one[name]))
            close(shared[name][i], float(one_shared[name]))
    # the individual metrics vmap too, with a traced k
    ks = jnp.arange(K)
    v = jax.jit(jax.vmap(an.near_diagonal_energy))(jnp.asarray(Cs), ks)
    close(v, [float(an.near_diagonal_energy(Cs[i], i)) for i in range(K)])
    spreads = jax.vmap(an.per_output_spread)(Cs)
    close(spreads, np.stack([ref_spread(c) for c in Cs]))


# ---------------------------------------------------------------------------------------------------
# relative L1 error


def test_relative_l1_closed_forms():
    close(an.relative_l1(jnp.array([1.0, 2.0, -3.0]), jnp.array([1.0, 1.0, -1.0])), 0.5)
    close(an.relative_l1(jnp.zeros(3), jnp.zeros(3)), 0.0)
    assert np.isposinf(an.relative_l1(jnp.zeros(3), jnp.array([0.0, 1.0, 0.0])))
    y = jnp.array([[1.0, 1.0], [0.0, 0.0], [2.0, 0.0]])
    y_hat = jnp.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    close(an.relative_l1(y, y_hat, axis=-1), [0.5, 0.0, 1.0])
    close(an.relative_l1(y, y_hat), 3.0 / 4.0)


# ---------------------------------------------------------------------------------------------------
# dead units


def hand_built(name, n_bins, key=0):
    """Non-negative kernels (every unit alive on positive x) except unit 2 of every layer, whose
    weights are all negative: that unit is dead on every non-negative input. Unit 3 of the first layer
    computes relu(x_0 - x_1): zero on some frames of `frames()`, alive on others."""
    model = models.build(name, n_bins)
    params = models.init_params(model, jax.random.key(key))

    def fix(node, name=""):
        if "kernel" in node:
            kern = jnp.abs(node["kernel"]).at[:, 2].multiply(-1.0)
            if name == "encoder_0":
                kern = kern.at[:, 3].set(0.0).at[0, 3].set(1.0).at[1, 3].set(-1.0)
            return {"kernel": kern, "bias": jnp.zeros_like(node["bias"])}
        return {k: fix(v, k) for k, v in node.items()}

    return model, {"params": fix(params["params"])}


def frames(n, seed=5):
    """Positive frames; x_0 > x_1 on the first half of the frames and x_0 < x_1 on the second."""
    x = np.random.default_rng(seed).uniform(0.1, 1.0, size=(16, n))
    x[:8, :2] = [1.0, 0.1]
    x[8:, :2] = [0.1, 1.0]
    return jnp.asarray(x, jnp.float32)


@pytest.mark.parametrize(("name", "n_layers"), [("dae", 2), ("dae_deep", 4), ("dae_sf", 2)])
def test_dead_units_hand_built(name, n_layers):
    n = 8
    model, params = hand_built(name, n)
    x = frames(n)
    dead = an.dead_unit_share(model, params, x)
    assert set(dead) == {f"layer_{i}" for i in range(n_layers)} | {"output", "overall"}
    for i in range(n_layers):
        close(dead[f"layer_{i}"], 1 / n)
    close(dead["output"], 1 / n)
    close(dead["overall"], n_layers / (n_layers * n))
    # independent check of the output layer against the flax forward pass
    out = model.apply(params, x, method="mask") if name == "dae_sf" else model.apply(params, x)
    close(dead["output"], np.mean(np.all(np.asarray(out) == 0, axis=0)))


def test_dead_units_seed_stack_and_all_alive():
    n = 8
    model, p_dead = hand_built("dae", n)
    _, p_alive = hand_built("dae", n, key=1)
    p_alive = jax.tree.map(jnp.abs, p_alive)  # no negative weights: nothing dead
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), p_dead, p_alive)
    x = frames(n, seed=6)
    dead = an.dead_unit_share(model, stacked, x)
    close(dead["layer_0"], [1 / n, 0.0])
    close(dead["overall"], [2 / (2 * n), 0.0])


def test_dead_units_bad_input():
    model, params = hand_built("dae", 8)
    with pytest.raises(ValueError, match="nb_frames, 8"):
        an.dead_unit_share(model, params, jnp.ones((4, 5)))


# ---------------------------------------------------------------------------------------------------
# statistics over seeds and frames


def test_seed_interval_t():
    s = seed_interval([1.0, 2.0, 3.0, 4.0])
    std = math.sqrt(sum((v - 2.5) ** 2 for v in (1, 2, 3, 4)) / 3)
    t975_df3 = 3.182446305284263  # tabulated Student-t quantile
    half = t975_df3 * std / math.sqrt(4)
    assert s["n"] == 4
    close(s["mean"], 2.5)
    close(s["std"], std)
    close(s["lo"], 2.5 - half)
    close(s["hi"], 2.5 + half)
    s90 = seed_interval([1.0, 2.0, 3.0, 4.0], confidence=0.9)
    close(s90["hi"] - s90["mean"], 2.353363434801823 * std / 2)  # t_{0.95, 3}


def test_seed_interval_single_seed_and_axis():
    s = seed_interval([3.5])
    assert s == {"mean": 3.5, "std": 0.0, "lo": 3.5, "hi": 3.5, "n": 1}
    v = np.array([[1.0, 10.0], [3.0, 10.0]])  # seeds on axis 0
    s = seed_interval(v)
    close(s["mean"], [2.0, 10.0])
    # std = sqrt(2), n = 2: half-width = t_{0.975, 1} * sqrt(2) / sqrt(2)
    close(s["hi"] - s["lo"], [2 * 12.706204736174707, 0.0])
    s1 = seed_interval(v.T, axis=1)
    close(s1["lo"], s["lo"])


def test_quantiles():
    v = np.random.default_rng(7).normal(size=(101, 3))
    qs = (0.05, 0.5, 0.95)
    close(an.quantiles(v, qs), np.quantile(v, qs, axis=0))
    close(an.quantiles(np.arange(11.0)), [0.5, 2.5, 5.0, 7.5, 9.5])
    default_qs = (0.05, 0.25, 0.5, 0.75, 0.95)
    close(jax.vmap(an.quantiles)(jnp.asarray(v.T)), np.quantile(v, default_qs, axis=0).T)


# ---------------------------------------------------------------------------------------------------
# input errors


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="square"):
        an.diagonal_energy_ratio(np.ones((3, 4)))
    with pytest.raises(ValueError, match="vmap"):
        an.mean_coupling_distance(np.ones((2, 3, 3)))
    with pytest.raises(ValueError, match="input_energy"):
        an.weighted_diagonal_energy_ratio(np.eye(3), np.ones(4))
    with pytest.raises(ValueError, match="n_fft"):
        an.mean_coupling_distance_octaves(np.eye(5), sample_rate=16000, n_fft=16)
    with pytest.raises(ValueError, match="both"):
        an.structure_metrics(np.eye(5), sample_rate=16000)
    with pytest.raises(ValueError, match="k"):
        an.near_diagonal_energy(np.eye(3), -1)
    with pytest.raises(ValueError, match="same shape"):
        an.relative_l1(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="confidence"):
        seed_interval([1.0, 2.0], confidence=1.5)
    with pytest.raises(ValueError, match="qs"):
        an.quantiles(np.ones(4), (0.5, 1.5))


# ---------------------------------------------------------------------------------------------------
# functional diagonality, band masks, the voice band, restricted structure


def test_band_mask_matches_a_loop_and_includes_the_diagonal():
    f = an.bin_frequencies(16, sample_rate=8000, n_fft=30)  # 266.7 Hz apart, DC at 133 Hz
    for band_hz in (0.0, 100.0, 270.0, 600.0):
        m = an.band_mask(f, band_hz)
        want = np.array([[abs(f[i] - f[j]) <= band_hz for j in range(16)] for i in range(16)])
        np.testing.assert_array_equal(m, want)
        assert np.all(np.diag(m))
    assert an.band_mask(f, 270.0)[2, 3] and not an.band_mask(f, 270.0)[2, 4]
    with pytest.raises(ValueError, match="band_hz"):
        an.band_mask(f, -1.0)


def test_voice_band_is_80hz_to_min_nyquist_8khz():
    f = an.bin_frequencies(129, sample_rate=8000, n_fft=256)  # 31.25 Hz apart, Nyquist 4 kHz
    vb = an.voice_band(f, sample_rate=8000)
    assert f[vb].min() >= 80 and f[~vb & (f > 80)].size == 0 and vb[-1]  # up to Nyquist
    f2 = an.bin_frequencies(513, sample_rate=44100, n_fft=1024)
    vb2 = an.voice_band(f2, sample_rate=44100)
    assert f2[vb2].max() <= 8000 and f2[vb2].min() >= 80 and f2[~vb2][-1] > 8000


def test_keep_share_closed_form():
    np.testing.assert_allclose(an.keep_share(1.0, 0.5, 0.0), 0.5)
    np.testing.assert_allclose(an.keep_share(1.0, 0.2, 0.2), 1.0)
    np.testing.assert_allclose(an.keep_share(1.0, 1.2, 0.6), -0.5)
    assert np.isnan(an.keep_share(1.0, 0.5, 1.0)) and np.isnan(an.keep_share(1.0, 0.5, 1.3))


def test_functional_diagonality_matches_a_numpy_loop():
    rng = np.random.default_rng(0)
    n, frames, k = 16, 40, 3
    f = an.bin_frequencies(n, sample_rate=8000, n_fft=30)
    C = rng.normal(size=(k, n, n)) * 0.3 + np.eye(n)
    x = rng.random((frames, n))
    y = np.abs(x @ rng.normal(size=(n, n)).T)  # a teacher that is not C
    got = an.functional_diagonality(C, x, y[None].repeat(k, 0), f, 300.0)
    for s in range(k):
        diag = np.zeros((n, n))
        band = np.zeros((n, n))
        for i in range(n):
            diag[i, i] = C[s, i, i]
            for j in range(n):
                if abs(f[i] - f[j]) <= 300.0:
                    band[i, j] = C[s, i, j]
        for name, M in (("full", C[s]), ("diag", diag), ("band", band)):
            pred = np.array([[sum(M[i, j] * x[t, j] for j in range(n)) for i in range(n)] for t in range(frames)])
            assert got[f"err_{name}_raw"][s] == pytest.approx(np.abs(y - pred).sum() / np.abs(y).sum(), rel=1e-9)
            assert got[f"err_{name}"][s] == pytest.approx(
                np.abs(y - np.maximum(pred, 0)).sum() / np.abs(y).sum(), rel=1e-9)
        assert got["err_zero"][s] == 1.0
        want = (1.0 - got["err_diag"][s]) / (1.0 - got["err_full"][s]) if got["err_full"][s] < 1 else np.nan
        np.testing.assert_allclose(got["keep_diag"][s], want)
    # a diagonal C keeps everything: its diagonal part is C itself
    D = np.diag(rng.random(n))
    one = an.functional_diagonality(D, x, x * np.diag(D), f, 100.0)
    assert one["err_full"] == pytest.approx(0.0, abs=1e-12) and one["keep_diag"] == pytest.approx(1.0)


def test_restricted_structure_counts_only_live_voice_rows_and_voice_columns():
    n = 16
    f = an.bin_frequencies(n, sample_rate=8000, n_fft=30)
    rng = np.random.default_rng(1)
    C = rng.normal(size=(n, n))
    live = rng.random(n) > 0.3
    band = an.voice_band(f, sample_rate=8000)
    e_mix, e_voc = rng.random(n), rng.random(n)
    got = an.restricted_structure(C, live_rows=live, band=band, freqs=f, band_hz=300.0,
                                  energies={"mixture": e_mix, "vocals": e_voc})
    for name, e in (("mixture", e_mix), ("vocals", e_voc)):
        num = den = near = 0.0
        for i in range(n):
            for j in range(n):
                if live[i] and band[i] and band[j]:
                    w = C[i, j] ** 2 * e[j]
                    den += w
                    num += w if i == j else 0.0
                    near += w if abs(f[i] - f[j]) <= 300.0 else 0.0
        assert got[f"live_voice_diagonal_energy_ratio_{name}"] == pytest.approx(num / den, rel=1e-9)
        assert got[f"live_voice_band_energy_{name}"] == pytest.approx(near / den, rel=1e-9)
    dead = an.restricted_structure(C, live_rows=np.zeros(n, bool), band=band, freqs=f, band_hz=0.0,
                                   energies={"mixture": e_mix})
    assert dead == {"live_voice_diagonal_energy_ratio_mixture": 0.0, "live_voice_band_energy_mixture": 0.0}
