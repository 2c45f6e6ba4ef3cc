"""What each subcommand does once its arguments are parsed: one ``run_*`` function per command.

A runner takes the parsed ``argparse.Namespace`` and returns the exit code; it raises
`UsageError` for a mistake in the call and lets `CFRError` and `OSError` reach ``main``, which
reports them. The parser for each command is in ``_parser.py``, which points at its runner with
``set_defaults(run=...)``. Display tables and drawing are imported inside the runners that use them.
"""

from __future__ import annotations

import argparse
import glob
import sys
from collections.abc import Sequence
from pathlib import Path

from ncp_cfr import protocol
from ncp_cfr.cli._client import DEMO_IMAGE, has_credentials, open_client, show_progress
from ncp_cfr.cli._exits import EXIT_OK, UsageError
from ncp_cfr.cli._output import Output, draw_overlay, summary
from ncp_cfr.errors import CFRError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".heic", ".heif", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
)


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


# -- face, celebrity, analyze ---------------------------------------------------------------------

#: The client's batch method behind each batch command.
BATCH_METHODS = {
    "face": "detect_faces_many",
    "celebrity": "recognize_celebrities_many",
    "analyze": "analyze_many",
}


def run_batch(args: argparse.Namespace) -> int:
    """``face``, ``celebrity`` and ``analyze``: one call per file, in a batch."""
    from ncp_cfr.display import result_table

    paths = expand_inputs(args.inputs)
    output = Output(args.format, sys.stdout, sys.stderr)
    with open_client(args, emulator=args.emulator) as client:
        method = getattr(client, BATCH_METHODS[args.command])
        items = method(
            paths,
            concurrency=args.concurrency,
            rate_limit=args.rate_limit,
            progress=show_progress(args, len(paths)),
        )
    taken: set[Path] = set()
    for path, item in zip(paths, items, strict=True):
        error: BaseException | None = item.error
        overlay = None
        if args.draw and item.result is not None:
            try:
                overlay = draw_overlay(path, item.result, args.draw, taken)
            except (CFRError, OSError) as failed:
                # The result is still reported; the file counts as failed, once.
                error = failed
        output.item(str(path), item.result, error, result_table, overlay)
    return output.close()


# -- lookalike ------------------------------------------------------------------------------------


def run_lookalike(args: argparse.Namespace) -> int:
    """``lookalike``: the celebrity endpoint at several sizes per file, one file at a time."""
    from ncp_cfr.display import lookalike_table

    paths = expand_inputs(args.inputs)
    output = Output(args.format, sys.stdout, sys.stderr)
    with open_client(args, emulator=args.emulator) as client:
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


# -- emulator -------------------------------------------------------------------------------------


def run_emulator(args: argparse.Namespace) -> int:
    """``emulator``: serve the protocol over HTTP until interrupted."""
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


# -- demo -----------------------------------------------------------------------------------------


def run_demo(args: argparse.Namespace) -> int:
    """``demo``: analyse one photo (the bundled one by default) and write its overlay."""
    from ncp_cfr.display import result_table
    from ncp_cfr.draw import draw_faces

    image = Path(args.image) if args.image else DEMO_IMAGE
    real = has_credentials() and not args.emulator
    if real:
        print(f"Calling CLOVA Face Recognition ({args.base_url or protocol.DEFAULT_BASE_URL}).")
    else:
        print(
            "No credentials set: using the built-in emulator (real face detection; gender, age "
            "and emotion are 'unknown' offline; lookalikes come from a one-photo gallery).\n"
            f"Set {protocol.ENV_CLIENT_ID} and {protocol.ENV_CLIENT_SECRET} for the real service."
        )
    with open_client(args, emulator=not real) as client:
        analysis = client.analyze(image)
    print(f"\n{image.name} ({summary(analysis)})")
    print(result_table(analysis))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    draw_faces(image, analysis).save(out, quality=90)
    print(f"\nOverlay written to {out}")
    return EXIT_OK
