"""The daemon's per-call queue (``daemon/flow.py``): output beyond its bound is dropped with an
exact count, in line with what the caller got; a fast reader loses nothing."""

from __future__ import annotations

import asyncio

import pytest

from tether.daemon.flow import CallQueue, ForwardQueue
from tether.protocol import wire


def log(text: str, stream: bytes = b"out") -> wire.Message:
    return wire.Message(wire.LOG, 1, [memoryview(stream), memoryview(text.encode())])


def drain(queue: CallQueue) -> list[wire.Message]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


def texts(msgs, stream: bytes = b"out") -> str:
    return "".join(bytes(m.frames[1]).decode() for m in msgs if m.kind == wire.LOG and m.frames[0] == stream)


def printed(queue: CallQueue, lines: int, start: int = 0) -> None:
    """``print(f"line {i}")`` as a worker sends it: the text, then the newline."""
    for i in range(start, start + lines):
        queue.put_nowait(log(f"line {i}"))
        queue.put_nowait(log("\n"))


def test_a_reader_that_keeps_up_loses_nothing():
    async def main():
        queue = CallQueue(output_buffer=16 * 1024)
        for i in range(2_000):
            printed(queue, 1, i)
            drain_now = drain(queue)
            assert texts(drain_now) == f"line {i}\n"

    asyncio.run(main())


def test_output_past_the_bound_is_dropped_and_counted_where_it_was_lost():
    async def main():
        queue = CallQueue(output_buffer=16 * 1024)
        printed(queue, 1_000)
        got = drain(queue)
        printed(queue, 10, 1_000)  # the caller caught up: output flows again
        got += drain(queue)
        out, err = texts(got), texts(got, b"err")
        received = [int(line.split()[1]) for line in out.splitlines()]
        assert received == sorted(received) and received[-10:] == list(range(1_000, 1_010))
        assert err.startswith("[tether] ") and "of output were dropped" in err
        dropped = int(err.split()[1].replace(",", ""))
        assert len(received) + dropped == 1_010
        assert queue.output == 0
        # the line about the gap comes where the gap is: between the lines before and after it
        assert [bytes(m.frames[0]) for m in got] == [b"out", b"err", b"out"]

    asyncio.run(main())


def test_a_gap_in_the_middle_of_a_line_ends_that_line():
    async def main():
        queue = CallQueue(output_buffer=4 * 1024)
        queue.put_nowait(log("x" * 100))  # fits
        for _ in range(100):
            queue.put_nowait(log("y" * 100))  # the same line, on and on: dropped past the bound
        queue.put_nowait(log("\n"))
        got = drain(queue)
        out = texts(got)
        assert out.endswith("\n") and out.count("\n") == 1  # the caller's line is ended, once
        lost = (100 + 100 * 100 + 1) - (len(out) - 1)  # no line lost: its start was delivered
        assert texts(got, b"err").startswith(f"[tether] {lost:,} bytes of output were dropped")

    asyncio.run(main())


def test_queued_lines_of_one_stream_go_out_as_one_message():
    async def main():
        queue = CallQueue()
        printed(queue, 100)
        queue.put_nowait(log("oops\n", b"err"))
        got = drain(queue)
        assert len(got) == 2 and texts(got) == "".join(f"line {i}\n" for i in range(100))

    asyncio.run(main())


def test_a_forwarded_answer_is_bounded_by_bytes_not_dropped():
    async def main():
        queue = ForwardQueue(limit=64 * 1024)
        for _ in range(100):
            queue.put_nowait(wire.Message(wire.ITEM, 1, [memoryview(bytes(4096))]))
        assert queue.held > queue.limit
        waiter = asyncio.ensure_future(queue.room())
        await asyncio.sleep(0)
        assert not waiter.done()
        got = drain(queue)
        await asyncio.wait_for(waiter, 1)
        assert len(got) == 100 and queue.held == 0

    asyncio.run(main())


def test_credit_is_a_message_of_its_own_kind():
    msg = wire.decode(wire.encode_bytes(wire.CREDIT, wire.credit_frames(12345), 9))
    assert (msg.kind, msg.call_id, wire.credit_amount(msg)) == (wire.CREDIT, 9, 12345)
    assert wire.credit_amount(wire.Message(wire.CREDIT, 9, [memoryview(b"bad")])) == 0


def test_a_message_costs_its_bytes_and_what_holding_it_costs():
    frames = wire.dumps(bytes(1000))
    assert wire.flow_cost(frames) == (wire.MESSAGE_OVERHEAD + wire.HEADER_SIZE + 8 * len(frames)
                                      + sum(memoryview(f).nbytes for f in frames))


def test_a_bad_bound_in_the_environment_is_named(monkeypatch):
    monkeypatch.setenv("TETHER_OUTPUT_BUFFER", "4MB")
    with pytest.raises(ValueError, match="TETHER_OUTPUT_BUFFER must be a number of bytes"):
        wire.size_knob("TETHER_OUTPUT_BUFFER", 1)
    monkeypatch.setenv("TETHER_OUTPUT_BUFFER", "123")
    assert wire.size_knob("TETHER_OUTPUT_BUFFER", 1) == 123
