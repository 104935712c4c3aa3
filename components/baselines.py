"""BaselineSnapshots: named, locked EBS snapshots taken before risky maintenance.

Seed rules: safe maintenance (a known-good root volume to go back to, named
prod-root-YYYY-MM-DD-before-<action>) and protection from human error (EC2 snapshot lock, protect,
retain_on_delete: removing a baseline from config never deletes the snapshot).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws

from components.config import Baseline, StackConfig
from components.snapshot_lock import EbsSnapshotLock, EbsSnapshotLockArgs
from components.tags import STRATEGY_TAGS

TYPE_TOKEN = "quickport:backup:BaselineSnapshots"


@dataclass(frozen=True)
class BaselineSnapshotsArgs:
    region: str                                  # where the volumes and snapshot locks live
    instance_id: str                             # the production instance, recorded on each snapshot
    baselines: tuple[Baseline, ...] = ()         # none: the component declares nothing

    @classmethod
    def from_config(cls, cfg: StackConfig) -> "BaselineSnapshotsArgs":
        return cls(region=cfg.region, instance_id=cfg.instance_id, baselines=cfg.baselines)


def baseline_tags(baseline: Baseline, instance_id: str) -> dict[str, str]:
    """The tags the operator CLI and the guard rails look for (Strategy) and people read.

    Instance and Volume are the same tags `backupctl snapshot` writes, so `backupctl verify` runs the
    section 8 checklist on a baseline exactly as on a pre-maintenance snapshot."""
    return {"Name": baseline.name, "Date": baseline.date.isoformat(), "Reason": baseline.action,
            "Instance": instance_id, "Volume": baseline.volume_id, **STRATEGY_TAGS}


class BaselineSnapshots(pulumi.ComponentResource):
    """One EBS snapshot plus its EC2 snapshot lock per configured baseline."""

    def __init__(self, name: str, args: BaselineSnapshotsArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE_TOKEN, name, None, opts)
        self.snapshots: dict[str, aws.ebs.Snapshot] = {}
        self.locks: dict[str, EbsSnapshotLock] = {}
        for baseline in args.baselines:
            snapshot = aws.ebs.Snapshot(
                f"{name}-{baseline.name}",
                volume_id=baseline.volume_id,
                description=f"{baseline.name}: root volume before {baseline.action}",
                tags=baseline_tags(baseline, args.instance_id),
                # retain_on_delete: dropping the baseline from config forgets it but keeps the data;
                # the lock and the Recycle Bin decide when it may really go.
                opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True))
            self.snapshots[baseline.name] = snapshot
            self.locks[baseline.name] = EbsSnapshotLock(
                f"{name}-{baseline.name}-lock",
                EbsSnapshotLockArgs(snapshot_id=snapshot.id, mode=baseline.lock.mode,
                                    days=baseline.lock.days, cool_off_hours=baseline.lock.cool_off_hours,
                                    region=args.region),
                opts=pulumi.ResourceOptions(parent=self, protect=True))

        self.snapshot_ids = {n: s.id for n, s in self.snapshots.items()}
        self.register_outputs({"snapshotIds": self.snapshot_ids,
                               "lockStates": {n: lk.lock_state for n, lk in self.locks.items()}})
