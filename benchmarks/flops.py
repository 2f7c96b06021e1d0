"""Exact matmul lists (shapes (m, k, n), each 2 m k n FLOPs) of the programs the benchmarks time.

Counted by hand from the computation, not by a nominal "backward = 2 x forward" rule; cross-checked
against XLA's own count (`xla_flops`), which also includes the (small) elementwise work.
"""

from __future__ import annotations

from typing import Any

from common import Shape

WIDTHS = {"dae": 1, "dae_deep": 3, "dae_sf": 1}  # encoder layers; one decoder layer follows


def layer_dims(name: str, n_bins: int, hidden: int | None = None) -> list[tuple[int, int]]:
    """(in, out) of each dense layer in forward order (dae_sf: its mask network)."""
    h = n_bins if hidden is None else hidden
    dims = [(n_bins, h)] + [(h, h)] * (WIDTHS[name] - 1) + [(h, n_bins)]
    return dims


def train_step_matmuls(name: str, batch: int, n_bins: int, hidden: int | None = None) -> list[Shape]:
    """One training step, one seed: per layer the forward x @ kernel and the kernel gradient
    x^T @ g; the input gradient g @ kernel^T for every layer but the first (JAX does not compute the
    gradient w.r.t. the data). dae: 2 + 3 = 5 matmuls of 2 B N^2; dae_deep: 4 + 7 = 11."""
    out: list[Shape] = []
    dims = layer_dims(name, n_bins, hidden)
    for i, (d_in, d_out) in enumerate(dims):
        out.append((batch, d_in, d_out))  # forward
        out.append((d_in, batch, d_out))  # dL/dkernel = h^T g
        if i > 0:
            out.append((batch, d_out, d_in))  # dL/dh = g kernel^T
    return out


def student_step_matmuls(n_frames: int, n_bins: int) -> list[Shape]:
    """One student (C fitted directly) Adam step: y_hat = x C^T and dC = g^T x."""
    return [(n_frames, n_bins, n_bins), (n_bins, n_frames, n_bins)]


def nca_step_matmuls(
    name: str, n_frames: int, n_bins: int, hidden: int | None = None, order: str = "auto"
) -> list[Shape]:
    """One NCA Adam step with L layers: per layer Z_l = A_l P_l^T (forward) and dP_l = dZ_l^T A_l
    (A_l = W_l + bias is constant); then, order "product": the product C = W~_L ... W~_1 (L - 1 matmuls
    forward, 2 per matmul backward since both factors depend on P), y_hat = x C^T and dC = g^T x
    (square layers: (5 L - 3) matmuls of 2 N^3 plus 2 of 2 F N^2); order "chain": h_l = h_{l-1} W~_l^T
    from h_0 = x, dW~_l = g_l^T h_{l-1} and dh_{l-1} = g_l W~_l for l >= 2 (2 L matmuls of 2 N^3 plus
    3 L - 1 of 2 F N^2). "auto": the order `ncajax.nca.chain_order` picks (chain when it saves >= 10 %: F <= 0.9 N, square)."""
    out: list[Shape] = []
    dims = layer_dims(name, n_bins, hidden)
    for d_in, d_out in dims:  # W_l is (out, in), P_l is (in, in)
        out.append((d_out, d_in, d_in))  # Z = A P^T
        out.append((d_in, d_out, d_in))  # dP = dZ^T A
    if order == "auto":
        product = sum(3 * o * i * n_bins for i, o in dims[1:]) + 2 * n_frames * n_bins * n_bins
        chain = sum(n_frames * i * o * (3 if k else 2) for k, (i, o) in enumerate(dims))
        order = "chain" if chain <= 0.9 * product else "product"  # nca.CHAIN_MARGIN
    if order == "chain":
        for k, (d_in, d_out) in enumerate(dims):
            out.append((n_frames, d_in, d_out))  # h_l = h_{l-1} W~_l^T
            out.append((d_out, n_frames, d_in))  # dW~_l = g_l^T h_{l-1}
            if k:
                out.append((n_frames, d_out, d_in))  # dh_{l-1} = g_l W~_l
        return out
    for d_in, d_out in dims[1:]:  # c_l = W~_l @ c_{l-1}, c_{l-1} is (in, N)
        out.append((d_out, d_in, n_bins))  # forward
        out.append((d_out, n_bins, d_in))  # dW~ = dc_l c_{l-1}^T
        out.append((d_in, d_out, n_bins))  # dc_{l-1} = W~^T dc_l
    out += student_step_matmuls(n_frames, n_bins)
    return out


def xla_flops(jitted, *args) -> float | None:
    """XLA's FLOP estimate of `jitted(*args)` (cost_analysis of the compiled program), or None."""
    try:
        ca: Any = jitted.lower(*args).compile().cost_analysis()
    except Exception:  # noqa: BLE001 - the cross-check is optional on backends without it
        return None
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else {}
    flops = (ca or {}).get("flops")
    return None if flops is None else float(flops)
