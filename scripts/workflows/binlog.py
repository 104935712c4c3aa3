"""The binlog shipper as the operator runs it: scripts/agent/binlog_ship.py (the code the instance's
quickport-binlog service runs) as a child process, its output relayed line by line and its exit code
returned. The agent stays the single implementation; nothing of it is re-implemented here."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional

from scripts.errors import CommandError

AGENT = Path(__file__).resolve().parent.parent / "agent" / "binlog_ship.py"


@dataclass(frozen=True)
class ShipRequest:
    bucket: str
    prefix: str
    follow: bool
    interval: int
    state_dir: Path
    spool_megabytes: int
    defaults_file: Optional[Path] = None      # or:
    password_parameter: str = ""
    user: str = ""
    socket: Optional[str] = None
    region: Optional[str] = None
    json: bool = False

    def argv(self) -> list[str]:
        argv = [sys.executable, str(AGENT), "--follow" if self.follow else "--once", "--bucket", self.bucket,
                "--prefix", self.prefix, "--interval", str(self.interval), "--state-dir", str(self.state_dir),
                "--spool-megabytes", str(self.spool_megabytes)]
        if self.defaults_file:
            argv += ["--defaults-file", str(self.defaults_file)]
        else:
            argv += ["--password-parameter", self.password_parameter, "--user", self.user]
            if self.socket:
                argv += ["--socket", self.socket]
        if self.region:
            argv += ["--region", self.region]
        return argv + (["--json"] if self.json else [])


def _relay(source: IO[str], sink_name: str) -> None:
    for line in source:
        sink = getattr(sys, sink_name)   # looked up per line: a test's capture may replace it
        sink.write(line)
        sink.flush()


def ship(request: ShipRequest) -> int:
    """Run the agent until it exits and return its exit code. SIGTERM and SIGINT sent to this process
    are passed on, so `--follow` still makes its final ship and exits 0."""
    try:
        child = subprocess.Popen(request.argv(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 bufsize=1)
    except OSError as e:
        raise CommandError(f"starting {AGENT}: {e}") from None
    relays = [threading.Thread(target=_relay, args=(child.stdout, "stdout"), daemon=True),
              threading.Thread(target=_relay, args=(child.stderr, "stderr"), daemon=True)]
    for t in relays:
        t.start()

    def forward(signum, _frame) -> None:
        if child.poll() is None:
            child.send_signal(signum)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for t in relays:
            t.join(timeout=10)
    return code if code >= 0 else 128 - code
