"""Remote lines marked ``(service pid=N)`` in the caller's terminal (tether.client.marks)."""

from __future__ import annotations

import io

import pytest

from tether.client import marks


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def fresh_lines(monkeypatch):
    monkeypatch.setattr(marks, "_open", {"out": False, "err": False})
    monkeypatch.delenv("TETHER_LOG_PREFIX", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)


def test_each_line_is_marked_once_across_writes_that_split_lines():
    out = io.StringIO()
    label = marks.label("embed", "pid=42")
    for text in ("epoch 1\nepo", "ch 2\n", "no end", "ed\n"):
        out.write(marks.mark("out", text, label, out))
    assert out.getvalue() == "(embed pid=42) epoch 1\n(embed pid=42) epoch 2\n(embed pid=42) no ended\n"


def test_streams_are_followed_apart_and_a_redrawn_line_keeps_its_mark():
    out = io.StringIO()
    label = "(svc pid=1 node=2)"
    assert marks.mark("out", "half", label, out) == "(svc pid=1 node=2) half"
    assert marks.mark("err", "err line\n", label, out) == "(svc pid=1 node=2) err line\n"
    assert marks.mark("out", " done\r\n", label, out) == " done\r\n"
    assert marks.mark("out", "10%\r20%\n", label, out) == "(svc pid=1 node=2) 10%\r(svc pid=1 node=2) 20%\n"


def test_dim_on_a_terminal_only_and_off_when_asked(monkeypatch):
    tty = Tty()
    assert marks.mark("out", "x\n", "(s pid=1)", tty) == "\x1b[2m(s pid=1)\x1b[0m x\n"
    monkeypatch.setenv("NO_COLOR", "1")
    assert marks.mark("out", "x\n", "(s pid=1)", tty) == "(s pid=1) x\n"
    assert marks.label("s", None) is None  # the daemon did not say (an older one): unmarked
    monkeypatch.setenv("TETHER_LOG_PREFIX", "0")
    assert marks.label("s", "pid=1") is None
