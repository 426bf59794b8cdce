"""The concurrency limit and the prediction runner, driven directly on an event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mlobs.model import Prediction
from mlobs.runner import (
    ConcurrencyLimit,
    Overloaded,
    PredictionRunner,
    PredictionTimeout,
    predict_mode,
)
from tests.support.slow_model import AsyncSlowModel, InlineSlowModel, SlowModel, SlowRequest


def test_each_kind_of_predict_gets_its_mode():
    assert predict_mode(SlowModel(0)) == "thread"
    assert predict_mode(AsyncSlowModel(0)) == "async"
    assert predict_mode(InlineSlowModel(0)) == "inline"


async def _hold(limit: ConcurrencyLimit, order: list[int], n: int, gate: asyncio.Event) -> None:
    await limit.acquire()
    order.append(n)
    await gate.wait()
    limit.release()


def test_slots_are_given_first_come_first_served_and_the_line_is_bounded():
    async def scenario() -> tuple[list[int], int, int]:
        limit = ConcurrencyLimit(slots=2, queue=3)
        order: list[int] = []
        gate = asyncio.Event()
        holders = [asyncio.create_task(_hold(limit, order, n, gate)) for n in range(5)]
        await asyncio.sleep(0)
        running, queued = limit.running, limit.queued
        with pytest.raises(Overloaded):
            await limit.acquire()  # 2 running and 3 waiting: the sixth is refused at once
        gate.set()
        await asyncio.gather(*holders)
        assert (limit.running, limit.queued) == (0, 0)
        return order, running, queued

    order, running, queued = asyncio.run(scenario())
    assert (running, queued) == (2, 3)
    assert order == [0, 1, 2, 3, 4]


def test_a_waiter_that_gives_up_leaves_the_line_and_loses_no_slot():
    async def scenario() -> tuple[int, int]:
        limit = ConcurrencyLimit(slots=1, queue=2)
        await limit.acquire()
        waiting = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0)
        assert limit.queued == 1
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        after_cancel = limit.queued
        limit.release()
        return after_cancel, limit.running

    assert asyncio.run(scenario()) == (0, 0)


def test_a_slot_handed_to_a_waiter_cancelled_before_it_ran_is_passed_on():
    async def scenario() -> int:
        limit = ConcurrencyLimit(slots=1, queue=2)
        await limit.acquire()
        first = asyncio.create_task(limit.acquire())
        second = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0)
        limit.release()  # hands the slot to `first`...
        first.cancel()  # ...which is cancelled before it resumes
        await asyncio.gather(first, return_exceptions=True)
        await asyncio.wait_for(second, 1)  # so `second` gets it
        return limit.running

    assert asyncio.run(scenario()) == 1


class _Blocking(SlowModel):
    """A synchronous model that returns when the test says so."""

    def __init__(self) -> None:
        super().__init__(0)
        self.release = threading.Event()

    def predict(self, payload: SlowRequest) -> Prediction:
        self.release.wait(5)
        return Prediction(label="done", confidence=0.5)


def test_a_timed_out_thread_keeps_its_slot_until_it_returns():
    async def scenario() -> tuple[int, int]:
        model = _Blocking()
        runner = PredictionRunner(model, concurrency=1, queue=0, timeout=0.05)
        with pytest.raises(PredictionTimeout):
            await runner.run(SlowRequest(message="x"))
        held = runner.limit.running
        model.release.set()
        for _ in range(100):
            if runner.limit.running == 0:
                break
            await asyncio.sleep(0.01)
        runner.close()
        return held, runner.limit.running

    assert asyncio.run(scenario()) == (1, 0)


def test_an_async_predict_past_the_timeout_is_cancelled_and_frees_its_slot():
    async def scenario() -> int:
        runner = PredictionRunner(AsyncSlowModel(5), concurrency=1, queue=0, timeout=0.05)
        with pytest.raises(PredictionTimeout):
            await runner.run(SlowRequest(message="x"))
        return runner.limit.running

    assert asyncio.run(scenario()) == 0


@pytest.mark.parametrize("kind", [SlowModel, AsyncSlowModel, InlineSlowModel])
def test_every_mode_passes_the_model_error_on_and_frees_the_slot(kind):
    async def scenario() -> int:
        runner = PredictionRunner(kind(0), concurrency=1, queue=0, timeout=5)
        with pytest.raises(RuntimeError, match="the model failed"):
            await runner.run(SlowRequest(message="fail"))
        runner.close()
        return runner.limit.running

    assert asyncio.run(scenario()) == 0


class _FeatureStoreTimesOut(AsyncSlowModel):
    async def predict(self, payload: SlowRequest) -> Prediction:  # type: ignore[override]
        raise TimeoutError("the feature store did not answer")


def test_a_timeout_inside_the_model_is_the_models_error_not_the_servers_timeout():
    async def scenario() -> None:
        runner = PredictionRunner(_FeatureStoreTimesOut(0), concurrency=1, queue=0, timeout=5)
        with pytest.raises(TimeoutError, match="feature store"):
            await runner.run(SlowRequest(message="x"))

    asyncio.run(scenario())


def test_a_waiter_cancelled_and_dropped_by_a_release_before_it_resumes_ends_cancelled():
    """A timeout cancels a waiter; a prediction finishing in the same loop turn releases its
    slot and drops the cancelled waiter from the line before the waiter's task resumes."""

    async def scenario() -> tuple[object, int, int]:
        limit = ConcurrencyLimit(slots=1, queue=1)
        await limit.acquire()
        waiting = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0)
        waiting.cancel()
        limit.release()  # before `waiting` runs again
        [outcome] = await asyncio.gather(waiting, return_exceptions=True)
        return outcome, limit.running, limit.queued

    outcome, running, queued = asyncio.run(scenario())
    assert isinstance(outcome, asyncio.CancelledError), outcome
    assert (running, queued) == (0, 0)


class MeetingModel(SlowModel):
    """Each prediction waits until `parties` predictions run at once, and notes its thread."""

    def __init__(self, parties: int) -> None:
        super().__init__(0)
        self.everyone = threading.Barrier(parties, timeout=10)
        self.threads: set[str] = set()

    def predict(self, payload: SlowRequest) -> Prediction:
        self.threads.add(threading.current_thread().name)
        self.everyone.wait()  # BrokenBarrierError if they cannot all run at once
        return self._answer(payload)


def test_every_slot_of_a_synchronous_model_is_a_thread_of_its_own_named_for_py_spy():
    """MLOBS_PREDICT_CONCURRENCY=12 runs twelve predictions at once, more than the event loop's
    default pool (cores + 4) would; the threads carry a name that a py-spy dump or a traceback
    shows as the server's predictions."""
    model = MeetingModel(12)
    runner = PredictionRunner(model, concurrency=12, queue=0, timeout=30)

    async def scenario() -> list:
        return await asyncio.gather(*(runner.run(SlowRequest(message="x")) for _ in range(12)))

    try:
        assert len(asyncio.run(scenario())) == 12
    finally:
        runner.close()
    assert len(model.threads) == 12
    assert all(name.startswith("mlobs-predict_") for name in model.threads), model.threads


def _where_warm_up_ran(kind: type[SlowModel]) -> list[str]:
    """The threads in which `warm_up` ran the model's predict (to its end)."""
    ran: list[str] = []

    class Noting(kind):  # type: ignore[misc, valid-type]
        def _answer(self, payload: SlowRequest) -> Prediction:
            ran.append(threading.current_thread().name)
            return super()._answer(payload)

    model = Noting(0)
    runner = PredictionRunner(model, concurrency=2, queue=0, timeout=30)
    try:
        asyncio.run(runner.warm_up(model.example_input()))
    finally:
        runner.close()
    return ran


def test_the_warm_up_runs_one_prediction_where_the_mode_runs_them():
    """Before readiness, once: an async predict awaited and an inline one on the event loop's
    thread; a synchronous one in a prediction thread, off the loop."""
    loop_thread = threading.current_thread().name  # asyncio.run's loop runs in this thread
    assert _where_warm_up_ran(AsyncSlowModel) == [loop_thread]
    assert _where_warm_up_ran(InlineSlowModel) == [loop_thread]
    [thread] = _where_warm_up_ran(SlowModel)
    assert thread.startswith("mlobs-predict_"), thread
