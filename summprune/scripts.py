"""One error idiom for the command-line scripts (generate_csv.py, score_result.py) and the CLI:
a bad argument or input is ``<prog>: error: <message naming the option, file or row>`` on
stderr and exit status 2, never a traceback; Ctrl-C is exit status 130."""

from __future__ import annotations

import argparse
import sys
from typing import Callable


class UsageError(Exception):
    """A bad argument or input: reported as ``<prog>: error: ...``, exit status 2."""


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to an option's help, except where the help already says its
    default in words (``default: what the model was trained with``) or there is none to show
    (None): argparse's own formatter printed "(default: ...) (default: None)"."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default:" in text or action.default is None:
            return text
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of exiting, so ``main(argv)`` returns 2
    in-process (tests call the scripts' ``main``)."""

    def error(self, message):
        raise UsageError(message)


def run_script(prog: str, parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int],
               argv: list[str] | None = None, errors: tuple[type[BaseException], ...] = ()) -> int:
    """Parse ``argv`` and call ``run(args)``; UsageError (and the ``errors`` given) become
    ``prog: error: ...`` and exit status 2, Ctrl-C exit status 130."""
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        parser.print_usage(sys.stderr)
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
    try:
        return run(args)
    except (UsageError, *errors) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
