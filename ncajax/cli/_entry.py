"""The console scripts that live in other packages, imported only when run (`ncajax --help` stays light)."""

from __future__ import annotations


def separate_main(argv: list[str] | None = None) -> int:
    """`ncajax-separate RUN_DIR song.wav ...` (the same as `ncajax separate`)."""
    from ._separate import main

    return main(argv)


def sisec_main(argv: list[str] | None = None) -> int:
    """`ncajax-sisec {evaluate,aggregate} ...`: the SiSEC-2018-comparable evaluation."""
    from ._sisec import main

    return main(argv)
