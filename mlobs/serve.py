"""Run a model server: `python -m mlobs.serve services.chatbot.app:app --port 8002`.

Compared with calling uvicorn directly it binds to 127.0.0.1 by default, turns off uvicorn's text
access log (the JSON inference event replaces it), gives numpy's BLAS one thread unless told
otherwise, with several workers prepares a clean PROMETHEUS_MULTIPROC_DIR, which
prometheus_client needs wiped before the workers start, and exits 0 after a graceful stop. An app
that cannot load or start ends it with status 3 (uvicorn's STARTUP_FAILURE) with any number of
workers, where uvicorn alone would start a failing worker again forever, or exit 0.

A stop by SIGTERM: the app drains first (mlobs.shutdown, at most MLOBS_SHUTDOWN_GRACE_SECONDS),
then uvicorn closes the connections (at most CLOSE_SECONDS more) and the app flushes its logs.
Run under a supervisor that waits longer than both (docker-compose.yml: stop_grace_period 30s).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.importer import import_from_string
from uvicorn.supervisors import Multiprocess


def prepare_multiprocess_dir(workers: int) -> None:
    """With several workers, point PROMETHEUS_MULTIPROC_DIR at an empty directory.

    Stale files from an earlier run would add old counts to the new ones.
    """
    if workers <= 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return
    path = Path(
        os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="mlobs-prom-")
    )
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


# A request's matrices are small: extra BLAS threads only spin after each product, burning the
# cores that other requests and workers need. Set any of these to use more.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def single_threaded_blas() -> None:
    """One BLAS thread per process unless the environment says otherwise; must run before
    numpy is imported (workers inherit it)."""
    for name in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(name, "1")


# After the drain, idle keep-alive connections close at once; this bounds a slow client.
CLOSE_SECONDS = 3


def _stopped(sig: int, frame: FrameType | None) -> None:
    # uvicorn stops gracefully on SIGTERM and then raises the signal again, meaning "stopped by
    # SIGTERM" (exit status 143) even though nothing was lost. With this as the handler it
    # restores, the process ends with status 0 instead, as supervisors expect of a clean stop.
    # Before the server starts (while the model loads), SIGTERM likewise ends the process.
    raise SystemExit(0)


APP_VARIABLE = "MLOBS_APP"  # the user's app, for load_app in each worker


def load_app() -> Any:
    """The app named in MLOBS_APP, imported where uvicorn calls this (each worker).

    A model that fails to load ends the worker with uvicorn's STARTUP_FAILURE status, so its
    supervisor stops instead of starting the worker again, forever.
    """
    try:
        return import_from_string(os.environ[APP_VARIABLE])
    except Exception:
        logging.getLogger("uvicorn.error").exception("cannot load %s", os.environ[APP_VARIABLE])
        sys.exit(STARTUP_FAILURE)


def _from_env(name: str, default: str) -> str:
    # Blank is unset: compose passes an unset variable as an empty one (`${VAR:-}`), and an empty
    # host would bind every interface.
    return os.environ.get(name, "").strip() or default


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of `python -m mlobs.serve`, defaults from MLOBS_HOST, PORT and WORKERS."""
    parser = argparse.ArgumentParser(description="Serve an mlobs model server with uvicorn.")
    parser.add_argument("app", help="import path of the ASGI app, e.g. services.chatbot.app:app")
    # String defaults: argparse converts them like the command line's, so a bad MLOBS_PORT gets
    # its usage error ("argument --port: invalid int value") rather than a traceback.
    parser.add_argument("--host", default=_from_env("MLOBS_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=_from_env("MLOBS_PORT", "8080"))
    parser.add_argument("--workers", type=int, default=_from_env("MLOBS_WORKERS", "1"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    single_threaded_blas()
    prepare_multiprocess_dir(args.workers)
    signal.signal(signal.SIGTERM, _stopped)
    os.environ[APP_VARIABLE] = args.app
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "access_log": False,
        "timeout_graceful_shutdown": CLOSE_SECONDS,
        "factory": True,
    }
    if args.workers <= 1:
        uvicorn.run("mlobs.serve:load_app", **options)
        return
    # uvicorn.run returns normally after a worker failed to start; exit with its status instead.
    config = uvicorn.Config("mlobs.serve:load_app", workers=args.workers, **options)
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes):
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    # Run the importable copy of this module (mlobs.serve, which uvicorn's factory loads by name
    # too) rather than __main__: one copy of its state, and mutation testing reaches it.
    from mlobs.serve import main as serve_main

    serve_main()
