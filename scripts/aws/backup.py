"""AWS Backup reads behind `backupctl audit`: recovery points, the plan, the vault, its policy."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Optional


def recovery_points(backup, vault_name: str, resource_arn: str,
                    created_after: Optional[dt.datetime] = None) -> list[dict[str, Any]]:
    """The vault's recovery points of one resource (optionally only those created after a time)."""
    params: dict[str, Any] = {"BackupVaultName": vault_name, "ByResourceArn": resource_arn}
    if created_after is not None:
        params["ByCreatedAfter"] = created_after
    points: list[dict[str, Any]] = []
    for page in backup.get_paginator("list_recovery_points_by_backup_vault").paginate(**params):
        points.extend(page.get("RecoveryPoints", []))
    return points


def find_backup_plan(backup, plan_name: str) -> Optional[dict[str, Any]]:
    """GetBackupPlan output of the (non-deleted) plan with this name, or None."""
    for page in backup.get_paginator("list_backup_plans").paginate():
        for summary in page.get("BackupPlansList", []):
            if summary.get("BackupPlanName") == plan_name and not summary.get("DeletionDate"):
                return backup.get_backup_plan(BackupPlanId=summary["BackupPlanId"])
    return None


def describe_vault(backup, vault_name: str) -> dict[str, Any]:
    return backup.describe_backup_vault(BackupVaultName=vault_name)


def vault_access_policy(backup, vault_name: str) -> Optional[dict[str, Any]]:
    """The vault's access policy document, or None when the vault has none."""
    try:
        response = backup.get_backup_vault_access_policy(BackupVaultName=vault_name)
    except backup.exceptions.ResourceNotFoundException:
        return None
    policy = response.get("Policy")
    return json.loads(policy) if policy else None
