"""The emulator checks what the service checks, with the service's own bodies, for any client."""

from __future__ import annotations

import io
import json
import threading

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
    emu.reply("celebrity", faces=[make_celebrity("송중기", 0.7)], times=None,
              match=lambda req: req.image.getpixel((5, 5))[2] > 200)  # fmt: skip
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
    emu.latency = 1.0  # long enough for all four to overlap on a loaded machine
    files = {"image": ("a.jpg", jpeg_bytes(), "image/jpeg")}
    threads = [
        threading.Thread(target=_post, args=(emu,), kwargs={"files": files}) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert emu.max_in_flight == 4
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
