"""Deadlines for requests whose server may never finish: one watchdog thread for the whole process.

A socket timeout only bounds the wait for the *next* byte, so a server that trickles a token every
few seconds keeps a request open for ever. Each request registers its total deadline here; when it
passes, the watchdog calls the request's ``cut`` callback (which shuts the socket down, waking the
thread that reads it). A heap ordered by deadline keeps registering and cancelling O(log n), so a
load of thousands of requests a second costs the watchdog nothing it would notice.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable


class Watch:
    """One registered deadline; :meth:`cancel` it when the request ends in time."""

    __slots__ = ("_owner", "cancelled", "cut", "deadline_s")

    def __init__(self, owner: Watchdog, deadline_s: float, cut: Callable[[], object]) -> None:
        self._owner = owner
        self.deadline_s = deadline_s
        self.cut = cut
        self.cancelled = False

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self._owner._forget()


class Watchdog:
    """Calls each :class:`Watch`'s ``cut`` once its deadline (a ``time.perf_counter()`` reading) passes."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        #: cancelled entries still in the heap: dropped in one pass when they outnumber the live ones
        self._cancelled = 0

    def _forget(self) -> None:
        with self._cond:
            self._cancelled += 1
            if self._cancelled > 1024 and self._cancelled * 2 > len(self._heap):
                self._heap = [item for item in self._heap if not item[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def watch(self, deadline_s: float, cut: Callable[[], object]) -> Watch:
        entry = Watch(self, deadline_s, cut)
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="gpuprov-bench-deadlines", daemon=True)
                self._thread.start()
            earliest = self._heap[0][0] if self._heap else None
            heapq.heappush(self._heap, (deadline_s, next(self._order), entry))
            if earliest is None or deadline_s < earliest:
                self._cond.notify()
        return entry

    def _run(self) -> None:
        while True:
            due: list[Watch] = []
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                now = time.perf_counter()
                while self._heap and (self._heap[0][2].cancelled or self._heap[0][0] <= now):
                    _, _, entry = heapq.heappop(self._heap)
                    if entry.cancelled:
                        self._cancelled = max(0, self._cancelled - 1)
                    else:
                        entry.cancelled = True  # cut once; a later cancel() is a no-op
                        due.append(entry)
                if not due:
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
            for entry in due:
                entry.cut()


#: the process's watchdog (its thread starts with the first deadline)
WATCHDOG = Watchdog()
