"""`ncajax.nca`: mapping matrices of any separator from its frames alone (and of a JAX callable),
the fit / held-out split, the input checks, the files and the script experiments/map_frames.py."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from ncajax.cli import _errors as cli
from ncajax.nca import _frames as frames

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "map_frames.py"
N_FFT, SR = 32, 8000
N = N_FFT // 2 + 1  # 17 bins of 250 Hz
BIN_HZ = SR / N_FFT
FAST = dict(sample_rate=SR, n_fft=N_FFT, methods=("lstsq",))


def banded(n: int = N) -> np.ndarray:
    """A non-negative tridiagonal C: 0.5 on the diagonal, 0.2 on the first off-diagonals."""
    return 0.5 * np.eye(n) + 0.2 * (np.eye(n, k=1) + np.eye(n, k=-1))


def mixture(n_frames: int, seed: int = 0, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).gamma(1.0, 1.0, (n_frames, n)).astype(np.float32)


def songs(n_songs: int, n_frames: int, c: np.ndarray):
    mix = [mixture(n_frames, seed=10 + s) for s in range(n_songs)]
    return mix, [x @ c.T for x in mix]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("map_frames_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------------
# (a), (b), (h): known teachers


def test_linear_teacher_recovered_by_lstsq():
    c = banded()
    x = mixture(400)
    result = frames.map_frames(x, x @ c.T, band_hz=BIN_HZ, **FAST)
    m = result.methods["lstsq"]
    np.testing.assert_allclose(m.matrix, c, atol=1e-4)
    assert m.fit_error < 1e-4 and m.heldout_error < 1e-4 and m.heldout_error_raw < 1e-4
    f = m.functional
    # the band (±1 bin = ±250 Hz) holds all of C; the diagonal alone only part of it
    assert f["keep_band"] == pytest.approx(1.0, abs=1e-3)
    assert f["err_band"] == pytest.approx(f["err_full"], abs=1e-4)
    assert 0.2 < f["keep_diag"] < 0.9
    assert f["keep_diag"] == pytest.approx((f["err_zero"] - f["err_diag"]) / (f["err_zero"] - f["err_full"]))
    assert result.baselines["zero"].heldout_error == pytest.approx(1.0)
    assert m.heldout_error < result.baselines["per_bin_gain"].heldout_error < 1.0
    np.testing.assert_allclose(result.freqs[1:], np.arange(1, N) * BIN_HZ)
    d = result.to_dict()
    assert d["methods"]["lstsq"]["below_baselines"] == {"zero": True, "per_bin_gain": True}
    json.dumps(d)  # JSON-ready


def test_per_bin_mask_teacher_is_diagonal():
    mask = np.linspace(0.1, 0.9, N)
    x = mixture(300, seed=1)
    result = frames.map_frames(x, x * mask, **FAST)
    m = result.methods["lstsq"]
    assert m.functional["keep_diag"] >= 0.99
    np.testing.assert_allclose(np.diag(m.matrix), mask, atol=1e-4)
    np.testing.assert_allclose(result.baselines["per_bin_gain"].gain, mask, atol=1e-4)


def test_student_beats_silence_in_a_few_hundred_steps():
    c = banded()
    x = mixture(300, seed=2)
    result = frames.map_frames(x, x @ c.T, sample_rate=SR, n_fft=N_FFT, methods="student",
                               student_steps=300, learning_rate=1e-2)
    m = result.methods["student"]
    zero = result.baselines["zero"]
    assert m.fit_error < 0.5 * zero.fit_error
    assert m.heldout_error < 0.5 * zero.heldout_error
    assert m.details["steps"] == 300 and isinstance(m.details["converged"], bool)


# --------------------------------------------------------------------------------------------------
# (c): the split


def test_song_split_holds_out_whole_songs():
    c = banded()
    mix, est = songs(4, 60, c)
    result = frames.map_frames(mix, est, songs=["a", "b", "c", "d"], **FAST)
    split = result.split
    assert split["unit"] == "song" and len(split["heldout_songs"]) == 1
    assert not set(split["fit_songs"]) & set(split["heldout_songs"])
    assert split["n_fit_frames"] == 180 and split["n_heldout_frames"] == 60
    assert len(result.methods["lstsq"].heldout_error_per_song) == 1
    # the fit set is exactly the fit songs: the same as fitting them and judging on the held-out song
    names = ["a", "b", "c", "d"]
    held = [names.index(s) for s in split["heldout_songs"]]
    fit = [i for i in range(4) if i not in held]
    same = frames.map_frames(np.concatenate([mix[i] for i in fit]), np.concatenate([est[i] for i in fit]),
                             heldout=([mix[i] for i in held], [est[i] for i in held]), **FAST)
    np.testing.assert_array_equal(same.methods["lstsq"].matrix, result.methods["lstsq"].matrix)
    assert same.split["unit"] == "given"
    # explicit songs, by name and by index
    by_name = frames.map_frames(mix, est, songs=names, heldout=["b", "d"], **FAST)
    by_index = frames.map_frames(mix, est, heldout=[3, 1], **FAST)
    assert by_name.split["heldout_songs"] == ["b", "d"] and by_index.split["heldout_songs"] == [1, 3]
    assert by_name.split["n_fit_frames"] == 120
    # more songs, more held out; the draw follows the seed
    mix8, est8 = songs(8, 30, c)
    drawn = [frames.map_frames(mix8, est8, seed=s, **FAST).split["heldout_songs"] for s in (0, 0, 1)]
    assert len(drawn[0]) == 2 and drawn[0] == drawn[1]


def test_one_song_holds_out_a_time_block():
    c = banded()
    x = mixture(200, seed=3)
    y = np.maximum(x @ c.T - 0.3, 0.0)  # not linear: the split matters for the matrix
    result = frames.map_frames(x, y, heldout_fraction=0.25, **FAST)
    split = result.split
    assert split["unit"] == "time_block" and split["heldout_frames"] == [150, 200]
    assert split["n_fit_frames"] == 150 and split["n_heldout_frames"] == 50
    assert result.methods["lstsq"].heldout_error_per_song is None
    same = frames.map_frames(x[:150], y[:150], heldout=(x[150:], y[150:]), **FAST)
    np.testing.assert_array_equal(same.methods["lstsq"].matrix, result.methods["lstsq"].matrix)
    assert same.methods["lstsq"].heldout_error == pytest.approx(result.methods["lstsq"].heldout_error)


# --------------------------------------------------------------------------------------------------
# (d), (e): bad input


def _bad(mutate):
    x = mixture(60, seed=4)
    args = {"mixture": x, "estimate": 0.5 * x}
    mutate(args)
    return args


BAD_FRAMES = [
    ("3-D", lambda a: a.update(mixture=np.stack([a["mixture"]] * 2)), ["mixture must be 2-D", "one 2-D array per song"]),
    ("frame count", lambda a: a.update(estimate=a["estimate"][:-1]), ["has 60 frames", "has 59", "same STFT"]),
    ("bins differ", lambda a: a.update(estimate=a["estimate"][:, :-1]), ["shape (60, 17)", "(60, 16)"]),
    ("n_fft", lambda a: a.update(mixture=a["mixture"][:, :9], estimate=a["estimate"][:, :9]),
     ["9 bins per frame", "n_fft=32", "17", "n_fft = 16"]),
    ("negative", lambda a: a["estimate"].__setitem__((3, 5), -1.0), ["estimate has negative values", "frame 3, bin 5",
                                                                      "np.abs"]),
    ("nan", lambda a: a["mixture"].__setitem__((7, 2), np.nan), ["mixture has 1 NaN/Inf", "frame 7, bin 2"]),
    ("complex", lambda a: a.update(mixture=a["mixture"] + 0j), ["complex", "np.abs"]),
    ("list vs array", lambda a: a.update(estimate=[a["estimate"], a["estimate"]]),
     ["mixture is one array but estimate is a list of 2 songs"]),
    ("underdetermined", lambda a: a.update(mixture=a["mixture"][:20], estimate=a["estimate"][:20]),
     ["15 frames", "N = 17", "underdetermined", "give at least 24 frames"]),
]


@pytest.mark.parametrize("case, mutate, expected", BAD_FRAMES, ids=[c[0] for c in BAD_FRAMES])
def test_bad_frames_one_clear_error(case, mutate, expected):
    args = _bad(mutate)
    with pytest.raises(ValueError) as err:
        frames.map_frames(args["mixture"], args["estimate"], **FAST)
    for text in expected:
        assert text in str(err.value), (case, str(err.value))


def test_bad_frames_name_the_song_and_give_working_values():
    c = banded()
    mix, est = songs(3, 40, c)
    est[1] = est[1].copy()
    est[1][0, 0] = -2.0
    with pytest.raises(ValueError, match=r"estimate \(song 1 'b'\) has negative values"):
        frames.map_frames(mix, est, songs=["a", "b", "c"], **FAST)
    with pytest.raises(ValueError, match=r"mixture \(song 2\) has 40 frames but estimate \(song 2\) has 39"):
        frames.map_frames(mix, [*songs(3, 40, c)[1][:2], songs(1, 39, c)[1][0]], **FAST)
    mix, est = songs(3, 8, c)  # 16 fit frames only after holding one song out
    with pytest.raises(ValueError, match=r"16 frames.*underdetermined.*more or longer songs \(1 more fit frames"):
        frames.map_frames(mix, est, **FAST)
    mix, est = songs(8, 4, c)  # 2 of 8 songs held out: 24 fit frames; 7 songs of 2 frames: 14
    with pytest.raises(ValueError, match="hold out fewer songs"):
        frames.map_frames([m[:2] for m in mix], [e[:2] for e in est], **FAST)
    # one song: a working heldout_fraction is named
    x = mixture(20, seed=5)
    with pytest.raises(ValueError, match=r"heldout_fraction=0\.1\b"):
        frames.map_frames(x, x, **FAST)
    frames.map_frames(x, x, heldout_fraction=0.1, **FAST)  # and it works
    with pytest.raises(ValueError, match="out of range for 3 songs"):
        frames.map_frames(*songs(3, 40, c), heldout=[3], **FAST)
    with pytest.raises(ValueError, match="all 3 songs"):
        frames.map_frames(*songs(3, 40, c), heldout=[0, 1, 2], **FAST)
    with pytest.raises(ValueError, match="sample_rate"):
        frames.map_frames(x, x, sample_rate=0, n_fft=N_FFT)
    with pytest.raises(ValueError, match="transposed"):
        frames.map_frames(mixture(40, seed=6).T, mixture(40, seed=6).T, **FAST)


@pytest.mark.parametrize("methods", [("nca",), ("lstsq", "jacobian"), ("nca", "jacobian")])
def test_frames_alone_refuse_nca_and_jacobian(methods):
    x = mixture(60)
    with pytest.raises(ValueError) as err:
        frames.map_frames(x, x, sample_rate=SR, n_fft=N_FFT, methods=methods)
    text = str(err.value)
    assert "need the separator itself" in text and "map_callable" in text and "'lstsq'" in text
    for m in methods:
        if m != "lstsq":
            assert repr(m) in text
    with pytest.raises(ValueError, match="unknown method"):
        frames.map_frames(x, x, sample_rate=SR, n_fft=N_FFT, methods=("ridge",))


# --------------------------------------------------------------------------------------------------
# (f): a JAX callable


def test_map_callable_equals_map_frames_on_its_outputs():
    c = jnp.asarray(banded())

    def separator(x):
        return jnp.maximum(x @ c.T - 0.2, 0.0)

    mix = [mixture(80, seed=20 + s) for s in range(3)]
    options = dict(sample_rate=SR, n_fft=N_FFT, methods=("lstsq", "student"), student_steps=50,
                   learning_rate=1e-2)
    via_fn = frames.map_callable(separator, mix, **options)
    est = [np.asarray(separator(jnp.asarray(x))) for x in mix]
    via_frames = frames.map_frames(mix, est, **options)
    assert via_fn.source == "callable" and via_frames.source == "frames"
    assert via_fn.split == via_frames.split
    for m in ("lstsq", "student"):
        np.testing.assert_allclose(via_fn.methods[m].matrix, via_frames.methods[m].matrix, rtol=1e-4, atol=1e-5)
        assert via_fn.methods[m].heldout_error == pytest.approx(via_frames.methods[m].heldout_error, rel=1e-4)


def test_map_callable_jacobian_and_nca_refusal():
    c = banded()

    def linear(x):
        return x @ jnp.asarray(c).T

    x = mixture(100, seed=7)
    result = frames.map_callable(linear, x, sample_rate=SR, n_fft=N_FFT, methods=("jacobian",))
    np.testing.assert_allclose(result.methods["jacobian"].matrix, c, atol=1e-6)
    assert result.methods["jacobian"].details["local_spread"] == pytest.approx(0.0, abs=1e-6)
    assert result.methods["jacobian"].heldout_error < 1e-5
    with pytest.raises(ValueError, match="dense-layer weights.*fit_mapping"):
        frames.map_callable(linear, x, sample_rate=SR, n_fft=N_FFT, methods=("nca",))

    def numpy_separator(v):
        return np.asarray(v) * 0.5

    with pytest.raises(ValueError, match="JAX callable.*map_frames"):
        frames.map_callable(numpy_separator, x, sample_rate=SR, n_fft=N_FFT, methods=("lstsq",))


# --------------------------------------------------------------------------------------------------
# (g): files and the script


def test_load_frames_conventions_round_trip(tmp_path):
    c = banded()
    x = mixture(50, seed=8)
    y = (x @ c.T).astype(np.float32)  # load_frames returns float32 frames
    np.save(tmp_path / "mix.npy", x)
    np.save(tmp_path / "est.npy", y)
    got = frames.load_frames(tmp_path / "mix.npy", tmp_path / "est.npy", n_fft=N_FFT)
    np.testing.assert_array_equal(got.mixture, x)
    np.testing.assert_array_equal(got.estimate, y)
    assert got.songs is None
    # a 3-D stack of songs
    np.save(tmp_path / "mix3.npy", np.stack([x, 2 * x]))
    np.save(tmp_path / "est3.npy", np.stack([y, 2 * y]))
    got = frames.load_frames(tmp_path / "mix3.npy", tmp_path / "est3.npy")
    assert isinstance(got.mixture, list) and len(got.mixture) == 2 and got.songs is None
    np.testing.assert_array_equal(got.estimate[1], 2 * y)
    # one .npz with both parts
    np.savez(tmp_path / "both.npz", mixture=x, estimate=y)
    got = frames.load_frames(tmp_path / "both.npz")
    np.testing.assert_array_equal(got.estimate, y)
    # per-song pairs in one .npz, and per-song arrays in two .npz files (matched by name)
    np.savez(tmp_path / "songs.npz", mixture_b=2 * x, estimate_a=y, mixture_a=x, estimate_b=2 * y)
    got = frames.load_frames(tmp_path / "songs.npz")
    assert got.songs == ("b", "a")
    np.testing.assert_array_equal(got.estimate[0], 2 * y)
    np.savez(tmp_path / "m.npz", a=x, b=2 * x)
    np.savez(tmp_path / "e.npz", b=2 * y, a=y)
    got = frames.load_frames(tmp_path / "m.npz", tmp_path / "e.npz")
    assert got.songs == ("a", "b")
    np.testing.assert_array_equal(got.estimate[1], 2 * y)
    # a single array in an .npz, whatever its name
    np.savez(tmp_path / "m1.npz", x)
    got = frames.load_frames(tmp_path / "m1.npz", tmp_path / "est.npy")
    np.testing.assert_array_equal(got.mixture, x)


def test_load_frames_errors_name_the_file(tmp_path):
    x = mixture(30, seed=9)
    np.save(tmp_path / "est.npy", x)
    with pytest.raises(FileNotFoundError, match="nope.npy does not exist"):
        frames.load_frames(tmp_path / "nope.npy", tmp_path / "est.npy")
    with pytest.raises(ValueError, match="est.npy was given without its mixture.*--mixture"):
        frames.load_frames(None, tmp_path / "est.npy")
    np.savez(tmp_path / "only_est.npz", estimate=x)
    with pytest.raises(ValueError, match="only_est.npz holds an estimate .* but no mixture"):
        frames.load_frames(tmp_path / "only_est.npz")
    with pytest.raises(ValueError, match="est.npy is a single .npy array with no estimate"):
        frames.load_frames(tmp_path / "est.npy")
    (tmp_path / "bad.npy").write_bytes(b"not numpy at all")
    with pytest.raises(ValueError, match="cannot read the mixture file .*bad.npy.*re-save"):
        frames.load_frames(tmp_path / "bad.npy", tmp_path / "est.npy")
    np.savez(tmp_path / "ok.npz", mixture=x, estimate=x)
    (tmp_path / "cut.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:200])
    with pytest.raises(ValueError, match="cannot read the mixture file .*cut.npz"):
        frames.load_frames(tmp_path / "cut.npz")
    np.save(tmp_path / "flat.npy", x[0])
    with pytest.raises(ValueError, match="mixture array in .*flat.npy has shape"):
        frames.load_frames(tmp_path / "flat.npy", tmp_path / "est.npy")
    np.save(tmp_path / "neg.npy", -x)
    with pytest.raises(ValueError, match="estimate file .*neg.npy has negative values"):
        frames.load_frames(tmp_path / "est.npy", tmp_path / "neg.npy")
    with pytest.raises(ValueError, match="mixture file .*est.npy has 17 bins per frame, but n_fft=64"):
        frames.load_frames(tmp_path / "est.npy", tmp_path / "est.npy", n_fft=64)
    np.savez(tmp_path / "m.npz", a=x, b=x)
    np.savez(tmp_path / "e.npz", a=x, c=x)
    with pytest.raises(ValueError, match=r"\['b'\] have no estimate, \['c'\] have no mixture"):
        frames.load_frames(tmp_path / "m.npz", tmp_path / "e.npz")
    (tmp_path / "frames.txt").write_text("1 2 3")
    with pytest.raises(ValueError, match="frames.txt is not a .npy or .npz file"):
        frames.load_frames(tmp_path / "frames.txt", tmp_path / "est.npy")


def test_script_end_to_end(tmp_path, script):
    c = banded()
    mix, est = songs(3, 60, c)
    np.savez(tmp_path / "mix.npz", **{f"song{i}": m for i, m in enumerate(mix)})
    np.savez(tmp_path / "est.npz", **{f"song{i}": e for i, e in enumerate(est)})
    out = tmp_path / "out"
    summary = script.main(["--mixture", str(tmp_path / "mix.npz"), "--estimate", str(tmp_path / "est.npz"),
                           "--sample-rate", str(SR), "--n-fft", str(N_FFT), "--out", str(out),
                           "--student-steps", "50", "--heldout-songs", "song2"])
    written = json.loads((out / "mapping.json").read_text())
    assert written == json.loads(json.dumps(summary))
    assert written["split"]["heldout_songs"] == ["song2"] and set(written["methods"]) == {"lstsq", "student"}
    arrays = np.load(out / "matrices.npz")
    assert set(arrays.files) == {"lstsq", "student", "per_bin_gain", "frequencies_hz"}
    np.testing.assert_allclose(arrays["lstsq"], c, atol=1e-4)
    for name in ("frame_mapping_matrices", "frame_mapping_errors"):
        for ext in ("png", "pdf"):
            assert (out / f"{name}.{ext}").stat().st_size > 0


@pytest.mark.parametrize("argv_tail, expected", [
    (["--methods", "nca"], "need the separator itself"),
    (["--estimate", "EST"], "without its mixture"),
    (["--mixture", "MISSING", "--estimate", "EST"], "does not exist"),
    (["--mixture", "NEG", "--estimate", "EST"], "negative values"),
])
def test_script_bad_input_one_line_nothing_written(tmp_path, script, capsys, argv_tail, expected):
    x = mixture(60, seed=11)
    np.save(tmp_path / "est.npy", x)
    np.save(tmp_path / "neg.npy", -x)
    names = {"EST": tmp_path / "est.npy", "NEG": tmp_path / "neg.npy", "MISSING": tmp_path / "missing.npy"}
    tail = [str(names.get(a, a)) for a in argv_tail]
    if "--mixture" not in tail and "--estimate" not in tail:
        tail += ["--mixture", str(tmp_path / "est.npy"), "--estimate", str(tmp_path / "est.npy")]
    out = tmp_path / "out"
    code = cli.run_guarded(script.main, ["--sample-rate", str(SR), "--n-fft", str(N_FFT), "--out", str(out), *tail])
    err = capsys.readouterr().err.strip()
    assert code == cli.EXIT_USER_ERROR
    assert err.startswith("error: ") and "\n" not in err and expected in err
    assert not out.exists()


def test_outside_separator_example_is_recovered_when_linear():
    """experiments/map_outside_separator.py's NumPy Wiener-style separator: with floor 0 it is the
    linear map diag(mask) K, which least squares recovers from its frames alone (no corpus needed)."""
    path = SCRIPT.parent / "map_outside_separator.py"
    spec = importlib.util.spec_from_file_location("map_outside_separator", path)
    example = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = example
    spec.loader.exec_module(example)
    rng = np.random.default_rng(12)
    sep = example.WienerSeparator(rng.uniform(0.1, 1.0, N), rng.uniform(0.1, 1.0, N), smooth_bins=1, floor=0.0)
    x = mixture(200, seed=13)
    np.testing.assert_allclose(sep(x), x @ sep.linear_part(N).T, rtol=1e-5, atol=1e-6)
    result = frames.map_frames(x, sep(x), band_hz=BIN_HZ, **FAST)
    np.testing.assert_allclose(result.matrix("lstsq"), sep.linear_part(N), atol=1e-4)
    assert result.methods["lstsq"].functional["keep_band"] == pytest.approx(1.0, abs=1e-3)
    assert example.torch_separator(N, 0) is None or callable(example.torch_separator(N, 0))
