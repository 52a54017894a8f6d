"""The checkpoints that ship inside the package, by short name: ``"scorekit/digits"``,
``"scorekit/digits-unconditional"``, ``"scorekit/photos"``.

Each is a diffusers pipeline folder under ``scorekit/models/shipped/<name>/`` (``model_index.json``, ``unet/``,
``scheduler/``, optional ``classifier/``, ``README.md`` model card) with a ``checksums.json`` of sha256 digests, so a
damaged install is reported as such instead of failing somewhere inside safetensors or diffusers.

    >>> from scorekit.models import shipped_model_path
    >>> path = shipped_model_path("scorekit/digits")   # a local folder; no network involved
"""

from __future__ import annotations

import hashlib
import json
import os

SHIPPED_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shipped")
SHIPPED_MODELS = {
    "scorekit/digits": "class-conditional (CFG) VP model on sklearn 8x8 digits + its noise-conditional classifier",
    "scorekit/digits-unconditional": "unconditional VP model on sklearn 8x8 digits (samples, restoration)",
    "scorekit/photos": "RGB VP score model on 16x16 patches of scikit-image / scikit-learn photos",
}
CHECKSUMS = "checksums.json"


def is_shipped_name(name: object) -> bool:
    """Whether ``name`` is a string in the ``scorekit/...`` namespace of shipped models (known or not)."""
    return isinstance(name, str) and name.startswith("scorekit/") and not os.path.isdir(name)


def shipped_model_path(name: str, verify: bool = True) -> str:
    """Local folder of a shipped model.

    Args:
        name: a short name from :data:`SHIPPED_MODELS` (``"scorekit/digits"``; ``"digits"`` also works).
        verify: check every file against ``checksums.json`` (a few MB of hashing, milliseconds).

    Returns:
        The absolute path of the pipeline folder, loadable by ``from_pretrained``.

    Raises:
        ValueError: ``name`` is not a shipped model (the message lists those that are).
        FileNotFoundError / ValueError: the installed folder is missing or a file in it is damaged.
    """
    key, path = _shipped_folder(name)
    if not os.path.isfile(os.path.join(path, "model_index.json")):
        raise FileNotFoundError(f"shipped model {key!r} is missing from this install (no {path}/model_index.json); "
                                f"reinstall scorekit")
    if verify:
        verify_folder(path, key)
    return path


def _shipped_folder(name: str) -> tuple[str, str]:
    """``(short name, folder)`` of a shipped model, whether or not the folder is installed."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a string such as 'scorekit/digits', got {type(name).__name__}")
    key = name if name.startswith("scorekit/") else f"scorekit/{name}"
    if key not in SHIPPED_MODELS:
        raise ValueError(f"unknown shipped model {name!r}; expected one of {sorted(SHIPPED_MODELS)} "
                         f"(or a pipeline folder path)")
    return key, os.path.join(SHIPPED_ROOT, key.split("/", 1)[1])


def verify_folder(path: str, name: str | None = None) -> None:
    """Check every file listed in ``path/checksums.json`` exists with its recorded sha256 and size.

    Raises:
        ValueError: naming the first damaged or missing file and how to repair the install.
    """
    label = name or path
    listing = os.path.join(path, CHECKSUMS)
    try:
        with open(listing) as f:
            expected = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"shipped model {label!r} is corrupted: cannot read {listing} ({err}); "
                         f"reinstall scorekit") from err
    for rel, digest in expected.items():
        file = os.path.join(path, rel)
        if not os.path.isfile(file):
            raise ValueError(f"shipped model {label!r} is corrupted: {rel} is missing; reinstall scorekit")
        if _sha256(file) != digest:
            raise ValueError(f"shipped model {label!r} is corrupted: {rel} does not match its sha256 in "
                             f"{CHECKSUMS}; reinstall scorekit (or retrain it, see its README.md)")


def write_checksums(path: str) -> dict[str, str]:
    """Record the sha256 of every file under ``path`` (except the listing itself) in ``path/checksums.json``."""
    digests = {}
    for root, _, files in os.walk(path):
        for file in sorted(files):
            rel = os.path.relpath(os.path.join(root, file), path)
            if rel != CHECKSUMS:
                digests[rel] = _sha256(os.path.join(root, file))
    with open(os.path.join(path, CHECKSUMS), "w") as f:
        json.dump(dict(sorted(digests.items())), f, indent=1)
    return digests


def _sha256(file: str) -> str:
    with open(file, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def update_shipped(name: str, run_dir: str) -> str:
    """Replace the shipped folder of ``name`` by the pipeline folder a training run wrote, and re-record checksums.

    ``run_dir`` is what ``scorekit train`` / ``scorekit train-classifier --score_model ...`` saved
    (``model_index.json``, ``unet/``, ``scheduler/``, optional ``classifier/``; checkpoints and logs stay behind).
    The model card ``README.md`` already in the shipped folder is kept: edit it with the run's command and
    measurements, then run ``checksums`` again. A model new to :data:`SHIPPED_MODELS` gets its folder here (write
    its card first). Maintainers use this from a clone (it writes inside the package).

    Raises:
        ValueError: ``name`` is not a shipped model, or ``run_dir`` is not a pipeline folder.
    """
    import shutil

    _, dest = _shipped_folder(name)
    if not os.path.isfile(os.path.join(run_dir, "model_index.json")):
        raise ValueError(f"run_dir {run_dir!r} has no model_index.json; give the --output_dir of a finished "
                         f"'scorekit train' or 'scorekit train-classifier --score_model ...' run")
    with open(os.path.join(run_dir, "model_index.json")) as f:
        components = [k for k, v in json.load(f).items() if isinstance(v, list)]
    card = os.path.join(dest, "README.md")
    keep = open(card).read() if os.path.isfile(card) else None
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    shutil.copy(os.path.join(run_dir, "model_index.json"), dest)
    for component in components:
        shutil.copytree(os.path.join(run_dir, component), os.path.join(dest, component))
    if keep is not None:
        with open(card, "w") as f:
            f.write(keep)
    _drop_local_paths(dest)
    write_checksums(dest)
    return dest


def _drop_local_paths(path: str) -> None:
    """Remove diffusers' ``_name_or_path`` (the machine's own folder names) from every JSON config under ``path``."""
    for root, _, files in os.walk(path):
        for file in files:
            if file.endswith(".json"):
                with open(os.path.join(root, file)) as f:
                    config = json.load(f)
                if isinstance(config, dict) and config.pop("_name_or_path", None) is not None:
                    with open(os.path.join(root, file), "w") as f:
                        json.dump(config, f, indent=2, sort_keys=True)
                        f.write("\n")

