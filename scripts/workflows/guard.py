"""Running the maintenance command `backupctl guard` protects, once its snapshot passed section 8."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from typing import Optional


@dataclass
class CommandOutcome:
    exit_code: int
    problem: Optional[str] = None    # why it could not start (command not found, permission denied)


def run_command(argv: list[str], *, stdout_to_stderr: bool) -> CommandOutcome:
    """Run argv exactly as given (no shell) and wait for it. A signal death maps to 128+N, as a
    shell reports it. With stdout_to_stderr (--json) its stdout goes to our stderr, so that our
    stdout stays one JSON document."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        completed = subprocess.run(argv, stdout=2 if stdout_to_stderr else None)  # 2: our stderr's fd
    except FileNotFoundError:
        return CommandOutcome(127, f"{argv[0]}: command not found")
    except PermissionError:
        return CommandOutcome(126, f"{argv[0]}: permission denied")
    code = completed.returncode
    return CommandOutcome(code if code >= 0 else 128 - code)
