"""``lesionlab serve`` settings (kept beside the serving code; the experiment configs live in ``lesionlab.config``)."""

from __future__ import annotations

from dataclasses import dataclass

from lesionlab.config import _check


@dataclass
class ServeConfig:
    """``lesionlab serve``: where to listen and the limits that keep the service answering under bad input."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_request_mb: float = 20.0  # whole request body (413 above it)
    max_pixels: int = 40_000_000  # decoded image size (413 above it; decompression bombs)
    max_batch: int = 16  # images per /v1/predict/batch request
    workers: int = 2  # concurrent inferences; further requests wait for a slot
    queue_timeout_s: float = 30.0  # 503 when no slot frees up within this time
    topk: int = 3

    def __post_init__(self) -> None:
        _check(0 <= self.port <= 65535, f"serve.port must lie in [0, 65535], got {self.port}")
        _check(self.max_request_mb > 0, "serve.max_request_mb must be positive")
        _check(self.max_pixels >= 64 * 64, "serve.max_pixels must be at least 4096")
        _check(self.max_batch >= 1, "serve.max_batch must be at least 1")
        _check(self.workers >= 1, "serve.workers must be at least 1")
        _check(self.queue_timeout_s > 0, "serve.queue_timeout_s must be positive")
        _check(self.topk >= 1, "serve.topk must be at least 1")
