"""Who is calling, and the ARNs that follow from it."""
from __future__ import annotations

from scripts.aws.session import partition_of


def caller_arn(sts) -> str:
    """The ARN of whoever runs the command (recorded as the snapshot's CreatedBy tag)."""
    return sts.get_caller_identity()["Arn"]


def account_id(sts) -> str:
    return sts.get_caller_identity()["Account"]


def instance_arn(region: str, account: str, instance_id: str) -> str:
    """The ARN AWS Backup records as the recovery point's ResourceArn (partition from the region)."""
    return f"arn:{partition_of(region)}:ec2:{region}:{account}:instance/{instance_id}"


def managed_policy_arn(region: str, account: str, name: str) -> str:
    """The ARN of a customer managed IAM policy of this account (IAM ARNs carry no region)."""
    return f"arn:{partition_of(region)}:iam::{account}:policy/{name}"
