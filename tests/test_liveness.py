"""Liveness and homogeneity measures against plain NumPy loops."""

import numpy as np
import pytest

from ncajax.separation import _liveness as liveness


def _loop_live(outputs):
    n_frames, n_units = outputs.shape
    live = []
    for i in range(n_units):
        alive = False
        for f in range(n_frames):
            if outputs[f, i] != 0:
                alive = True
                break
        live.append(alive)
    return np.array(live)


def test_live_share_by_octave_matches_loop():
    rng = np.random.default_rng(0)
    n_bins = 33
    freqs = np.arange(n_bins) * 8000 / 64  # 0, 125, 250, ... Hz
    outputs = np.maximum(rng.normal(size=(50, n_bins)), 0)
    outputs[:, [0, 3, 5, 6, 20]] = 0  # dead units: DC, 375 Hz, 625/750 Hz, 2.5 kHz
    rows = liveness.live_output_share_by_octave(outputs, freqs)
    live = _loop_live(outputs)
    # the octave bands by hand: DC alone, then [125 * 2^k, 125 * 2^(k+1))
    expected = [(0.0, 0.0, [0])]
    lo = 125.0
    while lo <= freqs[-1]:
        idx = [i for i in range(n_bins) if lo <= freqs[i] < 2 * lo]
        expected.append((lo, 2 * lo, idx))
        lo *= 2
    assert len(rows) == len(expected)
    for row, (elo, ehi, idx) in zip(rows, expected, strict=True):
        assert (row["lo_hz"], row["hi_hz"], row["n_units"]) == (elo, ehi, len(idx))
        assert row["live_share"] == pytest.approx(sum(live[i] for i in idx) / len(idx))
    assert rows[0]["live_share"] == 0.0
    assert liveness.dead_output_share(outputs) == pytest.approx(5 / n_bins)
    assert sum(r["n_units"] for r in rows) == n_bins


def test_live_share_shape_checks():
    with pytest.raises(ValueError, match="units but freqs"):
        liveness.live_output_share_by_octave(np.ones((3, 4)), np.arange(5.0))
    with pytest.raises(ValueError, match="nb_frames, nb_units"):
        liveness.dead_output_share(np.ones(4))


@pytest.mark.parametrize("alpha", [0.25, 4.0])
def test_homogeneity_error_matches_loop(alpha):
    rng = np.random.default_rng(1)
    x = rng.random((20, 6)).astype(np.float32)
    w = rng.normal(size=(6, 6)).astype(np.float32)

    def f(z):
        return np.maximum(z @ w + 0.3, 0) * z  # neither homogeneous nor equivariant

    fx, fax = f(x).astype(np.float64), f(np.float32(alpha) * x).astype(np.float64)
    num = den = 0.0
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            num += (fax[i, j] - alpha * fx[i, j]) ** 2
            den += (alpha * fx[i, j]) ** 2
    assert liveness.homogeneity_error(f, x, alpha) == pytest.approx(np.sqrt(num / den), rel=1e-9)


def test_homogeneity_zero_for_homogeneous_map():
    x = np.random.default_rng(2).random((10, 4)).astype(np.float32)
    w = np.random.default_rng(3).normal(size=(4, 4)).astype(np.float32)
    assert liveness.homogeneity_error(lambda z: np.maximum(z @ w, 0), x, 4.0) < 1e-6
    with pytest.raises(ValueError, match="alpha must be positive"):
        liveness.homogeneity_error(lambda z: z, x, 0.0)
