"""Instrumentation overhead: bare vs mlobs vs prometheus-fastapi-instrumentator, side by side.

Each variant runs under uvicorn with one worker; load comes from a separate process. Variants
alternate within every round, so a noisy neighbour hurts all of them alike, and the figures that
matter are the ratios to bare. `make bench` runs it; results go to benchmarks/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from native.processes import ServiceSpec, free_port, start_all, stop_all

VARIANTS = {
    "bare": "benchmarks.apps:bare_app",
    "mlobs": "benchmarks.apps:mlobs_app",
    "instrumentator": "benchmarks.apps:instrumentator_app",
}
RESULTS = Path(__file__).parent / "results" / "latest.json"


@dataclass
class VariantResult:
    variant: str
    requests: int
    errors: int
    seconds: float
    req_per_s: float
    p50_ms: float
    p99_ms: float
    throughput_vs_bare: float = 1.0
    p99_vs_bare: float = 1.0


def _serve(app: str, port: int, log_dir: Path) -> ServiceSpec:
    argv = [sys.executable, "-m", "mlobs.serve", app, "--port", str(port)]
    # The mlobs variant writes its inference log line to stdout and to a file, as in compose.
    env = {"MLOBS_LOG_FILE": str(log_dir / "inference.log")}
    return ServiceSpec(
        f"bench-{app.rsplit(':', 1)[1]}", argv, f"http://127.0.0.1:{port}/openapi.json", env
    )


def _load(port: int, seconds: float) -> dict:
    command = [sys.executable, "-m", "benchmarks.loadclient", str(port), str(seconds)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)
    return json.loads(out.stdout)


def measure(seconds: float, rounds: int, warmup: float) -> list[VariantResult]:
    """Alternate the variants for `rounds` rounds of `seconds` each; aggregate per variant."""
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="mlobs-bench-") as tmp:
        for round_no in range(1, rounds + 1):
            for name, app in VARIANTS.items():
                port = free_port()
                services = start_all([_serve(app, port, Path(tmp))], Path(tmp) / name)
                try:
                    _load(port, warmup)
                    result = _load(port, seconds)
                finally:
                    stop_all(services)
                runs[name].append(result)
                rate = result["requests"] / result["elapsed"]
                print(f"  round {round_no}/{rounds} {name:<15} {rate:8.0f} req/s", flush=True)
    results = [_summarise(name, r) for name, r in runs.items()]
    bare = results[0]
    for r in results:
        r.throughput_vs_bare = round(r.req_per_s / bare.req_per_s, 3)
        r.p99_vs_bare = round(r.p99_ms / bare.p99_ms, 3)
    return results


def _summarise(name: str, runs: list[dict]) -> VariantResult:
    latencies = np.concatenate([np.asarray(r["latencies_us"]) for r in runs]) / 1000.0
    requests = sum(r["requests"] for r in runs)
    seconds = sum(r["elapsed"] for r in runs)
    return VariantResult(
        variant=name,
        requests=requests,
        errors=sum(r["errors"] for r in runs),
        seconds=round(seconds, 2),
        req_per_s=round(requests / seconds, 1),
        p50_ms=round(float(np.percentile(latencies, 50)), 3),
        p99_ms=round(float(np.percentile(latencies, 99)), 3),
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine() -> dict[str, str | int | None]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="load per variant per round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (total >= 10 s)")
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    print(
        f"Instrumentation overhead: {len(VARIANTS)} variants x {args.rounds} rounds x "
        f"{args.seconds:.0f} s, uvicorn 1 worker, 8 keep-alive connections from another process"
    )
    results = measure(args.seconds, args.rounds, args.warmup)
    header = ("variant", "req/s", "p50 ms", "p99 ms", "req/s vs bare", "p99 vs bare")
    print("\n{:<15}{:>10}{:>10}{:>10}{:>15}{:>13}".format(*header))
    for r in results:
        print(
            f"{r.variant:<15}{r.req_per_s:>10.0f}{r.p50_ms:>10.2f}{r.p99_ms:>10.2f}"
            f"{r.throughput_vs_bare:>15.2f}{r.p99_vs_bare:>13.2f}"
        )
    report = {
        "machine": _machine(),
        "settings": vars(args),
        "overhead": [asdict(r) for r in results],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
