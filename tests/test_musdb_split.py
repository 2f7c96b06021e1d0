"""ncajax.data: musdb's official validation split for MUSDB18 (stems) and MUSDB18-HQ (wav) roots, the
embedded corpus's seeded split kept as it was, and the real shared MUSDB18 sample track."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ncajax import config
from ncajax.data import _corpus as corpus
from ncajax.data import _features as features
from ncajax.data import _sources as sources
from ncajax.data._sources import dataset_splits, official_validation_tracks

SAMPLE_TRACK = "Music Delta - 80s Rock"  # the shared sample's track: a training track in musdb's list
# two of musdb 0.4's 14 official validation tracks (musdb/configs/mus.yaml, `validation_tracks`)
LISTED = ("Actions - One Minute Smile", "Leaf - Summerghost")


def write_hq_track(folder: Path, *, n: int = 400, rate: int = 8000, seed: int = 0) -> None:
    """A MUSDB18-HQ track folder: four noise stems and their sum."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    stems = {s: (0.1 * rng.standard_normal(n)).astype(np.float32) for s in sources.SOURCE_STEMS}
    stems["mixture"] = sum(stems[s] for s in sources.SOURCE_STEMS)
    for name, x in stems.items():
        sf.write(folder / f"{name}.wav", x, rate, subtype="FLOAT")


def test_official_list_comes_from_the_installed_musdb():
    listed = official_validation_tracks()
    assert len(listed) == 14 and len(set(listed)) == 14
    assert set(LISTED) <= set(listed)
    assert SAMPLE_TRACK not in listed


def test_hq_layout_takes_musdb_official_validation_tracks(tmp_path):
    root = tmp_path / "musdb18hq"
    train = [*LISTED, SAMPLE_TRACK, "Zz Top - Not In The List"]
    for i, name in enumerate(train):
        write_hq_track(root / "train" / name, seed=i)
    write_hq_track(root / "test" / "Al James - Schoolboy Facination", seed=9)
    expected = {"train": [SAMPLE_TRACK, "Zz Top - Not In The List"], "valid": sorted(LISTED),
                "test": ["Al James - Schoolboy Facination"]}
    # the official list, not a seeded share: neither the seed nor the fraction moves a track
    for seed, fraction in ((0, 0.2), (1, 0.5), (7, 0.75)):
        splits = dataset_splits(root, seed=seed, valid_fraction=fraction)
        assert {k: [r.name for r in v] for k, v in splits.items()} == expected
    assert all(r.kind == "wav" and r.stop is None for v in splits.values() for r in v)
    # forcing the seeded rule still works (and moves a different share)
    forced = dataset_splits(root, valid_split="random", valid_fraction=0.25, seed=3)
    assert len(forced["valid"]) == 1
    with pytest.raises(ValueError, match="valid_split"):
        dataset_splits(root, valid_split="official")


def test_root_without_listed_tracks_warns_and_shuffles(tmp_path, caplog):
    """A partial copy (or other music in the layout): none of its train/ tracks is listed, so the
    seeded share validates, with a warning saying it is not the official split."""
    root = tmp_path / "partial"
    for i in range(5):
        write_hq_track(root / "train" / f"Song {i}", seed=i)
    write_hq_track(root / "test" / "Test Song", seed=9)
    with caplog.at_level(logging.WARNING, logger="ncajax.data"):
        splits = dataset_splits(root, seed=0)
    assert "not the official MUSDB18 split" in caplog.text
    assert len(splits["valid"]) == 1 and len(splits["train"]) == 4
    assert splits == dataset_splits(root, seed=0, valid_split="random")


def test_embedded_corpus_keeps_its_seeded_split(tmp_path, caplog):
    """The synthetic corpus's validation songs stay the seeded 20 % share (same refs as before the
    official list, so the same feature-cache fingerprints), without the partial-copy warning."""
    cfg = config.CorpusConfig(seed=1, n_train=6, n_test=1, duration=1.0)
    root = corpus.generate_corpus(tmp_path / "corpus", cfg)
    assert sources.is_embedded_corpus(root) and not sources.is_embedded_corpus(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ncajax.data"):
        splits = dataset_splits(root, is_wav=True)
    assert "official" not in caplog.text
    # the rule as it was: a permutation by default_rng(0) of the sorted pool, round(0.2 * n) to valid
    names = sorted(corpus.track_names(cfg)["train"])
    order = np.random.default_rng(0).permutation(len(names))
    n_valid = max(1, round(0.2 * len(names)))
    assert [r.name for r in splits["valid"]] == sorted(names[i] for i in order[:n_valid])
    assert [r.name for r in splits["train"]] == sorted(names[i] for i in order[n_valid:])
    forced = dataset_splits(root, is_wav=True, valid_split="random")
    stft = config.PRESETS["fast"]
    assert all(features.cache_fingerprint(splits[k], stft) == features.cache_fingerprint(forced[k], stft)
               for k in splits)


def test_unreadable_official_list_is_a_clear_error(tmp_path, monkeypatch):
    root = tmp_path / "hq"
    for name in (*LISTED, SAMPLE_TRACK):
        write_hq_track(root / "train" / name)
    write_hq_track(root / "test" / "Test Song")
    missing = tmp_path / "musdb" / "configs" / "mus.yaml"
    monkeypatch.setattr(sources, "_musdb_config_path", lambda: missing)
    with pytest.raises(FileNotFoundError, match=r"mus\.yaml.*missing.*validation track list.*reinstall"):
        dataset_splits(root)
    missing.parent.mkdir(parents=True)
    missing.write_text("stem_ids: {mixture: 0}\n")
    with pytest.raises(ValueError, match="no `validation_tracks` list"):
        dataset_splits(root)
    missing.write_text("validation_tracks: [unclosed\n")
    with pytest.raises(ValueError, match="unreadable"):
        official_validation_tracks()
    # the embedded corpus's rule does not read the list, and "random" does not either
    assert len(dataset_splits(root, valid_split="random")["valid"]) == 1


def test_musdb_not_installed_is_a_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "musdb" else real(name, *a))
    with pytest.raises(FileNotFoundError, match=r"musdb package is not installed.*pip install"):
        official_validation_tracks()


# ------------------------------------------------------------------- the real MUSDB18 sample track


@pytest.mark.ffmpeg
def test_sample_track_loads_through_the_musdb_root(musdb_sample_root):
    """The shared sample folder (one .stem.mp4 in train/, no test/) read as a MUSDB18 root: the track
    is a training track by musdb's list; with no test track the split falls back to time pieces of it,
    each loadable through the root's refs."""
    path = musdb_sample_root / "train" / f"{SAMPLE_TRACK}.stem.mp4"
    assert path.is_file() and SAMPLE_TRACK not in official_validation_tracks()
    refs = sources.all_tracks(musdb_sample_root)
    assert [(r.name, r.kind, Path(r.path).resolve()) for r in refs] == [
        (SAMPLE_TRACK, "stem", path.resolve())]
    splits = dataset_splits(musdb_sample_root)
    assert [r.name for r in splits["train"]] == [f"{SAMPLE_TRACK} [0-60%]"]
    audio = sources.load_track(splits["train"][0], 8000)
    assert audio.rate == 8000 and audio.mixture.dtype == np.float32
    assert len(audio.mixture) == len(audio.vocals) == len(audio.accompaniment) > 8000 * 3
    assert not sources.is_silent(audio.mixture) and not sources.is_silent(audio.vocals)


@pytest.mark.ffmpeg
def test_stem_layout_takes_musdb_official_validation_tracks(musdb_sample_root, tmp_path):
    """A MUSDB18 stem root built from the real sample file (links named after a listed validation
    track, the sample's own training track and a test track): each lands where musdb's list says and
    loads through musdb and ffmpeg."""
    sample = musdb_sample_root / "train" / f"{SAMPLE_TRACK}.stem.mp4"
    root = tmp_path / "musdb18"
    links = {"train": [SAMPLE_TRACK, LISTED[0], "Zz Top - Not In The List"],
             "test": ["Al James - Schoolboy Facination"]}
    for subset, names in links.items():
        (root / subset).mkdir(parents=True)
        for name in names:
            (root / subset / f"{name}.stem.mp4").symlink_to(sample)
    for seed in (0, 1):
        splits = dataset_splits(root, seed=seed, valid_fraction=0.5)
        assert {k: [r.name for r in v] for k, v in splits.items()} == {
            "train": [SAMPLE_TRACK, "Zz Top - Not In The List"], "valid": [LISTED[0]],
            "test": ["Al James - Schoolboy Facination"]}
    assert all(r.kind == "stem" and r.stop is None for v in splits.values() for r in v)
    train = sources.load_track(splits["train"][0], 8000)
    valid = sources.load_track(splits["valid"][0], 8000)
    assert Path(splits["train"][0].path).name == f"{SAMPLE_TRACK}.stem.mp4"
    np.testing.assert_array_equal(train.mixture, valid.mixture)  # the same file behind both links
    assert len(train.mixture) > 8000 * 6
