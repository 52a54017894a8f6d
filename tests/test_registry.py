"""The one sampler registry (scorekit.samplers.registry): every layer reads it, the front door is strict, and a new
sampler registered in one line shows up everywhere (model card, CLI help and flags, trainer choices)."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch

import scorekit
from scorekit.samplers.options import SamplerOptions, option
from scorekit.samplers.registry import REGISTRY, SamplerSpec, markdown_table, registered

ROOT = Path(__file__).resolve().parents[1]


def gaussian_score(sde):
    from scorekit.analytic import GaussianScore

    return GaussianScore(torch.zeros(2, dtype=torch.float64), 0.5 * torch.eye(2, dtype=torch.float64), sde)


# --- strict front door ---------------------------------------------------------------------------------------------
ALL_OPTIONS = sorted({f.name for spec in REGISTRY.values() for f in spec.options.fields()} | {"bogus"})
FOREIGN_VALUE = {"predictor": "euler_maruyama", "corrector": "none", "snr": 0.1, "n_corrector_steps": 2,
                 "probability_flow": True, "snr_norm": "batch", "step_size": 1e-3, "method": "heun", "rtol": 1e-3,
                 "atol": 1e-3, "eta": 0.5, "order": 2, "time_grid": "uniform", "rho": 3.0, "s_churn": 1.0,
                 "s_noise": 1.0, "s_tmin": 0.0, "s_tmax": 1.0, "timesteps": [1.0, 0.5, 1e-3], "num_particles": 2,
                 "ess_threshold": 0.5, "return_particles": True, "bogus": 1}


@pytest.mark.parametrize("name", list(REGISTRY))
def test_sample_rejects_every_foreign_option(name):
    """For every registered sampler, each option it does not have is a ValueError naming the sampler and listing its
    settings, raised before any score evaluation."""
    spec, sde, calls = REGISTRY[name], scorekit.VPSDE(), []
    own = set(spec.options.option_names())
    for key in ALL_OPTIONS:
        if key in own:
            continue
        pattern = rf"{key}=.* is not a setting of sampler={re.escape(repr(name))}; its settings are"
        with pytest.raises(ValueError, match=pattern) as e:
            scorekit.sample(lambda x, t: calls.append(1) or -x, sde, (2, 2), sampler=name, steps=2,
                            **{key: FOREIGN_VALUE[key]})
        for own_key in own:
            assert f"{own_key}=" in str(e.value)
    assert calls == []


def test_issue_examples_are_refused():
    sde = scorekit.VPSDE()
    with pytest.raises(ValueError, match=r"snr=5 is not a setting of sampler='dpmsolver\+\+'"):
        scorekit.sample(lambda x, t: -x, sde, (2, 2), sampler="dpmsolver++", snr=5, eta=3, method="heun")
    with pytest.raises(ValueError, match=r"method='bogus' is not a setting of sampler='pc'"):
        scorekit.sample(lambda x, t: -x, sde, (2, 2), sampler="pc", method="bogus", rho=-1, s_churn=-5)


def test_options_object_is_the_typed_form():
    from scorekit.samplers.options import EDMHeunOptions

    sde = scorekit.VPSDE()
    g = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)]
    a, info = scorekit.sample(gaussian_score(sde), sde, (2, 2), sampler=EDMHeunOptions(s_churn=10.0), steps=4,
                              generator=[torch.Generator().manual_seed(0) for _ in range(2)], dtype=torch.float64)
    b, _ = scorekit.sample(gaussian_score(sde), sde, (2, 2), sampler="edm-heun", s_churn=10.0, steps=4, generator=g,
                           dtype=torch.float64)
    assert torch.equal(a, b) and info["sampler"] == "edm-heun" and info["options"]["s_churn"] == 10.0
    with pytest.raises(ValueError, match="options object"):
        scorekit.sample(gaussian_score(sde), sde, (2, 2), sampler=EDMHeunOptions(), s_churn=1.0)
    with pytest.raises(ValueError, match="s_churn must be >= 0"):
        EDMHeunOptions(s_churn=-1.0)


# --- one line adds a sampler everywhere ----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ParticleMeanOptions(SamplerOptions):
    """A dummy particle sampler: K particles per sample, each a DDIM path; returns their mean."""

    name: ClassVar[str] = "dummy-particles"
    num_particles: int = option(3, "particles per sample", flag_type=int)


def particle_mean_loop(x, ctx, grid, opts):
    from scorekit.samplers.ddim import ddim_step

    tb = ctx.batch_times(x.shape[0])
    for i in ctx.iterate(grid.steps):
        x = ctx.end_step(i, ddim_step(x, tb[i], tb[i + 1], ctx.score_fn, ctx.sde, ctx.generator, eta=1.0)[0])
    return x.reshape(-1, opts.num_particles, *x.shape[1:]).mean(1)


DUMMY = SamplerSpec("dummy-particles", ParticleMeanOptions, particle_mean_loop, 5, summary="a test's particle sampler",
                    nfe="`steps` per particle", particles="num_particles")


def test_dummy_sampler_runs_with_particles_and_per_image_generators():
    sde = scorekit.VPSDE()
    with registered(DUMMY):
        gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
        x, info = scorekit.sample(gaussian_score(sde), sde, (2, 2), sampler="dummy-particles", num_particles=4,
                                  generator=gens, dtype=torch.float64)
        alone, _ = scorekit.sample(gaussian_score(sde), sde, (1, 2), sampler="dummy-particles", num_particles=4,
                                   generator=[torch.Generator().manual_seed(2)], dtype=torch.float64)
    assert x.shape == (2, 2) and info["nfe"] == 5 and info["options"] == {"num_particles": 4}
    assert torch.equal(x[1:], alone)  # elementwise score and per-particle draws: exact
    assert "dummy-particles" not in REGISTRY


def test_dummy_sampler_appears_in_card_cli_help_and_trainer_choices(capsys):
    from diffusers import DDPMScheduler
    from hub_layouts import tiny_ddpm_unet

    from scorekit.cli import build_parser
    from scorekit.hub import make_model_card
    from scorekit.pipelines import ScoreSDEPipeline
    from scorekit.training.config import build_parser as trainer_parser

    pipe = ScoreSDEPipeline(unet=tiny_ddpm_unet(), scheduler=DDPMScheduler())
    with registered(DUMMY):
        card = str(make_model_card(pipe, "you/model"))
        with pytest.raises(SystemExit):
            build_parser().parse_args(["sample", "--help"])
        help_text = capsys.readouterr().out
        trainer = trainer_parser()
        choices = next(a.choices for a in trainer._actions if a.dest == "eval_sampler")
        args = build_parser().parse_args(["sample", "--model", "m", "--sampler", "dummy-particles",
                                          "--num_particles", "2"])
    assert "`dummy-particles` (5)" in card
    assert "dummy-particles" in help_text and "--num-particles" in help_text and "particles per sample" in help_text
    assert "dummy-particles" in choices
    assert args.sampler == "dummy-particles" and args.num_particles == 2
    assert "dummy-particles" not in str(make_model_card(pipe, "you/model"))


# --- every layer reads the registry -------------------------------------------------------------------------------
def test_readme_sampler_table_is_the_registry():
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "README's sampler table is not scorekit.samplers.registry.markdown_table()"


def test_a_sampler_needing_its_own_condition_is_offered_only_where_one_is_given():
    """``ddrm`` needs ``condition=DDRM(...)``: the CLI and the trainer (which build no such condition) do not offer
    it, the card says what it needs, the README table lists it."""
    from diffusers import DDPMScheduler
    from hub_layouts import tiny_ddpm_unet

    from scorekit.cli import build_parser
    from scorekit.hub import make_model_card
    from scorekit.pipelines import ScoreSDEPipeline
    from scorekit.training.config import build_parser as trainer_parser

    assert REGISTRY["ddrm"].condition_name == "DDRM" and "`ddrm`" in markdown_table()
    trainer = trainer_parser()
    assert "ddrm" not in next(a.choices for a in trainer._actions if a.dest == "eval_sampler")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sample", "--model", "m", "--sampler", "ddrm"])
    card = str(make_model_card(ScoreSDEPipeline(unet=tiny_ddpm_unet(), scheduler=DDPMScheduler()), "you/model"))
    assert "`ddrm` (20; with `condition=DDRM(...)`)" in card


def test_model_card_recommends_the_registry_steps():
    from diffusers import DDPMScheduler
    from hub_layouts import tiny_ddpm_unet

    from scorekit.hub import make_model_card
    from scorekit.pipelines import ScoreSDEPipeline
    from scorekit.schedulers import ScoreSDEODEScheduler

    pipe = ScoreSDEPipeline(unet=tiny_ddpm_unet(), scheduler=ScoreSDEODEScheduler.from_config(DDPMScheduler().config))
    card = str(make_model_card(pipe, "you/model"))
    assert "default sampler: `dpmsolver++` with 19 steps" in card and "num_inference_steps=19" in card


def test_every_option_is_reachable_from_the_pipelines_and_the_cli():
    """Every option is a pipeline argument, and a flag of each subcommand that can run its sampler: ``sample`` (and
    ``restore``, ``inpaint``, ``colorize``) for the samplers that need no condition of their own; only the
    restoration commands for ``ddrm``, ``tds`` and ``mcgdiff``, which a ``--method`` picks (``sample`` cannot run
    them, so it has no ``--num-particles``). The PF-ODE's ``method`` is ``--ode-method`` where ``--method`` names
    the restoration method."""
    from scorekit.cli import build_parser
    from scorekit.pipelines.pipeline_score_sde import SAMPLER_SETTINGS, ScoreSDEPipeline

    params = inspect.signature(ScoreSDEPipeline.__call__).parameters
    commands = build_parser()._subparsers._group_actions[0].choices
    dests = {name: {a.dest for a in commands[name]._actions} for name in ("sample", "restore", "inpaint", "colorize")}
    for spec in REGISTRY.values():
        where = ["sample", "restore", "inpaint", "colorize"] if spec.condition is None else ["restore", "inpaint",
                                                                                            "colorize"]
        for name in spec.options.option_names():
            assert name in SAMPLER_SETTINGS and name in params, f"{spec.name}.{name} is not a pipeline argument"
            for command in where:
                assert name in dests[command], f"{spec.name}.{name} has no flag in scorekit {command}"
    particle_options = {f.name for name in ("tds", "mcgdiff") for f in REGISTRY[name].options.fields()}
    assert particle_options and not particle_options & dests["sample"], "sample offers flags it cannot use"
    restore = commands["restore"]
    assert "--ode-method" in restore._option_string_actions and "--method" in restore._option_string_actions
    assert restore._option_string_actions["--ode-method"].dest == "method"
    assert "sampler_options" in params


# Options a scheduler config cannot hold, and why (the README's "How to add a sampler" repeats this):
# - "timesteps": a user grid goes to set_timesteps(timesteps=...), as in diffusers;
# - "method": ScoreSDEODEScheduler's `solver` names the PF-ODE method itself ("euler", "heun", "dopri5", ...);
# - every option of "ald": ALD has no scheduler (scorekit.sample / pipelines' sampler="ald" only);
# - "ddrm" has no scheduler either: it needs condition=DDRM(observation), which no scheduler config holds (its own
#   settings eta, eta_b are the condition's; DDRMOptions has none);
# - nor have the particle samplers "tds" and "mcgdiff" (condition=TDS(...) / MCGdiff(...); a scheduler's step()
#   moves one state, not K weighted particles).
NOT_IN_CONFIG = {"timesteps", "method"}
NO_SCHEDULER = {"ald", "ddrm", "tds", "mcgdiff"}


def test_every_option_is_reachable_from_its_scheduler():
    from scorekit.schedulers import ScoreSDEODEScheduler, ScoreSDEPCScheduler

    classes = {"ScoreSDEPCScheduler": ScoreSDEPCScheduler, "ScoreSDEODEScheduler": ScoreSDEODEScheduler}
    for spec in REGISTRY.values():
        if spec.scheduler is None:
            assert spec.name in NO_SCHEDULER
            continue
        keys = set(inspect.signature(classes[spec.scheduler].__init__).parameters)
        missing = set(spec.options.option_names()) - keys - NOT_IN_CONFIG
        assert not missing, f"{spec.name}: {missing} cannot be set on {spec.scheduler}"
    sched = ScoreSDEODEScheduler(solver="edm-heun", s_churn=10.0)  # the issue's example
    assert sched.sample_kwargs()["s_churn"] == 10.0


def test_registry_and_cli_help_import_no_torch():
    code = ("import sys, scorekit.samplers.registry as r, scorekit.samplers.options; "
            "assert 'torch' not in sys.modules, 'torch imported'; print(len(r.REGISTRY))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(REGISTRY)


def test_cli_accepts_both_flag_spellings():
    from scorekit.cli import build_parser

    a = build_parser().parse_args(["sample", "--model", "m", "--batch_size", "3", "--num_inference_steps", "7",
                                   "--time_grid", "karras", "--s_churn", "2"])
    b = build_parser().parse_args(["sample", "--model", "m", "--batch-size", "3", "--num-inference-steps", "7",
                                   "--time-grid", "karras", "--s-churn", "2"])
    assert vars(a) == vars(b) and a.batch_size == 3 and a.steps == 7 and a.s_churn == 2.0
    trainer = build_parser().parse_args(["train", "--output-dir", "o", "--dataset", "digits"])
    assert trainer.output_dir == "o"


def test_cli_rejects_a_flag_of_another_sampler(tmp_path, capsys):
    from hub_layouts import make_ddpm_cifar10_folder

    from scorekit.cli import main

    model = make_ddpm_cifar10_folder(str(tmp_path / "model"))
    code = main(["sample", "--model", model, "--sampler", "dpmsolver++", "--snr", "0.2", "--steps", "2",
                 "--out", str(tmp_path / "g.png")])
    assert code == 2
    assert re.search(r"--snr is not a setting of sampler dpmsolver\+\+ \(--sampler\); its settings are .*--order",
                     capsys.readouterr().err)
    # refused before the model loads: a folder that does not exist is never read
    assert main(["sample", "--model", str(tmp_path / "nowhere"), "--sampler", "ddim", "--snr", "0.2",
                 "--out", str(tmp_path / "g.png")]) == 2
    assert "--snr is not a setting of sampler ddim" in capsys.readouterr().err
