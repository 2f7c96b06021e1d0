import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ncajax import models


@pytest.mark.parametrize("name,n_layers", [("dae", 2), ("dae_deep", 4), ("dae_sf", 2)])
def test_shapes_and_layers(name, n_layers):
    n = 12
    model = models.build(name, n)
    params = models.init_params(model, jax.random.key(0))
    x = jnp.abs(jax.random.normal(jax.random.key(1), (5, n)))
    y = model.apply(params, x)
    assert y.shape == (5, n)
    assert bool(jnp.all(y >= 0))
    layers = models.dense_layers(params)
    assert len(layers) == n_layers
    for kernel, bias in layers:
        assert kernel.shape == (n, n) and bias.shape == (n,)


def test_dense_layers_forward_order_reproduces_model():
    n = 9
    model = models.build("dae_deep", n)
    params = models.init_params(model, jax.random.key(3))
    params = jax.tree.map(lambda a: a + 0.01, params)  # non-zero biases
    x = jnp.abs(jax.random.normal(jax.random.key(2), (7, n)))
    h = x
    for kernel, bias in models.dense_layers(params):
        h = jax.nn.relu(h @ kernel + bias)
    np.testing.assert_allclose(h, model.apply(params, x), rtol=1e-5, atol=1e-6)


def test_skip_filter_identity():
    n = 10
    model = models.build("dae_sf", n)
    params = models.init_params(model, jax.random.key(0))
    x = jnp.abs(jax.random.normal(jax.random.key(1), (4, n)))
    mask = model.apply(params, x, method=model.mask)
    np.testing.assert_allclose(model.apply(params, x), x * mask, rtol=1e-6)
    # the mask is the one-layer DAE stack applied to x
    h = x
    for kernel, bias in models.dense_layers(params):
        h = jax.nn.relu(h @ kernel + bias)
    np.testing.assert_allclose(mask, h, rtol=1e-5, atol=1e-6)


def test_xavier_normal_kernels():
    n = 256
    params = models.init_params(models.build("dae", n), jax.random.key(0))
    kernel, _ = models.dense_layers(params)[0]
    # Xavier-normal: std = sqrt(2 / (fan_in + fan_out)) = sqrt(1 / n) (truncation-free normal)
    assert abs(float(jnp.std(kernel)) - np.sqrt(1.0 / n)) < 0.05 * np.sqrt(1.0 / n)


def test_hidden_width_option():
    model = models.build("dae", 6, hidden=4)
    params = models.init_params(model, jax.random.key(0))
    shapes = [k.shape for k, _ in models.dense_layers(params)]
    assert shapes == [(6, 4), (4, 6)]


@pytest.mark.parametrize("bad, message", [(("unet", 8), r"unknown model 'unet'; choose one of"),
                                          (("dae", 0), "n_bins must be a positive integer, got 0")])
def test_build_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        models.build(*bad)


@pytest.mark.parametrize("name", ["dae", "dae_deep", "dae_sf"])
def test_fold_scaling_exact(name):
    """Folded params on raw x == t * model(x / s) (DAEs) and x * m(x / s) (dae_sf), seed axis kept."""
    n = 11
    model = models.build(name, n)
    keys = jax.random.split(jax.random.key(4), 2)
    params = jax.vmap(lambda k: models.init_params(model, k))(keys)
    params = jax.tree.map(lambda a: a + 0.05, params)  # non-zero biases
    rng = np.random.default_rng(5)
    s = rng.uniform(0.01, 3.0, n).astype(np.float32)
    t = rng.uniform(0.01, 3.0, n).astype(np.float32)
    x = np.abs(rng.normal(size=(9, n))).astype(np.float32) * s
    folded = models.fold_scaling(model, params, s, t)
    assert jax.tree.structure(folded) == jax.tree.structure(params)
    for seed in range(2):
        p = jax.tree.map(lambda a, i=seed: a[i], params)
        fp = jax.tree.map(lambda a, i=seed: a[i], folded)
        with jax.default_matmul_precision("highest"):
            if name == "dae_sf":
                want = x * model.apply(p, x / s, method="mask")
            else:
                want = t * model.apply(p, x / s)
            got = model.apply(fp, x)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
        assert float(jnp.max(jnp.abs(want))) > 0  # not vacuous
    # only the layers the scaling touches change
    changed = {"dae": 2, "dae_deep": 2, "dae_sf": 1}[name]
    diff = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(folded),
                                                    strict=True)]
    kernels_and_biases = len(jax.tree.leaves(params))
    assert 1 <= sum(diff) <= 2 * changed and kernels_and_biases >= 4


def test_fold_scaling_refuses_custom_module():
    class Other(models.nn.Module):
        @models.nn.compact
        def __call__(self, x):
            return models.nn.Dense(3)(x)

    with pytest.raises(ValueError, match="recipe='raw'"):
        models.fold_scaling(Other(), {"params": {}}, np.ones(3), np.ones(3))


@pytest.mark.parametrize("name", ["dae", "dae_deep", "dae_sf"])
def test_trainer_starts_the_mask_bias_and_nothing_else(name):
    """TrainConfig.mask_bias: the mask output layer of dae_sf starts at the value, every other bias at
    zero; the DAEs' params are exactly those of a zero start (same kernels, same key)."""
    import optax

    from ncajax.config import TrainConfig
    from ncajax.training._trainer import Trainer, init_states

    n = 11
    model = models.build(name, n)
    state = Trainer(model, TrainConfig(n_seeds=2, mask_bias=0.75)).init()
    zero = init_states(model, optax.adam(1e-3), [0, 1], 0.0)
    for (k, _), (k0, _) in zip(models.dense_layers(state.params), models.dense_layers(zero.params), strict=True):
        np.testing.assert_array_equal(k, k0)
    biases = [np.asarray(b) for _, b in models.dense_layers(state.params)]
    assert all(b.shape == (2, n) for b in biases)
    if name == "dae_sf":
        assert np.all(biases[-1] == 0.75)
        biases = biases[:-1]
    assert all(np.all(b == 0.0) for b in biases)
    # more mask entries start alive than with a zero start (same kernels): relu(h W + 0.75) > 0 wherever
    # relu(h W) > 0, and also where -0.75 < h W <= 0
    if name == "dae_sf":
        x = jnp.abs(jax.random.normal(jax.random.key(5), (256, n)))
        p, p0 = (jax.tree.map(lambda a: a[0], t.params) for t in (state, zero))
        alive, alive0 = (float(jnp.mean(model.apply(q, x, method=model.mask) > 0)) for q in (p, p0))
        assert alive > alive0 + 0.05


def test_mask_bias_option_is_checked():
    from ncajax.config import TrainConfig

    with pytest.raises(ValueError, match="mask_bias"):
        TrainConfig(mask_bias=-1.0)


def test_builtin_names_and_the_per_model_loss():
    """Each built-in module maps back to its name, a custom one to None; the "per_model" loss resolves to
    MODEL_LOSSES for a built-in and to "l1" otherwise, and an explicit loss is never changed."""
    import flax.linen as nn

    from ncajax.config import MODEL_LOSSES, TrainConfig
    from ncajax.training._trainer import Trainer

    for name in ("dae", "dae_deep", "dae_sf"):
        model = models.build(name, 7)
        assert models.builtin_name(model) == name
        assert Trainer(model, TrainConfig()).cfg.loss == MODEL_LOSSES[name]
        assert Trainer(model, TrainConfig(loss="gkl")).cfg.loss == "gkl"
    assert models.builtin_name(models.DAE(n_bins=7, hidden=7, n_encoder=2)) is None
    assert models.builtin_name(nn.Dense(7)) is None
    assert TrainConfig().for_model("my_module").loss == "l1"
    assert {MODEL_LOSSES["dae"], MODEL_LOSSES["dae_sf"]} == {"mse", "l1"}
