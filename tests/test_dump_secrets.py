"""The password only ever sits in a 0600 option file that is removed on exit: never in argv or in the
environment of any process (polled from /proc while a real dump runs)."""
from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from scripts.agent import quickport_dump
from tests.fixtures.mariadb import BACKUP_PASSWORD, running_children

SCRIPT = str(Path(quickport_dump.__file__))
PARAMETER = "/quickport/test/mysql/backup-password"


@pytest.fixture
def password_parameter(aws):
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=BACKUP_PASSWORD, Type="SecureString")
    return PARAMETER


def start_dump(bucket: str, socket_path: str, database: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, SCRIPT, "db", "--database", database, "--bucket", bucket,
                             "--prefix", "mysql", "--password-parameter", PARAMETER, "--user", "backup",
                             "--socket", socket_path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def read_proc(pid: str, name: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return b""


def watch(proc: subprocess.Popen, on_poll) -> None:
    while proc.poll() is None:
        on_poll()
        time.sleep(0.01)
    proc.communicate(timeout=60)


def recording_shims(directory: Path, monkeypatch) -> Path:
    """mariadb, mariadb-dump and zstd first on PATH as shims that append their name to names.log and
    their argv and environment (as /proc shows them) to proc.log, then exec the real program with the
    same argv and environment: a process too short-lived for the /proc poll is still seen."""
    directory.mkdir()
    for name in ("mariadb", "mariadb-dump", "zstd"):
        shim = directory / name
        shim.write_text(f'#!/bin/sh\necho {name} >> "{directory}/names.log"\n'
                        f'cat /proc/$$/cmdline /proc/$$/environ >> "{directory}/proc.log"\n'
                        f'exec "{quickport_dump.find_program(name)}" "$@"\n')
        shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory}:{os.environ['PATH']}")
    return directory


def test_password_never_in_a_started_process_cmdline_or_environ(mariadb_server, dump_bucket, password_parameter,
                                                                big_database, tmp_path, monkeypatch):
    secret = BACKUP_PASSWORD.encode()
    leaks, seen = [], set()
    shims = recording_shims(tmp_path / "bin", monkeypatch)
    proc = start_dump(dump_bucket, mariadb_server.socket, big_database)

    def poll():
        for pid, name in [(proc.pid, "python")] + running_children(proc.pid):
            seen.add(name)
            for part in ("cmdline", "environ"):
                if secret in read_proc(str(pid), part):
                    leaks.append((pid, name, part))
    watch(proc, poll)
    seen.update((shims / "names.log").read_text().split())
    if secret in (shims / "proc.log").read_bytes():
        leaks.append(("a shim", "mariadb, mariadb-dump or zstd", "cmdline or environ"))
    assert (proc.returncode, {"mariadb", "mariadb-dump", "zstd"} <= seen, leaks) == (0, True, []), seen


def _defaults_path(proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for pid, name in running_children(proc.pid):
            m = re.search(rb"--defaults-file=([^\0]+)", read_proc(str(pid), "cmdline"))
            if m and name == "mariadb-dump":
                return m.group(1).decode()
        time.sleep(0.01)
    raise AssertionError("mariadb-dump did not start")


def test_option_file_is_private_while_the_dump_runs(mariadb_server, dump_bucket, password_parameter, big_database):
    proc = start_dump(dump_bucket, mariadb_server.socket, big_database)
    path = _defaults_path(proc)
    modes = (stat.S_IMODE(os.stat(path).st_mode), stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode))
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert modes == (0o600, 0o700)


def _option_dirs(pid: int) -> list[str]:
    """Option-file directories the script with this pid left behind (named quickport-dump-<pid>-*)."""
    import tempfile
    roots = ["/dev/shm"] if os.path.isdir("/dev/shm") else [tempfile.gettempdir()]
    return [n for root in roots for n in os.listdir(root) if n.startswith(f"quickport-dump-{pid}-")]


def test_option_file_is_removed_after_success(mariadb_server, dump_bucket, password_parameter, tiny_database):
    proc = start_dump(dump_bucket, mariadb_server.socket, tiny_database)
    proc.communicate(timeout=120)
    assert (proc.returncode, _option_dirs(proc.pid)) == (0, [])


def test_option_file_is_removed_after_a_failure(mariadb_server, dump_bucket, password_parameter, tiny_database):
    proc = subprocess.Popen([sys.executable, SCRIPT, "db", "--database", tiny_database, "--bucket", "qp-missing",
                             "--prefix", "mysql", "--password-parameter", PARAMETER, "--socket",
                             mariadb_server.socket], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.communicate(timeout=120)
    assert (proc.returncode, _option_dirs(proc.pid)) == (1, [])


def test_option_file_is_removed_when_the_script_is_terminated(mariadb_server, dump_bucket, password_parameter,
                                                             big_database):
    proc = start_dump(dump_bucket, mariadb_server.socket, big_database)
    path = _defaults_path(proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert (proc.returncode, os.path.exists(path)) == (1, False)


@pytest.fixture
def tiny_database(mariadb_server) -> str:
    mariadb_server.sql("CREATE DATABASE IF NOT EXISTS crm_tiny; CREATE TABLE IF NOT EXISTS crm_tiny.t (id INT);"
                       "GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON crm_tiny.* TO 'backup'@'localhost';")
    return "crm_tiny"


def test_password_with_quotes_backslashes_and_hash_authenticates(mariadb_server, dump_bucket, password_parameter,
                                                                tiny_database):
    # BACKUP_PASSWORD holds " ' \\ # $( ) ` ; -- : the option file must quote it exactly.
    proc = start_dump(dump_bucket, mariadb_server.socket, tiny_database)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
