"""What the result store costs a first run: the same batch with and without ``store=``.

A batch of distinct photos (200 small JPEG files by default) goes through
``client.stream("face", paths, concurrency=8)`` against an emulator that takes 50 ms a call, in
a child process as a real service runs elsewhere. With ``store=`` every photo is also read and
hashed, looked up (a miss) and its answer committed to a fresh SQLite file as it arrives. Rounds
alternate the two (and which goes first), so drift on the machine touches both alike.

Run from the repository root::

    python benchmarks/store_overhead.py [--photos 200] [--concurrency 8] [--latency 0.05]
                                        [--rounds 5] [--shell sync|async]

Prints every round, the medians and their ratio. Goal: the store adds at most 5% (ratio <= 1.05).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from _child_emulator import emulator
from _photos import write_photos

from ncp_cfr import AsyncClient, Client


def timed_sync(client: Client, paths: list[Path], concurrency: int, store: Path | None) -> float:
    start = time.perf_counter()
    with client.stream("face", paths, concurrency=concurrency, store=store) as stream:
        ok = sum(item.ok and not item.from_store for item in stream)
    took = time.perf_counter() - start
    assert ok == len(paths), f"{ok} of {len(paths)} answered"
    return took


def timed_async(
    options: dict[str, Any], paths: list[Path], concurrency: int, store: Path | None
) -> float:
    async def run() -> float:
        async with AsyncClient(**options) as client:
            start = time.perf_counter()
            async with client.stream("face", paths, concurrency=concurrency, store=store) as stream:
                ok = 0
                async for item in stream:
                    ok += item.ok and not item.from_store
            took = time.perf_counter() - start
        assert ok == len(paths), f"{ok} of {len(paths)} answered"
        return took

    return anyio.run(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--shell", choices=("sync", "async"), default="sync")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, emulator(args.latency, False) as (options, _):
        folder = Path(tmp)
        paths = write_photos(folder, args.photos)
        stores = iter(folder / f"library{i}.db" for i in range(2 * args.rounds + 1))
        timings: dict[str, list[float]] = {"without store": [], "with store": []}
        with Client(**options) as client:

            def once(store: Path | None) -> float:
                if args.shell == "sync":
                    return timed_sync(client, paths, args.concurrency, store)
                return timed_async(options, paths, args.concurrency, store)

            once(next(stores))  # warm up: imports, the connection pool, SQLite
            once(None)
            for round_ in range(args.rounds):
                order = [None, next(stores)] if round_ % 2 == 0 else [next(stores), None]
                for store in order:
                    name = "without store" if store is None else "with store"
                    timings[name].append(once(store))
                print(
                    f"  round {round_ + 1}: without {timings['without store'][-1] * 1000:6.0f} ms"
                    f"   with {timings['with store'][-1] * 1000:6.0f} ms"
                )

    without = statistics.median(timings["without store"])
    with_store = statistics.median(timings["with store"])
    ideal = args.photos / args.concurrency * args.latency
    ratio = with_store / without
    print(
        f"{args.photos} photos, concurrency {args.concurrency}, {args.latency * 1000:.0f} ms a "
        f"call ({args.shell} client; ideal {ideal * 1000:.0f} ms): median without store "
        f"{without * 1000:.0f} ms, with a fresh store {with_store * 1000:.0f} ms; ratio "
        f"{ratio:.3f} (goal <= 1.05) {'ok' if ratio <= 1.05 else 'OVER GOAL'}"
    )


if __name__ == "__main__":
    main()
