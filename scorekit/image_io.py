"""The one image reader of scorekit: every PIL mode read by its value range into floats in [0, 1], or refused by name.

``PIL.Image.convert("L")`` clips a 16-bit gray image (mode ``I;16``, values 0..65535) at 255, so a 16-bit PNG read
that way is ~99 % pure white. Every subcommand and pipeline reads images through :func:`pil_to_array` instead:

============================  ==========================================================================
mode                          read as
============================  ==========================================================================
``1``                         0 / 1
``L``, ``P`` (no alpha)       ``v / 255``; ``P`` through its palette
``I;16``, ``I;16L/B/N``       ``v / 65535`` (16-bit gray PNG, TIFF)
``RGB``, ``RGBX``             ``v / 255`` (``X`` padding dropped)
``CMYK``, ``YCbCr``,          converted to RGB by PIL, then ``v / 255``
``LAB``, ``HSV``
``LA``, ``PA``, ``RGBA``,     the colour ``v / 255`` when every pixel is opaque (alpha 255); a transparent
``La``, ``RGBa``, ``P`` +     pixel is an error (composite onto a background first: what lies under a
transparency                  transparent pixel is not part of the picture)
``F``                         the floats themselves, which must lie in [0, 1]
``I`` (32-bit integer)        refused: no fixed range (PIL's ``convert("I")`` keeps 0..255, a 32-bit TIFF
                              may hold anything); convert to ``I;16`` or ``L`` first
anything else                 refused, naming the mode
============================  ==========================================================================

Only numpy and PIL are imported here (the command line checks its input files before importing torch).
"""

from __future__ import annotations

import os

import numpy as np

SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
EIGHT_BIT = ("L", "RGB")
VIA_RGB = ("CMYK", "YCbCr", "LAB", "HSV", "RGBX")
WITH_ALPHA = ("LA", "PA", "RGBA", "La", "RGBa")
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as PIL's convert("L")
# accepted excursion of float images beyond [0, 1] (float32 rounding of computed images)
FLOAT_SLACK = 1e-4


def pil_to_array(image, name: str = "image") -> np.ndarray:
    """A PIL image as floats in [0, 1], read by its mode's value range (see the module table).

    Args:
        image: a ``PIL.Image.Image`` of any mode.
        name: how errors name the image (an argument or a CLI flag with its file, e.g. ``"--image a.png"``).

    Returns:
        ``(H, W, C)`` float32 array in [0, 1], ``C = 1`` (gray) or ``3`` (colour).

    Raises:
        ValueError: a mode without a fixed value range, transparent pixels, float values outside [0, 1], or a mode
            PIL cannot turn into RGB; the message names ``name``, the mode and what is accepted.
    """
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in WITH_ALPHA:
        return _opaque(image, name)
    if mode == "1":
        return np.asarray(image, dtype=np.float32)[..., None]
    if mode in SIXTEEN_BIT:
        return (np.asarray(image).astype(np.float32) / 65535)[..., None]
    if mode == "F":
        return _unit_floats(np.asarray(image, dtype=np.float32), f"{name} (mode 'F')")[..., None]
    if mode == "I":
        raise ValueError(f"{name}: mode 'I' (32-bit integers) has no fixed value range; convert it to 'I;16' "
                         f"(0..65535, e.g. PIL.Image.fromarray(np.asarray(im).astype(np.uint16))) or to 'L' (0..255)")
    if mode in VIA_RGB:
        image, mode = _convert(image, "RGB", name), "RGB"
    if mode not in EIGHT_BIT:
        raise ValueError(f"{name}: PIL mode {mode!r} is not supported; accepted: 1, L, P, I;16, F (in [0, 1]), RGB, "
                         f"RGBA / LA (opaque), CMYK, YCbCr, LAB, HSV")
    array = np.asarray(image, dtype=np.float32) / 255
    return array[..., None] if array.ndim == 2 else array


def _opaque(image, name: str) -> np.ndarray:
    mode = image.mode
    image = _convert(image, "RGBA" if mode in ("PA", "RGBa") else ("LA" if mode == "La" else mode), name)
    array = np.asarray(image)
    alpha = array[..., -1]
    if (alpha < 255).any():
        raise ValueError(f"{name}: mode {mode!r} has {int((alpha < 255).sum())} transparent pixel(s) (alpha < 255); "
                         f"composite it onto a background first (e.g. PIL.Image.alpha_composite) or save it without "
                         f"alpha")
    return array[..., :-1].astype(np.float32) / 255


def _convert(image, mode: str, name: str):
    try:
        return image.convert(mode)
    except ValueError as err:
        raise ValueError(f"{name}: PIL cannot convert mode {image.mode!r} to {mode!r} ({err})") from None


def _unit_floats(array: np.ndarray, name: str) -> np.ndarray:
    inside = np.isfinite(array).all() and array.min() >= -FLOAT_SLACK and array.max() <= 1 + FLOAT_SLACK
    if array.size and not inside:
        raise ValueError(f"{name}: float pixel values must lie in [0, 1], got [{np.nanmin(array):g}, "
                         f"{np.nanmax(array):g}]; scale the image to [0, 1] (or save it as 8- or 16-bit)")
    return np.clip(array, 0, 1)


def array_to_unit(array: np.ndarray, name: str = "image") -> np.ndarray:
    """A numpy image as floats in [0, 1] by its dtype: bool 0/1, ``uint8`` / 255, ``uint16`` / 65535; floats must
    already lie in [0, 1]. Other integer dtypes are refused by name (their range is not known)."""
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.float32)
    if array.dtype in (np.uint8, np.uint16):
        return array.astype(np.float32) / np.iinfo(array.dtype).max
    if np.issubdtype(array.dtype, np.floating):
        return _unit_floats(array, name)
    raise ValueError(f"{name}: numpy dtype {array.dtype} has no fixed value range; pass floats in [0, 1], uint8 "
                     f"(0..255), uint16 (0..65535) or bool")


def to_channels(array: np.ndarray, channels: int, name: str = "image", gray: str = "luma") -> np.ndarray:
    """``(..., C)`` with ``C`` in {1, 3} as ``channels`` channels: gray repeated into RGB, or RGB made gray by
    ``gray="luma"`` (ITU-R 601 weights, PIL's ``convert("L")``) or ``"mean"`` (what colorization fixes)."""
    have = array.shape[-1]
    if have == channels:
        return array
    if have == 1 and channels == 3:
        return np.repeat(array, 3, axis=-1)
    if have == 3 and channels == 1:
        return (array.mean(-1) if gray == "mean" else array @ LUMA)[..., None].astype(np.float32)
    raise ValueError(f"{name} has {have} channels; expected 1 (gray) or 3 (RGB) for a {channels}-channel model")


def read_image(path: str, option: str = "--image") -> np.ndarray:
    """Read an image file as ``(H, W, C)`` floats in [0, 1] (:func:`pil_to_array`), or raise a one-line error naming
    the flag (``--image``, ``--mask``, ...)."""
    import PIL.Image

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{option} {path}: no such file")
    try:
        with PIL.Image.open(path) as image:
            image.load()
            return pil_to_array(image, f"{option} {path}")
    except (OSError, SyntaxError) as err:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"{option} {path}: cannot read it as an image ({type(err).__name__}: {err})") from None


def resize_array(array: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """``(H, W, C)`` floats resized to ``size`` = (width, height), channel by channel in float precision (bicubic,
    clipped to [0, 1]; nearest for masks)."""
    import PIL.Image

    method = PIL.Image.NEAREST if nearest else PIL.Image.BICUBIC
    planes = [np.ascontiguousarray(array[..., c], dtype=np.float32) for c in range(array.shape[-1])]
    planes = [np.asarray(PIL.Image.fromarray(plane).resize(size, method)) for plane in planes]
    return np.clip(np.stack(planes, -1), 0, 1).astype(np.float32)
