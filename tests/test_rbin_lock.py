"""The Recycle Bin rule-lock dynamic provider.

moto has no Recycle Bin at all, so every call goes to a real boto3 rbin client wrapped in the
model-checked PartialStubber (requests checked against the rbin service model and the expected
parameters, responses validated against its output shapes). UnlockRule is among the stubbed
operations with nothing queued for it: a call to it would fail the test.
"""
from __future__ import annotations

import datetime as dt

import boto3
import pytest

from components.rbin_lock import RecycleBinRuleLock, RecycleBinRuleLockArgs, RecycleBinRuleLockProvider, RuleLockError
from scripts.offline.stubs import PartialStubber

RULE = "a12345abcde"
LOCK_TYPE = "pulumi-python:dynamic/quickport:RecycleBinRuleLock"


def _rule(lock_state=None, delay=None, **extra) -> dict:
    rule = {"Identifier": RULE, "ResourceType": "EBS_SNAPSHOT", "Status": "available",
            "RetentionPeriod": {"RetentionPeriodValue": 7, "RetentionPeriodUnit": "DAYS"},
            "RuleArn": f"arn:aws:rbin:ap-south-1:123456789012:rule/{RULE}", **extra}
    if lock_state:
        rule["LockState"] = lock_state
    if delay:
        rule["LockConfiguration"] = {"UnlockDelay": {"UnlockDelayValue": delay, "UnlockDelayUnit": "DAYS"}}
    return rule


@pytest.fixture
def rbin():
    client = boto3.client("rbin", region_name="ap-south-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    with PartialStubber(client, {"GetRule", "LockRule", "UnlockRule"}) as stubber:
        yield client, stubber


@pytest.fixture
def provider(rbin):
    client, _ = rbin
    return RecycleBinRuleLockProvider(client_factory=lambda region: client)


def _inputs(days=7, rule_id=RULE):
    return {"rule_id": rule_id, "unlock_delay_days": days, "region": "ap-south-1"}


def _expect_get(stubber, rule):
    stubber.add_response("get_rule", rule, {"Identifier": RULE})


def _expect_lock(stubber, days=7):
    stubber.add_response("lock_rule", {k: v for k, v in _rule("locked", days).items()},
                         {"Identifier": RULE, "LockConfiguration": {"UnlockDelay": {"UnlockDelayValue": days,
                                                                                    "UnlockDelayUnit": "DAYS"}}})


# --- create -----------------------------------------------------------------------------------------

def test_create_locks_a_rule_the_provider_left_unlocked(rbin, provider):
    _, stubber = rbin
    _expect_get(stubber, _rule())          # never locked: no LockState at all
    _expect_lock(stubber, 7)
    result = provider.create(_inputs())
    stubber.assert_no_pending_responses()
    assert (result.id, result.outs["lock_state"], result.outs["locked_unlock_delay_days"]) == (RULE, "locked", 7)


def test_create_adopts_a_rule_already_locked_with_the_delay(rbin, provider):
    _, stubber = rbin
    _expect_get(stubber, _rule("locked", 7))
    result = provider.create(_inputs())
    stubber.assert_no_pending_responses()   # no LockRule call
    assert result.outs["lock_state"] == "locked"


def test_create_adopts_a_longer_unlock_delay(rbin, provider):
    _, stubber = rbin
    _expect_get(stubber, _rule("locked", 14))
    assert provider.create(_inputs(7)).outs["locked_unlock_delay_days"] == 14


def test_create_relocks_a_rule_someone_started_unlocking(rbin, provider):
    _, stubber = rbin
    _expect_get(stubber, _rule("pending_unlock", 7, LockEndTime=dt.datetime.now(dt.timezone.utc)))
    _expect_lock(stubber, 7)
    provider.create(_inputs())
    stubber.assert_no_pending_responses()


def test_create_relocks_an_unlocked_rule(rbin, provider):
    _, stubber = rbin
    _expect_get(stubber, _rule("unlocked", 7))
    _expect_lock(stubber, 10)
    provider.create(_inputs(10))
    stubber.assert_no_pending_responses()


def test_a_locked_rules_shorter_delay_cannot_be_raised_and_says_how(rbin, provider):
    _, stubber = rbin
    _expect_get(stubber, _rule("locked", 7))
    with pytest.raises(RuleLockError, match=r"locked with an unlock delay of 7 days; the delay of a locked rule "
                                            r"cannot be changed to 14: .*aws rbin unlock-rule"):
        provider.create(_inputs(14))
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize("extra, reason", [
    ({"ResourceTags": [{"ResourceTagKey": "Strategy", "ResourceTagValue": "quickport-backup"}]}, "tag-level"),
    ({"ExcludeResourceTags": [{"ResourceTagKey": "Keep", "ResourceTagValue": "no"}]}, "exclusion tags"),
])
def test_rules_recycle_bin_cannot_lock_are_refused_before_calling_it(rbin, provider, extra, reason):
    _, stubber = rbin
    _expect_get(stubber, _rule(**extra))
    with pytest.raises(RuleLockError, match=reason):
        provider.create(_inputs())
    stubber.assert_no_pending_responses()


def test_missing_rule_is_one_line(rbin, provider):
    _, stubber = rbin
    stubber.add_client_error("get_rule", "ResourceNotFoundException", "no such rule", 404)
    with pytest.raises(RuleLockError, match=f"^Recycle Bin rule {RULE} does not exist$"):
        provider.create(_inputs())


def test_lock_rule_refusal_is_one_line_naming_the_rule(rbin, provider):
    _, stubber = rbin
    _expect_get(stubber, _rule())
    stubber.add_client_error("lock_rule", "ConflictException", "The rule is not available", 409)
    with pytest.raises(RuleLockError) as raised:
        provider.create(_inputs())
    assert str(raised.value) == f"LockRule {RULE} failed: ConflictException: The rule is not available"


# --- read, diff, update, delete -----------------------------------------------------------------

def test_read_reports_the_live_lock_state(rbin, provider):
    _, stubber = rbin
    _expect_get(stubber, _rule("pending_unlock", 7))
    result = provider.read(RULE, _inputs())
    assert (result.id, result.outs["lock_state"]) == (RULE, "pending_unlock")


def test_read_of_a_deleted_rule_reports_the_lock_gone(rbin, provider):
    _, stubber = rbin
    stubber.add_client_error("get_rule", "ResourceNotFoundException", "gone", 404)
    assert provider.read(RULE, _inputs()).id == ""


def test_an_unlocked_rule_seen_by_refresh_is_a_change_the_next_up_relocks(rbin, provider):
    _, stubber = rbin
    olds = {**_inputs(), "lock_state": "pending_unlock"}
    assert provider.diff(RULE, olds, _inputs()).changes is True
    _expect_get(stubber, _rule("pending_unlock", 7))
    _expect_lock(stubber, 7)
    assert provider.update(RULE, olds, _inputs()).outs["lock_state"] == "locked"
    stubber.assert_no_pending_responses()


def test_a_locked_rule_is_no_change(provider):
    assert provider.diff(RULE, {**_inputs(), "lock_state": "locked"}, _inputs()).changes is False


def test_raising_the_delay_of_a_locked_rule_fails_at_preview(rbin, provider):
    _, stubber = rbin
    _expect_get(stubber, _rule("locked", 7))
    with pytest.raises(RuleLockError, match="cannot be changed to 30"):
        provider.diff(RULE, {**_inputs(7), "lock_state": "locked"}, _inputs(30))


def test_another_rule_replaces_the_lock(provider):
    diff = provider.diff(RULE, {**_inputs(), "lock_state": "locked"}, _inputs(rule_id="b98765zyxwv"))
    assert diff.replaces == ["rule_id"]


def test_delete_never_unlocks(rbin, provider):
    _, stubber = rbin
    provider.delete(RULE, {**_inputs(), "lock_state": "locked"})
    stubber.assert_no_pending_responses()   # and UnlockRule (stubbed, nothing queued) was not called


@pytest.mark.parametrize("props, field", [
    ({"rule_id": "short"}, "rule_id"), ({"unlock_delay_days": 6}, "unlock_delay_days"),
    ({"unlock_delay_days": 31}, "unlock_delay_days"), ({"unlock_delay_days": 7.5}, "unlock_delay_days"),
    ({"region": "Mumbai"}, "region")])
def test_check_names_the_bad_field(provider, props, field):
    result = provider.check({}, {**_inputs(), **props})
    [failure] = result.failures
    assert failure.property == field and failure.reason.startswith(f"{field} = ")


def test_check_turns_engine_floats_into_integers(provider):
    assert provider.check({}, {**_inputs(), "unlock_delay_days": 7.0}).inputs["unlock_delay_days"] == 7


# --- the component ------------------------------------------------------------------------------

def test_each_locked_rule_gets_a_protected_lock_on_its_id(prod_stack):
    locks = prod_stack.of_type(LOCK_TYPE)
    rules = {r.urn: r for r in prod_stack.of_type("aws:rbin/rule:Rule")}
    assert len(locks) == 2 and all(lock.protect for lock in locks)
    for lock in locks:
        [rule_urn] = lock.property_dependencies["rule_id"]
        assert lock.inputs["rule_id"] == rules[rule_urn].id
        assert lock.inputs["unlock_delay_days"] == 7


def test_no_lock_resources_when_the_config_says_no_lock(stack_with, prod_config):
    declared = stack_with({"quickport-backup:recycleBin": {**prod_config["quickport-backup:recycleBin"],
                                                           "lock": False}})
    assert declared.of_type(LOCK_TYPE) == []


def test_a_bad_plain_delay_fails_at_declaration(run_component):
    with pytest.raises(ValueError, match="unlock_delay_days = 3: must be a whole number from 7 to 30"):
        run_component(lambda: RecycleBinRuleLock("l", RecycleBinRuleLockArgs(rule_id=RULE, unlock_delay_days=3)))


# --- the provider as the SDK serializes it, in the real dynamic-provider process ---------------------

def _serialized_provider() -> str:
    from pulumi.dynamic.dynamic import serialize_provider
    from pulumi.runtime._serialization import _serialize
    serialized, _ = _serialize(True, serialize_provider, RecycleBinRuleLockProvider())
    return serialized


def test_serialized_provider_captures_no_boto3_client():
    import base64
    import pickletools
    names = [arg for op, arg, _ in pickletools.genops(base64.b64decode(_serialized_provider()))
             if op.name in ("GLOBAL", "STACK_GLOBAL") or (op.name.endswith("UNICODE") and arg)]
    assert "components.rbin_lock" in names
    assert not [n for n in names if "botocore" in str(n) or "boto3" in str(n)]


def test_engine_process_check_names_the_bad_delay(tmp_path):
    import subprocess
    import sys

    import grpc
    from google.protobuf import struct_pb2
    from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

    from components.config import REPO_ROOT
    process = subprocess.Popen([sys.executable, "-u", "-m", "pulumi.dynamic"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               text=True)
    try:
        port = process.stdout.readline().strip()
        news = struct_pb2.Struct()
        news.update({**_inputs(days=45), "__provider": _serialized_provider()})   # numbers as doubles
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            response = provider_pb2_grpc.ResourceProviderStub(channel).Check(provider_pb2.CheckRequest(
                urn=f"urn:pulumi:prod::quickport-backup::{LOCK_TYPE}::l", olds=struct_pb2.Struct(), news=news))
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert [(f.property, f.reason) for f in response.failures] == [
        ("unlock_delay_days", "unlock_delay_days = 45: must be a whole number from 7 to 30")]
