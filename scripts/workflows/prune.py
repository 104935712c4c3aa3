"""`backupctl prune`: delete the CLI's pre-maintenance snapshots whose RetainUntil has passed.

Plan first, delete only with --yes. Only a snapshot that is all of: tagged RetainUntil in the past,
not locked, not a baseline, not behind an AMI and not the newest snapshot of its action is deleted;
every other one is kept with the reason. Nothing is deleted unless a Recycle Bin retention rule
for EBS snapshots covers them (deleted snapshots go there and can be recovered for its period).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from components.naming import parse_snapshot_name
from components.tags import RETAIN_UNTIL_TAG, STRATEGY_TAG_KEY, STRATEGY_TAG_VALUE
from scripts.aws import ec2 as ec2api
from scripts.aws import rbin as rbinapi
from scripts.aws.errors import AWS_ERRORS, describe, error_code
from scripts.oplog import operation
from scripts.times import iso_utc, parse_time, utcnow
from scripts.workflows.base import Session

LOCKED_STATES = ("compliance", "governance", "compliance-cooloff")
DENIED_CODES = ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException")


@dataclass
class PruneItem:
    snapshot_id: str
    name: Optional[str]
    action: Optional[str]
    retain_until: Optional[str]
    delete: bool
    reason: str
    result: Optional[str] = None        # after --yes: deleted, or why it failed


@dataclass
class PrunePlan:
    region: str
    items: list[PruneItem] = field(default_factory=list)
    recycle_bin: Optional[str] = None   # the rule that keeps what is deleted
    blockers: list[str] = field(default_factory=list)

    @property
    def to_delete(self) -> list[PruneItem]:
        return [i for i in self.items if i.delete]

    def to_json(self) -> dict[str, Any]:
        return {"region": self.region, "recycleBinRule": self.recycle_bin, "blockers": self.blockers,
                "snapshots": [asdict(i) for i in self.items]}


def _recycle_bin_rule(session: Session) -> tuple[Optional[str], Optional[str]]:
    """(a description of the rule that keeps deleted strategy snapshots, None) or (None, why not)."""
    try:
        rules = rbinapi.recycle_bin_rules(session.client("rbin"), "EBS_SNAPSHOT")
    except AWS_ERRORS as e:
        return None, f"could not read the Recycle Bin rules ({describe(e)}): prune deletes nothing it cannot recover"
    for rule in rules:
        tags = {(t.get("ResourceTagKey"), t.get("ResourceTagValue")) for t in rule.get("ResourceTags") or []}
        excluded = {(t.get("ResourceTagKey"), t.get("ResourceTagValue")) for t in rule.get("ExcludeResourceTags") or []}
        ours = (STRATEGY_TAG_KEY, STRATEGY_TAG_VALUE)
        if rule.get("Status") not in (None, "available") or ours in excluded or (tags and ours not in tags):
            continue
        period = rule.get("RetentionPeriod") or {}
        return (f"{rule.get('Identifier')} ({'Region-level' if not tags else 'tag-level'}, keeps deleted snapshots "
                f"{period.get('RetentionPeriodValue')} {str(period.get('RetentionPeriodUnit', '')).lower()}, "
                f"{rule.get('LockState') or 'unlocked'})"), None
    return None, (f"no available Recycle Bin retention rule for EBS snapshots covers the strategy's snapshots in "
                  f"{session.region}: a deletion could not be undone, so prune deletes nothing (deploy the stack's "
                  f"RecycleBin component first)")


def _action_of(snap: dict[str, Any]) -> Optional[str]:
    tags = ec2api.tags_of(snap)
    if tags.get("Reason"):
        return tags["Reason"]
    try:
        return parse_snapshot_name(tags.get("Name"))[1]
    except Exception:   # a strategy-tagged snapshot with another name: no action to group it by
        return None


def build_prune_plan(session: Session, baseline_names: frozenset[str] = frozenset()) -> PrunePlan:
    """Read-only: every strategy snapshot, delete or keep, and why."""
    ec2 = session.client("ec2")
    plan = PrunePlan(region=session.region)
    plan.recycle_bin, problem = _recycle_bin_rule(session)
    if problem:
        plan.blockers.append(problem)
    snaps = ec2api.strategy_snapshots(ec2)
    lock_error = None
    try:
        locks = ec2api.describe_locks(ec2, [s["SnapshotId"] for s in snaps]) if snaps else {}
    except AWS_ERRORS as e:
        locks, lock_error = {}, f"lock state unknown ({describe(e)})"
    behind = ec2api.snapshots_behind_images(ec2)
    newest: dict[tuple[Optional[str], str], str] = {}
    for s in snaps:   # newest first: the first of each action is its newest
        action = _action_of(s)
        if action:
            newest.setdefault((ec2api.tags_of(s).get("Instance"), action), s["SnapshotId"])
    now = utcnow()
    for s in snaps:
        sid, tags, action = s["SnapshotId"], ec2api.tags_of(s), _action_of(s)
        until_text = tags.get(RETAIN_UNTIL_TAG)
        until = parse_time(until_text)
        lock = locks.get(sid) or {}
        if until_text is None:
            keep = "no RetainUntil tag (a baseline, a safety snapshot or one older than the tag): kept"
        elif until is None:
            keep = f"RetainUntil {until_text!r} is not a time: kept"
        elif until > now:
            keep = f"retained until {iso_utc(until)}"
        elif tags.get("Name") in baseline_names:
            keep = "a baseline snapshot of the stack (baselines are managed by Pulumi)"
        elif sid in behind:
            keep = f"behind the AMI {behind[sid]} (deregister the AMI first)"
        elif lock_error:
            keep = lock_error
        elif lock.get("LockState") in LOCKED_STATES:
            keep = f"locked ({lock['LockState']}) until {iso_utc(lock.get('LockExpiresOn'))}"
        elif action and newest.get((tags.get("Instance"), action)) == sid:
            keep = f"the newest snapshot of action {action!r}"
        else:
            keep = ""
        plan.items.append(PruneItem(snapshot_id=sid, name=tags.get("Name"), action=action,
                                    retain_until=until_text, delete=not keep,
                                    reason=keep or f"expired {iso_utc(until)}, unlocked, not the newest of {action!r}"))
    session.log("prune-plan", to_delete=[i.snapshot_id for i in plan.to_delete], blockers=plan.blockers)
    return plan


def execute_prune(session: Session, plan: PrunePlan) -> PrunePlan:
    """Delete what the plan marks (it has no blockers); each item's result says how it went."""
    ec2 = session.client("ec2")
    with operation(session.log, "prune", start={"to_delete": [i.snapshot_id for i in plan.to_delete]}) as op:
        for item in plan.to_delete:
            session.progress(f"deleting {item.snapshot_id} ({item.name}) into the Recycle Bin ({plan.recycle_bin})")
            try:
                ec2api.delete_snapshot(ec2, item.snapshot_id)
            except AWS_ERRORS as e:
                denied = error_code(e) in DENIED_CODES
                item.result = describe(e) + (": the guard-rails operator policy denies ec2:DeleteSnapshot on "
                                             "strategy snapshots on purpose; run prune as the maintenance role "
                                             "(docs/cli-snapshots.md)" if denied else "")
                continue
            item.result = "deleted"
            session.log("prune-deleted", snapshot_id=item.snapshot_id, name=item.name, retain_until=item.retain_until)
        failed = [i.snapshot_id for i in plan.to_delete if i.result != "deleted"]
        op.end("failed" if failed else "finished", deleted=[i.snapshot_id for i in plan.to_delete
                                                            if i.result == "deleted"], not_deleted=failed)
    return plan
