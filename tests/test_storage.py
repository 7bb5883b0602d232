"""Storage: local paths, file:// and s3:// (a real moto_server) behave the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from raygan import storage


def _round_trip(root: str) -> None:
    """Every operation of the storage API against one root URI."""
    storage.write_bytes(storage.join(root, "a", "b.bin"), b"\x00\x01")
    storage.write_text(storage.join(root, "a", "c.txt"), "héllo")
    storage.write_json(storage.join(root, "d.json"), {"x": [1, 2], "y": None})
    assert storage.read_bytes(storage.join(root, "a", "b.bin")) == b"\x00\x01"
    assert storage.read_text(storage.join(root, "a", "c.txt")) == "héllo"
    assert storage.read_json(storage.join(root, "d.json")) == {"x": [1, 2], "y": None}
    assert storage.exists(storage.join(root, "a", "b.bin"))
    assert storage.exists(storage.join(root, "a"))
    assert not storage.exists(storage.join(root, "nope.bin"))
    files = storage.list_files(root)
    assert files == sorted(files) and len(files) == 3
    assert files[0].endswith("a/b.bin") and files[0].startswith(root.split("://")[0])
    json_files = storage.list_files(root, suffix=".json")
    assert len(json_files) == 1 and json_files[0].endswith("/d.json")
    assert storage.list_files(storage.join(root, "a", "b.bin")) == [files[0]]
    assert storage.list_files(storage.join(root, "missing")) == []
    storage.write_bytes(storage.join(root, "a", "b.bin"), b"new")  # overwrite
    assert storage.read_bytes(storage.join(root, "a", "b.bin")) == b"new"


def test_local_round_trip(tmp_path: Path) -> None:
    _round_trip(str(tmp_path / "root"))


def test_file_uri_round_trip(tmp_path: Path) -> None:
    root = f"file://{tmp_path}/root"
    _round_trip(root)
    assert all(f.startswith("file://") for f in storage.list_files(root))
    assert (tmp_path / "root" / "a" / "b.bin").read_bytes() == b"new"


def test_s3_round_trip(s3_bucket: str) -> None:
    root = storage.join(s3_bucket, "prefix")
    _round_trip(root)
    assert storage.list_files(root, suffix=".txt") == [f"{root}/a/c.txt"]
    assert storage.is_remote(root)
    # boto3 sees what pyarrow wrote: one settings object feeds both clients.
    bucket = s3_bucket[len("s3://"):]
    body = storage.s3_client().get_object(Bucket=bucket, Key="prefix/a/c.txt")["Body"].read()
    assert body.decode("utf-8") == "héllo"


def test_dir_copies_through_s3(tmp_path: Path, s3_bucket: str) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "x.txt").write_text("x")
    (src / "sub" / "y.bin").write_bytes(b"yy")
    storage.upload_dir(src, storage.join(s3_bucket, "bundle"))
    assert storage.list_files(storage.join(s3_bucket, "bundle")) == [
        f"{s3_bucket}/bundle/sub/y.bin", f"{s3_bucket}/bundle/x.txt"
    ]
    back = storage.download_dir(storage.join(s3_bucket, "bundle"), tmp_path / "back")
    assert back == (tmp_path / "back").absolute()
    assert (back / "x.txt").read_text() == "x" and (back / "sub" / "y.bin").read_bytes() == b"yy"
    local_copy = storage.download_dir(str(src), tmp_path / "copy")  # local -> local works too
    assert (local_copy / "sub" / "y.bin").read_bytes() == b"yy"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        storage.download_dir(storage.join(s3_bucket, "missing"), tmp_path / "none")
    with pytest.raises(NotADirectoryError):
        storage.upload_dir(src / "x.txt", storage.join(s3_bucket, "other"))


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ("RAYGAN_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION")
    for var in names:
        monkeypatch.delenv(var, raising=False)
    assert storage.StorageSettings.from_env() == storage.StorageSettings()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://fallback:1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert storage.StorageSettings.from_env() == storage.StorageSettings("http://fallback:1", "eu-west-1")
    monkeypatch.setenv("RAYGAN_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    assert storage.StorageSettings.from_env() == storage.StorageSettings("http://127.0.0.1:9000", "us-west-2")


def test_uris_and_errors(tmp_path: Path) -> None:
    assert storage.join("s3://bkt/p/", "a", "/b/") == "s3://bkt/p/a/b"
    assert storage.join("s3://bkt", "a") == "s3://bkt/a"
    assert storage.join(str(tmp_path), "a", "b") == str(tmp_path / "a" / "b")
    assert not storage.is_remote(str(tmp_path)) and not storage.is_remote("file:///x")
    with pytest.raises(ValueError, match="3 characters"):
        storage.filesystem("s3://ab/key")
    with pytest.raises(ValueError, match="unsupported URI scheme"):
        storage.filesystem("gs://bucket/key")
    fs, path = storage.filesystem("relative/dir")
    assert Path(path).is_absolute()
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(str(tmp_path / "missing.bin"))
