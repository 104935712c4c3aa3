"""`backupctl audit`: the live account checked against the strategy (seed section 9).

Arguments and rendering; the checks are scripts/workflows/audit.py.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict

from scripts.commands.base import Context, add_common_options, number_in_range
from scripts.errors import EXIT_FAILED, EXIT_OK, UsageError
from scripts.times import utcnow
from scripts.workflows.audit import (
    BINLOG_STALE_INTERVALS,
    BINLOG_STALE_SLACK_SECONDS,
    OK,
    VAULT_DENY_ACTIONS,
    AuditScope,
    Check,
    collect_checks,
)

DEFAULT_MAX_AGE_HOURS = 26   # a daily job plus two hours of slack for its start and completion windows

_STALE = f"{BINLOG_STALE_INTERVALS} x binlog.intervalSeconds + {BINLOG_STALE_SLACK_SECONDS} s"
HELP = f"""\
Check the live account against the backup strategy, one line per check: ok, FAIL, or
could-not-check (with why: AccessDenied, an API the endpoint lacks, ...).

  recovery-point        the instance has a completed AWS Backup recovery point younger than
                        --max-age-hours (default {DEFAULT_MAX_AGE_HOURS}) in the vault
  backup-plan           the plan's rule into the vault keeps points >= 7 days, runs at least daily
  vault-lock            the vault is locked with MinRetentionDays >= the configured minimum, in the
                        configured mode (governance: no LockDate; compliance: a LockDate)
  vault-access-policy   the vault policy denies {', '.join(VAULT_DENY_ACTIONS)}
                        to everyone
  recycle-bin           a Region-level EBS_SNAPSHOT retention rule keeps >= 7 days and is locked
  recycle-bin-images    the same for EC2_IMAGE (AMIs, which AWS Backup's EC2 recovery points are)
  baseline <name>       each configured baseline snapshot exists, is completed and locked
  snapshot-block-public-access   the account blocks all public sharing of snapshots
  dump-fresh            the newest database dump (latest.json and its manifest) is younger than
                        --max-age-hours
  dump-bucket-versioning / dump-bucket-public-access / dump-bucket-encryption
                        the dump bucket is versioned, blocks all public access, encrypts with SSE-KMS
  dump-bucket-object-lock   S3 Object Lock on, default retention as dumps.objectLock (mode, >= days)
  dump-bucket-policy    TLS only; DeleteObjectVersion and bucket-policy changes denied to everyone
  dump-bucket-lifecycle uploads aborted bucket-wide; dumps and files expire after >= dumps.retentionDays,
                        old versions after >= 7 days, never on a fixed date; binlog segments (with
                        binlog.enabled) after >= binlog.retentionDays, through any rule reaching them
  binlog-shipping       (binlog.enabled) the newest chain's index confirmed the server's binlog end
                        less than {_STALE} ago (the threshold is
                        printed), no gap was recorded since the latest dump, and that dump's binlog
                        coordinates (a FAIL naming why when it has none) lie in a live chain
  pitr-window           (binlog.enabled) the earliest and latest time a point-in-time restore reaches:
                        from the oldest dump with coordinates an unbroken chain covers, to that chain's
                        newest event or last confirmation (in --json: data.earliest, data.latest,
                        data.windows); FAIL when there is none
  alarms                every dead-man's-switch alarm exists and none is in ALARM
  expired-snapshots     lists strategy snapshots past their RetainUntil tag (`backupctl prune` plans
                        their deletion); informational
  api-call-trail        a trail logs this region's management events (the API-call alerts need it)
  root-volume-encryption   the root volume is encrypted (with a customer managed key when
                        backup.airGappedVault is set); prints the migration path when not
  ebs-encryption-by-default   on, with the configured default key
  air-gapped-vault      (backup.airGappedVault) the vault exists, is air-gapped, AVAILABLE, min retention
  guard-rails-attached  the operator guard-rail policy is attached to every configured group/role/user

Exit 0 when every check is ok, 1 otherwise (could-not-check counts as not ok), 2 on bad usage."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="check the live account against the strategy", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-age-hours", type=_positive_hours, default=DEFAULT_MAX_AGE_HOURS, metavar="HOURS",
                   help=f"newest recovery point and dump must be younger than this (default {DEFAULT_MAX_AGE_HOURS})")
    add_common_options(p)
    p.set_defaults(handler=run_audit)


_positive_hours = number_in_range("--max-age-hours", 1, 24 * 365, "hours")


def render_table(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    status_width = max(len(c.status) for c in checks)
    return "\n".join(f"{c.status:<{status_width}}  {c.name:<{width}}  {c.detail}" for c in checks)


def run_audit(ctx: Context) -> int:
    config = ctx.config  # a bad stack config is a usage error before any AWS call
    if not ctx.instance_id:
        raise UsageError("--instance-id: required when the stack config has no instanceId")
    scope = AuditScope(session=ctx, config=config, instance_id=ctx.instance_id, now=utcnow(),
                       max_age_hours=ctx.args.max_age_hours)
    checks = collect_checks(scope, None if ctx.json else ctx.progress)
    ok = all(c.status == OK for c in checks)
    failed = [c.name for c in checks if c.status != OK]
    ctx.log("audit", instance=ctx.instance_id, region=ctx.region, ok=ok, not_ok=failed)
    summary = ("all checks ok" if ok else
               f"{len(failed)} of {len(checks)} checks not ok: {', '.join(failed)}")
    text = (f"Audit of {ctx.instance_id} in {ctx.region} against the backup strategy "
            f"({utcnow():%Y-%m-%d %H:%M}Z)\n\n{render_table(checks)}\n\n{summary}")
    ctx.emit({"checks": [{k: v for k, v in asdict(c).items() if v is not None} for c in checks], "ok": ok}, text)
    return EXIT_OK if ok else EXIT_FAILED
