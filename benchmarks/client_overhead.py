"""SDK overhead: ``Client.detect_faces`` against a bare httpx POST of the same bytes.

Both talk to the same loopback emulator, which answers one face. The bare baseline is what a
user would hand-write: a pooled ``httpx.Client``, the multipart upload, ``json.loads`` of the
answer. The SDK additionally inspects the image (a compliant JPEG is sent byte for byte),
validates the answer into models and maps coordinates. Runs are interleaved so that drift in
machine load hits both alike.

    python benchmarks/client_overhead.py [--rounds 7] [--calls 200]

Prints per-call medians and the ratio SDK / bare (goal: under 1.05).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import httpx

from ncp_cfr.testing import Emulator, make_face

PHOTO = Path(__file__).resolve().parent.parent / "ncp_cfr" / "data" / "grace_hopper.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    data = PHOTO.read_bytes()

    with Emulator(record_images=False) as emu:
        emu.reply("face", faces=[make_face(170, 130, 180, 200, gender="female")], times=None)
        headers = {
            "X-NCP-APIGW-API-KEY-ID": emu.client_id,
            "X-NCP-APIGW-API-KEY": emu.client_secret,
        }
        url = f"{emu.base_url}/vision/v1/face"
        with httpx.Client() as http, emu.client() as client:

            def bare() -> None:
                response = http.post(
                    url, headers=headers, files={"image": ("a.jpg", data, "image/jpeg")}
                )
                response.raise_for_status()
                assert json.loads(response.content)["faces"]

            def sdk() -> None:
                assert client.detect_faces(data).faces

            for fn in (bare, sdk):  # warm both pools and caches
                for _ in range(20):
                    fn()
            timings: dict[str, list[float]] = {"bare": [], "sdk": []}
            for _ in range(args.rounds):
                for name, fn in (("bare", bare), ("sdk", sdk)):
                    start = time.perf_counter()
                    for _ in range(args.calls):
                        fn()
                    timings[name].append((time.perf_counter() - start) / args.calls)

    bare_ms = statistics.median(timings["bare"]) * 1000
    sdk_ms = statistics.median(timings["sdk"]) * 1000
    print(f"image: {PHOTO.name}, {len(data):,} bytes; {args.rounds} rounds x {args.calls} calls")
    print(f"bare httpx POST + json.loads : {bare_ms:7.3f} ms/call")
    print(f"Client.detect_faces          : {sdk_ms:7.3f} ms/call")
    print(f"ratio SDK / bare             : {sdk_ms / bare_ms:7.3f}  (goal < 1.05)")


if __name__ == "__main__":
    main()
