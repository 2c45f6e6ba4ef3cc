"""The callable class ``Dataset.map_batches`` runs on each worker: photos in, faces table out."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from ncp_cfr import export
from ncp_cfr.clients._async import AsyncClient
from ncp_cfr.clients._base import DEFAULT_BATCH_CONCURRENCY, check_concurrency
from ncp_cfr.clients._batches import BatchRun
from ncp_cfr.clients._methods import Many, Operation
from ncp_cfr.errors import CFRError, InvalidArgumentError
from ncp_cfr.images import content_of
from ncp_cfr.pipelines import (
    DEFAULT_MARGIN,
    DEFAULT_MATCH_CONFIDENCE,
    DEFAULT_MIN_FACE,
    DEFAULT_SCALES,
)
from ncp_cfr.protocol import ENV_CLIENT_ID, ENV_CLIENT_SECRET
from ncp_cfr.ray._limits import ClusterLimits

__all__ = ["Annotator", "credentials_hint"]

#: Client options that never travel in a task's arguments: they come from each worker's environment.
_SECRET_OPTIONS = frozenset({"client_id", "client_secret", "http_client"})


def credentials_hint() -> str:
    """How credentials reach Ray workers: the fix named in every missing-credentials error."""
    return (
        f"set {ENV_CLIENT_ID} and {ENV_CLIENT_SECRET} in the environment of every Ray node "
        "before it starts (`ray start`, the pod's env from a Kubernetes secret; for a local "
        "ray.init(), in the driver's environment before ray.init). Not in "
        "runtime_env={'env_vars': ...}: Ray writes those values to its logs"
    )


class Annotator:
    """Photos in, the faces table out: a callable class for ``Dataset.map_batches``.

    ```python
    import ray
    from ncp_cfr.ray import Annotator, ClusterLimits

    ds = ray.data.read_binary_files("photos/", include_paths=True)
    limits = ClusterLimits(rate_limit=10)
    rows = ds.map_batches(
        Annotator,
        fn_constructor_kwargs={"operation": "analyze", "limits": limits, "concurrency": 4},
        compute=ray.data.ActorPoolStrategy(size=2),  # two workers
        num_cpus=0.25,      # the work is waiting on the service, not the CPU
        batch_size=32,
    )
    rows.write_parquet("out/")
    ```

    Each input row is a photo: its bytes in ``bytes_column`` (what
    ``ray.data.read_binary_files`` gives), or a file path in ``path_column`` that every worker
    can read. Each output row is a row of the export table ([`COLUMNS`][ncp_cfr.export.COLUMNS],
    in its types): one per face; one with ``face`` empty for a photo without a face; one with
    ``error`` set for a photo that failed (``"InvalidImageError: ..."``: a corrupt file is a row,
    not a failed job) or was never sent (``"NotAttempted: ..."``, after a quota answer or a
    spent budget). ``file`` is the path column's value, ``sha256`` the photo's content hash.

    Each worker makes one [`AsyncClient`][ncp_cfr.AsyncClient] and keeps at most
    ``concurrency`` calls in flight, shared by the batches Ray gives it at once. The credentials
    come from the worker's environment (``NCP_CFR_CLIENT_ID``, ``NCP_CFR_CLIENT_SECRET``), never
    from the task's arguments: see [`credentials_hint`][ncp_cfr.ray.credentials_hint].

    Args:
        operation: ``"face"``, ``"celebrity"``, ``"analyze"`` or ``"lookalike"``.
        limits: the job's shared rate, budget and quota stop; without it each worker stops
            only at a quota answer of its own.
        concurrency: calls in flight per worker.
        base_url: the service's URL (default: ``NCP_CFR_BASE_URL``, else the real service).
        bytes_column: the column of photo bytes (used when present).
        path_column: the column of paths: the ``file`` cell, and what is read when there are
            no bytes.
        client_options: other [`AsyncClient`][ncp_cfr.AsyncClient] options (``timeout``,
            ``max_retries``, ``max_bytes``...); never credentials.
        margin: ``analyze``'s crop margin.
        min_face: ``analyze``'s smallest face sent for a lookalike.
        min_confidence: ``analyze``'s and ``lookalike``'s lowest name confidence.
        scales: ``lookalike``'s upload sizes.
        match_confidence: ``lookalike``'s match threshold.

    Raises:
        InvalidArgumentError: an unknown operation, an option of another operation, or
            credentials in ``client_options``.
        CFRError: no credentials in the worker's environment.
    """

    def __init__(
        self,
        operation: Operation = "face",
        *,
        limits: ClusterLimits | None = None,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        base_url: str | None = None,
        bytes_column: str = "bytes",
        path_column: str = "path",
        client_options: Mapping[str, Any] | None = None,
        margin: float = DEFAULT_MARGIN,
        min_face: int = DEFAULT_MIN_FACE,
        min_confidence: float = 0.0,
        scales: Sequence[float] = DEFAULT_SCALES,
        match_confidence: float = DEFAULT_MATCH_CONFIDENCE,
    ) -> None:
        check_concurrency(concurrency)
        options = dict(client_options or {})
        secret = sorted(_SECRET_OPTIONS & options.keys())
        if secret:
            raise InvalidArgumentError(
                f"client_options cannot carry {', '.join(secret)}: task arguments are pickled "
                f"and shown by Ray; {credentials_hint()}"
            )
        try:
            self._client = AsyncClient(base_url=base_url, **options)
        except CFRError as exc:
            if ENV_CLIENT_ID in os.environ and ENV_CLIENT_SECRET in os.environ:
                raise
            raise CFRError(f"no CFR credentials on this Ray worker: {credentials_hint()}") from exc
        self.operation = operation
        self._plans, _ = self._client._operation(
            operation, "rgb", margin, min_face, min_confidence, scales, match_confidence
        )
        self._limits = limits
        self._gate = limits.gate() if limits is not None else None
        self._concurrency = concurrency
        self._bytes_column = bytes_column
        self._path_column = path_column
        self._schema = export.arrow_schema()
        # The worker's calls in flight, shared by the batches Ray runs side by side; made in the
        # event loop Ray runs us in.
        self._slots: anyio.CapacityLimiter | None = None

    async def __call__(self, batch: Any) -> Any:
        """The table rows of one batch of photos, as a ``pyarrow.Table``.

        Args:
            batch: a batch in any of Ray's formats (``"numpy"``, ``"pandas"``, ``"pyarrow"``).
        """
        columns = _columns(batch)
        data = columns.get(self._bytes_column)
        paths = columns.get(self._path_column)
        if data is None and paths is None:
            raise InvalidArgumentError(
                f"the batch has neither a {self._bytes_column!r} nor a {self._path_column!r} "
                f"column (it has {sorted(columns)}): pass bytes_column= or path_column="
            )
        count = len(data if data is not None else paths)  # type: ignore[arg-type]
        files = [None if paths is None else _text(paths[i]) for i in range(count)]
        photos = await anyio.to_thread.run_sync(_read, data, files)
        outcomes = await self._run(
            [(i, got) for i, (got, _) in enumerate(photos) if not isinstance(got, CFRError)]
        )
        rows: list[dict[str, object]] = []
        for index, (content, sha) in enumerate(photos):
            outcome = content if isinstance(content, CFRError) else outcomes[index]
            rows.extend(export.outcome_rows(self.operation, outcome, file=files[index], sha256=sha))
        import pyarrow as pa  # type: ignore[import-untyped,import-not-found,unused-ignore]

        return pa.Table.from_pylist(rows, schema=self._schema)

    async def _run(self, sendable: list[tuple[int, Any]]) -> dict[int, Any]:
        """The result or error of each photo read, by its position in the batch."""
        positions = [position for position, _ in sendable]
        run = BatchRun(
            (content for _, content in sendable), self._concurrency, None, False, gate=self._gate
        )
        light = self.operation in ("face", "celebrity")
        if self._slots is None:
            self._slots = anyio.CapacityLimiter(self._concurrency)
        work: Many[Any] = Many(run, self._plans, light_finish=light, slots=self._slots)
        outcomes: dict[int, Any] = {}
        async with self._client._open_stream(work) as items:
            async for item in items:
                outcomes[positions[item.index]] = item.result if item.ok else item.error
        if self._limits is not None:
            self._limits.record(run.summary)
        return outcomes


def _read(data: Any, files: list[str | None]) -> list[tuple[Any, str | None]]:
    """Each photo's bytes (or the ImageError reading it) and its content hash."""
    photos: list[tuple[Any, str | None]] = []
    for index, file in enumerate(files):
        source: Any = data[index] if data is not None else None
        if source is None:
            source = file
        try:
            if source is None:
                raise InvalidArgumentError("this row has no bytes and no path")
            content, sha = content_of(source)
        except CFRError as error:
            photos.append((error, None))
            continue
        photos.append((content, sha))
    return photos


def _columns(batch: Any) -> dict[str, Any]:
    """A batch in any of Ray's formats as ``{name: sequence}``."""
    if hasattr(batch, "column_names") and hasattr(batch, "column"):  # pyarrow.Table
        return {name: batch.column(name).to_pylist() for name in batch.column_names}
    if hasattr(batch, "columns") and hasattr(batch, "to_dict"):  # pandas.DataFrame
        return {str(name): batch[name].tolist() for name in batch.columns}
    if isinstance(batch, Mapping):  # numpy: {name: ndarray}
        return {str(name): values for name, values in batch.items()}
    raise InvalidArgumentError(
        f"a batch is a dict of arrays, a pandas DataFrame or a pyarrow Table, not {type(batch)}"
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
