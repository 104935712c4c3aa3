"""When does an AWS schedule expression fire? Only as much as the strategy needs: "every day?".

AWS Backup, EventBridge and SSM State Manager share the six-field cron form
`cron(minutes hours day-of-month month day-of-week year)` (one of day-of-month and day-of-week is
'?') and `rate(N unit)`. An expression runs at least daily when it fires on every calendar day from
now on: day-of-month covers 1-31 (or is '?' while day-of-week covers all seven days), every month,
every year. A year list or range (`2027`, `2026-2030`) ends some day, so it does not count.

The policy pack (policies/quickport_policies/shapes.py) runs in its own environment and keeps a
copy of this function; tests/test_schedules.py holds the two equal over a table of schedules.
"""
from __future__ import annotations

import re
from typing import Any, Optional

_CRON = re.compile(r"^cron\((\S+) (\S+) (\S+) (\S+) (\S+) (\S+)\)$")
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_MONTHS = {m: i for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP",
                                       "OCT", "NOV", "DEC"), 1)}
_WEEKDAYS = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}
_UNIT_MINUTES = {"minute": 1, "hour": 60, "day": 1440}


def _values(field: str, lo: int, hi: int, names: dict[str, int]) -> Optional[set[int]]:
    """The values a cron field selects (`*`, `?`, `N`, `A-B`, `*/S`, `A-B/S`, `A/S`, lists and
    names); None for a field that is not plain (L, W, #, bad numbers) and so never "every day"."""
    selected: set[int] = set()
    for part in field.upper().split(","):
        base, _, step_text = part.partition("/")
        if step_text and not step_text.isdigit():
            return None
        step = int(step_text) if step_text else 1
        if base in ("*", "?"):
            start, end = lo, hi
        else:
            bounds = base.split("-")
            if len(bounds) > 2:
                return None
            numbers = [names.get(b, int(b) if b.isdigit() else -1) for b in bounds]
            if any(not lo <= n <= hi for n in numbers):
                return None
            start = numbers[0]
            end = numbers[-1] if len(numbers) == 2 else (hi if step_text else start)
        if step < 1:
            return None
        if end < start:  # a range that wraps (FRI-MON, 22-2), as Quartz-style cron allows
            span = list(range(start, hi + 1)) + list(range(lo, end + 1))
            selected.update(span[::step])
        else:
            selected.update(range(start, end + 1, step))
    return selected


def runs_at_least_daily(expression: Any) -> bool:
    """True when the AWS cron/rate expression fires on every calendar day (see the module doc)."""
    if not isinstance(expression, str):
        return False
    text = expression.strip()
    rate = _RATE.match(text)
    if rate:
        every = int(rate.group(1)) * _UNIT_MINUTES[rate.group(2).rstrip("s")]
        return 1 <= every <= 1440
    cron = _CRON.match(text)
    if not cron:
        return False
    minutes, hours, day_of_month, month, day_of_week, year = cron.groups()
    if not _values(minutes, 0, 59, {}) or not _values(hours, 0, 23, {}):
        return False  # AWS rejects it: it never runs
    if (day_of_month == "?") == (day_of_week == "?"):
        return False  # AWS requires exactly one of the two to be '?'
    if year != "*":
        return False
    months = _values(month, 1, 12, _MONTHS)
    if months != set(range(1, 13)):
        return False
    if day_of_month == "?":
        return _values(day_of_week, 1, 7, _WEEKDAYS) == set(range(1, 8))
    return _values(day_of_month, 1, 31, {}) == set(range(1, 32))
