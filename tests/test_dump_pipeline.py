"""The dump pipeline's shape on a live dump: the compressor reads mariadb-dump's pipe itself (no Python
in the raw path), and every child runs at the configured CPU and I/O priority (real processes, /proc)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.agent import quickport_dump
from tests.fixtures.mariadb import running_children

SCRIPT = str(Path(quickport_dump.__file__))


def live_pipeline(bucket: str, defaults: str, database: str, *extra: str):
    """Start a dump of `database` and return (process, {child name: pid}) once dump and compressor run."""
    proc = subprocess.Popen([sys.executable, SCRIPT, "db", "--database", database, "--bucket", bucket,
                             "--prefix", "mysql", "--defaults-file", defaults, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        children = {name: pid for pid, name in running_children(proc.pid)}
        if {"mariadb-dump", "zstd"} <= set(children):
            return proc, children
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("the dump pipeline did not start")


def open_files(pid: int) -> set[str]:
    """What the process' descriptors point at; one closed while we look is skipped (the agent opens and
    closes sockets and pipes all the time)."""
    targets = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            continue
    return targets


def compressor_of(proc_pid: int) -> int:
    """The zstd that reads a pipe which is not this process' (the tail check reads from us). Looked for
    until the agent has handed the dump's pipe over (it reads the header from it first)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ours = open_files(proc_pid)
        for pid, name in running_children(proc_pid):
            try:
                if name == "zstd" and os.readlink(f"/proc/{pid}/fd/0") not in ours:
                    return pid
            except FileNotFoundError:   # a short-lived zstd (the header's frame) already gone
                continue
        time.sleep(0.01)
    raise AssertionError("no compressor reading a foreign pipe")


def nice_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])


def ionice_of(pid: int) -> str:
    return subprocess.run(["ionice", "-p", str(pid)], capture_output=True, text=True, check=True).stdout.strip()


def finish(proc) -> None:
    """SIGTERM, as an SSM timeout sends: the agent kills its children and aborts the upload."""
    proc.terminate()
    proc.communicate(timeout=60)


def test_the_compressor_reads_the_dumps_own_pipe(mariadb_server, dump_bucket, backup_defaults, big_database):
    proc, children = live_pipeline(dump_bucket, backup_defaults, big_database)
    try:
        dump_out = os.readlink(f"/proc/{children['mariadb-dump']}/fd/1")
        assert os.readlink(f"/proc/{compressor_of(proc.pid)}/fd/0") == dump_out
        assert dump_out not in open_files(proc.pid)
    finally:
        finish(proc)


@pytest.mark.parametrize("priority, nice, io", [
    ("low", 10, "best-effort: prio 7"), ("idle", 19, "idle"), ("normal", 0, None)])
def test_the_pipeline_runs_at_the_requested_priority(mariadb_server, dump_bucket, backup_defaults, big_database,
                                                     priority, nice, io):
    proc, children = live_pipeline(dump_bucket, backup_defaults, big_database, "--priority", priority)
    try:
        pids = (children["mariadb-dump"], compressor_of(proc.pid))
        assert [nice_of(pid) for pid in pids] == [nice, nice]
        if io:
            assert [ionice_of(pid) for pid in pids] == [io, io]
    finally:
        finish(proc)


def test_low_is_the_default_priority():
    assert quickport_dump.build_parser().parse_args(
        ["db", "--database", "d", "--bucket", "qp-b", "--prefix", "mysql", "--defaults-file", "/x"]).priority == "low"
