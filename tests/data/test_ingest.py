"""Ingest: class folders and CSVs of PNG/JPEG/DICOM become 8-bit gray input shards; bad files are reported."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raygan import storage
from raygan.cli import main
from raygan.data.ingest import IngestResult, image_id_of, ingest
from raygan.data.shards import decode_rows, read_table

SIZE = 16


def _save(path: Path, arr: np.ndarray, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)


def _dicom(path: Path, *, window: bool = True, photometric: str = "MONOCHROME2") -> None:
    """A 12-bit CT-like DICOM, 40 x 60: top half raw 1000, bottom half raw 2048.

    Rescale -1024 puts them at -24 and 1024; the window 1024 +- 512 maps -24 to black and 1024
    to mid-gray.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = 40, 60
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    if window:
        ds.WindowCenter, ds.WindowWidth = 1024, 1024
    arr = np.full((40, 60), 1000, dtype=np.uint16)
    arr[20:] = 2048
    ds.PixelData = arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)


def _pixels(png: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(png))
    assert img.mode == "L" and img.size == (SIZE, SIZE)  # every stored image: 8-bit gray, size x size
    return np.asarray(img)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    _save(src / "COVID" / "a.png", np.full((20, 20), 255, np.uint8))
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[..., 1] = 255
    _save(src / "COVID" / "b.jpg", rgb, "JPEG")
    _dicom(src / "COVID" / "scans" / "c.dcm")
    _save(src / "Normal" / "d.png", np.full((24, 24), 65535, np.uint16))  # 16-bit
    (src / "Normal" / "broken.png").write_bytes(b"\x89PNG garbage")
    (src / "Normal" / ".DS_Store").write_bytes(b"junk")  # hidden: ignored, not an error
    (src / "README.txt").write_text("no class")  # top level: reported, skipped
    return src


def test_folder_layout(folder: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    result = ingest(str(folder), out, size=SIZE, rows_per_shard=2, positive_class="COVID")
    assert isinstance(result, IngestResult)
    assert result.rows == 4 and len(result.shards) == 2
    assert result.classes == {"COVID": 1, "Normal": 0}
    messages = sorted(e.message for e in result.errors)
    assert len(messages) == 2
    assert messages[0].startswith("Normal/broken.png: cannot decode")
    assert messages[1].startswith("README.txt: not inside a class folder")
    assert result.errors[0].image_id in {image_id_of("Normal/broken.png"), image_id_of("README.txt")}

    table = read_table(out)
    assert table.column_names == ["image_id", "image", "label", "label_name", "source_path"]
    rows = {r["source_path"]: r for r in table.to_pylist()}
    assert sorted(rows) == ["COVID/a.png", "COVID/b.jpg", "COVID/scans/c.dcm", "Normal/d.png"]
    for rel, row in rows.items():
        assert row["image_id"] == hashlib.sha256(rel.encode()).hexdigest()[:16]
        assert row["label"] == (1 if rel.startswith("COVID") else 0)
        assert row["label_name"] == rel.split("/")[0]
    assert (_pixels(rows["COVID/a.png"]["image"]) == 255).all()
    assert (_pixels(rows["Normal/d.png"]["image"]) == 255).all()  # 16-bit white stays white
    green = _pixels(rows["COVID/b.jpg"]["image"])
    assert abs(int(green.mean()) - round(0.587 * 255)) <= 3  # RGB -> luma
    dcm = _pixels(rows["COVID/scans/c.dcm"]["image"])
    assert dcm[0].max() <= 2  # below the window: black
    assert abs(int(dcm[-1].mean()) - 128) <= 3  # the window centre: mid-gray
    assert decode_rows(table, size=SIZE).errors == []
    manifest = storage.read_json(storage.join(out, "ingest.json"))
    assert manifest["classes"] == result.classes and len(manifest["errors"]) == 2 and manifest["size"] == SIZE


def test_dicom_without_window_and_monochrome1(tmp_path: Path) -> None:
    _dicom(tmp_path / "src" / "1" / "plain.dcm", window=False)  # min-max: top black, bottom white
    _dicom(tmp_path / "src" / "0" / "inverted.dcm", photometric="MONOCHROME1")
    result = ingest(str(tmp_path / "src"), str(tmp_path / "out"), size=SIZE)  # classes "0"/"1" need no flag
    assert result.errors == [] and result.classes == {"0": 0, "1": 1}
    rows = {r["source_path"]: r for r in read_table(str(tmp_path / "out")).to_pylist()}
    plain = _pixels(rows["1/plain.dcm"]["image"])
    assert plain[0].max() <= 2 and plain[-1].min() >= 253
    inverted = _pixels(rows["0/inverted.dcm"]["image"])
    assert inverted[0].min() >= 253 and abs(int(inverted[-1].mean()) - 127) <= 3


def test_two_classes_need_positive_class(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--positive-class"):
        ingest(str(folder), str(tmp_path / "out"), size=SIZE)
    with pytest.raises(ValueError, match="not among the classes"):
        ingest(str(folder), str(tmp_path / "out"), size=SIZE, positive_class="Pneumonia")
    with pytest.raises(FileNotFoundError):
        ingest(str(tmp_path / "missing"), str(tmp_path / "out"), size=SIZE)


def test_csv_layout(tmp_path: Path) -> None:
    _save(tmp_path / "imgs" / "p.png", np.full((10, 10), 200, np.uint8))
    _save(tmp_path / "imgs" / "n.png", np.full((10, 10), 20, np.uint8))
    _save(tmp_path / "elsewhere" / "abs.png", np.full((10, 10), 90, np.uint8))
    (tmp_path / "imgs" / "bad.jpg").write_bytes(b"")
    csv = tmp_path / "list.csv"
    csv.write_text(
        "path,label,site\n"
        "imgs/p.png,1,A\n"
        "imgs/n.png,0,B\n"
        f"{tmp_path / 'elsewhere' / 'abs.png'},1,C\n"
        "imgs/bad.jpg,0,D\n"
        "imgs/gone.png,0,E\n"
    )
    result = ingest(str(csv), str(tmp_path / "out"), size=SIZE)
    assert result.rows == 3 and result.classes == {"0": 0, "1": 1}
    assert sorted(e.message.split(":")[0] for e in result.errors) == ["imgs/bad.jpg", "imgs/gone.png"]
    assert any("empty" in e.message for e in result.errors)
    rows = {r["source_path"]: r for r in read_table(str(tmp_path / "out")).to_pylist()}
    assert rows["imgs/p.png"]["label"] == 1 and rows["imgs/n.png"]["label"] == 0
    assert rows["imgs/p.png"]["site"] == "A"  # extra CSV columns pass through
    assert rows["imgs/p.png"]["image_id"] == image_id_of("imgs/p.png")
    assert int(_pixels(rows[str(tmp_path / "elsewhere" / "abs.png")]["image"]).mean()) == 90


def test_csv_with_class_names_to_s3(tmp_path: Path, s3_bucket: str) -> None:
    _save(tmp_path / "x.png", np.zeros((10, 10), np.uint8))
    _save(tmp_path / "y.png", np.zeros((10, 10), np.uint8))
    (tmp_path / "l.csv").write_text("path,label\nx.png,COVID\ny.png,Normal\n")
    with pytest.raises(ValueError, match="--positive-class"):
        ingest(str(tmp_path / "l.csv"), storage.join(s3_bucket, "never"), size=SIZE)
    out = storage.join(s3_bucket, "shards")
    result = ingest(str(tmp_path / "l.csv"), out, size=SIZE, positive_class="COVID")
    assert result.shards == [f"{out}/part-00000.parquet"]
    labels = dict(zip(*read_table(out, columns=["label_name", "label"]).to_pydict().values()))
    assert labels == {"COVID": 1, "Normal": 0}
    (tmp_path / "bad.csv").write_text("file,label\nx.png,1\n")
    with pytest.raises(ValueError, match="path,label"):
        ingest(str(tmp_path / "bad.csv"), str(tmp_path / "o"), size=SIZE)


def test_cli_prints_skipped_files(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "cli-out")
    code = main(["ingest", str(folder), "--out", out, "--size", str(SIZE), "--positive-class", "COVID"])
    assert code == 0
    captured = capsys.readouterr()
    assert "wrote 4 image(s) in 1 shard(s)" in captured.out
    assert "skipped Normal/broken.png: cannot decode" in captured.err
    assert read_table(out).num_rows == 4
