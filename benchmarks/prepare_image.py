"""Benchmark: preparing a 24 MP phone photo for upload.

Run from the repository root::

    python benchmarks/prepare_image.py            # add --runs N to change the repetitions

Generates a photographic-looking 5974x3988 JPEG (quality 92, the size from the user's report) in a
temporary directory, then times, as the median of several runs in this process:

(a) the users' recipe: ``Image.open``, ``resize((w // 8, h // 8))``, save as PNG;
(b) the floor at 746 px: ``Image.open`` + ``draft`` to 746 px + ``load()``, i.e. only the decode;
(c) ``prepare_image(path, max_side=746)``;
(d) the floor and ``prepare_image(path)`` at ``DEFAULT_MAX_SIDE``.

Peak memory is measured in a fresh subprocess per case (``ru_maxrss`` of the child, which sees the
C allocations tracemalloc misses), next to a full decode of the photo.
"""

from __future__ import annotations

import argparse
import functools
import io
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ncp_cfr.images import DEFAULT_MAX_SIDE, prepare_image  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "astronaut.png"
WIDTH, HEIGHT = 5974, 3988


def make_photo(path: Path) -> None:
    """Upscaled sample photo plus sensor-like noise: compresses like a real 24 MP JPEG."""
    base = Image.open(SAMPLE).convert("RGB").resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
    rng = np.random.default_rng(0)
    pixels = np.asarray(base, dtype=np.int16) + rng.normal(0, 4, (HEIGHT, WIDTH, 3)).astype(
        np.int16
    )
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=92)


def floor_size(side: int) -> tuple[int, int]:
    scale = side / max(WIDTH, HEIGHT)
    return round(WIDTH * scale), round(HEIGHT * scale)


def users_recipe(path: Path) -> None:
    with Image.open(path) as im:
        small = im.resize((im.width // 8, im.height // 8))
        small.save(io.BytesIO(), "PNG")


def floor(path: Path, side: int) -> None:
    with Image.open(path) as im:
        im.draft("RGB", floor_size(side))
        im.load()


def full_decode(path: Path) -> None:
    with Image.open(path) as im:
        im.load()


@functools.cache
def default_upload_side(path: Path) -> int:
    """The longest side ``prepare_image`` picks by default (a DCT scale may land below 1920)."""
    prepared = prepare_image(path)
    return max(prepared.width, prepared.height)


CASES: dict[str, Callable[[Path], object]] = {
    "full decode (reference)": full_decode,
    "(a) users' recipe: open, resize /8, PNG": users_recipe,
    "(b) floor: open + draft 746 + load": lambda p: floor(p, 746),
    "(c) prepare_image(max_side=746)": lambda p: prepare_image(p, max_side=746),
    f"(d) floor: open + draft {DEFAULT_MAX_SIDE} + load": lambda p: floor(p, DEFAULT_MAX_SIDE),
    f"(d) prepare_image() [max_side={DEFAULT_MAX_SIDE}]": prepare_image,
    "(e) floor: open + draft to (d)'s upload + load": lambda p: floor(p, default_upload_side(p)),
}


def median_seconds(path: Path, runs: int) -> dict[str, float]:
    """Median per case; the cases take turns so a busy moment on the machine hits them all."""
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for case in CASES.values():
        case(path)  # warm-up: plugin imports, page cache
    for _ in range(runs):
        for name, case in CASES.items():
            start = time.perf_counter()
            case(path)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_memory_mb(name: str, path: Path) -> float:
    """Peak RSS of a fresh interpreter that imports everything and runs the case once."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip())


def child(name: str, path: Path) -> None:
    if name != "baseline":
        CASES[name](path)
    status = Path("/proc/self/status")
    if status.exists():
        # VmHWM belongs to this exec'd image; ru_maxrss on Linux would carry over the parent's
        # peak across fork + exec (and the parent just built a 24 MP photo in NumPy).
        line = next(x for x in status.read_text().splitlines() if x.startswith("VmHWM:"))
        print(f"{int(line.split()[1]) / 1024:.1f}")
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"{peak / (1024 * 1024 if sys.platform == 'darwin' else 1024):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "phone-24mp.jpg"
        make_photo(path)
        print(f"input: {WIDTH}x{HEIGHT} JPEG q92, {path.stat().st_size / 1e6:.1f} MB")
        print(f"Pillow {PIL.__version__}, Python {sys.version.split()[0]}, {args.runs} runs\n")
        baseline = peak_memory_mb("baseline", path)
        seconds = median_seconds(path, args.runs)
        print(f"{'case':48} {'median ms':>10} {'peak RSS MB':>12} {'(over baseline)':>16}")
        for name in CASES:
            peak = peak_memory_mb(name, path)
            print(f"{name:48} {seconds[name] * 1000:10.1f} {peak:12.1f} {peak - baseline:+16.1f}")
        print(f"{'interpreter + imports only':48} {'':10} {baseline:12.1f}")

        names = list(CASES)
        full, recipe, floor746, prep746, floor_1920, prep_default, floor_default = (
            seconds[n] for n in names
        )
        small = prepare_image(path, max_side=746)
        default = prepare_image(path)
        print(
            f"\nuploads: 746 px -> {small.width}x{small.height} {len(small.data) / 1e3:.0f} kB "
            f"q{small.quality}; default -> {default.width}x{default.height} "
            f"{len(default.data) / 1e3:.0f} kB q{default.quality}"
        )
        print("\nratios (same run):")
        print(f"  (a) recipe / (c) prepare 746       = {recipe / prep746:5.2f}   goal >= 5")
        print(f"  (c) prepare 746 / (b) floor 746    = {prep746 / floor746:5.2f}   goal <= 1.3")
        print(
            f"  (d) prepare default / (e) its floor = {prep_default / floor_default:5.2f}"
            "   goal <= 1.5"
        )
        print(f"  (d) prepare default / floor 1920   = {prep_default / floor_1920:5.2f}")
        print(f"  full decode / (c) prepare 746      = {full / prep746:5.2f}")


if __name__ == "__main__":
    main()
