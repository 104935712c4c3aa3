"""`backupctl db-backup`: the same dump code run locally, defaults from the stack config, logged."""
from __future__ import annotations

import json

import boto3
import pytest
import yaml

from components.config import stack_file
from tests.fixtures.mariadb import BACKUP_PASSWORD, s3_keys, seed_database

SOURCE = "crm_cli"
PARAMETER = "/quickport/test/mysql/backup-password"


@pytest.fixture
def stack_config(tmp_path, dump_bucket, mariadb_server) -> str:
    """Pulumi.prod.yaml with the dumps section pointed at the test bucket, database and parameter."""
    raw = yaml.safe_load(stack_file("prod").read_text())
    dumps = raw["config"]["quickport-backup:dumps"]
    dumps.update(bucketName=dump_bucket, database=SOURCE, passwordParameter=PARAMETER, user="backup")
    path = tmp_path / "Pulumi.test.yaml"
    path.write_text(yaml.safe_dump(raw))
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=BACKUP_PASSWORD, Type="SecureString")
    seed_database(mariadb_server, SOURCE)
    return str(path)


@pytest.fixture
def run(backupctl, stack_config, mariadb_server, tmp_path):
    """run(*flags): `backupctl db-backup` with the test's stack config, over the server's socket."""
    def db_backup(*extra):
        return backupctl("db-backup", "--config-file", stack_config, "--socket", mariadb_server.socket,
                         "--log-file", str(tmp_path / "ops.jsonl"), *extra)
    return db_backup


def test_db_backup_takes_bucket_database_and_password_parameter_from_the_stack(run, dump_bucket):
    result = run("--json")
    manifest = result.json()
    assert (result.code, manifest["database"], manifest["key"] in s3_keys(dump_bucket)) == (0, SOURCE, True)


def test_db_backup_logs_the_published_key(run, tmp_path):
    key = run("--json").json()["key"]
    events = [json.loads(line) for line in (tmp_path / "ops.jsonl").read_text().splitlines()]
    assert [(e["event"], e.get("key")) for e in events] == [("db-backup-started", None), ("db-backup-succeeded", key)]


def test_db_backup_failure_exits_1_and_is_logged(run, tmp_path):
    code = run("--bucket", "qp-no-such-bucket").code
    events = [json.loads(line)["event"] for line in (tmp_path / "ops.jsonl").read_text().splitlines()]
    assert (code, events) == (1, ["db-backup-started", "db-backup-failed"])


def test_db_backup_with_defaults_file(backupctl, stack_config, backup_defaults, dump_bucket, tmp_path):
    code = backupctl("db-backup", "--config-file", stack_config, "--defaults-file", backup_defaults,
                     "--log-file", str(tmp_path / "ops.jsonl")).code
    assert (code, any(k.startswith(f"mysql/{SOURCE}/") and k.endswith(".sql.zst") for k in s3_keys(dump_bucket))) \
        == (0, True)


def test_db_backup_missing_defaults_file_is_a_usage_error(backupctl, stack_config, tmp_path):
    result = backupctl("db-backup", "--config-file", stack_config, "--defaults-file", str(tmp_path / "nope.cnf"),
                       "--log-file", str(tmp_path / "ops.jsonl"))
    assert (result.code, "--defaults-file" in result.err) == (2, True)


def test_db_backup_bad_database_name_is_a_usage_error(run):
    result = run("--database", "crm;drop")
    assert (result.code, "--database 'crm;drop'" in result.err) == (2, True)


def test_db_backup_both_credential_sources_is_a_usage_error(run, backup_defaults):
    assert run("--defaults-file", backup_defaults, "--password-parameter", PARAMETER).code == 2


def test_db_backup_runs_at_the_stacks_dumps_priority(backupctl, stack_config, mariadb_server, tmp_path):
    raw = yaml.safe_load(open(stack_config).read())
    raw["config"]["quickport-backup:dumps"]["priority"] = "idle"
    idle = tmp_path / "Pulumi.idle.yaml"
    idle.write_text(yaml.safe_dump(raw))
    result = backupctl("db-backup", "--config-file", str(idle), "--socket", mariadb_server.socket,
                       "--log-file", str(tmp_path / "ops.jsonl"), "--json")
    assert (result.code, result.json()["priority"]) == (0, "idle")


def test_db_backup_priority_flag_overrides_the_stack(run):
    result = run("--priority", "normal", "--json")
    assert (result.code, result.json()["priority"]) == (0, "normal")


def test_db_backup_checks_zstd_frames_by_default_and_decompresses_on_request(run):
    by_default, decompressed = run("--json"), run("--verify", "decompress", "--json")
    assert [(r.code, r.json()["verified"]) for r in (by_default, decompressed)] == [(0, "frames"), (0, "decompress")]


def test_db_backup_with_gzip_always_decompresses(run):
    result = run("--compression", "gzip", "--json")
    assert (result.code, result.json()["verified"]) == (0, "decompress")


def test_db_backup_text_names_the_binlog_state(run):
    result = run()
    assert (result.code, "no binlog (log_bin is OFF" in result.out) == (0, True)
