"""The base of every inverse-problem method: a :class:`~scorekit.conditioning.base.Condition` over an
:class:`~scorekit.conditioning.linear.Observation` ``y = A x + sigma_y e``.

It checks, before any work (in ``__init__`` and ``bind``), that the operator fits the samples, that ``y`` has the
right shape and batch, and that a method which needs an SVD gets an operator with one. Methods:

- :class:`~scorekit.conditioning.replacement.Replacement` (projection hooks; Song et al. 2021, DDNM);
- :class:`~scorekit.conditioning.posterior_guidance.DPS` and ``PiGDM`` (likelihood-gradient score wrappers);
- :class:`DDRM` (Kawar et al. 2022): SVD-space updates in a sampler of their own, ``sampler="ddrm"``
  (``scorekit.samplers.ddrm``);
- :class:`TDS` (Wu et al. 2023) and :class:`MCGdiff` (Cardoso et al. 2024): particle samplers of their own,
  ``sampler="tds"`` / ``sampler="mcgdiff"`` (``scorekit.samplers.tds``, ``scorekit.samplers.mcgdiff``).

A method that runs as a sampler of its own is that sampler's ``condition`` in the registry: the observation (and the
method's own modelling settings, such as DDRM's ``eta`` or TDS's ``data_variance``) always travels in the condition
object, the sampler's options say only how the sampler runs (steps, particles, resampling, what it returns).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..sde import SDE
from ..utils import check_positive
from .base import Compose, Condition, refuse_inference_mode
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
    needs_autograd = False  # takes gradients through the score network (DPS, PiGDM, TDS)

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

    def check_grad_mode(self) -> None:
        """A RuntimeError, before any network call, when this method needs autograd but runs under
        ``torch.inference_mode()`` (which a local ``torch.enable_grad()`` cannot undo)."""
        if self.needs_autograd:
            refuse_inference_mode(self.method)

    def bind(self, sde: SDE, x_T: torch.Tensor, generator: torch.Generator | None) -> None:
        self.check_grad_mode()
        self.observation = self.observation_for(x_T)
        self._check_observation(self.observation)
        self.observation.check_samples(tuple(x_T.shape))
        self._sde = sde

    def check_run(self, condition: Condition, shape: tuple[int, ...], options) -> None:
        """Checks before any work when this condition is the problem of a sampler of its own (the registry's
        ``condition``: ``sample()`` calls it with the whole ``condition``, the samples' ``shape`` ``(B, ...)`` and
        the sampler's options): the observation fits the samples, and no other condition beside it has projection
        hooks, which such a sampler never calls (score wrappers, e.g. guidance, compose).

        Raises:
            ValueError: naming the mismatch.
            RuntimeError: a method that needs autograd under ``torch.inference_mode()``.
        """
        self.check_grad_mode()
        if self.observation is not None:
            self.observation.check_samples(tuple(shape))
        for other in condition.conditions if isinstance(condition, Compose) else [condition]:
            hooks = [h for h in ("project", "project_mean", "project_ode", "finalize")
                     if getattr(type(other), h) is not getattr(Condition, h)]
            if other is not self and hooks:
                raise ValueError(f"{self.method} runs as a sampler of its own, which calls no projection hook; a "
                                 f"condition with projection hooks ({type(other).__name__}.{hooks[0]}) cannot be "
                                 f"combined with it")

    def _bound_sde(self) -> SDE:
        if self._sde is None:
            raise RuntimeError(f"{type(self).__name__} must be bound first: pass it to scorekit.sample(condition=...)")
        return self._sde


class DDRM(InverseProblem):
    """DDRM (Kawar et al. 2022): denoising diffusion restoration in the SVD's coordinates, no network gradients.

    It runs as a sampler of its own, ``scorekit.sample(..., sampler="ddrm", condition=DDRM(observation))``
    (``scorekit.samplers.ddrm``), which reads this condition's observation and settings; ``sample()`` refuses it
    with any other sampler before any work (and its hooks raise where a loop outside ``sample()`` calls them).

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


class ParticleProblem(InverseProblem):
    """The problem of a particle sampler (``tds``, ``mcgdiff``): ``sample()`` runs ``K`` particles per sample,
    ``B * K`` rows (particle ``j`` of sample ``b`` at row ``b * K + j``), and the sampler weighs them against it.

    Its observation is checked against the ``B`` samples asked for (:meth:`check_run`, before any work); ``bind`` then
    sees the ``B * K`` particles. An operator that differs per sample cannot take the particles and is refused.
    """

    def check_run(self, condition: Condition, shape: tuple[int, ...], options) -> None:
        super().check_run(condition, shape, options)
        if self.observation is not None and self.observation.operator.batch_size is not None:
            raise ValueError(f"{self.method} runs B * K particles through the operator; a per-sample operator "
                             f"(batch_size={self.observation.operator.batch_size}) cannot take them: use one operator "
                             f"for every sample")

    def bind(self, sde: SDE, x_T: torch.Tensor, generator) -> None:
        self._sde = sde  # x_T: the B * K particles; the observation was checked against the B samples

    def _not_here(self, *args):
        raise ValueError(f"{self.method} runs as a sampler of its own: pass sampler={self.method.lower()!r} to "
                         f"scorekit.sample")

    project = project_mean = project_ode = _not_here


class TDS(ParticleProblem):
    """The twisted diffusion sampler's problem (Wu et al. 2023): what ``sampler="tds"`` conditions on
    (``scorekit.samplers.tds``), ``scorekit.sample(..., sampler="tds", condition=TDS(observation))``.

    Args:
        observation: ``y = A x + sigma_y e``, any operator (no SVD needed); twisted by the Gaussian
            ``p~_t(y | x_t) = N(y; A x0_hat, (sigma_y^2 + r_t^2) I)``.
        log_likelihood: instead of ``observation``, any differentiable ``log p(y | x0)``: ``(N, *event) -> (N,)`` over
            the ``N = B * K`` particles (rows sample-major: particle ``j`` of sample ``b`` at ``b * K + j``).
        data_variance: ``tau^2`` of a ΠGDM-style twist variance ``r_t^2 = tau^2 s_t^2 / (s_t^2 + tau^2)``,
            ``s_t = std_t / alpha_t`` (``None``: TDS's ``r_t = s_t``); with an observation only.

    Raises:
        ValueError / TypeError: neither or both of ``observation`` and ``log_likelihood``, a ``log_likelihood`` that is
            not callable, ``data_variance <= 0`` or without an observation.
    """

    method = "TDS"
    needs_autograd = True

    def __init__(self, observation: Observation | None = None, *, log_likelihood: Callable | None = None,
                 data_variance: float | None = None):
        if (observation is None) == (log_likelihood is None):
            raise ValueError("TDS needs exactly one of observation= (an Observation(operator, y, sigma_y)) or "
                             "log_likelihood= (a differentiable log p(y | x0) -> (B * K,))")
        if log_likelihood is not None and not callable(log_likelihood):
            raise TypeError(f"log_likelihood must be callable as log_likelihood(x0) -> (B * K,), got "
                            f"{type(log_likelihood).__name__}")
        super().__init__(observation)
        if data_variance is not None:
            check_positive("data_variance", data_variance)
            if observation is None:
                raise ValueError("data_variance shapes the Gaussian twist of an observation; a log_likelihood= is "
                                 "used as given")
        self.log_likelihood = log_likelihood
        self.data_variance = None if data_variance is None else float(data_variance)


class MCGdiff(ParticleProblem):
    """MCGdiff's problem (Cardoso et al. 2024): the linear-Gaussian observation ``sampler="mcgdiff"`` filters
    through the operator's SVD (``scorekit.samplers.mcgdiff``),
    ``scorekit.sample(..., sampler="mcgdiff", condition=MCGdiff(observation))``.

    Args:
        observation: ``y = A x + sigma_y e`` with an operator that has an SVD.
    """

    method = "MCGdiff"
    needs_svd = True

    def __init__(self, observation: Observation):
        self._check_observation(observation)  # None too: MCGdiff has no other way to learn the problem
        super().__init__(observation)
