"""The emulator checks what the service checks, with the service's own bodies, for any client."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
import types
import warnings

import httpx
import pytest
from PIL import Image

from ncp_cfr.testing import MAX_IMAGE_BYTES, Emulator, make_celebrity, make_face

from .conftest import jpeg_bytes


def _post(
    emu: Emulator, endpoint: str = "face", *, headers: dict | None = None, **kwargs: object
) -> httpx.Response:
    keys = {"X-NCP-APIGW-API-KEY-ID": emu.client_id, "X-NCP-APIGW-API-KEY": emu.client_secret}
    return httpx.post(
        f"{emu.base_url}/vision/v1/{endpoint}",
        headers=headers if headers is not None else keys,
        **kwargs,
    )  # type: ignore[arg-type]


def _code(response: httpx.Response) -> str:
    body = response.json()
    return str(body["error"]["errorCode"]) if "error" in body else body["errorCode"]


def test_plain_multipart_post_gets_a_contract_answer(emu: Emulator) -> None:
    response = _post(emu, files={"image": ("a.jpg", jpeg_bytes((300, 200)), "image/jpeg")})
    assert response.status_code == 200
    assert response.json() == {
        "info": {"size": {"width": 300, "height": 200}, "faceCount": 0},
        "faces": [],
    }


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "200"),
        ({"X-NCP-APIGW-API-KEY-ID": "fake-client-id", "X-NCP-APIGW-API-KEY": "wrong"}, 401, "200"),
    ],
)
def test_keys_are_checked(emu: Emulator, headers: dict, status: int, code: str) -> None:
    response = _post(emu, headers=headers, files={"image": ("a.jpg", jpeg_bytes(), "image/jpeg")})
    assert (response.status_code, _code(response)) == (status, code)
    assert response.json()["error"]["message"] == "Authentication Failed"


def test_unknown_path_is_a_gateway_404(emu: Emulator) -> None:
    response = httpx.post(f"{emu.base_url}/vision/v2/face")
    assert (response.status_code, _code(response)) == (404, "300")


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        (
            {"content": jpeg_bytes(), "headers_extra": {"Content-Type": "image/jpeg"}},
            "ER01",
        ),  # raw bytes
        ({"json": {"image": "aGVsbG8="}}, "ER01"),  # JSON/base64: the known mistake
        ({"files": {"photo": ("a.jpg", jpeg_bytes(), "image/jpeg")}}, "ER01"),  # wrong field
        ({"files": {"image": ("a.jpg", b"", "image/jpeg")}}, "ER02"),
        ({"files": {"image": ("a.gif", b"GIF89a" + b"\0" * 100, "image/gif")}}, "ER11"),
        ({"files": {"image": ("a.jpg", b"\xff\xd8\xff" + b"\0" * 100, "image/jpeg")}}, "ER15"),
        ({"files": {"image": ("a.jpg", jpeg_bytes((49, 100)), "image/jpeg")}}, "ER13"),
        ({"files": {"image": ("a.jpg", jpeg_bytes((100, 49)), "image/jpeg")}}, "ER14"),
        ({"files": {"image": ("a.jpg", jpeg_bytes((400, 100)), "image/jpeg")}}, "ER12"),
        (
            {
                "files": {
                    "image": ("a.jpg", b"\xff\xd8\xff" + b"\0" * MAX_IMAGE_BYTES, "image/jpeg")
                }
            },
            "ER04",
        ),
    ],
)
def test_image_checks(emu: Emulator, kwargs: dict, code: str) -> None:
    extra = kwargs.pop("headers_extra", {})
    keys = {
        "X-NCP-APIGW-API-KEY-ID": emu.client_id,
        "X-NCP-APIGW-API-KEY": emu.client_secret,
        **extra,
    }
    response = _post(emu, headers=keys, **kwargs)
    assert response.status_code == 400
    body = response.json()
    assert body["errorCode"] == code and body["errorMessage"]


def test_png_sent_as_jpeg_part_type_works(emu: Emulator) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (120, 80)).save(buf, "PNG")
    response = _post(emu, files={"image": ("x.jpg", buf.getvalue(), "image/jpeg")})
    assert response.status_code == 200 and emu.requests[0].format == "PNG"


def test_a_reply_answers_the_next_call_only_and_fills_info(emu: Emulator) -> None:
    emu.reply("face", faces=[make_face(10, 20, 60, 60, gender="male", age="30~34")])
    files = {"image": ("a.jpg", jpeg_bytes((300, 200)), "image/jpeg")}
    first = _post(emu, files=files).json()
    assert first["info"] == {"size": {"width": 300, "height": 200}, "faceCount": 1}
    assert first["faces"][0]["gender"] == {"value": "male", "confidence": 0.9}
    assert _post(emu, files=files).json()["faces"] == []  # back to the honest default


def test_replies_match_by_bytes_or_by_function(emu: Emulator) -> None:
    red, blue = jpeg_bytes(color=(250, 0, 0)), jpeg_bytes(color=(0, 0, 250))
    emu.reply("celebrity", faces=[make_celebrity("이다희", 0.8)], match=red, times=None)
    emu.reply(
        "celebrity",
        faces=[make_celebrity("송중기", 0.7)],
        times=None,
        match=lambda req: req.image.getpixel((5, 5))[2] > 200,
    )
    for data, name in [(blue, "송중기"), (red, "이다희"), (red, "이다희")]:
        body = _post(emu, "celebrity", files={"image": ("a.jpg", data, "image/jpeg")}).json()
        assert body["faces"][0]["celebrity"]["value"] == name


def test_default_answer_never_invents_attributes(emu: Emulator) -> None:
    emu.rules.detector = lambda img: [make_face(10, 10, 80, 80)]
    body = _post(emu, files={"image": ("a.jpg", jpeg_bytes((300, 200)), "image/jpeg")}).json()
    face = body["faces"][0]
    for attr in ("gender", "age", "emotion"):
        assert face[attr] == {"value": "unknown", "confidence": 0.0}


def test_injected_fault_with_retry_after_and_html_body(emu: Emulator) -> None:
    emu.inject(
        status=502,
        body="<html>Bad Gateway</html>",
        headers={"Content-Type": "text/html"},
        retry_after=7,
    )
    response = _post(emu, files={"image": ("a.jpg", jpeg_bytes(), "image/jpeg")})
    assert response.status_code == 502 and response.headers["Retry-After"] == "7"
    assert response.text == "<html>Bad Gateway</html>"
    assert _post(emu, files={"image": ("a.jpg", jpeg_bytes(), "image/jpeg")}).status_code == 200


def test_faults_can_target_one_endpoint(emu: Emulator) -> None:
    emu.inject("ER22", endpoint="celebrity")
    files = {"image": ("a.jpg", jpeg_bytes(), "image/jpeg")}
    assert _post(emu, "face", files=files).status_code == 200
    assert _code(_post(emu, "celebrity", files=files)) == "ER22"


def test_recording_redacts_keys_and_keeps_the_image(emu: Emulator) -> None:
    data = jpeg_bytes()
    _post(emu, files={"image": ("a.jpg", data, "image/jpeg")})
    [request] = emu.requests
    assert request.headers["X-NCP-APIGW-API-KEY"] == "<redacted>"
    assert emu.client_secret not in json.dumps(request.headers)
    assert request.image_bytes == data and request.filename == "a.jpg" and request.status == 200
    assert (request.width, request.height, request.format) == (200, 160, "JPEG")
    emu.reset()
    assert emu.requests == []


def test_in_flight_requests_are_counted(emu: Emulator) -> None:
    # All four wait inside the emulator until the fourth has arrived: no timing assumption.
    arrived = threading.Barrier(4, timeout=10)

    def detector(image: object) -> list[dict[str, object]]:
        arrived.wait()
        return []

    emu.rules.detector = detector
    files = {"image": ("a.jpg", jpeg_bytes(), "image/jpeg")}
    threads = [
        threading.Thread(target=_post, args=(emu,), kwargs={"files": files}) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not arrived.broken and emu.calls() == 4
    assert emu.max_in_flight == 4
    # The server counts a request out after its last byte is written, so a client can hold the
    # answer a moment before the count drops: wait for it, do not assume it.
    deadline = time.monotonic() + 5
    while emu.rules.in_flight and time.monotonic() < deadline:
        time.sleep(0.005)
    assert emu.rules.in_flight == 0


def test_pytest_fixture_gives_a_running_emulator(
    cfr_emulator: Emulator, cfr_client: object
) -> None:
    assert cfr_emulator.base_url.startswith("http://127.0.0.1:")
    from ncp_cfr import Client

    assert isinstance(cfr_client, Client) and cfr_client.base_url == cfr_emulator.base_url


@pytest.mark.parametrize("boundary", ["xyz-1", '"xyz-1"'])
def test_multipart_parser_reads_what_clients_send(boundary: str) -> None:
    from ncp_cfr.testing.rules import parse_multipart

    body = (
        b'--xyz-1\r\nContent-Disposition: form-data; name="image"; filename="my \\"a\\".jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\nDATA\r\n--xyz-1\r\n"
        b'Content-Disposition: form-data; name="note"\r\n\r\nhello\r\n--xyz-1--\r\n'
    )
    parts = parse_multipart(f"multipart/form-data; boundary={boundary}", body)
    assert parts["image"] == ('my "a".jpg', "image/jpeg", b"DATA")
    assert parts["note"] == (None, None, b"hello")
    assert parse_multipart("application/json", body) == {}
    assert parse_multipart("multipart/form-data", body) == {}  # no boundary: nothing to split on


def test_a_truncated_jpeg_is_found_without_a_detector(emu: Emulator, hopper_bytes: bytes) -> None:
    # The emulator proves decodability at reduced scale; truncation must still show.
    cut = hopper_bytes[: len(hopper_bytes) // 2]
    response = _post(emu, files={"image": ("a.jpg", cut, "image/jpeg")})
    assert response.status_code == 400 and response.json()["errorCode"] == "ER15"
    whole = _post(emu, files={"image": ("a.jpg", hopper_bytes, "image/jpeg")}).json()
    assert whole["info"]["size"] == {"width": 512, "height": 600}  # the real size, not 1/8


# -- the default detector --------------------------------------------------------------------------


class _Unavailable(ImportError):
    pass


@pytest.fixture
def fake_detector_module(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """Stands in for ``ncp_cfr.testing.detector``: counts loads; ``installed`` decides the rest."""
    from ncp_cfr.testing import emulator as emulator_module

    state = types.SimpleNamespace(loads=0, installed=True)

    def load_detector(name: str = "auto", **options: object) -> object:  # as the real one
        state.loads += 1
        if not state.installed:
            raise _Unavailable('no face detector installed: pip install "ncp_cfr[emulator]"')
        return lambda image: [make_face(10, 10, 60, 60)]

    module = types.ModuleType("ncp_cfr.testing.detector")
    module.load_detector = load_detector  # type: ignore[attr-defined]
    module.DetectorUnavailableError = _Unavailable  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ncp_cfr.testing.detector", module)
    monkeypatch.setattr(emulator_module, "_warned_no_detector", False)
    return state


def test_the_default_detects_with_the_installed_detector_loaded_on_first_use(
    fake_detector_module: types.SimpleNamespace,
) -> None:
    files = {"image": ("a.jpg", jpeg_bytes((300, 200)), "image/jpeg")}
    with Emulator() as emu:
        assert fake_detector_module.loads == 0  # constructing and starting cost nothing
        emu.reply("face", faces=[])  # a scenario still takes precedence ...
        assert _post(emu, files=files).json()["faces"] == []
        assert _post(emu, "celebrity", files=files).json()["faces"] == []
        assert fake_detector_module.loads == 0  # ... and never loads the detector
        assert len(_post(emu, files=files).json()["faces"]) == 1  # real detection by default
        assert len(_post(emu, files=files).json()["faces"]) == 1
    assert fake_detector_module.loads == 1


@pytest.mark.parametrize("detector", ["none", None])
def test_detector_none_is_scripted_only(
    fake_detector_module: types.SimpleNamespace, detector: str | None
) -> None:
    files = {"image": ("a.jpg", jpeg_bytes((300, 200)), "image/jpeg")}
    with Emulator(detector=detector) as emu:
        assert _post(emu, files=files).json()["faces"] == []
        emu.reply("face", faces=[make_face(1, 1, 60, 60)])
        assert len(_post(emu, files=files).json()["faces"]) == 1
    assert fake_detector_module.loads == 0


def test_without_a_detector_the_default_answers_no_faces_and_warns_once(
    fake_detector_module: types.SimpleNamespace,
) -> None:
    fake_detector_module.installed = False
    files = {"image": ("a.jpg", jpeg_bytes((300, 200)), "image/jpeg")}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # two emulators, one warning per process
            with Emulator() as emu:
                assert _post(emu, files=files).json()["faces"] == []
                assert _post(emu, files=files).json()["faces"] == []
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 1 and 'detector="none"' in messages[0]
    assert "pip install" in messages[0]


def test_a_named_backend_that_is_missing_fails_at_once(
    fake_detector_module: types.SimpleNamespace,
) -> None:
    fake_detector_module.installed = False
    with pytest.raises(ImportError, match="pip install"):
        Emulator(detector="mtcnn")


# -- the pytest plugin -----------------------------------------------------------------------------


def test_the_pytest_plugin_imports_nothing_heavy(tmp_path: object) -> None:
    """Every pytest session of every user loads the plugin: it must not import the SDK."""
    from pathlib import Path

    folder = Path(str(tmp_path))
    (folder / "test_probe.py").write_text(
        "import sys\n"
        "def test_probe(pytestconfig):\n"
        "    assert pytestconfig.pluginmanager.has_plugin('ncp_cfr')\n"
        "    heavy = [m for m in ('ncp_cfr.client', 'httpx', 'PIL') if m in sys.modules]\n"
        "    assert heavy == [], heavy\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_probe.py"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
