"""ec2ops.wait_snapshot_completed: progress, error, timeout and eventual consistency.

moto completes snapshots at once, so the states in between come from a botocore Stubber (checked
against the EC2 service model). Time is injected (clock/sleep) so no test waits for real.
"""
from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from scripts.aws import ec2 as ec2ops
from scripts.errors import CommandError

SNAP = "snap-0123456789abcdef0"


class FakeTime:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def stubbed():
    ec2 = boto3.client("ec2", region_name="ap-south-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(ec2) as stubber:
        yield ec2, stubber


def _state(stubber, state, progress, message=None):
    snap = {"SnapshotId": SNAP, "VolumeId": "vol-0123456789abcdef0", "State": state, "Progress": progress}
    if message:
        snap["StateMessage"] = message
    stubber.add_response("describe_snapshots", {"Snapshots": [snap]}, {"SnapshotIds": [SNAP]})


def test_wait_reports_each_new_progress_percent_until_completed(stubbed):
    ec2, stubber = stubbed
    for state, progress in (("pending", "0%"), ("pending", "40%"), ("pending", "40%"), ("completed", "100%")):
        _state(stubber, state, progress)
    lines: list[str] = []
    t = FakeTime()

    snap = ec2ops.wait_snapshot_completed(ec2, SNAP, 3600, lines.append, clock=t.clock, sleep=t.sleep)

    assert snap["State"] == "completed"
    assert [line.split(": ", 1)[1] for line in lines] == ["pending 0%", "pending 40%", "completed (100%)"]


def test_wait_polls_every_15_seconds_by_default(stubbed):
    ec2, stubber = stubbed
    _state(stubber, "pending", "5%")
    _state(stubber, "completed", "100%")
    t = FakeTime()

    ec2ops.wait_snapshot_completed(ec2, SNAP, 3600, clock=t.clock, sleep=t.sleep)

    assert t.sleeps == [15.0]


def test_wait_outlasts_the_boto3_waiters_ten_minutes(stubbed):
    ec2, stubber = stubbed
    for _ in range(60):  # 60 polls x 15 s = 15 minutes pending: the stock waiter gives up at 10
        _state(stubber, "pending", "50%")
    _state(stubber, "completed", "100%")
    t = FakeTime()

    snap = ec2ops.wait_snapshot_completed(ec2, SNAP, 60 * 60, clock=t.clock, sleep=t.sleep)

    assert snap["State"] == "completed" and t.now == 15 * 60


def test_wait_fails_on_state_error_with_the_state_message(stubbed):
    ec2, stubber = stubbed
    _state(stubber, "pending", "10%")
    _state(stubber, "error", "10%", message="The volume was deleted during the snapshot")
    t = FakeTime()

    with pytest.raises(CommandError, match="ended in state error: The volume was deleted during the snapshot"):
        ec2ops.wait_snapshot_completed(ec2, SNAP, 3600, clock=t.clock, sleep=t.sleep)


def test_wait_gives_up_at_the_timeout_without_sleeping_past_it(stubbed):
    ec2, stubber = stubbed
    for _ in range(3):
        _state(stubber, "pending", "70%")
    t = FakeTime()

    with pytest.raises(CommandError, match=r"not completed after 0.5 minutes \(last progress 70%\)"):
        ec2ops.wait_snapshot_completed(ec2, SNAP, 30, clock=t.clock, sleep=t.sleep)
    assert t.sleeps == [15.0, 15.0] and t.now == 30


def test_wait_tolerates_a_just_created_snapshot_not_yet_visible(stubbed):
    ec2, stubber = stubbed
    stubber.add_client_error("describe_snapshots", "InvalidSnapshot.NotFound", "does not exist",
                             expected_params={"SnapshotIds": [SNAP]})
    _state(stubber, "completed", "100%")
    t = FakeTime()

    assert ec2ops.wait_snapshot_completed(ec2, SNAP, 3600, clock=t.clock, sleep=t.sleep)["State"] == "completed"


def test_wait_fails_when_the_snapshot_stays_missing(stubbed):
    ec2, stubber = stubbed
    for _ in range(12):
        stubber.add_client_error("describe_snapshots", "InvalidSnapshot.NotFound", "does not exist",
                                 expected_params={"SnapshotIds": [SNAP]})
    t = FakeTime()

    with pytest.raises(CommandError, match="no longer exists"):
        ec2ops.wait_snapshot_completed(ec2, SNAP, 3600, clock=t.clock, sleep=t.sleep)
