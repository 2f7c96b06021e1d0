"""ncajax.separation: the CLI on real audio files against an independent NumPy separation, and bad input."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from ncajax import config, models
from ncajax.cli import _separate as separate_cli
from ncajax.data import _features as features
from ncajax.separation import _separate as separate
from ncajax.training import _train as train

# A tiny STFT so a model trains in a second: n_fft 30 -> N = 16 bins.
STFT = config.STFTConfig(sample_rate=8000, n_fft=30, win_length=30, hop_length=8)
N = STFT.n_bins


from test_train import array_cache  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("sep") / "dae_sf"
    caches = array_cache(256, 0), array_cache(64, 1), array_cache(64, 2)
    train.train_model(
        config.ModelConfig("dae_sf", N),
        config.TrainConfig(learning_rate=3e-3, batch_size=32, max_epochs=1, n_seeds=2),
        STFT, *caches, run, progress=False,
    )
    return run


def tone(n: int, rate: int, seed: int) -> np.ndarray:
    t = np.arange(n) / rate
    noise = np.random.default_rng(seed).standard_normal(n)
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * noise).astype(np.float32)


def numpy_separation(run_dir, mono8k: np.ndarray, seed_index: int) -> np.ndarray:
    """Independent vocals: NumPy forward pass of the dae_sf mask, mixture phase, librosa iSTFT."""
    params = train.load_trained(run_dir).seed_params(seed_index)
    spec = features.stft(mono8k, STFT)
    h = np.abs(spec).astype(np.float64)
    x = h
    for kernel, bias in models.dense_layers(params):
        h = np.maximum(h @ np.asarray(kernel, np.float64) + np.asarray(bias, np.float64), 0)
    return features.istft(x * h, spec, STFT, len(mono8k))


def test_model_rate_matches_numpy_separation(run_dir, tmp_path):
    """--model-rate: every channel at the model's rate equals an independent NumPy separation."""
    stereo = np.stack([tone(22050, 44100, 0), 0.5 * tone(22050, 44100, 1)], axis=1)  # 0.5 s
    sf.write(tmp_path / "song.wav", stereo, 44100, subtype="FLOAT")
    mono = tone(6615, 22050, 2)  # 0.3 s
    sf.write(tmp_path / "voice.flac", mono, 22050)
    mono_read = sf.read(tmp_path / "voice.flac", dtype="float32")[0]

    assert separate_cli.main([str(run_dir), str(tmp_path / "song.wav"), "--seed-index", "1",
                          "--chunk", "7", "--model-rate"]) == 0
    out = tmp_path / "out"
    assert separate_cli.main([str(run_dir), str(tmp_path / "voice.flac"), "--out", str(out),
                          "--model-rate"]) == 0

    cases = [
        (tmp_path / "song", stereo, 44100, 1),
        (out / "voice", mono_read[:, None], 22050, 0),
    ]
    for prefix, source, rate_in, seed in cases:
        vocals, r1 = sf.read(f"{prefix}_vocals.wav", dtype="float32", always_2d=True)
        acc, r2 = sf.read(f"{prefix}_accompaniment.wav", dtype="float32", always_2d=True)
        assert r1 == r2 == STFT.sample_rate and vocals.shape == acc.shape
        assert vocals.shape[1] == source.shape[1]  # channel count kept
        assert abs(len(vocals) / STFT.sample_rate - len(source) / rate_in) <= (
            STFT.hop_length / STFT.sample_rate
        )
        for c in range(source.shape[1]):
            mixture = librosa.resample(source[:, c], orig_sr=rate_in, target_sr=STFT.sample_rate)
            np.testing.assert_allclose(vocals[:, c] + acc[:, c], mixture, atol=1e-6)
            expected = numpy_separation(run_dir, mixture, seed)
            assert np.max(np.abs(expected)) > 1e-3  # the model does not output silence
            np.testing.assert_allclose(vocals[:, c], expected, atol=1e-4)
    # the two seeds are different models: seed selection matters
    other = numpy_separation(run_dir, librosa.resample(
        stereo[:, 0], orig_sr=44100, target_sr=STFT.sample_rate), 0)
    assert np.max(np.abs(other - sf.read(tmp_path / "song_vocals.wav")[0][:, 0])) > 1e-4


def test_mono_input_rate_sums_to_input(run_dir, tmp_path):
    x = tone(11025, 44100, 3)
    sf.write(tmp_path / "a.wav", x, 44100, subtype="FLOAT")
    assert separate_cli.main([str(run_dir), str(tmp_path / "a.wav")]) == 0  # the input's rate: default
    vocals, rate = sf.read(tmp_path / "a_vocals.wav", dtype="float32")
    acc, _ = sf.read(tmp_path / "a_accompaniment.wav", dtype="float32")
    assert rate == 44100 and vocals.ndim == 1 and len(vocals) == len(acc) == len(x)
    np.testing.assert_allclose(vocals + acc, x, atol=1e-6)
    assert np.max(np.abs(vocals)) > 1e-3
    # the old --keep-rate flag is still accepted (a no-op now) and gives the same files
    assert separate_cli.main([str(run_dir), str(tmp_path / "a.wav"), "--keep-rate",
                          "--out", str(tmp_path / "k")]) == 0
    np.testing.assert_array_equal(sf.read(tmp_path / "k" / "a_vocals.wav", dtype="float32")[0],
                                  vocals)


def test_stereo_44k_comes_back_stereo_44k(run_dir, tmp_path):
    """Stereo 44.1 kHz in -> stereo 44.1 kHz out, same length, each pair summing to its channel;
    each channel is separated as if it were a mono file on its own (the documented design)."""
    n, rate = 30870, 44100  # 0.7 s
    t = np.arange(n) / rate
    left = tone(n, rate, 10) + 0.1 * np.sin(2 * np.pi * 6000 * t)  # 6 kHz: above the model's Nyquist
    right = 0.4 * tone(n, rate, 11) + 0.2 * np.sin(2 * np.pi * 220 * t)
    stereo = np.stack([left, right], axis=1).astype(np.float32)
    sf.write(tmp_path / "mix.wav", stereo, rate, subtype="FLOAT")
    for c, name in enumerate(("L", "R")):
        sf.write(tmp_path / f"{name}.wav", stereo[:, c], rate, subtype="FLOAT")
    assert separate_cli.main([str(run_dir), str(tmp_path / "mix.wav"), str(tmp_path / "L.wav"),
                          str(tmp_path / "R.wav"), "--out", str(tmp_path / "out")]) == 0

    info_in = sf.info(tmp_path / "mix.wav")
    vocals, r1 = sf.read(tmp_path / "out" / "mix_vocals.wav", dtype="float32", always_2d=True)
    acc, r2 = sf.read(tmp_path / "out" / "mix_accompaniment.wav", dtype="float32", always_2d=True)
    for target in ("vocals", "accompaniment"):
        info = sf.info(tmp_path / "out" / f"mix_{target}.wav")
        assert (info.samplerate, info.channels, info.frames) == (
            info_in.samplerate, info_in.channels, info_in.frames) == (rate, 2, n)
    assert r1 == r2 == rate and vocals.shape == acc.shape == stereo.shape
    np.testing.assert_allclose(vocals + acc, stereo, atol=1e-6)
    assert np.max(np.abs(vocals)) > 1e-3 and np.max(np.abs(acc)) > 1e-3
    assert np.max(np.abs(vocals[:, 0] - vocals[:, 1])) > 1e-3  # the channels stay distinct
    for c, name in enumerate(("L", "R")):
        alone = sf.read(tmp_path / "out" / f"{name}_vocals.wav", dtype="float32")[0]
        np.testing.assert_allclose(vocals[:, c], alone, atol=1e-6)
    # the vocals are the model-rate estimate resampled back: nothing above 4 kHz, so the 6 kHz
    # partial of the left channel is all in the accompaniment
    spec = np.abs(np.fft.rfft(vocals[:, 0]))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    assert spec[freqs > 4500].max() < 1e-2 * spec.max()
    acc_spec = np.abs(np.fft.rfft(acc[:, 0]))
    k6 = np.argmin(np.abs(freqs - 6000))
    assert acc_spec[k6] > 0.9 * np.abs(np.fft.rfft(stereo[:, 0]))[k6]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        (b"this is not audio at all" * 10, "not a readable audio file"),
        ("empty", "zero-length"),
        ("nan", "NaN or Inf"),
        ("folder", "holds no audio files"),
    ],
)
def test_bad_input_exit_2_one_line(run_dir, tmp_path, capsys, content, message):
    path = tmp_path / "bad.wav"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "empty":
        sf.write(path, np.zeros(0, np.float32), 8000)
    elif content == "nan":
        sf.write(path, np.array([0.1, np.inf, np.nan, 0.2], np.float32), 8000, subtype="FLOAT")
    elif content == "folder":
        path.mkdir()
    assert separate_cli.main([str(run_dir), str(path)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and message in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "bad_vocals.wav").exists()


def test_bad_run_dir_and_seed_index(run_dir, tmp_path, capsys):
    x = tone(800, 8000, 4)
    sf.write(tmp_path / "a.wav", x, 8000)
    assert separate_cli.main([str(tmp_path / "norun"), str(tmp_path / "a.wav")]) == 2
    assert "not a training run directory" in capsys.readouterr().err
    assert separate_cli.main([str(run_dir), str(tmp_path / "a.wav"), "--seed-index", "2"]) == 2
    assert "holds 2 seed(s)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        separate_cli.main([str(run_dir), str(tmp_path / "a.wav"), "--chunk", "0"])
    assert exc.value.code == 2
    # one bad file among good ones: the good one is still separated, the exit code says 2
    assert separate_cli.main([str(run_dir), str(tmp_path / "missing.wav"), str(tmp_path / "a.wav")]) == 2
    assert (tmp_path / "a_vocals.wav").exists()


def test_module_help_runs():
    out = subprocess.run([sys.executable, "-c", "import sys; from ncajax.cli import separate_main; sys.exit(separate_main())", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--seed-index" in out.stdout and "--model-rate" in out.stdout


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_same_stem_clash_writes_nothing(run_dir, tmp_path, capsys):
    x = tone(800, 8000, 5)
    sf.write(tmp_path / "tone.flac", x, 8000)
    sf.write(tmp_path / "tone.mp3", x, 8000, format="MP3")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sf.write(tmp_path / "a" / "song.wav", x, 8000)
    sf.write(tmp_path / "b" / "song.wav", x, 8000)
    d = tmp_path / "D"
    for first, second in [(tmp_path / "tone.flac", tmp_path / "tone.mp3"),
                          (tmp_path / "a" / "song.wav", tmp_path / "b" / "song.wav")]:
        assert separate_cli.main([str(run_dir), str(first), str(second), "--out", str(d)]) == 2
        line = one_error_line(capsys)
        assert str(first) in line and str(second) in line and "--out" in line, line
        assert str(d / f"{first.stem}_vocals.wav") in line, line
        assert not d.exists()  # checked before anything is separated or a folder made
    # an output that would overwrite another input is refused too
    sf.write(tmp_path / "tone_vocals.wav", x, 8000)
    assert separate_cli.main([str(run_dir), str(tmp_path / "tone.flac"),
                          str(tmp_path / "tone_vocals.wav")]) == 2
    assert "overwrite the input" in one_error_line(capsys)
    np.testing.assert_allclose(sf.read(tmp_path / "tone_vocals.wav", dtype="float32")[0], x,
                               atol=1e-4)
    # no clash: the same stems in their own folders (no --out); mp3 input is separated
    assert separate_cli.main([str(run_dir), str(tmp_path / "a" / "song.wav"),
                          str(tmp_path / "b" / "song.wav")]) == 0
    assert (tmp_path / "a" / "song_vocals.wav").exists()
    assert (tmp_path / "b" / "song_vocals.wav").exists()
    assert separate_cli.main([str(run_dir), str(tmp_path / "tone.mp3"), "--out", str(d)]) == 0
    vocals, rate = sf.read(d / "tone_vocals.wav", dtype="float32")
    acc, _ = sf.read(d / "tone_accompaniment.wav", dtype="float32")
    mp3 = sf.read(tmp_path / "tone.mp3", dtype="float32")[0]
    assert rate == 8000 and len(vocals) == len(mp3)
    np.testing.assert_allclose(vocals + acc, mp3, atol=1e-6)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_get_umask_permissions(run_dir, tmp_path, mask, mode):
    sf.write(tmp_path / "a.wav", tone(400, 8000, 6), 8000)
    old = os.umask(mask)
    try:
        assert separate_cli.main([str(run_dir), str(tmp_path / "a.wav")]) == 0
    finally:
        os.umask(old)
    for target in ("vocals", "accompaniment"):
        assert stat.S_IMODE((tmp_path / f"a_{target}.wav").stat().st_mode) == mode
    assert not list(tmp_path.glob(".*.tmp"))


def test_study_dir_lists_its_trained_models(tmp_path, capsys):
    study = tmp_path / "default"
    for name in ("dae_sf", "dae", "dae_deep"):
        (study / "train" / name / "checkpoints").mkdir(parents=True)
        (study / "train" / name / "config.json").write_text("{}")
    (study / "mappings").mkdir()
    (study / "mappings" / "config.json").write_text("{}")  # not a trained model: not listed
    sf.write(tmp_path / "a.wav", tone(400, 8000, 7), 8000)
    assert separate_cli.main([str(study), str(tmp_path / "a.wav")]) == 2
    models_found = ", ".join(str(study / "train" / n) for n in ("dae", "dae_deep", "dae_sf"))
    expected = f"{study} is a study directory; pass one of its trained models: {models_found}"
    assert one_error_line(capsys).endswith(expected)
    assert separate_cli.main([str(study / "train"), str(tmp_path / "a.wav")]) == 2
    assert f"pass one of its trained models: {models_found}" in one_error_line(capsys)
    assert not (tmp_path / "a_vocals.wav").exists()


# ------------------------------------------------------------------ progress, folders, band, bad input


def test_progress_bars_over_files_and_frames(run_dir, tmp_path, capsys, monkeypatch):
    """--progress: one bar over the files and one per file over its STFT frames, advanced one
    --chunk at a time; without a terminal (and with --no-progress) no bar is drawn."""
    sf.write(tmp_path / "a.wav", tone(800, 8000, 20), 8000, subtype="FLOAT")  # 1 + 800 // 8 = 101 frames
    stereo = np.stack([tone(400, 8000, 21), tone(400, 8000, 22)], axis=1)  # 2 x 51 frames
    sf.write(tmp_path / "b.wav", stereo, 8000, subtype="FLOAT")
    bars = []

    class Recording(separate.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.updates = []
            bars.append(self)

        def update(self, n=1):
            self.updates.append(n)
            return super().update(n)

    monkeypatch.setattr(separate, "tqdm", Recording)  # the bar over frames
    monkeypatch.setattr(separate_cli, "tqdm", Recording)  # the bar over files
    args = [str(run_dir), str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--chunk", "7"]
    assert separate_cli.main([*args, "--progress"]) == 0
    files, frames_a, frames_b = bars
    assert (files.unit, files.total, files.n) == ("file", 2, 2)
    assert (frames_a.unit, frames_a.total) == ("frame", 101)
    assert frames_a.updates == [7] * 14 + [3] and frames_a.n == 101
    assert frames_b.total == 102 and frames_b.updates == ([7] * 7 + [2]) * 2
    err = capsys.readouterr().err
    assert "separate" in err and "2/2" in err and "0/101" in err
    for flags in ([], ["--no-progress"]):  # capsys' stderr is no terminal: no bar by default
        bars.clear()
        assert separate_cli.main([*args, *flags]) == 0
        assert all(bar.disable for bar in bars) and capsys.readouterr().err == ""


def test_folder_separates_every_audio_file_into_its_own_subfolder(run_dir, tmp_path, capsys):
    album = tmp_path / "album"
    album.mkdir()
    inputs = {"one.wav": tone(800, 8000, 30), "two.flac": tone(640, 8000, 31),
              "three.MP3": tone(800, 8000, 32)}
    for name, x in inputs.items():
        sf.write(album / name, x, 8000, format="MP3" if name.endswith("MP3") else None)
    (album / "notes.txt").write_text("not audio")
    sf.write(album / ".hidden.wav", tone(400, 8000, 33), 8000)
    (album / "sub").mkdir()
    sf.write(album / "sub" / "deeper.wav", tone(400, 8000, 34), 8000)

    assert separate_cli.main([str(run_dir), str(album), "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["one", "three", "two"]
    for name in inputs:
        stem = Path(name).stem
        assert sorted(p.name for p in (out / stem).iterdir()) == ["accompaniment.wav", "vocals.wav"]
        source = sf.read(album / name, dtype="float32")[0]
        vocals = sf.read(out / stem / "vocals.wav", dtype="float32")[0]
        acc = sf.read(out / stem / "accompaniment.wav", dtype="float32")[0]
        assert len(vocals) == len(source) and np.max(np.abs(vocals)) > 1e-3
        np.testing.assert_allclose(vocals + acc, source, atol=1e-6)
    assert f"{album / 'one.wav'}: wrote {out / 'one' / 'vocals.wav'}" in capsys.readouterr().out
    # without --out: the sub-folders go into the input folder itself; a re-run reads only the files
    assert separate_cli.main([str(run_dir), str(album)]) == 0
    assert (album / "two" / "vocals.wav").is_file() and not (album / "sub" / "deeper").exists()
    assert separate_cli.main([str(run_dir), str(album)]) == 0
    assert sorted(p.name for p in album.iterdir()) == sorted(
        [*inputs, "notes.txt", ".hidden.wav", "sub", "one", "two", "three"])


def test_folder_clash_and_folder_without_audio_write_nothing(run_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "cover.jpg").write_bytes(b"\xff\xd8 not audio")
    (empty / "sub").mkdir()
    sf.write(empty / "sub" / "song.wav", tone(400, 8000, 40), 8000)
    sf.write(tmp_path / "good.wav", tone(400, 8000, 41), 8000)
    out = tmp_path / "out"
    assert separate_cli.main([str(run_dir), str(tmp_path / "good.wav"), str(empty),
                          "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert f"{empty}: folder holds no audio files" in line
    assert all(ext in line for ext in (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".mp4")), line
    assert not out.exists() and not (tmp_path / "good_vocals.wav").exists()
    assert sorted(p.name for p in empty.iterdir()) == ["cover.jpg", "sub"]
    # two files of one folder with the same stem would write the same sub-folder: refused
    clash = tmp_path / "clash"
    clash.mkdir()
    sf.write(clash / "song.wav", tone(400, 8000, 42), 8000)
    sf.write(clash / "song.flac", tone(400, 8000, 43), 8000)
    assert separate_cli.main([str(run_dir), str(clash)]) == 2
    line = one_error_line(capsys)
    assert str(clash / "song" / "vocals.wav") in line and "--out" in line
    assert sorted(p.name for p in clash.iterdir()) == ["song.flac", "song.wav"]


def test_band_warning_names_the_cutoff_and_the_training_rate(run_dir, tmp_path, capsys):
    assert separate.band_warning("x.wav", 8000, 8000) is None
    assert separate.band_warning("x.wav", 16000, 44100) is None
    sf.write(tmp_path / "hi.wav", tone(4410, 44100, 50), 44100, subtype="FLOAT")
    sf.write(tmp_path / "lo.wav", tone(800, 8000, 51), 8000, subtype="FLOAT")
    assert separate_cli.main([str(run_dir), str(tmp_path / "hi.wav"), str(tmp_path / "lo.wav")]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"ncajax-separate: warning: {tmp_path / 'hi.wav'}: everything above 4 kHz in this 44.1 kHz "
        "input lands in the accompaniment: the model was trained at 8 kHz, so it hears only up to 4 kHz"
    ]
    assert separate_cli.main([str(run_dir), str(tmp_path / "hi.wav"), "--model-rate",
                          "--out", str(tmp_path / "m")]) == 0
    line = capsys.readouterr().err.strip()
    assert "everything above 4 kHz in this 44.1 kHz input is dropped (--model-rate writes at 8 kHz)" in line
    assert len(line.splitlines()) == 1


@pytest.mark.parametrize("kind", ["silent", "tiny"])
def test_silent_input_is_refused(run_dir, tmp_path, capsys, kind):
    x = np.zeros(800, np.float32) if kind == "silent" else np.full(800, 1e-5, np.float32)  # -100 dBFS
    sf.write(tmp_path / "quiet.wav", x, 8000, subtype="FLOAT")
    assert separate_cli.main([str(run_dir), str(tmp_path / "quiet.wav")]) == 2
    line = one_error_line(capsys)
    assert f"{tmp_path / 'quiet.wav'}: is silent" in line and "nothing to separate" in line
    assert not (tmp_path / "quiet_vocals.wav").exists()
    # a quiet but audible file (-60 dBFS) is separated
    sf.write(tmp_path / "soft.wav", np.full(800, 1e-3, np.float32) * np.sign(tone(800, 8000, 52)),
             8000, subtype="FLOAT")
    assert separate_cli.main([str(run_dir), str(tmp_path / "soft.wav")]) == 0


def test_weights_that_do_not_match_the_model(run_dir, tmp_path, capsys):
    """A run directory whose config.json asks for another model size than its checkpoint holds."""
    import json
    import shutil

    bad_run = tmp_path / "bad_run"
    shutil.copytree(run_dir, bad_run)
    cfg = json.loads((bad_run / "config.json").read_text())
    cfg["model"]["n_bins"] = N + 4
    (bad_run / "config.json").write_text(json.dumps(cfg))
    sf.write(tmp_path / "a.wav", tone(800, 8000, 60), 8000)
    assert separate_cli.main([str(bad_run), str(tmp_path / "a.wav")]) == 2
    line = one_error_line(capsys)
    assert str(bad_run / "checkpoints") in line and "different configuration" in line
    assert f"model.n_bins: expected {N + 4}, found {N}" in line and "matching run directory" in line
    assert not (tmp_path / "a_vocals.wav").exists()


def test_ffmpeg_format_without_ffmpeg_is_one_clear_error(run_dir, tmp_path, capsys, monkeypatch):
    from ncajax.data import _ffmpeg as ffmpeg_module

    monkeypatch.setattr(ffmpeg_module, "find_ffmpeg", lambda: None)
    (tmp_path / "song.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A not read")
    assert separate_cli.main([str(run_dir), str(tmp_path / "song.m4a")]) == 2
    line = one_error_line(capsys)
    assert f"{tmp_path / 'song.m4a'}: reading .m4a files needs ffmpeg" in line
    assert "apt-get install ffmpeg" in line and "convert the file to wav or flac" in line
    assert not (tmp_path / "song_vocals.wav").exists()


def _ffmpeg() -> str:
    from ncajax.data._ffmpeg import find_ffmpeg

    return find_ffmpeg()


@pytest.mark.ffmpeg
def test_m4a_and_corrupt_m4a_through_ffmpeg(run_dir, tmp_path, capsys):
    stereo = np.stack([tone(22050, 44100, 70), 0.5 * tone(22050, 44100, 71)], axis=1)
    sf.write(tmp_path / "src.wav", stereo, 44100, subtype="FLOAT")
    subprocess.run([_ffmpeg(), "-nostdin", "-v", "error", "-i", str(tmp_path / "src.wav"), "-c:a", "aac",
                    str(tmp_path / "song.m4a")], check=True, timeout=120)
    decoded, rate = separate.read_audio(tmp_path / "song.m4a", mono=False)
    assert rate == 44100 and decoded.shape[1] == 2 and abs(len(decoded) - 22050) < 4096
    assert np.corrcoef(decoded[1024:20000, 0], stereo[1024:20000, 0])[0, 1] > 0.5  # the audio, not noise
    assert separate_cli.main([str(run_dir), str(tmp_path / "song.m4a"), "--no-progress"]) == 0
    vocals, r = sf.read(tmp_path / "song_vocals.wav", dtype="float32", always_2d=True)
    acc = sf.read(tmp_path / "song_accompaniment.wav", dtype="float32", always_2d=True)[0]
    assert r == 44100 and vocals.shape == decoded.shape
    np.testing.assert_allclose(vocals + acc, decoded, atol=1e-6)
    capsys.readouterr()
    (tmp_path / "bad.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + b"garbage" * 50)
    assert separate_cli.main([str(run_dir), str(tmp_path / "bad.m4a")]) == 2
    line = one_error_line(capsys)
    assert f"{tmp_path / 'bad.m4a'}: not a readable audio file" in line and "convert it to wav" in line
    assert not (tmp_path / "bad_vocals.wav").exists()


@pytest.mark.ffmpeg
def test_stem_mp4_in_a_folder_separates_its_mixture(run_dir, tmp_path, musdb_sample_root):
    """A MUSDB18 .stem.mp4 in a folder: its first stream (the mixture) is separated, into a sub-folder
    named without `.stem.mp4`."""
    from ncajax.data import _sources as sources

    sample = next(musdb_sample_root.glob("train/*.stem.mp4"))
    name = sample.name[: -len(".stem.mp4")]
    folder = tmp_path / "stems"
    folder.mkdir()
    (folder / sample.name).symlink_to(sample)
    assert separate_cli.main([str(run_dir), str(folder), "--out", str(tmp_path / "out")]) == 0
    vocals, rate = sf.read(tmp_path / "out" / name / "vocals.wav", dtype="float32", always_2d=True)
    acc = sf.read(tmp_path / "out" / name / "accompaniment.wav", dtype="float32", always_2d=True)[0]
    mixture = sources.load_track(sources.TrackRef(name, str(sample), "stem"), 44100).mixture
    assert rate == 44100 and vocals.shape == (len(mixture), 2)
    np.testing.assert_allclose((vocals + acc).mean(axis=1), mixture, atol=1e-4)
