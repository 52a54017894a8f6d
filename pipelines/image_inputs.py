"""Image inputs of the pipelines, read as meant: PIL images through :func:`scorekit.image_io.pil_to_array` (every mode
by its value range, or refused by name), numpy arrays and tensors by their dtype (``uint8`` / 255, ``uint16`` /
65535, bool 0/1, floats in [0, 1])."""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch

from scorekit.image_io import FLOAT_SLACK, array_to_unit, pil_to_array, to_channels

TORCH_INTEGER_RANGES = {torch.uint8: 255, torch.uint16: 65535, torch.bool: 1}


def is_pil_list(images) -> bool:
    return isinstance(images, list) and bool(images) and all(isinstance(im, PIL.Image.Image) for im in images)


def images_to_unit(images, processor, name: str = "image", channels: int | None = None,
                   gray: str = "luma") -> torch.Tensor:
    """Images as a float32 tensor ``(B, C, H, W)`` in [0, 1].

    Args:
        images: a PIL image or a list of them (any mode), a numpy array ``(H, W, C)`` / ``(B, H, W, C)`` or a tensor
            ``(C, H, W)`` / ``(B, C, H, W)``, or a list of arrays / tensors.
        processor: the pipeline's ``VaeImageProcessor`` (layouts of arrays and tensors).
        name: the argument name errors use.
        channels: for PIL images, the channel count to convert to (gray repeated, colour made gray by ``gray``);
            ``None`` keeps their own (1 for gray modes, 3 for colour).
        gray: ``"luma"`` or ``"mean"``, see :func:`scorekit.image_io.to_channels`.

    Raises:
        ValueError: a PIL mode or dtype without a known range, float values outside [0, 1], or PIL images of
            different sizes.
    """
    if isinstance(images, PIL.Image.Image):
        images = [images]
    if is_pil_list(images):
        arrays = [pil_to_array(im, f"{name}[{i}]" if len(images) > 1 else name) for i, im in enumerate(images)]
        if channels is not None:
            arrays = [to_channels(a, channels, name, gray) for a in arrays]
        if len({a.shape for a in arrays}) > 1:
            shapes = sorted({a.shape for a in arrays})
            raise ValueError(f"{name}: the PIL images differ in size or channels (H, W, C): {shapes}")
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    if isinstance(images, list):
        images = [_unit(im, f"{name}[{i}]") for i, im in enumerate(images)]
    else:
        images = _unit(images, name)
    return processor.preprocess(images).float()


def _unit(image, name: str):
    if isinstance(image, np.ndarray):
        return array_to_unit(image, name)
    if isinstance(image, torch.Tensor):
        if image.dtype in TORCH_INTEGER_RANGES:
            return image.float() / TORCH_INTEGER_RANGES[image.dtype]
        if not image.is_floating_point():
            raise ValueError(f"{name}: tensor dtype {image.dtype} has no fixed value range; pass floats in [0, 1], "
                             f"uint8 (0..255) or bool")
        if image.numel() and not (torch.isfinite(image).all() and image.min() >= -FLOAT_SLACK
                                  and image.max() <= 1 + FLOAT_SLACK):
            raise ValueError(f"{name}: float values must lie in [0, 1], got [{image.min().item():g}, "
                             f"{image.max().item():g}]")
        return image.clamp(0, 1)
    return image
