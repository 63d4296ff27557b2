"""Serving fixtures: one tiny model trained once per session on real images, its ONNX export, sample images."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def serving_run(shared_data: Path, tiny_run) -> Path:
    """tiny-resnet, 32 px, 1 epoch on ~400 HAM10000 images (lesion-disjoint split), flips TTA."""
    return tiny_run("data.max_samples=400", "data.image_size=32", "train.batch_size=32", "eval.tta=flips",
                    name="serve", data_root=shared_data)


@pytest.fixture(scope="session")
def onnx_file(serving_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The serving run exported by ``lesionlab export`` (ONNX, the default format), once per session."""
    from lesionlab.cli import main

    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["-q", "export", str(serving_run), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def unseen_images(serving_run: Path, shared_data: Path) -> list[Path]:
    """Original 600x450 HAM10000 JPEGs whose image and lesion the run never trained or validated on."""
    splits = pd.read_csv(serving_run / "splits.csv", dtype=str)
    seen = splits[splits["split"] != "test"]
    meta = pd.read_csv(shared_data / "ham10000" / "HAM10000_metadata.csv", dtype=str).set_index("image_id")
    seen_lesions = set(seen["lesion_id"])
    folder = shared_data / "ham10000" / "images_600x450"
    images = [p for p in sorted(folder.glob("*.jpg"))
              if p.stem not in set(seen["image_id"]) and meta.loc[p.stem, "lesion_id"] not in seen_lesions]
    assert len(images) >= 16
    return images[:16]


@pytest.fixture(scope="session")
def jpeg_bytes(unseen_images: list[Path]) -> bytes:
    return unseen_images[0].read_bytes()


@pytest.fixture(scope="session")
def predictor(serving_run: Path):
    from lesionlab.serving.predictor import Predictor

    return Predictor.load(serving_run)


def encode(img: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def small_limits_app(predictor):
    """The tiny model served with small limits (2 MiB requests, 4 M pixels, 4 images per batch)."""
    from lesionlab.config.serving import ServeConfig
    from lesionlab.serving.api import create_app

    return create_app(predictor, ServeConfig(max_request_mb=2, max_pixels=4_000_000, max_batch=4))


@pytest.fixture(scope="session")
def app(predictor):
    return small_limits_app(predictor)


@pytest.fixture(scope="session")
def live_url(app):
    """The app served by uvicorn on 127.0.0.1 (a free port) for the whole session."""
    from lesionlab.serving.server import BackgroundServer

    with BackgroundServer(app) as url:
        yield url


@pytest.fixture(scope="session")
def seen_image(serving_run: Path, shared_data: Path) -> Path:
    """An original 600x450 HAM10000 JPEG from the run's training split."""
    splits = pd.read_csv(serving_run / "splits.csv", dtype=str)
    image_id = splits.loc[splits["split"] == "train", "image_id"].iloc[0]
    return shared_data / "ham10000" / "images_600x450" / f"{image_id}.jpg"
