"""Load test of ``lesionlab serve`` on loopback: N concurrent clients POST real images to /v1/predict.

Starts the server as a subprocess on 127.0.0.1 (a free port), waits for /healthz, runs ``--clients`` concurrent
clients until ``--requests`` requests are done or ``--duration`` seconds pass (whichever first), then stops the
server. Prints throughput, p50/p95/p99 latency, the error count and the status codes. Loopback only, bounded.

    .venv/bin/python benchmarks/load_test.py runs/default-XXXX --images ../shared/data/ham10000/images_600x450 \
        --clients 8 --requests 400 --duration 60 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from lesionlab.serving.server import free_port

HOST = "127.0.0.1"


def start_server(model: str, port: int, workers: int, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lesionlab", "-q", "serve", model, "--host", HOST, "--port", str(port),
           "--workers", str(workers), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server at {url} not ready after {timeout} s")


async def run_clients(url: str, images: list[bytes], clients: int, total: int, duration: float,
                      heatmap: bool) -> tuple[list[float], collections.Counter, float]:
    latencies: list[float] = []
    codes: collections.Counter = collections.Counter()
    issued = 0
    deadline = time.monotonic() + duration
    query = "?heatmap=true" if heatmap else ""

    async def client(i: int) -> None:
        nonlocal issued
        async with httpx.AsyncClient(timeout=120) as http:
            while issued < total and time.monotonic() < deadline:
                issued += 1
                data = images[issued % len(images)]
                t = time.perf_counter()
                try:
                    r = await http.post(f"{url}/v1/predict{query}", files={"image": ("x.jpg", data, "image/jpeg")})
                    codes[r.status_code] += 1
                except httpx.HTTPError as exc:
                    codes[type(exc).__name__] += 1
                latencies.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, codes, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="run directory, model.pt or model.onnx")
    ap.add_argument("--images", required=True, help="folder of JPEG images to send (cycled)")
    ap.add_argument("--max-images", type=int, default=32)
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    ap.add_argument("--requests", type=int, default=400, help="stop after this many requests (default 400)")
    ap.add_argument("--duration", type=float, default=60, help="... or after this many seconds (default 60)")
    ap.add_argument("--workers", type=int, default=2, help="server inference workers (default 2)")
    ap.add_argument("--heatmap", action="store_true", help="ask for heat-maps too")
    args = ap.parse_args()
    if args.clients < 1 or args.requests < 1 or not 0 < args.duration <= 600:
        ap.error("--clients and --requests must be >= 1 and --duration in (0, 600]")

    images = [p.read_bytes() for p in sorted(Path(args.images).glob("*.jpg"))[: args.max_images]]
    if not images:
        ap.error(f"no .jpg images in {args.images}")
    port = free_port(HOST)
    url = f"http://{HOST}:{port}"
    proc = start_server(args.model, port, args.workers, [])
    try:
        wait_ready(url, proc)
        httpx.post(f"{url}/v1/predict", files={"image": ("w.jpg", images[0], "image/jpeg")}, timeout=120)  # warm-up
        latencies, codes, seconds = asyncio.run(run_clients(url, images, args.clients, args.requests, args.duration,
                                                            args.heatmap))
        alive = httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server process group this script started
        proc.wait(timeout=30)
    lat = np.array(latencies) * 1e3
    errors = sum(n for code, n in codes.items() if code != 200)
    print(f"\n{args.model} · {args.clients} clients · {args.workers} server workers · {len(images)} images cycled"
          f"{' · heat-maps' if args.heatmap else ''}\n")
    print("| requests | seconds | requests/s | p50 ms | p95 ms | p99 ms | errors | status codes |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    print(f"| {len(lat)} | {seconds:.1f} | {len(lat) / seconds:.1f} | {np.percentile(lat, 50):.0f} | "
          f"{np.percentile(lat, 95):.0f} | {np.percentile(lat, 99):.0f} | {errors} | {dict(codes)} |")
    print(f"\nserver still answering /healthz afterwards: {alive}")


if __name__ == "__main__":
    main()
