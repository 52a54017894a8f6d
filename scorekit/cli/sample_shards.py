"""``scorekit sample --num-images N --out DIR``: many images, split into shards across processes, resumable.

Run it as one process or under accelerate (``accelerate launch -m scorekit sample --model M --num-images N
--out DIR``):
shard ``k`` holds images ``k * S .. min((k + 1) S, N) - 1`` (``S = --shard-size``) and is drawn by process
``k mod P`` from its own generator seeded ``(seed, k)``, so the images do not depend on the number of processes or
machines. A shard is written to a temporary name and renamed when complete. Formats: ``npz`` (``images`` uint8
``(n, H, W, C)``, ``indices``, ``labels``) or ``png`` (one numbered PNG per image in a ``shard-KKKKK/`` folder).

Output folders never mix runs. ``manifest.json`` records every setting that decides the images (model and a digest
of its weights, seed, counts, format, sampler with its resolved options and steps, labels, guidance, dtype, shape).
The main process writes it *before* drawing (``"complete": false``), after each of its shards, when interrupted and
at the end, each time listing the shards on disk. A rerun into the same folder resumes (skips the finished shards,
redraws the missing ones) only when every setting matches; otherwise it stops with an error naming what differs,
before anything is written, unless ``--overwrite`` (then the old shards and manifest are deleted first; other files
are left alone). Shards without a manifest are of unknown origin and are refused the same way.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import math
import os
import shutil

import numpy as np

from scorekit.checks import check_positive

FORMATS = ("npz", "png")
MANIFEST = "manifest.json"


def add_shard_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("sampling at scale (with --num-images, --out is a folder of shards)")
    g.add_argument("--num-images", type=int, default=None,
                   help="total images across all processes; switches to sharded output in the folder --out")
    g.add_argument("--shard-size", type=int, default=64, help="images per shard (and per pipeline call)")
    g.add_argument("--format", choices=FORMATS, default="npz", help="shard format")
    g.add_argument("--overwrite", action="store_true",
                   help="when --out holds shards of a run with other settings, delete them (and its manifest) and "
                        "start over; without it such a folder is an error (a run with the same settings resumes)")


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


def shard_generator(seed: int, k: int, device: str = "cpu"):
    """The ``torch.Generator`` of shard ``k``: a function of ``(seed, k)`` only (not of the process drawing it)."""
    import torch

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


def run_shards(args: argparse.Namespace, draw, settings: dict) -> dict:
    """Draw the missing shards assigned to this process, after checking that ``--out`` holds nothing of another run.

    Args:
        args: parsed flags (``num_images``, ``shard_size``, ``format``, ``out``, ``seed``, ``device``, ``overwrite``).
        draw: ``draw(batch_size, generator, labels) -> (images uint8 (n, H, W, C), nfe)``.
        settings: everything that decides the images (see :func:`run_settings`); compared with the manifest of an
            earlier run in ``--out``.

    Returns:
        ``{"written": [...], "skipped": [...], "process": i, "num_processes": P}`` for this process.

    Raises:
        ValueError: ``--out`` holds shards of a run with other settings (or of unknown origin) and no ``--overwrite``.
    """
    from accelerate import PartialState

    state = PartialState(cpu=str(args.device) == "cpu")
    settings = json.loads(json.dumps(settings))  # as the manifest stores it
    clear = check_resumable(args.out, settings, args.overwrite)  # every process, before anything is written
    state.wait_for_everyone()
    ranges = shard_ranges(args.num_images, args.shard_size)
    if state.is_main_process:
        os.makedirs(args.out, exist_ok=True)
        if clear:
            remove_run(args.out)
        write_manifest(args, settings, len(ranges), None)
    state.wait_for_everyone()
    written, skipped, nfe = [], [], None
    try:
        for k in range(state.process_index, len(ranges), state.num_processes):
            path = shard_path(args.out, k, args.format)
            if os.path.exists(path):
                skipped.append(k)
                continue
            labels = shard_labels(args, ranges[k])
            images, nfe = draw(len(ranges[k]), shard_generator(args.seed, k, args.device), labels)
            write_shard(path, images, ranges[k], labels, args.format)
            written.append(k)
            if state.is_main_process:  # the listing follows the disk shard by shard
                write_manifest(args, settings, len(ranges), nfe)
    finally:  # interrupted or failed: the manifest still lists what is on disk (complete: false)
        if state.is_main_process:
            write_manifest(args, settings, len(ranges), nfe)
    state.wait_for_everyone()
    if state.is_main_process:
        write_manifest(args, settings, len(ranges), nfe)
    return dict(written=written, skipped=skipped, process=state.process_index, num_processes=state.num_processes)


def run_settings(args: argparse.Namespace, pipe, sampler: dict, guidance: dict) -> dict:
    """What decides a run's images: the model (as named and a digest of its weights and configs), seed, counts,
    format, the resolved sampler settings (``sampler`` holds its name, options and ``steps``), labels and guidance,
    dtype and sample shape."""
    return dict(model=args.model, model_digest=model_digest(pipe), seed=args.seed, num_images=args.num_images,
                shard_size=args.shard_size, format=args.format, sampler=sampler, **guidance,
                dtype=str(pipe.unet.dtype), sample_shape=list(pipe.sample_shape(1)[1:]))


def model_digest(pipe) -> str:
    """sha256 over the configs and weights of the pipeline's models and its scheduler config (a retrained model in
    the same folder gets another digest)."""
    import torch

    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in pipe.scheduler.config.items() if not k.startswith("_")}, sort_keys=True,
                        default=str).encode())
    for name in ("unet", "classifier"):
        model = getattr(pipe, name, None)
        if model is None:
            continue
        config = getattr(model, "config", {})
        h.update(json.dumps({k: v for k, v in dict(config).items() if not k.startswith("_")}, sort_keys=True,
                            default=str).encode())
        for key, tensor in sorted(model.state_dict().items()):
            h.update(key.encode())
            h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def existing_shards(out: str) -> list[str]:
    """Names of the shards (finished or ``.partial``) in ``out``."""
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(out), "shard-*")))


def check_resumable(out: str, settings: dict, overwrite: bool) -> bool:
    """Whether ``out`` must be cleared first (``overwrite`` and another run there); raise when it holds another run
    (or shards without a manifest) and not ``overwrite``. Reads only."""
    manifest_file = os.path.join(out, MANIFEST)
    shards = existing_shards(out) if os.path.isdir(out) else []
    if os.path.isfile(manifest_file):
        with open(manifest_file) as f:
            recorded = json.load(f).get("settings")
        if recorded == settings:
            return False
        what = differences(recorded, settings) if isinstance(recorded, dict) else "it records no settings"
        problem = f"--out {out} holds a run with other settings ({what})"
    elif shards:
        problem = f"--out {out} holds {len(shards)} shard(s) but no {MANIFEST}, so their settings are unknown"
    else:
        return False
    if overwrite:
        print(f"{problem}: deleting its shards and manifest (--overwrite)")
        return True
    raise ValueError(f"{problem}; resuming would mix two runs. Rerun with the same settings to resume, choose another "
                     f"--out, or pass --overwrite to delete the old shards")


def differences(recorded: dict, settings: dict, limit: int = 4) -> str:
    """``key: old -> new`` for the first ``limit`` settings that differ (nested sampler options by dotted name)."""
    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    old, new = flat(recorded), flat(settings)
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    shown = [f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in keys[:limit]]
    return "; ".join(shown) + (f"; and {len(keys) - limit} more" if len(keys) > limit else "")


def remove_run(out: str) -> None:
    """Delete the shards (finished and ``.partial``) and the manifest of ``out``; nothing else."""
    for name in existing_shards(out):
        path = os.path.join(out, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    if os.path.isfile(os.path.join(out, MANIFEST)):
        os.remove(os.path.join(out, MANIFEST))


def write_manifest(args: argparse.Namespace, settings: dict, num_shards: int, nfe: int | None) -> None:
    """Write ``manifest.json``: the settings and the finished shards on disk now (``complete`` when all are)."""
    path = os.path.join(args.out, MANIFEST)
    names = [os.path.basename(shard_path(args.out, k, args.format)) for k in range(num_shards)]
    done = [name for name in names if os.path.exists(os.path.join(args.out, name))]
    if nfe is None and os.path.isfile(path):  # every shard was already there: keep the NFE the run recorded
        with open(path) as f:
            nfe = json.load(f).get("nfe_per_image")
    manifest = dict(num_images=args.num_images, shard_size=args.shard_size, num_shards=num_shards, format=args.format,
                    seed=args.seed, model=args.model, nfe_per_image=nfe, complete=len(done) == num_shards,
                    shards=done, settings=settings)
    with open(path + ".partial", "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(path + ".partial", path)


def shard_labels(args: argparse.Namespace, indices: range) -> list[int] | None:
    """Class labels of a shard's images: ``--class-label`` cycled over the global image index (or None)."""
    labels = getattr(args, "class_label", None)
    return None if labels is None else [labels[i % len(labels)] for i in indices]


def load_shards(out: str) -> tuple[np.ndarray, np.ndarray]:
    """All images of a finished ``.npz`` run, ordered by index: ``(N, H, W, C)`` uint8 and labels (or empty)."""
    with open(os.path.join(out, MANIFEST)) as f:
        manifest = json.load(f)
    if not manifest.get("complete", True):
        raise ValueError(f"{out} holds an unfinished run ({len(manifest['shards'])} of {manifest['num_shards']} "
                         f"shards); rerun the same command to finish it")
    if manifest["format"] != "npz":
        raise ValueError(f"load_shards reads npz runs; {out} holds {manifest['format']!r} shards")
    parts = [np.load(os.path.join(out, name)) for name in manifest["shards"]]
    return np.concatenate([p["images"] for p in parts]), np.concatenate([p["labels"] for p in parts])


def expected_shards(num_images: int, shard_size: int) -> int:
    return math.ceil(num_images / shard_size)
