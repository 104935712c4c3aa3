"""RecycleBin: deleted EBS snapshots and AMIs stay recoverable for `retentionDays`.

Seed rule: protection from human error. A snapshot or AMI deleted by mistake (or by a script) goes
to the Recycle Bin instead of disappearing; a locked rule cannot be deleted or weakened until its
unlock delay has passed after an explicit unlock. The lock is enforced by a RecycleBinRuleLock
(components/rbin_lock.py), which calls rbin:LockRule when the live rule is not locked.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws

from components.config import StackConfig
from components.rbin_lock import RecycleBinRuleLock, RecycleBinRuleLockArgs
from components.tags import STRATEGY_TAGS

TYPE_TOKEN = "quickport:backup:RecycleBin"
RESOURCE_TYPES = ("EBS_SNAPSHOT", "EC2_IMAGE")


@dataclass(frozen=True)
class RecycleBinArgs:
    retention_days: int = 7        # how long a deleted snapshot/AMI can be restored (1..365)
    lock: bool = True              # locked rules cannot be deleted or changed until unlocked + delay
    unlock_delay_days: int = 7     # 7..30: the time a person has to notice a malicious unlock

    @classmethod
    def from_config(cls, cfg: StackConfig) -> "RecycleBinArgs":
        r = cfg.recycle_bin
        return cls(retention_days=r.retention_days, lock=r.lock, unlock_delay_days=r.unlock_delay_days)


class RecycleBin(pulumi.ComponentResource):
    """Region-level retention rules for EBS snapshots and EC2 AMIs (no tag filters: everything)."""

    def __init__(self, name: str, args: RecycleBinArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE_TOKEN, name, None, opts)
        lock = None
        if args.lock:
            lock = aws.rbin.RuleLockConfigurationArgs(
                unlock_delay=aws.rbin.RuleLockConfigurationUnlockDelayArgs(
                    unlock_delay_unit="DAYS", unlock_delay_value=args.unlock_delay_days))
        self.rules: dict[str, aws.rbin.Rule] = {}
        self.locks: dict[str, RecycleBinRuleLock] = {}
        for resource_type in RESOURCE_TYPES:
            slug = resource_type.lower().replace("_", "-")
            # Neither resource_tags nor exclude_resource_tags: a Region-level rule covers every
            # snapshot/AMI, including ones nobody thought to tag.
            self.rules[resource_type] = aws.rbin.Rule(
                f"{name}-{slug}",
                description=f"Keeps deleted {resource_type} resources for {args.retention_days} days "
                            "(quickport-backup)",
                resource_type=resource_type,
                retention_period=aws.rbin.RuleRetentionPeriodArgs(
                    retention_period_unit="DAYS", retention_period_value=args.retention_days),
                lock_configuration=lock,
                tags=STRATEGY_TAGS,
                opts=pulumi.ResourceOptions(parent=self, protect=True))
            if args.lock:
                # The provider may not send lock_configuration (terraform-provider-aws#32534): read the
                # live LockState after the rule exists and call LockRule when it is not locked.
                self.locks[resource_type] = RecycleBinRuleLock(
                    f"{name}-{slug}-lock", RecycleBinRuleLockArgs(rule_id=self.rules[resource_type].id,
                                                                  unlock_delay_days=args.unlock_delay_days),
                    opts=pulumi.ResourceOptions(parent=self, protect=True))

        self.snapshot_rule_id = self.rules["EBS_SNAPSHOT"].id
        self.image_rule_id = self.rules["EC2_IMAGE"].id
        self.register_outputs({"snapshotRuleId": self.snapshot_rule_id, "imageRuleId": self.image_rule_id})
