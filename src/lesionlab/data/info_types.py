"""The records describing a public dataset (licence, citation, download sources) and shared citation text."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DataverseSource:
    """Files of a Dataverse dataset, fetched through its public API (checksums come from the listing)."""

    server: str
    doi: str
    files: tuple[str, ...]  # file names to fetch (as listed, or their original names)
    extract: tuple[str, ...] = ()  # archives to unpack after download


@dataclass(frozen=True)
class RemoteSpec:
    """One file of a distribution at a fixed address (``path`` under the source's server)."""

    path: str
    md5: str | None = None  # where the publisher lists one
    size: int | None = None  # bytes, where known (else the server's Content-Length)
    optional: bool = False  # a missing file (HTTP 404) is skipped with a warning instead of failing

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class UrlTableSource:
    """A distribution published as a known table of files at fixed URLs (the ISIC challenge archives)."""

    server: str
    files: tuple[RemoteSpec, ...]
    extract: tuple[str, ...] = ()  # archives (file names) to unpack after download


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    taxonomy: str
    folder: str  # sub-folder of the data root holding this dataset
    licence: str
    citation: str
    homepage: str
    description: str = ""
    download: DataverseSource | UrlTableSource | None = None
    manual: str = ""  # how to place the files by hand when the download is not possible
    image_folders: tuple[str, ...] = field(default_factory=tuple)  # searched in order under the dataset folder
    modality: str = "dermoscopic"  # dermoscopic | clinical (smartphone or camera photos) | both


ISIC_ARCHIVE = "https://isic-challenge-data.s3.amazonaws.com"

HAM_CITATION = (
    "Tschandl, P., Rosendahl, C. & Kittler, H. The HAM10000 dataset, a large collection of multi-source "
    "dermatoscopic images of common pigmented skin lesions. Sci. Data 5, 180161 (2018). "
    "https://doi.org/10.1038/sdata.2018.161"
)
