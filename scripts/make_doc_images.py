"""Regenerate the pictures of docs/drawing.md: ``python scripts/make_doc_images.py``.

The results are written by hand, with the boxes and landmarks an offline detector (yuface) found
on the two public-domain photos the repository ships, so the script needs neither credentials nor
the detector. Names and attributes are made up for the illustration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from ncp_cfr.draw import blur_faces, crop_faces, draw_faces
from ncp_cfr.models import Analysis, CelebrityResult, FaceResult

ROOT = Path(__file__).resolve().parent.parent
HOPPER = ROOT / "ncp_cfr" / "data" / "grace_hopper.jpg"  # 512x600
ASTRONAUT = ROOT / "tests" / "data" / "astronaut.png"  # 512x512
OUT = ROOT / "docs" / "img"
GAP = 8  # pixels between panels of a montage


def point(x: int, y: int) -> dict[str, int]:
    return {"x": x, "y": y}


def hopper_face(dx: int = 0, dy: int = 0) -> dict[str, Any]:
    return {
        "roi": {"x": 182 + dx, "y": 121 + dy, "width": 171, "height": 211},
        "landmark": {
            "leftEye": point(227 + dx, 193 + dy),
            "rightEye": point(307 + dx, 195 + dy),
            "nose": point(266 + dx, 240 + dy),
            "leftMouth": point(228 + dx, 267 + dy),
            "rightMouth": point(302 + dx, 269 + dy),
        },
        "gender": {"value": "female", "confidence": 0.998},
        "age": {"value": "61~65", "confidence": 0.41},
        "emotion": {"value": "smile", "confidence": 0.62},
        "pose": {"value": "frontal_face", "confidence": 0.97},
    }


def astronaut_face(dx: int = 0, dy: int = 0) -> dict[str, Any]:
    return {
        "roi": {"x": 178 + dx, "y": 63 + dy, "width": 89, "height": 112},
        "landmark": {
            "leftEye": point(200 + dx, 101 + dy),
            "rightEye": point(247 + dx, 102 + dy),
            "nose": point(220 + dx, 124 + dy),
            "leftMouth": point(198 + dx, 142 + dy),
            "rightMouth": point(239 + dx, 143 + dy),
        },
        "gender": {"value": "female", "confidence": 0.999},
        "age": {"value": "34~38", "confidence": 0.52},
        "emotion": {"value": "smile", "confidence": 0.91},
        "pose": {"value": "right_face", "confidence": 0.58},
    }


def info(image: Image.Image, count: int) -> dict[str, Any]:
    return {"size": {"width": image.width, "height": image.height}, "faceCount": count}


def side_by_side(
    *images: Image.Image, background: tuple[int, int, int] = (255, 255, 255)
) -> Image.Image:
    height = max(im.height for im in images)
    width = sum(im.width for im in images) + GAP * (len(images) - 1)
    sheet = Image.new("RGB", (width, height), background)
    x = 0
    for im in images:
        sheet.paste(im.convert("RGB"), (x, (height - im.height) // 2))
        x += im.width + GAP
    return sheet


def save(image: Image.Image, name: str) -> None:
    path = OUT / name
    image.convert("RGB").save(path, quality=85, optimize=True, progressive=True)
    print(
        f"{path.relative_to(ROOT)}  {image.width}x{image.height}  {path.stat().st_size // 1024} KB"
    )


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    hopper = Image.open(HOPPER).convert("RGB")
    astronaut = Image.open(ASTRONAUT).convert("RGB")

    # Two people in one picture: distinct colours, a non-frontal pose, two lookalikes.
    pair = side_by_side(hopper, astronaut, background=(40, 40, 40))
    shift = hopper.width + GAP, (pair.height - astronaut.height) // 2
    faces = [
        {**hopper_face(), "lookalike": {"value": "이다희", "confidence": 0.61}},
        {**astronaut_face(*shift), "lookalike": {"value": "송중기", "confidence": 0.23}},
    ]
    both = Analysis.model_validate({"info": info(pair, 2), "faces": faces})
    save(draw_faces(pair, both), "draw_analysis.jpg")

    # The same defaults on a 300 px thumbnail and on a 4,800 px enlargement (shown at 600 px).
    small = hopper.resize((256, 300), Image.Resampling.LANCZOS)
    big = hopper.resize((4096, 4800), Image.Resampling.LANCZOS)
    small_result = FaceResult.model_validate(
        {"info": info(small, 1), "faces": [scaled(hopper_face(), 0.5)]}
    )
    big_result = FaceResult.model_validate(
        {"info": info(big, 1), "faces": [scaled(hopper_face(), 8)]}
    )
    drawn_big = draw_faces(big, big_result).resize((512, 600), Image.Resampling.LANCZOS)
    save(side_by_side(draw_faces(small, small_result), drawn_big), "draw_sizes.jpg")

    celebrity = CelebrityResult.model_validate(
        {
            "info": info(hopper, 3),
            "faces": [
                {"celebrity": {"value": "이연희", "confidence": 0.150873}},
                {"celebrity": {"value": "송중기", "confidence": 0.773768}},
                {"celebrity": {"value": "Grace Hopper", "confidence": 0.08}},
            ],
        }
    )
    save(draw_faces(hopper, celebrity), "draw_celebrity.jpg")

    crops = crop_faces(pair, both, margin=0.2, square=True)
    save(side_by_side(*(c.resize((200, 200)) for c in crops)), "crops.jpg")

    blurred = blur_faces(pair, both)
    pixelated = blur_faces(pair, both, method="pixelate", shape="ellipse")
    save(blurred.resize((blurred.width // 2, blurred.height // 2)), "blur_gaussian.jpg")
    save(pixelated.resize((pixelated.width // 2, pixelated.height // 2)), "blur_pixelate.jpg")


def scaled(face: dict[str, Any], factor: float) -> dict[str, Any]:
    """A face of a resized copy of its image."""

    def scale(p: dict[str, int]) -> dict[str, int]:
        return {k: round(v * factor) for k, v in p.items()}

    return {
        **face,
        "roi": scale(face["roi"]),
        "landmark": {name: scale(p) for name, p in face["landmark"].items()},
    }


if __name__ == "__main__":
    main()
