"""Tests of ncajax.report (and the verdict it prints) on hand-built run directories.

The run directories hold the records a mapping stage writes (`ncajax.nca.run_stage`): per
(model, setting, kind) tables `(n_seeds, n_songs)` of held-out errors and structure metrics, the zero
and per-bin-gain baselines, the per-model facts (dead units, per-frame Jacobians), plus training and
evaluation results. No training and no fits: JSON files only, so every number is known exactly.

The verdict's rules are tested once, in test_verdict.py; here each verdict case only checks that the report
states what the verdict object (`report.conclusion`, also written as conclusion.json) says.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from fakes import baseline_records, control_record, write_mapping_stage
from fakes import grid as _grid

from ncajax.config import (
    PRIMARY_ESTIMATOR,
    PRIMARY_METRIC,
    MappingConfig,
    STFTConfig,
    default_settings,
    to_dict,
)
from ncajax.report import _report as report
from ncajax.results import _verdict as verdict
from ncajax.stats import seed_song_bootstrap

MODELS = ("dae", "dae_deep", "dae_sf")
S, T = 3, 4  # seeds per model, held-out test songs
SEEDS = (0, 1, 2)
HELDOUT_SONGS = [f"test{t}" for t in range(T)]
SETTINGS = [s.setting_dict() for s in default_settings(steps=50, learning_rate=1e-2)]
ITERATIVE = {s["name"] for s in SETTINGS if s["method"] in ("nca", "student")}
T_975_DF2 = 4.302652729911275  # Student t quantile 0.975 with 2 degrees of freedom

# primary metric (weighted diagonal energy ratio) level per model
HOLDS = {"dae": 0.8, "dae_deep": 0.7, "dae_sf": 0.2}
REVERSED = {"dae": 0.2, "dae_deep": 0.25, "dae_sf": 0.8}
OVERLAP = {"dae": 0.5, "dae_deep": 0.5, "dae_sf": 0.5}
FIT_ERR, GAIN_ERR = 0.2, 0.5  # held-out rel. L1 of the fits and of the per-bin gain


def grid(level: float, key: str, jitter: float = 0.02) -> list[list[float]]:
    """A deterministic (S, T) table around `level` (the jitter depends on `key` only)."""
    return _grid(level, key, (S, T), jitter)


def metrics(w: float, key: str, jitter: float = 0.02) -> dict[str, list]:
    """Every structure metric the stage records, as (S, T) tables; weighted ratio at level w."""
    return {
        "weighted_diagonal_energy_ratio": grid(w, key + "/w", jitter),
        "diagonal_energy_ratio": grid(0.9 * w, key + "/u", jitter),
        "weighted_near_diagonal_energy": grid(min(0.95, w + 0.1), key + "/wn", jitter),
        "near_diagonal_energy": grid(min(0.95, 0.9 * w + 0.1), key + "/n", jitter),
        "mean_coupling_distance": grid(3.0, key + "/d", jitter),
        "mean_coupling_distance_octaves": grid(0.5, key + "/o", jitter),
        "spread_mean": grid(1.0, key + "/sm", jitter),
        "spread_median": grid(1.0, key + "/sd", jitter),
    }


def functional(w: float, key: str, jitter: float = 0.02) -> dict[str, list]:
    """The functional-diagonality tables the stage records; the diagonal keep (primary) at level w."""
    return {"err_full": grid(FIT_ERR - 0.01, key + "/clip"), "err_diag": grid(0.5, key + "/ed", jitter),
            "err_band": grid(0.4, key + "/eb", jitter), "err_zero": [[1.0] * T] * S,
            "keep_diag": grid(w, key + "/kd", jitter), "keep_band": grid(min(0.95, w + 0.1), key + "/kb", jitter)}


def pooled(model: str, setting: dict, w: float, *, jitter: float = 0.02) -> dict:
    key = f"{model}/{setting['name']}"
    it = setting["name"] in ITERATIVE
    rec = {
        "model": model,
        "setting": setting["name"],
        "kind": "pooled",
        "method": setting["method"],
        "settings": setting,
        "fit_seeds": list(SEEDS) if it else None,
        "rel_l1_fit": [0.1, 0.2, 0.3],
        "rel_l1_heldout": grid(FIT_ERR, key + "/err"),
        "rel_l1_heldout_clipped": grid(FIT_ERR - 0.01, key + "/clip"),
        "converged": [True] * S if it else [None] * S,
        "final_loss": [0.01] * S if it else [None] * S,
        "local_spread": [0.8] * S if setting["method"] == "jacobian" else [None] * S,
        "metrics": metrics(w, key, jitter),
        "functional": functional(w, key, jitter),
        "wall_s": 1.0,
    }
    if setting["method"] == "jacobian" and model == "dae_sf":
        rec["part_metrics"] = {
            "mask": {**metrics(0.9, key + "/mask"), "diagonal_energy_ratio": [[1.0] * T] * S},
            "mask_jacobian": metrics(0.3, key + "/mj"),
        }
    return rec


def baselines(model: str, gain: float = GAIN_ERR) -> list[dict]:
    return baseline_records(model, n_seeds=S, n_songs=T, gain_fit=[0.45, 0.5, 0.55],
                            gain_heldout=grid(gain, model + "/gain"))


def model_facts(model: str, spread: float) -> dict:
    levels = [0.05, 0.25, 0.5, 0.75, 0.95]
    lin = {
        "frame_metric_quantiles": {
            "weighted_diagonal_energy_ratio": [0.1, 0.2, 0.3, 0.4, 0.5],
            "diagonal_energy_ratio": [0.1, 0.2, 0.3, 0.4, 0.5],
            "near_diagonal_energy": [0.2, 0.3, 0.4, 0.5, 0.6],
            "mean_coupling_distance": [1.0, 2.0, 3.0, 4.0, 5.0],
        },
        "quantile_levels": levels,
        "frame_metric_values": {"weighted_diagonal_energy_ratio": [0.1, 0.3, 0.5]},
        "zero_jacobian_frames": 1,
        "n_frames": 16,
        "rel_l1_per_frame_linear": 0.1,
        "rel_l1_mean_jacobian": 0.9,
        "local_spread": spread,
    }
    return {
        "model": model,
        "setting": "-",
        "kind": "model",
        "wall_s": 1.0,
        "dead_units": [{"layer_0": 0.0, "layer_1": 0.5, "output": 0.5, "overall": 0.25}] * S,
        "linearity": [lin, lin],
    }


def records_for(
    levels: dict, *, per_setting: dict | None = None, spread: float = 0.8, same: bool = False
) -> list[dict]:
    """Every record of a mapping stage in run_stage's order; `per_setting[name]` overrides `levels`.
    `same`: every model of a setting gets the very same metric tables (DAE − dae_sf centred on 0)."""
    per_setting = per_setting or {}
    out = []
    for m in MODELS:
        out += baselines(m)
        for s in SETTINGS:
            rec = pooled(m, s, per_setting.get(s["name"], levels)[m])
            if same:
                rec["metrics"] = metrics(0.5, s["name"], jitter=0.1)
                rec["functional"] = functional(0.5, s["name"], jitter=0.1)
            out.append(rec)
        out.append(model_facts(m, spread))
    return out


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def bss(sdr: float) -> dict:
    return {
        "mag_sdr": sdr,
        "n_tracks": 3,
        "vocals": {"SDR": sdr - 1, "SIR": sdr + 5, "SAR": sdr + 1, "ISR": sdr + 2},
        "accompaniment": {"SDR": 9.0, "SIR": 9.0, "SAR": 9.0, "ISR": 9.0},
    }


def make_run(
    root: Path,
    levels: dict = HOLDS,
    *,
    per_setting: dict | None = None,
    patch: dict | None = None,
    records: list[dict] | None = None,
    finished: bool = True,
    with_eval: bool = True,
    real: bool = False,
    spread: float = 0.8,
    same: bool = False,
) -> Path:
    """A complete run directory in the format of the pipeline's stages.

    `patch[(model, setting, kind)]`: fields to overwrite in that record; `records`: replace every
    mapping record; `finished=False`: only metrics.jsonl (a mapping stage still running)."""
    stft = STFTConfig(sample_rate=8000, n_fft=256, win_length=256, hop_length=64)
    for m in MODELS:
        write_json(
            root / "train" / m / "config.json",
            {
                "data": {
                    "dataset": "embedded synthetic corpus",
                    "preset": "fast",
                    "tracks": {"train": ["a", "b"], "valid": ["c"], "test": HELDOUT_SONGS},
                    "corpus": {"seed": 7},
                },
                "stft": to_dict(stft),
                "model": {"name": m},
            },
        )
        write_json(
            root / "train" / m / "meta.json", {"git_commit": "abc123", "started": "2026-01-01"}
        )
        write_json(
            root / "train" / m / "result.json",
            {
                "finished": True,
                "epoch": 5,
                "seeds": list(SEEDS),
                "test_mag_sdr_db": [5.0, 6.0, 7.0],
                "test_mixture_mag_sdr_db": -2.0,
                "test_improvement_db": [7.0, 8.0, 9.0],
            },
        )
    recs = (
        records
        if records is not None
        else records_for(levels, per_setting=per_setting, spread=spread, same=same)
    )
    for r in recs:
        r.update((patch or {}).get((r["model"], r["setting"], r["kind"]), {}))
    mdir = root / "mappings"
    cfg = MappingConfig(
        settings=default_settings(steps=50, learning_rate=1e-2),
        n_fit_frames=64,
        heldout_frames_per_song=20,
    )
    write_mapping_stage(mdir, recs, cfg=cfg, stft=stft, models=MODELS, heldout_songs=HELDOUT_SONGS,
                        finished=finished, meta={"git_commit": "def456"})
    if with_eval:
        summary = {"mixture": bss(-2.0), "oracle_irm": bss(12.5)}
        for m in MODELS:
            for s, v in zip(SEEDS, (4.0, 5.0, 6.0), strict=True):
                summary[f"{m}/seed{s}"] = bss(v)
        result = {"summary": summary, "per_track": {}}
        if real:
            rs = {"mixture": {"vocals": {"SDR": 1.0}}, "oracle_irm": {"vocals": {"SDR": 9.0}}}
            for m in MODELS:
                for s, v in zip(SEEDS, (3.0, 4.0, 5.0), strict=True):
                    rs[f"{m}/seed{s}"] = {"vocals": {"SDR": v}}
            result["real"] = {"summary": rs, "tracks": ["A Classic Education - NightOwl"]}
        write_json(root / "evaluation" / "result.json", result)
    return root


def record_of(run: Path, model: str, setting: str, kind: str = "pooled") -> dict:
    recs = json.loads((run / "mappings" / "result.json").read_text())["records"]
    return next(r for r in recs if (r["model"], r["setting"], r["kind"]) == (model, setting, kind))


def iv(interval: dict) -> str:
    """'mean [lo, hi]' with 3 decimals, written here independently of report_format.fmt_iv."""
    return f"{interval['mean']:.3f} [{interval['lo']:.3f}, {interval['hi']:.3f}]"


def row(md: str, *starts: str) -> list[str]:
    """The cells of the first table row whose leading cells are `starts`."""
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[: len(starts)] == list(starts):
                return cells
    raise AssertionError(f"no table row starting with {starts}")


def section(md: str, heading: str) -> str:
    """The text of the `## heading` section (up to the next level-2 heading)."""
    start = md.index(heading + "\n")
    end = md.find("\n## ", start + len(heading))
    return md[start:] if end < 0 else md[start:end]


def verdict_line(md: str) -> str:
    return next(line for line in md.splitlines() if line.startswith("**Verdict:**"))


def assert_states(md: str, concl: dict) -> None:
    """The report states what the verdict object says: the primary estimator's DAE − dae_sf intervals and
    the reason in the verdict line, and per estimator its ordering and whether it counts."""
    line = verdict_line(md)
    for dae, interval in (concl["settings"][PRIMARY_ESTIMATOR].get("intervals") or {}).items():
        assert f"{dae} − dae_sf {iv(interval)}" in line
    reason = concl["overall"]["reason"]
    assert line.endswith(f": {reason}.") if reason else line.endswith("interval]).")
    ordering = {"dae_more_diagonal": "DAEs more diagonal", "sf_more_diagonal": "`dae_sf` more diagonal",
                "mixed": "mixed", "undetermined": "undetermined"}
    conclusion = section(md, "## Conclusion")
    for name, v in concl["settings"].items():
        cells = row(conclusion, f"`{name}`" + (" (primary)" if name == PRIMARY_ESTIMATOR else ""))
        assert cells[3] == ordering[v["ordering"]], name
        assert cells[-1] == "yes" if v["counts"] else cells[-1].startswith("no"), name


# --------------------------------------------------------------------------------------------------
# the verdict


def test_holds_when_daes_are_clearly_more_diagonal_and_fits_beat_the_gain(tmp_path):
    run = make_run(tmp_path)
    path = report.write_report(run, run / "REPORT.md")
    concl = json.loads((run / "conclusion.json").read_text())
    # conclusion.json is exactly the conclusion of the run
    assert concl == json.loads(json.dumps(report.conclusion(run)))
    assert concl["overall"]["verdict"] == "holds"  # the case this test renders
    md = path.read_text()
    assert_states(md, concl)
    line = verdict_line(md)
    assert "**holds** by the primary estimator `nca_converged`" in line
    assert f"`{PRIMARY_METRIC}`" in line and PRIMARY_METRIC == "diagonal_keep"
    assert "is reversed" not in md and "is undetermined" not in md
    assert "does not hold" not in md
    assert (
        "The primary estimator on the secondary metric (`diagonal_energy_ratio`, unweighted)" in md
    )


def test_reversed_when_dae_sf_is_clearly_more_diagonal(tmp_path):
    run = make_run(tmp_path, REVERSED)
    report.write_report(run, run / "REPORT.md")
    concl = json.loads((run / "conclusion.json").read_text())
    assert concl["overall"]["verdict"] == "reversed"  # the case this test renders
    md = (run / "REPORT.md").read_text()
    assert_states(md, concl)
    assert (
        "**is reversed (`dae_sf`'s mapping is the more diagonal)** by the primary estimator"
        in verdict_line(md)
    )
    assert "**holds**" not in md


def test_overlapping_tables_are_undetermined_never_does_not_hold(tmp_path):
    run = make_run(tmp_path, OVERLAP, same=True)
    c = report.conclusion(run)
    assert c["settings"][PRIMARY_ESTIMATOR]["ordering"] == "undetermined"  # the case this test renders
    md = report.build_report(run)
    assert_states(md, c)
    line = verdict_line(md)
    assert "**is undetermined**" in line and "a DAE − dae_sf interval includes 0" in line
    assert "not hold" not in md.lower()
    assert "No secondary estimator's direction counts under these rules." in md


def test_mixed_directions_are_not_a_verdict(tmp_path):
    run = make_run(tmp_path, {"dae": 0.8, "dae_deep": 0.1, "dae_sf": 0.4})
    c = report.conclusion(run)
    assert c["settings"][PRIMARY_ESTIMATOR]["ordering"] == "mixed"  # the case this test renders
    md = report.build_report(run)
    assert_states(md, c)
    assert "**is undetermined**" in verdict_line(md) and "the DAEs disagree" in verdict_line(md)


def test_primary_fit_not_below_per_bin_gain_is_uninformative_and_undetermined(tmp_path):
    # clear direction, but dae_sf's NCA fit does no better than the per-bin gain on unseen songs
    above_gain = (np.asarray(grid(GAIN_ERR, "dae_sf/gain")) + 0.05).tolist()
    run = make_run(
        tmp_path, patch={("dae_sf", "nca_converged", "pooled"): {"rel_l1_heldout": above_gain,
                                                                "rel_l1_heldout_clipped": above_gain}}
    )
    c = report.conclusion(run)
    p = c["settings"][PRIMARY_ESTIMATOR]
    assert p["ordering"] == "dae_more_diagonal" and not p["informative"]["dae_sf"]["informative"]  # the case
    md = report.build_report(run)
    assert_states(md, c)
    assert "**is undetermined**" in verdict_line(md)
    assert "uninformative on held-out songs for dae_sf" in verdict_line(md)
    cells = row(md, "`nca_converged` (primary)")
    assert cells[4] == "dae: yes, dae_deep: yes, dae_sf: no"
    assert cells[-1].startswith("no: uninformative")
    errors = section(md, "## Error on unseen songs against two baselines")
    assert row(errors, "`nca_converged`", "`dae_sf`")[-1] == "no"
    assert row(errors, "`nca_converged`", "`dae`")[-1] == "yes"


def test_fewer_than_half_converged_does_not_count(tmp_path):
    run = make_run(tmp_path, patch={("dae", "nca_converged", "pooled"): {"converged": [True, False, False]}})
    c = report.conclusion(run)
    assert c["settings"][PRIMARY_ESTIMATOR]["converged"]["dae"] == (1, S)  # the case this test renders
    md = report.build_report(run)
    assert_states(md, c)
    cells = row(md, "`nca_converged` (primary)")
    assert cells[5] == "dae: 1/3, dae_deep: 3/3, dae_sf: 3/3"
    assert row(md, "`lstsq`")[5] == "—"  # a closed form has no convergence
    assert "fewer than half the fits converged for dae" in verdict_line(md)


def test_jacobian_is_not_gated_by_fit_error(tmp_path):
    # the mean Jacobian and least squares both do worse than the per-bin gain on unseen songs
    bad = {"rel_l1_heldout": grid(0.7, "worse-than-gain"), "rel_l1_heldout_clipped": grid(0.7, "worse-than-gain")}
    patch = {(m, s, "pooled"): dict(bad) for m in MODELS for s in ("jacobian", "lstsq")}
    run = make_run(tmp_path, REVERSED, per_setting={"jacobian": HOLDS, "lstsq": HOLDS}, patch=patch)
    c = report.conclusion(run)
    assert c["overall"]["verdict"] == "reversed"  # the case this test renders (rules: test_verdict.py)
    md = report.build_report(run)
    assert_states(md, c)
    cells = row(md, "`jacobian`")
    assert cells[4] == "dae: no, dae_deep: no, dae_sf: no" and cells[-1].startswith("no: ")
    assert row(md, "`lstsq`")[-1].startswith("no: ")
    # its errors are still reported
    err = seed_song_bootstrap(grid(0.7, "worse-than-gain"))
    errors = section(md, "## Error on unseen songs against two baselines")
    assert row(errors, "`jacobian`", "`dae`")[3] == iv(err)


# --------------------------------------------------------------------------------------------------
# the numbers in the tables


def test_error_table_and_protocol_line(tmp_path):
    run = make_run(tmp_path)
    md = report.build_report(run)
    errors = section(md, "## Error on unseen songs against two baselines")
    cells = row(errors, "`nca_converged`", "`dae`")
    half = T_975_DF2 * 0.1 / math.sqrt(3)  # rel_l1_fit 0.1, 0.2, 0.3: Student t over seeds
    assert cells[2] == f"0.200 ± {half:.3f}" and cells[-1] == "yes"
    assert row(errors, "*per_bin_gain* (baseline)", "`dae`")[5:] == ["—", "—"]
    assert row(errors, "*zero* (baseline)", "`dae_sf`")[3] == "1.000 [1.000, 1.000]"
    # the protocol line says what was fitted and judged
    assert "fitted on 64 frames pooled over 2 songs" in md and "judged on 4 unseen test songs" in md


def test_non_finite_metric_is_shown_not_bootstrapped(tmp_path):
    table = grid(0.3, "nan")
    table[1][2] = float("nan")
    run = make_run(
        tmp_path,
        patch={
            ("dae", "lstsq", "pooled"): {
                "metrics": {**metrics(0.8, "dae/lstsq"), "diagonal_energy_ratio": table}
            }
        },
    )
    md = report.build_report(run)
    cells = row(section(md, "## Structure of the mapping matrices"), "`lstsq`", "`dae`")
    assert cells[3] == "non-finite" and cells[2] != "non-finite"


def test_dae_sf_jacobian_mask_part_is_flagged_diagonal_by_construction(tmp_path):
    run = make_run(tmp_path)
    md = report.build_report(run)
    jac = record_of(run, "dae_sf", "jacobian")
    mask = row(md, "`jacobian`", "`dae_sf`", "`mask` (diagonal by construction)")
    assert mask[4] == "1.000 [1.000, 1.000]"  # diag(m): unweighted diagonal ratio 1
    assert mask[3] == iv(
        seed_song_bootstrap(jac["part_metrics"]["mask"]["weighted_diagonal_energy_ratio"])
    )
    other = row(md, "`jacobian`", "`dae_sf`", "`mask_jacobian`")
    assert other[3] == iv(
        seed_song_bootstrap(jac["part_metrics"]["mask_jacobian"]["weighted_diagonal_energy_ratio"])
    )
    assert md.count("(diagonal by construction)") == 1
    assert "**By construction, not learning:** `jacobian` on `dae_sf`" in md
    assert "Parts of the skip-filtering model's Jacobian" in md


def test_separation_dead_units_and_linearity_tables(tmp_path):
    md = report.build_report(make_run(tmp_path))
    half_db = T_975_DF2 * 1.0 / math.sqrt(3)
    sep = row(section(md, "## Separation quality"), "`dae_sf`")
    # vocals SDR = mag SDR - 1 (3, 4, 5), SIR +5, SAR +1; training improvement 7, 8, 9
    assert sep[1:] == [f"{v:.2f} ± {half_db:.2f}" for v in (4.0, 10.0, 6.0, 5.0, 8.0)]
    oracle = row(md, "*oracle_irm*")
    assert oracle[1] == "11.50" and oracle[4] == "12.50"
    assert "the training stage's pooled mixture magnitude SDR: -2.00 dB" in md
    assert row(md, "`dae`", "0.250 ± 0.000")[2:] == [
        "0.500 ± 0.000",
        "0: 0.00 ± 0.00, 1: 0.50 ± 0.00",
    ]
    assert row(md, "`dae_deep`", "0.800 ± 0.000")[1:] == [
        "0.800 ± 0.000",
        "0.900 ± 0.000",
        "0.100 ± 0.000",
        "2/32",
    ]
    assert row(md, "`dae`", "weighted diag. ratio") == [
        "`dae`",
        "weighted diag. ratio",
        "0.100",
        "0.200",
        "0.300",
        "0.400",
        "0.500",
    ]
    assert "abc123" in md and "def456" in md and "embedded synthetic corpus" in md
    assert "corpus seed 7" in md


def test_linearity_sentence_follows_spread(tmp_path):
    poor = report.build_report(make_run(tmp_path / "a", spread=0.8))
    fair = report.build_report(make_run(tmp_path / "b", spread=0.2))
    assert "- `dae`: local spread 0.80 (threshold 0.5): one matrix is a poor summary." in poor
    assert "is a fair summary" not in poor
    assert "- `dae`: local spread 0.20 (threshold 0.5): one matrix is a fair summary." in fair
    assert "is a poor summary" not in fair


# --------------------------------------------------------------------------------------------------
# missing and unfinished stages


def test_missing_evaluation_still_writes_a_report_with_notes(tmp_path):
    run = make_run(tmp_path, with_eval=False)
    path = report.write_report(run, run / "REPORT.md", timings={"train": 12.345, "mappings": 3.0})
    md = path.read_text()
    assert "- no separation evaluation (`evaluation/result.json` is missing)" in md
    assert "_No evaluation results in this run" in md
    assert "| train | 12.3 |" in md and "| mappings | 3.0 |" in md
    assert "vocals SDR" not in md and "### On real music" not in md
    assert json.loads((run / "conclusion.json").read_text())["overall"]["verdict"] == "holds"


def test_missing_mappings_is_undetermined_with_a_note(tmp_path):
    run = make_run(tmp_path)
    for f in sorted((run / "mappings").iterdir()):
        f.unlink()
    (run / "mappings").rmdir()
    c = report.conclusion(run)
    assert (
        c["overall"]["verdict"] == "undetermined"
        and c["overall"]["reason"] == "no mapping stage results"
    )
    report.write_report(run, run / "REPORT.md")
    md = (run / "REPORT.md").read_text()
    assert "- no mapping stage results (`mappings/` is missing)" in md
    assert "_No mapping stage results: no verdict._" in md
    assert "**is undetermined**" in verdict_line(md) and "no mapping stage results" in verdict_line(
        md
    )
    assert json.loads((run / "conclusion.json").read_text())["overall"]["verdict"] == "undetermined"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        report.build_report(tmp_path / "nope")


def test_unfinished_mapping_stage_reads_metrics_jsonl(tmp_path):
    # the stage was stopped after dae and dae_deep: dae_sf has no records yet
    recs = [r for r in records_for(HOLDS) if r["model"] != "dae_sf"]
    run = make_run(tmp_path, records=recs, finished=False)
    assert not (run / "mappings" / "result.json").exists()
    md = report.build_report(run)
    assert "the mapping stage has not finished" in md
    fit = next(r for r in recs if (r["model"], r["setting"]) == ("dae", PRIMARY_ESTIMATOR))
    errors = section(md, "## Error on unseen songs against two baselines")
    assert row(errors, "`nca_converged`", "`dae`")[3] == iv(
        seed_song_bootstrap(fit["rel_l1_heldout"])
    )
    c = report.conclusion(run)
    assert c["overall"]["reason"] == "no fit for dae_sf"  # the case this test renders
    assert_states(md, c)
    assert "**is undetermined**" in verdict_line(md)


def test_untrained_model_is_noted(tmp_path):
    run = make_run(tmp_path)
    (run / "train" / "dae_deep" / "result.json").write_text(json.dumps({"finished": False}))
    assert "- training of `dae_deep` has not finished" in report.build_report(run)


# --------------------------------------------------------------------------------------------------
# real music, corpora, figures


def test_real_music_subsection_appears_with_evaluation_real(tmp_path):
    without = report.build_report(make_run(tmp_path / "a"))
    assert "### On real music" not in without
    md = report.build_report(make_run(tmp_path / "b", real=True))
    assert "### On real music" in md and "`A Classic Education - NightOwl`" in md
    real = md[md.index("### On real music") :]
    half = T_975_DF2 * 1.0 / math.sqrt(3)
    # vocals SDR 3, 4, 5 per seed; improvement over the mixture's 1.00
    assert row(real, "`dae`") == ["`dae`", f"4.00 ± {half:.2f}", f"3.00 ± {half:.2f}"]
    assert row(real, "*mixture*") == ["*mixture*", "1.00", "0.00"]
    assert row(real, "*oracle IRM*") == ["*oracle IRM*", "9.00", "8.00"]


def test_across_corpora_section_counts_per_corpus(tmp_path):
    runs_ = {
        "seed0": make_run(tmp_path / "c0", HOLDS),
        "seed1": make_run(tmp_path / "c1", REVERSED),
        "seed2": make_run(tmp_path / "c2", OVERLAP, same=True),
    }
    summary = verdict.across_corpora({k: report.conclusion(r) for k, r in runs_.items()})
    lines = report.corpora_section(summary)
    text = "\n".join(lines)
    assert "on 3 corpus seeds (`seed0`, `seed1`, `seed2`)" in text
    assert ("the primary verdict holds on 1, is reversed on 1, finds a per-bin filter sufficient on 0, "
            "no linear summary on 0 and is undetermined on 1 of 3") in text
    assert row(text, "**verdict** (primary)") == [
        "**verdict** (primary)",
        "**holds**",
        "**reversed**",
        "**undetermined**",
        "—",
    ]
    assert row(text, "`nca_converged` (primary)") == [
        "`nca_converged` (primary)",
        "DAEs more diagonal",
        "`dae_sf` more diagonal",
        "undetermined (does not count)",
        "DAEs more diagonal 1, dae_sf more diagonal 1, not counted 1",
    ]
    path = report.write_report(runs_["seed0"], tmp_path / "R.md", corpora=summary)
    md = path.read_text()
    assert (
        md.index("## Conclusion")
        < md.index("## Across corpus seeds")
        < md.index("## Error on unseen songs")
    )
    assert "## Across corpus seeds" not in report.build_report(runs_["seed0"])


def test_figure_links_order_and_copy_outputs(tmp_path):
    run = make_run(tmp_path / "run")
    figs = run / "figures"
    figs.mkdir()
    names = (
        "heldout_error.png",
        "direction_intervals.png",
        "direction_intervals.pdf",
        "mapping_matrices_nca_converged.png",
        "zz_extra_plot.png",
    )
    for name in names:
        (figs / name).write_bytes(b"fake")
    with pytest.raises(FileNotFoundError, match="write_report"):
        report.copy_outputs(run, tmp_path / "out")
    report.write_report(run, run / "REPORT.md")
    md = (run / "REPORT.md").read_text()
    assert (
        "### DAE − dae_sf intervals per estimator (seed × song intervals) "
        "([PDF](figures/direction_intervals.pdf))"
    ) in md
    assert "### Held-out error of every mapping against the baselines\n" in md  # no PDF, no link
    assert "### Mapping matrices per model: `nca_converged`" in md and "### zz extra plot" in md
    order = [
        md.index(f"](figures/{n}.png)")
        for n in (
            "direction_intervals",
            "heldout_error",
            "mapping_matrices_nca_converged",
            "zz_extra_plot",
        )
    ]
    assert order == sorted(order)
    assert "linearity.png" not in md  # only figures that exist are linked
    written = report.copy_outputs(run, tmp_path / "out")
    assert {p.name for p in written} == {"REPORT.md", *names}
    copied = (tmp_path / "out" / "REPORT.md").read_text()
    assert "](direction_intervals.png)" in copied and "](direction_intervals.pdf)" in copied
    assert "](figures/" not in copied
    # a report written elsewhere links back to the run's figures
    report.write_report(run, tmp_path / "elsewhere" / "R.md")
    assert "](../run/figures/heldout_error.png)" in (tmp_path / "elsewhere" / "R.md").read_text()


def test_no_figures_says_so(tmp_path):
    md = report.build_report(make_run(tmp_path))
    assert "_No figures in this run" in md


def test_functional_diagonality_table_and_branch_verdict(tmp_path):
    run = make_run(tmp_path)
    md = report.build_report(run)
    fd = section(md, "## Functional diagonality: does diag(C) do what C does on unseen songs?")
    for model in MODELS:
        fn = record_of(run, model, PRIMARY_ESTIMATOR)["functional"]
        cells = row(fd, f"`{PRIMARY_ESTIMATOR}`", f"`{model}`")
        assert cells[2] == f"{np.mean(fn['err_full']):.3f}" and cells[5] == "1.000"
        assert cells[6] == iv(seed_song_bootstrap(fn["keep_diag"]))
        assert cells[7] == iv(seed_song_bootstrap(fn["keep_band"]))
        assert cells[8].startswith("couplings")
    assert "err band ±100 Hz" in fd
    # a primary that does no better than the gain, with a diagonal keeping ~all: a per-bin filter suffices
    patch = {}
    for m in MODELS:
        gain = grid(GAIN_ERR, m + "/gain")
        patch[(m, PRIMARY_ESTIMATOR, "pooled")] = {
            "rel_l1_heldout": gain, "rel_l1_heldout_clipped": gain,
            "functional": {**functional(0.5, m), "keep_diag": grid(0.97, m + "/kd", 0.01)}}
    run = make_run(tmp_path / "suffices", patch=patch)
    c = report.conclusion(run)
    assert c["overall"]["verdict"] == "per_bin_filter_suffices"  # the case this test renders
    md = report.build_report(run)
    assert_states(md, c)
    assert "a per-bin filter suffices for `dae`, `dae_deep`, `dae_sf`" in verdict_line(md)


# --------------------------------------------------------------------------------------------------
# the under-convergence control


CONTROL_STEPS = (0, 50, 200)


def control_records(step_levels: dict, fit_err: dict) -> list[dict]:
    """Control records of nca_authors (lr 1e-4) and nca_converged: step_levels[steps] = {model: level} of
    both the diagonal keep and the weighted diagonal energy ratio, fit_err[steps] the fit error."""
    out = []
    for setting, lr in (("nca_authors", 1e-4), (PRIMARY_ESTIMATOR, 1e-2)):
        for steps in CONTROL_STEPS:
            for m in MODELS:
                key = f"{m}/{setting}@{steps}"
                out.append(control_record(
                    m, setting, steps, keep=grid(step_levels[steps][m], key + "/kd"),
                    ratio=grid(step_levels[steps][m], key + "/w"), fit_err=[fit_err[steps] + 0.01 * s for s in range(S)],
                    fit_steps=CONTROL_STEPS[-1], learning_rate=lr))
    return out


def test_under_convergence_control_section_and_the_frozen_p_sentence(tmp_path):
    sentence = "the authors' setting measures products of gated weights, not mappings"
    fit_err = {0: 0.9, 50: 0.5, 200: 0.25}
    # P frozen at its initialisation gives the authors' direction (DAEs more diagonal) on both metrics
    run = make_run(tmp_path / "a", records=records_for(HOLDS) + control_records(
        {0: HOLDS, 50: HOLDS, 200: REVERSED}, fit_err))
    report.write_report(run, run / "REPORT.md")
    md = (run / "REPORT.md").read_text()
    control = json.loads((run / "conclusion.json").read_text())["convergence_control"]
    assert control["frozen_p_reproduces_authors"] is True  # the case this test renders (rules: test_verdict.py)
    sec = section(md, "## Under-convergence control")
    assert sentence in sec and "**The frozen-P control reproduces the authors' direction**" in sec
    assert md.index("## Functional diagonality") < md.index("## Under-convergence control") < md.index(
        "## Structure of the mapping matrices")
    recs = {(r["model"], r["setting"]): r for r in json.loads((run / "mappings" / "result.json").read_text())["records"]}
    for setting in ("nca_authors", PRIMARY_ESTIMATOR):
        for steps in CONTROL_STEPS:
            cells = row(sec, f"`{setting}`", f"{steps:,}" + (" (P frozen)" if steps == 0 else ""))
            assert cells[2:5] == [f"{fit_err[steps] + 0.01:.3f}"] * 3  # mean of fit_err + 0, 0.01, 0.02
            for k, (table, dae) in enumerate([(t, d) for t in ("keep_diag", "weighted_diagonal_energy_ratio")
                                              for d in verdict.DAE_MODELS]):
                sub = "functional" if table == "keep_diag" else "metrics"
                a = recs[(dae, f"{setting}@{steps}")][sub][table]
                b = recs[("dae_sf", f"{setting}@{steps}")][sub][table]
                assert cells[5 + k] == iv(seed_song_bootstrap(a, b, seed=0)), (setting, steps, table, dae)
    assert row(sec, f"`{PRIMARY_ESTIMATOR}`", "200")[5].startswith("-")  # dae_sf ahead at 200 steps
    # frozen P gives the other direction: no such sentence
    run = make_run(tmp_path / "b", records=records_for(HOLDS) + control_records(
        {0: REVERSED, 50: HOLDS, 200: HOLDS}, fit_err))
    md = report.build_report(run)
    sec = section(md, "## Under-convergence control")
    assert report.conclusion(run)["convergence_control"]["frozen_p_reproduces_authors"] is False  # the case
    assert sentence not in md and "does not reproduce a counting direction" in sec
    # a stage without the control: no section
    assert "Under-convergence control" not in report.build_report(make_run(tmp_path / "c"))


def test_resolution_rung_is_read_through_the_run_summary(tmp_path):
    """A rung's numbers are its run's (dead output share, vocals SDR and training improvement over seeds,
    the primary estimator's intervals and the verdict), against NumPy on the files written here."""
    from ncajax.report import _resolution as resolution

    run = make_run(tmp_path / "run")
    ev = json.loads((run / "evaluation" / "result.json").read_text())
    dead = {"dae": [0.0, 0.1, 0.05], "dae_deep": [0.2, 0.3, 0.1], "dae_sf": [0.0, 0.0, 0.0]}
    ev["units"] = {m: {"frames": 40, "dead_share": d, "homogeneity": {},
                       "live_by_octave": [[{"lo_hz": 0.0, "hi_hz": 0.0, "n_units": 1, "live_share": 1.0}]] * 3}
                   for m, d in dead.items()}
    write_json(run / "evaluation" / "result.json", ev)
    write_json(run / "timings.json", {"total": 90.0})
    with pytest.raises(FileNotFoundError, match="conclusion.json"):
        resolution.summarise({"fast": run})
    report.write_report(run, run / "REPORT.md")
    out = resolution.summarise({"fast": run})
    rung = out["rungs"]["fast"]
    concl = json.loads((run / "conclusion.json").read_text())
    assert (rung["preset"], rung["sample_rate"], rung["n_bins"], rung["wall_s"]) == ("fast", 8000, 129, 90.0)
    assert rung["verdict"] == concl["overall"]["verdict"]
    assert rung["primary_intervals"] == concl["settings"][PRIMARY_ESTIMATOR]["intervals"]
    deep = rung["models"]["dae_deep"]
    assert deep["dead_share"] == pytest.approx(np.mean(dead["dae_deep"])) and deep["dead_share_max"] == 0.3
    sdr = [ev["summary"][f"dae_deep/seed{s}"]["vocals"]["SDR"] for s in SEEDS]
    assert deep["vocals_sdr"] == pytest.approx(np.mean(sdr)) and deep["test_improvement_db"] == pytest.approx(8.0)
    assert deep["n_seeds"] == 3 and rung["mixture_vocals_sdr"] == ev["summary"]["mixture"]["vocals"]["SDR"]
    text = "\n".join(resolution.section(out))
    assert row(text, "`fast` (8 kHz, N = 129)", "`dae_deep`")[2:4] == ["3", f"{np.mean(dead['dae_deep']):.3f} (0.300)"]
    assert row(text, "`fast`")[-1] == "1.5 min"
