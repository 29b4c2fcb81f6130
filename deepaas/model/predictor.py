"""Run a model's ``predict`` without blocking the event loop."""

from __future__ import annotations

from typing import Any

from deepaas.executor import ThreadExecutor
from deepaas.model.v2.wrapper import ModelWrapper

__all__ = ["Predictor"]


class Predictor:
    """Calls ``predict`` of one model: coroutines directly, the rest in a thread pool.

    Args:
        model: The model to call.
        workers: How many predictions may run at once.
    """

    def __init__(self, model: ModelWrapper, *, workers: int = 1) -> None:
        self.model = model
        self._executor = ThreadExecutor(workers, name=f"predict-{model.name}")

    async def predict(self, **kwargs: Any) -> Any:
        """Return the model's prediction for validated ``kwargs``."""
        if self.model.is_async("predict"):
            return await self.model.finish(
                "predict", self.model.call("predict", **kwargs)
            )
        return await self._executor.run(self.model.call, "predict", **kwargs)

    async def warm(self) -> None:
        """Run the model's ``warm()`` once, off the event loop."""
        await self._executor.run(self.model.warm)

    def close(self) -> None:
        """Release the worker threads."""
        self._executor.shutdown()
