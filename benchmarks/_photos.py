"""Distinct small photos for the benchmarks: JPEGs of noise, one file each."""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image


def write_photos(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` distinct 96×80 JPEGs of noise in ``folder`` (distinct across seeds too)."""
    paths = []
    for index in range(count):
        pixels = random.Random(f"{seed}-{index}").randbytes(96 * 80 * 3)
        buf = io.BytesIO()
        Image.frombytes("RGB", (96, 80), pixels).save(buf, "JPEG", quality=85)
        path = folder / f"photo{index:05d}.jpg"
        path.write_bytes(buf.getvalue())
        paths.append(path)
    return paths
