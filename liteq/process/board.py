"""What each worker thread of a pool child runs now, in shared memory the supervisor reads.

Per thread: the id of the message it is running (empty when idle) and, under
``--hard-time-limit``, the moment by which that run must be over. When a child dies,
the supervisor releases its messages knowing which ones were running (suspects, see
``liteq.brokers.sqlite.schema``) and which were only prefetched (innocent: they never started).
Memory writes only: publishing costs a worker thread no system call.
"""

from __future__ import annotations

from typing import Any

ID_WIDTH = 36


class RunningBoard:
    """Built by the supervisor before it starts a child, which inherits (fork) or
    receives (spawn) the shared memory."""

    def __init__(self, context: Any, threads: int) -> None:
        self.deadlines = context.RawArray("d", threads)
        self.ids = context.RawArray("c", threads * ID_WIDTH)
        self.slots = threads
        self._views: list[memoryview] | None = None
        #: Set in the child once a deadline was published (only under --hard-time-limit).
        self._deadlines_used = False

    def __getstate__(self) -> dict[str, Any]:
        # A memoryview does not cross to a spawned child: it makes its own on first use.
        return {**self.__dict__, "_views": None}

    def _bytes(self) -> memoryview:
        """The ids as writable bytes: one memcpy per write (a ctypes slice assignment
        converts byte by byte, and this runs twice per message)."""
        return memoryview(self.ids).cast("B")

    def _slot_views(self) -> list[memoryview]:
        """One view per thread's id, made once (this runs twice per message)."""
        if self._views is None:
            whole = self._bytes()
            self._views = [whole[i * ID_WIDTH:(i + 1) * ID_WIDTH] for i in range(self.slots)]
        return self._views

    def start(self, slot: int, message_id: str) -> None:
        """Thread ``slot`` starts running ``message_id``."""
        data = message_id.encode()
        if len(data) != ID_WIDTH:  # a UUID (Dramatiq's ids) is exactly ID_WIDTH bytes
            data = data[:ID_WIDTH].ljust(ID_WIDTH)
        views = self._views
        if views is None:
            views = self._slot_views()
        views[slot % self.slots][:] = data

    def finish(self, slot: int) -> None:
        """Thread ``slot`` is idle again (an empty id starts with a NUL byte)."""
        slot %= self.slots
        views = self._views
        if views is None:
            views = self._slot_views()
        views[slot][0] = 0
        if self._deadlines_used and self.deadlines[slot]:
            self.deadlines[slot] = 0.0

    def set_deadline(self, slot: int, when: float) -> None:
        """The run of thread ``slot`` must be over by ``when`` (``time.monotonic``)."""
        self._deadlines_used = True
        self.deadlines[slot % self.slots] = when

    def message_id(self, slot: int) -> str:
        """The id of the message thread ``slot`` runs, or ``""`` when it is idle."""
        raw = bytes(self._bytes()[slot * ID_WIDTH:(slot + 1) * ID_WIDTH])
        return "" if raw[0] == 0 else raw.decode(errors="replace").strip("\0 ")

    def running(self) -> list[str]:
        """The ids of the messages running now (read by the supervisor after a death)."""
        return [mid for slot in range(self.slots) if (mid := self.message_id(slot))]

    def overrun(self, now: float) -> str | None:
        """The id of a message that runs past its deadline at ``now``, if any."""
        for slot, deadline in enumerate(self.deadlines):
            if deadline and now > deadline:
                return self.message_id(slot)
        return None
