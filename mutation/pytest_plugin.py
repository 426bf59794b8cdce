"""pytest plugin for mutmut's runs (`-p mutation.pytest_plugin`, set in pyproject.toml).

Mutant runs: mutmut forks each mutant's run from the process that traced the suite, where the
test modules are already imported, so whatever they computed at import time or cached (the
rendered files of tests/support/generated.py, a spec loaded into a module constant) would come
from the unmutated code. The plugin drops the project's modules from sys.modules before pytest
loads them, so each run imports them again with its mutant active. Tests that took longer than
MLOBS_MUTATION_MAX_TEST_SECONDS (10) when traced are left out of mutant runs: the native stack's
alert tests (20-30 s each) would run in full for every surviving mutant of the server code, and
leaving them out can only lower the score.

Tracing run: the tests' functools caches are emptied before each test, so that every test that
reads a cached rendering is seen running the generators. mutmut records which functions a test
calls in its own process only, so the code a test runs in a child process (`python -m mlobs.serve`
under uvicorn, its SIGTERM drain) would have no tests and its mutants would never run. The child
processes load subprocess_hits/sitecustomize.py, which writes their hits to a file at exit, named
by the test that started them; they are added to mutmut's map at the end of the session.

Outside mutmut (`make test`) this plugin is not loaded."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import pytest

HITS_HOOK = Path(__file__).with_name("subprocess_hits")
# mutmut runs the tests from inside mutants/, where it keeps what it traced.
STATS_FILE = Path("mutmut-stats.json")
HITS_DIR_VARIABLE = "MLOBS_MUTATION_HITS_DIR"
TEST_VARIABLE = "MLOBS_MUTATION_TEST"


def _phase() -> str:
    # mutmut names the mutant under test here (module.function__mutmut_N); while tracing it
    # says "stats", and other words during its own checks.
    return os.environ.get("MUTANT_UNDER_TEST", "")


# Everything that imports mlobs and may compute with it at import time; mlobs too, for the
# constants its own modules derive from their functions.
PROJECT_PACKAGES = ("mlobs", "tests", "services", "native", "setup")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests() -> None:
    if "__mutmut_" not in _phase():
        return
    for name in [n for n in sys.modules if n.partition(".")[0] in PROJECT_PACKAGES]:
        del sys.modules[name]
    forget_inherited_asgi_event_loop()


_INHERITED_ASGI_LOOPS: list[contextlib.ExitStack] = []


def forget_inherited_asgi_event_loop() -> None:
    """Let schemathesis start its own ASGI event loop in this forked process.

    schemathesis runs every in-process app's lifespan on one event loop thread per process,
    started once and kept in module globals (schemathesis/python/asgi.py, 4.x: _PORTAL,
    _LIFESPANS). A mutant's run is forked from the process that imported the fuzz tests, where
    that thread runs; the fork has the globals but not the thread, so the next app's start-up
    waits for it forever and the mutant only counts after its timeout."""
    asgi = sys.modules.get("schemathesis.python.asgi")
    if asgi is None:
        return
    # The parent's loop must never be closed here (closing waits for its thread): kept alive.
    _INHERITED_ASGI_LOOPS.append(asgi._STACK)
    asgi._LOCK = threading.Lock()  # may have been held by the parent's thread at the fork
    asgi._STACK = contextlib.ExitStack()
    asgi._PORTAL = None
    asgi._LIFESPANS.clear()
    asgi._STARTUP_LOCKS.clear()


def pytest_collectreport(report: pytest.CollectReport) -> None:
    # A test module that fails to import under a mutant (it computes with the mutated function
    # at import time) kills the mutant. Left to pytest, -x then ends the session with "found no
    # collectors" for the remaining test ids, which mutmut's worker does not survive: the mutant
    # would only count after its 48 s timeout.
    if report.failed and "__mutmut_" in _phase():
        os._exit(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "__mutmut_" not in _phase() or not STATS_FILE.is_file():
        return
    limit = float(os.environ.get("MLOBS_MUTATION_MAX_TEST_SECONDS", "10"))
    durations = json.loads(STATS_FILE.read_text())["duration_by_test"]
    slow = [item for item in items if durations.get(item.nodeid, 0.0) > limit]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item not in slow]


def pytest_sessionstart() -> None:
    if _phase() != "stats":
        return
    os.environ[HITS_DIR_VARIABLE] = tempfile.mkdtemp(prefix="mutmut-hits-")
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HITS_HOOK), path]))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if _phase() != "stats":
        return
    os.environ[TEST_VARIABLE] = item.nodeid
    # A test that reads a cached rendering (tests/support/generated.py) runs the generators only
    # if it is the first: without a fresh cache, mutmut would map them to that test alone.
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] == "tests":
            for value in list(vars(module).values()):
                if callable(getattr(value, "cache_clear", None)):
                    value.cache_clear()


def pytest_sessionfinish() -> None:
    hits_dir = os.environ.get(HITS_DIR_VARIABLE)
    if _phase() != "stats" or not hits_dir:
        return
    from mutmut.state import state  # only tracing runs load this plugin with mutmut present

    for hits_file in Path(hits_dir).glob("*.json"):
        hits = json.loads(hits_file.read_text())
        for function in hits["functions"]:
            state().tests_by_mangled_function_name[function].add(hits["test"])
        hits_file.unlink()
    shutil.rmtree(hits_dir, ignore_errors=True)
