"""Separating audio with a trained separator and judging the result.

    separate_file(path, run_dir, ...)      separate any audio file (what `ncajax-separate` runs)
    evaluate_tracks(...)                   vocals / accompaniment SDR on unseen songs: magnitude SDR, the
                                           oracle IRM and the mixture as references, BSS Eval v4 (museval)
    evaluate_sisec(...) / aggregate_runs   SiSEC-2018-comparable evaluation: stereo at each track's rate,
                                           museval per-track JSON with nSDR, aggregated across tracks and runs
    unit_facts / dead_output_share / homogeneity_error
                                           live and dead output units, homogeneity of a separator on
                                           held-out frames

Modules (private): `_separate`, `_evaluate`, `_bss`, `_sisec`, `_liveness`.
"""

from ._bss import BSSReferences, bss_eval, import_museval
from ._evaluate import evaluate_tracks, ideal_ratio_mask, magnitude_sdr, separate_track
from ._liveness import (
    dead_output_share,
    homogeneity_error,
    live_output_share_by_octave,
    live_units,
    unit_facts,
)
from ._separate import read_audio, separate_file
from ._sisec import (
    StereoTrack,
    aggregate_runs,
    evaluate_sisec,
    load_stereo_track,
    mixture_baseline,
    model_separator,
    nsdr,
    stereo_tracks,
)

__all__ = [
    "BSSReferences",
    "StereoTrack",
    "aggregate_runs",
    "bss_eval",
    "dead_output_share",
    "evaluate_sisec",
    "evaluate_tracks",
    "homogeneity_error",
    "ideal_ratio_mask",
    "import_museval",
    "live_output_share_by_octave",
    "live_units",
    "load_stereo_track",
    "magnitude_sdr",
    "mixture_baseline",
    "model_separator",
    "nsdr",
    "read_audio",
    "separate_file",
    "separate_track",
    "stereo_tracks",
    "unit_facts",
]
