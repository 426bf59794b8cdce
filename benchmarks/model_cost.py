"""Model-cost sweep: how each way of serving a model copes as predict gets slower.

For a predict costing about 0.1, 1 and 10 ms, as numpy work (releases the GIL) and as pure-Python
work (holds it), three servers run at once under uvicorn with one worker each
(benchmarks/cost_apps.py): the seed's pattern (predict on the event loop), a plain FastAPI `def`
endpoint (FastAPI's thread pool) and mlobs with its defaults. Each is loaded in turns from 8 and
32 keep-alive connections while /healthz is probed every 20 ms on its own connection. Reported:
req/s, p50 and p99 of /predict, p99 of /healthz, and req/s against the best bare pattern of the
same run. Goal: at 1 ms and above, mlobs at or above the best bare pattern in req/s, /healthz p99
under 50 ms. Figures only, no pass/fail; results go to benchmarks/results/model_cost.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks.cost_apps import APPS
from benchmarks.loadclient import burst, probe
from benchmarks.overhead import serve
from native.processes import free_port, start_all, stop_all

RESULTS = Path(__file__).parent / "results" / "model_cost.json"
COSTS_MS = (0.1, 1.0, 10.0)
WORKS = ("numpy", "python")
CONNECTIONS = (8, 32)
BODY = b'{"x": 1.0}'


@dataclass
class Row:
    cost_ms: float
    work: str
    connections: int
    pattern: str
    req_per_s: float
    p50_ms: float
    p99_ms: float
    healthz_p99_ms: float
    errors: int
    vs_best_bare: float = 1.0  # this pattern's req/s / the best of seed and fastapi_def


async def _load_with_probe(port: int, seconds: float, connections: int) -> tuple[dict, list[int]]:
    return await asyncio.gather(
        burst(port, seconds, BODY, connections), probe(port, "/healthz", seconds)
    )


def _percentile(values_us: list[int], q: float) -> float:
    return round(float(np.percentile(np.asarray(values_us), q)) / 1000.0, 2) if values_us else 0.0


def _calibrated(work: str, cost_ms: float) -> int:
    """Repetitions for `cost_ms`, measured in a process set up like the servers (mlobs.serve
    gives BLAS one thread; this process may have more, which changes the cost of a product)."""
    code = (
        "from mlobs.serve import single_threaded_blas; single_threaded_blas()\n"
        "from benchmarks.cost_apps import calibrate\n"
        f"print(calibrate({work!r}, {cost_ms!r}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return int(out.stdout)


def _sweep_one(cost_ms: float, work: str, seconds: float, cycles: int) -> list[Row]:
    reps = _calibrated(work, cost_ms)
    print(f"  {cost_ms:g} ms of {work} work: {reps} repetitions", flush=True)
    env = {"MODEL_WORK": work, "MODEL_REPS": str(reps)}
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="mlobs-cost-") as tmp:
        ports = {name: free_port() for name in APPS}
        specs = [
            serve(f"benchmarks.cost_apps:{name}_app", ports[name], Path(tmp), **env)
            for name in APPS
        ]
        services = start_all(specs, Path(tmp) / "logs")
        try:
            for connections in CONNECTIONS:
                results: dict[str, list[tuple[dict, list[int]]]] = {name: [] for name in APPS}
                names = list(APPS)
                for cycle in range(cycles):  # turns, rotating who goes first
                    order = names[cycle % len(names) :] + names[: cycle % len(names)]
                    for name in order:
                        run = _load_with_probe(ports[name], seconds, connections)
                        results[name].append(asyncio.run(run))
                rows.extend(_rows(cost_ms, work, connections, results))
        finally:
            stop_all(services)
    return rows


def _rows(
    cost_ms: float, work: str, connections: int, results: dict[str, list[tuple[dict, list[int]]]]
) -> list[Row]:
    rows = []
    for pattern, runs in results.items():
        latencies = [lat for load, _ in runs for lat in load["latencies_us"]]
        health = [lat for _, probes in runs for lat in probes]
        requests = sum(load["requests"] for load, _ in runs)
        elapsed = sum(load["elapsed"] for load, _ in runs)
        rows.append(
            Row(
                cost_ms=cost_ms,
                work=work,
                connections=connections,
                pattern=pattern,
                req_per_s=round(requests / elapsed, 1),
                p50_ms=_percentile(latencies, 50),
                p99_ms=_percentile(latencies, 99),
                healthz_p99_ms=_percentile(health, 99),
                errors=sum(load["errors"] for load, _ in runs),
            )
        )
    best_bare = max(r.req_per_s for r in rows if r.pattern != "mlobs")
    for row in rows:
        row.vs_best_bare = round(row.req_per_s / best_bare, 3)
    return rows


def _print(rows: list[Row]) -> None:
    header = ("cost", "work", "conns", "pattern", "req/s", "p50 ms", "p99 ms", "healthz p99")
    print("\n{:>6} {:<7}{:>6}  {:<12}{:>8}{:>9}{:>9}{:>13}{:>10}".format(*header, "vs best"))
    for r in rows:
        print(
            f"{r.cost_ms:>6g} {r.work:<7}{r.connections:>6}  {r.pattern:<12}{r.req_per_s:>8.0f}"
            f"{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.healthz_p99_ms:>13.2f}{r.vs_best_bare:>10.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one burst")
    parser.add_argument("--cycles", type=int, default=2, help="bursts per pattern and load")
    parser.add_argument("--costs", type=float, nargs="+", default=list(COSTS_MS))
    parser.add_argument("--works", nargs="+", choices=WORKS, default=list(WORKS))
    args = parser.parse_args()
    print(
        f"Model-cost sweep: predict of {', '.join(f'{c:g}' for c in args.costs)} ms "
        f"({' and '.join(args.works)} work), patterns {', '.join(APPS)}; "
        f"{args.cycles} bursts of {args.seconds:g} s per pattern and load, taking turns"
    )
    rows: list[Row] = []
    for cost in args.costs:
        for work in args.works:
            rows.extend(_sweep_one(cost, work, args.seconds, args.cycles))
    _print(rows)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
