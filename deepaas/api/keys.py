"""Typed keys of the state kept on the application: the only shared state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from deepaas.config import Config
from deepaas.model.predictor import Predictor
from deepaas.model.v2.wrapper import ModelWrapper

if TYPE_CHECKING:
    from deepaas.api.args import BodyOptions, ModelArgs
    from deepaas.api.health import Health
    from deepaas.api.metrics import Metrics
    from deepaas.api.observe import Observer
    from deepaas.jobs import JobManager

__all__ = [
    "ARGSPECS",
    "BODY",
    "CONFIG",
    "HEALTH",
    "JOBS",
    "METRICS",
    "MODELS",
    "OBSERVER",
    "PREDICTORS",
    "SPECS",
]

CONFIG = web.AppKey("deepaas_config", Config)
MODELS: web.AppKey[Mapping[str, ModelWrapper]] = web.AppKey("deepaas_models")
JOBS: web.AppKey[JobManager] = web.AppKey("deepaas_jobs")
PREDICTORS: web.AppKey[Mapping[str, Predictor]] = web.AppKey("deepaas_predictors")
SPECS: web.AppKey[dict[str, dict[str, Any]]] = web.AppKey("deepaas_specs")
ARGSPECS: web.AppKey[Mapping[str, ModelArgs]] = web.AppKey("deepaas_argspecs")
BODY: web.AppKey[BodyOptions] = web.AppKey("deepaas_body")
HEALTH: web.AppKey[Health] = web.AppKey("deepaas_health")
METRICS: web.AppKey[Metrics] = web.AppKey("deepaas_metrics")
OBSERVER: web.AppKey[Observer] = web.AppKey("deepaas_observer")
