"""What the REPORT.md writers share: the report's fixed texts and labels, the number formats
(the summary's intervals and means ± CI over seeds, Markdown tables) and the models and fit settings of
a loaded run. Nothing here computes a statistic: the numbers come from `ncajax.results`'s summary.

`rel. L1` throughout is the relative L1 error Σ|y - ŷ| / Σ|y| of a linear map against the model's
output: lower is better, 0 is exact, 1 is what predicting silence scores.
"""

from __future__ import annotations

import math

from ..config import NCA_AUTHORS, PRIMARY_ESTIMATOR
from ..results._records import MappingStage, StudyRun
from ..results._summary import SeedStat, TableSummary

# Figure groups of `ncajax.plots`, in report order: (file-name prefix, caption). A file belongs to a
# group when its stem is the prefix or starts with prefix + "_" (e.g. mapping_matrices_nca_authors).
FIGURES = (
    ("direction_intervals", "DAE − dae_sf intervals per estimator (seed × song intervals)"),
    ("heldout_error", "Held-out error of every mapping against the baselines"),
    ("keep_shares", "Functional diagonality: the share of C's advantage that diag(C) and its band keep"),
    ("convergence_control", "Under-convergence control: fit error and DAE − dae_sf interval against fit steps"),
    ("mapping_matrices", "Mapping matrices per model"),
    ("estimator_matrices", "One model's mapping under every estimator"),
    ("structure_metrics", "Structure metrics with seed × song intervals"),
    ("training_curves", "Training curves"),
    ("fit_loss_curves", "Loss curves of the iterative mapping fits"),
    ("spectrograms", "Spectrograms of a test excerpt"),
    ("linearity", "Per-frame Jacobian structure (is one matrix a fair summary?)"),
    ("separation_quality", "Separation quality"),
    ("live_units", "Live output units per octave band and homogeneity errors"),
    ("sdr_vs_loudness", "Per-song separation gain against the song's loudness"),
)
METRIC_LABELS = {
    "weighted_diagonal_energy_ratio": "weighted diag. ratio",
    "diagonal_energy_ratio": "diag. ratio",
    "weighted_near_diagonal_energy": "weighted near-diag.",
    "near_diagonal_energy": "near-diag.",
    "mean_coupling_distance_octaves": "coupling dist. (oct)",
    "mean_coupling_distance": "coupling dist. (bins)",
}
STRUCT_COLS = ("weighted_diagonal_energy_ratio", "diagonal_energy_ratio", "weighted_near_diagonal_energy",
                "mean_coupling_distance_octaves")
ORDERING_TEXT = {
    "dae_more_diagonal": "DAEs more diagonal",
    "sf_more_diagonal": "`dae_sf` more diagonal",
    "mixed": "mixed",
    "undetermined": "undetermined",
}
VERDICT_TEXT = {
    "holds": "holds",
    "reversed": "is reversed (`dae_sf`'s mapping is the more diagonal)",
    "undetermined": "is undetermined",
}


def settings_of(mappings: MappingStage | None) -> list[dict]:
    """The fit settings in the stage's order (dicts of name, method, steps, learning_rate, init, ...)."""
    return [] if mappings is None else mappings.settings()


def models_of(run: StudyRun) -> list[str]:
    """The models of a run: trained, then mapped (`StudyRun.models`)."""
    return run.models()


def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—" if x is None else str(x)
    return f"{x:.{digits}f}"


def fmt_iv(interval: dict | None, digits: int = 3) -> str:
    """'mean [lo, hi]' of a bootstrap interval."""
    if not interval:
        return "—"
    return f"{interval['mean']:.{digits}f} [{interval['lo']:.{digits}f}, {interval['hi']:.{digits}f}]"


def iv_cell(table: TableSummary | None, digits: int = 3) -> str:
    """A table's interval as a cell: "—" without a table, "non-finite" when a cell is not finite."""
    if table is None:
        return "—"
    return fmt_iv(table.interval, digits) if table.finite else "non-finite"


def fmt_pm(stat: SeedStat | None, digits: int = 3) -> str:
    """'mean ± half-width' of a summary's Student-t 95 % CI over seeds (just the mean for one seed)."""
    if stat is None:
        return "—"
    half = (stat.hi - stat.lo) / 2
    return fmt(stat.mean, digits) if stat.n < 2 else f"{stat.mean:.{digits}f} ± {half:.{digits}f}"


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def describe_setting(setting: dict) -> str:
    method = setting.get("method")
    if method in ("nca", "student"):
        what = "NCA" if method == "nca" else "linear student (N×N matrix)"
        text = (f"{what}, {setting.get('steps')} Adam steps at lr {setting.get('learning_rate'):g}, "
                f"{setting.get('init')} init")
        if method == "nca":
            text += (", bias broadcast over input columns (the authors' `W + b`)"
                     if setting.get("bias_axis") == "input" else ", bias per output unit (a variant)")
        if setting.get("name") == NCA_AUTHORS:
            text += ": the authors' defaults"
        if setting.get("name") == PRIMARY_ESTIMATOR:
            text += ": **the primary estimator**"
        return text
    return {"lstsq": "least squares (closed form)",
            "jacobian": "mean exact Jacobian over the fit frames (not a fit)"}.get(method, str(method))


def join_code(items) -> str:
    items = [f"`{i}`" for i in items]
    if len(items) <= 1:
        return "".join(items) or "none"
    return ", ".join(items[:-1]) + " and " + items[-1]
