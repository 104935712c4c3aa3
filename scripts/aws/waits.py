"""Waiting on AWS: boto3 waiters bounded by the operator's --timeout, and the progress callback type."""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

from botocore.exceptions import WaiterError

from scripts.errors import CommandError

Progress = Callable[[str], None]


def noop(_: str) -> None:
    pass


def waiter_config(timeout: float, poll_seconds: float) -> dict[str, Any]:
    """A boto3 WaiterConfig that waits `timeout` seconds, checking every `poll_seconds`."""
    return {"Delay": poll_seconds, "MaxAttempts": max(1, math.ceil(timeout / poll_seconds))}


def wait(client, waiter_name: str, what: str, timeout: float, poll_seconds: float, **params: Any) -> None:
    """Run a boto3 waiter for at most `timeout` seconds; CommandError saying whether time ran out
    or the resource reached a state it cannot leave (e.g. an instance terminated while starting)."""
    try:
        client.get_waiter(waiter_name).wait(WaiterConfig=waiter_config(timeout, poll_seconds), **params)
    except WaiterError as e:
        reason = str(e.kwargs.get("reason") or e)
        wanted = waiter_name.replace("_", " ")
        if "Max attempts exceeded" in reason:
            raise CommandError(f"{what}: not {wanted.split(' ', 1)[1]} after {timeout / 60:g} minutes") from None
        raise CommandError(f"{what}: waiting for {wanted} failed: {reason}") from None


def poll_until(what: str, read: Callable[[], Optional[dict[str, Any]]], *,
               done: Callable[[dict[str, Any]], bool], failed: Callable[[dict[str, Any]], Optional[str]],
               status: Callable[[dict[str, Any]], str], timed_out: Callable[[Optional[dict[str, Any]]], str],
               timeout: float, progress: Progress, poll_seconds: float, not_found_grace: float,
               clock: Callable[[], float], sleep: Callable[[float], None]) -> dict[str, Any]:
    """Our own polling loop, for waits longer than a boto3 waiter's or with progress to show.

    `read()` returns the resource or None while it is not visible (describe calls are eventually
    consistent: a just-created id may be missing for up to `not_found_grace` seconds). A progress line
    `<what>: <status>` whenever the status changes; CommandError with `<what> <failed(...)>` when
    the resource reached a state it cannot leave, or `timed_out(last seen)` when time runs out."""
    deadline = started = clock()
    deadline += timeout
    last_status: Optional[str] = None
    last_seen: Optional[dict[str, Any]] = None
    while True:
        item = read()
        if item is None:
            if clock() - started > not_found_grace:
                raise CommandError(f"{what} no longer exists")
        else:
            last_seen = item
            failure = failed(item)
            if failure:
                raise CommandError(f"{what} {failure}")
            shown = status(item)
            if shown != last_status:
                progress(f"{what}: {shown}")
                last_status = shown
            if done(item):
                return item
        remaining = deadline - clock()
        if remaining <= 0:
            raise CommandError(timed_out(last_seen))
        sleep(min(poll_seconds, remaining))
