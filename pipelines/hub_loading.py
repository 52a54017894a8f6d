"""Loading and saving helpers of scorekit's pipelines: Hub downloads, weight-format safety, component checks and the
stock diffusers layout (see :mod:`scorekit.schedulers.stock`)."""

from __future__ import annotations

import glob
import json
import os
from typing import Any

from scorekit.schedulers.stock import to_stock_config

HUB_KEYS = ("cache_dir", "revision", "token", "local_files_only", "force_download", "proxies")
PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.msgpack", "*.onnx", "*.onnx_data"]
WEIGHT_FOLDERS = ("unet", "classifier")


def download_repo(repo_id: str, kwargs: dict[str, Any], allow_pickle: bool) -> str:
    """Snapshot a Hub repo (``revision``, ``cache_dir``, ``token``, ``local_files_only`` popped from ``kwargs``);
    pickled weights are not even downloaded unless ``allow_pickle``. Returns the local folder.

    Raises:
        FileNotFoundError: ``repo_id`` is neither a folder nor a Hub repo that could be resolved; the message says both
            (a mistyped local folder such as ``"out/digit"`` is also a valid-looking Hub id).
    """
    where = os.path.abspath(os.path.expanduser(repo_id))
    if os.path.exists(repo_id):
        raise FileNotFoundError(f"pretrained_model_name_or_path={repo_id!r} is a file, not a pipeline folder")
    if repo_id.startswith((os.sep, ".", "~")) or repo_id.count("/") != 1:
        raise FileNotFoundError(f"pretrained_model_name_or_path={repo_id!r}: no such folder ({where}), and it is not "
                                f"a Hub repo id ('user/repo')")
    from huggingface_hub import snapshot_download

    hub = {k: kwargs.pop(k) for k in HUB_KEYS if k in kwargs}
    try:
        return snapshot_download(repo_id, ignore_patterns=None if allow_pickle else PICKLE_PATTERNS, **hub)
    except (OSError, ValueError) as err:  # offline, no such repo, gated, invalid id (HFValidationError)
        reason = (str(err).strip().splitlines() or [""])[0]
        raise FileNotFoundError(f"pretrained_model_name_or_path={repo_id!r}: no such folder ({where}), and the Hub "
                                f"repo id {repo_id!r} could not be resolved ({type(err).__name__}: {reason})") from err


def check_weight_format(path: str, kwargs: dict[str, Any], allow_pickle: bool) -> None:
    """Refuse pickled weights unless ``allow_pickle``: every model folder must hold ``.safetensors`` (of the
    requested ``variant``); sets ``kwargs["use_safetensors"]`` accordingly. diffusers reads a ``.bin`` allowed here
    with ``torch.load(weights_only=True)``."""
    if kwargs.get("use_safetensors") is False and not allow_pickle:
        raise ValueError("use_safetensors=False loads pickled weights; pass allow_pickle=True to opt in")
    variant = kwargs.get("variant")
    folders = [os.path.join(path, f) for f in WEIGHT_FOLDERS if os.path.isdir(os.path.join(path, f))] or [path]
    for folder in folders:
        if not os.path.isfile(os.path.join(folder, "config.json")):
            continue
        safe = glob.glob(os.path.join(folder, f"*.{variant}.safetensors" if variant else "*.safetensors"))
        if not safe and not allow_pickle:
            found = sorted(os.path.basename(f) for f in glob.glob(os.path.join(folder, "*")))
            raise ValueError(f"{folder} has no .safetensors weights{f' for variant={variant!r}' if variant else ''} "
                             f"(found {found}); pickled weights are refused unless you pass allow_pickle=True")
        if safe and "use_safetensors" not in kwargs:
            kwargs["use_safetensors"] = True


def check_components(unet, scheduler) -> None:
    """Raise a ValueError naming the component when the UNet cannot serve the scheduler's parameterization."""
    config = getattr(unet, "config", None)
    if config is None or "time_embedding_type" not in config:
        return  # any model called as model(x, t): nothing to check
    prediction = scheduler.config.prediction_type
    fourier = config.time_embedding_type == "fourier"
    if (prediction == "sigma") != fourier:
        raise ValueError(f"unet has time_embedding_type={config.time_embedding_type!r} but the scheduler's "
                         f"prediction_type={prediction!r}: sigma (NCSN++) models need a 'fourier' embedding (fed "
                         f"sigma, output divided by it); epsilon / score models a 'positional' one fed t * (N - 1)")
    if config.in_channels != config.out_channels:
        raise ValueError(f"unet has in_channels={config.in_channels} but out_channels={config.out_channels}; a "
                         f"{prediction} model outputs a tensor shaped like its input")


def write_stock_layout(save_directory: str, scheduler) -> bool:
    """Rewrite a saved pipeline's scheduler as a stock DDPM / ScoreSdeVe config carrying scorekit's extras; returns
    whether a stock layout applied."""
    config = to_stock_config(scheduler)
    if config is None:
        return False
    import diffusers

    config["_diffusers_version"] = diffusers.__version__
    with open(os.path.join(save_directory, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    index_file = os.path.join(save_directory, "model_index.json")
    with open(index_file) as f:
        index = json.load(f)
    index["scheduler"] = ["diffusers", config["_class_name"]]
    with open(index_file, "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
    return True
