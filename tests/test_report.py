"""Tests of ncajax.report on hand-built run directories (no training, no fits: JSON files only)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ncajax import report

MODELS = ("dae", "dae_deep", "dae_sf")
SEEDS = (0, 1, 2)
T_975_DF2 = (
    4.302652729911275  # Student t quantile 0.975 with 2 degrees of freedom (closed-form table)
)
SETTINGS = [
    {
        "name": "nca_authors",
        "method": "nca",
        "steps": 600,
        "learning_rate": 1e-4,
        "init": "xavier_normal",
        "bias_axis": "output",
    },
    {
        "name": "nca_converged",
        "method": "nca",
        "steps": 3000,
        "learning_rate": 1e-3,
        "init": "xavier_normal",
        "bias_axis": "output",
    },
    {
        "name": "nca_uniform",
        "method": "nca",
        "steps": 3000,
        "learning_rate": 1e-3,
        "init": "uniform",
        "bias_axis": "output",
    },
    {
        "name": "lstsq",
        "method": "lstsq",
        "steps": 0,
        "learning_rate": 0.0,
        "init": "xavier_normal",
        "bias_axis": "output",
    },
]
HOLDS = {"dae": [0.80, 0.82, 0.81], "dae_deep": [0.70, 0.72, 0.71], "dae_sf": [0.20, 0.22, 0.21]}
REVERSED = {"dae": [0.20, 0.22, 0.21], "dae_deep": [0.25, 0.27, 0.26], "dae_sf": [0.80, 0.82, 0.81]}


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _metrics(w: float, u: float) -> dict:
    return {
        "weighted_diagonal_energy_ratio": w,
        "diagonal_energy_ratio": u,
        "weighted_near_diagonal_energy": min(1.0, w + 0.1),
        "near_diagonal_energy": u + 0.05,
        "mean_coupling_distance": 3.0,
        "mean_coupling_distance_octaves": 0.5,
        "spread_mean": 1.0,
        "spread_median": 1.0,
    }


def make_run(
    root: Path,
    primary: dict,
    *,
    per_setting: dict | None = None,
    with_eval: bool = True,
    spread: float = 0.8,
    heldout: float = 0.5,
) -> Path:
    """A complete run directory; `primary[model]` = weighted diagonal ratio per seed (unweighted =
    half of it), `per_setting[setting]` overrides `primary` for one setting."""
    per_setting = per_setting or {}
    for m in MODELS:
        _write(
            root / "train" / m / "config.json",
            {
                "data": {
                    "dataset": "embedded synthetic corpus",
                    "preset": "fast",
                    "tracks": {"train": ["a", "b"], "valid": ["c"], "test": ["d", "e", "f"]},
                },
                "stft": {
                    "sample_rate": 8000,
                    "n_fft": 256,
                    "hop_length": 64,
                    "win_length": 256,
                    "window": "hann",
                },
                "model": {"name": m},
            },
        )
        _write(
            root / "train" / m / "meta.json",
            {"git_commit": "abc123", "started": "2026-01-01T00:00:00"},
        )
        _write(
            root / "train" / m / "result.json",
            {
                "finished": True,
                "epochs": 5,
                "seeds": list(SEEDS),
                "test_mag_sdr_db": [5.0, 6.0, 7.0],
                "test_mixture_mag_sdr_db": -2.0,
                "test_improvement_db": [7.0, 8.0, 9.0],
            },
        )
    records = []
    for s in SETTINGS:
        values = per_setting.get(s["name"], primary)
        for m in MODELS:
            iterative = s["method"] in ("nca", "student")
            records.append(
                {
                    "model": m,
                    "setting": s["name"],
                    "kind": "pooled",
                    "method": s["method"],
                    "settings": s,
                    "fidelity_fit": [0.3, 0.3, 0.3],
                    "fidelity_heldout": [heldout] * 3,
                    "converged": [True, False, True] if iterative else [None] * 3,
                    "final_loss": [1.0] * 3 if iterative else [None] * 3,
                    "local_spread": [None] * 3,
                    "metrics": [_metrics(w, w / 2) for w in values[m]],
                    "wall_s": 1.0,
                }
            )
    for m in MODELS:
        records.append(
            {
                "model": m,
                "setting": "lstsq",
                "kind": "per_track",
                "method": "lstsq",
                "tracks": ["d", "e"],
                "fidelity_fit": [0.2, 0.3],
                "fidelity_heldout": [1.1, 1.3],
                "converged": [None, None],
                "metrics": [_metrics(primary[m][0], 0.1), _metrics(primary[m][0] + 0.05, 0.2)],
                "wall_s": 1.0,
            }
        )
        records.append(
            {
                "model": m,
                "setting": "-",
                "kind": "model",
                "wall_s": 1.0,
                "dead_units": [{"layer_0": 0.0, "layer_1": 0.5, "output": 0.5, "overall": 0.25}]
                * 3,
                "linearity": [
                    {
                        "frame_metric_quantiles": {
                            "weighted_diagonal_energy_ratio": [0.1, 0.2, 0.3, 0.4, 0.5]
                        },
                        "quantile_levels": [0.05, 0.25, 0.5, 0.75, 0.95],
                        "fidelity_per_frame_linear": 0.1,
                        "fidelity_mean_jacobian": 0.9,
                        "local_spread": spread,
                    }
                ]
                * 3,
            }
        )
    _write(
        root / "mappings" / "config.json",
        {
            "mapping": {
                "settings": SETTINGS,
                "n_fit_frames": 64,
                "n_heldout_frames": 64,
                "band_k": 2,
            },
            "models": list(MODELS),
        },
    )
    _write(
        root / "mappings" / "result.json",
        {"records": records, "fit_tracks": ["d", "e"], "heldout_tracks": ["f"]},
    )
    if with_eval:

        def bss(sdr):
            return {
                "mag_sdr": sdr,
                "n_tracks": 3,
                "vocals": {"SDR": sdr - 1, "SIR": sdr + 5, "SAR": sdr + 1, "ISR": sdr + 2},
                "accompaniment": {"SDR": 9.0, "SIR": 9.0, "SAR": 9.0, "ISR": 9.0},
            }

        summary = {"mixture": bss(-2.0), "oracle_irm": bss(12.5)}
        for m in MODELS:
            for s, v in zip(SEEDS, (4.0, 5.0, 6.0), strict=True):
                summary[f"{m}/seed{s}"] = bss(v)
        _write(root / "evaluation" / "result.json", {"summary": summary, "per_track": {}})
    return root


def test_holds_variant(tmp_path):
    run = make_run(tmp_path, HOLDS)
    c = report.conclusion(run)
    for s in SETTINGS:
        assert c[s["name"]]["holds"] is True
        assert c[s["name"]]["direction"] == "dae_more_diagonal"
        # smallest margin: dae_deep 0.71 - dae_sf 0.21
        assert c[s["name"]]["margin"] == pytest.approx(0.50)
        assert c[s["name"]]["overlap"] is False
        assert c[s["name"]]["unweighted"]["holds"] is True
    assert c["overall"]["holds"] is True and c["overall"]["verdict"] == "holds"
    assert c["overall"]["contradicting"] == []
    md = report.build_report(run)
    assert "**The finding holds**" in md
    assert "does NOT hold" not in md
    assert "`nca_authors` **supports** the finding" in md
    assert "the seed CIs do not overlap" in md
    assert "\"the DAEs' mappings are more diagonal than `dae_sf`'s\" **holds**" in md
    (group,) = c["overall"]["initialisation"]
    assert group["depends_on_init"] is False
    assert "The finding holds under every initialisation tried" in md


def test_reversed_variant_says_it_does_not_hold(tmp_path):
    run = make_run(tmp_path, REVERSED)
    c = report.conclusion(run)
    assert all(c[s["name"]]["holds"] is False for s in SETTINGS)
    assert c["nca_authors"]["direction"] == "sf_more_diagonal"
    assert c["nca_authors"]["margin"] == pytest.approx(0.21 - 0.81)  # smallest DAE - SF
    assert c["overall"]["holds"] is False and c["overall"]["verdict"] == "does not hold"
    assert set(c["overall"]["contradicting"]) == {s["name"] for s in SETTINGS}
    md = report.build_report(run)
    assert "**The finding does NOT hold**" in md
    assert "`nca_authors` **contradicts** the finding" in md
    assert "The finding holds" not in md
    assert "**does not hold**" in md  # header verdict line
    assert "The finding fails under every initialisation tried" in md


def test_second_opinion_and_init_dependence(tmp_path):
    run = make_run(tmp_path, HOLDS, per_setting={"lstsq": REVERSED, "nca_uniform": REVERSED})
    c = report.conclusion(run)
    assert c["nca_authors"]["holds"] and c["nca_converged"]["holds"]
    assert c["overall"]["verdict"] == "does not hold"
    assert c["overall"]["supporting"] == ["nca_authors", "nca_converged"]
    assert c["overall"]["contradicting"] == ["nca_uniform", "lstsq"]
    (group,) = c["overall"]["initialisation"]
    assert set(group["settings"]) == {"nca_converged", "nca_uniform"}
    assert group["depends_on_init"] is True
    md = report.build_report(run)
    assert "Contradicting: `nca_uniform` and `lstsq`" in md
    assert "**depends on the initialisation**" in md


def test_mixed_setting_and_overlapping_cis(tmp_path):
    mixed = {"dae": [0.5, 0.9, 0.7], "dae_deep": [0.1, 0.2, 0.15], "dae_sf": [0.3, 0.35, 0.4]}
    run = make_run(tmp_path, HOLDS, per_setting={"nca_authors": mixed})
    v = report.conclusion(run)["nca_authors"]
    assert v["direction"] == "mixed" and v["holds"] is False
    assert v["margin"] == pytest.approx(0.15 - 0.35)
    assert v["overlap"] is True  # dae's wide CI overlaps dae_sf's
    assert v["per_model"]["dae"]["margin"] == pytest.approx(0.7 - 0.35)


def test_ci_overlap_and_compare_on_hand_made_numbers():
    assert report.ci_overlap({"lo": 0.0, "hi": 1.0}, {"lo": 1.0, "hi": 2.0})  # touching counts
    assert report.ci_overlap({"lo": 0.0, "hi": 3.0}, {"lo": 1.0, "hi": 2.0})  # nested
    assert not report.ci_overlap({"lo": 0.0, "hi": 0.99}, {"lo": 1.0, "hi": 2.0})
    assert not report.ci_overlap({"lo": 2.01, "hi": 3.0}, {"lo": 1.0, "hi": 2.0})
    sf = {"mean": 0.3, "lo": 0.25, "hi": 0.35}
    out = report.compare(
        {
            "dae": {"mean": 0.6, "lo": 0.5, "hi": 0.7},
            "dae_deep": {"mean": 0.4, "lo": 0.34, "hi": 0.46},
        },
        sf,
    )
    assert out["holds"] and out["margin"] == pytest.approx(0.1)
    assert out["overlap"] is True and out["per_model"]["dae"]["overlap"] is False
    with pytest.raises(ValueError, match="at least one DAE"):
        report.compare({}, sf)


def test_table_numbers_match_inputs(tmp_path):
    values = {"dae": [0.1, 0.2, 0.3], "dae_deep": [0.7, 0.72, 0.71], "dae_sf": [0.05, 0.06, 0.07]}
    run = make_run(tmp_path, HOLDS, per_setting={"nca_authors": values})
    md = report.build_report(run)
    # mean 0.2, sample std 0.1, half-width t * 0.1 / sqrt(3)
    half = T_975_DF2 * 0.1 / math.sqrt(3)
    row = next(line for line in md.splitlines() if line.startswith("| `nca_authors` | `dae` |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == f"0.200 ± {half:.3f}"
    assert cells[3] == f"0.100 ± {half / 2:.3f}"  # unweighted = half of the weighted in make_run
    assert cells[6] == "0.300 ± 0.000" and cells[7] == "0.500 ± 0.000"
    assert cells[8] == "2/3"
    lstsq_row = next(line for line in md.splitlines() if line.startswith("| `lstsq` | `dae` |"))
    assert lstsq_row.rstrip().endswith("| — |")  # closed forms have no convergence
    # separation: magnitude SDR per seed 4, 5, 6 -> 5.00 ± t/sqrt(3); vocals SDR = mag SDR - 1
    sep = next(line for line in md.splitlines() if line.startswith("| `dae_sf` | "))
    half_db = T_975_DF2 * 1.0 / math.sqrt(3)
    assert f"4.00 ± {half_db:.2f}" in sep and f"5.00 ± {half_db:.2f}" in sep
    assert f"8.00 ± {half_db:.2f}" in sep  # training improvement 7, 8, 9
    oracle = next(line for line in md.splitlines() if line.startswith("| *oracle_irm* |"))
    assert "11.50" in oracle and "12.50" in oracle
    assert "abc123" in md and "embedded synthetic corpus" in md


def test_missing_evaluation_still_writes_report(tmp_path):
    run = make_run(tmp_path, HOLDS, with_eval=False)
    path = report.write_report(run, run / "REPORT.md", timings={"train": 12.345, "mappings": 3.0})
    md = path.read_text()
    assert "No evaluation results in this run" in md
    assert "| train | 12.3 |" in md
    assert "vocals SDR" not in md  # no museval columns without results
    assert json.loads((run / "conclusion.json").read_text()) == json.loads(
        json.dumps(report.conclusion(run))
    )


def test_missing_mappings_is_undetermined(tmp_path):
    run = make_run(tmp_path, HOLDS)
    for f in (run / "mappings").iterdir():
        f.unlink()
    (run / "mappings").rmdir()
    c = report.conclusion(run)
    assert c["overall"]["verdict"] == "undetermined" and c["overall"]["holds"] is False
    md = report.build_report(run)
    assert "The conclusion cannot be computed" in md
    with pytest.raises(FileNotFoundError, match="does not exist"):
        report.build_report(tmp_path / "nope")


def test_linearity_sentence_follows_spread(tmp_path):
    poor = report.build_report(make_run(tmp_path / "a", HOLDS, spread=0.8))
    fair = report.build_report(make_run(tmp_path / "b", HOLDS, spread=0.2))
    assert "one matrix is a poor summary of this model on these frames" in poor
    assert "poor summary" not in fair and "one matrix is a fair summary" in fair


def test_heldout_fidelity_caveat(tmp_path):
    bad = report.conclusion(make_run(tmp_path / "a", HOLDS, heldout=1.02))
    good = report.conclusion(make_run(tmp_path / "b", HOLDS, heldout=0.5))
    assert bad["nca_authors"]["describes_only_fitted"] == list(MODELS)
    assert "nca_authors" in bad["overall"]["fidelity_caveat"]
    assert good["overall"]["fidelity_caveat"] == []


def test_figures_links_and_copy_outputs(tmp_path):
    run = make_run(tmp_path / "run", HOLDS)
    (run / "figures").mkdir()
    for name in ("mapping_matrices.png", "mapping_matrices.pdf", "linearity.png"):
        (run / "figures" / name).write_bytes(b"fake")
    with pytest.raises(FileNotFoundError, match="write_report"):
        report.copy_outputs(run, tmp_path / "out")
    report.write_report(run, run / "REPORT.md")
    md = (run / "REPORT.md").read_text()
    assert "](figures/mapping_matrices.png)" in md and "](figures/linearity.png)" in md
    assert "](figures/mapping_matrices.pdf)" in md
    assert "loss_curves" not in md  # only figures that exist are linked
    written = report.copy_outputs(run, tmp_path / "out")
    assert {p.name for p in written} == {
        "REPORT.md",
        "mapping_matrices.png",
        "mapping_matrices.pdf",
        "linearity.png",
    }
    copied = (tmp_path / "out" / "REPORT.md").read_text()
    assert "](mapping_matrices.png)" in copied and "](figures/" not in copied
    # a report written elsewhere links back to the run's figures
    report.write_report(run, tmp_path / "elsewhere" / "R.md")
    assert "](../run/figures/linearity.png)" in (tmp_path / "elsewhere" / "R.md").read_text()
