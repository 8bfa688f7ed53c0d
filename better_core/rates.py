"""Rates such as ``"20/min"`` and fixed-window counters of them kept in a Django cache."""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass

_PERIODS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400}
_RATE = re.compile(r"^(\d+)/(\d*)([a-z]+)$")

RATE_HELP = "'<count>/<period>' with a period of s, min (or m), h or d, e.g. '20/min' or '5/10s'"


def parse_rate(value: object) -> tuple[int, int]:
    """``"20/min"`` -> (20, 60); also ``"100/m"``, ``"5/10s"``, ``"5000/h"``; else ValueError.

    In a rate ``m`` is a minute (a month is never a rate's period), unlike in durations.
    """
    match = _RATE.match(str(value).replace(" ", "").lower())
    unit = _PERIODS.get(match.group(3)) if match else None
    if match is None or unit is None or int(match.group(1)) < 1:
        raise ValueError(f"{value!r} is not a rate: use {RATE_HELP}.")
    return int(match.group(1)), int(match.group(2) or 1) * unit


@dataclass(frozen=True)
class Window:
    """The count of the current window after a hit, and the seconds until the next window."""

    used: int
    resets_in: float
    # The cache key of this window's counter, so that what was taken can be given back to it.
    counter: str = ""


def hit(cache: object, key: str, period: int, amount: int = 1) -> Window:
    """Add ``amount`` to the counter of the current ``period``-second window under ``key``.

    The cache is shared by every process when it is Redis, Memcached or the database cache, so
    the window counts across workers and machines.
    """
    now = time.time()
    window = int(now // period)
    counter = f"{key}:{period}:{window}"
    cache.add(counter, 0, timeout=period + 1)  # type: ignore[attr-defined]
    try:
        used = cache.incr(counter, amount)  # type: ignore[attr-defined]
    except ValueError:
        # The counter expired between add() and incr(): this hit opens the window.
        cache.add(counter, amount, timeout=period + 1)  # type: ignore[attr-defined]
        used = amount
    return Window(used, max((window + 1) * period - now, 0.01), counter)


def give_back(cache: object, window: Window, amount: int) -> None:
    """Take ``amount`` off the counter of ``window``, a hit that was not used after all.

    The same window's counter, never the current one: once a new window has begun, the old
    counter no longer limits anything, and lowering the new one would let its hits exceed the
    rate.
    """
    if amount <= 0 or not window.counter:
        return
    # ValueError: the window has ended and its counter expired, so there is nothing to give back.
    with contextlib.suppress(ValueError):
        cache.decr(window.counter, amount)  # type: ignore[attr-defined]
