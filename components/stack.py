"""Wires the components together and exports the ids a person needs."""
from __future__ import annotations

import pulumi

from components.backup_plan import DailySnapshotPlan, DailySnapshotPlanArgs
from components.backup_vault import BackupVault, BackupVaultArgs
from components.baselines import BaselineSnapshots, BaselineSnapshotsArgs
from components.config import StackConfig
from components.dump_bucket import DumpBucket, DumpBucketArgs
from components.dump_document import (
    BinlogShipperDocument,
    BinlogShipperDocumentArgs,
    DumpDocument,
    DumpDocumentArgs,
)
from components.guard_rails import AccountGuardRails, AccountGuardRailsArgs
from components.monitoring import BackupMonitoring, BackupMonitoringArgs
from components.recycle_bin import RecycleBin, RecycleBinArgs


def declare_stack(cfg: StackConfig) -> dict[str, pulumi.ComponentResource]:
    """Declare the whole strategy; returns the components by role (for tests and callers)."""
    prefix = f"quickport-{cfg.stack}"
    # Safety nets first: nothing the later components create can be deleted unrecoverably.
    recycle_bin = RecycleBin(f"{prefix}-recycle-bin", RecycleBinArgs.from_config(cfg))
    vault = BackupVault(f"{prefix}-vault", BackupVaultArgs.from_config(cfg))
    plan = DailySnapshotPlan(f"{prefix}-daily",
                             DailySnapshotPlanArgs.from_config(cfg, vault.vault_name, vault.vault_arn))
    baselines = BaselineSnapshots(f"{prefix}-baselines", BaselineSnapshotsArgs.from_config(cfg))
    bucket = DumpBucket(f"{prefix}-dumps", DumpBucketArgs.from_config(cfg))
    # The association must not run before the bucket's policy, encryption and versioning exist.
    dump_args = DumpDocumentArgs.from_config(cfg, bucket.bucket_name, bucket.bucket_arn, bucket.key_arn,
                                             association_depends_on=[bucket])
    dump = DumpDocument(f"{prefix}-dump", dump_args)
    # Point-in-time recovery: the shipper's service, in a document of its own (SSM's 64 KB each).
    binlog = BinlogShipperDocument(f"{prefix}-binlog", BinlogShipperDocumentArgs.from_config(
        cfg, bucket.bucket_name, bucket.bucket_arn, bucket.key_arn, association_depends_on=[bucket])) \
        if cfg.binlog.enabled else None
    monitoring = BackupMonitoring(f"{prefix}-monitoring", BackupMonitoringArgs.from_config(
        cfg, dump_document_name=dump_args.document_name))
    vault_arns = [vault.vault_arn] + ([plan.copy_vault.arn] if plan.copy_vault else []) + (
        [plan.air_gapped_vault.arn] if plan.air_gapped_vault else [])
    key_arns = [vault.key_arn, bucket.key_arn, monitoring.key.arn] + (
        [plan.copy_key.arn] if plan.copy_key else []) + ([monitoring.trail_key.arn] if monitoring.trail else [])
    guard = cfg.guard_rails
    guard_rails = AccountGuardRails(f"{prefix}-guard-rails", AccountGuardRailsArgs(
        region=cfg.region, vault_arns=vault_arns, plan_arn=plan.plan_arn,
        recycle_bin_rule_arns=[rule.arn for rule in recycle_bin.rules.values()],
        bucket_arns=[bucket.bucket_arn] + ([monitoring.trail_bucket.bucket.arn] if monitoring.trail_bucket else []),
        key_arns=key_arns, alarm_arns=[alarm.arn for alarm in monitoring.alarms.values()],
        rule_arns=[rule.arn for rule in monitoring.rules.values()],
        trail_arns=[monitoring.trail.arn] if monitoring.trail else [],
        topic_arns=[vault.topic_arn, monitoring.topic_arn],
        ebs_default_kms_key=cfg.ebs_encryption.default_kms_key,
        operator_group_names=guard.operator_groups, operator_role_names=guard.operator_roles,
        operator_user_names=guard.operator_users))

    pulumi.export("instanceId", cfg.instance_id)
    pulumi.export("vaultName", vault.vault_name)
    pulumi.export("vaultArn", vault.vault_arn)
    pulumi.export("vaultKeyArn", vault.key_arn)
    pulumi.export("alertsTopicArn", vault.topic_arn)
    pulumi.export("backupPlanId", plan.plan_id)
    pulumi.export("backupPlanArn", plan.plan_arn)
    pulumi.export("backupRoleArn", plan.role_arn)
    pulumi.export("restoreTestingPlanName", plan.restore_testing_plan.name)
    if plan.copy_vault:
        pulumi.export("copyVaultArn", plan.copy_vault.arn)
    if plan.air_gapped_vault:
        pulumi.export("airGappedVaultArn", plan.air_gapped_vault.arn)
    pulumi.export("recycleBinSnapshotRuleId", recycle_bin.snapshot_rule_id)
    pulumi.export("recycleBinImageRuleId", recycle_bin.image_rule_id)
    pulumi.export("baselineSnapshotIds", baselines.snapshot_ids)
    pulumi.export("dumpBucketName", bucket.bucket_name)
    pulumi.export("dumpKeyArn", bucket.key_arn)
    pulumi.export("dumpDocumentName", dump.document_name)
    pulumi.export("dumpAssociationId", dump.association_id)
    if binlog:
        pulumi.export("binlogShipperDocumentName", binlog.document_name)
    pulumi.export("operatorPolicyArn", guard_rails.operator_policy_arn)
    pulumi.export("monitoringTopicArn", monitoring.topic_arn)
    if monitoring.trail:
        pulumi.export("trailArn", monitoring.trail.arn)
    return {"recycle_bin": recycle_bin, "vault": vault, "plan": plan, "baselines": baselines,
            "bucket": bucket, "dump": dump, **({"binlog": binlog} if binlog else {}),
            "monitoring": monitoring, "guard_rails": guard_rails}
