"""`backupctl list`: the strategy's snapshots with their lock mode and expiry.

Snapshots live in the emulator; DescribeLockedSnapshots (which moto lacks) is answered by a PartialStubber
on the same client (checked against the EC2 service model)."""
from __future__ import annotations

import datetime as dt

import pytest

from scripts.offline.stubs import PartialStubber

EXPIRES = dt.datetime(2026, 12, 20, 8, 0, tzinfo=dt.timezone.utc)


def _snapshot(inst, tags: dict[str, str]) -> str:
    return inst.ec2.create_snapshot(VolumeId=inst.root_volume_id, TagSpecifications=[{
        "ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])["SnapshotId"]


@pytest.fixture
def three_snapshots(prod_instance):
    """One tagged by the strategy, one only named prod-root-*, one unrelated."""
    return {
        "tagged": _snapshot(prod_instance, {"Name": "prod-root-2026-11-20-before-php-upgrade",
                                            "Strategy": "quickport-backup"}),
        "named": _snapshot(prod_instance, {"Name": "prod-root-2026-11-21-before-nginx-config"}),
        "unrelated": _snapshot(prod_instance, {"Name": "someone-elses-snapshot"}),
    }


@pytest.fixture
def locks(prod_instance):
    ec2 = prod_instance.client("ec2")
    stubber = PartialStubber(ec2, {"DescribeLockedSnapshots"})
    with stubber:
        yield ec2, stubber


def test_list_shows_the_strategys_snapshots_and_not_others(prod_instance, backupctl, three_snapshots, locks):
    ec2, stubber = locks
    stubber.add_response("describe_locked_snapshots", {"Snapshots": []})

    doc = backupctl("list", "--json", *prod_instance.common_args(), clients={"ec2": ec2}).json()

    assert sorted(r["SnapshotId"] for r in doc["snapshots"]) == sorted(
        [three_snapshots["tagged"], three_snapshots["named"]])


def test_list_shows_lock_mode_and_expiry_from_describe_locked_snapshots(prod_instance, backupctl,
                                                                        three_snapshots, locks):
    ec2, stubber = locks
    tagged = three_snapshots["tagged"]
    stubber.add_response("describe_locked_snapshots", {"Snapshots": [{
        "OwnerId": "123456789012", "SnapshotId": tagged, "LockState": "governance", "LockDuration": 30,
        "LockExpiresOn": EXPIRES}]})

    result = backupctl("list", *prod_instance.common_args(), clients={"ec2": ec2})

    assert result.code == 0
    row = next(line for line in result.out.splitlines() if tagged in line)
    assert "governance" in row and "2026-12-20T08:00:00+00:00" in row
    other = next(line for line in result.out.splitlines() if three_snapshots["named"] in line)
    assert " none " in other


def test_list_asks_for_locks_of_exactly_the_listed_snapshots(prod_instance, backupctl, three_snapshots, locks):
    ec2, stubber = locks
    stubber.add_response("describe_locked_snapshots", {"Snapshots": []}, {
        "SnapshotIds": sorted([three_snapshots["named"], three_snapshots["tagged"]])})

    result = backupctl("list", *prod_instance.common_args(), clients={"ec2": ec2})

    assert result.code == 0
    stubber.assert_no_pending_responses()


def test_list_shows_lock_unknown_and_why_when_the_lock_api_is_denied(prod_instance, backupctl,
                                                                     three_snapshots, locks):
    ec2, stubber = locks
    stubber.add_client_error("describe_locked_snapshots", "UnauthorizedOperation",
                             "You are not authorized to perform this operation.")

    result = backupctl("list", *prod_instance.common_args(), clients={"ec2": ec2})

    assert result.code == 0
    assert "lock status unknown: DescribeLockedSnapshots failed: UnauthorizedOperation" in result.out
    row = next(line for line in result.out.splitlines() if three_snapshots["tagged"] in line)
    assert "unknown" in row


def test_list_json_gives_name_age_state_size_and_lock_per_snapshot(prod_instance, backupctl, three_snapshots,
                                                                   locks):
    ec2, stubber = locks
    stubber.add_response("describe_locked_snapshots", {"Snapshots": []})

    doc = backupctl("list", "--json", *prod_instance.common_args(), clients={"ec2": ec2}).json()

    row = next(r for r in doc["snapshots"] if r["SnapshotId"] == three_snapshots["tagged"])
    assert row["Name"] == "prod-root-2026-11-20-before-php-upgrade"
    # the stand-in's root volume is 20 GiB
    assert (row["State"], row["SizeGiB"], row["LockState"], row["LockExpiresOn"]) == ("completed", 20, "none", None)
    assert row["Age"].endswith("m") or row["Age"].endswith("h")


def test_list_with_no_snapshots_says_so_without_asking_for_locks(prod_instance, backupctl, locks):
    ec2, stubber = locks  # nothing queued: a lock call would make the stub fail

    result = backupctl("list", *prod_instance.common_args(), clients={"ec2": ec2})

    assert result.code == 0
    assert result.out.strip() == "no strategy snapshots in ap-south-1"
