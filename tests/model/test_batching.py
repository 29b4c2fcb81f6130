"""Dynamic batching in the Predictor: grouping, limits, errors, drops, telemetry.

The fixture models (deepaas_fixture_modern.BatchModel and its async twin) answer
each request with the size of the batch it ran in, and keep the sizes they saw.
"""

import asyncio
import time

import pytest
from deepaas_fixture_modern import AsyncBatchModel, BatchModel, StaticModel

from deepaas.exceptions import (
    InvalidModelResponse,
    ModelCallError,
    ModelMethodNotImplemented,
    Overloaded,
    WorkerCrashed,
)
from deepaas.model import loading
from deepaas.model._batching import Batcher
from deepaas.model.predictor import Predictor
from deepaas.model.v2.base import BaseModel


class Recorder:
    """A Telemetry that keeps what it is told."""

    def __init__(self):
        self.waits = []
        self.batches = []

    def queue_wait(self, model, seconds):
        self.waits.append((model, seconds))

    def batch(self, model, size):
        self.batches.append((model, size))

    def worker_restart(self, pool, reason):
        raise AssertionError("no worker process here")


@pytest.fixture(autouse=True)
def _fresh_batches():
    BatchModel.batches.clear()
    yield
    BatchModel.batches.clear()


def _predictor(model=BatchModel, **options):
    options.setdefault("max_batch_size", 8)
    return Predictor(loading.wrap("batch", model), **options)


def _args(text="", **changes):
    return {
        "text": text,
        "seconds": 0.0,
        "marker": "",
        "fail": False,
        "explode": False,
        "short": False,
        **changes,
    }


async def _busy_then(predictor, *calls, hold=0.5):
    """Occupy the only worker, queue ``calls`` behind it; return every outcome."""
    first = asyncio.ensure_future(predictor.run(_args("hold", seconds=hold)))
    await asyncio.sleep(0.1)
    queued = [asyncio.ensure_future(predictor.run(kw)) for kw in calls]
    return await asyncio.gather(first, *queued, return_exceptions=True)


async def test_calls_waiting_together_run_as_one_batch():
    predictor = _predictor()
    try:
        answers = await _busy_then(predictor, *(_args(f"t{i}") for i in range(5)))
    finally:
        await predictor.aclose()
    assert [a["text"] for a in answers] == ["hold", "t0", "t1", "t2", "t3", "t4"]
    assert [a["batch"] for a in answers] == [1, 5, 5, 5, 5, 5]
    assert BatchModel.batches == [1, 5]


async def test_a_lone_call_on_an_idle_model_does_not_wait_for_the_delay():
    predictor = _predictor(max_batch_delay=10.0)
    try:
        start = time.monotonic()
        answer = await predictor.run(_args("alone"))
        elapsed = time.monotonic() - start
    finally:
        await predictor.aclose()
    assert answer == {"text": "alone", "batch": 1, "pid": answer["pid"]}
    assert elapsed < 2.0


async def test_batches_never_exceed_max_size():
    predictor = _predictor(max_batch_size=3)
    try:
        answers = await _busy_then(predictor, *(_args(f"t{i}") for i in range(7)))
    finally:
        await predictor.aclose()
    assert BatchModel.batches == [1, 3, 3, 1]
    assert [a["text"] for a in answers[1:]] == [f"t{i}" for i in range(7)]


@pytest.mark.parametrize("delay", [0.0, 0.6])
async def test_delay_holds_calls_beside_a_running_batch(delay):
    # Two workers: one busy for 1.5 s, the other free. Calls arriving now wait the
    # delay for company (then run together), or start at once with no delay.
    predictor = _predictor(workers=2, max_batch_delay=delay)
    try:
        busy = asyncio.ensure_future(predictor.run(_args("busy", seconds=1.5)))
        await asyncio.sleep(0.2)
        start = time.monotonic()
        first = asyncio.ensure_future(predictor.run(_args("a")))
        await asyncio.sleep(0.2 if delay else 0.0)
        second = asyncio.ensure_future(predictor.run(_args("b")))
        a, b = await asyncio.gather(first, second)
        elapsed = time.monotonic() - start
        await busy
    finally:
        await predictor.aclose()
    if delay:
        assert (a["batch"], b["batch"]) == (2, 2)
        assert delay - 0.05 <= elapsed < 1.2  # not held until "busy" ends
    else:
        assert elapsed < 0.5
    assert BatchModel.batches[0] == 1


async def test_an_exception_element_fails_only_its_caller():
    predictor = _predictor()
    try:
        answers = await _busy_then(
            predictor, _args("a"), _args("b", fail=True), _args("c")
        )
    finally:
        await predictor.aclose()
    _, a, b, c = answers
    assert (a["text"], a["batch"], c["text"], c["batch"]) == ("a", 3, "c", 3)
    assert isinstance(b, ModelCallError)
    assert "predict() failed: ValueError: bad item b" in b.message


async def test_a_batch_that_raises_fails_every_caller_of_that_batch():
    predictor = _predictor()
    try:
        answers = await _busy_then(
            predictor, _args("a"), _args("b", explode=True), _args("c")
        )
        after = await predictor.run(_args("after"))
    finally:
        await predictor.aclose()
    assert answers[0]["text"] == "hold"
    for error in answers[1:]:
        assert isinstance(error, ModelCallError)
        assert "predict_batch() failed: RuntimeError: the whole batch" in error.message
    # Each caller gets its own exception object.
    assert len({id(e) for e in answers[1:]}) == 3
    assert after["text"] == "after"


async def test_a_wrong_number_of_results_fails_the_whole_batch():
    predictor = _predictor()
    try:
        answers = await _busy_then(predictor, _args("a"), _args("b", short=True))
    finally:
        await predictor.aclose()
    for error in answers[1:]:
        assert isinstance(error, InvalidModelResponse)
        assert "predict_batch() returned 1 results for 2 requests" in error.message


class NotAList:
    def predict(self, **kwargs):
        return {}

    def predict_batch(self, items):
        return {"one": 1}


class Unsupported:
    def predict_batch(self, items):
        return [NotImplementedError() for _ in items]


async def test_a_result_that_is_no_list_fails_with_a_clear_message():
    predictor = _predictor(NotAList)
    try:
        with pytest.raises(InvalidModelResponse, match="returned dict, not a list"):
            await predictor.run({})
    finally:
        await predictor.aclose()


async def test_a_not_implemented_element_is_a_501_error():
    predictor = _predictor(Unsupported)
    try:
        with pytest.raises(ModelMethodNotImplemented):
            await predictor.run({})
    finally:
        await predictor.aclose()


async def test_a_caller_gone_before_its_batch_starts_is_never_computed(tmp_path):
    gone = {"b": False}
    predictor = _predictor()
    marker = {name: tmp_path / name for name in "abc"}
    try:
        first = asyncio.ensure_future(predictor.run(_args("hold", seconds=0.5)))
        await asyncio.sleep(0.1)
        calls = [
            asyncio.ensure_future(
                predictor.run(
                    _args(name, marker=str(marker[name])),
                    abandoned=lambda name=name: gone.get(name, False),
                )
            )
            for name in "abc"
        ]
        await asyncio.sleep(0.1)
        gone["b"] = True  # the client of "b" hangs up while it waits
        calls[2].cancel()  # and "c" is cancelled (a timeout, a disconnect)
        answers = await asyncio.gather(first, *calls, return_exceptions=True)
    finally:
        await predictor.aclose()
    hold, a, b, c = answers
    assert hold["text"] == "hold"
    assert a["batch"] == 1
    assert isinstance(b, asyncio.CancelledError)
    assert isinstance(c, asyncio.CancelledError)
    assert marker["a"].exists()
    assert not marker["b"].exists()
    assert not marker["c"].exists()
    assert BatchModel.batches == [1, 1]


async def test_every_caller_gone_drops_the_batch():
    predictor = _predictor()
    try:
        first = asyncio.ensure_future(predictor.run(_args("hold", seconds=0.5)))
        await asyncio.sleep(0.1)
        doomed = asyncio.ensure_future(
            predictor.run(_args("x"), abandoned=lambda: True)
        )
        with pytest.raises(asyncio.CancelledError):
            await doomed
        await first
        assert (await predictor.run(_args("after")))["batch"] == 1
    finally:
        await predictor.aclose()
    assert BatchModel.batches == [1, 1]


async def test_a_full_queue_counts_the_calls_a_batch_can_take():
    # 1 worker x 4 per batch running, plus 2 waiting: the 7th call is refused.
    predictor = _predictor(max_batch_size=4, max_queue=2)
    try:
        first = asyncio.ensure_future(predictor.run(_args("hold", seconds=0.5)))
        await asyncio.sleep(0.1)
        queued = [asyncio.ensure_future(predictor.run(_args(str(i)))) for i in range(5)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await predictor.run(_args("refused"))
        answers = await asyncio.gather(first, *queued)
    finally:
        await predictor.aclose()
    assert BatchModel.batches == [1, 4, 1]
    assert len(answers) == 6


async def test_an_async_predict_batch_is_awaited():
    predictor = _predictor(AsyncBatchModel)
    try:
        answers = await _busy_then(predictor, *(_args(f"t{i}") for i in range(3)))
    finally:
        await predictor.aclose()
    assert [a["batch"] for a in answers] == [1, 3, 3, 3]


@pytest.mark.parametrize("size", [1, 8])
async def test_predict_is_called_without_batching(size):
    # Batching off (size 1), or a model without predict_batch.
    model = BatchModel if size == 1 else StaticModel
    predictor = _predictor(model, max_batch_size=size)
    try:
        answers = await asyncio.gather(
            *(
                predictor.run(_args(str(i)) if size == 1 else {"x": i, "y": 1})
                for i in range(3)
            )
        )
    finally:
        await predictor.aclose()
    assert BatchModel.batches == []
    if size == 1:
        assert {a["batch"] for a in answers} == {0}
    else:
        assert [a["sum"] for a in answers] == [1, 2, 3]


def test_the_base_model_stub_does_not_count_as_predict_batch():
    class Plain(BaseModel):
        def predict(self, **kwargs):
            return {}

    model = loading.wrap("plain", Plain)
    assert not model.has("predict_batch")
    assert _predictor(Plain)._batcher is None


async def test_telemetry_receives_batch_sizes_and_waits():
    telemetry = Recorder()
    predictor = _predictor(telemetry=telemetry)
    try:
        await _busy_then(predictor, *(_args(f"t{i}") for i in range(4)))
    finally:
        await predictor.aclose()
    assert telemetry.batches == [("batch", 1), ("batch", 4)]
    assert len(telemetry.waits) == 5
    assert {model for model, _ in telemetry.waits} == {"batch"}
    first, *queued = [seconds for _, seconds in telemetry.waits]
    assert 0 <= first < 0.3
    # Queued at 0.1 s behind a 0.5 s call.
    assert all(0.25 < s < 2.0 for s in queued)


@pytest.mark.parametrize("model", [StaticModel, BatchModel])
async def test_telemetry_receives_waits_without_batching(model):
    telemetry = Recorder()
    predictor = Predictor(loading.wrap("m", model), telemetry=telemetry)
    kwargs = {"x": 1, "y": 1} if model is StaticModel else _args(seconds=0.3)
    try:
        await asyncio.gather(*(predictor.run(kwargs) for _ in range(2)))
    finally:
        await predictor.aclose()
    assert telemetry.batches == []
    waits = sorted(seconds for _, seconds in telemetry.waits)
    assert len(waits) == 2
    assert waits[0] < 0.25
    if model is BatchModel:
        assert waits[1] >= 0.25  # the second waited for the first


async def test_callers_gone_when_a_worker_takes_the_batch_are_left_out():
    # The worker may take a batch later than it was formed (a thread still busy
    # with a timed-out call): whoever left meanwhile is not sent to the model.
    gone = set()
    sent = []

    async def runner(items, start):
        if len(items) > 1:
            gone.add("b")  # formed with b; b leaves before a worker takes it
        if start():
            raise asyncio.CancelledError
        sent.append([item["text"] for item in items])
        return [item["text"].upper() for item in items]

    batcher = Batcher("m", runner, max_size=4, max_delay=0.0)
    first = asyncio.ensure_future(batcher.submit({"text": "first"}))
    calls = [
        asyncio.ensure_future(
            batcher.submit({"text": t}, abandoned=lambda t=t: t in gone)
        )
        for t in "abc"
    ]
    answers = await asyncio.gather(first, *calls, return_exceptions=True)
    assert sent == [["first"], ["a", "c"]]
    assert answers[0] == "FIRST"
    assert (answers[1], answers[3]) == ("A", "C")
    assert isinstance(answers[2], asyncio.CancelledError)


async def test_closing_cancels_waiting_calls_and_refuses_new_ones():
    release = asyncio.Event()

    async def runner(items, start):
        start()
        await release.wait()
        return [None] * len(items)

    batcher = Batcher("m", runner, max_size=2, max_delay=0.0)
    running = asyncio.ensure_future(batcher.submit({}))
    await asyncio.sleep(0)
    waiting = asyncio.ensure_future(batcher.submit({}))
    await asyncio.sleep(0)
    await batcher.aclose()
    for call in (running, waiting):
        with pytest.raises(asyncio.CancelledError):
            await call
    with pytest.raises(WorkerCrashed, match="shut down"):
        await batcher.submit({})
