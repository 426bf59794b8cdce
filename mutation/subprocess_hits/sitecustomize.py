"""Loaded at start-up by the child processes of mutmut's tracing run (see ../pytest_plugin.py):
at exit, write the mutated functions this process ran, with the test that started it."""

import atexit
import json
import os
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


if _HITS_DIR and os.environ.get("MUTANT_UNDER_TEST") == "stats":
    atexit.register(_write_hits)
    # multiprocessing's children (uvicorn's workers) leave through os._exit, past atexit.
    from multiprocessing import util

    util.Finalize(None, _write_hits, exitpriority=0)
