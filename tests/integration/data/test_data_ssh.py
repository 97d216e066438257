"""A folder to an SSH cluster and back (rsync over the cluster's SSH connection), on one of the
session's test hosts."""

from __future__ import annotations

import uuid

import pandas as pd

import tether as rh


def test_folder_blob_table_on_an_ssh_cluster(sample, tmp_path, ssh_hosts, ssh_cluster, moto_s3):
    host = ssh_hosts[0]
    cluster = ssh_cluster(host)
    where = f"data-{uuid.uuid4().hex[:6]}"  # relative: under the node user's home, as Runhouse

    on_cluster = rh.folder(path=str(sample)).to(cluster, path=where)
    assert on_cluster.system is cluster and on_cluster.path == where
    assert on_cluster.ls(full_paths=False) == ["0.txt", "1.txt", "2.txt", "3.txt", "4.txt", "sub"]
    assert on_cluster.ls()[0] == f"{where}/0.txt"
    assert host.ssh(f"cat ~/{where}/sub/deep.txt").stdout.strip() == "deep"  # really on the host

    on_cluster.put({"made-here.txt": b"over ssh"})
    assert on_cluster.get("made-here.txt") == b"over ssh"
    back = on_cluster.to("here", path=str(tmp_path / "back"))
    assert back.get("made-here.txt") == b"over ssh" and back.get("sub/deep.txt") == b"deep"

    # cluster to S3 and S3 to cluster go through this machine
    bucket = f"ssh-{uuid.uuid4().hex[:8]}"
    in_s3 = on_cluster.to("s3", path=f"/{bucket}/copy")
    assert in_s3.get("made-here.txt") == b"over ssh"
    again = in_s3.to(cluster, path=f"{where}-again")
    assert "made-here.txt" in again.ls(full_paths=False)

    blob = rh.blob(data={"k": 1}, path=f"{where}/blob.pkl", system=cluster)
    assert blob.fetch() == {"k": 1} and blob.exists_in_system()
    df = pd.DataFrame({"a": [1, 2]})
    table = rh.table(data=df, path=f"{where}/table", system=cluster).write()
    assert table.fetch().to_pandas().equals(df)

    on_cluster.rm(contents=["made-here.txt"])
    assert "made-here.txt" not in on_cluster.ls(full_paths=False)
    on_cluster.rm()
    again.rm()
    assert not on_cluster.exists_in_system()
    assert host.ssh(f"test -e ~/{where} && echo yes || echo no").stdout.strip() == "no"
