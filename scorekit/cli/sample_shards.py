"""``scorekit sample --num-images N --out DIR``: many images, split into shards across processes, resumable.

Run it as one process or under accelerate (``accelerate launch -m scorekit sample --model M --num-images N
--out DIR``):
shard ``k`` holds images ``k * S .. min((k + 1) S, N) - 1`` (``S = --shard-size``) and is drawn by process
``k mod P`` from its own generator seeded ``(seed, k)``, so the images do not depend on the number of processes or
machines. A shard is written to a temporary name and renamed when complete; a rerun skips the shards already there
(resuming a killed run). Formats: ``npz`` (``images`` uint8 ``(n, H, W, C)``, ``indices``, ``labels``) or ``png``
(one numbered PNG per image in a ``shard-KKKKK/`` folder). The main process writes ``manifest.json`` at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np
import torch

from scorekit.utils import check_positive

FORMATS = ("npz", "png")


def add_shard_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("sampling at scale (with --num-images, --out is a folder of shards)")
    g.add_argument("--num-images", type=int, default=None,
                   help="total images across all processes; switches to sharded output in the folder --out")
    g.add_argument("--shard-size", type=int, default=64, help="images per shard (and per pipeline call)")
    g.add_argument("--format", choices=FORMATS, default="npz", help="shard format")


def check_shard_args(args: argparse.Namespace) -> None:
    """Bad input before any model loading or sampling: counts, and an ``--out`` that is a file."""
    check_positive("--num-images", args.num_images, integer=True)
    check_positive("--shard-size", args.shard_size, integer=True)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out!r} is a file; with --num-images it must be a folder (existing or new)")


def shard_path(out: str, k: int, fmt: str) -> str:
    return os.path.join(out, f"shard-{k:05d}" + (".npz" if fmt == "npz" else ""))


def shard_ranges(num_images: int, shard_size: int) -> list[range]:
    """Image indices of every shard: ``[0, S), [S, 2S), ...`` up to ``num_images``."""
    return [range(s, min(s + shard_size, num_images)) for s in range(0, num_images, shard_size)]


def shard_generator(seed: int, k: int, device: str = "cpu") -> torch.Generator:
    """The generator of shard ``k``: a function of ``(seed, k)`` only (not of the process drawing it)."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + k)


def write_shard(path: str, images: np.ndarray, indices: range, labels: list[int] | None, fmt: str) -> None:
    """Write ``images`` ``(n, H, W, C)`` uint8 atomically (temporary name, then rename)."""
    import PIL.Image

    tmp = path + ".partial"
    if fmt == "npz":
        with open(tmp, "wb") as f:
            np.savez(f, images=images, indices=np.asarray(indices), labels=np.asarray(labels if labels else []))
    else:
        os.makedirs(tmp, exist_ok=True)
        for i, image in zip(indices, images):
            PIL.Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(
                os.path.join(tmp, f"{i:07d}.png"))
    os.replace(tmp, path)


def run_shards(args: argparse.Namespace, draw) -> dict:
    """Draw the missing shards assigned to this process; the main process then writes ``manifest.json``.

    Args:
        args: parsed flags (``num_images``, ``shard_size``, ``format``, ``out``, ``seed``, ``device``).
        draw: ``draw(batch_size, generator, labels) -> (images uint8 (n, H, W, C), nfe)``.

    Returns:
        ``{"written": [...], "skipped": [...], "process": i, "num_processes": P}`` for this process.
    """
    from accelerate import PartialState

    state = PartialState(cpu=str(args.device) == "cpu")
    os.makedirs(args.out, exist_ok=True)
    ranges = shard_ranges(args.num_images, args.shard_size)
    written, skipped, nfe = [], [], None
    for k in range(state.process_index, len(ranges), state.num_processes):
        path = shard_path(args.out, k, args.format)
        if os.path.exists(path):
            skipped.append(k)
            continue
        labels = shard_labels(args, ranges[k])
        images, nfe = draw(len(ranges[k]), shard_generator(args.seed, k, args.device), labels)
        write_shard(path, images, ranges[k], labels, args.format)
        written.append(k)
    state.wait_for_everyone()
    if state.is_main_process:
        manifest = dict(num_images=args.num_images, shard_size=args.shard_size, num_shards=len(ranges),
                        format=args.format, seed=args.seed, model=args.model, nfe_per_image=nfe,
                        shards=[os.path.basename(shard_path(args.out, k, args.format)) for k in range(len(ranges))])
        with open(os.path.join(args.out, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
    return dict(written=written, skipped=skipped, process=state.process_index, num_processes=state.num_processes)


def shard_labels(args: argparse.Namespace, indices: range) -> list[int] | None:
    """Class labels of a shard's images: ``--class-label`` cycled over the global image index (or None)."""
    labels = getattr(args, "class_label", None)
    return None if labels is None else [labels[i % len(labels)] for i in indices]


def load_shards(out: str) -> tuple[np.ndarray, np.ndarray]:
    """All images of a finished ``.npz`` run, ordered by index: ``(N, H, W, C)`` uint8 and labels (or empty)."""
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    if manifest["format"] != "npz":
        raise ValueError(f"load_shards reads npz runs; {out} holds {manifest['format']!r} shards")
    parts = [np.load(os.path.join(out, name)) for name in manifest["shards"]]
    return np.concatenate([p["images"] for p in parts]), np.concatenate([p["labels"] for p in parts])


def expected_shards(num_images: int, shard_size: int) -> int:
    return math.ceil(num_images / shard_size)
