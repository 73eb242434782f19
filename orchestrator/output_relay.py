"""The children's output on the orchestrator's own stdout, each line prefixed by its service
(`training | ...`), so that under honcho every service's lines say whose they are rather than all
reading `orchestrator |`.

Never blocks a child, nor the event loop: each child's pipe is read as fast as it writes, lines
go into one bounded queue, and a thread of its own writes them out. When stdout is slower than
the fleet (a paused terminal, a stalled log collector), lines beyond the queue are dropped and
counted, and a line saying how many goes out once there is room again.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import threading
from typing import BinaryIO

MAX_QUEUED_LINES = 10_000
# Longest line read from a child; a longer one is cut here (the reader's buffer limit).
MAX_LINE_BYTES = 64 * 1024
DRAIN_TIMEOUT_S = 1.0


class OutputRelay:
    def __init__(self, out: BinaryIO | None = None, max_lines: int = MAX_QUEUED_LINES) -> None:
        self._out = out if out is not None else sys.stdout.buffer
        self._queue: queue.Queue[bytes | None] = queue.Queue(max_lines)
        self._thread = threading.Thread(target=self._write, name="output-relay", daemon=True)
        self._thread.start()
        self._dropped = 0

    async def relay(self, service: str, stream: asyncio.StreamReader) -> None:
        """Forward `stream` line by line until its end (the child exited)."""
        prefix = f"{service} | ".encode()
        while True:  # bounded by the stream's end
            try:
                line = await stream.readline()
            except ValueError:  # longer than the reader's limit: what was buffered is dropped
                line = b"(line longer than %d bytes cut)\n" % MAX_LINE_BYTES
            if not line:
                return
            self._put(prefix + line if line.endswith(b"\n") else prefix + line + b"\n")

    def _put(self, data: bytes) -> None:
        try:
            if self._dropped:
                notice = b"orchestrator | %d lines of output dropped (stdout too slow)\n"
                self._queue.put_nowait(notice % self._dropped)
                self._dropped = 0
            self._queue.put_nowait(data)
        except queue.Full:
            self._dropped += 1

    def _write(self) -> None:
        while (data := self._queue.get()) is not None:
            try:
                self._out.write(data)
                self._out.flush()
            except (OSError, ValueError):
                pass  # stdout is gone: the lines are lost, the fleet goes on

    async def close(self) -> None:
        """Write out what is queued, then stop the writer; bounded (2 × DRAIN_TIMEOUT_S) even
        when stdout is stuck, since the daemon thread then dies with the process."""

        def finish() -> None:
            try:
                self._queue.put(None, timeout=DRAIN_TIMEOUT_S)
            except queue.Full:
                return
            self._thread.join(DRAIN_TIMEOUT_S)

        await asyncio.to_thread(finish)
