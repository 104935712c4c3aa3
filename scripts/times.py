"""UTC timestamps as the CLI reads and writes them."""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso_utc(value: Any) -> Optional[str]:
    """A timestamp as ISO 8601 in UTC (botocore returns them in the local zone of the parser)."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat(timespec="seconds")
    return None if value is None else str(value)


def parse_time(value: Any) -> Optional[dt.datetime]:
    """A datetime or an ISO 8601 string ('Z' allowed) as an aware datetime; None if it is neither."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
    return None
