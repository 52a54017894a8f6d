"""Training data: the bundled offline sets and user image folders / 🤗 datasets (``scorekit.training.data``).

Every dataset here yields ``{"images": (C, R, R) float32 in [0, 1], "labels": int64 (-1 when unlabelled)}``; the
trainer maps images to the model's data range. The bundled sets have **fixed, documented splits** so that other code
(shipped models, demo, quality benchmarks) evaluates on exactly the images training never saw:

- :func:`load_digits_split`: scikit-learn's 1797 8x8 digits (10 classes, values 0..16 scaled to [0, 1]), split by
  ``sklearn.model_selection.train_test_split(test_size=0.2, stratify=labels, random_state=0)``: 1437 train and 360
  test images, every class in both in proportion.
- :func:`load_photo_patches`: square patches of the colour photos that scikit-image and scikit-learn ship. Whole
  photos are held out: ``PHOTO_TEST = ("chelsea", "flower")``, the other seven are ``PHOTO_TRAIN``. Each photo is
  resized so its shorter side is ``short_side`` pixels (Lanczos) before cutting patches on a regular grid.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
DIGITS_NUM_CLASSES = 10
PHOTO_TRAIN = ("astronaut", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "china")
PHOTO_TEST = ("chelsea", "flower")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLITS = ("train", "test")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not supported; expected one of {list(SPLITS)}")


def load_digits_split(split: str = "train", resolution: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn digits with the fixed stratified split (20 % test, ``random_state=0``).

    Args:
        split: ``"train"`` (1437 images) or ``"test"`` (360 images).
        resolution: output size; 8 is native, larger sizes are bilinear upsamplings.

    Returns:
        ``images`` ``(N, 1, resolution, resolution)`` float32 in [0, 1] (pixel value / 16) and ``labels`` ``(N,)``
        int64 in 0..9.
    """
    _check_split(split)
    if not isinstance(resolution, int) or resolution < 8:
        raise ValueError(f"resolution must be an integer >= 8 for digits (native 8x8), got {resolution!r}")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    idx = np.arange(len(digits.target))
    train_idx, test_idx = train_test_split(idx, test_size=DIGITS_TEST_FRACTION, stratify=digits.target,
                                           random_state=DIGITS_SPLIT_SEED)
    keep = np.sort(train_idx if split == "train" else test_idx)
    images = torch.from_numpy(digits.images[keep]).float().div(16.0)[:, None]
    if resolution != 8:
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return images.clamp(0, 1), torch.from_numpy(digits.target[keep]).long()


def _photo(name: str) -> np.ndarray:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    import skimage.data

    return getattr(skimage.data, name)()


def load_photo_patches(
    split: str = "train", patch_size: int = 16, short_side: int = 128, stride: int | None = None,
    grayscale: bool = False,
) -> torch.Tensor:
    """Square patches cut from the bundled colour photos; train and test come from different whole photos.

    Args:
        split: ``"train"`` (photos ``PHOTO_TRAIN``) or ``"test"`` (``PHOTO_TEST``).
        patch_size: patch side in pixels.
        short_side: each photo is first resized (Lanczos) so its shorter side has this many pixels.
        stride: grid step between patches; default ``patch_size // 2`` for train, ``patch_size`` (disjoint) for test.
        grayscale: return one channel (ITU-R 601 luma, PIL's "L") instead of RGB.

    Returns:
        ``(N, 3 or 1, patch_size, patch_size)`` float32 in [0, 1], photos in the order of the split's tuple.
    """
    _check_split(split)
    if not isinstance(patch_size, int) or not 2 <= patch_size <= short_side:
        raise ValueError(f"patch_size must be an integer in [2, short_side={short_side}], got {patch_size!r}")
    stride = stride or (patch_size // 2 if split == "train" else patch_size)
    patches = []
    for name in PHOTO_TRAIN if split == "train" else PHOTO_TEST:
        im = PIL.Image.fromarray(_photo(name)).convert("L" if grayscale else "RGB")
        scale = short_side / min(im.size)
        im = im.resize((round(im.width * scale), round(im.height * scale)), PIL.Image.LANCZOS)
        x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)
        x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
        tiles = x.unfold(1, patch_size, stride).unfold(2, patch_size, stride)  # (C, nH, nW, P, P)
        patches.append(tiles.permute(1, 2, 0, 3, 4).reshape(-1, x.shape[0], patch_size, patch_size))
    return torch.cat(patches)


class SeededDraws:
    """Random augmentations that do not depend on how the data was reached: item ``i`` of epoch ``e`` draws from
    torch's RNG seeded by ``(seed, e, i)``, whatever was loaded before, prefetched, skipped on resume or handled by
    another worker (the global RNG is left as it was). The trainer's loader calls ``set_epoch`` each epoch."""

    seed: int = 0
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @contextlib.contextmanager
    def seeded(self, i: int):
        """Context in which torch's global CPU RNG is seeded for item ``i`` of this epoch (restored afterwards; the
        CUDA generators are left alone: ``torch.manual_seed`` would reseed them too)."""
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed((self.seed * 1_000_003 + self.epoch) * 1_000_033 + int(i))
            yield


class TensorImageDataset(SeededDraws, Dataset):
    """Images ``(N, C, H, W)`` in [0, 1] with optional labels; ``random_flip`` mirrors with probability 1/2.

    The flip draws from a generator seeded by ``(seed, epoch, index)`` (:class:`SeededDraws`).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None, random_flip: bool = False,
                 seed: int = 0):
        self.images, self.random_flip, self.seed = images, random_flip, seed
        self.labels = torch.full((len(images),), -1, dtype=torch.long) if labels is None else labels.long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        x = self.images[i]
        if self.random_flip:
            with self.seeded(i):
                x = x.flip(-1) if torch.rand(()) < 0.5 else x
        return {"images": x, "labels": self.labels[i]}


class TransformedDataset(SeededDraws, Dataset):
    """Wrap a sequence of ``(PIL image, label)`` getters with a torchvision transform to ``(C, R, R)`` in [0, 1]; the
    transform's random crops and flips draw from a generator seeded by ``(seed, epoch, index)``."""

    def __init__(self, getitem: Callable[[int], tuple], length: int, transform: Callable, seed: int = 0):
        self.getitem, self.length, self.transform, self.seed = getitem, length, transform, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        image, label = self.getitem(i)
        with self.seeded(i):
            x = self.transform(image)
        return {"images": x, "labels": torch.tensor(-1 if label is None else label)}


def image_transform(resolution: int | None, channels: int, center_crop: bool, random_flip: bool) -> Callable:
    """PIL -> ``(C, R, R)`` float in [0, 1]: resize the short side, crop (center or random), optional flip."""
    from torchvision import transforms

    steps = [transforms.Lambda(lambda im: im.convert("L" if channels == 1 else "RGB"))]
    if resolution is not None:
        crop = transforms.CenterCrop(resolution) if center_crop else transforms.RandomCrop(resolution)
        steps += [transforms.Resize(resolution, interpolation=transforms.InterpolationMode.BILINEAR), crop]
    if random_flip:
        steps.append(transforms.RandomHorizontalFlip())
    steps.append(transforms.ToTensor())
    return transforms.Compose(steps)


def scan_image_folder(root: str) -> tuple[list[str], list[int] | None, list[str]]:
    """Image paths under ``root``; one subfolder per class (sorted names = labels 0..K-1) or a flat folder.

    Raises:
        ValueError: the folder does not exist, holds no images, or holds files that are not images (naming
            ``--train_data_dir`` and the first offending file).
    """
    if not os.path.isdir(root):
        raise ValueError(f"--train_data_dir={root!r} is not a folder")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    paths, labels = [], []
    for label, sub in enumerate(classes or [""]):
        folder = os.path.join(root, sub)
        for name in sorted(os.listdir(folder)):
            full = os.path.join(folder, name)
            if name.startswith(".") or os.path.isdir(full):
                continue
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                raise ValueError(f"--train_data_dir: {full!r} is not an image file (accepted extensions: "
                                 f"{', '.join(IMAGE_EXTENSIONS)}); remove it or move it out of the folder")
            paths.append(full)
            labels.append(label)
    if not paths:
        raise ValueError(f"--train_data_dir={root!r} holds no images (accepted: {', '.join(IMAGE_EXTENSIONS)})")
    return paths, (labels if classes else None), classes


def check_sizes(sizes: list[tuple[int, int]], resolution: int | None, flag: str) -> None:
    """Raise when images differ in size and no ``--resolution`` says how to make them equal."""
    if resolution is None and len(set(sizes)) > 1:
        raise ValueError(f"{flag}: images have different sizes {sorted(set(sizes))[:3]}...; pass --resolution to "
                         f"resize and crop them to one size")


def folder_dataset(root: str, resolution: int | None, channels: int, center_crop: bool, random_flip: bool,
                   seed: int = 0):
    """An image-folder dataset (see :func:`scan_image_folder`); returns ``(dataset, num_classes or None, size)``."""
    paths, labels, classes = scan_image_folder(root)
    sizes = []
    for p in paths:
        try:
            with PIL.Image.open(p) as im:
                sizes.append(im.size)
        except (OSError, PIL.UnidentifiedImageError) as err:
            raise ValueError(f"--train_data_dir: cannot read {p!r} as an image ({err})") from err
    check_sizes(sizes, resolution, "--train_data_dir")
    transform = image_transform(resolution, channels, center_crop, random_flip)

    def getitem(i):
        with PIL.Image.open(paths[i]) as im:
            return im.copy(), None if labels is None else labels[i]

    size = resolution or min(sizes[0])
    return TransformedDataset(getitem, len(paths), transform, seed), (len(classes) if labels else None), size


def hub_dataset(name: str, image_column: str, label_column: str | None, resolution: int | None, channels: int,
                center_crop: bool, random_flip: bool, cache_dir: str | None = None, config_name: str | None = None,
                seed: int = 0):
    """A 🤗 datasets dataset (Hub id, or a folder written by ``Dataset.save_to_disk``); same return as folders.

    ``config_name`` is the dataset's configuration (``--dataset_config_name``), as in ``datasets.load_dataset``.
    """
    import datasets

    if os.path.isdir(name) and os.path.isfile(os.path.join(name, "dataset_info.json")):
        if config_name is not None:
            raise ValueError(f"--dataset_config_name={config_name!r}: {name!r} is a folder written by save_to_disk, "
                             f"which holds one configuration; drop --dataset_config_name")
        ds = datasets.load_from_disk(name)
    else:
        ds = datasets.load_dataset(name, config_name, split="train", cache_dir=cache_dir)
    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"]
    for flag, col in (("--image_column", image_column), ("--label_column", label_column)):
        if col is not None and col not in ds.column_names:
            raise ValueError(f"{flag}={col!r} is not a column of {name!r}; columns: {ds.column_names}")
    if len(ds) == 0:
        raise ValueError(f"--dataset_name={name!r} has no rows")
    if resolution is None:
        check_sizes([im.size for im in ds[image_column]], None, "--dataset_name")
    num_classes = None
    if label_column is not None:
        feature = ds.features[label_column]
        num_classes = getattr(feature, "num_classes", None) or int(max(ds[label_column])) + 1

    def getitem(i):
        row = ds[i]
        return row[image_column], None if label_column is None else int(row[label_column])

    size = resolution or min(ds[0][image_column].size)
    transform = image_transform(resolution, channels, center_crop, random_flip)
    return TransformedDataset(getitem, len(ds), transform, seed), num_classes, size


def dataset_from_args(args) -> tuple[Dataset, int | None, int, int]:
    """The training set the flags name; returns ``(dataset, num_classes or None, channels, resolution)``.

    Raises:
        ValueError: empty / unreadable data, mixed sizes without ``--resolution``, or labels missing or out of range
            for a class-conditional model (``--num_class_embeds``), naming the flag.
    """
    channels = 1 if args.dataset == "digits" or args.grayscale else 3
    if args.dataset == "digits":
        images, labels = load_digits_split("train", args.resolution or 8)
        dataset, num_classes, size = TensorImageDataset(images, labels), DIGITS_NUM_CLASSES, images.shape[-1]
    elif args.dataset == "photos":
        images = load_photo_patches("train", args.resolution or 16, grayscale=args.grayscale)
        dataset, num_classes, size = TensorImageDataset(images), None, images.shape[-1]
    elif args.train_data_dir:
        dataset, num_classes, size = folder_dataset(args.train_data_dir, args.resolution, channels, args.center_crop,
                                                    False, args.seed)
    else:
        dataset, num_classes, size = hub_dataset(args.dataset_name, args.image_column, args.label_column,
                                                 args.resolution, channels, args.center_crop, False, args.cache_dir,
                                                 args.dataset_config_name, args.seed)
    check_labels(getattr(args, "num_class_embeds", None), num_classes)
    return dataset, num_classes, channels, size


def check_labels(num_class_embeds: int | None, num_classes: int | None) -> None:
    """A class-conditional model needs labelled data with classes ``0..num_class_embeds - 1``."""
    if num_class_embeds is None:
        return
    if num_classes is None:
        raise ValueError(f"--num_class_embeds={num_class_embeds} needs labelled data: use class subfolders in "
                         f"--train_data_dir, --label_column with --dataset_name, or --dataset digits")
    if num_classes > num_class_embeds:
        raise ValueError(f"the data has labels 0..{num_classes - 1}, out of range for --num_class_embeds="
                         f"{num_class_embeds}; use --num_class_embeds {num_classes}")
