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

from . import pipeline, runs, verdict
from .config import (
    CONTROL_SEEDS,
    FIT_LEARNING_RATE,
    FIT_STEPS,
    PRIMARY_ESTIMATOR,
    STUDY_SEEDS,
    CorpusConfig,
    MappingConfig,
    TrainConfig,
    check_fit_frames,
    default_settings,
    jacobian_chunk_for,
    preset,
    train_recipe,
)


@dataclasses.dataclass(frozen=True)
class StudyOptions:
    """What `run_study` runs. Defaults: the embedded corpus at the fast preset, 10 seeds per model.

    Sizes that scale with the preset's N (fast 129, mid 513, paper 2049): fit_frames None -> 4 N rounded
    up (`config.fit_frames_for`: 1024, 2304, 8448); jacobian_chunk None -> the automatic chunk of the
    machine the stage runs on (`mappings.jacobian_chunk`). Every option is checked against the preset
    when the options are made, before any data is generated or any model trained: a fit set with fewer
    frames than bins or a Jacobian chunk that cannot fit in memory is refused with the option's name
    and a working value.
    """

    musdb_root: str | None = None
    is_wav: bool = False
    preset: str = "fast"
    seeds: int = STUDY_SEEDS
    epochs: int = TrainConfig.max_epochs
    fit_steps: int = FIT_STEPS
    fit_lr: float = FIT_LEARNING_RATE
    fit_frames: int | None = None
    heldout_frames: int = 256
    extra_settings: bool = False
    with_bss: bool = True
    corpus_seed: int = 0
    corpus_tracks: tuple[int, int] | None = None
    corpus_seconds: float | None = None
    real_test: str | None = None  # a MUSDB18 root scored as real music (every track, whole)
    jacobian_chunk: int | None = None  # frames of per-frame Jacobians formed at a time (None: automatic)
    # Adam step counts of the under-convergence control of the NCA settings (`MappingConfig.control_steps`,
    # e.g. CONTROL_STEPS); () (default) runs none: the control costs 10,000-step fits, more than the rest of
    # the mapping stage on a 2-core CPU, so `make reproduce` leaves it out and the committed study turns it
    # on (README). Tiny runs (e.g. fit_steps=20) pass tiny ones. With several corpora only the first runs it.
    control_steps: tuple[int, ...] = ()
    control_seeds: int | None = CONTROL_SEEDS  # the control fits the first control_seeds seeds of each model
    # the training recipe (`config.TRAIN_RECIPES`) of the study's models
    recipe: str = "study"
    # the recipe control: the same models trained with the earlier "raw_mse" recipe (RECIPE_CONTROL_SEEDS
    # seeds) and mapped by the primary estimator, to show what dying output units did to the mappings
    recipe_control: bool = False

    def __post_init__(self):
        if self.seeds < 2:
            raise ValueError(f"seeds must be >= 2 (the verdict's intervals resample seeds), got {self.seeds}")
        if self.corpus_seed < 0:
            raise ValueError(f"corpus_seed must be a non-negative integer, got {self.corpus_seed}")
        n_bins = preset(self.preset).n_bins
        check_fit_frames(self.fit_frames, n_bins, option="--fit-frames", preset_name=self.preset)
        jacobian_chunk_for(n_bins, self.jacobian_chunk, option="--jacobian-chunk")
        self.train_config()
        self.mapping_config()

    def train_config(self) -> TrainConfig:
        return train_recipe(self.recipe, max_epochs=self.epochs, n_seeds=self.seeds)

    def recipe_control_configs(self) -> tuple[TrainConfig, MappingConfig]:
        """The recipe control's training config ("raw_mse") and mapping config (the primary estimator
        only, on the main stage's frames, no linearity and no under-convergence control)."""
        main = self.mapping_config()
        primary = tuple(s for s in main.settings if s.name == PRIMARY_ESTIMATOR)
        train = train_recipe("raw_mse", max_epochs=self.epochs, n_seeds=min(RECIPE_CONTROL_SEEDS, self.seeds))
        return train, dataclasses.replace(main, settings=primary, control_steps=(), control_seeds=None,
                                          linearity_seeds=0)

    def corpus_config(self) -> CorpusConfig | None:
        if self.musdb_root is not None:
            return None
        kw: dict = {"sample_rate": preset(self.preset).sample_rate, "seed": self.corpus_seed}
        if self.corpus_tracks:
            kw.update(n_train=self.corpus_tracks[0], n_test=self.corpus_tracks[1])
        if self.corpus_seconds:
            kw["duration"] = self.corpus_seconds
        return CorpusConfig(**kw)

    def mapping_config(self) -> MappingConfig:
        """The mapping stage's config, resolved against the preset (explicit fit frames and chunk)."""
        cfg = MappingConfig(settings=default_settings(self.fit_steps, self.fit_lr, extra=self.extra_settings),
                            n_fit_frames=self.fit_frames, heldout_frames_per_song=self.heldout_frames,
                            jacobian_chunk=self.jacobian_chunk, control_steps=tuple(self.control_steps),
                            control_seeds=None if not self.control_steps else min(self.control_seeds or self.seeds,
                                                                                   self.seeds))
        return cfg.resolved(preset(self.preset), preset_name=self.preset)


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
    from .mappings import check_fit_set

    check_fit_set(int(data.train.offsets[-1]), data.stft)  # before training, not after it
    train_cfg = opts.train_config()
    stage("train", lambda: pipeline.train_all(data, out / "train", train_cfg=train_cfg))
    stage("mappings", lambda: pipeline.fit_all(data, out / "train", out / "mappings", cfg=opts.mapping_config()))
    if opts.recipe_control:
        stage("recipe_control", lambda: _recipe_control(data, out / runs.RECIPE_CONTROL_DIR, opts))
    stage("evaluate", lambda: pipeline.evaluate_all(data, out / "train", out / "evaluation",
                                                    with_bss=opts.with_bss, real_root=opts.real_test))
    from . import plots, report

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
    from . import report

    first = corpus_dir(out, opts.corpus_seed)
    report.write_report(first, first / "REPORT.md", timings=timings[first.name], corpora=summary)
    report.write_report(first, out / "REPORT.md", timings=timings[first.name], corpora=summary)
    runs.write_json(out / "timings.json", timings)
    log(json.dumps(summary["verdict_counts"]))
    return summary
