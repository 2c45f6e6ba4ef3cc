"""The ``ncp-cfr`` argument parser: the argument types, the option groups commands share, and
one ``_add_*`` function per subcommand.

A new subcommand is an ``_add_<name>(commands)`` function here, called from `build_parser`,
whose parser names its runner with ``set_defaults(run=...)``, plus that ``run_<name>`` in
``_commands.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn, TypeAlias

from ncp_cfr import protocol
from ncp_cfr._version import __version__
from ncp_cfr.cli._commands import run_batch, run_demo, run_emulator, run_export, run_lookalike
from ncp_cfr.cli._exits import EXIT_USAGE
from ncp_cfr.images import MIN_SIDE
from ncp_cfr.pipelines import DEFAULT_MATCH_CONFIDENCE, MAX_SCALE
from ncp_cfr.testing.detector import ALIASES, BACKENDS

#: ``--detector`` values: ``auto``, the emulator's backends and their aliases, ``none``.
DETECTORS = ["auto", *BACKENDS, *ALIASES, "none"]

# What add_subparsers returns (its parsers are `Parser`s too, so their usage errors are one line);
# a string, because argparse's class is not generic at run time.
_Commands: TypeAlias = "argparse._SubParsersAction[Parser]"


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other failure (the usage is in --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- argument types -------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def scales(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"scales are comma-separated pixel sizes, got {text!r}"
        ) from None
    if not values or min(values) < 50:
        raise argparse.ArgumentTypeError("scales are longest-side sizes of at least 50 px")
    if max(values) > MAX_SCALE:
        raise argparse.ArgumentTypeError(
            f"{max(values)} px is above the limit of {MAX_SCALE} px (the service takes at most "
            f"2 MB, so a larger upload would not be sent at the size asked); give sizes from "
            f"{MIN_SIDE} to {MAX_SCALE}"
        )
    return values


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text}")
    return value


# -- option groups shared by commands -------------------------------------------------------------


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IMAGE", help="files, folders or globs")


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("service")
    group.add_argument(
        "--base-url",
        default=None,
        help=f"service root (default: ${protocol.ENV_BASE_URL} or {protocol.DEFAULT_BASE_URL})",
    )
    group.add_argument(
        "--timeout",
        type=positive_float,
        default=protocol.DEFAULT_TIMEOUT,
        help="seconds per attempt (default %(default)s)",
    )
    group.add_argument(
        "--max-retries",
        type=int,
        default=protocol.DEFAULT_MAX_RETRIES,
        help="retries of transient failures (default %(default)s)",
    )
    group.add_argument(
        "--emulator", action="store_true", help="use the built-in emulator (offline)"
    )
    group.add_argument(
        "--detector",
        default="auto",
        choices=DETECTORS,
        help="the emulator's face detector (default %(default)s)",
    )


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    fmt = group.add_mutually_exclusive_group()
    fmt.add_argument(
        "--json", dest="format", action="store_const", const="json", help="one JSON document"
    )
    fmt.add_argument(
        "--jsonl",
        dest="format",
        action="store_const",
        const="jsonl",
        help="JSON Lines: one object per file, as each finishes",
    )
    parser.set_defaults(format="table")
    bar = group.add_mutually_exclusive_group()
    bar.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show a progress bar (default: on a terminal)",
    )
    bar.add_argument("--no-progress", dest="progress", action="store_false")


# -- the subcommands ------------------------------------------------------------------------------


def _add_batch_commands(commands: _Commands) -> None:
    helps = {
        "face": "faces with box, landmarks, gender, age, emotion, pose",
        "celebrity": "the most similar celebrity per face (no positions)",
        "analyze": "faces plus each face's own lookalike",
    }
    for name, text in helps.items():
        sub = commands.add_parser(name, help=text, description=text)
        _add_inputs(sub)
        _add_client_options(sub)
        _add_output_options(sub)
        sub.add_argument(
            "--draw",
            type=Path,
            metavar="DIR",
            help="write an overlay per photo here (DIR/NAME.cfr.jpg; each path is "
            "printed as 'overlay: PATH', on stderr with --json/--jsonl)",
        )
        _add_library_options(sub)
        sub.set_defaults(run=run_batch)


def _add_library_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=4,
        help="requests at once (default %(default)s)",
    )
    parser.add_argument(
        "--rate-limit",
        type=positive_float,
        default=None,
        metavar="PER_SECOND",
        help="at most this many requests per second",
    )
    group = parser.add_argument_group("photo libraries")
    group.add_argument(
        "--store",
        type=Path,
        metavar="DB",
        help="remember every answer in this SQLite file (created if missing): a rerun, or a "
        "copy of a photo under another name, is answered from it without a call",
    )
    group.add_argument(
        "--max-calls",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="spend at most N calls in this run, then stop (exit 4; rerun to resume)",
    )
    group.add_argument(
        "--retry-failed",
        action="store_true",
        help="send again the photos the store remembers as unreadable or invalid",
    )


def _add_export(commands: _Commands) -> None:
    text = "write a store's answers as one flat table: a row per face"
    sub = commands.add_parser("export", help=text, description=text)
    sub.add_argument("store", type=Path, metavar="DB", help="the store of earlier runs (--store)")
    sub.add_argument(
        "--format",
        choices=("csv", "jsonl", "parquet"),
        default=None,
        help="the table's format (default: from the output's suffix, else csv)",
    )
    sub.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        metavar="FILE",
        help="default: stdout (csv, jsonl)",
    )
    sub.set_defaults(run=run_export)


def _add_lookalike(commands: _Commands) -> None:
    sub = commands.add_parser(
        "lookalike",
        help="lookalike candidates voted across upload sizes",
        description="Ask the celebrity endpoint at several upload sizes and rank the names. "
        "Each size votes for its most confident name. The leading name is the match when its "
        "mean confidence is at least --match-confidence and no other name won as many sizes; "
        "the vote is stable when the match also won more than half of the sizes that "
        "answered. Otherwise the answer is 'no clear match' (the ranking is still shown).",
    )
    _add_inputs(sub)
    sub.add_argument(
        "--scales",
        type=scales,
        default=None,
        help=f"comma-separated longest-side sizes from {MIN_SIDE} to {MAX_SCALE} px, "
        "e.g. 320,640,1280 (sizes above the photo's own are sent at its own "
        "size)",
    )
    sub.add_argument(
        "--match-confidence",
        type=fraction,
        default=DEFAULT_MATCH_CONFIDENCE,
        metavar="C",
        help="mean confidence the leading name needs to be the match (default %(default)s)",
    )
    _add_client_options(sub)
    _add_output_options(sub)
    _add_library_options(sub)
    sub.set_defaults(run=run_lookalike)


def _add_emulator(commands: _Commands) -> None:
    sub = commands.add_parser(
        "emulator",
        help="run the offline emulator as an HTTP server",
        description="Serve the CFR protocol on a local port for any HTTP client. Keys from the "
        f"options or {protocol.ENV_CLIENT_ID} / {protocol.ENV_CLIENT_SECRET}.",
    )
    sub.add_argument("--host", default="127.0.0.1")
    sub.add_argument("--port", type=int, default=8080)
    sub.add_argument("--client-id", default=None)
    sub.add_argument("--client-secret", default=None)
    sub.add_argument("--detector", default="auto", choices=DETECTORS)
    sub.add_argument(
        "--gallery",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a celebrity for the celebrity endpoint (repeatable)",
    )
    sub.add_argument("--latency", type=float, default=0.0, help="seconds added to each answer")
    sub.add_argument(
        "--quota",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="answer N calls, then the gateway's quota answer (HTTP 429, code 400) to every call",
    )
    sub.set_defaults(run=run_emulator)


def _add_demo(commands: _Commands) -> None:
    sub = commands.add_parser(
        "demo",
        help="analyse a bundled photo and write an overlay (offline without credentials)",
        description="Face analysis and lookalike on a bundled public-domain photo. Without "
        "credentials it runs on the built-in emulator.",
    )
    sub.add_argument("--image", default=None, help="another photo instead of the bundled one")
    sub.add_argument("--out", default="ncp-cfr-demo.jpg", help="the overlay image to write")
    _add_client_options(sub)
    sub.set_defaults(run=run_demo)


def build_parser() -> argparse.ArgumentParser:
    """The ``ncp-cfr`` argument parser."""
    parser = Parser(
        prog="ncp-cfr",
        description="CLOVA Face Recognition from the command line. Credentials come from "
        f"{protocol.ENV_CLIENT_ID} and {protocol.ENV_CLIENT_SECRET}.",
        # Kept in step with the codes in _exits.py.
        epilog="exit codes: 0 all succeeded, 1 failed, 2 usage error, 3 some files failed, "
        "4 stopped by the quota or --max-calls (rerun to resume), 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"ncp-cfr {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # The order here is the order in --help.
    _add_batch_commands(commands)
    _add_lookalike(commands)
    _add_export(commands)
    _add_emulator(commands)
    _add_demo(commands)
    return parser
