"""REPORT.md from a study run's saved results: it renders the run's summary (`ncajax.results`), computes
nothing of its own.

    write_report(run_dir)    render and write REPORT.md (and copy the figures next to it)
    build_report(run_dir)    the report's text

Modules (private): `_report` (entry points), `_sections` (mapping-stage sections), `_results`
(separation, dead units, recipe control), `_resolution` (the resolution ladder), `_format`.
"""

from ._report import build_report, copy_outputs, write_report

__all__ = ["build_report", "copy_outputs", "write_report"]
