"""ncajax.cli: every command line turns a bad input into one `error:` line and exit code 2, no traceback.

The rows of README's "What can go wrong" table that a command line can trigger cheaply run through
real subprocesses (`sys.executable experiments/<script>.py ...`, `ncajax.cli.separate_main`), all started at
once and awaited together (jax start-up costs a few seconds each); the rows that need a long run
(diverged training, NaN features, a checkpoint of another config) go through the handler in-process
with the library's own messages. `--debug` / NCAJAX_DEBUG=1 show the traceback instead.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ncajax import config
from ncajax.cli import _errors as cli
from ncajax.training import _train as train

REPO = Path(__file__).resolve().parents[1]
STEMS = ("mixture", "vocals", "drums", "bass", "other")
TIMEOUT_S = 240


def hq_track(folder: Path, *, n: int = 8000, rate: int = 8000, skip=(), lengths=None, seed=0):
    """An MUSDB18-HQ track folder of noise stems (mixture = sum), optionally broken."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    stems = {s: 0.1 * rng.standard_normal(n).astype(np.float32) for s in STEMS[1:]}
    stems["mixture"] = sum(stems.values())
    for name in STEMS:
        if name in skip:
            continue
        x = stems[name][: (lengths or {}).get(name, n)]
        sf.write(folder / f"{name}.wav", x, rate, subtype="FLOAT")


def script(name: str, *args) -> tuple[str, list[str]]:
    return name, [str(a) for a in args]


def separate_cmd(*args) -> tuple[str, list[str]]:
    return "separate", [str(a) for a in args]


def command(target: str, args: list[str]) -> list[str]:
    """The real command line: `python experiments/<target>.py ...` or `ncajax-separate ...` (its entry point `ncajax.cli.separate_main`)."""
    if target == "separate":
        return [sys.executable, "-c", "import sys; from ncajax.cli import separate_main; sys.exit(separate_main())", *args]
    return [sys.executable, str(REPO / "experiments" / f"{target}.py"), *args]


def entry_point(target: str):
    """The `main` that the command line of `target` runs (loaded from its file, for in-process runs)."""
    if target == "separate":
        from ncajax.cli import _separate as separate

        return separate.main
    spec = importlib.util.spec_from_file_location(
        f"_exp_{target}", REPO / "experiments" / f"{target}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses (flax modules) look their module up there
    spec.loader.exec_module(module)
    return module.main


def build_cases(tmp: Path, run_dir: Path | None) -> dict[str, tuple[tuple, dict, list[str]]]:
    """{case: ((target, args), extra env, substrings the error line must hold)}; builds the bad
    inputs under `tmp`."""
    missing_stem = tmp / "missing_stem"
    hq_track(missing_stem / "train" / "a", skip=("drums",))
    hq_track(missing_stem / "test" / "b")
    mismatch = tmp / "mismatch"
    hq_track(mismatch / "train" / "a", lengths={"bass": 7000})
    hq_track(mismatch / "test" / "b")
    corrupt = tmp / "corrupt"
    hq_track(corrupt / "train" / "a")
    hq_track(corrupt / "test" / "b")
    (corrupt / "train" / "a" / "vocals.wav").write_bytes(b"RIFF garbage, not a wav" * 20)
    (tmp / "empty").mkdir()
    neither = tmp / "neither"
    (neither / "train").mkdir(parents=True)
    (neither / "train" / "notes.txt").write_text("no audio here")
    stems_root = tmp / "stems"
    for subset in ("train", "test"):
        (stems_root / subset).mkdir(parents=True)
        (stems_root / subset / f"{subset}.stem.mp4").write_bytes(b"not an mp4")
    no_ffmpeg_path = tmp / "bin"  # an empty PATH: no system ffmpeg; the bundled one is switched off
    no_ffmpeg_path.mkdir()
    # a valid tiny HQ dataset and a train dir holding another config for `dae`
    good = tmp / "good"
    for i, subset in enumerate(("train", "train", "train", "test")):
        hq_track(good / subset / f"t{i}", seed=i)
    clash = tmp / "clash_train"
    (clash / "dae").mkdir(parents=True)
    (clash / "dae" / "config.json").write_text('{"model": {"name": "dae", "n_bins": 7}}')
    (tmp / "bad.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A " + b"\x00" * 64)
    sf.write(tmp / "ok.wav", np.zeros(800, np.float32), 8000)
    out = tmp / "out"
    return {
        "reproduce: dataset root does not exist": (
            script("reproduce", "--musdb-root", "/nonexistent/musdb", "--out", out / "r1"), {},
            ["/nonexistent/musdb", "does not exist"]),
        "train_separators: dataset root is empty": (
            script("train_separators", "--musdb-root", tmp / "empty", "--out", out / "t1"), {},
            [str(tmp / "empty"), "is empty"]),
        "fit_mappings: neither dataset layout": (
            script("fit_mappings", "--musdb-root", neither, "--out", out / "f1"), {},
            [str(neither), "is in neither dataset layout"]),
        "evaluate_separation: track missing a stem": (
            script("evaluate_separation", "--musdb-root", missing_stem, "--is-wav", "--no-bss",
                   "--out", out / "e1"), {},
            [str(missing_stem / "train" / "a"), "is missing stem(s) ['drums']"]),
        "reproduce: stems of different lengths": (
            script("reproduce", "--musdb-root", mismatch, "--is-wav", "--out", out / "r2"), {},
            [str(mismatch / "train" / "a"), "stems have different lengths"]),
        "train_separators: corrupt audio file": (
            script("train_separators", "--musdb-root", corrupt, "--is-wav", "--out", out / "t2"), {},
            [str(corrupt / "train" / "a" / "vocals.wav"), "corrupt or unreadable"]),
        "reproduce: ffmpeg not found": (
            script("reproduce", "--musdb-root", stems_root, "--out", out / "r3"),
            {"PATH": str(no_ffmpeg_path), "NCAJAX_NO_BUNDLED_FFMPEG": "1"},
            ["ffmpeg/ffprobe not found"]),
        "train_separators: run dir with a different config": (
            script("train_separators", "--musdb-root", good, "--is-wav", "--models", "dae",
                   "--epochs", "1", "--seeds", "1", "--out", clash), {},
            [str(clash / "dae"), "already holds a run with a different config"]),
        "reproduce: unknown STFT preset": (
            script("reproduce", "--preset", "bogus", "--out", out / "r4"), {},
            ["unknown STFT preset 'bogus'", "choose one of"]),
        "reproduce: fewer fit frames than bins": (
            script("reproduce", "--preset", "mid", "--fit-frames", "300", "--out", out / "r5"), {},
            ["--fit-frames 300", "N = 513", "underdetermined", "use --fit-frames 2304 or more"]),
        "fit_mappings: Jacobian chunk too large for memory": (
            script("fit_mappings", "--preset", "paper", "--jacobian-chunk", "100000", "--out", out / "f2"), {},
            ["--jacobian-chunk 100000 cannot fit in memory", "use --jacobian-chunk 31"]),
        "map_your_model: epochs must be positive": (
            script("map_your_model", "--epochs", "0", "--out", out / "m1"), {},
            ["--epochs must be a positive integer"]),
        "make_figures: run directory does not exist": (
            script("make_figures", "--run-dir", tmp / "norun", "--out", out / "fig"), {},
            ["run directory", str(tmp / "norun"), "does not exist"]),
        "separate: not a run directory": (
            separate_cmd(tmp / "norun", tmp / "ok.wav"), {},
            [str(tmp / "norun"), "not a training run directory"]),
        "separate: unreadable audio file": (
            separate_cmd(run_dir or tmp / "norun", tmp / "bad.m4a", "--out", out / "s1"), {},
            [str(tmp / "bad.m4a"), "not a readable audio file"]),
    }


# A few real subprocesses (3-4 s of CPU each for the jax start-up; the machine has 2 cores) ...
SUBPROCESS_CASES = [
    "reproduce: dataset root does not exist",
    "train_separators: corrupt audio file",
    "evaluate_separation: track missing a stem",
    "separate: unreadable audio file",
]
# ... and the other rows through the same scripts' `main` and the handler, in this process
# (test_every_entry_point_uses_the_handler checks that each script's __main__ goes through it).
INPROCESS_CASES = [
    "fit_mappings: neither dataset layout",
    "map_your_model: epochs must be positive",
    "make_figures: run directory does not exist",
    "train_separators: dataset root is empty",
    "reproduce: stems of different lengths",
    "reproduce: ffmpeg not found",
    "train_separators: run dir with a different config",
    "reproduce: unknown STFT preset",
    "reproduce: fewer fit frames than bins",
    "fit_mappings: Jacobian chunk too large for memory",
    "separate: not a run directory",
]

DEBUG_CASES = {
    "--debug": (lambda tmp: script("reproduce", "--musdb-root", "/nonexistent/musdb", "--debug",
                                   "--out", tmp / "out" / "d1"), {}, "FileNotFoundError"),
    "NCAJAX_DEBUG=1": (lambda tmp: separate_cmd(tmp / "norun", tmp / "ok.wav"),
                       {"NCAJAX_DEBUG": "1"}, "not a training run directory"),
}


def tiny_run(run: Path) -> Path:
    from test_train import array_cache

    stft = config.STFTConfig(sample_rate=8000, n_fft=30, win_length=30, hop_length=8)
    train.train_model(
        config.ModelConfig("dae_sf", stft.n_bins),
        config.TrainConfig(learning_rate=3e-3, batch_size=32, max_epochs=1, n_seeds=1),
        stft, array_cache(64, 0), array_cache(32, 1), array_cache(32, 2), run, progress=False,
    )
    return run


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Start every command at once, wait for all: {case: (CompletedProcess-like, expected)}."""
    tmp = tmp_path_factory.mktemp("cli")
    run_dir = tiny_run(tmp / "run" / "dae_sf")
    cases = build_cases(tmp, run_dir)
    assert sorted(cases) == sorted(SUBPROCESS_CASES + INPROCESS_CASES)
    base_env = {k: v for k, v in os.environ.items() if k != cli.DEBUG_ENV}
    base_env.update(NCAJAX_CACHE=str(tmp / "cache"), PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    jobs = {}
    all_cases = {**{k: cases[k] for k in SUBPROCESS_CASES},
                 **{k: (make(tmp), env, want) for k, (make, env, want) in DEBUG_CASES.items()}}
    for name, (cmd, env, _) in all_cases.items():
        jobs[name] = subprocess.Popen(command(*cmd), cwd=tmp, env={**base_env, **env}, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = {}
    for name, proc in jobs.items():
        try:
            stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        done[name] = (proc.returncode, stdout, stderr, all_cases[name][2])
    return done


def check_error_line(stderr: str, want: list[str]) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("error:", "ncajax-separate: error:"))]
    assert len(errors) == 1, stderr
    for text in want:
        assert text in errors[0], (text, errors[0])


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_bad_input_gives_one_error_line_and_exit_2(results, case):
    code, _, stderr, want = results[case]
    assert code == 2, (code, stderr)
    check_error_line(stderr, want)


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.py")), ids=lambda p: p.name)
def test_every_entry_point_uses_the_handler(path):
    """Every script's `__main__` block runs its main through ncajax.cli (exit code from cli.run)."""
    tail = path.read_text().split('if __name__ == "__main__":')[-1]
    assert "from ncajax import cli" in tail and ("cli.exit(main)" in tail
                                                 or "sys.exit(cli.run_guarded(main))" in tail), tail


@pytest.mark.parametrize("case", INPROCESS_CASES)
def test_bad_input_in_process(tmp_path, monkeypatch, capsys, case):
    """The same scripts' `main` through the handler, without paying a jax start-up per row."""
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    monkeypatch.setenv("NCAJAX_CACHE", str(tmp_path / "cache"))
    (target, args), env, want = build_cases(tmp_path, None)[case]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    main = entry_point(target)
    capsys.readouterr()
    assert cli.run_guarded(main, args) == 2
    check_error_line(capsys.readouterr().err, want)


@pytest.mark.parametrize("case", list(DEBUG_CASES))
def test_debug_shows_the_traceback(results, case):
    code, _, stderr, want = results[case]
    assert code == 1, (code, stderr)  # the uncaught exception's exit status
    assert "Traceback (most recent call last)" in stderr and want in stderr, stderr
    assert not any(ln.startswith("error:") for ln in stderr.splitlines())


# ------------------------------------------------------------------ the handler, in-process


def raising(err: BaseException):
    def main(argv):
        raise err

    return main


@pytest.mark.parametrize("err, text", [
    (FloatingPointError("training loss became non-finite in epoch 3 (lower learning_rate)"),
     "non-finite in epoch 3"),
    (ValueError("fit input x contains NaN or Inf; clean the features before fitting"),
     "clean the features"),
    (ValueError("checkpoint /r/checkpoints was written with a different configuration:\n"
                "  model.n_bins: expected 2049, found 129"), "model.n_bins: expected 2049, found 129"),
    (RuntimeError("museval could not be imported (x); it needs ffmpeg and ffprobe on PATH"),
     "needs ffmpeg"),
    (NotADirectoryError("dataset root '/x' is not a folder"), "is not a folder"),
    (PermissionError(13, "Permission denied", "/srv/out"), "Permission denied: '/srv/out'"),
])
def test_handler_user_errors(capsys, monkeypatch, err, text):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    assert cli.run_guarded(raising(err), []) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], captured.err
    assert "Traceback" not in captured.err


def test_handler_passes_bugs_exit_codes_and_argv(capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    for bug in (KeyError("x"), TypeError("bad"), RuntimeError("XLA: internal error")):
        with pytest.raises(type(bug)):  # not a user error: the traceback stays
            cli.run_guarded(raising(bug), [])
    seen = []
    assert cli.run_guarded(lambda argv: seen.append(argv), ["--a", "--debug", "1"]) == 0  # None -> 0
    assert seen == [["--a", "1"]]  # --debug never reaches the script's parser
    assert cli.run_guarded(lambda argv: 1, []) == 1
    assert cli.run_guarded(lambda argv: {"summary": 1}, []) == 0
    assert cli.strip_debug(["--debug", "--", "--debug"]) == ["--", "--debug"]
    with pytest.raises(SystemExit) as exc:  # argparse's usage errors pass through
        cli.run_guarded(lambda argv: sys.exit(2), [])
    assert exc.value.code == 2
    assert cli.run_guarded(raising(KeyboardInterrupt()), []) == 130
    assert capsys.readouterr().err.strip() == "error: interrupted"
    assert cli.run_guarded(raising(ValueError("bad")), [], prog="tool") == 2
    assert capsys.readouterr().err.strip() == "tool: error: bad"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_handler_debug_reraises(monkeypatch, how):
    argv = ["--debug"] if how == "flag" else []
    if how == "env":
        monkeypatch.setenv(cli.DEBUG_ENV, "1")
    else:
        monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    with pytest.raises(FloatingPointError):
        cli.run_guarded(raising(FloatingPointError("diverged")), argv)
