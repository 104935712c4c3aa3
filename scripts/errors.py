"""Exit codes and the two failures every layer may raise; nothing here imports another module."""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1      # a check failed or an AWS operation failed
EXIT_USAGE = 2       # bad usage or input
EXIT_INTERRUPTED = 130   # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_BROKEN_PIPE = 141   # 128 + SIGPIPE, as a shell reports `backupctl ... | head`


class CommandError(Exception):
    """An AWS operation or a check failed: exit 1 with this one-line message."""


class UsageError(Exception):
    """Bad usage or input: exit 2 with this one-line message naming the field and what is allowed."""
