"""Make diffusers' generic loader understand scorekit repos: ``DiffusionPipeline.from_pretrained("user/repo")``.

diffusers resolves a pipeline's ``_class_name`` with ``getattr(diffusers, name)`` and accepts a component library only
if it is in ``pipeline_loading_utils.LOADABLE_CLASSES`` (otherwise a Hub repo fails looking for
``<component>/<library>.py``, diffusers issue #5553). ``register()`` adds both, without importing diffusers at
``import scorekit`` (a post-import hook registers with a diffusers module when it is imported):

- the pipeline classes go into the lazy ``diffusers`` module's ``_objects`` table through a mapping that imports
  ``scorekit.pipelines`` on first lookup;
- ``"scorekit"`` (and the full module paths older saves wrote) go into ``LOADABLE_CLASSES`` as soon as
  ``diffusers.pipelines.pipeline_loading_utils`` is imported (a post-import hook when it is not imported yet).

Both are private diffusers internals; ``tests/test_hub_io.py`` pins them against the installed diffusers version.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

PIPELINE_CLASSES = ("ScoreSDEPipeline", "ScoreSDEClassConditionalPipeline", "ScoreSDEInpaintPipeline",
                    "ScoreSDEColorizationPipeline", "ScoreSDERestorationPipeline")
COMPONENT_LIBRARIES = ("scorekit", "scorekit.schedulers.scheduling_score_sde_pc",
                       "scorekit.schedulers.scheduling_score_sde_ode", "scorekit.models.time_classifier")
_LOADING_UTILS = "diffusers.pipelines.pipeline_loading_utils"
_METHODS = ["save_pretrained", "from_pretrained"]


class _LazyPipelines(dict):
    """diffusers' ``_objects`` table plus scorekit's pipeline classes, imported on first lookup."""

    def __contains__(self, name) -> bool:
        return super().__contains__(name) or name in PIPELINE_CLASSES

    def __getitem__(self, name):
        if not super().__contains__(name) and name in PIPELINE_CLASSES:
            self[name] = getattr(importlib.import_module("scorekit.pipelines"), name)
        return super().__getitem__(name)


def _register_libraries(module) -> None:
    for library in COMPONENT_LIBRARIES:
        module.LOADABLE_CLASSES.setdefault(library, {"ModelMixin": _METHODS, "SchedulerMixin": _METHODS})


def _register_pipelines(module) -> None:
    objects = getattr(module, "_objects", None)
    if objects is not None and not isinstance(objects, _LazyPipelines):
        module._objects = _LazyPipelines(objects)


_HOOKS = {"diffusers": _register_pipelines, _LOADING_UTILS: _register_libraries}


class _RegisteringLoader(importlib.abc.Loader):
    """Wraps a module's loader: runs it, then registers scorekit with the freshly imported module."""

    def __init__(self, loader, name: str):
        self._loader, self._name = loader, name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _HOOKS[self._name](sys.modules.get(self._name, module))  # diffusers replaces itself with a lazy module

    def __getattr__(self, name):  # get_filename, get_resource_reader, ... of the real loader
        return getattr(self._loader, name)


class _PostImportHook(importlib.abc.MetaPathFinder):
    """Registers with diffusers' modules right after they are imported, so ``import scorekit`` imports nothing of
    diffusers itself."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _HOOKS:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            if any(name not in sys.modules and name != fullname for name in _HOOKS):
                sys.meta_path.insert(0, self)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader, fullname)
        return spec


def register() -> None:
    """Register scorekit's pipelines and component libraries with diffusers' loader (idempotent; imports nothing of
    diffusers: modules not imported yet are registered by a post-import hook when they are)."""
    for name, hook in _HOOKS.items():
        if name in sys.modules:
            hook(sys.modules[name])
    pending = any(name not in sys.modules for name in _HOOKS)
    if pending and not any(isinstance(f, _PostImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportHook())
