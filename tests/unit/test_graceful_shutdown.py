"""Draining: how a server waits for its requests between SIGTERM and its exit (what it answers
meanwhile: tests/unit/test_fields_read_back.py; the signal itself, with real uvicorn:
tests/integration/test_slow_models.py and test_process_life.py)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest

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


# A process whose server installed no handler of its own: SIGTERM's default action (stop) or an
# ignored SIGTERM must stay what it was once the drain is over.
WITHOUT_SERVER_HANDLER = """
import asyncio, os, signal, sys
from mlobs.logs import get_logger
from mlobs.shutdown import GracefulShutdown

async def main():
    shutdown = GracefulShutdown(grace_seconds=1, log=get_logger())
    shutdown.install()
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(3)  # the drain ends at once: nothing is in flight
    print("still running", flush=True)

if sys.argv[1] == "ignored":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
asyncio.run(main())
"""


@pytest.mark.parametrize(
    ("before", "returncode", "runs_on"),
    [("default", -signal.SIGTERM, False), ("ignored", 0, True)],
)
def test_after_the_drain_sigterm_does_what_it_did_before(before, returncode, runs_on):
    """Default: the process stops by SIGTERM (its parent sees the signal); ignored: it runs on."""
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_SERVER_HANDLER, before],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, "still running" in done.stdout) == (returncode, runs_on), done.stderr
    assert "drained" in done.stdout  # the drain ran first
