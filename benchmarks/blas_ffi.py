"""A BLAS sgemm as an XLA:CPU custom call (typed XLA FFI), for benchmarks only: is a faster GEMM a lever?

XLA:CPU's own dot reaches 65-90 % of MKL's `torch.mm` on the Intel Xeon (benchmarks/RESULTS.md). This
module routes a float32 matmul through `jax.ffi.ffi_call` to a BLAS `cblas_sgemm` instead, so the same
jitted program can be timed with either GEMM:

- the BLAS: NumPy's bundled OpenBLAS (`numpy.libs/libscipy_openblas64_*.so`, always present), or any
  library exporting `cblas_sgemm` with 32-bit ints (MKL's `libmkl_rt.so`, from the `mkl` wheel) via
  `load(path)`;
- the handler: written in numba (a dependency of librosa, so already installed), compiled to a C function
  with the XLA FFI calling convention: it reads the operands' data pointers and dimensions from the
  `XLA_FFI_CallFrame` (layout from `jaxlib/include/xla/ffi/api/c_api.h`, API 0.3), answers XLA's metadata
  query, and calls sgemm once per batch element (batch dimensions of size 1 broadcast with stride 0);
- `matmul(a, b)`: `(..., m, k) @ (..., k, n)` float32, differentiable (`jax.custom_vjp`: the two
  backward products use sgemm's transpose flags, no copies) and vmappable (`vmap_method="expand_dims"`).

Not part of the package: on this 2-core machine it does not win inside a training step (see
`bench_cpu_levers.py` and RESULTS.md), and a different GEMM changes float32 rounding.
"""

from __future__ import annotations

import ctypes
import glob
import os

import jax
import jax.numpy as jnp
import numba
import numpy as np
from llvmlite import ir
from numba import types as nt
from numba.extending import intrinsic

_CBLAS_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_STATE: dict = {}


def _openblas_path() -> str:
    libs = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    found = sorted(glob.glob(os.path.join(libs, "libscipy_openblas64_*.so")))
    if not found:
        raise FileNotFoundError(f"no libscipy_openblas64_*.so in {os.path.abspath(libs)}; pass a BLAS "
                                "library path to blas_ffi.load(path)")
    return found[0]


# ------------------------------------------------------------------ raw loads and stores by address


def _access(bits: int, store: bool):
    ty = ir.IntType(bits)
    if store:
        @intrinsic
        def st(typingctx, addr, val):
            def codegen(context, builder, sig, args):
                v = builder.trunc(args[1], ty) if bits < 64 else args[1]
                builder.store(v, builder.inttoptr(args[0], ty.as_pointer()))
                return context.get_dummy_value()
            return nt.void(nt.int64, nt.int64), codegen
        return st

    @intrinsic
    def ld(typingctx, addr):
        def codegen(context, builder, sig, args):
            v = builder.load(builder.inttoptr(args[0], ty.as_pointer()))
            return builder.sext(v, ir.IntType(64)) if bits < 64 else v
        return nt.int64(nt.int64), codegen
    return ld


_ld64, _ld32, _st64, _st32 = _access(64, False), _access(32, False), _access(64, True), _access(32, True)


def _handler(sgemm, trans_a: bool, trans_b: bool):
    """The FFI handler `XLA_FFI_Error* (XLA_FFI_CallFrame*)` for C = op(A) @ op(B), batched."""
    ta = _TRANS if trans_a else _NO_TRANS
    tb = _TRANS if trans_b else _NO_TRANS
    one, zero = np.float32(1.0), np.float32(0.0)

    @numba.cfunc(nt.int64(nt.int64), nopython=True)
    def handler(frame):
        ext = _ld64(frame + 8)  # call_frame->extension_start
        if ext != 0 and _ld32(ext + 8) == 1:  # XLA_FFI_Extension_Metadata: report API 0.3, no traits
            md = _ld64(ext + 24)
            _st64(md + 8, 32)
            _st64(md + 16, 0)
            _st32(md + 24, 0)
            _st32(md + 28, 3)
            _st32(md + 32, 0)
            _st64(md + 40, 0)
            return 0
        args = _ld64(frame + 72)  # call_frame->args.args
        rets = _ld64(frame + 112)  # call_frame->rets.rets
        a, b, c = _ld64(args), _ld64(args + 8), _ld64(rets)
        ra, da, rb, db = _ld64(a + 32), _ld64(a + 40), _ld64(b + 32), _ld64(b + 40)
        ba = 1
        for i in range(ra - 2):
            ba *= _ld64(da + 8 * i)
        bb = 1
        for i in range(rb - 2):
            bb *= _ld64(db + 8 * i)
        a0, a1 = _ld64(da + 8 * (ra - 2)), _ld64(da + 8 * (ra - 1))
        b0, b1 = _ld64(db + 8 * (rb - 2)), _ld64(db + 8 * (rb - 1))
        m = a1 if trans_a else a0
        k = a0 if trans_a else a1
        n = b0 if trans_b else b1
        pa, pb, pc = _ld64(a + 24), _ld64(b + 24), _ld64(c + 24)
        sa = 0 if ba == 1 else m * k * 4
        sb = 0 if bb == 1 else k * n * 4
        for i in range(max(ba, bb)):
            sgemm(_CBLAS_ROW_MAJOR, ta, tb, m, n, k, one, pa + i * sa, a1, pb + i * sb, b1, zero,
                  pc + i * m * n * 4, n)
        return 0

    return handler


def load(path: str | None = None) -> str:
    """Register the handlers for one BLAS (NumPy's OpenBLAS by default); returns the library's path.

    One library per process (the handlers keep their ctypes function)."""
    if _STATE:
        if path not in (None, _STATE["path"]):
            raise RuntimeError(f"blas_ffi already loaded {_STATE['path']}; one BLAS per process")
        return _STATE["path"]
    path = path or _openblas_path()
    lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    if hasattr(lib, "scipy_cblas_sgemm64_"):
        fn, it = lib.scipy_cblas_sgemm64_, ctypes.c_int64
    else:
        fn, it = lib.cblas_sgemm, ctypes.c_int
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, it, it, it, ctypes.c_float, ctypes.c_void_p,
                   it, ctypes.c_void_p, it, ctypes.c_float, ctypes.c_void_p, it]
    fn.restype = None
    handlers = {}
    for ta, tb in ((False, False), (False, True), (True, False)):
        h = _handler(fn, ta, tb)
        name = f"bench_blas_sgemm_{int(ta)}{int(tb)}"
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(h.address), platform="cpu")
        handlers[name] = h
    _STATE.update(path=path, fn=fn, handlers=handlers)
    return path


def _gemm(a, b, trans_a=False, trans_b=False):
    if a.dtype != jnp.float32 or b.dtype != jnp.float32 or a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"float32 operands of rank >= 2 expected, got {a.dtype}{a.shape}, {b.dtype}{b.shape}")
    m, k = (a.shape[-1], a.shape[-2]) if trans_a else (a.shape[-2], a.shape[-1])
    k2, n = (b.shape[-1], b.shape[-2]) if trans_b else (b.shape[-2], b.shape[-1])
    if k != k2:
        raise ValueError(f"contracting dimensions differ: {a.shape} vs {b.shape}")
    batch = jnp.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    for shape in (a.shape[:-2], b.shape[:-2]):
        if int(np.prod(shape, dtype=np.int64)) not in (1, int(np.prod(batch, dtype=np.int64))):
            raise ValueError(f"batch dimensions must match or be 1: {a.shape} vs {b.shape}")
    call = jax.ffi.ffi_call(f"bench_blas_sgemm_{int(trans_a)}{int(trans_b)}",
                            jax.ShapeDtypeStruct(batch + (m, n), jnp.float32), vmap_method="expand_dims")
    return call(a, b)


def _unbroadcast(g, shape):
    lead = g.ndim - len(shape)
    g = g.sum(tuple(range(lead))) if lead else g
    axes = tuple(i for i, (s, t) in enumerate(zip(shape[:-2], g.shape[:-2], strict=True)) if s == 1 and t != 1)
    return g.sum(axes, keepdims=True) if axes else g


@jax.custom_vjp
def matmul(a, b):
    """`a @ b` for float32 `(..., m, k)` and `(..., k, n)`, through the loaded BLAS."""
    if not _STATE:
        load()
    return _gemm(a, b)


def _fwd(a, b):
    return matmul(a, b), (a, b)


def _bwd(res, g):
    a, b = res
    return _unbroadcast(_gemm(g, b, trans_b=True), a.shape), _unbroadcast(_gemm(a, g, trans_a=True), b.shape)


matmul.defvjp(_fwd, _bwd)
