"""Figures from a tiny hand-written run directory: every figure whose inputs exist is written as PNG
and PDF, missing inputs skip their figures, and the dB helpers and shared colour scales are
exact."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ncajax import plots
from ncajax.analysis import bin_frequencies

N_FFT, SR = 16, 8000
N = N_FFT // 2 + 1  # 9 bins
SEEDS = 2
TRACKS = ["t0", "t1", "t2"]
METRIC_KEYS = (
    "diagonal_energy_ratio",
    "near_diagonal_energy",
    "weighted_diagonal_energy_ratio",
    "weighted_near_diagonal_energy",
    "mean_coupling_distance_octaves",
    "mean_coupling_distance",
)


def _metrics(rng, n):
    return [{k: float(rng.uniform(0.1, 0.9)) for k in METRIC_KEYS} for _ in range(n)]


def _write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _train(run, model, rng):
    d = run / "train" / model
    _write_json(
        d / "config.json",
        {
            "stft": {
                "sample_rate": SR,
                "n_fft": N_FFT,
                "win_length": N_FFT,
                "hop_length": 4,
                "window": "hann",
            },
            "data": {},
        },
    )
    lines = [
        {
            "epoch": e,
            "train_loss": rng.uniform(0.1, 1, SEEDS).tolist(),
            "val_loss": rng.uniform(0.1, 1, SEEDS).tolist(),
        }
        for e in range(1, 4)
    ]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def _mappings(run, rng, *, finished=True):
    d = run / "mappings"
    (d / "matrices").mkdir(parents=True)
    (d / "per_track").mkdir()
    np.savez(
        d / "frames.npz",
        fit_input_energy=rng.uniform(0, 1, N),
        frequencies=bin_frequencies(N, sample_rate=SR, n_fft=N_FFT),
    )
    _write_json(d / "config.json", {"stft": {"sample_rate": SR, "n_fft": N_FFT}})
    records = []
    for model in ("dae", "dae_sf"):
        for setting in ("nca_authors", "lstsq", "jacobian"):
            arrays = {"matrix": rng.normal(size=(SEEDS, N, N)).astype(np.float32)}
            if setting == "nca_authors":
                arrays["losses"] = np.exp(-np.linspace(0, 3, 20))[None].repeat(SEEDS, 0)
            record = {
                "model": model,
                "setting": setting,
                "kind": "pooled",
                "metrics": _metrics(rng, SEEDS),
                "fidelity_fit": [0.3] * SEEDS,
            }
            if model == "dae_sf" and setting == "jacobian":
                arrays["part_mask"] = np.stack([np.diag(rng.uniform(0, 1, N))] * SEEDS)
                arrays["part_mask_jacobian"] = rng.normal(size=(SEEDS, N, N))
                record["part_metrics"] = {
                    "mask": _metrics(rng, SEEDS),
                    "mask_jacobian": _metrics(rng, SEEDS),
                }
            np.savez(d / "matrices" / f"{model}__{setting}.npz", **arrays)
            records.append(record)
        np.savez(d / "per_track" / f"{model}__lstsq.npz", matrix=rng.normal(size=(3, N, N)))
        records.append(
            {
                "model": model,
                "setting": "lstsq",
                "kind": "per_track",
                "tracks": TRACKS,
                "metrics": _metrics(rng, len(TRACKS)),
            }
        )
        records.append(
            {
                "model": model,
                "setting": "-",
                "kind": "model",
                "linearity": [
                    {
                        "frame_metric_values": {
                            k: rng.uniform(0, 1, 30).tolist() for k in METRIC_KEYS[:4]
                        },
                        "fidelity_per_frame_linear": 0.1,
                        "fidelity_mean_jacobian": 0.5,
                        "local_spread": 1.2,
                    }
                    for _ in range(SEEDS)
                ],
            }
        )
    if finished:
        _write_json(d / "result.json", {"records": records})
    else:
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _evaluation(run):
    def row(sdr):
        return {"mag_sdr": sdr, "vocals": {"SDR": sdr, "SIR": sdr + 5, "SAR": sdr + 2, "ISR": None}}

    summary = {"mixture": row(-2.0), "oracle_irm": row(12.0)}
    summary.update({f"{m}/seed{s}": row(5.0 + s) for m in ("dae", "dae_sf") for s in range(SEEDS)})
    _write_json(run / "evaluation" / "result.json", {"summary": summary, "per_track": {}})


@pytest.fixture
def run_dir(tmp_path):
    rng = np.random.default_rng(0)
    run = tmp_path / "run"
    for m in ("dae", "dae_sf"):
        _train(run, m, rng)
    _mappings(run, rng)
    _evaluation(run)
    return run


ALL_FIGURES = {
    "mapping_matrices_nca_authors",
    "estimator_matrices",
    "estimator_matrices_zoom",
    "structure_metrics",
    "training_curves",
    "fit_loss_curves",
    "linearity",
    "separation_quality",
    "per_track_structure",
}


def _names(paths):
    return {p.stem for p in paths}


def test_make_all_writes_png_and_pdf_of_every_figure(run_dir, tmp_path):
    out = tmp_path / "figs"
    paths = plots.make_all(run_dir, out)
    # no checkpoints in the fake run: the spectrogram figure is skipped, everything else is drawn
    assert _names(paths) == ALL_FIGURES
    for name in ALL_FIGURES:
        png, pdf = out / f"{name}.png", out / f"{name}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert pdf.read_bytes()[:5] == b"%PDF-"
    assert sorted(paths) == sorted(out / f"{n}.{e}" for n in ALL_FIGURES for e in ("png", "pdf"))


def test_make_all_skips_figures_whose_inputs_are_missing(run_dir, tmp_path):
    import shutil

    shutil.rmtree(run_dir / "mappings")
    assert _names(plots.make_all(run_dir, tmp_path / "a")) == {
        "training_curves",
        "separation_quality",
    }
    shutil.rmtree(run_dir / "evaluation")
    assert _names(plots.make_all(run_dir, tmp_path / "b")) == {"training_curves"}
    shutil.rmtree(run_dir / "train")
    assert plots.make_all(run_dir, tmp_path / "c") == []
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plots.make_all(run_dir / "nope", tmp_path / "d")


def test_records_are_read_from_metrics_jsonl_while_the_stage_runs(tmp_path):
    run = tmp_path / "run"
    _mappings(run, np.random.default_rng(1), finished=False)
    records = plots.load_mapping_records(run / "mappings")
    assert {(r["model"], r["kind"]) for r in records} >= {("dae", "pooled"), ("dae_sf", "model")}
    assert _names(plots.structure_metrics(run, tmp_path / "f")) == {"structure_metrics"}


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
