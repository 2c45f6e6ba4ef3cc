"""The SDK on a Ray cluster: photos in a Ray dataset, the faces table out, limits for the whole job.

```python
import ray
from ncp_cfr.ray import ClusterLimits, annotate, pending

ray.init()                                             # NCP_CFR_* set in every node's environment
photos = ray.data.read_binary_files("s3://bucket/photos/", include_paths=True)
todo = pending(photos, done="s3://bucket/faces/", operation="analyze")  # a rerun: the rest only
limits = ClusterLimits(rate_limit=20, max_calls=100_000)
annotate(todo, "analyze", limits=limits, workers=4).write_parquet("s3://bucket/faces/")
print(limits.summary())
```

Needs ``pip install "clova-face[ray]"``; Ray is imported when a function here is first called,
not by ``import ncp_cfr.ray``. See the documentation page "Millions of photos".
"""

from __future__ import annotations

import os
from typing import Any

from ncp_cfr.errors import CFRError
from ncp_cfr.protocol import ENV_CLIENT_ID, ENV_CLIENT_SECRET
from ncp_cfr.ray._annotator import Annotator, credentials_hint
from ncp_cfr.ray._limits import ClusterLimits, LimitsState, import_ray
from ncp_cfr.ray._resume import finished_hashes, pending

__all__ = [
    "Annotator",
    "ClusterLimits",
    "LimitsState",
    "annotate",
    "credentials_hint",
    "finished_hashes",
    "pending",
]


def annotate(
    ds: Any,
    operation: str = "face",
    *,
    limits: ClusterLimits | None = None,
    workers: int = 2,
    concurrency: int = 8,
    batch_size: int = 32,
    num_cpus: float = 0.25,
    **options: Any,
) -> Any:
    """``ds.map_batches(Annotator, ...)`` with the job's limits and a check of the workers'
    credentials first: the faces table of every photo of ``ds``, as a (lazy) dataset.

    Args:
        ds: photos: a ``bytes`` column (``ray.data.read_binary_files(..., include_paths=True)``)
            or a ``path`` column of files every worker can read.
        operation: ``"face"``, ``"celebrity"``, ``"analyze"`` or ``"lookalike"``.
        limits: the job's shared rate and budget; default: new limits without either, so a
            quota answer still stops every worker.
        workers: Annotator actors (an ``ActorPoolStrategy`` of this size).
        concurrency: calls in flight per worker: ``workers * concurrency`` in all.
        batch_size: photos per batch.
        num_cpus: CPUs reserved per worker; the work waits on the service, so a fraction.
        **options: the other [`Annotator`][ncp_cfr.ray.Annotator] arguments (``base_url``,
            ``margin``, ``client_options``...).

    Raises:
        CFRError: a worker has no credentials in its environment (before any photo is read).
    """
    ray = import_ray()
    missing = ray.get(ray.remote(num_cpus=0)(_missing_credentials).remote())
    if missing:
        raise CFRError(f"Ray workers have no {' or '.join(missing)}: {credentials_hint()}")
    limits = limits if limits is not None else ClusterLimits()
    return ds.map_batches(
        Annotator,
        fn_constructor_kwargs={
            "operation": operation,
            "limits": limits,
            "concurrency": concurrency,
            **options,
        },
        compute=ray.data.ActorPoolStrategy(size=workers),
        batch_size=batch_size,
        num_cpus=num_cpus,
    )


def _missing_credentials() -> list[str]:
    """The key variables missing from this process's environment (run on a worker)."""
    return [name for name in (ENV_CLIENT_ID, ENV_CLIENT_SECRET) if not os.environ.get(name)]
