"""When a plain-function ``predict`` is cheap enough to call on the event loop.

Handing a call to a worker thread costs tens of microseconds of CPU and a GIL
hand-over each way: far more than a model that answers in a few microseconds
spends computing. The ``auto`` executor therefore starts every such model in its
threads, watches how long the calls take, and moves a model whose calls are
consistently cheap onto the event loop; the first sign that it is not (one slow
call, or a drift of the average) moves it back, and each such move back makes
the next promotion demand a longer record, so a model that is only sometimes
slow ends up staying in its threads.
"""

from __future__ import annotations

__all__ = ["InlinePolicy"]

# Consecutive cheap threaded calls needed before the first promotion.
_FIRST_RECORD = 64
# Each demotion multiplies the record needed for the next promotion.
_RECORD_GROWTH = 4
_RECORD_MAX = 1 << 22
# One inline call longer than this many thresholds demotes at once.
_SPIKE_FACTOR = 5
# Weight of the newest inline call in the running average.
_AVERAGE_WEIGHT = 1 / 16


class InlinePolicy:
    """Tracks one model's call durations and says whether to call it inline.

    Not thread-safe by design: :meth:`threaded` is called from worker threads,
    and a lost update only delays a promotion by a call.

    Args:
        threshold: Seconds; calls at or below it count as cheap.
    """

    __slots__ = ("_average", "_demotions", "_needed", "_record", "inline", "threshold")

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.inline = False
        self._record = 0
        self._needed = _FIRST_RECORD
        self._average = 0.0
        self._demotions = 0

    @property
    def demotions(self) -> int:
        """How many times the model was moved back to its threads."""
        return self._demotions

    def threaded(self, seconds: float) -> None:
        """Record a call that ran in a worker thread and took ``seconds``."""
        if seconds > self.threshold:
            self._record = 0
            return
        self._record += 1
        if self._record >= self._needed:
            self._average = seconds
            self.inline = True

    def ran_inline(self, seconds: float) -> None:
        """Record a call that ran on the event loop and took ``seconds``."""
        self._average += (seconds - self._average) * _AVERAGE_WEIGHT
        if seconds > self.threshold * _SPIKE_FACTOR or self._average > self.threshold:
            self.inline = False
            self._record = 0
            self._demotions += 1
            self._needed = min(self._needed * _RECORD_GROWTH, _RECORD_MAX)
