"""The study's one config: the options of every stage, nested, with one JSON round trip.

`StudyConfig` nests one frozen dataclass per stage — `DataOptions` (corpus or MUSDB18, STFT preset),
`TrainOptions`, `FitOptions` (the mapping fits), `EvaluateOptions`, `FigureOptions` — plus the models
and the number of corpus seeds. It is what `ncajax reproduce` runs (written to `<out>/study.json`), what
`--config` reads back, and the single place where every command-line option gets its name, its help and
its default: the `ncajax` subcommands (`ncajax.cli`) generate their flags from these fields with
tyro, so `--fit-steps` is the same flag with the same default in `reproduce`, `fit` and `map`.

Field names are unique across the sections (the flags drop the section prefix: `fit.fit_steps` is
`--fit-steps`). The values that matter for results are declared once, in `ncajax.config` (FIT_STEPS,
HELDOUT_FRAMES, the `TrainConfig` defaults, ...), and only referenced here. Library configs come out of
`train_config()`, `mapping_config()` and `corpus_config()`; `StudyConfig.options()` gives the flat
`study.StudyOptions` that `study.run_study` takes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from ..config import (
    CONTROL_SEEDS,
    CONTROL_STEPS,
    CORPUS_REALISM,
    FIT_FRAMES_MIN,
    FIT_FRAMES_MULTIPLE,
    FIT_FRAMES_PER_BIN,
    FIT_LEARNING_RATE,
    FIT_STEPS,
    HELDOUT_FRAMES,
    MODEL_NAMES,
    PRESETS,
    STUDY_SEEDS,
    TRAIN_RECIPES,
    CorpusConfig,
    MappingConfig,
    TrainConfig,
    check_fit_frames,
    default_settings,
    fit_frames_for,
    from_dict,
    jacobian_chunk_for,
    preset,
    to_dict,
    train_recipe,
)

ModelName = Literal["dae", "dae_deep", "dae_sf"]
assert set(ModelName.__args__) == set(MODEL_NAMES)  # noqa: S101 - kept in step with config.MODEL_NAMES

# The real MUSDB18 track scored beside the test songs by default, when it is there (the shared sample
# folder beside the repository: ncajax/study/_options.py -> the repository's parent folder).
REAL_TEST = Path(__file__).resolve().parents[3] / "shared" / "data" / "musdb18-sample"
# The fields of `TrainConfig` a named training recipe sets (`config.TRAIN_RECIPES`).
RECIPE_FIELDS = ("recipe", "loss", "augment_gain_db", "augment_remix", "augment_stem_gain_db", "mask_bias")

_PRESET_TEXT = ", ".join(f"{name} ({PRESETS[name].sample_rate / 1000:g} kHz, N={PRESETS[name].n_bins})"
                         for name in PRESETS)
_FIT_FRAMES_TEXT = (
    f"training-song frames each mapping is fitted on (default: {FIT_FRAMES_PER_BIN} N rounded up to a multiple "
    f"of {FIT_FRAMES_MULTIPLE}, at least {FIT_FRAMES_MIN}: "
    + ", ".join(f"{name} {fit_frames_for(PRESETS[name].n_bins)}" for name in PRESETS) + "; at least N)")


def _help(text: str) -> Any:
    return tyro.conf.arg(help=text)


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """Data: the embedded synthetic corpus (default) or MUSDB18, and the STFT preset."""

    musdb_root: str | None = None
    """MUSDB18 root (stems) or MUSDB18-HQ root (--is-wav); default: the embedded synthetic corpus"""
    is_wav: bool = False
    """read --musdb-root as MUSDB18-HQ wav folders"""
    preset: Annotated[str, _help(f"STFT preset: {_PRESET_TEXT}")] = "fast"
    corpus_seed: int = CorpusConfig.seed
    """seed of the embedded corpus"""
    corpus_tracks: Annotated[tuple[int, int] | None, _help(
        f"size of the embedded corpus, TRAIN TEST songs (default {CorpusConfig.n_train} {CorpusConfig.n_test})")] = None
    corpus_seconds: Annotated[float | None, _help(
        f"duration of each corpus track in seconds (default {CorpusConfig.duration:g})")] = None
    corpus_realism: Annotated[str, _help(
        f"generator of the embedded corpus, one of {', '.join(CORPUS_REALISM)} (ncajax.data)")] = (
        CorpusConfig.realism)

    def corpus_config(self) -> CorpusConfig | None:
        """The embedded corpus at the preset's rate (None with --musdb-root)."""
        if self.musdb_root is not None:
            return None
        kw: dict = {"sample_rate": preset(self.preset).sample_rate, "seed": self.corpus_seed,
                    "realism": self.corpus_realism}
        if self.corpus_tracks:
            kw.update(n_train=self.corpus_tracks[0], n_test=self.corpus_tracks[1])
        if self.corpus_seconds:
            kw["duration"] = self.corpus_seconds
        return CorpusConfig(**kw)

    def check(self) -> None:
        preset(self.preset)
        if self.corpus_seed < 0:
            raise ValueError(f"corpus_seed must be a non-negative integer, got {self.corpus_seed}")


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Training: a named recipe (config.TRAIN_RECIPES) and the optimisation; a recipe field left unset
    (None) is the recipe's."""

    recipe: Annotated[str, _help(f"training recipe, one of {sorted(TRAIN_RECIPES)} (config.TRAIN_RECIPES)")] = "study"
    seeds: int = STUDY_SEEDS
    """seeds per model, trained in one vmapped program"""
    seed: int = TrainConfig.seed
    """first training seed (seeds seed, seed+1, ...)"""
    epochs: int = TrainConfig.max_epochs
    """maximum training epochs (early stopping on the validation loss)"""
    batch_size: int = TrainConfig.batch_size
    train_lr: float = TrainConfig.learning_rate
    """Adam learning rate of the training"""
    loss: str | None = None
    """training loss: mse, l1 or gkl (default: the recipe's)"""
    augment_gain_db: float | None = None
    """half-width (dB) of each example's random gain, 0-40 (default: the recipe's)"""
    augment_remix: float | None = None
    """probability that a training example's stems come from different songs, 0-1 (default: the recipe's)"""
    augment_stem_gain_db: float | None = None
    """half-width (dB) of each stem's random gain in the remix, 0-24 (default: the recipe's)"""
    mask_bias: float | None = None
    """initial bias of dae_sf's mask output layer, 0-10 (default: the recipe's)"""

    def train_config(self) -> TrainConfig:
        """The `TrainConfig` of these options (checked: an out-of-range value names the field)."""
        overrides = {k: getattr(self, k) for k in RECIPE_FIELDS[1:] if getattr(self, k) is not None}
        return train_recipe(self.recipe, max_epochs=self.epochs, n_seeds=self.seeds, seed=self.seed,
                            batch_size=self.batch_size, learning_rate=self.train_lr, **overrides)

    @classmethod
    def from_train_config(cls, cfg: TrainConfig) -> TrainOptions:
        """The options that give `cfg` back (a training run's recorded config)."""
        base = "study" if cfg.recipe == "standardised" else "raw_mse"
        recipe = TRAIN_RECIPES[base]
        overrides = {k: getattr(cfg, k) for k in RECIPE_FIELDS[1:]
                     if getattr(cfg, k) != recipe.get(k, getattr(TrainConfig, k))}
        out = cls(recipe=base, seeds=cfg.n_seeds, seed=cfg.seed, epochs=cfg.max_epochs,
                  batch_size=cfg.batch_size, train_lr=cfg.learning_rate, **overrides)
        if out.train_config() != dataclasses.replace(cfg, max_steps_per_epoch=None):
            raise ValueError(f"cannot express the recorded training config {to_dict(cfg)} as options")
        return out


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """Mapping fits: fitted on frames pooled over the training songs, judged on the unseen test songs."""

    fit_steps: int = FIT_STEPS
    """Adam steps of the converged NCA and linear-student fits"""
    fit_lr: float = FIT_LEARNING_RATE
    """learning rate of the converged NCA and linear-student fits"""
    fit_frames: Annotated[int | None, _help(_FIT_FRAMES_TEXT)] = None
    heldout_frames: int = HELDOUT_FRAMES
    """frames of each unseen test song scored"""
    jacobian_chunk: int | None = None
    """frames of per-frame Jacobians formed at a time, seed by seed (default: the most whose (chunk, N, N)
    float32 block fits in 16 MiB on a CPU, 512 MiB on an accelerator)"""
    extra_settings: bool = False
    """also fit the NCA variants (output-unit bias, uniform init) and the student at 600 steps"""
    control_steps: Annotated[tuple[int, ...], _help(
        "run the under-convergence control of the authors' and the converged NCA at these Adam step counts "
        f"(the committed study: {' '.join(map(str, CONTROL_STEPS))}; default: none, it costs 10,000-step fits; "
        "with --corpora only the first corpus runs it)")] = ()
    control_seeds: int = CONTROL_SEEDS
    """seeds per model of the under-convergence control (the first ones)"""

    def check(self, preset_name: str) -> None:
        """Every size against the preset's N, before any data are read (the flags' names in errors)."""
        n_bins = preset(preset_name).n_bins
        check_fit_frames(self.fit_frames, n_bins, option="--fit-frames", preset_name=preset_name)
        jacobian_chunk_for(n_bins, self.jacobian_chunk, option="--jacobian-chunk")

    def mapping_config(self, preset_name: str, seeds: int) -> MappingConfig:
        """The mapping stage's config for models of `seeds` seeds, resolved against the preset."""
        cfg = MappingConfig(settings=default_settings(self.fit_steps, self.fit_lr, extra=self.extra_settings),
                            n_fit_frames=self.fit_frames, heldout_frames_per_song=self.heldout_frames,
                            jacobian_chunk=self.jacobian_chunk, control_steps=tuple(self.control_steps),
                            control_seeds=None if not self.control_steps else min(self.control_seeds or seeds,
                                                                                   seeds))
        return cfg.resolved(preset(preset_name), preset_name=preset_name)


@dataclasses.dataclass(frozen=True)
class EvaluateOptions:
    """Evaluation: museval SDR/SIR/SAR and magnitude SDR on the test songs and a real MUSDB18 folder."""

    no_bss: bool = False
    """skip museval (magnitude SDR only; needs no ffmpeg)"""
    real_test: Annotated[str | None, _help(
        f"MUSDB18 root scored as real music, every track whole (default: {REAL_TEST.name} beside the "
        "repository when it is there and BSS Eval is on; 'none' skips it)")] = None

    def real_root(self) -> str | None:
        """The folder scored as real music: --real-test, or the shared sample when present."""
        if self.real_test is None:
            return str(REAL_TEST) if any(REAL_TEST.glob("*/*.stem.mp4")) and not self.no_bss else None
        return None if self.real_test.lower() == "none" else self.real_test


@dataclasses.dataclass(frozen=True)
class FigureOptions:
    """Figures and report."""

    figures_dir: str | None = None
    """also copy the figures, REPORT.md and the JSON behind it here"""


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """The whole study: every stage's options, nested. Round-trips through JSON (`to_json` /
    `from_json`, `save` / `load`)."""

    data: DataOptions = DataOptions()
    train: TrainOptions = TrainOptions()
    fit: FitOptions = FitOptions()
    evaluate: EvaluateOptions = EvaluateOptions()
    figures: FigureOptions = FigureOptions()
    models: tuple[ModelName, ...] = MODEL_NAMES
    """models to train, fit and evaluate"""
    corpora: int = 1
    """run the study on this many corpus seeds (--corpus-seed, +1, ...; the embedded corpus only)"""
    recipe_control: bool = False
    """also train the models with the earlier raw-magnitude MSE recipe (3 seeds) and map them with the
    primary estimator: what dying output units did to the mappings"""

    def to_json(self) -> dict:
        return json.loads(json.dumps(to_dict(self)))

    @classmethod
    def from_json(cls, data: dict) -> StudyConfig:
        return from_dict(cls, data)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> StudyConfig:
        return cls.from_json(json.loads(Path(path).read_text()))

    def options(self):
        """The flat `study.StudyOptions` of this config (checked against the preset)."""
        from ._study import StudyOptions

        if tuple(self.models) != MODEL_NAMES:
            raise ValueError(f"the study compares all of {list(MODEL_NAMES)}; run single stages (ncajax train / "
                             f"fit / evaluate --models ...) for a subset, got --models {' '.join(self.models)}")
        if self.corpora < 1:
            raise ValueError(f"--corpora must be >= 1, got {self.corpora}")
        return StudyOptions(**self._flat(), train_options=self.train)

    def _flat(self) -> dict:
        d, t, f, e = self.data, self.train, self.fit, self.evaluate
        return dict(
            musdb_root=d.musdb_root, is_wav=d.is_wav, preset=d.preset, seeds=t.seeds, epochs=t.epochs,
            fit_steps=f.fit_steps, fit_lr=f.fit_lr, fit_frames=f.fit_frames, heldout_frames=f.heldout_frames,
            extra_settings=f.extra_settings, with_bss=not e.no_bss, corpus_seed=d.corpus_seed,
            corpus_tracks=tuple(d.corpus_tracks) if d.corpus_tracks else None, corpus_seconds=d.corpus_seconds,
            corpus_realism=d.corpus_realism,
            real_test=e.real_root(), jacobian_chunk=f.jacobian_chunk, control_steps=tuple(f.control_steps),
            control_seeds=f.control_seeds, recipe=t.recipe, recipe_control=self.recipe_control)
