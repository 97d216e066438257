"""Fixtures of the pipeline-step tests: cluster and service names torn down after each test, and a
step logger whose lines the test reads (as an orchestrator's task log would show them)."""

from __future__ import annotations

import logging
import uuid

import pytest

import tether as rh


@pytest.fixture
def names():
    made = []

    def name(prefix: str) -> str:
        made.append(f"{prefix}-{uuid.uuid4().hex[:6]}")
        return made[-1]

    yield name
    for value in made:
        try:
            rh.cluster(value).teardown()
        except rh.NotFoundError:
            pass


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def logger():
    log = logging.getLogger(f"steps-test-{uuid.uuid4().hex[:6]}")
    log.setLevel(logging.INFO)
    log.addHandler(handler := Lines())
    log.lines = handler.lines
    return log
