"""pytest plugin for mutmut's runs (`-p mutation.pytest_plugin`, set in pyproject.toml).

Mutant runs: the selected tests run fastest first. mutmut stops at the first failing test (-x),
so the quick tests kill most mutants before a slow one (the native-stack tests take 20-30 s) runs.

Tracing run: mutmut learns which tests call which function from hits recorded in its own process
only, so the code a test runs in a child process (`python -m mlobs.serve` under uvicorn, its
SIGTERM drain) would have no tests and its mutants would never run. The child processes load
subprocess_hits/sitecustomize.py, which writes their hits to a file at exit, named by the test
that started them; they are added to mutmut's map at the end of the session.

Outside mutmut (`make test`) this plugin is not loaded."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

# mutmut runs the tests from inside mutants/, where it keeps its statistics.
STATS_FILE = Path("mutmut-stats.json")
HITS_HOOK = Path(__file__).with_name("subprocess_hits")
HITS_DIR_VARIABLE = "MLOBS_MUTATION_HITS_DIR"
TEST_VARIABLE = "MLOBS_MUTATION_TEST"


def _phase() -> str:
    # mutmut names the mutant under test here (module.function__mutmut_N); while tracing it
    # says "stats", and other words during its own checks.
    return os.environ.get("MUTANT_UNDER_TEST", "")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if "__mutmut_" not in _phase() or not STATS_FILE.is_file():
        return
    durations: dict[str, float] = json.loads(STATS_FILE.read_text())["duration_by_test"]
    # Tests new since tracing go last: their cost is unknown.
    items.sort(key=lambda item: durations.get(item.nodeid, float("inf")))


def pytest_sessionstart() -> None:
    if _phase() != "stats":
        return
    os.environ[HITS_DIR_VARIABLE] = tempfile.mkdtemp(prefix="mutmut-hits-")
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HITS_HOOK), path]))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if _phase() == "stats":
        os.environ[TEST_VARIABLE] = item.nodeid


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
