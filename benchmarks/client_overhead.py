"""SDK overhead: ``Client.detect_faces`` against a bare httpx POST of the same bytes.

Both talk to the same loopback emulator, in a child process (``--in-process`` to share this
one), which answers one face. The bare baseline is what a user would hand-write: a pooled
``httpx.Client``, the multipart upload, ``json.loads`` of the answer. The SDK additionally
inspects the image (a compliant JPEG is sent byte for byte), validates the answer into models,
maps coordinates and enforces the per-attempt deadline. Runs are interleaved so that drift in
machine load hits both alike.

    python benchmarks/client_overhead.py [--rounds 9] [--calls 200] [--in-process]

Prints per-call medians, the ratio SDK / bare (goal: under 1.05), and the client process's CPU
time per call for both (steadier than wall time on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import httpx
from _child_emulator import emulator

from ncp_cfr import Client

PHOTO = Path(__file__).resolve().parent.parent / "ncp_cfr" / "data" / "grace_hopper.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--in-process", action="store_true", help="run the emulator in-process")
    args = parser.parse_args()
    data = PHOTO.read_bytes()

    with emulator(0.0, args.in_process) as (options, _):
        headers = {
            "X-NCP-APIGW-API-KEY-ID": options["client_id"],
            "X-NCP-APIGW-API-KEY": options["client_secret"],
        }
        url = options["base_url"] + "/vision/v1/face"
        with httpx.Client() as http, Client(**options) as client:

            def bare() -> None:
                files = {"image": ("a.jpg", data, "image/jpeg")}
                response = http.post(url, headers=headers, files=files)
                response.raise_for_status()
                assert json.loads(response.content)["faces"]

            def sdk() -> None:
                assert client.detect_faces(data).faces

            for fn in (bare, sdk):  # warm both pools and caches
                for _ in range(30):
                    fn()
            timings: dict[str, list[float]] = {"bare": [], "sdk": []}
            cpu: dict[str, list[float]] = {"bare": [], "sdk": []}
            for round_ in range(args.rounds):
                order = (("bare", bare), ("sdk", sdk))
                for name, fn in order if round_ % 2 == 0 else reversed(order):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    for _ in range(args.calls):
                        fn()
                    timings[name].append((time.perf_counter() - start) / args.calls)
                    cpu[name].append((time.process_time() - start_cpu) / args.calls)

    bare_ms = statistics.median(timings["bare"]) * 1000
    sdk_ms = statistics.median(timings["sdk"]) * 1000
    bare_cpu = statistics.median(cpu["bare"]) * 1000
    sdk_cpu = statistics.median(cpu["sdk"]) * 1000
    where = "in-process" if args.in_process else "child-process"
    print(
        f"image: {PHOTO.name}, {len(data):,} bytes; {where} emulator; "
        f"{args.rounds} rounds x {args.calls} calls"
    )
    print(f"bare httpx POST + json.loads : {bare_ms:7.3f} ms/call")
    print(f"Client.detect_faces          : {sdk_ms:7.3f} ms/call")
    print(f"difference                   : {sdk_ms - bare_ms:7.3f} ms/call")
    print(f"ratio SDK / bare             : {sdk_ms / bare_ms:7.3f}  (goal < 1.05)")
    # Wall time on a shared VM swings by tenths of a millisecond between rounds; the client
    # process's own CPU time per call is what the SDK adds, and it is steady.
    print(
        f"client CPU per call          : bare {bare_cpu:.3f} ms, SDK {sdk_cpu:.3f} ms "
        f"(+{sdk_cpu - bare_cpu:.3f} ms)"
    )


if __name__ == "__main__":
    main()
