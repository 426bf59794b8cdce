"""Run a model server: `python -m mlobs.serve services.chatbot.app:app --port 8002`.

Compared with calling uvicorn directly it binds to 127.0.0.1 by default, turns off uvicorn's text
access log (the JSON inference event replaces it), gives numpy's BLAS one thread unless told
otherwise, with several workers prepares a clean PROMETHEUS_MULTIPROC_DIR, which
prometheus_client needs wiped before the workers start, and exits 0 after a graceful stop.

A stop by SIGTERM: the app drains first (mlobs.shutdown, at most MLOBS_SHUTDOWN_GRACE_SECONDS),
then uvicorn closes the connections (at most CLOSE_SECONDS more) and the app flushes its logs.
Run under a supervisor that waits longer than both (docker-compose.yml: stop_grace_period 30s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import tempfile
from pathlib import Path
from types import FrameType

import uvicorn


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve an mlobs model server with uvicorn.")
    parser.add_argument("app", help="import path of the ASGI app, e.g. services.chatbot.app:app")
    parser.add_argument("--host", default=os.environ.get("MLOBS_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("MLOBS_PORT", "8080")))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("MLOBS_WORKERS", "1")))
    args = parser.parse_args(argv)
    single_threaded_blas()
    prepare_multiprocess_dir(args.workers)
    signal.signal(signal.SIGTERM, _stopped)
    uvicorn.run(
        args.app,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,
        timeout_graceful_shutdown=CLOSE_SECONDS,
    )


if __name__ == "__main__":
    main()
