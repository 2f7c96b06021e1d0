"""The data stage: where the study's audio comes from and how it becomes magnitude frames.

    generate_corpus(cache_root, cfg)      the embedded synthetic multitrack corpus (MUSDB18-HQ layout)
    dataset_splits(root) / all_tracks     MUSDB18 (stems, via musdb + ffmpeg) or MUSDB18-HQ wav folders
    load_track(ref, rate)                 one checked track: mono mixture, vocals, accompaniment
    build_cache / open_cache              the memory-mapped feature cache: (nb_frames, nb_bins) |STFT|
    build_stems_cache / open_stems_cache  the complex-STFT stems cache of the remix augmentation
    stft / istft                          the STFT of the whole project (librosa)

Modules (private): `_corpus/` (the synthetic corpus), `_sources` (track sources, splits, audio checks),
`_features` (STFT, feature and stems caches, minibatches), `_prefetch`, `_ffmpeg`.
"""

from ._corpus import corpus_dir, generate_corpus, track_names
from ._features import (
    FeatureCache,
    StemsCache,
    build_cache,
    build_stems_cache,
    cache_fingerprint,
    istft,
    open_cache,
    open_stems_cache,
    per_bin_rms,
    stems_cache_for,
    stft,
)
from ._ffmpeg import find_ffmpeg
from ._prefetch import Prefetch
from ._sources import (
    TrackAudio,
    TrackRef,
    all_tracks,
    dataset_splits,
    is_embedded_corpus,
    is_silent,
    load_stems,
    load_track,
    official_validation_tracks,
    require_ffmpeg,
    track_duration,
)

__all__ = [
    "FeatureCache",
    "Prefetch",
    "StemsCache",
    "TrackAudio",
    "TrackRef",
    "all_tracks",
    "build_cache",
    "build_stems_cache",
    "cache_fingerprint",
    "corpus_dir",
    "dataset_splits",
    "find_ffmpeg",
    "generate_corpus",
    "is_embedded_corpus",
    "is_silent",
    "istft",
    "load_stems",
    "load_track",
    "official_validation_tracks",
    "open_cache",
    "open_stems_cache",
    "per_bin_rms",
    "require_ffmpeg",
    "stems_cache_for",
    "stft",
    "track_duration",
    "track_names",
]
