"""`backupctl snapshot`: the pre-maintenance snapshot of the root volume and the section 8 checklist.

EC2 (instances, volumes, snapshots, EIPs, images, tags) and STS are the emulator (fixture `aws`).
LockSnapshot, which it lacks, and the snapshot states it never produces (error, pending: moto
completes snapshots at once) are answered by a PartialStubber on the same client: only the named
operations are stubbed and checked against the service model, the rest reach the emulator.
"""
from __future__ import annotations

import datetime as dt

import pytest
from botocore.stub import ANY

from scripts.offline.stubs import PartialStubber
from tests.fixtures.aws_account import strategy_snapshots

TODAY = lambda: dt.datetime.now(dt.timezone.utc).date().isoformat()  # noqa: E731


def _snapshots(ec2, name):
    return ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "tag:Name", "Values": [name]}])["Snapshots"]


def _tags(resource):
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def test_snapshot_is_of_the_root_volume_and_named_for_the_utc_date_and_action(prod_instance, backupctl):
    result = backupctl("snapshot", "--action", "php-upgrade", *prod_instance.common_args())

    assert result.code == 0, result.err
    snaps = _snapshots(prod_instance.ec2, f"prod-root-{TODAY()}-before-php-upgrade")
    assert [s["VolumeId"] for s in snaps] == [prod_instance.root_volume_id]


def test_snapshot_is_tagged_with_reason_instance_volume_creator_and_strategy(prod_instance, backupctl):
    backupctl("snapshot", "--action", "php-upgrade", *prod_instance.common_args())

    [snap] = _snapshots(prod_instance.ec2, f"prod-root-{TODAY()}-before-php-upgrade")
    tags = _tags(snap)
    assert (tags["Reason"], tags["Instance"], tags["Volume"], tags["Strategy"]) == (
        "php-upgrade", prod_instance.instance_id, prod_instance.root_volume_id, "quickport-backup")
    assert tags["CreatedBy"].startswith("arn:aws:")


def test_snapshot_records_the_elastic_ip_in_a_tag(prod_instance, backupctl):
    backupctl("snapshot", "--action", "php-upgrade", *prod_instance.common_args())

    [snap] = _snapshots(prod_instance.ec2, f"prod-root-{TODAY()}-before-php-upgrade")
    assert _tags(snap)["ElasticIp"] == f"{prod_instance.public_ip} {prod_instance.allocation_id}"


def test_snapshot_prints_a_passing_section_8_checklist(prod_instance, backupctl):
    result = backupctl("snapshot", "--action", "nginx-config", *prod_instance.common_args())

    assert result.code == 0
    for item in ("state completed", "volume is the current root volume", "instance id recorded",
                 "Elastic IP noted", "timestamp logged"):
        assert f"[ok] {item}" in result.out
    assert "checklist passed" in result.out


@pytest.mark.parametrize("action", ["PHP-Upgrade", "php upgrade", "php--upgrade", "-php", "php_upgrade",
                                    "a" * 49, ""])
def test_bad_action_name_exits_2_with_the_rule_and_creates_nothing(prod_instance, backupctl, action):
    result = backupctl("snapshot", f"--action={action}", *prod_instance.common_args())

    assert result.code == 2
    assert "lowercase kebab-case" in result.err and "48" in result.err
    assert strategy_snapshots(prod_instance.ec2) == []


def test_same_day_rerun_reuses_the_snapshot(prod_instance, backupctl):
    first = backupctl("snapshot", "--action", "php-upgrade", "--json", *prod_instance.common_args())
    second = backupctl("snapshot", "--action", "php-upgrade", "--json", *prod_instance.common_args())

    assert second.code == 0
    assert second.json()["reused"] is True
    assert second.json()["snapshot"]["SnapshotId"] == first.json()["snapshot"]["SnapshotId"]
    assert len(_snapshots(prod_instance.ec2, f"prod-root-{TODAY()}-before-php-upgrade")) == 1


def test_rerun_after_the_root_volume_changed_takes_a_new_snapshot(prod_instance, backupctl):
    first = backupctl("snapshot", "--action", "php-upgrade", "--json", *prod_instance.common_args())
    ec2 = prod_instance.ec2
    # The root volume is replaced (e.g. by a restore) between the two runs.
    ec2.stop_instances(InstanceIds=[prod_instance.instance_id])
    ec2.detach_volume(VolumeId=prod_instance.root_volume_id, InstanceId=prod_instance.instance_id)
    new_root = ec2.create_volume(AvailabilityZone="ap-south-1a", Size=8)["VolumeId"]
    ec2.attach_volume(VolumeId=new_root, InstanceId=prod_instance.instance_id, Device=prod_instance.root_device)

    second = backupctl("snapshot", "--action", "php-upgrade", "--json", *prod_instance.common_args())

    assert second.json()["reused"] is False
    assert second.json()["snapshot"]["VolumeId"] == new_root != first.json()["snapshot"]["VolumeId"]


def test_json_output_is_one_document_naming_snapshot_and_checklist(prod_instance, backupctl):
    result = backupctl("snapshot", "--action", "php-upgrade", "--json", *prod_instance.common_args())

    doc = result.json()
    assert doc["name"] == f"prod-root-{TODAY()}-before-php-upgrade"
    assert doc["snapshot"]["VolumeId"] == prod_instance.root_volume_id
    assert doc["checklist"]["ok"] is True
    assert doc["checklist"]["elastic_ip"] == {"PublicIp": prod_instance.public_ip,
                                              "AllocationId": prod_instance.allocation_id}


def test_operations_log_records_creation_timestamp_and_checklist(prod_instance, backupctl):
    result = backupctl("snapshot", "--action", "php-upgrade", "--json", *prod_instance.common_args())

    snapshot = result.json()["snapshot"]
    events = {line["event"]: line for line in prod_instance.log_lines()}
    assert events["snapshot-created"]["snapshot_id"] == snapshot["SnapshotId"]
    started = events["snapshot-timestamp"]["snapshot_started"]
    assert started == snapshot["StartTime"] and started.endswith("+00:00")
    assert events["checklist"]["ok"] is True
    assert all(line["command"] == "snapshot" and line["time"].endswith("+00:00")
               for line in prod_instance.log_lines())


def test_instance_without_elastic_ip_fails_the_checklist_with_exit_1(prod_instance_without_eip, backupctl):
    result = backupctl("snapshot", "--action", "php-upgrade", *prod_instance_without_eip.common_args())

    assert result.code == 1
    assert "[FAIL] Elastic IP noted" in result.out
    assert "checklist FAILED" in result.out


def test_unknown_instance_exits_1_and_creates_nothing(prod_instance, backupctl):
    result = backupctl("snapshot", "--action", "php-upgrade", "--instance-id", "i-0123456789abcdef0",
                       *prod_instance.common_args())

    assert result.code == 1
    assert "i-0123456789abcdef0 not found" in result.err
    assert strategy_snapshots(prod_instance.ec2) == []


def _stub_fresh_snapshot_then(stubber, name, *states):
    """The same-day lookup finds nothing; then each poll of the new snapshot returns `states`."""
    stubber.add_response("describe_snapshots", {"Snapshots": []},
                         {"OwnerIds": ["self"], "Filters": [{"Name": "tag:Name", "Values": [name, f"{name}-*"]}]})
    for state in states:
        stubber.add_response("describe_snapshots", {"Snapshots": [state]}, {"SnapshotIds": ANY})


def test_snapshot_ending_in_error_exits_1_with_the_state_message(prod_instance, backupctl):
    ec2 = prod_instance.client("ec2")
    stubber = PartialStubber(ec2, {"DescribeSnapshots"})
    name = f"prod-root-{TODAY()}-before-php-upgrade"
    _stub_fresh_snapshot_then(stubber, name, {
        "SnapshotId": "snap-0123456789abcdef0", "VolumeId": prod_instance.root_volume_id, "State": "error",
        "StateMessage": "Internal error while copying blocks", "Progress": "37%"})
    with stubber:
        result = backupctl("snapshot", "--action", "php-upgrade", *prod_instance.common_args(),
                           clients={"ec2": ec2})

    assert result.code == 1
    assert "ended in state error: Internal error while copying blocks" in result.err
    assert prod_instance.log_lines()[-1]["event"] == "snapshot-failed"


def test_wait_timeout_exits_1_and_says_how_to_check_later(prod_instance, backupctl):
    ec2 = prod_instance.client("ec2")
    stubber = PartialStubber(ec2, {"DescribeSnapshots"})
    pending = {"SnapshotId": "snap-0123456789abcdef0", "VolumeId": prod_instance.root_volume_id,
               "State": "pending", "Progress": "12%"}
    _stub_fresh_snapshot_then(stubber, f"prod-root-{TODAY()}-before-php-upgrade", pending, pending, pending)
    with stubber:
        result = backupctl("snapshot", "--action", "php-upgrade", "--timeout", "0.001",
                           *prod_instance.common_args(), clients={"ec2": ec2})

    assert result.code == 1
    assert "not completed after 0.001 minutes (last progress 12%)" in result.err
    assert "backupctl verify" in result.err


def _snapshot_and_lock(prod_instance, backupctl, answer: dict, request: dict, *flags: str):
    """`backupctl snapshot --action php-upgrade FLAGS...` where LockSnapshot, which moto lacks, answers
    `answer`; it must be called, once, with `request`."""
    ec2 = prod_instance.client("ec2")
    stubber = PartialStubber(ec2, {"LockSnapshot"})
    stubber.add_response("lock_snapshot", {"SnapshotId": "snap-0123456789abcdef0", **answer},
                         {"SnapshotId": ANY, **request})
    with stubber:
        result = backupctl("snapshot", "--action", "php-upgrade", *flags, *prod_instance.common_args(),
                           clients={"ec2": ec2})
        stubber.assert_no_pending_responses()
    return result


def test_lock_option_locks_the_completed_snapshot_in_governance_mode(prod_instance, backupctl):
    result = _snapshot_and_lock(prod_instance, backupctl, {"LockState": "governance", "LockDuration": 14},
                                {"LockMode": "governance", "LockDuration": 14},
                                "--lock", "governance", "--lock-days", "14", "--json")

    assert result.code == 0, result.err
    assert result.json()["locks"][0]["LockState"] == "governance"


def test_lock_option_without_days_exits_2_before_any_snapshot(prod_instance, backupctl):
    result = backupctl("snapshot", "--action", "php-upgrade", "--lock", "governance",
                       *prod_instance.common_args())

    assert result.code == 2
    assert "--lock-days is required" in result.err
    assert strategy_snapshots(prod_instance.ec2) == []


def test_compliance_lock_option_without_yes_exits_2_before_any_snapshot(prod_instance, backupctl):
    result = backupctl("snapshot", "--action", "php-upgrade", "--lock", "compliance", "--lock-days", "7",
                       *prod_instance.common_args())

    assert result.code == 2
    assert "--yes" in result.err
    assert strategy_snapshots(prod_instance.ec2) == []


def test_timeout_must_be_positive_minutes(prod_instance, backupctl):
    result = backupctl("snapshot", "--action", "php-upgrade", "--timeout", "0", *prod_instance.common_args())

    assert result.code == 2
    assert "--timeout" in result.err and "more than 0" in result.err


def test_unwritable_operations_log_fails_the_timestamp_item(prod_instance, backupctl, tmp_path):
    not_a_directory = tmp_path / "plain-file"
    not_a_directory.write_text("")

    result = backupctl("snapshot", "--action", "php-upgrade", "--config-file", str(prod_instance.config_file),
                       "--log-file", str(not_a_directory / "operations.jsonl"))

    assert result.code == 1
    assert "[FAIL] timestamp logged" in result.out
    assert "could not write operations log" in result.err


def test_compliance_lock_option_with_yes_sends_the_cool_off_period(prod_instance, backupctl):
    result = _snapshot_and_lock(prod_instance, backupctl, {"LockState": "compliance-cooloff"},
                                {"LockMode": "compliance", "LockDuration": 30, "CoolOffPeriod": 12},
                                "--lock", "compliance", "--lock-days", "30", "--cool-off-hours", "12", "--yes")

    assert result.code == 0, result.err
