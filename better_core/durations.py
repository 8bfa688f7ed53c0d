"""Duration shorthands such as ``30min``, ``24h``, ``7d``, ``4w``, ``3m`` and ``1y``."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.utils import timezone

_PATTERN = re.compile(r"^\s*(\d+)\s*(s|min|h|d|w|m|mo|y)\s*$", re.IGNORECASE)
_FIXED = {"s": 1, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

UNITS_HELP = "s (seconds), min (minutes), h, d, w, m or mo (calendar months), y (calendar years)"


@dataclass(frozen=True)
class Duration:
    """A parsed shorthand: a fixed length, or a number of calendar months."""

    amount: int
    unit: str

    @property
    def months(self) -> int:
        if self.unit in ("m", "mo"):
            return self.amount
        if self.unit == "y":
            return self.amount * 12
        return 0

    @property
    def seconds(self) -> int:
        return self.amount * _FIXED.get(self.unit, 0)

    def before(self, moment: datetime | None = None) -> datetime:
        """The instant this duration before ``moment`` (default: now)."""
        moment = moment or timezone.now()
        if self.months:
            return _subtract_months(moment, self.months)
        return moment - timedelta(seconds=self.seconds)

    def as_timedelta(self) -> timedelta:
        """Length as a timedelta; calendar units count 30-day months and 365-day years."""
        if self.months:
            return timedelta(days=30 * self.months if self.unit != "y" else 365 * self.amount)
        return timedelta(seconds=self.seconds)

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


def parse_duration(value: str) -> Duration:
    """Parse ``value`` or raise ValueError saying what forms are accepted.

    ``m`` means calendar months, as in retention policies (``3m``); minutes are written ``min``.
    """
    match = _PATTERN.match(str(value))
    if not match:
        raise ValueError(
            f"{value!r} is not a duration. Use a whole number followed by a unit: {UNITS_HELP}; "
            "for example 30min, 24h, 7d, 4w, 3m or 1y."
        )
    amount, unit = int(match.group(1)), match.group(2).lower()
    if amount <= 0:
        raise ValueError(f"{value!r} is not a positive duration.")
    return Duration(amount, unit)


def parse_since(value: str | date | datetime, now: datetime | None = None) -> datetime:
    """A cutoff from a duration shorthand (counted back from ``now``) or an ISO date/time."""
    if isinstance(value, datetime):
        return value if timezone.is_aware(value) else timezone.make_aware(value)
    if isinstance(value, date):
        return timezone.make_aware(datetime(value.year, value.month, value.day))
    if _PATTERN.match(str(value)):
        return parse_duration(value).before(now)
    try:
        parsed = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(
            f"{value!r} is neither a duration ({UNITS_HELP}) nor an ISO 8601 date such as "
            "2025-01-01."
        ) from None
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)


def _subtract_months(moment: datetime, months: int) -> datetime:
    total = moment.year * 12 + (moment.month - 1) - months
    year, month = divmod(total, 12)
    month += 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def iso_millis(moment: datetime) -> str:
    """``moment`` in UTC to the millisecond with a ``Z`` (``2025-01-31T12:00:00.000Z``): how
    JavaScript's ``Date.toISOString()`` writes it, the form the console protocol uses."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
