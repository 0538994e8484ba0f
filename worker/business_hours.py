"""Business hours (WAYPOST_BUSINESS_HOURS in WAYPOST_TIMEZONE, README "Handing over"): whether the
business is open at a moment and, when it is not, when it opens next, worded for the customer
("tomorrow from 9:00"). Pure functions of an aware datetime: no clock, no database.

The hours are `days times` groups separated by `;`: `mon-fri 09:00-12:00,14:00-18:00; sat 10:00-14:00`.
Days are `mon`..`sun`, lists (`mon,wed`) and ranges (`mon-fri`, `fri-mon`); a range may end at `24:00`,
or past midnight (`22:00-02:00`: until 02:00 the next day). Times are the business's wall clock, so an
opening at 9:00 stays at 9:00 across a daylight saving change. Empty: always open.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from waypost.settings import ConfigurationError, Settings

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
DAY_MINUTES = 24 * 60
EXAMPLE = "e.g. 'mon-fri 09:00-18:00; sat 10:00-14:00'"
_GROUP = re.compile(r"(?P<days>[a-z,\s-]+?)\s+(?P<times>\d.*)")
_RANGE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")


@dataclasses.dataclass(frozen=True)
class Opening:
    """One range of a weekday, in minutes after that day's local midnight (`end` up to 1440 for
    24:00, beyond it for a range that runs past midnight)."""

    weekday: int  # 0 is Monday
    start: int
    end: int


Schedule = tuple[Opening, ...]  # empty: always open


def _problem(text: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"WAYPOST_BUSINESS_HOURS: {why} in {text!r} ({EXAMPLE})")


def _days(text: str, group: str) -> list[int]:
    days: list[int] = []
    for item in (part.strip() for part in text.split(",")):
        first, _, last = (end.strip() for end in item.partition("-"))
        if first not in DAYS or (last and last not in DAYS):
            raise _problem(group, f"{item!r} is not a day or a range of days (mon, tue, … sun; mon-fri)")
        start, stop = DAYS.index(first), DAYS.index(last or first)
        days += [(start + i) % 7 for i in range((stop - start) % 7 + 1)]
    return days


def _minutes(hours: str, minutes: str, group: str, *, end: bool) -> int:
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > DAY_MINUTES or (value == DAY_MINUTES and not end):
        raise _problem(group, f"{hours}:{minutes} is not a time of day (00:00 to 24:00)")
    return value


def parse_hours(text: str) -> Schedule:
    """The schedule WAYPOST_BUSINESS_HOURS describes (empty: always open); ConfigurationError, naming
    the group at fault, for anything else."""
    openings: list[Opening] = []
    for group in (part.strip() for part in text.lower().split(";")):
        if not group:
            continue
        found = _GROUP.fullmatch(group)
        ranges = [m for m in _RANGE.finditer(found["times"])] if found else []
        leftover = _RANGE.sub("", found["times"]).replace(",", " ").strip() if found else group
        if found is None or not ranges or leftover:
            raise _problem(group, "expected days then times")
        for match in ranges:
            start = _minutes(match[1], match[2], group, end=False)
            end = _minutes(match[3], match[4], group, end=True)
            if end == start:
                raise _problem(group, f"{match[0]!r} is empty")
            end += DAY_MINUTES if end < start else 0  # past midnight: into the next day
            openings += [Opening(day, start, end) for day in _days(found["days"], group)]
    return tuple(openings)


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone WAYPOST_TIMEZONE names; ConfigurationError for any other text."""
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"WAYPOST_TIMEZONE: {name!r} is not an IANA time zone name (e.g. Europe/Berlin, America/New_York, UTC)"
        ) from None


@functools.lru_cache(maxsize=4)
def _configured(hours: str, zone: str) -> tuple[Schedule, ZoneInfo]:
    return parse_hours(hours), time_zone(zone)


def configured(settings: Settings) -> tuple[Schedule, ZoneInfo]:
    """The settings' schedule and zone; the worker calls it at start, so a mistake stops it there."""
    return _configured(settings.business_hours, settings.timezone)


def _at(day: dt.date, minutes: int, zone: ZoneInfo) -> dt.datetime:
    """Wall-clock `minutes` after `day`'s midnight, as a UTC instant (a time a spring-forward skips
    is read with the offset before the change: 02:30 becomes 03:30)."""
    later, minute = divmod(minutes, DAY_MINUTES)
    day += dt.timedelta(days=later)
    local = dt.datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=zone)
    return local.astimezone(dt.UTC)


def next_opening(schedule: Schedule, zone: ZoneInfo, now: dt.datetime) -> dt.datetime | None:
    """None when the business is open at `now` (aware; always, with an empty schedule), else when
    it opens next, in `zone`. Instants are compared in UTC: aware datetimes sharing a tzinfo would
    compare their wall clocks, wrong across a daylight saving change."""
    if not schedule:
        return None
    instant = now.astimezone(dt.UTC)
    today = now.astimezone(zone).date()
    spans = []
    for offset in range(-1, 8):  # yesterday's range may run past midnight; a week ahead has every day
        day = today + dt.timedelta(days=offset)
        spans += [(_at(day, o.start, zone), _at(day, o.end, zone)) for o in schedule if o.weekday == day.weekday()]
    if any(start <= instant < end for start, end in spans):
        return None
    return min(start for start, _ in spans if start > instant).astimezone(zone)


def describe_opening(opening: dt.datetime, now: dt.datetime) -> str:
    """`today from 14:00`, `tomorrow from 9:00` or `on Monday from 9:00`, in the opening's zone."""
    days = (opening.date() - now.astimezone(opening.tzinfo).date()).days
    when = "today" if days == 0 else "tomorrow" if days == 1 else f"on {DAY_NAMES[opening.weekday()]}"
    return f"{when} from {opening.hour}:{opening.minute:02d}"
