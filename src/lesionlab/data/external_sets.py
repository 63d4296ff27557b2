"""Descriptions of the external and challenge sets a model is tested on: ISIC 2018 Task 3, ISIC 2020, PH2,
PAD-UFES-20 and Derm7pt (classes, layout, official URLs, licence, citation, how to place the files by hand)."""

from __future__ import annotations

from lesionlab.data.info_types import HAM_CITATION, ISIC_ARCHIVE, DatasetInfo, RemoteSpec, UrlTableSource

_T3 = "2018/ISIC2018_Task3_"

#: The external and challenge sets, added to ``lesionlab.data.info.DATASET_INFO``.
EXTERNAL_SET_INFO: dict[str, DatasetInfo] = {}

EXTERNAL_SET_INFO["isic2018"] = DatasetInfo(
    name="isic2018",
    title="ISIC 2018 Challenge Task 3 (lesion diagnosis)",
    taxonomy="ham7",
    folder="isic2018",
    licence="CC BY-NC 4.0",
    citation=("Codella, N. et al. Skin lesion analysis toward melanoma detection 2018: a challenge hosted by the "
              "ISIC. arXiv:1902.03368 (2019); training images: " + HAM_CITATION),
    homepage="https://challenge.isic-archive.com/data/#2018",
    description=("Task 3: 10,015 training images (= HAM10000, same ISIC ids), 193 validation and 1,512 test images, "
                 "7 classes in one-hot CSVs; lesion groupings for the training images."),
    manual=("Download ISIC2018_Task3_{Training,Validation,Test}_Input.zip and _GroundTruth.zip and "
            "ISIC2018_Task3_Training_LesionGroupings.csv from https://challenge.isic-archive.com/data/#2018 (files "
            "under https://isic-challenge-data.s3.amazonaws.com/2018/) into <root>/isic2018/ and unzip each archive "
            "into a folder of its own name."),
    image_folders=("ISIC2018_Task3_Training_Input", "ISIC2018_Task3_Validation_Input", "ISIC2018_Task3_Test_Input"),
    download=UrlTableSource(
        server=ISIC_ARCHIVE,
        files=tuple(RemoteSpec(f"{_T3}{part}") for part in (
            "Training_Input.zip", "Training_GroundTruth.zip", "Training_LesionGroupings.csv", "Validation_Input.zip",
            "Validation_GroundTruth.zip", "Test_Input.zip", "Test_GroundTruth.zip")),
        extract=tuple(f"ISIC2018_Task3_{part}.zip" for part in (
            "Training_Input", "Training_GroundTruth", "Validation_Input", "Validation_GroundTruth", "Test_Input",
            "Test_GroundTruth")),
    ),
)

EXTERNAL_SET_INFO["isic2020"] = DatasetInfo(
    name="isic2020",
    title="ISIC 2020 Challenge training set (SIIM-ISIC melanoma classification)",
    taxonomy="isic2020",
    folder="isic2020",
    licence="CC BY-NC 4.0",
    citation=("Rotemberg, V. et al. A patient-centric dataset of images and metadata for identifying melanomas using "
              "clinical context. Sci. Data 8, 34 (2021). https://doi.org/10.1038/s41597-021-00815-z"),
    homepage="https://challenge.isic-archive.com/data/#2020",
    description=("33,126 dermoscopic images of 2,056 patients (584 melanomas); a binary target plus a diagnosis that "
                 "is 'unknown' for most benign images; patient ids (splits are patient-disjoint); 425 listed "
                 "duplicates are dropped."),
    manual=("Download ISIC_2020_Training_JPEG.zip, ISIC_2020_Training_GroundTruth_v2.csv and "
            "ISIC_2020_Training_Duplicates.csv from https://challenge.isic-archive.com/data/#2020 (files under "
            "https://isic-challenge-data.s3.amazonaws.com/2020/) into <root>/isic2020/ and unzip the images into "
            "<root>/isic2020/ISIC_2020_Training_JPEG/."),
    image_folders=("ISIC_2020_Training_JPEG", "train", "images"),
    download=UrlTableSource(
        server=ISIC_ARCHIVE,
        files=(RemoteSpec("2020/ISIC_2020_Training_JPEG.zip"), RemoteSpec("2020/ISIC_2020_Training_GroundTruth_v2.csv"),
               RemoteSpec("2020/ISIC_2020_Training_Duplicates.csv")),
        extract=("ISIC_2020_Training_JPEG.zip",),
    ),
)

EXTERNAL_SET_INFO["pad_ufes_20"] = DatasetInfo(
    name="pad_ufes_20",
    title="PAD-UFES-20 (smartphone clinical photos, Brazil)",
    taxonomy="isic8",
    folder="pad_ufes_20",
    licence="CC BY 4.0",
    citation=("Pacheco, A. G. C. et al. PAD-UFES-20: a skin lesion dataset composed of patient data and clinical "
              "images collected from smartphones. Data in Brief 32, 106221 (2020). "
              "https://doi.org/10.1016/j.dib.2020.106221"),
    homepage="https://data.mendeley.com/datasets/zr7vgbcyr2/1",
    description=("2,298 clinical (not dermoscopic) smartphone photos of 1,641 lesions of 1,373 patients: ACK, BCC, "
                 "MEL, NEV, SCC, SEK (ACK -> AK, NEV -> NV, SEK -> BKL); a domain shift for dermoscopic models."),
    manual=("Download the dataset zip from https://data.mendeley.com/datasets/zr7vgbcyr2/1, unzip it into "
            "<root>/pad_ufes_20/ so that <root>/pad_ufes_20/metadata.csv exists, and unzip the image archives "
            "(imgs_part_1..3) into <root>/pad_ufes_20/images/ (or leave them as imgs_part_1/ ... folders)."),
    image_folders=("images", "imgs_part_1", "imgs_part_2", "imgs_part_3"),
    modality="clinical",
)

EXTERNAL_SET_INFO["derm7pt"] = DatasetInfo(
    name="derm7pt",
    title="Derm7pt (seven-point checklist dermatology dataset)",
    taxonomy="derm7pt",
    folder="derm7pt",
    licence="research use after registration at https://derm.cs.sfu.ca (see its terms)",
    citation=("Kawahara, J., Daneshvar, S., Argenziano, G. & Hamarneh, G. Seven-point checklist and skin lesion "
              "classification using multitask multimodal neural nets. IEEE J. Biomed. Health Inform. 23, 538-546 "
              "(2019). https://doi.org/10.1109/JBHI.2018.2824327"),
    homepage="https://derm.cs.sfu.ca",
    description=("1,011 cases, each with a dermoscopic and a clinical image, 20 diagnoses (nevi -> nv, melanomas -> "
                 "mel, BCC, DF, SK/lentigo -> bkl, vascular; 'miscellaneous' and 'melanosis' have no HAM7 class) "
                 "and the 7-point checklist criteria kept as metadata."),
    manual=("Register at https://derm.cs.sfu.ca, download release_v0.zip and unzip it into <root>/derm7pt/ so that "
            "<root>/derm7pt/meta/meta.csv and <root>/derm7pt/images/ exist."),
    image_folders=("images",),
    modality="both",
)


EXTERNAL_SET_INFO["ph2"] = DatasetInfo(
    name="ph2",
    title="PH2 (Hospital Pedro Hispano dermoscopic database)",
    taxonomy="ham7",
    folder="ph2",
    licence="free for research and benchmarking (ADDI project terms); cite the paper below",
    citation=(
        "Mendonça, T., Ferreira, P. M., Marques, J. S., Marçal, A. R. S. & Rozeira, J. PH2 - A dermoscopic image "
        "database for research and benchmarking. 35th Annual International Conference of the IEEE EMBC, 2013, "
        "pp. 5437-5440. https://doi.org/10.1109/EMBC.2013.6610779"
    ),
    homepage="https://www.fc.up.pt/addi/ph2%20database.html",
    description=("200 dermoscopic images (80 common nevi, 80 atypical nevi, 40 melanomas) with lesion masks; an "
                 "external test set (another clinic and camera than HAM10000). Nevi map to nv, melanoma to mel."),
    manual=(
        "Request PH2Dataset.rar from https://www.fc.up.pt/addi/ph2%20database.html (free registration), unpack it "
        "into <root>/ph2/ so that <root>/ph2/PH2Dataset/PH2_dataset.txt and <root>/ph2/PH2Dataset/PH2 Dataset "
        "images/IMDxxx/ exist; or place the half-resolution layout (PH2_labels.csv, images_half/, masks_half/) "
        "in <root>/ph2/."
    ),
    image_folders=("images_half", "images"),
)
