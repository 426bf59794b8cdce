"""pytest plugin for mutmut's runs (`-p mutation.pytest_plugin`, set in pyproject.toml).

mutmut learns which tests call which function from hits recorded in its own process
only, so the code a test runs in a child process (`python -m mlobs.serve` under uvicorn, its
SIGTERM drain) would have no tests and its mutants would never run. The child processes load
subprocess_hits/sitecustomize.py, which writes their hits to a file at exit, named by the test
that started them; they are added to mutmut's map at the end of the session.

Outside mutmut (`make test`) this plugin is not loaded."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

HITS_HOOK = Path(__file__).with_name("subprocess_hits")
HITS_DIR_VARIABLE = "MLOBS_MUTATION_HITS_DIR"
TEST_VARIABLE = "MLOBS_MUTATION_TEST"


def _phase() -> str:
    # mutmut names the mutant under test here (module.function__mutmut_N); while tracing it
    # says "stats", and other words during its own checks.
    return os.environ.get("MUTANT_UNDER_TEST", "")


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
    shutil.rmtree(hits_dir, ignore_errors=True)
