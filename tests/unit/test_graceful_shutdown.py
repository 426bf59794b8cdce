"""Draining: how a server waits for its requests between SIGTERM and its exit (what it answers
meanwhile: tests/unit/test_fields_read_back.py; the signal itself, with real uvicorn:
tests/integration/test_slow_models.py and test_process_life.py)."""

from __future__ import annotations

import asyncio

from mlobs.logs import get_logger
from mlobs.shutdown import GracefulShutdown


def test_a_drain_waits_for_requests_in_flight_but_not_past_the_grace_period():
    async def scenario() -> tuple[bool, bool]:
        shutdown = GracefulShutdown(grace_seconds=5, log=get_logger())
        shutdown.active = 1
        drain = asyncio.create_task(shutdown.drained())
        await asyncio.sleep(0.2)
        still_waiting = not drain.done()
        shutdown.active = 0
        return still_waiting, await asyncio.wait_for(drain, 1)

    assert asyncio.run(scenario()) == (True, True)

    async def stuck() -> bool:
        shutdown = GracefulShutdown(grace_seconds=0.2, log=get_logger())
        shutdown.active = 1
        return await asyncio.wait_for(shutdown.drained(), 2)

    assert asyncio.run(stuck()) is False
