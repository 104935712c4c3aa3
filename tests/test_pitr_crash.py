"""The crash test: a row every 50 ms into a real server while the real shipper
(scripts/agent/binlog_ship.py --follow --interval 5) runs; the server and the shipper killed together
(SIGKILL) and the data directory deleted; a fresh server rebuilt by `db-restore --latest` from S3 alone.
Every recovered row was committed, the ids have no hole, and the data lost is at most interval + 10 s."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time

from scripts.agent import quickport_dump
from tests.fixtures.binlog_chain import SHIPPER, Session, server_pid
from tests.fixtures.mariadb import BACKUP_PASSWORD, grant_backup, running_mariadb

INTERVAL = 5
SOURCE, TARGET = "crash_src", "crash_dst"


def test_a_server_lost_mid_write_is_rebuilt_from_s3_with_no_hole_and_a_bounded_loss(
        dump_bucket, backupctl, tmp_path):
    with running_mariadb(binlog=True, server_id=3) as source:
        source.sql(f"CREATE DATABASE {SOURCE}; CREATE TABLE {SOURCE}.ticks "
                   f"(id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(3) NOT NULL) ENGINE=InnoDB;")
        grant_backup(source, SOURCE)
        quickport_dump.dump_database(database=SOURCE, bucket=dump_bucket, prefix="mysql",
                                     defaults_file=source.defaults_file("backup", BACKUP_PASSWORD, tmp_path))
        shipper_log = open(tmp_path / "shipper.log", "wb")
        shipper = subprocess.Popen(
            [sys.executable, str(SHIPPER), "--follow", "--interval", str(INTERVAL), "--bucket", dump_bucket,
             "--prefix", "binlog", "--defaults-file", source.root_defaults, "--state-dir", str(tmp_path / "state")],
            stdout=shipper_log, stderr=subprocess.STDOUT)
        try:
            writer = Session(source, SOURCE)
            acknowledged, started = 0, time.monotonic()
            while time.monotonic() - started < 3 * INTERVAL + 2:
                writer.run("INSERT INTO ticks (at) VALUES (UTC_TIMESTAMP(3));")   # returns once committed
                acknowledged += 1
                time.sleep(0.05)
            os.kill(server_pid(source), signal.SIGKILL)
            shipper.kill()
            killed_at = dt.datetime.now(dt.timezone.utc)
        finally:
            if shipper.poll() is None:
                shipper.kill()
            shipper.wait(timeout=30)
            shipper_log.close()
        writer.proc.kill()
        writer.proc.wait(timeout=30)
        shutil.rmtree(source.base / "data")
    with running_mariadb(binlog=True, server_id=4) as fresh:
        result = backupctl("db-restore", "--latest", "--bucket", dump_bucket, "--prefix", "mysql",
                           "--binlog-prefix", "binlog", "--database", SOURCE, "--target-database", TARGET,
                           "--defaults-file", fresh.root_defaults, "--log-file", str(tmp_path / "ops.jsonl"),
                           "--json")
        assert result.code == 0, result.err + (tmp_path / "shipper.log").read_text()[-2000:]
        ids = [int(r[0]) for r in fresh.sql("SELECT id FROM ticks ORDER BY id", TARGET)]
        [[last_at]] = fresh.sql("SELECT DATE_FORMAT(MAX(at), '%Y-%m-%dT%H:%i:%s.%fZ') FROM ticks", TARGET)
    report = result.json()
    lost = (killed_at - dt.datetime.fromisoformat(last_at.replace("Z", "+00:00"))).total_seconds()
    waited = (dt.datetime.fromisoformat(report["planned_at"].replace("Z", "+00:00")) - killed_at).total_seconds()
    print(f"crash test: {len(ids)} of {acknowledged} committed rows recovered; data lost {lost:.1f} s; "
          f"reported RPO {report['rpo_seconds']} s ({waited:.1f} s of it after the crash)")
    assert ids == list(range(1, len(ids) + 1)) and 0 < len(ids) <= acknowledged
    assert lost <= INTERVAL + 10
    assert report["rpo_seconds"] <= INTERVAL + 10 + waited + 1   # planned_at is whole seconds
