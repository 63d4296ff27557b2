"""Dataset loaders on the real shared data and on small tables written into tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from lesionlab.config import DataConfig
from lesionlab.data.datasets import DATASETS, DatasetRequest, load_dataset
from lesionlab.data.table import COLUMNS, DatasetError, LesionDataset
from lesionlab.data.taxonomy import LabelMappingError

HAM_TOTALS = {"nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115}
ISIC8_TOTALS = {"MEL": 1113, "NV": 6705, "BCC": 514, "AK": 130, "BKL": 1099, "DF": 115, "VASC": 142, "SCC": 197}


def load(name: str, **kwargs) -> LesionDataset:
    return DATASETS.get(name)(DatasetRequest(**kwargs))


@pytest.fixture(scope="module")
def ham(shared_data: Path) -> LesionDataset:
    return load("ham10000", root=shared_data)


def test_ham10000(ham: LesionDataset, ham_images_dir: Path) -> None:
    assert len(ham) == 10_015
    assert ham.taxonomy.name == "ham7"
    assert ham.class_totals().to_dict() == HAM_TOTALS
    assert ham.table["lesion_id"].nunique() == 7_470
    assert list(ham.table.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert ham.table["image_id"].is_unique
    first = ham.table.iloc[0]
    assert Path(first["path"]) == ham_images_dir / f"{first['image_id']}.jpg"
    assert set(ham.table["sex"]) <= {"male", "female", "unknown"}
    assert (ham.table["source"] == "ham10000").all()
    assert (ham.targets() == ham.table["label"].map({c: i for i, c in enumerate(ham.class_names)})).all()
    summary = ham.summary()
    assert (summary["images"], summary["lesions"], summary["patients"]) == (10_015, 7_470, None)


def test_ham10000_with_isic_ground_truth(shared_data: Path, isic_ground_truth: Path) -> None:
    ds = load("ham10000", root=shared_data, options={"isic_ground_truth": str(isic_ground_truth)})
    assert ds.taxonomy.name == "isic8"
    assert ds.class_totals().to_dict() == ISIC8_TOTALS
    assert ds.table["lesion_id"].nunique() == 7_470


def test_isic2019_on_the_ham_images(shared_data: Path, ham_images_dir: Path) -> None:
    ds = load("isic2019", root=shared_data, image_dir=ham_images_dir, skip_missing=True)
    assert len(ds) == 10_015
    assert ds.taxonomy.name == "isic8"
    assert ds.class_totals().to_dict() == ISIC8_TOTALS
    assert (ds.class_totals() > 0).all()
    assert ds.table["lesion_id"].str.startswith("HAM_").all()  # lesion ids come from the ISIC metadata


def test_isic2019_without_skip_bad_names_the_missing(shared_data: Path, ham_images_dir: Path) -> None:
    missing = 25_331 - 10_015
    with pytest.raises(DatasetError, match=f"{missing} of 25331 images not found.*ISIC_0000000.*skip_bad"):
        load("isic2019", root=shared_data, image_dir=ham_images_dir)


@pytest.mark.parametrize(("target", "totals"), [
    ("triage", {"P1": 1113 + 514, "P2": 327 + 6705, "P3": 1099 + 115 + 142}),
    ("ham7", HAM_TOTALS),
])
def test_relabel(ham: LesionDataset, target: str, totals: dict[str, int]) -> None:
    relabelled = ham.relabel(target)
    assert relabelled.taxonomy.name == target
    assert relabelled.class_totals().to_dict() == totals
    assert len(relabelled) == len(ham)
    assert ham.taxonomy.name == "ham7"  # the original is unchanged


def test_relabel_ham7_to_isic8_refuses_akiec(ham: LesionDataset) -> None:
    with pytest.raises(DatasetError, match=r"\['akiec'\].*isic_ground_truth"):
        ham.relabel("isic8")


def test_load_dataset_relabels(shared_data: Path) -> None:
    ds = load_dataset(DataConfig(dataset="ham10000", root=str(shared_data), taxonomy="triage"))
    assert ds.class_totals().to_dict() == {"P1": 1627, "P2": 7032, "P3": 1356}


# ---- small tables in tmp_path -------------------------------------------------------------------------------


@pytest.fixture
def ten_images(copy_ham_images) -> list[Path]:
    return copy_ham_images(10, folder="imgs")


@pytest.mark.parametrize(("labels", "taxonomy", "classes"), [
    (["benign", "malignant"], "custom:csv", ("benign", "malignant")),
    (["mel", "NV"], "ham7", ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")),
    (["MEL", "SCC"], "isic8", ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")),
])
def test_csv_with_paths(tmp_path: Path, ten_images: list[Path], labels: list[str], taxonomy: str,
                        classes: tuple[str, ...]) -> None:
    rows = [{"path": f"imgs/{p.name}", "diagnosis": labels[i % 2], "lesion": f"L{i // 2}", "age": 40 + i,
             "gender": "F" if i % 2 else "male"} for i, p in enumerate(ten_images)]
    csv = tmp_path / "table.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    ds = load("csv", root=tmp_path, csv=csv)
    assert ds.taxonomy.name == taxonomy
    assert ds.class_names == classes
    assert len(ds) == 10
    assert ds.table["image_id"].tolist() == [p.stem for p in ten_images]
    assert ds.table["path"].tolist() == [str(p) for p in ten_images]
    assert ds.table["lesion_id"].tolist() == [f"L{i // 2}" for i in range(10)]
    assert ds.table["age"].tolist() == [40.0 + i for i in range(10)]
    assert ds.table["sex"].tolist() == ["male", "unknown"] * 5  # "F" is not a recognised spelling
    assert set(ds.table["label"]) == {ds.taxonomy.canonical(x) for x in labels}
    assert ds.class_totals().sum() == 10


def test_csv_with_ids_and_image_dir(tmp_path: Path, ham_metadata: pd.DataFrame, ham_images_dir: Path) -> None:
    sample = ham_metadata.iloc[:12]
    csv = tmp_path / "ids.csv"
    sample[["image_id", "dx", "lesion_id"]].to_csv(csv, index=False)
    ds = load("csv", root=tmp_path, csv=csv, image_dir=ham_images_dir)
    assert ds.taxonomy.name == "ham7"
    assert ds.table["label"].tolist() == sample["dx"].tolist()
    assert all(Path(p).is_file() for p in ds.table["path"])


def test_csv_unknown_label(tmp_path: Path, ten_images: list[Path]) -> None:
    csv = tmp_path / "t.csv"
    pd.DataFrame({"path": [f"imgs/{p.name}" for p in ten_images], "label": ["mel"] * 9 + ["freckle"]}).to_csv(
        csv, index=False)
    with pytest.raises(DatasetError, match=r"unknown label\(s\) \['freckle'\].*known: akiec"):
        load("csv", root=tmp_path, csv=csv, options={"taxonomy": "ham7"})


def test_csv_missing_images_listed(tmp_path: Path, ten_images: list[Path]) -> None:
    names = [f"imgs/{p.name}" for p in ten_images[:8]] + ["imgs/GONE_1.jpg", "imgs/GONE_2.jpg"]
    csv = tmp_path / "t.csv"
    pd.DataFrame({"path": names, "label": ["a", "b"] * 5}).to_csv(csv, index=False)
    with pytest.raises(DatasetError, match=r"2 of 10 images not found.*GONE_1.*GONE_2"):
        load("csv", root=tmp_path, csv=csv)
    ds = load("csv", root=tmp_path, csv=csv, skip_missing=True)
    assert ds.table["image_id"].tolist() == [p.stem for p in ten_images[:8]]


@pytest.mark.parametrize(("columns", "match"), [
    ({"path": ["x.jpg"], "something": ["mel"]}, "no label column"),
    ({"name": ["x.jpg"], "label": ["mel"]}, "no image_id column"),
])
def test_csv_missing_columns(tmp_path: Path, columns: dict, match: str) -> None:
    csv = tmp_path / "t.csv"
    pd.DataFrame(columns).to_csv(csv, index=False)
    with pytest.raises(DatasetError, match=match):
        load("csv", root=tmp_path, csv=csv)


@pytest.mark.parametrize(("class_dirs", "taxonomy"), [
    (("mel", "nv", "bcc"), "ham7"),
    (("benign", "malignant"), "custom:folder"),
    (("P1", "P3"), "triage"),
])
def test_folder(tmp_path: Path, copy_ham_images, class_dirs: tuple[str, ...], taxonomy: str) -> None:
    images = copy_ham_images(3 * len(class_dirs), folder="pool")
    root = tmp_path / "classes"
    for i, img in enumerate(images):
        dest = root / class_dirs[i % len(class_dirs)]
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(img, dest / img.name)
    (root / class_dirs[0] / "notes.txt").write_text("not an image")
    ds = load("folder", root=tmp_path, image_dir=root)
    assert ds.taxonomy.name == taxonomy
    assert len(ds) == len(images)
    totals = ds.class_totals()
    assert {c: int(totals[ds.taxonomy.canonical(c)]) for c in class_dirs} == dict.fromkeys(class_dirs, 3)
    for _, row in ds.table.iterrows():
        assert row["label"] == ds.taxonomy.canonical(Path(row["path"]).parent.name)
        assert row["image_id"].split("/")[1] == Path(row["path"]).stem


def test_folder_without_class_dirs(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="No class sub-folders"):
        load("folder", root=tmp_path, image_dir=tmp_path / "empty")


ONEHOT_COLUMNS = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]


@pytest.fixture
def onehot_sample(ham_metadata: pd.DataFrame) -> pd.DataFrame:
    """Three images of each HAM class (21 rows) in ISIC 2018 Task 3 ground-truth form."""
    sample = ham_metadata.groupby("dx").head(3).reset_index(drop=True)
    table = pd.DataFrame({"image": sample["image_id"]})
    for col in ONEHOT_COLUMNS:
        table[col] = (sample["dx"].str.upper() == col).astype(float)
    return table.assign(dx=sample["dx"])


def test_onehot_csv(tmp_path: Path, onehot_sample: pd.DataFrame, ham_images_dir: Path) -> None:
    csv = tmp_path / "ISIC2018_Task3_Training_GroundTruth.csv"
    onehot_sample.drop(columns="dx").to_csv(csv, index=False)
    ds = load("onehot-csv", root=tmp_path, csv=csv, image_dir=ham_images_dir)
    assert ds.taxonomy.name == "ham7"
    assert len(ds) == 21
    assert ds.table["label"].tolist() == onehot_sample["dx"].tolist()
    assert ds.class_totals().to_dict() == dict.fromkeys(ds.class_names, 3)


def test_onehot_csv_missing_images(tmp_path: Path, onehot_sample: pd.DataFrame, ham_images_dir: Path) -> None:
    few = tmp_path / "few"
    few.mkdir()
    for image_id in onehot_sample["image"][5:]:  # the first five are not copied
        shutil.copy2(ham_images_dir / f"{image_id}.jpg", few)
    csv = tmp_path / "gt.csv"
    onehot_sample.drop(columns="dx").to_csv(csv, index=False)
    absent = onehot_sample["image"][:5].tolist()
    with pytest.raises(DatasetError, match="5 of 21 images not found") as info:
        load("onehot-csv", root=tmp_path, csv=csv, image_dir=few)
    assert all(image_id in str(info.value) for image_id in absent)
    ds = load("onehot-csv", root=tmp_path, csv=csv, image_dir=few, skip_missing=True)
    assert ds.table["image_id"].tolist() == onehot_sample["image"][5:].tolist()


def test_onehot_csv_rejects_non_onehot_row(tmp_path: Path, onehot_sample: pd.DataFrame, ham_images_dir: Path) -> None:
    table = onehot_sample.drop(columns="dx")
    table.loc[4, ONEHOT_COLUMNS] = 0.0
    csv = tmp_path / "gt.csv"
    table.to_csv(csv, index=False)
    with pytest.raises(LabelMappingError, match=f"1 rows are not one-hot.*{table.loc[4, 'image']}"):
        load("onehot-csv", root=tmp_path, csv=csv, image_dir=ham_images_dir)


@pytest.mark.parametrize(("name", "kwargs", "match"), [
    ("csv", {}, "needs data.csv"),
    ("onehot-csv", {}, "needs data.csv"),
    ("csv", {"csv": Path("/nonexistent/table.csv")}, "Table not found"),
    ("ham10000", {"image_dir": Path("/nonexistent/images")}, None),
])
def test_loader_errors(tmp_path: Path, name: str, kwargs: dict, match: str | None) -> None:
    with pytest.raises(DatasetError, match=match):
        load(name, root=tmp_path, **kwargs)
