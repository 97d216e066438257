"""Whose ``timeout=`` it is, and which timeout a call gets (``tether.core.invoke.call_timeout``)."""

from __future__ import annotations

import math

import pytest

import tether as rh
from tether.core.invoke import call_timeout, default_timeout, takes_timeout

OWN = {"params": ["url", "timeout"], "varkw": False}
KWARGS = {"params": [], "varkw": True}
NONE = {"params": ["x"], "varkw": False}
UNKNOWN: dict = {}  # an older worker, or a signature it could not read


@pytest.fixture(autouse=True)
def _no_process_default(monkeypatch):
    monkeypatch.delenv("TETHER_CALL_TIMEOUT", raising=False)


@pytest.mark.parametrize("flags, theirs", [(OWN, True), (KWARGS, True), (UNKNOWN, True), (NONE, False)],
                         ids=["own-parameter", "kwargs", "unknown", "none"])
def test_timeout_is_the_functions_when_it_takes_one(flags, theirs):
    assert takes_timeout(flags) is theirs
    kwargs = {"timeout": 3}
    got = call_timeout(kwargs, flags, None)
    assert (kwargs == {"timeout": 3} and got is None) if theirs else (kwargs == {} and got == 3.0)


def test_call_timeout_is_always_tethers_and_wins():
    kwargs = {"timeout": 3, "call_timeout": 7}
    assert call_timeout(kwargs, OWN, 1.0) == 7.0 and kwargs == {"timeout": 3}
    kwargs = {"call_timeout": None}
    assert call_timeout(kwargs, NONE, 1.0) is None and kwargs == {}  # None: no timeout, this call


def test_defaults_stub_then_process(monkeypatch):
    assert call_timeout({}, NONE, None) is None  # as before: no timeout anywhere
    assert call_timeout({}, NONE, 2.5) == 2.5
    monkeypatch.setenv("TETHER_CALL_TIMEOUT", "4")
    assert default_timeout() == 4.0
    assert call_timeout({}, NONE, None) == 4.0
    assert call_timeout({}, NONE, 2.5) == 2.5  # the stub's default wins over the process's
    assert call_timeout({}, NONE, math.inf) is None  # a stub made with timeout=math.inf: never
    monkeypatch.setenv("TETHER_CALL_TIMEOUT", "")
    assert default_timeout() is None


@pytest.mark.parametrize("value", [0, -1, "1", True, math.nan])
def test_a_bad_timeout_says_what_is_expected(value):
    with pytest.raises(rh.ConfigError, match="number of seconds above 0, or None"):
        call_timeout({"call_timeout": value}, NONE, None)


def test_both_forms_for_a_function_without_its_own_timeout_is_ambiguous():
    with pytest.raises(rh.ConfigError, match="pass one"):
        call_timeout({"timeout": 1, "call_timeout": 2}, NONE, None)


def test_a_bad_process_default_names_the_variable(monkeypatch):
    monkeypatch.setenv("TETHER_CALL_TIMEOUT", "-3")
    with pytest.raises(rh.ConfigError, match="TETHER_CALL_TIMEOUT='-3'"):
        call_timeout({}, NONE, None)
