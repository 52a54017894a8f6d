"""The bundled training sets: fixed splits, shapes and ranges; image folders and 🤗 datasets with their errors."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from scorekit.training import data


def test_digits_split_is_fixed_stratified_and_disjoint():
    x_tr, y_tr = data.load_digits_split("train")
    x_te, y_te = data.load_digits_split("test")
    assert x_tr.shape == (1437, 1, 8, 8) and x_te.shape == (360, 1, 8, 8)
    assert 0 <= x_tr.min() and x_tr.max() <= 1 and x_tr.max() == 1
    assert set(y_te.tolist()) == set(range(10)) and set(y_tr.tolist()) == set(range(10))
    # stratified: each class is 20 % +- one image of its total
    for k in range(10):
        n_te, n = int((y_te == k).sum()), int((y_te == k).sum() + (y_tr == k).sum())
        assert abs(n_te - 0.2 * n) <= 1
    # deterministic: the same call gives the same images
    x_again, _ = data.load_digits_split("test")
    assert torch.equal(x_te, x_again)
    up, _ = data.load_digits_split("train", resolution=16)
    assert up.shape == (1437, 1, 16, 16)


def test_photo_patches_hold_out_whole_photos():
    tr = data.load_photo_patches("train", patch_size=16)
    te = data.load_photo_patches("test", patch_size=16)
    assert tr.shape[1:] == (3, 16, 16) and te.shape[1:] == (3, 16, 16)
    assert not set(data.PHOTO_TRAIN) & set(data.PHOTO_TEST)
    assert len(tr) > 1000 and len(te) > 100
    assert 0 <= float(te.min()) and float(te.max()) <= 1
    gray = data.load_photo_patches("test", patch_size=8, grayscale=True)
    assert gray.shape[1] == 1


def _write(path, size=(8, 8), color=(255, 0, 0)):
    PIL.Image.new("RGB", size, color).save(path)


def test_image_folder_with_class_subfolders(tmp_path):
    for k, name in enumerate(["cat", "dog"]):
        (tmp_path / name).mkdir()
        for i in range(3):
            _write(tmp_path / name / f"{i}.png", color=(100 * k, 0, 0))
    ds, num_classes, size = data.folder_dataset(str(tmp_path), None, 3, False, False)
    assert (len(ds), num_classes, size) == (6, 2, 8)
    item = ds[4]
    assert item["images"].shape == (3, 8, 8) and int(item["labels"]) == 1


@pytest.mark.parametrize("case, match", [
    ("empty", "holds no images"),
    ("text", "is not an image file"),
    ("mixed", "different sizes"),
    ("missing", "is not a folder"),
])
def test_image_folder_errors(tmp_path, case, match):
    root = tmp_path / "imgs"
    root.mkdir()
    if case == "text":
        _write(root / "a.png")
        (root / "notes.txt").write_text("hello")
    elif case == "mixed":
        _write(root / "a.png", (8, 8))
        _write(root / "b.png", (16, 12))
    elif case == "missing":
        root = tmp_path / "nowhere"
    with pytest.raises(ValueError, match=match) as err:
        data.folder_dataset(str(root), None, 3, False, False)
    assert "--train_data_dir" in str(err.value)


def test_mixed_sizes_are_fine_with_resolution(tmp_path):
    _write(tmp_path / "a.png", (8, 8))
    _write(tmp_path / "b.png", (16, 12))
    ds, _, size = data.folder_dataset(str(tmp_path), 8, 3, True, False)
    assert size == 8 and ds[1]["images"].shape == (3, 8, 8)


def test_hub_dataset_from_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(0)
    images = [PIL.Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)) for _ in range(4)]
    ds = datasets.Dataset.from_dict({"img": images, "y": [0, 1, 2, 1]})
    ds.save_to_disk(str(tmp_path / "ds"))
    out, num_classes, size = data.hub_dataset(str(tmp_path / "ds"), "img", "y", None, 3, False, False)
    assert (len(out), num_classes, size) == (4, 3, 8)
    assert out[2]["images"].shape == (3, 8, 8) and int(out[2]["labels"]) == 2
    with pytest.raises(ValueError, match="--image_column"):
        data.hub_dataset(str(tmp_path / "ds"), "image", None, None, 3, False, False)


def test_label_checks():
    data.check_labels(None, None)
    data.check_labels(10, 10)
    with pytest.raises(ValueError, match="needs labelled data"):
        data.check_labels(10, None)
    with pytest.raises(ValueError, match="out of range"):
        data.check_labels(2, 3)
