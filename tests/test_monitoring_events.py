"""The event rules, for real: each pattern on a moto EventBridge rule with an SQS target, AWS's sample
events (and near-misses) sent with PutEvents, what arrived read back from SQS.

moto delivers to SQS (not to SNS), so the queue stands in for the alerts topic. The input transformer:
moto fills the template and json-loads it, but inserts values unescaped and leaves placeholders of
missing paths as they are, so for the message check the test renders the template itself (a tiny
JSONPath subset: dots, dashes, [n]; values JSON-escaped as EventBridge does to keep the output valid
JSON; a missing path as "") and compares that with what moto delivered wherever moto can render it.
"""
from __future__ import annotations

import json
import re
from typing import Any, Optional

import pytest

from components.config import load_stack_config
from components.signals import BUCKET_WEAKENING_CALLS, EventRuleSpec, event_rule_specs
from tests.fixtures.aws_account import client
from tests.fixtures.event_samples import (
    BACKUP_JOB_FAILED,
    CLOUDTRAIL_API_CALL,
    COMMAND_INVOCATION,
    COPY_JOB_FAILED,
    INSTANCE_ASSOCIATION,
    RECYCLE_BIN_RULE_LOCKED,
    RESTORE_JOB_FAILED,
    VERBATIM,
    variant,
)

CFG = load_stack_config("prod")
DOCUMENT = "quickport-prod-backup-dump"
BUCKETS = [CFG.dumps.bucket_name, CFG.monitoring.trail_bucket_name]
SPECS = {spec.key: spec for spec in event_rule_specs("prod", DOCUMENT, BUCKETS)}
TEST_PLAN = "arn:aws:backup:ap-south-1:123456789012:restore-testing-plan:quickport_prod_daily_restore_test-1a2b"


def api_call(call: str, source: str = "aws.ec2", event_source: str = "ec2.amazonaws.com",
             **request: Any) -> dict:
    return variant(CLOUDTRAIL_API_CALL, source=source, detail__eventSource=event_source, detail__eventName=call,
                   detail__requestParameters=request or None)


def dump_run(sample: dict, status: str, document: str = DOCUMENT) -> dict:
    return variant(sample, **{"detail__document-name": document, "detail__status": status})


# (rule, event, should it alert)
CASES = [
    ("backup-job-failed", BACKUP_JOB_FAILED, True),
    *[("backup-job-failed", variant(BACKUP_JOB_FAILED, detail__state=s), True) for s in ("ABORTED", "EXPIRED",
                                                                                          "PARTIAL")],
    ("backup-job-failed", variant(BACKUP_JOB_FAILED, detail__state="COMPLETED"), False),
    ("backup-job-failed", variant(BACKUP_JOB_FAILED, detail__state="RUNNING"), False),
    ("backup-job-failed", COPY_JOB_FAILED, False),
    ("copy-job-failed", COPY_JOB_FAILED, True),
    ("copy-job-failed", variant(COPY_JOB_FAILED, detail__state="PARTIAL"), True),
    ("copy-job-failed", variant(COPY_JOB_FAILED, detail__state="COMPLETED"), False),
    ("copy-job-failed", BACKUP_JOB_FAILED, False),
    ("restore-job-failed", RESTORE_JOB_FAILED, True),
    ("restore-job-failed", variant(RESTORE_JOB_FAILED, detail__status="ABORTED"), True),
    ("restore-job-failed", variant(RESTORE_JOB_FAILED, detail__status="COMPLETED"), False),
    ("restore-job-failed", variant(RESTORE_JOB_FAILED, detail__restoreTestingPlanArn=TEST_PLAN), False),
    ("restore-test-failed", variant(RESTORE_JOB_FAILED, detail__restoreTestingPlanArn=TEST_PLAN), True),
    ("restore-test-failed", RESTORE_JOB_FAILED, False),
    ("restore-test-failed", variant(RESTORE_JOB_FAILED, detail__status="COMPLETED",
                                    detail__restoreTestingPlanArn=TEST_PLAN), False),
    *[("dump-command-failed", dump_run(COMMAND_INVOCATION, s), True) for s in ("Failed", "TimedOut", "Cancelled")],
    ("dump-command-failed", dump_run(COMMAND_INVOCATION, "Success"), False),
    ("dump-command-failed", dump_run(COMMAND_INVOCATION, "InProgress"), False),
    ("dump-command-failed", dump_run(COMMAND_INVOCATION, "Failed", document="AWS-RunShellScript"), False),
    ("dump-command-failed", COMMAND_INVOCATION, False),
    ("dump-association-failed", dump_run(INSTANCE_ASSOCIATION, "Failed"), True),
    ("dump-association-failed", dump_run(INSTANCE_ASSOCIATION, "Success"), False),
    ("dump-association-failed", dump_run(INSTANCE_ASSOCIATION, "Failed", document="my-custom-document"), False),
    ("dump-association-failed", INSTANCE_ASSOCIATION, False),
    *[("recycle-bin-unlock", variant(RECYCLE_BIN_RULE_LOCKED, detail_type=t, **{"detail__api-name": "UnlockRule"}),
       True) for t in ("Recycle Bin Rule Unlock Scheduled", "Recycle Bin Rule Unlocked",
                       "Recycle Bin Rule Change Attempted")],
    ("recycle-bin-unlock", RECYCLE_BIN_RULE_LOCKED, False),
    ("weakening-api-call", api_call("UnlockSnapshot", snapshotId="snap-0123456789abcdef0"), True),
    ("weakening-api-call", api_call("DisableSnapshotBlockPublicAccess"), True),
    ("weakening-api-call", api_call("DisableEbsEncryptionByDefault"), True),
    ("weakening-api-call", api_call("DeleteBackupVaultLockConfiguration", "aws.backup", "backup.amazonaws.com",
                                    backupVaultName="quickport-prod-vault"), True),
    ("weakening-api-call", api_call("PutBackupVaultAccessPolicy", "aws.backup", "backup.amazonaws.com",
                                    backupVaultName="quickport-prod-vault"), True),
    ("weakening-api-call", api_call("StopLogging", "aws.cloudtrail", "cloudtrail.amazonaws.com",
                                    name="quickport-prod-management-events"), True),
    ("weakening-api-call", api_call("DeleteAlarms", "aws.cloudwatch", "monitoring.amazonaws.com"), True),
    ("weakening-api-call", api_call("DisableRule", "aws.events", "events.amazonaws.com"), True),
    ("weakening-api-call", api_call("LockSnapshot", snapshotId="snap-0123456789abcdef0"), False),
    ("weakening-api-call", api_call("DescribeBackupVault", "aws.backup", "backup.amazonaws.com"), False),
    ("weakening-api-call", variant(api_call("UnlockSnapshot"), detail_type="EC2 Snapshot Notification"), False),
    ("weakening-api-call", CLOUDTRAIL_API_CALL, False),
    *[("dump-bucket-weakened", api_call(n, "aws.s3", "s3.amazonaws.com", bucketName=CFG.dumps.bucket_name), True)
      for n in BUCKET_WEAKENING_CALLS],
    ("dump-bucket-weakened", api_call("PutBucketPolicy", "aws.s3", "s3.amazonaws.com",
                                      bucketName=CFG.monitoring.trail_bucket_name), True),
    ("dump-bucket-weakened", api_call("PutBucketPolicy", "aws.s3", "s3.amazonaws.com",
                                      bucketName="someone-elses-bucket"), False),
    ("dump-bucket-weakened", api_call("GetBucketPolicy", "aws.s3", "s3.amazonaws.com",
                                      bucketName=CFG.dumps.bucket_name), False),
    # The API names, not CloudTrail's: S3 records these as PutBucketLifecycle / PutBucketObjectLockConfiguration.
    ("dump-bucket-weakened", api_call("PutBucketLifecycleConfiguration", "aws.s3", "s3.amazonaws.com",
                                      bucketName=CFG.dumps.bucket_name), False),
    ("dump-bucket-weakened", CLOUDTRAIL_API_CALL, False),
]


def _case_id(case) -> str:
    rule, event, match = case
    what = event["detail"].get("eventName") or event["detail"].get("state") or event["detail"].get("status") \
        or event["detail-type"]
    return f"{rule}-{what}-{'alerts' if match else 'quiet'}"


def wire_rule(spec: EventRuleSpec, transform: bool = False) -> tuple[Any, str]:
    """The rule with the stack's exact pattern, targeting a new queue; returns (sqs client, queue url)."""
    events, sqs = client("events"), client("sqs")
    url = sqs.create_queue(QueueName=f"alerts-{spec.key}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=spec.key, EventPattern=json.dumps(spec.pattern), State="ENABLED")
    target: dict[str, Any] = {"Id": "alerts", "Arn": arn}
    if transform:
        target["InputTransformer"] = {"InputPathsMap": spec.input_paths, "InputTemplate": spec.input_template()}
    assert events.put_targets(Rule=spec.key, Targets=[target])["FailedEntryCount"] == 0
    return sqs, url


def send(event: dict) -> None:
    result = client("events").put_events(Entries=[{
        "Source": event["source"], "DetailType": event["detail-type"], "Detail": json.dumps(event["detail"]),
        "Resources": event.get("resources", [])}])
    assert result["FailedEntryCount"] == 0, result


def received(sqs, url: str) -> list[Any]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_rule_alerts_on_failures_and_stays_quiet_otherwise(aws, case):
    rule, event, should_alert = case
    sqs, url = wire_rule(SPECS[rule])
    send(event)
    delivered = received(sqs, url)
    assert len(delivered) == (1 if should_alert else 0)
    if should_alert:
        assert delivered[0]["detail"] == event["detail"]


def test_every_rule_alerts_on_some_case_and_every_verbatim_sample_is_sent():
    assert {rule for rule, _, alert in CASES if alert} == set(SPECS)
    sent = [event for _, event, _ in CASES]
    for name, sample in VERBATIM.items():
        assert sample in sent, name
    # The job samples are failures as published: they must alert unchanged.
    for sample in (BACKUP_JOB_FAILED, COPY_JOB_FAILED, RESTORE_JOB_FAILED):
        assert any(event is sample and alert for _, event, alert in CASES)


# --- the message ------------------------------------------------------------------------------------

_PATH_PART = re.compile(r"([A-Za-z0-9_-]+)(?:\[(\d+)\])?")


def lookup(event: dict, path: str) -> Optional[Any]:
    """EventBridge's JSONPath subset used by the rules: $.a.b-c.d[0]."""
    value: Any = event
    for part in path.removeprefix("$.").split("."):
        name, index = _PATH_PART.fullmatch(part).groups()  # type: ignore[union-attr]
        value = value.get(name) if isinstance(value, dict) else None
        if index is not None:
            value = value[int(index)] if isinstance(value, list) and len(value) > int(index) else None
        if value is None:
            return None
    return value


def render(spec: EventRuleSpec, event: dict) -> dict:
    text = spec.input_template()
    for name, path in spec.input_paths.items():
        value = lookup(event, path)
        plain = "" if value is None else value if isinstance(value, str) else json.dumps(value)
        text = text.replace(f"<{name}>", json.dumps(plain)[1:-1])
    return json.loads(text)


MESSAGE_CASES = [
    ("backup-job-failed", BACKUP_JOB_FAILED, {
        "alert": "AWS Backup backup job FAILED",
        "resource": "arn:aws:service:us-west-2:1112233445566:resource-type/resource-id",
        "vault": "9ab3e749-82c6-4342-9320-5edbf4918b86", "job": "34176239-e96d-4e1d-9fad-529dbb3c3556",
        "when": "2020-07-29T20:15:26Z", "account": "1112233445566 us-west-2"}),
    ("copy-job-failed", COPY_JOB_FAILED, {
        "alert": "AWS Backup copy job FAILED", "reason": "Access denied exception while trying to list tags",
        "resource": "arn:aws:ec2:us-west-2:1112233445566:instance/i-0515aee7de03f58e1"}),
    ("restore-job-failed", RESTORE_JOB_FAILED, {
        "alert": "AWS Backup restore job FAILED", "resource": "arn:aws:ec2:us-west-2::image/ami-12b3456dfb7f8cf90",
        "job": "1B234A56-789B-01CD-2A34-4567A08901FD"}),
    ("restore-test-failed", variant(RESTORE_JOB_FAILED, detail__restoreTestingPlanArn=TEST_PLAN), {
        "alert": "Weekly restore test FAILED", "plan": TEST_PLAN}),
    ("dump-command-failed", dump_run(COMMAND_INVOCATION, "TimedOut"), {
        "alert": f"Nightly dump command TimedOut ({DOCUMENT})", "instance": "i-9bb89e2b",
        "command": "e8d3c0e4-71f7-4491-898f-c9b35bee5f3b", "when": "2016-07-10T21:51:32Z"}),
    ("dump-association-failed", dump_run(INSTANCE_ASSOCIATION, "Failed"), {
        "alert": f"Nightly dump association Failed ({DOCUMENT})", "instance": "i-12345678",
        "summary": "testExecutionSummary"}),
    ("recycle-bin-unlock", variant(RECYCLE_BIN_RULE_LOCKED, detail_type="Recycle Bin Rule Unlock Scheduled",
                                   **{"detail__api-name": "UnlockRule"}), {
        "alert": "Recycle Bin Rule Unlock Scheduled", "rule": "a12345abcde", "call": "UnlockRule"}),
    ("weakening-api-call", api_call("UnlockSnapshot", snapshotId="snap-0123456789abcdef0"), {
        "alert": "API call that weakens the backups: UnlockSnapshot", "by": "arn:aws:iam::123456789012:root",
        "from": "100.100.100.100", "snapshot": "snap-0123456789abcdef0", "error": "", "vault": ""}),
    ("dump-bucket-weakened", api_call("PutBucketLifecycle", "aws.s3", "s3.amazonaws.com",
                                      bucketName=CFG.dumps.bucket_name), {
        "alert": "API call that weakens the backups: PutBucketLifecycle", "bucket": CFG.dumps.bucket_name,
        "when": "2016-02-20T01:09:13Z"}),
]


@pytest.mark.parametrize("rule, event, expected", MESSAGE_CASES, ids=[c[0] for c in MESSAGE_CASES])
def test_message_says_what_failed_when_which_resource_and_the_runbook(rule, event, expected):
    message = render(SPECS[rule], event)
    assert {k: message[k] for k in expected} == expected
    assert message["runbook"] == f"docs/monitoring.md#{rule}"


def test_a_status_message_with_quotes_still_renders_valid_json():
    # The verbatim FAILED sample's statusMessage is itself quoted.
    message = render(SPECS["backup-job-failed"], BACKUP_JOB_FAILED)
    assert message["reason"] == BACKUP_JOB_FAILED["detail"]["statusMessage"]


def test_every_message_case_covers_every_rule():
    assert {rule for rule, _, _ in MESSAGE_CASES} == set(SPECS)


# moto renders values unescaped, so only events without quotes in their values go through it.
MOTO_RENDERABLE = [c for c in MESSAGE_CASES if '\\"' not in json.dumps(c[1])]


@pytest.mark.parametrize("rule, event, expected", MOTO_RENDERABLE, ids=[c[0] for c in MOTO_RENDERABLE])
def test_moto_delivers_the_same_message_through_the_input_transformer(aws, rule, event, expected):
    spec = SPECS[rule]
    sqs, url = wire_rule(spec, transform=True)
    send(event)
    [delivered] = received(sqs, url)
    mine = render(spec, event)
    # moto builds its own envelope (time, account, region) and leaves a missing path's <name> in place.
    envelope = {"$.time", "$.account", "$.region"}
    for key, template in {**spec.message, "runbook": ""}.items():
        paths = {spec.input_paths[name] for name in re.findall(r"<([a-z-]+)>", template)}
        if paths & envelope:
            continue
        if mine[key] == "":
            assert delivered[key] in ("", template), key
        else:
            assert delivered[key] == mine[key], key
