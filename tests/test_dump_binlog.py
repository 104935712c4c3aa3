"""The dump manifest's binlog coordinates: where point-in-time replay starts (real MariaDB with binary
logs, the least-privileged backup user, moto server)."""
from __future__ import annotations

import os
import subprocess

import boto3
import pytest

from scripts.agent import quickport_dump
from tests.fixtures.mariadb import BACKUP_PASSWORD, seed_database

SOURCE = "crm_binlog"


@pytest.fixture
def binlog_defaults(binlog_server, tmp_path) -> str:
    return binlog_server.defaults_file("backup", BACKUP_PASSWORD, tmp_path)


def dump(bucket: str, defaults: str) -> dict:
    return quickport_dump.dump_database(database=SOURCE, bucket=bucket, prefix="mysql", defaults_file=defaults)


def binlog_gtids_from(server, file: str, position: int) -> list[str]:
    """GTIDs of the transactions in the server's binlog from (file, position) on, read by mariadb-binlog."""
    out = subprocess.run(["mariadb-binlog", "--start-position", str(position),
                          str(server.base / "data" / file)], capture_output=True, check=True)
    return [line.split(b"GTID ", 1)[1].split()[0].decode() for line in out.stdout.splitlines()
            if b"\tGTID " in line and b" trans" in line]


def test_manifest_binlog_matches_the_idle_servers_position(binlog_server, dump_bucket, binlog_defaults):
    seed_database(binlog_server, SOURCE)
    [[file, position, *_]] = binlog_server.sql("SHOW MASTER STATUS")
    [[gtid, server_id]] = binlog_server.sql("SELECT @@gtid_binlog_pos, @@server_id")
    assert dump(dump_bucket, binlog_defaults)["binlog"] == {
        "file": file, "position": int(position), "gtid": gtid, "server_id": int(server_id)}


def test_replay_from_the_manifest_position_holds_exactly_the_later_transactions(binlog_server, dump_bucket,
                                                                                 binlog_defaults):
    seed_database(binlog_server, SOURCE)
    binlog = dump(dump_bucket, binlog_defaults)["binlog"]
    for n in range(3):
        binlog_server.sql(f"INSERT INTO invoices (customer_id, amount, issued) VALUES (1, {n}, '2026-12-01')", SOURCE)
    domain, server, sequence = binlog["gtid"].split("-")
    assert binlog_gtids_from(binlog_server, binlog["file"], binlog["position"]) == \
        [f"{domain}-{server}-{int(sequence) + n}" for n in (1, 2, 3)]


def test_dump_of_a_server_without_binlogs_records_null(mariadb_server, dump_bucket, backup_defaults):
    seed_database(mariadb_server, SOURCE)
    manifest = quickport_dump.dump_database(database=SOURCE, bucket=dump_bucket, prefix="mysql",
                                            defaults_file=backup_defaults)
    assert (manifest["binlog"], "--master-data=2" in manifest["dump_options"]) == (None, False)


def test_dump_options_ask_for_the_binlog_position_when_the_server_logs(binlog_server, dump_bucket, binlog_defaults):
    seed_database(binlog_server, SOURCE)
    options = dump(dump_bucket, binlog_defaults)["dump_options"]
    assert ("--master-data=2" in options, "--gtid" in options) == (True, True)


def test_a_logging_server_whose_dump_lacks_the_position_is_refused():
    facts = quickport_dump.dump_facts(b"-- Server version\t10.11.19-MariaDB-log\n-- Dump completed on 2026-12-02\n")
    with pytest.raises(quickport_dump.BackupFailed, match="no binlog position"):
        quickport_dump.binlog_coordinates(facts, "0-1-9", {"log_bin": 1, "server_id": 1})


def test_a_gtid_line_in_the_header_is_used_when_the_server_names_none():
    head = quickport_dump.dump_facts(b"-- CHANGE MASTER TO MASTER_LOG_FILE='mariadb-bin.000003', MASTER_LOG_POS=42;\n"
                                     b"-- SET GLOBAL gtid_slave_pos='0-1-9';\n")
    assert quickport_dump.binlog_coordinates(head, None, {"log_bin": 1, "server_id": 1}) == {
        "file": "mariadb-bin.000003", "position": 42, "gtid": "0-1-9", "server_id": 1}


def test_the_manifest_gtid_is_the_one_the_dump_itself_wrote_at_its_end(binlog_server, dump_bucket, binlog_defaults,
                                                                      tmp_path, monkeypatch):
    # The agent does not read the dump's end; it asks the server for the snapshot position's GTID as
    # mariadb-dump does. A transaction committed after the snapshot, before the agent asks, must not
    # move it: the dump tool here commits one as it finishes.
    seed_database(binlog_server, SOURCE)
    real = quickport_dump.find_program("mariadb-dump")
    commit_after = (f"mariadb --defaults-file={binlog_server.root_defaults} {SOURCE} "
                    f"-e \"INSERT INTO invoices (customer_id, amount, issued) VALUES (1, 6, '2026-12-01')\"")
    wrapper = tmp_path / "bin" / "mariadb-dump"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\n"{real}" "$@" || exit $?\n{commit_after}\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")

    manifest = dump(dump_bucket, binlog_defaults)

    body = boto3.client("s3").get_object(Bucket=dump_bucket, Key=manifest["key"])["Body"].read()
    text = subprocess.run(["zstd", "-dc"], input=body, capture_output=True, check=True).stdout
    written = quickport_dump.dump_facts(text[-quickport_dump.TAIL_BYTES:])["gtid"]
    [[now]] = binlog_server.sql("SELECT @@gtid_binlog_pos")
    assert (manifest["binlog"]["gtid"], written != now) == (written, True)


def test_a_binlog_name_that_cannot_be_quoted_safely_is_not_asked_for(binlog_defaults):
    assert quickport_dump.gtid_at(binlog_defaults, "x'); DROP DATABASE mysql; -- ", 4) is None
