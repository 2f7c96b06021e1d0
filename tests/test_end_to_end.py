"""The main job end to end at tiny sizes: the embedded corpus, several corpus seeds (which also re-runs
a finished study and must reuse its stages), and the real MUSDB18 sample track.

No wall-clock assertions here: timings belong to the benchmarks.
"""

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import reproduce  # noqa: E402

from ncajax import mappings, pipeline, sources, study, verdict  # noqa: E402

# 160 fit frames: at least the fast preset's N = 129 bins (fewer would be an underdetermined fit, refused)
TINY = ["--seeds", "2", "--epochs", "1", "--fit-steps", "20", "--fit-frames", "160", "--heldout-frames", "32",
        "--control-steps", "0", "6", "20", "30", "--recipe-control"]
CONTROL = (0, 6, 20, 30)  # the under-convergence control at tiny sizes (the study's: config.CONTROL_STEPS)
CORPUS = ["--corpus-tracks", "3", "3", "--corpus-seconds", "2", "--no-bss"]
MODELS = ("dae", "dae_deep", "dae_sf")
VERDICT = "The DAEs' mappings are more diagonal than `dae_sf`'s"


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    """One corpus/feature cache for the module (the runs share corpus seed 0), isolated from ~/.cache."""
    root = tmp_path_factory.mktemp("cache")
    old = os.environ.get("NCAJAX_CACHE")
    os.environ["NCAJAX_CACHE"] = str(root)
    yield root
    if old is None:
        del os.environ["NCAJAX_CACHE"]
    else:
        os.environ["NCAJAX_CACHE"] = old


@pytest.fixture(scope="module")
def tiny_run(cache_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "run"
    assert reproduce.main(["--out", str(out), *CORPUS, *TINY]) == 0
    return out


def _mtimes(run: Path) -> dict:
    files = [run / "train" / m / "result.json" for m in MODELS]
    files += [run / "mappings" / "result.json", run / "evaluation" / "result.json"]
    return {str(f.relative_to(run)): f.stat().st_mtime_ns for f in files}


def test_main_job_on_tiny_corpus(tiny_run):
    out = tiny_run
    report = (out / "REPORT.md").read_text()
    assert "## Conclusion" in report and "**Verdict:** " + '"' + VERDICT in report
    conclusion = json.loads((out / "conclusion.json").read_text())
    assert {"overall", "settings"} <= set(conclusion)
    assert conclusion["overall"]["verdict"] in verdict.VERDICTS
    assert conclusion["overall"]["primary_estimator"] == "nca_converged"
    assert {"nca_authors", "nca_converged", "student_converged", "lstsq", "jacobian"} <= set(conclusion["settings"])
    for name in ("direction_intervals", "heldout_error", "mapping_matrices_nca_converged", "estimator_matrices",
                 "structure_metrics", "spectrograms"):
        assert (out / "figures" / f"{name}.png").exists() and (out / "figures" / f"{name}.pdf").exists(), name
    excerpt = np.load(out / "evaluation" / "spectrograms.npz")
    assert excerpt["panel_names"].tolist()[:2] == ["mixture", "true vocals"]
    assert excerpt["panels"].shape[0] == 2 + len(MODELS) and excerpt["mask"].shape == excerpt["panels"].shape[1:]
    for model in MODELS:
        trained = json.loads((out / "train" / model / "result.json").read_text())
        assert trained["finished"] and len(trained["seeds"]) == 2
    # the mapping stage: fitted on training songs, judged per test song, per seed
    mapping = json.loads((out / "mappings" / "result.json").read_text())
    data = json.loads((out / "train" / "dae" / "config.json").read_text())["data"]
    assert mapping["heldout_songs"] == data["tracks"]["test"] and len(mapping["heldout_songs"]) == 3
    assert set(mapping["fit_songs"]) <= set(data["tracks"]["train"])
    assert mapping["n_fit_frames"] == 160 and mapping["heldout_frames"] == [32, 32, 32]
    for rec in mapping["records"]:
        if rec["kind"] in ("pooled", "baseline"):
            assert np.shape(rec["rel_l1_heldout"]) == (2, 3), (rec["model"], rec["setting"])
    assert {(r["model"], r["setting"]) for r in mapping["records"] if r["kind"] == "baseline"} == {
        (m, b) for m in MODELS for b in ("zero", "per_bin_gain")}
    # the under-convergence control: the authors' and the converged NCA at every control step count
    assert {(r["model"], r["setting"]) for r in mapping["records"] if r["kind"] == "control"} == {
        (m, f"{s}@{n}") for m in MODELS for s in ("nca_authors", "nca_converged") for n in CONTROL}
    rows = conclusion["convergence_control"]["rows"]
    assert [(r["setting"], r["steps"]) for r in rows] == [(s, n) for s in ("nca_authors", "nca_converged")
                                                          for n in CONTROL]
    assert isinstance(conclusion["convergence_control"]["frozen_p_reproduces_authors"], bool)
    assert "## Under-convergence control" in report
    assert (out / "figures" / "convergence_control.png").exists()
    # the recipe control: the raw-MSE models (2 seeds here), mapped by the primary estimator only
    ctrl = json.loads((out / "control" / "mappings" / "result.json").read_text())
    assert {(r["model"], r["setting"]) for r in ctrl["records"] if r["kind"] == "pooled"} == {
        (m, "nca_converged") for m in MODELS}
    assert json.loads((out / "control" / "train" / "dae" / "config.json").read_text())["train"]["loss"] == "mse"
    assert "## What dying units did to the mappings" in report and "raw magnitudes, MSE (before)" in report
    assert "## Live output units and level robustness" in report
    evaluation = json.loads((out / "evaluation" / "result.json").read_text())
    assert set(evaluation["units"]) == set(MODELS) and len(evaluation["loudness"]) == 3
    for name in ("live_units", "sdr_vs_loudness", "keep_shares"):
        assert (out / "figures" / f"{name}.png").exists(), name
    assert json.loads((out / "timings.json").read_text())["total"] > 0


def test_corpora_writes_each_study_and_the_summary_and_reuses_a_finished_study(tiny_run, tmp_path):
    out = tmp_path / "corpora"
    # corpus seed 0 was run by the tiny_run fixture with the same options: its copy must be reused as it is
    shutil.copytree(tiny_run, out / "corpus-0")
    before = _mtimes(out / "corpus-0")
    first = json.loads((out / "corpus-0" / "mappings" / "result.json").read_text())
    assert reproduce.main(["--out", str(out), "--corpora", "2", *CORPUS, *TINY]) == 0
    assert _mtimes(out / "corpus-0") == before  # train, mappings and evaluation were not redone
    assert json.loads((out / "corpus-0" / "mappings" / "result.json").read_text()) == first

    summary = json.loads((out / "across_corpora.json").read_text())
    assert summary["n_corpora"] == 2 and set(summary["verdicts"]) == {"corpus-0", "corpus-1"}
    assert sum(summary["verdict_counts"].values()) == 2
    for k in (0, 1):
        run = out / f"corpus-{k}"
        assert (run / "REPORT.md").exists() and (run / "conclusion.json").exists()
        data = json.loads((run / "train" / "dae" / "config.json").read_text())["data"]
        assert data["corpus"]["seed"] == k
        assert summary["verdicts"][f"corpus-{k}"] == json.loads(
            (run / "conclusion.json").read_text())["overall"]["verdict"]
    second = json.loads((out / "corpus-1" / "mappings" / "result.json").read_text())
    assert second["records"] != first["records"]  # another corpus, other fits
    report = (out / "REPORT.md").read_text()
    assert "## Across corpus seeds" in report and VERDICT in report
    assert "## Across corpus seeds" in (out / "corpus-0" / "REPORT.md").read_text()


@pytest.mark.ffmpeg
def test_main_job_on_the_real_musdb18_track(cache_root, tmp_path, musdb_sample_root):
    out = tmp_path / "musdb"
    sample = str(musdb_sample_root)
    assert reproduce.main(["--out", str(out), "--musdb-root", sample, "--real-test", sample, *TINY]) == 0
    # one piece of music: split in time, the mapping is fitted on its first 60 % and judged on its
    # unseen last 30 % (the test split's [70-100%] piece)
    data = pipeline.prepare_data(musdb_root=sample, progress=False)  # the features are cached by the run
    duration = sources.track_duration(data.refs["test"][0])
    assert [(r.start, r.stop) for r in data.refs["test"]] == [(pytest.approx(0.7 * duration), None)]
    assert [(r.start, r.stop) for r in data.refs["train"]] == [(0.0, pytest.approx(0.6 * duration))]
    mapping = json.loads((out / "mappings" / "result.json").read_text())
    assert mapping["heldout_songs"] == data.test.track_names
    assert mapping["fit_songs"] == data.train.track_names
    cfg = study.StudyOptions(seeds=2, fit_steps=20, fit_frames=160, heldout_frames=32,
                             control_steps=CONTROL).mapping_config()
    assert json.loads((out / "mappings" / "config.json").read_text())["mapping"] == json.loads(
        json.dumps(cfg.to_json()))
    frames = mappings.select_frames(data.train, data.test, cfg)
    saved = np.load(out / "mappings" / "frames.npz")
    np.testing.assert_allclose(saved["heldout_input_energy"],
                               np.stack([np.mean(x.astype(np.float64) ** 2, axis=0) for x in frames["heldout"]]),
                               rtol=1e-5, atol=1e-12)
    assert mapping["heldout_frames"] == [32] and mapping["n_fit_frames"] == 160
    assert mapping["fit_songs"] == ["Music Delta - 80s Rock [0-60%]"]
    assert mapping["heldout_songs"] == ["Music Delta - 80s Rock [70-100%]"]
    assert "Music Delta - 80s Rock" in json.dumps(
        json.loads((out / "train" / "dae" / "config.json").read_text())["data"])
    evaluation = json.loads((out / "evaluation" / "result.json").read_text())
    real = evaluation["real"]
    assert real["tracks"] == ["Music Delta - 80s Rock"]
    sdr = real["summary"]["oracle_irm"]["vocals"]["SDR"]
    assert sdr is not None and sdr > real["summary"]["mixture"]["vocals"]["SDR"]
    assert VERDICT in (out / "REPORT.md").read_text()


def test_resolution_section_from_finished_runs(tiny_run, tmp_path):
    """The Resolution section reads finished runs only; the numbers are those of their result files."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    import resolution_report

    from ncajax import resolution

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    summary = resolution.summarise({"fast": run})
    rung = summary["rungs"]["fast"]
    evaluation = json.loads((run / "evaluation" / "result.json").read_text())
    assert rung["n_bins"] == 129 and rung["preset"] == "fast"
    assert rung["models"]["dae"]["dead_share"] == pytest.approx(np.mean(evaluation["units"]["dae"]["dead_share"]))
    conclusion = json.loads((run / "conclusion.json").read_text())
    assert rung["verdict"] == conclusion["overall"]["verdict"]
    assert resolution_report.main(["--rung", f"fast={run}", "--figures-dir", str(tmp_path / "figs")]) == 0
    text = (run / "REPORT.md").read_text()
    assert "## Resolution" in text and "`fast` (8 kHz, N = 129)" in text
    assert (tmp_path / "figs" / "resolution.json").exists() and (tmp_path / "figs" / "REPORT.md").exists()
    with pytest.raises(ValueError, match="NAME=RUN_DIR"):
        resolution_report.main(["--rung", str(run)])
    with pytest.raises(FileNotFoundError, match="conclusion.json"):
        resolution.summarise({"fast": tmp_path / "nothing"})
