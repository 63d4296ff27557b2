"""One typed, frozen description per dataset: classes, layout, where to get it, licence and citation."""

from __future__ import annotations

from lesionlab.data.external_sets import EXTERNAL_SET_INFO
from lesionlab.data.info_types import (
    HAM_CITATION,
    ISIC_ARCHIVE,
    DatasetInfo,
    DataverseSource,
    RemoteSpec,
    UrlTableSource,
)
from lesionlab.registry import Registry

DATASET_INFO: Registry[DatasetInfo] = Registry("dataset description")

#: The ISIC challenge archives (public S3 bucket; no checksums are published, so files are checked by size).
DATASET_INFO.add("ham10000", DatasetInfo(
    name="ham10000",
    title="HAM10000 (Human Against Machine with 10000 training images)",
    taxonomy="ham7",
    folder="ham10000",
    licence="CC BY-NC 4.0",
    citation=HAM_CITATION,
    homepage="https://doi.org/10.7910/DVN/DBW86T",
    description="10,015 dermatoscopic images of 7,470 pigmented lesions, 7 diagnostic classes.",
    download=DataverseSource(
        server="https://dataverse.harvard.edu",
        doi="doi:10.7910/DVN/DBW86T",
        files=("HAM10000_images_part_1.zip", "HAM10000_images_part_2.zip", "HAM10000_metadata.tab"),
        extract=("HAM10000_images_part_1.zip", "HAM10000_images_part_2.zip"),
    ),
    manual=(
        "Download HAM10000_images_part_1.zip, HAM10000_images_part_2.zip and HAM10000_metadata (original CSV) "
        "from https://doi.org/10.7910/DVN/DBW86T, unzip the images into <root>/ham10000/HAM10000_images_part_1/ "
        "and .../HAM10000_images_part_2/, and put HAM10000_metadata.csv in <root>/ham10000/."
    ),
    image_folders=("HAM10000_images_part_1", "HAM10000_images_part_2", "HAM10000_images", "images",
                   "images_200x150"),
))

DATASET_INFO.add("isic2019", DatasetInfo(
    name="isic2019",
    title="ISIC 2019 Challenge training set",
    taxonomy="isic8",
    folder="isic2019",
    licence="CC BY-NC 4.0",
    citation=(
        "BCN_20000: Combalia et al., arXiv:1908.02288; HAM10000: " + HAM_CITATION
        + "; MSK: Codella et al., arXiv:1710.05006 and arXiv:1902.03368."
    ),
    homepage="https://challenge.isic-archive.com/data/#2019",
    description="25,331 images, 8 classes (MEL, NV, BCC, AK, BKL, DF, VASC, SCC) plus patient metadata.",
    manual=(
        "Download ISIC_2019_Training_Input.zip, ISIC_2019_Training_GroundTruth.csv and "
        "ISIC_2019_Training_Metadata.csv from https://challenge.isic-archive.com/data/#2019 (files under "
        "https://isic-challenge-data.s3.amazonaws.com/2019/) into <root>/isic2019/ and unzip the images there "
        "(or pass data.image_dir)."
    ),
    image_folders=("ISIC_2019_Training_Input", "images"),
    download=UrlTableSource(
        server=ISIC_ARCHIVE,
        files=(RemoteSpec("2019/ISIC_2019_Training_Input.zip"), RemoteSpec("2019/ISIC_2019_Training_GroundTruth.csv"),
               RemoteSpec("2019/ISIC_2019_Training_Metadata.csv"), RemoteSpec("2019/ISIC_2019_Test_Input.zip"),
               RemoteSpec("2019/ISIC_2019_Test_Metadata.csv"),
               RemoteSpec("2019/ISIC_2019_Test_GroundTruth.csv", optional=True)),
        extract=("ISIC_2019_Training_Input.zip", "ISIC_2019_Test_Input.zip"),
    ),
))

DATASET_INFO.add("isic-archive", DatasetInfo(
    name="isic-archive",
    title="ISIC Archive images outside HAM10000 (ISIC 2017 / 2018 Task 1, mostly MSK)",
    taxonomy="isic8",
    folder="isic_archive",
    licence="CC BY-NC 4.0",
    citation=(
        "Codella, N. et al. Skin lesion analysis toward melanoma detection: a challenge at the 2017 ISBI. "
        "arXiv:1710.05006 (2017); Codella, N. et al. Skin Lesion Analysis Toward Melanoma Detection 2018. "
        "arXiv:1902.03368 (2019); labels: Combalia, M. et al. BCN20000: Dermoscopic lesions in the wild. "
        "arXiv:1908.02288 (2019)."
    ),
    homepage="https://challenge.isic-archive.com/data/#2019",
    description="2,294 ISIC Archive images from outside HAM10000 (NV, MEL, BKL), 256x256 squares, ISIC 2019 "
                "labels; most lack a lesion id, so near-duplicates are grouped before any split.",
    manual=(
        "Put labels.csv (image, isic2019_image, diagnosis, lesion_id, age_approx, sex, anatom_site_general) and "
        "the images (images_256/<image>.jpg) in <root>/isic_archive/. The images are the ISIC 2019 training "
        "images with ids ISIC_0000000 to ISIC_0016072 (https://challenge.isic-archive.com/data/#2019)."
    ),
    image_folders=("images_256", "images"),
))

DATASET_INFO.add("dermamnist", DatasetInfo(
    name="dermamnist",
    title="DermaMNIST (MedMNIST v2)",
    taxonomy="ham7",
    folder="dermamnist",
    licence="CC BY-NC 4.0 (derived from HAM10000)",
    citation=(
        "Yang, J. et al. MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D biomedical image "
        "classification. Sci. Data 10, 41 (2023). Source images: " + HAM_CITATION
    ),
    homepage="https://medmnist.com/",
    description="HAM10000 resized to 28/64/128/224 px with MedMNIST's official (image-level) train/val/test split.",
    manual="Place dermamnist.npz (or dermamnist_64/128/224.npz) from https://zenodo.org/records/10519652 in "
           "<root>/dermamnist/, or install medmnist and let it download on a machine with internet.",
))


for _name, _info in EXTERNAL_SET_INFO.items():  # the external sets (ISIC 2018/2020, PAD-UFES-20, Derm7pt, PH2)
    DATASET_INFO.add(_name, _info)


def get_info(name: str) -> DatasetInfo:
    return DATASET_INFO.get(name)


