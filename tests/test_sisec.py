"""ncajax.separation: nSDR against closed forms, bad input refused before anything is written, museval reads
the JSON back, the real MUSDB18 track in stereo at 44.1 kHz, and the trained-model path is
ncajax-separate's."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf

from ncajax import config
from ncajax.cli import _sisec as sisec_cli
from ncajax.separation import _separate as separate
from ncajax.separation import _sisec as sisec
from ncajax.training import _train as train

RATE = 8000


def _stereo_track(name="synth", seconds=3.0, seed=0, subset="test"):
    """A gated harmonic "voice" panned left plus stereo noise "accompaniment", float32 (n, 2)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    gate = (np.sin(2 * np.pi * 1.5 * t) > -0.3).astype(np.float64)
    voice = sum(0.3 / k * np.sin(2 * np.pi * 330.0 * k * t) for k in (1, 2, 3)) * gate
    vocals = np.stack([voice, 0.5 * voice], axis=1).astype(np.float32)
    acc = (0.1 * rng.standard_normal((t.size, 2))).astype(np.float32)
    return sisec.StereoTrack(name, RATE, vocals + acc, vocals, acc, subset=subset, source=f"{name}.wav")


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else None


# ----------------------------------------------------------------------------------------------- nSDR


def test_nsdr_closed_forms():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((5000, 2))
    for target_db in (-3.0, 0.0, 12.5):
        e = rng.standard_normal(s.shape)
        e *= math.sqrt(np.sum(s**2) / np.sum(e**2) / 10 ** (target_db / 10))  # ||e||^2 known
        assert sisec.nsdr(s, s + e) == pytest.approx(target_db, abs=1e-9)
    # ŝ = a s  ->  -20 log10 |1 - a|: a gain costs (no distortion filter, unlike BSS Eval)
    assert sisec.nsdr(s, 0.5 * s) == pytest.approx(20 * math.log10(2), abs=1e-9)
    assert sisec.nsdr(s, np.zeros_like(s)) == pytest.approx(0.0, abs=1e-12)
    assert sisec.nsdr(s, s) == math.inf
    assert sisec.nsdr(np.zeros_like(s), s) == -math.inf
    # whole track, all channels pooled: not the mean of per-channel values
    two = np.stack([s[:, 0], 10 * s[:, 1]], axis=1)
    err = np.stack([s[:, 0], s[:, 1]], axis=1)
    expected = 10 * math.log10(np.sum(two**2) / np.sum(err**2))
    assert sisec.nsdr(two, two + err) == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError, match="same shape"):
        sisec.nsdr(s, s[:, :1])
    with pytest.raises(ValueError, match="NaN"):
        sisec.nsdr(s, np.full_like(s, np.nan))


# ----------------------------------------------------------------------------------------------- bad input


def test_bad_tracks_and_foreign_folder_write_nothing(tmp_path):
    out = tmp_path / "out"
    base = sisec.mixture_baseline()
    good = _stereo_track()
    mono_vocals = sisec.StereoTrack("m", RATE, good.mixture, good.vocals[:, :1], good.accompaniment,
                                    source="songs/m.wav")
    nan = sisec.StereoTrack("n", RATE, good.mixture.copy(), good.vocals, good.accompaniment,
                            source="songs/n.wav")
    nan.mixture[10, 1] = np.nan
    for bad, match in ((mono_vocals, r"songs/m\.wav: .*differ in shape"), (nan, r"songs/n\.wav: mixture .*NaN")):
        with pytest.raises(ValueError, match=match):
            sisec.evaluate_sisec(base, [good, bad], out)  # the good track first: still nothing written
        assert not out.exists()
    with pytest.raises(ValueError, match="unique"):
        sisec.evaluate_sisec(base, [good, good], out)
    with pytest.raises(ValueError, match="identity"):
        sisec.evaluate_sisec(lambda m, r: {"vocals": m, "accompaniment": m}, [good], out)

    # a folder holding another separator's results
    out.mkdir()
    (out / sisec.SISEC_FILE).write_text(json.dumps({"identity": {"method": "dae_sf/seed0"}}))
    before = _listing(out)
    with pytest.raises(ValueError, match=r"out: already holds SiSEC results of a different separator.*"
                                         r"new output folder"):
        sisec.evaluate_sisec(base, [good], out)
    assert _listing(out) == before
    # museval JSON of unknown origin
    (out / sisec.SISEC_FILE).unlink()
    (out / "test").mkdir()
    (out / "test" / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="no sisec.json"):
        sisec.evaluate_sisec(base, [good], out)


def test_hq_folder_with_mismatched_stems_names_the_file(tmp_path):
    folder = tmp_path / "test" / "song"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for stem in ("mixture", "vocals", "drums", "bass", "other"):
        sf.write(folder / f"{stem}.wav", 0.1 * rng.standard_normal((RATE, 2)), RATE, subtype="FLOAT")
    track = sisec.load_stereo_track(folder)
    assert track.mixture.shape == (RATE, 2) and track.subset == "test" and track.name == "song"
    np.testing.assert_allclose(
        track.accompaniment,
        sum(sf.read(folder / f"{s}.wav", dtype="float32")[0] for s in ("drums", "bass", "other")), atol=1e-6)
    assert [t.name for t in sisec.stereo_tracks(tmp_path, "test", duration=0.5)] == ["song"]
    assert sisec.stereo_tracks(tmp_path, "test", duration=0.5)[0].mixture.shape == (RATE // 2, 2)

    sf.write(folder / "bass.wav", 0.1 * rng.standard_normal((RATE * 2, 2)), RATE * 2, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"song/bass\.wav: 16000 Hz, 2 channel\(s\), but mixture\.wav is "
                                         r"8000 Hz.*re-export"):
        sisec.load_stereo_track(folder)
    sf.write(folder / "bass.wav", 0.1 * rng.standard_normal(RATE), RATE, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"song/bass\.wav: 8000 Hz, 1 channel"):
        sisec.load_stereo_track(folder)
    bad = 0.1 * rng.standard_normal((RATE, 2))
    bad[5] = np.inf
    sf.write(folder / "bass.wav", bad, RATE, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"song/bass\.wav: contains NaN or Inf"):
        sisec.load_stereo_track(folder)


# ----------------------------------------------------------------------------------------------- museval


@pytest.mark.ffmpeg
def test_json_is_museval_json_and_aggregates_like_evalstore(tmp_path):
    import museval
    import simplejson

    tracks = [_stereo_track("a", seed=0), _stereo_track("b", seed=1, seconds=4.0)]
    rng = np.random.default_rng(2)

    def noisy(mixture, rate):  # a fixed estimate: references + noise
        return {"vocals": mixture, "accompaniment": mixture + 0.01 * rng.standard_normal(mixture.shape)}

    out = tmp_path / "run"
    agg = sisec.evaluate_sisec(sisec.named(noisy, method="noisy"), tracks, out)
    assert sorted(p.name for p in (out / "test").iterdir()) == ["a.json", "b.json"]

    # museval's own readers: EvalStore.add_eval_dir (test/**/*.json) and TrackStore with its schema
    store = museval.EvalStore()
    store.add_eval_dir(out)
    table = store.agg_frames_tracks_scores()
    for t in ("vocals", "accompaniment"):
        for m in ("SDR", "SIR", "SAR", "ISR"):
            assert agg[t][m] == pytest.approx(float(table[(t, m)]), abs=1e-9)
    methods = museval.MethodStore()
    methods.add_eval_dir(out)
    assert set(methods.df["track"]) == {"a", "b"}
    scores = simplejson.loads((out / "test" / "a.json").read_text(), allow_nan=True)
    ts = museval.TrackStore("a")
    ts.scores = scores
    ts.validate()
    assert set(ts.df["target"]) == {"vocals", "accompaniment"} and len(ts.df) == 2 * 4 * 3
    # the extra nSDR field, and the per-frame values museval.evaluate gives on the same arrays
    a = tracks[0]
    nsdr_json = {t["name"]: float(t["nSDR"]) for t in scores["targets"]}
    assert nsdr_json["vocals"] == pytest.approx(sisec.nsdr(a.vocals, a.mixture), abs=1e-5)
    assert scores["ncajax"]["rate"] == RATE and scores["ncajax"]["channels"] == 2
    assert agg["vocals"]["nSDR"] == pytest.approx(
        np.median([sisec.nsdr(t.vocals, t.mixture) for t in tracks]), abs=1e-5)
    assert json.loads((out / sisec.AGGREGATE_FILE).read_text())["identity"] == {"method": "noisy"}

    # across runs: a second separator, and a folder of the same separator's other tracks pooled
    out2 = tmp_path / "run2"
    sisec.evaluate_sisec(sisec.mixture_baseline(), tracks[:1], out2)
    out3 = tmp_path / "run3"
    sisec.evaluate_sisec(sisec.mixture_baseline(), tracks[1:], out3)
    runs = sisec.aggregate_runs([out, out2, out3])
    assert set(runs["runs"]) == {"noisy", "mixture"}
    assert runs["runs"]["mixture"]["tracks"] == ["a", "b"]
    both = [runs["runs"][k]["vocals"]["SDR"] for k in ("noisy", "mixture")]
    assert runs["across_runs"]["vocals"]["SDR"]["median"] == pytest.approx(np.median(both))
    assert runs["across_runs"]["n_runs"] == 2
    with pytest.raises(ValueError, match="already in"):
        sisec.aggregate_runs([out2, out2])


@pytest.mark.ffmpeg
def test_real_musdb_excerpt_stereo_mixture_baseline(musdb_sample_root, tmp_path):
    import museval

    path = next((musdb_sample_root / "train").glob("*.stem.mp4"))
    track = sisec.load_stereo_track(path, start=1.0, duration=3.0)
    assert track.rate == 44100 and track.mixture.shape == (3 * 44100, 2) and track.subset == "train"
    out = tmp_path / "mix"
    agg = sisec.evaluate_sisec(sisec.mixture_baseline(), [track], out)
    # independent NumPy nSDR of the mixture as the estimate, per source
    m = track.mixture.astype(np.float64)
    for t in ("vocals", "accompaniment"):
        s = getattr(track, t).astype(np.float64)
        expected = 10 * np.log10(np.sum(s**2) / np.sum((s - m) ** 2))
        assert agg[t]["nSDR"] == pytest.approx(expected, abs=1e-5)
    # BSS Eval v4 on the stereo arrays at 44.1 kHz, 1 s windows, median over windows
    refs = np.stack([track.vocals, track.accompaniment]).astype(np.float64)
    sdr, isr, sir, sar = museval.evaluate(refs, np.stack([m, m]), win=44100, hop=44100, mode="v4")
    assert agg["vocals"]["SDR"] == pytest.approx(np.nanmedian(sdr[0]), abs=1e-4)
    assert agg["accompaniment"]["SIR"] == pytest.approx(np.nanmedian(sir[1]), abs=1e-4)
    assert (out / "train" / f"{track.name}.json").exists()


# ----------------------------------------------------------------------------------------------- the model path


STFT = config.STFTConfig(sample_rate=8000, n_fft=30, win_length=30, hop_length=8)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from test_train import array_cache

    run = tmp_path_factory.mktemp("sisec") / "dae_sf"
    caches = array_cache(256, 0, STFT.n_bins), array_cache(64, 1, STFT.n_bins), array_cache(64, 2, STFT.n_bins)
    train.train_model(config.ModelConfig("dae_sf", STFT.n_bins),
                      config.TrainConfig(learning_rate=3e-3, batch_size=32, max_epochs=1, n_seeds=2),
                      STFT, *caches, run, progress=False)
    return run


@pytest.mark.ffmpeg
def test_model_separator_is_ncajax_separate_and_refuses_another_seed(run_dir, tmp_path):
    track = _stereo_track(seconds=1.0)
    rate = 22050
    rng = np.random.default_rng(3)
    mixture = (0.1 * rng.standard_normal((rate, 2))).astype(np.float32)
    sf.write(tmp_path / "song.wav", mixture, rate, subtype="FLOAT")
    written = separate.separate_file(train.load_trained(run_dir), tmp_path / "song.wav", out=tmp_path,
                                     seed_index=1)
    sep = sisec.model_separator(run_dir, seed_index=1)
    got = sep(mixture, rate)
    for t in ("vocals", "accompaniment"):
        np.testing.assert_array_equal(got[t], sf.read(written[t], dtype="float32", always_2d=True)[0])
    assert sep.identity["method"] == "dae_sf/seed1" and sep.identity["model_rate"] == 8000
    assert sep.notes and "above 4 kHz" in sep.notes[0] and "accompaniment" in sep.notes[0]

    out = tmp_path / "eval"
    sisec.evaluate_sisec(sisec.model_separator(run_dir, seed_index=0), [track], out)
    stamp = (out / "test" / "synth.json").stat().st_mtime_ns
    sisec.evaluate_sisec(sisec.model_separator(run_dir, seed_index=0), [track], out)  # resumes: nothing redone
    assert (out / "test" / "synth.json").stat().st_mtime_ns == stamp
    before = _listing(out)
    with pytest.raises(ValueError, match="different separator"):
        sisec.evaluate_sisec(sep, [track], out)
    assert _listing(out) == before


@pytest.mark.ffmpeg
def test_command_line_mixture_on_hq_folder_and_foreign_folder(tmp_path, capsys):
    root = tmp_path / "hq"
    rng = np.random.default_rng(4)
    for name in ("one", "two"):
        folder = root / "test" / name
        folder.mkdir(parents=True)
        for stem in ("mixture", "vocals", "drums", "bass", "other"):
            sf.write(folder / f"{stem}.wav", 0.1 * rng.standard_normal((2 * RATE, 2)), RATE, subtype="FLOAT")
    out = tmp_path / "mix"
    assert sisec_cli.main(["evaluate", "mixture", "--root", str(root), "--out", str(out), "--duration", "1.5"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["tracks"] == ["one", "two"] and printed["vocals"]["SDR"] is not None
    assert sisec_cli.main(["aggregate", str(out), "--out", str(tmp_path / "agg.json")]) == 0
    assert json.loads((tmp_path / "agg.json").read_text())["runs"]["mixture"]["tracks"] == ["one", "two"]
    capsys.readouterr()
    (out / sisec.SISEC_FILE).write_text(json.dumps({"identity": {"method": "dae/seed0"}}))
    assert sisec_cli.main(["evaluate", "mixture", "--root", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "different separator" in err and str(out) in err


def test_report_labels_the_study_numbers_and_names_the_sisec_path(tmp_path):
    from test_report import make_run, section

    from ncajax.report import _report as report

    md = section(report.build_report(make_run(tmp_path)), "## Separation quality")
    assert "vocals SDR (dB, mono, 8 kHz)" in md
    assert ("mono (channels averaged), at the model's rate (8 kHz, the band up to 4 kHz), on the embedded "
            "synthetic corpus's test songs") in md
    assert "not comparable with published MUSDB18" in md
    assert "ncajax.separation.evaluate_sisec(" in md and "ncajax-sisec evaluate" in md
