"""tether.state: the one module that reads and writes a cluster's files, each write atomic and private."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from tether import state


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "clusters" / "c"
    path.mkdir(parents=True)
    return path


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_private_is_0600_and_leaves_no_temporary_file(folder):
    state.write_private(folder / "a.json", "{}")
    state.write_private(folder / "b.bin", b"\x00\x01")
    assert _mode(folder / "a.json") == 0o600 and (folder / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in folder.iterdir()) == ["a.json", "b.bin"]


def test_readers_never_see_half_a_file(folder):
    path = folder / "record.json"
    big = {"x": "y" * 200_000}
    state.write_json(path, big)
    seen, stop = [], threading.Event()

    def read():
        while not stop.is_set():
            seen.append(state.read_json(path))

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(200):
        state.write_json(path, {**big, "i": i})
    stop.set()
    reader.join()
    assert seen and all(isinstance(s, dict) and s["x"] == big["x"] for s in seen)


def test_a_failed_write_keeps_the_old_file_and_cleans_up(folder, monkeypatch):
    path = folder / "limits.json"
    state.write_limits(folder, 1 << 30, 2.0)

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        state.write_limits(folder, 1, 1.0)
    monkeypatch.undo()
    assert state.read_limits(folder) == {"memory": 1 << 30, "cpus": 2.0}
    assert [p.name for p in folder.iterdir()] == [path.name]


def test_token_is_made_once_and_private(folder):
    token = state.ensure_token(folder)
    assert len(token) >= 32 and state.ensure_token(folder) == token == state.read_token(folder)
    assert _mode(folder / state.TOKEN) == 0o600
    assert state.read_token(folder.parent) is None


def test_daemon_record_round_trip_and_removal_only_by_its_own_daemon(folder):
    assert state.read_daemon_record(folder) is None
    state.write_daemon_record(folder, {"pid": 1234, "host": "127.0.0.1", "port": 9})
    assert state.read_daemon_record(folder)["port"] == 9
    assert (folder / state.DAEMON_PID).read_text() == "1234"
    state.remove_daemon_record(folder, pid=999)  # another daemon's exit: the record stays
    assert state.read_daemon_record(folder) is not None and (folder / state.DAEMON_PID).exists()
    state.remove_daemon_record(folder, pid=1234)
    assert state.read_daemon_record(folder) is None and not (folder / state.DAEMON_PID).exists()
    state.write_daemon_record(folder, {"pid": 5})
    state.remove_daemon_record(folder)  # by the launcher: whatever it names
    assert not any(folder.iterdir())


def test_unreadable_files_read_as_missing(folder):
    (folder / state.DAEMON_RECORD).write_text("{half")
    (folder / state.LIMITS).write_text("[1, 2]")
    (folder / state.AUTOSTOP).write_text('{"minutes": "soon"}')
    assert state.read_daemon_record(folder) is None
    assert state.read_limits(folder) == {"memory": None, "cpus": None}
    assert state.read_autostop(folder) == -1.0


def test_autostop_none_means_never(folder):
    state.write_autostop(folder, None)
    assert state.read_autostop(folder) == -1.0
    state.write_autostop(folder, 0.5)
    assert state.read_autostop(folder) == 0.5


def test_pid_alive():
    assert state.pid_alive(os.getpid())
    assert not state.pid_alive(0) and not state.pid_alive(True) and not state.pid_alive("1")


def test_image_records_and_env(tmp_path):
    assert state.read_image_records(tmp_path) == {} and state.read_image_env(tmp_path) == {}
    state.write_image_record(tmp_path, "abc123", {"kind": "run_bash"})
    assert state.read_image_records(tmp_path) == {"abc123": {"kind": "run_bash"}}
    assert oct((tmp_path / "image" / "abc123.json").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ValueError, match="hex digits"):
        state.write_image_record(tmp_path, "../token", {})
    state.write_image_env(tmp_path, {"A": "1"})
    assert state.read_image_env(tmp_path) == {"A": "1"}
    state.remove_image_records(tmp_path)
    assert state.read_image_records(tmp_path) == {}
