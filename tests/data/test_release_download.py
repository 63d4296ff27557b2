"""``lesionlab data download`` of the ISIC 2018 / 2019 / 2020 releases against a local HTTP server that serves small
fixture archives in the real layouts (S3-like: HEAD, Range, 404 for unpublished files)."""

from __future__ import annotations

import io
import re
import shutil
import socket
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lesionlab.cli import main
from lesionlab.config import DataConfig
from lesionlab.data import download as download_module
from lesionlab.data.datasets import load_dataset
from lesionlab.data.download import DownloadError, download_dataset, file_digest
from lesionlab.data.info import RemoteSpec, get_info
from tests.fixtures.external import lesion_image, write_isic2018, write_isic2020


@dataclass
class Bucket:
    """What the fake S3 bucket serves: path → bytes; ``drop_after`` cuts the first GET of a path short."""

    objects: dict[str, bytes]
    drop_after: dict[str, int] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)
    ranges: list[str] = field(default_factory=list)


def _zip_tree(folder: Path, top: str | None = None) -> bytes:
    """A zip of ``folder``'s files, under a top-level folder ``top`` (the ISIC archives have one)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{top}/{path.relative_to(folder)}" if top else str(path.relative_to(folder)))
    return buf.getvalue()


def _isic2018_objects(tmp: Path) -> dict[str, bytes]:
    base = write_isic2018(tmp / "isic2018-src")
    out = {"2018/ISIC2018_Task3_Training_LesionGroupings.csv":
           (base / "ISIC2018_Task3_Training_LesionGroupings.csv").read_bytes()}
    for stem in ("Training", "Validation", "Test"):
        for kind in ("Input", "GroundTruth"):
            folder = f"ISIC2018_Task3_{stem}_{kind}"
            (base / folder / "LICENSE.txt").write_text("CC BY-NC 4.0")
            out[f"2018/{folder}.zip"] = _zip_tree(base / folder, top=folder)
    return out


def _isic2020_objects(tmp: Path) -> dict[str, bytes]:
    base = write_isic2020(tmp / "isic2020-src")
    return {"2020/ISIC_2020_Training_JPEG.zip": _zip_tree(base / "ISIC_2020_Training_JPEG", top="train"),
            "2020/ISIC_2020_Training_GroundTruth_v2.csv": (base / "ISIC_2020_Training_GroundTruth_v2.csv").read_bytes(),
            "2020/ISIC_2020_Training_Duplicates.csv": (base / "ISIC_2020_Training_Duplicates.csv").read_bytes()}


def _isic2019_objects(tmp: Path) -> dict[str, bytes]:
    ids = ["ISIC_0000000", "ISIC_0000001", "ISIC_0024306", "ISIC_0024307"]
    onehot = {"ISIC_0000000": "MEL", "ISIC_0000001": "NV", "ISIC_0024306": "SCC", "ISIC_0024307": "NV"}
    cols = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
    gt = "image," + ",".join(cols) + "\n" + "".join(
        i + "," + ",".join("1.0" if c == onehot[i] else "0.0" for c in cols) + "\n" for i in ids)
    meta = "image,age_approx,anatom_site_general,lesion_id,sex\n" + "".join(
        f"{i},50,anterior torso,{'HAM_000' + str(k) if k > 1 else ''},female\n" for k, i in enumerate(ids))
    images = tmp / "isic2019-src" / "train"
    test = tmp / "isic2019-src" / "test"
    for k, i in enumerate(ids):
        lesion_image(seed=k)[0].save(_mk(images) / f"{i}.jpg")
    lesion_image(seed=9)[0].save(_mk(test) / "ISIC_0034321.jpg")
    return {"2019/ISIC_2019_Training_Input.zip": _zip_tree(images, top="ISIC_2019_Training_Input"),
            "2019/ISIC_2019_Training_GroundTruth.csv": gt.encode(),
            "2019/ISIC_2019_Training_Metadata.csv": meta.encode(),
            "2019/ISIC_2019_Test_Input.zip": _zip_tree(test, top="ISIC_2019_Test_Input"),
            "2019/ISIC_2019_Test_Metadata.csv": b"image,age_approx,anatom_site_general,sex\nISIC_0034321,60,,female\n"}
    # ISIC_2019_Test_GroundTruth.csv (optional) is not served: a 404 that must be skipped


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _handler(bucket: Bucket) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _head(self, status: int, length: int, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(length))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()

        def do_HEAD(self) -> None:
            body = bucket.objects.get(self.path.lstrip("/"))
            self._head(404, 0) if body is None else self._head(200, len(body))

        def do_GET(self) -> None:
            key = self.path.lstrip("/")
            body = bucket.objects.get(key)
            if body is None:
                self._head(404, 9)
                self.wfile.write(b"not found")
                return
            start = 0
            rng = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if rng:
                start = int(rng.group(1))
                bucket.ranges.append(f"{key}@{start}")
                if start >= len(body):
                    self._head(416, 0, {"Content-Range": f"bytes */{len(body)}"})
                    return
                self._head(206, len(body) - start, {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"})
            else:
                self._head(200, len(body))
            chunk = body[start:]
            if key in bucket.drop_after:  # send part of the body, then drop the connection
                chunk = chunk[: bucket.drop_after.pop(key)]
                self.close_connection = True
            # counted before writing: once the client has the bytes it may go on (and the test read `sent`) before
            # this thread runs again
            bucket.sent[key] = bucket.sent.get(key, 0) + len(chunk)
            self.wfile.write(chunk)

    return Handler


@pytest.fixture
def bucket(tmp_path: Path) -> Bucket:
    return Bucket({**_isic2018_objects(tmp_path), **_isic2020_objects(tmp_path), **_isic2019_objects(tmp_path)})


@pytest.fixture
def server(bucket: Bucket) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(bucket))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_isic2018_download_unpacks_and_loads(tmp_path: Path, bucket: Bucket, server: str) -> None:
    root = tmp_path / "data"
    target = download_dataset("isic2018", root, server=server, progress=False)
    assert target == root / "isic2018"
    assert (target / "ISIC2018_Task3_Training_Input" / "ISIC_0024306.jpg").is_file()  # top folder flattened
    assert not list(target.glob("*.part"))
    ds = load_dataset(DataConfig(dataset="isic2018", root=str(root)))
    assert len(ds) == 9 and ds.table["official_split"].nunique() == 3
    assert ds.table["lesion_id"].str.startswith("HAM_").sum() == 4


def test_isic2020_download_then_loader_drops_duplicates(tmp_path: Path, server: str) -> None:
    download_dataset("isic2020", tmp_path, server=server, progress=False)
    ds = load_dataset(DataConfig(dataset="isic2020", root=str(tmp_path)))
    assert len(ds) == 11 and "ISIC_0000005" not in set(ds.table["image_id"])


def test_isic2019_download_skips_unpublished_optional_file(tmp_path: Path, bucket: Bucket, server: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    download_dataset("isic2019", tmp_path, server=server, progress=False)
    assert "ISIC_2019_Test_GroundTruth.csv is not published" in caplog.text
    target = tmp_path / "isic2019"
    assert (target / "ISIC_2019_Test_Input" / "ISIC_0034321.jpg").is_file()
    ds = load_dataset(DataConfig(dataset="isic2019", root=str(tmp_path)))
    assert ds.class_totals()[["MEL", "NV", "SCC"]].tolist() == [1, 2, 1]


def test_second_run_downloads_nothing(tmp_path: Path, bucket: Bucket, server: str) -> None:
    download_dataset("isic2020", tmp_path, server=server, progress=False)
    bucket.sent.clear()
    download_dataset("isic2020", tmp_path, server=server, progress=False)
    assert bucket.sent == {}


def test_dropped_connection_then_resume(tmp_path: Path, bucket: Bucket, server: str) -> None:
    key = "2020/ISIC_2020_Training_JPEG.zip"
    size = len(bucket.objects[key])
    bucket.drop_after[key] = size // 3
    with pytest.raises(DownloadError, match=rf"ISIC_2020_Training_JPEG\.zip is incomplete \({size // 3} of {size} "
                                            r"bytes\); run the command again to resume"):
        download_dataset("isic2020", tmp_path, server=server, progress=False)
    part = tmp_path / "isic2020" / "ISIC_2020_Training_JPEG.zip.part"
    assert part.stat().st_size == size // 3
    download_dataset("isic2020", tmp_path, server=server, progress=False)
    assert bucket.ranges == [f"{key}@{size // 3}"]  # resumed with an HTTP Range request, not restarted
    assert bucket.sent[key] == size  # every byte sent exactly once over both attempts
    assert (tmp_path / "isic2020" / "ISIC_2020_Training_JPEG.zip").read_bytes() == bucket.objects[key]
    assert len(list((tmp_path / "isic2020" / "ISIC_2020_Training_JPEG").iterdir())) == 12


def test_resume_from_existing_part_file(tmp_path: Path, bucket: Bucket, server: str) -> None:
    key = "2018/ISIC2018_Task3_Test_Input.zip"
    data = bucket.objects[key]
    target = _mk(tmp_path / "isic2018")
    (target / "ISIC2018_Task3_Test_Input.zip.part").write_bytes(data[:100])
    download_dataset("isic2018", tmp_path, server=server, progress=False)
    assert bucket.sent[key] == len(data) - 100
    assert (target / "ISIC2018_Task3_Test_Input.zip").read_bytes() == data


def _with_md5(monkeypatch: pytest.MonkeyPatch, name: str, file: str, md5: str) -> None:
    """The release as if its publisher listed ``md5`` for ``file`` (ISIC publishes none)."""
    info = get_info(name)
    files = tuple(replace(f, md5=md5) if f.name == file else f for f in info.download.files)
    patched = replace(info, download=replace(info.download, files=files))
    monkeypatch.setattr(download_module, "get_info", lambda n: patched if n == name else get_info(n))


def test_bad_checksum_raises_and_deletes(tmp_path: Path, bucket: Bucket, server: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _with_md5(monkeypatch, "isic2020", "ISIC_2020_Training_Duplicates.csv", "0" * 32)
    with pytest.raises(DownloadError, match=r"Checksum mismatch for ISIC_2020_Training_Duplicates\.csv: expected "
                                            r"md5 0{32}"):
        download_dataset("isic2020", tmp_path, server=server, progress=False)
    target = tmp_path / "isic2020"
    assert not (target / "ISIC_2020_Training_Duplicates.csv").exists()
    assert not (target / "ISIC_2020_Training_Duplicates.csv.part").exists()


def test_good_checksum_verifies(tmp_path: Path, bucket: Bucket, server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "2020/ISIC_2020_Training_Duplicates.csv"
    (tmp_path / "probe").write_bytes(bucket.objects[key])
    _with_md5(monkeypatch, "isic2020", "ISIC_2020_Training_Duplicates.csv", file_digest(tmp_path / "probe"))
    download_dataset("isic2020", tmp_path / "data", server=server, progress=False)
    assert (tmp_path / "data" / "isic2020" / "ISIC_2020_Training_Duplicates.csv").read_bytes() == bucket.objects[key]


def test_required_file_missing_is_an_error(tmp_path: Path, bucket: Bucket, server: str) -> None:
    del bucket.objects["2020/ISIC_2020_Training_Duplicates.csv"]
    with pytest.raises(DownloadError, match=r"HTTP 404.*ISIC_2020_Training_Duplicates\.csv.*by hand"):
        download_dataset("isic2020", tmp_path, server=server, progress=False)


@pytest.mark.parametrize("name", ["isic2018", "isic2019", "isic2020"])
def test_offline_message_says_where_to_put_files(tmp_path: Path, name: str, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rc = main(["data", "download", name, "--data-root", str(tmp_path), "--server", f"http://127.0.0.1:{port}",
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "offline" in err and "by hand" in err and f"{tmp_path}/{name}/" in err
    assert "challenge.isic-archive.com" in err


@pytest.mark.parametrize("name", ["ph2", "pad_ufes_20", "derm7pt"])
def test_manual_only_sets_explain_placement(tmp_path: Path, name: str) -> None:
    with pytest.raises(DownloadError, match=rf"cannot be downloaded automatically.*{tmp_path}/{name}/"):
        download_dataset(name, tmp_path)


def test_cli_download_reports_ready(tmp_path: Path, server: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "download", "isic2020", "--data-root", str(tmp_path), "--server", server,
                 "--no-progress"]) == 0
    assert "isic2020 is ready" in capsys.readouterr().out
    shutil.rmtree(tmp_path / "isic2020" / "ISIC_2020_Training_JPEG")  # an unpacked folder removed: unpacked again
    assert main(["-q", "data", "download", "isic2020", "--data-root", str(tmp_path), "--server", server,
                 "--no-progress"]) == 0
    assert (tmp_path / "isic2020" / "ISIC_2020_Training_JPEG" / "ISIC_0000001.jpg").is_file()


def test_remote_spec_name() -> None:
    assert RemoteSpec("2020/ISIC_2020_Training_JPEG.zip").name == "ISIC_2020_Training_JPEG.zip"
