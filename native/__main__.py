"""`python -m native` (`make local`): the stack without Docker, until Ctrl-C.

Model servers, alert-sink, Prometheus, Alertmanager and steady load on the DESIGN.md ports of
127.0.0.1; configuration, data and logs under .local/.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from mlobs.spec import DEFAULT_SPEC_PATH, SpecError, load_spec
from native.processes import Service, StartupError
from native.stack import MissingBinary, NativeStack, Ports, StackOptions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC_PATH)
    parser.add_argument("--data-dir", type=Path, default=Path(".local"))
    parser.add_argument(
        "--load-rate",
        type=float,
        default=2.0,
        help="steady requests per second per server (0: no load)",
    )
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec)
        stack = NativeStack(
            StackOptions(
                spec=spec,
                ports=Ports.from_spec(spec),
                data_dir=args.data_dir.resolve(),
                load_rate=args.load_rate or None,
            )
        )
    except (SpecError, MissingBinary) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    print(f"starting the native stack (logs in {args.data_dir}/out/) ...", flush=True)

    def ready(service: Service) -> None:
        print(f"  {service.spec.name:<17} ready", flush=True)

    try:
        stack.start(on_ready=ready)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        print("\nThe stack is up:")
        for name, url in stack.urls.items():
            print(f"  {name:<17} {url}")
        print(f"\nFault injection token (loadgen --admin-token): {stack.options.admin_token}")
        print("Try: make chaos-latency | chaos-errors | chaos-drift | chaos-reset. Ctrl-C stops.")
        while not stopping.wait(1.0):
            for service in stack.services:
                if service.process.poll() is not None:
                    print(
                        f"error: {service.spec.name} exited:\n{service.output()}", file=sys.stderr
                    )
                    return 1
        return 0
    finally:
        print("\nstopping ...", flush=True)
        stack.stop()
        print("stopped; nothing left running.")


if __name__ == "__main__":
    sys.exit(main())
