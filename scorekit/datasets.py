"""The offline data the shipped models are trained and measured on: a fixed train / test split of scikit-learn's
8x8 digits, and colour patches cut from the photos scikit-image and scikit-learn ship (whole photos held out).

Everything is deterministic (fixed seeds), so the shipped checkpoints, the demo and the benchmark agree on which
digits and photos were never seen in training.
"""

from __future__ import annotations

import torch

DIGITS_LEVELS = 17  # sklearn digits take integer values 0..16
DIGITS_TEST_SIZE = 360  # 20 % of 1797, stratified by class
DIGITS_SPLIT_SEED = 0
PHOTO_TRAIN = ("astronaut", "coffee", "rocket", "immunohistochemistry", "retina", "sklearn:china.jpg")
PHOTO_TEST = ("chelsea", "sklearn:flower.jpg")  # whole photos never cut for training
PHOTO_DOWNSCALE = 4  # photos are shrunk 4x before cutting patches, so a 16x16 patch holds an object part


def digits_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer levels and labels of the fixed digits split.

    Args:
        split: ``"train"`` (1437 digits) or ``"test"`` (360 digits, stratified, never used for training).

    Returns:
        ``levels`` ``(B, 1, 8, 8)`` int64 in ``0..16`` and ``labels`` ``(B,)`` int64 in ``0..9``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    data = load_digits()
    idx_train, idx_test = train_test_split(range(len(data.target)), test_size=DIGITS_TEST_SIZE,
                                           stratify=data.target, random_state=DIGITS_SPLIT_SEED)
    idx = sorted(idx_train if split == "train" else idx_test)
    levels = torch.as_tensor(data.images[idx], dtype=torch.int64).reshape(-1, 1, 8, 8)
    return levels, torch.as_tensor(data.target[idx], dtype=torch.int64)


def levels_to_unit(levels: torch.Tensor, num_levels: int = DIGITS_LEVELS) -> torch.Tensor:
    """Integer levels ``0..L-1`` -> float images in [0, 1] (``k / (L - 1)``)."""
    return levels.float() / (num_levels - 1)


def _load_photo(name: str) -> torch.Tensor:
    if name.startswith("sklearn:"):
        from sklearn.datasets import load_sample_image

        array = load_sample_image(name.split(":", 1)[1])
    else:
        import skimage.data

        array = getattr(skimage.data, name)()
    return torch.as_tensor(array[..., :3], dtype=torch.float32).permute(2, 0, 1) / 255


def photos(split: str, downscale: int = PHOTO_DOWNSCALE) -> list[torch.Tensor]:
    """The train or test photos as ``(3, H, W)`` tensors in [0, 1], shrunk by ``downscale`` (area averaging)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    out = []
    for name in PHOTO_TRAIN if split == "train" else PHOTO_TEST:
        x = _load_photo(name)[None]
        out.append(torch.nn.functional.avg_pool2d(x, downscale)[0] if downscale > 1 else x[0])
    return out


def random_patches(images: list[torch.Tensor], num: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``num`` random ``size x size`` patches, photo chosen uniformly, position uniform; ``(num, 3, size, size)``."""
    which = torch.randint(len(images), (num,), generator=generator).tolist()
    out = torch.empty(num, images[0].shape[0], size, size)
    for i, k in enumerate(which):
        _, h, w = images[k].shape
        top = int(torch.randint(h - size + 1, (1,), generator=generator))
        left = int(torch.randint(w - size + 1, (1,), generator=generator))
        out[i] = images[k][:, top:top + size, left:left + size]
    return out


def photo_patches(split: str, num: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """A fixed set of ``num`` patches ``(num, 3, size, size)`` in [0, 1] from the ``split`` photos."""
    return random_patches(photos(split), num, size, torch.Generator().manual_seed(seed))
