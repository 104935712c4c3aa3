"""AccountGuardRails: account-level blocks on sharing snapshots and on people destroying backups.

Seed rule: protection from human error. No snapshot of the account can be shared publicly, every new
EBS volume is encrypted, and an IAM policy, attached to the operators' groups, roles and users named
in guardRails, denies the destructive calls a tired person or a leaked key could make against the
strategy's snapshots, vaults, plan, Recycle Bin rules, buckets, keys, and the alarms, rules, trail
and topics that would report it. Deny wins over any Allow, including AdministratorAccess.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.backup_vault import rotating_key
from components.tags import STRATEGY_TAG_KEY, STRATEGY_TAG_VALUE, STRATEGY_TAGS

TYPE_TOKEN = "quickport:backup:AccountGuardRails"

# Tagged snapshots (baselines) and AMIs (AWS Backup EC2 recovery points carry the tag too).
DENIED_ON_TAGGED_SNAPSHOTS = ("ec2:DeleteSnapshot", "ec2:UnlockSnapshot", "ec2:DeleteTags")
DENIED_ON_TAGGED_IMAGES = ("ec2:DeregisterImage", "ec2:DeleteTags")
DENIED_ON_VAULTS = ("backup:DeleteBackupVault", "backup:DeleteBackupVaultLockConfiguration",
                    "backup:PutBackupVaultLockConfiguration", "backup:DeleteBackupVaultAccessPolicy",
                    "backup:DeleteBackupVaultNotifications")
# Recovery point ARNs follow the protected resource's type (for EC2 an AMI), so no narrower resource.
DENIED_ON_RECOVERY_POINTS = ("backup:DeleteRecoveryPoint", "backup:UpdateRecoveryPointLifecycle")
DENIED_ON_PLAN = ("backup:DeleteBackupPlan", "backup:UpdateBackupPlan", "backup:DeleteBackupSelection")
DENIED_ON_RECYCLE_BIN_RULES = ("rbin:DeleteRule", "rbin:UnlockRule", "rbin:UpdateRule")
DENIED_ON_DUMP_BUCKET = ("s3:DeleteBucket", "s3:DeleteBucketPolicy", "s3:PutBucketPolicy", "s3:PutBucketVersioning",
                         "s3:PutLifecycleConfiguration", "s3:PutBucketObjectLockConfiguration")
DENIED_ON_KEYS = ("kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:PutKeyPolicy")
# The watchers: silencing them is how a failure goes unseen.
DENIED_ON_ALARMS = ("cloudwatch:DeleteAlarms", "cloudwatch:DisableAlarmActions", "cloudwatch:PutMetricAlarm")
DENIED_ON_EVENT_RULES = ("events:DeleteRule", "events:DisableRule", "events:RemoveTargets", "events:PutRule",
                         "events:PutTargets")
DENIED_ON_TRAILS = ("cloudtrail:StopLogging", "cloudtrail:DeleteTrail", "cloudtrail:UpdateTrail",
                    "cloudtrail:PutEventSelectors")
DENIED_ON_TOPICS = ("sns:DeleteTopic", "sns:SetTopicAttributes", "sns:RemovePermission")
# Account-wide EBS settings (no resource ARN).
DENIED_EBS_ENCRYPTION_CHANGES = ("ec2:DisableEbsEncryptionByDefault", "ec2:ModifyEbsDefaultKmsKeyId",
                                 "ec2:ResetEbsDefaultKmsKeyId")


@dataclass(frozen=True)
class AccountGuardRailsArgs:
    region: str                                        # region of the tagged snapshots and images
    vault_arns: Sequence[pulumi.Input[str]] = ()       # AWS Backup vaults (main and copy)
    plan_arn: Optional[pulumi.Input[str]] = None       # the daily plan
    recycle_bin_rule_arns: Sequence[pulumi.Input[str]] = ()
    bucket_arns: Sequence[pulumi.Input[str]] = ()      # the dump bucket (and the trail bucket)
    key_arns: Sequence[pulumi.Input[str]] = ()         # KMS keys of vaults, buckets, alerts, trail
    alarm_arns: Sequence[pulumi.Input[str]] = ()       # the dead-man's switch alarms
    rule_arns: Sequence[pulumi.Input[str]] = ()        # the EventBridge alert rules
    trail_arns: Sequence[pulumi.Input[str]] = ()       # the trail the API-call alerts need
    topic_arns: Sequence[pulumi.Input[str]] = ()       # the alert topics
    policy_name: str = "quickport-backup-operator-guard-rails"
    snapshot_sharing: str = "block-all-sharing"        # EBS snapshot block public access state
    # EBS encryption by default is always on. aws-managed: new volumes use aws/ebs; stack: a rotating
    # customer managed key declared here (air-gapped copies need one); else that key's ARN.
    ebs_default_kms_key: str = "aws-managed"
    # Who gets the policy attached (the shipped stack names a placeholder group; never the deploy role).
    operator_group_names: Sequence[str] = field(default_factory=tuple)
    operator_role_names: Sequence[str] = field(default_factory=tuple)
    operator_user_names: Sequence[str] = field(default_factory=tuple)


def guard_rails_policy_document(args: AccountGuardRailsArgs,
                                extra_key_arns: Sequence[pulumi.Input[str]] = ()) -> pulumi.Output[str]:
    partition = aws.get_partition_output().partition
    tag_condition = {"StringEquals": {f"aws:ResourceTag/{STRATEGY_TAG_KEY}": STRATEGY_TAG_VALUE}}
    statements: list[dict] = [
        {
            "Sid": "DenyDestroyingStrategySnapshots",
            "Effect": "Deny",
            "Action": list(DENIED_ON_TAGGED_SNAPSHOTS),
            "Resource": pulumi.Output.concat("arn:", partition, ":ec2:", args.region, "::snapshot/*"),
            "Condition": tag_condition,
        },
        {
            "Sid": "DenyDestroyingStrategyImages",
            "Effect": "Deny",
            "Action": list(DENIED_ON_TAGGED_IMAGES),
            "Resource": pulumi.Output.concat("arn:", partition, ":ec2:", args.region, "::image/*"),
            "Condition": tag_condition,
        },
        {
            # Re-tagging would take a snapshot out of the statements above.
            "Sid": "DenyRetaggingStrategyResources",
            "Effect": "Deny",
            "Action": "ec2:CreateTags",
            "Resource": [pulumi.Output.concat("arn:", partition, ":ec2:", args.region, "::snapshot/*"),
                         pulumi.Output.concat("arn:", partition, ":ec2:", args.region, "::image/*")],
            "Condition": {**tag_condition,
                          "ForAnyValue:StringEquals": {"aws:TagKeys": [STRATEGY_TAG_KEY]}},
        },
        {
            "Sid": "DenyDisablingSnapshotBlockPublicAccess",
            "Effect": "Deny",
            "Action": "ec2:DisableSnapshotBlockPublicAccess",
            "Resource": "*",
        },
        {
            "Sid": "DenyWeakeningEbsEncryption",
            "Effect": "Deny",
            "Action": list(DENIED_EBS_ENCRYPTION_CHANGES),
            "Resource": "*",
        },
        {
            "Sid": "DenyDeletingRecoveryPoints",
            "Effect": "Deny",
            "Action": list(DENIED_ON_RECOVERY_POINTS),
            "Resource": "*",
        },
    ]
    if args.vault_arns:
        statements.append({"Sid": "DenyWeakeningBackupVaults", "Effect": "Deny",
                           "Action": list(DENIED_ON_VAULTS), "Resource": list(args.vault_arns)})
    if args.plan_arn is not None:
        statements.append({"Sid": "DenyChangingBackupPlan", "Effect": "Deny",
                           "Action": list(DENIED_ON_PLAN), "Resource": args.plan_arn})
    if args.recycle_bin_rule_arns:
        statements.append({"Sid": "DenyWeakeningRecycleBin", "Effect": "Deny",
                           "Action": list(DENIED_ON_RECYCLE_BIN_RULES),
                           "Resource": list(args.recycle_bin_rule_arns)})
    for sid, actions, arns in (("DenyWeakeningDumpBucket", DENIED_ON_DUMP_BUCKET, args.bucket_arns),
                               ("DenyDestroyingBackupKeys", DENIED_ON_KEYS, [*args.key_arns, *extra_key_arns]),
                               ("DenySilencingAlarms", DENIED_ON_ALARMS, args.alarm_arns),
                               ("DenySilencingEventRules", DENIED_ON_EVENT_RULES, args.rule_arns),
                               ("DenyStoppingTheTrail", DENIED_ON_TRAILS, args.trail_arns),
                               ("DenyDeletingAlertTopics", DENIED_ON_TOPICS, args.topic_arns)):
        if arns:
            statements.append({"Sid": sid, "Effect": "Deny", "Action": list(actions), "Resource": list(arns)})
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements})


class AccountGuardRails(pulumi.ComponentResource):
    """EBS snapshot block public access, EBS encryption by default, a deny-only IAM policy for human
    operators attached to each configured group, role and user."""

    def __init__(self, name: str, args: AccountGuardRailsArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.ebs_key: Optional[aws.kms.Key] = None
        ebs_key_arn: Optional[pulumi.Input[str]] = None
        if args.ebs_default_kms_key == "stack":
            # Volumes (and so AWS Backup's EC2 snapshots) encrypted with a customer managed key: what
            # AWS Backup needs to copy them into a logically air-gapped vault.
            self.ebs_key, self.ebs_key_alias = rotating_key(
                f"{name}-ebs-key", "Default key of new EBS volumes (quickport-backup)", "quickport-backup-ebs", child)
            ebs_key_arn = self.ebs_key.arn
        elif args.ebs_default_kms_key != "aws-managed":
            ebs_key_arn = args.ebs_default_kms_key
        self.snapshot_block_public_access = aws.ebs.SnapshotBlockPublicAccess(
            f"{name}-snapshot-block-public-access", state=args.snapshot_sharing, opts=child)
        self.operator_policy = aws.iam.Policy(
            f"{name}-operator-policy",
            name=args.policy_name,
            description="Denies human operators the calls that destroy or weaken quickport-backup's "
                        "snapshots, vault, plan, Recycle Bin rules, dump bucket and keys",
            policy=guard_rails_policy_document(args, [self.ebs_key.arn] if self.ebs_key else []),
            tags=STRATEGY_TAGS,
            opts=child)
        self.ebs_encryption = aws.ebs.EncryptionByDefault(f"{name}-ebs-encryption-by-default", enabled=True,
                                                          opts=child)
        self.ebs_default_key: Optional[aws.ebs.DefaultKmsKey] = None
        if ebs_key_arn is not None:
            self.ebs_default_key = aws.ebs.DefaultKmsKey(f"{name}-ebs-default-key", key_arn=ebs_key_arn, opts=child)
        # Non-exclusive attachments (never aws.iam.PolicyAttachment, which detaches everyone else).
        policy_arn = self.operator_policy.arn
        self.attachments: list[pulumi.CustomResource] = [
            *(aws.iam.GroupPolicyAttachment(f"{name}-group-{group}", group=group, policy_arn=policy_arn, opts=child)
              for group in args.operator_group_names),
            *(aws.iam.RolePolicyAttachment(f"{name}-role-{role}", role=role, policy_arn=policy_arn, opts=child)
              for role in args.operator_role_names),
            *(aws.iam.UserPolicyAttachment(f"{name}-user-{user}", user=user, policy_arn=policy_arn, opts=child)
              for user in args.operator_user_names)]
        self.operator_policy_arn = self.operator_policy.arn
        self.register_outputs({"operatorPolicyArn": self.operator_policy_arn})
