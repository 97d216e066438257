"""The daemon's manifest on a real folder: what one daemon keeps, the next one finds."""

from __future__ import annotations

import asyncio
import os
import stat

from tether.daemon.manifest import Manifest


def record(name: str, kind: str = "instance") -> dict:
    return {"name": name, "env": "default", "kind": kind, "interface": {"type": "m.C"},
            "meta": {"op": "deploy", "kind": kind, "name": name}, "created": 1.0, "node": 0}


def test_what_one_daemon_keeps_the_next_finds_with_its_payload(tmp_path):
    first = Manifest(tmp_path)
    assert first.load().previous is None
    assert asyncio.run(first.save(record("a"), [b"args", b"\x00" * 10])) is None
    asyncio.run(first.save_env({"name": "gpu", "reqs": ["x"], "env_vars": {}, "working_dir": None,
                                "python": None}))
    first.closed()

    second = Manifest(tmp_path)
    found = second.load()
    assert [r["name"] for r in found.objects] == ["a"]
    assert second.payload(found.objects[0]["payload"]) == [b"args", b"\x00" * 10]
    assert found.envs["gpu"]["reqs"] == ["x"]
    assert found.previous["pid"] == os.getpid() and found.previous["ended"] == "stopped"
    assert second.total == 14
    for path in (tmp_path / "manifest" / "objects").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_daemon_that_did_not_stop_cleanly_is_said_killed_or_crashed(tmp_path):
    Manifest(tmp_path).load()  # and never closed()
    assert Manifest(tmp_path).load().previous["ended"] == "was killed or crashed"


def test_too_big_to_keep_is_said_then_and_listed_as_lost_after(tmp_path):
    manifest = Manifest(tmp_path, max_object=100, max_total=150)
    assert asyncio.run(manifest.save(record("small"), [b"s" * 80])) is None
    note = asyncio.run(manifest.save(record("big"), [b"b" * 101]))
    assert "'big' is not kept" in note and "TETHER_MANIFEST_MAX_OBJECT_BYTES" in note
    note = asyncio.run(manifest.save(record("second"), [b"t" * 80]))  # 80 + 80 > 150 in all
    assert "TETHER_MANIFEST_MAX_BYTES" in note
    assert asyncio.run(manifest.save(record("small"), [b"s" * 90])) is None  # replacing its own bytes

    found = Manifest(tmp_path, max_object=100, max_total=150).load()
    assert [r["name"] for r in found.objects] == ["small"]
    assert set(found.lost) == {"big", "second"} and "not kept" in found.lost["big"]


def test_a_redeploy_replaces_the_payload_and_a_delete_removes_both(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.load()
    asyncio.run(manifest.save(record("a"), [b"one"]))
    asyncio.run(manifest.save(record("a"), [b"two"]))
    payloads = list((tmp_path / "manifest" / "payloads").iterdir())
    assert len(payloads) == 1 and payloads[0].read_bytes().endswith(b"two")
    asyncio.run(manifest.drop("a"))
    assert not list((tmp_path / "manifest" / "payloads").iterdir())
    assert Manifest(tmp_path).load().objects == []


def test_what_cannot_be_read_is_lost_and_the_rest_comes_back(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.load()
    for name in ("good", "torn", "orphaned"):
        asyncio.run(manifest.save(record(name), [name.encode()]))
    objects, payloads = tmp_path / "manifest" / "objects", tmp_path / "manifest" / "payloads"
    (objects / "torn.json").write_text('{"name": "torn", ')  # unreadable
    orphaned = next(p for p in payloads.iterdir() if p.name.startswith("orphaned."))
    orphaned.unlink()  # its record names a payload that is gone
    stray = payloads / "never-committed.0000.bin"  # a payload written, then the daemon died
    stray.write_bytes(b"x")

    found = Manifest(tmp_path).load()
    assert [r["name"] for r in found.objects] == ["good"]
    assert "unreadable" in found.lost["torn"] and "missing" in found.lost["orphaned"]
    assert not stray.exists()


def test_forgotten_means_the_next_daemon_starts_empty(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.load()
    asyncio.run(manifest.save(record("a"), [b"x"]))
    asyncio.run(manifest.forget())
    assert asyncio.run(manifest.save(record("b"), [b"y"])) is None  # nothing more is written
    manifest.closed()
    found = Manifest(tmp_path).load()
    assert found.objects == [] and found.lost == {} and found.previous is None
