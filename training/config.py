"""Flags, their validation, and the model / SDE / data builders of ``train_score.py`` (diffusers' flag names).

Every check here runs before any training step and raises ``ValueError`` naming the flag, what was given and what
is accepted.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os

from scorekit.samplers.registry import sampler_names
from scorekit.schedulers.scheduling_score_sde_base import DEFAULT_DATA_RANGE
from scorekit.score import PARAMETERIZATIONS
from scorekit.sde import SDES, get_sde

from .losses import WEIGHTINGS

DATASETS = ("digits", "photos")
LOSSES = ("dsm", "ddpm", "smld")
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
MIXED_PRECISION = ("no", "fp16", "bf16")
LOGGERS = ("auto", "tensorboard", "wandb", "none")

# Named UNet2DModel presets: (block_out_channels, down blocks, layers_per_block, norm_num_groups)
PRESETS = {
    "tiny": ((16, 32), ("DownBlock2D", "DownBlock2D"), 1, 8),
    "small": ((32, 64, 64), ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"), 1, 16),
    "cifar-like": ((128, 256, 256, 256), ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"), 2, 32),
}


def add_common_flags(p: argparse.ArgumentParser) -> None:
    """Data, optimisation, checkpointing and Hub flags shared by the score and classifier trainers."""
    d = p.add_argument_group("data")
    d.add_argument("--dataset", choices=DATASETS, default=None, help="a bundled offline set (digits: sklearn 8x8)")
    d.add_argument("--dataset_name", default=None, help="a 🤗 datasets id, or a folder written by save_to_disk")
    d.add_argument("--dataset_config_name", default=None,
                   help="configuration of --dataset_name (datasets.load_dataset's second argument)")
    d.add_argument("--train_data_dir", default=None, help="image folder (one subfolder per class, or flat)")
    d.add_argument("--image_column", default="image", help="image column of --dataset_name")
    d.add_argument("--label_column", default=None, help="class column of --dataset_name")
    d.add_argument("--cache_dir", default=None, help="🤗 datasets cache folder (default: its own)")
    d.add_argument("--resolution", type=int, default=None, help="train size (default: the data's own size)")
    d.add_argument("--grayscale", action="store_true", help="one channel instead of RGB (digits are always gray)")
    d.add_argument("--center_crop", action="store_true",
                   help="centre-crop to --resolution after resizing (default: random crop)")
    d.add_argument("--random_flip", action="store_true", help="mirror each image left-right with probability 1/2")
    d.add_argument("--dataloader_num_workers", type=int, default=0,
                   help="data-loading subprocesses per training process (0: load in the main process)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--output_dir", required=True,
                   help="run folder: the final pipeline, checkpoint-N/ folders, logs, sample grids, model card")
    o.add_argument("--overwrite_output_dir", action="store_true",
                   help="delete the checkpoints (and model card) another run left in --output_dir before training; "
                        "without it a fresh run refuses such a folder")
    o.add_argument("--seed", type=int, default=0, help="seed of weights, data order, noise and t draws")
    o.add_argument("--train_batch_size", type=int, default=64, help="images per process per step")
    o.add_argument("--num_epochs", type=int, default=100, help="passes over the data (unless --max_train_steps)")
    o.add_argument("--max_train_steps", type=int, default=None,
                   help="optimizer updates in all; overrides --num_epochs")
    o.add_argument("--gradient_accumulation_steps", type=int, default=1,
                   help="batches whose gradients are summed before each optimizer update")
    o.add_argument("--learning_rate", type=float, default=2e-4, help="peak AdamW learning rate")
    o.add_argument("--lr_scheduler", choices=LR_SCHEDULERS, default="cosine",
                   help="diffusers' learning-rate schedule after the warm-up")
    o.add_argument("--lr_warmup_steps", type=int, default=100, help="linear warm-up from 0 over this many updates")
    o.add_argument("--adam_beta1", type=float, default=0.9, help="AdamW first-moment decay")
    o.add_argument("--adam_beta2", type=float, default=0.999, help="AdamW second-moment decay")
    o.add_argument("--adam_weight_decay", type=float, default=0.0, help="AdamW decoupled weight decay")
    o.add_argument("--adam_epsilon", type=float, default=1e-8, help="AdamW denominator epsilon")
    o.add_argument("--max_grad_norm", type=float, default=1.0, help="clip the gradient's global norm to this")
    o.add_argument("--mixed_precision", choices=MIXED_PRECISION, default="no",
                   help="accelerate autocast (fp16 needs a GPU; bf16 works on recent CPUs); weights stay float32")
    c = p.add_argument_group("checkpoints, logging, Hub")
    c.add_argument("--checkpointing_steps", type=int, default=500,
                   help="save a resumable checkpoint-N/ (accelerate save_state) every N updates")
    c.add_argument("--checkpoints_total_limit", type=int, default=None,
                   help="keep only the newest N checkpoints (default: keep all)")
    c.add_argument("--resume_from_checkpoint", default=None, help='"latest" or a checkpoint folder')
    c.add_argument("--logger", choices=LOGGERS, default="auto",
                   help="accelerate tracker; auto: tensorboard when installed (wandb must be installed to be chosen)")
    c.add_argument("--logging_dir", default="logs", help="tensorboard folder, inside --output_dir")
    c.add_argument("--no_progress", action="store_true", help="no tqdm bar")
    c.add_argument("--trace_data", action="store_true",
                   help="write data_trace_<rank>.json (batch and final-weight digests per process)")
    c.add_argument("--push_to_hub", action="store_true",
                   help="upload the final pipeline and model card to --hub_model_id")
    c.add_argument("--hub_model_id", default=None, help="Hub repository, e.g. user/scorekit-digits")
    c.add_argument("--hub_token", default=None,
                   help="Hub token (default: the one huggingface_hub has stored); never written into the model card")
    c.add_argument("--hub_private_repo", action="store_true", help="create the --hub_model_id repository private")


DESCRIPTION = "Train a score network (UNet2DModel) on a score SDE with accelerate."


def flag_parser(description: str, add_flags) -> argparse.ArgumentParser:
    """A trainer script's parser: ``add_flags(parser)`` adds its flags, each shown with its default in ``--help``."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_flags(p)
    return p


def build_parser() -> argparse.ArgumentParser:
    return flag_parser(DESCRIPTION, add_score_flags)


def add_score_flags(p: argparse.ArgumentParser) -> None:
    """Every flag of ``train_score.py`` (also the ``scorekit train`` subcommand)."""
    add_common_flags(p)
    m = p.add_argument_group("model and loss")
    m.add_argument("--model_config_name_or_path", default=None, help="UNet2DModel config JSON (overrides --preset)")
    m.add_argument("--preset", choices=sorted(PRESETS), default="small",
                   help="UNet2DModel size: tiny 0.16 M, small 1.1 M, cifar-like 36 M parameters (3 channels)")
    m.add_argument("--sde", default="vp", help=f"one of {sorted(SDES)}")
    m.add_argument("--prediction_type", default=None, help=f"one of {PARAMETERIZATIONS} (default: epsilon, VE sigma)")
    m.add_argument("--loss", default="dsm", help=f"one of {LOSSES}: continuous DSM or the discrete DDPM / SMLD")
    m.add_argument("--weighting", default="std2", help=f"one of {WEIGHTINGS}")
    m.add_argument("--importance_sampling", action="store_true", help="likelihood weighting with importance-sampled t")
    m.add_argument("--reduce", choices=("mean", "sum"), default="mean",
                   help="loss over the pixels of an image: mean or sum")
    m.add_argument("--train_eps", type=float, default=1e-5, help="t ~ U(train_eps, 1)")
    m.add_argument("--num_train_timesteps", "--ddpm_num_steps", type=int, default=1000,
                   help="N of the discrete losses and of the time label t * (N - 1)")
    m.add_argument("--beta_min", type=float, default=0.1, help="VP / sub-VP beta(0)")
    m.add_argument("--beta_max", type=float, default=20.0, help="VP / sub-VP beta(1)")
    m.add_argument("--sigma_min", type=float, default=0.01, help="VE sigma(0)")
    m.add_argument("--sigma_max", type=float, default=50.0, help="VE sigma(1)")
    m.add_argument("--num_class_embeds", type=int, default=None, help="classes K of a class-conditional model")
    m.add_argument("--class_drop_prob", type=float, default=0.1, help="label dropout for classifier-free guidance")
    m.add_argument("--clip_sample", action="store_true",
                   help="write clip_sample=True into the saved scheduler: sampling clamps the denoised estimate x0 "
                        "to the data range at every step (diffusers' DDPM default), which keeps a briefly trained "
                        "epsilon model's samples in range; training is unchanged")
    e = p.add_argument_group("EMA and samples")
    e.add_argument("--use_ema", action="store_true", help="keep an EMA of the weights; it is what gets saved")
    e.add_argument("--ema_max_decay", type=float, default=0.9999, help="EMA decay: the cap of its warm-up")
    e.add_argument("--ema_inv_gamma", type=float, default=1.0,
                   help="EMA warm-up: decay at update n is 1 - (1 + n / inv_gamma) ** -power (diffusers' EMAModel)")
    e.add_argument("--ema_power", type=float, default=3 / 4, help="EMA warm-up power")
    w = e.add_mutually_exclusive_group()
    w.add_argument("--ema_warmup", dest="ema_warmup", action="store_true", default=True,
                   help="warm the EMA up with --ema_inv_gamma / --ema_power, as diffusers' train_unconditional.py "
                        "always does (the default)")
    w.add_argument("--no_ema_warmup", dest="ema_warmup", action="store_false",
                   help="EMAModel's other ramp instead, decay (1 + n) / (10 + n) capped at --ema_max_decay (how the "
                        "shipped models were trained)")
    e.add_argument("--save_images_steps", type=int, default=None, help="sample a PNG grid every N steps")
    e.add_argument("--save_images_epochs", type=int, default=None,
                   help="sample a PNG grid after epochs 0, N, 2N, ... and the last (diffusers' meaning)")
    e.add_argument("--save_model_epochs", type=int, default=None,
                   help="save the pipeline (EMA weights) into --output_dir after epochs 0, N, 2N, ... and the last "
                        "(diffusers' meaning); the Hub receives the final pipeline only")
    e.add_argument("--eval_batch_size", type=int, default=16, help="images in each sample grid")
    e.add_argument("--eval_sampler", choices=sampler_names(standalone=True), default="ddim",
                   help="sampler of the grids (any registered sampler that needs no condition of its own, "
                        "scorekit.samplers.registry)")
    e.add_argument("--eval_steps", "--ddpm_num_inference_steps", type=int, default=50,
                   help="sampler steps of the grids")


def _check_positive_int(flag: str, value, allow_zero: bool = False) -> None:
    if value is not None and (not isinstance(value, int) or value < (0 if allow_zero else 1)):
        raise ValueError(f"{flag} must be an integer >= {0 if allow_zero else 1}, got {value!r}")


def validate_common(args: argparse.Namespace) -> None:
    """Checks shared by both trainers (data source, sizes, steps, resume path)."""
    sources = [f for f, v in (("--dataset", args.dataset), ("--dataset_name", args.dataset_name),
                              ("--train_data_dir", args.train_data_dir)) if v]
    if len(sources) != 1:
        raise ValueError(f"give exactly one of --dataset, --dataset_name, --train_data_dir; got {sources or 'none'}")
    for flag in ("train_batch_size", "num_epochs", "gradient_accumulation_steps", "checkpointing_steps"):
        _check_positive_int(f"--{flag}", getattr(args, flag))
    for flag in ("max_train_steps", "checkpoints_total_limit", "resolution"):
        _check_positive_int(f"--{flag}", getattr(args, flag))
    _check_positive_int("--lr_warmup_steps", args.lr_warmup_steps, allow_zero=True)
    if not args.learning_rate > 0:
        raise ValueError(f"--learning_rate must be > 0, got {args.learning_rate}")
    if args.resume_from_checkpoint not in (None, "latest") and not os.path.isdir(args.resume_from_checkpoint):
        raise ValueError(f"--resume_from_checkpoint={args.resume_from_checkpoint!r} is not a checkpoint folder; give "
                         f"'latest' or a path such as {os.path.join(args.output_dir, 'checkpoint-500')}")
    if args.dataset_config_name is not None and args.dataset_name is None:
        raise ValueError(f"--dataset_config_name={args.dataset_config_name!r} configures --dataset_name, which is "
                         f"not given")
    _check_hub_flags(args)
    if args.logger in ("wandb", "tensorboard") and importlib.util.find_spec(args.logger) is None:
        raise ValueError(f"--logger {args.logger} needs the {args.logger} package: pip install {args.logger}, or "
                         f"pass --logger none")


def _check_hub_flags(args: argparse.Namespace) -> None:
    if args.push_to_hub and not args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id (e.g. user/scorekit-digits)")
    unused = [f for f, v in (("--hub_model_id", args.hub_model_id), ("--hub_token", args.hub_token),
                             ("--hub_private_repo", args.hub_private_repo)) if v]
    if unused and not args.push_to_hub:
        raise ValueError(f"{', '.join(unused)} only act with --push_to_hub, which is not given")


def validate_score_args(args: argparse.Namespace) -> None:
    """All checks of ``train_score.py`` that need no data or model."""
    validate_common(args)
    for flag, value, choices in (("--sde", args.sde, SDES), ("--weighting", args.weighting, WEIGHTINGS),
                                 ("--loss", args.loss, LOSSES)):
        if value not in choices:
            raise ValueError(f"{flag}={value!r} is not supported; expected one of {sorted(choices)}")
    if args.prediction_type is None:
        args.prediction_type = "sigma" if args.sde == "ve" else "epsilon"
    if args.prediction_type not in PARAMETERIZATIONS:
        raise ValueError(f"--prediction_type={args.prediction_type!r} is not supported; expected one of "
                         f"{list(PARAMETERIZATIONS)}")
    if args.loss == "ddpm" and (args.sde != "vp" or args.prediction_type != "epsilon"):
        raise ValueError("--loss ddpm trains a VP epsilon model: use --sde vp --prediction_type epsilon")
    if args.loss == "smld" and args.sde != "ve":
        raise ValueError("--loss smld trains a VE model: use --sde ve")
    if args.importance_sampling and args.weighting != "g2":
        raise ValueError("--importance_sampling needs --weighting g2 (the likelihood weighting)")
    if not 0 < args.train_eps < 1:
        raise ValueError(f"--train_eps must be in (0, 1), got {args.train_eps}")
    _check_positive_int("--num_class_embeds", args.num_class_embeds)
    for flag in ("save_images_steps", "save_images_epochs", "save_model_epochs", "eval_batch_size", "eval_steps"):
        _check_positive_int(f"--{flag}", getattr(args, flag))
    if not 0 <= args.class_drop_prob < 1:
        raise ValueError(f"--class_drop_prob must be in [0, 1), got {args.class_drop_prob}")
    if args.model_config_name_or_path and not os.path.isfile(_config_file(args.model_config_name_or_path)):
        raise ValueError(f"--model_config_name_or_path={args.model_config_name_or_path!r}: no config JSON there")


def build_sde(args: argparse.Namespace):
    """The SDE the flags describe."""
    kwargs = {"N": args.num_train_timesteps}
    if args.sde == "ve":
        kwargs.update(sigma_min=args.sigma_min, sigma_max=args.sigma_max)
    else:
        kwargs.update(beta_min=args.beta_min, beta_max=args.beta_max)
    return get_sde(args.sde, **kwargs)


def scheduler_config(args: argparse.Namespace, data_range: tuple[float, float]) -> dict:
    """Keyword arguments of ``ScoreSDEPCScheduler`` for the trained model (SDE, parameterization, data range)."""
    return {"sde_type": args.sde, "beta_min": args.beta_min, "beta_max": args.beta_max, "sigma_min": args.sigma_min,
            "sigma_max": args.sigma_max, "num_train_timesteps": args.num_train_timesteps,
            "prediction_type": args.prediction_type, "data_range": list(data_range),
            "clip_sample": bool(getattr(args, "clip_sample", False))}


def data_range_for(sde: str) -> tuple[float, float]:
    return DEFAULT_DATA_RANGE[sde]


DIGITS_LEVELS = 17  # scikit-learn's digits take the values 0..16


def likelihood_defaults(args: argparse.Namespace, data_range: tuple[float, float]) -> dict:
    """What a trained pipeline records under ``_scorekit.likelihood`` (:mod:`scorekit.pipelines.model_defaults`),
    the defaults of ``pipe.log_likelihood`` and ``scorekit likelihood``: ``--dataset digits`` has 17 levels, trained
    at ``lo + (hi - lo) k / 16``, whose dequantization bins of width ``h = (hi - lo) / 16`` are centred on them and
    tile ``(lo - h / 2, hi + h / 2)`` (``(-17/16, 17/16)`` for ``[-1, 1]``, as ``scorekit/digits`` records); any
    other data is 8-bit, 256 levels whose bins tile ``data_range`` (score_sde's convention)."""
    lo, hi = data_range
    if args.dataset == "digits":
        half = (hi - lo) / (DIGITS_LEVELS - 1) / 2
        return {"num_levels": DIGITS_LEVELS, "data_range": [lo - half, hi + half]}
    return {"num_levels": 256, "data_range": [lo, hi]}


def _config_file(path: str) -> str:
    return os.path.join(path, "config.json") if os.path.isdir(path) else path


def build_unet(args: argparse.Namespace, channels: int, resolution: int):
    """A ``UNet2DModel`` from ``--model_config_name_or_path`` or ``--preset``; class-conditional models get
    ``num_class_embeds = K + 1`` (the last embedding is the null label of classifier-free guidance)."""
    from diffusers import UNet2DModel

    if args.model_config_name_or_path:
        with open(_config_file(args.model_config_name_or_path)) as f:
            config = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    else:
        widths, down, layers, groups = PRESETS[args.preset]
        up = tuple(reversed([b.replace("Down", "Up") for b in down]))
        config = {"block_out_channels": widths, "down_block_types": down, "up_block_types": up,
                  "layers_per_block": layers, "norm_num_groups": groups}
    config.update(sample_size=resolution, in_channels=channels, out_channels=channels)
    if args.num_class_embeds:
        config["num_class_embeds"] = args.num_class_embeds + 1
    if args.prediction_type == "sigma":  # NCSN++ convention: Fourier embedding of sigma, output divided by sigma
        config.setdefault("time_embedding_type", "fourier")
    if (config.get("time_embedding_type", "positional") == "fourier") != (args.prediction_type == "sigma"):
        raise ValueError(f"--prediction_type={args.prediction_type!r} needs a UNet with time_embedding_type "
                         f"{'fourier' if args.prediction_type == 'sigma' else 'positional'!r}; the model config has "
                         f"{config.get('time_embedding_type', 'positional')!r}")
    factor = 2 ** (len(config.get("block_out_channels", (0, 0, 0, 0))) - 1)
    if resolution % factor:
        raise ValueError(f"--resolution={resolution} cannot pass the UNet's {factor}x downsampling: use a multiple "
                         f"of {factor} or a model with fewer levels")
    return UNet2DModel(**config)
