"""`python -m setup [elasticsearch|kibana|all]`: the setup steps; each is safe to run again.

compose runs `elasticsearch` once (Logstash and Kibana start when it has succeeded: Kibana logs
in as `kibana_system`, whose password it sets) and `kibana --ready-file PATH` as a service of its
own: it retries until the saved objects are imported, then creates PATH (the service's
healthcheck) and keeps running until it is stopped, so that `docker compose up --wait` can wait
for it without anything else waiting for it. SIGTERM or SIGINT stops any step as soon as the
request in progress has ended: exit status 1 if it had not finished, 0 once the kibana service
has imported.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from pathlib import Path

from setup.elastic_setup import REQUIRED, ElasticSetup, SetupConfig, SetupError


def _stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT. As PID 1 in a container a signal without a handler is
    ignored, and `docker compose stop` would wait out its grace period and kill."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def run(step: str, ready_file: Path | None) -> None:
    stop = _stop_on_signals()
    setup = ElasticSetup(SetupConfig.from_env(step=step))
    try:
        # With a ready file the service's healthcheck is the judge: retry without deadline.
        setup.run_step(step, deadline=math.inf if ready_file else None, stop=stop)
        if ready_file is not None:
            ready_file.write_text("saved objects imported\n")
            stop.wait()
    finally:
        setup.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m setup", description=__doc__.splitlines()[0])
    parser.add_argument("step", nargs="?", default="all", choices=list(REQUIRED))
    parser.add_argument(
        "--ready-file",
        type=Path,
        help="kibana step: retry without deadline, create this file once imported, keep running",
    )
    args = parser.parse_args(argv)
    if args.ready_file and args.step != "kibana":
        parser.error("--ready-file belongs to the kibana step")
    try:
        run(args.step, args.ready_file)
    except SetupError as exc:
        print(f"setup ({args.step}) failed: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
