"""The operations log: one timestamped JSON line per thing the CLI did, for the audit trail."""
from __future__ import annotations

import getpass
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any, Optional

from scripts.times import utcnow


def default_log_file() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "quickport-backup" / "operations.jsonl"


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return str(os.getuid())


def append(log_file: Optional[Path], command: str, event: str, /, **details: Any) -> bool:
    """Append one line to the log at `log_file` (default: default_log_file()). Never raises: returns
    whether the line was written (the section 8 checklist reports it); a failure is a warning."""
    path = log_file or default_log_file()
    record = {"time": utcnow().isoformat(timespec="seconds"), "command": command, "event": event,
              "user": current_user(), "host": socket.gethostname(), **details}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=str) + "\n")
    except OSError as e:
        print(f"warning: could not write operations log {path}: {e}", file=sys.stderr)
        return False
    return True
