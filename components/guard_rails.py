"""AccountGuardRails: account-level blocks on sharing snapshots and on people destroying backups.

Seed rule: protection from human error. No snapshot of the account can be shared publicly, and an
IAM policy (attach it to the operators' group or role) denies the destructive calls a tired person
or a leaked key could make against the strategy's snapshots, vault, plan, Recycle Bin rules, dump
bucket and keys. Deny wins over any Allow, including AdministratorAccess.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

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
DENIED_ON_DUMP_BUCKET = ("s3:DeleteBucket", "s3:DeleteBucketPolicy", "s3:PutBucketVersioning",
                         "s3:PutLifecycleConfiguration")
DENIED_ON_KEYS = ("kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:PutKeyPolicy")


@dataclass(frozen=True)
class AccountGuardRailsArgs:
    region: str                                        # region of the tagged snapshots and images
    vault_arns: Sequence[pulumi.Input[str]] = ()       # AWS Backup vaults (main and copy)
    plan_arn: Optional[pulumi.Input[str]] = None       # the daily plan
    recycle_bin_rule_arns: Sequence[pulumi.Input[str]] = ()
    bucket_arn: Optional[pulumi.Input[str]] = None     # the dump bucket
    key_arns: Sequence[pulumi.Input[str]] = ()         # KMS keys of vaults and bucket
    policy_name: str = "quickport-backup-operator-guard-rails"
    snapshot_sharing: str = "block-all-sharing"        # EBS snapshot block public access state
    operator_group_names: Sequence[str] = field(default_factory=tuple)  # attach the policy to these


def guard_rails_policy_document(args: AccountGuardRailsArgs) -> pulumi.Output[str]:
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
    if args.bucket_arn is not None:
        statements.append({"Sid": "DenyWeakeningDumpBucket", "Effect": "Deny",
                           "Action": list(DENIED_ON_DUMP_BUCKET), "Resource": args.bucket_arn})
    if args.key_arns:
        statements.append({"Sid": "DenyDestroyingBackupKeys", "Effect": "Deny",
                           "Action": list(DENIED_ON_KEYS), "Resource": list(args.key_arns)})
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements})


class AccountGuardRails(pulumi.ComponentResource):
    """EBS snapshot block public access + a deny-only IAM policy for human operators."""

    def __init__(self, name: str, args: AccountGuardRailsArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.snapshot_block_public_access = aws.ebs.SnapshotBlockPublicAccess(
            f"{name}-snapshot-block-public-access", state=args.snapshot_sharing, opts=child)
        self.operator_policy = aws.iam.Policy(
            f"{name}-operator-policy",
            name=args.policy_name,
            description="Denies human operators the calls that destroy or weaken quickport-backup's "
                        "snapshots, vault, plan, Recycle Bin rules, dump bucket and keys",
            policy=guard_rails_policy_document(args),
            tags=STRATEGY_TAGS,
            opts=child)
        self.attachments = [
            aws.iam.GroupPolicyAttachment(f"{name}-{group}", group=group,
                                          policy_arn=self.operator_policy.arn, opts=child)
            for group in args.operator_group_names]
        self.operator_policy_arn = self.operator_policy.arn
        self.register_outputs({"operatorPolicyArn": self.operator_policy_arn})
