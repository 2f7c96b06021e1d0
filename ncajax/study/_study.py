"""The whole study as one call: data -> training -> mapping fits -> evaluation -> figures -> report, on one
corpus (`run_study`) or on several corpus seeds with a summary of the verdict across them (`run_corpora`).

Every stage writes into its own directory under the study's and is skipped when its outputs exist for
the same config, so calling again after an interruption continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

from .. import runs
from ..config import PRIMARY_ESTIMATOR, CorpusConfig, MappingConfig, TrainConfig, train_recipe
from ..results import _verdict as verdict
from . import _pipeline as pipeline
from ._options import DataOptions, FitOptions, StudyConfig, TrainOptions


@dataclasses.dataclass(frozen=True)
class StudyOptions:
    """What `run_study` runs. Defaults: the embedded corpus at the fast preset, 10 seeds per model.

    Sizes that scale with the preset's N (fast 129, mid 513, paper 2049): fit_frames None -> 4 N rounded
    up (`config.fit_frames_for`: 1024, 2304, 8448); jacobian_chunk None -> the automatic chunk of the
    machine the stage runs on (`mappings.jacobian_chunk`). Every option is checked against the preset
    when the options are made, before any data is generated or any model trained: a fit set with fewer
    frames than bins or a Jacobian chunk that cannot fit in memory is refused with the option's name
    and a working value.

    This is the flat, library form of `options.StudyConfig` (the nested config the `ncajax` command
    and `--config` use; `StudyConfig.options()` gives these options, `config()` gives it back): the
    defaults are those of its sections, and the corpus, training and mapping configs come from them.
    """

    musdb_root: str | None = None
    is_wav: bool = False
    preset: str = DataOptions.preset
    seeds: int = TrainOptions.seeds
    epochs: int = TrainOptions.epochs
    fit_steps: int = FitOptions.fit_steps
    fit_lr: float = FitOptions.fit_lr
    fit_frames: int | None = None
    heldout_frames: int = FitOptions.heldout_frames
    extra_settings: bool = False
    with_bss: bool = True
    corpus_seed: int = DataOptions.corpus_seed
    corpus_tracks: tuple[int, int] | None = None
    corpus_seconds: float | None = None
    corpus_realism: str = DataOptions.corpus_realism
    real_test: str | None = None  # a MUSDB18 root scored as real music (every track, whole)
    jacobian_chunk: int | None = None  # frames of per-frame Jacobians formed at a time (None: automatic)
    # Adam step counts of the under-convergence control of the NCA settings (`MappingConfig.control_steps`,
    # e.g. CONTROL_STEPS); () (default) runs none: the control costs 10,000-step fits, more than the rest of
    # the mapping stage on a 2-core CPU, so `make reproduce` leaves it out and the committed study turns it
    # on (README). Tiny runs (e.g. fit_steps=20) pass tiny ones. With several corpora only the first runs it.
    control_steps: tuple[int, ...] = ()
    control_seeds: int | None = FitOptions.control_seeds  # the control fits the first control_seeds seeds of each model
    # the training recipe (`config.TRAIN_RECIPES`) of the study's models
    recipe: str = TrainOptions.recipe
    # the recipe control: the same models trained with the earlier "raw_mse" recipe (RECIPE_CONTROL_SEEDS
    # seeds) and mapped by the primary estimator, to show what dying output units did to the mappings
    recipe_control: bool = False
    # every training option (`options.TrainOptions`: first seed, batch size, learning rate, recipe fields);
    # None: the recipe's, with `seeds` and `epochs` above. When given, its recipe, seeds and epochs are
    # those above (`StudyConfig.options` sets both).
    train_options: TrainOptions | None = None

    def __post_init__(self):
        if self.seeds < 2:
            raise ValueError(f"seeds must be >= 2 (the verdict's intervals resample seeds), got {self.seeds}")
        if self.corpus_seed < 0:
            raise ValueError(f"corpus_seed must be a non-negative integer, got {self.corpus_seed}")
        t = self.train_options
        if t is not None and (t.recipe, t.seeds, t.epochs) != (self.recipe, self.seeds, self.epochs):
            raise ValueError(f"train_options ({t.recipe}, {t.seeds} seeds, {t.epochs} epochs) differ from the "
                             f"options' recipe {self.recipe!r}, seeds {self.seeds} and epochs {self.epochs}")
        DataOptions(preset=self.preset).check()
        self._fit().check(self.preset)
        self.train_config()
        self.mapping_config()

    def config(self) -> StudyConfig:
        """The nested `options.StudyConfig` of these options (real_test as resolved here)."""
        from ._options import EvaluateOptions

        data = DataOptions(musdb_root=self.musdb_root, is_wav=self.is_wav, preset=self.preset,
                           corpus_seed=self.corpus_seed, corpus_tracks=self.corpus_tracks,
                           corpus_seconds=self.corpus_seconds, corpus_realism=self.corpus_realism)
        return StudyConfig(data=data, train=self._train(), fit=self._fit(),
                           evaluate=EvaluateOptions(no_bss=not self.with_bss, real_test=self.real_test or "none"),
                           recipe_control=self.recipe_control)

    def _train(self) -> TrainOptions:
        return self.train_options or TrainOptions(recipe=self.recipe, seeds=self.seeds, epochs=self.epochs)

    def _fit(self) -> FitOptions:
        return FitOptions(fit_steps=self.fit_steps, fit_lr=self.fit_lr, fit_frames=self.fit_frames,
                          heldout_frames=self.heldout_frames, jacobian_chunk=self.jacobian_chunk,
                          extra_settings=self.extra_settings, control_steps=tuple(self.control_steps),
                          control_seeds=self.control_seeds)

    def train_config(self) -> TrainConfig:
        return self._train().train_config()

    def recipe_control_configs(self) -> tuple[TrainConfig, MappingConfig]:
        """The recipe control's training config ("raw_mse") and mapping config (the primary estimator
        only, on the main stage's frames, no linearity and no under-convergence control)."""
        main = self.mapping_config()
        primary = tuple(s for s in main.settings if s.name == PRIMARY_ESTIMATOR)
        train = train_recipe("raw_mse", max_epochs=self.epochs, n_seeds=min(RECIPE_CONTROL_SEEDS, self.seeds))
        return train, dataclasses.replace(main, settings=primary, control_steps=(), control_seeds=None,
                                          linearity_seeds=0)

    def corpus_config(self) -> CorpusConfig | None:
        return self.config().data.corpus_config()

    def mapping_config(self) -> MappingConfig:
        """The mapping stage's config, resolved against the preset (explicit fit frames and chunk)."""
        return self._fit().mapping_config(self.preset, self.seeds)


RECIPE_CONTROL_SEEDS = 3


def run_study(out: str | Path, opts: StudyOptions = StudyOptions(), *,
              log: Callable[[str], None] = print) -> dict:
    """Every stage of the study into `out`; returns the wall time of each stage (also timings.json)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    def stage(name, fn):
        log(f"== {name} ==")
        t0 = time.perf_counter()
        value = fn()
        timings[name] = round(time.perf_counter() - t0, 2)
        log(f"   {name}: {timings[name]:.1f} s")
        return value

    data = stage("data", lambda: pipeline.prepare_data(
        musdb_root=opts.musdb_root, is_wav=opts.is_wav or None, preset_name=opts.preset,
        corpus_cfg=opts.corpus_config()))
    timings.update({f"data.{k}": round(v, 2) for k, v in data.timings.items()})
    from ..nca._stage import check_fit_set

    check_fit_set(int(data.train.offsets[-1]), data.stft)  # before training, not after it
    train_cfg = opts.train_config()
    stage("train", lambda: pipeline.train_all(data, out / "train", train_cfg=train_cfg))
    stage("mappings", lambda: pipeline.fit_all(data, out / "train", out / "mappings", cfg=opts.mapping_config()))
    if opts.recipe_control:
        stage("recipe_control", lambda: _recipe_control(data, out / runs.RECIPE_CONTROL_DIR, opts))
    stage("evaluate", lambda: pipeline.evaluate_all(data, out / "train", out / "evaluation",
                                                    with_bss=opts.with_bss, real_root=opts.real_test))
    from .. import plots
    from ..report import _report as report

    stage("figures", lambda: plots.make_all(out, out / "figures"))
    stage("report", lambda: report.write_report(out, out / "REPORT.md", timings=timings))
    timings["total"] = round(time.perf_counter() - t_all, 2)
    runs.write_json(out / "timings.json", timings)
    return timings


def _recipe_control(data, out: Path, opts: StudyOptions) -> dict:
    """The recipe control into `out/{train,mappings}` (`StudyOptions.recipe_control_configs`)."""
    train_cfg, mapping_cfg = opts.recipe_control_configs()
    pipeline.train_all(data, out / "train", train_cfg=train_cfg)
    return pipeline.fit_all(data, out / "train", out / "mappings", cfg=mapping_cfg)


def corpus_dir(out: str | Path, seed: int) -> Path:
    return Path(out) / f"corpus-{seed}"


def run_corpora(out: str | Path, opts: StudyOptions, n_corpora: int, *,
                log: Callable[[str], None] = print) -> dict:
    """The study on corpus seeds opts.corpus_seed ... + n_corpora - 1, each in `out/corpus-<seed>/`,
    then `out/across_corpora.json` (how often each direction holds, `verdict.across_corpora`) and
    `out/REPORT.md`: the first corpus's report with the across-corpora section."""
    if n_corpora < 1:
        raise ValueError(f"--corpora must be >= 1, got {n_corpora}")
    if opts.musdb_root is not None:
        raise ValueError("--corpora runs the embedded corpus on several seeds; it cannot be combined with --musdb-root")
    out = Path(out)
    conclusions, timings = {}, {}
    for k in range(n_corpora):
        seed = opts.corpus_seed + k
        log(f"==== corpus seed {seed} ({k + 1} of {n_corpora}) ====")
        d = corpus_dir(out, seed)
        # the under-convergence control runs on the first corpus only (its cost is that of 10,000-step fits)
        k_opts = dataclasses.replace(opts, corpus_seed=seed, control_steps=opts.control_steps if k == 0 else ())
        timings[d.name] = run_study(d, k_opts, log=log)
        conclusions[d.name] = runs.read_json(d / "conclusion.json")
    summary = verdict.across_corpora(conclusions)
    runs.write_json(out / "across_corpora.json", summary)
    from ..report import _report as report

    first = corpus_dir(out, opts.corpus_seed)
    report.write_report(first, first / "REPORT.md", timings=timings[first.name], corpora=summary)
    report.write_report(first, out / "REPORT.md", timings=timings[first.name], corpora=summary)
    runs.write_json(out / "timings.json", timings)
    log(json.dumps(summary["verdict_counts"]))
    return summary
