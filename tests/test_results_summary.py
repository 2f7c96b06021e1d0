"""The typed stage results (`ncajax.results.load_study`) and the one summary step (`ncajax.study`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats

from ncajax.results._records import (
    EvaluationResult,
    MappingRecord,
    MappingStage,
    RecipeControl,
    StudyRun,
    TrainResult,
    load_study,
    per_model,
)
from ncajax.results._summary import (
    SUMMARY_FILE,
    seed_stat,
    summarise,
    summarise_table,
    write_summary,
)
from ncajax.stats import seed_song_bootstrap


def _stage(run, records, *, finished=True):
    m = run / "mappings"
    m.mkdir(parents=True)
    (m / "config.json").write_text(json.dumps({"models": ["dae"], "mapping": {"settings": []}}))
    if finished:
        (m / "result.json").write_text(json.dumps({"records": records}))
    else:
        (m / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"cut')


def test_missing_run_dir_and_corrupt_file_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="pass the --out of reproduce.py"):
        load_study(tmp_path / "missing")
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "result.json").write_text('{"summary": ')
    with pytest.raises(ValueError, match=r"evaluation/result.json is corrupt.*rerun that stage"):
        load_study(tmp_path)


def test_empty_run_is_typed_with_notes(tmp_path):
    run = load_study(tmp_path)
    assert run.train == {} and run.mappings is None and run.evaluation is None
    assert any("no mapping stage" in n for n in run.notes) and any("evaluation" in n for n in run.notes)
    s = summarise(run)
    assert s.conclusion["overall"]["verdict"] == "undetermined" and s.tables == {}


def test_unfinished_stage_reads_metrics_jsonl_and_the_last_record_wins(tmp_path):
    first = {"model": "dae", "setting": "lstsq", "kind": "pooled", "rel_l1_heldout": [[0.5, 0.6]]}
    last = {**first, "rel_l1_heldout": [[0.1, 0.2], [0.3, 0.4]]}
    _stage(tmp_path, [first, last], finished=False)
    stage = load_study(tmp_path).mappings
    assert not stage.finished and list(stage.records) == [("dae", "lstsq", "pooled")]
    rec = stage.record("dae", "lstsq")
    assert rec.table("rel_l1_heldout").shape == (2, 2) and rec.method is None
    assert [s["name"] for s in stage.settings()] == ["lstsq"]


def test_a_record_without_its_key_is_an_error(tmp_path):
    _stage(tmp_path, [{"model": "dae", "kind": "pooled"}])
    with pytest.raises(ValueError, match=r"has no setting.*rerun the mapping stage"):
        load_study(tmp_path)


def test_table_summary_over_all_cells_and_over_finite_seeds():
    table = [[0.1, 0.2, 0.3], [0.2, float("nan"), 0.4], [0.3, 0.5, 0.4]]
    ts = summarise_table(table)
    assert not ts.finite and ts.interval is None  # the report writes "non-finite"
    finite_rows = np.asarray(table)[[0, 2]]
    assert ts.rows_interval == seed_song_bootstrap(finite_rows)  # the figures' error bar
    assert ts.per_seed == pytest.approx(finite_rows.mean(axis=1))
    whole = summarise_table([0.1, None, 0.3])  # a per-seed list is one song; None is non-finite
    assert whole.per_seed == pytest.approx([0.1, 0.3]) and not whole.finite
    ok = summarise_table(finite_rows.tolist())
    assert ok.finite and ok.interval == ok.rows_interval
    assert summarise_table(None) is None
    assert summarise_table([[float("nan")]]).rows_interval is None


def test_summary_is_written_beside_the_conclusion(tmp_path):
    rec = {"model": "dae", "setting": "lstsq", "kind": "pooled", "method": "lstsq",
           "rel_l1_heldout": [[0.1, 0.2], [0.3, 0.2]], "metrics": {"diagonal_energy_ratio": [[0.5, 0.6], [0.7, 0.6]]}}
    _stage(tmp_path, [rec, {"model": "dae", "setting": "zero", "kind": "baseline",
                            "rel_l1_heldout": [[1.0, 1.0], [1.0, 1.0]]}])
    s = summarise(load_study(tmp_path))
    assert s.table("dae", "lstsq", "metrics.diagonal_energy_ratio").interval["mean"] == pytest.approx(0.6)
    assert s.informative[("dae", "zero", "baseline")]["heldout"]["mean"] == pytest.approx(1.0)
    write_summary(s)
    saved = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert saved["conclusion"] == json.loads((tmp_path / "conclusion.json").read_text())
    assert "dae/lstsq/pooled" in saved["records"]


def test_per_model_groups_seeded_predictions():
    ev = {"mixture": 1, "dae/seed0": 2, "dae_deep/seed0": 3, "dae/seed1": 4}
    assert per_model(ev) == {"dae": [2, 4], "dae_deep": [3]}


# --------------------------------------------------------------------------------------------------
# the statistics over seeds, each against an independent NumPy / SciPy computation


def _t_ci(values):
    """Mean and two-sided Student-t 95 % CI of `values` (the reference)."""
    v = np.asarray(values, np.float64)
    half = scipy.stats.t.ppf(0.975, df=v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return v.mean(), v.mean() - half, v.mean() + half


def test_seed_stat_is_the_student_t_interval_of_the_finite_seeds():
    st = seed_stat([1.0, None, 2.5, float("nan"), 4.0, float("inf")])
    mean, lo, hi = _t_ci([1.0, 2.5, 4.0])
    assert st.n == 3 and st.values == (1.0, 2.5, 4.0)
    assert (st.mean, st.lo, st.hi) == pytest.approx((mean, lo, hi), rel=1e-12)
    one = seed_stat([2.0])
    assert (one.mean, one.lo, one.hi, one.n) == (2.0, 2.0, 2.0, 1)
    assert seed_stat([None, float("nan")]) is None and seed_stat(None) is None
    moved = st.shifted(-1.0)
    assert (moved.mean, moved.lo, moved.hi) == pytest.approx((mean - 1, lo - 1, hi - 1))


def test_cell_mean_is_the_mean_of_the_finite_cells():
    table = [[0.1, 0.2, float("nan")], [0.4, None, 0.6]]
    assert summarise_table(table).cell_mean == pytest.approx(np.nanmean(np.asarray(table, dtype=float)))
    assert summarise_table([[0.1, 0.3], [0.5, 0.7]]).cell_mean == pytest.approx(0.4)
    assert summarise_table([[None]]).cell_mean is None


def _run(tmp_path, *, evaluation=None, train=None, records=()):
    mappings = None
    if records:
        recs = {(r["model"], r["setting"], r["kind"]): MappingRecord.from_json(r, tmp_path) for r in records}
        mappings = MappingStage(tmp_path, {"models": ["dae"], "mapping": {"settings": []}}, None, {}, True, recs)
    return StudyRun(tmp_path, train or {}, mappings,
                    EvaluationResult(evaluation, None) if evaluation is not None else None, None, None, ())


def test_separation_summary_per_model_and_reference_against_scipy(tmp_path):
    ev = {"summary": {"mixture": {"mag_sdr": -1.0, "vocals": {"SDR": -2.0, "SIR": 0.5, "SAR": 120.0}},
                      "dae/seed0": {"mag_sdr": 3.0, "vocals": {"SDR": 2.0, "SIR": None, "SAR": 5.0}},
                      "dae/seed1": {"mag_sdr": 4.5, "vocals": {"SDR": 3.5, "SIR": 7.0, "SAR": 6.0}},
                      "dae/seed2": {"mag_sdr": 5.0, "vocals": {"SDR": 4.0, "SIR": 8.0, "SAR": 7.5}}},
          "real": {"tracks": ["x"], "summary": {"mixture": {"vocals": {"SDR": 1.0}},
                                                "oracle_irm": {"vocals": {"SDR": 9.0}},
                                                "dae/seed0": {"vocals": {"SDR": 2.0}},
                                                "dae/seed1": {"vocals": {"SDR": 5.0}}}}}
    train = {"dae": TrainResult("dae", None, {"test_improvement_db": [6.0, 7.5, 8.0]}, None)}
    sep = summarise(_run(tmp_path, evaluation=ev, train=train)).separation
    for name, vals in (("mag_sdr", [3.0, 4.5, 5.0]), ("vocals.SDR", [2.0, 3.5, 4.0]), ("vocals.SIR", [7.0, 8.0])):
        st = sep.score("dae", name)
        assert (st.mean, st.lo, st.hi) == pytest.approx(_t_ci(vals), rel=1e-12) and st.values == tuple(vals)
    mix = sep.score("mixture", "vocals.SAR")
    assert (mix.mean, mix.lo, mix.hi, mix.n) == (120.0, 120.0, 120.0, 1)
    imp = sep.test_improvement["dae"]
    assert (imp.mean, imp.lo, imp.hi) == pytest.approx(_t_ci([6.0, 7.5, 8.0]), rel=1e-12)
    mean, lo, hi = _t_ci([2.0, 5.0])
    assert (sep.real_sdr["dae"].mean, sep.real_sdr["dae"].lo) == pytest.approx((mean, lo))
    assert (sep.real_gain["dae"].mean, sep.real_gain["dae"].hi) == pytest.approx((mean - 1.0, hi - 1.0))
    assert (sep.real_mixture, sep.real_oracle, sep.real_oracle_gain) == (1.0, 9.0, 8.0)


def test_linearity_dead_units_and_fit_error_against_numpy(tmp_path):
    q = [{"diagonal_energy_ratio": [0.1, 0.5, 0.9]}, {"diagonal_energy_ratio": [0.3, 0.6, 1.0]}]
    lin = [{"local_spread": 0.4, "rel_l1_mean_jacobian": 0.2, "rel_l1_per_frame_linear": 0.05,
            "zero_jacobian_frames": 2, "n_frames": 10, "frame_metric_quantiles": q[0], "quantile_levels": [0.1, 0.5, 0.9]},
           {"local_spread": 0.7, "rel_l1_mean_jacobian": 0.3, "rel_l1_per_frame_linear": 0.07,
            "zero_jacobian_frames": 1, "n_frames": 10, "frame_metric_quantiles": q[1]}]
    dead = [{"overall": 0.1, "output": 0.0, "layer_2": 0.3, "layer_10": 0.5, "layer_0": 0.1},
            {"overall": 0.2, "output": 0.1, "layer_2": 0.4, "layer_10": 0.6, "layer_0": 0.2}]
    records = [{"model": "dae", "setting": "-", "kind": "model", "linearity": lin, "dead_units": dead},
               {"model": "dae", "setting": "lstsq", "kind": "pooled", "rel_l1_fit": [0.1, 0.25, 0.3],
                "rel_l1_heldout": [[0.2, 0.3], [0.3, 0.4], [0.2, 0.5]]}]
    s = summarise(_run(tmp_path, records=records))
    ls = s.linearity["dae"]
    assert ls.local_spread.mean == pytest.approx(0.55) and ls.poor  # 0.55 > POOR_SPREAD
    assert (ls.local_spread.lo, ls.local_spread.hi) == pytest.approx(_t_ci([0.4, 0.7])[1:])
    assert (ls.zero_frames, ls.n_frames, ls.quantile_levels) == (3, 20, (0.1, 0.5, 0.9))
    assert ls.quantiles["diagonal_energy_ratio"] == pytest.approx([0.2, 0.55, 0.95])
    du = s.dead_units["dae"]
    assert list(du.layers) == ["layer_0", "layer_2", "layer_10"]  # layer order, not string order
    assert du.layers["layer_10"].mean == pytest.approx(0.55) and du.output.mean == pytest.approx(0.05)
    fit = s.fit_error[("dae", "lstsq", "pooled")]
    assert (fit.mean, fit.lo, fit.hi) == pytest.approx(_t_ci([0.1, 0.25, 0.3]), rel=1e-12)
    saved = json.loads(json.dumps(s.to_json()))  # JSON-ready: what summary.json holds
    assert saved["records"]["dae/lstsq/pooled"]["fit_error"]["hi"] == pytest.approx(fit.hi)
    assert saved["linearity"]["dae"]["local_spread"]["values"] == [0.4, 0.7]
    assert saved["dead_units"]["dae"]["layers"]["layer_2"]["mean"] == pytest.approx(0.35)


def test_recipe_control_rows_are_finite_means_of_the_primary_estimator(tmp_path):
    from ncajax.config import PRIMARY_ESTIMATOR

    def stage(dead, heldout):
        recs = [{"model": "dae", "setting": "-", "kind": "model", "dead_units": [{"output": d} for d in dead]},
                {"model": "dae", "setting": PRIMARY_ESTIMATOR, "kind": "pooled", "rel_l1_heldout_clipped": heldout,
                 "functional": {"keep_diag": [[0.5, None], [0.7, 0.9]]}}]
        return MappingStage(tmp_path, {}, None, {}, True,
                            {(r["model"], r["setting"], r["kind"]): MappingRecord.from_json(r, tmp_path) for r in recs})

    heldout = [[0.5, float("nan")], [0.6, 0.8]]
    run = StudyRun(tmp_path, {}, stage([0.0, 0.02], [[0.1, 0.2], [0.3, 0.4]]), None,
                   RecipeControl(stage([0.4, 0.5, 0.3], heldout), {"train": {"recipe": "raw"}}), None, ())
    control, study = summarise(run).recipe_control
    assert (control.stage, study.stage) == ("control", "study")
    assert control.heldout_clipped == pytest.approx(np.nanmean(np.asarray(heldout)))
    assert control.keep_diag == pytest.approx(0.7) and control.weighted_diagonal_energy_ratio is None
    assert (control.dead_output.mean, control.dead_output.lo) == pytest.approx(_t_ci([0.4, 0.5, 0.3])[:2])
    assert study.n_seeds == 2 and study.heldout_clipped == pytest.approx(0.25)
