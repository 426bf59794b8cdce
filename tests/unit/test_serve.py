"""python -m mlobs.serve: its defaults, its multiprocess directory, loading the app, and a stop.

mlobs.serve.main runs here in the test's own process, in its main thread (uvicorn listens for
signals only there), on a free loopback port; a helper thread talks to the server and ends it
with SIGTERM, as Docker or Kubernetes would. Child processes are left to
tests/integration/test_process_life.py, and so are several workers, except for what happens
before any worker starts.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import pytest
import uvicorn

from mlobs.model import Prediction
from mlobs.serve import (
    BLAS_THREAD_VARIABLES,
    load_app,
    main,
    parse_arguments,
    prepare_multiprocess_dir,
    single_threaded_blas,
)
from mlobs.server import create_app
from native.processes import free_port
from tests.support.http import log_events, sample
from tests.support.slow_model import SlowModel, SlowRequest
from tests.support.waiting import wait_for

MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"
THIS = "tests.unit.test_serve"
STARTUP_FAILURE = 3  # uvicorn's exit status for "the app cannot start": its supervisor gives up
LOAD_ERROR = "model weights not found: /models/held/weights.bin"
START_SECONDS = 60.0  # a start on the busy 2-core test machine; a healthy one takes 1-3 s
# How long a held prediction may keep a stopping server before the test lets it finish (so that
# a server that would wait for it forever ends, and the test fails instead of hanging). A server
# that works stops within the drain (0.5 s here) and mlobs.serve.CLOSE_SECONDS (3 s).
HOLD_LIMIT_SECONDS = 12.0
# How long a server may then still ignore SIGTERM before the test stops it and fails.
STOP_LIMIT_SECONDS = 5.0

# --- numpy's BLAS gets one thread per process unless the user sets more ------------------------

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


def test_each_blas_library_is_told_one_thread_unless_the_user_said_otherwise(monkeypatch):
    # OpenBLAS, OpenMP and MKL each read their own variable; numpy may be built on any of them.
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    single_threaded_blas()
    assert {n: os.environ[n] for n in BLAS_THREAD_VARIABLES} == {
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "4",
        "MKL_NUM_THREADS": "1",
    }


# --- PROMETHEUS_MULTIPROC_DIR: clean before any worker writes to it ----------------------------


@pytest.fixture
def no_multiproc_dir(monkeypatch, tmp_path) -> Path:
    """PROMETHEUS_MULTIPROC_DIR unset (restored after the test); temporary directories are made
    under the returned directory."""
    monkeypatch.setenv(MULTIPROC, "placeholder")  # so that monkeypatch restores what was there
    monkeypatch.delenv(MULTIPROC)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    return temporary


def _stale_directory(path: Path) -> Path:
    """A multiprocess directory as an earlier run left it: its counts would add to the new ones."""
    path.mkdir(parents=True)
    (path / "counter_4242.db").write_bytes(b"old counts")
    return path


def test_a_stale_multiprocess_directory_is_emptied_before_several_workers_start(
    monkeypatch, tmp_path
):
    directory = _stale_directory(tmp_path / "prom")
    monkeypatch.setenv(MULTIPROC, str(directory))
    prepare_multiprocess_dir(2)
    assert os.environ[MULTIPROC] == str(directory)
    assert directory.is_dir() and list(directory.iterdir()) == []


def test_a_multiprocess_directory_set_for_one_worker_is_emptied_too(monkeypatch, tmp_path):
    # prometheus_client goes multiprocess whenever the variable is set, whatever the worker count.
    directory = _stale_directory(tmp_path / "prom")
    monkeypatch.setenv(MULTIPROC, str(directory))
    prepare_multiprocess_dir(1)
    assert directory.is_dir() and list(directory.iterdir()) == []


def test_a_multiprocess_directory_that_does_not_exist_yet_is_created(monkeypatch, tmp_path):
    directory = tmp_path / "run" / "mlobs" / "prom"
    monkeypatch.setenv(MULTIPROC, str(directory))
    prepare_multiprocess_dir(2)
    assert directory.is_dir() and list(directory.iterdir()) == []


def test_several_workers_without_a_directory_get_a_new_empty_temporary_one(no_multiproc_dir):
    prepare_multiprocess_dir(2)
    made = Path(os.environ[MULTIPROC])
    # Named so that an operator can tell what left it in /tmp.
    assert made.parent == no_multiproc_dir and made.name.startswith("mlobs-prom-")
    assert made.is_dir() and list(made.iterdir()) == []


def test_one_worker_without_a_directory_stays_single_process(no_multiproc_dir):
    prepare_multiprocess_dir(1)
    assert MULTIPROC not in os.environ
    assert list(no_multiproc_dir.iterdir()) == []


# --- load_app: what uvicorn calls in each worker ------------------------------------------------

BUILT: list[str] = []  # the apps this module built, in order
HELD = threading.Event()  # a "hold" prediction waits for this


class HeldModel(SlowModel):
    """Answers at once, except "hold", which waits until the test sets HELD."""

    def predict(self, payload: SlowRequest) -> Prediction:
        if payload.message == "hold":
            HELD.wait(timeout=120)
        return self._answer(payload)


def __getattr__(name: str) -> Any:
    # The apps main() is asked to serve, built when load_app asks, like a user's app module.
    if name == "app":
        BUILT.append(name)
        return create_app(HeldModel(0))
    if name == "stopped_while_loading":
        BUILT.append(name)
        os.kill(os.getpid(), signal.SIGTERM)  # a stop (a rolling deploy) while the model loads
        return create_app(HeldModel(0))
    if name == "broken_app":
        BUILT.append(name)
        raise FileNotFoundError(LOAD_ERROR)
    raise AttributeError(name)


READY_MARKER = object()


@pytest.fixture
def uvicorn_errors(caplog, monkeypatch) -> Iterator[pytest.LogCaptureFixture]:
    """caplog with uvicorn's error logger's records, each once, whether or not uvicorn's logging
    config (which keeps them from the root logger) has been applied in this process."""
    logger = logging.getLogger("uvicorn.error")
    monkeypatch.setattr(logger, "propagate", False)
    logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


def test_load_app_gives_the_app_named_in_mlobs_app(monkeypatch):
    monkeypatch.setenv("MLOBS_APP", f"{THIS}:READY_MARKER")
    assert load_app() is READY_MARKER


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("broken_app", f"FileNotFoundError: {LOAD_ERROR}"),
        ("no_such_app", 'Attribute "no_such_app" not found in module "tests.unit.test_serve"'),
    ],
)
def test_an_app_that_cannot_load_ends_the_worker_with_startup_failure_and_says_why(
    monkeypatch, uvicorn_errors, target, reason
):
    """Exit status 3 tells uvicorn's supervisor not to start the worker again, forever; the log
    line names the app and the traceback says what went wrong."""
    monkeypatch.setenv("MLOBS_APP", f"{THIS}:{target}")
    with pytest.raises(SystemExit) as exited:
        load_app()
    assert exited.value.code == STARTUP_FAILURE
    [record] = [r for r in uvicorn_errors.records if r.name == "uvicorn.error"]
    assert (record.levelname, record.getMessage()) == ("ERROR", f"cannot load {THIS}:{target}")
    assert record.exc_text is not None and reason in record.exc_text.splitlines()[-1]


# --- main: the server it runs, and how that ends -------------------------------------------------

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


# The README's variables of `python -m mlobs.serve`.
ADDRESS_VARIABLES = ("MLOBS_HOST", "MLOBS_PORT", "MLOBS_WORKERS")


@pytest.fixture
def serving_env(monkeypatch, tmp_path, no_multiproc_dir) -> Iterator[Path]:
    """A clean environment for main(): the log file in tmp_path (returned), no MLOBS_HOST, PORT or
    WORKERS, a short drain; uvicorn's logging and the SIGTERM handler are put back afterwards."""
    for name in (*ADDRESS_VARIABLES, "MLOBS_APP"):
        monkeypatch.delenv(name, raising=False)
    log_file = tmp_path / "inference.log"
    monkeypatch.setenv("MLOBS_LOG_FILE", str(log_file))
    monkeypatch.setenv("MLOBS_SHUTDOWN_GRACE_SECONDS", "0.5")
    monkeypatch.setenv("MLOBS_PREDICT_TIMEOUT_SECONDS", "60")  # a held prediction is not cut
    saved = [
        (logger, list(logger.handlers), logger.level, logger.propagate)
        for logger in map(logging.getLogger, UVICORN_LOGGERS)
    ]
    previous_sigterm = signal.getsignal(signal.SIGTERM)
    BUILT.clear()
    HELD.clear()
    try:
        yield log_file
    finally:
        HELD.set()  # a held prediction's thread ends
        signal.signal(signal.SIGTERM, previous_sigterm)
        for logger, handlers, level, propagate in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate


def _late_sigterm(sig: int, frame: FrameType | None) -> None:
    """A SIGTERM that reaches this process once main() has returned is ignored."""


def _force_uvicorn_exit() -> None:
    """Make every uvicorn server of this process exit now, as a second Ctrl-C would: a server
    whose SIGTERM handling is broken fails its test instead of hanging the test run."""
    for server in [o for o in gc.get_objects() if isinstance(o, uvicorn.Server)]:
        server.should_exit = server.force_exit = True


def _serve_here(argv: list[str], url: str, during: Callable[[str], None]) -> object:
    """main(argv) in this thread, `during(url)` in another once /readyz answers 200, then SIGTERM
    to this process. Returns main's exit status (its SystemExit code), or "returned" if it
    returned without one. A failure of `during` fails the test after main has ended."""
    returned = threading.Event()
    failures: list[BaseException] = []

    def ready() -> bool:
        return returned.is_set() or httpx.get(f"{url}/readyz", timeout=5).status_code == 200

    def drive() -> None:
        try:
            wait_for("the server to be ready", ready, timeout=START_SECONDS, every=0.1)
            if not returned.is_set():
                during(url)
        except BaseException as exc:  # pytest.fail raises a BaseException
            failures.append(exc)
        finally:
            if not returned.is_set():
                os.kill(os.getpid(), signal.SIGTERM)
            if not returned.wait(HOLD_LIMIT_SECONDS):
                HELD.set()  # the server waits for a held prediction: let it end
                if not returned.wait(STOP_LIMIT_SECONDS):
                    waited = HOLD_LIMIT_SECONDS + STOP_LIMIT_SECONDS
                    failures.append(AssertionError(f"the server ignored SIGTERM for {waited:g} s"))
                    _force_uvicorn_exit()

    signal.signal(signal.SIGTERM, _late_sigterm)
    driver = threading.Thread(target=drive, name="drive-server")
    driver.start()
    status: object = "returned"
    try:
        main(argv)
    except SystemExit as exit_:
        status = exit_.code
    finally:
        signal.signal(signal.SIGTERM, _late_sigterm)
        returned.set()
        driver.join(timeout=HOLD_LIMIT_SECONDS + START_SECONDS)
    if failures:
        raise failures[0]
    return status


def test_main_serves_on_mlobs_host_and_port_without_an_access_log_and_exits_0_on_sigterm(
    serving_env, monkeypatch, capsys
):
    """The README's MLOBS_HOST and MLOBS_PORT choose the address; the JSON inference line
    replaces uvicorn's text access log; a graceful stop by SIGTERM is exit status 0."""
    port = free_port()
    # Any 127.x.y.z is this machine: one other than the default shows the variable was read.
    monkeypatch.setenv("MLOBS_HOST", "127.0.0.2")
    monkeypatch.setenv("MLOBS_PORT", str(port))
    answers: list[httpx.Response] = []

    def predict(url: str) -> None:
        answers.append(httpx.post(f"{url}/predict", json={"message": "hello"}, timeout=30))

    status = _serve_here([f"{THIS}:app"], f"http://127.0.0.2:{port}", predict)
    assert status == 0
    assert [a.status_code for a in answers] == [200]
    out, err = capsys.readouterr()
    assert f"Uvicorn running on http://127.0.0.2:{port}" in err
    assert "WARNING" not in err, err  # e.g. uvicorn guessing that load_app is a factory
    assert '"POST /predict HTTP/1.1"' not in out + err
    [event] = log_events(serving_env)
    assert (event["request_id"], event["status"]) == (answers[0].headers["x-request-id"], "success")
    assert BUILT == ["app"]


def test_main_without_settings_serves_on_127_0_0_1_and_bounds_a_stuck_prediction(
    serving_env, monkeypatch, capsys
):
    """Loopback by default, also when MLOBS_HOST is set but blank (compose passes an unset
    variable as an empty one; an empty host would bind every interface). After the drain
    (MLOBS_SHUTDOWN_GRACE_SECONDS) a prediction still running is cut off within
    mlobs.serve.CLOSE_SECONDS, so a stuck model cannot keep a stopping server forever; its caller
    is told to retry elsewhere, as new predictions are, and that stop is still a clean one
    (status 0)."""
    for name in ADDRESS_VARIABLES:
        monkeypatch.setenv(name, " ")
    port = free_port()
    held: list[httpx.Response | httpx.TransportError] = []

    def post(url: str) -> None:
        try:
            held.append(httpx.post(f"{url}/predict", json={"message": "hold"}, timeout=60))
        except httpx.TransportError as exc:
            held.append(exc)

    clients: list[threading.Thread] = []

    def hold(url: str) -> None:
        clients.append(threading.Thread(target=post, args=(url,), name="held-client"))
        clients[0].start()
        wait_for(
            "the held prediction to run",
            lambda: _running(httpx.get(f"{url}/metrics", timeout=5).text) == 1,
            timeout=30,
            every=0.1,
        )

    status = _serve_here([f"{THIS}:app", "--port", str(port)], f"http://127.0.0.1:{port}", hold)
    clients[0].join(timeout=90)
    assert status == 0
    [answer] = held
    # Not the model's answer, which would come only once the test lets the prediction end.
    assert isinstance(answer, httpx.Response), answer
    assert (answer.status_code, answer.headers["retry-after"]) == (503, "1")
    assert answer.json()["error"] == "shutting_down"
    err = capsys.readouterr().err
    assert f"Uvicorn running on http://127.0.0.1:{port}" in err
    assert "Exception in ASGI application" not in err and "Traceback" not in err, err
    [event] = log_events(serving_env)
    assert (event["request_id"], event["status"], event["error_type"]) == (
        answer.headers["x-request-id"],
        "shed",
        "shutting_down",
    )
    # The operator reads that the drain gave up, after how long, and on how many predictions.
    [over] = log_events(serving_env, "grace_period_over")
    assert (over["level"], over["grace_seconds"], over["in_flight"]) == ("warning", 0.5, 1)


# (environment, command line) -> (host, port, workers): the README's variables are the defaults
# of the options; blank is unset.
ADDRESSES = {
    "defaults": ({}, [], ("127.0.0.1", 8080, 1)),
    "from the environment": (
        {"MLOBS_HOST": "127.0.0.2", "MLOBS_PORT": "9000", "MLOBS_WORKERS": "3"},
        [],
        ("127.0.0.2", 9000, 3),
    ),
    "the command line wins": (
        {"MLOBS_HOST": "127.0.0.2", "MLOBS_PORT": "9000", "MLOBS_WORKERS": "3"},
        ["--host", "127.0.0.3", "--port", "9001", "--workers", "2"],
        ("127.0.0.3", 9001, 2),
    ),
    "blank is unset": (
        {"MLOBS_HOST": "", "MLOBS_PORT": " ", "MLOBS_WORKERS": "\t"},
        [],
        ("127.0.0.1", 8080, 1),
    ),
}


@pytest.mark.parametrize(("env", "options", "expected"), ADDRESSES.values(), ids=ADDRESSES)
def test_the_address_and_workers_come_from_the_command_line_then_the_environment(
    monkeypatch, env, options, expected
):
    for name in ADDRESS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = parse_arguments(["services.chatbot.app:app", *options])
    assert (args.app, args.host, args.port, args.workers) == ("services.chatbot.app:app", *expected)


@pytest.mark.parametrize("name", ["MLOBS_PORT", "MLOBS_WORKERS"])
def test_a_port_or_worker_count_that_is_not_a_number_gets_a_usage_error(monkeypatch, capsys, name):
    monkeypatch.setenv(name, "eight")
    with pytest.raises(SystemExit) as refused:
        parse_arguments(["services.chatbot.app:app"])
    assert refused.value.code == 2
    option = name.removeprefix("MLOBS_").lower()
    assert f"error: argument --{option}: invalid int value: 'eight'" in capsys.readouterr().err


def _running(exposition: str) -> float:
    return sample(exposition, "model_predictions_running", model=HeldModel.name)


def test_a_sigterm_while_the_model_loads_is_a_clean_stop(serving_env):
    port = free_port()
    status = _serve_here(
        [f"{THIS}:stopped_while_loading", "--port", str(port)],
        f"http://127.0.0.1:{port}",
        lambda url: None,
    )
    assert status == 0
    assert BUILT == ["stopped_while_loading"]


def test_a_model_that_cannot_load_ends_main_with_startup_failure(serving_env, capsys):
    status = _serve_here(
        [f"{THIS}:broken_app", "--port", str(free_port())], "http://127.0.0.1:1", lambda url: None
    )
    assert status == STARTUP_FAILURE
    assert f"FileNotFoundError: {LOAD_ERROR}" in capsys.readouterr().err


def test_several_workers_from_mlobs_workers_refuse_a_port_in_use_before_loading_the_model(
    serving_env, no_multiproc_dir, monkeypatch, capsys
):
    """With MLOBS_WORKERS > 1 the supervisor binds the port first: a port conflict is reported
    at once, not after every worker has loaded its model; and the workers would have shared a
    clean multiprocess directory."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        monkeypatch.setenv("MLOBS_WORKERS", "2")
        status = _serve_here(
            [f"{THIS}:app", "--port", str(port)], f"http://127.0.0.1:{port}", lambda url: None
        )
    assert isinstance(status, int) and status != 0  # a failed start, for any supervisor
    assert "address already in use" in capsys.readouterr().err.lower()
    assert BUILT == []
    made = Path(os.environ[MULTIPROC])
    assert made.parent == no_multiproc_dir and list(made.iterdir()) == []
