"""`ncajax-separate` (also `ncajax separate`): the command line of `ncajax.separation.separate_file`.

Usage, outputs and exit codes: see `ncajax.separation._separate`'s docstring (and `ncajax-separate --help`).
A bad file among several is reported and skipped, the others are still separated, and the exit code is 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ..separation._separate import (
    AUDIO_EXTENSIONS,
    EXIT_USAGE,
    FFMPEG_EXTENSIONS,
    InputError,
    _check_seed_index,
    plan_outputs,
    separate_file,
)
from . import _errors as cli


def _check_run_dir(run_dir: Path) -> None:
    """Raise InputError when `run_dir` is a study (or train/) directory rather than one model's run."""
    if (run_dir / "config.json").exists() or not run_dir.is_dir():
        return  # a run directory, or missing: `load_trained` names the problem
    found = sorted(
        {c.parent for pattern in ("train/*/config.json", "*/config.json")
         for c in run_dir.glob(pattern) if (c.parent / "checkpoints").is_dir()}
    )
    if not found:
        return
    kind = "a study directory" if (run_dir / "train").is_dir() else "a folder of training runs"
    raise InputError(
        f"{run_dir} is {kind}; pass one of its trained models: {', '.join(map(str, found))}"
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _parser(prog: str = "ncajax-separate") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Separate audio files (or every audio file of a folder) into vocals and "
                    "accompaniment with a trained ncajax run.",
    )
    p.add_argument("run_dir", type=Path,
                   help="training run directory, e.g. runs/default/train/dae_sf, or the name of a model "
                        "shipped with ncajax (dae, dae_deep, dae_sf: ncajax/pretrained/, no training "
                        "needed)")
    p.add_argument("audio", type=Path, nargs="+",
                   help="audio files or folders of them (" + " ".join(AUDIO_EXTENSIONS) + "; "
                        f"{' '.join(FFMPEG_EXTENSIONS)} need ffmpeg); any rate and channel count")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: next to each input file; a folder input's own folder)")
    p.add_argument("--seed-index", type=int, default=0, help="which seed of the run (default 0)")
    p.add_argument("--chunk", type=_positive_int, default=4096,
                   help="STFT frames per model call (default 4096; lower it to save memory)")
    p.add_argument("--model-rate", action="store_true",
                   help="write at the model's sample rate instead of the input's (default: the "
                        "input's rate and channel count)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars over the files and each file's frames on stderr (default: "
                        "only when stderr is a terminal)")
    p.add_argument("--keep-rate", action="store_true", help=argparse.SUPPRESS)  # now the default
    return p


PROG = "ncajax-separate"


def main(argv: list[str] | None = None, *, prog: str = PROG) -> int:
    """Command-line entry point; returns the exit code (2 for bad input, with a one-line message).

    Errors go through `ncajax.cli.run`: one `ncajax-separate: error: ...` line, or with `--debug` /
    NCAJAX_DEBUG=1 the traceback. `ncajax separate` is the same command under `prog="ncajax separate"`.
    """
    debug = cli.debug_requested(sys.argv[1:] if argv is None else argv)
    return cli.run_guarded(lambda args: _main(args, debug=debug, prog=prog), argv, prog=prog)


def _main(argv: list[str], *, debug: bool = False, prog: str = PROG) -> int:
    args = _parser(prog).parse_args(argv)
    from .. import pretrained
    from ..training import load_trained

    def report(message: str, kind: str = "error") -> None:
        tqdm.write(f"{prog}: {kind}: {' '.join(message.split())}", file=sys.stderr)

    try:
        jobs = plan_outputs(args.audio, out=args.out)
        run_dir = pretrained.resolve(args.run_dir)  # a shipped model's name stands for its run
        _check_run_dir(run_dir)
        trained = load_trained(run_dir)
        _check_seed_index(trained, args.seed_index)
    except (FileNotFoundError, ValueError) as err:
        if debug:
            raise
        report(str(err))
        return EXIT_USAGE
    status = 0
    bar = tqdm(jobs, unit="file", desc="separate", dynamic_ncols=True,
               disable=None if args.progress is None else not args.progress)
    for audio, outputs in bar:  # a bad file is reported and skipped; the others are still separated
        try:
            written = separate_file(
                trained, audio, outputs=outputs, seed_index=args.seed_index, chunk=args.chunk,
                model_rate=args.model_rate, progress=args.progress,
                on_warning=lambda message: report(message, "warning"),
            )
        except (FileNotFoundError, InputError) as err:
            if debug:
                raise
            report(str(err))
            status = EXIT_USAGE
            continue
        tqdm.write(f"{audio}: wrote {written['vocals']} and {written['accompaniment']}")
    return status
