"""``download_dataset`` against a local fake Dataverse server serving a tiny HAM10000-shaped release."""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest

from lesionlab.cli import main
from lesionlab.config import DataConfig
from lesionlab.data.datasets import load_dataset
from lesionlab.data.download import DownloadError, download_dataset
from lesionlab.data.info import get_info

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ham10000"
realdata = pytest.mark.realdata
DOI = get_info("ham10000").download.doi


@dataclass
class FakeRelease:
    """What the fake server serves: file id -> (listed name, bytes, original bytes or None), plus the listing."""

    files: dict[int, tuple[str, bytes, bytes | None]]
    listing: dict
    ids: list[str]
    honour_range: bool = True
    sent: dict[int, int] = field(default_factory=dict)  # file id -> body bytes sent
    requests: list[str] = field(default_factory=list)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _make_release() -> FakeRelease:
    meta = pd.read_csv(SHARED / "HAM10000_metadata.csv")
    rows = meta.groupby("dx").head(1).head(6)  # a few classes, real rows
    ids = rows["image_id"].tolist()
    jpeg = {i: (SHARED / "images_200x150" / f"{i}.jpg").read_bytes() for i in ids}
    part1 = _zip({f"{i}.jpg": jpeg[i] for i in ids[:3]})  # flat
    part2 = _zip({f"HAM10000_images_part_2/{i}.jpg": jpeg[i] for i in ids[3:]})  # with a top-level folder
    csv = rows.to_csv(index=False).encode()
    tab = rows.to_csv(index=False, sep="\t").encode()  # the ingested version must not be the one saved
    files = {
        11: ("HAM10000_images_part_1.zip", part1, None),
        12: ("HAM10000_images_part_2.zip", part2, None),
        13: ("HAM10000_metadata.tab", tab, csv),
        14: ("README.txt", b"not wanted", None),
    }
    entries = []
    for fid, (name, data, original) in files.items():
        meta_file = {"id": fid, "filename": name, "filesize": len(data)}
        if original is None:
            meta_file["md5"] = _md5(data)
        else:  # Dataverse lists the checksum and size of the uploaded original
            meta_file.update(checksum={"type": "MD5", "value": _md5(original)}, originalFileFormat="text/csv",
                             originalFileName="HAM10000_metadata.csv", originalFileSize=len(original))
        entries.append({"label": name, "dataFile": meta_file})
    listing = {"status": "OK", "data": {"latestVersion": {"files": entries}}}
    return FakeRelease(files=files, listing=listing, ids=ids)


def _handler(release: FakeRelease) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in {"Content-Length": str(len(body)), **(headers or {})}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            release.requests.append(self.path)
            if url.path == "/api/datasets/:persistentId/":
                if query.get("persistentId") != [DOI]:
                    return self._send(404, b'{"status":"ERROR"}')
                return self._send(200, json.dumps(release.listing).encode(), {"Content-Type": "application/json"})
            m = re.fullmatch(r"/api/access/datafile/(\d+)", url.path)
            if not m or int(m.group(1)) not in release.files:
                return self._send(404, b"not found")
            fid = int(m.group(1))
            _, data, original = release.files[fid]
            body = original if original is not None and query.get("format") == ["original"] else data
            rng = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if rng and release.honour_range:
                start = int(rng.group(1))
                if start >= len(body):
                    return self._send(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                release.sent[fid] = release.sent.get(fid, 0) + len(body) - start
                return self._send(206, body[start:], {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"})
            release.sent[fid] = release.sent.get(fid, 0) + len(body)
            return self._send(200, body)

    return Handler


@pytest.fixture
def release() -> FakeRelease:
    if not (SHARED / "images_200x150").is_dir():
        pytest.skip("needs ../shared/data beside the checkout")
    return _make_release()


@pytest.fixture
def server(release: FakeRelease) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(release))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@realdata
def test_full_download_extracts_and_loads(tmp_path: Path, release: FakeRelease, server: str) -> None:
    root = tmp_path / "data"
    target = download_dataset("ham10000", root, server=server, progress=False)
    assert target == root / "ham10000"
    assert sorted(p.name for p in (target / "HAM10000_images_part_1").iterdir()) == sorted(
        f"{i}.jpg" for i in release.ids[:3])
    assert sorted(p.name for p in (target / "HAM10000_images_part_2").iterdir()) == sorted(
        f"{i}.jpg" for i in release.ids[3:])  # the zip's top-level folder is flattened away
    assert (target / "HAM10000_metadata.csv").read_bytes() == release.files[13][2]  # the original, not the .tab
    assert not (target / "HAM10000_metadata.tab").exists()
    assert not (target / "README.txt").exists()
    assert not list(target.glob("*.part")) and not list(target.glob(".*unpacking"))
    assert 14 not in release.sent

    ds = load_dataset(DataConfig(dataset="ham10000", root=str(root)))
    assert sorted(ds.table["image_id"]) == sorted(release.ids)
    assert all(Path(p).is_file() for p in ds.table["path"])


@realdata
def test_second_run_skips_present_files(tmp_path: Path, release: FakeRelease, server: str) -> None:
    download_dataset("ham10000", tmp_path, server=server, progress=False)
    release.sent.clear()
    release.requests.clear()
    download_dataset("ham10000", tmp_path, server=server, progress=False)
    assert release.sent == {}
    assert len(release.requests) == 1  # only the file listing


@realdata
def test_resume_from_part_file(tmp_path: Path, release: FakeRelease, server: str) -> None:
    target = tmp_path / "ham10000"
    target.mkdir()
    name, data, _ = release.files[11]
    half = len(data) // 2
    (target / f"{name}.part").write_bytes(data[:half])
    download_dataset("ham10000", tmp_path, server=server, progress=False)
    assert release.sent[11] == len(data) - half
    assert release.sent[12] == len(release.files[12][1])
    assert (target / name).read_bytes() == data
    assert len(list((target / "HAM10000_images_part_1").iterdir())) == 3


@realdata
def test_server_without_range_support_restarts(tmp_path: Path, release: FakeRelease, server: str) -> None:
    release.honour_range = False
    target = tmp_path / "ham10000"
    target.mkdir()
    name, data, _ = release.files[11]
    (target / f"{name}.part").write_bytes(b"garbage that must not survive")
    download_dataset("ham10000", tmp_path, server=server, progress=False)
    assert (target / name).read_bytes() == data


@realdata
def test_checksum_mismatch_raises_and_leaves_nothing(tmp_path: Path, release: FakeRelease, server: str) -> None:
    release.listing["data"]["latestVersion"]["files"][1]["dataFile"]["md5"] = "0" * 32
    with pytest.raises(DownloadError, match=r"Checksum mismatch for HAM10000_images_part_2\.zip"):
        download_dataset("ham10000", tmp_path, server=server, progress=False)
    target = tmp_path / "ham10000"
    assert not (target / "HAM10000_images_part_2.zip").exists()
    assert not (target / "HAM10000_images_part_2.zip.part").exists()
    assert not (target / "HAM10000_images_part_2").exists()


def test_unreachable_server_says_offline(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError) as info:
        download_dataset("ham10000", tmp_path, server=f"http://127.0.0.1:{port}", progress=False)
    msg = str(info.value)
    assert "offline" in msg and "by hand" in msg
    assert f"{tmp_path}/ham10000/" in msg  # the manual instructions, with the real root filled in


def test_dataset_without_download_quotes_manual(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"cannot be downloaded automatically.*PH2_dataset\.txt"):
        download_dataset("ph2", tmp_path)


@realdata
def test_original_name_from_format(tmp_path: Path, release: FakeRelease, server: str) -> None:
    del release.listing["data"]["latestVersion"]["files"][2]["dataFile"]["originalFileName"]  # older Dataverse
    download_dataset("ham10000", tmp_path, server=server, progress=False)
    assert (tmp_path / "ham10000" / "HAM10000_metadata.csv").read_bytes() == release.files[13][2]


@realdata
def test_missing_file_in_listing(tmp_path: Path, release: FakeRelease, server: str) -> None:
    del release.listing["data"]["latestVersion"]["files"][0]
    with pytest.raises(DownloadError, match=r"HAM10000_images_part_1\.zip is not listed"):
        download_dataset("ham10000", tmp_path, server=server, progress=False)


@realdata
def test_cli_download(tmp_path: Path, release: FakeRelease, server: str, capsys: pytest.CaptureFixture) -> None:
    rc = main(["data", "download", "ham10000", "--data-root", str(tmp_path), "--server", server, "--no-progress"])
    assert rc == 0
    assert "ready" in capsys.readouterr().out
    assert (tmp_path / "ham10000" / "HAM10000_metadata.csv").is_file()


def test_cli_download_offline_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rc = main(["data", "download", "ham10000", "--data-root", str(tmp_path), "--server", f"http://127.0.0.1:{port}",
               "--no-progress"])
    assert rc == 2
    assert "offline" in capsys.readouterr().err
