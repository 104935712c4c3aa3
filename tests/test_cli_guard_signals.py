"""`backupctl guard` and signals: the guarded command gets Ctrl-C (from the terminal, as the whole
foreground process group does) or guard's forwarded SIGTERM, guard waits for its clean-up however long
it takes, returns its exit code and logs the end.

The real launcher runs as a subprocess in a session of its own, so that signalling its process group
is exactly what a terminal's Ctrl-C does. The guarded command is a small Python program that traps
SIGINT/SIGTERM, takes 1.5 s to clean up and exits 7.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures.cli import LAUNCHER

CLEANER = """
import signal, sys, time
ready, done = sys.argv[1], sys.argv[2]
def cleanup(signum, frame):
    time.sleep(1.5)                       # an apt/dnf transaction finishing its clean-up
    open(done, "w").write(signal.Signals(signum).name)
    sys.exit(7)
signal.signal(signal.SIGINT, cleanup)
signal.signal(signal.SIGTERM, cleanup)
open(ready, "w").write("ready")
time.sleep(60)
sys.exit(0)
"""

STUBBORN = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(sys.argv[1], "w").write("ready")
time.sleep(60)
"""


def _start_guard(prod, program: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "QUICKPORT_NO_VENV": "1"}
    return subprocess.Popen([sys.executable, str(LAUNCHER), "guard", "--action", "php-upgrade",
                             *prod.common_args(), "--", sys.executable, "-c", program, *args],
                            env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the guarded command never started"
        time.sleep(0.05)


def _guard_events(prod) -> list[dict]:
    return [line for line in prod.log_lines() if line["event"].startswith("guard-command")]


def test_ctrl_c_reaches_the_command_and_guard_waits_for_its_clean_up(prod_instance, tmp_path):
    ready, done = tmp_path / "ready", tmp_path / "done"
    proc = _start_guard(prod_instance, CLEANER, str(ready), str(done))
    _wait_for(ready, proc)

    os.killpg(proc.pid, signal.SIGINT)          # what the terminal does on Ctrl-C
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 7, err
    assert done.read_text() == "SIGINT"
    assert "command exited 7" in out


def test_ctrl_c_during_the_command_logs_its_end_with_the_exit_code(prod_instance, tmp_path):
    ready, done = tmp_path / "ready", tmp_path / "done"
    proc = _start_guard(prod_instance, CLEANER, str(ready), str(done))
    _wait_for(ready, proc)

    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=60)

    events = _guard_events(prod_instance)
    assert [e["event"] for e in events] == ["guard-command-started", "guard-command-interrupted"]
    assert events[1]["exit_code"] == 7 and events[1]["signals"] == ["SIGINT"]


def test_sigterm_to_guard_is_forwarded_and_guard_returns_the_commands_code(prod_instance, tmp_path):
    ready, done = tmp_path / "ready", tmp_path / "done"
    proc = _start_guard(prod_instance, CLEANER, str(ready), str(done))
    _wait_for(ready, proc)

    os.kill(proc.pid, signal.SIGTERM)           # kill/systemd: guard alone gets it
    _, err = proc.communicate(timeout=60)

    assert proc.returncode == 7, err
    assert done.read_text() == "SIGTERM"
    assert [e["event"] for e in _guard_events(prod_instance)][-1] == "guard-command-interrupted"


def test_three_quick_ctrl_c_escalate_to_sigterm_then_sigkill(prod_instance, tmp_path):
    ready = tmp_path / "ready"
    proc = _start_guard(prod_instance, STUBBORN, str(ready))
    _wait_for(ready, proc)

    for _ in range(3):
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.3)
    _, err = proc.communicate(timeout=60)

    assert proc.returncode == 128 + signal.SIGKILL, err
    end = _guard_events(prod_instance)[-1]
    assert end["sent"] == ["SIGTERM", "SIGKILL"] and end["exit_code"] == 137
    assert "sending SIGKILL" in err
