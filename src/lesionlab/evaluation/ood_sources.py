"""Non-lesion images grouped by where they come from, for fitting OOD detectors with outlier exposure and for judging
them by held-out source (fit and choose without one group, score on that group).

Every group is built offline from files that installed packages ship, or drawn procedurally:

- photo collections: scikit-image's photographs, textures, scientific/medical images and LFW faces; scikit-learn's
  two sample photographs; matplotlib's sample photograph; mahotas' demo images (MIT, optional); pydicom's test files
  (CT, MR, ultrasound, nuclear medicine; MIT, optional); graphics (drawings, logos, phantoms, scanned text);
- synthetic kinds: the OOD benchmark's noise, blank, gradient, checkerboard and rendered text, plus fractal
  ("plasma") noise, stripes and random shapes.

Each photograph appears whole, as its centre crop and as ``augment`` altered copies (a random crop, a hue, saturation
or brightness change, blur, a grey version, a rotation), so that a detector learns what a kind of image looks like
rather than one file. A group whose package is missing is empty (and logged), never an error.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from lesionlab.evaluation.ood_benchmark import SYNTHETIC, _rgb

logger = logging.getLogger(__name__)

SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "clock", "stereo_motorcycle")
SKIMAGE_TEXTURES = ("brick", "grass", "gravel")
SKIMAGE_SCIENCE = ("hubble_deep_field", "retina", "immunohistochemistry", "cell", "microaneurysms")
SKIMAGE_GRAPHICS = ("colorwheel", "logo", "horse", "page", "text", "shepp_logan_phantom")
DICOM_MODALITIES = ("CT", "MR", "US", "NM")
PHOTO_TARGET = 24  # a photo group with few files gets more altered copies, up to about this many images


@dataclass(frozen=True)
class SourceGroup:
    """One source of non-lesion images: its name, its kind (photo, medical, graphics, synthetic), where it comes
    from, and its images (``(label, RGB PIL image)``; the label says which file and which alteration)."""

    name: str
    kind: str
    origin: str
    images: list[tuple[str, Image.Image]]


def _load_skimage(names: tuple[str, ...]) -> list[tuple[str, Image.Image]]:
    try:
        from skimage import data
    except ImportError:  # pragma: no cover - scikit-image is a test extra
        return []
    out = []
    for name in names:
        try:
            a = getattr(data, name)()
        except Exception as exc:  # some need an optional download (pooch)
            logger.info("skimage.data.%s unavailable (%s)", name, exc)
            continue
        a = a[0] if isinstance(a, tuple) else a  # stereo_motorcycle: (left, right, disparity)
        out.append((name, _rgb(a)))
    return out


def _package_files(package: str, pattern: str, names: tuple[str, ...] | None = None) -> list[Path]:
    try:
        module = __import__(package)
    except ImportError:
        logger.info("%s is not installed: its images are left out", package)
        return []
    files = sorted(Path(module.__file__).parent.glob(pattern))
    return [f for f in files if names is None or f.name in names]


def _open(files: list[Path]) -> list[tuple[str, Image.Image]]:
    out = []
    for f in files:
        with Image.open(f) as im:
            out.append((f.name, im.convert("RGB")))
    return out


def _lfw(n: int = 40) -> list[tuple[str, Image.Image]]:
    try:
        from skimage import data

        faces = data.lfw_subset()
    except Exception:  # pragma: no cover
        return []
    return [(f"lfw_{i}", _rgb(faces[i])) for i in range(0, len(faces), max(1, len(faces) // n))][:n]


def _dicom() -> list[tuple[str, Image.Image]]:
    try:
        import pydicom
        from pydicom.data import get_testdata_files
    except ImportError:
        logger.info("pydicom is not installed: the clinical-imaging group is empty")
        return []
    out, seen = [], set()
    for path in sorted(get_testdata_files("*.dcm")):
        name = Path(path).name
        stem = name.split("_")[0] + name.split("_")[1] if "_" in name else name
        try:
            ds = pydicom.dcmread(path)
            if getattr(ds, "Modality", "") not in DICOM_MODALITIES or stem in seen:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                a = np.asarray(ds.pixel_array)  # pydicom >= 3 returns colour images as RGB
        except Exception:  # pixel data needing a codec that is not installed
            continue
        if a.ndim == 4 or (a.ndim == 3 and a.shape[-1] != 3):
            a = a[0]  # first frame
        if min(a.shape[:2]) < 32:
            continue
        seen.add(stem)
        lo, hi = np.percentile(a, (0.5, 99.5))
        out.append((name, _rgb(np.clip((a.astype(np.float64) - lo) / max(hi - lo, 1e-9), 0, 1))))
    return out


def augment(img: Image.Image, rng: np.random.Generator) -> tuple[str, Image.Image]:
    """One altered copy: a random square crop (35-90 % of the short side), then one of a hue/saturation/brightness
    change, blur, grey, or a rotation."""
    w, h = img.size
    side = max(16, int(min(w, h) * rng.uniform(0.35, 0.9)))
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    out = img.crop((x, y, x + side, y + side))
    kind = ("colour", "blur", "grey", "rotate")[int(rng.integers(4))]
    if kind == "colour":
        hsv = np.asarray(out.convert("HSV")).astype(np.int16)
        hsv[..., 0] = (hsv[..., 0] + int(rng.integers(0, 256))) % 256
        out = Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")
        out = ImageEnhance.Color(out).enhance(rng.uniform(0.5, 1.5))
        out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.7, 1.3))
    elif kind == "blur":
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 3.0)))
    elif kind == "grey":
        out = out.convert("L").convert("RGB")
    else:
        out = out.rotate(float(rng.uniform(10, 350)), resample=Image.BILINEAR, expand=False)
    return kind, out


def centre_crop(img: Image.Image) -> Image.Image:
    w, h = img.size
    side = min(w, h)
    return img.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))


def _with_views(files: list[tuple[str, Image.Image]], rng: np.random.Generator,
                target: int = PHOTO_TARGET) -> list[tuple[str, Image.Image]]:
    """Each file whole, its centre crop and altered copies (more copies for a group of few files)."""
    if not files:
        return []
    copies = max(2, math.ceil(target / len(files)) - 2)
    out = []
    for name, img in files:
        out += [(f"{name} (whole)", img), (f"{name} (centre crop)", centre_crop(img))]
        for _ in range(copies):
            kind, aug = augment(img, rng)
            out.append((f"{name} ({kind})", aug))
    return out


def _plasma(n: int, rng: np.random.Generator, size: int) -> list[Image.Image]:
    """Fractal noise: octaves of upsampled random fields, coloured through a random pair of colours."""
    out = []
    for _ in range(n):
        field = np.zeros((size, size))
        for octave in range(1, 6):
            cells = 2 ** octave
            small = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8))
            field += np.asarray(small.resize((size, size), Image.BICUBIC), dtype=np.float64) / 2 ** octave
        t = (field - field.min()) / max(np.ptp(field), 1e-9)
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        out.append(Image.fromarray((a + (b - a) * t[..., None]).astype(np.uint8)))
    return out


def _stripes(n: int, rng: np.random.Generator, size: int) -> list[Image.Image]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = []
    for _ in range(n):
        angle, period = rng.uniform(0, np.pi), rng.uniform(6, size / 3)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period)
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        out.append(Image.fromarray((a + (b - a) * t[..., None]).astype(np.uint8)))
    return out


def _shapes(n: int, rng: np.random.Generator, size: int) -> list[Image.Image]:
    out = []
    for _ in range(n):
        img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(3, 12))):
            box = sorted(rng.integers(0, size, 2)), sorted(rng.integers(0, size, 2))
            xy = [int(box[0][0]), int(box[1][0]), int(box[0][1]) + 4, int(box[1][1]) + 4]
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(xy, fill=fill)
        out.append(img)
    return out


PROCEDURAL: dict[str, Callable[[int, np.random.Generator, int], list[Image.Image]]] = {
    **SYNTHETIC, "plasma": _plasma, "stripes": _stripes, "shapes": _shapes}


def source_groups(seed: int = 0, per_synthetic: int = 24, size: int = 256,
                  photo_target: int = PHOTO_TARGET) -> list[SourceGroup]:
    """All groups, in a fixed order, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    mpl = _package_files("matplotlib", "mpl-data/sample_data/*")
    photos: list[tuple[str, str, str, list[tuple[str, Image.Image]]]] = [
        ("skimage photos", "photo", "scikit-image skimage.data (BSD-3)", _load_skimage(SKIMAGE_PHOTOS)),
        ("skimage textures", "photo", "scikit-image skimage.data (BSD-3)", _load_skimage(SKIMAGE_TEXTURES)),
        ("skimage science", "medical", "scikit-image skimage.data: retina, IHC, cells, Hubble (BSD-3)",
         _load_skimage(SKIMAGE_SCIENCE)),
        ("sklearn photos", "photo", "scikit-learn load_sample_images (BSD-3; CC-BY photos)",
         _open(_package_files("sklearn", "datasets/images/*.jpg"))),
        ("matplotlib photo", "photo", "matplotlib sample_data grace_hopper.jpg (PSF/BSD)",
         _open([f for f in mpl if f.name == "grace_hopper.jpg"])),
        ("mahotas demos", "photo", "mahotas demos/data (MIT), lena left out",
         _open(_package_files("mahotas", "demos/data/*", ("DepartmentStore.jpg", "luispedro.jpg", "nuclear.png")))),
        ("clinical imaging", "medical", "pydicom test files: CT, MR, ultrasound, nuclear medicine (MIT)", _dicom()),
    ]
    groups = [SourceGroup(name, kind, origin, _with_views(files, rng, photo_target))
              for name, kind, origin, files in photos]
    groups.append(SourceGroup("faces", "photo", "scikit-image lfw_subset (25x25 faces)", _lfw()))
    graphics = _load_skimage(SKIMAGE_GRAPHICS) + _open([f for f in mpl if f.suffix == ".png"])
    groups.append(SourceGroup("graphics", "graphics", "scikit-image drawings/phantom/text, matplotlib logos",
                              _with_views(graphics, rng, 2 * photo_target)))
    for name, make in PROCEDURAL.items():
        groups.append(SourceGroup(f"synthetic {name}", "synthetic", "procedural",
                                  [(f"{name} {i}", im) for i, im in enumerate(make(per_synthetic, rng, size))]))
    for g in groups:
        if not g.images:
            logger.warning("OOD source group %r is empty (%s not installed?)", g.name, g.origin)
    return [g for g in groups if g.images]


def source_groups_summary(seed: int = 0) -> list[tuple[str, str, str, int]]:
    """``(name, kind, origin, images)`` of every non-empty group."""
    return [(g.name, g.kind, g.origin, len(g.images)) for g in source_groups(seed)]
