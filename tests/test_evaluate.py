"""Tests of ncajax.separation: magnitude SDR, oracle IRM, separation, museval scores, corpus evaluation."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from ncajax.config import STFTConfig
from ncajax.separation import _bss as bss
from ncajax.separation import _evaluate as evaluate

RATE = 16000
CFG = STFTConfig(sample_rate=RATE, n_fft=512, win_length=512, hop_length=128, window="hann")


def _track(name="synth", seconds=2.0, seed=0, vocals_gain=1.0):
    """A sine-with-harmonics "voice" (gated on/off) plus white-noise "accompaniment", mono float32."""
    from ncajax.data._sources import TrackAudio

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    gate = (np.sin(2 * np.pi * 1.5 * t) > -0.3).astype(np.float64)
    voice = sum(0.3 / k * np.sin(2 * np.pi * 330.0 * k * t) for k in (1, 2, 3)) * gate * vocals_gain
    acc = 0.1 * rng.standard_normal(t.size)
    voice, acc = voice.astype(np.float32), acc.astype(np.float32)
    return TrackAudio(name=name, rate=RATE, mixture=voice + acc, vocals=voice, accompaniment=acc)


# ---------------------------------------------------------------------------------------------------
# magnitude_sdr


def test_magnitude_sdr_closed_forms():
    rng = np.random.default_rng(0)
    v = np.abs(rng.standard_normal((20, 9))).astype(np.float32)
    # v_hat = a v  ->  SDR = -20 log10 |1 - a|
    assert evaluate.magnitude_sdr(v, 0.5 * v) == pytest.approx(10 * math.log10(4.0), abs=1e-6)
    assert evaluate.magnitude_sdr(v, 1.1 * v) == pytest.approx(20.0, abs=1e-4)
    assert evaluate.magnitude_sdr(jnp.asarray(v), jnp.asarray(0.5 * v)) == pytest.approx(
        6.0206, abs=1e-4
    )
    assert evaluate.magnitude_sdr(v, v) == math.inf
    zeros = np.zeros_like(v)
    assert evaluate.magnitude_sdr(zeros, zeros) == math.inf
    assert evaluate.magnitude_sdr(zeros, v) == -math.inf
    assert evaluate.magnitude_sdr(v, zeros) == pytest.approx(0.0, abs=1e-9)


def test_magnitude_sdr_rejects_bad_input():
    v = np.ones((4, 3))
    with pytest.raises(ValueError, match="same shape"):
        evaluate.magnitude_sdr(v, np.ones((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        evaluate.magnitude_sdr(v, np.full((4, 3), np.nan))


# ---------------------------------------------------------------------------------------------------
# ideal_ratio_mask


def test_irm_disjoint_bins_is_binary_and_recovers_vocals():
    rng = np.random.default_rng(1)
    v = np.zeros((30, 16), np.float32)
    a = np.zeros((30, 16), np.float32)
    v[:, :8] = np.abs(rng.standard_normal((30, 8))) + 0.1
    a[:, 8:] = np.abs(rng.standard_normal((30, 8))) + 0.1
    for power in (1, 2):
        mask = np.asarray(evaluate.ideal_ratio_mask(v, a, power=power))
        np.testing.assert_array_equal(mask[:, :8], 1.0)
        np.testing.assert_array_equal(mask[:, 8:], 0.0)
        # disjoint supports: |mixture| = v + a exactly, so mask * |mixture| = v
        assert evaluate.magnitude_sdr(v, mask * (v + a)) > 100.0


def test_irm_range_zero_over_zero_and_power_closed_form():
    rng = np.random.default_rng(2)
    v = np.abs(rng.standard_normal((25, 12))).astype(np.float32)
    a = np.abs(rng.standard_normal((25, 12))).astype(np.float32)
    v[0], a[0] = 0.0, 0.0  # silent frame: 0/0
    mask1 = np.asarray(evaluate.ideal_ratio_mask(v, a))
    mask2 = np.asarray(evaluate.ideal_ratio_mask(v, a, power=2))
    for mask in (mask1, mask2):
        assert np.all(np.isfinite(mask))
        assert mask.min() >= 0.0 and mask.max() <= 1.0
        np.testing.assert_array_equal(mask[0], 0.0)
    np.testing.assert_allclose(mask1[1:], v[1:] / (v[1:] + a[1:]), rtol=1e-5)
    np.testing.assert_allclose(mask2[1:], v[1:] ** 2 / (v[1:] ** 2 + a[1:] ** 2), rtol=1e-5)
    with pytest.raises(ValueError, match="power"):
        evaluate.ideal_ratio_mask(v, a, power=3)


# ---------------------------------------------------------------------------------------------------
# separate_track (needs ncajax.data)


def test_separate_track_identity_zero_and_chunking():
    track = _track()
    calls = []

    def identity(x):
        calls.append(x.shape[0])
        return x

    sep = evaluate.separate_track(identity, track, CFG, batch_size=100)
    nb_frames = sep["mixture_mag"].shape[0]
    assert sep["mixture_mag"].shape == (nb_frames, CFG.n_bins)
    assert calls == [100] * (nb_frames // 100) + ([nb_frames % 100] if nb_frames % 100 else [])
    # iSTFT(|X|, phase X) is the mixture again (up to float error); accompaniment = mixture - vocals
    np.testing.assert_allclose(sep["vocals"], track.mixture, atol=1e-4)
    np.testing.assert_array_equal(sep["accompaniment"], track.mixture - sep["vocals"])
    np.testing.assert_array_equal(sep["vocals_mag"], sep["mixture_mag"])

    # one chunk gives the same answer as many
    whole = evaluate.separate_track(lambda x: 0.5 * x, track, CFG)
    chunked = evaluate.separate_track(lambda x: 0.5 * x, track, CFG, batch_size=7)
    np.testing.assert_allclose(whole["vocals"], chunked["vocals"], atol=1e-6)

    zero = evaluate.separate_track(lambda x: -x, track, CFG)  # negative magnitudes are clipped to 0
    np.testing.assert_array_equal(zero["vocals_mag"], 0.0)
    np.testing.assert_allclose(zero["vocals"], 0.0, atol=1e-7)


def test_separate_track_rejects_bad_predictors_and_tracks():
    track = _track(name="trackA")
    with pytest.raises(ValueError, match=r"'broken'.*'trackA'"):
        evaluate.separate_track(lambda x: x * np.nan, track, CFG, name="broken")
    with pytest.raises(ValueError, match="same shape"):
        evaluate.separate_track(lambda x: x[:, :-1], track, CFG)
    with pytest.raises(ValueError, match="Hz"):
        evaluate.separate_track(lambda x: x, track, STFTConfig(sample_rate=8000))


# ---------------------------------------------------------------------------------------------------
# evaluate_tracks without museval


def test_evaluate_tracks_magnitude_only_references_and_identity():
    tracks = [_track("a", seed=0), _track("b", seed=1)]
    res = evaluate.evaluate_tracks(
        {"identity": lambda x: x, "half": lambda x: 0.5 * x}, tracks, CFG, with_bss=False
    )
    assert set(res["summary"]) == {"mixture", "oracle_irm", "identity", "half"}
    assert set(res["per_track"]["identity"]) == {"a", "b"}
    s = res["summary"]
    assert s["identity"]["mag_sdr"] == s["mixture"]["mag_sdr"]
    assert s["oracle_irm"]["mag_sdr"] > s["mixture"]["mag_sdr"] + 3.0
    assert s["mixture"]["n_tracks"] == 2
    # independent recomputation of one per-track number: |X| against |V|
    from ncajax.data import _features as features

    v = np.abs(np.asarray(features.stft(tracks[1].vocals, CFG)))
    x = np.abs(np.asarray(features.stft(tracks[1].mixture, CFG)))
    expected = 10 * np.log10(np.sum(v.astype(np.float64) ** 2) / np.sum((v - x) ** 2.0))
    assert res["per_track"]["mixture"]["b"]["mag_sdr"] == pytest.approx(expected, abs=1e-3)
    mean = np.mean([res["per_track"]["half"][k]["mag_sdr"] for k in "ab"])
    assert s["half"]["mag_sdr"] == pytest.approx(mean)


def test_evaluate_tracks_errors_and_silent_vocals():
    track = _track("t1")
    with pytest.raises(ValueError, match=r"'bad'.*'t1'"):
        evaluate.evaluate_tracks({"bad": lambda x: x + np.inf}, [track], CFG, with_bss=False)
    with pytest.raises(ValueError, match="reserved"):
        evaluate.evaluate_tracks({"mixture": lambda x: x}, [track], CFG, with_bss=False)
    silent = _track("quiet", vocals_gain=0.0)
    with pytest.warns(RuntimeWarning, match="silent vocals"):
        res = evaluate.evaluate_tracks({"id": lambda x: x}, [silent], CFG, with_bss=False)
    assert res["summary"]["id"]["mag_sdr"] is None
    assert res["summary"]["id"]["n_tracks"] == 0
    with pytest.warns(RuntimeWarning, match="silent vocals"):
        res = evaluate.evaluate_tracks({"id": lambda x: x}, [silent, track], CFG, with_bss=False)
    assert res["summary"]["id"]["n_tracks"] == 1
    assert res["summary"]["id"]["mag_sdr"] == res["per_track"]["id"]["t1"]["mag_sdr"]


# ---------------------------------------------------------------------------------------------------
# museval (BSS Eval v4): needs ffmpeg to import


def test_bss_eval_without_ffmpeg_is_a_clear_runtime_error(monkeypatch):
    from ncajax.data import _sources as sources

    monkeypatch.setattr(sources, "find_ffmpeg", lambda: None)
    track = _track()
    refs = {"vocals": track.vocals, "accompaniment": track.accompaniment}
    with pytest.raises(RuntimeError, match="ffmpeg"):
        evaluate.bss_eval(refs, refs, RATE)


@pytest.mark.ffmpeg
def test_bss_eval_perfect_and_noisy_estimates():
    track = _track()
    refs = {"vocals": track.vocals, "accompaniment": track.accompaniment}
    perfect = evaluate.bss_eval(refs, refs, RATE)
    assert set(perfect) == {"vocals", "accompaniment"}
    assert set(perfect["vocals"]) == {"SDR", "SIR", "SAR", "ISR"}
    assert perfect["vocals"]["SDR"] > 60.0 and perfect["accompaniment"]["SDR"] > 60.0

    # reference + white noise at a known SNR: BSS Eval SDR is close to that SNR
    rng = np.random.default_rng(5)
    snr_db = 15.0
    noisy = {}
    for t, r in refs.items():
        noise = rng.standard_normal(r.size)
        noise *= np.sqrt(np.sum(r.astype(np.float64) ** 2) / np.sum(noise**2) / 10 ** (snr_db / 10))
        noisy[t] = (r + noise).astype(np.float32)
    scores = evaluate.bss_eval(refs, noisy, RATE)
    # vocals are gated: per-window SNR differs from the global one, so compare accompaniment tightly
    assert scores["accompaniment"]["SDR"] == pytest.approx(snr_db, abs=1.0)
    assert scores["vocals"]["SDR"] == pytest.approx(snr_db, abs=1.5)

    with pytest.raises(ValueError, match="silent"):
        evaluate.bss_eval(refs, {**refs, "vocals": np.zeros_like(track.vocals)}, RATE)
    with pytest.raises(ValueError, match="same"):
        evaluate.bss_eval(refs, {**refs, "vocals": track.vocals[:-1]}, RATE)


@pytest.mark.ffmpeg
def test_evaluate_tracks_bss_order_and_identity_equals_mixture():
    tracks = [_track("a", seed=0), _track("b", seed=1)]
    # identity: iSTFT(|X|, X) = mixture up to float error, so its accompaniment (mixture minus that)
    # is float rounding only, silent by sources.is_silent: BSS Eval cannot score that track
    with pytest.warns(RuntimeWarning, match="estimated accompaniment entirely silent"):
        res = evaluate.evaluate_tracks(
            {"identity": lambda x: x, "scaled": lambda x: 0.999 * x}, tracks, CFG
        )
    s = res["summary"]
    for t in ("vocals", "accompaniment"):
        assert s["oracle_irm"][t]["SDR"] > s["mixture"][t]["SDR"] + 5.0
        assert s["oracle_irm"][t]["SIR"] > s["mixture"][t]["SIR"]
    assert s["identity"]["n_tracks_bss"] == 0 and s["identity"]["vocals"]["SDR"] is None
    # 0.999 x: the vocal estimate is the mixture scaled, and BSS Eval's ratios ignore the scale, so
    # its vocal scores match the mixture's (SAR is ~150 dB for both, artifacts being float rounding
    # only, and not comparable)
    for m in ("SDR", "SIR", "ISR"):
        assert s["scaled"]["vocals"][m] == pytest.approx(s["mixture"]["vocals"][m], abs=0.05)
    assert s["scaled"]["vocals"]["SAR"] > 100.0 and s["mixture"]["vocals"]["SAR"] > 100.0
    assert s["identity"]["mag_sdr"] == s["mixture"]["mag_sdr"]
    assert s["mixture"]["n_tracks_bss"] == 2


@pytest.mark.ffmpeg
def test_evaluate_tracks_silent_estimate_is_left_out_of_bss():
    # A predictor that outputs silence: iSTFT of zeros is exactly zero, which museval cannot score.
    with pytest.warns(RuntimeWarning, match="estimated vocals entirely silent"):
        res = evaluate.evaluate_tracks({"zero": lambda x: 0.0 * x}, [_track("z")], CFG)
    s = res["summary"]["zero"]
    assert s["mag_sdr"] == pytest.approx(0.0, abs=1e-9)  # Σv² / Σ(v - 0)² = 1
    assert s["n_tracks_bss"] == 0 and s["vocals"]["SDR"] is None
    assert res["per_track"]["zero"]["z"]["vocals"]["SDR"] is None
    assert res["summary"]["oracle_irm"]["vocals"]["SDR"] is not None
    for row in res["per_track"]["oracle_irm"].values():
        assert all(
            row[t][m] is not None for t in ("vocals", "accompaniment") for m in evaluate.METRICS
        )


@pytest.mark.ffmpeg
def test_cached_bss_eval_equals_museval_evaluate():
    """The per-track cached path must reproduce museval.evaluate(mode="v4") window by window."""
    museval = bss.import_museval()
    track = _track(seconds=3.0, seed=3)
    rng = np.random.default_rng(4)
    refs = np.stack([track.vocals, track.accompaniment]).astype(np.float64)[..., None]
    ests = np.stack([0.8 * refs[0] + 0.3 * refs[1], 0.9 * refs[1] + 0.2 * refs[0]])
    ests = ests + 0.01 * rng.standard_normal(ests.shape)
    ests[0, RATE : 2 * RATE] = 0.0  # a silent estimate window: NaN in museval, NaN here
    expected = museval.evaluate(refs, ests, win=RATE, hop=RATE, mode="v4")
    got = bss.BSSReferences(refs, RATE, 1.0, 1.0).evaluate(ests)
    for value, m in zip(expected, ("SDR", "ISR", "SIR", "SAR"), strict=True):
        np.testing.assert_allclose(got[m], value, rtol=0, atol=1e-8)
    assert np.isnan(got["SDR"][:, 1]).all() and np.isfinite(got["SDR"][:, [0, 2]]).all()
    # the public function is the median over windows of the same numbers, NaN windows ignored
    public = evaluate.bss_eval(
        {"vocals": refs[0, :, 0], "accompaniment": refs[1, :, 0]},
        {"vocals": ests[0, :, 0], "accompaniment": ests[1, :, 0]},
        RATE,
    )
    assert public["vocals"]["SDR"] == pytest.approx(np.nanmedian(expected[0][0]), abs=1e-8)
    assert public["accompaniment"]["SAR"] == pytest.approx(np.nanmedian(expected[3][1]), abs=1e-8)
