"""Fetch an official dataset distribution: Dataverse file listing, checksums, HTTP Range resume, progress, unpacking.

Only the standard library talks to the network. Every failure becomes a :class:`DownloadError` whose message says
what went wrong and how to place the files by hand.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException, HTTPResponse
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from tqdm.auto import tqdm

from lesionlab.data.info import DataverseSource, UrlTableSource, get_info
from lesionlab.errors import LesionLabError

logger = logging.getLogger(__name__)

TIMEOUT_S = 60.0
CHUNK = 1 << 20
USER_AGENT = "lesionlab-downloader"
#: File extensions of the originals of ingested tabular files, for listings without ``originalFileName``.
_ORIGINAL_SUFFIX = {"text/csv": ".csv", "text/comma-separated-values": ".csv", "text/tab-separated-values": ".tsv",
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx"}


class DownloadError(LesionLabError, RuntimeError):
    """A dataset could not be fetched (offline, server error, bad checksum); the message says what to do."""


class _RangeNotSatisfiable(DownloadError):
    """HTTP 416: the partial file is already as long as (or longer than) the remote one."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a distribution as the repository lists it."""

    file_id: int
    name: str  # the name it is saved under (the original name for ingested tabular files)
    listed_as: str
    size: int | None
    checksum: str | None
    algorithm: str  # hashlib name, e.g. "md5"
    original: bool  # fetch the uploaded original (``?format=original``) rather than the ingested version


def download_dataset(name: str, root: Path, *, server: str | None = None, progress: bool = True) -> Path:
    """Download and unpack dataset ``name`` into ``<root>/<folder>/``; returns that folder.

    Files already present with the right checksum (or size) and archives already unpacked are skipped; an
    interrupted download resumes from its ``.part`` file. ``server`` replaces the source's server URL (mirrors,
    tests).
    """
    info = get_info(name)
    root = Path(root).expanduser()
    manual = info.manual.replace("<root>", str(root))
    if info.download is None:
        raise DownloadError(f"{name} cannot be downloaded automatically; place the files by hand: {manual}")
    source = info.download
    base = (server or source.server).rstrip("/")
    target = root / info.folder
    planner = SOURCE_PLANNERS.get(type(source))
    if planner is None:  # pragma: no cover - a new source kind without a planner is a programming error
        raise TypeError(f"no download planner for {type(source).__name__}")
    plan = planner(source, base, manual)
    target.mkdir(parents=True, exist_ok=True)
    for remote, url in plan:
        unpack_dir = target / Path(remote.name).stem
        unpack = remote.listed_as in source.extract or remote.name in source.extract
        if unpack and _nonempty_dir(unpack_dir):
            logger.info("%s is already unpacked in %s; skipping it", remote.name, unpack_dir)
            continue
        fetch_file(url, target / remote.name, remote, manual, progress=progress)
        if unpack:
            extract_zip(target / remote.name, unpack_dir, progress=progress)
    logger.info("%s is ready in %s", name, target)
    return target


def _plan_dataverse(source: DataverseSource, base: str, manual: str) -> list[tuple[RemoteFile, str]]:
    wanted = _select(list_dataverse_files(base, source.doi, manual), source, manual)
    return [(r, f"{base}/api/access/datafile/{r.file_id}" + ("?format=original" if r.original else "")) for r in wanted]


def _plan_url_table(source: UrlTableSource, base: str, manual: str) -> list[tuple[RemoteFile, str]]:
    """The known file table; sizes not in the table come from a HEAD request (for resume and the progress bar)."""
    plan = []
    for i, spec in enumerate(source.files):
        url = f"{base}/{spec.path}"
        try:
            size = spec.size if spec.size is not None else remote_size(url, manual)
        except DownloadError as exc:
            if spec.optional and "HTTP 404" in str(exc):
                logger.warning("%s is not published at %s; skipping this optional file", spec.name, url)
                continue
            raise
        plan.append((RemoteFile(file_id=i, name=spec.name, listed_as=spec.name, size=size, checksum=spec.md5,
                                algorithm="md5", original=False), url))
    return plan


#: How each kind of source becomes a list of (file, URL) to fetch.
SOURCE_PLANNERS: dict[type, Callable[..., list[tuple[RemoteFile, str]]]] = {
    DataverseSource: _plan_dataverse,
    UrlTableSource: _plan_url_table,
}


def remote_size(url: str, manual: str = "") -> int | None:
    """``Content-Length`` of a HEAD request (None when the server does not say or refuses HEAD)."""
    try:
        with _open(url, manual, method="HEAD") as resp:
            length = resp.headers.get("Content-Length")
    except DownloadError as exc:
        if "HTTP 405" in str(exc) or "HTTP 501" in str(exc):
            return None
        raise
    return int(length) if length is not None else None


def list_dataverse_files(server: str, doi: str, manual: str = "") -> list[RemoteFile]:
    """The files of the latest version of a Dataverse dataset (native API)."""
    url = f"{server}/api/datasets/:persistentId/?{urlencode({'persistentId': doi})}"
    with _open(url, manual) as resp:
        try:
            payload = json.loads(resp.read().decode("utf-8"))
            entries = payload["data"]["latestVersion"]["files"]
        except OSError as exc:
            raise DownloadError(f"Reading the file list from {url} failed ({exc}). {manual}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise DownloadError(f"Unexpected answer from {url} ({exc!r}); is {server} a Dataverse server?") from exc
    return [_remote_file(entry["dataFile"]) for entry in entries if "dataFile" in entry]


def _remote_file(meta: dict) -> RemoteFile:
    checksum, algorithm = meta.get("md5"), "md5"
    if not checksum and isinstance(meta.get("checksum"), dict):
        algorithm = str(meta["checksum"].get("type", "md5")).lower().replace("-", "")
        checksum = meta["checksum"].get("value")
    original_name = meta.get("originalFileName")
    if not original_name and meta.get("originalFileFormat") in _ORIGINAL_SUFFIX:
        original_name = Path(meta["filename"]).stem + _ORIGINAL_SUFFIX[meta["originalFileFormat"]]
    original = bool(original_name) and original_name != meta["filename"]
    size = meta.get("originalFileSize") if original else meta.get("filesize")
    return RemoteFile(
        file_id=int(meta["id"]), name=original_name if original else meta["filename"], listed_as=meta["filename"],
        size=int(size) if size is not None else None, checksum=checksum, algorithm=algorithm, original=original,
    )


def _select(files: list[RemoteFile], source: DataverseSource, manual: str) -> list[RemoteFile]:
    chosen = []
    for want in source.files:
        match = next((f for f in files if want in (f.listed_as, f.name)), None)
        if match is None:
            listed = ", ".join(sorted(f.listed_as for f in files)) or "none"
            raise DownloadError(f"{want} is not listed in {source.doi} (files: {listed}). {manual}")
        chosen.append(match)
    return chosen


def fetch_file(url: str, dest: Path, remote: RemoteFile, manual: str = "", *, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part`` (resumed with a Range request) and verify its checksum."""
    if dest.is_file() and remote.checksum:
        if file_digest(dest, remote.algorithm) == remote.checksum.lower():
            logger.info("%s is present and verified; skipping it", dest.name)
            return dest
        logger.warning("%s is present but its checksum differs; downloading it again", dest)
    elif dest.is_file() and remote.size is not None and dest.stat().st_size == remote.size:
        logger.info("%s is present (no checksum listed; the size matches); skipping it", dest.name)
        return dest
    elif dest.is_file() and remote.size is None:  # only complete downloads are renamed from .part
        logger.info("%s is present (no checksum or size to compare); skipping it", dest.name)
        return dest
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    if remote.size is not None and offset > remote.size:
        part.unlink()
        offset = 0
    if remote.size is None or offset < remote.size or remote.size == 0:
        try:
            _stream(url, part, offset, remote, manual, progress)
        except _RangeNotSatisfiable:  # a complete (or foreign) .part file: fetch the whole file again
            part.unlink()
            _stream(url, part, 0, remote, manual, progress)
    got = part.stat().st_size
    if remote.size is not None and got != remote.size:
        raise DownloadError(f"{dest.name} is incomplete ({got} of {remote.size} bytes); run the command again to "
                            "resume it.")
    if remote.checksum:
        digest = file_digest(part, remote.algorithm)
        if digest != remote.checksum.lower():
            part.unlink()
            raise DownloadError(
                f"Checksum mismatch for {dest.name}: expected {remote.algorithm} {remote.checksum}, got {digest}. "
                "The corrupt file was deleted; run the download again (if it keeps failing, the server or a proxy "
                f"is altering the file). {manual}"
            )
    else:
        logger.warning("%s: the listing has no checksum; the file is not verified", dest.name)
    part.replace(dest)
    return dest


def _stream(url: str, part: Path, offset: int, remote: RemoteFile, manual: str, progress: bool) -> None:
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with _open(url, manual, headers) as resp:
        if offset and resp.status != 206:  # the server ignored the Range header: start over
            logger.info("%s: the server does not resume downloads; starting from the beginning", part.name)
            offset = 0
        elif offset:
            logger.info("Resuming %s at %d bytes", part.name[: -len(".part")], offset)
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else remote.size
        with open(part, "ab" if offset else "wb") as fh, tqdm(
            total=total, initial=offset, desc=remote.name, unit="B", unit_scale=True, unit_divisor=1024,
            disable=not progress, mininterval=0.5,
        ) as bar:
            try:
                while chunk := resp.read(CHUNK):
                    fh.write(chunk)
                    bar.update(len(chunk))
            except (OSError, HTTPException) as exc:  # timeouts, dropped connections, short reads
                raise DownloadError(
                    f"The download of {remote.name} was interrupted ({exc}); run the command again to resume it."
                ) from exc


def _open(url: str, manual: str, headers: dict[str, str] | None = None, method: str = "GET") -> HTTPResponse:
    request = Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})}, method=method)
    try:
        return urlopen(request, timeout=TIMEOUT_S)
    except HTTPError as exc:
        if exc.code == 416:
            raise _RangeNotSatisfiable(f"HTTP 416 for {url}") from exc
        hint = " The files may require accepting terms on the dataset page." if exc.code in (401, 403) else ""
        raise DownloadError(f"The server answered HTTP {exc.code} ({exc.reason}) for {url}.{hint} "
                            f"To place the files by hand: {manual}") from exc
    except (URLError, OSError) as exc:  # DNS failure, refused connection, timeout, no route
        reason = getattr(exc, "reason", exc)
        host = "/".join(url.split("/")[:3])
        raise DownloadError(
            f"Cannot reach {host} ({reason}). It looks like this machine is offline (or the server "
            f"is down). To place the files by hand: {manual}"
        ) from exc


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def extract_zip(archive: Path, dest: Path, *, progress: bool = True) -> Path:
    """Unpack ``archive`` into ``dest`` atomically; a single top-level folder inside the zip is flattened away."""
    if _nonempty_dir(dest):
        return dest
    tmp = dest.with_name(f".{dest.name}.unpacking")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.filename.startswith("__MACOSX/")]
            for member in tqdm(members, desc=f"Unpacking {archive.name}", unit="file", disable=not progress,
                               mininterval=0.5):
                zf.extract(member, tmp)  # zipfile drops absolute paths and ".." components
    except zipfile.BadZipFile as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DownloadError(f"{archive} is not a valid zip file ({exc}); delete it and download again.") from exc
    tmp.mkdir(exist_ok=True)  # an empty archive
    entries = list(tmp.iterdir())
    top = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
    if dest.is_dir():
        dest.rmdir()  # empty (checked above)
    top.rename(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    logger.info("Unpacked %s into %s", archive.name, dest)
    return dest
