"""Names the strategy gives things: pre-maintenance snapshots and the dump bucket's key prefixes.

Shared by the stack config (baselines must follow the rule) and the operator CLI (which makes them).
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

from components.errors import ConfigError

SNAPSHOT_NAME_PREFIX = "prod-root-"
# prod-root-YYYY-MM-DD-before-<action>; the action is lowercase kebab-case, at most 48 characters.
# A second snapshot for the same action on the same day (the first is older than `backupctl
# snapshot --reuse-within`) is numbered: prod-root-YYYY-MM-DD-before-<action>-2, -3, ...; the number
# is not counted in the 48.
ACTION_MAX_LEN = 48
ACTION_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SNAPSHOT_NAME_RE = re.compile(r"^prod-root-(\d{4}-\d{2}-\d{2})-before-(.+)$")

# `backupctl restore-files` hands files back through <dump bucket>/restores/<run>/ (SSM command output).
RESTORES_PREFIX = "restores"


def validate_action(action: Any, key: str = "action") -> str:
    """The <action> of a pre-maintenance name: lowercase kebab-case, at most 48 characters."""
    if not isinstance(action, str) or len(action) > ACTION_MAX_LEN or not ACTION_RE.match(action):
        raise ConfigError(
            f"{key} {action!r}: must be lowercase kebab-case (a-z, 0-9, single hyphens between words), "
            f"at most {ACTION_MAX_LEN} characters, e.g. 'php-upgrade'")
    return action


def parse_snapshot_name(name: Any, key: str = "name") -> tuple[dt.date, str]:
    """Split 'prod-root-YYYY-MM-DD-before-<action>' into its real calendar date and action."""
    rule = "must be prod-root-YYYY-MM-DD-before-<action> with a real date and a lowercase kebab-case action"
    m = SNAPSHOT_NAME_RE.match(name) if isinstance(name, str) else None
    if not m:
        raise ConfigError(f"{key} {name!r}: {rule}")
    try:
        date = dt.date.fromisoformat(m.group(1))
    except ValueError:
        raise ConfigError(f"{key} {name!r}: {m.group(1)} is not a calendar date; {rule}") from None
    action = m.group(2)
    numbered = re.fullmatch(r"(.+)-([2-9]|[1-9][0-9]+)", action)
    if numbered and len(action) > ACTION_MAX_LEN:   # <action>-<n>: the number is not part of the 48
        action = numbered.group(1)
    validate_action(action, key=f"{key} {name!r} action")
    return date, m.group(2)


def snapshot_name(date: dt.date, action: str, number: int = 1) -> str:
    """The pre-maintenance name; `number` 2, 3, ... for the day's further snapshots of one action."""
    base = f"{SNAPSHOT_NAME_PREFIX}{date.isoformat()}-before-{validate_action(action)}"
    return base if number == 1 else f"{base}-{number}"
