"""What a workflow may use from the invocation that runs it: AWS clients, progress, the log.

`scripts.commands.base.Context` provides all of it; a workflow names this protocol instead, so
workflows never depend on argument parsing or rendering.
"""
from __future__ import annotations

from typing import Any, Optional, Protocol


class Session(Protocol):
    @property
    def region(self) -> str:
        """The AWS region the command works in."""

    def client(self, service: str, region: Optional[str] = None) -> Any:
        """A boto3 client (built in scripts/aws/session.py)."""

    def progress(self, message: str) -> None:
        """A timestamped line for the person waiting (stderr)."""

    def log(self, event: str, /, **details: Any) -> bool:
        """One operations-log line; returns whether it was written."""
