"""Ray Data against one process: the same photos through ``ncp_cfr.ray.annotate`` and through
``client.stream``, with the same number of calls in flight.

A folder of distinct small JPEG files (2,000 by default) goes to an emulator that takes 50 ms a
call, in a child process as a real service runs elsewhere:

- Ray: a local ``ray.init(num_cpus=2)`` with the emulator's keys and URL in the environment
  before it (as the "Millions of photos" page says), then
  ``annotate(read_binary_files(folder, include_paths=True), "face", workers=2, concurrency=C)``
  materialized;
- one process: ``Client.stream("face", paths, concurrency=2 * C)``, every item consumed.

Ray's start-up (``ray.init`` to the first finished remote task) is timed on its own, not in the
rounds. Rounds alternate which goes first, so drift on the machine touches both alike.

Run from the repository root (needs ``pip install "clova-face[ray]"``)::

    python benchmarks/ray_scale.py [--photos 2000] [--concurrency 8] [--latency 0.05]
                                   [--rounds 3]

Prints Ray's start-up, every round, the medians, their ratio (Ray / stream) and the calls a
second of each. What to expect on 2 cores: not parity. The stream stays near the ideal
photos / (2 x C) x latency (7.3 to 8.7 s for 6.25 s); Ray took 1.7 to 1.9 times as long (13.4 to
17 s; ratio 1.71 on a quiet machine with a worker's batches sharing its slots, 1.79 when they
took turns, 2.1 to 3.0 before ``sniffio`` became a dependency or on a loaded machine). Both
cores are busy throughout: each Ray worker spends more CPU a call than the single process does,
and Ray's own processes (raylet, GCS, the read and write tasks, the limits actor) and the
emulator share the same two cores. Ray Data's pipeline itself is not the limit: an Annotator
that only sleeps 50 ms per 8 photos finishes the same 2,000 rows in about 5 s. One machine gains
nothing from Ray; what it buys is more machines, which this benchmark cannot show.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _child_emulator import emulator
from _photos import write_photos

from ncp_cfr import Client
from ncp_cfr.protocol import ENV_BASE_URL, ENV_CLIENT_ID, ENV_CLIENT_SECRET


def timed_ray(ray: Any, folder: Path, count: int, concurrency: int) -> float:
    from ncp_cfr.ray import annotate

    start = time.perf_counter()
    photos = ray.data.read_binary_files(str(folder), include_paths=True)
    rows = annotate(photos, "face", workers=2, concurrency=concurrency).materialize()
    took = time.perf_counter() - start
    table = rows.to_pandas()
    answered = table.loc[table["error"].isna(), "file"].nunique()
    assert answered == count == len(table), f"{answered} of {count} answered ({len(table)} rows)"
    return took


def timed_stream(client: Client, paths: list[Path], concurrency: int) -> float:
    start = time.perf_counter()
    with client.stream("face", paths, concurrency=concurrency) as stream:
        ok = sum(item.ok for item in stream)
    took = time.perf_counter() - start
    assert ok == len(paths), f"{ok} of {len(paths)} answered"
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight per worker")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ray_in_flight = 2 * args.concurrency  # two workers

    # The emulator's child process is forked before Ray starts any thread in this one.
    with tempfile.TemporaryDirectory() as tmp, emulator(args.latency, False) as (options, peak):
        folder = Path(tmp) / "photos"
        folder.mkdir()
        paths = write_photos(folder, args.photos)
        warm = Path(tmp) / "warm"
        warm.mkdir()
        warm_paths = write_photos(warm, 2 * ray_in_flight, seed=1)
        # The workers' keys: in the driver's environment before ray.init, never in runtime_env.
        os.environ[ENV_CLIENT_ID] = options["client_id"]
        os.environ[ENV_CLIENT_SECRET] = options["client_secret"]
        os.environ[ENV_BASE_URL] = options["base_url"]

        import ray

        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray.get(ray.remote(lambda: None).remote())
        startup = time.perf_counter() - start
        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)

        timings: dict[str, list[float]] = {"ray": [], "stream": []}
        try:
            with Client(**options) as client:
                # Warm up: imports, Ray Data's first plan, the connection pool.
                timed_ray(ray, warm, len(warm_paths), args.concurrency)
                timed_stream(client, warm_paths, ray_in_flight)
                for round_ in range(args.rounds):
                    order = ["ray", "stream"] if round_ % 2 == 0 else ["stream", "ray"]
                    for name in order:
                        if name == "ray":
                            took = timed_ray(ray, folder, args.photos, args.concurrency)
                        else:
                            took = timed_stream(client, paths, ray_in_flight)
                        timings[name].append(took)
                    print(
                        f"  round {round_ + 1} ({order[0]} first): ray {timings['ray'][-1]:6.2f} s"
                        f"   stream {timings['stream'][-1]:6.2f} s",
                        flush=True,
                    )
        finally:
            ray.shutdown()

    ideal = args.photos / ray_in_flight * args.latency
    on_ray = statistics.median(timings["ray"])
    streamed = statistics.median(timings["stream"])
    print(
        f"{args.photos} photos, {ray_in_flight} calls in flight (ray: 2 workers x "
        f"{args.concurrency}; stream: concurrency {ray_in_flight}), {args.latency * 1000:.0f} ms "
        f"a call; ideal {ideal:.2f} s; most calls in flight at the emulator: "
        f"{peak[0] if peak else '?'}"
    )
    print(f"  ray start-up (ray.init to the first remote task): {startup:.2f} s, not in the rounds")
    print(
        f"  median: ray {on_ray:.2f} s ({args.photos / on_ray:.0f} calls/s), "
        f"stream {streamed:.2f} s ({args.photos / streamed:.0f} calls/s); "
        f"ratio ray/stream {on_ray / streamed:.2f}"
    )


if __name__ == "__main__":
    main()
