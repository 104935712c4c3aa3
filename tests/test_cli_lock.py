"""`backupctl lock` / `unlock`: EBS snapshot locks.

Snapshots live in the emulator; LockSnapshot, UnlockSnapshot and DescribeLockedSnapshots (which it
lacks) are answered by a PartialStubber on the same client, so every request is checked against the EC2
service model and the test fails if an operation is called that was not expected.
"""
from __future__ import annotations

import datetime as dt
import time

import pytest

from scripts.offline import standin
from scripts.offline.stubs import PartialStubber

LOCK_OPS = {"LockSnapshot", "UnlockSnapshot", "DescribeLockedSnapshots"}
NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def snapshot_id(prod_instance) -> str:
    """Today's php-upgrade snapshot, tagged as `backupctl snapshot` tags one."""
    today = dt.datetime.now(dt.timezone.utc).date()
    return standin.tag_snapshot(prod_instance, f"prod-root-{today}-before-php-upgrade")


@pytest.fixture
def locks(prod_instance):
    """An ec2 client on the emulator whose lock operations are stubbed."""
    ec2 = prod_instance.client("ec2")
    stubber = PartialStubber(ec2, LOCK_OPS)
    with stubber:
        yield ec2, stubber


def _lock_info(snapshot_id: str, state: str, **extra) -> dict:
    return {"Snapshots": [{"OwnerId": "123456789012", "SnapshotId": snapshot_id, "LockState": state,
                           "LockDuration": 30, "LockCreatedOn": NOW,
                           "LockExpiresOn": NOW + dt.timedelta(days=30), **extra}]}


def _same_name_of_another_instance(prod_instance, name: str) -> str:
    """A snapshot named like ours but tagged OTHER (made by hand, or two runs racing), started after
    ours (StartTime has whole seconds)."""
    time.sleep(1.1)
    return standin.tag_snapshot(prod_instance, name, Instance="i-0fedcba9876543210")


def test_governance_lock_sends_mode_and_duration_without_cool_off(prod_instance, backupctl, snapshot_id, locks):
    ec2, stubber = locks
    stubber.add_response("lock_snapshot", {"SnapshotId": snapshot_id, "LockState": "governance",
                                           "LockDuration": 30, "LockExpiresOn": NOW + dt.timedelta(days=30)},
                         {"SnapshotId": snapshot_id, "LockMode": "governance", "LockDuration": 30})

    result = backupctl("lock", snapshot_id, "--mode", "governance", "--days", "30",
                       *prod_instance.common_args(), clients={"ec2": ec2})

    assert result.code == 0, result.err
    stubber.assert_no_pending_responses()
    assert f"Locked {snapshot_id}" in result.out and "governance until 2026-12-26" in result.out


@pytest.mark.parametrize("another_instance_shares_the_name", [False, True])
def test_lock_by_name_locks_this_instances_snapshot(prod_instance, backupctl, snapshot_id, locks,
                                                    another_instance_shares_the_name):
    ec2, stubber = locks
    name = f"prod-root-{dt.datetime.now(dt.timezone.utc).date()}-before-php-upgrade"
    if another_instance_shares_the_name:
        _same_name_of_another_instance(prod_instance, name)   # newer: the old lookup took this one
    stubber.add_response("lock_snapshot", {"SnapshotId": snapshot_id, "LockState": "governance"},
                         {"SnapshotId": snapshot_id, "LockMode": "governance", "LockDuration": 7})

    result = backupctl("lock", name, "--mode", "governance", "--days", "7", *prod_instance.common_args(),
                       clients={"ec2": ec2})

    assert result.code == 0, result.err
    stubber.assert_no_pending_responses()


def test_compliance_lock_without_yes_prints_the_plan_and_locks_nothing(prod_instance, backupctl, snapshot_id,
                                                                         locks):
    ec2, stubber = locks  # nothing queued: any lock call would fail the command

    result = backupctl("lock", snapshot_id, "--mode", "compliance", "--days", "30",
                       *prod_instance.common_args(), clients={"ec2": ec2})

    assert result.code == 2
    assert "Would lock" in result.out and "COMPLIANCE" in result.out and "--yes" in result.out
    assert not any(line["event"] == "snapshot-locked" for line in prod_instance.log_lines())


def test_compliance_lock_with_yes_sends_the_cool_off_period(prod_instance, backupctl, snapshot_id, locks):
    ec2, stubber = locks
    stubber.add_response("lock_snapshot", {"SnapshotId": snapshot_id, "LockState": "compliance-cooloff",
                                           "CoolOffPeriod": 24, "LockDuration": 30},
                         {"SnapshotId": snapshot_id, "LockMode": "compliance", "LockDuration": 30,
                          "CoolOffPeriod": 24})

    result = backupctl("lock", snapshot_id, "--mode", "compliance", "--days", "30", "--cool-off-hours", "24",
                       "--yes", "--json", *prod_instance.common_args(), clients={"ec2": ec2})

    assert result.code == 0, result.err
    stubber.assert_no_pending_responses()
    assert result.json()["lock"]["LockState"] == "compliance-cooloff"


def test_cool_off_hours_with_governance_exits_2(prod_instance, backupctl, snapshot_id):
    result = backupctl("lock", snapshot_id, "--mode", "governance", "--days", "30", "--cool-off-hours", "24",
                       *prod_instance.common_args())

    assert result.code == 2
    assert "only applies to mode compliance" in result.err


@pytest.mark.parametrize("days", ["0", "36501", "ten"])
def test_lock_days_outside_1_to_36500_exits_2(prod_instance, backupctl, snapshot_id, days):
    result = backupctl("lock", snapshot_id, "--mode", "governance", "--days", days, *prod_instance.common_args())

    assert result.code == 2
    assert "--days" in result.err and "1 to 36500" in result.err


def test_lock_of_an_unknown_snapshot_exits_1(prod_instance, backupctl):
    result = backupctl("lock", "snap-0123456789abcdef0", "--mode", "governance", "--days", "7",
                       *prod_instance.common_args())

    assert result.code == 1
    assert "not found" in result.err


def test_lock_writes_an_operations_log_line(prod_instance, backupctl, snapshot_id, locks):
    ec2, stubber = locks
    stubber.add_response("lock_snapshot", {"SnapshotId": snapshot_id, "LockState": "governance"},
                         {"SnapshotId": snapshot_id, "LockMode": "governance", "LockDuration": 30})

    backupctl("lock", snapshot_id, "--mode", "governance", "--days", "30", *prod_instance.common_args(),
              clients={"ec2": ec2})

    last = prod_instance.log_lines()[-1]
    assert (last["command"], last["event"], last["snapshot_id"], last["mode"], last["days"]) == (
        "lock", "snapshot-locked", snapshot_id, "governance", 30)


def test_unlock_of_a_governance_lock_unlocks_it(prod_instance, backupctl, snapshot_id, locks):
    ec2, stubber = locks
    stubber.add_response("describe_locked_snapshots", _lock_info(snapshot_id, "governance"),
                         {"SnapshotIds": [snapshot_id]})
    stubber.add_response("unlock_snapshot", {"SnapshotId": snapshot_id}, {"SnapshotId": snapshot_id})

    result = backupctl("unlock", snapshot_id, *prod_instance.common_args(), clients={"ec2": ec2})

    assert result.code == 0, result.err
    stubber.assert_no_pending_responses()
    assert f"Unlocked {snapshot_id} (was governance)" in result.out


def test_unlock_of_a_compliance_lock_is_refused_with_its_expiry(prod_instance, backupctl, snapshot_id, locks):
    ec2, stubber = locks
    stubber.add_response("describe_locked_snapshots", _lock_info(
        snapshot_id, "compliance", CoolOffPeriod=24, CoolOffPeriodExpiresOn=NOW - dt.timedelta(hours=1)),
        {"SnapshotIds": [snapshot_id]})
    # No unlock_snapshot response is queued: calling it would be answered with a stub error.

    result = backupctl("unlock", snapshot_id, *prod_instance.common_args(), clients={"ec2": ec2})

    assert result.code == 1
    assert "locked in compliance mode until 2026-12-26T12:00:00+00:00" in result.err
    assert "cannot be removed by anyone" in result.err
    assert prod_instance.log_lines()[-1]["event"] == "unlock-refused"


def test_unlock_during_the_compliance_cooling_off_period_is_allowed(prod_instance, backupctl, snapshot_id,
                                                                      locks):
    ec2, stubber = locks
    stubber.add_response("describe_locked_snapshots", _lock_info(
        snapshot_id, "compliance-cooloff", CoolOffPeriod=24, CoolOffPeriodExpiresOn=NOW + dt.timedelta(hours=23)),
        {"SnapshotIds": [snapshot_id]})
    stubber.add_response("unlock_snapshot", {"SnapshotId": snapshot_id}, {"SnapshotId": snapshot_id})

    result = backupctl("unlock", snapshot_id, *prod_instance.common_args(), clients={"ec2": ec2})

    assert result.code == 0, result.err
    stubber.assert_no_pending_responses()


def test_unlock_of_an_unlocked_snapshot_changes_nothing(prod_instance, backupctl, snapshot_id, locks):
    ec2, stubber = locks
    stubber.add_response("describe_locked_snapshots", {"Snapshots": []}, {"SnapshotIds": [snapshot_id]})

    result = backupctl("unlock", snapshot_id, "--json", *prod_instance.common_args(), clients={"ec2": ec2})

    assert result.code == 0
    assert result.json() == {"SnapshotId": snapshot_id, "LockState": None, "unlocked": False}


def test_unlock_of_a_malformed_reference_exits_2(prod_instance, backupctl):
    result = backupctl("unlock", "snap-XYZ", *prod_instance.common_args())

    assert result.code == 2
    assert "snap-<8 or 17 hex digits>" in result.err


def test_unlock_denied_by_the_guard_rails_says_it_is_a_break_glass_step(prod_instance, backupctl, snapshot_id,
                                                                        locks):
    ec2, stubber = locks
    stubber.add_response("describe_locked_snapshots", _lock_info(snapshot_id, "governance"),
                         {"SnapshotIds": [snapshot_id]})
    stubber.add_client_error("unlock_snapshot", "UnauthorizedOperation",
                             "You are not authorized to perform this operation.",
                             expected_params={"SnapshotId": snapshot_id})

    result = backupctl("unlock", snapshot_id, *prod_instance.common_args(), clients={"ec2": ec2})

    assert result.code == 1
    assert "UnauthorizedOperation" in result.err and "break-glass" in result.err


def test_unlock_by_a_name_no_snapshot_of_this_instance_has_alone_exits_2_listing_them(prod_instance, backupctl,
                                                                                      snapshot_id, locks):
    ec2, stubber = locks   # no UnlockSnapshot expected: the stubber fails the test if one is sent
    name = f"prod-root-{dt.datetime.now(dt.timezone.utc).date()}-before-php-upgrade"
    second = standin.tag_snapshot(prod_instance, name)   # two of this instance's own with the name

    result = backupctl("unlock", name, *prod_instance.common_args(), clients={"ec2": ec2})

    assert result.code == 2, result.err
    assert "2 snapshots have that name" in result.err and snapshot_id in result.err and second in result.err
    assert "give one by id" in result.err and len(result.err.strip().splitlines()) == 1
