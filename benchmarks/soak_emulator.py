"""Soak test of the standalone emulator: many requests, no error, no lost request, flat memory.

Starts ``ncp_cfr.testing.standalone.serve`` in a subprocess on a free loopback port (as
``ncp-cfr emulator`` runs it), then sends ``--requests`` face calls of a small JPEG from
``--threads`` threads, each with its own pooled ``httpx.Client`` (plain HTTP, as a user's own code
would). Every answer must be HTTP 200 with valid JSON and the expected number of faces; at the end
the server's own count (printed when it stops on SIGINT) must equal the number sent.

    python benchmarks/soak_emulator.py [--requests 10000] [--threads 8] [--detector]
        [--max-workers 32] [--malloc-arena-max N] [--warm-up 0.2]

Prints the server's RSS (``VmRSS``, and that of its detector worker process, if any) and its
thread count every ``--sample-every`` answers, its peak RSS (``VmHWM``), and requests per second.
``--detector`` turns the real face detector on (slower: detections are serialised; use fewer
requests). Memory must be flat after warm-up: the run fails if RSS grows by more than
``--max-growth`` MB between the first sample after the first ``--warm-up`` fraction of the
requests and the last sample. ``--malloc-arena-max`` sets ``MALLOC_ARENA_MAX`` for the server (to
tell glibc's per-thread arenas from a leak).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from PIL import Image

PHOTO = Path(__file__).resolve().parent.parent / "ncp_cfr" / "data" / "grace_hopper.jpg"
KEY_ID, KEY = "soak-id", "soak-key"


def small_jpeg() -> bytes:
    """A 160x188 JPEG of the bundled portrait (one face), about 6 kB."""
    buffer = io.BytesIO()
    Image.open(PHOTO).convert("RGB").resize((160, 188)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def children_kb(pid: int) -> int:
    """VmRSS of the server's child processes (the yuface worker), 0 when there are none."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(OSError, KeyError):  # exited (being replaced) meanwhile
                total += status_kb(int(child), "VmRSS")
    return total


def start_server(
    detector: bool, max_workers: int, arena_max: int | None
) -> tuple[subprocess.Popen[str], str]:
    code = (
        "from ncp_cfr.testing.standalone import serve; "
        f"serve(port=0, client_id={KEY_ID!r}, client_secret={KEY!r}, "
        f"detector={'auto' if detector else 'none'!r}, max_workers={max_workers})"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if arena_max is not None:
        env["MALLOC_ARENA_MAX"] = str(arena_max)
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None
    for _ in range(20):  # the banner comes after at most a few notes
        line = process.stdout.readline()
        if not line:
            break
        print(f"server: {line.rstrip()}")
        if "NCP_CFR_BASE_URL=" in line:
            return process, line.split("NCP_CFR_BASE_URL=")[1].split()[0].rstrip(";")
    process.kill()
    raise SystemExit("the emulator did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--sample-every", type=int, default=1_000)
    parser.add_argument("--detector", action="store_true", help="run the real face detector")
    parser.add_argument("--max-workers", type=int, default=32, help="the server's thread pool")
    parser.add_argument("--malloc-arena-max", type=int, default=None)
    parser.add_argument("--warm-up", type=float, default=0.2, help="fraction before the baseline")
    parser.add_argument("--max-growth", type=float, default=8.0, help="MB allowed after warm-up")
    args = parser.parse_args()

    data = small_jpeg()
    expected_faces = 1 if args.detector else 0
    process, url = start_server(args.detector, args.max_workers, args.malloc_arena_max)
    lock = threading.Lock()
    next_index = 0
    done = 0
    failures: list[str] = []
    # answers, VmRSS kB, children kB, seconds, threads
    samples: list[tuple[int, int, int, float, int]] = []
    started = time.perf_counter()

    def take() -> bool:
        nonlocal next_index
        with lock:
            if next_index >= args.requests:
                return False
            next_index += 1
            return True

    def worker() -> None:
        nonlocal done
        headers = {"X-NCP-APIGW-API-KEY-ID": KEY_ID, "X-NCP-APIGW-API-KEY": KEY}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            while take():
                problem = None
                try:
                    response = http.post(
                        "/vision/v1/face", files={"image": ("soak.jpg", data, "image/jpeg")}
                    )
                    if response.status_code != 200:
                        problem = f"HTTP {response.status_code}: {response.text[:200]}"
                    elif len(response.json()["faces"]) != expected_faces:
                        problem = f"unexpected answer: {response.text[:200]}"
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                with lock:
                    done += 1
                    if problem:
                        failures.append(problem)
                    if done % args.sample_every == 0:
                        rss = status_kb(process.pid, "VmRSS")
                        children = children_kb(process.pid)
                        threads = status_kb(process.pid, "Threads")
                        seconds = time.perf_counter() - started
                        samples.append((done, rss, children, seconds, threads))

    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started

    peak = status_kb(process.pid, "VmHWM")
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=30)
    last = out.strip().splitlines()[-1] if out.strip() else ""
    print(f"server: {last}")
    served = int(last.split("after ")[1].split()[0]) if "stopped after" in last else -1

    print(f"\n{'answers':>8}  {'VmRSS MB':>8}  {'worker MB':>9}  {'seconds':>7}  {'threads':>7}")
    for count, rss, children, seconds, threads in samples:
        mb, worker_mb = rss / 1024, children / 1024
        print(f"{count:>8}  {mb:>8.1f}  {worker_mb:>9.1f}  {seconds:>7.1f}  {threads:>7}")
    after_warm_up = [s for s in samples if s[0] >= args.warm_up * args.requests] or samples
    growth = (samples[-1][1] - after_warm_up[0][1]) / 1024 if samples else 0.0
    max_threads = max((s[4] for s in samples), default=0)
    print(
        f"\nsent {args.requests}, answered {done}, errors {len(failures)}, server counted {served}"
    )
    print(
        f"peak RSS (VmHWM) {peak / 1024:.1f} MB; RSS growth after warm-up {growth:+.1f} MB; "
        f"at most {max_threads} server threads"
    )
    print(f"{done / elapsed:.0f} requests/s over {elapsed:.1f} s with {args.threads} threads")
    for problem in failures[:5]:
        print(f"  error: {problem}")
    ok = not failures and done == args.requests == served and process.returncode == 0
    if growth > args.max_growth:
        print(f"memory grew by {growth:.1f} MB after warm-up (more than {args.max_growth} MB)")
        ok = False
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
