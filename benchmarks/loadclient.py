"""Closed-loop HTTP/1.1 load from its own process, in short bursts that take turns between servers.

`python -m benchmarks.loadclient PORTS BURST_SECONDS CYCLES` (PORTS comma-separated): every cycle
loads each server for one burst, starting with a different server each cycle, so each server sees
the same machine conditions. Raw asyncio streams with keep-alive keep the client cheap, so the
servers are what is measured. Prints one JSON object: per port, per burst, the number of requests,
errors, elapsed seconds and every latency in microseconds.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable

from services.anomaly_detector.model import AnomalyDetector

CONNECTIONS = 8


def _request(port: int, body: bytes) -> bytes:
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> bytes:
    """Send one request on a keep-alive connection; the head of its answer."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    return head


async def _connection(
    port: int, request: bytes, more: Callable[[], bool], latencies: list[int], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while more():
        start = time.perf_counter()
        head = await _exchange(reader, writer, request)
        latencies.append(int((time.perf_counter() - start) * 1e6))
        if not head.startswith(b"HTTP/1.1 200"):
            errors.append(1)
    writer.close()


async def _load(
    port: int, body: bytes, more: Callable[[], bool], connections: int = CONNECTIONS
) -> dict:
    latencies: list[int] = []
    errors: list[int] = []
    request = _request(port, body)
    start = time.perf_counter()
    await asyncio.gather(
        *(_connection(port, request, more, latencies, errors) for _ in range(connections))
    )
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "elapsed": time.perf_counter() - start,
        "latencies_us": latencies,
    }


async def burst(port: int, seconds: float, body: bytes, connections: int = CONNECTIONS) -> dict:
    """Load one server from `connections` keep-alive connections for `seconds`."""
    until = time.perf_counter() + seconds
    return await _load(port, body, lambda: time.perf_counter() < until, connections)


async def probe(port: int, path: str, seconds: float, every: float = 0.02) -> list[int]:
    """GET `path` every `every` seconds for `seconds` on one keep-alive connection; latencies
    in microseconds (what a health check or a scrape waits while the server is loaded)."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    latencies: list[int] = []
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        start = time.perf_counter()
        await _exchange(reader, writer, request)
        latencies.append(int((time.perf_counter() - start) * 1e6))
        await asyncio.sleep(every)
    writer.close()
    return latencies


async def exactly(port: int, requests: int, body: bytes) -> dict:
    """Send exactly `requests` requests, spread over CONNECTIONS keep-alive connections."""
    budget = iter(range(requests))
    return await _load(port, body, lambda: next(budget, None) is not None)


def example_body() -> bytes:
    """The anomaly detector's example input, the body every benchmark request carries."""
    return json.dumps({"features": AnomalyDetector.load().params.example}).encode()


async def take_turns(ports: list[int], seconds: float, cycles: int) -> dict[int, list[dict]]:
    """`cycles` rounds of one burst per port, rotating which port goes first."""
    body = example_body()
    results: dict[int, list[dict]] = {port: [] for port in ports}
    for cycle in range(cycles):
        first = cycle % len(ports)
        for port in ports[first:] + ports[:first]:
            results[port].append(await burst(port, seconds, body))
    return results


if __name__ == "__main__":
    ports = [int(p) for p in sys.argv[1].split(",")]
    turns = asyncio.run(take_turns(ports, float(sys.argv[2]), int(sys.argv[3])))
    print(json.dumps({str(port): bursts for port, bursts in turns.items()}))
