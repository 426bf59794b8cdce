"""Loaded at start-up by the child processes of mutmut's tracing run (see ../pytest_plugin.py):
at exit, write the mutated functions this process ran, with the test that started it."""

import atexit
import json
import os
import signal
import sys

_HITS_DIR = os.environ.get("MLOBS_MUTATION_HITS_DIR")
_TEST = os.environ.get("MLOBS_MUTATION_TEST")


def _write_hits() -> None:
    state_module = sys.modules.get("mutmut.state")  # imported by mutated code that ran
    if state_module is None or not _HITS_DIR or not _TEST:
        return
    functions = sorted(state_module.state()._stats)
    if functions:
        path = os.path.join(_HITS_DIR, f"{os.getpid()}.json")
        with open(path, "w") as out:
            json.dump({"test": _TEST, "functions": functions}, out)


def _terminated(signum: int, frame: object) -> None:
    # uvicorn's workers end by raising SIGTERM again once they have stopped, with the handler
    # they found at start-up: this one. Write the hits, then die of the signal as before.
    _write_hits()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


if _HITS_DIR and os.environ.get("MUTANT_UNDER_TEST") == "stats":
    atexit.register(_write_hits)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)
