"""The main job end to end at tiny sizes: embedded corpus (and re-run reuse), and the real MUSDB18 track."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import reproduce  # noqa: E402

TINY = ["--seeds", "1", "--epochs", "1", "--fit-steps", "20", "--fit-frames", "64"]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NCAJAX_CACHE", str(tmp_path / "cache"))


def test_main_job_on_tiny_corpus_then_reuses_finished_stages(tmp_path):
    out = tmp_path / "run"
    args = ["--out", str(out), "--corpus-tracks", "3", "3", "--corpus-seconds", "2",
            "--heldout-tracks", "1", "--no-bss", *TINY]
    assert reproduce.main(args) == 0
    report = (out / "REPORT.md").read_text()
    assert "## Conclusion" in report and "finding" in report
    conclusion = json.loads((out / "conclusion.json").read_text())
    assert {"nca_authors", "nca_converged", "lstsq", "jacobian", "overall"} <= set(conclusion)
    for name in ("mapping_matrices_nca_authors", "estimator_matrices", "structure_metrics"):
        assert (out / "figures" / f"{name}.png").exists() and (out / "figures" / f"{name}.pdf").exists()
    for model in ("dae", "dae_deep", "dae_sf"):
        assert json.loads((out / "train" / model / "result.json").read_text())["finished"]
    first = json.loads((out / "mappings" / "result.json").read_text())
    mtime = (out / "train" / "dae" / "result.json").stat().st_mtime_ns

    assert reproduce.main(args) == 0  # a second run reuses every finished stage
    assert (out / "train" / "dae" / "result.json").stat().st_mtime_ns == mtime
    assert json.loads((out / "mappings" / "result.json").read_text()) == first
    timings = json.loads((out / "timings.json").read_text())
    assert timings["train"] < 30 and timings["mappings"] < 30


@pytest.mark.ffmpeg
def test_main_job_on_the_real_musdb18_track(tmp_path, musdb_sample_root):
    out = tmp_path / "musdb"
    assert reproduce.main(["--out", str(out), "--musdb-root", str(musdb_sample_root), *TINY]) == 0
    evaluation = json.loads((out / "evaluation" / "result.json").read_text())
    sdr = evaluation["summary"]["oracle_irm"]["vocals"]["SDR"]
    assert sdr is not None and sdr > evaluation["summary"]["mixture"]["vocals"]["SDR"]
    mapping = json.loads((out / "mappings" / "result.json").read_text())
    assert mapping["heldout_tracks"][0].endswith("[70-100%]")  # one test piece: split in time
    assert "Music Delta - 80s Rock" in json.dumps(
        json.loads((out / "train" / "dae" / "config.json").read_text())["data"])
