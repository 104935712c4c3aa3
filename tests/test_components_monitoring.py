"""BackupMonitoring on the mock engine: every alarm, rule, target, the topic and the trail as declared."""
from __future__ import annotations

import json
import re

import pytest

from components.monitoring import BackupMonitoring, BackupMonitoringArgs
from components.signals import BINLOG_INTERVAL_SECONDS, alarm_specs, event_rule_specs

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
RULE = "aws:cloudwatch/eventRule:EventRule"
TARGET = "aws:cloudwatch/eventTarget:EventTarget"
TOPIC = "aws:sns/topic:Topic"
TRAIL = "aws:cloudtrail/trail:Trail"
MONITORING_NS = "quickport-backup:monitoring"
TOPIC_ARN = "arn:aws:sns:ap-south-1:123456789012:quickport-prod-alerts"
ACCOUNT = "123456789012"


def _alarms(declared) -> dict:
    return {r.inputs["name"]: r for r in declared.of_type(ALARM)}


def _rules(declared) -> dict:
    return {r.inputs["name"]: r for r in declared.of_type(RULE)}


def _topic(declared):
    return declared.one(TOPIC, "quickport-prod-monitoring-topic")


def _args(**changes) -> BackupMonitoringArgs:
    base = dict(stack="prod", region="ap-south-1", database="quickport_crm_laravel", vault_name="quickport-prod-vault",
                dump_document_name="quickport-prod-backup-dump", dump_bucket_name="quickport-prod-db-dumps",
                trail_bucket_name="quickport-prod-db-dumps-trail")
    return BackupMonitoringArgs(**{**base, **changes})


# --- the topic ------------------------------------------------------------------------------------

def test_alerts_go_to_their_own_topic_encrypted_with_their_own_rotating_key(prod_stack):
    topic = _topic(prod_stack)
    key = prod_stack.one("aws:kms/key:Key", "quickport-prod-monitoring-key")
    assert topic.inputs["name"] == "quickport-prod-alerts"
    assert topic.inputs["kmsMasterKeyId"] == key.outputs["arn"]
    assert key.inputs["enableKeyRotation"] is True and key.protect


def test_key_lets_eventbridge_encrypt_unconditionally_and_cloudwatch_only_for_this_accounts_alarms(prod_stack):
    key = prod_stack.one("aws:kms/key:Key", "quickport-prod-monitoring-key")
    statements = {s["Sid"]: s for s in json.loads(key.inputs["policy"])["Statement"]}
    events = statements["AllowEventBridgeToEncryptAlerts"]
    assert events["Principal"] == {"Service": "events.amazonaws.com"} and "Condition" not in events
    cloudwatch = statements["AllowCloudWatchAlarmsToEncryptAlerts"]
    assert cloudwatch["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert cloudwatch["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}, "ArnLike": {
        "aws:SourceArn": f"arn:aws:cloudwatch:ap-south-1:{ACCOUNT}:alarm:*"}}
    assert sorted(cloudwatch["Action"]) == sorted(events["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]


def test_topic_policy_allows_eventbridge_without_conditions_and_cloudwatch_with_them(prod_stack):
    policy = prod_stack.one("aws:sns/topicPolicy:TopicPolicy", "quickport-prod-monitoring-topic-policy")
    statements = {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}
    assert statements["AllowEventBridgeToPublish"] == {
        "Sid": "AllowEventBridgeToPublish", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
        "Action": "sns:Publish", "Resource": TOPIC_ARN}
    assert statements["AllowCloudWatchAlarmsToPublish"]["Condition"]["ArnLike"] == {
        "aws:SourceArn": f"arn:aws:cloudwatch:ap-south-1:{ACCOUNT}:alarm:*"}


def test_alert_email_subscribes_without_a_filter_policy(prod_stack):
    sub = prod_stack.one("aws:sns/topicSubscription:TopicSubscription", "quickport-prod-monitoring-email")
    assert (sub.inputs["protocol"], sub.inputs["endpoint"]) == ("email", "ops@quickport.example")
    assert sub.inputs["topic"] == TOPIC_ARN
    assert "filterPolicy" not in sub.inputs   # alarm and event messages carry no attributes to match


def test_no_email_no_subscription(stack_with, prod_config):
    backup = {k: v for k, v in prod_config["quickport-backup:backup"].items() if k != "alertEmail"}
    declared = stack_with({"quickport-backup:backup": backup})
    assert [r.name for r in declared.of_type("aws:sns/topicSubscription:TopicSubscription")] == []


# --- alarms -----------------------------------------------------------------------------------------

def test_the_shipped_stack_has_the_dump_backup_job_and_binlog_alarms(prod_stack):
    assert sorted(_alarms(prod_stack)) == [
        "quickport-prod-backup-job-missing", "quickport-prod-binlog-chain-broken", "quickport-prod-binlog-lag",
        "quickport-prod-binlog-silent", "quickport-prod-dump-missing"]


def test_binlog_lag_threshold_follows_the_configured_interval(stack_with, prod_config):
    ns = "quickport-backup:binlog"
    declared = stack_with({ns: {**prod_config[ns], "intervalSeconds": 10, "rpoBoundSeconds": 30}})
    assert _alarms(declared)["quickport-prod-binlog-lag"].inputs["threshold"] == 40


def test_no_binlog_alarms_when_binlog_shipping_is_disabled(stack_with, prod_config):
    ns = "quickport-backup:binlog"
    declared = stack_with({ns: {**prod_config[ns], "enabled": False}})
    assert sorted(_alarms(declared)) == ["quickport-prod-backup-job-missing", "quickport-prod-dump-missing"]


def test_dump_alarm_fires_when_no_success_was_counted_for_26_hours(prod_stack):
    alarm = _alarms(prod_stack)["quickport-prod-dump-missing"].inputs
    assert {k: alarm[k] for k in ("namespace", "metricName", "dimensions", "statistic", "period",
                                  "evaluationPeriods", "datapointsToAlarm", "threshold", "comparisonOperator",
                                  "treatMissingData")} == {
        "namespace": "QuickportBackup", "metricName": "DumpSucceeded",
        "dimensions": {"Stack": "prod", "Database": "quickport_crm_laravel"}, "statistic": "Sum", "period": 3600,
        "evaluationPeriods": 26, "datapointsToAlarm": 26, "threshold": 1, "comparisonOperator": "LessThanThreshold",
        "treatMissingData": "breaching"}


def test_backup_job_alarm_watches_completed_jobs_of_the_vault(prod_stack):
    alarm = _alarms(prod_stack)["quickport-prod-backup-job-missing"].inputs
    assert (alarm["namespace"], alarm["metricName"]) == ("AWS/Backup", "NumberOfBackupJobsCompleted")
    assert alarm["dimensions"] == {"BackupVaultName": "quickport-prod-vault", "ResourceType": "EC2"}
    assert (alarm["statistic"], alarm["threshold"], alarm["comparisonOperator"]) == ("Sum", 1, "LessThanThreshold")
    assert alarm["period"] * alarm["evaluationPeriods"] == 26 * 3600


def test_every_alarm_treats_silence_as_failure_and_tells_the_topic_both_ways(prod_stack):
    for name, alarm in _alarms(prod_stack).items():
        assert alarm.inputs["treatMissingData"] == "breaching", name
        assert alarm.inputs["alarmActions"] == [TOPIC_ARN] and alarm.inputs["okActions"] == [TOPIC_ARN], name
        assert alarm.inputs["actionsEnabled"] is True, name
        assert f"docs/monitoring.md#{name.removeprefix('quickport-prod-')}" in alarm.inputs["alarmDescription"]


@pytest.mark.parametrize("interval", [None, BINLOG_INTERVAL_SECONDS])
def test_every_alarm_stays_inside_cloudwatchs_evaluation_limits(interval):
    for spec in alarm_specs("prod", "db", "vault", interval):
        total = spec.period * spec.evaluation_periods
        assert total <= (86400 if spec.period < 3600 else 604800), spec.key
        assert spec.period % 60 == 0, spec.key          # standard resolution: not a high-resolution alarm
        assert 1 <= (spec.datapoints_to_alarm or spec.evaluation_periods) <= spec.evaluation_periods


def test_binlog_alarms_only_when_the_shipper_interval_is_given(run_component):
    declared = run_component(lambda: BackupMonitoring("m", _args(binlog_interval_seconds=30)))
    alarms = _alarms(declared)
    lag = alarms["quickport-prod-binlog-lag"].inputs
    assert (lag["metricName"], lag["statistic"], lag["threshold"], lag["comparisonOperator"]) == (
        "BinlogShipLagSeconds", "Maximum", 120, "GreaterThanThreshold")
    silent = alarms["quickport-prod-binlog-silent"].inputs
    assert (silent["statistic"], silent["period"], silent["evaluationPeriods"], silent["threshold"],
            silent["comparisonOperator"]) == ("SampleCount", 60, 10, 1, "LessThanThreshold")
    broken = alarms["quickport-prod-binlog-chain-broken"].inputs
    assert (broken["metricName"], broken["statistic"], broken["threshold"], broken["comparisonOperator"]) == (
        "BinlogChainBroken", "Maximum", 1, "GreaterThanOrEqualToThreshold")
    for alarm in (lag, silent, broken):
        assert alarm["namespace"] == "QuickportBackup" and alarm["treatMissingData"] == "breaching"
        assert alarm["dimensions"] == {"Stack": "prod", "Database": "quickport_crm_laravel"}


# --- rules and targets ----------------------------------------------------------------------------

def test_every_rule_is_declared_with_its_exact_pattern(prod_stack):
    cfg_specs = event_rule_specs("prod", "quickport-prod-backup-dump",
                                 ["quickport-prod-db-dumps-ap-south-1", "quickport-prod-db-dumps-ap-south-1-trail"])
    rules = _rules(prod_stack)
    assert sorted(rules) == sorted(f"quickport-prod-{s.key}" for s in cfg_specs)
    for spec in cfg_specs:
        rule = rules[f"quickport-prod-{spec.key}"].inputs
        assert json.loads(rule["eventPattern"]) == spec.pattern, spec.key
        assert rule["state"] == "ENABLED"


def test_every_rule_targets_the_topic_with_a_valid_json_message_and_no_role(prod_stack):
    rules = _rules(prod_stack)
    targets = prod_stack.of_type(TARGET)
    assert len(targets) == len(rules)
    for target in targets:
        assert target.inputs["arn"] == TOPIC_ARN and "roleArn" not in target.inputs
        assert target.inputs["rule"] in rules
        transformer = target.inputs["inputTransformer"]
        paths, template = transformer["inputPaths"], transformer["inputTemplate"]
        assert len(paths) <= 100 and not any(k.startswith("AWS") for k in paths)
        # Every placeholder has a path; every path is used; the template is JSON with the runbook line.
        used = set(re.findall(r"<([a-z-]+)>", template))
        assert used == set(paths), target.name
        message = json.loads(template)
        assert message["runbook"].startswith("docs/monitoring.md#") and "alert" in message


def test_api_call_rules_wait_for_the_trail(prod_stack):
    trail = prod_stack.one(TRAIL)
    rules = _rules(prod_stack)
    for key in ("weakening-api-call", "dump-bucket-weakened"):
        assert trail.urn in rules[f"quickport-prod-{key}"].dependencies, key


def test_bucket_rule_watches_the_dump_and_trail_buckets(prod_stack):
    pattern = json.loads(_rules(prod_stack)["quickport-prod-dump-bucket-weakened"].inputs["eventPattern"])
    assert pattern["detail"]["requestParameters"]["bucketName"] == [
        "quickport-prod-db-dumps-ap-south-1", "quickport-prod-db-dumps-ap-south-1-trail"]


# --- the trail --------------------------------------------------------------------------------------

def test_trail_logs_management_events_everywhere_with_validation_into_its_own_locked_bucket(prod_stack):
    trail = prod_stack.one(TRAIL).inputs
    bucket = prod_stack.one("aws:s3/bucket:Bucket", "quickport-prod-monitoring-trail-bucket")
    key = prod_stack.one("aws:kms/key:Key", "quickport-prod-monitoring-trail-key")
    assert trail["name"] == "quickport-prod-management-events"
    assert (trail["isMultiRegionTrail"], trail["includeGlobalServiceEvents"], trail["enableLogFileValidation"],
            trail["enableLogging"]) == (True, True, True, True)
    assert trail["s3BucketName"] == bucket.id and trail["kmsKeyId"] == key.outputs["arn"]
    assert "eventSelectors" not in trail and "advancedEventSelectors" not in trail   # default: management events
    lock = prod_stack.one("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
                          "quickport-prod-monitoring-trail-object-lock")
    assert lock.inputs["rule"] == {"defaultRetention": {"mode": "GOVERNANCE", "days": 90}}
    assert bucket.protect and bucket.inputs["bucket"] == "quickport-prod-db-dumps-ap-south-1-trail"


def test_trail_bucket_policy_lets_only_this_trail_write(prod_stack):
    policy = prod_stack.one("aws:s3/bucketPolicy:BucketPolicy", "quickport-prod-monitoring-trail-policy")
    statements = {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}
    trail = f"arn:aws:cloudtrail:ap-south-1:{ACCOUNT}:trail/quickport-prod-management-events"
    bucket = "arn:aws:s3:::quickport-prod-db-dumps-ap-south-1-trail"
    assert statements["AllowCloudTrailWrite"] == {
        "Sid": "AllowCloudTrailWrite", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
        "Action": "s3:PutObject", "Resource": f"{bucket}/AWSLogs/{ACCOUNT}/*",
        "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceArn": trail}}}
    assert statements["AllowCloudTrailAclCheck"]["Condition"] == {"StringEquals": {"aws:SourceArn": trail}}
    # The trail bucket is hardened like the dump bucket.
    assert {"DenyInsecureTransport", "DenyObjectVersionDeletion", "DenyPolicyChangesExceptByRoot"} <= set(statements)


def test_trail_key_lets_cloudtrail_encrypt_only_for_this_trail(prod_stack):
    key = prod_stack.one("aws:kms/key:Key", "quickport-prod-monitoring-trail-key")
    statements = {s["Sid"]: s for s in json.loads(key.inputs["policy"])["Statement"]}
    encrypt = statements["AllowCloudTrailToEncryptLogs"]
    assert encrypt["Condition"]["StringEquals"] == {
        "aws:SourceArn": f"arn:aws:cloudtrail:ap-south-1:{ACCOUNT}:trail/quickport-prod-management-events"}
    assert encrypt["Condition"]["StringLike"] == {
        "kms:EncryptionContext:aws:cloudtrail:arn": f"arn:aws:cloudtrail:*:{ACCOUNT}:trail/*"}


def test_existing_trail_declares_no_trail_but_keeps_the_api_call_rules(stack_with):
    declared = stack_with({MONITORING_NS: {"trail": "existing"}})
    assert declared.of_type(TRAIL) == []
    assert [r.name for r in declared.of_type("aws:s3/bucket:Bucket")] == ["quickport-prod-dumps-bucket"]
    assert "quickport-prod-weakening-api-call" in _rules(declared)
    bucket_pattern = json.loads(_rules(declared)["quickport-prod-dump-bucket-weakened"].inputs["eventPattern"])
    assert bucket_pattern["detail"]["requestParameters"]["bucketName"] == ["quickport-prod-db-dumps-ap-south-1"]


def test_every_monitoring_child_is_parented_to_the_component(prod_stack):
    component = prod_stack.one("quickport:backup:BackupMonitoring")
    kids = prod_stack.children_of(component)
    assert {r.type for r in kids} >= {ALARM, RULE, TARGET, TOPIC, TRAIL}
    assert all(r.parent == component.urn for r in prod_stack.of_type(ALARM) + prod_stack.of_type(RULE))
