"""The operations log: one timestamped JSON line per thing the CLI did, for the audit trail.

The log is private: the file is 0600 and the default directory 0700 (both tightened when they
exist with wider modes), since it names hosts, users, snapshots and the commands `guard` ran.
Argument values that look like secrets are masked before they are written (`mask_argv`). Every
long-running step is an `operation`: a `<name>-started` line and exactly one `<name>-finished`,
`-failed` or `-interrupted` line, whatever way the step ends.
"""
from __future__ import annotations

import getpass
import json
import os
import re
import socket
import stat
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from scripts.times import utcnow

FILE_MODE = 0o600
DIR_MODE = 0o700
MASK = "***"
ERROR_MAX_CHARS = 500
# --password=X, --db-secret=X, --api-token=X ...; NAME=X where NAME says PASSWORD/SECRET/TOKEN
# (env MYSQL_PASSWORD=X); the MariaDB/MySQL clients' -pX; and the value after a bare --password.
_SECRET_WORD = r"(?:passw(?:or)?d|pass|secret|token)"
_LONG_OPTION_WITH_VALUE = re.compile(rf"^(--?[a-z0-9_-]*{_SECRET_WORD}[a-z0-9_-]*=)(.+)$", re.IGNORECASE)
_LONG_OPTION = re.compile(rf"^--?[a-z0-9_-]*{_SECRET_WORD}[a-z0-9_-]*$", re.IGNORECASE)
_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN)[A-Za-z0-9_]*=)(.+)$",
                         re.IGNORECASE)
_SHORT_PASSWORD = re.compile(r"^(-p)(.+)$")


def default_log_file() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "quickport-backup" / "operations.jsonl"


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return str(os.getuid())


def mask_argv(argv: list[str]) -> list[str]:
    """argv with the values of secret-looking arguments replaced by ***, for logs and screens."""
    masked: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            masked.append(MASK)
            hide_next = False
            continue
        for pattern in (_LONG_OPTION_WITH_VALUE, _ASSIGNMENT, _SHORT_PASSWORD):
            m = pattern.match(arg)
            if m:
                masked.append(m.group(1) + MASK)
                break
        else:
            masked.append(arg)
            hide_next = bool(_LONG_OPTION.match(arg))
    return masked


def _private_directory(directory: Path, default: bool) -> None:
    """Create `directory` 0700. An existing one is tightened when it is the default log directory
    (ours alone) or owned by us with group/other access; a shared one (/tmp: sticky) is left alone."""
    if not directory.exists():
        directory.mkdir(parents=True, mode=DIR_MODE)
        os.chmod(directory, DIR_MODE)   # mkdir's mode is filtered by the umask
        return
    info = directory.stat()
    if (default or (info.st_uid == os.geteuid() and not info.st_mode & stat.S_ISVTX)) \
            and stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(directory, stat.S_IMODE(info.st_mode) & ~0o077)


def append(log_file: Optional[Path], command: str, event: str, /, **details: Any) -> bool:
    """Append one line to the log at `log_file` (default: default_log_file()). Never raises: returns
    whether the line was written (the section 8 checklist reports it); a failure is a warning."""
    path = log_file or default_log_file()
    record = {"time": utcnow().isoformat(timespec="seconds"), "command": command, "event": event,
              "user": current_user(), "host": socket.gethostname(), **details}
    try:
        _private_directory(path.parent, default=log_file is None)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            if stat.S_IMODE(os.fstat(fd).st_mode) != FILE_MODE:
                os.fchmod(fd, FILE_MODE)   # a log made before the log was private
            f.write(json.dumps(record, default=str) + "\n")
    except OSError as e:
        print(f"warning: could not write operations log {path}: {e}", file=sys.stderr)
        return False
    return True


def error_summary(error: BaseException) -> str:
    """One capped line for a failure (the message a command prints, else the exception's type)."""
    text = (str(error).splitlines() or [""])[0] or type(error).__name__
    return text if len(text) <= ERROR_MAX_CHARS else text[:ERROR_MAX_CHARS] + "..."


class Operation:
    """One started step; `end` writes its single end line (later calls are ignored)."""

    def __init__(self, log: Callable[..., bool], name: str, details: dict[str, Any]):
        self._log, self.name, self.details, self.ended = log, name, details, False

    def end(self, outcome: str, /, **details: Any) -> None:
        """outcome: finished (or a command's own word, e.g. succeeded), failed or interrupted."""
        if not self.ended:
            self.ended = True
            self._log(f"{self.name}-{outcome}", **{**self.details, **details})


@contextmanager
def operation(log: Callable[..., bool], name: str, /, *, start: Optional[dict[str, Any]] = None,
              **details: Any) -> Iterator[Operation]:
    """Log `<name>-started`, run the block, then exactly one end line: what the block chose with
    `op.end(...)`, else `-interrupted` (Ctrl-C), `-failed` (any exception, with its summary) or
    `-finished`. `details` go on every line of the operation, `start` on the started line only."""
    log(f"{name}-started", **details, **(start or {}))
    op = Operation(log, name, details)
    try:
        yield op
    except KeyboardInterrupt:
        op.end("interrupted", error="interrupted by the user")
        raise
    except BaseException as e:
        op.end("failed", error=error_summary(e))
        raise
    op.end("finished")
