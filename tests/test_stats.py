"""The seed x song bootstrap against explicit resampling loops and closed forms."""

import numpy as np
import pytest

from ncajax import stats


def _loop_replicates(a, b, n_boot, seed, paired):
    """The bootstrap written as an explicit loop over replicates with index resampling, drawing the
    same multinomial counts as the library (so the replicates must agree exactly)."""
    rng = np.random.default_rng(seed)
    t = a.shape[1]
    ct = rng.multinomial(t, np.full(t, 1 / t), size=n_boot)
    cs_a = rng.multinomial(a.shape[0], np.full(a.shape[0], 1 / a.shape[0]), size=n_boot)
    cs_b = None
    if b is not None and not paired:
        cs_b = rng.multinomial(b.shape[0], np.full(b.shape[0], 1 / b.shape[0]), size=n_boot)
    reps = []
    for r in range(n_boot):
        songs = np.repeat(np.arange(t), ct[r])
        seeds_a = np.repeat(np.arange(a.shape[0]), cs_a[r])
        if b is None:
            reps.append(a[np.ix_(seeds_a, songs)].mean())
        elif paired:
            reps.append((a - b)[np.ix_(seeds_a, songs)].mean())
        else:
            seeds_b = np.repeat(np.arange(b.shape[0]), cs_b[r])
            reps.append(a[np.ix_(seeds_a, songs)].mean() - b[np.ix_(seeds_b, songs)].mean())
    return np.asarray(reps)


@pytest.mark.parametrize("mode", ["one", "paired", "two"])
def test_bootstrap_equals_an_explicit_resampling_loop(mode):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(7, 5))
    b = None if mode == "one" else rng.normal(size=(7 if mode == "paired" else 4, 5)) + 0.3
    n_boot = 300
    got = stats.seed_song_bootstrap(a, b, paired_seeds=mode == "paired", n_boot=n_boot, seed=3)
    reps = _loop_replicates(a, b, n_boot, 3, mode == "paired")
    lo, hi = np.quantile(reps, [0.025, 0.975])
    assert got["lo"] == pytest.approx(lo, abs=1e-12) and got["hi"] == pytest.approx(hi, abs=1e-12)
    expected_mean = a.mean() if b is None else a.mean() - b.mean()
    assert got["mean"] == pytest.approx(expected_mean)
    assert got["n_songs"] == 5


def test_constant_tables_give_a_point_interval_and_shift_with_the_data():
    a = np.full((6, 4), 0.7)
    iv = stats.seed_song_bootstrap(a, np.full((3, 4), 0.2))
    assert iv["lo"] == pytest.approx(0.5) and iv["hi"] == pytest.approx(0.5) and stats.sign(iv) == 1
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 6))
    base, shifted = stats.seed_song_bootstrap(x), stats.seed_song_bootstrap(x + 2.0)
    assert shifted["lo"] == pytest.approx(base["lo"] + 2.0) and shifted["hi"] == pytest.approx(base["hi"] + 2.0)


def test_seed_only_width_matches_the_normal_approximation():
    """One song: the bootstrap of a mean over n seeds has SE ≈ sd * sqrt((n - 1) / n) / sqrt(n)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 1))
    iv = stats.seed_song_bootstrap(x, n_boot=20000, seed=5)
    se = x.std(ddof=0) / np.sqrt(200)
    assert (iv["hi"] - iv["lo"]) / 2 == pytest.approx(1.96 * se, rel=0.06)


def test_song_variation_widens_the_interval():
    """Identical seeds but songs that differ: only the song resampling can make the interval wide."""
    songs = np.array([0.1, 0.9, 0.4, 0.6, 0.2, 0.8])
    table = np.tile(songs, (8, 1))
    iv = stats.seed_song_bootstrap(table)
    assert iv["hi"] - iv["lo"] > 0.2
    one_song = stats.seed_song_bootstrap(table[:, :1])
    assert one_song["hi"] - one_song["lo"] == pytest.approx(0.0, abs=1e-12)


def test_paired_seeds_cancel_a_shared_seed_effect():
    rng = np.random.default_rng(4)
    seed_effect = rng.normal(scale=5.0, size=(12, 1))
    a = seed_effect + 1.0 + 0.01 * rng.normal(size=(12, 3))
    b = seed_effect + 0.01 * rng.normal(size=(12, 3))
    paired = stats.seed_song_bootstrap(a, b, paired_seeds=True)
    unpaired = stats.seed_song_bootstrap(a, b)
    assert stats.sign(paired) == 1 and paired["hi"] - paired["lo"] < 0.05
    assert stats.sign(unpaired) == 0  # without pairing the seed effect swamps the difference


def test_sign_and_determinism():
    assert stats.sign({"lo": 0.1, "hi": 0.2}) == 1
    assert stats.sign({"lo": -0.2, "hi": -0.1}) == -1
    assert stats.sign({"lo": -0.1, "hi": 0.1}) == 0
    x = np.random.default_rng(6).normal(size=(5, 3))
    assert stats.seed_song_bootstrap(x) == stats.seed_song_bootstrap(x)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"a": np.zeros((0, 3))}, "non-empty"),
        ({"a": np.array([[np.nan, 1.0]])}, "NaN or Inf"),
        ({"a": np.ones((2, 3)), "b": np.ones((2, 4))}, "same songs"),
        ({"a": np.ones((2, 3)), "b": np.ones((3, 3)), "paired_seeds": True}, "same seeds"),
        ({"a": np.ones((2, 3)), "confidence": 1.0}, "confidence"),
        ({"a": np.ones((2, 3)), "n_boot": 0}, "n_boot"),
    ],
)
def test_bad_input_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        stats.seed_song_bootstrap(**kwargs)
