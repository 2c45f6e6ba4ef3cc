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
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ncp_cfr import protocol
from ncp_cfr.batches import BatchSummary
from ncp_cfr.cli._client import DEMO_IMAGE, has_credentials, open_client, show_progress
from ncp_cfr.cli._exits import EXIT_OK, EXIT_STOPPED, UsageError
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


def run_batch(args: argparse.Namespace) -> int:
    """``face``, ``celebrity`` and ``analyze``: one operation per file, each reported as it ends."""
    from ncp_cfr.display import result_table

    paths = expand_inputs(args.inputs)
    output = Output(args.format, sys.stdout, sys.stderr)
    taken: set[Path] = set()
    with open_client(args, emulator=args.emulator) as client:
        stream = open_stream(client, args, args.command, paths)
        with stream:
            for item in stream:
                path = paths[item.index]
                error: BaseException | None = item.error
                overlay = None
                if args.draw and item.result is not None:
                    try:
                        overlay = draw_overlay(path, item.result, args.draw, taken)
                    except (CFRError, OSError) as failed:
                        # The result is still reported; the file counts as failed, once.
                        error = failed
                output.item(
                    str(path),
                    item.result,
                    error,
                    result_table,
                    overlay,
                    item.from_store,
                    item.index,
                )
    return finish(output, stream.summary, args)


def open_stream(
    client: Any, args: argparse.Namespace, operation: str, paths: list[Path], **options: Any
) -> Any:
    """The client's stream of ``operation`` over ``paths``, with the library options given."""
    return client.stream(
        operation,
        paths,
        concurrency=args.concurrency,
        rate_limit=args.rate_limit,
        progress=show_progress(args, len(paths)),
        store=args.store,
        max_calls=args.max_calls,
        retry_failed=args.retry_failed,
        **options,
    )


def finish(output: Output, done: BatchSummary, args: argparse.Namespace) -> int:
    """The end of a run over many photos: the output closed, the summary on stderr, and the exit
    code (4 when the run stopped before every photo was sent).
    """
    code = output.close()
    print(f"ncp-cfr: {done}", file=sys.stderr)
    if done.stopped is None:
        return code
    print(f"ncp-cfr: {stopped_because(done.stopped, args)}", file=sys.stderr)
    return EXIT_STOPPED


def stopped_because(reason: str, args: argparse.Namespace) -> str:
    """Why the run stopped early, when it can go on, and how to resume."""
    again = "run the same command again to resume" + (
        " (the store answers what was done)" if args.store else " (add --store to pay only once)"
    )
    if reason == "max_calls":
        return f"stopped after --max-calls {args.max_calls} calls; {again}"
    if reason == "quota":
        local, kst = next_quota_reset()
        return (
            f"the application's call quota is spent; NCP quotas reset at 00:00 KST, next at "
            f"{kst:%Y-%m-%d %H:%M} KST ({local:%Y-%m-%d %H:%M %Z} here); then {again}"
        )
    return f"interrupted; {again}"


def next_quota_reset(now: datetime | None = None) -> tuple[datetime, datetime]:
    """The next 00:00 in Korea (UTC+9, no daylight saving), in local time and in KST."""
    kst = timezone(timedelta(hours=9), "KST")
    current = (now or datetime.now(timezone.utc)).astimezone(kst)
    midnight = (current + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.astimezone(), midnight


# -- export ---------------------------------------------------------------------------------------


def run_export(args: argparse.Namespace) -> int:
    """``export``: a store's answers as one flat table (CSV, JSON Lines or Parquet)."""
    from ncp_cfr.export import write
    from ncp_cfr.store import ResultStore

    if not args.store.is_file():
        raise UsageError(f"no store at {args.store}: give the file a batch wrote with --store")
    fmt = args.format
    if fmt is None:
        suffix = args.output.suffix.lower().lstrip(".") if args.output else ""
        fmt = suffix if suffix in ("csv", "jsonl", "parquet") else "csv"
    if fmt == "parquet" and args.output is None:
        raise UsageError("parquet is binary: give a file with -o FILE")
    with ResultStore(args.store) as store:
        written = write(store.results(), args.output or sys.stdout, fmt)
    where = args.output or "stdout"
    print(f"ncp-cfr: {written} rows to {where} ({fmt})", file=sys.stderr)
    return EXIT_OK


# -- lookalike ------------------------------------------------------------------------------------


def run_lookalike(args: argparse.Namespace) -> int:
    """``lookalike``: the celebrity endpoint at several sizes per file, each reported as it ends."""
    from ncp_cfr.display import lookalike_table

    paths = expand_inputs(args.inputs)
    output = Output(args.format, sys.stdout, sys.stderr)
    options = {"scales": args.scales} if args.scales else {}
    with open_client(args, emulator=args.emulator) as client:
        stream = open_stream(
            client, args, "lookalike", paths, match_confidence=args.match_confidence, **options
        )
        with stream:
            for item in stream:
                output.item(
                    str(paths[item.index]),
                    item.result,
                    item.error,
                    lookalike_table,
                    None,
                    item.from_store,
                    item.index,
                )
    return finish(output, stream.summary, args)


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
        quota=args.quota,
    )
    return EXIT_OK


# -- demo -----------------------------------------------------------------------------------------


def offline_measures() -> str:
    """What the emulator measures here and what it cannot, one line each."""
    from ncp_cfr.testing.attributes import attributes_unavailable, identity_unavailable

    no_attributes, no_identity = attributes_unavailable(), identity_unavailable()
    measured = "faces, landmarks, pose" + ("" if no_attributes else ", gender, age")
    unknown = "emotion" if no_attributes is None else f"gender, age ({no_attributes}), emotion"
    lookalike = "face descriptors (dlib)" if no_identity is None else f"pixels ({no_identity})"
    return (
        f"Measured offline: {measured}. Not measured ('unknown'): {unknown}.\n"
        f"Lookalikes: a one-photo gallery, compared by {lookalike}."
    )


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
            f"No credentials set: using the built-in emulator.\n{offline_measures()}\n"
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
