"""The error boundary of a call with a timeout (``Reply``): its socket running out of time is a
CallTimeoutError; a connection the kernel gave up on (ETIMEDOUT) stays a lost connection."""

from __future__ import annotations

import errno
import socket
import time

import pytest

import tether as rh
from tether.client.replies import Reply


def reply(timeout: float | None = None) -> Reply:
    r = Reply("gpu", "http://127.0.0.1:1", {"service": "train", "method": "fit", "call_id": "abc"})
    return r.within(timeout) if timeout is not None else r


def socket_timeout() -> TimeoutError:
    """What a socket with a timeout raises when no byte came in time (a real one)."""
    a, b = socket.socketpair()
    a.settimeout(0.01)
    try:
        a.recv(1)
    except TimeoutError as exc:
        return exc
    finally:
        a.close()
        b.close()
    raise AssertionError("the read did not time out")


def raise_in(r: Reply, exc: BaseException) -> BaseException:
    with pytest.raises(rh.TetherError) as info, r.transport():
        raise exc
    return info.value


def test_a_socket_timeout_of_a_timed_call_is_a_call_timeout_naming_everything():
    err = raise_in(reply(2.5), socket_timeout())
    assert isinstance(err, rh.CallTimeoutError) and isinstance(err, TimeoutError)
    assert (err.timeout, err.cluster, err.service, err.method, err.call_id) == (2.5, "gpu", "train", "fit", "abc")
    message = str(err)
    assert "train.fit on cluster 'gpu' (call id abc) did not finish within its timeout of 2.5 s" in message
    assert "raise the timeout" in message and "cluster.status()" in message
    assert "tether daemon status --cluster gpu" in message


def test_without_a_timeout_or_from_the_kernel_it_is_a_lost_connection():
    assert type(raise_in(reply(), socket_timeout())) is rh.ConnectionError
    etimedout = OSError(errno.ETIMEDOUT, "Connection timed out")
    assert isinstance(etimedout, TimeoutError)
    assert type(raise_in(reply(5), etimedout)) is rh.ConnectionError
    assert type(raise_in(reply(5), ConnectionResetError("reset"))) is rh.ConnectionError


def test_no_time_left_raises_at_once_and_an_item_wait_says_so():
    r = reply(0.01)
    time.sleep(0.02)
    with pytest.raises(rh.CallTimeoutError, match="did not finish"):
        r.left()
    assert reply(5).left() > 4
    assert "did not yield its next item within its timeout of 1 s" in str(reply().within(1, item=True).expired())
