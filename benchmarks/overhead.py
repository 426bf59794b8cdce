"""Instrumentation overhead: bare vs mlobs vs prometheus-fastapi-instrumentator, side by side.

The three servers run at once under uvicorn with one worker each; one load client in another
process takes turns between them in short bursts, starting with a different one each cycle. A
noisy neighbour (these machines drift by 10 % within a minute) thus hurts every variant alike,
and each variant's throughput is compared with bare's in the same cycle: the figure reported is
the median of those per-cycle ratios, with its interquartile range to show the noise. `make bench`
runs it; results go to benchmarks/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
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
    throughput_vs_bare: float = 1.0  # median over cycles of (variant / bare in the same cycle)
    throughput_vs_bare_iqr: tuple[float, float] = (1.0, 1.0)
    p99_vs_bare: float = 1.0


def serve(
    app: str, port: int, log_dir: Path, wrapper: Sequence[str] = (), **env: str
) -> ServiceSpec:
    """How to run one variant under uvicorn (through `wrapper`, e.g. valgrind, if given)."""
    argv = [*wrapper, sys.executable, "-m", "mlobs.serve", app, "--port", str(port)]
    env = {
        **env,
        # The mlobs variant writes its inference log line to stdout and to a file, as in compose.
        "MLOBS_LOG_FILE": str(log_dir / "inference.log"),
    }
    return ServiceSpec(
        f"bench-{app.rsplit(':', 1)[1]}", argv, f"http://127.0.0.1:{port}/openapi.json", env
    )


def _take_turns(ports: list[int], seconds: float, cycles: int) -> dict[str, list[dict]]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.loadclient",
        ",".join(map(str, ports)),
        str(seconds),
        str(cycles),
    ]
    timeout = len(ports) * cycles * (seconds + 5) + 60
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=timeout)
    return json.loads(out.stdout)


def measure(seconds: float, cycles: int, warmup: float) -> list[VariantResult]:
    """Run every variant at once; load them in turns for `cycles` cycles of `seconds` each."""
    with tempfile.TemporaryDirectory(prefix="mlobs-bench-") as tmp:
        ports = {name: free_port() for name in VARIANTS}
        specs = [serve(app, ports[name], Path(tmp)) for name, app in VARIANTS.items()]
        services = start_all(specs, Path(tmp) / "logs")
        try:
            print(f"  warming up ({warmup:.0f} s each)", flush=True)
            _take_turns(list(ports.values()), warmup, 1)
            print(f"  measuring ({cycles} cycles)", flush=True)
            turns = _take_turns(list(ports.values()), seconds, cycles)
        finally:
            stop_all(services)
    bursts = {name: turns[str(port)] for name, port in ports.items()}
    return [_summarise(name, runs, bursts["bare"]) for name, runs in bursts.items()]


def _rate(burst: dict) -> float:
    return burst["requests"] / burst["elapsed"]


def _summarise(name: str, runs: list[dict], bare: list[dict]) -> VariantResult:
    latencies = np.concatenate([np.asarray(r["latencies_us"]) for r in runs]) / 1000.0
    bare_latencies = np.concatenate([np.asarray(r["latencies_us"]) for r in bare]) / 1000.0
    requests = sum(r["requests"] for r in runs)
    seconds = sum(r["elapsed"] for r in runs)
    ratios = [_rate(mine) / _rate(theirs) for mine, theirs in zip(runs, bare, strict=True)]
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    p99 = float(np.percentile(latencies, 99))
    return VariantResult(
        variant=name,
        requests=requests,
        errors=sum(r["errors"] for r in runs),
        seconds=round(seconds, 2),
        req_per_s=round(requests / seconds, 1),
        p50_ms=round(float(np.percentile(latencies, 50)), 3),
        p99_ms=round(p99, 3),
        throughput_vs_bare=round(statistics.median(ratios), 3),
        throughput_vs_bare_iqr=(round(quartiles[0], 3), round(quartiles[2], 3)),
        p99_vs_bare=round(p99 / float(np.percentile(bare_latencies, 99)), 3),
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
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one burst")
    parser.add_argument("--cycles", type=int, default=30, help="bursts per variant")
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args()
    print(
        f"Instrumentation overhead: {len(VARIANTS)} variants x {args.cycles} bursts of "
        f"{args.seconds:g} s, taking turns; uvicorn 1 worker each, 8 keep-alive connections "
        "from another process"
    )
    results = measure(args.seconds, args.cycles, args.warmup)
    header = ("variant", "req/s", "p50 ms", "p99 ms", "req/s vs bare", "(IQR)", "p99 vs bare")
    print("\n{:<15}{:>8}{:>9}{:>9}{:>15}{:>15}{:>13}".format(*header))
    for r in results:
        low, high = r.throughput_vs_bare_iqr
        print(
            f"{r.variant:<15}{r.req_per_s:>8.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
            f"{r.throughput_vs_bare:>15.3f}{f'{low:.2f}-{high:.2f}':>15}{r.p99_vs_bare:>13.2f}"
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
