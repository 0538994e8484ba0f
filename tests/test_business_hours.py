"""Business hours (worker/business_hours.py): the schedule's grammar, whether the business is open, and
when it opens next, worded for the customer. Pure functions: unit tests, times given explicitly."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from waypost.settings import ConfigurationError
from worker.business_hours import Opening, describe_opening, next_opening, parse_hours, time_zone

BERLIN = ZoneInfo("Europe/Berlin")
WEEK = "mon-fri 09:00-18:00; sat 10:00-14:00"


def opens(hours: str, now: dt.datetime, zone: ZoneInfo = BERLIN) -> str | None:
    """When the business opens next, worded, or None while it is open."""
    opening = next_opening(parse_hours(hours), zone, now)
    return None if opening is None else describe_opening(opening, now)


def berlin(day: int, hour: int, minute: int = 0, month: int = 11) -> dt.datetime:
    """A wall-clock time in Berlin in 2026 (November 2026: the 23rd is a Monday)."""
    return dt.datetime(2026, month, day, hour, minute, tzinfo=BERLIN)


def test_the_grammar() -> None:
    assert parse_hours("") == () and parse_hours(" ; ") == ()
    assert parse_hours("Mon 9:00-12:00, 14:00-18:00") == (Opening(0, 540, 720), Opening(0, 840, 1080))
    assert {o.weekday for o in parse_hours("fri-mon 10:00-11:00")} == {4, 5, 6, 0}  # a range that wraps
    assert {o.weekday for o in parse_hours("mon,wed 10:00-11:00")} == {0, 2}
    assert parse_hours("sat 22:00-02:00") == (Opening(5, 1320, 1560),)  # past midnight
    assert parse_hours("sun 00:00-24:00") == (Opening(6, 0, 1440),)
    for bad in ("mon-fri", "9:00-17:00", "funday 9:00-17:00", "mon 9:00-25:00", "mon 9:60-10:00", "mon 24:00-24:00",
                "mon 9:00-9:00", "mon 9:00-17:00 and more", "mon 9-17"):  # fmt: skip
        with pytest.raises(ConfigurationError, match="WAYPOST_BUSINESS_HOURS"):
            parse_hours(bad)


def test_the_time_zone_is_an_iana_name() -> None:
    assert time_zone("Europe/Berlin") == BERLIN and time_zone(" UTC ") == ZoneInfo("UTC")
    for bad in ("Mars/Olympus", "", "../etc/passwd", "CEST+2"):
        with pytest.raises(ConfigurationError, match=r"WAYPOST_TIMEZONE: .* is not an IANA time zone name"):
            time_zone(bad)


def test_open_hours_and_always_open() -> None:
    assert opens(WEEK, berlin(23, 9)) is None  # Monday at opening time: open
    assert opens(WEEK, berlin(23, 17, 59)) is None
    assert opens(WEEK, berlin(28, 13, 30)) is None  # Saturday
    assert opens("", berlin(29, 3)) is None  # no hours: always open


def test_before_opening_after_closing_and_the_weekend() -> None:
    assert opens(WEEK, berlin(23, 7, 30)) == "today from 9:00"
    assert opens(WEEK, berlin(23, 18)) == "tomorrow from 9:00"  # closing time is closed
    assert opens(WEEK, berlin(27, 19)) == "tomorrow from 10:00"  # Friday evening: Saturday's hours
    assert opens(WEEK, berlin(28, 14, 1)) == "on Monday from 9:00"  # Saturday afternoon
    assert opens(WEEK, berlin(29, 12)) == "tomorrow from 9:00"  # Sunday
    assert opens("mon 09:00-18:00", berlin(23, 19)) == "on Monday from 9:00"  # a week ahead


def test_a_day_with_two_ranges() -> None:
    hours = "mon-fri 09:00-12:30, 14:00-18:00"
    assert opens(hours, berlin(24, 12, 30)) == "today from 14:00"  # lunch
    assert opens(hours, berlin(24, 13, 59)) == "today from 14:00"
    assert opens(hours, berlin(24, 14)) is None
    assert opens(hours, berlin(24, 12, 29)) is None


def test_midnight() -> None:
    hours = "fri 18:00-24:00; sat 00:00-02:00; sun 22:00-01:00"
    assert opens(hours, berlin(27, 23, 59)) is None
    assert opens(hours, berlin(28, 0)) is None  # Saturday's first minute
    assert opens(hours, berlin(28, 2)) == "tomorrow from 22:00"
    assert opens(hours, berlin(30, 0, 30)) is None  # Sunday's range runs into Monday
    assert opens(hours, berlin(30, 1)) == "on Friday from 18:00"
    assert opens("tue 00:00-08:00", berlin(23, 23, 59)) == "tomorrow from 0:00"
    assert opens("tue 09:00-17:00", berlin(24, 0)) == "today from 9:00"  # just after midnight: today


def test_the_days_daylight_saving_changes_in_berlin() -> None:
    # 2026-03-29, a Sunday: 02:00 CET becomes 03:00 CEST. Opening at 10:00 is 08:00 UTC that day.
    opening = next_opening(parse_hours("sun 10:00-12:00"), BERLIN, berlin(28, 20, month=3))
    assert opening is not None and opening.astimezone(dt.UTC) == dt.datetime(2026, 3, 29, 8, tzinfo=dt.UTC)
    assert describe_opening(opening, berlin(28, 20, month=3)) == "tomorrow from 10:00"
    # the day before, 10:00 was 09:00 UTC: the wall clock holds, the instant moves
    saturday = next_opening(parse_hours("sat 10:00-12:00"), BERLIN, berlin(28, 8, month=3))
    assert saturday is not None and saturday.astimezone(dt.UTC) == dt.datetime(2026, 3, 28, 9, tzinfo=dt.UTC)
    # a range that starts in the hour the clocks skip opens at 03:30 CEST
    skipped = next_opening(parse_hours("sun 02:30-04:00"), BERLIN, berlin(29, 1, month=3))
    assert skipped is not None and (skipped.hour, skipped.minute) == (3, 30)
    # 2026-10-25: 03:00 CEST becomes 02:00 CET, a 25-hour day; Monday opens at 09:00 CET = 08:00 UTC
    now = dt.datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=BERLIN)  # the second 02:30
    monday = next_opening(parse_hours(WEEK), BERLIN, now)
    assert monday is not None and monday.astimezone(dt.UTC) == dt.datetime(2026, 10, 26, 8, tzinfo=dt.UTC)
    assert describe_opening(monday, now) == "tomorrow from 9:00"
    # and "now" may come in any zone: 07:30 UTC on that Monday is 08:30 in Berlin
    assert opens(WEEK, dt.datetime(2026, 10, 26, 7, 30, tzinfo=dt.UTC)) == "today from 9:00"
    assert opens(WEEK, dt.datetime(2026, 10, 26, 8, 0, tzinfo=dt.UTC)) is None
