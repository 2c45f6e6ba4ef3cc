"""``ncp-cfr``: face analysis and lookalikes from the command line, and the offline emulator.

Exit codes: 0 every file succeeded; 1 nothing succeeded (or a fatal error such as refused keys);
2 a usage error (bad option, no input file, no credentials); 3 some files failed, others not;
130 interrupted. Every failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NoReturn

from ncp_cfr import protocol
from ncp_cfr._version import __version__
from ncp_cfr.errors import APIError, CFRError
from ncp_cfr.images import MIN_SIDE
from ncp_cfr.models import Lookalike
from ncp_cfr.pipelines import DEFAULT_MATCH_CONFIDENCE, MAX_SCALE
from ncp_cfr.testing.detector import ALIASES, BACKENDS

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".heic", ".heif", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
)
#: ``--detector`` values: ``auto``, the emulator's backends and their aliases, ``none``.
_DETECTORS = ["auto", *BACKENDS, *ALIASES, "none"]
DEMO_IMAGE = Path(__file__).parent / "data" / "grace_hopper.jpg"
#: The demo's gallery name for the bundled photo: Hangul, to show names render as glyphs.
DEMO_GALLERY_NAME = "그레이스 호퍼"


class UsageError(Exception):
    """A mistake in how the command was called (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other failure (the usage is in --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- inputs ---------------------------------------------------------------------------------------


def expand_inputs(specs: Sequence[str]) -> list[Path]:
    """Files, folders (searched recursively for images) and globs, in a stable order, no repeats."""
    found: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
        elif glob.has_magic(spec):
            matches = sorted(Path(p) for p in glob.glob(spec, recursive=True))
            found.extend(p for p in matches if p.is_file())
            if not matches:
                raise UsageError(f"no file matches {spec!r}")
        else:
            # A missing file is the item's own error, reported in its row, not a usage error.
            found.append(path)
    unique = list(dict.fromkeys(found))
    if not unique:
        raise UsageError(f"no image files in {', '.join(specs)}")
    return unique


# -- the client -----------------------------------------------------------------------------------


def _has_credentials() -> bool:
    env = os.environ
    return bool(env.get(protocol.ENV_CLIENT_ID) and env.get(protocol.ENV_CLIENT_SECRET))


def _demo_emulator(detector: str) -> Any:
    """An emulator with the real detector and a one-person gallery (the bundled photo)."""
    from ncp_cfr.testing import Emulator
    from ncp_cfr.testing.gallery import Gallery

    gallery = Gallery()
    gallery.add(DEMO_GALLERY_NAME, DEMO_IMAGE)
    return Emulator(detector=None if detector == "none" else detector, gallery=gallery)


@contextmanager
def _client(args: argparse.Namespace, *, emulator: bool) -> Iterator[Any]:
    """The real service, or (``emulator``) an in-process emulator with real detection."""
    from ncp_cfr.clients import Client

    if emulator:
        emu = _demo_emulator(args.detector)
        with emu.client(in_process=True, max_retries=args.max_retries) as client:
            yield client
        return
    if not _has_credentials():
        raise UsageError(
            f"no credentials: set {protocol.ENV_CLIENT_ID} and {protocol.ENV_CLIENT_SECRET} "
            "to your NCP application's Client ID and Secret, or add --emulator to try offline"
        )
    with Client(
        base_url=args.base_url, timeout=args.timeout, max_retries=args.max_retries
    ) as client:
        yield client


def _progress(args: argparse.Namespace, total: int) -> bool:
    if args.progress is not None:
        return bool(args.progress)
    # A bar only where a person watches, and only when there is something to wait for.
    return total > 1 and sys.stderr.isatty()


# -- output ---------------------------------------------------------------------------------------


def _error_json(error: BaseException) -> dict[str, Any]:
    info: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, APIError):
        info.update(status=error.status_code, code=error.code)
    return info


def _record(name: str, result: Any, error: BaseException | None) -> dict[str, Any]:
    return {
        "file": name,
        "result": result.model_dump(by_alias=True, mode="json") if result is not None else None,
        "error": _error_json(error) if error is not None else None,
    }


def _summary(result: Any) -> str:
    if isinstance(result, Lookalike):
        sizes = len(result.per_scale)
        return f"{result.size.width}×{result.size.height}, asked at {sizes} sizes"
    size = result.info.size
    count = len(result.faces)
    return f"{size.width}×{size.height}, {count} face{'s' if count != 1 else ''}"


class _Output:
    """Writes each file's outcome as it arrives: a table, JSON Lines, or one JSON document."""

    def __init__(self, fmt: str, out: IO[str], err: IO[str]) -> None:
        self.fmt = fmt
        self.out = out
        self.err = err
        self.records: list[dict[str, Any]] = []
        self.ok = 0
        self.failed = 0

    def item(
        self,
        name: str,
        result: Any,
        error: BaseException | None,
        table: Callable[[Any], str],
        overlay: Path | None = None,
    ) -> None:
        if error is None:
            self.ok += 1
        else:
            self.failed += 1
            # One clear line per failure, on stderr, whatever the format.
            self.err.write(f"ncp-cfr: {name}: {type(error).__name__}: {error}\n")
        if overlay is not None and self.fmt != "table":
            # stdout holds only JSON in these formats; a person still learns where it went.
            self.err.write(f"ncp-cfr: {name}: overlay: {overlay}\n")
        if self.fmt == "jsonl":
            self.out.write(json.dumps(_record(name, result, error), ensure_ascii=False) + "\n")
            self.out.flush()
        elif self.fmt == "json":
            self.records.append(_record(name, result, error))
        elif result is not None:
            drawn = f"\noverlay: {overlay}" if overlay is not None else ""
            self.out.write(f"{name} ({_summary(result)})\n{table(result)}{drawn}\n\n")

    def close(self) -> int:
        if self.fmt == "json":
            self.out.write(json.dumps(self.records, ensure_ascii=False, indent=2) + "\n")
        if self.failed and self.ok:
            return EXIT_PARTIAL
        return EXIT_FAILED if self.failed else EXIT_OK


def _draw(image: Path, result: Any, folder: Path, taken: set[Path]) -> Path:
    """Write the overlay of ``image`` into ``folder``; returns where it went.

    ``taken`` holds the overlays of this run: ``a/x.jpg`` and ``b/x.png`` get ``x.cfr.jpg``
    and ``x-2.cfr.jpg`` rather than one overwriting the other.
    """
    from ncp_cfr.draw import draw_faces

    target = folder / f"{image.stem}.cfr.jpg"
    copy = 1
    while target in taken:
        copy += 1
        target = folder / f"{image.stem}-{copy}.cfr.jpg"
    overlay = draw_faces(image, result)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        overlay.save(target, quality=90)
    except OSError as exc:
        raise _OverlayError(f"cannot write the overlay {target}: {exc.strerror or exc}") from None
    taken.add(target)
    return target


class _OverlayError(OSError):
    """The overlay could not be written (a full disk, a folder that is a file, no permission)."""


# -- commands -------------------------------------------------------------------------------------

_BATCH_METHODS = {
    "face": "detect_faces_many",
    "celebrity": "recognize_celebrities_many",
    "analyze": "analyze_many",
}


def _run_batch(args: argparse.Namespace) -> int:
    from ncp_cfr.display import result_table

    paths = expand_inputs(args.inputs)
    output = _Output(args.format, sys.stdout, sys.stderr)
    with _client(args, emulator=args.emulator) as client:
        method = getattr(client, _BATCH_METHODS[args.command])
        items = method(
            paths,
            concurrency=args.concurrency,
            rate_limit=args.rate_limit,
            progress=_progress(args, len(paths)),
        )
    taken: set[Path] = set()
    for path, item in zip(paths, items, strict=True):
        error: BaseException | None = item.error
        overlay = None
        if args.draw and item.result is not None:
            try:
                overlay = _draw(path, item.result, args.draw, taken)
            except (CFRError, OSError) as failed:
                # The result is still reported; the file counts as failed, once.
                error = failed
        output.item(str(path), item.result, error, result_table, overlay)
    return output.close()


def _run_lookalike(args: argparse.Namespace) -> int:
    from ncp_cfr.display import lookalike_table

    paths = expand_inputs(args.inputs)
    output = _Output(args.format, sys.stdout, sys.stderr)
    with _client(args, emulator=args.emulator) as client:
        for path in paths:
            try:
                options = {"scales": args.scales} if args.scales else {}
                found = client.find_lookalike(
                    path, match_confidence=args.match_confidence, **options
                )
            except CFRError as error:
                output.item(str(path), None, error, lookalike_table)
            else:
                output.item(str(path), found, None, lookalike_table)
    return output.close()


def _run_emulator(args: argparse.Namespace) -> int:
    from ncp_cfr.testing.standalone import serve

    gallery: dict[str, str] = {}
    for entry in args.gallery:
        name, sep, path = entry.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--gallery takes NAME=PATH, got {entry!r}")
        gallery[name] = path
    serve(
        host=args.host,
        port=args.port,
        client_id=args.client_id,
        client_secret=args.client_secret,
        detector=None if args.detector == "none" else args.detector,
        gallery=gallery or None,
        latency=args.latency,
    )
    return EXIT_OK


def _run_demo(args: argparse.Namespace) -> int:
    from ncp_cfr.display import result_table
    from ncp_cfr.draw import draw_faces

    image = Path(args.image) if args.image else DEMO_IMAGE
    real = _has_credentials() and not args.emulator
    if real:
        print(f"Calling CLOVA Face Recognition ({args.base_url or protocol.DEFAULT_BASE_URL}).")
    else:
        print(
            "No credentials set: using the built-in emulator (real face detection; gender, age "
            "and emotion are 'unknown' offline; lookalikes come from a one-photo gallery).\n"
            f"Set {protocol.ENV_CLIENT_ID} and {protocol.ENV_CLIENT_SECRET} for the real service."
        )
    with _client(args, emulator=not real) as client:
        analysis = client.analyze(image)
    print(f"\n{image.name} ({_summary(analysis)})")
    print(result_table(analysis))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    draw_faces(image, analysis).save(out, quality=90)
    print(f"\nOverlay written to {out}")
    return EXIT_OK


# -- arguments ------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _scales(text: str) -> list[int]:
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


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text}")
    return value


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("service")
    group.add_argument(
        "--base-url",
        default=None,
        help=f"service root (default: ${protocol.ENV_BASE_URL} or {protocol.DEFAULT_BASE_URL})",
    )
    group.add_argument(
        "--timeout",
        type=_positive_float,
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
        choices=_DETECTORS,
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


def build_parser() -> argparse.ArgumentParser:
    """The ``ncp-cfr`` argument parser."""
    parser = _Parser(
        prog="ncp-cfr",
        description="CLOVA Face Recognition from the command line. Credentials come from "
        f"{protocol.ENV_CLIENT_ID} and {protocol.ENV_CLIENT_SECRET}.",
        epilog="exit codes: 0 all succeeded, 1 failed, 2 usage error, 3 some files failed, "
        "130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"ncp-cfr {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    helps = {
        "face": "faces with box, landmarks, gender, age, emotion, pose",
        "celebrity": "the most similar celebrity per face (no positions)",
        "analyze": "faces plus each face's own lookalike",
    }
    for name, text in helps.items():
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("inputs", nargs="+", metavar="IMAGE", help="files, folders or globs")
        _add_client_options(sub)
        _add_output_options(sub)
        sub.add_argument(
            "--draw",
            type=Path,
            metavar="DIR",
            help="write an overlay per photo here (DIR/NAME.cfr.jpg; each path is "
            "printed as 'overlay: PATH', on stderr with --json/--jsonl)",
        )
        sub.add_argument(
            "--concurrency",
            type=_positive_int,
            default=4,
            help="requests at once (default %(default)s)",
        )
        sub.add_argument(
            "--rate-limit",
            type=_positive_float,
            default=None,
            metavar="PER_SECOND",
            help="at most this many requests per second",
        )
        sub.set_defaults(run=_run_batch)

    sub = commands.add_parser(
        "lookalike",
        help="lookalike candidates voted across upload sizes",
        description="Ask the celebrity endpoint at several upload sizes and rank the names. "
        "Each size votes for its most confident name. The leading name is the match when its "
        "mean confidence is at least --match-confidence and no other name won as many sizes; "
        "the vote is stable when the match also won more than half of the sizes that "
        "answered. Otherwise the answer is 'no clear match' (the ranking is still shown).",
    )
    sub.add_argument("inputs", nargs="+", metavar="IMAGE", help="files, folders or globs")
    sub.add_argument(
        "--scales",
        type=_scales,
        default=None,
        help=f"comma-separated longest-side sizes from {MIN_SIDE} to {MAX_SCALE} px, "
        "e.g. 320,640,1280 (sizes above the photo's own are sent at its own "
        "size)",
    )
    sub.add_argument(
        "--match-confidence",
        type=_fraction,
        default=DEFAULT_MATCH_CONFIDENCE,
        metavar="C",
        help="mean confidence the leading name needs to be the match (default %(default)s)",
    )
    _add_client_options(sub)
    _add_output_options(sub)
    sub.set_defaults(run=_run_lookalike)

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
    sub.add_argument("--detector", default="auto", choices=_DETECTORS)
    sub.add_argument(
        "--gallery",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a celebrity for the celebrity endpoint (repeatable)",
    )
    sub.add_argument("--latency", type=float, default=0.0, help="seconds added to each answer")
    sub.set_defaults(run=_run_emulator)

    sub = commands.add_parser(
        "demo",
        help="analyse a bundled photo and write an overlay (offline without credentials)",
        description="Face analysis and lookalike on a bundled public-domain photo. Without "
        "credentials it runs on the built-in emulator.",
    )
    sub.add_argument("--image", default=None, help="another photo instead of the bundled one")
    sub.add_argument("--out", default="ncp-cfr-demo.jpg", help="the overlay image to write")
    _add_client_options(sub)
    sub.set_defaults(run=_run_demo)
    return parser


@contextmanager
def _notices_on_stderr() -> Iterator[None]:
    """The SDK's warnings (a retry and its wait, say) as one ``ncp-cfr:`` line each on stderr."""
    logger = logging.getLogger("ncp_cfr")
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("ncp-cfr: %(message)s"))
    logger.addHandler(handler)
    try:
        yield
    finally:
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
    except OSError as error:
        # The machine, not the service: a port in use, a folder that cannot be written.
        print(f"ncp-cfr: error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("ncp-cfr: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
