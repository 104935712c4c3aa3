"""Wires the components together and exports the ids a person needs."""
from __future__ import annotations

import pulumi

from components.backup_plan import DailySnapshotPlan, DailySnapshotPlanArgs
from components.backup_vault import BackupVault, BackupVaultArgs
from components.baselines import BaselineSnapshots, BaselineSnapshotsArgs
from components.config import StackConfig
from components.dump_bucket import DumpBucket, DumpBucketArgs
from components.dump_document import DumpDocument, DumpDocumentArgs
from components.guard_rails import AccountGuardRails, AccountGuardRailsArgs
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
    dump = DumpDocument(f"{prefix}-dump", DumpDocumentArgs.from_config(
        cfg, bucket.bucket_name, bucket.bucket_arn, bucket.key_arn, association_depends_on=[bucket]))
    vault_arns = [vault.vault_arn] + ([plan.copy_vault.arn] if plan.copy_vault else [])
    key_arns = [vault.key_arn, bucket.key_arn] + ([plan.copy_key.arn] if plan.copy_key else [])
    guard_rails = AccountGuardRails(f"{prefix}-guard-rails", AccountGuardRailsArgs(
        region=cfg.region, vault_arns=vault_arns, plan_arn=plan.plan_arn,
        recycle_bin_rule_arns=[rule.arn for rule in recycle_bin.rules.values()],
        bucket_arn=bucket.bucket_arn, key_arns=key_arns))

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
    pulumi.export("recycleBinSnapshotRuleId", recycle_bin.snapshot_rule_id)
    pulumi.export("recycleBinImageRuleId", recycle_bin.image_rule_id)
    pulumi.export("baselineSnapshotIds", baselines.snapshot_ids)
    pulumi.export("dumpBucketName", bucket.bucket_name)
    pulumi.export("dumpKeyArn", bucket.key_arn)
    pulumi.export("dumpDocumentName", dump.document_name)
    pulumi.export("dumpAssociationId", dump.association_id)
    pulumi.export("operatorPolicyArn", guard_rails.operator_policy_arn)
    return {"recycle_bin": recycle_bin, "vault": vault, "plan": plan, "baselines": baselines,
            "bucket": bucket, "dump": dump, "guard_rails": guard_rails}
