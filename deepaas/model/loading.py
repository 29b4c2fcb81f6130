"""Find models in the ``deepaas.v2.model`` entry-point namespace and wrap them."""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Sequence
from typing import Any

import stevedore

from deepaas.exceptions import (
    DeepaasError,
    ModelLoadError,
    ModelNotFound,
    NoModelsAvailable,
)
from deepaas.model import _compat
from deepaas.model.v2.base import BaseModel
from deepaas.model.v2.wrapper import ModelWrapper

__all__ = ["NAMESPACE", "available_models", "instantiate", "load_models", "resolve"]

NAMESPACE = "deepaas.v2.model"
_CONTRACT = (
    "get_metadata",
    "warm",
    "get_predict_args",
    "predict",
    "predict_batch",
    "get_train_args",
    "train",
)
_LOG = logging.getLogger(__name__)


def available_models() -> list[str]:
    """Names of every model installed in the namespace, without importing any."""
    return sorted({ep.name for ep in _entry_points()})


def load_models(names: Sequence[str] = ()) -> dict[str, ModelWrapper]:
    """Import and wrap the models named, or every installed one when none is named.

    Raises:
        ModelNotFound: A named model is not installed.
        ModelLoadError: An entry point failed to import or to instantiate; the
            message names the entry point and the cause.
        NoModelsAvailable: Nothing is installed and no name was given.
    """
    _compat.install()
    installed = {ep.name: ep for ep in _entry_points()}
    if names:
        for name in names:
            if name not in installed:
                raise ModelNotFound(name)
        chosen = list(names)
    else:
        chosen = sorted(installed)
        if not chosen:
            raise NoModelsAvailable(
                f"No models are installed in the '{NAMESPACE}' entry-point namespace"
            )
    manager = stevedore.NamedExtensionManager(
        NAMESPACE,
        names=chosen,
        name_order=True,
        on_load_failure_callback=_raise_load_error,
    )
    models: dict[str, ModelWrapper] = {}
    for extension in manager:
        name = extension.name
        models[name] = wrap(name, extension.plugin, target=extension.entry_point.value)
        _LOG.info("Loaded model %r from %s", name, extension.entry_point.value)
    return models


def _raise_load_error(_manager: Any, entry_point: Any, exc: BaseException) -> None:
    # stevedore's default is to log and skip: a model missing a dependency would
    # then look "not found". Fail loudly, naming the entry point and the cause.
    raise ModelLoadError(
        entry_point.name, f"{entry_point.value}: {type(exc).__name__}: {exc}"
    ) from exc


def wrap(name: str, plugin: Any, *, target: str | None = None) -> ModelWrapper:
    """Wrap a loaded plugin (module, class or instance) as a :class:`ModelWrapper`.

    Raises:
        ModelLoadError: A class could not be instantiated, or declarations are
            invalid.
    """
    try:
        return ModelWrapper(
            name, instantiate(plugin), target=target or _target_of(plugin)
        )
    except ModelLoadError as exc:
        if exc.args[1] == name:
            raise
        # instantiate() names the class; the user knows the entry-point name.
        raise ModelLoadError(name, exc.args[2]) from exc.__cause__
    except DeepaasError as exc:
        raise ModelLoadError(name, exc.message) from exc
    except Exception as exc:
        raise ModelLoadError(name, f"{type(exc).__name__}: {exc}") from exc


def instantiate(plugin: Any) -> Any:
    """Turn an entry point's object into the object whose methods are called.

    DEEPaaS 2.6.0 used a class itself, so only static methods worked; its docs
    describe instance methods. A class is therefore instantiated with no arguments,
    unless every contract method it defines is static (or a classmethod), in which
    case it is used as it is, exactly as 2.x did.
    """
    if not inspect.isclass(plugin):
        return plugin
    defined = [
        inspect.getattr_static(plugin, m)
        for m in _CONTRACT
        if hasattr(plugin, m) and not _inherited_default(plugin, m)
    ]
    if defined and all(isinstance(d, (staticmethod, classmethod)) for d in defined):
        return plugin
    try:
        return plugin()
    except Exception as exc:
        raise ModelLoadError(
            plugin.__qualname__,
            f"class {plugin.__module__}.{plugin.__qualname__} cannot be instantiated "
            f"without arguments: {type(exc).__name__}: {exc}",
        ) from exc


def _inherited_default(cls: type, method: str) -> bool:
    owner = next((k for k in cls.__mro__ if method in vars(k)), None)
    return owner is BaseModel


def _target_of(plugin: Any) -> str | None:
    """An import target that re-creates ``plugin`` in another process, if any."""
    if inspect.ismodule(plugin):
        return plugin.__name__
    cls = plugin if inspect.isclass(plugin) else type(plugin)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        return None
    return f"{cls.__module__}:{cls.__qualname__}"


def resolve(target: str) -> Any:
    """Import ``"module"`` or ``"module:attr.path"`` and return the object."""
    _compat.install()
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name.strip())
    for part in filter(None, attr.strip().split(".")):
        obj = getattr(obj, part)
    return obj


def _entry_points() -> list[Any]:
    # Named with no names: stevedore discovers the entry points but imports none.
    manager: Any = stevedore.NamedExtensionManager(NAMESPACE, names=[])
    return list(manager.list_entry_points())
