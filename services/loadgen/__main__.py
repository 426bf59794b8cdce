"""Load generator: `python -m services.loadgen --scenario steady|latency|errors|drift`.

Poisson arrivals at `--rate` requests per second to each model server, with valid inputs from the
training distribution (drift: from a shifted one). The latency and errors scenarios switch on the
servers' fault injection (`/admin/faults`) for the run and clear it at the end unless
`--keep-faults`. Prints progress every few seconds and a summary at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from services.loadgen.inputs import InputSampler

SCENARIOS = ("steady", "latency", "errors", "drift")
# Latency above the 0.5 s p99 threshold; an error share well above the 1 % threshold.
FAULTS = {"latency": {"latency_ms": 800}, "errors": {"error_rate": 0.2}}
MAX_IN_FLIGHT = 200  # a stalled server gets no more than this many open requests


@dataclass
class Stats:
    """Outcomes and answer latencies per model."""

    outcomes: Counter = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)

    def record(self, model: str, outcome: str, seconds: float | None = None) -> None:
        self.outcomes[(model, outcome)] += 1
        if seconds is not None:
            self.latencies.setdefault(model, []).append(seconds)

    def line(self) -> str:
        parts = []
        for model in sorted({m for m, _ in self.outcomes}):
            counts = sorted((o, n) for (m, o), n in self.outcomes.items() if m == model)
            parts.append(f"{model}: " + " ".join(f"{o}={n}" for o, n in counts))
        return " | ".join(parts) or "no requests yet"

    def summary(self) -> str:
        lines = [self.line()]
        for model, values in sorted(self.latencies.items()):
            p50, p99 = np.percentile(values, [50, 99]) * 1000
            lines.append(
                f"  {model}: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(values)} answers"
            )
        return "\n".join(lines)


def _outcome(status: int) -> str:
    return "ok" if status < 400 else "client_error" if status < 500 else "server_error"


class LoadGenerator:
    """Sends Poisson traffic to the model servers and manages their faults."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.urls = {"anomaly-detector": args.anomaly_url, "chatbot": args.chatbot_url}
        sampler = InputSampler(seed=args.seed, drift=args.scenario == "drift")
        self.bodies: dict[str, Callable[[], dict]] = {
            "anomaly-detector": sampler.anomaly_body,
            "chatbot": sampler.chatbot_body,
        }
        self.arrivals = random.Random(args.seed)
        self.stats = Stats()
        self.stop = asyncio.Event()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._tasks: set[asyncio.Task] = set()

    async def _send(self, client: httpx.AsyncClient, model: str) -> None:
        async with self._slots:
            start = time.perf_counter()
            try:
                response = await client.post(
                    f"{self.urls[model]}/predict", json=self.bodies[model]()
                )
            except httpx.HTTPError as exc:
                self.stats.record(model, f"unreachable:{type(exc).__name__}")
                return
            self.stats.record(model, _outcome(response.status_code), time.perf_counter() - start)

    async def set_faults(self, client: httpx.AsyncClient, faults: dict | None) -> None:
        """POST the faults to every server (DELETE when None); problems are printed, not raised."""
        token = self.args.admin_token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for model, url in self.urls.items():
            try:
                if faults is None:
                    response = await client.delete(f"{url}/admin/faults", headers=headers)
                else:
                    response = await client.post(
                        f"{url}/admin/faults", json=faults, headers=headers
                    )
            except httpx.HTTPError as exc:
                print(f"  {model}: cannot reach {url}/admin/faults: {exc}", file=sys.stderr)
                continue
            if response.status_code == 404:
                print(
                    f"  {model}: fault injection is off (MLOBS_FAULTS=1 enables it)",
                    file=sys.stderr,
                )
            elif response.status_code == 401:
                print(f"  {model}: /admin/faults needs --admin-token", file=sys.stderr)
            elif response.is_error:
                print(f"  {model}: /admin/faults answered {response.status_code}", file=sys.stderr)

    async def _sleep_until(self, deadline: float) -> bool:
        """Wait until `deadline` (monotonic); False if stopped first."""
        delay = deadline - time.monotonic()
        if delay <= 0:
            return not self.stop.is_set()
        try:
            await asyncio.wait_for(self.stop.wait(), delay)
        except TimeoutError:
            return True
        return False

    async def run(self) -> Stats:
        """Drive the scenario for args.duration seconds (until stopped when 0)."""
        args = self.args
        faults = FAULTS.get(args.scenario)
        async with httpx.AsyncClient(timeout=args.timeout) as client:
            if faults:
                await self.set_faults(client, faults)
            start = next_report = time.monotonic()
            end = start + args.duration if args.duration else float("inf")
            next_arrival = dict.fromkeys(self.urls, start)
            try:
                while True:
                    model = min(next_arrival, key=next_arrival.__getitem__)
                    if next_arrival[model] >= end or not await self._sleep_until(
                        next_arrival[model]
                    ):
                        break
                    task = asyncio.create_task(self._send(client, model))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                    next_arrival[model] += self.arrivals.expovariate(args.rate)
                    if time.monotonic() >= next_report:
                        print(f"[{time.monotonic() - start:5.0f}s] {self.stats.line()}", flush=True)
                        if args.heartbeat_file is not None:
                            args.heartbeat_file.touch()  # the container healthcheck reads it
                        next_report += args.progress
            finally:
                if self._tasks:
                    await asyncio.wait(self._tasks, timeout=args.timeout)
                if faults and not args.keep_faults:
                    await self.set_faults(client, None)
        return self.stats


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=SCENARIOS, default="steady")
    parser.add_argument("--rate", type=float, default=5.0, help="requests per second per server")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds; 0 runs until stopped"
    )
    parser.add_argument("--anomaly-url", default=env.get("ANOMALY_URL", "http://127.0.0.1:8001"))
    parser.add_argument("--chatbot-url", default=env.get("CHATBOT_URL", "http://127.0.0.1:8002"))
    parser.add_argument(
        "--admin-token",
        default=env.get("MLOBS_ADMIN_TOKEN"),
        help="bearer token of /admin/faults (default: $MLOBS_ADMIN_TOKEN)",
    )
    parser.add_argument(
        "--admin-token-file",
        type=Path,
        help="read the token from this file (make local writes .local/admin-token)",
    )
    parser.add_argument(
        "--reset-faults",
        action="store_true",
        help="only clear the faults of both servers, then exit",
    )
    parser.add_argument("--keep-faults", action="store_true", help="leave faults on at the end")
    parser.add_argument(
        "--progress", type=float, default=5.0, help="seconds between progress lines"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, in seconds")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--heartbeat-file",
        type=Path,
        help="touched at every progress line (for a container healthcheck)",
    )
    args = parser.parse_args(argv)
    if args.rate <= 0:
        parser.error("--rate must be greater than 0")
    if args.duration < 0:
        parser.error("--duration must be 0 (until stopped) or more")
    if args.admin_token_file is not None:
        try:
            args.admin_token = args.admin_token_file.read_text().strip()
        except OSError as exc:
            parser.error(f"--admin-token-file: {exc.strerror}: {args.admin_token_file}")
    return args


async def _reset(args: argparse.Namespace) -> None:
    async with httpx.AsyncClient(timeout=args.timeout) as client:
        await LoadGenerator(args).set_faults(client, None)


async def _main(args: argparse.Namespace) -> Stats:
    generator = LoadGenerator(args)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, generator.stop.set)
    return await generator.run()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.reset_faults:
        asyncio.run(_reset(args))
        print("loadgen: faults cleared")
        return
    length = f"{args.duration:g} s" if args.duration else "until stopped"
    print(
        f"loadgen: scenario {args.scenario}, {args.rate:g} req/s per server, {length}", flush=True
    )
    stats = asyncio.run(_main(args))
    print("summary: " + stats.summary(), flush=True)


if __name__ == "__main__":
    main()
