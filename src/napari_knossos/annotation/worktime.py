"""Annotation working time with idle detection (KNOSSOS ``<time ms>``), pure Python.

KNOSSOS counts working time in 60 s slices: a slice is added whole when the user pressed a
mouse button, a key or turned the wheel during it (mouse moves do not count), a slice without
such an action adds nothing; a node's ``time`` is the working time at its creation
(knossos-project/knossos:annotation/annotation.cpp ``ActivityEventFilter``, ``handleTimeSlice``;
annotation.h ``TIME_SLICE_MS = 60 * 1000``).

:class:`WorkTimer` does the same without a periodic timer: the time between two consecutive
activities counts, but at most ``idle_timeout_s`` of it; the rest of a longer gap is idle and
excluded. With the default 60 s this credits, like KNOSSOS, up to one minute after the last
action, and the value never decreases. The GUI calls :meth:`WorkTimer.activity` on mouse
press, key press and wheel events.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .skeleton import Skeleton

__all__ = ["DEFAULT_IDLE_TIMEOUT_S", "INT32_MAX", "WorkTimer"]

DEFAULT_IDLE_TIMEOUT_S = 60.0  # KNOSSOS time slice length
INT32_MAX = 2**31 - 1  # <time ms> is a signed 32-bit integer in KNOSSOS (about 24.8 days)


class WorkTimer:
    """Working time in ms: ``start_ms`` plus the activity time counted since.

    ``clock`` returns seconds (monotonic); injectable for tests. Counting starts at the first
    :meth:`activity`. While paused, activities are ignored.
    """

    def __init__(
        self,
        start_ms: int = 0,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if idle_timeout_s <= 0:
            raise ValueError(f"idle_timeout_s must be positive, not {idle_timeout_s}")
        if start_ms < 0:
            raise ValueError(f"start_ms must not be negative, not {start_ms}")
        self.idle_timeout_s = float(idle_timeout_s)
        self._clock = clock
        self._counted_ms = float(start_ms)  # time up to the last activity
        self._last: float | None = None  # clock() at the last activity; None: not counting
        self._paused = False

    @classmethod
    def from_skeleton(cls, skel: Skeleton, **kwargs) -> WorkTimer:
        """A timer continuing the skeleton's working time (``parameters.time_ms``). A
        webKnossos NML's ``time`` is its creation timestamp, not working time: start at 0."""
        ms = skel.parameters.time_ms
        start = 0 if ms is None or skel.dialect == "webknossos" else max(int(ms), 0)
        return cls(start_ms=start, **kwargs)

    def _pending_ms(self, now: float) -> float:
        """Counted time since the last activity: at most the idle timeout."""
        if self._last is None:
            return 0.0
        return min(max(now - self._last, 0.0), self.idle_timeout_s) * 1000.0

    def activity(self) -> None:
        """A user action (mouse press, key press, wheel): the time since the previous one
        counts, up to the idle timeout."""
        if self._paused:
            return
        now = self._clock()
        self._counted_ms += self._pending_ms(now)
        self._last = now

    @property
    def elapsed_ms(self) -> int:
        """Working time now, in whole ms (never decreases while nothing is reset)."""
        return int(self._counted_ms + self._pending_ms(self._clock()))

    @property
    def idle(self) -> bool:
        """True when no activity happened within the idle timeout (or counting has not started)."""
        return self._last is None or self._clock() - self._last >= self.idle_timeout_s

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Stop counting (e.g. a modal dialog, the window minimised): the time since the last
        activity is kept up to the idle timeout; activities are ignored until :meth:`resume`."""
        if self._paused:
            return
        self._counted_ms += self._pending_ms(self._clock())
        self._last = None
        self._paused = True

    def resume(self) -> None:
        """Accept activities again; counting restarts at the next one."""
        self._paused = False

    def reset(self, ms: int = 0) -> None:
        """Set the working time to ``ms`` (a new or freshly loaded annotation); counting
        restarts at the next activity."""
        if ms < 0:
            raise ValueError(f"working time must not be negative, not {ms}")
        self._counted_ms = float(ms)
        self._last = None

    def apply_to(self, skel: Skeleton, *, force: bool = False) -> int | None:
        """Write the working time to ``skel.parameters.time_ms`` (clamped to int32 like KNOSSOS)
        and return it. A webKnossos-dialect skeleton keeps its creation timestamp (returns
        None) unless ``force``. Does not count as an edit (``skel.version`` unchanged)."""
        if skel.dialect == "webknossos" and not force:
            return None
        ms = min(self.elapsed_ms, INT32_MAX)
        skel.parameters.time_ms = ms
        return ms

    def __repr__(self) -> str:
        state = "paused" if self._paused else ("idle" if self.idle else "active")
        return f"WorkTimer({self.elapsed_ms} ms, {state}, idle after {self.idle_timeout_s:g} s)"
