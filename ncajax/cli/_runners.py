"""What each `ncajax` subcommand does once `ncajax.cli` has parsed its options: `run_<name>(cmd)`.

Every runner checks its options before any data are read or anything is written, then calls the
library (`pipeline`, `study`, `plots`, `report`, `resolution`, `frames`), whose errors propagate (the
command line turns them into one `error:` line).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .. import plots, pretrained, runs
from ..nca import _frames as frames
from ..report import _report as report
from ..report import _resolution as resolution
from ..study import _pipeline as pipeline
from ..study import _study as study
from ..study._options import TrainOptions
from ..training import _train as train
from ._commands import RUN_DIR, STUDY_FILE, recorded_train_config

if TYPE_CHECKING:
    from ._commands import Evaluate, Figures, Fit, Map, Report, Reproduce, Train


def _check_recorded_dataset(cmd: Fit | Evaluate) -> int | None:
    """Refuse MUSDB18-trained runs without --musdb-root (the root is not recorded); the seeds trained."""
    found = recorded_train_config(cmd.train_dir, cmd.models)
    if found is None:
        return None
    recorded, path = found
    if (recorded.get("data") or {}).get("dataset") == "MUSDB18" and cmd.data.musdb_root is None:
        raise ValueError(f"the models in {cmd.train_dir} were trained on MUSDB18 ({path} does not record its "
                         "folder): pass the same --musdb-root (and --is-wav) as the training")
    return (recorded.get("train") or {}).get("n_seeds")


def run_reproduce(cmd: Reproduce) -> int:
    config = cmd.study()
    opts = config.options()  # every option checked before any data are made
    out = Path(cmd.out or (RUN_DIR if config.data.corpus_seed == 0 else f"runs/corpus{config.data.corpus_seed}"))
    config.save(out / STUDY_FILE)
    log = lambda s: print(s, flush=True)  # noqa: E731
    if config.corpora > 1:
        summary = study.run_corpora(out, opts, config.corpora, log=log)
        report_dir = study.corpus_dir(out, config.data.corpus_seed)
        print(json.dumps(summary["verdicts"], indent=1))
    else:
        print(json.dumps(study.run_study(out, opts, log=log), indent=1))
        report_dir = out
    if config.figures.figures_dir:
        dest = Path(config.figures.figures_dir)
        report.copy_outputs(report_dir, dest)
        # the numbers behind the report travel with it, so what the README quotes is committed
        for src in (report_dir / "conclusion.json", out / "across_corpora.json", out / "timings.json"):
            if src.exists():
                shutil.copy2(src, dest / src.name)
    print(f"report: {out / 'REPORT.md'}")
    return 0


def run_train(cmd: Train) -> None:
    train_cfg = cmd.train.train_config()  # checked before the data are prepared
    cmd.data.check()
    data = pipeline.data_from_options(cmd.data)
    results = pipeline.train_all(data, cmd.out, model_names=tuple(cmd.models), train_cfg=train_cfg)
    summary = {name: r.result.get("test_improvement_db") for name, r in results.items()}
    print(json.dumps({"test_improvement_db": summary}, indent=1))


def run_fit(cmd: Fit) -> None:
    cmd.data.check()
    cmd.fit.check(cmd.data.preset)  # every size against the preset's N before any work
    seeds = _check_recorded_dataset(cmd) or TrainOptions.seeds
    cfg = cmd.fit.mapping_config(cmd.data.preset, seeds)
    data = pipeline.data_from_options(cmd.data)
    result = pipeline.fit_all(data, cmd.train_dir, cmd.out, cfg=cfg, model_names=tuple(cmd.models))
    print(f"{len(result['records'])} fits in {result['wall_s']:.1f} s -> {cmd.out}")


def run_evaluate(cmd: Evaluate) -> None:
    cmd.data.check()
    _check_recorded_dataset(cmd)
    data = pipeline.data_from_options(cmd.data)
    result = pipeline.evaluate_all(data, cmd.train_dir, cmd.out, model_names=tuple(cmd.models),
                                   with_bss=not cmd.evaluate.no_bss, real_root=cmd.evaluate.real_root())
    summary = {k: {"mag_sdr": v.get("mag_sdr"), "vocals_SDR": (v.get("vocals") or {}).get("SDR")}
               for k, v in result["summary"].items()}
    print(json.dumps(summary, indent=1))


def run_figures(cmd: Figures) -> int:
    written = plots.make_all(cmd.run_dir, cmd.out)
    for p in written:
        print(p)
    if not written:
        print(f"no figure written: {cmd.run_dir} holds no results yet", file=sys.stderr)
        return 1
    return 0


def run_report(cmd: Report) -> int:
    summary = None
    if cmd.rung:
        rungs = {}
        for item in cmd.rung:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise ValueError(f"--rung {item!r}: write NAME=RUN_DIR, e.g. --rung mid=runs/mid")
            rungs[name] = Path(path)
        summary = resolution.summarise(rungs)
        first = next(iter(rungs.values()))
        runs.write_json(first / "resolution.json", summary)
    else:
        first = Path(cmd.run_dir)
        if not first.is_dir():
            raise FileNotFoundError(f"run directory {first} does not exist; pass the --out of ncajax reproduce")
    corpora = runs.read_json(Path(cmd.across_corpora)) if cmd.across_corpora else None
    timings = runs.read_json(first / "timings.json") if (first / "timings.json").exists() else None
    path = report.write_report(first, first / "REPORT.md", timings=timings, corpora=corpora, resolution=summary)
    print(f"report: {path}")
    if cmd.figures.figures_dir:
        dest = Path(cmd.figures.figures_dir)
        report.copy_outputs(first, dest)
        srcs = [first / "resolution.json", first / "conclusion.json"] if summary else [first / "conclusion.json"]
        if cmd.across_corpora:  # the across-corpora summary and the timings of every corpus beside it
            srcs += [Path(cmd.across_corpora), Path(cmd.across_corpora).parent / "timings.json"]
        else:
            srcs.append(first / "timings.json")
        for src in srcs:
            if src.exists():
                shutil.copy2(src, dest / src.name)
        print(f"copied to {dest}")
    return 0


def _heldout(values):
    """--heldout-songs as indices where every value is an integer, else names."""
    if values is None:
        return None
    return [int(v) for v in values] if all(v.lstrip("-").isdigit() for v in values) else list(values)


def run_map(cmd: Map) -> dict:
    """Load, map, then write (nothing is written when any check fails); returns mapping.json's content."""

    options = dict(heldout=_heldout(cmd.heldout_songs), heldout_fraction=cmd.heldout_fraction,
                   methods=list(cmd.methods), student_steps=cmd.fit_steps, learning_rate=cmd.fit_lr,
                   band_hz=cmd.band_hz, seed=cmd.fit_seed)
    if cmd.model_dir is None:
        frames.check_methods(cmd.methods, frames.FRAME_METHODS)  # refuse nca/jacobian before reading files
        if cmd.sample_rate is None or cmd.n_fft is None:
            raise ValueError("--sample-rate and --n-fft are required: the STFT the frames come from (e.g. "
                             "--sample-rate 8000 --n-fft 256), unless --model-dir gives a trained model")
        loaded = frames.load_frames(cmd.mixture, cmd.estimate, n_fft=cmd.n_fft)
        result = frames.map_frames(loaded.mixture, loaded.estimate, sample_rate=cmd.sample_rate, n_fft=cmd.n_fft,
                                   songs=loaded.songs, **options)
    else:
        result = _map_model(cmd, options)
    out = Path(cmd.out)
    written = result.save(out)
    if not cmd.no_figures:
        written += plots.plot_frame_mapping(result, out)
    print(result.table())
    print("wrote " + ", ".join(str(p) for p in written))
    return result.to_dict()


def _map_model(cmd: Map, options: dict):
    """`frames.map_callable` of a trained run's model (seed `--seed-index`) on the mixture frames."""

    frames.check_methods(cmd.methods, frames.CALLABLE_METHODS)
    if cmd.estimate is not None:
        raise ValueError("--estimate is not used with --model-dir (the model computes it): pass --mixture only")
    if cmd.mixture is None:
        raise ValueError("no mixture file given: pass the mixture frames' .npy/.npz file (--mixture FILE)")
    trained = train.load_trained(pretrained.resolve(cmd.model_dir))  # a shipped model's name, or a run
    if not 0 <= cmd.seed_index < trained.train_cfg.n_seeds:
        raise ValueError(f"--seed-index {cmd.seed_index}: {cmd.model_dir} holds {trained.train_cfg.n_seeds} seed(s)")
    stft = trained.stft
    for flag, given, own in (("--sample-rate", cmd.sample_rate, stft.sample_rate), ("--n-fft", cmd.n_fft, stft.n_fft)):
        if given is not None and given != own:
            raise ValueError(f"{flag} {given:g} differs from the model's STFT ({own}): leave it unset")
    path = frames._check_path(cmd.mixture, "mixture")
    part = frames._pick(frames._read(path, "mixture"), "mixture", path, combined=False)
    songs, names = frames._file_songs(part, "mixture", path)
    mixture = songs[0] if names is None and getattr(part, "ndim", 0) == 2 else songs  # one song, or a list
    params = trained.seed_params(cmd.seed_index)
    return frames.map_callable(lambda x: trained.model.apply(params, x), mixture, sample_rate=stft.sample_rate,
                               n_fft=stft.n_fft, songs=names, jacobian_chunk=cmd.jacobian_chunk, **options)
