"""The base of every inverse-problem method: a :class:`~scorekit.conditioning.base.Condition` over an
:class:`~scorekit.conditioning.linear.Observation` ``y = A x + sigma_y e``.

It checks, before any work (in ``__init__`` and ``bind``), that the operator fits the samples, that ``y`` has the
right shape and batch, and that a method which needs an SVD gets an operator with one. Methods:

- :class:`~scorekit.conditioning.replacement.Replacement` (projection hooks; Song et al. 2021, DDNM);
- :class:`~scorekit.conditioning.posterior_guidance.DPS` and ``PiGDM`` (likelihood-gradient score wrappers);
- :class:`DDRM` (Kawar et al. 2022): SVD-space updates in a loop of their own, ``scorekit.samplers.ddrm.ddrm``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..sde import SDE
from ..utils import check_positive
from .base import Compose, Condition
from .linear import SVD, Observation


@dataclass
class Spectral:
    """An observation in the SVD's flat coordinates, for samples ``(B, D)``: ``ybar = U^T y / s``.

    ``s`` and ``support`` (``s > 0``) are ``(D,)`` or ``(B, D)``; ``ybar`` is ``(B, D)`` (0 off the support);
    ``sigma`` is ``sigma_y / s`` on the support (the noise std of ``ybar_i``) and ``inf`` off it.
    """

    svd: SVD
    s: torch.Tensor
    support: torch.Tensor
    ybar: torch.Tensor
    sigma: torch.Tensor


def spectral(observation: Observation, x: torch.Tensor) -> Spectral:
    """:class:`Spectral` of ``observation`` in ``x``'s dtype, device and batch (``x``: ``(B, *in_shape)``)."""
    svd = observation.operator.require_svd("spectral")
    s = svd.s_like(x)
    support, safe = s > 0, torch.where(s > 0, s, 1)
    ybar = torch.where(support, svd.U_adjoint(observation.y_like(x)) / safe, 0)
    sigma = torch.where(support, observation.sigma_y / safe, torch.inf)
    return Spectral(svd, s, support, ybar, sigma)


class InverseProblem(Condition):
    """A condition over ``observation``; validates it and the samples, keeps the bound SDE.

    Args:
        observation: the :class:`~scorekit.conditioning.linear.Observation`.

    Subclasses set ``method`` (the name errors use) and ``needs_svd``.
    """

    method = "inverse problem"
    needs_svd = False

    def __init__(self, observation: Observation | None):
        if observation is not None:
            self._check_observation(observation)
        self.observation = observation
        self._sde = None

    def _check_observation(self, observation) -> None:
        if not isinstance(observation, Observation):
            raise TypeError(f"observation must be a scorekit Observation(operator, y, sigma_y), got "
                            f"{type(observation).__name__}")
        if self.needs_svd:
            observation.operator.require_svd(self.method)

    def observation_for(self, x_T: torch.Tensor) -> Observation:
        """The observation for samples like ``x_T`` (subclasses that build it from the sample shape override)."""
        return self.observation

    def bind(self, sde: SDE, x_T: torch.Tensor, generator: torch.Generator | None) -> None:
        self.observation = self.observation_for(x_T)
        self._check_observation(self.observation)
        self.observation.check_samples(tuple(x_T.shape))
        self._sde = sde

    def _bound_sde(self) -> SDE:
        if self._sde is None:
            raise RuntimeError(f"{type(self).__name__} must be bound first: pass it to scorekit.sample(condition=...)")
        return self._sde


class DDRM(InverseProblem):
    """DDRM (Kawar et al. 2022): denoising diffusion restoration in the SVD's coordinates, no network gradients.

    It runs as a sampler of its own, ``scorekit.samplers.ddrm.ddrm`` (``sampler="ddrm"``), which reads this
    condition's observation and settings; with any other sampler its hooks raise.

    Args:
        observation: ``y = A x + sigma_y e`` with an operator that has an SVD.
        eta: noise of the unobserved coordinates and of the observed ones noisier than the step (the paper's eta,
            0.85 in its experiments), in ``[0, 1]``.
        eta_b: weight of the observation on the observed coordinates less noisy than the step (the paper's
            eta_b, 1), in ``[0, 1]``.
    """

    method = "DDRM"
    needs_svd = True

    def __init__(self, observation: Observation, eta: float = 0.85, eta_b: float = 1.0):
        super().__init__(observation)
        for name, value in (("eta", eta), ("eta_b", eta_b)):
            check_positive(name, value, allow_zero=True)
            if value > 1:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        self.eta, self.eta_b = float(eta), float(eta_b)

    def _not_here(self, *args):
        raise ValueError("DDRM runs as a sampler of its own: pass sampler='ddrm' to scorekit.sample (or use "
                         "Replacement, DPS or PiGDM as the condition of another sampler)")

    project = project_mean = project_ode = _not_here


def find_condition(condition: Condition, kind: type) -> Condition | None:
    """The one ``kind`` condition in ``condition`` (itself or inside a :class:`Compose`), or ``None``."""
    found = [c for c in (condition.conditions if isinstance(condition, Compose) else [condition])
             if isinstance(c, kind)]
    if len(found) > 1:
        raise ValueError(f"condition holds {len(found)} {kind.__name__} conditions; give one")
    return found[0] if found else None
