"""Import time: ``import ncp_cfr`` and a first use of it, against importing its dependencies.

Each measurement is one fresh interpreter (``sys.executable -c ...``), timed by the parent from
start to exit, so interpreter start-up is in every number alike (it is printed on its own).
The snippets:

- **baseline**: ``import asyncio, httpx, PIL.Image, pydantic``, the dependencies a user of the
  SDK imports anyway (the issue's definition). ``import pydantic`` is lazy: it does not load
  ``BaseModel``.
- **import**: ``import ncp_cfr``. The goal is at most 1.2 times the baseline.
- **import Client**: ``from ncp_cfr import Client``, the import every program starts with (the
  package's names are lazy, so this is where the clients, protocol and models load). The same
  goal applies.
- **first use**: ``from ncp_cfr import Client, FaceResult`` and one ``FaceResult`` parsed from a
  one-face answer. Parsing is included so that deferring work from import to first use (lazy
  submodules, ``defer_build``) is not counted as a saving. Constructing a client, preparing an
  image and the network are not: the first is httpx's TLS set-up, the others are measured by
  ``prepare_image.py`` and ``client_overhead.py``.
- **reference**: the dependencies as the SDK uses them: the baseline plus ``anyio``, Pillow's
  JPEG and PNG plugins, ``BaseModel``/``Field`` and one tiny model built and used (pydantic's
  fixed cost of a first model). First use over this is what the SDK's own code costs.

Snippets are run in turn, rotated every round so that none always runs first, and medians
are compared. The children get a private bytecode cache (``PYTHONPYCACHEPREFIX`` in a temporary
directory, warmed before timing) even when ``PYTHONDONTWRITEBYTECODE`` is set: an installed
package has its ``.pyc`` files, and compiling from source would add tens of milliseconds that no
user pays.

    python benchmarks/import_time.py [--rounds 15] [--check]

Prints median, min and max wall time per snippet in ms, the children's median CPU time (steadier
on a loaded machine), and the ratios of medians import / baseline (goal: <= 1.2, wall time),
first use / baseline and first use / reference. Exits 0 whatever the numbers, unless ``--check``
is given: then it exits 1 when import or import Client over baseline is above the goal.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 1.2
ROOT = Path(__file__).resolve().parent.parent

# A one-face answer of the face endpoint, in the service's camelCase.
ANSWER = (
    b'{"info":{"size":{"width":640,"height":480},"faceCount":1},"faces":[{'
    b'"roi":{"x":10,"y":20,"width":30,"height":40},'
    b'"landmark":{"leftEye":{"x":1,"y":1},"rightEye":{"x":2,"y":2},"nose":{"x":3,"y":3},'
    b'"leftMouth":{"x":4,"y":4},"rightMouth":{"x":5,"y":5}},'
    b'"gender":{"value":"female","confidence":0.9},"age":{"value":"22~26","confidence":0.5},'
    b'"emotion":{"value":"neutral","confidence":0.8},'
    b'"pose":{"value":"frontal_face","confidence":0.7}}]}'
)

BASELINE = "import asyncio, httpx, PIL.Image, pydantic"
SNIPPETS = {
    "interpreter start": "pass",
    "baseline": BASELINE,
    "reference": f"""{BASELINE}
import anyio, PIL.JpegImagePlugin, PIL.PngImagePlugin
from pydantic import BaseModel, Field
class M(BaseModel):
    x: int = Field(0)
assert M.model_validate({{"x": 1}}).x == 1
""",
    "import": "import ncp_cfr",
    "import Client": "from ncp_cfr import Client\nassert Client",
    # The assertion makes sure the snippet really parsed, so a broken import cannot look fast.
    "first use": f"""from ncp_cfr import Client, FaceResult
assert Client
assert FaceResult.model_validate_json({ANSWER!r}).faces[0].roi.width == 30
""",
}


def run(code: str, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) milliseconds of a fresh interpreter running ``code``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall * 1000, cpu * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 when import / baseline is over {GOAL}"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ncp_cfr_pyc_") as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        for code in SNIPPETS.values():  # fills the bytecode cache and fails early if one breaks
            run(code, env)
        wall: dict[str, list[float]] = {name: [] for name in SNIPPETS}
        cpu: dict[str, list[float]] = {name: [] for name in SNIPPETS}
        names = list(SNIPPETS)
        for round_ in range(args.rounds):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                wall_ms, cpu_ms = run(SNIPPETS[name], env)
                wall[name].append(wall_ms)
                cpu[name].append(cpu_ms)

    med = {name: statistics.median(values) for name, values in wall.items()}
    med_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    print(f"Python {sys.version.split()[0]}, {args.rounds} rounds, ms per fresh process")
    print(f"{'':18}  {'median':>7}  {'min':>7}  {'max':>7}  {'CPU med':>7}")
    for name, values in wall.items():
        print(
            f"{name:18}  {med[name]:7.1f}  {min(values):7.1f}  {max(values):7.1f}"
            f"  {med_cpu[name]:7.1f}"
        )
    ratio = max(med["import"], med["import Client"]) / med["baseline"]
    # Wall time is the goal's measure; the children's CPU time is steadier on a shared machine.
    for label, top, bottom in (
        ("import / baseline", "import", "baseline"),
        ("import Client / baseline", "import Client", "baseline"),
        ("first use / baseline", "first use", "baseline"),
        ("first use / reference", "first use", "reference"),
    ):
        goal = f"  (goal <= {GOAL})" if top.startswith("import") else ""
        print(
            f"{label:25}: {med[top] / med[bottom]:5.2f}, CPU {med_cpu[top] / med_cpu[bottom]:5.2f}"
            f"{goal}"
        )
    return 1 if args.check and ratio > GOAL else 0


if __name__ == "__main__":
    sys.exit(main())
