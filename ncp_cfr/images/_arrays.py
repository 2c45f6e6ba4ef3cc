"""NumPy-style arrays as images: the dtype and shape rules, OpenCV's BGR order."""

from __future__ import annotations

from typing import Any

from PIL import Image

from ncp_cfr.errors import ImageError


def _array_to_image(source: Any, channel_order: str) -> Image.Image:
    import numpy as np  # lazily: `import ncp_cfr` must not need NumPy

    try:
        arr = np.asarray(source)
    except Exception as exc:
        raise ImageError(f"cannot read the {type(source).__name__} as an array: {exc}") from exc
    shape = tuple(arr.shape)
    if arr.size == 0:
        raise ImageError(f"the array is empty (shape {shape}): there is no image in it")
    if arr.ndim == 3 and shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and shape[2] in (3, 4))):
        fix = "pass (H, W) greyscale, (H, W, 3) RGB or (H, W, 4) RGBA"
        if arr.ndim == 3 and shape[0] in (1, 3, 4):
            fix = "it looks channels-first (C, H, W): pass arr.transpose(1, 2, 0)"
        elif arr.ndim == 4 and shape[0] == 1:
            fix = "it looks like a batch of one: pass arr[0]"
        raise ImageError(f"unsupported array shape {shape}: {fix}")
    arr = _to_uint8(np, arr)
    if channel_order == "bgr" and arr.ndim == 3:
        arr = arr[..., [2, 1, 0, 3][: shape[2]]]
    # Always our own C-contiguous buffer: fromarray may share memory, and the result is returned
    # to callers of open_image, who may draw on it.
    return Image.fromarray(np.array(arr, dtype=np.uint8, order="C", copy=True))


def _to_uint8(np: Any, arr: Any) -> Any:
    kind, dtype = arr.dtype.kind, arr.dtype
    if kind == "u" and dtype.itemsize == 1:
        return arr
    if kind == "b":
        return arr.astype(np.uint8) * np.uint8(255)
    if kind == "u" and dtype.itemsize == 2:
        return np.round(arr / 257.0).astype(np.uint8)
    if kind in "iu":
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high > 255:
            raise ImageError(
                f"{dtype} array holds values {low}..{high}: integer arrays other than uint8 and "
                "uint16 must hold 0..255; rescale it, e.g. "
                "(arr * 255 // arr.max()).astype(np.uint8)"
            )
        return arr.astype(np.uint8)
    if kind == "f":
        if not bool(np.isfinite(arr).all()):
            raise ImageError(
                f"{dtype} array contains NaN or infinity: replace them, e.g. np.nan_to_num(arr)"
            )
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageError(
                f"{dtype} array holds values {lo:g}..{hi:g}: float arrays must hold 0..1; "
                "for 0..255 values pass arr.clip(0, 255).astype(np.uint8)"
            )
        return (arr.astype(np.float32) * 255.0 + 0.5).astype(np.uint8)
    raise ImageError(f"unsupported array dtype {dtype}: pass uint8 (or bool, uint16, float 0..1)")


# --------------------------------------------------------------------------------------------
# Identifying and decoding encoded sources
