"""Tests of ncajax.nca: mapping matrices against closed forms, finite differences and NumPy references."""

from __future__ import annotations

import collections
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ncajax import models
from ncajax.nca import NCA, LeastSquares, MeanJacobian, Student
from ncajax.nca import _closed_forms as closed_forms
from ncajax.nca import _common as fit_common
from ncajax.nca import _couplings as nca

ESTIMATORS = {"nca": NCA, "student": Student, "lstsq": LeastSquares, "jacobian": MeanJacobian}


def estimator(method: str, **options):
    """The estimator of `method` with those of `options` it has (the tests loop over methods)."""
    cls = ESTIMATORS[method]
    return cls(**{k: v for k, v in options.items() if k in {f.name for f in dataclasses.fields(cls)}})


def _frames(seed: int, n_frames: int, n_bins: int) -> np.ndarray:
    return np.abs(np.random.default_rng(seed).normal(size=(n_frames, n_bins))).astype(np.float32)


def _set_layers(params, layers):
    """params with its dense layers (forward order) replaced by `layers` [(kernel (in,out), bias)]."""
    tree = jax.tree_util.tree_map(np.asarray, params)
    nodes = []

    def walk(node):
        if "kernel" in node:
            nodes.append(node)
            return
        for key in models._forward_order(list(node.keys())):
            walk(node[key])

    walk(tree["params"])
    assert len(nodes) == len(layers)
    for node, (k, b) in zip(nodes, layers, strict=True):
        node["kernel"] = jnp.asarray(k, jnp.float32)
        node["bias"] = jnp.asarray(b, jnp.float32)
    return tree


def _model(name: str, n: int, layers=None, seed: int = 0):
    model = models.build(name, n)
    params = models.init_params(model, jax.random.key(seed))
    if layers is not None:
        params = _set_layers(params, layers)
    return model, params


def _numpy_stack(params, x) -> np.ndarray:
    """The dense ReLU stack of `params` in float64 NumPy (a dae's output, a dae_sf's mask)."""
    h = np.asarray(x, np.float64)
    for kernel, bias in models.dense_layers(params):
        h = np.maximum(h @ np.asarray(kernel, np.float64) + np.asarray(bias, np.float64), 0.0)
    return h


def _rel_fro(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def _banded(n: int, width: int) -> np.ndarray:
    i, j = np.indices((n, n))
    return np.where(np.abs(i - j) <= width, 1.0 / (1.0 + np.abs(i - j)), 0.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------- teachers


@pytest.fixture(scope="module")
def diag_teacher():
    n = 16
    d = np.linspace(0.2, 1.5, n).astype(np.float32)
    model, params = _model("dae", n, [(np.eye(n), np.zeros(n)), (np.diag(d), np.zeros(n))])
    return model, params, _frames(0, 300, n), np.diag(d)


def test_diagonal_teacher_closed_forms(diag_teacher):
    model, params, x, truth = diag_teacher
    for ridge in (0.0, 1e-6):
        fit = nca.fit_mapping(model, params, x, LeastSquares(ridge=ridge))
        assert _rel_fro(fit.matrix, truth) <= 1e-3, ridge
        assert isinstance(fit, nca.LeastSquaresFit) and fit.rel_l1_error < 1e-3
        assert not hasattr(fit, "losses") and not hasattr(fit, "converged")  # only its own fields
    jac = nca.fit_mapping(model, params, x, MeanJacobian())
    assert _rel_fro(jac.matrix, truth) <= 1e-3
    assert jac.local_spread < 1e-5  # exactly linear on x >= 0


def test_diagonal_teacher_iterative(diag_teacher):
    model, params, x, truth = diag_teacher
    for method in ("nca", "student"):
        fit = nca.fit_mapping(model, params, x, estimator(method, init='uniform', steps=1500, learning_rate=0.01))
        # Adam on an L1 loss hovers around the optimum at a distance ~ lr: a looser tolerance.
        assert _rel_fro(fit.matrix, truth) <= 0.05, method
        assert fit.losses.shape == (1500,) and fit.losses[-1] < 0.05 * fit.losses[0]


def test_lstsq_ridge_matches_float64_formula():
    n = 12
    x = _frames(1, 80, n)
    y = _frames(2, 80, n) + x @ _banded(n, 2).T
    ridge = 1e-2
    fit = nca.fit_mapping(lambda v: v, None, x, LeastSquares(ridge=ridge), target=y)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    g = x64.T @ x64
    ct = np.linalg.solve(g + ridge * np.trace(g) / n * np.eye(n), x64.T @ y64)
    assert _rel_fro(fit.matrix, ct.T) <= 1e-4
    assert fit.ridge == ridge and fit.to_dict()["ridge"] == ridge


@pytest.fixture(scope="module")
def banded_teacher():
    n, width = 32, 2
    b = _banded(n, width)  # symmetric, so kernel = B.T = B
    model, params = _model("dae", n, [(b, np.zeros(n)), (b, np.zeros(n))])
    return model, params, _frames(3, 256, n), b @ b, 2 * width


def test_banded_teacher_closed_forms_are_banded(banded_teacher):
    model, params, x, truth, band = banded_teacher
    i, j = np.indices(truth.shape)
    outside = np.abs(i - j) > band
    for method in ("lstsq", "jacobian"):
        c = nca.fit_mapping(model, params, x, estimator(method, ridge=1e-06)).matrix
        assert _rel_fro(c, truth) <= 1e-3, method
        assert np.sum(c[outside] ** 2) / np.sum(c**2) < 1e-6, method


def test_banded_teacher_nca_uniform_fits_xavier_runs(banded_teacher):
    model, params, x, _, _ = banded_teacher
    fit = nca.fit_mapping(model, params, x, NCA(steps=3000, learning_rate=0.001, init='uniform'))
    assert fit.rel_l1_error <= 0.01
    held_out = _frames(4, 128, x.shape[1])
    y_held = _numpy_stack(params, held_out)
    assert float(nca.relative_l1(y_held, nca.apply_matrix(fit.matrix, held_out))) <= 0.02

    runs = [
        nca.fit_mapping(model, params, x, NCA(steps=300, learning_rate=0.001), seed=s) for s in (5, 5, 6)
    ]
    assert np.all(np.isfinite(runs[0].matrix)) and runs[0].init == "xavier_normal"
    np.testing.assert_array_equal(runs[0].matrix, runs[1].matrix)
    np.testing.assert_array_equal(runs[0].losses, runs[1].losses)
    assert not np.array_equal(runs[0].matrix, runs[2].matrix)


# ---------------------------------------------------------------------------------------------- NCA formula


def _numpy_nca(ps, layers, bias_axis):
    """The authors' MappingEstimator forward in NumPy: M = I; M <- relu((W + b) P^T) * W @ M."""
    m = np.eye(layers[0][0].shape[0])
    for p, (kernel, bias) in zip(ps, layers, strict=True):
        w = kernel.T
        a = w + bias if bias_axis == "input" else w + bias[:, None]  # numpy broadcasts like torch
        m = (np.maximum(a @ p.T, 0.0) * w) @ m
    return m


def test_nca_gradient_matches_finite_differences_and_numpy_formula():
    n = 4
    rng = np.random.default_rng(7)
    with jax.enable_x64(True):
        layers = [(rng.normal(size=(n, n)), rng.normal(size=n)) for _ in range(2)]
        ps = [rng.normal(size=(n, n)) for _ in range(2)]
        x = np.abs(rng.normal(size=(10, n)))
        target = np.abs(rng.normal(size=(10, n)))
        jlayers = [(jnp.asarray(k), jnp.asarray(b)) for k, b in layers]
        for bias_axis in ("output", "input"):
            c = nca.nca_matrix([jnp.asarray(p) for p in ps], jlayers, bias_axis=bias_axis)
            assert c.dtype == jnp.float64
            np.testing.assert_allclose(c, _numpy_nca(ps, layers, bias_axis), rtol=1e-12, atol=1e-12)

            jitted = jax.jit(nca.nca_loss, static_argnames="bias_axis")

            def loss(qs, jitted=jitted, bias_axis=bias_axis):
                return float(jitted(qs, x, target, jlayers, bias_axis=bias_axis))

            grads = jax.grad(nca.nca_loss)(
                [jnp.asarray(p) for p in ps], x, target, jlayers, bias_axis=bias_axis
            )
            eps = 1e-6
            for li in range(2):
                fd = np.zeros((n, n))
                for idx in np.ndindex(n, n):
                    plus = [p.copy() for p in ps]
                    minus = [p.copy() for p in ps]
                    plus[li][idx] += eps
                    minus[li][idx] -= eps
                    fd[idx] = (loss(plus) - loss(minus)) / (2 * eps)
                np.testing.assert_allclose(grads[li], fd, rtol=1e-6, atol=1e-8)
                assert np.abs(fd).max() > 1e-3  # the gradient is not trivially zero


def test_fit_starts_from_documented_uniform_init_and_loss(banded_teacher):
    model, params, x, _, _ = banded_teacher
    n = x.shape[1]
    for bias_axis in ("output", "input"):
        fit = nca.fit_mapping(model, params, x, NCA(steps=2, init='uniform', bias_axis=bias_axis))
        layers = [
            (np.asarray(k, np.float64), np.asarray(b, np.float64))
            for k, b in models.dense_layers(params)
        ]
        c0 = _numpy_nca([np.full((n, n), 1.0 / n)] * 2, layers, bias_axis)
        y = _numpy_stack(params, x)
        loss0 = np.abs(y - x @ c0.T).sum() / x.shape[0]
        np.testing.assert_allclose(fit.losses[0], loss0, rtol=1e-5)
        assert fit.bias_axis == bias_axis


# ---------------------------------------------------------------------------------------------- batching


@pytest.fixture(params=["vmap", "grouped"])
def fit_grouping(request, monkeypatch):
    """Run a test with all K fits vmapped at once, and with CPU groups of one fit (lax.map)."""
    if request.param == "grouped":
        monkeypatch.setattr(fit_common, "_CPU_GROUP_BYTES", 1)
    jax.clear_caches()  # the group size is read when a program is traced
    yield request.param
    jax.clear_caches()


def test_vmapped_fits_equal_single_fits(fit_grouping):
    n, k = 16, 3
    model = models.build("dae", n)
    stacked = jax.vmap(lambda key: models.init_params(model, key))(
        jax.random.split(jax.random.key(1), k)
    )
    xs = np.stack([_frames(10 + i, 64, n) for i in range(k)])
    seeds = (3, 1, 4)
    kw = dict(steps=60, learning_rate=1e-2)
    for method in ESTIMATORS:
        batch = nca.fit_mapping(model, stacked, xs, estimator(method, **kw), params_axis=0, seed=seeds)
        assert batch.matrix.shape == (k, n, n) and np.shape(batch.rel_l1_error) == (k,)
        for i in range(k):
            params_i = jax.tree_util.tree_map(lambda a, i=i: a[i], stacked)
            single = nca.fit_mapping(model, params_i, xs[i], estimator(method, **kw), seed=seeds[i])
            np.testing.assert_allclose(batch.matrix[i], single.matrix, rtol=2e-4, atol=2e-5)
            np.testing.assert_allclose(batch.rel_l1_error[i], single.rel_l1_error, rtol=1e-4)
            if method in ("nca", "student"):
                np.testing.assert_allclose(batch.losses[i], single.losses, rtol=1e-4)
            if method == "jacobian":
                np.testing.assert_allclose(batch.local_spread[i], single.local_spread, rtol=1e-4)
    # params_axis=None with one seed: every fit starts alike; identical data gives identical fits.
    same = nca.fit_mapping(
        model, jax.tree_util.tree_map(lambda a: a[0], stacked), np.stack([xs[0]] * 2), NCA(**kw)
    )
    np.testing.assert_array_equal(same.matrix[0], same.matrix[1])
    assert same.seed == 0 and same.to_dict()["n_fits"] == 2


def test_compiles_once_per_shape(monkeypatch):
    """Each single fit, wrapped in a trace counter, is traced once for two calls with new values."""
    traces = collections.Counter()

    def counted(module, name):
        single = getattr(module, name)

        def wrapper(*args, **kwargs):
            traces[name] += 1  # runs only while jax traces the program
            return single(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    for module, name in [(nca, "_nca_single"), (closed_forms, "_lstsq_single"),
                         (closed_forms, "_jacobian_single"), (closed_forms, "_stream_single")]:
        counted(module, name)
    n = 11  # a size no other test uses
    model, params = _model("dae", n)
    x = _frames(5, 37, n)
    a = nca.fit_mapping(model, params, x, NCA(steps=20, learning_rate=0.01))
    b = nca.fit_mapping(model, params, x * 2, NCA(steps=20, learning_rate=0.003), seed=4)
    for v in (x, x + 1):
        nca.fit_mapping(model, params, v, MeanJacobian())
        nca.fit_mapping(model, params, v, LeastSquares())
        nca.jacobian_stream(model, params, v, fn=jnp.trace)
    assert traces == {name: 1 for name in
                      ("_nca_single", "_lstsq_single", "_jacobian_single", "_stream_single")}
    assert not np.array_equal(a.matrix, b.matrix)


# ---------------------------------------------------------------------------------------------- jacobian


def test_jacobian_of_linear_and_two_regime_callables():
    n = 8
    rng = np.random.default_rng(3)
    a = rng.normal(size=(n, n)).astype(np.float32)
    b = rng.normal(size=(n, n)).astype(np.float32)
    x = np.concatenate([_frames(6, 20, n) * 0.1, _frames(7, 20, n) + 5.0])  # sums < 4 | > 40
    lin = nca.fit_mapping(lambda v: v @ a.T, None, x, MeanJacobian(chunk_size=7))
    np.testing.assert_allclose(lin.matrix, a, rtol=1e-5, atol=1e-6)
    assert lin.local_spread < 1e-5 and lin.rel_l1_error < 1e-5

    def two(v):
        return jnp.where(v.sum(-1, keepdims=True) > 20.0, v @ a.T, v @ b.T)

    fit = nca.fit_mapping(two, None, x, MeanJacobian(chunk_size=7))  # uneven chunks + padding
    jbar = (a + b) / 2
    np.testing.assert_allclose(fit.matrix, jbar, rtol=1e-5, atol=1e-6)
    expected = np.linalg.norm(a - b) / 2 / np.linalg.norm(jbar)
    np.testing.assert_allclose(fit.local_spread, expected, rtol=1e-4)

    traces = nca.jacobian_stream(two, None, x, fn=jnp.trace, chunk_size=7)
    want = np.where(x.sum(1) > 20.0, np.trace(a), np.trace(b))
    np.testing.assert_allclose(traces, want, rtol=1e-5)


def test_dae_sf_jacobian_parts_and_per_frame_reference():
    n = 10
    model, params = _model("dae_sf", n, seed=2)
    params = jax.tree_util.tree_map(lambda p: p + 0.05, params)  # non-zero biases
    x = _frames(8, 30, n)
    fit = nca.fit_mapping(model, params, x, MeanJacobian(chunk_size=8))
    assert set(fit.parts) == {"mask", "mask_jacobian"}
    np.testing.assert_allclose(
        fit.parts["mask"] + fit.parts["mask_jacobian"], fit.matrix, atol=1e-6
    )
    masks = _numpy_stack(params, x)
    np.testing.assert_allclose(fit.parts["mask"], np.diag(masks.mean(0)), rtol=1e-5, atol=1e-7)
    with jax.default_matmul_precision("highest"):  # GPUs would use TF32 otherwise
        per_frame = np.asarray(jax.vmap(jax.jacrev(lambda v: model.apply(params, v)))(x))
    np.testing.assert_allclose(fit.matrix, per_frame.mean(0), rtol=1e-4, atol=1e-6)
    dev = np.sqrt(np.mean(np.sum((per_frame - per_frame.mean(0)) ** 2, axis=(1, 2))))
    np.testing.assert_allclose(fit.local_spread, dev / np.linalg.norm(per_frame.mean(0)), rtol=1e-4)
    np.testing.assert_allclose(
        nca.jacobian_stream(model, params, x, fn=lambda j: j, chunk_size=8), per_frame,
        rtol=1e-4, atol=1e-6,
    )


def test_callable_api_equals_module_api():
    n = 12
    for name in ("dae_sf",):  # dae's Jacobian path is checked against callables elsewhere
        model, params = _model(name, n, seed=3)
        x = _frames(9, 50, n)
        for method in ("jacobian", "lstsq", "student"):
            est = estimator(method, steps=40, learning_rate=1e-2)
            mod = nca.fit_mapping(model, params, x, est)
            fun = nca.fit_mapping(lambda v, p=params, m=model: m.apply(p, v), None, x, est)
            np.testing.assert_allclose(fun.matrix, mod.matrix, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- dae_sf NCA


def test_dae_sf_nca_uses_only_mask_layers():
    n = 8
    model, params = _model("dae_sf", n, seed=4)
    layers = models.dense_layers(params)
    assert len(layers) == 2  # the masker's encoder_0 and decoder
    x = _frames(11, 40, n)
    fit = nca.fit_mapping(model, params, x, NCA(steps=5, init='uniform', learning_rate=0.001))
    layers64 = [(np.asarray(k, np.float64), np.asarray(b, np.float64)) for k, b in layers]
    c0 = _numpy_nca([np.full((n, n), 1.0 / n)] * 2, layers64, "output")
    y = x * _numpy_stack(params, x)  # the target is the model output x * m(x)
    np.testing.assert_allclose(fit.losses[0], np.abs(y - x @ c0.T).sum() / len(x), rtol=1e-5)

    # All mask weights zero: mask = relu(b_dec), the model is diag(mask) but the NCA product is 0.
    b_dec = np.linspace(0.1, 1.0, n)
    zero_model, zero_params = _model(
        "dae_sf", n, [(np.zeros((n, n)), np.ones(n)), (np.zeros((n, n)), b_dec)]
    )
    zero = nca.fit_mapping(zero_model, zero_params, x, NCA(steps=20, learning_rate=0.01))
    np.testing.assert_array_equal(zero.matrix, 0.0)
    jac = nca.fit_mapping(zero_model, zero_params, x, MeanJacobian())
    np.testing.assert_allclose(jac.matrix, np.diag(b_dec), rtol=1e-6)
    np.testing.assert_allclose(jac.parts["mask_jacobian"], 0.0)


# ---------------------------------------------------------------------------------------------- checks


def test_converged_definition():
    flat = np.concatenate([np.linspace(10, 1, 90), np.ones(10)])
    falling = np.linspace(10, 1, 100)
    assert nca._converged(flat) is True and nca._converged(falling) is False
    np.testing.assert_array_equal(nca._converged(np.stack([flat, falling])), [True, False])


def test_input_validation():
    n = 8
    model, params = _model("dae", n)
    x = _frames(12, 20, n)
    bad_nan = x.copy()
    bad_nan[3, 2] = np.nan
    cases = [
        (dict(x=bad_nan), "NaN"),
        (dict(x=-x), "negative"),
        (dict(x=x[0]), "nb_frames, nb_bins"),
        (dict(x=_frames(1, 20, n + 1)), "n_bins=8"),
        (dict(estimator="nca"), "estimator must be one of"),
        (dict(target=x[:10]), "target shape"),
        (dict(target=bad_nan), "NaN"),
        (dict(params_axis=0), "leading K axis"),
        (dict(seed=(1, 2)), "sequence of seeds"),
        (dict(params=None), "needs its params"),
    ]
    for overrides, message in cases:
        args = dict(model=model, params=params, x=x, estimator=NCA()) | overrides
        with pytest.raises(ValueError, match=message):
            nca.fit_mapping(args.pop("model"), args.pop("params"), args.pop("x"), args.pop("estimator"), **args)
    # every estimator checks its own options when made, naming the field
    for make, message in [
        (lambda: NCA(init="ones"), "NCA: unknown init"),
        (lambda: NCA(init="zeros"), "shuts every NCA gate"),
        (lambda: NCA(bias_axis="rows"), "NCA: unknown bias_axis"),
        (lambda: NCA(steps=0), "NCA: steps must be a positive integer"),
        (lambda: Student(steps=2.5), "Student: steps must be a positive integer"),
        (lambda: NCA(learning_rate=0.0), "NCA: learning_rate must be a positive number"),
        (lambda: Student(learning_rate=float("nan")), "Student: learning_rate"),
        (lambda: LeastSquares(ridge=-1.0), "LeastSquares: ridge must be None"),
        (lambda: MeanJacobian(chunk_size=0), "MeanJacobian: chunk_size must be a positive integer"),
        (lambda: NCA(name=""), "NCA: name must be a non-empty string"),
    ]:
        with pytest.raises(ValueError, match=message):
            make()
    assert Student(init="zeros").init == "zeros"  # a zero student matrix still gets gradients
    with pytest.raises(ValueError, match=r"Student\(\)"):
        nca.fit_mapping(lambda v: v, None, x, NCA())
    wide = models.build("dae", n, hidden=6)
    with pytest.raises(ValueError, match="square layers"):
        nca.fit_mapping(wide, models.init_params(wide, jax.random.key(0)), x, NCA(bias_axis='input'))
    with pytest.raises(ValueError, match="params_axis=0"):
        nca.fit_mapping(model, params, np.stack([x, x]), NCA(), params_axis=0)
    with pytest.raises(ValueError, match="square layers"):  # the authors' broadcast is the default
        nca.fit_mapping(wide, models.init_params(wide, jax.random.key(0)), x, NCA(steps=3))
    # A non-square hidden layer is fine with the per-output-unit variant.
    ok = nca.fit_mapping(wide, models.init_params(wide, jax.random.key(0)), x, NCA(steps=3, bias_axis='output'))
    assert ok.matrix.shape == (n, n)


def test_single_fit_traced_once_chex(monkeypatch):
    """chex.assert_max_traces on the single fit: repeated calls with the same shapes do not retrace."""
    import chex

    chex.clear_trace_counter()
    monkeypatch.setattr(nca, "_nca_single", chex.assert_max_traces(nca._nca_single, n=1))
    monkeypatch.setattr(nca, "_student_single", chex.assert_max_traces(nca._student_single, n=1))
    jax.clear_caches()
    model, params = _model("dae", 13)
    for scale in (1.0, 2.0, 3.0):
        # a new estimator object with equal options (and another name) is the same static setting
        nca.fit_mapping(model, params, _frames(6, 29, 13) * scale, NCA(steps=5, learning_rate=0.01, name=f"a{scale}"))
        nca.fit_mapping(model, params, _frames(6, 29, 13) * scale, Student(steps=5))
    jax.clear_caches()


def test_silent_targets_give_no_nan():
    x = _frames(1, 20, 6)
    zero = lambda v: 0.0 * v  # noqa: E731
    for method in ("lstsq", "jacobian", "student"):
        fit = nca.fit_mapping(zero, None, x, estimator(method, steps=5, learning_rate=0.01))
        assert not np.isnan(fit.rel_l1_error), method
        if method == "jacobian":
            assert float(fit.local_spread) == 0.0
    np.testing.assert_array_equal(nca.relative_l1(np.zeros((2, 3)), np.ones((2, 3))), np.inf)


# ---------------------------------------------------------------------------------------------- lstsq ridge

_EPS32 = float(np.finfo(np.float32).eps)


def _rel_l1_64(x, y, c) -> float:
    """Relative L1 error of x @ c.T against y, in float64."""
    y = np.asarray(y, np.float64)
    return float(np.abs(y - np.asarray(x, np.float64) @ np.asarray(c, np.float64).T).sum() / np.abs(y).sum())


def test_lstsq_default_ridge_recovers_exact_linear_teachers():
    """Issue 12: the old default ridge=1e-3 missed an exactly linear teacher by ~1e-3 relative L1."""
    n = 48
    c = _banded(n, 4)
    x = _frames(20, 512, n)
    by_target = nca.fit_mapping(lambda v: v, None, x, LeastSquares(), target=x @ c.T)
    by_callable = nca.fit_mapping(lambda v: v @ c.T, None, x, LeastSquares())
    for fit in (by_target, by_callable):
        assert fit.rel_l1_error <= 1e-4
        assert _rel_fro(fit.matrix, c) <= 1e-3
        assert fit.ridge == pytest.approx(n * _EPS32)  # the automatic ridge actually used
        assert fit.to_dict()["ridge"] == fit.ridge
    old = nca.fit_mapping(lambda v: v, None, x, LeastSquares(ridge=0.001), target=x @ c.T)
    assert old.rel_l1_error > 10 * by_target.rel_l1_error  # an explicit ridge is still honoured


def _ill_conditioned_inputs(n: int):
    rng = np.random.default_rng(21)
    few = _frames(22, n // 2, n)  # fewer frames than bins: rank n / 2
    dup = _frames(23, 300, n)
    dup[:, 5] = dup[:, 4]  # a duplicated bin
    dup[:, 7] = 2 * dup[:, 3]  # a collinear bin
    dup[:, 20:24] = 0.0  # bins that are always zero
    loud = _frames(24, 400, n) * 10.0 ** rng.uniform(-6, 3, size=(400, 1))  # frames 1e-6 .. 1e3
    bins = _frames(25, 400, n) * 10.0 ** rng.uniform(-6, 3, size=(1, n))  # bins 1e-6 .. 1e3
    low = np.abs(rng.normal(size=(2000, 5))) @ np.abs(rng.normal(size=(5, n)))  # rank 5
    one = np.repeat(_frames(26, 300, 1), n, axis=1)  # every bin equal: rank 1
    cases = dict(few=few, dup=dup, loud=loud, bins=bins, low=low, one=one)
    return {k: v.astype(np.float32) for k, v in cases.items()}


def test_lstsq_default_ridge_is_stable_on_ill_conditioned_inputs():
    n = 48
    c = _banded(n, 4)
    for name, x in _ill_conditioned_inputs(n).items():
        targets = dict(linear=x @ c.T, nonlinear=np.sqrt(x @ c.T))
        for kind, y in targets.items():
            y = y.astype(np.float32)
            fit = nca.fit_mapping(lambda v: v, None, x, LeastSquares(), target=y)
            assert np.all(np.isfinite(fit.matrix)) and np.isfinite(fit.rel_l1_error), (name, kind)
            assert fit.ridge >= n * _EPS32 * (1 - 1e-6), (name, kind)
            ref = np.linalg.lstsq(x.astype(np.float64), y.astype(np.float64), rcond=None)[0].T
            err, ref_err = _rel_l1_64(x, y, fit.matrix), _rel_l1_64(x, y, ref)
            # Tightest: "low" nonlinear, 0.1340 vs 0.1330, where float64 fits the float32 rounding of
            # the rank-5 frames with a matrix of norm ~7e6 (ours: ~1.2).
            assert err <= 1.02 * ref_err + 1e-4, (name, kind, err, ref_err)
            assert abs(fit.rel_l1_error - err) <= 1e-5, (name, kind)
            if kind == "linear":
                assert err <= 1e-4, (name, err)


def test_lstsq_automatic_ridge_grows_on_breakdown():
    """Started far below N * eps on rank-deficient frames, the Cholesky safeguard raises the ridge."""
    n = 48
    x = _frames(22, n // 2, n)
    y = x @ _banded(n, 4).T
    start = 0.1 * n * _EPS32
    single = jax.jit(lambda *a: closed_forms._lstsq_single(*a, mode="auto"))
    c, err, used = single(jnp.asarray(x), jnp.asarray(y), jnp.float32(start))
    assert float(used) >= 10 * start * (1 - 1e-6)
    assert np.all(np.isfinite(np.asarray(c))) and float(err) <= 1e-4


@pytest.mark.parametrize("ridge", [None, 0.0, 1e-3])
def test_lstsq_vmapped_equals_loop_of_single_fits(fit_grouping, ridge):
    n, k = 24, 4
    c = _banded(n, 3)
    xs = np.stack([_frames(30 + i, 96, n) for i in range(k)])
    xs[1, :, 5:8] = 0.0  # silent bins in one fit
    xs[2] *= 1e3  # another scale
    ys = np.sqrt(xs @ c.T).astype(np.float32)
    batch = nca.fit_mapping(lambda v: v, None, xs, LeastSquares(ridge=ridge), target=ys)
    assert batch.matrix.shape == (k, n, n) and np.shape(batch.rel_l1_error) == (k,)
    for i in range(k):
        single = nca.fit_mapping(lambda v: v, None, xs[i], LeastSquares(ridge=ridge), target=ys[i])
        np.testing.assert_allclose(batch.matrix[i], single.matrix, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(batch.rel_l1_error[i], single.rel_l1_error, rtol=1e-4)
        assert batch.ridge == single.ridge


def test_lstsq_ridge_validation():
    x = _frames(27, 20, 6)
    for bad in (-1.0, float("nan"), float("inf"), "auto", True):
        with pytest.raises(ValueError, match="ridge must be None"):
            nca.fit_mapping(lambda v: v, None, x, LeastSquares(ridge=bad))


def _authors_forward_numpy(weights, biases, ps):
    """The authors' PyTorch MappingEstimator forward, rendered in NumPy float64: W (out x in), b (out,),
    P (in x in). `W + b` broadcasts b over the last axis (b[j] joins column j), W~ = relu((W + b) P^T) * W,
    M <- W~ M starting from the identity."""
    m = np.eye(weights[0].shape[1])
    for w, b, p in zip(weights, biases, ps, strict=True):
        w_tilde = np.maximum((w + b) @ p.T, 0.0) * w
        m = w_tilde @ m
    return m


@pytest.mark.parametrize("name", ["dae", "dae_deep", "dae_sf"])
def test_nca_matrix_equals_the_authors_forward_pass(name):
    n = 24
    model = models.build(name, n)
    params = models.init_params(model, jax.random.key(3))
    rng = np.random.default_rng(0)
    # distinct non-zero biases, so that adding b[j] to column j differs from adding b[i] to row i
    layers = [(k, b + jnp.asarray(rng.uniform(-0.05, 0.1, size=b.shape), b.dtype))
              for k, b in models.dense_layers(params)]
    ps = [rng.normal(scale=np.sqrt(2.0 / (2 * n)), size=(n, n)) for _ in layers]
    weights = [np.asarray(k, np.float64).T for k, _ in layers]
    biases = [np.asarray(b, np.float64) for _, b in layers]
    expected = _authors_forward_numpy(weights, biases, ps)
    got = np.asarray(nca.nca_matrix([jnp.asarray(p, jnp.float32) for p in ps],
                                    [(jnp.asarray(k), jnp.asarray(b)) for k, b in layers], bias_axis="input"))
    np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max(), rtol=1e-5)
    other = np.asarray(nca.nca_matrix([jnp.asarray(p, jnp.float32) for p in ps],
                                      [(jnp.asarray(k), jnp.asarray(b)) for k, b in layers], bias_axis="output"))
    assert np.abs(other - expected).max() > 1e-3 * np.abs(expected).max()  # the variant is a different map
    x = np.abs(rng.normal(size=(16, n))).astype(np.float32)
    y = np.abs(rng.normal(size=(16, n))).astype(np.float32)
    loss = float(nca.nca_loss([jnp.asarray(p, jnp.float32) for p in ps], x, y,
                              [(jnp.asarray(k), jnp.asarray(b)) for k, b in layers], bias_axis="input"))
    assert loss == pytest.approx(np.abs(y - x @ expected.T).sum() / len(x), rel=1e-5)


@pytest.mark.parametrize("name", ["dae", "dae_deep"])
@pytest.mark.parametrize("bias_axis", ["input", "output"])
def test_nca_chain_order_matches_the_product_form(name, bias_axis):
    """The chain order (frames pushed through the layers, C never formed) gives the loss and gradients
    of the product form (C = W~_L ... W~_1 formed first) to float32 tolerance, and an NCA fit that
    uses it (F < N: chosen automatically) gives the matrix and losses of the same Adam loop run on
    the product form."""
    n, f = 40, 24
    model = models.build(name, n)
    params = jax.tree.map(lambda a: a + 0.03, models.init_params(model, jax.random.key(5)))
    layers = [(jnp.asarray(k), jnp.asarray(b)) for k, b in models.dense_layers(params)]
    rng = np.random.default_rng(11)
    ps = [jnp.asarray(rng.normal(scale=np.sqrt(1.0 / n), size=(n, n)), jnp.float32) for _ in layers]
    x = jnp.asarray(_frames(3, f, n))
    target = jnp.asarray(np.abs(rng.normal(size=(f, n))).astype(np.float32))
    assert nca.chain_order(layers, f) == "chain" and nca.chain_order(layers, 2 * n) == "product"
    values = {}
    for order in ("product", "chain"):
        fn = jax.jit(jax.value_and_grad(
            lambda qs, order=order: nca.nca_loss(qs, x, target, layers, bias_axis=bias_axis, order=order)))
        values[order] = fn(ps)
    (lp, gp), (lc, gc) = values["product"], values["chain"]
    assert float(lc) == pytest.approx(float(lp), rel=1e-5)
    for a, b in zip(gp, gc, strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-5 * np.abs(a).max())
        assert np.abs(np.asarray(a)).max() > 0
    # a whole fit: fit_mapping (auto order = chain here) against the product form's Adam loop
    import optax

    steps, lr = 15, 1e-3
    fit = nca.fit_mapping(model, params, np.asarray(x), NCA(steps=steps, learning_rate=lr, bias_axis=bias_axis), target=np.asarray(target), seed=0)
    key = jax.random.key(0)
    qs = [nca._init_matrix(jax.random.fold_in(key, i), n, "xavier_normal", jnp.float32)
          for i in range(len(layers))]
    opt = optax.adam(lr)
    state = opt.init(qs)
    grad = jax.jit(jax.value_and_grad(
        lambda qs: nca.nca_loss(qs, x, target, layers, bias_axis=bias_axis, order="product")))
    losses = []
    for _ in range(steps):
        loss, g = grad(qs)
        updates, state = opt.update(g, state, qs)
        qs = optax.apply_updates(qs, updates)
        losses.append(float(loss))
    want = np.asarray(nca.nca_matrix(qs, layers, bias_axis=bias_axis))
    np.testing.assert_allclose(fit.losses, losses, rtol=1e-5)
    np.testing.assert_allclose(fit.matrix, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    with pytest.raises(ValueError, match="unknown order"):
        nca.nca_loss(ps, x, target, layers, order="sideways")


def test_fit_mapping_defaults_to_the_authors_bias_broadcast():
    n = 12
    model = models.build("dae", n)
    params = jax.tree.map(lambda a: a + 0.05, models.init_params(model, jax.random.key(1)))
    x = np.abs(np.random.default_rng(2).normal(size=(32, n))).astype(np.float32)
    default = nca.fit_mapping(model, params, x, NCA(steps=5))
    explicit = nca.fit_mapping(model, params, x, NCA(steps=5, bias_axis='input'))
    assert default.bias_axis == "input"
    np.testing.assert_array_equal(default.matrix, explicit.matrix)


# ---------------------------------------------------------------------------------------------- snapshots


@pytest.mark.parametrize("name, fit_grouping", [("dae", "vmap"), ("dae_deep", "vmap"), ("dae_sf", "grouped")],
                         indirect=["fit_grouping"])
def test_snapshots_equal_ordinary_fits_of_that_many_steps(name, fit_grouping):
    """One fit with snapshots gives, at each snapshot, the matrix, fit error and losses of an ordinary
    fit of that many steps with the same keys (the Adam scan only runs in segments)."""
    n, k = 12, 3
    model = models.build(name, n)
    stacked = jax.vmap(lambda key: models.init_params(model, key))(jax.random.split(jax.random.key(2), k))
    stacked = jax.tree.map(lambda a: a + 0.05, stacked)
    xs = np.stack([_frames(20 + i, 48, n) for i in range(k)])
    seeds = (5, 6, 7)
    kw = dict(seed=seeds, params_axis=0)
    snap = nca.fit_mapping(model, stacked, xs, NCA(steps=50, learning_rate=1e-2, snapshots=(30, 0, 7, 50)), **kw)
    assert snap.snapshot_steps == (0, 7, 30, 50)
    assert snap.snapshot_matrices.shape == (k, 4, n, n) and snap.snapshot_rel_l1.shape == (k, 4)
    assert snap.losses.shape == (k, 50) and snap.steps == 50
    np.testing.assert_array_equal(snap.snapshot_matrices[:, -1], snap.matrix)
    for i, steps in enumerate((7, 30, 50)):
        ref = nca.fit_mapping(model, stacked, xs, NCA(steps=steps, learning_rate=1e-2), **kw)
        assert ref.snapshot_steps is None and ref.snapshot_matrices is None
        # the same arithmetic in the same order: equal to float32 rounding (bitwise on this CPU)
        np.testing.assert_allclose(snap.snapshot_matrices[:, i + 1], ref.matrix, rtol=1e-6,
                                   atol=1e-7 * np.abs(ref.matrix).max())
        np.testing.assert_allclose(snap.snapshot_rel_l1[:, i + 1], ref.rel_l1_error, rtol=1e-6)
        np.testing.assert_allclose(snap.losses[:, :steps], ref.losses, rtol=1e-6)
    d = snap.to_dict()
    assert d["snapshot_steps"] == [0, 7, 30, 50] and np.shape(d["snapshot_rel_l1"]) == (k, 4)
    assert "snapshot_steps" not in ref.to_dict()
    student = nca.fit_mapping(model, stacked, xs, Student(steps=20, learning_rate=1e-2, snapshots=(0, 9)), **kw)
    ref = nca.fit_mapping(model, stacked, xs, Student(steps=9, learning_rate=1e-2), **kw)
    np.testing.assert_allclose(student.snapshot_matrices[:, 1], ref.matrix, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name, bias_axis", [("dae", "input"), ("dae_deep", "input"), ("dae_sf", "output")])
def test_step_zero_snapshot_is_the_matrix_at_the_initial_p(name, bias_axis):
    """Step 0: no Adam step, C = nca_matrix at P_l ~ N(0, 1 / in) drawn with fold_in(key(seed), l)
    (PyTorch's xavier_normal_ on square P), recomputed here from jax.random.normal directly."""
    n, seed = 10, 11
    model, params = _model(name, n, seed=1)
    params = jax.tree.map(lambda a: a + 0.05, params)
    x = _frames(3, 40, n)
    fit = nca.fit_mapping(model, params, x, NCA(steps=5, learning_rate=0.01, bias_axis=bias_axis, snapshots=(0, 5)), seed=seed)
    layers = models.dense_layers(params)
    key = jax.random.key(seed)
    ps = [np.asarray(jax.random.normal(jax.random.fold_in(key, i), (kern.shape[0],) * 2, jnp.float32),
                     np.float64) / np.sqrt(kern.shape[0]) for i, (kern, _) in enumerate(layers)]
    with jax.default_matmul_precision("highest"):
        want = nca.nca_matrix([jnp.asarray(p, jnp.float32) for p in ps],
                              [(jnp.asarray(k), jnp.asarray(b)) for k, b in layers], bias_axis=bias_axis)
    np.testing.assert_allclose(fit.snapshot_matrices[0], want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    ref64 = _numpy_nca(ps, [(np.asarray(k, np.float64), np.asarray(b, np.float64)) for k, b in layers], bias_axis)
    np.testing.assert_allclose(fit.snapshot_matrices[0], ref64, rtol=1e-4, atol=1e-5 * np.abs(ref64).max())
    y = np.asarray(model.apply(params, x), np.float64)
    err0 = np.abs(y - x @ ref64.T).sum() / np.abs(y).sum()
    assert fit.snapshot_rel_l1[0] == pytest.approx(err0, rel=1e-4)
    assert fit.losses[0] == pytest.approx(np.abs(y - x @ ref64.T).sum() / len(x), rel=1e-4)
    assert not np.allclose(fit.snapshot_matrices[1], fit.snapshot_matrices[0])  # 5 steps moved it


@pytest.mark.parametrize("kwargs, match", [
    (dict(snapshots=(0, 11)), r"in \[0, steps=10\]"),
    (dict(snapshots=(3, 3)), "distinct"),
    (dict(snapshots=()), "at least one"),
    (dict(snapshots=(-1, 2)), r"in \[0, steps=10\]"),
    (dict(snapshots=(0.5,)), "integers"),
])
def test_snapshot_validation(kwargs, match):
    for cls in (NCA, Student):
        with pytest.raises(ValueError, match=f"{cls.__name__}: snapshots.*" + match):
            cls(steps=10, **kwargs)
    with pytest.raises(TypeError, match="snapshots"):  # the closed forms have no snapshots
        LeastSquares(snapshots=(0, 5))
