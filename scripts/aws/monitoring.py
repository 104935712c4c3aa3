"""CloudWatch alarms, CloudTrail trails and the IAM attachments behind `backupctl audit`."""
from __future__ import annotations

from typing import Any


def alarms_named_with_prefix(cloudwatch, prefix: str) -> list[dict[str, Any]]:
    """Every metric alarm whose name starts with `prefix` (DescribeAlarms, paginated)."""
    alarms: list[dict[str, Any]] = []
    for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmNamePrefix=prefix,
                                                                      AlarmTypes=["MetricAlarm"]):
        alarms.extend(page.get("MetricAlarms", []))
    return alarms


def logging_trails(cloudtrail) -> list[dict[str, Any]]:
    """The trails that apply to this region (shadow copies of multi-region trails included), each
    with its GetTrailStatus merged in as "Status"."""
    trails = cloudtrail.describe_trails(includeShadowTrails=True).get("trailList", [])
    for trail in trails:
        trail["Status"] = cloudtrail.get_trail_status(Name=trail["TrailARN"])
    return trails


def policy_entities(iam, policy_arn: str) -> dict[str, list[str]]:
    """Names of the groups, roles and users a managed policy is attached to."""
    found: dict[str, list[str]] = {"groups": [], "roles": [], "users": []}
    for page in iam.get_paginator("list_entities_for_policy").paginate(PolicyArn=policy_arn):
        found["groups"] += [g["GroupName"] for g in page.get("PolicyGroups", [])]
        found["roles"] += [r["RoleName"] for r in page.get("PolicyRoles", [])]
        found["users"] += [u["UserName"] for u in page.get("PolicyUsers", [])]
    return found


def key_manager(kms, key_id: str) -> str:
    """'AWS' for an AWS managed key (aws/ebs), 'CUSTOMER' for a customer managed one."""
    return kms.describe_key(KeyId=key_id)["KeyMetadata"].get("KeyManager", "")
