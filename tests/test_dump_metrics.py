"""The dump publishes the dead-man's switch's metrics to CloudWatch, best effort (real MariaDB, moto
server's CloudWatch reached through AWS_ENDPOINT_URL)."""
from __future__ import annotations

import datetime as dt
import json

import boto3
import pytest

from scripts.agent import quickport_dump
from scripts.offline.emulator import free_port
from tests.fixtures.mariadb import s3_keys, seed_database

SOURCE = "crm_metrics"
DIMENSIONS = [{"Name": "Stack", "Value": "prod"}, {"Name": "Database", "Value": SOURCE}]


def dump_cli(bucket: str, defaults: str, *extra: str) -> list[str]:
    return ["db", "--database", SOURCE, "--bucket", bucket, "--prefix", "mysql", "--defaults-file", defaults,
            *extra]


def statistic(metric: str, stat: str = "Sum") -> list[float]:
    now = dt.datetime.now(dt.timezone.utc)
    points = boto3.client("cloudwatch").get_metric_statistics(
        Namespace="QuickportBackup", MetricName=metric, Dimensions=DIMENSIONS, StartTime=now - dt.timedelta(hours=1),
        EndTime=now + dt.timedelta(minutes=5), Period=3600, Statistics=[stat])["Datapoints"]
    return [p[stat] for p in points]


@pytest.fixture
def seeded(mariadb_server):
    seed_database(mariadb_server, SOURCE)


def test_a_good_dump_publishes_success_size_and_duration(seeded, dump_bucket, backup_defaults, capsys):
    assert quickport_dump.main(dump_cli(dump_bucket, backup_defaults, "--metrics-stack", "prod", "--json")) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert statistic("DumpSucceeded") == [1.0]
    assert statistic("DumpBytes", "Maximum") == [float(manifest["bytes"])]
    [seconds] = statistic("DumpDurationSeconds", "Maximum")
    assert 0 < seconds < 600


def test_a_failed_dump_publishes_zero_successes_and_no_size(seeded, dump_bucket, mariadb_server, tmp_path):
    wrong = mariadb_server.defaults_file("backup", "not-the-password", tmp_path)
    assert quickport_dump.main(dump_cli(dump_bucket, wrong, "--metrics-stack", "prod")) == 1
    assert statistic("DumpSucceeded") == [0.0]
    assert statistic("DumpBytes", "Maximum") == []


def test_metrics_are_opt_in(seeded, dump_bucket, backup_defaults):
    assert quickport_dump.main(dump_cli(dump_bucket, backup_defaults)) == 0
    assert boto3.client("cloudwatch").list_metrics(Namespace="QuickportBackup")["Metrics"] == []


def test_cloudwatch_outage_is_one_warning_line_never_a_failed_dump(seeded, dump_bucket, backup_defaults,
                                                                  monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    assert quickport_dump.main(dump_cli(dump_bucket, backup_defaults, "--metrics-stack", "prod")) == 0
    [warning] = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warning.startswith("quickport_dump db: warning: could not publish CloudWatch metrics (")
    assert any(k.startswith(f"mysql/{SOURCE}/") and k.endswith(".sql.zst") for k in s3_keys(dump_bucket))


def test_a_bad_metrics_stack_is_a_usage_error_naming_the_flag(dump_bucket, backup_defaults, capsys):
    with pytest.raises(SystemExit) as exited:
        quickport_dump.main(dump_cli(dump_bucket, backup_defaults, "--metrics-stack", "prod;rm"))
    assert exited.value.code == 2 and "--metrics-stack 'prod;rm'" in capsys.readouterr().err
