"""The dead-man's switch as data: which metrics, alarms and events say that a backup did not happen.

Pulumi-free on purpose: the BackupMonitoring component declares these, `backupctl audit` checks the
alarms by the same names, and the docs table (docs/monitoring.md) is the same list. The agent
(scripts/agent/quickport_dump.py) publishes the dump metrics under METRICS_NAMESPACE; it keeps its
own copy of the name (it imports nothing of ours) and tests/test_components_monitoring.py holds the
two equal.

Every alarm treats missing data as breaching: silence is a failure, never "no news is good news".
Every event rule sends one JSON object to the alerts topic, with what failed, when, which resource and
the runbook line (docs/monitoring.md has one section per rule and alarm).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

METRICS_NAMESPACE = "QuickportBackup"
DUMP_METRICS = ("DumpSucceeded", "DumpBytes", "DumpDurationSeconds")
# Published by the point-in-time shipper (scripts/agent/binlog_ship.py) under the same namespace and dimensions.
BINLOG_METRICS = ("BinlogShipLagSeconds", "BinlogChainBroken", "BinlogSegmentsShipped")
# The shipper's default quickport-backup:binlog.intervalSeconds. The binlog alarms are declared when
# binlog.enabled (BackupMonitoringArgs.from_config passes binlog.intervalSeconds); without a shipper
# they would sit in ALARM for ever (missing data is breaching).
BINLOG_INTERVAL_SECONDS = 30
BINLOG_LAG_INTERVALS = 4            # "behind by more than a few intervals"
BINLOG_SILENT_MINUTES = 10
# A daily job plus two hours of slack for its start window and run time (audit's --max-age-hours).
DAILY_WINDOW_HOURS = 26
RUNBOOK = "docs/monitoring.md"


@dataclass(frozen=True)
class AlarmSpec:
    """One CloudWatch metric alarm, with what it catches and how long a failure can go unseen."""
    key: str                         # the alarm is named quickport-<stack>-<key>
    catches: str
    unseen: str
    namespace: str
    metric: str
    dimensions: dict[str, str]
    statistic: str
    period: int                      # seconds
    evaluation_periods: int
    threshold: float
    comparison: str
    datapoints_to_alarm: Optional[int] = None   # None: all evaluation periods
    treat_missing_data: str = "breaching"

    def description(self) -> str:
        return f"{self.catches} Runbook: {RUNBOOK}#{self.key}"


@dataclass(frozen=True)
class EventRuleSpec:
    """One EventBridge rule on the default bus, its message and how long a failure can go unseen."""
    key: str                         # the rule is named quickport-<stack>-<key>
    catches: str
    unseen: str
    pattern: dict[str, Any]
    input_paths: dict[str, str]
    message: dict[str, str]          # the input template: a JSON object, <name> for input_paths
    needs_trail: bool = False        # "AWS API Call via CloudTrail" events need a logging trail
    samples: tuple[str, ...] = field(default=())  # names of the AWS documentation samples it matches

    def input_template(self) -> str:
        """The JSON object template EventBridge fills in (placeholders inside quotes: strings)."""
        import json
        return json.dumps({**self.message, "runbook": f"{RUNBOOK}#{self.key}"}, indent=1)


def resource_name(stack: str, key: str) -> str:
    """Alarm and rule names: quickport-<stack>-<key> (EventBridge allows 64 characters)."""
    return f"quickport-{stack}-{key}"[:64]


def _nothing_for_a_day(**spec: Any) -> AlarmSpec:
    """Hourly sums below 1 for DAILY_WINDOW_HOURS periods in a row: nothing happened for that long."""
    return AlarmSpec(statistic="Sum", period=3600, evaluation_periods=DAILY_WINDOW_HOURS, threshold=1.0,
                     comparison="LessThanThreshold", **spec)


def alarm_specs(stack: str, database: str, vault_name: str,
                binlog_interval_seconds: Optional[int] = None) -> list[AlarmSpec]:
    """The stack's alarms. Binlog alarms only with binlog_interval_seconds (see BINLOG_INTERVAL_SECONDS)."""
    ours = {"Stack": stack, "Database": database}
    specs = [
        _nothing_for_a_day(
            key="dump-missing",
            catches=f"No successful database dump of {database} in {DAILY_WINDOW_HOURS} hours: the dump "
                    "failed, or never ran (SSM agent or association dead, instance stopped, role broken, "
                    "metrics not published).",
            unseen=f"{DAILY_WINDOW_HOURS + 1} h after the last good dump (about 3 h after the missed 02:00 IST run)",
            namespace=METRICS_NAMESPACE, metric="DumpSucceeded", dimensions=ours),
        _nothing_for_a_day(
            key="backup-job-missing",
            catches=f"No completed AWS Backup job into vault {vault_name} in {DAILY_WINDOW_HOURS} hours: the "
                    "plan, its selection or its role stopped working without a failed job to report. "
                    "AWS/Backup has no per-instance dimension; the vault receives only this instance's plan.",
            unseen=f"{DAILY_WINDOW_HOURS + 1} h after the last completed job (AWS/Backup publishes every 5 min)",
            namespace="AWS/Backup", metric="NumberOfBackupJobsCompleted",
            dimensions={"BackupVaultName": vault_name, "ResourceType": "EC2"}),
    ]
    if binlog_interval_seconds:
        lag = BINLOG_LAG_INTERVALS * binlog_interval_seconds
        specs += [
            AlarmSpec(
                key="binlog-lag",
                catches=f"Binlog shipping of {database} is more than {lag} s ({BINLOG_LAG_INTERVALS} intervals) "
                        "behind for 3 minutes: point-in-time recovery would lose that much.",
                unseen="3 min after the lag passes the threshold",
                namespace=METRICS_NAMESPACE, metric="BinlogShipLagSeconds", dimensions=ours,
                statistic="Maximum", period=60, evaluation_periods=3, threshold=float(lag),
                comparison="GreaterThanThreshold"),
            AlarmSpec(
                key="binlog-silent",
                catches=f"The binlog shipper of {database} published nothing for {BINLOG_SILENT_MINUTES} minutes "
                        "(stopped, crashed, or cannot reach CloudWatch).",
                unseen=f"{BINLOG_SILENT_MINUTES} min after its last report",
                namespace=METRICS_NAMESPACE, metric="BinlogShipLagSeconds", dimensions=ours,
                statistic="SampleCount", period=60, evaluation_periods=BINLOG_SILENT_MINUTES, threshold=1.0,
                comparison="LessThanThreshold"),
            AlarmSpec(
                key="binlog-chain-broken",
                catches=f"The binlog chain of {database} is broken (a segment is missing): point-in-time "
                        "recovery cannot pass the gap until the next full dump.",
                unseen="1 min after the shipper reports it",
                namespace=METRICS_NAMESPACE, metric="BinlogChainBroken", dimensions=ours,
                statistic="Maximum", period=60, evaluation_periods=1, threshold=1.0,
                comparison="GreaterThanOrEqualToThreshold"),
        ]
    return specs


JOB_FAILURES = ["FAILED", "ABORTED", "EXPIRED", "PARTIAL"]
# What weakens the strategy, by the name CloudTrail records (S3's names differ from the API's:
# PutBucketLifecycleConfiguration is PutBucketLifecycle, PutObjectLockConfiguration is
# PutBucketObjectLockConfiguration).
WEAKENING_CALLS = {
    "ec2.amazonaws.com": ["UnlockSnapshot", "DisableSnapshotBlockPublicAccess", "DisableEbsEncryptionByDefault"],
    "backup.amazonaws.com": ["DeleteBackupVaultLockConfiguration", "PutBackupVaultLockConfiguration",
                             "DeleteBackupVaultAccessPolicy", "PutBackupVaultAccessPolicy", "DeleteBackupPlan",
                             "DeleteBackupSelection", "DeleteRecoveryPoint", "UpdateRecoveryPointLifecycle"],
    # Switching the watchers off is weakening too.
    "cloudtrail.amazonaws.com": ["StopLogging", "DeleteTrail"],
    "monitoring.amazonaws.com": ["DeleteAlarms", "DisableAlarmActions"],
    "events.amazonaws.com": ["DisableRule", "DeleteRule", "RemoveTargets"],
}
BUCKET_WEAKENING_CALLS = ["PutBucketPolicy", "DeleteBucketPolicy", "PutBucketLifecycle", "DeleteBucketLifecycle",
                          "PutBucketObjectLockConfiguration", "PutBucketVersioning"]
# Recycle Bin sends these itself (no trail needed), for every rule of the Region.
RECYCLE_BIN_EVENTS = ["Recycle Bin Rule Unlock Scheduled", "Recycle Bin Rule Unlocked",
                      "Recycle Bin Rule Change Attempted"]


def event_rule_specs(stack: str, dump_document_name: str, bucket_names: list[str],
                     with_trail: bool = True) -> list[EventRuleSpec]:
    """The stack's event rules. with_trail=False still declares the CloudTrail rules: they then rely
    on a trail the account already has (monitoring.trail: existing)."""
    backup_job = {"resource": "<resource>", "vault": "<vault>",
                  "job": "<job>", "reason": "<reason>", "when": "<when>", "account": "<account> <region>"}
    api_call = {"alert": "API call that weakens the backups: <call>", "by": "<who>", "from": "<ip>",
                "error": "<error>", "when": "<when>", "account": "<account> <region>"}
    who = {"call": "$.detail.eventName", "who": "$.detail.userIdentity.arn", "ip": "$.detail.sourceIPAddress",
           "error": "$.detail.errorCode", "when": "$.detail.eventTime", "account": "$.account",
           "region": "$.region"}
    trail_event = {"detail-type": ["AWS API Call via CloudTrail"]}
    return [
        EventRuleSpec(
            key="backup-job-failed",
            catches="An AWS Backup backup job ended FAILED, ABORTED, EXPIRED or PARTIAL (any resource).",
            unseen="about 5 min after the job ends (AWS Backup emits events every 5 min, best effort; "
                   "backstop: backup-job-missing)",
            pattern={"source": ["aws.backup"], "detail-type": ["Backup Job State Change"],
                     "detail": {"state": JOB_FAILURES}},
            input_paths={"state": "$.detail.state", "resource": "$.detail.resourceArn",
                         "vault": "$.detail.backupVaultName", "job": "$.detail.backupJobId",
                         "reason": "$.detail.statusMessage", "when": "$.time", "account": "$.account",
                         "region": "$.region"},
            message={"alert": "AWS Backup backup job <state>", **backup_job},
            samples=("Backup Job State Change - FAILED",)),
        EventRuleSpec(
            key="copy-job-failed",
            catches="An AWS Backup copy job (cross-region or air-gapped copy) ended FAILED, ABORTED, EXPIRED "
                    "or PARTIAL.",
            unseen="about 5 min after the job ends (best effort; backstop: backupctl audit)",
            pattern={"source": ["aws.backup"], "detail-type": ["Copy Job State Change"],
                     "detail": {"state": JOB_FAILURES}},
            input_paths={"state": "$.detail.state", "resource": "$.detail.resourceArn",
                         "vault": "$.detail.destinationBackupVaultArn", "job": "$.detail.copyJobId",
                         "reason": "$.detail.statusMessage", "when": "$.time", "account": "$.account",
                         "region": "$.region"},
            message={"alert": "AWS Backup copy job <state>", **backup_job},
            samples=("Copy Job State Change - FAILED",)),
        EventRuleSpec(
            key="restore-job-failed",
            catches="A restore job (not a restore test) ended FAILED or ABORTED.",
            unseen="about 5 min after the job ends (best effort)",
            pattern={"source": ["aws.backup"], "detail-type": ["Restore Job State Change"],
                     "detail": {"status": JOB_FAILURES, "restoreTestingPlanArn": [{"exists": False}]}},
            input_paths={"state": "$.detail.status", "resource": "$.resources[0]", "job": "$.detail.restoreJobId",
                         "reason": "$.detail.statusMessage", "when": "$.time", "account": "$.account",
                         "region": "$.region"},
            message={"alert": "AWS Backup restore job <state>", "resource": "<resource>", "job": "<job>",
                     "reason": "<reason>", "when": "<when>", "account": "<account> <region>"},
            samples=("Restore Job State Change - FAILED",)),
        EventRuleSpec(
            key="restore-test-failed",
            catches="The weekly restore test's restore job ended FAILED or ABORTED: the latest recovery point "
                    "could not be restored. (AWS documents no event for a validation result posted with "
                    "PutRestoreValidationResult; the stack posts none.)",
            unseen="about 5 min after the weekly test's restore ends (Sunday 06:00 UTC, best effort)",
            pattern={"source": ["aws.backup"], "detail-type": ["Restore Job State Change"],
                     "detail": {"status": JOB_FAILURES, "restoreTestingPlanArn": [{"exists": True}]}},
            input_paths={"state": "$.detail.status", "plan": "$.detail.restoreTestingPlanArn",
                         "resource": "$.resources[0]", "job": "$.detail.restoreJobId",
                         "reason": "$.detail.statusMessage", "when": "$.time", "account": "$.account",
                         "region": "$.region"},
            message={"alert": "Weekly restore test <state>", "plan": "<plan>", "resource": "<resource>",
                     "job": "<job>", "reason": "<reason>", "when": "<when>", "account": "<account> <region>"}),
        EventRuleSpec(
            key="dump-command-failed",
            catches=f"A run of the dump document {dump_document_name} on an instance ended Failed, TimedOut or "
                    "Cancelled (either step: database dump or P1 files archive).",
            unseen="minutes after the nightly run ends (SSM events are best effort; backstop: dump-missing)",
            pattern={"source": ["aws.ssm"], "detail-type": ["EC2 Command Invocation Status-change Notification"],
                     "detail": {"document-name": [dump_document_name], "status": ["Failed", "TimedOut", "Cancelled"]}},
            input_paths={"state": "$.detail.status", "instance": "$.detail.instance-id",
                         "command": "$.detail.command-id", "when": "$.time", "account": "$.account",
                         "region": "$.region"},
            message={"alert": f"Nightly dump command <state> ({dump_document_name})", "instance": "<instance>",
                     "command": "<command>", "when": "<when>", "account": "<account> <region>"},
            samples=("EC2 Command Invocation Status-change Notification",)),
        EventRuleSpec(
            key="dump-association-failed",
            catches=f"The State Manager association running {dump_document_name} reported Failed on the "
                    "instance (scheduled runs report here, not as Run Command invocations).",
            unseen="minutes after the nightly run ends (best effort; backstop: dump-missing)",
            pattern={"source": ["aws.ssm"], "detail-type": ["EC2 State Manager Instance Association State Change"],
                     "detail": {"document-name": [dump_document_name], "status": ["Failed"]}},
            input_paths={"state": "$.detail.status", "detailed": "$.detail.detailed-status",
                         "instance": "$.detail.instance-id", "association": "$.detail.association-id",
                         "summary": "$.detail.execution-summary", "when": "$.time", "account": "$.account",
                         "region": "$.region"},
            message={"alert": f"Nightly dump association <state> ({dump_document_name})",
                     "instance": "<instance>", "association": "<association>", "detail": "<detailed>",
                     "summary": "<summary>", "when": "<when>", "account": "<account> <region>"},
            samples=("EC2 State Manager Instance Association State Change",)),
        EventRuleSpec(
            key="recycle-bin-unlock",
            catches="A Recycle Bin retention rule is being unlocked, was unlocked, or someone tried to change "
                    "a locked one (Recycle Bin sends these itself, no trail needed).",
            unseen="minutes after the call; the unlock delay (7 days) is the time to react",
            pattern={"source": ["aws.rbin"], "detail-type": RECYCLE_BIN_EVENTS},
            input_paths={"kind": "$.detail-type", "rule": "$.detail.rule-id", "call": "$.detail.api-name",
                         "when": "$.time", "account": "$.account", "region": "$.region"},
            message={"alert": "<kind>", "rule": "<rule>", "call": "<call>", "when": "<when>",
                     "account": "<account> <region>"},
            samples=("Recycle Bin Rule Locked (envelope)",)),
        EventRuleSpec(
            key="weakening-api-call",
            catches="A call that unlocks a snapshot, lifts snapshot public-access blocking or EBS "
                    "encryption by default, removes or replaces a vault lock or vault access policy, deletes "
                    "the plan, its selection or a recovery point, shortens a recovery point's lifecycle, or "
                    "switches off the trail, an alarm or an event rule (denied attempts included).",
            unseen="minutes after the call (CloudTrail to EventBridge, best effort; "
                   + ("the stack's trail" if with_trail else "needs the account's existing trail") + ")",
            # No "source": eventSource names the service exactly (CloudWatch's is monitoring.amazonaws.com).
            pattern={**trail_event,
                     "detail": {"eventSource": sorted(WEAKENING_CALLS),
                                "eventName": sorted(n for names in WEAKENING_CALLS.values() for n in names)}},
            input_paths={**who, "snapshot": "$.detail.requestParameters.snapshotId",
                         "vault": "$.detail.requestParameters.backupVaultName",
                         "plan": "$.detail.requestParameters.backupPlanId",
                         "trail": "$.detail.requestParameters.name"},
            message={**api_call, "snapshot": "<snapshot>", "vault": "<vault>", "plan": "<plan>", "trail": "<trail>"},
            needs_trail=True, samples=("AWS API Call via CloudTrail (envelope)",)),
        EventRuleSpec(
            key="dump-bucket-weakened",
            catches="A change to the dump (or trail) bucket's policy, lifecycle, Object Lock configuration or "
                    "versioning (denied attempts included; expected after a pulumi up that changes them).",
            unseen="minutes after the call (CloudTrail to EventBridge, best effort)",
            pattern={**trail_event, "source": ["aws.s3"],
                     "detail": {"eventSource": ["s3.amazonaws.com"], "eventName": BUCKET_WEAKENING_CALLS,
                                "requestParameters": {"bucketName": sorted(bucket_names)}}},
            input_paths={**who, "bucket": "$.detail.requestParameters.bucketName"},
            message={**api_call, "bucket": "<bucket>"},
            needs_trail=True, samples=("AWS API Call via CloudTrail (envelope)",)),
    ]
