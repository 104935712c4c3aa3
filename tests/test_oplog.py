"""The operations log is private (0600 file in a 0700 directory, tightened when it exists wider) and
never stores secrets from the argv `guard` runs; every started operation ends exactly once."""
from __future__ import annotations

import os
import stat
import sys

import pytest

from scripts import oplog

SECRET = "hunter2-s3cr3t"


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_default_log_is_0600_in_a_0700_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    old = os.umask(0o022)
    try:
        assert oplog.append(None, "list", "list", count=0)
    finally:
        os.umask(old)

    path = oplog.default_log_file()
    assert (_mode(path), _mode(path.parent)) == (0o600, 0o700)


def test_an_existing_world_readable_log_and_directory_are_tightened(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    path = oplog.default_log_file()
    path.parent.mkdir(parents=True)
    path.write_text("")
    os.chmod(path.parent, 0o755)
    os.chmod(path, 0o644)

    oplog.append(None, "list", "list", count=0)

    assert (_mode(path), _mode(path.parent)) == (0o600, 0o700)


def test_a_log_file_given_in_a_new_directory_gets_a_0700_directory(tmp_path):
    path = tmp_path / "new" / "ops.jsonl"

    oplog.append(path, "list", "list")

    assert (_mode(path), _mode(path.parent)) == (0o600, 0o700)


@pytest.mark.parametrize("arg, shown", [
    (f"--password={SECRET}", "--password=***"),
    (f"--db-password={SECRET}", "--db-password=***"),
    (f"-p{SECRET}", "-p***"),
    (f"MYSQL_PASSWORD={SECRET}", "MYSQL_PASSWORD=***"),
    (f"aws_secret_access_key={SECRET}", "aws_secret_access_key=***"),
    (f"GITHUB_TOKEN={SECRET}", "GITHUB_TOKEN=***"),
    (f"--api-token={SECRET}", "--api-token=***"),
])
def test_secret_looking_arguments_are_masked(arg, shown):
    assert oplog.mask_argv(["mariadb", arg, "quickport"]) == ["mariadb", shown, "quickport"]


def test_the_value_after_a_bare_password_option_is_masked():
    assert oplog.mask_argv(["tool", "--password", SECRET, "x"]) == ["tool", "--password", "***", "x"]


def test_ordinary_arguments_are_kept():
    argv = ["sudo", "dnf", "upgrade", "-y", "php", "--setopt=tsflags=nodocs", "PATH=/usr/bin"]
    assert oplog.mask_argv(argv) == argv


def test_guard_logs_the_argv_with_its_secrets_masked(prod_instance, backupctl):
    result = backupctl("guard", "--action", "php-upgrade", *prod_instance.common_args(), "--",
                       sys.executable, "-c", "pass", f"--password={SECRET}", f"-p{SECRET}",
                       f"DB_PASSWORD={SECRET}")

    assert result.code == 0, result.err
    text = prod_instance.log_file.read_text()
    assert SECRET not in text and SECRET not in result.err
    started = [e for e in prod_instance.log_lines() if e["event"] == "guard-command-started"]
    assert started[0]["argv"][-3:] == ["--password=***", "-p***", "DB_PASSWORD=***"]


def test_an_operation_ends_exactly_once_whatever_happens():
    lines: list[str] = []

    def log(event, **_):
        lines.append(event)
        return True

    with oplog.operation(log, "x") as op:
        op.end("succeeded")
    with pytest.raises(KeyboardInterrupt), oplog.operation(log, "y"):
        raise KeyboardInterrupt
    with pytest.raises(ValueError), oplog.operation(log, "z"):
        raise ValueError("boom")

    assert lines == ["x-started", "x-succeeded", "y-started", "y-interrupted", "z-started", "z-failed"]
