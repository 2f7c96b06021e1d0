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
    assert "the 95 % seed CIs do not overlap" in md
    assert "(every one excludes 0)" in md  # Welch CIs of DAE - SF
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


def _patch(run: Path, setting: str, **fields) -> None:
    """Overwrite `fields` of every pooled record of `setting` in the run's mappings/result.json."""
    path = run / "mappings" / "result.json"
    data = json.loads(path.read_text())
    for r in data["records"]:
        if r["setting"] == setting and r["kind"] == "pooled":
            r.update(fields)
    path.write_text(json.dumps(data))


def _header_verdict(md: str) -> str:
    return next(line for line in md.splitlines() if line.startswith("- **Verdict**"))


def test_poor_fit_makes_a_setting_uninformative_and_the_verdict_undetermined(tmp_path):
    # the authors' setting "contradicts", but its fit misses even the fitted frames
    run = make_run(tmp_path, HOLDS, per_setting={"nca_authors": REVERSED})
    _patch(run, "nca_authors", fidelity_fit=[0.95, 0.95, 0.95])
    c = report.conclusion(run)
    v = c["nca_authors"]
    assert v["informative"] is False and "fitted frames (rel. L1 0.950" in v["reason"]
    assert c["nca_converged"]["informative"] is True and c["nca_converged"]["reason"] is None
    o = c["overall"]
    assert o["uninformative"] == ["nca_authors"]
    assert o["contradicting"] == [] and "nca_authors" not in o["supporting"]
    assert o["verdict"] == "undetermined" and o["holds"] is False
    md = report.build_report(run)
    assert "**Undetermined:**" in md and "does NOT hold" not in md
    assert "`nca_authors` is uninformative" in md
    header = _header_verdict(md)
    assert "**undetermined**" in header and "uninformative fits: `nca_authors`" in header


def test_no_converged_fit_is_uninformative(tmp_path):
    run = make_run(tmp_path, HOLDS, per_setting={"nca_converged": REVERSED})
    _patch(run, "nca_converged", converged=[False, False, False])
    c = report.conclusion(run)
    assert c["nca_converged"]["informative"] is False
    assert c["nca_converged"]["reason"] == "no fit converged"
    assert c["overall"]["verdict"] == "undetermined"
    assert "`nca_converged`: no fit converged" in report.build_report(run)


def test_informative_contradiction_decides_even_with_uninformative_authors(tmp_path):
    run = make_run(tmp_path, HOLDS, per_setting={"lstsq": REVERSED, "nca_authors": REVERSED})
    _patch(run, "nca_authors", fidelity_fit=[1.2, 1.2, 1.2])
    o = report.conclusion(run)["overall"]
    assert o["verdict"] == "does not hold" and o["contradicting"] == ["lstsq"]
    assert o["uninformative"] == ["nca_authors"] and o["clear"] == ["lstsq"]
    assert "lstsq" in o["reason"]


def test_uninformative_contradiction_does_not_block_holds(tmp_path):
    run = make_run(tmp_path, HOLDS, per_setting={"lstsq": REVERSED})
    _patch(run, "lstsq", fidelity_fit=[0.9, 0.9, 0.9])  # at the threshold counts as poor
    o = report.conclusion(run)["overall"]
    assert o["verdict"] == "holds" and o["uninformative"] == ["lstsq"]
    assert o["contradicting"] == []


def test_one_seed_claims_no_separation(tmp_path):
    one = {m: v[:1] for m, v in HOLDS.items()}
    run = make_run(tmp_path, one, per_setting={"lstsq": {m: v[:1] for m, v in REVERSED.items()}})
    c = report.conclusion(run)
    v = c["nca_authors"]
    assert v["overlap"] is None and v["separated"] is None
    assert all(p["overlap"] is None and p["diff_ci"] is None for p in v["per_model"].values())
    assert c["overall"]["separated"] == [] and c["overall"]["clear"] == []
    md = report.build_report(run)
    assert "one seed: no spread estimate" in md
    assert "CIs do not overlap" not in md and "excludes 0" not in md
    assert report.ci_overlap({"lo": 0, "hi": 0, "n": 1}, {"lo": 5, "hi": 6, "n": 3}) is None


def test_welch_ci_matches_closed_form_and_wording(tmp_path):
    a, b = [0.1, 0.2, 0.3], [0.05, 0.06, 0.08]
    va, vb = sum((x - 0.2) ** 2 for x in a) / 2, sum((x - sum(b) / 3) ** 2 for x in b) / 2
    se2 = va / 3 + vb / 3
    df = se2**2 / ((va / 3) ** 2 / 2 + (vb / 3) ** 2 / 2)  # Welch-Satterthwaite
    import scipy.stats

    half = scipy.stats.t.ppf(0.975, df) * math.sqrt(se2)
    diff = 0.2 - sum(b) / 3
    assert report.welch_ci(a, b) == pytest.approx([diff - half, diff + half], rel=1e-9)
    assert report.welch_ci([1.0], b) is None
    run = make_run(
        tmp_path,
        HOLDS,
        per_setting={"nca_authors": {"dae": a, "dae_deep": [0.7, 0.72, 0.71], "dae_sf": b}},
    )
    c = report.conclusion(run)
    v = c["nca_authors"]
    assert v["per_model"]["dae"]["diff_ci"] == pytest.approx([diff - half, diff + half])
    assert v["direction"] == "dae_more_diagonal"
    assert diff - half < 0  # dae's Welch CI contains 0 although its mean is higher
    assert v["separated"] is False and "nca_authors" not in c["overall"]["separated"]
    assert "nca_converged" in c["overall"]["separated"]
    md = report.build_report(run)
    assert "(only `dae_deep` excludes 0)" in md
    assert "so the ordering is within seed-to-seed variation" not in md
    assert "Welch 95 % CI of DAE − SF" in md


def test_poor_fit_and_heldout_sentence(tmp_path):
    run = make_run(tmp_path, HOLDS, heldout=1.05)
    _patch(run, "lstsq", fidelity_fit=[0.95, 0.95, 0.95])
    lines = report.build_report(run).splitlines()
    lstsq = next(line for line in lines if line.startswith("- `lstsq` **"))
    nca = next(line for line in lines if line.startswith("- `nca_authors` **"))
    assert "the fit reproduces neither the fitted nor the held-out frames" in lstsq
    assert "only the frames" not in lstsq
    assert "those matrices describe only the frames they were fitted on" in nca
    assert "reproduces neither" not in nca


def test_missing_required_setting_could_not_be_compared(tmp_path):
    run = make_run(tmp_path, REVERSED)
    path = run / "mappings" / "result.json"
    data = json.loads(path.read_text())
    data["records"] = [
        r for r in data["records"] if not (r["setting"] == "nca_converged" and r["model"] == "dae")
    ]
    path.write_text(json.dumps(data))
    c = report.conclusion(run)
    assert c["nca_converged"]["holds"] is None and "nca_converged" in c["overall"]["missing"]
    md = report.build_report(run)
    assert "`nca_converged` could not be compared (missing: no pooled fit of dae)" in md
    assert "`nca_converged` does not support it" not in md


def test_initialisation_direction_change_is_reported(tmp_path):
    mixed = {"dae": [0.5, 0.9, 0.7], "dae_deep": [0.1, 0.2, 0.15], "dae_sf": [0.3, 0.35, 0.4]}
    run = make_run(tmp_path, REVERSED, per_setting={"nca_uniform": mixed})
    (group,) = report.conclusion(run)["overall"]["initialisation"]
    assert group["depends_on_init"] is False and group["direction_depends_on_init"] is True
    md = report.build_report(run)
    assert "the ordering differs between initialisations" in md
    assert "does not depend on the initialisation" not in md


def test_figure_captions_write_once_and_mixture_labels(tmp_path, monkeypatch):
    assert all(prefix != "loss_curves" for prefix, _ in report.FIGURES)
    run = make_run(tmp_path / "run", HOLDS)
    (run / "figures").mkdir()
    for name in ("training_curves.png", "fit_loss_curves_nca_authors.png"):
        (run / "figures" / name).write_bytes(b"fake")
    calls = []
    real = report._conclusion
    monkeypatch.setattr(report, "_conclusion", lambda d: calls.append(1) or real(d))
    report.write_report(run, run / "REPORT.md")
    assert len(calls) == 1
    md = (run / "REPORT.md").read_text()
    assert "### Training curves" in md
    assert "### Loss curves of the iterative mapping fits: `nca_authors`" in md
    assert "| *mixture* (evaluation stage, mean over tracks) |" in md
    assert "the training stage's pooled mixture magnitude SDR: -2.00 dB" in md
