"""`backupctl cost`: figures from the real (moto) root volume and snapshots; flags override the
documented prices and assumptions; bad flag values exit 2 naming the flag."""
from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import boto3
import pytest
import yaml

from scripts import cli
from scripts.commands import cost
from tests.fixtures.ec2_instance import PartialStubber

REGION = "ap-south-1"
ROOT = Path(__file__).resolve().parent.parent
MOTO_AMI = "ami-785db401"  # an Ubuntu AMI moto ships, root /dev/sda1


@pytest.fixture
def instance(aws, tmp_path):
    """A stand-in production instance whose root volume is 40 GiB gp3, and a stack config naming it."""
    ec2 = boto3.client("ec2", region_name=REGION)
    inst = ec2.run_instances(ImageId=MOTO_AMI, MinCount=1, MaxCount=1, InstanceType="t3.small",
                             BlockDeviceMappings=[{"DeviceName": "/dev/sda1",
                                                   "Ebs": {"VolumeSize": 40, "VolumeType": "gp3"}}])["Instances"][0]
    desc = ec2.describe_instances(InstanceIds=[inst["InstanceId"]])["Reservations"][0]["Instances"][0]
    root = next(m["Ebs"]["VolumeId"] for m in desc["BlockDeviceMappings"] if m["DeviceName"] == desc["RootDeviceName"])
    raw = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    raw["config"]["quickport-backup:instanceId"] = inst["InstanceId"]
    raw["config"]["quickport-backup:rootVolumeId"] = root
    config_file = tmp_path / "Pulumi.prod.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    return {"ec2": ec2, "root": root, "config_file": config_file, "log": tmp_path / "ops.jsonl"}


def run_cost(instance, *flags, clients=None) -> tuple[int, dict]:
    out = io.StringIO()
    with redirect_stdout(out):
        rc = cli.main(["cost", "--json", "--config-file", str(instance["config_file"]),
                       "--log-file", str(instance["log"]), *flags], clients=clients)
    return rc, json.loads(out.getvalue())


def line(doc, item):
    return next(entry for entry in doc["lines"] if entry["item"] == item)


def _premaint_snapshot(ec2, volume_id, name):
    ec2.create_snapshot(VolumeId=volume_id, TagSpecifications=[{"ResourceType": "snapshot", "Tags": [
        {"Key": "Name", "Value": name}, {"Key": "Strategy", "Value": "quickport-backup"}]}])


def test_volume_size_comes_from_describe_volumes(instance):
    rc, doc = run_cost(instance)
    assert rc == 0
    assert (doc["inputs"]["volume_id"], doc["inputs"]["volume_gb"]) == (instance["root"], 40)


def test_daily_points_are_one_full_copy_plus_six_days_of_change(instance):
    _, doc = run_cost(instance, "--daily-change-pct", "2")
    # 40 GB written + 6 x 0.8 GB changed = 44.8 GB-month at 0.05 USD
    assert line(doc, "daily recovery points")["gb_month"] == pytest.approx(44.8)
    assert line(doc, "daily recovery points")["usd"] == pytest.approx(2.24)


def test_inr_is_usd_times_the_exchange_rate(instance):
    _, doc = run_cost(instance, "--usd-inr", "100")
    daily = line(doc, "daily recovery points")
    assert daily["inr"] == pytest.approx(daily["usd"] * 100, abs=0.01)


def test_snapshot_price_flag_overrides_the_constant(instance):
    _, default = run_cost(instance)
    _, doubled = run_cost(instance, "--snapshot-gb-month", str(cost.SNAPSHOT_USD_GB_MONTH * 2))
    assert line(doubled, "daily recovery points")["usd"] == pytest.approx(
        2 * line(default, "daily recovery points")["usd"], abs=0.01)
    assert doubled["prices"]["snapshot_usd_gb_month"] == pytest.approx(0.1)


def test_gp3_price_prices_the_root_volume(instance):
    _, doc = run_cost(instance, "--gp3-gb-month", "0.1", "--usd-inr", "80")
    assert line(doc, "root volume (gp3, for scale)")["usd"] == pytest.approx(4.0)
    assert line(doc, "root volume (gp3, for scale)")["inr"] == pytest.approx(320.0)


def test_pre_maintenance_snapshots_are_counted_in_the_account(instance):
    _premaint_snapshot(instance["ec2"], instance["root"], "prod-root-2026-11-24-before-php-upgrade")
    _premaint_snapshot(instance["ec2"], instance["root"], "prod-root-2026-11-25-before-nginx-config")
    _, doc = run_cost(instance, "--daily-change-pct", "2", "--premaint-keep-days", "30")
    assert doc["inputs"]["premaint_count"] == 2
    # each holds min(40, 0.8 x 30) = 24 GB
    assert line(doc, "pre-maintenance snapshots")["gb_month"] == pytest.approx(48.0)


def test_baseline_snapshots_are_not_counted_as_pre_maintenance(instance):
    _premaint_snapshot(instance["ec2"], instance["root"], "prod-root-2026-11-20-before-php-upgrade")  # the baseline
    _, doc = run_cost(instance)
    assert doc["inputs"]["premaint_count"] == 0 and doc["inputs"]["baseline_count"] == 1


def test_locked_snapshots_are_counted_when_the_lock_api_answers(instance):
    ec2 = boto3.client("ec2", region_name=REGION)
    _premaint_snapshot(ec2, instance["root"], "prod-root-2026-11-24-before-php-upgrade")
    snap = ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "tag:Strategy", "Values": ["quickport-backup"]}])
    snap_id = snap["Snapshots"][0]["SnapshotId"]
    stub = PartialStubber(ec2, {"DescribeLockedSnapshots"})  # moto lacks it
    stub.add_response("describe_locked_snapshots", {"Snapshots": [
        {"SnapshotId": snap_id, "LockState": "governance", "LockDuration": 30}]}, {"SnapshotIds": [snap_id]})
    stub.activate()
    _, doc = run_cost(instance, clients={"ec2": ec2})
    assert doc["inputs"]["locked_snapshots"] == 1
    assert not any("lock" in note for note in doc["notes"])


def test_lock_api_missing_leaves_the_lock_count_unknown_with_a_note(instance):
    _premaint_snapshot(instance["ec2"], instance["root"], "prod-root-2026-11-24-before-php-upgrade")
    _, doc = run_cost(instance)
    assert doc["inputs"]["locked_snapshots"] is None
    assert any(note.startswith("snapshot locks: unknown") for note in doc["notes"])


def test_premaint_count_flag_overrides_the_account(instance):
    _, doc = run_cost(instance, "--premaint-count", "5")
    assert doc["inputs"]["premaint_count"] == 5 and doc["inputs"]["premaint_source"] == "--premaint-count"


def test_volume_gb_flag_skips_the_account(instance):
    _, doc = run_cost(instance, "--volume-gb", "100", "--instance-id", "i-00000000000000000")
    assert doc["inputs"]["volume_gb"] == 100 and doc["inputs"]["volume_id"] is None


def test_dump_size_comes_from_latest_json(instance):
    s3 = boto3.client("s3", region_name=REGION)
    bucket = "quickport-prod-db-dumps-ap-south-1"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=bucket, Key="mysql/quickport_crm_laravel/latest.json",
                  Body=json.dumps({"bytes": 500_000_000, "manifest": "x"}).encode())
    _, doc = run_cost(instance)
    # 30 retained dumps x 0.5 GB at 0.025 USD
    assert line(doc, "database dumps (S3)")["gb_month"] == pytest.approx(15.0)
    assert line(doc, "database dumps (S3)")["usd"] == pytest.approx(0.38, abs=0.005)


def test_without_a_dump_bucket_the_default_dump_size_is_used_and_noted(instance):
    _, doc = run_cost(instance)
    assert doc["inputs"]["dump_gb"] == cost.DUMP_GB_DEFAULT
    assert any("newest dump" in note for note in doc["notes"])


def test_budget_columns_use_the_seed_assumptions(instance):
    _, doc = run_cost(instance)
    # 40 GB + 6 x 5% x 40 GB = 52 GB-month
    assert line(doc, "daily recovery points")["budget_gb_month"] == pytest.approx(52.0)


def test_total_is_the_sum_of_the_backup_line_items(instance):
    _, doc = run_cost(instance)
    items = [e for e in doc["lines"] if e["item"] not in ("backup total", "root volume (gp3, for scale)")]
    assert doc["total"]["usd"] == pytest.approx(sum(e["usd"] for e in items), abs=0.011)


def test_text_output_shows_inr_usd_and_budget_columns(instance, capsys):
    rc = cli.main(["cost", "--config-file", str(instance["config_file"]), "--log-file", str(instance["log"])])
    out = capsys.readouterr().out
    assert rc == 0
    header = next(l for l in out.splitlines() if l.startswith("item"))
    assert header.split() == ["item", "GB-mo", "USD", "INR", "budget", "GB-mo", "budget", "USD", "budget", "INR"]
    assert "not verified" in out


def test_prices_of_another_region_are_flagged_in_a_note(instance):
    _, doc = run_cost(instance, "--region", "us-east-1", "--volume-gb", "40")
    assert any("us-east-1" in note and "--snapshot-gb-month" in note for note in doc["notes"])


def test_unknown_instance_exits_1(instance, capsys):
    rc = cli.main(["cost", "--config-file", str(instance["config_file"]), "--instance-id", "i-0123456789abcdef0"])
    assert rc == 1 and "i-0123456789abcdef0" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [
    ("--usd-inr", "abc"), ("--usd-inr", "0"), ("--snapshot-gb-month", "-1"), ("--daily-change-pct", "150"),
    ("--used-pct", "nan"), ("--premaint-keep-days", "2.5"), ("--volume-gb", "0"), ("--dump-gb", "x")])
def test_bad_flag_value_exits_2_naming_the_flag(flag, value, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["cost", flag, value])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and flag in err and "must be" in err and len(err.strip().splitlines()) == 1
