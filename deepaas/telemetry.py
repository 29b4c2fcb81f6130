"""What the execution engine tells whoever measures it.

The engine (predictors, pools, batchers, the job manager) reports events through
a :class:`Telemetry` object it is given; the HTTP layer passes one that feeds its
metrics. Nothing here depends on a metrics library, so the lower layers stay free
of it, and the default, :data:`NO_TELEMETRY`, costs a method call and nothing else.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["NO_TELEMETRY", "NoTelemetry", "Telemetry"]


class Telemetry(Protocol):
    """Receives the execution engine's events.

    Every method must be cheap and must never raise: they are called on the hot
    path of every prediction.
    """

    def queue_wait(self, model: str, seconds: float) -> None:
        """A prediction of ``model`` waited ``seconds`` before it started."""

    def batch(self, model: str, size: int) -> None:
        """``model`` ran a batch of ``size`` predictions in one call."""

    def worker_restart(self, pool: str, reason: str) -> None:
        """A worker process of ``pool`` was replaced.

        ``reason`` is short text: ``"crashed"``, ``"timeout"``, ``"cancelled"``.
        """


class NoTelemetry:
    """A :class:`Telemetry` that discards everything."""

    def queue_wait(self, model: str, seconds: float) -> None:  # noqa: D102
        pass

    def batch(self, model: str, size: int) -> None:  # noqa: D102
        pass

    def worker_restart(self, pool: str, reason: str) -> None:  # noqa: D102
        pass


NO_TELEMETRY: Telemetry = NoTelemetry()
