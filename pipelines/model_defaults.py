"""What a model recommends when the caller does not say.

- **Sampler and steps** come from the model's scheduler (:func:`sampler_defaults`): the sampler its config names
  (``ScoreSDEODEScheduler(solver="dpmsolver++")`` -> DPM-Solver++, 19 steps + 1 denoising call = 20 NFE; a
  ``ScoreSDEPCScheduler`` -> PC, 1000 steps) and that sampler's default step count.
- Replacement conditioning (inpainting, colorization) needs fresh noise at every step, so where the scheduler's
  sampler is deterministic :func:`replacement_sampler` names its stochastic counterpart.
- **Guidance scale and data quantization** are recorded by the model in its pipeline config, under the private key
  ``"_scorekit"`` of ``model_index.json`` (private keys are ignored by diffusers' loaders, so stock pipelines still
  open the folder without warnings)::

      "_scorekit": {"guidance_scale": 1.5, "likelihood": {"num_levels": 17, "data_range": [-1.0625, 1.0625]}}

  ``guidance_scale``: the classifier-free (or classifier) guidance weight the model card measured as best;
  ``likelihood.num_levels`` / ``likelihood.data_range``: the levels of the training data and the interval their
  dequantization bins tile in the model's space (``scorekit.bits_per_dim``'s ``data_range``).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from scorekit.samplers.registry import get_spec

PIPELINE_KEY = "_scorekit"
# the stochastic sampler replacement conditioning switches to when the scheduler's own draws no noise
STOCHASTIC_COUNTERPART = "sde-dpmsolver++"


def sampler_defaults(scheduler) -> tuple[str, int]:
    """``(sampler, steps)`` a scheduler recommends: the sampler its config names and that sampler's default steps
    (the registry's ``default_steps``; the NFE then follow from the sampler)."""
    name = scheduler.options.name
    return name, default_steps(name)


def default_steps(sampler: str) -> int:
    """The steps ``sampler`` takes when none are given: its registry entry's ``default_steps`` (19 for
    DPM-Solver++, i.e. 20 NFE with the final denoising call; 1000 for PC)."""
    return get_spec(sampler).default_steps


def replacement_sampler(scheduler) -> str | None:
    """The sampler replacement conditioning should default to: ``None`` (the scheduler's own) when that one is
    stochastic with its configured settings (the registry options' ``deterministic``), else
    :data:`STOCHASTIC_COUNTERPART`."""
    return STOCHASTIC_COUNTERPART if scheduler.options.deterministic else None


def read_model_defaults(path: str | None) -> dict[str, Any]:
    """The ``"_scorekit"`` entry of ``path/model_index.json`` (checked), or ``{}``."""
    index = os.path.join(path, "model_index.json") if path else None
    if not index or not os.path.isfile(index):
        return {}
    with open(index) as f:
        defaults = json.load(f).get(PIPELINE_KEY) or {}
    check_model_defaults(defaults, index)
    return defaults


def check_model_defaults(defaults: dict[str, Any], where: str = "model defaults") -> None:
    """Raise a ValueError naming the key when a recorded default is malformed."""
    if not isinstance(defaults, dict):
        raise ValueError(f"{where}: {PIPELINE_KEY!r} must be a dict, got {defaults!r}")
    unknown = set(defaults) - {"guidance_scale", "likelihood"}
    if unknown:
        raise ValueError(f"{where}: unknown {PIPELINE_KEY!r} keys {sorted(unknown)}; expected guidance_scale, "
                         f"likelihood")
    scale = defaults.get("guidance_scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                              or not math.isfinite(scale)):
        raise ValueError(f"{where}: guidance_scale must be a finite number, got {scale!r}")
    likelihood = defaults.get("likelihood", {})
    if not isinstance(likelihood, dict) or set(likelihood) - {"num_levels", "data_range"}:
        raise ValueError(f"{where}: likelihood must be a dict with num_levels and / or data_range, got "
                         f"{likelihood!r}")


def write_model_defaults(path: str, defaults: dict[str, Any]) -> None:
    """Record ``defaults`` under ``"_scorekit"`` in ``path/model_index.json`` (nothing when empty)."""
    if not defaults:
        return
    index = os.path.join(path, "model_index.json")
    with open(index) as f:
        config = json.load(f)
    config[PIPELINE_KEY] = defaults
    with open(index, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
