"""The typed stage results (`ncajax.study.load_study`) and the one summary step (`ncajax.study`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ncajax.stats import seed_song_bootstrap
from ncajax.study._results import load_study, per_model
from ncajax.study._summary import SUMMARY_FILE, summarise, summarise_table, write_summary


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
