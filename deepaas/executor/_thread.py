"""A bounded pool of threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable
from typing import Any

__all__ = ["ThreadExecutor"]


class ThreadExecutor:
    """A bounded pool of threads; calls beyond ``max_workers`` wait their turn.

    Right for code that releases the GIL (numpy, torch, onnxruntime) and for
    light models; a cancelled call stops waiting but cannot interrupt a thread.
    """

    def __init__(self, max_workers: int, *, name: str = "deepaas") -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self.max_workers = max_workers
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers, thread_name_prefix=name
        )

    async def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` in a worker thread and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, functools.partial(fn, *args, **kwargs)
        )

    def shutdown(self) -> None:
        """Stop accepting work; running calls finish in the background."""
        self._pool.shutdown(wait=False, cancel_futures=True)
