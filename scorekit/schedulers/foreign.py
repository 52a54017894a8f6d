"""Converting diffusers scheduler configs (DDPM, DDIM, DPM-Solver multistep, ScoreSdeVe/Vp) to scorekit's keys.

Every key of a DDPM-family config that changes the schedule, the parameterization or the sampling is honoured,
refused by name (``ValueError``), or, where the conversion drops it, reported once by a warning that names it
(the table is in the README's "Using Hub checkpoints" section):

- the schedule: ``num_train_timesteps``, ``beta_start``, ``beta_end``, ``beta_schedule``, ``trained_betas``,
  ``rescale_betas_zero_snr`` -> a VP SDE (linear betas: the continuous VP SDE with ``beta_min = N beta_start``,
  ``beta_max = N beta_end``; any other table: :class:`~scorekit.sde.DiscreteVPSDE`);
- the parameterization: ``prediction_type`` ``epsilon``, ``sample``, ``v_prediction``;
- the sampling: ``variance_type``, ``clip_sample`` / ``clip_sample_range``, ``thresholding``, and the keys of
  diffusers' discrete timesteps (``timestep_spacing``, ``steps_offset``, ``set_alpha_to_one``), honoured with
  ``discretization="discrete"``; DPM-Solver's ``algorithm_type``, ``solver_order``, ``solver_type``,
  ``lower_order_final``, ``euler_at_final``, ``use_*_sigmas``, ``final_sigmas_type``, ``lambda_min_clipped``.

A config that already carries scorekit's keys (``sde_type``: a diffusers scheduler built ``from_config`` of a scorekit
one, the scheduler-swap idiom) keeps the model's SDE and parameterization from them and takes only the sampler from
the diffusers class.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from .alpha_bars import BETA_SCHEDULES

SUPPORTED_FOREIGN = ("DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler", "ScoreSdeVeScheduler",
                     "ScoreSdeVpScheduler")
DDPM_FAMILY = ("DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler")
# the scorekit scheduler class a pipeline turns each diffusers scheduler into (the sampler each one runs)
SCOREKIT_EQUIVALENT = {"DDPMScheduler": "ScoreSDEPCScheduler", "DDIMScheduler": "ScoreSDEODEScheduler",
                       "DPMSolverMultistepScheduler": "ScoreSDEODEScheduler",
                       "ScoreSdeVeScheduler": "ScoreSDEPCScheduler", "ScoreSdeVpScheduler": "ScoreSDEPCScheduler"}
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
VARIANCE_TYPES = {"fixed_small": "fixed_small", "fixed_large": "fixed_large",
                  "fixed_small_log": "fixed_small"}  # fixed_small_log draws with the same std as fixed_small
# scorekit-only keys of a carried scorekit config: the model's (kept) and the sampler's (replaced by the diffusers
# class's sampler); the keys scorekit shares with diffusers (num_train_timesteps, beta_schedule, prediction_type,
# clip_sample, ...) are read from the diffusers config, which got them from scorekit's
CARRIED_MODEL_KEYS = ("sde_type", "beta_min", "beta_max", "sigma_min", "sigma_max", "sampling_eps", "data_range")
CARRIED_SAMPLER_KEYS = ("predictor", "corrector", "snr", "n_corrector_steps", "denoise", "discretization",
                        "use_clipped_model_output", "solver", "eta", "rtol", "atol", "order", "time_grid", "rho",
                        "probability_flow", "snr_norm", "s_churn", "s_noise", "s_tmin", "s_tmax")
# diffusers' discrete-timestep keys with the values under which they change nothing scorekit's continuous grid does
GRID_DEFAULTS = {"timestep_spacing": "leading", "steps_offset": 0, "set_alpha_to_one": True}
_WARNED: set[str] = set()


CLIP_DROPPED = ("the paper and scorekit do not clip; pass clip_sample=True to clip x0 to the data range, with "
                "solver='ddim', discretization='discrete', use_clipped_model_output=False for DDIMPipeline's steps")
GRID_DROPPED = "it sets diffusers' discrete timesteps; pass discretization='discrete' to follow them"
DPM_GRID_DROPPED = "scorekit's DPM-Solver++ steps on its own time_grid ('uniform' in t for diffusers' 'linspace')"


def warn_dropped(name: str, dropped: dict[str, tuple[Any, str]]) -> None:
    """Warn once per process that converting a ``name`` config drops the keys of ``dropped`` (key -> (value, why))."""
    if not dropped:
        return
    keys = "; ".join(f"{k}={v!r} ({why})" for k, (v, why) in dropped.items())
    message = f"converting a {name} config drops {keys}"
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, UserWarning, stacklevel=5)


def guess_class_name(config: dict[str, Any]) -> str | None:
    """The diffusers class a config (without ``_class_name``: ``scheduler.config`` has none) comes from, by its keys;
    ``None`` for scorekit's own configs."""
    if "sde_type" in config:
        return None
    if "algorithm_type" in config:
        return "DPMSolverMultistepScheduler"
    if "set_alpha_to_one" in config:
        return "DDIMScheduler"
    if "beta_start" in config:
        return "DDPMScheduler"
    if "correct_steps" in config or "sigma_max" in config:
        return "ScoreSdeVeScheduler"
    if "beta_min" in config:
        return "ScoreSdeVpScheduler"
    return None


def translate_foreign_config(config: dict[str, Any], overrides: dict[str, Any] | None = None,
                             target: str = "ScoreSDEPCScheduler") -> dict[str, Any]:
    """Map a DDPM / DDIM / DPM-Solver multistep / ScoreSdeVe / ScoreSdeVp config onto scorekit's keys (a scorekit
    config passes through).

    Args:
        config: the foreign config (``scheduler.config`` or a loaded ``scheduler_config.json``).
        overrides: the keyword arguments given to ``from_config`` (they win over the config, and a key the user sets
            is not reported as dropped).
        target: the scorekit class being built (``"ScoreSDEODEScheduler"`` takes DDIM's and DPM-Solver's sampler).

    Raises:
        ValueError: a key whose value scorekit cannot honour, named with what is accepted.
    """
    config, overrides = dict(config), dict(overrides or {})
    name = config.get("_class_name") or guess_class_name(config)
    if name not in SUPPORTED_FOREIGN:
        return config
    config.pop("_use_default_values", None)  # those defaults were the foreign class's, not ours
    if name in DDPM_FAMILY:
        return _translate_ddpm_family(name, config, overrides, target)
    if name == "ScoreSdeVeScheduler":
        config.update(sde_type="ve", prediction_type="sigma", data_range=[0.0, 1.0])
        if "correct_steps" in config:
            config.setdefault("n_corrector_steps", config["correct_steps"])
    else:
        config.update(sde_type="vp", prediction_type="epsilon", data_range=[-1.0, 1.0])
    return config


def _translate_ddpm_family(name: str, config: dict, overrides: dict, target: str) -> dict:
    carried = {}
    if "sde_type" in config:  # a diffusers scheduler built from a scorekit config (the scheduler-swap idiom)
        carried = {k: config.pop(k) for k in CARRIED_MODEL_KEYS if k in config}
        for key in CARRIED_SAMPLER_KEYS:
            config.pop(key, None)
    schedule = _schedule_keys(name, config)
    if carried:
        _check_same_schedule(name, schedule, carried)
        config.update({**schedule, **carried})  # the model's SDE; prediction_type as scorekit had it
    else:
        config.update(schedule, prediction_type=_prediction_type(name, config.get("prediction_type", "epsilon")))
    _check_thresholding(name, config)
    discrete = overrides.get("discretization", "continuous") == "discrete"
    dropped: dict[str, tuple[Any, str]] = {}
    if name != "DPMSolverMultistepScheduler":
        if not carried and _clip_keys(name, config, overrides):
            dropped["clip_sample"] = (True, CLIP_DROPPED)
        config["variance_type"] = _variance_type(name, config.get("variance_type", "fixed_large"))
        if not discrete:
            dropped.update({k: (config[k], GRID_DROPPED) for k, v in GRID_DEFAULTS.items()
                            if k in config and config[k] != v})
    if target == "ScoreSDEODEScheduler" and name == "DDIMScheduler":
        config["solver"] = "ddim"
    elif target == "ScoreSDEODEScheduler" and name == "DPMSolverMultistepScheduler":
        config.update(_dpm_solver_keys(config, dropped, carried=bool(carried)))
    for key in list(dropped):
        if key in overrides:  # the user decided
            dropped.pop(key)
    warn_dropped(name, dropped)
    return config


def _schedule_keys(name: str, config: dict) -> dict[str, Any]:
    """scorekit's VP keys of a DDPM-family schedule (linear betas over N steps are the VP SDE's discrete betas with
    ``beta_min = N beta_start``, ``beta_max = N beta_end``: exact for 1e-4, 0.02, 1000 -> 0.1, 20)."""
    n = int(config.get("num_train_timesteps", 1000))
    schedule = config.get("beta_schedule", "linear")
    trained = config.get("trained_betas")
    if trained is None and schedule not in BETA_SCHEDULES:
        raise ValueError(f"{name} beta_schedule={schedule!r} cannot be converted; expected one of "
                         f"{list(BETA_SCHEDULES)} or trained_betas")
    return {"sde_type": "vp", "num_train_timesteps": n, "beta_min": n * float(config.get("beta_start", 1e-4)),
            "beta_max": n * float(config.get("beta_end", 0.02)), "beta_schedule": schedule,
            "trained_betas": None if trained is None else [float(b) for b in trained],
            "rescale_betas_zero_snr": bool(config.get("rescale_betas_zero_snr", False)),
            "data_range": [-1.0, 1.0], "sampling_eps": config.get("sampling_eps", 1e-3)}


def _check_same_schedule(name: str, schedule: dict, carried: dict) -> None:
    """A diffusers scheduler built from a scorekit VP config keeps the model's betas (scorekit registers
    ``beta_start = beta_min / N`` and ``beta_end = beta_max / N``); refuse a config whose betas changed on the way."""
    if carried.get("sde_type") != "vp":
        return  # the diffusers class's VP keys are its defaults, not the model's
    differ = [k for k in ("beta_min", "beta_max") if k in carried and not _same(schedule[k], carried[k])]
    if differ:
        raise ValueError(f"this {name} config carries scorekit's model keys but beta_start / beta_end disagree with "
                         f"{ {k: carried[k] for k in differ} }; build it with "
                         f"{name}.from_config(pipe.scheduler.config)")


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def _prediction_type(name: str, prediction: str) -> str:
    if prediction not in PREDICTION_TYPES:
        raise ValueError(f"{name} prediction_type={prediction!r} cannot be converted; expected one of "
                         f"{list(PREDICTION_TYPES)}")
    return prediction


def _variance_type(name: str, variance: str | None) -> str:
    if variance not in VARIANCE_TYPES:
        raise ValueError(f"{name} variance_type={variance!r} cannot be converted; expected one of "
                         f"{list(VARIANCE_TYPES)} (a VP score model has no learned variance, and diffusers' "
                         f"'fixed_large_log' step takes the square root of a log variance)")
    return VARIANCE_TYPES[variance]


def _check_thresholding(name: str, config: dict) -> None:
    if config.get("thresholding", False):
        raise ValueError(f"{name} thresholding=True (dynamic thresholding, with dynamic_thresholding_ratio and "
                         f"sample_max_value) is not supported by scorekit; set thresholding=False (clip_sample=True "
                         f"clips x0 to the data range)")


def _clip_keys(name: str, config: dict, overrides: dict) -> bool:
    """diffusers clips x0 by default, the paper does not: scorekit keeps ``clip_sample=False`` unless the user passes
    ``clip_sample=True``; returns the config's value (dropped when true)."""
    clip = bool(config.get("clip_sample", True))
    config.update(clip_sample=False, _diffusers_clip_sample=clip)
    clip_range = float(config.get("clip_sample_range", 1.0))
    if overrides.get("clip_sample") and clip_range != 1.0:
        raise ValueError(f"{name} clip_sample_range={clip_range} cannot be converted: scorekit clips x0 to the data "
                         f"range [-1, 1] (clip_sample_range=1.0)")
    return clip


def _dpm_solver_keys(config: dict, dropped: dict[str, tuple[Any, str]], carried: bool) -> dict[str, Any]:
    """The scorekit solver settings of a DPMSolverMultistepScheduler config (scorekit's 2M is diffusers'
    ``solver_type="midpoint"``; its order at the last steps follows ``lower_order_final=True``)."""
    algorithm = config.get("algorithm_type", "dpmsolver++")
    refuse = {"algorithm_type": (algorithm, ("dpmsolver++", "sde-dpmsolver++")),
              "solver_type": (config.get("solver_type", "midpoint"), ("midpoint",)),
              "lower_order_final": (config.get("lower_order_final", True), (True,)),
              "euler_at_final": (config.get("euler_at_final", False), (False,)),
              "variance_type": (None if carried else config.get("variance_type"), (None,)),  # scorekit PC's key
              "lambda_min_clipped": (config.get("lambda_min_clipped", -math.inf), (-math.inf,)),
              "final_sigmas_type": (config.get("final_sigmas_type", "zero"), ("zero", "sigma_min"))}
    for key in ("use_exponential_sigmas", "use_beta_sigmas", "use_flow_sigmas", "use_dynamic_shifting"):
        refuse[key] = (config.get(key, False), (False,))
    for key, (value, accepted) in refuse.items():
        if value not in accepted:
            raise ValueError(f"DPMSolverMultistepScheduler {key}={value!r} has no scorekit equivalent; expected one "
                             f"of {list(accepted)}")
    grid = "karras" if config.get("use_karras_sigmas") else "logsnr" if config.get("use_lu_lambdas") else "uniform"
    if grid == "uniform" and config.get("timestep_spacing", "linspace") != "linspace":
        dropped["timestep_spacing"] = (config["timestep_spacing"], DPM_GRID_DROPPED)
    if config.get("steps_offset", 0):
        dropped["steps_offset"] = (config["steps_offset"], DPM_GRID_DROPPED)
    return {"solver": algorithm, "order": int(config.get("solver_order", 2)), "time_grid": grid,
            "denoise": config.get("final_sigmas_type", "zero") == "zero"}
