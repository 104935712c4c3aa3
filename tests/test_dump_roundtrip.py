"""Round trip on a real MariaDB: dump to S3 (moto server), restore with the drill, compare with the source."""
from __future__ import annotations

import hashlib
import json
import re

import boto3
import pytest

from scripts.agent import quickport_dump
from tests.fixtures.mariadb import SEED_TABLES, seed_database

SOURCE = "crm_rt"


def dump(bucket: str, defaults: str, database: str = SOURCE, **kw) -> dict:
    return quickport_dump.dump_database(database=database, bucket=bucket, prefix="mysql",
                                        defaults_file=defaults, **kw)


@pytest.fixture
def drill(backupctl, dump_bucket, mariadb_server, tmp_path):
    """drill(*flags): `backupctl db-restore-drill` of SOURCE's latest dump, as MariaDB's root."""
    def run(*extra):
        return backupctl("db-restore-drill", "--latest", "--bucket", dump_bucket, "--prefix", "mysql",
                         "--database", SOURCE, "--defaults-file", mariadb_server.root_defaults,
                         "--log-file", str(tmp_path / "ops.jsonl"), "--json", *extra)
    return run


def test_drill_counts_rows_per_table_from_the_dump(mariadb_server, dump_bucket, backup_defaults, drill):
    seed_database(mariadb_server, SOURCE)
    dump(dump_bucket, backup_defaults)
    report = drill("--target-database", "crm_rt_drill").json()
    assert {t["table"]: t["expected"] for t in report["tables"]} == SEED_TABLES


def test_drill_lists_views_triggers_routines_and_events_from_the_dump(mariadb_server, dump_bucket,
                                                                    backup_defaults, drill):
    seed_database(mariadb_server, SOURCE)
    dump(dump_bucket, backup_defaults)
    report = drill("--target-database", "crm_rt_drill").json()
    assert {o["kind"]: o["expected"] for o in report["objects"]} == {
        "views": ["customer_totals"], "triggers": ["invoices_audit"],
        "routines": ["customer_count", "with_tax"], "events": ["nightly_cleanup"]}


def test_manifest_records_the_server_version_from_the_dump_header(mariadb_server, dump_bucket, backup_defaults):
    seed_database(mariadb_server, SOURCE)
    [[version]] = mariadb_server.sql("SELECT VERSION()")
    assert dump(dump_bucket, backup_defaults)["server_version"] == version


def test_dump_object_layout_and_hash_match_the_manifest(mariadb_server, dump_bucket, backup_defaults):
    seed_database(mariadb_server, SOURCE)
    manifest = dump(dump_bucket, backup_defaults)
    assert re.fullmatch(rf"mysql/{SOURCE}/\d{{4}}/\d\d/\d\d/{SOURCE}-\d{{8}}T\d{{6}}Z\.sql\.zst", manifest["key"])
    body = boto3.client("s3").get_object(Bucket=dump_bucket, Key=manifest["key"])["Body"].read()
    assert (hashlib.sha256(body).hexdigest(), len(body)) == (manifest["sha256"], manifest["bytes"])


def test_latest_json_points_at_the_published_manifest(mariadb_server, dump_bucket, backup_defaults):
    seed_database(mariadb_server, SOURCE)
    manifest = dump(dump_bucket, backup_defaults)
    s3 = boto3.client("s3")
    latest = json.loads(s3.get_object(Bucket=dump_bucket, Key=f"mysql/{SOURCE}/latest.json")["Body"].read())
    published = json.loads(s3.get_object(Bucket=dump_bucket, Key=latest["manifest"])["Body"].read())
    assert (latest["key"], published) == (manifest["key"], manifest)


def test_drill_restores_latest_dump_with_matching_counts(mariadb_server, dump_bucket, backup_defaults, drill):
    seed_database(mariadb_server, SOURCE)
    dump(dump_bucket, backup_defaults)
    result = drill("--target-database", "crm_rt_drill")
    report = result.json()
    assert (result.code, report["ok"], {t["table"]: t["restored"] for t in report["tables"]}) == (0, True, SEED_TABLES)


def test_drill_drops_the_scratch_database_afterwards(mariadb_server, dump_bucket, backup_defaults, drill):
    seed_database(mariadb_server, SOURCE)
    dump(dump_bucket, backup_defaults)
    drill("--target-database", "crm_rt_drill")
    assert mariadb_server.sql("SHOW DATABASES LIKE 'crm\\_rt\\_drill'") == []


def _table_contents(db, database: str) -> dict:
    contents = {}
    for table in SEED_TABLES:
        contents[table] = db.sql(f"SELECT * FROM `{table}` ORDER BY 1", database)
    contents["view"] = db.sql("SELECT * FROM customer_totals ORDER BY id", database)
    contents["function"] = db.sql("SELECT with_tax(100.00)", database)
    return contents


def test_restored_data_equal_the_source(mariadb_server, dump_bucket, backup_defaults, drill):
    seed_database(mariadb_server, SOURCE)
    mariadb_server.drop_databases("crm_rt_kept")
    dump(dump_bucket, backup_defaults)
    drill("--target-database", "crm_rt_kept", "--keep")
    assert _table_contents(mariadb_server, "crm_rt_kept") == _table_contents(mariadb_server, SOURCE)


def test_restored_trigger_still_fires(mariadb_server, dump_bucket, backup_defaults, drill):
    seed_database(mariadb_server, SOURCE)
    mariadb_server.drop_databases("crm_rt_kept")
    dump(dump_bucket, backup_defaults)
    drill("--target-database", "crm_rt_kept", "--keep")
    mariadb_server.sql("INSERT INTO invoices (customer_id, amount, issued) VALUES (1, 5, '2026-11-26')", "crm_rt_kept")
    assert mariadb_server.sql("SELECT message FROM `audit log`", "crm_rt_kept") == \
        mariadb_server.sql("SELECT CONCAT('invoice ', MAX(id)) FROM invoices", "crm_rt_kept")


def test_gzip_dump_round_trips(mariadb_server, dump_bucket, backup_defaults, drill):
    seed_database(mariadb_server, SOURCE)
    manifest = dump(dump_bucket, backup_defaults, compression="gzip")
    result = drill("--target-database", "crm_rt_drill")
    assert (manifest["key"].endswith(".sql.gz"), result.code, result.json()["ok"]) == (True, 0, True)


def test_drill_writes_the_operations_log(mariadb_server, dump_bucket, backup_defaults, drill, tmp_path):
    seed_database(mariadb_server, SOURCE)
    dump(dump_bucket, backup_defaults)
    drill("--target-database", "crm_rt_drill")
    events = [json.loads(line)["event"] for line in (tmp_path / "ops.jsonl").read_text().splitlines()]
    assert events == ["db-restore-drill-started", "db-restore-drill-finished"]
