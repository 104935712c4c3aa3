"""`backupctl audit`: the live account checked against the strategy (seed section 9).

Each check returns ok, FAIL or could-not-check with one line of detail; an AWS error becomes
could-not-check with its reason, except "not found", which is a finding (FAIL).
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import functools
from dataclasses import dataclass
from typing import Any, Callable, Optional

from components.config import StackConfig
from components.schedules import runs_at_least_daily
from scripts.aws import backup as backupapi
from scripts.aws import ec2 as ec2api
from scripts.aws import rbin as rbinapi
from scripts.aws import s3 as s3api
from scripts.aws import sts as stsapi
from scripts.aws.errors import AWS_ERRORS, NOT_FOUND_CODES, describe, error_code
from scripts.times import parse_time
from scripts.workflows.base import Session

OK, FAIL, UNCHECKED = "ok", "FAIL", "could-not-check"
STRATEGY_MIN_RETENTION_DAYS = 7
# A vault policy that denies these to everyone makes manual deletion impossible; shortening the
# lifecycle is deletion by another route.
VAULT_DENY_ACTIONS = ("backup:DeleteRecoveryPoint", "backup:UpdateRecoveryPointLifecycle")
LOCKED_SNAPSHOT_STATES = ("governance", "compliance", "compliance-cooloff")
PAB_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


@dataclass
class Check:
    name: str
    status: str
    detail: str


@dataclass
class AuditScope:
    """What every check reads: the session's clients, the stack config, the instance and the clock."""
    session: Session
    config: StackConfig
    instance_id: str
    now: dt.datetime
    max_age_hours: float

    @property
    def region(self) -> str:
        return self.session.region

    def client(self, service: str) -> Any:
        return self.session.client(service)


def _age(when: dt.datetime, now: dt.datetime) -> str:
    hours = (now - when).total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def _guarded(name: str, fn: Callable[[], Check | list[Check]]) -> list[Check]:
    """Run one check; an AWS error becomes could-not-check with the reason (not-found is a FAIL)."""
    try:
        result = fn()
    except AWS_ERRORS as e:
        return [Check(name, FAIL if error_code(e) in NOT_FOUND_CODES else UNCHECKED, describe(e, operation=True))]
    except ValueError as e:  # an unreadable JSON document (vault policy, latest.json, manifest)
        return [Check(name, UNCHECKED, f"unreadable JSON: {e}")]
    return result if isinstance(result, list) else [result]


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _denies_to_everyone(statement: dict[str, Any], action: str, vault_name: str) -> bool:
    """An unconditional Deny of the action to every principal on every recovery point of the vault."""
    if statement.get("Effect") != "Deny" or statement.get("Condition") or "NotAction" in statement \
            or "NotPrincipal" in statement:
        return False
    principal = statement.get("Principal")
    if not (principal == "*" or (isinstance(principal, dict) and "*" in _as_list(principal.get("AWS")))):
        return False
    resources = [str(r) for r in _as_list(statement.get("Resource", []))]
    if not any(r == "*" or r.endswith(f":backup-vault:{vault_name}") or r.endswith(":recovery-point:*")
               for r in resources):
        return False
    return any(fnmatch.fnmatch(action.lower(), str(a).lower()) for a in _as_list(statement.get("Action", [])))


# --- the checks ---------------------------------------------------------------------------------

def check_recovery_point(scope: AuditScope) -> Check:
    name, vault = "recovery-point", scope.config.backup.vault_name
    arn = stsapi.instance_arn(scope.region, stsapi.account_id(scope.client("sts")), scope.instance_id)
    points = [p for p in backupapi.recovery_points(scope.client("backup"), vault, arn)
              if p.get("Status") in ("COMPLETED", "AVAILABLE")]
    if not points:
        return Check(name, FAIL, f"no completed recovery point of {scope.instance_id} in vault {vault}")
    newest = max(points, key=lambda p: p["CreationDate"])
    created = parse_time(newest["CreationDate"])
    if created is None:
        return Check(name, UNCHECKED, f"recovery point {newest['RecoveryPointArn']} has no readable CreationDate")
    fresh = scope.now - created <= dt.timedelta(hours=scope.max_age_hours)
    return Check(name, OK if fresh else FAIL,
                 f"newest {newest['RecoveryPointArn'].rsplit(':', 1)[-1]} is {_age(created, scope.now)} old"
                 + ("" if fresh else f" (must be younger than {scope.max_age_hours:g} h)"))


def check_backup_plan(scope: AuditScope) -> Check:
    name, cfg = "backup-plan", scope.config.backup
    plan = backupapi.find_backup_plan(scope.client("backup"), cfg.plan_name)
    if plan is None:
        return Check(name, FAIL, f"no backup plan named {cfg.plan_name}")
    rules = [r for r in plan["BackupPlan"].get("Rules", []) if r.get("TargetBackupVaultName") == cfg.vault_name]
    if not rules:
        return Check(name, FAIL, f"plan {cfg.plan_name} has no rule into vault {cfg.vault_name}")
    need = max(STRATEGY_MIN_RETENTION_DAYS, cfg.retention_days)
    problems, seen = [], []
    for rule in rules:
        keep = rule.get("Lifecycle", {}).get("DeleteAfterDays")
        schedule = rule.get("ScheduleExpression", "")
        seen.append(f"rule {rule.get('RuleName')}: {schedule}, keeps " + (f"{keep} days" if keep else "forever"))
        if keep is not None and keep < need:
            problems.append(f"rule {rule.get('RuleName')} keeps recovery points {keep} days; the strategy "
                            f"requires at least {need}")
        if not runs_at_least_daily(schedule):
            problems.append(f"rule {rule.get('RuleName')} schedule {schedule!r} does not run every day")
    return Check(name, FAIL if problems else OK, "; ".join(problems or seen))


def check_vault_lock(scope: AuditScope) -> Check:
    name, cfg = "vault-lock", scope.config.backup
    vault = backupapi.describe_vault(scope.client("backup"), cfg.vault_name)
    need = max(STRATEGY_MIN_RETENTION_DAYS, cfg.vault_lock.min_retention_days)
    if not vault.get("Locked"):
        return Check(name, FAIL, f"vault {cfg.vault_name} has no vault lock")
    lo, hi = vault.get("MinRetentionDays"), vault.get("MaxRetentionDays")
    if lo is None or lo < need:
        return Check(name, FAIL, f"vault {cfg.vault_name} lock MinRetentionDays is {lo}; must be at least {need}")
    lock_date = parse_time(vault.get("LockDate"))
    mode = ("compliance, immutable since" if lock_date and lock_date <= scope.now
            else "compliance, changeable until" if lock_date else "governance")
    return Check(name, OK, f"locked, retention {lo}..{hi if hi is not None else '-'} days ({mode}"
                           + (f" {lock_date:%Y-%m-%d %H:%M}Z)" if lock_date else ")"))


def check_vault_access_policy(scope: AuditScope) -> Check:
    name, vault = "vault-access-policy", scope.config.backup.vault_name
    policy = backupapi.vault_access_policy(scope.client("backup"), vault)
    if policy is None:
        return Check(name, FAIL, f"vault {vault} has no access policy; deletion of recovery points is not denied")
    statements = _as_list(policy.get("Statement", []))
    missing = [a for a in VAULT_DENY_ACTIONS if not any(_denies_to_everyone(s, a, vault) for s in statements)]
    if missing:
        return Check(name, FAIL, f"vault {vault} policy does not deny {', '.join(missing)} to every principal "
                                 "without conditions")
    return Check(name, OK, f"denies {', '.join(VAULT_DENY_ACTIONS)} to every principal")


def check_recycle_bin(scope: AuditScope) -> Check:
    name, cfg = "recycle-bin", scope.config.recycle_bin
    need = max(STRATEGY_MIN_RETENTION_DAYS, cfg.retention_days)
    rules = rbinapi.recycle_bin_rules(scope.client("rbin"), "EBS_SNAPSHOT")
    if not rules:
        return Check(name, FAIL, "no Recycle Bin retention rule for EBS_SNAPSHOT")
    findings = []
    for rule in rules:
        period = rule.get("RetentionPeriod", {})
        days = period.get("RetentionPeriodValue", 0) if period.get("RetentionPeriodUnit") == "DAYS" else 0
        problems = []
        if rule.get("ResourceTags"):
            problems.append("tag-level (retains only tagged snapshots)")
        if days < need:
            problems.append(f"retains {days} days, needs at least {need}")
        if cfg.lock and rule.get("LockState") != "locked":
            problems.append(f"lock state {rule.get('LockState') or 'never locked'}, must be locked")
        if rule.get("Status") not in (None, "available"):
            problems.append(f"status {rule.get('Status')}")
        if not problems:
            return Check(name, OK, f"rule {rule.get('Identifier')}: Region-level, {days} days, "
                                   f"{rule.get('LockState') or 'unlocked'}")
        findings.append(f"rule {rule.get('Identifier')}: " + ", ".join(problems))
    return Check(name, FAIL, "; ".join(findings))


def check_baselines(scope: AuditScope) -> list[Check]:
    baselines = scope.config.baselines
    if not baselines:
        return [Check("baselines", OK, "no baseline snapshots configured")]
    ec2 = scope.client("ec2")
    found = ec2api.snapshots_by_name(ec2, [b.name for b in baselines])
    checks: dict[str, Check] = {}
    candidates: dict[str, dict[str, Any]] = {}
    for b in baselines:
        name = f"baseline {b.name}"
        snaps = [s for s in found[b.name] if s.get("State") != "error"]
        if not snaps:
            checks[b.name] = Check(name, FAIL, "no snapshot with this Name tag")
        elif len(snaps) > 1:
            checks[b.name] = Check(name, FAIL, f"{len(snaps)} snapshots carry this name: "
                                               + ", ".join(s["SnapshotId"] for s in snaps))
        elif snaps[0]["State"] != "completed":
            checks[b.name] = Check(name, FAIL, f"{snaps[0]['SnapshotId']} is {snaps[0]['State']}, not completed")
        elif snaps[0].get("VolumeId") != b.volume_id:
            checks[b.name] = Check(name, FAIL, f"{snaps[0]['SnapshotId']} is of {snaps[0].get('VolumeId')}, "
                                               f"not the configured {b.volume_id}")
        else:
            candidates[b.name] = snaps[0]
    if candidates:
        try:
            locks = ec2api.describe_locks(ec2, [s["SnapshotId"] for s in candidates.values()])
        except AWS_ERRORS as e:  # the lock API failing must not hide the results above
            reason = describe(e, operation=True)
            for b_name, snap in candidates.items():
                checks[b_name] = Check(f"baseline {b_name}", UNCHECKED,
                                       f"{snap['SnapshotId']} completed; lock state unknown: {reason}")
            locks = None
        for b_name, snap in candidates.items() if locks is not None else ():
            info = (locks or {}).get(snap["SnapshotId"])
            expires = parse_time(info.get("LockExpiresOn")) if info else None
            state = info.get("LockState") if info else None
            if state in LOCKED_SNAPSHOT_STATES and (expires is None or expires > scope.now):
                until = f" until {expires:%Y-%m-%d}" if expires else ""
                checks[b_name] = Check(f"baseline {b_name}", OK, f"{snap['SnapshotId']} completed, {state} lock{until}")
            else:
                checks[b_name] = Check(f"baseline {b_name}", FAIL,
                                       f"{snap['SnapshotId']} completed but not locked"
                                       + (f" (lock {state})" if state else ""))
    return [checks[b.name] for b in baselines]


def check_snapshot_block_public_access(scope: AuditScope) -> Check:
    state = ec2api.snapshot_block_public_access_state(scope.client("ec2"))
    ok = state == "block-all-sharing"
    return Check("snapshot-block-public-access", OK if ok else FAIL,
                 f"state {state}" + ("" if ok else "; must be block-all-sharing"))


def _manifest_end_time(manifest: dict[str, Any]) -> Optional[dt.datetime]:
    """When the dump finished, per scripts/agent/quickport_dump.py's manifest ("finished_at", UTC ISO 8601)."""
    return parse_time(manifest.get("finished_at"))


def _manifest_key_from_latest(latest: dict[str, Any]) -> Optional[str]:
    """latest.json names its manifest ("manifest"); older writers named only the dump ("key")."""
    if isinstance(latest.get("manifest"), str):
        return latest["manifest"]
    return latest["key"] + ".manifest.json" if isinstance(latest.get("key"), str) else None


def check_dump_fresh(scope: AuditScope) -> Check:
    name, d = "dump-fresh", scope.config.dumps
    s3 = scope.client("s3")
    base = f"{d.prefix}/{d.database}/"
    source, end = None, None
    latest = s3api.read_json_object(s3, d.bucket_name, base + "latest.json")
    if latest is not None:
        manifest_key = _manifest_key_from_latest(latest)
        manifest = s3api.read_json_object(s3, d.bucket_name, manifest_key) if manifest_key else None
        end = _manifest_end_time(manifest) if manifest else None
        source = manifest_key
        if end is None:
            return Check(name, FAIL, f"latest.json points at {manifest_key or 'nothing'}, "
                                     "which is not a readable manifest with an end time")
    else:
        # No latest.json: the newest manifest still proves a good dump (it is written after the upload).
        newest = s3api.newest_object(s3, d.bucket_name, base, ".manifest.json")
        if newest is None:
            return Check(name, FAIL, f"no dump manifest under s3://{d.bucket_name}/{base}")
        source, end = newest["Key"], parse_time(newest["LastModified"])
        if end is None:
            return Check(name, UNCHECKED, f"{source} has no readable LastModified")
    fresh = scope.now - end <= dt.timedelta(hours=scope.max_age_hours)
    return Check(name, OK if fresh else FAIL, f"{source} finished {_age(end, scope.now)} ago"
                 + ("" if fresh else f" (must be younger than {scope.max_age_hours:g} h)"))


def check_bucket_versioning(scope: AuditScope) -> Check:
    bucket = scope.config.dumps.bucket_name
    status = s3api.bucket_versioning(scope.client("s3"), bucket)
    return Check("dump-bucket-versioning", OK if status == "Enabled" else FAIL,
                 f"versioning {status or 'never enabled'}" + ("" if status == "Enabled" else "; must be Enabled"))


def check_bucket_public_access(scope: AuditScope) -> Check:
    block = s3api.bucket_public_access_block(scope.client("s3"), scope.config.dumps.bucket_name)
    if block is None:
        return Check("dump-bucket-public-access", FAIL, "no public access block on the bucket")
    off = [f for f in PAB_FLAGS if not block.get(f)]
    return Check("dump-bucket-public-access", FAIL if off else OK,
                 f"{', '.join(off)} off; all four must be on" if off else "all four public access blocks on")


def check_bucket_encryption(scope: AuditScope) -> Check:
    rules = s3api.bucket_encryption_rules(scope.client("s3"), scope.config.dumps.bucket_name)
    algorithms = [r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules]
    kms = [r for r in rules
           if r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm", "").startswith("aws:kms")]
    if not kms:
        return Check("dump-bucket-encryption", FAIL,
                     f"default encryption {', '.join(a for a in algorithms if a) or 'none'}; must be SSE-KMS (aws:kms)")
    default = kms[0]["ApplyServerSideEncryptionByDefault"]
    key = default.get("KMSMasterKeyID") or "the AWS managed key"
    return Check("dump-bucket-encryption", OK, f"SSE-KMS with {key}"
                 + (", bucket key on" if kms[0].get("BucketKeyEnabled") else ""))


CHECKS: tuple[tuple[str, Callable[[AuditScope], Check | list[Check]]], ...] = (
    ("recovery-point", check_recovery_point),
    ("backup-plan", check_backup_plan),
    ("vault-lock", check_vault_lock),
    ("vault-access-policy", check_vault_access_policy),
    ("recycle-bin", check_recycle_bin),
    ("baselines", check_baselines),
    ("snapshot-block-public-access", check_snapshot_block_public_access),
    ("dump-fresh", check_dump_fresh),
    ("dump-bucket-versioning", check_bucket_versioning),
    ("dump-bucket-public-access", check_bucket_public_access),
    ("dump-bucket-encryption", check_bucket_encryption),
)


def collect_checks(scope: AuditScope, progress: Optional[Callable[[str], None]] = None) -> list[Check]:
    checks: list[Check] = []
    for name, check in CHECKS:
        if progress:
            progress(f"checking {name}")
        checks.extend(_guarded(name, functools.partial(check, scope)))
    return checks
