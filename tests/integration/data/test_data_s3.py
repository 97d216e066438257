"""Folders, blobs and tables on S3, through fsspec's s3fs, against moto's S3 server on loopback
(the ``moto_s3`` fixture: no cloud exists where the tests run)."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest

import tether as rh


@pytest.fixture
def bucket(moto_s3) -> str:
    return f"tether-test-{uuid.uuid4().hex[:8]}"


def test_folder_to_s3_and_back(sample, tmp_path, bucket):
    local = rh.folder(path=str(sample))
    s3_folder = local.to("s3", path=f"/{bucket}/sample")  # the bucket is made when missing
    assert s3_folder.system == "s3" and s3_folder.fsspec_url == f"s3://{bucket}/sample"
    assert s3_folder.exists_in_system()
    assert s3_folder.ls(full_paths=False) == ["0.txt", "1.txt", "2.txt", "3.txt", "4.txt", "sub"]
    assert s3_folder.ls()[0] == f"s3://{bucket}/sample/0.txt"
    assert s3_folder.get("sub/deep.txt") == b"deep"

    s3_folder.put({"extra.txt": b"from s3"})
    with pytest.raises(FileExistsError):
        s3_folder.put({"extra.txt": b"again"})

    copy = s3_folder.to("s3", path=f"s3://{bucket}/copy")  # S3 to S3
    assert copy.get("extra.txt") == b"from s3"
    new_local = copy.to("here", path=str(tmp_path / "new-sample-folder"))
    assert new_local.system == "file" and new_local.get("extra.txt") == b"from s3"
    assert (tmp_path / "new-sample-folder" / "sub" / "deep.txt").read_text() == "deep"

    default = local.to("s3")  # Runhouse's default place: a bucket of tether's own
    assert default.path.startswith("/tether-folder/") and default.get("0.txt") == b"0"

    name = f"s3-folder-{uuid.uuid4().hex[:6]}"
    s3_folder.save(name)
    loaded = rh.folder(name=name)
    assert loaded.system == "s3" and loaded.get("extra.txt") == b"from s3"

    s3_folder.rm()
    assert not s3_folder.exists_in_system()
    with pytest.raises(rh.NotFoundError, match=f"s3://{bucket}/sample"):
        s3_folder.ls()


def test_blob_and_table_on_s3(tmp_path, bucket):
    blob = rh.blob(data=list(range(50)), name=f"nums-{uuid.uuid4().hex[:6]}", path=f"/{bucket}/nums.pkl",
                   system="s3")
    assert blob.fsspec_url == f"s3://{bucket}/nums.pkl" and blob.exists_in_system()
    blob.save()
    assert rh.blob(name=blob.name).fetch() == list(range(50))
    here = blob.to("here", path=str(tmp_path / "nums.pkl"))
    assert here.fetch() == list(range(50))
    blob.rm()
    assert not blob.exists_in_system()

    df = pd.DataFrame({"x": [1.5, 2.5], "label": ["a", "b"]})
    table = rh.table(data=df, name=f"t-{uuid.uuid4().hex[:6]}", path=f"/{bucket}/tables/t.parquet",
                     system="s3").write()
    assert table.exists_in_system()
    assert rh.folder(path=f"/{bucket}/tables", system="s3").ls(full_paths=False) == ["t.parquet"]
    table.save()
    assert rh.table(name=table.name).to_pandas().equals(df)
    local = table.to("here", path=str(tmp_path / "t.parquet"))
    assert pd.read_parquet(tmp_path / "t.parquet").equals(df) and len(local) == 2
    table.rm()
    assert not table.exists_in_system()
