"""Load test of ``lesionlab serve`` on loopback: N concurrent clients POST real images to /v1/predict.

Starts the server as a subprocess on 127.0.0.1 (a free port), waits for /healthz, runs ``--clients`` concurrent
clients until ``--requests`` requests are done or ``--duration`` seconds pass (whichever first), then stops the
server. Prints throughput, p50/p95/p99 latency, the error count and the status codes. Loopback only, bounded.
``--compare`` runs the previous serving configuration (the predictor's general path, one request per worker, the
model's 8-view TTA) and the current defaults one after the other in the same run, one table row each; ``--config
NAME="FLAGS"`` adds any other ``serve`` configuration; ``--model REF`` among its flags serves another model in that
row (e.g. a distilled student's run folder beside the ensemble). ``--metrics`` prints the last server's /metrics
afterwards.

    .venv/bin/python benchmarks/load_test.py builtin --images ../shared/data/ham10000/images_600x450 \
        --clients 16 --requests 400 --duration 40 --compare --metrics
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from lesionlab.serving.server import free_port

HOST = "127.0.0.1"


def start_server(model: str, port: int, flags: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lesionlab", "-q", "serve", model, "--host", HOST, "--port", str(port), *flags]
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


#: ``--compare``: the serving configuration before dynamic batching, and the current defaults.
COMPARE = {"old (general path, 1 request per worker, model TTA)": "--engine general --batch-size 1 --workers 2 "
           "--tta model", "new (defaults)": ""}
METRIC_PREFIXES = ("lesionlab_http_requests_total", "lesionlab_inference_batch_size_sum",
                   "lesionlab_inference_batch_size_count", "lesionlab_inference_queue_wait_seconds_sum",
                   "lesionlab_inference_queue_wait_seconds_count", "lesionlab_predictions_total",
                   "lesionlab_triage_priority_total", "lesionlab_not_assessable_total", "lesionlab_ood_total",
                   "lesionlab_cascade_escalated_total",
                   "lesionlab_model_info")


def run_config(model: str, images: list[bytes], flags: list[str], args: argparse.Namespace) -> dict:
    """Start a server with ``flags``, load it, stop it: the row of the table (and its /metrics text)."""
    port = free_port(HOST)
    url = f"http://{HOST}:{port}"
    proc = start_server(model, port, flags)
    try:
        wait_ready(url, proc)
        httpx.post(f"{url}/v1/predict", files={"image": ("w.jpg", images[0], "image/jpeg")}, timeout=120)  # warm-up
        latencies, codes, seconds = asyncio.run(run_clients(url, images, args.clients, args.requests, args.duration,
                                                            args.heatmap))
        alive = httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        metrics = httpx.get(f"{url}/metrics", timeout=5).text if args.metrics else ""
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server process group this script started
        proc.wait(timeout=30)
    lat = np.array(latencies) * 1e3
    return {"requests": len(lat), "seconds": seconds, "rps": len(lat) / seconds, "p50": np.percentile(lat, 50),
            "p95": np.percentile(lat, 95), "p99": np.percentile(lat, 99),
            "errors": sum(n for code, n in codes.items() if code != 200), "codes": dict(codes), "alive": alive,
            "metrics": metrics}


def row_model(default: str, flags: list[str]) -> tuple[str, list[str]]:
    """A row's model (``--model REF`` among its flags, else ``default``) and the rest of its flags for serve."""
    if "--model" not in flags:
        return default, flags
    i = flags.index("--model")
    return flags[i + 1], flags[:i] + flags[i + 2:]


def split_ids(model: str, split: str) -> set[str]:
    """The image ids of one split of the model's ``splits.csv`` (the built-in model's for ``builtin``)."""
    import pandas as pd

    from lesionlab.builtin.registry import builtin_dir

    folder = builtin_dir() if model == "builtin" else Path(model)
    splits = pd.read_csv(folder / "splits.csv", dtype=str)
    return set(splits.loc[splits["split"] == split, "image_id"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="run directory, model.pt, model.onnx, ensemble folder or 'builtin'")
    ap.add_argument("--images", required=True, help="folder of JPEG images to send (cycled)")
    ap.add_argument("--max-images", type=int, default=32)
    ap.add_argument("--split", default=None, help="send only images of this split of the model's splits.csv (e.g. "
                    "test: images the model never trained on, so the cascade escalates as often as for new patients)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    ap.add_argument("--requests", type=int, default=400, help="stop after this many requests (default 400)")
    ap.add_argument("--duration", type=float, default=60, help="... or after this many seconds (default 60)")
    ap.add_argument("--workers", type=int, default=None, help="server inference workers (default: serve's)")
    ap.add_argument("--heatmap", action="store_true", help="ask for heat-maps too")
    ap.add_argument("--compare", action="store_true", help="the old and the new serving configuration, one run")
    ap.add_argument("--config", action="append", default=[], metavar='NAME="FLAGS"',
                    help="a serve configuration to load (repeatable), e.g. fast-none=\"--tta none\"")
    ap.add_argument("--metrics", action="store_true", help="print the last server's /metrics (lesionlab_ lines)")
    args = ap.parse_args()
    if args.clients < 1 or args.requests < 1 or not 0 < args.duration <= 600:
        ap.error("--clients and --requests must be >= 1 and --duration in (0, 600]")

    paths = sorted(Path(args.images).glob("*.jpg"))
    if args.split:
        wanted = split_ids(args.model, args.split)
        paths = [p for p in paths if p.stem in wanted]
    images = [p.read_bytes() for p in paths[: args.max_images]]
    if not images:
        ap.error(f"no .jpg images in {args.images}" + (f" of the model's '{args.split}' split" if args.split else ""))
    configs = dict(COMPARE) if args.compare else {}
    for item in args.config:
        name, _, flags = item.partition("=")
        configs[name] = flags
    if not configs:
        configs["serve" + (f" --workers {args.workers}" if args.workers else "")] = ""
    extra = ["--workers", str(args.workers)] if args.workers else []
    rows = {}
    for name, flags in configs.items():
        model, serve_flags = row_model(args.model, shlex.split(flags))
        rows[name] = run_config(model, images, serve_flags + extra, args)
        print(f"{name}: {rows[name]['rps']:.1f} requests/s", file=sys.stderr, flush=True)
    print(f"\n{args.model} · {args.clients} clients · {len(images)} images cycled · {os.cpu_count()} CPU cores"
          f"{' · heat-maps' if args.heatmap else ''}\n")
    print("| configuration | serve flags | requests | seconds | requests/s | p50 ms | p95 ms | p99 ms | errors | "
          "status codes | /healthz after |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for name, r in rows.items():
        print(f"| {name} | `{configs[name] or '(none)'}` | {r['requests']} | {r['seconds']:.1f} | {r['rps']:.1f} | "
              f"{r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | {r['errors']} | {r['codes']} | {r['alive']} |")
    if args.metrics:
        name, last = list(rows.items())[-1]
        print(f"\n/metrics of '{name}' after the run (excerpt):\n")
        print("\n".join(line for line in last["metrics"].splitlines() if line.startswith(METRIC_PREFIXES)))


if __name__ == "__main__":
    main()
