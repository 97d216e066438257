"""Shared-memory frames (``protocol/shm.py``): a name from the wire is used only if tether made
it, nothing outside the folder is ever touched, a failed write leaves no file, and links handed
to callers that nobody took are swept."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from tether.protocol import shm, wire

HEX = "0123456789abcdef01234567"


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "tether-0-cluster"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def decoy(tmp_path):
    """A file next to the cluster's folder, which nothing may ever delete."""
    path = tmp_path / "decoy"
    path.write_text("keep me")
    return path


def test_the_names_tether_makes_are_frame_names(folder):
    for suffix in (".buf", ".out"):
        name = shm._new_name(suffix)
        assert shm._path_in(folder, name) == os.path.join(folder, name)


BAD_NAMES = ["probe", ".probe", "../decoy", "/etc/passwd", "decoy", HEX.upper() + ".buf", HEX[:-1] + ".buf",
             HEX + "0.buf", HEX + ".probe", HEX + ".BUF", HEX + ".buf/../../decoy", HEX + ".buf\n",
             "", 12, None, ["x"]]


@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n) for n in BAD_NAMES])
def test_any_other_name_is_refused_naming_it(folder, name):
    with pytest.raises(shm.BadSharedFrame, match="bad shared frame name"):
        shm._path_in(folder, name)


def shared_message(listing) -> tuple[list, int]:
    frames = [b"pickle", b"", json.dumps(listing).encode()]
    return [memoryview(f) for f in frames], wire.SHARED | wire.OWNED


@pytest.mark.parametrize("listing", [
    [[1, "../decoy", 7]], [[1, "probe", 7]], [[1, HEX + ".buf", 7], [1, "../decoy", 7]],
    [[5, HEX + ".buf", 7]], [[-1, HEX + ".buf", 7]], [[True, HEX + ".buf", 7]], [[1, HEX + ".buf", -7]],
    [[1, HEX + ".buf"]], {"1": "x"}, "not a list"])
def test_a_bad_listing_touches_no_file(folder, decoy, listing):
    (folder / "probe").write_text("p")
    (folder / (HEX + ".buf")).write_bytes(b"1234567")
    frames, flags = shared_message(listing)
    with pytest.raises(shm.BadSharedFrame):
        shm.resolve(frames, flags, folder)
    assert decoy.read_text() == "keep me"
    assert (folder / "probe").read_text() == "p"
    assert (folder / (HEX + ".buf")).exists()  # checked whole before any file is mapped (and unlinked)


def test_discard_removes_nothing_but_frame_files(folder, decoy):
    (folder / "probe").write_text("p")
    shm.discard(folder, ["probe", "../decoy", str(decoy), ".", ".."])
    assert decoy.read_text() == "keep me" and (folder / "probe").exists()


def test_a_listing_that_is_not_json_is_refused(folder):
    frames = [memoryview(b"pickle"), memoryview(b"{not json")]
    with pytest.raises(shm.BadSharedFrame, match="not JSON"):
        shm.listed(frames, wire.SHARED)


def test_a_good_frame_is_mapped_and_owned_ones_unlinked(folder):
    out, flags, names = shm.export_owned([b"head", bytes(shm.MIN_SIZE)], folder)
    assert flags == wire.SHARED | wire.OWNED and len(names) == 1
    assert stat.S_IMODE(os.stat(folder / names[0]).st_mode) == 0o600
    frames = shm.resolve([memoryview(f) for f in out], flags, folder)
    assert len(frames[1]) == shm.MIN_SIZE and not (folder / names[0]).exists()


def test_a_failed_write_leaves_no_file(folder):
    """A write cut short (here by a file size limit, as ENOSPC cuts it on a full /dev/shm) removes
    its file: it would hold the memory it got until the daemon restarts."""
    code = (
        "import resource, signal, sys\n"
        "from tether.protocol import shm\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (shm.MIN_SIZE, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    shm.export([b'head', bytes(4 * shm.MIN_SIZE)], sys.argv[1])\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "OSError" or done.stdout.strip().endswith("Error"), done.stderr
    assert os.listdir(folder) == []


def test_links_nobody_took_are_swept_and_counted(folder):
    handouts = shm.Handouts(folder, ttl=30)
    taken, untaken = shm._new_name(".out"), shm._new_name(".out")
    for name in (taken, untaken):
        (folder / name).write_bytes(b"x" * 10)
    handouts.add([taken], 10)
    handouts.add([untaken], 10)
    (folder / taken).unlink()  # its caller mapped it
    assert handouts.sweep() == 0  # not yet due
    assert handouts.info()["handed_out"] == 2
    assert handouts.sweep(time.monotonic() + 31) == 1
    assert not (folder / untaken).exists()
    assert handouts.info() == {"handed_out": 0, "swept": 1, "swept_bytes": 10, "ttl": 30}


def test_the_sweeper_runs_on_its_own(folder):
    handouts = shm.Handouts(folder, ttl=0.2)
    name = shm._new_name(".out")
    (folder / name).write_bytes(b"x")
    handouts.add([name], 1)
    deadline = time.monotonic() + 10
    while (folder / name).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not (folder / name).exists() and handouts.info()["swept"] == 1


def test_a_probe_is_read_once_and_only_by_its_name(folder, decoy):
    name, token = shm.write_probe(folder)
    assert stat.S_IMODE(os.stat(folder / name).st_mode) == 0o600
    for bad in ("probe", "../decoy", str(decoy), HEX + ".buf", name + "x"):
        assert shm.read_probe(folder, bad) is None
    assert shm.read_probe(folder, name) == token
    assert not (folder / name).exists() and decoy.exists()
    assert shm.read_probe(folder, name) is None
    assert shm.read_probe(None, name) is None


def test_the_daemon_probe_is_private(folder):
    token = shm.write_daemon_probe(folder)
    assert (folder / "probe").read_text() == token
    assert stat.S_IMODE(os.stat(folder / "probe").st_mode) == 0o600


def test_the_folder_can_live_elsewhere(monkeypatch, tmp_path):
    monkeypatch.setenv("TETHER_SHM_ROOT", str(tmp_path))
    assert shm.folder_for(tmp_path / "state").parent == tmp_path
    monkeypatch.setenv("TETHER_SHM_ROOT", str(tmp_path / "missing"))
    assert shm.folder_for(tmp_path / "state") is None


def test_a_bad_handout_ttl_is_named(monkeypatch):
    monkeypatch.setenv("TETHER_SHM_HANDOUT_TTL", "soon")
    with pytest.raises(ValueError, match="TETHER_SHM_HANDOUT_TTL must be a number of seconds"):
        shm.handout_ttl()
    monkeypatch.setenv("TETHER_SHM_HANDOUT_TTL", "2.5")
    assert shm.handout_ttl() == 2.5
