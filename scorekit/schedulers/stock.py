"""Write scorekit schedulers in stock diffusers layouts, so stock pipelines open scorekit-saved models unchanged.

- A VP epsilon, sample or v-prediction model with data in [-1, 1] is saved with a ``DDPMScheduler`` config (its
  ``beta_schedule`` with ``beta_start = beta_min / N``, ``beta_end = beta_max / N``, ``trained_betas``,
  ``rescale_betas_zero_snr``: the same ``alphas_cumprod``): ``DDPMPipeline``, ``DDIMPipeline`` and any DDPM-compatible
  scheduler (``DPMSolverMultistep``, ...) sample it.
- A VE sigma model (NCSN++ style) with data in [0, 1] is saved with a ``ScoreSdeVeScheduler`` config.

The full scorekit config (sampler settings, ``sampling_eps``, ``data_range``, ...) rides along under the private
key ``"_scorekit"``: diffusers ignores ``_``-keys when building the stock scheduler but keeps them in its config, so
the key survives stock round trips, and :func:`from_stock_config` restores the scorekit scheduler exactly.
"""

from __future__ import annotations

from typing import Any

STOCK_KEY = "_scorekit"
DIFFUSERS_PREDICTIONS = ("epsilon", "sample", "v_prediction")  # the prediction types DDPMScheduler knows


def to_stock_config(scheduler) -> dict[str, Any] | None:
    """The stock diffusers scheduler config (with ``"_class_name"`` and the ``"_scorekit"`` extras) for a scorekit
    scheduler, or ``None`` when no stock scheduler describes it (sub-VP, score-parameterized VP, other data range)."""
    from diffusers import DDPMScheduler, ScoreSdeVeScheduler

    c = scheduler.config
    n, data_range = c.num_train_timesteps, tuple(scheduler.data_range)
    if c.sde_type == "vp" and c.prediction_type in DIFFUSERS_PREDICTIONS and data_range == (-1.0, 1.0):
        stock = DDPMScheduler(num_train_timesteps=n, beta_start=c.beta_min / n, beta_end=c.beta_max / n,
                              beta_schedule=c.get("beta_schedule", "linear"), trained_betas=c.get("trained_betas"),
                              rescale_betas_zero_snr=bool(c.get("rescale_betas_zero_snr", False)),
                              variance_type=c.get("variance_type", "fixed_large"),
                              clip_sample=bool(c.get("clip_sample", False)), prediction_type=c.prediction_type)
    elif c.sde_type == "ve" and c.prediction_type == "sigma" and data_range == (0.0, 1.0):
        stock = ScoreSdeVeScheduler(num_train_timesteps=n, snr=c.get("snr", 0.16), sigma_min=c.sigma_min,
                                    sigma_max=c.sigma_max, sampling_eps=scheduler.sde.sampling_eps,
                                    correct_steps=c.get("n_corrector_steps", 1))
    else:
        return None
    extras = {k: v for k, v in c.items() if not k.startswith("_")}
    extras["_class_name"] = type(scheduler).__name__
    return {**{k: v for k, v in stock.config.items() if k != "_use_default_values"},
            "_class_name": type(stock).__name__, STOCK_KEY: extras}


def from_stock_config(config) -> Any | None:
    """The scorekit scheduler recorded in a stock config's ``"_scorekit"`` key, or ``None`` if there is none."""
    extras = dict(config).get(STOCK_KEY)
    if not extras:
        return None
    from . import ScoreSDEODEScheduler, ScoreSDEPCScheduler

    classes = {c.__name__: c for c in (ScoreSDEPCScheduler, ScoreSDEODEScheduler)}
    name = extras.get("_class_name")
    if name not in classes:
        raise ValueError(f"scheduler config key {STOCK_KEY!r} names an unknown scorekit scheduler {name!r}; "
                         f"expected one of {sorted(classes)}")
    return classes[name].from_config({k: v for k, v in extras.items() if k != "_class_name"})
