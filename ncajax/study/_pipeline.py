"""The study's stages as library calls: data -> training -> mapping fits -> evaluation (the figures and
the report are `ncajax.plots` and `ncajax.report`); the `ncajax` subcommands (`ncajax.cli`) run
them one at a time and `ncajax.study` chains them.

Every stage reads the previous stage's outputs from disk and writes only into its own directory, and is
skipped when its outputs exist for the same config.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import (
    MODEL_NAMES,
    STUDY_SEEDS,
    CorpusConfig,
    ModelConfig,
    STFTConfig,
    TrainConfig,
    preset,
    to_dict,
)
from ..data import _corpus as corpus
from ..data import _features as features
from ..data import _sources as sources
from ..nca import _structure as analysis
from ..separation import _liveness as liveness
from ..training._train import TrainedRun, train_model


def data_from_options(opts) -> Data:
    """`prepare_data` for the data options of the command line (`ncajax.study.DataOptions`: MUSDB18
    root and layout, preset, embedded corpus seed and size)."""
    return prepare_data(musdb_root=opts.musdb_root, is_wav=opts.is_wav or None, preset_name=opts.preset,
                        corpus_cfg=opts.corpus_config())


def default_cache_root() -> Path:
    """Where the corpus and feature caches live: $NCAJAX_CACHE, else ~/.cache/ncajax."""
    return Path(os.environ.get("NCAJAX_CACHE", Path.home() / ".cache" / "ncajax")).expanduser()


@dataclass
class Data:
    """The features of one dataset at one STFT preset, split into train/valid/test caches."""

    stft: STFTConfig
    train: features.FeatureCache
    valid: features.FeatureCache
    test: features.FeatureCache
    refs: dict[str, list[sources.TrackRef]]
    description: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    _train_stems: features.StemsCache | None = field(default=None, repr=False, compare=False)

    def train_stems(self, *, progress: bool = True) -> features.StemsCache:
        """The stems cache (complex STFT `(nb_frames, nb_bins)` per stem) of the training split, for the
        stem-remix augmentation: built next to the training features on the first call (MUSDB18,
        MUSDB18-HQ and the embedded corpus alike), so data without remix never pays for it."""
        if self._train_stems is None:
            t0 = time.perf_counter()
            self._train_stems = features.stems_cache_for(self.train, progress=progress)
            self.timings["stems_s"] = time.perf_counter() - t0
        return self._train_stems


def prepare_data(
    *,
    musdb_root: str | Path | None = None,
    is_wav: bool | None = None,
    preset_name: str = "fast",
    corpus_cfg: CorpusConfig | None = None,
    cache_root: str | Path | None = None,
    progress: bool = True,
) -> Data:
    """Corpus (or MUSDB18) -> splits -> memory-mapped feature caches for train, valid and test.

    With `musdb_root=None` the embedded synthetic corpus is generated (or reused) at the preset's sample
    rate; otherwise `musdb_root` is read as MUSDB18 stems (needs ffmpeg) or an HQ wav folder (`is_wav`).
    """
    stft = preset(preset_name)
    cache_root = Path(cache_root) if cache_root is not None else default_cache_root()
    timings = {}
    t0 = time.perf_counter()
    if musdb_root is None:
        ccfg = corpus_cfg or CorpusConfig(sample_rate=stft.sample_rate)
        if ccfg.sample_rate != stft.sample_rate:
            raise ValueError(
                f"corpus sample_rate {ccfg.sample_rate} differs from preset {preset_name!r} "
                f"({stft.sample_rate} Hz): generate the corpus at the preset's rate"
            )
        root = corpus.generate_corpus(cache_root / "corpus", ccfg, progress=progress)
        description = {"dataset": "embedded synthetic corpus", "corpus": to_dict(ccfg), "root": str(root),
                       "corpus_format": corpus.FORMAT_VERSION}
        is_wav = True
    else:
        root = Path(musdb_root).expanduser()
        description = {"dataset": "MUSDB18", "root": str(root.resolve()), "is_wav": is_wav}
    timings["corpus_s"] = time.perf_counter() - t0
    refs = sources.dataset_splits(root, is_wav=is_wav)
    for split in ("train", "valid", "test"):
        if not refs.get(split):
            raise ValueError(f"the {split} split of {root} is empty: the dataset needs tracks for it")
    t0 = time.perf_counter()
    caches = {
        split: features.build_cache(
            refs[split], stft, cache_root / "features", name=split, progress=progress
        )
        for split in ("train", "valid", "test")
    }
    timings["features_s"] = time.perf_counter() - t0
    description.update(
        preset=preset_name,
        features_format=features.FORMAT_VERSION,
        tracks={split: [r.name for r in refs[split]] for split in refs},
        frames={split: caches[split].n_frames for split in caches},
    )
    return Data(stft, caches["train"], caches["valid"], caches["test"], refs, description, timings)


def train_all(
    data: Data,
    out_dir: str | Path,
    *,
    model_names: tuple[str, ...] = MODEL_NAMES,
    train_cfg: TrainConfig = TrainConfig(n_seeds=STUDY_SEEDS),
    progress: bool = True,
) -> dict[str, TrainedRun]:
    """Train every model of `model_names` (all seeds vmapped) into `out_dir/<model>/`. A stem-remix
    option of `train_cfg` trains on `data.train_stems()` (built on first use)."""
    stems = data.train_stems(progress=progress) if train_cfg.remixes else None
    results = {}
    for name in model_names:
        results[name] = train_model(
            ModelConfig(name=name, n_bins=data.stft.n_bins),
            train_cfg,
            data.stft,
            data.train,
            data.valid,
            data.test,
            Path(out_dir) / name,
            data={k: v for k, v in data.description.items() if k != "root"},
            progress=progress,
            train_stems=stems,
        )
    return results


def load_separators(train_dir: str | Path, model_names: tuple[str, ...] = MODEL_NAMES) -> dict:
    """Restore the best params of every seed of each trained model as `mappings.Separator`s."""
    from ..nca._stage import Separator

    out = {}
    for name in model_names:
        trained = _finished(Path(train_dir) / name, name)
        out[name] = Separator(trained.model, trained.params, trained.train_cfg.n_seeds)
    return out


def _finished(run_dir: Path, name: str):
    """The trained run at `run_dir`, refusing one whose training has not finished (a later stage
    computed from it would be reused, stale, once training completes)."""
    from ..training._train import load_trained

    trained = load_trained(run_dir, expect={"name": name})
    if not trained.result.get("finished"):
        raise ValueError(
            f"training of {name} in {run_dir} has not finished (no result.json): run the training "
            "stage again (it resumes from its last checkpoint) before fitting or evaluating"
        )
    return trained


def fit_all(data: Data, train_dir: str | Path, out_dir: str | Path, *, cfg=None,
            model_names: tuple[str, ...] = MODEL_NAMES, progress: bool = True) -> dict:
    """The mapping stage on the checkpoints of the training stage: fitted on the training songs, judged
    on the test songs (see `ncajax.nca`)."""
    from ..nca import _stage as mappings
    from ..runs import read_json

    separators = load_separators(train_dir, model_names)
    provenance = {name: read_json(Path(train_dir) / name / "config.json") for name in model_names}
    return mappings.run_stage(separators, data.train, data.test, data.stft, out_dir,
                              cfg or mappings.MappingConfig(), provenance=provenance, progress=progress)


def evaluate_all(data: Data, train_dir: str | Path, out_dir: str | Path, *,
                 model_names: tuple[str, ...] = MODEL_NAMES, with_bss: bool = True,
                 real_root: str | Path | None = None, progress: bool = True) -> dict:
    """Separation quality of every model and seed on the test tracks, next to the mixture and the
    oracle IRM (museval SDR/SIR/SAR, median over frames then tracks, and magnitude SDR); with
    `real_root` (a MUSDB18 folder, e.g. the real sample track) the same on every track there, whole,
    under result["real"]: how what the models learned carries over to real music. Also saves the
    excerpt the spectrogram figure draws (`save_spectrograms`), the only figure input that needs the
    models run."""
    from .. import runs
    from ..models import predict
    from ..separation import _evaluate as evaluate

    config = {"models": list(model_names), "stft": to_dict(data.stft), "with_bss": with_bss,
              "tracks": [r.name for r in data.refs["test"]],
              "real_root": None if real_root is None else str(Path(real_root).resolve()),
              "train": {n: runs.read_json(Path(train_dir) / n / "config.json") for n in model_names}}
    if (done := runs.finished_result(out_dir, config)) is not None:
        if not (Path(out_dir) / runs.SPECTROGRAMS_FILE).exists():  # evaluated before the excerpt was saved
            save_spectrograms(data, _finished_all(train_dir, model_names), out_dir)
        return done
    runs.open_run(out_dir, config)
    trained_all = _finished_all(train_dir, model_names)
    predictors = {}
    for name, trained in trained_all.items():
        for s in range(trained.train_cfg.n_seeds):
            params = trained.seed_params(s)
            predictors[f"{name}/seed{trained.train_cfg.seed + s}"] = (
                lambda x, m=trained.model, p=params: predict(m, p, x)
            )
    tracks = [sources.load_track(ref, data.stft.sample_rate) for ref in data.refs["test"]]
    t0 = time.perf_counter()
    result = evaluate.evaluate_tracks(predictors, tracks, data.stft, with_bss=with_bss, progress=progress)
    if real_root is not None:
        real = [sources.load_track(ref, data.stft.sample_rate) for ref in sources.all_tracks(real_root)]
        result["real"] = evaluate.evaluate_tracks(predictors, real, data.stft, with_bss=with_bss,
                                                  progress=progress)
        result["real"]["tracks"] = [t.name for t in real]
    result["units"] = unit_facts(data, trained_all)
    result["loudness"] = {t.name: _rms_dbfs(t.mixture) for t in tracks}
    result["wall_s"] = time.perf_counter() - t0
    save_spectrograms(data, trained_all, out_dir)
    runs.finish(out_dir, result)
    return result


def unit_facts(data: Data, trained: dict) -> dict:
    """Per model, per seed, on every frame of the held-out test songs (`liveness.unit_facts`): the dead
    share of output units (for `dae_sf` its mask units), the live share per octave band and the
    homogeneity errors at alpha = 1/4 and 4. `{model: {"seeds": [...], "dead_share": [...],
    "live_by_octave": [[{"lo_hz", "hi_hz", "n_units", "live_share"}, ...] per seed],
    "homogeneity": {alpha: [...]}}}`."""
    x = np.asarray(data.test.mixture, np.float32)
    freqs = analysis.bin_frequencies(data.stft.n_bins, sample_rate=data.stft.sample_rate, n_fft=data.stft.n_fft)
    out = {}
    for name, t in trained.items():
        facts = [liveness.unit_facts(t.model, t.seed_params(s), x, freqs) for s in range(t.train_cfg.n_seeds)]
        out[name] = {
            "seeds": [t.train_cfg.seed + s for s in range(t.train_cfg.n_seeds)],
            "frames": int(x.shape[0]),
            "dead_share": [f["dead_share"] for f in facts],
            "live_by_octave": [f["live_by_octave"] for f in facts],
            "homogeneity": {a: [f["homogeneity"][a] for f in facts] for a in facts[0]["homogeneity"]},
        }
    return out


def _rms_dbfs(audio) -> float:
    """RMS level of a waveform in dBFS (all channels)."""
    ms = float(np.mean(np.square(np.asarray(audio, np.float64))))
    return 10.0 * float(np.log10(max(ms, 1e-20)))


def _finished_all(train_dir: str | Path, model_names: tuple[str, ...]) -> dict:
    return {name: _finished(Path(train_dir) / name, name) for name in model_names}


def save_spectrograms(data: Data, trained: dict, out_dir: str | Path, *, seed: int = 0,
                      max_seconds: float = 8.0) -> Path:
    """The excerpt the spectrogram figure draws (`ncajax.plots`), saved as
    `<out_dir>/spectrograms.npz`: the first `max_seconds` of the test track with the largest vocal
    share of energy, its mixture and true vocal magnitudes, every model of `trained` ({name: a
    `train.Trained`}) on it (seed index `seed`) and dae_sf's mask, with the bin frequencies (Hz),
    the hop in seconds and the track's name."""
    from .. import runs
    from ..models import predict

    stft, cache = data.stft, data.test
    share = [float(np.sum(np.square(v, dtype=np.float64)) / max(np.sum(np.square(x, dtype=np.float64)), 1e-30))
             for x, v in (cache.track(i) for i in range(len(cache.track_names)))]
    track = int(np.argmax(share))
    mix, voc = cache.track(track)
    n_frames = min(len(mix), max(1, int(max_seconds * stft.sample_rate / stft.hop_length)))
    x = np.asarray(mix[:n_frames], np.float32)
    panels = {"mixture": x, "true vocals": np.asarray(voc[:n_frames], np.float32)}
    extra = {}
    for name, t in trained.items():
        s = min(seed, t.train_cfg.n_seeds - 1)
        params = t.seed_params(s)
        panels[f"{name} estimate (seed {t.train_cfg.seed + s})"] = predict(t.model, params, x)
        if name == "dae_sf" and hasattr(t.model, "mask"):
            extra["mask"] = np.asarray(t.model.apply(params, x, method="mask"), np.float32)
    path = Path(out_dir) / runs.SPECTROGRAMS_FILE
    np.savez(path, panel_names=np.array(list(panels)),
             panels=np.stack([np.asarray(p, np.float32) for p in panels.values()]),
             frequencies=np.arange(stft.n_bins) * stft.sample_rate / stft.n_fft,
             frame_seconds=np.float64(stft.hop_length / stft.sample_rate),
             track=np.array(cache.track_names[track]), **extra)
    return path
