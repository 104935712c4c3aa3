"""Thin read-only boto3 functions behind `backupctl audit` and `backupctl cost`.

Each takes a client first and returns plain data; a botocore error propagates unchanged so the
caller can report the check as could-not-check with the AWS error code (AccessDenied, an API the
endpoint lacks, ...). Nothing here changes the account.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Iterable, Optional

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

# What a read can raise when AWS (or an emulator) refuses or cannot answer. ResponseParserError is
# not a BotoCoreError: it is what an endpoint that does not implement an API (an HTML 500 page) gives.
AWS_ERRORS = (BotoCoreError, ClientError, ResponseParserError)


def error_reason(exc: BaseException) -> str:
    """One line saying why a read failed, naming the API when botocore knows it."""
    if isinstance(exc, ResponseParserError):
        return "unreadable response from the endpoint (it does not implement this API?)"
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code, status = err.get("Code", ""), exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code.isdigit() or (status and status >= 500 and not err.get("Message")):
            return f"{exc.operation_name}: HTTP {code or status} from the endpoint (it does not implement this API?)"
        return f"{exc.operation_name}: {code}: {err.get('Message', '')}".rstrip(": ")
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- identity -----------------------------------------------------------------------------------

def account_id(sts) -> str:
    return sts.get_caller_identity()["Account"]


def instance_arn(region: str, account: str, instance_id: str) -> str:
    """The ARN AWS Backup records as the recovery point's ResourceArn (partition from the region)."""
    partition = boto3.session.Session().get_partition_for_region(region)
    return f"arn:{partition}:ec2:{region}:{account}:instance/{instance_id}"


# --- AWS Backup ---------------------------------------------------------------------------------

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


# --- Recycle Bin --------------------------------------------------------------------------------

def recycle_bin_rules(rbin, resource_type: str = "EBS_SNAPSHOT") -> list[dict[str, Any]]:
    """GetRule of every retention rule for the resource type (ListRules omits tags and status)."""
    rules = []
    for page in rbin.get_paginator("list_rules").paginate(ResourceType=resource_type):
        for summary in page.get("Rules", []):
            rules.append(rbin.get_rule(Identifier=summary["Identifier"]))
    return rules


# --- EC2 (the strategy's snapshots and their locks: scripts/ec2ops.py) ----------------------------

def snapshots_by_name(ec2, names: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Our own snapshots whose Name tag is one of the names, grouped by name."""
    names = list(names)
    found: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    if not names:
        return found
    pages = ec2.get_paginator("describe_snapshots").paginate(
        OwnerIds=["self"], Filters=[{"Name": "tag:Name", "Values": names}])
    for page in pages:
        for snap in page.get("Snapshots", []):
            name = next((t["Value"] for t in snap.get("Tags", []) if t["Key"] == "Name"), None)
            if name in found:
                found[name].append(snap)
    return found


def snapshot_block_public_access_state(ec2) -> str:
    return ec2.get_snapshot_block_public_access_state()["State"]


def volume(ec2, volume_id: str) -> dict[str, Any]:
    return ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]


# --- S3 -----------------------------------------------------------------------------------------

def read_json_object(s3, bucket: str, key: str) -> Optional[dict[str, Any]]:
    """The JSON document at the key, or None when the key does not exist."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body)


def newest_object(s3, bucket: str, prefix: str, suffix: str = "") -> Optional[dict[str, Any]]:
    """The most recently modified object under the prefix whose key ends with the suffix."""
    newest = None
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(suffix) and (newest is None or obj["LastModified"] > newest["LastModified"]):
                newest = obj
    return newest


def bucket_versioning(s3, bucket: str) -> str:
    """'Enabled', 'Suspended', or '' for a bucket that never had versioning."""
    return s3.get_bucket_versioning(Bucket=bucket).get("Status", "")


def bucket_public_access_block(s3, bucket: str) -> Optional[dict[str, bool]]:
    """The bucket's four public access block flags, or None when none is configured."""
    try:
        return s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    except s3.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") == "NoSuchPublicAccessBlockConfiguration":
            return None
        raise


def bucket_encryption_rules(s3, bucket: str) -> list[dict[str, Any]]:
    """The bucket's default encryption rules ([] when none is configured)."""
    try:
        config = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    except s3.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ServerSideEncryptionConfigurationNotFoundError":
            return []
        raise
    return config.get("Rules", [])
