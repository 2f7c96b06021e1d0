"""The evaluation stage's unit facts (dead output units, live share per octave, homogeneity, loudness):
computed against NumPy references on a tiny model, rendered in the report and drawn as figures."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from ncajax import models, plots
from ncajax.config import ModelConfig
from ncajax.nca import _structure as analysis
from ncajax.report._results import live_units_section
from ncajax.results._records import EvaluationResult, StudyRun, TrainResult
from ncajax.results._summary import summarise
from ncajax.separation import _liveness as liveness


def _model(name, n=17, seed=0):
    model = models.from_config(ModelConfig(name=name, n_bins=n))
    return model, models.init_params(model, jax.random.key(seed))


def test_unit_facts_match_numpy_reference():
    freqs = analysis.bin_frequencies(17, sample_rate=8000, n_fft=32)
    x = np.random.default_rng(0).random((64, 17)).astype(np.float32)
    for name in ("dae", "dae_sf"):
        model, params = _model(name)
        facts = liveness.unit_facts(model, params, x, freqs)
        # NumPy reference: the last layer's outputs (the mask for dae_sf), zero on every frame
        if name == "dae_sf":
            units = np.asarray(model.apply(params, x, method="mask"))
        else:
            units = np.asarray(model.apply(params, x))
        assert np.isclose(facts["dead_share"], np.mean(np.all(units == 0, axis=0)), rtol=0, atol=1e-12)
        est = lambda z, m=model, p=params: np.asarray(m.apply(p, z))  # noqa: E731
        for a in ("0.25", "4"):
            al = float(a)
            ref = np.linalg.norm(est(al * x) - al * est(x)) / np.linalg.norm(al * est(x))
            assert np.isclose(facts["homogeneity"][a], ref, rtol=1e-5)
        assert sum(b["n_units"] for b in facts["live_by_octave"]) == 17


def test_dead_units_are_found_when_the_output_bias_kills_them():
    """A DAE whose decoder bias is very negative on 5 units has exactly those units (and the ones dead
    before) dead."""
    model, params = _model("dae")
    killed = [0, 3, 7, 8, 16]
    bias = np.asarray(params["params"]["decoder"]["bias"]).copy()
    bias[killed] = -1e6
    p = {"params": {**params["params"], "decoder": {**params["params"]["decoder"], "bias": bias}}}
    x = np.random.default_rng(1).random((32, 17)).astype(np.float32)
    freqs = analysis.bin_frequencies(17, sample_rate=8000, n_fft=32)
    before = ~liveness.live_units(np.asarray(model.apply(params, x)))
    expected = before.copy()
    expected[killed] = True
    assert np.isclose(liveness.unit_facts(model, p, x, freqs)["dead_share"], expected.mean(), rtol=0, atol=1e-12)


def _fake_run(tmp_path):
    run = tmp_path / "run"
    (run / "evaluation").mkdir(parents=True)
    bands = [{"lo_hz": 0.0, "hi_hz": 0.0, "n_units": 1, "live_share": 1.0},
             {"lo_hz": 250.0, "hi_hz": 500.0, "n_units": 2, "live_share": 1.0},
             {"lo_hz": 500.0, "hi_hz": 1000.0, "n_units": 4, "live_share": 0.5}]
    units = {m: {"seeds": [0, 1], "frames": 100, "dead_share": [d, d + 0.02],
                 "live_by_octave": [bands, bands], "homogeneity": {"0.25": [0.1, 0.2], "4": [0.05, 0.07]}}
             for m, d in (("dae", 0.01), ("dae_deep", 0.03), ("dae_sf", 0.0))}
    songs = {f"song{i}": -30.0 + 6 * i for i in range(4)}
    per_track = {"mixture": {s: {"mag_sdr": 1.0} for s in songs}}
    for m in units:
        for seed in (0, 1):
            per_track[f"{m}/seed{seed}"] = {s: {"mag_sdr": 2.0 + 0.1 * k + seed} for k, s in enumerate(songs)}
    (run / "evaluation" / "result.json").write_text(json.dumps(
        {"finished": True, "units": units, "loudness": songs, "per_track": per_track, "summary": {}}))
    return run, units


def test_live_units_section_and_figures(tmp_path):
    run, units = _fake_run(tmp_path)
    data = StudyRun(run, {m: TrainResult(m, None, None, None) for m in units}, None,
                    EvaluationResult(json.loads((run / "evaluation" / "result.json").read_text()), None),
                    None, None, ())
    summary = summarise(data)
    text = "\n".join(live_units_section(summary))
    # dae_deep: mean of 0.03 and 0.05 dead, worst seed 0.05; octave band 500-1000 Hz half alive
    assert "| `dae_deep` | 0.040 | 0.050 |" in text
    assert "500-1000 Hz (4)" in text and "0.50" in text
    u = summary.units["dae_deep"]  # the summary's statistics over seeds against NumPy
    assert u.dead_share_mean == np.mean(units["dae_deep"]["dead_share"])
    assert u.dead_share_max == np.max(units["dae_deep"]["dead_share"])
    assert u.homogeneity_mean == {"0.25": np.mean([0.1, 0.2]), "4": np.mean([0.05, 0.07])}
    assert u.live_share_mean == (1.0, 1.0, 0.5) and u.live_share_min == u.live_share_max == (1.0, 1.0, 0.5)
    written = plots.live_units(summary, tmp_path / "figs") + plots.sdr_vs_loudness(run, tmp_path / "figs")
    assert sorted(p.name for p in written) == ["live_units.pdf", "live_units.png", "sdr_vs_loudness.pdf",
                                               "sdr_vs_loudness.png"]


def test_live_units_section_without_unit_facts():
    data = StudyRun(Path("run"), {}, None, EvaluationResult({"summary": {}}, None), None, None, ())
    assert "no unit facts" in "\n".join(live_units_section(summarise(data)))


def test_separation_section_names_each_models_recorded_recipe():
    """The report states each model's loss and mask-bias start as its run recorded them, and explains the
    difference only when the losses differ."""
    from ncajax.report._results import separation_section

    def run_of(losses):
        train = {m: TrainResult(m, {"train": {"recipe": "standardised", "loss": loss, "augment_gain_db": 12.0,
                                              "mask_bias": 1.0}}, None, None)
                 for m, loss in losses.items()}
        return StudyRun(Path("run"), train, None, EvaluationResult({"summary": {}}, None), None, None, ())

    text = "\n".join(separation_section(summarise(run_of({"dae": "mse", "dae_deep": "mse", "dae_sf": "l1"}))))
    assert "`dae` standardised, loss mse" in text and "`dae_sf` standardised, loss l1" in text
    assert "mask bias start 1" in text and "different losses" in text
    same = "\n".join(separation_section(summarise(run_of({"dae": "l1", "dae_sf": "l1"}))))
    assert "loss l1" in same and "different losses" not in same
