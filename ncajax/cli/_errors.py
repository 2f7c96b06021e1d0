"""One error handler for every command line of ncajax (the experiments/ scripts and ncajax-separate).

A bad input (a wrong path, an empty or damaged dataset, an unknown option value, a missing ffmpeg, a
diverged training run, ...) reaches the user as ONE line on stderr, ``error: <message>`` (the
library's messages name the file or field and the fix), and exit code 2 — never a traceback. Pass
``--debug`` anywhere on the command line, or set the environment variable ``NCAJAX_DEBUG=1``, to get the
full traceback instead (the exception propagates unchanged).

Use it at the bottom of a script::

    if __name__ == "__main__":
        from ncajax import cli
        cli.exit(main)

What counts as a user-facing error (`is_user_error`): ValueError (the library's convention for a bad
value, a dataset in the wrong layout, a config clash, a damaged audio file), FloatingPointError (training
diverged), the OSErrors a path can cause (FileNotFoundError, NotADirectoryError, IsADirectoryError,
FileExistsError, PermissionError) and a RuntimeError whose message names ffmpeg/ffprobe (the library's
"ffmpeg not found" errors). Anything else is a bug and keeps its traceback. Ctrl-C prints
``error: interrupted`` and exits 130. argparse's own usage errors (exit 2) and `SystemExit` pass through.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
DEBUG_FLAG = "--debug"
DEBUG_ENV = "NCAJAX_DEBUG"

USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FloatingPointError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    FileExistsError,
    PermissionError,
)


def is_user_error(err: BaseException) -> bool:
    """True for the exceptions the library raises for bad user input (see the module docstring)."""
    if isinstance(err, USER_ERRORS):
        return True
    if isinstance(err, RuntimeError):
        text = str(err).lower()
        return "ffmpeg" in text or "ffprobe" in text
    return False


def debug_requested(argv: Sequence[str] | None = None) -> bool:
    """`--debug` in `argv` (before a `--`) or NCAJAX_DEBUG set to anything but '', '0', 'false', 'no'."""
    if os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return True
    return DEBUG_FLAG in _options(argv if argv is not None else sys.argv[1:])


def _options(argv: Sequence[str]) -> list[str]:
    argv = list(argv)
    return argv[: argv.index("--")] if "--" in argv else argv


def strip_debug(argv: Sequence[str]) -> list[str]:
    """`argv` without the `--debug` flags (those before a `--`), so the script's parser never sees them."""
    argv = list(argv)
    end = argv.index("--") if "--" in argv else len(argv)
    return [a for a in argv[:end] if a != DEBUG_FLAG] + argv[end:]


def one_line(err: BaseException) -> str:
    """The exception's message on one line (whitespace runs, newlines included, become one space)."""
    text = " ".join(str(err).split())
    return text or type(err).__name__


def run_guarded(
    main: Callable[[list[str]], object],
    argv: Sequence[str] | None = None,
    *,
    prog: str | None = None,
) -> int:
    """Call `main(argv)` (argv defaults to sys.argv[1:], `--debug` removed) and return its exit code.

    main's return value becomes the code: an int as is, anything else (None, a summary dict) 0. A
    user-facing error prints ``[prog: ]error: <message>`` on stderr and returns 2; Ctrl-C returns 130.
    With --debug / NCAJAX_DEBUG=1 the exception propagates with its traceback.
    """
    raw = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(raw)
    prefix = f"{prog}: " if prog else ""
    try:
        code = main(strip_debug(raw))
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prefix}error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:
        if debug or not is_user_error(err):
            raise
        print(f"{prefix}error: {one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


def exit(main: Callable[[list[str]], object], argv: Sequence[str] | None = None, *,
         prog: str | None = None) -> None:
    """`sys.exit(run_guarded(main, argv, prog=prog))`: the one line a script's `__main__` block needs."""
    sys.exit(run_guarded(main, argv, prog=prog))
