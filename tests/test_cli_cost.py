"""`backupctl cost`: figures from the real (emulated) root volume and snapshots; flags override the
documented prices and assumptions; bad flag values exit 2 naming the flag."""
from __future__ import annotations

import json

import pytest

from scripts.offline import standin
from scripts.offline.stubs import PartialStubber
from scripts.workflows import cost
from tests.fixtures.aws_account import Prod, prod_account

REGION = "ap-south-1"


@pytest.fixture
def instance(aws, tmp_path) -> Prod:
    """A stand-in production instance whose root volume is 40 GiB gp3, and a stack config naming it."""
    return prod_account(standin.build_instance(root_gb=40), tmp_path)


@pytest.fixture
def run_cost(backupctl, instance):
    """run_cost(*flags, clients=None) -> (exit code, the --json document)."""
    def run(*flags, clients=None) -> tuple[int, dict]:
        result = backupctl("cost", "--json", *instance.common_args(), *flags, clients=clients)
        return result.code, result.json()
    return run


def line(doc, item):
    return next(entry for entry in doc["lines"] if entry["item"] == item)


def test_volume_size_comes_from_describe_volumes(instance, run_cost):
    rc, doc = run_cost()
    assert rc == 0
    assert (doc["inputs"]["volume_id"], doc["inputs"]["volume_gb"]) == (instance.root_volume_id, 40)


def test_daily_points_are_one_full_copy_plus_six_days_of_change(run_cost):
    _, doc = run_cost("--daily-change-pct", "2")
    # 40 GB written + 6 x 0.8 GB changed = 44.8 GB-month at 0.05 USD
    assert line(doc, "daily recovery points")["gb_month"] == pytest.approx(44.8)
    assert line(doc, "daily recovery points")["usd"] == pytest.approx(2.24)


def test_inr_is_usd_times_the_exchange_rate(run_cost):
    _, doc = run_cost("--usd-inr", "100")
    daily = line(doc, "daily recovery points")
    assert daily["inr"] == pytest.approx(daily["usd"] * 100, abs=0.01)


def test_snapshot_price_flag_overrides_the_constant(run_cost):
    _, default = run_cost()
    _, doubled = run_cost("--snapshot-gb-month", str(cost.SNAPSHOT_USD_GB_MONTH * 2))
    assert line(doubled, "daily recovery points")["usd"] == pytest.approx(
        2 * line(default, "daily recovery points")["usd"], abs=0.01)
    assert doubled["prices"]["snapshot_usd_gb_month"] == pytest.approx(0.1)


def test_gp3_price_prices_the_root_volume(run_cost):
    _, doc = run_cost("--gp3-gb-month", "0.1", "--usd-inr", "80")
    assert line(doc, "root volume (gp3, for scale)")["usd"] == pytest.approx(4.0)
    assert line(doc, "root volume (gp3, for scale)")["inr"] == pytest.approx(320.0)


def test_pre_maintenance_snapshots_are_counted_in_the_account(instance, run_cost):
    standin.tag_snapshot(instance, "prod-root-2026-11-24-before-php-upgrade")
    standin.tag_snapshot(instance, "prod-root-2026-11-25-before-nginx-config")
    _, doc = run_cost("--daily-change-pct", "2", "--premaint-keep-days", "30")
    assert doc["inputs"]["premaint_count"] == 2
    # each holds min(40, 0.8 x 30) = 24 GB
    assert line(doc, "pre-maintenance snapshots")["gb_month"] == pytest.approx(48.0)


def test_pre_maintenance_snapshots_are_priced_for_the_stacks_retain_days(aws, backupctl, tmp_path):
    # snapshot tags RetainUntil with snapshots.retainDays and prune deletes after it: the estimate
    # used to assume 30 days whatever the stack said.
    account = prod_account(standin.build_instance(root_gb=40), tmp_path, snapshots={"retainDays": 10})
    standin.tag_snapshot(account, "prod-root-2026-11-24-before-php-upgrade")
    standin.tag_snapshot(account, "prod-root-2026-11-25-before-nginx-config")

    def premaint(*flags):
        doc = backupctl("cost", "--json", *account.common_args(), "--daily-change-pct", "2", *flags).json()
        return doc["assumptions"]["premaint_keep_days"], line(doc, "pre-maintenance snapshots")["gb_month"]

    assert premaint() == (10, pytest.approx(16.0))                        # 2 x min(40, 0.8 x 10)
    assert premaint("--premaint-keep-days", "30") == (30, pytest.approx(48.0))   # the flag still wins


def test_baseline_snapshots_are_not_counted_as_pre_maintenance(instance, run_cost):
    standin.tag_snapshot(instance, "prod-root-2026-11-20-before-php-upgrade")  # the baseline
    _, doc = run_cost()
    assert doc["inputs"]["premaint_count"] == 0 and doc["inputs"]["baseline_count"] == 1


def test_locked_snapshots_are_counted_when_the_lock_api_answers(instance, run_cost):
    snap_id = standin.tag_snapshot(instance, "prod-root-2026-11-24-before-php-upgrade")
    ec2 = instance.client("ec2")
    stub = PartialStubber(ec2, {"DescribeLockedSnapshots"})  # moto lacks it
    stub.add_response("describe_locked_snapshots", {"Snapshots": [
        {"SnapshotId": snap_id, "LockState": "governance", "LockDuration": 30}]}, {"SnapshotIds": [snap_id]})
    stub.activate()
    _, doc = run_cost(clients={"ec2": ec2})
    assert doc["inputs"]["locked_snapshots"] == 1
    assert not any("lock" in note for note in doc["notes"])


def test_lock_api_missing_leaves_the_lock_count_unknown_with_a_note(instance, run_cost):
    standin.tag_snapshot(instance, "prod-root-2026-11-24-before-php-upgrade")
    _, doc = run_cost()
    assert doc["inputs"]["locked_snapshots"] is None
    assert any(note.startswith("snapshot locks: unknown") for note in doc["notes"])


def test_premaint_count_flag_overrides_the_account(run_cost):
    _, doc = run_cost("--premaint-count", "5")
    assert doc["inputs"]["premaint_count"] == 5 and doc["inputs"]["premaint_source"] == "--premaint-count"


def test_volume_gb_flag_skips_the_account(run_cost):
    _, doc = run_cost("--volume-gb", "100", "--instance-id", "i-00000000000000000")
    assert doc["inputs"]["volume_gb"] == 100 and doc["inputs"]["volume_id"] is None


def test_dump_size_comes_from_latest_json(instance, run_cost):
    s3 = instance.client("s3")
    bucket = "quickport-prod-db-dumps-ap-south-1"
    standin.build_dump_bucket(REGION, bucket, hardened=False)
    s3.put_object(Bucket=bucket, Key="mysql/quickport_crm_laravel/latest.json",
                  Body=json.dumps({"bytes": 500_000_000, "manifest": "x"}).encode())
    _, doc = run_cost()
    # 30 retained dumps x 0.5 GB at 0.025 USD
    assert line(doc, "database dumps (S3)")["gb_month"] == pytest.approx(15.0)
    assert line(doc, "database dumps (S3)")["usd"] == pytest.approx(0.38, abs=0.005)


def test_without_a_dump_bucket_the_default_dump_size_is_used_and_noted(run_cost):
    _, doc = run_cost()
    assert doc["inputs"]["dump_gb"] == cost.DUMP_GB_DEFAULT
    assert any("newest dump" in note for note in doc["notes"])


def test_budget_columns_use_the_seed_assumptions(run_cost):
    _, doc = run_cost()
    # 40 GB + 6 x 5% x 40 GB = 52 GB-month
    assert line(doc, "daily recovery points")["budget_gb_month"] == pytest.approx(52.0)


def test_total_is_the_sum_of_the_backup_line_items(run_cost):
    _, doc = run_cost()
    items = [e for e in doc["lines"] if e["item"] not in ("backup total", "root volume (gp3, for scale)")]
    assert doc["total"]["usd"] == pytest.approx(sum(e["usd"] for e in items), abs=0.011)


def test_text_output_shows_inr_usd_and_budget_columns(instance, backupctl):
    result = backupctl("cost", *instance.common_args())
    out = result.out
    assert result.code == 0
    header = next(row for row in out.splitlines() if row.startswith("item"))
    assert header.split() == ["item", "GB-mo", "USD", "INR", "budget", "GB-mo", "budget", "USD", "budget", "INR"]
    assert "not verified" in out


def test_prices_of_another_region_are_flagged_in_a_note(run_cost):
    _, doc = run_cost("--region", "us-east-1", "--volume-gb", "40")
    assert any("us-east-1" in note and "--snapshot-gb-month" in note for note in doc["notes"])


def test_unknown_instance_exits_1(instance, backupctl):
    result = backupctl("cost", "--config-file", str(instance.config_file), "--instance-id", "i-0123456789abcdef0")
    assert result.code == 1 and "i-0123456789abcdef0" in result.err


@pytest.mark.parametrize("flag, value", [
    ("--usd-inr", "abc"), ("--usd-inr", "0"), ("--snapshot-gb-month", "-1"), ("--daily-change-pct", "150"),
    ("--used-pct", "nan"), ("--premaint-keep-days", "2.5"), ("--volume-gb", "0"), ("--dump-gb", "x")])
def test_bad_flag_value_exits_2_naming_the_flag(flag, value, backupctl):
    result = backupctl("cost", flag, value)
    err = result.err
    assert result.code == 2 and flag in err and "must be" in err and len(err.strip().splitlines()) == 1


def _binlog(instance, **changes):
    binlog = {**instance.stack_config()["config"]["quickport-backup:binlog"], **changes}
    instance.write_config(instance.config_file, binlog=binlog)


def test_alarms_and_metrics_are_a_fixed_monthly_line(run_cost):
    _, doc = run_cost("--usd-inr", "100")
    fee = line(doc, "alarms and metrics")
    # 5 alarms (2 + 3 binlog) x 0.10 + 6 custom metrics (3 dump + 3 binlog) x 0.30 (before the always-free tier)
    assert (fee["gb_month"], fee["usd"], fee["inr"]) == (0.0, pytest.approx(2.3), pytest.approx(230.0))
    assert doc["prices"]["alarm_usd_month"] == 0.1 and doc["prices"]["verified"] is False


def test_binlog_segments_are_kept_the_binlog_retention_plus_the_old_version_days(run_cost):
    _, doc = run_cost("--binlog-gb-day", "2")
    segments = line(doc, "binlog segments (S3)")
    # 2 GB/day x (37 days current + 7 days as the old version after expiry) at the S3 Standard price
    assert segments["gb_month"] == pytest.approx(88.0) and segments["usd"] == pytest.approx(2.2)
    assert doc["assumptions"]["binlog_gb_day"] == 2.0


def test_binlog_puts_are_four_per_interval_with_writes(instance, run_cost):
    _, doc = run_cost("--put-1000", "0.005")
    # 2880 intervals/day x (4 PUTs: segment, manifest, the head listing it, the head's confirmed point; and a
    # page per 100 segments) x 30 days = 346,464 PUTs
    assert line(doc, "binlog PUT requests")["usd"] == pytest.approx(2880 * 4.01 * 30 * 0.005 / 1000, abs=0.005)
    _binlog(instance, intervalSeconds=300, rpoBoundSeconds=300)
    _, doc = run_cost("--put-1000", "0.005")
    assert line(doc, "binlog PUT requests")["usd"] == pytest.approx(0.17, abs=0.005)


def test_index_rewrites_are_kept_by_object_lock_but_hold_one_page_at_most(run_cost):
    _, doc = run_cost()
    index = line(doc, "binlog index versions (S3)")
    # 5760 head rewrites/day (one per segment, one per interval) kept 30 days (dumps.objectLock.days), each
    # the head's 350 B and on average 50.5 of at most 100 entries at 350 B; plus every entry once in a
    # sealed page, kept as the segments (37 + 7 days): about 3.2 GB-month, where listing every segment of
    # a 37-day-old chain in every rewrite took ~1.9 TB-month.
    versions = 5760 * 30 * (350 + 50.5 * 350)
    pages = 2880 * 44 * 350
    assert index["gb_month"] == pytest.approx((versions + pages) / 1e9, abs=1e-3)
    assert index["usd"] == pytest.approx(0.08, abs=0.005)
    assert "kept 30 d (Object Lock)" in index["basis"] and "whatever the chain's age" in index["basis"]


def test_index_versions_do_not_grow_with_the_chains_age(instance, run_cost):
    _, doc = run_cost()
    before = line(doc, "binlog index versions (S3)")["gb_month"]
    _binlog(instance, retentionDays=370)   # a chain ten times older
    _, doc = run_cost()
    # Only the sealed pages are kept longer (as the segments are): 2880 entries/day x 333 more days x 350 B.
    assert line(doc, "binlog index versions (S3)")["gb_month"] - before == pytest.approx(2880 * 333 * 350 / 1e9,
                                                                                        abs=2e-3)


def test_without_binlog_shipping_there_are_no_binlog_lines_nor_alarms(instance, run_cost):
    _binlog(instance, enabled=False)
    _, doc = run_cost()
    assert not [entry for entry in doc["lines"] if entry["item"].startswith("binlog")]
    # 2 alarms x 0.10 + 3 dump metrics x 0.30
    assert line(doc, "alarms and metrics")["usd"] == pytest.approx(1.1)


def test_the_trail_costs_only_its_log_storage(run_cost):
    _, doc = run_cost("--trail-log-gb", "2")
    trail = line(doc, "CloudTrail logs (S3)")
    # 2 GB a month kept 90 days = 6 GB-month at the S3 Standard price
    assert trail["gb_month"] == pytest.approx(6.0) and trail["usd"] == pytest.approx(0.15)


def test_an_existing_trail_adds_no_storage_line(instance, run_cost):
    instance.write_config(instance.config_file, monitoring={"trail": "existing"})
    _, doc = run_cost()
    assert all(entry["item"] != "CloudTrail logs (S3)" for entry in doc["lines"])


def test_air_gapped_copies_are_priced_only_when_configured(instance, run_cost):
    _, before = run_cost()
    assert all(entry["item"] != "air-gapped copies" for entry in before["lines"])
    backup = {**instance.stack_config()["config"]["quickport-backup:backup"],
              "airGappedVault": {"minRetentionDays": 7, "maxRetentionDays": 35}}
    instance.write_config(instance.config_file, backup=backup, ebsEncryption={"defaultKmsKey": "stack"})
    _, doc = run_cost("--air-gapped-gb-month", "0.1")
    assert line(doc, "air-gapped copies")["gb_month"] == line(doc, "daily recovery points")["gb_month"]
    assert line(doc, "air-gapped copies")["usd"] == pytest.approx(2 * line(doc, "daily recovery points")["usd"],
                                                                  abs=0.01)
