"""The command lines: the `ncajax` console script and its subcommands, `ncajax-separate`, and the one
error handler every entry point uses (a bad input is one `error:` line and exit code 2).

    main(argv)             `ncajax {reproduce,train,fit,evaluate,figures,report,separate,map}`
    run(name, argv)        one subcommand (what each `experiments/*.py` wrapper calls)
    parse(name, argv)      a subcommand's parsed options, flags generated from `ncajax.study.StudyConfig`
    separate_main(argv)    `ncajax-separate` (an alias of `ncajax separate`)
    sisec_main(argv)       `ncajax-sisec {evaluate,aggregate}`: the SiSEC-comparable evaluation
    exit(main)             run a script's main through the error handler and exit with its code
    run_guarded(main, argv)  the same, returning the exit code
    legacy_flags / flat    old flag spellings rewritten to today's; a parsed config as flat options

Modules (private): `_commands` (subcommands, flags), `_runners` (what each subcommand runs), `_errors`, `_entry`.
"""

from ._commands import COMMANDS, flat, legacy_flags, main, parse, run
from ._entry import separate_main, sisec_main
from ._errors import exit, run_guarded

__all__ = [
    "COMMANDS",
    "exit",
    "flat",
    "legacy_flags",
    "main",
    "parse",
    "run",
    "run_guarded",
    "separate_main",
    "sisec_main",
]
