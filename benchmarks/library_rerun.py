"""A rerun of a photo library through the SDK: every photo answered from the result store.

Writes N distinct small JPEGs, runs ``Client.stream("face", paths, store=...)`` once against an
emulator in a child process (each photo paid once), then times the same stream again: no call is
made, each photo is answered from the store. Files unchanged since they were hashed are not read
again (the store remembers their hash by path, size and modification time), so the rerun's time
does not grow with the photos' size; ``--touch`` changes every file's mtime first, to time the
rerun that must read and hash every file.

    python benchmarks/library_rerun.py [--photos 10000] [--touch]

Prints the first run's and the rerun's wall time and the rerun's time per photo (goal: at most
10 s for 10,000 photos, hashing included).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _child_emulator import emulator
from PIL import Image

from ncp_cfr import Client


def _distinct(index: int) -> Image.Image:
    """A 64x64 photo no other index shares: its bits as black and white 8x8 blocks (JPEG
    rounds nearby colours to the same bytes, and identical photos would be answered as copies).
    """
    image = Image.new("L", (64, 64), 128)
    for bit in range(24):
        if index >> bit & 1:
            x, y = bit % 8 * 8, bit // 8 * 8
            image.paste(255, (x, y, x + 8, y + 8))
    return image.convert("RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--touch", action="store_true", help="change every mtime before the rerun")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, emulator(0.0, False) as (options, _):
        paths = []
        for i in range(args.photos):
            path = Path(folder) / f"photo{i:06d}.jpg"
            _distinct(i).save(path)
            paths.append(path)
        store = Path(folder) / "library.db"
        with Client(**options) as client:
            start = time.perf_counter()
            with client.stream("face", paths, store=store, concurrency=args.concurrency) as s:
                for _ in s:
                    pass
            first = time.perf_counter() - start
            assert s.summary.answered == args.photos, s.summary
            if args.touch:
                for path in paths:
                    os.utime(path)
            start = time.perf_counter()
            with client.stream("face", paths, store=store, concurrency=args.concurrency) as s:
                for _ in s:
                    pass
            rerun = time.perf_counter() - start
            assert s.summary.from_store == args.photos and s.summary.calls == 0, s.summary
    print(f"{args.photos:,} photos, concurrency {args.concurrency}; files touched: {args.touch}")
    print(f"first run (each photo paid once): {first:7.2f} s")
    print(
        f"rerun from the store (no call)  : {rerun:7.2f} s, {rerun / args.photos * 1e3:.2f} ms "
        "per photo (goal <= 10 s per 10,000)"
    )


if __name__ == "__main__":
    main()
