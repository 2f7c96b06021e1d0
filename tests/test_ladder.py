"""The resolution ladder the study runs on: fast (8 kHz, N = 129), mid (16 kHz, N = 513), paper (44.1 kHz,
N = 2049). At every rung the fit set scales with N (and an underdetermined one is refused before any work),
the mean Jacobian is formed seed by seed in chunks sized to N (a chunk that cannot fit is refused), and the
near-diagonal band is a width in Hz converted to bins of the preset."""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from ncajax import config, models
from ncajax.config import STFTConfig
from ncajax.nca import MeanJacobian
from ncajax.nca import _closed_forms as closed_forms
from ncajax.nca import _couplings as nca
from ncajax.nca import _stage as mappings
from ncajax.report._sections import near_band_text
from ncajax.study import _pipeline as pipeline
from ncajax.study import _study as study

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import fit_mappings  # noqa: E402
import reproduce  # noqa: E402

LADDER = {"fast": (8000, 129), "mid": (16000, 513), "paper": (44100, 2049)}


# ---------------------------------------------------------------------------------------------- presets


def test_the_ladder_presets():
    assert sorted(config.PRESETS) == ["fast", "mid", "paper"]
    for name, (rate, n) in LADDER.items():
        stft = config.preset(name)
        assert (stft.sample_rate, stft.n_bins) == (rate, n), name
    mid = config.preset("mid")
    assert (mid.n_fft, mid.win_length, mid.hop_length, mid.window) == (1024, 1024, 256, "hann")
    assert mid.sample_rate / mid.hop_length == 62.5  # frames per second
    # the stage scripts accept every rung, and the corpus is generated at the preset's rate
    for name in LADDER:
        assert reproduce.parse(["--preset", name]).preset == name
        assert study.StudyOptions(preset=name).corpus_config().sample_rate == LADDER[name][0]


def test_prepare_data_refuses_a_corpus_at_another_rate(tmp_path):
    with pytest.raises(ValueError, match="differs from preset 'mid'"):
        pipeline.prepare_data(preset_name="mid", corpus_cfg=config.CorpusConfig(sample_rate=8000),
                              cache_root=tmp_path, progress=False)


# ---------------------------------------------------------------------------------------------- fit frames


@pytest.mark.parametrize("name", list(LADDER))
def test_fit_frames_default_scales_with_the_preset(name):
    n = LADDER[name][1]
    frames = config.fit_frames_for(n)
    # the rule: 4 N rounded up to a multiple of 256, at least 1024
    assert frames == max(1024, math.ceil(4 * n / 256) * 256)
    assert frames >= 4 * n and frames % 256 == 0
    assert frames == {"fast": 1024, "mid": 2304, "paper": 8448}[name]
    # the study and the mapping stage resolve the default against the preset's N
    assert study.StudyOptions(preset=name).mapping_config().n_fit_frames == frames
    assert config.MappingConfig().resolved(config.preset(name)).n_fit_frames == frames
    assert study.StudyOptions(preset=name, fit_frames=frames + 7).mapping_config().n_fit_frames == frames + 7
    assert study.StudyOptions().heldout_frames == 256


def test_an_underdetermined_fit_set_is_refused_with_a_working_value():
    with pytest.raises(ValueError) as err:
        study.StudyOptions(preset="mid", fit_frames=500)
    msg = str(err.value)
    assert "--fit-frames 500" in msg and "N = 513" in msg and "'mid'" in msg and "underdetermined" in msg
    assert "use --fit-frames 2304 or more" in msg and "\n" not in msg
    study.StudyOptions(preset="mid", fit_frames=513)  # N frames: determined, accepted
    with pytest.raises(ValueError, match=r"n_fit_frames 100 .* N = 129 .* use n_fit_frames 1024 or more"):
        config.MappingConfig(n_fit_frames=100).resolved(config.preset("fast"))


def test_scripts_refuse_it_before_any_data(monkeypatch, tmp_path):
    def no_data(*args, **kwargs):
        raise AssertionError("data were prepared before the options were checked")

    monkeypatch.setattr(pipeline, "prepare_data", no_data)
    monkeypatch.setattr(study.pipeline, "prepare_data", no_data)
    with pytest.raises(ValueError, match="--fit-frames 200 .* N = 513 .* use --fit-frames 2304"):
        reproduce.main(["--preset", "mid", "--fit-frames", "200", "--out", str(tmp_path / "r")])
    with pytest.raises(ValueError, match="--fit-frames 1000 .* N = 2049 .* use --fit-frames 8448"):
        fit_mappings.main(["--preset", "paper", "--fit-frames", "1000", "--out", str(tmp_path / "f")])
    with pytest.raises(ValueError, match="--jacobian-chunk 123456789 cannot fit in memory"):
        fit_mappings.main(["--preset", "mid", "--jacobian-chunk", "123456789", "--out", str(tmp_path / "f")])
    assert not (tmp_path / "r").exists() and not (tmp_path / "f").exists()


# ---------------------------------------------------------------------------------------------- Jacobian chunk


@pytest.mark.parametrize("name", list(LADDER))
def test_jacobian_chunk_auto_is_the_largest_block_within_the_budget(name):
    n = LADDER[name][1]
    block = 4 * n * n
    chunk = config.jacobian_chunk_for(n)  # accelerators: 512 MiB
    assert chunk * block <= config.JACOBIAN_BLOCK_BYTES < (chunk + 1) * block
    assert chunk == {"fast": 8065, "mid": 510, "paper": 31}[name]
    cpu = config.jacobian_chunk_for(n, budget=config.JACOBIAN_CPU_BLOCK_BYTES)  # CPUs: 16 MiB
    assert cpu == {"fast": 252, "mid": 15, "paper": 1}[name]
    assert config.jacobian_chunk_for(10**5) == 1  # never below one frame
    # the study leaves the automatic chunk to the machine the stage runs on (not part of its config) ...
    cfg = study.StudyOptions(preset=name).mapping_config()
    assert cfg.jacobian_chunk is None
    assert mappings.jacobian_chunk(cfg, n) == (cpu if jax.default_backend() == "cpu" else chunk)
    # ... and passes an explicit one through
    assert mappings.jacobian_chunk(study.StudyOptions(preset=name, jacobian_chunk=7).mapping_config(), n) == 7


def test_a_jacobian_chunk_that_cannot_fit_is_refused_with_a_working_value():
    gib = 2**30
    assert config.jacobian_chunk_for(513, 64, memory=gib) == 64  # 64 MiB block x 4: fits in 1 GiB
    with pytest.raises(ValueError) as err:
        config.jacobian_chunk_for(513, 1000, memory=gib)  # 1 GB block
    msg = str(err.value)
    assert "jacobian_chunk 1000 cannot fit in memory" in msg and "1.0 GiB" in msg
    assert "use jacobian_chunk 510 (a 512 MiB block) or leave it unset" in msg and "\n" not in msg
    with pytest.raises(ValueError, match="--jacobian-chunk 10000000 cannot fit .* use --jacobian-chunk 510"):
        study.StudyOptions(preset="mid", jacobian_chunk=10**7)  # 10 TB: more than any machine here
    with pytest.raises(ValueError, match="jacobian_chunk must be a positive"):
        config.MappingConfig(jacobian_chunk=0)
    with pytest.raises(ValueError, match="positive integer"):
        config.jacobian_chunk_for(513, 2.5)
    assert config.memory_bytes() is None or config.memory_bytes() > 2**28


def _vmapped_mean_jacobian(model, params, x, target, p_axis, chunk):
    """The K fits in one vmapped program (how the stage computed them before: K blocks at once)."""
    # private on purpose: this reference composes the stage's own per-seed kernel; no public path vmaps it
    frame_jac = closed_forms._FrameJacobian(model, model.apply, isinstance(model, models.SkipFilterDAE))
    single = functools.partial(closed_forms._jacobian_single, frame_jac=frame_jac, chunk=chunk)
    with jax.default_matmul_precision("highest"):
        return jax.jit(jax.vmap(single, in_axes=(0, 0, p_axis)))(x, target, params)


@pytest.mark.parametrize("name", ["dae", "dae_sf"])
@pytest.mark.parametrize("p_axis", [0, None])
def test_seed_by_seed_mean_jacobian_equals_the_vmapped_one(name, p_axis):
    n, k, frames, chunk = 10, 3, 23, 7  # uneven chunks: padding on the last one
    model = models.build(name, n)
    keys = jax.random.split(jax.random.key(1), k)
    params = jax.vmap(lambda key: models.init_params(model, key))(keys)
    params = jax.tree.map(lambda a: a + 0.05, params)  # open the ReLU gates
    if p_axis is None:
        params = jax.tree.map(lambda a: a[0], params)
    x = np.abs(np.random.default_rng(2).normal(size=(k, frames, n))).astype(np.float32)
    fit = nca.fit_mapping(model, params, x, MeanJacobian(chunk_size=chunk), params_axis=p_axis)
    if p_axis is None:
        target = jax.vmap(lambda v: model.apply(params, v))(x)
    else:
        target = jax.vmap(model.apply)(params, x)
    jbar, spread, rel, parts = _vmapped_mean_jacobian(model, params, x, target, p_axis, chunk)
    assert fit.matrix.shape == (k, n, n)
    np.testing.assert_allclose(fit.matrix, jbar, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fit.local_spread, spread, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fit.rel_l1_error, rel, rtol=1e-5, atol=1e-7)
    assert set(fit.parts) == set(parts) == ({"mask", "mask_jacobian"} if name == "dae_sf" else set())
    for part in parts:
        np.testing.assert_allclose(fit.parts[part], parts[part], rtol=1e-5, atol=1e-6)
    # and fit k is the single fit on seed k's params
    for i in range(k):
        p = params if p_axis is None else jax.tree.map(lambda a, i=i: a[i], params)
        one = nca.fit_mapping(model, p, x[i], MeanJacobian(chunk_size=chunk))
        np.testing.assert_allclose(fit.matrix[i], one.matrix, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------- bands in Hz


def test_band_hz_to_bins_per_preset():
    assert config.NEAR_DIAGONAL_BAND_HZ == 62.5  # the fast preset's former 2 bins of 31.25 Hz
    cfg = config.MappingConfig()
    assert {name: cfg.near_band_bins(config.preset(name)) for name in LADDER} == {"fast": 2, "mid": 4, "paper": 6}
    coarse = STFTConfig(sample_rate=8000, n_fft=30, win_length=30, hop_length=15)  # 267 Hz bins
    assert config.band_bins(62.5, coarse) == 1  # at least one bin
    assert config.band_bins(0.0, config.preset("mid")) == 1
    assert config.band_bins(100.0, config.preset("fast")) == 3  # 3.2 bins -> 3
    assert config.band_bins(47.0, config.preset("fast")) == 2  # 1.504 bins -> 2 (nearest)
    assert config.MappingConfig(band_hz=125.0).near_band_bins(config.preset("fast")) == 4
    # runs written before band_hz stored the band in bins (band_k), which still wins when set
    assert config.MappingConfig(band_k=3).near_band_bins(config.preset("mid")) == 3
    with pytest.raises(ValueError, match="band_hz"):
        config.MappingConfig(band_hz=-1.0)


def test_report_names_the_band_of_new_and_old_runs():
    fast = config.to_dict(config.preset("fast"))
    new = {"mapping": config.to_dict(config.MappingConfig()), "stft": config.to_dict(config.preset("mid"))}
    assert near_band_text(new) == "4 bins (±62.5 Hz)"
    old = {"mapping": {"band_k": 2, "n_fit_frames": 1024}, "stft": fast}  # a config.json before band_hz
    assert near_band_text(old) == "2 bins"
    assert near_band_text(None) == "k bins"
