"""REPORT.md of a study run, rendered from its typed results and their one summary.

The run is read by `ncajax.results.load_study` (train, mapping, evaluation and recipe-control stages,
typed) and summarised once by `ncajax.results.summarise_run` (the verdict, every seed x song interval
and every mean ± CI over seeds); this module holds the public entry points. The Markdown sections
render that summary: `_sections` (the run, the verdict, the mapping errors and structure, the
figures), `_results` (separation, linearity, live and dead units, the recipe control) and
`_resolution` (the ladder of runs), with the shared formats in `_format`. No section computes an
interval or a statistic over seeds.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ..results._summary import RunSummary, summarise_run, write_summary
from ._resolution import section as resolution_section
from ._results import (
    dead_units_section,
    linearity_section,
    live_units_section,
    real_music_section,
    recipe_control_section,
    separation_section,
)
from ._sections import (
    conclusion_section,
    convergence_control_section,
    corpora_section,
    errors_section,
    figures_section,
    functional_section,
    header_section,
    structure_section,
    verdict_sentence,
)

__all__ = ["build_report", "write_report", "conclusion", "copy_outputs", "corpora_section", "verdict_sentence"]


def conclusion(run_dir: str | Path) -> dict:
    """The verdict of the run in `run_dir` as a dict (see `ncajax.results.conclusion`)."""
    return summarise_run(run_dir).conclusion


# --------------------------------------------------------------------------------------------------
# public entry points


def build_report(run_dir: str | Path, *, timings: dict | None = None, figures_link: str = "figures",
                 corpora: dict | None = None, resolution: dict | None = None) -> str:
    """The markdown report of the run in `run_dir`.

    `timings`: {stage: seconds} for the timings table. `figures_link`: the path from the report's
    folder to `<run>/figures` (the default suits `<run>/REPORT.md`). `corpora`: a
    `verdict.across_corpora` summary to include. Missing stages leave a note in the report instead of
    failing; a missing `run_dir` raises FileNotFoundError. `resolution`: a `resolution.summarise`
    summary of the ladder's rungs to include.
    """
    return render(summarise_run(run_dir), timings=timings, figures_link=figures_link, corpora=corpora,
                  resolution=resolution)


def render(summary: RunSummary, *, timings: dict | None = None, figures_link: str = "figures",
           corpora: dict | None = None, resolution: dict | None = None) -> str:
    """The markdown report of a summarised run (`build_report` without the loading)."""
    run = summary.study
    sections = [header_section(run, summary, timings), conclusion_section(summary)]
    if corpora:
        sections.append(corpora_section(corpora))
    if resolution:
        sections.append(resolution_section(resolution))
    sections += [errors_section(summary), functional_section(summary), convergence_control_section(summary),
                 structure_section(summary),
                 separation_section(summary) + [""] + real_music_section(summary), linearity_section(summary),
                 live_units_section(summary), recipe_control_section(summary), dead_units_section(summary),
                 figures_section(run, figures_link)]
    text = "\n".join("\n".join(s).rstrip() + "\n" for s in sections).rstrip() + "\n"
    return re.sub(r"\n{3,}", "\n\n", text)


def write_report(run_dir: str | Path, path: str | Path, *, timings: dict | None = None,
                 corpora: dict | None = None, resolution: dict | None = None) -> Path:
    """Write `build_report(run_dir)` to `path`, the verdict to `<run>/conclusion.json` and the summary
    behind the report to `<run>/summary.json` (`ncajax.results`)."""
    run_dir, path = Path(run_dir), Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    link = Path(os.path.relpath(run_dir.resolve() / "figures", path.parent.resolve())).as_posix()
    summary = summarise_run(run_dir)
    path.write_text(render(summary, timings=timings, figures_link=link, corpora=corpora, resolution=resolution))
    write_summary(summary, run_dir)
    return path


def copy_outputs(run_dir: str | Path, dest: str | Path) -> list[Path]:
    """Copy `<run>/REPORT.md` and the figures `<run>/figures/*.png|pdf` into `dest` (flat).

    The copied report's figure links are rewritten to point at the copies next to it. Returns the
    paths written. Raises FileNotFoundError when REPORT.md has not been written yet.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    report = run_dir / "REPORT.md"
    if not report.exists():
        raise FileNotFoundError(
            f"{report} does not exist: call write_report(run_dir, run_dir / "
            "'REPORT.md') before copy_outputs"
        )
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    text = report.read_text()
    fig_dir = run_dir / "figures"
    figs = sorted([*fig_dir.glob("*.png"), *fig_dir.glob("*.pdf")]) if fig_dir.is_dir() else []
    for f in figs:
        written.append(Path(shutil.copy2(f, dest / f.name)))
        text = text.replace(f"](figures/{f.name})", f"]({f.name})")
    (dest / "REPORT.md").write_text(text)
    written.append(dest / "REPORT.md")
    return written
