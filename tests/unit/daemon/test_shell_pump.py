"""run_bash's output pump (daemon/shell.py), fed a real asyncio.StreamReader."""

from __future__ import annotations

import asyncio

from tether.daemon import shell
from tether.protocol import wire


def _pump(chunks: list[bytes], capture: int | None = None) -> tuple[str, list[bytes]]:
    async def go():
        reader = asyncio.StreamReader()
        for chunk in chunks:
            reader.feed_data(chunk)
        reader.feed_eof()
        out: asyncio.Queue = asyncio.Queue()
        text = await shell._pump(reader, b"out", out, capture)
        sent = []
        while not out.empty():
            msg = out.get_nowait()
            assert msg.kind == wire.LOG and bytes(msg.frames[0]) == b"out"
            sent.append(bytes(msg.frames[1]))
        return text, sent
    return asyncio.run(go())


def test_a_line_longer_than_asyncios_limit_is_sent_in_pieces():
    """Before: a line over 64 KiB failed the whole command (ValueError: Separator is not found)."""
    line = "é" * 300_000 + "\n"  # 600 KB, two bytes a character
    text, sent = _pump([line.encode()])
    assert text == line
    assert b"".join(sent) == line.encode()
    assert all(piece.decode() for piece in sent)  # never cut inside a character
    assert max(len(p) for p in sent) <= 2 * shell._PIECE


def test_pieces_end_at_a_newline_when_there_is_one():
    text, sent = _pump([b"one\ntw", b"o\nthree"])
    assert text == "one\ntwo\nthree"
    assert sent[-1] == b"three" and all(p.endswith(b"\n") for p in sent[:-1])


def test_the_result_keeps_the_last_bytes_and_says_how_much_was_left_out():
    text, sent = _pump([b"%06d\n" % i for i in range(1000)], capture=70)
    head, _, rest = text.partition("\n")
    assert head.startswith("[tether] the first ") and "TETHER_RUN_CAPTURE" in head
    assert rest.endswith("000999\n") and len(rest) <= 70
    assert b"".join(sent).count(b"\n") == 1000  # the caller got every line
