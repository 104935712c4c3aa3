"""One "runs at least daily" semantics: components/schedules.py (audit, config) and the policy pack's
copy (policies/quickport_policies/shapes.py, which runs in its own environment) agree on every
schedule of this table, and both are right about it."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from components.schedules import runs_at_least_daily

ROOT = Path(__file__).resolve().parent.parent


def _pack_copy():
    spec = importlib.util.spec_from_file_location("pack_shapes", ROOT / "policies" / "quickport_policies" / "shapes.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.runs_at_least_daily


PACK_RUNS_AT_LEAST_DAILY = _pack_copy()

SCHEDULES = [
    # (expression, fires on every calendar day from now on)
    ("cron(0 20 * * ? *)", True),           # the shipped plan: 20:00 UTC daily
    ("cron(0 20 ? * 1-7 *)", True),         # every weekday number: the audit used to call this not daily
    ("cron(0 20 * * ? 2027)", False),       # 2027 only: the audit used to call this daily
    ("cron(0 20 * * ? 2026-2030)", False),  # ends in 2030
    ("cron(30 */6 ? * * *)", True),         # four times a day
    ("cron(0 20 ? * SUN-SAT *)", True),
    ("cron(0 1 ? * MON-SUN *)", True),      # a range that wraps still covers the week
    ("cron(0 20 ? * 1,2,3,4,5,6,7 *)", True),
    ("cron(0 20 ? * MON-FRI *)", False),    # weekdays only
    ("cron(0 20 1-31 * ? *)", True),        # every day of the month, spelled out
    ("cron(0 20 1/1 * ? *)", True),
    ("cron(0 20 2/1 * ? *)", False),        # skips the 1st
    ("cron(0 20 */2 * ? *)", False),        # every other day
    ("cron(0 20 L * ? *)", False),          # last day of the month
    ("cron(0 20 15W * ? *)", False),
    ("cron(0 20 ? * 6#3 *)", False),        # third Friday
    ("cron(0 20 * 1-12 ? *)", True),
    ("cron(0 20 * JAN-DEC ? *)", True),
    ("cron(0 20 * 1-11 ? *)", False),       # no December
    ("cron(0 20 * * * *)", False),          # AWS rejects it: one of day-of-month/day-of-week must be '?'
    ("cron(0 20 ? * ? *)", False),          # likewise
    ("cron(60 20 * * ? *)", False),         # minute 60 does not exist
    ("cron(0 24 * * ? *)", False),          # nor hour 24
    ("cron(0 20 * *)", False),              # four fields
    ("rate(1 day)", True),
    ("rate(24 hours)", True),
    ("rate(12 hours)", True),
    ("rate(5 minutes)", True),
    ("rate(25 hours)", False),
    ("rate(2 days)", False),
    ("rate(0 minutes)", False),
    ("daily", False),
    ("", False),
    (None, False),
]


def test_the_table_is_large_enough_to_mean_something():
    assert len(SCHEDULES) >= 15 and {True, False} == {want for _, want in SCHEDULES}


@pytest.mark.parametrize("expression, want", SCHEDULES)
def test_the_cli_and_the_pack_agree_and_are_right(expression, want):
    assert (runs_at_least_daily(expression), PACK_RUNS_AT_LEAST_DAILY(expression)) == (want, want)
