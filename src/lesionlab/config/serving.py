"""``lesionlab serve`` settings (kept beside the serving code; the experiment configs live in ``lesionlab.config``).

Each :class:`ServeConfig` field carries its command-line flag and help text, so ``lesionlab serve --help`` and the
config cannot drift: :func:`add_serve_arguments` builds the flags, :func:`serve_config_from_args` reads them back.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from lesionlab.config import _check

ACCESS_LOGS = ("text", "json", "off")
TTA_CHOICES = ("model", "none", "flips", "d4", "cascade")
ENGINES = ("fast", "general")


def _opt(help: str, flag: str | None = None, **kwargs: Any) -> dict[str, Any]:
    return {"help": help, "flag": flag, **kwargs}


@dataclass
class ServeConfig:
    """``lesionlab serve``: where to listen, the limits that keep the service answering under bad input, and the
    inference knobs (dynamic batching, threads, test-time augmentation)."""

    host: str = field(default="127.0.0.1", metadata=_opt(
        "interface to bind (default %(default)s: this machine only; use 0.0.0.0 to expose it)"))
    port: int = field(default=8000, metadata=_opt("TCP port (default %(default)s)"))
    max_request_mb: float = field(default=20.0, metadata=_opt(
        "largest request body in MiB (default %(default)g; 413 above)"))
    max_pixels: int = field(default=40_000_000, metadata=_opt(
        "largest decoded image in pixels (default %(default)s; 413 above; decompression bombs)"))
    max_batch: int = field(default=16, metadata=_opt(
        "images per /v1/predict/batch request (default %(default)s; 422 too_many_images above)"))
    workers: int = field(default=2, metadata=_opt(
        "inference workers: each runs one batch at a time with --threads threads; further requests queue "
        "(default %(default)s)"))
    queue_timeout_s: float = field(default=30.0, metadata=_opt(
        "seconds a request may wait for a worker before 503 busy (default %(default)g)", "--queue-timeout"))
    topk: int = field(default=3, metadata=_opt("diagnoses listed (default %(default)s)"))
    batch_size: int = field(default=32, metadata=_opt(
        "dynamic batching: concurrent requests are gathered into one forward pass of at most this many images "
        "(default %(default)s; 1 turns batching off)"))
    batch_wait_ms: float = field(default=2.0, metadata=_opt(
        "dynamic batching: how long a worker waits for more requests to fill a batch once it has one "
        "(default %(default)g ms; 0: take only what is already queued)"))
    engine: str = field(default="fast", metadata=_opt(
        "fast: one call per member over all TTA views, the OOD features taken from the same call, ONNX Runtime when "
        "a model.onnx lies beside each model.pt (the built-in model ships both); general: the predictor's own path "
        "on the loaded model (each view, then a second pass for the OOD flag), for comparison (default %(default)s)",
        choices=ENGINES))
    threads: int = field(default=0, metadata=_opt(
        "ONNX Runtime / PyTorch intra-op threads per worker (default 0: the CPU cores divided by --workers)"))
    tta: str = field(default="model", metadata=_opt(
        "test-time augmentation when a request does not choose one (?tta=): 'model' = the model's stored serving "
        "policy (its test-time cascade when it stores one, as the built-in model does: no TTA, then 8-view TTA only "
        "for images whose answer is fragile; its own TTA policy otherwise, under --engine general or with a --members "
        "subset), or none | flips | d4 | cascade (default %(default)s)", choices=TTA_CHOICES))
    members: str = field(default="all", metadata=_opt(
        "ensemble members the fast engine uses: all, or comma-separated indices such as 1 (their weights are "
        "renormalised; the OOD flag reads the same members) (default %(default)s)"))
    access_log: str = field(default="text", metadata=_opt(
        "access log: text (uvicorn's), json (one JSON object per request on stderr) or off (default %(default)s)",
        choices=ACCESS_LOGS))
    shift_window: int = field(default=500, metadata=_opt(
        "how many recent answered images GET /v1/shift compares with the training lesions (0: off; the fast engine "
        "only) (default %(default)s)"))

    def __post_init__(self) -> None:
        _check(0 <= self.port <= 65535, f"serve.port must lie in [0, 65535], got {self.port}")
        _check(self.max_request_mb > 0, "serve.max_request_mb must be positive")
        _check(self.shift_window >= 0, f"serve.shift_window must be >= 0, got {self.shift_window}")
        _check(self.max_pixels >= 64 * 64, "serve.max_pixels must be at least 4096")
        _check(self.max_batch >= 1, "serve.max_batch must be at least 1")
        _check(self.workers >= 1, "serve.workers must be at least 1")
        _check(self.queue_timeout_s > 0, "serve.queue_timeout_s must be positive")
        _check(self.topk >= 1, "serve.topk must be at least 1")
        _check(self.batch_size >= 1, "serve.batch_size must be at least 1 (1 turns dynamic batching off)")
        _check(0 <= self.batch_wait_ms <= 1000, f"serve.batch_wait_ms must lie in [0, 1000], got {self.batch_wait_ms}")
        _check(self.threads >= 0, "serve.threads must be 0 (automatic) or more")
        _check(self.tta in TTA_CHOICES, f"serve.tta must be one of {', '.join(TTA_CHOICES)}, got {self.tta!r}")
        _check(self.engine in ENGINES, f"serve.engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        _check(self.members == "all" or all(part.strip().isdigit() for part in self.members.split(",")),
               f"serve.members must be 'all' or comma-separated member indices such as 0,1; got {self.members!r}")
        _check(self.access_log in ACCESS_LOGS,
               f"serve.access_log must be one of {', '.join(ACCESS_LOGS)}, got {self.access_log!r}")

    @property
    def member_indices(self) -> list[int] | None:
        """``members`` as indices (None: all of them)."""
        return None if self.members == "all" else [int(part) for part in self.members.split(",")]

    @property
    def threads_per_worker(self) -> int:
        """``threads``, or an equal share of the CPU cores per worker (oversubscription slows every call)."""
        return self.threads or max(1, (os.cpu_count() or 1) // self.workers)


def _flag(f: Any) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`ServeConfig` field, with its help text and default."""
    for f in fields(ServeConfig):
        kwargs: dict[str, Any] = {"dest": f.name, "default": f.default, "help": f.metadata.get("help")}
        if f.default is not MISSING and not isinstance(f.default, bool):
            kwargs["type"] = type(f.default)
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        parser.add_argument(_flag(f), **kwargs)


def serve_config_from_args(args: argparse.Namespace) -> ServeConfig:
    """The :class:`ServeConfig` the flags of :func:`add_serve_arguments` describe."""
    return ServeConfig(**{f.name: getattr(args, f.name) for f in fields(ServeConfig)})
