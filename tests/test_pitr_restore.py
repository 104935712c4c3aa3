"""db-restore to a second: a real dump (the agent), the server's real binlog files in S3 (moto), the
real mariadb-binlog and mariadb replaying them into a new database on a real server."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import boto3
import pytest
import yaml

from components.config import REPO_ROOT
from scripts.agent import quickport_dump
from tests.fixtures.binlog_chain import Session, Shipper, restart, stop, wait_for_next_second, z
from tests.fixtures.cli import LAUNCHER
from tests.fixtures.mariadb import BACKUP_PASSWORD, add_large_table, running_mariadb, seed_database

SOURCE, TARGET = "pitr_src", "pitr_dst"
TABLES = ("attachments", "audit log", "customers", "empty_table", "invoices")


def dump(db, bucket, tmp_path) -> dict:
    defaults = db.defaults_file("backup", BACKUP_PASSWORD, tmp_path / "backup")
    return quickport_dump.dump_database(database=SOURCE, bucket=bucket, prefix="mysql", defaults_file=defaults)


def rows(db, database: str, tables=TABLES) -> dict:
    """Every row of every table, as the server returns them (the state to compare)."""
    return {t: db.sql(f"SELECT * FROM `{t}` ORDER BY 1", database) for t in tables}


def exists(db, name: str) -> bool:
    return bool(db.sql(f"SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{name}'"))


@pytest.fixture
def source(binlog_server):
    binlog_server.drop_databases(SOURCE, TARGET)
    seed_database(binlog_server, SOURCE)
    yield binlog_server
    binlog_server.drop_databases(SOURCE, TARGET)


@pytest.fixture
def restore(backupctl, dump_bucket, tmp_path):
    def run(db, *args):
        return backupctl("db-restore", "--bucket", dump_bucket, "--prefix", "mysql", "--binlog-prefix", "binlog",
                         "--database", SOURCE, "--defaults-file", db.root_defaults,
                         "--log-file", str(tmp_path / "ops.jsonl"), *args)
    return run


def shipped(db, bucket, tmp_path) -> tuple[dict, Shipper]:
    """A dump, one change after it, and the binlogs shipped: the dump's manifest and the shipper."""
    manifest = dump(db, bucket, tmp_path)
    db.sql("INSERT INTO customers (name) VALUES ('x');", SOURCE)
    shipper = Shipper(db, bucket, tmp_path / "ship-state")
    shipper.ship()
    return manifest, shipper


def changes_before_and_after(db):
    """Inserts, updates, deletes and DDL after the dump through second T; more of each after T. T."""
    db.sql("INSERT INTO customers (name, balance) VALUES ('after dump', 1);"
           "UPDATE customers SET balance = balance + 100 WHERE id = 2;"
           "DELETE FROM invoices WHERE id <= 10;"
           "ALTER TABLE customers ADD COLUMN tier VARCHAR(10) NULL;"
           "UPDATE customers SET tier = 'gold' WHERE id = 1;", SOURCE)
    t = wait_for_next_second()
    db.sql("INSERT INTO customers (name, balance, tier) VALUES ('at T', 2, 'new');", SOURCE)
    expected = rows(db, SOURCE)
    gtid = db.sql("SELECT @@gtid_binlog_pos")[0][0]
    wait_for_next_second()
    db.sql("INSERT INTO customers (name, balance) VALUES ('after T', 3);"
           "UPDATE customers SET balance = 0;"
           "DELETE FROM invoices WHERE id <= 100;"
           "ALTER TABLE customers DROP COLUMN tier;", SOURCE)
    return t, expected, gtid


def test_restore_to_a_second_has_every_change_through_it_and_none_after(source, dump_bucket, tmp_path, restore):
    dump(source, dump_bucket, tmp_path)
    t, expected, gtid = changes_before_and_after(source)
    Shipper(source, dump_bucket, tmp_path / "ship-state").ship()
    result = restore(source, "--to-time", z(t), "--target-database", TARGET, "--json")
    assert result.code == 0, result.err
    report = result.json()
    assert (result.code, rows(source, TARGET), report["restored_to"], report["last_transaction"]["gtid"]) == \
        (0, expected, z(t), gtid)
    assert report["tables"] == {name: len(r) for name, r in expected.items()}


def test_a_transaction_committed_in_second_t_is_applied_and_one_committed_after_it_is_not(
        source, dump_bucket, tmp_path, restore):
    dump(source, dump_bucket, tmp_path)
    wait_for_next_second()
    early, late = Session(source, SOURCE), Session(source, SOURCE)
    early.run("BEGIN; INSERT INTO `audit log` (message) VALUES ('early 1');")
    late.run("BEGIN; INSERT INTO `audit log` (message) VALUES ('late 1');")
    t = wait_for_next_second()
    early.run("INSERT INTO `audit log` (message) VALUES ('early 2'); COMMIT;")   # spans into second T
    wait_for_next_second()
    late.run("INSERT INTO `audit log` (message) VALUES ('late 2'); COMMIT;")     # began before T, commits after
    early.close()
    late.close()
    Shipper(source, dump_bucket, tmp_path / "ship-state").ship()
    assert restore(source, "--to-time", z(t), "--target-database", TARGET).code == 0
    assert [r[1] for r in source.sql("SELECT * FROM `audit log` ORDER BY id", TARGET)] == ["early 1", "early 2"]


def test_latest_restores_through_the_newest_shipped_transaction(source, dump_bucket, tmp_path, restore):
    dump(source, dump_bucket, tmp_path)
    source.sql("INSERT INTO customers (name) VALUES ('last one');", SOURCE)
    expected = rows(source, SOURCE)
    Shipper(source, dump_bucket, tmp_path / "ship-state").ship()
    result = restore(source, "--latest", "--target-database", TARGET, "--json")
    assert (result.code, rows(source, TARGET), result.json()["last_transaction"]["gtid"]) == \
        (0, expected, source.sql("SELECT @@gtid_binlog_pos")[0][0])


def test_the_restore_writes_nothing_to_the_target_servers_binlog(source, dump_bucket, tmp_path, restore):
    shipped(source, dump_bucket, tmp_path)
    before = source.sql("SELECT @@gtid_binlog_pos")[0][0]
    assert restore(source, "--latest", "--target-database", TARGET).code == 0
    assert (source.sql("SELECT @@gtid_binlog_pos")[0][0], exists(source, TARGET)) == (before, True)


def test_a_rotation_and_a_server_restart_in_the_window_are_replayed(dump_bucket, tmp_path, restore):
    with running_mariadb(binlog=True, server_id=7) as db:
        seed_database(db, SOURCE)
        dump(db, dump_bucket, tmp_path)
        db.sql("INSERT INTO customers (name) VALUES ('before rotation'); FLUSH BINARY LOGS;"
               "INSERT INTO customers (name) VALUES ('after rotation');", SOURCE)
        server = restart(db)
        try:
            db.sql("UPDATE customers SET note = 'after restart' WHERE name = 'after rotation';", SOURCE)
            expected = rows(db, SOURCE)
            shipper = Shipper(db, dump_bucket, tmp_path / "ship-state")
            shipper.ship()
            result = restore(db, "--latest", "--target-database", TARGET, "--json")
            assert result.code == 0, result.err
            # the dump's file, the one rotated to (closed by the restart), the one the restarted server wrote
            assert (len(result.json()["plan"]["segments"]), rows(db, TARGET)) == (3, expected)
        finally:
            stop(server)


def test_a_binlog_purged_before_it_was_shipped_is_refused_with_the_latest_restorable_time(
        dump_bucket, tmp_path, restore):
    with running_mariadb(binlog=True, server_id=8) as db:
        seed_database(db, SOURCE)
        dump(db, dump_bucket, tmp_path)
        db.sql("INSERT INTO customers (name) VALUES ('shipped');", SOURCE)
        shipper = Shipper(db, dump_bucket, tmp_path / "ship-state")
        shipper.ship()
        chain = shipper.index
        last_shipped = chain["segments"][-1]
        latest = max(chain["confirmed_at"], *(s["last_event_at"] for s in chain["segments"] if s["last_event_at"]))
        wait_for_next_second()
        db.sql("INSERT INTO customers (name) VALUES ('lost'); FLUSH BINARY LOGS;", SOURCE)
        [[current, *_]] = db.sql("SHOW MASTER STATUS")
        deadline = time.monotonic() + 30
        while db.sql("SHOW BINARY LOGS")[0][0] != current:   # the server keeps a file until its checkpoint
            assert time.monotonic() < deadline, db.sql("SHOW BINARY LOGS")
            db.sql(f"PURGE BINARY LOGS TO '{current}'")
            time.sleep(0.2)
        t = wait_for_next_second()
        db.sql("INSERT INTO customers (name) VALUES ('new chain');", SOURCE)
        assert shipper.ship(gap=True)["gap"]["reason"] == "purged before shipped"
        purged = f"mariadb-bin.{int(last_shipped['file'].rsplit('.', 1)[1]) + 1:06d}"
        result = restore(db, "--to-time", z(t), "--target-database", TARGET)
        assert (result.code, exists(db, TARGET)) == (1, False), result.err + str(shipper.index)
        assert f"segment {purged} of chain" in result.err and f"latest time it can restore to is {latest}" in result.err
        assert "purged before shipped" in result.err


def files_after_the_dump(db, bucket, tmp_path, **shipper_args) -> tuple[dict, Shipper, list[dict]]:
    """A dump, then three binlog files closed a second apart (a row each), shipped: the dump's manifest,
    the shipper and the segment entries from the dump's file on (the dump's file and the three)."""
    manifest = dump(db, bucket, tmp_path)
    for n in range(3):
        wait_for_next_second()
        db.sql(f"INSERT INTO customers (name) VALUES ('file {n}'); FLUSH BINARY LOGS;", SOURCE)
    shipper = Shipper(db, bucket, tmp_path / "ship-state", **shipper_args)
    shipper.ship()
    files = [s["file"] for s in shipper.segments()]
    return manifest, shipper, shipper.segments()[files.index(manifest["binlog"]["file"]):]


def test_a_hole_without_a_gap_record_names_the_end_of_the_run_before_it(source, dump_bucket, tmp_path, restore):
    """A segment the index lost (no gap record: the chain is not closed): a time beyond the chain is
    refused with the last second before the hole, not the chain's end."""
    _, shipper, after = files_after_the_dump(source, dump_bucket, tmp_path)
    index = shipper.index
    shipper.write_index({**index, "segments": [s for s in index["segments"] if s["file"] != after[1]["file"]]})
    result = restore(source, "--to-time", "2099-01-01T00:00:00Z", "--target-database", TARGET)
    assert (result.code, exists(source, TARGET)) == (1, False)
    assert f"segment {after[1]['file']} of chain" in result.err, result.err
    assert f"the latest time it can restore to is {after[0]['last_event_at']}" in result.err, result.err


def test_a_hole_before_the_dump_finished_names_no_time_it_cannot_reach(source, dump_bucket, tmp_path, restore):
    """A dump that ran past the end of its own binlog file (long dumps do) and a hole right after that
    file: the dump's finish is not reachable, so it is not offered as the latest restorable time."""
    manifest, shipper, after = files_after_the_dump(source, dump_bucket, tmp_path)
    s3 = boto3.client("s3")
    long_dump = {**manifest, "finished_at": after[1]["last_event_at"]}   # it finished in the next file
    s3.put_object(Bucket=dump_bucket, Key=quickport_dump.manifest_key_for(manifest["key"]),
                  Body=json.dumps(long_dump).encode(), ChecksumAlgorithm="CRC32")
    index = shipper.index
    shipper.write_index({**index, "segments": [s for s in index["segments"] if s["file"] != after[1]["file"]]})
    result = restore(source, "--to-time", "2099-01-01T00:00:00Z", "--target-database", TARGET)
    assert (result.code, exists(source, TARGET)) == (1, False)
    assert f"segment {after[1]['file']} of chain" in result.err, result.err
    assert "the latest time it can restore to" not in result.err, result.err
    assert f"finished at {long_dump['finished_at']}" in result.err and "no time from it" in result.err


def test_a_listed_segment_missing_from_the_bucket_is_refused_with_the_latest_restorable_time(
        source, dump_bucket, tmp_path, restore):
    manifest, _, after = files_after_the_dump(source, dump_bucket, tmp_path)
    boto3.client("s3").delete_object(Bucket=dump_bucket, Key=after[2]["key"])
    result = restore(source, "--latest", "--target-database", TARGET)
    assert (result.code, exists(source, TARGET)) == (1, False)
    assert f"segment {after[2]['file']} of chain" in result.err and "404: Not Found" in result.err, result.err
    latest = max(after[1]["last_event_at"], manifest["finished_at"])
    assert f"the latest time it can restore to is {latest}" in result.err, result.err


def test_the_dumps_own_segment_missing_from_the_bucket_names_no_time_it_cannot_reach(
        source, dump_bucket, tmp_path, restore):
    manifest, _, after = files_after_the_dump(source, dump_bucket, tmp_path)
    boto3.client("s3").delete_object(Bucket=dump_bucket, Key=after[0]["key"])
    result = restore(source, "--latest", "--target-database", TARGET)
    assert (result.code, exists(source, TARGET)) == (1, False)
    assert f"segment {after[0]['file']} of chain" in result.err, result.err
    assert "the latest time it can restore to" not in result.err, result.err   # not the dump's finish
    assert f"finished at {manifest['finished_at']}" in result.err and "no time from it" in result.err


def test_a_chain_in_several_index_pages_is_replayed_across_them(source, dump_bucket, tmp_path, restore):
    manifest, shipper, after = files_after_the_dump(source, dump_bucket, tmp_path, page_segments=2)
    for n in range(2):   # two more files: at least six in the chain, two pages sealed
        source.sql(f"INSERT INTO customers (name) VALUES ('more {n}'); FLUSH BINARY LOGS;", SOURCE)
    t, expected, gtid = changes_before_and_after(source)
    shipper.ship()
    head = shipper.index
    files = [s["file"] for s in shipper.segments()]
    assert head["pages"] >= 2 and manifest["binlog"]["file"] not in [s["file"] for s in head["segments"]]
    result = restore(source, "--to-time", z(t), "--target-database", TARGET, "--json")
    assert result.code == 0, result.err
    report = result.json()
    assert (rows(source, TARGET), report["restored_to"], report["last_transaction"]["gtid"]) == (expected, z(t), gtid)
    planned = [s["file"] for s in report["plan"]["segments"]]
    assert planned == files[files.index(manifest["binlog"]["file"]):files.index(planned[-1]) + 1]
    assert len(planned) >= len(after) + 3   # the dump's file, the three and two more (in pages), and T's


def test_a_missing_index_page_is_refused_naming_it(source, dump_bucket, tmp_path, restore):
    _, shipper, _ = files_after_the_dump(source, dump_bucket, tmp_path, page_segments=2)
    chain = shipper.chains()[-1]
    key = f"binlog/{chain}/index/00000.json"
    boto3.client("s3").delete_object(Bucket=dump_bucket, Key=key)
    result = restore(source, "--latest", "--target-database", TARGET)
    assert (result.code, exists(source, TARGET)) == (1, False)
    assert f"s3://{dump_bucket}/{key} is missing: page 0 of chain {chain}" in result.err, result.err


def test_a_damaged_segment_is_refused_before_the_target_exists(source, dump_bucket, tmp_path, restore):
    _, shipper = shipped(source, dump_bucket, tmp_path)
    segment = shipper.index["segments"][-1]
    s3 = boto3.client("s3")
    body = bytearray(s3.get_object(Bucket=dump_bucket, Key=segment["key"])["Body"].read())
    body[len(body) // 2] ^= 0xFF
    shipper.put(segment["key"], bytes(body), "application/octet-stream")
    result = restore(source, "--latest", "--target-database", TARGET)
    assert (result.code, exists(source, TARGET)) == (1, False)
    assert f"segment {segment['file']}" in result.err and "does not match" in result.err


def test_a_failing_replay_leaves_nothing_named_target(source, dump_bucket, tmp_path, restore):
    _, shipper = shipped(source, dump_bucket, tmp_path)
    # A truncated file whose manifest and index agree with it: the hash passes, mariadb-binlog fails.
    index = shipper.index
    entry = dict(index["segments"][-1])
    body = (source.base / "data" / entry["file"]).read_bytes()[:-40]
    entry.update(bytes=len(body), sha256=hashlib.sha256(body).hexdigest())
    shipper.put(entry["key"], body, "application/octet-stream")
    shipper.write_index({**index, "segments": [*index["segments"][:-1], entry]})
    result = restore(source, "--latest", "--target-database", TARGET)
    assert (result.code, exists(source, TARGET), f"nothing was left named {TARGET}" in result.err) == (1, False, True)


def test_a_time_before_the_first_dump_is_refused(source, dump_bucket, tmp_path, restore):
    manifest = dump(source, dump_bucket, tmp_path)
    Shipper(source, dump_bucket, tmp_path / "ship-state").ship()
    result = restore(source, "--to-time", "2020-01-01T00:00:00Z", "--target-database", TARGET)
    assert (result.code, exists(source, TARGET)) == (1, False)
    assert f"before the first dump of {SOURCE}, which finished at {manifest['finished_at']}" in result.err


def test_a_time_after_the_last_shipped_point_is_refused(source, dump_bucket, tmp_path, restore):
    dump(source, dump_bucket, tmp_path)
    Shipper(source, dump_bucket, tmp_path / "ship-state").ship()
    result = restore(source, "--to-time", "2099-01-01T00:00:00Z", "--target-database", TARGET)
    assert (result.code, "the latest time it can restore to is 20" in result.err) == (1, True)


def test_an_existing_target_is_refused_and_left_untouched(source, dump_bucket, tmp_path, restore):
    dump(source, dump_bucket, tmp_path)
    Shipper(source, dump_bucket, tmp_path / "ship-state").ship()
    source.sql(f"CREATE DATABASE {TARGET}; CREATE TABLE {TARGET}.keep (id INT); INSERT INTO {TARGET}.keep VALUES (1);")
    result = restore(source, "--latest", "--target-database", TARGET)
    assert (result.code, source.sql(f"SELECT * FROM {TARGET}.keep")) == (2, [["1"]])
    assert "--replace" in result.err


def test_replace_rebuilds_an_existing_target(source, dump_bucket, tmp_path, restore):
    dump(source, dump_bucket, tmp_path)
    Shipper(source, dump_bucket, tmp_path / "ship-state").ship()
    source.sql(f"CREATE DATABASE {TARGET}; CREATE TABLE {TARGET}.stale (id INT);")
    result = restore(source, "--latest", "--target-database", TARGET, "--replace", "--json")
    tables = sorted(r[0] for r in source.sql(f"SHOW FULL TABLES IN {TARGET} WHERE Table_type = 'BASE TABLE'"))
    assert (result.code, result.json()["replaced"], tables) == (0, True, sorted(TABLES))


def test_dry_run_prints_the_plan_from_s3_alone_and_changes_nothing(source, dump_bucket, tmp_path, restore):
    manifest, shipper = shipped(source, dump_bucket, tmp_path)
    gone = tmp_path / "gone.cnf"   # the source server is gone: a client option file reaching nothing
    gone.write_text(f"[client]\nsocket={tmp_path / 'no.sock'}\n")
    result = restore(source, "--latest", "--target-database", TARGET, "--dry-run", "--json",
                     "--defaults-file", str(gone))
    plan = result.json()["plan"]
    files = [s["file"] for s in shipper.segments()]
    assert (result.code, plan["dump"]["key"], plan["start_position"], exists(source, TARGET)) == \
        (0, manifest["key"], manifest["binlog"]["position"], False)
    assert [s["file"] for s in plan["segments"]] == files[files.index(manifest["binlog"]["file"]):]
    assert plan["estimated_seconds"] > 0


def test_bad_input_is_one_line_and_exit_2(source, dump_bucket, restore):
    bad_time = restore(source, "--to-time", "2026-12-02 14:32", "--target-database", TARGET)
    same = restore(source, "--latest", "--target-database", SOURCE)
    assert (bad_time.code, same.code) == (2, 2)
    assert "--to-time '2026-12-02 14:32': must be a UTC time YYYY-MM-DDTHH:MM:SSZ" in bad_time.err
    assert "must differ from --database" in same.err


def test_ctrl_c_during_the_restore_leaves_nothing_named_target(source, dump_bucket, tmp_path):
    add_large_table(source, SOURCE, 24)
    dump(source, dump_bucket, tmp_path)
    Shipper(source, dump_bucket, tmp_path / "ship-state").ship()
    proc = subprocess.Popen([sys.executable, str(LAUNCHER), "db-restore", "--latest", "--bucket", dump_bucket,
                             "--prefix", "mysql", "--binlog-prefix", "binlog", "--database", SOURCE,
                             "--target-database", TARGET, "--defaults-file", source.root_defaults,
                             "--log-file", str(tmp_path / "ops.jsonl")],
                            env={**os.environ, "QUICKPORT_NO_VENV": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not exists(source, TARGET) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert (proc.returncode, exists(source, TARGET)) == (130, False), err


def test_drill_pitr_reports_the_rpo_and_fails_above_the_bound(source, backupctl, dump_bucket, tmp_path):
    doc = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())
    doc["config"]["quickport-backup:binlog"].update(intervalSeconds=5, rpoBoundSeconds=5)
    config = tmp_path / "Pulumi.prod.yaml"
    config.write_text(yaml.safe_dump(doc))
    shipped(source, dump_bucket, tmp_path)

    def drill():
        return backupctl("db-restore-drill", "--pitr", "--latest", "--bucket", dump_bucket, "--prefix", "mysql",
                         "--database", SOURCE, "--target-database", TARGET, "--defaults-file", source.root_defaults,
                         "--config-file", str(config), "--log-file", str(tmp_path / "ops.jsonl"), "--json")
    fresh = drill()
    time.sleep(6)
    stale = drill()
    assert (fresh.code, fresh.json()["ok"], stale.code, stale.json()["rpo_seconds"] > 5, exists(source, TARGET)) == \
        (0, True, 1, True, False)
    assert json.loads(fresh.out)["rpo_seconds"] <= 5


def test_a_damaged_newest_dump_falls_back_to_the_older_one_and_replays_more(source, dump_bucket, tmp_path, restore):
    older = dump(source, dump_bucket, tmp_path)
    source.sql("INSERT INTO customers (name) VALUES ('between the dumps');", SOURCE)
    time.sleep(1.1)   # dump keys are per second
    newest = dump(source, dump_bucket, tmp_path)
    source.sql("INSERT INTO customers (name) VALUES ('after both');", SOURCE)
    expected = rows(source, SOURCE)
    Shipper(source, dump_bucket, tmp_path / "ship-state").ship()
    boto3.client("s3").put_object(Bucket=dump_bucket, Key=newest["key"], Body=b"not the dump")
    result = restore(source, "--latest", "--target-database", TARGET, "--json")
    assert result.code == 0, result.err
    assert (result.json()["plan"]["dump"]["key"], rows(source, TARGET)) == (older["key"], expected)


def test_the_password_can_come_from_an_ssm_parameter_and_never_reaches_output_or_log(
        source, dump_bucket, tmp_path, backupctl):
    dump(source, dump_bucket, tmp_path)
    Shipper(source, dump_bucket, tmp_path / "ship-state").ship()
    password = "R3st0re 'pw' \"x\" $(id)"
    escaped = password.replace("\\", "\\\\").replace("'", "\\'")
    source.sql(f"CREATE OR REPLACE USER 'restorer'@'localhost' IDENTIFIED BY '{escaped}';"
               f"GRANT ALL PRIVILEGES ON *.* TO 'restorer'@'localhost';")
    boto3.client("ssm").put_parameter(Name="/quickport/test/restore-password", Value=password, Type="SecureString")
    try:
        result = backupctl("db-restore", "--latest", "--bucket", dump_bucket, "--prefix", "mysql",
                           "--binlog-prefix", "binlog", "--database", SOURCE, "--target-database", TARGET,
                           "--password-parameter", "/quickport/test/restore-password", "--user", "restorer",
                           "--socket", source.socket, "--log-file", str(tmp_path / "ops.jsonl"))
        assert (result.code, exists(source, TARGET), password in result.out + result.err +
                (tmp_path / "ops.jsonl").read_text()) == (0, True, False), result.err
    finally:
        source.sql("DROP USER 'restorer'@'localhost'")


def test_an_idle_database_after_the_dump_restores_from_the_dump_alone(source, dump_bucket, tmp_path, restore):
    shipper = Shipper(source, dump_bucket, tmp_path / "ship-state")
    shipper.ship()                      # the seed shipped; the file now open holds no transaction
    manifest = dump(source, dump_bucket, tmp_path)
    expected = rows(source, SOURCE)
    time.sleep(1.1)
    shipper.ship()                      # nothing to flush: only the confirmed point moves on
    index = shipper.index
    result = restore(source, "--latest", "--target-database", TARGET, "--json")
    assert result.code == 0, result.err
    report = result.json()
    assert (index["confirmed_file"], report["plan"]["segments"], rows(source, TARGET), report["restored_to"]) == \
        (manifest["binlog"]["file"], [], expected, index["confirmed_at"])
