"""Fixtures of the data tests: an S3 server on loopback.

No cloud exists where the tests run, so S3 is moto's S3 server (``moto[server]``, in the dev
extra), started here as a subprocess on 127.0.0.1. tether reaches it through s3fs exactly as it
would reach AWS: only ``AWS_ENDPOINT_URL`` and dummy credentials differ.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

_AWS_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_s3():
    """The URL of a moto S3 server on loopback, with the AWS variables pointing at it. Module
    scope, never session: the AWS variables it sets must be gone before other tests run (SkyPilot's
    tests, later in the same process, see AWS credentials and an endpoint otherwise)."""
    pytest.importorskip("moto.server", reason="moto[server] (the dev extra) runs S3 for these tests")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto's S3 server did not start on port {port}")
            time.sleep(0.1)
    _forget_s3_filesystems()  # fsspec keeps S3 filesystems made for an earlier module's server
    saved = {key: os.environ.get(key) for key in _AWS_ENV}
    url = f"http://127.0.0.1:{port}"
    os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    yield url
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    proc.terminate()
    proc.wait(timeout=10)
    _forget_s3_filesystems()


def _forget_s3_filesystems() -> None:
    """Drop fsspec's cached S3 filesystems: each holds the endpoint of the server it was made for."""
    s3fs = pytest.importorskip("s3fs")
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def sample(tmp_path):
    """A local folder of five small files, ``0.txt`` .. ``4.txt`` (Runhouse's tutorial folder)."""
    folder = tmp_path / "sample-folder"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.txt").write_text(str(i))
    (folder / "sub").mkdir()
    (folder / "sub" / "deep.txt").write_text("deep")
    return folder
