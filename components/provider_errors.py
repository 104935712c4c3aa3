"""One line for an AWS failure inside a dynamic provider (what `pulumi up` shows last)."""
from __future__ import annotations


def aws_failure_line(action: str, subject: str, e: Exception) -> str:
    """`<Action> <subject> failed: <Code>: <Message>` for a botocore ClientError, else the error text."""
    from botocore.exceptions import ClientError
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        return f"{action} {subject} failed: {err.get('Code')}: {err.get('Message')}"
    return f"{action} {subject} failed: {e}"
