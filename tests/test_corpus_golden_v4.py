"""Golden checksums of a small realism-v4 corpus (`CorpusConfig(realism="v4")`: stereo stems, the v4
vocal strip, register pad, lead guitar, stereo room): the realistic variant must stay byte-identical per
seed, like the default corpus (tests/test_corpus_golden.py, whose docstring explains the checksums).

If a change to the v4 generator is intended, regenerate with

    .venv/bin/python tests/test_corpus_golden_v4.py --update

and commit tests/data/corpus_golden_v4.json together with the change.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "data" / "corpus_golden_v4.json"
CONFIG = {"seed": 0, "n_train": 2, "n_test": 1, "duration": 2.0, "sample_rate": 8000, "realism": "v4"}
REGENERATE = ".venv/bin/python tests/test_corpus_golden_v4.py --update"


def checksums(cache_root: Path) -> dict:
    import numpy
    import scipy

    from ncajax.config import CorpusConfig
    from ncajax.corpus import FORMAT_VERSION, generate_corpus

    root = generate_corpus(cache_root, CorpusConfig(**CONFIG))
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".wav", ".json"))
    return {
        "format_version": FORMAT_VERSION,
        "config": CONFIG,
        "versions": {"python": sys.version.split()[0], "numpy": numpy.__version__,
                     "scipy": scipy.__version__},
        "sha256": {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files},
    }


def test_realistic_corpus_matches_golden_checksums(tmp_path):
    assert GOLDEN.is_file(), f"{GOLDEN} is missing; create it with `{REGENERATE}`"
    want = json.loads(GOLDEN.read_text())
    got = checksums(tmp_path)
    assert got["format_version"] == want["format_version"], (
        f"corpus FORMAT_VERSION changed: regenerate the v4 checksums with `{REGENERATE}`")
    changed = sorted(k for k in want["sha256"] if got["sha256"].get(k) != want["sha256"][k])
    extra = sorted(set(got["sha256"]) - set(want["sha256"]))
    assert not (changed or extra), (
        f"the realism-v4 corpus is no longer byte-identical for the same seed: {len(changed)} of "
        f"{len(want['sha256'])} files changed ({', '.join(changed)}), new files {extra}. Library "
        f"versions golden {want['versions']}, now {got['versions']}. If intended, regenerate with "
        f"`{REGENERATE}`; otherwise pin the previous library versions or undo the code change."
    )


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--update"]:
        sys.exit(f"usage: {REGENERATE}")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    with tempfile.TemporaryDirectory() as tmp:
        record = checksums(Path(tmp))
    GOLDEN.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(record['sha256'])} checksums (realism v4) to {GOLDEN}")
