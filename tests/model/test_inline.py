"""The ``auto`` executor: cheap plain-function models move onto the event loop."""

import asyncio
import threading
import time

import pytest

from deepaas.model import loading
from deepaas.model._inline import InlinePolicy
from deepaas.model.predictor import Predictor

CHEAP = 1e-6
THRESHOLD = 1e-3


class TestInlinePolicy:
    def test_promoted_after_a_record_of_cheap_calls(self):
        policy = InlinePolicy(THRESHOLD)
        for _ in range(63):
            policy.threaded(CHEAP)
        assert not policy.inline
        policy.threaded(CHEAP)
        assert policy.inline

    def test_one_slow_call_restarts_the_record(self):
        policy = InlinePolicy(THRESHOLD)
        for _ in range(63):
            policy.threaded(CHEAP)
        policy.threaded(THRESHOLD * 2)
        for _ in range(63):
            policy.threaded(CHEAP)
        assert not policy.inline
        policy.threaded(CHEAP)
        assert policy.inline

    def test_a_spike_demotes_and_the_next_record_is_longer(self):
        policy = InlinePolicy(THRESHOLD)
        for _ in range(64):
            policy.threaded(CHEAP)
        policy.ran_inline(THRESHOLD * 6)
        assert not policy.inline
        assert policy.demotions == 1
        for _ in range(255):
            policy.threaded(CHEAP)
        assert not policy.inline
        policy.threaded(CHEAP)
        assert policy.inline

    def test_a_drifting_average_demotes(self):
        policy = InlinePolicy(THRESHOLD)
        for _ in range(64):
            policy.threaded(CHEAP)
        # Each call is under the spike limit, but together they are too slow.
        for _ in range(100):
            if not policy.inline:
                break
            policy.ran_inline(THRESHOLD * 2)
        assert not policy.inline
        assert policy.demotions == 1

    def test_occasional_jitter_inline_is_tolerated(self):
        policy = InlinePolicy(THRESHOLD)
        for _ in range(64):
            policy.threaded(CHEAP)
        for i in range(1000):
            policy.ran_inline(THRESHOLD * 3 if i % 50 == 0 else CHEAP)
        assert policy.inline


class Recorder:
    """Notes the thread of each call and how many calls overlap."""

    def __init__(self, seconds=0.0):
        self.seconds = seconds
        self.threads = []
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def predict(self, n):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.threads.append(threading.current_thread().name)
            if self.seconds:
                time.sleep(self.seconds)
            return n
        finally:
            with self.lock:
                self.running -= 1


def _predictor(model, **kwargs):
    return Predictor(loading.wrap("recorder", model), **kwargs)


async def test_a_cheap_model_moves_onto_the_event_loop():
    model = Recorder()
    predictor = _predictor(model, executor="auto", inline_threshold=THRESHOLD)
    try:
        results = [await predictor.run({"n": i}) for i in range(100)]
        assert results == list(range(100))
        assert predictor.inline
        main = threading.current_thread().name
        assert model.threads[0] != main
        assert model.threads[-1] == main
    finally:
        await predictor.aclose()


async def test_a_slow_model_stays_in_its_threads():
    model = Recorder(seconds=0.002)
    predictor = _predictor(model, executor="auto", inline_threshold=THRESHOLD)
    try:
        for i in range(70):
            await predictor.run({"n": i})
        assert not predictor.inline
        assert threading.current_thread().name not in model.threads
    finally:
        await predictor.aclose()


@pytest.mark.parametrize(
    ("executor", "threshold"), [("thread", THRESHOLD), ("auto", 0.0)]
)
async def test_inline_calls_can_be_turned_off(executor, threshold):
    model = Recorder()
    predictor = _predictor(model, executor=executor, inline_threshold=threshold)
    try:
        for i in range(100):
            await predictor.run({"n": i})
        assert not predictor.inline
        assert threading.current_thread().name not in model.threads
    finally:
        await predictor.aclose()


async def test_calls_never_overlap_while_moving_onto_the_loop():
    """With one worker, an inline call waits for the calls still in the thread."""
    model = Recorder()
    predictor = _predictor(
        model, executor="auto", inline_threshold=THRESHOLD, workers=1
    )
    try:
        results = await asyncio.gather(*(predictor.run({"n": i}) for i in range(300)))
        assert results == list(range(300))
        assert predictor.inline
        assert model.most == 1
    finally:
        await predictor.aclose()


async def test_an_abandoned_call_is_not_run_inline():
    model = Recorder()
    predictor = _predictor(model, executor="auto", inline_threshold=THRESHOLD)
    try:
        for i in range(64):
            await predictor.run({"n": i})
        assert predictor.inline
        calls = len(model.threads)
        with pytest.raises(asyncio.CancelledError):
            await predictor.run({"n": 1}, abandoned=lambda: True)
        assert len(model.threads) == calls
    finally:
        await predictor.aclose()
