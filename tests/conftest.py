"""Shared fixtures: the real data beside the checkout (read-only), throw-away cache directories, the one tiny-run
recipe (``TINY``, ``tiny_run``), tiny untrained run directories and small real-image datasets."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lesionlab.data.prepare import PreparedData
from lesionlab.data.table import LesionDataset
from lesionlab.data.taxonomy import get_taxonomy

SHARED_ENV = "LESIONLAB_SHARED_DATA"
HAM7_CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")  # lesionlab.data.taxonomy.HAM7.classes

# The one tiny-model recipe for tests that train through ``lesionlab train`` (or ``load_config``): a tiny ResNet at
# 16 px for one epoch, no TTA, no Grad-CAM gallery, no loader worker processes. A test appends what it needs (its data,
# size, epochs): the last override of a key wins.
TINY = ("model.backbone=tiny-resnet", "data.image_size=16", "train.epochs=1", "train.batch_size=16",
        "train.progress=false", "train.trainer.num_workers=0", "eval.tta=none", "eval.gradcam_images=0")


def _shared_data_dir() -> Path:
    """``$LESIONLAB_SHARED_DATA``, else the ``shared/data`` folder beside the repository."""
    if os.environ.get(SHARED_ENV):
        return Path(os.environ[SHARED_ENV]).expanduser()
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that read the real data carry the ``realdata`` marker, so ``-m 'not realdata'`` deselects them."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realdata)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real data folder (HAM10000 + ISIC 2019 tables); skips when it is not there.

    The files are CC BY-NC: tests read them or copy them into ``tmp_path``, never into the repository.
    """
    root = _shared_data_dir()
    if not (root / "ham10000" / "HAM10000_metadata.csv").is_file():
        pytest.skip(f"real data not found at {root} (set ${SHARED_ENV} or place shared/data beside the checkout)")
    return root


@pytest.fixture(scope="session")
def ham_images_dir(shared_data: Path) -> Path:
    """The 10,015 HAM10000 images at 200x150."""
    folder = shared_data / "ham10000" / "images_200x150"
    if not folder.is_dir():
        pytest.skip(f"HAM10000 images not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def isic_ground_truth(shared_data: Path) -> Path:
    path = shared_data / "isic2019" / "ISIC_2019_Training_GroundTruth.csv"
    if not path.is_file():
        pytest.skip(f"ISIC 2019 ground truth not found at {path}")
    return path


@pytest.fixture(scope="session")
def ham_metadata(shared_data: Path) -> pd.DataFrame:
    """The official HAM10000 metadata table (10,015 rows). Do not modify it: it is shared by the session."""
    return pd.read_csv(shared_data / "ham10000" / "HAM10000_metadata.csv")


@pytest.fixture
def copy_ham_images(ham_images_dir: Path, ham_metadata: pd.DataFrame, tmp_path: Path):
    """Factory: copy ``n`` real images (classes interleaved, deterministic) into ``tmp_path/<folder>``."""

    def copy(n: int, folder: str = "images") -> list[Path]:
        ids = ham_metadata.groupby("dx")["image_id"].apply(list)
        order = [i for group in zip(*ids.to_list(), strict=False) for i in group][:n]
        dest = tmp_path / folder
        dest.mkdir(parents=True, exist_ok=True)
        return [Path(shutil.copy2(ham_images_dir / f"{i}.jpg", dest / f"{i}.jpg")) for i in order]

    return copy


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """An empty folder for image-array caches."""
    path = tmp_path / "cache"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing a test does may write into the user's real cache directory."""
    monkeypatch.setenv("LESIONLAB_CACHE", str(tmp_path_factory.getbasetemp() / "lesionlab-cache"))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    """Factory: ``lesionlab train`` (or ``command``, e.g. ``cv``) with :data:`TINY` + ``overrides``; returns the one
    run directory it made.

    ``out`` is the output directory (a fresh temporary one by default), ``data_root`` the ``--data-root``. Session
    scoped, so module- and session-scoped fixtures can share one trained run among many tests.
    """
    from lesionlab.cli import main

    def train(*overrides: str, name: str = "tiny", out: Path | None = None, data_root: str | Path | None = None,
              command: str = "train") -> Path:
        out = Path(out) if out is not None else tmp_path_factory.mktemp(f"{name}-runs")
        before = set(out.iterdir()) if out.is_dir() else set()
        root = ["--data-root", str(data_root)] if data_root is not None else []
        assert main(["-q", command, *root, "--output-dir", str(out), f"name={name}", *TINY, *overrides]) == 0
        (run,) = [p for p in out.iterdir() if p.is_dir() and p not in before]
        return run

    return train


# Tiny untrained runs and small real-image datasets (no full-dataset cache is built).

def make_run(root: Path, *, seed: int = 0, size: int = 16, tta: str = "none", temperature: float = 1.0,
             splits: pd.DataFrame | None = None) -> Path:
    """A run directory holding a random tiny-resnet ``model.pt`` (and ``splits.csv`` when given)."""
    import torch

    from lesionlab.config import ModelConfig
    from lesionlab.models.checkpoint import Preprocessing, save_model
    from lesionlab.models.classifier import create_model

    torch.manual_seed(seed)
    model = create_model(ModelConfig(backbone="tiny-resnet", drop_rate=0.0), len(HAM7_CLASSES)).eval()
    prep = Preprocessing(image_size=size, crop="center-square", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                         class_names=HAM7_CLASSES, taxonomy="ham7", temperature=temperature, tta=tta)
    root.mkdir(parents=True, exist_ok=True)
    save_model(root / "model.pt", model, ModelConfig(backbone="tiny-resnet", drop_rate=0.0), prep)
    if splits is not None:
        splits.to_csv(root / "splits.csv", index=False)
    return root


@pytest.fixture
def run_factory(tmp_path: Path):
    def factory(name: str = "run", **kwargs) -> Path:
        return make_run(tmp_path / name, **kwargs)

    return factory


@pytest.fixture
def random_images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(12, 16, 16, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def ham_masks_dir(shared_data: Path) -> Path:
    folder = shared_data / "ham10000" / "masks_200x150"
    if not folder.is_dir():
        pytest.skip(f"HAM10000 lesion masks not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def real_csv_dataset(ham_images_dir: Path, ham_metadata: pd.DataFrame,
                     tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``images/`` with 20 real images per class (whole lesions) and ``labels.csv`` (image, dx, lesion_id)."""
    folder = tmp_path_factory.mktemp("realcsv")
    rng = np.random.default_rng(0)
    picks = []
    for _, group in ham_metadata.groupby("dx"):
        lesions = group["lesion_id"].unique()
        rng.shuffle(lesions)
        chosen = group[group["lesion_id"].isin(lesions[:16])].head(20)
        picks.append(chosen)
    table = pd.concat(picks)
    (folder / "images").mkdir()
    for image_id in table["image_id"]:
        shutil.copy2(ham_images_dir / f"{image_id}.jpg", folder / "images" / f"{image_id}.jpg")
    table.assign(image="images/" + table["image_id"] + ".jpg")[["image", "dx", "lesion_id"]].to_csv(
        folder / "labels.csv", index=False)
    return folder


@pytest.fixture(scope="session")
def cv_dir(real_csv_dataset: Path, ham_masks_dir: Path, tmp_path_factory: pytest.TempPathFactory, tiny_run) -> Path:
    """A 2-fold cross-validation ensemble of a tiny model for 1 epoch on ~140 real images (every report section on),
    trained by ``lesionlab cv`` with ``data.split.folds`` in the config (its K when --folds is not given)."""
    root = tiny_run("data.split.folds=2", "data.dataset=csv", f"data.csv={real_csv_dataset / 'labels.csv'}",
                    "data.image_size=24", f"data.cache_dir={tmp_path_factory.mktemp('cvcache')}", "train.ema_decay=0",
                    "eval.tta=flips", "eval.gradcam_images=7", f"eval.mask_dir={ham_masks_dir}", name="t",
                    command="cv")
    assert root.name.startswith("t-cv2-")
    return root


@pytest.fixture(scope="session")
def small_ham_csv(ham_images_dir: Path, ham_metadata: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``labels.csv`` (image_id, label, lesion_id) + 140 real HAM10000 images, classes interleaved.

    A ``csv`` dataset over it caches in a second instead of decoding all 10,015 images.
    """
    dest = tmp_path_factory.mktemp("small_ham")
    ids = ham_metadata.groupby("dx")["image_id"].apply(list)
    order = [i for group in zip(*[v[:40] for v in ids.to_list()], strict=False) for i in group][:140]
    meta = ham_metadata.set_index("image_id").loc[order]
    for image_id in order:
        shutil.copy2(ham_images_dir / f"{image_id}.jpg", dest / f"{image_id}.jpg")
    pd.DataFrame({"image_id": order, "label": meta["dx"].to_numpy(), "lesion_id": meta["lesion_id"].to_numpy()}
                 ).to_csv(dest / "labels.csv", index=False)
    return dest / "labels.csv"


# Synthetic prepared data (training, engine tests): tiny uint8 images whose split is visible in the pixels.
HELD_OUT_VALUE = 255  # every validation/test pixel; training pixels stay <= TRAIN_MAX
TRAIN_MAX = 100


def make_prepared(per_class_train: list[int], per_class_held: int = 3, size: int = 8, seed: int = 0) -> PreparedData:
    """A ham7 dataset: ``per_class_train[c]`` training images per class, ``per_class_held`` val and test each.

    Training images have random pixels in [0, TRAIN_MAX]; validation and test images are all HELD_OUT_VALUE, so any
    resampling that touched them would leave pixels above TRAIN_MAX. Image rows are shuffled relative to the table.
    """
    taxonomy = get_taxonomy("ham7")
    rng = np.random.default_rng(seed)
    rows = []
    for c, name in enumerate(taxonomy.classes):
        for split, n in (("train", per_class_train[c]), ("val", per_class_held), ("test", per_class_held)):
            rows += [{"label": name, "split": split} for _ in range(n)]
    table = pd.DataFrame(rows)
    table["image_id"] = [f"img{i:04d}" for i in range(len(table))]
    table["lesion_id"] = [f"les{i:04d}" for i in range(len(table))]
    n = len(table)
    images = np.full((n, size, size, 3), HELD_OUT_VALUE, dtype=np.uint8)
    image_rows = rng.permutation(n)  # table position p ↔ images[image_rows[p]]
    train = table["split"].to_numpy() == "train"
    images[image_rows[train]] = rng.integers(0, TRAIN_MAX + 1, size=(int(train.sum()), size, size, 3))
    return PreparedData(LesionDataset("synthetic", taxonomy, table), images, image_rows, None,
                        pd.DataFrame())


@pytest.fixture
def prepared() -> PreparedData:
    return make_prepared([30, 12, 9, 6, 20, 60, 4])


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven class folders of 12 random 16 px images whose mean colour depends on the class (learnable)."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for c, name in enumerate(get_taxonomy("ham7").classes):
        (root / name).mkdir()
        for k in range(12):
            base = np.array([30 * c, 255 - 30 * c, 120], dtype=np.int16)
            img = np.clip(base + rng.integers(-40, 41, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{name}_{k}.png")
    return root
