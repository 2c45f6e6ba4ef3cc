"""Benchmark: a rerun over a photo library answered from the result store, hashing included.

Run from the repository root::

    python benchmarks/store_rerun.py            # add --photos N (default 10,000)

Creates N distinct small JPEG files in a temporary directory and stores a face result for each,
as a first run would (read, hash, key, a miss, a put), timing the puts. Then, with the store
opened again as a new run would, times the rerun: for each file read its bytes,
``content_hash``, ``request_key`` and ``store.get``, which must be a hit. Goal: at most 10 s
for 10,000 photos.

The files are small and were just written, so reading them costs little: for phone photos
(3-5 MB each) the hashing dominates, and the script prints this machine's SHA-256 throughput to
estimate it.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ncp_cfr.models import FaceResult  # noqa: E402
from ncp_cfr.store import ResultStore, StoredResult, content_hash, request_key  # noqa: E402
from ncp_cfr.testing import make_face  # noqa: E402

BASE_URL = "https://naveropenapi.apigw.ntruss.com/vision/v1"
OPTIONS = {"max_side": 1920, "margin": 0.0, "quality": 90}


def small_jpeg(index: int) -> bytes:
    """A 64x48 JPEG of noise seeded by ``index``: distinct bytes for every photo."""
    noise = random.Random(index).randbytes(64 * 48 * 3)
    buf = io.BytesIO()
    Image.frombytes("RGB", (64, 48), noise).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def answer_json() -> tuple[str, str]:
    """A two-face answer as the store keeps it: the SDK's JSON and the service's raw JSON."""
    raw = {
        "info": {"size": {"width": 1920, "height": 1440}, "faceCount": 2},
        "faces": [
            make_face(400, 300, 220, 260, gender="female", age="22~26", emotion="smile"),
            make_face(1100, 420, 180, 200, gender="male", age="30~34", emotion="neutral"),
        ],
    }
    result = FaceResult.model_validate(raw)
    return result.model_dump_json(by_alias=True), result.model_dump_json(by_alias=True)


def first_run(store: ResultStore, files: list[Path]) -> float:
    """Store an answer for every file; returns the seconds spent in ``put``."""
    result_json, raw_json = answer_json()
    spent = 0.0
    for path in files:
        sha = content_hash(path.read_bytes())
        key = request_key(sha, "face", OPTIONS, BASE_URL)
        assert store.get(key) is None
        entry = StoredResult(
            key, sha, "face", path.name, True, result_json, raw_json, "req", None, None, 1
        )
        start = time.perf_counter()
        store.put(entry)
        spent += time.perf_counter() - start
    return spent


def rerun(store: ResultStore, files: list[Path]) -> float:
    """Seconds to answer every file from the store, as a rerun does."""
    start = time.perf_counter()
    for path in files:
        key = request_key(content_hash(path.read_bytes()), "face", OPTIONS, BASE_URL)
        if store.get(key) is None:
            raise SystemExit(f"{path.name}: not found in the store")
    return time.perf_counter() - start


def sha256_throughput() -> float:
    """MB/s of SHA-256 over a 4 MB buffer (a phone photo's size)."""
    data = random.Random(0).randbytes(4 * 1024 * 1024)
    start = time.perf_counter()
    for _ in range(10):
        hashlib.sha256(data).digest()
    return 40 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=10_000)
    args = parser.parse_args()
    n = args.photos

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        files = []
        for i in range(n):
            path = folder / f"IMG_{i:05d}.jpg"
            path.write_bytes(small_jpeg(i))
            files.append(path)
        distinct = {content_hash(p.read_bytes()) for p in files}
        assert len(distinct) == n, "photos must be distinct"
        size = sum(p.stat().st_size for p in files) / n

        db = Path(tmp) / "library.db"
        with ResultStore(db) as store:
            put_seconds = first_run(store, files)
        with ResultStore(db) as store:  # a new run opens the store again
            assert len(store) == n
            seconds = rerun(store, files)
        db_mb = db.stat().st_size / 1e6

    print(f"{n:,} distinct JPEGs of {size / 1024:.1f} KB on average; store file {db_mb:.1f} MB")
    print(f"first run, put: {put_seconds / n * 1e6:.0f} us per photo (one commit each)")
    print(
        f"rerun from the store: {seconds:.2f} s for {n:,} photos, "
        f"{seconds / n * 1e6:.0f} us per photo (read + hash + key + get); goal <= 10 s per 10,000"
    )
    mbps = sha256_throughput()
    print(
        f"SHA-256 here: {mbps:.0f} MB/s, so 4 MB phone photos add about "
        f"{4 / mbps * 1e3:.1f} ms each ({4 / mbps * 10_000:.0f} s per 10,000) to the hashing, "
        f"before the disk reads"
    )


if __name__ == "__main__":
    main()
