"""The EC2 snapshot-lock dynamic provider.

moto has no LockSnapshot / DescribeLockedSnapshots / UnlockSnapshot, so every EC2 call goes to a real
boto3 client wrapped in botocore's Stubber: it checks each request against the EC2 service model
(names, types, ranges) and the expected parameters, and answers with model-valid responses.
"""
from __future__ import annotations

import base64
import datetime as dt
import pickletools
import subprocess
import sys

import boto3
import pytest
from botocore.stub import Stubber

from components.config import REPO_ROOT
from components.snapshot_lock import EbsSnapshotLock, EbsSnapshotLockArgs, EbsSnapshotLockProvider, SnapshotLockError

SNAP = "snap-0123456789abcdef0"
OTHER_SNAP = "snap-0fedcba9876543210"
LOCK_TYPE = "pulumi-python:dynamic/quickport:EbsSnapshotLock"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _lock_info(state: str, days: int, *, expires_in_days: float | None = None, cool_off: int | None = None,
               snapshot_id: str = SNAP) -> dict:
    """One lock as EC2 describes it (LockSnapshotResult and LockedSnapshotsInfo share these fields)."""
    created = _now()
    info = {"SnapshotId": snapshot_id, "LockState": state, "LockDuration": days,
            "LockCreatedOn": created, "LockDurationStartTime": created,
            "LockExpiresOn": created + dt.timedelta(days=days if expires_in_days is None else expires_in_days)}
    if cool_off:
        info["CoolOffPeriod"] = cool_off
        info["CoolOffPeriodExpiresOn"] = created + dt.timedelta(hours=cool_off)
    return info


def _described(*locks: dict) -> dict:
    return {"Snapshots": [{"OwnerId": "123456789012", **lock} for lock in locks]}


@pytest.fixture
def ec2():
    client = boto3.client("ec2", region_name="ap-south-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    with Stubber(client) as stubber:
        yield client, stubber


@pytest.fixture
def provider(ec2):
    client, _ = ec2
    return EbsSnapshotLockProvider(client_factory=lambda region: client)


def _expect_describe(stubber, *locks, snapshot_id=SNAP):
    stubber.add_response("describe_locked_snapshots", _described(*locks), {"SnapshotIds": [snapshot_id]})


def _inputs(mode="governance", days=30, cool_off_hours=0, snapshot_id=SNAP, region="ap-south-1"):
    return {"snapshot_id": snapshot_id, "mode": mode, "days": days, "cool_off_hours": cool_off_hours,
            "region": region}


# --- create -----------------------------------------------------------------------------------------

def test_create_locks_snapshot_in_governance_without_cool_off_period(ec2, provider):
    _, stubber = ec2
    _expect_describe(stubber)
    stubber.add_response("lock_snapshot", _lock_info("governance", 30),
                         {"SnapshotId": SNAP, "LockMode": "governance", "LockDuration": 30})

    result = provider.create(_inputs())

    stubber.assert_no_pending_responses()
    assert result.id == SNAP
    assert (result.outs["lock_mode"], result.outs["lock_state"], result.outs["lock_duration_days"]) == \
        ("governance", "governance", 30)


def test_create_reports_lock_expiry_as_utc_iso_string(ec2, provider):
    _, stubber = ec2
    lock = _lock_info("governance", 30)
    _expect_describe(stubber)
    stubber.add_response("lock_snapshot", lock)

    outs = provider.create(_inputs()).outs

    assert outs["lock_expires_on"] == lock["LockExpiresOn"].isoformat().replace("+00:00", "Z")


def test_create_compliance_lock_sends_cool_off_period(ec2, provider):
    _, stubber = ec2
    _expect_describe(stubber)
    stubber.add_response("lock_snapshot", _lock_info("compliance-cooloff", 90, cool_off=24),
                         {"SnapshotId": SNAP, "LockMode": "compliance", "LockDuration": 90, "CoolOffPeriod": 24})

    outs = provider.create(_inputs("compliance", 90, 24)).outs

    stubber.assert_no_pending_responses()
    assert (outs["lock_mode"], outs["lock_state"], outs["cool_off_period_hours"]) == \
        ("compliance", "compliance-cooloff", 24)


def test_create_turns_engine_float_numbers_into_model_integers(ec2, provider):
    # The engine hands numbers over as protobuf doubles; botocore rejects 30.0 for an integer member.
    _, stubber = ec2
    _expect_describe(stubber)
    stubber.add_response("lock_snapshot", _lock_info("governance", 30),
                         {"SnapshotId": SNAP, "LockMode": "governance", "LockDuration": 30})

    provider.create(_inputs(days=30.0, cool_off_hours=0.0))

    stubber.assert_no_pending_responses()


def test_create_adopts_existing_lock_with_same_mode_and_later_expiry(ec2, provider):
    _, stubber = ec2
    _expect_describe(stubber, _lock_info("governance", 60))

    result = provider.create(_inputs(days=30))

    stubber.assert_no_pending_responses()   # no LockSnapshot call was made
    assert (result.id, result.outs["lock_duration_days"]) == (SNAP, 60)


def test_create_relocks_when_existing_lock_expires_sooner(ec2, provider):
    _, stubber = ec2
    _expect_describe(stubber, _lock_info("governance", 30, expires_in_days=5))
    stubber.add_response("lock_snapshot", _lock_info("governance", 30),
                         {"SnapshotId": SNAP, "LockMode": "governance", "LockDuration": 30})

    provider.create(_inputs(days=30))

    stubber.assert_no_pending_responses()


def test_create_over_a_lapsed_compliance_cool_off_omits_cool_off_period(ec2, provider):
    # EC2 fails a LockSnapshot that names CoolOffPeriod for a compliance lock past its cooling-off period.
    _, stubber = ec2
    _expect_describe(stubber, _lock_info("compliance", 10, expires_in_days=2))
    stubber.add_response("lock_snapshot", _lock_info("compliance", 30),
                         {"SnapshotId": SNAP, "LockMode": "compliance", "LockDuration": 30})

    provider.create(_inputs("compliance", 30, 12))

    stubber.assert_no_pending_responses()


def test_create_governance_over_compliance_lock_is_refused(ec2, provider):
    _, stubber = ec2
    _expect_describe(stubber, _lock_info("compliance", 10))

    with pytest.raises(SnapshotLockError, match=r"compliance mode .* keep mode compliance"):
        provider.create(_inputs("governance", 30))
    stubber.assert_no_pending_responses()


def test_create_failure_from_ec2_is_one_line_naming_the_snapshot(ec2, provider):
    _, stubber = ec2
    _expect_describe(stubber)
    stubber.add_client_error("lock_snapshot", "IncorrectState", "The snapshot is in an incorrect state.")

    with pytest.raises(SnapshotLockError) as failure:
        provider.create(_inputs())
    assert str(failure.value) == f"LockSnapshot {SNAP} failed: IncorrectState: The snapshot is in an incorrect state."


def test_clients_are_built_for_the_region_in_the_inputs(ec2):
    client, stubber = ec2
    regions = []
    provider = EbsSnapshotLockProvider(client_factory=lambda region: regions.append(region) or client)
    _expect_describe(stubber)
    stubber.add_response("lock_snapshot", _lock_info("governance", 30))

    provider.create(_inputs(region="ap-south-1"))

    assert regions == ["ap-south-1"]


# --- read -------------------------------------------------------------------------------------------

def test_read_returns_the_live_lock(ec2, provider):
    _, stubber = ec2
    _expect_describe(stubber, _lock_info("governance", 45))

    result = provider.read(SNAP, {**_inputs(days=30), "lock_duration_days": 30})

    assert (result.id, result.outs["lock_duration_days"], result.outs["lock_mode"]) == (SNAP, 45, "governance")


def test_read_reports_an_expired_lock_as_gone(ec2, provider):
    _, stubber = ec2
    _expect_describe(stubber, _lock_info("expired", 30, expires_in_days=-1))

    result = provider.read(SNAP, _inputs())

    assert result.id == ""


def test_read_reports_a_lock_removed_outside_pulumi_as_gone(ec2, provider):
    _, stubber = ec2
    _expect_describe(stubber)

    assert provider.read(SNAP, _inputs()).id == ""


def test_read_reports_a_deleted_snapshot_as_gone(ec2, provider):
    _, stubber = ec2
    stubber.add_client_error("describe_locked_snapshots", "InvalidSnapshot.NotFound",
                             f"The snapshot '{SNAP}' does not exist.")

    assert provider.read(SNAP, _inputs()).id == ""


# --- diff / update ----------------------------------------------------------------------------------

def _state(mode="governance", days=30, cool_off_hours=0, state=None, live_days=None):
    return {**_inputs(mode, days, cool_off_hours), "lock_mode": mode, "lock_state": state or mode,
            "lock_duration_days": live_days or days, "cool_off_period_hours": cool_off_hours}


def test_diff_longer_duration_updates_in_place(provider):
    diff = provider.diff(SNAP, _state(days=30), _inputs(days=60))
    assert (diff.changes, diff.replaces) == (True, [])


def test_diff_another_snapshot_replaces_the_lock(provider):
    diff = provider.diff(SNAP, _state(), _inputs(snapshot_id=OTHER_SNAP))
    assert diff.replaces == ["snapshot_id"]


def test_diff_same_inputs_is_no_change(provider):
    diff = provider.diff(SNAP, _state(), _inputs(days=30.0))
    assert diff.changes is False


def test_diff_adopted_longer_lock_is_no_change(provider):
    diff = provider.diff(SNAP, _state(days=30, live_days=60), _inputs(days=30))
    assert diff.changes is False


def test_diff_lock_shortened_outside_pulumi_is_an_update(provider):
    diff = provider.diff(SNAP, _state(days=30, live_days=7), _inputs(days=30))
    assert (diff.changes, diff.replaces) == (True, [])


def test_diff_shortening_compliance_lock_after_cool_off_fails_the_preview(ec2, provider):
    _, stubber = ec2
    _expect_describe(stubber, _lock_info("compliance", 60))

    with pytest.raises(SnapshotLockError, match=r"only allows extending it"):
        provider.diff(SNAP, _state("compliance", 60), _inputs("compliance", 30))


def test_diff_downgrading_compliance_lock_during_cool_off_is_an_update(ec2, provider):
    _, stubber = ec2
    _expect_describe(stubber, _lock_info("compliance-cooloff", 30, cool_off=24))

    diff = provider.diff(SNAP, _state("compliance", 30, 24, "compliance-cooloff"), _inputs("governance", 30))

    assert (diff.changes, diff.replaces) == (True, [])

def test_update_extending_days_relocks_in_place(ec2, provider):
    _, stubber = ec2
    _expect_describe(stubber, _lock_info("governance", 30))
    stubber.add_response("lock_snapshot", _lock_info("governance", 60),
                         {"SnapshotId": SNAP, "LockMode": "governance", "LockDuration": 60})

    outs = provider.update(SNAP, _state(days=30), _inputs(days=60)).outs

    stubber.assert_no_pending_responses()
    assert outs["lock_duration_days"] == 60


def test_update_governance_to_compliance_relocks_with_cool_off(ec2, provider):
    _, stubber = ec2
    _expect_describe(stubber, _lock_info("governance", 30))
    stubber.add_response("lock_snapshot", _lock_info("compliance-cooloff", 30, cool_off=12),
                         {"SnapshotId": SNAP, "LockMode": "compliance", "LockDuration": 30, "CoolOffPeriod": 12})

    outs = provider.update(SNAP, _state(), _inputs("compliance", 30, 12)).outs

    stubber.assert_no_pending_responses()
    assert outs["lock_mode"] == "compliance"


def test_update_extending_compliance_lock_after_cool_off_omits_cool_off_period(ec2, provider):
    _, stubber = ec2
    _expect_describe(stubber, _lock_info("compliance", 30, cool_off=12))
    stubber.add_response("lock_snapshot", _lock_info("compliance", 60),
                         {"SnapshotId": SNAP, "LockMode": "compliance", "LockDuration": 60})

    provider.update(SNAP, _state("compliance", 30, 12), _inputs("compliance", 60, 12))

    stubber.assert_no_pending_responses()


def _update_after_cool_off_is_refused(ec2, provider, days: int, wanted: tuple[str, int], match: str) -> None:
    """An update of a `days`-day compliance lock past its cool-off to `wanted` (mode, days) raises `match`,
    having only described the lock."""
    _, stubber = ec2
    _expect_describe(stubber, _lock_info("compliance", days))

    with pytest.raises(SnapshotLockError, match=match):
        provider.update(SNAP, _state("compliance", days), _inputs(*wanted))
    stubber.assert_no_pending_responses()


def test_update_shortening_compliance_lock_after_cool_off_is_refused(ec2, provider):
    _update_after_cool_off_is_refused(ec2, provider, 60, ("compliance", 30),
                                      r"only allows extending it: days must be at least 60, not 30")


def test_update_compliance_to_governance_after_cool_off_is_refused(ec2, provider):
    _update_after_cool_off_is_refused(ec2, provider, 30, ("governance", 30),
                                      r"does not allow changing it to governance")


def test_update_compliance_to_governance_during_cool_off_relocks(ec2, provider):
    _, stubber = ec2
    _expect_describe(stubber, _lock_info("compliance-cooloff", 30, cool_off=24))
    stubber.add_response("lock_snapshot", _lock_info("governance", 30),
                         {"SnapshotId": SNAP, "LockMode": "governance", "LockDuration": 30})

    outs = provider.update(SNAP, _state("compliance", 30, 24, "compliance-cooloff"), _inputs("governance", 30)).outs

    assert outs["lock_state"] == "governance"


# --- delete -----------------------------------------------------------------------------------------

def test_delete_governance_lock_unlocks_the_snapshot(ec2, provider):
    _, stubber = ec2
    _expect_describe(stubber, _lock_info("governance", 30))
    stubber.add_response("unlock_snapshot", {"SnapshotId": SNAP}, {"SnapshotId": SNAP})

    provider.delete(SNAP, _state())

    stubber.assert_no_pending_responses()


def test_delete_compliance_lock_is_refused_naming_its_expiry(ec2, provider):
    _, stubber = ec2
    lock = _lock_info("compliance", 30)
    _expect_describe(stubber, lock)

    with pytest.raises(SnapshotLockError) as refused:
        provider.delete(SNAP, _state("compliance", 30))

    stubber.assert_no_pending_responses()   # and no UnlockSnapshot was queued or made
    message = str(refused.value)
    assert lock["LockExpiresOn"].isoformat().replace("+00:00", "Z") in message
    assert "pulumi state delete" in message


def test_delete_compliance_lock_during_cool_off_unlocks(ec2, provider):
    _, stubber = ec2
    _expect_describe(stubber, _lock_info("compliance-cooloff", 30, cool_off=24))
    stubber.add_response("unlock_snapshot", {"SnapshotId": SNAP}, {"SnapshotId": SNAP})

    provider.delete(SNAP, _state("compliance", 30, 24, "compliance-cooloff"))

    stubber.assert_no_pending_responses()


def test_delete_after_the_lock_expired_succeeds_without_unlocking(ec2, provider):
    _, stubber = ec2
    _expect_describe(stubber, _lock_info("expired", 30, expires_in_days=-1))

    provider.delete(SNAP, _state("compliance", 30))

    stubber.assert_no_pending_responses()


# --- check ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, allowed", [
    ("mode", "legal-hold", "must be one of governance, compliance"),
    ("days", 0, "must be a whole number from 1 to 36500"),
    ("days", 36501, "must be a whole number from 1 to 36500"),
    ("days", 7.5, "must be a whole number from 1 to 36500"),
    ("cool_off_hours", 73, "must be a whole number from 0 to 72"),
    ("snapshot_id", "vol-0123456789abcdef0", "must be an EBS snapshot id like snap-0123456789abcdef0"),
])
def test_check_rejects_out_of_range_input_naming_field_and_allowed_values(provider, field, value, allowed):
    news = {**_inputs("compliance"), field: value}

    failures = provider.check({}, news).failures

    assert [(f.property, f.reason) for f in failures] == [(field, f"{field} = {value!r}: {allowed}")]


def test_check_rejects_cool_off_for_governance_mode(provider):
    failures = provider.check({}, _inputs("governance", 30, 12)).failures
    assert [f.property for f in failures] == ["cool_off_hours"]


def test_check_accepts_valid_inputs_and_normalises_engine_floats(provider):
    result = provider.check({}, _inputs("compliance", 30.0, 24.0))
    assert (result.failures, result.inputs["days"], result.inputs["cool_off_hours"]) == ([], 30, 24)


def test_check_leaves_values_unknown_during_preview_unchecked(provider):
    unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"   # pulumi.runtime.rpc.UNKNOWN
    assert provider.check({}, _inputs(snapshot_id=unknown)).failures == []


# --- the resource on the engine, and the provider as the SDK serializes it ------------------------

def test_resource_registers_on_the_mock_engine_with_its_inputs(run_component):
    declared = run_component(lambda: EbsSnapshotLock(
        "baseline-lock", EbsSnapshotLockArgs(snapshot_id=SNAP, mode="compliance", days=90, cool_off_hours=24)))

    lock = declared.one(LOCK_TYPE, "baseline-lock")
    assert {k: lock.inputs[k] for k in ("snapshot_id", "mode", "days", "cool_off_hours", "region")} == \
        {"snapshot_id": SNAP, "mode": "compliance", "days": 90, "cool_off_hours": 24, "region": "ap-south-1"}


def test_resource_takes_snapshot_id_from_another_resource_output(run_component):
    import pulumi_aws as aws

    def program():
        snap = aws.ebs.Snapshot("baseline", volume_id="vol-0123456789abcdef0")
        EbsSnapshotLock("baseline-lock", EbsSnapshotLockArgs(snapshot_id=snap.id, mode="governance", days=30))

    declared = run_component(program)

    snapshot = declared.one("aws:ebs/snapshot:Snapshot", "baseline")
    lock = declared.one(LOCK_TYPE, "baseline-lock")
    assert (lock.inputs["snapshot_id"], lock.property_dependencies["snapshot_id"]) == ("baseline-id", [snapshot.urn])


def test_resource_with_bad_plain_input_fails_at_declaration(run_component):
    with pytest.raises(ValueError, match=r"days = 0: must be a whole number from 1 to 36500"):
        run_component(lambda: EbsSnapshotLock("bad", EbsSnapshotLockArgs(SNAP, "governance", 0)))


def _serialized_provider() -> str:
    from pulumi.dynamic.dynamic import serialize_provider
    from pulumi.runtime._serialization import _serialize
    serialized, _ = _serialize(True, serialize_provider, EbsSnapshotLockProvider())
    return serialized


def test_serialized_provider_captures_no_boto3_client():
    globals_named = [arg for op, arg, _ in pickletools.genops(base64.b64decode(_serialized_provider()))
                     if op.name in ("GLOBAL", "STACK_GLOBAL") or (op.name.endswith("UNICODE") and arg)]
    assert not [name for name in globals_named if "botocore" in str(name) or "boto3" in str(name)]


# --- the real dynamic-provider process (`python -m pulumi.dynamic`, as the engine starts it) --------

@pytest.fixture(scope="module")
def provider_process():
    """The SDK's dynamic-provider gRPC server, started in the project directory like the engine does."""
    import grpc
    from pulumi.runtime.proto import provider_pb2_grpc

    process = subprocess.Popen([sys.executable, "-u", "-m", "pulumi.dynamic"], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, text=True)
    try:
        port = process.stdout.readline().strip()
        assert port.isdigit(), f"dynamic provider did not report a port: {port!r}"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield provider_pb2_grpc.ResourceProviderStub(channel)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _struct(values: dict):
    from google.protobuf import struct_pb2
    struct = struct_pb2.Struct()
    struct.update(values)   # numbers become doubles, exactly as the engine sends them
    return struct


LOCK_URN = f"urn:pulumi:prod::quickport-backup::{LOCK_TYPE}::baseline-lock"


def test_engine_process_check_names_the_bad_field_as_a_whole_number(provider_process):
    from pulumi.runtime.proto import provider_pb2
    news = {**_inputs(days=0), "__provider": _serialized_provider()}

    response = provider_process.Check(provider_pb2.CheckRequest(urn=LOCK_URN, olds=_struct({}), news=_struct(news)))

    assert [(f.property, f.reason) for f in response.failures] == \
        [("days", "days = 0: must be a whole number from 1 to 36500")]


def test_engine_process_diff_for_another_snapshot_is_a_replacement(provider_process):
    from pulumi.runtime.proto import provider_pb2
    provider_str = _serialized_provider()
    olds = {**_state(), "__provider": provider_str}
    news = {**_inputs(snapshot_id=OTHER_SNAP), "__provider": provider_str}

    response = provider_process.Diff(provider_pb2.DiffRequest(id=SNAP, urn=LOCK_URN, olds=_struct(olds),
                                                              news=_struct(news)))

    assert (response.changes, list(response.replaces)) == (provider_pb2.DiffResponse.DIFF_SOME, ["snapshot_id"])
