"""Instrumentation overhead in simulated CPU work per request: the deterministic companion of the
req/s comparison in benchmarks/overhead.py.

Each variant runs under valgrind's callgrind with counting off; after a warm-up, counting is
switched on (callgrind_control), a fixed number of requests is sent from 8 keep-alive connections,
and the counts are dumped. The same code, input and PYTHONHASHSEED give the same counts to within
0.1 %, whatever else the machine is doing, so differences of 1 % show here that the req/s noise
(10-20 % on these machines) hides. Two figures per request: instructions, and estimated cycles,
which also charge the simulated cache misses (instructions alone under-rate code that touches more
memory and more code). User space only: the kernel's share (socket and log writes) is not counted.
`make bench` runs it when valgrind is installed; results go to benchmarks/results/instructions.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.loadclient import exactly, example_body
from benchmarks.overhead import VARIANTS, serve
from native.processes import Service, free_port, start_all, stop_all

RESULTS = Path(__file__).parent / "results" / "instructions.json"
# Long enough for the work a request leaves behind: its log line is written at the loop's next
# turn, drift values are binned within 1 s (DriftMonitor.max_delay_seconds).
SETTLE_SECONDS = 1.5
EVENTS = ("Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw")


@dataclass
class Cost:
    """What one variant's server did for `requests` requests, and per request."""

    variant: str
    requests: int
    events: dict[str, int]  # callgrind's totals: instructions (Ir), reads, writes, misses
    instructions: int  # per request
    cycles: int  # per request, estimated (see estimated_cycles)
    bare_vs_variant: float = 1.0  # bare's estimated cycles per request / this variant's


def estimated_cycles(events: dict[str, int]) -> int:
    """Cycles estimated from simulated cache hits, the formula of pythonspeed.com's "consistent
    benchmarking in CI" (also used by iai): L1 hit 1, last-level hit 5, RAM 35 cycles."""
    accesses = events["Ir"] + events["Dr"] + events["Dw"]
    l1_misses = events["I1mr"] + events["D1mr"] + events["D1mw"]
    ram = events["ILmr"] + events["DLmr"] + events["DLmw"]
    return (accesses - l1_misses) + 5 * (l1_misses - ram) + 35 * ram


def _callgrind(pid: int, *command: str) -> None:
    subprocess.run(
        ["callgrind_control", *command, str(pid)], check=True, capture_output=True, timeout=60
    )


def _dumped_events(dump_dir: Path) -> dict[str, int]:
    # callgrind_control --dump writes <prefix>.<n>, whose `events:` and `totals:` lines count what
    # ran since counting was switched on.
    dumps = sorted(dump_dir.glob("callgrind.out.*.*"))
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump to {dump_dir}")
    names: list[str] = []
    for line in dumps[-1].read_text(errors="replace").splitlines():
        if line.startswith("events:"):
            names = line.split()[1:]
        elif line.startswith("totals:"):
            events = dict(zip(names, map(int, line.split()[1:]), strict=True))
            missing = set(EVENTS) - set(events)
            if missing:
                raise RuntimeError(f"{dumps[-1]} lacks events {sorted(missing)}")
            return events
    raise RuntimeError(f"no totals line in {dumps[-1]}")


def count(variant: str, requests: int, warmup: int, work_dir: Path) -> Cost:
    """What the server of `variant` executes for `requests` requests after a warm-up."""
    port = free_port()
    dump_dir = work_dir / variant
    dump_dir.mkdir()
    valgrind = (
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",  # start-up and warm-up run uncounted (and faster)
        "--cache-sim=yes",  # simulates this machine's L1 and last-level caches
        f"--callgrind-out-file={dump_dir}/callgrind.out.%p",
    )
    spec = serve(VARIANTS[variant], port, dump_dir, valgrind, PYTHONHASHSEED="0")
    server: list[Service] = start_all([spec], dump_dir / "logs", timeout=180)
    try:
        body = example_body()
        asyncio.run(exactly(port, warmup, body))
        time.sleep(SETTLE_SECONDS)
        _callgrind(server[0].process.pid, "--instr=on")
        result = asyncio.run(exactly(port, requests, body))
        time.sleep(SETTLE_SECONDS)
        _callgrind(server[0].process.pid, "--dump")
    finally:
        stop_all(server)
    if result["errors"]:
        raise RuntimeError(f"{variant}: {result['errors']} of {requests} requests failed")
    events = _dumped_events(dump_dir)
    return Cost(
        variant,
        requests,
        events,
        instructions=round(events["Ir"] / requests),
        cycles=round(estimated_cycles(events) / requests),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="counted requests per variant")
    parser.add_argument("--warmup", type=int, default=200, help="uncounted requests before")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated; bare is always included"
    )
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("Simulated CPU work per request: skipped, valgrind is not installed (apt valgrind)")
        return
    variants = ["bare", *(v for v in args.variants.split(",") if v != "bare")]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    print(
        f"Simulated CPU work per request (callgrind): {len(variants)} variants, {args.requests} "
        f"requests each after {args.warmup} uncounted, 8 keep-alive connections"
    )
    with tempfile.TemporaryDirectory(prefix="mlobs-callgrind-") as tmp:
        counts = []
        for variant in variants:
            print(f"  {variant} under callgrind", flush=True)
            counts.append(count(variant, args.requests, args.warmup, Path(tmp)))
    bare = counts[0]  # variants[0] is bare
    for c in counts:
        c.bare_vs_variant = round(bare.cycles / c.cycles, 3)
    header = ("variant", "instr/request", "bare / variant", "est. cycles/req", "bare / variant")
    print("\n{:<15}{:>14}{:>16}{:>17}{:>16}".format(*header))
    for c in counts:
        print(
            f"{c.variant:<15}{c.instructions:>14,}{bare.instructions / c.instructions:>16.3f}"
            f"{c.cycles:>17,}{c.bare_vs_variant:>16.3f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {"settings": vars(args), "instructions": [asdict(c) for c in counts]}
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
