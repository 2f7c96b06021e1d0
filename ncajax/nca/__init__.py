"""The mapping stage: one N x N matrix C per separator with y ≈ x @ C.T, its structure, and the stage
that fits and judges it on unseen songs.

    fit_mapping(model, params, x, est)   a separator's mapping by an estimator, a frozen options object
                                         checked when made: NCA(steps=600, learning_rate=1e-4, ...) (the
                                         Neural Couplings Algorithm), Student(...), LeastSquares(ridge=None),
                                         MeanJacobian(chunk_size=256); one fit written once, K fits
                                         `jax.vmap`-ed; the result holds only its family's fields
                                         (IterativeFit, LeastSquaresFit, JacobianFit: all MappingFit)
    apply_matrix(C, x)                   the mapping applied to frames: x @ C.T
    nca_matrix / nca_loss                the NCA product W~_L ... W~_1 and its L1 loss
    structure_metrics(C)                 how diagonal / inter-frequency a mapping is
    functional_diagonality(...)          the same question asked of the mapping's effect on real frames
    map_frames / map_callable            any separator's mapping from its frames alone, or from a JAX
                                         callable; load_frames reads .npy/.npz frames
    run_stage(...)                       the study's mapping stage: fits on training-song frames, judged per
                                         unseen test song against the zero and per-bin-gain baselines

Modules (private): `_couplings` (the result types, NCA, student, `fit_mapping`), `_closed_forms` (least
squares, the mean Jacobian), `_common` (checks, calling convention and `over_fits`, shared by the fits),
`_structure` (structure metrics), `_frames` (frames-only mapping analysis), `_stage` (the study's stage).
The estimators are defined in `ncajax._estimators` (which imports nothing of ncajax, so `ncajax.config`
can hold the study's settings, a tuple of them); this package is their public home.
"""

from .._estimators import NCA, Estimator, LeastSquares, MeanJacobian, Student
from ._closed_forms import jacobian_stream, lstsq, mean_jacobian
from ._common import apply_matrix
from ._couplings import (
    IterativeFit,
    JacobianFit,
    LeastSquaresFit,
    MappingFit,
    chain_order,
    fit_mapping,
    nca_loss,
    nca_matrix,
)
from ._frames import (
    FRAME_METHODS,
    FrameMapping,
    MethodMapping,
    check_methods,
    load_frames,
    map_callable,
    map_frames,
)
from ._stage import (
    Separator,
    best_per_bin_gain,
    linearity,
    per_bin_gain,
    per_bin_gain_l1,
    run_stage,
    select_frames,
)
from ._structure import (
    bin_frequencies,
    dead_unit_share,
    functional_diagonality,
    keep_share,
    relative_l1,
    restricted_structure,
    structure_metrics,
)

__all__ = [
    "FRAME_METHODS",
    "Estimator",
    "FrameMapping",
    "IterativeFit",
    "JacobianFit",
    "LeastSquares",
    "LeastSquaresFit",
    "MappingFit",
    "MeanJacobian",
    "MethodMapping",
    "NCA",
    "Separator",
    "Student",
    "apply_matrix",
    "best_per_bin_gain",
    "bin_frequencies",
    "chain_order",
    "check_methods",
    "dead_unit_share",
    "fit_mapping",
    "functional_diagonality",
    "jacobian_stream",
    "keep_share",
    "linearity",
    "load_frames",
    "lstsq",
    "map_callable",
    "map_frames",
    "mean_jacobian",
    "nca_loss",
    "nca_matrix",
    "per_bin_gain",
    "per_bin_gain_l1",
    "relative_l1",
    "restricted_structure",
    "run_stage",
    "select_frames",
    "structure_metrics",
]
