"""Figures from a small hand-written run directory in the format of the pipeline's stages: every
figure whose inputs exist is written as PNG and PDF, missing inputs skip their figures, a running
mapping stage is read from metrics.jsonl, the verdict and held-out figures show the numbers of
`ncajax.study` / `ncajax.stats`, and the dB helpers and shared colour scales are exact."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from fakes import baseline_records, control_record, write_mapping_stage
from fakes import grid as _grid
from matplotlib.colors import to_hex

from ncajax import plots
from ncajax.config import PRIMARY_ESTIMATOR, MappingConfig, STFTConfig, to_dict
from ncajax.nca import NCA, LeastSquares, MeanJacobian, Student
from ncajax.nca._structure import bin_frequencies
from ncajax.plots import _base as plots_base
from ncajax.results import _verdict as verdict
from ncajax.results._summary import summarise_run

N_FFT, SR = 16, 8000
N = N_FFT // 2 + 1  # 9 bins
S, T = 3, 3  # seeds, held-out songs
MODELS = ("dae", "dae_deep", "dae_sf")
SETTINGS = (
    NCA(20, 1e-2, "xavier_normal", "input", name=PRIMARY_ESTIMATOR),
    Student(20, 1e-2, name="student_converged"),
    LeastSquares(name="lstsq"),
    MeanJacobian(name="jacobian"),
)
ITERATIVE = {"nca", "student"}
LEVELS = {"dae": 0.8, "dae_deep": 0.7, "dae_sf": 0.2}  # weighted diagonal ratio: the DAEs above
FIT_ERR, GAIN_ERR = 0.2, 0.5
METRIC_KEYS = (
    "diagonal_energy_ratio",
    "near_diagonal_energy",
    "mean_coupling_distance",
    "spread_mean",
    "spread_median",
    "weighted_diagonal_energy_ratio",
    "weighted_near_diagonal_energy",
    "mean_coupling_distance_octaves",
)


def grid(level: float, key: str, jitter: float = 0.02) -> list[list[float]]:
    """A deterministic (S, T) table around `level`."""
    return _grid(level, key, (S, T), jitter)


def _metrics(w: float, key: str) -> dict[str, list]:
    out = {k: grid(0.5, f"{key}/{k}") for k in METRIC_KEYS}
    out["weighted_diagonal_energy_ratio"] = grid(w, f"{key}/w")
    return out


def _write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _train(run, model, rng):
    d = run / "train" / model
    stft = STFTConfig(sample_rate=SR, n_fft=N_FFT, win_length=N_FFT, hop_length=4)
    _write_json(d / "config.json", {"stft": to_dict(stft), "data": {}})
    lines = [
        {
            "epoch": e,
            "train_loss": rng.uniform(0.1, 1, S).tolist(),
            "val_loss": rng.uniform(0.1, 1, S).tolist(),
        }
        for e in range(1, 4)
    ]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    _write_json(d / "result.json", {"finished": True, "seeds": list(range(S))})


def mapping_records(rng, *, heldout: dict | None = None) -> list[dict]:
    """The records of a mapping stage (run_stage's order and fields); `heldout[(model, setting)]`
    replaces a fit's held-out error table."""
    heldout = heldout or {}
    records = []
    for m in MODELS:
        records += baseline_records(m, n_seeds=S, n_songs=T, gain_fit=[0.5] * S,
                                    gain_heldout=grid(GAIN_ERR, f"{m}/gain"))
        for s in SETTINGS:
            it = s.method in ITERATIVE
            key = f"{m}/{s.name}"
            rec = {
                "model": m,
                "setting": s.name,
                "kind": "pooled",
                "method": s.method,
                "settings": s.setting_dict(),
                "fit_seeds": list(range(S)) if it else None,
                "rel_l1_fit": [0.15] * S,
                "rel_l1_heldout": heldout.get((m, s.name), grid(FIT_ERR, key + "/err")),
                # an overridden (finite) held-out error is gated clipped too, as the stage gates
                "rel_l1_heldout_clipped": (np.asarray(heldout[(m, s.name)]) - 0.01).tolist()
                if (m, s.name) in heldout and np.all(np.isfinite(heldout[(m, s.name)]))
                else grid(FIT_ERR - 0.01, key + "/clip"),
                "converged": [True] * S if it else [None] * S,
                "final_loss": [0.01] * S if it else [None] * S,
                "local_spread": [0.7] * S if s.method == "jacobian" else [None] * S,
                "metrics": _metrics(LEVELS[m], key),
                # functional diagonality (the primary metric reads keep_diag): the DAEs keep more
                "functional": {"keep_diag": grid(LEVELS[m], key + "/keep"),
                               "keep_band": grid(min(1.0, LEVELS[m] + 0.1), key + "/keepband")},
                "wall_s": 1.0,
            }
            if s.method == "jacobian" and m == "dae_sf":
                rec["part_metrics"] = {
                    "mask": _metrics(0.95, key + "/mask"),
                    "mask_jacobian": _metrics(0.3, key + "/mj"),
                }
            records.append(rec)
        records.append(
            {
                "model": m,
                "setting": "-",
                "kind": "model",
                "wall_s": 1.0,
                "dead_units": [{"layer_0": 0.1, "output": 0.2, "overall": 0.15}] * S,
                "linearity": [
                    {
                        "frame_metric_quantiles": {
                            k: [0.1, 0.2, 0.3, 0.4, 0.5] for k in METRIC_KEYS[:3]
                        },
                        "quantile_levels": [0.05, 0.25, 0.5, 0.75, 0.95],
                        "frame_metric_values": {
                            k: rng.uniform(0, 1, 30).tolist()
                            for k in (
                                "diagonal_energy_ratio",
                                "weighted_diagonal_energy_ratio",
                                "near_diagonal_energy",
                                "mean_coupling_distance",
                            )
                        },
                        "zero_jacobian_frames": 0,
                        "n_frames": 30,
                        "rel_l1_per_frame_linear": 0.1,
                        "rel_l1_mean_jacobian": 0.5,
                        "local_spread": 1.2,
                    }
                    for _ in range(2)
                ],
            }
        )
    return records


def _mappings(run, rng, *, finished=True, records=None):
    d = run / "mappings"
    (d / "matrices").mkdir(parents=True)
    records = records if records is not None else mapping_records(rng)
    stft = STFTConfig(sample_rate=SR, n_fft=N_FFT, win_length=N_FFT, hop_length=4)
    cfg = MappingConfig(settings=SETTINGS, n_fit_frames=32, heldout_frames_per_song=8)
    songs = [f"t{i}" for i in range(T)]
    np.savez(
        d / "frames.npz",
        fit_input_energy=rng.uniform(0, 1, N),
        heldout_input_energy=rng.uniform(0, 1, (T, N)),
        frequencies=bin_frequencies(N, sample_rate=SR, n_fft=N_FFT),
        fit_songs=np.array(["a", "b"]),
        heldout_songs=np.array(songs),
    )
    for m in sorted({r["model"] for r in records}):
        np.savez(d / "matrices" / f"{m}__per_bin_gain.npz", gain=rng.uniform(0, 1, (S, N)))
        for s in SETTINGS:
            arrays = {"matrix": rng.normal(size=(S, N, N)).astype(np.float32)}
            if s.method in ITERATIVE:
                arrays["losses"] = np.exp(-np.linspace(0, 3, 20))[None].repeat(S, 0)
            if s.method == "jacobian" and m == "dae_sf":
                arrays["part_mask"] = np.stack([np.diag(rng.uniform(0, 1, N))] * S)
                arrays["part_mask_jacobian"] = rng.normal(size=(S, N, N))
            np.savez(d / "matrices" / f"{m}__{s.name}.npz", **arrays)
    write_mapping_stage(d, records, cfg=cfg, stft=stft, models=MODELS, heldout_songs=songs, finished=finished)


def _evaluation(run):
    def row(sdr):
        return {"mag_sdr": sdr, "vocals": {"SDR": sdr, "SIR": sdr + 5, "SAR": sdr + 2, "ISR": None}}

    summary = {"mixture": row(-2.0), "oracle_irm": row(12.0)}
    summary.update({f"{m}/seed{s}": row(5.0 + s) for m in MODELS for s in range(S)})
    _write_json(run / "evaluation" / "result.json", {"summary": summary, "per_track": {}})


def make_run(root, **mapping_kw):
    rng = np.random.default_rng(0)
    run = root / "run"
    for m in MODELS:
        _train(run, m, rng)
    _mappings(run, rng, **mapping_kw)
    _evaluation(run)
    return run


ALL_FIGURES = {
    "direction_intervals",
    "heldout_error",
    "keep_shares",
    f"mapping_matrices_{PRIMARY_ESTIMATOR}",
    "estimator_matrices",
    "estimator_matrices_zoom",
    "structure_metrics",
    "training_curves",
    "fit_loss_curves",
    "linearity",
    "separation_quality",
}


def _names(paths):
    return {p.stem for p in paths}


@pytest.fixture
def capture(monkeypatch):
    """Figures handed to save_figure, by name, instead of files (fast; the figure is inspected)."""
    figs = {}

    def fake_save(fig, out_dir, name):
        figs[name] = fig
        return [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]

    monkeypatch.setattr(plots_base, "save_figure", fake_save)
    return figs


# --------------------------------------------------------------------------------------------------
# make_all


def test_make_all_writes_png_and_pdf_of_every_figure(tmp_path):
    run = make_run(tmp_path)
    out = tmp_path / "figs"
    paths = plots.make_all(run, out)
    assert _names(paths) == ALL_FIGURES
    assert sorted(paths) == sorted(out / f"{n}.{e}" for n in ALL_FIGURES for e in ("png", "pdf"))
    for name in ALL_FIGURES:
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    # no evaluation/spectrograms.npz in the fake run: the spectrogram figure has no inputs and is skipped
    assert plots.spectrograms(run, out) == []


def test_make_all_skips_figures_whose_inputs_are_missing(tmp_path, capture):
    run = make_run(tmp_path)
    shutil.rmtree(run / "mappings")
    assert _names(plots.make_all(run, tmp_path / "a")) == {
        "training_curves",
        "separation_quality",
    }
    shutil.rmtree(run / "evaluation")
    assert _names(plots.make_all(run, tmp_path / "b")) == {
        "training_curves"
    }
    shutil.rmtree(run / "train")
    assert plots.make_all(run, tmp_path / "c") == []
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plots.make_all(run / "nope", tmp_path / "d")


def test_records_are_read_from_metrics_jsonl_while_the_stage_runs(tmp_path, capture):
    # the stage has done dae and dae_deep so far: no dae_sf, so no DAE − dae_sf interval yet
    recs = [r for r in mapping_records(np.random.default_rng(1)) if r["model"] != "dae_sf"]
    run = tmp_path / "run"
    _mappings(run, np.random.default_rng(1), finished=False, records=recs)
    assert not (run / "mappings" / "result.json").exists()
    assert plots.load_mapping_records(run / "mappings") == recs
    assert plots.direction_intervals(run, tmp_path / "f") == []
    assert _names(plots.heldout_error(run, tmp_path / "f")) == {"heldout_error"}
    assert _names(plots.structure_metrics(run, tmp_path / "f")) == {"structure_metrics"}
    assert plots.load_mapping_records(tmp_path / "missing") == []


# --------------------------------------------------------------------------------------------------
# what the new figures show


def _errorbars(ax):
    """(x, y, (lo, hi) along the bar, marker face colour) of every error bar of ax."""
    out = []
    for c in ax.containers:
        line, _, bars = c.lines
        (seg,) = bars[0].get_segments()
        out.append(
            (
                float(line.get_xdata()[0]),
                float(line.get_ydata()[0]),
                seg,
                to_hex(line.get_markerfacecolor()),
            )
        )
    return out


def test_direction_intervals_render_the_summarys_verdict(tmp_path, capture):
    # student fits of dae no better than the per-bin gain: that estimator does not count
    worse = {("dae", "student_converged"): grid(0.6, "dae/student/worse")}
    run = make_run(tmp_path, records=mapping_records(np.random.default_rng(0), heldout=worse))
    summary = summarise_run(run)
    assert _names(plots.direction_intervals(summary, tmp_path / "f")) == {"direction_intervals"}
    (ax,) = capture["direction_intervals"].axes
    concl = summary.conclusion
    assert concl["overall"]["verdict"] == "holds"
    assert concl["settings"]["student_converged"]["counts"] is False
    assert "Verdict: holds" in ax.get_title()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [
        "NCA (converged) (primary)",
        "student (converged)",
        "least squares",
        "mean Jacobian",
    ]
    bars = _errorbars(ax)
    # dae_sf's mean Jacobian has no primary-metric table of its mask_jacobian part (its diag(m) part never
    # counts): that row has no interval
    assert not concl["settings"]["jacobian"].get("intervals")
    with_iv = [s for s in SETTINGS if concl["settings"][s.name].get("intervals")]
    assert len(bars) == len(with_iv) * len(verdict.DAE_MODELS) == (len(SETTINGS) - 1) * 2
    for i, s in enumerate(with_iv):
        v = concl["settings"][s.name]
        for k, dae in enumerate(verdict.DAE_MODELS):
            x, _, seg, face = bars[2 * i + k]
            iv = v["intervals"][dae]
            assert x == pytest.approx(iv["mean"]) and iv["lo"] > 0  # right of 0: DAE more diagonal
            assert sorted(seg[:, 0]) == pytest.approx([iv["lo"], iv["hi"]])
            filled = to_hex(plots.MODEL_COLOURS[dae])
            assert face == (filled if v["counts"] else "#ffffff"), (s.name, dae)


def test_heldout_error_renders_the_summarys_intervals_and_baselines(tmp_path, capture):
    rng = np.random.default_rng(0)
    table = grid(FIT_ERR, "nan-seed")
    table[1] = [float("nan")] * T  # one seed with a non-finite error: left out
    run = make_run(tmp_path, records=mapping_records(rng, heldout={("dae_sf", "lstsq"): table}))
    summary = summarise_run(run)
    plots.heldout_error(summary, tmp_path / "f")
    raw, clipped = capture["heldout_error"].axes
    records = plots.load_mapping_records(run / "mappings")

    def rec(m, s, kind="pooled"):
        return next(r for r in records if (r["model"], r["setting"], r["kind"]) == (m, s, kind))

    bars = _errorbars(raw)
    assert len(bars) == len(MODELS) * len(SETTINGS)
    # series per model, groups per setting (x = setting index + model offset)
    for k, m in enumerate(MODELS):
        for g, s in enumerate(SETTINGS):
            x, y, seg, _ = bars[k * len(SETTINGS) + g]
            iv = summary.table(m, s.name, "rel_l1_heldout").rows_interval
            assert round(x) == g
            assert y == pytest.approx(iv["mean"])
            assert sorted(seg[:, 1]) == pytest.approx([iv["lo"], iv["hi"]])
    _, y, _, _ = _errorbars(clipped)[2 * len(SETTINGS) + 2]  # dae_sf, lstsq, clipped
    assert y == pytest.approx(np.mean(rec("dae_sf", "lstsq")["rel_l1_heldout_clipped"]))
    for ax in (raw, clipped):
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        for m in MODELS:
            gain = lines[f"per-bin gain ({m})"]
            assert gain.get_ydata()[0] == pytest.approx(
                np.mean(rec(m, "per_bin_gain", "baseline")["rel_l1_heldout"])
            )
        assert lines["zero predictor"].get_ydata()[0] == 1.0


def test_estimator_matrices_add_dae_sf_jacobian_parts(tmp_path, capture):
    run = make_run(tmp_path)
    assert _names(plots.estimator_matrices(run, tmp_path / "f")) == {
        "estimator_matrices",
        "estimator_matrices_zoom",
    }
    fig = capture["estimator_matrices"]
    grid_axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"][: len(MODELS) * 6]
    titles = [ax.get_title() for ax in grid_axes[:6]]
    assert titles == [
        "NCA (converged)",
        "student (converged)",
        "least squares",
        "mean Jacobian",
        "Jac. part diag(m)",
        "Jac. part diag(x) dm/dx",
    ]
    assert sum(len(ax.images) for ax in grid_axes) == len(MODELS) * 4 + 2  # parts: dae_sf only
    notes = [t.get_text() for ax in grid_axes for t in ax.texts]
    assert notes == ["skip-filter models only"] * 4  # dae and dae_deep have no parts
    with np.load(run / "mappings" / "matrices" / "dae_sf__jacobian.npz") as f:
        part = f["part_mask"][0]
    np.testing.assert_allclose(
        grid_axes[2 * 6 + 4].images[0].get_array(), plots.log_magnitude_db(part)
    )


def test_fit_loss_curves_one_panel_per_iterative_setting(tmp_path, capture):
    run = make_run(tmp_path)
    assert _names(plots.loss_curves(run, tmp_path / "f")) == {"training_curves", "fit_loss_curves"}
    axes = [ax for ax in capture["fit_loss_curves"].axes if ax.axison]
    assert [ax.get_title() for ax in axes] == ["NCA (converged)", "student (converged)"]
    assert all(len(ax.get_lines()) == len(MODELS) * S for ax in axes)


# --------------------------------------------------------------------------------------------------
# pure helpers


def test_log_magnitude_db_known_values():
    C = np.array([[1.0, -0.1], [1e-3, 0.0]])
    db = plots.log_magnitude_db(C, tiny=1e-12)
    np.testing.assert_allclose(db[0], [0.0, -20.0], atol=1e-9)
    np.testing.assert_allclose(db[1, 0], -60.0, atol=1e-6)
    assert db[1, 1] == pytest.approx(-240.0)
    with pytest.raises(ValueError, match="tiny"):
        plots.log_magnitude_db(C, tiny=0.0)


def test_shared_db_limits_take_the_largest_over_all_arrays():
    a = np.full((3, 3), 0.5)
    b = np.zeros((3, 3))
    b[1, 2] = -10.0
    assert plots.shared_db_limits([a, b], dynamic_range_db=60) == pytest.approx((-40.0, 20.0))
    assert plots.shared_db_limits([a], dynamic_range_db=30) == pytest.approx(
        (20 * math.log10(0.5) - 30, 20 * math.log10(0.5))
    )
    # row_quantile: quantile of the per-row maxima; rows maxima here are 1, 10, 100, 1000
    rows = np.diag([1.0, 10.0, 100.0, 1000.0])
    lo, hi = plots.shared_db_limits([rows], row_quantile=0.5)
    assert hi == pytest.approx(20 * math.log10(np.quantile([1, 10, 100, 1000], 0.5)))
    with pytest.raises(ValueError, match="row_quantile"):
        plots.shared_db_limits([rows], row_quantile=0.0)
    with pytest.raises(ValueError, match="no non-empty"):
        plots.shared_db_limits([None])


def test_matrix_grid_panels_share_one_colour_scale_and_label_hz():
    rng = np.random.default_rng(2)
    freqs = bin_frequencies(N, sample_rate=SR, n_fft=N_FFT)
    mats = {
        ("C", "dae"): rng.normal(size=(N, N)),
        ("C", "dae_sf"): 30 * rng.normal(size=(N, N)),
        ("C", "dae_deep"): None,
    }
    fig = plots.draw_matrix_grid(
        mats,
        freqs,
        rows=["C"],
        cols=["dae", "dae_deep", "dae_sf"],
        dynamic_range_db=50,
        row_quantile=1.0,
    )
    images = [im for ax in fig.axes for im in ax.images]
    assert len(images) == 2
    expected = plots.shared_db_limits(
        [m for m in mats.values() if m is not None], dynamic_range_db=50
    )
    for im in images:
        assert im.get_clim() == pytest.approx(expected)
        # bin k spans k*df +- df/2 with df = 500 Hz
        assert im.get_extent() == pytest.approx([-250, 4250, -250, 4250])
        assert im.axes.get_xlabel() == "input frequency (Hz)"
    np.testing.assert_allclose(images[0].get_array(), plots.log_magnitude_db(mats[("C", "dae")]))
    # zoom to 1 kHz keeps bins 0..2 (0, 500, 1000 Hz)
    zoomed = plots.draw_matrix_grid(mats, freqs, rows=["C"], cols=["dae"], zoom_hz=1000.0)
    assert zoomed.axes[0].images[0].get_array().shape == (3, 3)
    # large matrices are max-pooled for display
    pooled = plots.draw_matrix_grid(mats, freqs, rows=["C"], cols=["dae"], max_pixels=3)
    db = plots.log_magnitude_db(mats[("C", "dae")])
    np.testing.assert_allclose(
        pooled.axes[0].images[0].get_array(), db.reshape(3, 3, 3, 3).max(axis=(1, 3))
    )
    with pytest.raises(ValueError, match="does not match"):
        plots.draw_matrix_grid({("C", "x"): np.eye(3)}, freqs, rows=["C"], cols=["x"])


def test_spectrogram_drawing_from_small_arrays(tmp_path):
    rng = np.random.default_rng(3)
    panels = {
        "mixture": rng.uniform(0, 2, (20, N)),
        "true vocals": rng.uniform(0, 1, (20, N)),
        "dae": rng.uniform(0, 1, (20, N)),
    }
    mask = rng.uniform(0, 1, (20, N))
    fig = plots.draw_spectrograms(
        panels, frame_seconds=0.01, frequencies=np.arange(N) * 500.0, mask=mask, dynamic_range_db=40
    )
    mags = [ax.images[0] for ax in fig.axes if ax.images and ax.get_title() in panels]
    assert len(mags) == 3
    expected = plots.shared_db_limits(list(panels.values()), dynamic_range_db=40)
    assert all(im.get_clim() == pytest.approx(expected) for im in mags)
    assert mags[0].get_extent() == pytest.approx([0.0, 0.2, -250.0, 4250.0])
    assert {ax.get_ylabel() for ax in fig.axes if ax.images} >= {"frequency (Hz)"}
    paths = plots.save_figure(fig, tmp_path, "spec")
    assert [p.name for p in paths] == ["spec.png", "spec.pdf"] and all(
        p.stat().st_size for p in paths
    )
    with pytest.raises(ValueError, match="nb_frames"):
        plots.draw_spectrograms(
            {"a": np.ones((5, N)), "b": np.ones((6, N))},
            frame_seconds=0.01,
            frequencies=np.arange(N) * 500.0,
        )


def test_spectrograms_are_drawn_from_the_saved_excerpt(tmp_path, capture):
    run = make_run(tmp_path)
    assert plots.spectrograms(run, tmp_path / "f") == []  # no excerpt saved: skipped
    rng = np.random.default_rng(4)
    names = ["mixture", "true vocals", "dae estimate (seed 0)"]
    panels = rng.uniform(0, 1, (3, 20, N)).astype(np.float32)
    mask = rng.uniform(0, 1, (20, N)).astype(np.float32)
    np.savez(run / "evaluation" / "spectrograms.npz", panel_names=np.array(names), panels=panels,
             mask=mask, frequencies=np.arange(N) * 500.0, frame_seconds=np.float64(0.01),
             track=np.array("song 1"))
    got = plots.spectrogram_panels(run)
    assert list(got["panels"]) == names and got["track"] == "song 1" and got["frame_seconds"] == 0.01
    np.testing.assert_array_equal(got["mask"], mask)
    assert _names(plots.spectrograms(run, tmp_path / "f")) == {"spectrograms"}
    fig = capture["spectrograms"]
    assert {ax.get_title() for ax in fig.axes} >= {*names, "dae_sf mask m(x)"}
    assert _names(plots.make_all(run, tmp_path / "g")) == ALL_FIGURES | {"spectrograms"}


# --------------------------------------------------------------------------------------------------
# the under-convergence control


def _control_records(step_levels: dict) -> list[dict]:
    out = []
    for setting, lr in (("nca_authors", 1e-4), (PRIMARY_ESTIMATOR, 1e-2)):
        for steps, levels in step_levels.items():
            for m in MODELS:
                key = f"{m}/{setting}@{steps}"
                out.append(control_record(m, setting, steps, keep=grid(levels[m], key + "/kd"),
                                          ratio=grid(levels[m], key + "/w"), fit_err=[1.0 / (1 + steps)] * S,
                                          fit_steps=max(step_levels), learning_rate=lr))
    return out


def test_convergence_control_figure_shows_fit_errors_and_the_verdicts_intervals(tmp_path, capture):
    reversed_ = {"dae": 0.2, "dae_deep": 0.25, "dae_sf": 0.8}
    steps = {0: LEVELS, 30: LEVELS, 300: reversed_}
    recs = mapping_records(np.random.default_rng(0)) + _control_records(steps)
    run = make_run(tmp_path, records=recs)
    assert _names(plots.convergence_control(run, tmp_path / "f")) == {"convergence_control"}
    fig = capture["convergence_control"]
    ax_err, ax_keep, ax_ratio = fig.axes
    by_key = {(r["model"], r["setting"], r["kind"]): r for r in plots.load_mapping_records(run / "mappings")}
    control = verdict.convergence_control(by_key)
    for ax in fig.axes:
        assert ax.get_xscale() == "symlog" and ax.get_xlabel() and ax.get_ylabel()
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0\n(P frozen)", "30", "300"]
        assert ax.get_xlim()[0] < 0  # step 0 sits inside the axes, not on its edge
    # fit error: one line per model and setting through the mean fit error at each step count
    lines = [ln for ln in ax_err.get_lines() if ln.get_label() and not ln.get_label().startswith("_")]
    assert len(lines) == 2 * len(MODELS)
    for ln in lines:
        np.testing.assert_allclose(ln.get_ydata(), [1.0, 1 / 31, 1 / 301])
    # intervals: the verdict's, per DAE and setting, with their bootstrap ends
    for ax, metric in ((ax_keep, "diagonal_keep"), (ax_ratio, "weighted_diagonal_energy_ratio")):
        assert len(ax.containers) == 2 * len(verdict.DAE_MODELS)
        for container in ax.containers:
            label = container.get_label()
            dae, setting = label.split(" − dae_sf, ")
            rows = [r for r in control["rows"] if plots.SETTING_LABELS[r["setting"]] == setting]
            line, _, bars = container.lines
            np.testing.assert_allclose(line.get_ydata(), [r["directions"][metric]["intervals"][dae]["mean"]
                                                          for r in rows])
            segs = bars[0].get_segments()
            for seg, r in zip(segs, rows, strict=True):
                iv = r["directions"][metric]["intervals"][dae]
                assert sorted(seg[:, 1]) == pytest.approx([iv["lo"], iv["hi"]])
    # this fake stage has no pooled nca_authors fit to take the authors' direction from
    assert control["frozen_p"]["authors_source"] is None and not control["frozen_p_reproduces_authors"]
    assert "does not reproduce the authors' direction" in fig.get_suptitle()


def test_convergence_control_files_and_make_all(tmp_path):
    run = make_run(tmp_path, records=mapping_records(np.random.default_rng(0)) + _control_records(
        {0: LEVELS, 600: LEVELS, 3000: LEVELS, 10000: LEVELS}))
    out = tmp_path / "figs"
    paths = plots.convergence_control(run, out)
    assert sorted(paths) == [out / "convergence_control.pdf", out / "convergence_control.png"]
    assert (out / "convergence_control.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "convergence_control.pdf").read_bytes()[:5] == b"%PDF-"
    # without control records there is no such figure
    assert plots.convergence_control(make_run(tmp_path / "plain"), tmp_path / "g") == []


def test_separation_quality_draws_the_summarys_student_t_interval_over_seeds(tmp_path, capture):
    """Per model the error bar is the mean ± Student-t 95 % CI of the seeds' scores (5, 6, 7 dB here),
    checked against SciPy; a reference (one value) is a point without spread."""
    import scipy.stats

    run = make_run(tmp_path)
    plots.separation_quality(summarise_run(run), tmp_path / "f")
    mag = capture["separation_quality"].axes[0]
    bars = _errorbars(mag)
    assert len(bars) == 2 + len(MODELS)  # mixture, the models, the oracle IRM
    vals = 5.0 + np.arange(S)
    half = scipy.stats.t.ppf(0.975, S - 1) * vals.std(ddof=1) / np.sqrt(S)
    for _x, y, seg, _ in bars[1:-1]:
        assert y == pytest.approx(vals.mean())
        assert sorted(seg[:, 1]) == pytest.approx([vals.mean() - half, vals.mean() + half])
    x, y, seg, _ = bars[0]
    assert (x, y) == (0.0, -2.0) and list(seg[:, 1]) == [-2.0, -2.0]
