"""Closed-loop HTTP/1.1 load from its own process: `python -m benchmarks.loadclient PORT SECONDS`.

Raw asyncio streams with keep-alive keep the client cheap, so the server is what is measured.
Prints one JSON object: requests, errors, elapsed seconds and every latency in microseconds.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from benchmarks.apps import MODEL

CONNECTIONS = 8


def _request(port: int) -> bytes:
    body = json.dumps({"features": MODEL.params.example}).encode()
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _connection(port: int, until: float, latencies: list[int], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = _request(port)
    while (now := time.perf_counter()) < until:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        latencies.append(int((time.perf_counter() - now) * 1e6))
        if not head.startswith(b"HTTP/1.1 200"):
            errors.append(1)
    writer.close()


async def run(port: int, seconds: float) -> dict:
    latencies: list[int] = []
    errors: list[int] = []
    start = time.perf_counter()
    until = start + seconds
    await asyncio.gather(*(_connection(port, until, latencies, errors) for _ in range(CONNECTIONS)))
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "elapsed": time.perf_counter() - start,
        "latencies_us": latencies,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(int(sys.argv[1]), float(sys.argv[2])))))
