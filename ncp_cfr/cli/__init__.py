"""``ncp-cfr``: face analysis and lookalikes from the command line, and the offline emulator.

Exit codes: 0 every file succeeded; 1 nothing succeeded (or a fatal error such as refused keys);
2 a usage error (bad option, no input file, no credentials); 3 some files failed, others not;
4 stopped by the service's quota or ``--max-calls`` (rerun to resume); 130 interrupted (rerun to
resume). Every failure is one line on stderr.

This module holds `main`: it parses the arguments, runs the command with the SDK's notices on
stderr, and turns what the command raised into one line on stderr and an exit code. The rest:

- ``_parser.py``: `build_parser`, the argument types, one ``_add_*`` per subcommand;
- ``_commands.py``: one ``run_*`` per subcommand, and the expansion of the input files;
- ``_client.py``: the client a command sends with (the service or the emulator);
- ``_output.py``: the table / JSON Lines / JSON writer and the ``--draw`` overlays;
- ``_exits.py``: the exit codes and `UsageError`.

The clients, drawing and the emulator are imported only by the command that needs them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ncp_cfr.cli._exits import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_STOPPED,
    EXIT_USAGE,
    UsageError,
)
from ncp_cfr.cli._parser import build_parser
from ncp_cfr.errors import CFRError

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_STOPPED",
    "EXIT_USAGE",
    "build_parser",
    "entry",
    "main",
]


@contextmanager
def _notices_on_stderr() -> Iterator[None]:
    """The SDK's warnings (a retry and its wait, say) as one ``ncp-cfr:`` line each on stderr.

    While the command runs, the notices stop at this handler: when the caller has put a handler
    on the root logger (``logging.basicConfig()`` before calling `main`), it would print each
    one a second time.
    """
    logger = logging.getLogger("ncp_cfr")
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("ncp-cfr: %(message)s"))
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.propagate = propagate
        logger.removeHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ncp-cfr``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _notices_on_stderr():
            code: int = args.run(args)
    except UsageError as error:
        print(f"ncp-cfr: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except CFRError as error:
        print(f"ncp-cfr: error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader went away (`ncp-cfr face ... | head`): nothing to report to it. Quiet, with
        # the shell's code for a closed pipe; the store, if any, resumes on the next run.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as error:
        # The machine, not the service: a port in use, a folder that cannot be written.
        print(f"ncp-cfr: error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(
            "ncp-cfr: interrupted; run the same command again to resume"
            + (" (the store keeps every answer received)" if getattr(args, "store", None) else ""),
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return code


def entry() -> None:
    """The ``ncp-cfr`` command: `main`, then exit; after an interrupt, at once.

    Calls still in flight at a Ctrl-C run in worker threads, which Python would wait for at exit
    (up to the timeout); their answers are not needed any more, so an interrupted run ends now.
    """
    code = main()
    if code == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
