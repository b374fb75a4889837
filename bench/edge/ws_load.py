# The WebSocket load of `make bench-edge` (wrk speaks only HTTP): CONNECTIONS sockets opened
# through a proxy, each sending one text frame and waiting for its echo before the next, for
# SECONDS. Prints one JSON object: round trips per second, latency percentiles in ms, and the
# count of wrong or missing echoes (which makes the measurement void).
"""Usage: ws_load.py URL SECONDS CONNECTIONS [FRAME_BYTES]"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def one(session: aiohttp.ClientSession, url: str, until: float, frame: str,
              lat: list[float], errors: list[str]) -> int:
    n = 0
    try:
        async with session.ws_connect(url, autoping=False, max_msg_size=1 << 20) as ws:
            while time.perf_counter() < until:
                t0 = time.perf_counter()
                await ws.send_str(frame)
                msg = await ws.receive(timeout=5)
                if msg.type != aiohttp.WSMsgType.TEXT or msg.data != frame:
                    errors.append(f"unexpected echo: {msg.type!r}")
                    return n
                lat.append(time.perf_counter() - t0)
                n += 1
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        errors.append(f"{type(e).__name__}: {e}")
    return n


async def run(url: str, seconds: float, connections: int, size: int) -> dict:
    frame = ("0123456789abcdef" * (size // 16 + 1))[:size]
    lat: list[float] = []
    errors: list[str] = []
    async with aiohttp.ClientSession() as session:
        start = time.perf_counter()
        until = start + seconds
        counts = await asyncio.gather(*(one(session, url, until, frame, lat, errors)
                                        for _ in range(connections)))
        elapsed = time.perf_counter() - start
    lat.sort()

    def pct(p: float) -> float:
        return 1e3 * lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0.0

    return {"rps": sum(counts) / elapsed, "p50": pct(0.50), "p99": pct(0.99),
            "requests": sum(counts), "non2xx": 0, "errors": "; ".join(errors[:3])}


def main() -> int:
    url, seconds, connections = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    size = int(sys.argv[4]) if len(sys.argv) > 4 else 160
    print(json.dumps(asyncio.run(run(url, seconds, connections, size))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
