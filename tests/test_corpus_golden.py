"""Golden checksums of a small synthetic corpus: the corpus must stay byte-identical per seed.

The study's numbers are only reproducible if the same `CorpusConfig` writes the same bytes on every
machine and with every library version. This test generates a small corpus (2 train + 1 test songs of
2 s at the "fast" preset's rate) of each realism (`v3`, the earlier mono corpus, and `v4`, the default
stereo one) and compares the sha256 of every wav file and of corpus.json with the values stored in
tests/data/corpus_golden.json (v3) and tests/data/corpus_golden_v4.json (v4). A numpy/scipy upgrade that changes one random
draw, one filter or one float32 rounding fails here, loudly, with the list of changed files.

numpy dispatches float32 sin/exp to SIMD kernels chosen by the CPU, so a machine with another
instruction set can also change the bytes; the failure names the library versions to tell the cases
apart.

If the change is intended (a new corpus format: bump `ncajax.data._corpus.FORMAT_VERSION` so old caches are
regenerated) or a library upgrade is accepted, regenerate the checksums with

    .venv/bin/python tests/test_corpus_golden.py --update

and commit both golden files together with the change.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"
# realism -> golden file; the same small config otherwise
GOLDENS = {"v3": DATA / "corpus_golden.json", "v4": DATA / "corpus_golden_v4.json"}
BASE_CONFIG = {"seed": 0, "n_train": 2, "n_test": 1, "duration": 2.0, "sample_rate": 8000}
REGENERATE = ".venv/bin/python tests/test_corpus_golden.py --update"


def _versions() -> dict[str, str]:
    import numpy
    import scipy

    return {"python": sys.version.split()[0], "numpy": numpy.__version__, "scipy": scipy.__version__}


def checksums(cache_root: Path, realism: str) -> dict:
    """Generate the golden corpus of `realism` under `cache_root`; its format version, library
    versions and the sha256 of every file (relative path -> hex digest)."""
    from ncajax.config import CorpusConfig
    from ncajax.data._corpus import FORMAT_VERSION, generate_corpus

    config = {**BASE_CONFIG, "realism": realism}
    root = generate_corpus(cache_root, CorpusConfig(**config))
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".wav", ".json"))
    return {
        "format_version": FORMAT_VERSION,
        "config": config,
        "versions": _versions(),
        "sha256": {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
        },
    }


@pytest.mark.parametrize("realism", sorted(GOLDENS))
def test_corpus_matches_golden_checksums(tmp_path, realism):
    golden = GOLDENS[realism]
    assert golden.is_file(), f"{golden} is missing; create it with `{REGENERATE}`"
    want = json.loads(golden.read_text())
    got = checksums(tmp_path, realism)
    if got["format_version"] != want["format_version"]:
        raise AssertionError(
            f"corpus FORMAT_VERSION is {got['format_version']}, the golden checksums are of format "
            f"{want['format_version']}: regenerate them for the new format with `{REGENERATE}`"
        )
    changed = sorted(k for k in want["sha256"] if got["sha256"].get(k) != want["sha256"][k])
    extra = sorted(set(got["sha256"]) - set(want["sha256"]))
    if changed or extra:
        now, then = got["versions"], want["versions"]
        libs = ", ".join(
            f"{k} {then.get(k)} -> {v}" if then.get(k) != v else f"{k} {v} (unchanged)"
            for k, v in now.items()
        )
        raise AssertionError(
            f"the synthetic corpus (realism {realism}) is no longer byte-identical for the same seed: "
            f"{len(changed)} of {len(want['sha256'])} files changed ({', '.join(changed)})"
            + (f", new files {extra}" if extra else "")
            + f". Library versions (golden -> now): {libs}. A library upgrade or a code change "
            "altered the generated audio, so corpora and every cached result built on them differ "
            "from the committed study. If the change is intended, bump ncajax.data._corpus.FORMAT_VERSION "
            f"(for a code change) and regenerate the checksums with `{REGENERATE}`; otherwise pin "
            "the previous library versions."
        )


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--update"]:
        sys.exit(f"usage: {REGENERATE}")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    DATA.mkdir(parents=True, exist_ok=True)
    for realism, golden in GOLDENS.items():
        with tempfile.TemporaryDirectory() as tmp:
            record = checksums(Path(tmp), realism)
        golden.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(record['sha256'])} checksums (format {record['format_version']}, realism "
              f"{realism}) to {golden}")
