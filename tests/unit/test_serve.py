"""python -m mlobs.serve: numpy's BLAS gets one thread per process unless the user sets more."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mlobs.serve import BLAS_THREAD_VARIABLES

# Counts the threads of a process that imported numpy after the serving defaults were applied.
THREADS_AFTER_NUMPY = """
from mlobs.serve import single_threaded_blas
single_threaded_blas()
import numpy
print(open("/proc/self/status").read().split("Threads:")[1].split()[0])
"""


def _threads_after_numpy(**env: str) -> int:
    clean = {k: v for k, v in os.environ.items() if k not in BLAS_THREAD_VARIABLES}
    out = subprocess.run(
        [sys.executable, "-c", THREADS_AFTER_NUMPY],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(out.stdout)


def test_a_model_server_process_runs_numpy_on_one_thread():
    assert _threads_after_numpy() == 1


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS starts one thread per core")
def test_a_blas_thread_count_the_user_set_is_kept():
    assert _threads_after_numpy(OPENBLAS_NUM_THREADS="2") == 2
