"""A small HTTP/1.1 load generator: ``clients`` keep-alive connections on one asyncio loop,
each sending its next request as soon as the previous answer arrived (a closed loop, as
concurrent API clients behave). One thread, so the generator itself costs little CPU."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    bodies: list[bytes] = field(default_factory=list)

    def summary(self) -> dict:
        ok = sorted(self.latencies)
        return {
            "requests": len(ok),
            "seconds": round(self.seconds, 3),
            "per_second": len(ok) / self.seconds if self.seconds else 0.0,
            "p50_ms": percentile(ok, 50) * 1000,
            "p99_ms": percentile(ok, 99) * 1000,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
        }


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (0 when empty)."""
    if not values:
        return 0.0
    rank = max(0, min(len(values) - 1, round(pct / 100 * len(values) + 0.5) - 1))
    return values[rank]


def request_bytes(method: str, path: str, host: str, headers: dict[str, str],
                  body: dict | None = None) -> bytes:
    data = json.dumps(body).encode() if body is not None else b""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive",
             *(f"{k}: {v}" for k, v in headers.items())]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            body += await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        body = await reader.read()
    return status, body, headers.get("connection", "").lower() == "close"


async def _client(host: str, port: int, make: Callable[[int], bytes], result: Result,
                  stop: Callable[[int], bool], counter: list[int], keep_bodies: bool) -> None:
    reader = writer = None
    while True:
        number = counter[0]
        if stop(number):
            break
        counter[0] += 1
        payload = make(number)
        if writer is None:
            reader, writer = await asyncio.open_connection(host, port)
        started = time.perf_counter()
        writer.write(payload)
        try:
            status, body, close = await _read_response(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            reader = writer = None
            result.statuses["disconnected"] += 1
            continue
        result.latencies.append(time.perf_counter() - started)
        result.statuses[status] += 1
        if keep_bodies:
            result.bodies.append(body)
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def run(host: str, port: int, make: Callable[[int], bytes], *, clients: int = 8,
        seconds: float | None = None, count: int | None = None,
        keep_bodies: bool = False) -> Result:
    """Send requests built by ``make(n)`` for ``seconds`` or until ``count`` were sent."""
    result = Result()

    async def main() -> None:
        started = time.perf_counter()
        deadline = started + seconds if seconds else None

        def stop(number: int) -> bool:
            if count is not None and number >= count:
                return True
            return deadline is not None and time.perf_counter() >= deadline

        counter = [0]
        await asyncio.gather(*(_client(host, port, make, result, stop, counter, keep_bodies)
                               for _ in range(clients)))
        result.seconds = time.perf_counter() - started

    asyncio.run(main())
    return result
