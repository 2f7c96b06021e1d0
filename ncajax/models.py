"""The three frame-wise denoising-autoencoder separators of the study, as flax.linen modules.

All map one mixture magnitude frame to one vocal magnitude frame, `(..., nb_bins) -> (..., nb_bins)`,
with ReLU after every layer (the output included), Xavier-normal kernels and zero biases (`bias_init`),
hidden width N by default (the authors' NCA code needs square layers, see `ncajax.nca`). `predict` runs a
model over many frames in jitted chunks.

- `dae`:      encoder_0 (N->H) + decoder (H->N).
- `dae_deep`: encoder_0..2 (N->H, H->H, H->H) + decoder (H->N).
- `dae_sf`:   the `dae` stack computes a mask m(x) >= 0 and the estimate is x * m(x) (skip filtering).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .config import MODEL_NAMES, ModelConfig

__all__ = [
    "DAE",
    "SkipFilterDAE",
    "build",
    "builtin_name",
    "dense_layers",
    "fold_scaling",
    "from_config",
    "init_params",
    "predict",
    "with_mask_bias",
]


class DAE(nn.Module):
    """Dense ReLU stack: `n_encoder` encoder layers of width `hidden` and one decoder layer back to N."""

    n_bins: int
    hidden: int
    n_encoder: int = 1
    bias_init: Callable = nn.initializers.zeros

    def setup(self):
        kinit = nn.initializers.xavier_normal()
        self.encoders = [
            nn.Dense(self.hidden, kernel_init=kinit, bias_init=self.bias_init, name=f"encoder_{i}")
            for i in range(self.n_encoder)
        ]
        self.decoder = nn.Dense(
            self.n_bins, kernel_init=kinit, bias_init=self.bias_init, name="decoder"
        )

    def __call__(self, x: Float[Array, "... nb_bins"]) -> Float[Array, "... nb_bins"]:
        h = x
        for layer in self.encoders:
            h = nn.relu(layer(h))
        return nn.relu(self.decoder(h))


class SkipFilterDAE(nn.Module):
    """Skip-filtering separator: y = x * m(x), m the one-encoder DAE stack."""

    n_bins: int
    hidden: int
    n_encoder: int = 1
    bias_init: Callable = nn.initializers.zeros

    def setup(self):
        self.masker = DAE(self.n_bins, self.hidden, self.n_encoder, self.bias_init, name="masker")

    def mask(self, x: Float[Array, "... nb_bins"]) -> Float[Array, "... nb_bins"]:
        return self.masker(x)

    def __call__(self, x: Float[Array, "... nb_bins"]) -> Float[Array, "... nb_bins"]:
        return x * self.masker(x)


_DEPTH = {"dae": 1, "dae_deep": 3, "dae_sf": 1}


def build(name: str, n_bins: int, *, hidden: int | None = None) -> nn.Module:
    """The separator `name` ("dae", "dae_deep", "dae_sf") for `n_bins` frequency bins."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {MODEL_NAMES}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
    width = n_bins if hidden is None else hidden
    cls = SkipFilterDAE if name == "dae_sf" else DAE
    return cls(n_bins=n_bins, hidden=width, n_encoder=_DEPTH[name])


def from_config(cfg: ModelConfig) -> nn.Module:
    return build(cfg.name, cfg.n_bins, hidden=cfg.hidden)


def init_params(model: nn.Module, key: jax.Array) -> dict:
    """Freshly initialised params of `model` (a pytree with a top-level "params" collection)."""
    return model.init(key, jnp.zeros((1, model.n_bins), jnp.float32))


def with_mask_bias(model: nn.Module, params, value: float):
    """`params` of a `SkipFilterDAE` with its mask's output-layer bias set to `value` everywhere (the
    `mask_bias` start of `TrainConfig`: m(x) starts near `value`, so a positive start keeps the mask
    units alive early in training); any other model's params are returned unchanged. Leading axes are
    kept."""
    if not isinstance(model, SkipFilterDAE):
        return params
    top = dict(params)
    tree = dict(top["params"])
    masker = dict(tree["masker"])
    decoder = dict(masker["decoder"])
    decoder["bias"] = jnp.full_like(decoder["bias"], value)
    masker["decoder"] = decoder
    tree["masker"] = masker
    top["params"] = tree
    return top


def builtin_name(model: nn.Module) -> str | None:
    """The MODEL_NAMES name of a built-in separator module ("dae", "dae_deep", "dae_sf"), or None for any
    other module (e.g. a custom one)."""
    if type(model) is SkipFilterDAE and model.n_encoder == _DEPTH["dae_sf"]:
        return "dae_sf"
    if type(model) is DAE:
        return {depth: name for name, depth in _DEPTH.items() if name != "dae_sf"}.get(model.n_encoder)
    return None


def fold_scaling(model: nn.Module, params, s, t):
    """Fold a per-bin scaling into `model`'s params so that the returned params on raw magnitudes compute
    what `params` computed on standardised ones (the "standardised" training recipe):

    - `DAE` (`dae`, `dae_deep`): `fold(x) = t * f(x / s)`. The first layer takes x / s:
      `(x / s) @ W1 = x @ (diag(1/s) W1)`, so `W1 <- W1 / s[:, None]`; the last layer is a ReLU layer and
      t > 0, so `t * relu(h @ W + b) = relu(h @ (W diag(t)) + t * b)`: `W <- W * t`, `b <- b * t`.
    - `SkipFilterDAE` (`dae_sf`): `fold(x) = x * m(x / s)`. Only the mask network's first layer takes the
      input scaling; its output is a mask (dimensionless), so `t` is not folded anywhere: during training
      `t` only weights the loss, which compares `(x / t) * m(x / s)` with `y / t` (see `ncajax.training`).

    `s`, `t`: positive `(nb_bins,)` arrays. Leading axes of the params (a seed axis) are kept. The result
    has exactly the structure of `params`, so it is again the paper's architecture on raw magnitudes.
    """
    s = jnp.asarray(s, jnp.float32)
    t = jnp.asarray(t, jnp.float32)
    top = dict(params)
    tree = dict(top["params"])
    if isinstance(model, SkipFilterDAE):
        masker = dict(tree["masker"])
        masker["encoder_0"] = _scale_in(masker["encoder_0"], s)
        tree["masker"] = masker
    elif isinstance(model, DAE):
        tree["encoder_0"] = _scale_in(tree["encoder_0"], s)
        dec = dict(tree["decoder"])
        tree["decoder"] = {**dec, "kernel": dec["kernel"] * t, "bias": dec["bias"] * t}
    else:
        raise ValueError(
            f"fold_scaling knows the built-in separators only, not {type(model).__name__}: train a custom "
            "module with TrainConfig(recipe='raw')"
        )
    top["params"] = tree
    return top


def _scale_in(layer, s):
    layer = dict(layer)
    layer["kernel"] = layer["kernel"] / s[:, None]
    return layer


def dense_layers(params: dict) -> list[tuple[jax.Array, jax.Array]]:
    """The model's dense layers as `(kernel, bias)` pairs in forward order.

    `kernel` has flax's layout `(in_features, out_features)` (so W_l = kernel.T in the paper's
    out x in notation) and `bias` is `(out_features,)`. Works for the built-in separators and for any
    module whose params are a (possibly nested) stack of flax `Dense` layers created in forward order.
    Leading batch axes (e.g. a seed axis) are kept.
    """
    tree = params.get("params", params)
    layers: list[tuple[jax.Array, jax.Array]] = []

    def walk(node):
        if not isinstance(node, dict) and not hasattr(node, "items"):
            return
        if "kernel" in node:
            if "bias" not in node:
                raise ValueError("dense layer without bias: NCA needs (kernel, bias) pairs")
            layers.append((node["kernel"], node["bias"]))
            return
        for key in _forward_order(list(node.keys())):
            walk(node[key])

    walk(tree)
    if not layers:
        raise ValueError("no dense layers (dicts with 'kernel' and 'bias') found in params")
    return layers


def _forward_order(keys: list[str]) -> list[str]:
    """Order sibling names: encoder_i by i, then decoder; other names keep their (creation) order."""

    def rank(k: str):
        if k.startswith("encoder_") and k[8:].isdigit():
            return (0, int(k[8:]))
        if k == "decoder":
            return (1, 0)
        return (0, 0)

    if any(k.startswith("encoder_") or k == "decoder" for k in keys):
        return sorted(keys, key=rank)
    return keys


@functools.partial(jax.jit, static_argnames="model")
def _apply(params, x, *, model: nn.Module):
    # full float32 matmuls whatever the caller's context (GPUs would otherwise use TF32), so a
    # model's output is the same number in every stage and test that asks for it
    with jax.default_matmul_precision("highest"):
        return model.apply(params, x)


def predict(model: nn.Module, params, x: Float[Array, "nb_frames nb_bins"], *, chunk: int = 8192):
    """Model output on many frames, in chunks (params of ONE seed). Returns NumPy (nb_frames, nb_bins).

    One compiled program per (model, chunk shape): the model is a static argument of `jax.jit`."""
    x = np.asarray(x, np.float32)
    out = [np.asarray(_apply(params, x[i : i + chunk], model=model)) for i in range(0, len(x), chunk)]
    return np.concatenate(out) if out else np.zeros_like(x)
