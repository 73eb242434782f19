"""The orchestrator's relay of its children's output: every line prefixed by its service, and a
stdout that stops taking lines never holds up the reading of a child's pipe."""

from __future__ import annotations

import asyncio
import io
import threading

from orchestrator.output_relay import OutputRelay


def _stream(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_each_line_is_prefixed_by_its_service() -> None:
    out = io.BytesIO()
    relay = OutputRelay(out)
    await relay.relay("training", _stream(b'{"event":"service_started"}\nsecond\nno newline'))
    await relay.relay("coach", _stream(b"tick\n"))
    await relay.close()
    assert out.getvalue().splitlines() == [
        b'training | {"event":"service_started"}',
        b"training | second",
        b"training | no newline",
        b"coach | tick",
    ]


class _StuckOutput(io.BytesIO):
    """A stdout that blocks on write until released, as a stalled terminal would."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.release.wait(timeout=10)
        return super().write(data)


async def test_a_stuck_stdout_drops_lines_instead_of_blocking_the_child() -> None:
    out = _StuckOutput()
    relay = OutputRelay(out, max_lines=3)
    lines = b"".join(b"line %d\n" % i for i in range(50))
    # The whole pipe is read although nothing can be written.
    await asyncio.wait_for(relay.relay("meta", _stream(lines)), 2.0)
    out.release.set()
    for _ in range(100):  # bounded: until the queued lines are out
        if len(out.getvalue().splitlines()) >= 3:
            break
        await asyncio.sleep(0.01)
    await relay.relay("meta", _stream(b"after\n"))
    await relay.close()
    *kept, notice, after = out.getvalue().splitlines()
    # The queue's three lines (a fourth if the writer had taken one before it stuck), in order;
    # then how many were dropped, once there was room again; then what came after.
    assert len(kept) in (3, 4)
    assert kept == [b"meta | line %d" % i for i in range(len(kept))]
    assert notice == b"orchestrator | %d lines of output dropped (stdout too slow)" % (
        50 - len(kept)
    )
    assert after == b"meta | after"
