"""What a command writes: each file's outcome as a table, JSON Lines or one JSON document, and
the overlay images of ``--draw``.

`Output` also counts successes and failures and turns them into the exit code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ncp_cfr.cli._exits import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL
from ncp_cfr.errors import APIError
from ncp_cfr.models import Lookalike


def _error_json(error: BaseException) -> dict[str, Any]:
    info: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, APIError):
        info.update(status=error.status_code, code=error.code)
    return info


def _record(
    name: str, result: Any, error: BaseException | None, from_store: bool = False
) -> dict[str, Any]:
    return {
        "file": name,
        "result": result.model_dump(by_alias=True, mode="json") if result is not None else None,
        "error": _error_json(error) if error is not None else None,
        "from_store": from_store,
    }


def summary(result: Any) -> str:
    """One line about a result: the photo's size and how many faces (or sizes asked)."""
    if isinstance(result, Lookalike):
        sizes = len(result.per_scale)
        return f"{result.size.width}×{result.size.height}, asked at {sizes} sizes"
    size = result.info.size
    count = len(result.faces)
    return f"{size.width}×{size.height}, {count} face{'s' if count != 1 else ''}"


class Output:
    """Writes each file's outcome as it arrives: a table, JSON Lines, or one JSON document."""

    def __init__(self, fmt: str, out: IO[str], err: IO[str]) -> None:
        self.fmt = fmt
        self.out = out
        self.err = err
        self.records: list[tuple[int, dict[str, Any]]] = []
        self.ok = 0
        self.failed = 0

    def item(
        self,
        name: str,
        result: Any,
        error: BaseException | None,
        table: Callable[[Any], str],
        overlay: Path | None = None,
        from_store: bool = False,
        index: int | None = None,
    ) -> None:
        """Report one file: its ``result`` (shown by ``table`` in the table format) or ``error``."""
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
            record = _record(name, result, error, from_store)
            self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.out.flush()  # a line per photo as it finishes, for whoever reads the pipe
        elif self.fmt == "json":
            # One document: in the order the files were given, whatever order they finished in.
            order = len(self.records) if index is None else index
            self.records.append((order, _record(name, result, error, from_store)))
        elif result is not None:
            drawn = f"\noverlay: {overlay}" if overlay is not None else ""
            self.out.write(f"{name} ({summary(result)})\n{table(result)}{drawn}\n\n")

    def close(self) -> int:
        """Finish the output (the JSON document is written now); returns the exit code."""
        if self.fmt == "json":
            records = [record for _, record in sorted(self.records, key=lambda pair: pair[0])]
            self.out.write(json.dumps(records, ensure_ascii=False, indent=2) + "\n")
        if self.failed and self.ok:
            return EXIT_PARTIAL
        return EXIT_FAILED if self.failed else EXIT_OK


class OverlayError(OSError):
    """The overlay could not be written (a full disk, a folder that is a file, no permission)."""


def draw_overlay(image: Path, result: Any, folder: Path, taken: set[Path]) -> Path:
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
        raise OverlayError(f"cannot write the overlay {target}: {exc.strerror or exc}") from None
    taken.add(target)
    return target
