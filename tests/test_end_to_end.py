"""The main job end to end at tiny sizes: the embedded corpus, several corpus seeds (which also re-runs
a finished study and must reuse its stages), and the real MUSDB18 sample track; and a golden regression of
the tiny study's verdict inputs (`test_tiny_study_matches_the_golden_intervals`, tests/data/tiny_study_golden.json).

No wall-clock assertions here: timings belong to the benchmarks.

Regenerate the golden intervals (after an intended change of the science, with the reason in the commit):

    .venv/bin/python tests/test_end_to_end.py --update
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

from ncajax.data import _sources as sources
from ncajax.nca import _stage as mappings
from ncajax.results import _verdict as verdict  # noqa: E402
from ncajax.study import _pipeline as pipeline
from ncajax.study import _study as study

# 160 fit frames: at least the fast preset's N = 129 bins (fewer would be an underdetermined fit, refused)
TINY = ["--seeds", "2", "--epochs", "1", "--fit-steps", "20", "--fit-frames", "160", "--heldout-frames", "32",
        "--control-steps", "0", "6", "20", "30", "--recipe-control"]
CONTROL = (0, 6, 20, 30)  # the under-convergence control at tiny sizes (the study's: config.CONTROL_STEPS)
CORPUS = ["--corpus-tracks", "3", "3", "--corpus-seconds", "2", "--no-bss"]
MODELS = ("dae", "dae_deep", "dae_sf")
VERDICT = "The DAEs' mappings are more diagonal than `dae_sf`'s"
pytestmark = pytest.mark.slow  # every test runs (or shares) a tiny study: ~6 min on a busy 2-core CPU
GOLDEN = Path(__file__).resolve().parent / "data" / "tiny_study_golden.json"
REGENERATE = ".venv/bin/python tests/test_end_to_end.py --update"
# Tolerances of the golden numbers (absolute), one for the means and one for the interval bounds.
# Numerical noise: the corpus is byte-identical per seed (test_corpus_golden.py) and the study is
# deterministic on one machine; another CPU (SIMD width, XLA/Eigen kernels, jax version) or a GPU changes
# float32 rounding in training and in the fits. Measured by re-running the tiny study with
# XLA_FLAGS="--xla_cpu_enable_fast_math=true --xla_cpu_prefer_vector_width=128" (reassociated float32 sums and
# approximate transcendentals, as another compiler/CPU gives): the means moved by at most 3.5e-4 (dae_sf's NCA
# fits; the DAE − dae_sf means by 2.5e-4), the bounds by at most 5.3e-3: with 2 seeds and 3 songs the t
# interval's half-width rests on a variance with ~2 degrees of freedom, so a small change of one seed's mean
# moves it ~20 times more than the mean. The tolerances are ~5x and ~4x those. A science change (another
# metric, estimator, fit or training recipe, corpus or interval method) moves a mean by 0.01 or more (the
# DAE − dae_sf means are -0.024 .. -0.035, the per-model keeps 0.003 .. 0.04, the error gates 0.005 .. 0.44)
# or an interval's width by tens of percent (widths 0.003 .. 1.3): it fails here; float noise does not.
NOISE_MEASURED = {"mean": 3.5e-4, "bound": 5.3e-3}
ATOL = {"mean": 2e-3, "bound": 2e-2}


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

    from ncajax.report import _resolution as resolution

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


# ---------------------------------------------------------------------------------------------- golden intervals


def _iv(interval: dict | None) -> list[float] | None:
    return None if interval is None else [interval["mean"], interval["lo"], interval["hi"]]


def golden_record(run: Path) -> dict:
    """The verdict inputs of a finished study run (from its conclusion.json and summary.json): per estimator
    the DAE − dae_sf intervals of the primary metric, and for the primary estimator per model the interval
    of the primary metric and of the held-out error gates (vs the per-bin gain, vs silence); each as
    [mean, lo, hi]."""
    import jax

    concl = json.loads((run / "conclusion.json").read_text())
    tables = json.loads((run / "summary.json").read_text())["records"]
    overall = concl["overall"]
    primary = concl["settings"][overall["primary_estimator"]]
    table = verdict.FUNCTIONAL_METRICS[overall["primary_metric"]]
    return {
        "options": [*CORPUS, *TINY],
        "versions": {"python": sys.version.split()[0], "jax": jax.__version__, "numpy": np.__version__},
        "primary_estimator": overall["primary_estimator"],
        "primary_metric": overall["primary_metric"],
        "verdict": overall["verdict"],  # for the reader: the rules are tested in test_verdict.py
        "directions": {s: {"ordering": v["ordering"], "intervals": {d: _iv(iv) for d, iv in v.get("intervals", {}).items()}}
                       for s, v in concl["settings"].items()},
        "primary_metric_per_model": {
            m: _iv(tables[f"{m}/{overall['primary_estimator']}/pooled"]["tables"][f"functional.{table}"]["interval"])
            for m in MODELS},
        "vs_gain": {m: _iv(primary["informative"][m].get("vs_gain")) for m in MODELS},
        "vs_zero": {m: _iv(primary["informative"][m].get("vs_zero")) for m in MODELS},
    }


def golden_differences(got: dict, want: dict, atol: dict) -> list[str]:
    """Every golden number of `want` that `got` misses or differs from by more than `atol["mean"]` (means)
    or `atol["bound"]` (lo, hi); every ordering that differs although the golden intervals behind it are
    clear of 0 by more than `atol["bound"]`."""
    out = []

    def numbers(path: str, g, w):
        if w is None or g is None:
            if (w is None) != (g is None):
                out.append(f"{path}: {g} (golden {w})")
            return
        for name, a, b in zip(("mean", "lo", "hi"), g, w, strict=True):
            if not abs(a - b) <= atol["mean" if name == "mean" else "bound"]:
                out.append(f"{path}.{name}: {a:.6f} (golden {b:.6f}, difference {a - b:+.2e})")

    for setting, w in want["directions"].items():
        g = got["directions"].get(setting, {"ordering": None, "intervals": {}})
        for dae in set(w["intervals"]) | set(g["intervals"]):
            numbers(f"directions.{setting}.{dae}", g["intervals"].get(dae), w["intervals"].get(dae))
        clear = all(min(abs(iv[1]), abs(iv[2])) > atol["bound"] for iv in w["intervals"].values())
        if clear and g["ordering"] != w["ordering"]:
            out.append(f"directions.{setting}.ordering: {g['ordering']} (golden {w['ordering']})")
    for key in ("primary_metric_per_model", "vs_gain", "vs_zero"):
        for model, w in want[key].items():
            numbers(f"{key}.{model}", got[key].get(model), w)
    return out


def test_tiny_study_matches_the_golden_intervals(tiny_run):
    """The verdict inputs of the tiny study (the `tiny_run` fixture: no extra study run) equal the golden
    ones within ATOL (see its comment for what noise is expected and what a science change moves)."""
    assert GOLDEN.is_file(), f"{GOLDEN} is missing; create it with `{REGENERATE}`"
    want = json.loads(GOLDEN.read_text())
    got = golden_record(tiny_run)
    assert got["options"] == want["options"], f"the tiny study's options changed: regenerate with `{REGENERATE}`"
    diffs = golden_differences(got, want, ATOL)
    assert not diffs, (
        f"the tiny study's verdict inputs moved beyond the tolerance {ATOL} (numerical noise across machines "
        f"measured at {NOISE_MEASURED}): " + "; ".join(diffs) + f". Versions (golden -> now): {want['versions']} -> "
        f"{got['versions']}. If the science changed on purpose, regenerate with `{REGENERATE}` and say why in "
        "the commit.")


def _run_tiny_study(out: Path) -> Path:
    """The `tiny_run` fixture's study, outside pytest (a fresh cache under `out`)."""
    os.environ["NCAJAX_CACHE"] = str(out / "cache")
    assert reproduce.main(["--out", str(out / "run"), *CORPUS, *TINY]) == 0
    return out / "run"


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--update"]:
        sys.exit(f"usage: {REGENERATE}")
    with tempfile.TemporaryDirectory() as tmp:
        record = golden_record(_run_tiny_study(Path(tmp)))
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote the tiny study's verdict inputs (verdict {record['verdict']}) to {GOLDEN}")
