"""The `ncajax` command: one subcommand per stage, every flag generated from the study config.

    ncajax reproduce [--out runs/default] [--preset fast] [--seeds 10] [--fit-steps 3000] ...
    ncajax train     [--out runs/default/train] [data options] [training options] [--models ...]
    ncajax fit       [--train-dir runs/default/train] [--out runs/default/mappings] [data] [fit options]
    ncajax evaluate  [--train-dir runs/default/train] [--out runs/default/evaluation] [data] [--no-bss]
    ncajax figures   [--run-dir runs/default] [--out figures]
    ncajax report    [--run-dir runs/default] [--rung NAME=RUN_DIR ...] [--across-corpora FILE]
    ncajax separate  RUN_DIR AUDIO... [--out DIR]          (the same as ncajax-separate)
    ncajax map       --mixture mix.npy --estimate est.npy --sample-rate 8000 --n-fft 256 [--out DIR]
    ncajax map       --model-dir runs/default/train/dae_sf --mixture mix.npy [--methods lstsq jacobian]
    ncajax separate  dae_sf song.wav; ncajax map --model-dir dae_sf ...   (the shipped models, no training)

The flags of every subcommand but `separate` come from the fields of `ncajax.study` (tyro), so a flag
has one name, one meaning and one default everywhere (`--fit-steps` in reproduce, fit and map; `--lr`
is gone: `--train-lr` trains, `--fit-lr` fits). `ncajax <command> --help` lists them with their defaults.

Defaults come, in this order of precedence: the flags given; `--config FILE` (a study config,
`<run>/study.json` as `ncajax reproduce` writes it, any subset of its sections; or a training run's
`config.json`, whose data and training options are taken); for `fit` and `evaluate`, the data options
the training run under `--train-dir` recorded (preset, corpus seed and size, MUSDB18 layout), so a
`--corpus-seed 4` study is rerun one stage at a time without repeating its data flags; then the
built-in defaults of `ncajax.study`.

Errors are one `error: ...` line and exit code 2 (`ncajax.cli`); `--debug` shows the traceback.
`run(name, argv)` runs one subcommand and raises (what the `experiments/*.py` wrappers call);
`main(argv)` is the console script.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import tyro

from ..config import (
    DIAGONAL_BAND_HZ,
    FIT_LEARNING_RATE,
    FIT_STEPS,
    MODEL_NAMES,
    CorpusConfig,
    TrainConfig,
    from_dict,
)
from ..study._options import (
    DataOptions,
    EvaluateOptions,
    FigureOptions,
    FitOptions,
    ModelName,
    StudyConfig,
    TrainOptions,
)
from . import _errors as cli

PROG = "ncajax"
RUN_DIR = "runs/default"  # the default study directory; the stage directories lie under it
STUDY_FILE = "study.json"  # the StudyConfig of the last `ncajax reproduce` into a run directory
TYRO_CONFIG = (tyro.conf.OmitArgPrefixes, tyro.conf.FlagCreatePairsOff)

ConfigFile = Annotated[str | None, tyro.conf.arg(help=(
    f"a study config (<run>/{STUDY_FILE}, any subset of its sections) or a training run's config.json "
    "(its data and training options): its values become the defaults, flags given still win"))]
Models = Annotated[tuple[ModelName, ...], tyro.conf.arg(help="models to train, fit or evaluate")]


@dataclasses.dataclass(frozen=True)
class Reproduce(StudyConfig):
    """The whole study: data, training, mapping fits, evaluation, figures and REPORT.md with the verdict,
    each stage skipped when its outputs exist for the same config (writes <out>/study.json)."""

    out: str | None = None
    """run directory (default runs/default, or runs/corpus<seed>)"""
    config: ConfigFile = None

    def study(self) -> StudyConfig:
        return StudyConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(StudyConfig)})


@dataclasses.dataclass(frozen=True)
class Train:
    """Train the separators (all seeds of a model in one vmapped program) into <out>/<model>/."""

    out: str = f"{RUN_DIR}/train"
    """where each model's run directory goes"""
    config: ConfigFile = None
    models: Models = MODEL_NAMES
    data: DataOptions = DataOptions()
    train: TrainOptions = TrainOptions()


@dataclasses.dataclass(frozen=True)
class Fit:
    """Fit the mapping functions of the trained separators on the training songs, judged on unseen test
    songs (NCA at the authors' settings and converged, linear student, least squares, mean Jacobian)."""

    train_dir: str = f"{RUN_DIR}/train"
    """the training stage's directory (its recorded data options are the defaults)"""
    out: str = f"{RUN_DIR}/mappings"
    """where the mapping stage writes"""
    config: ConfigFile = None
    models: Models = MODEL_NAMES
    data: DataOptions = DataOptions()
    fit: FitOptions = FitOptions()


@dataclasses.dataclass(frozen=True)
class Evaluate:
    """Separation quality of the trained separators: museval SDR/SIR/SAR and magnitude SDR on the test
    songs (and the real MUSDB18 track), beside the mixture and the oracle IRM."""

    train_dir: str = f"{RUN_DIR}/train"
    """the training stage's directory (its recorded data options are the defaults)"""
    out: str = f"{RUN_DIR}/evaluation"
    """where the evaluation stage writes"""
    config: ConfigFile = None
    models: Models = MODEL_NAMES
    data: DataOptions = DataOptions()
    evaluate: EvaluateOptions = EvaluateOptions()


@dataclasses.dataclass(frozen=True)
class Figures:
    """Draw every figure of a (partly) finished study run from its saved results alone (PNG + PDF)."""

    run_dir: str = RUN_DIR
    """study run directory (ncajax reproduce --out)"""
    out: str = "figures"
    """where the PNG and PDF files go"""


@dataclasses.dataclass(frozen=True)
class Report:
    """Write REPORT.md, conclusion.json and summary.json of a finished study run from its saved numbers;
    with --rung, the first rung's report with a Resolution section comparing every rung."""

    run_dir: str = RUN_DIR
    """study run directory (ignored when --rung is given: the first rung's report is written)"""
    rung: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """NAME=RUN_DIR, a finished study run of one preset (repeat the flag for each rung)"""
    across_corpora: str | None = None
    """across_corpora.json of a --corpora study, for the across-corpora section"""
    figures: FigureOptions = FigureOptions()


@dataclasses.dataclass(frozen=True)
class Map:
    """Map any separator from its frames: mixture and estimate magnitude frames (.npy/.npz, from any
    framework), or a trained ncajax model (--model-dir) run on the mixture frames."""

    mixture: str | None = None
    """the mixture frames (.npy/.npz), or one .npz holding both mixture and estimate"""
    estimate: str | None = None
    """the separator's output frames (.npy/.npz)"""
    model_dir: str | None = None
    """a training run directory (e.g. runs/default/train/dae_sf) or the name of a model shipped with ncajax
    (dae, dae_deep, dae_sf): its model computes the estimate (and allows --methods jacobian); the STFT
    defaults to the run's"""
    seed_index: int = 0
    """which seed of --model-dir's run"""
    sample_rate: float | None = None
    """sample rate (Hz) of the frames' STFT (required without --model-dir)"""
    n_fft: int | None = None
    """FFT size of the frames' STFT, N = n_fft // 2 + 1 (required without --model-dir)"""
    out: str = "runs/map_frames"
    """output directory"""
    methods: tuple[str, ...] = ("lstsq", "student")
    """lstsq and/or student (with --model-dir also jacobian; nca needs ncajax.nca.fit_mapping)"""
    heldout_songs: tuple[str, ...] | None = None
    """songs to hold out, by name or index (several songs only)"""
    heldout_fraction: float = 0.25
    """share of the songs (several) or of the frames (one song) held out"""
    fit_steps: int = FIT_STEPS
    """Adam steps of the linear student"""
    fit_lr: float = FIT_LEARNING_RATE
    """learning rate of the linear student"""
    fit_seed: int = 0
    """seed of the student's initialisation and of the held-out song draw"""
    band_hz: float = DIAGONAL_BAND_HZ
    """half-width (Hz) of the band part in the functional diagonality"""
    jacobian_chunk: int | None = None
    """frames of per-frame Jacobians formed at a time (--model-dir with jacobian; default automatic)"""
    no_figures: bool = False
    """skip the figures"""


# ---------------------------------------------------------------------------------------------- parsing


def _preparse(argv: list[str]) -> argparse.Namespace:
    """--config, --train-dir and --models, read before the full parse (they decide the defaults)."""
    ap = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    ap.add_argument("--config")
    ap.add_argument("--train-dir")
    ap.add_argument("--models", nargs="+")
    try:
        return ap.parse_known_args(argv)[0]
    except SystemExit:  # a malformed flag: the full parse reports it
        return argparse.Namespace(config=None, train_dir=None, models=None)


def recorded_train_config(train_dir: str | Path, models=MODEL_NAMES) -> tuple[dict, Path] | None:
    """The config.json of the first of `models` trained under `train_dir` (and its path), or None."""
    for name in models:
        path = Path(train_dir) / name / "config.json"
        if path.is_file():
            return json.loads(path.read_text()), path
    return None


def _is_train_run_config(data: dict) -> bool:
    return isinstance(data, dict) and {"model", "train", "stft"} <= set(data)


def _from_train_run(cmd: Any, recorded: dict) -> Any:
    """`cmd` with the data (and training) options a training run recorded."""
    changes = {}
    data = recorded.get("data") or {}
    if hasattr(cmd, "data"):
        kw: dict = {}
        if "preset" in data:
            kw["preset"] = data["preset"]
        if data.get("dataset") == "MUSDB18":
            kw["is_wav"] = bool(data.get("is_wav"))
        corpus = data.get("corpus")
        if isinstance(corpus, dict):
            kw["musdb_root"] = None
            kw["corpus_seed"] = corpus.get("seed", CorpusConfig.seed)
            tracks = (corpus.get("n_train", CorpusConfig.n_train), corpus.get("n_test", CorpusConfig.n_test))
            kw["corpus_tracks"] = None if tracks == (CorpusConfig.n_train, CorpusConfig.n_test) else tracks
            duration = corpus.get("duration", CorpusConfig.duration)
            kw["corpus_seconds"] = None if duration == CorpusConfig.duration else duration
            # corpora of format <= 3 did not record it: they were all "v3"
            kw["corpus_realism"] = corpus.get("realism", "v3")
        changes["data"] = dataclasses.replace(cmd.data, **kw)
    if hasattr(cmd, "train") and isinstance(recorded.get("train"), dict):
        # runs written before a TrainConfig field existed used that field's earlier value (train.load_trained)
        old = {"recipe": "raw", "augment_gain_db": 0.0, "augment_remix": 0.0, "augment_stem_gain_db": 0.0}
        changes["train"] = TrainOptions.from_train_config(from_dict(TrainConfig, {**old, **recorded["train"]}))
    return dataclasses.replace(cmd, **changes)


def _from_config_file(cmd: Any, path: str) -> Any:
    """`cmd` with the sections of the config file at `path` that it has."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"--config {path} does not exist; pass a study config (<run>/{STUDY_FILE}) or "
                                "a training run's config.json")
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"--config {path} is not valid JSON ({err})") from err
    if _is_train_run_config(data):
        return _from_train_run(cmd, data)
    if not isinstance(data, dict):
        raise ValueError(f"--config {path} must hold a JSON object (a study config), got {type(data).__name__}")
    study = StudyConfig.from_json(data)  # unknown fields refused by name
    names = {f.name for f in dataclasses.fields(cmd)}
    return dataclasses.replace(cmd, **{k: getattr(study, k) for k in data if k in names})


COMMANDS: dict[str, type] = {"reproduce": Reproduce, "train": Train, "fit": Fit, "evaluate": Evaluate,
                             "figures": Figures, "report": Report, "separate": type(None), "map": Map}
SEPARATE_HELP = ("Separate audio files (or every audio file of a folder) into vocals and accompaniment with a "
                 "trained run (the same as ncajax-separate; `ncajax separate --help` for its options).")


def defaults(name: str, argv: list[str]) -> Any:
    """The defaults subcommand `name` parses `argv` against (see the module docstring)."""
    cls = COMMANDS[name]
    cmd = cls()
    known = _preparse(argv)
    if hasattr(cmd, "train_dir"):
        found = recorded_train_config(known.train_dir or cmd.train_dir, known.models or cmd.models)
        if found is not None:
            cmd = _from_train_run(cmd, found[0])
    if known.config:
        cmd = _from_config_file(cmd, known.config)
    return cmd


def description(cls: type) -> str:
    return " ".join((cls.__doc__ or "").split())


def parse(name: str, argv: list[str] | None = None) -> Any:
    """Subcommand `name`'s options from `argv` (flags > --config > recorded training run > defaults)."""
    if name not in COMMANDS or name == "separate":
        raise ValueError(f"unknown command {name!r}; choose one of {[n for n in COMMANDS if n != 'separate']}")
    argv = list(sys.argv[1:] if argv is None else argv)
    cls = COMMANDS[name]
    return tyro.cli(cls, args=argv, default=defaults(name, argv), prog=f"{PROG} {name}",
                    description=description(cls), config=TYRO_CONFIG)


def flat(cmd: Any) -> SimpleNamespace:
    """Every leaf option of a parsed subcommand as one namespace (`flat(cmd).fit_steps`), the way the
    flag names read; field names are unique across the sections."""
    out = {}
    for f in dataclasses.fields(cmd):
        value = getattr(cmd, f.name)
        out.update(vars(flat(value)) if dataclasses.is_dataclass(value) else {f.name: value})
    return SimpleNamespace(**out)


def legacy_flags(argv: list[str] | None, renames: dict[str, str]) -> list[str]:
    """`argv` with old flag spellings of a script renamed (`--lr` -> `--fit-lr`), up to a `--`."""
    out, argv = [], list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + argv[i:]
        flag, eq, value = arg.partition("=")
        out.append(renames[flag] + eq + value if flag in renames else arg)
    return out


RUNNERS = ("reproduce", "train", "fit", "evaluate", "figures", "report", "map")  # `runners.run_<name>`


def run(name: str, argv: list[str] | None = None):
    """Parse `argv` as subcommand `name` and run it; the library's errors propagate (`cli.run` turns them
    into one line). Returns the runner's value (an exit code, a summary, or None)."""
    from . import _runners as runners

    return getattr(runners, f"run_{name}")(parse(name, argv))


# ---------------------------------------------------------------------------------------------- main


def _top_parser() -> argparse.ArgumentParser:
    lines = [textwrap.fill(SEPARATE_HELP if cls is type(None) else description(cls), width=100,
                           initial_indent=f"  {name:11s}", subsequent_indent=" " * 13)
             for name, cls in COMMANDS.items()]
    return argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage=f"{PROG} [-h] {{{','.join(COMMANDS)}}} [options]",
        description="What do neural singing-voice separators learn? The study's stages, one subcommand each.",
        epilog="subcommands:\n" + "\n".join(lines) + f"\n\n`{PROG} <subcommand> --help` lists its options "
               "and their defaults. --debug (anywhere) shows the traceback of an error.")


def main(argv: list[str] | None = None) -> int:
    """The `ncajax` console script: dispatch to a subcommand; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    args = cli.strip_debug(argv)
    if not args or args[0] in ("-h", "--help"):
        top.print_help()
        return 0 if args else cli.EXIT_USER_ERROR
    name = args[0]
    if name not in COMMANDS:
        top.error(f"unknown subcommand {name!r}; choose one of {', '.join(COMMANDS)}")
    at = argv.index(name)
    rest = [a for a in argv[:at] if a == cli.DEBUG_FLAG] + argv[at + 1:]
    if name == "separate":
        from . import _separate as separate

        return separate.main(rest, prog=f"{PROG} separate")
    return cli.run_guarded(lambda a: run(name, a), rest)


if __name__ == "__main__":
    sys.exit(main())
