"""DailySnapshotPlan: one AWS Backup rule that snapshots the production instance every night.

Seed rules: zero data loss (a crash-consistent image of every volume daily, kept `retentionDays`),
fast recovery (restore an EC2 recovery point, proven weekly by a restore test), and optionally a copy
in a second region for a regional outage.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws

from components.backup_vault import rotating_key, vault_lock, vault_policy_document
from components.config import AirGappedVault, StackConfig, VaultLock
from components.tags import STRATEGY_TAGS

TYPE_TOKEN = "quickport:backup:DailySnapshotPlan"
# Names are scoped to the plan, so fixed names never clash and stay inside AWS's 50 characters.
RULE_NAME = "daily"
SELECTION_NAME = "instance-by-arn"
BACKUP_SERVICE_POLICIES = (
    "service-role/AWSBackupServiceRolePolicyForBackup",
    "service-role/AWSBackupServiceRolePolicyForRestores",
)


@dataclass(frozen=True)
class DailySnapshotPlanArgs:
    plan_name: str                                    # AWS Backup plan name; also names the role
    vault_name: pulumi.Input[str]                     # target vault (BackupVault.vault_name)
    vault_arn: pulumi.Input[str]                      # same vault; the restore test reads from it
    instance_id: str                                  # the one EC2 instance selected, by ARN
    region: str                                       # the instance's region (for its ARN)
    schedule: str = "cron(0 20 * * ? *)"              # 20:00 UTC = 01:30 IST
    retention_days: int = 7                           # lifecycle.deleteAfter; must lie in the vault lock range
    start_window_minutes: int = 60                    # a job not started within an hour is a failure, and alerts
    completion_window_minutes: int = 480              # a root-volume snapshot takes minutes; 8 h is generous
    copy_to_region: Optional[str] = None              # None: no cross-region copy
    copy_vault_lock: VaultLock = field(default_factory=VaultLock)  # lock of the copy vault
    # None: no air-gapped copy. Else a logically air-gapped vault (compliance lock built in) in this
    # account and region, which the daily rule copies every recovery point to.
    air_gapped_vault: Optional[AirGappedVault] = None
    restore_test_schedule: str = "cron(0 6 ? * SUN *)"  # weekly, Sunday 06:00 UTC (11:30 IST)
    restore_test_validation_hours: int = 2            # the test instance is deleted after this
    # None: AWS infers the restore (default VPC and security group, same instance type, IMDSv2).
    # Set securityGroupIds/subnetId to boot the test copy where it cannot reach customers.
    restore_test_metadata_overrides: Optional[dict[str, str]] = None

    @classmethod
    def from_config(cls, cfg: StackConfig, vault_name: pulumi.Input[str],
                    vault_arn: pulumi.Input[str]) -> "DailySnapshotPlanArgs":
        b = cfg.backup
        return cls(plan_name=b.plan_name, vault_name=vault_name, vault_arn=vault_arn,
                   instance_id=cfg.instance_id, region=cfg.region, schedule=b.schedule,
                   retention_days=b.retention_days, copy_to_region=b.copy_to_region,
                   copy_vault_lock=b.vault_lock, air_gapped_vault=b.air_gapped_vault)


def instance_arn(region: str, instance_id: str) -> pulumi.Output[str]:
    """arn:<partition>:ec2:<region>:<account>:instance/<id>, as AWS Backup records the resource."""
    identity = aws.get_caller_identity_output()
    partition = aws.get_partition_output()
    return pulumi.Output.concat("arn:", partition.partition, ":ec2:", region, ":", identity.account_id,
                                ":instance/", instance_id)


def restore_testing_name(name: str) -> str:
    """Restore testing plan and selection names allow only letters, digits and underscores."""
    return "".join(c if c.isalnum() else "_" for c in name)[:50]


class DailySnapshotPlan(pulumi.ComponentResource):
    """AWS Backup plan + selection of the instance by ARN, its service role and a weekly restore test."""

    def __init__(self, name: str, args: DailySnapshotPlanArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        partition = aws.get_partition_output().partition

        self.role = aws.iam.Role(
            f"{name}-role",
            name=f"{args.plan_name}-backup",
            description=f"AWS Backup service role for plan {args.plan_name}",
            assume_role_policy=pulumi.Output.json_dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": "backup.amazonaws.com"},
                               "Action": "sts:AssumeRole"}],
            }),
            tags=STRATEGY_TAGS, opts=child)
        self.role_policy_attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-role-{policy.split('/')[-1]}",
                role=self.role.name,
                policy_arn=pulumi.Output.concat("arn:", partition, ":iam::aws:policy/", policy),
                opts=child)
            for policy in BACKUP_SERVICE_POLICIES]

        copy_actions = []
        self.copy_provider: Optional[aws.Provider] = None
        self.copy_key: Optional[aws.kms.Key] = None
        self.copy_vault: Optional[aws.backup.Vault] = None
        self.air_gapped_vault: Optional[aws.backup.LogicallyAirGappedVault] = None
        if args.copy_to_region:
            copy_actions.append(self._declare_copy_vault(name, args))
        if args.air_gapped_vault:
            copy_actions.append(self._declare_air_gapped_vault(name, args, args.air_gapped_vault))

        self.plan = aws.backup.Plan(
            f"{name}-plan",
            name=args.plan_name,
            rules=[aws.backup.PlanRuleArgs(
                rule_name=RULE_NAME,
                target_vault_name=args.vault_name,
                schedule=args.schedule,
                start_window=args.start_window_minutes,
                completion_window=args.completion_window_minutes,
                lifecycle=aws.backup.PlanRuleLifecycleArgs(delete_after=args.retention_days),
                copy_actions=copy_actions or None,
                # The tag puts the recovery point's snapshots under the operators' deny-delete guard rail.
                recovery_point_tags=STRATEGY_TAGS,
            )],
            tags=STRATEGY_TAGS,
            opts=child)

        self.instance_arn = instance_arn(args.region, args.instance_id)
        # Resources only, no tag conditions: AWS ORs tags with ARNs, so a tag would widen the selection.
        self.selection = aws.backup.Selection(
            f"{name}-selection",
            name=SELECTION_NAME,
            plan_id=self.plan.id,
            iam_role_arn=self.role.arn,
            resources=[self.instance_arn],
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.role_policy_attachments))

        test_name = restore_testing_name(f"{args.plan_name}_restore_test")
        self.restore_testing_plan = aws.backup.RestoreTestingPlan(
            f"{name}-restore-test",
            name=test_name,
            schedule_expression=args.restore_test_schedule,
            recovery_point_selection=aws.backup.RestoreTestingPlanRecoveryPointSelectionArgs(
                algorithm="LATEST_WITHIN_WINDOW",
                include_vaults=[args.vault_arn],
                recovery_point_types=["SNAPSHOT"],
                selection_window_days=max(1, min(args.retention_days, 365)),
            ),
            tags=STRATEGY_TAGS,
            opts=child)
        self.restore_testing_selection = aws.backup.RestoreTestingSelection(
            f"{name}-restore-test-instance",
            name=restore_testing_name(f"{args.plan_name}_instance"),
            restore_testing_plan_name=self.restore_testing_plan.name,
            protected_resource_type="EC2",
            protected_resource_arns=[self.instance_arn],
            iam_role_arn=self.role.arn,
            validation_window_hours=args.restore_test_validation_hours,
            restore_metadata_overrides=args.restore_test_metadata_overrides,
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.role_policy_attachments))

        self.plan_id = self.plan.id
        self.plan_arn = self.plan.arn
        self.role_arn = self.role.arn
        self.register_outputs({
            "planId": self.plan_id, "planArn": self.plan_arn, "roleArn": self.role_arn,
            "selectionId": self.selection.id, "restoreTestingPlanName": self.restore_testing_plan.name,
            "copyVaultArn": self.copy_vault.arn if self.copy_vault else None,
            "airGappedVaultArn": self.air_gapped_vault.arn if self.air_gapped_vault else None,
        })

    def _declare_copy_vault(self, name: str, args: DailySnapshotPlanArgs) -> aws.backup.PlanRuleCopyActionArgs:
        """A KMS key and locked vault in the copy region (through its own provider); the copy action."""
        region = args.copy_to_region
        self.copy_provider = aws.Provider(f"{name}-copy-provider", region=region,
                                          opts=pulumi.ResourceOptions(parent=self))
        in_region = pulumi.ResourceOptions(parent=self, provider=self.copy_provider)
        kept = pulumi.ResourceOptions(parent=self, provider=self.copy_provider, protect=True)
        vault_name = f"{args.plan_name}-copy"[:50]
        self.copy_key, self.copy_key_alias = rotating_key(
            f"{name}-copy-key", f"Encrypts the {region} copy vault of AWS Backup plan {args.plan_name}",
            vault_name, in_region)
        self.copy_vault = aws.backup.Vault(
            f"{name}-copy-vault", name=vault_name, kms_key_arn=self.copy_key.arn, force_destroy=False,
            tags=STRATEGY_TAGS, opts=kept)
        self.copy_vault_lock = vault_lock(f"{name}-copy-vault-lock", self.copy_vault.name,
                                          args.copy_vault_lock, kept)
        # The same deny as the main vault: without it, anyone allowed backup:DeleteRecoveryPoint could
        # empty the copy (and the pack's backup-vault-deny-delete fails the stack).
        self.copy_vault_policy = aws.backup.VaultPolicy(
            f"{name}-copy-vault-policy", backup_vault_name=self.copy_vault.name, policy=vault_policy_document(),
            opts=in_region)
        return aws.backup.PlanRuleCopyActionArgs(
            destination_vault_arn=self.copy_vault.arn,
            lifecycle=aws.backup.PlanRuleCopyActionLifecycleArgs(delete_after=args.retention_days))

    def _declare_air_gapped_vault(self, name: str, args: DailySnapshotPlanArgs,
                                  vault: AirGappedVault) -> aws.backup.PlanRuleCopyActionArgs:
        """A logically air-gapped vault: compliance-locked by AWS (nobody, root included, deletes a
        point before its retention ends), encrypted with an AWS-owned key (AWS's recommendation: the
        account cannot lose or disable it), shareable with a recovery account through AWS RAM."""
        self.air_gapped_vault = aws.backup.LogicallyAirGappedVault(
            f"{name}-air-gapped-vault", name=f"{args.plan_name}-air-gapped"[:50],
            min_retention_days=vault.min_retention_days, max_retention_days=vault.max_retention_days,
            tags=STRATEGY_TAGS, opts=pulumi.ResourceOptions(parent=self, protect=True))
        # The copy keeps the daily retention, which the config holds inside the vault's range.
        return aws.backup.PlanRuleCopyActionArgs(
            destination_vault_arn=self.air_gapped_vault.arn,
            lifecycle=aws.backup.PlanRuleCopyActionLifecycleArgs(delete_after=args.retention_days))
