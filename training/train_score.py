"""Train a score network (diffusers ``UNet2DModel``) on a score SDE with accelerate.

    accelerate launch training/train_score.py --dataset digits --num_class_embeds 10 --output_dir out/digits \
        --max_train_steps 1500 --learning_rate 2e-3 --use_ema --ema_max_decay 0.995
    scorekit train ...            # the same flags, one process

The output folder loads with ``ScoreSDEPipeline.from_pretrained`` (or ``ScoreSDEClassConditionalPipeline`` for a
class-conditional model, which samples with classifier-free guidance). ``--resume_from_checkpoint latest`` restores
step, weights, optimizer, learning-rate schedule, EMA, and every process's data position and noise generator: a run
killed on any number of processes continues to the same bytes (:mod:`~scorekit.training.checkpoint`). Flags and their
meanings follow diffusers' ``examples/unconditional_image_generation/train_unconditional.py``.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

import torch

from scorekit.hub import HubError, create_hub_repo
from scorekit.training.checkpoint import FINISHED_MARKER, plan_run
from scorekit.training.config import (
    add_score_flags,
    build_parser,
    build_sde,
    build_unet,
    data_range_for,
    likelihood_defaults,
    scheduler_config,
    validate_score_args,
)
from scorekit.training.data import dataset_from_args
from scorekit.training.export import (
    build_pipeline,
    data_description,
    push_folder,
    sample_grid,
    training_command,
    write_card,
)
from scorekit.training.loop import fit, make_accelerator, setup_run
from scorekit.training.losses import ddpm_loss, dsm_loss, smld_loss, unet_model_fn


def make_loss_fn(args: argparse.Namespace, sde, num_classes: int | None):
    """``loss(model, batch, generator) -> scalar``: data to the model range, flip, label dropout, the chosen loss."""
    lo, hi = data_range_for(args.sde)

    def loss_fn(model, batch, generator):
        x0 = lo + (hi - lo) * batch["images"]
        if args.random_flip:
            flip = torch.rand(x0.shape[0], generator=generator, device=x0.device) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        labels = None
        if args.num_class_embeds:
            drop = torch.rand(x0.shape[0], generator=generator, device=x0.device) < args.class_drop_prob
            labels = torch.where(drop, args.num_class_embeds, batch["labels"].to(x0.device))  # K = null label
        model_fn = unet_model_fn(model, sde, args.prediction_type, labels)
        if args.loss == "ddpm":
            return ddpm_loss(model_fn, sde, x0, generator, reduce=args.reduce)
        if args.loss == "smld":
            return smld_loss(model_fn, sde, x0, generator, args.prediction_type, reduce=args.reduce)
        return dsm_loss(model_fn, sde, x0, generator, args.prediction_type, args.weighting, args.importance_sampling,
                        args.train_eps, args.reduce)

    return loss_fn


def make_ema(args: argparse.Namespace, unet):
    """diffusers' ``EMAModel`` as diffusers' ``train_unconditional.py`` builds it: decay ``1 - (1 + n / inv_gamma) **
    -power`` at update n, capped at ``--ema_max_decay`` (``--no_ema_warmup``: EMAModel's other ramp)."""
    from diffusers import UNet2DModel
    from diffusers.training_utils import EMAModel

    return EMAModel(unet.parameters(), decay=args.ema_max_decay, use_ema_warmup=args.ema_warmup,
                    inv_gamma=args.ema_inv_gamma, power=args.ema_power, model_cls=UNet2DModel,
                    model_config=unet.config)


def train(args: argparse.Namespace) -> dict:
    """Run training as the flags say; returns ``{"final_loss", "steps", "output_dir", "images_per_second"}``.

    Prints "resuming from checkpoint-N (step N of M)" on resume and one summary line at the end (main process).
    """
    from accelerate.utils import set_seed

    validate_score_args(args)
    plan = plan_run(args.output_dir, args.resume_from_checkpoint, args.overwrite_output_dir)
    repo_id = prepare_hub(args)  # token and repository checked before any data is read
    dataset, num_classes, channels, resolution = dataset_from_args(args)  # data errors before any step
    sde = build_sde(args)
    set_seed(args.seed)
    unet = build_unet(args, channels, resolution)
    accelerator = make_accelerator(args, "train_score")
    ema = make_ema(args, unet) if args.use_ema else None
    if ema is not None:
        ema.to(accelerator.device)
    sched_kwargs = scheduler_config(args, data_range_for(args.sde))
    defaults = {"likelihood": likelihood_defaults(args, data_range_for(args.sde))}  # the data's levels

    def save_model(model, folder):  # checkpoint-N/ is a pipeline folder (unet/ = training weights) + unet_ema/
        build_pipeline(model, sched_kwargs, model_defaults=defaults).save_pretrained(folder)

    run = setup_run(args, accelerator, unet, dataset, plan, save_model, "unet", ema)
    samples = SampleWriter(args, accelerator, run, ema, sched_kwargs, num_classes, defaults)
    if run.finished:
        result = {"final_loss": run.state.last_loss, "steps": run.state.step, "images_per_second": 0.0}
    else:
        result = fit(run, args, make_loss_fn(args, sde, num_classes), samples.after_update, "train_score",
                     samples.on_epoch_end)
    exported = accelerator.is_main_process and (not run.finished or not os.path.isfile(
        os.path.join(args.output_dir, FINISHED_MARKER)))
    if exported:  # a finished run is left as it is (unless a kill cut its export short)
        samples.export(result)
    accelerator.end_training()
    if exported and repo_id is not None:
        push_folder(args.output_dir, repo_id, args.hub_token)
    if accelerator.is_main_process:
        print(summary_line(result, run, args.output_dir), flush=True)
    return {**result, "output_dir": args.output_dir}


def prepare_hub(args: argparse.Namespace) -> str | None:
    """With ``--push_to_hub``, check the token and create the repository on the main process (None elsewhere)."""
    from accelerate import PartialState

    if not args.push_to_hub or not PartialState().is_main_process:
        return None
    return create_hub_repo(args.hub_model_id, token=args.hub_token, private=args.hub_private_repo or None)


def summary_line(result: dict, run, output_dir: str) -> str:
    """The last line a trainer prints, however it was launched."""
    if run.finished:
        return f"nothing to train: {output_dir} holds the finished run (step {run.state.step} of {run.max_steps})"
    return f"trained {result['steps']} steps, final loss {result['final_loss']:.5f}; pipeline in {output_dir}"


class SampleWriter:
    """Sample grids (``--save_images_steps``, ``--save_images_epochs``), periodic pipeline saves
    (``--save_model_epochs``) and the final export with the model card, all from the EMA weights when kept.

    Everything here runs on the main process and leaves the training state, global RNG included, untouched.
    """

    def __init__(self, args, accelerator, run, ema, sched_kwargs: dict, num_classes: int | None,
                 model_defaults: dict | None = None):
        self.args, self.accelerator, self.run, self.ema = args, accelerator, run, ema
        self.sched_kwargs, self.num_classes, self.model_defaults = sched_kwargs, num_classes, model_defaults

    def after_update(self, step: int) -> None:
        if self.ema is not None:
            self.ema.step(self.run.model.parameters())
        every = self.args.save_images_steps
        if every and step % every == 0 and self.accelerator.is_main_process:
            self._grid(f"step_{step:06d}.png")

    def on_epoch_end(self, epoch: int) -> None:
        if not self.accelerator.is_main_process:
            return
        due = lambda every: every and (epoch % every == 0 or epoch == self.run.num_epochs - 1)  # noqa: E731
        if due(self.args.save_images_epochs):
            self._grid(f"epoch_{epoch:04d}.png")
        if due(self.args.save_model_epochs):
            with torch.random.fork_rng(devices=[]):
                self._pipeline().save_pretrained(self.args.output_dir)

    def export(self, result: dict) -> None:
        """The final pipeline and its model card in ``--output_dir``."""
        pipe = self._pipeline()
        pipe.save_pretrained(self.args.output_dir)
        write_card(pipe, self.args.output_dir, self.args.hub_model_id, **self._card(result))

    def _pipeline(self):
        unet = copy.deepcopy(self.accelerator.unwrap_model(self.run.model))  # the training model stays as it is
        if self.ema is not None:
            self.ema.copy_to(unet.parameters())
        return build_pipeline(unet.float().eval(), self.sched_kwargs, model_defaults=self.model_defaults)

    def _grid(self, name: str) -> None:
        args = self.args
        classes = self.num_classes if args.num_class_embeds else None
        with torch.random.fork_rng(devices=[]):
            sample_grid(self._pipeline(), os.path.join(args.output_dir, "samples", name), args.eval_batch_size,
                        args.eval_sampler, args.eval_steps, args.seed, classes)

    def _card(self, result: dict) -> dict:
        args, acc = self.args, self.accelerator
        entry = "scorekit train" if getattr(args, "entry", None) == "cli" else "training/train_score.py"
        processes = acc.num_processes
        facts = {"SDE": args.sde, "parameterization": args.prediction_type, "loss": args.loss,
                 "weighting": args.weighting, "classes": self.num_classes if args.num_class_embeds else "-",
                 "optimizer steps": result["steps"], "processes": processes,
                 "global batch size": f"{args.train_batch_size * processes * args.gradient_accumulation_steps} "
                 f"({args.train_batch_size} per process x {processes} processes x "
                 f"{args.gradient_accumulation_steps} accumulated)",
                 "EMA": f"max decay {args.ema_max_decay}, " + (
                     f"warm-up inv_gamma {args.ema_inv_gamma}, power {args.ema_power}" if args.ema_warmup else
                     "ramp (1 + n) / (10 + n)") if args.use_ema else "no",
                 "final training loss": f"{result['final_loss']:.5f}"}
        command = training_command(args, add_score_flags, entry, processes, acc.device.type == "cpu")
        return {"training_data": data_description(args),
                "training_command": command, "training_facts": facts}


def main(argv: list[str] | None = None) -> dict:
    """Train with ``argv`` (default: the command line) as flags."""
    return train(build_parser().parse_args(argv))


def script_main(entry=main, name: str = "train_score.py") -> int:
    """``python training/<name>`` / ``accelerate launch``: a bad flag or a Hub failure is one line on stderr and exit
    status 2, not a traceback."""
    try:
        entry()
    except (ValueError, HubError) as err:
        print(f"{name}: error: {err}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(script_main())
