"""Resuming a job: the photos of a dataset whose answers are not yet in a previous output."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from ncp_cfr import errors
from ncp_cfr.errors import CFRError, InvalidArgumentError
from ncp_cfr.images import content_of
from ncp_cfr.ray._limits import import_ray

__all__ = ["finished_hashes", "pending"]


#: Failures that belong to the photo (unreadable, refused as an invalid image): a rerun would
#: pay for the same answer, so they count as done, as the result store remembers them.
def _family(cls: type[Exception]) -> set[str]:
    names = {cls.__name__}
    for sub in cls.__subclasses__():
        names |= _family(sub)
    return names


PERMANENT_ERRORS = frozenset(_family(errors.ImageError) | _family(errors.InvalidImageError))
_log = logging.getLogger("ncp_cfr")
# One finished set per worker process, built once for all the batches it filters.
_FINISHED: dict[str, frozenset[str]] = {}


def pending(
    ds: Any,
    done: Any,
    *,
    operation: str | None = None,
    bytes_column: str = "bytes",
    path_column: str = "path",
) -> Any:
    """The rows of ``ds`` whose photos have no answer yet in ``done``: rerun a job over them
    only, and nothing is paid twice.

    ```python
    ds = ray.data.read_binary_files("photos/", include_paths=True)
    todo = pending(ds, done="out/", operation="analyze")   # "out/": the earlier runs' Parquet
    todo.map_batches(Annotator, ...).write_parquet("out/")  # new files beside the old ones
    ```

    A photo is done when ``done`` has a row with its content hash (``sha256``) that is an answer
    (``error`` empty: faces, or no face) or a failure of the photo itself (an ``ImageError`` or
    ``InvalidImageError``, which a new call would only repeat). Rows that say ``NotAttempted``,
    or a failure of the moment (a timeout, a server error, the quota), are sent again. The match
    is on content: the same photo under another name is done too.

    The finished hashes are collected on the driver (64 characters a photo) and broadcast to the
    workers, each of which hashes its photos' bytes; the photos themselves are never shuffled.

    Args:
        ds: a dataset of photos, as [`Annotator`][ncp_cfr.ray.Annotator] reads them.
        done: the earlier output: a path or list of paths of Parquet files or folders, local or
            in a bucket (one that does not exist yet, or has no files, means nothing is done,
            with a warning on the ``ncp_cfr`` logger), or a Ray dataset of it.
        operation: count only rows of this operation; required when ``done`` holds more than
            one.
        bytes_column: the column of photo bytes (used when present).
        path_column: the column of paths, read when there are no bytes.

    Returns:
        A dataset with the same columns (lazy, as Ray datasets are).

    Raises:
        InvalidArgumentError: ``done`` mixes operations and ``operation`` is not given.
    """
    ray = import_ray()
    finished = finished_hashes(done, operation)
    if not finished:
        return ds
    import pyarrow as pa  # type: ignore[import-untyped,import-not-found,unused-ignore]

    # In a list: Ray Data passes the reference as it is, so workers can cache by its id.
    shared = [ray.put(pa.array(sorted(finished), pa.string()))]
    return ds.map_batches(
        _unfinished,
        fn_kwargs={"shared": shared, "bytes_column": bytes_column, "path_column": path_column},
        batch_format="pyarrow",
    )


def finished_hashes(done: Any, operation: str | None = None) -> set[str]:
    """The content hashes of the photos ``done`` answered (or found permanently unreadable)."""
    ray = import_ray()
    if not isinstance(done, ray.data.Dataset):
        given = [done] if isinstance(done, (str, os.PathLike)) else list(done)
        paths = [os.fspath(path) for path in given if _may_exist(os.fspath(path))]
        try:
            read = ray.data.read_parquet(paths) if paths else None
        except FileNotFoundError:  # a bucket's folder that the first run has not written yet
            read = None
        if read is None:
            _log.warning("no earlier output in %s: every photo is pending", given)
            return set()
        done = read.select_columns(["sha256", "operation", "error"])
    finished: set[str] = set()
    operations: set[str] = set()
    for batch in done.iter_batches(batch_format="pyarrow", batch_size=65_536):
        for sha, op, error in zip(
            batch.column("sha256").to_pylist(),
            batch.column("operation").to_pylist(),
            batch.column("error").to_pylist(),
            strict=True,
        ):
            if sha is None or (operation is not None and op != operation):
                continue
            operations.add(op)
            if error is None or error.split(":", 1)[0] in PERMANENT_ERRORS:
                finished.add(sha)
    if operation is None and len(operations) > 1:
        raise InvalidArgumentError(
            f"the earlier output holds several operations ({', '.join(sorted(operations))}): "
            "pass operation= to say which one this run does"
        )
    return finished


def _may_exist(path: str) -> bool:
    """False for a local path with no Parquet under it yet (a first run); URLs are asked."""
    if "://" in path:
        return True
    if os.path.isdir(path):
        return any(_files(path))
    return os.path.exists(path)


def _files(folder: str) -> Iterator[str]:
    for root, _, names in os.walk(folder):
        for name in names:
            if not name.startswith((".", "_")):
                yield os.path.join(root, name)


def _unfinished(batch: Any, shared: list[Any], bytes_column: str, path_column: str) -> Any:
    """The rows of ``batch`` whose photo's hash is not among the finished ones."""
    import pyarrow as pa  # type: ignore[import-untyped,import-not-found,unused-ignore]

    ref = shared[0]
    key = ref.hex()
    if key not in _FINISHED:
        _FINISHED.clear()  # one job's set at a time
        _FINISHED[key] = frozenset(import_ray().get(ref).to_pylist())
    finished = _FINISHED[key]
    names = batch.column_names
    data = batch.column(bytes_column).to_pylist() if bytes_column in names else None
    paths = batch.column(path_column).to_pylist() if path_column in names else None
    keep = []
    for index in range(batch.num_rows):
        source = data[index] if data is not None else None
        if source is None and paths is not None:
            source = paths[index]
        try:
            sha = None if source is None else content_of(source)[1]
        except CFRError:
            sha = None  # unreadable: kept, so that the job reports it
        keep.append(sha not in finished)
    return batch.filter(pa.array(keep, pa.bool_()))
