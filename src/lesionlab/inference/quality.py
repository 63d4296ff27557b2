"""The input quality gate: refuse images the model cannot judge *before* the model sees them.

Checks on the decoded, upright RGB image: too small, extreme aspect ratio, near-uniform (blank), badly under- or
over-exposed, blurred. Photometric statistics are measured on a copy resized so its short side is
:data:`WORK_SIDE` pixels, so a threshold means the same for a 200x150 and a 4000x3000 upload. The default
thresholds reject none of the 10,015 HAM10000 images (distribution in ``docs/results/quality-gate.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from lesionlab.config import ConfigError
from lesionlab.errors import LesionLabError

#: Short side (pixels) of the working copy the photometric statistics are measured on.
WORK_SIDE = 128
DARK, BRIGHT = 8, 247  # luminance at or below / at or above counts as clipped (0..255)


class NotAssessableError(LesionLabError, ValueError):
    """The image is valid but the model cannot judge it (blank, tiny, extreme shape, exposure, blur)."""

    def __init__(self, name: str, reasons: list[str]) -> None:
        self.name, self.reasons = name, list(reasons)
        super().__init__(f"{name}: not assessable: {'; '.join(reasons)}. Take a dermatoscopic photo of the lesion "
                         "(in focus, evenly lit, filling most of the frame) and try again.")


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds of the gate; ``enabled=False`` turns it off. Defaults: see ``docs/results/quality-gate.md``."""

    enabled: bool = True
    min_side: int = 16  # pixels, short side of the upload (DermaMNIST images are 28 px)
    max_aspect: float = 4.0  # long side / short side
    min_contrast: float = 3.0  # std of luminance (0..255) on the working copy: below = near-uniform/blank
    min_brightness: float = 15.0  # mean luminance: below = under-exposed
    max_brightness: float = 240.0  # mean luminance: above = over-exposed
    max_clipped: float = 0.90  # share of pixels clipped dark or bright
    min_sharpness: float = 2.5  # variance of the Laplacian of the luminance on the working copy: below = blurred

    def __post_init__(self) -> None:
        checks = [(self.min_side >= 1, "min_side must be at least 1"), (self.max_aspect >= 1, "max_aspect must be ≥ 1"),
                  (self.min_contrast >= 0, "min_contrast must be ≥ 0"),
                  (0 <= self.min_brightness < self.max_brightness <= 255,
                   "need 0 ≤ min_brightness < max_brightness ≤ 255"),
                  (0 < self.max_clipped <= 1, "max_clipped must lie in (0, 1]"),
                  (self.min_sharpness >= 0, "min_sharpness must be ≥ 0")]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"quality.{message}")

    @classmethod
    def from_overrides(cls, items: list[str] | tuple[str, ...]) -> QualityConfig:
        """``["min_side=64", "enabled=false"]`` → a config (the CLI's ``--quality KEY=VALUE``)."""
        values: dict[str, object] = {}
        known = cls.__dataclass_fields__
        for item in items:
            key, sep, raw = item.partition("=")
            if not sep or key not in known:
                raise ConfigError(f"--quality {item!r}: expected KEY=VALUE with KEY one of {', '.join(known)}")
            if key == "enabled":
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ConfigError(f"--quality enabled must be true or false, got {raw!r}")
                values[key] = raw.lower() in ("true", "1")
                continue
            try:
                values[key] = int(raw) if key == "min_side" else float(raw)
            except ValueError:
                raise ConfigError(f"--quality {key} must be a number, got {raw!r}") from None
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class QualityReport:
    """The measured statistics of one image and the reasons it fails (empty: it passes)."""

    width: int
    height: int
    stats: dict[str, float] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.reasons


def image_statistics(img: Image.Image) -> dict[str, float]:
    """Aspect ratio, luminance contrast/brightness, clipped share and sharpness of an RGB image."""
    w, h = img.size
    stats = {"width": float(w), "height": float(h), "aspect": max(w, h) / max(1, min(w, h))}
    scale = WORK_SIDE / max(1, min(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if max(size) > 8 * WORK_SIDE:  # extreme strips: keep the working copy small (they fail on aspect anyway)
        f = 8 * WORK_SIDE / max(size)
        size = (max(1, round(size[0] * f)), max(1, round(size[1] * f)))
    luma = np.asarray(img.convert("L").resize(size, Image.Resampling.BILINEAR), dtype=np.float64)
    stats.update(contrast=float(luma.std()), brightness=float(luma.mean()),
                 clipped=float(((luma <= DARK) | (luma >= BRIGHT)).mean()), sharpness=_laplacian_variance(luma))
    return stats


def _laplacian_variance(luma: np.ndarray) -> float:
    if min(luma.shape) < 3:
        return 0.0
    lap = (luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4 * luma[1:-1, 1:-1])
    return float(lap.var())


def assess_quality(img: Image.Image, cfg: QualityConfig | None = None) -> QualityReport:
    """Measure ``img`` (decoded RGB) and list every threshold of ``cfg`` it fails."""
    cfg = cfg or QualityConfig()
    stats = image_statistics(img)
    w, h = img.size
    reasons = []
    if min(w, h) < cfg.min_side:
        reasons.append(f"too small to assess ({w}x{h} px; the short side must be at least {cfg.min_side} px)")
    if stats["aspect"] > cfg.max_aspect:
        reasons.append(f"extreme aspect ratio {stats['aspect']:.1f}:1 (at most {cfg.max_aspect:g}:1)")
    if stats["contrast"] < cfg.min_contrast:
        reasons.append(f"near-uniform image (luminance std {stats['contrast']:.1f} < {cfg.min_contrast:g}): blank?")
    elif stats["sharpness"] < cfg.min_sharpness:  # a blank image is also "blurred"; name the real problem only
        reasons.append(f"blurred (Laplacian variance {stats['sharpness']:.2f} < {cfg.min_sharpness:g})")
    if stats["brightness"] < cfg.min_brightness:
        reasons.append(f"under-exposed (mean luminance {stats['brightness']:.0f} < {cfg.min_brightness:g})")
    if stats["brightness"] > cfg.max_brightness:
        reasons.append(f"over-exposed (mean luminance {stats['brightness']:.0f} > {cfg.max_brightness:g})")
    if stats["clipped"] > cfg.max_clipped:
        reasons.append(f"{100 * stats['clipped']:.0f}% of pixels clipped to black or white (at most "
                       f"{100 * cfg.max_clipped:g}%)")
    return QualityReport(w, h, stats, tuple(reasons))


def check_quality(img: Image.Image, cfg: QualityConfig | None, name: str) -> QualityReport | None:
    """Raise :class:`NotAssessableError` when ``img`` fails the gate; ``None`` when the gate is off."""
    if cfg is not None and not cfg.enabled:
        return None
    report = assess_quality(img, cfg)
    if not report.ok:
        raise NotAssessableError(name, list(report.reasons))
    return report
