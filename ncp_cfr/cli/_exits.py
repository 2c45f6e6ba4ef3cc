"""How a run of ``ncp-cfr`` ends: the exit codes, and `UsageError` for a mistake in the call.

Every other module of the CLI reports its outcome with these. A new way to end (a stop at the
service's quota, say) gets its code here and its ``except`` in ``main`` (``__init__.py``).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
#: Stopped before every photo was sent: the service's quota is spent, or ``--max-calls`` calls
#: were. Running the same command again resumes (with ``--store``, nothing is paid twice).
EXIT_STOPPED = 4
#: The shell's code for a run whose output was closed by its reader (128 + SIGPIPE).
EXIT_BROKEN_PIPE = 141
#: The shell's code for a run stopped by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A mistake in how the command was called (exit code 2)."""
