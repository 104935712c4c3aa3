"""Running the maintenance command `backupctl guard` protects, once its snapshot passed section 8.

The command runs in guard's own process group, in the foreground: a Ctrl-C at the terminal reaches
it directly (the terminal signals the whole foreground group), so an apt/dnf transaction gets its
own SIGINT and finishes its clean-up. Guard itself ignores that SIGINT and waits, however long the
command takes; a SIGTERM sent to guard (kill, systemd) is forwarded to the command. Guard returns
the command's exit code. An operator who really wants it gone presses Ctrl-C again within
ESCALATE_WINDOW_SECONDS of the previous one: the second sends SIGTERM, a third SIGKILL.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Callable, Optional

ESCALATE_WINDOW_SECONDS = 3.0
ESCALATION = (signal.SIGTERM, signal.SIGKILL)


@dataclass
class CommandOutcome:
    exit_code: int
    problem: Optional[str] = None    # why it could not start (command not found, permission denied)
    signals: list[str] = field(default_factory=list)   # what guard received while it ran, in order
    sent: list[str] = field(default_factory=list)      # what guard sent the command (forwarded, escalated)


class _Relay:
    """Guard's SIGINT/SIGTERM handlers while the command runs."""

    def __init__(self, proc: subprocess.Popen, outcome: CommandOutcome, say: Callable[[str], None]):
        self.proc, self.outcome, self.say = proc, outcome, say
        self.last_interrupt: Optional[float] = None
        self.escalated = 0

    def _send(self, sig: signal.Signals) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.outcome.sent.append(sig.name)

    def on_signal(self, signum: int, _frame: Optional[FrameType]) -> None:
        sig = signal.Signals(signum)
        self.outcome.signals.append(sig.name)
        now = time.monotonic()
        if sig == signal.SIGTERM:
            self.say("SIGTERM received: passed on to the command; waiting for it to finish")
            self._send(signal.SIGTERM)
            return
        quick = self.last_interrupt is not None and now - self.last_interrupt <= ESCALATE_WINDOW_SECONDS
        self.last_interrupt = now
        if quick and self.escalated < len(ESCALATION):
            escalation = ESCALATION[self.escalated]
            self.escalated += 1
            self.say(f"Ctrl-C again: sending {escalation.name} to the command")
            self._send(escalation)
        else:
            self.say("Ctrl-C: the command got it too; waiting for it to finish its clean-up (press Ctrl-C "
                     f"again within {ESCALATE_WINDOW_SECONDS:g} s to send it SIGTERM, a third time for SIGKILL)")


def run_command(argv: list[str], *, stdout_to_stderr: bool,
                say: Callable[[str], None] = lambda message: None) -> CommandOutcome:
    """Run argv exactly as given (no shell), relaying signals as the module says, and wait for it.
    A signal death maps to 128+N, as a shell reports it. With stdout_to_stderr (--json) its stdout
    goes to our stderr, so that our stdout stays one JSON document."""
    sys.stdout.flush()
    sys.stderr.flush()
    outcome = CommandOutcome(exit_code=0)
    previous: dict[signal.Signals, Any] = {}
    try:
        # The handlers go in before the child exists, so no signal finds guard unprepared; the
        # child still starts with the default dispositions (exec resets caught signals).
        relay: Optional[_Relay] = None

        def handler(signum: int, frame: Optional[FrameType]) -> None:
            if relay is not None:
                relay.on_signal(signum, frame)
            else:
                outcome.signals.append(signal.Signals(signum).name)

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
        try:
            proc = subprocess.Popen(argv, stdout=2 if stdout_to_stderr else None)  # 2: our stderr's fd
        except FileNotFoundError:
            return CommandOutcome(127, f"{argv[0]}: command not found")
        except PermissionError:
            return CommandOutcome(126, f"{argv[0]}: permission denied")
        relay = _Relay(proc, outcome, say)
        if "SIGTERM" in outcome.signals:   # arrived while it was being started
            relay._send(signal.SIGTERM)
        code = proc.wait()   # retried by Python when a handler runs (PEP 475)
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
    outcome.exit_code = code if code >= 0 else 128 - code
    return outcome
