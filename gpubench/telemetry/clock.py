"""The clocks a telemetry session runs on: the real monotonic clock, or a virtual one for replays.

With a VirtualClock, time moves only when someone sleeps on it and periodic callbacks (the
sampling) fire at their due times on the way, so recorded traces replay in no real time.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Protocol


class Clock(Protocol):
    virtual: bool

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class RealClock:
    virtual = False

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class VirtualClock:
    """Time that advances only through sleep(); periodic callbacks fire at their due times on the way."""

    virtual = True

    def __init__(self, start: float = 0.0):
        self._t = start
        self._tickers: dict[int, list[Any]] = {}  # token -> [next due, period, callback]
        self._next_token = 0

    def now(self) -> float:
        return self._t

    def every(self, period: float, callback: Callable[[], None]) -> int:
        """Call now, then every `period` seconds of virtual time, until cancel(token)."""
        token = self._next_token
        self._next_token += 1
        self._tickers[token] = [self._t + period, period, callback]
        callback()
        return token

    def cancel(self, token: int) -> None:
        self._tickers.pop(token, None)

    def sleep(self, seconds: float) -> None:
        target = self._t + max(0.0, seconds)
        while self._tickers:
            due = min(t[0] for t in self._tickers.values())
            if due > target + 1e-12:
                break
            self._t = due
            for ticker in list(self._tickers.values()):
                if ticker[0] <= due + 1e-12:
                    ticker[0] += ticker[1]
                    ticker[2]()
        self._t = target
