"""mutation/pytest_plugin.py in a mutant's run: what pytest does with the mutant's tests."""

import os
import subprocess
import sys

from tests.conftest import REPO


def test_a_test_module_that_fails_to_import_under_a_mutant_kills_it_at_once(tmp_path):
    # The module computes with the (mutated) code at import time and fails; a second test id of
    # the same module follows, as in mutmut's list of a function's tests.
    (tmp_path / "test_imports_badly.py").write_text(
        "VALUE = 1 / 0\n\n\ndef test_one():\n    pass\n\n\ndef test_two():\n    pass\n"
    )
    env = {**os.environ, "MUTANT_UNDER_TEST": "mlobs.spec.x_load_spec__mutmut_1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    pytest_args = ["-x", "-q", "-p", "no:cacheprovider", "-p", "mutation.pytest_plugin"]
    test_ids = ["test_imports_badly.py::test_one", "test_imports_badly.py::test_two"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *pytest_args, "--rootdir", str(tmp_path), *test_ids],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # 1: tests failed, a killed mutant. Without the plugin pytest answers 4 (a usage error:
    # "found no collectors" for test_two), which mutmut's worker only reports by timing out.
    assert done.returncode == 1, done.stdout + done.stderr


# A process that started schemathesis's ASGI event loop (as the fuzz tests do at import) forks,
# as mutmut forks each mutant's run; the child starts another app in-process.
FORKED_APP_START = """
import os, signal, sys
import schemathesis
from fastapi import FastAPI
from mutation.pytest_plugin import forget_inherited_asgi_event_loop

schemathesis.openapi.from_asgi("/openapi.json", FastAPI())
child = os.fork()
if child == 0:
    signal.alarm(20)  # a start-up that waits forever ends the child (SIGALRM), not the test
    if sys.argv[1] == "forget":
        forget_inherited_asgi_event_loop()
    schemathesis.openapi.from_asgi("/openapi.json", FastAPI())
    os._exit(0)
_, status = os.waitpid(child, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_forked_mutant_run_starts_in_process_apps_of_its_own(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", FORKED_APP_START, "forget"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
