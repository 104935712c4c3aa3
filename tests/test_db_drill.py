"""db-restore-drill refuses what it must and reports mismatches (real MariaDB, moto server)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from scripts.agent import quickport_dump
from tests.fixtures.mariadb import seed_database

SOURCE = "crm_drill"


@pytest.fixture
def manifest(mariadb_server, dump_bucket, backup_defaults) -> dict:
    seed_database(mariadb_server, SOURCE)
    mariadb_server.drop_databases("crm_drill_scratch")
    return quickport_dump.dump_database(database=SOURCE, bucket=dump_bucket, prefix="mysql",
                                        defaults_file=backup_defaults)


@pytest.fixture
def drill(backupctl, mariadb_server, dump_bucket, tmp_path):
    """drill(*flags): `backupctl db-restore-drill` from the dump bucket, as MariaDB's root."""
    def run(*args):
        return backupctl("db-restore-drill", "--bucket", dump_bucket, "--prefix", "mysql",
                         "--defaults-file", mariadb_server.root_defaults, "--log-file", str(tmp_path / "ops.jsonl"),
                         *args)
    return run


def scratch_exists(mariadb_server) -> bool:
    return bool(mariadb_server.sql("SHOW DATABASES LIKE 'crm\\_drill\\_scratch'"))


def rewrite_manifest(bucket: str, manifest: dict, **changes) -> None:
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key=quickport_dump.manifest_key_for(manifest["key"]),
                  Body=json.dumps({**manifest, **changes}).encode())


def tamper(bucket: str, manifest: dict, edit) -> None:
    """Rewrite the dump's text with edit(text) and recompress it under a manifest that matches it:
    the hash check passes, and the drill sees a dump that does not restore as it reads."""
    s3 = boto3.client("s3")
    body = s3.get_object(Bucket=bucket, Key=manifest["key"])["Body"].read()
    text = subprocess.run(["zstd", "-q", "-d", "-c"], input=body, capture_output=True, check=True).stdout
    body = subprocess.run(["zstd", "-q", "-c"], input=edit(text), capture_output=True, check=True).stdout
    s3.put_object(Bucket=bucket, Key=manifest["key"], Body=body)
    rewrite_manifest(bucket, manifest, sha256=hashlib.sha256(body).hexdigest(), bytes=len(body))


def before_trailer(statement: bytes):
    """An edit that runs `statement` at the end of the restore, just before the dump's trailer."""
    return lambda text: text.replace(b"\n-- Dump completed", b"\n" + statement + b"\n-- Dump completed")


def test_drill_refuses_a_corrupted_dump_before_touching_the_server(manifest, mariadb_server, dump_bucket, drill):
    s3 = boto3.client("s3")
    body = bytearray(s3.get_object(Bucket=dump_bucket, Key=manifest["key"])["Body"].read())
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket=dump_bucket, Key=manifest["key"], Body=bytes(body))
    result = drill("--latest", "--database", SOURCE, "--target-database", "crm_drill_scratch")
    assert (result.code, "refusing to restore" in result.err, scratch_exists(mariadb_server)) == (1, True, False)


def test_drill_reports_a_row_count_mismatch(manifest, dump_bucket, drill):
    tamper(dump_bucket, manifest, before_trailer(b"DELETE FROM invoices WHERE id = 7;"))
    result = drill("--latest", "--database", SOURCE, "--target-database", "crm_drill_scratch", "--json")
    report = result.json()
    assert (result.code, [(t["table"], t["expected"], t["restored"]) for t in report["tables"] if not t["ok"]]) == \
        (1, [("invoices", 2500, 2499)])


def test_drill_reports_a_table_missing_from_the_restore(manifest, dump_bucket, drill):
    tamper(dump_bucket, manifest, before_trailer(b"DROP TABLE empty_table;"))
    result = drill("--latest", "--database", SOURCE, "--target-database", "crm_drill_scratch", "--json")
    report = result.json()
    assert (result.code, [(t["table"], t["restored"]) for t in report["tables"] if not t["ok"]]) == \
        (1, [("empty_table", None)])


def test_drill_reports_a_missing_trigger(manifest, dump_bucket, drill):
    tamper(dump_bucket, manifest, before_trailer(b"DROP TRIGGER invoices_audit;"))
    result = drill("--latest", "--database", SOURCE, "--target-database", "crm_drill_scratch", "--json")
    report = result.json()
    assert (result.code, [o["kind"] for o in report["objects"] if not o["ok"]]) == (1, ["triggers"])


def test_drill_counts_from_the_dump_not_from_what_a_manifest_claims(manifest, dump_bucket, drill):
    # Row counts come from the verified dump itself; a manifest field cannot talk a restore into "ok"
    # or out of it.
    rewrite_manifest(dump_bucket, manifest, tables={"invoices": 1}, objects={"triggers": ["gone"]})
    result = drill("--latest", "--database", SOURCE, "--target-database", "crm_drill_scratch", "--json")
    assert (result.code, result.json()["ok"]) == (0, True)


def test_drill_refuses_a_dump_without_its_trailer(manifest, mariadb_server, dump_bucket, drill):
    tamper(dump_bucket, manifest, lambda text: text.split(b"\n-- Dump completed")[0] + b"\n")
    result = drill("--latest", "--database", SOURCE, "--target-database", "crm_drill_scratch")
    assert (result.code, "trailer" in result.err, scratch_exists(mariadb_server)) == (1, True, False)


def test_drill_drops_the_scratch_database_after_a_mismatch(manifest, mariadb_server, dump_bucket, drill):
    tamper(dump_bucket, manifest, before_trailer(b"DELETE FROM invoices WHERE id = 7;"))
    assert drill("--latest", "--database", SOURCE, "--target-database", "crm_drill_scratch").code == 1
    assert scratch_exists(mariadb_server) is False


def test_drill_refuses_a_target_equal_to_the_source(manifest, drill):
    assert drill("--latest", "--database", SOURCE, "--target-database", SOURCE).code == 2


def test_drill_refuses_an_existing_target_and_leaves_it_alone(manifest, mariadb_server, drill):
    mariadb_server.sql("CREATE DATABASE crm_drill_scratch; CREATE TABLE crm_drill_scratch.mine (id INT);")
    code = drill("--latest", "--database", SOURCE, "--target-database", "crm_drill_scratch").code
    assert (code, mariadb_server.sql("SHOW TABLES", "crm_drill_scratch")) == (2, [["mine"]])


def test_drill_rejects_a_target_name_that_is_not_an_identifier(manifest, drill):
    result = drill("--latest", "--database", SOURCE, "--target-database", "x`; DROP DATABASE y")
    assert (result.code, "--target-database" in result.err) == (2, True)


def test_drill_restores_an_explicit_manifest(manifest, drill):
    result = drill("--manifest", quickport_dump.manifest_key_for(manifest["key"]),
                   "--target-database", "crm_drill_scratch", "--json")
    assert (result.code, result.json()["database"]) == (0, SOURCE)


def test_drill_without_a_dump_fails_with_one_line(drill):
    result = drill("--latest", "--database", "crm_never_dumped", "--target-database", "crm_drill_scratch")
    assert (result.code, len(result.err.strip().splitlines())) == (1, 1)


def test_drill_drops_the_scratch_database_when_the_restore_fails(manifest, mariadb_server, dump_bucket, drill):
    # A damaged dump whose manifest was rewritten to match it: the hash check passes, zstd then fails.
    s3 = boto3.client("s3")
    body = bytearray(s3.get_object(Bucket=dump_bucket, Key=manifest["key"])["Body"].read())
    body[len(body) // 2:len(body) // 2 + 64] = b"\0" * 64
    s3.put_object(Bucket=dump_bucket, Key=manifest["key"], Body=bytes(body))
    rewrite_manifest(dump_bucket, manifest, sha256=hashlib.sha256(body).hexdigest(), bytes=len(body))
    result = drill("--latest", "--database", SOURCE, "--target-database", "crm_drill_scratch")
    assert (result.code, scratch_exists(mariadb_server)) == (1, False), result.err


def test_drill_says_when_the_scratch_database_could_not_be_dropped(manifest, mariadb_server, dump_bucket,
                                                                   tmp_path, backupctl):
    # A drill user without DROP: the restore fails (the dump drops each table before creating it) and
    # so does the clean-up, which leaves a copy of production data on the server: the line must say so.
    mariadb_server.sql("CREATE USER IF NOT EXISTS 'drill_nodrop'@'localhost' IDENTIFIED BY 'pw-nodrop';"
                       "GRANT ALL PRIVILEGES ON `crm\\_drill\\_scratch`.* TO 'drill_nodrop'@'localhost';"
                       "REVOKE DROP ON `crm\\_drill\\_scratch`.* FROM 'drill_nodrop'@'localhost';")
    defaults = mariadb_server.defaults_file("drill_nodrop", "pw-nodrop", tmp_path / "nodrop")
    try:
        result = backupctl("db-restore-drill", "--bucket", dump_bucket, "--prefix", "mysql",
                           "--defaults-file", defaults, "--log-file", str(tmp_path / "ops.jsonl"),
                           "--latest", "--database", SOURCE, "--target-database", "crm_drill_scratch")
        error = result.err.strip().splitlines()[-1]
        assert result.code == 1
        assert "scratch database crm_drill_scratch was NOT dropped" in error and "drop it by hand" in error
        assert scratch_exists(mariadb_server)
    finally:
        mariadb_server.drop_databases("crm_drill_scratch")
        mariadb_server.sql("DROP USER 'drill_nodrop'@'localhost';")


ROW_SECRET = "pan-4111111111111111@example.com"


def _publish_failing_dump(bucket: str) -> str:
    """A dump whose restore fails on a row: the same key twice, so MariaDB's error quotes the row."""
    sql = ("CREATE TABLE customers (email VARCHAR(64) PRIMARY KEY);\n"
           f"INSERT INTO customers VALUES ('{ROW_SECRET}'), ('{ROW_SECRET}');\n").encode()
    body = subprocess.run(["zstd", "-q", "-c"], input=sql, capture_output=True, check=True).stdout
    key = f"mysql/{SOURCE}/2026/11/26/{SOURCE}-20261126T000000Z.sql.zst"
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    manifest = {"key": key, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(), "compression": "zstd",
                "database": SOURCE, "tables": {"customers": 2}, "objects": {}, "finished_at": "2026-11-26T00:00:00Z"}
    return quickport_dump.publish(s3, bucket, f"mysql/{SOURCE}/latest.json", manifest)


def test_a_failed_restore_reports_the_error_code_never_the_row(mariadb_server, dump_bucket, drill, tmp_path):
    mariadb_server.drop_databases("crm_drill_scratch")
    _publish_failing_dump(dump_bucket)
    result = drill("--latest", "--database", SOURCE, "--target-database", "crm_drill_scratch", "--json")
    log = (tmp_path / "ops.jsonl").read_text()
    error = result.json()["error"]
    assert (result.code, "ERROR 1062 (23000)" in error, "Duplicate entry" in error) == (1, True, True), error
    assert [ROW_SECRET in text for text in (result.err, result.out, log)] == [False, False, False]
    assert (len(error) < 400, scratch_exists(mariadb_server)) == (True, False)


def test_a_client_error_is_one_capped_line_without_quoted_values():
    from scripts.workflows.database import CHILD_ERROR_MAX, child_error
    text = "warning: something\nERROR 1366 (22007) at line 9: Incorrect string value: '\\xF0\\x9F' for column `c`" \
        + " x" * 500 + "\n"
    line = child_error(text)
    assert (line.startswith("ERROR 1366 (22007) at line 9: Incorrect string value: '?' for column `c`"),
            "\\xF0" in line, len(line) <= CHILD_ERROR_MAX + 3) == (True, False, True)


DOWNLOAD_RSS = """
import sys
import boto3
from scripts.aws import s3
s3.download(boto3.client("s3"), sys.argv[1], "big.bin", sys.argv[2])
print([line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")][0])
"""


def test_downloading_a_large_dump_stays_under_100_mib(dump_bucket, tmp_path):
    # The drill downloads the dump before restoring it; its process must stay as small as the agent's.
    boto3.client("s3").put_object(Bucket=dump_bucket, Key="big.bin", Body=os.urandom(200 * 1024 * 1024))
    out = subprocess.run([sys.executable, "-c", DOWNLOAD_RSS, dump_bucket, str(tmp_path / "big.bin")],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    assert int(out.stdout) < 100 * 1024, f"peak RSS {int(out.stdout) // 1024} MiB"
