"""BackupMonitoring: alarms on what did not happen, and events for what went wrong, to one topic.

Seed rules: zero data loss and protection from human error need someone to hear, at once, when a
backup stops or a protection is lifted. The alarms (components/signals.py) treat silence as failure;
the EventBridge rules turn AWS Backup, SSM, Recycle Bin and CloudTrail events into one readable JSON
message each. Everything goes to this component's own SNS topic, with an unfiltered email
subscription: the vault's topic cannot carry them, because its email subscription filters on a
`State` message attribute and SNS never matches a message without attributes (`exists: false` needs
at least one attribute to be present).

The API-call rules need a trail that logs management events ("AWS API Call via CloudTrail" events
exist only then). With monitoring.trail = create the component declares one: multi-region, log file
validation, its own rotating key and its own hardened bucket (Object Lock, TLS-only, policy guarded).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_aws as aws

from components.backup_vault import rotating_key
from components.config import ObjectLock, StackConfig
from components.dump_bucket import ExpiryRule, HardenedBucket, hardened_bucket
from components.signals import AlarmSpec, EventRuleSpec, alarm_specs, event_rule_specs, resource_name
from components.tags import STRATEGY_TAGS

TYPE_TOKEN = "quickport:backup:BackupMonitoring"
TRAIL_LOG_PREFIX = "AWSLogs"     # where CloudTrail writes without an s3_key_prefix


@dataclass(frozen=True)
class BackupMonitoringArgs:
    stack: str                                     # names alarms/rules quickport-<stack>-<key>; metric dimension
    region: str                                    # where the rules and the trail's home region are
    database: str                                  # Database dimension of the dump (and binlog) metrics
    vault_name: str                                # the vault the daily plan writes to (AWS/Backup dimension)
    dump_document_name: str                        # the SSM document whose failed runs alert
    dump_bucket_name: str                          # changes to its policy, lifecycle, lock or versioning alert
    alert_email: Optional[str] = None              # None: no email subscription (the topic still exists)
    trail: str = "create"                          # create: declare the trail; existing: the account has one
    trail_bucket_name: str = "quickport-prod-db-dumps-trail"
    trail_log_days: int = 90                       # trail logs are locked (governance) and kept this long
    # The shipper's binlog.intervalSeconds: the binlog-lag/-silent/-chain-broken alarms. None (binlog.enabled
    # false): no binlog alarms, which would otherwise sit in ALARM for ever (missing data is breaching).
    binlog_interval_seconds: Optional[int] = None

    @classmethod
    def from_config(cls, cfg: StackConfig, dump_document_name: str) -> "BackupMonitoringArgs":
        return cls(stack=cfg.stack, region=cfg.region, database=cfg.dumps.database,
                   vault_name=cfg.backup.vault_name, dump_document_name=dump_document_name,
                   dump_bucket_name=cfg.dumps.bucket_name, alert_email=cfg.backup.alert_email,
                   trail=cfg.monitoring.trail, trail_bucket_name=cfg.monitoring.trail_bucket_name,
                   binlog_interval_seconds=cfg.binlog.interval_seconds if cfg.binlog.enabled else None)

    @property
    def watched_buckets(self) -> list[str]:
        return [self.dump_bucket_name] + ([self.trail_bucket_name] if self.trail == "create" else [])


def _account_and_partition() -> tuple[pulumi.Output[str], pulumi.Output[str]]:
    return aws.get_caller_identity_output().account_id, aws.get_partition_output().partition


def alerts_key_statements(region: str) -> list[dict[str, Any]]:
    """Key policy statements for publishing to the KMS-encrypted topic (SNS docs, "AWS service event
    sources"). EventBridge: no aws:SourceArn/SourceAccount conditions (SNS documents them as not
    supported for EventBridge-to-encrypted topics); CloudWatch: scoped to this account's alarms."""
    account, partition = _account_and_partition()
    return [
        {"Sid": "AllowEventBridgeToEncryptAlerts", "Effect": "Allow",
         "Principal": {"Service": "events.amazonaws.com"},
         "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": "*"},
        {"Sid": "AllowCloudWatchAlarmsToEncryptAlerts", "Effect": "Allow",
         "Principal": {"Service": "cloudwatch.amazonaws.com"},
         "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceAccount": account},
                       "ArnLike": {"aws:SourceArn": pulumi.Output.concat(
                           "arn:", partition, ":cloudwatch:", region, ":", account, ":alarm:*")}}},
    ]


def topic_policy_document(topic_arn: pulumi.Input[str], region: str) -> pulumi.Output[str]:
    """Who may publish: this account's CloudWatch alarms, and EventBridge (whose SNS statement may
    carry no Condition, per the EventBridge resource-based policy docs)."""
    account, partition = _account_and_partition()
    return pulumi.Output.json_dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AllowCloudWatchAlarmsToPublish", "Effect": "Allow",
             "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Action": "sns:Publish", "Resource": topic_arn,
             "Condition": {"StringEquals": {"aws:SourceAccount": account},
                           "ArnLike": {"aws:SourceArn": pulumi.Output.concat(
                               "arn:", partition, ":cloudwatch:", region, ":", account, ":alarm:*")}}},
            {"Sid": "AllowEventBridgeToPublish", "Effect": "Allow",
             "Principal": {"Service": "events.amazonaws.com"}, "Action": "sns:Publish", "Resource": topic_arn},
        ],
    })


def trail_arn(region: str, name: str) -> pulumi.Output[str]:
    account, partition = _account_and_partition()
    return pulumi.Output.concat("arn:", partition, ":cloudtrail:", region, ":", account, ":trail/", name)


def trail_key_statements(arn: pulumi.Input[str]) -> list[dict[str, Any]]:
    """CloudTrail's statements (CloudTrail docs, "Configure AWS KMS key policies for CloudTrail"):
    encrypt log files of this account's trails, for this trail only; describe the key."""
    account, partition = _account_and_partition()
    return [
        {"Sid": "AllowCloudTrailToEncryptLogs", "Effect": "Allow",
         "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Action": "kms:GenerateDataKey*", "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceArn": arn},
                       "StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn": pulumi.Output.concat(
                           "arn:", partition, ":cloudtrail:*:", account, ":trail/*")}}},
        {"Sid": "AllowCloudTrailToDescribeKey", "Effect": "Allow",
         "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Action": "kms:DescribeKey", "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceArn": arn}}},
    ]


def trail_bucket_statements(bucket_name: str, arn: pulumi.Input[str]) -> list[dict[str, Any]]:
    """The bucket policy CloudTrail needs (CloudTrail docs, "Amazon S3 bucket policy for CloudTrail")."""
    account, partition = _account_and_partition()
    bucket_arn = pulumi.Output.concat("arn:", partition, ":s3:::", bucket_name)
    return [
        {"Sid": "AllowCloudTrailAclCheck", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
         "Action": "s3:GetBucketAcl", "Resource": bucket_arn, "Condition": {"StringEquals": {"aws:SourceArn": arn}}},
        {"Sid": "AllowCloudTrailWrite", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
         "Action": "s3:PutObject",
         "Resource": pulumi.Output.concat(bucket_arn, f"/{TRAIL_LOG_PREFIX}/", account, "/*"),
         "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceArn": arn}}},
    ]


class BackupMonitoring(pulumi.ComponentResource):
    """Alerts topic + metric alarms + EventBridge rules (+ the trail the API-call rules need)."""

    def __init__(self, name: str, args: BackupMonitoringArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        topic_name = resource_name(args.stack, "alerts")

        self.key, self.key_alias = rotating_key(
            f"{name}-key", "Encrypts the quickport-backup alerts topic (alarms and events)", topic_name, child,
            extra_statements=alerts_key_statements(args.region))
        self.topic = aws.sns.Topic(f"{name}-topic", name=topic_name, kms_master_key_id=self.key.arn,
                                   tags=STRATEGY_TAGS, opts=child)
        self.topic_policy = aws.sns.TopicPolicy(
            f"{name}-topic-policy", arn=self.topic.arn, policy=topic_policy_document(self.topic.arn, args.region),
            opts=child)
        self.email_subscription: Optional[aws.sns.TopicSubscription] = None
        if args.alert_email:
            # No filter policy: alarm and event messages carry no message attributes to filter on.
            self.email_subscription = aws.sns.TopicSubscription(
                f"{name}-email", topic=self.topic.arn, protocol="email", endpoint=args.alert_email, opts=child)
        # Publishing needs the topic policy in place, or the first alarm vanishes.
        published = pulumi.ResourceOptions(parent=self, depends_on=[self.topic_policy])

        self.alarm_specs = alarm_specs(args.stack, args.database, args.vault_name, args.binlog_interval_seconds)
        self.alarms = {spec.key: self._alarm(name, args, spec, published) for spec in self.alarm_specs}

        self.trail: Optional[aws.cloudtrail.Trail] = None
        self.trail_bucket: Optional[HardenedBucket] = None
        if args.trail == "create":
            self._declare_trail(name, args)
        self.rule_specs = event_rule_specs(args.stack, args.dump_document_name, args.watched_buckets,
                                           with_trail=args.trail == "create")
        self.rules: dict[str, aws.cloudwatch.EventRule] = {}
        self.targets: dict[str, aws.cloudwatch.EventTarget] = {}
        for spec in self.rule_specs:
            self._rule(name, args, spec, published)

        self.topic_arn = self.topic.arn
        self.register_outputs({
            "topicArn": self.topic_arn,
            "alarmNames": [resource_name(args.stack, spec.key) for spec in self.alarm_specs],
            "ruleNames": [resource_name(args.stack, spec.key) for spec in self.rule_specs],
            "trailArn": self.trail.arn if self.trail else None,
        })

    def _alarm(self, name: str, args: BackupMonitoringArgs, spec: AlarmSpec,
               opts: pulumi.ResourceOptions) -> aws.cloudwatch.MetricAlarm:
        return aws.cloudwatch.MetricAlarm(
            f"{name}-{spec.key}",
            name=resource_name(args.stack, spec.key),
            alarm_description=spec.description(),
            namespace=spec.namespace, metric_name=spec.metric, dimensions=spec.dimensions,
            statistic=spec.statistic, period=spec.period, evaluation_periods=spec.evaluation_periods,
            datapoints_to_alarm=spec.datapoints_to_alarm or spec.evaluation_periods,
            threshold=spec.threshold, comparison_operator=spec.comparison,
            treat_missing_data=spec.treat_missing_data,
            alarm_actions=[self.topic.arn], ok_actions=[self.topic.arn], actions_enabled=True,
            tags=STRATEGY_TAGS, opts=opts)

    def _rule(self, name: str, args: BackupMonitoringArgs, spec: EventRuleSpec,
              opts: pulumi.ResourceOptions) -> None:
        import json
        rule_opts = opts if not (spec.needs_trail and self.trail) else pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(depends_on=[self.trail]))
        rule = aws.cloudwatch.EventRule(
            f"{name}-{spec.key}", name=resource_name(args.stack, spec.key),
            description=f"{spec.catches} Runbook: docs/monitoring.md#{spec.key}"[:512],
            event_pattern=json.dumps(spec.pattern), state="ENABLED", tags=STRATEGY_TAGS, opts=rule_opts)
        # No role_arn: EventBridge publishes to SNS with the topic policy (a role breaks KMS-encrypted
        # topics, per the EventBridge docs).
        self.targets[spec.key] = aws.cloudwatch.EventTarget(
            f"{name}-{spec.key}-target", rule=rule.name, arn=self.topic.arn, target_id="alerts-topic",
            input_transformer=aws.cloudwatch.EventTargetInputTransformerArgs(
                input_paths=spec.input_paths, input_template=spec.input_template()),
            opts=pulumi.ResourceOptions(parent=self))
        self.rules[spec.key] = rule

    def _declare_trail(self, name: str, args: BackupMonitoringArgs) -> None:
        child = pulumi.ResourceOptions(parent=self)
        trail_name = resource_name(args.stack, "management-events")
        arn = trail_arn(args.region, trail_name)
        self.trail_key, self.trail_key_alias = rotating_key(
            f"{name}-trail-key", f"Encrypts the CloudTrail logs of {trail_name}", args.trail_bucket_name, child,
            extra_statements=trail_key_statements(arn))
        self.trail_bucket = hardened_bucket(
            self, f"{name}-trail", args.trail_bucket_name, self.trail_key.arn,
            object_lock=ObjectLock("governance", args.trail_log_days),
            expiry=[ExpiryRule("expire-cloudtrail-logs", TRAIL_LOG_PREFIX, args.trail_log_days)],
            noncurrent_days=7, extra_policy_statements=trail_bucket_statements(args.trail_bucket_name, arn))
        self.trail = aws.cloudtrail.Trail(
            f"{name}-trail", name=trail_name, s3_bucket_name=self.trail_bucket.bucket.id,
            is_multi_region_trail=True, include_global_service_events=True, enable_log_file_validation=True,
            enable_logging=True, kms_key_id=self.trail_key.arn, tags=STRATEGY_TAGS,
            # CloudTrail checks the bucket policy and the key when the trail is created.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.trail_bucket.policy,
                                                                  self.trail_bucket.encryption]))
