"""Memory of a long stream: peak RSS of a process streaming N inputs, for a small and a large N.

``Client.stream`` reads its inputs lazily and holds at most ``2 x concurrency`` of them in
progress, so the peak memory of a run should not depend on how many inputs it has. Each
measurement runs in a fresh child process that streams a generator of N paths (about 20 small
JPEG files, repeated) through ``client.stream("face", ...)`` and drops each item once counted;
the emulator (``detector="none"``, one face per call) runs in another child process, so its own
records are not counted. The child reports its peak RSS (``ru_maxrss``).

Run from the repository root::

    python benchmarks/stream_memory.py                     # N = 1,000 and 100,000, both shells
    python benchmarks/stream_memory.py --inputs 1000 20000 --shell sync

Prints each peak and the difference between the largest and the smallest N. Goal: within 50 MB.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _child_emulator import emulator
from PIL import Image

from ncp_cfr.protocol import ENV_BASE_URL, ENV_CLIENT_ID, ENV_CLIENT_SECRET

FILES = 20


def write_photos(folder: Path) -> None:
    """``FILES`` small JPEGs of noise (about 10 KB each)."""
    for index in range(FILES):
        pixels = random.Random(index).randbytes(96 * 80 * 3)
        buf = io.BytesIO()
        Image.frombytes("RGB", (96, 80), pixels).save(buf, "JPEG", quality=85)
        (folder / f"photo{index:02d}.jpg").write_bytes(buf.getvalue())


def repeated(folder: Path, count: int) -> Iterator[Path]:
    """``count`` paths, cycling through the folder's files: a generator, never a list."""
    files = sorted(folder.glob("*.jpg"))
    for index in range(count):
        yield files[index % len(files)]


def measure(folder: Path, count: int, shell: str, concurrency: int) -> None:
    """The child: stream ``count`` inputs, then print one JSON line with the peak RSS."""
    from ncp_cfr import AsyncClient, Client

    ok = 0
    start = time.perf_counter()
    if shell == "sync":
        with (
            Client() as client,
            client.stream("face", repeated(folder, count), concurrency=concurrency) as stream,
        ):
            for item in stream:
                ok += item.ok
    else:
        import anyio

        async def run() -> int:
            done = 0
            async with (
                AsyncClient() as client,
                client.stream("face", repeated(folder, count), concurrency=concurrency) as stream,
            ):
                async for item in stream:
                    done += item.ok
            return done

        ok = anyio.run(run)
    seconds = time.perf_counter() - start
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    print(json.dumps({"inputs": count, "ok": ok, "peak_mb": peak / 1e6, "seconds": seconds}))


def run_child(
    folder: Path, count: int, shell: str, concurrency: int, options: dict[str, str]
) -> dict[str, float]:
    env = {
        **os.environ,
        ENV_BASE_URL: options["base_url"],
        ENV_CLIENT_ID: options["client_id"],
        ENV_CLIENT_SECRET: options["client_secret"],
    }
    args = [sys.executable, __file__, "--child", str(folder), "--shell", shell]
    args += ["--inputs", str(count), "--concurrency", str(concurrency)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the measuring child failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["ok"] != count:
        raise SystemExit(f"only {result['ok']} of {count} inputs answered")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, nargs="+", default=[1_000, 100_000])
    parser.add_argument("--shell", choices=("sync", "async", "both"), default="both")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        measure(args.child, args.inputs[0], args.shell, args.concurrency)
        return

    shells = ("sync", "async") if args.shell == "both" else (args.shell,)
    counts = sorted(args.inputs)
    with tempfile.TemporaryDirectory() as tmp, emulator(0.0, in_process=False) as (options, _):
        folder = Path(tmp)
        write_photos(folder)
        print(
            f"streaming a generator of paths to {FILES} small JPEGs, concurrency "
            f"{args.concurrency}, emulator (detector='none') in another process"
        )
        for shell in shells:
            peaks = {}
            for count in counts:
                result = run_child(folder, count, shell, args.concurrency, options)
                peaks[count] = result["peak_mb"]
                print(
                    f"  {shell:5}  N={count:>7,}  peak RSS {result['peak_mb']:6.1f} MB  "
                    f"({result['seconds']:.1f} s, {count / result['seconds']:,.0f} inputs/s)"
                )
            growth = peaks[counts[-1]] - peaks[counts[0]]
            verdict = "ok" if growth <= 50 else "OVER GOAL"
            print(
                f"  {shell:5}  N={counts[-1]:,} vs N={counts[0]:,}: {growth:+.1f} MB "
                f"(goal: within 50 MB) {verdict}"
            )


if __name__ == "__main__":
    main()
