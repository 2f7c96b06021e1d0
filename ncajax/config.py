"""Frozen configuration dataclasses for every stage, named STFT presets, JSON round trip.

Every stage of the study is driven by one of these dataclasses. They are frozen (hashable, safe to close
over in jitted code) and serialise to plain JSON dicts, which is what run directories and checkpoints store
and what `mismatch` compares when a checkpoint or cache is reused.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import numbers
import os
import types
import typing
from typing import Any, TypeVar

from ._estimators import (
    METHODS,
    NCA,
    Estimator,
    LeastSquares,
    MeanJacobian,
    Student,
    from_setting_dict,
)

__all__ = [
    "CONTROL_SEEDS",
    "CONTROL_SETTINGS",
    "CONTROL_STEPS",
    "CORPUS_REALISM",
    "CorpusConfig",
    "DEFAULT_REALISM",
    "DIAGONAL_BAND_HZ",
    "FIT_FRAMES_MIN",
    "FIT_FRAMES_MULTIPLE",
    "FIT_FRAMES_PER_BIN",
    "FIT_LEARNING_RATE",
    "FIT_STEPS",
    "HELDOUT_FRAMES",
    "JACOBIAN_BLOCK_BYTES",
    "JACOBIAN_CPU_BLOCK_BYTES",
    "JACOBIAN_LIVE_BLOCKS",
    "KEEP_SUFFICES",
    "LOSSES",
    "MASK_BIAS",
    "METHODS",
    "MODEL_LOSSES",
    "MODEL_NAMES",
    "MappingConfig",
    "ModelConfig",
    "NEAR_DIAGONAL_BAND_HZ",
    "PER_MODEL_LOSS",
    "PRESETS",
    "PRIMARY_ESTIMATOR",
    "PRIMARY_METRIC",
    "SETTING_NAMES",
    "STFTConfig",
    "STUDY_SEEDS",
    "TRAIN_RECIPES",
    "TrainConfig",
    "VOICE_BAND_HZ",
    "band_bins",
    "check_fit_frames",
    "default_settings",
    "fingerprint",
    "fit_frames_for",
    "from_dict",
    "jacobian_chunk_for",
    "memory_bytes",
    "mismatch",
    "preset",
    "to_dict",
    "train_recipe",
]

T = TypeVar("T")

MODEL_NAMES = ("dae", "dae_deep", "dae_sf")
LOSSES = ("mse", "l1", "gkl")
# TrainConfig.loss "per_model": the study's loss per separator (`TrainConfig.for_model`), measured on
# 2026-12-07 (3 seeds each, fast corpus seeds 0 and 1 and the mid preset; benchmarks/bench_recipe_sweep.py,
# results-recipe-sweep-cpu-2026-12-07.jsonl): with L1 the DAEs' output units die where the vocals are absent
# in most frames (the L1-optimal output of such a bin is 0; `dae` on corpus seed 1: 4-12 % dead, mid: test
# gain 5.3 dB), with MSE they stay alive (1.4-4.7 % dead) and separate better at mid (7.5-8.0 dB); the
# skip-filtering mask keeps its units alive with L1 and a mask-bias start, and MSE costs it 1-5 dB.
PER_MODEL_LOSS = "per_model"
MODEL_LOSSES = {"dae": "mse", "dae_deep": "mse", "dae_sf": "l1"}


@dataclasses.dataclass(frozen=True)
class STFTConfig:
    """Short-time Fourier transform settings. `n_bins = n_fft // 2 + 1` is the model size N."""

    sample_rate: int = 8000
    n_fft: int = 256
    win_length: int = 256
    hop_length: int = 64
    window: str = "hann"

    def __post_init__(self):
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.n_fft <= 0 or self.n_fft % 2:
            raise ValueError(f"n_fft must be a positive even number, got {self.n_fft}")
        if self.win_length <= 0 or self.win_length > self.n_fft:
            raise ValueError(
                f"win_length ({self.win_length}) must be in [1, n_fft={self.n_fft}]: "
                "a window longer than the FFT cannot be used; raise n_fft or shorten the window"
            )
        if self.hop_length <= 0:
            raise ValueError(f"hop_length must be positive, got {self.hop_length}")
        if self.hop_length > self.win_length:
            raise ValueError(
                f"hop_length ({self.hop_length}) exceeds win_length ({self.win_length}): "
                "frames would leave gaps and the inverse STFT could not reconstruct the signal"
            )

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1


PRESETS: dict[str, STFTConfig] = {
    # Fast default for the embedded corpus: 8 kHz (the voice band up to 4 kHz), 32 ms Hann window,
    # 8 ms hop -> N = 129 bins of 31.25 Hz, the same frequency resolution as 16 kHz / 512 points.
    "fast": STFTConfig(sample_rate=8000, n_fft=256, win_length=256, hop_length=64, window="hann"),
    # The middle rung: 16 kHz (the voice band with its sibilance up to 8 kHz), 64 ms Hann window, 16 ms
    # hop -> N = 513 bins of 15.625 Hz (between fast's 31.25 Hz and paper's 10.8 Hz), 62.5 frames/s; 4x
    # fast's N at a cost a 2-core CPU can run (the study's matrices are 513 x 513, fits on 2304 frames).
    "mid": STFTConfig(sample_rate=16000, n_fft=1024, win_length=1024, hop_length=256, window="hann"),
    # The authors' analysis settings in their related papers (Mimilakis et al.): 44.1 kHz, Hamming window
    # of 2049 samples zero-padded to a 4096-point FFT, hop 384 -> N = 2049 bins.
    "paper": STFTConfig(
        sample_rate=44100, n_fft=4096, win_length=2049, hop_length=384, window="hamming"
    ),
}


def preset(name: str) -> STFTConfig:
    """The STFT preset called `name`: the resolution ladder "fast" (8 kHz, N = 129), "mid" (16 kHz,
    N = 513) or "paper" (44.1 kHz, N = 2049)."""
    if name not in PRESETS:
        raise ValueError(f"unknown STFT preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


# CorpusConfig.realism: "v3" is the corpus of format 3 (the study's before 2026-12-07, byte for byte);
# "v4" adds stereo stems with panning, wider vocal processing and timbres, and more sustained instruments
# in the singer's register (`ncajax.data`, "Realism v4"). Corpus format 4 records the field.
CORPUS_REALISM = ("v3", "v4")
DEFAULT_REALISM = "v4"


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    """The embedded synthetic multitrack corpus (see `ncajax.data`). `n_train` songs form the
    training split (the validation songs are carved out of it); `sample_rate` is the "fast" preset's
    (the pipeline and the study generate the corpus at their preset's rate). `realism` picks the
    generator (CORPUS_REALISM): "v4" (default) the stereo, more varied one, "v3" the earlier corpus."""

    seed: int = 0
    n_train: int = 60
    n_test: int = 30
    duration: float = 5.0
    sample_rate: int = PRESETS["fast"].sample_rate
    realism: str = DEFAULT_REALISM

    def __post_init__(self):
        if self.realism not in CORPUS_REALISM:
            raise ValueError(
                f"unknown corpus realism {self.realism!r}; choose one of {CORPUS_REALISM} "
                f"(e.g. CorpusConfig(realism=\"{DEFAULT_REALISM}\"))"
            )
        if self.n_train < 2 or self.n_test < 1:
            raise ValueError(
                f"the corpus needs at least 2 train tracks (train + validation) and 1 test track, "
                f"got n_train={self.n_train}, n_test={self.n_test}"
            )
        if self.duration <= 0:
            raise ValueError(f"duration must be positive seconds, got {self.duration}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A separator: `name` (a built-in of MODEL_NAMES, or a label for a custom module passed to
    `train_model(model=...)`), `n_bins` = N, hidden width (None -> N)."""

    name: str = "dae"
    n_bins: int = 129
    hidden: int | None = None

    def __post_init__(self):
        if not self.name:
            raise ValueError("a model needs a name")
        if self.n_bins < 1:
            raise ValueError(f"n_bins must be positive, got {self.n_bins}")
        if self.hidden is not None and self.hidden < 1:
            raise ValueError(f"hidden must be positive or None, got {self.hidden}")


MASK_BIAS = 1.0  # TrainConfig.mask_bias default (see there)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation of one model over `n_seeds` seeds trained together (seeds seed, seed+1, ...)."""

    learning_rate: float = 1e-3
    batch_size: int = 256
    max_epochs: int = 30
    patience: int = 5
    # The study's recipe ("study"): "standardised" + a random +-12 dB gain per example
    # (benchmarks/results-recipes-cpu-2026-12-07.jsonl: raw magnitudes + MSE, `TRAIN_RECIPES["raw_mse"]`,
    # left 21-23 % of the DAEs' output units dead), the loss per model (MODEL_LOSSES: MSE for the DAEs, L1
    # for dae_sf) and the mask-bias start below (results-recipe-sweep-cpu-2026-12-07.jsonl).
    # `loss`: one of LOSSES, or "per_model" (MODEL_LOSSES; resolved by `for_model`, and a run records the
    # resolved loss).
    loss: str = PER_MODEL_LOSS
    seed: int = 0
    n_seeds: int = 1
    max_steps_per_epoch: int | None = None
    # "standardised": train on x_j / s_j and y_i / t_i (s, t the per-bin RMS of the training frames,
    # stored with the run) and fold the scaling into the first/last dense layers after training, so the
    # saved model is the plain architecture on raw magnitudes (`ncajax.models.fold_scaling`).
    # "raw": raw magnitudes in and out (the recipe before 2026-12-05; with loss="mse" it is "raw_mse").
    recipe: str = "standardised"
    # random gain per training example, uniform in dB on [-augment_gain_db, +augment_gain_db], applied to
    # mixture and target alike (a pure function of (seed, step)); 0 turns it off
    augment_gain_db: float = 12.0
    # stem remix (as open-unmix augments), training batches only: with probability augment_remix an
    # example's four stems (vocals, drums, bass, other) come from independent random frames of the whole
    # training split (other songs) instead of one frame; every stem gets its own random gain, uniform in dB
    # on [-augment_stem_gain_db, +augment_stem_gain_db]; the mixture is the complex sum of the scaled
    # stems' STFTs, the target the scaled vocals (`ncajax.data.StemsCache.remix_batch`, a pure
    # function of (seed, step)). Either > 0 (`remixes`) draws training batches from the stems cache;
    # validation and test stay on the real mixtures. 0 and 0 turn it off.
    augment_remix: float = 0.0
    augment_stem_gain_db: float = 0.0
    # initial bias of `dae_sf`'s mask output layer (the mask m(x) starts near 1: the mixture passes);
    # every other bias starts at zero, and `dae` / `dae_deep` ignore it. 0 is the recipe of 2026-12-05..07
    # ("study_zero_bias"): at the `mid` preset it left 76-82 % of the mask units dead on the held-out
    # songs and the models 3.3-3.5 dB above the mixture; 1.0 keeps 0-1.6 % dead and reaches 7.8-8.5 dB
    # (3 seeds; benchmarks/bench_recipe_sweep.py, results-recipe-sweep-cpu-2026-12-07.jsonl). The same
    # start on the DAEs' output layers kills them (every output unit dead at 1.0): a mask-only option.
    mask_bias: float = MASK_BIAS

    def __post_init__(self):
        if self.recipe not in ("standardised", "raw"):
            raise ValueError(
                f"unknown recipe {self.recipe!r}; choose 'standardised' (per-bin RMS scaling, folded "
                "into the saved model) or 'raw' (today's raw magnitudes, e.g. recipe='raw', loss='mse')"
            )
        if not 0.0 <= self.augment_gain_db <= 40.0:
            raise ValueError(
                f"augment_gain_db must be between 0 and 40 dB (the half-width of the random gain range; "
                f"e.g. augment_gain_db=12.0), got {self.augment_gain_db}"
            )
        if not 0.0 <= self.augment_remix <= 1.0:
            raise ValueError(
                f"augment_remix must be a probability between 0 and 1 (the share of training examples "
                f"whose stems come from different songs; e.g. augment_remix=0.5), got {self.augment_remix}"
            )
        if not 0.0 <= self.augment_stem_gain_db <= 24.0:
            raise ValueError(
                f"augment_stem_gain_db must be between 0 and 24 dB (the half-width of each stem's random "
                f"gain range; e.g. augment_stem_gain_db=6.0), got {self.augment_stem_gain_db}"
            )
        if not 0.0 <= self.mask_bias <= 10.0:
            raise ValueError(
                f"mask_bias must be between 0 and 10 (the initial bias of dae_sf's mask output layer; "
                f"e.g. mask_bias={MASK_BIAS}), got {self.mask_bias}"
            )
        if self.loss not in (*LOSSES, PER_MODEL_LOSS):
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {(*LOSSES, PER_MODEL_LOSS)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be positive, got {self.max_epochs}")
        if self.patience < 1:
            raise ValueError(f"patience must be positive, got {self.patience}")
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed}")
        if self.n_seeds < 1:
            raise ValueError(f"n_seeds must be positive, got {self.n_seeds}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError(f"max_steps_per_epoch must be positive or None, got {self.max_steps_per_epoch}")

    def for_model(self, name: str | None) -> "TrainConfig":
        """This config with a "per_model" loss resolved for the separator `name` (MODEL_LOSSES; "l1" for
        a name outside it, e.g. a custom module's label); any other loss is returned as is."""
        if self.loss != PER_MODEL_LOSS:
            return self
        return dataclasses.replace(self, loss=MODEL_LOSSES.get(name or "", "l1"))

    @property
    def remixes(self) -> bool:
        """Whether training batches come from the stem remix (`augment_remix` or
        `augment_stem_gain_db` > 0)."""
        return self.augment_remix > 0 or self.augment_stem_gain_db > 0


# Named training recipes (TrainConfig fields): "study" is the default TrainConfig; "study_zero_bias" the
# study's recipe of 2026-12-05..07 (L1 for every model, all biases start at zero, the mask's too); "raw_mse"
# the recipe before 2026-12-05 (raw magnitudes in and out, MSE, no augmentation, zero biases), kept for the
# study's recipe control; "remix" adds open-unmix-style stem remixing across songs with +-6 dB per-stem
# gains.
TRAIN_RECIPES: dict[str, dict[str, Any]] = {
    "study": {"recipe": "standardised", "loss": PER_MODEL_LOSS, "augment_gain_db": 12.0,
              "mask_bias": MASK_BIAS},
    "study_zero_bias": {"recipe": "standardised", "loss": "l1", "augment_gain_db": 12.0, "mask_bias": 0.0},
    "raw_mse": {"recipe": "raw", "loss": "mse", "augment_gain_db": 0.0, "mask_bias": 0.0},
    "remix": {"recipe": "standardised", "loss": PER_MODEL_LOSS, "augment_gain_db": 12.0,
              "augment_remix": 0.5, "augment_stem_gain_db": 6.0, "mask_bias": MASK_BIAS},
}


def train_recipe(name: str, **overrides) -> TrainConfig:
    """`TrainConfig` of the named recipe (`TRAIN_RECIPES`), with `overrides` (e.g. n_seeds=3)."""
    if name not in TRAIN_RECIPES:
        raise ValueError(f"unknown training recipe {name!r}; choose one of {sorted(TRAIN_RECIPES)}")
    return TrainConfig(**{**TRAIN_RECIPES[name], **overrides})


# METHODS ("nca", "student", "lstsq", "jacobian"): the methods of `ncajax.nca.fit_mapping`'s estimators.
# The names of the fit settings of `default_settings`, in the order tables and figures list them.
SETTING_NAMES = ("nca_authors", "nca_converged", "nca_output_bias", "nca_uniform", "student_authors",
                 "student_converged", "lstsq", "jacobian")
(NCA_AUTHORS, NCA_CONVERGED, NCA_OUTPUT_BIAS, NCA_UNIFORM, STUDENT_AUTHORS, STUDENT_CONVERGED, LSTSQ,
 JACOBIAN) = SETTING_NAMES
# The study's pre-declared primary estimator and metric: the verdict is theirs; every other setting and
# metric is a secondary opinion reported beside it.
PRIMARY_ESTIMATOR = NCA_CONVERGED
# PRIMARY_METRIC (2026-12-05): "diagonal_keep", the share of a mapping's held-out advantage over
# predicting silence that its diagonal part diag(C) keeps, (err_zero - err_diag) / (err_zero - err_full),
# relative L1 on unseen songs, predictions clipped at 0. It replaced "weighted_diagonal_energy_ratio"
# (still reported, secondary) because the claim is functional ("the DAEs act as scalar filtering
# operators"): an energy ratio of C's weights can be low while the off-diagonal weights do nothing on
# the data (or high while the few off-diagonal weights carry the fit); the kept share tests directly
# whether the diagonal alone does what C does. Direction: DAE - dae_sf of it.
PRIMARY_METRIC = "diagonal_keep"
# Half-width (Hz) of the band part of C: entries with |f_i - f_j| <= DIAGONAL_BAND_HZ.
DIAGONAL_BAND_HZ = 100.0
# The voice band the restricted structure metrics count (Hz; the top is min(Nyquist, VOICE_BAND_HZ[1])).
VOICE_BAND_HZ = (80.0, 8000.0)
# "diag(C) keeps its advantage": the lower end of the keep share's 95 % interval is at least this.
KEEP_SUFFICES = 0.9
# The converged iterative fits (NCA and student): steps and Adam learning rate.
FIT_STEPS = 3000
# Trained seeds per model in the study (one vmapped program per model); the verdict resamples them.
STUDY_SEEDS = 10
FIT_LEARNING_RATE = 1e-3
# The under-convergence control (`MappingConfig.control_steps`): each NCA setting of CONTROL_SETTINGS
# (the authors' 600 steps at lr 1e-4 and the primary estimator) fitted once per seed to the largest of
# CONTROL_STEPS Adam steps, C kept after each step count; 0 is C at the initial P (P frozen, no step).
CONTROL_STEPS = (0, 600, 3000, 10000)
# seeds per model of the control in the study (its intervals resample them; the pooled fits use all)
CONTROL_SEEDS = 5
CONTROL_SETTINGS = (NCA_AUTHORS, NCA_CONVERGED)
# The fit set of the mapping stage scales with the preset: FIT_FRAMES_PER_BIN * N frames (an N x N fit
# on fewer frames than bins is underdetermined; 4 N keeps least squares and NCA well posed), rounded up
# to a multiple of FIT_FRAMES_MULTIPLE and at least FIT_FRAMES_MIN: fast 1024, mid 2304, paper 8448.
FIT_FRAMES_PER_BIN = 4
FIT_FRAMES_MULTIPLE = 256
FIT_FRAMES_MIN = 1024
# Half-width (Hz) of the near-diagonal band of the structure metrics (`near_diagonal_energy`), converted
# to whole bins per preset (at least 1): 62.5 Hz is the 2 bins of 31.25 Hz the study counted at the fast
# preset when the band was given in bins (mid: 4 bins, paper: 6).
NEAR_DIAGONAL_BAND_HZ = 62.5
# The automatic chunk of the mean Jacobian: the most frames whose (chunk, N, N) float32 block of
# per-frame Jacobians fits in JACOBIAN_BLOCK_BYTES on an accelerator (fast: 8065 frames, mid 510, paper
# 31) and in JACOBIAN_CPU_BLOCK_BYTES on a CPU (fast 252, mid 15, paper 1), where a block that stays
# near the caches is faster: 512 mid-preset Jacobians took 1.2 s in 16 MiB blocks and 3.6 s in 512 MiB
# blocks on the 2-core CPU. The choice is made where the stage runs (`mappings.jacobian_chunk`) and is
# not part of the stage's config, so a run directory is reused on either kind of machine.
JACOBIAN_BLOCK_BYTES = 512 * 2**20
JACOBIAN_CPU_BLOCK_BYTES = 16 * 2**20
# While a chunk is formed about this many (chunk, N, N) blocks are alive (the forward-mode tangents of
# each layer, the dae_sf parts): an explicit chunk is refused when that many blocks exceed the memory.
JACOBIAN_LIVE_BLOCKS = 4
# Frames of each unseen test song on which every mapping is judged (`MappingConfig.heldout_frames_per_song`,
# `--heldout-frames`).
HELDOUT_FRAMES = 256


def fit_frames_for(n_bins: int) -> int:
    """The default fit set of an N-bin model: FIT_FRAMES_PER_BIN * N rounded up to a multiple of
    FIT_FRAMES_MULTIPLE, at least FIT_FRAMES_MIN (fast N = 129: 1024, mid 513: 2304, paper 2049: 8448)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be positive, got {n_bins}")
    frames = math.ceil(FIT_FRAMES_PER_BIN * n_bins / FIT_FRAMES_MULTIPLE) * FIT_FRAMES_MULTIPLE
    return max(FIT_FRAMES_MIN, frames)


def check_fit_frames(n_fit_frames: int | None, n_bins: int, *, option: str = "n_fit_frames",
                     preset_name: str | None = None) -> int:
    """The fit set for an N-bin model: `fit_frames_for(n_bins)` for None, else n_fit_frames, refused
    (one ValueError naming `option`, N and a working value) when it has fewer frames than bins."""
    if n_fit_frames is None:
        return fit_frames_for(n_bins)
    if n_fit_frames < n_bins:
        at = f"preset {preset_name!r}" if preset_name else "this STFT"
        raise ValueError(
            f"{option} {n_fit_frames} is fewer fit frames than the N = {n_bins} frequency bins of {at}: "
            f"an N x N mapping fitted on fewer frames than bins is underdetermined; use {option} "
            f"{fit_frames_for(n_bins)} or more (the default for N = {n_bins}, {FIT_FRAMES_PER_BIN} N "
            f"rounded up), at the very least {n_bins}"
        )
    return int(n_fit_frames)


def memory_bytes() -> int | None:
    """Physical memory of this machine in bytes (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def jacobian_chunk_for(n_bins: int, chunk: int | None = None, *, option: str = "jacobian_chunk",
                       memory: int | None = None, budget: int = JACOBIAN_BLOCK_BYTES) -> int:
    """Frames per chunk of the mean Jacobian for an N-bin model. None: the most frames whose
    `(chunk, N, N)` float32 block fits in `budget` bytes (at least 1). An explicit chunk is refused (one
    ValueError naming `option` and a working value, the chunk of a JACOBIAN_BLOCK_BYTES block) when
    JACOBIAN_LIVE_BLOCKS such blocks exceed `memory` (default: this machine's physical memory)."""
    block = 4 * n_bins * n_bins  # one frame's float32 Jacobian
    if chunk is None:
        return max(1, budget // block)
    auto = max(1, JACOBIAN_BLOCK_BYTES // block)
    if isinstance(chunk, bool) or not isinstance(chunk, numbers.Integral) or chunk < 1:
        raise ValueError(f"{option} must be a positive integer (frames per chunk) or unset, got {chunk!r}; "
                         f"e.g. {option} {auto}")
    memory = memory_bytes() if memory is None else memory
    need = JACOBIAN_LIVE_BLOCKS * chunk * block
    if memory is not None and need > memory:
        raise ValueError(
            f"{option} {chunk} cannot fit in memory: {chunk} Jacobians of {n_bins} x {n_bins} float32 is a "
            f"{chunk * block / 2**30:.1f} GiB block (~{need / 2**30:.1f} GiB while a chunk is formed), more "
            f"than this machine's {memory / 2**30:.1f} GiB; use {option} {auto} (a "
            f"{auto * block / 2**20:.0f} MiB block) or leave it unset (automatic)"
        )
    return int(chunk)


def band_bins(band_hz: float, stft: STFTConfig) -> int:
    """A band half-width in Hz as whole bins of `stft` (rounded to the nearest, at least 1)."""
    width = stft.sample_rate / stft.n_fft
    return max(1, math.floor(band_hz / width + 0.5))


def default_settings(
    steps: int = FIT_STEPS, learning_rate: float = FIT_LEARNING_RATE, *, extra: bool = False
) -> tuple[Estimator, ...]:
    """The study's fit settings, estimators of `ncajax.nca` named by SETTING_NAMES: the authors' NCA at
    their defaults and converged (the primary estimator), the converged linear student, least squares
    and the mean Jacobian. `extra` adds the NCA variants (output-unit bias, uniform start) and the
    student at the authors' defaults."""
    out = (
        NCA(600, 1e-4, "xavier_normal", "input", name=NCA_AUTHORS),
        NCA(steps, learning_rate, "xavier_normal", "input", name=NCA_CONVERGED),
        Student(steps, learning_rate, "xavier_normal", name=STUDENT_CONVERGED),
        LeastSquares(name=LSTSQ),
        MeanJacobian(name=JACOBIAN),
    )
    if extra:
        out += (
            NCA(steps, learning_rate, "xavier_normal", "output", name=NCA_OUTPUT_BIAS),
            NCA(steps, learning_rate, "uniform", "input", name=NCA_UNIFORM),
            Student(600, 1e-4, "xavier_normal", name=STUDENT_AUTHORS),
        )
    return out


@dataclasses.dataclass(frozen=True)
class MappingConfig:
    """The mapping stage's protocol: fit on frames pooled over the training songs, judge on the
    held-out test songs (`heldout_frames_per_song` frames of each), per seed and song.

    The sizes that depend on the STFT are resolved against its N by `resolved(stft)` (the stage does it
    before any work): n_fit_frames None -> `fit_frames_for(N)` (an explicit value below N is refused);
    jacobian_chunk (frames of per-frame Jacobians formed at a time, seed by seed): None stays None, the
    stage picks the chunk for its machine (`mappings.jacobian_chunk`); an explicit one that cannot fit
    in memory is refused (`jacobian_chunk_for`). The near-diagonal band of the structure metrics is
    `band_hz` either side, in whole bins of the STFT (`near_band_bins`); band_k: that band in bins, as
    run directories written before band_hz stored it (when set it wins).
    """

    settings: tuple[Estimator, ...] = default_settings()
    n_fit_frames: int | None = None
    heldout_frames_per_song: int = HELDOUT_FRAMES
    jacobian_frames: int = 512
    linearity_frames: int = 512
    linearity_seeds: int = 3
    band_k: int | None = None
    seed: int = 0
    jacobian_chunk: int | None = None
    band_hz: float = NEAR_DIAGONAL_BAND_HZ
    # the under-convergence control: Adam step counts at which the CONTROL_SETTINGS fits are kept (one
    # fit per seed to the largest, e.g. CONTROL_STEPS); () (default) runs no control
    control_steps: tuple[int, ...] = ()
    # the control fits the first `control_seeds` seeds of each model (None: all); it costs as much as
    # 10,000-step fits, so the study runs it on fewer seeds than the pooled fits
    control_seeds: int | None = None

    def __post_init__(self):
        for i, s in enumerate(self.settings):  # each estimator checked its own options when made
            if not isinstance(s, Estimator):
                raise ValueError(f"settings[{i}] must be an estimator of ncajax.nca (NCA, Student, LeastSquares, "
                                 f"MeanJacobian), got {type(s).__name__}; e.g. settings=(NCA(name=\"nca\"),)")
        names = [s.name for s in self.settings]
        if len(set(names)) != len(names):
            raise ValueError(f"fit setting names must be unique, got {names}; give each estimator its own name=")
        for field in ("n_fit_frames", "heldout_frames_per_song", "jacobian_frames", "linearity_frames"):
            value = getattr(self, field)
            if value is not None and value < 2:
                raise ValueError(f"{field} must be >= 2, got {value}")
        if self.linearity_seeds < 0 or (self.band_k is not None and self.band_k < 0) or self.seed < 0:
            raise ValueError("linearity_seeds, band_k and seed must be non-negative")
        if self.jacobian_chunk is not None and (isinstance(self.jacobian_chunk, bool) or self.jacobian_chunk < 1):
            raise ValueError(f"jacobian_chunk must be a positive number of frames or None (automatic), "
                             f"got {self.jacobian_chunk!r}")
        if not (isinstance(self.band_hz, (int, float)) and math.isfinite(self.band_hz) and self.band_hz >= 0):
            raise ValueError(f"band_hz (half-width of the near-diagonal band, Hz) must be >= 0, got {self.band_hz!r}; "
                             f"e.g. band_hz={NEAR_DIAGONAL_BAND_HZ}")
        steps = tuple(self.control_steps) if isinstance(self.control_steps, (tuple, list)) else (None,)
        if steps and not (all(isinstance(n, int) and not isinstance(n, bool) for n in steps)
                          and min(steps) >= 0 and max(steps) >= 1
                          and all(a < b for a, b in zip(steps, steps[1:], strict=False))):
            raise ValueError(f"control_steps must be increasing non-negative step counts ending at >= 1 "
                             f"(e.g. {CONTROL_STEPS}) or () for no control, got {self.control_steps!r}")
        object.__setattr__(self, "control_steps", steps)  # a JSON list becomes the tuple
        if self.control_seeds is not None and (isinstance(self.control_seeds, bool) or self.control_seeds < 2):
            raise ValueError(f"control_seeds must be >= 2 (its intervals resample seeds) or None for all seeds, "
                             f"e.g. control_seeds=5; got {self.control_seeds!r}")

    def resolved(self, stft: STFTConfig, *, preset_name: str | None = None) -> MappingConfig:
        """This config with the fit set made explicit for the STFT's N, refusing a fit set with fewer
        frames than bins or an explicit Jacobian chunk that cannot fit in memory."""
        n = stft.n_bins
        if self.jacobian_chunk is not None:
            jacobian_chunk_for(n, self.jacobian_chunk)
        return dataclasses.replace(
            self, n_fit_frames=check_fit_frames(self.n_fit_frames, n, preset_name=preset_name))

    def near_band_bins(self, stft: STFTConfig) -> int:
        """Half-width in bins of the near-diagonal band: band_k if set (older runs), else band_hz in
        whole bins of `stft` (at least 1)."""
        return self.band_k if self.band_k is not None else band_bins(self.band_hz, stft)

    def to_json(self) -> dict:
        out = to_dict(self)
        if not self.control_steps:  # no control: the config of stages run before the field existed
            del out["control_steps"]
        if self.control_seeds is None:
            del out["control_seeds"]
        return out


def to_dict(cfg: Any) -> dict:
    """A JSON-ready dict of a (possibly nested) config dataclass: `dataclasses.asdict`, except that an
    estimator (a `MappingConfig.settings` entry) becomes its `setting_dict()`, the shape study configs
    have always stored."""
    return _plain(cfg)


def _plain(value: Any) -> Any:
    """`dataclasses.asdict`'s recursion with estimators as their `setting_dict()`."""
    if isinstance(value, Estimator):
        return value.setting_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return type(value)(*[_plain(v) for v in value])
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return type(value)((_plain(k), _plain(v)) for k, v in value.items())
    return copy.deepcopy(value)


def from_dict(cls: type[T], data: dict) -> T:
    """Rebuild `cls` from `to_dict` output (or its JSON), rejecting unknown fields by name.

    Works for any config dataclass, nested ones included: a field typed as a dataclass (or `X | None`)
    is rebuilt from its dict, a `tuple[X, ...]` / `tuple[X, Y]` from a JSON list (e.g.
    `MappingConfig.settings`, a tuple of estimators, each read by `from_setting_dict`, FitSetting-shaped
    dicts of older run directories included), recursively; other values pass as they are."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} must be given as a JSON object (a dict), got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"unknown fields for {cls.__name__}: {sorted(unknown)}")
    if cls is CorpusConfig and "realism" not in data:
        # a corpus config written before corpus format 4 has no `realism`: it was the "v3" corpus
        data = {**data, "realism": "v3"}
    hints = typing.get_type_hints(cls)
    return cls(**{name: _rebuild(hints.get(name, Any), value) for name, value in data.items()})


def _rebuild(ftype: Any, value: Any) -> Any:
    """`value` (from JSON) as the field type `ftype`: dataclasses from dicts, tuples from lists."""
    if value is None:
        return None
    if ftype is Estimator:
        return from_setting_dict(value) if isinstance(value, dict) else value
    if dataclasses.is_dataclass(ftype) and isinstance(ftype, type):
        return from_dict(ftype, value) if isinstance(value, dict) else value
    origin, args = typing.get_origin(ftype), typing.get_args(ftype)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        for option in options:  # the first option the value's JSON shape fits
            if isinstance(value, dict) and dataclasses.is_dataclass(option):
                return from_dict(option, value)
            if isinstance(value, (list, tuple)) and typing.get_origin(option) is tuple:
                return _rebuild(option, value)
        return value
    if origin is tuple and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_rebuild(args[0], v) for v in value)
        if args and len(args) == len(value):
            return tuple(_rebuild(a, v) for a, v in zip(args, value, strict=True))
        return tuple(value)
    return value


def fingerprint(data: Any) -> str:
    """A short stable hash of a JSON-serialisable value (dicts are key-sorted)."""
    if dataclasses.is_dataclass(data):
        data = to_dict(data)
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def mismatch(expected: dict, found: dict, prefix: str = "") -> list[str]:
    """Human-readable differences between two config dicts: `field: expected X, found Y`."""
    out = []
    for key in sorted(set(expected) | set(found)):
        a, b = expected.get(key, "<missing>"), found.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += mismatch(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: expected {a!r}, found {b!r}")
    return out
