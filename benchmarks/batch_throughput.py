"""Batch throughput: ``detect_faces_many`` against a loopback emulator that takes 50 ms a call.

With ``concurrency=16`` and 200 images the ideal is 200 / 16 x 50 ms = 625 ms: every slot
busy all the time, zero client overhead (whole waves make 650 ms the true floor). The ratio
measured / ideal shows what the SDK's batch machinery costs (image preparation, thread hops,
HTTP, parsing). The images are small JPEGs passed as bytes, so preparation is a header read,
not what is measured.

The emulator runs in a child process by default, as a real service would run elsewhere: in the
same process its own per-request work (multipart parsing, JPEG decoding, JSON) competes with the
client for the GIL. ``--in-process`` measures that setup too.

    python benchmarks/batch_throughput.py [--images 200] [--concurrency 16] [--latency 0.05]
                                          [--rounds 5] [--in-process]

Prints the median of ``--rounds`` runs per shell, its ratio to the ideal (goal: at most 1.2), and
its ratio to bare ``httpx.AsyncClient`` posts of the same bytes with the same concurrency (what
any httpx-based client pays on this machine).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import time

import anyio
import httpx
from _child_emulator import emulator
from PIL import Image

from ncp_cfr import AsyncClient, Client


def small_jpeg(index: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (160, 120), (index % 256, 90, 60)).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--in-process", action="store_true", help="run the emulator in-process")
    args = parser.parse_args()
    images = [small_jpeg(i) for i in range(args.images)]
    ideal = args.images / args.concurrency * args.latency
    floor = math.ceil(args.images / args.concurrency) * args.latency

    with emulator(args.latency, args.in_process) as (options, peak):

        async def run_async() -> list[float]:
            timings = []
            async with AsyncClient(**options) as client:
                await client.detect_faces_many(images[: args.concurrency * 2])  # warm the pool
                for _ in range(args.rounds):
                    start = time.perf_counter()
                    items = await client.detect_faces_many(images, concurrency=args.concurrency)
                    timings.append(time.perf_counter() - start)
                    assert all(item.ok for item in items)
            return timings

        def run_sync() -> list[float]:
            timings = []
            with Client(**options) as client:
                client.detect_faces_many(images[: args.concurrency * 2])
                for _ in range(args.rounds):
                    start = time.perf_counter()
                    items = client.detect_faces_many(images, concurrency=args.concurrency)
                    timings.append(time.perf_counter() - start)
                    assert all(item.ok for item in items)
            return timings

        async def run_bare() -> list[float]:
            # The floor of any httpx-based client: the same posts, 16 tasks, no SDK at all.
            headers = {
                "X-NCP-APIGW-API-KEY-ID": options["client_id"],
                "X-NCP-APIGW-API-KEY": options["client_secret"],
            }
            url = options["base_url"] + "/vision/v1/face"
            timings = []
            async with httpx.AsyncClient() as http:
                limiter = anyio.CapacityLimiter(args.concurrency)

                async def post(data: bytes) -> None:
                    async with limiter:
                        files = {"image": ("a.jpg", data, "image/jpeg")}
                        response = await http.post(url, headers=headers, files=files)
                        response.raise_for_status()
                        json.loads(response.content)

                for _ in range(args.rounds + 1):  # the first round warms the pool
                    start = time.perf_counter()
                    async with anyio.create_task_group() as tg:
                        for data in images:
                            tg.start_soon(post, data)
                    timings.append(time.perf_counter() - start)
            return timings[1:]

        results = {
            "bare httpx.AsyncClient": anyio.run(run_bare),
            "AsyncClient.detect_faces_many": anyio.run(run_async),
            "Client.detect_faces_many": run_sync(),
        }

    where = "in-process" if args.in_process else "child-process"
    print(
        f"{args.images} images, concurrency {args.concurrency}, {args.latency * 1000:.0f} ms a "
        f"call, {where} emulator: ideal {ideal * 1000:.0f} ms (whole waves: "
        f"{floor * 1000:.0f} ms); most calls in flight: {peak[0] if peak else '?'}"
    )
    bare = statistics.median(results["bare httpx.AsyncClient"])
    for name, timings in results.items():
        median = statistics.median(timings)
        print(
            f"  {name:32} median {median * 1000:6.0f} ms  "
            f"(min {min(timings) * 1000:.0f}, max {max(timings) * 1000:.0f})  "
            f"ratio to ideal {median / ideal:.2f} (goal <= 1.2), to bare httpx {median / bare:.2f}"
        )


if __name__ == "__main__":
    main()
