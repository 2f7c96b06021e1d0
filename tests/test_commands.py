"""The `ncajax` command (ncajax.cli) and the one study config (ncajax.study): every subcommand,
flags with one name and one default everywhere, the config's JSON round trip, --config and the data
options a training run recorded, and the experiments/ wrappers' old spellings."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ncajax import config
from ncajax.cli import _commands as commands
from ncajax.cli import _errors as cli
from ncajax.cli import _separate as separate
from ncajax.nca import _frames as frames
from ncajax.study import _options as options
from ncajax.study import _pipeline as pipeline
from ncajax.study import _study as study
from ncajax.study._options import DataOptions, FitOptions, StudyConfig, TrainOptions

REPO = Path(__file__).resolve().parents[1]
SUBCOMMANDS = ("reproduce", "train", "fit", "evaluate", "figures", "report", "separate", "map")
# Flags whose default is the command's own output location, by design different per subcommand.
PER_COMMAND = {"--out"}


def tyro_flags(name: str) -> dict[str, object]:
    """{flag: default} of a tyro subcommand: its leaf fields (tyro names the flag after the field, without
    the section prefix), each checked to be a flag of the parsed command's --help."""
    cls = commands.COMMANDS[name]
    table = {"--" + k.replace("_", "-"): v for k, v in vars(commands.flat(cls())).items()}
    assert commands.parse(name, []) == cls()  # no --config, no recorded run here: the built-in defaults
    return table


def help_text(name: str, capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        commands.parse(name, ["--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def _flags(parser: argparse.ArgumentParser) -> dict[str, object]:
    out = {}

    def walk(p):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    out[flag] = action.default
    walk(parser)
    return out


def all_flags() -> dict[str, dict[str, object]]:
    flags = {name: tyro_flags(name) for name in commands.RUNNERS}
    flags["separate"] = _flags(separate._parser())
    return flags


def _norm(value):
    """Defaults as comparable values (tyro keeps the field's value; argparse may hold a list)."""
    if isinstance(value, (list, tuple)):
        return tuple(_norm(v) for v in value)
    if isinstance(value, Path):
        return str(value)
    return value


def test_help_lists_every_subcommand(capsys):
    assert commands.main(["--help"]) == 0
    text = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert f"\n  {name} " in text, text
    assert tuple(commands.COMMANDS) == SUBCOMMANDS


def test_installed_console_script_help():
    """The installed `ncajax` script (pip install -e .) lists the subcommands; `python -m` as a fallback."""
    exe = shutil.which("ncajax", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "ncajax.cli"]
    out = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert all(name in out.stdout for name in SUBCOMMANDS)


def test_shared_flags_have_one_name_and_one_default(capsys, monkeypatch, tmp_path):
    """Every flag that several subcommands take has the same default in each (`--out` aside: it is where
    each one writes); the ambiguous old spellings are gone from `ncajax`."""
    monkeypatch.chdir(tmp_path)  # no runs/default/train here whose recorded options would be the defaults
    monkeypatch.setenv("COLUMNS", "400")  # one flag per line in the help
    flags = all_flags()
    for name in commands.RUNNERS:
        text = help_text(name, capsys)
        for flag in flags[name]:
            assert f"{flag} " in text or f"{flag}\n" in text, (name, flag)
    seen: dict[str, tuple[str, object]] = {}
    shared = set()
    for name, table in flags.items():
        for flag, default in table.items():
            if flag in PER_COMMAND:
                continue
            if flag in seen:
                shared.add(flag)
                first, value = seen[flag]
                assert _norm(default) == _norm(value), f"{flag}: {first} {value!r} vs {name} {default!r}"
            else:
                seen[flag] = (name, default)
        assert not {"--lr", "--steps", "--frames", "--student-steps"} & set(table), (name, sorted(table))
    # the study's options and the stage commands share them
    assert {"--preset", "--musdb-root", "--is-wav", "--corpus-seed", "--models", "--fit-steps", "--fit-lr",
            "--fit-frames", "--jacobian-chunk", "--config", "--train-dir", "--seed-index"} <= shared
    for flag in ("--preset", "--musdb-root", "--is-wav", "--corpus-seed", "--corpus-tracks", "--corpus-seconds"):
        assert all(flag in flags[n] for n in ("reproduce", "train", "fit", "evaluate")), flag
    assert "--corpus-seed" in flags["train"] and "--train-lr" in flags["train"] and "--fit-lr" in flags["fit"]


def test_defaults_are_declared_once(monkeypatch, tmp_path):
    """The flags' defaults are the library's constants, and the flat StudyOptions shares them."""
    monkeypatch.chdir(tmp_path)
    fit = tyro_flags("fit")
    assert fit["--fit-steps"] == config.FIT_STEPS and fit["--fit-lr"] == config.FIT_LEARNING_RATE
    assert fit["--heldout-frames"] == config.HELDOUT_FRAMES == config.MappingConfig().heldout_frames_per_song
    assert fit["--fit-frames"] is None  # resolved per preset: config.fit_frames_for
    train = tyro_flags("train")
    assert train["--epochs"] == config.TrainConfig.max_epochs and train["--seeds"] == config.STUDY_SEEDS
    assert TrainOptions().train_config() == config.TrainConfig(n_seeds=config.STUDY_SEEDS)
    assert commands.Map.methods == frames.FRAME_METHODS
    # every field a named recipe sets can be overridden by a flag (and read back from a recorded run)
    recipe_keys = {k for recipe in config.TRAIN_RECIPES.values() for k in recipe}
    assert recipe_keys <= set(options.RECIPE_FIELDS) <= {f.name for f in dataclasses.fields(config.TrainConfig)}
    assert set(options.RECIPE_FIELDS[1:]) <= {f.name for f in dataclasses.fields(TrainOptions)}
    # (real_test: the shared sample beside the repository when it is there, as reproduce.py always chose)
    assert StudyConfig().options() == dataclasses.replace(study.StudyOptions(), train_options=TrainOptions(),
                                                          real_test=options.EvaluateOptions().real_root())
    assert StudyConfig().options().train_config() == study.StudyOptions().train_config()


def study_config() -> StudyConfig:
    return StudyConfig(
        data=DataOptions(preset="mid", corpus_seed=4, corpus_tracks=(3, 3), corpus_seconds=2.0),
        train=TrainOptions(recipe="remix", seeds=3, seed=2, train_lr=3e-4, loss="mse", mask_bias=0.5),
        fit=FitOptions(fit_steps=20, fit_lr=1e-2, fit_frames=600, control_steps=(0, 6, 20), control_seeds=2,
                       extra_settings=True),
        evaluate=options.EvaluateOptions(no_bss=True, real_test="none"),
        figures=options.FigureOptions(figures_dir="figs"), corpora=2, recipe_control=True)


@pytest.mark.parametrize("cfg", [StudyConfig(), study_config()], ids=["defaults", "every-section"])
def test_study_config_round_trips_through_json(cfg, tmp_path):
    back = StudyConfig.from_json(json.loads(json.dumps(cfg.to_json())))
    assert back == cfg
    assert StudyConfig.load(cfg.save(tmp_path / "study.json")) == cfg
    opts = cfg.options()
    assert opts.config().options() == opts  # the flat library form and back
    with pytest.raises(ValueError, match=r"unknown fields for FitOptions: \['fit_step'\]"):
        StudyConfig.from_json({"fit": {"fit_step": 3}})


def test_mapping_config_round_trips_through_from_dict():
    cfg = study_config().options().mapping_config()
    assert cfg.settings and cfg.control_steps == (0, 6, 20)
    for c in (cfg, config.MappingConfig()):
        assert config.from_dict(config.MappingConfig, json.loads(json.dumps(c.to_json()))) == c


def fake_train_run(train_dir: Path, *, corpus=None, musdb=False, train_cfg=None) -> Path:
    """A training run's config.json as train_model writes it (no checkpoints)."""
    corpus = corpus or config.CorpusConfig(seed=4, n_train=3, n_test=3, duration=2.0)
    data = ({"dataset": "MUSDB18", "is_wav": True, "preset": "mid"} if musdb else
            {"dataset": "embedded synthetic corpus", "corpus": config.to_dict(corpus), "preset": "fast"})
    train_cfg = train_cfg or config.train_recipe("study", n_seeds=3, seed=2, max_epochs=4)
    path = train_dir / "dae" / "config.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"model": {"name": "dae", "n_bins": 129, "hidden": None},
                                "train": config.to_dict(train_cfg), "stft": config.to_dict(config.preset("fast")),
                                "data": data, "normalisation": None}))
    return path


def test_later_stages_read_the_training_runs_data_options(tmp_path):
    run = fake_train_run(tmp_path / "train")
    for name in ("fit", "evaluate"):
        cmd = commands.parse(name, ["--train-dir", str(tmp_path / "train")])
        assert (cmd.data.corpus_seed, cmd.data.corpus_tracks, cmd.data.corpus_seconds) == (4, (3, 3), 2.0)
        assert cmd.data.corpus_config() == config.CorpusConfig(seed=4, n_train=3, n_test=3, duration=2.0)
    flags = commands.parse("fit", ["--train-dir", str(tmp_path / "train"), "--corpus-seed", "5"])
    assert flags.data.corpus_seed == 5 and flags.data.corpus_tracks == (3, 3)  # a flag given wins
    # a training run's config.json as --config: the data and the training options it recorded
    cmd = commands.parse("train", ["--config", str(run)])
    assert cmd.train.train_config() == config.train_recipe("study", n_seeds=3, seed=2, max_epochs=4)
    assert cmd.data.corpus_seed == 4
    raw = config.train_recipe("raw_mse", n_seeds=2, learning_rate=1e-4, augment_remix=0.25)
    run2 = fake_train_run(tmp_path / "train2", train_cfg=raw)
    assert commands.parse("train", ["--config", str(run2)]).train.train_config() == raw


def test_study_config_file_as_config(tmp_path):
    path = study_config().save(tmp_path / "study.json")
    cmd = commands.parse("fit", ["--config", str(path), "--fit-steps", "7"])
    assert cmd.fit == dataclasses.replace(study_config().fit, fit_steps=7) and cmd.data == study_config().data
    assert commands.parse("reproduce", ["--config", str(path)]).study() == study_config()
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"fit": {"fit_lr": 0.5}}))
    cmd = commands.parse("reproduce", ["--config", str(partial), "--preset", "mid"])
    assert cmd.fit.fit_lr == 0.5 and cmd.fit.fit_steps == config.FIT_STEPS and cmd.data.preset == "mid"
    with pytest.raises(FileNotFoundError, match="--config .*missing.json does not exist"):
        commands.parse("fit", ["--config", str(tmp_path / "missing.json")])


def test_reproduce_records_its_config_and_reruns_from_it(tmp_path, monkeypatch, capsys):
    seen = []

    def fake_run_study(out, opts, log=print):
        seen.append(opts)
        return {"total": 0.0}

    monkeypatch.setattr(study, "run_study", fake_run_study)
    argv = ["--out", str(tmp_path / "r"), "--corpus-seed", "4", "--seeds", "3", "--fit-steps", "20",
            "--fit-frames", "160", "--control-steps", "0", "6", "20", "--no-bss"]
    assert commands.run("reproduce", argv) == 0
    assert commands.run("reproduce", ["--config", str(tmp_path / "r" / commands.STUDY_FILE)]) == 0
    assert seen[0] == seen[1]
    old = study.StudyOptions(seeds=3, fit_steps=20, fit_frames=160, control_steps=(0, 6, 20), with_bss=False,
                             corpus_seed=4)
    assert seen[0].train_config() == old.train_config() and seen[0].mapping_config() == old.mapping_config()
    assert seen[0].corpus_config() == old.corpus_config()
    # the stage commands, run on this study's train dir, resolve the same configs
    fake_train_run(tmp_path / "r" / "train", corpus=old.corpus_config(),
                   train_cfg=old.train_config())
    cmd = commands.parse("fit", ["--train-dir", str(tmp_path / "r" / "train"), "--fit-steps", "20", "--fit-frames",
                                 "160", "--control-steps", "0", "6", "20"])
    assert cmd.fit.mapping_config(cmd.data.preset, 3) == old.mapping_config()
    assert cmd.data.corpus_config() == old.corpus_config()


def test_musdb_trained_runs_need_their_root(tmp_path, monkeypatch):
    fake_train_run(tmp_path / "train", musdb=True)

    def no_data(*a, **k):
        raise AssertionError("data prepared before the check")

    monkeypatch.setattr(pipeline, "prepare_data", no_data)
    with pytest.raises(ValueError, match="trained on MUSDB18 .* pass the same --musdb-root"):
        commands.run("fit", ["--train-dir", str(tmp_path / "train")])
    assert commands.parse("evaluate", ["--train-dir", str(tmp_path / "train")]).data.is_wav is True


def test_errors_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    monkeypatch.setenv("NCAJAX_CACHE", str(tmp_path / "cache"))
    assert commands.main(["fit", "--preset", "mid", "--fit-frames", "300", "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --fit-frames 300") and "\n" not in err
    assert commands.main(["separate", str(tmp_path / "norun"), str(tmp_path / "a.wav")]) == 2
    assert capsys.readouterr().err.startswith("ncajax separate: error:")
    with pytest.raises(SystemExit):
        commands.main(["bogus"])
    with pytest.raises(FloatingPointError):  # --debug before the subcommand still reaches it
        monkeypatch.setattr(commands, "run", lambda name, argv: (_ for _ in ()).throw(FloatingPointError("x")))
        commands.main(["--debug", "fit"])


def test_legacy_spellings_of_the_scripts():
    assert commands.legacy_flags(["--steps", "5", "--lr=0.1", "--", "--lr"],
                                 {"--steps": "--fit-steps", "--lr": "--fit-lr"}) == [
        "--fit-steps", "5", "--fit-lr=0.1", "--", "--lr"]
    sys.path.insert(0, str(REPO / "experiments"))
    import map_frames
    import reproduce

    assert map_frames.parse(["--student-steps", "5", "--lr", "0.1", "--seed", "3"]).fit_steps == 5
    assert reproduce.parse(["--preset", "mid", "--fit-lr", "0.1"]).fit_lr == 0.1


def test_map_a_trained_model(tmp_path):
    """`ncajax map --model-dir`: the model computes the estimate; the same matrices as mapping its frames."""
    from test_cli import tiny_run

    run = tiny_run(tmp_path / "run" / "dae_sf")
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (200, 16)).astype(np.float32)
    np.save(tmp_path / "mix.npy", x)
    out = commands.run("map", ["--model-dir", str(run), "--mixture", str(tmp_path / "mix.npy"), "--methods",
                               "lstsq", "jacobian", "--no-figures", "--out", str(tmp_path / "m")])
    assert set(out["methods"]) == {"lstsq", "jacobian"}
    from ncajax.training import _train as train

    trained = train.load_trained(run)
    y = np.asarray(trained.model.apply(trained.seed_params(0), x))
    direct = frames.map_frames(x, y, sample_rate=8000, n_fft=30, methods="lstsq")
    np.testing.assert_allclose(np.load(tmp_path / "m" / "matrices.npz")["lstsq"], direct.matrix("lstsq"),
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="--n-fft 64 differs from the model's STFT"):
        commands.run("map", ["--model-dir", str(run), "--mixture", str(tmp_path / "mix.npy"), "--n-fft", "64"])


def test_the_real_track_default_is_the_shared_folder_beside_the_repository():
    """`--real-test` defaults to ../shared/data/musdb18-sample next to the repository (wherever the module
    defining it sits in the package tree), and an existing sample there is scored by default."""
    from ncajax.study import EvaluateOptions

    repo = Path(__file__).resolve().parents[1]
    expected = repo.parent / "shared" / "data" / "musdb18-sample"
    assert options.REAL_TEST == expected
    if any(expected.glob("*/*.stem.mp4")):
        assert EvaluateOptions().real_root() == str(expected)
