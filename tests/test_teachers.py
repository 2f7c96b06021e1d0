"""Teachers of known structure through the study's own code path (`mappings.run_stage`, then
`verdict.model_branch` / `verdict.conclusion`): does the verdict find the structure we built in?

- an exact mask teacher f(x) = x ⊙ m: a per-bin filter suffices, diag(C) keeps ~all of C's advantage;
- a banded teacher (each output bin draws on its neighbours within the band): the band keeps it, the
  diagonal alone does not;
- a harmonic coupling teacher (output bin i draws on input bins 2i and 3i): couplings beyond the band;
- a level gate (passes quiet frames, silences loud ones): no linear map beats silence.

Margins, not exact values; the frames are random magnitudes with a per-frame level over 40 dB.
"""

import numpy as np
import pytest

from ncajax.config import STFTConfig
from ncajax.nca import LeastSquares
from ncajax.nca import _stage as mappings
from ncajax.nca import _structure as analysis
from ncajax.results import _verdict as verdict

N = 32
STFT = STFTConfig(sample_rate=4000, n_fft=62, win_length=62, hop_length=31)  # 32 bins, 64.5 Hz apart
BAND_HZ = 100.0  # the band part is |i - j| <= 1 bin here
SETTING = "lstsq"
CFG = mappings.MappingConfig(settings=(LeastSquares(name=SETTING),), n_fit_frames=256,
                             heldout_frames_per_song=64, linearity_frames=8, linearity_seeds=0)


class Cache:
    """A feature-cache stand-in: songs of random magnitudes, each frame at its own level (40 dB)."""

    def __init__(self, seed, n_songs, length, prefix):
        rng = np.random.default_rng(seed)
        n = n_songs * length
        level = 10.0 ** rng.uniform(-2.0, 0.0, size=(n, 1))
        self.mixture = (level * rng.random((n, N))).astype(np.float32)
        self.vocals = (0.5 * self.mixture).astype(np.float32)
        self.offsets = np.arange(0, n + 1, length, dtype=np.int64)
        self.track_names = [f"{prefix}{i}" for i in range(n_songs)]


MASK = np.linspace(0.2, 1.0, N).astype(np.float32)
BANDED = (0.4 * np.eye(N) + 0.3 * (np.eye(N, k=1) + np.eye(N, k=-1))).astype(np.float32)
HARMONIC = 0.2 * np.eye(N)
for _i in range(1, N):
    for _h in (2, 3):
        if _h * _i < N:
            HARMONIC[_i, _h * _i] = 0.4
HARMONIC = HARMONIC.astype(np.float32)
GATE_LEVEL = 0.1  # mean magnitude above which the gate teacher outputs silence


def _linear(matrix):
    return lambda x: x @ matrix.T


def _gate(x):
    quiet = (x.mean(axis=-1, keepdims=True) < GATE_LEVEL).astype(x.dtype)
    return x * quiet


TEACHERS = {
    "mask": lambda x: x * MASK,
    "banded": _linear(BANDED),
    "harmonic": _linear(HARMONIC),
    "gate": _gate,
}


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    seps = {name: mappings.Separator(f, None, 1) for name, f in TEACHERS.items()}
    out = tmp_path_factory.mktemp("teachers")
    result = mappings.run_stage(seps, Cache(0, 4, 96, "train"), Cache(1, 6, 64, "test"), STFT, out, CFG,
                                progress=False, band_hz=BAND_HZ)
    records = {(r["model"], r["setting"], r["kind"]): r for r in result["records"]}
    return {"records": records, "out": out}


def _functional(stage, name):
    return {k: np.asarray(v, np.float64) for k, v in stage["records"][(name, SETTING, "pooled")]
            ["functional"].items()}


def _branch(stage, name):
    return verdict.model_branch(stage["records"], name, SETTING)


def test_mask_teacher_a_per_bin_filter_suffices(stage):
    f = _functional(stage, "mask")
    assert np.all(f["err_full"] < 1e-3) and np.all(f["err_zero"] == 1.0)
    assert np.all(f["keep_diag"] >= 0.99)
    b = _branch(stage, "mask")
    assert b["branch"] == "per_bin_filter_suffices", b
    assert b["keep_diag"]["lo"] >= 0.99


def test_banded_teacher_band_found_diagonal_not_enough(stage):
    f = _functional(stage, "banded")
    assert np.all(f["keep_band"] >= 0.99)
    assert np.all(f["keep_diag"] < 0.7)  # the diagonal alone (0.4 of each row's 1.0) loses most of it
    b = _branch(stage, "banded")
    assert b["branch"] == "couplings", b
    assert b["keep_diag"]["hi"] < 0.7 < 0.99 <= b["keep_band"]["lo"]


def test_harmonic_teacher_off_diagonal_couplings_found(stage):
    f = _functional(stage, "harmonic")
    assert np.all(f["err_full"] < 1e-3)
    # the couplings reach 2i and 3i, outside the 1-bin band for every i >= 2
    assert np.all(f["keep_diag"] < 0.6) and np.all(f["keep_band"] < 0.7)
    b = _branch(stage, "harmonic")
    assert b["branch"] == "couplings", b
    assert b["keep_band"]["hi"] < 0.7


def test_level_gate_teacher_no_linear_summary(stage):
    b = _branch(stage, "gate")
    assert b["branch"] == "no_linear_summary", b
    gain = stage["records"][("gate", "per_bin_gain", "baseline")]
    assert np.all(np.asarray(gain["rel_l1_heldout_clipped"]) > 0.95)  # no per-bin gain helps either


def test_conclusion_over_teachers_names_the_per_bin_filter_models(stage):
    """The overall verdict through `verdict.conclusion`, with teachers standing in for the models."""
    recs = stage["records"]
    as_models = {"dae": "mask", "dae_deep": "mask", "dae_sf": "harmonic"}
    mapped = {(m, s, k): recs[(t, s, k)] for m, t in as_models.items() for s, k in
              ((SETTING, "pooled"), ("per_bin_gain", "baseline"), ("zero", "baseline"))}
    c = verdict.conclusion(mapped, [SETTING], primary=SETTING)
    assert c["settings"][SETTING]["branches"] == {"dae": "per_bin_filter_suffices",
                                                  "dae_deep": "per_bin_filter_suffices",
                                                  "dae_sf": "couplings"}
    assert c["overall"]["verdict"] == "per_bin_filter_suffices"
    assert c["overall"]["models"] == ["dae", "dae_deep"]
    # the direct test: the DAEs' diagonal keeps more of its mapping's advantage than dae_sf's
    assert c["settings"][SETTING]["intervals"]["dae"]["lo"] > 0.3


def test_restricted_structure_of_the_mask_teacher_is_diagonal(stage):
    m = stage["records"][("mask", SETTING, "pooled")]["metrics"]
    for key in ("live_voice_diagonal_energy_ratio_mixture", "live_voice_diagonal_energy_ratio_vocals"):
        assert np.min(m[key]) > 0.999
    h = stage["records"][("harmonic", SETTING, "pooled")]["metrics"]
    # a NumPy reference: voice band 80 Hz .. 2 kHz (Nyquist), all rows live, vocals power weights
    freqs = analysis.bin_frequencies(N, sample_rate=STFT.sample_rate, n_fft=STFT.n_fft)
    band = (freqs >= 80.0) & (freqs <= 2000.0)
    c = np.load(stage["out"] / "matrices" / f"harmonic__{SETTING}.npz")["matrix"][0].astype(np.float64)
    x = mappings.select_frames(Cache(0, 4, 96, "train"), Cache(1, 6, 64, "test"), CFG)["heldout_vocals"][0]
    e = (np.asarray(x, np.float64) ** 2).mean(axis=0)
    w = c**2 * e[None, :] * (band[:, None] & band[None, :])
    assert h["live_voice_diagonal_energy_ratio_vocals"][0][0] == pytest.approx(np.trace(w) / w.sum(), rel=1e-4)


def test_keep_share_figure_from_the_teacher_stage(stage, tmp_path):
    from ncajax import plots

    run = tmp_path / "run"
    run.mkdir()
    (run / "mappings").symlink_to(stage["out"], target_is_directory=True)
    paths = plots.keep_shares(run, tmp_path / "fig")
    assert sorted(p.name for p in paths) == ["keep_shares.pdf", "keep_shares.png"]
    assert (tmp_path / "fig" / "keep_shares.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "fig" / "keep_shares.pdf").read_bytes()[:5] == b"%PDF-"
