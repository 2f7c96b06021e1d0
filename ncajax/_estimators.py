"""The four mapping estimators as frozen option objects, and their JSON form in a study config.

The public home of `Estimator`, `NCA`, `Student`, `LeastSquares` and `MeanJacobian` is `ncajax.nca`
(`fit_mapping(model, params, x, NCA(steps=3000, learning_rate=1e-3))`). They are defined in this private
module, which imports nothing of ncajax, so that `ncajax.config` (the study's `MappingConfig.settings`, a
tuple of them) can hold them without importing the mapping package.

Each estimator checks its own options when it is made (one ValueError naming the field and a working
value) and carries a `name`, the label of a study setting (default: its method). `setting_dict()` is its
JSON form in a run directory's config.json: the shape `{name, method, steps, learning_rate, init,
bias_axis}` every study config has stored (the closed forms keep the placeholders steps=0,
learning_rate=0.0, init="xavier_normal", bias_axis="input"), plus an option outside that shape only when
it differs from its default (NCA/Student `snapshots`, LeastSquares `ridge`, MeanJacobian `chunk_size`), so
the config of a study is byte for byte what it was. `from_setting_dict` reads it back.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import operator
from typing import Any, ClassVar

__all__ = ["BIAS_AXES", "INITS", "METHODS", "Estimator", "LeastSquares", "MeanJacobian", "NCA", "Student",
           "from_setting_dict"]

METHODS = ("nca", "student", "lstsq", "jacobian")
INITS = ("xavier_normal", "uniform", "abs_xavier", "zeros")
BIAS_AXES = ("output", "input")
# The authors' iterative fit: 600 full-batch Adam steps at learning rate 1e-4.
AUTHORS_STEPS = 600
AUTHORS_LEARNING_RATE = 1e-4
DEFAULT_CHUNK = 256
# the placeholders of the shape every study config stored for a setting (see the module docstring)
_SETTING_PLACEHOLDERS = {"steps": 0, "learning_rate": 0.0, "init": "xavier_normal", "bias_axis": "input"}


class Estimator:
    """A mapping estimator: `NCA`, `Student`, `LeastSquares` or `MeanJacobian` (`ncajax.nca.fit_mapping`).

    method: the method's name ("nca", "student", "lstsq", "jacobian"); name: the setting's label.
    """

    method: ClassVar[str]
    name: str

    def setting_dict(self) -> dict[str, Any]:
        """The JSON form of this estimator in a study config (see the module docstring)."""
        raise NotImplementedError


def _check_name(est: Estimator) -> None:
    if not isinstance(est.name, str) or not est.name:
        raise ValueError(f"{type(est).__name__}: name must be a non-empty string (the setting's label), "
                         f"got {est.name!r}; e.g. name={est.method!r}")


def _check_iterative(est: NCA | Student) -> None:
    cls = type(est).__name__
    if isinstance(est.steps, bool) or not isinstance(est.steps, numbers.Integral) or est.steps < 1:
        raise ValueError(f"{cls}: steps must be a positive integer (Adam steps), got {est.steps!r}; "
                         f"e.g. {cls}(steps={AUTHORS_STEPS})")
    lr = est.learning_rate
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"{cls}: learning_rate must be a positive number, got {lr!r}; "
                         f"e.g. {cls}(learning_rate={AUTHORS_LEARNING_RATE})")
    if est.init not in INITS:
        raise ValueError(f"{cls}: unknown init {est.init!r}; choose one of {INITS}")
    if est.snapshots is not None:
        object.__setattr__(est, "snapshots", _check_snapshots(cls, est.steps, est.snapshots))


def _check_snapshots(cls: str, steps: int, snapshots) -> tuple[int, ...]:
    """The snapshot step counts as a sorted tuple of distinct ints in [0, steps]."""
    if isinstance(snapshots, (str, bytes)):
        snapshots = [snapshots]
    try:
        values = [operator.index(n) for n in snapshots]
    except TypeError:
        raise ValueError(f"{cls}: snapshots must be a sequence of step counts (integers), got {snapshots!r}; "
                         f"e.g. snapshots=(0, {steps})") from None
    if not values or min(values) < 0 or max(values) > steps or len(set(values)) != len(values):
        raise ValueError(f"{cls}: snapshots must be distinct step counts in [0, steps={steps}], at least one, "
                         f"got {list(values)}; e.g. snapshots=(0, {steps})")
    return tuple(sorted(int(n) for n in values))


def _with_extras(out: dict[str, Any], **extras) -> dict[str, Any]:
    """`out` plus the extra options that differ from their defaults (given as (value, default) pairs)."""
    for key, (value, default) in extras.items():
        if value != default:
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


@dataclasses.dataclass(frozen=True)
class NCA(Estimator):
    """The authors' Neural Couplings Algorithm: C = W~_L ... W~_1, W~_l = relu((W_l + b_l) P_l^T) ⊙ W_l,
    the P_l fitted by `steps` full-batch Adam steps at `learning_rate` on the L1 error (see `fit_mapping`).

    steps, learning_rate: default the authors' 600 steps at 1e-4 (the study's converged fit is
        NCA(steps=3000, learning_rate=1e-3)).
    init: the start of every P_l: "xavier_normal" (default, the authors'), "uniform" (every entry
        1 / in_features), "abs_xavier" (|xavier_normal|); "zeros" is refused (it shuts every gate).
    bias_axis: "input" (default: the authors' PyTorch `W + b` broadcast, b[j] added to column j; square
        layers only) or "output" (b[i] added to row i, per output unit; any shape).
    snapshots: step counts in [0, steps] at which the fit also keeps C and its relative L1 error
        (`IterativeFit.snapshot_*`); 0 is C at the initial P. None (default): no snapshots.
    name: the setting's label in a study (default "nca").
    """

    steps: int = AUTHORS_STEPS
    learning_rate: float = AUTHORS_LEARNING_RATE
    init: str = "xavier_normal"
    bias_axis: str = "input"
    snapshots: tuple[int, ...] | None = None
    name: str = "nca"
    method: ClassVar[str] = "nca"

    def __post_init__(self):
        _check_name(self)
        _check_iterative(self)
        if self.init == "zeros":
            raise ValueError("NCA: init='zeros' shuts every NCA gate (relu(0) = 0) so no gradient flows; "
                             "use 'xavier_normal', 'uniform' or 'abs_xavier'")
        if self.bias_axis not in BIAS_AXES:
            raise ValueError(f"NCA: unknown bias_axis {self.bias_axis!r}; choose one of {BIAS_AXES}")

    def setting_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "method": self.method, "steps": self.steps,
               "learning_rate": self.learning_rate, "init": self.init, "bias_axis": self.bias_axis}
        return _with_extras(out, snapshots=(self.snapshots, None))


@dataclasses.dataclass(frozen=True)
class Student(Estimator):
    """The authors' linear student: C itself fitted by the NCA's loss, optimiser and loop.

    steps, learning_rate, snapshots: as `NCA`. init: the start of C: "xavier_normal" (default),
    "uniform" (every entry 1 / N), "abs_xavier" or "zeros". name: default "student".
    """

    steps: int = AUTHORS_STEPS
    learning_rate: float = AUTHORS_LEARNING_RATE
    init: str = "xavier_normal"
    snapshots: tuple[int, ...] | None = None
    name: str = "student"
    method: ClassVar[str] = "student"

    def __post_init__(self):
        _check_name(self)
        _check_iterative(self)

    def setting_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "method": self.method, "steps": self.steps,
               "learning_rate": self.learning_rate, "init": self.init,
               "bias_axis": _SETTING_PLACEHOLDERS["bias_axis"]}
        return _with_extras(out, snapshots=(self.snapshots, None))


@dataclasses.dataclass(frozen=True)
class LeastSquares(Estimator):
    """Closed-form least squares, C^T = (X^T X + ridge)^-1 X^T Y (`ncajax.nca.lstsq`).

    ridge: None (default, automatic: the least Tikhonov term that keeps float32 stable on the
        Jacobi-scaled normal equations, exact maps recovered to ~1e-5), 0 (minimum-norm least squares,
        SVD) or > 0 (relative to the mean bin energy). name: default "lstsq".
    """

    ridge: float | None = None
    name: str = "lstsq"
    method: ClassVar[str] = "lstsq"

    def __post_init__(self):
        _check_name(self)
        r = self.ridge
        if r is not None and (isinstance(r, bool) or not isinstance(r, numbers.Real)
                              or not math.isfinite(r) or r < 0):
            raise ValueError(f"LeastSquares: ridge must be None (automatic) or a non-negative number, "
                             f"got {r!r}; e.g. LeastSquares(ridge=None)")

    def setting_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "method": self.method, **_SETTING_PLACEHOLDERS}
        return _with_extras(out, ridge=(self.ridge, None))


@dataclasses.dataclass(frozen=True)
class MeanJacobian(Estimator):
    """The mean over frames of the exact Jacobian dy/dx, with the spread of the per-frame Jacobians
    around it (`local_spread`) and, for `dae_sf`, its mask and mask-Jacobian parts.

    chunk_size: frames whose Jacobians are formed at a time (memory bounded; default 256). The study's
    mapping stage picks it per machine (`MappingConfig.jacobian_chunk`). name: default "jacobian".
    """

    chunk_size: int = DEFAULT_CHUNK
    name: str = "jacobian"
    method: ClassVar[str] = "jacobian"

    def __post_init__(self):
        _check_name(self)
        c = self.chunk_size
        if isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 1:
            raise ValueError(f"MeanJacobian: chunk_size must be a positive integer (frames per chunk), "
                             f"got {c!r}; e.g. MeanJacobian(chunk_size={DEFAULT_CHUNK})")

    def setting_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "method": self.method, **_SETTING_PLACEHOLDERS}
        return _with_extras(out, chunk_size=(self.chunk_size, DEFAULT_CHUNK))


_CLASSES: dict[str, type[Estimator]] = {c.method: c for c in (NCA, Student, LeastSquares, MeanJacobian)}
# the options of each method in `setting_dict` (the others are the shape's placeholders, ignored on reading)
_OPTIONS = {"nca": ("steps", "learning_rate", "init", "bias_axis", "snapshots"),
            "student": ("steps", "learning_rate", "init", "snapshots"),
            "lstsq": ("ridge",), "jacobian": ("chunk_size",)}


def from_setting_dict(data: dict[str, Any]) -> Estimator:
    """The estimator of a `setting_dict()` (a study config's setting, e.g. `{"name": "nca_authors",
    "method": "nca", "steps": 600, "learning_rate": 1e-4, "init": "xavier_normal", "bias_axis": "input"}`).

    Placeholders a method does not have (a least-squares setting's steps, a student's bias_axis) are
    ignored; an unknown method or field is refused by name."""
    if not isinstance(data, dict):
        raise ValueError(f"a fit setting must be a JSON object (a dict), got {type(data).__name__}")
    method = data.get("method")
    if method not in _CLASSES:
        raise ValueError(f"setting {data.get('name')!r}: unknown method {method!r}; choose one of {METHODS}")
    unknown = set(data) - {"name", "method", *_SETTING_PLACEHOLDERS, *_OPTIONS[method]}
    if unknown:
        raise ValueError(f"setting {data.get('name')!r} (method {method!r}): unknown fields {sorted(unknown)}")
    options = {k: data[k] for k in _OPTIONS[method] if k in data}
    if isinstance(options.get("snapshots"), list):
        options["snapshots"] = tuple(options["snapshots"])
    return _CLASSES[method](name=data.get("name", method), **options)
