"""Folders, blobs and tables on this machine and the local cluster, as Runhouse's docs use them."""

from __future__ import annotations

import sys
import uuid

import pandas as pd
import pytest

import tether as rh

FILES = ["0.txt", "1.txt", "2.txt", "3.txt", "4.txt", "sub"]


def test_local_folder_ls_get_put_rm(sample):
    folder = rh.folder(path=str(sample))
    assert folder.exists_in_system()
    assert folder.ls(full_paths=False) == FILES
    assert folder.ls()[0] == str(sample / "0.txt")
    assert folder.get("3.txt") == b"3"
    assert folder.get("3.txt", mode="r") == "3"

    folder.put({"new.bin": b"\x00\x01", "note.txt": "text"})
    assert folder.get("new.bin") == b"\x00\x01"
    assert folder.ls(sort=True)[0].endswith(("new.bin", "note.txt"))  # newest first
    with pytest.raises(FileExistsError, match="new.bin"):
        folder.put({"new.bin": b"again"})
    folder.put({"new.bin": b"again"}, overwrite=True)
    assert folder.get("new.bin") == b"again"

    folder.rm(contents=["new.bin", "note.txt"])
    assert folder.ls(full_paths=False) == FILES
    folder.rm()
    assert not folder.exists_in_system()


def test_to_here_and_mv(sample, tmp_path, monkeypatch):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    copy = rh.folder(path=str(sample)).to("here", path="new-sample-folder")
    assert copy.path == str(tmp_path / "cwd" / "new-sample-folder")
    assert copy.ls(full_paths=False) == FILES and copy.get("sub/deep.txt") == b"deep"

    default = rh.folder(path=str(sample)).to("here", path=None)  # ./<folder name>, as Runhouse
    assert default.path == str(tmp_path / "cwd" / "sample-folder") and default.get("0.txt") == b"0"
    assert default.to("here").path == default.path  # already here: nothing to copy

    copy.mv("file", path=str(tmp_path / "moved"))
    assert copy.path == str(tmp_path / "moved") and copy.ls(full_paths=False) == FILES
    assert not (tmp_path / "cwd" / "new-sample-folder").exists()


def test_folder_to_the_local_cluster_and_back(sample, tmp_path, session_cluster):
    on_cluster = rh.folder(path=str(sample)).to(session_cluster, path=str(tmp_path / "on-cluster"))
    assert on_cluster.system is session_cluster
    assert on_cluster.ls(full_paths=False) == FILES
    on_cluster.put({"from-caller.txt": b"hi"})
    back = on_cluster.to("here", path=str(tmp_path / "back"))
    assert back.system == "file" and back.get("from-caller.txt") == b"hi"
    assert back.get("sub/deep.txt") == b"deep"

    # a folder saved with its cluster loads in another process's way: by name
    name = f"data-{uuid.uuid4().hex[:6]}"
    on_cluster.save(name)
    loaded = rh.folder(name=name)
    assert isinstance(loaded, rh.Folder) and loaded.system == session_cluster
    assert loaded.path == on_cluster.path and "from-caller.txt" in loaded.ls(full_paths=False)
    assert rh.load(name).config() == on_cluster.config()


def test_blob_and_table_here_and_on_the_cluster(tmp_path, session_cluster):
    blob = rh.blob(data={"weights": [1, 2, 3]}, name="model", path=str(tmp_path / "model.pkl"))
    assert blob.exists_in_system() and blob.fetch() == {"weights": [1, 2, 3]}
    blob.save(f"blob-{uuid.uuid4().hex[:6]}")
    assert rh.blob(name=blob.name).fetch() == {"weights": [1, 2, 3]}

    # on a cluster with no path: the cluster's object store, as Runhouse's blob
    stored = blob.to(session_cluster)
    assert stored.path is None and stored.exists_in_system()
    assert session_cluster.get(stored.name) == {"weights": [1, 2, 3]}
    assert stored.fetch() == {"weights": [1, 2, 3]}
    stored.rm()
    assert not stored.exists_in_system()
    blob.rm()
    assert not blob.exists_in_system()

    df = pd.DataFrame({"id": [1, 2, 3], "name": ["a", "b", "c"]})
    name = f"table-{uuid.uuid4().hex[:6]}"
    rh.table(data=df, name=name, path=str(tmp_path / "t" / "people.parquet")).save()  # save() writes
    loaded = rh.table(name=name)
    assert loaded.to_pandas().equals(df) and len(loaded) == 3
    assert list(loaded)[1] == {"id": 2, "name": "b"}
    assert [b.num_rows for b in loaded.stream(batch_size=2)] == [2, 1]
    on_cluster = loaded.to(session_cluster, path=str(tmp_path / "cluster-table"))
    assert on_cluster.exists_in_system() and on_cluster.fetch(columns=["id"]).num_rows == 3


def test_errors_name_what_is_missing(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(rh.NotFoundError, match=str(missing)):
        rh.folder(path=str(missing)).ls()
    with pytest.raises(rh.NotFoundError, match=str(missing)):
        rh.folder(path=str(missing)).to("here", path=str(tmp_path / "x"))
    with pytest.raises(rh.NotFoundError, match="nope.txt"):
        rh.folder(path=str(tmp_path)).get("nope.txt")
    with pytest.raises(rh.NotFoundError, match="nothing-saved"):
        rh.load("nothing-saved")
    # a name that is not saved yet makes a new folder (Runhouse does the same)
    assert rh.folder(name="not-saved-yet").name == "not-saved-yet"


def test_s3_without_s3fs_names_the_install_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "s3fs", None)  # as if s3fs were not installed
    with pytest.raises(rh.ConfigError, match=r"s3fs.*pip install .*\[data\]"):
        rh.folder(path="/bucket/key", system="s3").ls()
